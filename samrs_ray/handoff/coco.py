"""COCO instance-segmentation json from a committed dataset (SAMRS shipped pickles; this is
the data-only replacement that detection/segmentation toolboxes read).

    info:        {description, model, image_root}
    images:      one per tile   {id, file_name (tile pixels, relative to info.image_root), width,
                                 height, tile_id}
    annotations: one per instance {id, image_id, category_id (= class id + 1), segmentation (RLE),
                                   area, bbox [x, y, w, h] of the mask, iscrowd 0, predicted_iou}
    categories:  the preset's classes in label order, id = label id in the label PNGs + 1

As COCO tools expect: ids from 1 (0 is background to many of them), and file names relative to
an image root, which the export names (`CocoDetection(root=info["image_root"], annFile=...)`).

The annotations are written shard by shard, so memory holds one instances shard (and the
tiles' four columns) however big the dataset is.
"""

from __future__ import annotations

import json
import posixpath
from typing import IO, Any, Optional

import pyarrow as pa
import pyarrow.compute as pc

from samrs_ray.dataset import layout, manifest, storage, versions

INSTANCE_COLUMNS = ["tile_id", "class_id", "mask_rle", "area", "mask_box", "predicted_iou"]


def coco_categories(record: versions.RunRecord) -> list[dict[str, Any]]:
    classes = record.config["preset"]["classes"]
    return [{"id": category_id(i), "name": name, "supercategory": record.config["preset"]["name"]}
            for i, name in enumerate(classes)]


def category_id(class_id: int) -> int:
    return class_id + 1


def split_scheme(uri: str) -> tuple[str, str]:
    """'s3://bucket/key' -> ('s3://', 'bucket/key'); a local path or file:// URI -> ('', path), as
    local tools (CocoDetection's root) want it."""
    head, sep, path = uri.partition("://")
    if not sep or head == "file":
        return "", path if sep else uri
    return head + sep, path


def image_root(uris: list[str]) -> str:
    """The deepest folder holding every image (a URI keeps its scheme: s3://bucket/...)."""
    scheme = split_scheme(uris[0])[0]
    return scheme + posixpath.commonpath([posixpath.dirname(split_scheme(uri)[1]) for uri in uris])


def annotation(row: dict[str, Any], annotation_id: int, image_id: int) -> dict[str, Any]:
    rle = row["mask_rle"]
    box = row["mask_box"]
    bbox = [0.0, 0.0, 0.0, 0.0] if box is None else [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    return {
        "id": annotation_id, "image_id": image_id, "category_id": category_id(row["class_id"]),
        "segmentation": {"size": [rle["height"], rle["width"]], "counts": rle["counts"]},
        "area": row["area"], "bbox": bbox, "iscrowd": 0, "predicted_iou": row["predicted_iou"],
    }


def write_coco(out: str, dest: Optional[str] = None, storage_options: Optional[dict] = None,
               version: versions.Version = None, splits: Optional[list[str]] = None) -> tuple[str, str, int, int]:
    """Write a committed version (None: the latest) to <out>/coco.json (or `dest`), only the
    tiles of `splits` if given (rows written before splits count as trainval); returns (path
    written, image root, images, annotations)."""
    fs, root = storage.open_fs(out, storage_options)
    record = versions.find(fs, root, version)
    dest = dest or layout.coco_json(out)
    dest_fs, dest_path = storage.open_fs(dest, storage_options)
    images = annotations = 0
    tables = [manifest.read_table(fs, layout.shard_path(root, "tiles", name),
                                  ["tile_id", "image_uri", "width", "height", "split"]) for name in record.shards]
    if splits is not None:
        wanted = pa.array(splits)
        tables = [t.filter(pc.is_in(pc.fill_null(t.column("split"), "trainval"), value_set=wanted)) for t in tables]
    images_at = image_root([uri for t in tables for uri in t.column("image_uri").to_pylist()]) if tables else ""
    # Written under a temporary name and moved into place, so a reader never sees half a file.
    partial = f"{dest_path}.partial"
    dest_fs.makedirs(posixpath.dirname(dest_path), exist_ok=True)
    with dest_fs.open(partial, "w") as f:
        f.write('{"info": ' + json.dumps({"description": f"samrs-ray {record.run_id}", "model": record.model["id"],
                                          "image_root": images_at}))
        f.write(', "categories": ' + json.dumps(coco_categories(record)) + ', "images": [')
        image_ids: dict[str, int] = {}
        for table in tables:
            for tile in table.to_pylist():
                image_ids[tile["tile_id"]] = images + 1
                file_name = posixpath.relpath(split_scheme(tile["image_uri"])[1], split_scheme(images_at)[1])
                entry = {"id": images + 1, "file_name": file_name, "width": tile["width"],
                         "height": tile["height"], "tile_id": tile["tile_id"]}
                f.write(("," if images else "") + json.dumps(entry))
                images += 1
        f.write('], "annotations": [')
        for name in record.shards:
            rows = manifest.read_table(fs, layout.shard_path(root, "instances", name), INSTANCE_COLUMNS).to_pylist()
            annotations = write_annotations(f, rows, image_ids, annotations)
        f.write("]}\n")
    dest_fs.mv(partial, dest_path)
    return dest, images_at, images, annotations


def write_annotations(f: IO[str], rows: list[dict[str, Any]], image_ids: dict[str, int], written: int) -> int:
    for row in rows:
        if row["tile_id"] in image_ids:  # else its tile is in another split
            f.write(("," if written else "") + json.dumps(annotation(row, written + 1, image_ids[row["tile_id"]])))
            written += 1
    return written
