"""MAML (frl.algos.maml) and PointNavigation: the meta-gradient equals finite differences of the
meta-objective (second-order terms included), the inner step is an SGD step of the policy
gradient, the vmapped meta-objective equals a loop over tasks, and bad settings are named."""

from __future__ import annotations

import pytest
import torch

from frl import envs, random
from frl.algos import maml
from frl.envs.meta import PointNavigation, PointNavigationParams
from tests.variants import Case, check, variant_params

CONFIG = maml.Config(hidden=(8,), activation="tanh", trajectories=4, meta_batch=2, gamma=0.9)
"""A smooth policy: with ReLU the inner gradient jumps where a unit switches, and so does the
meta-objective (finite differences then measure the jumps, not the gradient)."""


def _problem(steps: int = 1, dtype=torch.float64):
    """Params, ``steps`` inner batches (each sampled by the policy adapted so far) and an outer
    batch, on two tasks."""
    env = PointNavigation(dtype=dtype)
    policy = maml.policy_for(env, CONFIG, dtype)
    params = policy.init(random.key(0))
    loss = maml._loss(CONFIG, policy)
    tasks = env.sample_tasks(random.key(1), 2)
    inner, adapted = [], params
    for j in range(steps):
        batch = maml._sample_tasks(env, tasks, policy, adapted, random.key(2 + j), 4, per_task=j > 0)
        inner.append(batch)
        adapted = torch.func.vmap(lambda p, b: maml.adapt(p, b, loss, 0.5), in_dims=(0 if j else None, 0))(
            adapted, batch
        )
    outer = maml._sample_tasks(env, tasks, policy, adapted, random.key(9), 4, per_task=True)
    return params, (inner[0] if steps == 1 else inner), outer, loss


def test_point_navigation_pays_the_negative_squared_distance_to_an_unobserved_goal():
    env = envs.make("PointNavigation-v0")
    goals = PointNavigationParams(torch.tensor([[0.3, -0.2], [-0.5, 0.5]]))
    obs, state = torch.func.vmap(lambda g: env.reset(random.key(0), g))(goals)
    assert torch.equal(obs, torch.zeros(2, 2))  # the goal is not in the observation
    action = torch.tensor([[0.5, -0.05], [-0.05, 0.05]])  # the first is clipped to 0.1
    obs, state, reward, terminated, truncated, _ = torch.func.vmap(
        lambda s, a, g: env.step(random.key(1), s, a, g)
    )(state, action, goals)
    torch.testing.assert_close(obs, torch.tensor([[0.1, -0.05], [-0.05, 0.05]]))
    torch.testing.assert_close(reward, -((obs - goals.goal) ** 2).sum(-1))
    assert not terminated.any() and not truncated.any() and env.max_episode_steps == 100
    sampled = env.sample_tasks(random.key(3), 1000).goal
    assert sampled.shape == (1000, 2) and float(sampled.abs().max()) <= 0.5


@pytest.mark.parametrize("steps", [1, 2])
def test_the_meta_gradient_equals_finite_differences_of_the_meta_objective(steps):
    params, inner, outer, loss = _problem(steps)

    def objective(p):
        return maml.meta_loss(p, inner, outer, loss, 0.5)

    g = torch.func.grad(objective)(params)
    first_order = torch.func.grad(maml.meta_loss)(params, inner, outer, loss, 0.5, first_order=True)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = params.apply(lambda x: torch.randn(x.shape, generator=gen, dtype=x.dtype))
        step = v.apply(lambda d: 1e-5 * d)
        plus = objective(params.apply(torch.add, step))
        minus = objective(params.apply(torch.sub, step))
        numeric = (plus - minus) / 2e-5
        analytic = sum((g[k] * v[k]).sum() for k in g.keys(True, True))
        torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-9)
        # dropping the second-order terms (first-order MAML) misses the finite difference
        approx = sum((first_order[k] * v[k]).sum() for k in g.keys(True, True))
        assert abs(float(approx - numeric)) > 1e-4 * abs(float(numeric))


