"""frl.envs: dynamics parity with gymnasium, auto-reset, time limits, specs, vmap and compile."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.func import vmap

import frl
import frl.envs as envs
from frl import random

# gymnasium's classic-control environments (tabular ones: test_planning; RecSim: test_recsim)
ENV_IDS = sorted(i for i, cls in envs.ENVIRONMENTS.items() if cls.__module__.endswith("classic_control"))


def _random_state(env_id: str, rng: np.random.Generator) -> np.ndarray:
    """A physical state drawn well beyond the initial-state distribution (and over the edges)."""
    if env_id == "CartPole-v1":
        return rng.uniform([-2.6, -3, -0.25, -3], [2.6, 3, 0.25, 3])
    if env_id == "Acrobot-v1":
        return rng.uniform([-np.pi, -np.pi, -4 * np.pi, -9 * np.pi], [np.pi, np.pi, 4 * np.pi, 9 * np.pi])
    if env_id.startswith("MountainCar"):
        return rng.uniform([-1.2, -0.07], [0.6, 0.07])
    return rng.uniform([-np.pi, -8], [np.pi, 8])  # Pendulum


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_dynamics_match_gymnasium(env_id):
    """1,000 random (state, action) pairs: next state, observation, reward and flags to 1e-5."""
    env = envs.make(env_id)
    genv = gym.make(env_id).unwrapped
    genv.reset(seed=0)
    params = env.default_params()
    rng = np.random.default_rng(0)
    worst, flag_mismatches, terminals = 0.0, 0, 0
    for _ in range(1000):
        state = _random_state(env_id, rng)
        if env.discrete:
            action = int(rng.integers(env.action_space.n))
            t_action = torch.tensor(action)
        else:
            action = rng.uniform(-2.5, 2.5, size=env.action_space.shape).astype(np.float32)
            t_action = torch.from_numpy(action)
        genv.state = state.astype(np.float32) if env_id == "MountainCarContinuous-v0" else state.copy()
        if hasattr(genv, "steps_beyond_terminated"):
            genv.steps_beyond_terminated = None
        g_obs, g_reward, g_terminated, _, _ = genv.step(action)
        physics, reward, terminated = env.transition(
            torch.tensor(state, dtype=env.physics_dtype), t_action, params
        )
        g_state = np.asarray(genv.state, dtype=np.float64)
        err = max(
            float(np.abs(physics.double().numpy() - g_state).max()),
            abs(float(reward) - float(g_reward)),
            float(np.abs(env.observe(physics).numpy() - g_obs).max()),
        )
        worst = max(worst, err)
        flag_mismatches += int(bool(terminated) != bool(g_terminated))
        terminals += int(g_terminated)
    assert worst <= 1e-5, f"{env_id}: max abs error {worst:.2e}"
    assert flag_mismatches == 0
    if env_id in ("CartPole-v1", "MountainCar-v0", "MountainCarContinuous-v0"):
        assert terminals > 0  # the sample covers termination


def test_float64_cartpole_integrates_at_gymnasiums_precision():
    """``dtype=torch.float64`` CartPole follows gymnasium's float64 physics to 1e-12 (its fused
    constants, such as F / M, are formed in the physics' dtype)."""
    env = envs.make("CartPole-v1", dtype=torch.float64)
    genv = gym.make("CartPole-v1").unwrapped
    genv.reset(seed=0)
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(300):
        state, action = _random_state("CartPole-v1", rng), int(rng.integers(2))
        genv.state, genv.steps_beyond_terminated = state.copy(), None
        genv.step(action)
        physics, _, _ = env.transition(torch.tensor(state), torch.tensor(action), env.default_params())
        assert physics.dtype == torch.float64
        worst = max(worst, float(np.abs(physics.numpy() - np.asarray(genv.state)).max()))
    assert worst <= 1e-12, worst


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_reset(env_id):
    env = envs.make(env_id)
    genv = gym.make(env_id)
    assert env.max_episode_steps == genv.spec.max_episode_steps
    assert tuple(env.observation_space.shape) == genv.observation_space.shape
    np.testing.assert_allclose(np.asarray(env.observation_space.low), genv.observation_space.low, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(env.observation_space.high), genv.observation_space.high, rtol=1e-6)
    if env.discrete:
        assert env.action_space.n == genv.action_space.n
    else:
        np.testing.assert_allclose(np.asarray(env.action_space.low), genv.action_space.low)
        np.testing.assert_allclose(np.asarray(env.action_space.high), genv.action_space.high)
    obs, state = envs.reset_batch(env, random.key(0), 256)
    assert obs.shape == (256, *env.observation_space.shape) and obs.dtype == torch.float32
    assert state["time"].eq(0).all()
    low = torch.as_tensor(env.observation_space.low, dtype=torch.float32)
    high = torch.as_tensor(env.observation_space.high, dtype=torch.float32)
    assert (obs >= low).all() and (obs <= high).all()
    assert obs.std(0).gt(0).any()  # initial states are drawn, not constant


