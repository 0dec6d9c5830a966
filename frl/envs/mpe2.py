"""MPE2's particle environments through TorchRL's PettingZoo wrapper: ``frl.envs.make("mpe2:simple_spread")``.

As ``vmas:<scenario>`` (:mod:`frl.envs.vmas`), an :class:`Mpe2Task` is stepped by TorchRL
collectors outside frl's compiled units: ``frl train mappo --env mpe2:simple_spread``. Each
environment is MPE2's parallel API (``<scenario>_v3.parallel_env``) wrapped by TorchRL's
``PettingZooWrapper`` (the agents grouped as ``"agent"``, categorical actions), ``num_envs`` of
them in a ``SerialEnv``. PettingZoo's own ``max_cycles`` ends an episode as ``truncated``; the
transforms of :mod:`frl.envs.torchrl_groups` add the team reward (the agents' mean), its running
sum and all-legal action masks, and ``StepCounter`` counts the steps.

Cooperative ``simple_spread``: ``N`` agents cover ``N`` landmarks; each agent is rewarded by the
landmarks' distances to their nearest agent (shared) less its collisions.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from frl.envs.spaces import Discrete
from frl.envs.torchrl_groups import GroupTask, check_one_group

__all__ = ["PREFIX", "Mpe2Task", "make_mpe2"]

PREFIX = "mpe2:"
GROUP = "agent"


def _parallel_env(scenario: str, n_agents: int | None, max_cycles: int, kwargs: dict[str, Any]) -> Any:
    from torchrl.envs import PettingZooWrapper

    try:
        module = importlib.import_module(f"mpe2.{scenario}_v3")
    except ModuleNotFoundError:
        raise ValueError(f"mpe2: unknown scenario {scenario!r} (no module mpe2.{scenario}_v3)") from None
    extra = dict(kwargs)
    if n_agents is not None:
        extra["N"] = n_agents
    try:
        env = module.parallel_env(max_cycles=max_cycles, continuous_actions=False, **extra)
    except TypeError as err:
        raise ValueError(f"mpe2: cannot build {scenario!r} ({err})") from None
    return PettingZooWrapper(env, use_mask=False, categorical_actions=True)


@dataclass(frozen=True)
class Mpe2Task(GroupTask):
    """An MPE2 scenario described for frl and built for TorchRL collectors.

    Attributes:
      scenario: the MPE2 scenario (``"simple_spread"``; the module ``mpe2.<scenario>_v3``).
      n_agents: its ``N`` (None: the scenario's default, then the count it has).
      max_cycles: steps before an episode is truncated (PettingZoo's ``max_cycles``).
      scenario_kwargs: further keyword arguments for ``parallel_env`` (``local_ratio``, ...).
    """

    scenario: str
    n_agents: int | None = 3  # type: ignore[assignment]
    max_cycles: int = 25
    scenario_kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    obs_dim: int = field(init=False, compare=False)
    action_space: Discrete = field(init=False, compare=False)  # type: ignore[assignment]

    group: ClassVar[str] = GROUP

    def __post_init__(self) -> None:
        try:
            import mpe2  # noqa: F401
        except ImportError as err:
            raise ValueError(f"mpe2: {err}; install the extra: pip install 'frl[vmas]'") from None
        n = self.n_agents
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"mpe2: `n_agents` must be a positive int or None, got {n!r}")
        if isinstance(self.max_cycles, bool) or not isinstance(self.max_cycles, int) or self.max_cycles < 1:
            raise ValueError(f"mpe2: `max_cycles` must be a positive int, got {self.max_cycles!r}")
        env = self._one()
        check_one_group(self.id, env, GROUP)
        obs = env.observation_spec[GROUP, "observation"]
        object.__setattr__(self, "obs_dim", int(obs.shape[-1]))
        object.__setattr__(self, "n_agents", int(obs.shape[-2]))
        object.__setattr__(self, "action_space", Discrete(int(env.full_action_spec[GROUP, "action"].space.n)))
        env.close()

    def _one(self) -> Any:
        return _parallel_env(self.scenario, self.n_agents, self.max_cycles, self.scenario_kwargs)

    @property
    def id(self) -> str:
        return PREFIX + self.scenario

    @property
    def max_episode_steps(self) -> int:
        return self.max_cycles

    def make_env(self, seed: int | None = None, *, train: bool = True, num_envs: int = 1) -> Any:
        """``num_envs`` environments (a ``SerialEnv``) with the team reward, its sum, masks and
        the step count; ``train`` is accepted for the collectors' signature."""
        from torchrl.envs import Compose, SerialEnv, StepCounter, TransformedEnv

        make = partial(_parallel_env, self.scenario, self.n_agents, self.max_cycles, self.scenario_kwargs)
        base = SerialEnv(num_envs, make) if num_envs > 1 else make()
        env = TransformedEnv(base, Compose(*self.transforms(), StepCounter()))
        if seed is not None:
            env.set_seed(seed)
        return env


def make_mpe2(env_id: str, **kwargs: Any) -> Mpe2Task:
    """``"mpe2:<scenario>"`` as an :class:`Mpe2Task` (kwargs: its fields)."""
    if not env_id.startswith(PREFIX) or len(env_id) == len(PREFIX):
        raise ValueError(f"mpe2: expected 'mpe2:<scenario>', got {env_id!r}")
    return Mpe2Task(env_id[len(PREFIX) :], **kwargs)


def _register() -> None:
    from frl.envs import register_prefix

    register_prefix(PREFIX, make_mpe2)


_register()
