"""frl.llm.rl: PPO-KL, GRPO and RLOO against the formulas written out by hand, four variants."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

import frl
from frl import random
from frl.llm import rl

B, N, V = 6, 5, 7


def make_batch(key):
    k = random.split(key, 8)
    lengths = torch.tensor([5, 3, 4, 1, 5, 2])
    mask = torch.arange(N)[None, :] < lengths[:, None]
    tokens = random.randint(k[0], (B, N), 0, V)
    old = torch.log_softmax(random.normal(k[1], (B, N, V)), -1).gather(-1, tokens[..., None]).squeeze(-1)
    return TensorDict(
        {
            "tokens": tokens,
            "mask": mask,
            "old_log_prob": old,
            "ref_log_prob": old + 0.2 * random.normal(k[2], (B, N)),
            "advantage": random.normal(k[3], (B, N)),
            "value_target": random.normal(k[4], (B, N)),
            "state_value": random.normal(k[5], (B, N)),
            "seq_advantage": random.normal(k[6], (B,)),
        },
        batch_size=[B],
    )


def params_for(key):
    return TensorDict(
        {"logits": random.normal(key, (B, N, V)), "values": random.normal(random.fold_in(key, 1), (B, N))}, []
    )


def log_prob_fn(params, batch):
    logp = torch.log_softmax(params["logits"], -1).gather(-1, batch["tokens"][..., None]).squeeze(-1)
    return logp, params["values"]


def test_kl_penalized_rewards_and_token_advantages_by_hand():
    batch = make_batch(random.key(0))
    mask = batch["mask"]
    reward = torch.arange(B, dtype=torch.float32)
    logp, ref = batch["old_log_prob"], batch["ref_log_prob"]
    r = rl.kl_penalized_rewards(reward, logp, ref, mask, 0.1)
    values = batch["state_value"]
    adv, target = rl.token_advantages(r, values, mask, gamma=0.9, lmbda=0.8, whiten_advantages=False)
    for i in range(B):
        n = int(mask[i].sum())
        expected_r = [
            -0.1 * float(logp[i, t] - ref[i, t]) + (float(reward[i]) if t == n - 1 else 0.0) for t in range(n)
        ]
        torch.testing.assert_close(r[i, :n], torch.tensor(expected_r), rtol=1e-5, atol=1e-6)
        assert (r[i, n:] == 0).all() and (adv[i, n:] == 0).all()
        running = 0.0
        for t in reversed(range(n)):
            next_v = float(values[i, t + 1]) if t + 1 < n else 0.0
            delta = expected_r[t] + 0.9 * next_v - float(values[i, t])
            running = delta + 0.9 * 0.8 * running
            assert adv[i, t].item() == pytest.approx(running, abs=1e-5)
            assert target[i, t].item() == pytest.approx(running + float(values[i, t]), abs=1e-5)
    white = rl.whiten(adv, mask)
    assert abs(rl.masked_mean(white, mask).item()) < 1e-5
    assert rl.masked_mean(white**2, mask).item() == pytest.approx(1.0, abs=1e-3)


def test_ppo_kl_loss_by_hand():
    batch, params = make_batch(random.key(1)), params_for(random.key(2))
    loss, metrics = rl.ppo_kl_loss(
        params, batch, log_prob_fn=log_prob_fn, clip_eps=0.2, value_clip_eps=0.3, value_coef=0.1
    )
    logp, value = log_prob_fn(params, batch)
    pol, val, count = 0.0, 0.0, 0
    for i in range(B):
        for t in range(N):
            if not batch["mask"][i, t]:
                continue
            ratio = math.exp(float(logp[i, t] - batch["old_log_prob"][i, t]))
            a = float(batch["advantage"][i, t])
            pol += min(ratio * a, min(max(ratio, 0.8), 1.2) * a)
            v, v_old, ret = (
                float(value[i, t]),
                float(batch["state_value"][i, t]),
                float(batch["value_target"][i, t]),
            )
            clipped = v_old + min(max(v - v_old, -0.3), 0.3)
            val += max((v - ret) ** 2, (clipped - ret) ** 2)
            count += 1
    expected = -pol / count + 0.1 * 0.5 * val / count
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert 0 < metrics["clip_fraction"] < 1


def test_grpo_loss_and_group_advantages_by_hand():
    batch, params = make_batch(random.key(3)), params_for(random.key(4))
    rewards = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 2.0]])
    adv = rl.group_advantages(rewards)
    for g in range(2):
        mean = sum(rewards[g].tolist()) / 3
        std = math.sqrt(sum((x - mean) ** 2 for x in rewards[g].tolist()) / 2)
        torch.testing.assert_close(adv[g], (rewards[g] - mean) / (std + 1e-4))
    batch["advantage"] = adv.reshape(-1)
    loss, metrics = rl.grpo_loss(params, batch, log_prob_fn=log_prob_fn, clip_eps=0.2, kl_coef=0.05)
    logp, _ = log_prob_fn(params, batch)
    total = 0.0
    for i in range(B):
        terms = []
        for t in range(N):
            if not batch["mask"][i, t]:
                continue
            ratio = math.exp(float(logp[i, t] - batch["old_log_prob"][i, t]))
            a = float(batch["advantage"][i])
            d = float(batch["ref_log_prob"][i, t] - logp[i, t])
            kl = math.exp(d) - d - 1
            terms.append(min(ratio * a, min(max(ratio, 0.8), 1.2) * a) - 0.05 * kl)
        total += sum(terms) / len(terms)
    assert loss.item() == pytest.approx(-total / B, rel=1e-5)
    assert metrics["kl"] >= 0


def test_rloo_loss_and_leave_one_out_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 2.0], [3.0, 3.0, 0.0]])
    adv = rl.leave_one_out_advantages(rewards)
    for g in range(2):
        for i in range(3):
            others = [rewards[g, j].item() for j in range(3) if j != i]
            assert adv[g, i].item() == pytest.approx(rewards[g, i].item() - sum(others) / 2)
    batch, params = make_batch(random.key(5)), params_for(random.key(6))
    batch["advantage"] = adv.reshape(-1)
    loss, _ = rl.rloo_loss(params, batch, log_prob_fn=log_prob_fn)
    logp, _ = log_prob_fn(params, batch)
    expected = (
        -sum(float(batch["advantage"][i]) * float((logp[i] * batch["mask"][i]).sum()) for i in range(B)) / B
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        rl.leave_one_out_advantages(torch.ones(3, 1))


LOSSES = {
    "ppo_kl": lambda p, b: rl.ppo_kl_loss(p, b, log_prob_fn=log_prob_fn)[0],
    "grpo": lambda p, b: rl.grpo_loss(p, b.set("advantage", b["seq_advantage"]), log_prob_fn=log_prob_fn)[0],
    "rloo": lambda p, b: rl.rloo_loss(p, b.set("advantage", b["seq_advantage"]), log_prob_fn=log_prob_fn)[0],
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_vmap_over_seeds_and_grad(name):
    fn = LOSSES[name]
    keys = random.split(random.key(7), 3)
    batches = torch.stack([make_batch(k) for k in keys])
    params = torch.stack([params_for(random.fold_in(k, 3)) for k in keys])
    vmapped = torch.func.vmap(fn)(params, batches)
    alone = torch.stack([fn(params[i], batches[i].clone()) for i in range(3)])
    torch.testing.assert_close(vmapped, alone, rtol=1e-5, atol=1e-6)
    grads = torch.func.grad(fn)(params[0], batches[0].clone())
    assert grads["logits"].abs().sum() > 0
    # finite differences on one logit
    eps = 1e-3
    bumped = params[0].clone()
    bumped["logits"] = bumped["logits"].clone()
    bumped["logits"][0, 0, int(batches[0]["tokens"][0, 0])] += eps
    numeric = (fn(bumped, batches[0].clone()) - fn(params[0], batches[0].clone())) / eps
    assert grads["logits"][0, 0, int(batches[0]["tokens"][0, 0])].item() == pytest.approx(
        numeric.item(), abs=2e-3
    )


@pytest.mark.compile
def test_losses_compile():
    batch, params = make_batch(random.key(8)), params_for(random.key(9))
    batch["advantage"] = batch["seq_advantage"]

    def both(p, b):
        return rl.grpo_loss(p, b, log_prob_fn=log_prob_fn)[0] + rl.rloo_loss(p, b, log_prob_fn=log_prob_fn)[0]

    compiled = frl.compile(torch.func.grad_and_value(both))
    g, value = compiled(params, batch)
    g_eager, v_eager = torch.func.grad_and_value(both)(params, batch)
    torch.testing.assert_close(value, v_eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g["logits"], g_eager["logits"], rtol=1e-4, atol=1e-6)
