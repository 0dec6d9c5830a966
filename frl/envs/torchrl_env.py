"""A frl pure environment as a TorchRL ``EnvBase``: ``to_torchrl(env, num_envs=4, seed=0)``.

TorchRL resets finished environments itself (``step_and_maybe_reset``: the step's ``next``
holds the true last observation, then ``_reset`` with a ``"_reset"`` mask), while a frl
environment resets them inside ``step`` (same-step auto-reset). The adapter bridges the two
without extra work: ``_step`` returns ``info["final_observation"]`` as ``next.observation`` and
keeps the already-reset state; a masked ``_reset`` then hands out those next-episode
observations. A reset without a mask draws fresh episodes. Keys come from the seed
(``_set_seed``) by ``fold_in`` of a call counter, so a seeded TorchRL rollout is reproducible.

Works for the built-in environments and for :class:`frl.interop.jax.GymnaxEnv`; the
environment's spaces become TorchRL specs (``Bounded``/``Unbounded`` observations,
``Categorical`` or ``Bounded`` actions, ``done``/``terminated``/``truncated`` flags).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from frl import random
from frl.envs.spaces import Box, Discrete

__all__ = ["TorchRLEnv", "to_torchrl"]


def _obs_spec(space: Box, batch: tuple[int, ...], dtype: torch.dtype) -> Any:
    shape = (*batch, *space.shape)
    low, high = space.low_tensor().to(dtype), space.high_tensor().to(dtype)
    if all(math.isfinite(v) for v in (*space.low, *space.high)) and all(abs(v) < 1e30 for v in space.high):
        return Bounded(low=low.expand(shape), high=high.expand(shape), shape=shape, dtype=dtype)
    return Unbounded(shape=shape, dtype=dtype)


class TorchRLEnv(EnvBase):
    """``num_envs`` copies of a pure frl environment behind TorchRL's ``EnvBase`` (batch ``[num_envs]``).

    Args:
      env: a pure environment (``reset(key, num_envs=)``, ``step(key, state, action)``, spaces).
      num_envs: environments stepped together (the TorchRL batch size).
      seed: the seed of the key stream (``set_seed`` changes it).
      device: where tensors live.
    """

    def __init__(self, env: Any, num_envs: int = 1, seed: int = 0, device: Any = "cpu") -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"TorchRLEnv: `num_envs` must be a positive int, got {num_envs!r}")
        if not hasattr(env, "reset") or not hasattr(env, "step") or getattr(env, "make_env", None):
            raise TypeError(
                f"TorchRLEnv: `env` must be a pure frl environment, got {type(env).__name__} "
                "(a gym:<id> environment is a TorchRL env already: env.make_env())"
            )
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.frl_env = env
        self.num_envs = num_envs
        batch = (num_envs,)
        self.observation_spec = Composite(
            observation=_obs_spec(env.observation_space, batch, env.dtype), shape=batch, device=device
        )
        space = env.action_space
        if isinstance(space, Discrete):
            self.action_spec = Categorical(space.n, shape=batch, dtype=torch.int64, device=device)
        else:
            shape = (*batch, *space.shape)
            low, high = space.low_tensor().to(env.dtype), space.high_tensor().to(env.dtype)
            self.action_spec = Bounded(
                low=low.expand(shape), high=high.expand(shape), shape=shape, device=device
            )
        self.reward_spec = Unbounded(shape=(*batch, 1), dtype=env.dtype, device=device)
        flag = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=device)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=batch
        )
        self._key = random.key(seed)
        self._calls = 0
        self._state: dict[str, torch.Tensor] | None = None
        self._obs: torch.Tensor | None = None
        self._done = torch.zeros(num_envs, dtype=torch.bool)

    def _next_key(self) -> torch.Tensor:
        self._calls += 1
        return random.fold_in(self._key, self._calls)

    def _set_seed(self, seed: int | None) -> None:
        self._key = random.key(0 if seed is None else int(seed))
        self._calls = 0

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = tensordict.get("_reset", None) if tensordict is not None else None
        if mask is None or self._state is None:
            self._obs, self._state = self.frl_env.reset(self._next_key(), num_envs=self.num_envs)
        else:
            # the environments that finished were reset by the last step already; running ones
            # asked to reset get fresh episodes
            fresh = mask.reshape(self.num_envs).to(torch.bool) & ~self._done
            if bool(fresh.any()):
                obs, state = self.frl_env.reset(self._next_key(), num_envs=self.num_envs)
                self._obs = torch.where(fresh.reshape(-1, *[1] * (obs.dim() - 1)), obs, self._obs)
                self._state = {
                    k: torch.where(fresh.reshape(-1, *[1] * (v.dim() - 1)), v, self._state[k])
                    for k, v in state.items()
                }
        self._done = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        flags = torch.zeros(self.num_envs, 1, dtype=torch.bool, device=self.device)
        return TensorDict(
            {
                "observation": self._obs.clone(),
                "done": flags,
                "terminated": flags.clone(),
                "truncated": flags.clone(),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._state is None:
            raise RuntimeError("TorchRLEnv: call reset() before step()")
        action = tensordict.get("action")
        obs, state, reward, terminated, truncated, info = self.frl_env.step(
            self._next_key(), self._state, action
        )
        self._obs, self._state, self._done = obs, state, terminated | truncated
        return TensorDict(
            {
                "observation": info["final_observation"],
                "reward": reward.unsqueeze(-1),
                "done": (terminated | truncated).unsqueeze(-1),
                "terminated": terminated.unsqueeze(-1),
                "truncated": truncated.unsqueeze(-1),
            },
            batch_size=self.batch_size,
            device=self.device,
        )


def to_torchrl(env: Any, num_envs: int = 1, seed: int = 0, device: Any = "cpu") -> TorchRLEnv:
    """``TorchRLEnv(env, num_envs, seed, device)``: a pure environment for TorchRL collectors."""
    return TorchRLEnv(env, num_envs=num_envs, seed=seed, device=device)
