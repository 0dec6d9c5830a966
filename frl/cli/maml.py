"""``frl maml``: MAML on 2-D point navigation (``frl.algos.maml``) against the baseline pretrained
on the same tasks, each seed evaluated on new goals after 0 to ``--eval-steps`` inner steps.

    frl maml --seeds 2 --out runs/maml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from frl.cli.common import UsageError, check_out, check_positive, config_overrides

__all__ = ["add_parser", "cmd_maml"]


def add_parser(sub: Any) -> None:
    """Register ``frl maml`` on the ``frl`` command's subparsers."""
    maml = sub.add_parser("maml", help="MAML on 2-D navigation, against pretraining and fine-tuning")
    maml.add_argument("--seeds", type=int, default=2)
    maml.add_argument("--iterations", type=int, default=None, help="meta-iterations (default: the config's)")
    maml.add_argument("--eval-steps", type=int, default=3, help="inner steps measured on new goals")
    maml.add_argument("--out", default=None, help="a folder for results.json")


def cmd_maml(args: argparse.Namespace, extra: list[str]) -> int:
    """``extra``: ``--config.FIELD VALUE`` pairs for ``maml.Config`` (as ``frl train``'s)."""
    from frl import random
    from frl.algos import maml

    check_positive(args, "--seeds", "--iterations", "--eval-steps")
    check_out("--out", args.out)
    overrides = config_overrides(maml.Config, extra)
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    try:
        config = maml.Config(**overrides)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None
    rows = []
    print(f"maml on PointNavigation-v0: {args.seeds} seeds x {config.iterations} meta-iterations")
    print("seed  method       return after 0.." + str(args.eval_steps) + " inner steps")
    for seed in range(args.seeds):
        key = random.key(10_000 + seed)
        for method, fit in (("maml", maml.meta_train), ("pretrained", maml.pretrain)):
            params, _ = fit(config, seed)
            curve = maml.adaptation_returns(config, params, key, steps=args.eval_steps).tolist()
            rows.append({"seed": seed, "method": method, "returns": curve})
            print(f"{seed:>4}  {method:<11}  " + "  ".join(f"{r:8.2f}" for r in curve))
    for method in ("maml", "pretrained"):
        curves = [r["returns"] for r in rows if r["method"] == method]
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(len(curves[0]))]
        print(f"mean  {method:<11}  " + "  ".join(f"{r:8.2f}" for r in mean))
    if any(not math.isfinite(x) for r in rows for x in r["returns"]):
        print(
            "frl: error: a non-finite return (the inner step diverged): lower inner_lr or set inner_max_norm"
        )
        return 1
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"config": dataclasses.asdict(config), "rows": rows}
        (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out / 'results.json'}")
    return 0
