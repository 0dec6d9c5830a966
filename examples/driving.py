"""Driving on a busy highway: continuous steering and acceleration learned with SAC and PPO.

The ego car (a kinematic bicycle) shares a three-lane ring road with twelve cars that follow
IDM and change lanes by MOBIL. The reward is progress (speed along the road) minus the distance
to the nearest lane centre minus jerk; a collision, or leaving the road, ends the episode. A
hand-tuned controller (PD lane keeping + IDM speed control) sets the bar; SAC and PPO learn, all
seeds in one vmapped run each (SAC with a headway cost added to its training reward), and drive
the same evaluation episodes.

    python examples/driving.py [sac_steps] [ppo_steps] [seeds]
"""

import sys

import frl
from frl import envs, random
from frl.algos import ppo, sac
from frl.envs import highway

ENV_ID = "Highway-v0"


def main(sac_steps: int = 30_000, ppo_steps: int = 200_000, seeds: int = 2, episodes: int = 50) -> dict:
    env = envs.make(ENV_ID)  # 3 lanes, 12 cars, 30 s episodes at 5 steps per second
    returns: dict[str, float] = {}

    def report(name, policy):  # the same evaluation episodes for everyone
        out = highway.rollout_episodes(env, policy, random.key(2026), episodes)
        returns[name] = float(out["return"].mean())
        crashes, speed = int(out["collision"].sum()), float(out["mean_speed"].mean())
        print(
            f"{name:22s} return {returns[name]:6.1f}  collisions {crashes:3d} / {episodes}  {speed:.1f} m/s"
        )

    def of(train, params):  # a trained agent's deterministic policy, on the observations
        return lambda env, physics, p, key: train.policy(params, env.observe(physics))

    # 1. The bar: the hand-tuned controller, and what driving straight at constant speed costs.
    report("hand-tuned controller", highway.hand_tuned)
    report("straight, 25 m/s", lambda env, physics, p, key: physics.new_zeros(physics.shape[0], 2))

    # 2. SAC and PPO (the presets hold their settings: frl train --help). SAC trains on the reward
    #    minus a headway cost (a car in its path inside 1.5 s, one alongside, the road's edge):
    #    the crash penalty alone leaves rare crashes while passing; both are evaluated on the task.
    shaped = envs.make(ENV_ID, headway_weight=3.0, safe_headway=1.5)
    for name, algo, steps, train_env in (("SAC", sac, sac_steps, shaped), ("PPO", ppo, ppo_steps, env)):
        train = algo.make_train(algo.Config.preset(ENV_ID, total_timesteps=steps), env=train_env)
        result = frl.run(train, seeds=seeds, compile=False, progress=False)
        for m in range(seeds):
            report(f"{name}, seed {m}", of(train, result.state["params"][m]))
    return returns


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
