"""Tasks for the language model: multi-digit addition (generated) with a verifiable reward, and
real text that ships with Python (``pydoc_data.topics``: 79 help topics, 465k characters).

``addition_problems(key, n, digits)`` draws ``a + b`` with up to ``digits`` digits each from a
frl key and returns prompts ``"a+b="`` and answers ``"c"``; the text a model learns is
``"a+b=c"`` followed by the end token. ``addition_reward(prompts, completions)`` is 1 where a
completion (up to its end token) is exactly the sum, else 0. ``encode_batch`` pads token lists
into ``tokens [B, T]`` and ``mask [B, T]``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """Fit the answers of ``"a+b=c"`` (the tokens after ``=``) with Adam from ``params``, drawing
    problems from ``key``: ``(params, losses, key)``."""
    from tensordict import TensorDict

    from frl import optim
    from frl.llm.pretrain import make_pretrain_update

    update = make_pretrain_update(model, optim.adam(learning_rate))
    state = update.init(params)
    eq = tokenizer.encode("=")[0]
    length = 3 * digits + 6  # <bos> a + b = c <eos>, and a spare column
    losses = []
    for _ in range(steps):
        key, k = random.split(key)
        prompts, answers = addition_problems(k, batch_size, digits)
        encoded = [tokenizer.encode(p + a, bos=True, eos=True) for p, a in zip(prompts, answers)]
        tokens, mask = encode_batch(encoded, length)
        loss_mask = (((tokens == eq).cumsum(-1) > 0) & mask)[:, 1:]
        batch = TensorDict({"tokens": tokens, "mask": mask, "loss_mask": loss_mask}, [batch_size])
        state, metrics = update.step(state, batch)
        losses.append(float(metrics["loss"]))
    return state["params"], losses, key


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

    ``"grpo"``: 16 problems x 8 samples per iteration, no KL term. ``"ppo"``: 128 problems, a
    zero-initialised value head, KL coefficient 0.02 to the pretrained model. ``history`` holds
    each iteration's metrics (``reward``, ``loss``, and ``kl`` for PPO).
    """
    from tensordict import TensorDict

    from frl import optim
    from frl.llm.finetune import grpo_iteration, make_ppo_update, make_rl_update, ppo_iteration
    from frl.nn.initializers import zeros
    from frl.nn.layers import linear_init

    if algorithm == "grpo":
        update = make_rl_update(model, optim.adam(learning_rate), "grpo", kl_coef=0.0)
        state = update.init(params.clone())
    elif algorithm == "ppo":
        update = make_ppo_update(model, optim.adam(learning_rate), value_coef=0.1)
        head = linear_init(random.key(3), model.config.d_model, 1, w_init=zeros(), b_init=zeros())
        state = update.init(TensorDict({"lm": params.clone(), "value": head}, []))
    else:
        raise ValueError(f"finetune_on_addition: `algorithm` must be 'grpo' or 'ppo', got {algorithm!r}")
    history = []
    for _ in range(iterations):
        key, k_prompts, k_sample = random.split(key, 3)
        common = dict(max_new_tokens=digits + 2, temperature=temperature)
        if algorithm == "grpo":
            prompts, _ = addition_problems(k_prompts, 16, digits)
            state, metrics = grpo_iteration(
                model,
                update,
                state,
                params,
                tokenizer,
                prompts,
                addition_reward,
                k_sample,
                group_size=8,
                **common,
            )
        else:
            prompts, _ = addition_problems(k_prompts, 128, digits)
            state, metrics = ppo_iteration(
                model,
                update,
                state,
                params,
                tokenizer,
                prompts,
                addition_reward,
                k_sample,
                kl_coef=0.02,
                **common,
            )
        history.append(metrics)
    return (state["params"] if algorithm == "grpo" else state["params", "lm"]), history
