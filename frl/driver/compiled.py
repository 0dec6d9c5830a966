"""Units and functions vmapped over members and, optionally, compiled over flat tuples of tensors.

A compiled unit takes and returns the flat leaves of the training state (plus the leaves of any
extra inputs, e.g. a collector batch): no TensorDict crosses the compiled boundary (a TensorDict
there measured 30-100 us more per call) and no pytree flattening happens per call. Every unit is
compiled by ``frl.compile`` through its own named wrapper (``compile(vmap(f))`` objects share
one code object and hit the recompile limit).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tensordict import TensorDict
from torch import Tensor
from torch.func import vmap
from torch.utils import _pytree as pytree

import frl
from frl._compile import named, scan
from frl.driver.flat import member_function
from frl.driver.warm import compile_options, wrapper_name

__all__ = ["CompiledFunction", "CompiledUnit", "boundary", "graph_device"]


def _canonical_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _canonical(x: Tensor) -> Tensor:
    """``x`` with row-major strides, so compiled units see the same strides on every call.

    Dynamo guards on strides, also of size-1 dims (which ``contiguous()`` leaves as they are) and
    of expanded dims: without this a unit recompiles whenever a layout drifts. A contiguous
    tensor gets a free ``as_strided`` view; an expanded one a copy.
    """
    strides = _canonical_strides(x.shape)
    if x.stride() == strides:
        return x
    if not x.is_contiguous():
        x = x.contiguous()
    return x if x.stride() == strides else x.as_strided(x.shape, strides)


def boundary(leaves: Sequence[Tensor]) -> list[Tensor]:
    """Leaves ready for a compiled call: row-major strides and no two sharing memory.

    Dynamo guards on aliasing (``args[i] is args[j]``), nested compile regions reject aliased
    inputs, and a compiled graph may return one buffer for two equal outputs (two zero
    counters) or views of one tensor: a leaf whose storage was seen already is copied.
    """
    seen: set[int] = set()
    out = []
    for x in leaves:
        x = _canonical(x)
        ptr = x.untyped_storage().data_ptr() if x.numel() else -id(x)
        if ptr in seen:
            x = _canonical(x.clone())
            ptr = x.untyped_storage().data_ptr() if x.numel() else -id(x)
        seen.add(ptr)
        out.append(x)
    return out


def graph_device(leaves: Sequence[Tensor]) -> torch.device:
    """Where a graph over ``leaves`` runs: the first non-CPU leaf's device, else the CPU."""
    return next((x.device for x in leaves if x.device.type != "cpu"), torch.device("cpu"))


UNITS_GUARD_FREE = getattr(torch.compiler, "skip_all_guards_unsafe", None) is not None
"""Whether compiled units run without Dynamo's guards here (torch >= 2.8, see :func:`_compile`);
elsewhere they keep them and the driver skips their evaluation between iterations instead."""


def _compile(name: str, flat: Callable, device: torch.device, guarded: bool = True) -> Callable:
    """``frl.compile`` of ``flat`` through its own named wrapper (named after the warm start's
    key too, when one is active: the precompile cache finds a function by its name).

    ``guarded=False`` drops Dynamo's guards (``torch.compiler.skip_all_guards_unsafe``): the graph
    runs on whatever it is given, so the caller must give it the layouts of the first call (a
    :class:`CompiledUnit` checks that it does). Even with guard evaluation skipped between
    iterations, Dynamo still matched every input tensor and ran a Python guard over the
    hyper-parameters on each call: ~20 us a call, a fifth of a one-seed DQN iteration."""
    options = compile_options()
    if not guarded and UNITS_GUARD_FREE:
        options = {**options, "guard_filter_fn": torch.compiler.skip_all_guards_unsafe}
    return frl.compile(named(wrapper_name(f"frl_{name}"), flat), options=options, device=device)


def _layout(leaves: Sequence[Tensor]) -> list[tuple[Any, ...]]:
    return [(x.shape, x.stride(), x.dtype, x.device) for x in leaves]


