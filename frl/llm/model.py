"""A decoder-only transformer (GPT-style) as pure functions over a params TensorDict.

``x_0 = E[tokens] (+ P[positions])``; each of ``n_layers`` pre-LayerNorm blocks computes
``x <- x + Attn(LN(x))`` then ``x <- x + MLP(LN(x))`` with ``MLP(h) = W_2 GELU(W_1 h)``; the
logits are ``LN(x) E^T`` (the output head tied to the embedding) or ``LN(x) W_head^T``.
Attention is multi-head causal self-attention, ``softmax(Q K^T / sqrt(d_head) + M) V`` with
``M`` = -inf above the diagonal (and on padding): written out in plain tensor math, so it works
under ``torch.func.grad``, ``vmap`` and ``torch.compile`` on the CPU; ``attention="sdpa"`` uses
``F.scaled_dot_product_attention`` instead (inference: it has no compiled backward on the CPU in
torch 2.13). Positions: learned, sinusoidal (Vaswani et al. 2017) or rotary (Su et al. 2021).

Shapes: tokens ``int64 [..., T]`` -> logits ``[..., T, vocab]``. For generation, ``init_cache``
preallocates keys and values ``[..., H, max_len, d_head]`` per layer; ``apply(..., cache=c)``
writes the new positions at ``c["length"]`` and attends to everything written so far, so one
token at a time reproduces the full forward pass (tested).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.nn.initializers import normal, zeros
from frl.nn.layers import linear, linear_init

__all__ = ["Transformer", "TransformerConfig"]

POSITIONS = ("learned", "sinusoidal", "rotary")


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and choices of a :class:`Transformer`."""

    vocab_size: int
    max_len: int = 128
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int | None = None  # default 4 * d_model
    positional: str = "learned"
    tie_embeddings: bool = True
    layer_norm_eps: float = 1e-5
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TransformerConfig: `{name}` must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"TransformerConfig: `d_model` ({self.d_model}) must be divisible by "
                f"`n_heads` ({self.n_heads})"
            )
        if self.positional not in POSITIONS:
            raise ValueError(
                f"TransformerConfig: `positional` must be one of {POSITIONS}, got {self.positional!r}"
            )
        if self.positional == "rotary" and (self.d_model // self.n_heads) % 2:
            raise ValueError("TransformerConfig: rotary positions need an even head size")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ff(self) -> int:
        return self.d_ff or 4 * self.d_model


def _layer_norm_init(d: int, dtype: torch.dtype) -> TensorDict:
    return TensorDict(
        {"weight": torch.ones(d, dtype=dtype), "bias": torch.zeros(d, dtype=dtype)}, batch_size=[]
    )


@functools.lru_cache(maxsize=16)
def sinusoidal(max_len: int, d: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)``: ``[max_len, d]``
    (cached: built once per size, not on every forward pass; do not modify it in place)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    pe = torch.zeros(max_len, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe.to(dtype)


def _rotate(x: Tensor, positions: Tensor) -> Tensor:
    """Rotary embedding of ``x [..., H, T, d]`` at integer ``positions [..., T]``."""
    d = x.shape[-1]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angle = positions.to(torch.float32)[..., None, :, None] * freq  # [..., 1, T, d/2]
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


@dataclass(frozen=True)
class Transformer:
    """The model (see the module docstring); ``init(key) -> params``, ``apply(params, tokens)``."""

    config: TransformerConfig

    def init(self, key: Tensor) -> TensorDict:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by
        ``1 / sqrt(2 n_layers)``."""
        c = self.config
        keys = random.split(key, c.n_layers + 3)
        std = normal(0.02)
        resid = normal(0.02 / math.sqrt(2 * c.n_layers))
        params: dict = {"embed": std(keys[0], (c.vocab_size, c.d_model), c.dtype)}
        if c.positional == "learned":
            params["pos"] = std(keys[1], (c.max_len, c.d_model), c.dtype)
        blocks = {}
        for i in range(c.n_layers):
            k = random.split(keys[3 + i], 4)
            blocks[str(i)] = {
                "ln1": _layer_norm_init(c.d_model, c.dtype),
                "qkv": linear_init(k[0], c.d_model, 3 * c.d_model, w_init=std, b_init=zeros(), dtype=c.dtype),
                "out": linear_init(k[1], c.d_model, c.d_model, w_init=resid, b_init=zeros(), dtype=c.dtype),
                "ln2": _layer_norm_init(c.d_model, c.dtype),
                "fc": linear_init(k[2], c.d_model, c.ff, w_init=std, b_init=zeros(), dtype=c.dtype),
                "proj": linear_init(k[3], c.ff, c.d_model, w_init=resid, b_init=zeros(), dtype=c.dtype),
            }
        params["blocks"] = blocks
        params["ln_f"] = _layer_norm_init(c.d_model, c.dtype)
        if not c.tie_embeddings:
            params["head"] = std(keys[2], (c.vocab_size, c.d_model), c.dtype)
        return TensorDict(params, batch_size=[])

    def init_cache(self, batch: tuple[int, ...] = (), max_len: int | None = None) -> dict[str, Tensor]:
        """Empty keys/values ``[L, *batch, H, max_len, d_head]`` and ``length`` 0."""
        c = self.config
        n = c.max_len if max_len is None else max_len
        shape = (c.n_layers, *batch, c.n_heads, n, c.d_head)
        return {
            "k": torch.zeros(shape, dtype=c.dtype),
            "v": torch.zeros(shape, dtype=c.dtype),
            "length": torch.zeros((), dtype=torch.int64),
        }

    def _ln(self, p: TensorDictBase, x: Tensor) -> Tensor:
        return F.layer_norm(x, (x.shape[-1],), p["weight"], p["bias"], self.config.layer_norm_eps)

    def apply(
        self,
        params: TensorDictBase,
        tokens: Tensor,
        *,
        padding: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
        attention: str = "math",
        return_hidden: bool = False,
    ) -> Tensor | tuple[Tensor, ...]:
        """Logits ``[..., T, vocab]`` for ``tokens [..., T]``.

        Args:
          params: from :meth:`init`.
          tokens: int64 ids; with a cache, the next ``T`` tokens after ``cache["length"]``.
          padding: ``bool [..., T_total]``, True at padding *keys* (never attended to); with a
            cache, over the cache's whole length. Position ids count real tokens only
            (``cumsum(~padding) - 1``), so a left-padded sequence has the positions it has
            unpadded.
          cache: from :meth:`init_cache` or a previous call; then returns ``(logits, cache)``.
          attention: ``"math"`` (differentiable, compilable) or ``"sdpa"``.
          return_hidden: also return the final hidden states ``[..., T, d_model]`` (after the
            last LayerNorm; what a value head reads): ``(logits, hidden)``.
        """
        c = self.config
        if tokens.dtype not in (torch.int64, torch.int32) or tokens.dim() < 1:
            raise ValueError(
                f"Transformer.apply: `tokens` must be int64 [..., T], got {tokens.dtype} {list(tokens.shape)}"
            )
        T = tokens.shape[-1]
        start = torch.zeros((), dtype=torch.int64) if cache is None else cache["length"]
        positions = start + torch.arange(T, device=tokens.device)  # slots: causality and the cache
        if padding is None:
            pos_ids = positions
        else:  # count real tokens only, so left padding does not shift a sequence's positions
            pos_ids = ((~padding).cumsum(-1) - 1).clamp(min=0).index_select(-1, positions)
        x = params["embed"][tokens]
        if c.positional == "learned":
            x = x + params["pos"][pos_ids]
        elif c.positional == "sinusoidal":
            x = x + sinusoidal(c.max_len, c.d_model, x.dtype).to(x.device)[pos_ids]
        new_k, new_v = [], []
        for i in range(c.n_layers):
            p = params["blocks", str(i)]
            h = self._ln(p["ln1"], x)
            qkv = linear(p["qkv"], h).unflatten(-1, (3, c.n_heads, c.d_head))  # [..., T, 3, H, d]
            q, k, v = (qkv.select(-3, j).transpose(-2, -3) for j in range(3))  # [..., H, T, d]
            if c.positional == "rotary":
                q, k = _rotate(q, pos_ids), _rotate(k, pos_ids)
            if cache is not None:
                index = positions
                k_all = cache["k"][i].index_copy(-2, index, k)
                v_all = cache["v"][i].index_copy(-2, index, v)
                new_k.append(k_all)
                new_v.append(v_all)
                k, v = k_all, v_all
                key_pos = torch.arange(k.shape[-2], device=tokens.device)
            else:
                key_pos = positions
            allowed = key_pos[None, :] <= positions[:, None]  # [T, S]: causal (and not yet written)
            if padding is not None:
                # never attend to padding, but always to yourself: a padding query then has a key
                # (its output is ignored) instead of an all -inf row whose NaN would spread
                itself = key_pos[None, :] == positions[:, None]
                allowed = (allowed & ~padding[..., None, None, :]) | itself
            h = self._attend(q, k, v, allowed, attention)
            x = x + linear(p["out"], h.transpose(-2, -3).flatten(-2))
            x = x + linear(p["proj"], F.gelu(linear(p["fc"], self._ln(p["ln2"], x))))
        x = self._ln(params["ln_f"], x)
        logits = x @ (params["embed"] if c.tie_embeddings else params["head"]).T
        out: tuple[Tensor, ...] = (logits, x) if return_hidden else (logits,)
        if cache is not None:
            out = (*out, {"k": torch.stack(new_k), "v": torch.stack(new_v), "length": start + T})
        return out[0] if len(out) == 1 else out

    @staticmethod
    def _attend(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, attention: str) -> Tensor:
        if attention == "sdpa":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        if attention != "math":
            raise ValueError(f"Transformer.apply: `attention` must be 'math' or 'sdpa', got {attention!r}")
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v
