"""COCO instance-segmentation json from a committed dataset (SAMRS shipped pickles; this is
the data-only replacement that detection/segmentation toolboxes read).

    images:      one per tile   {id, file_name (tile pixels), width, height, tile_id}
    annotations: one per instance {id, image_id, category_id (= class id), segmentation (RLE),
                                   area, bbox [x, y, w, h] of the mask, iscrowd 0, predicted_iou}
    categories:  the preset's classes, id = label id in the label PNGs

The file is written shard by shard, so memory stays at one shard however big the dataset is.
"""

from __future__ import annotations

import json
from typing import IO, Any, Optional

from samrs_ray import manifest, storage

INSTANCE_COLUMNS = ["tile_id", "class_id", "mask_rle", "area", "mask_box", "predicted_iou"]


def coco_categories(record: manifest.RunRecord) -> list[dict[str, Any]]:
    classes = record.config["preset"]["classes"]
    return [{"id": i, "name": name, "supercategory": record.config["preset"]["name"]} for i, name in enumerate(classes)]


def annotation(row: dict[str, Any], annotation_id: int, image_id: int) -> dict[str, Any]:
    rle = row["mask_rle"]
    box = row["mask_box"]
    bbox = [0.0, 0.0, 0.0, 0.0] if box is None else [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    return {
        "id": annotation_id, "image_id": image_id, "category_id": row["class_id"],
        "segmentation": {"size": [rle["height"], rle["width"]], "counts": rle["counts"]},
        "area": row["area"], "bbox": bbox, "iscrowd": 0, "predicted_iou": row["predicted_iou"],
    }


def write_coco(out: str, dest: Optional[str] = None, storage_options: Optional[dict] = None) -> tuple[str, int, int]:
    """Write <out>/coco.json (or `dest`); returns (path written, images, annotations)."""
    fs, root = storage.open_fs(out, storage_options)
    record = manifest.read_committed(fs, root)
    if record is None:
        raise FileNotFoundError(f"{out}: no committed dataset (_run.json is missing)")
    dest = dest or storage.join(out, "coco.json")
    dest_fs, dest_path = storage.open_fs(dest, storage_options)
    images = annotations = 0
    # Written under a temporary name and moved into place, so a reader never sees half a file.
    partial = f"{dest_path}.partial"
    with dest_fs.open(partial, "w") as f:
        f.write('{"info": ' + json.dumps({"description": f"samrs-ray {record.run_id}", "model": record.model["id"]}))
        f.write(', "categories": ' + json.dumps(coco_categories(record)) + ', "images": [')
        image_ids: dict[str, int] = {}
        for name in record.shards:
            tiles = manifest.read_table(fs, manifest.shard_path(root, "tiles", name),
                                        ["tile_id", "image_uri", "width", "height"]).to_pylist()
            for tile in tiles:
                image_ids[tile["tile_id"]] = images + 1
                entry = {"id": images + 1, "file_name": tile["image_uri"], "width": tile["width"],
                         "height": tile["height"], "tile_id": tile["tile_id"]}
                f.write(("," if images else "") + json.dumps(entry))
                images += 1
        f.write('], "annotations": [')
        for name in record.shards:
            rows = manifest.read_table(fs, manifest.shard_path(root, "instances", name), INSTANCE_COLUMNS).to_pylist()
            annotations = write_annotations(f, rows, image_ids, annotations)
        f.write("]}\n")
    dest_fs.mv(partial, dest_path)
    return dest, images, annotations


def write_annotations(f: IO[str], rows: list[dict[str, Any]], image_ids: dict[str, int], written: int) -> int:
    for row in rows:
        f.write(("," if written else "") + json.dumps(annotation(row, written + 1, image_ids[row["tile_id"]])))
        written += 1
    return written
