"""The CPU stages of the graph (planning, encoding, shard writing), each a thin wrapper over a
Ray-free module (plan, outputs, manifest), and the settings they are given."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from samrs_ray.config import JobConfig
from samrs_ray.dataset import manifest, storage
from samrs_ray.encoding.tile import encode_tile, tile_uris
from samrs_ray.inputs.listing import ScenePair
from samrs_ray.job.faults import crash_point
from samrs_ray.job.rows import HEAVY_COLUMNS, Stage, Status, cleared, fail, indices, put_rows, row_at, with_instances
from samrs_ray.planning.plan import PlanSettings, plan_scene, settings_digest
from samrs_ray.planning.raster_plan import RasterPart, plan_part

HELPER_NICENESS = 19  # CPU stages run below the mask actors' priority (see below_engine_priority)


def this_node() -> str:
    """The Ray node id of this worker: each tile records where each stage ran (_run.json 'cluster')."""
    # outside Ray (a bench calling a stage directly) there is no node, and no Ray to start for one
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def below_engine_priority() -> None:
    """Lower this worker process's CPU priority (once; workers are reused) below the mask actors'.

    Ray starts every worker, actors included, at niceness 15 (raylet's worker_niceness); planning
    and encoding tasks go to 19, which the kernel's scheduler weighs 2.4x less. On a GPU node
    15 CPU tasks would otherwise share the cores equally with the actor's one Python thread that
    feeds the GPU. Tasks still use every core the actors leave idle."""
    current = os.nice(0)
    if current < HELPER_NICENESS:
        os.nice(HELPER_NICENESS - current)


@dataclass(frozen=True)
class WriteSettings:
    out: str
    storage_options: dict
    prompt_type: str
    paint_order: str
    palette: Optional[tuple]
    model_id: str
    subset: str


def encode_batch(batch: dict[str, np.ndarray], settings: WriteSettings) -> pa.Table:
    """'todo' rows with masks -> PNGs written, rows 'processed' with their instance rows in the
    typed `instances` column (rows.with_instances); heavy columns dropped."""
    below_engine_priority()
    instances: list[Optional[pa.Table]] = [None] * len(batch["status"])
    todo = indices(batch, Status.TODO)
    if todo:
        fs, out = storage.open_fs(settings.out, settings.storage_options)
        rows = [row_at(batch, i) for i in todo]
        for i, row in zip(todo, rows):
            try:
                instances[i] = encode_tile(fs, out, row, settings.prompt_type, settings.paint_order, settings.palette)
                crash_point("encode")
                row.update(status=Status.PROCESSED, n_instances=instances[i].num_rows,
                           created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           encode_node=this_node())
            except Exception as error:
                fail(row, Stage.WRITE, f"cannot write tile outputs: {type(error).__name__}: {error}")
        put_rows(batch, todo, rows)
    return with_instances(cleared(batch, HEAVY_COLUMNS, b""), instances)


def shard_batch(block: pa.Table, settings: WriteSettings) -> pa.Table:
    """Processed rows -> one Parquet shard pair; returns the rows, with their shard name and
    without the instances column."""
    below_engine_priority()
    done = pc.equal(block["status"], Status.PROCESSED.value)
    if pc.any(done).as_py():
        fs, out = storage.open_fs(settings.out, settings.storage_options)
        processed = block.filter(done)
        records = [tile_record(r, fs, out, settings) for r in processed.drop_columns(["instances"]).to_pylist()]
        tiles = pa.Table.from_pylist(records, schema=manifest.TILES)
        flat = pc.list_flatten(processed["instances"]).combine_chunks()
        instances = pa.Table.from_batches([pa.RecordBatch.from_struct_array(flat)]).cast(manifest.INSTANCES)
        name = manifest.write_shard(fs, out, tiles, instances)
        crash_point("shard")
        for column, value in (("shard", name), ("shard_node", this_node())):
            block = block.set_column(block.schema.get_field_index(column), column,
                                     pc.if_else(done, value, block[column]))
    return block.drop_columns(["instances"])


def tile_record(row: dict[str, Any], fs, out: str, settings: WriteSettings) -> dict[str, Any]:
    return {
        "tile_id": row["tile_id"], "subset": settings.subset, "split": row["split"], "source_uri": row["source_uri"],
        "label_source_uri": row["label_source_uri"], "x0": row["x0"], "y0": row["y0"],
        "width": row["width"], "height": row["height"], **tile_uris(fs, out, row, settings.palette is not None),
        "n_instances": row["n_instances"], "fingerprint": row["fingerprint"],
        "model": settings.model_id, "created_at": row["created_at"], "crs": row["crs"] or None,
        "transform": json.loads(row["transform"]) if row["transform"] else None,
    }


def stage_settings(config: JobConfig, checksum: str) -> tuple[PlanSettings, WriteSettings]:
    """What the planning and the writing stages need of the job's configuration; the plan's
    digest covers every output setting and the model's checksum, so a change recomputes tiles."""
    plan = PlanSettings(config.preset, settings_digest(config.output_settings(checksum)), config.max_pixels,
                        config.storage_options)
    write = WriteSettings(
        out=config.out, storage_options=config.storage_options, prompt_type=config.preset.prompt,
        paint_order=config.paint_order, palette=config.preset.palette if config.write_color else None,
        model_id=config.model_id, subset=config.preset.name)
    return plan, write


def plan_group(group: dict[str, Any], settings: PlanSettings, cut: bool,
               budget: Optional[storage.Budget] = None) -> Iterator[dict[str, Any]]:
    """A group's scenes -> their rows, one at a time: Ray Data cuts the stream into blocks as it
    goes (flat_map consumes it lazily), so a big scene's tiles are never all held at once.
    `budget`: the run's store error budget, which this task's reads report to."""
    below_engine_priority()
    storage.use_budget(budget)  # and no longer once the group is planned: a worker serves other runs too
    try:
        node = this_node()
        for scene in group["scenes"]:
            known = frozenset(scene["known"])
            if "part" in scene:  # a part of a raster scene (a map run)
                rows = plan_part(RasterPart.from_item(scene["part"]), settings, known, cut)
            else:
                rows = plan_scene(ScenePair(scene["name"], scene["image_uri"], scene["label_uri"]), settings, known,
                                  cut)
            for row in rows:
                row.update(split=scene["split"], plan_node=node)
                yield row
            crash_point("plan")
    finally:
        storage.use_budget(None)
