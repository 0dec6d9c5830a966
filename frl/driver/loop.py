"""``run``: train N seeds (and a grid of hyper-parameters) at once, compiled, with the comforts.

::

    train = frl.algos.ppo.make_train(frl.algos.ppo.Config())
    result = frl.run(train, seeds=8, total_steps=500_000, out_dir="runs/ppo")

Every member (seed x hyper-parameter point) has its own training state, stacked on a leading
dim, and every unit of the iteration runs vmapped over members. A data source fills the
agent's data (:mod:`frl.driver.sources`); with ``compile=True`` every unit is compiled once over
flat tensors (:mod:`frl.driver.compiled`). Between iterations Python evaluates, logs, shows
progress, checkpoints and stops early. Metrics are reduced on the device and only the latest
values are kept, so memory stays flat however long the run.

Seed ``i`` trained inside a batch of N gives the same numbers as seed ``i`` trained alone, and
member ``i`` of a hyper-parameter grid those of its configuration alone: all randomness comes
from ``frl.random.key(seed)`` and every hyper-parameter from the member's state.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.utils import _pytree as pytree

from frl import host_memory
from frl.algos.train import Train
from frl.driver import checkpoint
from frl.driver.blocks import block_size, iteration_block, last_iteration
from frl.driver.compiled import UNITS_GUARD_FREE, CompiledUnit, boundary
from frl.driver.health import (
    ON_NONFINITE,
    Health,
    NonFiniteError,
    describe,
    guard,
    init_health,
    nonfinite_members,
)
from frl.driver.helper import CompileHelper
from frl.driver.logging import RunLogger, summarize, write_json
from frl.driver.members import init_states, members_of
from frl.driver.sources import RunContext, Source, default_source
from frl.driver.warm import WarmStart, run_key

__all__ = ["RunResult", "run"]

Callback = Callable[[dict[str, Any]], bool | None]


@dataclass
class RunResult:
    """What a run returns.

    Attributes:
      state: the final training state, stacked over members ``[M, ...]``.
      members: ``[{"seed": s, **hyper-parameters}]``, one per member, in state order.
      eval_returns: the last evaluation's mean return per member.
      history: one row per log point (env steps, metrics, evaluations).
      wall_s: total seconds; compile_s: seconds spent in the first calls of compiled units (each
        one's structure pass, its tracing and compiling or the loading of a warm start's
        artifacts, and the call itself).
      env_steps_per_s: environment steps of all members per second of the run less ``compile_s``.
      env_steps: environment steps per member.
      nonfinite: the members that met a non-finite value (``on_nonfinite`` ``skip-member`` or
        ``warn``): ``{member, unit, quantity, env_steps, iteration}`` each.
      interrupted: the signal (``"SIGINT"``, ``"SIGTERM"``) that stopped the run after a final
        checkpoint, or None.
      iterations_per_call: iterations a compiled call ran where it could (1: one per call; see
        ``run``'s argument of that name).
    """

    state: TensorDict
    members: list[dict[str, Any]]
    eval_returns: list[float]
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    compile_s: float = 0.0
    env_steps_per_s: float = 0.0
    env_steps: int = 0
    nonfinite: list[dict[str, Any]] = field(default_factory=list)
    interrupted: str | None = None
    iterations_per_call: int = 1


class _Signals:
    """SIGINT/SIGTERM ask the loop to stop after the iteration in progress (a final checkpoint
    is written); a second signal interrupts at once. Installed only in the main thread."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None:  # the second one: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _Program:
    """The state between unit calls: flat, boundary-ready leaves when compiled, else a TensorDict
    (with the members' health records under ``"health"``, :mod:`frl.driver.health`)."""

    def __init__(self, state: TensorDictBase, compiled: bool) -> None:
        self.compiled = compiled
        if compiled:
            leaves, self.spec = pytree.tree_flatten(state)
            self.leaves = boundary(leaves)
        else:
            self._state = state

    @property
    def state(self) -> TensorDictBase:
        return pytree.tree_unflatten(self.leaves, self.spec) if self.compiled else self._state

    def call(self, unit: CompiledUnit, *inputs: Any) -> TensorDictBase:
        if self.compiled:
            self.leaves, metrics = unit(self.leaves, self.spec, *inputs)
        else:
            self._state, metrics = unit.eager(self._state, *inputs)
        return metrics


@dataclass
class _Schedule:
    """When a run evaluates, logs and checkpoints (in environment steps per member)."""

    every: int | None
    next_at: int | None = None

    def start(self, steps: int) -> None:
        self.next_at = None if self.every is None else (steps // self.every + 1) * self.every

    def due(self, steps: int) -> bool:
        return self.next_at is not None and steps >= self.next_at

    def done(self, steps: int) -> None:
        self.start(steps)


def run(
    train: Train,
    *,
    seeds: int | Sequence[int] = 1,
    hparams: Mapping[str, Sequence[float]] | None = None,
    total_steps: int | None = None,
    compile: bool = True,
    source: Source | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 10,
    log_every: int | None = None,
    callbacks: Sequence[Callback] = (),
    out_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    save_buffer: bool = True,
    write: bool = True,
    state_check: Callable[[TensorDict], Any] | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    warm_start: bool = False,
    on_nonfinite: str = "stop",
    iterations_per_call: int | None = None,
) -> RunResult:
    """Train every member for ``total_steps`` environment steps (per member).

    Args:
      train: an agent (``frl.algos.<name>.make_train(config)``).
      seeds: a count (seeds ``0..N-1``) or explicit seeds.
      hparams: a grid of hyper-parameters, e.g. ``{"learning_rate": [1e-3, 3e-4], "gamma":
        [0.98, 0.99]}``: every point is trained with every seed, all in one vmapped run (any
        hyper-parameter of the agent's Config: they live in the state; one graph per unit).
      total_steps: environment steps per member (default: the config's ``total_timesteps``);
        rounded down to whole iterations.
      compile: compile each unit with ``frl.compile`` (else run eagerly).
      source: where the data comes from (default: the pure environment inside the compiled
        units, or TorchRL collectors for a gymnasium environment; ``frl.driver.Collectors(workers=2)``
        for worker processes).
      eval_every: evaluate the deterministic policy every this many steps (and at the end).
      eval_episodes: episodes per member per evaluation.
      log_every: log training metrics every this many steps (default: at evaluations).
      callbacks: ``callback(row) -> stop?`` called at every log point; returning True stops.
      out_dir: where to write ``metrics.csv``/``metrics.jsonl`` and checkpoints.
      checkpoint_every: checkpoint every this many steps (and at the end); needs ``out_dir``.
      resume: continue from ``out_dir/checkpoint.pt`` (bit-identical to an uninterrupted run).
      save_buffer: keep a replay buffer in checkpoints (else a resumed run refills it before
        learning again).
      write: write logs and checkpoints to ``out_dir`` (data-parallel ranks other than 0 pass
        False: they read ``out_dir`` to resume but never write it).
      state_check: called with the training state at every log point (data-parallel runs
        compare parameters across ranks there).
      progress: show a progress bar.
      device: where the state lives (default CPU).
      warm_start: with ``compile``, save the compiled units after the first iteration and the
        first evaluation, and load them in a later run of the same program (hyper-parameter
        values may differ): start-up in seconds instead of tracing again
        (:mod:`frl.driver.warm`; agents from frl's ``make_train`` on their pure environment).
      on_nonfinite: every unit checks on the device that its metrics (losses, gradient norms,
        episode statistics) and the parameters it updates are finite, read where the run syncs
        anyway (log points, checkpoints). ``"stop"``: raise :class:`NonFiniteError` naming the
        members, unit, iteration and quantity, write ``failure.json`` to ``out_dir`` and keep
        the last good checkpoint; ``"skip-member"``: freeze the bad members at their last
        finite parameters and train the others (stop when none is left); ``"warn"``: print a
        warning and let the values flow (:mod:`frl.driver.health`); ``"off"``: no checks (to
        measure what they cost).
      iterations_per_call: compiled replay agents on their pure environment run this many
        iterations per call once learning has started, collection and learning one loop inside
        the graph (:mod:`frl.driver.blocks`; the run's state is the same function of its
        iterations); default: chosen to fit the log, evaluation and checkpoint points (up to
        32, fewer for many members), 1 for every other run; 1 switches blocks off.

    The iterations run with :func:`frl.host_memory.caching` (freed CPU buffers serve the next
    call; ``FRL_HOST_CACHE``: its limit in MiB, 0 switches it off).

    Returns:
      :class:`RunResult`.
    """
    total_steps = train.config.total_timesteps if total_steps is None else total_steps
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"run: `total_steps` must be a positive int, got {total_steps!r}")
    if checkpoint_every is not None and out_dir is None:
        raise ValueError("run: `checkpoint_every` needs an `out_dir`")
    if resume and out_dir is None:
        raise ValueError("run: `resume` needs an `out_dir`")
    if on_nonfinite not in (*ON_NONFINITE, "off"):
        raise ValueError(
            f"run: `on_nonfinite` must be one of {', '.join(ON_NONFINITE)} (or off: no checks), "
            f"got {on_nonfinite!r}"
        )
    host_cache_mib = host_memory.limit_from_env()
    per_iteration = train.steps_per_iteration
    iterations = total_steps // per_iteration
    if iterations == 0:
        raise ValueError(
            f"run: `total_steps` ({total_steps}) is less than one iteration ({per_iteration} steps)"
        )
    members = members_of(train, seeds, hparams)
    batched = len(members) > 1
    eval_every = eval_every or total_steps
    out = None if out_dir is None else Path(out_dir)
    ckpt_path = None if out is None else out / "checkpoint.pt"
    if write and out is not None:
        checkpoint.remove_stale(out, "checkpoint.pt")  # left by a save that was killed
    logger = RunLogger(out if write else None)
    wall_start = time.perf_counter()

    state, start, history, env_states, refill_until, saved_health = _start(
        train, members, batched, resume, ckpt_path
    )
    if on_nonfinite != "off":  # carried in the state: no extra input or output per unit call
        state["health"] = init_health(len(members), batched) if saved_health is None else saved_health
    # iterations before the first kept learning step skip the learning units (they change nothing)
    learn_from = max(refill_until, train.consumes.first_learning_iteration)
    if start:  # a resumed run: the logs hold exactly the checkpoint's history
        logger.restart(history)
    if device is not None:  # tensors on the device, the TensorDicts device-free as units return them
        state = state.to(device).clear_device_()

    feed = (source or default_source(train)).open(RunContext(train, members, batched, compile, eval_episodes))
    feed.restore(env_states)
    guarded_between = getattr(feed, "guarded_between_units", True)
    health, collect, learn = units(feed, on_nonfinite, batched, compile)
    evals, logs, ckpts = (
        _Schedule(eval_every),
        _Schedule(log_every or eval_every),
        _Schedule(checkpoint_every),
    )
    periods = [schedule.every for schedule in (evals, logs, ckpts)]
    size = block_size(
        train,
        state,
        len(members),
        compile,
        getattr(feed, "whole_iteration_in_units", False),
        periods,
        iterations - start,
        iterations_per_call,
    )
    block = (
        iteration_block(
            [(fn.fn, u.repeats) for u, fn in collect],
            [(fn.fn, u.repeats) for u, fn in learn],
            size,
            size * per_iteration,
            batched,
        )
        if size > 1
        else None
    )
    freeze = on_nonfinite == "skip-member"
    program = _Program(state, compile)
    nonfinite: list[dict[str, Any]] = []

    def check_health(steps: int, params: bool) -> None:
        """Report members that met a non-finite value since the last check (one host read);
        with ``params`` also the members whose parameters are non-finite now (before a
        checkpoint and at the end: the last iteration's updates are checked on entry to the next)."""
        if on_nonfinite == "off":
            return
        state = program.state
        new = health.failures(state["health"], per_iteration)
        new = [f for f in new if f["member"] not in health.reported]
        if params and not freeze:
            seen = health.reported | {f["member"] for f in new}
            new += [
                {
                    "member": m,
                    "unit": learn[-1][0].name,
                    "quantity": "params",
                    "env_steps": steps,
                    "iteration": math.ceil(steps / per_iteration),
                }
                for m in nonfinite_members(state["params"], batched)
                if m not in seen
            ]
            new.sort(key=lambda f: f["member"])
        if not new:
            return
        health.reported.update(f["member"] for f in new)
        nonfinite.extend(new)
        message = describe(new, members)
        left = len(members) - len(health.reported)
        if on_nonfinite == "stop" or (on_nonfinite == "skip-member" and left == 0):
            failure = {
                "message": message,
                "on_nonfinite": on_nonfinite,
                "failures": nonfinite,
                "members": members,
            }
            if write and out is not None:
                write_json(out / "failure.json", failure)
            kept = "; the last good checkpoint is kept" if ckpt_path is not None and write else ""
            raise NonFiniteError(f"run: {message}{kept}", failure)
        action = "frozen, the other members continue" if on_nonfinite == "skip-member" else "continuing"
        print(f"frl: warning: {message} ({action})", file=sys.stderr, flush=True)

    warm = (
        _warm_start(train, batched, program, f"health={on_nonfinite != 'off'},freeze={freeze},block={size}")
        if warm_start and compile and source is None
        else None
    )
    if warm is not None:
        warm.load()
    for schedule in (evals, logs, ckpts):
        schedule.start(start * per_iteration)
    bar = _progress(progress, iterations * per_iteration, start * per_iteration)
    last_metrics: dict[str, Tensor] = {}
    eval_returns: list[float] = []
    run_start = time.perf_counter()
    iteration, stopped = start, False
    scope = ExitStack()  # units compiled inside record precompile entries under the warm key
    if warm is not None:
        scope.enter_context(warm.active())
        if not warm.loaded and learn and CompileHelper.wanted(program.leaves):
            # the update (or the block): the largest graph, compiled by a forked child
            last = learn[-1][1] if block is None else block
            helper = CompileHelper.start(warm, program.leaves, program.spec, last)
            # waiting for it, the run compiles its evaluation (one evaluation, dropped) instead of later
            helper.idle = lambda: feed.evaluate(program.state["params"], start * per_iteration)
            scope.callback(helper.close)
    signals = scope.enter_context(_Signals())
    scope.enter_context(host_memory.caching(host_cache_mib))  # freed CPU buffers serve the next call
    try:
        first = start
        while first < iterations:
            # a block of iterations in one call where learning has started (and the replay
            # buffer is not refilling) and no log, evaluation or checkpoint point falls inside it,
            # else one iteration
            stops = [s.next_at for s in (evals, logs, ckpts)]
            in_block = block is not None and first >= learn_from
            iteration = (
                last_iteration(first, block.repeats, stops, iterations, per_iteration) if in_block else first
            )
            # After the first call every unit has its one graph for these exact layouts (the
            # driver pins strides and aliasing): skip re-checking guards (~15 % of a 1-seed step
            # when units had them), for a collector's compiled policy too; ~5 us an iteration
            # where nothing guarded runs.
            skip_guards = compile and first > start and (guarded_between or not UNITS_GUARD_FREE)
            # Before `learn_from` the learning units change nothing and are skipped, but compiled
            # runs call them once in the first iteration (result kept: it is the state they got;
            # metrics dropped) so that every unit compiles, and is saved for warm starts, at once
            # (where blocks will learn, the block compiles when learning starts instead).
            learns = iteration >= learn_from
            compile_only = (
                compile and block is None and iteration == start < train.consumes.first_learning_iteration
            )
            with (
                torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)
                if skip_guards
                else nullcontext()
            ):
                if iteration > first:
                    last_metrics.update(program.call(block))
                else:
                    _iterate(
                        program,
                        feed,
                        collect,
                        learn if learns or compile_only else [],
                        iteration,
                        last_metrics,
                        learn_metrics=learns,
                    )
            if warm is not None:  # the block's compile is saved after its first call
                warm.save_once("block" if iteration > first else "iteration")
            done_now, first = iteration + 1 - first, iteration + 1
            steps = (iteration + 1) * per_iteration
            final = iteration == iterations - 1
            if logs.due(steps) or evals.due(steps) or final:
                row = _row(steps, wall_start, last_metrics)
                if evals.due(steps) or final:
                    eval_returns = feed.evaluate(program.state["params"], steps)
                    if warm is not None:
                        warm.save_once("evaluation")
                    row.update({f"eval_return_{k}": v for k, v in summarize(eval_returns).items()})
                    row["eval_return_per_member"] = eval_returns
                    for name, rates in getattr(feed, "eval_outcomes", dict)().items():
                        row[f"eval_{name}_mean"] = sum(rates) / len(rates)
                        row[f"eval_{name}_per_member"] = rates
                    evals.done(steps)
                logs.done(steps)
                check_health(steps, params=final)
                history.append(row)
                logger.log(row)
                _show(bar, row, (steps - start * per_iteration) * len(members), run_start)
                if state_check is not None:
                    state_check(program.state)
                stopped = any(bool(cb(row)) for cb in callbacks)
            if bar is not None:
                bar.update(per_iteration * done_now)
            stopped = stopped or signals.received is not None
            if write and ckpt_path is not None and (ckpts.due(steps) or final or stopped):
                check_health(steps, params=True)  # a stopping run never replaces the last good checkpoint
                state = program.state if save_buffer else _without_buffer(program.state, train)
                buffer_saved = save_buffer or train.consumes.kind != "replay"
                payload = dict(state=state, iteration=iteration + 1, history=history, members=members)
                payload["agent"] = {"algo": train.name, "env": train.env.id}
                checkpoint.save(
                    ckpt_path, {**payload, "env_states": feed.env_states(), "buffer_saved": buffer_saved}
                )
                ckpts.done(steps)
            if stopped:
                break
    finally:
        scope.close()
        if bar is not None:
            bar.close()
        logger.close()
        feed.close()
    wall = time.perf_counter() - wall_start
    compiled_units = [fn for _, fn in collect + learn] + ([block] if block is not None else [])
    compile_s = sum(fn.first_call_s for fn in compiled_units) + feed.first_call_s if compile else 0.0
    done_steps = (iteration + 1 - start) * per_iteration * len(members)
    final_state = program.state.exclude("health")
    return RunResult(
        state=final_state if batched else final_state.unsqueeze(0),
        members=members,
        eval_returns=eval_returns,
        history=history,
        wall_s=wall,
        compile_s=compile_s,
        env_steps_per_s=done_steps / max(wall - compile_s, 1e-9),
        env_steps=(iteration + 1) * per_iteration,
        nonfinite=nonfinite,
        interrupted=signals.received,
        iterations_per_call=size,
    )


