"""The ``frl`` command line: train, evaluate, list and plot.

::

    frl train ppo --env CartPole-v1 --seeds 8 --steps 500000 --out runs/ppo
    frl train sac --env Pendulum-v1 --seeds 4 --config.batch_size 128 --no-compile
    frl train sac --env gym:Pendulum-v1 --seeds 4 --out runs/sac-gym     # any gymnasium id
    frl train dqn --env gym:ALE/Pong-v5 --config.buffer_size 100000       # Nature CNN, 4 frames
    frl eval runs/ppo
    frl list
    frl plot runs/ppo runs/dqn -o curves.png
    frl train ppo --seeds 8 --nproc 2                   # seeds sharded over 2 processes
    frl sweep ppo --grid learning_rate=1e-3,2.5e-4 --grid ent_coef=0,0.01 --seeds 4 --nproc 2
    frl llm pretrain --task addition --out runs/lm     # a language model; see frl.llm.cli
    frl llm finetune runs/lm --algorithm grpo --out runs/lm-grpo

``train`` validates everything (algorithm, environment, action type, counts, config fields)
before it writes anything; a bad input prints one ``frl: error: ...`` line naming the problem
and the valid choices, and exits with code 2. ``--out DIR`` receives ``config.json``, the logs
(``metrics.csv``, ``metrics.jsonl``), ``checkpoint.pt`` and ``results.json``.
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
from typing import Any, NoReturn

from frl.llm.cli import LLMUsageError, add_llm_parser, cmd_llm

__all__ = ["main"]


class UsageError(Exception):
    """Bad input: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# --------------------------------------------------------------------------------------
# Config overrides: --config.field value
# --------------------------------------------------------------------------------------


def _parse_value(name: str, text: str, current: Any) -> Any:
    kind = type(current)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(float(text)) if "e" in text.lower() else int(text)
        if kind is float:
            return float(text)
        if kind is tuple:
            return tuple(int(v) for v in text.replace("(", "").replace(")", "").split(",") if v.strip())
        return text
    except ValueError:
        raise UsageError(
            f"--config.{name}: expected a {kind.__name__} (current {current!r}), got {text!r}"
        ) from None


