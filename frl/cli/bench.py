"""``frl bench SUITE``: a benchmark suite (algorithms x tasks x seeds) into one folder with a report;
``frl bench compare A B``: is B worse than A, per task and in aggregate; ``frl bench report DIR``:
rebuild a folder's report (:mod:`frl.bench`)."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from frl.cli.common import RunFailed, UsageError, check_out, check_positive, parse_value

__all__ = ["add_parser", "cmd_bench"]


def add_parser(sub: Any) -> None:
    """Register ``frl bench`` on the ``frl`` command's subparsers."""
    bench = sub.add_parser(
        "bench",
        help="a benchmark suite with a report (frl bench classic), or compare two (frl bench compare A B)",
        description="frl bench SUITE | frl bench compare A B | frl bench report DIR",
    )
    bench.add_argument("target", nargs="+", metavar="SUITE | compare A B | report DIR")
    bench.add_argument("--seeds", type=int, default=8, help="seeds per cell, trained vmapped")
    bench.add_argument("--first-seed", type=int, default=0, help="the seeds are FIRST .. FIRST+N-1")
    bench.add_argument("--out", default=None, help="the bench folder (default runs/bench/SUITE)")
    bench.add_argument("--nproc", type=int, default=2, help="cells trained at once (processes or Ray CPUs)")
    bench.add_argument("--backend", choices=("local", "ray"), default="local")
    bench.add_argument("--ray-address", default=None)
    bench.add_argument("--scale", type=float, default=1.0, help="multiply every task's budget")
    bench.add_argument("--algos", default=None, help="only these algorithms (comma-separated)")
    bench.add_argument("--envs", default=None, help="only these environments (comma-separated)")
    bench.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ALGO.FIELD=VALUE",
        help="override a Config field of one algorithm (repeat for more)",
    )
    bench.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    bench.add_argument("--eval-episodes", type=int, default=10)
    bench.add_argument("--eval-points", type=int, default=10, help="evaluations along each run")
    bench.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples of the report")
    bench.add_argument("--tolerance", type=float, default=0.05, help="compare: normalised drop to flag")


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    from frl.algos import get

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        algo, dot, name = target.partition(".")
        if not sep or not dot or not value or not name:
            raise UsageError(f"--set {item!r}: expected ALGO.FIELD=VALUE (e.g. ppo.learning_rate=0.001)")
        try:
            config_cls = get(algo).config
        except ValueError as err:
            raise UsageError(f"--set {item!r}: {err}") from None
        default = getattr(config_cls(), name, None)
        if not hasattr(config_cls(), name):
            raise UsageError(f"--set {item!r}: {algo}.Config has no field {name!r}")
        out.setdefault(algo, {})[name] = parse_value(name, value, default, "--set ")
    return out


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(x for x in text.split(",") if x)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run ``frl bench SUITE``, ``frl bench compare A B`` or ``frl bench report DIR``; the exit
    code (1: a regression, or failed cells)."""
    target = args.target
    if target[0] == "compare":
        if len(target) != 3:
            raise UsageError(
                "frl bench compare A B: give two bench folders (A the baseline, B the candidate)"
            )
        return _compare(Path(target[1]), Path(target[2]), args)
    if target[0] == "report":
        if len(target) != 2:
            raise UsageError("frl bench report DIR: give one bench folder")
        return _report(Path(target[1]), args)
    if len(target) != 1:
        raise UsageError(f"frl bench SUITE takes one suite, got {' '.join(target)}")
    return _run(target[0], args)


def _report(folder: Path, args: argparse.Namespace) -> int:
    from frl.bench.report import write_report

    if not (folder / "manifest.json").exists():
        raise UsageError(f"{folder}: not a bench folder (no manifest.json)")
    md, html = write_report(folder, reps=args.reps)
    print(f"wrote {md} and {html}")
    return 0


def _compare(a: Path, b: Path, args: argparse.Namespace) -> int:
    from frl.bench.compare import compare, format_comparison

    for folder in (a, b):
        if not (folder / "manifest.json").exists():
            raise UsageError(f"{folder}: not a bench folder (no manifest.json)")
    try:
        result = compare(a, b, reps=min(args.reps, 20_000), tolerance=args.tolerance)
    except ValueError as err:
        raise UsageError(str(err)) from None
    for line in format_comparison(result):
        print(line)
    return 1 if result["regressions"] else 0


def _stop(number: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(suite_name: str, args: argparse.Namespace) -> int:
    import torch

    from frl.bench.runner import BenchSettings, run_suite, seeds_of
    from frl.bench.suites import get_suite
    from frl.cli.folder import hold

    try:
        suite = get_suite(suite_name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    check_positive(args, "--seeds", "--nproc", "--eval-episodes", "--eval-points", "--reps")
    if args.first_seed < 0:
        raise UsageError(f"--first-seed must be >= 0, got {args.first_seed}")
    if not args.scale > 0:
        raise UsageError(f"--scale must be positive, got {args.scale}")
    if "cuda" in suite.needs and not torch.cuda.is_available():
        raise UsageError(f"suite {suite.name} runs on a GPU only; torch.cuda.is_available() is False here")
    if "mujoco" in suite.needs:
        try:
            import mujoco  # noqa: F401
        except ImportError:
            raise UsageError(f"suite {suite.name} needs MuJoCo: pip install 'frl[bench]'") from None
    out = Path(args.out) if args.out is not None else Path("runs") / "bench" / suite.name
    check_out("--out", str(out))
    settings = BenchSettings(
        suite=suite.name,
        seeds=seeds_of(args.seeds, args.first_seed),
        scale=args.scale,
        eval_points=args.eval_points,
        eval_episodes=args.eval_episodes,
        compile=args.compile,
        overrides=_overrides(args.set),
        algos=_names(args.algos),
        envs=_names(args.envs),
    )
    start = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _stop)  # SIGTERM stops the cells as Ctrl-C does
    with hold(out):
        try:
            manifest = run_suite(
                suite,
                out,
                settings,
                nproc=args.nproc,
                backend=args.backend,
                ray_address=args.ray_address,
                log=lambda line: print(line, flush=True),
            )
        except (ValueError, ImportError) as err:
            raise UsageError(str(err)) from None
        except KeyboardInterrupt:
            raise RunFailed(
                f"interrupted; the finished cells are kept in {out}: rerun the same command to resume"
            ) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
    print(f"{suite.name}: wall {time.perf_counter() - start:.0f} s")
    from frl.bench.report import write_report

    md, html = write_report(out, reps=args.reps)
    print(f"wrote {md} and {html}")
    if manifest["failed"]:
        raise RunFailed(
            f"{len(manifest['failed'])} cells failed ({', '.join(manifest['failed'])}): see their "
            "error.json; rerun the same command to retry them"
        )
    return 0
