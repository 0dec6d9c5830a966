"""Policy distributions as pure functions of their parameters, sampled from ``frl.random`` keys.

A distribution family is a stateless frozen dataclass; its parameters are tensors produced by a
network head (``frl.nn``):

==========================  ===========================  ========================================
family                      parameters                   actions
==========================  ===========================  ========================================
:class:`Categorical`        ``logits [..., A]``          ``int64 [...]``
:class:`MultiCategorical`   ``logits [..., sum(nvec)]``  ``int64 [..., K]``
:class:`MaskedCategorical`  ``(logits, mask)``           ``int64 [...]`` (never a masked action)
:class:`PlackettLuce`       ``scores [..., N]``          ``int64 [..., k]`` (a slate)
:class:`DiagGaussian`       ``(mean, log_std)``          ``[..., D]``
:class:`TanhGaussian`       ``(mean, log_std)``          ``tanh(u) * scale + bias``, ``[..., D]``
==========================  ===========================  ========================================

Every method is a pure tensor function (``vmap``, ``compile`` and ``grad`` safe); sampling
takes a key, so a draw is a deterministic function of its inputs. Gaussian samples are
reparameterised (``mean + std * eps``), so gradients flow to the parameters.
:func:`epsilon_greedy` selects actions from Q-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from frl import random

__all__ = [
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "MaskedCategorical",
    "MultiCategorical",
    "PlackettLuce",
    "TanhGaussian",
    "epsilon_greedy",
    "greedy",
    "mask_logits",
    "select_actions",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG2 = math.log(2.0)


def select_actions(values: Tensor, action: Tensor, owner: str) -> Tensor:
    """``values[..., action]``: per-action values ``[..., A]`` at integer actions ``[...]``."""
    if action.dtype.is_floating_point:
        raise TypeError(f"{owner}: `action` must hold integer action indices, got {action.dtype}")
    if action.shape != values.shape[:-1]:
        raise ValueError(
            f"{owner}: `action` must have the batch shape {list(values.shape[:-1])} (indices, not one-hot), "
            f"got {list(action.shape)}"
        )
    return torch.gather(values, -1, action.long().unsqueeze(-1)).squeeze(-1)


class Distribution(Protocol):
    """What losses need from a policy distribution family."""

    def log_prob(self, params, action: Tensor) -> Tensor: ...

    def entropy(self, params) -> Tensor: ...

    def sample(self, key: Tensor, params) -> Tensor: ...

    def mode(self, params) -> Tensor: ...


@dataclass(frozen=True)
class Categorical:
    """A categorical distribution over ``A`` actions with unnormalised ``logits [..., A]``."""

    def log_prob(self, logits: Tensor, action: Tensor) -> Tensor:
        """``log softmax(logits)[action]``: ``[..., A], int [...] -> [...]``."""
        return select_actions(torch.log_softmax(logits, dim=-1), action, "Categorical.log_prob")

    def probs(self, logits: Tensor) -> Tensor:
        """``softmax(logits)``: ``[..., A]``."""
        return torch.softmax(logits, dim=-1)

    def entropy(self, logits: Tensor) -> Tensor:
        """``-sum_a p(a) log p(a)``: ``[...]``."""
        log_p = torch.log_softmax(logits, dim=-1)
        return -(torch.exp(log_p) * log_p).sum(-1)

    def sample(self, key: Tensor, logits: Tensor) -> Tensor:
        """A draw per batch element (Gumbel-max, as ``jax.random.categorical``): ``int64 [...]``."""
        return random.categorical(key, logits)

    def mode(self, logits: Tensor) -> Tensor:
        """The most likely action: ``int64 [...]``."""
        return torch.argmax(logits, dim=-1)

    def kl(self, p_logits: Tensor, q_logits: Tensor) -> Tensor:
        """``KL(p || q) = sum_a p(a) (log p(a) - log q(a))``: ``[...]``."""
        log_p = torch.log_softmax(p_logits, dim=-1)
        log_q = torch.log_softmax(q_logits, dim=-1)
        return (torch.exp(log_p) * (log_p - log_q)).sum(-1)


def mask_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """``logits`` where ``mask`` is true, the dtype's lowest finite value elsewhere: ``[..., A]``.

    A masked action then has probability exactly 0 under ``softmax`` (``exp(min - max)``
    underflows) and loses every Gumbel-max draw, while ``0 * log p`` stays finite (``-inf``
    would give ``nan`` entropies and gradients). A row with no legal action is the caller's
    error; it then behaves as an unmasked uniform row.
    """
    if mask.dtype != torch.bool:
        raise TypeError(f"mask_logits: `mask` must be a bool tensor, got {mask.dtype}")
    if mask.shape != logits.shape:
        raise ValueError(
            f"mask_logits: `mask` must have the logits' shape {list(logits.shape)}, got {list(mask.shape)}"
        )
    return torch.where(mask, logits, torch.finfo(logits.dtype).min)


@dataclass(frozen=True)
class MaskedCategorical:
    """A categorical over the legal actions only: parameters ``(logits [..., A], mask bool [..., A])``
    (``True``: legal), as SMAC-style environments give with every observation. Every method is
    :class:`Categorical`'s on :func:`mask_logits`: masked actions have probability 0, are never
    sampled nor chosen by :meth:`mode`, and add nothing to the entropy."""

    def log_prob(self, params: tuple[Tensor, Tensor], action: Tensor) -> Tensor:
        """``log pi(a)`` over the legal actions: ``int [...] -> [...]``."""
        return _CATEGORICAL.log_prob(mask_logits(*params), action)

    def probs(self, params: tuple[Tensor, Tensor]) -> Tensor:
        """``[..., A]``, zero at masked actions."""
        return _CATEGORICAL.probs(mask_logits(*params))

    def entropy(self, params: tuple[Tensor, Tensor]) -> Tensor:
        """``-sum_{legal a} p(a) log p(a)``: ``[...]``."""
        return _CATEGORICAL.entropy(mask_logits(*params))

    def sample(self, key: Tensor, params: tuple[Tensor, Tensor]) -> Tensor:
        """A legal action per batch element (Gumbel-max): ``int64 [...]``."""
        return _CATEGORICAL.sample(key, mask_logits(*params))

    def mode(self, params: tuple[Tensor, Tensor]) -> Tensor:
        """The most likely legal action: ``int64 [...]``."""
        return _CATEGORICAL.mode(mask_logits(*params))

    def kl(self, p: tuple[Tensor, Tensor], q: tuple[Tensor, Tensor]) -> Tensor:
        """``KL(p || q)`` over ``p``'s legal actions: ``[...]``."""
        return _CATEGORICAL.kl(mask_logits(*p), mask_logits(*q))


