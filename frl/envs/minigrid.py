"""MiniGrid's DoorKey (Chevalier-Boisvert et al. 2023, "Minigrid & Miniworld: modular &
customizable reinforcement learning environments for goal-oriented tasks") as a pure, batched
torch environment.

An ``N x N`` room walled all round and split by a vertical wall at a random column; the agent
starts at a random cell and heading on the left, with a yellow key somewhere on the left too; the
only way right is a locked yellow door in the split wall, which opens (``toggle``) while the agent
carries the key; the goal is the bottom-right cell. Reaching it pays ``1 - 0.9 t / T`` (``t`` the
step count, ``T = 10 N^2`` the step limit) and ends the episode; there is no other reward: the
agent has to find the key, pick it up, open the door and walk to the goal before a random policy
would ever score, which is what makes DoorKey-8x8 a sparse-reward benchmark.

It follows the ``minigrid`` package (3.x, ``minigrid/envs/doorkey.py`` and ``minigrid_env.py``)
rule for rule, so that ``tests/test_minigrid.py`` steps the package and frl side by side from the
same layouts with the same actions and compares every observation, reward and flag:

* actions ``0`` turn left, ``1`` turn right, ``2`` forward, ``3`` pick up, ``4`` drop, ``5``
  toggle, ``6`` done (no effect); headings ``0`` east, ``1`` south, ``2`` west, ``3`` north;
* forward moves onto an empty cell, the goal or an open door; ``toggle`` opens the locked door
  with the key and otherwise opens or closes the unlocked door; the key can be dropped on any
  empty cell in front;
* the observation is the package's partial view (``agent_view_size`` 7, walls and closed doors
  hide what lies behind them, ``Grid.process_vis``): ``7 x 7`` cells of ``(object, colour,
  state)`` codes, turned so the agent looks up from the bottom-middle cell (which shows the
  carried key, or nothing), flattened to 147 floats in the package's ``[column, row, code]``
  order: what ``gym:MiniGrid-DoorKey-8x8-v0`` observes through frl (``ImgObsWrapper``, then
  flattened).

The layout is drawn as the package draws it (split column ``[2, N - 3]``, door row
``[1, N - 3]``, agent and key uniform on distinct cells of the left room, heading uniform), from
frl's keys rather than numpy's generator. Physics ``[x, y, heading, split, door_row, door_state
(0 open, 1 closed, 2 locked), key_x, key_y, carrying, steps]`` (int64; the key at ``(-1, -1)``
while carried).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.spaces import Box, Discrete

__all__ = ["DOOR_KEY", "DoorKey", "DoorKeyParams", "view_visibility_tables"]

VIEW = 7
"""The agent's view side (MiniGrid's ``agent_view_size``)."""

# MiniGrid's codes (minigrid/core/constants.py)
EMPTY, WALL, DOOR, KEY, GOAL = 1, 2, 4, 5, 8
GREEN, YELLOW, GREY = 1, 4, 5
OPEN, CLOSED, LOCKED = 0, 1, 2

DOOR_KEY = {f"MiniGrid-DoorKey-{n}x{n}-v0": n for n in (5, 6, 8, 16)}
"""The ids MiniGrid registers for DoorKey, served by :class:`DoorKey` of that size."""


class DoorKeyParams(NamedTuple):
    """DoorKey has no physical constants: its layout is drawn at reset (an empty params)."""


def view_visibility_tables() -> tuple[Tensor, Tensor]:
    """MiniGrid's occlusion sweep (``Grid.process_vis``) for one view row, tabulated.

    The sweep walks the view's rows from the agent's (the bottom) up; in a row it spreads
    visibility right, then left, from every visible cell that does not block sight (walls and
    closed doors do), and marks the row above at that cell and its neighbour in the direction of
    the walk. Which cells of a row end visible, and which cells of the row above it marks, depend
    only on the row's cells marked from below and its see-through cells: ``2^7 x 2^7`` cases.

    Returns:
      ``(visible, above)``: int64 ``[2^14]`` bit masks over the row's 7 columns (bit ``i``:
      column ``i``), indexed by ``marked << 7 | see_through``.
    """
    index = np.arange(1 << (2 * VIEW))
    column = np.arange(VIEW)
    mask = ((index[:, None] >> VIEW) >> column & 1).astype(bool)
    clear = (index[:, None] >> column & 1).astype(bool)
    above = np.zeros_like(mask)
    for i in range(VIEW - 1):  # spread right
        go = mask[:, i] & clear[:, i]
        mask[:, i + 1] |= go
        above[:, i + 1] |= go
        above[:, i] |= go
    for i in range(VIEW - 1, 0, -1):  # then left
        go = mask[:, i] & clear[:, i]
        mask[:, i - 1] |= go
        above[:, i - 1] |= go
        above[:, i] |= go
    weights = 1 << column
    return torch.from_numpy(mask @ weights), torch.from_numpy(above @ weights)


_VISIBLE, _ABOVE = view_visibility_tables()  # built once: traced code only indexes them


def _heading(direction: Tensor) -> tuple[Tensor, Tensor]:
    """MiniGrid's ``DIR_TO_VEC``: ``(dx, dy)`` of headings east, south, west, north."""
    one, zero = torch.ones_like(direction), torch.zeros_like(direction)
    dx = torch.where(direction == 0, one, torch.where(direction == 2, -one, zero))
    dy = torch.where(direction == 1, one, torch.where(direction == 3, -one, zero))
    return dx, dy


