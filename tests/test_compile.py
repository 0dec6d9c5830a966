"""frl.compile's defaults: which Inductor options a graph gets for where it runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import frl
from frl._compile import CPU_OPTIONS, INDUCTOR_OPTIONS
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
    for name, value in INDUCTOR_OPTIONS.items():
        assert options[name] == value


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
