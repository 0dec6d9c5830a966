"""frl's edges to other frameworks: ``frl.interop.jax`` (needs the ``jax`` extra).

Nothing outside this package imports JAX.
"""
