"""``frl.compile``: ``torch.compile`` with the settings frl's pure functions need.

Two defaults differ from ``torch.compile``:

* ``fullgraph=True, dynamic=False``: a graph break or a silent switch to dynamic shapes (which
  compiled 20x slower once on CPU) is an error, not a slowdown.
* Inductor's realization thresholds are lowered to 8 ops. Inductor inlines pointwise chains
  into their consumers and re-walks shared sub-expressions for every consumer; threefry (the
  generator behind ``frl.random``: 20 rounds of add/rotate/xor, each value read 2-3 times) makes
  that walk explode: one ``split`` + ``uniform`` took 23 s to compile with the default
  thresholds (50/30 ops) and 4 s with 8, at the same run time. Every key-based draw in a
  compiled step pays this, so frl compiles with the lower thresholds.

On the CPU, one more: Inductor's C++ wrapper (``cpp_wrapper``). Its default wrapper is Python
that calls each kernel, allocation and library call of the graph in turn, ~1-3 us each; a
small-network RL step is hundreds of them (a 10-step DQN collection chunk: 140 allocations, 70
random-number calls, 30 matmuls). Generated as C++ instead, the same kernels ran a DQN chunk in
0.67 ms instead of 1.25 ms and a one-seed PPO iteration 1.42x faster (same minute, one core
each), and a cold compile took as long (one shared object per graph instead of one per kernel).
GPU graphs keep the Python wrapper (untested there).

With the C++ wrapper, Inductor builds a graph's wrapper and kernels as one file at ``-O3`` by
default; ``cpp_wrapper_build_separate`` builds the wrapper (glue: calls and allocations) at
``-O1`` and only the kernels at ``-O3``. Cold PPO CartPole compiles took 120.6 s instead of 138.0 s
(1 seed) and 138.5 s instead of 162.0 s (8 seeds), with the same returns, and throughput within
the machine's run-to-run noise (1 seed, 4 runs each: medians 22.2k and 23.2k env-steps/s, every
run between 17k and 25k; same session, AMD EPYC, one core).

And ``cpp.use_decompose_tanh``: vectorised ``tanh`` as ``2 / (1 + exp(-2x)) - 1`` instead of
Sleef's ``tanhf8_u10``, the largest symbol in a profile of one-seed PPO (11 % of the steady
state: tanh hidden layers forward in collection, forward and backward in every update). With it
the PPO CartPole update took 6.5 ms instead of 7.6 ms per 16 minibatches and the advantages 0.87
instead of 1.12 ms (AMD EPYC, one core, side by side). The price is precision near 0: the
absolute error stays below 2e-7 over all floats (gradient 4e-7) but the relative error grows as
``x`` nears 0 (``tanh(-1e-6)`` gives ``-9.5e-7``): torch leaves it off by default after such a
value flipped the sign fed to ``atan2``; frl's tanh feeds hidden layers and squashed actions,
where the absolute error is what counts. The eager path and other devices keep ``torch.tanh``.

And ``size_asserts`` off: the C++ wrapper checked every input's sizes and strides and every
library call's output on each call, building a ``std::stringstream`` (and its locale) per check
whether it failed or not: 32 checks in a one-seed DQN collection chunk. Dynamo's guards already
match the inputs (the driver's units, which run without them, check their own,
:class:`frl.driver.compiled.CompiledUnit`), and frl's operators' output layouts are tested
against their fake kernels. A one-seed DQN update took 195-203 us instead of 207-214 (three
pairs side by side), its collection chunk 114-117 us instead of 120-122.

The C++ compiler runs twice per graph with a separately built wrapper (wrapper, then kernels,
then the link); with torch 2.13, :func:`compile` makes the first two run at once
(:func:`_build_concurrently`): 8 PPO CartPole seeds compiled in 55 s instead of 62 s on two cores.
And a process that loads cached C++ graphs no longer runs the preprocessor to precompile headers it
will not use (:func:`_deferred_header`): a warm PPO start reached its first iteration 0.4-0.5 s sooner.

CPU graphs also get frl's own additions to Inductor (:mod:`frl._inductor`): small random draws and
thin matrix products (1-4 rows or columns, or a contraction of 1-2) generated as loops instead of
library calls (a DQN collection chunk 133 us instead of 258 us; a PPO update of 16 minibatches
2.43 ms instead of 2.54).
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import linecache
import os
import pathlib
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import _get_current_dispatch_mode

from frl import _inductor

__all__ = ["CACHEABLE_LOOPS", "CPU_OPTIONS", "INDUCTOR_OPTIONS", "compile", "named", "scan", "vmap_leaves"]

CACHEABLE_LOOPS = ("torch.ops.higher_order.scan", "torch.ops.higher_order.while_loop")
"""The loop operators :func:`scan` compiles to. Inductor and AOTAutograd cache no graph holding a
higher-order operator unless it is listed in ``unsafe_marked_cacheable_functions``: without it,
every process compiled a scanned unit again (a PPO update: 30 s, each run). A scan's body is a
submodule of the graph, so the graph's cache key covers it."""

