"""Collection at scale on the TorchRL side: worker processes stepping environments for a learner.

:func:`make_multi_collector` builds a TorchRL ``MultiSyncCollector`` (or ``MultiAsyncCollector``,
or the ``torch.distributed``-based ``DistributedCollector``) whose ``num_workers`` processes each
step their own environments (a frl environment through :func:`frl.envs.to_torchrl`, or a
gymnasium one through TorchRL) with the agent's behaviour policy, :class:`ExplorePolicy`:
``Train.explore`` as a ``torch.nn.Module`` whose parameters are buffers, so
``collector.update_policy_weights_(policy_weights(policy, params, env_steps))`` ships new
parameters (and the run's step count) to every worker. Keys are frl keys: worker ``w`` draws
``fold_in(fold_in(key(seed), w), call)``. :func:`to_frl_batch` turns a collector batch into
frl's time-major layout.

The policy pickles as ``(algorithm, config, seed)`` plus its buffers and rebuilds ``Train.explore``
in the worker (closures do not pickle), so the algorithm and environment must be importable there.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import random
from frl.algos.rollout import clip_action

__all__ = [
    "KINDS",
    "ExplorePolicy",
    "make_multi_collector",
    "policy_weights",
    "to_frl_batch",
    "worker_policy",
]


def _sep(key: tuple[str, ...]) -> str:
    return "__".join(key)


class ExplorePolicy(torch.nn.Module):
    """``Train.explore(params, obs, key, env_steps)`` as a TorchRL policy: writes ``action``
    (clipped to the action space), ``frl_action`` and ``frl_log_prob``."""

    def __init__(
        self, algorithm: str, config: Any, params: TensorDictBase, seed: int = 0, num_workers: int = 1
    ) -> None:
        super().__init__()
        self.algorithm, self.config, self.seed, self.num_workers = algorithm, config, seed, num_workers
        self._keys = [k if isinstance(k, tuple) else (k,) for k in params.keys(True, True)]
        for key in self._keys:
            self.register_buffer(_sep(key), params[key].detach().clone(memory_format=torch.contiguous_format))
        # the run's environment steps (all workers) travel with the weights: schedules that read
        # them (epsilon, noise) see the global count; each worker advances it by its batch x workers
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.int64))
        self.worker, self.calls = 0, 0  # per worker: not weights
        self._train = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_train"] = None
        return state

    def train_(self):
        if self._train is None:
            from frl.algos import ALGORITHMS

            self._train = ALGORITHMS[self.algorithm].make_train(self.config)
        return self._train

    def params(self) -> TensorDict:
        out = TensorDict({}, batch_size=[])
        for key in self._keys:
            out[key] = getattr(self, _sep(key))
        return out

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        train = self.train_()
        obs = td["observation"]
        key = random.fold_in(random.fold_in(random.key(self.seed), self.worker), self.calls)
        with torch.no_grad():
            action, log_prob = train.explore(self.params(), obs, key, self.env_steps.clone())
        self.calls += 1
        batch = obs.shape[0] if obs.dim() > len(train.env.observation_space.shape) else 1
        self.env_steps += batch * self.num_workers
        td["frl_action"] = action
        td["frl_log_prob"] = log_prob
        td["action"] = clip_action(train.env, action)
        return td


def policy_weights(policy: ExplorePolicy, params: TensorDictBase, env_steps: int | None = None) -> TensorDict:
    """The weights TensorDict ``update_policy_weights_`` takes: ``params`` under the policy's names,
    and the run's ``env_steps`` so far (default: the policy's own count)."""
    weights = {_sep(key): params[key].detach().contiguous() for key in policy._keys}
    steps = policy.env_steps if env_steps is None else torch.tensor(env_steps, dtype=torch.int64)
    return TensorDict({**weights, "env_steps": steps}, batch_size=[])


def _make_env(env_id: str, num_envs: int, seed: int):
    from frl import envs

    if envs.is_gym_id(env_id):
        return envs.make(env_id).make_env(seed=seed, train=True, num_envs=num_envs)
    return envs.to_torchrl(envs.make(env_id), num_envs=num_envs, seed=seed)


KINDS = ("multi-sync", "multi-async", "distributed")


def make_multi_collector(
    algorithm: str,
    config: Any,
    params: TensorDictBase,
    *,
    num_workers: int = 2,
    envs_per_worker: int = 1,
    steps_per_env: int = 64,
    seed: int = 0,
    kind: str = "multi-sync",
    launcher: str = "mp",
):
    """A TorchRL multi-process collector for ``algorithm`` with ``config`` on ``config.env_id``.

    ``kind``: ``"multi-sync"`` (``MultiSyncCollector``: one batch of ``num_workers *
    envs_per_worker * steps_per_env`` frames, ``[workers, envs, T]``), ``"multi-async"``
    (``MultiAsyncCollector``: each batch is one worker's ``[envs, T]``, whichever is ready) or
    ``"distributed"`` (TorchRL's ``DistributedCollector``, synchronous, over ``torch.distributed``
    with gloo; ``launcher="mp"`` starts the workers as local processes, ``"submitit"`` on a
    cluster). Worker ``w``'s environments are seeded ``seed * 1000 + w``. Returns
    ``(collector, policy)``; push new parameters with
    ``collector.update_policy_weights_(policy_weights(policy, params, env_steps))``.
    """
    from torchrl.collectors import MultiAsyncCollector, MultiSyncCollector
    from torchrl.weight_update import MultiProcessWeightSyncScheme

    if num_workers < 1 or envs_per_worker < 1 or steps_per_env < 1:
        raise ValueError(
            "make_multi_collector: `num_workers`, `envs_per_worker` and `steps_per_env` must be positive"
        )
    if kind not in KINDS:
        raise ValueError(f"make_multi_collector: `kind` must be one of {KINDS}, got {kind!r}")
    policy = ExplorePolicy(algorithm, config, params, seed, num_workers)
    creators = [
        partial(_make_env, config.env_id, envs_per_worker, seed * 1000 + w) for w in range(num_workers)
    ]
    frames = num_workers * envs_per_worker * steps_per_env
    if kind == "distributed":
        import os

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
        weight_sync_schemes={"policy": MultiProcessWeightSyncScheme()},
    )
    if kind == "multi-async":
        return MultiAsyncCollector(creators, frames_per_batch=frames // num_workers, **common), policy
    return MultiSyncCollector(creators, frames_per_batch=frames, cat_results="stack", **common), policy


def worker_policy(policy: ExplorePolicy, worker: int) -> ExplorePolicy:
    """``policy`` as worker ``worker``'s (a ``policy_factory`` for TorchRL's multi collectors)."""
    policy.worker = worker
    return policy


def to_frl_batch(batch: TensorDictBase, dtype: torch.dtype = torch.float32) -> TensorDict:
    """A collector batch ``[..., T]`` (time last, TorchRL's layout) as frl's ``[T, ...]`` transitions."""
    nxt = batch["next"]

    def sq(x: Tensor) -> Tensor:
        return x.squeeze(-1) if x.shape[-1:] == (1,) and x.dim() == batch.batch_dims + 1 else x

    out = TensorDict(
        {
            "observation": batch["observation"],
            "action": batch["frl_action"],
            "log_prob": batch["frl_log_prob"].to(dtype),
            "next": {
                "observation": nxt["observation"],
                "reward": sq(nxt["reward"]).to(dtype),
                "terminated": sq(nxt["terminated"]),
                "truncated": sq(nxt["truncated"]),
                "done": sq(nxt["done"]),
            },
        },
        batch_size=batch.batch_size,
    )
    return out.permute(-1, *range(batch.batch_dims - 1))
