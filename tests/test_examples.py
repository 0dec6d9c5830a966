"""The examples that extend the agent layer run as written (reduced budgets)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

import frl

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ppo_rnd_adds_a_value_head_and_an_auxiliary_loss_on_ppos_pieces():
    rnd = _load("ppo_rnd")
    assert len((EXAMPLES / "ppo_rnd.py").read_text().splitlines()) <= 80
    config = rnd.Config(
        env_id="MountainCar-v0", num_envs=4, num_steps=64, num_minibatches=2, update_epochs=2, hidden=(32,)
    )
    train = rnd.make_train(config)
    state = train.init(frl.random.key(0))  # the spec holds: new networks, the segment's new entry
    assert {"critic_int", "predictor", "random"} <= set(state["params"].keys())
    assert "value_target_int" in state["data"] and state["data"].batch_size == (4, 64)
    result = frl.run(
        train,
        seeds=2,
        total_steps=4096,
        compile=False,
        progress=False,
        eval_episodes=1,
        log_every=256,
        hparams={"intrinsic_coef": [0.0, 1.0]},  # the example's own hyper-parameter, swept
    )
    novelty = [row["novelty"] for row in result.history]
    assert novelty[-1] < 0.5 * max(novelty[:4])  # the predictor learns the random network
    # the random network never trains (every member keeps its draw); the intrinsic value head does
    again = torch.func.vmap(train.init)(torch.stack([frl.random.key(m["seed"]) for m in result.members]))
    torch.testing.assert_close(result.state["params", "random"], again["params", "random"])
    moved = result.state["params", "critic_int", "0", "weight"] - again["params", "critic_int", "0", "weight"]
    assert (moved.flatten(1).abs().amax(-1) > 0).all()


def test_the_recommender_example_reads_top_to_bottom_and_runs():
    example = _load("recommender")
    watch = example.main(steps=4096, seeds=1, sessions=50)
    assert watch["quality oracle"] > 2.5 * watch["greedy (click probability)"]
    assert watch["learned from the logs"] > watch["logger (softmax greedy)"]
    assert {"PPO, seed 0", "logs, then fine-tuned"} <= set(watch)


def test_the_driving_example_reads_top_to_bottom_and_runs():
    example = _load("driving")
    returns = example.main(sac_steps=600, ppo_steps=2048, seeds=1, episodes=8)
    assert returns["hand-tuned controller"] > returns["straight, 25 m/s"] > 0
    assert {"SAC, seed 0", "PPO, seed 0"} <= set(returns)


def test_highway_env_comes_through_gym_with_continuous_actions_and_trains_sac():
    example = _load("highway_env_gym")
    env = frl.envs.make(f"gym:{example.ENV_ID}")
    assert env.observation_space.shape == (25,) and env.action_space.shape == (2,) and not env.discrete
    returns = example.main(steps=300, seeds=1)  # learning starts at 150 steps: updates run
    assert len(returns) == 1 and math.isfinite(returns[0])


def test_the_vmas_example_runs_frls_mappo_learner_in_a_torchrl_collector_loop():
    example = _load("vmas_mappo")
    runs = [("vmas:navigation", "team"), ("vmas:navigation", "local"), ("mpe2:simple_spread", "joint")]
    for env_id, critic in runs:  # MAPPO and IPPO on VMAS (forces); MAPPO on MPE2 (discrete moves)
        result = example.train(
            0, env_id, 2, critic, compiled=False, frames_per_batch=400, epochs=1, num_envs=4, log=False
        )
        assert len(result["curve"]) == 2 and all(math.isfinite(r) for r in result["curve"])
        assert math.isfinite(result["loss"]) and result["env_steps_per_s"] > 0


def test_the_micro_combat_example_writes_mappo_out_and_runs():
    example = _load("micro_combat")
    results = example.main(iterations=2)
    assert results["episodes"] > 0 and math.isfinite(results["loss"])
    assert 0.0 <= results["win_rate"] <= 1.0
