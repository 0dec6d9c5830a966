"""The JAX peer for DQN: CleanRL's DQN on gymnax CartPole-v1, written here the purejaxrl way.

The whole run is one ``jax.jit`` of ``vmap`` over seeds: a scan over iterations, each 10 env
steps (an inner scan, epsilon-greedy, stored into a circular buffer of 10k transitions) then one
gradient step on a minibatch of 128 once 10k steps are stored (``lax.cond``), and a hard target
update every 500 steps. Settings as frl's DQN defaults: 1 env, Adam 2.5e-4, MSE loss, epsilon
1 -> 0.05 over half the run, 120x84 ReLU network, gamma 0.99.

Runs in its own virtual environment (``requirements/jax.txt``); prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
import optax
from _jax_mlp import init_mlp, relu_mlp
from _result import run_jax

BUFFER, BATCH, TRAIN_EVERY, TARGET_EVERY, LEARNING_STARTS = 10_000, 128, 10, 500, 10_000
LR, GAMMA, START_E, END_E, FRACTION = 2.5e-4, 0.99, 1.0, 0.05, 0.5


def make_train(total_steps: int):
    env, env_params = gymnax.make("CartPole-v1")
    n_obs, n_act = env.observation_space(env_params).shape[0], env.num_actions
    iterations = total_steps // TRAIN_EVERY
    tx = optax.adam(LR)

    def loss_fn(params, target, batch):
        obs, action, reward, next_obs, done = batch
        next_q = relu_mlp(target, next_obs).max(-1)
        td_target = reward + GAMMA * next_q * (1.0 - done)
        q = jnp.take_along_axis(relu_mlp(params, obs), action[:, None], axis=-1)[:, 0]
        return ((q - jax.lax.stop_gradient(td_target)) ** 2).mean()

    def train(key):
        key, k_net, k_reset = jax.random.split(key, 3)
        params = init_mlp(k_net, [n_obs, 120, 84, n_act])
        target, opt_state = params, tx.init(params)
        obs, env_state = env.reset(k_reset, env_params)
        buffer = {
            "obs": jnp.zeros((BUFFER, n_obs)),
            "action": jnp.zeros(BUFFER, jnp.int32),
            "reward": jnp.zeros(BUFFER),
            "next_obs": jnp.zeros((BUFFER, n_obs)),
            "done": jnp.zeros(BUFFER),
        }
        episodes = (jnp.zeros(()), jnp.zeros(()))  # running return, last return

        def env_step(carry, _):
            params, obs, env_state, buffer, episodes, step, key = carry
            key, k_eps, k_rand, k_env = jax.random.split(key, 4)
            epsilon = jnp.maximum(END_E, START_E + (END_E - START_E) * step / (FRACTION * total_steps))
            greedy = jnp.argmax(relu_mlp(params, obs))
            action = jnp.where(
                jax.random.uniform(k_eps) < epsilon, jax.random.randint(k_rand, (), 0, n_act), greedy
            )
            next_obs, env_state, reward, done, _ = env.step(k_env, env_state, action, env_params)
            slot = step % BUFFER
            # the true next observation is the pre-reset one: gymnax keeps it out of reach, so the
            # stored next_obs after a done is the reset observation, masked by done in the target
            row = {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "done": done * 1.0}
            buffer = {k: buffer[k].at[slot].set(v) for k, v in row.items()}
            running = episodes[0] + reward
            episodes = (jnp.where(done, 0.0, running), jnp.where(done, running, episodes[1]))
            return (params, next_obs, env_state, buffer, episodes, step + 1, key), None

        def iteration(carry, _):
            params, target, opt_state, obs, env_state, buffer, episodes, step, key = carry
            inner = (params, obs, env_state, buffer, episodes, step, key)
            (params, obs, env_state, buffer, episodes, step, key), _ = jax.lax.scan(
                env_step, inner, None, TRAIN_EVERY
            )
            key, k_batch = jax.random.split(key)

            def learn(operand):
                params, opt_state = operand
                index = jax.random.randint(k_batch, (BATCH,), 0, jnp.minimum(step, BUFFER))
                batch = tuple(buffer[k][index] for k in ("obs", "action", "reward", "next_obs", "done"))
                grads = jax.grad(loss_fn)(params, target, batch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state

            params, opt_state = jax.lax.cond(step >= LEARNING_STARTS, learn, lambda o: o, (params, opt_state))
            refresh = (step % TARGET_EVERY == 0) & (step >= LEARNING_STARTS)
            target = jax.tree_util.tree_map(lambda t, p: jnp.where(refresh, p, t), target, params)
            return (params, target, opt_state, obs, env_state, buffer, episodes, step, key), None

        carry = (params, target, opt_state, obs, env_state, buffer, episodes, jnp.zeros((), jnp.int32), key)
        carry, _ = jax.lax.scan(iteration, carry, None, iterations)
        return carry[6][1]

    return train, iterations * TRAIN_EVERY


if __name__ == "__main__":
    run_jax(make_train, __doc__)
