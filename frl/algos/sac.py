"""SAC (Haarnoja et al. 2018) on a pure environment with continuous actions.

The agent of CleanRL's ``sac_continuous_action.py``.

One iteration: COLLECT ``train_frequency`` steps per environment into the replay buffer
(uniform random actions before ``learning_starts``, then samples of the tanh-Gaussian policy),
then LEARN ``gradient_steps`` minibatch steps of ``frl.losses.sac_loss`` (twin critics, the
actor and the temperature ``log_alpha`` in one update, each with its own Adam learning rate),
followed by a Polyak update of the target critics at rate ``tau``. Before ``learning_starts``
the learning step is computed and discarded, so the state stays a pure function of the
iteration count.

One deliberate difference from CleanRL: the actor and temperature update on every step
(CleanRL's ``policy_frequency=2`` delays them and then takes two steps, the same count).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import buffers, envs, nn, optim, random
from frl.algos.base import Train, Unit, check_config, compose, init_state, wrapped_optimizer
from frl.algos.replay import example_transition, make_collect, masked
from frl.distributions import TanhGaussian
from frl.losses import bind, sac_loss
from frl.optim import GradientTransformation
from frl.update import make_update

__all__ = ["Config", "make_train"]


@dataclass(frozen=True)
class Config:
    """SAC settings; defaults are CleanRL's (``sac_continuous_action.py``), with a 20k-step budget
    for Pendulum-v1 (the replay buffer holds the whole run)."""

    env_id: str = "Pendulum-v1"
    total_timesteps: int = 20_000
    num_envs: int = 1
    buffer_size: int = 1_000_000
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    learning_starts: int = 5_000
    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    alpha_lr: float = 1e-3
    init_log_alpha: float = 0.0
    autotune: bool = True
    num_critics: int = 2
    train_frequency: int = 1
    gradient_steps: int = 1
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        check_config(self)
        if self.learning_starts < 0:
            raise ValueError(f"Config: `learning_starts` must be >= 0, got {self.learning_starts}")

    @classmethod
    def preset(cls, env_id: str, **overrides: Any) -> Config:
        """Settings for a built-in environment (MountainCarContinuous: a longer run)."""
        presets = {"MountainCarContinuous-v0": dict(total_timesteps=50_000, learning_starts=1_000)}
        return cls(env_id=env_id, **{**presets.get(env_id, {}), **overrides})


def make_train(
    config: Config,
    env: Any = None,
    *,
    wrap_optimizer: Callable[[GradientTransformation], GradientTransformation] | None = None,
) -> Train:
    """SAC on ``config.env_id`` (continuous actions only), or on ``env`` if given.

    ``wrap_optimizer`` wraps the learner's optimizer (``frl.distributed.all_reduce_gradients`` for
    data-parallel training).
    """
    if not isinstance(config, Config):
        raise TypeError(f"sac.make_train: expected a sac.Config, got {type(config)!r}")
    env = envs.make(config.env_id) if env is None else env
    if getattr(env, "pixels", False):
        raise ValueError(f"sac: pixel observations are not supported ({config.env_id}); use dqn or ppo")
    if env.discrete:
        raise ValueError(f"sac needs continuous actions; {config.env_id} has discrete actions")
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    actor = nn.TanhGaussianPolicy(obs_dim, action_dim, hidden=config.hidden, action_low=low, action_high=high)
    critics = nn.Ensemble(
        nn.ContinuousQNetwork(obs_dim, action_dim, hidden=config.hidden), num=config.num_critics
    )
    dist = TanhGaussian(low, high)
    loss = bind(
        sac_loss,
        "actor",
        "critic",
        "target_critic",
        "log_alpha",
        actor_apply=actor.apply,
        critic_apply=critics.network.apply,
        gamma=config.gamma,
        target_entropy=-float(action_dim),
        dist=dist,
    )
    rates = {"actor": optim.adam(config.policy_lr), "critic": optim.adam(config.q_lr)}
    if config.autotune:
        rates["log_alpha"] = optim.adam(config.alpha_lr)
    learner = make_update(
        loss,
        wrapped_optimizer(optim.partition(**rates), wrap_optimizer),
        trainable=list(rates),
        targets={"target_critic": "critic"},
        tau=config.tau,
    )
    capacity = min(config.buffer_size, config.total_timesteps)
    E = config.num_envs

    def explore(params: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor) -> tuple[Tensor, Tensor]:
        k_policy, k_random = random.split(key)
        action, log_prob = dist.sample_and_log_prob(k_policy, actor.apply(params["actor"], obs))
        uniform = random.uniform(
            k_random,
            tuple(action.shape),
            action.dtype,
            env.action_space.low_tensor(obs.device),
            env.action_space.high_tensor(obs.device),
        )
        return torch.where(env_steps < config.learning_starts, uniform, action.detach()), log_prob.detach()

    def act(state: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor) -> Tensor:
        return explore(state["learner", "params"], obs, key, env_steps)[0]

    def init(key: Tensor) -> TensorDict:
        k_actor, k_critic, k_env, k_run = random.split(key, 4)
        critic = critics.init(k_critic)
        params = TensorDict(
            {
                "actor": actor.init(k_actor),
                "critic": critic,
                "target_critic": critic.clone(),
                "log_alpha": torch.tensor(config.init_log_alpha, dtype=env.dtype),
            },
            batch_size=[],
        )
        return init_state(
            env,
            k_env,
            k_run,
            E,
            learner=learner.init(params),
            buffer=buffers.init(example_transition(env), capacity),
        )

    def learn(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        key, k_sample, k_loss = random.split(state["key"], 3)
        batch = buffers.sample(state["buffer"], k_sample, config.batch_size)
        updated, metrics = learner.step(state["learner"], batch, k_loss)
        learning = state["env_steps"] >= config.learning_starts
        new = state.copy()
        new["learner"] = masked(learning, updated, state["learner"])
        new["key"] = key
        return new, metrics

    units = (
        Unit("collect", make_collect(env, act, config.train_frequency), 1),
        Unit("learn", learn, config.gradient_steps),
    )

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return actor.mode(params["actor"], obs)

    return Train(config, env, init, compose(units), units, config.train_frequency * E, policy, explore)
