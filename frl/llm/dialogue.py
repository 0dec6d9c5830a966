"""A small dialogue grammar, and the sentiment fine-tuning experiment that shows reward hacking.

The grammar has two kinds of turn, each answer about the noun the question names::

    how was the <noun>?           ->  " the <noun> was [<adverb> ]<adjective>."
    did you like the <noun>?      ->  " i <verb> the <noun>."

with 8 nouns, 15 adjectives (5 positive, 5 negative, 5 neutral), 3 adverbs and 5 verbs, so a
model pretrained on it answers with a sentiment near zero on average. ``dialogue_pairs(key, n)``
draws ``(prompts, answers)``; :func:`dialogue_well_formed` is 1 where an answer is a sentence of
the grammar about the question's noun (``<eos>`` reached: a completion cut off at the token budget
is not well formed).

The experiment (:func:`sentiment_experiment`): fine-tune the pretrained model with PPO (value
head, KL to the pretrained model folded into the reward) to maximise VADER sentiment. The best
well-formed answer scores 0.66 ("the food was very great."), while strings of positive words
score up to 0.98 ("great great great ...") but are not sentences, so:

* a weak KL coefficient lets the policy hack the reward: sentiment rises past the grammar's
  ceiling while the well-formedness rate collapses;
* a strong KL coefficient keeps the policy near the grammar, and it learns to pick positive
  answers;
* a composite reward (sentiment where the answer is well formed, -1 elsewhere) also keeps it
  well formed, with a weak KL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

from frl import random
from frl.llm.tokenizer import BPETokenizer

__all__ = [
    "ADJECTIVES",
    "NOUNS",
    "SETTINGS",
    "composite_sentiment_reward",
    "dialogue_pairs",
    "dialogue_tokenizer",
    "dialogue_well_formed",
    "evaluate_dialogue",
    "sentiment_experiment",
]

NOUNS = ("food", "movie", "trip", "show", "game", "book", "party", "class")
POSITIVE = ("good", "great", "lovely", "fun", "nice")
NEGATIVE = ("bad", "awful", "boring", "sad", "terrible")
NEUTRAL = ("okay", "fine", "long", "short", "loud")
ADJECTIVES = (*POSITIVE, *NEGATIVE, *NEUTRAL)
ADVERBS = ("very", "really", "quite")
VERBS = ("loved", "liked", "enjoyed", "hated", "disliked")

_QUESTION = re.compile(r"(how was|did you like) the (\w+)\?")
_WORDS = {k: "|".join(v) for k, v in (("adj", ADJECTIVES), ("adv", ADVERBS), ("verb", VERBS))}


def dialogue_pairs(key: Tensor, n: int) -> tuple[list[str], list[str]]:
    """``n`` question/answer pairs of the grammar, drawn uniformly from ``key``."""
    k_kind, k_noun, k_adj, k_adv, k_verb = random.split(key, 5)
    kind = random.randint(k_kind, (n,), 0, 2).tolist()
    noun = random.randint(k_noun, (n,), 0, len(NOUNS)).tolist()
    adj = random.randint(k_adj, (n,), 0, len(ADJECTIVES)).tolist()
    adv = random.randint(k_adv, (n,), 0, len(ADVERBS) + 1).tolist()  # the last value: no adverb
    verb = random.randint(k_verb, (n,), 0, len(VERBS)).tolist()
    prompts, answers = [], []
    for i in range(n):
        thing = NOUNS[noun[i]]
        if kind[i] == 0:
            adverb = f"{ADVERBS[adv[i]]} " if adv[i] < len(ADVERBS) else ""
            prompts.append(f"how was the {thing}?")
            answers.append(f" the {thing} was {adverb}{ADJECTIVES[adj[i]]}.")
        else:
            prompts.append(f"did you like the {thing}?")
            answers.append(f" i {VERBS[verb[i]]} the {thing}.")
    return prompts, answers


def dialogue_well_formed(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
    """1.0 where the completion is a grammatical answer about the prompt's noun, else 0.0: ``[B]``."""
    out = []
    for prompt, completion in zip(prompts, completions):
        match = _QUESTION.fullmatch(prompt)
        if match is None:
            raise ValueError(f"dialogue_well_formed: {prompt!r} is not a question of the grammar")
        thing = re.escape(match.group(2))
        if match.group(1) == "how was":
            pattern = rf" the {thing} was (?:(?:{_WORDS['adv']}) )?(?:{_WORDS['adj']})\."
        else:
            pattern = rf" i (?:{_WORDS['verb']}) the {thing}\."
        out.append(1.0 if re.fullmatch(pattern, completion) else 0.0)
    return torch.tensor(out)


def dialogue_tokenizer() -> BPETokenizer:
    """Byte-level BPE trained on the grammar until no pair repeats (149 merges, vocabulary 408):
    every word of an answer is one token, the final one carrying its period."""
    questions = [f"how was the {t}? did you like the {t}?" for t in NOUNS]
    answers = [f" the {t} was {a} {b}." for t in NOUNS for a in ADVERBS for b in ADJECTIVES]
    answers += [f" i {v} the {t}." for t in NOUNS for v in VERBS]
    return BPETokenizer.train(questions + answers, num_merges=150)


