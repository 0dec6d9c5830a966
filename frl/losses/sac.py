"""Soft actor-critic (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905) with N critics
as an ensemble dim (2 = twin critics; 10 with a target subset = REDQ, Chen et al. 2021,
https://arxiv.org/abs/2101.05982), and its discrete-action form (Christodoulou 2019,
https://arxiv.org/abs/1910.07207)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.func import vmap

from frl import random
from frl.distributions import TanhGaussian
from frl.losses import _batch as B
from frl.losses.policy_terms import soft_policy_loss, temperature_loss
from frl.losses.value_terms import soft_target
from frl.tree import assemble

__all__ = ["discrete_sac_loss", "sac_loss"]


def _critics(critic_apply: Callable, critic_params: TensorDictBase, *inputs: Tensor) -> Tensor:
    """All critics on the same inputs: ``[N, ...]``."""
    if critic_params.batch_dims == 0:
        raise ValueError("sac_loss: critic params need a leading ensemble dim [N] (frl.nn.Ensemble)")
    return vmap(critic_apply, in_dims=(0, *([None] * len(inputs))))(critic_params, *inputs)


def _target_min(q: Tensor, subset: int | None, key: Tensor | None, owner: str) -> Tensor:
    """``min`` over all critics, or over a random subset of ``subset`` of them (REDQ)."""
    if subset is None:
        return q.min(dim=0).values
    if key is None:
        raise ValueError(f"{owner}: `target_subset` needs a `key` to pick the critics")
    chosen = random.choice(key, q.shape[0], (subset,), replace=False)
    return q.index_select(0, chosen).min(dim=0).values


def _critic_loss(q: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """``sum_i mean_b w_b (Q_i(s_b, a_b) - y_b)^2`` over the ensemble dim of ``q`` ``[N, B]``
    (``w``: prioritized-replay importance weights ``[B]``, or 1)."""
    squared = (q - target) ** 2
    if weight is not None:
        squared = squared * weight.to(squared.dtype)
    return squared.mean(dim=-1).sum()


def _metrics(
    critic_loss: Tensor, actor_loss: Tensor, alpha_loss: Tensor, alpha: Tensor, entropy: Tensor, q: Tensor
):
    loss = critic_loss + actor_loss + alpha_loss
    metrics = assemble(
        {
            "loss": loss.detach(),
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha,
            "entropy": entropy,
            "q": q.detach().mean(),
        },
    )
    return loss, metrics


def sac_loss(
    actor_params: TensorDictBase,
    critic_params: TensorDictBase,
    target_critic_params: TensorDictBase,
    log_alpha: Tensor,
    batch: TensorDictBase,
    *,
    actor_apply: Callable[[TensorDictBase, Tensor], tuple[Tensor, Tensor]],
    critic_apply: Callable[[TensorDictBase, Tensor, Tensor], Tensor],
    gamma: float | Tensor,
    target_entropy: float | Tensor,
    dist: TanhGaussian | None = None,
    target_subset: int | None = None,
    key: Tensor | None = None,
    noise: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, TensorDict]:
    """SAC's three losses, summed; stop-gradients route each to its own params.

    With ``alpha = exp(log_alpha)``, ``a' ~ pi(.|s')`` and ``a~ ~ pi(.|s)`` reparameterised:

    * critics: ``sum_i mean(w (Q_i(s, a) - y)^2)`` (``w``: the batch's prioritized-replay
      weights ``_weight [B]`` when it has them, else 1) with
      ``y = soft_target(r, terminated, min_j Q'_j(s', a'), log pi(a'|s'))``
      (target critics ``Q'``; ``min`` over ``target_subset`` random critics for REDQ);
    * actor: ``soft_policy_loss(log pi(a~|s), min_i Q_i(s, a~), alpha)`` (critics detached);
    * temperature: ``temperature_loss(log_alpha, log pi(a~|s), target_entropy)``.

    Args:
      actor_params: the policy's params.
      critic_params: the critics' params, stacked ``[N]`` (``frl.nn.Ensemble``).
      target_critic_params: the target critics' params ``[N]`` (detached here).
      log_alpha: the temperature's log, 0-d.
      batch: ``observation``, ``action [B, D]``, ``next.{observation, reward [B], terminated [B]}``;
        optionally ``steps_to_next_obs [B]`` (n-step) and ``_weight [B]``.
      actor_apply: ``(actor_params, obs) -> (mean, log_std)`` of the pre-tanh Gaussian.
      critic_apply: ``(one_critic_params, obs, action) -> [B]``.
      gamma: discount.
      target_entropy: usually ``-action_dim``.
      dist: the squashing (action bounds); default ``TanhGaussian()`` on ``[-1, 1]``.
      target_subset: REDQ's number of target critics to minimise over (``None``: all).
      key: draws the two actions (and the REDQ subset).
      noise: ``(eps_next, eps)`` standard-normal noise ``[B, D]`` instead of ``key``.

    Returns:
      ``(loss, metrics)``; metrics ``loss``, ``critic_loss``, ``actor_loss``, ``alpha_loss``,
      ``alpha``, ``entropy`` (``-mean log pi``), ``q``.
    """
    owner = "sac_loss"
    dist = TanhGaussian() if dist is None else dist
    obs, action, next_obs, reward, terminated, steps = B.transition(batch, owner)
    alpha = torch.exp(log_alpha).detach()
    next_dist = actor_apply(actor_params.detach(), next_obs)
    now_dist = actor_apply(actor_params, obs)
    if noise is None:
        if key is None:
            raise ValueError(f"{owner}: pass a `key` (or the `noise`) to sample actions")
        key, k_next, k_now = random.split(key, 3)
        noise = (
            random.normal(k_next, tuple(next_dist[0].shape), next_dist[0].dtype),
            random.normal(k_now, tuple(now_dist[0].shape), now_dist[0].dtype),
        )
    next_action, next_log_prob = dist.sample_and_log_prob_from_noise(next_dist, noise[0])
    new_action, log_prob = dist.sample_and_log_prob_from_noise(now_dist, noise[1])
    B.check_transition(owner, log_prob.shape, batch, reward, terminated, steps)
    weight = B.weights(batch)

    target_q = _critics(critic_apply, target_critic_params.detach(), next_obs, next_action)
    next_q = _target_min(target_q, target_subset, key, owner)
    target = soft_target(reward, terminated, next_q, next_log_prob, alpha=alpha, gamma=gamma, steps=steps)
    q = _critics(critic_apply, critic_params, obs, action)
    critic_loss = _critic_loss(q, target, weight)

    q_new = _critics(critic_apply, critic_params.detach(), obs, new_action).min(dim=0).values
    actor_loss = soft_policy_loss(log_prob, q_new, alpha)
    alpha_loss = temperature_loss(log_alpha, log_prob, target_entropy)
    return _metrics(critic_loss, actor_loss, alpha_loss, alpha, -log_prob.detach().mean(), q)


def discrete_sac_loss(
    actor_params: TensorDictBase,
    critic_params: TensorDictBase,
    target_critic_params: TensorDictBase,
    log_alpha: Tensor,
    batch: TensorDictBase,
    *,
    actor_apply: Callable[[TensorDictBase, Tensor], Tensor],
    critic_apply: Callable[[TensorDictBase, Tensor], Tensor],
    gamma: float | Tensor,
    target_entropy: float | Tensor,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """SAC for discrete actions: expectations over the policy replace samples.

    With ``p = softmax(logits)``:

    * critics: ``sum_i mean((Q_i(s, a) - y)^2)``, ``y = soft_target`` with the expectation
      ``sum_a' p(a'|s') (min_j Q'_j(s', a') - alpha log p(a'|s'))``;
    * actor: ``soft_policy_loss`` with the expectation ``sum_a p(a|s) (alpha log p(a|s) - min_i Q_i(s, a))``;
    * temperature: ``temperature_loss(log_alpha, sum_a p log p, target_entropy)``; the usual
      target is ``0.89 log A`` (Christodoulou's ``0.98 * max entropy`` is often too high).

    Args:
      actor_params, critic_params, target_critic_params, log_alpha: as :func:`sac_loss`.
      batch: as :func:`sac_loss` with integer ``action [B]``.
      actor_apply: ``(actor_params, obs) -> logits [B, A]``.
      critic_apply: ``(one_critic_params, obs) -> [B, A]``.
      gamma, target_entropy: as :func:`sac_loss`.
      key: unused (no sampling); accepted for a uniform signature.

    Returns:
      ``(loss, metrics)`` as :func:`sac_loss`.
    """
    owner = "discrete_sac_loss"
    obs, action, next_obs, reward, terminated, steps = B.transition(batch, owner)
    alpha = torch.exp(log_alpha).detach()

    next_log_p = torch.log_softmax(actor_apply(actor_params.detach(), next_obs), dim=-1)
    target_q = _critics(critic_apply, target_critic_params.detach(), next_obs).min(dim=0).values
    B.check_transition(owner, target_q.shape[:-1], batch, reward, terminated, steps)
    B.check_per_sample(owner, target_q.shape[:-1], action=action)
    weight = B.weights(batch)
    target = soft_target(
        reward,
        terminated,
        target_q,
        next_log_p,
        alpha=alpha,
        gamma=gamma,
        next_probs=torch.exp(next_log_p),
        steps=steps,
    )
    q_all = _critics(critic_apply, critic_params, obs)
    q = torch.gather(q_all, -1, action.long().expand(q_all.shape[0], *action.shape).unsqueeze(-1)).squeeze(-1)
    critic_loss = _critic_loss(q, target, weight)

    log_p = torch.log_softmax(actor_apply(actor_params, obs), dim=-1)
    p = torch.exp(log_p)
    q_pi = _critics(critic_apply, critic_params.detach(), obs).min(dim=0).values
    actor_loss = soft_policy_loss(log_p, q_pi, alpha, probs=p)
    neg_entropy = (p * log_p).sum(-1)
    alpha_loss = temperature_loss(log_alpha, neg_entropy, target_entropy)
    return _metrics(critic_loss, actor_loss, alpha_loss, alpha, -neg_entropy.detach().mean(), q)
