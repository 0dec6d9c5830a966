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

Asterix and Freeway draw during play (spawns; car speeds): their ``transition`` draws the
uniforms from the key (``draws``) and hands them to ``advance(physics, action, draws)``, the game
step proper, which the parity tests drive with the package's own next draws (its random stream
replayed). Built: Asterix, Breakout, Freeway, SpaceInvaders. Seaquest is still to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.spaces import Box, Discrete

__all__ = ["Asterix", "Breakout", "Freeway", "MinAtarParams", "SpaceInvaders"]


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


@dataclass(frozen=True)
class _DrawsDuringPlay(_MinAtar):
    """A game with randomness inside its steps: ``transition`` splits the key between sticky
    actions and the game's :meth:`draws`, then runs :meth:`advance`, the game step proper."""

    last_action: ClassVar[int]
    """Where the physics keeps the previous applied action."""

    def draws(self, key: Tensor, batch: tuple[int, ...]) -> Tensor:
        raise NotImplementedError

    def advance(self, physics: Tensor, action: Tensor, draws: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def transition(self, physics: Tensor, action: Tensor, params: MinAtarParams, key: Tensor):
        k_sticky, k_draws = random.split(key)
        action = _sticky(k_sticky, action, physics[..., self.last_action], params)
        return self.advance(physics, action, self.draws(k_draws, tuple(action.shape)))


_PLAYER_SPEED, _FREEWAY_TIME = 3, 2500


@dataclass(frozen=True)
class Freeway(_DrawsDuringPlay):
    """MinAtar Freeway: a chicken crosses eight lanes of traffic from the bottom row to the top.

    +1 per crossing (the chicken is then put back on the bottom row and every car gets a new speed
    and direction); the chicken moves at most every 3 steps; a car that reaches the chicken's cell
    sends it back to the bottom. Car ``i`` drives along row ``i + 1``, one cell every ``|speed|``
    steps (1-5) in the direction of the speed's sign, wrapping around the screen. The game ends
    after 2,500 steps (``max_episode_steps`` truncates there, as gymnax does; the package reports
    the step after as terminal, which :meth:`transition` reproduces). Channels: chicken, car, then
    the car's trail in one of five channels by its speed. Actions: 0 no-op, 1 up, 2 down.

    Physics ``[pos, move_timer, terminate_timer, last_action, car x (8), car timer (8), car speed
    (8, signed)]`` as floats. Randomness: the cars' speeds and directions, drawn at the start and
    after each crossing (:meth:`draws`).
    """

    id: ClassVar[str] = "Freeway-MinAtar"
    last_action: ClassVar[int] = 3
    max_episode_steps: ClassVar[int] = _FREEWAY_TIME
    observation_space: ClassVar[Box] = Box((0.0,) * 700, (1.0,) * 700, (10, 10, 7))
    action_space: ClassVar[Discrete] = Discrete(3)

    def draws(self, key: Tensor, batch: tuple[int, ...]) -> Tensor:
        """Eight signed car speeds ``[*batch, 8]``: ``|s|`` uniform in 1..5, the sign a fair coin."""
        k_speed, k_sign = random.split(key)
        speed = random.randint(k_speed, (*batch, 8), 1, 6).to(self.dtype)
        sign = torch.where(random.uniform(k_sign, (*batch, 8), self.dtype) < 0.5, -1.0, 1.0)
        return speed * sign

    def init_physics(self, key: Tensor, params: MinAtarParams, batch: tuple[int, ...] = ()) -> Tensor:
        speed = self.draws(key, batch)
        one = torch.ones(batch, dtype=self.dtype, device=key.device)
        scalars = torch.stack([9.0 * one, _PLAYER_SPEED * one, _FREEWAY_TIME * one, 0.0 * one], -1)
        return torch.cat([scalars, torch.zeros_like(speed), speed.abs(), speed], -1)

    def observe(self, physics: Tensor) -> Tensor:
        pos = physics[..., 0].long()
        x, speed = physics[..., 4:12].long(), physics[..., 20:28]
        cells = torch.arange(100, device=physics.device)
        rows = torch.arange(1, 9, device=physics.device)
        chicken = cells == (pos * 10 + 4).unsqueeze(-1)
        car_cells = rows * 10 + x  # [*, 8]
        back = torch.remainder(x - torch.sign(speed).long(), 10)
        trail_cells = rows * 10 + back
        car = (cells == car_cells.unsqueeze(-1)).any(-2)
        level = speed.abs().long() - 1  # [*, 8] in 0..4
        trails = [
            ((cells == trail_cells.unsqueeze(-1)) & (level == s).unsqueeze(-1)).any(-2) for s in range(5)
        ]
        return torch.stack([chicken, car, *trails], -1).to(self.dtype).unflatten(-2, (10, 10))

    def advance(self, physics: Tensor, action: Tensor, speeds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step of the game for the applied ``action`` (after sticky actions), with ``speeds``
        ``[*, 8]`` the new signed car speeds should the chicken cross this step (:meth:`draws`)."""
        pos, move_timer, terminate_timer = physics[..., 0], physics[..., 1], physics[..., 2]
        x, timer, speed = physics[..., 4:12], physics[..., 12:20], physics[..., 20:28]
        ready = move_timer == 0
        up, down = ready & (action == 1), ready & (action == 2)
        move_timer = torch.where(up | down, torch.full_like(move_timer, _PLAYER_SPEED), move_timer)
        pos = torch.where(up, torch.clamp(pos - 1, min=0), pos)
        pos = torch.where(down, torch.clamp(pos + 1, max=9), pos)
        crossed = pos == 0
        pos = torch.where(crossed, torch.full_like(pos, 9.0), pos)
        new = crossed.unsqueeze(-1)
        speed = torch.where(new, speeds.to(speed.dtype), speed)
        timer = torch.where(new, speed.abs(), timer)
        # only the car in the chicken's row can reach it, so the package's car-by-car loop is parallel
        in_row = torch.arange(1, 9, device=physics.device) == pos.unsqueeze(-1)
        hit = in_row & (x == 4)
        moves = timer == 0
        x = torch.where(moves, torch.remainder(x + torch.sign(speed), 10), x)
        timer = torch.where(moves, speed.abs(), timer - 1)
        hit = (hit | (in_row & moves & (x == 4))).any(-1)
        pos = torch.where(hit, torch.full_like(pos, 9.0), pos)
        move_timer = move_timer - (move_timer > 0).to(self.dtype)
        terminate_timer = terminate_timer - 1
        scalars = torch.stack([pos, move_timer, terminate_timer, action.to(self.dtype)], -1)
        next_physics = torch.cat([scalars, x, timer, speed], -1)
        return next_physics, crossed.to(self.dtype), terminate_timer < 0


_RAMP_INTERVAL, _SPAWN_SPEED, _MOVE_INTERVAL = 100, 10, 5


@dataclass(frozen=True)
class Asterix(_DrawsDuringPlay):
    """MinAtar Asterix: collect gold and dodge enemies that cross rows 1-8 of the screen.

    Every ``spawn_speed`` steps an enemy (or, one time in three, gold) appears at the left or
    right edge of a random free row and crosses it one cell every ``move_speed`` steps; +1 per
    gold touched; touching an enemy ends the game. With ramping, every 100 steps the spawns come
    one step sooner (down to every step) and every other ramp the entities move one step sooner.
    Channels: player, enemy, trail, gold. Actions: 0 no-op, 1 left, 2 up, 3 right, 4 down.

    Physics ``[player_x, player_y, spawn_speed, spawn_timer, move_speed, move_timer, ramp_timer,
    ramp_index, last_action, then per row slot (8): present, x, moving right, gold]`` as floats.
    Randomness: each spawn's side, kind and row (:meth:`draws`).
    """

    id: ClassVar[str] = "Asterix-MinAtar"
    last_action: ClassVar[int] = 8
    observation_space: ClassVar[Box] = Box((0.0,) * 400, (1.0,) * 400, (10, 10, 4))
    action_space: ClassVar[Discrete] = Discrete(5)

    ramping: bool = True
    """Spawns and moves speed up over time (MinAtar's ``difficulty_ramping``)."""

    def draws(self, key: Tensor, batch: tuple[int, ...]) -> Tensor:
        """Three uniforms ``[*batch, 3]`` for a spawn: its side (< 1/2: the left edge, moving
        right), its kind (< 1/3: gold) and which free row (the ``floor(u n_free)``-th)."""
        return random.uniform(key, (*batch, 3), self.dtype)

    def init_physics(self, key: Tensor, params: MinAtarParams, batch: tuple[int, ...] = ()) -> Tensor:
        one = torch.ones(batch, dtype=self.dtype, device=key.device)
        scalars = [
            5.0,
            5.0,
            _SPAWN_SPEED,
            _SPAWN_SPEED,
            _MOVE_INTERVAL,
            _MOVE_INTERVAL,
            _RAMP_INTERVAL,
            0.0,
            0.0,
        ]
        return torch.cat([torch.stack([v * one for v in scalars], -1), torch.zeros((*batch, 32)).to(one)], -1)

    def observe(self, physics: Tensor) -> Tensor:
        px, py = physics[..., 0].long(), physics[..., 1].long()
        slots = physics[..., 9:].unflatten(-1, (8, 4))
        present, x = slots[..., 0] > 0.5, slots[..., 1].long()
        right, gold = slots[..., 2] > 0.5, slots[..., 3] > 0.5
        cells = torch.arange(100, device=physics.device)
        rows = torch.arange(1, 9, device=physics.device)
        at = cells == (rows * 10 + x).unsqueeze(-1)  # [*, 8, 100]
        back = torch.where(right, x - 1, x + 1)
        trail = (cells == (rows * 10 + back).unsqueeze(-1)) & ((back >= 0) & (back <= 9)).unsqueeze(-1)
        player = cells == (py * 10 + px).unsqueeze(-1)
        enemy = (at & (present & ~gold).unsqueeze(-1)).any(-2)
        treasure = (at & (present & gold).unsqueeze(-1)).any(-2)
        trails = (trail & present.unsqueeze(-1)).any(-2)
        return torch.stack([player, enemy, trails, treasure], -1).to(self.dtype).unflatten(-2, (10, 10))

    def advance(self, physics: Tensor, action: Tensor, draws: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step of the game for the applied ``action`` (after sticky actions), with ``draws``
        ``[*, 3]`` the uniforms of a spawn should one be due this step (:meth:`draws`)."""
        px, py, spawn_speed, spawn_timer, move_speed, move_timer, ramp_timer, ramp_index = physics[
            ..., :8
        ].unbind(-1)
        slots = physics[..., 9:].unflatten(-1, (8, 4))
        present, x, right, gold = slots.unbind(-1)
        # spawn into the floor(u * n_free)-th free row
        due = spawn_timer == 0
        free = present < 0.5
        n_free = free.sum(-1)
        pick = torch.floor(draws[..., 2] * n_free).clamp(max=7)
        rank = torch.cumsum(free.to(self.dtype), -1) - 1  # each free slot's rank among the free ones
        chosen = free & (rank == pick.unsqueeze(-1)) & (due & (n_free > 0)).unsqueeze(-1)
        side = (draws[..., 0] < 0.5).to(self.dtype).unsqueeze(-1)
        kind = (draws[..., 1] < 1.0 / 3.0).to(self.dtype).unsqueeze(-1)
        present = torch.where(chosen, torch.ones_like(present), present)
        x = torch.where(chosen, 9.0 * (1.0 - side), x)
        right = torch.where(chosen, side.expand_as(right), right)
        gold = torch.where(chosen, kind.expand_as(gold), gold)
        spawn_timer = torch.where(due, spawn_speed, spawn_timer)
        # the player
        px = torch.where(action == 1, torch.clamp(px - 1, min=0), px)
        px = torch.where(action == 3, torch.clamp(px + 1, max=9), px)
        py = torch.where(action == 2, torch.clamp(py - 1, min=1), py)
        py = torch.where(action == 4, torch.clamp(py + 1, max=8), py)
        row_of = torch.arange(1, 9, device=physics.device).to(self.dtype)
        alive = present > 0.5
        touch = alive & (x == px.unsqueeze(-1)) & (row_of == py.unsqueeze(-1))
        is_gold = gold > 0.5
        reward = (touch & is_gold).sum(-1).to(self.dtype)
        terminal = (touch & ~is_gold).any(-1)
        alive = alive & ~(touch & is_gold)
        # the entities move
        move = (move_timer == 0).unsqueeze(-1)
        move_timer = torch.where(move.squeeze(-1), move_speed, move_timer)
        x = torch.where(move & alive, x + torch.where(right > 0.5, 1.0, -1.0), x)
        alive = alive & ~(move & ((x < 0) | (x > 9)))
        touch = move & alive & (x == px.unsqueeze(-1)) & (row_of == py.unsqueeze(-1))
        reward = reward + (touch & is_gold).sum(-1).to(self.dtype)
        terminal = terminal | (touch & ~is_gold).any(-1)
        alive = alive & ~(touch & is_gold)
        spawn_timer, move_timer = spawn_timer - 1, move_timer - 1
        # the difficulty ramp
        if self.ramping:
            active = (spawn_speed > 1) | (move_speed > 1)
            wait = active & (ramp_timer >= 0)
            bump = active & ~wait
            move_speed = move_speed - (bump & (move_speed > 1) & (torch.remainder(ramp_index, 2) == 1)).to(
                self.dtype
            )
            spawn_speed = spawn_speed - (bump & (spawn_speed > 1)).to(self.dtype)
            ramp_index = ramp_index + bump.to(self.dtype)
            ramp_timer = torch.where(
                bump, torch.full_like(ramp_timer, _RAMP_INTERVAL), ramp_timer - wait.to(self.dtype)
            )
        scalars = [px, py, spawn_speed, spawn_timer, move_speed, move_timer, ramp_timer, ramp_index]
        slots = torch.stack([alive.to(self.dtype), x, right, gold], -1)
        scalars_t = torch.stack([*scalars, action.to(self.dtype)], -1)
        next_physics = torch.cat([scalars_t, slots.flatten(-2)], -1)
        return next_physics, reward, terminal
