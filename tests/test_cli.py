"""The frl command line: one-line errors with exit code 2 and nothing written; a run's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from frl.algos import AGENTS
from frl.cli import main

BAD = [
    (
        ["train", "ppo", "--env", "Cartpole"],
        "unknown environment 'Cartpole'; choose one of Acrobot-v1, Asterix-MinAtar, BernoulliBandits-v0, "
        "Breakout-MinAtar, CartPole-v1",
    ),
    (
        ["train", "dqn", "--env", "Pendulum-v1"],
        "dqn needs discrete actions; Pendulum-v1 has continuous actions",
    ),
    (
        ["train", "sac", "--env", "CartPole-v1"],
        "sac needs continuous actions; CartPole-v1 has discrete actions",
    ),
    (["train", "ppo", "--steps", "-5"], "--steps must be a positive count, got -5"),
    (["train", "ppo", "--steps", "0"], "--steps must be a positive count"),
    (["train", "ppo", "--seeds", "0"], "--seeds must be a positive count"),
    (
        ["train", "a3c"],
        "unknown algorithm 'a3c'; choose one of a2c, dqn, ippo, mappo, ppo, ppo_icm, ppo_rnd, qmix, "
        "recurrent_ppo, reinforce, sac, slateq, tabular, vdn",
    ),
    (
        ["train", "ppo", "--config.lr", "3"],
        "--config.lr: unknown field of ppo.Config; valid fields:",
    ),
    (["train", "ppo", "--config.learning_rate", "fast"], "--config.learning_rate: expected a float"),
    (["train", "ppo", "--config.gamma", "1.5"], "`gamma` must be a finite number in [0, 1], got 1.5"),
    (
        ["train", "ppo", "--config.learning_rate", "nan"],
        "`learning_rate` must be a finite number in (0, inf)",
    ),
    (["train", "ppo", "--config.clip_coef", "inf"], "`clip_coef` must be a finite number in [0, 1], got inf"),
    (["train", "dqn", "--config.learning_starts", "-5"], "`learning_starts` must be an int in [0, inf)"),
    (
        ["train", "ppo", "--config.num_steps", "100", "--config.rollout_chunk", "16"],
        "`num_steps` (100) must be a multiple of `rollout_chunk` (16)",
    ),
    (["train", "ppo", "--steps", "100"], "`total_timesteps` (100) must cover one iteration"),
    (["train", "ppo", "--bogus"], "unrecognized argument '--bogus'"),
    (
        ["train", "sac", "--env", "Highway-v0", "--env.lanes", "4"],
        "--env.lanes: unknown setting of Highway-v0; valid settings: num_lanes, num_vehicles,",
    ),
    (["train", "sac", "--env", "Highway-v0", "--env.num_lanes", "four"], "--env.num_lanes: expected a int"),
    (
        ["train", "sac", "--env", "Highway-v0", "--env.headway_weight=-1"],
        "Highway-v0: `headway_weight` must be a finite number >= 0, got -1.0",
    ),
    (["train", "sac", "--env", "Highway-v0", "--env.num_lanes"], "--env.num_lanes: missing value"),
    (
        ["train", "mappo", "--env", "MicroCombat-3m-v0", "--env.map_name", "2s3z"],
        "MicroCombat-3m-v0: `map_name` is fixed by the id ('3m'); choose another id",
    ),
    (
        ["train", "sac", "--env", "gym:Pendulum-v1", "--env.g", "9"],
        "--env.g: --env.FIELD sets a setting of frl's own environments, not of 'gym:Pendulum-v1'",
    ),
    (["eval", "nowhere"], "nowhere is not a run folder: config.json is missing"),
    (["plot", "nowhere"], "nowhere has no metrics.jsonl"),
    ([], "choose a command: train, eval, list, plot, sweep, llm"),
    (["train", "ppo", "--device", "gpu0"], "--device 'gpu0' is not a device"),
    (["train", "ppo", "--threads", "0"], "--threads must be a positive count"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) or "empty" for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    args = [*argv, "--out", str(out)] if argv[:1] == ["train"] else argv
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("frl: error: ")
    assert message in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_bad_frl_host_cache_is_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRL_HOST_CACHE", "lots")
    assert main(["train", "ppo", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("frl: error: FRL_HOST_CACHE: expected a limit in MiB")
    assert err.rstrip().endswith("got 'lots'")
    assert list(tmp_path.iterdir()) == []


def test_version_names_frl_torch_the_random_kernel_and_the_tcache(capsys):
    import torch

    import frl

    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"frl {frl.__version__} (torch {torch.__version__}, threefry: ")
    assert any(f"threefry: {kernel}, malloc tcache: " in line for kernel in ("extension", "jit", "numpy"))


def test_list_names_algorithms_and_environments(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in (
        "dqn",
        "ppo",
        "reinforce",
        "sac",
        "CartPole-v1",
        "Pendulum-v1",
        "Acrobot-v1",
        "MountainCar-v0",
    ):
        assert name in text
    # every algorithm's columns line up, whatever the length of its name
    rows = [line for line in text.splitlines() if "actions: " in line and line.startswith("  ")]
    assert len(rows) == len(AGENTS)
    assert len({row.index("actions: ") for row in rows}) == 1


def test_train_help_names_every_registered_algorithm(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"({', '.join(sorted(AGENTS))})" in help_text


def test_env_settings_reach_the_environment_the_run_folder_and_eval(tmp_path, capsys, monkeypatch):
    from frl.cli import common

    built = []
    make = common.build_train

    def spy(*args, **kwargs):
        train = make(*args, **kwargs)
        built.append(train.env)
        return train

    monkeypatch.setattr("frl.cli.train.build_train", spy)
    out = tmp_path / "run"
    argv = ["train", "reinforce", "--env", "Highway-v0", "--env.num_vehicles", "6", "--steps", "512"]
    argv += ["--no-compile", "--no-progress", "--eval-episodes", "1", "--out", str(out)]
    argv += ["--config.num_steps", "64", "--env.headway_weight=0.5"]
    assert main(argv) == 0
    (env,) = built
    assert (env.num_vehicles, env.headway_weight, env.num_lanes) == (6, 0.5, 3)
    config = json.loads((out / "config.json").read_text())
    assert config["env_options"] == {"num_vehicles": 6, "headway_weight": 0.5}
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "1"]) == 0
    # a resumed run with other settings is another run, refused
    resumed = [a if a != "6" else "7" for a in argv] + ["--resume"]
    assert main(resumed) == 2
    assert "environment options" in capsys.readouterr().err


def test_train_eval_plot_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "reinforce",
        "--seeds",
        "2",
        "--steps",
        "1024",
        "--no-compile",
        "--no-progress",
        "--out",
        str(out),
        "--eval-episodes",
        "2",
        "--config.num_steps",
        "64",
        "--config.hidden",
        "16,16",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "seed  final eval return" in printed and "IQM" in printed
    results = json.loads((out / "results.json").read_text())
    for field in (
        "algo",
        "env",
        "seeds",
        "total_steps",
        "final_eval_return",
        "wall_s",
        "compile_s",
        "env_steps_per_s",
    ):
        assert field in results
    assert results["algo"] == "reinforce" and results["env"] == "CartPole-v1"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 1024
    assert len(results["final_eval_return"]) == 2 and results["env_steps_per_s"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["hidden"] == [16, 16] and config["config"]["num_steps"] == 64
    for name in ("metrics.csv", "metrics.jsonl", "checkpoint.pt"):
        assert (out / name).exists()
    # a finished run is not overwritten
    assert main(argv) == 2
    assert "already holds a finished run" in capsys.readouterr().err

    assert main(["eval", str(out), "--episodes", "2"]) == 0
    assert "checkpoint at 1,024 steps" in capsys.readouterr().out

    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    assert main(["plot", str(out), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_interrupt_that_stops_at_once_is_one_line(monkeypatch, capsys):
    """A second Ctrl-C (the first stops a run after its iteration) raises KeyboardInterrupt."""
    import frl.cli as cli

    def interrupted(args, extra):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "train", interrupted)
    assert main(["train", "ppo"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "frl: interrupted at once: nothing saved since the last checkpoint"
    ]


def test_a_reader_that_stops_early_gets_no_traceback():
    """``frl list | head -1``: the command stops quietly when its reader has gone (exit 141, as a
    shell reports SIGPIPE), without a traceback. Here the pipe's read end is closed before the
    command writes, so its first write fails."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "frl.cli", "list"], stdout=write, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr.decode() == "", done.stderr.decode()