def test_cartpole_initial_state_distribution():
    obs, _ = envs.make("CartPole-v1").reset(random.key(1), num_envs=4096)
    assert obs.abs().max() <= 0.05
    assert abs(float(obs.mean())) < 0.003
    assert abs(float(obs.std()) - 0.1 / math.sqrt(12)) < 0.002


def test_auto_reset_keeps_final_observation():
    env = envs.make("CartPole-v1")
    params = env.default_params()
    obs, state = env.reset(random.key(0))
    # Push right until the pole falls.
    key = random.key(1)
    for _t in range(1, 200):
        key, k = random.split(key)
        prev = state
        obs, state, reward, terminated, truncated, info = env.step(k, state, torch.tensor(1), params)
        if terminated:
            break
    assert bool(terminated) and not bool(truncated) and float(reward) == 1.0
    expected, _, _ = env.transition(prev["physics"], torch.tensor(1), params)
    torch.testing.assert_close(info["final_observation"], expected)
    assert int(state["time"]) == 0
    assert obs.abs().max() <= 0.05  # the next episode's first observation
    torch.testing.assert_close(obs, state["physics"])


def test_time_limit_truncates_like_gymnasium():
    env = envs.make("Pendulum-v1")  # never terminates
    _, state = env.reset(random.key(0))
    action = torch.zeros(1)
    truncations = []
    for t in range(1, 2 * env.max_episode_steps + 1):
        _obs, state, _, terminated, truncated, _info = env.step(random.key(t), state, action)
        assert not bool(terminated)
        if truncated:
            truncations.append(t)
    assert truncations == [200, 400]
    assert int(state["time"]) == 0


@pytest.mark.parametrize(
    ("env_id", "kwargs", "message"),
    [
        ("MicroCombat-3m-v0", {"map_name": "2s3z"}, "`map_name` is fixed by the id \\('3m'\\)"),
        ("DeepSea-10-v0", {"size": 5}, "DeepSea-10-v0: `size` is fixed by the id \\(10\\)"),
        ("MiniGrid-DoorKey-5x5-v0", {"size": 8}, "`size` is fixed by the id \\(5\\)"),
    ],
)
def test_a_setting_the_id_fixes_is_refused_by_name(env_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        envs.make(env_id, **kwargs)
    other = next(iter(kwargs))
    assert getattr(envs.make(env_id), other) != kwargs[other]  # the id's own value


def test_bad_action_names_the_field():
    env = envs.make("CartPole-v1")
    _, state = env.reset(random.key(0))
    with pytest.raises(ValueError, match="`action` must be integer indices in \\[0, 2\\)"):
        env.step(random.key(1), state, torch.tensor(0.5))
    with pytest.raises(ValueError, match="unknown environment 'Cartpole'; choose one of"):
        envs.make("Cartpole")
    pend = envs.make("Pendulum-v1")
    _, pstate = pend.reset(random.key(0))
    with pytest.raises(ValueError, match="float tensor of shape \\[1\\]"):
        pend.step(random.key(1), pstate, torch.zeros(()))


def _random_actions(env, key, batch):
    if env.discrete:
        return random.randint(key, batch, 0, env.action_space.n)
    return random.uniform(key, (*batch, *env.action_space.shape), torch.float32, -2.0, 2.0)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vmap_over_envs_matches_loop(env_id):
    """vmapped reset/step over 5 envs equals stepping each alone, over 300 steps of auto-resets."""
    env = envs.make(env_id)
    n = 5
    obs_b, state_b = envs.reset_batch(env, random.key(3), n)
    singles = [env.reset(k) for k in random.split(random.key(3), n)]
    torch.testing.assert_close(obs_b, torch.stack([o for o, _ in singles]))
    states = [s for _, s in singles]
    key = random.key(4)
    for _ in range(300):
        key, ka, ks = random.split(key, 3)
        actions = _random_actions(env, ka, (n,))
        out_b = envs.step_batch(env, ks, state_b, actions)
        step_keys = random.split(ks, n)
        outs = [env.step(step_keys[i], states[i], actions[i]) for i in range(n)]
        for j in (0, 2, 3, 4):
            torch.testing.assert_close(out_b[j], torch.stack([o[j] for o in outs]), rtol=1e-6, atol=1e-6)
        state_b = out_b[1]
        states = [o[1] for o in outs]
    torch.testing.assert_close(state_b["time"], torch.stack([s["time"] for s in states]))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "Pendulum-v1"])
