"""``frl train ALGO``: many seeds at once, compiled, with logs, checkpoints and results.

::

    frl train ppo --env CartPole-v1 --seeds 8 --steps 500000 --out runs/ppo
    frl train sac --env gym:Pendulum-v1 --seeds 4 --out runs/sac-gym     # any gymnasium id
    frl train ppo --seeds 8 --nproc 2                                   # seeds sharded over 2 processes

Everything (algorithm, environment, action type, counts, config fields) is validated before
anything is written. ``--out DIR`` receives ``config.json``, the logs (``metrics.csv``,
``metrics.jsonl``), ``checkpoint.pt`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frl.cli import folder
from frl.cli.common import (
    RunFailed,
    UsageError,
    build_train,
    check_out,
    check_positive,
    config_overrides,
    env_overrides,
    results_table,
    split_overrides,
)

__all__ = ["ALGORITHM_NAMES", "add_parser", "cmd_train"]

ALGORITHM_NAMES = (
    "a2c",
    "dqn",
    "ippo",
    "mappo",
    "ppo",
    "ppo_icm",
    "ppo_rnd",
    "qmix",
    "recurrent_ppo",
    "reinforce",
    "sac",
    "slateq",
    "tabular",
    "vdn",
)
"""The registered algorithms, named in ``--help`` without importing torch (a test keeps this equal
to :data:`frl.algos.AGENTS`)."""


def add_parser(sub: Any) -> None:
    """Register ``frl train`` on the ``frl`` command's subparsers."""
    train = sub.add_parser(
        "train",
        help="train an agent on many seeds at once",
        description=(
            "extra options --config.FIELD VALUE override the algorithm's Config; --env.FIELD VALUE "
            "sets a setting of frl's own environments (e.g. --env.num_lanes 4 on Highway-v0)"
        ),
    )
    train.add_argument(
        "algo",
        help=f"an algorithm of `frl list` ({', '.join(ALGORITHM_NAMES)})",
    )
    train.add_argument("--env", default="CartPole-v1", help="environment id (see `frl list`)")
    train.add_argument("--seeds", type=int, default=1, help="number of seeds trained together (0..N-1)")
    train.add_argument(
        "--steps", type=int, default=None, help="environment steps per seed (default: the config's)"
    )
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    train.add_argument(
        "--warm-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="save the compiled program; reruns of the same settings load it (any hyper-parameter values)",
    )
    train.add_argument("--out", default=None, help="folder for config, logs, checkpoints and results.json")
    train.add_argument("--eval-every", type=int, default=None, help="steps between evaluations")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="steps between checkpoints (default: at every evaluation; always at the end)",
    )
    train.add_argument("--eval-episodes", type=int, default=10)
    train.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    train.add_argument(
        "--resume-or-start",
        action="store_true",
        help="resume when --out holds a checkpoint, else start (for scripts that rerun themselves)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="a fresh run in a folder holding another run's files moves them to <out>/replaced-<time>/",
    )
    train.add_argument(
        "--stop-at", type=float, default=None, help="stop once every seed's eval return reaches this"
    )
    train.add_argument("--device", default=None, help="cpu (default) or cuda")
    train.add_argument(
        "--on-nonfinite",
        choices=["stop", "skip-member", "warn"],
        default="stop",
        help="on a NaN/inf loss, gradient norm, parameter or episode statistic: stop with an error "
        "keeping the last good checkpoint (default), freeze the bad seeds and train the others, "
        "or warn and continue",
    )
    train.add_argument(
        "--threads", type=int, default=1, help="intra-op threads (1 is fastest for small nets)"
    )
    train.add_argument("--no-progress", action="store_true")
    dist = train.add_argument_group("several processes (torch.distributed, gloo on 127.0.0.1)")
    dist.add_argument(
        "--nproc", type=int, default=1, help="processes; the seeds are sharded over them (vmapped in each)"
    )
    dist.add_argument(
        "--data-parallel",
        action="store_true",
        help="instead: one agent (one seed) whose every process collects --steps and averages gradients",
    )
    gym = train.add_argument_group("gymnasium environments (--env gym:<id>)")
    gym.add_argument("--norm-obs", action="store_true", help="normalise observations (VecNorm)")
    gym.add_argument("--norm-reward", action="store_true", help="normalise rewards while training")
    gym.add_argument("--frame-stack", type=int, default=None, help="observations stacked (Atari: 4)")
    gym.add_argument(
        "--collector-workers",
        type=int,
        default=1,
        help="worker processes stepping each seed's environments (TorchRL MultiSyncCollector)",
    )
    gym.add_argument(
        "--save-buffer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the replay buffer in checkpoints (else it is refilled on resume)",
    )


