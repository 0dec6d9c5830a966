"""MinAtar games (frl.envs.minatar) against the ``minatar`` package, frame by frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.func import vmap

import frl
from frl import envs, random
from frl.envs.minatar import Asterix, Breakout, Freeway, SpaceInvaders

minatar = pytest.importorskip("minatar")  # a dev dependency: installed by `make test`


def _flat(scalars, *grids) -> torch.Tensor:
    parts = [torch.tensor(scalars, dtype=torch.float32)]
    return torch.cat(parts + [torch.tensor(g, dtype=torch.float32).flatten() for g in grids])


def _breakout_physics(game) -> torch.Tensor:
    """frl's Breakout physics for the package's game state (previous action: no-op)."""
    scalars = [
        game.ball_x,
        game.ball_y,
        game.ball_dir,
        game.pos,
        float(game.strike),
        game.last_x,
        game.last_y,
        0,
    ]
    return _flat(scalars, game.brick_map)


def _invaders_physics(game) -> torch.Tensor:
    timers = [game.enemy_move_interval, game.alien_move_timer, game.alien_shot_timer, game.shot_timer]
    scalars = [game.pos, game.alien_dir, *timers, game.ramp_index, 0]
    return _flat(scalars, game.alien_map, game.f_bullet_map, game.e_bullet_map)


def _side_by_side(name, env, physics_of, probs, steps, thin=None, draws_of=None) -> dict[str, int]:
    """Step the package's game (no sticky actions: the wrapper's stream would draw them) and
    ``env`` with the same random actions for ``steps`` steps; every frame, reward and termination
    must be equal. Each episode starts from the package's reset (``thin(game)`` may edit it first).
    Games that draw during play get the package's next draws, ``draws_of(game)`` (its random
    stream replayed), through ``env.advance``."""
    package = minatar.Environment(name, sticky_action_prob=0.0)
    package.seed(0)
    minimal = package.minimal_action_set()  # frl's action i is the package's minimal[i]
    params = dataclasses.replace(env.default_params(), sticky_action_prob=0.0)
    rng = np.random.default_rng(1)

    def start():
        package.reset()
        if thin is not None:
            thin(package.env)
        return physics_of(package.env)

    physics, key = start(), random.key(0)
    seen = {"episodes": 1, "rewards": 0, "ramps": 0}
    for step in range(steps):
        action = int(rng.choice(len(minimal), p=probs))
        if draws_of is None:
            key, k = random.split(key)
            physics, r, term = env.transition(physics, torch.tensor(action), params, k)
        else:
            physics, r, term = env.advance(physics, torch.tensor(action), draws_of(package.env))
        reward, terminal = package.env.act(minimal[action])
        frame = torch.from_numpy(package.state().astype(np.float32))
        assert torch.equal(env.observe(physics), frame), f"{name}: frame differs at step {step}"
        assert float(r) == reward and bool(term) == terminal, f"{name}: step {step}"
        seen["rewards"] += reward
        seen["ramps"] = max(seen["ramps"], package.env.difficulty_ramp() or 0)
        if terminal:
            physics = start()
            seen["episodes"] += 1
    return seen


def test_breakout_matches_the_minatar_package_frame_by_frame():
    """6,000 uniformly random steps over many episodes."""
    seen = _side_by_side("breakout", Breakout(), _breakout_physics, [1 / 3] * 3, 6000)
    assert seen["episodes"] > 50 and seen["rewards"] > 100  # bounces, bricks and misses


def _two_aliens_left(game) -> None:
    game.alien_map[:] = 0
    game.alien_map[3, 4:6] = 1


@pytest.mark.parametrize("policy", ["uniform", "fire-heavy"])
def test_space_invaders_matches_the_minatar_package_frame_by_frame(policy):
    """3,000 steps of random actions: uniform, and mostly firing at waves thinned to two aliens,
    so waves are cleared, respawn and ramp up."""
    probs, thin = ([0.25] * 4, None) if policy == "uniform" else ([0.1, 0.2, 0.2, 0.5], _two_aliens_left)
    seen = _side_by_side("space_invaders", SpaceInvaders(), _invaders_physics, probs, 3000, thin)
    assert seen["episodes"] > 5 and seen["rewards"] > 100
    if policy == "fire-heavy":
        assert seen["ramps"] >= 1  # a cleared wave sped the next one up


def _replay(game) -> np.random.RandomState:
    """A copy of the game's random stream, to read its next draws without consuming them."""
    stream = np.random.RandomState()
    stream.set_state(game.random.get_state())
    return stream


def _freeway_physics(game) -> torch.Tensor:
    cars = np.asarray(game.cars, dtype=np.float32)  # rows [x, y, timer, speed]
    scalars = [game.pos, game.move_timer, game.terminate_timer, 0]
    return torch.cat(
        [
            _flat(scalars),
            torch.from_numpy(cars[:, 0]),
            torch.from_numpy(cars[:, 2]),
            torch.from_numpy(cars[:, 3]),
        ]
    )


