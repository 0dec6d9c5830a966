"""Data sources: what fills an agent's ``data`` each iteration, as ``frl.run`` sees it.

A source is chosen by the caller (``frl.run(train, source=...)``) or from the environment: a
pure environment is stepped inside the compiled units (:class:`PureEnv`), a gymnasium one by
TorchRL collectors (:class:`frl.driver.collectors.Collectors`). ``open(run)`` (a
:class:`RunContext`) gives the run a :class:`Feed` with:

* ``collect``: units that store one iteration of data (run every iteration, also while a
  resumed replay buffer refills) and ``learn``: the agent's learning units;
* ``inputs(iteration, state)``: extra arguments of the ``collect`` units (a collector batch), or
  ``()`` for units that step the environment themselves (``state()`` gives the current state);
* ``evaluate(params, steps)``: every member's mean evaluation return;
* ``env_states()`` / ``restore(env_states)``: what a checkpoint keeps of the environments
  (normalisation statistics);
* ``close()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tensordict import TensorDictBase

from frl.algos.train import Train, Unit
from frl.driver.evaluation import PureEvaluation

__all__ = ["Feed", "PureEnv", "RunContext", "Source", "default_source"]


class Feed(Protocol):
    """An opened source (see the module docstring)."""

    collect: tuple[Unit, ...]
    learn: tuple[Unit, ...]
    guarded_between_units: bool
    """Whether :meth:`inputs` runs compiled code that keeps Dynamo's guards (a collector's
    policy): the driver then skips their evaluation after the first iteration. A feed without
    the attribute counts as True."""
    whole_iteration_in_units: bool
    """Whether the units are the whole iteration (no :meth:`inputs`, nothing run between them), so
    that the driver may run several iterations as one call (:mod:`frl.driver.blocks`). A feed
    without the attribute counts as False."""

    def inputs(self, iteration: int, state: Callable[[], TensorDictBase]) -> tuple[Any, ...]: ...

    def evaluate(self, params: TensorDictBase, steps: int) -> list[float]: ...

    def env_states(self) -> list[dict] | None: ...

    def restore(self, env_states: list[dict] | None) -> None: ...

    def close(self) -> None: ...

    @property
    def first_call_s(self) -> float: ...


@dataclass(frozen=True)
class RunContext:
    """What a source knows of the run that opens it.

    Attributes:
      train: the agent.
      members: ``{"seed": s, **hyper-parameters}`` per member, in state order.
      batched: the state is stacked over members (more than one).
      compiled: the units are compiled.
      eval_episodes: episodes per member per evaluation.
    """

    train: Train
    members: Sequence[Mapping[str, Any]]
    batched: bool
    compiled: bool
    eval_episodes: int


class Source(Protocol):
    """A data source a run opens for its members."""

    def open(self, run: RunContext) -> Feed: ...


@dataclass(frozen=True)
class PureEnv:
    """The agent's own pure environment, stepped inside the compiled ``collect`` units.

    Attributes:
      eval_chunk: environment steps per compiled evaluation call; 0, the default, steps the
        environment's whole episode limit in one call (a loop inside the graph, traced once) where
        the environment is ``scannable``, else ``frl.driver.evaluation.UNROLLED_EVAL_CHUNK`` (5
        unrolled steps compiled in 10.7 s, 20 in 28.8 s; 8 PPO CartPole seeds, cold cache, AMD EPYC).
    """

    eval_chunk: int = 0

    def open(self, run: RunContext) -> _PureFeed:
        train = run.train
        if not getattr(train.env, "pure", True):
            raise ValueError(
                f"run: {train.env.id} is not a pure environment (it cannot be stepped inside compiled "
                "code); use source=frl.driver.Collectors()"
            )
        evaluation = PureEvaluation(
            train, run.members, run.eval_episodes, self.eval_chunk, run.batched, run.compiled
        )
        return _PureFeed(train, evaluation)


class _PureFeed:
    guarded_between_units = False  # the units step the environment; nothing runs between them
    whole_iteration_in_units = True  # so several iterations may run as one call (frl.driver.blocks)

    def __init__(self, train: Train, evaluation: PureEvaluation) -> None:
        self.collect, self.learn = train.collect, train.learn
        self._evaluation = evaluation

    def inputs(self, iteration: int, state: Callable[[], TensorDictBase]) -> tuple[Any, ...]:
        return ()

    def evaluate(self, params: TensorDictBase, steps: int) -> list[float]:
        return self._evaluation(params, steps)

    def eval_outcomes(self) -> dict[str, list[float]]:
        """The last evaluation's outcome rates per member (:func:`frl.driver.evaluation.outcomes`)."""
        return self._evaluation.outcomes

    def env_states(self) -> None:
        return None

    def restore(self, env_states: list[dict] | None) -> None:
        return None

    def close(self) -> None:
        return None

    @property
    def first_call_s(self) -> float:
        return self._evaluation.first_call_s


def default_source(train: Train) -> Source:
    """:class:`PureEnv` for a pure environment, TorchRL collectors for any other."""
    if getattr(train.env, "pure", True):
        return PureEnv()
    from frl.driver.collectors import Collectors

    return Collectors()
