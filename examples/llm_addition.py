"""A language model learns addition: pretraining on answers, then RL with a verifiable reward.

A 2-layer transformer (frl.llm.model) reads "a+b=" and writes the sum. Pretraining fits the
answers with the next-token loss; then GRPO samples 8 answers per problem, rewards the correct
ones (1) and pushes probability toward answers that beat their group's mean, against the frozen
pretrained model as reference. Exact match is measured greedily on held-out problems.

    python examples/llm_addition.py [--pretrain-steps 600] [--rl-iterations 80] [--algorithm grpo|ppo]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from tensordict import TensorDict

from frl import optim, random
from frl.llm import CharTokenizer, Transformer, TransformerConfig
from frl.llm.finetune import grpo_iteration, make_ppo_update, make_rl_update, ppo_iteration
from frl.llm.tasks import (
    ADDITION_ALPHABET,
    addition_exact_match,
    addition_problems,
    addition_reward,
    pretrain_on_addition,
)
from frl.nn.initializers import zeros
from frl.nn.layers import linear_init


def main(argv: Sequence[str] | None = None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--rl-iterations", type=int, default=80)
    parser.add_argument("--algorithm", choices=("grpo", "ppo"), default="grpo")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()

    # TOKENIZER AND MODEL
    tok = CharTokenizer.train(ADDITION_ALPHABET)
    model = Transformer(
        TransformerConfig(vocab_size=tok.vocab_size, max_len=16, d_model=64, n_heads=4, n_layers=2)
    )

    # PRETRAINING: the next-token loss on the answers after "=" (frl.llm.tasks.pretrain_on_addition)
    reference, losses, key = pretrain_on_addition(
        model, model.init(random.key(0)), tok, args.pretrain_steps, random.key(1)
    )
    print(f"pretraining: loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} Adam steps")
    before = addition_exact_match(model, reference, tok)
    print(f"after pretraining: exact match {before:.3f} ({time.time() - start:.0f} s)")

    # RL FINE-TUNING with the verifiable reward
    if args.algorithm == "grpo":
        rl = make_rl_update(model, optim.adam(1e-4), "grpo", kl_coef=0.0)
        rl_state = rl.init(reference.clone())
    else:
        rl = make_ppo_update(model, optim.adam(1e-4), value_coef=0.1)
        head = linear_init(random.key(3), 64, 1, w_init=zeros(), b_init=zeros())
        rl_state = rl.init(TensorDict({"lm": reference.clone(), "value": head}, []))
    for it in range(args.rl_iterations):
        key, k_prompts, k_sample = random.split(key, 3)
        if args.algorithm == "grpo":
            prompts, _ = addition_problems(k_prompts, 16, 2)
            rl_state, m = grpo_iteration(
                model,
                rl,
                rl_state,
                reference,
                tok,
                prompts,
                addition_reward,
                k_sample,
                group_size=8,
                max_new_tokens=4,
                temperature=0.7,
            )
        else:
            prompts, _ = addition_problems(k_prompts, 128, 2)
            rl_state, m = ppo_iteration(
                model,
                rl,
                rl_state,
                reference,
                tok,
                prompts,
                addition_reward,
                k_sample,
                max_new_tokens=4,
                kl_coef=0.02,
                temperature=0.7,
            )
        if it % 20 == 0:
            print(f"{args.algorithm} iteration {it:3d}  sampled reward {m['reward']:.3f}")
    params = rl_state["params"] if args.algorithm == "grpo" else rl_state["params", "lm"]
    after = addition_exact_match(model, params, tok)
    elapsed = time.time() - start
    print(f"after {args.algorithm}: exact match {after:.3f} (was {before:.3f}); {elapsed:.0f} s in all")
    return before, after


if __name__ == "__main__":
    main()
