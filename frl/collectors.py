"""The gymnasium path of ``frl.run``: TorchRL collectors feed the same compiled pure units.

For a ``Train`` whose environment is a :class:`frl.envs.GymEnvironment`, ``frl.run`` replaces
the pure ``collect`` unit with a :class:`Feed`:

1. each member (seed) has its own TorchRL ``Collector`` over its own environment (``SerialEnv``
   of ``num_envs`` gymnasium environments), seeded from the member's seed; its policy is the
   agent's ``Train.explore`` on the member's current parameters (compiled once, flat inputs),
   with keys from ``frl.random`` (``fold_in(key(seed), call)``), so a run is reproducible;
2. one collector batch per iteration (``steps_per_iteration`` frames per member, ``[E, T]``) is
   converted to frl's layout (time-major ``[T, E]``, trailing ``1`` squeezed) and written into
   the ``incoming`` leaves of the training state;
3. the ``store`` unit (pure, compiled and vmapped over members like every other unit) moves it
   into the replay buffer (off-policy) or the trajectory (on-policy), updates episode statistics
   from TorchRL's ``RewardSum``/``StepCounter`` (raw returns, whatever the reward transforms)
   and ``env_steps``; then the agent's own learning units run unchanged.

Evaluation uses a separate environment per member (observation statistics copied from the
training environment and frozen; rewards raw) and the deterministic ``Train.policy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.utils import _pytree as pytree

import frl
from frl import buffers, random
from frl._compile import named
from frl.algos.base import Train, Unit, episode_metrics
from frl.algos.rollout import clip_action
from frl.envs.gymnasium import GymEnvironment, load_norm_state, norm_state

__all__ = ["Feed", "make_store"]

_STREAM = 0x636F6C6C  # fold_in constant of the exploration key stream ("coll")


def _incoming(train: Train, T: int, E: int) -> TensorDict:
    """Zeros shaped like one collector batch in frl's layout: ``[T, E]``."""
    env = train.env
    obs = torch.zeros(T, E, *env.observation_space.shape, dtype=env.obs_dtype)
    if env.discrete:
        action = torch.zeros(T, E, dtype=torch.int64)
    else:
        action = torch.zeros(T, E, *env.action_space.shape, dtype=env.dtype)
    flag = torch.zeros(T, E, dtype=torch.bool)
    zeros = torch.zeros(T, E, dtype=env.dtype)
    return TensorDict(
        {
            "observation": obs,
            "action": action,
            "log_prob": zeros,
            "next": {
                "observation": obs.clone(),
                "reward": zeros.clone(),
                "terminated": flag,
                "truncated": flag.clone(),
                "done": flag.clone(),
                "episode_return": zeros.clone(),
                "episode_length": torch.zeros(T, E, dtype=torch.int64),
            },
        },
        batch_size=[T, E],
    )


def _last_where(flag: Tensor, value: Tensor, default: Tensor) -> Tensor:
    """``value[t*]`` at the last ``t`` (dim 0) where ``flag``, else ``default``."""
    T = flag.shape[0]
    order = torch.arange(1, T + 1, device=flag.device).reshape(T, *([1] * (flag.dim() - 1)))
    last = torch.argmax(flag.to(torch.int64) * order, dim=0, keepdim=True)
    picked = torch.gather(value, 0, last).squeeze(0)
    return torch.where(flag.any(0), picked, default)


def make_store(kind: str) -> Callable[[TensorDictBase], tuple[TensorDict, TensorDict]]:
    """The unit that moves ``incoming`` (one collector batch, ``[T, E]``) into the agent's state.

    ``kind="buffer"``: transitions appended to the replay buffer step-major (as the pure collect
    unit writes them); ``kind="traj"``: the trajectory replaced (``t = T``). Both update the
    episode statistics and ``env_steps``.
    """
    if kind not in ("buffer", "traj"):
        raise ValueError(f"make_store: `kind` must be 'buffer' or 'traj', got {kind!r}")

    def store(state: TensorDictBase) -> tuple[TensorDict, TensorDict]:
        inc = state["incoming"]
        nxt = inc["next"]
        T, E = inc.batch_size
        new = state.copy()
        if kind == "buffer":
            transitions = TensorDict(
                {
                    "observation": inc["observation"],
                    "action": inc["action"],
                    "next": {k: nxt[k] for k in ("observation", "reward", "terminated", "truncated", "done")},
                },
                batch_size=[T, E],
            ).reshape(T * E)
            new["buffer"] = buffers.add(state["buffer"], transitions)
        else:
            new["traj"] = TensorDict(
                {
                    "obs": inc["observation"],
                    "action": inc["action"],
                    "log_prob": inc["log_prob"],
                    "reward": nxt["reward"],
                    "terminated": nxt["terminated"],
                    "done": nxt["done"],
                    "final_obs": nxt["observation"],
                },
                batch_size=[T, E],
            )
            new["t"] = torch.full_like(state["t"], T)
        done = nxt["done"]
        stats = state["stats"]
        ret, length = nxt["episode_return"], nxt["episode_length"]
        new_stats = {
            "return": torch.where(done[-1], torch.zeros_like(ret[-1]), ret[-1]),
            "length": torch.where(done[-1], torch.zeros_like(length[-1]), length[-1]),
            "last_return": _last_where(done, ret, stats["last_return"]),
            "last_length": _last_where(done, length, stats["last_length"]),
            "episodes": stats["episodes"] + done.sum(),
        }
        new["stats"] = TensorDict(new_stats, batch_size=[])
        new["env_steps"] = state["env_steps"] + T * E
        return new, episode_metrics(new_stats)

    return store


