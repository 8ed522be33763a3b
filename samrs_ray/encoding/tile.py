"""One tile's masks -> its files (label, colour and tile PNGs) and its manifest rows.

    packed masks -> N mask crops (box + pixels) + objects -> label map (H, W) uint8 -> PNG bytes
                                                       -> N instance rows (COCO RLE, area, mask box)

Masks travel between Ray stages bit-packed (masks/backend.pack_masks: 8x smaller than bool arrays)
and are only unpacked inside each mask's box (encoding/crops.py). Nothing here knows of Ray.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import fsspec
import numpy as np
import pyarrow as pa

from samrs_ray.dataset import layout, manifest, storage
from samrs_ray.encoding.crops import MaskCrop, crops_of_packed, without_nodata
from samrs_ray.encoding.labelmap import paint_crops
from samrs_ray.encoding.png import image_png, label_pngs
from samrs_ray.encoding.rle import describe_crops


def tile_pixels(data: bytes, height: int, width: int) -> np.ndarray:
    """Raw tile bytes -> (height, width, 3) uint8."""
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


def output_paths(out: str, row: dict[str, Any]) -> dict[str, str]:
    """{folder: path} of a tile row's PNGs: named by the fingerprint (labels/, color/) or by the
    pixels alone (tiles/), so changed content never lands on a name a committed version uses."""
    keys = {"labels": row["fingerprint"], "color": row["fingerprint"], "tiles": row["pixels_key"]}
    return {folder: layout.png_path(out, folder, row["tile_id"], keys[folder]) for folder in layout.PNG_FOLDERS}


def tile_uris(fs: fsspec.AbstractFileSystem, out: str, row: dict[str, Any], with_color: bool) -> dict[str, Any]:
    """The tiles table's label_uri, color_uri (None without colour PNGs) and image_uri (the
    scene itself when the tile is the whole scene) of a tile row, as full URIs."""
    paths = {k: fs.unstrip_protocol(v) for k, v in output_paths(out, row).items()}
    return {"label_uri": paths["labels"], "color_uri": paths["color"] if with_color else None,
            "image_uri": paths["tiles"] if row["cut"] else row["source_uri"]}


def instance_table(
    tile: str, objects: Sequence[dict[str, Any]], crops: Sequence[MaskCrop | None], shape: tuple[int, int],
    scores: np.ndarray, prompt_type: str, prompt_boxes: np.ndarray, source_uri: str,
) -> pa.Table:
    """The tile's manifest.INSTANCES rows, one per object in annotation order (instance_id = paint
    order); object i's mask is crops[i] on a tile of `shape` (H, W), scores (N,) and prompt_boxes
    (N, 4) float32. Built column by column: Arrow converts a list of row dicts ~10x slower."""
    height, width = shape
    count = len(objects)
    summaries = describe_crops(crops, height, width)
    rle = pa.StructArray.from_arrays(
        [pa.array([s.counts for s in summaries], pa.string()), pa.array(np.full(count, height, np.int32)),
         pa.array(np.full(count, width, np.int32))], fields=list(manifest.RLE))
    columns = {
        "tile_id": pa.array([tile] * count, pa.string()),
        "instance_id": pa.array(np.arange(count, dtype=np.int32)),
        "class_id": pa.array([o["class_id"] for o in objects], pa.int32()),
        "class_name": pa.array([o["class_name"] for o in objects], pa.string()),
        "difficult": pa.array([o["difficult"] for o in objects], pa.bool_()),
        "prompt_type": pa.array([o.get("prompt") or prompt_type for o in objects], pa.string()),
        "prompt_box": pa.FixedSizeListArray.from_arrays(pa.array(prompt_boxes.reshape(-1), pa.float32()), 4),
        "polygon": pa.array([o["polygon"] for o in objects], manifest.INSTANCES.field("polygon").type),
        "mask_rle": rle,
        "area": pa.array([s.area for s in summaries], pa.int64()),
        "predicted_iou": pa.array(scores.astype(np.float32, copy=False)),
        "mask_box": pa.array([s.box for s in summaries], manifest.INSTANCES.field("mask_box").type),
        "source_uri": pa.array([o.get("layer") or source_uri for o in objects], pa.string()),
        "source_line": pa.array([o["line"] for o in objects], pa.int32()),
    }
    return pa.table(columns, schema=manifest.INSTANCES)


def write_tile_files(
    fs: fsspec.AbstractFileSystem, paths: dict[str, str], label: np.ndarray,
    palette: Sequence[tuple[int, int, int]] | None, rgb: np.ndarray | None,
) -> None:
    """Write the label PNG, and the colour one (palette given) and the tile's pixels (rgb given,
    unless a PNG of the same pixels is there already); each atomically."""
    if rgb is not None and not storage.exists(fs, paths["tiles"]):
        storage.write_atomic(fs, paths["tiles"], image_png(rgb))
    grey, colour = label_pngs(label, palette)
    if colour is not None:
        storage.write_atomic(fs, paths["color"], colour)
    storage.write_atomic(fs, paths["labels"], grey)  # last: its presence means "done"


def encode_tile(
    fs: fsspec.AbstractFileSystem, out: str, row: dict[str, Any], prompt_type: str,
    paint_order: str, palette: Sequence[tuple[int, int, int]] | None,
) -> pa.Table:
    """A 'todo' row after inference -> its instance rows (manifest.INSTANCES), its PNGs written. The
    row carries objects (JSON), masks (packed), scores (N float32), prompt_boxes (N*4 float32),
    pixels (when cut)."""
    objects = json.loads(row["objects"])
    height, width = int(row["height"]), int(row["width"])
    crops = crops_of_packed(row["masks"], len(objects), height, width)
    if row.get("nodata"):  # a raster tile with nodata pixels (planning/raster_plan.py): they stay 255
        nodata = np.unpackbits(np.frombuffer(row["nodata"], np.uint8), count=height * width).reshape(height, width)
        crops = without_nodata(crops, nodata.view(bool))
    scores = np.frombuffer(row["scores"], dtype=np.float32)
    prompt_boxes = np.frombuffer(row["prompt_boxes"], dtype=np.float32).reshape(-1, 4)
    class_ids = np.array([o["class_id"] for o in objects], dtype=np.int64)
    label = paint_crops(crops, class_ids, (height, width), paint_order)
    rgb = tile_pixels(row["pixels"], height, width) if row["cut"] else None
    write_tile_files(fs, output_paths(out, row), label, palette, rgb)
    return instance_table(row["tile_id"], objects, crops, (height, width), scores, prompt_type, prompt_boxes,
                          row["label_source_uri"])
