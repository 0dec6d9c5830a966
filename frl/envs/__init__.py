"""Pure, batched torch environments (gymnax-style) and the registry.

``make(id)`` returns an environment; ``reset``/``step`` describe one environment and
``vmap`` batches them (:func:`reset_batch` and :func:`step_batch` do it for you).

Importing ``frl.envs`` loads neither gymnasium nor TorchRL: ``GymEnvironment`` (``gym:<id>``
environments), ``TorchRLEnv`` and ``to_torchrl`` load them on first use.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.func import vmap

from frl import random
from frl.envs.base import Environment, most_truncations
from frl.envs.classic_control import Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum
from frl.envs.deep_sea import DeepSea
from frl.envs.highway import Highway
from frl.envs.memory import CartPoleNoVelocity, MemoryLength
from frl.envs.meta import BernoulliBandits, PointNavigation, RandomMDPs
from frl.envs.micro_combat import MAPS, MicroCombat
from frl.envs.minatar import Asterix, Breakout, Freeway, SpaceInvaders
from frl.envs.minigrid import DOOR_KEY, DoorKey
from frl.envs.multi_agent import MultiAgentEnvironment
from frl.envs.recsim import InterestEvolution, InterestEvolutionObserved
from frl.envs.spaces import Box, Discrete
from frl.envs.tabular import TabularEnv

if TYPE_CHECKING:
    from frl.envs.gymnasium import GymEnvironment
    from frl.envs.torchrl_env import TorchRLEnv, to_torchrl

__all__ = [
    "DOOR_KEY",
    "ENVIRONMENTS",
    "MICRO_COMBAT",
    "SIZED",
    "TABULAR",
    "BernoulliBandits",
    "Box",
    "DeepSea",
    "Discrete",
    "DoorKey",
    "Environment",
    "GymEnvironment",
    "MemoryLength",
    "MicroCombat",
    "MultiAgentEnvironment",
    "RandomMDPs",
    "TabularEnv",
    "TorchRLEnv",
    "is_gym_id",
    "is_known",
    "list_envs",
    "make",
    "most_truncations",
    "plugin_prefix",
    "register_prefix",
    "reset_batch",
    "step_batch",
    "to_torchrl",
]

_LAZY = {
    "GymEnvironment": "frl.envs.gymnasium",
    "TorchRLEnv": "frl.envs.torchrl_env",
    "to_torchrl": "frl.envs.torchrl_env",
}
GYM_PREFIX = "gym:"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'frl.envs' has no attribute {name!r}")


def is_gym_id(env_id: str) -> bool:
    """Whether ``env_id`` names a gymnasium environment (``"gym:<id>"``)."""
    return isinstance(env_id, str) and env_id.startswith(GYM_PREFIX)


ENVIRONMENTS: dict[str, type[Environment]] = {
    cls.id: cls
    for cls in (
        CartPole,
        CartPoleNoVelocity,
        Acrobot,
        MountainCar,
        MountainCarContinuous,
        Pendulum,
        Breakout,
        SpaceInvaders,
        Asterix,
        Freeway,
        InterestEvolution,
        InterestEvolutionObserved,
        Highway,
        PointNavigation,
    )
}
ENVIRONMENTS["DeepSea-v0"] = DeepSea  # size 10; DeepSea-<N>-v0 for other sizes
ENVIRONMENTS["MemoryLength-v0"] = MemoryLength  # length 10; MemoryLength-<N>-v0 for others
ENVIRONMENTS["BernoulliBandits-v0"] = BernoulliBandits  # meta-RL task distributions (frl.envs.meta)
ENVIRONMENTS["RandomMDPs-v0"] = RandomMDPs
MICRO_COMBAT = {f"MicroCombat-{name}-v0": name for name in MAPS}
"""Ids :func:`make` serves with :class:`~frl.envs.micro_combat.MicroCombat` on the named map."""


PLUGINS: dict[str, str] = {"gymnax:": "frl.interop.jax", "vmas:": "frl.envs.vmas", "mpe2:": "frl.envs.mpe2"}
"""Id prefixes served by optional modules: importing the module registers the prefix's factory
(``register_prefix``), so ``make("gymnax:CartPole-v1")`` works once the ``jax`` extra is in."""

_FACTORIES: dict[str, Callable[..., Any]] = {}


def register_prefix(prefix: str, factory: Callable[..., Any]) -> None:
    """Serve ids ``prefix + name`` with ``factory(env_id, **kwargs)`` (used by optional modules)."""
    if not prefix.endswith(":"):
        raise ValueError(f"register_prefix: `prefix` must end with ':', got {prefix!r}")
    _FACTORIES[prefix] = factory


def plugin_prefix(env_id: str) -> str | None:
    """The plugin prefix of ``env_id`` (``"gymnax:"``), or None."""
    return next((p for p in PLUGINS if env_id.startswith(p)), None)


def _tabular(env_id: str, **kwargs: Any) -> TabularEnv:
    """gymnasium's toy-text MDPs, sampled from their transition tables (``frl.planning.mdp``)."""
    from frl.planning import mdp as tables

    gamma = kwargs.pop("gamma", 0.99)
    if env_id == "FrozenLake-v1":
        map_name = kwargs.pop("map_name", "4x4")
        steps = kwargs.pop("max_episode_steps", 100)
        table = tables.frozen_lake(map_name, kwargs.pop("is_slippery", True), gamma)
    elif env_id == "FrozenLake8x8-v1":
        steps = kwargs.pop("max_episode_steps", 200)
        table = tables.frozen_lake("8x8", kwargs.pop("is_slippery", True), gamma)
    else:  # CliffWalking-v1 has no time limit in gymnasium; sampling agents need one
        steps = kwargs.pop("max_episode_steps", 500)
        table = tables.cliff_walking(gamma)
    if kwargs:
        raise TypeError(f"make({env_id!r}): unexpected options {sorted(kwargs)}")
    return TabularEnv(table, max_episode_steps=steps, name=env_id)


