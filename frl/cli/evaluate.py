"""``frl eval RUN``: re-evaluate a trained run's checkpoint, every seed."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from frl.cli.common import UsageError, check_positive, results_table

__all__ = ["add_parser", "cmd_eval", "load_run"]


def add_parser(sub: Any) -> None:
    """Register ``frl eval`` on the ``frl`` command's subparsers."""
    ev = sub.add_parser("eval", help="evaluate a trained run's checkpoint")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=10)


def load_run(run_dir: Path):
    """``(algo, train, checkpoint path)`` of a run folder written by ``frl train --out``."""
    config_path, ckpt_path = run_dir / "config.json", run_dir / "checkpoint.pt"
    for path in (config_path, ckpt_path):
        if not path.exists():
            raise UsageError(
                f"{run_dir} is not a run folder: {path.name} is missing (train with --out first)"
            )
    from frl import envs
    from frl.algos import get

    try:
        saved = json.loads(config_path.read_text())
        agent = get(saved["algo"])
        fields = {f.name for f in dataclasses.fields(agent.config)}
        config = agent.config(**{k: v for k, v in saved["config"].items() if k in fields})
        env = envs.make(config.env_id, **saved.get("env_options", {}))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UsageError(
            f"{config_path} is not a readable run config ({type(err).__name__}: {err})"
        ) from None
    return saved["algo"], agent.make_train(config, env), ckpt_path


def cmd_eval(args: argparse.Namespace) -> int:
    """Re-evaluate a run folder's checkpoint and print the returns per seed; the exit code."""
    check_positive(args, "--episodes")
    algo, train, ckpt_path = load_run(Path(args.run_dir))
    from frl import random
    from frl.driver import checkpoint, evaluate
    from frl.driver.evaluation import evaluate_outcomes, outcomes

    try:
        saved = checkpoint.load(ckpt_path)
    except checkpoint.CheckpointError as err:
        raise UsageError(str(err)) from None
    params = saved["state"]["params"]
    members = saved["members"]
    if len(members) == 1 and params.batch_dims == 0:
        params = params.unsqueeze(0)
    returns: list[float] = []
    rates: dict[str, list[float]] = {name: [] for name in outcomes(train.env)}  # win rate, say
    env_states = saved.get("env_states") or [None] * len(members)
    for i, member in enumerate(members):
        key = random.fold_in(random.key(member["seed"]), 7)
        if rates:
            ret, member_rates = evaluate_outcomes(train, params[i], key, args.episodes)
            for name, rate in member_rates.items():
                rates[name].append(rate)
        else:
            ret = evaluate(train, params[i], key, args.episodes, env_state=env_states[i])
        returns.append(float(ret.double().mean()))
    steps = saved["iteration"] * train.steps_per_iteration
    print(f"{algo} on {train.env.id}: checkpoint at {steps:,} steps, {args.episodes} episodes per seed")
    for line in results_table(members, returns, rates):
        print(line)
    return 0