def units(
    feed: Any, on_nonfinite: str, batched: bool, compile: bool
) -> tuple[Health, list[tuple[Any, CompiledUnit]], list[tuple[Any, CompiledUnit]]]:
    """The source's collecting and learning units as the driver calls them, each paired with its
    :class:`CompiledUnit` (guarded by the numerical-health checks unless ``on_nonfinite`` is
    ``"off"``), and the :class:`Health` that names their checked quantities."""
    health = Health([u.name for u in (*feed.collect, *feed.learn)])
    freeze = on_nonfinite == "skip-member"  # stop needs no freeze: it never saves a bad state

    def unit(index: int, u: Any, learns: bool) -> CompiledUnit:
        repeats = u.repeats if u.scanned else 1
        if on_nonfinite == "off":
            return CompiledUnit(u.name, u.fn, batched, compile, repeats)
        # the first learning unit checks the parameters once per iteration (freezing units
        # check theirs after every update anyway)
        on_entry = not freeze and index == len(feed.collect)
        fn = guard(u.fn, index, health.names[index], learns=learns, freeze=freeze, params_on_entry=on_entry)
        return CompiledUnit(u.name, fn, batched, compile, repeats)

    collect = [(u, unit(i, u, False)) for i, u in enumerate(feed.collect)]
    learn = [(u, unit(len(collect) + i, u, True)) for i, u in enumerate(feed.learn)]
    return health, collect, learn


