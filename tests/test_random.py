"""frl.random: threefry known answers, JAX golden values, properties, errors and the four variants.

The golden values in ``golden/random_jax.json`` were produced by JAX 0.10.2 (see
``golden/make_random_golden.py``), so bit-compatibility is checked even without JAX installed;
``parity/test_random_jax.py`` checks against a live JAX on fresh inputs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import frl.random as fr
from tests.variants import Case, check, variant_params

GOLDEN = json.loads((Path(__file__).parent / "golden" / "random_jax.json").read_text())
CASES = GOLDEN["cases"]
SEED_IDS = [str(c["seed"]) for c in CASES]


def t(values, dtype=torch.int64):
    return torch.tensor(values, dtype=dtype)


# --------------------------------------------------------------------------------------
# Threefry known answers (Random123's test vectors)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,counter,expected",
    [
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ],
)
def test_threefry_known_answers(key, counter, expected):
    x0, x1 = fr.threefry2x32(t(key[0]), t(key[1]), t(counter[0]), t(counter[1]))
    assert (int(x0), int(x1)) == expected


# --------------------------------------------------------------------------------------
# Golden values from JAX
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=SEED_IDS)
def test_keys_split_fold_in_bits_match_jax(case):
    k = fr.key(case["seed"])
    assert k.tolist() == case["key"]
    assert fr.key(case["seed"], x64=True).tolist() == case["key_x64"]
    assert fr.split(k).tolist() == case["split2"]
    assert fr.split(k, (2, 3)).tolist() == case["split_2x3"]
    assert fr.fold_in(k, 7).tolist() == case["fold_in_7"]
    assert fr.fold_in(k, 2**32 - 1).tolist() == case["fold_in_big"]
    assert fr.bits(k, (3, 5)).tolist() == case["bits32_3x5"]
    assert fr.bits(k, (7,), 16).tolist() == case["bits16_7"]
    assert fr.bits(k, (7,), 8).tolist() == case["bits8_7"]
    k64 = fr.key(case["seed"], x64=True)
    assert fr.bits(k64, (5,), 64).tolist() == case["bits64_5"]


@pytest.mark.parametrize("case", CASES, ids=SEED_IDS)
def test_uniform_matches_jax_bit_for_bit(case):
    k = fr.key(case["seed"])
    torch.testing.assert_close(fr.uniform(k, (11,)), t(case["uniform_f32_11"], torch.float32), rtol=0, atol=0)
    ranged = fr.uniform(k, (11,), torch.float32, -3.0, 5.5)
    torch.testing.assert_close(ranged, t(case["uniform_f32_range"], torch.float32), rtol=0, atol=0)
    half = fr.uniform(k, (11,), torch.float16, -3.0, 5.5)
    torch.testing.assert_close(half, t(case["uniform_f16_range"], torch.float16), rtol=0, atol=0)
    bf16 = fr.uniform(k, (11,), torch.bfloat16, 0.1, 0.3)
    torch.testing.assert_close(bf16, t(case["uniform_bf16_range"], torch.bfloat16), rtol=0, atol=0)
    k64 = fr.key(case["seed"], x64=True)
    torch.testing.assert_close(
        fr.uniform(k64, (5,), torch.float64), t(case["uniform_f64_5"], torch.float64), rtol=0, atol=0
    )


@pytest.mark.parametrize("case", CASES, ids=SEED_IDS)
def test_float_samplers_match_jax(case):
    k = fr.key(case["seed"])
    close = dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fr.normal(k, (2, 8)), t(case["normal_f32_2x8"], torch.float32), **close)
    torch.testing.assert_close(fr.gumbel(k, (9,)), t(case["gumbel_f32_9"], torch.float32), **close)
    tn = fr.truncated_normal(k, -1.5, 2.0, (9,))
    torch.testing.assert_close(tn, t(case["truncated_normal_9"], torch.float32), **close)


@pytest.mark.parametrize("case", CASES, ids=SEED_IDS)
def test_discrete_samplers_match_jax(case):
    k = fr.key(case["seed"])
    logits = t(case["logits_4x6"], torch.float32)
    probs = t(case["probs_5"], torch.float32)
    assert fr.categorical(k, logits).tolist() == case["categorical"]
    assert fr.categorical(k, logits, axis=0).tolist() == case["categorical_axis0"]
    assert fr.categorical(k, logits, shape=(3, 4)).tolist() == case["categorical_3x4"]
    assert fr.bernoulli(k, probs).long().tolist() == case["bernoulli_p"]
    assert fr.bernoulli(k, 0.3, (8,)).long().tolist() == case["bernoulli_03_8"]
    assert fr.randint(k, (9,), 0, 10).tolist() == case["randint_0_10"]
    assert fr.randint(k, (9,), -(2**31), 2**31 - 1).tolist() == case["randint_wide"]
    assert fr.randint(k, (9,), -1000, 10**9 + 7).tolist() == case["randint_big_span"]
    assert fr.permutation(k, 10).tolist() == case["permutation_10"]
    grid = torch.arange(12).reshape(3, 4)
    assert fr.permutation(k, grid, axis=1).tolist() == case["permutation_2d_axis1"]
    assert fr.permutation(k, grid, axis=1, independent=True).tolist() == case["permutation_independent"]
    assert fr.choice(k, 6, (4,)).tolist() == case["choice_6_4"]
    assert fr.choice(k, 6, (4,), replace=False).tolist() == case["choice_6_4_noreplace"]
    assert fr.choice(k, 5, (6,), p=probs).tolist() == case["choice_p"]
    assert fr.choice(k, 5, (3,), replace=False, p=probs).tolist() == case["choice_p_noreplace"]
    if "permutation_1700" in case:  # two shuffle rounds
        assert fr.permutation(k, 1700).tolist() == case["permutation_1700"]


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), data=st.integers(0, 40))
def test_fold_in_is_a_split_index(seed, data):
    k = fr.key(seed)
    assert torch.equal(fr.fold_in(k, data), fr.split(k, 41)[data])
    assert torch.equal(fr.fold_in(k, torch.tensor(data)), fr.fold_in(k, data))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(-(2**63), 2**63 - 1))
def test_key_from_int_and_tensor_agree(seed):
    assert torch.equal(fr.key(torch.tensor(seed)), fr.key(seed))
    assert torch.equal(fr.key(torch.tensor(seed), x64=True), fr.key(seed, x64=True))
    assert fr.key(seed).tolist() == [0, seed % 2**32]


def test_seed_in_a_vmapped_batch_equals_seed_alone():
    seeds = torch.arange(16) * 7919

    def draw(seed):
        k = fr.key(seed)
        k_a, k_b = fr.split(k)
        return fr.normal(k_a, (5,)), fr.categorical(k_b, torch.zeros(3, 4)), fr.split(k, 3)

    batched = torch.func.vmap(draw)(seeds)
    for i, seed in enumerate(seeds):
        alone = draw(seed)
        for b, a in zip(batched, alone):
            assert torch.equal(b[i], a)


def test_split_keys_are_distinct_and_unpack():
    keys = fr.split(fr.key(0), 1000)
    assert keys.shape == (1000, 2)
    assert len({tuple(k) for k in keys.tolist()}) == 1000
    a, b = fr.split(fr.key(0))
    assert a.shape == (2,) and not torch.equal(a, b)


def test_sample_statistics():
    k = fr.key(3)
    n = 200_000
    u = fr.uniform(k, (n,))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / n)
    z = fr.normal(k, (n,))
    assert abs(float(z.mean())) < 4 / math.sqrt(n)
    assert abs(float(z.std()) - 1.0) < 0.01
    g = fr.gumbel(k, (n,))
    assert abs(float(g.mean()) - 0.5772156649) < 0.01  # Euler-Mascheroni
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    counts = torch.bincount(fr.categorical(k, logits, shape=(n,)), minlength=4).double() / n
    torch.testing.assert_close(
        counts, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), atol=5e-3, rtol=0
    )
    r = fr.randint(k, (n,), -3, 4)
    assert int(r.min()) == -3 and int(r.max()) == 3
    assert abs(float(fr.bernoulli(k, 0.25, (n,)).double().mean()) - 0.25) < 0.005
    tn = fr.truncated_normal(k, -1.0, 0.5, (n,))
    assert float(tn.min()) > -1.0 and float(tn.max()) < 0.5
    assert sorted(fr.permutation(k, 100).tolist()) == list(range(100))


def test_uniform_respects_tensor_bounds_and_dtype():
    k = fr.key(1)
    lo = torch.tensor([[-1.0], [10.0]])
    hi = torch.tensor([[1.0], [20.0]])
    x = fr.uniform(k, (2, 500), torch.float32, lo, hi)
    assert x.dtype == torch.float32 and x.shape == (2, 500)
    assert bool((x[0] >= -1).all() and (x[0] < 1).all() and (x[1] >= 10).all() and (x[1] <= 20).all())
    assert fr.uniform(k, (3,), torch.float64).dtype == torch.float64
    # bounds of shape [1] and [3] broadcast to [2, 3]; a 0-d bound everywhere
    y = fr.uniform(k, (2, 3), torch.float32, torch.zeros(1), torch.tensor([1.0, 2.0, 3.0]))
    assert bool((y >= 0).all() and (y < torch.tensor([1.0, 2.0, 3.0])).all())


def test_wrap_key_data_takes_jax_words():
    np = pytest.importorskip("numpy")
    words = np.array([[0xFFFFFFFF, 5], [0, 0x80000000]], dtype=np.uint32)
    assert fr.wrap_key_data(words).tolist() == [[2**32 - 1, 5], [0, 2**31]]
    assert fr.wrap_key_data(torch.tensor([-1, 5], dtype=torch.int32)).tolist() == [2**32 - 1, 5]
    assert fr.key(3, device="cpu").device.type == "cpu"
    with pytest.raises(ValueError, match="trailing dim of 2"):
        fr.wrap_key_data(torch.zeros(3, dtype=torch.int64))


def test_empty_shapes():
    k = fr.key(0)
    assert fr.bits(k, (0,)).shape == (0,)
    assert fr.uniform(k, (3, 0, 2)).shape == (3, 0, 2)
    assert fr.split(k, 0).shape == (0, 2)
    assert fr.permutation(k, 1).tolist() == [0]


# --------------------------------------------------------------------------------------
# Errors name the field and what was expected
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: fr.uniform(torch.zeros(3, dtype=torch.int64)), ValueError, "shape \\[2\\]"),
        (lambda: fr.uniform(torch.zeros(2, 2, dtype=torch.int64)), ValueError, "vmap"),
        (lambda: fr.uniform(torch.zeros(2)), ValueError, "int64"),
        (lambda: fr.uniform([0, 1]), TypeError, "`key`"),
        (lambda: fr.key(2**63), ValueError, "`seed`"),
        (lambda: fr.key(1.5), TypeError, "`seed`"),
        (lambda: fr.fold_in(fr.key(0), -1), ValueError, "`data`"),
        (lambda: fr.fold_in(fr.key(0), torch.tensor([1, 2])), ValueError, "`data`"),
        (lambda: fr.bits(fr.key(0), (2,), 31), ValueError, "`width`"),
        (lambda: fr.uniform(fr.key(0), (2,), torch.int32), TypeError, "`dtype`"),
        (lambda: fr.uniform(fr.key(0), (2,), torch.float32, torch.zeros(3), 1.0), ValueError, "`minval`"),
        (lambda: fr.uniform(fr.key(0), (2,), torch.float32, 0.0, torch.ones(2, 1)), ValueError, "`maxval`"),
        (lambda: fr.uniform(fr.key(0), (2,), torch.float32, torch.zeros(1, 2), 1.0), ValueError, "`minval`"),
        (lambda: fr.bernoulli(fr.key(0), torch.full((2,), 0.5), (2, 3)), ValueError, "`p`"),
        (lambda: fr.randint(fr.key(0), (2,), 0, 2**31), ValueError, "`maxval`"),
        (lambda: fr.randint(fr.key(0), (2,), 0.5, 3), TypeError, "`minval`"),
        (lambda: fr.categorical(fr.key(0), torch.zeros(3, 4), shape=(5,)), ValueError, "`shape`"),
        (lambda: fr.categorical(fr.key(0), torch.zeros(3, dtype=torch.int64)), TypeError, "`logits`"),
        (lambda: fr.bernoulli(fr.key(0), torch.tensor([1, 0])), TypeError, "`p`"),
        (lambda: fr.permutation(fr.key(0), -3), ValueError, "`x`"),
        (lambda: fr.choice(fr.key(0), 3, (5,), replace=False), ValueError, "without replacement"),
        (lambda: fr.choice(fr.key(0), 3, (2,), p=torch.ones(4)), ValueError, "`p`"),
        (lambda: fr.split(fr.key(0), (-1,)), ValueError, "`num`"),
        (lambda: fr.stable_order(torch.zeros(3)), ValueError, "`words`"),
        (lambda: fr.stable_order(torch.tensor(3)), ValueError, "`words`"),
        (lambda: fr.stable_order([3, 1]), TypeError, "`words`"),
        (lambda: fr.stable_order(torch.tensor([[1, 2**32]])), RuntimeError, "words must lie in"),
        (lambda: fr.stable_order(torch.tensor([0, -1])), RuntimeError, "words must lie in"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------------------
# Four variants: eager == vmap == compile (== grad where differentiable)
# --------------------------------------------------------------------------------------


def _key(i: int) -> torch.Tensor:
    return fr.key(1000 + i)


def _bits_all(k):
    return fr.bits(k, (2, 3)), fr.bits(k, (3,), 16), fr.bits(k, (3,), 64)


def _uniforms(k, lo, hi):
    return fr.uniform(k, (4,)), fr.uniform(k, (4,), torch.float32, lo, hi), fr.uniform(k, (2,), torch.float64)


def _uniforms16(k):
    return fr.uniform(k, (6,), torch.float16, -3.0, 5.5), fr.uniform(k, (6,), torch.bfloat16, 0.1, 0.3)


def _normals(k):
    return fr.normal(k, (5,)), fr.normal(k, (3,), torch.float64)


def _discrete(k, probs):
    return (
        fr.bernoulli(k, probs),
        fr.randint(k, (4,), -5, 9),
        fr.permutation(k, 7),
        fr.permutation(k, torch.arange(6).reshape(2, 3), axis=1),
        fr.choice(k, 5, (3,)),
        fr.choice(k, 5, (3,), replace=False),
        fr.choice(k, 5, (4,), p=probs),
        fr.stable_order(fr.bits(k, (2, 300), 8)),  # 8-bit words: many ties
    )


VARIANT_CASES = [
    Case(
        "key",
        lambda s: (fr.key(s), fr.wrap_key_data(fr.key(s).to(torch.int32))),
        lambda i: (torch.tensor(i * 31 - 7),),
    ),
    Case("key_x64", lambda s: fr.key(s, x64=True), lambda i: (torch.tensor(2**40 + i),)),
    Case("split", lambda k: fr.split(k, (2, 3)), lambda i: (_key(i),)),
    Case("fold_in", fr.fold_in, lambda i: (_key(i), torch.tensor(3 * i))),
    Case("bits", _bits_all, lambda i: (_key(i),)),
    Case(
        "uniform",
        _uniforms,
        lambda i: (_key(i), torch.tensor(-1.0 - i), torch.tensor(2.0 + i)),
        grad_argnums=(1, 2),
    ),
    Case("uniform_16bit", _uniforms16, lambda i: (_key(i),)),
    Case("normal", _normals, lambda i: (_key(i),), compile_rtol=1e-5, compile_atol=1e-6),
    Case(
        "truncated_normal",
        lambda k, lo, hi: fr.truncated_normal(k, lo, hi, (4,)),
        lambda i: (_key(i), torch.tensor(-1.0 - 0.1 * i), torch.tensor(1.5)),
        grad_argnums=(1,),
    ),
    Case("gumbel", lambda k: fr.gumbel(k, (4,)), lambda i: (_key(i),)),
    Case(
        "categorical",
        lambda k, logits: (fr.categorical(k, logits), fr.categorical(k, logits, shape=(2, 3))),
        lambda i: (_key(i), torch.linspace(-1, 1, 12).reshape(3, 4) * (i + 1)),
    ),
    Case("discrete", _discrete, lambda i: (_key(i), torch.tensor([0.1, 0.5, 0.2, 0.9, 0.3]) + 0.01 * i)),
]


@pytest.mark.parametrize("case,variant", variant_params(VARIANT_CASES))
def test_variants(case, variant):
    check(case, variant)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 16, 17, 1000])
@pytest.mark.parametrize("kernel", ["native", "python-or-numpy"])
def test_cpu_kernels_equal_torch_block_function(n, kernel, monkeypatch):
    """The CPU kernels (C++ operator; Python ints / NumPy without it) give the torch ops' words,
    for one key and a batch of keys."""
    from frl import random as fr_module
    from frl.random import _blocks, _threefry_blocks, threefry2x32

    if kernel == "native":
        assert fr_module._native_op() is not None, "the C++ kernel builds on this machine"
        blocks = _blocks
    else:
        monkeypatch.setattr(fr_module, "_NATIVE", [None])
        blocks = _threefry_blocks
    idx = torch.arange(n, dtype=torch.int64)
    for seed in (0, 1, 2**31 + 5):
        k = fr.key(seed)
        fast0, fast1 = blocks(k, n)
        ref0, ref1 = threefry2x32(k[0], k[1], 0, idx)
        assert torch.equal(fast0, ref0) and torch.equal(fast1, ref1)
    keys = fr.split(fr.key(9), 3)
    batch0, batch1 = blocks(keys, n) if kernel == "native" else _threefry_blocks(keys, n)
    for i in range(3):
        ref0, ref1 = threefry2x32(keys[i, 0], keys[i, 1], 0, idx)
        assert torch.equal(batch0[i], ref0) and torch.equal(batch1[i], ref1)


@pytest.mark.parametrize(
    "bounds",
    [(0.0, 1.0), (-0.05, 0.05), (1.1754943508222875e-38, 1.0), (-3.7, 1e4), (2.5, 2.5000002), (-1e30, 1e30)],
)
def test_fused_uniform_operator_gives_the_torch_ops_bits(bounds, monkeypatch):
    """Eager float32 ``uniform`` with float bounds is one C++ call (``threefry_uniform_f32``): the
    same bits as the threefry words, mantissa and fused product-sum in torch ops, for sizes on
    both sides of a vector width, for a batch of keys under ``vmap``, and with float64 tensors of
    the bounds taking the torch path."""
    from frl import random as fr_module

    assert fr_module._native_uniform() is not None, "the C++ kernel builds on this machine"
    lo, hi = bounds
    for i, k in enumerate(fr.split(fr.key(11), 12)):
        shape = (i % 5 + 1, 3) if i % 2 else (i * 7 + 1,)
        fused = fr.uniform(k, shape, torch.float32, lo, hi)
        with monkeypatch.context() as m:
            m.setattr(fr_module, "_NATIVE_UNIFORM", [])
            ops = fr.uniform(k, shape, torch.float32, lo, hi)
        assert fused.shape == shape and fused.dtype == torch.float32
        assert torch.equal(fused.view(torch.int32), ops.view(torch.int32)), (lo, hi, shape)
        assert bool((fused >= torch.tensor(lo, dtype=torch.float32)).all())
    keys = fr.split(fr.key(3), 4)
    batched = torch.func.vmap(lambda k: fr.uniform(k, (6,), torch.float32, lo, hi))(keys)
    assert torch.equal(batched, torch.stack([fr.uniform(k, (6,), torch.float32, lo, hi) for k in keys]))


def _float32_nearest(v: Fraction) -> float:
    """The float32 nearest the exact rational ``v`` (ties to an even significand), by comparing
    exact distances to the float32 below and above ``v``'s float64 approximation."""
    near = np.float32(float(v))
    candidates = [near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))]
    return float(min(candidates, key=lambda c: (abs(Fraction(float(c)) - v), int(c.view(np.int32)) & 1)))


