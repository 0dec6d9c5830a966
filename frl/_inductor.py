"""What frl adds to Inductor for its CPU graphs: random bits and tiny matmuls as generated loops,
batched products of few rows and small 2-D products through frl's own kernels, large float32
products through oneDNN.

A small-network RL step on the CPU is bound by what each operation costs to call, not by its
arithmetic. Two kinds of call dominated compiled collection, one environment step at a time:

* **Random bits.** Every ``frl.random`` draw is one call of the threefry operator
  (``frl_native::threefry_blocks``); Inductor calls an operator it cannot lower through the
  dispatcher (~2 us with its allocations). A DQN collection chunk (10 steps) made 70 of them.
  :func:`install` gives Inductor a lowering for it: the 20 rounds as one generated loop over
  ``uint32`` words (adds wrap, rotations are a multiply and a divide by powers of two), which
  fuses with its consumers, so a small draw costs no call at all. Draws of more than
  :data:`INLINE_DRAW_LIMIT` words keep the operator: Inductor does not vectorise a loop over
  ``uint32`` words, nor a consumer fused into it (a normal sample's logarithm), so large draws
  stay with the C++ kernel (the limit is a choice, not a measured optimum).
* **Thin matmuls.** Each ``F.linear`` becomes a library ``addmm`` (~2-4 us a call whatever the
  size); with 1 to 4 rows (an action for one or four environments) a multiply-and-sum that
  Inductor generates and fuses with the bias and activation is cheaper. So it is for 1-4 columns
  (an output layer of 1-4 units, a gradient through one) and a contraction of 1-2: 10 of the 16
  products of a PPO CartPole minibatch update. :class:`ThinMatmul`, a post-grad pass, rewrites
  ``mm``/``addmm`` with at most :data:`SMALL_ROWS` rows, :data:`THIN` columns or
  :data:`TINY_CONTRACTION`, and copies a transposed weight of a short contraction first so the
  loop vectorises (:data:`SHORT_CONTRACTION`). Vmapped members keep their batched matmul
  (``bmm``): at 32 seeds the multiply-and-sum doubled a PPO collection's time.

A vmapped update (many seeds, an ensemble) is the other way round, bound by its batched matmuls,
and torch's CPU wheel runs float32 products through MKL, whose kernels on AMD processors are the
AVX2 ones even where the core has AVX-512 (1024^3 at 96 GFLOP/s on an AMD EPYC core; oneDNN, which
torch also carries, 231). The same pass hands every float32 ``mm``/``addmm``/``bmm``/``baddbmm``
of at least :data:`ONEDNN_WORK` multiply-adds (the small-products kernel below takes those up to
:data:`SMALL_MM_MEMBER_WORK` first), and thin batched ones in the layouts where MKL's
``bmm`` is slow (:data:`ONEDNN_THIN_ROWS`), to ``frl_native::onednn_matmul`` (ATen's own oneDNN
entry point) where :func:`onednn_ready` (``FRL_ONEDNN_MATMUL=0`` turns it off): 32 members of a
128x64 by 64x64 product in 144 us instead of 330. The rule is fixed by shapes and layouts, never
timed while compiling, so a run's bits do not depend on the machine's load.

Between the two, vmapped members acting in a few environments multiply 1-4 rows each, and MKL's
``bmm`` packs every member's weight on every call. From :data:`SMALL_ROWS_MEMBERS` members such
products in ``F.linear``'s layout go to frl's AVX-512 kernel ``frl_native::small_rows_bmm`` where
:func:`small_rows_ready` (``FRL_SMALL_ROWS_BMM=0`` turns it off): a 32-seed PPO collection (128
steps of 4 environments) took 7.2-7.5 ms instead of 8.2 ms.

One seed's update is the same products unbatched: a minibatch of 128 rows by 64x64 layers, 2-D
products of 0.5M multiply-adds, below :data:`ONEDNN_WORK` (oneDNN's ~11 us of set-up a call is
more than they take) and left to MKL's AVX2 kernels. From :data:`SMALL_MM_WORK` such products go
to frl's AVX-512 kernel ``frl_native::small_mm`` where :func:`small_mm_ready` (``FRL_SMALL_MM=0``
turns it off): a one-seed PPO CartPole update (16 minibatches) took 1.74-1.89 ms instead of
2.21-2.26 (four pairs side by side, cores swapped). Batched products of small members go to it
too (:data:`SMALL_MM_COLUMNS`, :data:`SMALL_MM_MEMBER_WORK`), instead of paying oneDNN's set-up on
every call: a 32-seed PPO CartPole update took 37.8-40.8 ms instead of 43.7-44.9 (three pairs).
Past :data:`ONEDNN_WORK`, up to :data:`SMALL_MM_MEMBER_WORK`, 2-D products go to it rather than
to oneDNN: a one-seed DQN CartPole update (four 128x120x84 products) took 212-216 us instead of
271-272, 28,544-29,208 env-steps/s against 23,842-24,816 (two pairs). Thin batched products that
no earlier rule takes go to it too (:func:`_thin_for_small_mm`; those with few columns computed
transposed): a 32-seed DQN update took 3.66-4.56 ms instead of 4.03-5.06 (two pairs; its first
layer's weight gradient had gone to oneDNN, its output layer's to MKL), a 32-seed PPO update
35.4-45.2 ms instead of 36.3-47.5.

Measured (AMD EPYC, one core, CartPole, side by side, warm): a DQN collection chunk took 133 us
instead of 258 us (the lowering alone 156 us, the rewrite alone 218 us); a one-seed PPO collection
(128 steps x 4 environments) 1.46 ms instead of 2.08 ms. Both change no result beyond float
rounding: the lowering's words equal the operator's bit for bit (tested), the rewrite sums in
another order.

All of them enter the compiled graphs' cache keys through :class:`ThinMatmul`'s ``uuid``
(:func:`fingerprint`: a graph compiled before them is not reused, nor one compiled with them by a
process without them, nor one with oneDNN or small-rows calls where a probe says no).
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import torch

__all__ = [
    "INLINE_DRAW_LIMIT",
    "ONEDNN_THIN_MEMBERS",
    "ONEDNN_THIN_ROWS",
    "ONEDNN_WORK",
    "SHORT_CONTRACTION",
    "SMALL_MM_COLUMNS",
    "SMALL_MM_MEMBER_WORK",
    "SMALL_MM_PANEL",
    "SMALL_MM_PANEL_VECTOR",
    "SMALL_MM_WORK",
    "SMALL_ROWS",
    "SMALL_ROWS_MEMBERS",
    "SMALL_ROWS_WORK",
    "THIN",
    "TINY_CONTRACTION",
    "ThinMatmul",
    "fingerprint",
    "install",
    "onednn_ready",
    "post_grad_pass",
    "small_mm_ready",
    "small_rows_ready",
]

INLINE_DRAW_LIMIT = 2048
"""Words of the largest threefry draw generated inline (a batch of keys counts each key's words)."""

SMALL_ROWS = 4
"""The most rows of a matmul that :class:`ThinMatmul` rewrites. Measured per layer (4x64,
64x64, 120x84; compiled, one core): 1 row gains on each (2.4-2.7 us against 3.4-3.9), 4 rows on
the two wider (2.9 and 3.8 us against 4.0 and 5.0; the 4-wide input breaks even), 8 rows are
mixed, 16 and 32 lose."""

_LARGEST_WEIGHT = 1 << 16
"""...and the most weight elements (a 256x256 layer at most): a choice, measured up to 120x84; a
larger product is bandwidth-bound, where the library's own loop has no call to save."""

THIN = 4
"""The most columns (``N``) of a matmul :class:`ThinMatmul` rewrites whatever its rows: the
output layers of policies and values (1-4 wide) and, in their gradients, the products with a
1-4-wide input layer's or output layer's gradient. Measured per product (compiled with a ``tanh``
consumer, 12-24 in one graph, one core): 128x64 by 64x2 2.3 us against 3.5, 1024x64 by 64x2 8.1
against 20.6, 64x128 by 128x4 6.0 against 8.4, 256x256 by 256x4 9.5 against 15.4."""

TINY_CONTRACTION = 2
"""...and the most contraction (``K``) rewritten whatever the rows: the input gradients of 1-2-wide
output layers (128x2 by 2x64: 4.5 us against 5.3). A longer short contraction over many rows (a
layer over CartPole's 4 observations, 128 rows) stays a library call: with the copy below it was
faster alone (128x4 by 4x64 5.0 us against 5.8) but a PPO update with its two such layers took
2.52 ms instead of 2.39."""

SHORT_CONTRACTION = 8
"""A rewritten product with at most this contraction whose ``b`` is not stored along ``N``
(``F.linear``'s ``[out, in]`` weight, transposed) first copies ``b`` to a ``[K, N]`` buffer (an
``as_strided`` view makes Inductor write it out rather than inline the copy): the generated loop
read the weight with a stride and ran unvectorised, with a scalar ``tanh``. A 4x4 by 4x64 layer:
2.4 us against 4.6 without the copy and 4.7 in the library (``tanh`` consumer, 12 in one graph,
one core); a one-seed PPO collection (128 steps x 4 environments) 1.28-1.31 ms instead of
1.52-1.55."""

_LARGEST_WORK = 1 << 18
"""The most multiply-adds (``M K N``) of a product rewritten for its columns or its contraction
(256x256 by 256x4 at most): a choice, the largest measured."""

ONEDNN_WORK = 1 << 20
"""The fewest multiply-adds (``B M K N``) of a float32 ``mm``/``addmm``/``bmm``/``baddbmm`` that the
pass hands to oneDNN (``frl_native::onednn_matmul``) where :func:`onednn_ready`. Measured against
torch's MKL call (AMD EPYC with AVX-512, one core; MKL runs its AVX2 kernels there): below, the
~11 us oneDNN spends setting up a call loses (128x64 by 64x64, 0.5M: 15.0 us against 11.2); from
here it wins and the gain grows with the work (32x128x4 by 32x4x64, 1.0M: 24.1 against 33.9;
128x120 by 120x84, 1.3M: 22.7 against 28.2; 512x64 by 64x64: 26.9 against 40.8; 8 members of
128x120 by 120x84: 109 against 218; 32 members of 128x64 by 64x64: 144 against 330)."""

ONEDNN_THIN_ROWS = 64
"""...and the fewest rows (columns) of a batched product with at most :data:`THIN` columns (rows)
that goes to oneDNN whatever its work, in the layouts where MKL's ``bmm`` falls to a slow path
(measured per layout, 8 and 32 members, one core). 1-4 columns: unless ``a`` is stored by rows and
``b`` by columns (``F.linear``'s weight), e.g. 32 members of 84x128 by 128x2 with ``b`` stored by
rows 249 us against 68, by columns 51 against 70; 32 of 128x64 by 64x1, 140 against 23. 1-4 rows:
only when ``a`` is stored by columns and ``b`` by columns (32 of 2x128 by 128x84: 120 against 57;
in the other layouts 35-39 against 37-52). With 4 rows and 4 columns (one collection step of 4
environments) MKL stays faster (32 members of 4x64 by 64x2: 7.2 us against 14.1)."""

ONEDNN_THIN_MEMBERS = 8
"""...and the fewest members (``B``) of such a product: with one, MKL's ``bmm`` is one call of its
``mm`` (a one-member vmapped DQN update took 0.30 ms with its thin products in oneDNN, 0.27 ms
without; 8 and 32 members measured above)."""

SMALL_ROWS_MEMBERS = 16
"""The fewest members (``B``) of a batched float32 product of at most :data:`SMALL_ROWS` rows with
``a`` stored by rows and ``b`` by columns (a vmapped layer acting in a few environments: ``F.linear``'s
weight) that goes to frl's AVX-512 kernel ``frl_native::small_rows_bmm`` where
:func:`small_rows_ready`, unless it does at least :data:`SMALL_ROWS_WORK` multiply-adds. Measured
against torch's ``bmm`` (MKL packs the weight on every call; eager, one AMD EPYC core): 32 members
of 4x64 by 64x64 13.3 us against 18.8, of 4x4 by 4x64 3.9 against 4.2, of 4x64 by 64x2 2.4
against 3.2; 8 members of 4x64 by 64x64 4.4 against 5.5, of 4x64 by 64x2 1.7 against 1.6, of 4x4
by 4x64 2.0 against 1.9; 2 members of 4x64 by 64x64 2.2 against 2.2."""

SMALL_ROWS_WORK = 1 << 17
"""...or the fewest multiply-adds (``B M K N``) of such a product with fewer members (8 of 4x64 by
64x64: 131k)."""

SMALL_MM_WORK = 1 << 14
"""The fewest multiply-adds (``M K N``) of a float32 ``mm``/``addmm`` of more than :data:`SMALL_ROWS`
rows, not rewritten as a multiply-and-sum, that goes to frl's AVX-512
kernel ``frl_native::small_mm`` where :func:`small_mm_ready`. Measured against torch's ``mm``
(MKL's AVX2 kernels on an AMD EPYC Zen 5 core; eager, one thread): 128x64 by 64x64 5.3 us against
11.1 (6.7 with ``b`` by columns, ``F.linear``'s weight, which it copies first), 64x128 by 128x64
(a weight gradient) 5.4 against 11.1, 512x64 by 64x64 18.8 against 40.2, 128x4 by 4x64 1.8
against 1.9 (32k multiply-adds: about even, hence the floor)."""

SMALL_MM_COLUMNS = 16
"""The fewest columns (``N``) of a batched product that goes to ``frl_native::small_mm`` (its
kernel fills 16-column vectors; thinner ones keep the rules above)..."""

SMALL_MM_MEMBER_WORK = 1 << 22
"""...and the most multiply-adds of a 2-D product or of one member of a batched one (``M K N``):
its kernel does not block for the cache. 2-D, against oneDNN (eager, one core): 128x120 by 120x84
(a DQN minibatch's hidden layer, 1.29M) 14.1 us against 25.3 (a weight gradient 13.0 against
25.1), 512x64 by 64x64 18.2 against 29.0, 1024x64 by 64x64 35.0 against 46.5; at 8-16M about
even (256x256 by 256x256: 148 against 155), so a SAC critic's layers stay with oneDNN. Batched,
against oneDNN (``frl_native::onednn_matmul``; eager, one AMD EPYC Zen 5 core): 32
members of 128x64 by 64x64 133 us against 147 (``b`` by rows: an input gradient), 142 against
163 (64x128 by 128x64, ``a`` by columns: a weight gradient), 32 members of 128x4 by 4x64 19
against 35, 32 of 516x64 by 64x64 571 against 584, 32 of 64x512 by 512x64 523 against 604."""

SMALL_MM_PANEL = 1 << 14
"""The most elements a member of a thin product's wide operand (see :func:`_thin_for_small_mm`) may
have when the kernel must first copy it to a row-major panel (``b`` by columns; computed
transposed, ``a`` by rows); by rows, any size up to :data:`SMALL_MM_MEMBER_WORK`. Measured against
the faster of ``bmm`` and oneDNN (32 members, eager, one AMD EPYC Zen 5 core), the copy loses from
here: 2-4 columns with ``a`` by rows, 128x128 by 128x2 0.73x the time, 256x128 by 128x2 2.0x,
256x256 by 256x2 2.1x (a SAC critic's output layer); 2-4 rows with ``b`` by columns, 2x128 by
128x128 0.92x, 2x256 by 256x128 1.15x, 2x256 by 256x256 2.9x. With ``a`` by columns (a first
layer's weight gradient) 0.19-0.45x at every size to 256x256 by 256x4; ``b`` by rows 0.4-1.2x."""

SMALL_MM_PANEL_VECTOR = 1 << 12
"""...and when the thin side is one row or column (a matrix-vector product): 64x64 by 64x1 with
``a`` by rows 0.61x, 128x64 by 64x1 1.15x, 128x128 by 128x1 2.0x; 1x64 by 64x64 with ``b`` by
columns 0.56x, 1x128 by 128x64 0.95x, 1x128 by 128x128 1.43x."""

_VERSION = "frl-inductor-14"  # change whenever the lowering or the rewrite changes what they generate
_INSTALLED: list[bool] = []


def install() -> None:
    """Register the threefry lowering with Inductor (once per process; :func:`frl.compile` calls
    it). Both of frl's threefry operators get it: the C++ one and the Python custom op."""
    if _INSTALLED:
        return
    from torch._inductor.lowering import fallback_handler, register_lowering

    from frl import random

    ops = [torch.ops.frl.threefry_blocks.default]
    native = random._native_op()
    if native is not None:
        ops.append(native)
    for op in ops:
        fallback = fallback_handler(op, add_to_fallback_set=False)
        register_lowering(op, type_promotion_kind=None)(_lowering(fallback))
    onednn_ready()  # probed here, outside any tracing
    _INSTALLED.append(True)


def _threefry_words(k0: Any, k1: Any, counter: Any) -> tuple[Any, Any]:
    """The threefry-2x32 block function (:func:`frl.random.threefry2x32`) on Inductor's ``ops``
    over ``uint32`` values: sums wrap by themselves; ``rotl(x, r) = x * 2^r | x / 2^(32-r)``. The
    schedule (rotations, parity, key injections) is :mod:`frl.random`'s; the words are tested equal
    to the operator's."""
    from torch._inductor.virtualized import ops

    from frl.random import _PARITY, _ROTATIONS

    def const(v: int) -> Any:
        return ops.constant(v, torch.uint32)

    ks = (k0, k1, ops.bitwise_xor(ops.bitwise_xor(k0, k1), const(_PARITY)))
    x0, x1 = k0, ops.add(counter, k1)
    for g in range(5):
        for r in _ROTATIONS[g % 2]:
            x0 = ops.add(x0, x1)
            rotated = ops.bitwise_or(ops.mul(x1, const(1 << r)), ops.truncdiv(x1, const(1 << (32 - r))))
            x1 = ops.bitwise_xor(rotated, x0)
        x0 = ops.add(x0, ks[(g + 1) % 3])
        x1 = ops.add(x1, ops.add(ks[(g + 2) % 3], const(g + 1)))
    return x0, x1


def _lowering(fallback: Any) -> Any:
    """``threefry_blocks(keys [..., 2], n) -> (x0, x1) [..., n]`` as two pointwise buffers (realised,
    so that consumers read the words instead of each repeating the rounds; fused into one loop,
    they share them)."""

    def lower(keys: Any, n: int) -> Any:
        from torch._inductor import ir
        from torch._inductor.virtualized import ops

        *batch, _ = keys.get_size()
        static = all(_static(s) for s in (*batch, n))
        words = math.prod(int(s) for s in batch) * int(n) if static else None
        # on the CPU only (other devices draw with inline torch ops and never reach the operator)
        if words is None or words > INLINE_DRAW_LIMIT or keys.get_device().type != "cpu":
            return fallback(keys, n)
        load = keys.make_loader()

        def buffer(which: int) -> Any:
            def inner(index: list[Any]) -> Any:
                *b, i = index
                k0 = ops.to_dtype(load([*b, 0]), torch.uint32)
                k1 = ops.to_dtype(load([*b, 1]), torch.uint32)
                counter = ops.to_dtype(ops.index_expr(i, torch.int64), torch.uint32)
                return ops.to_dtype(_threefry_words(k0, k1, counter)[which], torch.int64)

            out = ir.Pointwise.create(
                device=keys.get_device(), dtype=torch.int64, inner_fn=inner, ranges=[*batch, n]
            )
            out.realize()
            return out

        return buffer(0), buffer(1)

    return lower


def _static(size: Any) -> bool:
    """A size known at compile time: a Python int or a sympy integer (never ``int()`` of a
    ``SymInt``, which would specialise a dynamic size instead of declining it)."""
    return isinstance(size, int) or bool(getattr(size, "is_Integer", False))


class ThinMatmul:
    """A post-grad pass: ``mm(a, b)`` and ``addmm(c, a, b)`` on the CPU with ``a [M, K]`` and
    ``b [K, N]`` (each dense along one dim) where ``M <= SMALL_ROWS``, ``N <= THIN`` (with
    ``K > SHORT_CONTRACTION``) or ``K <= TINY_CONTRACTION`` become
    ``sum(a[:, :, None] * b[None], 1) (+ c)``, a reduction Inductor generates and fuses (a short
    contraction's ``b`` copied to ``[K, N]`` first, see :data:`SHORT_CONTRACTION`); so do batched
    thin ones of more rows in the layouts :func:`_batched_rewritable` names. Batched float32
    products of at most ``SMALL_ROWS`` rows in ``F.linear``'s layout become
    ``frl_native::small_rows_bmm(a, b) (+ c)`` where :func:`small_rows_ready` (see
    :data:`SMALL_ROWS_MEMBERS`). Other float32 products (``bmm``/``baddbmm`` too) of at least
    :data:`ONEDNN_WORK` multiply-adds, and thin batched ones in the layouts MKL handles badly
    (:data:`ONEDNN_THIN_ROWS`), become ``frl_native::onednn_matmul(a, b) (+ c)`` where
    :func:`onednn_ready`.

    Its ``uuid`` names frl's Inductor additions (this pass and :func:`install`'s lowering), so
    that a graph's cache key records that they shaped it. :func:`post_grad_pass` makes the
    instance Inductor takes (a ``CustomGraphPass``: importing that class takes ~1 s, so not at
    import time)."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        aten = torch.ops.aten
        onednn, small_rows, small_mm = onednn_ready(), small_rows_ready(), small_mm_ready()
        for node in list(graph.nodes):
            if node.op != "call_function" or node.target not in _PRODUCTS:
                continue
            if node.target in (aten.addmm.default, aten.baddbmm.default):
                if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
                    continue
                bias, a, b = node.args[:3]
            else:
                bias, (a, b) = None, node.args[:2]
            operands = _operands(a, b)
            if operands is None:
                continue
            with graph.inserting_before(node):
                if _rewritable(*operands):
                    out = _multiply_and_sum(graph, a, b)
                elif small_rows and _for_small_rows(*operands):
                    out = _call(graph, torch.ops.frl_native.small_rows_bmm.default, a, b)
                elif small_mm and _for_small_mm(*operands):
                    out = _call(graph, torch.ops.frl_native.small_mm.default, a, b)
                elif small_mm and (thin := _thin_for_small_mm(*operands)):
                    out = _thin_small_mm(graph, a, b, thin == "columns")
                elif onednn and _for_onednn(*operands):
                    out = _call(graph, torch.ops.frl_native.onednn_matmul.default, a, b)
                else:
                    continue
                if bias is not None:
                    out = _call(graph, aten.add.Tensor, out, bias)
            node.replace_all_uses_with(out)
            graph.erase_node(node)

    def uuid(self) -> str:
        return fingerprint()


def _operands(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The example values of a product's operands when the pass may rewrite it at all: CPU tensors
    of one floating dtype and rank, every size and stride known at compile time; else None."""
    va, vb = a.meta.get("val"), b.meta.get("val")
    if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)):
        return None
    if va.device.type != "cpu" or vb.device.type != "cpu" or va.dtype != vb.dtype or va.dim() != vb.dim():
        return None
    if not va.dtype.is_floating_point:
        return None
    if not all(_static(s) for s in (*va.shape, *va.stride(), *vb.shape, *vb.stride())):
        return None
    return va, vb


