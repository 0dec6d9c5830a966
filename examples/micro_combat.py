"""Unit micro-control: three marines learn to beat three marines, with MAPPO written out.

The agents control one army on MicroCombat's ``3m`` map (a SMAX-style combat, :mod:`frl.envs.
micro_combat`); the other follows a fixed heuristic (attack the nearest unit in range, else walk
toward it). Each agent sees the units around it and may only take its legal actions (an attack
needs a living enemy in range); the team is rewarded for damage dealt and for winning.

MAPPO, top to bottom from frl's pieces: one actor shared by the agents (its input carries the
agent's identity) samples legal actions from a masked categorical; one critic reads the global
state (:func:`frl.losses.critic_observation`); advantages are GAE on the team reward per agent;
the update is :func:`frl.losses.mappo_loss`. ``frl train mappo --env MicroCombat-3m-v0`` runs the
same algorithm as a complete agent (:mod:`frl.algos.mappo`), with seeds vmapped and compiled.

    python examples/micro_combat.py [iterations]
"""

import sys

import torch
from tensordict import TensorDict

from frl import envs, nn, optim, random
from frl.distributions import MaskedCategorical
from frl.losses import critic_observation, mappo_loss
from frl.returns import gae

NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCHES = 8, 64, 5, 2
GAMMA, LAMBDA, LEARNING_RATE = 0.99, 0.95, 5e-4


def main(iterations: int = 300, seed: int = 0) -> dict[str, float]:
    torch.set_num_threads(1)
    env = envs.make("MicroCombat-3m-v0")
    n = env.n_agents
    dist = MaskedCategorical()

    def with_id(x):  # [..., n, d] -> [..., n, d + n]: each agent's one-hot identity appended
        return torch.cat([x, torch.eye(n).expand(*x.shape[:-2], n, n)], dim=-1)

    # 1. One actor for all agents, one centralised critic of the global state.
    actor = nn.MLP((env.obs_dim + n, 64, 64, env.num_actions), "tanh", output_scale=0.01)
    critic = nn.MLP((env.state_dim + n, 64, 64, 1), "tanh")
    k_actor, k_critic, k_env, key = random.split(random.key(seed), 4)
    params = TensorDict({"actor": actor.init(k_actor), "critic": critic.init(k_critic)}, batch_size=[])
    tx = optim.chain(optim.clip_by_global_norm(0.5), optim.adam(LEARNING_RATE, eps=1e-5))
    opt_state = tx.init(params)

    def policy_apply(p, obs):
        return actor.apply(p, with_id(obs))

    def value_apply(p, critic_input):
        return critic.apply(p, critic_input).squeeze(-1)

    obs, state = env.reset(k_env, num_envs=NUM_ENVS)
    results = {}
    for iteration in range(iterations):
        # 2. Collect NUM_STEPS steps in TorchRL's group layout: agents' entries [E, n, ...].
        steps = []
        for _ in range(NUM_STEPS):
            key, k_act, k_step = random.split(key, 3)
            with torch.no_grad():
                logits = policy_apply(params["actor"], obs["agents"]["observation"])
                action = dist.sample(k_act, (logits, obs["agents"]["action_mask"]))
                log_prob = dist.log_prob((logits, obs["agents"]["action_mask"]), action)
            next_obs, state, reward, terminated, truncated, info = env.step(k_step, state, action)
            final = info["final_observation"]  # the true next observation, also where an episode ended
            steps.append(
                {
                    "agents": {**obs["agents"], "action": action, "action_log_prob": log_prob},
                    "state": obs["state"],
                    "next": {"state": final["state"], "reward": reward, "terminated": terminated},
                    "done": terminated | truncated,
                    "win": info["win"],
                }
            )
            obs = next_obs
        batch = torch.stack([TensorDict(s, batch_size=[NUM_ENVS]) for s in steps], dim=1)  # [E, T]

        # 3. Values of the state now and next, per agent; GAE on the team reward (time is dim -2).
        with torch.no_grad():
            agent_obs = batch["agents", "observation"]
            value = value_apply(params["critic"], critic_observation("state", agent_obs, batch["state"]))
            next_value = value_apply(
                params["critic"], critic_observation("state", agent_obs, batch["next", "state"])
            )

        def per_agent(x, shape=value.shape):  # the team's reward and flags, for every agent
            return x.unsqueeze(-1).expand(shape)

        advantage, target = gae(
            per_agent(batch["next", "reward"]),
            value,
            next_value,
            per_agent(batch["next", "terminated"]),
            per_agent(batch["done"]),
            gamma=GAMMA,
            lmbda=LAMBDA,
            time_dim=-2,
        )
        batch["agents", "advantage"], batch["agents", "value_target"] = advantage, target

        # 4. EPOCHS x MINIBATCHES steps of the MAPPO loss over (sample, agent).
        flat = batch.reshape(-1)
        for _ in range(EPOCHS):
            key, k_perm = random.split(key)
            for index in random.permutation(k_perm, flat.shape[0]).chunk(MINIBATCHES):

                def loss(p, minibatch=flat[index]):
                    return mappo_loss(
                        p["actor"],
                        p["critic"],
                        minibatch,
                        policy_apply=policy_apply,
                        value_apply=value_apply,
                        dist=dist,
                        critic_input="state",
                        entropy_coef=0.01,
                    )

                grads, metrics = torch.func.grad(loss, has_aux=True)(params)
                updates, opt_state = tx.update(grads, opt_state, params)
                params = optim.apply_updates(params, updates)

        done = batch["done"]
        results = {
            "win_rate": float(batch["win"].sum() / done.sum().clamp(min=1)),
            "episodes": int(done.sum()),
            "loss": float(metrics["loss"]),
        }
        if iteration % 20 == 0 or iteration == iterations - 1:
            episodes, wins = results["episodes"], results["win_rate"]
            print(f"iteration {iteration:4d}  episodes {episodes:3d}  win rate {wins:.2f}")
    return results


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