def _start(
    train: Train, members: list[dict[str, Any]], batched: bool, resume: bool, ckpt_path: Path | None
) -> tuple[TensorDict, int, list[dict[str, Any]], list[dict] | None, int, TensorDict | None]:
    """``(state, first iteration, history, environment states, refill until, health records)``:
    a fresh start, or the checkpoint's (a checkpoint saved without its replay buffer refills a
    fresh one first; one written without health records gives None)."""
    if not (resume and ckpt_path is not None and ckpt_path.exists()):
        return init_states(train, members, batched), 0, [], None, 0, None
    saved = checkpoint.load(ckpt_path)
    if not (isinstance(saved, dict) and {"state", "iteration", "members", "history"} <= saved.keys()):
        raise checkpoint.CheckpointError(f"checkpoint {ckpt_path} is not a training checkpoint of frl.run")
    who = saved.get("agent")
    if who is not None and (who["algo"], who["env"]) != (train.name, train.env.id):
        raise ValueError(
            f"run: the checkpoint in {ckpt_path.parent} was written by {who['algo']} on {who['env']}; "
            f"this run is {train.name} on {train.env.id}"
        )
    if saved["members"] != members:
        raise ValueError(
            f"run: the checkpoint in {ckpt_path.parent} was written for other members (seeds/hparams): "
            f"{saved['members']}, not {members}"
        )
    state, start = saved["state"], saved["iteration"]
    saved_health = state.get("health", None)
    if saved_health is not None:
        state = state.exclude("health")
    fresh = init_states(train, members, batched)
    _check_layout(state, fresh, ckpt_path)
    refill_until = start
    if not saved.get("buffer_saved", True):
        state["data"] = fresh["data"]
        refill_until = start + _refill_iterations(train)
    return state, start, saved["history"], saved.get("env_states"), refill_until, saved_health