def _rewritable(va: torch.Tensor, vb: torch.Tensor) -> bool:
    """Whether a product (see :func:`_operands`) becomes a multiply-and-sum (see :class:`ThinMatmul`)."""
    if va.dim() == 3:
        return _batched_rewritable(va, vb)
    if va.dim() != 2:
        return False
    (m, k), n = va.shape, vb.shape[1]
    if not (m and k and n) or 1 not in va.stride() or 1 not in vb.stride():  # dense along a dim
        return False
    if m <= SMALL_ROWS:
        return k * n <= _LARGEST_WEIGHT
    return ((n <= THIN and k > SHORT_CONTRACTION) or k <= TINY_CONTRACTION) and m * k * n <= _LARGEST_WORK


def _batched_rewritable(va: torch.Tensor, vb: torch.Tensor) -> bool:
    """Whether a batched product of more than :data:`SMALL_ROWS` rows becomes a multiply-and-sum:
    at most :data:`THIN` columns with ``a`` by rows and ``b`` by columns (each output a dot product
    along contiguous memory: a vmapped ``F.linear`` output layer), or a contraction of at most
    :data:`TINY_CONTRACTION` (its input gradient), each member at most :data:`_LARGEST_WORK`
    multiply-adds. Measured against the library's ``bmm`` (compiled with a consumer, one AMD EPYC
    core): 32 members of 128x64 by 64x2 (``log_softmax`` after) 74 us against 99, 8 members 32
    against 40, 32 of 128x84 by 84x2 88 against 130, 32 of 128x64 by 64x4 95 against 130, 32 of
    1024x64 by 64x2 484 against 880; contraction 2 (``tanh``'s gradient after): 32 of 128x2 by 2x64
    46 against 119, 8 members 25 against 34, 32 of 1024x2 by 2x64 331 against 3249. A 32-seed PPO
    update (16 minibatches), three alternating runs: 41-45 ms instead of 45-49. The weight gradients (``a`` by
    columns, a contraction over the minibatch) ran slower as loops: 32 seeds' update 69 ms."""
    _, m, k = va.shape
    n = vb.shape[-1]
    if not (m and k and n) or m <= SMALL_ROWS or m * k * n > _LARGEST_WORK:
        return False
    if 1 not in va.stride()[1:] or 1 not in vb.stride()[1:]:  # each member dense along a dim
        return False
    dots = va.stride(-1) == 1 and vb.stride(-2) == 1
    return (dots and n <= THIN and k > SHORT_CONTRACTION) or k <= TINY_CONTRACTION


