"""Complete agents as pure functions: ``make_train(config) -> Train(init, step, units, ...)``.

``ALGORITHMS`` maps a name to its module; each module has ``Config`` (``Config.preset(env_id)``
for tuned settings) and ``make_train``.
"""

from frl.algos import dqn, ppo, reinforce, sac, tabular
from frl.algos.base import Train, Unit, compose

ALGORITHMS = {"dqn": dqn, "ppo": ppo, "reinforce": reinforce, "sac": sac, "tabular": tabular}

__all__ = ["ALGORITHMS", "Train", "Unit", "compose", "dqn", "ppo", "reinforce", "sac", "tabular"]
