"""Benchmark: the whole job with the box backend (no model), end to end on a local Ray.

The real DOTA samples (P0004: 2 tiles, P1888: 1 tile), copied --copies times under other
names (bench/engine.py's make_scenes), go through samrs_ray.job.generate(model='box').
Prints tiles/s and the share of the job's wall time spent inside the mask backend's predict()
(the busy log of samrs_ray/masks/busy.py), i.e. how much of the job is planning, decoding,
encoding, writing.

    .venv/bin/python -m bench.job_box --copies 20
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import ray

from bench.common import REALSAMPLES, make_scenes
from samrs_ray.config import JobConfig
from samrs_ray.inputs.presets import PRESETS
from samrs_ray.job import generate
from samrs_ray.masks.busy import BUSY_LOG, busy_seconds, read_busy_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="samrs-job-box-"))
    make_scenes(REALSAMPLES, ["P0004", "P1888"], args.copies, work)
    log = work / "busy.log"
    os.environ[BUSY_LOG] = str(log)  # inherited by the Ray workers started below
    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING")
    ray_start = time.perf_counter() - t0
    config = JobConfig(preset=PRESETS["sota"], images=str(work / "images"), labels=str(work / "labelTxt"),
                       out=str(work / "out"), model="box")
    start = time.time()
    record = generate(config, say=lambda _: None)
    end = time.time()
    wall = end - start
    busy = busy_seconds(read_busy_log(log), start, end)
    tiles = record.counts["processed"]
    print(f"box backend, {args.copies * 2} scenes, {tiles} tiles of 1024x1024, {record.counts['instances']} instances, "
          f"{args.num_cpus} CPUs")
    print(f"Ray start-up {ray_start:.1f} s; generate() {wall:.1f} s: {tiles / wall:.2f} tiles/s "
          f"({tiles / (wall + ray_start):.2f} incl. start-up)")
    print(f"inside predict(): {busy:.1f} s = {busy / wall:.0%} of the job; outside: {1 - busy / wall:.0%}")
    ray.shutdown()


if __name__ == "__main__":
    main()