def test_adapt_is_one_sgd_step_of_the_policy_gradient():
    params, inner, _, loss = _problem()
    batch = inner[0]
    adapted = maml.adapt(params, batch, loss, 0.3)
    leaves = [params[k].detach().clone().requires_grad_(True) for k in params.keys(True, True)]
    live = params.clone()
    for k, leaf in zip(params.keys(True, True), leaves, strict=True):
        live[k] = leaf
    grads = torch.autograd.grad(loss(live, batch), leaves)
    for k, leaf, g in zip(params.keys(True, True), leaves, grads, strict=True):
        torch.testing.assert_close(adapted[k], leaf.detach() - 0.3 * g)


def test_the_vmapped_meta_objective_equals_a_loop_over_tasks():
    params, inner, outer, loss = _problem()
    vmapped = maml.meta_loss(params, inner, outer, loss, 0.5)
    looped = torch.stack([loss(maml.adapt(params, inner[i], loss, 0.5), outer[i]) for i in range(2)]).mean()
    torch.testing.assert_close(vmapped, looped)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(inner_steps=0), "`inner_steps` must be a positive int, got 0"),
        (dict(meta_batch=2.5), r"`meta_batch` must be a positive int, got 2\.5"),
        (dict(inner_lr=0.0), "`inner_lr` must be positive, got 0.0"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=f"maml.Config: {message}"):
        maml.Config(**settings)


def test_the_command_line_trains_both_and_writes_their_adaptation_curves(tmp_path, capsys):
    import json

    from frl.cli import main

    args = ["maml", "--seeds", "1", "--iterations", "2", "--eval-steps", "1", "--out", str(tmp_path)]
    small = ["--config.hidden", "8", "--config.meta_batch", "2", "--config.trajectories", "2"]
    assert main([*args, *small]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["maml", "pretrained"] and all(len(r["returns"]) == 2 for r in rows)
    assert main(["maml", "--config.inner_steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["frl: error: maml.Config: `inner_steps` must be a positive int, got 0"]


def test_a_fixed_task_set_feeds_distinct_tasks_and_refuses_a_larger_meta_batch():
    config = maml.Config(meta_batch=3, num_tasks=5)
    env = PointNavigation()
    draw = maml._training_tasks(env, config, random.key(4))
    fixed = env.sample_tasks(random.key(4), 5).goal
    for i in range(4):
        goals = draw(random.key(i)).goal
        assert goals.shape == (3, 2) and len({tuple(g.tolist()) for g in goals}) == 3
        assert all(any(torch.equal(g, f) for f in fixed) for g in goals)  # from the set
    with pytest.raises(
        ValueError, match=r"`meta_batch` \(8\) is larger than the task set \(`num_tasks` = 5\)"
    ):
        maml.Config(meta_batch=8, num_tasks=5)


def test_the_command_line_names_a_task_set_smaller_than_the_meta_batch(capsys):
    from frl.cli import main

    assert main(["maml", "--config.num_tasks", "5", "--config.meta_batch", "8"]) == 2
    assert main(["maml", "--config.num_tasks", "many"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "frl: error: maml.Config: `meta_batch` (8) is larger than the task set (`num_tasks` = 5): "
        "a meta-batch draws distinct tasks",
        "frl: error: --config.num_tasks: expected a number or none (current None), got 'many'",
    ]


def _adapt_case():
    env = PointNavigation()
    policy = maml.policy_for(env, CONFIG)
    loss = maml._loss(CONFIG, policy)
    tasks = env.sample_tasks(random.key(1), 3)
    data = maml._sample_tasks(
        env, tasks, policy, policy.init(random.key(0)), random.key(2), 4, per_task=False
    )

    def make_args(i: int):
        return policy.init(random.key(10 + i)), data[i]

    return Case("maml_adapt", lambda p, b: maml.adapt(p, b, loss, 0.1), make_args, grad_argnums=0, rtol=1e-5)


@pytest.mark.parametrize("case, variant", variant_params([_adapt_case()]))
def test_adapt_variants(case, variant):
    """The inner step eagerly, vmapped over batches, compiled, and differentiated (its gradient:
    MAML's second-order terms) agrees with autograd."""
    check(case, variant)
