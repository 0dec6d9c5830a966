"""The CleanRL-style peer: single-file PyTorch PPO on gymnasium CartPole-v1, written here after
CleanRL's ``ppo.py`` (same settings as every peer: 4 envs x 128 steps, 4 epochs x 4 minibatches,
Adam 2.5e-4 annealed with eps 1e-5, clip 0.2, entropy 0.01, value 0.5 clipped, norm 0.5).

One seed per process, as CleanRL runs; prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from _result import emit
from torch import nn
from torch.distributions import Categorical

NUM_ENVS, NUM_STEPS, EPOCHS, MINIBATCHES = 4, 128, 4, 4
LR, GAMMA, LAMBDA, CLIP, ENT, VF, MAX_NORM = 2.5e-4, 0.99, 0.95, 0.2, 0.01, 0.5, 0.5


def layer(n_in: int, n_out: int, gain: float = 2**0.5) -> nn.Linear:
    linear = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(linear.weight, gain)
    nn.init.zeros_(linear.bias)
    return linear


def tower(n_in: int, n_out: int, gain: float) -> nn.Sequential:
    return nn.Sequential(layer(n_in, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, n_out, gain))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(NUM_ENVS)])
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    n_obs, n_act = envs.single_observation_space.shape[0], envs.single_action_space.n
    actor, critic = tower(n_obs, n_act, 0.01), tower(n_obs, 1, 1.0)
    params = [*actor.parameters(), *critic.parameters()]
    optimizer = torch.optim.Adam(params, lr=LR, eps=1e-5)
    iterations = args.steps // (NUM_ENVS * NUM_STEPS)
    batch, minibatch = NUM_ENVS * NUM_STEPS, NUM_ENVS * NUM_STEPS // MINIBATCHES
    obs_buf = torch.zeros(NUM_STEPS, NUM_ENVS, n_obs)
    act_buf = torch.zeros(NUM_STEPS, NUM_ENVS, dtype=torch.long)
    logp_buf, rew_buf, done_buf, val_buf = (torch.zeros(NUM_STEPS, NUM_ENVS) for _ in range(4))
    obs, _ = envs.reset(seed=args.seed)
    obs, done = torch.as_tensor(obs, dtype=torch.float32), torch.zeros(NUM_ENVS)
    returns: list[float] = []
    for iteration in range(iterations):
        optimizer.param_groups[0]["lr"] = LR * (1.0 - iteration / iterations)
        for t in range(NUM_STEPS):
            obs_buf[t], done_buf[t] = obs, done
            with torch.no_grad():
                dist = Categorical(logits=actor(obs))
                action = dist.sample()
                logp_buf[t], val_buf[t] = dist.log_prob(action), critic(obs).squeeze(-1)
            act_buf[t] = action
            obs_np, reward, terminated, truncated, info = envs.step(action.numpy())
            rew_buf[t] = torch.as_tensor(reward, dtype=torch.float32)
            obs = torch.as_tensor(obs_np, dtype=torch.float32)
            done = torch.as_tensor(np.logical_or(terminated, truncated), dtype=torch.float32)
            if "episode" in info:
                returns.extend(info["episode"]["r"][info["_episode"]].tolist())
        with torch.no_grad():  # GAE, CleanRL's way (done flags of the next step)
            next_value = critic(obs).squeeze(-1)
            adv, last = torch.zeros(NUM_STEPS, NUM_ENVS), torch.zeros(NUM_ENVS)
            for t in reversed(range(NUM_STEPS)):
                not_done = 1.0 - (done if t == NUM_STEPS - 1 else done_buf[t + 1])
                value_next = next_value if t == NUM_STEPS - 1 else val_buf[t + 1]
                delta = rew_buf[t] + GAMMA * value_next * not_done - val_buf[t]
                adv[t] = last = delta + GAMMA * LAMBDA * not_done * last
            target = adv + val_buf
        b_obs, b_act, b_logp = obs_buf.reshape(batch, n_obs), act_buf.reshape(batch), logp_buf.reshape(batch)
        b_adv, b_target, b_val = adv.reshape(batch), target.reshape(batch), val_buf.reshape(batch)
        for _ in range(EPOCHS):
            for idx in torch.randperm(batch).split(minibatch):
                dist = Categorical(logits=actor(b_obs[idx]))
                ratio = (dist.log_prob(b_act[idx]) - b_logp[idx]).exp()
                mb_adv = (b_adv[idx] - b_adv[idx].mean()) / (b_adv[idx].std() + 1e-8)
                pg = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - CLIP, 1 + CLIP)).mean()
                value = critic(b_obs[idx]).squeeze(-1)
                clipped = b_val[idx] + (value - b_val[idx]).clamp(-CLIP, CLIP)
                v_loss = 0.5 * torch.max((value - b_target[idx]) ** 2, (clipped - b_target[idx]) ** 2).mean()
                loss = pg - ENT * dist.entropy().mean() + VF * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, MAX_NORM)
                optimizer.step()
    wall = time.perf_counter() - start
    steps = iterations * batch
    emit(
        "cleanrl",
        ("torch", "gymnasium"),
        seeds=1,
        steps_per_seed=steps,
        run_s=wall,
        wall_s=wall,
        returns=returns,
    )


if __name__ == "__main__":
    main()
