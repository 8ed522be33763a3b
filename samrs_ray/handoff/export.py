"""`samrs-ray export`: a committed version in the layout another training code reads.

--format samrs: SAMRS's own release layout, so that SAMRS's `SegmentationDataset` runs on it
unchanged:

    <dest>/images/<tile_id>.png   the tile's pixels
    <dest>/gray/<tile_id>.png     class ids, 255 = unlabeled (SAMRS's label_path)
    <dest>/color/<tile_id>.png    the same map in the preset's colours (when the run wrote colours)
    <dest>/ins/<tile_id>.pkl      the tile's instances as SAMRS released them, a pickled list of
                                  dicts: mask (COCO RLE {size: [h, w], counts: str}), bbox (the
                                  prompt box, x0 y0 x1 y1, floats), category (class name), label
                                  (class id, int), size (mask pixels, int); SAMRS's statistic.py
                                  globs ins/*.pkl. Only builtins are pickled, so writing is safe;
                                  reading any pickle runs what it says, so `instances="json"`
                                  writes the same lists as ins/<tile_id>.json instead
    <dest>/train.txt, valid.txt, test.txt   tile ids, one per line

--format mmseg: MMSegmentation's custom-dataset layout,

    <dest>/img_dir/{train,val,test}/<tile_id>.png   <dest>/ann_dir/{train,val,test}/<tile_id>.png

--format geo: a label COG per scene and the objects as GeoParquet polygons (geo_export.py).

--format coco: one COCO instances file per split (MTP's form), <dest>/<split>.json, with file
names relative to the dataset's image root (coco.write_coco).

Splits map as SPLIT_FOLDERS says: a scene's `trainval` goes with train. An export is
incremental: `<dest>/.samrs-ray-export.json` records each tile's fingerprint and files, and a
rerun writes the tiles whose fingerprint changed, the files of a tile whose paths changed (a
split moved in mmseg, the other `instances` suffix), and removes the files no tile has any more
(tiles that left the version, the suffix not chosen). Source and destination are any fsspec URIs.
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from typing import Any, Literal, Optional

from samrs_ray.dataset import manifest, storage
from samrs_ray.dataset.versions import Version
from samrs_ray.encoding.png import image_png
from samrs_ray.handoff.coco import write_coco
from samrs_ray.inputs.images import decode_image

Format = Literal["samrs", "mmseg", "coco", "geo", "stac"]
FORMATS: tuple[Format, ...] = ("samrs", "mmseg", "coco", "geo")
Instances = Literal["pkl", "json"]
INSTANCE_FORMATS: tuple[Instances, ...] = ("pkl", "json")
STATE = ".samrs-ray-export.json"
SPLIT_FOLDERS = {"train": "train", "trainval": "train", "val": "val", "test": "test"}
SAMRS_LISTS = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}


def samrs_instance(row: dict[str, Any]) -> dict[str, Any]:
    """One instances-table row as SAMRS's per-instance dict, of builtin types only (what a
    pickle of it may hold, and what SAMRS's readers index and sum)."""
    rle = row["mask_rle"]
    return {"mask": {"size": [int(rle["height"]), int(rle["width"])], "counts": str(rle["counts"])},
            "bbox": [float(v) for v in row["prompt_box"]], "category": str(row["class_name"]),
            "label": int(row["class_id"]), "size": int(row["area"])}


def instances_bytes(rows: list[dict[str, Any]], instances: Instances) -> bytes:
    items = [samrs_instance(r) for r in rows]
    return json.dumps(items).encode() if instances == "json" else pickle.dumps(items, protocol=4)


def split_folder(tile: dict[str, Any]) -> str:
    return SPLIT_FOLDERS.get(tile["split"] or "trainval", tile["split"])


def tile_files(fmt: Format, tile: dict[str, Any], instances: Instances = "pkl") -> dict[str, str]:
    """{what: path under dest} of one tile: image, label, and for samrs color and instances."""
    name = tile["tile_id"]
    if fmt == "mmseg":
        folder = split_folder(tile)
        return {"image": f"img_dir/{folder}/{name}.png", "label": f"ann_dir/{folder}/{name}.png"}
    files = {"image": f"images/{name}.png", "label": f"gray/{name}.png", "instances": f"ins/{name}.{instances}"}
    if tile["color_uri"]:
        files["color"] = f"color/{name}.png"
    return files


def export(out: str, dest: str, fmt: Format, version: Version = None,
           storage_options: Optional[dict] = None, instances: Instances = "pkl") -> dict[str, int]:
    """Write (or update) `fmt`'s layout of a committed version at `dest` (`samrs-ray export`).

    Arguments:
      out (str), dest (str): the dataset's folder and where to write, at any fsspec URI.
      fmt (str): 'samrs' (images/ gray/ color/ ins/, train.txt valid.txt), 'mmseg' (img_dir/ ann_dir/
        by split), 'coco' (<split>.json), 'geo' (a label COG per scene and GeoParquet polygons) or
        'stac' (geo's files, and a STAC Collection with a label Item per scene).
      version (int or str or None): a version number or run id; None for the latest.
      instances (str): samrs's ins/ files, 'pkl' (as SAMRS released them) or 'json'.

    Returns:
      (dict[str, int]): tiles, written, removed and tiles per split; for 'geo': scenes, written,
        removed, objects; for 'stac', those and items (the Items rewritten).
    """
    if instances not in INSTANCE_FORMATS:
        raise ValueError(f"instances must be one of {INSTANCE_FORMATS}, not {instances!r}")
    if fmt == "geo":
        from samrs_ray.handoff.geo_export import export_geo  # the geo extra

        return export_geo(out, dest, version, storage_options)
    if fmt == "stac":
        from samrs_ray.handoff.stac_export import export_stac  # the geo extra

        return export_stac(out, dest, version, storage_options)
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
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if fmt == "samrs":
        for row in manifest.read_dataset(out, "instances", storage_options, version=version).to_pylist():
            rows[row["tile_id"]].append(row)
    now: dict[str, dict] = {}
    for tile in tiles:
        files = tile_files(fmt, tile, instances)
        now[tile["tile_id"]] = {"fingerprint": tile["fingerprint"], "files": sorted(files.values())}
        last = before.get(tile["tile_id"])
        if last is not None and last["fingerprint"] == tile["fingerprint"]:
            # same content: the files already at their paths are current
            files = {what: path for what, path in files.items() if path not in last["files"]}
        if not files:
            continue
        write_tile(fs, root, tile, files, sorted(rows[tile["tile_id"]], key=lambda r: r["instance_id"]),
                   instances, storage_options)
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
               instances: Instances, storage_options: Optional[dict]) -> None:
    for what, path in files.items():
        if what == "instances":
            data = instances_bytes(rows, instances)
        elif what == "image":
            data = storage.read_bytes(tile["image_uri"], storage_options)
            if tile["image_uri"] == tile["source_uri"]:
                # the tile is the whole scene, in the scene's own format and mode: both layouts read RGB PNGs
                data = image_png(decode_image(data, tile["image_uri"]))
        else:
            data = storage.read_bytes(tile[f"{what}_uri"], storage_options)
        storage.write_atomic(fs, storage.join(root, path), data)
