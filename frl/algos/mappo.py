"""MAPPO and IPPO: PPO for cooperative agents on a pure multi-agent environment.

MAPPO (Yu et al. 2022, "The surprising effectiveness of PPO in cooperative multi-agent games",
https://arxiv.org/abs/2103.01955) trains decentralised actors (each reads its own observation and
samples among its legal actions) with a centralised critic (the environment's global state, or
every agent's observation, plus the agent's identity; or ``critic_input="team"``, one value of
every agent's observation shared by the team); IPPO (de Witt et al. 2020,
https://arxiv.org/abs/2011.09533) gives each agent a critic of its own observation. One iteration,
as PPO's (:mod:`frl.algos.ppo`):

1. COLLECT ``num_steps`` steps on ``num_envs`` environments into a segment ``[E, T]`` in TorchRL's
   group layout (``("agents", "observation") [E, T, n, O]``, ``("agents", "action_mask")``,
   ``("agents", "action")``, ``state``, the team's ``("next", "reward") [E, T]``);
2. ADVANTAGES: each agent's value of its critic input and GAE on the team reward, per agent;
3. UPDATE: ``update_epochs x num_minibatches`` steps of :func:`frl.losses.mappo_loss` over the
   samples and the agents.

``share_params`` (default) gives every agent the same actor and critic (with a one-hot agent
identity appended to their inputs when ``agent_id``); otherwise each agent has its own
(:class:`frl.nn.PerAgent`, vmapped over the agent dim).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import nn, optim, random
from frl.algos import on_policy as op
from frl.algos import ppo
from frl.algos.collect import make_collect
from frl.algos.config import hyper, setting
from frl.algos.spec import Segments, collection_chunk
from frl.algos.train import Train, Unit, WrapOptimizer, resolve_env
from frl.distributions import DiagGaussian, MaskedCategorical
from frl.losses import bind, critic_values, mappo_loss
from frl.losses.marl import CRITIC_INPUTS
from frl.returns import gae

__all__ = ["Config", "IPPOConfig", "evaluate", "make_train", "make_train_ippo"]

ADVANTAGE_KEYS = op.ADVANTAGE_KEYS
DIST = MaskedCategorical()


@dataclass(frozen=True)
class Config(ppo.Config):
    """MAPPO settings. Defaults follow the MAPPO paper's SMAC runs scaled to a CPU (8 environments,
    5 epochs, a constant learning rate of 5e-4, entropy 0.01, 64-unit tanh networks, a state
    critic). On MicroCombat 3m a constant rate won 0.995 of 200 greedy episodes after 150k steps
    (one seed), PPO's linear annealing 0.515: the policy stopped moving (approx. KL ~ 0)."""

    agent: ClassVar[str] = "mappo"
    multi_agent: ClassVar[bool] = True

    env_id: str = setting("MicroCombat-3m-v0")
    total_timesteps: int = setting(200_000, low=1)
    num_envs: int = setting(8, low=1)
    num_steps: int = setting(64, low=1)
    anneal_lr: bool = setting(False)
    learning_rate: float = hyper(5e-4, low=0.0, low_open=True)
    update_epochs: int = setting(5, low=1)
    num_minibatches: int = setting(2, low=1)
    ent_coef: float = hyper(0.01, low=0.0)
    clip_vloss: bool = setting(False)
    critic_input: str = setting("state", choices=CRITIC_INPUTS)
    share_params: bool = setting(True)
    agent_id: bool = setting(True)


@dataclass(frozen=True)
class IPPOConfig(Config):
    """IPPO: MAPPO's settings with decentralised critics (each reads its agent's observation)."""

    agent: ClassVar[str] = "ippo"
    critic_input: str = setting("local", choices=CRITIC_INPUTS)


def _with_identity(x: Tensor) -> Tensor:
    """``[..., n, d] -> [..., n, d + n]``: each agent's row with its one-hot identity appended."""
    n = x.shape[-2]
    eye = torch.eye(n, dtype=x.dtype, device=x.device).expand(*x.shape[:-2], n, n)
    return torch.cat([x, eye], dim=-1)


