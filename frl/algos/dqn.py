"""DQN (Mnih et al. 2015) on a pure environment, as CleanRL's ``dqn.py``.

One iteration: COLLECT ``train_frequency`` epsilon-greedy steps per environment into the replay
buffer (epsilon decays linearly from ``start_e`` to ``end_e`` over ``exploration_fraction`` of
the run), then LEARN one minibatch step (from ``learning_starts`` on; before that the step
would change nothing and the driver skips it). Every
``target_network_frequency`` environment steps the target network moves to
``tau * online + (1 - tau) * target`` (CleanRL's soft-or-hard update: ``tau = 1`` copies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import nn, optim
from frl.algos import train as agent
from frl.algos.collect import make_collect
from frl.algos.config import AgentConfig, hyper, setting
from frl.algos.replay import linear_epsilon, make_replay_learn, q_learning_step
from frl.algos.spec import Replay
from frl.algos.train import Train, Unit, WrapOptimizer
from frl.distributions import epsilon_greedy, greedy
from frl.losses import bind, dqn_loss

__all__ = ["Config", "make_train"]


@dataclass(frozen=True)
class Config(AgentConfig):
    """DQN settings; defaults are CleanRL's for CartPole-v1 (``dqn.py``)."""

    agent: ClassVar[str] = "dqn"

    env_id: str = setting("CartPole-v1")
    total_timesteps: int = setting(500_000, low=1)
    learning_rate: float = hyper(2.5e-4, low=0.0, low_open=True)
    num_envs: int = setting(1, low=1)
    buffer_size: int = setting(10_000, low=1)
    gamma: float = hyper(0.99, low=0.0, high=1.0)
    tau: float = hyper(1.0, low=0.0, high=1.0)
    target_network_frequency: int = setting(500, low=1)
    batch_size: int = setting(128, low=1)
    start_e: float = hyper(1.0, low=0.0, high=1.0)
    end_e: float = hyper(0.05, low=0.0, high=1.0)
    exploration_fraction: float = hyper(0.5, low=0.0, high=1.0)
    learning_starts: int = setting(10_000, low=0)
    train_frequency: int = setting(10, low=1)
    hidden: tuple[int, ...] = setting((120, 84))
    double: bool = setting(False)
    loss: str = setting("mse", choices=("mse", "huber"))

    def check(self) -> None:
        if self.target_network_frequency % self.train_frequency:
            raise ValueError(
                f"dqn.Config: `target_network_frequency` ({self.target_network_frequency}) must be a "
                "multiple of "
                f"`train_frequency` ({self.train_frequency})"
            )


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """DQN on ``config.env_id`` (discrete actions only), or on ``env`` if given (e.g. a
    ``frl.envs.make("gym:<id>", ...)`` with options). Pixel observations get the Nature CNN, MinAtar
    frames MinAtar's CNN."""
    env = agent.resolve_env(config, env, Config, discrete=True)
    if getattr(env, "pixels", False) and getattr(env, "torso", "nature") == "minatar":
        q: Any = nn.ConvNetwork(tuple(env.observation_space.shape), env.action_space.n, "minatar")
    elif getattr(env, "pixels", False):
        q = nn.ConvQNetwork(tuple(env.observation_space.shape), env.action_space.n)
    else:
        q = nn.QNetwork(env.observation_space.shape[0], env.action_space.n, hidden=config.hidden)
    period = config.target_network_frequency // config.train_frequency  # in updates
    tx = agent.wrapped_optimizer(optim.adam(config.learning_rate), wrap_optimizer)
    consumes = Replay(
        config.num_envs,
        config.train_frequency,
        capacity=min(config.buffer_size, config.total_timesteps),
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
    )

    epsilon = linear_epsilon(config.total_timesteps)

    def explore(params: TensorDictBase, hp: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor):
        action = epsilon_greedy(key, q.apply(params["online"], obs), epsilon(hp, env_steps))
        return action, torch.zeros(action.shape, dtype=env.dtype, device=action.device)

    def init_params(key: Tensor) -> TensorDict:
        online = q.init(key)
        return TensorDict({"online": online, "target": online.clone()}, batch_size=[])

    loss = bind(dqn_loss, "online", "target", q_apply=q.apply, double=config.double, loss=config.loss)

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return greedy(q.apply(params["online"], obs))

    return Train(
        name="dqn",
        config=config,
        env=env,
        consumes=consumes,
        build=agent.build_state(env, consumes, init_params, tx, trainable=("online",)),
        collect=(Unit("collect", make_collect(env, explore, consumes)),),
        learn=(Unit("learn", make_replay_learn(consumes, q_learning_step(loss, tx, period, epsilon))),),
        policy=policy,
        explore=explore,
        factory=make_train,
    )
