"""The JAX peer on MinAtar: PPO on gymnax ``Breakout-MinAtar`` the purejaxrl way, written here.

The same program as ``jax_ppo.py`` (one ``jax.jit`` of ``vmap`` over seeds: rollout, GAE and every
epoch and minibatch as scans) with frl's MinAtar preset (16 envs x 128 steps, 4 epochs x 8
minibatches, Adam 5e-4 annealed to 0, eps 1e-5, clip 0.2, entropy 0.01, value 0.5 with value
clipping, gradient norm 0.5) and MinAtar's network for the actor and, separately, the critic:
conv 16x3x3 -> ReLU -> dense 128 -> ReLU -> head (orthogonal, gain sqrt 2; heads 0.01 and 1).
gymnax's Breakout has no sticky actions and a 1,000-step limit; frl's row runs without sticky
actions too. Prints one ``RESULT {json}`` line: the final return is the mean over seeds of the
last completed training episode of every environment.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from _result import run_jax
from jax_ppo import CLEANRL, ppo_program

SETTINGS = {**CLEANRL, "num_envs": 16, "minibatches": 8, "lr": 5e-4}
ENV_ID = "Breakout-MinAtar"


def cnn_init(key, channels: int, outputs: int, head_scale: float):
    k_conv, k_fc, k_head = jax.random.split(key, 3)
    ortho = jax.nn.initializers.orthogonal
    return {
        "conv": {"w": ortho(np.sqrt(2))(k_conv, (3, 3, channels, 16)), "b": jnp.zeros(16)},
        "fc": {"w": ortho(np.sqrt(2))(k_fc, (8 * 8 * 16, 128)), "b": jnp.zeros(128)},
        "head": {"w": ortho(head_scale)(k_head, (128, outputs)), "b": jnp.zeros(outputs)},
    }


def cnn(params, frames):
    """``[B, 10, 10, C]`` frames -> ``[B, outputs]``."""
    x = jax.lax.conv_general_dilated(
        frames, params["conv"]["w"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    x = jax.nn.relu(x + params["conv"]["b"]).reshape(frames.shape[0], -1)
    x = jax.nn.relu(x @ params["fc"]["w"] + params["fc"]["b"])
    return x @ params["head"]["w"] + params["head"]["b"]


def cnn_networks(key, obs_shape, n_act):
    k_actor, k_critic = jax.random.split(key)
    return {
        "actor": cnn_init(k_actor, obs_shape[-1], n_act, 0.01),
        "critic": cnn_init(k_critic, obs_shape[-1], 1, 1.0),
    }


def make_train(total_steps: int):
    return ppo_program(total_steps, ENV_ID, cnn_networks, cnn, SETTINGS)


if __name__ == "__main__":
    run_jax(make_train, __doc__)