def _check_counts(args: argparse.Namespace) -> None:
    check_positive(
        args,
        "--seeds",
        "--eval-episodes",
        "--threads",
        "--nproc",
        "--steps",
        "--frame-stack",
        "--eval-every",
        "--checkpoint-every",
    )
    if args.collector_workers != 1 and not args.env.startswith("gym:"):
        raise UsageError(
            "--collector-workers: only for gym:<id> environments (pure ones step in the compiled units)"
        )
    if args.data_parallel and args.seeds != 1:
        raise UsageError(
            f"--data-parallel trains one agent on every process: use --seeds 1, not {args.seeds}"
        )
    if args.nproc > 1 and not args.data_parallel and args.seeds < args.nproc:
        raise UsageError(
            f"--nproc {args.nproc} shards the seeds: pass at least as many --seeds ({args.seeds})"
        )


def _device(name: str | None) -> None:
    import torch

    if name is None:
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; use cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")


def _callbacks(args: argparse.Namespace) -> list:
    callbacks = []
    if not args.no_progress and not sys.stderr.isatty():
        # no live bar off a terminal: one line per evaluation instead
        def report(row: dict[str, Any]) -> bool:
            if "eval_return_mean" in row:
                print(
                    f"{row['env_steps']:>10,} steps  eval return mean {row['eval_return_mean']:8.1f}  "
                    f"IQM {row['eval_return_iqm']:8.1f}  {row['wall_s']:7.1f} s",
                    flush=True,
                )
            return False

        callbacks.append(report)
    if args.stop_at is not None:
        # early stop: every seed's evaluation at or above the target
        callbacks.append(lambda row: min(row.get("eval_return_per_member", [-math.inf])) >= args.stop_at)
    return callbacks


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Train an agent from the command line (``--config.FIELD VALUE`` pairs in ``extra``); the exit code."""
    from frl import host_memory
    from frl.algos import get

    _check_counts(args)
    try:
        host_memory.limit_from_env()  # read again by frl.run; checked here before anything is written
        agent = get(args.algo)
    except ValueError as err:
        raise UsageError(str(err)) from None
    config_pairs, env_pairs = split_overrides(extra)
    overrides = config_overrides(agent.config, config_pairs)
    env_options = {
        k: v
        for k, v in (
            ("norm_obs", args.norm_obs or None),
            ("norm_reward", args.norm_reward or None),
            ("frame_stack", args.frame_stack),
        )
        if v is not None
    }
    env_options.update(env_overrides(args.env, env_pairs))
    train = build_train(args.algo, args.env, args.steps, overrides, env_options)
    args.steps = train.config.total_timesteps
    if args.steps < train.steps_per_iteration:
        raise UsageError(
            f"--steps ({args.steps}) is less than one iteration ({train.steps_per_iteration} steps)"
        )
    out = None if args.out is None else Path(args.out)
    saved = {"algo": args.algo, "config": dataclasses.asdict(train.config), "env_options": env_options}
    finished = _check_folder(args, out, saved)
    if finished is not None:
        return finished
    _device(args.device)

    import torch

    torch.set_num_threads(args.threads)
    _check_memory(train, args.seeds, args.eval_episodes, args.device)
    with contextlib.ExitStack() as scope:
        if out is not None:
            scope.enter_context(folder.hold(out))
            if not args.resume:  # a resumed run keeps the config it was started with (checked above)
                (out / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
        return _train(args, train, overrides, env_options, out)


def _check_folder(args: argparse.Namespace, out: Path | None, saved: dict[str, Any]) -> int | None:
    """Validate ``--out`` against ``--resume``/``--overwrite`` before anything is written; a
    resumed run that already finished prints its result (returned: the exit code)."""
    if args.resume_or_start:
        if out is None:
            raise UsageError("--resume-or-start needs --out")
        args.resume = (out / "checkpoint.pt").exists()
        if not args.resume and (out / "config.json").exists():
            # killed before its first checkpoint: the same run starts over, its logs replaced
            _check_resumed_config(out, saved)
            for name in ("metrics.csv", "metrics.jsonl", "failure.json", "config.json"):
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "tensorboard", ignore_errors=True)
    if out is None:
        if args.resume:
            raise UsageError("--resume needs --out (the folder of the run to continue)")
        return None
    check_out("--out", out)
    present = folder.run_files(out) if out.is_dir() else []
    if args.resume:
        if not (out / "checkpoint.pt").exists():
            raise UsageError(
                f"--resume: {out} holds no checkpoint.pt to continue from "
                "(drop --resume to start, or use --resume-or-start)"
            )
        _check_resumed_config(out, saved)
        if (out / "results.json").exists():
            return _print_finished(out)
        return None
    if present and args.overwrite:
        aside = folder.move_aside(out)
        print(f"moved the previous run's files to {aside}")
    elif "results.json" in present:
        raise UsageError(
            f"--out {out} already holds a finished run; choose another folder, pass --resume, "
            "or --overwrite to move it aside"
        )
    elif present:
        raise UsageError(
            f"--out {out} holds another run's files ({', '.join(present)}); pass --resume to "
            "continue it, --overwrite to move them aside, or choose another folder"
        )
    return None


def _available_bytes() -> int | None:
    """Memory available to a new allocation (``MemAvailable`` of /proc/meminfo), None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(train: Any, seeds: int, eval_episodes: int, device: str | None) -> None:
    """Refuse ``--seeds`` and ``--eval-episodes`` whose states cannot fit in memory, with the
    estimate: one member's training state measured, times the seeds, times two (a unit's outputs
    beside its inputs); an evaluation's environment states (one per episode of every seed)."""
    if device not in (None, "cpu"):
        return
    from torch.utils import _pytree as pytree

    from frl import random

    available = _available_bytes()
    try:
        one = train.init(random.key(0))
    except (RuntimeError, MemoryError) as err:  # a network or buffer too large to allocate once
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(
            f"one seed's training state cannot be allocated ({first[:160]}); check the network "
            "sizes (--config.hidden) and the replay buffer (--config.buffer_size)"
        ) from None
    per_seed = sum(x.numel() * x.element_size() for x in pytree.tree_leaves(one))
    need = 2 * per_seed * seeds
    if available is not None and need > available:
        raise UsageError(
            f"--seeds {seeds}: the training states need about {need / 2**30:.1f} GiB "
            f"({per_seed / 2**20:.1f} MiB per seed, twice while a unit runs) and "
            f"{available / 2**30:.1f} GiB are available; train fewer seeds per run (frl sweep) "
            "or shrink the replay buffer (--config.buffer_size)"
        )
    if available is not None and getattr(train.env, "pure", False):
        obs, env_state = train.env.reset(random.key(0))
        per_episode = 4 * sum(x.numel() * x.element_size() for x in pytree.tree_leaves((obs, env_state)))
        if per_episode * eval_episodes * seeds > available:
            raise UsageError(
                f"--eval-episodes {eval_episodes}: evaluating {seeds} seed(s) needs about "
                f"{per_episode * eval_episodes * seeds / 2**30:.1f} GiB and {available / 2**30:.1f} GiB "
                "are available; evaluate fewer episodes"
            )


