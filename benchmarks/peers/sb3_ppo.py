"""The Stable-Baselines3 peer: SB3's ``PPO`` on CartPole-v1 with the settings every peer uses
(4 envs x 128 steps, 4 epochs of minibatches of 128, Adam 2.5e-4 annealed with eps 1e-5, clip 0.2,
entropy 0.01, value 0.5, norm 0.5, separate 64x64 tanh actor and critic, orthogonal init).

One seed per process; runs in its own virtual environment (``requirements/sb3.txt``); prints one
``RESULT {json}`` line.
"""

from __future__ import annotations

import torch
from _result import run_sb3
from stable_baselines3.common.env_util import make_vec_env

if __name__ == "__main__":
    run_sb3(
        "PPO",
        lambda seed: make_vec_env("CartPole-v1", n_envs=4, seed=seed),
        __doc__,
        n_steps=128,
        batch_size=128,
        n_epochs=4,
        learning_rate=lambda remaining: 2.5e-4 * remaining,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        clip_range_vf=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs={
            "net_arch": {"pi": [64, 64], "vf": [64, 64]},
            "activation_fn": torch.nn.Tanh,
            "optimizer_kwargs": {"eps": 1e-5},
        },
    )
