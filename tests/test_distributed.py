"""torch.distributed on one machine: 2 gloo ranks spawned on 127.0.0.1 (frl.distributed.spawn)."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

import frl
from frl import distributed as fd
from frl import nn, random
from frl.algos import ppo
from frl.driver import Collectors
from frl.update import make_update

NET = nn.MLP((3, 16, 2), activation="tanh")


def _loss(params, x, y):
    return ((NET.apply(params, x) - y) ** 2).mean()


def _data():
    x = random.normal(random.key(1), (8, 3))
    y = random.normal(random.key(2), (8, 2))
    return NET.init(random.key(0)), x, y


def _grad_worker(rank: int, size: int):
    params, x, y = _data()
    rows = slice(rank * 4, rank * 4 + 4)  # each rank holds half the batch
    local = torch.func.grad(_loss)(params, x[rows], y[rows])
    flat = fd.all_reduce_mean(local)
    per_leaf = fd.all_reduce_mean_per_leaf(local)
    # vmapped over 2 "seeds" (the second with doubled targets) and compiled: the same single op
    ys = torch.stack([y[rows], 2 * y[rows]])
    batched = torch.func.vmap(lambda yy: fd.all_reduce_mean(torch.func.grad(_loss)(params, x[rows], yy)))(ys)
    compiled = torch.compile(fd.all_reduce_mean, fullgraph=True)(local)
    return {"flat": flat, "per_leaf": per_leaf, "batched": batched, "compiled": compiled, "world": fd.world()}


def test_two_rank_averaged_gradient_equals_the_full_batch_gradient():
    out = fd.spawn(_grad_worker, 2)
    params, x, y = _data()
    full = torch.func.grad(_loss)(params, x, y)
    assert out["world"].size == 2 and out["world"].backend == "gloo"
    for name in ("flat", "per_leaf", "compiled"):
        for key, leaf in full.items(include_nested=True, leaves_only=True):
            torch.testing.assert_close(out[name][key], leaf, rtol=1e-6, atol=1e-7)
    doubled = torch.func.grad(_loss)(params, x, 2 * y)
    for key, leaf in full.items(include_nested=True, leaves_only=True):
        torch.testing.assert_close(out["batched"][key][0], leaf, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(out["batched"][key][1], doubled[key], rtol=1e-6, atol=1e-7)
    # outside a process group: the identity
    assert fd.world() == fd.World(0, 1, 0, None)
    assert (fd.all_reduce_mean(full) == full).all()


def _config():
    return ppo.Config(env_id="CartPole-v1", num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2)


def _dp_worker(rank: int, size: int, out_dir: str, total_steps: int, resume: bool):
    result = fd.train_data_parallel(
        ppo.make_train,
        _config(),
        seed=0,
        total_steps=total_steps,
        out_dir=out_dir,
        resume=resume,
        checkpoint_every=total_steps,
        eval_every=total_steps,
        eval_episodes=2,
        check_every=256,
        compile=False,
        progress=False,
    )
    state = result.state
    return {
        "params": fd.gather_objects(fd.tree_digest(state["params"])),
        "data": fd.gather_objects(fd.tree_digest(state["env"])),
        "history": len(result.history),
        "state": state,
    }


def test_data_parallel_ppo_keeps_parameters_identical_and_resumes_on_another_world_size(tmp_path):
    out = fd.spawn(_dp_worker, 2, str(tmp_path), 512, False)
    assert out["params"][0] == out["params"][1]  # also checked by digest every 256 steps
    assert out["data"][0] != out["data"][1]  # each rank collected its own environments
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "metrics.csv").exists()
    saved = frl.driver.checkpoint.load(tmp_path / "checkpoint.pt")
    assert fd.tree_digest(saved["state"]["params"]) == fd.tree_digest(out["state"]["params"][0])
    # resume the 2-rank checkpoint on 1 process (world size 1), then on 3 ranks
    one = _dp_worker(0, 1, str(tmp_path), 768, True)
    assert one["history"] > out["history"]
    three = fd.spawn(_dp_worker, 3, str(tmp_path), 1024, True)
    assert len(set(three["params"])) == 1 and len(set(three["data"])) == 3


def test_data_parallel_wrapper_errors_and_single_process_identity():
    with pytest.raises(TypeError, match="only floating-point"):
        fd.all_reduce_mean(TensorDict({"n": torch.ones(2, dtype=torch.int64)}, []))
    with pytest.raises(ValueError, match="rank"):
        fd.shard_seeds([0, 1], 2, 2)
    # one process: all_reduce_gradients is the plain optimizer; ranks draw different data
    params, x, y = _data()
    tx = frl.optim.adam(1e-2)
    plain = make_update(lambda p, b, key=None: (_loss(p, b["x"], b["y"]), TensorDict()), tx)
    reduced = make_update(
        lambda p, b, key=None: (_loss(p, b["x"], b["y"]), TensorDict()), fd.all_reduce_gradients(tx)
    )
    batch = TensorDict({"x": x, "y": y}, [8])
    a, _ = plain.step(plain.init(params), batch)
    b, _ = reduced.step(reduced.init(params), batch)
    assert fd.tree_digest(a) == fd.tree_digest(b)
    config = _config()
    train = ppo.make_train(config, wrap_optimizer=fd.all_reduce_gradients)
    state = train.init(random.key(0))
    r0, _ = fd.data_parallel(train, rank=0).step(state)
    r1, _ = fd.data_parallel(train, rank=1).step(state)
    assert fd.tree_digest(r0["env"]) != fd.tree_digest(r1["env"])
    assert fd.shard_seeds(list(range(5)), 0, 2) == [0, 1, 2] and fd.shard_seeds(list(range(5)), 1, 2) == [
        3,
        4,
    ]
    assert fd.shard_seeds([7], 1, 2) == []


def _shard_worker(rank: int, size: int, seeds: list[int], out_dir: str):
    train = ppo.make_train(_config())
    return fd.run_sharded(
        train, seeds, total_steps=256, compile=False, progress=False, eval_episodes=2, out_dir=out_dir
    )


def test_seed_sharding_over_two_ranks_matches_one_process(tmp_path):
    sharded = fd.spawn(_shard_worker, 2, [0, 1, 2], str(tmp_path))
    assert sharded["seeds"] == [0, 1, 2] and sharded["ranks"] == [0, 0, 1]
    alone = frl.run(
        ppo.make_train(_config()),
        seeds=[0, 1, 2],
        total_steps=256,
        compile=False,
        progress=False,
        eval_episodes=2,
    )
    torch.testing.assert_close(sharded["params"], alone.state["params"], rtol=1e-5, atol=1e-6)
    assert sharded["eval_returns"] == pytest.approx(alone.eval_returns, rel=1e-6)
    assert (tmp_path / "results.pt").exists() and (tmp_path / "rank1" / "metrics.csv").exists()


def test_frl_train_nproc_shards_seeds_or_trains_data_parallel(tmp_path, capsys):
    from frl.cli import main

    common = ["train", "ppo", "--steps", "512", "--no-compile", "--no-progress", "--eval-episodes", "2"]
    assert main([*common, "--seeds", "3", "--nproc", "2", "--out", str(tmp_path / "sharded")]) == 0
    results = json.loads((tmp_path / "sharded" / "results.json").read_text())
    assert results["seeds"] == [0, 1, 2] and results["processes"] == 2
    assert len(results["final_eval_return"]) == 3
    assert (tmp_path / "sharded" / "rank1" / "checkpoint.pt").exists()
    assert main([*common, "--nproc", "2", "--data-parallel", "--out", str(tmp_path / "dp")]) == 0
    results = json.loads((tmp_path / "dp" / "results.json").read_text())
    assert results["data_parallel"] and results["seeds"] == [0]
    assert (tmp_path / "dp" / "checkpoint.pt").exists() and not (tmp_path / "dp" / "rank1").exists()
    assert "2 processes (data-parallel" in capsys.readouterr().out
    for argv, message in (
        ([*common, "--seeds", "2", "--data-parallel"], "--seeds 1"),
        ([*common, "--nproc", "3"], "shards the seeds"),
        ([*common, "--nproc", "0"], "--nproc must be a positive"),
        ([*common, "--collector-workers", "2"], "only for gym:<id>"),
    ):
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_two_worker_collectors_run_the_policy_and_take_new_weights():
    config = ppo.Config(env_id="CartPole-v1", num_envs=2, num_steps=32, num_minibatches=2)
    train = ppo.make_train(config)
    params, hyper = train.init(random.key(0))["params"], train.hyperparams()
    collector, policy = fd.make_multi_collector(
        train, params, num_workers=2, envs_per_worker=2, steps_per_env=16
    )
    try:
        batches = iter(collector)
        batch = next(batches)
        assert batch.batch_size == (2, 2, 16)  # workers, environments, time
        assert not torch.equal(batch["frl_action"][0], batch["frl_action"][1])  # own envs and keys
        assert (batch["action_log_prob"] < 0).all()
        frl_batch = fd.to_frl_batch(batch)  # time last, as TorchRL and frl's segments
        assert frl_batch.batch_size == (2, 2, 16) and frl_batch["next", "reward"].shape == (2, 2, 16)
        going = ~frl_batch["next", "done"][..., :-1]
        torch.testing.assert_close(
            frl_batch["next", "observation"][..., :-1, :][going], frl_batch["observation"][..., 1:, :][going]
        )
        # new weights reach every worker: a policy that always pushes right
        sure = params.clone()
        sure["actor", "2", "bias"] = torch.tensor([-100.0, 100.0])
        collector.update_policy_weights_(fd.policy_weights(policy, sure, hyper, env_steps=64, calls=16))
        batch = next(batches)
        assert (batch["frl_action"] == 1).all() and batch["action_log_prob"].abs().max() < 1e-6
    finally:
        collector.shutdown()
    collector, _ = fd.make_multi_collector(train, params, num_workers=2, kind="multi-async")
    try:
        batch = next(iter(collector))
        assert batch.batch_size[-1] == 64 and (batch["action_log_prob"] < 0).all()
    finally:
        collector.shutdown()
    # TorchRL's torch.distributed collector, workers launched as local processes (launcher="mp")
    collector, policy = fd.make_multi_collector(
        train, params, num_workers=2, envs_per_worker=2, steps_per_env=16, kind="distributed"
    )
    try:
        batches = iter(collector)
        batch = next(batches)
        assert batch.batch_size == (2, 2, 16) and (batch["action_log_prob"] < 0).all()
        collector.update_policy_weights_(fd.policy_weights(policy, sure, hyper, env_steps=128, calls=32))
        assert (next(batches)["frl_action"] == 1).all()
    finally:
        collector.shutdown()
    with pytest.raises(ValueError, match="`kind` must be one of"):
        fd.make_multi_collector(train, params, kind="ray")


def _sweep(**kw):
    from frl.distributed.sweep import sweep

    space = {"learning_rate": [1e-3, 2.5e-4], "ent_coef": [0.0]}
    return sweep("ppo", "CartPole-v1", space, seeds=2, total_steps=1024, eval_episodes=2, **kw)


def test_sweep_over_local_processes_equals_each_point_run_alone(tmp_path):
    from frl.distributed.sweep import grid, sweep

    assert grid({"a": [1, 2], "b": [3, 4]}) == [
        {"a": 1, "b": 3},
        {"a": 1, "b": 4},
        {"a": 2, "b": 3},
        {"a": 2, "b": 4},
    ]
    with pytest.raises(ValueError, match="non-empty list"):
        grid({"a": []})
    results = _sweep(nproc=2, out_dir=tmp_path)
    assert [r["point"] for r in results] == [
        {"learning_rate": 1e-3, "ent_coef": 0.0},
        {"learning_rate": 2.5e-4, "ent_coef": 0.0},
    ]
    # the sweep's budget is its configs' too: PPO anneals its rate over the 1,024 steps
    config = ppo.Config.preset("CartPole-v1", learning_rate=2.5e-4, ent_coef=0.0, total_timesteps=1024)
    alone = frl.run(
        ppo.make_train(config), seeds=[0, 1], total_steps=1024, compile=False, progress=False, eval_episodes=2
    )
    assert results[1]["eval_returns"] == pytest.approx(alone.eval_returns, rel=1e-6)
    assert results[0]["eval_returns"] != results[1]["eval_returns"]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["mean"] for r in saved["results"]] == [r["mean"] for r in results]
    assert (tmp_path / "learning_rate=0.00025,ent_coef=0.0" / "metrics.csv").exists()
    with pytest.raises(ValueError, match="has no field 'lr'"):
        sweep("ppo", "CartPole-v1", {"lr": [1.0]})


def test_a_job_schedules_over_its_own_budget(tmp_path):
    """``run_job``'s steps are the config's ``total_timesteps``: DQN's epsilon reaches ``end_e`` at
    half of a 2,000-step job (it once decayed over the default 500k, as ``frl bench`` found)."""
    from frl.distributed.sweep import run_job

    spec = {"algo": "dqn", "env": "CartPole-v1", "point": {"learning_starts": 100}, "seeds": [0]}
    spec.update(total_steps=2000, compile=False, eval_episodes=1, eval_every=1000, out_dir=str(tmp_path))
    result = run_job(spec)
    assert result["env_steps"] == 2000 and [p[0] for p in result["curve"]] == [1000, 2000]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [round(r["epsilon"], 6) for r in rows] == [0.05, 0.05]


@pytest.mark.ray
def test_sweep_on_ray_equals_the_local_sweep():
    pytest.importorskip("ray", reason="opt-in: pip install 'frl[ray]'")
    local = _sweep(nproc=1)
    on_ray = _sweep(nproc=2, backend="ray")
    assert [r["eval_returns"] for r in on_ray] == [r["eval_returns"] for r in local]


def test_frl_sweep_command_line(tmp_path, capsys):
    from frl.cli import main

    argv = ["sweep", "ppo", "--grid", "learning_rate=1e-3,2.5e-4", "--seeds", "2", "--steps", "512"]
    assert main([*argv, "--eval-episodes", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 points x 2 seeds (local, 1 at once)" in out and "learning_rate=0.00025" in out
    assert (tmp_path / "sweep.json").exists()
    for bad, message in (
        (["--grid", "lr=1,2"], "not a field to sweep"),
        (["--grid", "learning_rate"], "expected FIELD=V1,V2"),
        (["--grid", "num_envs=four"], "expected a int"),
        (["--nproc", "0"], "--nproc must be a positive count"),
    ):
        assert main(["sweep", "ppo", *bad]) == 2
        assert message in capsys.readouterr().err


def test_gym_path_with_two_collector_worker_processes_feeds_the_learner():
    import math

    config = ppo.Config(env_id="gym:CartPole-v1", num_envs=2, num_steps=64, total_timesteps=512)
    train = ppo.make_train(config)
    quiet = dict(compile=False, progress=False)
    result = frl.run(
        train, seeds=[0, 1], eval_episodes=1, log_every=128, source=Collectors(workers=2), **quiet
    )
    assert result.state["counters", "env_steps"].tolist() == [512, 512]
    assert all(math.isfinite(r) for r in result.eval_returns)
    last = result.history[-1]
    assert math.isfinite(last["loss"]) and math.isfinite(last["episode_return"])
    assert result.state["episodes", "count"].min() > 0  # episodes finished in the workers were counted
    with pytest.raises(ValueError, match="positive divisor"):
        frl.run(train, total_steps=128, source=Collectors(workers=3), **quiet)
    with pytest.raises(ValueError, match="is pure: it is stepped inside the compiled units"):
        frl.run(ppo.make_train(_config()), total_steps=128, source=Collectors(workers=2), **quiet)