RESUME_MAY_CHANGE = ("total_timesteps",)
"""Config fields a resumed run may change (evaluation and checkpoint cadence are flags)."""


def _check_resumed_config(out: Path, saved: dict[str, Any]) -> None:
    """The command resumes the run in ``out``: same algorithm, environment options and config
    (but ``RESUME_MAY_CHANGE``), or a UsageError naming what differs."""
    try:
        before = json.loads((out / "config.json").read_text())
        before_config = dict(before["config"])
    except FileNotFoundError:
        raise UsageError(f"--resume: {out} has a checkpoint but no config.json") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"--resume: {out / 'config.json'} is not a readable run config ({err})") from None
    if before.get("algo") != saved["algo"]:
        raise UsageError(f"--resume: {out} holds a {before.get('algo')} run, not {saved['algo']}")
    now = json.loads(json.dumps(saved["config"]))  # tuples as lists, as in the file
    changed = [
        f"{name} {before_config.get(name)!r} -> {now.get(name)!r}"
        for name in sorted(now.keys() | before_config.keys())
        if name not in RESUME_MAY_CHANGE and before_config.get(name) != now.get(name)
    ]
    if before.get("env_options", {}) != saved["env_options"]:
        changed.append(f"environment options {before.get('env_options', {})} -> {saved['env_options']}")
    if changed:
        raise UsageError(
            f"--resume: the command differs from the run in {out}: {'; '.join(changed)} "
            f"(a resumed run may change only {', '.join(RESUME_MAY_CHANGE)}, --eval-every and the like)"
        )


