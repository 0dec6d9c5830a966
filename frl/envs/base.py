"""The pure environment interface (gymnax-style) with auto-reset and time limits.

An environment is a frozen dataclass of static settings; everything that changes lives in a
state dict ``{"physics": [...], "time": int64 []}`` (a plain dict: environments run inside
compiled rollouts, where dynamo traces dict operations in microseconds and TensorDict ones in
tens of milliseconds). All methods describe ONE
environment and are pure functions of their inputs: ``torch.func.vmap`` batches them over
environments and seeds, and ``torch.compile`` compiles a step or an unrolled rollout::

    env = frl.envs.make("CartPole-v1")
    obs, state = env.reset(key)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action)

``step`` resets finished episodes itself (same-step auto-reset): when ``terminated`` or
``truncated``, the returned ``obs`` and ``state`` already belong to the next episode and
``info["final_observation"]`` holds the true last observation, which is what a truncated step
bootstraps from. ``truncated`` follows gymnasium's ``TimeLimit`` (set whenever the step count
reaches ``max_episode_steps``, even on a terminal step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from frl import random
from frl._compile import readable
from frl.envs.spaces import Box, Discrete

__all__ = ["Environment", "loops_in_graph", "most_truncations", "truncates_at_time_limit"]


def truncates_at_time_limit(step: Any) -> Any:
    """Marks an environment's ``step`` as truncating only at the time limit: ``truncated`` exactly
    when the step count reaches ``max_episode_steps``, the count restarting at 0 whenever an
    episode ends (what :func:`most_truncations` relies on). A subclass that overrides ``step``
    loses the mark unless it sets it again."""
    step.truncates_at_time_limit = True
    return step


def most_truncations(env: Any, steps: int) -> int | None:
    """The most truncated steps among ``steps`` consecutive steps of one environment:
    ``ceil(steps / max_episode_steps)`` where ``env``'s ``step`` is marked
    :func:`truncates_at_time_limit` (two truncations are at least ``max_episode_steps`` steps
    apart), else ``None`` (not known: a gymnasium environment, a subclass with its own ``step``)."""
    if not getattr(getattr(type(env), "step", None), "truncates_at_time_limit", False):
        return None
    return -(-steps // env.max_episode_steps)


@dataclass(frozen=True)
class Environment:
    """Base class: subclasses set the class attributes and implement the three physics hooks."""

    id: ClassVar[str]
    max_episode_steps: ClassVar[int]
    observation_space: ClassVar[Box]
    action_space: ClassVar[Box | Discrete]
    Params: ClassVar[type]
    state_names: ClassVar[tuple[str, ...]] = ("physics", "time")
    """The keys of the state dict (agents carry the state in a TensorDict and rebuild the dict)."""
    random_transition: ClassVar[bool] = False
    """``transition`` takes a fourth argument, a key (a stochastic environment): :meth:`step`
    splits its key into the reset's and the transition's."""
    pure: ClassVar[bool] = True
    """Stepped inside compiled code (``frl.envs.GymEnvironment`` is not: TorchRL collectors step it)."""
    scannable: ClassVar[bool] = False
    """Compiled collection and evaluation loop over its steps inside the graph (``frl._compile.scan``:
    the step is traced once) instead of unrolling them. Off unless verified: torch 2.13's Inductor
    fails to compile a loop whose body builds a tensor from Python data (``torch.tensor([...])``
    in :meth:`step`); tensors held as attributes are fine."""

    dtype: torch.dtype = torch.float32

    @property
    def physics_dtype(self) -> torch.dtype:
        """The dtype the physics integrates in (observations and rewards are :attr:`dtype`)."""
        return self.dtype

    # -- hooks -------------------------------------------------------------------------

    def init_physics(self, key: Tensor, params: Any, batch: tuple[int, ...] = ()) -> Tensor:
        """Physical states ``[*batch, d]`` at the start of episodes, drawn from ``key``."""
        raise NotImplementedError

    def transition(self, physics: Tensor, action: Tensor, params: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(next_physics, reward, terminated)`` for one step (no time limit, no reset); with
        :attr:`random_transition`, ``transition(physics, action, params, key)``."""
        raise NotImplementedError

    def observe(self, physics: Tensor) -> Tensor:
        """The observation of a physical state."""
        return physics

    # -- API ---------------------------------------------------------------------------

    def default_params(self) -> Any:
        """The environment's physical constants (gymnasium's defaults)."""
        return self.Params()

    def reset(
        self, key: Tensor, params: Any = None, num_envs: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(obs, state)`` at the start of an episode.

        With ``num_envs``, a natively batched state of ``num_envs`` environments whose initial
        states are all drawn from the one ``key`` (cheaper than vmapping over split keys; the
        draws differ from a vmapped reset's). :meth:`step` accepts either kind of state.
        """
        params = self.default_params() if params is None else params
        batch = () if num_envs is None else (num_envs,)
        physics = self.init_physics(key, params, batch)
        time = torch.zeros(batch, dtype=torch.int64, device=physics.device)
        obs = self.observe(physics).to(self.dtype)
        return obs, {"physics": physics, "time": time}

    @truncates_at_time_limit
    def step(
        self, key: Tensor, state: Mapping[str, Tensor], action: Tensor, params: Any = None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """One step with time limit and same-step auto-reset.

        Args:
          key: draws the next episode's initial state (used only where the episode ended) and,
            for a :attr:`random_transition` environment, the step's own randomness.
          state: the current state.
          action: an int64 scalar (discrete) or a float tensor ``action_space.shape``.
          params: physical constants (default: :meth:`default_params`).

        Returns:
          ``(obs, state, reward, terminated, truncated, info)``; ``reward`` float, flags bool,
          ``info["final_observation"]`` the observation the step led to (before any reset).
        """
        params = self.default_params() if params is None else params
        batch = tuple(state["time"].shape)
        self._check_action(action, batch)
        if self.random_transition:
            key, k_transition = random.split(key)
            physics, reward, terminated = self.transition(state["physics"], action, params, k_transition)
        else:
            physics, reward, terminated = self.transition(state["physics"], action, params)
        time = state["time"] + 1
        truncated = time >= self.max_episode_steps
        done = terminated | truncated
        final_obs = self.observe(physics).to(self.dtype)
        reward = reward.to(self.dtype)
        if readable(done) and not bool(done.any()):  # eagerly, with no episode ended: nothing to reset
            state = {"physics": physics, "time": time}
            return final_obs, state, reward, terminated, truncated, {"final_observation": final_obs}
        reset_obs, reset_state = self.reset(key, params, batch[0] if batch else None)
        done_ = done.unsqueeze(-1)
        next_state = {
            "physics": torch.where(done_, reset_state["physics"], physics),
            "time": torch.where(done, torch.zeros_like(time), time),
        }
        done_obs = done.reshape(*done.shape, *(1,) * (final_obs.dim() - done.dim()))  # image observations too
        obs = torch.where(done_obs, reset_obs, final_obs)
        return obs, next_state, reward, terminated, truncated, {"final_observation": final_obs}

    def _check_action(self, action: Tensor, batch: tuple[int, ...]) -> None:
        space = self.action_space
        if not isinstance(action, Tensor):
            raise TypeError(f"{self.id}: `action` must be a tensor, got {type(action)!r}")
        expected = batch + tuple(space.shape)
        if isinstance(space, Discrete):
            if action.dtype.is_floating_point or tuple(action.shape) != expected:
                raise ValueError(
                    f"{self.id}: `action` must be integer indices in [0, {space.n}) of shape "
                    f"{list(expected)}, got dtype {action.dtype} and shape {list(action.shape)}"
                )
        elif not action.dtype.is_floating_point or tuple(action.shape) != expected:
            raise ValueError(
                f"{self.id}: `action` must be a float tensor of shape {list(expected)}, got dtype "
                f"{action.dtype} and shape {list(action.shape)}"
            )

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)


def loops_in_graph(env: Any) -> bool:
    """Whether compiled code may loop over ``env``'s steps inside the graph (its
    :attr:`Environment.scannable`; ``False`` for environments that are not :class:`Environment`
    subclasses: gymnasium-backed, multi-agent wrappers)."""
    return bool(getattr(env, "scannable", False))