@dataclass(frozen=True)
class DoorKey(Environment):
    """MiniGrid DoorKey (module docstring).

    Attributes:
      size: the room's side ``N`` (walls included; MiniGrid registers 5, 6, 8 and 16). The step
        limit is MiniGrid's ``10 N^2``.
    """

    action_space: ClassVar[Discrete] = Discrete(7)
    observation_space: ClassVar[Box] = Box((0.0,) * 147, (10.0,) * 147, (147,))
    Params: ClassVar[type] = DoorKeyParams

    size: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 5:
            raise ValueError(f"DoorKey: `size` must be an int >= 5 (walls included), got {self.size!r}")

    @property
    def id(self) -> str:  # type: ignore[override]
        """MiniGrid's id, ``MiniGrid-DoorKey-<N>x<N>-v0``."""
        return f"MiniGrid-DoorKey-{self.size}x{self.size}-v0"

    @property
    def max_episode_steps(self) -> int:  # type: ignore[override]
        """MiniGrid's ``max_steps = 10 N^2``."""
        return 10 * self.size * self.size

    @property
    def physics_dtype(self) -> torch.dtype:
        return torch.int64

    # -- layout --------------------------------------------------------------------------

    def init_physics(self, key: Tensor, params: DoorKeyParams, batch: tuple[int, ...] = ()) -> Tensor:
        """The package's layout: split column, door row, then the agent and the key on distinct
        cells of the left room (uniform, as its rejection sampling), and a uniform heading."""
        n = self.size
        k_split, k_door, k_agent, k_key, k_dir = random.split(key, 5)
        split = random.randint(k_split, batch, 2, n - 2)
        door = random.randint(k_door, batch, 1, n - 2)
        cells = (split - 1) * (n - 2)  # the left room's free cells: columns 1..split-1, rows 1..n-2
        agent = random.randint(k_agent, batch, 0, cells)
        key_cell = random.randint(k_key, batch, 0, cells - 1)
        key_cell = key_cell + (key_cell >= agent).to(key_cell.dtype)
        direction = random.randint(k_dir, batch, 0, 4)
        zero = torch.zeros_like(split)
        locked = torch.full_like(split, LOCKED)
        columns = [
            1 + agent // (n - 2),
            1 + agent % (n - 2),
            direction,
            split,
            door,
            locked,
            1 + key_cell // (n - 2),
            1 + key_cell % (n - 2),
            zero,
            zero,
        ]
        return torch.stack(columns, -1)

    def _cells(
        self, x: Tensor, y: Tensor, layout: tuple[Tensor, ...]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(wall, door, goal, key)`` masks of the cells ``(x, y)``; ``layout`` = ``(split,
        door_row, key_x, key_y, carrying)`` broadcasting against them. Cells off the grid are
        walls, as in MiniGrid's ``Grid.slice``."""
        n = self.size
        split, door_row, key_x, key_y, carrying = layout
        border = (x <= 0) | (x >= n - 1) | (y <= 0) | (y >= n - 1)
        in_split = x == split
        door = in_split & (y == door_row)
        wall = border | (in_split & ~door)
        goal = (x == n - 2) & (y == n - 2)
        key = (carrying == 0) & (x == key_x) & (y == key_y)
        return wall, door, goal, key

    # -- dynamics ------------------------------------------------------------------------

    def transition(self, physics: Tensor, action: Tensor, params: DoorKeyParams):
        x, y, direction, split, door_row, door_state, key_x, key_y, carrying, steps = physics.unbind(-1)
        action = action.to(physics.dtype)
        dx, dy = _heading(direction)
        fx, fy = x + dx, y + dy
        wall, door, goal, key = self._cells(fx, fy, (split, door_row, key_x, key_y, carrying))
        empty = ~(wall | door | goal | key)
        direction = torch.where(action == 0, (direction + 3) % 4, direction)
        direction = torch.where(action == 1, (direction + 1) % 4, direction)
        forward = action == 2
        move = forward & (empty | goal | (door & (door_state == OPEN)))
        x, y = torch.where(move, fx, x), torch.where(move, fy, y)
        terminated = forward & goal
        picked = (action == 3) & key
        dropped = (action == 4) & empty & (carrying == 1)
        toggle = (action == 5) & door
        unlock = toggle & (door_state == LOCKED) & (carrying == 1)
        swing = toggle & (door_state != LOCKED)
        door_state = torch.where(unlock, torch.full_like(door_state, OPEN), door_state)
        door_state = torch.where(swing, 1 - door_state, door_state)
        carrying = torch.where(picked, torch.ones_like(carrying), carrying)
        carrying = torch.where(dropped, torch.zeros_like(carrying), carrying)
        gone = torch.full_like(key_x, -1)  # a carried key is nowhere on the grid
        key_x, key_y = torch.where(picked, gone, key_x), torch.where(picked, gone, key_y)
        key_x, key_y = torch.where(dropped, fx, key_x), torch.where(dropped, fy, key_y)
        steps = steps + 1
        score = 1.0 - 0.9 * steps.to(self.dtype) / self.max_episode_steps
        reward = torch.where(terminated, score, torch.zeros_like(score))
        columns = [x, y, direction, split, door_row, door_state, key_x, key_y, carrying, steps]
        return torch.stack(columns, -1), reward, terminated

    def observe(self, physics: Tensor) -> Tensor:
        """The agent's partial view, ``[147]`` floats (module docstring)."""
        device = physics.device
        cell = torch.arange(VIEW * VIEW, device=device)
        column, row = cell // VIEW, cell % VIEW  # the flattened view's [column, row] order
        ahead, aside = (VIEW - 1) - row, column - VIEW // 2
        x, y, direction, door_state, carrying = (physics[..., i].unsqueeze(-1) for i in (0, 1, 2, 5, 8))
        dx, dy = _heading(direction)
        wx = x + ahead * dx - aside * dy  # the agent's right is its heading turned clockwise
        wy = y + ahead * dy + aside * dx
        layout = tuple(physics[..., i].unsqueeze(-1) for i in (3, 4, 6, 7, 8))
        wall, door, goal, key = self._cells(wx, wy, layout)
        zero = torch.zeros_like(wx)
        kind = torch.where(
            wall, WALL, torch.where(door, DOOR, torch.where(goal, GOAL, torch.where(key, KEY, EMPTY)))
        )
        colour = torch.where(wall, GREY, torch.where(door | key, YELLOW, torch.where(goal, GREEN, zero)))
        state = torch.where(door, door_state, zero)
        visible = self._visible(wall | (door & (door_state != OPEN)))
        me = cell == (VIEW // 2) * VIEW + VIEW - 1  # the agent's own cell shows what it carries
        carried = carrying == 1
        kind = torch.where(me, torch.where(carried, KEY, EMPTY), kind)
        colour = torch.where(me, torch.where(carried, YELLOW, 0), colour)
        state = torch.where(me, 0, state)
        codes = torch.stack([kind, colour, state], -1) * visible.unsqueeze(-1).to(kind.dtype)
        return codes.flatten(-2).to(self.dtype)

    def _visible(self, blocks: Tensor) -> Tensor:
        """MiniGrid's visibility mask of the view ``[..., 49]`` (``[column, row]`` order) whose
        cells ``blocks`` sight, row by row from the agent's through :func:`view_visibility_tables`."""
        visible_table, above_table = _VISIBLE.to(blocks.device), _ABOVE.to(blocks.device)
        weights = 1 << torch.arange(VIEW, device=blocks.device)
        clear = ((~blocks).to(torch.int64).unflatten(-1, (VIEW, VIEW)) * weights.unsqueeze(-1)).sum(-2)
        marked = torch.full_like(clear[..., 0], 1 << (VIEW // 2))  # the agent's cell
        rows = []
        for r in range(VIEW - 1, -1, -1):
            index = marked * (1 << VIEW) + clear[..., r]
            rows.append(visible_table[index])
            marked = above_table[index]
        seen = torch.stack(rows[::-1], -1)  # [..., row] bit masks over columns
        return (seen.unsqueeze(-2) >> torch.arange(VIEW, device=blocks.device).unsqueeze(-1) & 1).flatten(
            -2
        ) == 1
