"""``frl sweep ALGO --grid FIELD=V1,V2 ...``: a grid of configs, each on many seeds (vmapped), over
local processes or Ray (:mod:`frl.distributed.sweep`)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from frl.cli.common import UsageError, build_train, check_out, check_positive, parse_value

__all__ = ["add_parser", "cmd_sweep"]


def add_parser(sub: Any) -> None:
    """Register ``frl sweep`` on the ``frl`` command's subparsers."""
    sweep = sub.add_parser("sweep", help="a grid of configs, each on many seeds, over processes or Ray")
    sweep.add_argument("algo")
    sweep.add_argument("--env", default="CartPole-v1")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="a Config field and its values (repeat for more fields; the grid is their product)",
    )
    sweep.add_argument("--seeds", type=int, default=4, help="seeds per point, trained vmapped")
    sweep.add_argument("--steps", type=int, default=None, help="environment steps per seed")
    sweep.add_argument("--nproc", type=int, default=1, help="points trained at once (processes or Ray CPUs)")
    sweep.add_argument("--backend", choices=("local", "ray"), default="local")
    sweep.add_argument(
        "--ray-address", default=None, help="a Ray cluster (default: a local Ray on 127.0.0.1)"
    )
    sweep.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    sweep.add_argument("--eval-episodes", type=int, default=10)
    sweep.add_argument("--out", default=None, help="folder for one run folder per point and sweep.json")


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep (every point of the grid on many seeds) and print its table; the exit code."""
    from frl.algos import get
    from frl.distributed.sweep import format_results, sweep

    check_out("--out", args.out)
    try:
        config_cls = get(args.algo).config
    except ValueError as err:
        raise UsageError(str(err)) from None
    defaults = config_cls()
    fields = {f.name for f in dataclasses.fields(config_cls)}
    space: dict[str, list[Any]] = {}
    for item in args.grid:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise UsageError(f"--grid {item!r}: expected FIELD=V1,V2,...")
        if name not in fields or name in ("env_id", "total_timesteps"):
            raise UsageError(
                f"--grid {name}: not a field to sweep of {args.algo}.Config; fields: {', '.join(fields)}"
            )
        if name in space:
            raise UsageError(f"--grid {name}: given twice")
        space[name] = [parse_value(name, v, getattr(defaults, name), "--grid ") for v in values.split(",")]
    check_positive(args, "--seeds", "--nproc", "--eval-episodes", "--steps")
    build_train(args.algo, args.env, args.steps, {})  # validates the algorithm on the environment
    for name, values in space.items():  # every value is checked by its field before anything runs
        for value in values:
            try:
                config_cls(**{name: value})
            except (ValueError, TypeError) as err:
                raise UsageError(str(err)) from None
    start = time.perf_counter()
    try:
        results = sweep(
            args.algo,
            args.env,
            space,
            seeds=args.seeds,
            total_steps=args.steps,
            nproc=args.nproc,
            backend=args.backend,
            compile=args.compile,
            eval_episodes=args.eval_episodes,
            out_dir=args.out,
            ray_address=args.ray_address,
        )
    except ImportError as err:
        raise UsageError(str(err)) from None
    where = f"{args.backend}, {args.nproc} at once"
    print(f"\n{args.algo} on {args.env}: {len(results)} points x {args.seeds} seeds ({where})")
    for line in format_results(results):
        print(line)
    print(f"wall {time.perf_counter() - start:.1f} s")
    if args.out is not None:
        print(f"wrote {Path(args.out) / 'sweep.json'}")
    return 0
