"""frl.compile's defaults: which Inductor options a graph gets for where it runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import frl
from frl._compile import CACHEABLE_LOOPS, CPU_OPTIONS, INDUCTOR_OPTIONS, scan, vmap_leaves
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
    assert options_seen == [
        {**INDUCTOR_OPTIONS, **CPU_OPTIONS, "cpp_wrapper": False, "realize_opcount_threshold": 30}
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
