"""Convolutional torsos for image observations and heads on top of them: the Nature CNN (Mnih
et al. 2015) for Atari frames, and MinAtar's network (Young & Tian 2019) for its 10 x 10 frames."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import orthogonal, zeros
from frl.nn.layers import linear, linear_init

__all__ = ["ConvNetwork", "ConvQNetwork", "MinAtarCNN", "NatureCNN"]

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
class MinAtarCNN:
    """``[..., H, W, C]`` frames (channels last, as MinAtar gives them) -> ``[..., features]``.

    MinAtar's reference network: ``conv 16x3x3 /1 -> ReLU -> flatten -> linear features -> ReLU``
    (Young & Tian 2019, https://arxiv.org/abs/1903.03176; CleanRL/purejaxrl use the same
    size). Orthogonal weights with gain sqrt(2), zero biases.

    Params: ``{"conv": {"weight" [16, C, 3, 3], "bias"}, "fc": {...}}``.
    """

    height: int = 10
    width: int = 10
    in_channels: int = 4
    features: int = 128
    filters: int = 16
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("height", "width", "in_channels", "features", "filters"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"MinAtarCNN: `{name}` must be a positive int, got {value!r}")
        if self.height < 3 or self.width < 3:
            raise ValueError(f"MinAtarCNN: frames of {self.height}x{self.width} are too small (need >= 3x3)")

    @property
    def flat_size(self) -> int:
        return self.filters * (self.height - 2) * (self.width - 2)

    def init(self, key: Tensor) -> TensorDict:
        k_conv, k_bias, k_fc = random.split(key, 3)
        w_init, b_init = orthogonal(math.sqrt(2.0)), zeros()
        conv = TensorDict(
            {
                "weight": w_init(k_conv, (self.filters, self.in_channels, 3, 3), self.dtype),
                "bias": b_init(k_bias, (self.filters,), self.dtype),
            },
            batch_size=[],
        )
        fc = linear_init(k_fc, self.flat_size, self.features, w_init=w_init, b_init=b_init, dtype=self.dtype)
        return TensorDict({"conv": conv, "fc": fc}, batch_size=[])

    def apply(self, params: TensorDictBase, x: Tensor) -> Tensor:
        expected = (self.height, self.width, self.in_channels)
        if x.dim() < 3 or tuple(x.shape[-3:]) != expected:
            raise ValueError(
                f"MinAtarCNN.apply: `x` must be [..., {', '.join(map(str, expected))}], got {list(x.shape)}"
            )
        lead = x.shape[:-3]
        h = x.reshape(-1, *expected).to(self.dtype).permute(0, 3, 1, 2)
        h = F.relu(F.conv2d(h, params["conv", "weight"], params["conv", "bias"]))
        h = F.relu(linear(params["fc"], h.flatten(1)))
        return h.reshape(*lead, self.features)


def image_torso(obs_shape: tuple[int, ...], kind: str = "nature", dtype: torch.dtype = torch.float32) -> Any:
    """The torso for images of ``obs_shape``: ``"nature"`` (``[C, H, W]``, :class:`NatureCNN`) or
    ``"minatar"`` (``[H, W, C]``, :class:`MinAtarCNN`)."""
    if kind == "nature":
        c, h, w = obs_shape
        return NatureCNN(c, h, w, dtype=dtype)
    if kind == "minatar":
        h, w, c = obs_shape
        return MinAtarCNN(h, w, c, dtype=dtype)
    raise ValueError(f"image_torso: `kind` must be 'nature' or 'minatar', got {kind!r}")


@dataclass(frozen=True)
class ConvNetwork:
    """A linear head on an image torso: ``[..., *obs_shape] -> [..., outputs]`` (``[...]`` with
    ``squeeze`` and one output): the actor's logits (``output_scale = 0.01``), the critic's value
    or Q-values of a pixel agent."""

    obs_shape: tuple[int, ...]
    outputs: int
    torso_kind: str = "nature"
    output_scale: float = 1.0
    squeeze: bool = False
    dtype: torch.dtype = torch.float32

    @property
    def torso(self) -> Any:
        return image_torso(tuple(self.obs_shape), self.torso_kind, self.dtype)

    def init(self, key: Tensor) -> TensorDict:
        k_torso, k_head = random.split(key)
        torso = self.torso
        head = linear_init(
            k_head,
            torso.features,
            self.outputs,
            w_init=orthogonal(self.output_scale),
            b_init=zeros(),
            dtype=self.dtype,
        )
        return TensorDict({"torso": torso.init(k_torso), "head": head}, batch_size=[])

    def apply(self, params: TensorDictBase, obs: Tensor) -> Tensor:
        out = linear(params["head"], self.torso.apply(params["torso"], obs))
        return out.squeeze(-1) if self.squeeze else out


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
