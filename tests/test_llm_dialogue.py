"""The dialogue grammar, the sentiment experiment (reward hacking under a weak KL) and `frl llm`."""

from __future__ import annotations

import json

import pytest
import torch

from frl import random
from frl.cli import main
from frl.llm.dialogue import (
    ADJECTIVES,
    dialogue_pairs,
    dialogue_tokenizer,
    dialogue_well_formed,
    sentiment_experiment,
)


def test_grammar_pairs_are_well_formed_and_violations_are_not():
    prompts, answers = dialogue_pairs(random.key(0), 200)
    assert dialogue_well_formed(prompts, answers).tolist() == [1.0] * 200
    assert {p.split()[0] for p in prompts} == {"how", "did"}
    assert {a.split()[-1].rstrip(".") for a in answers if a.startswith(" the")} == set(ADJECTIVES)
    p = ["how was the movie?"] * 6 + ["did you like the book?"] * 2
    c = [
        " the movie was very great.",  # grammatical
        " the food was great.",  # about another noun
        " the movie was great great.",  # repeated adjective
        " the movie was great",  # cut off before the period (no <eos> either)
        "the movie was great.",  # the leading space is part of the answer
        " great great great",
        " i loved the book.",
        " i loved the book. i loved the book.",
    ]
    assert dialogue_well_formed(p, c).tolist() == [1, 0, 0, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="not a question of the grammar"):
        dialogue_well_formed(["what is 2+2?"], [" 4."])


def test_dialogue_tokenizer_makes_words_tokens_and_round_trips():
    tok = dialogue_tokenizer()
    prompts, answers = dialogue_pairs(random.key(1), 50)
    for text in prompts + answers:
        assert tok.decode(tok.encode(text)) == text
    for answer in answers:
        assert len(tok.encode(answer)) == len(answer.split())  # one token per word
    assert tok.decode(tok.encode("great great! ünïcode")) == "great great! ünïcode"  # bytes: any text


def test_sentiment_experiment_weak_kl_hacks_the_reward_strong_kl_and_composite_do_not():
    torch.manual_seed(0)
    rows = sentiment_experiment(
        (
            ("weak KL", "sentiment", 0.01),
            ("strong KL", "sentiment", 0.1),
            ("composite", "composite", 0.01),
        )
    )
    pretrained, weak, strong, composite = rows
    # measured: pretrained sentiment 0.05, well-formed 0.99; weak KL 0.85 / 0.04 (KL 13);
    # strong KL 0.57 / 0.98 (KL 0.9); composite 0.61 / 0.98 (KL 1.6)
    assert pretrained["well_formed"] >= 0.95 and abs(pretrained["sentiment"]) < 0.2
    assert weak["sentiment"] > 0.7 and weak["well_formed"] < 0.3  # above the grammar's ceiling 0.66
    for row in (strong, composite):
        assert row["sentiment"] >= 0.5 and row["well_formed"] >= 0.85, row
        assert row["kl"] < weak["kl"] / 3
    with pytest.raises(ValueError, match="not one of"):
        sentiment_experiment((("x", "length", 0.0),))


def test_llm_command_line_pretrain_finetune_sample(tmp_path, capsys):
    pre, tuned = tmp_path / "lm", tmp_path / "lm-grpo"
    assert main(["llm", "pretrain", "--task", "addition", "--steps", "20", "--out", str(pre)]) == 0
    assert (pre / "model.pt").exists() and (pre / "tokenizer.json").exists()
    metrics = json.loads((pre / "metrics.json").read_text())
    assert metrics["task"] == "addition" and metrics["steps"] == 20 and 0 <= metrics["exact_match"] <= 1
    args = ["llm", "finetune", str(pre), "--algorithm", "rloo", "--iterations", "2", "--out", str(tuned)]
    assert main(args) == 0
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["algorithm"] == "rloo"
    assert "exact_match" in metrics["reference"]
    capsys.readouterr()
    assert main(["llm", "sample", str(tuned), "12+34=", "--samples", "3", "--max-new-tokens", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("12+34=") for line in lines)
    # bad input: one line naming the problem, exit code 2
    out = ["--out", str(tmp_path / "x")]
    cases = [
        (["llm", "finetune", str(pre), "--reward", "sentiment", *out], "does not fit"),
        (["llm", "finetune", str(tmp_path), *out], "not a `frl llm` run folder"),
        (["llm", "sample", str(pre), "1+1=", "--max-new-tokens", "40"], "--max-new-tokens must be in"),
        (["llm", "pretrain", "--task", "poems", *out], "invalid choice"),
        (["llm"], "choose an llm command"),
        (
            ["llm", "pretrain", "--out", "/dev/null/x"],
            "--out /dev/null/x cannot be created: /dev/null is a file",
        ),
        (
            ["llm", "pretrain", "--steps", str(10**30), *out],
            "--steps 1000000000000000000000000000000 is too large",
        ),
        (["llm", "pretrain", "--learning-rate", "nan", *out], "--learning-rate must be a finite number > 0"),
        (["llm", "finetune", str(pre), "--kl-coef", "-1", *out], "--kl-coef must be a finite number >= 0"),
        (["llm", "sample", str(pre), "1+1=", "--samples", "0"], "--samples must be a positive count, got 0"),
        (
            ["llm", "pretrain", "--d-model", str(2**34), "--heads", "1", "--steps", "1", *out],
            "cannot be allocated",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("frl: error: ") and message in err[0], (argv, err)
