"""Run folders are owned (frl.cli.folder): a lock per live run, another run's files are never
mixed with or overwritten, and ``--resume`` is checked before anything is written."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from frl.cli import folder, main

SMALL = ["--no-compile", "--no-progress", "--eval-episodes", "1", "--steps", "64"]
SMALL += ["--config.num_envs", "2", "--config.num_steps", "16", "--config.rollout_chunk", "16"]
SMALL += ["--config.num_minibatches", "2", "--config.update_epochs", "1", "--config.hidden", "8"]


def _train(out, *flags: str) -> int:
    return main(["train", "ppo", "--out", str(out), *SMALL, *flags])


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("frl: error: "), lines
    return lines[0]


def test_a_second_run_on_a_held_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    with folder.hold(out):
        assert _train(out) == 2
        assert f"--out {out} is in use by another run (pid {os.getpid()} on" in _error(capsys)
    assert not (out / "config.json").exists()  # the refused run wrote nothing
    assert not (out / folder.LOCK).exists()  # released


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = {"pid": dead.pid, "host": socket.gethostname(), "started": 0}
    (out / folder.LOCK).write_text(json.dumps(lock))
    assert _train(out) == 0
    assert (out / "results.json").exists() and not (out / folder.LOCK).exists()


def test_a_fresh_run_refuses_another_runs_files_and_overwrite_moves_them_aside(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("env_steps,loss\n10,0.5\n")
    (out / "notes.txt").write_text("mine")
    assert _train(out) == 2
    assert "holds another run's files (metrics.csv); pass --resume" in _error(capsys)
    assert (out / "metrics.csv").read_text() == "env_steps,loss\n10,0.5\n"
    assert _train(out, "--overwrite") == 0
    (aside,) = out.glob("replaced-*")
    assert (aside / "metrics.csv").read_text() == "env_steps,loss\n10,0.5\n"
    assert (out / "notes.txt").read_text() == "mine"  # never touched
    assert (out / "metrics.csv").read_text().startswith("env_steps,")


def test_resume_needs_a_checkpoint_and_resume_or_start_starts(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "--resume") == 2
    assert "holds no checkpoint.pt to continue from" in _error(capsys)
    assert not out.exists() or not any(out.iterdir())
    assert _train(out, "--resume-or-start") == 0
    assert (out / "results.json").exists()


def test_resume_of_a_finished_run_prints_its_result(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    capsys.readouterr()
    before = (out / "metrics.jsonl").read_text()
    assert _train(out, "--resume") == 0
    printed = capsys.readouterr().out
    assert "holds a finished run (64 steps); its result:" in printed and "IQM" in printed
    assert (out / "metrics.jsonl").read_text() == before


def test_resume_with_another_setting_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    (out / "results.json").unlink()  # as if killed after its last checkpoint
    config = (out / "config.json").read_text()
    assert _train(out, "--resume", "--config.gamma", "0.9") == 2
    assert "the command differs from the run in" in (message := _error(capsys))
    assert "gamma 0.99 -> 0.9" in message
    assert (out / "config.json").read_text() == config
    assert main(["train", "dqn", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "holds a ppo run, not dqn" in _error(capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resume"], "--resume needs --out"),
        (["--resume-or-start"], "--resume-or-start needs --out"),
    ],
)
def test_resume_flags_without_out_are_one_line(argv, message, capsys):
    assert main(["train", "ppo", *SMALL, *argv]) == 2
    assert message in _error(capsys)


def test_out_through_a_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert _train(path) == 2
    assert f"--out {path} is a file, not a folder" in _error(capsys)


def test_sigterm_writes_a_final_checkpoint_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """SIGTERM mid-run: exit 143, a checkpoint of the last whole iteration, the resume command
    printed; resuming finishes bit for bit as a run that was never stopped."""
    import signal
    import sys
    import time

    import torch
    from torch.utils import _pytree as pytree

    from frl.driver import checkpoint

    flags = [*SMALL[:4], "--steps", "3200", "--eval-every", "320", *SMALL[6:]]  # 100 iterations
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    command = [sys.executable, "-m", "frl.cli", "train", "ppo", "--out", str(stopped), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (stopped / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 143, err
    assert "frl: interrupted (SIGTERM): checkpoint at" in err and "--resume" in err.splitlines()[-1]
    assert not (stopped / "results.json").exists()
    assert main(["train", "ppo", "--out", str(stopped), *flags, "--resume"]) == 0
    assert main(["train", "ppo", "--out", str(whole), *flags]) == 0
    a, b = (checkpoint.load(path / "checkpoint.pt") for path in (stopped, whole))
    assert a["iteration"] == b["iteration"] == 100
    for x, y in zip(pytree.tree_leaves(a["state"]), pytree.tree_leaves(b["state"]), strict=True):
        assert torch.equal(x, y)
    rows = [json.loads(line)["env_steps"] for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(320, 3201, 320))  # no row repeated or missing


FAULT_FLAGS = [*SMALL[:4], "--steps", "3200", "--eval-every", "320", *SMALL[6:]]  # 100 iterations


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final checkpoint and log rows of the run the fault-injection tests interrupt."""
    from frl.driver import checkpoint

    out = tmp_path_factory.mktemp("whole")
    assert main(["train", "ppo", "--out", str(out), *FAULT_FLAGS]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return checkpoint.load(out / "checkpoint.pt"), rows


def _kill_when(out, ready, delay: float) -> subprocess.Popen:
    """Start the run in a process, SIGKILL it ``delay`` seconds after ``ready(out)``."""
    import signal
    import sys
    import time

    command = [sys.executable, "-m", "frl.cli", "train", "ppo", "--out", str(out), *FAULT_FLAGS]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not ready(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc


def _ends_as_uninterrupted(out, uninterrupted) -> None:
    """``out`` holds the uninterrupted run's final state bit for bit and each of its log rows once."""
    import torch
    from torch.utils import _pytree as pytree

    from frl.driver import checkpoint

    assert not list(out.glob(".checkpoint.pt.*.tmp"))
    want, rows = uninterrupted
    got = checkpoint.load(out / "checkpoint.pt")
    assert got["iteration"] == want["iteration"] == 100
    for a, b in zip(pytree.tree_leaves(got["state"]), pytree.tree_leaves(want["state"]), strict=True):
        assert torch.equal(a, b)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in logged] == [r["env_steps"] for r in rows]
    csv_steps = [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert csv_steps == [str(r["env_steps"]) for r in rows]


@pytest.mark.parametrize(
    ("moment", "delay"),
    [
        ("before the first checkpoint", 0.0),
        ("after a checkpoint", 0.0),
        ("at a random later point", 0.37),
    ],
)
def test_kill_9_then_resume_loses_and_repeats_nothing(tmp_path, uninterrupted, moment, delay):
    out = tmp_path / "run"
    if moment == "before the first checkpoint":
        ready = lambda o: (o / "config.json").exists()
    else:
        ready = lambda o: (o / "checkpoint.pt").exists()
    proc = _kill_when(out, ready, delay)
    if proc.returncode == 0:
        pytest.skip("the run finished before the kill")
    (out / ".checkpoint.pt.stale.tmp").write_bytes(b"torn")  # as a kill mid-write leaves
    assert main(["train", "ppo", "--out", str(out), *FAULT_FLAGS, "--resume-or-start"]) == 0
    _ends_as_uninterrupted(out, uninterrupted)


# Run in the child: wraps one write of the run so that, at its ``after``-th call, it writes half of
# its data, signals the parent (a marker file) and waits to be killed there (no hook in frl).
_MID_WRITE = """
import os, pathlib, sys, time
marker, where, after, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
calls = [0]
def stall():
    pathlib.Path(marker).touch()
    time.sleep(600)
if where == "checkpoint":
    replace = os.replace
    def torn_replace(src, dst):
        if str(dst).endswith("checkpoint.pt"):
            calls[0] += 1
            if calls[0] == after:  # the temp file is written, the checkpoint not yet replaced
                with open(src, "r+b") as f:
                    f.truncate(os.path.getsize(src) // 2)
                stall()
        return replace(src, dst)
    os.replace = torn_replace
else:
    from frl.driver import logging as run_logging
    log = run_logging.RunLogger.log
    def torn_log(self, row):
        calls[0] += 1
        if calls[0] == after:  # half a JSONL line, no newline, no CSV row
            with (self.out_dir / "metrics.jsonl").open("a") as f:
                f.write('{"env_steps": ' + str(row["env_steps"]) + ', "ret')
            stall()
        return log(self, row)
    run_logging.RunLogger.log = torn_log
from frl.cli import main
sys.exit(main(argv))
"""


@pytest.mark.parametrize("where", ["checkpoint", "log"])
def test_kill_9_in_the_middle_of_a_write_then_resume_loses_and_repeats_nothing(
    tmp_path, uninterrupted, where
):
    """SIGKILL while the 4th checkpoint's temp file is half written (before its rename), or
    while the 4th log line is half written: the resumed run ends bit for bit as one that was
    never killed, with every log row once and the torn temp file removed."""
    import signal
    import sys
    import time

    from frl.driver import checkpoint

    out, marker = tmp_path / "run", tmp_path / "stalled"
    argv = ["train", "ppo", "--out", str(out), *FAULT_FLAGS]
    command = [sys.executable, "-c", _MID_WRITE, str(marker), where, "4", *argv]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert marker.exists(), "the run never reached the write"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if where == "checkpoint":
        assert len(list(out.glob(".checkpoint.pt.*.tmp"))) == 1  # the torn write, left behind
        assert checkpoint.load(out / "checkpoint.pt")["iteration"] == 30  # the 3rd, intact
    else:
        assert not (out / "metrics.jsonl").read_text().endswith("\n")
    assert main([*argv, "--resume"]) == 0
    _ends_as_uninterrupted(out, uninterrupted)


def test_seeds_beyond_memory_are_refused_with_the_estimate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "dqn", "--out", str(out), "--seeds", "100000000", "--no-progress"]) == 2
    message = _error(capsys)
    assert "--seeds 100000000: the training states need about" in message and "GiB are available" in message
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--eval-episodes", "10000000000"], "--eval-episodes 10000000000: evaluating 1 seed(s) needs about"),
        (["--config.hidden", "1000000000000"], "one seed's training state cannot be allocated"),
    ],
)
def test_sizes_beyond_memory_are_one_line(tmp_path, capsys, flags, message):
    assert main(["train", "ppo", "--out", str(tmp_path / "run"), "--no-progress", *flags]) == 2
    assert message in _error(capsys)
    assert not (tmp_path / "run").exists()


