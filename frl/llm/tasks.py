"""Tasks for the language model: multi-digit addition (generated) with a verifiable reward, and
real text that ships with Python (``pydoc_data.topics``: 79 help topics, 465k characters).

``addition_problems(key, n, digits)`` draws ``a + b`` with up to ``digits`` digits each from a
frl key and returns prompts ``"a+b="`` and answers ``"c"``; the text a model learns is
``"a+b=c"`` followed by the end token. ``addition_reward(prompts, completions)`` is 1 where a
completion (up to its end token) is exactly the sum, else 0. ``encode_batch`` pads token lists
into ``tokens [B, T]`` and ``mask [B, T]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from frl import random
from frl.llm.tokenizer import PAD

__all__ = [
    "ADDITION_ALPHABET",
    "addition_exact_match",
    "addition_problems",
    "addition_reward",
    "encode_batch",
    "finetune_on_addition",
    "pretrain_on_addition",
    "pretrain_on_pairs",
    "python_docs_corpus",
    "text_windows",
]

ADDITION_ALPHABET = "0123456789+="


def addition_problems(key: Tensor, n: int, digits: int = 3) -> tuple[list[str], list[str]]:
    """``n`` problems ``a + b`` with ``0 <= a, b < 10^digits``: ``(prompts, answers)``."""
    k_a, k_b = random.split(key)
    hi = 10**digits
    a = random.randint(k_a, (n,), 0, hi).tolist()
    b = random.randint(k_b, (n,), 0, hi).tolist()
    return [f"{x}+{y}=" for x, y in zip(a, b)], [str(x + y) for x, y in zip(a, b)]


def addition_reward(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
    """1.0 where ``completion`` is exactly ``a + b`` for prompt ``"a+b="``, else 0.0: ``[B]``."""
    rewards = []
    for prompt, completion in zip(prompts, completions):
        a, b = prompt.rstrip("=").split("+")
        rewards.append(1.0 if completion.strip() == str(int(a) + int(b)) else 0.0)
    return torch.tensor(rewards)


def encode_batch(
    sequences: Sequence[Sequence[int]], length: int | None = None, pad_id: int = PAD
) -> tuple[Tensor, Tensor]:
    """Right-pad token lists: ``(tokens int64 [B, T], mask bool [B, T])``."""
    T = max(len(s) for s in sequences) if length is None else length
    if any(len(s) > T for s in sequences):
        raise ValueError(f"encode_batch: a sequence is longer than `length` {T}")
    tokens = torch.full((len(sequences), T), pad_id, dtype=torch.int64)
    mask = torch.zeros(len(sequences), T, dtype=torch.bool)
    for i, s in enumerate(sequences):
        tokens[i, : len(s)] = torch.tensor(list(s), dtype=torch.int64)
        mask[i, : len(s)] = True
    return tokens, mask


def python_docs_corpus(max_chars: int | None = None) -> str:
    """The text of Python's help topics (``pydoc_data.topics``), in a fixed order."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    return text if max_chars is None else text[:max_chars]


def text_windows(ids: Tensor, key: Tensor, batch_size: int, length: int) -> Tensor:
    """``batch_size`` random windows of ``length`` tokens from the id stream ``ids [L]``: ``[B, length]``."""
    if ids.shape[0] <= length:
        raise ValueError(
            f"text_windows: the stream ({ids.shape[0]} tokens) must be longer than `length` {length}"
        )
    starts = random.randint(key, (batch_size,), 0, ids.shape[0] - length)
    return ids[starts[:, None] + torch.arange(length)]


def addition_exact_match(
    model, params, tokenizer, n: int = 256, digits: int = 2, key: Tensor | None = None
) -> float:
    """Greedy exact match on ``n`` held-out problems (drawn from ``key``, default ``key(999)``)."""
    from frl.llm.finetune import sample_completions

    prompts, _ = addition_problems(random.key(999) if key is None else key, n, digits)
    *_, texts = sample_completions(
        model, params, tokenizer, prompts, random.key(0), digits + 2, temperature=0.0
    )
    return float(addition_reward(prompts, texts).mean())


def pretrain_on_pairs(
    model,
    params,
    tokenizer,
    sample_fn: Callable[[Tensor, int], tuple[list[str], list[str]]],
    steps: int,
    key: Tensor,
    *,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
):
    """Fit completions given prompts with the next-token loss and Adam: ``(params, losses, key)``.

    Each step draws ``sample_fn(key, batch_size) -> (prompts, completions)`` and lays them out as
    sampling and scoring do (:func:`frl.llm.finetune.encode_prompts`): ``<bos> prompt``
    left-padded, then ``completion <eos>`` right-padded, so a prompt sits at the same positions
    in pretraining as in generation. The loss counts the completion's tokens only.
    """
    from tensordict import TensorDict

    from frl import optim
    from frl.llm.finetune import encode_prompts
    from frl.llm.pretrain import make_pretrain_update

    update = make_pretrain_update(model, optim.adam(learning_rate))
    state = update.init(params)
    losses = []
    for _ in range(steps):
        key, k = random.split(key)
        prompts, completions = sample_fn(k, batch_size)
        head, head_padding = encode_prompts(tokenizer, prompts)
        tail, tail_mask = encode_batch([tokenizer.encode(c, eos=True) for c in completions])
        tokens = torch.cat([head, tail], -1)
        if tokens.shape[1] > model.config.max_len + 1:
            raise ValueError(
                f"pretrain_on_pairs: prompt + completion take {tokens.shape[1]} tokens, more than "
                f"the model's max_len + 1 = {model.config.max_len + 1}"
            )
        loss_mask = torch.cat([torch.zeros_like(head_padding), tail_mask], -1)[:, 1:]
        mask = torch.cat([~head_padding, tail_mask], -1)
        batch = TensorDict({"tokens": tokens, "mask": mask, "loss_mask": loss_mask}, [batch_size])
        state, metrics = update.step(state, batch)
        losses.append(float(metrics["loss"]))
    return state["params"], losses, key


def pretrain_on_addition(
    model,
    params,
    tokenizer,
    steps: int,
    key: Tensor,
    *,
    batch_size: int = 64,
    digits: int = 2,
    learning_rate: float = 1e-3,
):
    """:func:`pretrain_on_pairs` on ``"a+b=" -> "c"`` problems: ``(params, losses, key)``."""
    return pretrain_on_pairs(
        model,
        params,
        tokenizer,
        partial(addition_problems, digits=digits),
        steps,
        key,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )


def finetune_on_addition(
    model,
    params,
    tokenizer,
    key: Tensor,
    *,
    algorithm: str = "grpo",
    iterations: int = 80,
    learning_rate: float = 1e-4,
    temperature: float = 0.7,
    digits: int = 2,
):
    """RL on addition from pretrained ``params`` with :func:`addition_reward`: ``(params, history)``.

    :func:`frl.llm.finetune.rl_finetune` with ``"grpo"``: 16 problems x 8 samples per iteration,
    no KL term; ``"ppo"``: 128 problems, a zero-initialised value head, KL coefficient 0.02 to the
    pretrained model.
    """
    from frl.llm.finetune import rl_finetune

    return rl_finetune(
        model,
        params,
        tokenizer,
        key,
        partial(addition_problems, digits=digits),
        addition_reward,
        algorithm=algorithm,
        iterations=iterations,
        learning_rate=learning_rate,
        temperature=temperature,
        max_new_tokens=digits + 2,
        num_prompts=16 if algorithm == "grpo" else 128,
        kl_coef=0.0 if algorithm == "grpo" else 0.02,
    )
