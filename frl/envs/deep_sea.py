"""DeepSea (bsuite; Osband et al. 2020, "Behaviour Suite for Reinforcement Learning"): a pure
torch version, batched over sizes.

An ``N x N`` grid; the agent starts in the top-left cell and every step moves it one row down,
one column left or right, so an episode lasts exactly ``N`` steps (it terminates on leaving the
last row). Moving right costs ``0.01 / N``; moving right from the last column (which only the
path that went right at every step reaches, on the last row) pays ``+1``. The optimal return is
``1 - 0.01 = 0.99``; any other path returns ``<= 0``, and a policy that moves right with
probability ``1/2`` finds the reward once in ``2^N`` episodes: dithering exploration fails as
``N`` grows, which is what the environment measures. As bsuite's ``deep_sea`` (deterministic,
``randomize_actions=True``), which action means "right" is drawn per cell (from
``mapping_seed``), so a policy cannot solve it by repeating one action.

Observation: the one-hot cell ``[G * G]`` of a ``G x G`` grid (``G = grid``, default ``N``;
all zeros after the last step, as bsuite). Sizes are data: :meth:`DeepSea.params_for` gives the
parameters of an ``n x n`` sea (``n <= G``) on the same grid, so ``torch.func.vmap`` over a
stack of them steps several sizes in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.spaces import Box, Discrete

__all__ = ["DeepSea", "DeepSeaParams"]


class DeepSeaParams(NamedTuple):
    """``size``: int64 ``[]``, the sea's side ``n``; ``mapping``: int64 ``[G, G]``, the action that
    moves right in each cell (0 or 1)."""

    size: Tensor
    mapping: Tensor


@dataclass(frozen=True)
class DeepSea(Environment):
    """DeepSea (module docstring).

    Attributes:
      size: the sea's side ``N`` (an episode is ``N`` steps).
      grid: the observation grid's side ``G >= N`` (default ``N``); a larger grid lets seas of
        several sizes share one observation shape (:meth:`params_for`).
      randomize_actions: draw the meaning of the actions per cell; else action 1 is always right.
      mapping_seed: the seed of that draw.
      move_cost: the total cost of moving right at every step (``move_cost / N`` per step).
    """

    action_space: ClassVar[Discrete] = Discrete(2)
    Params: ClassVar[type] = DeepSeaParams

    size: int = 10
    grid: int | None = None
    randomize_actions: bool = True
    mapping_seed: int = 0
    move_cost: float = 0.01

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"DeepSea: `size` must be a positive int, got {self.size!r}")
        if self.grid is not None and (
            isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < self.size
        ):
            raise ValueError(f"DeepSea: `grid` must be an int >= size ({self.size}), got {self.grid!r}")
        if not isinstance(self.move_cost, (int, float)) or self.move_cost < 0:
            raise ValueError(f"DeepSea: `move_cost` must be a non-negative number, got {self.move_cost!r}")
        cells = self.side * self.side
        object.__setattr__(self, "observation_space", Box((0.0,) * cells, (1.0,) * cells, (cells,)))

    @property
    def id(self) -> str:  # type: ignore[override]
        """``DeepSea-v0`` at the default size 10, else ``DeepSea-<N>-v0`` (``frl.envs.make`` takes both)."""
        return "DeepSea-v0" if self.size == 10 else f"DeepSea-{self.size}-v0"

    @property
    def side(self) -> int:
        """The observation grid's side ``G``."""
        return self.size if self.grid is None else self.grid

    @property
    def max_episode_steps(self) -> int:  # type: ignore[override]
        """``G``: never reached before the episode terminates (after ``N <= G`` steps)."""
        return self.side

    @property
    def physics_dtype(self) -> torch.dtype:
        return torch.int64

    def params_for(self, size: int) -> DeepSeaParams:
        """The parameters of an ``size x size`` sea on this grid (the same action mapping)."""
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= self.side:
            raise ValueError(f"DeepSea.params_for: `size` must be an int in [1, {self.side}], got {size!r}")
        G = self.side
        if self.randomize_actions:
            mapping = (random.uniform(random.key(self.mapping_seed), (G, G)) < 0.5).to(torch.int64)
        else:
            mapping = torch.ones(G, G, dtype=torch.int64)
        return DeepSeaParams(torch.tensor(size, dtype=torch.int64), mapping)

    def default_params(self) -> DeepSeaParams:
        return self.params_for(self.size)

    def init_physics(self, key: Tensor, params: DeepSeaParams, batch: tuple[int, ...] = ()) -> Tensor:
        """``[row, column]`` = ``[0, 0]``."""
        return torch.zeros(*batch, 2, dtype=torch.int64, device=params.mapping.device)

    def transition(self, physics: Tensor, action: Tensor, params: DeepSeaParams):
        row, col = physics.unbind(-1)
        size = params.size
        last = self.side - 1
        right = action == params.mapping[row.clamp(max=last), col]
        reward = (right & (col == size - 1)).to(self.dtype)
        reward = reward - right.to(self.dtype) * (self.move_cost / size.to(self.dtype))
        col = torch.where(right, torch.minimum(col + 1, size - 1), (col - 1).clamp(min=0))
        terminated = row + 1 >= size
        row = torch.where(terminated, torch.full_like(row, self.side), row + 1)  # row G: out of the sea
        return torch.stack([row, col], -1), reward, terminated

    def observe(self, physics: Tensor) -> Tensor:
        """The one-hot cell ``[G * G]`` (zeros once the agent has left the last row)."""
        row, col = physics.unbind(-1)
        G = self.side
        inside = row < G
        cell = torch.where(inside, row.clamp(max=G - 1) * G + col, torch.zeros_like(row))
        onehot = torch.nn.functional.one_hot(cell, G * G).to(self.dtype)
        return onehot * inside.unsqueeze(-1).to(self.dtype)
