"""``frl.run``: train N seeds (and a grid of hyper-parameters) at once, compiled, with the comforts.

::

    train = frl.algos.ppo.make_train(frl.algos.ppo.Config())
    result = frl.run(train, seeds=8, total_steps=500_000, out_dir="runs/ppo")

The training state of every member (seed x hyper-parameter) is stacked on a leading dim and each
pure unit of ``Train`` runs under ``torch.func.vmap``. With ``compile=True`` every unit is
compiled once by ``frl.compile`` through its own named wrapper, taking and returning flat tuples
of tensors (a TensorDict at the compiled boundary costs guard checks on every call); between
units Python loops, and between iterations it evaluates, logs, shows progress, checkpoints and
stops early. Metrics are reduced on the device and only the latest values are kept, so memory
stays flat however long the run.

Seed ``i`` trained inside a batch of N gives the same numbers as seed ``i`` trained alone: all
randomness comes from ``frl.random.key(i)``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torch.func import vmap
from torch.utils import _pytree as pytree

import frl
from frl import checkpoint, random
from frl._compile import named
from frl.algos.base import Train
from frl.collectors import Feed, evaluate_episodes
from frl.envs import GymEnvironment
from frl.logging import RunLogger, iqm
from frl.optim import set_hyperparams

__all__ = ["RunResult", "evaluate", "run"]

Callback = Callable[[dict[str, Any]], bool | None]


@dataclass
class RunResult:
    """What a run returns.

    Attributes:
      state: the final training state, stacked over members ``[M, ...]``.
      members: ``[{"seed": s, **hyper-parameters}]``, one per member, in state order.
      eval_returns: the last evaluation's mean return per member.
      history: one row per log point (env steps, metrics, evaluations).
      wall_s: total seconds; compile_s: seconds spent in first calls of compiled units.
      env_steps_per_s: environment steps of all members per second of the run.
    """

    state: TensorDict
    members: list[dict[str, Any]]
    eval_returns: list[float]
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    compile_s: float = 0.0
    env_steps_per_s: float = 0.0
    env_steps: int = 0


# --------------------------------------------------------------------------------------
# Compiled units over flat tuples of tensors
# --------------------------------------------------------------------------------------


def _canonical_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _canonical(x: Tensor) -> Tensor:
    """``x`` with row-major strides, so compiled units see the same strides on every call.

    Dynamo guards on strides, also of size-1 dims (which ``contiguous()`` leaves as they are) and
    of expanded dims: without this a unit recompiles whenever a layout drifts. A contiguous
    tensor gets a free ``as_strided`` view; an expanded one a copy.
    """
    strides = _canonical_strides(x.shape)
    if x.stride() == strides:
        return x
    if not x.is_contiguous():
        x = x.contiguous()
    return x if x.stride() == strides else x.as_strided(x.shape, strides)


def _boundary(leaves: Sequence[Tensor]) -> list[Tensor]:
    """Leaves ready for a compiled call: row-major strides and no two sharing memory.

    Dynamo guards on aliasing (``args[i] is args[j]``), nested compile regions reject aliased
    inputs, and a compiled graph may return one buffer for two equal outputs (two zero
    counters) or views of one tensor: a leaf whose storage was seen already is copied.
    """
    seen: set[int] = set()
    out = []
    for x in leaves:
        x = _canonical(x)
        ptr = x.untyped_storage().data_ptr() if x.numel() else -id(x)
        if ptr in seen:
            x = _canonical(x.clone())
            ptr = x.untyped_storage().data_ptr() if x.numel() else -id(x)
        seen.add(ptr)
        out.append(x)
    return out


class _StateUnit:
    """A unit ``state -> (state, metrics)`` over the flat leaves of the state, vmapped over members.

    Compiled units take and return flat tuples of tensors, and the driver keeps the state as
    leaves between calls: no TensorDict crosses the compiled boundary (guards stay cheap) and
    no pytree flattening happens per call. Eager units are called on TensorDicts directly.
    """

    def __init__(self, name: str, fn: Callable, batched: bool, compiled: bool) -> None:
        self.name, self.compiled = name, compiled
        self.fn = vmap(fn) if batched else fn
        self.state_spec: pytree.TreeSpec | None = None
        self.metrics_spec: pytree.TreeSpec | None = None
        self._callable: Callable | None = None
        self._needs_fix: list[tuple[int, bool]] | None = None
        self.first_call_s = 0.0

    def _build(self, state_spec: pytree.TreeSpec) -> Callable:
        fn = self.fn

        def flat(*leaves):
            state, metrics = fn(pytree.tree_unflatten(list(leaves), state_spec))
            # row-major outputs: Inductor writes them so directly (gradients of batched matmuls
            # come out transposed, and Adam's moments would follow) instead of a copy per call
            return (*[x.contiguous() for x in pytree.tree_leaves(state)], *pytree.tree_leaves(metrics))

        return frl.compile(named(f"frl_{self.name}", flat))

    def __call__(self, leaves: list[Tensor], state_spec: pytree.TreeSpec) -> tuple[list[Tensor], TensorDict]:
        if self._callable is None:
            state, metrics = self.fn(pytree.tree_unflatten(leaves, state_spec))  # layout of the outputs
            if pytree.tree_structure(state) != state_spec:
                raise RuntimeError(f"run: unit {self.name!r} changed the structure of the training state")
            self.metrics_spec = pytree.tree_structure(metrics)
            self._callable = self._build(state_spec)
            start = time.perf_counter()
            out = self._callable(*leaves)
            self.first_call_s = time.perf_counter() - start
        else:
            out = self._callable(*leaves)
        n = len(leaves)
        return self._fix_layout(list(out[:n])), pytree.tree_unflatten(list(out[n:]), self.metrics_spec)

    def _fix_layout(self, out: list[Tensor]) -> list[Tensor]:
        """:func:`_boundary` on the outputs, learnt once: a compiled graph returns the same
        strides and the same aliasing on every call, so after the first call only the leaves that
        needed a fix are fixed (the full check costs ~0.3 ms per call on a 74-leaf PPO state)."""
        if self._needs_fix is None:
            fixed = _boundary(out)
            self._needs_fix = [
                (i, a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr())
                for i, (a, b) in enumerate(zip(out, fixed, strict=True))
                if a is not b
            ]
            return fixed
        for i, copied in self._needs_fix:
            # a copy where the graph aliased outputs; a free strided view where only strides differ
            out[i] = _canonical(out[i].clone()) if copied else _canonical(out[i])
        return out


class _Function:
    """A pure function of TensorDicts, vmapped over members and optionally compiled (flat I/O)."""

    def __init__(self, name: str, fn: Callable, batched: bool, compiled: bool) -> None:
        self.name, self.compiled = name, compiled
        self.fn = vmap(fn) if batched else fn
        self._callable: Callable | None = None
        self.out_spec: pytree.TreeSpec | None = None
        self.first_call_s = 0.0

    def __call__(self, *trees: Any) -> Any:
        if not self.compiled:
            return self.fn(*trees)
        flat_in = [pytree.tree_flatten(t) for t in trees]
        leaves = _boundary([leaf for lv, _ in flat_in for leaf in lv])
        if self._callable is None:
            specs = [spec for _, spec in flat_in]
            self.out_spec = pytree.tree_structure(self.fn(*trees))
            fn = self.fn

            def flat(*xs):
                parts, i = [], 0
                for spec in specs:
                    parts.append(pytree.tree_unflatten(list(xs[i : i + spec.num_leaves]), spec))
                    i += spec.num_leaves
                return tuple(pytree.tree_leaves(fn(*parts)))

            self._callable = frl.compile(named(f"frl_{self.name}", flat))
            start = time.perf_counter()
            out = self._callable(*leaves)
            self.first_call_s = time.perf_counter() - start
        else:
            out = self._callable(*leaves)
        return pytree.tree_unflatten(list(out), self.out_spec)


# --------------------------------------------------------------------------------------
# Evaluation: deterministic policy, fixed-length rollouts, first episode per environment
# --------------------------------------------------------------------------------------


def _eval_init(train: Train, key: Tensor, episodes: int) -> dict[str, Any]:
    obs, env_state = train.env.reset(key, num_envs=episodes)
    return {
        "env": {"state": env_state, "obs": obs},
        "return": torch.zeros(episodes, dtype=train.env.dtype),
        "done": torch.zeros(episodes, dtype=torch.bool),
        "key": random.fold_in(key, 1),
    }


def _eval_chunk(train: Train, steps: int) -> Callable[[TensorDictBase, Mapping[str, Any]], dict[str, Any]]:
    def chunk(params: TensorDictBase, ev: Mapping[str, Any]) -> dict[str, Any]:
        key, obs, env_state = ev["key"], ev["env"]["obs"], ev["env"]["state"]
        ret, done = ev["return"], ev["done"]
        for _ in range(steps):
            key, k_env = random.split(key)
            action = train.policy(params, obs)
            obs, env_state, reward, terminated, truncated, _ = train.env.step(k_env, env_state, action)
            ret = ret + torch.where(done, torch.zeros_like(reward), reward)
            done = done | terminated | truncated
        return {"env": {"state": env_state, "obs": obs}, "return": ret, "done": done, "key": key}

    return chunk


def evaluate(
    train: Train, params: TensorDictBase, key: Tensor, episodes: int = 10, env_state: dict | None = None
) -> Tensor:
    """Returns of ``episodes`` episodes with the deterministic policy (eager, one member).

    Every environment runs until its first episode ends (``max_episode_steps`` at most). On a
    gymnasium environment the episodes run one after another on an evaluation environment
    seeded from ``key`` (``env_state``: normalisation statistics saved with a checkpoint).
    """
    if isinstance(train.env, GymEnvironment):
        seed = int(random.bits(key)) % 2**31
        return evaluate_episodes(train, params, seed, episodes, env_state)
    ev = _eval_init(train, key, episodes)
    ev = _eval_chunk(train, train.env.max_episode_steps)(params, ev)
    return ev["return"]


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


def _members(
    seeds: int | Sequence[int], hparams: Mapping[str, Sequence[float]] | None
) -> list[dict[str, Any]]:
    if isinstance(seeds, int) and seeds <= 0:
        raise ValueError(f"run: `seeds` must be positive, got {seeds}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("run: `seeds` must name at least one seed")
    if len(set(seed_list)) != len(seed_list):
        raise ValueError(f"run: `seeds` must be distinct, got {seed_list}")
    grid = (
        [{}]
        if not hparams
        else [dict(zip(hparams, values)) for values in itertools.product(*hparams.values())]
    )
    return [{**combo, "seed": seed} for combo in grid for seed in seed_list]


def _summary(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    mean = sum(finite) / n if n else math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / n) if n else math.nan
    return {
        "mean": mean,
        "std": std,
        "iqm": iqm(finite),
        "min": min(finite, default=math.nan),
        "max": max(finite, default=math.nan),
    }


def run(
    train: Train,
    *,
    seeds: int | Sequence[int] = 1,
    total_steps: int | None = None,
    compile: bool = True,
    eval_every: int | None = None,
    eval_episodes: int = 10,
    eval_chunk: int = 20,
    log_every: int | None = None,
    hparams: Mapping[str, Sequence[float]] | None = None,
    callbacks: Sequence[Callback] = (),
    out_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    save_buffer: bool = True,
    write: bool = True,
    state_check: Callable[[TensorDict], Any] | None = None,
    collector_workers: int = 1,
) -> RunResult:
    """Train every member for ``total_steps`` environment steps (per member).

    Args:
      train: an agent from ``frl.algos.<name>.make_train``.
      seeds: a count (seeds ``0..N-1``) or explicit seeds.
      total_steps: environment steps per member (default: the config's ``total_timesteps``);
        rounded down to whole iterations.
      compile: compile each unit with ``frl.compile`` (else run eagerly).
      eval_every: evaluate the deterministic policy every this many steps (and at the end).
      eval_episodes: episodes per member per evaluation.
      eval_chunk: environment steps per compiled evaluation call.
      log_every: log training metrics every this many steps (default: at evaluations).
      hparams: optimizer hyper-parameters to sweep, e.g. ``{"learning_rate": [1e-3, 3e-4]}``;
        every combination is trained with every seed.
      callbacks: ``callback(row) -> stop?`` called at every log point; returning True stops.
      out_dir: where to write ``metrics.csv``/``metrics.jsonl`` and checkpoints.
      checkpoint_every: checkpoint every this many steps (and at the end), needs ``out_dir``.
      resume: continue from ``out_dir/checkpoint.pt`` (bit-identical to an uninterrupted run).
      progress: show a progress bar.
      device: where the state lives (default CPU).
      save_buffer: keep the replay buffer in checkpoints (else a resumed run refills it before
        learning again).
      write: write logs and checkpoints to ``out_dir`` (data-parallel ranks other than 0 pass
        False: they read ``out_dir`` to resume but never write it).
      state_check: called with the training state at every log point (data-parallel runs
        compare parameters across ranks there).
      collector_workers: gymnasium environments only: step each member's environments in this
        many worker processes (a TorchRL ``MultiSyncCollector``; ``num_envs`` must divide).

    A ``Train`` on a gymnasium environment (``env_id="gym:<id>"``) collects through TorchRL
    collectors, one per member (:mod:`frl.collectors`); everything else is the same.

    Returns:
      :class:`RunResult`.
    """
    cfg_total = getattr(train.config, "total_timesteps", None)
    total_steps = cfg_total if total_steps is None else total_steps
    if not isinstance(total_steps, int) or total_steps <= 0:
        raise ValueError(f"run: `total_steps` must be a positive int, got {total_steps!r}")
    if checkpoint_every is not None and out_dir is None:
        raise ValueError("run: `checkpoint_every` needs an `out_dir`")
    if resume and out_dir is None:
        raise ValueError("run: `resume` needs an `out_dir`")
    per_iteration = train.steps_per_iteration
    iterations = total_steps // per_iteration
    if iterations == 0:
        raise ValueError(
            f"run: `total_steps` ({total_steps}) is less than one iteration ({per_iteration} steps)"
        )
    eval_every = eval_every or total_steps
    log_every = log_every or eval_every
    members = _members(seeds, hparams)
    batched = len(members) > 1
    out = None if out_dir is None else Path(out_dir)
    logger = RunLogger(out if write else None)
    ckpt_path = None if out is None else out / "checkpoint.pt"

    wall_start = time.perf_counter()
    gym = isinstance(train.env, GymEnvironment)
    if collector_workers != 1 and not gym:
        raise ValueError(
            "run: `collector_workers` is for gymnasium environments (gym:<id>); pure environments are "
            "stepped inside the compiled units"
        )
    feed = Feed(train, members, compile, batched, collector_workers) if gym else None
    if feed is None:
        eval_init = _Function("eval_init", lambda k: _eval_init(train, k, eval_episodes), batched, False)
        eval_step = _Function("eval_chunk", _eval_chunk(train, eval_chunk), batched, compile)

    start_iteration, history = 0, []
    env_states, refill_until = None, 0
    if resume and ckpt_path is not None and ckpt_path.exists():
        saved = checkpoint.load(ckpt_path)
        if saved["members"] != members:
            raise ValueError("run: the checkpoint was written for other members (seeds/hparams)")
        state, start_iteration, history = saved["state"], saved["iteration"], saved["history"]
        env_states = saved.get("env_states")
        logger.restart(history)
        if feed is not None and not saved.get("buffer_saved", True):
            state = _fresh_buffer(train, members, batched, state)
            refill_until = start_iteration + _refill_iterations(train, state, batched)
    else:
        keys = torch.stack([random.key(m["seed"]) for m in members])
        state = vmap(train.init)(keys) if batched else train.init(keys[0])
        if hparams:
            values = {name: torch.tensor([m[name] for m in members], dtype=torch.float64) for name in hparams}
            opt = state["learner", "opt_state"]
            state["learner", "opt_state"] = (
                set_hyperparams(opt, **values)
                if batched
                else set_hyperparams(opt, **{k: v[0] for k, v in values.items()})
            )
    if feed is not None:
        state = feed.add_incoming(state)
    if device is not None:
        state = state.to(device)
    units = [
        (u, _StateUnit(u.name, u.fn, batched, compile)) for u in (feed.units(state) if feed else train.units)
    ]

    bar = _progress(progress, iterations * per_iteration, start_iteration * per_iteration)
    last_metrics: dict[str, Tensor] = {}
    eval_returns: list[float] = []
    next_eval = (start_iteration * per_iteration // eval_every + 1) * eval_every
    next_log = (start_iteration * per_iteration // log_every + 1) * log_every
    next_ckpt = (
        None
        if checkpoint_every is None
        else (start_iteration * per_iteration // checkpoint_every + 1) * checkpoint_every
    )
    run_start = time.perf_counter()
    stopped = False
    iteration = start_iteration
    leaves, state_spec = pytree.tree_flatten(state) if compile else (None, None)
    if compile:
        leaves = _boundary(leaves)
    if feed is not None:
        feed.bind(leaves, state_spec, state)
        feed.start(start_iteration, env_states)

    def current_state() -> TensorDict:
        return pytree.tree_unflatten(leaves, state_spec) if compile else state

    for iteration in range(start_iteration, iterations):
        # After the first iteration every unit has its one graph for these exact layouts (the
        # driver pins strides and aliasing): skip re-checking guards, ~15 % of a 1-seed step.
        skip_guards = compile and iteration > start_iteration
        with (
            torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)
            if skip_guards
            else nullcontext()
        ):
            if feed is not None:
                if compile:
                    leaves = feed.collect(iteration, leaves, None)
                else:
                    state = feed.collect(iteration, None, state)
            for unit, fn in units:
                if iteration < refill_until and unit.name != "store":
                    continue
                for _ in range(unit.repeats):
                    if compile:
                        leaves, metrics = fn(leaves, state_spec)
                    else:
                        state, metrics = fn.fn(state)
                    last_metrics.update(metrics.items())
            if feed is not None:
                feed.track(leaves, state)
        steps = (iteration + 1) * per_iteration
        final = iteration == iterations - 1
        if steps >= next_log or steps >= next_eval or final:
            row: dict[str, Any] = {"env_steps": steps, "wall_s": time.perf_counter() - wall_start}
            for name, value in last_metrics.items():
                per_member = value.detach().float().reshape(-1).tolist()
                row[name] = sum(per_member) / len(per_member)
            if steps >= next_eval or final:
                params = current_state()["learner", "params"]
                if feed is not None:
                    returns = feed.evaluate(params, eval_episodes, steps)
                else:
                    eval_keys = torch.stack(
                        [random.fold_in(random.key(m["seed"]), 2**31 + steps % 2**31) for m in members]
                    )
                    ev = eval_init(eval_keys if batched else eval_keys[0])
                    for _ in range(math.ceil(train.env.max_episode_steps / eval_chunk)):
                        ev = eval_step(params, ev)
                    returns = ev["return"].reshape(len(members), -1).double().mean(-1).tolist()
                eval_returns = returns
                summary = _summary(returns)
                row.update({f"eval_return_{k}": v for k, v in summary.items()})
                row["eval_return_per_member"] = returns
                next_eval = (steps // eval_every + 1) * eval_every
            next_log = (steps // log_every + 1) * log_every
            history.append(row)
            logger.log(row)
            if bar is not None:
                done_steps = (steps - start_iteration * per_iteration) * len(members)
                rate = done_steps / max(time.perf_counter() - run_start, 1e-9)
                bar.set_postfix(
                    {
                        "steps/s": f"{rate:,.0f}",
                        "return": f"{row.get('eval_return_mean', row.get('episode_return', math.nan)):.1f}",
                    }
                )
            if state_check is not None:
                state_check(current_state())
            if any(bool(cb(row)) for cb in callbacks):
                stopped = True
        if bar is not None:
            bar.update(per_iteration)
        if write and next_ckpt is not None and (steps >= next_ckpt or final or stopped):
            payload = {
                "state": current_state(),
                "iteration": iteration + 1,
                "history": history,
                "members": members,
            }
            if feed is not None:
                payload["state"] = payload["state"].exclude("incoming")
                if not save_buffer and "buffer" in payload["state"]:
                    payload["state"] = payload["state"].exclude(("buffer", "data"))
                payload.update(env_states=feed.env_states(), buffer_saved=save_buffer)
            checkpoint.save(ckpt_path, payload)
            next_ckpt = (steps // checkpoint_every + 1) * checkpoint_every
        if stopped:
            break
    if bar is not None:
        bar.close()
    logger.close()
    if feed is not None:
        feed.close()
    wall = time.perf_counter() - wall_start
    compile_s = sum(fn.first_call_s for _, fn in units) if compile else 0.0
    if compile and feed is None:
        compile_s += eval_step.first_call_s
    done_steps = (iteration + 1 - start_iteration) * per_iteration * len(members)
    state = current_state()
    if feed is not None:
        state = state.exclude("incoming")
    result_state = state if batched else state.unsqueeze(0)
    return RunResult(
        state=result_state,
        members=members,
        eval_returns=eval_returns,
        history=history,
        wall_s=wall,
        compile_s=compile_s,
        env_steps_per_s=done_steps / max(wall - compile_s, 1e-9),
        env_steps=(iteration + 1) * per_iteration,
    )


def _fresh_buffer(
    train: Train, members: list[dict[str, Any]], batched: bool, state: TensorDictBase
) -> TensorDictBase:
    """``state`` with an empty replay buffer (a checkpoint saved without one)."""
    keys = torch.stack([random.key(m["seed"]) for m in members])
    fresh = vmap(train.init)(keys) if batched else train.init(keys[0])
    state = state.copy()
    state["buffer"] = fresh["buffer"]
    return state


def _refill_iterations(train: Train, state: TensorDictBase, batched: bool) -> int:
    """Iterations that only collect, until the buffer holds ``learning_starts`` transitions
    (at least one minibatch, at most its capacity)."""
    config = train.config
    capacity = state["buffer", "data"].batch_size[1 if batched else 0]
    need = min(capacity, max(getattr(config, "learning_starts", 0), getattr(config, "batch_size", 1)))
    return math.ceil(need / train.steps_per_iteration)


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs stay readable)
    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        unit_scale=True,
        dynamic_ncols=True,
        leave=True,
        mininterval=0.5,
        disable=None,
    )
