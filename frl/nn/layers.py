"""Layers as pure functions over params TensorDicts: linear, activations, the network protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import Initializer
from frl.tree import entries

__all__ = ["ACTIVATIONS", "Activation", "Network", "get_activation", "linear", "linear_init"]

Activation = Callable[[Tensor], Tensor]

ACTIVATIONS: dict[str, Activation] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
    "elu": F.elu,
    "leaky_relu": F.leaky_relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def get_activation(activation: str | Activation) -> Activation:
    """An activation by name (``"relu"``, ``"tanh"``, ``"gelu"``, ...) or a callable as is."""
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
        )
    return ACTIVATIONS[activation]


@runtime_checkable
class Network(Protocol):
    """A pure network: ``params = net.init(key)``; ``y = net.apply(params, *inputs)``.

    Networks are frozen dataclasses holding only static configuration (sizes, activation,
    initializers); all state is in the params TensorDict, so ``torch.func`` transforms and
    ``torch.compile`` see a plain function of tensors.
    """

    def init(self, key: Tensor) -> TensorDictBase: ...

    def apply(self, params: TensorDictBase, *inputs: Any) -> Any: ...


def linear_init(
    key: Tensor,
    in_features: int,
    out_features: int,
    *,
    w_init: Initializer,
    b_init: Initializer,
    bias: bool = True,
    dtype: torch.dtype = torch.float32,
) -> TensorDict:
    """Params of a linear layer: ``weight [out, in]`` and ``bias [out]`` (torch layout)."""
    if in_features <= 0 or out_features <= 0:
        raise ValueError(f"linear_init: sizes must be positive, got in={in_features}, out={out_features}")
    k_w, k_b = random.split(key)
    params = {"weight": w_init(k_w, (out_features, in_features), dtype)}
    if bias:
        params["bias"] = b_init(k_b, (out_features,), dtype)
    return TensorDict(params, batch_size=[])


def linear(params: TensorDictBase, x: Tensor) -> Tensor:
    """``y = x W^T + b``.

    Args:
      params: ``weight [out, in]`` and optionally ``bias [out]``.
      x: ``[..., in]``.

    Returns:
      ``[..., out]``.
    """
    fields = entries(params)  # read directly: TensorDict's indexing costs more than the product
    return F.linear(x, fields["weight"], fields.get("bias", None))
