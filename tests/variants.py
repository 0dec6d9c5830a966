"""The four-variant rule: a pure function gives the same answer eagerly, under ``torch.func.vmap``,
under ``torch.compile(fullgraph=True)`` and (where differentiable) under ``torch.func.grad``.

A :class:`Case` holds a function and a way to make its i-th set of inputs. :func:`check` runs
one variant:

* ``vmap``: ``vmap(fn)`` over inputs stacked from ``make_args(0..B-1)`` equals the stack of
  ``fn(*make_args(i))``, to float rounding (bit for bit for integer outputs);
* ``compile``: ``frl.compile(fn)`` (fullgraph, static shapes) on ``make_args(0)`` equals eager;
* ``grad``: ``torch.func.grad`` of a weighted sum of the outputs equals ``torch.autograd.grad``
  of the same function, for the arguments in ``grad_argnums``.

Compiled variants use tiny shapes and carry the ``compile`` marker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from tensordict import TensorDictBase
from torch.utils import _pytree as pytree

import frl


@dataclass
class Case:
    """A pure function under test.

    Attributes:
      name: test id.
      fn: the function.
      make_args: ``i -> args`` for the i-th input set (must be deterministic in ``i``).
      batched: which positional args vary across the vmapped batch (default: every tensor and
        TensorDict argument); the others are taken from ``make_args(0)``.
      grad_argnums: positions to differentiate (``None``: not differentiable).
      rtol, atol: tolerances for float outputs.
      compile_rtol, compile_atol: tolerances for the compiled variant (Inductor may reorder
        float math and use its own transcendental functions).
    """

    name: str
    fn: Callable[..., Any]
    make_args: Callable[[int], Sequence[Any]]
    batched: Sequence[bool] | None = None
    grad_argnums: int | tuple[int, ...] | None = None
    rtol: float = 1e-6
    atol: float = 1e-6
    compile_rtol: float = 1e-5
    compile_atol: float = 1e-5
    batch_size: int = 3
    extra: dict[str, Any] = field(default_factory=dict)


def _is_data(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, TensorDictBase))


def assert_trees_close(actual: Any, expected: Any, *, rtol: float, atol: float, what: str) -> None:
    """Leafwise comparison: integer and bool leaves exactly, floats with tolerance."""
    a_leaves = pytree.tree_leaves(actual)
    e_leaves = pytree.tree_leaves(expected)
    assert len(a_leaves) == len(e_leaves), f"{what}: {len(a_leaves)} outputs vs {len(e_leaves)}"
    for i, (a, e) in enumerate(zip(a_leaves, e_leaves)):
        if not isinstance(e, torch.Tensor):
            assert a == e, f"{what}: output {i}: {a!r} != {e!r}"
            continue
        assert a.shape == e.shape, f"{what}: output {i}: shape {list(a.shape)} != {list(e.shape)}"
        assert a.dtype == e.dtype, f"{what}: output {i}: dtype {a.dtype} != {e.dtype}"
        if e.dtype.is_floating_point:
            torch.testing.assert_close(
                a, e, rtol=rtol, atol=atol, msg=lambda m, i=i: f"{what}: output {i}: {m}"
            )
        else:
            assert torch.equal(a, e), f"{what}: output {i} differs:\n{a}\nvs\n{e}"


def _stack(values: Sequence[Any]) -> Any:
    return torch.stack(list(values))


def check_vmap(case: Case) -> None:
    sets = [tuple(case.make_args(i)) for i in range(case.batch_size)]
    flags = case.batched if case.batched is not None else [_is_data(a) for a in sets[0]]
    expected = _stack_outputs([case.fn(*args) for args in sets])
    stacked = [_stack([s[j] for s in sets]) if flag else sets[0][j] for j, flag in enumerate(flags)]
    in_dims = tuple(0 if flag else None for flag in flags)
    actual = torch.func.vmap(case.fn, in_dims=in_dims)(*stacked)
    assert_trees_close(actual, expected, rtol=case.rtol, atol=case.atol, what=f"{case.name} vmap vs loop")


def _stack_outputs(outputs: Sequence[Any]) -> Any:
    leaves = [pytree.tree_flatten(o) for o in outputs]
    spec = leaves[0][1]
    columns = zip(*(lv for lv, _ in leaves))
    return pytree.tree_unflatten([torch.stack(list(col)) for col in columns], spec)


def check_compile(case: Case) -> None:
    args = tuple(case.make_args(0))
    expected = case.fn(*args)
    torch._dynamo.reset()
    actual = frl.compile(case.fn)(*args)
    assert_trees_close(
        actual,
        expected,
        rtol=case.compile_rtol,
        atol=case.compile_atol,
        what=f"{case.name} compiled vs eager",
    )


def _weighted_sum(out: Any) -> torch.Tensor:
    total = 0.0
    for leaf in pytree.tree_leaves(out):
        if isinstance(leaf, torch.Tensor) and leaf.dtype.is_floating_point:
            weights = torch.linspace(0.5, 1.5, leaf.numel(), dtype=leaf.dtype).reshape(leaf.shape)
            total = total + (leaf * weights).sum()
    return total


def check_grad(case: Case) -> None:
    assert case.grad_argnums is not None, f"{case.name} declares no differentiable inputs"
    argnums = (case.grad_argnums,) if isinstance(case.grad_argnums, int) else tuple(case.grad_argnums)
    args = list(case.make_args(0))
    functorch_grads = torch.func.grad(lambda *a: _weighted_sum(case.fn(*a)), argnums=argnums)(*args)

    expected_leaves, actual_leaves = [], []
    for j, g in zip(argnums, functorch_grads):
        if isinstance(args[j], TensorDictBase):
            keys = list(args[j].keys(True, True))
            args[j] = args[j].apply(lambda x: x.detach().requires_grad_(x.dtype.is_floating_point))
            expected_leaves += [args[j].get(k) for k in keys]
            actual_leaves += [g.get(k) for k in keys]
        else:
            args[j] = args[j].detach().requires_grad_(True)
            expected_leaves.append(args[j])
            actual_leaves.append(g)
    autograd = torch.autograd.grad(_weighted_sum(case.fn(*args)), expected_leaves, allow_unused=True)
    expected_leaves = [torch.zeros_like(x) if g is None else g for x, g in zip(expected_leaves, autograd)]
    assert_trees_close(
        actual_leaves, expected_leaves, rtol=1e-5, atol=1e-6, what=f"{case.name} func.grad vs autograd"
    )
    assert any(bool(g.abs().sum() > 0) for g in actual_leaves), f"{case.name}: all gradients are zero"


def variant_params(cases: Sequence[Case]) -> list[Any]:
    """``pytest.param(case, variant)`` for every applicable variant (grad only where differentiable)."""
    params = []
    for case in cases:
        for variant in ("vmap", "compile", "grad"):
            if variant == "grad" and case.grad_argnums is None:
                continue
            marks = [pytest.mark.compile] if variant == "compile" else []
            params.append(pytest.param(case, variant, id=f"{case.name}-{variant}", marks=marks))
    return params


def check(case: Case, variant: str) -> None:
    {"vmap": check_vmap, "compile": check_compile, "grad": check_grad}[variant](case)
