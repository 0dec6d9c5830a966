"""frl.planning: exact answers (linear solves, an independent FrozenLake solver), agreement of the
solvers, soft -> hard as alpha -> 0, the four variants, the policy-gradient theorem."""

from __future__ import annotations

import functools
import itertools

import gymnasium
import numpy as np
import pytest
import torch

import frl
from frl import planning as pl
from frl import random
from frl.envs.tabular import TabularEnv


def small_mdp() -> torch.Tensor:
    """A 3-state, 2-action MDP with a terminal state, small enough to solve by hand."""
    P = torch.zeros(3, 2, 3, dtype=torch.float64)
    P[0, 0] = torch.tensor([0.5, 0.5, 0.0])
    P[0, 1] = torch.tensor([0.0, 0.2, 0.8])
    P[1, 0] = torch.tensor([1.0, 0.0, 0.0])
    P[1, 1] = torch.tensor([0.0, 0.0, 1.0])
    P[2, :, 2] = 1.0
    R = torch.tensor([[0.0, -1.0], [2.0, 5.0], [0.0, 0.0]], dtype=torch.float64)
    return pl.make_mdp(P, R, gamma=0.9, terminal=torch.tensor([False, False, True]))


def independent_frozen_lake_values(gamma: float) -> np.ndarray:
    """Optimal FrozenLake 4x4 (slippery) values straight from gymnasium's table, in NumPy."""
    env = gymnasium.make("FrozenLake-v1", map_name="4x4", is_slippery=True).unwrapped
    v = np.zeros(16)
    for _ in range(100_000):
        new = np.zeros(16)
        for s in range(16):
            new[s] = max(
                sum(p * (r + (0.0 if done else gamma * v[s2])) for p, s2, r, done in env.P[s][a])
                for a in range(4)
            )
        if np.abs(new - v).max() < 1e-13:
            break
        v = new
    # holes and the goal are absorbing (their transitions are never taken): value 0
    desc = env.desc.flatten()
    v[(desc == b"H") | (desc == b"G")] = 0.0
    return v


def test_small_mdp_by_hand():
    mdp = small_mdp()
    # v(1) under "always 1": 5 then terminal; v(0) = -1 + 0.9 (0.2 v(1)) = -1 + 0.9 = -0.1
    always_one = torch.tensor([[0.0, 1.0]] * 3, dtype=torch.float64)
    v = pl.policy_evaluation(mdp, always_one)
    torch.testing.assert_close(v, torch.tensor([-0.1, 5.0, 0.0], dtype=torch.float64))
    solution = pl.value_iteration(mdp)
    # cycling beats cashing in: v0 = 0.9 (0.5 v0 + 0.5 v1), v1 = 2 + 0.9 v0 (> 5)
    assert solution.policy[:2].argmax(-1).tolist() == [0, 0]
    v1 = 2.0 / (1.0 - 0.9 * 0.45 / 0.55)
    torch.testing.assert_close(
        solution.values, torch.tensor([0.45 / 0.55 * v1, v1, 0.0], dtype=torch.float64)
    )


def test_frozen_lake_matches_an_independent_solver():
    mdp = pl.frozen_lake("4x4", is_slippery=True, gamma=0.99)
    expected = independent_frozen_lake_values(0.99)
    solution = pl.value_iteration(mdp, tol=1e-12)
    np.testing.assert_allclose(solution.values.numpy(), expected, atol=1e-9)
    assert solution.values[0] == pytest.approx(0.5420, abs=1e-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: pl.frozen_lake("4x4", True, 0.95),
        lambda: pl.frozen_lake("8x8", True, 0.95),
        lambda: pl.frozen_lake("4x4", False, 0.9),
        lambda: pl.cliff_walking(0.95),
        lambda: pl.gridworld(
            6, 7, walls=[(1, 1), (2, 3)], slip=0.2, step_reward=-0.04, goals={(5, 6): 1, (3, 3): -1}
        ),
        lambda: pl.garnet(random.key(3), 30, 4, 5, 0.9, dtype=torch.float64),
    ],
    ids=["frozen-4x4", "frozen-8x8", "frozen-4x4-det", "cliff", "gridworld", "garnet"],
)
def test_value_iteration_policy_iteration_and_linear_solve_agree(make):
    mdp = make()
    vi = pl.value_iteration(mdp, tol=1e-12)
    pi = pl.policy_iteration(mdp)
    exact = pl.policy_evaluation(mdp, vi.policy)
    iterative = pl.policy_evaluation(mdp, vi.policy, method="iterative", tol=1e-12)
    torch.testing.assert_close(vi.values, pi.values, atol=1e-8, rtol=0)
    torch.testing.assert_close(exact, vi.values, atol=1e-8, rtol=0)
    torch.testing.assert_close(iterative, exact, atol=1e-8, rtol=0)
    # the fixed points: T v* = v*, T^pi v^pi = v^pi
    torch.testing.assert_close(pl.bellman_optimality(mdp, vi.values), vi.values, atol=1e-10, rtol=0)
    torch.testing.assert_close(pl.bellman_expectation(mdp, exact, vi.policy), exact, atol=1e-10, rtol=0)
    assert pi.residual <= 1e-10 and vi.residual <= 1e-12
    assert (vi.values[mdp["terminal"]] == 0).all()


