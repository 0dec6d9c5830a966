"""The TorchRL source: collectors step environments outside the graph and feed the same units.

For an environment that is not pure (``gym:<id>``, any gymnasium simulator), each member (seed)
gets its own TorchRL ``Collector`` over its own ``SerialEnv`` of ``num_envs`` environments (or a
``MultiSyncCollector`` over ``workers`` processes), seeded from the member's seed. The policy is
:class:`BehaviourPolicy`: the agent's ``Train.explore`` as a TorchRL module, on the member's
parameters and hyper-parameters (loaded into it before each batch; pushed to worker processes
as weights), with ``frl.random`` keys that are a function of the seed, the worker and the step,
so a run (and a resumed run) is reproducible.

Each iteration's batch ``[E, T]`` (TorchRL's layout, time last, as the agent's segments) goes
through :func:`to_frl_batch` into the compiled ``store`` unit, which writes it into the agent's
data with :func:`frl.algos.collect.store` and takes the episode statistics from TorchRL's
``RewardSum``/``StepCounter`` (raw returns, whatever the reward transforms). Then the agent's
learning units run unchanged. Evaluation runs the deterministic policy on a separate
environment per member (the training observation statistics, frozen; raw rewards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.utils import _pytree as pytree

import frl
from frl import random
from frl._compile import named
from frl.algos.collect import episode_metrics, store
from frl.algos.networks import clip_action
from frl.algos.train import Train, Unit
from frl.driver.compiled import graph_device
from frl.driver.evaluation import episode_returns
from frl.driver.sources import RunContext
from frl.losses import squeeze_trailing

__all__ = ["STREAM", "BehaviourPolicy", "Collectors", "policy_weights", "to_frl_batch"]

STREAM = 0x636F6C6C
"""``fold_in`` constant of a member's exploration key stream ("coll")."""


def _sep(key: Any) -> str:
    return "__".join(key) if isinstance(key, tuple) else key


class BehaviourPolicy(torch.nn.Module):
    """``Train.explore`` as a TorchRL policy: reads ``observation``, writes ``action`` (clipped to
    the action box, for the environment), ``frl_action`` (what the learner stores) and
    ``action_log_prob`` (for a multi-agent environment: reads its group, ``{group: {...}}``, and
    writes the three under the group, one per agent).

    Parameters and hyper-parameters are buffers (``load`` copies a member's in; a worker process
    receives them as weights, with ``policy_weights``), as are the run's ``env_steps`` and the
    ``calls`` count that the key ``fold_in(fold_in(stream, worker), calls)`` is drawn with. It
    pickles as ``train.factory``, ``train.config``, ``train.env`` and its buffers, and rebuilds
    the agent in the worker.
    """

    def __init__(
        self,
        train: Train,
        params: TensorDictBase,
        hyperparams: TensorDictBase,
        seed: int,
        num_workers: int = 1,
        compiled: Callable | None = None,
    ) -> None:
        super().__init__()
        self.factory, self.config, self.env = train.factory, train.config, train.env
        self.num_workers, self.worker = num_workers, 0
        self._train: Train | None = train
        self._compiled = compiled
        self._flat: list[Tensor] | None = None
        self._keys = {
            "params": list(params.keys(True, True)),
            "hyperparams": list(hyperparams.keys(True, True)),
        }
        for group, tree in (("params", params), ("hyperparams", hyperparams)):
            for key in self._keys[group]:
                self.register_buffer(f"{group}__{_sep(key)}", tree.get(key).detach().clone().contiguous())
        self.register_buffer("stream", random.fold_in(random.key(seed), STREAM))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.int64))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_train"], state["_compiled"], state["_flat"] = None, None, None
        return state

    @property
    def train(self) -> Train:
        if self._train is None:
            self._train = self.factory(self.config, self.env)
        return self._train

    def tree(self, group: str) -> TensorDict:
        """The ``params`` or ``hyperparams`` the policy holds, as a TensorDict."""
        out = TensorDict({}, batch_size=[])
        for key in self._keys[group]:
            out.set(key, getattr(self, f"{group}__{_sep(key)}"))
        return out

    def load(self, params: TensorDictBase, hyperparams: TensorDictBase, env_steps: int, calls: int) -> None:
        """Copy a member's current parameters, hyper-parameters and counts in."""
        with torch.no_grad():
            for group, tree in (("params", params), ("hyperparams", hyperparams)):
                for key in self._keys[group]:
                    getattr(self, f"{group}__{_sep(key)}").copy_(tree.get(key))
            self.env_steps.fill_(env_steps)
            self.calls.fill_(calls)

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        group = getattr(self.env, "group", None) if getattr(self.env, "multi_agent", False) else None
        obs = td["observation"] if group is None else {group: td[group].to_dict()}
        stream = random.fold_in(self.stream, self.worker)
        with torch.no_grad():
            if self._compiled is not None:
                if self._flat is None:  # the buffers themselves: load() updates them in place
                    self._flat = [
                        getattr(self, f"{g}__{_sep(k)}")
                        for g in ("params", "hyperparams")
                        for k in self._keys[g]
                    ]
                action, log_prob = self._compiled(*self._flat, obs, stream, self.calls, self.env_steps)
            else:
                key = random.fold_in(stream, self.calls)
                action, log_prob = self.train.explore(
                    self.tree("params"), self.tree("hyperparams"), obs, key, self.env_steps.clone()
                )
        self.calls += 1
        self.env_steps += td.batch_size.numel() * self.num_workers
        prefix = () if group is None else (group,)
        td[(*prefix, "frl_action")] = action
        td[(*prefix, "action_log_prob")] = log_prob
        td[(*prefix, "action")] = clip_action(self.env, action)
        return td


