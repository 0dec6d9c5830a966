"""frl's PPO loss and gradient vs purejaxrl's loss written in JAX, on the same params and batch.

The reference is purejaxrl's ``_loss_fn`` (``ppo.py``/``ppo_continuous_action.py``): distrax
``Categorical`` / ``MultivariateNormalDiag`` policies, the clipped value loss
``0.5 * max((V - R)^2, (V_old + clip(V - V_old, -e, e) - R)^2)``, ratio clipping and
``total = actor + vf_coef * value - ent_coef * entropy``, on an actor-critic with tanh layers
whose params are frl's, converted with ``to_flax``. One convention differs: purejaxrl
standardises advantages with the population std (``jnp.std``, ddof 0), CleanRL and frl with the
unbiased one; the reference takes ``ddof`` as a parameter and each side is checked both ways.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from frl import distributions, nn, random
from frl.losses import ppo_loss
from frl.losses.ppo import normalize
from tests.jax_helpers import import_or_skip

jax = import_or_skip("jax")
jnp = jax.numpy
distrax = import_or_skip("distrax")
fj = import_or_skip("frl.interop.jax")
pytestmark = pytest.mark.jax

CLIP, VF, ENT = 0.2, 0.5, 0.01
B, OBS = 64, 4


def mlp(tree, x, final_activation=False):
    """A stack of flax Dense layers (``x @ kernel + bias``) with tanh between them."""
    names = sorted(tree, key=lambda k: int(k.split("_")[1]))
    for i, name in enumerate(names):
        x = x @ tree[name]["kernel"] + tree[name]["bias"]
        if i < len(names) - 1 or final_activation:
            x = jnp.tanh(x)
    return x


def purejaxrl_loss(tree, batch, continuous, ddof):
    obs = batch["observation"]
    if continuous:
        actor = tree["actor"]
        h = mlp(actor["torso"], obs, final_activation=True)
        mean = h @ actor["mean"]["kernel"] + actor["mean"]["bias"]
        pi = distrax.MultivariateNormalDiag(mean, jnp.exp(actor["log_std"]))
    else:
        pi = distrax.Categorical(logits=mlp(tree["actor"], obs))
    value = mlp(tree["critic"], obs)[..., 0]
    log_prob = pi.log_prob(batch["action"])

    value_pred_clipped = batch["state_value"] + jnp.clip(value - batch["state_value"], -CLIP, CLIP)
    value_losses = jnp.square(value - batch["value_target"])
    value_losses_clipped = jnp.square(value_pred_clipped - batch["value_target"])
    value_loss = 0.5 * jnp.maximum(value_losses, value_losses_clipped).mean()

    ratio = jnp.exp(log_prob - batch["action_log_prob"])
    gae = batch["advantage"]
    gae = (gae - gae.mean()) / (gae.std(ddof=ddof) + 1e-8)
    loss_actor = -jnp.minimum(ratio * gae, jnp.clip(ratio, 1.0 - CLIP, 1.0 + CLIP) * gae).mean()
    entropy = pi.entropy().mean()
    return loss_actor + VF * value_loss - ENT * entropy


def setup(continuous: bool):
    keys = random.split(random.key(11), 8)
    if continuous:
        actor = nn.GaussianPolicy(OBS, 2, log_std_init=-0.3)
        dist = distributions.DiagGaussian()
    else:
        actor = nn.CategoricalPolicy(OBS, 3)
        dist = distributions.Categorical()
    critic = nn.ValueNetwork(OBS)
    params = {"actor": actor.init(keys[0]), "critic": critic.init(keys[1])}
    params = TensorDict(params, batch_size=[])
    obs = random.normal(keys[2], (B, OBS))
    dist_params = actor.apply(params["actor"], obs)
    action = dist.sample(keys[3], dist_params)
    # an older policy: the current log-probs shifted, so ratios spread across the clip range
    old_log_prob = dist.log_prob(dist_params, action).detach() + 0.3 * random.normal(keys[4], (B,))
    state_value = critic.apply(params["critic"], obs).detach() + 0.3 * random.normal(keys[5], (B,))
    batch = TensorDict(
        {
            "observation": obs,
            "action": action,
            "action_log_prob": old_log_prob,
            "advantage": random.normal(keys[6], (B,)) * 2.0 + 0.5,
            "value_target": random.normal(keys[7], (B,)),
            "state_value": state_value,
        },
        batch_size=[B],
    )
    return params, batch, actor, critic, dist


@pytest.mark.parametrize("continuous", [False, True], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("ddof", [0, 1], ids=["population-std", "unbiased-std"])
def test_ppo_loss_and_gradient_match_purejaxrl(continuous, ddof):
    params, batch, actor, critic, dist = setup(continuous)
    jbatch = fj.to_jax(batch, downcast=True)  # int64 actions -> int32 (JAX runs without x64)
    if ddof == 0:  # purejaxrl's convention: normalise outside frl's loss, switch frl's off
        adv = batch["advantage"]
        batch = batch.clone()
        batch["advantage"] = (adv - adv.mean()) / (adv.std(correction=0) + 1e-8)
        normalize_advantage = False
    else:
        normalize_advantage = True

    def frl_loss(p):
        return ppo_loss(
            p["actor"],
            p["critic"],
            batch,
            policy_apply=actor.apply,
            value_apply=critic.apply,
            dist=dist,
            clip_eps=CLIP,
            value_clip_eps=CLIP,
            entropy_coef=ENT,
            value_coef=VF,
            normalize_advantage=normalize_advantage,
        )[0]

    grads, loss = torch.func.grad_and_value(frl_loss)(params)
    tree = fj.to_flax(params, wrap=False)
    jloss, jgrads = jax.value_and_grad(purejaxrl_loss)(tree, jbatch, continuous, ddof)

    log_prob = dist.log_prob(actor.apply(params["actor"], batch["observation"]), batch["action"])
    ratio = torch.exp(log_prob - batch["action_log_prob"])
    assert ((ratio - 1).abs() > CLIP).float().mean() > 0.2  # the clipped branch is exercised
    assert abs(loss.item() - float(jloss)) <= 1e-6 * max(1.0, abs(loss.item()))
    back = fj.from_flax(jgrads)
    worst = max((grads[k] - back[k]).abs().max().item() for k in grads.keys(True, True))
    assert worst <= 1e-6, worst


def test_normalize_is_unbiased_like_cleanrl():
    x = torch.tensor([1.0, 2.0, 4.0, 9.0])
    expected = (x - x.mean()) / (x.std(correction=1) + 1e-8)
    torch.testing.assert_close(normalize(x), expected, rtol=0, atol=0)
