"""How busy the mask engine was during a job: an opt-in log of every predict() call.

When $SAMRS_RAY_BUSY_LOG names a file, `timed_predict` appends one line per call,

    <pid> <start> <end> <tiles> <prompts> <peak_rss_bytes>

(start/end in Unix seconds; peak RSS of the calling process so far), with one O_APPEND
write, so several actors can share the file. bench/engine.py sets the variable for the Ray
workers and adds the intervals up: the share of the job's wall time spent inside predict().
Unset (the default), timed_predict is backend.predict plus one environment lookup.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from samrs_ray.masks.backend import MaskBackend, PromptBatch, TileMasks

BUSY_LOG = "SAMRS_RAY_BUSY_LOG"


@dataclass(frozen=True)
class BusyInterval:
    pid: int
    start: float
    end: float
    tiles: int
    prompts: int
    peak_rss: int  # bytes


def timed_predict(
    backend: MaskBackend, images: Sequence[np.ndarray], prompts: Sequence[PromptBatch]
) -> list[TileMasks]:
    """backend.predict(images, prompts), logged to $SAMRS_RAY_BUSY_LOG when it is set."""
    path = os.environ.get(BUSY_LOG)
    if not path:
        return backend.predict(images, prompts)
    start = time.time()
    results = backend.predict(images, prompts)
    end = time.time()
    line = f"{os.getpid()} {start:.6f} {end:.6f} {len(images)} {sum(len(p) for p in prompts)} {peak_rss()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return results


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def read_busy_log(path: Path) -> list[BusyInterval]:
    if not path.exists():
        return []
    intervals = []
    for line in path.read_text().splitlines():
        pid, start, end, tiles, prompts, rss = line.split()
        intervals.append(BusyInterval(int(pid), float(start), float(end), int(tiles), int(prompts), int(rss)))
    return intervals


def busy_seconds(intervals: Sequence[BusyInterval], start: float, end: float) -> float:
    """Seconds of [start, end] during which at least one predict() call was running."""
    total, reached = 0.0, start
    for interval in sorted(intervals, key=lambda i: i.start):
        lo, hi = max(interval.start, reached), min(interval.end, end)
        if hi > lo:
            total += hi - lo
            reached = hi
    return total
