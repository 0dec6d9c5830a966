"""Multi-agent environments stepped by TorchRL (``vmas:``, ``mpe2:``): what they share.

A task such as :class:`frl.envs.vmas.VmasTask` describes one group of agents for ``make_train``
(:class:`GroupTask`: its number of agents, each agent's observation size and action space) and
builds TorchRL environments that :class:`frl.driver.Collectors` steps outside the compiled
units. Two transforms bring them to frl's multi-agent layout (:mod:`frl.envs.multi_agent`):

* :func:`team_reward`: the team's ``("next", "reward") [E, 1]``, the mean of the agents'
  ``("next", group, "reward") [E, n, 1]`` (what TorchRL's multi-agent tutorial reports), beside
  which each agent's own reward is kept (MAPPO's GAE runs per agent on it);
* :func:`all_legal`: an all-true ``(group, "action_mask") [E, n, A]`` for discrete actions that
  are always legal, so masked and unmasked environments share one policy.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from tensordict import TensorDict

from frl.envs.spaces import Box, Discrete

__all__ = ["GroupTask", "all_legal", "check_one_group", "team_reward"]


class GroupTask:
    """What a TorchRL multi-agent task tells ``make_train``; subclasses set ``group``,
    ``n_agents``, ``obs_dim``, ``action_space`` (one agent's) and ``max_episode_steps``, and
    implement ``make_env(seed, *, train, num_envs)``."""

    group: ClassVar[str]
    n_agents: int
    obs_dim: int
    action_space: Box | Discrete
    dtype: ClassVar[torch.dtype] = torch.float32
    pure: ClassVar[bool] = False
    multi_agent: ClassVar[bool] = True
    has_state: ClassVar[bool] = False
    per_agent_reward: ClassVar[bool] = True
    norm_obs: ClassVar[bool] = False
    norm_reward: ClassVar[bool] = False
    outcomes: ClassVar[tuple[str, ...]] = ()

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)

    @property
    def num_actions(self) -> int:
        """Moves per agent (discrete actions)."""
        if not self.discrete:
            raise ValueError(f"{self.id}: continuous actions have no `num_actions`")  # type: ignore[attr-defined]
        return self.action_space.n  # type: ignore[union-attr]

    @property
    def observation_space(self) -> Box:
        """One agent's observation."""
        return Box((-math.inf,) * self.obs_dim, (math.inf,) * self.obs_dim, (self.obs_dim,))

    def observation_example(self) -> TensorDict:
        """One environment's observation as zeros: ``{group: {"observation" [n, O]
        (, "action_mask" [n, A])}}``."""
        agents: dict[str, torch.Tensor] = {"observation": torch.zeros(self.n_agents, self.obs_dim)}
        if self.discrete:
            agents["action_mask"] = torch.zeros(self.n_agents, self.num_actions, dtype=torch.bool)
        return TensorDict({self.group: agents}, batch_size=[])

    def transforms(self) -> list[Any]:
        """The team reward summed by ``RewardSum`` into ``episode_reward`` (and all-legal masks
        for discrete actions); the task adds its time limit."""
        from torchrl.envs import RewardSum

        out = [team_reward(self.group), RewardSum(in_keys=["reward"], out_keys=["episode_reward"])]
        if self.discrete:
            out.append(all_legal(self.group, self.num_actions))
        return out


def check_one_group(name: str, env: Any, group: str) -> None:
    """A ValueError naming ``name`` unless ``env`` has exactly one group, ``group``, observed as
    ``(group, "observation")``."""
    keys = set(env.observation_spec.keys(True, True))
    if list(env.group_map) != [group] or (group, "observation") not in keys:
        raise ValueError(
            f"{name}: the environment has groups {sorted(env.group_map)}; frl needs one group {group!r} "
            "with an array observation"
        )


def team_reward(group: str) -> Any:
    """A TorchRL transform writing ``("next", "reward")``: the mean of ``("next", group, "reward")``
    over the agent dim."""
    from torchrl.data import Unbounded
    from torchrl.envs.transforms import Transform

    class TeamReward(Transform):
        def __init__(self) -> None:
            super().__init__(in_keys=[(group, "reward")], out_keys=["reward"])

        def _step(self, tensordict: Any, next_tensordict: Any) -> Any:
            next_tensordict.set("reward", next_tensordict.get((group, "reward")).mean(-2))
            return next_tensordict

        def transform_reward_spec(self, reward_spec: Any) -> Any:
            agent = reward_spec[group, "reward"]
            shape = (*agent.shape[:-2], 1)
            reward_spec["reward"] = Unbounded(shape=shape, dtype=agent.dtype, device=agent.device)
            return reward_spec

    return TeamReward()


def all_legal(group: str, actions: int) -> Any:
    """A TorchRL transform writing an all-true ``(group, "action_mask") [..., n, actions]``."""
    from torchrl.data import Binary
    from torchrl.envs.transforms import Transform

    class AllLegal(Transform):
        def __init__(self) -> None:
            super().__init__(in_keys=[], out_keys=[(group, "action_mask")])

        def _mask(self, td: Any) -> Any:
            obs = td.get((group, "observation"))
            td.set((group, "action_mask"), torch.ones(*obs.shape[:-1], actions, dtype=torch.bool))
            return td

        def _call(self, next_tensordict: Any) -> Any:
            return self._mask(next_tensordict)

        def _reset(self, tensordict: Any, tensordict_reset: Any) -> Any:
            return self._mask(tensordict_reset)

        def transform_observation_spec(self, observation_spec: Any) -> Any:
            obs = observation_spec[group, "observation"]
            shape = (*obs.shape[:-1], actions)
            observation_spec[group, "action_mask"] = Binary(n=actions, shape=shape, dtype=torch.bool)
            return observation_spec

    return AllLegal()
