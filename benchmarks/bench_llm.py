"""The language model, end to end on one thread: addition learned by pretraining then RL, and speed.

1. Addition (2 digits): pretrain a 2-layer model on the answers, then fine-tune it with GRPO and
   (separately, from the same checkpoint) with PPO + a KL penalty and a value head; greedy
   exact match on 256 held-out problems before and after, and the wall time of each whole run.
2. Sentiment dialogue (frl.llm.dialogue): pretrain on a small dialogue grammar, then PPO against
   VADER sentiment with no KL, a weak KL, a strong KL, and a composite reward (sentiment where
   the answer is grammatical, -1 elsewhere) with a weak KL: sampled sentiment, well-formedness,
   distinct-2 and KL to the pretrained model for each (target: the weak KL hacks the reward,
   the strong KL and the composite reach sentiment >= 0.5 with well-formedness >= 0.85).
3. Generation tokens/s with and without the KV cache, plain-math vs ``scaled_dot_product_attention``
   (a 4-layer, 128-wide model, 16 x 96 tokens).
4. One optimisation step of the next-token loss, eager vs ``frl.compile``.

    python benchmarks/bench_llm.py [--pretrain-steps 600] [--rl-iterations 80]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, time_call, write_json  # sets threads and cache first

# isort: split
import torch
from tensordict import TensorDict

import frl
from frl import optim, random
from frl.llm import Transformer, TransformerConfig, generate
from frl.llm.dialogue import sentiment_experiment
from frl.llm.pretrain import make_pretrain_update
from frl.llm.tasks import (
    ADDITION_ALPHABET,
    addition_exact_match,
    finetune_on_addition,
    pretrain_on_addition,
)
from frl.llm.tokenizer import CharTokenizer


def addition(args, records: list, rows: list) -> None:
    tok = CharTokenizer.train(ADDITION_ALPHABET)
    model = Transformer(
        TransformerConfig(vocab_size=tok.vocab_size, max_len=16, d_model=64, n_heads=4, n_layers=2)
    )
    start = time.perf_counter()
    params, _, key = pretrain_on_addition(
        model, model.init(random.key(0)), tok, args.pretrain_steps, random.key(1)
    )
    pretrain_s = time.perf_counter() - start
    before = addition_exact_match(model, params, tok)

    results = {}
    for algorithm in ("grpo", "ppo"):
        t0 = time.perf_counter()
        tuned, _ = finetune_on_addition(
            model, params, tok, key, algorithm=algorithm, iterations=args.rl_iterations
        )
        results[algorithm] = (time.perf_counter() - t0, addition_exact_match(model, tuned, tok))
    (grpo_s, after_grpo), (ppo_s, after_ppo) = results["grpo"], results["ppo"]
    for name, after, rl_s in (("GRPO", after_grpo, grpo_s), ("PPO + KL", after_ppo, ppo_s)):
        total = pretrain_s + rl_s
        rows.append([f"addition, pretrain + {name}", before, after, after - before, total])
        records.append(
            {
                "case": f"addition {name}",
                "before": before,
                "after": after,
                "pretrain_s": pretrain_s,
                "rl_s": rl_s,
            }
        )


def sentiment(records: list, rows: list) -> None:
    for row in sentiment_experiment():
        kl_coef = "-" if row["kl_coef"] is None else row["kl_coef"]
        figures = [row["sentiment"], row["well_formed"], row["distinct_2"], row["kl"], row["seconds"]]
        rows.append([row["setting"], kl_coef, *figures])
        records.append({"case": f"sentiment dialogue, {row['setting']}", **row})
        print(f"  {row['setting']}: {row['samples'][-1]!r}")


def speed(records: list, rows: list) -> None:
    model = Transformer(TransformerConfig(vocab_size=512, max_len=128, d_model=128, n_heads=4, n_layers=4))
    params = model.init(random.key(0))
    prompts = random.randint(random.key(1), (16, 32), 3, 512)
    cases = (
        ("generation, KV cache", True, "math"),
        ("generation, KV cache, sdpa attention", True, "sdpa"),
        ("generation, recompute", False, "math"),
        ("generation, recompute, sdpa attention", False, "sdpa"),
    )
    for label, use_cache, attention in cases:
        seconds = time_call(
            lambda use_cache=use_cache, attention=attention: generate(
                model, params, prompts, random.key(2), 96, use_cache=use_cache, attention=attention
            ),
            repeats=3,
            min_seconds=0.5,
            warmup=1,
        )
        rows.append([label, 16 * 96 / seconds, "tokens/s"])
        records.append({"case": label, "tokens_per_s": 16 * 96 / seconds})
    update = make_pretrain_update(model, optim.adam(1e-3))
    state = update.init(params)
    tokens = random.randint(random.key(3), (32, 64), 3, 512)
    batch = TensorDict({"tokens": tokens, "mask": torch.ones_like(tokens, dtype=torch.bool)}, [32])
    eager = time_call(lambda: update.step(state, batch), repeats=3, min_seconds=0.5, warmup=1)
    compiled_step = frl.compile(update.step)
    t0 = time.perf_counter()
    compiled_step(state, batch)
    compile_s = time.perf_counter() - t0
    compiled = time_call(lambda: compiled_step(state, batch), repeats=3, min_seconds=0.5, warmup=1)
    rows.append(["next-token update [32 x 64], eager", eager * 1e3, "ms"])
    rows.append([f"next-token update, compiled ({compile_s:.0f} s to compile)", compiled * 1e3, "ms"])
    records.append(
        {"case": "update", "eager_ms": eager * 1e3, "compiled_ms": compiled * 1e3, "compile_s": compile_s}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--rl-iterations", type=int, default=80)
    args = parser.parse_args()
    records: list = []
    rows: list = []
    addition(args, records, rows)
    print_table(
        "Addition: greedy exact match on 256 held-out 2-digit problems (target: +0.10, whole run < 180 s)",
        ["run", "before RL", "after RL", "gain", "wall s (pretrain + RL)"],
        rows,
    )
    rows = []
    sentiment(records, rows)
    print_table(
        "Sentiment dialogue: PPO against VADER sentiment, 256 sampled answers (T = 1) per model "
        "(target: weak KL hacked; strong KL and composite: sentiment >= 0.5, well-formed >= 0.85)",
        ["model", "KL coef", "sentiment", "well-formed", "distinct-2", "KL to ref", "wall s"],
        rows,
    )
    rows = []
    speed(records, rows)
    print_table("Speed (1 thread)", ["case", "value", "unit"], rows)
    print(f"\nwrote {write_json('bench_llm', {'results': records})}")


if __name__ == "__main__":
    main()
