"""Optax-style gradient transformations over TensorDicts.

::

    tx = frl.optim.adam(3e-4)
    state = tx.init(params)
    grads = torch.func.grad(loss)(params, batch)
    updates, state = tx.update(grads, state, params)
    params = frl.optim.apply_updates(params, updates)

Hyper-parameters are 0-d tensors in the state (:func:`set_hyperparams` changes them without
recompiling; ``vmap`` over states sweeps them); ``count`` is a 0-d tensor.
"""

from frl.optim.alias import adam, adamw, rmsprop, sgd
from frl.optim.base import (
    GradientTransformation,
    apply_updates,
    chain,
    drop_hyperparams,
    hyperparams,
    identity,
    partition,
    set_hyperparams,
)
from frl.optim.schedules import (
    Schedule,
    constant_schedule,
    cosine_decay_schedule,
    linear_schedule,
    warmup_cosine_decay_schedule,
)
from frl.optim.targets import periodic_update, polyak
from frl.optim.transforms import (
    add_decayed_weights,
    clip_by_global_norm,
    scale,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_schedule,
    trace,
)
from frl.tree import global_norm

__all__ = [
    "GradientTransformation",
    "Schedule",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "drop_hyperparams",
    "global_norm",
    "hyperparams",
    "identity",
    "linear_schedule",
    "partition",
    "periodic_update",
    "polyak",
    "rmsprop",
    "scale",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_schedule",
    "set_hyperparams",
    "sgd",
    "trace",
    "warmup_cosine_decay_schedule",
]