def compiled_explore(train: Train, params: TensorDictBase, hyperparams: TensorDictBase) -> Callable:
    """``Train.explore`` compiled once over flat inputs ``(*params, *hyperparams, obs, stream,
    calls, env_steps)``; the key is drawn inside the graph (one call per environment step)."""
    p_spec, h_spec = pytree.tree_structure(params), pytree.tree_structure(hyperparams)
    n_p, n_h = p_spec.num_leaves, h_spec.num_leaves

    def flat(*xs: Tensor) -> tuple[Tensor, Tensor]:
        p = pytree.tree_unflatten(list(xs[:n_p]), p_spec)
        h = pytree.tree_unflatten(list(xs[n_p : n_p + n_h]), h_spec)
        obs, stream, calls, env_steps = xs[n_p + n_h :]
        return train.explore(p, h, obs, random.fold_in(stream, calls), env_steps)

    return frl.compile(named("frl_explore", flat), device=graph_device(pytree.tree_leaves(params)))


def policy_weights(
    policy: BehaviourPolicy, params: TensorDictBase, hyperparams: TensorDictBase, env_steps: int, calls: int
) -> TensorDict:
    """The weights ``update_policy_weights_`` ships to worker processes: a member's parameters,
    hyper-parameters and the counts its keys and schedules read."""
    weights = {f"params__{_sep(k)}": params.get(k).detach().contiguous() for k in policy._keys["params"]}
    weights.update(
        {f"hyperparams__{_sep(k)}": hyperparams.get(k).detach() for k in policy._keys["hyperparams"]}
    )
    return TensorDict(
        {
            **weights,
            "stream": policy.stream,
            "calls": torch.tensor(calls, dtype=torch.int64),
            "env_steps": torch.tensor(env_steps, dtype=torch.int64),
        },
        batch_size=[],
    )


def worker_policy(policy: BehaviourPolicy, worker: int) -> BehaviourPolicy:
    """``policy`` as worker ``worker``'s (a ``policy_factory`` for TorchRL's multi collectors)."""
    policy.worker = worker
    return policy


def to_frl_batch(
    batch: TensorDictBase, dtype: torch.dtype = torch.float32, group: str | None = None
) -> TensorDict:
    """A collector batch (time last: ``[E, T]``, ``[T]`` or ``[W, E, T]``) as frl transitions
    ``[..., T]`` in TorchRL's keys, per-step scalars squeezed to one value per step: the action
    the learner stores (``frl_action``) as ``action``, rewards in ``dtype``, and the raw
    ``episode_reward``/``step_count`` of ``RewardSum``/``StepCounter`` where the batch has them.
    With a multi-agent ``group``, the agents' entries stay under it (``(group, "observation")
    [..., T, n, O]``, ``action_mask`` where the environment gives one, each agent's
    ``("next", group, "reward") [..., T, n]``) beside the team's reward and flags."""
    batch = squeeze_trailing(batch, (*_SCALARS, "action_log_prob"))
    nxt = batch["next"]
    if group is not None:
        return _multi_agent_batch(batch, group, dtype)
    return TensorDict(
        {
            "observation": batch["observation"],
            "action": batch["frl_action"],
            "action_log_prob": batch["action_log_prob"].to(dtype),
            "next": {"observation": nxt["observation"], **_team_next(nxt, dtype)},
        },
        batch_size=batch.batch_size,
    )


def _team_next(nxt: TensorDictBase, dtype: torch.dtype) -> dict[str, Tensor]:
    """The reward (in ``dtype``), the flags and the raw ``episode_reward``/``step_count`` of
    ``RewardSum``/``StepCounter`` where the batch has them, from a batch's ``next``."""
    out = {"reward": nxt["reward"].to(dtype), **{k: nxt[k] for k in ("terminated", "truncated", "done")}}
    for key, kind in (("episode_reward", dtype), ("step_count", torch.int64)):
        if key in nxt:
            out[key] = nxt[key].to(kind)
    return out


