"""Beyond one process: ``torch.distributed`` data-parallel learners and sharded seed sweeps.

* :mod:`frl.distributed.launch`: ``init_from_env`` (join the group ``torchrun`` describes; gloo on
  the CPU, NCCL on GPUs), ``world``, ``spawn`` (a local launcher on 127.0.0.1).
* :mod:`frl.distributed.collectives`: ``all_reduce_mean`` of a TensorDict in one flat buffer per
  dtype (eager, vmapped and compiled), ``tree_digest``/``assert_in_sync``, ``gather_objects``.
* :mod:`frl.distributed.data_parallel`: ``all_reduce_gradients`` (wrap an optimizer),
  ``data_parallel`` (per-rank data), ``train_data_parallel`` (the driver).
* :mod:`frl.distributed.collection`: ``make_multi_collector`` (TorchRL ``MultiSyncCollector`` /
  ``MultiAsyncCollector`` workers running the agent's behaviour policy, ``frl.driver.BehaviourPolicy``,
  weights pushed to them), ``to_frl_batch``.
* :mod:`frl.distributed.sharding`: ``shard_seeds`` and ``run_sharded`` (each rank trains its
  slice of the seeds vmapped; rank 0 gathers the results).
"""

from frl.distributed.collection import make_multi_collector, policy_weights, to_frl_batch
from frl.distributed.collectives import (
    all_reduce_mean,
    all_reduce_mean_per_leaf,
    assert_in_sync,
    gather_objects,
    tree_digest,
)
from frl.distributed.data_parallel import all_reduce_gradients, data_parallel, train_data_parallel
from frl.distributed.launch import World, free_port, init_from_env, shutdown, spawn, world
from frl.distributed.sharding import run_sharded, shard_seeds

__all__ = [
    "World",
    "all_reduce_gradients",
    "all_reduce_mean",
    "all_reduce_mean_per_leaf",
    "assert_in_sync",
    "data_parallel",
    "free_port",
    "gather_objects",
    "init_from_env",
    "make_multi_collector",
    "policy_weights",
    "run_sharded",
    "shard_seeds",
    "shutdown",
    "spawn",
    "to_frl_batch",
    "train_data_parallel",
    "tree_digest",
    "world",
]
