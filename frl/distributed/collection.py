"""Collection at scale on the TorchRL side: worker processes stepping environments for a learner.

:func:`make_multi_collector` builds a TorchRL ``MultiSyncCollector`` (or ``MultiAsyncCollector``,
or the ``torch.distributed``-based ``DistributedCollector``) whose ``num_workers`` processes each
step their own environments (a frl environment through :func:`frl.envs.to_torchrl`, or a
gymnasium one through TorchRL) with the agent's behaviour policy,
:class:`frl.driver.BehaviourPolicy` (the same policy ``frl.run``'s collectors use): push new
parameters with ``collector.update_policy_weights_(policy_weights(policy, params, hyperparams,
env_steps, calls))``. Worker ``w`` draws its keys from ``fold_in(fold_in(stream(seed), w), call)``.
:func:`frl.driver.collectors.to_frl_batch` turns a collector batch into frl's transitions.

The policy pickles as the agent's factory, config and environment plus its buffers and rebuilds
the agent in the worker, so they must be importable there.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from tensordict import TensorDictBase

from frl.algos.train import Train
from frl.driver.collectors import BehaviourPolicy, policy_weights, to_frl_batch, worker_policy

__all__ = ["KINDS", "make_multi_collector", "policy_weights", "to_frl_batch"]

KINDS = ("multi-sync", "multi-async", "distributed")


def _make_env(env: Any, num_envs: int, seed: int):
    from frl import envs

    if hasattr(env, "make_env"):
        return env.make_env(seed=seed, train=True, num_envs=num_envs)
    return envs.to_torchrl(env, num_envs=num_envs, seed=seed)


def make_multi_collector(
    train: Train,
    params: TensorDictBase,
    hyperparams: TensorDictBase | None = None,
    *,
    num_workers: int = 2,
    envs_per_worker: int = 1,
    steps_per_env: int = 64,
    seed: int = 0,
    kind: str = "multi-sync",
    launcher: str = "mp",
):
    """A TorchRL multi-process collector for ``train``'s behaviour policy on ``train.env``.

    ``kind``: ``"multi-sync"`` (``MultiSyncCollector``: one batch of ``num_workers *
    envs_per_worker * steps_per_env`` frames, ``[workers, envs, T]``), ``"multi-async"``
    (``MultiAsyncCollector``: each batch is one worker's ``[envs, T]``, whichever is ready) or
    ``"distributed"`` (TorchRL's ``DistributedCollector``, synchronous, over ``torch.distributed``
    with gloo; ``launcher="mp"`` starts the workers as local processes, ``"submitit"`` on a
    cluster). Worker ``w``'s environments are seeded ``seed * 1000 + w``; ``hyperparams`` default
    to the config's. Returns ``(collector, policy)``.
    """
    from torchrl.collectors import MultiAsyncCollector, MultiSyncCollector
    from torchrl.weight_update import MultiProcessWeightSyncScheme

    if num_workers < 1 or envs_per_worker < 1 or steps_per_env < 1:
        raise ValueError(
            "make_multi_collector: `num_workers`, `envs_per_worker` and `steps_per_env` must be positive"
        )
    if kind not in KINDS:
        raise ValueError(f"make_multi_collector: `kind` must be one of {KINDS}, got {kind!r}")
    hyperparams = train.hyperparams() if hyperparams is None else hyperparams
    policy = BehaviourPolicy(train, params, hyperparams, seed, num_workers)
    creators = [partial(_make_env, train.env, envs_per_worker, seed * 1000 + w) for w in range(num_workers)]
    frames = num_workers * envs_per_worker * steps_per_env
    if kind == "distributed":
        from torchrl.collectors.distributed import DistributedCollector

        from frl.distributed.launch import free_port

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        collector = DistributedCollector(
            creators,
            policy,
            frames_per_batch=frames,
            total_frames=2**62,  # "unbounded": this collector treats -1 as no frames at all
            sync=True,
            launcher=launcher,
            tcp_port=str(free_port()),
            collector_kwargs={"trust_policy": True, "auto_register_policy_transforms": False},
        )
        return collector, policy
    common = dict(
        policy_factory=[partial(worker_policy, policy, w) for w in range(num_workers)],
        total_frames=-1,
        env_device="cpu",
        policy_device="cpu",
        trust_policy=True,
        auto_register_policy_transforms=False,
        weight_sync_schemes={"policy": MultiProcessWeightSyncScheme()},
    )
    if kind == "multi-async":
        return MultiAsyncCollector(creators, frames_per_batch=frames // num_workers, **common), policy
    return MultiSyncCollector(creators, frames_per_batch=frames, cat_results="stack", **common), policy
