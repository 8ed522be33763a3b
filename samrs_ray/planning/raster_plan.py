"""Planning a raster scene by parts: each part plans a run of the scene's windows and reads only
those windows' pixels, so the tiles of one big scene are planned by several tasks in parallel and
each task holds a few tiles, whatever the scene's size.

    RasterPart (header + the scene's objects in pixels + which windows) -> rows, as plan.plan_scene's

Part 0 also gives the scene's own row and the errors of objects no window keeps. The scene's
header and objects come from the driver (inputs/rasters.py, planning/footprints.py), so planning
without pixels (cut=False) reads no raster byte. Nothing here knows of Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import shapely

from samrs_ray.errors import InputError, StoreError
from samrs_ray.inputs.annotation import InputIssue
from samrs_ray.inputs.rasters import RasterScene, open_scene, read_window, tile_transform
from samrs_ray.job.rows import Kind, Stage, Status, empty_row, error_row
from samrs_ray.planning.plan import PlanSettings, fingerprint, object_record, pixels_key, record_annotation
from samrs_ray.planning.tiling import Window, objects_in_window, plan_windows, tile_id

# Windows per planning task: 32 tiles of 1024 px are ~100 MB of RGB in flight at most, and a
# 40,000 px scene (2,401 windows) becomes 76 tasks.
PART_WINDOWS = 32


@dataclass(frozen=True)
class RasterPart:
    """Windows [first, last) of one raster scene, with what planning them needs."""

    name: str
    raster: RasterScene
    image_key: str  # what the scene's pixels are, without reading them: URI, store version, bands, stretch
    label_uri: str
    objects: str  # JSON list of plan.object_record, scene pixels, in paint order
    first: int
    last: int

    def to_item(self) -> dict[str, Any]:
        return {"name": self.name, "raster": self.raster.to_dict(), "image_key": self.image_key,
                "label_uri": self.label_uri, "objects": self.objects, "first": self.first, "last": self.last}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "RasterPart":
        return cls(item["name"], RasterScene.from_dict(item["raster"]), item["image_key"], item["label_uri"],
                   item["objects"], item["first"], item["last"])


def scene_parts(name: str, raster: RasterScene, image_key: str, label_uri: str, objects: str,
                tile_size: int | None, gap: int) -> list[RasterPart]:
    count = len(plan_windows(raster.width, raster.height, tile_size, gap))
    step = PART_WINDOWS if json.loads(objects) else count  # a scene without objects reads no pixel: one part
    return [RasterPart(name, raster, image_key, label_uri, objects, first, min(first + step, count))
            for first in range(0, count, step)]


def plan_part(part: RasterPart, settings: PlanSettings, known: frozenset[str], cut: bool) -> Iterator[dict[str, Any]]:
    """The rows of one part: a 'tile' row per window with objects (with its pixels and nodata mask
    when `cut` and to compute), and for part 0 the scene row and the object errors."""
    preset, raster = settings.preset, part.raster
    records = json.loads(part.objects)
    annotations = [record_annotation(r, part.label_uri) for r in records]
    windows = plan_windows(raster.width, raster.height, preset.tile_size, preset.gap)
    tree = shapely.STRtree([shapely.box(*a.hbox) for a in annotations])
    rows: list[dict[str, Any]] = []
    in_tiles: set[int] = set()
    empty = 0
    mine = range(part.first, part.last)
    for index in (range(len(windows)) if part.first == 0 else mine):
        window = windows[index]
        candidates = sorted(tree.query(shapely.box(window.x0, window.y0, window.x1, window.y1)).tolist())
        kept = [(candidates[i], a) for i, a in objects_in_window([annotations[c] for c in candidates], window,
                                                                  preset.iof_thr)]
        if not kept:
            empty += 1
            continue
        in_tiles.update(i for i, _ in kept)
        if index in mine:
            rows.append(tile_row(part, settings, window, kept, records, known))
    if part.first == 0:
        rows = [scene_row(part, len(records), len(windows), empty, len(in_tiles)), *rows]
        rows += [error_row(InputIssue(a.source, f"object is in no tile: no {preset.tile_size}px window holds "
                                                f"{preset.iof_thr:.0%} of it", a.line, stage=Stage.TILE))
                 for i, a in enumerate(annotations) if i not in in_tiles]
    for row in rows:
        row["scene"] = part.name
    if cut and any(r["status"] == Status.TODO for r in rows):
        yield from with_pixels(part, rows, preset.pad_value, settings.storage_options)
    else:
        yield from rows


def tile_row(part: RasterPart, settings: PlanSettings, window: Window, kept: list, records: list,
             known: frozenset[str]) -> dict[str, Any]:
    preset = settings.preset
    objects_json = json.dumps([object_record(a, records[i]["class_id"]) for i, a in kept], sort_keys=True)
    row = empty_row()
    row.update(
        kind=Kind.TILE, scene=part.name, tile_id=tile_id(part.name, preset.tile_size, window),
        fingerprint=fingerprint(settings.digest, part.image_key, window, objects_json),
        pixels_key=pixels_key(part.image_key, window, preset.pad_value), source_uri=part.raster.uri,
        label_source_uri=part.label_uri, cut=True, x0=window.x0, y0=window.y0, width=window.width,
        height=window.height, objects=objects_json, crs=part.raster.crs or "",
        transform=json.dumps(tile_transform(part.raster.transform, window.x0, window.y0)))
    row["status"] = Status.SKIPPED if row["fingerprint"] in known else Status.TODO
    return row


def scene_row(part: RasterPart, objects: int, windows: int, empty: int, in_tiles: int) -> dict[str, Any]:
    row = empty_row()
    row.update(kind=Kind.SCENE, status=Status.OK, scene=part.name, source_uri=part.raster.uri,
               label_source_uri=part.label_uri, n_objects=objects, n_windows=windows, n_empty=empty,
               n_in_tiles=in_tiles, crs=part.raster.crs or "", transform=json.dumps(part.raster.transform))
    return row


def with_pixels(part: RasterPart, rows: list[dict[str, Any]], pad_value: tuple[int, int, int],
                storage_options: dict) -> Iterator[dict[str, Any]]:
    """The rows, each 'todo' tile with its window's pixels and nodata mask; a window that is all
    nodata becomes an error row (its objects are on no image). Unreadable: the part's error."""
    try:
        with open_scene(part.raster, storage_options) as src:
            for row in rows:
                if row["status"] != Status.TODO:
                    yield row
                    continue
                rgb, nodata = read_window(src, part.raster, row["x0"], row["y0"], row["width"], row["height"],
                                          pad_value)
                if nodata is not None and nodata.all():
                    yield {**error_row(InputIssue(part.raster.uri, f"window {row['x0']},{row['y0']} is all nodata: "
                                                  f"its {len(json.loads(row['objects']))} objects are not segmented",
                                                  stage=Stage.TILE), tile=row["tile_id"]), "scene": part.name}
                    continue
                yield {**row, "pixels": rgb.tobytes(), "nodata": b"" if nodata is None else np.packbits(nodata).tobytes()}
    except InputError as error:
        yield {**error_row(InputIssue.from_error(error)), "scene": part.name}
    except StoreError as error:
        yield {**error_row(InputIssue.from_store_error(error)), "scene": part.name}