def _multi_agent_batch(batch: TensorDictBase, group: str, dtype: torch.dtype) -> TensorDict:
    nxt = batch["next"]
    masks = ("action_mask",) if (group, "action_mask") in batch.keys(True, True) else ()
    agents = {k: batch[group, k] for k in ("observation", *masks)}
    agents["action"] = batch[group, "frl_action"]
    agents["action_log_prob"] = batch[group, "action_log_prob"].to(dtype)
    after = {k: nxt[group, k] for k in ("observation", *masks)}
    if (group, "reward") in nxt.keys(True, True):
        after["reward"] = squeeze_trailing(nxt[group], ("reward",))["reward"].to(dtype)
    return TensorDict(
        {group: agents, "next": {group: after, **_team_next(nxt, dtype)}}, batch_size=batch.batch_size
    )


_SCALARS = tuple(
    ("next", k) for k in ("reward", "terminated", "truncated", "done", "episode_reward", "step_count")
)


def _last_where(flag: Tensor, value: Tensor, default: Tensor) -> Tensor:
    """``value[..., t*]`` at the last ``t`` (the last dim) where ``flag``, else ``default``."""
    T = flag.shape[-1]
    last = torch.argmax(
        flag.to(torch.int64) * torch.arange(1, T + 1, device=flag.device), dim=-1, keepdim=True
    )
    picked = torch.gather(value, -1, last).squeeze(-1)
    return torch.where(flag.any(-1), picked, default)


