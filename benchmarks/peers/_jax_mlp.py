"""The JAX peers' ReLU MLP with torch.nn.Linear's default initialisation (CleanRL's networks)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init_mlp(key, sizes):
    """Layers ``[{"w": [n_in, n_out], "b": [n_out]}]``, each uniform in +-1/sqrt(n_in)."""
    layers = []
    for k, n_in, n_out in zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:]):
        bound = 1.0 / jnp.sqrt(n_in)
        k_w, k_b = jax.random.split(k)
        layers.append(
            {
                "w": jax.random.uniform(k_w, (n_in, n_out), minval=-bound, maxval=bound),
                "b": jax.random.uniform(k_b, (n_out,), minval=-bound, maxval=bound),
            }
        )
    return layers


def relu_mlp(layers, x):
    """ReLU between layers, none after the last."""
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]