def _check_layout(
    unit: str, what: str, got: Sequence[Tensor], want: list[tuple[Any, ...]], offset: int
) -> None:
    """Raise unless ``got`` has the layouts ``want`` (shapes, strides, dtypes, devices)."""
    if len(got) != len(want):
        raise RuntimeError(f"run: unit {unit!r} got {len(got)} {what} leaves, compiled for {len(want)}")
    for i, (x, spec) in enumerate(zip(got, want)):
        if (x.shape, x.stride(), x.dtype, x.device) != spec:
            shape, stride, dtype, device = spec
            raise RuntimeError(
                f"run: unit {unit!r} got leaf {offset + i} ({what}) as {x.dtype} {list(x.shape)} with "
                f"strides {x.stride()} on {x.device}, compiled for {dtype} {list(shape)} with strides "
                f"{stride} on {device}: a compiled unit runs without Dynamo's guards and never recompiles"
            )


class CompiledUnit:
    """``fn(state, *inputs) -> (state, metrics)`` over flat leaves, vmapped over members.

    Eager units are called on TensorDicts directly (:meth:`eager`); compiled ones on the state's
    leaves (:meth:`__call__`), which the driver keeps between calls. A compiled call runs ``fn``
    ``repeats`` times in a loop inside the graph (:func:`frl._compile.scan`) and returns the last
    repeat's metrics; an eager call runs it once. The graph returns only the leaves ``fn``
    changes (``carried``: the positions of the leaves its first, eager call did not return as the
    tensors it was given), and its loop carries only those; the call keeps the others as they
    came. (Returning every leaf made each unchanged one an output aliasing an input, which
    AOTAutograd's wrapper hands back one by one: a one-seed DQN iteration, whose collection
    changes 12 of its state's 59 leaves and whose update 31, took ~6 % longer.)

    ``enter`` and ``leave`` (per-member functions of the state, optional) run once a call around
    the repeats, inside the graph: :mod:`frl.driver.blocks` stages the replay buffer there, so
    that its loop of whole iterations never writes the ring in place. ``carried`` then counts
    what the whole call changes, and the loop carries the leaves of the entered state ``fn``
    changes.

    A compiled unit runs without Dynamo's guards (see :func:`_compile`): the driver keeps the
    state's leaves in one layout (:func:`boundary`, :meth:`_fix_layout`), and the unit checks
    what it is given against its first call's layouts: the state's leaves on the next two calls
    (by then each has come out of every unit's graph, whose layouts never change), extra inputs
    (a collector's batch) on every call. A mismatch is a RuntimeError, never a silent recompile.
    """

    def __init__(
        self,
        name: str,
        fn: Callable,
        batched: bool,
        compiled: bool,
        repeats: int = 1,
        enter: Callable | None = None,
        leave: Callable | None = None,
    ) -> None:
        self.name, self.compiled, self.fn, self.batched = name, compiled, fn, batched
        self.eager = self._over_members(fn)
        self.repeats = repeats if compiled else 1
        self.enter, self.leave = enter, leave
        self.metrics_spec: pytree.TreeSpec | None = None
        self._metric_names: list[str] | None = None  # a flat mapping of tensors: returned as a dict
        self._callable: Callable | None = None
        self._needs_fix: list[tuple[int, bool]] | None = None
        self.first_call_s = 0.0
        self.carried: list[int] | None = None
        self._layouts: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None
        self._state_checks = 2  # calls left on which the state's leaves are checked
        # run before compiling (frl.driver.helper); returns the seconds it spent on other units
        self.before_build: Callable[[], float] | None = None

    def _over_members(self, fn: Callable) -> Callable:
        """``fn`` (per member) over the stacked members when batched."""
        return vmap(fn) if self.batched else fn

    def _flat(self, fn: Callable, in_specs: list[pytree.TreeSpec], out_spec: pytree.TreeSpec) -> Callable:
        """``fn`` (per member) as a function of the batched trees' flat leaves returning the
        output's flat leaves (vmapped over members when batched)."""
        per_member = member_function(fn, in_specs, out_spec, self.batched)
        if per_member is not None:
            return per_member
        eager = self._over_members(fn)

        def via_pytree(*leaves: Tensor) -> list[Tensor]:
            trees, i = [], 0
            for spec in in_specs:
                trees.append(pytree.tree_unflatten(list(leaves[i : i + spec.num_leaves]), spec))
                i += spec.num_leaves
            return pytree.tree_leaves(eager(*trees))

        return via_pytree

    def _build(
        self,
        state_spec: pytree.TreeSpec,
        input_specs: list[pytree.TreeSpec],
        inner: tuple[pytree.TreeSpec, pytree.TreeSpec, list[int]],
        device: torch.device,
        carried: list[int],
    ) -> Callable:
        """The graph: ``enter``, ``repeats`` runs of ``fn`` (a loop carrying the leaves of the
        entered state that ``fn`` changes), ``leave``; the changed leaves and the metrics out."""
        inner_spec, out_spec, moved = inner
        n, n_inner, repeats = state_spec.num_leaves, inner_spec.num_leaves, self.repeats
        unit = self._flat(self.fn, [inner_spec, *input_specs], out_spec)
        enter = None if self.enter is None else self._flat(self.enter, [state_spec], inner_spec)
        leave = None if self.leave is None else self._flat(self.leave, [inner_spec], state_spec)

        def flat(*leaves):
            inputs = leaves[n:]
            entered = list(leaves[:n]) if enter is None else list(enter(*leaves[:n]))

            def step(state_leaves):
                out = unit(*state_leaves, *inputs)
                # row-major outputs: Inductor writes them so directly (gradients of batched
                # matmuls come out transposed, and Adam's moments would follow) instead of a
                # copy per call
                return [x.contiguous() for x in out[:n_inner]], out[n_inner:]

            if repeats == 1:
                state, metrics = step(entered)
            else:
                # the loop carries only the leaves the unit changes; the others (a rollout the
                # minibatch updates read, hyper-parameters, a replay ring) are read by every
                # step from the graph's inputs instead of being copied into the carry at each step
                def merged(carry):  # the whole state: the entered leaves with the carried ones in place
                    state_leaves = list(entered)
                    for i, x in zip(moved, carry, strict=True):
                        state_leaves[i] = x
                    return state_leaves

                def moving(carry):
                    state, metrics = step(merged(carry))
                    return [state[i] for i in moved], metrics

                carry, metrics = scan(moving, [entered[i] for i in moved], repeats)
                state, metrics = merged(carry), [m[-1] for m in metrics]
            if leave is not None:
                state = leave(*state)
            return (*[state[i] for i in carried], *metrics)

        return _compile(self.name, flat, device, guarded=False)

    def _structure(self, leaves: list[Tensor], state_spec: pytree.TreeSpec, inputs: tuple) -> tuple:
        """One eager call (``enter``, ``fn`` once, ``leave``): the entered state's and the
        output's structures, the positions of the entered leaves ``fn`` changes, and the
        positions of the state's leaves the whole call changes (a pure unit returns the leaves
        it does not change as they came: the same tensors)."""
        state = pytree.tree_unflatten(leaves, state_spec)
        if self.enter is not None:
            state = self._over_members(self.enter)(state)
        entered = pytree.tree_leaves(state)
        inner, metrics = self.eager(state, *inputs)
        if pytree.tree_structure(inner) != pytree.tree_structure(state):
            raise RuntimeError(f"run: unit {self.name!r} changed the structure of the training state")
        out_spec = pytree.tree_structure((inner, metrics))
        moved = [
            i for i, (a, b) in enumerate(zip(pytree.tree_leaves(inner), entered, strict=True)) if a is not b
        ]
        out = inner if self.leave is None else self._over_members(self.leave)(inner)
        if pytree.tree_structure(out) != state_spec:
            raise RuntimeError(f"run: unit {self.name!r} changed the structure of the training state")
        self.metrics_spec = pytree.tree_structure(metrics)
        self._metric_names = _flat_names(metrics)
        same = [a is b for a, b in zip(pytree.tree_leaves(out), leaves, strict=True)]
        carried = [i for i, kept in enumerate(same) if not kept] or list(range(len(leaves)))
        return (pytree.tree_structure(state), out_spec, moved or list(range(len(entered)))), carried

    def __call__(
        self, leaves: list[Tensor], state_spec: pytree.TreeSpec, *inputs: Any
    ) -> tuple[list[Tensor], TensorDict]:
        flat_inputs = [pytree.tree_flatten(x) for x in inputs]
        input_leaves = [leaf for lv, _ in flat_inputs for leaf in lv]
        if self._callable is None:
            # the first call's whole cost (the structure pass, tracing and compiling or loading a
            # warm start's artifacts, the call itself) counts as compile time, not run time
            start = time.perf_counter()
            inner, self.carried = self._structure(leaves, state_spec, inputs)
            others_s = self.before_build() if self.before_build is not None else 0.0
            self._callable = self._build(
                state_spec,
                [spec for _, spec in flat_inputs],
                inner,
                graph_device([*leaves, *input_leaves]),
                self.carried,
            )
            input_leaves = boundary(input_leaves)
            self._layouts = _layout(leaves), _layout(input_leaves)
            out = self._callable(*leaves, *input_leaves)
            self.first_call_s = time.perf_counter() - start - others_s
        else:
            input_leaves = boundary(input_leaves)
            state_layout, input_layout = self._layouts
            if self._state_checks:
                self._state_checks -= 1
                _check_layout(self.name, "state", leaves, state_layout, 0)
            if input_leaves or input_layout:
                _check_layout(self.name, "input", input_leaves, input_layout, len(leaves))
            out = self._callable(*leaves, *input_leaves)
        k = len(self.carried)
        state = list(leaves)
        for i, x in zip(self.carried, self._fix_layout(list(out[:k])), strict=True):
            state[i] = x
        if self._metric_names is not None:  # a dict: ~3 us a call less than a TensorDict
            return state, dict(zip(self._metric_names, out[k:], strict=True))
        return state, pytree.tree_unflatten(list(out[k:]), self.metrics_spec)

    def _fix_layout(self, out: list[Tensor]) -> list[Tensor]:
        """:func:`boundary` on the outputs, learnt once: a compiled graph returns the same
        strides and the same aliasing on every call, so after the first call only the leaves that
        needed a fix are fixed (the full check costs ~0.3 ms per call on a 74-leaf PPO state)."""
        if self._needs_fix is None:
            fixed = boundary(out)
            self._needs_fix = [
                (i, a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr())
                for i, (a, b) in enumerate(zip(out, fixed, strict=True))
                if a is not b
            ]
            return fixed
        for i, copied in self._needs_fix:
            # a copy where the graph aliased outputs; a free strided view where only strides differ
            out[i] = _canonical(out[i].clone()) if copied else _canonical(out[i])
        return out


