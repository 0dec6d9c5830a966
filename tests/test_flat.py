"""frl.driver.flat: trees rebuilt per member from their leaves, against pytree and torch.func.vmap."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch.utils import _pytree as pytree

from frl.driver.flat import flatten, member_function, plan, rebuildable, unflatten


def batched_state(members: int = 3) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    per_member = TensorDict(
        {
            "params": TensorDict({"w": torch.randn(2, 3, generator=g), "b": torch.randn(3, generator=g)}, []),
            "data": TensorDict({"reward": torch.randn(4, 5, generator=g)}, batch_size=[4, 5]),
            "key": torch.arange(2),
        },
        batch_size=[],
    )
    return torch.stack([per_member.apply(lambda x, i=i: x + i) for i in range(members)])


def step(state: TensorDict, scale: torch.Tensor) -> tuple[TensorDict, dict[str, torch.Tensor]]:
    params = state["params"].apply(lambda x: x * scale)
    new = state.clone(recurse=False)
    new["params"] = params
    return new, {"total": params["w"].sum() + state["data", "reward"].mean(), "pair": [scale, scale * 2]}


def test_plan_rebuilds_and_reads_a_tree_as_pytree_does():
    state = batched_state()
    leaves, spec = pytree.tree_flatten(state)
    assert rebuildable(spec)
    rebuilt = unflatten(leaves, plan(spec))
    assert pytree.tree_structure(rebuilt) == spec and (rebuilt == state).all()
    assert rebuilt["data"].batch_size == (3, 4, 5)
    assert all(a is b for a, b in zip(flatten(rebuilt, plan(spec)), leaves, strict=True))


def test_member_function_equals_torch_func_vmap_over_tensordicts():
    state, scale = batched_state(), torch.tensor([0.5, 2.0, -1.0])
    eager_state, eager_metrics = torch.func.vmap(step)(state, scale)
    in_specs = [pytree.tree_structure(state), pytree.tree_structure(scale)]
    out_spec = pytree.tree_structure((eager_state, eager_metrics))
    flat = member_function(step, in_specs, out_spec, batched=True)
    out = flat(*pytree.tree_leaves(state), scale)
    expected = pytree.tree_leaves((eager_state, eager_metrics))
    assert len(out) == len(expected) and all(torch.equal(a, b) for a, b in zip(out, expected, strict=True))
    # inside, each member saw its own trees: the segment's batch dims without the member dim
    seen = []
    member_function(lambda s, c: seen.append(s["data"].batch_size) or step(s, c), in_specs, out_spec, True)(
        *pytree.tree_leaves(state), scale
    )
    assert seen == [torch.Size([4, 5])]


def test_trees_with_a_device_or_dim_names_take_the_pytree_path():
    state = batched_state()
    assert not rebuildable(pytree.tree_structure(state.to("cpu")))  # a TensorDict with a device
    named = state.clone()
    named["data"] = named["data"].refine_names("m", "e", "t")
    assert not rebuildable(pytree.tree_structure(named))
    scale = torch.ones(3)
    specs = [pytree.tree_structure(state.to("cpu")), pytree.tree_structure(scale)]
    assert member_function(step, specs, specs[0], batched=True) is None


def test_a_scanned_unit_carries_only_the_leaves_it_changes(monkeypatch):
    """A compiled unit run ``repeats`` times in one call loops over the leaves it changes (found
    by its first, eager call) and reads the others from its inputs: the result equals the unit
    applied ``repeats`` times, and unchanged leaves come back as the tensors that went in. The
    compiled path runs without torch.compile here (``_compile`` is the identity)."""
    from frl.driver import compiled
    from frl.tree import replace

    monkeypatch.setattr(compiled, "_compile", lambda name, flat, device, guarded=True: flat)
    traced_carries: list[int] = []
    original_scan = compiled.scan

    def scan(body, carry, length, *args):
        traced_carries.append(len(carry))
        return original_scan(body, carry, length, *args)

    monkeypatch.setattr(compiled, "scan", scan)

    def unit(state: TensorDict) -> tuple[TensorDict, dict[str, torch.Tensor]]:
        w = state["params", "w"] - 0.1 * state["data", "reward"].mean()
        params = replace(state["params"], w=w)
        return replace(state, params=params, key=state["key"] + 1), {"w": w.sum()}

    state = batched_state()
    fn = compiled.CompiledUnit("update", unit, batched=True, compiled=True, repeats=3)
    leaves, spec = pytree.tree_flatten(state)
    out, metrics = fn(leaves, spec)
    assert {id(leaves[i]) for i in fn.carried} == {id(state["key"]), id(state["params", "w"])}
    assert traced_carries == [2]
    expected = state
    for _ in range(3):
        expected, last = torch.func.vmap(unit)(expected)
    for a, b in zip(out, pytree.tree_leaves(expected), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(metrics["w"], last["w"])
    kept = [i for i in range(len(leaves)) if i not in fn.carried]
    assert kept and all(out[i] is leaves[i] for i in kept)


def test_a_compiled_unit_s_graph_returns_only_the_leaves_it_changes(monkeypatch):
    """One repeat: the graph's outputs are the changed leaves and the metrics, nothing that
    aliases an input; the call puts them back in place and keeps the other leaves as they came,
    so the state equals the unit's eager result (``_compile`` records the graph's outputs here)."""
    from frl.driver import compiled
    from frl.tree import replace

    outputs: list[int] = []

    def recording(name, flat, device, guarded=True):
        def run(*leaves):
            out = flat(*leaves)
            outputs.append(len(out))
            assert not {id(x) for x in out} & {id(x) for x in leaves}
            return out

        return run

    monkeypatch.setattr(compiled, "_compile", recording)

    def unit(state: TensorDict) -> tuple[TensorDict, dict[str, torch.Tensor]]:
        w = state["params", "w"] * 0.5
        return replace(state, params=replace(state["params"], w=w)), {"w": w.sum()}

    state = batched_state()
    fn = compiled.CompiledUnit("update", unit, batched=True, compiled=True)
    leaves, spec = pytree.tree_flatten(state)
    out, metrics = fn(leaves, spec)
    out, metrics = fn(out, spec)
    assert [id(leaves[i]) for i in fn.carried] == [id(state["params", "w"])]
    assert outputs == [2, 2]  # w and the metric
    assert type(metrics) is dict and list(metrics) == ["w"]  # a flat mapping comes back as a dict
    expected, last = torch.func.vmap(unit)(torch.func.vmap(unit)(state)[0])
    for a, b in zip(out, pytree.tree_leaves(expected), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(metrics["w"], last["w"])
    assert all(out[i] is leaves[i] for i in range(len(leaves)) if i not in fn.carried)


def test_a_compiled_unit_runs_without_guards_and_checks_the_layouts_it_is_given(monkeypatch):
    """A compiled unit drops Dynamo's guards (``guarded=False``; a unit never recompiles), so it
    checks its inputs against its first call's layouts instead: the state's leaves on the next two
    calls, extra inputs on every call. A leaf of another dtype, shape or strides is a
    RuntimeError naming the unit and the leaf (``_compile`` is the identity here)."""
    from frl.driver import compiled

    calls: list[bool] = []

    def fake_compile(name, flat, device, guarded=True):
        calls.append(guarded)
        return flat

    monkeypatch.setattr(compiled, "_compile", fake_compile)
    state = batched_state()
    unit = compiled.CompiledUnit("collect", step, batched=True, compiled=True)
    leaves, spec = pytree.tree_flatten(state)
    scale = torch.full((3,), 2.0)
    out, _ = unit(leaves, spec, scale)
    assert calls == [False]
    out, _ = unit(out, spec, scale)  # the same layouts: fine
    bad = list(out)
    bad[1] = bad[1].double()
    with pytest.raises(RuntimeError, match=r"unit 'collect' got leaf 1 \(state\) as torch.float64"):
        unit(bad, spec, scale)
    out, _ = unit(out, spec, scale)  # the last state check
    bad = list(out)
    bad[1] = bad[1].double()
    unit(bad, spec, scale)  # past its first calls the state's leaves are not checked (graph outputs)
    n = len(leaves)
    with pytest.raises(
        RuntimeError, match=rf"unit 'collect' got leaf {n} \(input\) as torch.float32 \[3, 1\]"
    ):
        unit(out, spec, scale[:, None])
    with pytest.raises(RuntimeError, match="unit 'collect' got 2 input leaves, compiled for 1"):
        unit(out, spec, scale, scale)
