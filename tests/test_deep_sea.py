"""DeepSea: exact returns of the optimal and other paths, the 2^-N chance of a dithering policy,
sizes batched under vmap, the compiled step, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import frl
from frl import envs, random
from frl.envs.deep_sea import DeepSea


def _right(params, physics):
    """The action that moves right in each environment's current cell."""
    row, col = physics.unbind(-1)
    return params.mapping[row.clamp(max=params.mapping.shape[-1] - 1), col]


def _episode(env, policy, num_envs=4, params=None, key=0):
    """Returns and lengths of the first episode of ``num_envs`` environments under
    ``policy(params, physics, t, key) -> action``."""
    params = env.default_params() if params is None else params
    _, state = env.reset(random.key(key), params, num_envs=num_envs)
    total = torch.zeros(num_envs)
    length = torch.zeros(num_envs, dtype=torch.int64)
    live = torch.ones(num_envs, dtype=torch.bool)
    for t in range(env.max_episode_steps):
        action = policy(params, state["physics"], t, random.fold_in(random.key(key + 1), t))
        _obs, state, reward, terminated, truncated, _info = env.step(
            random.fold_in(random.key(key + 2), t), state, action, params
        )
        total += torch.where(live, reward, 0.0)
        length += live.to(torch.int64)
        live &= ~(terminated | truncated)
    assert not live.any()
    return total, length


@pytest.mark.parametrize("size", [1, 2, 5, 12])
def test_the_all_right_path_pays_one_less_the_move_cost_and_every_other_path_at_most_zero(size):
    env = envs.make("DeepSea-v0", size=size)
    best, length = _episode(env, lambda p, s, t, k: _right(p, s))
    torch.testing.assert_close(best, torch.full((4,), 0.99), rtol=0, atol=1e-6)
    assert (length == size).all()
    left, _ = _episode(env, lambda p, s, t, k: 1 - _right(p, s))
    assert (left == 0).all()
    # one wrong move anywhere: no treasure, the right moves' cost only
    if size > 1:
        miss, _ = _episode(
            env, lambda p, s, t, k: torch.where(torch.tensor(t == size - 1), 1 - _right(p, s), _right(p, s))
        )
        torch.testing.assert_close(miss, torch.full((4,), -0.01 * (size - 1) / size), rtol=0, atol=1e-6)


def test_a_coin_flip_policy_finds_the_treasure_once_in_2_to_the_n_episodes():
    env = envs.make("DeepSea-v0", size=4)
    n = 8192
    returns, _ = _episode(env, lambda p, s, t, k: (random.uniform(k, (n,)) < 0.5).to(torch.int64), num_envs=n)
    rate = float((returns > 0.5).double().mean())
    sd = math.sqrt(2**-4 * (1 - 2**-4) / n)
    assert abs(rate - 2**-4) < 4 * sd, rate


def test_actions_mean_right_per_cell_from_the_mapping_seed():
    a, b = DeepSea(size=8).default_params().mapping, DeepSea(size=8, mapping_seed=1).default_params().mapping
    assert torch.equal(a, DeepSea(size=8).default_params().mapping) and not torch.equal(a, b)
    assert 0.25 < float(a.double().mean()) < 0.75  # both actions mean right somewhere
    assert (DeepSea(size=8, randomize_actions=False).default_params().mapping == 1).all()


def test_the_observation_is_the_one_hot_cell_and_zeros_after_the_last_row():
    env = DeepSea(size=3, grid=5)
    params = env.params_for(3)
    obs, state = env.reset(random.key(0), params)
    assert obs.shape == (25,) and obs[0] == 1 and obs.sum() == 1
    for t in range(3):
        obs, state, _reward, terminated, truncated, info = env.step(
            random.key(t), state, _right(params, state["physics"]), params
        )
        if t < 2:
            assert info["final_observation"][(t + 1) * 5 + (t + 1)] == 1
    assert terminated and not truncated and info["final_observation"].sum() == 0 and obs[0] == 1


def test_sizes_are_data_batched_under_vmap():
    env = DeepSea(size=9, grid=9)
    sizes = [3, 6, 9]
    params = [env.params_for(n) for n in sizes]
    stacked = type(params[0])(*(torch.stack(x) for x in zip(*params)))

    def first_episode(p):
        _, state = env.reset(random.key(0), p)
        total = torch.zeros(())
        done_at = torch.zeros((), dtype=torch.int64)
        ended = torch.zeros((), dtype=torch.bool)
        for t in range(9):
            _obs, state, reward, terminated, _truncated, _ = env.step(
                random.key(t), state, _right(p, state["physics"]), p
            )
            total = total + torch.where(ended, 0.0, reward)
            done_at = torch.where(~ended & terminated, t + 1, done_at)
            ended = ended | terminated
        return total, done_at

    totals, lengths = torch.func.vmap(first_episode)(stacked)
    torch.testing.assert_close(totals, torch.full((3,), 0.99), rtol=0, atol=1e-6)
    assert lengths.tolist() == sizes


@pytest.mark.compile
def test_the_compiled_step_equals_eager():
    env = DeepSea(size=4)
    params = env.default_params()
    _obs, state = env.reset(random.key(0), params, num_envs=6)
    action = torch.tensor([0, 1, 1, 0, 1, 0])

    def step(physics, time, action):
        out = env.step(random.key(3), {"physics": physics, "time": time}, action, params)
        return out[0], out[1]["physics"], out[2], out[3]

    expected = step(state["physics"], state["time"], action)
    actual = frl.compile(step)(state["physics"], state["time"], action)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


def test_bad_input_names_it():
    with pytest.raises(ValueError, match="DeepSea: `size` must be a positive int, got 0"):
        DeepSea(size=0)
    with pytest.raises(ValueError, match=r"DeepSea: `grid` must be an int >= size \(5\), got 3"):
        DeepSea(size=5, grid=3)
    with pytest.raises(ValueError, match=r"`size` must be an int in \[1, 5\], got 6"):
        DeepSea(size=5).params_for(6)
    with pytest.raises(ValueError, match="DeepSea-3-v0: `action` must be integer indices"):
        env = DeepSea(size=3)
        _obs, state = env.reset(random.key(0))
        env.step(random.key(1), state, torch.tensor(0.5))


def test_any_size_is_an_id():
    assert envs.make("DeepSea-17-v0").size == 17 and envs.make("DeepSea-17-v0").id == "DeepSea-17-v0"
    assert envs.make("DeepSea-v0").size == 10 and envs.make("DeepSea-v0").id == "DeepSea-v0"
    assert envs.is_known("DeepSea-33-v0") and "DeepSea-20-v0" in envs.list_envs()
    assert not envs.is_known("DeepSea-0-v0") and not envs.is_known("DeepSea-x-v0")
    with pytest.raises(ValueError, match="unknown environment 'DeepSea-0-v0'"):
        envs.make("DeepSea-0-v0")
