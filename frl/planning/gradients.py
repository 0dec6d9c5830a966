"""Policy gradients on tabular MDPs: exact (the policy-gradient theorem, autograd through the
linear-solve evaluation) and sampled (frl's ``reinforce_loss`` on episodes of a ``TabularEnv``).

For a softmax policy ``pi = softmax(theta) [S, A]`` and ``J(theta) = sum_s d0(s) v^pi(s)``, the
theorem (Sutton et al. 2000) gives ``dJ/dtheta(s, a) = d^pi(s) pi(a|s) (Q^pi(s, a) - v^pi(s))``
with the discounted visitation ``d^pi = d0^T (I - gamma P_pi)^-1``; REINFORCE estimates it by
``sum_t gamma^t grad log pi(a_t|s_t) (G_t - b(s_t))`` averaged over episodes.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.distributions import Categorical
from frl.envs.tabular import TabularEnv
from frl.losses import reinforce_loss
from frl.planning.operators import _parts, policy_evaluation, q_from_v

__all__ = ["discounted_visitation", "performance", "reinforce_gradient_estimates", "softmax_policy_gradient"]


def discounted_visitation(mdp: TensorDictBase, policy: Tensor) -> Tensor:
    """``d^pi(s) = sum_t gamma^t Pr(s_t = s)`` from ``initial``: ``d0^T (I - gamma P_pi)^-1``, ``[..., S]``.

    Terminal states are absorbing with no future (their row of ``P_pi`` is zero), so they count
    once, when reached.
    """
    _, c, live = _parts(mdp)
    c_pi = (policy[..., None] * c).sum(-2) * live[..., :, None]
    eye = torch.eye(c_pi.shape[-1], dtype=c_pi.dtype, device=c_pi.device)
    d0 = mdp["initial"].to(c_pi.dtype)
    return torch.linalg.solve((eye - c_pi).transpose(-1, -2), d0.unsqueeze(-1)).squeeze(-1)


def performance(mdp: TensorDictBase, policy: Tensor) -> Tensor:
    """``J(pi) = sum_s d0(s) v^pi(s)``, differentiable in ``policy`` (through the linear solve)."""
    return (mdp["initial"].to(policy.dtype) * policy_evaluation(mdp, policy)).sum(-1)


def softmax_policy_gradient(mdp: TensorDictBase, logits: Tensor) -> Tensor:
    """The policy-gradient theorem for ``pi = softmax(logits) [..., S, A]`` (Sutton et al. 2000):

    ``dJ/dlogits(s, a) = d^pi(s) pi(a|s) (Q^pi(s, a) - v^pi(s))``, with ``d^pi`` from
    :func:`discounted_visitation`: the exact gradient that REINFORCE estimates by sampling.
    """
    policy = torch.softmax(logits, -1)
    v = policy_evaluation(mdp, policy)
    q = q_from_v(mdp, v)
    d = discounted_visitation(mdp, policy) * (~mdp["terminal"]).to(v.dtype)
    return d[..., None] * policy * (q - v[..., None])


def _episodes(mdp: TensorDictBase, logits: Tensor, key: Tensor, n: int) -> list[tuple[Tensor, ...]]:
    """``n`` whole episodes in parallel: per step ``(state, action, reward, alive)``."""
    env = TabularEnv(mdp, max_episode_steps=100_000)
    k_reset, key = random.split(key)
    _, state = env.reset(k_reset, num_envs=n)
    alive = torch.ones(n, dtype=torch.bool)
    steps = []
    while bool(alive.any()):
        key, k_act, k_env = random.split(key, 3)
        s = state["state"]
        action = random.categorical(k_act, logits[s])
        _, state, reward, terminated, truncated, _ = env.step(k_env, state, action)
        steps.append((s, action, reward.to(logits.dtype), alive.clone()))
        alive = alive & ~(terminated | truncated)
    return steps


def reinforce_gradient_estimates(
    mdp: TensorDictBase,
    logits: Tensor,
    key: Tensor,
    *,
    episodes: int,
    batches: int,
    baseline: Tensor | None = None,
) -> Tensor:
    """REINFORCE estimates of ``dJ/dlogits`` through ``frl.losses.reinforce_loss``: ``[batches, S, A]``.

    Each batch samples ``episodes`` whole episodes (an episodic MDP: every policy must reach a
    terminal state) and returns ``-grad loss`` scaled to a per-episode sum. ``J`` is discounted,
    so step ``t`` enters with weight ``gamma^t``: the observations are ``gamma^t onehot(s_t)``
    (the policy reads their direction), the returns ``gamma^t G_t`` and the baseline
    ``b [S]`` (optional, e.g. the exact ``v^pi``) is read as ``gamma^t b(s_t)``.
    """
    gamma = float(mdp["gamma"])
    S = logits.shape[0]

    def policy_apply(table: Tensor, obs: Tensor) -> Tensor:
        return (obs / obs.sum(-1, keepdim=True)) @ table

    def value_apply(table: Tensor, obs: Tensor) -> Tensor:
        return obs @ table

    estimates = []
    for key_b in random.split(key, batches):
        steps = _episodes(mdp, logits, key_b, episodes)
        rewards = torch.stack([r for _, _, r, _ in steps])  # [T, N]
        alive = torch.stack([m for _, _, _, m in steps])
        returns = torch.zeros_like(rewards)
        running = torch.zeros(episodes, dtype=rewards.dtype)
        for t in reversed(range(len(steps))):
            running = torch.where(alive[t], rewards[t] + gamma * running, torch.zeros_like(running))
            returns[t] = running
        weight = gamma ** torch.arange(len(steps), dtype=rewards.dtype)[:, None].expand_as(rewards)
        states = torch.stack([s for s, _, _, _ in steps])[alive]
        batch = TensorDict(
            {
                "observation": weight[alive, None] * torch.nn.functional.one_hot(states, S).to(rewards.dtype),
                "action": torch.stack([a for _, a, _, _ in steps])[alive],
                "value_target": (weight * returns)[alive],
            },
            batch_size=[int(alive.sum())],
        )
        params = TensorDict({"actor": logits}, batch_size=[])
        if baseline is not None:
            params["critic"] = baseline

        def loss(p: TensorDictBase, batch: TensorDictBase = batch) -> Tensor:
            value = None if baseline is None else value_apply
            critic = None if baseline is None else p["critic"]
            return reinforce_loss(
                p["actor"], critic, batch, policy_apply=policy_apply, dist=Categorical(), value_apply=value
            )[0]

        grads = torch.func.grad(loss)(params)
        estimates.append(-grads["actor"] * (batch.batch_size[0] / episodes))
    return torch.stack(estimates)