def _check_layout(saved: TensorDictBase, fresh: TensorDictBase, path: Path) -> None:
    """The checkpoint's state has every entry of a fresh state with its shape and dtype (a
    replay buffer left out of the checkpoint excepted), or a ValueError names the first that
    differs: the configuration's settings (network sizes, buffer size, envs) must be the ones
    the checkpoint was written with."""

    def layout(state: TensorDictBase) -> dict[str, tuple]:
        return {
            ".".join(k) if isinstance(k, tuple) else k: (tuple(v.shape), v.dtype)
            for k, v in state.items(include_nested=True, leaves_only=True)
        }

    have, need = layout(saved), layout(fresh)
    for name in [*need, *(k for k in have if k not in need)]:  # in the state's own order
        if name.startswith("data.data.") and name not in have:
            continue  # saved without its replay buffer
        if name not in have or name not in need:
            where = "lacks" if name not in have else "has an extra"
            raise ValueError(
                f"run: the checkpoint in {path.parent} does not fit this configuration: its state "
                f"{where} entry {name!r} (resume with the settings it was written with)"
            )
        if have[name] != need[name]:
            (s1, d1), (s2, d2) = have[name], need[name]
            raise ValueError(
                f"run: the checkpoint in {path.parent} does not fit this configuration: {name!r} is "
                f"{list(s1)} {d1} there, this run needs {list(s2)} {d2} (resume with the settings "
                "it was written with)"
            )


