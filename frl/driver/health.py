"""Numerical health: every unit checks its own output on the device, and bad members are frozen.

Each unit of a run is wrapped (:func:`guard`) so that, inside the unit (compiled with it,
vmapped with it), it computes whether every floating-point metric it returns (losses, gradient
norms, episode statistics) is finite; the first learning unit of each iteration also checks the
parameters it receives (those the previous iteration left). The first non-finite quantity of a
member is recorded in the member's health record, a small TensorDict the driver carries in the
state under ``"health"`` (saved in checkpoints, so a resumed run keeps its frozen members; left
out of ``RunResult.state``) and reads only where it syncs anyway (log points, checkpoints, the
end)::

    bad       bool    the member met a non-finite value
    env_steps int64   the member's environment steps when it happened (-1: healthy)
    unit      int64   the unit's index in the iteration (-1: healthy)
    quantity  int64   which quantity: an index into the unit's checked names (-1: healthy)

Before every checkpoint and at the end the driver also checks the parameters on the host
(:func:`nonfinite_members`, once per checkpoint), so ``stop`` never saves a bad state and
``warn`` reports parameters the last iteration broke. Parameters are not checked after every
update: a reduction over every parameter in each of PPO's 16 minibatch updates cost 4-6 % of an
8-seed run (``benchmarks/bench_health.py``), once per iteration a sixteenth of that, and a
non-finite parameter makes the next loss non-finite anyway.

With ``freeze`` (``on_nonfinite="skip-member"``) the learning units also check the parameters
they return, and a bad member's ``params`` and ``opt_state`` keep their last finite values
from that call on (the units return them as they got them): the update that produced the
non-finite value is rejected, and the other members train on. ``stop`` needs no freeze (a
``torch.where`` over every parameter and optimizer moment of every update, measured 12 % of an
8-seed PPO run): it stops at the next log point or checkpoint. ``warn`` records and lets the
values flow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from frl._compile import readable
from frl.tree import assemble, entries, map_leaves, replace

__all__ = [
    "ON_NONFINITE",
    "Health",
    "NonFiniteError",
    "describe",
    "guard",
    "init_health",
    "nonfinite_members",
    "strict_json",
]

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


def _largest_magnitude(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``max_i max |t_i|``: finite exactly when every element is (a NaN propagates through
    ``amax``, under Inductor too; nothing overflows). The float reduction vectorises where
    ``isfinite(t).all()`` (a bool reduction) ran 2.2x slower under Inductor on CPU (12 PPO
    parameter tensors, 8 members: 49 us against 110 us per check). ``sum(t * 0)`` would be
    cheaper still but is wrong compiled: Inductor folds ``t * 0`` to 0."""
    largest = [t.abs().amax() for t in tensors]
    return torch.stack(largest).amax() if largest else torch.zeros(())


def _without_health(state: TensorDictBase) -> TensorDictBase:
    """``state.exclude("health")``; the other entries of a state without batch dims or a device
    are taken as they are (TensorDict's ``exclude`` rebuilds the tree)."""
    if state.device is not None or state.batch_dims:
        return state.exclude("health")
    return assemble({k: v for k, v in entries(state).items() if k != "health"})


def _metric_items(metrics: TensorDictBase) -> Any:
    """``metrics.items(include_nested=True, leaves_only=True)``, read directly where every entry
    is a tensor (the metrics of every built-in unit)."""
    fields = entries(metrics)
    if all(isinstance(v, torch.Tensor) for v in fields.values()):
        return fields.items()
    return metrics.items(include_nested=True, leaves_only=True)


def _float_leaves(tree: TensorDictBase) -> list[torch.Tensor]:
    return [x for x in tree.values(True, True) if x.is_floating_point()]


def guard(
    fn: Callable, index: int, names: list[str], *, learns: bool, freeze: bool, params_on_entry: bool = False
) -> Callable:
    """``fn(state, *inputs) -> (state, metrics)`` as a unit over a state that also carries the
    health record under ``"health"`` (``fn`` sees the state without it; the record it returns
    is updated). Carried in the state, the record costs no extra input, output or pytree
    traversal per call: the checks are a few reductions inside the compiled unit.

    Checked, in order: with ``params_on_entry`` the parameters the unit receives (named
    ``"params on entry"``: the driver sets it on the first learning unit of an iteration, so the
    parameters are checked once per iteration, as the previous iteration left them); every
    floating-point metric; with ``freeze`` (and ``learns``: a unit that updates the parameters)
    the parameters the unit returns, and a bad member's ``params`` and ``opt_state`` are returned
    as the unit got them. ``names`` receives the checked quantities' names the first time the
    unit runs in Python (every unit runs eagerly once before it is compiled, so warm starts fill
    it too).
    """

    def unit(state: TensorDictBase, *inputs: Any):
        health = entries(state)["health"]
        inner = _without_health(state)
        checked, magnitudes = [], []
        if params_on_entry:
            checked.append("params on entry")
            magnitudes.append(_largest_magnitude(_float_leaves(inner["params"])))
        new, metrics = fn(inner, *inputs)
        for name, value in _metric_items(metrics):
            if torch.is_tensor(value) and value.is_floating_point():
                checked.append(name if isinstance(name, str) else ".".join(name))
                # a scalar is finite exactly when its magnitude is: itself, with no op
                magnitudes.append(value if value.dim() == 0 else value.abs().amax())
        if learns and freeze:
            checked.append("params")
            magnitudes.append(_largest_magnitude(_float_leaves(new["params"])))
        if not names:
            names.extend(checked)
        if not magnitudes:
            return replace(new, health=health), metrics
        ok = torch.isfinite(torch.stack(magnitudes))
        if readable(ok) and bool(ok.all()) and not bool(health["bad"].any()):
            # eagerly, every member healthy before and after: the record and the state stand
            # (the ops below would give them unchanged)
            return replace(new, health=health), metrics
        failed = ~ok.all()
        first = torch.argmin(ok.to(torch.int64))  # the first False (0 when all pass; unused then)
        newly = failed & ~health["bad"]
        bad = health["bad"] | failed
        record = assemble(
            {
                "bad": bad,
                "env_steps": torch.where(newly, new["counters", "env_steps"], health["env_steps"]),
                "unit": torch.where(newly, torch.full_like(health["unit"], index), health["unit"]),
                "quantity": torch.where(newly, first, health["quantity"]),
            }
        )
        kept = {}
        if freeze and learns:
            kept = {
                key: map_leaves(lambda n, o: torch.where(bad, o, n), new[key], state[key]) for key in FROZEN
            }
        return replace(new, health=record, **kept), metrics

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


def nonfinite_members(params: TensorDictBase, batched: bool) -> list[int]:
    """The members whose parameters hold a non-finite value (eager, one host read): what the
    driver checks before it saves a checkpoint and at the end, where the parameters the last
    iteration wrote have not yet been checked on entry to the next."""
    leaves = _float_leaves(params)
    if not leaves:
        return []
    if not batched:
        leaves = [x.unsqueeze(0) for x in leaves]
    finite = torch.stack([torch.isfinite(x).reshape(x.shape[0], -1).all(1) for x in leaves]).all(0)
    return [m for m, ok in enumerate(finite.tolist()) if not ok]


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