def _multiply_and_sum(graph: torch.fx.Graph, a: Any, b: Any) -> torch.fx.Node:
    """``sum(a[..., :, :, None] * b[..., None, :, :], -2)``: the product (``[M, K]`` by ``[K, N]``, or
    batched) as a reduction Inductor generates."""
    aten = torch.ops.aten
    if _strided_short(b):  # a [K, N] copy of the weight, written out (see SHORT_CONTRACTION)
        shape = list(b.meta["val"].shape)
        copy = _call(graph, aten.clone.default, b, memory_format=torch.contiguous_format)
        b = _call(graph, aten.as_strided.default, copy, shape, copy.meta["val"].stride())
    columns = _call(graph, aten.unsqueeze.default, a, -1)  # [..., M, K, 1]
    rows = _call(graph, aten.unsqueeze.default, b, -3)  # [..., 1, K, N]
    return _call(graph, aten.sum.dim_IntList, _call(graph, aten.mul.Tensor, columns, rows), [-2])


def _for_onednn(va: torch.Tensor, vb: torch.Tensor) -> bool:
    """Whether a float32 product (see :func:`_operands`) does at least :data:`ONEDNN_WORK`
    multiply-adds, or is a thin batched product in a layout MKL handles badly (see
    :data:`ONEDNN_THIN_ROWS`)."""
    if va.dtype != torch.float32:
        return False
    rows, columns = va.shape[-2], vb.shape[-1]
    if math.prod(va.shape) * columns >= ONEDNN_WORK:
        return True
    if va.dim() != 3 or va.shape[0] < ONEDNN_THIN_MEMBERS:
        return False
    a_by_rows, b_by_columns = va.stride(-1) == 1, vb.stride(-2) == 1  # b by columns: F.linear's weight
    if columns <= THIN and rows >= ONEDNN_THIN_ROWS:
        return not (a_by_rows and b_by_columns)
    if rows <= THIN and columns >= ONEDNN_THIN_ROWS:
        return not a_by_rows and b_by_columns
    return False


