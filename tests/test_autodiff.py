"""frl._autodiff.grad_with_aux: the eager fast path never cuts a higher-order gradient.

A MAML-style meta-gradient (Finn et al. 2017): one inner SGD step ``phi = theta - a grad L_A(theta)``
on task data A, then the outer loss ``L_B(phi)`` on data B, differentiated with respect to
``theta``. The inner step goes through frl (``grad_with_aux`` directly, and ``make_update`` with
``frl.optim.sgd``); the outer gradient is taken with ``torch.func.grad`` and with plain
``backward``, and both must match central finite differences in float64.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

import frl.random as fr
from frl import nn, optim
from frl._autodiff import grad_with_aux
from frl.update import make_update

NET = nn.MLP((2, 4, 1), activation="tanh")
INNER_LR = 0.3


def _data(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    k1, k2 = fr.split(fr.key(100 + i))
    x = fr.normal(k1, (8, 2), torch.float64)
    return x, torch.sin(x.sum(-1, keepdim=True)) + 0.1 * fr.normal(k2, (8, 1), torch.float64)


TASK, QUERY = _data(0), _data(1)


def _loss(params: TensorDict, data, scale: torch.Tensor | float = 1.0):
    x, y = data
    err = NET.apply(params, x) - y
    loss = scale * (err * err).mean()
    return loss, TensorDict({"loss": loss.detach()}, batch_size=[])


def _theta() -> TensorDict:
    return NET.init(fr.key(3)).apply(lambda x: x.to(torch.float64))


def meta_loss_grad_with_aux(theta: TensorDict, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    grads, _ = grad_with_aux(lambda p: _loss(p, TASK, scale), theta)
    return _loss(_inner_step(theta, grads), QUERY)[0]


def meta_loss_make_update(theta: TensorDict) -> torch.Tensor:
    update = make_update(lambda p, b, key=None: _loss(p, b), optim.sgd(INNER_LR))
    state, _ = update.step(update.init(theta), TASK, None)
    return _loss(state["params"], QUERY)[0]


def finite_differences(f, theta: TensorDict, eps: float = 1e-6) -> TensorDict:
    out = {}
    for key in theta.keys(include_nested=True, leaves_only=True):
        base = theta.get(key).contiguous()
        grad = torch.zeros(base.numel(), dtype=base.dtype)
        for j in range(base.numel()):
            bump = torch.zeros(base.numel(), dtype=base.dtype)
            bump[j] = eps
            up, down = theta.clone(), theta.clone()
            up.set(key, base + bump.reshape(base.shape))
            down.set(key, base - bump.reshape(base.shape))
            grad[j] = (f(up) - f(down)) / (2 * eps)
        out[key] = grad.reshape(base.shape)
    return TensorDict(out, batch_size=[])


def backward_grads(f, theta: TensorDict) -> TensorDict:
    leaves = theta.apply(lambda x: x.clone().requires_grad_(True))
    f(leaves).backward()
    return leaves.apply(lambda x: x.grad)


def _assert_close(a: TensorDict, b: TensorDict) -> None:
    for key in a.keys(include_nested=True, leaves_only=True):
        torch.testing.assert_close(a.get(key), b.get(key), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("meta_loss", [meta_loss_grad_with_aux, meta_loss_make_update])
def test_maml_meta_gradient_matches_finite_differences(meta_loss):
    theta = _theta()
    expected = finite_differences(meta_loss, theta)
    _assert_close(torch.func.grad(meta_loss)(theta), expected)  # the functorch path inside
    _assert_close(backward_grads(meta_loss, theta), expected)  # the eager fast path inside
    # the first-order approximation (the inner gradient cut) is measurably different
    first_order = backward_grads(lambda t: _loss(_inner_step(t, _detached(t)), QUERY)[0], theta)
    diff = max(float((first_order.get(k) - expected.get(k)).abs().max()) for k in expected.keys(True, True))
    assert diff > 1e-4


def _inner_step(theta: TensorDict, grads: TensorDict) -> TensorDict:
    return theta.apply(lambda p, g: p - INNER_LR * g, grads)


def _detached(theta: TensorDict) -> TensorDict:
    return grad_with_aux(lambda p: _loss(p, TASK), theta.apply(lambda x: x.detach()))[0]


def test_gradient_through_a_captured_loss_coefficient():
    """The inner loss reads a learned coefficient from its closure: its meta-gradient survives."""
    theta = _theta()
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    meta_loss_grad_with_aux(theta, scale).backward()

    def f(s: float) -> float:
        return float(meta_loss_grad_with_aux(theta, torch.tensor(s, dtype=torch.float64)))

    eps = 1e-6
    expected = (f(1.5 + eps) - f(1.5 - eps)) / (2 * eps)
    assert scale.grad is not None
    assert float(scale.grad) == pytest.approx(expected, rel=1e-6)


def test_plain_training_keeps_no_graph():
    """Params that need no gradient get gradients without a graph (nothing accumulates)."""
    theta = _theta()
    grads, aux = grad_with_aux(lambda p: _loss(p, TASK), theta)
    assert all(not g.requires_grad for g in grads.values(True, True))
    expected = torch.func.grad(lambda p: _loss(p, TASK)[0])(theta)
    _assert_close(grads, expected)
    assert not aux["loss"].requires_grad