def networks(config: Config, env: Any) -> tuple[Callable, Callable, Callable, Callable]:
    """``(actor_init, actor_apply, critic_init, critic_apply)``: ``actor_apply(params, obs [..., n, O])
    -> logits [..., n, A]`` (or, for a box of ``D`` actions per agent, a Gaussian's ``(mean,
    log_std)``, each ``[..., n, D]``); ``critic_apply(params, c [..., m, D]) -> [..., m]``, ``c`` the
    critic input :func:`frl.losses.critic_observation` builds from the observations and the state
    (``m = 1`` for a team critic, else ``n``)."""
    n, obs_dim = env.n_agents, env.obs_dim
    shared, ids = config.share_params, config.share_params and config.agent_id
    critic_in = {
        "local": obs_dim,
        "joint": n * obs_dim + n,
        "state": getattr(env, "state_dim", 0) + n,
        "team": n * obs_dim,
    }[config.critic_input]
    actor: Any
    if env.discrete:
        actor = nn.MLP(
            (obs_dim + (n if ids else 0), *config.hidden, env.num_actions), "tanh", output_scale=0.01
        )
    else:  # one free log-std per action dim, as PPO's continuous policy
        actor = nn.GaussianPolicy(
            obs_dim + (n if ids else 0), env.action_space.shape[-1], tuple(config.hidden)
        )
    local_ids = ids and config.critic_input == "local"
    critic = nn.MLP((critic_in + (n if local_ids else 0), *config.hidden, 1), "tanh")
    if not shared:
        actor, critic = nn.PerAgent(actor, n), nn.PerAgent(critic, n)

    def actor_apply(params: TensorDictBase, obs: Tensor) -> Tensor:
        return actor.apply(params, _with_identity(obs) if ids else obs)

    def critic_apply(params: TensorDictBase, c: Tensor) -> Tensor:
        return critic.apply(params, _with_identity(c) if local_ids else c).squeeze(-1)

    return actor.init, actor_apply, critic.init, critic_apply