class _Policy:
    """The collector's policy for one member: ``Train.explore`` on that member's parameters."""

    def __init__(self, feed: Feed, member: int) -> None:
        self.feed, self.member = feed, member

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        feed, m = self.feed, self.member
        obs = td["observation"]
        calls = feed.calls[m]
        counters = torch.tensor([calls, feed.env_steps[m]], dtype=torch.int64)
        action, log_prob = feed.explore(feed.member_params(m), obs, feed.stream_keys[m], counters)
        feed.calls[m] = calls + 1
        feed.env_steps[m] += obs.shape[0] if obs.dim() > len(feed.obs_shape) else 1
        td["frl_action"] = action
        td["frl_log_prob"] = log_prob
        td["action"] = clip_action(feed.env, action)
        return td


class Feed:
    """Collectors for every member of a run and the bridge into the training state.

    Args:
      train: an agent whose ``env`` is a :class:`GymEnvironment` (it must have ``explore``).
      members: the run's members (``{"seed": s, ...}``), in state order.
      compile: compile the exploration policy (flat inputs, one graph for all members).
      batched: the state is stacked over members.
    """

    def __init__(
        self,
        train: Train,
        members: Sequence[dict[str, Any]],
        compile: bool,
        batched: bool,
        workers: int = 1,
    ) -> None:
        env = train.env
        if not isinstance(env, GymEnvironment):
            raise TypeError(f"Feed: expected a gymnasium environment, got {type(env)!r}")
        if train.explore is None:
            raise ValueError(f"Feed: {type(train.config).__module__} has no `explore` policy for collectors")
        self.train, self.env, self.members, self.batched = train, env, list(members), batched
        self.num_envs = int(getattr(train.config, "num_envs", 1))
        self.frames = train.steps_per_iteration
        if self.frames % self.num_envs:
            raise ValueError(
                f"Feed: {self.frames} steps per iteration do not split over {self.num_envs} envs"
            )
        self.T = self.frames // self.num_envs
        self.workers = workers
        if workers < 1 or self.num_envs % workers:
            raise ValueError(
                f"Feed: `collector_workers` ({workers}) must be a positive divisor of "
                f"num_envs ({self.num_envs})"
            )
        if workers > 1 and (env.norm_obs or env.norm_reward):
            raise ValueError(
                "Feed: `collector_workers` > 1 with --norm-obs/--norm-reward: each worker would keep its own "
                "statistics; use one worker"
            )
        self.policies: list[Any] = []
        self.obs_shape = tuple(env.observation_space.shape)
        self.compile = compile
        self.stream_keys = [random.fold_in(random.key(m["seed"]), _STREAM) for m in self.members]
        self.calls = [0] * len(self.members)
        self.env_steps = [0] * len(self.members)
        self.collectors: list[Any] = []
        self.iterators: list[Any] = []
        self._explore: Callable | None = None
        self._leaves: list[Tensor] | None = None
        self._state: TensorDictBase | None = None
        self._param_index: list[int] = []
        self._param_spec: pytree.TreeSpec | None = None
        self._incoming_index: list[tuple[Any, int]] = []

    # -- the state ---------------------------------------------------------------------------

    def units(self, state: TensorDictBase) -> list[Unit]:
        """``store`` then the agent's units other than its pure ``collect``: ``store`` fills the
        replay buffer if the state has one, else the trajectory."""
        kind = "buffer" if "buffer" in state else "traj"
        return [Unit("store", make_store(kind), 1)] + [u for u in self.train.units if u.name != "collect"]

    def add_incoming(self, state: TensorDictBase) -> TensorDictBase:
        """``state`` with the ``incoming`` placeholders the collectors write into."""
        inc = _incoming(self.train, self.T, self.num_envs)
        if self.batched:
            inc = inc.expand(len(self.members), *inc.batch_size).clone()
        state = state.copy()
        state["incoming"] = inc
        return state

    def bind(self, leaves: list[Tensor] | None, state_spec: pytree.TreeSpec | None, state: Any) -> None:
        """Locate the parameter and ``incoming`` leaves of the flat state (compiled runs)."""
        self._state = state
        if leaves is None:
            return
        marked = pytree.tree_unflatten([torch.tensor(i) for i in range(len(leaves))], state_spec)
        self._param_index = [int(x) for x in pytree.tree_leaves(marked["learner", "params"])]
        self._param_spec = pytree.tree_structure(marked["learner", "params"])
        self._incoming_index = [
            (key, int(i)) for key, i in marked["incoming"].items(include_nested=True, leaves_only=True)
        ]
        self._leaves = leaves

    def member_params(self, m: int) -> Any:
        if self._leaves is not None:
            leaves = [self._leaves[i] for i in self._param_index]
            if self.batched:
                leaves = [x[m] for x in leaves]
            return leaves
        params = self._state["learner", "params"]
        return params[m] if self.batched else params

    # -- exploration -----------------------------------------------------------------------

    def explore(self, params: Any, obs: Tensor, stream: Tensor, counters: Tensor) -> tuple[Tensor, Tensor]:
        """``Train.explore`` with the key ``fold_in(stream, counters[0])`` at ``env_steps =
        counters[1]`` (the key is derived inside the compiled call: one call per step)."""
        fn = self.train.explore

        def explore(params: Any, obs: Tensor, stream: Tensor, counters: Tensor) -> tuple[Tensor, Tensor]:
            return fn(params, obs, random.fold_in(stream, counters[0]), counters[1])

        if self._leaves is None:
            return explore(params, obs, stream, counters)
        if self._explore is None:
            spec, n = self._param_spec, len(self._param_index)

            def flat(*xs: Tensor) -> tuple[Tensor, Tensor]:
                return explore(pytree.tree_unflatten(list(xs[:n]), spec), xs[n], xs[n + 1], xs[n + 2])

            self._explore = frl.compile(named("frl_explore", flat)) if self.compile else flat
        return self._explore(*params, obs, stream, counters)

    # -- collection --------------------------------------------------------------------------

    def start(self, iteration: int, env_states: list[dict] | None = None) -> None:
        """Build one collector per member, seeded from its seed and the iteration (a resumed
        run starts fresh episodes; normalisation statistics come back from ``env_states``)."""
        from torchrl.collectors import Collector

        self.close()
        if self.workers > 1:
            self._start_workers(iteration)
            return
        for m, member in enumerate(self.members):
            # seeded before the collector exists: it resets the environment when it is built
            seed = int(member["seed"]) * 1_000_003 + iteration
            env = self.env.make_env(seed=seed, train=True, num_envs=self.num_envs)
            load_norm_state(env, None if env_states is None else env_states[m])
            collector = Collector(
                env,
                policy=_Policy(self, m),
                frames_per_batch=self.frames,
                total_frames=-1,
                env_device="cpu",
                policy_device="cpu",
                trust_policy=True,
            )
            self.collectors.append(collector)
            self.iterators.append(iter(collector))

    def _start_workers(self, iteration: int) -> None:
        """One TorchRL ``MultiSyncCollector`` per member: ``workers`` processes, each stepping
        ``num_envs / workers`` environments with the member's behaviour policy
        (:class:`frl.distributed.ExplorePolicy`; its keys are ``fold_in(fold_in(key(seed * 1_000_003
        + iteration), worker), call)``); parameters are pushed to the workers before each batch."""
        from torchrl.collectors import MultiSyncCollector
        from torchrl.weight_update import MultiProcessWeightSyncScheme

        from frl.distributed.collection import ExplorePolicy, worker_policy

        algorithm = type(self.train.config).__module__.rsplit(".", 1)[-1]
        per_worker = self.num_envs // self.workers
        for m, member in enumerate(self.members):
            seed = int(member["seed"]) * 1_000_003 + iteration
            policy = ExplorePolicy(algorithm, self.train.config, self._params_td(m), seed, self.workers)
            creators = [
                partial(self.env.make_env, seed=seed * 64 + w, train=True, num_envs=per_worker)
                for w in range(self.workers)
            ]
            collector = MultiSyncCollector(
                creators,
                policy_factory=[partial(worker_policy, policy, w) for w in range(self.workers)],
                frames_per_batch=self.frames,
                total_frames=-1,
                env_device="cpu",
                policy_device="cpu",
                trust_policy=True,
                cat_results="stack",
                weight_sync_schemes={"policy": MultiProcessWeightSyncScheme()},
            )
            self.policies.append(policy)
            self.collectors.append(collector)
            self.iterators.append(iter(collector))

    def _params_td(self, m: int) -> TensorDictBase:
        params = self.member_params(m)
        if isinstance(params, list):
            params = pytree.tree_unflatten(params, self._param_spec)
        return params

    def track(self, leaves: list[Tensor] | None, state: TensorDictBase | None) -> None:
        """The latest training state (the collectors' policies read the parameters from it)."""
        self._leaves, self._state = leaves, state

    def collect(self, iteration: int, leaves: list[Tensor] | None, state: TensorDictBase | None) -> Any:
        """Batch ``iteration`` from every member's collector, written into ``incoming``.

        Exploration keys and the step count the policy sees are functions of the iteration, so
        a resumed run draws the same keys as an uninterrupted one.
        """
        self.track(leaves, state)
        batches = []
        for m, it in enumerate(self.iterators):
            self.calls[m] = iteration * self.T
            self.env_steps[m] = iteration * self.frames
            if self.workers > 1:
                from frl.distributed.collection import policy_weights

                weights = policy_weights(self.policies[m], self._params_td(m), iteration * self.frames)
                self.collectors[m].update_policy_weights_(weights)
                batch = next(it)  # [workers, envs per worker, T]
                batches.append(self._to_frl(batch.reshape(self.num_envs, self.T)))
            else:
                batches.append(self._to_frl(next(it)))
        inc = torch.stack(batches) if self.batched else batches[0]
        if leaves is None:
            state = state.copy()
            state["incoming"] = inc
            self._state = state
            return state
        leaves = list(leaves)
        for key, i in self._incoming_index:
            leaves[i] = inc[key].contiguous()
        self._leaves = leaves
        return leaves

    def _to_frl(self, batch: TensorDictBase) -> TensorDict:
        """A collector batch ``[E, T]`` (or ``[T]``) in frl's layout ``[T, E]``."""
        if batch.batch_dims == 1:
            batch = batch.unsqueeze(0)
        nxt = batch["next"]
        out = TensorDict(
            {
                "observation": batch["observation"],
                "action": batch["frl_action"],
                "log_prob": batch["frl_log_prob"].to(self.env.dtype),
                "next": {
                    "observation": nxt["observation"],
                    "reward": nxt["reward"].squeeze(-1).to(self.env.dtype),
                    "terminated": nxt["terminated"].squeeze(-1),
                    "truncated": nxt["truncated"].squeeze(-1),
                    "done": nxt["done"].squeeze(-1),
                    "episode_return": nxt["episode_reward"].squeeze(-1).to(self.env.dtype),
                    "episode_length": nxt["step_count"].squeeze(-1).to(torch.int64),
                },
            },
            batch_size=batch.batch_size,
        )
        return out.transpose(0, 1)

    def env_states(self) -> list[dict] | None:
        """The training environments' transform states (normalisation statistics; None with
        worker processes, which never normalise)."""
        if self.workers > 1:
            return None
        return [norm_state(c.env) for c in self.collectors]

    def close(self) -> None:
        for c in self.collectors:
            c.shutdown()
        self.collectors, self.iterators, self.policies = [], [], []

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, params: TensorDictBase, episodes: int, seed_offset: int) -> list[float]:
        """Mean raw return of ``episodes`` episodes per member with the deterministic policy
        (observation statistics of the member's training environment, frozen)."""
        returns = []
        for m, member in enumerate(self.members):
            p = params[m] if self.batched else params
            stats = norm_state(self.collectors[m].env) if self.collectors and self.workers == 1 else None
            seed = int(member["seed"]) * 1_000_003 + seed_offset
            returns.append(float(evaluate_episodes(self.train, p, seed, episodes, stats).mean()))
        return returns


def evaluate_episodes(
    train: Train, params: TensorDictBase, seed: int, episodes: int, norm: dict | None = None
) -> Tensor:
    """Raw returns ``[episodes]`` of the deterministic ``train.policy`` on a fresh evaluation
    environment seeded with ``seed`` (``norm``: observation statistics from :func:`norm_state`)."""
    env = train.env.make_env(seed=seed, train=False)
    load_norm_state(env, norm, freeze=True)

    def act(obs: Tensor) -> Tensor:
        return clip_action(train.env, train.policy(params, obs))

    try:
        return torch.tensor([_episode(env, act, train.env.max_episode_steps) for _ in range(episodes)])
    finally:
        env.close()


def _episode(env: Any, act: Callable[[Tensor], Tensor], max_steps: int) -> float:
    """The raw return of one episode (at most ``max_steps`` steps)."""
    td = env.reset()
    total = 0.0
    with torch.no_grad():
        for _ in range(max_steps):
            td["action"] = act(td["observation"])
            td = env.step(td)
            total += float(td["next", "reward"].sum())
            if bool(td["next", "done"].any()):
                break
            td = td["next"].exclude("reward", "done", "terminated", "truncated")
    return total if math.isfinite(total) else float("nan")
