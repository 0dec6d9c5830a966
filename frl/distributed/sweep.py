"""Sweeps: a grid of configs, each trained on many seeds (vmapped), run on local processes or Ray.

A sweep is a list of jobs, one per point of the grid (``itertools.product`` of the values of
``space``, in the order given); each job builds ``frl.algos.get(algo).config.preset(env_id, **point)``
and trains all its seeds in one vmapped :func:`frl.run`. Jobs are independent:

* ``backend="local"`` (default): ``nproc`` worker processes (spawned; one thread each) take
  jobs from a pool; with ``nproc=1`` the jobs run in this process.
* ``backend="ray"`` (``pip install 'frl[ray]'``): a Ray Tune grid (``tune.grid_search`` over each
  field), one trial per job, ``nproc`` CPUs; ``ray_address=None`` starts a local Ray bound to
  127.0.0.1, or pass a cluster's address.

Each job returns ``{"point", "seeds", "eval_returns", "mean", "iqm", "env_steps_per_s", "wall_s",
"compile_s", "env_steps", "curve", "nonfinite", "interrupted"}`` (``curve``: ``[[env_steps,
[return per seed]], ...]`` at each evaluation). :func:`run_jobs` runs any list of job specs on
either backend and hands each result over as it finishes (``frl bench`` writes each cell as it
lands).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from frl.driver.members import grid

__all__ = ["format_results", "grid", "run_job", "run_jobs", "sweep"]


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """One job: ``spec`` holds ``algo``, ``env``, ``point`` (Config overrides), ``seeds``,
    ``total_steps``, ``compile``, ``eval_episodes`` and ``out_dir`` (or None); optional
    ``eval_every`` (default: at the end only) and ``on_nonfinite`` (default ``"stop"``)."""
    import torch

    from frl.algos import get
    from frl.driver import run
    from frl.driver.logging import iqm

    torch.set_num_threads(1)
    agent = get(spec["algo"])
    # the budget is the config's too: schedules (PPO's annealed rate, DQN's epsilon) span it
    budget = {} if spec["total_steps"] is None else {"total_timesteps": spec["total_steps"]}
    config = agent.config.preset(spec["env"], **{**budget, **spec["point"]})
    result = run(
        agent.make_train(config),
        seeds=spec["seeds"],
        total_steps=spec["total_steps"],
        compile=spec["compile"],
        eval_every=spec.get("eval_every"),
        eval_episodes=spec["eval_episodes"],
        out_dir=spec["out_dir"],
        progress=False,
        on_nonfinite=spec.get("on_nonfinite", "stop"),
    )
    returns = result.eval_returns
    return {
        "point": spec["point"],
        "seeds": [m["seed"] for m in result.members],
        "eval_returns": returns,
        "mean": sum(returns) / len(returns),
        "iqm": iqm(returns),
        "env_steps_per_s": result.env_steps_per_s,
        "wall_s": result.wall_s,
        "compile_s": result.compile_s,
        "env_steps": result.env_steps,
        "curve": [
            [row["env_steps"], row["eval_return_per_member"]]
            for row in result.history
            if "eval_return_per_member" in row
        ],
        "nonfinite": result.nonfinite,
        "interrupted": result.interrupted,
    }


def run_jobs(
    specs: Sequence[dict[str, Any]],
    *,
    nproc: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    job: Callable[[dict[str, Any]], dict[str, Any]] = run_job,
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """``job(spec)`` for every spec, ``nproc`` at a time on ``backend``; results in spec order.
    ``on_result(index, result)`` is called in this process as each job finishes (local) or once
    the grid is done (Ray). ``job`` must be importable by name (worker processes pickle it)."""
    if backend not in ("local", "ray"):
        raise ValueError(f"run_jobs: `backend` must be 'local' or 'ray', got {backend!r}")
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"run_jobs: `nproc` must be a positive int, got {nproc!r}")
    results: list[dict[str, Any] | None] = [None] * len(specs)

    def done(i: int, result: dict[str, Any]) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)

    if backend == "ray":
        for i, result in enumerate(_sweep_ray(list(specs), nproc, ray_address, job)):
            done(i, result)
    elif nproc == 1 or len(specs) <= 1:
        for i, spec in enumerate(specs):
            done(i, job(spec))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(nproc, len(specs)), mp_context=context)
        try:
            futures = {pool.submit(job, spec): i for i, spec in enumerate(specs)}
            for future in as_completed(futures):
                done(futures[future], future.result())
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or a job raised: stop, do not drain
            workers = list(getattr(pool, "_processes", {}).values())  # no public handle on them
            pool.shutdown(wait=False, cancel_futures=True)
            for process in workers:  # SIGKILL: a run stops gracefully on SIGTERM, then takes the next job
                process.kill()
            raise
        pool.shutdown()
    return results  # type: ignore[return-value]


def _point_name(point: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items()) or "default"


def sweep(
    algo: str,
    env_id: str,
    space: Mapping[str, Sequence[Any]],
    *,
    seeds: int | Sequence[int] = 4,
    total_steps: int | None = None,
    nproc: int = 1,
    backend: str = "local",
    compile: bool = False,
    eval_episodes: int = 10,
    out_dir: str | Path | None = None,
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Train every point of ``grid(space)`` on ``seeds`` (see the module docstring); results in
    grid order. ``out_dir`` receives one run folder per point and ``sweep.json``."""
    from frl.algos import get

    agent = get(algo)
    if backend not in ("local", "ray"):
        raise ValueError(f"sweep: `backend` must be 'local' or 'ray', got {backend!r}")
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"sweep: `nproc` must be a positive int, got {nproc!r}")
    points = grid(space)
    fields = {f.name for f in dataclasses.fields(agent.config)}
    unknown = sorted(set(space) - fields)
    if unknown:
        raise ValueError(f"sweep: {algo}.Config has no field {unknown[0]!r}; fields: {sorted(fields)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    out = None if out_dir is None else Path(out_dir)
    if total_steps is None:
        total_steps = agent.config.preset(env_id).total_timesteps
    specs = [
        {
            "algo": algo,
            "env": env_id,
            "point": point,
            "seeds": seed_list,
            "total_steps": total_steps,
            "compile": compile,
            "eval_episodes": eval_episodes,
            "out_dir": None if out is None else str(out / _point_name(point)),
        }
        for point in points
    ]
    results = run_jobs(specs, nproc=nproc, backend=backend, ray_address=ray_address)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".sweep.json.tmp"
        tmp.write_text(json.dumps({"algo": algo, "env": env_id, "results": results}, indent=2) + "\n")
        os.replace(tmp, out / "sweep.json")
    return results


def _sweep_ray(
    specs: list[dict[str, Any]],
    nproc: int,
    address: str | None,
    job: Callable[[dict[str, Any]], dict[str, Any]] = run_job,
) -> list[dict[str, Any]]:
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise ImportError("sweep(backend='ray') needs Ray: pip install 'frl[ray]'") from err

    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(
                num_cpus=nproc, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False
            )
        else:
            ray.init(address=address, log_to_driver=False)
    try:

        def trainable(config: dict[str, Any]) -> dict[str, Any]:
            return {"payload": json.dumps(job(specs[config["job"]]))}  # Ray flattens nested metrics

        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"job": tune.grid_search(list(range(len(specs))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=nproc),
        )
        grid_results = tuner.fit()
        by_job = {}
        for r in grid_results:
            if r.error is not None:
                raise RuntimeError(f"sweep: a Ray trial failed: {r.error}")
            by_job[r.config["job"]] = json.loads(r.metrics["payload"])
        return [by_job[i] for i in range(len(specs))]
    finally:
        if started:
            ray.shutdown()


def format_results(results: list[dict[str, Any]]) -> list[str]:
    """A text table: one row per point, mean and IQM over its seeds."""
    lines = ["point                                     mean      IQM   seeds", "-" * 62]
    for r in results:
        mean = r["mean"] if math.isfinite(r["mean"]) else math.nan
        lines.append(f"{_point_name(r['point']):<38} {mean:8.1f} {r['iqm']:8.1f}   {len(r['seeds'])}")
    return lines
