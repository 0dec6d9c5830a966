"""frl.losses primitives (policy_terms, value_terms): hand-computed values, gradient routing,
and the four variants (vmap and grad per term; one compiled graph for all of them)."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

import frl.random as fr
from frl import losses as L
from tests.variants import Case, check

# --------------------------------------------------------------------------------------
# Values by hand
# --------------------------------------------------------------------------------------


def test_policy_terms_by_hand():
    log_prob = torch.tensor([-1.0, -2.0])
    adv = torch.tensor([2.0, -1.0])
    assert float(L.policy_gradient_term(log_prob, adv)) == pytest.approx(-(-2.0 + 2.0) / 2)
    w = torch.tensor([1.0, 0.0])
    assert float(L.policy_gradient_term(log_prob, adv, w)) == pytest.approx(2.0 / 2)
    # ratios 1.5 (A > 0: clipped to 1.2) and 0.5 (A < 0: clipped to 0.8, min picks -0.8)
    ratio = torch.tensor([1.5, 0.5])
    assert float(L.clipped_surrogate(ratio, adv, 0.2)) == pytest.approx(-(1.2 * 2.0 + 0.8 * -1.0) / 2)
    assert float(L.entropy_bonus(torch.tensor([0.5, 1.5]))) == pytest.approx(-1.0)
    q = torch.tensor([1.0, 3.0])
    assert float(L.soft_policy_loss(log_prob, q, 0.5)) == pytest.approx(((-0.5 - 1) + (-1 - 3)) / 2)
    probs = torch.tensor([[0.25, 0.75]])
    per_action_lp = torch.log(probs)
    expected = 0.25 * (0.5 * math.log(0.25) - 1.0) + 0.75 * (0.5 * math.log(0.75) - 3.0)
    assert float(L.soft_policy_loss(per_action_lp, q[None], 0.5, probs=probs)) == pytest.approx(expected)
    log_alpha = torch.tensor(0.3)
    assert float(L.temperature_loss(log_alpha, log_prob, -1.0)) == pytest.approx(-0.3 * ((-2.0) + (-3.0)) / 2)


def test_value_terms_by_hand():
    r, term = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([False, True, False])
    nv = torch.tensor([10.0, 10.0, 10.0])
    torch.testing.assert_close(L.td_target(r, term, nv, gamma=0.5), torch.tensor([6.0, 1.0, 6.0]))
    steps = torch.tensor([2, 1, 3])
    torch.testing.assert_close(
        L.td_target(r, term, nv, gamma=0.5, steps=steps), torch.tensor([1 + 2.5, 1.0, 1 + 1.25])
    )
    q_target = torch.tensor([[10.0, 20.0], [30.0, 40.0], [0.0, 5.0]])
    q_online = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])  # selects 0, 1, 0
    torch.testing.assert_close(
        L.double_q_target(r, term, q_target, q_online, gamma=0.5), torch.tensor([6.0, 1.0, 1.0])
    )
    torch.testing.assert_close(L.soft_value(torch.tensor([[0.0, 0.0]]), 1.0), torch.tensor([math.log(2.0)]))
    y = L.soft_target(r, term, nv, torch.tensor([-1.0, -1.0, -2.0]), alpha=0.5, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([1 + 0.5 * 10.5, 1.0, 1 + 0.5 * 11.0]))
    probs = torch.tensor([[0.5, 0.5]]).expand(3, 2)
    y = L.soft_target(r, term, q_target, torch.log(probs), alpha=1.0, gamma=0.5, next_probs=probs)
    torch.testing.assert_close(y, 1.0 + 0.5 * (1 - term.float()) * (q_target.mean(-1) + math.log(2.0)))
    v, t = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 0.0])
    assert float(L.value_loss(v, t)) == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    old = torch.tensor([0.0, 2.5])  # clipping at 0.2: V_clip = [0.2, 2.3]
    expected = 0.5 * (max(1.0, (0.2 - 2.0) ** 2) + max(4.0, 2.3**2)) / 2
    assert float(L.clipped_value_loss(v, old, t, 0.2)) == pytest.approx(expected)
    td = torch.tensor([0.5, -3.0])
    assert float(L.regression_loss(td)) == pytest.approx((0.25 + 9.0) / 2)
    assert float(L.regression_loss(td, "huber")) == pytest.approx((0.125 + 2.5) / 2)
    with pytest.raises(ValueError, match="`kind` must be 'mse' or 'huber'"):
        L.regression_loss(td, "l1")


def test_targets_and_stopped_terms_carry_no_gradient():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    r, term = torch.zeros(2), torch.zeros(2, dtype=torch.bool)
    assert not L.td_target(r, term, x, gamma=0.9).requires_grad
    assert not L.soft_target(r, term, x, x, alpha=0.1, gamma=0.9).requires_grad
    # advantages and temperature inputs are detached inside the terms
    stopped = L.policy_gradient_term(torch.ones(2), x) + L.clipped_surrogate(torch.ones(2), x, 0.2)
    assert not stopped.requires_grad
    log_alpha = torch.tensor(0.0, requires_grad=True)
    ga, gx = torch.autograd.grad(L.temperature_loss(log_alpha, x, 0.0), (log_alpha, x), allow_unused=True)
    assert ga is not None and gx is None
    # the clipped branch stops the policy gradient once the ratio leaves the band in A's favour
    ratio = torch.tensor([1.5, 1.1], requires_grad=True)
    (g,) = torch.autograd.grad(L.clipped_surrogate(ratio, torch.ones(2), 0.2), ratio)
    assert g.tolist() == [0.0, -0.5]


# --------------------------------------------------------------------------------------
# Four variants: vmap and grad per term; one compiled graph computes every term
# --------------------------------------------------------------------------------------

B, A = 6, 3


def _inputs(i: int) -> TensorDict:
    ks = fr.split(fr.key(500 + i), 8)
    data = {
        "x": fr.normal(ks[0], (B,)),
        "y": fr.normal(ks[1], (B,)),
        "z": fr.normal(ks[2], (B,)),
        "ratio": torch.exp(0.3 * fr.normal(ks[3], (B,))),
        "term": fr.bernoulli(ks[4], 0.3, (B,)).float(),  # 0/1 floats: torch.func.grad takes the whole dict
        "qa": fr.normal(ks[5], (B, A)),
        "qb": fr.normal(ks[6], (B, A)),
        "w": fr.uniform(ks[7], (B,)),
    }
    return TensorDict(data, batch_size=[])


TERMS = {
    "policy_gradient_term": lambda d: L.policy_gradient_term(d["x"], d["y"], d["w"]),
    "clipped_surrogate": lambda d: L.clipped_surrogate(d["ratio"], d["y"], 0.2, d["w"]),
    "entropy_bonus": lambda d: L.entropy_bonus(d["x"].exp()),
    "soft_policy_loss": lambda d: L.soft_policy_loss(
        torch.log_softmax(d["qa"], -1), d["qb"], 0.3, probs=torch.softmax(d["qa"], -1)
    ),
    "temperature_loss": lambda d: L.temperature_loss(d["x"].mean(), d["y"], -1.0),
    "td_target": lambda d: L.td_target(d["x"], d["term"], d["y"], gamma=0.9),
    "double_q_target": lambda d: L.double_q_target(d["x"], d["term"], d["qa"], d["qb"], gamma=0.9),
    "soft_target": lambda d: L.soft_target(d["x"], d["term"], d["y"], d["z"], alpha=0.2, gamma=0.9),
    "soft_value": lambda d: L.soft_value(d["qa"], 0.5),
    "value_loss": lambda d: L.value_loss(d["x"], d["y"], d["w"]),
    "clipped_value_loss": lambda d: L.clipped_value_loss(d["x"], d["z"], d["y"], 0.2),
    "regression_loss": lambda d: L.regression_loss(d["x"] - d["y"], "huber", 0.5, d["w"]),
}
# targets are detached by design: their grad variant would be all zeros
NO_GRAD = {"td_target", "double_q_target", "soft_target"}


def _case(name: str) -> Case:
    fn = TERMS[name]
    return Case(name, lambda d: fn(d), lambda i: (_inputs(i),), grad_argnums=None if name in NO_GRAD else 0)


@pytest.mark.parametrize("name", sorted(TERMS))
def test_term_vmaps(name):
    check(_case(name), "vmap")


@pytest.mark.parametrize("name", sorted(set(TERMS) - NO_GRAD))
def test_term_grad(name):
    check(_case(name), "grad")


@pytest.mark.compile
def test_every_term_compiles_in_one_graph():
    check(
        Case("all_terms", lambda d: {n: f(d) for n, f in TERMS.items()}, lambda i: (_inputs(i),)), "compile"
    )
