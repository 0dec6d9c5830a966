"""Tabular Q-learning and soft Q-learning, as pure agents over a Q-table.

The table is a linear layer on one-hot observations, ``Q(s, .) = onehot(s) @ table``, so the
losses are frl's own: ``dqn_loss`` (Q-learning, Watkins 1989) and ``soft_q_loss`` (soft
Q-learning, Haarnoja et al. 2017), with the target "network" a copy of the table taken before
each update. SGD on the mean squared TD error with step ``learning_rate * num_envs`` is exactly
the tabular update ``Q(s, a) += learning_rate (y - Q(s, a))`` for each of the ``num_envs``
transitions of a step (repeated ``(s, a)`` pairs in one step add up). Both are off-policy:
the behaviour is epsilon-greedy (``exploration="epsilon_greedy"``) or Boltzmann,
``softmax(Q / temperature)`` (``"boltzmann"``), whichever the algorithm. (Boltzmann behaviour
with soft Q-learning's own ``alpha`` starves actions whose estimate starts low: measured on a
3-state corridor, their Q-values stayed 0.6 below the fixed point after 20k steps.)

Their fixed points are ``frl.planning``'s: ``value_iteration(mdp).q_values`` and
``soft_value_iteration(mdp, alpha).q_values`` (tested on a small MDP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import envs, optim, random
from frl.algos.base import (
    Train,
    Unit,
    check_config,
    compose,
    episode_metrics,
    episode_stats,
    init_state,
    wrapped_optimizer,
)
from frl.algos.rollout import STATS
from frl.distributions import epsilon_greedy
from frl.losses import bind, dqn_loss, soft_q_loss
from frl.optim import GradientTransformation
from frl.update import make_update

__all__ = ["Config", "make_train"]

ALGORITHMS = ("q_learning", "soft_q")
EXPLORATION = ("epsilon_greedy", "boltzmann")


@dataclass(frozen=True)
class Config:
    """Tabular settings: ``algorithm`` is ``"q_learning"`` or ``"soft_q"`` (entropy temperature
    ``alpha``); ``exploration`` is ``"epsilon_greedy"`` (``epsilon``) or ``"boltzmann"``
    (``temperature``)."""

    env_id: str = "FrozenLake-v1"
    algorithm: str = "q_learning"
    total_timesteps: int = 200_000
    num_envs: int = 8
    rollout_chunk: int = 16
    learning_rate: float = 0.1
    gamma: float = 0.99
    exploration: str = "epsilon_greedy"
    epsilon: float = 0.1
    temperature: float = 0.1
    alpha: float = 0.05
    init_q: float = 1.0  # optimistic: unexplored actions look good (FrozenLake's only reward is 1)

    def __post_init__(self) -> None:
        check_config(self)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"Config: `algorithm` must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"Config: `epsilon` must lie in [0, 1], got {self.epsilon}")
        if self.exploration not in EXPLORATION:
            raise ValueError(f"Config: `exploration` must be one of {EXPLORATION}, got {self.exploration!r}")
        if self.alpha <= 0 or self.temperature <= 0:
            raise ValueError(
                f"Config: `alpha` and `temperature` must be positive, got {self.alpha}, {self.temperature}"
            )

    @classmethod
    def preset(cls, env_id: str, **overrides: Any) -> Config:
        return cls(env_id=env_id, **overrides)


def q_apply(table: TensorDictBase, obs: Tensor) -> Tensor:
    """``[..., S]`` one-hot observations -> ``[..., A]`` Q-values."""
    return obs @ table["q"]


def make_train(
    config: Config,
    env: Any = None,
    *,
    wrap_optimizer: Callable[[GradientTransformation], GradientTransformation] | None = None,
) -> Train:
    """Q-learning or soft Q-learning on a tabular environment (``frl.envs.TabularEnv``).

    ``wrap_optimizer`` wraps the learner's optimizer (``frl.distributed.all_reduce_gradients`` for
    data-parallel training).
    """
    if not isinstance(config, Config):
        raise TypeError(f"tabular.make_train: expected a tabular.Config, got {type(config)!r}")
    env = envs.make(config.env_id) if env is None else env
    if not getattr(env, "discrete", False) or not hasattr(env, "num_states"):
        raise ValueError(f"tabular.make_train: {env.id} is not a tabular environment (one-hot states)")
    S, A, E = env.num_states, env.action_space.n, config.num_envs
    soft = config.algorithm == "soft_q"
    if soft:
        loss = bind(soft_q_loss, "online", "target", q_apply=q_apply, gamma=config.gamma, alpha=config.alpha)
    else:
        loss = bind(dqn_loss, "online", "target", q_apply=q_apply, gamma=config.gamma)
    learner = make_update(
        loss,
        wrapped_optimizer(optim.sgd(config.learning_rate * E), wrap_optimizer),
        targets={"target": "online"},
        target_period=1,
    )

    def init(key: Tensor) -> TensorDict:
        k_env, k_run = random.split(key)
        table = TensorDict({"q": torch.full((S, A), config.init_q, dtype=env.dtype)}, batch_size=[])
        params = TensorDict({"online": table, "target": table.clone()}, batch_size=[])
        return init_state(env, k_env, k_run, E, learner=learner.init(params))

    def act(table: TensorDictBase, obs: Tensor, key: Tensor) -> Tensor:
        q = q_apply(table, obs)
        if config.exploration == "boltzmann":
            return random.categorical(key, q / config.temperature)
        return epsilon_greedy(key, q, config.epsilon)

    def act_and_learn(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        key = state["key"]
        obs = state["env", "obs"]
        env_state = {k: state["env", "state", k] for k in env.state_names}
        stats = {k: state["stats", k] for k in STATS}
        learner_state = state["learner"]
        metrics = TensorDict({}, batch_size=[])
        for _ in range(config.rollout_chunk):
            key, k_act, k_env = random.split(key, 3)
            action = act(learner_state["params", "online"], obs, k_act)
            next_obs, env_state, reward, terminated, truncated, info = env.step(k_env, env_state, action)
            done = terminated | truncated
            batch = TensorDict(
                {
                    "observation": obs,
                    "action": action,
                    "next": {
                        "observation": info["final_observation"],
                        "reward": reward,
                        "terminated": terminated,
                        "truncated": truncated,
                        "done": done,
                    },
                },
                batch_size=[E],
            )
            learner_state, metrics = learner.step(learner_state, batch, None)
            stats = episode_stats(stats, reward, done)
            obs = next_obs
        new = state.copy()
        new["key"] = key
        new["learner"] = learner_state
        new["env"] = TensorDict({"state": env_state, "obs": obs}, batch_size=[])
        new["stats"] = TensorDict(stats, batch_size=[])
        new["env_steps"] = state["env_steps"] + config.rollout_chunk * E
        return new, TensorDict({**metrics.to_dict(), **episode_metrics(stats).to_dict()}, batch_size=[])

    units = (Unit("act_and_learn", act_and_learn, 1),)

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return q_apply(params["online"], obs).argmax(-1)

    def explore(params: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor) -> tuple[Tensor, Tensor]:
        action = act(params["online"], obs, key)
        return action, torch.zeros(action.shape, dtype=env.dtype)

    return Train(config, env, init, compose(units), units, config.rollout_chunk * E, policy, explore)
