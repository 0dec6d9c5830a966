"""``Train``: what every agent is, and what the driver and any other data source rely on.

An agent is pure functions over one training state (:mod:`frl.algos.spec`):

* ``init(key, hyperparams=None) -> state``, checked against the spec;
* ``collect``: units that step the agent's pure environment with its behaviour policy and store
  one iteration of data (what ``consumes`` declares);
* ``learn``: units that learn from the stored data;
* ``step(state) = learn(collect(state))``: one iteration, so ``torch.func.vmap(train.step)``
  trains many seeds;
* ``explore(params, hyperparams, obs, key, env_steps) -> (action, log_prob)`` and
  ``policy(params, obs) -> action``: the behaviour and evaluation policies, for sources outside
  the graph (TorchRL collectors, worker processes, a user's own loop) which store data with
  :func:`frl.algos.collect.store` and then run ``learn``.

A :class:`Unit` is a pure ``fn(state) -> (state, metrics)`` run ``repeats`` times; drivers may
compile each unit separately (small graphs) or the whole step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tensordict import TensorDict, TensorDictBase
from torch import Tensor

from frl import envs, optim, random
from frl.algos.collect import init_data
from frl.algos.config import AgentConfig
from frl.algos.spec import Replay, Segments, check_state, example_transition, new_state
from frl.envs.spaces import Slate
from frl.optim import GradientTransformation
from frl.update import gradient_step

__all__ = [
    "Train",
    "Unit",
    "WrapOptimizer",
    "build_state",
    "compose",
    "gradient_update",
    "resolve_env",
    "wrapped_optimizer",
]

UnitFn = Callable[[TensorDictBase], tuple[TensorDictBase, TensorDictBase]]
WrapOptimizer = Callable[[GradientTransformation], GradientTransformation] | None
"""``make_train``'s optimizer hook (``frl.distributed.all_reduce_gradients`` for data parallelism)."""


class Unit(NamedTuple):
    """A pure piece of an iteration: ``fn(state) -> (state, metrics)``, run ``repeats`` times.

    ``scanned``: a compiled run calls the unit once per iteration, its repeats a loop inside the
    graph (:func:`frl._compile.scan`; metrics of the last repeat), instead of ``repeats`` calls;
    the unit must not write its input state in place (a replay buffer's ring does).
    """

    name: str
    fn: UnitFn
    repeats: int = 1
    scanned: bool = False


