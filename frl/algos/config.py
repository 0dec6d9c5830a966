"""Agent configs: frozen dataclasses whose every field declares what it is and what it accepts.

Two kinds of field:

* :func:`hyper`: a numeric hyper-parameter of the math (learning rate, discount, GAE lambda,
  clip ratio, coefficients, Polyak rate, exploration epsilons). It lives in the training state
  under ``hyperparams`` as a 0-d float64 tensor, the pure functions read it from there, and
  ``frl.run(train, hparams={...})`` vmaps a grid of them in one compiled run.
* :func:`setting`: everything that shapes the program (counts, sizes, network widths,
  switches, names, values read once when the networks are built). Changing one builds another
  agent.

Each field names its constraint (finite, range, integer, choices); construction checks every
field and a bad value raises a ``ValueError`` (or ``TypeError``) naming the config, the field,
what it accepts and what it got. Cross-field rules go in a subclass's ``check()``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tensordict import TensorDict

__all__ = ["AgentConfig", "Constraint", "check_segments", "hyper", "setting"]


FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: a hyper-parameter beyond it would become inf in the state."""


@dataclass(frozen=True)
class Constraint:
    """What a field accepts: its type, an optional range (open or closed ends) or choices."""

    kind: str  # "float", "int", "bool", "str", "sizes"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    float32: bool = False
    """Kept as float32 data (hyper-parameters): finite there too, ``|x| <= 3.4e38``."""

    def describe(self) -> str:
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.kind == "bool":
            return "a bool"
        if self.kind == "sizes":
            return "a non-empty tuple of positive ints"
        what = {"float": "a finite number", "int": "an int", "str": "a string"}[self.kind]
        if self.low is None and self.high is None:
            return what
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        return f"{what} in {left}{lo}, {hi}{right}"

    def accepts(self, value: Any) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and (self.choices is None or value in self.choices)
        if self.kind == "sizes":
            return (
                isinstance(value, tuple)
                and len(value) > 0
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            )
        if isinstance(value, bool):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if self.kind == "float" and (not isinstance(value, (int, float)) or not math.isfinite(value)):
            return False
        if self.float32 and abs(value) > FLOAT32_MAX:
            return False
        if self.choices is not None:
            return value in self.choices
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


def hyper(
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A float hyper-parameter (kept in the training state; see the module docstring)."""
    constraint = Constraint("float", low, high, low_open, high_open, float32=True)
    return dataclasses.field(default=default, metadata={"hyper": True, "constraint": constraint})


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A setting that shapes the program; its kind follows the default's type (bool, int,
    float, str, or a tuple of sizes)."""
    if isinstance(default, bool):
        kind = "bool"
    elif isinstance(default, int):
        kind = "int"
    elif isinstance(default, float):
        kind = "float"
    elif isinstance(default, str):
        kind = "str"
    elif isinstance(default, tuple):
        kind = "sizes"
    else:
        raise TypeError(f"setting: unsupported default {default!r}")
    constraint = Constraint(kind, low, high, low_open, False, choices)
    return dataclasses.field(default=default, metadata={"hyper": False, "constraint": constraint})


@dataclass(frozen=True)
class AgentConfig:
    """Base of every agent's ``Config``: validation by declared constraints, and the views the
    rest of frl reads (:meth:`hyperparams`, :meth:`hyperparam_names`)."""

    agent: ClassVar[str] = "agent"
    """The registry name (``ppo``): errors name ``<agent>.Config``."""

    def __post_init__(self) -> None:
        owner = f"{self.agent}.Config"
        for f in dataclasses.fields(self):
            constraint = f.metadata.get("constraint")
            if constraint is None:
                continue
            value = getattr(self, f.name)
            if isinstance(value, list) and constraint.kind == "sizes":  # from JSON
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if constraint.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(self, f.name, value)
            if not constraint.accepts(value):
                kind = TypeError if _wrong_type(constraint, value) else ValueError
                what = constraint.describe()
                if constraint.float32 and dataclasses.replace(constraint, float32=False).accepts(value):
                    what += " and within float32's range, |x| <= 3.4e+38 (hyper-parameters are float32 data)"
                raise kind(f"{owner}: `{f.name}` must be {what}, got {value!r}")
        self.check()

    def check(self) -> None:
        """Cross-field rules (override; raise a ValueError naming the fields)."""

    @classmethod
    def preset(cls, env_id: str, **overrides: Any) -> AgentConfig:
        """Settings known to work on ``env_id`` (from ``frl/algos/presets.json``, which names each
        one's source; the defaults elsewhere), with ``overrides`` on top. ``gym:<id>`` ids get the
        settings of ``<id>``."""
        found: dict[str, Any] = {}
        bare = env_id.removeprefix("gym:")
        for pattern, settings in _presets().get(cls.agent, {}).items():
            if fnmatch.fnmatchcase(bare, pattern):
                found = {
                    k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k != "_source"
                }
        return cls(env_id=env_id, **{**found, **overrides})

    @classmethod
    def hyperparam_names(cls) -> tuple[str, ...]:
        """The fields that live in the training state's ``hyperparams``."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("hyper"))

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("hyper"))

    @classmethod
    def constraint(cls, name: str) -> Constraint:
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.metadata["constraint"]
        raise KeyError(f"{cls.agent}.Config has no field {name!r}")

    def hyperparams(self, device: torch.device | str | None = None) -> TensorDict:
        """Every hyper-parameter as a 0-d float64 tensor: the state's ``hyperparams``."""
        return TensorDict(
            {
                n: torch.tensor(float(getattr(self, n)), dtype=torch.float64, device=device)
                for n in self.hyperparam_names()
            },
            batch_size=[],
            device=device,
        )

    def with_hyperparams(self, **values: Any) -> AgentConfig:
        """A copy with hyper-parameters replaced (validated); a setting or an unknown name is an
        error naming it and the hyper-parameters there are."""
        names = self.hyperparam_names()
        for name in values:
            if name not in names:
                what = "a setting (it shapes the program)" if name in self.setting_names() else "not a field"
                raise ValueError(
                    f"{self.agent}.Config: `{name}` is {what}, not a hyper-parameter; "
                    f"hyper-parameters: {', '.join(names)}"
                )
        return dataclasses.replace(self, **values)


def check_segments(config: Any) -> None:
    """On-policy configs: ``num_steps`` a multiple of ``rollout_chunk`` (unless 0: the whole
    segment), and ``total_timesteps`` at least one iteration of ``num_envs * num_steps`` steps."""
    owner = f"{config.agent}.Config"
    if config.rollout_chunk and config.num_steps % config.rollout_chunk:
        raise ValueError(
            f"{owner}: `num_steps` ({config.num_steps}) must be a multiple of `rollout_chunk` "
            f"({config.rollout_chunk})"
        )
    if config.total_timesteps < config.num_envs * config.num_steps:
        raise ValueError(
            f"{owner}: `total_timesteps` ({config.total_timesteps}) must cover one iteration of "
            f"num_envs * num_steps = {config.num_envs * config.num_steps} steps"
        )


@functools.cache
def _presets() -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads((Path(__file__).with_name("presets.json")).read_text())


def _wrong_type(constraint: Constraint, value: Any) -> bool:
    if constraint.kind == "bool":
        return not isinstance(value, bool)
    if constraint.kind == "str":
        return not isinstance(value, str)
    if constraint.kind == "sizes":
        return not isinstance(value, tuple)
    if isinstance(value, bool):
        return True
    if constraint.kind == "int":
        return not isinstance(value, int)
    return not isinstance(value, (int, float))
