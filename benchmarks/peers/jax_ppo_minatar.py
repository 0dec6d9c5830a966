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

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _result import run_jax

NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCHES = 16, 128, 4, 8
LR, GAMMA, LAMBDA, CLIP, ENT, VF, MAX_NORM = 5e-4, 0.99, 0.95, 0.2, 0.01, 0.5, 0.5
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


def make_train(total_steps: int):
    env, env_params = gymnax.make(ENV_ID)
    shape, n_act = env.observation_space(env_params).shape, env.num_actions
    iterations = total_steps // (NUM_ENVS * NUM_STEPS)
    minibatch = NUM_ENVS * NUM_STEPS // MINIBATCHES
    schedule = optax.linear_schedule(LR, 0.0, iterations * EPOCHS * MINIBATCHES)
    tx = optax.chain(optax.clip_by_global_norm(MAX_NORM), optax.adam(schedule, eps=1e-5))

    def env_step(key, state, action):
        out = env.step(key, state, action, env_params)
        return out[0], out[1], out[2], out[3]

    def loss_fn(params, batch):
        obs, action, old_logp, adv, target, old_value = batch
        logp_all = jax.nn.log_softmax(cnn(params["actor"], obs))
        logp = jnp.take_along_axis(logp_all, action[:, None], axis=-1)[:, 0]
        ratio = jnp.exp(logp - old_logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - CLIP, 1 + CLIP)).mean()
        value = cnn(params["critic"], obs)[:, 0]
        clipped = old_value + jnp.clip(value - old_value, -CLIP, CLIP)
        v_loss = 0.5 * jnp.maximum((value - target) ** 2, (clipped - target) ** 2).mean()
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
        return pg - ENT * entropy + VF * v_loss

    def train(key):
        key, k_actor, k_critic, k_reset = jax.random.split(key, 4)
        params = {
            "actor": cnn_init(k_actor, shape[-1], n_act, 0.01),
            "critic": cnn_init(k_critic, shape[-1], 1, 1.0),
        }
        opt_state = tx.init(params)
        obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, NUM_ENVS), env_params)
        episodes = (jnp.zeros(NUM_ENVS), jnp.zeros(NUM_ENVS))  # running return, last return

        def rollout_step(carry, _):
            params, obs, env_state, episodes, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            logits = cnn(params["actor"], obs)
            action = jax.random.categorical(k_act, logits)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
            value = cnn(params["critic"], obs)[:, 0]
            next_obs, env_state, reward, done = jax.vmap(env_step)(
                jax.random.split(k_env, NUM_ENVS), env_state, action
            )
            running = episodes[0] + reward
            episodes = (jnp.where(done, 0.0, running), jnp.where(done, running, episodes[1]))
            return (params, next_obs, env_state, episodes, key), (obs, action, logp, value, reward, done)

        def iteration(carry, _):
            params, opt_state, obs, env_state, episodes, key = carry
            (params, obs, env_state, episodes, key), traj = jax.lax.scan(
                rollout_step, (params, obs, env_state, episodes, key), None, NUM_STEPS
            )
            t_obs, t_act, t_logp, t_value, t_reward, t_done = traj
            last_value = cnn(params["critic"], obs)[:, 0]

            def gae_step(carry, step):
                next_adv, next_value = carry
                value, reward, done = step
                delta = reward + GAMMA * next_value * (1 - done) - value
                adv = delta + GAMMA * LAMBDA * (1 - done) * next_adv
                return (adv, value), adv

            _, adv = jax.lax.scan(
                gae_step, (jnp.zeros(NUM_ENVS), last_value), (t_value, t_reward, t_done), reverse=True
            )
            flat = tuple(
                x.reshape(NUM_ENVS * NUM_STEPS, *x.shape[2:])
                for x in (t_obs, t_act, t_logp, adv, adv + t_value, t_value)
            )

            def epoch(carry, _):
                params, opt_state, key = carry
                key, k_perm = jax.random.split(key)
                perm = jax.random.permutation(k_perm, NUM_ENVS * NUM_STEPS)
                shuffled = tuple(x[perm].reshape(MINIBATCHES, minibatch, *x.shape[1:]) for x in flat)

                def minibatch_step(carry, batch):
                    params, opt_state = carry
                    grads = jax.grad(loss_fn)(params, batch)
                    updates, opt_state = tx.update(grads, opt_state, params)
                    return (optax.apply_updates(params, updates), opt_state), None

                (params, opt_state), _ = jax.lax.scan(minibatch_step, (params, opt_state), shuffled)
                return (params, opt_state, key), None

            (params, opt_state, key), _ = jax.lax.scan(epoch, (params, opt_state, key), None, EPOCHS)
            return (params, opt_state, obs, env_state, episodes, key), None

        carry = (params, opt_state, obs, env_state, episodes, key)
        carry, _ = jax.lax.scan(iteration, carry, None, iterations)
        return carry[4][1].mean()

    return train, iterations * NUM_ENVS * NUM_STEPS


if __name__ == "__main__":
    run_jax(make_train, __doc__)
