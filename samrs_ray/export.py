"""`samrs-ray export`: a committed version in the layout another training code reads.

--format samrs: SAMRS's own release layout, so that SAMRS's `SegmentationDataset` runs on it
unchanged:

    <dest>/images/<tile_id>.png   the tile's pixels
    <dest>/gray/<tile_id>.png     class ids, 255 = unlabeled (SAMRS's label_path)
    <dest>/color/<tile_id>.png    the same map in the preset's colours (when the run wrote colours)
    <dest>/ins/<tile_id>.json     the tile's instances with SAMRS's keys: mask (COCO RLE: size,
                                  counts), bbox (the prompt box, x0 y0 x1 y1), category (class
                                  name), label (class id), size (mask pixels); JSON where SAMRS
                                  wrote a pickle (a pickle is code, not data)
    <dest>/train.txt, valid.txt, test.txt   tile ids, one per line

--format mmseg: MMSegmentation's custom-dataset layout,

    <dest>/img_dir/{train,val,test}/<tile_id>.png   <dest>/ann_dir/{train,val,test}/<tile_id>.png

--format coco: one COCO instances file per split (MTP's form), <dest>/<split>.json, with file
names relative to the dataset's image root (coco.write_coco).

Splits map as SPLIT_FOLDERS says: a scene's `trainval` goes with train. An export is
incremental: `<dest>/.samrs-ray-export.json` records each tile's fingerprint, split and files,
and a rerun writes the tiles whose fingerprint or split changed and removes those that left
the version. Source and destination are any fsspec URIs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Literal, Optional, Union

from samrs_ray import manifest, storage
from samrs_ray.coco import write_coco
from samrs_ray.encoding.png import image_png
from samrs_ray.scenes import decode_image

Format = Literal["samrs", "mmseg", "coco"]
FORMATS: tuple[Format, ...] = ("samrs", "mmseg", "coco")
STATE = ".samrs-ray-export.json"
SPLIT_FOLDERS = {"train": "train", "trainval": "train", "val": "val", "test": "test"}
SAMRS_LISTS = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}
Version = Union[int, str, None]


def samrs_instance(row: dict[str, Any]) -> dict[str, Any]:
    """One instances-table row as SAMRS's per-instance dict."""
    rle = row["mask_rle"]
    return {"mask": {"size": [rle["height"], rle["width"]], "counts": rle["counts"]},
            "bbox": [float(v) for v in row["prompt_box"]], "category": row["class_name"],
            "label": row["class_id"], "size": row["area"]}


def split_folder(tile: dict[str, Any]) -> str:
    return SPLIT_FOLDERS.get(tile["split"] or "trainval", tile["split"])


def tile_files(fmt: Format, tile: dict[str, Any]) -> dict[str, str]:
    """{what: path under dest} of one tile: image, label, and for samrs color and instances."""
    name = tile["tile_id"]
    if fmt == "mmseg":
        folder = split_folder(tile)
        return {"image": f"img_dir/{folder}/{name}.png", "label": f"ann_dir/{folder}/{name}.png"}
    files = {"image": f"images/{name}.png", "label": f"gray/{name}.png", "instances": f"ins/{name}.json"}
    if tile["color_uri"]:
        files["color"] = f"color/{name}.png"
    return files


def export(out: str, dest: str, fmt: Format, version: Version = None,
           storage_options: Optional[dict] = None) -> dict[str, int]:
    """Write (or update) `fmt`'s layout of a committed version at `dest`; returns counts:
    tiles, written, removed, and tiles per split."""
    tiles = sorted(manifest.read_dataset(out, "tiles", storage_options, version=version).to_pylist(),
                   key=lambda t: t["tile_id"])
    per_split: dict[str, list[str]] = defaultdict(list)
    for tile in tiles:
        per_split[split_folder(tile)].append(tile["tile_id"])
    counts = {"tiles": len(tiles), "written": 0, "removed": 0, **{s: len(n) for s, n in per_split.items()}}
    if fmt == "coco":
        for split in per_split:
            counts["written"] += write_coco(out, storage.join(dest, f"{split}.json"), storage_options, version,
                                            splits=[s for s, f in SPLIT_FOLDERS.items() if f == split] or [split])[2]
        return counts

    fs, root = storage.open_fs(dest, storage_options)
    state_path = storage.join(root, STATE)
    before: dict[str, dict] = json.loads(fs.cat_file(state_path)) if storage.exists(fs, state_path) else {}
    instances: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if fmt == "samrs":
        for row in manifest.read_dataset(out, "instances", storage_options, version=version).to_pylist():
            instances[row["tile_id"]].append(row)
    now: dict[str, dict] = {}
    for tile in tiles:
        files = tile_files(fmt, tile)
        now[tile["tile_id"]] = {"fingerprint": tile["fingerprint"], "files": sorted(files.values())}
        if before.get(tile["tile_id"]) == now[tile["tile_id"]]:
            continue
        write_tile(fs, root, tile, files, sorted(instances[tile["tile_id"]], key=lambda r: r["instance_id"]),
                   storage_options)
        counts["written"] += 1
    stale = {f for old in before.values() for f in old["files"]} - {f for new in now.values() for f in new["files"]}
    for path in sorted(stale):
        if storage.exists(fs, storage.join(root, path)):
            fs.rm_file(storage.join(root, path))
    counts["removed"] = len(set(before) - set(now))
    if fmt == "samrs":
        for split, list_name in SAMRS_LISTS.items():
            if per_split.get(split) or split != "test":
                storage.write_atomic(fs, storage.join(root, list_name),
                                     "".join(f"{n}\n" for n in per_split.get(split, [])).encode())
    # last: a run killed before this line writes its tiles again next time
    storage.write_atomic(fs, state_path, json.dumps(now, sort_keys=True).encode())
    return counts


def write_tile(fs, root: str, tile: dict[str, Any], files: dict[str, str], rows: list[dict[str, Any]],
               storage_options: Optional[dict]) -> None:
    pixels = storage.read_bytes(tile["image_uri"], storage_options)
    if tile["image_uri"] == tile["source_uri"]:
        # the tile is the whole scene, in the scene's own format and mode: both layouts read RGB PNGs
        pixels = image_png(decode_image(pixels, tile["image_uri"]))
    storage.write_atomic(fs, storage.join(root, files["image"]), pixels)
    storage.write_atomic(fs, storage.join(root, files["label"]), storage.read_bytes(tile["label_uri"], storage_options))
    if "color" in files:
        storage.write_atomic(fs, storage.join(root, files["color"]),
                             storage.read_bytes(tile["color_uri"], storage_options))
    if "instances" in files:
        storage.write_atomic(fs, storage.join(root, files["instances"]),
                             json.dumps([samrs_instance(r) for r in rows]).encode())
