"""Multi-layer perceptrons as pure functions over a params TensorDict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import Initializer, orthogonal, zeros
from frl.nn.layers import Activation, get_activation, linear, linear_init
from frl.tree import entries

__all__ = ["MLP", "check_features"]


def check_features(x: Tensor, expected: int, name: str, owner: str) -> None:
    """Raise a ValueError naming ``name`` unless ``x`` is ``[..., expected]``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: `{name}` must be a tensor, got {type(x)!r}")
    if x.dim() == 0 or x.shape[-1] != expected:
        raise ValueError(f"{owner}: `{name}` must have shape [..., {expected}], got {list(x.shape)}")


@dataclass(frozen=True)
class MLP:
    """A multi-layer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    ``h_{i+1} = act(h_i W_i^T + b_i)`` for hidden layers; the last layer is linear unless
    ``activate_final``. Hidden weights use ``w_init`` (orthogonal with gain sqrt(2) by default,
    as PPO and DQN implementations do), the last layer ``out_w_init`` times ``output_scale``
    (0.01 for policy logits, 1.0 for values), biases ``b_init`` (zeros).

    Params: ``{"0": {"weight", "bias"}, "1": {...}, ...}``, one entry per layer.

    Example::

        net = MLP((4, 64, 64, 2), activation="tanh", output_scale=0.01)
        params = net.init(frl.random.key(0))
        logits = net.apply(params, obs)  # [..., 4] -> [..., 2]
    """

    sizes: Sequence[int]
    activation: str | Activation = "relu"
    activate_final: bool = False
    output_scale: float = 1.0
    w_init: Initializer = field(default_factory=lambda: orthogonal(math.sqrt(2.0)))
    out_w_init: Initializer = field(default_factory=lambda: orthogonal(1.0))
    b_init: Initializer = field(default_factory=zeros)
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        sizes = tuple(self.sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s <= 0 for s in sizes):
            raise ValueError(f"MLP: `sizes` must hold at least two positive ints (in, ..., out), got {sizes}")
        object.__setattr__(self, "sizes", sizes)
        get_activation(self.activation)  # validate early

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    def init(self, key: Tensor) -> TensorDict:
        """Params for this MLP from one key (a pure function of the key)."""
        keys = random.split(key, self.num_layers)
        layers = {}
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            layer = linear_init(
                keys[i],
                self.sizes[i],
                self.sizes[i + 1],
                w_init=self.out_w_init if last else self.w_init,
                b_init=self.b_init,
                dtype=self.dtype,
            )
            if last and self.output_scale != 1.0:
                layer["weight"] = layer["weight"] * self.output_scale
            layers[str(i)] = layer
        return TensorDict(layers, batch_size=[])

    def apply(self, params: TensorDictBase, x: Tensor) -> Tensor:
        """``[..., sizes[0]] -> [..., sizes[-1]]``."""
        check_features(x, self.sizes[0], "x", "MLP.apply")
        act = get_activation(self.activation)
        layers = entries(params)
        for i in range(self.num_layers):
            x = linear(layers[str(i)], x)
            if i < self.num_layers - 1 or self.activate_final:
                x = act(x)
        return x
