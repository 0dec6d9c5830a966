"""frl.envs.to_torchrl: pure environments behind TorchRL's EnvBase."""

from __future__ import annotations

import pytest
import torch
from torchrl.collectors import Collector
from torchrl.envs.utils import check_env_specs

from frl import envs, random


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"])
def test_check_env_specs_and_long_rollouts(env_id):
    env = envs.to_torchrl(envs.make(env_id), num_envs=3, seed=1)
    check_env_specs(env)
    rollout = env.rollout(220, break_when_any_done=False)
    assert rollout.shape == (3, 220)
    done = rollout["next", "done"]
    assert torch.equal(done, rollout["next", "terminated"] | rollout["next", "truncated"])
    if env_id == "Pendulum-v1":
        assert int(rollout["next", "truncated"].sum()) == 3  # 200-step limit, then a new episode


def test_steps_match_the_pure_environment_and_resets_hand_out_the_next_episode():
    pure = envs.make("CartPole-v1")
    env = envs.to_torchrl(pure, num_envs=2, seed=5)
    td = env.reset()
    obs, state = pure.reset(random.fold_in(random.key(5), 1), num_envs=2)
    assert torch.equal(td["observation"], obs)
    ended = torch.zeros(2, dtype=torch.bool)
    for t in range(60):
        action = torch.ones(2, dtype=torch.int64)
        td["action"] = action
        td, td_next = env.step_and_maybe_reset(td)
        obs, state, _reward, terminated, _truncated, info = pure.step(
            random.fold_in(random.key(5), t + 2), state, action
        )
        assert torch.equal(td["next", "observation"], info["final_observation"])
        assert torch.equal(td["next", "terminated"].squeeze(-1), terminated)
        assert torch.equal(td_next["observation"], obs)  # finished envs already hold their next episode
        td = td_next
        ended |= terminated
    assert bool(ended.all())  # both pole falls were crossed


def test_seeding_reproduces_and_a_forced_reset_starts_a_fresh_episode():
    env = envs.to_torchrl(envs.make("CartPole-v1"), num_envs=2)

    def policy(td):
        return td.set("action", (td["observation"][..., 2] > 0).to(torch.int64))

    env.set_seed(3)
    a = env.rollout(80, policy, break_when_any_done=False)
    env.set_seed(3)
    b = env.rollout(80, policy, break_when_any_done=False)
    assert torch.equal(a["observation"], b["observation"])
    td = env.reset()
    td["action"] = torch.zeros(2, dtype=torch.int64)
    td = env.step(td)
    current = td["next", "observation"].clone()
    request = td["next"].exclude("reward").clone()
    request["_reset"] = torch.tensor([[True], [False]])
    fresh = env.reset(request)
    assert not torch.equal(fresh["observation"][0], current[0])
    assert fresh["observation"][0].abs().max() <= 0.05  # CartPole's initial-state range
    assert torch.equal(fresh["observation"][1], current[1])


def test_collector_runs_on_it_and_errors_name_the_argument():
    collector = Collector(
        envs.to_torchrl(envs.make("Pendulum-v1"), num_envs=2), None, frames_per_batch=40, total_frames=80
    )
    batches = list(collector)
    assert len(batches) == 2 and batches[0].shape == (2, 20)
    with pytest.raises(ValueError, match="`num_envs` must be a positive int"):
        envs.to_torchrl(envs.make("CartPole-v1"), num_envs=0)
    with pytest.raises(TypeError, match="pure frl environment"):
        envs.to_torchrl(object())
