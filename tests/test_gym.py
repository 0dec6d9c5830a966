"""The gymnasium path: ``gym:<id>`` environments through TorchRL collectors, the same pure units.

Smoke runs of every agent, the store unit's exact bookkeeping, truncation (the true final
observation), reproducibility, vmapped seeds against a seed alone, checkpoint/resume with and
without the replay buffer, observation normalisation, the CLI, and Pong with the Nature CNN.
"""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch
from tensordict import TensorDict

import frl
from frl import envs
from frl.algos import dqn, ppo, reinforce, sac
from frl.cli import main
from frl.driver import Collectors, PureEnv, checkpoint
from frl.driver.collectors import make_store

# -- tiny configurations (eager: compile is exercised once, at the end) ----------------------


def tiny_sac(**kw):
    cfg = dict(
        env_id="gym:Pendulum-v1", total_timesteps=300, learning_starts=100, batch_size=16, hidden=(16, 16)
    )
    return sac.make_train(sac.Config(**{**cfg, **kw}))


def tiny_dqn(env=None, **kw):
    cfg = dict(
        env_id="gym:CartPole-v1",
        total_timesteps=400,
        learning_starts=100,
        batch_size=16,
        target_network_frequency=50,
        hidden=(16,),
    )
    return dqn.make_train(dqn.Config(**{**cfg, **kw}), env)


# -- the environment ----------------------------------------------------------------------------


def test_gym_ids_describe_their_spaces():
    pend = envs.make("gym:Pendulum-v1")
    assert pend.observation_space.shape == (3,) and not pend.discrete
    assert pend.action_space.low == (-2.0,) and pend.action_space.high == (2.0,)
    assert pend.max_episode_steps == 200
    cart = envs.make("gym:CartPole-v1")
    assert cart.discrete and cart.action_space.n == 2 and cart.max_episode_steps == 500
    with pytest.raises(ValueError, match="does not know 'Nope-v9'"):
        envs.make("gym:Nope-v9")
    assert not cart.pure and not hasattr(cart, "step")  # stepped by TorchRL collectors, not in the graph


def test_minigrid_ids_observe_the_agents_view_flattened_and_ppo_rnd_runs_on_them():
    """MiniGrid's dict observation becomes its 7 x 7 x 3 image view as 147 floats (what RND
    normalises), with MiniGrid's own step limit (10 size^2)."""
    from frl.algos import ppo_rnd

    grid = envs.make("gym:MiniGrid-DoorKey-5x5-v0")
    assert grid.observation_space.shape == (147,) and grid.obs_dtype == torch.float32
    assert grid.discrete and grid.action_space.n == 7 and grid.max_episode_steps == 250
    env = grid.make_env(seed=0, train=True)
    try:
        obs = env.reset()["observation"]
        assert obs.shape == (147,) and obs.dtype == torch.float32
        view = obs.reshape(7, 7, 3)
        assert int(view[..., 0].max()) <= 10 and float(view.min()) >= 0  # object, colour, state indices
    finally:
        env.close()
    config = ppo_rnd.Config(
        env_id="gym:MiniGrid-DoorKey-5x5-v0", num_envs=2, num_steps=32, total_timesteps=128
    )
    result = frl.run(ppo_rnd.make_train(config), seeds=1, compile=False, progress=False, eval_episodes=1)
    assert result.env_steps == 128 and all(math.isfinite(r) for r in result.eval_returns)
    assert math.isfinite(result.history[-1]["predictor_loss"])


def test_truncation_keeps_the_true_final_observation():
    """A TimeLimit end: truncated, not terminated, and next.observation is the last real
    observation, not the reset one that starts the next row."""
    env = envs.make("gym:Pendulum-v1", make_kwargs={"max_episode_steps": 5})
    train = sac.make_train(
        sac.Config(env_id="gym:Pendulum-v1", total_timesteps=12, learning_starts=100, batch_size=4), env
    )
    result = frl.run(train, seeds=1, compile=False, progress=False, eval_episodes=1)
    data = result.state[0]["data", "data"][:12]
    trunc, term = data["next", "truncated"], data["next", "terminated"]
    assert trunc.tolist() == [i % 5 == 4 for i in range(12)]
    assert not term.any()
    follows = torch.isclose(data["next", "observation"][:-1], data["observation"][1:]).all(-1)
    # rows follow each other within an episode and jump at a truncation
    assert follows.tolist() == [i % 5 != 4 for i in range(11)]
    # the final observation is a real pendulum state (cos^2 + sin^2 = 1), not a placeholder
    final = data["next", "observation"][trunc]
    torch.testing.assert_close(final[:, 0] ** 2 + final[:, 1] ** 2, torch.ones(len(final)))


