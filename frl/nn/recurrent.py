"""Recurrent cells as pure functions: GRU and LSTM, and their unroll over a segment with resets.

A cell's recurrent state (its *carry*) is one tensor ``[..., state_size]``: the GRU's hidden
``h`` (``state_size = H``), the LSTM's ``[h, c]`` concatenated (``state_size = 2 H``), so an
agent stores, resets and vmaps any cell's carry the same way. ``cell.apply(params, x, carry)``
is one step; ``cell.output(carry)`` is the hidden ``h`` read by the heads; :func:`unroll` runs a
cell along a segment's time dim, zeroing the carry where an episode starts;
:class:`RecurrentNetwork` puts an MLP encoder before a cell and a linear head after it (the
recurrent actor and critic of ``frl.algos.recurrent_ppo``).

The params use ``torch.nn.GRUCell``'s and ``torch.nn.LSTMCell``'s names and layouts
(``weight_ih [G H, I]``, ``weight_hh [G H, H]``, ``bias_ih``, ``bias_hh``; gates in torch's
order), so a torch cell's ``state_dict`` is a valid params TensorDict and the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import Initializer, orthogonal, zeros
from frl.nn.layers import linear, linear_init
from frl.nn.mlp import MLP, check_features

__all__ = ["CELL_KINDS", "GRUCell", "LSTMCell", "RecurrentCell", "RecurrentNetwork", "unroll"]


class RecurrentCell(Protocol):
    """A pure recurrent cell: ``carry' = cell.apply(params, x, carry)``, ``h = cell.output(carry)``."""

    input_size: int
    hidden_size: int

    @property
    def state_size(self) -> int: ...

    def init(self, key: Tensor) -> TensorDictBase: ...

    def apply(self, params: TensorDictBase, x: Tensor, carry: Tensor) -> Tensor: ...

    def output(self, carry: Tensor) -> Tensor: ...


def _cell_init(
    key: Tensor,
    gates: int,
    input_size: int,
    hidden_size: int,
    w_init: Initializer,
    b_init: Initializer,
    dtype,
) -> TensorDict:
    """``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` with each gate's block drawn apart
    (an orthogonal draw per ``[H, I]`` block, as CleanRL's and most RL code initialise them)."""
    k_ih, k_hh, k_bi, k_bh = random.split(key, 4)

    def blocks(k: Tensor, cols: int) -> Tensor:
        return torch.cat([w_init(kg, (hidden_size, cols), dtype) for kg in random.split(k, gates)])

    return TensorDict(
        {
            "weight_ih": blocks(k_ih, input_size),
            "weight_hh": blocks(k_hh, hidden_size),
            "bias_ih": b_init(k_bi, (gates * hidden_size,), dtype),
            "bias_hh": b_init(k_bh, (gates * hidden_size,), dtype),
        },
        batch_size=[],
    )


def _check_sizes(owner: str, input_size: int, hidden_size: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner}: `{name}` must be a positive int, got {value!r}")


@dataclass(frozen=True)
class GRUCell:
    """A gated recurrent unit (Cho et al. 2014), torch's ``GRUCell`` formula::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Carry: ``h [..., H]``. Weights orthogonal per gate, biases zero (``w_init``, ``b_init``).

    Example::

        cell = GRUCell(4, 32)
        params = cell.init(frl.random.key(0))
        carry = cell.apply(params, x, torch.zeros(8, cell.state_size))  # x [8, 4] -> carry [8, 32]
    """

    input_size: int
    hidden_size: int
    w_init: Initializer = field(default_factory=lambda: orthogonal(1.0))
    b_init: Initializer = field(default_factory=zeros)
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_sizes("GRUCell", self.input_size, self.hidden_size)

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def init(self, key: Tensor) -> TensorDict:
        """Params ``weight_ih [3H, I]``, ``weight_hh [3H, H]``, ``bias_ih [3H]``, ``bias_hh [3H]``."""
        return _cell_init(key, 3, self.input_size, self.hidden_size, self.w_init, self.b_init, self.dtype)

    def apply(self, params: TensorDictBase, x: Tensor, carry: Tensor) -> Tensor:
        """One step: ``x [..., I]``, ``carry [..., H]`` -> ``carry' [..., H]``."""
        check_features(x, self.input_size, "x", "GRUCell.apply")
        check_features(carry, self.state_size, "carry", "GRUCell.apply")
        gi = x @ params["weight_ih"].T + params["bias_ih"]
        gh = carry @ params["weight_hh"].T + params["bias_hh"]
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * carry

    def output(self, carry: Tensor) -> Tensor:
        """The hidden state ``h [..., H]`` (the carry itself)."""
        return carry


