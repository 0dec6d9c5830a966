"""VMAS scenarios through TorchRL's ``VmasEnv``: ``frl.envs.make("vmas:<scenario>")``.

A :class:`VmasTask` is, like ``gym:<id>`` (:mod:`frl.envs.gymnasium`), not pure: VMAS steps its
vectorised physics outside frl's compiled units, and :class:`frl.driver.Collectors` drives it
(``frl train mappo --env vmas:navigation``). The task describes the agents (their number,
observation size and action space, one shared by the group) for ``make_train`` and builds the
TorchRL environments, in TorchRL's multi-agent layout with frl's episode keys:

* ``("agents", "observation") [E, n, O]`` and each agent's reward ``("next", "agents", "reward")
  [E, n]`` as VMAS gives them;
* the team's ``("next", "reward") [E]``: the agents' mean reward (what TorchRL's multi-agent
  tutorial reports as the episode reward), summed into ``episode_reward`` by ``RewardSum``;
* the time limit is TorchRL's ``StepCounter(max_steps)``, so an episode cut by time is
  ``truncated`` (bootstrapped) rather than ``terminated``: VMAS's own ``max_steps`` marks it
  terminated, which would teach the critic that every episode ends in a terminal state;
* discrete scenarios (``continuous_actions=False``) get an all-legal ``("agents", "action_mask")``.

MAPPO and IPPO train on it with each agent's reward (GAE per agent, as the tutorial does) and a
critic of every agent's observation (``critic_input="joint"``; VMAS has no global state) or its
own (``"local"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tensordict import TensorDict

from frl.envs.spaces import Box, Discrete

__all__ = ["PREFIX", "SCENARIOS", "VmasTask", "all_legal", "make_vmas", "team_reward"]

PREFIX = "vmas:"
SCENARIOS = ("navigation", "balance", "transport", "sampling", "flocking", "discovery", "wheel")
"""Cooperative VMAS scenarios frl has run (any VMAS scenario name is accepted)."""

GROUP = "agents"


@dataclass(frozen=True)
class VmasTask:
    """A VMAS scenario described for frl and built for TorchRL collectors.

    Attributes:
      scenario: the VMAS scenario name (``"navigation"``, ``"balance"``, ...).
      n_agents: agents in the group (None: the scenario's default, then the count it has).
      max_steps: steps before an episode is truncated (``StepCounter``).
      continuous_actions: VMAS's continuous forces (a box per agent) or its discrete moves.
      scenario_kwargs: further keyword arguments for the scenario (``shared_rew``, ...).
    """

    scenario: str
    n_agents: int | None = 3
    max_steps: int = 100
    continuous_actions: bool = True
    scenario_kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    # filled in by __post_init__ from a probe environment
    obs_dim: int = field(init=False, compare=False)
    action_space: Box | Discrete = field(init=False, compare=False)

    dtype = torch.float32
    pure = False
    multi_agent = True
    group = GROUP
    has_state = False
    per_agent_reward = True
    norm_obs = False
    norm_reward = False
    outcomes: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, str) or not self.scenario:
            raise ValueError(f"vmas: `scenario` must be a VMAS scenario name, got {self.scenario!r}")
        n = self.n_agents
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"vmas: `n_agents` must be a positive int or None, got {n!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"vmas: `max_steps` must be a positive int, got {self.max_steps!r}")
        env = self._base(num_envs=1, seed=0)
        keys = set(env.observation_spec.keys(True, True))
        if (GROUP, "observation") not in keys or list(env.group_map) != [GROUP]:
            raise ValueError(
                f"vmas: {self.scenario} has groups {sorted(env.group_map)}; frl needs one group "
                f"{GROUP!r} with an array observation"
            )
        obs_spec = env.observation_spec[GROUP, "observation"]
        spec = env.full_action_spec[GROUP, "action"]
        agents = int(obs_spec.shape[-2])
        if self.continuous_actions:
            low = tuple(float(x) for x in spec.space.low[0, 0].reshape(-1))
            high = tuple(float(x) for x in spec.space.high[0, 0].reshape(-1))
            action: Box | Discrete = Box(low, high, tuple(spec.shape[-1:]))
        else:
            action = Discrete(int(spec.space.n))
        object.__setattr__(self, "obs_dim", int(obs_spec.shape[-1]))
        object.__setattr__(self, "action_space", action)
        object.__setattr__(self, "n_agents", agents)
        env.close()

    # -- what make_train reads --------------------------------------------------------------

    @property
    def id(self) -> str:
        return PREFIX + self.scenario

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)

    @property
    def num_actions(self) -> int:
        """Moves per agent (discrete scenarios)."""
        if not self.discrete:
            raise ValueError(f"{self.id}: continuous actions have no `num_actions`")
        return self.action_space.n

    @property
    def max_episode_steps(self) -> int:
        return self.max_steps

    @property
    def observation_space(self) -> Box:
        """One agent's observation."""
        return Box((-math.inf,) * self.obs_dim, (math.inf,) * self.obs_dim, (self.obs_dim,))

    def observation_example(self) -> TensorDict:
        """One environment's observation as zeros: ``{"agents": {"observation" [n, O]
        (, "action_mask" [n, A])}}``."""
        agents: dict[str, torch.Tensor] = {"observation": torch.zeros(self.n_agents, self.obs_dim)}
        if self.discrete:
            agents["action_mask"] = torch.zeros(self.n_agents, self.num_actions, dtype=torch.bool)
        return TensorDict({GROUP: agents}, batch_size=[])

    # -- TorchRL environments -----------------------------------------------------------------

    def make_env(self, seed: int | None = None, *, train: bool = True, num_envs: int = 1) -> Any:
        """``num_envs`` vectorised VMAS environments with the team reward, ``RewardSum`` and the
        time limit (module docstring); ``train`` is accepted for the collectors' signature."""
        from torchrl.envs import Compose, RewardSum, StepCounter, TransformedEnv

        transforms = [team_reward(), RewardSum(in_keys=["reward"], out_keys=["episode_reward"])]
        transforms.append(StepCounter(max_steps=self.max_steps))
        if self.discrete:
            transforms.append(all_legal(self.n_agents, self.num_actions))
        return TransformedEnv(self._base(num_envs, 0 if seed is None else seed), Compose(*transforms))

    def _base(self, num_envs: int, seed: int) -> Any:
        try:
            from torchrl.envs.libs.vmas import VmasEnv
        except ImportError as err:  # pragma: no cover - torchrl is a dependency
            raise ValueError(f"vmas: TorchRL's VmasEnv is unavailable ({err})") from None
        try:
            import vmas
        except ImportError as err:
            raise ValueError(f"vmas: {err}; install the extra: pip install 'frl[vmas]'") from None
        known = (*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios)
        if self.scenario not in known:
            raise ValueError(
                f"vmas: unknown scenario {self.scenario!r}; VMAS has {', '.join(vmas.scenarios)}"
            )
        kwargs = dict(self.scenario_kwargs)
        if self.n_agents is not None:
            kwargs["n_agents"] = self.n_agents
        try:
            return VmasEnv(
                scenario=self.scenario,
                num_envs=num_envs,
                continuous_actions=self.continuous_actions,
                max_steps=None,
                device="cpu",
                seed=seed,
                **kwargs,
            )
        except (AttributeError, ModuleNotFoundError, ValueError, TypeError) as err:
            raise ValueError(f"vmas: cannot build scenario {self.scenario!r} ({err})") from None


def _team_reward_transform() -> type:
    from torchrl.envs.transforms import Transform

    class _TeamReward(Transform):
        """``("next", "reward") [E, 1]``: the mean of the agents' ``("next", "agents", "reward")``."""

        def __init__(self) -> None:
            super().__init__(in_keys=[(GROUP, "reward")], out_keys=["reward"])

        def _step(self, tensordict: Any, next_tensordict: Any) -> Any:
            next_tensordict.set("reward", next_tensordict.get((GROUP, "reward")).mean(-2))
            return next_tensordict

        def transform_reward_spec(self, reward_spec: Any) -> Any:
            from torchrl.data import Unbounded

            agent = reward_spec[GROUP, "reward"]
            shape = (*agent.shape[:-2], 1)
            reward_spec["reward"] = Unbounded(shape=shape, dtype=agent.dtype, device=agent.device)
            return reward_spec

    return _TeamReward


def _all_legal_transform() -> type:
    from torchrl.envs.transforms import Transform

    class _AllLegal(Transform):
        """An all-true ``("agents", "action_mask") [E, n, A]`` (VMAS's moves are always legal)."""

        def __init__(self, n: int, actions: int) -> None:
            super().__init__(in_keys=[], out_keys=[(GROUP, "action_mask")])
            self.n, self.actions = n, actions

        def _mask(self, td: Any) -> Any:
            obs = td.get((GROUP, "observation"))
            td.set((GROUP, "action_mask"), torch.ones(*obs.shape[:-1], self.actions, dtype=torch.bool))
            return td

        def _call(self, next_tensordict: Any) -> Any:
            return self._mask(next_tensordict)

        def _reset(self, tensordict: Any, tensordict_reset: Any) -> Any:
            return self._mask(tensordict_reset)

        def transform_observation_spec(self, observation_spec: Any) -> Any:
            from torchrl.data import Binary

            obs = observation_spec[GROUP, "observation"]
            shape = (*obs.shape[:-1], self.actions)
            observation_spec[GROUP, "action_mask"] = Binary(n=self.actions, shape=shape, dtype=torch.bool)
            return observation_spec

    return _AllLegal


def team_reward() -> Any:
    """The team-reward transform (``("next", "reward")``: the agents' mean reward)."""
    return _team_reward_transform()()


def all_legal(n: int, actions: int) -> Any:
    """The all-legal action-mask transform of a discrete VMAS scenario."""
    return _all_legal_transform()(n, actions)


def make_vmas(env_id: str, **kwargs: Any) -> VmasTask:
    """``"vmas:<scenario>"`` as a :class:`VmasTask` (kwargs: its fields)."""
    if not env_id.startswith(PREFIX) or len(env_id) == len(PREFIX):
        raise ValueError(f"vmas: expected 'vmas:<scenario>', got {env_id!r}")
    return VmasTask(env_id[len(PREFIX) :], **kwargs)


def _register() -> None:
    from frl.envs import register_prefix

    register_prefix(PREFIX, make_vmas)


_register()
