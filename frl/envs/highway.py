"""Driving: a multi-lane highway with IDM/MOBIL traffic and a kinematic-bicycle ego car.

A pure torch environment in the spirit of ``highway-env``'s ``highway-v0`` (Leurent 2018), written
here from the models' published equations. The road is a straight ``num_lanes``-lane highway
closed into a ring of ``road_length`` metres (traffic density stays constant and nothing leaves
the road); lane ``l``'s centre is ``y = l * lane_width``. Every step lasts ``dt`` seconds::

    ego         kinematic bicycle (Kong et al. 2015), centre of mass halfway along the wheelbase W:
                beta = atan(tan(delta) / 2)
                x += v cos(psi + beta) dt,  y += v sin(psi + beta) dt
                psi += (2 v / W) sin(beta) dt,  v = clip(v + a dt, 0, speed_limit)
                action [a, delta] in [-1, 1]^2, scaled by max_acceleration and max_steering
    traffic     IDM (Treiber et al. 2000) along the road:
                a = a_max [1 - (v / v0)^4 - (s* / s)^2],  s* = s0 + max(0, v T + v dv / (2 sqrt(a_max b)))
                s the gap to the leader (bumper to bumper), dv = v - v_leader; no leader: no (s*/s) term
                MOBIL lane changes (Kesting et al. 2007), for a car settled in its lane:
                safe        the new follower f brakes no harder than b_safe: a~_f >= -b_safe,
                            and no car overlaps the gap (|dx| < length + s0)
                incentive   a~_c - a_c + p (a~_f - a_f + a~_o - a_o) > threshold
                (c the car, o its old follower, ~ after the change); the car then moves across at
                lateral_speed. Of two cars heading into one lane within a headway of each other
                (length + s0 + T speed_limit) in one step, the one with the larger incentive goes.
                The ego is a leader and a follower like any other car.
    reward      progress - lane_weight e^2 - jerk_weight j   (collision: -collision_penalty)
                progress = v cos(psi) / speed_limit, e the distance to the nearest lane centre over
                half a lane width, j = (a_t - a_{t-1})^2 + (delta_t - delta_{t-1})^2 in action units;
                a learner may train on it minus headway_weight * Highway.headway_cost (a car in the
                ego's path inside a safe time gap, or the road's edge near), and is evaluated on the
                task's reward
    end         terminated on a collision (|dx| < length and |dy| < width with any car) or when the
                ego's centre leaves the road; truncated at ``max_episode_steps`` (30 s at dt 0.2)

Observation (float32, ``6 + 4 K + 12``): the ego's ``[(y - y_mid) / half_width, psi,
v / speed_limit, previous a, previous delta, e]``; the ``K = observed_vehicles`` nearest cars
within ``observation_range`` metres, nearest first, each ``[present, dx / range, dy / road_width,
(v - v_ego) / speed_limit]`` (zeros when fewer are in range); then for the lane right of the
ego's, its own and the one left of it, the nearest car ahead and behind in that lane (a car
occupies the lanes its body overlaps and the lane it is moving to), each ``[gap / range,
closing speed / speed_limit]``: ``gap`` bumper to bumper (``range`` when there is none within
range or no such lane), the closing speed ``v_ego - v_car`` ahead and ``v_car - v_ego`` behind
(0 when none). The per-lane entries are what a driver keeps a headway by; the nearest-K list
alone leaves a leader's gap and closing speed to be inferred from small numbers.

The physical state is one vector: the ego's ``[x, y, psi, v, a_prev, delta_prev]`` then each car's
``[x, y, v, v0, target_lane]``. :func:`hand_tuned` is the baseline (PD lane keeping scheduled on
speed + IDM speed control), :func:`rollout_episodes` runs any policy for whole episodes and
reports returns, collisions and speeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from frl import random
from frl.envs._checks import check_count as _check_count
from frl.envs._checks import check_number as _check_number
from frl.envs.base import Environment
from frl.envs.spaces import Box

__all__ = ["Highway", "HighwayParams", "hand_tuned", "rollout_episodes"]

EGO = 6
"""Entries of the ego's state: ``[x, y, psi, v, a_prev, delta_prev]``."""
CAR = 5
"""Entries of a traffic car's state: ``[x, y, v, v0, target_lane]``."""
SLOT = 25.0
"""Metres between the grid points cars start on (at least a car length plus IDM's s0)."""


