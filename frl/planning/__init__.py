"""Tabular planning: MDPs as TensorDicts, Bellman operators, value and policy iteration.

``frl.planning.mdp`` builds MDPs (FrozenLake and CliffWalking from gymnasium's transition
tables, gridworlds, random Garnet MDPs); ``frl.planning.operators`` holds the Bellman
operators and the solvers. Everything is a pure function of tensors: batch MDPs by stacking
them (leading dims), by ``torch.func.vmap``, or both, and compile with ``frl.compile``.
"""

from frl.planning.gradients import (
    discounted_visitation,
    performance,
    reinforce_gradient_estimates,
    softmax_policy_gradient,
)
from frl.planning.mdp import (
    cliff_walking,
    from_gymnasium,
    frozen_lake,
    garnet,
    gridworld,
    make_mdp,
    num_states,
)
from frl.planning.operators import (
    Solution,
    bellman_expectation,
    bellman_optimality,
    boltzmann_policy,
    greedy_policy,
    policy_evaluation,
    policy_iteration,
    q_from_v,
    soft_bellman,
    soft_value_iteration,
    value_iteration,
)

__all__ = [
    "Solution",
    "bellman_expectation",
    "bellman_optimality",
    "boltzmann_policy",
    "cliff_walking",
    "discounted_visitation",
    "from_gymnasium",
    "frozen_lake",
    "garnet",
    "greedy_policy",
    "gridworld",
    "make_mdp",
    "num_states",
    "performance",
    "policy_evaluation",
    "policy_iteration",
    "q_from_v",
    "reinforce_gradient_estimates",
    "soft_bellman",
    "soft_value_iteration",
    "softmax_policy_gradient",
    "value_iteration",
]