@dataclass(frozen=True)
class LSTMCell:
    """A long short-term memory cell (Hochreiter and Schmidhuber 1997), torch's ``LSTMCell``::

        i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)      (torch's gate order)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')

    Carry: ``[h, c]`` concatenated, ``[..., 2H]``. ``forget_bias`` is added to the forget gate's
    ``bias_ih`` at init (0 by default, torch's and CleanRL's choice; 1 is Jozefowicz et al.'s).
    """

    input_size: int
    hidden_size: int
    forget_bias: float = 0.0
    w_init: Initializer = field(default_factory=lambda: orthogonal(1.0))
    b_init: Initializer = field(default_factory=zeros)
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_sizes("LSTMCell", self.input_size, self.hidden_size)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def init(self, key: Tensor) -> TensorDict:
        """Params ``weight_ih [4H, I]``, ``weight_hh [4H, H]``, ``bias_ih [4H]``, ``bias_hh [4H]``."""
        params = _cell_init(key, 4, self.input_size, self.hidden_size, self.w_init, self.b_init, self.dtype)
        if self.forget_bias:
            H = self.hidden_size
            shift = torch.zeros(4 * H, dtype=self.dtype)
            shift[H : 2 * H] = self.forget_bias
            params["bias_ih"] = params["bias_ih"] + shift
        return params

    def apply(self, params: TensorDictBase, x: Tensor, carry: Tensor) -> Tensor:
        """One step: ``x [..., I]``, ``carry [..., 2H]`` (``[h, c]``) -> ``carry' [..., 2H]``."""
        check_features(x, self.input_size, "x", "LSTMCell.apply")
        check_features(carry, self.state_size, "carry", "LSTMCell.apply")
        h, c = carry.chunk(2, dim=-1)
        gates = x @ params["weight_ih"].T + params["bias_ih"] + h @ params["weight_hh"].T + params["bias_hh"]
        i, f, g, o = gates.chunk(4, dim=-1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        return torch.cat([h_next, c_next], dim=-1)

    def output(self, carry: Tensor) -> Tensor:
        """The hidden state ``h [..., H]`` (the first half of the carry)."""
        return carry[..., : self.hidden_size]


def unroll(
    cell: RecurrentCell, params: TensorDictBase, inputs: Tensor, carry: Tensor, starts: Tensor
) -> Tensor:
    """Run ``cell`` along the time dim of ``inputs``, zeroing the carry where an episode starts.

    For ``t = 0 .. T-1``: ``c_t = 0 if starts_t else c_t``; ``c_{t+1} = cell(x_t, c_t)``. The
    outputs are ``cell.output(carries)``. Truncated backpropagation through time is the segment
    itself: gradients flow through every step and stop at ``carry`` (stored data, or detached).

    Args:
      cell: a :class:`GRUCell`, :class:`LSTMCell` or any :class:`RecurrentCell`.
      params: the cell's params.
      inputs: ``[..., T, I]`` (time second to last: a segment's ``[E, T, features]``).
      carry: the carry before step 0, ``[..., state_size]``.
      starts: bool ``[..., T]``, true where step ``t`` is an episode's first.

    Returns:
      the carries after each step, ``[..., T, state_size]`` (``c_1 .. c_T``; the last one
      continues the sequence).
    """
    if inputs.dim() < 2:
        raise ValueError(f"unroll: `inputs` must be [..., T, features], got {list(inputs.shape)}")
    if starts.shape != inputs.shape[:-1]:
        raise ValueError(
            f"unroll: `starts` must have shape {list(inputs.shape[:-1])} (inputs' [..., T]), "
            f"got {list(starts.shape)}"
        )
    if carry.shape[:-1] != inputs.shape[:-2]:
        raise ValueError(
            f"unroll: `carry` must have shape {[*inputs.shape[:-2], cell.state_size]}, "
            f"got {list(carry.shape)}"
        )
    carries = []
    for t in range(inputs.shape[-2]):
        carry = torch.where(starts[..., t, None], torch.zeros_like(carry), carry)
        carry = cell.apply(params, inputs[..., t, :], carry)
        carries.append(carry)
    return torch.stack(carries, dim=-2)


CELL_KINDS = {"gru": GRUCell, "lstm": LSTMCell}
"""The cells :class:`RecurrentNetwork` builds by name."""


@dataclass(frozen=True)
class RecurrentNetwork:
    """An MLP encoder, a recurrent cell and a linear head: ``(obs, carry) -> (out, carry')``.

    ``e = MLP(obs)`` (``hidden`` layers, ``activation`` after each), ``carry' = cell(e, carry)``,
    ``out = W h(carry') + b`` (orthogonal init with gain ``output_scale``: 0.01 for policy logits,
    1 for values). With ``log_std_init`` set, the head is a diagonal Gaussian's mean and ``out``
    is ``(mean, log_std)`` with a free ``log_std [out_dim]`` (CleanRL's continuous PPO);
    ``squeeze`` drops a size-1 output dim (a value network).

    Params: ``{"encoder": MLP params, "cell": cell params, "head": linear}`` (``log_std`` too).
    """

    obs_dim: int
    out_dim: int
    hidden: tuple[int, ...] = (64,)
    cell: str = "gru"
    memory_size: int = 64
    activation: str = "tanh"
    output_scale: float = 1.0
    squeeze: bool = False
    log_std_init: float | None = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.cell not in CELL_KINDS:
            raise ValueError(
                f"RecurrentNetwork: `cell` must be one of {sorted(CELL_KINDS)}, got {self.cell!r}"
            )
        for name in ("obs_dim", "out_dim", "memory_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"RecurrentNetwork: `{name}` must be a positive int, got {value!r}")
        if self.squeeze and self.out_dim != 1:
            raise ValueError(f"RecurrentNetwork: `squeeze` needs out_dim 1, got {self.out_dim}")

    @property
    def encoder(self) -> MLP:
        sizes = (self.obs_dim, *self.hidden)
        if len(sizes) == 1:
            raise ValueError("RecurrentNetwork: `hidden` must hold at least one layer size")
        return MLP(sizes, self.activation, True, out_w_init=orthogonal(math.sqrt(2.0)), dtype=self.dtype)

    @property
    def core(self) -> GRUCell | LSTMCell:
        return CELL_KINDS[self.cell](tuple(self.hidden)[-1], self.memory_size, dtype=self.dtype)

    @property
    def state_size(self) -> int:
        """The carry's size (``memory_size``, twice that for an LSTM)."""
        return self.core.state_size

    def initial_state(self, batch: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
        """Zeros ``[*batch, state_size]``: the carry at an episode's start."""
        return torch.zeros(*batch, self.state_size, dtype=self.dtype, device=device)

    def init(self, key: Tensor) -> TensorDict:
        k_enc, k_cell, k_head = random.split(key, 3)
        params = {
            "encoder": self.encoder.init(k_enc),
            "cell": self.core.init(k_cell),
            "head": linear_init(
                k_head,
                self.memory_size,
                self.out_dim,
                w_init=orthogonal(self.output_scale),
                b_init=zeros(),
                dtype=self.dtype,
            ),
        }
        if self.log_std_init is not None:
            params["log_std"] = torch.full((self.out_dim,), float(self.log_std_init), dtype=self.dtype)
        return TensorDict(params, batch_size=[])

    def _head(self, params: TensorDictBase, h: Tensor):
        out = linear(params["head"], h)
        if self.log_std_init is not None:
            return out, params["log_std"].expand_as(out)
        return out.squeeze(-1) if self.squeeze else out

    def step(self, params: TensorDictBase, obs: Tensor, carry: Tensor):
        """One step: ``obs [..., obs_dim]``, ``carry [..., state_size]`` -> ``(out, carry')``."""
        carry = self.core.apply(params["cell"], self.encoder.apply(params["encoder"], obs), carry)
        return self._head(params, self.core.output(carry)), carry

    def sequence(self, params: TensorDictBase, obs: Tensor, carry: Tensor, starts: Tensor):
        """A segment: ``obs [..., T, obs_dim]`` from ``carry [..., state_size]`` with the carry
        zeroed where ``starts [..., T]`` -> ``(out [..., T, ...], carries [..., T, state_size])``,
        the carries after each step (:func:`unroll`)."""
        encoded = self.encoder.apply(params["encoder"], obs)
        carries = unroll(self.core, params["cell"], encoded, carry, starts)
        return self._head(params, self.core.output(carries)), carries
