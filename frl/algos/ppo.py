"""PPO (Schulman et al. 2017) on a pure environment, discrete or continuous actions.

One iteration, as CleanRL's ``ppo.py`` (and ``ppo_continuous_action.py``):

1. COLLECT ``num_steps`` steps on ``num_envs`` environments (units of ``rollout_chunk`` steps);
2. PREPARE values and bootstrap values of the true next observations, GAE (truncated steps
   bootstrap, terminated ones do not), and ``update_epochs`` minibatch permutations;
3. UPDATE: ``update_epochs x num_minibatches`` clipped-surrogate steps (Adam, gradient-norm
   clipping, learning rate annealed linearly to 0 over the run).
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
from frl.losses import bind, ppo_loss
from frl.optim import GradientTransformation
from frl.returns import gae
from frl.update import make_update

__all__ = ["Config", "make_train"]


@dataclass(frozen=True)
class Config:
    """PPO settings; defaults are CleanRL's for CartPole-v1 (``ppo.py``).

    ``Config.preset(env_id)`` gives tuned settings for the other built-in environments.
    """

    env_id: str = "CartPole-v1"
    total_timesteps: int = 500_000
    num_envs: int = 4
    num_steps: int = 128
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    log_std_init: float = 0.0
    rollout_chunk: int = 16

    def __post_init__(self) -> None:
        check_config(self)
        check_segments(self)
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(
                f"Config: `num_envs * num_steps` ({self.num_envs * self.num_steps}) must be divisible by "
                f"`num_minibatches` ({self.num_minibatches})"
            )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size

    @classmethod
    def preset(cls, env_id: str, **overrides: Any) -> Config:
        """Settings known to work on a built-in environment (CartPole: CleanRL's; Pendulum and
        MountainCarContinuous: rl-baselines3-zoo's PPO, gamma 0.9 / 0.99)."""
        presets = {
            "Pendulum-v1": dict(
                num_envs=4,
                num_steps=512,
                learning_rate=1e-3,
                gamma=0.9,
                gae_lambda=0.95,
                update_epochs=10,
                num_minibatches=32,
                ent_coef=0.0,
                clip_coef=0.2,
                max_grad_norm=0.5,
                rollout_chunk=16,
                log_std_init=-0.5,
            ),
            "Acrobot-v1": dict(num_envs=4, num_steps=128, ent_coef=0.0),
            "MountainCarContinuous-v0": dict(
                num_envs=1,
                num_steps=2048,
                learning_rate=3e-4,
                num_minibatches=32,
                update_epochs=10,
                ent_coef=0.0,
            ),
        }
        return cls(env_id=env_id, **{**presets.get(env_id, {}), **overrides})


def make_train(
    config: Config,
    env: Any = None,
    *,
    wrap_optimizer: Callable[[GradientTransformation], GradientTransformation] | None = None,
) -> Train:
    """PPO on ``config.env_id``: ``Train(init, step, units, ...)`` (see ``frl.algos.base``).

    ``wrap_optimizer`` wraps the learner's optimizer (``frl.distributed.all_reduce_gradients`` for
    data-parallel training).
    """
    if not isinstance(config, Config):
        raise TypeError(f"ppo.make_train: expected a ppo.Config, got {type(config)!r}")
    env = envs.make(config.env_id) if env is None else env
    actor, dist, critic = actor_critic(env, config.hidden, config.log_std_init)
    T, E = config.num_steps, config.num_envs
    updates_total = config.num_iterations * config.update_epochs * config.num_minibatches
    lr = (
        optim.linear_schedule(config.learning_rate, 0.0, updates_total)
        if config.anneal_lr
        else config.learning_rate
    )
    tx = optim.chain(optim.clip_by_global_norm(config.max_grad_norm), optim.adam(lr, eps=1e-5))
    loss = bind(
        ppo_loss,
        "actor",
        "critic",
        policy_apply=actor.apply,
        value_apply=critic.apply,
        dist=dist,
        clip_eps=config.clip_coef,
        value_clip_eps=config.clip_coef if config.clip_vloss else None,
        entropy_coef=config.ent_coef,
        value_coef=config.vf_coef,
        normalize_advantage=config.norm_adv,
    )
    learner = make_update(loss, wrapped_optimizer(tx, wrap_optimizer))

    def init(key: Tensor) -> TensorDict:
        k_actor, k_critic, k_env, k_run = random.split(key, 4)
        params = TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])
        traj = init_trajectory(env, T, E)
        return init_state(
            env,
            k_env,
            k_run,
            E,
            learner=learner.init(params),
            traj=traj,
            batch=_flat_batch(traj, torch.zeros(T, E, dtype=env.dtype)),
            perm=torch.zeros(
                config.update_epochs * config.num_minibatches, config.minibatch_size, dtype=torch.int64
            ),
            t=torch.zeros((), dtype=torch.int64),
            update_index=torch.zeros((), dtype=torch.int64),
        )

    def prepare(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        """Values, GAE and this iteration's minibatch permutations."""
        traj = state["traj"]
        critic_params = state["learner", "params", "critic"]
        value = critic.apply(critic_params, traj["obs"]).detach()
        next_value = critic.apply(critic_params, traj["final_obs"]).detach()
        advantage, target = gae(
            traj["reward"].T,
            value.T,
            next_value.T,
            traj["terminated"].T,
            traj["done"].T,
            gamma=config.gamma,
            lmbda=config.gae_lambda,
        )
        key, k_perm = random.split(state["key"])
        # one draw of random sort keys for every epoch (one threefry, cheap to compile)
        perm = torch.argsort(
            random.bits(k_perm, (config.update_epochs, config.batch_size)), dim=-1, stable=True
        )
        new = state.copy()
        new["key"] = key
        new["batch"] = _flat_batch(traj, value, advantage.T, target.T)
        new["perm"] = perm.reshape(config.update_epochs * config.num_minibatches, config.minibatch_size)
        new["t"] = torch.zeros_like(state["t"])
        new["update_index"] = torch.zeros_like(state["update_index"])
        metrics = TensorDict({"value": value.mean(), "advantage": advantage.mean()}, batch_size=[])
        return new, metrics

    def update(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        """One clipped-surrogate step on the next minibatch."""
        i = state["update_index"]
        index = torch.index_select(state["perm"], 0, i.reshape(1)).squeeze(0)
        minibatch = state["batch"].apply(
            lambda x: torch.index_select(x, 0, index), batch_size=[config.minibatch_size]
        )
        learner_state, metrics = learner.step(state["learner"], minibatch, None)
        new = state.copy()
        new["learner"] = learner_state
        new["update_index"] = i + 1
        return new, metrics

    units = (
        Unit(
            "collect", make_collect(env, actor.apply, dist, config.rollout_chunk), T // config.rollout_chunk
        ),
        Unit("prepare", prepare, 1),
        Unit("update", update, config.update_epochs * config.num_minibatches),
    )

    def policy(params: TensorDictBase, obs: Tensor) -> Tensor:
        out = actor.apply(params["actor"], obs)
        return clip_action(env, dist.mode(out))

    return Train(config, env, init, compose(units), units, T * E, policy, make_explore(actor.apply, dist))


def _flat_batch(
    traj: TensorDictBase, value: Tensor, advantage: Tensor | None = None, target: Tensor | None = None
):
    """The ``[T * E]`` training batch in ``frl.losses`` layout."""
    zeros = torch.zeros_like(value)
    flat = TensorDict(
        {
            "observation": traj["obs"],
            "action": traj["action"],
            "action_log_prob": traj["log_prob"],
            "state_value": value,
            "advantage": zeros if advantage is None else advantage,
            "value_target": zeros if target is None else target,
        },
        batch_size=traj.batch_size,
    )
    return flat.reshape(-1)
