"""The theory, executable: each equation beside the frl code that computes it, with a printed check.

1. Bellman expectation:  v^pi(s) = sum_a pi(a|s) [ r(s,a) + gamma sum_s' P(s'|s,a) v^pi(s') ]
2. Bellman optimality:   v*(s)   = max_a       [ r(s,a) + gamma sum_s' P(s'|s,a) v*(s') ]
3. Soft Q-values:        Q(s,a)  = r(s,a) + gamma E_s'[V(s')],  V(s) = alpha log sum_a exp(Q(s,a)/alpha)
                                 = E_{a~pi}[Q(s,a) - alpha log pi(a|s)]  with  pi = softmax(Q/alpha)
4. Policy gradient:      dJ/dtheta = sum_s d^pi(s) sum_a grad pi(a|s) Q^pi(s,a)   (REINFORCE samples it)

On FrozenLake 4x4 (slippery, gymnasium's transition table) and a 3x3 gridworld.

    python examples/theory.py [--episodes 4000] [--batches 20]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from frl import planning as pl
from frl import random
from frl.envs.tabular import TabularEnv


def check(name: str, value: float, tolerance: float) -> bool:
    ok = value <= tolerance
    print(f"  {'ok ' if ok else 'FAIL'} {name}: {value:.3g} (<= {tolerance:g})")
    return ok


def main(argv: Sequence[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=4000, help="episodes per REINFORCE batch")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    passed = []
    lake = pl.frozen_lake("4x4", is_slippery=True, gamma=0.99)
    S, A = 16, 4

    # 1. BELLMAN EXPECTATION: v^pi is the fixed point of T^pi, and the solution of a linear system
    print("1. Bellman expectation, uniform random policy on FrozenLake 4x4")
    uniform = torch.full((S, A), 1.0 / A, dtype=torch.float64)
    v_pi = pl.policy_evaluation(lake, uniform)  # (I - gamma P_pi) v = r_pi, solved exactly
    v_iter = pl.policy_evaluation(lake, uniform, method="iterative", tol=1e-12)  # v <- T^pi v
    passed.append(
        check(
            "max |T^pi v^pi - v^pi|",
            float((pl.bellman_expectation(lake, v_pi, uniform) - v_pi).abs().max()),
            1e-12,
        )
    )
    passed.append(check("max |iterative - linear solve|", float((v_iter - v_pi).abs().max()), 1e-9))
    # the same number by sampling: the mean discounted return of episodes from the start state
    env = TabularEnv(lake, max_episode_steps=10_000)
    n = 20_000
    _, state = env.reset(random.key(0), num_envs=n)
    ret, discount, alive, key = (
        torch.zeros(n, dtype=torch.float64),
        1.0,
        torch.ones(n, dtype=torch.bool),
        random.key(1),
    )
    while bool(alive.any()):
        key, k_act, k_env = random.split(key, 3)
        action = random.randint(k_act, (n,), 0, A)
        _, state, reward, terminated, truncated, _ = env.step(k_env, state, action)
        ret += discount * reward.double() * alive
        discount *= 0.99
        alive &= ~(terminated | truncated)
    stderr = float(ret.std() / n**0.5)
    print(f"  v^pi(start) exact {float(v_pi[0]):.4f}, Monte Carlo {float(ret.mean()):.4f} +- {stderr:.4f}")
    passed.append(check("|Monte Carlo - exact| / stderr", abs(float(ret.mean() - v_pi[0])) / stderr, 4.0))

    # 2. BELLMAN OPTIMALITY: value iteration and policy iteration reach the same v*
    print("2. Bellman optimality")
    vi = pl.value_iteration(lake, tol=1e-12)
    pi = pl.policy_iteration(lake)
    print(
        f"  value iteration: {int(vi.iterations)} sweeps; policy iteration: {int(pi.iterations)} improvements"
    )
    print(f"  v*(start) = {float(vi.values[0]):.4f}; greedy actions (0 left, 1 down, 2 right, 3 up):")
    for row in vi.policy.argmax(-1).reshape(4, 4).tolist():
        print("   ", " ".join(str(a) for a in row))
    passed.append(
        check(
            "max |T v* - v*|", float((pl.bellman_optimality(lake, vi.values) - vi.values).abs().max()), 1e-10
        )
    )
    passed.append(check("max |VI - PI|", float((vi.values - pi.values).abs().max()), 1e-9))

    # 3. SOFT Q-VALUES: the soft value is a log-sum-exp and also an entropy-regularised expectation
    print("3. Soft Q-values (maximum entropy), alpha -> 0 recovers v*")
    for alpha in (1.0, 0.1, 0.01, 0.001):
        soft = pl.soft_value_iteration(lake, alpha, tol=1e-12)
        live = (~lake["terminal"]).double()
        entropy_form = (soft.policy * (soft.q_values - alpha * torch.log(soft.policy))).sum(-1) * live
        gap = float((soft.values - vi.values).abs().max())
        identity = float((entropy_form - soft.values).abs().max())
        print(
            f"  alpha {alpha:<6g} max |V_soft - v*| {gap:.4f}   "
            f"max |E_pi[Q - alpha log pi] - V| {identity:.1e}"
        )
        passed.append(identity <= 1e-9)
    passed.append(check("max |V_soft(0.001) - v*|", gap, 0.01))

    # 4. POLICY GRADIENT THEOREM, and REINFORCE estimating it
    print("4. Policy gradient theorem on a 3x3 gridworld (softmax policy, random logits)")
    grid = pl.gridworld(3, 3, slip=0.1, step_reward=-0.1, gamma=0.9)
    logits = 0.5 * random.normal(random.key(2), (9, 4), torch.float64)
    autograd = torch.func.grad(lambda z: pl.performance(grid, torch.softmax(z, -1)))(logits)
    theorem = pl.softmax_policy_gradient(grid, logits)  # d^pi(s) pi(a|s) (Q - v)
    passed.append(check("max |theorem - autograd of J|", float((theorem - autograd).abs().max()), 1e-10))
    v = pl.policy_evaluation(grid, torch.softmax(logits, -1))
    for label, baseline in (("no baseline", None), ("baseline v^pi", v)):
        est = pl.reinforce_gradient_estimates(
            grid, logits, random.key(3), episodes=args.episodes, batches=args.batches, baseline=baseline
        )
        z = float(((est.mean(0) - autograd).abs() / (est.std(0) / args.batches**0.5 + 1e-12)).max())
        print(
            f"  REINFORCE, {label:<13}: max z-score vs exact {z:.2f}, "
            f"total variance {float(est.var(0).sum()):.2e}"
        )
        passed.append(z < 5)
    print(f"all checks passed: {all(passed)}")
    return all(passed)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
