"""Small helpers for job tests: synthetic scenes, config shortcuts, reading outputs back."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
from PIL import Image

from samrs_ray.config import JobConfig
from samrs_ray.dataset import layout, manifest
from samrs_ray.inputs.listing import ScenePair
from samrs_ray.inputs.presets import PRESETS
from samrs_ray.planning.plan import PlanSettings


def config(images: Any, labels: Any, out: Any, preset: str = "sota", preset_changes: Optional[dict] = None,
           **changes: Any) -> JobConfig:
    """A JobConfig with the box backend unless told otherwise; preset_changes edit the preset."""
    changes.setdefault("model", "box")
    chosen = dataclasses.replace(PRESETS[preset], **(preset_changes or {}))
    return JobConfig(preset=chosen, images=str(images), labels=str(labels), out=str(out), **changes)


def write_scene(folder: Path, name: str, size: tuple[int, int], boxes: list[tuple[str, float, float, float, float]],
                seed: int = 0) -> None:
    """A DOTA-style scene: images/<name>.png (noise, width x height) and labelTxt/<name>.txt
    with one axis-aligned quad per (class, x0, y0, x1, y1)."""
    width, height = size
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labelTxt").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / "images" / f"{name}.png")
    lines = [f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1} {cls} 0" for cls, x0, y0, x1, y1 in boxes]
    (folder / "labelTxt" / f"{name}.txt").write_text("\n".join(lines) + "\n")


def synthetic_scenes(folder: Path, count: int, size: int = 128, objects: int = 3) -> None:
    rng = np.random.default_rng(7)
    for i in range(count):
        boxes = []
        for _ in range(objects):
            x0, y0 = rng.integers(0, size - 30, 2)
            w, h = rng.integers(8, 28, 2)
            boxes.append(("small-vehicle", int(x0), int(y0), int(x0 + w), int(y0 + h)))
        write_scene(folder, f"S{i:05d}", (size, size), boxes, seed=i)


def file_digests(out: Path, skip: tuple[str, ...] = ("_run.json", "_versions", "_active", "_cache")) -> dict[str, str]:
    """sha256 of every file under out, by relative path (the run records, the tables' Delta logs,
    which gain a commit per version as `_versions/` does, and the scene cache left out)."""
    digests = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(skip) and f"/{layout.DELTA_LOG}/" not in rel:
            digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def dataset_rows(out: str, table: str, storage_options: Optional[dict] = None, drop: tuple[str, ...] = ("created_at",),
                 version: Optional[str] = None):
    """A committed table as sorted row dicts (columns in `drop` removed), for comparing datasets."""
    from samrs_ray.dataset import manifest

    rows = manifest.read_dataset(out, table, storage_options, version=version).to_pylist()
    for row in rows:
        for key in drop:
            row.pop(key, None)
    return sorted(rows, key=lambda r: (r["tile_id"], r.get("instance_id", -1)))


def delta_agrees(out: str, storage_options: Optional[dict] = None) -> None:
    """The Delta tables, read as a user with nothing of samrs-ray would (deltalake's reader at the
    pins of `_run.json`), hold the rows of the committed version, no tile twice."""
    import json

    from deltalake import DeltaTable

    from samrs_ray.dataset import delta, storage, versions

    fs, root = storage.open_fs(out, storage_options)
    record = versions.latest(fs, root)
    pins = json.loads(fs.cat_file(layout.run_record(root)))["tables"]
    assert pins == record.tables, "_run.json does not name the committed version's tables"
    options = delta.object_store_options(None if storage.is_local(fs) else storage_options)
    for table in ("tiles", "instances", "errors"):
        theirs = DeltaTable(delta.table_uri(fs, root, table), version=pins[table], storage_options=options)
        theirs = theirs.to_pyarrow_table()
        ours = manifest.read_dataset(out, table, storage_options)
        key = ["source_uri", "line"] if table == "errors" else ["tile_id", *(["instance_id"] if table == "instances" else [])]
        assert keys(theirs, key) == keys(ours, key), f"the Delta table {table} is not the committed version's"
    tiles = DeltaTable(delta.table_uri(fs, root, "tiles"), version=pins["tiles"], storage_options=options)
    ids = tiles.to_pyarrow_table(columns=["tile_id"])["tile_id"].to_pylist()
    assert len(ids) == len(set(ids)), "a tile appears twice in the Delta table"


def keys(table: pa.Table, columns: list[str]) -> list[str]:
    return sorted(repr(tuple(row.values())) for row in table.select(columns).to_pylist())


def local_path(uri: str) -> Path:
    """A local dataset's file URI (the tiles table's label_uri, color_uri, image_uri) as a Path."""
    return Path(uri.removeprefix("file://"))


SOTA = PRESETS["sota"]


def settings(preset=SOTA) -> PlanSettings:
    return PlanSettings(preset, digest="settings-digest", max_pixels=10**8, storage_options={})


def scene(tmp_path: Path, name: str = "S1", size=(1500, 900), boxes=None) -> ScenePair:
    boxes = boxes or [("plane", 100, 100, 200, 180), ("ship", 1300, 700, 1400, 760)]
    write_scene(tmp_path, name, size, boxes)
    return ScenePair(name, str(tmp_path / "images" / f"{name}.png"), str(tmp_path / "labelTxt" / f"{name}.txt"))


def tiles_table(tile_fps: dict[str, str], source: str = "/i/S1.png") -> pa.Table:
    """Tiles rows whose PNGs are named as the job names them (key: the fingerprint, here for
    tiles/ too), under any root: the index goes by file name."""
    return pa.Table.from_pylist([{
        "tile_id": t, "subset": "sota", "source_uri": source, "label_source_uri": "/l/S1.txt", "x0": 0, "y0": 0,
        "width": 8, "height": 8, "image_uri": layout.png_path("file:///elsewhere", "tiles", t, fp),
        "label_uri": layout.png_path("file:///elsewhere", "labels", t, fp),
        "color_uri": layout.png_path("file:///elsewhere", "color", t, fp), "n_instances": 1,
        "fingerprint": fp, "model": "box-fill", "created_at": "2026-12-02T00:00:00+00:00",
    } for t, fp in tile_fps.items()], schema=manifest.TILES)


def instances_table(tiles: list[str]) -> pa.Table:
    return pa.Table.from_pylist([{
        "tile_id": t, "instance_id": 0, "class_id": 4, "class_name": "plane", "difficult": False,
        "prompt_type": "hbox", "prompt_box": [0, 0, 4, 4], "polygon": None,
        "mask_rle": {"counts": "0", "height": 8, "width": 8}, "area": 0, "predicted_iou": 1.0,
        "mask_box": None, "source_uri": "/l/S1.txt", "source_line": 1,
    } for t in tiles], schema=manifest.INSTANCES)


def write_shard(fs, out: str, tile_fps: dict[str, str]) -> str:
    return manifest.write_shard(fs, out, tiles_table(tile_fps), instances_table(list(tile_fps)))


def isaid_ids(realsamples: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(realsamples / "isaid" / "P0004_instance_id_RGB.png").convert("RGB"), np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
