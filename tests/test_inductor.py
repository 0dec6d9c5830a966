"""frl's additions to Inductor (frl/_inductor.py): the inline threefry lowering, the rewrite of
thin matmuls and the products sent to frl's small-rows kernel and to oneDNN. Each compiled test
reads the code Inductor generated, so it fails when the addition is not in force, and compares
every value with the eager result."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch._inductor.utils import run_and_get_code

import frl
from frl import _inductor, random
from frl._inductor import (
    INLINE_DRAW_LIMIT,
    ONEDNN_WORK,
    SMALL_MM_COLUMNS,
    SMALL_MM_MEMBER_WORK,
    SMALL_MM_WORK,
    SMALL_ROWS,
    SMALL_ROWS_MEMBERS,
    SMALL_ROWS_WORK,
    ThinMatmul,
    onednn_ready,
    post_grad_pass,
    small_mm_ready,
    small_rows_ready,
)

_OPERATOR_CALL = re.compile(r'call_dispatcher\("frl(_native)?::threefry_blocks')


def _draws(key: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    key, k1, k2, k3, k4, k5, k6, k7 = random.split(key, 8)
    return {
        "key": key,
        "uniform": random.uniform(k1, (3,)),
        "normal": random.normal(k2, (5,)),
        "randint": random.randint(k3, (128,), 0, 10_000),
        "categorical": random.categorical(k4, logits),
        "permutation": random.permutation(k5, 16),
        "bits64": random.bits(k6, (4,), width=64),
        "vmapped": torch.func.vmap(lambda k: random.uniform(k, (2,)))(random.split(k7, 3)),
        "large": random.uniform(k7, (INLINE_DRAW_LIMIT + 1,)),  # past the limit: the operator
    }


@pytest.mark.compile
def test_threefry_lowering_gives_the_operators_words_bit_for_bit() -> None:
    key, logits = random.key(42), torch.randn(4, 6)
    eager = _draws(key, logits)
    compiled, code = run_and_get_code(frl.compile(_draws, device="cpu"), key, logits)
    for name, value in eager.items():
        assert torch.equal(compiled[name], value), name
    # every draw inline but the one past INLINE_DRAW_LIMIT
    assert len(_OPERATOR_CALL.findall("\n".join(code))) == 1


def _layers(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return F.linear(torch.tanh(F.linear(x, w1, b1)), w2)  # addmm, then mm (no bias)


Tensors = tuple[torch.Tensor, ...]


def _square_sum(p: Tensors, x: torch.Tensor) -> torch.Tensor:
    return _layers(x, *p).square().sum()


def _networks(params: Tensors, xs: Tensors, members: Tensors, batch: torch.Tensor):
    outs = [_layers(x, *params) for x in xs]
    grads = [torch.func.grad(_square_sum)(params, x) for x in (xs[1], xs[3])]
    vmapped = torch.func.vmap(_layers)(*members)  # per-member parameters on 2 rows: batched, kept
    # and on 128 rows, with gradients: the 2-wide output layer and its input gradient become loops
    vmapped_grads = torch.func.vmap(torch.func.grad(_square_sum))(members[1:], batch)
    return outs, grads, vmapped, vmapped_grads


@pytest.mark.compile
def test_thin_matmuls_become_generated_loops_and_keep_their_values() -> None:
    gen = torch.Generator().manual_seed(0)
    params = tuple(torch.randn(*s, generator=gen) for s in ((64, 8), (64,), (2, 64)))
    rows = (1, SMALL_ROWS, SMALL_ROWS + 1, 128)
    xs = tuple(torch.randn(r, 8, generator=gen) for r in rows)
    stacked = (torch.randn(5, *p.shape, generator=gen) for p in params)
    members = (torch.randn(5, 2, 8, generator=gen), *stacked)
    batch = torch.randn(5, 128, 8, generator=gen)
    eager = _networks(params, xs, members, batch)
    compiled, code = run_and_get_code(frl.compile(_networks, device="cpu"), params, xs, members, batch)
    for a, b in zip(torch.utils._pytree.tree_leaves(compiled), torch.utils._pytree.tree_leaves(eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float sums in another order
    source = "\n".join(code)
    # the library keeps the 64-wide hidden layer of the 5- and 128-row forward passes and of the
    # 128-row gradient's own forward pass (a contraction of 8), and W1's gradient at 4 and 128 rows
    # (64 rows, 8 columns); loops: every product of 1-4 rows, the 2-wide output layer at every row
    # count and, in the gradients, W2's (2 rows) and the hidden layer's (a contraction of 2). With
    # the small-products kernel, the three of 128 rows (65k multiply-adds each) go to it.
    small = 3 if small_mm_ready() else 0
    assert source.count("aoti_torch_cpu_addmm_out(") == 3 - 2 * small // 3
    assert source.count("aoti_torch_cpu_mm_out(") == 2 - small // 3
    assert "aoti_torch_cpu_bmm_out(" in source or "aoti_torch_cpu_baddbmm_out(" in source
    # batched: the 2-row members' two products, and the 128-row members' hidden layer (a
    # contraction of 8) and both weight gradients (2 and 64 rows of a contraction of 128) stay;
    # with the small-products kernel the hidden layer (64 columns) goes to it, and so do the thin
    # ones of 64 columns (_thin_for_small_mm): the 2-row members' hidden layer and W2's gradient
    batched = 3 if small_mm_ready() else 0
    assert source.count("frl_native::small_mm") == small + batched
    assert source.count("aoti_torch_cpu_bmm_out(") == 5 - batched, source.count("aoti_torch_cpu_bmm_out(")


def test_the_rewrite_chooses_products_by_shape_and_copies_a_short_transposed_weight() -> None:
    """Which products the pass rewrites (FX level, no compile): thin ones by rows, columns or
    contraction, not a 128x4 by 4x64 layer nor a square one; a rewritten short contraction over a
    transposed weight reads a ``[K, N]`` copy of it (``as_strided``: Inductor writes it out)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def layer(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)  # mm(x, w.t())

    def rewritten(rows: int, inputs: int, outputs: int) -> tuple[bool, bool]:
        with _onednn(False):
            return _rewritten(rows, inputs, outputs)

    def _rewritten(rows: int, inputs: int, outputs: int) -> tuple[bool, bool]:
        graph = make_fx(layer, tracing_mode="fake")(
            torch.randn(rows, inputs), torch.randn(outputs, inputs)
        ).graph
        ThinMatmul()(graph)
        targets = {node.target for node in graph.nodes if node.op == "call_function"}
        return torch.ops.aten.mm.default not in targets, torch.ops.aten.as_strided.default in targets

    assert rewritten(4, 4, 64) == (True, True)  # 4 rows, a transposed 4x64 weight: copied
    assert rewritten(1, 64, 64) == (True, False)  # contraction 64: read along it, no copy
    assert rewritten(128, 64, 2) == (True, False)  # 2 columns
    assert rewritten(128, 2, 64) == (True, True)  # contraction 2
    assert rewritten(128, 4, 64) == (False, False)  # a library call (see TINY_CONTRACTION)
    assert rewritten(128, 64, 64) == (False, False)
    assert rewritten(1024, 512, 4) == (False, False)  # past the largest product


