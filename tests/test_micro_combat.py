"""frl.envs.micro_combat: layout, legal-action masks, the combat rules by hand (fire, cooldown,
shields, wins), sight, the heuristic baselines' statistics, vmap and compile, bad input."""

from __future__ import annotations

import pytest
import torch

import frl
from frl import envs, random
from frl.distributions import MaskedCategorical
from frl.envs.micro_combat import MAPS, NUM_MOVES, UNIT_TYPES, MicroCombat


def place(env: MicroCombat, units: list[tuple[float, float, float, float, float]]) -> torch.Tensor:
    """Physics from ``(x, y, health, shield, cooldown)`` per unit (idle 0)."""
    return torch.tensor([[*u, 0.0] for u in units], dtype=torch.float32).flatten()


def rollout(env: MicroCombat, policy: str, episodes: int = 400, seed: int = 0) -> dict[str, float]:
    obs, state = env.reset(random.key(seed), num_envs=episodes)
    live = torch.ones(episodes, dtype=torch.bool)
    total, won = torch.zeros(episodes), torch.zeros(episodes, dtype=torch.bool)
    key = random.key(seed + 1)
    for _ in range(env.max_episode_steps):
        key, k_act, k_step = random.split(key, 3)
        if policy == "random":
            logits = torch.zeros(episodes, env.n_agents, env.num_actions)
            action = MaskedCategorical().sample(k_act, (logits, obs["agents"]["action_mask"]))
        else:
            action = env.heuristic_agents(state["physics"])
        legal = torch.gather(obs["agents"]["action_mask"], -1, action.unsqueeze(-1))
        assert bool(legal.all()), f"{policy} sent a masked action"
        obs, state, reward, terminated, truncated, info = env.step(k_step, state, action)
        total += torch.where(live, reward, 0.0)
        won |= live & info["win"]
        live &= ~(terminated | truncated)
    assert not bool(live.any())
    return {"return": float(total.mean()), "win": float(won.float().mean())}


def test_layout_per_map():
    for name, (allies, enemies, limit) in MAPS.items():
        env = envs.make(f"MicroCombat-{name}-v0")
        n, m, T = len(allies), len(enemies), len(set(allies + enemies))
        assert (env.n_agents, env.n_enemies, env.max_episode_steps, env.id) == (
            n,
            m,
            limit,
            f"MicroCombat-{name}-v0",
        )
        obs, _ = env.reset(random.key(0), num_envs=4)
        assert (
            obs["agents"]["observation"].shape == (4, n, (n + m - 1) * (6 + T) + 5 + T) == (4, n, env.obs_dim)
        )
        assert (
            obs["agents"]["action_mask"].shape == (4, n, NUM_MOVES + m)
            and obs["agents"]["action_mask"].dtype == torch.bool
        )
        assert obs["state"].shape == (4, env.state_dim)
        assert env.observation_space.shape == (env.obs_dim,) and env.action_space.n == NUM_MOVES + m


def test_masks_follow_life_and_attack_range():
    env = MicroCombat(map_name="3m")
    # agent 0 alive, 5 from enemy 0 (in range 5) and 5.5 from enemy 1; agent 1 dead; agent 2 far away
    physics = place(
        env,
        [
            (10, 10, 45, 0, 0),
            (10, 12, 0, 0, 0),
            (2, 30, 45, 0, 0),
            (15, 10, 45, 0, 0),
            (10, 15.5, 45, 0, 0),
            (13, 10, 0, 0, 0),
        ],
    )
    mask = env.action_mask(physics)
    assert mask[0].tolist() == [False, True, True, True, True, True, True, False, False]  # enemy 2 is dead
    assert mask[1].tolist() == [True] + [False] * 8  # the dead only no-op
    assert mask[2].tolist() == [False] + [True] * 5 + [False] * 3


def test_simultaneous_fire_cooldown_and_reward_by_hand():
    env = MicroCombat(map_name="3m")
    p = env.default_params()
    units = [
        (10, 10, 45, 0, 0),
        (10, 20, 45, 0, 0),
        (10, 25, 45, 0, 0),
        (14, 10, 45, 0, 0),
        (30, 30, 45, 0, 0),
        (30, 31, 45, 0, 0),
    ]
    physics = place(env, units)
    # agent 0 attacks enemy 0; enemy 0's nearest agent is agent 0 (4 away, in range): both fire
    action = torch.tensor([NUM_MOVES + 0, 1, 1])
    nxt, reward, terminated, info = env.transition(physics, action, p)
    u = env.unpack(nxt)
    assert u["health"][0] == 39 and u["health"][3] == 39
    assert float(u["cooldown"][0]) == pytest.approx(UNIT_TYPES["marine"][4] - p.dt)
    assert float(reward) == pytest.approx(6 / (3 * 45))
    assert not bool(terminated) and not bool(info["win"])
    # the weapon is not ready next step: no damage; the stopped agents and the attacker stand still
    nxt2, reward2, _, _ = env.transition(nxt, action, p)
    assert env.unpack(nxt2)["health"][3] == 39 and float(reward2) == 0.0
    assert torch.equal(env.unpack(nxt2)["pos"][:3], env.unpack(physics)["pos"][:3])
    # enemies 1 and 2 are out of range: they move toward their nearest agent at marine speed
    moved = env.unpack(nxt)["pos"][4] - env.unpack(physics)["pos"][4]
    assert float(moved.norm()) == pytest.approx(UNIT_TYPES["marine"][5] * p.dt, rel=1e-5)


