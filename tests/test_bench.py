"""frl bench's machinery at a tiny budget: running, resuming, refusing mixed settings, the report,
compare's verdicts, and the command line's one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from frl.algos import get
from frl.bench import SUITES, get_suite
from frl.bench.compare import compare, format_comparison
from frl.bench.report import write_report
from frl.bench.runner import BenchSettings, bench_job, plan, random_return_of, run_suite
from frl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_random_returns_for_each_action_kind():
    cartpole = random_return_of("CartPole-v1")  # discrete: ~22 (gymnasium's random agent)
    assert 17.0 < cartpole < 28.0
    pendulum = random_return_of("Pendulum-v1")  # box: uniform torques, ~ -1,200
    assert -1600.0 < pendulum < -900.0
    combat = random_return_of("MicroCombat-3m-v0")  # multi-agent: legal actions, a team reward
    assert 0.0 <= combat < 1.0
    assert random_return_of("CartPole-v1") == cartpole  # one key: the same episodes


@pytest.mark.parametrize("name", [s for s in SUITES if not SUITES[s].opt_in])
def test_every_suite_plans_its_cells_and_measures_its_random_policy(name):
    suite = SUITES[name]
    cells = plan(suite, BenchSettings(suite=name, seeds=(0,), scale=0.5))
    assert [(c["algo"], c["env"]) for c in cells] == [(a, e) for a, e, _ in suite.cells()]
    for cell, (_, _, steps) in zip(cells, suite.cells(), strict=True):
        agent = get(cell["algo"])
        per = agent.make_train(agent.config.preset(cell["env"], **cell["point"])).steps_per_iteration
        assert steps // 2 - per < cell["steps"] <= steps // 2  # whole iterations of half the budget
        assert cell["config"]["total_timesteps"] == cell["steps"]
    for task in suite.tasks:
        value = random_return_of(task.env, episodes=20)
        assert np.isfinite(value) and value < task.reference.value, task.env
        assert task.reference.source


def _settings(**kwargs):
    base = dict(
        suite="classic",
        seeds=(0, 1),
        scale=0.006,
        eval_points=2,
        eval_episodes=2,
        compile=False,
        algos=("ppo", "reinforce"),
        envs=("CartPole-v1",),
    )
    return BenchSettings(**{**base, **kwargs})


def test_suite_runs_resumes_refuses_mixing_and_reports(tmp_path):
    suite = get_suite("classic")
    lines: list[str] = []
    manifest = run_suite(suite, tmp_path, _settings(), log=lines.append)
    assert manifest["failed"] == []
    assert lines[0] == "classic: 2 cells, 0 finished, 2 to run"
    cells = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("cells/*/cell.json")}
    assert sorted(cells) == ["ppo__CartPole-v1", "reinforce__CartPole-v1"]
    for cell in cells.values():
        assert cell["seeds"] == [0, 1] and len(cell["eval_returns"]) == 2
        assert len(cell["curve"]) >= 1 and cell["curve"][-1][0] == cell["steps"]
        assert all(np.isfinite(cell["eval_returns"]))
    machine = manifest["machine"]
    assert machine["packages"]["torch"].startswith("2.13") and machine["threads_per_process"] == 1
    assert manifest["configs"]["ppo__CartPole-v1"]["num_envs"] == 4
    assert 15 < json.loads((tmp_path / "random.json").read_text())["CartPole-v1"] < 30

    # resumed: finished cells are kept as they are; an interrupted one (no cell.json) reruns
    kept = (tmp_path / "cells/ppo__CartPole-v1/cell.json").stat().st_mtime_ns
    lines.clear()
    run_suite(suite, tmp_path, _settings(), log=lines.append)
    assert lines == ["classic: 2 cells, 2 finished, 0 to run"]
    (tmp_path / "cells/reinforce__CartPole-v1/cell.json").unlink()
    lines.clear()
    manifest = run_suite(suite, tmp_path, _settings(), log=lines.append)
    assert lines[0] == "classic: 2 cells, 1 finished, 1 to run" and len(lines) == 2
    assert (tmp_path / "cells/ppo__CartPole-v1/cell.json").stat().st_mtime_ns == kept
    assert len(manifest["resumed"]) == 2

    # a cell whose config the suite's definition changed is set aside and run again
    before = json.loads((tmp_path / "cells/ppo__CartPole-v1/cell.json").read_text())
    suite_sac = dataclasses.replace(
        suite,
        tasks=tuple(
            dataclasses.replace(t, configs={"ppo": {"ent_coef": 0.02}}) if t.env == "CartPole-v1" else t
            for t in suite.tasks
        ),
    )
    lines.clear()
    run_suite(suite_sac, tmp_path, _settings(), log=lines.append)
    assert lines[0] == (
        "classic: 2 cells, 1 finished, 1 to run (1 finished with another config: set aside, to run again)"
    )
    aside = list((tmp_path / "cells/ppo__CartPole-v1").glob("stale-*/cell.json"))
    assert len(aside) == 1 and json.loads(aside[0].read_text()) == before
    rerun = json.loads((tmp_path / "cells/ppo__CartPole-v1/cell.json").read_text())
    assert rerun["config"]["ent_coef"] == 0.02
    run_suite(suite, tmp_path, _settings(), log=lines.append)  # and back: the first config again

    # other settings never mix into the folder
    with pytest.raises(ValueError, match="seeds=\\[0, 1\\]"):
        run_suite(suite, tmp_path, _settings(seeds=(0, 1, 2)), log=lines.append)
    with pytest.raises(ValueError, match="overrides"):
        run_suite(suite, tmp_path, _settings(overrides={"ppo": {"learning_rate": 0.1}}), log=lines.append)
    (tmp_path.parent / "other").mkdir(exist_ok=True)
    (tmp_path.parent / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a bench folder"):
        run_suite(suite, tmp_path.parent / "other", _settings(), log=lines.append)

    (tmp_path / "peers").mkdir()  # benchmarks/peers/run.py --into writes rows like these
    row = {"row": "sb3", "seeds": 1, "steps_per_seed": 1024, "env_steps_per_s": 5000.0, "compile_s": 0.0}
    row.update(wall_s=1.0, final_return=123.4)
    peers = {"algo": "ppo", "env": "CartPole-v1", "rows": [row]}
    (tmp_path / "peers" / "ppo.json").write_text(json.dumps(peers))
    md, html = write_report(tmp_path, reps=500)
    text = md.read_text()
    for heading in (
        "## Learning curves",
        "## Final returns",
        "## Aggregates",
        "## Probability of improvement",
    ):
        assert heading in text
    assert "| CartPole-v1 | ppo | 2 |" in text and "docs.cleanrl.dev" in text
    assert "| ppo | CartPole-v1 | sb3 | 1 | 1,024 | 5,000 | 0 | 1 | 123.4 |" in text
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 4 and 'src="http' not in page


def test_plan_refuses_what_the_suite_does_not_have(tmp_path):
    suite = get_suite("classic")
    with pytest.raises(ValueError, match="no algorithm 'td3'"):
        run_suite(suite, tmp_path, _settings(algos=("td3",)))
    with pytest.raises(ValueError, match="no environment 'Pong'"):
        run_suite(suite, tmp_path, _settings(envs=("Pong",)))
    with pytest.raises(ValueError, match="override for 'qmix'"):
        run_suite(suite, tmp_path, _settings(overrides={"qmix": {"gamma": 0.9}}))
    with pytest.raises(ValueError, match=r"ppo\.nope"):
        run_suite(suite, tmp_path, _settings(overrides={"ppo": {"nope": 1}}))
    assert not (tmp_path / "manifest.json").exists()


def test_a_failing_cell_is_reported_not_raised():
    result = bench_job(
        {
            "algo": "ppo",
            "env": "NoSuchEnv-v0",
            "point": {},
            "seeds": [0],
            "total_steps": 512,
            "compile": False,
            "eval_episodes": 1,
            "out_dir": None,
        }
    )
    assert "NoSuchEnv-v0" in result["error"] and result["wall_s"] >= 0


def _fake_bench(folder: Path, finals: dict[tuple[str, str], np.ndarray]) -> Path:
    """A finished bench folder of the classic suite holding the given final returns."""
    randoms = {"CartPole-v1": 22.0, "Acrobot-v1": -499.0, "MountainCar-v0": -200.0}
    cells = [[a, e, 1000] for (a, e) in finals]
    seeds = len(next(iter(finals.values())))
    settings = _settings(seeds=tuple(range(seeds)), algos=None, envs=None).as_json()
    (folder / "cells").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"settings": {**settings, "cells": cells}}))
    (folder / "random.json").write_text(json.dumps(randoms))
    for (algo, env), values in finals.items():
        where = folder / "cells" / f"{algo}__{env}"
        where.mkdir()
        record = {"algo": algo, "env": env, "steps": 1000, "eval_returns": values.tolist()}
        (where / "cell.json").write_text(json.dumps(record))
    return folder


def _draw(rng: np.random.Generator, broken: bool = False) -> dict[tuple[str, str], np.ndarray]:
    """8 seeds per cell: a working agent's spread of final returns, or a diverged one's."""
    shapes = {
        "CartPole-v1": ((480.0, 30.0, 500.0), (30.0, 10.0, 500.0)),
        "Acrobot-v1": ((-90.0, 10.0, -60.0), (-495.0, 5.0, -60.0)),
        "MountainCar-v0": ((-125.0, 20.0, -90.0), (-200.0, 0.0, -90.0)),
    }
    out = {}
    for algo in ("dqn", "ppo"):
        for env, (good, bad) in shapes.items():
            mean, sd, cap = bad if broken else good
            out[(algo, env)] = np.minimum(rng.normal(mean, sd, 8), cap).round()
    return out


def test_compare_flags_a_broken_config_and_not_a_rerun(tmp_path):
    base = _fake_bench(tmp_path / "a", _draw(np.random.default_rng(0)))
    for k in range(1, 6):  # reruns with other seeds: the same distributions, other draws
        rerun = _fake_bench(tmp_path / f"rerun{k}", _draw(np.random.default_rng(k)))
        result = compare(base, rerun, reps=4000)
        assert result["regressions"] == [], format_comparison(result)
    broken = _fake_bench(tmp_path / "broken", _draw(np.random.default_rng(9), broken=True))
    result = compare(base, broken, reps=4000)
    assert len(result["regressions"]) == 6 + 2 + 1  # every cell, both algorithms, overall
    assert result["overall"]["p_worse"] == 1.0 and result["overall"]["low"] == 1.0
    assert format_comparison(result)[-1].startswith("9 regressions: dqn on CartPole-v1")
    other = _fake_bench(tmp_path / "short", {("ppo", "CartPole-v1"): np.zeros(8)})
    json_path = other / "cells" / "ppo__CartPole-v1" / "cell.json"
    json_path.write_text(json.dumps({**json.loads(json_path.read_text()), "steps": 500}))
    with pytest.raises(ValueError, match="not comparable"):
        compare(base, other)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def test_command_line_errors_are_one_line(capsys, tmp_path):
    code, err = _cli(capsys, "bench", "nosuch")
    assert code == 2 and err == "frl: error: unknown suite 'nosuch'; suites: " + ", ".join(
        ["classic", "minatar", "applications", "marl", "exploration", "mujoco", "atari"]
    )
    code, err = _cli(capsys, "bench", "compare", str(tmp_path))
    assert code == 2 and "give two bench folders" in err
    code, err = _cli(capsys, "bench", "compare", str(tmp_path), str(tmp_path))
    assert code == 2 and err.endswith("not a bench folder (no manifest.json)")
    out = str(tmp_path / "b")
    code, err = _cli(capsys, "bench", "classic", "--set", "ppo.nofield=1", "--out", out)
    assert code == 2 and err == "frl: error: --set 'ppo.nofield=1': ppo.Config has no field 'nofield'"
    code, err = _cli(capsys, "bench", "classic", "--set", "ppo.learning_rate=fast", "--out", out)
    assert code == 2 and "learning_rate" in err and "fast" in err
    code, err = _cli(capsys, "bench", "classic", "--scale", "0", "--out", out)
    assert code == 2 and err == "frl: error: --scale must be positive, got 0.0"
    code, err = _cli(capsys, "bench", "atari", "--out", out)
    assert code == 2 and "GPU only" in err
    assert not Path(out).exists()


def test_command_line_runs_a_tiny_suite_in_two_processes_and_resumes_after_sigterm(tmp_path):
    """The whole path a user takes: cells in two spawned worker processes, stopped by SIGTERM
    (exit 1, one line, finished cells kept, workers stopped), resumed, then the report."""
    out = tmp_path / "bench"
    command = [
        sys.executable,
        "-m",
        "frl.cli",
        "bench",
        "classic",
        *("--algos", "ppo", "--envs", "CartPole-v1,Acrobot-v1", "--seeds", "2", "--scale", "0.01"),
        *("--no-compile", "--eval-points", "1", "--eval-episodes", "1", "--reps", "300", "--nproc", "2"),
        *("--out", str(out)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("cells/*/run")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=300)
    kept = sorted(p.parent.name for p in out.glob("cells/*/cell.json"))
    if first.returncode:  # stopped mid-suite
        assert first.returncode == 1 and err.strip().splitlines()[-1].startswith("frl: error: interrupted")
    else:  # finished before the signal landed
        assert kept == ["ppo__Acrobot-v1", "ppo__CartPole-v1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"classic: 2 cells, {len(kept)} finished, {2 - len(kept)} to run" in done.stdout
    assert (out / "report.html").exists() and (out / "cells/ppo__Acrobot-v1/cell.json").exists()
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert again.returncode == 0 and "2 finished, 0 to run" in again.stdout
