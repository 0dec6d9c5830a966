"""frl: functional reinforcement learning on torch.

Algorithms are pure functions over TensorDicts (params, optimizer states, batches), so
``torch.func`` transforms them and ``torch.compile`` compiles them: one program trains one
seed, 256 seeds or an ensemble alike. Randomness comes from explicit ``frl.random`` keys,
bit-compatible with ``jax.random``.
"""

from frl import nn, optim, random, tree
from frl._compile import compile
from frl.run import run

__version__ = "0.1.0"

__all__ = ["__version__", "compile", "nn", "optim", "random", "run", "tree"]
