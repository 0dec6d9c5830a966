"""Partially observable tasks that a policy without memory cannot solve: pure torch, batched.

* :class:`MemoryLength` (bsuite's ``memory_length``, Osband et al. 2020, one bit): a context
  ``+-1`` is shown at the first step only; ``N`` steps later the agent must act on it.
* :class:`CartPoleNoVelocity`: CartPole observing position and angle only; the velocities
  must be inferred from successive observations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.classic_control import CartPole
from frl.envs.spaces import Box, Discrete

__all__ = ["CartPoleNoVelocity", "MemoryLength", "MemoryLengthParams"]


class MemoryLengthParams(NamedTuple):
    """``length``: int64 ``[]``, the episode's steps ``N``."""

    length: Tensor


@dataclass(frozen=True)
class MemoryLength(Environment):
    """Remember one bit for ``length - 1`` steps (bsuite ``memory_length`` with one bit).

    An episode lasts ``N = length`` steps. Observation ``[time_left, context]``: ``time_left =
    1 - t / N`` (the agent knows when the last step comes), ``context = +-1`` at ``t = 0`` and 0
    after. Actions 0 and 1; every step pays 0 except the last, which pays ``+1`` if the action
    equals the context's bit (``(context + 1) / 2``) and ``-1`` otherwise. The optimal return is
    1; a policy of the current observation alone cannot tell the contexts apart at the last step
    and returns 0 in expectation, whatever it does.

    Physics: int64 ``[t, bit]``.
    """

    action_space: ClassVar[Discrete] = Discrete(2)
    observation_space: ClassVar[Box] = Box((0.0, -1.0), (1.0, 1.0), (2,))
    Params: ClassVar[type] = MemoryLengthParams

    length: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"MemoryLength: `length` must be a positive int, got {self.length!r}")

    @property
    def id(self) -> str:  # type: ignore[override]
        """``MemoryLength-v0`` at the default length 10, else ``MemoryLength-<N>-v0``."""
        return "MemoryLength-v0" if self.length == 10 else f"MemoryLength-{self.length}-v0"

    @property
    def max_episode_steps(self) -> int:  # type: ignore[override]
        """``N``: the episode terminates at its last step, never truncated."""
        return self.length

    @property
    def physics_dtype(self) -> torch.dtype:
        return torch.int64

    def default_params(self) -> MemoryLengthParams:
        return MemoryLengthParams(torch.tensor(self.length, dtype=torch.int64))

    def init_physics(self, key: Tensor, params: MemoryLengthParams, batch: tuple[int, ...] = ()) -> Tensor:
        """``[0, bit]``, the bit drawn uniformly."""
        bit = random.randint(key, batch, 0, 2).to(params.length.device)
        return torch.stack([torch.zeros_like(bit), bit], dim=-1)

    def transition(self, physics: Tensor, action: Tensor, params: MemoryLengthParams):
        t, bit = physics.unbind(-1)
        last = t + 1 >= params.length
        sign = torch.where(action == bit, 1.0, -1.0).to(self.dtype)
        reward = torch.where(last, sign, torch.zeros_like(sign))
        return torch.stack([t + 1, bit], dim=-1), reward, last

    def observe(self, physics: Tensor) -> Tensor:
        t, bit = physics.unbind(-1)
        time_left = 1.0 - t.to(self.dtype) / self.length
        context = torch.where(t == 0, (2 * bit - 1).to(self.dtype), torch.zeros_like(time_left))
        return torch.stack([time_left, context], dim=-1)


@dataclass(frozen=True)
class CartPoleNoVelocity(CartPole):
    """CartPole-v1 observing ``[x, theta]`` only (the velocities hidden), a standard memory test
    (e.g. Meng et al. 2021, "Memory-based deep RL for POMDPs"); dynamics, reward and limits are
    CartPole-v1's."""

    id: ClassVar[str] = "CartPoleNoVelocity-v1"
    observation_space: ClassVar[Box] = Box((-4.8, -0.41887903), (4.8, 0.41887903), (2,))

    def observe(self, physics: Tensor) -> Tensor:
        return physics[..., 0::2]
