"""The pure multi-agent environment interface: the single-agent one with dict observations.

A multi-agent environment steps ``n_agents`` agents together. Its observation is a nested dict
laid out as TorchRL's multi-agent environments lay out a group (a group key, ``"agents"``, whose
entries carry the agent dim after the batch dims)::

    obs = {"agents": {"observation": [*, n, O], "action_mask": bool [*, n, A]}, "state": [*, S]}
    obs, state, reward, terminated, truncated, info = env.step(key, state, action)  # action int [*, n]

``reward`` is the team's ``[*]`` (cooperative tasks); ``terminated``/``truncated`` are the
episode's. ``step`` auto-resets like :class:`frl.envs.base.Environment` (``info["final_observation"]``
holds the true last observation dict). ``action_mask`` marks each agent's legal actions (a
masked action must never be sent); ``state`` is the global state a centralised critic or a QMIX
mixer reads (``has_state``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from tensordict import TensorDict
from torch import Tensor
from torch.utils import _pytree as pytree

from frl.envs.base import Environment
from frl.envs.spaces import Discrete

__all__ = ["MultiAgentEnvironment"]

Observation = dict[str, Any]
"""``{group: {"observation", "action_mask"}, "state"}`` (module docstring)."""


@dataclass(frozen=True)
class MultiAgentEnvironment(Environment):
    """Base class of pure multi-agent environments (module docstring); subclasses implement
    ``init_physics``, ``transition`` (``action int [*, n]``, reward ``[*]``), ``observe`` (the
    dict) and the properties ``n_agents``, ``obs_dim``, ``num_actions``, ``state_dim``."""

    multi_agent: ClassVar[bool] = True
    outcomes: ClassVar[tuple[str, ...]] = ()
    """Bool episode outcomes ``step`` reports in ``info`` (evaluation counts their rates)."""
    has_state: ClassVar[bool] = True
    group: ClassVar[str] = "agents"

    @property
    def n_agents(self) -> int:
        raise NotImplementedError

    @property
    def obs_dim(self) -> int:
        raise NotImplementedError

    @property
    def num_actions(self) -> int:
        raise NotImplementedError

    @property
    def state_dim(self) -> int:
        raise NotImplementedError

    @property
    def action_space(self) -> Discrete:  # type: ignore[override]
        """One agent's action space."""
        return Discrete(self.num_actions)

    def observation_example(self) -> TensorDict:
        """One environment's observation as zeros, a TensorDict (the layout agents store)."""
        n = self.n_agents
        agents = {
            "observation": torch.zeros(n, self.obs_dim, dtype=self.dtype),
            "action_mask": torch.zeros(n, self.num_actions, dtype=torch.bool),
        }
        state = {"state": torch.zeros(self.state_dim, dtype=self.dtype)} if self.has_state else {}
        return TensorDict({self.group: agents, **state}, batch_size=[])

    def _cast(self, obs: Observation) -> Observation:
        return pytree.tree_map(lambda v: v if v.dtype == torch.bool else v.to(self.dtype), obs)

    def reset(
        self, key: Tensor, params: Any = None, num_envs: int | None = None
    ) -> tuple[Observation, dict[str, Tensor]]:
        params = self.default_params() if params is None else params
        batch = () if num_envs is None else (num_envs,)
        physics = self.init_physics(key, params, batch)
        time = torch.zeros(batch, dtype=torch.int64, device=physics.device)
        return self._cast(self.observe(physics)), {"physics": physics, "time": time}

    def step(
        self, key: Tensor, state: Mapping[str, Tensor], action: Tensor, params: Any = None
    ) -> tuple[Observation, dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Any]]:
        params = self.default_params() if params is None else params
        batch = tuple(state["time"].shape)
        self._check_action(action, batch)
        physics, reward, terminated, extra = self.transition(state["physics"], action, params)
        time = state["time"] + 1
        truncated = time >= self.max_episode_steps
        done = terminated | truncated
        final_obs = self._cast(self.observe(physics))
        reset_obs, reset_state = self.reset(key, params, batch[0] if batch else None)
        next_state = {
            "physics": torch.where(done.unsqueeze(-1), reset_state["physics"], physics),
            "time": torch.where(done, torch.zeros_like(time), time),
        }
        obs = pytree.tree_map(
            lambda new, v: torch.where(done.reshape(*done.shape, *(1,) * (v.dim() - done.dim())), new, v),
            reset_obs,
            final_obs,
        )
        info = {"final_observation": final_obs, **extra}
        return obs, next_state, reward.to(self.dtype), terminated, truncated, info

    def _check_action(self, action: Tensor, batch: tuple[int, ...]) -> None:
        expected = (*batch, self.n_agents)
        if not isinstance(action, Tensor):
            raise TypeError(f"{self.id}: `action` must be a tensor, got {type(action)!r}")
        if action.dtype.is_floating_point or tuple(action.shape) != expected:
            raise ValueError(
                f"{self.id}: `action` must be integer indices in [0, {self.num_actions}) of shape "
                f"{list(expected)} (one per agent), got dtype {action.dtype} and shape {list(action.shape)}"
            )
