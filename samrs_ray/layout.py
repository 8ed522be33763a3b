"""The dataset layout (v1): every path under `<out>` is built here and nowhere else.

    <out>/
      labels/<tile_id>.png          uint8 class ids, 255 = unlabeled
      color/<tile_id>.png           the same map as a palette PNG
      tiles/<tile_id>.png           the tile pixels, when tiles were cut from larger scenes
      manifest/<table>/<shard>.parquet   table: tiles | instances | errors
      _run.json                     the committed version
      _runs/<run_id>.json           every committed version, as history
      report/                       `samrs-ray stats` (default place)
      coco.json                     `samrs-ray export-coco` (default place)

`out` is a path as `storage.open_fs` returns it (no protocol for local disks).
"""

from __future__ import annotations

from typing import Literal

from samrs_ray import storage

PngFolder = Literal["labels", "color", "tiles"]
Table = Literal["tiles", "instances", "errors"]
PNG_FOLDERS: tuple[PngFolder, ...] = ("labels", "color", "tiles")
RUN_RECORD = "_run.json"


def png_folder(out: str, folder: PngFolder) -> str:
    return storage.join(out, folder)


def png_path(out: str, folder: PngFolder, tile_id: str) -> str:
    return storage.join(out, folder, f"{tile_id}.png")


def tile_id_of_png(name: str) -> str:
    """'P0004__1024__0___824.png' -> 'P0004__1024__0___824'."""
    return name[: -len(".png")]


def table_folder(out: str, table: Table) -> str:
    return storage.join(out, "manifest", table)


def shard_path(out: str, table: Table, name: str) -> str:
    return storage.join(out, "manifest", table, shard_file(name))


def shard_file(name: str) -> str:
    return f"{name}.parquet"


def shard_of_file(filename: str) -> str:
    """'3f2a....parquet' -> '3f2a...'."""
    return filename[: -len(".parquet")]


def run_record(out: str) -> str:
    return storage.join(out, RUN_RECORD)


def run_history_folder(out: str) -> str:
    return storage.join(out, "_runs")


def run_history_path(out: str, run_id: str) -> str:
    return storage.join(out, "_runs", f"{run_id}.json")


def report_folder(out: str) -> str:
    return storage.join(out, "report")


def coco_json(out: str) -> str:
    return storage.join(out, "coco.json")
