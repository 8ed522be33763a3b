"""The dataset's manifests: Arrow schemas and Parquet shards, and reading a committed version.

Layout under <out> (layout.py has every path):

    manifest/tiles/<shard>.parquet       one row per tile       (TILES)
    manifest/instances/<shard>.parquet   one row per instance   (INSTANCES), same shard name
    manifest/errors/<run_id>.parquet     one row per unusable input (ERRORS)

A dataset version is the set of shards that its record lists (versions.py); shard files that
no record lists (a killed run's) are invisible to readers. A shard is named by the hash of the
(tile_id, fingerprint) pairs it holds, and a shard file once written is never written again.
"""

from __future__ import annotations

import hashlib
import io
from typing import Iterable, Optional

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from samrs_ray.dataset import layout, storage, versions

TILES = pa.schema([
    ("tile_id", pa.string()),
    ("subset", pa.string()),
    ("split", pa.string()),  # the scene's split: train, val, test, trainval, ... (null: written before splits)
    ("source_uri", pa.string()),  # the scene image the tile was cut from
    ("label_source_uri", pa.string()),  # the detection label file
    ("x0", pa.int32()),
    ("y0", pa.int32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("image_uri", pa.string()),  # tiles/<id>.png when cut from a larger scene, else source_uri
    ("label_uri", pa.string()),
    ("color_uri", pa.string()),
    ("n_instances", pa.int32()),
    ("fingerprint", pa.string()),
    ("model", pa.string()),
    ("created_at", pa.string()),  # ISO 8601 UTC, when this tile was computed
    ("crs", pa.string()),  # raster scenes: the scene's CRS, 'EPSG:n' or WKT (null: no georeferencing, or a label-file scene)
    ("transform", pa.list_(pa.float64(), 6)),  # raster scenes: the tile's pixel -> map affine (a, b, c, d, e, f)
])

RLE = pa.struct([("counts", pa.string()), ("height", pa.int32()), ("width", pa.int32())])

INSTANCES = pa.schema([
    ("tile_id", pa.string()),
    ("instance_id", pa.int32()),  # 0-based, in annotation (paint) order within the tile
    ("class_id", pa.int32()),
    ("class_name", pa.string()),
    ("difficult", pa.bool_()),
    ("prompt_type", pa.string()),
    ("prompt_box", pa.list_(pa.float32(), 4)),  # xyxy, tile pixels
    ("polygon", pa.list_(pa.float32(), 8)),  # tile pixels; null for horizontal-box sources
    ("mask_rle", RLE),  # COCO compressed RLE (pycocotools: {'size': [h, w], 'counts': ...})
    ("area", pa.int64()),
    ("predicted_iou", pa.float32()),
    ("mask_box", pa.list_(pa.float32(), 4)),  # xyxy, x1/y1 exclusive; null for an empty mask
    ("source_uri", pa.string()),
    ("source_line", pa.int32()),
])

ERRORS = pa.schema([
    ("source_uri", pa.string()),
    ("line", pa.int32()),
    ("stage", pa.string()),  # pair | read | tile | infer | write
    ("reason", pa.string()),
    ("tile_id", pa.string()),  # set when the problem belongs to one tile
])

TABLES = {"tiles": TILES, "instances": INSTANCES, "errors": ERRORS}
# {column: its fixed-size list type}: the columns a shard stores as plain Parquet lists (table_bytes)
FIXED_LISTS = {f.name: f.type for schema in TABLES.values() for f in schema if pa.types.is_fixed_size_list(f.type)}


def shard_name(rows: Iterable[tuple[str, ...]]) -> str:
    """Name of the shard holding these (tile_id, fingerprint, split) rows: order-free, derived
    from the content, so a scene moved to another split lands in a shard of another name."""
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(("\0".join(row) + "\n").encode())
    return digest.hexdigest()[:24]


def table_bytes(table: pa.Table, arrow_schema: bool = True) -> bytes:
    """Parquet bytes. arrow_schema=False leaves Arrow's schema out of the file, so that a
    fixed-size list reads as the plain Parquet list it is stored as: the shards are Delta Lake
    data files (delta.py), and Delta, and so Polars reading Delta, knows no fixed-size list."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", store_schema=arrow_schema)
    return buffer.getvalue()


def write_table(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table) -> None:
    """A shard (tiles, instances or errors) or other table file, written whole."""
    storage.write_atomic(fs, path, table_bytes(table, arrow_schema=table.schema not in TABLES.values()))


def read_table(fs: fsspec.AbstractFileSystem, path: str, columns: Optional[list[str]] = None) -> pa.Table:
    """A Parquet file, or these columns of it; a column that a file written by an older version
    lacks comes back as nulls (TILES' split, for one)."""
    with fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        present = set(parquet.schema_arrow.names)
        table = parquet.read(columns=None if columns is None else [c for c in columns if c in present])
    for column in columns or ():
        if column not in present:
            types = [schema.field(column).type for schema in TABLES.values() if column in schema.names]
            table = table.append_column(column, pa.nulls(table.num_rows, types[0] if types else pa.string()))
    table = table.select(columns) if columns else table
    # a shard stores fixed-size lists as plain lists (table_bytes): give them their declared type back
    for i, f in enumerate(table.schema):
        if f.name in FIXED_LISTS and pa.types.is_list(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(FIXED_LISTS[f.name]))
    return table


def write_shard(fs: fsspec.AbstractFileSystem, out: str, tiles: pa.Table, instances: pa.Table) -> str:
    """Write one shard pair; instances first, so a tiles file never points at missing instances.
    A pair of that name already there holds the same tiles and is left as it is: a committed
    version may be reading it."""
    splits = [split or "" for split in tiles.column("split").to_pylist()]
    name = shard_name(zip(tiles.column("tile_id").to_pylist(), tiles.column("fingerprint").to_pylist(), splits))
    if storage.exists(fs, layout.shard_path(out, "tiles", name)):
        return name
    write_table(fs, layout.shard_path(out, "instances", name), instances.cast(INSTANCES))
    write_table(fs, layout.shard_path(out, "tiles", name), tiles.cast(TILES))
    return name


def dataset_files(fs: fsspec.AbstractFileSystem, out: str, table: str,
                  version: versions.Version = None) -> list[str]:
    """Paths of the shards of `table` ('tiles', 'instances' or 'errors') in a committed version
    (number or run id; None: the latest)."""
    record = versions.find(fs, out, version)
    names = record.errors if table == "errors" else record.shards
    return [layout.shard_path(out, table, n) for n in names]


def read_dataset(out: str, table: str, storage_options: Optional[dict] = None,
                 columns: Optional[list[str]] = None, version: versions.Version = None) -> pa.Table:
    """One table of a committed version (number or run id; None: the latest), whole, in this
    process: for tests and small datasets. Large ones: `ray.data.read_parquet(dataset_uris(...))`."""
    fs, root = storage.open_fs(out, storage_options)
    # a listing this process cached (fsspec shares filesystem instances; a run lists these
    # folders) would hide the shards committed since
    fs.invalidate_cache(layout.table_folder(root, table))
    schema = TABLES[table] if columns is None else pa.schema([TABLES[table].field(c) for c in columns])
    parts = [read_table(fs, p, columns or schema.names) for p in dataset_files(fs, root, table, version)]
    return pa.concat_tables(parts).cast(schema) if parts else schema.empty_table()


def dataset_uris(out: str, table: str, storage_options: Optional[dict] = None,
                 version: versions.Version = None) -> list[str]:
    """Full URIs of a committed table's shards (for ray.data.read_parquet)."""
    fs, root = storage.open_fs(out, storage_options)
    return [fs.unstrip_protocol(p) for p in dataset_files(fs, root, table, version)]