def test_shields_absorb_first_and_the_last_kill_wins_with_the_bonus():
    env = MicroCombat(map_name="2s3z")
    p = env.default_params()
    far = [(1.0, 1.0 + i, 100.0, 50.0, 5.0) for i in range(3)]
    units = [(10, 10, 80, 80, 0), (10, 12, 80, 80, 0), *far]  # agents: 2 stalkers, 3 zealots (far, busy)
    units += [(14, 10, 80, 10, 0)]  # enemy stalker 0: 10 shield left, in range of agent 0
    units += [(14, 11, 0, 0, 0), (14, 12, 0, 0, 0), (14, 13, 0, 0, 0), (14, 14, 0, 0, 0)]  # the rest dead
    physics = place(env, units)
    action = torch.tensor([NUM_MOVES + 0, 1, 1, 1, 1])
    nxt, reward, terminated, info = env.transition(physics, action, p)
    u = env.unpack(nxt)
    # 13 damage: 10 to the shield, 3 to health; the enemy stalker shoots agent 0 (its nearest)
    assert float(u["shield"][5]) == 0.0 and float(u["health"][5]) == 77.0
    assert float(u["shield"][0]) == 80.0 - 13.0 and float(u["health"][0]) == 80.0
    total = 2 * (80 + 80) + 3 * (100 + 50)
    assert float(reward) == pytest.approx(13 / total)
    # a last shot that kills: terminated, won, reward = what it took + the win bonus
    last = place(env, [*units[:5], (14, 10, 5, 0, 0), *units[6:]])
    _, reward, terminated, info = env.transition(last, action, p)
    assert bool(terminated) and bool(info["win"])
    assert float(reward) == pytest.approx(5 / total + p.win_bonus)


def test_agents_see_only_within_sight_and_nothing_of_the_dead():
    env = MicroCombat(map_name="3m")
    sight = UNIT_TYPES["marine"][6]
    units = [
        (5, 5, 45, 0, 0),
        (5, 5 + sight + 0.5, 45, 0, 0),
        (5, 8, 0, 0, 0),
        (8, 5, 45, 0, 0),
        (30, 30, 45, 0, 0),
        (9, 9, 45, 0, 0),
    ]
    obs = env.observe(place(env, units))["agents"]["observation"]
    width = env.unit_features
    about = obs[0, : 5 * width].reshape(5, width)  # agent 0: agents 1, 2, then enemies 0, 1, 2
    assert about[:, 0].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert float(about[2, 1]) == pytest.approx(3 / sight) and float(about[2, 2]) == pytest.approx(3 / sight)
    assert float(about[0].abs().sum()) == 0.0 and float(about[1].abs().sum()) == 0.0


def test_random_agents_lose_and_the_heuristic_mirror_wins_some():
    """The baselines a learned policy is measured against: a uniformly random legal policy never
    wins 3m; the enemy's own heuristic played by the agents wins a fraction of the mirror match."""
    env = envs.make("MicroCombat-3m-v0")
    rand, mirror = rollout(env, "random"), rollout(env, "heuristic")
    assert rand["win"] == 0.0 and 0.05 < mirror["win"] < 0.6, (rand, mirror)
    assert mirror["return"] > rand["return"] + 0.5


def test_vmapped_and_compiled_steps_match_the_batched_eager_step():
    env = envs.make("MicroCombat-2s3z-v0")
    keys = random.split(random.key(3), 6)
    obs, state = envs.reset_batch(env, random.key(4), 6)
    action = MaskedCategorical().sample(
        keys[0], (torch.zeros(6, env.n_agents, env.num_actions), obs["agents"]["action_mask"])
    )
    step_keys = random.split(random.key(5), 6)
    vmapped = torch.func.vmap(env.step)(step_keys, state, action)
    looped = [env.step(step_keys[i], {k: v[i] for k, v in state.items()}, action[i]) for i in range(6)]
    for i in range(6):
        torch.testing.assert_close(
            vmapped[0]["agents"]["observation"][i], looped[i][0]["agents"]["observation"]
        )
        torch.testing.assert_close(vmapped[2][i], looped[i][2])


@pytest.mark.compile
def test_a_compiled_rollout_equals_eager():
    env = envs.make("MicroCombat-3m-v0")

    def run(key, state, obs):
        total = torch.zeros(8)
        for _ in range(5):
            key, k_act, k_step = random.split(key, 3)
            logits = torch.zeros(8, env.n_agents, env.num_actions)
            action = MaskedCategorical().sample(k_act, (logits, obs["agents"]["action_mask"]))
            obs, state, reward, _, _, _ = env.step(k_step, state, action)
            total = total + reward
        return total, state["physics"]

    obs, state = env.reset(random.key(0), num_envs=8)
    eager = run(random.key(1), state, obs)
    compiled = frl.compile(run)(random.key(1), state, obs)
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: MicroCombat(map_name="4m"), ValueError, "unknown map '4m'"),
        (lambda: envs.make("MicroCombat-4m-v0"), ValueError, "unknown environment"),
        (lambda: MicroCombat(width=0.0), ValueError, "width"),
        (
            lambda: MicroCombat().step(random.key(0), MicroCombat().reset(random.key(0))[1], torch.tensor(1)),
            ValueError,
            r"shape \[3\] \(one per agent\)",
        ),
        (lambda: frl.envs.micro_combat.MicroCombatParams(dt=0.0), ValueError, "dt"),
    ],
)
def test_bad_input_names_it(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_single_agent_algorithms_refuse_a_multi_agent_environment():
    from frl.algos import dqn, ppo

    for module in (ppo, dqn):
        with pytest.raises(ValueError, match="single-agent algorithm; MicroCombat-3m-v0 is a multi-agent"):
            module.make_train(module.Config(env_id="MicroCombat-3m-v0"))
