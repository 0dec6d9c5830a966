"""Tabular Q-learning and soft Q-learning, as pure agents over a Q-table.

The table is a linear layer on one-hot observations, ``Q(s, .) = onehot(s) @ table``, so the
losses are frl's own: ``dqn_loss`` (Q-learning, Watkins 1989) and ``soft_q_loss`` (soft
Q-learning, Haarnoja et al. 2017), with the target "network" the table as it was before each
update. SGD on the mean squared TD error with step ``learning_rate * num_envs`` is exactly the
tabular update ``Q(s, a) += learning_rate (y - Q(s, a))`` for each of the ``num_envs``
transitions of a step (repeated ``(s, a)`` pairs in one step add up). Both are off-policy: the
behaviour is epsilon-greedy (``exploration="epsilon_greedy"``) or Boltzmann,
``softmax(Q / temperature)`` (``"boltzmann"``). (Boltzmann behaviour with soft Q-learning's own
``alpha`` starves actions whose estimate starts low: measured on a 3-state corridor, their
Q-values stayed 0.6 below the fixed point after 20k steps.)

One iteration is one step of ``num_envs`` environments (a segment ``[E, 1]``) and one update
on its transitions: the behaviour always acts on the current table, as the textbook algorithm.

Their fixed points are ``frl.planning``'s: ``value_iteration(mdp).q_values`` and
``soft_value_iteration(mdp, alpha).q_values`` (tested on a small MDP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import optim, random
from frl.algos.collect import make_collect
from frl.algos.config import AgentConfig, hyper, setting
from frl.algos.spec import TRANSITION_KEYS, Segments
from frl.algos.train import Train, Unit, WrapOptimizer, build_state, resolve_env, wrapped_optimizer
from frl.distributions import epsilon_greedy
from frl.losses import bind, dqn_loss, soft_q_loss
from frl.update import gradient_step, update_targets

__all__ = ["Config", "make_train"]

ALGORITHMS = ("q_learning", "soft_q")
EXPLORATION = ("epsilon_greedy", "boltzmann")


@dataclass(frozen=True)
class Config(AgentConfig):
    """Tabular settings: ``algorithm`` is ``"q_learning"`` or ``"soft_q"`` (entropy temperature
    ``alpha``); ``exploration`` is ``"epsilon_greedy"`` (``epsilon``) or ``"boltzmann"``
    (``temperature``)."""

    agent: ClassVar[str] = "tabular"

    env_id: str = setting("FrozenLake-v1")
    algorithm: str = setting("q_learning", choices=ALGORITHMS)
    total_timesteps: int = setting(200_000, low=1)
    num_envs: int = setting(8, low=1)
    learning_rate: float = hyper(0.1, low=0.0, low_open=True)
    gamma: float = hyper(0.99, low=0.0, high=1.0)
    exploration: str = setting("epsilon_greedy", choices=EXPLORATION)
    epsilon: float = hyper(0.1, low=0.0, high=1.0)
    temperature: float = hyper(0.1, low=0.0, low_open=True)
    alpha: float = hyper(0.05, low=0.0, low_open=True)
    init_q: float = setting(1.0)  # optimistic: unexplored actions look good (FrozenLake's only reward is 1)


def q_apply(table: TensorDictBase, obs: Tensor) -> Tensor:
    """``[..., S]`` one-hot observations -> ``[..., A]`` Q-values."""
    return obs @ table["q"]


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """Q-learning or soft Q-learning on a tabular environment (``frl.envs.TabularEnv``)."""
    env = resolve_env(config, env, Config)
    if not getattr(env, "discrete", False) or not hasattr(env, "num_states"):
        raise ValueError(f"tabular.make_train: {env.id} is not a tabular environment (one-hot states)")
    S, A, E = env.num_states, env.action_space.n, config.num_envs
    tx = wrapped_optimizer(optim.sgd(config.learning_rate), wrap_optimizer)
    consumes = Segments(E, 1, 1)

    def explore(params: TensorDictBase, hp: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor):
        q = q_apply(params["online"], obs)
        if config.exploration == "boltzmann":
            action = random.categorical(key, q / hp["temperature"])
        else:
            action = epsilon_greedy(key, q, hp["epsilon"])
        return action, torch.zeros(action.shape, dtype=env.dtype)

    def init_params(key: Tensor) -> TensorDict:
        table = TensorDict({"q": torch.full((S, A), config.init_q, dtype=env.dtype)}, batch_size=[])
        return TensorDict({"online": table, "target": table.clone()}, batch_size=[])

    def learn(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        """The tabular update on this step's ``E`` transitions; the target is the table before it."""
        hp = state["hyperparams"]
        if config.algorithm == "soft_q":
            loss = bind(
                soft_q_loss, "online", "target", q_apply=q_apply, gamma=hp["gamma"], alpha=hp["alpha"]
            )
        else:
            loss = bind(dqn_loss, "online", "target", q_apply=q_apply, gamma=hp["gamma"])
        params, opt_state, metrics = gradient_step(
            loss,
            tx,
            state["params"],
            state["opt_state"],
            state["data"].select(*TRANSITION_KEYS)[:, 0],
            trainable=["online"],
            hyperparams={"learning_rate": hp["learning_rate"] * E},
        )
        new = state.copy()
        new["params"] = update_targets(params, {"target": "online"}, 1.0)
        new["opt_state"] = opt_state
        new["counters"] = (
            state["counters"].clone(recurse=False).set("updates", state["counters", "updates"] + 1)
        )
        return new, metrics

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return q_apply(params["online"], obs).argmax(-1)

    return Train(
        name="tabular",
        config=config,
        env=env,
        consumes=consumes,
        build=build_state(env, consumes, init_params, tx, trainable=("online",)),
        collect=(Unit("collect", make_collect(env, explore, consumes)),),
        learn=(Unit("learn", learn),),
        policy=policy,
        explore=explore,
        factory=make_train,
    )
