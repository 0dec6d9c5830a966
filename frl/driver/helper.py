"""A second process that compiles a run's last learning unit while the run compiles the others.

A cold compiled run compiles its units one after another as the first iteration reaches them,
on one core: 8 PPO CartPole seeds spent 27.9 s on the update, 16.9 s on the collection, 7.8 s on
the advantages and 7.0 s on the evaluation (AMD EPYC, 2 cores; dynamo's tracing and Inductor's
code generation are single-threaded Python). Where the run may use two cores and has a warm-start
key (:mod:`frl.driver.warm`), :class:`CompileHelper` forks before the first iteration; the child
compiles the last learning unit on the run's initial state (a unit keeps the state's structure
and shapes, :class:`~frl.driver.compiled.CompiledUnit`, so its graph is the one the run needs
after the units before it) under the same warm-start name, saves what it compiled
(``torch.compiler.save_cache_artifacts``) and exits. The run compiles its other units meanwhile
and, when it reaches the last learning unit, waits for the child and loads its artifacts: the
unit's compile is then a warm start (tracing skipped). The graphs and the run's numbers are the
ones a run without the helper gets. If the child fails, the run compiles the unit itself, with a
warning.

The child is forked before anything compiles in the run, so it inherits no compile worker or
lock; it never returns into the caller (``os._exit``), so it writes no log, checkpoint or
progress. It ignores SIGINT and SIGTERM (the run stops after its first iteration, which needs the
child's graph) and is killed when the run ends (``PR_SET_PDEATHSIG`` on Linux). Not used on one
core (``os.sched_getaffinity``), for graphs on an accelerator (no fork after a device runtime
starts), once JAX is imported (its threads), without ``os.fork``, or with ``FRL_COMPILE_HELPER=0``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree

from frl.driver.compiled import CompiledUnit
from frl.driver.warm import WarmStart, load_artifacts

__all__ = ["CompileHelper"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - no affinity API (macOS)
        return os.cpu_count() or 1


class CompileHelper:
    """The forked child compiling ``learn[-1]`` (see the module docstring); :meth:`start` forks,
    the unit's first call waits for it (:attr:`CompiledUnit.before_build`), :meth:`close` ends
    it if the run stopped first.

    Attributes:
      idle: work for the run to do if it reaches the unit before the child is done (the driver
        compiles its evaluation there, by an evaluation whose result it drops); None: just wait.
      artifacts: the child's saved compilation (bytes) once loaded, for the run's warm start to
        keep beside its own; None before, or when the child failed.
    """

    def __init__(self, pid: int, path: Path, unit: CompiledUnit, warm: WarmStart) -> None:
        self.pid, self.path, self.unit, self.warm = pid, path, unit, warm
        self.artifacts: bytes | None = None
        self.idle: Callable[[], Any] | None = None
        unit.before_build = self.wait

    @staticmethod
    def wanted(leaves: list[torch.Tensor]) -> bool:
        """Whether a run over ``leaves`` gains from a helper: two cores, CPU tensors, a fork."""
        if os.environ.get("FRL_COMPILE_HELPER", "1") == "0" or not hasattr(os, "fork"):
            return False
        if "jax" in sys.modules:  # JAX's runtime threads: a fork after them may deadlock (JAX warns)
            return False
        return _cores() >= 2 and all(x.device.type == "cpu" for x in leaves)

    @classmethod
    def start(
        cls, warm: WarmStart, leaves: list[torch.Tensor], spec: pytree.TreeSpec, unit: CompiledUnit
    ) -> CompileHelper:
        """Fork the child compiling ``unit`` on the state's flat ``leaves`` (boundary-ready, as
        the driver keeps them) of structure ``spec``, under ``warm``'s key; what it compiles is
        saved with ``warm``'s compilation (:meth:`WarmStart.add`)."""
        warm.path.parent.mkdir(parents=True, exist_ok=True)
        path = warm.path.with_suffix(f".{os.getpid()}.helper")
        path.unlink(missing_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                # A Ctrl-C asks the run to stop after its first iteration, which loads this
                # child's graph: the child keeps compiling (ignoring it; so do its compilers) and
                # dies with the run instead (a second Ctrl-C, a kill).
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                _die_with(parent)
                _compile(path, leaves, spec, unit)
                code = 0
            except BaseException as err:  # reported by the parent's warning
                with contextlib.suppress(OSError):
                    path.with_suffix(".error").write_text(f"{type(err).__name__}: {err}")
            finally:
                os._exit(code)
        return cls(pid, path, unit, warm)

    def wait(self) -> float:
        """Wait for the child and load its compilation (called once, before the unit compiles).
        While the child is still compiling, first run :attr:`idle` (other compiling the run
        would do later); returns the seconds spent in it, which are not this unit's."""
        self.unit.before_build = None
        if self.pid is None:
            return 0.0
        idle_s = 0.0
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:  # still compiling
            if self.idle is not None:
                start = time.perf_counter()
                self.idle()
                idle_s = time.perf_counter() - start
            _, status = os.waitpid(self.pid, 0)
        self.pid = None
        error = self.path.with_suffix(".error")
        try:
            code = os.waitstatus_to_exitcode(status)
            if code == 0 and self.path.exists():
                data = self.path.read_bytes()
                load_artifacts(data)
                self.warm.add(data)
                self.artifacts = data
            else:
                ended = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                why = error.read_text() if error.exists() else ended
                warnings.warn(
                    f"frl: the compile helper for {self.unit.name!r} failed ({why}); compiling it here",
                    stacklevel=2,
                )
        finally:
            self.path.unlink(missing_ok=True)
            error.unlink(missing_ok=True)
        return idle_s

    def close(self) -> None:
        """End the child if the run did not wait for it (a run stopped before its first update)."""
        self.unit.before_build = None
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = None
        partial = self.path.with_name(self.path.name + ".tmp")  # a write the kill cut short
        for leftover in (self.path, self.path.with_suffix(".error"), partial):
            leftover.unlink(missing_ok=True)


def _die_with(parent: int) -> None:
    """In the child: be killed (SIGKILL) when ``parent`` ends, however it ends (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere the child outlives a killed run until its compile ends)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it ended before the request
        os._exit(1)


def _compile(path: Path, leaves: list[torch.Tensor], spec: pytree.TreeSpec, unit: CompiledUnit) -> None:
    """In the child: ``unit``'s first compiled call; its artifacts written to ``path`` atomically."""
    unit(leaves, spec)
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        raise RuntimeError("nothing was compiled")
    partial = path.with_name(path.name + ".tmp")  # not the run's own partial save (<key>.<pid>.tmp)
    partial.write_bytes(saved[0])
    os.replace(partial, path)
