"""Proximal policy optimization with the clipped surrogate (Schulman et al. 2017,
https://arxiv.org/abs/1707.06347), as CleanRL's ``ppo.py`` computes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.distributions import Distribution
from frl.losses import _batch as B
from frl.losses.policy_terms import clipped_surrogate, entropy_bonus
from frl.losses.value_terms import clipped_value_loss, value_loss
from frl.tree import assemble

__all__ = ["clipped_objective", "explained_variance", "normalize", "ppo_loss", "recurrent_ppo_loss"]


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean(x)) / (std(x) + eps)`` over all elements (unbiased std, as CleanRL)."""
    return (x - x.mean()) / (x.std() + eps)


def explained_variance(prediction: Tensor, target: Tensor) -> Tensor:
    """``1 - Var(target - prediction) / Var(target)``: 1 is perfect, 0 no better than a constant."""
    var_target = torch.var(target, correction=0)
    return 1.0 - torch.var(target - prediction, correction=0) / (var_target + torch.finfo(target.dtype).eps)


def ppo_loss(
    actor_params: TensorDictBase,
    critic_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    policy_apply: Callable[[TensorDictBase, Tensor], Any],
    value_apply: Callable[[TensorDictBase, Tensor], Tensor],
    dist: Distribution,
    clip_eps: float | Tensor = 0.2,
    value_clip_eps: float | Tensor | None = None,
    entropy_coef: float | Tensor = 0.0,
    value_coef: float | Tensor = 0.5,
    normalize_advantage: bool = True,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """The PPO-clip loss ``L = L_pi + value_coef L_V + entropy_coef L_H``, from three primitives.

    With ``r = exp(log pi(a|s) - log pi_old(a|s))`` and advantages ``A`` (normalised per
    minibatch when ``normalize_advantage``):

    * ``L_pi = clipped_surrogate(r, A, eps) = -mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``;
    * ``L_V = value_loss(V, V_target) = mean((V(s) - V_target)^2) / 2``, or with
      ``value_clip_eps`` the pessimistic :func:`~frl.losses.clipped_value_loss`;
    * ``L_H = entropy_bonus(H) = -mean(entropy(pi(.|s)))``.

    Args:
      actor_params: the policy's params (read by ``policy_apply`` only).
      critic_params: the value function's params (read by ``value_apply`` only).
      batch: ``observation``, ``action``, ``action_log_prob [B]`` (behaviour policy),
        ``advantage [B]``, ``value_target [B]``, and ``state_value [B]`` (old values, needed
        for value clipping).
      policy_apply: ``(actor_params, obs) -> distribution params`` for ``dist``.
      value_apply: ``(critic_params, obs) -> [B]``.
      dist: the policy's family, e.g. ``Categorical()`` or ``DiagGaussian()``.
      clip_eps, value_clip_eps, entropy_coef, value_coef: coefficients (floats or 0-d tensors).
      normalize_advantage: standardise advantages within the minibatch.
      key: unused; accepted for a uniform signature.

    Returns:
      ``(loss, metrics)``; metrics ``loss``, ``policy_loss``, ``value_loss``, ``entropy``,
      ``approx_kl`` (``mean((r - 1) - log r)``, Schulman's low-variance estimator),
      ``clip_fraction`` and ``explained_variance``.
    """
    owner = "ppo_loss"
    obs = B.get(batch, B.OBS, owner)
    coefs = dict(clip_eps=clip_eps, value_clip_eps=value_clip_eps, entropy_coef=entropy_coef)
    coefs.update(value_coef=value_coef, normalize_advantage=normalize_advantage)
    return _objective(
        owner, batch, dist, policy_apply(actor_params, obs), lambda: value_apply(critic_params, obs), **coefs
    )


def _objective(
    owner: str,
    batch: TensorDictBase,
    dist: Distribution,
    dist_params: Any,
    values: Callable[[], Tensor],
    *,
    value_clip_eps: float | Tensor | None,
    **coefs: Any,
) -> tuple[Tensor, TensorDict]:
    """:func:`clipped_objective` of a batch whose policy gave ``dist_params`` (``values()`` the
    value function's output), every per-sample entry checked against the log-probabilities' shape."""
    action, old_log_prob = B.get(batch, B.ACTION, owner), B.get(batch, B.LOG_PROB, owner)
    advantage, value_target = B.get(batch, B.ADVANTAGE, owner), B.get(batch, B.VALUE_TARGET, owner)
    log_prob = dist.log_prob(dist_params, action)
    B.check_per_sample(
        owner, log_prob.shape, action_log_prob=old_log_prob, advantage=advantage, value_target=value_target
    )
    value = values()
    B.check_output(owner, "value_apply", log_prob.shape, value)
    old_value = None
    if value_clip_eps is not None:
        old_value = B.get(batch, B.STATE_VALUE, owner)
        B.check_per_sample(owner, log_prob.shape, state_value=old_value)
    entropy = dist.entropy(dist_params)
    return clipped_objective(
        log_prob,
        old_log_prob,
        advantage,
        value,
        value_target,
        entropy,
        old_value=old_value,
        value_clip_eps=value_clip_eps,
        **coefs,
    )


def recurrent_ppo_loss(
    actor_params: TensorDictBase,
    critic_params: TensorDictBase,
    batch: TensorDictBase,
    *,
    policy_apply: Callable[[TensorDictBase, Tensor, Tensor, Tensor], Any],
    value_apply: Callable[[TensorDictBase, Tensor, Tensor, Tensor], Tensor],
    dist: Distribution,
    clip_eps: float | Tensor = 0.2,
    value_clip_eps: float | Tensor | None = None,
    entropy_coef: float | Tensor = 0.0,
    value_coef: float | Tensor = 0.5,
    normalize_advantage: bool = True,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """:func:`ppo_loss` over sequences: the recurrent policy and value are replayed along each
    sequence from the carries stored at its first step (truncated backpropagation through the
    sequence), zeroed where an episode starts; then the same objective (:func:`clipped_objective`)
    over every step of every sequence.

    Args:
      actor_params, critic_params: the recurrent policy's and value function's params.
      batch: sequences ``[B, L]``: ``observation [B, L, ...]``, ``action``, ``action_log_prob``,
        ``advantage``, ``value_target``, ``state_value`` ``[B, L]``, ``is_init`` (bool ``[B, L]``,
        true at an episode's first step) and ``recurrent_state``: ``actor`` and ``critic``
        carries ``[B, L, S]`` (only step 0's are read).
      policy_apply: ``(actor_params, obs [B, L, ...], carry [B, S], starts [B, L]) -> dist
        params [B, L, ...]`` (e.g. ``RecurrentNetwork.sequence``'s first output).
      value_apply: the same for values ``[B, L]``.
      dist, clip_eps, value_clip_eps, entropy_coef, value_coef, normalize_advantage, key: as
        :func:`ppo_loss`.

    Returns:
      ``(loss, metrics)`` as :func:`ppo_loss`.
    """
    owner = "recurrent_ppo_loss"
    if batch.batch_dims != 2:
        raise ValueError(
            f"{owner}: `batch` must hold sequences [B, L], got batch_size {list(batch.batch_size)}"
        )
    obs, starts = B.get(batch, B.OBS, owner), B.get(batch, "is_init", owner)
    actor_carry, critic_carry = (
        B.get(batch, ("recurrent_state", k), owner)[:, 0] for k in ("actor", "critic")
    )
    coefs = dict(clip_eps=clip_eps, value_clip_eps=value_clip_eps, entropy_coef=entropy_coef)
    coefs.update(value_coef=value_coef, normalize_advantage=normalize_advantage)
    dist_params = policy_apply(actor_params, obs, actor_carry, starts)
    return _objective(
        owner,
        batch,
        dist,
        dist_params,
        lambda: value_apply(critic_params, obs, critic_carry, starts),
        **coefs,
    )


def clipped_objective(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantage: Tensor,
    value: Tensor,
    value_target: Tensor,
    entropy: Tensor,
    *,
    old_value: Tensor | None = None,
    clip_eps: float | Tensor = 0.2,
    value_clip_eps: float | Tensor | None = None,
    entropy_coef: float | Tensor = 0.0,
    value_coef: float | Tensor = 0.5,
    normalize_advantage: bool = True,
) -> tuple[Tensor, TensorDict]:
    """PPO's objective from per-sample terms of any shape ``[...]`` (``[B]``, or ``[B, n]`` over
    agents): ``clipped_surrogate(exp(log_prob - old_log_prob), A, eps) + value_coef L_V +
    entropy_coef entropy_bonus(entropy)``, ``L_V`` the plain or (with ``value_clip_eps`` and
    ``old_value``) the clipped value loss, advantages normalised over all elements when
    ``normalize_advantage``. Returns ``(loss, metrics)`` as :func:`ppo_loss`."""
    if normalize_advantage:
        advantage = normalize(advantage)
    log_ratio = log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    policy_loss = clipped_surrogate(ratio, advantage, clip_eps)
    if value_clip_eps is None:
        v_loss = value_loss(value, value_target)
    else:
        v_loss = clipped_value_loss(value, old_value, value_target, value_clip_eps)
    loss = policy_loss + value_coef * v_loss + entropy_coef * entropy_bonus(entropy)

    with torch.no_grad():
        metrics = assemble(
            {
                "loss": loss.detach(),
                "policy_loss": policy_loss.detach(),
                "value_loss": v_loss.detach(),
                "entropy": entropy.detach().mean(),
                "approx_kl": ((ratio - 1.0) - log_ratio).mean().detach(),
                "clip_fraction": ((ratio - 1.0).abs() > clip_eps).to(ratio.dtype).mean().detach(),
                "explained_variance": explained_variance(value.detach(), value_target),
            },
        )
    return loss, metrics
