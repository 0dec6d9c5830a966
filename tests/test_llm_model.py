"""frl.llm: tokenizers round-trip, attention never looks ahead, the KV cache equals recomputation."""

from __future__ import annotations

import pytest
import torch

import frl
from frl import random
from frl.llm import BPETokenizer, CharTokenizer, Transformer, TransformerConfig, filter_logits, generate, load

TEXT = "The quick brown fox jumps over the lazy dog.  Then: 12 + 30 = 42!\nnaïve café, 東京 ✓"


def small(positional: str = "learned", **kw) -> tuple[Transformer, object]:
    model = Transformer(
        TransformerConfig(
            vocab_size=40, max_len=24, d_model=32, n_heads=4, n_layers=2, positional=positional, **kw
        )
    )
    return model, model.init(random.key(0))


def test_char_tokenizer_round_trip_and_save(tmp_path):
    tok = CharTokenizer.train(TEXT)
    ids = tok.encode(TEXT, bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and tok.decode(ids) == TEXT
    assert max(ids) < tok.vocab_size
    tok.save(tmp_path / "char.json")
    assert load(tmp_path / "char.json").encode(TEXT) == tok.encode(TEXT)
    assert tok.encode("Z") == [tok.unk]  # unseen characters map to <unk>


def test_bpe_tokenizer_round_trips_any_text_and_compresses(tmp_path):
    corpus = [TEXT * 3, "the theory of the thing", "there and then"]
    tok = BPETokenizer.train(corpus, num_merges=60)
    for text in (TEXT, "unseen words: zebra quokka", "  leading and  double  spaces ", "", "émoji 🙂"):
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(TEXT)) < len(TEXT.encode("utf-8")) * 0.7  # merges compress the training text
    assert tok.vocab_size == 3 + 256 + len(tok.merges)
    tok.save(tmp_path / "bpe.json")
    again = load(tmp_path / "bpe.json")
    assert again.encode(TEXT) == tok.encode(TEXT)
    assert BPETokenizer.train(corpus, num_merges=60).merges == tok.merges  # deterministic


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rotary"])
def test_attention_never_looks_ahead(positional):
    model, params = small(positional)
    tokens = random.randint(random.key(1), (2, 12), 3, 40)
    changed = tokens.clone()
    changed[:, 7:] = random.randint(random.key(2), (2, 5), 3, 40)
    a, b = model.apply(params, tokens), model.apply(params, changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-6)
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-3
    # the gradient of position 4's logits reaches no input token that appears only after position 4
    # (an untied head: with tied embeddings every row also gets gradient as an output)
    untied, untied_params = small(positional, tie_embeddings=False)
    grads = torch.func.grad(lambda p: untied.apply(p, tokens[0])[4].sum())(untied_params)["embed"]
    later_only = set(tokens[0, 5:].tolist()) - set(tokens[0, :5].tolist())
    assert later_only
    for tok in later_only:
        assert grads[tok].abs().max() == 0


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rotary"])
def test_kv_cache_equals_full_recomputation(positional):
    model, params = small(positional)
    tokens = random.randint(random.key(3), (3, 10), 3, 40)
    full = model.apply(params, tokens)
    cache = model.init_cache((3,), 16)
    logits, cache = model.apply(params, tokens[:, :4], cache=cache)  # prefill 4
    pieces = [logits]
    for t in range(4, 10):  # then one token at a time
        logits, cache = model.apply(params, tokens[:, t : t + 1], cache=cache)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-5, atol=1e-5)
    assert int(cache["length"]) == 10


