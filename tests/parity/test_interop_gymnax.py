"""GymnaxEnv: gymnax environments as frl pure environments (bit-equal to JAX), in TorchRL, learned by PPO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

import frl
from frl import envs, random
from frl.algos import ppo
from frl.run import run
from tests.jax_helpers import import_or_skip

jax = import_or_skip("jax")
jnp = jax.numpy
gymnax = import_or_skip("gymnax")
fj = import_or_skip("frl.interop.jax")
pytestmark = pytest.mark.jax


def np_(t) -> np.ndarray:
    return np.asarray(jax.device_get(t)) if not isinstance(t, torch.Tensor) else t.numpy()


@pytest.mark.parametrize("name", ["CartPole-v1", "Acrobot-v1", "Pendulum-v1"])
def test_rollout_equals_the_jax_program(name):
    """frl's reset/step on E envs == purejaxrl's jax.vmap(env.reset/step) over split keys: the same
    random streams (initial states exact), flags and times exact, floats to XLA's fusion rounding."""
    env = fj.GymnaxEnv(name)
    genv, gparams = gymnax.make(name)
    E, T = 3, 40
    obs, state = env.reset(random.key(0), num_envs=E)
    jobs, jstate = jax.vmap(genv.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), E), gparams)
    np.testing.assert_array_equal(obs.numpy(), np_(jobs))
    for t in range(T):
        k = random.fold_in(random.key(1), t)
        if env.discrete:
            action = random.randint(random.fold_in(k, 99), (E,), 0, env.action_space.n)
            jaction = jnp.asarray(action.numpy().astype(np.int32))
        else:
            action = random.uniform(random.fold_in(k, 99), (E, 1), minval=-2.0, maxval=2.0)
            jaction = jnp.asarray(action.numpy())
        obs, state, reward, terminated, truncated, _info = env.step(k, state, action)
        jobs, jstate, jreward, jdone, _ = jax.vmap(genv.step, in_axes=(0, 0, 0, None))(
            jax.random.split(fj.to_jax_key(k), E), jstate, jaction, gparams
        )
        np.testing.assert_allclose(obs.numpy(), np_(jobs), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reward.numpy(), np_(jreward).reshape(E), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal((terminated | truncated).numpy(), np_(jdone))
        for name_, leaf in zip(env.state_names, jax.tree_util.tree_leaves(jstate)):
            if name_ == "time":
                np.testing.assert_array_equal(state[name_].numpy(), np_(leaf))
            else:
                np.testing.assert_allclose(state[name_].numpy(), np_(leaf), rtol=1e-5, atol=1e-6)
        assert obs.dtype == torch.float32 and terminated.dtype == torch.bool


def test_truncation_is_separate_from_termination_and_final_obs_is_kept():
    env = fj.GymnaxEnv(
        "CartPole-v1", env_params=gymnax.make("CartPole-v1")[1].replace(max_steps_in_episode=5)
    )
    assert env.max_episode_steps == 5
    obs, state = env.reset(random.key(3))
    flags = []
    for t in range(5):
        prev = obs
        obs, state, _reward, terminated, truncated, info = env.step(random.key(t), state, torch.tensor(t % 2))
        flags.append((bool(terminated), bool(truncated)))
    assert flags == [(False, False)] * 4 + [(False, True)]
    assert int(state["time"]) == 0  # auto-reset
    assert not torch.equal(info["final_observation"], obs)
    native = envs.make("CartPole-v1")  # the true last state: one Euler step on from the previous one
    expected, _, _ = native.transition(prev, torch.tensor(0), native.default_params())
    torch.testing.assert_close(info["final_observation"], expected, rtol=1e-5, atol=1e-6)
    # a physics termination is terminated, not truncated
    env = fj.GymnaxEnv("CartPole-v1")
    obs, state = env.reset(random.key(4))
    for t in range(30):
        obs, state, _, terminated, truncated, _ = env.step(random.key(t), state, torch.tensor(1))
        if terminated:
            assert not truncated
            break
    else:
        pytest.fail("pushing right for 30 steps should topple the pole")


def test_vmapped_seeds_equal_seeds_alone():
    env = fj.GymnaxEnv("CartPole-v1")
    keys = random.split(random.key(7), 3)
    obs, state = torch.func.vmap(lambda k: env.reset(k, num_envs=4))(keys)
    assert obs.shape == (3, 4, 4)
    action = torch.tensor([[0, 1, 1, 0]] * 3)
    out = torch.func.vmap(env.step)(keys, state, action)
    for i in range(3):
        _o, s = env.reset(keys[i], num_envs=4)
        alone = env.step(keys[i], s, action[i])
        torch.testing.assert_close(out[0][i], alone[0], rtol=0, atol=0)
        torch.testing.assert_close(out[2][i], alone[2], rtol=0, atol=0)


@pytest.mark.compile
def test_compiled_vmapped_rollout_equals_eager():
    env = fj.GymnaxEnv("CartPole-v1")

    def rollout(key):
        obs, state = env.reset(key, num_envs=2)
        total = torch.zeros(2)
        for t in range(3):
            action = (obs[:, 2] > 0).to(torch.int64)
            obs, state, reward, _terminated, _truncated, _ = env.step(random.fold_in(key, t), state, action)
            total = total + reward
        return obs, total

    keys = random.split(random.key(0), 2)
    eager = torch.func.vmap(rollout)(keys)
    compiled = frl.compile(torch.func.vmap(rollout))(keys)
    torch.testing.assert_close(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])


