"""Reward functions for fine-tuning, and diagnostics that catch reward hacking.

A reward function maps ``(prompts, completions) -> float tensor [B]``:

* :func:`sentiment_reward`: VADER's compound sentiment in ``[-1, 1]`` (Hutto & Gilbert 2014; the
  ``vaderSentiment`` lexicon ships with the package, so it works offline).
* :func:`format_reward`: 1 where the completion matches a regular expression (well-formedness).
* :func:`length_reward`: ``1 - |len - target| / target``, floored at 0 (a length constraint).
* :func:`composite`: a weighted sum of reward functions; ``gated`` multiplies a reward by a
  format check, so malformed text earns nothing (a guard against hacking the main reward).

Diagnostics: :func:`distinct_n` (diversity), :func:`well_formed_rate`, :func:`kl_to_reference`
(the mean per-sequence ``sum_t log pi - log pi_ref`` of sampled tokens).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "RewardFn",
    "composite",
    "distinct_n",
    "format_reward",
    "gated",
    "kl_to_reference",
    "length_reward",
    "sentiment_reward",
    "well_formed_rate",
]

RewardFn = Callable[[Sequence[str], Sequence[str]], Tensor]
_ANALYZER: list = []


def sentiment_reward(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
    """VADER compound score of each completion, in ``[-1, 1]`` (needs ``vaderSentiment``)."""
    if not _ANALYZER:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as err:  # pragma: no cover - the llm extra is missing
            raise ImportError("sentiment_reward needs vaderSentiment: pip install 'frl[llm]'") from err
        _ANALYZER.append(SentimentIntensityAnalyzer())
    return torch.tensor([_ANALYZER[0].polarity_scores(text)["compound"] for text in completions])


def format_reward(pattern: str) -> RewardFn:
    """1.0 where the whole completion matches ``pattern`` (``re.fullmatch``), else 0.0."""
    compiled = re.compile(pattern)

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
        return torch.tensor([1.0 if compiled.fullmatch(text) else 0.0 for text in completions])

    return reward


def length_reward(target: int) -> RewardFn:
    """``max(0, 1 - |len(completion) - target| / target)`` in characters."""
    if target <= 0:
        raise ValueError(f"length_reward: `target` must be positive, got {target}")

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
        return torch.tensor([max(0.0, 1.0 - abs(len(text) - target) / target) for text in completions])

    return reward


def composite(*terms: tuple[float, RewardFn]) -> RewardFn:
    """``sum_i w_i r_i(prompts, completions)`` for ``(w_i, r_i)`` pairs."""

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
        return sum(w * fn(prompts, completions) for w, fn in terms)

    return reward


def gated(main: RewardFn, gate: RewardFn, penalty: float = 0.0) -> RewardFn:
    """``main`` where ``gate`` is 1, ``penalty`` elsewhere."""

    def reward(prompts: Sequence[str], completions: Sequence[str]) -> Tensor:
        ok = gate(prompts, completions) > 0.5
        return torch.where(ok, main(prompts, completions), torch.tensor(penalty))

    return reward


def distinct_n(completions: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams over all word n-grams of the completions: 1 is all unique."""
    grams = []
    for text in completions:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def well_formed_rate(completions: Sequence[str], pattern: str) -> float:
    """The fraction of completions that fully match ``pattern``."""
    return float(format_reward(pattern)([], completions).mean()) if completions else 0.0


def kl_to_reference(log_prob: Tensor, ref_log_prob: Tensor, mask: Tensor) -> Tensor:
    """``mean_i sum_t (log pi - log pi_ref)`` over sampled tokens: a Monte-Carlo KL(pi || pi_ref)."""
    return ((log_prob - ref_log_prob) * mask.to(log_prob.dtype)).sum(-1).mean()
