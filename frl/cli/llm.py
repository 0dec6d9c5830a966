"""``frl llm``: pretrain a small language model, fine-tune it with RL, sample from it.

::

    frl llm pretrain --task addition --steps 600 --out runs/lm-add
    frl llm finetune runs/lm-add --algorithm grpo --iterations 80 --out runs/lm-add-grpo
    frl llm pretrain --task dialogue --steps 1000 --out runs/lm-chat
    frl llm finetune runs/lm-chat --algorithm ppo --reward composite --kl-coef 0.01 --out runs/lm-chat-ppo
    frl llm pretrain --task pydoc --steps 300 --out runs/lm-pydoc
    frl llm sample runs/lm-chat-ppo "how was the movie?" --samples 4

A run folder holds ``tokenizer.json``, ``model.pt`` (the task, the transformer's config and its
params, written atomically) and ``metrics.json`` (the task's evaluation; for a fine-tuned model
also its reference's and each iteration's metrics). Tasks:

* ``addition``: 2-digit ``a+b=c``, character tokens; evaluation: greedy exact match on 256
  held-out problems; reward ``addition`` (1 for the exact sum).
* ``dialogue``: the grammar of :mod:`frl.llm.dialogue`, BPE word tokens; evaluation: sampled
  sentiment, well-formedness, distinct-2, KL to the reference; rewards ``sentiment`` (VADER) or
  ``composite`` (sentiment where well formed, -1 elsewhere).
* ``pydoc``: Python's help topics, BPE (256 merges), 64-token windows; evaluation: held-out
  perplexity. A language model only: it has no prompts to fine-tune on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import Any

__all__ = ["add_llm_parser", "cmd_llm"]

TASKS = ("addition", "dialogue", "pydoc")
REWARDS = {"addition": ("addition",), "dialogue": ("sentiment", "composite"), "pydoc": ()}


class LLMUsageError(ValueError):
    """Bad input to ``frl llm``: the CLI prints it on one line and exits with code 2."""


def add_llm_parser(sub: Any) -> None:
    """Register ``frl llm {pretrain,finetune,sample}`` on the ``frl`` subparsers."""
    llm = sub.add_parser("llm", help="pretrain, fine-tune (RL) and sample a small language model")
    cmds = llm.add_subparsers(dest="llm_command", parser_class=type(llm))

    pre = cmds.add_parser("pretrain", help="pretrain a transformer on a task's text")
    pre.add_argument("--task", choices=TASKS, default="addition")
    pre.add_argument("--steps", type=int, default=None, help="Adam steps (default: 600, 1000, 300 by task)")
    pre.add_argument("--out", required=True, help="run folder to write")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--d-model", type=int, default=64)
    pre.add_argument("--layers", type=int, default=2)
    pre.add_argument("--heads", type=int, default=4)
    pre.add_argument("--learning-rate", type=float, default=None, help="default 1e-3 (pydoc: 2e-3)")

    fine = cmds.add_parser("finetune", help="fine-tune a pretrained run with RL against a reward")
    fine.add_argument("run_dir", help="a folder written by `frl llm pretrain`")
    fine.add_argument("--algorithm", choices=("grpo", "rloo", "ppo"), default="grpo")
    fine.add_argument(
        "--reward", default=None, help="addition; sentiment or composite (default: the task's first)"
    )
    fine.add_argument("--iterations", type=int, default=80)
    fine.add_argument("--kl-coef", type=float, default=None, help="default 0 (GRPO, RLOO), 0.02 (PPO)")
    fine.add_argument("--learning-rate", type=float, default=None, help="default 1e-4 (dialogue: 3e-4)")
    fine.add_argument("--temperature", type=float, default=None, help="sampling temperature while training")
    fine.add_argument("--seed", type=int, default=0)
    fine.add_argument("--out", required=True)

    sample = cmds.add_parser("sample", help="sample completions of a prompt from a run")
    sample.add_argument("run_dir")
    sample.add_argument("prompt")
    sample.add_argument("--samples", type=int, default=4)
    sample.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    sample.add_argument("--max-new-tokens", type=int, default=None)
    sample.add_argument("--seed", type=int, default=0)


def _model_for(task: str, vocab_size: int, args: argparse.Namespace):
    from frl.llm.model import Transformer, TransformerConfig

    max_len = {"addition": 16, "dialogue": 24, "pydoc": 64}[task]
    if args.d_model % args.heads:
        raise LLMUsageError(f"--d-model {args.d_model} must be a multiple of --heads {args.heads}")
    config = TransformerConfig(
        vocab_size=vocab_size, max_len=max_len, d_model=args.d_model, n_heads=args.heads, n_layers=args.layers
    )
    return Transformer(config)


def _evaluate(task: str, model, params, reference, tokenizer) -> dict[str, Any]:
    from frl import random

    if task == "addition":
        from frl.llm.tasks import addition_exact_match

        return {"exact_match": addition_exact_match(model, params, tokenizer)}
    if task == "dialogue":
        from frl.llm.dialogue import evaluate_dialogue

        return evaluate_dialogue(model, params, reference, tokenizer, random.key(999))
    return {"perplexity": _pydoc_perplexity(model, params, tokenizer)}


def _pydoc_ids(tokenizer) -> tuple[Any, Any]:
    import torch

    from frl.llm.tasks import python_docs_corpus

    text = python_docs_corpus(120_000)
    return torch.tensor(tokenizer.encode(text[:100_000])), torch.tensor(tokenizer.encode(text[100_000:]))


def _pydoc_perplexity(model, params, tokenizer) -> float:
    import torch
    from tensordict import TensorDict

    from frl import random
    from frl.llm.pretrain import next_token_loss
    from frl.llm.tasks import text_windows

    tokens = text_windows(_pydoc_ids(tokenizer)[1], random.key(7), 64, model.config.max_len)
    batch = TensorDict({"tokens": tokens, "mask": torch.ones_like(tokens, dtype=torch.bool)}, [64])
    with torch.no_grad():
        return float(next_token_loss(params, batch, model=model)[1]["perplexity"])


def _save_run(out: Path, task: str, model, tokenizer, params, metrics: dict[str, Any]) -> None:
    """``tokenizer.json``, then ``model.pt`` (task, config, params; written atomically), then
    ``metrics.json``: a folder with ``model.pt`` is complete."""
    from frl.driver import checkpoint

    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out / "tokenizer.json")
    payload = {"task": task, "config": dataclasses.asdict(model.config), "params": params}
    checkpoint.save(out / "model.pt", payload)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))


def _load_run(run_dir: str):
    from frl.driver import checkpoint
    from frl.llm.model import Transformer, TransformerConfig
    from frl.llm.tokenizer import load

    folder = Path(run_dir)
    missing = [n for n in ("model.pt", "tokenizer.json") if not (folder / n).exists()]
    if missing:
        raise LLMUsageError(f"{run_dir} is not a `frl llm` run folder (missing {', '.join(missing)})")
    payload = checkpoint.load(folder / "model.pt")
    model = Transformer(TransformerConfig(**payload["config"]))
    return payload["task"], model, load(folder / "tokenizer.json"), payload["params"]


def _show(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


def cmd_pretrain(args: argparse.Namespace) -> int:
    import time

    import torch

    from frl import random

    torch.set_num_threads(1)
    default_steps = {"addition": 600, "dialogue": 1000, "pydoc": 300}
    steps = args.steps if args.steps is not None else default_steps[args.task]
    k_init, k_train = random.split(random.key(args.seed))
    start = time.perf_counter()
    if args.task == "addition":
        from frl.llm.tasks import ADDITION_ALPHABET, pretrain_on_addition
        from frl.llm.tokenizer import CharTokenizer

        tokenizer = CharTokenizer.train(ADDITION_ALPHABET)
        model = _model_for(args.task, tokenizer.vocab_size, args)
        params, losses, _ = pretrain_on_addition(
            model, model.init(k_init), tokenizer, steps, k_train, learning_rate=args.learning_rate or 1e-3
        )
    elif args.task == "dialogue":
        from frl.llm.dialogue import dialogue_pairs, dialogue_tokenizer
        from frl.llm.tasks import pretrain_on_pairs

        tokenizer = dialogue_tokenizer()
        model = _model_for(args.task, tokenizer.vocab_size, args)
        params, losses, _ = pretrain_on_pairs(
            model,
            model.init(k_init),
            tokenizer,
            dialogue_pairs,
            steps,
            k_train,
            learning_rate=args.learning_rate or 1e-3,
        )
    else:
        params, losses, tokenizer, model = _pretrain_pydoc(args, steps, k_init, k_train)
    seconds = time.perf_counter() - start
    metrics = {"task": args.task, "steps": steps, "seconds": seconds, "first_loss": losses[0]}
    metrics.update(final_loss=sum(losses[-20:]) / len(losses[-20:]))
    metrics.update(_evaluate(args.task, model, params, params, tokenizer))
    _save_run(Path(args.out), args.task, model, tokenizer, params, metrics)
    print(f"pretrained on {args.task} in {seconds:.0f} s: {_show(metrics)}")
    print(f"wrote {args.out}")
    return 0


def _pretrain_pydoc(args: argparse.Namespace, steps: int, k_init, k_train):
    import torch
    from tensordict import TensorDict

    from frl import optim, random
    from frl.llm.pretrain import make_pretrain_update
    from frl.llm.tasks import python_docs_corpus, text_windows
    from frl.llm.tokenizer import BPETokenizer

    tokenizer = BPETokenizer.train(python_docs_corpus(100_000), num_merges=256)
    model = _model_for("pydoc", tokenizer.vocab_size, args)
    train_ids, _ = _pydoc_ids(tokenizer)
    update = make_pretrain_update(model, optim.adam(args.learning_rate or 2e-3))
    state = update.init(model.init(k_init))
    losses = []
    for _ in range(steps):
        k_train, k = random.split(k_train)
        tokens = text_windows(train_ids, k, 16, model.config.max_len)
        batch = TensorDict({"tokens": tokens, "mask": torch.ones_like(tokens, dtype=torch.bool)}, [16])
        state, metrics = update.step(state, batch)
        losses.append(float(metrics["loss"]))
    return state["params"], losses, tokenizer, model


def cmd_finetune(args: argparse.Namespace) -> int:
    import time

    import torch

    from frl import random
    from frl.llm.finetune import rl_finetune

    torch.set_num_threads(1)
    task, model, tokenizer, reference = _load_run(args.run_dir)
    if not REWARDS[task]:
        raise LLMUsageError(f"task {task!r} is a language model only: fine-tune an addition or dialogue run")
    reward = args.reward or REWARDS[task][0]
    if reward not in REWARDS[task]:
        raise LLMUsageError(
            f"--reward {reward!r} does not fit task {task!r}: choose from {list(REWARDS[task])}"
        )
    if args.iterations < 1:
        raise LLMUsageError(f"--iterations must be >= 1, got {args.iterations}")
    if task == "addition":
        from frl.llm.tasks import addition_problems, addition_reward

        prompt_fn = partial(addition_problems, digits=2)
        reward_fn, max_new, temperature, lr = addition_reward, 4, 0.7, 1e-4
    else:
        from frl.llm.dialogue import composite_sentiment_reward, dialogue_pairs
        from frl.llm.rewards import sentiment_reward

        reward_fn = sentiment_reward if reward == "sentiment" else composite_sentiment_reward
        prompt_fn, max_new, temperature, lr = dialogue_pairs, 10, 1.0, 3e-4
    kl_coef = args.kl_coef if args.kl_coef is not None else (0.02 if args.algorithm == "ppo" else 0.0)
    start = time.perf_counter()
    params, history = rl_finetune(
        model,
        reference,
        tokenizer,
        random.key(args.seed),
        prompt_fn,
        reward_fn,
        algorithm=args.algorithm,
        iterations=args.iterations,
        learning_rate=args.learning_rate or lr,
        temperature=args.temperature if args.temperature is not None else temperature,
        max_new_tokens=max_new,
        num_prompts=16 if args.algorithm != "ppo" else (128 if task == "addition" else 64),
        kl_coef=kl_coef,
    )
    seconds = time.perf_counter() - start
    for it in range(0, len(history), max(1, len(history) // 8)):
        print(f"{args.algorithm} iteration {it:4d}  sampled reward {history[it]['reward']:.3f}")
    before = _evaluate(task, model, reference, reference, tokenizer)
    after = _evaluate(task, model, params, reference, tokenizer)
    metrics = {
        "task": task,
        "algorithm": args.algorithm,
        "reward": reward,
        "kl_coef": kl_coef,
        "iterations": args.iterations,
        "seconds": seconds,
        "reference": before,
        **after,
        "history": history,
    }
    _save_run(Path(args.out), task, model, tokenizer, params, metrics)
    print(f"reference: {_show(before)}")
    print(f"after {args.algorithm} ({seconds:.0f} s): {_show(after)}")
    for text in after.get("samples", []):
        print(f"  {text}")
    print(f"wrote {args.out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from frl import random
    from frl.llm.finetune import sample_completions

    _, model, tokenizer, params = _load_run(args.run_dir)
    prompt_len = len(tokenizer.encode(args.prompt, bos=True))
    budget = model.config.max_len - prompt_len
    max_new = args.max_new_tokens if args.max_new_tokens is not None else min(budget, 16)
    if not 1 <= max_new <= budget:
        raise LLMUsageError(
            f"--max-new-tokens must be in 1..{budget} (the prompt takes {prompt_len} of the model's "
            f"{model.config.max_len} positions), got {max_new}"
        )
    prompts = [args.prompt] * args.samples
    *_, texts = sample_completions(
        model, params, tokenizer, prompts, random.key(args.seed), max_new, args.temperature
    )
    for text in texts:
        print(f"{args.prompt}{text}")
    return 0


_COUNTS = ("--steps", "--iterations", "--samples", "--d-model", "--layers", "--heads", "--max-new-tokens")
_RATES = ("learning_rate", "kl_coef", "temperature")


def _check_input(args: argparse.Namespace) -> None:
    """Counts positive and within int64 (``check_positive``, as ``frl train``), seeds in
    ``0..INT_MAX``, finite non-negative rates (a positive learning rate), and an ``--out`` that
    is or can become a folder: one line each, before anything is built."""
    import math

    from frl.cli.common import INT_MAX, check_out, check_positive

    check_positive(args, *(flag for flag in _COUNTS if hasattr(args, flag[2:].replace("-", "_"))))
    seed = getattr(args, "seed", 0)
    if not 0 <= seed <= INT_MAX:
        raise LLMUsageError(f"--seed must be in 0..{INT_MAX}, got {seed}")
    for name in _RATES:
        value = getattr(args, name, None)
        if value is None or (math.isfinite(value) and value >= 0 and (value > 0 or name != "learning_rate")):
            continue
        bound = "> 0" if name == "learning_rate" else ">= 0"
        raise LLMUsageError(f"--{name.replace('_', '-')} must be a finite number {bound}, got {value}")
    check_out("--out", getattr(args, "out", None))


def cmd_llm(args: argparse.Namespace) -> int:
    """Dispatch ``frl llm``; :class:`LLMUsageError` for bad input."""
    commands = {"pretrain": cmd_pretrain, "finetune": cmd_finetune, "sample": cmd_sample}
    if args.llm_command is None:
        raise LLMUsageError("choose an llm command: pretrain, finetune, sample (frl llm COMMAND --help)")
    _check_input(args)
    try:
        return commands[args.llm_command](args)
    except (RuntimeError, MemoryError) as err:
        if not isinstance(err, MemoryError) and "allocate" not in str(err):
            raise
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LLMUsageError(
            f"the model or its batch cannot be allocated ({first[:160]}); check --d-model, --layers, "
            "--heads and --samples"
        ) from None
