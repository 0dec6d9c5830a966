"""Regenerate ``random_jax.json``: jax.random outputs that ``tests/test_random.py`` checks frl against.

Run with the ``jax`` extra installed (``python tests/golden/make_random_golden.py``). The file is
committed so the bit-compatibility checks also run where JAX is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SEEDS = [0, 1, 42, 2**31 - 1, 2**32 + 5, -1, 123456789]
OUT = Path(__file__).with_name("random_jax.json")


def words(x) -> list:
    return np.asarray(x).astype(np.int64).tolist()


def floats(x) -> list:
    return np.asarray(x).astype(np.float64).tolist()


def logits_for(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(abs(seed) % 2**32).standard_normal(shape).astype(np.float32)


def main() -> None:
    cases = []
    for seed in SEEDS:
        k = jax.random.key(seed)
        logits = logits_for(seed, (4, 6))
        probs = np.random.default_rng(7).uniform(size=(5,)).astype(np.float32)
        cases.append(
            {
                "seed": seed,
                "key": words(jax.random.key_data(k)),
                "split2": words(jax.random.key_data(jax.random.split(k))),
                "split_2x3": words(jax.random.key_data(jax.random.split(k, (2, 3)))),
                "fold_in_7": words(jax.random.key_data(jax.random.fold_in(k, 7))),
                "fold_in_big": words(jax.random.key_data(jax.random.fold_in(k, 2**32 - 1))),
                "bits32_3x5": words(jax.random.bits(k, (3, 5), jnp.uint32)),
                "bits16_7": words(jax.random.bits(k, (7,), jnp.uint16)),
                "bits8_7": words(jax.random.bits(k, (7,), jnp.uint8)),
                "uniform_f32_11": floats(jax.random.uniform(k, (11,))),
                "uniform_f32_range": floats(jax.random.uniform(k, (11,), jnp.float32, -3.0, 5.5)),
                "uniform_f16_range": floats(jax.random.uniform(k, (11,), jnp.float16, -3.0, 5.5)),
                "uniform_bf16_range": floats(jax.random.uniform(k, (11,), jnp.bfloat16, 0.1, 0.3)),
                "normal_f32_2x8": floats(jax.random.normal(k, (2, 8))),
                "gumbel_f32_9": floats(jax.random.gumbel(k, (9,))),
                "truncated_normal_9": floats(jax.random.truncated_normal(k, -1.5, 2.0, (9,))),
                "logits_4x6": floats(logits),
                "categorical": words(jax.random.categorical(k, logits)),
                "categorical_axis0": words(jax.random.categorical(k, logits, axis=0)),
                "categorical_3x4": words(jax.random.categorical(k, logits, shape=(3, 4))),
                "probs_5": floats(probs),
                "bernoulli_p": words(jax.random.bernoulli(k, probs)),
                "bernoulli_03_8": words(jax.random.bernoulli(k, 0.3, (8,))),
                "randint_0_10": words(jax.random.randint(k, (9,), 0, 10)),
                "randint_wide": words(jax.random.randint(k, (9,), -(2**31), 2**31 - 1)),
                "randint_big_span": words(jax.random.randint(k, (9,), -1000, 10**9 + 7)),
                "permutation_10": words(jax.random.permutation(k, 10)),
                "permutation_2d_axis1": words(
                    jax.random.permutation(k, jnp.arange(12).reshape(3, 4), axis=1)
                ),
                "permutation_independent": words(
                    jax.random.permutation(k, jnp.arange(12).reshape(3, 4), axis=1, independent=True)
                ),
                "choice_6_4": words(jax.random.choice(k, 6, (4,))),
                "choice_6_4_noreplace": words(jax.random.choice(k, 6, (4,), replace=False)),
                "choice_p": words(jax.random.choice(k, 5, (6,), p=jnp.asarray(probs))),
                "choice_p_noreplace": words(
                    jax.random.choice(k, 5, (3,), replace=False, p=jnp.asarray(probs))
                ),
            }
        )
    with jax.enable_x64(True):
        for case in cases:
            k = jax.random.key(case["seed"])
            case["key_x64"] = words(jax.random.key_data(k))
            case["bits64_5"] = np.asarray(jax.random.bits(k, (5,), jnp.uint64)).view(np.int64).tolist()
            case["uniform_f64_5"] = floats(jax.random.uniform(k, (5,), jnp.float64))
    # n > 1625 takes two shuffle rounds.
    cases[0]["permutation_1700"] = words(jax.random.permutation(jax.random.key(cases[0]["seed"]), 1700))
    meta = {"jax": jax.__version__, "partitionable": bool(jax.config.jax_threefry_partitionable)}
    lines = ",\n".join(json.dumps(case, separators=(",", ":")) for case in cases)
    OUT.write_text(f'{{"meta": {json.dumps(meta)},\n"cases": [\n{lines}\n]}}\n')
    print(f"wrote {OUT} ({len(cases)} seeds)")


if __name__ == "__main__":
    main()