def test_eager_step_without_an_ending_skips_the_reset_with_the_same_bits(env_id, monkeypatch):
    """Eagerly, a step where no episode ends returns without drawing a reset (the traced step
    keeps both branches): the same bits as the step that selects with ``where``, over 600 steps
    of 6 natively batched environments, with steps on both paths."""
    import frl.envs.base as base

    env = envs.make(env_id)
    _, state = env.reset(random.key(5), num_envs=6)
    traced_state = dict(state)
    key, ended = random.key(6), 0
    for _ in range(600):
        key, ka, ks = random.split(key, 3)
        actions = _random_actions(env, ka, (6,))
        out = env.step(ks, state, actions)
        with monkeypatch.context() as m:
            m.setattr(base, "readable", lambda *tensors: False)
            traced = env.step(ks, traced_state, actions)
        for a, b in zip(
            [*out[:1], *out[2:5], out[5]["final_observation"]],
            [*traced[:1], *traced[2:5], traced[5]["final_observation"]],
            strict=True,
        ):
            assert torch.equal(a, b)
        for name in ("physics", "time"):
            assert torch.equal(out[1][name], traced[1][name])
        ended += bool((out[3] | out[4]).any())
        state, traced_state = out[1], traced[1]
    assert 0 < ended < 600  # both paths ran


def test_readable_only_for_plain_eager_tensors():
    """``frl._compile.readable``: True for plain eager tensors; False under vmap, a dispatch mode
    (``make_fx``), for fake tensors and inside a compiled function."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from frl._compile import readable

    x = torch.zeros(3)
    assert readable(x, torch.ones(2, dtype=torch.bool))
    seen = []
    vmap(lambda t: seen.append(readable(t)) or t)(torch.zeros(2, 3))
    make_fx(lambda t: seen.append(readable(t)) or t * 2)(x)
    with FakeTensorMode() as mode:
        seen.append(readable(mode.from_tensor(x)))
    assert seen == [False, False, False]


def test_native_batch_matches_per_env_semantics():
    """reset(num_envs=n) gives a batched state that step() accepts (vmap-free)."""
    env = envs.make("CartPole-v1")
    obs, state = env.reset(random.key(0), num_envs=8)
    assert obs.shape == (8, 4) and state["time"].shape == (8,)
    actions = torch.ones(8, dtype=torch.int64)
    _obs2, _state2, reward, terminated, truncated, info = env.step(random.key(1), state, actions)
    expected, _, _ = env.transition(state["physics"], actions, env.default_params())
    torch.testing.assert_close(info["final_observation"], expected)
    assert reward.shape == terminated.shape == truncated.shape == (8,)


def _rollout(env, key, state, steps: int):
    """An unrolled random-action rollout: returns the summed reward and the final state."""
    total = torch.zeros(())
    for _ in range(steps):
        key, ka, ks = random.split(key, 3)
        action = _random_actions(env, ka, ())
        _, state, reward, _, _, _ = env.step(ks, state, action)
        total = total + reward
    return total, state


@pytest.mark.compile
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_compiled_step_and_rollout_match_eager(env_id):
    env = envs.make(env_id)
    _, state = env.reset(random.key(0))
    action = _random_actions(env, random.key(9), ())
    step = frl.compile(env.step)
    eager = env.step(random.key(1), state, action)
    compiled = step(random.key(1), state, action)
    for a, b in zip(eager, compiled, strict=True):
        if isinstance(a, dict):
            for k in a:
                torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # An unrolled rollout of 8 steps, vmapped over 3 seeds, compiled as one graph.
    keys = random.split(random.key(2), 3)
    _, states = envs.reset_batch(env, random.key(5), 3)
    rollout = vmap(lambda k, s: _rollout(env, k, s, 8))
    eager_total, eager_state = rollout(keys, states)
    comp_total, comp_state = frl.compile(rollout)(keys, states)
    torch.testing.assert_close(comp_total, eager_total, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(comp_state["time"], eager_state["time"])
