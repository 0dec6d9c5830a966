"""The optimizer protocol: gradient transformations over TensorDicts (optax's design).

A :class:`GradientTransformation` is a pair of pure functions::

    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    params = apply_updates(params, updates)

States are TensorDicts. Unlike optax, every hyper-parameter (learning rate, betas, eps, weight
decay, clip norm, schedule constants) is a 0-d tensor *in the state*, and the step count is a
0-d int64 tensor: changing a hyper-parameter between calls (:func:`set_hyperparams`) never
recompiles a compiled update, and ``torch.func.vmap`` over states sweeps hyper-parameters.

A caller that keeps some hyper-parameters elsewhere (frl's agents keep every Config
hyper-parameter in the training state's ``hyperparams``) passes them to ``update`` instead::

    state = drop_hyperparams(tx.init(params), "learning_rate", "max_norm")
    updates, state = tx.update(grads, state, params, {"learning_rate": lr, "max_norm": clip})

A value passed to ``update`` wins over one in the state; :func:`partition` routes a nested
mapping (``{"actor": {"learning_rate": ...}, ...}``) to its parts, :func:`chain` passes the
mapping to every link. A hyper-parameter found in neither place is a KeyError naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl.tree import assemble, leaf_lists, map_leaves, with_leaves

__all__ = [
    "GradientTransformation",
    "apply_updates",
    "cast_like",
    "chain",
    "drop_hyperparams",
    "hyper",
    "hyperparams",
    "hyperparams_like",
    "identity",
    "partition",
    "scalar",
    "set_hyperparams",
]

InitFn = Callable[[TensorDictBase], TensorDictBase]
UpdateFn = Callable[..., tuple[TensorDictBase, TensorDictBase]]
Hyperparams = Mapping[str, Any] | None
"""Hyper-parameter values passed to ``update`` (0-d tensors or floats, by name; nested by key
for :func:`partition`)."""


class GradientTransformation(NamedTuple):
    """``init(params) -> state``;
    ``update(grads, state, params=None, hyperparams=None) -> (updates, state)``.

    ``name`` keys this transformation's sub-state inside :func:`chain`; ``hyperparams`` (see the
    module docstring) overrides values kept in the state.
    """

    init: InitFn
    update: UpdateFn
    name: str = "transform"


def hyper(state: TensorDictBase, hyperparams: Hyperparams, name: str) -> Tensor:
    """The hyper-parameter ``name``: from ``hyperparams`` when given there, else the state's."""
    if hyperparams is not None and name in hyperparams:
        return torch.as_tensor(hyperparams[name], dtype=HYPERPARAM_DTYPE)
    stored = state.get(HYPERPARAMS, None)
    if stored is None or name not in stored:
        raise KeyError(
            f"optimizer: the hyper-parameter `{name}` is neither in the state nor passed to update "
            f"(passed: {sorted(hyperparams or {})})"
        )
    return stored[name]


def scalar(value: float | Tensor, name: str, owner: str, *, minimum: float | None = None) -> float | Tensor:
    """Validate a hyper-parameter: a real number or a 0-d float tensor, at least ``minimum``."""
    if isinstance(value, Tensor):
        if value.dim() != 0 or not value.dtype.is_floating_point:
            raise ValueError(f"{owner}: `{name}` must be a float or a 0-d float tensor, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: `{name}` must be a float or a 0-d tensor, got {type(value)!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: `{name}` must be >= {minimum}, got {value}")
    return float(value)


def _device(params: TensorDictBase) -> torch.device:
    for leaf in params.values(include_nested=True, leaves_only=True):
        return leaf.device
    return torch.device("cpu")


HYPERPARAM_DTYPE = torch.float64
"""Hyper-parameters are float64: exact for float64 params, and for float32 params they round
exactly as ``torch.optim``'s Python floats do (``1 - b1`` is formed in double, then cast)."""


