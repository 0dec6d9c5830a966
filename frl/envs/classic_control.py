"""gymnasium's classic-control environments as pure torch functions.

Dynamics, rewards, termination rules, initial-state distributions and time limits follow
gymnasium 1.4 (``gymnasium/envs/classic_control``); ``tests/test_envs.py`` checks every
transition against gymnasium from the same state. The physics is float32 by default
(gymnasium integrates in float64 and returns float32 observations); pass ``dtype=torch.float64``
for gymnasium's precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.spaces import Box, Discrete

__all__ = ["Acrobot", "CartPole", "MountainCar", "MountainCarContinuous", "Pendulum"]


def _uniform(
    key: Tensor,
    shape: tuple[int, ...],
    low: float | tuple[float, ...],
    high: float | tuple[float, ...],
    dtype,
) -> Tensor:
    if isinstance(low, float) and isinstance(high, float):
        return random.uniform(key, shape, dtype, low, high)
    lo = torch.as_tensor(low, dtype=dtype, device=key.device)
    hi = torch.as_tensor(high, dtype=dtype, device=key.device)
    return random.uniform(key, shape, dtype, lo, hi)


# --------------------------------------------------------------------------------------
# CartPole-v1
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CartPoleParams:
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    tau: float = 0.02
    theta_threshold: float = 12 * 2 * math.pi / 360
    x_threshold: float = 2.4


@dataclass(frozen=True)
class CartPole(Environment):
    """Balance a pole on a cart (Barto, Sutton & Anderson 1983): physics ``[x, x_dot, theta, theta_dot]``.

    Reward 1 per step (the terminal step included); terminated when ``|x| > 2.4`` or
    ``|theta| > 12 deg``; 500 steps. Actions: 0 push left, 1 push right. Euler integration.
    """

    id: ClassVar[str] = "CartPole-v1"
    max_episode_steps: ClassVar[int] = 500
    scannable: ClassVar[bool] = True
    observation_space: ClassVar[Box] = Box(
        (-4.8, -math.inf, -0.41887903, -math.inf), (4.8, math.inf, 0.41887903, math.inf), (4,)
    )
    action_space: ClassVar[Discrete] = Discrete(2)
    Params: ClassVar[type] = CartPoleParams

    def init_physics(self, key: Tensor, params: CartPoleParams, batch: tuple[int, ...] = ()) -> Tensor:
        return _uniform(key, (*batch, 4), -0.05, 0.05, self.physics_dtype)

    def transition(self, physics: Tensor, action: Tensor, params: CartPoleParams):
        # gymnasium's equations, with each Python constant folded into a fused op's scalar
        # argument (eagerly, an op that wraps a Python number costs twice a tensor-tensor op):
        #   temp = (F + m_p l theta_dot^2 sin) / M
        #   theta_acc = (g sin - cos temp) / (l (4/3 - m_p cos^2 / M))   (numerator and denominator / g)
        #   x_acc = temp - m_p l theta_acc cos / M
        p = params
        total_mass = p.masspole + p.masscart
        polemass_length = p.masspole * p.length
        _, x_dot, theta, theta_dot = physics.unbind(-1)
        force = torch.full_like(x_dot, p.force_mag / total_mass)  # F / M, in the physics' dtype
        force = torch.where(action == 1, force, -force)
        cos, sin = torch.cos(theta), torch.sin(theta)
        temp = torch.addcmul(force, theta_dot * theta_dot, sin, value=polemass_length / total_mass)
        numerator = torch.addcmul(sin, cos, temp, value=-1.0 / p.gravity)
        denominator = torch.addcmul(
            torch.full_like(cos, p.length * (4.0 / 3.0) / p.gravity),
            cos,
            cos,
            value=-p.length * p.masspole / (total_mass * p.gravity),
        )
        theta_acc = numerator / denominator
        x_acc = torch.addcmul(temp, theta_acc, cos, value=-polemass_length / total_mass)
        # Euler on the whole state at once
        physics = torch.add(physics, torch.stack([x_dot, x_acc, theta_dot, theta_acc], dim=-1), alpha=p.tau)
        x, _, theta, _ = physics.unbind(-1)
        terminated = (x.abs() > p.x_threshold) | (theta.abs() > p.theta_threshold)
        return physics, torch.ones_like(x), terminated


# --------------------------------------------------------------------------------------
# Acrobot-v1
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcrobotParams:
    dt: float = 0.2
    link_length_1: float = 1.0
    link_mass_1: float = 1.0
    link_mass_2: float = 1.0
    link_com_pos_1: float = 0.5
    link_com_pos_2: float = 0.5
    link_moi: float = 1.0
    max_vel_1: float = 4 * math.pi
    max_vel_2: float = 9 * math.pi


def _wrap(x: Tensor, low: float, high: float) -> Tensor:
    """Wrap into ``[low, high]`` as gymnasium's loop does (values already inside are kept)."""
    width = high - low
    wrapped = x - width * torch.floor((x - low) / width)
    return torch.where((x >= low) & (x <= high), x, wrapped)


