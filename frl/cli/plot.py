"""``frl plot RUN [RUN ...]``: learning curves of runs, mean and 95% bootstrap band per run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from frl.cli.common import UsageError

__all__ = ["add_parser", "cmd_plot"]


def add_parser(sub: Any) -> None:
    """Register ``frl plot`` on the ``frl`` command's subparsers."""
    plot = sub.add_parser("plot", help="learning curves of runs")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("-o", "--output", default="curves.png")
    plot.add_argument("--band", choices=("bootstrap", "iqm"), default="bootstrap")


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw the evaluation curves of run folders into one PNG; the exit code."""
    from frl.plot import plot_runs

    for run_dir in args.run_dirs:
        if not (Path(run_dir) / "metrics.jsonl").exists():
            raise UsageError(f"{run_dir} has no metrics.jsonl (train with --out first)")
    try:
        path = plot_runs([Path(d) for d in args.run_dirs], Path(args.output), band=args.band)
    except ImportError:
        raise UsageError("frl plot needs matplotlib: pip install 'frl[plot]'") from None
    except ValueError as err:  # a run without evaluations
        raise UsageError(str(err)) from None
    except OSError as err:  # the output cannot be written
        raise UsageError(f"-o {args.output}: {err.strerror or err}") from None
    print(f"wrote {path}")
    return 0