def test_padding_keys_are_ignored_and_sdpa_matches_math():
    model, params = small()
    tokens = random.randint(random.key(4), (2, 8), 3, 40)
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.int64), tokens], 1)
    padding = torch.zeros(2, 11, dtype=torch.bool)
    padding[:, :3] = True
    # position ids count real tokens: left padding changes nothing, for every kind of position
    for positional in ("learned", "sinusoidal", "rotary"):
        m, p = small(positional)
        out = m.apply(p, padded, padding=padding)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[:, 3:], m.apply(p, tokens), rtol=1e-5, atol=1e-5)
        # without the padding mask the pads are tokens: the outputs differ
        assert not torch.allclose(m.apply(p, padded)[:, 3:], m.apply(p, tokens), atol=1e-3)
    torch.testing.assert_close(
        model.apply(params, tokens, attention="sdpa"), model.apply(params, tokens), rtol=1e-5, atol=1e-5
    )


@pytest.mark.compile
def test_variants_vmap_grad_and_compile():
    model, params = small()
    tokens = random.randint(random.key(5), (4, 9), 3, 40)
    batched = model.apply(params, tokens)
    per_row = torch.func.vmap(lambda t: model.apply(params, t))(tokens)
    torch.testing.assert_close(per_row, batched, rtol=1e-5, atol=1e-5)
    members = torch.func.vmap(model.init)(random.split(random.key(6), 3))  # an ensemble of models
    assert members["embed"].shape == (3, 40, 32)

    def loss(p):
        logits = model.apply(p, tokens[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 40), tokens[:, 1:].reshape(-1))

    grads = torch.func.grad(loss)(params)
    assert all(torch.isfinite(g).all() for g in grads.values(True, True))
    compiled = frl.compile(torch.func.grad_and_value(loss))
    g2, value = compiled(params)
    torch.testing.assert_close(value, loss(params), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        g2["blocks", "0", "qkv", "weight"], grads["blocks", "0", "qkv", "weight"], rtol=1e-4, atol=1e-5
    )


def test_generation_with_cache_equals_without_and_filters():
    model, params = small()
    prompts = random.randint(random.key(7), (3, 5), 3, 40)
    a = generate(model, params, prompts, random.key(8), 8, temperature=0.8, top_k=10, top_p=0.9)
    b = generate(
        model, params, prompts, random.key(8), 8, temperature=0.8, top_k=10, top_p=0.9, use_cache=False
    )
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-5)
    greedy = generate(model, params, prompts, random.key(0), 6, temperature=0.0)[0]
    assert torch.equal(greedy[:, 0], model.apply(params, prompts)[:, -1].argmax(-1))
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    nucleus = filter_logits(logits, top_p=0.6)  # p = [0.61, 0.22, ...]: the first token alone
    assert torch.isfinite(nucleus[0, 0]) and torch.isinf(nucleus[0, 1:]).all()
    # an end token stops a row: here row 0's first greedy token is declared the end token
    tokens, logp, mask = generate(
        model, params, prompts, random.key(9), 6, temperature=0.0, eos_id=int(greedy[0, 0])
    )
    assert mask[0].tolist() == [True, False, False, False, False, False]
    assert (tokens[0, 1:] == 0).all() and (logp[~mask] == 0).all() and (logp[mask] < 0).all()
    # a left-padded short prompt generates what it generates alone (position ids skip padding)
    short = prompts[1:2, 2:]
    batch = torch.cat([prompts[:1], torch.cat([torch.zeros(1, 2, dtype=torch.int64), short], 1)])
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, :2] = True
    together = generate(model, params, batch, random.key(0), 6, temperature=0.0, prompt_padding=pad)
    alone = generate(model, params, short, random.key(0), 6, temperature=0.0)
    assert torch.equal(together[0][1], alone[0][0])
    torch.testing.assert_close(together[1][1], alone[1][0], rtol=1e-5, atol=1e-5)
    # scaled_dot_product_attention: the same samples, through the cache and padding
    sdpa = generate(
        model, params, batch, random.key(3), 6, temperature=0.8, prompt_padding=pad, attention="sdpa"
    )
    math_ = generate(model, params, batch, random.key(3), 6, temperature=0.8, prompt_padding=pad)
    assert torch.equal(sdpa[0], math_[0]) and torch.equal(sdpa[2], math_[2])
    torch.testing.assert_close(sdpa[1], math_[1], rtol=1e-5, atol=1e-5)