def _print_finished(out: Path) -> int:
    try:
        results = json.loads((out / "results.json").read_text())
        seeds, returns = results["seeds"], results["final_eval_return"]
    except (OSError, ValueError, KeyError) as err:
        raise UsageError(f"--resume: {out / 'results.json'} is not readable ({err})") from None
    print(f"{out} holds a finished run ({results.get('total_steps', '?'):,} steps); its result:")
    for line in results_table([{"seed": s} for s in seeds], [math.nan if r is None else r for r in returns]):
        print(line)
    return 0


def _train(args: argparse.Namespace, train: Any, overrides: dict, env_options: dict, out: Path | None) -> int:
    from frl.driver import run
    from frl.driver.health import NonFiniteError

    eval_every = args.eval_every or max(train.steps_per_iteration, args.steps // 20)
    if args.nproc > 1 or args.data_parallel or "WORLD_SIZE" in os.environ:
        return _train_distributed(args, overrides, env_options, eval_every, out)
    source = None
    if args.collector_workers != 1:
        from frl.driver import Collectors

        source = Collectors(workers=args.collector_workers)
    start = time.perf_counter()
    try:
        result = run(
            train,
            seeds=args.seeds,
            total_steps=args.steps,
            compile=args.compile,
            source=source,
            eval_every=eval_every,
            eval_episodes=args.eval_episodes,
            out_dir=out,
            checkpoint_every=(args.checkpoint_every or eval_every) if out is not None else None,
            resume=args.resume,
            progress=not args.no_progress,
            device=args.device,
            callbacks=_callbacks(args),
            save_buffer=args.save_buffer,
            warm_start=args.warm_start,
            on_nonfinite=args.on_nonfinite,
        )
    except NonFiniteError as err:
        where = f"; see {out / 'failure.json'}" if out is not None else ""
        raise RunFailed(f"{err}{where}") from None
    except ValueError as err:  # a source that cannot serve the environment, a foreign checkpoint
        raise UsageError(str(err)) from None
    wall = time.perf_counter() - start
    if result.interrupted is not None:
        saved = (
            f"checkpoint at {result.env_steps:,} steps saved in {out}" if out is not None else "nothing saved"
        )
        again = " ".join(sys.argv[1:]) if out is not None else ""
        resume = f"; resume with: frl {again}{'' if '--resume' in again else ' --resume'}" if again else ""
        print(f"frl: interrupted ({result.interrupted}): {saved}{resume}", file=sys.stderr)
        return 130 if result.interrupted == "SIGINT" else 143
    print(
        f"\n{args.algo} on {args.env}: {args.seeds} seeds x {result.env_steps:,} steps "
        f"({'compiled' if args.compile else 'eager'})"
    )
    last = result.history[-1] if result.history else {}
    outcomes = {
        key[len("eval_") : -len("_per_member")]: value
        for key, value in last.items()
        if key.startswith("eval_") and key.endswith("_per_member") and key != "eval_return_per_member"
    }
    for line in results_table(result.members, result.eval_returns, outcomes):
        print(line)
    print(
        f"wall {wall:.1f} s   compile {result.compile_s:.1f} s   "
        f"{result.env_steps_per_s:,.0f} env-steps/s (all seeds)"
    )
    write_results(args, out, [m["seed"] for m in result.members], result.eval_returns, result, wall)
    return 0


def write_results(
    args: argparse.Namespace,
    out: Path | None,
    seeds: list[int],
    returns: list[float],
    result: Any,
    wall: float,
) -> None:
    """``out/results.json``, written atomically (strict JSON: a non-finite return is null)."""
    if out is None:
        return
    from frl.driver.logging import write_json

    payload = {
        "algo": args.algo,
        "env": args.env,
        "seeds": seeds,
        "num_seeds": len(seeds),
        "total_steps": result.env_steps,
        "final_eval_return": returns,
        "wall_s": wall,
        "compile_s": result.compile_s,
        "env_steps_per_s": result.env_steps_per_s,
        "compiled": args.compile,
        "device": str(args.device or "cpu"),
        "processes": args.nproc,
        "data_parallel": args.data_parallel,
        "nonfinite_members": getattr(result, "nonfinite", []),
    }
    write_json(out / "results.json", payload)
    print(f"wrote {out / 'results.json'}")


def _train_distributed(
    args: argparse.Namespace,
    overrides: dict[str, Any],
    env_options: dict[str, Any],
    eval_every: int,
    out: Path | None,
) -> int:
    """``--nproc N`` (spawn N gloo processes here) or a ``torchrun`` process (already one of N)."""
    from frl import distributed

    spec = {
        "algo": args.algo,
        "env": args.env,
        "steps": args.steps,
        "overrides": overrides,
        "env_options": env_options,
        "seeds": args.seeds,
        "compile": args.compile,
        "eval_every": eval_every,
        "eval_episodes": args.eval_episodes,
        "out": None if out is None else str(out),
        "resume": args.resume,
        "data_parallel": args.data_parallel,
        "threads": args.threads,
        "progress": not args.no_progress,
        "save_buffer": args.save_buffer,
        "collector_workers": args.collector_workers,
    }
    start = time.perf_counter()
    if "WORLD_SIZE" in os.environ:  # launched by torchrun: this process is one rank
        me = distributed.init_from_env()
        try:
            summary = train_rank(me.rank, me.size, spec)
        finally:
            distributed.shutdown()
        if me.rank != 0:
            return 0
        args.nproc = me.size
    else:
        summary = distributed.spawn(train_rank, args.nproc, spec, threads=args.threads)
    wall = time.perf_counter() - start
    mode = "data-parallel" if args.data_parallel else "seeds sharded"
    print(
        f"\n{args.algo} on {args.env}: {len(summary.members)} seeds x {summary.env_steps:,} steps, "
        f"{args.nproc} processes ({mode}, {'compiled' if args.compile else 'eager'})"
    )
    for line in results_table(summary.members, summary.eval_returns):
        print(line)
    print(f"wall {wall:.1f} s   {summary.env_steps_per_s:,.0f} env-steps/s (all processes)")
    write_results(args, out, [m["seed"] for m in summary.members], summary.eval_returns, summary, wall)
    return 0


def train_rank(rank: int, size: int, spec: dict[str, Any]):
    """One process of a distributed ``frl train``: rank 0 returns a :class:`frl.driver.RunResult`
    summary (members, eval returns, env steps, rates summed over processes)."""
    from frl import distributed
    from frl.driver import Collectors
    from frl.driver.loop import RunResult

    train = build_train(spec["algo"], spec["env"], spec["steps"], spec["overrides"], spec["env_options"])
    common = dict(
        total_steps=spec["steps"],
        compile=spec["compile"],
        eval_every=spec["eval_every"],
        eval_episodes=spec["eval_episodes"],
        resume=spec["resume"],
        progress=spec["progress"] and rank == 0,
        save_buffer=spec["save_buffer"],
        source=Collectors(spec["collector_workers"]) if spec["collector_workers"] != 1 else None,
    )
    out = spec["out"]
    if spec["data_parallel"]:
        result = distributed.train_data_parallel(
            lambda config, **kw: train.factory(config, train.env, **kw),
            train.config,
            out_dir=out,
            checkpoint_every=spec["eval_every"] if out is not None else None,
            **common,
        )
        rates = distributed.gather_objects(result.env_steps_per_s)
        if rank != 0:
            return None
        result.env_steps_per_s = sum(rates)
        return result
    merged = distributed.run_sharded(
        train,
        spec["seeds"],
        out_dir=out,
        checkpoint_every=spec["eval_every"] if out is not None else None,
        **common,
    )
    if merged is None:
        return None
    steps = (spec["steps"] // train.steps_per_iteration) * train.steps_per_iteration
    return RunResult(
        state=None,
        members=[{"seed": s} for s in merged["seeds"]],
        eval_returns=merged["eval_returns"],
        env_steps_per_s=merged["env_steps_per_s"],
        env_steps=steps,
    )
