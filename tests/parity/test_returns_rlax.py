"""frl.returns against rlax (through JAX), float32 to 1e-5 and float64 to 1e-10.

Convention map: rlax is unbatched and time-major, takes ``discount_t = gamma * (1 - terminated_t)``
and has no notion of truncation, so the reference runs rlax on each episode piece of each row
(cut after every ``done`` and at the end of the sequence) and bootstraps the piece from
``next_value`` at its last step, exactly what frl does in one batched call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frl import returns
from tests.jax_helpers import import_or_skip
from tests.returns_data import segments, trajectories

jax = import_or_skip("jax")
rlax = import_or_skip("rlax")
jnp = jax.numpy
pytestmark = pytest.mark.jax

GAMMA, LMBDA = 0.97, 0.9
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def split_pieces(d: dict[str, torch.Tensor]) -> list[list[dict]]:
    """Per row, the episode pieces as JAX arrays (with rlax's ``discount``)."""
    rows = []
    for b in range(d["reward"].shape[0]):
        pieces = []
        for start, stop in segments(d["done"][b]):
            piece = {k: jnp.asarray(v[b, start:stop].numpy()) for k, v in d.items()}
            piece["discount"] = GAMMA * (1.0 - piece["terminated"].astype(piece["reward"].dtype))
            pieces.append(piece)
        rows.append(pieces)
    return rows


def frl_and_rlax(dtype: torch.dtype):
    d = trajectories(3, 40, dtype, seed=int(dtype == torch.float64))
    rows = split_pieces(d)

    def per_piece(_, fn) -> np.ndarray:
        """``fn(piece)`` on every episode piece of every row, reassembled to ``[B, T]``."""
        fn = jax.jit(fn)
        return np.stack([np.concatenate([np.asarray(fn(p)) for p in pieces]) for pieces in rows])

    args = (d["reward"], d["next_value"], d["terminated"], d["done"])
    pairs = {
        "discounted_returns": (
            returns.discounted_returns(
                d["reward"], d["terminated"], d["done"], gamma=GAMMA, next_value=d["next_value"]
            ),
            per_piece(d, lambda p: rlax.lambda_returns(p["reward"], p["discount"], p["next_value"], 1.0)),
        ),
        "lambda_returns": (
            returns.lambda_returns(*args, gamma=GAMMA, lmbda=LMBDA),
            per_piece(d, lambda p: rlax.lambda_returns(p["reward"], p["discount"], p["next_value"], LMBDA)),
        ),
        "td_error": (
            returns.td_error(d["reward"], d["value"], d["next_value"], d["terminated"], gamma=GAMMA),
            per_piece(
                d,
                lambda p: jax.vmap(rlax.td_learning)(p["value"], p["reward"], p["discount"], p["next_value"]),
            ),
        ),
        "gae": (
            returns.gae(
                d["reward"], d["value"], d["next_value"], d["terminated"], d["done"], gamma=GAMMA, lmbda=LMBDA
            )[0],
            per_piece(
                d,
                lambda p: rlax.truncated_generalized_advantage_estimation(
                    p["reward"], p["discount"], LMBDA, jnp.concatenate([p["value"], p["next_value"][-1:]])
                ),
            ),
        ),
    }
    for n in (1, 3, 5):
        pairs[f"n_step_{n}"] = (
            returns.n_step_targets(*args, gamma=GAMMA, n=n),
            per_piece(
                d,
                lambda p, n=n: rlax.n_step_bootstrapped_returns(
                    p["reward"], p["discount"], p["next_value"], n
                ),
            ),
        )
    vs, pg = returns.vtrace(
        d["value"],
        d["next_value"],
        d["reward"],
        d["log_rho"],
        d["terminated"],
        d["done"],
        gamma=GAMMA,
        lmbda=LMBDA,
        clip_rho=1.2,
        clip_pg_rho=0.8,
    )

    def rlax_vtrace(p):
        return rlax.vtrace_td_error_and_advantage(
            p["value"],
            p["next_value"],
            p["reward"],
            p["discount"],
            jnp.exp(p["log_rho"]),
            lambda_=LMBDA,
            clip_rho_threshold=1.2,
            clip_pg_rho_threshold=0.8,
        )

    pairs["vtrace_targets"] = (vs - d["value"], per_piece(d, lambda p: rlax_vtrace(p).errors))
    pairs["vtrace_pg_advantage"] = (pg, per_piece(d, lambda p: rlax_vtrace(p).pg_advantage))
    return pairs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_returns_match_rlax(dtype):
    with jax.enable_x64(dtype == torch.float64):
        pairs = frl_and_rlax(dtype)
    tol = TOLERANCE[dtype]
    for name, (ours, theirs) in pairs.items():
        assert theirs.dtype == np.dtype(str(dtype).removeprefix("torch.")), name
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=tol, atol=tol, err_msg=name)
