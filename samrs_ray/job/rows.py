"""The one row that flows through the job's graph, its vocabularies, and the one conversion
between Ray Data's numpy batches and rows.

    plan (scene -> rows) -> mask actor (todo rows: masks) -> encode (todo rows: PNGs, instances)
      -> shard (processed rows: Parquet) -> the driver (every row, light columns only)

Every row has every column of ROW (so Ray Data stacks them into Arrow blocks), declared below
once with its type and meaning; which columns mean something depends on the row's kind. The
scene cache's columns (dataset/scene_cache.py) are a part of ROW; each stage says which columns
it reads and which it writes (job/stages.py).

The heavy columns are cleared as soon as the stage after them has used them.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyarrow as pa

from samrs_ray.dataset import manifest
from samrs_ray.inputs.annotation import InputIssue, Stage, Word

__all__ = ["ROW", "Kind", "Status", "Stage", "HEAVY_COLUMNS", "JSON_COLUMNS", "NODE_COLUMNS", "empty_row", "error_row", "fail", "indices",
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


def field(name: str, type_: pa.DataType, meaning: str) -> pa.Field:
    return pa.field(name, type_, metadata={"meaning": meaning})


ROW = pa.schema([
    field("kind", pa.string(), "Kind"),
    field("status", pa.string(), "Status"),
    field("scene", pa.string(), "the scene's name (every row of a scene)"),
    field("tile_id", pa.string(), "tile rows: the tile's id"),
    field("fingerprint", pa.string(), "tile rows: what its outputs are computed from (plan.fingerprint)"),
    field("pixels_key", pa.string(), "cut tile rows: what its pixels alone are computed from (tiles/ PNG name)"),
    field("split", pa.string(), "tile rows: the scene's split (inputs/splits.py)"),
    field("source_uri", pa.string(), "the scene's image (scene and tile rows) or the unusable input (error rows)"),
    field("label_source_uri", pa.string(), "the scene's label file"),
    field("cut", pa.bool_(), "tile rows: cut from a larger scene (tiles/ gets its pixels)"),
    field("x0", pa.int64(), "tile rows: the window's left column, scene pixels"),
    field("y0", pa.int64(), "tile rows: the window's top row, scene pixels"),
    field("width", pa.int64(), "tile rows: the window's width"),
    field("height", pa.int64(), "tile rows: the window's height"),
    field("objects", pa.string(), "tile rows: JSON list of tile-relative objects (plan.object_record)"),
    field("crs", pa.string(), "raster scene and tile rows: the scene's CRS, 'EPSG:n' or WKT ('' without georeferencing)"),
    field("transform", pa.string(), "raster scene and tile rows: JSON [a, b, c, d, e, f], pixel -> map (rasterio)"),
    field("pixels", pa.binary(), "todo tiles, until inference: RGB, height*width*3 bytes"),
    field("nodata", pa.binary(), "todo raster tiles, until encoding: packed (height, width) nodata bits, or empty"),
    field("masks", pa.binary(), "todo tiles, inference to encoding: bit-packed (N, height, width) masks"),
    field("scores", pa.binary(), "todo tiles, inference to encoding: N float32 predicted IoUs"),
    field("prompt_boxes", pa.binary(), "todo tiles, inference to encoding: N x 4 float32 boxes"),
    field("n_objects", pa.int64(), "scene rows: objects read"),
    field("n_windows", pa.int64(), "scene rows: windows"),
    field("n_empty", pa.int64(), "scene rows: windows with no object"),
    field("n_in_tiles", pa.int64(), "scene rows: objects in at least one tile"),
    field("n_instances", pa.int64(), "processed tiles: instance count"),
    field("shard", pa.string(), "processed tiles: the shard that holds the tile's rows"),
    field("created_at", pa.string(), "processed tiles: when written, ISO 8601 UTC"),
    field("reason", pa.string(), "error and failed rows: why"),
    field("stage", pa.string(), "error and failed rows: where (Stage)"),
    field("line", pa.int64(), "error rows: the line of the file (-1: none)"),
    *(field(column, pa.string(), f"the Ray node the {stage} stage ran on") for stage, column in
      {"plan": "plan_node", "mask": "mask_node", "encode": "encode_node", "shard": "shard_node"}.items()),
])
# From encoding to sharding only, a tile's instance rows travel in one more column, `instances`
# (INSTANCE_LISTS below): encode adds it, shard drops it.

HEAVY_COLUMNS = ("pixels", "masks", "scores", "prompt_boxes", "nodata")
# Lists in the manifests that rows carry as JSON text: a list column whose rows are all empty would
# otherwise become list<null> in some blocks and not stack with the others
JSON_COLUMNS = ("transform",)
# {stage: column}: the Ray node each stage of a processed tile ran on
NODE_COLUMNS = {"plan": "plan_node", "mask": "mask_node", "encode": "encode_node", "shard": "shard_node"}

# A neutral value per type; `objects` and `line` have their own (no object; no line)
NEUTRAL = {pa.string(): "", pa.binary(): b"", pa.bool_(): False, pa.int64(): 0}
NEUTRAL_BY_NAME = {"objects": "[]", "line": -1}


def empty_row() -> dict[str, Any]:
    """Every column of ROW, with neutral values."""
    return {f.name: NEUTRAL_BY_NAME.get(f.name, NEUTRAL[f.type]) for f in ROW}


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
