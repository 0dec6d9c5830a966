"""Multi-agent environments stepped by TorchRL in frl's collector driver: VMAS scenarios
(``vmas:<scenario>``) and MPE2 through the PettingZoo wrapper (``mpe2:<scenario>``), with
MAPPO and IPPO."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("vmas")
pytest.importorskip("mpe2")

import frl
from frl import algos, envs
from frl.cli import main as cli_main
from frl.driver.collectors import to_frl_batch

pytestmark = pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested")


@pytest.fixture(scope="module")
def navigation():
    return envs.make("vmas:navigation")


def test_the_task_describes_the_group_and_a_box_per_agent(navigation):
    assert (navigation.n_agents, navigation.obs_dim, navigation.group) == (3, 18, "agents")
    assert not navigation.discrete and navigation.action_space.shape == (2,)
    assert (navigation.action_space.low, navigation.action_space.high) == ((-1.0, -1.0), (1.0, 1.0))
    assert navigation.multi_agent and not navigation.pure and not navigation.has_state


def test_the_time_limit_truncates_and_the_team_reward_is_the_agents_mean(navigation):
    env = envs.make("vmas:navigation", max_steps=5).make_env(seed=3, num_envs=2)
    td = env.rollout(7, break_when_any_done=False)
    nxt = td["next"]
    # step 5 ends the episode by time: truncated (bootstrapped), not terminated; then it restarts
    assert nxt["truncated"].squeeze(-1)[:, 4].all() and not nxt["terminated"].any()
    assert nxt["step_count"][0, :, 0].tolist() == [1, 2, 3, 4, 5, 1, 2]
    torch.testing.assert_close(nxt["reward"], nxt["agents", "reward"].mean(-2))
    # RewardSum of the team reward, reset with the episode
    torch.testing.assert_close(nxt["episode_reward"][:, 4], nxt["reward"][:, :5].sum(1))
    torch.testing.assert_close(nxt["episode_reward"][:, 5], nxt["reward"][:, 5])


def test_a_discrete_scenario_has_all_legal_masks():
    task = envs.make("vmas:navigation", continuous_actions=False, n_agents=2)
    td = task.make_env(seed=0, num_envs=2).rollout(3)
    assert task.discrete and task.num_actions == td["agents", "action_mask"].shape[-1]
    assert td["agents", "action_mask"].shape[:-1] == (2, 3, 2) and td["agents", "action_mask"].all()


def test_a_collector_batch_becomes_the_group_layout(navigation):
    train = algos.get("mappo").make_train(algos.get("mappo").config.preset("vmas:navigation"), navigation)
    from torchrl.collectors import Collector

    from frl.driver.collectors import BehaviourPolicy

    params = train.init(frl.random.key(0))["params"]
    hp = train.init(frl.random.key(0))["hyperparams"]
    policy = BehaviourPolicy(train, params, hp, seed=0)
    env = navigation.make_env(seed=1, num_envs=4)
    collector = Collector(
        env,
        policy=policy,
        frames_per_batch=24,
        total_frames=-1,
        trust_policy=True,
        auto_register_policy_transforms=False,
    )
    batch = to_frl_batch(next(iter(collector)), group="agents")
    collector.shutdown()
    assert batch.batch_size == (4, 6)
    assert batch["agents", "observation"].shape == (4, 6, 3, 18)
    assert batch["agents", "action"].shape == (4, 6, 3, 2)  # what the learner stores: unclipped
    assert batch["agents", "action_log_prob"].shape == (4, 6, 3)
    assert batch["next", "agents", "reward"].shape == (4, 6, 3) and batch["next", "reward"].shape == (4, 6)
    assert batch["next", "done"].shape == (4, 6) and batch["next", "episode_reward"].shape == (4, 6)


def test_mpe2_spread_is_grouped_as_agent_with_masks_and_pettingzoos_time_limit():
    task = envs.make("mpe2:simple_spread")
    assert (task.group, task.n_agents, task.obs_dim, task.num_actions) == ("agent", 3, 18, 5)
    td = task.make_env(seed=0, num_envs=2).rollout(27, break_when_any_done=False)
    nxt = td["next"]
    assert nxt["truncated"].squeeze(-1)[:, 24].all() and nxt["done"].squeeze(-1).sum() == 2
    assert td["agent", "action_mask"].all() and td["agent", "action_mask"].shape == (2, 27, 3, 5)
    torch.testing.assert_close(nxt["reward"], nxt["agent", "reward"].mean(-2))
    torch.testing.assert_close(nxt["episode_reward"][:, 24], nxt["reward"][:, :25].sum(1))


@pytest.mark.parametrize(
    "algo,env_id",
    [
        ("mappo", "vmas:navigation"),
        ("ippo", "vmas:balance"),
        ("mappo", "vmas:transport"),
        ("mappo", "mpe2:simple_spread"),
    ],
)
def test_mappo_and_ippo_run_in_the_collector_driver(algo, env_id):
    agent = algos.get(algo)
    settings = dict(num_envs=4, num_steps=20, rollout_chunk=20, update_epochs=1, num_minibatches=2)
    train = agent.make_train(agent.config.preset(env_id, hidden=(16, 16), **settings))
    assert train.env.id == env_id
    result = frl.run(train, seeds=1, total_steps=160, compile=False, progress=False, eval_episodes=1)
    assert result.env_steps == 160
    assert all(torch.isfinite(torch.tensor(r)) for r in result.eval_returns)
    assert all(torch.isfinite(v).all() for v in result.state["params"].values(True, True))


@pytest.mark.parametrize(
    "argv,match",
    [
        (
            ["train", "dqn", "--env", "vmas:navigation"],
            "single-agent algorithm; vmas:navigation is a multi-agent",
        ),
        (
            ["train", "qmix", "--env", "vmas:navigation"],
            "qmix needs discrete actions; vmas:navigation has continuous",
        ),
        (
            ["train", "mappo", "--env", "vmas:no_such_scenario"],
            "vmas: unknown scenario 'no_such_scenario'; VMAS has balance",
        ),
        (
            ["train", "mappo", "--env", "vmas:navigation", "--config.critic_input", "state"],
            "needs a global state",
        ),
        (  # the preset's team critic is one network for every agent
            ["train", "mappo", "--env", "vmas:navigation", "--config.share_params", "false"],
            "critic_input='team' is one value that every agent shares",
        ),
        (["train", "ippo", "--env", "mpe2:no_such"], "mpe2: unknown scenario 'no_such'"),
    ],
)
def test_bad_input_is_one_line_naming_it(argv, match, capsys, tmp_path):
    code = cli_main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err


def test_first_episodes_count_each_batched_environments_first_episode_only():
    """CartPole pays 1 a step and restarts an ended episode within the step: each environment's
    count must stop at its own first end, which comes at different steps."""
    from frl.driver.evaluation import first_episodes

    def act(td):
        td["action"] = (td["observation"][..., 2] > 0).to(torch.int64)  # push towards the lean

    returns = first_episodes(envs.to_torchrl(envs.make("CartPole-v1"), num_envs=6, seed=4), act, 500, 6)
    env = envs.to_torchrl(envs.make("CartPole-v1"), num_envs=6, seed=4)
    td, first_end = env.reset(), [0] * 6
    for t in range(500):
        act(td)
        td = env.step(td)
        for i, done in enumerate(td["next", "done"].reshape(6).tolist()):
            first_end[i] = first_end[i] or (t + 1 if done else 0)
        td = td["next"]
    assert returns.dtype == torch.float64 and returns.tolist() == [float(n) for n in first_end]
    assert len(set(first_end)) > 1 and 0 not in first_end


def test_vmas_evaluates_its_episodes_as_one_batch(navigation):
    from frl.driver.evaluation import episode_returns

    train = algos.get("mappo").make_train(algos.get("mappo").config.preset("vmas:navigation"), navigation)
    params = train.init(frl.random.key(0))["params"]
    calls = []
    make_env = navigation.make_env

    class Counting(type(navigation)):
        def make_env(self, *args, **kwargs):
            calls.append(kwargs.get("num_envs", 1))
            return make_env(*args, **kwargs)

    train = dataclasses.replace(train, env=Counting("navigation"))
    returns = episode_returns(train, params, 3, 4)
    assert calls == [4] and returns.shape == (4,) and torch.isfinite(returns).all()
    torch.testing.assert_close(returns, episode_returns(train, params, 3, 4))  # seeded
