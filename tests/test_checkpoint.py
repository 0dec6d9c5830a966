"""Checkpoint integrity (frl.driver.checkpoint) and validated resumes: a damaged, truncated,
empty or foreign checkpoint is one clear error naming the file, never a silent load."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tensordict import TensorDict

from frl.algos import dqn, ppo
from frl.cli import main
from frl.driver import checkpoint
from frl.driver.checkpoint import CheckpointError
from frl.run import run
from tests.small_agents import SMALL_PPO


def _payload() -> dict:
    params = TensorDict({"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}, batch_size=[])
    return {
        "state": params,
        "iteration": 3,
        "history": [{"env_steps": 10, "loss": 0.5}],
        "members": [{"seed": 0}],
    }


def _flip_tensor_byte(path, value: float) -> None:
    """Flip one byte of the tensor data holding ``value`` (found by its float32 bytes)."""
    raw = bytearray(path.read_bytes())
    needle = torch.tensor([value]).numpy().tobytes()
    at = raw.find(needle)
    assert at >= 0
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_saved_checkpoint_loads_back_equal(tmp_path):
    path = checkpoint.save(tmp_path / "c.pt", _payload())
    loaded = checkpoint.load(path)
    assert torch.equal(loaded["state"]["w"], _payload()["state"]["w"]) and loaded["iteration"] == 3


def test_a_flipped_byte_in_a_weight_is_named(tmp_path):
    path = checkpoint.save(tmp_path / "c.pt", _payload())
    _flip_tensor_byte(path, 5.0)
    with pytest.raises(
        CheckpointError, match=r"c.pt is corrupted: 1 tensor\(s\) do not match their hashes \(#0 \(2, 3\)\)"
    ):
        checkpoint.load(path)


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_empty_and_truncated_files_are_one_clear_error(tmp_path, keep):
    path = checkpoint.save(tmp_path / "c.pt", _payload())
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep) if isinstance(keep, float) else keep])
    expected = "is empty" if keep == 0 else "is unreadable \\(truncated or corrupted"
    with pytest.raises(CheckpointError, match=f"c.pt {expected}.*restore it from a copy"):
        checkpoint.load(path)


def test_a_changed_non_tensor_value_is_caught(tmp_path):
    path = checkpoint.save(tmp_path / "c.pt", _payload())
    record = torch.load(path, weights_only=False)
    record["payload"]["iteration"] = 4  # the hashes still describe iteration 3
    torch.save(record, path)
    with pytest.raises(CheckpointError, match="its structure does not match its hash"):
        checkpoint.load(path)


def test_another_format_version_says_which(tmp_path):
    path = checkpoint.save(tmp_path / "c.pt", _payload())
    record = torch.load(path, weights_only=False)
    record["version"] = 99
    torch.save(record, path)
    with pytest.raises(CheckpointError, match="has format version 99; this frl reads version 1"):
        checkpoint.load(path)


def _ppo_run(tmp_path, **kw):
    return run(
        ppo.make_train(kw.pop("config", SMALL_PPO)),
        seeds=2,
        compile=False,
        progress=False,
        eval_episodes=1,
        out_dir=tmp_path,
        checkpoint_every=32,
        **kw,
    )


def test_resume_refuses_another_algorithm(tmp_path):
    _ppo_run(tmp_path)
    train = dqn.make_train(
        dqn.Config(learning_starts=8, batch_size=4, buffer_size=64, hidden=(8,), total_timesteps=64)
    )
    with pytest.raises(ValueError, match="was written by ppo on CartPole-v1; this run is dqn on CartPole-v1"):
        run(train, seeds=2, compile=False, progress=False, out_dir=tmp_path, resume=True)


def test_resume_refuses_other_network_sizes_naming_the_entry(tmp_path):
    _ppo_run(tmp_path)
    wider = dataclasses.replace(SMALL_PPO, hidden=(16,))
    with pytest.raises(
        ValueError,
        match=r"does not fit this configuration: 'params.actor.0.weight' is \[2, 8, 4\] "
        r"torch.float32 there, this run needs \[2, 16, 4\]",
    ):
        _ppo_run(tmp_path, config=wider, resume=True)


def test_resume_of_a_corrupted_checkpoint_on_the_command_line_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "ppo",
        "--steps",
        "64",
        "--out",
        str(out),
        "--no-compile",
        "--no-progress",
        "--eval-episodes",
        "1",
    ]
    for field in ("num_envs", "num_steps", "rollout_chunk", "num_minibatches", "update_epochs"):
        argv += [f"--config.{field}", str(getattr(SMALL_PPO, field))]
    argv += ["--config.hidden", "8", "--steps", "32"]
    assert main(argv) == 0
    (out / "results.json").unlink()  # as if it had been killed after its checkpoint
    _flip_tensor_byte_anywhere(out / "checkpoint.pt")
    capsys.readouterr()
    assert main([*argv[:-2], "--steps", "64", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("frl: error: checkpoint ") and "is corrupted" in err[0]
    assert main(["eval", str(out), "--episodes", "1"]) == 2
    assert "is corrupted" in capsys.readouterr().err


def _flip_tensor_byte_anywhere(path) -> None:
    """Flip a byte inside the first stored tensor (torch.save keeps them as data/<n> entries)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size >= 16)
    raw = bytearray(path.read_bytes())
    header = info.header_offset  # the local header: name and extra-field lengths at 26..30
    name_len, extra_len = (int.from_bytes(raw[header + i : header + i + 2], "little") for i in (26, 28))
    raw[header + 30 + name_len + extra_len + 8] ^= 0x40
    path.write_bytes(bytes(raw))
