"""The JAX peer: PPO on gymnax CartPole-v1 the purejaxrl way, written here (``ppo_program`` on
any gymnax environment and networks: ``jax_ppo_minatar.py`` reuses it).

The whole training run (rollout with ``lax.scan``, GAE as a reverse scan, every epoch and
minibatch as nested scans) is one ``jax.jit`` of ``vmap`` over seeds; CleanRL's settings
(4 envs x 128 steps, 4 epochs x 4 minibatches, Adam 2.5e-4 annealed, eps 1e-5, clip 0.2,
entropy 0.01, value 0.5 with value clipping, gradient norm 0.5, 64x64 tanh actor and critic).

Runs in its own virtual environment (``requirements/jax.txt``); prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _result import run_jax

CLEANRL = {
    "num_envs": 4,
    "num_steps": 128,
    "epochs": 4,
    "minibatches": 4,
    "lr": 2.5e-4,
    "gamma": 0.99,
    "lam": 0.95,
    "clip": 0.2,
    "ent": 0.01,
    "vf": 0.5,
    "max_norm": 0.5,
}


def dense(key, n_in, n_out, scale):
    return {"w": jax.nn.initializers.orthogonal(scale)(key, (n_in, n_out)), "b": jnp.zeros(n_out)}


def mlp_init(key, sizes, last_scale):
    keys = jax.random.split(key, len(sizes) - 1)
    scales = [np.sqrt(2)] * (len(sizes) - 2) + [last_scale]
    return [dense(k, a, b, s) for k, a, b, s in zip(keys, sizes[:-1], sizes[1:], scales)]


def mlp(layers, x):
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def mlp_networks(key, obs_shape, n_act):
    """CleanRL's 64x64 tanh actor (last layer gain 0.01) and critic (gain 1)."""
    k_actor, k_critic = jax.random.split(key)
    return {
        "actor": mlp_init(k_actor, [obs_shape[0], 64, 64, n_act], 0.01),
        "critic": mlp_init(k_critic, [obs_shape[0], 64, 64, 1], 1.0),
    }


def make_train(total_steps: int):
    return ppo_program(total_steps, "CartPole-v1", mlp_networks, mlp, CLEANRL)


def ppo_program(total_steps: int, env_id: str, init_networks, forward, settings: dict):
    """The whole PPO run on gymnax ``env_id`` as ``train(key) -> last episode return``, with
    ``init_networks(key, obs_shape, n_actions) -> {"actor", "critic"}``, ``forward(net, obs)``
    and ``settings`` (the keys of :data:`CLEANRL`); and the steps it takes per seed."""
    NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCHES = (
        settings[k] for k in ("num_envs", "num_steps", "epochs", "minibatches")
    )
    GAMMA, LAMBDA, CLIP, ENT, VF = (settings[k] for k in ("gamma", "lam", "clip", "ent", "vf"))
    env, env_params = gymnax.make(env_id)
    obs_shape, n_act = env.observation_space(env_params).shape, env.num_actions
    iterations = total_steps // (NUM_ENVS * NUM_STEPS)
    minibatch = NUM_ENVS * NUM_STEPS // MINIBATCHES
    schedule = optax.linear_schedule(settings["lr"], 0.0, iterations * EPOCHS * MINIBATCHES)
    tx = optax.chain(optax.clip_by_global_norm(settings["max_norm"]), optax.adam(schedule, eps=1e-5))

    def env_step(key, state, action):
        out = env.step(key, state, action, env_params)
        return out[0], out[1], out[2], out[3]

    def loss_fn(params, batch):
        obs, action, old_logp, adv, target, old_value = batch
        logits = forward(params["actor"], obs)
        logp_all = jax.nn.log_softmax(logits)
        logp = jnp.take_along_axis(logp_all, action[:, None], axis=-1)[:, 0]
        ratio = jnp.exp(logp - old_logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - CLIP, 1 + CLIP)).mean()
        value = forward(params["critic"], obs)[:, 0]
        clipped = old_value + jnp.clip(value - old_value, -CLIP, CLIP)
        v_loss = 0.5 * jnp.maximum((value - target) ** 2, (clipped - target) ** 2).mean()
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
        return pg - ENT * entropy + VF * v_loss

    def train(key):
        key, k_params, k_reset = jax.random.split(key, 3)
        params = init_networks(k_params, obs_shape, n_act)
        opt_state = tx.init(params)
        obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, NUM_ENVS), env_params)
        episodes = (jnp.zeros(NUM_ENVS), jnp.zeros(NUM_ENVS))  # running return, last return

        def rollout_step(carry, _):
            params, obs, env_state, episodes, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            logits = forward(params["actor"], obs)
            action = jax.random.categorical(k_act, logits)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
            value = forward(params["critic"], obs)[:, 0]
            next_obs, env_state, reward, done = jax.vmap(env_step)(
                jax.random.split(k_env, NUM_ENVS), env_state, action
            )
            running = episodes[0] + reward
            episodes = (jnp.where(done, 0.0, running), jnp.where(done, running, episodes[1]))
            step = (obs, action, logp, value, reward, done)
            return (params, next_obs, env_state, episodes, key), step

        def iteration(carry, _):
            params, opt_state, obs, env_state, episodes, key = carry
            (params, obs, env_state, episodes, key), traj = jax.lax.scan(
                rollout_step, (params, obs, env_state, episodes, key), None, NUM_STEPS
            )
            t_obs, t_act, t_logp, t_value, t_reward, t_done = traj
            last_value = forward(params["critic"], obs)[:, 0]

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