def test_the_pass_names_frl_s_additions_for_the_cache_key() -> None:
    from torch._inductor.custom_graph_pass import CustomGraphPass

    chosen = post_grad_pass()
    assert isinstance(chosen, CustomGraphPass) and chosen is post_grad_pass()
    assert chosen.uuid().startswith("frl-inductor-")


@contextlib.contextmanager
def _onednn(ready: bool, small_rows: bool = False, small_mm: bool = False) -> Iterator[None]:
    """The pass as on a machine where products can (not) go to oneDNN, to the small-rows kernel and
    to the small-products kernel."""
    saved = list(_inductor._ONEDNN), list(_inductor._SMALL_ROWS), list(_inductor._SMALL_MM)
    _inductor._ONEDNN[:], _inductor._SMALL_ROWS[:], _inductor._SMALL_MM[:] = [ready], [small_rows], [small_mm]
    try:
        yield
    finally:
        _inductor._ONEDNN[:], _inductor._SMALL_ROWS[:], _inductor._SMALL_MM[:] = saved


needs_onednn = pytest.mark.skipif(not onednn_ready(), reason="oneDNN products need AVX-512 on x86")
needs_small_rows = pytest.mark.skipif(
    not small_rows_ready(), reason="the small-rows kernel needs AVX-512 on x86"
)
needs_small_mm = pytest.mark.skipif(
    not small_mm_ready(), reason="the small-products kernel needs AVX-512 on x86"
)