def _freeway_draws(game) -> torch.Tensor:
    """The speeds the package would give the cars on a crossing this step."""
    stream = _replay(game)
    speeds = stream.randint(1, 6, 8)
    return torch.tensor(speeds * np.sign(stream.rand(8) - 0.5), dtype=torch.float32)


def test_freeway_matches_the_minatar_package_frame_by_frame():
    """6,000 steps of mostly "up" (crossings re-draw the speeds) through 2 whole 2,500-step games."""
    seen = _side_by_side(
        "freeway", Freeway(), _freeway_physics, [0.1, 0.8, 0.1], 6000, draws_of=_freeway_draws
    )
    assert seen["episodes"] >= 3 and seen["rewards"] > 40


def _asterix_physics(game) -> torch.Tensor:
    scalars = [
        game.player_x,
        game.player_y,
        game.spawn_speed,
        game.spawn_timer,
        game.move_speed,
        game.move_timer,
        game.ramp_timer,
        game.ramp_index,
        0,
    ]
    slots = [
        [0.0, 0.0, 0.0, 0.0] if e is None else [1.0, e[0], float(e[2]), float(e[3])] for e in game.entities
    ]
    return _flat(scalars, slots)


def _asterix_draws(game) -> torch.Tensor:
    """The side, kind and row the package would give a spawn this step."""
    stream = _replay(game)
    side, kind = stream.rand(), stream.rand()
    free = sum(e is None for e in game.entities)
    row = (stream.randint(free) + 0.5) / free if free else 0.0
    return torch.tensor([side, kind, row], dtype=torch.float32)


def test_asterix_matches_the_minatar_package_frame_by_frame():
    """6,000 uniformly random steps: many games, gold and enemies, ramped difficulty."""
    seen = _side_by_side("asterix", Asterix(), _asterix_physics, [0.2] * 5, 6000, draws_of=_asterix_draws)
    assert seen["episodes"] > 20 and seen["rewards"] > 20 and seen["ramps"] >= 1


def test_breakout_reset_and_sticky_actions():
    env = envs.make("Breakout-MinAtar")
    obs, state = env.reset(random.key(0), num_envs=400)
    assert obs.shape == (400, 10, 10, 4) and obs[:, 1:4, :, 3].eq(1).all()
    starts = obs[:, 3, :, 1].argmax(-1)  # the ball starts in row 3 at the left or right wall
    assert set(starts.tolist()) == {0, 9} and 120 < int((starts == 9).sum()) < 280
    assert obs[:, 9, 4, 0].eq(1).all()  # the paddle in the middle of the bottom row
    # sticky_action_prob = 1: the paddle never moves (the previous action starts as no-op)
    stuck = dataclasses.replace(env.default_params(), sticky_action_prob=1.0)
    physics = state["physics"][:5]
    for i in range(5):
        physics, _, _ = env.transition(physics, torch.full((5,), 1), stuck, random.key(i))
    assert physics[:, 3].eq(4).all()
    with pytest.raises(ValueError, match="`sticky_action_prob` must lie in"):
        env.Params(sticky_action_prob=1.5)


@pytest.mark.parametrize(
    "env_id", ["Breakout-MinAtar", "SpaceInvaders-MinAtar", "Freeway-MinAtar", "Asterix-MinAtar"]
)
def test_vmapped_games_match_a_loop(env_id):
    env = envs.make(env_id)
    n = 3
    _, state_b = envs.reset_batch(env, random.key(1), n)
    states = [env.reset(k)[1] for k in random.split(random.key(1), n)]
    key = random.key(2)
    for _ in range(40):
        key, ka, ks = random.split(key, 3)
        actions = random.randint(ka, (n,), 0, env.action_space.n)
        out_b = envs.step_batch(env, ks, state_b, actions)
        keys = random.split(ks, n)
        outs = [env.step(keys[i], states[i], actions[i]) for i in range(n)]
        for j in (0, 2, 3, 4):
            assert torch.equal(out_b[j], torch.stack([o[j] for o in outs]))
        state_b, states = out_b[1], [o[1] for o in outs]


@pytest.mark.compile
@pytest.mark.parametrize(
    "env_id", ["Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar"]
)
def test_compiled_steps_match_eager(env_id):
    env = envs.make(env_id)
    _, state = envs.reset_batch(env, random.key(0), 2)
    keys, action = random.split(random.key(1), 2), torch.tensor([1, 2])
    step = vmap(env.step)
    eager, compiled = step(keys, state, action), frl.compile(step)(keys, state, action)
    for a, b in zip(eager, compiled, strict=True):
        for x, y in zip(a.values(), b.values(), strict=True) if isinstance(a, dict) else [(a, b)]:
            assert torch.equal(x, y)


