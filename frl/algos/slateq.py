"""SlateQ (Ie et al. 2019, "SlateQ: a tractable decomposition for reinforcement learning with
recommendation sets", https://www.ijcai.org/proceedings/2019/360) on a recommender environment.

The value of a slate decomposes through the user's choice model into item values::

    Q(s, A) = sum_{j in A} P(j | s, A) Qbar(s, j) + P(none | s, A) Qbar_0(s)

``Qbar`` scores every candidate with one network (:class:`frl.nn.CandidateScorer`), ``Qbar_0`` is
the value of a step without a click (a value network). The choice model is known, as in the
paper: the environment's (:meth:`frl.envs.recsim.InterestEvolution.choice`) on click scores read
from the observation, so the environment must show the user's interests
(``RecSim-InterestEvolution-Observed-v0``). Slates are chosen by SlateQ's top-k rule on the
value a click adds, the ``k`` candidates of highest ``v(s, j) (Qbar(s, j) - Qbar_0(s))`` with
``v = exp(click score)``, epsilon-greedy while collecting.

Learning is DQN's loop (replay, target network, ``updates_per_iteration`` minibatch steps per
iteration) with the paper's item-level TD update toward ``r + gamma Q_target(s', A')``, ``A'``
the target network's top-k slate at ``s'``: the clicked item's value moves (the no-click value on
a step without a click); as the stored transition does not name the clicked item, every shown
item moves in proportion to the choice model's posterior that it was the one (:func:`slateq_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import nn, optim, random
from frl.algos import train as agent
from frl.algos.collect import make_collect
from frl.algos.config import AgentConfig, hyper, setting
from frl.algos.replay import linear_epsilon, make_replay_learn, q_learning_step
from frl.algos.spec import Replay
from frl.algos.train import Train, Unit, WrapOptimizer
from frl.envs.spaces import Slate
from frl.losses import _batch as B

__all__ = ["Config", "make_train", "slate_value", "slateq_loss"]


@dataclass(frozen=True)
class Config(AgentConfig):
    """SlateQ settings (DQN's loop; defaults chosen here on ``RecSim-InterestEvolution-Observed-v0``:
    16 environments, 2 updates per iteration of 16 steps, the target synced every 250 updates, a
    10k buffer)."""

    agent: ClassVar[str] = "slateq"

    env_id: str = setting("RecSim-InterestEvolution-Observed-v0")
    total_timesteps: int = setting(100_000, low=1)
    learning_rate: float = hyper(1e-3, low=0.0, low_open=True)
    num_envs: int = setting(16, low=1)
    buffer_size: int = setting(10_000, low=1)
    gamma: float = hyper(0.99, low=0.0, high=1.0)
    tau: float = hyper(1.0, low=0.0, high=1.0)
    target_network_frequency: int = setting(125, low=1)
    batch_size: int = setting(128, low=1)
    start_e: float = hyper(1.0, low=0.0, high=1.0)
    end_e: float = hyper(0.05, low=0.0, high=1.0)
    exploration_fraction: float = hyper(0.3, low=0.0, high=1.0)
    learning_starts: int = setting(2_000, low=0)
    train_frequency: int = setting(1, low=1)
    updates_per_iteration: int = setting(2, low=1)
    hidden: tuple[int, ...] = setting((64, 64))

    def check(self) -> None:
        if self.target_network_frequency % self.train_frequency:
            raise ValueError(
                f"slateq.Config: `target_network_frequency` ({self.target_network_frequency}) must be a "
                f"multiple of `train_frequency` ({self.train_frequency})"
            )


def slate_value(item_q: Tensor, null_q: Tensor, probs: Tensor, slate: Tensor) -> Tensor:
    """``Q(s, A) = sum_j P(j|s,A) Qbar(s, a_j) + (1 - sum_j P(j|s,A)) Qbar_0(s)``.

    Args:
      item_q: ``Qbar(s, .)``, ``[..., M]``.
      null_q: ``Qbar_0(s)``, ``[...]``.
      probs: click probabilities of the slate's positions, ``[..., k]``.
      slate: candidate indices, ``int64 [..., k]``.

    Returns:
      ``[...]``.
    """
    picked = torch.gather(item_q, -1, slate)
    return (probs * picked).sum(-1) + (1.0 - probs.sum(-1)) * null_q


def top_k_slate(item_q: Tensor, null_q: Tensor, scores: Tensor, k: int) -> Tensor:
    """The ``k`` candidates of highest ``exp(score) (Qbar - Qbar_0)``, best first: SlateQ's top-k
    rule on the value an item adds over no click (under a logit choice model, showing ``j``
    raises ``Q(s, A)`` exactly when ``Qbar(s, j)`` exceeds the value of the rest; against
    ``Qbar_0`` it ranks what a click on ``j`` gains over none). ``[..., M], [...], [..., M] ->
    int64 [..., k]``."""
    return torch.topk(torch.exp(scores) * (item_q - null_q.unsqueeze(-1)), k, dim=-1).indices


def slateq_loss(
    online_params: TensorDictBase,
    target_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    item_apply: Any,
    null_apply: Any,
    choice: Any,
    scores_of: Any,
    k: int,
    gamma: float | Tensor,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """SlateQ's item-level TD loss with the clicked item inferred from the choice model.

    The target is ``y = r + gamma (1 - terminated) Q_target(s', topk(s'))`` (:func:`slate_value`
    on the target params' top-k slate). A step without a click (``r = 0``) regresses the no-click
    value, ``(Qbar_0(s) - y)^2``; a step with one regresses the item that was clicked, which the
    stored transition does not name: each shown item ``j`` in proportion to the choice model's
    posterior ``P(j | s, A, click) = P(j|s,A) / sum_i P(i|s,A)``,
    ``sum_j P(j | click) (Qbar(s, a_j) - y)^2``. Loss: half the batch mean.

    Args:
      online_params, target_params: ``{"items", "null"}`` each.
      batch: ``observation``, ``action`` (slates ``[B, k]``), ``next.observation``,
        ``next.reward`` (positive exactly on a click), ``next.terminated``.
      item_apply: ``(params, obs) -> Qbar [B, M]``; null_apply: ``(params, obs) -> [B]``.
      choice: ``(scores [B, M], slate [B, k]) -> P [B, k]``; scores_of: ``obs -> [B, M]``.
      k: the slate size.

    Returns:
      ``(loss, metrics)``: ``loss``, ``q_value`` (the slate value ``Q(s, A)``), ``td_error``
      (mean absolute ``Q(s, A) - y``).
    """
    owner = "slateq_loss"
    obs, slate = B.get(batch, B.OBS, owner), B.get(batch, B.ACTION, owner)
    next_obs, reward = B.get(batch, B.NEXT_OBS, owner), B.get(batch, B.REWARD, owner)
    terminated = B.get(batch, B.TERMINATED, owner)
    probs = choice(scores_of(obs), slate)
    item_q = item_apply(online_params["items"], obs)
    null_q = null_apply(online_params["null"], obs)
    B.check_per_sample(owner, null_q.shape, next_reward=reward, next_terminated=terminated)
    with torch.no_grad():
        next_scores = scores_of(next_obs)
        next_items = item_apply(target_params["items"], next_obs)
        next_null = null_apply(target_params["null"], next_obs)
        next_slate = top_k_slate(next_items, next_null, next_scores, k)
        next_q = slate_value(next_items, next_null, choice(next_scores, next_slate), next_slate)
        target = reward + gamma * (1.0 - terminated.to(reward.dtype)) * next_q
        posterior = probs / probs.sum(-1, keepdim=True).clamp(min=torch.finfo(probs.dtype).tiny)
    shown = torch.gather(item_q, -1, slate)
    item_error = (posterior * (shown - target.unsqueeze(-1)) ** 2).sum(-1)
    null_error = (null_q - target) ** 2
    loss = 0.5 * torch.where(reward > 0, item_error, null_error).mean()
    q = slate_value(item_q, null_q, probs, slate).detach()
    metrics = TensorDict(
        {"loss": loss.detach(), "q_value": q.mean(), "td_error": (q - target).abs().mean()},
        batch_size=[],
    )
    return loss, metrics


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """SlateQ on ``config.env_id`` (``RecSim-InterestEvolution-Observed-v0``), or on ``env`` (a recommender
    environment with a :class:`~frl.envs.spaces.Slate` action space, a ``choice`` model and
    ``observed_scores``)."""
    if not isinstance(config, Config):
        raise TypeError(f"slateq.make_train: expected a slateq.Config, got {type(config)!r}")
    if env is None:
        from frl import envs

        env = envs.make(config.env_id)
    if not isinstance(env.action_space, Slate) or not hasattr(env, "observed_scores"):
        raise ValueError(
            f"slateq needs a recommender environment (Slate actions and a known choice model); {env.id} "
            "has neither: RecSim-InterestEvolution-v0 is one"
        )
    if not getattr(env, "observable_interests", False):
        raise ValueError(
            f"slateq needs the choice model, which reads the user's interests; {env.id} hides them: "
            "use RecSim-InterestEvolution-Observed-v0"
        )
    params_env = env.default_params()
    k = env.action_space.k
    obs_dim = env.observation_space.shape[0]
    items = nn.CandidateScorer(env.user_dim, env.document_dim, env.num_candidates, config.hidden, "relu", 1.0)
    null = nn.ValueNetwork(obs_dim, hidden=config.hidden, activation="relu")

    def scores_of(obs: Tensor) -> Tensor:
        return env.observed_scores(obs, params_env)

    def choice(scores: Tensor, slate: Tensor) -> Tensor:
        return env.choice(scores, slate, params_env)

    period = config.target_network_frequency // config.train_frequency * config.updates_per_iteration
    tx = agent.wrapped_optimizer(optim.adam(config.learning_rate), wrap_optimizer)
    consumes = Replay(
        config.num_envs,
        config.train_frequency,
        capacity=min(config.buffer_size, config.total_timesteps),
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
    )

    epsilon = linear_epsilon(config.total_timesteps)

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        online = params["online"]
        return top_k_slate(
            items.apply(online["items"], obs), null.apply(online["null"], obs), scores_of(obs), k
        )

    def explore(params: TensorDictBase, hp: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor):
        k_explore, k_slate = random.split(key)
        best = policy(params, obs)
        draws = random.uniform(k_slate, (*obs.shape[:-1], env.num_candidates), obs.dtype)
        uniform = torch.topk(draws, k, dim=-1).indices
        explore_now = random.uniform(k_explore, tuple(obs.shape[:-1]), obs.dtype) < epsilon(hp, env_steps)
        action = torch.where(explore_now.unsqueeze(-1), uniform, best)
        return action, torch.zeros(action.shape[:-1], dtype=env.dtype, device=action.device)

    def init_params(key: Tensor) -> TensorDict:
        k_items, k_null = random.split(key)
        online = TensorDict({"items": items.init(k_items), "null": null.init(k_null)}, batch_size=[])
        return TensorDict({"online": online, "target": online.clone()}, batch_size=[])

    def loss(params: TensorDictBase, batch: TensorDictBase, gamma: Tensor, key: Tensor | None = None):
        return slateq_loss(
            params["online"],
            params["target"],
            batch,
            item_apply=items.apply,
            null_apply=null.apply,
            choice=choice,
            scores_of=scores_of,
            k=k,
            gamma=gamma,
        )

    return Train(
        name="slateq",
        config=config,
        env=env,
        consumes=consumes,
        build=agent.build_state(env, consumes, init_params, tx, trainable=("online",)),
        collect=(Unit("collect", make_collect(env, explore, consumes)),),
        learn=(
            Unit(
                "learn",
                make_replay_learn(consumes, q_learning_step(loss, tx, period, epsilon)),
                config.updates_per_iteration,
            ),
        ),
        policy=policy,
        explore=explore,
        factory=make_train,
        parts={"items": items, "null": null, "loss": loss, "scores_of": scores_of, "choice": choice},
    )
