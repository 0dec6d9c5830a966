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
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frl.cli.common import UsageError, build_train, check_positive, config_overrides, results_table

__all__ = ["add_parser", "cmd_train"]


def add_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train an agent on many seeds at once",
        description="extra options --config.FIELD VALUE override the algorithm's Config",
    )
    train.add_argument("algo", help="an algorithm of `frl list` (a2c, dqn, ppo, reinforce, sac, tabular)")
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
    train.add_argument("--eval-episodes", type=int, default=10)
    train.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    train.add_argument(
        "--stop-at", type=float, default=None, help="stop once every seed's eval return reaches this"
    )
    train.add_argument("--device", default=None, help="cpu (default) or cuda")
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
    check_positive(args, "--seeds", "--eval-episodes", "--threads", "--nproc", "--steps", "--frame-stack")
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
    from frl.algos import get

    _check_counts(args)
    try:
        agent = get(args.algo)
    except ValueError as err:
        raise UsageError(str(err)) from None
    overrides = config_overrides(agent.config, extra)
    env_options = {
        k: v
        for k, v in (
            ("norm_obs", args.norm_obs or None),
            ("norm_reward", args.norm_reward or None),
            ("frame_stack", args.frame_stack),
        )
        if v is not None
    }
    train = build_train(args.algo, args.env, args.steps, overrides, env_options)
    args.steps = train.config.total_timesteps
    if args.steps < train.steps_per_iteration:
        raise UsageError(
            f"--steps ({args.steps}) is less than one iteration ({train.steps_per_iteration} steps)"
        )
    out = None if args.out is None else Path(args.out)
    if out is not None and (out / "results.json").exists() and not args.resume:
        raise UsageError(f"--out {out} already holds a finished run; choose another folder or pass --resume")
    _device(args.device)

    import torch

    from frl.driver import run

    torch.set_num_threads(args.threads)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        saved = {"algo": args.algo, "config": dataclasses.asdict(train.config), "env_options": env_options}
        (out / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
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
            checkpoint_every=eval_every if out is not None else None,
            resume=args.resume,
            progress=not args.no_progress,
            device=args.device,
            callbacks=_callbacks(args),
            save_buffer=args.save_buffer,
            warm_start=args.warm_start,
        )
    except ValueError as err:  # a source that cannot serve the environment, a foreign checkpoint
        raise UsageError(str(err)) from None
    wall = time.perf_counter() - start
    print(
        f"\n{args.algo} on {args.env}: {args.seeds} seeds x {result.env_steps:,} steps "
        f"({'compiled' if args.compile else 'eager'})"
    )
    for line in results_table(result.members, result.eval_returns):
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
    """``out/results.json``, written atomically."""
    if out is None:
        return
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
    }
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, out / "results.json")
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
