"""frl.interop.jax arrays: zero-copy by data pointer, every dtype, the copy cases, 64-bit rules, keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from frl import random
from tests.jax_helpers import import_or_skip

jax = import_or_skip("jax")
jnp = jax.numpy
fj = import_or_skip("frl.interop.jax")
pytestmark = pytest.mark.jax

ZERO_COPY_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.uint16,
    torch.uint32,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.complex64,
]
WIDE_DTYPES = [torch.int64, torch.uint64, torch.float64, torch.complex128]


def sample(dtype: torch.dtype, n: int = 37) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(n, generator=g) > 0.5
    if dtype.is_complex:
        return torch.randn(n, generator=g, dtype=dtype)
    if dtype.is_floating_point:
        return torch.randn(n, generator=g).to(dtype)
    hi = 100 if dtype != torch.int8 else 50
    lo = 0 if dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64) else -hi
    return torch.randint(lo, hi, (n,), generator=g).to(dtype)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


@pytest.mark.parametrize("dtype", ZERO_COPY_DTYPES, ids=str)
def test_round_trip_is_zero_copy_for_every_dtype(dtype):
    x = sample(dtype)
    a = fj.to_jax(x)
    assert fj.is_zero_copy(x, a), "to_jax copied"
    assert str(a.dtype) == str(x.dtype).removeprefix("torch.").replace("bool", "bool")
    np.testing.assert_array_equal(
        np.asarray(a.astype(jnp.float32) if dtype == torch.bfloat16 else a), as_numpy(x)
    )
    back = fj.from_jax(a)
    assert back.dtype == dtype and back.data_ptr() == x.data_ptr() and torch.equal(back, x)


def test_memory_is_shared_both_ways():
    x = torch.zeros(8)
    a = fj.to_jax(x)
    x[3] = 7.0
    assert float(a[3]) == 7.0
    b = jnp.arange(4.0)
    t = fj.from_jax(b)
    assert t.data_ptr() == b.unsafe_buffer_pointer()


def test_requires_grad_is_detached_not_copied():
    x = torch.randn(16, requires_grad=True)
    a = fj.to_jax(x)
    assert fj.is_zero_copy(x, a)
    assert x.requires_grad  # the input is left alone


@pytest.mark.parametrize(
    "view",
    [lambda x: x.T, lambda x: x[:, ::2], lambda x: x[:1].expand(6, 10)],
    ids=["transpose", "strided", "expand"],
)
def test_non_contiguous_views_are_copied_with_the_right_values(view):
    x = torch.arange(60.0).reshape(6, 10)
    v = view(x)
    a = fj.to_jax(v)
    np.testing.assert_array_equal(np.asarray(a), v.numpy())
    assert a.unsafe_buffer_pointer() != x.data_ptr()  # documented: one contiguous copy


def test_misaligned_views_keep_their_values():
    x = torch.arange(65.0)
    v = x[1:]  # 4 bytes past an aligned start: JAX copies it (documented)
    a = fj.to_jax(v)
    np.testing.assert_array_equal(np.asarray(a), v.numpy())


@pytest.mark.parametrize("dtype", WIDE_DTYPES, ids=str)
def test_64_bit_without_x64_is_an_error_not_a_silent_downcast(dtype):
    assert not fj.x64_enabled()
    td = TensorDict({"obs": {"count": sample(dtype)}}, batch_size=[])
    with pytest.raises(ValueError, match=r"\['obs'\]\['count'\] is torch\.\w+.*jax_enable_x64"):
        fj.to_jax(td)


def test_downcast_is_explicit_and_range_checked():
    a = fj.to_jax(torch.tensor([1, -5, 2**31 - 1]), downcast=True)
    assert a.dtype == jnp.int32 and a.tolist() == [1, -5, 2**31 - 1]
    f = fj.to_jax(torch.tensor([0.1, 1e3], dtype=torch.float64), downcast=True)
    assert f.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(f), [0.1, 1e3], rtol=1e-7)
    with pytest.raises(ValueError, match=r"outside torch\.int32's range"):
        fj.to_jax(torch.tensor([2**40]), downcast=True)


@pytest.mark.parametrize("dtype", WIDE_DTYPES, ids=str)
def test_64_bit_with_x64_is_zero_copy(dtype):
    with jax.enable_x64(True):
        x = sample(dtype)
        a = fj.to_jax(x)
        assert str(a.dtype) == str(x.dtype).removeprefix("torch.")
        assert fj.is_zero_copy(x, a)
        back = fj.from_jax(a)
        assert back.dtype == dtype and torch.equal(back, x)


def test_nested_tensordict_round_trip_shares_every_leaf():
    td = TensorDict(
        {
            "actor": {"0": {"weight": torch.randn(3, 4), "bias": torch.zeros(3)}},
            "step": torch.tensor(3, dtype=torch.int32),
        },
        batch_size=[],
    )
    tree = fj.to_jax(td)
    assert isinstance(tree, dict) and set(tree) == {"actor", "step"}
    assert fj.is_zero_copy(td["actor", "0", "weight"], tree["actor"]["0"]["weight"])
    back = fj.from_jax(tree)
    assert isinstance(back, TensorDict)
    for k in td.keys(True, True):
        assert back[k].data_ptr() == td[k].data_ptr() and torch.equal(back[k], td[k])
    plain = fj.from_jax(tree, tensordict=False)
    assert isinstance(plain, dict) and isinstance(plain["actor"], dict)
    pair = fj.to_jax((torch.ones(2), [torch.zeros(1)]))
    assert isinstance(pair, tuple) and isinstance(pair[1], list)


def test_keys_cross_and_draw_the_same_numbers():
    k = random.fold_in(random.key(42), 7)
    jk = fj.to_jax_key(k)
    assert jnp.issubdtype(jk.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(jk)), k.numpy())
    np.testing.assert_array_equal(np.asarray(jax.random.uniform(jk, (64,))), random.uniform(k, (64,)).numpy())
    np.testing.assert_array_equal(np.asarray(jax.random.bits(jk, (9,))), random.bits(k, (9,)).numpy())
    assert torch.equal(fj.from_jax_key(jax.random.split(jk, 3)), random.split(k, 3))
    assert torch.equal(fj.from_jax_key(jax.random.key_data(jk)), k)
    with pytest.raises(TypeError, match="from_jax_key"):
        fj.from_jax(jk)
    with pytest.raises(ValueError, match="to_jax_key"):
        fj.to_jax_key(torch.zeros(3))