@pytest.mark.parametrize(
    "bounds", [(1.595e-31, 4.5), (-1e-30, 3.0), (-3.0, 5.5), (0.1, 0.3), (2.5, 2.5000002)]
)
def test_ranged_uniform_rounds_once_like_a_fused_multiply_add(bounds, monkeypatch):
    """``f * (hi - lo) + lo`` is rounded once to float32, as XLA contracts JAX's uniform into a fused
    multiply-add: against the exact rational sum, on the C++ kernel and on the torch ops. A product
    ``f * span`` that is a float32 tie plus a tiny ``lo`` is where a float64 sum rounded again to
    float32 goes wrong (the draw that failed CI: seed -84, lo 1.595e-31, width 4.5)."""
    from frl import random as fr_module

    lo, hi = bounds
    lo32, hi32 = np.float32(lo), np.float32(hi)
    span = Fraction(float(hi32 - lo32))
    k = fr.key(-84)
    f = fr.uniform(k, (4096,)).double().tolist()
    exact = [Fraction(x) * span + Fraction(float(lo32)) for x in f]
    want = torch.tensor([max(float(lo32), _float32_nearest(v)) for v in exact], dtype=torch.float32)
    fused = fr.uniform(k, (4096,), torch.float32, lo, hi)
    with monkeypatch.context() as m:
        m.setattr(fr_module, "_NATIVE_UNIFORM", [])
        ops = fr.uniform(k, (4096,), torch.float32, lo, hi)
    tensors = fr.uniform(k, (4096,), torch.float32, torch.tensor(float(lo32)), torch.tensor(float(hi32)))
    for got in (fused, ops, tensors):
        assert torch.equal(got.view(torch.int32), want.view(torch.int32)), bounds
    if lo == 1.595e-31:  # the case that tells one rounding from two: ties in the product
        twice = (torch.tensor(f, dtype=torch.float64) * float(span) + float(lo32)).float()
        assert int((twice != want).sum()) > 100