INDUCTOR_OPTIONS: dict[str, Any] = {
    "realize_opcount_threshold": 8,
    "realize_cpu_opcount_threshold": 8,
    "unsafe_marked_cacheable_functions": {name: torch.__version__ for name in CACHEABLE_LOOPS},
}
"""Inductor options frl compiles with (see the module docstring for the measurement)."""

CPU_OPTIONS: dict[str, Any] = {
    "cpp_wrapper": True,
    "cpp_wrapper_build_separate": True,
    "cpp.use_decompose_tanh": True,
    "size_asserts": False,
}
"""Inductor options added for graphs that run on the CPU (see the module docstring)."""


def _defaults(device: torch.device | str | None) -> dict[str, Any]:
    """:data:`INDUCTOR_OPTIONS` (and :data:`CPU_OPTIONS` for a CPU graph) that this torch's
    Inductor knows (``realize_cpu_opcount_threshold`` is new in torch 2.13; an older torch, as on a
    GPU machine's image, raises on it). Options a caller passes are not filtered: a misspelt one
    still fails."""
    import torch._inductor.config as inductor_config

    cpu = torch.device(device).type == "cpu" if device is not None else not torch.cuda.is_available()
    defaults = {**INDUCTOR_OPTIONS, **(CPU_OPTIONS if cpu else {})}
    if cpu:
        defaults["post_grad_custom_post_pass"] = _inductor.post_grad_pass()
    return {k: v for k, v in defaults.items() if _known(inductor_config, k)}


def _known(config: Any, name: str) -> bool:
    """Whether ``config`` has the option ``name`` (dotted for a nested one: ``cpp.use_decompose_tanh``)."""
    for part in name.split("."):
        if not hasattr(config, part):
            return False
        config = getattr(config, part)
    return True


def _settle_tensordict_memo() -> None:
    """Fill tensordict's is-tensorclass memo for the types frl passes around, and its pytree
    constructor memo for every TensorDict class.

    Dynamo guards on the memos' lengths (tensordict 0.14): a type first seen by eager code after
    a compile (``Tensor``, ``TensorDict``, ``dict``; a TensorDict class first flattened) grows one
    and recompiles every compiled function once, doubling compile time. Seen up front, the memos
    stay put.
    """
    try:
        from tensordict import TensorDict
        from tensordict._pytree import PYTREE_REGISTERED_LAZY_TDS, PYTREE_REGISTERED_TDS, _constructor
        from tensordict.utils import _is_tensorclass
    except ImportError:  # pragma: no cover - a tensordict without the memos
        return
    for cls in (torch.Tensor, TensorDict, dict, list, tuple, int, float, bool, type(None)):
        _is_tensorclass(cls)
    for cls in (*PYTREE_REGISTERED_TDS, *PYTREE_REGISTERED_LAZY_TDS):
        _constructor(cls)