def _for_small_rows(va: torch.Tensor, vb: torch.Tensor) -> bool:
    """Whether a product (see :func:`_operands`) goes to ``frl_native::small_rows_bmm``: float32,
    batched, at most :data:`SMALL_ROWS` rows, ``a`` by rows and ``b`` by columns, from
    :data:`SMALL_ROWS_MEMBERS` members or :data:`SMALL_ROWS_WORK` multiply-adds."""
    if va.dtype != torch.float32 or va.dim() != 3:
        return False
    members, rows, k = va.shape
    n = vb.shape[-1]
    if not (members > 1 and rows <= SMALL_ROWS and rows and k and n):
        return False
    if va.stride(-1) != 1 or vb.stride(-2) != 1:
        return False
    return members >= SMALL_ROWS_MEMBERS or members * rows * k * n >= SMALL_ROWS_WORK


def _for_small_mm(va: torch.Tensor, vb: torch.Tensor) -> bool:
    """Whether a product (see :func:`_operands`) goes to ``frl_native::small_mm``: float32, more
    than :data:`SMALL_ROWS` rows and :data:`SMALL_MM_WORK` to :data:`SMALL_MM_MEMBER_WORK`
    multiply-adds (a member's, batched, with at least :data:`SMALL_MM_COLUMNS` columns)."""
    if va.dtype != torch.float32 or va.dim() not in (2, 3):
        return False
    m, k = va.shape[-2:]
    n = vb.shape[-1]
    if m <= SMALL_ROWS:
        return False
    return (va.dim() == 2 or n >= SMALL_MM_COLUMNS) and SMALL_MM_WORK <= m * k * n <= SMALL_MM_MEMBER_WORK