@pytest.mark.parametrize("name", ["CartPole-v1", "Pendulum-v1"])
def test_torchrl_env_passes_check_env_specs(name):
    env = envs.to_torchrl(fj.GymnaxEnv(name), num_envs=2, seed=0)
    check_env_specs(env)
    rollout = env.rollout(250, break_when_any_done=False)
    assert rollout.shape == (2, 250)
    if name == "Pendulum-v1":  # 200-step episodes end by truncation and continue
        assert rollout["next", "truncated"].sum() == 2 and rollout["next", "terminated"].sum() == 0


def test_make_by_prefix_and_errors():
    env = envs.make("gymnax:Acrobot-v1")
    assert isinstance(env, fj.GymnaxEnv) and env.id == "gymnax:Acrobot-v1" and env.action_space.n == 3
    with pytest.raises(ValueError, match="unknown `env_name` 'Nope-v0'"):
        envs.make("gymnax:Nope-v0")
    with pytest.raises(TypeError, match="per-call `params`"):
        env.reset(random.key(0), params=object())
    _obs, state = env.reset(random.key(0), num_envs=2)
    with pytest.raises(ValueError, match=r"`action` must be integer indices in \[0, 3\) of shape \[2\]"):
        env.step(random.key(0), state, torch.zeros(2))


def test_ppo_learns_gymnax_cartpole():
    """PPO (CleanRL's settings) on gymnax CartPole through frl.run: 2 seeds x 51k steps, eager."""
    env = envs.make("gymnax:CartPole-v1")
    train = ppo.make_train(ppo.Config(env_id=env.id, total_timesteps=51_200), env)
    result = run(train, seeds=2, total_steps=51_200, compile=False, progress=False, eval_episodes=5)
    assert sum(result.eval_returns) / 2 >= 150, result.eval_returns


def test_cli_trains_and_evaluates_a_gymnax_environment(tmp_path, capsys):
    from frl.cli import main

    out = tmp_path / "run"
    argv = ["train", "ppo", "--env", "gymnax:CartPole-v1", "--seeds", "2", "--steps", "1024"]
    argv += ["--no-compile", "--no-progress", "--out", str(out), "--eval-episodes", "2"]
    assert main(argv) == 0
    assert "ppo on gymnax:CartPole-v1: 2 seeds" in capsys.readouterr().out
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    printed = capsys.readouterr().out
    assert "ppo on gymnax:CartPole-v1: checkpoint at 1,024 steps" in printed
