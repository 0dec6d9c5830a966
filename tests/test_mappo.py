"""frl.algos.mappo: the state in TorchRL's group layout (and its checks), legal actions only, seeds
in a vmapped batch equal seeds alone, per-agent and shared networks, bad input, and a reduced
learning test on MicroCombat 3m."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch

from frl import envs, random
from frl.algos import mappo
from frl.algos.spec import StateError
from frl.envs.micro_combat import MicroCombat

SMALL = dict(total_timesteps=1024, num_envs=4, num_steps=32, rollout_chunk=8, hidden=(16,))


def test_state_is_the_group_layout_and_is_checked():
    train = mappo.make_train(mappo.Config(**SMALL))
    state = train.init(random.key(0))
    env = train.env
    n, obs_dim, num_actions = env.n_agents, env.obs_dim, env.num_actions
    data = state["data"]
    assert data.batch_size == (4, 32)
    assert data["agents", "observation"].shape == (4, 32, n, obs_dim)
    mask = data["agents", "action_mask"]
    assert mask.dtype == torch.bool and mask.shape == (4, 32, n, num_actions)
    assert data["agents", "action"].shape == (4, 32, n) and data["agents", "advantage"].shape == (4, 32, n)
    assert data["state"].shape == (4, 32, env.state_dim) and data["next", "reward"].shape == (4, 32)
    assert state["env", "observation", "agents", "observation"].shape == (4, n, obs_dim)
    broken = state.clone()
    broken["data", "agents", "action"] = torch.zeros(4, 32, n + 1, dtype=torch.int64)
    with pytest.raises(StateError, match=r"`data.agents.action` must be torch.int64 \[4, 32, 3\]"):
        train.check(broken)


def test_collection_stores_legal_actions_and_true_next_observations():
    train = mappo.make_train(mappo.Config(**SMALL))
    state, _ = train.collect[0].fn(train.init(random.key(1)))
    for _ in range(3):
        state, _ = train.collect[0].fn(state)
    data = state["data"]
    legal = torch.gather(data["agents", "action_mask"], -1, data["agents", "action"].unsqueeze(-1))
    assert bool(legal.all())
    done = data["next", "done"]
    assert bool(done.any()), "no episode ended: the check below would be empty"
    # where an episode did not end, the next step's observation is the stored next observation
    same = data["agents", "observation"][:, 1:] == data["next", "agents", "observation"][:, :-1]
    assert bool(same.all(-1).all(-1)[~done[:, :-1]].all())


def test_a_seed_in_a_vmapped_batch_equals_the_seed_alone():
    train = mappo.make_train(mappo.Config(**SMALL))
    keys = random.split(random.key(2), 2)
    alone = [train.step(train.init(k))[0] for k in keys]
    batched = torch.func.vmap(lambda k: train.step(train.init(k))[0], randomness="error")(keys)
    for i in range(2):
        torch.testing.assert_close(batched["params"][i], alone[i]["params"], rtol=1e-5, atol=1e-6)
        assert torch.equal(batched["data", "agents", "action"][i], alone[i]["data", "agents", "action"])


@pytest.mark.parametrize("share", [True, False])
def test_shared_and_per_agent_networks(share):
    config = mappo.Config(**SMALL, share_params=share)
    train = mappo.make_train(config)
    state = train.init(random.key(3))
    n = train.env.n_agents
    first = state["params", "actor", "0", "weight"]
    if share:  # one actor; its input carries the agent's one-hot identity
        assert first.shape == (16, train.env.obs_dim + n)
    else:  # one actor per agent, no identity needed
        assert first.shape == (n, 16, train.env.obs_dim)
    state, metrics = train.step(state)
    assert torch.isfinite(metrics["loss"])


def test_ippo_critics_read_their_own_observation_and_mappo_the_state():
    env = envs.make("MicroCombat-3m-v0")
    ippo = mappo.make_train_ippo(mappo.IPPOConfig(**SMALL))
    central = mappo.make_train(mappo.Config(**SMALL))
    n = env.n_agents
    assert ippo.init(random.key(0))["params", "critic", "0", "weight"].shape == (16, env.obs_dim + n)
    assert central.init(random.key(0))["params", "critic", "0", "weight"].shape == (16, env.state_dim + n)
    joint = mappo.make_train(mappo.Config(**SMALL, critic_input="joint"))
    assert joint.init(random.key(0))["params", "critic", "0", "weight"].shape == (16, n * env.obs_dim + n)
    team = mappo.make_train(mappo.Config(**SMALL, critic_input="team"))
    state = team.init(random.key(0))
    assert state["params", "critic", "0", "weight"].shape == (16, n * env.obs_dim)
    state, metrics = team.step(state)
    values = state["data", "agents", "state_value"]  # one team value, every agent's
    assert values.shape == (4, 32, n) and torch.equal(values, values[..., :1].expand_as(values))
    assert torch.isfinite(metrics["loss"])


@dataclasses.dataclass(frozen=True)
class _Stateless(MicroCombat):
    has_state: ClassVar[bool] = False


@pytest.mark.parametrize(
    "make,error,match",
    [
        (
            lambda: mappo.make_train(mappo.Config(env_id="CartPole-v1")),
            ValueError,
            "multi-agent algorithm; CartPole-v1",
        ),
        (lambda: mappo.make_train(mappo.Config(**SMALL), _Stateless()), ValueError, "needs a global state"),
        (lambda: mappo.Config(critic_input="global"), ValueError, "critic_input"),
        (
            lambda: mappo.make_train(mappo.Config(**SMALL, critic_input="team", share_params=False)),
            ValueError,
            "critic_input='team' is one value that every agent shares",
        ),
        (lambda: mappo.make_train_ippo(mappo.Config(**SMALL)), TypeError, "ippo Config"),
        (lambda: envs.make("MicroCombat-9z-v0"), ValueError, "unknown environment"),
    ],
)
def test_bad_input_names_it(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_mappo_learns_to_win_3m():
    """Reduced: 60k steps, one seed. A uniformly random legal policy never wins (test_micro_combat);
    MAPPO's greedy policy wins most episodes (the full 8-seed run is benchmarks/bench_marl.py)."""
    train = mappo.make_train(mappo.Config(total_timesteps=60_000))
    state = train.init(random.key(0))
    for _ in range(train.config.num_iterations):
        state, _ = train.step(state)
    result = mappo.evaluate(train, state["params"], random.key(1), 200)
    assert result["win_rate"] >= 0.3, result