def _products(fn: Any, *shapes: tuple[int, ...], dtype: torch.dtype = torch.float32) -> list[str]:
    """The products left in ``fn``'s FX graph after the pass: ``"onednn"``, ``"loop"`` (a
    multiply-and-sum) or the aten op's name."""
    from torch.fx.experimental.proxy_tensor import make_fx

    graph = make_fx(fn, tracing_mode="fake")(*(torch.randn(*s, dtype=dtype) for s in shapes)).graph
    ThinMatmul()(graph)
    names = []
    small_rows = getattr(torch.ops.frl_native, "small_rows_bmm", None)
    small_mm = getattr(torch.ops.frl_native, "small_mm", None)
    for node in graph.nodes:
        if node.target is torch.ops.frl_native.onednn_matmul.default:
            names.append("onednn")
        elif small_rows is not None and node.target is small_rows.default:
            names.append("rows")
        elif small_mm is not None and node.target is small_mm.default:
            names.append("small_mm")
        elif node.target is torch.ops.aten.sum.dim_IntList:
            names.append("loop")
        elif node.target in _inductor._PRODUCTS:
            names.append(node.target.__name__.split(".")[0])
    return names


@needs_onednn
def test_large_float32_products_go_to_onednn_and_small_ones_stay() -> None:
    """From ONEDNN_WORK multiply-adds a float32 mm/addmm/bmm/baddbmm becomes
    ``frl_native::onednn_matmul``, and so does a thin batched product in MKL's slow layouts; below
    it, in float64, or with the probe saying no, the library keeps it; thin products still become
    loops."""
    with _onednn(True):
        assert _products(F.linear, (128, 120), (84, 120)) == ["onednn"]  # 1.29M
        assert _products(F.linear, (128, 120), (84, 120), (84,)) == ["onednn"]
        assert _products(F.linear, (128, 64), (64, 64)) == ["mm"]  # 0.52M
        assert ONEDNN_WORK > 128 * 64 * 64 and ONEDNN_WORK <= 128 * 120 * 84
        assert _products(torch.bmm, (32, 128, 64), (32, 64, 64)) == ["onednn"]
        assert _products(torch.baddbmm, (32, 128, 64), (32, 128, 64), (32, 64, 64)) == ["onednn"]
        assert _products(torch.bmm, (5, 2, 8), (5, 8, 64)) == ["bmm"]
        # thin products by layout (see ONEDNN_THIN_ROWS): b stored by rows, by columns
        assert _products(torch.bmm, (8, 128, 64), (8, 64, 2)) == ["onednn"]
        assert _products(lambda a, w: a @ w.mT, (8, 128, 64), (8, 2, 64)) == ["loop"]  # BATCHED_THIN
        assert _products(lambda a, b: a.mT @ b.mT, (8, 128, 2), (8, 84, 128)) == ["onednn"]  # 2 rows
        assert _products(torch.bmm, (8, 2, 128), (8, 128, 84)) == ["bmm"]
        assert _products(torch.bmm, (32, 4, 64), (32, 64, 2)) == ["bmm"]  # 4 rows and 2 columns
        assert _products(torch.bmm, (1, 128, 64), (1, 64, 2)) == ["bmm"]  # 1 member
        assert _products(torch.bmm, (8, 128, 2), (8, 2, 64)) == ["loop"]  # a contraction of 2
        assert _products(torch.mm, (1024, 512), (512, 4)) == ["onednn"]  # past the loops' largest
        assert _products(torch.mm, (128, 64), (64, 2)) == ["loop"]
        assert _products(F.linear, (128, 120), (84, 120), dtype=torch.float64) == ["mm"]
        assert _products(torch.addmm, (84,), (128, 120), (120, 84)) == ["onednn"]
    with _onednn(False):
        assert _products(F.linear, (128, 120), (84, 120)) == ["mm"]
        assert _products(torch.bmm, (32, 128, 64), (32, 64, 64)) == ["bmm"]


