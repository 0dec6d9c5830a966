"""PPO in torch on an environment that lives in JAX: gymnax CartPole through frl.interop.jax.

The environment is gymnax's (``reset_env``/``step_env`` jitted and vmapped by JAX); the learner
is frl's (pure networks, ``ppo_loss``, GAE, Adam), in torch. ``GymnaxEnv`` turns the JAX
functions into torch operators, so observations, states and actions cross through DLPack and
the rollout loop below is an ordinary torch loop. Random keys are shared: the environment draws
exactly what ``jax.random`` would from the same key.

    python examples/jax_env_torch_learner.py [--total-timesteps 100000] [--num-envs 4] [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from tensordict import TensorDict

import frl
from frl import nn, optim, random
from frl.distributions import Categorical
from frl.interop.jax import GymnaxEnv
from frl.losses import bind, ppo_loss
from frl.returns import gae
from frl.update import make_update


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1", help="a gymnax id with discrete actions")
    parser.add_argument("--total-timesteps", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2.5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="compile the minibatch update")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    # ENVIRONMENT: gymnax in JAX, stepped from torch
    env = GymnaxEnv(args.env)
    if not env.discrete:
        raise SystemExit(f"{env.id} has continuous actions; this example's policy is categorical")
    obs_dim, num_actions = env.observation_space.shape[0], env.action_space.n
    E, T = args.num_envs, args.num_steps
    iterations = args.total_timesteps // (E * T)

    # AGENT: pure networks, the PPO loss, Adam with a global-norm clip
    actor = nn.CategoricalPolicy(obs_dim, num_actions)
    critic = nn.ValueNetwork(obs_dim)
    dist = Categorical()
    key = random.key(args.seed)
    key, k_actor, k_critic, k_env = random.split(key, 4)
    params = TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])
    loss_fn = bind(
        ppo_loss,
        "actor",
        "critic",
        policy_apply=actor.apply,
        value_apply=critic.apply,
        dist=dist,
        clip_eps=0.2,
        value_clip_eps=0.2,
        entropy_coef=0.01,
        value_coef=0.5,
    )
    update = make_update(loss_fn, optim.chain(optim.clip_by_global_norm(0.5), optim.adam(args.lr)))
    learner = update.init(params)
    update_step = frl.compile(update.step) if args.compile else update.step

    @torch.no_grad()
    def act(actor_params, obs, k):
        logits = actor.apply(actor_params, obs)
        action = dist.sample(k, logits)
        return action, dist.log_prob(logits, action)

    # ROLLOUT AND UPDATE
    obs, env_state = env.reset(k_env, num_envs=E)
    episode_return = torch.zeros(E)
    finished: list[float] = []
    start = time.time()
    for iteration in range(iterations):
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("obs", "action", "log_prob", "reward")}
        rows.update(terminated=[], done=[], final_obs=[])
        for _ in range(T):
            key, k_act, k_step = random.split(key, 3)
            action, log_prob = act(learner["params", "actor"], obs, k_act)
            next_obs, env_state, reward, terminated, truncated, info = env.step(k_step, env_state, action)
            done = terminated | truncated
            for name, value in zip(
                rows, (obs, action, log_prob, reward, terminated, done, info["final_observation"])
            ):
                rows[name].append(value)
            episode_return += reward
            finished.extend(episode_return[done].tolist())
            episode_return = torch.where(done, torch.zeros_like(episode_return), episode_return)
            obs = next_obs
        traj = {k: torch.stack(v, dim=1) for k, v in rows.items()}  # [E, T, ...]

        # advantages: a truncated step bootstraps from its true final observation
        with torch.no_grad():
            value = critic.apply(learner["params", "critic"], traj["obs"])
            next_value = critic.apply(learner["params", "critic"], traj["final_obs"])
        advantage, target = gae(
            traj["reward"], value, next_value, traj["terminated"], traj["done"], gamma=0.99, lmbda=0.95
        )
        batch = TensorDict(
            {
                "observation": traj["obs"],
                "action": traj["action"],
                "action_log_prob": traj["log_prob"],
                "advantage": advantage,
                "value_target": target,
                "state_value": value,
            },
            batch_size=[E, T],
        ).reshape(-1)
        size = E * T // args.minibatches
        for _ in range(args.epochs):
            key, k_perm = random.split(key)
            order = random.permutation(k_perm, E * T)
            for m in range(args.minibatches):
                learner, metrics = update_step(learner, batch[order[m * size : (m + 1) * size]])
        if (iteration + 1) % max(1, iterations // 10) == 0 or iteration == iterations - 1:
            recent = finished[-20:]
            mean = sum(recent) / max(1, len(recent))
            steps = (iteration + 1) * E * T
            print(
                f"step {steps:>7,}  return (last 20 episodes) {mean:6.1f}  "
                f"loss {float(metrics['loss']):7.4f}  {steps / (time.time() - start):6.0f} steps/s"
            )
    recent = finished[-20:]
    return sum(recent) / max(1, len(recent))


if __name__ == "__main__":
    main()
