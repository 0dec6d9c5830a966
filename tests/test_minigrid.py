"""MiniGrid DoorKey in pure torch: the minigrid package and frl stepped side by side from the same
layouts with the same actions (every observation, reward, flag and state), the layout
distribution, batching, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import frl
from frl import envs, random
from frl.algos import ppo
from frl.envs.check import check
from frl.envs.minigrid import LOCKED, DoorKey, view_visibility_tables

gymnasium = pytest.importorskip("gymnasium")
pytest.importorskip("minigrid")


def _physics(unwrapped, size: int) -> torch.Tensor:
    """frl's physics of the package's current state (door, key, carrying, step count)."""
    door = key = None
    for x in range(size):
        for y in range(size):
            cell = unwrapped.grid.get(x, y)
            if cell is not None and cell.type == "door":
                door = (x, y, 0 if cell.is_open else 2 if cell.is_locked else 1)
            elif cell is not None and cell.type == "key":
                key = (x, y)
    key = key or (-1, -1)
    carrying = int(unwrapped.carrying is not None)
    heading, steps = unwrapped.agent_dir, unwrapped.step_count
    return torch.tensor([*unwrapped.agent_pos, heading, *door, *key, carrying, steps])


def _image(obs: dict) -> np.ndarray:
    return obs["image"].reshape(-1).astype(np.float32)


@pytest.mark.parametrize("size", [5, 8, 16])
def test_doorkey_steps_as_the_minigrid_package_does(size):
    """Random actions (biased to forward, pick up and toggle so that keys are carried and doors
    opened), from the package's own layouts: every observation, reward, termination,
    truncation and state equal; the events the rules cover all happen."""
    env = DoorKey(size=size)
    raw = gymnasium.make(f"MiniGrid-DoorKey-{size}x{size}-v0")
    game = raw.unwrapped
    rng = np.random.default_rng(size)
    obs, _ = raw.reset(seed=size)
    physics, params = _physics(game, size), env.default_params()
    counts = dict.fromkeys(["pick", "drop", "unlock", "close", "goal", "limit"], 0)
    for t in range(4000 if size < 16 else 3000):  # 16x16: one episode hits the 2,560-step limit
        np.testing.assert_array_equal(env.observe(physics).numpy(), _image(obs))
        action = int(rng.integers(0, 7)) if rng.random() < 0.6 else int(rng.choice([2, 2, 3, 5]))
        before = physics
        obs, reward, terminated, truncated, _ = raw.step(action)
        physics, frl_reward, frl_terminated = env.transition(physics, torch.tensor(action), params)
        assert torch.equal(physics, _physics(game, size)), (t, action, before, physics)
        assert float(frl_reward) == pytest.approx(reward, abs=1e-6) and bool(frl_terminated) == terminated
        assert (int(physics[-1]) >= env.max_episode_steps) == truncated
        counts["pick"] += int(before[8] == 0 and physics[8] == 1)
        counts["drop"] += int(before[8] == 1 and physics[8] == 0)
        counts["unlock"] += int(before[5] == LOCKED and physics[5] == 0)
        counts["close"] += int(before[5] == 0 and physics[5] == 1)
        if terminated or truncated:
            counts["goal" if terminated else "limit"] += 1
            obs, _ = raw.reset(seed=int(rng.integers(1 << 30)))
            physics = _physics(game, size)
    raw.close()
    expected = ["pick", "drop", "limit"] if size == 16 else list(counts)
    assert all(counts[k] > 0 for k in expected), counts


def test_the_occlusion_tables_hide_what_lies_behind_a_wall():
    visible, above = view_visibility_tables()
    assert visible.shape == above.shape == (1 << 14,)
    everything = (1 << 7) - 1
    # the agent's cell (column 3) marked, every cell see-through: the whole row, and above it
    assert int(visible[(1 << 3) << 7 | everything]) == everything
    assert int(above[(1 << 3) << 7 | everything]) == everything
    # column 4 blocks: columns 0..4 seen (the blocking cell too), 5 and 6 not; above, the
    # columns next to a see-through seen cell (the blocking cell's column too: a diagonal)
    clear = everything & ~(1 << 4)
    assert int(visible[(1 << 3) << 7 | clear]) == 0b0011111
    assert int(above[(1 << 3) << 7 | clear]) == 0b0011111
    # marked at column 6 only, column 5 blocking: the sweep reaches 5, nothing to the left of it
    assert int(visible[(1 << 6) << 7 | (everything & ~(1 << 5))]) == 0b1100000
    assert int(visible[0 << 7 | everything]) == 0  # nothing marked from below: nothing seen


def test_layouts_are_drawn_as_the_package_draws_them():
    """Split column uniform on [2, N-3], door row on [1, N-3], heading on 0..3; agent and key on
    distinct cells of the left room, each cell equally likely (the package's rejection sampling)."""
    env, n, draws = DoorKey(size=8), 8, 40_000
    physics = env.init_physics(random.key(0), env.default_params(), (draws,))
    x, y, heading, split, door, state, key_x, key_y, carrying, steps = physics.unbind(-1)
    assert (state == LOCKED).all() and (carrying == 0).all() and (steps == 0).all()
    assert ((x >= 1) & (x < split) & (y >= 1) & (y <= n - 2)).all()
    assert ((key_x >= 1) & (key_x < split) & (key_y >= 1) & (key_y <= n - 2)).all()
    assert not ((x == key_x) & (y == key_y)).any()
    for values, low, high in ((split, 2, n - 3), (door, 1, n - 3), (heading, 0, 3)):
        freq = torch.bincount(values - low, minlength=high - low + 1).double() / draws
        p = 1.0 / (high - low + 1)
        assert freq.shape[0] == high - low + 1 and (freq - p).abs().max() < 4 * (p * (1 - p) / draws) ** 0.5
    # given split 5, the agent's 4 x 6 = 24 cells are equally likely
    rows = split == 5
    cell = ((x[rows] - 1) * (n - 2) + y[rows] - 1).bincount(minlength=24).double() / int(rows.sum())
    p = 1 / 24
    assert (cell - p).abs().max() < 4 * (p * (1 - p) / int(rows.sum())) ** 0.5


def test_doorkey_is_registered_batched_and_checks_clean():
    env = envs.make("MiniGrid-DoorKey-8x8-v0")
    assert isinstance(env, DoorKey) and env.size == 8 and env.max_episode_steps == 640
    assert env.id == "MiniGrid-DoorKey-8x8-v0" and "MiniGrid-DoorKey-16x16-v0" in envs.list_envs()
    assert check(env, steps=300) == []
    # a vmapped step equals the natively batched one, environment by environment
    obs, state = env.reset(random.key(1), num_envs=64)
    assert obs.shape == (64, 147)
    action = random.randint(random.key(2), (64,), 0, 7)
    params = env.default_params()
    batched = env.transition(state["physics"], action, params)
    mapped = torch.func.vmap(env.transition, in_dims=(0, 0, None))(state["physics"], action, params)
    for a, b in zip(batched, mapped, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(torch.func.vmap(env.observe)(state["physics"]), obs)


@pytest.mark.parametrize("size", [4, 0, True, 8.0, "8"])
def test_a_bad_size_is_refused_naming_the_field(size):
    with pytest.raises(ValueError, match="`size` must be an int >= 5"):
        DoorKey(size=size)


def test_ppo_learns_doorkey_5x5():
    """The MiniGrid preset (rl-starter-files' PPO), eagerly, at a reduced budget: the last finished
    episode of at least 12 of the 16 environments reached the goal (uniformly random actions: 9 %)."""
    config = ppo.Config.preset("MiniGrid-DoorKey-5x5-v0", total_timesteps=49_152)
    result = frl.run(ppo.make_train(config), seeds=1, compile=False, progress=False, eval_episodes=1)
    success = (result.state["episodes", "last_return"] > 0).double().mean()
    assert float(success) >= 0.75, result.state["episodes", "last_return"]
