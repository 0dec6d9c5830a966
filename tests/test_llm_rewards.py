"""frl.llm.rewards: sentiment (VADER, offline), format, length, composites, and the diagnostics."""

from __future__ import annotations

import pytest
import torch

from frl.llm import rewards


def test_sentiment_reward_orders_texts():
    scores = rewards.sentiment_reward(
        [], ["I love this, it is wonderful!", "the table is brown", "awful, I hate it"]
    )
    assert scores[0] > 0.5 and abs(scores[1]) < 0.1 and scores[2] < -0.5
    assert scores.shape == (3,) and scores.abs().max() <= 1


def test_format_length_composite_and_gate():
    fmt = rewards.format_reward(r"[a-z ]+\.")
    assert fmt([], ["good day.", "Bad", "ok ok."]).tolist() == [1.0, 0.0, 1.0]
    length = rewards.length_reward(10)
    assert length([], ["x" * 10, "x" * 5, "x" * 30]).tolist() == [1.0, 0.5, 0.0]
    both = rewards.composite((0.5, fmt), (2.0, length))
    torch.testing.assert_close(both([], ["abcdefghi.", "X"]), torch.tensor([0.5 + 2.0, 0.0 + 2.0 * 0.1]))
    guarded = rewards.gated(length, fmt, penalty=-1.0)
    assert guarded([], ["abcdefghi.", "ABCDEFGHIJ"]).tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="`target` must be positive"):
        rewards.length_reward(0)


def test_diagnostics():
    assert rewards.distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert rewards.distinct_n(["good good good good"], 1) == pytest.approx(1 / 4)  # a collapsed sample
    assert rewards.well_formed_rate(["ok.", "no"], r"[a-z]+\.") == 0.5
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    ref = torch.tensor([[-1.5, -2.0, -9.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert float(rewards.kl_to_reference(logp, ref, mask)) == pytest.approx((0.5 + 1.5) / 2)
