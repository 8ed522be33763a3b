"""The one row that flows through the job's graph, its vocabularies, and the one conversion
between Ray Data's numpy batches and rows.

    plan (scene -> rows) -> mask actor (todo rows: masks) -> encode (todo rows: PNGs, instances)
      -> shard (processed rows: Parquet) -> the driver (every row, light columns only)

Every row has every column (so Ray Data stacks them into Arrow blocks); which columns mean
something depends on the row's kind:

    kind, status           Kind; Status (below)
    scene                  the scene's name (tile and scene rows)
    tile_id, fingerprint   tile rows: the tile's id and what its outputs are computed from
    pixels_key             cut tile rows: what its pixels alone are computed from (tiles/ PNG name)
    split                  tile rows: the scene's split (splits.py)
    source_uri             the scene's image (scene and tile rows) or the unusable input (error rows)
    label_source_uri       the scene's label file
    cut                    tile rows: the tile was cut from a larger scene (tiles/ gets its pixels)
    x0, y0, width, height  tile rows: the window, scene pixels
    objects                tile rows: JSON list of tile-relative objects (plan.object_record)
    pixels                 todo tiles, until inference: RGB, height*width*3 bytes
    masks, scores, prompt_boxes   todo tiles, from inference to encoding: bit-packed (N, height,
                           width) masks, N float32 scores, N x 4 float32 boxes
    instances              from encoding to sharding only: each processed tile's instance rows,
                           list<struct> of manifest.INSTANCES (encode adds the column, shard drops it)
    n_objects, n_windows, n_empty, n_in_tiles   scene rows: objects read; windows; windows with
                           no object; objects in at least one tile
    n_instances, shard, created_at   processed tiles: instance count, shard name, time written
    reason, stage, line    error and failed rows: why, where (Stage), which line of the file (-1: none)
    plan_node, mask_node, encode_node, shard_node   Ray node ids where each stage ran

The heavy columns are cleared as soon as the stage after them has used them.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyarrow as pa

from samrs_ray.dataset import manifest
from samrs_ray.inputs.annotation import InputIssue, Stage, Word

__all__ = ["Kind", "Status", "Stage", "HEAVY_COLUMNS", "NODE_COLUMNS", "empty_row", "error_row", "fail", "indices",
           "row_at", "put_rows", "cleared", "INSTANCE_LISTS", "with_instances"]


class Kind(Word):
    TILE = "tile"
    SCENE = "scene"  # one per scene read: its counts
    ERROR = "error"  # one per unusable input (file, or object of a file)


class Status(Word):
    TODO = "todo"  # a tile to compute
    SKIPPED = "skipped"  # a tile whose fingerprint is already in the dataset
    PROCESSED = "processed"  # a tile computed and written
    FAILED = "failed"  # a tile that could not be computed or written (reason, stage)
    OK = "ok"  # a scene row
    ERROR = "error"  # an error row


HEAVY_COLUMNS = ("pixels", "masks", "scores", "prompt_boxes")
# {stage: column}: the Ray node each stage of a processed tile ran on
NODE_COLUMNS = {"plan": "plan_node", "mask": "mask_node", "encode": "encode_node", "shard": "shard_node"}


def empty_row() -> dict[str, Any]:
    """Every column a row carries, with neutral values."""
    return {
        "kind": "", "status": "", "scene": "", "tile_id": "", "fingerprint": "", "pixels_key": "", "split": "",
        "source_uri": "", "label_source_uri": "", "cut": False,
        "x0": 0, "y0": 0, "width": 0, "height": 0,
        "objects": "[]", "pixels": b"", "masks": b"", "scores": b"", "prompt_boxes": b"",
        "n_objects": 0, "n_windows": 0, "n_empty": 0, "n_in_tiles": 0,
        "n_instances": 0, "shard": "", "created_at": "",
        "reason": "", "stage": "", "line": -1,
        **{column: "" for column in NODE_COLUMNS.values()},
    }


def error_row(issue: InputIssue, tile: str = "") -> dict[str, Any]:
    row = empty_row()
    row.update(kind=Kind.ERROR, status=Status.ERROR, source_uri=issue.source, reason=issue.reason,
               stage=issue.stage, line=-1 if issue.line is None else issue.line, tile_id=tile)
    return row


def fail(row: dict[str, Any], stage: Stage, reason: str) -> None:
    row.update(status=Status.FAILED, stage=stage, reason=reason)


# --- numpy batches <-> rows -------------------------------------------------------------------


def indices(batch: dict[str, np.ndarray], status: Status) -> list[int]:
    """Positions of the rows with `status`; the other rows pass through a stage untouched."""
    return np.flatnonzero(batch["status"] == status.value).tolist()


def row_at(batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {k: unbox(v[i]) for k, v in batch.items()}


def unbox(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def put_rows(batch: dict[str, np.ndarray], positions: list[int], rows: list[dict[str, Any]]) -> None:
    """Write rows back into the batch's columns (as object columns, so any value fits)."""
    for key in batch:
        column = batch[key] if batch[key].dtype == object else batch[key].astype(object)
        for i, row in zip(positions, rows):
            column[i] = row[key]
        batch[key] = column


def cleared(batch: dict[str, np.ndarray], keys: tuple[str, ...], value: Any) -> dict[str, np.ndarray]:
    for key in keys:
        column = np.empty(len(batch[key]), dtype=object)
        column[:] = [value] * len(column)
        batch[key] = column
    return batch


# --- the Arrow block from encoding to sharding ------------------------------------------------

# Typed here, not inferred: a block whose tiles have no instances would otherwise get list<null>,
# which does not stack with the other blocks.
INSTANCE_LISTS = pa.list_(pa.struct(list(manifest.INSTANCES)))


def with_instances(batch: dict[str, np.ndarray], instances: list[Optional[pa.Table]]) -> pa.Table:
    """A numpy batch plus each row's instance rows (a manifest.INSTANCES table; None for rows with
    none) -> the Arrow block that the shard stage reads without parsing anything."""
    columns = {key: pa.array(column.tolist() if column.dtype == object else column) for key, column in batch.items()}
    counts = [0 if table is None else table.num_rows for table in instances]
    found = [table for table in instances if table is not None and table.num_rows]
    rows = pa.concat_tables(found) if found else manifest.INSTANCES.empty_table()
    values = pa.StructArray.from_arrays([column.combine_chunks() for column in rows.columns],
                                        fields=list(manifest.INSTANCES))
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))).astype(np.int32))
    columns["instances"] = pa.ListArray.from_arrays(offsets, values, type=INSTANCE_LISTS)
    return pa.table(columns)
