"""Dataset statistics: an aggregation over the committed manifests, and the report.

Each committed shard pair (tiles + instances of the same name) is summarised by one call of
`shard_partial` into a small partial per subset: instance counts and pixels per class, the
mask-size histogram, label-map pixels per class id, scene names, tile sizes and example
candidates. Only those partials (kilobytes each) are added up, so 1.7 million instances never
sit in one process and only the columns named here are read. The calls run in this process,
or as Ray tasks for a large version or a named cluster (shard_tasks.py); the result is the same.

Two pixel counts per class, because they answer different questions:
  instance_pixels  the sum of instance mask areas (manifest `area`): how much mask SAM drew
                   per class; overlapping instances and overlapping tiles each count again.
  label_pixels     pixels of the class in the label PNGs: what a segmentation model trains
                   on (overlaps resolved by the paint order; pixels in two overlapping tiles
                   count twice, as the tiles are separate training images). Reading the PNGs
                   costs a decode per tile, so it can be turned off (then it is null).
The figures show label_pixels when computed, with instance_pixels beside them.

Over 300 lines on purpose: the per-shard partials, their sum and the report's text are one
computation, read together when a statistic changes; the figures live in figures.py.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from samrs_ray.dataset import layout, manifest, storage, versions
from samrs_ray.encoding.png import decode_label_png
from samrs_ray.encoding.rle import decode_rle
from samrs_ray.inputs.images import decode_image
from samrs_ray.inputs.presets import IGNORE_ID, PRESETS, make_palette
from samrs_ray.report import figures
from samrs_ray.report.shard_tasks import map_shards

HIST_BIN = 50  # pixels per histogram bin, as SAMRS's mask-size figure
HIST_MAX = 2500  # the last regular bin ends here; larger masks go to one overflow bin
N_BINS = HIST_MAX // HIST_BIN + 1
EXAMPLE_CANDIDATES = 8  # per subset and shard
# From this many tiles, stats run as Ray tasks even without --address. Here a core reads the
# manifests and decodes the label PNGs of 150 to 200 tiles/s (1024 px tiles, local disk), so below
# this a version takes two minutes at most, less with more cores, while starting and stopping a
# local Ray alone takes some 20 s; above it, Ray's worker processes use every core without the GIL.
RAY_MIN_TILES = 20_000
TILE_COLUMNS = ["tile_id", "subset", "source_uri", "width", "height", "label_uri", "n_instances"]
INSTANCE_COLUMNS = ["tile_id", "class_id", "class_name", "area"]


def hist_edges() -> list[int]:
    """Left edges of the mask-size bins; the last bin is [HIST_MAX, inf)."""
    return list(range(0, HIST_MAX + 1, HIST_BIN))


def size_histogram(areas: np.ndarray) -> np.ndarray:
    """areas (N,) ints -> (N_BINS,) counts: [0, 50), [50, 100), ..., [2450, 2500), [2500, inf)."""
    bins = np.minimum(np.asarray(areas, dtype=np.int64) // HIST_BIN, N_BINS - 1)
    return np.bincount(bins, minlength=N_BINS)


def resolve(out: str, uri: Optional[str]) -> Optional[str]:
    """A manifest URI as something fsspec opens: full URIs and absolute paths as they are,
    relative ones under `out`."""
    if not uri:
        return None
    if "://" in uri or uri.startswith("/"):
        return uri
    return storage.join(out, uri)


# --- one shard pair -> partial sums (in this process or a Ray task) ---


def shard_partial(out: str, shard: str, storage_options: Optional[dict], label_pixels: bool) -> dict[str, Any]:
    """Per-subset partial sums of one shard pair (JSON-able)."""
    fs, root = storage.open_fs(out, storage_options)
    tiles = manifest.read_table(fs, layout.shard_path(root, "tiles", shard), TILE_COLUMNS)
    instances = manifest.read_table(fs, layout.shard_path(root, "instances", shard), INSTANCE_COLUMNS)
    subset_of = dict(zip(tiles.column("tile_id").to_pylist(), tiles.column("subset").to_pylist()))
    missing = set(instances.column("tile_id").to_pylist()) - subset_of.keys()
    if missing:
        raise ValueError(f"shard {shard}: instances of tiles missing from its tiles table: {sorted(missing)[:3]}")
    partial: dict[str, Any] = {}
    for subset in sorted(set(subset_of.values())):
        mine = tiles.filter(pc.equal(tiles.column("subset"), subset))
        ids = mine.column("tile_id")
        rows = instances.filter(pc.is_in(instances.column("tile_id"), value_set=ids))
        partial[subset] = subset_partial(out, shard, mine, rows, storage_options, label_pixels)
    return partial


def subset_partial(out: str, shard: str, tiles: pa.Table, instances: pa.Table,
                   storage_options: Optional[dict], label_pixels: bool) -> dict[str, Any]:
    areas = instances.column("area").to_numpy(zero_copy_only=False).astype(np.int64)
    names = instances.column("class_name").to_pylist()
    class_ids = instances.column("class_id").to_pylist()
    classes: dict[str, dict[str, int]] = {}
    for name, cid, area in zip(names, class_ids, areas.tolist()):
        entry = classes.setdefault(name, {"id": cid, "instances": 0, "instance_pixels": 0, "empty": 0})
        entry["instances"] += 1
        entry["instance_pixels"] += area
        entry["empty"] += area == 0
    sizes = Counter(f"{w}x{h}" for w, h in zip(tiles.column("width").to_pylist(), tiles.column("height").to_pylist()))
    pixels = np.zeros(256, dtype=np.int64)
    if label_pixels:
        for uri in tiles.column("label_uri").to_pylist():
            path = resolve(out, uri)
            if path is not None:
                label = decode_label_png(storage.read_bytes(path, storage_options))
                pixels += np.bincount(label.ravel(), minlength=256)[:256]
    return {
        "tiles": tiles.num_rows,
        "tiles_with_instances": int(pc.sum(pc.greater(tiles.column("n_instances"), 0)).as_py() or 0),
        "scenes": sorted(set(tiles.column("source_uri").to_pylist())),
        "tile_sizes": dict(sizes),
        "classes": classes,
        "hist": size_histogram(areas).tolist(),
        "label_pixels": pixels.tolist() if label_pixels else None,
        "examples": example_candidates(shard, instances),
    }


def example_candidates(shard: str, instances: pa.Table) -> list[dict[str, Any]]:
    """The shard's tiles with the most classes, then the most instances (tile id breaks ties)."""
    by_tile: dict[str, list[str]] = {}
    for tile, name in zip(instances.column("tile_id").to_pylist(), instances.column("class_name").to_pylist()):
        by_tile.setdefault(tile, []).append(name)
    ranked = sorted(by_tile.items(), key=lambda kv: (-len(set(kv[1])), -len(kv[1]), kv[0]))
    return [{"tile_id": t, "shard": shard, "classes": sorted(set(n)), "instances": len(n)}
            for t, n in ranked[:EXAMPLE_CANDIDATES]]