def _flat_names(metrics: Any) -> list[str] | None:
    """The keys of ``metrics`` in its leaves' order when it is a mapping of tensors (a unit's
    metrics, which the driver only reads by name), else None."""
    if not hasattr(metrics, "items"):
        return None
    names, values = list(metrics.keys()), list(metrics.values())
    leaves = pytree.tree_leaves(metrics)
    if len(leaves) != len(values) or any(a is not b for a, b in zip(leaves, values)):
        return None
    return names


class CompiledFunction:
    """A pure function of pytrees, vmapped over members and optionally compiled (flat I/O)."""

    def __init__(self, name: str, fn: Callable, batched: bool, compiled: bool) -> None:
        self.name, self.compiled, self.fn, self.batched = name, compiled, fn, batched
        self.eager = vmap(fn) if batched else fn
        self._callable: Callable | None = None
        self.out_spec: pytree.TreeSpec | None = None
        self.first_call_s = 0.0

    def __call__(self, *trees: Any) -> Any:
        if not self.compiled:
            return self.eager(*trees)
        flat_in = [pytree.tree_flatten(t) for t in trees]
        leaves = boundary([leaf for lv, _ in flat_in for leaf in lv])
        if self._callable is None:
            start = time.perf_counter()  # the whole first call counts as compile time (see CompiledUnit)
            specs = [spec for _, spec in flat_in]
            self.out_spec = pytree.tree_structure(self.eager(*trees))
            fn = self.eager
            per_member = member_function(self.fn, specs, self.out_spec, self.batched)

            def flat(*xs):
                if per_member is not None:
                    return tuple(per_member(*xs))
                parts, i = [], 0
                for spec in specs:
                    parts.append(pytree.tree_unflatten(list(xs[i : i + spec.num_leaves]), spec))
                    i += spec.num_leaves
                return tuple(pytree.tree_leaves(fn(*parts)))

            self._callable = _compile(self.name, flat, graph_device(leaves))
            out = self._callable(*leaves)
            self.first_call_s = time.perf_counter() - start
        else:
            out = self._callable(*leaves)
        return pytree.tree_unflatten(list(out), self.out_spec)