class Float64Walk(gymnasium.Env):
    """A user's simulator: float64 observations (as MuJoCo's), one continuous action."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.normal(size=2)
        return self.x.copy(), {}

    def step(self, action):
        self.x = self.x + 0.1 * float(action[0])
        return self.x.copy(), -float(np.abs(self.x).sum()), False, False, {}


gymnasium.register("FrlFloat64Walk-v0", entry_point=Float64Walk, max_episode_steps=20)


def test_a_registered_simulator_with_float64_observations_trains():
    env = envs.make("gym:FrlFloat64Walk-v0")
    assert env.obs_dtype == torch.float32 and env.max_episode_steps == 20
    result = frl.run(
        tiny_sac(env_id="gym:FrlFloat64Walk-v0"), seeds=1, compile=False, progress=False, eval_episodes=1
    )
    data = result.state[0]["data", "data"]
    assert data["observation"].dtype == torch.float32 and torch.isfinite(data["observation"]).all()
    assert data["next", "truncated"][:300].sum() == 15  # 300 steps of 20-step episodes
    assert math.isfinite(result.eval_returns[0])


# -- the store unit -----------------------------------------------------------------------------


def _batch(E: int, T: int, done_at: dict[tuple[int, int], tuple[float, int]]) -> TensorDict:
    """A collector batch in frl's keys, ``[E, T]`` (time last), with RewardSum/StepCounter values;
    observation ``t * E + e``: the order in which the steps happened."""
    obs = torch.arange(E * T, dtype=torch.float32).reshape(T, E).T.reshape(E, T, 1).expand(E, T, 4).clone()
    done = torch.zeros(E, T, dtype=torch.bool)
    ret = torch.arange(E * T, dtype=torch.float32).reshape(T, E).T + 100.0
    length = torch.arange(E * T).reshape(T, E).T + 1
    for (t, e), (r, n) in done_at.items():
        done[e, t] = True
        ret[e, t], length[e, t] = r, n
    return TensorDict(
        {
            "observation": obs,
            "action": torch.ones(E, T, dtype=torch.int64),
            "action_log_prob": torch.zeros(E, T),
            "next": {
                "observation": obs + 0.5,
                "reward": torch.ones(E, T),
                "terminated": done.clone(),
                "truncated": torch.zeros(E, T, dtype=torch.bool),
                "done": done,
                "episode_reward": ret,
                "step_count": length,
            },
        },
        batch_size=[E, T],
    )


def test_store_writes_the_buffer_step_major_and_tracks_episodes():
    train = tiny_dqn(num_envs=2, train_frequency=3, target_network_frequency=30)
    state = train.init(frl.random.key(0))
    batch = _batch(2, 3, {(0, 1): (7.0, 4), (2, 1): (9.0, 2), (1, 0): (5.0, 3)})
    new, metrics = make_store(train)(state, batch)
    buf = new["data"]
    assert int(buf["size"]) == 6 and int(new["counters", "env_steps"]) == 6
    # step-major: (t0, e0), (t0, e1), (t1, e0), ...
    assert buf["data", "observation"][:6, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert buf["data", "next", "done"][:6].tolist() == [False, True, True, False, False, True]
    episodes = new["episodes"]
    assert episodes["last_return"].tolist() == [5.0, 9.0]  # env 1: the later of its two episodes
    assert episodes["last_length"].tolist() == [3, 2]
    assert episodes["count"].item() == 3
    # env 0 is mid-episode at the end: its running return is the RewardSum value at t = 2
    assert episodes["return"].tolist() == [104.0, 0.0]
    assert metrics["episode_return"].item() == 7.0


def test_store_replaces_the_segment_time_last():
    train = ppo.make_train(
        ppo.Config(env_id="gym:CartPole-v1", num_envs=2, num_steps=4, rollout_chunk=4, total_timesteps=64)
    )
    state = train.init(frl.random.key(0))
    batch = _batch(2, 4, {})
    new, _ = make_store(train)(state, batch)
    assert int(new["counters", "segment_step"]) == 0  # a whole segment: the next one starts at 0
    assert new["data"].batch_size == (2, 4)
    assert torch.equal(new["data", "next", "observation"], batch["next", "observation"])
    assert torch.equal(new["data", "observation"], batch["observation"])


# -- every agent learns through collectors --------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: tiny_sac(),
        lambda: tiny_dqn(),
        lambda: ppo.make_train(
            ppo.Config(
                env_id="gym:CartPole-v1", num_envs=2, num_steps=32, rollout_chunk=16, total_timesteps=256
            )
        ),
        lambda: reinforce.make_train(
            reinforce.Config(env_id="gym:Pendulum-v1", num_envs=2, num_steps=64, total_timesteps=512)
        ),
    ],
    ids=["sac", "dqn", "ppo", "reinforce"],
)
def test_every_agent_runs_on_the_gym_path(make):
    train = make()
    result = frl.run(train, seeds=2, compile=False, progress=False, eval_episodes=1, log_every=128)
    state = result.state
    assert state["counters", "env_steps"].tolist() == [result.env_steps] * 2
    assert all(math.isfinite(r) for r in result.eval_returns)
    last = result.history[-1]
    assert math.isfinite(last["loss"]) and math.isfinite(last["episode_return"])
    assert int(state["episodes", "count"].min()) > 0
    for leaf in state["params"].values(include_nested=True, leaves_only=True):
        assert torch.isfinite(leaf).all()


def test_a_seed_is_reproducible_and_the_same_inside_a_batch():
    alone = frl.run(tiny_sac(), seeds=[1], compile=False, progress=False, eval_episodes=1)
    again = frl.run(tiny_sac(), seeds=[1], compile=False, progress=False, eval_episodes=1)
    batch = frl.run(tiny_sac(), seeds=[0, 1], compile=False, progress=False, eval_episodes=1)
    a = alone.state[0]["params"]
    for key, value in a.items(include_nested=True, leaves_only=True):
        assert torch.equal(value, again.state[0]["params", key]), key
        torch.testing.assert_close(batch.state[1]["params", key], value, rtol=1e-5, atol=1e-6)
    obs_alone = alone.state[0]["data", "data", "observation"]
    obs_batch = batch.state[1]["data", "data", "observation"]
    assert torch.equal(obs_alone[:100], obs_batch[:100])  # before learning: the seed alone decides
    torch.testing.assert_close(obs_batch, obs_alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("save_buffer", [True, False])
def test_checkpoint_resume(tmp_path, save_buffer):
    out = tmp_path / "run"

    def go(**kw):
        return frl.run(
            tiny_dqn(),
            seeds=2,
            compile=False,
            progress=False,
            out_dir=out,
            checkpoint_every=200,
            eval_every=200,
            eval_episodes=1,
            save_buffer=save_buffer,
            **kw,
        )

    stopped = go(callbacks=[lambda row: row["env_steps"] >= 200])
    assert stopped.env_steps == 200
    saved = checkpoint.load(out / "checkpoint.pt")
    assert saved["iteration"] == 20 and saved["buffer_saved"] is save_buffer
    assert ("data" in saved["state"]["data"]) is save_buffer
    resumed = go(resume=True)
    assert resumed.env_steps == 400
    assert [row["env_steps"] for row in resumed.history] == [200, 400]
    size = resumed.state["data", "size"].tolist()
    # with the buffer: 400 transitions; without: refilled from the resume point on
    assert size == ([400, 400] if save_buffer else [200, 200])


def test_observation_normalisation_and_cli_eval(tmp_path, capsys):
    out = tmp_path / "norm"
    code = main(
        [
            "train",
            "sac",
            "--env",
            "gym:Pendulum-v1",
            "--steps",
            "300",
            "--config.learning_starts",
            "100",
            "--config.batch_size",
            "16",
            "--config.hidden",
            "16,16",
            "--no-compile",
            "--norm-obs",
            "--eval-episodes",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    saved = checkpoint.load(out / "checkpoint.pt")
    stats = saved["env_states"][0]["observation"]["_extra_state"]
    loc = next(v for k, v in stats.items() if k.startswith("loc"))
    assert loc.shape == (3,) and torch.isfinite(loc).all() and loc.abs().sum() > 0
    # observations in the buffer were normalised by the running statistics
    data = saved["state"]["data", "data", "observation"][:300]
    assert data.std(0).max() > 0.3 and data[:, 2].abs().max() > 1.5
    capsys.readouterr()
    assert main(["eval", str(out), "--episodes", "1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "nan" not in line and line.startswith("mean")


def test_reward_normalisation_trains_on_scaled_rewards_but_reports_raw_returns():
    env = envs.make("gym:CartPole-v1", norm_reward=True)
    result = frl.run(tiny_dqn(env), seeds=1, compile=False, progress=False, eval_episodes=1)
    state = result.state[0]
    rewards = state["data", "data", "next", "reward"][:400]
    assert not torch.allclose(rewards, torch.ones_like(rewards))  # the learner saw normalised rewards
    # CartPole pays 1 per step: a raw return equals the episode length
    assert torch.equal(state["episodes", "last_return"], state["episodes", "last_length"].float())
    assert result.eval_returns[0] == float(int(result.eval_returns[0]))  # evaluation is raw too


def test_cli_rejects_gym_options_elsewhere(capsys):
    assert main(["train", "ppo", "--env", "CartPole-v1", "--norm-obs"]) == 2
    assert "--norm-obs: only for gym:<id> environments" in capsys.readouterr().err
    assert main(["train", "dqn", "--env", "gym:Pendulum-v1"]) == 2
    assert "dqn needs discrete actions" in capsys.readouterr().err


def test_each_source_refuses_the_other_kind_of_environment():
    with pytest.raises(ValueError, match="CartPole-v1 is pure: it is stepped inside the compiled units"):
        frl.run(
            dqn.make_train(dqn.Config()), total_steps=100, source=Collectors(), compile=False, progress=False
        )
    with pytest.raises(ValueError, match="gym:CartPole-v1 is not a pure environment"):
        frl.run(tiny_dqn(), source=PureEnv(), compile=False, progress=False)


# -- Atari: the Nature CNN on Pong ------------------------------------------------------------------


def test_pong_smoke_nature_cnn_and_checkpoint_round_trip(tmp_path):
    env = envs.make("gym:ALE/Pong-v5", make_kwargs={"max_episode_steps": 300})
    assert env.pixels and env.observation_space.shape == (4, 84, 84) and env.obs_dtype == torch.uint8
    config = dqn.Config.preset(
        "gym:ALE/Pong-v5",
        total_timesteps=1200,
        buffer_size=1200,
        learning_starts=800,
        train_frequency=4,
        target_network_frequency=200,
        exploration_fraction=0.5,
    )
    train = dqn.make_train(config, env)
    assert isinstance(
        train.init(frl.random.key(0))["params", "online", "torso", "conv0", "weight"], torch.Tensor
    )
    out = tmp_path / "pong"
    result = frl.run(
        train, seeds=1, compile=False, progress=False, out_dir=out, checkpoint_every=1200, eval_episodes=1
    )
    last = result.history[-1]
    assert math.isfinite(last["loss"]) and last["loss"] > 0
    data = result.state[0]["data", "data"]
    assert data["observation"].dtype == torch.uint8 and data["observation"].shape == (1200, 4, 84, 84)
    assert int(data["observation"].max()) > 0
    saved = checkpoint.load(out / "checkpoint.pt")
    for key, value in result.state[0]["params"].items(include_nested=True, leaves_only=True):
        assert torch.equal(saved["state"]["params", key], value), key
    assert math.isfinite(result.eval_returns[0])


# -- compiled and vmapped: the production path, once ------------------------------------------------


@pytest.mark.compile
def test_compiled_vmapped_gym_run_matches_eager_collection():
    compiled = frl.run(tiny_dqn(total_timesteps=200), seeds=2, compile=True, progress=False, eval_episodes=1)
    eager = frl.run(tiny_dqn(total_timesteps=200), seeds=2, compile=False, progress=False, eval_episodes=1)
    # before learning starts the behaviour is a function of the seed alone
    for key in ("observation", "action"):
        a = compiled.state["data", "data", key][:, :100]
        b = eager.state["data", "data", key][:, :100]
        torch.testing.assert_close(a, b)
    assert all(math.isfinite(r) for r in compiled.eval_returns)


def test_the_torchrl_loop_example_runs():
    """examples/torchrl_loop_frl_sac.py: TorchRL's Collector and ReplayBuffer feeding frl's update."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "torchrl_loop_frl_sac.py"
    spec = importlib.util.spec_from_file_location("torchrl_loop_frl_sac", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    final = module.main(["--steps", "600", "--learning-starts", "300", "--hidden", "16", "--eager"])
    assert math.isfinite(final) and final < 0