def make_store(train: Train) -> Callable:
    """The unit ``store(state, batch)``: ``batch`` (one collector batch, :func:`to_frl_batch`,
    ``[E, T]``) into the agent's data, with the episode statistics of its running sums."""

    def store_batch(state: TensorDictBase, batch: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        nxt = batch["next"]
        new = store(state, batch.exclude(("next", "episode_reward"), ("next", "step_count")), train.consumes)
        done, ret, length = nxt["done"], nxt["episode_reward"], nxt["step_count"]
        episodes = state["episodes"]
        running = {
            "return": torch.where(done[..., -1], torch.zeros_like(ret[..., -1]), ret[..., -1]),
            "length": torch.where(done[..., -1], torch.zeros_like(length[..., -1]), length[..., -1]),
            "last_return": _last_where(done, ret, episodes["last_return"]),
            "last_length": _last_where(done, length, episodes["last_length"]),
            "count": episodes["count"] + done.sum(),
        }
        new["episodes"] = TensorDict(running, batch_size=[])
        return new, episode_metrics(running)

    return store_batch


@dataclass(frozen=True)
class Collectors:
    """TorchRL collectors for every member (see the module docstring).

    Attributes:
      workers: worker processes stepping each member's environments (a TorchRL
        ``MultiSyncCollector``; must divide ``num_envs``; 1: a ``Collector`` in this process).
    """

    workers: int = 1

    def open(self, run: RunContext) -> _CollectorFeed:
        env = run.train.env
        if not hasattr(env, "make_env"):
            raise ValueError(
                f"run: Collectors need an environment that builds TorchRL environments (gym:<id>); "
                f"{env.id} is pure: it is stepped inside the compiled units (source=PureEnv())"
            )
        E = run.train.consumes.num_envs
        if (
            isinstance(self.workers, bool)
            or not isinstance(self.workers, int)
            or self.workers < 1
            or E % self.workers
        ):
            raise ValueError(
                f"run: collector `workers` ({self.workers!r}) must be a positive divisor of num_envs ({E})"
            )
        if self.workers > 1 and (env.norm_obs or env.norm_reward):
            raise ValueError(
                "run: collector `workers` > 1 with --norm-obs/--norm-reward: each worker would keep its own "
                "statistics; use one worker"
            )
        return _CollectorFeed(run, self.workers)


class _CollectorFeed:
    guarded_between_units = True  # inputs() runs the compiled policy, which keeps its guards

    def __init__(self, run: RunContext, workers: int) -> None:
        train = run.train
        self.train, self.members, self.batched, self.workers = train, list(run.members), run.batched, workers
        self.compiled, self.eval_episodes = run.compiled, run.eval_episodes
        self.E, self.T = train.consumes.num_envs, train.consumes.num_steps
        self.collect = (Unit("store", make_store(train)),)
        self.learn = train.learn
        self.policies: list[BehaviourPolicy] = []
        self.collectors: list[Any] = []
        self.iterators: list[Any] = []
        self._env_states: list[dict] | None = None
        self._started_at: int | None = None

    # -- collection --------------------------------------------------------------------------

    def _member(self, tree: TensorDictBase, m: int) -> TensorDictBase:
        return tree[m] if self.batched else tree

    def _start(self, iteration: int, state: TensorDictBase) -> None:
        """One collector per member, seeded from its seed and the iteration (a resumed run starts
        fresh episodes; normalisation statistics come back from the checkpoint)."""
        from torchrl.collectors import Collector, MultiSyncCollector
        from torchrl.weight_update import MultiProcessWeightSyncScheme

        from frl.envs.gymnasium import load_norm_state

        self.close()
        params, hyperparams = state["params"], state["hyperparams"]
        explore = None
        if self.compiled and self.workers == 1:
            explore = compiled_explore(self.train, self._member(params, 0), self._member(hyperparams, 0))
        for m, member in enumerate(self.members):
            seed = int(member["seed"]) * 1_000_003 + iteration
            policy = BehaviourPolicy(
                self.train,
                self._member(params, m),
                self._member(hyperparams, m),
                int(member["seed"]),
                self.workers,
                explore,
            )
            common = dict(
                frames_per_batch=self.E * self.T,
                total_frames=-1,
                env_device="cpu",
                policy_device="cpu",
                trust_policy=True,
                auto_register_policy_transforms=False,  # the policy reads the observation only
            )
            if self.workers == 1:
                env = self.train.env.make_env(seed=seed, train=True, num_envs=self.E)
                load_norm_state(env, None if self._env_states is None else self._env_states[m])
                collector: Any = Collector(env, policy=policy, **common)
            else:
                make = self.train.env.make_env
                creators = [
                    partial(make, seed=seed * 64 + w, train=True, num_envs=self.E // self.workers)
                    for w in range(self.workers)
                ]
                collector = MultiSyncCollector(
                    creators,
                    policy_factory=[partial(worker_policy, policy, w) for w in range(self.workers)],
                    cat_results="stack",
                    weight_sync_schemes={"policy": MultiProcessWeightSyncScheme()},
                    **common,
                )
            self.policies.append(policy)
            self.collectors.append(collector)
            self.iterators.append(iter(collector))
        self._started_at = iteration

    def inputs(self, iteration: int, state: Callable[[], TensorDictBase]) -> tuple[TensorDict]:
        """Batch ``iteration`` of every member's collector, ``[M, E, T]`` (``[E, T]`` for one member).

        The policies' keys and step counts are functions of the iteration, so a resumed run draws
        the same keys as an uninterrupted one."""
        current = state()
        if self._started_at is None:
            self._start(iteration, current)
        params, hyperparams = current["params"], current["hyperparams"]
        batches = []
        for m, (policy, collector, it) in enumerate(
            zip(self.policies, self.collectors, self.iterators, strict=True)
        ):
            counts = dict(env_steps=iteration * self.E * self.T, calls=iteration * self.T)
            p, h = self._member(params, m), self._member(hyperparams, m)
            if self.workers == 1:
                policy.load(p, h, **counts)
                batch = next(it)
            else:
                collector.update_policy_weights_(policy_weights(policy, p, h, **counts))
                batch = next(it).reshape(self.E, self.T)  # [workers, envs per worker, T]
            if batch.batch_dims == 1:
                batch = batch.unsqueeze(0)
            group = self.train.env.group if getattr(self.train.env, "multi_agent", False) else None
            batches.append(to_frl_batch(batch, self.train.env.dtype, group))
        return (torch.stack(batches) if self.batched else batches[0],)

    def env_states(self) -> list[dict] | None:
        """The training environments' normalisation statistics (None with worker processes,
        which never normalise)."""
        from frl.envs.gymnasium import norm_state

        if self.workers > 1 or not self.collectors:
            return self._env_states
        return [norm_state(c.env) for c in self.collectors]

    def restore(self, env_states: list[dict] | None) -> None:
        self._env_states = env_states

    def close(self) -> None:
        if self.collectors and self.workers == 1:
            self._env_states = self.env_states()
        for c in self.collectors:
            c.shutdown()
        self.policies, self.collectors, self.iterators = [], [], []
        self._started_at = None

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, params: TensorDictBase, steps: int) -> list[float]:
        """Mean raw return of the deterministic policy per member (the training environment's
        observation statistics, frozen)."""
        states = self.env_states() or [None] * len(self.members)
        returns = []
        for m, member in enumerate(self.members):
            seed = int(member["seed"]) * 1_000_003 + steps
            ret = episode_returns(self.train, self._member(params, m), seed, self.eval_episodes, states[m])
            returns.append(float(ret.mean()))
        return returns

    @property
    def first_call_s(self) -> float:
        return 0.0