def test_batched_output_layers_and_their_input_gradients_become_loops() -> None:
    """Batched products of more than SMALL_ROWS rows (a vmapped layer on a minibatch): 1-4 columns
    when each output is a dot product along contiguous memory (``F.linear``'s layout), and a
    contraction of 1-2 in any layout, up to the largest work a member; not the weight gradients
    (``a`` by columns) nor a wider layer."""

    def layer(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, w.mT)

    for ready in (False, True):
        with _onednn(ready, small_rows=ready):
            assert _products(layer, (32, 128, 64), (32, 2, 64)) == ["loop"]
            assert _products(layer, (2, SMALL_ROWS + 1, 84), (2, 4, 84)) == ["loop"]
            assert _products(layer, (32, 4096, 64), (32, 1, 64)) == ["loop"]  # 262,144 a member
            past = _products(layer, (32, 4097, 64), (32, 1, 64))  # past the largest
            assert past == ["onednn" if ready else "bmm"]
            assert _products(torch.bmm, (32, 128, 2), (32, 2, 64)) == ["loop"]  # contraction 2
            assert _products(lambda g, w: g @ w.mT, (32, 128, 1), (32, 256, 1)) == ["loop"]
            assert _products(layer, (32, 128, 64), (32, 5, 64)) == ["onednn" if ready else "bmm"]
            assert _products(layer, (32, 128, 4), (32, 64, 4)) == ["onednn" if ready else "bmm"]
            weight_gradient = _products(lambda g, h: g.mT @ h, (32, 128, 2), (32, 128, 64))
            assert weight_gradient == ["bmm"]
            assert _products(lambda h, x: h.mT @ x, (32, 128, 64), (32, 128, 4)) == (
                ["onednn" if ready else "bmm"]
            )
            assert _products(layer, (32, SMALL_ROWS, 64), (32, 2, 64)) == ["rows" if ready else "bmm"]
    rewritten = _products(layer, (3, 128, 64), (3, 2, 64), dtype=torch.float64)
    assert rewritten == ["loop"]  # any float dtype, as the unbatched rewrite