def hyperparams_like(params: TensorDictBase, **values: float | Tensor) -> TensorDict:
    """Hyper-parameters as 0-d float64 tensors on the device of ``params``."""
    device = _device(params)
    return TensorDict(
        {k: torch.as_tensor(v, dtype=HYPERPARAM_DTYPE, device=device) for k, v in values.items()},
        batch_size=[],
    )


def cast_like(value: Tensor) -> Callable[[Tensor], Tensor]:
    """``f(leaf) = value.to(leaf.dtype)``, converting once per dtype rather than once per leaf.

    Eagerly this saves a tiny kernel per leaf and scalar; compiled code is unaffected.
    """
    by_dtype: dict[torch.dtype, Tensor] = {}

    def cast(leaf: Tensor) -> Tensor:
        if leaf.dtype not in by_dtype:
            by_dtype[leaf.dtype] = value.to(leaf.dtype)
        return by_dtype[leaf.dtype]

    return cast


def zero_count(params: TensorDictBase) -> Tensor:
    """A 0-d int64 step counter on the device of ``params``."""
    return torch.zeros((), dtype=torch.int64, device=_device(params))


def identity() -> GradientTransformation:
    """Pass updates through unchanged (stateless)."""

    def init(params: TensorDictBase) -> TensorDict:
        return TensorDict({}, batch_size=[])

    def update(
        grads: TensorDictBase, state: TensorDictBase, params: TensorDictBase | None = None, hyperparams=None
    ):
        return grads, state

    return GradientTransformation(init, update, "identity")


def chain(*transforms: GradientTransformation, **named: GradientTransformation) -> GradientTransformation:
    """Apply transformations in sequence; sub-states are keyed by each one's name.

    Positional transformations use their ``name`` (a repeated name gets ``_1``, ``_2``, ...);
    keyword ones use the keyword. ``chain(clip_by_global_norm(0.5), adam(3e-4)).init(p)``
    has keys ``clip_by_global_norm`` and ``adam`` (itself ``scale_by_adam`` and
    ``scale_by_learning_rate``).
    """
    entries: list[tuple[str, GradientTransformation]] = []
    seen: dict[str, int] = {}
    for tx in transforms:
        if not isinstance(tx, GradientTransformation):
            raise TypeError(f"chain: expected GradientTransformations, got {type(tx)!r}")
        n = seen.get(tx.name, 0)
        seen[tx.name] = n + 1
        entries.append((tx.name if n == 0 else f"{tx.name}_{n}", tx))
    for key, tx in named.items():
        if key in seen:
            raise ValueError(f"chain: the name {key!r} is used twice")
        seen[key] = 1
        entries.append((key, tx))

    def init(params: TensorDictBase) -> TensorDict:
        return TensorDict({key: tx.init(params) for key, tx in entries}, batch_size=[])

    def update(
        grads: TensorDictBase, state: TensorDictBase, params: TensorDictBase | None = None, hyperparams=None
    ):
        new_state = {}
        for key, tx in entries:
            grads, new_state[key] = tx.update(grads, state[key], params, hyperparams)
        return grads, assemble(new_state)

    return GradientTransformation(init, update, "chain")


def partition(**transforms: GradientTransformation) -> GradientTransformation:
    """A different transformation for each top-level key of the params (optax's multi_transform).

    ``partition(actor=adam(3e-4), critic=adam(1e-3), log_alpha=adam(1e-3))`` gives SAC its
    learning rates; every top-level key of the params must be named exactly once.
    """
    if not transforms:
        raise ValueError("partition: name at least one transformation (key=transformation)")
    for name, tx in transforms.items():
        if not isinstance(tx, GradientTransformation):
            raise TypeError(f"partition: `{name}` must be a GradientTransformation, got {type(tx)!r}")

    def check(params: TensorDictBase) -> None:
        keys = set(params.keys())
        if keys != set(transforms):
            raise KeyError(
                f"partition: params have keys {sorted(keys)}; the transformations are {sorted(transforms)}"
            )

    def as_tree(x: TensorDictBase | Tensor) -> TensorDictBase:
        return x if isinstance(x, TensorDictBase) else TensorDict({"value": x}, batch_size=[])

    def init(params: TensorDictBase) -> TensorDict:
        check(params)
        return TensorDict({k: tx.init(as_tree(params[k])) for k, tx in transforms.items()}, batch_size=[])

    def update(
        grads: TensorDictBase, state: TensorDictBase, params: TensorDictBase | None = None, hyperparams=None
    ):
        check(grads)
        updates, new_state = {}, {}
        for k, tx in transforms.items():
            leaf = not isinstance(grads[k], TensorDictBase)
            sub_params = None if params is None else as_tree(params[k])
            sub_hyper = None if hyperparams is None else hyperparams.get(k)
            u, new_state[k] = tx.update(as_tree(grads[k]), state[k], sub_params, sub_hyper)
            updates[k] = u["value"] if leaf else u
        return assemble(updates), assemble(new_state)

    return GradientTransformation(init, update, "partition")