def test_soft_value_iteration_tends_to_hard_as_alpha_shrinks():
    mdp = pl.frozen_lake("4x4", True, 0.9)
    hard = pl.value_iteration(mdp).values
    gaps = [
        (pl.soft_value_iteration(mdp, alpha).values - hard).abs().max().item()
        for alpha in (1.0, 0.1, 0.01, 0.001)
    ]
    assert all(a > b for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[-1] < 1e-2
    # soft >= hard, and the bound max <= softmax <= max + alpha log A per step
    for alpha in (0.1, 0.01):
        soft = pl.soft_value_iteration(mdp, alpha).values
        assert (soft >= hard - 1e-9).all()
        assert (soft - hard).max() <= alpha * np.log(4) / (1 - 0.9) + 1e-9
    # the soft Q-value definition: Q(s, a) = r + gamma E[V(s')], V(s) = alpha logsumexp(Q / alpha)
    s = pl.soft_value_iteration(mdp, 0.1)
    torch.testing.assert_close(
        s.values, 0.1 * torch.logsumexp(s.q_values / 0.1, -1) * (~mdp["terminal"]), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(s.policy.sum(-1), torch.ones(16, dtype=torch.float64))


def test_batched_mdps_vmap_and_per_member_convergence():
    garnet = functools.partial(pl.garnet, num_states=20, num_actions=3, branching=4, dtype=torch.float64)
    garnets = torch.func.vmap(garnet)(random.split(random.key(0), 6))
    assert garnets.batch_size == (6,)
    batched = pl.value_iteration(garnets, tol=1e-6)
    alone = [pl.value_iteration(garnets[i], tol=1e-6) for i in range(6)]
    for i in range(6):
        torch.testing.assert_close(batched.values[i], alone[i].values, rtol=0, atol=1e-12)
        assert batched.iterations[i] == alone[i].iterations
        torch.testing.assert_close(
            garnets[i]["transitions"], garnet(random.split(random.key(0), 6)[i])["transitions"]
        )
    vmapped = torch.func.vmap(lambda m: pl.value_iteration(m, tol=1e-6, max_iterations=400))(garnets)
    torch.testing.assert_close(vmapped.values, batched.values, rtol=0, atol=1e-12)
    assert torch.equal(vmapped.iterations, batched.iterations)
    pi_v = torch.func.vmap(lambda m: pl.policy_iteration(m, max_iterations=20).values)(garnets)
    torch.testing.assert_close(pi_v, batched.values, atol=1e-4, rtol=0)


def test_operators_under_grad_and_compile():
    mdp = small_mdp()
    v = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    policy = torch.tensor([[0.3, 0.7], [0.6, 0.4], [0.5, 0.5]], dtype=torch.float64)
    # grad: d/dv of sum(T^pi v) is sum_s sum_a pi c(s, a, .)
    g = torch.func.grad(lambda v: pl.bellman_expectation(mdp, v, policy).sum())(v)
    P = mdp["transitions"]
    expected = (
        0.9 * (policy[..., None] * P).sum(1)[:2].sum(0) * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(g, expected)
    compiled = frl.compile(
        lambda m, v: (pl.bellman_optimality(m, v), pl.soft_bellman(m, v, 0.5), pl.q_from_v(m, v))
    )
    for a, b in zip(
        compiled(mdp, v), (pl.bellman_optimality(mdp, v), pl.soft_bellman(mdp, v, 0.5), pl.q_from_v(mdp, v))
    ):
        torch.testing.assert_close(a, b)
    sweeps = frl.compile(lambda m: pl.value_iteration(m, max_iterations=8).values)
    torch.testing.assert_close(sweeps(mdp), pl.value_iteration(mdp, max_iterations=8, check_every=100).values)


def test_bad_mdps_name_the_field():
    with pytest.raises(ValueError, match="rows P\\[s, a, :\\] must be non-negative and sum to 1"):
        pl.make_mdp(torch.full((2, 1, 2), 0.7), torch.zeros(2, 1), gamma=0.9)
    with pytest.raises(ValueError, match="`rewards` must be"):
        pl.make_mdp(torch.full((2, 1, 2), 0.5), torch.zeros(3), gamma=0.9)
    with pytest.raises(ValueError, match="`gamma` must lie in"):
        pl.make_mdp(torch.full((2, 1, 2), 0.5), torch.zeros(2, 1), gamma=1.5)
    with pytest.raises(ValueError, match=r"`v` must be \[..., S=3\]"):
        pl.q_from_v(small_mdp(), torch.zeros(4))
    with pytest.raises(ValueError, match="`method` must be"):
        pl.policy_evaluation(small_mdp(), torch.ones(3, 2) / 2, method="magic")


def test_tabular_env_samples_the_mdp():
    mdp = pl.frozen_lake("4x4", True)
    env = TabularEnv(mdp, max_episode_steps=100)
    n = 30_000
    state = {"state": torch.full((n,), 9), "time": torch.zeros(n, dtype=torch.int64)}
    _, _, reward, terminated, truncated, info = env.step(random.key(1), state, torch.full((n,), 1))
    freq = torch.bincount(info["final_observation"].argmax(-1), minlength=16).double() / n
    expected = mdp["transitions"][9, 1]
    assert (freq - expected).abs().max() < 5 * (1 / 3 * 2 / 3 / n) ** 0.5
    assert not terminated.any() and not truncated.any()
    # reaching the goal terminates with reward 1 and restarts at the start state
    state = {"state": torch.full((n,), 14), "time": torch.zeros(n, dtype=torch.int64)}
    _obs, nxt, reward, terminated, _, info = env.step(random.key(2), state, torch.full((n,), 2))
    at_goal = info["final_observation"].argmax(-1) == 15
    assert torch.equal(terminated, at_goal) and torch.equal(reward, at_goal.float())
    assert (nxt["state"][at_goal] == 0).all()
    assert abs(at_goal.double().mean() - 1 / 3) < 0.02


def test_policy_gradient_theorem_and_reinforce_estimate_with_and_without_baseline():
    """Exact gradient of J(theta) = sum_s d0(s) v^pi(s) (autograd through the linear solve) equals
    the policy-gradient theorem's sum_s d^pi(s) sum_a grad pi(a|s) Q^pi(s, a); frl's REINFORCE
    estimate matches it within Monte-Carlo error, and a baseline cuts its variance (measured)."""
    mdp = pl.gridworld(3, 3, slip=0.1, step_reward=-0.1, gamma=0.9)
    logits = 0.5 * random.normal(random.key(0), (9, 4), torch.float64)
    exact = torch.func.grad(lambda z: pl.performance(mdp, torch.softmax(z, -1)))(logits)
    torch.testing.assert_close(pl.softmax_policy_gradient(mdp, logits), exact, atol=1e-10, rtol=0)
    v = pl.policy_evaluation(mdp, torch.softmax(logits, -1))
    plain = pl.reinforce_gradient_estimates(mdp, logits, random.key(1), episodes=4000, batches=20)
    based = pl.reinforce_gradient_estimates(mdp, logits, random.key(1), episodes=4000, batches=20, baseline=v)
    for estimates in (plain, based):
        mean = estimates.mean(0)
        stderr = estimates.std(0) / estimates.shape[0] ** 0.5
        z = ((mean - exact).abs() / (stderr + 1e-12)).max()
        assert z < 5, z
    assert based.var(0).sum() < 0.7 * plain.var(0).sum(), (based.var(0).sum(), plain.var(0).sum())


def test_the_theory_example_runs_and_every_check_passes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "theory.py"
    spec = importlib.util.spec_from_file_location("theory_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--episodes", "2000", "--batches", "10"])


def test_evaluation_and_soft_iteration_under_vmap_and_compile():
    garnet = functools.partial(pl.garnet, num_states=12, num_actions=3, branching=3, dtype=torch.float64)
    mdps = torch.func.vmap(garnet)(random.split(random.key(5), 4))
    policy = torch.softmax(random.normal(random.key(6), (4, 12, 3), torch.float64), -1)
    exact = pl.policy_evaluation(mdps, policy)
    vmapped = torch.func.vmap(pl.policy_evaluation)(mdps, policy)
    torch.testing.assert_close(vmapped, exact, rtol=0, atol=1e-12)
    compiled = frl.compile(pl.policy_evaluation)(mdps, policy)
    torch.testing.assert_close(compiled, exact, rtol=0, atol=1e-10)
    soft = pl.soft_value_iteration(mdps, 0.2, tol=1e-11)
    soft_vmapped = torch.func.vmap(lambda m: pl.soft_value_iteration(m, 0.2, tol=1e-11, max_iterations=400))(
        mdps
    )
    torch.testing.assert_close(soft_vmapped.values, soft.values, rtol=0, atol=1e-12)
    # per-MDP temperatures as a tensor (a sweep over alpha never recompiles)
    alphas = torch.tensor([0.05, 0.1, 0.2, 0.4], dtype=torch.float64)
    per_member = pl.soft_value_iteration(mdps, alphas, tol=1e-11)
    for i, a in enumerate(alphas.tolist()):
        torch.testing.assert_close(
            per_member.values[i], pl.soft_value_iteration(mdps[i], a, tol=1e-11).values
        )
    # the soft fixed point: v = T_alpha v
    torch.testing.assert_close(pl.soft_bellman(mdps, soft.values, 0.2), soft.values, rtol=0, atol=1e-10)