@pytest.mark.parametrize("algo", ["ppo", "dqn", "a2c"])
def test_agents_take_minatar_frames_with_its_cnn(algo):
    """The agents build MinAtar's CNN for its frames and one training iteration keeps the spec."""
    from frl.algos import get

    agent = get(algo)
    small = {
        "ppo": dict(num_envs=2, num_steps=8, rollout_chunk=8),
        "a2c": dict(num_envs=2),
        "dqn": dict(buffer_size=64, learning_starts=0),
    }
    train = agent.make_train(agent.config(env_id="Breakout-MinAtar", **small[algo]))
    state = train.init(random.key(0))
    nets = state["params"]
    first = nets["actor"] if "actor" in set(nets.keys()) else nets["online"]
    assert first["torso", "conv", "weight"].shape == (16, 4, 3, 3)
    stepped, metrics = train.step(state)
    train.check(stepped)
    assert all(bool(torch.isfinite(v).all()) for v in metrics.values())


def test_freeway_and_asterix_draw_what_the_package_draws():
    """Freeway: speeds 1-5 of either sign, each about equally often; Asterix: a spawn goes into a
    free row at the edge its side names, and nowhere when every row is taken."""
    speeds = Freeway().draws(random.key(0), (4000,)).flatten()
    counts = torch.stack([(speeds == s).sum() for s in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)])
    assert int(counts.sum()) == len(speeds) and counts.min() > 0.08 * len(speeds)
    env = Asterix()
    _, state = env.reset(random.key(1))
    physics = state["physics"].clone()
    physics[3] = 0.0  # a spawn is due
    slots = physics[9:].view(8, 4)
    slots[:] = torch.tensor([1.0, 3.0, 1.0, 0.0])  # rows 1-8 taken at x = 3 ...
    slots[5] = 0.0  # ... but row 6
    draws = env.draws(random.key(2), (200,))
    after, _, _ = vmap(env.advance, in_dims=(None, None, 0))(physics, torch.tensor(0), draws)
    new = after[:, 9:].unflatten(-1, (8, 4))[:, 5]
    assert new[:, 0].eq(1).all() and after[:, 3].eq(9).all()  # spawned in row 6; the timer restarted
    left = draws[:, 0] < 0.5  # from the left edge moving right, else from the right moving left
    assert torch.equal(new[:, 1], torch.where(left, 0.0, 9.0)) and torch.equal(new[:, 2], left.float())
    assert torch.equal(new[:, 3], (draws[:, 1] < 1 / 3).float())
    full = physics.clone()
    full[9:].view(8, 4)[5] = torch.tensor([1.0, 3.0, 1.0, 0.0])
    after, _, _ = env.advance(full, torch.tensor(0), draws[0])
    assert torch.equal(after[9:], full[9:]) and float(after[3]) == 9.0


def test_the_package_through_gym_reads_as_float_frames_with_minatars_cnn():
    """``gym:MinAtar/<Game>-v1`` (the package's own gymnasium ids, stepped by TorchRL): its bool
    frames arrive as float 0/1 channels last, the agents pick MinAtar's CNN, and PPO runs on it."""
    from frl.algos import ppo

    env = envs.make("gym:MinAtar/Breakout-v1")
    assert env.observation_space.shape == (10, 10, 4) and env.observation_space.dtype == torch.float32
    assert env.pixels and env.torso == "minatar" and env.action_space.n == 3
    rollout = env.make_env(seed=0).rollout(20)
    frames = rollout["observation"]
    assert frames.dtype == torch.float32 and set(frames.unique().tolist()) <= {0.0, 1.0}
    assert frames[0, 9, :, 0].sum() == 1 and frames[0, 1:4, :, 3].eq(1).all()  # a paddle; 3 brick rows
    config = ppo.Config(env_id="gym:MinAtar/Breakout-v1", total_timesteps=256, num_envs=2, num_steps=64)
    train = ppo.make_train(config)
    assert any(
        "conv" in str(k)
        for k in train.init(random.key(0))["params"].keys(include_nested=True, leaves_only=True)
    )
    result = frl.run(train, seeds=1, compile=False, progress=False, eval_episodes=1)
    assert result.env_steps == 256


def test_ppo_learns_space_invaders():
    """PPO with MinAtar's CNN (the preset, eager, reduced budget: 1 seed x 65k steps) shoots more
    than a random policy: its last training episodes return >= 1.5x random's (measured: 9.3
    against 4.1; the 8-seed, 300k-step run of bench_applications reaches 35)."""
    from frl.algos import ppo
    from frl.envs.check import random_return

    torch.manual_seed(0)
    baseline = random_return(envs.make("SpaceInvaders-MinAtar"), random.key(400), episodes=20)
    config = ppo.Config.preset("SpaceInvaders-MinAtar", total_timesteps=65_536)
    result = frl.run(ppo.make_train(config), seeds=1, compile=False, eval_episodes=1, progress=False)
    trained = result.history[-1]["episode_return"]
    assert trained >= 1.5 * baseline, (trained, baseline)
