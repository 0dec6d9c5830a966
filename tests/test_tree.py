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


def test_leaves_and_entries_follow_tensordict_order():
    td = make_tree()
    td["e"] = TensorDict({"f": torch.ones(2), "g": TensorDict({"h": torch.zeros(1)}, [])}, [])
    assert [x is y for x, y in zip(tree.leaves(td), td.values(True, True), strict=True)] == [True] * 5
    assert list(tree.entries(td)) == list(td.keys()) and tree.entries(td)["a"] is td["a"]
    batched = td.expand(2).clone()  # batch dims: read through TensorDict's own methods
    assert [x.shape for x in tree.leaves(batched)] == [x.shape for x in batched.values(True, True)]


def test_map_leaves_equals_apply_and_falls_back_where_it_must():
    a, b = make_tree(0), make_tree(1)
    fast = tree.map_leaves(lambda x, y: x * 2 + y, a, b)
    slow = a.apply(lambda x, y: x * 2 + y, b)
    assert type(fast) is TensorDict and fast.batch_size == slow.batch_size and (fast == slow).all()
    assert list(fast.keys(True, True)) == list(slow.keys(True, True))
    # sub-trees with batch dims, a device or dim names go through TensorDict.apply
    for other in (a.expand(3).clone(), a.to("cpu"), a.expand(2).clone().refine_names("n")):
        out = tree.map_leaves(torch.neg, other)
        assert out.batch_size == other.batch_size and out.device == other.device
        assert out.names == other.names and (out == -other).all()
    nested = TensorDict({"seg": TensorDict({"r": torch.ones(2, 3)}, batch_size=[2, 3])}, [])
    assert tree.map_leaves(torch.neg, nested)["seg"].batch_size == (2, 3)
    missing = make_tree(2)
    del missing["b", "d"]
    with pytest.raises(KeyError, match="'d'"):
        tree.map_leaves(torch.add, a, missing)


def test_map_leaves_calls_fn_once_per_leaf_in_the_order_of_leaves():
    td = make_tree()  # a plain tree with an ensemble (batch dim 2) inside, then another leaf
    td["ensemble"] = TensorDict({"w": torch.ones(2, 3), "b": torch.zeros(2)}, batch_size=[2])
    td["z"] = torch.zeros(1)
    seen = []
    out = tree.map_leaves(lambda x: seen.append(x) or x + 1, td)
    assert len(seen) == 6 and all(a is b for a, b in zip(seen, tree.leaves(td), strict=True))
    assert out["ensemble"].batch_size == (2,) and (out == td.apply(lambda x: x + 1)).all()


def test_leaf_lists_are_given_eagerly_and_refused_where_per_leaf_code_must_run():
    a, b = make_tree(0), make_tree(1)
    lists = tree.leaf_lists(a, b)
    assert lists is not None and len(lists) == 2
    for got, want in zip(lists, (a, b), strict=True):
        assert all(x is y for x, y in zip(got, tree.leaves(want), strict=True))
    reordered = TensorDict({"b": b["b"], "a": b["a"]}, [])  # the same keys in another order
    other_keys = make_tree(2).rename_key_("a", "z")
    nested_batch = make_tree(3)
    nested_batch["b"] = nested_batch["b"].expand(2).clone()  # a sub-tree with a batch dim
    float64 = a.apply(lambda x: x.double())
    mixed = make_tree(4)
    mixed["a"] = mixed["a"].double()
    needs_grad = make_tree(5)
    needs_grad["a"] = needs_grad["a"].requires_grad_()
    for refused in (reordered, other_keys, nested_batch, float64, needs_grad):
        assert tree.leaf_lists(a, refused) is None
    assert tree.leaf_lists(mixed) is None and tree.leaf_lists(nested_batch) is None
    assert tree.leaf_lists(TensorDict({"w": torch.ones(2, device="meta")}, [])) is None  # CPU only
    assert tree.leaf_lists(float64) is not None and tree.leaf_lists(TensorDict({}, [])) is None
    # under vmap, grad and compile the callers keep their per-leaf code
    seen = []

    def look(x: torch.Tensor) -> torch.Tensor:
        seen.append(tree.leaf_lists(TensorDict({"x": x}, [])))
        return x.sum()

    torch.func.vmap(look)(torch.ones(2, 3))
    torch.func.grad(look)(torch.ones(3))
    torch.compile(look, backend="eager", fullgraph=True)(torch.ones(3))
    assert seen == [None, None, None]
    with pytest.raises(ValueError, match="at least one tree"):
        tree.leaf_lists()


