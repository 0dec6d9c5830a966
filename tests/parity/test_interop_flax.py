"""frl.interop.jax params: frl MLPs and flax.linen Dense stacks give the same outputs and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict

from frl import nn, random
from tests.jax_helpers import import_or_skip

jax = import_or_skip("jax")
jnp = jax.numpy
flax_nn = import_or_skip("flax.linen")
fj = import_or_skip("frl.interop.jax")
pytestmark = pytest.mark.jax

TOL = 1e-6


class FlaxMLP(flax_nn.Module):
    sizes: tuple[int, ...]

    @flax_nn.compact
    def __call__(self, x):
        for i, size in enumerate(self.sizes):
            x = flax_nn.Dense(size)(x)
            if i < len(self.sizes) - 1:
                x = jnp.tanh(x)
        return x


def max_diff(a: TensorDict, b: TensorDict) -> float:
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    return max((a[k] - b[k]).abs().max().item() for k in a.keys(True, True))


def test_layout_names_and_shapes():
    params = nn.MLP((4, 8, 2)).init(random.key(0))
    variables = fj.to_flax(params)
    shapes = jax.tree_util.tree_map(lambda a: a.shape, variables)
    assert shapes == {
        "params": {"Dense_0": {"kernel": (4, 8), "bias": (8,)}, "Dense_1": {"kernel": (8, 2), "bias": (2,)}}
    }
    np.testing.assert_array_equal(
        np.asarray(variables["params"]["Dense_0"]["kernel"]), params["0", "weight"].T.numpy()
    )
    assert fj.is_zero_copy(params["0", "bias"], variables["params"]["Dense_0"]["bias"])
    assert set(fj.to_flax(params, wrap=False)) == {"Dense_0", "Dense_1"}


def test_frl_params_in_flax_same_forward_and_gradients():
    mlp = nn.MLP((5, 32, 32, 3), activation="tanh")
    params = mlp.init(random.key(1))
    x = random.normal(random.key(2), (64, 5))
    target = random.normal(random.key(3), (64, 3))
    module = FlaxMLP((32, 32, 3))
    xj, tj = fj.to_jax(x), fj.to_jax(target)

    out_frl = mlp.apply(params, x)
    out_flax = fj.from_jax(module.apply(fj.to_flax(params), xj))
    assert (out_frl - out_flax).abs().max().item() <= TOL

    grads_frl = torch.func.grad(lambda p: ((mlp.apply(p, x) - target) ** 2).mean())(params)
    grads_flax = jax.grad(lambda v: ((module.apply(v, xj) - tj) ** 2).mean())(fj.to_flax(params))
    assert max_diff(grads_frl, fj.from_flax(grads_flax)) <= TOL


def test_flax_params_in_frl_same_forward_and_exact_round_trip():
    module = FlaxMLP((16, 2))
    variables = module.init(jax.random.key(0), jnp.zeros((1, 3)))
    params = fj.from_flax(variables)
    assert set(params.keys()) == {"0", "1"} and params["0", "weight"].shape == (16, 3)
    mlp = nn.MLP((3, 16, 2), activation="tanh")
    x = random.normal(random.key(4), (10, 3))
    expected = fj.from_jax(module.apply(variables, fj.to_jax(x)))
    assert (mlp.apply(params, x) - expected).abs().max().item() <= TOL
    again = fj.to_flax(params)
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(variables)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert max_diff(fj.from_flax(again), params) == 0.0


def test_other_leaves_keep_their_names():
    policy = nn.GaussianPolicy(3, 2, hidden=(8,))
    params = policy.init(random.key(5))
    tree = fj.to_flax(params, wrap=False)
    back = fj.from_flax(tree)
    assert set(back.keys(True, True)) == set(params.keys(True, True))
    assert max_diff(back, params) == 0.0


def test_conv_kernels_match_flax_conv():
    weight = random.normal(random.key(6), (8, 4, 3, 3))
    bias = random.normal(random.key(7), (8,))
    params = TensorDict({"0": {"weight": weight, "bias": bias}}, batch_size=[])
    x = random.normal(random.key(8), (2, 4, 9, 9))  # NCHW
    torch_out = F.conv2d(x, weight, bias, stride=2)
    conv = flax_nn.Conv(8, (3, 3), strides=(2, 2), padding="VALID")
    variables = fj.to_flax(params, layer_name=lambda i: f"Conv_{i}")
    flax_out = conv.apply(
        {"params": variables["params"]["Conv_0"]}, fj.to_jax(x.permute(0, 2, 3, 1).contiguous())
    )
    assert (fj.from_jax(flax_out).permute(0, 3, 1, 2) - torch_out).abs().max().item() <= 1e-5
    assert max_diff(fj.from_flax(variables), params) == 0.0


def test_bad_params_name_the_field():
    with pytest.raises(ValueError, match=r"\['0'\]\['weight'\] must be 2-D"):
        fj.to_flax(TensorDict({"0": {"weight": torch.zeros(3), "bias": torch.zeros(3)}}, batch_size=[]))
    with pytest.raises(TypeError, match="expected arrays in dicts"):
        fj.from_flax(
            {"params": {"Dense_0": {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}, "x": "text"}}
        )
