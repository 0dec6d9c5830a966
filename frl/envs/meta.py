"""Task distributions for meta-RL as pure torch environments: one episode is one *trial* on a
task drawn at reset, so a recurrent agent (RL^2, Duan et al. 2016, "RL^2: fast reinforcement
learning via slow reinforcement learning") must explore and exploit within the trial, its
hidden state kept for the whole trial and reset with the next task.

* :class:`BernoulliBandits`: ``arms`` Bernoulli arms with means drawn uniformly, ``pulls`` pulls
  per trial (Duan et al.'s bandit setting).
* :class:`PointNavigation`: a point moving in the plane toward a goal it does not observe, the
  goal a parameter (MAML's 2-D navigation, Finn et al. 2017): a task is its params, so
  ``torch.func.vmap`` over goals steps many tasks at once.
* :class:`RandomMDPs`: tabular MDPs with ``states`` states and ``actions`` actions (Dirichlet(1)
  transitions, rewards ``N(mu, 1)`` with ``mu ~ N(1, 1)``), ``episodes`` episodes of ``horizon``
  steps per trial (Duan et al.'s MDP setting).

Each observation carries the previous action (one-hot) and reward, as RL^2's inputs do; the
physics keeps the task, so ``info`` needs nothing more to measure regret: :meth:`expected_reward`
gives an action's mean reward in a state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from frl import random
from frl.envs.base import Environment
from frl.envs.spaces import Box, Discrete

__all__ = ["BernoulliBandits", "PointNavigation", "PointNavigationParams", "RandomMDPs"]


class _NoParams(NamedTuple):
    """The task is drawn at reset: no fixed constants."""


def _check_positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: `{name}` must be a positive int, got {value!r}")


@dataclass(frozen=True)
class BernoulliBandits(Environment):
    """A trial of ``pulls`` pulls on ``arms`` Bernoulli arms, the means ``p ~ U[0, 1]^arms`` drawn
    at reset.

    Observation ``[one_hot(previous arm) (arms), previous reward, t / pulls]`` (zeros before the
    first pull but the time); reward 1 with probability ``p[arm]``; the trial terminates after
    ``pulls`` pulls. The expected regret of a trial is ``sum_t max(p) - p[a_t]``.

    Physics ``[p (arms), previous arm, previous reward, t]`` (float).
    """

    action_space: ClassVar[Discrete]
    observation_space: ClassVar[Box]
    Params: ClassVar[type] = _NoParams
    random_transition: ClassVar[bool] = True

    arms: int = 10
    pulls: int = 100

    def __post_init__(self) -> None:
        _check_positive("BernoulliBandits", arms=self.arms, pulls=self.pulls)
        n = self.arms + 2
        object.__setattr__(self, "action_space", Discrete(self.arms))
        object.__setattr__(self, "observation_space", Box((0.0,) * n, (1.0,) * n, (n,)))

    @property
    def id(self) -> str:  # type: ignore[override]
        """``BernoulliBandits-v0`` (10 arms, 100 pulls), else ``BernoulliBandits-<arms>x<pulls>-v0``."""
        if (self.arms, self.pulls) == (10, 100):
            return "BernoulliBandits-v0"
        return f"BernoulliBandits-{self.arms}x{self.pulls}-v0"

    @property
    def max_episode_steps(self) -> int:  # type: ignore[override]
        return self.pulls

    def default_params(self) -> _NoParams:
        return _NoParams()

    def init_physics(self, key: Tensor, params: _NoParams, batch: tuple[int, ...] = ()) -> Tensor:
        means = random.uniform(key, (*batch, self.arms), self.physics_dtype)
        rest = torch.zeros(*batch, 3, dtype=self.physics_dtype, device=means.device)
        rest[..., 0] = -1.0  # no previous arm
        return torch.cat([means, rest], dim=-1)

    def means(self, physics: Tensor) -> Tensor:
        """The arms' means ``[..., arms]`` of the trial's task."""
        return physics[..., : self.arms]

    def expected_reward(self, physics: Tensor, action: Tensor) -> Tensor:
        """``p[action]``: the pull's mean reward."""
        return torch.gather(self.means(physics), -1, action.unsqueeze(-1)).squeeze(-1)

    def transition(self, physics: Tensor, action: Tensor, params: _NoParams, key: Tensor):
        p = self.expected_reward(physics, action)
        reward = (random.uniform(key, tuple(p.shape), p.dtype) < p).to(physics.dtype)
        t = physics[..., -1] + 1
        tail = torch.stack([action.to(physics.dtype), reward, t], dim=-1)
        return torch.cat([self.means(physics), tail], dim=-1), reward, t >= self.pulls

    def observe(self, physics: Tensor) -> Tensor:
        arm, reward, t = physics[..., self.arms], physics[..., self.arms + 1], physics[..., self.arms + 2]
        last = F.one_hot(arm.clamp(min=0).long(), self.arms).to(physics.dtype) * (arm >= 0).unsqueeze(-1)
        return torch.cat([last, reward.unsqueeze(-1), (t / self.pulls).unsqueeze(-1)], dim=-1)