def test_fused_split_operator_gives_the_torch_ops_keys(monkeypatch):
    """Eager ``split`` is one C++ call (``threefry_split``): the keys the threefry words stacked
    by torch ops give, for counts and shapes, and under ``vmap``."""
    from frl import random as fr_module

    fr_module._native_op()
    assert fr_module._NATIVE_SPLIT, "the C++ kernel builds on this machine"
    for k in fr.split(fr.key(7), 6):
        for num in (1, 2, 3, 17, (2, 3), ()):
            fused = fr.split(k, num)
            with monkeypatch.context() as m:
                m.setattr(fr_module, "_NATIVE_SPLIT", [])
                ops = fr.split(k, num)
            assert fused.shape == ops.shape and torch.equal(fused, ops), num
    keys = fr.split(fr.key(1), 4)
    batched = torch.func.vmap(lambda k: fr.split(k, 3))(keys)
    assert torch.equal(batched, torch.stack([fr.split(k, 3) for k in keys]))


def test_without_extension_or_compiler_the_kernel_falls_back_to_numpy_once_and_says_so():
    """A source install on a machine with no C++ compiler: NumPy bits (the same bits), one warning
    naming why, never a silent change (the wheel's compiled operator is tested by .ci/wheel)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    from frl import random\n"
        "    backend = random.native_backend()\n"
        "    bits = random.bits(random.key(3), (4,)).tolist()\n"
        "    random.bits(random.key(4), (4,))\n"
        "notes = [str(w.message) for w in caught]\n"
        "print(json.dumps({'backend': backend, 'bits': bits, 'warnings': notes}))\n"
    )
    env = {"PATH": "", "OMP_NUM_THREADS": "1", "HOME": "/tmp"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["backend"] == "extension":  # an install with the compiled operator: nothing to fall back from
        return
    assert out["backend"] == "numpy"
    notes = [w for w in out["warnings"] if "threefry" in w]
    assert len(notes) == 1 and "no C++ compiler (c++) on the PATH" in notes[0] and "using NumPy" in notes[0]
    assert out["bits"] == fr.bits(fr.key(3), (4,)).tolist()  # the same words as the C++ kernel


def test_a_killed_builds_lock_is_removed_and_a_live_ones_kept(tmp_path):
    # torch's extension builder waits forever while its lock exists: a killed build's leftover
    # (older than a build takes) must go, a build in progress (a fresh lock) must be waited for
    from frl import _native

    lock = tmp_path / "lock"
    lock.touch()
    _native._clear_stale_lock("frl_native", str(tmp_path))
    assert lock.exists()
    old = time.time() - _native.STALE_LOCK_S - 60
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match="left 11 minutes ago by a build that did not finish"):
        _native._clear_stale_lock("frl_native", str(tmp_path))
    assert not lock.exists()
    _native._clear_stale_lock("frl_native", str(tmp_path))  # no lock: nothing to do


def test_a_built_extension_loads_without_waiting_on_its_builders_lock(tmp_path):
    # a process killed while torch's builder held the lock (even a no-op build holds it) left it
    # behind; once built, frl imports the module by its stamp and never looks at the lock
    from torch.utils.cpp_extension import _get_build_directory

    from frl import _native

    if _native.load()[1] != "jit":
        pytest.skip("the extension is not built here (a wheel's, or no compiler)")
    built = Path(_get_build_directory("frl_native", verbose=False))
    shutil.copytree(built, tmp_path / "frl_native")
    (tmp_path / "frl_native" / "lock").touch()  # fresh: torch would wait on it
    code = "import frl.random as r; print(r.native_backend())"
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["jit"], out.stderr[-2000:]
    assert (tmp_path / "frl_native" / "lock").exists()  # untouched


@pytest.mark.parametrize("n", [1, 2, 17, 256, 513])
def test_stable_order_is_torchs_stable_argsort(n, monkeypatch):
    """``stable_order`` (the C++ radix sort on the CPU) equals ``torch.argsort(stable=True)`` for
    full 32-bit words, 8-bit words (ties everywhere), words that differ in one byte only (passes
    skipped), the extremes of the range, batches of rows, and on the torch path without the
    operator."""
    from frl import random as fr_module

    fr_module._native_op()
    assert fr_module._NATIVE_ORDER, "the C++ kernel builds on this machine"
    k1, k2, k3 = fr.split(fr.key(5), 3)
    one_byte = (fr.bits(k3, (4, n), 8) << 16) | 0x12003400
    extremes = torch.tensor([2**32 - 1, 0, 2**32 - 1, 1, 0] * n)[:n]
    for words in (fr.bits(k1, (3, n)), fr.bits(k2, (2, 5, n), 8), one_byte, extremes):
        expected = torch.argsort(words, dim=-1, stable=True)
        assert torch.equal(fr.stable_order(words), expected)
        with monkeypatch.context() as m:
            m.setattr(fr_module, "_NATIVE_ORDER", [])
            m.setattr(fr_module, "_NATIVE_OP", [None])
            assert torch.equal(fr.stable_order(words), expected)
    rows = torch.zeros(3, 0, dtype=torch.int64)
    assert fr.stable_order(rows).shape == (3, 0)
    words = fr.bits(k1, (4, 6, n), 8)  # vmapped over a middle dim: each [4, n] slice's rows sorted
    batched = torch.func.vmap(fr.stable_order, in_dims=1, out_dims=1)(words)
    assert torch.equal(batched, torch.argsort(words, dim=-1, stable=True))


def test_the_wheel_builds_every_operator_the_run_time_build_does(monkeypatch):
    """``setup.py`` (the wheel's ``frl._C``) and ``frl/_native.py`` (the build at first use) compile
    the same C++ files with the same flags, and those are every file in ``frl/csrc``: a source
    added to one list only would ship a wheel without its operator."""
    import runpy

    import setuptools

    from frl import _native

    root = Path(__file__).resolve().parents[1]
    calls = []
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setenv("FRL_BUILD_EXTENSION", "1")
    monkeypatch.chdir(root)
    runpy.run_path(str(root / "setup.py"))
    (extension,) = calls[0]["ext_modules"]
    assert extension.name == "frl._C"
    assert sorted(Path(s).name for s in extension.sources) == sorted(_native.SOURCES)
    assert sorted(p.name for p in (root / "frl" / "csrc").glob("*.cpp")) == sorted(_native.SOURCES)
    assert extension.extra_compile_args == list(_native.CFLAGS)
    assert all((root / s).is_file() for s in extension.sources)
