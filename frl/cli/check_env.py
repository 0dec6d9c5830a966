"""``frl check-env ENV``: run an environment with random actions and report contract problems."""

from __future__ import annotations

import argparse
from typing import Any

from frl.cli.common import UsageError, check_positive

__all__ = ["add_parser", "cmd_check_env"]


def add_parser(sub: Any) -> None:
    """Register ``frl check-env`` on the ``frl`` command's subparsers."""
    check = sub.add_parser(
        "check-env",
        help="run an environment with random actions and report contract problems",
        description="shapes, dtypes, bounds, non-finite values, terminated vs truncated, determinism",
    )
    check.add_argument("env", help="an id of `frl list`, gym:<id> or gym:<module>:<id>")
    check.add_argument("--steps", type=int, default=500)
    check.add_argument("--seed", type=int, default=0)


def cmd_check_env(args: argparse.Namespace) -> int:
    """Prints each problem (exit code 1) or that none was found (0)."""
    check_positive(args, "--steps")
    from frl import envs
    from frl.envs.check import check

    try:
        env = envs.make(args.env)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    problems = check(env, steps=args.steps, seed=args.seed)
    for problem in problems:
        print(f"{args.env}: {problem}")
    if not problems:
        print(f"{args.env}: no problem found in {args.steps} random steps from seed {args.seed}")
    return 1 if problems else 0