@dataclass(frozen=True)
class Acrobot(Environment):
    """Swing a two-link pendulum up (Sutton 1996; book dynamics): physics ``[th1, th2, dth1, dth2]``.

    Observation ``[cos th1, sin th1, cos th2, sin th2, dth1, dth2]``; actions 0, 1, 2 apply torque
    -1, 0, +1 to the second joint; RK4 over ``dt = 0.2``; reward -1 per step, 0 on reaching the
    goal height (``-cos th1 - cos(th1 + th2) > 1``); 500 steps.
    """

    id: ClassVar[str] = "Acrobot-v1"
    max_episode_steps: ClassVar[int] = 500
    observation_space: ClassVar[Box] = Box(
        (-1.0, -1.0, -1.0, -1.0, -4 * math.pi, -9 * math.pi),
        (1.0, 1.0, 1.0, 1.0, 4 * math.pi, 9 * math.pi),
        (6,),
    )
    action_space: ClassVar[Discrete] = Discrete(3)
    Params: ClassVar[type] = AcrobotParams

    @property
    def physics_dtype(self) -> torch.dtype:
        # RK4 over dt = 0.2 with velocities up to 9 pi: float32 drifts 8e-4 from gymnasium's float64
        return torch.float64

    def init_physics(self, key: Tensor, params: AcrobotParams, batch: tuple[int, ...] = ()) -> Tensor:
        return _uniform(key, (*batch, 4), -0.1, 0.1, self.physics_dtype)

    def _derivatives(self, s: Tensor, torque: Tensor, p: AcrobotParams) -> Tensor:
        m1, m2, l1 = p.link_mass_1, p.link_mass_2, p.link_length_1
        lc1, lc2, i1, i2, g = p.link_com_pos_1, p.link_com_pos_2, p.link_moi, p.link_moi, 9.8
        theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * torch.cos(theta2)) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * torch.cos(theta2)) + i2
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * torch.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * torch.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - math.pi / 2)
            + phi2
        )
        ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * torch.sin(theta2) - phi2) / (
            m2 * lc2**2 + i2 - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], dim=-1)

    def transition(self, physics: Tensor, action: Tensor, params: AcrobotParams):
        p = params
        torque = (action - 1).to(physics.dtype)
        dt, half = p.dt, p.dt / 2.0
        k1 = self._derivatives(physics, torque, p)
        k2 = self._derivatives(physics + half * k1, torque, p)
        k3 = self._derivatives(physics + half * k2, torque, p)
        k4 = self._derivatives(physics + dt * k3, torque, p)
        ns = physics + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        th1, th2, dth1, dth2 = ns.unbind(-1)
        th1, th2 = _wrap(th1, -math.pi, math.pi), _wrap(th2, -math.pi, math.pi)
        dth1 = torch.clamp(dth1, -p.max_vel_1, p.max_vel_1)
        dth2 = torch.clamp(dth2, -p.max_vel_2, p.max_vel_2)
        next_physics = torch.stack([th1, th2, dth1, dth2], dim=-1)
        terminated = -torch.cos(th1) - torch.cos(th2 + th1) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(physics.dtype)
        return next_physics, reward, terminated

    def observe(self, physics: Tensor) -> Tensor:
        th1, th2, dth1, dth2 = physics.unbind(-1)
        return torch.stack(
            [torch.cos(th1), torch.sin(th1), torch.cos(th2), torch.sin(th2), dth1, dth2], dim=-1
        )


# --------------------------------------------------------------------------------------
# MountainCar-v0 and MountainCarContinuous-v0
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountainCarParams:
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025


def _car_bounds(position: Tensor, velocity: Tensor, p) -> tuple[Tensor, Tensor]:
    velocity = torch.clamp(velocity, -p.max_speed, p.max_speed)
    position = torch.clamp(position + velocity, p.min_position, p.max_position)
    velocity = torch.where(
        (position == p.min_position) & (velocity < 0), torch.zeros_like(velocity), velocity
    )
    return position, velocity


