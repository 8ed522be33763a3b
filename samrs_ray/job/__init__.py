"""The job on Ray: `generate()` runs it (driver.py); graph.py wires the stages (stages.py, the
mask actor in actor.py) into a Ray Data graph; commit.py turns its rows into a committed version.
The row that flows between stages (rows.py), the progress line (progress.py), waiting for GPUs
(capacity.py), the run's store error budget (budget.py) and the crash tests' fault points
(faults.py) live here too.

Importing this package imports no Ray: planning and the dataset modules use rows.py and
faults.py, and must stay Ray-free. `generate` and the others load driver.py on first use.
"""

from typing import Any

__all__ = ["RunFailed", "connect", "generate", "resolve_engine"]


def __getattr__(name: str) -> Any:
    if name in ("RunFailed", "generate"):
        from samrs_ray.job import driver

        return getattr(driver, name)
    if name in ("connect", "resolve_engine"):
        from samrs_ray.job import graph

        return getattr(graph, name)
    raise AttributeError(f"module 'samrs_ray.job' has no attribute {name!r}")
