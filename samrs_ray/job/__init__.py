"""The job on Ray: `generate()` runs it (driver.py); graph.py wires the stages (stages.py, the
mask actor in actor.py) into a Ray Data graph; commit.py turns its rows into a committed version.
"""

from samrs_ray.job.driver import RunFailed, generate
from samrs_ray.job.graph import connect, resolve_engine

__all__ = ["RunFailed", "connect", "generate", "resolve_engine"]