def test_plot_skips_a_truncated_last_line_naming_it(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert _train(out) == 0
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"env_steps": 96, "eval_ret')
    with pytest.warns(UserWarning, match=r"metrics.jsonl:\d+: not a JSON line \(truncated\?\); skipped"):
        assert main(["plot", str(out), "-o", str(tmp_path / "c.png")]) == 0


def test_eval_of_a_malformed_config_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    (out / "config.json").write_text('{"algo": "ppo", "config": ')
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    assert "config.json is not a readable run config (JSONDecodeError" in _error(capsys)


def test_checkpoint_every_is_independent_of_evaluation(tmp_path, monkeypatch):
    from frl.driver import checkpoint

    saved_at = []
    real_save = checkpoint.save
    monkeypatch.setattr(
        checkpoint,
        "save",
        lambda path, payload: saved_at.append(payload["iteration"]) or real_save(path, payload),
    )
    out = tmp_path / "run"
    flags = [*SMALL[:4], "--steps", "256", "--eval-every", "128", "--checkpoint-every", "32", *SMALL[6:]]
    assert main(["train", "ppo", "--out", str(out), *flags]) == 0
    assert saved_at == list(range(1, 9))  # every iteration (32 steps), not every 4th
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows if "eval_return_mean" in r] == [128, 256]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "ppo", "--steps", "99999999999999999999999"],
            "--steps 99999999999999999999999 is too large",
        ),
        (["train", "ppo", "--config.num_envs", "1e30"], "--config.num_envs: 1e30 is too large"),
        (["train", "ppo", "--config.num_envs", "1e400"], "--config.num_envs: expected a int"),
        (["sweep", "ppo", "--grid", "learning_rate=1e-3", "--out", "{file}"], "is a file, not a folder"),
        (["train", "ppo", "--out", "{file}/run"], "cannot be created: "),
    ],
)
def test_overflowing_numbers_and_impossible_folders_are_one_line(tmp_path, capsys, argv, message):
    path = tmp_path / "file"
    path.write_text("x")
    assert main([a.replace("{file}", str(path)) for a in argv]) == 2
    assert message in _error(capsys)
