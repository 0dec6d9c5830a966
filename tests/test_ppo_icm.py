"""PPO+ICM (frl.algos.ppo_icm): the curiosity bonus enters the rewards GAE reads, ICM trains with
PPO, a reduced learning test on DeepSea, and bad input."""

from __future__ import annotations

import pytest
import torch

import frl
from frl import algos, intrinsic, random
from frl.algos import ppo_icm
from frl.returns import gae


def _train(**settings):
    settings = dict(num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, **settings)
    return ppo_icm.make_train(ppo_icm.Config(env_id="DeepSea-6-v0", **settings))


def test_the_advantages_are_gae_of_the_reward_plus_the_scaled_curiosity_bonus():
    train = _train(int_coef=0.5)  # any weight: the test recomputes with the one it sets
    state = train.init(random.key(0))
    for _ in range(train.collect[0].repeats):
        state, _ = train.collect[0].fn(state)
    shaped, metrics = train.learn[0].fn(state)
    seg, p = shaped["data"], shaped["params"]
    icm = ppo_icm.ICM(36, 2, 32, (64,))
    flat = seg.batch_size.numel()
    bonus = intrinsic.icm_reward(
        p["icm"],
        seg["observation"].reshape(flat, -1),
        seg["action"].reshape(flat),
        seg["next", "observation"].reshape(flat, -1),
        feature_apply=icm.feature_apply,
        forward_apply=icm.forward_apply,
    ).reshape(seg.batch_size)
    filtered, _ = intrinsic.discounted_filter(torch.zeros(4), bonus, 0.99)
    scaled = bonus / torch.sqrt(intrinsic.update_moments(intrinsic.init_moments(), filtered)["var"] + 1e-8)
    torch.testing.assert_close(metrics["intrinsic_reward"], scaled.mean())
    critic = train.parts["critic"]
    expected, target = gae(
        seg["next", "reward"] + 0.5 * scaled,
        critic.apply(p["critic"], seg["observation"]),
        critic.apply(p["critic"], seg["next", "observation"]),
        seg["next", "terminated"],
        seg["next", "done"],
        gamma=0.99,
        lmbda=0.95,
    )
    torch.testing.assert_close(seg["advantage"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seg["value_target"], target, rtol=1e-5, atol=1e-6)


def test_one_iteration_trains_icm_with_ppo():
    train = _train()
    state = train.init(random.key(1))
    assert set(state["params"].keys()) == {"actor", "critic", "icm"}
    after, metrics = train.step(state.clone())
    assert {"inverse_loss", "forward_loss", "inverse_accuracy", "intrinsic_reward"} <= set(metrics.keys())
    for part in ("feature", "inverse", "forward"):
        assert any(
            not torch.equal(after["params", "icm", part, k], state["params", "icm", part, k])
            for k in state["params", "icm", part].keys(True, True)
        ), part
    assert float(after["scratch", "icm", "ret_moments", "count"]) == 128


def test_ppo_icm_learns_deep_sea_8():
    config = ppo_icm.Config(env_id="DeepSea-8-v0", total_timesteps=32_768)
    result = frl.run(ppo_icm.make_train(config), seeds=2, compile=False, progress=False, eval_episodes=1)
    assert min(result.eval_returns) > 0.9, result.eval_returns  # the treasure (0.99) in both seeds


@pytest.mark.parametrize(
    ("env_id", "shown"),
    [("Pendulum-v1", r"\[3\] with Box"), ("Breakout-MinAtar", r"\[10, 10, 4\]")],
)
def test_what_the_inverse_model_cannot_classify_is_refused(env_id, shown):
    with pytest.raises(
        ValueError, match=f"ppo_icm: ICM's inverse model classifies discrete actions .*{shown}"
    ):
        ppo_icm.make_train(ppo_icm.Config(env_id=env_id))
    assert algos.get("ppo_icm").handles(frl.envs.make("DeepSea-v0"))
