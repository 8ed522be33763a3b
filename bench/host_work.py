"""Benchmark: the CPU work per tile outside the model, stage by stage, and the cores a node
needs to feed its accelerator at a given rate.

On a GPU node the engine only keeps the device busy if the CPU stages around it keep up:
planning (read the scene, decode, hash, cut tiles), the mask actor's own work around
predict() (prompts, result bytes), encoding (label map, RLEs, PNGs, writes) and shards
(Parquet). This runs the job's own stage functions (samrs_ray.job.stages: plan_group,
MaskActor, encode_batch, shard_batch) in one process, without Ray, on the real DOTA samples
copied --copies times, and counts each stage's CPU seconds (time.process_time).

Masks come from the box backend (a box's polygon filled): smooth like a trained SAM's, so
encoding costs what it would with real weights (random-weight SAM masks are speckled and
cost ~4x more to encode, bench/encode.py). The box backend's predict() is the stand-in for
the device's share and is reported apart. Not counted: Ray's own work (moving blocks,
Ray Data's executor), which bench/engine.py's (c) includes.

    .venv/bin/python -m bench.host_work --copies 8 --rate 60
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from bench.common import REALSAMPLES, make_scenes
from samrs_ray.config import JobConfig
from samrs_ray.inputs import preflight
from samrs_ray.inputs.presets import PRESETS
from samrs_ray.job import graph, stages
from samrs_ray.job.actor import MaskActor
from samrs_ray.job.rows import Kind, Status
from samrs_ray.masks.backend import TileMasks

# Ray Data is loaded (and pandas with it) in the job's workers: a first import is no stage's cost
importlib.import_module("ray.data")

STAGES = ("plan", "actor, outside predict()", "encode", "shard")


class CpuClock:
    """CPU seconds per stage; `predict` is also counted on its own, inside the actor's."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def run(self, stage: str, step: Callable[..., Any], *args: Any) -> Any:
        start = time.process_time()
        result = step(*args)
        self.seconds[stage] += time.process_time() - start
        return result

    def timed_backend(self, backend: Any) -> Any:
        """The backend with its predict() counted as 'predict', handing its masks over bit-packed as
        SAM does on a GPU (EngineSettings.pack: packed on the device), so that the packing is
        counted as the device's share, not the actor's."""
        predict = backend.predict

        def packed_predict(images, prompts):
            return [TileMasks(masks=None, scores=r.scores, bits=np.packbits(r.masks, axis=None), shape=r.masks.shape)
                    for r in predict(images, prompts)]

        backend.predict = lambda images, prompts: self.run("predict", packed_predict, images, prompts)
        return backend


def as_batch(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows -> the numpy batch (object columns) a map_batches stage receives."""
    batch = {}
    for key in rows[0]:
        column = np.empty(len(rows), dtype=object)
        column[:] = [row[key] for row in rows]
        batch[key] = column
    return batch


def measure(scenes: Path, out: Path, checksum: str = "") -> tuple[int, int, dict[str, float]]:
    """Run every stage over the scenes; returns (tiles, instances, CPU seconds per stage).
    `checksum` stands for the model's: another value is a model change (new masks, same tiles)."""
    config = graph.resolve_engine(
        JobConfig(preset=PRESETS["sota"], images=str(scenes / "images"), labels=str(scenes / "labelTxt"),
                  out=str(out), model="box", write_color=True), local_gpus=0)
    inputs = preflight.find_inputs(config)
    plan_settings, write_settings = stages.stage_settings(config, checksum=checksum)
    clock = CpuClock()
    rows = []
    for item in graph.scene_items(inputs.pairs, inputs, {}, config.preset, 4):
        rows += clock.run("plan", lambda *args: list(stages.plan_group(*args)), item, plan_settings, True)
    actor = MaskActor(config)
    actor.backend = clock.timed_backend(actor.backend)
    encoded = []
    for start in range(0, len(rows), config.image_batch):
        batch = clock.run("actor", actor, as_batch(rows[start : start + config.image_batch]))
        encoded.append(clock.run("encode", stages.encode_batch, batch, write_settings))
    shard = clock.run("shard", stages.shard_batch, pa.concat_tables(encoded), write_settings).to_pylist()
    seconds = dict(clock.seconds)
    seconds["actor, outside predict()"] = seconds.pop("actor") - seconds["predict"]
    tiles = sum(r["kind"] == Kind.TILE and r["status"] == Status.TODO for r in rows)
    instances = sum(r["n_instances"] for r in shard if r["kind"] == Kind.TILE)
    return tiles, instances, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=8, help="copies of P0004 (2 tiles) and P1888 (1 tile)")
    parser.add_argument("--rate", type=float, default=60.0, help="tiles/s the node must feed (the H100 target: 60)")
    parser.add_argument("--realsamples", type=Path, default=REALSAMPLES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="samrs-host-work-") as work:
        make_scenes(args.realsamples, ["P0004", "P1888"], args.copies, Path(work) / "scenes")
        tiles, instances, first = measure(Path(work) / "scenes", Path(work) / "out")
        # the same tiles into the same dataset after a model change: every tile's masks are new,
        # its RGB tile PNG (named by its pixels alone) is there already
        _, _, again = measure(Path(work) / "scenes", Path(work) / "out", checksum="another model")
    print(f"{tiles} tiles of 1024x1024, {instances} instances (box-backend masks), one process, "
          "CPU ms per tile and stage:")
    print(f"  {'stage':26s} {'first run':>10s} {'model change':>13s}")
    totals = [0.0, 0.0]
    for stage in STAGES:
        per_tile = [1000 * seconds[stage] / tiles for seconds in (first, again)]
        totals = [t + p for t, p in zip(totals, per_tile)]
        print(f"  {stage:26s} {per_tile[0]:10.1f} {per_tile[1]:13.1f}")
    print(f"  {'all host stages':26s} {totals[0]:10.1f} {totals[1]:13.1f}")
    for name, total in zip(("first run", "model change"), totals):
        print(f"  {name}: {args.rate:g} tiles/s needs {total * args.rate / 1000:.1f} cores like this one, "
              "before Ray's own work")
    print(f"  (box backend predict(), the device's stand-in: {1000 * first['predict'] / tiles:.1f} ms/tile)")


if __name__ == "__main__":
    main()
