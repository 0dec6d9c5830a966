"""frl.returns: hand-computed answers, truncation semantics, TorchRL parity and the four variants.

rlax parity (float32 and float64) is in ``parity/test_returns_rlax.py``.
"""

from __future__ import annotations

import pytest
import torch
from torchrl.objectives.value import functional as trl

from frl import returns
from tests.returns_data import trajectories
from tests.variants import Case, check, variant_params

GAMMA, LMBDA = 0.97, 0.9


def sequential(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Reference for reverse_linear_scan: the plain backward loop."""
    out, y = [], torch.zeros_like(b[..., -1])
    for t in reversed(range(b.shape[-1])):
        y = b[..., t] + a[..., t] * y
        out.append(y)
    return torch.stack(out[::-1], dim=-1)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 64, 100, 1025])
def test_reverse_linear_scan_equals_the_loop(length):
    g = torch.Generator().manual_seed(length)
    a = torch.rand(3, length, generator=g, dtype=torch.float64)
    a = torch.where(torch.rand(3, length, generator=g) < 0.1, torch.zeros_like(a), a)
    b = torch.randn(3, length, generator=g, dtype=torch.float64)
    torch.testing.assert_close(returns.reverse_linear_scan(a, b), sequential(a, b), rtol=1e-12, atol=1e-12)


def test_hand_computed_values():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0])
    nv = torch.tensor([10.0, 20.0, 30.0, 40.0])
    term = torch.tensor([False, True, False, False])
    done = torch.tensor([False, True, False, False])
    g = 0.5
    # episode 1 ends (terminated) at t=1; episode 2 runs to the end and bootstraps from 40
    expected = torch.tensor([1 + 0.5 * 2, 2.0, 3 + 0.5 * (4 + 0.5 * 40), 4 + 0.5 * 40])
    torch.testing.assert_close(returns.discounted_returns(r, term, done, gamma=g, next_value=nv), expected)
    torch.testing.assert_close(
        returns.discounted_returns(r, term, done, gamma=g), torch.tensor([2.0, 2.0, 5.0, 4.0])
    )
    # TD(0) targets and 2-step targets
    td0 = r + g * (1 - term.float()) * nv
    torch.testing.assert_close(returns.lambda_returns(r, nv, term, done, gamma=g, lmbda=0.0), td0)
    torch.testing.assert_close(returns.n_step_targets(r, nv, term, done, gamma=g, n=1), td0)
    two = torch.tensor([1 + 0.5 * 2, 2.0, 3 + 0.5 * 4 + 0.25 * 40, 4 + 0.5 * 40])
    torch.testing.assert_close(returns.n_step_targets(r, nv, term, done, gamma=g, n=2), two)
    v = torch.tensor([5.0, 10.0, 15.0, 30.0])  # consistent: v[t + 1] = nv[t] inside episodes
    adv, target = returns.gae(r, v, nv, term, done, gamma=g, lmbda=1.0)
    torch.testing.assert_close(target, expected)  # lambda = 1: GAE targets are the returns
    torch.testing.assert_close(adv, expected - v)


def test_truncation_bootstraps_and_termination_does_not():
    r = torch.tensor([1.0, 1.0])
    nv = torch.tensor([100.0, 7.0])
    value = torch.zeros(2)
    for term, trunc in [(True, False), (False, True)]:
        terminated = torch.tensor([term, False])
        done = torch.tensor([term or trunc, False])
        expected_first = 1.0 if term else 1.0 + GAMMA * 100.0
        g = returns.discounted_returns(r, terminated, done, gamma=GAMMA, next_value=nv)
        lam = returns.lambda_returns(r, nv, terminated, done, gamma=GAMMA, lmbda=LMBDA)
        nstep = returns.n_step_targets(r, nv, terminated, done, gamma=GAMMA, n=3)
        _, target = returns.gae(r, value, nv, terminated, done, gamma=GAMMA, lmbda=LMBDA)
        vs, _ = returns.vtrace(value, nv, r, torch.zeros(2), terminated, done, gamma=GAMMA)
        td = returns.td_error(r, value, nv, terminated, gamma=GAMMA)
        for name, out in [
            ("discounted", g),
            ("lambda", lam),
            ("n_step", nstep),
            ("gae", target),
            ("vtrace", vs),
            ("td", td),
        ]:
            assert float(out[0]) == pytest.approx(expected_first), f"{name}, terminated={term}"
            # the cut also stops the second episode's return from leaking into the first
            assert float(out[1]) == pytest.approx(1.0 + GAMMA * 7.0), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torchrl_functional(dtype):
    d = trajectories(4, 50, dtype)
    col = {k: v.unsqueeze(-1) for k, v in d.items()}  # TorchRL: [B, T, 1], time at -2
    # TorchRL forms gamma * not_done in float32 whatever the dtype: 1e-7 at best in float64
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-6, atol=1e-6)
    adv, target = returns.gae(
        d["reward"], d["value"], d["next_value"], d["terminated"], d["done"], gamma=GAMMA, lmbda=LMBDA
    )
    ref_adv, ref_target = trl.generalized_advantage_estimate(
        GAMMA, LMBDA, col["value"], col["next_value"], col["reward"], col["done"], col["terminated"]
    )
    torch.testing.assert_close(adv, ref_adv.squeeze(-1), **tol)
    torch.testing.assert_close(target, ref_target.squeeze(-1), **tol)
    lam = returns.lambda_returns(
        d["reward"], d["next_value"], d["terminated"], d["done"], gamma=GAMMA, lmbda=LMBDA
    )
    ref_lam = trl.td_lambda_return_estimate(
        GAMMA, LMBDA, col["next_value"], col["reward"], col["done"], col["terminated"]
    )
    torch.testing.assert_close(lam, ref_lam.squeeze(-1), **tol)
    vs, pg = returns.vtrace(
        d["value"], d["next_value"], d["reward"], d["log_rho"], d["terminated"], d["done"], gamma=GAMMA
    )
    ref_pg, ref_vs = trl.vtrace_advantage_estimate(
        GAMMA,
        col["log_rho"],
        torch.zeros_like(col["log_rho"]),
        col["value"],
        col["next_value"],
        col["reward"],
        col["done"],
        col["terminated"],
    )
    torch.testing.assert_close(vs, ref_vs.squeeze(-1), **tol)
    torch.testing.assert_close(pg, ref_pg.squeeze(-1), **tol)


def test_tensor_hyperparameters_and_leading_dims():
    d = trajectories(6, 20, seed=3)
    gammas = torch.tensor([0.9, 0.99])
    swept = torch.func.vmap(
        lambda g: returns.gae(
            d["reward"], d["value"], d["next_value"], d["terminated"], d["done"], gamma=g, lmbda=0.95
        )[0]
    )(gammas)
    for i, g in enumerate(gammas.tolist()):
        single = returns.gae(
            d["reward"], d["value"], d["next_value"], d["terminated"], d["done"], gamma=g, lmbda=0.95
        )[0]
        torch.testing.assert_close(swept[i], single)
    # any leading dims: [2, 3, T] equals [6, T]
    reshaped = {k: v.reshape(2, 3, 20) for k, v in d.items()}
    out = returns.lambda_returns(
        reshaped["reward"],
        reshaped["next_value"],
        reshaped["terminated"],
        reshaped["done"],
        gamma=0.9,
        lmbda=0.8,
    )
    flat = returns.lambda_returns(
        d["reward"], d["next_value"], d["terminated"], d["done"], gamma=0.9, lmbda=0.8
    )
    torch.testing.assert_close(out.reshape(6, 20), flat)


TIME_FIRST = {
    "gae": lambda d, **kw: returns.gae(
        d["reward"], d["value"], d["next_value"], d["terminated"], d["done"], gamma=0.9, lmbda=0.8, **kw
    ),
    "lambda_returns": lambda d, **kw: returns.lambda_returns(
        d["reward"], d["next_value"], d["terminated"], d["done"], gamma=0.9, lmbda=0.8, **kw
    ),
    "discounted_returns": lambda d, **kw: returns.discounted_returns(
        d["reward"], d["terminated"], d["done"], gamma=0.9, next_value=d["next_value"], **kw
    ),
    "n_step_targets": lambda d, **kw: returns.n_step_targets(
        d["reward"], d["next_value"], d["terminated"], d["done"], gamma=0.9, n=3, **kw
    ),
    "vtrace": lambda d, **kw: returns.vtrace(
        d["value"], d["next_value"], d["reward"], d["log_rho"], d["terminated"], d["done"], gamma=0.9, **kw
    ),
}


@pytest.mark.parametrize("name", sorted(TIME_FIRST))
def test_time_first_callers_pass_time_dim(name):
    """``[T, N]`` (and ``[T, N, M]``) inputs with ``time_dim=0`` give the transposed results."""
    fn = TIME_FIRST[name]
    d = trajectories(6, 20, seed=5)
    expected = fn(d)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = fn({k: v.T for k, v in d.items()}, time_dim=0)
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == (20, 6)
        torch.testing.assert_close(g, e.T)
    three = fn({k: v.T.reshape(20, 2, 3) for k, v in d.items()}, time_dim=0)
    three = three if isinstance(three, tuple) else (three,)
    for g, e in zip(three, expected, strict=True):
        torch.testing.assert_close(g.reshape(20, 6), e.T)
    with pytest.raises(ValueError, match="`time_dim` 2 is not a dim"):
        fn({k: v.T for k, v in d.items()}, time_dim=2)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda: returns.gae(
                torch.zeros(4),
                torch.zeros(4),
                torch.zeros(4, 1),
                torch.zeros(4),
                torch.zeros(4),
                gamma=0.9,
                lmbda=0.9,
            ),
            ValueError,
            "`next_value`",
        ),
        (
            lambda: returns.td_error(
                torch.zeros(()), torch.zeros(()), torch.zeros(()), torch.zeros(()), gamma=0.9
            ),
            ValueError,
            "time dim",
        ),
        (
            lambda: returns.n_step_targets(
                torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), gamma=0.9, n=0
            ),
            ValueError,
            "`n`",
        ),
        (
            lambda: returns.lambda_returns(
                [1.0], torch.zeros(1), torch.zeros(1), torch.zeros(1), gamma=0.9, lmbda=0.9
            ),
            TypeError,
            "`reward`",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _seq(i: int):
    return trajectories(2, 16, seed=10 + i)


def _all_returns(reward, value, next_value, log_rho, terminated, done, gamma):
    return (
        returns.td_error(reward, value, next_value, terminated, gamma=gamma),
        returns.discounted_returns(reward, terminated, done, gamma=gamma, next_value=next_value),
        returns.lambda_returns(reward, next_value, terminated, done, gamma=gamma, lmbda=0.8),
        returns.n_step_targets(reward, next_value, terminated, done, gamma=gamma, n=3),
        *returns.gae(reward, value, next_value, terminated, done, gamma=gamma, lmbda=0.95),
        *returns.vtrace(
            value, next_value, reward, log_rho, terminated, done, gamma=gamma, lmbda=0.9, clip_rho=1.5
        ),
    )


def _args(i: int):
    d = _seq(i)
    return (
        d["reward"],
        d["value"],
        d["next_value"],
        d["log_rho"],
        d["terminated"],
        d["done"],
        torch.tensor(0.9 + 0.02 * i),
    )


CASES = [Case("returns", _all_returns, _args, grad_argnums=(0, 1, 2, 3, 6), rtol=1e-5, atol=1e-5)]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
