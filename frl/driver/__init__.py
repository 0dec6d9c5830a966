"""The driver: everything between a ``Train`` and a finished run, as small named pieces.

* :mod:`frl.driver.loop`: :func:`run` and :class:`RunResult` (members, iterations, log points);
* :mod:`frl.driver.members`: the members of a run (seeds x a hyper-parameter grid) and their
  initial states;
* :mod:`frl.driver.sources`: data sources: :class:`PureEnv` (the agent's pure environment,
  stepped in the compiled units); :mod:`frl.driver.collectors`: :class:`Collectors` (TorchRL
  collectors, in this process or in worker processes, with :class:`BehaviourPolicy`);
* :mod:`frl.driver.compiled`: units vmapped over members and compiled over flat tensors;
* :mod:`frl.driver.evaluation`: the deterministic policy's returns (:func:`evaluate`);
* :mod:`frl.driver.logging` (CSV/JSONL/TensorBoard rows, return summaries) and
  :mod:`frl.driver.checkpoint` (atomic checkpoints).

``frl.run(...)`` is :func:`run`.
"""

from frl.driver.evaluation import evaluate
from frl.driver.loop import RunResult, run
from frl.driver.sources import PureEnv


def __getattr__(name: str):
    if name in ("Collectors", "BehaviourPolicy"):  # TorchRL-side pieces: loaded on first use
        from frl.driver import collectors

        return getattr(collectors, name)
    raise AttributeError(f"module 'frl.driver' has no attribute {name!r}")


__all__ = ["BehaviourPolicy", "Collectors", "PureEnv", "RunResult", "evaluate", "run"]
