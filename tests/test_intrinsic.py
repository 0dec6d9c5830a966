"""frl.intrinsic and the intrinsic losses: running moments equal the moments of all data, RND's
filter equals its loop, rewards and losses equal their formulas, gradients go where they should,
a trained RND predictor finds seen states less novel, and the four variants."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from frl import intrinsic, nn, optim, random
from frl.losses import icm_loss, rnd_loss
from frl.update import make_update
from tests.variants import Case, check, variant_params

OBS, FEAT, ACTIONS = 4, 8, 3
PREDICTOR = nn.MLP((OBS, 32, FEAT), "relu")
TARGET = nn.MLP((OBS, 32, FEAT), "relu")
FEATURE = nn.MLP((OBS, 16, FEAT), "relu")
INVERSE = nn.MLP((2 * FEAT, 16, ACTIONS), "relu")
FORWARD = nn.MLP((FEAT + ACTIONS, 16, FEAT), "relu")


def inverse_apply(p, phi, phi_next):
    return INVERSE.apply(p, torch.cat([phi, phi_next], -1))


def forward_apply(p, phi, action):
    return FORWARD.apply(p, torch.cat([phi, torch.nn.functional.one_hot(action, ACTIONS).to(phi.dtype)], -1))


def _icm_params(seed=0):
    k = random.split(random.key(seed), 3)
    return TensorDict(
        {"feature": FEATURE.init(k[0]), "inverse": INVERSE.init(k[1]), "forward": FORWARD.init(k[2])}, []
    )


def _batch(i=0, n=6):
    g = torch.Generator().manual_seed(i)
    return TensorDict(
        {
            "observation": torch.randn(n, OBS, generator=g),
            "action": torch.randint(0, ACTIONS, (n,), generator=g),
            "next": {"observation": torch.randn(n, OBS, generator=g)},
        },
        batch_size=[n],
    )


def test_moments_merged_batch_by_batch_equal_the_moments_of_all_data():
    data = torch.randn(7, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    m = intrinsic.init_moments((3,), torch.float64)
    for chunk in data.split([2, 1, 4]):
        m = intrinsic.update_moments(m, chunk)
    flat = data.reshape(-1, 3)
    assert float(m["count"]) == 35
    torch.testing.assert_close(m["mean"], flat.mean(0))
    torch.testing.assert_close(m["var"], flat.var(0, correction=0))
    normed = intrinsic.normalize_with(m, flat, clip=None)
    torch.testing.assert_close(normed.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    assert intrinsic.normalize_with(m, torch.full((1, 3), 1e6, dtype=torch.float64)).max() == 5.0


def test_the_forward_filter_is_a_discounted_sum_that_never_resets():
    rewards = torch.arange(1.0, 7.0).reshape(2, 3)
    f, carry = intrinsic.discounted_filter(torch.tensor([10.0, 0.0]), rewards, 0.5)
    torch.testing.assert_close(f, torch.tensor([[6.0, 5.0, 5.5], [4.0, 7.0, 9.5]]))
    f2, _ = intrinsic.discounted_filter(carry, rewards, 0.5)
    torch.testing.assert_close(f2[:, 0], 0.5 * carry + rewards[:, 0])


def test_rnd_reward_and_loss_are_their_formulas_and_the_target_gets_no_gradient():
    pred, targ = PREDICTOR.init(random.key(0)), TARGET.init(random.key(1))
    batch = _batch()
    obs = batch["next", "observation"]
    error = PREDICTOR.apply(pred, obs) - TARGET.apply(targ, obs)
    reward = intrinsic.rnd_reward(pred, targ, obs, predictor_apply=PREDICTOR.apply, target_apply=TARGET.apply)
    torch.testing.assert_close(reward, 0.5 * (error**2).sum(-1))
    kw = dict(predictor_apply=PREDICTOR.apply, target_apply=TARGET.apply)
    loss, metrics = rnd_loss(pred, batch, target_params=targ, **kw)
    torch.testing.assert_close(loss, (error**2).mean())
    torch.testing.assert_close(metrics["intrinsic_reward"], reward.mean())
    # a quarter of the samples, drawn from the key: the loss is their mean
    loss_q, _ = rnd_loss(pred, batch, target_params=targ, update_proportion=0.5, key=random.key(7), **kw)
    mask = random.uniform(random.key(7), (6,)) < 0.5
    torch.testing.assert_close(loss_q, (error**2).mean(-1)[mask].mean())
    grads = torch.func.grad(lambda t: rnd_loss(pred, batch, target_params=t, **kw)[0])(targ)
    assert all((g == 0).all() for g in grads.values(True, True))


def test_a_trained_predictor_finds_seen_observations_less_novel():
    pred, targ = PREDICTOR.init(random.key(0)), TARGET.init(random.key(1))
    seen = torch.randn(64, OBS, generator=torch.Generator().manual_seed(1)) * 0.3 + 1.0
    unseen = torch.randn(64, OBS, generator=torch.Generator().manual_seed(2)) * 0.3 - 1.0
    learner = make_update(
        lambda p, b, key=None: rnd_loss(
            p, b, predictor_apply=PREDICTOR.apply, target_apply=TARGET.apply, target_params=targ
        ),
        optim.adam(3e-3),
    )
    state = learner.init(pred)
    batch = TensorDict({"next": {"observation": seen}}, batch_size=[64])
    kw = dict(predictor_apply=PREDICTOR.apply, target_apply=TARGET.apply)
    before = intrinsic.rnd_reward(pred, targ, seen, **kw).mean()
    for _ in range(300):
        state, _ = learner.step(state, batch)
    after_seen = intrinsic.rnd_reward(state["params"], targ, seen, **kw).mean()
    after_unseen = intrinsic.rnd_reward(state["params"], targ, unseen, **kw).mean()
    assert after_seen < 0.05 * before and after_unseen > 10 * after_seen


def test_icm_loss_is_its_formula_and_the_forward_target_is_stopped():
    params, batch = _icm_params(), _batch(3)
    kw = dict(feature_apply=FEATURE.apply, inverse_apply=inverse_apply, forward_apply=forward_apply)

    def explicit(p, stop):
        phi = FEATURE.apply(p["feature"], batch["observation"])
        phi2 = FEATURE.apply(p["feature"], batch["next", "observation"])
        inv = torch.nn.functional.cross_entropy(inverse_apply(p["inverse"], phi, phi2), batch["action"])
        err = forward_apply(p["forward"], phi, batch["action"]) - (phi2.detach() if stop else phi2)
        return 0.8 * inv + 0.2 * (0.5 * (err**2).sum(-1)).mean()

    loss, metrics = icm_loss(params, batch, beta=0.2, **kw)
    torch.testing.assert_close(loss, explicit(params, True))
    got = torch.func.grad(lambda p: icm_loss(p, batch, beta=0.2, **kw)[0])(params)
    want = torch.func.grad(lambda p: explicit(p, True))(params)
    unstopped = torch.func.grad(lambda p: explicit(p, False))(params)
    for k in want.keys(True, True):
        torch.testing.assert_close(got[k], want[k])
    # stopping the target changes the features' gradient (and only theirs)
    keys = list(want.keys(True, True))
    assert any(not torch.allclose(want[k], unstopped[k]) for k in keys if k[0] == "feature")
    assert all(torch.allclose(want[k], unstopped[k]) for k in keys if k[0] == "inverse")
    reward = intrinsic.icm_reward(
        params,
        batch["observation"],
        batch["action"],
        batch["next", "observation"],
        feature_apply=FEATURE.apply,
        forward_apply=forward_apply,
        eta=2.0,
    )
    phi = FEATURE.apply(params["feature"], batch["observation"])
    err = forward_apply(params["forward"], phi, batch["action"]) - FEATURE.apply(
        params["feature"], batch["next", "observation"]
    )
    torch.testing.assert_close(reward, (err**2).sum(-1))
    assert 0.0 <= float(metrics["inverse_accuracy"]) <= 1.0


def test_count_bonus_counts_the_visits_first():
    counts = torch.tensor([0, 3, 0], dtype=torch.int64)
    bonus, new = intrinsic.count_bonus(counts, torch.tensor([1, 2, 2, 0]), beta=2.0)
    assert new.tolist() == [1, 4, 2]
    torch.testing.assert_close(bonus, torch.tensor([2 / 2, 2 / 2**0.5, 2 / 2**0.5, 2.0]))


def test_bad_input_names_it():
    with pytest.raises(ValueError, match=r"update_moments: `x` must be \[..., \*\[3\]\]"):
        intrinsic.update_moments(intrinsic.init_moments((3,)), torch.zeros(3))
    with pytest.raises(ValueError, match=r"discounted_filter: `carry` must be rewards.shape\[:-1\] = \[2\]"):
        intrinsic.discounted_filter(torch.zeros(3), torch.zeros(2, 4), 0.9)
    with pytest.raises(ValueError, match="`update_proportion` < 1 draws a mask: pass `key`"):
        rnd_loss(
            PREDICTOR.init(random.key(0)),
            _batch(),
            predictor_apply=PREDICTOR.apply,
            target_apply=TARGET.apply,
            target_params=TARGET.init(random.key(1)),
            update_proportion=0.25,
        )
    with pytest.raises(ValueError, match="count_bonus: `states` must be int indices"):
        intrinsic.count_bonus(torch.zeros(3), torch.zeros(2))
    with pytest.raises(KeyError, match="icm_loss: the batch has no `forward`"):
        icm_loss(
            _icm_params().exclude("forward"),
            _batch(),
            feature_apply=FEATURE.apply,
            inverse_apply=inverse_apply,
            forward_apply=forward_apply,
        )


def _rnd_args(i):
    return PREDICTOR.init(random.key(i)), _batch(i), TARGET.init(random.key(100))


def _rnd(pred, batch, targ):
    return rnd_loss(
        pred, batch, predictor_apply=PREDICTOR.apply, target_apply=TARGET.apply, target_params=targ
    )


def _icm(params, batch):
    return icm_loss(
        params, batch, feature_apply=FEATURE.apply, inverse_apply=inverse_apply, forward_apply=forward_apply
    )


def _moments_args(i):
    m = intrinsic.update_moments(
        intrinsic.init_moments((3,)), torch.randn(5, 3, generator=torch.Generator().manual_seed(i))
    )
    return m, torch.randn(4, 3, generator=torch.Generator().manual_seed(10 + i))


def _filter_args(i):
    g = torch.Generator().manual_seed(i)
    return torch.randn(2, generator=g), torch.randn(2, 5, generator=g), torch.tensor(0.9 + 0.01 * i)


CASES = [
    Case("rnd_loss", _rnd, _rnd_args, batched=[True, True, False], grad_argnums=0, rtol=1e-5, atol=1e-6),
    Case("icm_loss", _icm, lambda i: (_icm_params(i), _batch(i)), grad_argnums=0, rtol=1e-5, atol=1e-6),
    Case("update_moments", intrinsic.update_moments, _moments_args, grad_argnums=1, rtol=1e-5, atol=1e-6),
    Case("discounted_filter", intrinsic.discounted_filter, _filter_args, grad_argnums=(0, 1, 2)),
]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
