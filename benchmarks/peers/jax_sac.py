"""The JAX peer for SAC: CleanRL's ``sac_continuous_action.py`` on gymnax Pendulum-v1, written
here the purejaxrl way.

The whole run is one ``jax.jit`` of ``vmap`` over seeds: a scan over env steps, each storing one
transition (uniform random actions before ``learning_starts``, then samples of the tanh-Gaussian
policy) into a buffer that holds the whole run, then, from ``learning_starts`` on
(``lax.cond``: no learning cost before), one update of the twin critics, the actor and the
temperature on a minibatch of 256, and a Polyak update of the target critics. Settings as frl's
SAC defaults: 1 env, Adam 3e-4 (actor) and 1e-3 (critics, temperature), 256x256 ReLU networks,
log-std squashed into [-5, 2], gamma 0.99, tau 0.005, target entropy -|A|, the actor and
temperature updated every step (as frl's SAC).

Runs in its own virtual environment (``requirements/jax.txt``); prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
import optax
from _jax_mlp import init_mlp, relu_mlp
from _result import run_jax

BATCH, LEARNING_STARTS, HIDDEN = 256, 5_000, 256
POLICY_LR, Q_LR, ALPHA_LR, GAMMA, TAU = 3e-4, 1e-3, 1e-3, 0.99, 0.005
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def make_train(total_steps: int):
    env, env_params = gymnax.make("Pendulum-v1")
    space = env.action_space(env_params)
    n_obs, n_act = env.observation_space(env_params).shape[0], 1
    low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    scale, bias = (high - low) / 2.0, (high + low) / 2.0
    target_entropy = -float(n_act)
    tx = {"actor": optax.adam(POLICY_LR), "critic": optax.adam(Q_LR), "log_alpha": optax.adam(ALPHA_LR)}

    def sample_action(actor, obs, key):
        """A tanh-Gaussian sample scaled to the action bounds and its log-probability."""
        out = relu_mlp(actor, obs)
        mean, log_std = out[..., :n_act], jnp.tanh(out[..., n_act:])
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)
        std = jnp.exp(log_std)
        noise = jax.random.normal(key, mean.shape)
        pre = mean + std * noise
        squashed = jnp.tanh(pre)
        log_prob = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
        log_prob = log_prob - jnp.log(scale * (1.0 - squashed**2) + 1e-6)
        return squashed * scale + bias, log_prob.sum(-1)

    def q_values(critics, obs, action):
        x = jnp.concatenate([obs, action], -1)
        return jax.vmap(relu_mlp, in_axes=(0, None))(critics, x)[..., 0]  # [2, B]

    def critic_loss(critic, params, batch, key):
        obs, action, reward, next_obs, done = batch
        next_action, next_log_prob = sample_action(params["actor"], next_obs, key)
        alpha = jnp.exp(params["log_alpha"])
        next_q = q_values(params["target"], next_obs, next_action).min(0) - alpha * next_log_prob
        target = jax.lax.stop_gradient(reward + GAMMA * (1.0 - done) * next_q)
        return ((q_values(critic, obs, action) - target) ** 2).mean(-1).sum()

    def actor_loss(actor, params, obs, key):
        action, log_prob = sample_action(actor, obs, key)
        alpha = jnp.exp(params["log_alpha"])
        q = q_values(params["critic"], obs, action).min(0)
        return (alpha * log_prob - q).mean(), log_prob

    def update(params, opt_state, batch, key):
        k_critic, k_actor = jax.random.split(key)
        grads = jax.grad(critic_loss)(params["critic"], params, batch, k_critic)
        updates, opt_critic = tx["critic"].update(grads, opt_state["critic"])
        critic = optax.apply_updates(params["critic"], updates)
        grads, log_prob = jax.grad(actor_loss, has_aux=True)(params["actor"], params, batch[0], k_actor)
        updates, opt_actor = tx["actor"].update(grads, opt_state["actor"])
        actor = optax.apply_updates(params["actor"], updates)
        entropy_gap = jax.lax.stop_gradient(log_prob + target_entropy).mean()
        grads = jax.grad(lambda log_alpha: -jnp.exp(log_alpha) * entropy_gap)(params["log_alpha"])
        updates, opt_alpha = tx["log_alpha"].update(grads, opt_state["log_alpha"])
        log_alpha = optax.apply_updates(params["log_alpha"], updates)
        target = jax.tree_util.tree_map(lambda t, c: (1.0 - TAU) * t + TAU * c, params["target"], critic)
        params = {"actor": actor, "critic": critic, "target": target, "log_alpha": log_alpha}
        return params, {"actor": opt_actor, "critic": opt_critic, "log_alpha": opt_alpha}

    def train(key):
        key, k_actor, k_critic, k_reset = jax.random.split(key, 4)
        critics = jax.vmap(lambda k: init_mlp(k, [n_obs + n_act, HIDDEN, HIDDEN, 1]))(
            jax.random.split(k_critic, 2)
        )
        params = {
            "actor": init_mlp(k_actor, [n_obs, HIDDEN, HIDDEN, 2 * n_act]),
            "critic": critics,
            "target": critics,
            "log_alpha": jnp.zeros(()),
        }
        opt_state = {name: tx[name].init(params[name]) for name in tx}
        obs, env_state = env.reset(k_reset, env_params)
        buffer = {
            "obs": jnp.zeros((total_steps, n_obs)),
            "action": jnp.zeros((total_steps, n_act)),
            "reward": jnp.zeros(total_steps),
            "next_obs": jnp.zeros((total_steps, n_obs)),
            "done": jnp.zeros(total_steps),
        }
        episodes = (jnp.zeros(()), jnp.zeros(()))  # running return, last return

        def step(carry, _):
            params, opt_state, obs, env_state, buffer, episodes, t, key = carry
            key, k_act, k_random, k_env, k_batch, k_update = jax.random.split(key, 6)
            policy_action, _ = sample_action(params["actor"], obs, k_act)
            random_action = jax.random.uniform(k_random, (n_act,), minval=low, maxval=high)
            action = jnp.where(t < LEARNING_STARTS, random_action, policy_action)
            next_obs, env_state, reward, done, _ = env.step(k_env, env_state, action, env_params)
            # Pendulum only truncates (200 steps): never a terminal flag. At a truncation gymnax
            # returns the reset observation as next_obs (1 transition in 200 bootstraps from it)
            row = {"obs": obs, "action": action, "reward": reward, "next_obs": next_obs, "done": 0.0}
            buffer = {k: buffer[k].at[t].set(v) for k, v in row.items()}
            running = episodes[0] + reward
            episodes = (jnp.where(done, 0.0, running), jnp.where(done, running, episodes[1]))

            def learn(operand):
                params, opt_state = operand
                index = jax.random.randint(k_batch, (BATCH,), 0, t + 1)
                batch = tuple(buffer[k][index] for k in ("obs", "action", "reward", "next_obs", "done"))
                return update(params, opt_state, batch, k_update)

            params, opt_state = jax.lax.cond(
                t + 1 >= LEARNING_STARTS, learn, lambda o: o, (params, opt_state)
            )
            return (params, opt_state, next_obs, env_state, buffer, episodes, t + 1, key), None

        carry = (params, opt_state, obs, env_state, buffer, episodes, jnp.zeros((), jnp.int32), key)
        carry, _ = jax.lax.scan(step, carry, None, total_steps)
        return carry[5][1]

    return train, total_steps


if __name__ == "__main__":
    run_jax(make_train, __doc__)
