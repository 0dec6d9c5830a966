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

Built: Breakout, SpaceInvaders. Asterix, Freeway and Seaquest are still to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.spaces import Box, Discrete

__all__ = ["Breakout", "MinAtarParams", "SpaceInvaders"]


@dataclass(frozen=True)
class MinAtarParams:
    """What varies a MinAtar game: the probability that the previous action repeats."""

    sticky_action_prob: float = 0.1

    def __post_init__(self) -> None:
        p = self.sticky_action_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"MinAtarParams: `sticky_action_prob` must lie in [0, 1], got {p!r}")


def _sticky(key: Tensor, action: Tensor, last_action: Tensor, params: MinAtarParams) -> Tensor:
    """The action the game applies: the previous one with probability ``sticky_action_prob``."""
    repeat = random.uniform(key, tuple(last_action.shape), last_action.dtype) < params.sticky_action_prob
    return torch.where(repeat, last_action, action.to(last_action.dtype))


@dataclass(frozen=True)
class _MinAtar(Environment):
    """What the games share: 10 x 10 frames, MinAtar's CNN, sticky actions from the step's key."""

    Params: ClassVar[type] = MinAtarParams
    random_transition: ClassVar[bool] = True
    max_episode_steps: ClassVar[int] = 1000
    pixels: ClassVar[bool] = True
    """Image observations (agents pick a convolutional torso)."""
    torso: ClassVar[str] = "minatar"
    """Which one: MinAtar's small CNN (:class:`frl.nn.MinAtarCNN`)."""


# ball directions 0: up-left, 1: up-right, 2: down-right, 3: down-left (the package's numbering)
_DX = (-1.0, 1.0, 1.0, -1.0)
_DY = (-1.0, -1.0, 1.0, 1.0)
_FLIP_X = (1, 0, 3, 2)  # off a side wall
_FLIP_Y = (3, 2, 1, 0)  # off the top, a brick, or the paddle's centre
_PADDLE_EDGE = (2, 3, 0, 1)  # off the paddle's corner: back the way it came


def _lookup(table: tuple, index: Tensor, like: Tensor) -> Tensor:
    return torch.tensor(table, dtype=like.dtype, device=like.device)[index.long()]


@dataclass(frozen=True)
class Breakout(_MinAtar):
    """MinAtar Breakout: a paddle on the bottom row bounces a ball into 3 rows of bricks.

    +1 per brick; the ball moves diagonally, reflects off walls, bricks and the paddle (off its
    corner back the way it came); a cleared wall is rebuilt when the ball next reaches the bottom
    row; the episode ends when the paddle misses. Channels: paddle, ball, trail (the ball's last
    cell, which shows its direction), brick. Actions: 0 no-op, 1 left, 2 right.

    Physics ``[ball_x, ball_y, ball_dir, paddle, strike, last_x, last_y, last_action, bricks
    (100, row-major)]`` as floats (small integers, exact).
    """

    id: ClassVar[str] = "Breakout-MinAtar"
    observation_space: ClassVar[Box] = Box((0.0,) * 400, (1.0,) * 400, (10, 10, 4))
    action_space: ClassVar[Discrete] = Discrete(3)

    def init_physics(self, key: Tensor, params: MinAtarParams, batch: tuple[int, ...] = ()) -> Tensor:
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

    def transition(self, physics: Tensor, action: Tensor, params: MinAtarParams, key: Tensor):
        ball_x, ball_y, direction, paddle, strike, _, _, last_action = physics[..., :8].unbind(-1)
        bricks = physics[..., 8:]
        action = _sticky(key, action, last_action, params)
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


_SHOT_COOL_DOWN, _ENEMY_MOVE_INTERVAL, _ENEMY_SHOT_INTERVAL = 5, 12, 10