def _thin_for_small_mm(va: torch.Tensor, vb: torch.Tensor) -> str | None:
    """Which side is thin (``"rows"`` or ``"columns"``) when a batched float32 product (see
    :func:`_operands`) that no rule above took goes to ``frl_native::small_mm`` as thin, else None:
    at most :data:`THIN` rows and at least :data:`SMALL_MM_COLUMNS` columns, or the reverse
    (computed transposed, see :func:`_thin_small_mm`), at most :data:`SMALL_MM_MEMBER_WORK`
    multiply-adds a member.
    Measured against the library's ``bmm`` and oneDNN (32 members, eager, one AMD EPYC Zen 5
    core): 2x128 by 128x84 with ``a`` by columns (an output layer's weight gradient) 21.3 us
    against 41.6 and 42.2, the same with ``b`` by columns 46.0 against 126 and 60.8, 4x64 by
    64x64 7.0 against 17.5 and 19.7; transposed, 120x128 by 128x4 with ``a`` by columns (a first
    layer's weight gradient on 4 observations) 31.5 against 369 and 124, 84x128 by 128x2 23.7-46.7
    against 263-272 and 73-94. Where the kernel would copy a wide operand to a panel first, only
    up to :data:`SMALL_MM_PANEL` (:data:`SMALL_MM_PANEL_VECTOR`) elements: 32 members of 256x256 by
    256x1 with ``a`` by rows (a SAC critic's output) took 676 us against oneDNN's 134."""
    if va.dtype != torch.float32 or va.dim() != 3:
        return None
    m, k = va.shape[-2:]
    n = vb.shape[-1]
    if not (m and k and n) or m * k * n > SMALL_MM_MEMBER_WORK:
        return None
    if m <= THIN and n >= SMALL_MM_COLUMNS:  # the kernel streams b [k, n]
        side, thin, wide, by_rows = "rows", m, k * n, vb.stride(-1) == 1
    elif n <= THIN and m >= SMALL_MM_COLUMNS:  # ...computed transposed: a^T [k, m]
        side, thin, wide, by_rows = "columns", n, m * k, va.stride(-2) == 1
    else:
        return None
    fits = by_rows or wide <= (SMALL_MM_PANEL if thin > 1 else SMALL_MM_PANEL_VECTOR)
    return side if fits else None


