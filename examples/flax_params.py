"""Parameters across frameworks: a flax model trained by frl and served in JAX, and the reverse.

1. A flax ``nn.Dense`` network is initialised by flax, its variables become a frl params
   TensorDict (``from_flax``: kernels transposed), frl trains it (pure loss, ``frl.optim.adam``,
   ``torch.func.grad``), and the trained params go back to flax (``to_flax``) to be served by
   ``jax.jit(module.apply)``.
2. The same network is trained in JAX with optax, then served by frl in torch.

Both directions print the test error computed on each side; they agree to float rounding.

    python examples/flax_params.py [--steps 2000]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import optax
import torch

from frl import nn, optim, random
from frl.interop.jax import from_flax, from_jax, to_flax, to_jax


class Regressor(flax_nn.Module):
    """x [.., 1] -> y [.., 1] with two tanh layers: the layout of ``frl.nn.MLP((1, 64, 64, 1), "tanh")``."""

    hidden: int = 64

    @flax_nn.compact
    def __call__(self, x):
        x = jnp.tanh(flax_nn.Dense(self.hidden)(x))
        x = jnp.tanh(flax_nn.Dense(self.hidden)(x))
        return flax_nn.Dense(1)(x)


def dataset(key: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sin(2x) + x / 2 on [-2, 2]: inputs [n, 1], targets [n, 1]."""
    x = random.uniform(key, (n, 1), minval=-2.0, maxval=2.0)
    return x, torch.sin(2 * x) + 0.5 * x


def main(argv: Sequence[str] | None = None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    k_train, k_test = random.split(random.key(0))
    x, y = dataset(k_train, 512)
    x_test, y_test = dataset(k_test, 256)
    module = Regressor()
    frl_net = nn.MLP((1, 64, 64, 1), activation="tanh")  # the same function in torch

    # 1. FLAX MODEL, TRAINED BY FRL, SERVED IN JAX
    variables = module.init(jax.random.key(0), jnp.zeros((1, 1)))
    params = from_flax(variables)  # {"0": {"weight", "bias"}, "1": ..., "2": ...}
    tx = optim.adam(args.lr)
    opt_state = tx.init(params)

    def loss_fn(p):
        return ((frl_net.apply(p, x) - y) ** 2).mean()

    for _ in range(args.steps):
        grads = torch.func.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optim.apply_updates(params, updates)

    serve = jax.jit(module.apply)
    jax_pred = serve(to_flax(params), to_jax(x_test))
    mse_jax = float(jnp.mean((jax_pred - to_jax(y_test)) ** 2))
    mse_torch = float(((frl_net.apply(params, x_test) - y_test) ** 2).mean())
    print(
        f"trained by frl ({args.steps} Adam steps): test MSE in JAX {mse_jax:.6f}, in torch {mse_torch:.6f}"
    )

    # 2. FLAX MODEL, TRAINED IN JAX WITH OPTAX, SERVED BY FRL
    jx, jy = to_jax(x), to_jax(y)
    variables = module.init(jax.random.key(1), jnp.zeros((1, 1)))
    jtx = optax.adam(args.lr)
    jopt = jtx.init(variables)

    @jax.jit
    def jax_step(v, s):
        grads = jax.grad(lambda v: jnp.mean((module.apply(v, jx) - jy) ** 2))(v)
        updates, s = jtx.update(grads, s, v)
        return optax.apply_updates(v, updates), s

    for _ in range(args.steps):
        variables, jopt = jax_step(variables, jopt)

    served = from_flax(variables)
    with torch.no_grad():
        torch_pred = frl_net.apply(served, x_test)
    jax_pred = from_jax(module.apply(variables, to_jax(x_test)))
    mse_served = float(((torch_pred - y_test) ** 2).mean())
    gap = float((torch_pred - jax_pred).abs().max())
    print(
        f"trained by optax ({args.steps} Adam steps): test MSE served by frl {mse_served:.6f}, "
        f"max |torch - JAX| prediction gap {gap:.2e}"
    )
    return mse_torch, mse_served


if __name__ == "__main__":
    main()