@dataclass(frozen=True)
class RandomMDPs(Environment):
    """A trial of ``episodes`` episodes of ``horizon`` steps on a tabular MDP drawn at reset:
    transitions ``P(.|s, a) ~ Dirichlet(1)``, mean rewards ``mu(s, a) ~ N(1, 1)`` and rewards
    ``N(mu(s, a), 1)``, every episode starting in state 0 (Duan et al. 2016).

    Observation ``[one_hot(s) (states), one_hot(previous action) (actions), previous reward,
    episode just ended, t / (episodes horizon)]``; the trial terminates after ``episodes x
    horizon`` steps (the episodes inside a trial are what the observation's flag marks, so a
    recurrent agent keeps its memory across them).

    Physics ``[P (states x actions x states), mu (states x actions), s, previous action, previous
    reward, episode ended, t]`` (float).
    """

    action_space: ClassVar[Discrete]
    observation_space: ClassVar[Box]
    Params: ClassVar[type] = _NoParams
    random_transition: ClassVar[bool] = True

    states: int = 10
    actions: int = 5
    horizon: int = 10
    episodes: int = 10

    def __post_init__(self) -> None:
        _check_positive(
            "RandomMDPs",
            states=self.states,
            actions=self.actions,
            horizon=self.horizon,
            episodes=self.episodes,
        )
        n = self.states + self.actions + 3
        object.__setattr__(self, "action_space", Discrete(self.actions))
        inf = float("inf")
        object.__setattr__(self, "observation_space", Box((-inf,) * n, (inf,) * n, (n,)))

    @property
    def id(self) -> str:  # type: ignore[override]
        """``RandomMDPs-v0`` (10 states, 5 actions, 10 episodes of 10 steps), else with the sizes."""
        if (self.states, self.actions, self.horizon, self.episodes) == (10, 5, 10, 10):
            return "RandomMDPs-v0"
        return f"RandomMDPs-{self.states}x{self.actions}-{self.episodes}x{self.horizon}-v0"

    @property
    def max_episode_steps(self) -> int:  # type: ignore[override]
        return self.episodes * self.horizon

    def default_params(self) -> _NoParams:
        return _NoParams()

    @property
    def _sizes(self) -> tuple[int, int]:
        S, A = self.states, self.actions
        return S * A * S, S * A

    def init_physics(self, key: Tensor, params: _NoParams, batch: tuple[int, ...] = ()) -> Tensor:
        S, A = self.states, self.actions
        k_p, k_mu = random.split(key)
        # Dirichlet(1) rows: normalised exponentials
        e = -torch.log(random.uniform(k_p, (*batch, S, A, S), self.physics_dtype, minval=1e-12, maxval=1.0))
        transitions = (e / e.sum(-1, keepdim=True)).reshape(*batch, S * A * S)
        mu = 1.0 + random.normal(k_mu, (*batch, S * A), self.physics_dtype)
        rest = torch.zeros(*batch, 5, dtype=self.physics_dtype, device=mu.device)
        rest[..., 1] = -1.0  # no previous action
        return torch.cat([transitions, mu, rest], dim=-1)

    def tables(self, physics: Tensor) -> tuple[Tensor, Tensor]:
        """``(P [..., S, A, S], mu [..., S, A])`` of the trial's MDP."""
        n_p, n_mu = self._sizes
        S, A = self.states, self.actions
        lead = physics.shape[:-1]
        return physics[..., :n_p].reshape(*lead, S, A, S), physics[..., n_p : n_p + n_mu].reshape(*lead, S, A)

    def expected_reward(self, physics: Tensor, action: Tensor) -> Tensor:
        """``mu(s, action)`` in the current state."""
        _, mu = self.tables(physics)
        s = physics[..., -5].long()
        row = torch.gather(mu, -2, s[..., None, None].expand(*s.shape, 1, self.actions)).squeeze(-2)
        return torch.gather(row, -1, action.unsqueeze(-1)).squeeze(-1)

    def transition(self, physics: Tensor, action: Tensor, params: _NoParams, key: Tensor):
        n_p, n_mu = self._sizes
        S = self.states
        k_s, k_r = random.split(key)
        P, _ = self.tables(physics)
        s = physics[..., -5].long()
        probs = torch.gather(P, -3, s[..., None, None, None].expand(*s.shape, 1, self.actions, S)).squeeze(-3)
        probs = torch.gather(probs, -2, action[..., None, None].expand(*s.shape, 1, S)).squeeze(-2)
        u = random.uniform(k_s, (*s.shape, 1), physics.dtype)
        s_next = (probs.cumsum(-1) < u).sum(-1).clamp(max=S - 1)
        reward = self.expected_reward(physics, action) + random.normal(k_r, tuple(s.shape), physics.dtype)
        t = physics[..., -1] + 1
        ended = torch.remainder(t, self.horizon) == 0
        s_next = torch.where(ended, torch.zeros_like(s_next), s_next)  # the next episode starts in 0
        tail = torch.stack(
            [s_next.to(physics.dtype), action.to(physics.dtype), reward, ended.to(physics.dtype), t], dim=-1
        )
        return torch.cat([physics[..., : n_p + n_mu], tail], dim=-1), reward, t >= self.max_episode_steps

    def observe(self, physics: Tensor) -> Tensor:
        s, a, r, ended, t = physics[..., -5:].unbind(-1)
        state = F.one_hot(s.long(), self.states).to(physics.dtype)
        action = F.one_hot(a.clamp(min=0).long(), self.actions).to(physics.dtype) * (a >= 0).unsqueeze(-1)
        scalars = torch.stack([r, ended, t / self.max_episode_steps], dim=-1)
        return torch.cat([state, action, scalars], dim=-1)