def _thin_small_mm(graph: torch.fx.Graph, a: Any, b: Any, few_columns: bool) -> torch.fx.Node:
    """``small_mm(a, b)``; with few columns ``small_mm(b^T, a^T)^T`` (its kernel fills 16-column
    vectors, so the many rows become its columns), copied to the row-major layout ``bmm`` gives."""
    aten, op = torch.ops.aten, torch.ops.frl_native.small_mm.default
    if not few_columns:
        return _call(graph, op, a, b)
    swap = [0, 2, 1]
    flipped = _call(
        graph, op, _call(graph, aten.permute.default, b, swap), _call(graph, aten.permute.default, a, swap)
    )
    back = _call(graph, aten.permute.default, flipped, swap)
    return _call(graph, aten.clone.default, back, memory_format=torch.contiguous_format)


def fingerprint() -> str:
    """What frl's additions generate in this process: their version, and whether products go to
    oneDNN (:func:`onednn_ready`), to frl's small-rows kernel (:func:`small_rows_ready`) and to its
    small-products kernel (:func:`small_mm_ready`) here.
    Part of every compiled graph's cache key (the pass's ``uuid``) and of a run's warm-start key."""
    return (
        _VERSION
        + ("+onednn" if onednn_ready() else "")
        + ("+rows" if small_rows_ready() else "")
        + ("+mm" if small_mm_ready() else "")
    )


