"""REINFORCE with a learned baseline (Williams 1992) on a pure environment.

One iteration:

1. COLLECT ``num_steps`` steps on ``num_envs`` environments with the current stochastic policy;
2. LEARN one gradient step of ``frl.losses.reinforce_loss`` on the whole batch: discounted
   returns ``G_t = r_t + gamma G_{t+1}`` restart at episode ends; a terminated episode adds
   nothing after its last reward, while a truncated one (time limit) and the segment's last step
   bootstrap from the baseline ``b(s')`` of the true next observation (the segment is a window
   onto longer episodes). The baseline regresses onto ``G``; the policy term uses ``G - b(s)``.
   Adam on actor and baseline together, gradient norm clipped.

Fixed-shape segments, not whole episodes, keep the iteration a pure, compilable function; with
``num_steps`` at least the episode length the bootstrap only touches unfinished episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import envs, optim, random
from frl.algos.base import Train, Unit, check_config, check_segments, compose, init_state, wrapped_optimizer
from frl.algos.rollout import actor_critic, clip_action, init_trajectory, make_collect, make_explore
from frl.losses import bind, reinforce_loss
from frl.optim import GradientTransformation
from frl.returns import discounted_returns
from frl.update import make_update

__all__ = ["Config", "make_train"]


@dataclass(frozen=True)
class Config:
    """REINFORCE settings (defaults tuned for CartPole-v1; networks as CleanRL's PPO)."""

    env_id: str = "CartPole-v1"
    total_timesteps: int = 500_000
    num_envs: int = 4
    num_steps: int = 128
    learning_rate: float = 1e-3
    gamma: float = 0.99
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_returns: bool = False
    hidden: tuple[int, ...] = (64, 64)
    log_std_init: float = 0.0
    rollout_chunk: int = 16

    def __post_init__(self) -> None:
        check_config(self)
        check_segments(self)

    @classmethod
    def preset(cls, env_id: str, **overrides: Any) -> Config:
        """Settings for a built-in environment (the defaults everywhere for now)."""
        return cls(env_id=env_id, **overrides)


def make_train(
    config: Config,
    env: Any = None,
    *,
    wrap_optimizer: Callable[[GradientTransformation], GradientTransformation] | None = None,
) -> Train:
    """REINFORCE with a baseline on ``config.env_id`` (discrete or continuous actions).

    ``wrap_optimizer`` wraps the learner's optimizer (``frl.distributed.all_reduce_gradients`` for
    data-parallel training).
    """
    if not isinstance(config, Config):
        raise TypeError(f"reinforce.make_train: expected a reinforce.Config, got {type(config)!r}")
    env = envs.make(config.env_id) if env is None else env
    actor, dist, critic = actor_critic(env, config.hidden, config.log_std_init)
    T, E = config.num_steps, config.num_envs
    loss = bind(
        reinforce_loss,
        "actor",
        "critic",
        policy_apply=actor.apply,
        dist=dist,
        value_apply=critic.apply,
        value_coef=config.value_coef,
        normalize_returns=config.normalize_returns,
    )
    tx = optim.chain(optim.clip_by_global_norm(config.max_grad_norm), optim.adam(config.learning_rate))
    learner = make_update(loss, wrapped_optimizer(tx, wrap_optimizer))

    def init(key: Tensor) -> TensorDict:
        k_actor, k_critic, k_env, k_run = random.split(key, 4)
        params = TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])
        return init_state(
            env,
            k_env,
            k_run,
            E,
            learner=learner.init(params),
            traj=init_trajectory(env, T, E),
            t=torch.zeros((), dtype=torch.int64),
        )

    def learn(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        traj = state["traj"]
        next_value = critic.apply(state["learner", "params", "critic"], traj["final_obs"]).detach()
        # bootstraps from b(s') at cuts only: truncations and the segment's last step
        returns = discounted_returns(
            traj["reward"].T,
            traj["terminated"].T,
            traj["done"].T,
            gamma=config.gamma,
            next_value=next_value.T,
        ).T
        batch = TensorDict(
            {"observation": traj["obs"], "action": traj["action"], "value_target": returns},
            batch_size=[T, E],
        ).reshape(-1)
        learner_state, metrics = learner.step(state["learner"], batch, None)
        new = state.copy()
        new["learner"] = learner_state
        new["t"] = torch.zeros_like(state["t"])
        return new, metrics

    units = (
        Unit(
            "collect", make_collect(env, actor.apply, dist, config.rollout_chunk), T // config.rollout_chunk
        ),
        Unit("learn", learn, 1),
    )

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return clip_action(env, dist.mode(actor.apply(params["actor"], obs)))

    return Train(config, env, init, compose(units), units, T * E, policy, make_explore(actor.apply, dist))