def _wave(like: Tensor) -> Tensor:
    """A fresh wave of aliens, rows 0-3 x columns 2-7, flat ``[100]``."""
    cells = torch.arange(100, device=like.device)
    rows, cols = cells // 10, cells % 10
    return ((rows < 4) & (cols >= 2) & (cols < 8)).to(like.dtype)


def _grid(x: Tensor) -> Tensor:
    return x.unflatten(-1, (10, 10))


@dataclass(frozen=True)
class SpaceInvaders(_MinAtar):
    """MinAtar SpaceInvaders: a cannon on the bottom row shoots a wave of aliens that marches
    sideways, steps down at the walls and shoots back.

    +1 per alien shot; the cannon's shots need 5 steps to recharge; the aliens move every
    ``min(aliens left, move interval)`` steps (faster as they thin out), the nearest column's
    lowest alien fires every 10 steps; a cleared wave respawns, each (with ramping) one step
    faster down to 6; the episode ends when an alien or an alien's shot reaches the cannon.
    Channels: cannon, alien, alien moving left, alien moving right, cannon shot, alien shot.
    Actions: 0 no-op, 1 left, 2 right, 3 fire.

    Physics ``[pos, alien_dir, move_interval, move_timer, alien_shot_timer, shot_timer, ramp,
    last_action, aliens (100), cannon shots (100), alien shots (100)]`` as floats.
    """

    id: ClassVar[str] = "SpaceInvaders-MinAtar"
    observation_space: ClassVar[Box] = Box((0.0,) * 600, (1.0,) * 600, (10, 10, 6))
    action_space: ClassVar[Discrete] = Discrete(4)

    ramping: bool = True
    """Each new wave moves faster (MinAtar's ``difficulty_ramping``)."""

    def init_physics(self, key: Tensor, params: MinAtarParams, batch: tuple[int, ...] = ()) -> Tensor:
        one = torch.ones(batch, dtype=self.dtype, device=key.device)
        scalars = [5.0 * one, -one, 12.0 * one, 12.0 * one, 10.0 * one, 0.0 * one, 0.0 * one, 0.0 * one]
        aliens = _wave(one).expand(*batch, 100)
        empty = torch.zeros((*batch, 100), dtype=self.dtype, device=key.device)
        return torch.cat([torch.stack(scalars, -1), aliens, empty, empty], -1)

    def observe(self, physics: Tensor) -> Tensor:
        pos, direction = physics[..., 0], physics[..., 1]
        aliens, shots, enemy = physics[..., 8:108], physics[..., 108:208], physics[..., 208:308]
        cannon = (torch.arange(100, device=physics.device) == (90 + pos.long()).unsqueeze(-1)).to(self.dtype)
        left = (direction < 0).to(self.dtype).unsqueeze(-1)
        frame = torch.stack([cannon, aliens, aliens * left, aliens * (1 - left), shots, enemy], -1)
        return frame.unflatten(-2, (10, 10))

    def transition(self, physics: Tensor, action: Tensor, params: MinAtarParams, key: Tensor):
        pos, direction, interval, move_timer, alien_shot_timer, shot_timer, ramp, last_action = physics[
            ..., :8
        ].unbind(-1)
        aliens, shots, enemy = (
            _grid(physics[..., 8:108]),
            _grid(physics[..., 108:208]),
            _grid(physics[..., 208:308]),
        )
        action = _sticky(key, action, last_action, params)
        cols = torch.arange(10, device=physics.device)
        rows = cols.unsqueeze(-1)
        at_cannon = (rows == 9) & (cols == pos.long().unsqueeze(-1).unsqueeze(-1))  # [*, 10, 10]

        fire = (action == 3) & (shot_timer == 0)
        shots = torch.where(fire.unsqueeze(-1).unsqueeze(-1) & at_cannon, torch.ones_like(shots), shots)
        shot_timer = torch.where(fire, torch.full_like(shot_timer, _SHOT_COOL_DOWN), shot_timer)
        pos = torch.where(~fire & (action == 1), torch.clamp(pos - 1, min=0), pos)
        pos = torch.where(~fire & (action == 2), torch.clamp(pos + 1, max=9), pos)
        at_cannon = (rows == 9) & (cols == pos.long().unsqueeze(-1).unsqueeze(-1))

        shots = torch.roll(shots, -1, dims=-2) * (rows != 9)
        enemy = torch.roll(enemy, 1, dims=-2) * (rows != 0)
        terminal = (enemy * at_cannon).sum((-1, -2)) > 0
        terminal = terminal | ((aliens * at_cannon).sum((-1, -2)) > 0)

        move = move_timer == 0
        count = aliens.sum((-1, -2))
        move_timer = torch.where(move, torch.minimum(count, interval), move_timer)
        at_wall = ((aliens[..., :, 0].sum(-1) > 0) & (direction < 0)) | (
            (aliens[..., :, 9].sum(-1) > 0) & (direction > 0)
        )
        turn, march = move & at_wall, move & ~at_wall
        terminal = terminal | (turn & (aliens[..., 9, :].sum(-1) > 0))
        direction = torch.where(turn, -direction, direction)
        down = torch.roll(aliens, 1, dims=-2)
        sideways = torch.where(
            (direction > 0).unsqueeze(-1).unsqueeze(-1),
            torch.roll(aliens, 1, dims=-1),
            torch.roll(aliens, -1, dims=-1),
        )
        aliens = torch.where(turn.unsqueeze(-1).unsqueeze(-1), down, aliens)
        aliens = torch.where(march.unsqueeze(-1).unsqueeze(-1), sideways, aliens)
        terminal = terminal | (move & ((aliens * at_cannon).sum((-1, -2)) > 0))

        fires_back = alien_shot_timer == 0
        alien_shot_timer = torch.where(
            fires_back, torch.full_like(alien_shot_timer, _ENEMY_SHOT_INTERVAL), alien_shot_timer
        )
        occupied = aliens.sum(-2) > 0  # [*, 10] columns with aliens
        priority = (cols - pos.unsqueeze(-1)).abs() * 2 + (cols > pos.unsqueeze(-1))  # nearest, then left
        column = torch.argmin(torch.where(occupied, priority, torch.full_like(priority, 1e9)), dim=-1)
        lowest = torch.argmax(torch.where(aliens > 0, rows.to(aliens.dtype), -1.0), dim=-2)  # [*, 10]
        row = torch.gather(lowest, -1, column.unsqueeze(-1)).squeeze(-1)
        shooter = (rows == row.unsqueeze(-1).unsqueeze(-1)) & (cols == column.unsqueeze(-1).unsqueeze(-1))
        enemy = torch.where(
            (fires_back & occupied.any(-1)).unsqueeze(-1).unsqueeze(-1) & shooter,
            torch.ones_like(enemy),
            enemy,
        )

        kills = (aliens > 0) & (shots > 0)
        reward = kills.sum((-1, -2)).to(self.dtype)
        aliens = torch.where(kills, torch.zeros_like(aliens), aliens)
        shots = torch.where(kills, torch.zeros_like(shots), shots)

        shot_timer = shot_timer - (shot_timer > 0).to(self.dtype)
        move_timer = move_timer - 1
        alien_shot_timer = alien_shot_timer - 1
        cleared = aliens.sum((-1, -2)) == 0
        faster = cleared & (interval > 6) & self.ramping
        interval = interval - faster.to(self.dtype)
        ramp = ramp + faster.to(self.dtype)
        aliens = torch.where(cleared.unsqueeze(-1).unsqueeze(-1), _grid(_wave(aliens)), aliens)

        scalars = [pos, direction, interval, move_timer, alien_shot_timer, shot_timer, ramp, action]
        grids = [aliens.flatten(-2), shots.flatten(-2), enemy.flatten(-2)]
        return torch.cat([torch.stack(scalars, -1), *grids], -1), reward, terminal
