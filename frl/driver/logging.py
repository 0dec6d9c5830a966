"""Run logs (CSV and JSON lines always, TensorBoard when it is installed) and return summaries."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from frl.driver.health import strict_json

__all__ = ["RunLogger", "iqm", "summarize", "write_json"]


def iqm(values: list[float]) -> float:
    """Interquartile mean: the mean of the middle 50 % (Agarwal et al. 2021), robust across seeds.

    With ``n`` values the lowest and highest ``n // 4`` are dropped (n < 4: the plain mean).
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    cut = len(ordered) // 4
    middle = ordered[cut : len(ordered) - cut]
    return sum(middle) / len(middle)


def summarize(values: list[float]) -> dict[str, float]:
    """``mean``, ``std`` (population), ``iqm``, ``min`` and ``max`` of the finite ``values`` (NaN
    when none is finite)."""
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    mean = sum(finite) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / n) if n else math.nan
    return {
        "mean": mean,
        "std": std,
        "iqm": iqm(finite),
        "min": min(finite, default=math.nan),
        "max": max(finite, default=math.nan),
    }


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as strict JSON (non-finite floats as null), written atomically (a temporary
    file in the same folder, then ``os.replace``): ``results.json``, ``failure.json``."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(strict_json(payload), indent=2, allow_nan=False) + "\n")
    os.replace(partial, path)


class RunLogger:
    """Appends one row per log point to ``metrics.csv`` and ``metrics.jsonl`` in ``out_dir``."""

    def __init__(self, out_dir: str | Path | None, tensorboard: bool = True) -> None:
        self.out_dir = None if out_dir is None else Path(out_dir)
        self._csv_keys: list[str] | None = None
        self._tb = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:  # tensorboard is optional
                    SummaryWriter = None
                if SummaryWriter is not None:
                    self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))

    def restart(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite the CSV and JSONL logs to hold exactly ``rows`` (a resumed run's history up to
        its checkpoint: rows logged after it by the interrupted run would otherwise repeat)."""
        if self.out_dir is None:
            return
        for name in ("metrics.jsonl", "metrics.csv"):
            (self.out_dir / name).unlink(missing_ok=True)
        self._csv_keys = None
        tb, self._tb = self._tb, None  # TensorBoard keeps its own event history
        try:
            for row in rows:
                self.log(row)
        finally:
            self._tb = tb

    def log(self, row: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        with (self.out_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(strict_json(row), allow_nan=False) + "\n")
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float))}
        path = self.out_dir / "metrics.csv"
        if self._csv_keys is None:
            self._csv_keys = list(scalars)
            if not path.exists():
                with path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._csv_keys)
        new_keys = [k for k in scalars if k not in self._csv_keys]
        if new_keys:  # a metric that starts later (an off-policy loss): widen the header once
            self._widen_csv(path, new_keys)
        with path.open("a", newline="") as f:
            csv.writer(f).writerow([scalars.get(k, "") for k in self._csv_keys])
        if self._tb is not None:
            step = int(row.get("env_steps", 0))
            for k, v in scalars.items():
                if k != "env_steps":
                    self._tb.add_scalar(k, v, step)

    def _widen_csv(self, path: Path, new_keys: list[str]) -> None:
        """Rewrite ``metrics.csv`` with ``new_keys`` appended to its header (empty in old rows)."""
        with path.open(newline="") as f:
            old_rows = list(csv.reader(f))[1:]
        self._csv_keys = [*self._csv_keys, *new_keys]
        partial = path.with_suffix(".csv.tmp")
        with partial.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(self._csv_keys)
            writer.writerows(r + [""] * len(new_keys) for r in old_rows)
        partial.replace(path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
