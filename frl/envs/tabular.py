"""A tabular MDP (``frl.planning``'s TensorDict) as a pure frl environment, for sampling agents.

Observations are one-hot ``[S]`` float vectors (so the vector-observation agents and a linear
"table" both read them); actions are ``Discrete(A)``. ``step`` samples ``s' ~ P(.|s, a)`` from
its key, pays ``R(s, a, s')``, terminates on terminal states and truncates at
``max_episode_steps``; finished episodes restart from ``initial`` in the same step, as every
frl environment does (``info["final_observation"]`` keeps the true last state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import Tensor

from frl import random
from frl.envs.base import truncates_at_time_limit
from frl.envs.spaces import Box, Discrete

__all__ = ["TabularEnv"]


@dataclass(frozen=True, eq=False)
class TabularEnv:
    """Sample a tabular MDP (see the module docstring).

    Args:
      mdp: an unbatched MDP TensorDict (``transitions``, ``rewards``, ``terminal``, ``initial``).
      max_episode_steps: the time limit.
      name: the id (``TabularEnv`` instances are not in the registry unless made by ``make``).
      dtype: observation and reward dtype.
    """

    mdp: TensorDictBase
    max_episode_steps: int = 100
    name: str = "tabular"
    dtype: torch.dtype = torch.float32

    state_names = ("state", "time")

    def __post_init__(self) -> None:
        if tuple(self.mdp.batch_size) != ():
            raise ValueError(
                f"TabularEnv: `mdp` must be one MDP (batch_size []), got {list(self.mdp.batch_size)}"
            )
        if not isinstance(self.max_episode_steps, int) or self.max_episode_steps < 1:
            raise ValueError(
                f"TabularEnv: `max_episode_steps` must be a positive int, got {self.max_episode_steps!r}"
            )
        S, A = self.mdp["transitions"].shape[-1], self.mdp["transitions"].shape[-2]
        object.__setattr__(self, "observation_space", Box((0.0,) * S, (1.0,) * S, (S,)))
        object.__setattr__(self, "action_space", Discrete(A))
        # cumulative rows in float64: one searchsorted per draw
        object.__setattr__(self, "_cdf", self.mdp["transitions"].to(torch.float64).cumsum(-1))
        object.__setattr__(self, "_initial_cdf", self.mdp["initial"].to(torch.float64).cumsum(-1))
        object.__setattr__(self, "_terminal", self.mdp["terminal"].to(torch.bool))
        object.__setattr__(self, "_rewards", self.mdp["rewards"].to(self.dtype))

    @property
    def id(self) -> str:
        return self.name

    @property
    def discrete(self) -> bool:
        return True

    @property
    def num_states(self) -> int:
        return self.mdp["transitions"].shape[-1]

    def default_params(self) -> None:
        return None

    def _sample(self, key: Tensor, cdf: Tensor) -> Tensor:
        u = random.uniform(key, cdf.shape[:-1], torch.float64)
        target = (u.unsqueeze(-1) * cdf[..., -1:]).contiguous()
        index = torch.searchsorted(cdf.contiguous(), target).squeeze(-1)
        return index.clamp_max(cdf.shape[-1] - 1)

    def observe(self, state: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(state, self.num_states).to(self.dtype)

    def reset(
        self, key: Tensor, params: Any = None, num_envs: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        batch = () if num_envs is None else (num_envs,)
        cdf = self._initial_cdf.expand(*batch, -1).contiguous()
        state = self._sample(key, cdf)
        time = torch.zeros(batch, dtype=torch.int64, device=state.device)
        return self.observe(state), {"state": state, "time": time}

    @truncates_at_time_limit
    def step(
        self, key: Tensor, state: Mapping[str, Tensor], action: Tensor, params: Any = None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Tensor]]:
        s, time = state["state"], state["time"]
        if not isinstance(action, Tensor) or action.dtype.is_floating_point or action.shape != s.shape:
            raise ValueError(
                f"{self.id}: `action` must be integer indices in [0, {self.action_space.n}) of shape "
                f"{list(s.shape)}, got {action!r:.80}"
            )
        k_step, k_reset = random.split(key)
        cdf = self._cdf[s, action]
        s_next = self._sample(k_step, cdf)
        reward = self._rewards[s, action, s_next]
        terminated = self._terminal[s_next]
        time = time + 1
        truncated = time >= self.max_episode_steps
        done = terminated | truncated
        reset_obs, reset_state = self.reset(k_reset, num_envs=s.shape[0] if s.dim() else None)
        final_obs = self.observe(s_next)
        next_state = {
            "state": torch.where(done, reset_state["state"], s_next),
            "time": torch.where(done, torch.zeros_like(time), time),
        }
        obs = torch.where(done.unsqueeze(-1), reset_obs, final_obs)
        return obs, next_state, reward, terminated, truncated, {"final_observation": final_obs}
