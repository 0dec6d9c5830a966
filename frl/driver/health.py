"""Numerical health: every unit checks its own output on the device, and bad members are frozen.

Each unit of a run is wrapped (:func:`guard`) so that, inside the unit (compiled with it,
vmapped with it), it computes whether every floating-point metric it returns (losses, gradient
norms, episode statistics) and every parameter it changed is finite. The first non-finite
quantity of a member is recorded in the member's health record, a small TensorDict the driver
carries in the state under ``"health"`` (saved in checkpoints, so a resumed run keeps its
frozen members; left out of ``RunResult.state``) and reads only where it syncs anyway (log
points, checkpoints, the end)::

    bad       bool    the member met a non-finite value
    env_steps int64   the member's environment steps when it happened (-1: healthy)
    unit      int64   the unit's index in the iteration (-1: healthy)
    quantity  int64   which quantity: an index into the unit's checked names (-1: healthy)

With ``freeze`` (``on_nonfinite="skip-member"``) a bad member's ``params`` and ``opt_state``
keep their last finite values from that call on (the learning units return them as they got
them): the update that produced the non-finite value is rejected, and the other members train
on. ``stop`` needs no freeze (a ``torch.where`` over every parameter and optimizer moment of
every update, measured 12 % of an 8-seed PPO run): it checks before every checkpoint, so a bad
state is never saved, and stops at the next log point. ``warn`` records and lets the values
flow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

__all__ = ["ON_NONFINITE", "Health", "NonFiniteError", "describe", "guard", "init_health", "strict_json"]

ON_NONFINITE = ("stop", "skip-member", "warn")
"""What a run does on the first non-finite value: stop with an error (the last good checkpoint
kept), freeze the bad members and train the others, or log a warning and continue."""

FROZEN = ("params", "opt_state")
"""The state entries a bad member keeps at their last finite values."""


class NonFiniteError(RuntimeError):
    """A run met a non-finite value (``on_nonfinite="stop"``); ``failure`` describes it."""

    def __init__(self, message: str, failure: dict[str, Any]) -> None:
        super().__init__(message)
        self.failure = failure


def init_health(members: int, batched: bool) -> TensorDict:
    """Every member healthy: ``[M]`` entries (``[]`` for one unbatched member)."""
    shape = (members,) if batched else ()
    return TensorDict(
        {
            "bad": torch.zeros(shape, dtype=torch.bool),
            "env_steps": torch.full(shape, -1, dtype=torch.int64),
            "unit": torch.full(shape, -1, dtype=torch.int64),
            "quantity": torch.full(shape, -1, dtype=torch.int64),
        },
        batch_size=shape,
    )


def _all_finite(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    flags = [torch.isfinite(t).all() for t in tensors]
    return torch.stack(flags).all() if flags else torch.ones((), dtype=torch.bool)


def guard(fn: Callable, index: int, names: list[str], *, learns: bool, freeze: bool) -> Callable:
    """``fn(state, *inputs) -> (state, metrics)`` as a unit over a state that also carries the
    health record under ``"health"`` (``fn`` sees the state without it; the record it returns
    is updated). Carried in the state, the record costs no extra input, output or pytree
    traversal per call: the checks are a few reductions inside the compiled unit.

    Checked, in order: every floating-point metric, then (``learns``: a unit that updates the
    parameters) every floating-point parameter. ``names`` receives the checked quantities'
    names the first time the unit runs in Python (every unit runs eagerly once before it is
    compiled, so warm starts fill it too). With ``freeze`` a learning unit returns a bad member's
    ``params`` and ``opt_state`` as it got them.
    """

    def unit(state: TensorDictBase, *inputs: Any):
        health = state["health"]
        new, metrics = fn(state.exclude("health"), *inputs)
        checked, flags = [], []
        for name, value in metrics.items(include_nested=True, leaves_only=True):
            if torch.is_tensor(value) and value.is_floating_point():
                checked.append(name if isinstance(name, str) else ".".join(name))
                flags.append(torch.isfinite(value).all())
        if learns:
            params = [p for p in new["params"].values(True, True) if p.is_floating_point()]
            checked.append("params")
            flags.append(_all_finite(params))
        if not names:
            names.extend(checked)
        if not flags:
            new = new.copy()
            new["health"] = health
            return new, metrics
        ok = torch.stack(flags)
        failed = ~ok.all()
        first = torch.argmin(ok.to(torch.int64))  # the first False (0 when all pass; unused then)
        newly = failed & ~health["bad"]
        bad = health["bad"] | failed
        record = TensorDict(
            {
                "bad": bad,
                "env_steps": torch.where(newly, new["counters", "env_steps"], health["env_steps"]),
                "unit": torch.where(newly, torch.full_like(health["unit"], index), health["unit"]),
                "quantity": torch.where(newly, first, health["quantity"]),
            },
            batch_size=[],
        )
        new = new.copy()
        if freeze and learns:
            for key in FROZEN:
                new[key] = new[key].apply(lambda n, o: torch.where(bad, o, n), state[key])
        new["health"] = record
        return new, metrics

    return unit


@dataclass
class Health:
    """The driver's view: unit names and their checked quantities, and the members already
    reported (``warn`` reports each member once)."""

    units: list[str]
    names: list[list[str]] = field(default_factory=list)
    reported: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.names = [[] for _ in self.units]

    def failures(self, record: TensorDictBase, per_iteration: int) -> list[dict[str, Any]]:
        """The bad members of ``record`` (one host read), each as ``{member, unit, quantity,
        env_steps, iteration}`` (``iteration`` counts from 1)."""
        flat = record if record.batch_dims else record.unsqueeze(0)
        bad = flat["bad"].tolist()
        if not any(bad):
            return []
        rows = []
        for member, (is_bad, steps, unit, quantity) in enumerate(
            zip(bad, *(flat[k].tolist() for k in ("env_steps", "unit", "quantity")), strict=True)
        ):
            if not is_bad:
                continue
            names = self.names[unit] if 0 <= unit < len(self.names) else []
            rows.append(
                {
                    "member": member,
                    "unit": self.units[unit] if 0 <= unit < len(self.units) else "?",
                    "quantity": names[quantity] if 0 <= quantity < len(names) else "?",
                    "env_steps": steps,
                    "iteration": math.ceil(steps / per_iteration) if steps > 0 else 1,
                }
            )
        return rows


def describe(failures: list[dict[str, Any]], members: list[dict[str, Any]]) -> str:
    """One line: which members met which non-finite quantity, in which unit and iteration."""
    parts = []
    for f in failures:
        who = ", ".join(f"{k}={v}" for k, v in members[f["member"]].items())
        parts.append(
            f"member {f['member']} ({who}): non-finite {f['quantity']} in unit {f['unit']!r} "
            f"at iteration {f['iteration']} (env step {f['env_steps']})"
        )
    return "; ".join(parts)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN/Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value
