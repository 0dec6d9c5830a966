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
* discrete scenarios (``continuous_actions=False``) get an all-legal ``("agents", "action_mask")``
  (:mod:`frl.envs.torchrl_groups`).

MAPPO and IPPO train on it with each agent's reward (GAE per agent, as the tutorial does) and a
critic of every agent's observation (``critic_input="joint"``, a value per agent, or ``"team"``,
one value the agents share, as the tutorial's; VMAS has no global state) or its own
(``"local"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from frl.envs.spaces import Box, Discrete
from frl.envs.torchrl_groups import GroupTask, check_one_group

__all__ = ["PREFIX", "VmasTask", "make_vmas"]

PREFIX = "vmas:"
GROUP = "agents"


@dataclass(frozen=True)
class VmasTask(GroupTask):
    """A VMAS scenario described for frl and built for TorchRL collectors.

    Attributes:
      scenario: the VMAS scenario name (``"navigation"``, ``"balance"``, ...).
      n_agents: agents in the group (None: the scenario's default, then the count it has).
      max_steps: steps before an episode is truncated (``StepCounter``).
      continuous_actions: VMAS's continuous forces (a box per agent) or its discrete moves.
      scenario_kwargs: further keyword arguments for the scenario (``shared_rew``, ...).
    """

    scenario: str
    n_agents: int | None = 3  # type: ignore[assignment]
    max_steps: int = 100
    continuous_actions: bool = True
    scenario_kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    # filled in by __post_init__ from a probe environment
    obs_dim: int = field(init=False, compare=False)
    action_space: Box | Discrete = field(init=False, compare=False)

    group: ClassVar[str] = GROUP
    batched_episodes: ClassVar[bool] = True  # VMAS simulates its environments as one batch

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, str) or not self.scenario:
            raise ValueError(f"vmas: `scenario` must be a VMAS scenario name, got {self.scenario!r}")
        n = self.n_agents
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"vmas: `n_agents` must be a positive int or None, got {n!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"vmas: `max_steps` must be a positive int, got {self.max_steps!r}")
        env = self._base(num_envs=1, seed=0)
        check_one_group(self.id, env, GROUP)
        obs_spec = env.observation_spec[GROUP, "observation"]
        spec = env.full_action_spec[GROUP, "action"]
        if self.continuous_actions:
            low = tuple(float(x) for x in spec.space.low[0, 0].reshape(-1))
            high = tuple(float(x) for x in spec.space.high[0, 0].reshape(-1))
            action: Box | Discrete = Box(low, high, tuple(spec.shape[-1:]))
        else:
            action = Discrete(int(spec.space.n))
        object.__setattr__(self, "obs_dim", int(obs_spec.shape[-1]))
        object.__setattr__(self, "action_space", action)
        object.__setattr__(self, "n_agents", int(obs_spec.shape[-2]))
        env.close()

    @property
    def id(self) -> str:
        return PREFIX + self.scenario

    @property
    def max_episode_steps(self) -> int:
        return self.max_steps

    def make_env(self, seed: int | None = None, *, train: bool = True, num_envs: int = 1) -> Any:
        """``num_envs`` vectorised VMAS environments with the team reward, ``RewardSum`` and the
        time limit (module docstring); ``train`` is accepted for the collectors' signature."""
        from torchrl.envs import Compose, StepCounter, TransformedEnv

        transforms = [*self.transforms(), StepCounter(max_steps=self.max_steps)]
        return TransformedEnv(self._base(num_envs, 0 if seed is None else seed), Compose(*transforms))

    def _base(self, num_envs: int, seed: int) -> Any:
        try:
            import vmas
            from torchrl.envs.libs.vmas import VmasEnv
        except ImportError as err:
            raise ValueError(f"vmas: {err}; install the extra: pip install 'frl[vmas]'") from None
        known = (*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios)
        if self.scenario not in known:
            names = ", ".join(vmas.scenarios)
            raise ValueError(f"vmas: unknown scenario {self.scenario!r}; VMAS has {names}")
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


def make_vmas(env_id: str, **kwargs: Any) -> VmasTask:
    """``"vmas:<scenario>"`` as a :class:`VmasTask` (kwargs: its fields)."""
    if not env_id.startswith(PREFIX) or len(env_id) == len(PREFIX):
        raise ValueError(f"vmas: expected 'vmas:<scenario>', got {env_id!r}")
    return VmasTask(env_id[len(PREFIX) :], **kwargs)


def _register() -> None:
    from frl.envs import register_prefix

    register_prefix(PREFIX, make_vmas)


_register()
