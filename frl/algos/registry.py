"""The agent registry: names to factories (the command line, sweeps and worker processes look
agents up here, never by module name).

::

    frl.algos.register(AgentSpec("my_agent", MyConfig, make_my_train, actions=("discrete",), summary="..."))
    spec = frl.algos.get("ppo")
    train = spec.make_train(spec.config.preset("CartPole-v1"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from frl.algos.config import AgentConfig
from frl.envs.spaces import Slate

__all__ = ["AGENTS", "AgentSpec", "get", "register"]


@dataclass(frozen=True)
class AgentSpec:
    """An agent as the registry knows it.

    Attributes:
      name: the registry key (``frl train NAME``).
      config: its ``Config`` class (an :class:`~frl.algos.config.AgentConfig`).
      make_train: ``make_train(config, env=None, *, wrap_optimizer=None) -> Train``.
      actions: the action types it handles: ``"discrete"``, ``"continuous"``, ``"slate"``.
      summary: one line for ``frl list``.
    """

    name: str
    config: type[AgentConfig]
    make_train: Callable
    actions: tuple[str, ...]
    summary: str

    def handles(self, env: object) -> bool:
        """Whether the agent handles ``env``: its action type, and single- or multi-agent."""
        if bool(getattr(env, "multi_agent", False)) != bool(getattr(self.config, "multi_agent", False)):
            return False
        if isinstance(getattr(env, "action_space", None), Slate):
            return "slate" in self.actions
        return ("discrete" if getattr(env, "discrete", False) else "continuous") in self.actions


AGENTS: dict[str, AgentSpec] = {}


def register(spec: AgentSpec) -> AgentSpec:
    """Add ``spec`` under ``spec.name`` (a name already taken is a ValueError)."""
    if spec.name in AGENTS and AGENTS[spec.name] != spec:
        raise ValueError(f"register: the agent name {spec.name!r} is taken")
    if not issubclass(spec.config, AgentConfig):
        raise TypeError(f"register: `config` must subclass frl.algos.AgentConfig, got {spec.config!r}")
    AGENTS[spec.name] = spec
    return spec


def get(name: str) -> AgentSpec:
    """The agent registered as ``name``, or a ValueError listing the names there are."""
    if name not in AGENTS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(sorted(AGENTS))}")
    return AGENTS[name]