TABULAR = ("CliffWalking-v1", "FrozenLake-v1", "FrozenLake8x8-v1")
"""Tabular ids :func:`make` serves with :class:`TabularEnv` (kwargs ``is_slippery``, ``map_name``,
``gamma`` (kept with the MDP for planning), ``max_episode_steps``)."""


SIZED: dict[str, tuple[type[Environment], str, tuple[int, ...]]] = {
    "DeepSea": (DeepSea, "size", (5, 10, 20, 30, 40, 50)),
    "MemoryLength": (MemoryLength, "length", (1, 10, 30, 100)),
}
"""Families with a size in the id, ``<name>-<N>-v0``: ``{name: (class, its size field, the sizes
listed)}`` (bsuite's sweeps: DeepSea 10 to 50; memory length up to 100). :func:`make` takes any ``N``."""


def _sized(env_id: str) -> tuple[str, int] | None:
    match = re.fullmatch(r"([A-Za-z]+)-([1-9][0-9]*)-v0", env_id)
    if match is None or match.group(1) not in SIZED:
        return None
    return match.group(1), int(match.group(2))


def list_envs() -> list[str]:
    """The ids :func:`make` accepts (``DeepSea-<N>-v0`` and ``MemoryLength-<N>-v0`` for any ``N``;
    a few are listed)."""
    sizes = [f"{name}-{n}-v0" for name, (_, _, listed) in SIZED.items() for n in listed]
    return sorted([*ENVIRONMENTS, *TABULAR, *MICRO_COMBAT, *DOOR_KEY, *sizes])


def is_known(env_id: str) -> bool:
    """Whether :func:`make` serves ``env_id`` without a plugin (built in, ``gym:``, a sized id)."""
    return env_id in list_envs() or is_gym_id(env_id) or _sized(env_id) is not None


def _fixed_by_id(env_id: str, field: str, value: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``field`` set to the ``value`` the id names; a ValueError if they set it too."""
    if field in kwargs:
        raise ValueError(f"{env_id}: `{field}` is fixed by the id ({value!r}); choose another id")
    return {field: value, **kwargs}


def make(env_id: str, **kwargs: Any) -> Environment | GymEnvironment:
    """An environment by gymnasium id (``"CartPole-v1"``, ...); kwargs go to its constructor.

    ``"gym:<id>"`` gives any gymnasium environment through TorchRL (:class:`GymEnvironment`;
    kwargs ``norm_obs``, ``norm_reward``, ``frame_stack``, ``make_kwargs``);
    ``"gymnax:<id>"`` any gymnax environment run in JAX (``frl.interop.jax.GymnaxEnv``, needs the
    ``jax`` extra); ``"vmas:<scenario>"`` a VMAS scenario through TorchRL
    (``frl.envs.vmas.VmasTask``; kwargs ``n_agents``, ``max_steps``, ``continuous_actions``,
    ``scenario_kwargs``; the ``vmas`` extra); ``"mpe2:<scenario>"`` an MPE2 particle environment
    through TorchRL's PettingZoo wrapper (``frl.envs.mpe2.Mpe2Task``; the ``vmas`` extra).
    """
    if is_gym_id(env_id):
        from frl.envs.gymnasium import make_gym

        return make_gym(env_id, **kwargs)
    if env_id in TABULAR:
        return _tabular(env_id, **kwargs)
    if env_id in MICRO_COMBAT:
        return MicroCombat(**_fixed_by_id(env_id, "map_name", MICRO_COMBAT[env_id], kwargs))
    if env_id in DOOR_KEY:  # pure torch; gym:MiniGrid-DoorKey-... is the minigrid package's own
        return DoorKey(**_fixed_by_id(env_id, "size", DOOR_KEY[env_id], kwargs))
    sized = _sized(env_id) if isinstance(env_id, str) else None
    if sized is not None:
        cls, field, _ = SIZED[sized[0]]
        return cls(**_fixed_by_id(env_id, field, sized[1], kwargs))
    prefix = plugin_prefix(env_id)
    if prefix is not None:
        if prefix not in _FACTORIES:
            try:
                importlib.import_module(PLUGINS[prefix])
            except ImportError as err:
                extra = "jax" if prefix == "gymnax:" else "vmas"
                raise ValueError(
                    f"{env_id!r} needs {PLUGINS[prefix]} ({err}); install the extra: "
                    f"pip install 'frl[{extra}]'"
                ) from None
        return _FACTORIES[prefix](env_id, **kwargs)
    if env_id not in ENVIRONMENTS:
        raise ValueError(
            f"unknown environment {env_id!r}; choose one of {', '.join(list_envs())}, "
            "any gymnasium id as 'gym:<id>', any gymnax id as 'gymnax:<id>', a VMAS scenario as "
            "'vmas:<scenario>' or an MPE2 one as 'mpe2:<scenario>'"
        )
    return ENVIRONMENTS[env_id](**kwargs)


def reset_batch(
    env: Environment, key: Tensor, num_envs: int, params: Any = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reset ``num_envs`` environments from ``split(key, num_envs)``: obs ``[num_envs, ...]``."""
    return vmap(env.reset, in_dims=(0, None))(random.split(key, num_envs), params)


def step_batch(
    env: Environment, key: Tensor, state: Mapping[str, Tensor], action: Tensor, params: Any = None
) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """Step a batch of environments (leading dim of ``state`` and ``action``) with per-env keys."""
    keys = random.split(key, state["time"].shape[0])
    return vmap(env.step, in_dims=(0, 0, 0, None))(keys, state, action, params)
