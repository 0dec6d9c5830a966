"""frl.run: vmapped seeds reproduce standalone seeds, resume is bit-identical, early stop, grids."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils import _pytree as pytree

from frl import random
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
    p0, p1 = (_leaves(together.state[i]["params"]) for i in (0, 1))
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
    with pytest.raises(
        ValueError,
        match=r"was written for other members \(seeds/hparams\): \[\{.seed.: 0\}, \{.seed.: 1\}\], not",
    ):
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
    assert result.state["hyperparams", "learning_rate"].tolist() == [1e-3, 1e-3, 1e-2, 1e-2]
    assert result.state["hyperparams", "gamma"].tolist() == [0.99] * 4


def _assert_members_equal(grid, alone, i: int, j: int) -> None:
    for a, b in zip(_leaves(grid.state[i]), _leaves(alone.state[j]), strict=True):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        else:
            assert torch.equal(a, b)


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_any_hyperparameter_grid_member_equals_its_configuration_alone(algo):
    """Loss, return, exploration and optimizer hyper-parameters alike: member i of the grid is
    configuration i trained alone (eager; the compiled 16-member run is below)."""
    train = _small(algo)
    grid = (
        {"clip_coef": [0.1, 0.3], "gamma": [0.9, 0.99], "learning_rate": [1e-2]}
        if algo == "ppo"
        else {"gamma": [0.9], "start_e": [1.0, 0.5], "tau": [1.0, 0.5]}
    )
    total = train.config.total_timesteps
    result = run(
        train, seeds=[3], total_steps=total, compile=False, progress=False, hparams=grid, eval_episodes=2
    )
    for i, member in enumerate(result.members):
        point = {k: v for k, v in member.items() if k != "seed"}
        config = dataclasses.replace(train.config, **point)
        alone = run(
            train.factory(config),
            seeds=[3],
            total_steps=total,
            compile=False,
            progress=False,
            eval_episodes=2,
        )
        _assert_members_equal(result, alone, i, 0)
        assert result.eval_returns[i] == pytest.approx(alone.eval_returns[0], abs=1e-4)
    params = [result.state[i]["params"] for i in range(len(result.members))]
    assert not all(torch.equal(_leaves(params[0])[0], _leaves(p)[0]) for p in params[1:])


def test_hparams_are_validated_per_field():
    train = _small("ppo")
    kw = dict(seeds=1, total_steps=128, compile=False, progress=False)
    with pytest.raises(
        ValueError, match=r"ppo.Config: `clip_coef` must be a finite number in \[0, 1\], got nan"
    ):
        run(train, hparams={"clip_coef": [0.2, float("nan")]}, **kw)
    with pytest.raises(
        ValueError, match=r"`num_envs` is a setting .* not a hyper-parameter; hyper-parameters:"
    ):
        run(train, hparams={"num_envs": [2, 4]}, **kw)
    with pytest.raises(ValueError, match="`lr` is not a field"):
        run(train, hparams={"lr": [1e-3]}, **kw)
    with pytest.raises(ValueError, match="needs a non-empty list of values"):
        run(train, hparams={"gamma": []}, **kw)
    with pytest.raises(TypeError, match="must hold numbers"):
        run(train, hparams={"gamma": ["0.9"]}, **kw)


def test_run_rejects_bad_input():
    train = _small("ppo")
    with pytest.raises(ValueError, match="`total_steps` must be a positive int"):
        run(train, seeds=1, total_steps=-5, compile=False, progress=False)
    with pytest.raises(ValueError, match="`seeds` must be a positive count"):
        run(train, seeds=0, total_steps=128, compile=False, progress=False)
    with pytest.raises(ValueError, match="less than one iteration"):
        run(train, seeds=1, total_steps=10, compile=False, progress=False)
    with pytest.raises(ValueError, match="needs an `out_dir`"):
        run(train, seeds=1, total_steps=128, compile=False, progress=False, checkpoint_every=64)


@pytest.mark.compile
def test_compiled_hyperparameter_grid_one_graph_per_unit_each_member_its_configuration_alone():
    """PPO's defaults (annealed learning rate), a 2 x 2 x 2 grid of learning rate, clip ratio and
    discount x 2 seeds: 16 members in one compiled, vmapped run with one graph per unit (and one
    for evaluation); member i equals configuration i run alone (eagerly, one seed)."""
    config = ppo.Config(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2, total_timesteps=128)
    train = ppo.make_train(config)
    grid = {"learning_rate": [1e-3, 3e-4], "clip_coef": [0.1, 0.3], "gamma": [0.98, 0.99]}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    result = run(train, seeds=2, hparams=grid, compile=True, progress=False, eval_episodes=2)
    assert len(result.members) == 16 and result.state.batch_size == (16,)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs == len(train.collect) + len(train.learn) + 1, graphs  # + the evaluation chunk
    assert result.compile_s > 0
    for i, member in enumerate(result.members):
        point = {k: v for k, v in member.items() if k != "seed"}
        alone = run(
            ppo.make_train(dataclasses.replace(config, **point)),
            seeds=[member["seed"]],
            compile=False,
            progress=False,
            eval_episodes=2,
        )
        _assert_members_equal(result, alone, i, 0)


def test_blocks_fit_the_runs_stops_and_are_refused_where_they_cannot_run():
    from frl.driver.blocks import block_size, last_iteration

    train = _small("dqn")  # 10 steps an iteration, a 200-transition buffer: at most 20 per block
    state = train.init(random.key(0))
    prioritized = state.clone()
    prioritized["data", "priority"] = torch.zeros(200)

    def pick(periods, iterations, requested=None, members=1, **kw):
        given = (kw.get("train", train), kw.get("state", state), members, kw.get("compile", True))
        return block_size(*given, kw.get("whole", True), periods, iterations, requested)

    assert pick((None, None, None), 20) == 20  # the whole run, one call
    assert pick((120, 120, None), 48) == 12  # divides the log points (every 12 iterations)
    assert pick((30, 30, None), 48) == 20  # no divisor reaches 8: the most the buffer holds
    assert pick((None, None, None), 24, members=8) == 12  # at most 1024 staged transitions
    assert pick((None, None, None), 20, members=8) == 10
    assert pick((None, None, None), 20, members=16) == 1  # fewer than 8 iterations would fit
    assert pick((None, None, None), 20, 20, members=16) == 20  # asked for: as asked
    assert pick((None, None, None), 20, compile=False) == 1
    assert pick((None, None, None), 20, whole=False) == 1  # a collector's feed
    assert pick((None, None, None), 20, train=_small("ppo")) == 1
    assert pick((None, None, None), 20, 1, train=_small("ppo")) == 1  # asked for none: fine anywhere
    assert pick((None, None, None), 20, state=prioritized) == 1
    with pytest.raises(ValueError, match=r"`iterations_per_call` \(4\) needs blocks, but an eager run"):
        pick((None, None, None), 20, 4, compile=False)
    with pytest.raises(ValueError, match=r"holds \(200\): at most 20"):
        pick((None, None, None), 20, 21)
    with pytest.raises(ValueError, match="positive int"):
        pick((None, None, None), 20, 0)
    # blocks end exactly at the next stop (a schedule's next step count, or the end); single
    # iterations first where the iterations left until it are not a multiple of the block
    assert last_iteration(0, 4, [40, None], 20, 10) == 3
    assert last_iteration(0, 4, [80, None], 20, 10) == 3
    assert last_iteration(0, 4, [30, None], 20, 10) == 0  # 3 left: one alone, then ...
    assert last_iteration(1, 3, [70, None], 20, 10) == 3  # ... a block of three ends at iteration 6
    assert last_iteration(18, 4, [None], 20, 10) == 18
    assert last_iteration(16, 4, [None], 20, 10) == 19


@pytest.mark.compile
def test_blocks_of_iterations_train_and_log_as_one_iteration_per_call():
    """Two DQN seeds compiled in blocks of two iterations per call (the replay buffer staged
    around the loop; it wraps inside the block of iterations 14-15) give the states and log rows
    of the run one iteration per call: the iterations before learning starts (0-2) and the one
    whose block would cross a log point (3) run alone, the blocks end at the log points, the
    last iteration runs alone."""
    cfg = dataclasses.replace(_small("dqn").config, buffer_size=150, total_timesteps=210)
    kwargs = dict(seeds=2, compile=True, progress=False, eval_episodes=2, log_every=20)
    blocks = run(dqn.make_train(cfg), iterations_per_call=2, **kwargs)
    single = run(dqn.make_train(cfg), iterations_per_call=1, **kwargs)
    assert (blocks.iterations_per_call, single.iterations_per_call) == (2, 1)
    for i in range(2):
        _assert_members_equal(blocks, single, i, i)
    assert [r["env_steps"] for r in blocks.history] == [20 * k for k in range(1, 11)] + [210]
    assert [sorted(r) for r in blocks.history] == [sorted(r) for r in single.history]
    assert "loss" not in blocks.history[0] and "loss" in blocks.history[1]
    for a, b in zip(blocks.history, single.history, strict=True):
        for name in ("loss", "episode_return", "epsilon"):
            if name in a:
                assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-5)
    assert blocks.eval_returns == single.eval_returns


@pytest.mark.compile
def test_compiled_vmapped_dqn_on_cartpole_equals_eager():
    """4 DQN seeds compiled on CartPole (a loop-capable environment, a replay ring written in
    place after each chunk; from iteration 4 on, blocks of 4 iterations a call, the ring staged)
    equal the eager run. With the chunk's steps looped inside the graph, Inductor's C++ wrapper
    crashed this run (segmentation fault); replay agents unroll it."""
    train = _small("dqn")
    compiled = run(train, seeds=4, compile=True, progress=False, eval_episodes=2, iterations_per_call=4)
    assert compiled.iterations_per_call == 4  # iteration 3, then blocks of 4: 4-7, ..., 16-19
    eager = run(train, seeds=4, compile=False, progress=False, eval_episodes=2)
    for i in range(4):
        _assert_members_equal(compiled, eager, i, i)
    assert compiled.eval_returns == eager.eval_returns


@pytest.mark.parametrize("algo", ["dqn", "sac"])
def test_learning_units_before_learning_starts_change_nothing(algo):
    """The driver skips the learning units until ``learning_starts``: running them there leaves
    the state bit for bit as it was (key and counters included), and from the first learning
    iteration on they change the parameters."""
    from frl.driver.members import init_states

    train = _small(algo)
    consumes = train.consumes
    first = consumes.first_learning_iteration
    assert first > 0
    assert first * consumes.steps_per_iteration < consumes.learning_starts
    assert (first + 1) * consumes.steps_per_iteration >= consumes.learning_starts
    state = init_states(train, [{"seed": 0}], False)
    (collect,), (learn,) = train.collect, train.learn
    for _ in range(first):
        state, _ = collect.fn(state)
        learned, _ = learn.fn(state)
        for a, b in zip(_leaves(learned), _leaves(state), strict=True):
            assert torch.equal(a, b)
    state, _ = collect.fn(state)
    learned, _ = learn.fn(state)
    assert int(learned["counters", "updates"]) == 1
    assert not torch.equal(learned["key"], state["key"])
    changed = [not torch.equal(a, b) for a, b in zip(_leaves(learned["params"]), _leaves(state["params"]))]
    assert any(changed)


def test_a_metric_that_starts_later_widens_the_csv_header(tmp_path):
    """DQN logs no loss before ``learning_starts``: the loss column joins the header when it
    first appears, and the earlier rows keep their values with the new cells empty."""
    train = _small("dqn")  # learning from 40 steps, an iteration is 10
    run(train, seeds=1, total_steps=100, log_every=20, compile=False, progress=False, out_dir=tmp_path)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert "loss" in header and "env_steps" in header
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert [int(r["env_steps"]) for r in rows] == [20, 40, 60, 80, 100]
    assert rows[0]["loss"] == ""
    assert all(r["loss"] != "" for r in rows[1:])


def test_a_vmapped_run_on_an_explicit_device_keeps_the_state_structure(monkeypatch):
    """``device=`` moves the state without tagging its TensorDicts with a device, which vmapped
    units do not return: the compiled path's structure check passed on the first call (it
    failed with "unit 'collect' changed the structure" before). The compiled path runs here
    without torch.compile (``_compile`` is the identity), so the test compiles nothing; every
    unit is built for the state's device (which picks ``frl.compile``'s defaults)."""
    from frl.driver import compiled

    devices: list[torch.device] = []
    monkeypatch.setattr(
        compiled, "_compile", lambda name, flat, device, guarded=True: devices.append(device) or flat
    )
    train = _small("dqn")
    on_device = run(
        train, seeds=2, total_steps=60, compile=True, device="cpu", progress=False, eval_episodes=1
    )
    assert devices and set(devices) == {torch.device("cpu")}
    plain = run(train, seeds=2, total_steps=60, compile=False, progress=False, eval_episodes=1)
    for a, b in zip(_leaves(on_device.state), _leaves(plain.state), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # flat calls may lay data out anew