def _iterate(
    program: _Program,
    feed: Any,
    collect: list,
    learn: list,
    iteration: int,
    metrics: dict[str, Tensor],
    learn_metrics: bool = True,
) -> None:
    """One iteration: the source's units (which store the data), then the learning units (their
    metrics kept with ``learn_metrics``)."""
    inputs = feed.inputs(iteration, lambda: program.state)
    for unit, fn in collect:
        for _ in range(unit.repeats // fn.repeats):
            metrics.update(program.call(fn, *inputs).items())
    for unit, fn in learn:
        for _ in range(unit.repeats // fn.repeats):
            out = program.call(fn)
            if learn_metrics:
                metrics.update(out.items())


def _warm_start(train: Train, batched: bool, program: _Program, variant: str) -> WarmStart | None:
    """Warm starts serve the pure-environment source (its units are the whole program)."""
    if not getattr(train.env, "pure", True):
        return None
    key = run_key(train, batched, program.state, variant)
    return None if key is None else WarmStart(key)


def _row(steps: int, wall_start: float, metrics: Mapping[str, Tensor]) -> dict[str, Any]:
    """A log row: the step count, the wall time and every metric's mean over members."""
    row: dict[str, Any] = {"env_steps": steps, "wall_s": time.perf_counter() - wall_start}
    for name, value in metrics.items():
        per_member = value.detach().float().reshape(-1).tolist()
        row[name] = sum(per_member) / len(per_member)
    return row


def _without_buffer(state: TensorDictBase, train: Train) -> TensorDictBase:
    """``state`` without its replay buffer's transitions (``save_buffer=False``)."""
    if train.consumes.kind != "replay":
        return state
    return state.exclude(("data", "data"))


def _refill_iterations(train: Train) -> int:
    """Iterations that only collect, until a fresh buffer holds ``learning_starts`` transitions
    (at least one minibatch, at most its capacity)."""
    consumes = train.consumes
    if consumes.kind != "replay":
        return 0
    need = min(consumes.capacity, max(consumes.learning_starts, consumes.batch_size))
    return math.ceil(need / train.steps_per_iteration)


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs stay readable)
    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        unit_scale=True,
        dynamic_ncols=True,
        leave=True,
        mininterval=0.5,
        disable=None,
    )


def _show(bar: Any, row: Mapping[str, Any], done_steps: int, run_start: float) -> None:
    if bar is None:
        return
    rate = done_steps / max(time.perf_counter() - run_start, 1e-9)
    value = row.get("eval_return_mean", row.get("episode_return", math.nan))
    bar.set_postfix({"steps/s": f"{rate:,.0f}", "return": f"{value:.1f}"})