def small_mm_ready() -> bool:
    """Whether float32 products (2-D and batched) can go to ``frl_native::small_mm`` here: frl's
    extension has it, its AVX-512 kernels run on this processor, a probe product matches
    ``torch.mm`` and the environment does not say ``FRL_SMALL_MM=0``. Probed once per process."""
    return _once(_SMALL_MM, lambda: _probe_product("small_mm", "FRL_SMALL_MM", _small_mm_run))


def _small_mm_run(op: Any) -> bool:
    if not torch.ops.frl_native.small_mm_vectorised():
        return False
    a = torch.arange(11 * 20, dtype=torch.float32).reshape(11, 20) / 7
    w = torch.arange(37 * 20, dtype=torch.float32).reshape(37, 20) / 11
    return torch.allclose(op(a, w.mT), a @ w.mT, rtol=1e-6, atol=0)


_SMALL_MM: list[bool] = []


def small_rows_ready() -> bool:
    """Whether batched products of few rows can go to ``frl_native::small_rows_bmm`` here: frl's
    extension has it, its AVX-512 kernels run on this processor, a probe product matches
    ``torch.bmm`` and the environment does not say ``FRL_SMALL_ROWS_BMM=0``. Probed once per
    process."""
    return _once(_SMALL_ROWS, lambda: _probe_product("small_rows_bmm", "FRL_SMALL_ROWS_BMM", _small_rows_run))


