"""frl.run: vmapped seeds reproduce standalone seeds, resume is bit-identical, early stop, grids."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils import _pytree as pytree

from frl.algos import dqn, ppo, reinforce, sac
from frl.run import run

SMALL_PPO = ppo.Config(
    num_envs=2,
    num_steps=32,
    rollout_chunk=16,
    num_minibatches=2,
    update_epochs=2,
    hidden=(16, 16),
    total_timesteps=512,
)


def _small(algo: str):
    if algo == "ppo":
        return ppo.make_train(SMALL_PPO)
    if algo == "reinforce":
        return reinforce.make_train(
            reinforce.Config(num_envs=2, num_steps=32, hidden=(16,), total_timesteps=512)
        )
    if algo == "dqn":
        cfg = dqn.Config(
            learning_starts=40,
            train_frequency=10,
            target_network_frequency=50,
            batch_size=16,
            buffer_size=200,
            hidden=(16,),
            total_timesteps=200,
        )
        return dqn.make_train(cfg)
    cfg = sac.Config(learning_starts=8, batch_size=8, hidden=(16,), total_timesteps=24)
    return sac.make_train(cfg)


def _leaves(state):
    return pytree.tree_leaves(state)


@pytest.mark.parametrize("algo", ["ppo", "reinforce", "dqn", "sac"])
def test_seed_in_vmapped_run_equals_seed_alone(algo):
    """Seed 2 trained beside seeds 0 and 1 gives seed 2's numbers trained alone."""
    train = _small(algo)
    total = train.config.total_timesteps
    together = run(train, seeds=[0, 1, 2], total_steps=total, compile=False, progress=False, eval_episodes=3)
    alone = run(train, seeds=[2], total_steps=total, compile=False, progress=False, eval_episodes=3)
    assert together.members[2] == alone.members[0] == {"seed": 2}
    for a, b in zip(_leaves(together.state[2]), _leaves(alone.state[0]), strict=True):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        else:
            assert torch.equal(a, b)
    assert together.eval_returns[2] == pytest.approx(alone.eval_returns[0], abs=1e-4)
    # and the seeds differ from one another
    p0, p1 = (_leaves(together.state[i]["learner", "params"]) for i in (0, 1))
    assert any(not torch.equal(a, b) for a, b in zip(p0, p1, strict=True))


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_resume_is_bit_identical(algo, tmp_path):
    train = _small(algo)
    total = train.config.total_timesteps
    half = (total // train.steps_per_iteration // 2) * train.steps_per_iteration
    full = run(
        train,
        seeds=2,
        total_steps=total,
        compile=False,
        progress=False,
        out_dir=tmp_path / "a",
        checkpoint_every=half,
    )
    run(
        train,
        seeds=2,
        total_steps=half,
        compile=False,
        progress=False,
        out_dir=tmp_path / "b",
        checkpoint_every=half,
    )
    resumed = run(
        train,
        seeds=2,
        total_steps=total,
        compile=False,
        progress=False,
        out_dir=tmp_path / "b",
        checkpoint_every=half,
        resume=True,
    )
    for a, b in zip(_leaves(full.state), _leaves(resumed.state), strict=True):
        assert torch.equal(a, b)
    assert full.eval_returns == resumed.eval_returns
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    assert not list((tmp_path / "b").glob(".checkpoint.pt.*"))  # no torn temporary files


def test_resume_after_a_crash_logs_each_point_once(tmp_path):
    """Rows logged after the last checkpoint by a crashed run are not repeated on resume."""
    train = _small("ppo")  # 64 steps per iteration, 512 in all
    common = dict(seeds=2, total_steps=512, eval_every=128, eval_episodes=2, compile=False, progress=False)
    run(train, out_dir=tmp_path / "a", checkpoint_every=256, **common)

    def crash_at_384(row):
        if row["env_steps"] == 384:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(train, out_dir=tmp_path / "b", checkpoint_every=256, callbacks=[crash_at_384], **common)
    resumed = run(train, out_dir=tmp_path / "b", checkpoint_every=256, resume=True, **common)
    steps = [
        json.loads(line)["env_steps"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [128, 256, 384, 512] == [row["env_steps"] for row in resumed.history]
    csv_a = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    csv_b = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(csv_a) == len(csv_b) == 5 and csv_a[0] == csv_b[0]


def test_resume_rejects_other_members(tmp_path):
    train = _small("ppo")
    run(
        train, seeds=2, total_steps=128, compile=False, progress=False, out_dir=tmp_path, checkpoint_every=128
    )
    with pytest.raises(ValueError, match="checkpoint was written for other members"):
        run(train, seeds=3, total_steps=256, compile=False, progress=False, out_dir=tmp_path, resume=True)


def test_callback_stops_early_and_logs(tmp_path):
    train = _small("ppo")
    rows = []

    def stop_after_two(row):
        rows.append(row)
        return len(rows) == 2

    result = run(
        train,
        seeds=2,
        total_steps=512,
        eval_every=64,
        compile=False,
        progress=False,
        callbacks=[stop_after_two],
        out_dir=tmp_path,
    )
    assert result.env_steps == 128 and len(result.history) == 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"env_steps", "eval_return_mean", "eval_return_iqm", "eval_return_std"} <= set(header)


def test_hyperparameter_grid_trains_every_combination():
    train = ppo.make_train(dataclasses.replace(SMALL_PPO, anneal_lr=False))  # a constant learning rate
    result = run(
        train,
        seeds=2,
        total_steps=128,
        compile=False,
        progress=False,
        hparams={"learning_rate": [1e-3, 1e-2]},
    )
    assert result.members == [
        {"learning_rate": 1e-3, "seed": 0},
        {"learning_rate": 1e-3, "seed": 1},
        {"learning_rate": 1e-2, "seed": 0},
        {"learning_rate": 1e-2, "seed": 1},
    ]
    assert len(result.eval_returns) == 4
    lrs = result.state["learner", "opt_state"].flatten_keys()
    stored = [v for k, v in lrs.items() if k.endswith("learning_rate")]
    assert stored, "the learning rate lives in the optimizer state"
    assert stored[0].reshape(4, -1)[:, 0].tolist() == [1e-3, 1e-3, 1e-2, 1e-2]


def test_run_rejects_bad_input():
    train = _small("ppo")
    with pytest.raises(ValueError, match="`total_steps` must be a positive int"):
        run(train, seeds=1, total_steps=-5, compile=False, progress=False)
    with pytest.raises(ValueError, match="`seeds` must be positive"):
        run(train, seeds=0, total_steps=128, compile=False, progress=False)
    with pytest.raises(ValueError, match="less than one iteration"):
        run(train, seeds=1, total_steps=10, compile=False, progress=False)
    with pytest.raises(ValueError, match="needs an `out_dir`"):
        run(train, seeds=1, total_steps=128, compile=False, progress=False, checkpoint_every=64)


@pytest.mark.compile
def test_compiled_run_matches_eager():
    """The compiled units (vmapped over 2 seeds) give the eager run's numbers."""
    train = _small("ppo")
    eager = run(train, seeds=2, total_steps=128, compile=False, progress=False, eval_episodes=2)
    compiled = run(train, seeds=2, total_steps=128, compile=True, progress=False, eval_episodes=2)
    for a, b in zip(_leaves(eager.state), _leaves(compiled.state), strict=True):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        else:
            assert torch.equal(a, b)
    assert compiled.compile_s > 0
