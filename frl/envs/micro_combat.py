"""Unit micro-control: a StarCraft-like combat between two small armies, as a pure torch environment.

Written from the description of SMAX (Rutherford et al. 2023, "JaxMARL: multi-agent RL environments
and algorithms in JAX", https://arxiv.org/abs/2311.10090), itself a re-implementation of SMAC's
micro-management maps (Samvelyan et al. 2019) without the StarCraft II engine. ``n`` allied units
are the agents; the enemy army follows a fixed heuristic. Every step lasts ``dt`` seconds::

    units       a type each (:data:`UNIT_TYPES`: health, shield, damage, attack range, cooldown,
                speed, sight range), on an open ``width x height`` plane
    actions     0 no-op (the only legal action of a dead unit), 1 stop, 2..5 move north, south,
                east, west at the unit's speed, 6 + j attack enemy j (legal while j is alive and in
                attack range); masks give each agent's legal actions with every observation
    combat      simultaneous: every living unit that attacks with its weapon ready deals its damage
                to its target, shields absorbing it before health; the weapon is then ready again
                after ``cooldown`` seconds (rounded up to whole steps); a unit that attacks does
                not move; a unit with health <= 0 is dead
    shields     regenerate ``shield_regen`` per second once a unit has taken no damage for
                ``shield_delay`` seconds (as Protoss shields)
    enemy       each living enemy unit attacks the nearest living agent if it is in range and
                otherwise moves toward it
    reward      the team's: (health + shield the enemy lost this step) / (the enemy army's total
                health + shield), plus ``win_bonus`` on winning (at most ``1 + win_bonus`` per episode)
    end         terminated when one army is dead (``info["win"]``: the enemy's, with an agent alive);
                truncated at the map's time limit (counted a loss)

Observation of agent ``i`` (``[n, O]``): for every other unit (the other agents, then the enemies)
within its sight range, ``[visible, distance, dx, dy (over sight range), health, shield (fractions
of the maximum), unit type (one-hot over the map's types)]`` (zeros when out of sight or dead), then
its own ``[health, shield, weapon cooldown (fractions), x / width, y / height, unit type]``. The
global state: for every unit, ``[alive, x, y (centred, over half the map), health, shield,
cooldown, unit type]``.

Maps (:data:`MAPS`) as SMAC names them: ``3m``, ``8m``, ``5m_vs_6m``, ``2s3z``, ``3s5z``,
``3s_vs_5z``, ``6h_vs_8z``. The physical state
holds, for every unit (agents first), ``[x, y, health, shield, cooldown, idle]`` (``idle``: seconds
since the unit last took damage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch
from torch import Tensor

from frl import random
from frl.envs._checks import check_number as _check_number
from frl.envs.multi_agent import MultiAgentEnvironment
from frl.envs.spaces import Box

__all__ = ["MAPS", "UNIT_TYPES", "MicroCombat", "MicroCombatParams"]

UNIT_TYPES: dict[str, tuple[float, float, float, float, float, float, float]] = {
    #            health shield damage range cooldown speed sight
    "marine": (45.0, 0.0, 6.0, 5.0, 0.61, 3.15, 9.0),
    "marauder": (125.0, 0.0, 10.0, 6.0, 1.07, 3.15, 10.0),
    "stalker": (80.0, 80.0, 13.0, 6.0, 1.34, 4.13, 10.0),
    "zealot": (100.0, 50.0, 16.0, 1.5, 0.86, 3.15, 9.0),
    "zergling": (35.0, 0.0, 5.0, 1.5, 0.5, 4.13, 8.0),
    "hydralisk": (90.0, 0.0, 12.0, 5.0, 0.59, 3.15, 9.0),
}
"""Unit types: ``(health, shield, damage per attack, attack range (centre to centre), cooldown (s),
speed (per s), sight range)``, StarCraft II's values rounded (a zealot's two blades are one 16-damage
attack; melee reach includes the units' radii)."""
TYPE_NAMES = tuple(UNIT_TYPES)
FIELDS = 6
"""Entries of a unit's physical state: ``[x, y, health, shield, cooldown, idle]``."""

MAPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "3m": (("marine",) * 3, ("marine",) * 3, 60),
    "8m": (("marine",) * 8, ("marine",) * 8, 120),
    "5m_vs_6m": (("marine",) * 5, ("marine",) * 6, 70),
    "2s3z": (("stalker",) * 2 + ("zealot",) * 3, ("stalker",) * 2 + ("zealot",) * 3, 120),
    "3s5z": (("stalker",) * 3 + ("zealot",) * 5, ("stalker",) * 3 + ("zealot",) * 5, 150),
    "3s_vs_5z": (("stalker",) * 3, ("zealot",) * 5, 250),
    "6h_vs_8z": (("hydralisk",) * 6, ("zealot",) * 8, 150),
}
"""``name: (the agents' unit types, the enemy's unit types, time limit in steps)``."""

NUM_MOVES = 6
"""Actions before the attack actions: no-op, stop, north, south, east, west."""
_MOVES = ((0.0, 0.0), (0.0, 0.0), (0.0, 1.0), (0.0, -1.0), (1.0, 0.0), (-1.0, 0.0))


@dataclass(frozen=True)
class MicroCombatParams:
    """Physical and reward constants (the module docstring gives the rules)."""

    dt: float = 0.5
    """Seconds per step."""
    spawn_gap: float = 10.0
    """Distance between the two armies' centres at the start."""
    spawn_jitter: float = 1.0
    """Each unit's start position is drawn within this distance of its slot (both axes)."""
    shield_regen: float = 2.0
    shield_delay: float = 10.0
    win_bonus: float = 1.0

    def __post_init__(self) -> None:
        owner = "MicroCombatParams"
        _check_number(owner, "dt", self.dt, low=0.0, strict=True)
        for name in ("spawn_gap", "spawn_jitter", "shield_regen", "shield_delay", "win_bonus"):
            _check_number(owner, name, getattr(self, name), low=0.0)


