"""Batched sampling from a :class:`~frl.llm.model.Transformer` with keys.

``generate(model, params, prompts, key, max_new_tokens, temperature=, top_k=, top_p=)``
continues each row of ``prompts [B, P]`` (left-padded with ``pad_id``; ``prompt_padding`` marks
the pads) for ``max_new_tokens`` steps through the KV cache. Each step draws from
``softmax(logits / temperature)`` restricted to the ``top_k`` most likely tokens and to the
smallest set whose probability reaches ``top_p`` (nucleus); ``temperature=0`` is greedy. A row
stops at ``eos_id``: later positions are padding with ``mask`` False. Returns
``(tokens [B, N], log_probs [B, N], mask [B, N])``: the sampled tokens, their log-probabilities
under the *sampling* distribution's logits before truncation (``log softmax(logits / T)``) and
which positions are real (up to and including the end token). ``attention="sdpa"`` runs the
forward passes through ``F.scaled_dot_product_attention`` (inference only; same results to float
rounding), ``use_cache=False`` recomputes the whole prefix at every step (for checking).
"""

from __future__ import annotations

import torch
from torch import Tensor

from frl import random
from frl.llm.model import Transformer
from frl.llm.tokenizer import EOS, PAD

__all__ = ["filter_logits", "generate"]


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """``logits [..., V]`` with tokens outside the top-k / nucleus set at ``-inf``."""
    if top_k is not None:
        if top_k <= 0:
            raise ValueError(f"filter_logits: `top_k` must be positive, got {top_k}")
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"filter_logits: `top_p` must lie in (0, 1], got {top_p}")
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # keep a token while the mass before it is below top_p (the first token always stays)
        remove = (probs.cumsum(-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def generate(
    model: Transformer,
    params,
    prompts: Tensor,
    key: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    prompt_padding: Tensor | None = None,
    eos_id: int = EOS,
    pad_id: int = PAD,
    use_cache: bool = True,
    attention: str = "math",
) -> tuple[Tensor, Tensor, Tensor]:
    """Sample continuations (see the module docstring)."""
    if prompts.dim() != 2:
        raise ValueError(f"generate: `prompts` must be int64 [B, P], got {list(prompts.shape)}")
    B, P = prompts.shape
    total = P + max_new_tokens
    if total > model.config.max_len:
        raise ValueError(
            f"generate: prompt ({P}) + max_new_tokens ({max_new_tokens}) exceeds "
            f"max_len {model.config.max_len}"
        )
    padding = torch.zeros(B, total, dtype=torch.bool)
    if prompt_padding is not None:
        padding[:, :P] = prompt_padding
    tokens = torch.full((B, total), pad_id, dtype=torch.int64)
    tokens[:, :P] = prompts
    if use_cache:
        cache = model.init_cache((B,), total)
        logits, cache = model.apply(params, prompts, padding=padding, cache=cache, attention=attention)
    else:
        logits = model.apply(params, prompts, padding=padding[:, :P], attention=attention)
    last = logits[:, -1]
    out_tokens, out_logp, out_mask = [], [], []
    alive = torch.ones(B, dtype=torch.bool)
    for t in range(max_new_tokens):
        scaled = last / temperature if temperature > 0 else last
        log_probs = torch.log_softmax(scaled, dim=-1)
        if temperature > 0:
            key, k = random.split(key)
            choice = random.categorical(k, filter_logits(scaled, top_k, top_p))
        else:
            choice = last.argmax(-1)
        choice = torch.where(alive, choice, torch.full_like(choice, pad_id))
        out_tokens.append(choice)
        out_logp.append(
            torch.where(alive, log_probs.gather(-1, choice[:, None]).squeeze(-1), torch.zeros(()))
        )
        out_mask.append(alive.clone())
        alive = alive & (choice != eos_id)
        tokens[:, P + t] = choice
        padding[:, P + t] = ~out_mask[-1]
        if t == max_new_tokens - 1 or not bool(alive.any()):
            break
        if use_cache:
            logits, cache = model.apply(
                params, choice[:, None], padding=padding, cache=cache, attention=attention
            )
        else:
            logits = model.apply(
                params, tokens[:, : P + t + 1], padding=padding[:, : P + t + 1], attention=attention
            )
        last = logits[:, -1]
    n = len(out_tokens)
    pad = max_new_tokens - n
    stack = [torch.stack(x, dim=1) for x in (out_tokens, out_logp, out_mask)]
    if pad:
        stack = [
            torch.cat([stack[0], torch.full((B, pad), pad_id, dtype=torch.int64)], 1),
            torch.cat([stack[1], torch.zeros(B, pad, dtype=stack[1].dtype)], 1),
            torch.cat([stack[2], torch.zeros(B, pad, dtype=torch.bool)], 1),
        ]
    return stack[0], stack[1], stack[2]
