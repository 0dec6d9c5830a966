"""Pure losses, in two levels.

**Primitives** (rlax-style terms, tensor in, 0-d loss or target out): :mod:`frl.losses.policy_terms`
(``policy_gradient_term``, ``clipped_surrogate``, ``entropy_bonus``, ``soft_policy_loss``,
``temperature_loss``) and :mod:`frl.losses.value_terms` (``td_target``, ``double_q_target``,
``soft_target``, ``soft_value``, ``value_loss``, ``clipped_value_loss``, ``regression_loss``).
Each documents its equation, reference and shapes; recombine them into your own losses.
The models behind intrinsic rewards train with :func:`rnd_loss` and :func:`icm_loss`
(:mod:`frl.losses.intrinsic`; the rewards themselves are in :mod:`frl.intrinsic`).

**Algorithm losses**, composed from the primitives:
``loss(<param sub-trees>, batch, *, <apply fns>, <hyper-parameters>, key=None) -> (loss, metrics)``.
The parameter sub-trees a loss reads are its leading arguments (``ppo_loss(actor_params,
critic_params, batch, ...)``, ``dqn_loss(online_params, target_params, batch, ...)``), so the
layout of your params is yours. Target networks are detached inside the loss: they get no
gradient by construction. ``batch`` uses TorchRL's transition layout with per-sample scalars as
``[B]`` (:func:`squeeze_trailing` adapts TorchRL's ``[B, 1]``). Metrics are a TensorDict of 0-d
tensors. Hyper-parameters may be 0-d tensors (read from a training state; vmap over them, no
recompiles).
"""

from frl.losses._batch import PER_SAMPLE, bind, squeeze_trailing
from frl.losses.dqn import dqn_loss, dqn_td_error, q_regression
from frl.losses.intrinsic import icm_loss, rnd_loss
from frl.losses.marl import critic_observation, critic_values, mappo_loss, value_decomposition_loss
from frl.losses.policy_terms import (
    clipped_surrogate,
    entropy_bonus,
    policy_gradient_term,
    soft_policy_loss,
    temperature_loss,
)
from frl.losses.ppo import clipped_objective, explained_variance, normalize, ppo_loss, recurrent_ppo_loss
from frl.losses.reinforce import reinforce_loss
from frl.losses.sac import discrete_sac_loss, sac_loss
from frl.losses.soft_q import soft_q_loss
from frl.losses.value_terms import (
    clipped_value_loss,
    double_q_target,
    regression_loss,
    soft_target,
    soft_value,
    td_target,
    value_loss,
)

__all__ = [
    "PER_SAMPLE",
    "bind",
    "clipped_objective",
    "clipped_surrogate",
    "clipped_value_loss",
    "critic_observation",
    "critic_values",
    "discrete_sac_loss",
    "double_q_target",
    "dqn_loss",
    "dqn_td_error",
    "entropy_bonus",
    "explained_variance",
    "icm_loss",
    "mappo_loss",
    "normalize",
    "policy_gradient_term",
    "ppo_loss",
    "q_regression",
    "recurrent_ppo_loss",
    "regression_loss",
    "reinforce_loss",
    "rnd_loss",
    "sac_loss",
    "soft_policy_loss",
    "soft_q_loss",
    "soft_target",
    "soft_value",
    "squeeze_trailing",
    "td_target",
    "temperature_loss",
    "value_decomposition_loss",
    "value_loss",
]