@dataclass(frozen=True)
class MultiCategorical:
    """``K = len(nvec)`` independent categoricals, one per action dim (gymnasium's
    ``MultiDiscrete``; ``MultiBinary`` is ``nvec = (2,) * K``, a Bernoulli per dim written as two
    logits). The logits of the dims are concatenated: ``[..., sum(nvec)]``, dim ``i`` owning
    ``nvec[i]`` of them in order. The policy factorises, so
    ``log pi(a) = sum_i log softmax(l_i)[a_i]`` and ``H = sum_i H_i``.
    """

    nvec: tuple[int, ...]

    def __post_init__(self) -> None:
        nvec = tuple(self.nvec)
        if not nvec or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in nvec):
            raise ValueError(
                f"MultiCategorical: `nvec` must be a non-empty tuple of positive ints, got {self.nvec!r}"
            )
        object.__setattr__(self, "nvec", nvec)

    def _split(self, logits: Tensor, owner: str) -> tuple[Tensor, ...]:
        if logits.shape[-1] != sum(self.nvec):
            raise ValueError(
                f"{owner}: `logits` must end in sum(nvec) = {sum(self.nvec)} (nvec {list(self.nvec)}), "
                f"got {list(logits.shape)}"
            )
        return torch.split(logits, list(self.nvec), dim=-1)

    def log_prob(self, logits: Tensor, action: Tensor) -> Tensor:
        """``sum_i log softmax(l_i)[a_i]``: ``[..., sum(nvec)], int [..., K] -> [...]``."""
        owner = "MultiCategorical.log_prob"
        parts = self._split(logits, owner)
        if action.shape[-1:] != (len(self.nvec),):
            raise ValueError(f"{owner}: `action` must end in K = {len(self.nvec)}, got {list(action.shape)}")
        terms = [
            select_actions(torch.log_softmax(part, dim=-1), action[..., i], owner)
            for i, part in enumerate(parts)
        ]
        return torch.stack(terms, -1).sum(-1)

    def entropy(self, logits: Tensor) -> Tensor:
        """``sum_i H(softmax(l_i))``: ``[...]``."""
        return torch.stack(
            [Categorical().entropy(p) for p in self._split(logits, "MultiCategorical")], -1
        ).sum(-1)

    def sample(self, key: Tensor, logits: Tensor) -> Tensor:
        """One draw per dim, each from its own key (``split(key, K)``): ``int64 [..., K]``."""
        parts = self._split(logits, "MultiCategorical.sample")
        keys = random.split(key, len(parts))
        return torch.stack([random.categorical(keys[i], p) for i, p in enumerate(parts)], -1)

    def mode(self, logits: Tensor) -> Tensor:
        """The most likely action of every dim: ``int64 [..., K]``."""
        return torch.stack(
            [torch.argmax(p, dim=-1) for p in self._split(logits, "MultiCategorical.mode")], -1
        )

    def kl(self, p_logits: Tensor, q_logits: Tensor) -> Tensor:
        """``sum_i KL(p_i || q_i)``: ``[...]``."""
        pairs = zip(
            self._split(p_logits, "MultiCategorical"), self._split(q_logits, "MultiCategorical"), strict=True
        )
        return torch.stack([Categorical().kl(p, q) for p, q in pairs], -1).sum(-1)


