"""Numerical health: non-finite values are caught inside the units, named, and never overwrite
good data (frl.driver.health, frl.run(on_nonfinite=...), frl train --on-nonfinite)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch.utils import _pytree as pytree

from frl.algos import dqn, ppo
from frl.driver import checkpoint
from frl.driver.health import NonFiniteError, strict_json
from frl.envs.classic_control import CartPole
from frl.run import run
from tests.small_agents import SMALL_DQN, SMALL_PPO

HUGE = 1e38
"""A learning rate whose first Adam step moves the weights to +-1e38: the next forward overflows."""


@dataclasses.dataclass(frozen=True)
class NaNRewardCartPole(CartPole):
    """CartPole whose reward is NaN once the pole's angle passes ``angle`` radians."""

    angle: float = 0.05

    def transition(self, physics, action, params):
        physics, reward, terminated = super().transition(physics, action, params)
        tilted = physics[..., 2].abs() > self.angle
        return physics, torch.where(tilted, torch.full_like(reward, math.nan), reward), terminated


def _strict(text: str):
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))


def _finite(state) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in pytree.tree_leaves(state) if x.is_floating_point())


def test_a_nan_learning_rate_stops_naming_member_unit_and_quantity(tmp_path):
    train = ppo.make_train(SMALL_PPO)
    with pytest.raises(NonFiniteError) as err:
        run(
            train,
            seeds=[0, 1],
            hparams={"learning_rate": [2.5e-4, HUGE]},
            compile=False,
            progress=False,
            eval_episodes=1,
            out_dir=tmp_path,
            checkpoint_every=32,
        )
    message = str(err.value)
    assert (
        "member 2 (learning_rate=1e+38, seed=0): non-finite loss in unit 'update' at iteration 1" in message
    )
    assert "member 3 (learning_rate=1e+38, seed=1)" in message
    assert "member 0 " not in message and "member 1 " not in message
    failure = _strict((tmp_path / "failure.json").read_text())
    assert [f["member"] for f in failure["failures"]] == [2, 3]
    assert failure["failures"][0]["quantity"] == "loss"
    assert not (tmp_path / "checkpoint.pt").exists()  # the first checkpoint was due after the fault


def test_stop_keeps_the_last_good_checkpoint(tmp_path):
    """DQN learns from step 40 with a huge learning rate: the update of step 40 leaves the
    weights finite (+-1e38), the one of step 50 overflows; the run stops there and the file on
    disk is still the checkpoint of step 40."""
    train = dqn.make_train(SMALL_DQN)
    with pytest.raises(NonFiniteError, match=r"unit 'learn' at iteration 5 \(env step 50\)"):
        run(
            train,
            seeds=1,
            hparams={"learning_rate": [HUGE]},
            compile=False,
            progress=False,
            eval_episodes=1,
            out_dir=tmp_path,
            checkpoint_every=10,
            log_every=10,
        )
    saved = checkpoint.load(tmp_path / "checkpoint.pt")
    assert saved["iteration"] == 4
    assert _finite(saved["state"]["params"])
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        _strict(line)


