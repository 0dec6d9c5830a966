"""RL fine-tuning losses for sequences: token-level PPO with a KL penalty, GRPO and RLOO.

A batch holds ``B`` sampled responses of ``N`` tokens (right-padded), as a TensorDict:
``mask [B, N]`` (real tokens), ``old_log_prob [B, N]`` (the sampling policy's), and what each
loss needs (``advantage``, ``value_target``, ``state_value``, ``ref_log_prob``). The current
policy's per-token log-probabilities (and values) come from ``log_prob_fn(params, batch)``, so
the losses work for any model: with :class:`~frl.llm.model.Transformer`, run it on prompt +
response and take :func:`token_log_probs` of the response part. Masked means are over real
tokens only. Each loss returns ``(loss, metrics)`` like ``frl.losses``.

* PPO with a KL penalty (Ziegler et al. 2019, InstructGPT, TRL): per-token rewards
  ``r_t = -beta (log pi_old - log pi_ref)_t`` plus the sequence reward on the last real token
  (:func:`kl_penalized_rewards`); GAE over tokens, advantages whitened over the batch
  (:func:`token_advantages`); clipped surrogate and clipped value loss (:func:`ppo_kl_loss`).
* GRPO (Shao et al. 2024, DeepSeekMath): ``A_i = (R_i - mean_group R) / (std_group R + eps)``
  for every token of response ``i`` (:func:`group_advantages`); clipped surrogate per token and
  the k3 estimator ``KL = exp(ref - logp) - (ref - logp) - 1`` toward the reference, averaged
  per sequence then over sequences (:func:`grpo_loss`).
* RLOO (Ahmadian et al. 2024): ``A_i = R_i - mean_{j != i} R_j`` within each group of ``K``
  samples (:func:`leave_one_out_advantages`), REINFORCE on the sequence log-probability
  (:func:`rloo_loss`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.returns import gae

__all__ = [
    "group_advantages",
    "grpo_loss",
    "kl_penalized_rewards",
    "leave_one_out_advantages",
    "masked_mean",
    "ppo_kl_loss",
    "rloo_loss",
    "token_advantages",
    "token_log_probs",
    "whiten",
]

LogProbFn = Callable[[TensorDictBase, TensorDictBase], Tensor | tuple[Tensor, Tensor]]


def token_log_probs(logits: Tensor, tokens: Tensor) -> Tensor:
    """``log softmax(logits)[t, tokens[t]]``: ``[..., N, V], [..., N] -> [..., N]``."""
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is True (all dims, or ``dim``)."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp_min(1.0)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the masked entries (``shift_mean=False`` keeps the mean)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * mask.to(x.dtype)


def _last_token(mask: Tensor) -> Tensor:
    """One-hot ``[B, N]`` at each row's last real token."""
    positions = torch.arange(mask.shape[-1], device=mask.device)
    last = (mask.to(torch.int64) * (positions + 1)).amax(-1, keepdim=True) - 1
    return (positions == last) & mask


def kl_penalized_rewards(
    reward: Tensor, log_prob: Tensor, ref_log_prob: Tensor, mask: Tensor, kl_coef: float | Tensor
) -> Tensor:
    """Per-token rewards ``-kl_coef (log_prob - ref_log_prob)``, plus ``reward [B]`` at the last real
    token: ``[B, N]`` (0 on padding)."""
    penalty = -kl_coef * (log_prob - ref_log_prob)
    return (penalty + reward.unsqueeze(-1) * _last_token(mask).to(penalty.dtype)) * mask.to(penalty.dtype)


def token_advantages(
    token_rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    *,
    gamma: float | Tensor = 1.0,
    lmbda: float | Tensor = 0.95,
    whiten_advantages: bool = True,
) -> tuple[Tensor, Tensor]:
    """GAE over the tokens of each response (the episode ends after the last real token):
    ``(advantage [B, N], value_target [B, N])``; advantages whitened over real tokens."""
    m = mask.to(values.dtype)
    values = values * m
    next_value = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    end = _last_token(mask) | ~mask
    advantage, target = gae(token_rewards * m, values, next_value, end, end, gamma=gamma, lmbda=lmbda)
    if whiten_advantages:
        advantage = whiten(advantage, mask)
    return advantage * m, target * m


def _ratio(log_prob: Tensor, old_log_prob: Tensor) -> tuple[Tensor, Tensor]:
    log_ratio = log_prob - old_log_prob
    return torch.exp(log_ratio), log_ratio