#: ``(label, reward, kl_coef)`` of each fine-tuning run in :func:`sentiment_experiment`
SETTINGS = (
    ("no KL", "sentiment", 0.0),
    ("weak KL", "sentiment", 0.01),
    ("strong KL", "sentiment", 0.1),
    ("composite reward, weak KL", "composite", 0.01),
)


def composite_sentiment_reward(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
    """VADER sentiment where the answer is well formed (:func:`dialogue_well_formed`), -1 elsewhere."""
    from frl.llm.rewards import gated, sentiment_reward

    return gated(sentiment_reward, dialogue_well_formed, penalty=-1.0)(prompts, completions)


def evaluate_dialogue(model, params, reference, tokenizer, key: Tensor, n: int = 256) -> dict[str, object]:
    """Sample one answer (temperature 1) to each of ``n`` questions drawn from ``key``: the mean
    ``sentiment``, ``well_formed`` rate, ``distinct_2``, ``kl`` (``sum_t log pi - log pi_ref`` per
    answer, against ``reference``) and a few ``samples``."""
    from frl.llm.finetune import sample_completions, sequence_log_probs
    from frl.llm.rewards import distinct_n, kl_to_reference, sentiment_reward

    k_prompts, k_sample = random.split(key)
    prompts, _ = dialogue_pairs(k_prompts, n)
    prompt, padding, completion, mask, texts = sample_completions(
        model, params, tokenizer, prompts, k_sample, _MAX_NEW_TOKENS, temperature=1.0
    )
    with torch.no_grad():
        log_prob = sequence_log_probs(model, params, prompt, padding, completion, mask)
        ref_log_prob = sequence_log_probs(model, reference, prompt, padding, completion, mask)
    return {
        "sentiment": float(sentiment_reward(prompts, texts).mean()),
        "well_formed": float(dialogue_well_formed(prompts, texts).mean()),
        "distinct_2": distinct_n(texts, 2),
        "kl": float(kl_to_reference(log_prob, ref_log_prob, mask)),
        "samples": [p + t for p, t in zip(prompts[:4], texts[:4])],
    }


_MAX_NEW_TOKENS = 10  # a well-formed answer takes at most 5 tokens and <eos>


def sentiment_experiment(
    settings: Sequence[tuple[str, str, float]] = SETTINGS,
    *,
    pretrain_steps: int = 1000,
    iterations: int = 100,
    learning_rate: float = 3e-4,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Pretrain on the grammar, then fine-tune with PPO once per setting ``(label, reward, kl_coef)``
    (``reward``: ``"sentiment"`` or ``"composite"``); one row per model, the pretrained one first,
    each with :func:`evaluate_dialogue`'s figures, ``seconds`` and the last 10 iterations' mean
    sampled ``reward``.

    The model: 2 layers, width 64, 4 heads, learned positions; pretraining: ``pretrain_steps`` Adam
    steps of 64 pairs at 1e-3; PPO: 64 questions per iteration, 2 epochs, Adam at
    ``learning_rate``, KL to the pretrained model folded into the reward with ``kl_coef``.
    """
    import time

    from frl.llm.finetune import rl_finetune
    from frl.llm.model import Transformer, TransformerConfig
    from frl.llm.rewards import sentiment_reward
    from frl.llm.tasks import pretrain_on_pairs

    rewards = {"sentiment": sentiment_reward, "composite": composite_sentiment_reward}
    for label, reward, _ in settings:
        if reward not in rewards:
            raise ValueError(
                f"sentiment_experiment: setting {label!r} has reward {reward!r}, not one of {list(rewards)}"
            )
    k_init, k_pretrain, k_eval, k_rl = random.split(random.key(seed), 4)
    tokenizer = dialogue_tokenizer()
    model = Transformer(
        TransformerConfig(vocab_size=tokenizer.vocab_size, max_len=24, d_model=64, n_heads=4, n_layers=2)
    )
    start = time.perf_counter()
    reference, _, _ = pretrain_on_pairs(
        model, model.init(k_init), tokenizer, dialogue_pairs, pretrain_steps, k_pretrain
    )
    rows = [
        {
            "setting": "pretrained",
            "kl_coef": None,
            "reward": None,
            "seconds": time.perf_counter() - start,
            **evaluate_dialogue(model, reference, reference, tokenizer, k_eval),
        }
    ]
    for label, reward, kl_coef in settings:
        start = time.perf_counter()
        params, history = rl_finetune(
            model,
            reference,
            tokenizer,
            k_rl,
            dialogue_pairs,
            rewards[reward],
            algorithm="ppo",
            iterations=iterations,
            learning_rate=learning_rate,
            temperature=1.0,
            max_new_tokens=_MAX_NEW_TOKENS,
            num_prompts=64,
            kl_coef=kl_coef,
        )
        rows.append(
            {
                "setting": label,
                "kl_coef": kl_coef,
                "reward": sum(h["reward"] for h in history[-10:]) / len(history[-10:]),
                "seconds": time.perf_counter() - start,
                **evaluate_dialogue(model, params, reference, tokenizer, k_eval),
            }
        )
    return rows
