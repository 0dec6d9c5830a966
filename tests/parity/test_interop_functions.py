"""jax_function: a JAX function as a torch operator, eager, under backward, vmap and torch.compile."""

from __future__ import annotations

import functools

import pytest
import torch

from tests.jax_helpers import import_or_skip

jax = import_or_skip("jax")
jnp = jax.numpy
fj = import_or_skip("frl.interop.jax")
pytestmark = pytest.mark.jax


def _energy(x, w):
    """sum(sin(x)^2 * w), x * 2, and an integer output."""
    return {"energy": jnp.sum(jnp.sin(x) ** 2 * w), "pair": (x * 2.0, (w > 0.5).astype(jnp.int32))}


energy = fj.jax_function(_energy)


def reference(x, w):
    return (torch.sin(x) ** 2 * w).sum()


def test_eager_values_and_output_structure():
    x, w = torch.randn(6), torch.rand(6)
    out = energy(x, w)
    assert set(out) == {"energy", "pair"} and isinstance(out["pair"], tuple)
    torch.testing.assert_close(out["energy"], reference(x, w))
    torch.testing.assert_close(out["pair"][0], x * 2)
    assert out["pair"][1].dtype == torch.int32 and torch.equal(out["pair"][1], (w > 0.5).to(torch.int32))


def test_backward_runs_jax_vjp():
    x = torch.randn(6, requires_grad=True)
    w = torch.rand(6, requires_grad=True)
    out = energy(x, w)
    (out["energy"] + out["pair"][0].sum()).backward()
    torch.testing.assert_close(x.grad, torch.sin(2 * x.detach()) * w.detach() + 2.0)
    torch.testing.assert_close(w.grad, torch.sin(x.detach()) ** 2)
    (gx,) = torch.autograd.grad(energy(x, w)["energy"], x)  # outputs that are not used get zero cotangents
    torch.testing.assert_close(gx, torch.sin(2 * x.detach()) * w.detach())


def test_vmap_becomes_jax_vmap_nested_and_with_unbatched_args():
    xs, w = torch.randn(3, 6), torch.rand(6)
    out = torch.func.vmap(energy, in_dims=(0, None))(xs, w)
    torch.testing.assert_close(out["energy"], torch.stack([reference(x, w) for x in xs]))
    ws = torch.rand(2, 6)
    nested = torch.func.vmap(torch.func.vmap(energy, in_dims=(0, None)), in_dims=(None, 0))(xs, ws)
    assert nested["energy"].shape == (2, 3) and nested["pair"][0].shape == (2, 3, 6)
    torch.testing.assert_close(nested["energy"][1, 2], reference(xs[2], ws[1]))
    batched_second = torch.func.vmap(energy, in_dims=(None, 1))(xs[0], ws.T)
    torch.testing.assert_close(batched_second["energy"], torch.stack([reference(xs[0], w) for w in ws]))


@pytest.mark.compile
def test_compiled_fullgraph_forward_backward_and_vmap():
    def loss(x, w):
        out = energy(x * 1.5, w)
        return out["energy"] * 2.0 + out["pair"][0].sum()

    compiled = torch.compile(loss, fullgraph=True)
    x, w = torch.randn(6, requires_grad=True), torch.rand(6)
    value = compiled(x, w)
    value.backward()
    grad = x.grad.clone()
    x.grad = None
    expected = loss(x, w)
    expected.backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, x.grad)
    batched = torch.compile(torch.func.vmap(loss, in_dims=(0, None)), fullgraph=True)
    xs = torch.randn(4, 6)
    torch.testing.assert_close(batched(xs, w), torch.stack([loss(x, w) for x in xs]))


def test_torch_func_grad_is_not_supported_as_documented():
    with pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.grad(lambda x: energy(x, torch.rand(6))["energy"])(torch.randn(6))


def test_python_values_are_bound_with_partial_and_bad_arguments_name_the_issue():
    scaled = fj.jax_function(functools.partial(lambda x, scale: x * scale, scale=3.0), name="scaled")
    torch.testing.assert_close(scaled(torch.ones(2)), torch.full((2,), 3.0))
    with pytest.raises(TypeError, match=r"argument 1 must be a tensor, got float"):
        energy(torch.ones(2), 0.5)
    with pytest.raises(ValueError, match=r"argument 0 is torch\.int64 but jax_enable_x64 is off"):
        energy(torch.ones(2, dtype=torch.int64), torch.ones(2))


def test_large_inputs_cross_without_a_copy():
    from frl.interop.jax.functions import _to_jax

    big = torch.ones(1 << 17)  # 512 KiB: DLPack, zero-copy
    assert fj.is_zero_copy(big, _to_jax(big))
    small = torch.ones(4)  # a NumPy view; jit copies it (cheaper than DLPack's per-array cost)
    assert _to_jax(small).__array_interface__["data"][0] == small.data_ptr()
    assert fj.jax_function(lambda x: x.sum())(big).item() == float(1 << 17)


SCRIPT = """
import torch, jax.numpy as jnp
from torch._dynamo.utils import counters
from frl.interop.jax import jax_function

def _cube_sum(x):
    return jnp.sum(x ** 3)

cube = jax_function(_cube_sum)
f = torch.compile(lambda x: cube(x * 2.0) + x.sum(), fullgraph=True)
x = torch.arange(4.0, requires_grad=True)
f(x).backward()
print(cube.op_name, x.grad.tolist(), counters["aot_autograd"]["autograd_cache_hit"])
"""


@pytest.mark.compile
def test_a_graph_cached_on_disk_runs_in_a_new_process(tmp_path):
    """The compiled graph (forward and backward) names the operator; a new process that loads it
    from Inductor's cache must find the same operator under the same name."""
    import os
    import subprocess
    import sys

    (tmp_path / "script.py").write_text(SCRIPT)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(tmp_path / "script.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(done.stdout.split(maxsplit=1))
    assert runs[0][0] == runs[1][0]  # the same operator name in both processes
    rest = runs[1][1]
    assert rest.startswith("[1.0, 25.0, 97.0, 217.0]")  # d/dx sum((2x)^3) + 1 = 24 x^2 + 1
    assert rest.split()[-1] == "1"  # the second process reused the cached graph
    fresh = fj.jax_function(lambda x: x * 2)
    assert fj.jax_function(_energy).op_name == energy.op_name != fresh.op_name