def ppo_kl_loss(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    log_prob_fn: LogProbFn,
    clip_eps: float | Tensor = 0.2,
    value_clip_eps: float | Tensor = 0.2,
    value_coef: float | Tensor = 0.1,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """Token-level PPO: ``L = -mean_t min(r A, clip(r, 1-e, 1+e) A) + value_coef L_V``.

    ``L_V = mean_t max((V - R)^2, (V_old + clip(V - V_old, -e_v, e_v) - R)^2) / 2``; means over
    real tokens. ``log_prob_fn(params, batch) -> (log_prob [B, N], value [B, N])``; the batch has
    ``mask``, ``old_log_prob``, ``advantage``, ``value_target``, ``state_value`` (from
    :func:`kl_penalized_rewards` and :func:`token_advantages`).
    """
    mask = batch["mask"]
    log_prob, value = log_prob_fn(params, batch)
    ratio, log_ratio = _ratio(log_prob, batch["old_log_prob"])
    advantage = batch["advantage"]
    surrogate = torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantage)
    policy_loss = -masked_mean(surrogate, mask)
    old_value, target = batch["state_value"], batch["value_target"]
    clipped = old_value + torch.clamp(value - old_value, -value_clip_eps, value_clip_eps)
    value_loss = 0.5 * masked_mean(torch.maximum((value - target) ** 2, (clipped - target) ** 2), mask)
    loss = policy_loss + value_coef * value_loss
    with torch.no_grad():
        metrics = {
            "loss": loss.detach(),
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask).detach(),
            "clip_fraction": masked_mean(((ratio - 1).abs() > clip_eps).to(ratio.dtype), mask).detach(),
        }
    return loss, TensorDict(metrics, batch_size=[])


def group_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """GRPO: ``(R - mean_group R) / (std_group R + eps)`` for ``rewards [..., K]`` (groups last)."""
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, keepdim=True)
    return (rewards - mean) / (std + eps)


def leave_one_out_advantages(rewards: Tensor) -> Tensor:
    """RLOO: ``R_i - mean_{j != i} R_j = K / (K - 1) (R_i - mean R)`` for ``rewards [..., K]``."""
    K = rewards.shape[-1]
    if K < 2:
        raise ValueError(f"leave_one_out_advantages: need at least 2 samples per group, got {K}")
    return (rewards * K - rewards.sum(-1, keepdim=True)) / (K - 1)


def grpo_loss(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    log_prob_fn: LogProbFn,
    clip_eps: float | Tensor = 0.2,
    kl_coef: float | Tensor = 0.04,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """GRPO: ``L = -mean_i mean_t [min(r A_i, clip(r) A_i) - kl_coef KL3_t]`` (means over each
    response's real tokens, then over responses).

    ``KL3 = exp(ref - logp) - (ref - logp) - 1`` (>= 0, unbiased for KL(pi || pi_ref)). The
    batch has ``mask``, ``old_log_prob``, ``ref_log_prob`` and ``advantage [B]`` (one per
    response, :func:`group_advantages`); ``log_prob_fn(params, batch) -> log_prob [B, N]``.
    """
    mask = batch["mask"]
    out = log_prob_fn(params, batch)
    log_prob = out[0] if isinstance(out, tuple) else out
    ratio, log_ratio = _ratio(log_prob, batch["old_log_prob"])
    advantage = batch["advantage"].unsqueeze(-1)
    surrogate = torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantage)
    diff = batch["ref_log_prob"] - log_prob
    kl = torch.exp(diff) - diff - 1
    per_sequence = masked_mean(surrogate - kl_coef * kl, mask, dim=-1)
    loss = -per_sequence.mean()
    with torch.no_grad():
        metrics = {
            "loss": loss.detach(),
            "kl": masked_mean(kl, mask).detach(),
            "clip_fraction": masked_mean(((ratio - 1).abs() > clip_eps).to(ratio.dtype), mask).detach(),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask).detach(),
        }
    return loss, TensorDict(metrics, batch_size=[])


def rloo_loss(
    params: TensorDictBase,
    batch: TensorDictBase,
    *,
    log_prob_fn: LogProbFn,
    key: Tensor | None = None,
) -> tuple[Tensor, TensorDict]:
    """RLOO: ``L = -mean_i A_i sum_t log pi(y_i,t)`` over real tokens, ``A_i`` from
    :func:`leave_one_out_advantages` (``advantage [B]`` in the batch, KL penalty already folded
    into the rewards if wanted)."""
    mask = batch["mask"]
    out = log_prob_fn(params, batch)
    log_prob = out[0] if isinstance(out, tuple) else out
    sequence_log_prob = (log_prob * mask.to(log_prob.dtype)).sum(-1)
    loss = -(batch["advantage"].detach() * sequence_log_prob).mean()
    with torch.no_grad():
        metrics = {"loss": loss.detach(), "sequence_log_prob": sequence_log_prob.mean().detach()}
    return loss, TensorDict(metrics, batch_size=[])
