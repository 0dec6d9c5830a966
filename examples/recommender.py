"""A recommender that learns from user feedback (RecSim's interest-evolution model).

Users click trashy videos more and watch them away from their time budget; nutritious videos
are clicked less and extend the session. The myopic recommender (highest click probability)
wins on click-through and loses on watch time; a slate policy trained for the whole session
(PPO, Plackett-Luce over per-candidate scores) learns the difference. Then the same policy is
learned without any online step, from sessions a stochastic greedy recommender logged (clipped
importance weights), and fine-tuned online from there.

    python examples/recommender.py [steps] [seeds]
"""

import sys

import frl
from frl import envs, random
from frl.algos import ppo
from frl.algos.logged import pretrain_from_logs, starting_from
from frl.envs import recsim

ENV_ID = "RecSim-InterestEvolution-v0"


def main(steps: int = 100_000, seeds: int = 4, sessions: int = 300) -> dict[str, float]:
    env = envs.make(ENV_ID)  # 20 candidates, slates of 3, 10 topics (7 trashy), latent interests
    watch: dict[str, float] = {}

    def report(name, policy):  # whole sessions side by side, with the same users for everyone
        out = recsim.rollout_sessions(env, policy, random.key(123), sessions)
        watch[name], ctr, length = (float(out[k].double().mean()) for k in ("watch_time", "ctr", "length"))
        print(
            f"{name:28s} watch {watch[name]:6.1f} min   click-through {ctr:.3f}   session {length:5.1f} steps"
        )

    def of(train, params):  # a trained agent's deterministic slate policy, on the observations
        return lambda env, physics, p, key: train.policy(params, env.observe(physics))

    # 1. The baselines: what a random, a myopic and an all-knowing recommender achieve.
    report("random", recsim.random_slate)
    report("greedy (click probability)", recsim.greedy_slate)
    report("quality oracle", recsim.quality_slate)

    # 2. PPO trained online for whole sessions, all seeds in one vmapped run.
    train = ppo.make_train(ppo.Config.preset(ENV_ID, total_timesteps=steps))
    result = frl.run(train, seeds=seeds, compile=False, progress=False)
    for m in range(seeds):
        report(f"PPO, seed {m}", of(train, result.state["params"][m]))

    # 3. Learning from logged feedback: the logger's sessions with its propensities, no online step.
    logger = recsim.softmax_greedy(temperature=0.5)
    logs = recsim.log_sessions(env, logger, random.key(7), 500)
    # (an entropy bonus keeps the learned policy soft enough to go on exploring online)
    params, _ = pretrain_from_logs(
        train, logs, key=random.key(8), max_importance_weight=10.0, entropy_coef=2.0
    )
    report("logger (softmax greedy)", logger)
    report("learned from the logs", of(train, params))

    # 4. ... and fine-tuned online from there.
    tuned = frl.run(starting_from(train, params), seeds=1, compile=False, progress=False)
    report("logs, then fine-tuned", of(train, tuned.state["params"][0]))
    return watch


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
