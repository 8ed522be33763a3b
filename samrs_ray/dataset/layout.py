"""The dataset layout (v2): every path under `<out>` is built here and nowhere else.

    <out>/
      labels/<tile_id>.<key>.png    uint8 class ids, 255 = unlabeled
      color/<tile_id>.<key>.png     the same map as a palette PNG
      tiles/<tile_id>.<key>.png     the tile pixels, when tiles were cut from larger scenes
      manifest/<table>/<shard>.parquet   table: tiles | instances | errors
      manifest/<table>/_delta_log/  each table as a Delta Lake table: one commit per version (delta.py)
      _versions/<version>.json      the commit log: one record per committed version (1, 2, ...)
      _run.json                     a copy of the latest version's record
      _active/<run_id>.json         runs at work now (a lease each run refreshes)
      _cache/scenes.parquet         what planning found per scene file version (scene_cache.py)
      _cache/rasters.json           raster scenes' headers per file version (inputs/map_inputs.py)
      report/                       `samrs-ray stats` (default place)
      coco.json                     `samrs-ray export-coco` (default place)

Files are never rewritten: a tile whose label map changes gets a new `<key>` (its fingerprint's
first 16 hex digits; for tiles/, the key of its pixels alone), the tiles table points at the new
name, and committing a version is creating its `_versions/` record. So a reader of a committed
version never sees a file change under it. v1 datasets (`labels/<tile_id>.png`, `_runs/`) stay
readable, and a run on one keeps their files while a retained version uses them.

`out` is a path as `storage.open_fs` returns it (no protocol for local disks).
"""

from __future__ import annotations

from typing import Literal

from samrs_ray.dataset import storage

PngFolder = Literal["labels", "color", "tiles"]
Table = Literal["tiles", "instances", "errors"]
PNG_FOLDERS: tuple[PngFolder, ...] = ("labels", "color", "tiles")
RUN_RECORD = "_run.json"
DELTA_LOG = "_delta_log"  # Delta Lake's log folder in a table's folder
PNG_KEY_DIGITS = 16


def png_folder(out: str, folder: PngFolder) -> str:
    return storage.join(out, folder)


def png_path(out: str, folder: PngFolder, tile_id: str, key: str) -> str:
    """<out>/<folder>/<tile_id>.<key>.png; key: what the file's content is computed from (hex)."""
    return storage.join(out, folder, f"{tile_id}.{key[:PNG_KEY_DIGITS]}.png")


def table_folder(out: str, table: Table) -> str:
    return storage.join(out, "manifest", table)


def delta_log(out: str, table: Table) -> str:
    return storage.join(out, "manifest", table, DELTA_LOG)


def shard_path(out: str, table: Table, name: str) -> str:
    return storage.join(out, "manifest", table, shard_file(name))


def shard_file(name: str) -> str:
    return f"{name}.parquet"


def shard_of_file(filename: str) -> str:
    """'3f2a....parquet' -> '3f2a...'."""
    return filename[: -len(".parquet")]


def run_record(out: str) -> str:
    return storage.join(out, RUN_RECORD)


def versions_folder(out: str) -> str:
    return storage.join(out, "_versions")


def version_path(out: str, version: int) -> str:
    return storage.join(out, "_versions", f"{version:08d}.json")


def version_of_file(filename: str) -> int | None:
    """'00000012.json' -> 12; None for anything else."""
    stem = filename[: -len(".json")] if filename.endswith(".json") else ""
    return int(stem) if stem.isdigit() else None


def v1_history_folder(out: str) -> str:
    """Layout v1's history (`_runs/<run_id>.json`), read only."""
    return storage.join(out, "_runs")


def active_folder(out: str) -> str:
    return storage.join(out, "_active")


def active_path(out: str, run_id: str) -> str:
    return storage.join(out, "_active", f"{run_id}.json")


def scene_cache(out: str) -> str:
    return storage.join(out, "_cache", "scenes.parquet")


def raster_cache(out: str) -> str:
    return storage.join(out, "_cache", "rasters.json")


def report_folder(out: str) -> str:
    return storage.join(out, "report")


def coco_json(out: str) -> str:
    return storage.join(out, "coco.json")