def test_skip_member_freezes_the_bad_member_and_trains_the_others_as_alone():
    train = ppo.make_train(SMALL_PPO)
    grid = run(
        train,
        seeds=[0],
        hparams={"learning_rate": [2.5e-4, HUGE]},
        compile=False,
        progress=False,
        eval_episodes=1,
        on_nonfinite="skip-member",
    )
    alone = run(
        train, seeds=[0], hparams={"learning_rate": [2.5e-4]}, compile=False, progress=False, eval_episodes=1
    )
    assert [f["member"] for f in grid.nonfinite] == [1]
    for a, b in zip(pytree.tree_leaves(grid.state[0]), pytree.tree_leaves(alone.state[0]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the bad member keeps the finite values of its last good update (+-1e38 weights), and its
    # environments kept stepping
    assert _finite(grid.state[1]["params"]) and _finite(grid.state[1]["opt_state"])
    largest = max(float(x.abs().max()) for x in pytree.tree_leaves(grid.state[1]["params"]))
    assert largest == pytest.approx(HUGE, rel=1e-3)
    assert int(grid.state[1]["counters", "env_steps"]) == int(alone.state[0]["counters", "env_steps"])


def test_warn_lets_values_flow_and_reports_once(capsys):
    train = ppo.make_train(SMALL_PPO)
    result = run(
        train,
        seeds=[0],
        hparams={"learning_rate": [HUGE]},
        compile=False,
        progress=False,
        eval_episodes=1,
        log_every=32,
        on_nonfinite="warn",
    )
    assert [f["member"] for f in result.nonfinite] == [0]
    assert not _finite(result.state["params"])
    assert capsys.readouterr().err.count("frl: warning: member 0") == 1


def test_nan_rewards_are_named_in_the_collection_unit(tmp_path):
    train = ppo.make_train(SMALL_PPO, NaNRewardCartPole())
    with pytest.raises(NonFiniteError, match="non-finite episode_return in unit 'collect'") as err:
        run(train, seeds=2, compile=False, progress=False, eval_episodes=1, log_every=32, out_dir=tmp_path)
    assert "member 0" in str(err.value) and "member 1" in str(err.value)


def test_skip_member_with_every_member_bad_stops():
    train = ppo.make_train(SMALL_PPO)
    with pytest.raises(NonFiniteError, match="member 0"):
        run(
            train,
            seeds=[0],
            hparams={"learning_rate": [HUGE]},
            compile=False,
            progress=False,
            eval_episodes=1,
            on_nonfinite="skip-member",
        )


def test_unknown_mode_is_refused():
    with pytest.raises(
        ValueError,
        match=r"`on_nonfinite` must be one of stop, skip-member, warn \(or off: no checks\), got 'ignore'",
    ):
        run(ppo.make_train(SMALL_PPO), on_nonfinite="ignore", compile=False, progress=False)


def test_strict_json_replaces_non_finite_floats():
    payload = {"a": [1.0, math.nan, {"b": math.inf}], "c": "nan", "d": -math.inf, "e": 3}
    assert strict_json(payload) == {"a": [1.0, None, {"b": None}], "c": "nan", "d": None, "e": 3}
    json.dumps(strict_json(payload), allow_nan=False)


def test_the_command_line_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    from frl.cli import main

    out = tmp_path / "run"
    argv = ["train", "dqn", "--steps", "100", "--out", str(out), "--no-compile", "--no-progress"]
    argv += ["--eval-every", "10", "--eval-episodes", "1", "--config.learning_rate", "1e38"]
    for field, value in dataclasses.asdict(SMALL_DQN).items():
        if field not in ("env_id", "total_timesteps", "learning_rate"):
            argv += [
                f"--config.{field}",
                ",".join(map(str, value)) if isinstance(value, tuple) else str(value),
            ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("frl: error: run: member 0 (seed=0): non-finite")
    assert "unit 'learn' at iteration 5 (env step 50)" in err[0]
    assert err[0].endswith(f"the last good checkpoint is kept; see {out / 'failure.json'}")
    assert checkpoint.load(out / "checkpoint.pt")["iteration"] == 4
    assert not (out / "results.json").exists()
    assert _strict((out / "failure.json").read_text())["failures"][0]["unit"] == "learn"


@dataclasses.dataclass(frozen=True)
class NaNObservationCartPole(CartPole):
    """CartPole whose observation is NaN once the pole's angle passes ``angle`` radians."""

    angle: float = 0.05

    def observe(self, physics):
        obs = super().observe(physics)
        tilted = (physics[..., 2].abs() > self.angle).unsqueeze(-1)
        return torch.where(tilted, torch.full_like(obs, math.nan), obs)


def test_nan_observations_stop_the_run_in_the_learning_units(tmp_path):
    train = ppo.make_train(SMALL_PPO, NaNObservationCartPole())
    with pytest.raises(NonFiniteError, match=r"non-finite \w+ in unit '(advantages|update)' at iteration 1"):
        run(
            train,
            seeds=1,
            compile=False,
            progress=False,
            eval_episodes=1,
            out_dir=tmp_path,
            checkpoint_every=32,
        )
    assert not (tmp_path / "checkpoint.pt").exists()
    assert _strict((tmp_path / "failure.json").read_text())["failures"][0]["member"] == 0
