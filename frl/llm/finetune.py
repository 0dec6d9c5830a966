"""RL fine-tuning plumbing: prompts in, sampled completions, rewards, a GRPO/RLOO update.

``sequence_log_probs`` scores completions under a model (prompt left-padded, completion
right-padded); ``grpo_iteration`` samples ``K`` completions for each of ``G`` prompts, rewards
them, and takes one step of :func:`frl.llm.rl.grpo_loss` (or ``rloo_loss``) against a frozen
reference model; ``ppo_iteration`` does InstructGPT-style PPO (value head, KL folded into the
per-token rewards); ``rl_finetune`` runs either for a number of iterations from a prompt sampler
and a reward function.
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
from frl.nn.layers import linear
from frl.optim import GradientTransformation
from frl.update import Update, make_update

__all__ = [
    "encode_prompts",
    "grpo_iteration",
    "make_ppo_update",
    "make_rl_update",
    "ppo_iteration",
    "rl_finetune",
    "sample_completions",
    "sequence_log_probs",
    "sequence_log_probs_and_values",
]


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
    return _completion_forward(model, params, prompt, prompt_padding, completion, mask)[0]


def _completion_forward(
    model: Transformer,
    params: TensorDictBase,
    prompt: Tensor,
    prompt_padding: Tensor,
    completion: Tensor,
    mask: Tensor,
    hidden: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Masked log-probs of the completion's tokens ``[B, N]`` and (if ``hidden``) the hidden states
    that predict them ``[B, N, d]``: one forward pass over ``prompt ++ completion[:-1]``."""
    P = prompt.shape[-1]
    seq = torch.cat([prompt, completion], -1)
    padding = torch.cat([prompt_padding, ~mask], -1)
    out = model.apply(params, seq[..., :-1], padding=padding[..., :-1], return_hidden=hidden)
    logits, states = out if hidden else (out, None)
    log_prob = rl.token_log_probs(logits[..., P - 1 :, :], completion) * mask.to(logits.dtype)
    return log_prob, None if states is None else states[..., P - 1 :, :]


