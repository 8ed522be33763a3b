"""Fault injection for the crash tests, as SQLite's and Delta's suites crash a writer at each
step: with SAMRS_RAY_CRASH_AT=<step> in the driver's environment, the run's process group (the
driver and the local Ray it started, as when a pod dies) is SIGKILLed when any of its processes
reaches that step. Nothing else reads these variables; unset, a step costs one dict lookup.

Steps, in the order a run reaches them:
    plan            a Ray task has planned its first scene
    infer           a mask actor has computed its first batch of masks
    encode          an encode task has written its first tile's PNGs
    shard           a shard task has written its first shard pair
    before-commit   every shard and the errors shard written, the version record not yet created
    in-commit       `_versions/<N>.json` created, its Delta tables not yet published
    in-publish      the first table's Delta commit made (instances), the others not yet
    in-clean-up     the first unused file deleted, the others not yet
"""

from __future__ import annotations

import os
import signal
from typing import Literal

CRASH_AT_ENV = "SAMRS_RAY_CRASH_AT"
CRASH_GROUP_ENV = "SAMRS_RAY_CRASH_GROUP"  # set by arm(): Ray workers run in process groups of their own
Step = Literal["plan", "infer", "encode", "shard", "before-commit", "in-commit", "in-publish",
               "in-clean-up"]


def arm() -> None:
    """In the driver, before Ray starts (its workers inherit the environment)."""
    if CRASH_AT_ENV in os.environ:
        os.environ.setdefault(CRASH_GROUP_ENV, str(os.getpgrp()))


def crash_point(step: Step) -> None:
    if os.environ.get(CRASH_AT_ENV) == step:
        os.killpg(int(os.environ.get(CRASH_GROUP_ENV, os.getpgrp())), signal.SIGKILL)
