"""frl.tree: TensorDict helpers, checked against plain tensor math and in the four variants."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from frl import tree
from tests.variants import Case, check, variant_params


def make_tree(i: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(i)
    return TensorDict(
        {
            "a": torch.randn(3, 2, generator=g),
            "b": {"c": torch.randn(4, generator=g), "d": torch.randn((), generator=g)},
        },
        batch_size=[],
    )


def test_global_norm_equals_norm_of_concatenation():
    td = make_tree()
    flat = torch.cat([x.reshape(-1) for x in tree.leaves(td)])
    torch.testing.assert_close(tree.global_norm(td), torch.linalg.vector_norm(flat))
    assert math.isclose(
        float(tree.global_norm(td.apply(lambda x: 2 * x))), 2 * float(tree.global_norm(td)), rel_tol=1e-6
    )


def test_lerp_endpoints_and_midpoint():
    a, b = make_tree(0), make_tree(1)
    assert (tree.lerp(a, b, 0.0) == a).all()
    torch.testing.assert_close(tree.lerp(a, b, 1.0)["b", "c"], b["b", "c"])
    torch.testing.assert_close(tree.lerp(a, b, torch.tensor(0.5))["a"], (a["a"] + b["a"]) / 2)


def test_stack_unstack_round_trip_and_mismatch():
    trees = [make_tree(i) for i in range(3)]
    stacked = tree.stack(trees)
    assert stacked.batch_size == (3,) and stacked["a"].shape == (3, 3, 2)
    for orig, back in zip(trees, tree.unstack(stacked)):
        assert (orig == back).all()
    bad = make_tree(5)
    del bad["b", "c"]
    with pytest.raises(ValueError, match=r"trees\[1\]"):
        tree.stack([trees[0], bad])
    with pytest.raises(ValueError, match="batch dim"):
        tree.unstack(trees[0])
    with pytest.raises(ValueError, match="empty"):
        tree.stack([])


def test_to_flat_dict_names_match_module_parameters():
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    flat = tree.to_flat_dict(TensorDict.from_module(module))
    assert set(flat) == {name for name, _ in module.named_parameters()}


CASES = [
    Case("global_norm", tree.global_norm, lambda i: (make_tree(i),), grad_argnums=0),
    Case(
        "lerp",
        lambda a, b, w: tree.lerp(a, b, w),
        lambda i: (make_tree(i), make_tree(i + 10), torch.tensor(0.3)),
        grad_argnums=(0, 1, 2),
    ),
    Case("zeros_like", tree.zeros_like, lambda i: (make_tree(i),)),
]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