def _small_rows_run(op: Any) -> bool:
    if not torch.ops.frl_native.small_rows_vectorised():
        return False
    a = torch.arange(2 * 3 * 20, dtype=torch.float32).reshape(2, 3, 20) / 7
    w = torch.arange(2 * 5 * 20, dtype=torch.float32).reshape(2, 5, 20) / 11
    return torch.allclose(op(a, w.mT), torch.bmm(a, w.mT), rtol=1e-6, atol=0)


_SMALL_ROWS: list[bool] = []


def onednn_ready() -> bool:
    """Whether float32 products can go to oneDNN here: frl's extension has
    ``frl_native::onednn_matmul``, torch's oneDNN is built and enabled, a probe product runs (ATen's
    entry point needs AVX-512 or AVX-NE-CONVERT on x86) and equals ``torch.mm``, and the
    environment does not say ``FRL_ONEDNN_MATMUL=0``. Probed once per process."""
    return _once(_ONEDNN, lambda: _probe_product("onednn_matmul", "FRL_ONEDNN_MATMUL", _onednn_run))


def _onednn_run(op: Any) -> bool:
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    a = torch.arange(24.0).reshape(4, 6)
    b = torch.arange(18.0).reshape(6, 3)
    try:
        return torch.equal(op(a, b), a @ b)
    except RuntimeError:  # no AVX-512 on this x86 core, or no entry point in this torch
        return False


_ONEDNN: list[bool] = []


def _once(answer: list[bool], probe: Any) -> bool:
    """``probe()``'s answer, kept in ``answer`` (a one-item list tests can set) after the first call."""
    if not answer:
        answer.append(probe())
    return answer[0]


def _probe_product(name: str, switch: str, run: Any) -> bool:
    """Whether compiled graphs may call the product ``frl_native::<name>(a [..., M, K], b [..., K,
    N]) -> [..., M, N]``: the environment does not say ``<switch>=0``, frl's extension has it and
    ``run(op)`` (on real tensors) says it works here. Then its fake kernel is registered."""
    if os.environ.get(switch, "1") == "0":
        return False
    from frl import _native

    if _native.load()[0] is None or not hasattr(torch.ops.frl_native, name):
        return False
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():
        if not run(getattr(torch.ops.frl_native, name)):
            return False

    @torch.library.register_fake(f"frl_native::{name}")
    def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.new_empty((*a.shape[:-1], b.shape[-1]))

    return True


def _strided_short(b: Any) -> bool:
    """Whether ``b [..., K, N]`` has a short contraction and is not stored along ``N``: the rewrite
    copies it first (see :data:`SHORT_CONTRACTION`)."""
    vb = b.meta["val"]
    return vb.shape[-2] <= SHORT_CONTRACTION and vb.stride(-1) != 1


def _call(graph: torch.fx.Graph, target: Any, *args: Any, **kwargs: Any) -> torch.fx.Node:
    """A node of ``graph`` calling ``target`` with its ``val`` metadata (what Inductor reads)."""
    from torch._guards import detect_fake_mode

    node = graph.call_function(target, args, kwargs)
    vals = [x.meta["val"] if isinstance(x, torch.fx.Node) else x for x in args]
    fake = detect_fake_mode([v for v in vals if isinstance(v, torch.Tensor)])
    with fake if fake is not None else contextlib.nullcontext():
        node.meta["val"] = target(*vals, **kwargs)
    return node


def post_grad_pass() -> Any:
    """The pass :func:`frl.compile` runs on CPU graphs: one :class:`ThinMatmul` per process, as
    Inductor's ``CustomGraphPass`` (which its cache keys require of a custom pass)."""
    if not _PASS:
        from torch._inductor.custom_graph_pass import CustomGraphPass

        cls = type("ThinMatmulPass", (ThinMatmul, CustomGraphPass), {"__module__": __name__})
        _PASS.append(cls())
    return _PASS[0]


_PASS: list[Any] = []
_PRODUCTS = (
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
)
