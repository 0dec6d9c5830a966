"""frl.nn's recurrent cells: parity with torch's GRUCell and LSTMCell (values and gradients),
the unroll's resets, errors, and the four variants."""

from __future__ import annotations

import itertools

import pytest
import torch
from tensordict import TensorDict

from frl import nn, random
from tests.variants import Case, check, variant_params

CELLS = {"gru": (nn.GRUCell, torch.nn.GRUCell), "lstm": (nn.LSTMCell, torch.nn.LSTMCell)}


def _torch_step(kind: str, module: torch.nn.Module, x: torch.Tensor, carry: torch.Tensor) -> torch.Tensor:
    if kind == "gru":
        return module(x, carry)
    h, c = carry.chunk(2, dim=-1)
    return torch.cat(module(x, (h, c)), dim=-1)


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_equals_torch_cell_in_value_and_gradient(kind):
    ours_cls, torch_cls = CELLS[kind]
    cell = ours_cls(5, 7)
    torch.manual_seed(0)
    module = torch_cls(5, 7)
    params = TensorDict(dict(module.state_dict()), batch_size=[])
    x = torch.randn(3, 5)
    carry = torch.randn(3, cell.state_size)
    ours = cell.apply(params, x, carry)
    theirs = _torch_step(kind, module, x, carry)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)

    weights = torch.linspace(-1.0, 1.0, ours.numel()).reshape(ours.shape)
    grads = torch.func.grad(lambda p: (cell.apply(p, x, carry) * weights).sum())(params)
    (_torch_step(kind, module, x, carry) * weights).sum().backward()
    for name, p in module.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(CELLS))
def test_init_shapes_orthogonal_blocks_and_key_purity(kind):
    cell = CELLS[kind][0](4, 6)
    gates = 3 if kind == "gru" else 4
    params = cell.init(random.key(1))
    assert params["weight_ih"].shape == (gates * 6, 4)
    assert params["weight_hh"].shape == (gates * 6, 6)
    assert params["bias_hh"].shape == (gates * 6,) and torch.all(params["bias_hh"] == 0)
    block = params["weight_hh"][:6]  # one gate's square block is orthogonal
    torch.testing.assert_close(block @ block.T, torch.eye(6), atol=1e-5, rtol=0)
    again = cell.init(random.key(1))
    assert all(torch.equal(params[k], again[k]) for k in params.keys(True, True))
    assert not torch.equal(params["weight_ih"], cell.init(random.key(2))["weight_ih"])


def test_lstm_forget_bias_sits_in_the_forget_gate():
    params = nn.LSTMCell(3, 4, forget_bias=1.0).init(random.key(0))
    expected = torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8)
    assert torch.equal(params["bias_ih"], expected)


@pytest.mark.parametrize("kind", list(CELLS))
def test_unroll_equals_torch_rnn_per_episode_with_resets(kind):
    """An unroll over a segment with two episode starts equals torch's multi-step GRU/LSTM run
    separately on each episode's steps from a zero state (the first piece from the given carry)."""
    ours_cls, _ = CELLS[kind]
    cell = ours_cls(3, 5)
    torch.manual_seed(1)
    rnn = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(3, 5, batch_first=True)
    params = TensorDict({k[:-3]: v for k, v in rnn.state_dict().items()}, batch_size=[])  # drop "_l0"
    T = 9
    inputs = torch.randn(2, T, 3)
    starts = torch.zeros(2, T, dtype=torch.bool)
    starts[0, 4] = starts[0, 7] = starts[1, 0] = True
    carry = torch.randn(2, cell.state_size)
    carries = nn.unroll(cell, params, inputs, carry, starts)
    outputs, final = cell.output(carries), carries[:, -1]
    assert outputs.shape == (2, T, 5) and carries.shape == (2, T, cell.state_size)
    for row, cuts in ((0, [0, 4, 7, T]), (1, [0, T])):
        state = carry[row]
        for a, b in itertools.pairwise(cuts):
            init = torch.zeros_like(state) if starts[row, a] else state
            if kind == "gru":
                expected, h = rnn(inputs[row : row + 1, a:b], init[None, None])
                last = h[0, 0]
            else:
                h0, c0 = init.chunk(2)
                expected, (h, c) = rnn(inputs[row : row + 1, a:b], (h0[None, None], c0[None, None]))
                last = torch.cat([h[0, 0], c[0, 0]])
            torch.testing.assert_close(outputs[row, a:b], expected[0], rtol=1e-5, atol=1e-6)
            state = last
        torch.testing.assert_close(final[row], state, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: nn.GRUCell(0, 4), "`input_size` must be a positive int"),
        (lambda: nn.LSTMCell(3, -1), "`hidden_size` must be a positive int"),
        (
            lambda: nn.GRUCell(3, 4).apply(
                nn.GRUCell(3, 4).init(random.key(0)), torch.zeros(2, 5), torch.zeros(2, 4)
            ),
            r"`x` must have shape \[\.\.\., 3\]",
        ),
        (
            lambda: nn.LSTMCell(3, 4).apply(
                nn.LSTMCell(3, 4).init(random.key(0)), torch.zeros(2, 3), torch.zeros(2, 4)
            ),
            r"`carry` must have shape \[\.\.\., 8\]",
        ),
        (
            lambda: nn.unroll(
                nn.GRUCell(3, 4),
                nn.GRUCell(3, 4).init(random.key(0)),
                torch.zeros(2, 5, 3),
                torch.zeros(2, 4),
                torch.zeros(2, 4, dtype=torch.bool),
            ),
            r"`starts` must have shape \[2, 5\]",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _unroll_case(kind: str) -> Case:
    cell = CELLS[kind][0](3, 4)

    def make_args(i: int):
        g = torch.Generator().manual_seed(i)
        starts = torch.rand(2, 6, generator=g) < 0.3
        return (
            cell.init(random.key(i)),
            torch.randn(2, 6, 3, generator=g),
            torch.randn(2, cell.state_size, generator=g),
            starts,
        )

    return Case(
        f"unroll_{kind}",
        lambda p, x, c, s: nn.unroll(cell, p, x, c, s),
        make_args,
        grad_argnums=(0, 1, 2),
        rtol=1e-5,
    )


@pytest.mark.parametrize("case, variant", variant_params([_unroll_case("gru"), _unroll_case("lstm")]))
def test_variants(case, variant):
    check(case, variant)