class PointNavigationParams(NamedTuple):
    """``goal``: ``[2]``, the task."""

    goal: Tensor


@dataclass(frozen=True)
class PointNavigation(Environment):
    """MAML's 2-D navigation (Finn et al. 2017, section 5.3): a point starts at the origin and
    moves by its action clipped to ``[-0.1, 0.1]^2``; the reward is the negative squared distance
    to the goal, ``-||x' - goal||^2``; 100 steps. The observation is the position only: the goal
    (a task, :meth:`sample_tasks` draws them uniformly in ``[-0.5, 0.5]^2``) is learned from
    rewards.
    """

    id: ClassVar[str] = "PointNavigation-v0"
    max_episode_steps: ClassVar[int] = 100
    observation_space: ClassVar[Box] = Box((-float("inf"),) * 2, (float("inf"),) * 2, (2,))
    action_space: ClassVar[Box] = Box((-0.1, -0.1), (0.1, 0.1), (2,))
    Params: ClassVar[type] = PointNavigationParams

    def default_params(self) -> PointNavigationParams:
        """The goal ``(0.5, 0.5)``, a corner of the task distribution's square."""
        return PointNavigationParams(torch.tensor([0.5, 0.5], dtype=self.dtype))

    def sample_tasks(self, key: Tensor, num_tasks: int) -> PointNavigationParams:
        """``num_tasks`` goals ``[num_tasks, 2]`` uniform in ``[-0.5, 0.5]^2`` (vmap over them)."""
        return PointNavigationParams(random.uniform(key, (num_tasks, 2), self.dtype, -0.5, 0.5))

    def init_physics(self, key: Tensor, params: PointNavigationParams, batch: tuple[int, ...] = ()) -> Tensor:
        return torch.zeros(*batch, 2, dtype=self.physics_dtype, device=params.goal.device)

    def transition(self, physics: Tensor, action: Tensor, params: PointNavigationParams):
        position = physics + action.to(physics.dtype).clamp(-0.1, 0.1)
        reward = -((position - params.goal) ** 2).sum(-1)
        return position, reward, torch.zeros_like(reward, dtype=torch.bool)
