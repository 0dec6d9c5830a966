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

from frl import random
from frl.llm import CharTokenizer, Transformer, TransformerConfig
from frl.llm.tasks import (
    ADDITION_ALPHABET,
    addition_exact_match,
    finetune_on_addition,
    pretrain_on_addition,
)


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

    # RL FINE-TUNING with the verifiable reward (frl.llm.tasks.finetune_on_addition: GRPO samples
    # 8 answers per problem; PPO adds a value head and a KL penalty to the pretrained model)
    params, history = finetune_on_addition(
        model, reference, tok, key, algorithm=args.algorithm, iterations=args.rl_iterations
    )
    for it in range(0, len(history), 20):
        print(f"{args.algorithm} iteration {it:3d}  sampled reward {history[it]['reward']:.3f}")
    after = addition_exact_match(model, params, tok)
    elapsed = time.time() - start
    print(f"after {args.algorithm}: exact match {after:.3f} (was {before:.3f}); {elapsed:.0f} s in all")
    return before, after


if __name__ == "__main__":
    main()
