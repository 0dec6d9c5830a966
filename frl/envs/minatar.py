"""MinAtar games (Young & Tian 2019, "MinAtar: an Atari-inspired testbed for thorough and
reproducible reinforcement learning experiments") as pure, batched torch environments.

Each game follows the ``minatar`` package (1.0.15, ``minatar/environments/<game>.py``) rule for
rule: ``tests/test_minatar.py`` steps the package and frl side by side from the same states with
the same actions and compares every frame, reward and termination over thousands of steps.
Observations are the package's ``10 x 10 x channels`` frames (float32 0/1, channels last);
actions are the minimal action set (``MinAtar/<Game>-v1``); sticky actions repeat the previous
action with probability ``sticky_action_prob`` (MinAtar's 0.1), drawn from the step's key. Two
differences from the package, both for a pure, batched environment: the previous action used by
sticky actions starts at "no-op" with every episode (the package keeps it across resets), and
episodes are truncated at ``max_episode_steps`` (the package has no limit; gymnax uses 1000 too).

Built: Breakout. Asterix, Freeway, SpaceInvaders and Seaquest are still to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.spaces import Box, Discrete

__all__ = ["Breakout", "BreakoutParams"]


@dataclass(frozen=True)
class BreakoutParams:
    sticky_action_prob: float = 0.1

    def __post_init__(self) -> None:
        p = self.sticky_action_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"BreakoutParams: `sticky_action_prob` must lie in [0, 1], got {p!r}")


# ball directions 0: up-left, 1: up-right, 2: down-right, 3: down-left (the package's numbering)
_DX = (-1.0, 1.0, 1.0, -1.0)
_DY = (-1.0, -1.0, 1.0, 1.0)
_FLIP_X = (1, 0, 3, 2)  # off a side wall
_FLIP_Y = (3, 2, 1, 0)  # off the top, a brick, or the paddle's centre
_PADDLE_EDGE = (2, 3, 0, 1)  # off the paddle's corner: back the way it came


def _lookup(table: tuple, index: Tensor, like: Tensor) -> Tensor:
    return torch.tensor(table, dtype=like.dtype, device=like.device)[index.long()]


@dataclass(frozen=True)
class Breakout(Environment):
    """MinAtar Breakout: a paddle on the bottom row bounces a ball into 3 rows of bricks.

    +1 per brick; the ball moves diagonally, reflects off walls, bricks and the paddle (off its
    corner back the way it came); a cleared wall is rebuilt when the ball next reaches the bottom
    row; the episode ends when the paddle misses. Channels: paddle, ball, trail (the ball's last
    cell, which shows its direction), brick. Actions: 0 no-op, 1 left, 2 right.

    Physics ``[ball_x, ball_y, ball_dir, paddle, strike, last_x, last_y, last_action, bricks
    (100, row-major)]`` as floats (small integers, exact).
    """

    id: ClassVar[str] = "Breakout-MinAtar"
    max_episode_steps: ClassVar[int] = 1000
    observation_space: ClassVar[Box] = Box((0.0,) * 400, (1.0,) * 400, (10, 10, 4))
    action_space: ClassVar[Discrete] = Discrete(3)
    Params: ClassVar[type] = BreakoutParams
    random_transition: ClassVar[bool] = True
    pixels: ClassVar[bool] = True
    """Image observations (agents pick a convolutional torso)."""
    torso: ClassVar[str] = "minatar"
    """Which one: MinAtar's small CNN (:class:`frl.nn.MinAtarCNN`)."""

    def init_physics(self, key: Tensor, params: BreakoutParams, batch: tuple[int, ...] = ()) -> Tensor:
        right = random.randint(key, batch, 0, 2).to(self.dtype)  # 0: from the left wall, 1: the right
        ball_x, ball_dir = 9.0 * right, 2.0 + right
        full = torch.full(batch, 1.0, dtype=self.dtype, device=key.device)
        bricks = torch.zeros((*batch, 10, 10), dtype=self.dtype, device=key.device)
        bricks[..., 1:4, :] = 1.0
        scalars = [ball_x, 3.0 * full, ball_dir, 4.0 * full, 0.0 * full, ball_x, 3.0 * full, 0.0 * full]
        return torch.cat([torch.stack(scalars, -1), bricks.flatten(-2)], -1)

    def observe(self, physics: Tensor) -> Tensor:
        ball_x, ball_y, _, paddle, _, last_x, last_y = physics[..., :7].long().unbind(-1)
        cells = torch.arange(100, device=physics.device)
        frame = torch.stack(
            [
                cells == (90 + paddle).unsqueeze(-1),
                cells == (ball_y * 10 + ball_x).unsqueeze(-1),
                cells == (last_y * 10 + last_x).unsqueeze(-1),
                physics[..., 8:] > 0.5,
            ],
            -1,
        )
        return frame.to(self.dtype).unflatten(-2, (10, 10))

    def transition(self, physics: Tensor, action: Tensor, params: BreakoutParams, key: Tensor):
        ball_x, ball_y, direction, paddle, strike, _, _, last_action = physics[..., :8].unbind(-1)
        bricks = physics[..., 8:]
        sticky = random.uniform(key, tuple(ball_x.shape), self.dtype) < params.sticky_action_prob
        action = torch.where(sticky, last_action, action.to(self.dtype))
        paddle = torch.where(action == 1, torch.clamp(paddle - 1, min=0), paddle)
        paddle = torch.where(action == 2, torch.clamp(paddle + 1, max=9), paddle)
        new_x = ball_x + _lookup(_DX, direction, physics)
        new_y = ball_y + _lookup(_DY, direction, physics)
        side = (new_x < 0) | (new_x > 9)
        new_x = torch.clamp(new_x, 0, 9)
        direction = torch.where(side, _lookup(_FLIP_X, direction, physics), direction)
        top = new_y < 0
        new_y = torch.where(top, torch.zeros_like(new_y), new_y)
        direction = torch.where(top, _lookup(_FLIP_Y, direction, physics), direction)
        cell = (torch.clamp(new_y, 0, 9) * 10 + new_x).long()
        brick_here = ~top & (torch.gather(bricks, -1, cell.unsqueeze(-1)).squeeze(-1) > 0.5)
        hit = brick_here & (strike < 0.5)
        cleared = (torch.arange(100, device=physics.device) == cell.unsqueeze(-1)) & hit.unsqueeze(-1)
        bricks = torch.where(cleared, torch.zeros_like(bricks), bricks)
        new_y = torch.where(hit, ball_y, new_y)
        direction = torch.where(hit, _lookup(_FLIP_Y, direction, physics), direction)
        bottom = ~top & ~brick_here & (new_y == 9)
        rebuild = bottom & (bricks.sum(-1) == 0)
        rows = (torch.arange(100, device=physics.device) >= 10) & (
            torch.arange(100, device=physics.device) < 40
        )
        bricks = torch.where(rebuild.unsqueeze(-1) & rows, torch.ones_like(bricks), bricks)
        centre = bottom & (ball_x == paddle)
        corner = bottom & ~centre & (new_x == paddle)
        direction = torch.where(centre, _lookup(_FLIP_Y, direction, physics), direction)
        direction = torch.where(corner, _lookup(_PADDLE_EDGE, direction, physics), direction)
        new_y = torch.where(centre | corner, ball_y, new_y)
        terminated = bottom & ~centre & ~corner
        strike = brick_here.to(self.dtype)
        scalars = [new_x, new_y, direction, paddle, strike, ball_x, ball_y, action]
        next_physics = torch.cat([torch.stack(scalars, -1), bricks], -1)
        return next_physics, hit.to(self.dtype), terminated
