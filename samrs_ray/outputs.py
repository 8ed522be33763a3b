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

from samrs_ray import layout, storage
from samrs_ray.encoding.crops import MaskCrop, crops_of_packed
from samrs_ray.encoding.labelmap import paint_crops
from samrs_ray.encoding.png import image_png, label_pngs
from samrs_ray.encoding.rle import describe_crop


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


def instance_rows(
    tile: str, objects: Sequence[dict[str, Any]], crops: Sequence[MaskCrop | None], shape: tuple[int, int],
    scores: np.ndarray, prompt_type: str, prompt_boxes: np.ndarray, source_uri: str,
) -> list[dict[str, Any]]:
    """One INSTANCES row per object, in annotation order (instance_id = paint order); its mask
    is crops[i] on a tile of `shape` (H, W)."""
    height, width = shape
    rows = []
    for i, (obj, crop) in enumerate(zip(objects, crops)):
        summary = describe_crop(crop, height, width)
        rows.append({
            "tile_id": tile,
            "instance_id": i,
            "class_id": obj["class_id"],
            "class_name": obj["class_name"],
            "difficult": obj["difficult"],
            "prompt_type": prompt_type,
            "prompt_box": [float(v) for v in prompt_boxes[i]],
            "polygon": obj["polygon"],
            "mask_rle": {"counts": summary.counts, "height": height, "width": width},
            "area": summary.area,
            "predicted_iou": float(scores[i]),
            "mask_box": None if summary.box is None else list(summary.box),
            "source_uri": source_uri,
            "source_line": obj["line"],
        })
    return rows


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
) -> list[dict[str, Any]]:
    """A 'todo' row after inference -> its instance rows, its PNGs written. The row carries objects
    (JSON), masks (packed), scores (N float32), prompt_boxes (N*4 float32), pixels (when cut)."""
    objects = json.loads(row["objects"])
    height, width = int(row["height"]), int(row["width"])
    crops = crops_of_packed(row["masks"], len(objects), height, width)
    scores = np.frombuffer(row["scores"], dtype=np.float32)
    prompt_boxes = np.frombuffer(row["prompt_boxes"], dtype=np.float32).reshape(-1, 4)
    class_ids = np.array([o["class_id"] for o in objects], dtype=np.int64)
    label = paint_crops(crops, class_ids, (height, width), paint_order)
    rgb = tile_pixels(row["pixels"], height, width) if row["cut"] else None
    write_tile_files(fs, output_paths(out, row), label, palette, rgb)
    return instance_rows(row["tile_id"], objects, crops, (height, width), scores, prompt_type, prompt_boxes,
                         row["label_source_uri"])