_CATEGORICAL = Categorical()


def _one_hot(index: Tensor, like: Tensor) -> Tensor:
    """``index [...]`` one-hot over ``like``'s last dim, in its dtype (``F.one_hot`` reads the
    max index, which ``vmap`` cannot): ``[..., N]``."""
    items = torch.arange(like.shape[-1], device=like.device)
    return (index.long().unsqueeze(-1) == items).to(like.dtype)


def _without(scores: Tensor, taken: Tensor) -> Tensor:
    """``scores [..., N]`` once per position ``[..., k, N]``, the items ``taken`` earlier set to
    a finite floor far below any score (``-inf`` would make ``0 * log 0`` and its gradient NaN)."""
    floor = torch.finfo(scores.dtype).min / 4
    return scores.unsqueeze(-2).masked_fill(taken > 0, floor)


@dataclass(frozen=True)
class PlackettLuce:
    """Ordered slates of ``k`` distinct items out of ``N``, drawn by the Plackett-Luce model:
    item after item without replacement, each with probability ``softmax`` of the scores of the
    items left (Plackett 1975; Luce 1959). For a slate ``a = (a_1, ..., a_k)``::

        log pi(a) = sum_i [ s_{a_i} - log sum_{j not in a_<i} exp(s_j) ]

    Sampling perturbs the scores with Gumbel noise and takes the top ``k`` in order (exactly
    Plackett-Luce: Yellott 1977; Kool et al. 2019), one draw per slate. Shapes: scores
    ``[..., N]``, slates ``int64 [..., k]``, ``log_prob``/``entropy`` ``[...]``.
    """

    k: int

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"PlackettLuce: the slate size `k` must be a positive int, got {self.k!r}")

    def _check(self, scores: Tensor, owner: str) -> None:
        if scores.dim() == 0 or scores.shape[-1] < self.k:
            raise ValueError(
                f"{owner}: `scores` must end in N >= k = {self.k} items, got {list(scores.shape)}"
            )

    def log_prob(self, scores: Tensor, slate: Tensor) -> Tensor:
        """The slate's log-probability (formula above): ``[..., N], int [..., k] -> [...]``."""
        owner = "PlackettLuce.log_prob"
        self._check(scores, owner)
        if slate.dtype.is_floating_point or tuple(slate.shape) != (*scores.shape[:-1], self.k):
            raise ValueError(
                f"{owner}: `slate` must be integer indices of shape {[*scores.shape[:-1], self.k]}, "
                f"got dtype {slate.dtype} and shape {list(slate.shape)}"
            )
        chosen = _one_hot(slate, scores)  # [..., k, N]
        before = torch.cumsum(chosen, dim=-2) - chosen  # items taken at earlier positions
        left = _without(scores, before)
        picked = torch.gather(scores, -1, slate.long())
        return (picked - torch.logsumexp(left, dim=-1)).sum(-1)

    def entropy(self, scores: Tensor) -> Tensor:
        """Sum over positions of the entropy of the next pick, following the most likely prefix:
        ``sum_i H(softmax(s without top_<i))``: ``[...]``. Exact for ``k = 1`` and for equal
        scores; otherwise a deterministic stand-in for the exact entropy (a sum over all ``N! /
        (N-k)!`` prefixes), used as the entropy bonus."""
        self._check(scores, "PlackettLuce.entropy")
        top = torch.topk(scores, self.k, dim=-1).indices
        taken = _one_hot(top, scores)
        before = torch.cumsum(taken, dim=-2) - taken
        left = _without(scores, before)
        log_p = torch.log_softmax(left, dim=-1)
        p_log_p = torch.where(before > 0, torch.zeros_like(log_p), torch.exp(log_p) * log_p)
        return -p_log_p.sum((-1, -2))

    def sample(self, key: Tensor, scores: Tensor) -> Tensor:
        """A slate per batch element, ``topk(scores + gumbel, k)`` in order: ``int64 [..., k]``."""
        self._check(scores, "PlackettLuce.sample")
        noise = random.gumbel(key, tuple(scores.shape), scores.dtype)
        return torch.topk(scores + noise, self.k, dim=-1).indices

    def mode(self, scores: Tensor) -> Tensor:
        """The most likely slate, the ``k`` highest scores in order: ``int64 [..., k]``."""
        return torch.topk(scores, self.k, dim=-1).indices