@dataclass(frozen=True)
class MountainCar(Environment):
    """Drive an underpowered car up a hill (Moore 1990): physics ``[position, velocity]``.

    Actions 0, 1, 2 accelerate left, not at all, right; reward -1 per step; terminated at
    ``position >= 0.5`` (and ``velocity >= 0``); 200 steps.
    """

    id: ClassVar[str] = "MountainCar-v0"
    max_episode_steps: ClassVar[int] = 200
    observation_space: ClassVar[Box] = Box((-1.2, -0.07), (0.6, 0.07), (2,))
    action_space: ClassVar[Discrete] = Discrete(3)
    Params: ClassVar[type] = MountainCarParams

    def init_physics(self, key: Tensor, params: MountainCarParams, batch: tuple[int, ...] = ()) -> Tensor:
        position = _uniform(key, (*batch, 1), -0.6, -0.4, self.physics_dtype)
        return torch.cat([position, torch.zeros_like(position)], dim=-1)

    def transition(self, physics: Tensor, action: Tensor, params: MountainCarParams):
        p = params
        position, velocity = physics.unbind(-1)
        velocity = (
            velocity + (action - 1).to(physics.dtype) * p.force + torch.cos(3 * position) * (-p.gravity)
        )
        position, velocity = _car_bounds(position, velocity, p)
        terminated = (position >= p.goal_position) & (velocity >= p.goal_velocity)
        return torch.stack([position, velocity], dim=-1), torch.full_like(position, -1.0), terminated


@dataclass(frozen=True)
class MountainCarContinuousParams(MountainCarParams):
    goal_position: float = 0.45
    power: float = 0.0015
    min_action: float = -1.0
    max_action: float = 1.0


@dataclass(frozen=True)
class MountainCarContinuous(Environment):
    """MountainCar with a continuous force in ``[-1, 1]``: reward ``100`` at the goal
    (``position >= 0.45``) minus ``0.1 a^2`` per step (of the unclipped action); 999 steps."""

    id: ClassVar[str] = "MountainCarContinuous-v0"
    max_episode_steps: ClassVar[int] = 999
    observation_space: ClassVar[Box] = Box((-1.2, -0.07), (0.6, 0.07), (2,))
    action_space: ClassVar[Box] = Box((-1.0,), (1.0,), (1,))
    Params: ClassVar[type] = MountainCarContinuousParams

    def init_physics(
        self, key: Tensor, params: MountainCarContinuousParams, batch: tuple[int, ...] = ()
    ) -> Tensor:
        position = _uniform(key, (*batch, 1), -0.6, -0.4, self.physics_dtype)
        return torch.cat([position, torch.zeros_like(position)], dim=-1)

    def transition(self, physics: Tensor, action: Tensor, params: MountainCarContinuousParams):
        p = params
        position, velocity = physics.unbind(-1)
        a = action[..., 0].to(physics.dtype)
        force = torch.clamp(a, p.min_action, p.max_action)
        velocity = velocity + force * p.power - 0.0025 * torch.cos(3 * position)
        position, velocity = _car_bounds(position, velocity, p)
        terminated = (position >= p.goal_position) & (velocity >= p.goal_velocity)
        reward = torch.where(terminated, 100.0, 0.0).to(physics.dtype) - 0.1 * a * a
        return torch.stack([position, velocity], dim=-1), reward, terminated


# --------------------------------------------------------------------------------------
# Pendulum-v1
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendulumParams:
    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 - gymnasium's name for the pole length


def _angle_normalize(x: Tensor) -> Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


@dataclass(frozen=True)
class Pendulum(Environment):
    """Swing up and hold an inverted pendulum: physics ``[theta, theta_dot]``.

    Observation ``[cos theta, sin theta, theta_dot]``; action a torque in ``[-2, 2]``; reward
    ``-(angle^2 + 0.1 theta_dot^2 + 0.001 u^2)``; never terminates; 200 steps.
    """

    id: ClassVar[str] = "Pendulum-v1"
    max_episode_steps: ClassVar[int] = 200
    observation_space: ClassVar[Box] = Box((-1.0, -1.0, -8.0), (1.0, 1.0, 8.0), (3,))
    action_space: ClassVar[Box] = Box((-2.0,), (2.0,), (1,))
    Params: ClassVar[type] = PendulumParams

    def init_physics(self, key: Tensor, params: PendulumParams, batch: tuple[int, ...] = ()) -> Tensor:
        return _uniform(key, (*batch, 2), (-math.pi, -1.0), (math.pi, 1.0), self.physics_dtype)

    def transition(self, physics: Tensor, action: Tensor, params: PendulumParams):
        p = params
        th, thdot = physics.unbind(-1)
        u = torch.clamp(action[..., 0].to(physics.dtype), -p.max_torque, p.max_torque)
        costs = _angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        new_thdot = thdot + (3 * p.g / (2 * p.l) * torch.sin(th) + 3.0 / (p.m * p.l**2) * u) * p.dt
        new_thdot = torch.clamp(new_thdot, -p.max_speed, p.max_speed)
        new_th = th + new_thdot * p.dt
        return torch.stack([new_th, new_thdot], dim=-1), -costs, torch.zeros_like(th, dtype=torch.bool)

    def observe(self, physics: Tensor) -> Tensor:
        th, thdot = physics.unbind(-1)
        return torch.stack([torch.cos(th), torch.sin(th), thdot], dim=-1)
