"""DQN (Mnih et al. 2015) on a pure environment, as CleanRL's ``dqn.py``.

One iteration: COLLECT ``train_frequency`` epsilon-greedy steps per environment into the replay
buffer (epsilon decays linearly from ``start_e`` to ``end_e`` over ``exploration_fraction`` of
the run), then LEARN one minibatch step (from ``learning_starts`` on; before that the step is
computed and discarded, so the state stays a pure function of the iteration count). The
target network is copied every ``target_network_frequency`` environment steps (``tau = 1``) or
Polyak-averaged at rate ``tau`` after every update.
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
from frl.distributions import epsilon_greedy, greedy
from frl.losses import bind, dqn_loss
from frl.optim import GradientTransformation
from frl.update import make_update

__all__ = ["Config", "make_train"]


@dataclass(frozen=True)
class Config:
    """DQN settings; defaults are CleanRL's for CartPole-v1 (``dqn.py``)."""

    env_id: str = "CartPole-v1"
    total_timesteps: int = 500_000
    learning_rate: float = 2.5e-4
    num_envs: int = 1
    buffer_size: int = 10_000
    gamma: float = 0.99
    tau: float = 1.0
    target_network_frequency: int = 500
    batch_size: int = 128
    start_e: float = 1.0
    end_e: float = 0.05
    exploration_fraction: float = 0.5
    learning_starts: int = 10_000
    train_frequency: int = 10
    hidden: tuple[int, ...] = (120, 84)
    double: bool = False
    loss: str = "mse"

    def __post_init__(self) -> None:
        check_config(self)
        for name in ("start_e", "end_e", "exploration_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Config: `{name}` must lie in [0, 1], got {value}")
        if self.loss not in ("mse", "huber"):
            raise ValueError(f"Config: `loss` must be 'mse' or 'huber', got {self.loss!r}")
        if self.target_network_frequency % self.train_frequency:
            raise ValueError(
                f"Config: `target_network_frequency` ({self.target_network_frequency}) must be a multiple of "
                f"`train_frequency` ({self.train_frequency})"
            )

    @classmethod
    def preset(cls, env_id: str, **overrides: Any) -> Config:
        """Settings for a built-in environment (CleanRL's CartPole settings elsewhere too; Atari
        ids ``ALE/...``: CleanRL's ``dqn_atari.py``)."""
        presets = {
            "Acrobot-v1": dict(
                learning_rate=6.3e-4,
                buffer_size=50_000,
                target_network_frequency=250,
                exploration_fraction=0.12,
                end_e=0.1,
                learning_starts=0,
                train_frequency=5,
                hidden=(256, 256),
            ),
            "MountainCar-v0": dict(
                learning_rate=4e-3,
                buffer_size=10_000,
                target_network_frequency=600,
                exploration_fraction=0.2,
                end_e=0.07,
                learning_starts=1000,
                train_frequency=15,
                hidden=(256, 256),
                batch_size=128,
                gamma=0.98,
            ),
        }
        if env_id.removeprefix("gym:").startswith("ALE/"):
            # CleanRL's dqn_atari.py, with a 100k buffer (1M uint8 frame stacks need ~56 GB)
            presets[env_id] = dict(
                total_timesteps=10_000_000,
                learning_rate=1e-4,
                buffer_size=100_000,
                target_network_frequency=1000,
                batch_size=32,
                end_e=0.01,
                exploration_fraction=0.1,
                learning_starts=80_000,
                train_frequency=4,
            )
        return cls(env_id=env_id, **{**presets.get(env_id, {}), **overrides})


def make_train(
    config: Config,
    env: Any = None,
    *,
    wrap_optimizer: Callable[[GradientTransformation], GradientTransformation] | None = None,
) -> Train:
    """DQN on ``config.env_id`` (discrete actions only), or on ``env`` if given (e.g. a
    ``frl.envs.make("gym:<id>", ...)`` with options). Pixel observations get the Nature CNN.

    ``wrap_optimizer`` wraps the learner's optimizer (``frl.distributed.all_reduce_gradients`` for
    data-parallel training).
    """
    if not isinstance(config, Config):
        raise TypeError(f"dqn.make_train: expected a dqn.Config, got {type(config)!r}")
    env = envs.make(config.env_id) if env is None else env
    if not env.discrete:
        raise ValueError(f"dqn needs discrete actions; {config.env_id} has continuous actions")
    if getattr(env, "pixels", False):
        q: Any = nn.ConvQNetwork(tuple(env.observation_space.shape), env.action_space.n)
    else:
        q = nn.QNetwork(env.observation_space.shape[0], env.action_space.n, hidden=config.hidden)
    loss = bind(
        dqn_loss,
        "online",
        "target",
        q_apply=q.apply,
        gamma=config.gamma,
        double=config.double,
        loss=config.loss,
    )
    period = config.target_network_frequency // config.train_frequency
    tx = wrapped_optimizer(optim.adam(config.learning_rate), wrap_optimizer)
    if config.tau == 1.0:
        learner = make_update(loss, tx, targets={"target": "online"}, target_period=period)
    else:
        learner = make_update(loss, tx, targets={"target": "online"}, tau=config.tau)
    capacity = min(config.buffer_size, config.total_timesteps)
    decay_steps = max(1.0, config.exploration_fraction * config.total_timesteps)

    def epsilon(env_steps: Tensor) -> Tensor:
        frac = torch.clamp(env_steps.to(torch.float32) / decay_steps, max=1.0)
        return config.start_e + frac * (config.end_e - config.start_e)

    def explore(params: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor) -> tuple[Tensor, Tensor]:
        action = epsilon_greedy(key, q.apply(params["online"], obs), epsilon(env_steps))
        return action, torch.zeros(action.shape, dtype=torch.float32, device=action.device)

    def act(state: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor) -> Tensor:
        return explore(state["learner", "params"], obs, key, env_steps)[0]

    def init(key: Tensor) -> TensorDict:
        k_q, k_env, k_run = random.split(key, 3)
        online = q.init(k_q)
        params = TensorDict({"online": online, "target": online.clone()}, batch_size=[])
        return init_state(
            env,
            k_env,
            k_run,
            config.num_envs,
            learner=learner.init(params),
            buffer=buffers.init(example_transition(env), capacity),
        )

    def learn(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        key, k_sample = random.split(state["key"])
        batch = buffers.sample(state["buffer"], k_sample, config.batch_size)
        updated, metrics = learner.step(state["learner"], batch, None)
        learning = state["env_steps"] >= config.learning_starts
        new = state.copy()
        new["learner"] = masked(learning, updated, state["learner"])
        new["key"] = key
        metrics = metrics.copy()
        metrics["epsilon"] = epsilon(state["env_steps"])
        return new, metrics

    units = (
        Unit("collect", make_collect(env, act, config.train_frequency), 1),
        Unit("learn", learn, 1),
    )

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return greedy(q.apply(params["online"], obs))

    steps = config.train_frequency * config.num_envs
    return Train(config, env, init, compose(units), units, steps, policy, explore)
