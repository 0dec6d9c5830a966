"""frl.losses: hand-computed targets, gradient routing, loss-specific semantics, errors, the four
variants and vmap over 8 seeds. TorchRL parity is in ``test_losses_torchrl.py``."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from tensordict import TensorDict

import frl.random as fr
from frl import distributions as D
from frl import losses
from frl.tree import global_norm
from tests import loss_setup as S
from tests.variants import Case, check, variant_params


def tabular_q(params: TensorDict, obs: torch.Tensor) -> torch.Tensor:
    """Q-table lookup with one-hot observations: ``obs @ W``."""
    return obs @ params["w"]


def one_hot_batch(states, actions, next_states, rewards, terminated, truncated) -> TensorDict:
    eye = torch.eye(3)
    terminated, truncated = torch.tensor(terminated), torch.tensor(truncated)
    return TensorDict(
        {
            "observation": eye[list(states)],
            "action": torch.tensor(actions),
            "next": {
                "observation": eye[list(next_states)],
                "reward": torch.tensor(rewards),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        batch_size=[len(states)],
    )


# --------------------------------------------------------------------------------------
# DQN
# --------------------------------------------------------------------------------------


def test_dqn_targets_by_hand():
    online = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.5, 0.5]])
    target = torch.tensor([[10.0, 20.0], [30.0, 40.0], [0.0, 0.0]])
    params = TensorDict({"online": {"w": online}, "target": {"w": target}})
    batch = one_hot_batch(
        [0, 0, 0], [1, 0, 1], [1, 1, 1], [1.0, 1.0, 1.0], [False, True, False], [False, False, True]
    )
    _, q, y = losses.dqn_td_error(params["online"], params["target"], batch, q_apply=tabular_q, gamma=0.5)
    torch.testing.assert_close(q, torch.tensor([2.0, 1.0, 2.0]))
    # max target Q at s'=1 is 40; terminated -> no bootstrap; truncated -> bootstraps
    torch.testing.assert_close(y, torch.tensor([21.0, 1.0, 21.0]))
    # double DQN: the online net picks argmax Q(s'=1) = action 0, evaluated by the target: 30
    _, _, y_double = losses.dqn_td_error(
        params["online"], params["target"], batch, q_apply=tabular_q, gamma=0.5, double=True
    )
    torch.testing.assert_close(y_double, torch.tensor([16.0, 1.0, 16.0]))
    # n-step transitions discount by gamma ** steps_to_next_obs
    batch["steps_to_next_obs"] = torch.tensor([3, 1, 2])
    _, _, y_n = losses.dqn_td_error(params["online"], params["target"], batch, q_apply=tabular_q, gamma=0.5)
    torch.testing.assert_close(y_n, torch.tensor([1 + 40 / 8, 1.0, 1 + 40 / 4]))
    loss, metrics = losses.dqn_loss(
        params["online"], params["target"], batch.exclude("steps_to_next_obs"), q_apply=tabular_q, gamma=0.5
    )
    torch.testing.assert_close(loss, torch.tensor((19.0**2 + 0.0 + 19.0**2) / 3))
    huber, _ = losses.dqn_loss(
        params["online"],
        params["target"],
        batch.exclude("steps_to_next_obs"),
        q_apply=tabular_q,
        gamma=0.5,
        loss="huber",
    )
    torch.testing.assert_close(huber, torch.tensor((18.5 + 0.0 + 18.5) / 3))
    assert float(metrics["td_error"]) == pytest.approx(38 / 3)
    batch["_weight"] = torch.tensor([1.0, 1.0, 0.0])
    weighted, _ = losses.dqn_loss(
        params["online"], params["target"], batch.exclude("steps_to_next_obs"), q_apply=tabular_q, gamma=0.5
    )
    torch.testing.assert_close(weighted, torch.tensor(19.0**2 / 3))


@pytest.mark.parametrize("double", [False, True])
def test_target_networks_get_no_gradient(double):
    grads = torch.func.grad(lambda p: S.DQN(p, S.transitions(0), double=double)[0])(S.dqn_params(0))
    assert float(global_norm(grads["target"])) == 0.0
    assert float(global_norm(grads["online"])) > 0.0
    grads = torch.func.grad(lambda p: S.SAC(p, S.transitions(0, continuous=True), key=fr.key(0))[0])(
        S.sac_params(0)
    )
    assert float(global_norm(grads["target_critic"])) == 0.0
    grads = torch.func.grad(lambda p: S.SOFT_Q(p, S.transitions(0))[0])(S.dqn_params(0))
    assert float(global_norm(grads["target"])) == 0.0


# --------------------------------------------------------------------------------------
# PPO
# --------------------------------------------------------------------------------------


def test_ppo_clipping_and_metrics():
    params, batch = S.actor_critic_params(0), S.on_policy(0)
    logits = S.POLICY.apply(params["actor"], batch["observation"])
    log_prob = D.Categorical().log_prob(logits, batch["action"])
    # old policy == current policy: ratio 1, no clipping, no KL
    same = batch.clone()
    same["action_log_prob"] = log_prob.detach()
    _, m = S.PPO(params, same, normalize_advantage=False)
    assert float(m["approx_kl"]) == pytest.approx(0.0, abs=1e-7)
    assert float(m["clip_fraction"]) == 0.0
    assert float(m["policy_loss"]) == pytest.approx(-float(same["advantage"].mean()), abs=1e-6)
    # ratio e^1 beyond 1 + eps with positive advantages: the clipped branch has no policy gradient
    far = same.clone()
    far["action_log_prob"] = log_prob.detach() - 1.0
    far["advantage"] = far["advantage"].abs()
    grads = torch.func.grad(lambda p: S.PPO(p, far, normalize_advantage=False, value_coef=0.0)[0])(params)
    assert float(global_norm(grads["actor"])) == 0.0
    _, m = S.PPO(params, far, normalize_advantage=False)
    assert float(m["clip_fraction"]) == 1.0
    assert float(m["approx_kl"]) == pytest.approx(float(torch.e - 2.0), rel=1e-5)


def test_ppo_value_loss_clipping_normalisation_and_explained_variance():
    params, batch = S.actor_critic_params(1), S.on_policy(1)
    value = S.VALUE.apply(params["critic"], batch["observation"]).detach()
    target = batch["value_target"]
    _, m = S.PPO(params, batch)
    assert float(m["value_loss"]) == pytest.approx(float(0.5 * ((value - target) ** 2).mean()), rel=1e-6)
    clipped_value = batch["state_value"] + (value - batch["state_value"]).clamp(-0.1, 0.1)
    expected = 0.5 * torch.maximum((value - target) ** 2, (clipped_value - target) ** 2).mean()
    _, m = S.PPO(params, batch, value_clip_eps=0.1)
    assert float(m["value_loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(losses.explained_variance(target, target)) == pytest.approx(1.0)
    assert float(
        losses.explained_variance(torch.full_like(target, float(target.mean())), target)
    ) == pytest.approx(0.0, abs=1e-6)
    normalized = losses.normalize(batch["advantage"])
    assert abs(float(normalized.mean())) < 1e-6 and float(normalized.std()) == pytest.approx(1.0, rel=1e-5)
    # normalize_advantage=True equals passing normalised advantages
    manual = batch.clone()
    manual["advantage"] = normalized
    torch.testing.assert_close(S.PPO(params, batch)[0], S.PPO(params, manual, normalize_advantage=False)[0])


def test_ppo_entropy_bonus_and_continuous_policy():
    params, batch = S.actor_critic_params(2, continuous=True), S.on_policy(2, continuous=True)
    loss0, m = S.PPO_CONTINUOUS(params, batch, entropy_coef=0.0)
    loss1, _ = S.PPO_CONTINUOUS(params, batch, entropy_coef=0.1)
    torch.testing.assert_close(loss0 - loss1, 0.1 * m["entropy"])
    # a free log-std of -0.3 in 2 dims: H = 2 (-0.3 + (1 + log 2 pi) / 2)
    assert float(m["entropy"]) == pytest.approx(
        2 * (-0.3 + 0.5 * (1 + torch.log(torch.tensor(2 * torch.pi)).item())), rel=1e-5
    )


# --------------------------------------------------------------------------------------
# SAC
# --------------------------------------------------------------------------------------


def test_sac_gradients_equal_the_three_objectives_written_out():
    params, batch = S.sac_params(0), S.transitions(0, continuous=True)
    noise = (fr.normal(fr.key(1), (S.BATCH, S.ACT_DIM)), fr.normal(fr.key(2), (S.BATCH, S.ACT_DIM)))
    total = torch.func.grad(lambda p: S.SAC(p, batch, noise=noise)[0])(params)
    assert float(global_norm(total["target_critic"])) == 0.0

    obs, action, next_obs = batch["observation"], batch["action"], batch["next", "observation"]
    reward, not_term = batch["next", "reward"], 1.0 - batch["next", "terminated"].float()
    alpha = params["log_alpha"].exp()
    tanh = D.TanhGaussian()
    critics = lambda c, o, a: torch.stack([S.CRITIC.apply(c[i], o, a) for i in range(2)])
    next_action, next_logp = tanh.sample_and_log_prob_from_noise(
        S.SAC_ACTOR.apply(params["actor"], next_obs), noise[0]
    )
    y = reward + 0.99 * not_term * (
        critics(params["target_critic"], next_obs, next_action).min(0).values - alpha * next_logp
    )

    def critic_objective(c):
        return ((critics(c, obs, action) - y) ** 2).mean(-1).sum()

    def actor_objective(actor):
        a, logp = tanh.sample_and_log_prob_from_noise(S.SAC_ACTOR.apply(actor, obs), noise[1])
        return (alpha * logp - critics(params["critic"], obs, a).min(0).values).mean()

    def alpha_objective(log_alpha):
        _, logp = tanh.sample_and_log_prob_from_noise(S.SAC_ACTOR.apply(params["actor"], obs), noise[1])
        return -(log_alpha * (logp + -2.0)).mean()

    for name, objective in (("critic", critic_objective), ("actor", actor_objective)):
        expected = torch.func.grad(objective)(params[name])
        for k in expected.keys(True, True):
            torch.testing.assert_close(total[name].get(k), expected.get(k), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total["log_alpha"], torch.func.grad(alpha_objective)(params["log_alpha"]))


def test_discrete_sac_gradients_equal_the_objectives_written_out():
    params, batch = S.sac_params(0, discrete=True), S.transitions(0)
    total = torch.func.grad(lambda p: S.DISCRETE_SAC(p, batch)[0])(params)
    obs, action, next_obs = batch["observation"], batch["action"], batch["next", "observation"]
    alpha = params["log_alpha"].exp()
    critics = lambda c, o: torch.stack([S.DISCRETE_CRITIC.apply(c[i], o) for i in range(2)])
    next_logp = torch.log_softmax(S.POLICY.apply(params["actor"], next_obs), -1)
    soft_v = (
        next_logp.exp() * (critics(params["target_critic"], next_obs).min(0).values - alpha * next_logp)
    ).sum(-1)
    y = batch["next", "reward"] + 0.99 * (1.0 - batch["next", "terminated"].float()) * soft_v

    def critic_objective(c):
        q = critics(c, obs).gather(-1, action.expand(2, -1).unsqueeze(-1)).squeeze(-1)
        return ((q - y) ** 2).mean(-1).sum()

    def actor_objective(actor):
        logp = torch.log_softmax(S.POLICY.apply(actor, obs), -1)
        return (logp.exp() * (alpha * logp - critics(params["critic"], obs).min(0).values)).sum(-1).mean()

    for name, objective in (("critic", critic_objective), ("actor", actor_objective)):
        expected = torch.func.grad(objective)(params[name])
        for k in expected.keys(True, True):
            torch.testing.assert_close(total[name].get(k), expected.get(k), rtol=1e-5, atol=1e-6)
    assert float(global_norm(total["target_critic"])) == 0.0


def test_sac_alpha_gradient_and_redq():
    params, batch = S.sac_params(1), S.transitions(1, continuous=True)
    noise = (fr.normal(fr.key(1), (S.BATCH, S.ACT_DIM)), fr.normal(fr.key(2), (S.BATCH, S.ACT_DIM)))
    _, m = S.SAC(params, batch, noise=noise)
    g = torch.func.grad(lambda p: S.SAC(p, batch, noise=noise)[0])(params)["log_alpha"]
    # d/dlog_alpha of -mean(log_alpha (log pi + target_entropy)) = entropy - target_entropy
    assert float(g) == pytest.approx(float(m["entropy"]) - (-2.0), rel=1e-5)
    torch.testing.assert_close(S.SAC(params, batch, key=fr.key(3))[0], S.SAC(params, batch, key=fr.key(3))[0])
    assert not torch.equal(S.SAC(params, batch, key=fr.key(3))[0], S.SAC(params, batch, key=fr.key(4))[0])
    ten = S.sac_params(1, critics=10)
    loss, m = S.SAC(ten, batch, key=fr.key(3), target_subset=2)
    assert torch.isfinite(loss) and m["q"].dim() == 0
    with pytest.raises(ValueError, match="`key`"):
        S.SAC(ten, batch, noise=noise, target_subset=2)


@pytest.mark.parametrize("discrete", [False, True])
def test_sac_critic_loss_weights_each_sample_by_its_replay_weight(discrete):
    """``_weight`` (prioritized replay) scales each sample's squared TD error of every critic;
    the actor and temperature losses are unweighted."""
    params = S.sac_params(2, discrete=discrete)
    batch = S.transitions(2, continuous=not discrete)
    noise = (fr.normal(fr.key(1), (S.BATCH, S.ACT_DIM)), fr.normal(fr.key(2), (S.BATCH, S.ACT_DIM)))
    call = (lambda b: S.DISCRETE_SAC(params, b)) if discrete else (lambda b: S.SAC(params, b, noise=noise))
    _, plain = call(batch)
    w = fr.uniform(fr.key(5), (S.BATCH,), minval=0.1, maxval=2.0)
    _, weighted = call(batch.clone().set("_weight", w))
    _, ones = call(batch.clone().set("_weight", torch.ones(S.BATCH)))
    torch.testing.assert_close(ones["critic_loss"], plain["critic_loss"])
    for name in ("actor_loss", "alpha_loss"):
        torch.testing.assert_close(weighted[name], plain[name])
    # by hand: the critic loss is linear in the weights, so w = 2 doubles it
    _, doubled = call(batch.clone().set("_weight", torch.full((S.BATCH,), 2.0)))
    torch.testing.assert_close(doubled["critic_loss"], 2 * plain["critic_loss"])
    assert not torch.allclose(weighted["critic_loss"], plain["critic_loss"])


# --------------------------------------------------------------------------------------
# REINFORCE and soft Q-learning
# --------------------------------------------------------------------------------------


def test_reinforce_gradient_is_the_score_function_estimate():
    params, batch = S.actor_critic_params(3), S.on_policy(3)
    obs, action, g = batch["observation"], batch["action"], batch["value_target"]
    baseline = S.VALUE.apply(params["critic"], obs).detach()

    def expected(actor):
        logp = D.Categorical().log_prob(S.POLICY.apply(actor, obs), action)
        return -(logp * (g - baseline)).mean()

    ours = torch.func.grad(lambda p: S.REINFORCE(p, batch)[0])(params)["actor"]
    ref = torch.func.grad(expected)(params["actor"])
    for k in ref.keys(True, True):
        torch.testing.assert_close(ours.get(k), ref.get(k))
    _, m = losses.reinforce_loss(
        params["actor"],
        None,
        batch,
        policy_apply=S.POLICY.apply,
        dist=D.Categorical(),
        normalize_returns=True,
    )
    assert float(m["value_loss"]) == 0.0 and abs(float(m["return"])) < 1e-6


def test_off_policy_reinforce_weights_by_the_clipped_importance_ratio():
    """With ``max_importance_weight = c`` the gradient is ``-mean(min(pi / mu, c) grad log pi (G -
    b))`` by hand; when the behaviour is the policy itself (mu = pi) it equals on-policy REINFORCE."""
    params, batch = S.actor_critic_params(3), S.on_policy(3)
    obs, action, g = batch["observation"], batch["action"], batch["value_target"]
    baseline = S.VALUE.apply(params["critic"], obs).detach()
    logp_now = D.Categorical().log_prob(S.POLICY.apply(params["actor"], obs), action).detach()
    behaviour = logp_now + torch.linspace(-2.0, 2.0, logp_now.shape[0])  # ratios e^2 .. e^-2
    off = batch.clone().set("action_log_prob", behaviour)
    c = 3.0

    def loss(p, data, weight=c):
        return losses.reinforce_loss(
            p["actor"],
            p["critic"],
            data,
            policy_apply=S.POLICY.apply,
            dist=D.Categorical(),
            value_apply=S.VALUE.apply,
            max_importance_weight=weight,
        )

    def expected(actor):
        logp = D.Categorical().log_prob(S.POLICY.apply(actor, obs), action)
        w = torch.clamp(torch.exp(logp_now - behaviour), max=c)
        return -(w * logp * (g - baseline)).mean()

    ours = torch.func.grad(lambda p: loss(p, off)[0])(params)["actor"]
    ref = torch.func.grad(expected)(params["actor"])
    for k in ref.keys(True, True):
        torch.testing.assert_close(ours.get(k), ref.get(k))
    _, metrics = loss(params, off)
    weights = torch.clamp(torch.exp(logp_now - behaviour), max=c)
    assert float(weights.max()) == c and float(metrics["importance_weight"]) == pytest.approx(
        float(weights.mean())
    )
    on = torch.func.grad(lambda p: S.REINFORCE(p, batch)[0])(params)["actor"]
    same = torch.func.grad(lambda p: loss(p, batch.clone().set("action_log_prob", logp_now), 1e9)[0])(params)
    for k in on.keys(True, True):
        torch.testing.assert_close(same["actor"].get(k), on.get(k))
    with pytest.raises(KeyError, match="the batch has no `action_log_prob`"):
        loss(params, batch.exclude("action_log_prob"))
    # the entropy bonus: L(entropy_coef = 0.3) = L(0) - 0.3 mean(H)
    plain, m = S.REINFORCE(params, batch)
    bonus, _ = losses.reinforce_loss(
        params["actor"],
        params["critic"],
        batch,
        policy_apply=S.POLICY.apply,
        dist=D.Categorical(),
        value_apply=S.VALUE.apply,
        entropy_coef=0.3,
    )
    torch.testing.assert_close(bonus, plain - 0.3 * m["entropy"])


def soft_value_iteration(P, R, gamma, alpha, iters=2000):
    """Soft-optimal Q for a tabular MDP: Q = R + gamma P V, V = alpha logsumexp(Q / alpha)."""
    q = torch.zeros_like(R)
    for _ in range(iters):
        v = alpha * torch.logsumexp(q / alpha, dim=-1)
        q = R + gamma * torch.einsum("sat,t->sa", P, v)
    return q


def test_soft_q_learning_converges_to_the_soft_value_iteration_fixed_point():
    # a hand-built 3-state, 2-action MDP with stochastic transitions (no terminal states)
    P = torch.tensor(
        [
            [[0.9, 0.1, 0.0], [0.1, 0.0, 0.9]],
            [[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]],
            [[0.0, 0.3, 0.7], [1.0, 0.0, 0.0]],
        ],
        dtype=torch.float64,
    )
    R = torch.tensor([[0.0, 1.0], [0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    gamma, alpha = 0.8, 0.5
    q_star = soft_value_iteration(P, R, gamma, alpha)
    # expected-update soft Q-learning: every (s, a) with its full next-state distribution,
    # the target network refreshed each step (the tabular case of soft_q_loss)
    eye = torch.eye(3, dtype=torch.float64)
    s, a, s2 = torch.meshgrid(torch.arange(3), torch.arange(2), torch.arange(3), indexing="ij")
    s, a, s2 = s.flatten(), a.flatten(), s2.flatten()
    weight = P[s, a, s2] * 6  # each (s, a) has total weight 1 over its 3 next states
    batch = TensorDict(
        {
            "observation": eye[s],
            "action": a,
            "_weight": weight,
            "next": {
                "observation": eye[s2],
                "reward": R[s, a],
                "terminated": torch.zeros(18, dtype=torch.bool),
            },
        },
        batch_size=[18],
    )
    w = torch.zeros(3, 2, dtype=torch.float64)
    for _ in range(400):
        params = TensorDict({"online": {"w": w}, "target": {"w": w}})
        grad = torch.func.grad(
            lambda p: losses.soft_q_loss(
                p["online"], p["target"], batch, q_apply=tabular_q, gamma=gamma, alpha=alpha
            )[0]
        )(params)
        w = w - 1.5 * grad["online", "w"]  # mean over 18 rows: lr 1.5 is a full step per (s, a)
    torch.testing.assert_close(w, q_star, rtol=1e-8, atol=1e-8)
    assert float(losses.soft_value(q_star, 1e-4)[0]) == pytest.approx(float(q_star[0].max()), abs=1e-3)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda: S.DQN(S.dqn_params(0), S.transitions(0).exclude(("next", "reward"))),
            KeyError,
            "next.reward",
        ),
        (
            lambda: S.DQN(S.dqn_params(0), S.transitions(0).set(("next", "reward"), torch.zeros(S.BATCH, 1))),
            ValueError,
            "squeeze_trailing",
        ),
        (
            lambda: S.DQN(
                S.dqn_params(0), S.transitions(0).set("action", torch.zeros(S.BATCH, 1, dtype=torch.int64))
            ),
            ValueError,
            "one-hot",
        ),
        (lambda: S.DQN(S.dqn_params(0), S.transitions(0), loss="l1"), ValueError, "`loss`"),
        (lambda: S.PPO(S.actor_critic_params(0), S.on_policy(0).exclude("advantage")), KeyError, "advantage"),
        (
            lambda: S.PPO(
                S.actor_critic_params(0), S.on_policy(0).exclude("state_value"), value_clip_eps=0.2
            ),
            KeyError,
            "state_value",
        ),
        (lambda: S.SAC(S.sac_params(0), S.transitions(0, continuous=True)), ValueError, "`key`"),
        (lambda: S.SOFT_Q(S.dqn_params(0), S.transitions(0), alpha=0.0), ValueError, "`alpha`"),
        (lambda: S.DQN(S.dqn_params(0), {"observation": torch.zeros(3)}), TypeError, "TensorDict"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _torchrl_style(batch: TensorDict) -> TensorDict:
    """Every per-sample scalar as TorchRL keeps it: ``[B, 1]``."""
    out = batch.clone()
    for key in losses.PER_SAMPLE:
        if key in out.keys(include_nested=True):
            out.set(key, out.get(key).unsqueeze(-1))
    return out


def test_squeeze_trailing_adapts_torchrl_batches():
    batch = S.transitions(0)
    torch.testing.assert_close(
        S.DQN(S.dqn_params(0), losses.squeeze_trailing(_torchrl_style(batch)))[0],
        S.DQN(S.dqn_params(0), batch)[0],
    )
    # the on-policy keys TorchRL's GAE writes as [B, 1] too: following the hint fixes them all
    on_policy = S.on_policy(0)
    theirs = _torchrl_style(on_policy)
    with pytest.raises(ValueError, match="squeeze_trailing"):
        S.PPO(S.actor_critic_params(0), theirs, value_clip_eps=0.2)
    ours = S.PPO(S.actor_critic_params(0), losses.squeeze_trailing(theirs), value_clip_eps=0.2)[0]
    torch.testing.assert_close(ours, S.PPO(S.actor_critic_params(0), on_policy, value_clip_eps=0.2)[0])


def test_a_value_function_returning_b_by_1_is_named_not_the_batch():
    """A user's critic that returns ``[B, 1]``: the error names the function, not squeeze_trailing."""

    def value_b1(params, obs):
        return S.VALUE.apply(params, obs).unsqueeze(-1)

    params, batch = S.actor_critic_params(0), S.on_policy(0)
    for loss in (losses.ppo_loss, losses.reinforce_loss):
        kwargs = dict(policy_apply=S.POLICY.apply, value_apply=value_b1, dist=D.Categorical())
        with pytest.raises(ValueError, match=r"`value_apply` must return one value per sample") as err:
            loss(params["actor"], params["critic"], batch, **kwargs)
        assert "squeeze_trailing" not in str(err.value) and ".squeeze(-1)" in str(err.value)