def _config_overrides(config_cls: type, pairs: Sequence[str]) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = config_cls()
    out: dict[str, Any] = {}
    i = 0
    while i < len(pairs):
        flag = pairs[i]
        if not flag.startswith("--config."):
            raise UsageError(f"unrecognized argument {flag!r}")
        name, _, inline = flag[len("--config.") :].partition("=")
        if name not in fields:
            raise UsageError(
                f"--config.{name}: unknown field of {config_cls.__module__}.Config; "
                f"valid fields: {', '.join(fields)}"
            )
        if name in ("env_id", "total_timesteps"):
            raise UsageError(f"--config.{name}: use --env / --steps instead")
        if inline:
            value, i = inline, i + 1
        else:
            if i + 1 >= len(pairs):
                raise UsageError(f"--config.{name}: missing value")
            value, i = pairs[i + 1], i + 2
        out[name] = _parse_value(name, value, getattr(defaults, name))
    return out


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def _build_train(
    algo: str,
    env_id: str,
    steps: int | None,
    overrides: dict[str, Any],
    env_options: dict[str, Any] | None = None,
):
    from frl import envs
    from frl.algos import ALGORITHMS

    if algo not in ALGORITHMS:
        raise UsageError(f"unknown algorithm {algo!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    gym = envs.is_gym_id(env_id)
    if not gym and env_id not in envs.list_envs() and envs.plugin_prefix(env_id) is None:
        raise UsageError(
            f"unknown environment {env_id!r}; choose one of {', '.join(envs.list_envs())}, "
            "a gymnasium id as gym:<id> (e.g. gym:Pendulum-v1) or a gymnax id as gymnax:<id>"
        )
    if not gym and env_options:
        raise UsageError(
            f"{', '.join('--' + k.replace('_', '-') for k in env_options)}: only for gym:<id> environments"
        )
    try:
        env = envs.make(env_id, **(env_options or {}))
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    if algo == "dqn" and not env.discrete:
        choices = ", ".join(e for e in envs.list_envs() if envs.make(e).discrete)
        if gym:
            choices = "any gymnasium id with Discrete actions, e.g. gym:CartPole-v1"
        raise UsageError(f"dqn needs discrete actions; {env_id} has continuous actions (discrete: {choices})")
    if algo == "sac" and env.discrete:
        choices = ", ".join(e for e in envs.list_envs() if not envs.make(e).discrete)
        if gym:
            choices = "any gymnasium id with Box actions, e.g. gym:Pendulum-v1"
        raise UsageError(
            f"sac needs continuous actions; {env_id} has discrete actions (continuous: {choices})"
        )
    module = ALGORITHMS[algo]
    try:
        if steps is not None:
            overrides = {**overrides, "total_timesteps": steps}
        # a gymnasium id gets the tuned settings of the built-in environment of the same name
        bare = env_id[len(envs.gymnasium.PREFIX) :] if gym else env_id
        config = dataclasses.replace(module.Config.preset(bare, **overrides), env_id=env_id)
        return module.make_train(config, env)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None


def _results_table(members: list[dict[str, Any]], returns: list[float]) -> list[str]:
    from frl.logging import iqm

    lines = ["seed  final eval return", "----  -----------------"]
    for member, ret in zip(members, returns, strict=True):
        extra = "".join(f"  {k}={v:g}" for k, v in member.items() if k != "seed")
        lines.append(f"{member['seed']:>4}  {ret:17.1f}{extra}")
    finite = [r for r in returns if math.isfinite(r)]
    mean = sum(finite) / len(finite) if finite else math.nan
    std = math.sqrt(sum((r - mean) ** 2 for r in finite) / len(finite)) if finite else math.nan
    lines.append(
        f"mean {mean:.1f} +- {std:.1f}   IQM {iqm(finite):.1f}   min {min(finite, default=math.nan):.1f}"
    )
    return lines


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from frl.algos import ALGORITHMS

    if args.steps is not None and args.steps <= 0:
        raise UsageError(f"--steps must be a positive number of environment steps per seed, got {args.steps}")
    if args.seeds <= 0:
        raise UsageError(f"--seeds must be a positive count, got {args.seeds}")
    if args.eval_episodes <= 0:
        raise UsageError(f"--eval-episodes must be positive, got {args.eval_episodes}")
    if args.algo not in ALGORITHMS:
        raise UsageError(f"unknown algorithm {args.algo!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    overrides = _config_overrides(ALGORITHMS[args.algo].Config, extra)
    if args.frame_stack is not None and args.frame_stack <= 0:
        raise UsageError(f"--frame-stack must be positive, got {args.frame_stack}")
    env_options = {
        k: v
        for k, v in (
            ("norm_obs", args.norm_obs or None),
            ("norm_reward", args.norm_reward or None),
            ("frame_stack", args.frame_stack),
        )
        if v is not None
    }
    train = _build_train(args.algo, args.env, args.steps, overrides, env_options)
    args.steps = train.config.total_timesteps
    if args.steps < train.steps_per_iteration:
        raise UsageError(
            f"--steps ({args.steps}) is less than one iteration ({train.steps_per_iteration} steps)"
        )
    out = None if args.out is None else Path(args.out)
    if out is not None and (out / "results.json").exists() and not args.resume:
        raise UsageError(f"--out {out} already holds a finished run; choose another folder or pass --resume")

    import torch

    from frl.run import run

    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise UsageError(f"--device {args.device!r} is not a device; use cpu or cuda[:N]") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
    if args.threads <= 0:
        raise UsageError(f"--threads must be positive, got {args.threads}")
    if args.collector_workers != 1 and not args.env.startswith("gym:"):
        raise UsageError(
            "--collector-workers: only for gym:<id> environments (pure ones step in the compiled units)"
        )
    if args.nproc <= 0:
        raise UsageError(f"--nproc must be a positive count of processes, got {args.nproc}")
    if args.data_parallel and args.seeds != 1:
        raise UsageError(
            f"--data-parallel trains one agent on every process: use --seeds 1, not {args.seeds}"
        )
    if args.nproc > 1 and not args.data_parallel and args.seeds < args.nproc:
        raise UsageError(
            f"--nproc {args.nproc} shards the seeds: pass at least as many --seeds ({args.seeds})"
        )
    torch.set_num_threads(args.threads)
    config = dataclasses.asdict(train.config)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        saved = {"algo": args.algo, "config": config, "env_options": env_options}
        (out / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    eval_every = args.eval_every or max(train.steps_per_iteration, args.steps // 20)
    if args.nproc > 1 or args.data_parallel or "WORLD_SIZE" in os.environ:
        return _train_distributed(args, overrides, env_options, eval_every, out)
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
    start = time.perf_counter()
    result = run(
        train,
        seeds=args.seeds,
        total_steps=args.steps,
        compile=args.compile,
        eval_every=eval_every,
        eval_episodes=args.eval_episodes,
        out_dir=out,
        checkpoint_every=eval_every if out is not None else None,
        resume=args.resume,
        progress=not args.no_progress,
        device=args.device,
        callbacks=callbacks,
        save_buffer=args.save_buffer,
        collector_workers=args.collector_workers,
    )
    wall = time.perf_counter() - start
    print(
        f"\n{args.algo} on {args.env}: {args.seeds} seeds x {result.env_steps:,} steps "
        f"({'compiled' if args.compile else 'eager'})"
    )
    for line in _results_table(result.members, result.eval_returns):
        print(line)
    print(
        f"wall {wall:.1f} s   compile {result.compile_s:.1f} s   "
        f"{result.env_steps_per_s:,.0f} env-steps/s (all seeds)"
    )
    _write_results(args, out, [m["seed"] for m in result.members], result.eval_returns, result, wall)
    return 0


def _write_results(
    args: argparse.Namespace,
    out: Path | None,
    seeds: list[int],
    returns: list[float],
    result: Any,
    wall: float,
) -> None:
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
            summary = _train_rank(me.rank, me.size, spec)
        finally:
            distributed.shutdown()
        if me.rank != 0:
            return 0
        args.nproc = me.size
    else:
        summary = distributed.spawn(_train_rank, args.nproc, spec, threads=args.threads)
    wall = time.perf_counter() - start
    mode = "data-parallel" if args.data_parallel else "seeds sharded"
    print(
        f"\n{args.algo} on {args.env}: {len(summary.members)} seeds x {summary.env_steps:,} steps, "
        f"{args.nproc} processes ({mode}, {'compiled' if args.compile else 'eager'})"
    )
    for line in _results_table(summary.members, summary.eval_returns):
        print(line)
    print(f"wall {wall:.1f} s   {summary.env_steps_per_s:,.0f} env-steps/s (all processes)")
    seeds = [m["seed"] for m in summary.members]
    _write_results(args, out, seeds, summary.eval_returns, summary, wall)
    return 0


def _train_rank(rank: int, size: int, spec: dict[str, Any]):
    """One process of a distributed ``frl train``: rank 0 returns a :class:`frl.run.RunResult`-like
    summary (members, eval returns, env steps, rates summed over processes)."""
    from frl import distributed
    from frl.algos import ALGORITHMS
    from frl.run import RunResult

    train = _build_train(spec["algo"], spec["env"], spec["steps"], spec["overrides"], spec["env_options"])
    common = dict(
        total_steps=spec["steps"],
        compile=spec["compile"],
        eval_every=spec["eval_every"],
        eval_episodes=spec["eval_episodes"],
        resume=spec["resume"],
        progress=spec["progress"] and rank == 0,
        save_buffer=spec["save_buffer"],
        collector_workers=spec["collector_workers"],
    )
    out = spec["out"]
    if spec["data_parallel"]:
        make = ALGORITHMS[spec["algo"]].make_train
        result = distributed.train_data_parallel(
            lambda config, **kw: make(config, train.env, **kw),
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from frl.algos import ALGORITHMS
    from frl.distributed.sweep import format_results, sweep

    if args.algo not in ALGORITHMS:
        raise UsageError(f"unknown algorithm {args.algo!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    config_cls = ALGORITHMS[args.algo].Config
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
        space[name] = [_parse_value(name, v, getattr(defaults, name)) for v in values.split(",")]
    for flag, value in (
        ("--seeds", args.seeds),
        ("--nproc", args.nproc),
        ("--eval-episodes", args.eval_episodes),
    ):
        if value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if args.steps is not None and args.steps <= 0:
        raise UsageError(f"--steps must be positive, got {args.steps}")
    _build_train(args.algo, args.env, args.steps, {})  # validates the algorithm on the environment
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
    points = len(results)
    where = f"{args.backend}, {args.nproc} at once"
    print(f"\n{args.algo} on {args.env}: {points} points x {args.seeds} seeds ({where})")
    for line in format_results(results):
        print(line)
    print(f"wall {time.perf_counter() - start:.1f} s")
    if args.out is not None:
        print(f"wrote {Path(args.out) / 'sweep.json'}")
    return 0


def _load_run(run_dir: Path):
    config_path, ckpt_path = run_dir / "config.json", run_dir / "checkpoint.pt"
    for path in (config_path, ckpt_path):
        if not path.exists():
            raise UsageError(
                f"{run_dir} is not a run folder: {path.name} is missing (train with --out first)"
            )
    saved = json.loads(config_path.read_text())
    from frl.algos import ALGORITHMS

    module = ALGORITHMS[saved["algo"]]
    fields = {f.name: f for f in dataclasses.fields(module.Config)}
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items() if k in fields}
    config = module.Config(**cfg)
    from frl import envs

    env = envs.make(config.env_id, **saved.get("env_options", {}))
    return saved["algo"], module.make_train(config, env), ckpt_path


def cmd_eval(args: argparse.Namespace) -> int:
    if args.episodes <= 0:
        raise UsageError(f"--episodes must be positive, got {args.episodes}")
    algo, train, ckpt_path = _load_run(Path(args.run_dir))
    from frl import checkpoint, random
    from frl.run import evaluate

    saved = checkpoint.load(ckpt_path)
    params = saved["state"]["learner", "params"]
    members = saved["members"]
    if len(members) == 1 and params.batch_dims == 0:
        params = params.unsqueeze(0)
    returns = []
    env_states = saved.get("env_states") or [None] * len(members)
    for i, member in enumerate(members):
        key = random.fold_in(random.key(member["seed"]), 7)
        ret = evaluate(train, params[i], key, args.episodes, env_state=env_states[i])
        returns.append(float(ret.double().mean()))
    steps = saved["iteration"] * train.steps_per_iteration
    print(f"{algo} on {train.env.id}: checkpoint at {steps:,} steps, {args.episodes} episodes per seed")
    for line in _results_table(members, returns):
        print(line)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from frl import envs
    from frl.algos import ALGORITHMS

    kinds = {
        "dqn": "discrete",
        "sac": "continuous",
        "ppo": "discrete, continuous",
        "reinforce": "discrete, continuous",
        "tabular": "discrete (tabular states)",
    }
    print("algorithms:")
    for name in sorted(ALGORITHMS):
        doc = (ALGORITHMS[name].__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<10} actions: {kinds.get(name, '?'):<22} {doc}")
    print(
        "environments (pure torch; any gymnasium id also works as gym:<id>, through TorchRL, "
        "and any gymnax id as gymnax:<id>, in JAX, with the jax extra):"
    )
    for env_id in envs.list_envs():
        env = envs.make(env_id)
        space = env.action_space
        actions = f"discrete({space.n})" if env.discrete else f"box{list(space.shape)}"
        print(
            f"  {env_id:<26} obs {list(env.observation_space.shape)}  actions {actions}  "
            f"max steps {env.max_episode_steps}"
        )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from frl.plot import plot_runs

    for run_dir in args.run_dirs:
        if not (Path(run_dir) / "metrics.jsonl").exists():
            raise UsageError(f"{run_dir} has no metrics.jsonl (train with --out first)")
    try:
        path = plot_runs([Path(d) for d in args.run_dirs], Path(args.output), band=args.band)
    except ImportError:
        raise UsageError("frl plot needs matplotlib: pip install 'frl[plot]'") from None
    print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="frl", description="Functional reinforcement learning on torch.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = sub.add_parser(
        "train",
        help="train an agent on many seeds at once",
        description="extra options --config.FIELD VALUE override the algorithm's Config",
    )
    train.add_argument("algo", help="dqn, ppo, reinforce or sac")
    train.add_argument("--env", default="CartPole-v1", help="environment id (see `frl list`)")
    train.add_argument("--seeds", type=int, default=1, help="number of seeds trained together (0..N-1)")
    train.add_argument(
        "--steps", type=int, default=None, help="environment steps per seed (default: the config's)"
    )
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
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

    ev = sub.add_parser("eval", help="evaluate a trained run's checkpoint")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=10)

    sub.add_parser("list", help="algorithms and environments")

    plot = sub.add_parser("plot", help="learning curves of runs")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("-o", "--output", default="curves.png")
    plot.add_argument("--band", choices=("bootstrap", "iqm"), default="bootstrap")

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

    add_llm_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if args.command is None:
            raise UsageError("choose a command: train, sweep, eval, list, plot, llm (frl COMMAND --help)")
        if args.command != "train" and extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "train":
            return cmd_train(args, extra)
        commands = {"eval": cmd_eval, "list": cmd_list, "plot": cmd_plot, "llm": cmd_llm, "sweep": cmd_sweep}
        return commands[args.command](args)
    except (UsageError, LLMUsageError) as err:
        print(f"frl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
