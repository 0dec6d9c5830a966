"""Benchmark suites as a product: ``frl bench SUITE`` runs algorithms x tasks x seeds into one
folder and writes a report with reliable statistics; ``frl bench compare A B`` flags regressions.

* :mod:`frl.bench.suites`: the suites, their tasks, budgets and published references;
* :mod:`frl.bench.runner`: running a suite (resumable, cells in parallel), the manifest;
* :mod:`frl.bench.stats`: IQM, median, mean, optimality gap, probability of improvement,
  performance profiles and stratified bootstrap intervals (Agarwal et al. 2021; equal to
  ``rliable``'s on the same score matrices, tested);
* :mod:`frl.bench.report`: ``report.md`` and a self-contained ``report.html``;
* :mod:`frl.bench.compare`: is B worse than A, per cell, per algorithm and overall.
"""

from frl.bench import stats
from frl.bench.suites import SUITES, Reference, Suite, Task, get_suite

__all__ = ["SUITES", "Reference", "Suite", "Task", "get_suite", "stats"]