def _check_gaussian(owner: str, mean: Tensor, log_std: Tensor) -> None:
    if mean.shape != log_std.shape:
        raise ValueError(
            f"{owner}: `mean` {list(mean.shape)} and `log_std` {list(log_std.shape)} must have the same shape"
        )


@dataclass(frozen=True)
class DiagGaussian:
    """A diagonal Gaussian over ``[..., D]``; parameters ``(mean, log_std)``, each ``[..., D]``.

    Log-probabilities and entropies sum over the last (action) dim.
    """

    def log_prob(self, params: tuple[Tensor, Tensor], action: Tensor) -> Tensor:
        """``sum_d -((x - mu) / sigma)^2 / 2 - log sigma - log(2 pi) / 2``: ``[...]``."""
        mean, log_std = params
        _check_gaussian("DiagGaussian.log_prob", mean, log_std)
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z * z - log_std - _HALF_LOG_2PI).sum(-1)

    def entropy(self, params: tuple[Tensor, Tensor]) -> Tensor:
        """``sum_d log sigma + (1 + log(2 pi)) / 2``: ``[...]``."""
        _, log_std = params
        return (log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    def sample(self, key: Tensor, params: tuple[Tensor, Tensor]) -> Tensor:
        """``mean + exp(log_std) * eps``, ``eps ~ N(0, I)`` from ``key`` (reparameterised)."""
        mean, log_std = params
        _check_gaussian("DiagGaussian.sample", mean, log_std)
        return self.sample_from_noise(params, random.normal(key, tuple(mean.shape), mean.dtype))

    def sample_from_noise(self, params: tuple[Tensor, Tensor], noise: Tensor) -> Tensor:
        """``mean + exp(log_std) * noise`` for given standard-normal ``noise``."""
        mean, log_std = params
        return mean + torch.exp(log_std) * noise

    def mode(self, params: tuple[Tensor, Tensor]) -> Tensor:
        return params[0]

    def kl(self, p: tuple[Tensor, Tensor], q: tuple[Tensor, Tensor]) -> Tensor:
        """``KL(p || q)`` summed over the last dim: ``[...]``."""
        (mp, lp), (mq, lq) = p, q
        var_ratio = torch.exp(2.0 * (lp - lq))
        mean_term = ((mp - mq) * torch.exp(-lq)) ** 2
        return 0.5 * (var_ratio + mean_term - 1.0 - 2.0 * (lp - lq)).sum(-1)


def _log1m_tanh_sq(u: Tensor) -> Tensor:
    """``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``, finite for any ``u``."""
    return 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))