def _build_concurrently(lock_path: str, cpp_builders: Any) -> None:
    """Inductor's C++ build step (``torch._inductor.codecache._worker_compile_cpp``) with a
    separately built wrapper (``cpp_wrapper_build_separate``: wrapper, kernels, link) compiling
    the wrapper and the kernels at once, then linking: two compiler processes on two cores. Before
    it builds anything, the precompiled headers the builders include are made
    (:func:`_deferred_header`)."""
    from concurrent.futures import ThreadPoolExecutor

    from torch._inductor.codecache import LOCK_TIMEOUT
    from torch.utils._filelock import FileLock

    def build(builder: Any) -> None:
        if not os.path.exists(builder.get_target_file_path()):
            builder.build()

    with _stop_signals_held():
        if any(not os.path.exists(b.get_target_file_path()) for b in cpp_builders):
            _make_deferred_headers(cpp_builders)
        with FileLock(lock_path, timeout=LOCK_TIMEOUT):
            if len(cpp_builders) == 3:  # wrapper, kernels, the link of both
                with ThreadPoolExecutor(2) as pool:
                    for done in [pool.submit(build, b) for b in cpp_builders[:2]]:
                        done.result()
                build(cpp_builders[2])
            else:
                for builder in cpp_builders:
                    build(builder)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (block them) in this thread while it builds, and so in the threads
    and compiler processes it starts (a blocked signal stays blocked in a forked and executed
    child); the process still gets a signal sent meanwhile (in another of its threads, or in this
    one when the build ends), and Python's handler runs in the main thread as always.

    A Ctrl-C reaches every process of the terminal's process group: the C++ compiler died with
    it, and a run that had been asked to stop after its iteration crashed in the middle of it with
    a 20-line ``CppCompileError`` (measured: a cold ``frl train ppo`` interrupted while compiling).
    The run's own handler (``frl.driver.loop``) still gets the signal and stops after the iteration."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_PRECOMPILE_HEADER: Callable[..., str] | None = None
"""torch's ``_precompile_header``, kept where :func:`_deferred_header` replaced it."""

_DEFERRED: dict[str, tuple[str, str, dict[str, Any]]] = {}
"""A deferred header's path -> the arguments of ``_precompile_header`` that make its precompiled file."""

_MADE: set[str] = set()
"""Deferred headers whose precompiled file this process made (and linked)."""


def _deferred_header(header: str, hashable_cmd_line: str, **compile_command: Any) -> str:
    """Inductor's ``_precompile_header(header, hashable_cmd_line, **compile_command)`` for a graph
    being loaded (called from ``CppCodeCache.load_async``), deferred until something is built.

    torch 2.13 precompiles a C++ graph's headers each time a process first loads one, cached or
    not: it runs the preprocessor over the header (~0.25 s per header; two per CPU graph) to key
    the precompiled file by the headers' content, before looking for the graph's library. A
    warm start builds nothing, so the preprocessor's work was wasted. This returns a path of its
    own instead (``frl-<hash>.h`` beside torch's precompiled headers, including the same header;
    the hash covers the header and the command line) and records the arguments;
    :func:`_build_concurrently`, before it builds, has torch make the precompiled header as before
    and links this path's ``.gch`` (``.pch`` for clang) to it, so a build compiles with the
    precompiled header it would have had. A warm one-seed PPO CartPole start (4 graphs) ran the
    preprocessor 8 times (0.43-0.47 s) and now none: its first iteration ended 4.2-5.0 s after the
    process started instead of 4.7-5.3 s (AMD EPYC, 3 runs each, alternated).
    Other callers (AOTInductor builds directly, not through the build step) get torch's own.
    """
    import hashlib

    import torch._inductor.codecache as codecache

    assert _PRECOMPILE_HEADER is not None
    if sys._getframe(1).f_code.co_name != "load_async":
        return _PRECOMPILE_HEADER(header, hashable_cmd_line, **compile_command)
    digest = hashlib.sha256(f"{header}\0{hashable_cmd_line}".encode()).hexdigest()[:32]
    path = os.path.join(codecache._HEADER_DIR, f"frl-{digest}.h")
    if path not in _DEFERRED:
        os.makedirs(codecache._HEADER_DIR, exist_ok=True)
        if not os.path.exists(path):
            _replace(path, lambda tmp: pathlib.Path(tmp).write_text(f"#include <{header}>\n"))
        _DEFERRED[path] = (header, hashable_cmd_line, compile_command)
    return path