def compose(units: tuple[Unit, ...]) -> UnitFn:
    """``step(state)``: every unit ``repeats`` times, in order; metrics merged (last call wins)."""

    def step(state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        metrics: dict[str, Tensor] = {}
        for unit in units:
            for _ in range(unit.repeats):
                state, m = unit.fn(state)
                metrics.update(m.items())
        return state, TensorDict(metrics, batch_size=[])

    return step


@dataclass(frozen=True)
class Train:
    """A complete agent (see the module docstring).

    Attributes:
      name: the registry name (``"ppo"``).
      config: the validated config.
      env: the training environment (a pure ``frl.envs`` environment, or one stepped outside
        the graph such as ``frl.envs.GymEnvironment``).
      consumes: :class:`~frl.algos.spec.Segments` (on-policy) or :class:`~frl.algos.spec.Replay`.
      build: the agent's ``(key, hyperparams) -> state``; call :meth:`init`, which checks it.
      collect: the pure-environment collection units of one iteration.
      learn: the learning units of one iteration.
      policy: ``(params, obs) -> action``, deterministic, for evaluation.
      explore: ``(params, hyperparams, obs, key, env_steps) -> (action, log_prob)``, the
        behaviour policy ``collect`` runs (exploration noise and warm-up included); the action
        is what the agent stores, the environment receives it clipped to its action box.
      factory: ``factory(config, env) -> Train`` rebuilds this agent (worker processes do).
      parts: the pieces the units are made of, for an extension to reuse (PPO: ``actor``,
        ``critic``, ``dist``, ``loss``, ``optimizer``; see ``examples/ppo_rnd.py``).
      memory: a recurrent agent's ``memory(num_envs, device) -> {name: carry [num_envs, S]}``,
        the carries at an episode's start; then ``policy(params, obs, carries) -> (action,
        carries)`` and ``explore(..., env_steps, carries) -> (action, log_prob, carries)``
        (``frl.algos.recurrent_ppo``). None for a feed-forward agent.
    """

    name: str
    config: AgentConfig
    env: Any
    consumes: Segments | Replay
    build: Callable[[Tensor, TensorDictBase], TensorDict]
    collect: tuple[Unit, ...]
    learn: tuple[Unit, ...]
    policy: Callable[[TensorDictBase, Tensor], Tensor]
    explore: Callable[..., tuple[Tensor, Tensor]]
    factory: Callable[..., Train]
    parts: Mapping[str, Any] = field(default_factory=dict)
    memory: Callable[..., dict[str, Tensor]] | None = None

    @property
    def steps_per_iteration(self) -> int:
        """Environment steps one iteration takes (per member)."""
        return self.consumes.steps_per_iteration

    @property
    def units(self) -> tuple[Unit, ...]:
        """``collect + learn``: the units of one iteration on the pure environment."""
        return self.collect + self.learn

    def hyperparams(self, **overrides: Any) -> TensorDict:
        """The state's ``hyperparams`` for this config, with ``overrides`` (validated per field)."""
        config = self.config.with_hyperparams(**overrides) if overrides else self.config
        return config.hyperparams()

    def init(self, key: Tensor, hyperparams: TensorDictBase | None = None) -> TensorDict:
        """A fresh training state from ``key`` (``hyperparams`` default to the config's), checked
        against the spec (:func:`frl.algos.spec.check_state`)."""
        state = self.build(key, self.config.hyperparams() if hyperparams is None else hyperparams)
        self.check(state)
        return state

    def check(self, state: TensorDictBase) -> None:
        """Raise an error naming the entry of ``state`` (one member's) that breaks the spec."""
        check_state(
            state,
            consumes=self.consumes,
            observation_shape=tuple(self.env.observation_space.shape),
            hyperparam_names=self.config.hyperparam_names(),
            reward_dtype=self.env.dtype,
            example=self._multi_agent_example(),
        )

    def _multi_agent_example(self) -> TensorDict | None:
        if not getattr(self.env, "multi_agent", False):
            return None
        on_policy = self.consumes.kind == "segments"
        return example_transition(self.env, log_prob=on_policy, extra=self.consumes.extra)

    def step(self, state: TensorDictBase) -> tuple[TensorDictBase, TensorDict]:
        """One iteration on the pure environment: ``collect`` then ``learn``.

        Pure but for one thing: a replay agent writes the new transitions into the input
        state's buffer in place (its storage is donated, :func:`frl.buffers.add_`; a functional
        copy of the ring cost more than the rest of the step). ``state.clone()`` to branch."""
        return compose(self.units)(state)


def resolve_env(
    config: AgentConfig, env: Any, config_type: type[AgentConfig], *, discrete: bool | None = None
) -> Any:
    """The environment a ``make_train`` builds on: ``env``, or ``frl.envs.make(config.env_id)``.

    Checks that ``config`` is a ``config_type`` (TypeError) and, with ``discrete``, the action
    type (ValueError naming the algorithm and the environment).
    """
    name = config_type.agent
    if not isinstance(config, config_type):
        raise TypeError(f"{name}.make_train: expected a {name}.Config, got {type(config)!r}")
    env = envs.make(config.env_id) if env is None else env
    multi = bool(getattr(config_type, "multi_agent", False))
    if bool(getattr(env, "multi_agent", False)) != multi:
        if multi:
            raise ValueError(f"{name} is a multi-agent algorithm; {env.id} is a single-agent environment")
        raise ValueError(
            f"{name} is a single-agent algorithm; {env.id} is a multi-agent environment "
            f"({env.n_agents} agents): train it with mappo, ippo, vdn or qmix"
        )
    factorised = getattr(env.action_space, "nvec", None) is not None
    if discrete is not None and factorised:
        space = env.action_space
        policy = "a factorised policy"
        if isinstance(space, Slate):
            kind, policy = f"Slate({space.k} of {space.n})", "a ranking (Plackett-Luce) policy"
        elif space.binary:
            kind = f"MultiBinary({len(space.nvec)})"
        else:
            kind = f"MultiDiscrete({list(space.nvec)})"
        why = "one Q-value per action" if discrete else "continuous Box actions"
        raise ValueError(
            f"{name} needs {'Discrete' if discrete else 'Box'} actions ({why}); {env.id} has {kind} "
            f"actions, which need {policy}: ppo, a2c and reinforce take them"
        )
    if discrete is not None and env.discrete != discrete:
        need, has = ("discrete", "continuous") if discrete else ("continuous", "discrete")
        raise ValueError(f"{name} needs {need} actions; {env.id} has {has} actions")
    return env


def build_state(
    env: Any,
    consumes: Segments | Replay,
    init_params: Callable[[Tensor], TensorDict],
    optimizer: GradientTransformation,
    *,
    trainable: tuple[str, ...] | None = None,
    passed: tuple[str, ...] = ("learning_rate",),
    counters: dict[str, int] | None = None,
    scratch: TensorDictBase | None = None,
) -> Callable[[Tensor, TensorDictBase], TensorDict]:
    """An agent's ``build(key, hyperparams) -> state`` (:attr:`Train.build`): ``init_params``
    draws the params, the optimizer's state covers the ``trainable`` top-level keys (default:
    all) without the hyper-parameters ``passed`` (the agent passes them from ``hyperparams`` at
    every update), ``state["data"]`` is empty for what ``consumes``, the environments are reset.
    Segments also count ``segment_step``; ``counters`` and ``scratch`` add the agent's own."""

    def build(key: Tensor, hyperparams: TensorDictBase) -> TensorDict:
        k_params, k_env, k_run = random.split(key, 3)
        params = init_params(k_params)
        opt_params = params if trainable is None else params.select(*trainable)
        own = {"segment_step": 0} if consumes.kind == "segments" else {}
        return new_state(
            env,
            key=k_run,
            env_key=k_env,
            num_envs=consumes.num_envs,
            params=params,
            opt_state=optim.drop_hyperparams(optimizer.init(opt_params), *passed),
            hyperparams=hyperparams,
            data=init_data(env, consumes, like=k_run),
            counters={**own, **(counters or {})},
            scratch=None if scratch is None else scratch.clone(),
        )

    return build


def gradient_update(
    state: TensorDictBase,
    loss_fn: Callable,
    optimizer: GradientTransformation,
    batch: Any,
    key: Tensor | None = None,
    **kw: Any,
) -> tuple[TensorDict, TensorDictBase, TensorDict]:
    """:func:`frl.update.gradient_step` on ``state["params"]`` and ``state["opt_state"]``:
    ``(params, opt_state, metrics)``; ``kw``: ``trainable``, ``hyperparams``."""
    return gradient_step(loss_fn, optimizer, state["params"], state["opt_state"], batch, key, **kw)


def wrapped_optimizer(optimizer: GradientTransformation, wrap: Callable | None) -> GradientTransformation:
    """``wrap(optimizer)``, or ``optimizer`` when ``wrap`` is None (``make_train``'s hook, e.g.
    ``frl.distributed.all_reduce_gradients`` for data-parallel training)."""
    return optimizer if wrap is None else wrap(optimizer)
