"""Weight initializers drawn from ``frl.random`` keys.

An initializer is ``init(key, shape, dtype=torch.float32) -> Tensor``. Shapes follow torch's
layout: a linear weight is ``[out_features, in_features]`` (fan-in is the last dim; for an
``[out, in, *kernel]`` convolution weight, fan-in is ``in * prod(kernel)``). Every
initializer is a pure function of its key, so ``torch.func.vmap`` over keys initialises an
ensemble exactly as a loop would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from frl import random

__all__ = [
    "Initializer",
    "constant",
    "fans",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "orthogonal",
    "uniform",
    "variance_scaling",
    "zeros",
]

Initializer = Callable[..., Tensor]
"""``(key, shape, dtype=torch.float32) -> Tensor``."""

# The standard deviation of a unit normal truncated to [-2, 2]: rescales truncated draws.
_TRUNCATED_STD = 0.87962566103423978


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a torch weight ``[out, in, *receptive]``."""
    if len(shape) < 2:
        raise ValueError(f"fans: a weight needs at least 2 dims [out, in], got shape {list(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def zeros() -> Initializer:
    """All zeros."""
    return lambda key, shape, dtype=torch.float32: torch.zeros(shape, dtype=dtype, device=key.device)


def constant(value: float) -> Initializer:
    """All equal to ``value``."""
    return lambda key, shape, dtype=torch.float32: torch.full(shape, value, dtype=dtype, device=key.device)


def uniform(low: float = -1.0, high: float = 1.0) -> Initializer:
    """``U[low, high)``."""
    return lambda key, shape, dtype=torch.float32: random.uniform(key, shape, dtype, low, high)


def normal(stddev: float = 1.0) -> Initializer:
    """``N(0, stddev**2)``."""
    return lambda key, shape, dtype=torch.float32: stddev * random.normal(key, shape, dtype)


def variance_scaling(
    scale: float,
    mode: Literal["fan_in", "fan_out", "fan_avg"],
    distribution: Literal["truncated_normal", "normal", "uniform"],
) -> Initializer:
    """Draws with variance ``scale / n``, ``n`` the fan-in, fan-out or their mean.

    ``uniform`` draws ``U[-sqrt(3 v), sqrt(3 v))``; ``normal`` draws ``N(0, v)``;
    ``truncated_normal`` draws a unit normal truncated to ``[-2, 2]``, rescaled to variance
    ``v`` (as ``jax.nn.initializers.variance_scaling``).
    """
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"variance_scaling: `mode` must be fan_in, fan_out or fan_avg, got {mode!r}")
    if distribution not in ("truncated_normal", "normal", "uniform"):
        raise ValueError(
            "variance_scaling: `distribution` must be truncated_normal, normal or uniform, "
            f"got {distribution!r}"
        )
    if scale <= 0:
        raise ValueError(f"variance_scaling: `scale` must be positive, got {scale}")

    def init(key: Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        fan_in, fan_out = fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(1.0, n)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return random.uniform(key, shape, dtype, -limit, limit)
        if distribution == "normal":
            return math.sqrt(variance) * random.normal(key, shape, dtype)
        std = math.sqrt(variance) / _TRUNCATED_STD
        return std * random.truncated_normal(key, -2.0, 2.0, shape, dtype)

    return init


def lecun_uniform() -> Initializer:
    """Variance ``1 / fan_in``, uniform."""
    return variance_scaling(1.0, "fan_in", "uniform")


def lecun_normal() -> Initializer:
    """Variance ``1 / fan_in``, truncated normal."""
    return variance_scaling(1.0, "fan_in", "truncated_normal")


def he_uniform() -> Initializer:
    """Variance ``2 / fan_in``, uniform (Kaiming; for ReLU)."""
    return variance_scaling(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    """Variance ``2 / fan_in``, truncated normal (Kaiming; for ReLU)."""
    return variance_scaling(2.0, "fan_in", "truncated_normal")


def glorot_uniform() -> Initializer:
    """Variance ``2 / (fan_in + fan_out)``, uniform (Xavier)."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def glorot_normal() -> Initializer:
    """Variance ``2 / (fan_in + fan_out)``, truncated normal (Xavier)."""
    return variance_scaling(1.0, "fan_avg", "truncated_normal")


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014, https://arxiv.org/abs/1312.6120).

    For a weight ``[rows, *rest]`` with ``cols = prod(rest)``: ``Q`` from the QR decomposition
    of an ``N(0, 1)`` matrix ``[max(rows, cols), min(rows, cols)]``, signs fixed by ``diag(R)``
    so the draw is uniform over orthogonal matrices, transposed when ``rows < cols``. Rows are
    orthonormal when ``rows <= cols`` (columns otherwise), as ``torch.nn.init.orthogonal_``;
    PPO and DQN implementations use ``gain = sqrt(2)`` for hidden layers.
    """

    def init(key: Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        if len(shape) < 2:
            raise ValueError(f"orthogonal: needs a weight of at least 2 dims, got shape {list(shape)}")
        rows, cols = shape[0], math.prod(shape[1:])
        draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # QR needs f32/f64
        a = random.normal(key, (max(rows, cols), min(rows, cols)), draw_dtype)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
        if rows < cols:
            q = q.transpose(0, 1)
        return (gain * q).reshape(shape).to(dtype)

    return init
