"""Pure losses: ``loss(params, batch, *, <apply fns>, <hyper-parameters>, key=None) -> (loss, metrics)``.

``params`` holds every network the loss needs (online and target networks, critics, the
temperature) in one TensorDict; target networks are detached inside the loss, so they get no
gradient by construction. ``batch`` uses TorchRL's transition layout with per-sample scalars as
``[B]`` (:func:`squeeze_trailing` adapts TorchRL's ``[B, 1]``). Metrics are a TensorDict of 0-d
tensors. Hyper-parameters may be tensors (vmap over them; no recompiles).
"""

from frl.losses._batch import squeeze_trailing
from frl.losses.dqn import dqn_loss, dqn_td_error
from frl.losses.ppo import explained_variance, normalize, ppo_loss
from frl.losses.reinforce import reinforce_loss
from frl.losses.sac import discrete_sac_loss, sac_loss
from frl.losses.soft_q import soft_q_loss, soft_value

__all__ = [
    "discrete_sac_loss",
    "dqn_loss",
    "dqn_td_error",
    "explained_variance",
    "normalize",
    "ppo_loss",
    "reinforce_loss",
    "sac_loss",
    "soft_q_loss",
    "soft_value",
    "squeeze_trailing",
]