@dataclass(frozen=True)
class MicroCombat(MultiAgentEnvironment):
    """Two armies on one of :data:`MAPS` (``map_name``); the agents control one (module docstring).
    ``frl.envs.make("MicroCombat-2s3z-v0")`` names the map in the id.

    Settings: ``map_name``, ``width`` and ``height`` of the plane (the armies start on its middle
    row; no unit leaves it).
    """

    id: ClassVar[str] = "MicroCombat-3m-v0"  # the instance's names its map
    max_episode_steps: ClassVar[int] = 0  # set per map on the instance
    Params: ClassVar[type] = MicroCombatParams
    outcomes: ClassVar[tuple[str, ...]] = ("win",)

    map_name: str = "3m"
    width: float = 32.0
    height: float = 32.0

    def __post_init__(self) -> None:
        if self.map_name not in MAPS:
            raise ValueError(f"{self.id}: unknown map {self.map_name!r}; choose one of {', '.join(MAPS)}")
        _check_number(self.id, "width", self.width, low=0.0, strict=True)
        _check_number(self.id, "height", self.height, low=0.0, strict=True)
        object.__setattr__(self, "max_episode_steps", MAPS[self.map_name][2])
        object.__setattr__(self, "id", f"MicroCombat-{self.map_name}-v0")

    # -- the map ---------------------------------------------------------------------------

    @property
    def n_agents(self) -> int:
        return len(MAPS[self.map_name][0])

    @property
    def n_enemies(self) -> int:
        return len(MAPS[self.map_name][1])

    @property
    def n_units(self) -> int:
        return self.n_agents + self.n_enemies

    @cached_property
    def unit_types(self) -> tuple[str, ...]:
        """Every unit's type, agents first."""
        allies, enemies, _ = MAPS[self.map_name]
        return (*allies, *enemies)

    @cached_property
    def map_types(self) -> tuple[str, ...]:
        """The types on this map, in :data:`UNIT_TYPES` order (the one-hot's entries)."""
        return tuple(t for t in TYPE_NAMES if t in self.unit_types)

    @property
    def num_actions(self) -> int:
        return NUM_MOVES + self.n_enemies

    @property
    def unit_features(self) -> int:
        return 6 + len(self.map_types)

    @property
    def obs_dim(self) -> int:
        return (self.n_units - 1) * self.unit_features + 5 + len(self.map_types)

    @property
    def state_dim(self) -> int:
        return self.n_units * self.unit_features

    @property
    def observation_space(self) -> Box:  # type: ignore[override]
        """One agent's observation."""
        n = self.obs_dim
        return Box((-math.inf,) * n, (math.inf,) * n, (n,))

    def _stats(self, like: Tensor) -> dict[str, Tensor]:
        """Per-unit constants ``[U]`` (health, shield, damage, range, cooldown, speed, sight) and
        the one-hot unit types ``[U, T]``."""
        table = torch.tensor([UNIT_TYPES[t] for t in self.unit_types], dtype=like.dtype, device=like.device)
        names = ("health", "shield", "damage", "range", "cooldown", "speed", "sight")
        stats = {name: table[:, i] for i, name in enumerate(names)}
        index = torch.tensor([self.map_types.index(t) for t in self.unit_types], device=like.device)
        stats["type"] = torch.nn.functional.one_hot(index, len(self.map_types)).to(like.dtype)
        return stats

    def unpack(self, physics: Tensor) -> dict[str, Tensor]:
        """``pos [*, U, 2]``, ``health``, ``shield``, ``cooldown``, ``idle`` ``[*, U]``."""
        units = physics.unflatten(-1, (self.n_units, FIELDS))
        return {
            "pos": units[..., 0:2],
            "health": units[..., 2],
            "shield": units[..., 3],
            "cooldown": units[..., 4],
            "idle": units[..., 5],
        }

    # -- episodes --------------------------------------------------------------------------

    def init_physics(self, key: Tensor, params: MicroCombatParams, batch: tuple[int, ...] = ()) -> Tensor:
        dtype, device = self.physics_dtype, key.device
        stats = self._stats(torch.empty((), dtype=dtype, device=device))
        slots = []
        for side, count in ((-1.0, self.n_agents), (1.0, self.n_enemies)):
            x = self.width / 2 + side * params.spawn_gap / 2
            ys = [self.height / 2 + (k - (count - 1) / 2) * 1.5 for k in range(count)]
            slots += [(x, y) for y in ys]
        slot = torch.tensor(slots, dtype=dtype, device=device)  # [U, 2]
        jitter = random.uniform(
            key, (*batch, self.n_units, 2), dtype, -params.spawn_jitter, params.spawn_jitter
        )
        pos = slot + jitter
        zeros = torch.zeros((*batch, self.n_units), dtype=dtype, device=device)
        units = torch.stack(
            [
                pos[..., 0],
                pos[..., 1],
                zeros + stats["health"],
                zeros + stats["shield"],
                zeros,
                zeros + params.shield_delay,
            ],
            dim=-1,
        )
        return units.flatten(-2)

    # -- geometry --------------------------------------------------------------------------

    def _distances(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """``(delta [*, U, U, 2] = pos_j - pos_i, distance [*, U, U])``."""
        delta = pos.unsqueeze(-3) - pos.unsqueeze(-2)
        return delta, torch.sqrt((delta * delta).sum(-1) + 1e-12)

    def action_mask(self, physics: Tensor) -> Tensor:
        """The agents' legal actions ``bool [*, n, A]`` (module docstring)."""
        u = self.unpack(physics)
        stats = self._stats(physics)
        n = self.n_agents
        alive = u["health"] > 0
        _, distance = self._distances(u["pos"])
        in_range = distance[..., :n, n:] <= stats["range"][:n].unsqueeze(-1)  # [*, n, n_e]
        attack = alive[..., :n].unsqueeze(-1) & alive[..., n:].unsqueeze(-2) & in_range
        me = alive[..., :n].unsqueeze(-1)
        moves = torch.cat([~me, me.expand(*me.shape[:-1], NUM_MOVES - 1)], dim=-1)
        return torch.cat([moves, attack], dim=-1)

    def observe(self, physics: Tensor) -> dict[str, Tensor]:
        u = self.unpack(physics)
        stats = self._stats(physics)
        n, U = self.n_agents, self.n_units
        alive = u["health"] > 0
        health = u["health"].clamp(min=0.0) / stats["health"]
        shield = u["shield"] / stats["shield"].clamp(min=1e-6)
        cooldown = u["cooldown"] / stats["cooldown"]
        batch = physics.shape[:-1]
        delta, distance = self._distances(u["pos"])
        # the other units, in order, seen from each agent: others[i] = [j for j in range(U) if j != i]
        others = torch.tensor([[j for j in range(U) if j != i] for i in range(n)], device=physics.device)
        sight = stats["sight"][:n].unsqueeze(-1)  # [n, 1]

        def pick(x: Tensor) -> Tensor:  # [*, n, U] -> [*, n, U - 1]
            return torch.gather(x[..., :n, :], -1, others.expand(*batch, n, U - 1))

        visible = pick(alive.unsqueeze(-2) & alive.unsqueeze(-1) & (distance <= stats["sight"].unsqueeze(-1)))
        seen = visible.to(physics.dtype)
        unit_type = stats["type"][others]  # [n, U-1, T]
        about = torch.cat(
            [
                torch.stack(
                    [
                        seen,
                        pick(distance) / sight,
                        pick(delta[..., 0]) / sight,
                        pick(delta[..., 1]) / sight,
                        pick(health.unsqueeze(-2).expand(*batch, U, U)),
                        pick(shield.unsqueeze(-2).expand(*batch, U, U)),
                    ],
                    dim=-1,
                ),
                unit_type.expand(*batch, *unit_type.shape),
            ],
            dim=-1,
        ) * seen.unsqueeze(-1)
        own = torch.cat(
            [
                torch.stack(
                    [
                        health[..., :n],
                        shield[..., :n],
                        cooldown[..., :n],
                        u["pos"][..., :n, 0] / self.width,
                        u["pos"][..., :n, 1] / self.height,
                    ],
                    dim=-1,
                ),
                stats["type"][:n].expand(*batch, n, len(self.map_types)),
            ],
            dim=-1,
        )
        centre = torch.tensor([self.width / 2, self.height / 2], dtype=physics.dtype, device=physics.device)
        state = torch.cat(
            [
                torch.stack([alive.to(physics.dtype), *((u["pos"] - centre) / centre).unbind(-1)], dim=-1),
                torch.stack([health, shield, cooldown], dim=-1),
                stats["type"].expand(*batch, U, len(self.map_types)),
            ],
            dim=-1,
        ) * alive.unsqueeze(-1).to(physics.dtype)
        agents = {
            "observation": torch.cat([about.flatten(-2), own], dim=-1),
            "action_mask": self.action_mask(physics),
        }
        return {self.group: agents, "state": state.flatten(-2)}

    # -- dynamics --------------------------------------------------------------------------

    def transition(self, physics: Tensor, action: Tensor, params: MicroCombatParams):
        p, n, U = params, self.n_agents, self.n_units
        u = self.unpack(physics)
        stats = self._stats(physics)
        dtype = physics.dtype
        alive = u["health"] > 0
        delta, distance = self._distances(u["pos"])

        # the agents: moves and attack targets (an illegal attack is a stop)
        action = action.long()
        wants_attack = action >= NUM_MOVES
        enemy = torch.clamp(action - NUM_MOVES, 0, self.n_enemies - 1) + n  # unit index
        ally_target = torch.where(wants_attack, enemy, torch.zeros_like(enemy))
        moves = torch.tensor(_MOVES, dtype=dtype, device=physics.device)
        ally_dir = moves[torch.clamp(action, max=NUM_MOVES - 1)] * (~wants_attack).unsqueeze(-1).to(dtype)

        # the enemy: attack the nearest living agent in range, else move toward it
        to_agents = torch.where(alive[..., :n].unsqueeze(-2), distance[..., n:, :n], math.inf)  # [*, n_e, n]
        nearest_d, nearest = to_agents.min(-1)
        enemy_attacks = nearest_d <= stats["range"][n:]
        heading = torch.gather(
            delta[..., n:, :n, :], -2, nearest[..., None, None].expand(*nearest.shape, 1, 2)
        )
        heading = heading.squeeze(-2) / nearest_d.clamp(min=1e-6).unsqueeze(-1)
        enemy_dir = torch.where((enemy_attacks | ~torch.isfinite(nearest_d)).unsqueeze(-1), 0.0, heading)

        target = torch.cat([ally_target, nearest], dim=-1)  # [*, U]
        attacks = torch.cat([wants_attack, enemy_attacks], dim=-1)
        target_d = torch.gather(distance, -1, target.unsqueeze(-1)).squeeze(-1)
        target_alive = torch.gather(alive, -1, target)
        attacks = attacks & alive & target_alive & (target_d <= stats["range"])
        fire = attacks & (u["cooldown"] <= 1e-6)

        # simultaneous damage, shields first
        hits = torch.nn.functional.one_hot(target, U).to(dtype) * (
            fire.to(dtype) * stats["damage"]
        ).unsqueeze(-1)
        damage = hits.sum(-2)  # [*, U] received
        absorbed = torch.minimum(u["shield"], damage)
        shield = u["shield"] - absorbed
        health = u["health"] - (damage - absorbed)
        lost = (u["health"].clamp(min=0.0) - health.clamp(min=0.0)) + absorbed
        idle = torch.where(damage > 0, 0.0, u["idle"] + p.dt)
        regen = (idle >= p.shield_delay) & (health > 0)
        shield = torch.where(regen, torch.minimum(shield + p.shield_regen * p.dt, stats["shield"]), shield)
        cooldown = torch.clamp(torch.where(fire, stats["cooldown"], u["cooldown"]) - p.dt, min=0.0)

        # moves (units that attack stand; the dead stay)
        direction = torch.cat([ally_dir, enemy_dir], dim=-2)
        still = (attacks | ~alive).unsqueeze(-1)
        step = torch.where(still, 0.0, direction * (stats["speed"] * p.dt).unsqueeze(-1))
        bound = torch.tensor([self.width, self.height], dtype=dtype, device=physics.device)
        pos = torch.minimum(torch.clamp(u["pos"] + step, min=0.0), bound)

        next_physics = torch.cat(
            [pos, torch.stack([health, shield, cooldown, idle], dim=-1)], dim=-1
        ).flatten(-2)
        agents_alive = (health[..., :n] > 0).any(-1)
        enemies_alive = (health[..., n:] > 0).any(-1)
        won = agents_alive & ~enemies_alive
        terminated = ~agents_alive | ~enemies_alive
        enemy_total = (stats["health"][n:] + stats["shield"][n:]).sum()
        reward = lost[..., n:].sum(-1) / enemy_total + p.win_bonus * won.to(dtype)
        return next_physics, reward, terminated, {"win": won}

    def heuristic_agents(self, physics: Tensor) -> Tensor:
        """The enemy's heuristic played by the agents (attack the nearest living enemy in range,
        else move toward it along the larger axis): a baseline, ``int64 [*, n]``."""
        u = self.unpack(physics)
        n = self.n_agents
        alive = u["health"] > 0
        delta, distance = self._distances(u["pos"])
        to_enemy = torch.where(alive[..., n:].unsqueeze(-2), distance[..., :n, n:], math.inf)
        nearest_d, nearest = to_enemy.min(-1)
        mask = self.action_mask(physics)
        attack = NUM_MOVES + nearest
        can = torch.gather(mask, -1, attack.unsqueeze(-1)).squeeze(-1)
        d = torch.gather(
            delta[..., :n, n:, :], -2, nearest[..., None, None].expand(*nearest.shape, 1, 2)
        ).squeeze(-2)
        horizontal = d[..., 0].abs() >= d[..., 1].abs()
        move = torch.where(horizontal, torch.where(d[..., 0] > 0, 4, 5), torch.where(d[..., 1] > 0, 2, 3))
        move = torch.where(torch.isfinite(nearest_d), move, 1)
        return torch.where(~alive[..., :n], 0, torch.where(can, attack, move))