def collect_partials(out: str, shards: list[str], storage_options: Optional[dict], label_pixels: bool,
                     on_ray: bool = False, address: Optional[str] = None) -> list[dict[str, Any]]:
    """One partial per shard pair, in the shards' order: in this process, or as Ray tasks."""
    fn = functools.partial(shard_partial, out, storage_options=storage_options, label_pixels=label_pixels)
    return map_shards(fn, shards, on_ray, address)


# --- partials -> statistics (driver) ---


def combine(partials: list[dict[str, Any]], class_lists: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Add per-shard partials into per-subset statistics (the `subsets` part of stats.json)."""
    merged: dict[str, dict[str, Any]] = {}
    for partial in partials:
        for subset, part in partial.items():
            m = merged.setdefault(subset, {
                "tiles": 0, "tiles_with_instances": 0, "scenes": set(), "tile_sizes": Counter(),
                "classes": {}, "hist": np.zeros(N_BINS, np.int64), "label_pixels": None, "examples": [],
            })
            m["tiles"] += part["tiles"]
            m["tiles_with_instances"] += part["tiles_with_instances"]
            m["scenes"].update(part["scenes"])
            m["tile_sizes"].update(part["tile_sizes"])
            m["hist"] += np.asarray(part["hist"], np.int64)
            m["examples"] += part["examples"]
            if part["label_pixels"] is not None:
                m["label_pixels"] = (0 if m["label_pixels"] is None else m["label_pixels"]) + np.asarray(
                    part["label_pixels"], np.int64)
            for name, c in part["classes"].items():
                entry = m["classes"].setdefault(name, {"id": c["id"], "instances": 0, "instance_pixels": 0, "empty": 0})
                for key in ("instances", "instance_pixels", "empty"):
                    entry[key] += c[key]
    return {s: finish_subset(m, class_lists.get(s)) for s, m in sorted(merged.items())}


def finish_subset(m: dict[str, Any], class_list: Optional[list[str]]) -> dict[str, Any]:
    """One subset's statistics, classes in label-id order (every class of the list, zeros kept)."""
    seen = sorted(m["classes"].items(), key=lambda kv: (kv[1]["id"], kv[0]))
    names = list(class_list) if class_list else [n for n, _ in seen]
    names += [n for n, _ in seen if n not in names]
    label = m["label_pixels"]
    classes = []
    for i, name in enumerate(names):
        c = m["classes"].get(name, {"id": i, "instances": 0, "instance_pixels": 0, "empty": 0})
        classes.append({
            "id": c["id"], "name": name, "instances": c["instances"], "instance_pixels": c["instance_pixels"],
            "empty_masks": c["empty"], "label_pixels": None if label is None else int(label[c["id"]]),
        })
    instances = sum(c["instances"] for c in classes)
    return {
        "images": len(m["scenes"]),
        "tiles": m["tiles"],
        "tiles_with_instances": m["tiles_with_instances"],
        "tile_sizes": dict(sorted(m["tile_sizes"].items(), key=lambda kv: -kv[1])),
        "classes": len(names),
        "classes_present": sum(c["instances"] > 0 for c in classes),
        "instances": instances,
        "empty_masks": sum(c["empty_masks"] for c in classes),
        "unlabeled_pixels": None if label is None else int(label[IGNORE_ID]),
        "per_class": classes,
        "mask_size_hist": m["hist"].tolist(),
        "examples": pick_examples(m["examples"], 6),
    }


def pick_examples(candidates: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Greedy: each pick adds the most classes not yet shown, then has the most instances."""
    chosen: list[dict[str, Any]] = []
    shown: set[str] = set()
    pool = sorted(candidates, key=lambda c: c["tile_id"])
    while pool and len(chosen) < count:
        best = max(pool, key=lambda c: (len(set(c["classes"]) - shown), len(c["classes"]), c["instances"]))
        pool.remove(best)
        chosen.append(best)
        shown.update(best["classes"])
    return chosen


def class_lists_of(record: versions.RunRecord) -> dict[str, list[str]]:
    """subset name -> class list in label-id order, from the run's preset."""
    preset = record.config.get("preset") or {}
    if preset.get("name") and preset.get("classes"):
        return {preset["name"]: list(preset["classes"])}
    return {}


def compute_stats(out: str, storage_options: Optional[dict] = None, label_pixels: bool = True,
                  version: versions.Version = None, *, on_ray: Optional[bool] = None,
                  address: Optional[str] = None) -> dict[str, Any]:
    """Statistics of a committed version of the dataset at `out` (None: the latest): the
    content of stats.json. on_ray None: as Ray tasks when a Ray `address` is given or the
    version has RAY_MIN_TILES tiles or more, else in this process."""
    fs, root = storage.open_fs(out, storage_options)
    record = versions.find(fs, root, version)
    if on_ray is None:
        on_ray = address is not None or record.counts.get("tiles", 0) >= RAY_MIN_TILES
    partials = collect_partials(out, list(record.shards), storage_options, label_pixels, on_ray, address)
    return {
        "out": out,
        "run_id": record.run_id,
        "model": record.model.get("id"),
        "hist_bin": HIST_BIN,
        "hist_edges": hist_edges(),
        "pixel_counts": "label_pixels: label-map pixels per class; instance_pixels: sum of mask areas",
        "subsets": combine(partials, class_lists_of(record)),
    }


# --- the report ---


def palette_of(subset: str, n_classes: int) -> tuple[tuple[int, int, int], ...]:
    preset = PRESETS.get(subset)
    return preset.palette if preset is not None and len(preset.classes) == n_classes else make_palette(n_classes)


def load_example(out: str, pick: dict[str, Any], subset: str, stats: dict[str, Any],
                 storage_options: Optional[dict]) -> figures.ExampleTile:
    """One example tile's pixels, label map and instance masks, read back from the dataset."""
    fs, root = storage.open_fs(out, storage_options)
    keep = pc.field("tile_id") == pick["tile_id"]
    with fs.open(layout.shard_path(root, "tiles", pick["shard"]), "rb") as f:
        tile = pq.read_table(f, filters=keep).to_pylist()[0]
    with fs.open(layout.shard_path(root, "instances", pick["shard"]), "rb") as f:
        rows = pq.read_table(f, columns=["tile_id", "class_id", "mask_rle"], filters=keep).to_pylist()
    h, w = tile["height"], tile["width"]
    image_uri = resolve(out, tile["image_uri"])
    if image_uri is None:
        raise ValueError(f"tile {tile['tile_id']} has no image_uri")
    image = decode_image(storage.read_bytes(image_uri, storage_options), image_uri)
    if image.shape[:2] != (h, w):  # the image is the whole scene: cut the tile's window
        from samrs_ray.planning.tiling import Window, cut_tile
        image = cut_tile(image, Window(tile["x0"], tile["y0"], w, h), (0, 0, 0))
    label_uri = resolve(out, tile["label_uri"])
    label = (decode_label_png(storage.read_bytes(label_uri, storage_options)) if label_uri
             else np.full((h, w), IGNORE_ID, np.uint8))
    masks = [(r["class_id"], decode_rle(r["mask_rle"]["counts"], r["mask_rle"]["height"], r["mask_rle"]["width"]))
             for r in rows]
    names = [c["name"] for c in stats["per_class"]]
    return figures.ExampleTile(title=f"{tile['tile_id']} ({len(rows)} instances)", image=image, label=label,
                               masks=masks, class_names=names, palette=palette_of(subset, len(names)))


def summary_markdown(stats: dict[str, Any], figure_names: list[str]) -> str:
    lines = [f"# Dataset statistics: {stats['out']}", "",
             f"Run `{stats['run_id']}`, model `{stats['model']}`.", "",
             "| subset | images | tiles | tiles with instances | tile size | classes (present) | instances "
             "| empty masks |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    for name, s in stats["subsets"].items():
        sizes = ", ".join(s["tile_sizes"])
        lines.append(f"| {name} | {s['images']:,} | {s['tiles']:,} | {s['tiles_with_instances']:,} | {sizes} | "
                     f"{s['classes']} ({s['classes_present']}) | {s['instances']:,} | {s['empty_masks']:,} |")
    for name, s in stats["subsets"].items():
        lines += ["", f"## {name}: per class", "",
                  "| id | class | instances | instance pixels (sum of areas) | label-map pixels | empty masks |",
                  "|---:|---|---:|---:|---:|---:|"]
        for c in s["per_class"]:
            label = "n/a" if c["label_pixels"] is None else f"{c['label_pixels']:,}"
            lines.append(f"| {c['id']} | {c['name']} | {c['instances']:,} | {c['instance_pixels']:,} | {label} | "
                         f"{c['empty_masks']:,} |")
        hist = s["mask_size_hist"]
        small = sum(hist[: 500 // HIST_BIN])
        lines += ["", f"Mask sizes: {small:,} of {s['instances']:,} masks are under 500 pixels; "
                      f"{hist[-1]:,} are {HIST_MAX:,} pixels or more."]
    lines += ["", "## Figures", ""] + [f"![{n}]({n})" for n in figure_names]
    return "\n".join(lines) + "\n"


def write_report(out: str, report: Optional[str] = None, storage_options: Optional[dict] = None,
                 *, label_pixels: bool = True, n_examples: int = 6, version: versions.Version = None,
                 on_ray: Optional[bool] = None, address: Optional[str] = None) -> dict[str, Any]:
    """Compute the statistics of a committed version of the dataset at `out` (None: the latest;
    on_ray and address as compute_stats) and write `stats.json`, `summary.md` and the PNG
    figures to `report` (default <out>/report). Returns the statistics."""
    stats = compute_stats(out, storage_options, label_pixels, version, on_ray=on_ray, address=address)
    report = report or layout.report_folder(out)
    fs, root = storage.open_fs(report, storage_options)
    pngs = {
        "summary_table.png": figures.summary_table(stats),
        "class_counts.png": figures.class_counts(stats),
        "mask_sizes.png": figures.mask_sizes(stats),
    }
    per_subset = max(1, n_examples // max(1, len(stats["subsets"])))
    examples = [load_example(out, pick, name, s, storage_options)
                for name, s in stats["subsets"].items() for pick in s["examples"][:per_subset]]
    if examples:
        pngs["examples.png"] = figures.examples_grid(examples)
    for name, fig in pngs.items():
        storage.write_atomic(fs, storage.join(root, name), figures.to_png(fig))
    storage.write_atomic(fs, storage.join(root, "stats.json"), (json.dumps(stats, indent=2) + "\n").encode())
    storage.write_atomic(fs, storage.join(root, "summary.md"), summary_markdown(stats, list(pngs)).encode())
    return stats
