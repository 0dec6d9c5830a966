"""Policy gradients on a tabular MDP: exact (autograd, the theorem) and frl's REINFORCE estimate."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from frl import planning as pl
from frl import random
from frl.distributions import Categorical
from frl.envs.tabular import TabularEnv
from frl.losses import reinforce_loss


def exact_gradient(mdp, logits: torch.Tensor) -> torch.Tensor:
    """``dJ/dlogits`` by autograd through the exact linear-solve evaluation."""
    return torch.func.grad(lambda z: pl.performance(mdp, torch.softmax(z, -1)))(logits)


def theorem_gradient(mdp, logits: torch.Tensor) -> torch.Tensor:
    return pl.softmax_policy_gradient(mdp, logits)


def _episodes(mdp, logits: torch.Tensor, key: torch.Tensor, n: int):
    """``n`` episodes in parallel: per step the state, action, reward and an alive mask."""
    env = TabularEnv(mdp, max_episode_steps=10_000)
    k_reset, key = random.split(key)
    _obs, state = env.reset(k_reset, num_envs=n)
    alive = torch.ones(n, dtype=torch.bool)
    steps = []
    while bool(alive.any()):
        key, k_act, k_env = random.split(key, 3)
        s = state["state"]
        action = random.categorical(k_act, logits[s])
        _, state, reward, terminated, truncated, _ = env.step(k_env, state, action)
        steps.append((s, action, reward.double(), alive.clone()))
        alive = alive & ~(terminated | truncated)
    return steps


def reinforce_gradients(mdp, logits: torch.Tensor, key: torch.Tensor, episodes: int, batches: int):
    """REINFORCE estimates of ``dJ/dlogits`` through ``frl.losses.reinforce_loss``, one per batch of
    ``episodes``, without and with the exact ``v^pi`` as baseline: two tensors ``[batches, S, A]``.

    ``J`` is discounted, so step ``t`` enters with weight ``gamma^t``: observations carry it
    (``gamma^t onehot(s_t)``), the returns are ``gamma^t G_t`` and the critic reads
    ``gamma^t v(s_t)``; the loss's mean over samples is scaled back to a sum per episode.
    """
    gamma = float(mdp["gamma"])
    v = pl.policy_evaluation(mdp, torch.softmax(logits, -1))
    S = logits.shape[0]

    def policy_apply(table, obs):
        return (obs / obs.sum(-1, keepdim=True)) @ table

    def value_apply(table, obs):
        return obs @ table

    plain, based = [], []
    for key_b in random.split(key, batches):
        steps = _episodes(mdp, logits, key_b, episodes)
        rewards = torch.stack([r for _, _, r, _ in steps])  # [T, N]
        alive = torch.stack([m for _, _, _, m in steps])
        returns = torch.zeros_like(rewards)
        running = torch.zeros(episodes, dtype=torch.float64)
        for t in reversed(range(len(steps))):
            running = torch.where(alive[t], rewards[t] + gamma * running, torch.zeros_like(running))
            returns[t] = running
        weight = gamma ** torch.arange(len(steps), dtype=torch.float64)[:, None].expand_as(rewards)
        states = torch.stack([s for s, _, _, _ in steps])[alive]
        batch = TensorDict(
            {
                "observation": weight[alive, None] * torch.nn.functional.one_hot(states, S).double(),
                "action": torch.stack([a for _, a, _, _ in steps])[alive],
                "value_target": (weight * returns)[alive],
            },
            batch_size=[int(alive.sum())],
        )
        scale = batch.batch_size[0] / episodes
        for critic, out in ((None, plain), (v, based)):
            params = TensorDict({"actor": logits}, batch_size=[])
            if critic is not None:
                params["critic"] = critic

            def loss(p, critic=critic, batch=batch):
                return reinforce_loss(
                    p,
                    batch,
                    policy_apply=policy_apply,
                    dist=Categorical(),
                    value_apply=None if critic is None else value_apply,
                )[0]

            grads = torch.func.grad(loss)(params)
            out.append(-grads["actor"] * scale)
    return torch.stack(plain), torch.stack(based)
