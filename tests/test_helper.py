"""The compile helper (frl.driver.helper): when it is used, what a failed child tells the run,
and that a run stopping early leaves no child behind. Its compiled path (a forked child
compiling PPO's update for the run) is covered by tests/test_warm.py."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import pytest
import torch
from tensordict import TensorDict
from torch.utils import _pytree as pytree

from frl.driver import helper as helper_module
from frl.driver.compiled import CompiledUnit
from frl.driver.helper import CompileHelper
from frl.driver.warm import WarmStart


def _state() -> tuple[list[torch.Tensor], pytree.TreeSpec]:
    return pytree.tree_flatten(TensorDict({"w": torch.ones(3)}, batch_size=[]))


def test_it_is_wanted_on_two_cpu_cores_only(monkeypatch):
    leaves, _ = _state()
    monkeypatch.setattr(helper_module, "_cores", lambda: 2)
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert CompileHelper.wanted(leaves)
    monkeypatch.setitem(sys.modules, "jax", object())  # JAX's threads: no fork
    assert not CompileHelper.wanted(leaves)
    monkeypatch.delitem(sys.modules, "jax")
    assert not CompileHelper.wanted([*leaves, torch.empty(2, device="meta")])  # not on the CPU
    monkeypatch.setenv("FRL_COMPILE_HELPER", "0")
    assert not CompileHelper.wanted(leaves)
    monkeypatch.delenv("FRL_COMPILE_HELPER")
    monkeypatch.setattr(helper_module, "_cores", lambda: 1)  # a run pinned to one core
    assert not CompileHelper.wanted(leaves)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # a worker that imported JAX
def test_a_failed_child_is_reported_and_the_run_compiles_the_unit_itself(tmp_path):
    def broken(state):
        raise ValueError("no such leaf 'w2'")

    unit = CompiledUnit("update", broken, batched=False, compiled=True)
    leaves, spec = _state()
    helper = CompileHelper.start(WarmStart("key", tmp_path), leaves, spec, unit)
    assert unit.before_build == helper.wait  # the unit's first call waits for the child
    with pytest.warns(UserWarning, match=r"compile helper for 'update' failed \(ValueError: no such leaf"):
        helper.wait()
    assert helper.artifacts is None and unit.before_build is None
    assert list(tmp_path.iterdir()) == []  # nothing left in the warm-start folder


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # a worker that imported JAX
def test_closing_ends_a_child_the_run_never_waited_for(tmp_path):
    def slow(state):
        time.sleep(60)
        return state, {}

    unit = CompiledUnit("update", slow, batched=False, compiled=True)
    leaves, spec = _state()
    helper = CompileHelper.start(WarmStart("key", tmp_path), leaves, spec, unit)
    pid, start = helper.pid, time.perf_counter()
    helper.close()
    assert time.perf_counter() - start < 10
    with pytest.raises(ChildProcessError):  # killed and reaped
        os.waitpid(pid, os.WNOHANG)
    assert unit.before_build is None and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # a worker that imported JAX
def test_a_ctrl_c_leaves_the_child_compiling(tmp_path):
    """The run stops after its first iteration, which waits for the child: a SIGINT or SIGTERM
    that reaches the child's process group must not kill it (the run would compile it again)."""
    import signal

    def compiles_then_fails(state):
        time.sleep(1.0)
        raise ValueError("reached the end")

    unit = CompiledUnit("update", compiles_then_fails, batched=False, compiled=True)
    leaves, spec = _state()
    helper = CompileHelper.start(WarmStart("key", tmp_path), leaves, spec, unit)
    time.sleep(0.3)
    os.kill(helper.pid, signal.SIGINT)
    os.kill(helper.pid, signal.SIGTERM)
    with pytest.warns(UserWarning, match=r"failed \(ValueError: reached the end\)"):  # not a signal
        helper.wait()


_ORPHAN = """
import os, sys, time
from tensordict import TensorDict
from torch.utils import _pytree as pytree
from frl.driver.compiled import CompiledUnit
from frl.driver.helper import CompileHelper
from frl.driver.warm import WarmStart

def slow(state):
    time.sleep(120)
    return state, {}

leaves, spec = pytree.tree_flatten(TensorDict({"w": __import__("torch").ones(3)}, batch_size=[]))
unit = CompiledUnit("update", slow, batched=False, compiled=True)
from pathlib import Path
helper = CompileHelper.start(WarmStart("key", Path(sys.argv[1])), leaves, spec, unit)
print(helper.pid, flush=True)
time.sleep(0.5)
os._exit(0)  # the run ends without closing its helper (as a kill -9 would)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_dies_with_the_run(tmp_path):
    import subprocess
    from pathlib import Path

    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN)
    command = [sys.executable, str(script), str(tmp_path / "warm")]
    with open(tmp_path / "out", "w") as out:  # a file, not a pipe: the child would hold it open
        assert subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode == 0
    pid = int((tmp_path / "out").read_text().split()[0])
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + 10
    try:
        while status.exists() and "zombie" not in status.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not status.exists() or "zombie" in status.read_text()  # gone (or dead, not yet reaped)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