@dataclass(frozen=True)
class TanhGaussian:
    """A Gaussian squashed by tanh and rescaled: ``a = tanh(u) * scale + bias``, ``u ~ N(mean, std)``.

    The change of variables gives ``log pi(a) = log N(u) - sum_d [log(1 - tanh(u)^2) + log scale]``
    (Haarnoja et al. 2018, appendix C), with ``log(1 - tanh(u)^2)`` in the overflow-free form
    ``2 (log 2 - u - softplus(-2u))``. Score actions through :meth:`sample_and_log_prob`, which
    keeps the pre-tanh ``u``; :meth:`log_prob` inverts ``tanh`` and is exact only away from
    saturation.

    Attributes:
      low, high: action bounds (floats or one per action dim); ``scale = (high - low) / 2``,
        ``bias = (high + low) / 2``.
    """

    low: float | Sequence[float] = -1.0
    high: float | Sequence[float] = 1.0

    def scale_and_bias(self, like: Tensor) -> tuple[Tensor, Tensor]:
        low = torch.as_tensor(self.low, dtype=like.dtype, device=like.device)
        high = torch.as_tensor(self.high, dtype=like.dtype, device=like.device)
        return (high - low) / 2.0, (high + low) / 2.0

    def _squash(self, u: Tensor, mean: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
        scale, bias = self.scale_and_bias(u)
        z = (u - mean) * torch.exp(-log_std)
        log_gauss = -0.5 * z * z - log_std - _HALF_LOG_2PI
        log_prob = (log_gauss - _log1m_tanh_sq(u) - torch.log(scale)).sum(-1)
        return torch.tanh(u) * scale + bias, log_prob

    def sample_and_log_prob(self, key: Tensor, params: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """A reparameterised action and its log-probability: ``([..., D], [...])``."""
        mean, log_std = params
        _check_gaussian("TanhGaussian.sample_and_log_prob", mean, log_std)
        return self.sample_and_log_prob_from_noise(params, random.normal(key, tuple(mean.shape), mean.dtype))

    def sample_and_log_prob_from_noise(
        self, params: tuple[Tensor, Tensor], noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`sample_and_log_prob` with given standard-normal ``noise`` ``[..., D]``."""
        mean, log_std = params
        return self._squash(mean + torch.exp(log_std) * noise, mean, log_std)

    def sample(self, key: Tensor, params: tuple[Tensor, Tensor]) -> Tensor:
        return self.sample_and_log_prob(key, params)[0]

    def log_prob(self, params: tuple[Tensor, Tensor], action: Tensor) -> Tensor:
        """``log pi(action)`` for a given action (``u = atanh`` of the unscaled action, clipped
        to ``|tanh(u)| <= 1 - 1e-6``): ``[...]``."""
        mean, log_std = params
        _check_gaussian("TanhGaussian.log_prob", mean, log_std)
        scale, bias = self.scale_and_bias(action)
        y = torch.clamp((action - bias) / scale, -1.0 + 1e-6, 1.0 - 1e-6)
        return self._squash(torch.atanh(y), mean, log_std)[1]

    def entropy(self, params: tuple[Tensor, Tensor]) -> Tensor:
        """Not available in closed form: estimate it as ``-log_prob`` of samples."""
        raise NotImplementedError("TanhGaussian has no closed-form entropy; use -sample_and_log_prob(...)[1]")

    def mode(self, params: tuple[Tensor, Tensor]) -> Tensor:
        """The deterministic action ``tanh(mean) * scale + bias``."""
        mean = params[0]
        scale, bias = self.scale_and_bias(mean)
        return torch.tanh(mean) * scale + bias


def greedy(q_values: Tensor, mask: Tensor | None = None) -> Tensor:
    """``argmax_a Q(s, a)``, over the legal actions ``mask [..., A]`` if given: ``-> int64 [...]``."""
    if mask is not None:
        q_values = mask_logits(q_values, mask)
    return torch.argmax(q_values, dim=-1)


def epsilon_greedy(
    key: Tensor, q_values: Tensor, epsilon: float | Tensor, mask: Tensor | None = None
) -> Tensor:
    """With probability ``epsilon`` a uniform random action, else ``argmax_a Q(s, a)``.

    Args:
      key: ``int64[2]``.
      q_values: ``[..., A]``.
      epsilon: a float or a tensor broadcastable to the batch shape ``[...]`` (0-d for a
        schedule or a vmapped sweep).
      mask: optional legal actions ``bool [..., A]``: both the random and the greedy action are
        drawn among them (the random one uniformly, by Gumbel-max over equal logits).

    Returns:
      ``int64 [...]`` actions.
    """
    if q_values.dim() == 0:
        raise ValueError("epsilon_greedy: `q_values` must have an action dim [..., A]")
    batch = tuple(q_values.shape[:-1])
    k_explore, k_action = random.split(key)
    # drawn in the Q-values' float dtype whatever epsilon's (a float64 hyper-parameter would draw
    # 64-bit uniforms: another stream, twice the threefry work)
    p = epsilon.to(q_values.dtype) if isinstance(epsilon, Tensor) else float(epsilon)
    explore = random.bernoulli(k_explore, p, batch)
    if mask is None:
        random_action = random.randint(k_action, batch, 0, q_values.shape[-1])
    else:
        random_action = random.categorical(k_action, mask_logits(torch.zeros_like(q_values), mask))
    return torch.where(explore, random_action, greedy(q_values, mask))