def test_runs_report_the_win_rate_beside_the_return():
    import frl
    from frl.cli.common import results_table

    train = mappo.make_train(mappo.Config(**SMALL))
    result = frl.run(train, seeds=2, compile=False, progress=False, eval_episodes=6)
    row = result.history[-1]
    wins = row["eval_win_per_member"]
    assert len(wins) == 2 and all(w in {k / 6 for k in range(7)} for w in wins)
    assert row["eval_win_mean"] == pytest.approx(sum(wins) / 2)
    lines = results_table(result.members, result.eval_returns, {"win": wins})
    assert lines[0].endswith("win rate") and lines[-1].endswith(f"win rate {sum(wins) / 2:.2f}")


def test_frl_eval_reports_the_win_rate_of_a_saved_run(tmp_path, capsys):
    from frl.cli import main
    from frl.driver import checkpoint
    from frl.driver.evaluation import evaluate_outcomes

    out = tmp_path / "run"
    config = [
        f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
        for k, v in SMALL.items()
        if k != "total_timesteps"
    ]
    train_argv = ["train", "mappo", "--env", "MicroCombat-3m-v0", "--seeds", "2", "--steps", "1024"]
    assert main([*train_argv, "--no-compile", "--no-progress", "--out", str(out), *config]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("win rate") and "win rate" in lines[-1]
    saved = checkpoint.load(out / "checkpoint.pt")
    train = mappo.make_train(mappo.Config(**SMALL))
    for line, i in zip(lines[3:5], range(2), strict=True):  # each seed's rate, as evaluated directly
        key = random.fold_in(random.key(saved["members"][i]["seed"]), 7)
        _, rates = evaluate_outcomes(train, saved["state"]["params"][i], key, 4)
        assert float(line.split()[2]) == pytest.approx(rates["win"])