@dataclass(frozen=True)
class HighwayParams:
    """Dynamics, traffic and reward constants (the module docstring gives the equations)."""

    dt: float = 0.2
    """Seconds per step."""
    max_acceleration: float = 4.0
    """The ego's acceleration at action ``a = +-1`` (m/s^2)."""
    max_steering: float = 0.03
    """The ego's steering angle at action ``delta = +-1`` (rad)."""
    wheelbase: float = 2.5
    vehicle_length: float = 5.0
    vehicle_width: float = 2.0
    initial_speed: float = 25.0
    """The ego's speed at the start of an episode (m/s)."""
    traffic_speed_low: float = 20.0
    traffic_speed_high: float = 26.0
    """Each car's desired speed v0 is drawn from ``[traffic_speed_low, traffic_speed_high]``."""
    idm_acceleration: float = 2.0
    """IDM's a_max (m/s^2)."""
    idm_deceleration: float = 3.0
    """IDM's comfortable deceleration b (m/s^2)."""
    idm_gap: float = 5.0
    """IDM's minimum gap s0 (m)."""
    idm_headway: float = 1.5
    """IDM's time headway T (s)."""
    max_braking: float = 9.0
    """The hardest a car can brake (m/s^2)."""
    politeness: float = 0.2
    """MOBIL's p."""
    lane_change_threshold: float = 0.2
    """MOBIL's acceleration threshold (m/s^2)."""
    safe_braking: float = 2.0
    """MOBIL's b_safe (m/s^2)."""
    lateral_speed: float = 2.0
    """How fast a car changing lanes moves across (m/s)."""
    lane_weight: float = 0.3
    jerk_weight: float = 0.05
    collision_penalty: float = 100.0
    """The reward of a crash (negated). At 20 SAC traded crashes for speed (12 in 200 evaluation
    episodes against 3 at 100, 2 seeds x 30k steps, the same return over the controller's)."""

    def __post_init__(self) -> None:
        owner = "HighwayParams"
        for name in (
            "dt",
            "max_acceleration",
            "max_steering",
            "wheelbase",
            "vehicle_length",
            "vehicle_width",
            "traffic_speed_low",
            "idm_acceleration",
            "idm_deceleration",
            "max_braking",
            "lateral_speed",
        ):
            _check_number(owner, name, getattr(self, name), low=0.0, strict=True)
        for name in (
            "initial_speed",
            "idm_gap",
            "idm_headway",
            "politeness",
            "lane_change_threshold",
            "safe_braking",
            "lane_weight",
            "jerk_weight",
            "collision_penalty",
        ):
            _check_number(owner, name, getattr(self, name), low=0.0)
        _check_number(
            owner, "traffic_speed_high", self.traffic_speed_high, low=self.traffic_speed_low, strict=False
        )
        if self.max_steering >= math.pi / 2:
            raise ValueError(f"{owner}: `max_steering` must be below pi/2 rad, got {self.max_steering!r}")