def apply_updates(params: TensorDictBase, updates: TensorDictBase) -> TensorDictBase:
    """``params + updates``, leafwise, each update cast to its parameter's dtype."""
    lists = leaf_lists(params, updates)
    if lists is not None:  # eagerly, one foreach op (the same values; one dtype throughout)
        return with_leaves(params, torch._foreach_add(*lists))
    return map_leaves(lambda p, u: p + u.to(p.dtype), params, updates)


HYPERPARAMS = "hyperparams"
"""The sub-key under which every transformation keeps its scalar hyper-parameters."""


def _hyperparam_keys(state: TensorDictBase) -> dict[str, list[tuple[str, ...]]]:
    found: dict[str, list[tuple[str, ...]]] = {}
    for key in state.keys(include_nested=True, leaves_only=True):
        if isinstance(key, tuple) and len(key) >= 2 and key[-2] == HYPERPARAMS:
            found.setdefault(key[-1], []).append(key)
    return found


def hyperparams(state: TensorDictBase) -> dict[str, Tensor]:
    """The scalar hyper-parameters held in an optimizer state, by name.

    A name that occurs in several sub-states (``learning_rate`` in two of them) maps to the first.
    """
    return {name: state.get(keys[0]) for name, keys in _hyperparam_keys(state).items()}


def set_hyperparams(state: TensorDictBase, **values: float | Tensor) -> TensorDictBase:
    """A copy of ``state`` with hyper-parameters replaced wherever their name occurs.

    ``set_hyperparams(state, learning_rate=1e-4)`` changes the learning rate of a compiled
    update without recompiling (the value is a tensor input, not a constant). Values may be
    floats or tensors broadcastable to the stored ones (e.g. ``[N]`` for N vmapped members).
    """
    available = _hyperparam_keys(state)
    new = state.apply(lambda x: x)  # new containers, shared tensors
    for name, value in values.items():
        if name not in available:
            raise KeyError(
                f"set_hyperparams: no hyper-parameter {name!r} in the state; have {sorted(available)}"
            )
        for key in available[name]:
            old = state.get(key)
            value_t = torch.as_tensor(value, dtype=old.dtype, device=old.device)
            if torch.broadcast_shapes(value_t.shape, old.shape) != old.shape:
                raise ValueError(
                    f"set_hyperparams: `{name}` of shape {list(value_t.shape)} does not fit the stored "
                    f"shape {list(old.shape)}"
                )
            new.set(key, value_t.expand_as(old).clone())
    return new


def drop_hyperparams(state: TensorDictBase, *names: str) -> TensorDictBase:
    """``state`` without the hyper-parameters ``names`` (wherever they occur): the caller passes
    them to ``update`` instead (see the module docstring). A name the state lacks is a KeyError."""
    available = _hyperparam_keys(state)
    missing = [n for n in names if n not in available]
    if missing:
        raise KeyError(
            f"drop_hyperparams: no hyper-parameter {missing} in the state; have {sorted(available)}"
        )
    return state.exclude(*[key for n in names for key in available[n]])
