"""``Highway-v0`` (frl.envs.highway): the bicycle model, IDM and MOBIL by hand, collisions, the
observation's layout, batching, the baseline controller, bad settings and a learning check."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import vmap

import frl
from frl import envs, random
from frl.envs import highway as H

ENV_ID = "Highway-v0"
FAR = 200.0  # half the default ring: as far from the ego as a car can be


def _physics(env, ego, cars):
    """A state from the ego's ``[x, y, psi, v, a_prev, delta_prev]`` and cars ``[x, y, v, v0, lane]``;
    unused car slots are parked half a ring away in the top lane."""
    rows = list(cars) + [[FAR, (env.num_lanes - 1) * env.lane_width, 20.0, 20.0, env.num_lanes - 1]] * (
        env.num_vehicles - len(cars)
    )
    return torch.tensor([*ego, *[v for row in rows for v in row]], dtype=torch.float32)


def _state(physics):
    return {"physics": physics, "time": torch.tensor(0)}


def test_spaces_reset_and_observation_layout():
    env = envs.make(ENV_ID)
    assert env.observation_space.shape == (38,) and env.action_space.shape == (2,)
    obs, state = env.reset(random.key(0), num_envs=256)
    assert obs.shape == (256, 38) and obs.dtype == torch.float32
    ego, cars = env.unpack(state["physics"])
    # the ego starts on a lane centre at the initial speed, no car within 30 m of it
    assert torch.equal(ego[:, 1] % env.lane_width, torch.zeros(256)) and ego[:, 3].eq(25.0).all()
    assert env._wrap(cars[..., 0] - ego[:, :1]).abs().min() >= 30.0 - 3.0
    assert cars[..., 3].min() >= 20.0 and cars[..., 3].max() <= 26.0
    # cars start on distinct grid points (no two within a car length in one lane)
    dx = env._wrap(cars[..., 0].unsqueeze(-1) - cars[..., 0].unsqueeze(-2)).abs()
    same_lane = cars[..., 4].unsqueeze(-1) == cars[..., 4].unsqueeze(-2)
    assert not (same_lane & (dx < 5.0) & ~torch.eye(12, dtype=torch.bool)).any()
    assert {int(v) for v in ego[:, 1] / env.lane_width} == {0, 1, 2}


def test_observation_lists_the_nearest_cars_first_and_zeros_the_unseen():
    env = envs.make(ENV_ID, num_vehicles=3, observed_vehicles=3)
    physics = _physics(
        env,
        [0.0, 4.0, 0.0, 20.0, 0.5, -0.25],
        [[-30.0 % 400.0, 0.0, 22.0, 22.0, 0], [12.0, 4.0, 18.0, 20.0, 1], [150.0, 8.0, 25.0, 25.0, 2]],
    )
    obs = env.observe(physics)
    torch.testing.assert_close(obs[:6], torch.tensor([0.0, 0.0, 20.0 / 30.0, 0.5, -0.25, 0.0]))
    cars = obs[6:18].reshape(3, 4)
    # nearest first: 12 m ahead, then 30 m behind one lane right; the one 150 m away is unseen
    torch.testing.assert_close(cars[0], torch.tensor([1.0, 0.12, 0.0, -2.0 / 30.0]))
    torch.testing.assert_close(cars[1], torch.tensor([1.0, -0.30, -4.0 / 12.0, 2.0 / 30.0]))
    torch.testing.assert_close(cars[2], torch.zeros(4))
    # per lane (right, own, left) the nearest car ahead and behind: [gap / range, closing / limit]
    lanes = obs[18:].reshape(3, 2, 2)
    none = torch.tensor([1.0, 0.0])
    torch.testing.assert_close(lanes[0, 0], none)  # lane 0: nobody ahead within range
    torch.testing.assert_close(lanes[0, 1], torch.tensor([(30.0 - 5.0) / 100.0, 2.0 / 30.0]))
    torch.testing.assert_close(lanes[1, 0], torch.tensor([(12.0 - 5.0) / 100.0, 2.0 / 30.0]))
    torch.testing.assert_close(lanes[1, 1], none)
    torch.testing.assert_close(lanes[2], torch.stack([none, none]))  # 150 m away: out of range


def test_lane_features_see_a_car_moving_into_the_lane_and_no_lane_beyond_the_road():
    env = envs.make(ENV_ID, num_vehicles=2, observed_vehicles=1)
    # the ego in the top lane; a car 20 m ahead in the middle lane, moving up into the ego's lane
    # (its target lane is 2), and one 8 m behind overlapping both lower lanes' edges
    physics = _physics(
        env, [0.0, 8.0, 0.0, 25.0, 0.0, 0.0], [[20.0, 4.5, 21.0, 21.0, 2], [392.0, 2.0, 27.0, 27.0, 0]]
    )
    lanes = env.observe(physics)[10:].reshape(3, 2, 2)
    torch.testing.assert_close(lanes[1, 0], torch.tensor([15.0 / 100.0, 4.0 / 30.0]))  # claimed lane
    torch.testing.assert_close(lanes[0, 0], torch.tensor([15.0 / 100.0, 4.0 / 30.0]))  # and its body
    torch.testing.assert_close(lanes[0, 1], torch.tensor([3.0 / 100.0, 2.0 / 30.0]))  # overlaps lane 1
    torch.testing.assert_close(lanes[2], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))  # no lane 3


def test_the_ego_follows_the_kinematic_bicycle():
    env = envs.make(ENV_ID, num_vehicles=1, observed_vehicles=1)
    p = env.default_params()
    physics = _physics(env, [10.0, 4.0, 0.1, 20.0, 0.0, 0.0], [])
    action = torch.tensor([0.5, -0.6])
    nxt, reward, terminated = env.transition(physics, action, p)
    delta = -0.6 * p.max_steering
    beta = math.atan(math.tan(delta) / 2)
    dt = p.dt
    expected = [
        10.0 + 20.0 * math.cos(0.1 + beta) * dt,
        4.0 + 20.0 * math.sin(0.1 + beta) * dt,
        0.1 + 2 * 20.0 / p.wheelbase * math.sin(beta) * dt,
        20.0 + 0.5 * p.max_acceleration * dt,
        0.5,
        -0.6,
    ]
    torch.testing.assert_close(nxt[:6], torch.tensor(expected), rtol=1e-6, atol=1e-6)
    e = (nxt[1] - 4.0) / 2.0
    progress = expected[3] * math.cos(expected[2]) / 30.0
    jerk = 0.5**2 + 0.6**2
    torch.testing.assert_close(
        reward, progress - p.lane_weight * e**2 - p.jerk_weight * torch.tensor(jerk), rtol=1e-5, atol=1e-6
    )
    assert not terminated
    # the speed stays in [0, speed_limit]
    fast = env.transition(_physics(env, [0.0, 4.0, 0.0, 29.9, 0.0, 0.0], []), torch.tensor([1.0, 0.0]), p)
    slow = env.transition(_physics(env, [0.0, 4.0, 0.0, 0.1, 0.0, 0.0], []), torch.tensor([-1.0, 0.0]), p)
    assert float(fast[0][3]) == 30.0 and float(slow[0][3]) == 0.0


def test_idm_by_hand():
    env = envs.make(ENV_ID)
    p = env.default_params()
    v, v0 = torch.tensor(20.0), torch.tensor(25.0)
    # free road: a_max (1 - (v/v0)^4)
    free = env.idm(v, v0, torch.tensor(math.inf), torch.tensor(0.0), p)
    torch.testing.assert_close(free, torch.tensor(2.0 * (1 - (20 / 25) ** 4)))
    # the equilibrium gap behind a leader at the same speed: no acceleration
    s_e = (p.idm_gap + 20.0 * p.idm_headway) / math.sqrt(1 - (20 / 25) ** 4)
    torch.testing.assert_close(
        env.idm(v, v0, torch.tensor(s_e), torch.tensor(0.0), p), torch.tensor(0.0), atol=1e-5, rtol=0
    )
    # closing in fast on a close leader: braking, never harder than max_braking
    s_star = (
        p.idm_gap + 20 * p.idm_headway + 20 * 5 / (2 * math.sqrt(p.idm_acceleration * p.idm_deceleration))
    )
    closing = env.idm(v, v0, torch.tensor(40.0), torch.tensor(5.0), p)
    torch.testing.assert_close(closing, torch.tensor(2.0 * (1 - 0.8**4 - (s_star / 40) ** 2)))
    assert float(env.idm(v, v0, torch.tensor(1.0), torch.tensor(10.0), p)) == -p.max_braking


def test_a_car_follows_its_leader_by_idm():
    env = envs.make(ENV_ID, num_vehicles=2, observed_vehicles=1, num_lanes=1)
    p = env.default_params()
    physics = _physics(
        env, [0.0, 0.0, 0.0, 25.0, 0.0, 0.0], [[100.0, 0.0, 24.0, 26.0, 0], [130.0, 0.0, 20.0, 20.0, 0]]
    )
    nxt, _, _ = env.transition(physics, torch.tensor([0.0, 0.0]), p)
    _, cars = env.unpack(nxt)
    a = env.idm(torch.tensor(24.0), torch.tensor(26.0), torch.tensor(25.0), torch.tensor(4.0), p)
    torch.testing.assert_close(cars[0, 2], 24.0 + a * p.dt)
    torch.testing.assert_close(cars[0, 0], 100.0 + 24.0 * p.dt + 0.5 * a * p.dt**2)
    # the leader drives on a free road (the ego is 270 m behind it on the ring: not its leader)
    a_free = env.idm(torch.tensor(20.0), torch.tensor(20.0), torch.tensor(math.inf), torch.tensor(0.0), p)
    torch.testing.assert_close(cars[1, 2], 20.0 + a_free * p.dt)


def test_mobil_changes_lanes_to_pass_a_slow_leader_only_when_safe():
    env = envs.make(ENV_ID, num_vehicles=2, observed_vehicles=1)
    p = env.default_params()
    cars = [[100.0, 0.0, 25.0, 26.0, 0], [125.0, 0.0, 15.0, 15.0, 0]]  # fast car behind a slow one, lane 0
    ego_far = [300.0, 8.0, 0.0, 25.0, 0.0, 0.0]
    nxt, _, _ = env.transition(_physics(env, ego_far, cars), torch.tensor([0.0, 0.0]), p)
    _, moved = env.unpack(nxt)
    assert int(moved[0, 4]) == 1 and float(moved[0, 1]) == pytest.approx(p.lateral_speed * p.dt)
    assert int(moved[1, 4]) == 0  # the slow one has no reason to
    # the ego alongside in lane 1 blocks the change
    ego_alongside = [102.0, 4.0, 0.0, 25.0, 0.0, 0.0]
    nxt, _, _ = env.transition(_physics(env, ego_alongside, cars), torch.tensor([0.0, 0.0]), p)
    assert int(env.unpack(nxt)[1][0, 4]) == 0
    # so does a fast ego close behind the gap (it would have to brake harder than b_safe)
    ego_behind = [88.0, 4.0, 0.0, 30.0, 0.0, 0.0]
    nxt, _, _ = env.transition(_physics(env, ego_behind, cars), torch.tensor([0.0, 0.0]), p)
    assert int(env.unpack(nxt)[1][0, 4]) == 0
    # a changing car finishes its move across at lateral_speed
    state = _physics(env, ego_far, cars)
    for _ in range(12):
        state, _, _ = env.transition(state, torch.tensor([0.0, 0.0]), p)
    assert float(env.unpack(state)[1][0, 1]) == pytest.approx(4.0)


def test_collisions_and_leaving_the_road_end_the_episode_with_the_penalty():
    env = envs.make(ENV_ID, num_vehicles=1, observed_vehicles=1)
    p = env.default_params()
    crash = _physics(env, [0.0, 4.0, 0.0, 25.0, 0.0, 0.0], [[6.0, 4.0, 10.0, 10.0, 1]])
    _, reward, terminated = env.transition(crash, torch.tensor([0.0, 0.0]), p)
    assert bool(terminated) and float(reward) == -p.collision_penalty
    beside = _physics(env, [0.0, 4.0, 0.0, 25.0, 0.0, 0.0], [[5.0, 8.0, 25.0, 25.0, 2]])
    assert not bool(env.transition(beside, torch.tensor([0.0, 0.0]), p)[2])
    edge = _physics(env, [0.0, -1.9, -0.2, 25.0, 0.0, 0.0], [])
    _, reward, terminated = env.transition(edge, torch.tensor([0.0, 0.0]), p)
    assert bool(terminated) and float(reward) == -p.collision_penalty
    # through step: the auto-reset and a final observation
    obs, state, reward, terminated, truncated, info = env.step(random.key(0), _state(crash), torch.zeros(2))
    assert bool(terminated) and not bool(truncated) and int(state["time"]) == 0
    assert not torch.equal(obs, info["final_observation"])


def test_headway_cost_by_hand_and_in_the_shaped_reward():
    """``cost = max(max_j w_j clip(1 - h_j / safe_headway, 0, 1), clip(1 - clearance, 0, 1))``: the
    ego at 25 m/s 15 m (bumper to bumper) behind a car in its lane has h = 0.6 s; a car 2.75 m to
    the side counts half; a car in the next lane's centre and a far one count nothing; a car behind
    is timed at its own speed; the road's edge counts from an outer lane's centre (1 m clear)."""
    env = envs.make(ENV_ID, num_vehicles=4, observed_vehicles=2, safe_headway=1.0)
    p = env.default_params()
    ego = [0.0, 4.0, 0.0, 25.0, 0.0, 0.0]
    parked = [[FAR, 8.0, 20.0, 20.0, 2]]
    cases = [
        (ego, [[20.0, 4.0, 25.0, 25.0, 1]], 1 - 15 / 25),  # ahead, same lane: h = 15 / 25
        (ego, [[20.0, 6.75, 25.0, 25.0, 1]], 0.5 * (1 - 15 / 25)),  # |dy| = 2.75: w = 0.5
        (ego, [[3.0, 6.75, 25.0, 25.0, 1]], 0.5),  # alongside: h = 0
        (ego, [[10.0, 8.0, 25.0, 25.0, 2]], 0.0),  # the next lane's centre
        (ego, [[60.0, 4.0, 25.0, 25.0, 1]], 0.0),  # 55 m ahead: h = 2.2 s
        (ego, [[-13.0, 4.0, 20.0, 20.0, 1]], 1 - 8 / 20),  # behind: its own h = 8 / 20
        (ego, [[20.0, 4.0, 25.0, 25.0, 1], [-13.0, 4.0, 20.0, 20.0, 1]], 1 - 8 / 20),  # the worse
        ([0.0, 8.0, 0.0, 25.0, 0.0, 0.0], [], 0.0),  # the outer lane's centre: 1 m clear
        ([0.0, 8.6, 0.0, 25.0, 0.0, 0.0], [], 0.6),  # 0.4 m clear
    ]
    for own, cars, want in cases:
        physics = _physics(env, own, cars + parked * (3 - len(cars)))
        assert float(env.headway_cost(physics, p)) == pytest.approx(want, abs=1e-5)
    # the task's reward has no such term; a shaped environment subtracts weight * cost of s'
    shaped = envs.make(ENV_ID, num_vehicles=4, observed_vehicles=2, headway_weight=2.0)
    physics = _physics(env, ego, [[22.0, 4.0, 20.0, 20.0, 1]] + parked * 2)
    action = torch.tensor([0.3, -0.2])
    nxt, task_reward, done = env.transition(physics, action, p)
    _, shaped_reward, shaped_done = shaped.transition(physics, action, p)
    cost = float(env.headway_cost(nxt, p))
    assert 0.1 < cost < 1.0 and not bool(done) and not bool(shaped_done)
    assert float(shaped_reward) == pytest.approx(float(task_reward) - 2.0 * cost, abs=1e-6)
    # a crash is the penalty alone, shaped or not
    crash = _physics(env, ego, [[6.0, 4.0, 10.0, 10.0, 1]] + parked * 3)
    assert float(shaped.transition(crash, action, p)[1]) == -p.collision_penalty


def test_vmap_over_episodes_matches_a_loop():
    env = envs.make(ENV_ID)
    n = 4
    _, state_b = envs.reset_batch(env, random.key(1), n)
    states = [env.reset(k)[1] for k in random.split(random.key(1), n)]
    key = random.key(2)
    for _ in range(40):
        key, ka, ks = random.split(key, 3)
        actions = random.uniform(ka, (n, 2), torch.float32, -0.3, 0.3)
        out_b = envs.step_batch(env, ks, state_b, actions)
        keys = random.split(ks, n)
        outs = [env.step(keys[i], states[i], actions[i]) for i in range(n)]
        for j in (0, 2, 3, 4):
            torch.testing.assert_close(out_b[j], torch.stack([o[j] for o in outs]), rtol=1e-5, atol=1e-5)
        state_b, states = out_b[1], [o[1] for o in outs]


@pytest.mark.compile
def test_compiled_vmapped_step_matches_eager():
    env = envs.make(ENV_ID, num_vehicles=4, observed_vehicles=2)
    _, state = envs.reset_batch(env, random.key(0), 3)
    action = torch.tensor([[0.1, 0.0], [-1.0, 0.5], [1.0, -1.0]])
    keys = random.split(random.key(1), 3)
    step = vmap(env.step)
    eager = step(keys, state, action)
    compiled = frl.compile(step)(keys, state, action)
    for a, b in zip(eager, compiled, strict=True):
        for x, y in zip(a.values(), b.values(), strict=True) if isinstance(a, dict) else [(a, b)]:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_the_hand_tuned_controller_drives_without_collisions():
    """The baseline keeps its lane and its distance (no collision in 128 episodes); driving
    straight at constant speed rear-ends slower cars; random actions leave the road."""
    env = envs.make(ENV_ID)
    tuned = H.rollout_episodes(env, H.hand_tuned, random.key(0), 128)
    straight = H.rollout_episodes(env, lambda e, ph, p, k: torch.zeros(ph.shape[0], 2), random.key(0), 128)
    rand = H.rollout_episodes(
        env,
        lambda e, ph, p, k: random.uniform(k, (ph.shape[0], 2), torch.float32, -1.0, 1.0),
        random.key(0),
        64,
    )
    assert not tuned["collision"].any() and tuned["length"].eq(150).all()
    assert 20.0 < float(tuned["mean_speed"].mean()) < 26.0
    assert float(straight["collision"].double().mean()) > 0.2
    assert float(tuned["return"].mean()) > float(straight["return"].mean()) > float(rand["return"].mean())
    assert float(rand["collision"].double().mean()) > 0.9


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"observed_vehicles": 13}, "`observed_vehicles` \\(13\\) must not exceed `num_vehicles` \\(12\\)"),
        ({"num_vehicles": 60}, "`num_vehicles` \\(60\\) does not fit the start grid"),
        ({"num_lanes": 0}, "`num_lanes` must be an int >= 1"),
        ({"road_length": 50.0}, "`road_length` must be a finite number >= 100"),
        ({"speed_limit": -1.0}, "`speed_limit` must be a finite number > 0"),
        ({"headway_weight": -0.5}, "`headway_weight` must be a finite number >= 0"),
        ({"safe_headway": 0.0}, "`safe_headway` must be a finite number > 0"),
    ],
)
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.make(ENV_ID, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dt": 0.0}, "`dt` must be a finite number > 0"),
        ({"collision_penalty": -1.0}, "`collision_penalty` must be a finite number >= 0"),
        ({"traffic_speed_low": 30.0}, "`traffic_speed_high` must be a finite number >= 30"),
        ({"max_steering": 2.0}, "`max_steering` must be below pi/2"),
        ({"politeness": math.nan}, "`politeness` must be a finite number"),
    ],
)
def test_bad_params_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        H.HighwayParams(**kwargs)


def test_bad_actions_are_refused():
    env = envs.make(ENV_ID)
    _, state = env.reset(random.key(0))
    with pytest.raises(ValueError, match="`action` must be a float tensor of shape \\[2\\]"):
        env.step(random.key(1), state, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`action` must be a float tensor of shape \\[2\\]"):
        env.step(random.key(1), state, torch.zeros(3))


def test_it_keeps_the_environment_contract_alone_and_through_torchrl():
    from torchrl.envs.utils import check_env_specs

    from frl.envs.check import check

    assert check(ENV_ID, steps=400) == []
    env = envs.to_torchrl(envs.make(ENV_ID), num_envs=2, seed=3)
    check_env_specs(env)
    rollout = env.rollout(160, break_when_any_done=False)
    assert rollout.shape == (2, 160) and rollout["observation"].shape == (2, 160, 38)


def test_ppo_learns_to_drive():
    """PPO (the Highway-v0 preset, eager, reduced budget: 1 seed x 30k steps) drives most of the
    hand-tuned controller's return: >= 0.8x of it in its final evaluation (measured: 0.88x)."""
    from frl.algos import ppo

    torch.manual_seed(0)
    env = envs.make(ENV_ID)
    controller = float(H.rollout_episodes(env, H.hand_tuned, random.key(5), 64)["return"].mean())
    config = ppo.Config.preset(ENV_ID, total_timesteps=30_720)
    result = frl.run(ppo.make_train(config), seeds=1, compile=False, eval_episodes=20, progress=False)
    assert result.eval_returns[0] >= 0.8 * controller, (result.eval_returns, controller)