def sample_completions(
    model: Transformer,
    params: TensorDictBase,
    tokenizer,
    prompts: Sequence[str],
    key: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    """``(prompt, prompt_padding, completion, mask, texts)``: one sampled completion per prompt."""
    prompt, padding = encode_prompts(tokenizer, prompts)
    completion, _, mask = generate(
        model, params, prompt, key, max_new_tokens, temperature=temperature, prompt_padding=padding
    )
    rows = zip(completion.tolist(), mask.tolist())
    texts = [tokenizer.decode([t for t, m in zip(row, keep) if m]) for row, keep in rows]
    return prompt, padding, completion, mask, texts


def make_rl_update(model: Transformer, optimizer: GradientTransformation, loss: str = "grpo", **kw) -> Update:
    """A pure update of ``grpo_loss`` or ``rloo_loss`` on batches from :func:`grpo_iteration`."""

    def log_prob_fn(params: TensorDictBase, batch: TensorDictBase) -> Tensor:
        return sequence_log_probs(
            model, params, batch["prompt"], batch["prompt_padding"], batch["completion"], batch["mask"]
        )

    fn = {"grpo": rl.grpo_loss, "rloo": rl.rloo_loss}[loss]
    return make_update(partial(fn, log_prob_fn=log_prob_fn, **kw), optimizer)


def _rewarded_completions(
    model: Transformer,
    lm_params: TensorDictBase,
    tokenizer,
    prompts: list[str],
    key: Tensor,
    max_new_tokens: int,
    temperature: float,
    reward_fn: Callable[[Sequence[str], Sequence[str]], Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One completion per prompt (:func:`sample_completions`) and its reward ``[B]``."""
    prompt, padding, completion, mask, texts = sample_completions(
        model, lm_params, tokenizer, prompts, key, max_new_tokens, temperature
    )
    return prompt, padding, completion, mask, reward_fn(prompts, texts).to(torch.float32)


def _completion_batch(
    prompt: Tensor, padding: Tensor, completion: Tensor, mask: Tensor, **fields: Tensor
) -> TensorDict:
    """The update's batch: the sampled tokens and per-completion ``fields``."""
    tokens = {"prompt": prompt, "prompt_padding": padding, "completion": completion, "mask": mask}
    return TensorDict({**tokens, **fields}, batch_size=[prompt.shape[0]])


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
    rloo_kl_coef: float = 0.0,
) -> tuple[TensorDictBase, dict[str, float]]:
    """Sample ``group_size`` completions per prompt, reward them, take one update step.

    ``advantages="grpo"``: group-normalised rewards (the KL term lives in ``grpo_loss``);
    ``"rloo"``: leave-one-out baselines of ``reward - rloo_kl_coef * sum_t (log pi - log pi_ref)``.
    """
    repeated = [p for p in prompts for _ in range(group_size)]
    prompt, padding, completion, mask, reward = _rewarded_completions(
        model, state["params"], tokenizer, repeated, key, max_new_tokens, temperature, reward_fn
    )
    with torch.no_grad():
        old = sequence_log_probs(model, state["params"], prompt, padding, completion, mask)
        ref = sequence_log_probs(model, ref_params, prompt, padding, completion, mask)
    if advantages == "grpo":
        adv = rl.group_advantages(reward.reshape(len(prompts), group_size))
    elif advantages == "rloo":
        shaped = reward - rloo_kl_coef * (old - ref).sum(-1)  # the sequence KL folded into the reward
        adv = rl.leave_one_out_advantages(shaped.reshape(len(prompts), group_size))
    else:
        raise ValueError(f"grpo_iteration: `advantages` must be 'grpo' or 'rloo', got {advantages!r}")
    batch = _completion_batch(
        prompt, padding, completion, mask, old_log_prob=old, ref_log_prob=ref, advantage=adv.reshape(-1)
    )
    state, metrics = update.step(state, batch, None)
    return state, {"reward": float(reward.mean()), **{k: float(v) for k, v in metrics.items()}}


def sequence_log_probs_and_values(
    model: Transformer,
    params: TensorDictBase,
    prompt: Tensor,
    prompt_padding: Tensor,
    completion: Tensor,
    mask: Tensor,
) -> tuple[Tensor, Tensor]:
    """Per-token log-probs and values ``V(prefix)`` of a completion: params ``{"lm": ..., "value": linear}``.

    The value of completion token ``t`` is read from the hidden state that predicts it (the
    prefix before it), as TRL's value head does.
    """
    log_prob, hidden = _completion_forward(
        model, params["lm"], prompt, prompt_padding, completion, mask, hidden=True
    )
    value = linear(params["value"], hidden).squeeze(-1) * mask.to(log_prob.dtype)
    return log_prob, value


def make_ppo_update(model: Transformer, optimizer: GradientTransformation, **kw) -> Update:
    """A pure update of :func:`frl.llm.rl.ppo_kl_loss` (policy and value head together)."""

    def log_prob_fn(params: TensorDictBase, batch: TensorDictBase) -> tuple[Tensor, Tensor]:
        return sequence_log_probs_and_values(
            model, params, batch["prompt"], batch["prompt_padding"], batch["completion"], batch["mask"]
        )

    return make_update(partial(rl.ppo_kl_loss, log_prob_fn=log_prob_fn, **kw), optimizer)


def ppo_iteration(
    model: Transformer,
    update: Update,
    state: TensorDictBase,
    ref_params: TensorDictBase,
    tokenizer,
    prompts: Sequence[str],
    reward_fn: Callable[[Sequence[str], Sequence[str]], Tensor],
    key: Tensor,
    *,
    max_new_tokens: int,
    kl_coef: float = 0.05,
    temperature: float = 1.0,
    epochs: int = 2,
    gamma: float = 1.0,
    lmbda: float = 0.95,
) -> tuple[TensorDictBase, dict[str, float]]:
    """InstructGPT-style PPO: sample, reward, fold the KL to the reference into per-token rewards,
    GAE with the value head, whitened advantages, ``epochs`` steps of ``ppo_kl_loss``."""
    params = state["params"]
    prompt, padding, completion, mask, reward = _rewarded_completions(
        model, params["lm"], tokenizer, list(prompts), key, max_new_tokens, temperature, reward_fn
    )
    with torch.no_grad():
        old, values = sequence_log_probs_and_values(model, params, prompt, padding, completion, mask)
        ref = sequence_log_probs(model, ref_params, prompt, padding, completion, mask)
        token_rewards = rl.kl_penalized_rewards(reward, old, ref, mask, kl_coef)
        advantage, target = rl.token_advantages(token_rewards, values, mask, gamma=gamma, lmbda=lmbda)
    batch = _completion_batch(
        prompt,
        padding,
        completion,
        mask,
        old_log_prob=old,
        advantage=advantage,
        value_target=target,
        state_value=values,
    )
    for _ in range(epochs):
        state, metrics = update.step(state, batch, None)
    kl = float(rl.masked_mean(old - ref, mask) * mask.sum() / mask.shape[0])
    return state, {"reward": float(reward.mean()), "kl": kl, **{k: float(v) for k, v in metrics.items()}}


def rl_finetune(
    model: Transformer,
    params: TensorDictBase,
    tokenizer,
    key: Tensor,
    prompt_fn: Callable[[Tensor, int], tuple[Sequence[str], object]],
    reward_fn: Callable[[Sequence[str], Sequence[str]], Tensor],
    *,
    algorithm: str = "grpo",
    iterations: int = 80,
    learning_rate: float = 1e-4,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
    num_prompts: int = 16,
    group_size: int = 8,
    kl_coef: float = 0.0,
    value_coef: float = 0.1,
    epochs: int = 2,
) -> tuple[TensorDictBase, list[dict[str, float]]]:
    """RL fine-tuning from pretrained ``params``, which also serve as the frozen reference.

    Each iteration draws ``prompt_fn(key, num_prompts)[0]`` and takes one
    :func:`grpo_iteration` (``algorithm="grpo"`` or ``"rloo"``: ``group_size`` samples per prompt,
    GRPO with a k3 KL term weighted ``kl_coef`` in the loss, RLOO with ``kl_coef`` times the
    sequence KL subtracted from the reward) or one :func:`ppo_iteration` (``"ppo"``: one
    sample per prompt, ``epochs`` steps, a zero-initialised value head, ``kl_coef`` times the
    per-token KL folded into the reward), with Adam at ``learning_rate``.
    Returns the tuned language-model params and each iteration's metrics (``reward``, ``loss``,
    ``kl`` for PPO).
    """
    from frl import optim, random
    from frl.nn.initializers import zeros
    from frl.nn.layers import linear_init

    if algorithm in ("grpo", "rloo"):
        kw = {"kl_coef": kl_coef} if algorithm == "grpo" else {}
        update = make_rl_update(model, optim.adam(learning_rate), algorithm, **kw)
        state = update.init(params.clone())
    elif algorithm == "ppo":
        update = make_ppo_update(model, optim.adam(learning_rate), value_coef=value_coef)
        head = linear_init(random.key(3), model.config.d_model, 1, w_init=zeros(), b_init=zeros())
        state = update.init(TensorDict({"lm": params.clone(), "value": head}, []))
    else:
        raise ValueError(f"rl_finetune: `algorithm` must be 'grpo', 'rloo' or 'ppo', got {algorithm!r}")
    common = dict(max_new_tokens=max_new_tokens, temperature=temperature)
    history = []
    for _ in range(iterations):
        key, k_prompts, k_sample = random.split(key, 3)
        prompts = list(prompt_fn(k_prompts, num_prompts)[0])
        if algorithm == "ppo":
            state, metrics = ppo_iteration(
                model, update, state, params, tokenizer, prompts, reward_fn, k_sample,
                kl_coef=kl_coef, epochs=epochs, **common,
            )  # fmt: skip
        else:
            state, metrics = grpo_iteration(
                model, update, state, params, tokenizer, prompts, reward_fn, k_sample,
                group_size=group_size, advantages=algorithm, rloo_kl_coef=kl_coef, **common,
            )  # fmt: skip
        history.append(metrics)
    return (state["params", "lm"] if algorithm == "ppo" else state["params"]), history