def _replace(path: str, write: Callable[[str], Any]) -> None:
    """Write ``path`` through a file of this thread's own, renamed over it (atomic: another
    process reads the old file or the new one, never half of one)."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    if os.path.lexists(tmp):
        os.remove(tmp)
    write(tmp)
    os.replace(tmp, path)


def _make_deferred_headers(cpp_builders: Any) -> None:
    """Make the precompiled headers that ``cpp_builders`` include through :func:`_deferred_header`
    (torch's ``_precompile_header``, which skips what is already made) and link each deferred
    path's ``.gch``/``.pch`` to torch's file; once per header and process."""
    for builder in cpp_builders:
        path = getattr(getattr(builder, "_build_option", None), "precompiled_header", None)
        if path not in _DEFERRED or path in _MADE:
            continue
        assert _PRECOMPILE_HEADER is not None
        header, cmd_line, command = _DEFERRED[path]
        made = _PRECOMPILE_HEADER(header, cmd_line, **command)
        for ext in (".gch", ".pch"):
            if os.path.exists(made + ext):
                _replace(path + ext, lambda tmp, target=made + ext: os.symlink(target, tmp))
            else:  # none made: an older link must not stand in for it
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path + ext)
        _MADE.add(path)


def _concurrent_cpp_builds() -> None:
    """Install :func:`_build_concurrently` where torch 2.13's Inductor builds C++, and
    :func:`_deferred_header` where it precompiles headers (once; left alone on another torch,
    whose build step may differ). Three builds of an 8-seed PPO CartPole run's graphs spent 20 s in
    the compiler, 6.5 s of them compiling kernels after their wrapper."""
    global _PRECOMPILE_HEADER
    try:
        import torch._inductor.codecache as codecache
    except ImportError:  # pragma: no cover
        return
    current = getattr(codecache, "_worker_compile_cpp", None)
    if current is None or current is _build_concurrently or not torch.__version__.startswith("2.13"):
        return
    if list(inspect.signature(current).parameters) != ["lock_path", "cpp_builders"]:
        return
    codecache._worker_compile_cpp = _build_concurrently
    precompile = getattr(codecache, "_precompile_header", None)
    expected = ["header", "hashable_cmd_line", "compile_command"]
    if (
        precompile is not None
        and hasattr(codecache, "_HEADER_DIR")
        and list(inspect.signature(precompile).parameters) == expected
    ):
        _PRECOMPILE_HEADER = precompile
        codecache._precompile_header = _deferred_header


def compile(
    fn: Callable[..., Any],
    *,
    fullgraph: bool = True,
    dynamic: bool | None = False,
    options: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    **kwargs: Any,
) -> Callable[..., Any]:
    """Compile ``fn`` with ``torch.compile`` and frl's defaults.

    Args:
      fn: the function to compile; compile the outermost function
        (``frl.compile(vmap(step))``), never ``vmap(compile(step))``.
      fullgraph: fail on graph breaks.
      dynamic: ``False`` pins shapes (one graph per configuration).
      options: extra Inductor options, merged over :data:`INDUCTOR_OPTIONS` (and
        :data:`CPU_OPTIONS` for a CPU graph).
      device: where the graph runs, for its defaults: a CPU graph gets :data:`CPU_OPTIONS`;
        ``None`` reads as the CPU on a machine without CUDA, else as unknown (none added).
      **kwargs: passed to ``torch.compile`` (``mode``, ``backend``, ...).

    Returns:
      The compiled callable.
    """
    _settle_tensordict_memo()
    _concurrent_cpp_builds()
    _inductor.install()
    backend = kwargs.get("backend", "inductor")
    merged = {**_defaults(device), **(options or {})} if backend == "inductor" else options
    return torch.compile(fn, fullgraph=fullgraph, dynamic=dynamic, options=merged, **kwargs)


def readable(*tensors: torch.Tensor) -> bool:
    """Whether Python may read these tensors' values and branch on them: plain eager tensors, with
    nothing tracing (dynamo, ``torch.jit.trace``, a dispatch mode such as ``make_fx``'s) and no
    ``torch.func`` transform wrapping them (vmap, grad). Pure code uses it to skip work whose
    result is known (an auto-reset when no episode ended) where a traced program would have to
    keep both branches; the results are the same either way."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or _get_current_dispatch_mode() is not None:
        return False
    return all(
        type(t) is torch.Tensor and not torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors
    )


def named(name: str, fn: Callable) -> Callable:
    """A wrapper with its own code object: dynamo caches and counts recompiles per code object.

    The wrapper lives in a module of its own (``frl._compiled.<name>``, registered in
    ``sys.modules``): dynamo's precompile cache (warm starts, :mod:`frl.driver.warm`) installs a
    loaded graph into the module of the function it was saved for.
    """
    module = types.ModuleType(f"frl._compiled.{name}")
    module.__dict__["_fn"] = fn
    source = f"def {name}(*args):\n    return _fn(*args)\n"
    # A source file that ``inspect.getsourcefile`` finds (through linecache): torch < 2.13 routes a
    # function without one through dynamo's shared ``wrap_inline`` frame, so every wrapper shared
    # one code cache - each unit counted as a recompile of the others (8 units hit the recompile
    # limit and ran eager) and dynamo 2.11 crashed building a guard on the 4th (measured, H200).
    filename = f"<frl._compiled.{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(builtins.compile(source, filename, "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    return module.__dict__[name]


def _functorch_primitives() -> tuple[Callable, Callable, Callable] | None:
    try:
        from torch._functorch.vmap import (
            _add_batch_dim,
            _remove_batch_dim,
            lazy_load_decompositions,
            vmap_increment_nesting,
        )
    except ImportError:  # a torch without them: torch.func.vmap
        return None
    lazy_load_decompositions()  # what torch.func.vmap loads on its first call
    return _add_batch_dim, _remove_batch_dim, vmap_increment_nesting


def vmap_leaves(fn: Callable[..., Any]) -> Callable[..., tuple[list[torch.Tensor], ...]]:
    """``torch.func.vmap(fn)`` over dim 0 of every argument, for ``fn(*tensors)`` returning a tuple
    of lists of tensors (each output gets the batch dim first).

    The batch dim is added to each argument and removed from each output with functorch's own
    primitives (what ``torch.func.vmap`` calls after its pytree handling): dynamo traced
    ``torch.func.vmap`` over 80 tensors in ~5 s and this in ~0.5 s (the same graph). Where
    those primitives are missing, ``torch.func.vmap``.
    """
    primitives = _functorch_primitives()
    if primitives is None:
        vmapped = torch.func.vmap(fn)
        return lambda *xs: tuple(list(group) for group in vmapped(*xs))
    add_batch_dim, remove_batch_dim, increment_nesting = primitives

    def batched(*xs: torch.Tensor) -> tuple[list[torch.Tensor], ...]:
        size = xs[0].shape[0]
        for i, x in enumerate(xs):
            if x.dim() == 0 or x.shape[0] != size:
                raise ValueError(
                    f"vmap_leaves: argument {i} has shape {list(x.shape)}; every argument needs the "
                    f"batch dim {size} first"
                )
        with increment_nesting(size, "error") as level:
            outs = fn(*[add_batch_dim(x, 0, level) for x in xs])
            return tuple([remove_batch_dim(y, level, size, 0) for y in group] for group in outs)

    return batched


def scan(
    body: Callable[[Any], tuple[Any, Any]], carry: Any, length: int, in_graph: bool = True
) -> tuple[Any, Any]:
    """``length`` steps of ``carry, y = body(carry)``: the last carry and the ``y`` of every step,
    stacked on a new leading dim (``[length, ...]`` per leaf).

    Run eagerly (also under ``vmap``) it is a Python loop. Traced by ``torch.compile`` it is
    torch's ``scan`` operator: the body is traced and compiled once and the loop runs inside the
    graph, so a loop of ``length`` steps costs one step's compile time and one call. Inside the
    graph each step writes the carry afresh in row-major order (``scan`` requires the carry's
    strides to stay those of ``init``, which a vmapped key split breaks), and a ``y`` that is an
    input or another output is copied (``scan`` refuses aliased outputs). ``in_graph=False`` unrolls the
    loop in the graph instead (a body torch's ``scan`` cannot compile: see
    ``frl.envs.base.Environment.scannable``).

    Args:
      body: ``body(carry) -> (carry, y)``, pure; ``carry`` keeps its structure, shapes and dtypes.
      carry: a pytree of tensors.
      length: the number of steps (``>= 1``).
    """
    if length < 1:
        raise ValueError(f"scan: `length` must be >= 1, got {length}")
    if not (in_graph and torch.compiler.is_compiling()):
        ys = []
        for _ in range(length):
            carry, y = body(carry)
            ys.append(y)
        eager = not torch.compiler.is_compiling()
        if eager and type(y) is tuple and all(type(x) is torch.Tensor for x in y):  # no pytree walk
            return carry, tuple(torch.stack(column) for column in zip(*ys, strict=True))
        return carry, pytree.tree_map(lambda *xs: torch.stack(xs), *ys)
    from torch._higher_order_ops import scan as torch_scan

    def step(state: Any, _: Any) -> tuple[Any, Any]:
        seen = pytree.tree_leaves(state)
        new, y = body(state)

        def fresh(x: torch.Tensor) -> torch.Tensor:
            x = x.clone() if any(x is s for s in seen) else x
            seen.append(x)
            return x

        new = pytree.tree_map(lambda x: x.clone(memory_format=torch.contiguous_format), new)
        return new, pytree.tree_map(fresh, y)

    device = next(iter(pytree.tree_leaves(carry))).device
    return torch_scan(step, carry, torch.zeros(length, device=device))
