"""highway-env (Leurent 2018, ``pip install highway-env``) through frl's ``gym:`` path: SAC learns
its continuous-action highway with the same agent that drives frl's own ``Highway-v0``.

highway-env is a gymnasium package: its cars are simulated in Python, stepped outside the graph by
TorchRL (``frl.envs.GymEnvironment``), while SAC's update stays frl's pure, vmapped function. Its
default observation is a ``[5, 5]`` table of the nearest vehicles and its default action a
discrete "meta-action", so the id registered below asks for continuous ``[acceleration,
steering]`` and flattens the table into the vector frl's networks read. It uses
``highway-fast-v0`` (highway-env's lighter variant: ~33 environment steps per second here, against
~3 for ``highway-v0``; frl's pure ``Highway-v0`` steps thousands per second, batched).

    pip install highway-env==1.12.1      # in the dev extra
    python examples/highway_env_gym.py [steps] [seeds]
"""

import sys

import gymnasium
from gymnasium.wrappers import FlattenObservation

import frl
from frl import envs
from frl.algos import sac

ENV_ID = "HighwayEnv-Continuous-v0"


def make_highway(**config):
    import highway_env  # noqa: F401  (registers highway-v0)

    return FlattenObservation(
        gymnasium.make("highway-fast-v0", config={"action": {"type": "ContinuousAction"}, **config})
    )


if ENV_ID not in gymnasium.registry:
    gymnasium.register(ENV_ID, entry_point=make_highway)


def main(steps: int = 5_000, seeds: int = 1) -> list[float]:
    # 1. The environment: highway-env's highway, continuous control, a flat observation.
    env = envs.make(f"gym:{ENV_ID}")
    print(f"{ENV_ID}: observation {tuple(env.observation_space.shape)}, action {env.action_space}")

    # 2. SAC with the settings that drive frl's Highway-v0 (64x64 networks, batch 128).
    config = sac.Config(
        env_id=f"gym:{ENV_ID}",
        total_timesteps=steps,
        hidden=(64, 64),
        batch_size=128,
        learning_starts=min(2_000, steps // 2),
    )
    result = frl.run(sac.make_train(config, env), seeds=seeds, compile=False, eval_episodes=5, progress=False)

    # 3. The deterministic policy's return per seed (highway-env's own reward: speed, lane, crash).
    for seed, ret in enumerate(result.eval_returns):
        print(f"seed {seed}: evaluation return {ret:.2f}")
    return result.eval_returns


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
