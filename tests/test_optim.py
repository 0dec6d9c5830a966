"""frl.optim: parity with torch.optim over 200 steps on an MLP, vmapped members, hyper-parameters
as tensors (no recompiles), schedules, target updates, errors and the four variants."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from tensordict import TensorDict

import frl
import frl.random as fr
from frl import nn, optim
from tests.variants import Case, check, variant_params

STEPS = 200


def make_problem(dtype: torch.dtype):
    """A 3-layer tanh MLP regression (torch module + frl params) with unfittable noisy targets."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g, dtype=dtype)
    y = torch.randn(256, 1, generator=g, dtype=dtype)
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(6, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 1),
    ).to(dtype)
    return module, x, y


# (frl optimizer, torch.optim optimizer) pairs with the same hyper-parameters. AdamW uses
# lr * weight_decay = 2**-14 so that torch's float32 `1 - lr * weight_decay` is exact (with the
# default 1e-3 * 1e-2, torch itself rounds the per-step decay by 6e-3 relative in float32).
PAIRS: dict[str, tuple[Callable[[], optim.GradientTransformation], Callable]] = {
    "adam": (lambda: optim.adam(1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
    "adam_betas": (
        lambda: optim.adam(3e-3, b1=0.8, b2=0.99, eps=1e-6),
        lambda p: torch.optim.Adam(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
    ),
    "adamw": (
        lambda: optim.adamw(2**-10, weight_decay=2**-4),
        lambda p: torch.optim.AdamW(p, lr=2**-10, weight_decay=2**-4),
    ),
    "sgd": (lambda: optim.sgd(1e-2), lambda p: torch.optim.SGD(p, lr=1e-2)),
    "sgd_momentum": (
        lambda: optim.sgd(1e-2, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
    ),
    "sgd_nesterov_wd": (
        lambda: optim.sgd(1e-2, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, nesterov=True, weight_decay=1e-3),
    ),
    "rmsprop": (lambda: optim.rmsprop(1e-3), lambda p: torch.optim.RMSprop(p, lr=1e-3)),
    "rmsprop_centered_momentum": (
        lambda: optim.rmsprop(1e-3, centered=True, momentum=0.9),
        lambda p: torch.optim.RMSprop(p, lr=1e-3, centered=True, momentum=0.9),
    ),
}


def relative_error(params: TensorDict, module: torch.nn.Module) -> float:
    """max over leaves of max|frl - torch| / max|torch|."""
    reference, _ = nn.from_module(module)
    return max(
        float((params.get(k) - reference.get(k)).abs().max() / reference.get(k).abs().max())
        for k in reference.keys(True, True)
    )


@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_torch_optim_float64_closed_loop(name):
    """Both optimizers train the same MLP for 200 steps, each on its own gradients: float64
    shows the update rules are the same to rounding."""
    make_frl, make_torch = PAIRS[name]
    module, x, y = make_problem(torch.float64)
    params, net = nn.from_module(module)
    reference = make_torch(module.parameters())
    tx = make_frl()
    state = tx.init(params)
    loss = lambda p: ((net.apply(p, x) - y) ** 2).mean()
    for _ in range(STEPS):
        updates, state = tx.update(torch.func.grad(loss)(params), state, params)
        params = optim.apply_updates(params, updates)
        reference.zero_grad()
        ((module(x) - y) ** 2).mean().backward()
        reference.step()
    assert relative_error(params, module) <= 1e-8


# AdamW in float32: torch decays with a separate `p *= 1 - lr * wd` (an extra rounding of p per
# step) where frl folds the decay into the update (optax's chain); run against torch.optim in
# float64, both float32 runs land 9e-7 from it, in different directions, 1.4e-6 apart.
FLOAT32_TOLERANCE = {"adamw": 2e-6}


@pytest.mark.parametrize("name", list(PAIRS))
def test_matches_torch_optim_float32(name):
    """float32: torch.optim trains the MLP; frl replays the same 200 gradients; parameters agree
    to 1e-6 relative after every step (AdamW: see FLOAT32_TOLERANCE)."""
    make_frl, make_torch = PAIRS[name]
    module, x, y = make_problem(torch.float32)
    params, _ = nn.from_module(module)
    reference = make_torch(module.parameters())
    tx = make_frl()
    state = tx.init(params)
    worst = 0.0
    for _ in range(STEPS):
        reference.zero_grad()
        ((module(x) - y) ** 2).mean().backward()
        grads = TensorDict({n: p.grad.clone() for n, p in module.named_parameters()}).unflatten_keys(".")
        reference.step()
        updates, state = tx.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        worst = max(worst, relative_error(params, module))
    tolerance = FLOAT32_TOLERANCE.get(name, 1e-6)
    assert worst <= tolerance, f"{name}: worst relative error {worst:.2e}"


def test_vmapped_members_equal_separate_runs():
    net = nn.MLP((6, 16, 16, 1), activation="tanh")
    tx = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-2))
    members = 16
    params = nn.ensemble_init(net.init, fr.key(0), members)
    xs = fr.normal(fr.key(1), (members, 32, 6))
    ys = fr.normal(fr.key(2), (members, 32))

    def step(p, s, x, y):
        g = torch.func.grad(lambda q: ((net.apply(q, x).squeeze(-1) - y) ** 2).mean())(p)
        u, s = tx.update(g, s, p)
        return optim.apply_updates(p, u), s

    batched_p, batched_s = params, torch.func.vmap(tx.init)(params)
    for _ in range(20):
        batched_p, batched_s = torch.func.vmap(step)(batched_p, batched_s, xs, ys)
    for i in range(members):
        p, s = params[i], tx.init(params[i])
        for _ in range(20):
            p, s = step(p, s, xs[i], ys[i])
        for k in p.keys(True, True):
            torch.testing.assert_close(batched_p[i].get(k), p.get(k), rtol=1e-5, atol=1e-6)
        assert int(batched_s[i]["adam", "scale_by_adam", "count"]) == 20


def test_vmap_over_learning_rates_equals_runs_with_each_rate():
    net = nn.MLP((3, 8, 1))
    params = net.init(fr.key(0))
    x, y = fr.normal(fr.key(1), (16, 3)), fr.normal(fr.key(2), (16,))
    loss = lambda p: ((net.apply(p, x).squeeze(-1) - y) ** 2).mean()
    tx = optim.adam(1e-3)
    rates = torch.tensor([1e-1, 1e-2, 1e-3, 1e-4], dtype=torch.float64)
    states = optim.set_hyperparams(
        torch.func.vmap(tx.init, randomness="error")(nn.stack([params] * 4)), learning_rate=rates
    )

    def step(p, s):
        u, s = tx.update(torch.func.grad(loss)(p), s, p)
        return optim.apply_updates(p, u), s

    ps = nn.stack([params] * 4)
    for _ in range(5):
        ps, states = torch.func.vmap(step)(ps, states)
    for i, lr in enumerate(rates.tolist()):
        single = optim.adam(lr)
        p, s = params, single.init(params)
        for _ in range(5):
            u, s = single.update(torch.func.grad(loss)(p), s, p)
            p = optim.apply_updates(p, u)
        torch.testing.assert_close(ps[i]["0", "weight"], p["0", "weight"])


@pytest.mark.compile
def test_changing_the_learning_rate_never_recompiles():
    net = nn.MLP((3, 8, 1))
    params = net.init(fr.key(0))
    x, y = fr.normal(fr.key(1), (16, 3)), fr.normal(fr.key(2), (16,))
    tx = optim.adam(1e-3)

    def step(p, s):
        g = torch.func.grad(lambda q: ((net.apply(q, x).squeeze(-1) - y) ** 2).mean())(p)
        u, s = tx.update(g, s, p)
        return optim.apply_updates(p, u), s

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = frl.compile(step)
    state = tx.init(params)
    results = []
    for lr in (1e-3, 1e-2, 0.5, 1e-5):
        state = optim.set_hyperparams(state, learning_rate=lr)
        new_params, _ = compiled(params, state)
        results.append(new_params["0", "weight"])
        eager_params, _ = step(params, state)
        torch.testing.assert_close(
            new_params["0", "weight"], eager_params["0", "weight"], rtol=1e-5, atol=1e-6
        )
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert len({tuple(r.flatten().tolist()) for r in results}) == 4  # each rate took effect


@pytest.mark.compile
def test_compiled_bias_correction_powers_equal_eager_ones():
    """Compiled Adam takes ``b ** count`` as ``exp(count * log b)`` (no libm ``pow`` per vector)."""
    from frl.optim.transforms import _power

    bases = torch.tensor([0.0, 0.5, 0.9, 0.99, 0.999, 1.0], dtype=torch.float64)[:, None]
    counts = torch.tensor([1, 2, 10, 1000, 100_000])[None, :]
    eager = _power(bases, counts)
    compiled = frl.compile(_power, device="cpu")(bases, counts)
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-300)
    assert torch.equal(compiled[0], torch.zeros(5, dtype=torch.float64))  # 0 ** count
    assert torch.equal(compiled[-1], torch.ones(5, dtype=torch.float64))


def test_state_layout_hyperparams_and_count():
    params = nn.MLP((3, 4, 1)).init(fr.key(0))
    tx = optim.chain(optim.clip_by_global_norm(0.5), optim.adamw(1e-3, weight_decay=0.1))
    state = tx.init(params)
    assert set(state.keys()) == {"clip_by_global_norm", "adamw"}
    adam_state = state["adamw", "scale_by_adam"]
    assert adam_state["count"].dtype == torch.int64 and adam_state["count"].dim() == 0
    hp = optim.hyperparams(state)
    assert set(hp) == {"max_norm", "b1", "b2", "eps", "eps_root", "weight_decay", "learning_rate"}
    assert all(v.dim() == 0 and v.dtype == torch.float64 for v in hp.values())
    new = optim.set_hyperparams(state, learning_rate=3e-4, b1=0.5)
    assert float(optim.hyperparams(new)["learning_rate"]) == 3e-4
    assert float(optim.hyperparams(state)["learning_rate"]) == 1e-3  # the old state is untouched
    twice = optim.chain(optim.scale(2.0), optim.scale(3.0), named=optim.identity())
    assert set(twice.init(params).keys()) == {"scale", "scale_1", "named"}


def test_hyperparameters_passed_to_update_replace_the_dropped_ones():
    """A caller that keeps hyper-parameters elsewhere drops them from the state and passes them."""
    params = TensorDict(
        {"a": {"w": torch.tensor([1.0, -2.0])}, "b": {"w": torch.tensor([3.0])}}, batch_size=[]
    )
    grads = params.apply(lambda x: 10.0 * torch.ones_like(x))
    tx = optim.chain(optim.clip_by_global_norm(0.5), optim.adam(1e-3))
    kept = tx.init(params)
    u_kept, _ = tx.update(grads, kept, params)
    dropped = optim.drop_hyperparams(tx.init(params), "learning_rate", "max_norm")
    assert "learning_rate" not in optim.hyperparams(dropped) and "b1" in optim.hyperparams(dropped)
    u, s = tx.update(grads, dropped, params, {"learning_rate": torch.tensor(1e-3), "max_norm": 0.5})
    for k in params.keys(True, True):
        torch.testing.assert_close(u.get(k), u_kept.get(k))
    assert "learning_rate" not in optim.hyperparams(s)  # nothing is written back
    with pytest.raises(KeyError, match="`learning_rate` is neither in the state nor passed"):
        tx.update(grads, dropped, params, {"max_norm": 0.5})
    # partition routes a nested mapping to its parts
    split = optim.partition(a=optim.sgd(1.0), b=optim.sgd(1.0))
    state = optim.drop_hyperparams(split.init(params), "learning_rate")
    u, _ = split.update(grads, state, params, {"a": {"learning_rate": 0.1}, "b": {"learning_rate": 0.01}})
    torch.testing.assert_close(u["a", "w"], torch.full((2,), -1.0))
    torch.testing.assert_close(u["b", "w"], torch.full((1,), -0.1))
    with pytest.raises(KeyError, match="no hyper-parameter"):
        optim.drop_hyperparams(state, "momentum")


def test_eager_foreach_path_gives_the_floats_of_the_per_leaf_path(monkeypatch):
    """Eagerly, Adam, clipping, the learning rate, apply_updates and global_norm run one
    ``torch._foreach_*`` op over all leaves (frl.tree.leaf_lists); 50 steps give bit for bit the
    params, state and norms of the per-leaf code that vmap, grad and compile run."""
    net = nn.MLP((6, 32, 32, 2), activation="tanh")
    params = net.init(fr.key(0))
    x, y = fr.normal(fr.key(1), (64, 6)), fr.normal(fr.key(2), (64, 2))
    tx = optim.chain(optim.clip_by_global_norm(0.5), optim.adam(3e-3, eps=1e-5))

    def run() -> tuple[TensorDict, TensorDict, list[torch.Tensor]]:
        p, s, norms = params, tx.init(params), []
        for _ in range(50):
            g = torch.func.grad(lambda q: ((net.apply(q, x) - y) ** 2).mean())(p)
            u, s = tx.update(g, s, p)
            p = optim.apply_updates(p, u)
            norms.append(optim.global_norm(g))
        return p, s, norms

    taken = []

    def spy(*trees):
        lists = real(*trees)
        taken.append(lists is not None)
        return lists

    real = frl.tree.leaf_lists
    for module in (frl.tree, optim.base, optim.transforms):
        monkeypatch.setattr(module, "leaf_lists", spy)
    fast = run()
    assert taken and all(taken)  # every call got lists
    for module in (frl.tree, optim.base, optim.transforms):
        monkeypatch.setattr(module, "leaf_lists", lambda *trees: None)
    slow = run()
    for got, want in zip(fast[:2], slow[:2], strict=True):
        assert list(got.keys(True, True)) == list(want.keys(True, True))
        for k in want.keys(True, True):
            assert torch.equal(got.get(k), want.get(k)), k
    assert all(torch.equal(a, b) for a, b in zip(fast[2], slow[2], strict=True))


def test_clip_by_global_norm():
    grads = TensorDict({"a": torch.full((4,), 3.0), "b": torch.full((9,), 2.0)})  # norm sqrt(36+36)
    tx = optim.clip_by_global_norm(1.0)
    clipped, _ = tx.update(grads, tx.init(grads))
    torch.testing.assert_close(optim.global_norm(clipped), torch.tensor(1.0))
    torch.testing.assert_close(clipped["a"] / grads["a"], torch.full((4,), 1.0 / math.sqrt(72)))
    small = grads.apply(lambda g: g * 1e-3)
    assert (tx.update(small, tx.init(small))[0] == small).all()


def test_schedules_known_values():
    lin = optim.linear_schedule(1.0, 0.0, transition_steps=10, transition_begin=5)
    assert [round(float(lin(t)), 6) for t in (0, 5, 10, 15, 100)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    cos = optim.cosine_decay_schedule(2.0, decay_steps=100, alpha=0.1)
    assert math.isclose(float(cos(0)), 2.0)
    assert math.isclose(float(cos(50)), 2.0 * (0.9 * 0.5 + 0.1), rel_tol=1e-6)
    assert math.isclose(float(cos(1000)), 0.2, rel_tol=1e-6)
    warm = optim.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110, end_value=0.1)
    assert math.isclose(float(warm(5)), 0.5, rel_tol=1e-6)
    assert math.isclose(float(warm(10)), 1.0, rel_tol=1e-6)
    assert math.isclose(float(warm(60)), 0.1 + 0.9 * 0.5, rel_tol=1e-6)
    assert math.isclose(float(warm(500)), 0.1, rel_tol=1e-6)
    assert float(optim.constant_schedule(0.3)(7)) == pytest.approx(0.3)


def test_schedule_as_learning_rate_follows_the_count():
    params = TensorDict({"w": torch.zeros(())})
    tx = optim.sgd(optim.linear_schedule(1.0, 0.0, transition_steps=4))
    state = tx.init(params)
    steps = []
    for _ in range(6):
        updates, state = tx.update(TensorDict({"w": torch.ones(())}), state, params)
        steps.append(float(updates["w"]))
    assert steps == pytest.approx([-1.0, -0.75, -0.5, -0.25, 0.0, 0.0])
    assert set(optim.hyperparams(state)) == {
        "init_value",
        "end_value",
        "transition_steps",
        "transition_begin",
    }


def test_polyak_and_periodic_update():
    online, target = nn.MLP((3, 4, 1)).init(fr.key(0)), nn.MLP((3, 4, 1)).init(fr.key(1))
    assert (optim.polyak(target, online, 1.0) == online).all()
    assert (optim.polyak(target, online, 0.0) == target).all()
    half = optim.polyak(target, online, 0.25)
    torch.testing.assert_close(
        half["0", "weight"], 0.75 * target["0", "weight"] + 0.25 * online["0", "weight"]
    )
    assert (optim.periodic_update(online, target, torch.tensor(10), 5) == online).all()
    assert (optim.periodic_update(online, target, torch.tensor(11), 5) == target).all()
    # targets pass no gradient to the online params, by construction
    grad = torch.func.grad(lambda o: optim.polyak(target, o, 0.5)["0", "weight"].sum())(online)
    assert bool((grad["0", "weight"] == 0).all())


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: optim.adam(-1e-3), ValueError, "`learning_rate`"),
        (lambda: optim.adam(1e-3, b1=-0.1), ValueError, "`b1`"),
        (lambda: optim.adam("fast"), TypeError, "`learning_rate`"),
        (lambda: optim.adam(torch.tensor([1e-3, 1e-4])), ValueError, "`learning_rate`"),
        (lambda: optim.sgd(1e-2, nesterov=True), ValueError, "`momentum`"),
        (lambda: optim.clip_by_global_norm(0.0), ValueError, "`max_norm`"),
        (lambda: optim.linear_schedule(1.0, 0.0, transition_steps=-1), ValueError, "`transition_steps`"),
        (lambda: optim.warmup_cosine_decay_schedule(0.0, 1.0, 10, 5), ValueError, "`decay_steps`"),
        (lambda: optim.polyak(TensorDict(), TensorDict(), 1.5), ValueError, "`tau`"),
        (
            lambda: optim.periodic_update(TensorDict(), TensorDict(), torch.tensor(0), 0),
            ValueError,
            "`period`",
        ),
        (lambda: optim.chain(optim.scale(1.0), scale=optim.scale(2.0)), ValueError, "used twice"),
        (
            lambda: optim.add_decayed_weights(0.1).update(TensorDict({"w": torch.ones(1)}), TensorDict()),
            ValueError,
            "`params`",
        ),
        (
            lambda: optim.set_hyperparams(optim.adam(1e-3).init(TensorDict({"w": torch.ones(1)})), lr=1.0),
            KeyError,
            "lr",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------------------
# Four variants: each update is a pure function (grads, state, params) -> (updates, state)
# --------------------------------------------------------------------------------------

NET = nn.MLP((3, 4, 2))


def _tree(i: int, scale: float = 1.0) -> TensorDict:
    return NET.init(fr.key(i)).apply(lambda x: x * scale + 0.1)


def _warm_state(tx: optim.GradientTransformation, i: int) -> TensorDict:
    """A state after two updates, so moments and counts are non-trivial."""
    params, state = _tree(i), tx.init(_tree(i))
    for j in range(2):
        _, state = tx.update(_tree(100 + 10 * i + j), state, params)
    return state


ALIASES = {
    "adam": optim.adam(1e-2),
    "adamw": optim.adamw(1e-2),
    "sgd": optim.sgd(1e-2, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop": optim.rmsprop(1e-2, centered=True, momentum=0.5),
}
CHAINED = optim.chain(
    optim.clip_by_global_norm(0.3),
    optim.scale_by_adam(),
    optim.scale_by_learning_rate(optim.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10)),
)


def update_all(grads, states, params):
    return {name: tx.update(grads, states[name], params) for name, tx in ALIASES.items()}


def _alias_args(i: int):
    states = TensorDict({name: _warm_state(tx, i) for name, tx in ALIASES.items()})
    return _tree(200 + i), states, _tree(i)


SCALE = optim.scale(-0.5)


def _targets(online, target, step, tau):
    scaled, _ = SCALE.update(online, SCALE.init(online))
    return (
        optim.polyak(target, online, tau),
        optim.periodic_update(online, target, step, 3),
        optim.apply_updates(target, scaled),
    )


def _schedules(count):
    return tuple(
        s(count)
        for s in (
            optim.constant_schedule(0.5),
            optim.linear_schedule(1.0, 0.1, 5, 2),
            optim.cosine_decay_schedule(1.0, 7, alpha=0.2),
            optim.warmup_cosine_decay_schedule(0.0, 1.0, 3, 9),
        )
    )


CASES = [
    Case("aliases", update_all, _alias_args, grad_argnums=(0, 2), rtol=1e-5, atol=1e-6),
    Case(
        "chain_clip_schedule",
        CHAINED.update,
        lambda i: (_tree(300 + i), _warm_state(CHAINED, i), _tree(i)),
        grad_argnums=0,
    ),
    Case(
        "targets",
        _targets,
        lambda i: (_tree(i), _tree(50 + i), torch.tensor(i), torch.tensor(0.1 * i + 0.05)),
        grad_argnums=(1, 3),
    ),
    Case("schedules", _schedules, lambda i: (torch.tensor(2 * i + 1),)),
]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