def test_with_leaves_rebuilds_the_structure_and_counts_the_values():
    td = make_tree()
    td["ensemble"] = TensorDict({"w": torch.ones(2, 3)}, batch_size=[2])  # the fallback walk
    values = [x + 1 for x in tree.leaves(td)]
    out = tree.with_leaves(td, values)
    assert list(out.keys(True, True)) == list(td.keys(True, True))
    assert (out == td.apply(lambda x: x + 1)).all()
    assert out["ensemble"].batch_size == (2,)
    plain = make_tree()
    assert all(x is y for x, y in zip(tree.leaves(tree.with_leaves(plain, values[:3])), values, strict=False))
    with pytest.raises(ValueError, match="fewer values"):
        tree.with_leaves(plain, values[:2])
    with pytest.raises(ValueError, match="more values"):
        tree.with_leaves(plain, values)
    with pytest.raises(ValueError, match="fewer values"):
        tree.with_leaves(td, values[:3])


def test_global_norm_is_the_same_float_eagerly_and_under_vmap():
    td = make_tree()
    batched = torch.func.vmap(tree.global_norm)(td.expand(1).clone())
    assert torch.equal(batched[0], tree.global_norm(td))


def test_assemble_equals_the_constructor_or_falls_back_to_it():
    x = torch.arange(6.0).reshape(2, 3)
    fast = tree.assemble({"x": x, "sub": tree.assemble({"y": x})})
    slow = TensorDict({"x": x, "sub": TensorDict({"y": x}, [])}, batch_size=[])
    assert vars(fast).keys() == vars(slow).keys() and (fast == slow).all() and fast["x"] is x
    assert tree.assemble({"x": x}, batch_size=[2])["x"].shape == (2, 3)
    converted = tree.assemble({"d": {"y": x}})  # a plain dict becomes a TensorDict, as TensorDict()
    assert isinstance(converted["d"], TensorDict) and converted["d", "y"] is x
    with pytest.raises(RuntimeError, match="batch"):  # a wrong batch size is refused, as TensorDict()
        tree.assemble({"x": x}, batch_size=[3])
    fast["x"] = torch.zeros(2, 3)  # an assembled TensorDict is an ordinary one
    fast["sub", "z"] = torch.ones(1)
    assert float(fast["x"].sum()) == 0.0 and list(fast["sub"].keys()) == ["y", "z"]
    assert list(slow["sub"].keys()) == ["y"]


def test_replace_shares_what_it_does_not_replace():
    td = make_tree()
    new = tree.replace(td, a=torch.zeros(3, 2), extra=torch.ones(()))
    assert new["b"] is td["b"] and float(td["a"].abs().sum()) > 0 and list(td.keys()) == ["a", "b"]
    assert list(new.keys()) == ["a", "b", "extra"] and float(new["a"].sum()) == 0.0
    batched = tree.replace(td.expand(4).clone(), a=torch.zeros(4, 3, 2))
    assert batched.batch_size == (4,) and float(batched["a"].sum()) == 0.0


CASES = [
    Case("global_norm", tree.global_norm, lambda i: (make_tree(i),), grad_argnums=0),
    Case(
        "lerp",
        lambda a, b, w: tree.lerp(a, b, w),
        lambda i: (make_tree(i), make_tree(i + 10), torch.tensor(0.3)),
        grad_argnums=(0, 1, 2),
    ),
    Case("zeros_like", tree.zeros_like, lambda i: (make_tree(i),)),
    Case(
        "map_leaves",
        lambda a, b: tree.map_leaves(lambda x, y: x * y + 1, a, b),
        lambda i: (make_tree(i), make_tree(i + 5)),
        grad_argnums=(0, 1),
    ),
    Case(
        "replace",
        lambda a, b: tree.replace(a, b=tree.map_leaves(torch.sin, b["b"])),
        lambda i: (make_tree(i), make_tree(i + 3)),
        grad_argnums=(0, 1),
    ),
]


@pytest.mark.parametrize("case,variant", variant_params(CASES))
def test_variants(case, variant):
    check(case, variant)
