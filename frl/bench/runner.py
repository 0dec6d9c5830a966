"""Running a suite: every (algorithm, task) cell trains N seeds in one vmapped run, cells in
parallel over local processes or Ray (:func:`frl.distributed.sweep.run_jobs`), everything under one
folder.

Layout of a bench folder::

    manifest.json          what ran: settings (suite, seeds, budgets, overrides, configs) and the
                           machine (frl commit, package versions, CPU, threads, processes)
    random.json            the random policy's mean return per task (measured once)
    cells/<algo>__<env>/
        cell.json          the finished cell: final return per seed, the evaluation curve,
                           throughput, the config; written atomically when the cell ends
        run/               the run folder (metrics.jsonl, results.json)
        error.json         a cell that failed (rerun on resume)
    report.md, report.html (frl.bench.report)

The suite is resumable: a finished cell (``cell.json``) is never rerun while its budget and
config are the plan's; an unfinished cell (a run folder without ``cell.json``, left by an
interruption) is started again from scratch; a finished cell whose budget or config the suite's
definition has since changed is set aside (``cells/<name>/stale-<time>/``) and run again.
Resuming requires the same settings (another seed count, budget scale, override or filter is
refused by name).

A member (seed) that meets a non-finite value is frozen at its last finite parameters and scored
by them (``on_nonfinite="skip-member"``); when every member of a cell diverges, the cell scores the
random policy's return and is marked ``diverged``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from frl.bench.suites import Suite

__all__ = [
    "BenchSettings",
    "bench_job",
    "cell_name",
    "cpu_model",
    "load_cells",
    "random_return_of",
    "run_suite",
]

CELLS = "cells"
MANIFEST = "manifest.json"
RANDOM = "random.json"


def cell_name(algo: str, env: str) -> str:
    """The folder of a cell: ``ppo__CartPole-v1`` (``/`` and ``:`` of an id become ``_``)."""
    return f"{algo}__{env.replace('/', '_').replace(':', '_')}"


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What decides a suite's results; a resumed suite must match them field by field.

    ``scale`` multiplies every task's budget; ``overrides`` maps an algorithm to Config fields
    (``{"ppo": {"learning_rate": 0.025}}``); ``algos``/``envs`` restrict the cells (None: all)."""

    suite: str
    seeds: tuple[int, ...]
    scale: float = 1.0
    eval_points: int = 10
    eval_episodes: int = 10
    compile: bool = True
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    algos: tuple[str, ...] | None = None
    envs: tuple[str, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["seeds"] = list(self.seeds)
        data["algos"] = None if self.algos is None else list(self.algos)
        data["envs"] = None if self.envs is None else list(self.envs)
        data["overrides"] = {a: dict(f) for a, f in self.overrides.items()}
        return json.loads(json.dumps(data))


def plan(suite: Suite, settings: BenchSettings) -> list[dict[str, Any]]:
    """The cells to run: ``{algo, env, steps, eval_every, point, config}`` each, checked: every
    filter and override names something in the suite, every config builds."""
    from frl.algos import get

    cells = suite.cells()
    algos = {a for a, _, _ in cells}
    envs = {e for _, e, _ in cells}
    for name, wanted, have in (("algorithm", settings.algos, algos), ("environment", settings.envs, envs)):
        for item in wanted or ():
            if item not in have:
                raise ValueError(
                    f"suite {suite.name} has no {name} {item!r}; it has {', '.join(sorted(have))}"
                )
    for algo in settings.overrides:
        if algo not in algos:
            raise ValueError(f"override for {algo!r}: suite {suite.name} runs {', '.join(sorted(algos))}")
    if settings.scale <= 0:
        raise ValueError(f"scale must be positive, got {settings.scale}")
    out = []
    for algo, env, steps in cells:
        if settings.algos is not None and algo not in settings.algos:
            continue
        if settings.envs is not None and env not in settings.envs:
            continue
        point = {**suite.task(env).configs.get(algo, {}), **settings.overrides.get(algo, {})}
        agent = get(algo)
        fields = {f.name for f in dataclasses.fields(agent.config)}
        for name in point:
            if name not in fields or name in ("env_id", "total_timesteps"):
                raise ValueError(f"override {algo}.{name}: not a field to set of {algo}.Config")
        per_iteration = agent.make_train(agent.config.preset(env, **point)).steps_per_iteration
        budget = max(per_iteration, int(steps * settings.scale) // per_iteration * per_iteration)
        config = agent.config.preset(env, total_timesteps=budget, **point)
        eval_every = max(per_iteration, budget // settings.eval_points)
        out.append(
            {
                "algo": algo,
                "env": env,
                "steps": budget,
                "eval_every": eval_every,
                "point": point,
                "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
            }
        )
    return out


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{'+dirty' if dirty else ''}" if head else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(nproc: int, backend: str) -> dict[str, Any]:
    """The machine and software a suite ran on (the manifest's ``machine``)."""
    from importlib import metadata

    import frl

    versions = {}
    for package in ("torch", "tensordict", "torchrl", "gymnasium", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "frl": frl.__version__,
        "commit": _git_commit(),
        "python": platform.python_version(),
        "packages": versions,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "threads_per_process": 1,
        "processes": nproc,
        "backend": backend,
        "host": platform.node(),
        "command": " ".join(sys.argv),
    }


def random_return_of(env_id: str, episodes: int = 100, seed: int = 0) -> float:
    """The mean return of a uniformly random policy on a pure environment: discrete actions
    uniform over ``n``, box actions uniform in their bounds, slates uniform over ordered sets of
    ``k`` distinct items, multi-agent actions uniform over each agent's legal actions (a team
    reward counted once); ``episodes`` episodes side by side, each counted until it first ends."""
    import torch

    from frl import random
    from frl.envs import make
    from frl.envs.spaces import Slate

    env = make(env_id)
    key = random.key(seed)
    k_reset, key = random.split(key)
    obs, state = env.reset(k_reset, num_envs=episodes)
    total = torch.zeros(episodes, dtype=torch.float64)
    live = torch.ones(episodes, dtype=torch.bool)
    group = getattr(env, "group", None)
    for _ in range(env.max_episode_steps):
        key, k_action, k_step = random.split(key, 3)
        if group is not None:  # multi-agent: uniform over each agent's legal actions
            mask = obs[group]["action_mask"]
            noise = random.uniform(k_action, mask.shape)
            action = torch.where(mask, noise, -1.0).argmax(-1)
        elif isinstance(env.action_space, Slate):  # k distinct items: the first k of a random order
            noise = random.uniform(k_action, (episodes, env.action_space.n))
            action = noise.argsort(-1)[:, : env.action_space.k]
        elif getattr(env, "discrete", False):
            action = random.randint(k_action, (episodes,), 0, env.action_space.n)
        else:
            space = env.action_space
            low, high = space.low_tensor(), space.high_tensor()
            action = low + (high - low) * random.uniform(k_action, (episodes, *space.shape))
        obs, state, reward, terminated, truncated, _ = env.step(k_step, state, action)
        reward = reward.double()
        if reward.dim() > 1:  # a team reward per agent: the team's
            reward = reward.reshape(episodes, -1)[:, 0]
        total += torch.where(live, reward, 0.0)
        done = terminated | truncated
        live = live & ~(done.reshape(episodes, -1).any(-1) if done.dim() > 1 else done)
        if not bool(live.any()):
            break
    return float(total.mean())


def bench_job(spec: dict[str, Any]) -> dict[str, Any]:
    """One cell in a worker process: :func:`frl.distributed.sweep.run_job` with members that meet a
    non-finite value frozen; a cell whose every member diverged, or that failed, is reported in the
    result (``diverged``, ``error``) instead of raising, so the other cells go on."""
    from frl.distributed.sweep import run_job
    from frl.driver.health import NonFiniteError

    started = time.perf_counter()
    try:
        result = run_job({**spec, "on_nonfinite": "skip-member"})
        result["diverged"] = False
    except NonFiniteError as err:
        result = {"diverged": True, "message": str(err), "wall_s": time.perf_counter() - started}
    except Exception as err:  # a failed cell is recorded and rerun on resume; the others continue
        result = {"error": f"{type(err).__name__}: {err}", "wall_s": time.perf_counter() - started}
    return result


def _write_json(path: Path, payload: Any) -> None:
    from frl.driver.logging import write_json

    write_json(path, payload)


def load_cells(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The finished cells of a bench folder by name (``cell.json`` each)."""
    cells = {}
    root = Path(folder) / CELLS
    if not root.is_dir():
        return cells
    for path in sorted(root.glob("*/cell.json")):
        cells[path.parent.name] = json.loads(path.read_text())
    return cells


def _set_aside(where: Path, why: str) -> Path:
    """Move a cell's files into ``where/<why>-<time>/`` (never deleted); returns that folder."""
    aside = where / time.strftime(f"{why}-%Y%m%d-%H%M%S")
    suffix = 0
    while aside.exists():
        suffix += 1
        aside = where / f"{time.strftime(f'{why}-%Y%m%d-%H%M%S')}-{suffix}"
    aside.mkdir(parents=True)
    for name in ("cell.json", "run", "error.json"):
        if (where / name).exists():
            (where / name).rename(aside / name)
    return aside


def _check_settings(folder: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a resumable folder with the same settings (seeds, scale, overrides,
    filters...), None for a new folder; a ValueError naming the first setting that differs, or a
    folder that is not a bench's. The cells' budgets and configs are checked cell by cell."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        if folder.exists() and any(not p.name.startswith(".") for p in folder.iterdir()):
            raise ValueError(f"{folder} is not empty and holds no {MANIFEST}: not a bench folder")
        return None
    manifest = json.loads(manifest_path.read_text())
    before = manifest.get("settings", {})
    for name in sorted((set(before) | set(settings)) - {"cells"}):  # cells: checked one by one
        if before.get(name) != settings.get(name):
            raise ValueError(
                f"{folder} holds a bench with {name}={before.get(name)!r}; this run asks for "
                f"{settings.get(name)!r} (resume with the same settings, or use another --out)"
            )
    return manifest


def run_suite(
    suite: Suite,
    folder: str | Path,
    settings: BenchSettings,
    *,
    nproc: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every unfinished cell of ``suite`` under ``folder`` and return the manifest (see the
    module docstring). Finished cells are kept as they are."""
    from frl.distributed.sweep import run_jobs

    folder = Path(folder)
    cells = plan(suite, settings)
    manifest = _check_settings(folder, settings.as_json())
    folder.mkdir(parents=True, exist_ok=True)
    here = machine(nproc, backend)
    configs = {cell_name(c["algo"], c["env"]): c["config"] for c in cells}
    stale = []
    if manifest is None:
        manifest = {"machine": here, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed": []}
    else:
        manifest["resumed"].append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **here})
        # a finished cell run with another budget or config (the suite's definition changed) is
        # set aside in its folder and run again; the others are kept
        for name, cell in load_cells(folder).items():
            if name in configs and cell.get("config", manifest["configs"].get(name)) != configs[name]:
                _set_aside(folder / CELLS / name, "stale")
                stale.append(name)
    manifest["settings"] = {**settings.as_json(), "cells": [[c["algo"], c["env"], c["steps"]] for c in cells]}
    manifest["configs"] = configs
    _write_json(folder / MANIFEST, manifest)

    randoms = json.loads((folder / RANDOM).read_text()) if (folder / RANDOM).exists() else {}
    for task in suite.tasks:
        if task.env in {c["env"] for c in cells} and task.env not in randoms:
            randoms[task.env] = task.random if task.random is not None else random_return_of(task.env)
    _write_json(folder / RANDOM, randoms)

    done = {name: cell for name, cell in load_cells(folder).items() if name in configs}
    pending = [c for c in cells if cell_name(c["algo"], c["env"]) not in done]
    again = f" ({len(stale)} finished with another config: set aside, to run again)" if stale else ""
    log(f"{suite.name}: {len(cells)} cells, {len(done)} finished, {len(pending)} to run{again}")
    specs = []
    for c in pending:
        where = folder / CELLS / cell_name(c["algo"], c["env"])
        if (where / "run").exists():  # interrupted: its partial run is started again
            shutil.rmtree(where / "run")
        (where / "error.json").unlink(missing_ok=True)
        where.mkdir(parents=True, exist_ok=True)
        specs.append(
            {
                "algo": c["algo"],
                "env": c["env"],
                "point": c["point"],
                "seeds": list(settings.seeds),
                "total_steps": c["steps"],
                "eval_every": c["eval_every"],
                "compile": settings.compile,
                "eval_episodes": settings.eval_episodes,
                "out_dir": str(where / "run"),
            }
        )
    failed = []
    finished = [len(done)]

    def on_result(i: int, result: dict[str, Any]) -> None:
        c = pending[i]
        name = cell_name(c["algo"], c["env"])
        where = folder / CELLS / name
        if result.get("interrupted"):  # stopped early by a signal: not a finished cell
            log(f"  {name}: interrupted ({result['interrupted']}); it reruns on resume")
            return
        if "error" in result:
            failed.append(name)
            _write_json(where / "error.json", result)
            log(f"  {name}: FAILED ({result['error'].splitlines()[0][:200]})")
            return
        finished[0] += 1
        record = {
            "algo": c["algo"],
            "env": c["env"],
            "steps": c["steps"],
            "seeds": list(settings.seeds),
            "point": c["point"],
            "config": c["config"],
            "commit": here["commit"],
            **result,
        }
        if result["diverged"]:
            record["eval_returns"] = [randoms[c["env"]]] * len(settings.seeds)
        _write_json(where / "cell.json", record)
        returns = record["eval_returns"]
        mark = " (every seed diverged: scored as random)" if result["diverged"] else ""
        log(
            f"  [{finished[0]}/{len(cells)}] {c['algo']} on {c['env']}: final mean "
            f"{sum(returns) / len(returns):.2f} over {len(returns)} seeds, {result['wall_s']:.0f} s"
            f"{mark}"
        )

    run_jobs(specs, nproc=nproc, backend=backend, ray_address=ray_address, job=bench_job, on_result=on_result)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    manifest["failed"] = failed
    _write_json(folder / MANIFEST, manifest)
    return manifest


def seeds_of(count: int, first: int = 0) -> tuple[int, ...]:
    """Seeds ``first .. first + count - 1``."""
    return tuple(range(first, first + count))
