"""frl.optim against optax (through JAX): updates, schedules and target updates (needs the `jax` extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

import frl.random as fr
from frl import nn, optim
from tests.jax_helpers import import_or_skip

jax = import_or_skip("jax")
optax = import_or_skip("optax")
jnp = jax.numpy
pytestmark = pytest.mark.jax

STEPS = 200


def to_jax(td: TensorDict) -> dict:
    return {".".join(k): jnp.asarray(td.get(k).numpy()) for k in td.keys(True, True)}


def max_relative_error(params: TensorDict, jax_params: dict) -> float:
    errors = []
    for k in params.keys(True, True):
        ref = np.asarray(jax_params[".".join(k)])
        scale = max(np.abs(ref).max(), np.finfo(np.float32).tiny)  # zero-initialised biases
        errors.append(np.abs(params.get(k).numpy() - ref).max() / scale)
    return float(max(errors))


PAIRS = {
    "adam": (lambda: optim.adam(1e-3), lambda: optax.adam(1e-3)),
    "adam_eps_root": (
        lambda: optim.adam(3e-3, b1=0.8, eps_root=1e-8),
        lambda: optax.adam(3e-3, b1=0.8, eps_root=1e-8),
    ),
    "adamw": (lambda: optim.adamw(1e-3, weight_decay=1e-2), lambda: optax.adamw(1e-3, weight_decay=1e-2)),
    "sgd_momentum": (lambda: optim.sgd(1e-2, momentum=0.9), lambda: optax.sgd(1e-2, momentum=0.9)),
    "sgd_nesterov": (
        lambda: optim.sgd(1e-2, momentum=0.9, nesterov=True),
        lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True),
    ),
    "clip_adam_cosine": (
        lambda: optim.chain(
            optim.clip_by_global_norm(0.5), optim.adam(optim.cosine_decay_schedule(1e-2, 150, 0.1))
        ),
        lambda: optax.chain(
            optax.clip_by_global_norm(0.5), optax.adam(optax.cosine_decay_schedule(1e-2, 150, 0.1))
        ),
    ),
}


def replay(name: str, dtype: torch.dtype) -> float:
    """frl trains an MLP on its own gradients for 200 steps; optax replays the same gradients.

    Returns the worst relative parameter error over all steps.
    """
    make_frl, make_optax = PAIRS[name]
    net = nn.MLP((6, 32, 32, 1), activation="tanh", dtype=dtype)
    params = net.init(fr.key(0))
    x, y = fr.normal(fr.key(1), (256, 6), dtype), fr.normal(fr.key(2), (256,), dtype)
    loss = lambda p: ((net.apply(p, x).squeeze(-1) - y) ** 2).mean()
    tx, reference = make_frl(), make_optax()
    state, jax_params = tx.init(params), to_jax(params)
    jax_state = reference.init(jax_params)
    worst = 0.0
    for _ in range(STEPS):
        grads = torch.func.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        jax_updates, jax_state = reference.update(to_jax(grads), jax_state, jax_params)
        jax_params = optax.apply_updates(jax_params, jax_updates)
        worst = max(worst, max_relative_error(params, jax_params))
    return worst


@pytest.mark.parametrize("name", list(PAIRS))
def test_updates_match_optax_float64(name):
    """With JAX in 64-bit mode both compute in float64: the update rules agree to rounding."""
    with jax.enable_x64(True):
        worst = replay(name, torch.float64)
    assert worst <= 1e-12, f"{name}: worst relative error {worst:.2e}"


# optax forms Adam's bias corrections `1 - b**t` in float32 (1.3e-5 relative error in
# 1 - 0.999 at t=1); frl, like torch.optim, forms them in float64. In float32 that alone
# separates the parameters by up to 2.7e-4 relative over 200 steps; everything else agrees.
FLOAT32_TOLERANCE = {"adam": 5e-4, "adam_eps_root": 5e-4, "adamw": 5e-4, "clip_adam_cosine": 5e-4}


@pytest.mark.parametrize("name", list(PAIRS))
def test_updates_match_optax_float32(name):
    worst = replay(name, torch.float32)
    assert worst <= FLOAT32_TOLERANCE.get(name, 1e-6), f"{name}: worst relative error {worst:.2e}"


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (optim.linear_schedule(1.0, 0.1, 50, 10), optax.linear_schedule(1.0, 0.1, 50, 10)),
        (optim.cosine_decay_schedule(2.0, 80, alpha=0.05), optax.cosine_decay_schedule(2.0, 80, alpha=0.05)),
        (
            optim.cosine_decay_schedule(1.0, 80, exponent=2.0),
            optax.cosine_decay_schedule(1.0, 80, exponent=2.0),
        ),
        (
            optim.warmup_cosine_decay_schedule(0.0, 1.0, 20, 100, 0.05),
            optax.warmup_cosine_decay_schedule(0.0, 1.0, 20, 100, 0.05),
        ),
        (optim.constant_schedule(0.3), optax.constant_schedule(0.3)),
    ],
)
def test_schedules_match_optax(ours, theirs):
    counts = np.arange(0, 130)
    got = np.array([float(ours(int(c))) for c in counts])
    want = np.array([float(theirs(int(c))) for c in counts])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_target_updates_match_optax():
    online, target = nn.MLP((3, 8, 1)).init(fr.key(0)), nn.MLP((3, 8, 1)).init(fr.key(1))
    ours = optim.polyak(target, online, 0.005)
    theirs = optax.incremental_update(to_jax(online), to_jax(target), 0.005)
    assert max_relative_error(ours, theirs) <= 1e-6
    for step in (0, 3, 6):
        ours = optim.periodic_update(online, target, torch.tensor(step), 3)
        theirs = optax.periodic_update(to_jax(online), to_jax(target), jnp.asarray(step), 3)
        assert max_relative_error(ours, theirs) == 0.0


def test_global_norm_matches_optax():
    tree = nn.MLP((3, 8, 1)).init(fr.key(0))
    np.testing.assert_allclose(
        float(optim.global_norm(tree)), float(optax.tree.norm(to_jax(tree))), rtol=1e-6
    )
