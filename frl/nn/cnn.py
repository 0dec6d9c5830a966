"""The Nature CNN (Mnih et al. 2015) for pixel observations, and a Q-network on top of it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import orthogonal, zeros
from frl.nn.layers import linear, linear_init

__all__ = ["ConvQNetwork", "NatureCNN"]

# (out_channels, kernel, stride) of the three convolutions
_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))


@dataclass(frozen=True)
class NatureCNN:
    """``[..., C, H, W]`` images -> ``[..., features]``.

    ``conv 32x8x8 /4 -> ReLU -> conv 64x4x4 /2 -> ReLU -> conv 64x3x3 /1 -> ReLU -> flatten ->
    linear features -> ReLU``. uint8 inputs are scaled by ``1/255``; any leading dims are
    flattened into one batch for the convolutions and restored after. Weights are orthogonal
    with gain sqrt(2), biases zero (CleanRL's Atari agents).

    Params: ``{"conv0", "conv1", "conv2": {"weight" [out, in, k, k], "bias"}, "fc": {...}}``.
    """

    in_channels: int = 4
    height: int = 84
    width: int = 84
    features: int = 512
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("in_channels", "height", "width", "features"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"NatureCNN: `{name}` must be a positive int, got {value!r}")
        if self.flat_size <= 0:
            raise ValueError(f"NatureCNN: images of {self.height}x{self.width} are too small (need >= 36x36)")

    @property
    def flat_size(self) -> int:
        h, w = self.height, self.width
        for _, k, s in _CONVS:
            h, w = (h - k) // s + 1, (w - k) // s + 1
        return _CONVS[-1][0] * h * w if h > 0 and w > 0 else 0

    def init(self, key: Tensor) -> TensorDict:
        keys = random.split(key, len(_CONVS) + 1)
        w_init, b_init = orthogonal(math.sqrt(2.0)), zeros()
        params: dict[str, TensorDict] = {}
        channels = self.in_channels
        for i, (out, k, _) in enumerate(_CONVS):
            k_w, k_b = random.split(keys[i])
            params[f"conv{i}"] = TensorDict(
                {
                    "weight": w_init(k_w, (out, channels, k, k), self.dtype),
                    "bias": b_init(k_b, (out,), self.dtype),
                },
                batch_size=[],
            )
            channels = out
        params["fc"] = linear_init(
            keys[-1], self.flat_size, self.features, w_init=w_init, b_init=b_init, dtype=self.dtype
        )
        return TensorDict(params, batch_size=[])

    def apply(self, params: TensorDictBase, x: Tensor) -> Tensor:
        expected = (self.in_channels, self.height, self.width)
        if x.dim() < 3 or tuple(x.shape[-3:]) != expected:
            raise ValueError(
                f"NatureCNN.apply: `x` must be [..., {', '.join(map(str, expected))}], got {list(x.shape)}"
            )
        lead = x.shape[:-3]
        h = x.reshape(-1, *expected)
        h = h.to(self.dtype) / 255.0 if not x.dtype.is_floating_point else h.to(self.dtype)
        for i, (_, _, stride) in enumerate(_CONVS):
            conv = params[f"conv{i}"]
            h = F.relu(F.conv2d(h, conv["weight"], conv["bias"], stride=stride))
        h = F.relu(linear(params["fc"], h.flatten(1)))
        return h.reshape(*lead, self.features)


@dataclass(frozen=True)
class ConvQNetwork:
    """Action values from images: Nature CNN torso, linear head ``[..., C, H, W] -> [..., num_actions]``."""

    obs_shape: tuple[int, int, int]
    num_actions: int
    features: int = 512
    dtype: torch.dtype = torch.float32

    @property
    def torso(self) -> NatureCNN:
        c, h, w = self.obs_shape
        return NatureCNN(c, h, w, self.features, self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        k_torso, k_head = random.split(key)
        head = linear_init(
            k_head, self.features, self.num_actions, w_init=orthogonal(1.0), b_init=zeros(), dtype=self.dtype
        )
        return TensorDict({"torso": self.torso.init(k_torso), "head": head}, batch_size=[])

    def apply(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        return linear(params["head"], self.torso.apply(params["torso"], obs))
