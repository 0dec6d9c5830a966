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


def _breaking_params_at(train, steps: int):
    """``train`` whose last learning unit, at ``steps`` environment steps, returns NaN weights
    (with a finite loss and gradient: a fault in the update itself)."""
    *rest, last = train.learn

    def fn(state, *inputs):
        new, metrics = last.fn(state, *inputs)
        hit = new["counters", "env_steps"] == steps
        new["params"] = new["params"].apply(lambda p: torch.where(hit, torch.full_like(p, math.nan), p))
        return new, metrics

    return dataclasses.replace(train, learn=(*rest, last._replace(fn=fn)))


def test_parameters_an_update_breaks_just_before_a_checkpoint_are_caught_before_it_is_saved(tmp_path):
    """DQN's update of step 40 leaves NaN weights from a finite loss and gradient. The in-unit
    check would see them on entry to the next update, but the checkpoint of step 40 is due
    first: the driver's check of the parameters before saving stops the run, and the file on
    disk stays the checkpoint of step 30."""
    train = _breaking_params_at(dqn.make_train(SMALL_DQN), 40)
    with pytest.raises(
        NonFiniteError, match=r"non-finite params in unit 'learn' at iteration 4 \(env step 40\)"
    ):
        run(
            train,
            seeds=1,
            compile=False,
            progress=False,
            eval_episodes=1,
            out_dir=tmp_path,
            checkpoint_every=10,
            log_every=20,
        )
    saved = checkpoint.load(tmp_path / "checkpoint.pt")
    assert saved["iteration"] == 3 and _finite(saved["state"]["params"])


def test_parameters_broken_mid_run_are_named_on_entry_to_the_next_iteration():
    """Without a checkpoint due, the NaN weights of step 40 are found on entry to the update of
    step 50, named as such; ``warn`` reports the member once and lets the run finish."""
    train = _breaking_params_at(dqn.make_train(SMALL_DQN), 40)
    result = run(
        train, seeds=2, compile=False, progress=False, eval_episodes=1, log_every=20, on_nonfinite="warn"
    )
    assert [(f["member"], f["unit"], f["quantity"], f["env_steps"]) for f in result.nonfinite] == [
        (0, "learn", "params on entry", 50),
        (1, "learn", "params on entry", 50),
    ]


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


def _guarded_unit():
    """A learning unit over 3 members whose injected faults are chosen per member by ``fault``:
    0 healthy, 1 a non-finite parameter on entry, 2 a non-finite metric, 3 a non-finite update."""
    from tensordict import TensorDict

    def fn(state, fault):
        w = state["params", "w"]
        new_w = torch.where(fault == 3, torch.full_like(w, math.inf), w + 1.0)
        loss = torch.where(fault == 2, torch.tensor(math.nan), w.sum())
        new = state.copy()
        new["params"] = TensorDict({"w": new_w}, batch_size=[])
        new["opt_state"] = TensorDict({"m": state["opt_state", "m"] + 1.0}, batch_size=[])
        return new, TensorDict({"loss": loss, "grad_norm": w.abs().sum()}, batch_size=[])

    def state(faults):
        w = torch.ones(len(faults), 5)
        w[torch.tensor(faults) == 1, 3] = math.nan
        return TensorDict(
            {
                "params": {"w": w},
                "opt_state": {"m": torch.zeros(len(faults), 5)},
                "counters": {"env_steps": torch.full((len(faults),), 64)},
                "health": __import__("frl.driver.health", fromlist=["x"]).init_health(len(faults), True),
            },
            batch_size=[len(faults)],
        )

    return fn, state


@pytest.mark.compile
def test_the_checks_find_every_fault_compiled_as_eager():
    """The guard's reductions under torch.compile (Inductor folds ``x * 0`` to 0, so a check
    written that way passes NaN compiled; ``amax(|x|)`` propagates it): each fault is found in
    both modes, named by its index, and a frozen member keeps its parameters and moments."""
    fn, state = _guarded_unit()
    from frl.driver.health import guard

    faults = [0, 1, 2, 3]
    for compiled in (False, True):
        names: list[str] = []
        unit = torch.func.vmap(guard(fn, 4, names, learns=True, freeze=True, params_on_entry=True))
        if compiled:
            unit = torch.compile(unit, fullgraph=True)
        before = state(faults)
        new, _ = unit(before, torch.tensor(faults))
        assert names == ["params on entry", "loss", "grad_norm", "params"]
        record = new["health"]
        assert record["bad"].tolist() == [False, True, True, True], compiled
        assert record["quantity"].tolist() == [-1, 0, 1, 3], compiled
        assert record["unit"].tolist() == [-1, 4, 4, 4] and record["env_steps"].tolist() == [-1, 64, 64, 64]
        # frozen: the bad members return what they got; the healthy one is updated
        assert torch.equal(new["params", "w"][0], before["params", "w"][0] + 1)
        for member in (1, 2, 3):
            assert torch.equal(new["opt_state", "m"][member], before["opt_state", "m"][member])
            torch.testing.assert_close(
                new["params", "w"][member], before["params", "w"][member], equal_nan=True
            )
