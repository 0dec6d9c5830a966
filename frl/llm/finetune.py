"""RL fine-tuning plumbing: prompts in, sampled completions, rewards, a GRPO/RLOO update.

``sequence_log_probs`` scores completions under a model (prompt left-padded, completion
right-padded); ``grpo_iteration`` samples ``K`` completions for each of ``G`` prompts, rewards
them, and takes one step of :func:`frl.llm.rl.grpo_loss` (or ``rloo_loss``) against a frozen
reference model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.llm import rl
from frl.llm.generate import generate
from frl.llm.model import Transformer
from frl.llm.tokenizer import PAD
from frl.optim import GradientTransformation
from frl.update import Update, make_update

__all__ = ["encode_prompts", "grpo_iteration", "make_rl_update", "sequence_log_probs"]


def encode_prompts(tokenizer, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Left-padded prompts (with ``<bos>``): ``(tokens [B, P], padding [B, P])``."""
    encoded = [tokenizer.encode(p, bos=True) for p in prompts]
    P = max(len(e) for e in encoded)
    tokens = torch.full((len(encoded), P), PAD, dtype=torch.int64)
    padding = torch.ones(len(encoded), P, dtype=torch.bool)
    for i, e in enumerate(encoded):
        tokens[i, P - len(e) :] = torch.tensor(e)
        padding[i, P - len(e) :] = False
    return tokens, padding


def sequence_log_probs(
    model: Transformer,
    params: TensorDictBase,
    prompt: Tensor,
    prompt_padding: Tensor,
    completion: Tensor,
    mask: Tensor,
) -> Tensor:
    """``log pi(completion_t | prompt, completion_<t)``: ``[B, N]`` (0 where ``mask`` is False)."""
    P = prompt.shape[-1]
    seq = torch.cat([prompt, completion], -1)
    padding = torch.cat([prompt_padding, ~mask], -1)
    logits = model.apply(params, seq[..., :-1], padding=padding[..., :-1])
    log_prob = rl.token_log_probs(logits[..., P - 1 :, :], completion)
    return log_prob * mask.to(log_prob.dtype)


def make_rl_update(model: Transformer, optimizer: GradientTransformation, loss: str = "grpo", **kw) -> Update:
    """A pure update of ``grpo_loss`` or ``rloo_loss`` on batches from :func:`grpo_iteration`."""

    def log_prob_fn(params: TensorDictBase, batch: TensorDictBase) -> Tensor:
        return sequence_log_probs(
            model, params, batch["prompt"], batch["prompt_padding"], batch["completion"], batch["mask"]
        )

    fn = {"grpo": rl.grpo_loss, "rloo": rl.rloo_loss}[loss]
    return make_update(partial(fn, log_prob_fn=log_prob_fn, **kw), optimizer)


def grpo_iteration(
    model: Transformer,
    update: Update,
    state: TensorDictBase,
    ref_params: TensorDictBase,
    tokenizer,
    prompts: Sequence[str],
    reward_fn: Callable[[Sequence[str], Sequence[str]], Tensor],
    key: Tensor,
    *,
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    advantages: str = "grpo",
) -> tuple[TensorDictBase, dict[str, float]]:
    """Sample ``group_size`` completions per prompt, reward them, take one update step."""
    repeated = [p for p in prompts for _ in range(group_size)]
    prompt, padding = encode_prompts(tokenizer, repeated)
    completion, _, mask = generate(
        model, state["params"], prompt, key, max_new_tokens, temperature=temperature, prompt_padding=padding
    )
    texts = [
        tokenizer.decode([t for t, m in zip(row, mrow) if m])
        for row, mrow in zip(completion.tolist(), mask.tolist())
    ]
    reward = reward_fn(repeated, texts).to(torch.float32)
    grouped = reward.reshape(len(prompts), group_size)
    adv = rl.group_advantages(grouped) if advantages == "grpo" else rl.leave_one_out_advantages(grouped)
    with torch.no_grad():
        old = sequence_log_probs(model, state["params"], prompt, padding, completion, mask)
        ref = sequence_log_probs(model, ref_params, prompt, padding, completion, mask)
    batch = TensorDict(
        {
            "prompt": prompt,
            "prompt_padding": padding,
            "completion": completion,
            "mask": mask,
            "old_log_prob": old,
            "ref_log_prob": ref,
            "advantage": adv.reshape(-1),
        },
        batch_size=[len(repeated)],
    )
    state, metrics = update.step(state, batch, None)
    return state, {"reward": float(reward.mean()), **{k: float(v) for k, v in metrics.items()}}