def test_batched_loops_equal_torch_s_bmm() -> None:
    """The FX rewrite run eagerly (``make_fx`` then the pass, no compile) against ``bmm``: a
    transposed short weight is copied first, a dot layout read as is."""
    from torch.fx.experimental.proxy_tensor import make_fx

    gen = torch.Generator().manual_seed(1)
    cases = [
        (lambda a, w: torch.bmm(a, w.mT), (6, 128, 64), (6, 2, 64)),
        (torch.bmm, (6, 128, 2), (6, 2, 64)),
        (lambda g, w: g @ w.mT, (6, 40, 2), (6, 64, 2)),  # a short contraction, b transposed
    ]
    for fn, *shapes in cases:
        args = [torch.randn(*s, generator=gen) for s in shapes]
        module = make_fx(fn, tracing_mode="fake")(*args)
        ThinMatmul()(module.graph)
        module.recompile()
        targets = {n.target for n in module.graph.nodes}
        assert torch.ops.aten.bmm.default not in targets and torch.ops.aten.sum.dim_IntList in targets
        torch.testing.assert_close(module(*args), fn(*args), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_the_onednn_operator_equals_torch_s_products() -> None:
    """``frl_native::onednn_matmul`` against ``mm``/``bmm``: rows and transposed operands, a
    weight shared by every member (a stride-0 batch), empty products; bad operands are refused."""
    op = torch.ops.frl_native.onednn_matmul
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(96, 120, generator=gen), torch.randn(120, 84, generator=gen)
    for x, y in ((a, b), (a.t().contiguous().t(), b), (a, b.t().contiguous().t())):
        torch.testing.assert_close(op(x, y), x @ y, rtol=1e-5, atol=1e-4)
    xs, ys = torch.randn(7, 33, 65, generator=gen), torch.randn(7, 65, 17, generator=gen)
    torch.testing.assert_close(op(xs, ys), torch.bmm(xs, ys), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(op(xs.mT.contiguous().mT, ys), torch.bmm(xs, ys), rtol=1e-5, atol=1e-4)
    shared = b.expand(7, 120, 84)
    rows = torch.randn(7, 5, 120, generator=gen)
    torch.testing.assert_close(op(rows, shared), torch.bmm(rows, shared), rtol=1e-5, atol=1e-4)
    assert op(torch.randn(0, 3), torch.randn(3, 4)).shape == (0, 4)
    assert torch.equal(op(torch.randn(2, 0), torch.randn(0, 4)), torch.zeros(2, 4))
    with pytest.raises(RuntimeError, match="float32 operands"):
        op(a.double(), b.double())
    with pytest.raises(RuntimeError, match="contraction sizes differ"):
        op(a, b[:100])
    with pytest.raises(RuntimeError, match=r"\[B, M, K\] @ \[B, K, N\]"):
        op(xs, ys[:3])


def _q_networks(params: Tensors, x: torch.Tensor, members: Tensors, xs: torch.Tensor):
    """A 120x84 Q-network's loss gradient on 128 rows, alone and for 8 vmapped members."""

    def loss(p: Tensors, obs: torch.Tensor) -> torch.Tensor:
        w1, w2, w3 = p
        return F.linear(torch.relu(F.linear(torch.relu(F.linear(obs, w1)), w2)), w3).square().mean()

    return torch.func.grad(loss)(params, x), torch.func.vmap(torch.func.grad(loss))(members, xs)


@pytest.mark.compile
@needs_onednn
def test_compiled_q_network_gradients_use_onednn_and_keep_their_values() -> None:
    gen = torch.Generator().manual_seed(1)
    shapes = ((120, 4), (84, 120), (2, 84))
    params = tuple(torch.randn(*s, generator=gen) * 0.1 for s in shapes)
    members = tuple(torch.randn(8, *s, generator=gen) * 0.1 for s in shapes)
    x, xs = torch.randn(128, 4, generator=gen), torch.randn(8, 128, 4, generator=gen)
    eager = _q_networks(params, x, members, xs)
    compiled, code = run_and_get_code(frl.compile(_q_networks, device="cpu"), params, x, members, xs)
    for got, want in zip(torch.utils._pytree.tree_leaves(compiled), torch.utils._pytree.tree_leaves(eager)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # the 120x84 layer's forward, input gradient and weight gradient (1.29M multiply-adds each),
    # alone and batched over the members, and the members' 2-wide output layer's weight gradient
    # (84 rows, see ONEDNN_THIN_ROWS; its forward reads the weight by columns and stays): seven.
    # With the small-products kernel, the six 120x84 ones go to it (SMALL_MM_MEMBER_WORK), and so
    # do the first layer's forward alone and batched (128x4 by 4x120, 61k multiply-adds a member),
    # the members' thin weight gradient and their first layer's (120x128 by 128x4, transposed)
    small = small_mm_ready()
    assert "\n".join(code).count("frl_native::onednn_matmul") == (0 if small else 7)
    assert "\n".join(code).count("frl_native::small_mm") == (10 if small else 0)


@needs_small_mm
def test_two_d_products_below_onednn_s_floor_go_to_the_small_products_kernel() -> None:
    """A float32 mm/addmm of more than SMALL_ROWS rows, from SMALL_MM_WORK to SMALL_MM_MEMBER_WORK
    multiply-adds and not a loop, becomes ``frl_native::small_mm`` whatever its layouts (a
    minibatch's forward, input gradient and weight gradient); thin ones stay loops, large ones go
    to oneDNN, small ones, float64, batched ones or the probe saying no keep the library's."""
    with _onednn(True, small_mm=True):
        assert _products(F.linear, (128, 64), (64, 64)) == ["small_mm"]  # b by columns
        assert _products(F.linear, (128, 64), (64, 64), (64,)) == ["small_mm"]  # addmm: the bias added after
        assert _products(torch.mm, (128, 64), (64, 64)) == ["small_mm"]  # an input gradient
        assert _products(lambda g, x: g.mT @ x, (128, 64), (128, 64)) == ["small_mm"]  # a weight gradient
        assert _products(F.linear, (128, 4), (64, 4)) == ["small_mm"]  # 32k
        assert _products(torch.mm, (128, 8), (8, 16)) == ["small_mm"]
        assert SMALL_MM_WORK == 128 * 8 * 16
        assert _products(torch.mm, (127, 8), (8, 16)) == ["mm"]  # below the floor
        assert _products(F.linear, (SMALL_ROWS, 64), (64, 64)) == ["loop"]
        assert _products(F.linear, (128, 64), (2, 64)) == ["loop"]
        assert _products(F.linear, (128, 120), (84, 120)) == ["small_mm"]  # 1.29M, past ONEDNN_WORK
        assert _products(lambda g, x: g.mT @ x, (128, 84), (128, 120)) == ["small_mm"]
        assert _products(torch.mm, (1024, 64), (64, 64)) == ["small_mm"]  # 4.2M
        assert _products(torch.mm, (1024, 64), (64, 128)) == ["onednn"]  # 8.4M: past SMALL_MM_MEMBER_WORK
        assert _products(F.linear, (256, 256), (256, 256)) == ["onednn"]  # 16.8M: a SAC critic's layer
        assert _products(F.linear, (128, 64), (64, 64), dtype=torch.float64) == ["mm"]
        # batched: from SMALL_MM_COLUMNS columns, SMALL_MM_WORK to SMALL_MM_MEMBER_WORK a member
        assert _products(torch.bmm, (32, 128, 64), (32, 64, 64)) == ["small_mm"]
        assert _products(lambda a, w: a @ w.mT, (32, 128, 64), (32, 64, 64)) == ["small_mm"]
        assert _products(lambda g, x: g.mT @ x, (32, 128, 64), (32, 128, 64)) == ["small_mm"]
        assert _products(torch.baddbmm, (32, 128, 64), (32, 128, 64), (32, 64, 64)) == ["small_mm"]
        assert _products(torch.bmm, (2, 64, 64), (2, 64, 64)) == ["small_mm"]
        assert _products(torch.bmm, (8, 128, 64), (8, 64, SMALL_MM_COLUMNS - 1)) == ["bmm"]  # thinner
        assert _products(torch.bmm, (2, 1024, 64), (2, 64, 128)) == ["onednn"]  # 8.4M a member
        assert 1024 * 64 * 128 > SMALL_MM_MEMBER_WORK >= 1024 * 64 * 64
        assert _products(torch.bmm, (2, 1024, 64), (2, 64, 64)) == ["small_mm"]
        # thin batched products no rule above takes (_thin_for_small_mm): few rows and 16 or more
        # columns, or few columns (computed transposed) and 16 or more rows
        weight_gradient = lambda g, x: g.mT @ x
        assert _products(weight_gradient, (32, 128, 2), (32, 128, 84)) == ["small_mm"]  # 2 rows
        assert _products(weight_gradient, (32, 128, 120), (32, 128, 4)) == ["small_mm"]  # 4 columns
        assert _products(torch.bmm, (32, 84, 128), (32, 128, 2)) == ["small_mm"]
        assert _products(torch.bmm, (32, 4, 64), (32, 64, 64)) == ["small_mm"]  # few rows, b by rows
        assert _products(torch.bmm, (32, 2, 64), (32, 64, 8)) == ["bmm"]  # thin both ways
        assert _products(torch.bmm, (32, 128, 64), (32, 64, 2)) == ["small_mm"]  # b by rows
        assert _products(lambda a, w: a @ w.mT, (32, 128, 64), (32, 2, 64)) == ["loop"]  # BATCHED_THIN
        # ...unless the kernel would first copy a wide operand to a panel: SMALL_MM_PANEL elements
        # (SMALL_MM_PANEL_VECTOR for one row); a wide operand by rows (for the kernel), any size
        assert _products(weight_gradient, (32, 512, 256), (32, 512, 4)) == ["small_mm"]  # a^T by rows
        assert _products(torch.bmm, (32, 128, 128), (32, 128, 2)) == ["small_mm"]  # a by rows: 16k
        assert _products(torch.bmm, (32, 256, 128), (32, 128, 2)) == ["onednn"]  # 32k
        assert _products(weight_gradient, (32, 256, 1), (32, 256, 256)) == ["small_mm"]  # b by rows
        by_columns = lambda a, b: a @ b.mT
        assert _products(by_columns, (32, 2, 128), (32, 128, 128)) == ["small_mm"]  # 16k
        assert _products(by_columns, (32, 2, 256), (32, 128, 256)) == ["onednn"]  # 32k
        assert _products(by_columns, (32, 1, 64), (32, 64, 64)) == ["small_mm"]  # 4k, one row
        assert _products(by_columns, (32, 1, 128), (32, 64, 128)) == ["bmm"]  # 8k, one row
    with _onednn(True, small_rows=True, small_mm=True):  # the small-rows kernel's layout comes first
        assert _products(lambda a, w: a @ w.mT, (32, 4, 64), (32, 64, 64)) == ["rows"]
    with _onednn(True, small_mm=False):
        assert _products(F.linear, (128, 64), (64, 64)) == ["mm"]
        assert _products(torch.bmm, (32, 128, 64), (32, 64, 64)) == ["onednn"]


@needs_small_mm
def test_the_small_products_operator_equals_torch_s_mm() -> None:
    """``frl_native::small_mm`` against ``mm`` in float64 (to rounding): each operand by rows, by
    columns or strided, row counts around its tiles of 8, column counts around its blocks of 16 and
    32, one column, a contraction of one; empty products; other dtypes are ``mm`` itself; bad shapes
    are refused."""
    op = torch.ops.frl_native.small_mm
    gen = torch.Generator().manual_seed(4)
    for m, k, n in [
        (128, 64, 64),
        (9, 3, 17),
        (17, 33, 31),
        (7, 1, 33),
        (64, 128, 1),
        (5, 16, 16),
        (130, 20, 65),
    ]:
        a = torch.randn(m, k, generator=gen)
        b = torch.randn(k, n, generator=gen)
        want = a.double() @ b.double()
        for x in (a, a.t().contiguous().t(), torch.randn(m, 2 * k, generator=gen)[:, ::2]):
            want = x.double() @ b.double()
            for y in (b, b.t().contiguous().t(), torch.randn(k, 3 * n, generator=gen)[:, ::3]):
                want = x.double() @ y.double()
                torch.testing.assert_close(op(x, y).double(), want, rtol=1e-5, atol=1e-5)
    # batched: each member's own operands, in each layout, and a weight shared by every member
    xs, ws = torch.randn(3, 40, 32, generator=gen), torch.randn(3, 48, 32, generator=gen)
    for x in (xs, xs.mT.contiguous().mT):
        for w in (ws.mT, ws.mT.contiguous(), ws[:1].mT.expand(3, 32, 48)):
            want = torch.bmm(x.double(), w.double())
            torch.testing.assert_close(op(x, w).double(), want, rtol=1e-5, atol=1e-5)
    a, b = torch.randn(20, 8, generator=gen), torch.randn(8, 24, generator=gen)
    assert torch.equal(op(a.double(), b.double()), a.double() @ b.double())
    assert torch.equal(op(xs.double(), ws.mT.double()), torch.bmm(xs.double(), ws.mT.double()))
    assert op(torch.randn(0, 3), torch.randn(3, 4)).shape == (0, 4)
    assert torch.equal(op(torch.randn(5, 0), torch.randn(0, 4)), torch.zeros(5, 4))
    assert op(torch.randn(2, 0, 3), torch.randn(2, 3, 4)).shape == (2, 0, 4)
    with pytest.raises(RuntimeError, match="contraction sizes differ"):
        op(a, b[:7])
    with pytest.raises(RuntimeError, match=r"\[B, M, K\] @ \[B, K, N\]"):
        op(xs, ws[:2].mT)


@needs_small_rows
def test_batched_products_of_few_rows_in_linear_s_layout_go_to_frl_s_kernel() -> None:
    """A vmapped layer acting on 1-4 rows (``a`` by rows, ``b`` by columns: ``F.linear``'s weight)
    becomes ``frl_native::small_rows_bmm`` from SMALL_ROWS_MEMBERS members or SMALL_ROWS_WORK
    multiply-adds; other layouts, more rows, float64, one member or the probe saying no keep
    ``bmm``."""

    def layer(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # a vmapped F.linear's product
        return torch.bmm(x, w.mT)

    with _onednn(True, small_rows=True):
        assert _products(layer, (32, 4, 64), (32, 64, 64)) == ["rows"]
        assert _products(layer, (32, 4, 4), (32, 64, 4)) == ["rows"]
        assert _products(layer, (SMALL_ROWS_MEMBERS, 1, 8), (SMALL_ROWS_MEMBERS, 2, 8)) == ["rows"]
        assert _products(layer, (8, 4, 64), (8, 64, 64)) == ["rows"]  # 131k multiply-adds
        assert 8 * 4 * 64 * 64 >= SMALL_ROWS_WORK > 8 * 4 * 64 * 2
        assert _products(layer, (8, 4, 64), (8, 2, 64)) == ["bmm"]
        assert _products(layer, (32, SMALL_ROWS + 1, 64), (32, 64, 64)) == ["bmm"]
        assert _products(torch.bmm, (32, 4, 64), (32, 64, 64)) == ["bmm"]  # b stored by rows
        by_columns = _products(lambda x, w: torch.bmm(x.mT, w.mT), (32, 64, 4), (32, 64, 64))
        assert by_columns == ["onednn"]  # a stored by columns: oneDNN's thin rule (ONEDNN_THIN_ROWS)
        assert _products(layer, (32, 4, 64), (32, 64, 64), dtype=torch.float64) == ["bmm"]
        assert _products(layer, (1, 4, 64), (1, 64, 64)) == ["bmm"]
        assert _products(layer, (32, 128, 64), (32, 64, 64)) == ["onednn"]
    with _onednn(True, small_rows=False):
        assert _products(layer, (32, 4, 64), (32, 64, 64)) == ["bmm"]


@needs_small_rows
def test_the_small_rows_operator_equals_torch_s_bmm() -> None:
    """``frl_native::small_rows_bmm`` against ``bmm`` (to rounding: it sums in another order):
    contractions up to 16 (gathered) and longer ones with a remainder, column counts around its
    blocks of 4 and 16, 1-7 rows, a weight shared by every member (a stride-0 batch), empty
    products; other layouts and dtypes are ``bmm`` itself; bad shapes are refused."""
    op = torch.ops.frl_native.small_rows_bmm
    gen = torch.Generator().manual_seed(2)
    for members, rows, k, n in [
        (3, 4, 64, 64),
        (2, 1, 4, 64),
        (5, 3, 17, 5),
        (2, 7, 33, 7),
        (4, 2, 1, 3),
        (3, 4, 16, 16),
        (2, 4, 100, 1),
        (2, 5, 8, 17),
        (1, 4, 64, 2),
    ]:
        a = torch.randn(members, rows, k, generator=gen)
        w = torch.randn(members, n, k, generator=gen)
        want = torch.bmm(a.double(), w.mT.double())
        torch.testing.assert_close(op(a, w.mT).double(), want, rtol=1e-5, atol=1e-5)
    shared = torch.randn(1, 64, 64, generator=gen).expand(6, 64, 64)
    a = torch.randn(6, 4, 64, generator=gen)
    torch.testing.assert_close(op(a, shared.mT), torch.bmm(a, shared.mT), rtol=1e-5, atol=1e-5)
    b = torch.randn(6, 64, 5, generator=gen)  # stored by rows: torch's bmm, bit for bit
    assert torch.equal(op(a, b), torch.bmm(a, b))
    assert torch.equal(op(a.double(), b.double()), torch.bmm(a.double(), b.double()))
    assert op(torch.randn(2, 0, 3), torch.randn(2, 4, 3).mT).shape == (2, 0, 4)
    assert torch.equal(op(torch.randn(2, 3, 0), torch.randn(2, 4, 0).mT), torch.zeros(2, 3, 4))
    with pytest.raises(RuntimeError, match=r"\[B, M, K\] @ \[B, K, N\]"):
        op(a, shared[:3].mT)


def _policies(params: Tensors, obs: torch.Tensor) -> torch.Tensor:
    """A 64x64 tanh policy's logits for 4 environments, vmapped over its members."""

    def policy(p: Tensors, x: torch.Tensor) -> torch.Tensor:
        w1, w2, w3 = p
        return F.linear(torch.tanh(F.linear(torch.tanh(F.linear(x, w1)), w2)), w3)

    return torch.func.vmap(policy)(params, obs)


@pytest.mark.compile
@needs_small_rows
def test_compiled_vmapped_policies_on_few_rows_use_the_small_rows_kernel() -> None:
    gen = torch.Generator().manual_seed(3)
    params = tuple(torch.randn(16, *s, generator=gen) * 0.3 for s in ((64, 4), (64, 64), (2, 64)))
    obs = torch.randn(16, 4, 4, generator=gen)
    compiled, code = run_and_get_code(frl.compile(_policies, device="cpu"), params, obs)
    torch.testing.assert_close(compiled, _policies(params, obs), rtol=1e-5, atol=1e-5)
    # each of the three layers: 16 members of 4 rows, the weight by columns
    assert "\n".join(code).count("frl_native::small_rows_bmm") == 3