# --------------------------------------------------------------------------------------
# Four variants, with vmap over 8 seeds (params, batches and keys all differ per seed)
# --------------------------------------------------------------------------------------

SEEDS = 8
CASES = [
    Case("dqn", partial(S.DQN, double=True, loss="huber"), lambda i: (S.dqn_params(i), S.transitions(i))),
    Case(
        "ppo",
        partial(S.PPO, value_clip_eps=0.2, entropy_coef=0.01),
        lambda i: (S.actor_critic_params(i), S.on_policy(i)),
    ),
    Case(
        "ppo_continuous",
        S.PPO_CONTINUOUS,
        lambda i: (S.actor_critic_params(i, continuous=True), S.on_policy(i, continuous=True)),
    ),
    Case(
        "sac",
        lambda p, b, k: S.SAC(p, b, key=k),
        lambda i: (S.sac_params(i), S.transitions(i, continuous=True), fr.key(i)),
    ),
    Case(
        "sac_redq",
        lambda p, b, k: S.SAC(p, b, key=k, target_subset=2),
        lambda i: (S.sac_params(i, critics=5), S.transitions(i, continuous=True), fr.key(i)),
    ),
    Case("discrete_sac", S.DISCRETE_SAC, lambda i: (S.sac_params(i, discrete=True), S.transitions(i))),
    Case(
        "reinforce",
        partial(S.REINFORCE, normalize_returns=True),
        lambda i: (S.actor_critic_params(i), S.on_policy(i)),
    ),
    Case("soft_q", S.SOFT_Q, lambda i: (S.dqn_params(i), S.transitions(i))),
]
for _case in CASES:
    _case.batch_size = SEEDS
    _case.grad_argnums = 0
    _case.rtol = _case.atol = 1e-5
    _case.compile_rtol = _case.compile_atol = 1e-4


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
