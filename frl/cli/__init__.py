"""The ``frl`` command line: one module per command.

::

    frl train ppo --env CartPole-v1 --seeds 8 --steps 500000 --out runs/ppo   # frl.cli.train
    frl eval runs/ppo                                                        # frl.cli.evaluate
    frl list                                                                 # frl.cli.listing
    frl plot runs/ppo runs/dqn -o curves.png                                 # frl.cli.plot
    frl sweep ppo --grid learning_rate=1e-3,2.5e-4 --seeds 4 --nproc 2       # frl.cli.sweep
    frl llm pretrain --task addition --out runs/lm                           # frl.cli.llm
    frl check-env gym:Pendulum-v1                                            # frl.cli.check_env
    frl maml --seeds 2                                                       # frl.cli.maml
    frl bench classic --seeds 8                                              # frl.cli.bench
    frl --version                                                            # frl, torch, the random kernel

A bad input prints one ``frl: error: ...`` line naming the problem and the valid choices, and
exits with code 2 (nothing written).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from frl import launch
from frl.cli import bench, check_env, evaluate, listing, llm, maml, plot, sweep, train
from frl.cli.common import Parser, RunFailed, UsageError

__all__ = ["main", "version_line"]

COMMANDS = {
    "train": train.cmd_train,
    "eval": evaluate.cmd_eval,
    "list": listing.cmd_list,
    "plot": plot.cmd_plot,
    "sweep": sweep.cmd_sweep,
    "llm": llm.cmd_llm,
    "check-env": check_env.cmd_check_env,
    "maml": maml.cmd_maml,
    "bench": bench.cmd_bench,
}


def _parser() -> Parser:
    parser = Parser(prog="frl", description="Functional reinforcement learning on torch.")
    parser.add_argument("--version", action="store_true", help="versions (frl, torch) and the random kernel")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for module in (train, evaluate, listing, plot, sweep, check_env, maml, bench):
        module.add_parser(sub)
    llm.add_llm_parser(sub)
    return parser


def version_line() -> str:
    """``frl X.Y.Z (torch A.B.C, threefry: extension|jit|numpy, malloc tcache: N|default)``: what
    ``frl --version`` prints (the tcache count glibc runs with, see :mod:`frl.launch`)."""
    import torch

    import frl
    from frl.random import native_backend

    tcache = launch.tuned() or "default"
    return (
        f"frl {frl.__version__} (torch {torch.__version__}, threefry: {native_backend()}, "
        f"malloc tcache: {tcache})"
    )


def _started_as_the_command() -> bool:
    """Whether this process was started as the ``frl`` command (its console script, or ``python -m
    frl.cli``): the only processes :func:`main` starts again (a script of yours that calls it would
    run its own code twice)."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return path is not None and (path.name == "frl" or path.parts[-3:] == ("frl", "cli", "__main__.py"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``frl`` command on ``argv`` (default ``sys.argv[1:]``; the command itself first starts
    again in :func:`frl.launch.environ`); the exit code (2: a usage error, reported on one line)."""
    if argv is None and _started_as_the_command():
        launch.restart_tuned()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = _parser().parse_known_args(argv)
        if args.version:
            print(version_line())
            return 0
        if args.command is None:
            raise UsageError(f"choose a command: {', '.join(COMMANDS)} (frl COMMAND --help)")
        if args.command in ("train", "maml"):  # they take --config.FIELD VALUE pairs
            return COMMANDS[args.command](args, extra)
        if extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        return COMMANDS[args.command](args)
    except (UsageError, llm.LLMUsageError) as err:
        print(f"frl: error: {err}", file=sys.stderr)
        return 2
    except RunFailed as err:  # the run itself failed (a non-finite value): not a usage error
        print(f"frl: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C (the first stops a run after its iteration)
        print("frl: interrupted at once: nothing saved since the last checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`frl list | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 141
