"""SAC (Haarnoja et al. 2018) on a pure environment with continuous actions.

The agent of CleanRL's ``sac_continuous_action.py``.

One iteration: COLLECT ``train_frequency`` steps per environment into the replay buffer
(uniform random actions before ``learning_starts``, then samples of the tanh-Gaussian policy),
then LEARN ``gradient_steps`` minibatch steps of ``frl.losses.sac_loss`` (twin critics, the
actor and the temperature ``log_alpha`` in one update, each with its own Adam learning rate),
each followed by a Polyak update of the target critics at rate ``tau``. Before
``learning_starts`` the learning step would change nothing and the driver skips it.

One deliberate difference from CleanRL: the actor and temperature update on every step
(CleanRL's ``policy_frequency=2`` delays them and then takes two steps, the same count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import nn, optim, random
from frl.algos import train as agent
from frl.algos.collect import make_collect
from frl.algos.config import AgentConfig, hyper, setting
from frl.algos.networks import vector_observations
from frl.algos.replay import make_replay_learn
from frl.algos.spec import Replay
from frl.algos.train import Train, Unit, WrapOptimizer
from frl.distributions import TanhGaussian
from frl.losses import bind, sac_loss
from frl.update import update_targets

__all__ = ["Config", "make_train"]

RATES = {"actor": "policy_lr", "critic": "q_lr", "log_alpha": "alpha_lr"}
"""Each trained parameter group and the hyper-parameter that is its learning rate."""


@dataclass(frozen=True)
class Config(AgentConfig):
    """SAC settings; defaults are CleanRL's (``sac_continuous_action.py``), with a 20k-step budget
    for Pendulum-v1 (the replay buffer holds the whole run)."""

    agent: ClassVar[str] = "sac"

    env_id: str = setting("Pendulum-v1")
    total_timesteps: int = setting(20_000, low=1)
    num_envs: int = setting(1, low=1)
    buffer_size: int = setting(1_000_000, low=1)
    gamma: float = hyper(0.99, low=0.0, high=1.0)
    tau: float = hyper(0.005, low=0.0, high=1.0)
    batch_size: int = setting(256, low=1)
    learning_starts: int = setting(5_000, low=0)
    policy_lr: float = hyper(3e-4, low=0.0, low_open=True)
    q_lr: float = hyper(1e-3, low=0.0, low_open=True)
    alpha_lr: float = hyper(1e-3, low=0.0, low_open=True)
    init_log_alpha: float = setting(0.0)
    autotune: bool = setting(True)
    num_critics: int = setting(2, low=1)
    train_frequency: int = setting(1, low=1)
    gradient_steps: int = setting(1, low=1)
    hidden: tuple[int, ...] = setting((256, 256))


def make_train(config: Config, env: Any = None, *, wrap_optimizer: WrapOptimizer = None) -> Train:
    """SAC on ``config.env_id`` (continuous actions only), or on ``env`` if given."""
    env = agent.resolve_env(config, env, Config, discrete=False)
    obs_dim, action_dim = vector_observations(env, "sac"), env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    if not all(math.isfinite(v) for v in (*low, *high)):
        raise ValueError(
            f"sac squashes actions into their bounds; {env.id} has unbounded actions (low {list(low)}, "
            f"high {list(high)}): give the environment finite bounds (gymnasium.wrappers.RescaleAction)"
        )
    actor = nn.TanhGaussianPolicy(obs_dim, action_dim, hidden=config.hidden, action_low=low, action_high=high)
    critics = nn.Ensemble(
        nn.ContinuousQNetwork(obs_dim, action_dim, hidden=config.hidden), num=config.num_critics
    )
    dist = TanhGaussian(low, high)
    trained = [k for k in RATES if config.autotune or k != "log_alpha"]
    tx = agent.wrapped_optimizer(optim.partition(**{k: optim.adam(1e-3) for k in trained}), wrap_optimizer)
    consumes = Replay(
        config.num_envs,
        config.train_frequency,
        capacity=min(config.buffer_size, config.total_timesteps),
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
    )

    def explore(params: TensorDictBase, hp: TensorDictBase, obs: Tensor, key: Tensor, env_steps: Tensor):
        k_policy, k_random = random.split(key)
        action, log_prob = dist.sample_and_log_prob(k_policy, actor.apply(params["actor"], obs))
        space = env.action_space
        uniform = random.uniform(
            k_random,
            tuple(action.shape),
            action.dtype,
            space.low_tensor(obs.device),
            space.high_tensor(obs.device),
        )
        return torch.where(env_steps < config.learning_starts, uniform, action.detach()), log_prob.detach()

    def init_params(key: Tensor) -> TensorDict:
        k_actor, k_critic = random.split(key)
        critic = critics.init(k_critic)
        return TensorDict(
            {
                "actor": actor.init(k_actor),
                "critic": critic,
                "target_critic": critic.clone(),
                "log_alpha": torch.tensor(config.init_log_alpha, dtype=env.dtype),
            },
            batch_size=[],
        )

    loss = bind(
        sac_loss,
        "actor",
        "critic",
        "target_critic",
        "log_alpha",
        actor_apply=actor.apply,
        critic_apply=critics.network.apply,
        target_entropy=-float(action_dim),
        dist=dist,
    )

    def learn_step(state: TensorDictBase, batch: TensorDictBase, key: Tensor):
        hp = state["hyperparams"]
        rates = {k: {"learning_rate": hp[RATES[k]]} for k in trained}
        step = partial(loss, gamma=hp["gamma"])
        params, opt_state, metrics = agent.gradient_update(
            state, step, tx, batch, key, trainable=trained, hyperparams=rates
        )
        return update_targets(params, {"target_critic": "critic"}, hp["tau"]), opt_state, metrics

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        return actor.mode(params["actor"], obs)

    return Train(
        name="sac",
        config=config,
        env=env,
        consumes=consumes,
        build=agent.build_state(env, consumes, init_params, tx, trainable=tuple(trained)),
        collect=(Unit("collect", make_collect(env, explore, consumes)),),
        learn=(Unit("learn", make_replay_learn(consumes, learn_step), config.gradient_steps),),
        policy=policy,
        explore=explore,
        factory=make_train,
    )