def team_advantages(critic_input: str, group: str) -> Callable[..., TensorDictBase]:
    """``with_advantages(segment, value_apply, critic_params, gamma=, lmbda=)`` for a multi-agent
    segment: each agent's values of its critic input now and at the true next step, and GAE on the
    team's reward (each agent's own ``("next", group, "reward")`` where the segment has it) and the
    episode's flags (shared by the agents), written under ``group``."""

    def with_advantages(
        segment: TensorDictBase,
        value_apply: Callable,
        critic_params: TensorDictBase,
        *,
        gamma: Any,
        lmbda: Any,
    ) -> TensorDictBase:
        def values(where: tuple[str, ...]) -> Tensor:
            obs = segment[(*where, group, "observation")]
            state = segment.get((*where, "state"), None)
            return critic_values(critic_input, value_apply, critic_params, obs, state).detach()

        value, next_value = values(()), values(("next",))  # [E, T, n]

        def per_agent(x: Tensor) -> Tensor:
            return x.unsqueeze(-1).expand(value.shape)

        own = segment.get(("next", group, "reward"), None)  # each agent's reward, where it has one
        advantage, target = gae(
            per_agent(segment["next", "reward"]) if own is None else own,
            value,
            next_value,
            per_agent(segment["next", "terminated"]),
            per_agent(segment["next", "done"]),
            gamma=gamma,
            lmbda=lmbda,
            time_dim=-2,
        )
        out = segment.copy()
        agents = out[group].copy()
        agents["state_value"], agents["advantage"], agents["value_target"] = value, advantage, target
        out[group] = agents
        return out

    return with_advantages


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """MAPPO (or, with :class:`IPPOConfig`, IPPO) on ``config.env_id`` (or on ``env``): a
    :class:`~frl.algos.train.Train` whose ``explore``/``policy`` take the environment's observation
    dict and return one legal action per agent ``[..., n]`` (a masked categorical), or a box of
    actions per agent ``[..., n, D]`` (a diagonal Gaussian, unclipped: the collectors clip what
    the environment receives) on a continuous environment (``vmas:<scenario>``)."""
    env = resolve_env(config, env, IPPOConfig if isinstance(config, IPPOConfig) else Config)
    if config.critic_input == "state" and not getattr(env, "has_state", False):
        raise ValueError(
            f"{config.agent}: critic_input='state' needs a global state; {env.id} has none: "
            "use 'joint' or 'local'"
        )
    if config.critic_input == "team" and not config.share_params:
        raise ValueError(
            f"{config.agent}: critic_input='team' is one value that every agent shares, from one critic; "
            "share_params=False gives each agent its own: use critic_input='joint', or share_params=True"
        )
    group = env.group
    actor_init, actor_apply, critic_init, critic_apply = networks(config, env)
    dist: Any = DIST if env.discrete else DiagGaussian()

    def dist_params(params: TensorDictBase, obs: Any) -> Any:
        out = actor_apply(params["actor"], obs[group]["observation"])
        return (out, obs[group]["action_mask"]) if env.discrete else out

    def explore(params: TensorDictBase, hyperparams: Any, obs: Any, key: Tensor, env_steps: Tensor):
        given = dist_params(params, obs)
        action = dist.sample(key, given)
        return action, dist.log_prob(given, action).detach()

    def policy(params: TensorDictBase, obs: Any) -> Tensor:
        return dist.mode(dist_params(params, obs))

    tx = op.clipped_optimizer(
        optim.adam(config.learning_rate, eps=1e-5), config.max_grad_norm, wrap_optimizer
    )
    loss = bind(
        mappo_loss,
        "actor",
        "critic",
        policy_apply=actor_apply,
        value_apply=critic_apply,
        dist=dist,
        critic_input=config.critic_input,
        group=group,
    )
    chunk = collection_chunk(config.rollout_chunk, config.num_steps, env)
    consumes = Segments(config.num_envs, config.num_steps, chunk, extra=ADVANTAGE_KEYS)
    masks = ("action_mask",) if env.discrete else ()
    keys = tuple((group, k) for k in ("observation", *masks, "action", "action_log_prob", *ADVANTAGE_KEYS))
    keys += ("state",) if getattr(env, "has_state", False) else ()
    updates = config.update_epochs * config.num_minibatches
    order = torch.zeros(updates, config.minibatch_size, dtype=torch.int64)
    actor_net = _Net(actor_init, actor_apply)
    critic_net = _Net(critic_init, critic_apply)
    return Train(
        name=config.agent,
        config=config,
        env=env,
        consumes=consumes,
        build=op.actor_critic_build(
            env,
            actor_net,
            critic_net,
            tx,
            consumes,
            counters={"minibatch": 0},
            scratch=TensorDict({"order": order}, batch_size=[]),
        ),
        collect=(
            Unit(
                "collect",
                make_collect(env, explore, consumes),
                config.num_steps // consumes.chunk,
            ),
        ),
        learn=(
            Unit(
                "advantages",
                ppo.advantages_unit(
                    config, critic_apply, team_advantages(config.critic_input, group), prefix=(group,)
                ),
            ),
            Unit(
                "update",
                ppo.update_unit(config, tx, partial(ppo.clipped_loss, config, loss), keys),
                updates,
                scanned=True,
            ),
        ),
        policy=policy,
        explore=explore,
        factory=make_train_ippo if isinstance(config, IPPOConfig) else make_train,
        parts={"actor": actor_net, "critic": critic_net, "dist": dist, "optimizer": tx, "loss": loss},
    )


def make_train_ippo(config: IPPOConfig, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """IPPO: :func:`make_train` with an :class:`IPPOConfig`."""
    if not isinstance(config, IPPOConfig):
        raise TypeError(f"ippo.make_train: expected an ippo Config (mappo.IPPOConfig), got {type(config)!r}")
    return make_train(config, env, wrap_optimizer=wrap_optimizer)


@dataclass(frozen=True)
class _Net:
    init: Callable[[Tensor], TensorDictBase]
    apply: Callable[..., Tensor]


def evaluate(train: Train, params: TensorDictBase, key: Tensor, episodes: int = 100) -> dict[str, float]:
    """The greedy policy of one member's ``params`` over ``episodes`` episodes side by side (each
    counted until it first ends): mean team return and win rate (``info["win"]`` at the end)."""
    env = train.env
    obs, state = env.reset(key, num_envs=episodes)
    live = torch.ones(episodes, dtype=torch.bool)
    total = torch.zeros(episodes, dtype=torch.float64)
    won = torch.zeros(episodes, dtype=torch.bool)
    for _ in range(env.max_episode_steps):
        key, k_step = random.split(key)
        obs, state, reward, terminated, truncated, info = env.step(k_step, state, train.policy(params, obs))
        total += torch.where(live, reward.double(), 0.0)
        won |= live & info.get("win", torch.zeros_like(live))
        live = live & ~(terminated | truncated)
        if not bool(live.any()):
            break
    return {"return": float(total.mean()), "win_rate": float(won.double().mean())}
