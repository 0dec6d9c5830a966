"""Many iterations in one compiled call: a replay agent's collection and learning as one loop.

A one-seed DQN iteration on CartPole is ten environment steps and one minibatch update, called
as two compiled units, each paying its wrappers on every call (Dynamo's and AOTAutograd's Python,
the C++ wrapper's set-up: ~30-40 us a call, profiled). :func:`iteration_block` runs ``K`` whole
iterations as one compiled call, the iteration a loop inside the graph
(:func:`frl._compile.scan`), so that the wrappers are paid once per ``K`` iterations (one seed:
8-12 % more env-steps/s, paired runs; see ``benchmarks/peers``).

The replay ring is the one obstacle: collection writes it in place, which a loop inside the graph
may not do, and carrying it through the loop would copy it on every iteration. The block stages
the buffer on entry (:func:`frl.buffers.stage`: ``K`` iterations' transitions go to a small
staging area the loop carries, and sampling reads ring and staging area as one buffer) and
commits the staging area into the ring in place on leaving (:func:`frl.buffers.commit_`). Every
iteration draws and stores exactly what it would have one call at a time, so a run's state is the
same function of its iteration count whether it ran in blocks or not (up to the compiled kernels'
rounding: the loop's graph fuses differently).

The driver (:func:`frl.run`) runs blocks once learning has started (before, it skips the
learning units, one collecting call an iteration), between its log, evaluation and checkpoint
points, and single iterations where a block would cross one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import buffers
from frl.driver.compiled import CompiledUnit
from frl.tree import replace

__all__ = ["MAX_ITERATIONS_PER_CALL", "block_size", "iteration_block", "last_iteration"]

MAX_ITERATIONS_PER_CALL = 32
"""The most iterations a block runs when the driver picks (the metrics of the last one reach it)."""

MAX_STAGED = 1024
"""The most transitions (all members together) a block the driver picks stages. Each iteration
writes its transitions into a copy of the staging area (a loop may not write in place), so the
staging costs ``O(K)`` per iteration: DQN CartPole, 32 seeds in blocks of 60 (19,200 staged
transitions) ran 9-10 % slower than one iteration per call, one seed in blocks of 50 8 % faster
(paired runs, AMD EPYC). Where a call is long (many members) blocks save little anyway."""

MIN_ITERATIONS_PER_CALL = 8
"""Fewer iterations per block than this are not worth a third graph's compile."""


def block_size(
    train: Any,
    state: TensorDictBase,
    members: int,
    compile: bool,
    whole_iteration_in_units: bool,
    periods: Sequence[int | None],
    iterations: int,
    requested: int | None,
) -> int:
    """Iterations per compiled call for this run: 1 (no blocks), or ``K`` (see the module
    docstring).

    ``requested`` (``frl.run``'s ``iterations_per_call``): None picks ``K`` for a compiled run of a
    replay agent with a uniform buffer whose units are the whole iteration (the pure-environment
    feed): the largest divisor of every log, evaluation and checkpoint period (in iterations) and
    of the run's length up to the most that stage at most :data:`MAX_STAGED` transitions of all
    ``members`` (and at most :data:`MAX_ITERATIONS_PER_CALL`), so that blocks end where the driver
    stops, or that most where no divisor reaches :data:`MIN_ITERATIONS_PER_CALL`; 1 for every other
    run and where that most is under :data:`MIN_ITERATIONS_PER_CALL` (13 or more members at
    DQN's 10 steps an iteration). An int asks for that ``K``, refused where blocks
    cannot run.
    """
    consumes = train.consumes
    why = None
    if not compile:
        why = "an eager run calls its units one by one"
    elif not whole_iteration_in_units:
        why = "the data source runs code between the units (a collector)"
    elif consumes.kind != "replay":
        why = "blocks stage a replay buffer; this agent stores segments"
    elif buffers.is_prioritized(state["data"]):
        why = "a prioritized buffer keeps its priorities in the ring and cannot be staged"
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"run: `iterations_per_call` must be a positive int, got {requested!r}")
        if requested == 1:
            return 1
        if why is not None:
            raise ValueError(f"run: `iterations_per_call` ({requested}) needs blocks, but {why}")
        most = consumes.capacity // consumes.steps_per_iteration
        if requested > most:
            raise ValueError(
                f"run: `iterations_per_call` ({requested}) stages more transitions than the replay "
                f"buffer holds ({consumes.capacity}): at most {most}"
            )
        return requested
    if why is not None:
        return 1
    per_iteration = consumes.steps_per_iteration
    most = min(
        MAX_ITERATIONS_PER_CALL, consumes.capacity // per_iteration, MAX_STAGED // (members * per_iteration)
    )
    if most < MIN_ITERATIONS_PER_CALL:
        return 1
    common = iterations
    for every in periods:
        if every is not None and every % per_iteration == 0:
            common = math.gcd(common, every // per_iteration)
    size = max((k for k in range(1, most + 1) if common % k == 0), default=1)
    return size if size >= MIN_ITERATIONS_PER_CALL else most


def last_iteration(
    first: int, size: int, stops: Sequence[int | None], iterations: int, per_iteration: int
) -> int:
    """The last iteration (from 0) of the call that starts at iteration ``first``: ``first + size
    - 1`` where the iterations left until the next stop (the earliest of the schedules' next step
    counts, ``stops``, and the run's end) are a multiple of ``size``, so that blocks end exactly
    there; else ``first`` (one iteration: single iterations bring the next block into step)."""
    stop = iterations - 1
    for at in stops:
        if at is not None:
            stop = min(stop, math.ceil(at / per_iteration) - 1)
    return first + size - 1 if (stop - first + 1) % size == 0 else first


def iteration_block(
    collect: Sequence[tuple[Callable, int]],
    learn: Sequence[tuple[Callable, int]],
    size: int,
    slots: int,
    batched: bool,
) -> CompiledUnit:
    """``size`` iterations of the driver's units (``(fn, calls)`` per unit: ``collect`` then
    ``learn``, each ``fn`` called ``calls`` times an iteration) as one compiled
    :class:`CompiledUnit`, the replay buffer staged for ``slots`` transitions (``size``
    iterations' worth) around the loop."""

    def iteration(state: TensorDictBase) -> tuple[TensorDictBase, dict[str, Tensor]]:
        metrics: dict[str, Tensor] = {}
        for fn, calls in (*collect, *learn):
            for _ in range(calls):
                state, m = fn(state)
                metrics.update(m.items())
        return state, metrics

    def enter(state: TensorDictBase) -> TensorDict:
        return replace(state, data=buffers.stage(state["data"], slots))

    def leave(state: TensorDictBase) -> TensorDict:
        return replace(state, data=buffers.commit_(state["data"]))

    return CompiledUnit("iterations", iteration, batched, True, size, enter=enter, leave=leave)