@dataclass(frozen=True)
class Highway(Environment):
    """A ``num_lanes``-lane ring highway with ``num_vehicles`` IDM/MOBIL cars and a bicycle-model
    ego car under continuous ``[acceleration, steering]`` control (module docstring).

    Settings (fixed per environment, checked on construction): ``num_lanes`` (>= 1),
    ``num_vehicles`` (>= 1; they must fit the start grid of one car per 25 m per lane),
    ``observed_vehicles`` K (``<= num_vehicles``), ``lane_width``, ``road_length`` (the ring's
    circumference, >= 100 m), ``speed_limit`` (the ego's top speed, the progress scale),
    ``observation_range`` (m); a training-time shaping term, ``headway_weight`` (>= 0, default 0:
    the task's reward) and ``safe_headway`` (s, > 0).
    """

    id: ClassVar[str] = "Highway-v0"
    max_episode_steps: ClassVar[int] = 150
    Params: ClassVar[type] = HighwayParams

    num_lanes: int = 3
    num_vehicles: int = 12
    observed_vehicles: int = 5
    lane_width: float = 4.0
    road_length: float = 400.0
    speed_limit: float = 30.0
    observation_range: float = 100.0
    headway_weight: float = 0.0
    """A shaping weight: every step's reward loses ``headway_weight *`` :meth:`headway_cost`. 0 is
    the task's reward (what evaluation reports); a learner may train with more."""
    safe_headway: float = 1.0
    """The time gap (s) inside which :meth:`headway_cost` grows from 0."""

    def __post_init__(self) -> None:
        _check_count(self.id, "num_lanes", self.num_lanes, 1)
        _check_count(self.id, "num_vehicles", self.num_vehicles, 1)
        _check_count(self.id, "observed_vehicles", self.observed_vehicles, 1)
        _check_number(self.id, "lane_width", self.lane_width, low=0.0, strict=True)
        _check_number(self.id, "road_length", self.road_length, low=100.0)
        _check_number(self.id, "speed_limit", self.speed_limit, low=0.0, strict=True)
        _check_number(self.id, "observation_range", self.observation_range, low=0.0, strict=True)
        _check_number(self.id, "headway_weight", self.headway_weight, low=0.0)
        _check_number(self.id, "safe_headway", self.safe_headway, low=0.0, strict=True)
        if self.observed_vehicles > self.num_vehicles:
            raise ValueError(
                f"{self.id}: `observed_vehicles` ({self.observed_vehicles}) must not exceed "
                f"`num_vehicles` ({self.num_vehicles})"
            )
        if self.num_vehicles > self.start_slots:
            raise ValueError(
                f"{self.id}: `num_vehicles` ({self.num_vehicles}) does not fit the start grid: "
                f"{self.num_lanes} lanes x {self.road_length:g} m hold at most {self.start_slots} cars "
                f"one per {SLOT:g} m away from the ego; lower it or lengthen `road_length`"
            )

    # -- geometry --------------------------------------------------------------------------

    @property
    def slots_per_lane(self) -> int:
        return int(self.road_length // SLOT)

    @property
    def start_slots(self) -> int:
        """Grid points a car may start on (those within 30 m of the ego's start are kept free)."""
        near = sum(1 for i in range(self.slots_per_lane) if min(i, self.slots_per_lane - i) * SLOT < 30.0)
        return self.num_lanes * (self.slots_per_lane - near)

    @property
    def road_width(self) -> float:
        return self.num_lanes * self.lane_width

    @property
    def road_centre(self) -> float:
        """The lateral position of the road's middle (lane 0's centre is at 0)."""
        return (self.num_lanes - 1) * self.lane_width / 2

    @property
    def observation_space(self) -> Box:  # type: ignore[override]
        n = EGO + 4 * self.observed_vehicles + 4 * 3
        return Box((-math.inf,) * n, (math.inf,) * n, (n,))

    @property
    def action_space(self) -> Box:  # type: ignore[override]
        return Box((-1.0, -1.0), (1.0, 1.0), (2,))

    def _wrap(self, dx: Tensor) -> Tensor:
        """A longitudinal difference on the ring, in ``[-road_length / 2, road_length / 2)``."""
        half = self.road_length / 2
        return torch.remainder(dx + half, self.road_length) - half

    def _lane_centres(self, like: Tensor) -> Tensor:
        return torch.arange(self.num_lanes, dtype=like.dtype, device=like.device) * self.lane_width

    def nearest_lane(self, y: Tensor) -> Tensor:
        """The index of the lane whose centre is nearest ``y`` (clamped to the road), int64."""
        return torch.clamp(torch.round(y / self.lane_width), 0, self.num_lanes - 1).long()

    def lane_offset(self, y: Tensor) -> Tensor:
        """``e``: the distance to the nearest lane centre over half a lane width (signed)."""
        return (y - self.nearest_lane(y).to(y.dtype) * self.lane_width) / (self.lane_width / 2)

    def unpack(self, physics: Tensor) -> tuple[Tensor, Tensor]:
        """``(ego [*, 6], cars [*, N, 5])``."""
        return physics[..., :EGO], physics[..., EGO:].unflatten(-1, (self.num_vehicles, CAR))

    # -- episodes --------------------------------------------------------------------------

    def init_physics(self, key: Tensor, params: HighwayParams, batch: tuple[int, ...] = ()) -> Tensor:
        k_lane, k_slot, k_jitter, k_speed = random.split(key, 4)
        dtype, device = self.physics_dtype, key.device
        lane = random.randint(k_lane, batch, 0, self.num_lanes).to(dtype)
        zeros = torch.zeros(batch, dtype=dtype, device=device)
        ego = torch.stack(
            [zeros, lane * self.lane_width, zeros, zeros + params.initial_speed, zeros, zeros], dim=-1
        )
        # cars on distinct grid points, none within 30 m of the ego (in any lane)
        S = self.slots_per_lane
        along = torch.arange(S, device=device)
        free = torch.minimum(along, S - along).to(dtype) * SLOT >= 30.0
        score = random.uniform(k_slot, (*batch, self.num_lanes * S), dtype)
        score = torch.where(free.repeat(self.num_lanes), score, -1.0)
        slot = torch.topk(score, self.num_vehicles, dim=-1).indices
        jitter = random.uniform(k_jitter, (*batch, self.num_vehicles), dtype, -3.0, 3.0)
        x = (slot % S).to(dtype) * SLOT + jitter
        car_lane = (slot // S).to(dtype)
        v0 = random.uniform(
            k_speed, (*batch, self.num_vehicles), dtype, params.traffic_speed_low, params.traffic_speed_high
        )
        cars = torch.stack([x, car_lane * self.lane_width, v0, v0, car_lane], dim=-1)
        return torch.cat([ego, cars.flatten(-2)], dim=-1)

    def observe(self, physics: Tensor) -> Tensor:
        ego, cars = self.unpack(physics)
        x, y, psi, v = ego[..., 0], ego[..., 1], ego[..., 2], ego[..., 3]
        own = torch.stack(
            [
                (y - self.road_centre) / (self.road_width / 2),
                psi,
                v / self.speed_limit,
                ego[..., 4],
                ego[..., 5],
                self.lane_offset(y),
            ],
            dim=-1,
        )
        dx = self._wrap(cars[..., 0] - x.unsqueeze(-1))
        dy = cars[..., 1] - y.unsqueeze(-1)
        dv = cars[..., 2] - (v * torch.cos(psi)).unsqueeze(-1)
        visible = dx.abs() < self.observation_range
        distance = torch.where(visible, torch.sqrt(dx * dx + dy * dy), math.inf)
        order = torch.topk(-distance, self.observed_vehicles, dim=-1).indices
        seen = torch.gather(visible, -1, order).to(physics.dtype)
        features = torch.stack(
            [
                seen,
                torch.gather(dx, -1, order) / self.observation_range * seen,
                torch.gather(dy, -1, order) / self.road_width * seen,
                torch.gather(dv, -1, order) / self.speed_limit * seen,
            ],
            dim=-1,
        )
        lanes = self._neighbour_lanes(ego, cars, dx, dv)
        return torch.cat([own, features.flatten(-2), lanes], dim=-1)

    def _neighbour_lanes(self, ego: Tensor, cars: Tensor, dx: Tensor, dv: Tensor) -> Tensor:
        """``[*, 12]``: for the lanes right of, at and left of the ego's nearest lane, the nearest
        car ahead and behind as ``[gap / range, closing speed / speed_limit]`` (module docstring).
        Lanes are occupied as the traffic sees them (:meth:`_occupancy`, default body size)."""
        params = self.default_params()
        occupies = self._occupancy({"y": cars[..., 1], "lane": cars[..., 4].long()}, params)  # [*, N, L]
        ego_lane = self.nearest_lane(ego[..., 1]).unsqueeze(-1)
        in_range = dx.abs() < self.observation_range
        out = []
        for side in (-1, 0, 1):
            lane = ego_lane + side
            exists = (lane >= 0) & (lane < self.num_lanes)
            pick = lane.clamp(0, self.num_lanes - 1).unsqueeze(-1).expand(*cars.shape[:-1], 1)
            in_lane = torch.gather(occupies, -1, pick).squeeze(-1) & exists & in_range  # [*, N]
            for ahead in (True, False):
                nearest, index = self._nearest(dx, in_lane, ahead)
                found = torch.isfinite(nearest)
                gap = torch.clamp(
                    torch.where(found, nearest - params.vehicle_length, self.observation_range), min=0.0
                )
                v_car = torch.gather(dv, -1, index.unsqueeze(-1)).squeeze(-1)  # v_car - v_ego
                closing = torch.where(found, -v_car if ahead else v_car, 0.0)
                out += [gap / self.observation_range, closing / self.speed_limit]
        return torch.stack(out, dim=-1)

    # -- traffic ---------------------------------------------------------------------------

    def idm(self, v: Tensor, v0: Tensor, gap: Tensor, dv: Tensor, params: HighwayParams) -> Tensor:
        """IDM's acceleration for speed ``v``, desired speed ``v0``, bumper gap ``gap`` to the leader
        (``inf``: none) and closing speed ``dv = v - v_leader``; clamped to ``[-max_braking, a_max]``."""
        p = params
        s_star = p.idm_gap + torch.clamp(
            v * p.idm_headway + v * dv / (2.0 * math.sqrt(p.idm_acceleration * p.idm_deceleration)), min=0.0
        )
        interaction = (s_star / torch.clamp(gap, min=0.1)) ** 2
        free = 1.0 - (torch.clamp(v, min=0.0) / v0) ** 4
        return torch.clamp(p.idm_acceleration * (free - interaction), -p.max_braking, p.idm_acceleration)

    def _road(self, physics: Tensor, params: HighwayParams) -> dict[str, Tensor]:
        """Every vehicle (ego first) as arrays over the last dim ``N + 1``: position ``x``, lateral
        position ``y``, longitudinal speed ``v``, desired speed ``v0``, target ``lane`` (the ego's:
        its nearest), the ring differences ``dx[i, j] = x_j - x_i``, lane occupancy ``occ[i, l]``
        (:meth:`_occupancy`), ``share[i, j]`` (``i`` and ``j`` occupy a common lane), and each one's
        nearest sharer ahead (``lead_d``, ``lead``) and behind (``back_d``, ``back``): distances
        (``inf``: none) and indices."""
        ego, cars = self.unpack(physics)
        x = torch.cat([ego[..., :1], cars[..., 0]], dim=-1)
        road = {
            "x": x,
            "y": torch.cat([ego[..., 1:2], cars[..., 1]], dim=-1),
            "v": torch.cat([(ego[..., 3] * torch.cos(ego[..., 2])).unsqueeze(-1), cars[..., 2]], dim=-1),
            "v0": torch.cat([torch.full_like(ego[..., :1], self.speed_limit), cars[..., 3]], dim=-1),
            "lane": torch.cat([self.nearest_lane(ego[..., 1:2]), cars[..., 4].long()], dim=-1),
            "dx": self._wrap(x.unsqueeze(-2) - x.unsqueeze(-1)),
        }
        road["occ"] = self._occupancy(road, params)
        occ = road["occ"].to(x.dtype)
        road["share"] = (occ @ occ.transpose(-1, -2)) > 0
        road["lead_d"], road["lead"] = self._nearest(road["dx"], road["share"], ahead=True)
        road["back_d"], road["back"] = self._nearest(road["dx"], road["share"], ahead=False)
        return road

    def _occupancy(self, road: dict[str, Tensor], params: HighwayParams) -> Tensor:
        """``occ[*, i, l]``: vehicle ``i``'s body overlaps lane ``l``, or ``l`` is the lane it is
        moving to (a car claims its new lane as soon as it decides to change)."""
        y = road["y"]
        reach = (self.lane_width + params.vehicle_width) / 2
        lanes = torch.arange(self.num_lanes, device=y.device)
        return ((y.unsqueeze(-1) - self._lane_centres(y)).abs() < reach) | (
            road["lane"].unsqueeze(-1) == lanes
        )

    def _nearest(self, dx: Tensor, candidate: Tensor, ahead: bool) -> tuple[Tensor, Tensor]:
        """For each row ``i``: the nearest candidate ``j`` ahead (``dx > 0``) or behind, as
        ``(distance [*, N+1] (inf: none), index [*, N+1])``."""
        d = dx if ahead else -dx
        d = torch.where(candidate & (d > 0), d, math.inf)
        distance, index = d.min(dim=-1)
        return distance, index

    def traffic_accelerations(self, road: dict[str, Tensor], params: HighwayParams) -> Tensor:
        """Every vehicle's IDM acceleration behind its current leader (the nearest vehicle ahead
        sharing a lane with it), ``[*, N+1]``, for a :meth:`_road`."""
        dv = road["v"] - torch.gather(road["v"], -1, road["lead"])
        return self.idm(road["v"], road["v0"], road["lead_d"] - params.vehicle_length, dv, params)

    def _lane_change(
        self, road: dict[str, Tensor], acc: Tensor, gain_old: Tensor, side: int, params: HighwayParams
    ) -> Tensor:
        """MOBIL's incentive for each car to move one lane ``side`` (+1 left, -1 right): ``[*, N+1]``
        (``-inf`` where the change is impossible or unsafe); ``gain_old`` is what the car's old
        follower gains when it leaves (the same either side)."""
        p = params
        v, v0, dx = road["v"], road["v0"], road["dx"]
        n = v.shape[-1]
        new_lane = road["lane"] + side
        valid = (new_lane >= 0) & (new_lane < self.num_lanes)
        # in_new[i, j]: vehicle j occupies the lane vehicle i would move to
        lanes = torch.arange(self.num_lanes, device=v.device)
        pick = (new_lane.clamp(0, self.num_lanes - 1).unsqueeze(-1) == lanes).to(v.dtype)  # [*, n, L]
        in_new = (pick @ road["occ"].to(v.dtype).transpose(-1, -2)) > 0
        in_new = in_new & ~torch.eye(n, dtype=torch.bool, device=v.device)
        blocked = (in_new & (dx.abs() < p.vehicle_length + p.idm_gap)).any(-1)
        lead_d, lead = self._nearest(dx, in_new, ahead=True)
        foll_d, foll = self._nearest(dx, in_new, ahead=False)
        has_follower = torch.isfinite(foll_d)
        # the car behind its new leader; the new follower behind the car, and before the change
        acc_new = self.idm(v, v0, lead_d - p.vehicle_length, v - torch.gather(v, -1, lead), p)
        v_f, v0_f = torch.gather(v, -1, foll), torch.gather(v0, -1, foll)
        acc_f_new = self.idm(v_f, v0_f, foll_d - p.vehicle_length, v_f - v, p)
        gain_f = torch.where(has_follower, acc_f_new - torch.gather(acc, -1, foll), 0.0)
        safe = valid & ~blocked & (~has_follower | (acc_f_new >= -p.safe_braking))
        incentive = acc_new - acc + p.politeness * (gain_f + gain_old)
        return torch.where(safe & (incentive > p.lane_change_threshold), incentive, -math.inf)

    def _old_follower_gain(self, road: dict[str, Tensor], acc: Tensor, params: HighwayParams) -> Tensor:
        """For each car: what its follower gains when the car leaves (it then follows the car's
        leader), ``[*, N+1]`` (0 without a follower)."""
        p, v = params, road["v"]
        old = road["back"]
        v_o, v0_o = torch.gather(v, -1, old), torch.gather(road["v0"], -1, old)
        gap = road["back_d"] + road["lead_d"] - p.vehicle_length
        acc_o_new = self.idm(v_o, v0_o, gap, v_o - torch.gather(v, -1, road["lead"]), p)
        return torch.where(torch.isfinite(road["back_d"]), acc_o_new - torch.gather(acc, -1, old), 0.0)

    def _move_traffic(self, physics: Tensor, params: HighwayParams) -> Tensor:
        """The cars' next states ``[*, N, 5]`` (IDM along the road, MOBIL across it)."""
        p = params
        _, cars = self.unpack(physics)
        road = self._road(physics, p)
        acc = self.traffic_accelerations(road, p)
        target = road["lane"]
        settled = (road["y"] - target.to(road["y"].dtype) * self.lane_width).abs() < 0.05
        gain_old = self._old_follower_gain(road, acc, p)
        left = self._lane_change(road, acc, gain_old, +1, p)
        right = self._lane_change(road, acc, gain_old, -1, p)
        rank = torch.arange(target.shape[-1], device=target.device)
        driver = settled & (rank > 0)  # the ego (index 0) is not a MOBIL driver
        go_left = driver & torch.isfinite(left) & (left >= right)
        go_right = driver & torch.isfinite(right) & ~go_left
        change = go_left | go_right
        new = target + go_left.long() - go_right.long()
        # two cars moving into one lane within a headway of each other this step: the keener goes
        keen = torch.where(go_left, left, torch.where(go_right, right, -math.inf))
        beats = (keen.unsqueeze(-2) > keen.unsqueeze(-1)) | (
            (keen.unsqueeze(-2) == keen.unsqueeze(-1)) & (rank < rank.unsqueeze(-1))
        )  # beats[i, j]: j's change wins over i's
        near = road["dx"].abs() < p.vehicle_length + p.idm_gap + p.idm_headway * self.speed_limit
        rival = change.unsqueeze(-2) & (new.unsqueeze(-2) == new.unsqueeze(-1)) & near & beats
        change = change & ~rival.any(-1)
        target = torch.where(change, new, target)[..., 1:]
        y, v = cars[..., 1], cars[..., 2]
        a = acc[..., 1:]
        goal = target.to(y.dtype) * self.lane_width
        step = p.lateral_speed * p.dt
        y = y + torch.clamp(goal - y, -step, step)
        x = torch.remainder(cars[..., 0] + v * p.dt + 0.5 * a * p.dt**2, self.road_length)
        v = torch.clamp(v + a * p.dt, min=0.0)
        return torch.stack([x, y, v, cars[..., 3], target.to(y.dtype)], dim=-1)

    # -- dynamics --------------------------------------------------------------------------

    def transition(self, physics: Tensor, action: Tensor, params: HighwayParams):
        p = params
        ego, _ = self.unpack(physics)
        x, y, psi, v, a_prev, d_prev = ego.unbind(-1)
        a_cmd = torch.clamp(action[..., 0], -1.0, 1.0).to(physics.dtype)
        d_cmd = torch.clamp(action[..., 1], -1.0, 1.0).to(physics.dtype)
        delta = d_cmd * p.max_steering
        beta = torch.atan(torch.tan(delta) / 2.0)
        cars = self._move_traffic(physics, p)
        x = torch.remainder(x + v * torch.cos(psi + beta) * p.dt, self.road_length)
        y = y + v * torch.sin(psi + beta) * p.dt
        psi = psi + 2.0 * v / p.wheelbase * torch.sin(beta) * p.dt
        v = torch.clamp(v + a_cmd * p.max_acceleration * p.dt, 0.0, self.speed_limit)
        ego = torch.stack([x, y, psi, v, a_cmd, d_cmd], dim=-1)
        next_physics = torch.cat([ego, cars.flatten(-2)], dim=-1)
        off_road = (y - self.road_centre).abs() > self.road_width / 2
        progress = v * torch.cos(psi) / self.speed_limit
        jerk = (a_cmd - a_prev) ** 2 + (d_cmd - d_prev) ** 2
        reward = progress - p.lane_weight * self.lane_offset(y) ** 2 - p.jerk_weight * jerk
        if self.headway_weight > 0:  # a setting: the task's reward (0) traces no extra op
            reward = reward - self.headway_weight * self.headway_cost(next_physics, p)
        terminated = self.collided(next_physics, p) | off_road
        reward = torch.where(terminated, -p.collision_penalty, reward)
        return next_physics, reward, terminated

    def headway_cost(self, physics: Tensor, params: HighwayParams) -> Tensor:
        """How close the ego is to a car in its path or to the road's edge, ``[*]`` in ``[0, 1]``::

            cost = max(max_j  w_j  clip(1 - h_j / safe_headway, 0, 1),  clip(1 - c / 1 m, 0, 1))
            h_j  = (dx_j - length)_+ / max(v_ego, 1)   a car ahead (dx_j > 0): the ego's time gap
                   (-dx_j - length)_+ / max(v_j, 1)    a car behind: that car's time gap to the ego
            w_j  = clip((width + 1.5 m - |dy_j|) / 1.5 m, 0, 1)
            c    = road_width / 2 - |y - road_centre| - width / 2   the ego's clearance to the edge

        ``v`` the longitudinal speeds in m/s. ``w_j`` is 1 when the bodies overlap sideways and 0
        from 1.5 m clear (a car in the next lane with the ego within 0.5 m of its lane's centre); a
        car alongside (``h = 0``) counts ``w_j``; ``c`` is 1 m in an outer lane's centre. The
        controller's IDM keeps ``h`` near 1.7 s at 25 m/s, so its cost is ~0 (3e-4 an episode);
        what the cost prices is what the collision penalty leaves to rare events: closing in on a
        car or squeezing one alongside while crossing lanes, and drifting to the edge.
        """
        p = params
        ego, cars = self.unpack(physics)
        dx = self._wrap(cars[..., 0] - ego[..., :1])
        dy = cars[..., 1] - ego[..., 1:2]
        v_ego = (ego[..., 3] * torch.cos(ego[..., 2])).unsqueeze(-1)
        ahead = dx > 0
        gap = torch.clamp(dx.abs() - p.vehicle_length, min=0.0)
        speed = torch.clamp(torch.where(ahead, v_ego, cars[..., 2]), min=1.0)
        near = torch.clamp(1.0 - gap / speed / self.safe_headway, 0.0, 1.0)
        beside = torch.clamp((p.vehicle_width + 1.5 - dy.abs()) / 1.5, 0.0, 1.0)
        clearance = self.road_width / 2 - (ego[..., 1] - self.road_centre).abs() - p.vehicle_width / 2
        edge = torch.clamp(1.0 - clearance, 0.0, 1.0)
        return torch.maximum((near * beside).amax(dim=-1), edge)

    def collided(self, physics: Tensor, params: HighwayParams) -> Tensor:
        """Whether the ego touches a car in ``physics`` (``[*]`` bool)."""
        p = params
        ego, cars = self.unpack(physics)
        dx = self._wrap(cars[..., 0] - ego[..., :1])
        dy = cars[..., 1] - ego[..., 1:2]
        return ((dx.abs() < p.vehicle_length) & (dy.abs() < p.vehicle_width)).any(-1)


# -- the baseline and evaluation ---------------------------------------------------------------


def hand_tuned(
    env: Highway, physics: Tensor, params: HighwayParams, key: Tensor | None = None, *, omega: float = 1.5
) -> Tensor:
    """The hand-tuned controller: PD lane keeping on the nearest lane centre, its gains scheduled
    on speed, plus IDM speed control toward the speed limit behind the leader in the ego's lane.

    Lateral: for small angles ``e'' ~ (v^2 / W) delta``, so ``delta = -(W / v^2)(omega^2 e + 2 omega
    v psi)`` makes the lane error a critically damped oscillator of natural frequency ``omega``
    (an integral term is not needed: a straight road has no steady disturbance). Longitudinal:
    IDM with ``v0 = speed_limit`` and the env's IDM constants. Returns actions ``[*, 2]`` in
    ``[-1, 1]`` (``key`` is unused: the controller is deterministic).
    """
    ego, _ = env.unpack(physics)
    y, psi, v = ego[..., 1], ego[..., 2], ego[..., 3]
    e = y - env.nearest_lane(y).to(y.dtype) * env.lane_width
    speed = torch.clamp(v, min=5.0)
    delta = -(params.wheelbase / speed**2) * (omega**2 * e + 2.0 * omega * speed * torch.sin(psi))
    acc = env.traffic_accelerations(env._road(physics, params), params)
    return torch.stack(
        [
            torch.clamp(acc[..., 0] / params.max_acceleration, -1.0, 1.0),
            torch.clamp(delta / params.max_steering, -1.0, 1.0),
        ],
        dim=-1,
    )


DrivingPolicy = Callable[[Highway, Tensor, HighwayParams, Tensor], Tensor]
"""``policy(env, physics, params, key) -> action [E, 2]``."""


def rollout_episodes(
    env: Highway, policy: DrivingPolicy, key: Tensor, episodes: int, params: HighwayParams | None = None
) -> dict[str, Tensor]:
    """Run ``episodes`` episodes of ``policy`` side by side until each has ended once.

    Returns per episode ``[episodes]``: ``return``, ``length``, ``collision`` (ended by a crash or
    by leaving the road: every termination in this environment is one) and ``mean_speed`` (m/s).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"rollout_episodes: `episodes` must be a positive int, got {episodes!r}")
    params = env.default_params() if params is None else params
    k_reset, key = random.split(key)
    _, state = env.reset(k_reset, params, num_envs=episodes)
    live = torch.ones(episodes, dtype=torch.bool)
    total = torch.zeros(episodes, dtype=torch.float64)
    length = torch.zeros(episodes, dtype=torch.int64)
    speed = torch.zeros(episodes, dtype=torch.float64)
    crashed = torch.zeros(episodes, dtype=torch.bool)
    for _ in range(env.max_episode_steps):
        key, k_policy, k_step = random.split(key, 3)
        action = policy(env, state["physics"], params, k_policy)
        _, state, reward, terminated, truncated, info = env.step(k_step, state, action, params)
        total += torch.where(live, reward.double(), 0.0)
        length += live.long()
        speed += torch.where(live, info["final_observation"][..., 2].double() * env.speed_limit, 0.0)
        crashed |= live & terminated
        live = live & ~(terminated | truncated)
        if not bool(live.any()):
            break
    return {"return": total, "length": length, "collision": crashed, "mean_speed": speed / length}
