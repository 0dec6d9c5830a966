"""frl.compile's defaults: which Inductor options a graph gets for where it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import frl
from frl._compile import CACHEABLE_LOOPS, CPU_OPTIONS, INDUCTOR_OPTIONS, scan, vmap_leaves
from frl._inductor import post_grad_pass
from frl.driver.compiled import graph_device


@pytest.fixture
def options_seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``options`` dict that ``frl.compile`` hands to ``torch.compile`` (nothing compiles)."""
    seen: list[dict[str, Any]] = []

    def fake_compile(fn: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["options"])
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    return seen


@pytest.mark.parametrize(
    ("device", "cuda", "cpp_wrapper"),
    [
        ("cpu", True, True),
        (torch.device("cpu"), False, True),
        ("cuda", False, None),
        ("cuda:1", True, None),
        (None, False, True),  # no CUDA: every graph runs on the CPU
        (None, True, None),  # unknown on a CUDA machine: Inductor's own default
    ],
)
def test_cpu_graphs_get_the_cpp_wrapper_and_others_keep_inductors_default(
    options_seen: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    device: Any,
    cuda: bool,
    cpp_wrapper: Any,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    frl.compile(lambda x: x, device=device)
    (options,) = options_seen
    assert options.get("cpp_wrapper") == cpp_wrapper
    assert options.get("cpp_wrapper_build_separate") == cpp_wrapper  # the wrapper at -O1 beside it
    assert options.get("cpp.use_decompose_tanh") == cpp_wrapper  # an option inside Inductor's `cpp`
    for name, value in INDUCTOR_OPTIONS.items():
        assert options[name] == value


@pytest.mark.compile
def test_compiled_tanh_stays_within_2e_7_of_eager_with_its_gradient() -> None:
    """The CPU graphs' decomposed tanh (``CPU_OPTIONS``) over every range a network meets,
    infinities and NaN included, on the vectorised path and the scalar tail (length 10,013)."""
    extremes = [0.0, -0.0, 1e-30, -1e-6, 1e-4, 9.0, -9.0, 89.0, -89.0, 1e4, float("inf"), float("-inf")]
    x = torch.cat([torch.linspace(-30.0, 30.0, 10_000), torch.tensor(extremes)])
    x = torch.cat([x, torch.tensor([float("nan")])])

    def value_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(x), torch.func.grad(lambda x: torch.tanh(x).sum())(x)

    value, grad = frl.compile(value_and_grad, device="cpu")(x)
    exact = torch.tanh(x)
    torch.testing.assert_close(value, exact, rtol=0.0, atol=2e-7, equal_nan=True)
    torch.testing.assert_close(grad, 1.0 - exact**2, rtol=0.0, atol=4e-7, equal_nan=True)
    assert torch.equal(value[-6:-1], exact[-6:-1])  # exactly +-1 from |x| = 89 on, as torch.tanh


def test_a_callers_options_win_over_the_defaults(options_seen: list[dict[str, Any]]) -> None:
    frl.compile(lambda x: x, device="cpu", options={"cpp_wrapper": False, "realize_opcount_threshold": 30})
    frl_pass = {"post_grad_custom_post_pass": post_grad_pass()}  # frl's rewrite (test_inductor.py)
    assert options_seen == [
        {**INDUCTOR_OPTIONS, **CPU_OPTIONS, **frl_pass, "cpp_wrapper": False, "realize_opcount_threshold": 30}
    ]


def test_another_backend_gets_only_the_callers_options(options_seen: list[dict[str, Any]]) -> None:
    frl.compile(lambda x: x, device="cpu", backend="eager")
    assert options_seen == [None]


def test_a_graph_runs_where_its_first_non_cpu_leaf_lives() -> None:
    cpu, meta = torch.zeros(2), torch.zeros(2, device="meta")
    assert graph_device([cpu, cpu]) == torch.device("cpu")
    assert graph_device([cpu, meta, cpu]) == torch.device("meta")
    assert graph_device([]) == torch.device("cpu")


def _walk(key: torch.Tensor, x: torch.Tensor, scale: torch.Tensor):
    """A loop whose body passes ``scale`` through unchanged and returns one tensor twice."""

    def body(carry):
        key, x, scale = carry
        key, k = frl.random.split(key)
        x = x * scale + frl.random.uniform(k, x.shape)
        return (key, x, scale), (x, x)

    return scan(body, (key, x, scale), 6)


def test_scan_is_a_python_loop_when_eager_and_stacks_the_steps() -> None:
    key, x, scale = frl.random.key(3), torch.zeros(3), torch.tensor(0.5)
    (_, last, kept), (xs, again) = _walk(key, x, scale)
    assert xs.shape == (6, 3) and torch.equal(xs, again) and torch.equal(xs[-1], last)
    assert kept is scale
    _, k1 = frl.random.split(key)  # the first step by hand
    torch.testing.assert_close(xs[0], x * 0.5 + frl.random.uniform(k1, (3,)))
    with pytest.raises(ValueError, match="`length` must be >= 1"):
        scan(lambda c: (c, c), x, 0)


@pytest.mark.compile
def test_a_compiled_scan_equals_the_eager_loop_also_vmapped() -> None:
    keys, xs, scales = frl.random.split(frl.random.key(0), 4), torch.zeros(4, 3), torch.full((4,), 0.9)

    def batched(k, x, s):
        return torch.func.vmap(_walk)(k, x, s)

    eager = batched(keys, xs, scales)
    compiled = frl.compile(batched)(keys, xs, scales)
    for a, b in zip(torch.utils._pytree.tree_leaves(eager), torch.utils._pytree.tree_leaves(compiled)):
        torch.testing.assert_close(a, b)


def test_graphs_holding_a_loop_may_be_cached() -> None:
    # torch caches no graph with a higher-order operator unless it is listed
    marked = INDUCTOR_OPTIONS["unsafe_marked_cacheable_functions"]
    assert (
        set(marked)
        == set(CACHEABLE_LOOPS)
        == {
            "torch.ops.higher_order.scan",
            "torch.ops.higher_order.while_loop",
        }
    )
    from torch._higher_order_ops.scan import scan_op

    assert f"{scan_op.__module__}.{scan_op.__name__}" in marked


def test_vmap_leaves_equals_torch_func_vmap() -> None:
    xs = [torch.randn(4, 3), torch.randn(4), torch.randn(4, 2, 2)]

    def fn(a, b, c):
        return [a * b, c.sum(-1)], [torch.ones(2), (a.sum() + b).reshape(())]

    mine = vmap_leaves(fn)(*xs)
    theirs = torch.func.vmap(fn)(*xs)
    assert isinstance(mine, tuple) and [len(group) for group in mine] == [2, 2]
    for a, b in zip(
        torch.utils._pytree.tree_leaves(mine), torch.utils._pytree.tree_leaves(theirs), strict=True
    ):
        assert a.shape == b.shape and torch.equal(a, b)  # an output without the batch dim is expanded
    with pytest.raises(ValueError, match="argument 1 has shape \\[3\\]"):
        vmap_leaves(fn)(torch.zeros(4, 3), torch.zeros(3), torch.zeros(4, 2, 2))


class _FakeBuilder:
    def __init__(self, path, log: list[str], exists: bool = False) -> None:
        self.path, self.log = path, log
        if exists:
            path.write_text("built before")

    def get_target_file_path(self) -> str:
        return str(self.path)

    def build(self) -> None:
        self.log.append(f"start {self.path.name}")
        self.path.write_text("built")
        self.log.append(f"end {self.path.name}")


def test_cpp_builds_compile_wrapper_and_kernels_then_link_and_skip_what_exists(tmp_path) -> None:
    from frl._compile import _build_concurrently

    log: list[str] = []
    wrapper, kernels, link = (_FakeBuilder(tmp_path / n, log) for n in ("main.o", "optimized.o", "main.so"))
    _build_concurrently(str(tmp_path / "lock"), (wrapper, kernels, link))
    assert sorted(log[:4]) == sorted(["start main.o", "end main.o", "start optimized.o", "end optimized.o"])
    assert log[4:] == ["start main.so", "end main.so"]
    log.clear()
    _build_concurrently(str(tmp_path / "lock"), (wrapper, kernels, link))  # all there: nothing built
    one = _FakeBuilder(tmp_path / "single.so", log)
    _build_concurrently(str(tmp_path / "lock"), (one,))
    assert log == ["start single.so", "end single.so"]


def test_frl_compile_installs_the_concurrent_cpp_build_on_torch_2_13() -> None:
    import torch._inductor.codecache as codecache

    from frl._compile import _build_concurrently

    frl.compile(lambda x: x + 1)  # installs it, compiles nothing until called
    installed = codecache._worker_compile_cpp is _build_concurrently
    assert installed == torch.__version__.startswith("2.13")


class _HeaderBuilder(_FakeBuilder):
    """A fake C++ builder that includes ``header`` as Inductor's builders include a precompiled one."""

    def __init__(self, path, log: list[str], header: str, exists: bool = False) -> None:
        super().__init__(path, log, exists)
        self._build_option = type("Option", (), {"precompiled_header": header})()


@pytest.fixture
def deferred(tmp_path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """``frl._compile``'s deferred headers in ``tmp_path/headers``, with torch's
    ``_precompile_header`` replaced by a fake that records its calls and makes ``made-<n>.h.gch``."""
    import torch._inductor.codecache as codecache

    import frl._compile as fc

    calls: list[tuple[Any, ...]] = []
    headers = tmp_path / "headers"

    def precompile(header: str, hashable_cmd_line: str, **compile_command: Any) -> str:
        calls.append((header, hashable_cmd_line, compile_command))
        made = headers / f"made-{len(calls)}.h"
        made.write_text(f"#include <{header}>\n")
        (headers / f"made-{len(calls)}.h.gch").write_text("precompiled")
        return str(made)

    monkeypatch.setattr(codecache, "_HEADER_DIR", str(headers))
    monkeypatch.setattr(fc, "_PRECOMPILE_HEADER", precompile)
    monkeypatch.setattr(fc, "_DEFERRED", {})
    monkeypatch.setattr(fc, "_MADE", set())
    return calls


def test_a_loaded_graphs_header_is_precompiled_only_when_something_is_built(tmp_path, deferred) -> None:
    import os

    import frl._compile as fc

    def load_async(header: str, cmd_line: str) -> str:  # the one caller whose work is deferred
        return fc._deferred_header(header, cmd_line, vec_isa="avx2")

    path = load_async("torch/csrc/inductor/cpp_prefix.h", "g++ -O3 -mavx2")
    assert deferred == []  # no preprocessor run for a graph being loaded
    assert os.path.basename(path).startswith("frl-") and path.endswith(".h")
    assert Path(path).read_text() == "#include <torch/csrc/inductor/cpp_prefix.h>\n"
    assert load_async("torch/csrc/inductor/cpp_prefix.h", "g++ -O3 -mavx2") == path
    other = load_async("torch/csrc/inductor/cpp_prefix.h", "g++ -O1 -mavx2")
    assert other != path  # another command line: another precompiled header

    log: list[str] = []
    lock = str(tmp_path / "lock")
    fc._build_concurrently(lock, (_HeaderBuilder(tmp_path / "a.so", log, path, exists=True),))
    assert deferred == [] and log == [] and not os.path.lexists(path + ".gch")  # cached: nothing made

    fc._build_concurrently(lock, (_HeaderBuilder(tmp_path / "b.so", log, path),))
    assert deferred == [("torch/csrc/inductor/cpp_prefix.h", "g++ -O3 -mavx2", {"vec_isa": "avx2"})]
    assert os.readlink(path + ".gch") == str(tmp_path / "headers/made-1.h.gch")  # a link to torch's
    assert log == ["start b.so", "end b.so"]  # built after its header was made
    fc._build_concurrently(lock, (_HeaderBuilder(tmp_path / "c.so", log, path),))
    assert len(deferred) == 1  # made once per process

    direct = fc._deferred_header("torch/x.h", "g++")  # any other caller (AOTInductor) gets torch's own
    assert direct == str(tmp_path / "headers/made-2.h") and len(deferred) == 2


_LOAD_ONE_GRAPH = """
import sys, torch, frl, frl._compile as fc
calls = []
def counted(*args, **kwargs):
    calls.append(args[0])
    return original(*args, **kwargs)
f = frl.compile(lambda x: torch.tanh(x) * 2 + float(sys.argv[1]), device="cpu")  # installs the hooks
original, fc._PRECOMPILE_HEADER = fc._PRECOMPILE_HEADER, counted
y = f(torch.linspace(-1, 1, 5))
torch.testing.assert_close(y, torch.tanh(torch.linspace(-1, 1, 5)) * 2 + float(sys.argv[1]))
print(len(calls), len(fc._DEFERRED))
"""


@pytest.mark.compile
def test_a_process_loading_a_cached_graph_precompiles_no_header(tmp_path) -> None:
    """One new graph (a constant no other run used), compiled in one process and loaded from
    Inductor's cache in the next: the first makes its headers, the second runs no preprocessor."""
    import random
    import subprocess
    import sys

    if not torch.__version__.startswith("2.13"):
        pytest.skip("the deferred header hooks torch 2.13's Inductor")
    script = tmp_path / "load_one_graph.py"
    script.write_text(_LOAD_ONE_GRAPH)
    constant = str(random.Random().random())

    def run() -> list[int]:
        done = subprocess.run([sys.executable, str(script), constant], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return [int(n) for n in done.stdout.split()]

    made, deferred = run()
    assert made >= 1 and deferred >= 1  # built: its deferred headers were made
    assert run() == [0, deferred]  # loaded: the same headers deferred, none made


class _MaskBuilder(_FakeBuilder):
    """A fake builder that records whether SIGINT and SIGTERM are blocked where it builds, and in
    a process it starts (Linux: ``SigBlk`` of ``/proc/<pid>/status``)."""

    def build(self) -> None:
        import signal
        import subprocess

        held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self.log.append(f"thread holds {sorted(s.name for s in held if s.name in ('SIGINT', 'SIGTERM'))}")
        child = subprocess.Popen(["sleep", "5"])
        try:
            blocked = int(Path(f"/proc/{child.pid}/status").read_text().split("SigBlk:")[1].split()[0], 16)
            sigint, sigterm = bool(blocked & 1 << 1), bool(blocked & 1 << 14)
            self.log.append(f"compiler holds SIGINT {sigint} SIGTERM {sigterm}")
        finally:
            child.kill()
            child.wait()
        self.path.write_text("built")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_compilers_keep_running_through_a_ctrl_c_and_the_signal_comes_after(tmp_path) -> None:
    """A Ctrl-C reaches the whole process group: a build holds SIGINT/SIGTERM in its threads and in
    the compilers they start, and a signal sent meanwhile is still handled."""
    import os
    import signal

    from frl._compile import _build_concurrently

    log: list[str] = []
    builders = [_MaskBuilder(tmp_path / n, log) for n in ("main.o", "optimized.o")]
    link = _MaskBuilder(tmp_path / "main.so", log)
    _build_concurrently(str(tmp_path / "lock"), (*builders, link))
    expected = ["thread holds ['SIGINT', 'SIGTERM']", "compiler holds SIGINT True SIGTERM True"] * 3
    assert sorted(log) == sorted(expected)  # the wrapper and the kernels build at once: any order

    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:

        class Interrupted(_FakeBuilder):
            def build(self) -> None:
                os.kill(os.getpid(), signal.SIGINT)  # mid-build (another thread of the process may take it)
                super().build()

        log.clear()
        _build_concurrently(str(tmp_path / "lock"), (Interrupted(tmp_path / "single.so", log),))
        assert log == ["start single.so", "end single.so"]
        assert received == [signal.SIGINT]  # handled, at the latest when the build ended
    finally:
        signal.signal(signal.SIGINT, previous)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the mask is restored
