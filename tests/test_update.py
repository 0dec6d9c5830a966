"""frl.update.make_update: target updates, optimizer scope, metrics, checkpoints, vmap and compile."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import frl
import frl.random as fr
from frl import optim
from frl.tree import global_norm
from frl.update import make_update
from tests import loss_setup as S


def dqn_update(**kw):
    return make_update(S.DQN, optim.adam(1e-3), targets={"target": "online"}, **kw)


def test_periodic_target_copy_and_step_count():
    update = dqn_update(target_period=3)
    state = update.init(S.dqn_params(0))
    assert ("scale_by_adam", "count") in set(state["opt_state"].keys(True, True))
    assert "target" not in list(state["opt_state", "scale_by_adam", "mu"].keys())  # targets: not optimised
    initial_target = state["params", "target"].clone()
    for step in range(1, 7):
        state, _ = update.step(state, S.transitions(step), None)
        assert int(state["step"]) == step
        copied = (state["params", "target"] == state["params", "online"]).all()
        if step % 3 == 0:
            assert copied
        else:
            assert not copied
        if step < 3:
            assert (state["params", "target"] == initial_target).all()


def test_polyak_target_and_grad_norm_metric():
    update = dqn_update(tau=0.1)
    params = S.dqn_params(1)
    state = update.init(params)
    batch = S.transitions(1)
    new_state, metrics = update.step(state, batch, None)
    grads = torch.func.grad(lambda p: S.DQN(p, batch)[0])(params)
    torch.testing.assert_close(metrics["grad_norm"], global_norm(grads["online"]))
    expected = optim.polyak(params["target"], new_state["params", "online"], 0.1)
    assert (new_state["params", "target"] == expected).all()
    # tau is a hyper-parameter in the state
    state = state.clone()
    state["hyperparams", "tau"] = torch.tensor(1.0, dtype=torch.float64)
    copied, _ = update.step(state, batch, None)
    assert (copied["params", "target"] == copied["params", "online"]).all()
    assert set(metrics.keys()) == {"loss", "td_error", "q", "target", "grad_norm"}


def test_sac_update_with_partitioned_learning_rates_learns_params_not_targets():
    tx = optim.partition(actor=optim.adam(3e-4), critic=optim.adam(1e-3), log_alpha=optim.adam(1e-3))
    update = make_update(S.SAC, tx, targets={"target_critic": "critic"}, tau=0.005)
    params = S.sac_params(0)
    state = update.init(params)
    state, metrics = update.step(state, S.transitions(0, continuous=True), fr.key(0))
    for k in ("actor", "critic", "log_alpha"):
        before, after = params[k], state["params", k]
        moved = not bool((before == after).all()) if k != "log_alpha" else float(before) != float(after)
        assert moved, k
    # Adam's first step moves every parameter by about its learning rate
    step = (state["params", "actor", "mean", "weight"] - params["actor", "mean", "weight"]).abs().max()
    assert float(step) == pytest.approx(3e-4, rel=1e-2)
    assert {"critic_loss", "actor_loss", "alpha_loss", "grad_norm"} <= set(metrics.keys())


def test_checkpoint_round_trip(tmp_path):
    update = dqn_update(target_period=2)
    state = update.init(S.dqn_params(0))
    state, _ = update.step(state, S.transitions(0), None)
    path = tmp_path / "state.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=False)
    assert (loaded == state).all()
    a, _ = update.step(state, S.transitions(1), None)
    b, _ = update.step(loaded, S.transitions(1), None)
    assert (a == b).all()


def test_vmapped_update_over_seeds_equals_a_loop():
    update = dqn_update(tau=0.05)
    seeds = 4
    states = torch.stack([update.init(S.dqn_params(i)) for i in range(seeds)])
    batches = torch.stack([S.transitions(i) for i in range(seeds)])
    keys = torch.stack([fr.key(i) for i in range(seeds)])
    batched, metrics = torch.func.vmap(update.step)(states, batches, keys)
    for i in range(seeds):
        alone, m = update.step(update.init(S.dqn_params(i)), S.transitions(i), keys[i])
        for k in alone.keys(True, True):
            torch.testing.assert_close(batched[i].get(k), alone.get(k), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(metrics["loss"][i], m["loss"], rtol=1e-5, atol=1e-6)


@pytest.mark.compile
def test_compiled_update_equals_eager():
    update = make_update(
        partial(S.SAC, target_subset=None), optim.adam(1e-3), targets={"target_critic": "critic"}, tau=0.005
    )
    state = update.init(S.sac_params(2))
    batch, key = S.transitions(2, continuous=True), fr.key(2)
    torch._dynamo.reset()
    compiled = frl.compile(update.step)
    got, got_metrics = compiled(state, batch, key)
    want, want_metrics = update.step(state, batch, key)
    for k in want.keys(True, True):
        torch.testing.assert_close(got.get(k), want.get(k), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_metrics["loss"], want_metrics["loss"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(targets={"target": "online"}), ValueError, "exactly one"),
        (dict(targets={"target": "online"}, tau=0.1, target_period=5), ValueError, "exactly one"),
        (dict(tau=0.1), ValueError, "`targets`"),
        (dict(targets={"target": "online"}, target_period=0), ValueError, "`target_period`"),
        (dict(targets={"target": "online"}, tau=2.0), ValueError, "`tau`"),
    ],
)
def test_bad_configuration_raises(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_update(S.DQN, optim.adam(1e-3), **kwargs)


def test_bad_params_raise():
    with pytest.raises(KeyError, match="targets"):
        make_update(S.DQN, optim.adam(1e-3), targets={"tgt": "online"}, tau=0.1).init(S.dqn_params(0))
    with pytest.raises(KeyError, match="partition"):
        optim.partition(actor=optim.adam(1e-3)).init(S.sac_params(0))


def test_plain_autograd_path_equals_functorch_grad():
    """Eagerly, make_update differentiates with torch.autograd (2x faster on small nets); under a
    transform it uses torch.func.grad. Both give the same gradient and the same metrics."""
    from frl._autodiff import grad_with_aux

    params, batch = S.sac_params(3), S.transitions(3, continuous=True)
    fn = lambda p: S.SAC(p, batch, key=fr.key(3))
    fast, fast_metrics = grad_with_aux(fn, params)
    reference, ref_metrics = torch.func.grad(fn, has_aux=True)(params)
    assert set(fast.keys(True, True)) == set(reference.keys(True, True))
    for k in reference.keys(True, True):
        torch.testing.assert_close(fast.get(k), reference.get(k), rtol=1e-6, atol=1e-7)
    assert (fast_metrics == ref_metrics).all()
    assert float(global_norm(fast["target_critic"])) == 0.0  # unused leaves get zeros, as func.grad
