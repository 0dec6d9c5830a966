"""Shared benchmark plumbing: timing by median of repeats, a printed table, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# Read when Inductor loads: set before torch is imported.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(RESULTS.parent.parent / ".cache" / "inductor"))
os.environ.setdefault("TORCHINDUCTOR_VEC_ISA_OK", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(RESULTS.parent.parent / ".cache" / "torch_extensions"))

import torch

# One intra-op thread, as frl's tests and CLI use (small networks on 2 cores).
torch.set_num_threads(1)


def time_call(fn: Callable[[], Any], *, repeats: int = 7, min_seconds: float = 0.2, warmup: int = 3) -> float:
    """Median seconds per call over ``repeats`` blocks, each long enough to time reliably."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(min_seconds / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in columns]] + [
        [f"{v:.3g}" if isinstance(v, float) else str(v) for v in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for j, row in enumerate(cells):
        print(
            "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, **payload}, indent=2) + "\n")
    return path
