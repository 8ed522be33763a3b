"""Mask quality of a generated dataset against ground-truth instance masks (iSAID PNGs or COCO json).

Each generated instance (tile pixels, placed in its scene at the tile's x0, y0) is matched to
the ground-truth instance of that scene it overlaps most (most shared pixels, any class); its
IoU is intersection / union with that instance, 0 when it overlaps none. Instances of
overlapping tiles are evaluated each on its own, and a mask's pixels in a tile's padding count
in its union. Scores, overall and per generated class: mean and median IoU per instance, the
area-weighted IoU (sum of intersections / sum of unions, i.e. each instance weighted by its
union area), and the share of instances with IoU >= 0.5.

Masks are held by their bounding box (`Crop`), never at scene size, so a small vehicle in a
20000 x 20000 scene costs its own pixels. The dataset is read one shard pair at a time in
this process; ground truth is read per scene and kept for the last few scenes.

Over 300 lines on purpose: ground truth (iSAID, COCO), matching and scoring share the `Crop`
representation, and splitting them would only move it into a module of its own.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from samrs_ray.dataset import layout, manifest, storage, versions
from samrs_ray.encoding.rle import decode_crop, string_to_counts
from samrs_ray.inputs.images import decode_image
from samrs_ray.inputs.listing import stem
from samrs_ray.planning.geometry import fill_polygon

GT_FORMATS = ("isaid-png", "coco")
ISAID_MIN_ID = 1000  # the iSAID devkit reads ids below 1000 as no instance
# iSAID semantic colours (R, G, B) as PIL reads the *_instance_color_RGB.png files (devkit labels.py)
ISAID_CLASSES: dict[tuple[int, int, int], str] = {
    (0, 0, 63): "ship", (0, 63, 63): "storage_tank", (0, 63, 0): "baseball_diamond",
    (0, 63, 127): "tennis_court", (0, 63, 191): "basketball_court", (0, 63, 255): "Ground_Track_Field",
    (0, 127, 63): "Bridge", (0, 127, 127): "Large_Vehicle", (0, 0, 127): "Small_Vehicle",
    (0, 0, 191): "Helicopter", (0, 0, 255): "Swimming_pool", (0, 191, 127): "Roundabout",
    (0, 127, 191): "Soccer_ball_field", (0, 127, 255): "plane", (0, 100, 155): "Harbor",
}
CACHED_SCENES = 4


@dataclass
class Crop:
    """A mask by its bounding box: mask (h, w) bool, whose pixel [0, 0] is (x0, y0) in the scene."""

    x0: int
    y0: int
    mask: np.ndarray

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x0 + self.mask.shape[1], self.y0 + self.mask.shape[0]

    def shifted(self, dx: int, dy: int) -> "Crop":
        return Crop(self.x0 + dx, self.y0 + dy, self.mask)


def intersection(a: Crop, b: Crop) -> int:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 >= x1 or y0 >= y1:
        return 0
    return int(np.count_nonzero(a.mask[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0]
                                & b.mask[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]))


def rle_crop(runs: Sequence[int], height: int, width: int) -> Optional[Crop]:
    """COCO uncompressed counts -> Crop of the set pixels (rle.decode_crop), or None when empty."""
    found = decode_crop(runs, height, width)
    return None if found is None else Crop(*found)


def polygon_crop(polygons: Sequence[Sequence[float]], height: int, width: int) -> Optional[Crop]:
    """COCO polygons [[x, y, x, y, ...], ...] (image pixels) -> Crop of their union, clipped to the
    image, filled with masks.box's pixel-centre rule (pycocotools' rasteriser differs on edge pixels)."""
    points = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons if len(p) >= 6]
    if not points:
        return None
    everything = np.concatenate(points)
    x0 = min(max(int(math.floor(everything[:, 0].min())), 0), width)
    y0 = min(max(int(math.floor(everything[:, 1].min())), 0), height)
    x1 = min(int(math.ceil(everything[:, 0].max())) + 1, width)
    y1 = min(int(math.ceil(everything[:, 1].max())) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for p in points:
        mask |= fill_polygon(p - [x0, y0], y1 - y0, x1 - x0)
    return Crop(x0, y0, mask) if mask.any() else None


# --- ground truth ---


@dataclass
class GtInstance:
    class_name: str
    crop: Crop
    area: int


@dataclass
class SceneTruth:
    """All ground-truth instances of one scene (or tile); boxes (N, 4) int64 x0, y0, x1, y1 (exclusive)."""

    instances: list[GtInstance]
    boxes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.boxes = np.array([g.crop.box for g in self.instances], dtype=np.int64).reshape(-1, 4)


def rgb_to_int(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 R + 256 G + 65536 B (the iSAID devkit's encoding)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def isaid_truth(ids_rgb: np.ndarray, colour_rgb: np.ndarray) -> SceneTruth:
    """iSAID maps (H, W, 3) uint8 -> SceneTruth: instance id = R + 256 G + 65536 B (ids < 1000 are
    not instances); each instance's class is the most common iSAID colour under it."""
    ids = rgb_to_int(ids_rgb)
    colours = rgb_to_int(colour_rgb)
    if ids.shape != colours.shape:
        raise ValueError(f"iSAID instance map is {ids.shape[::-1]} but the colour map is {colours.shape[::-1]}")
    names = {r + 256 * g + 65536 * b: n for (r, g, b), n in ISAID_CLASSES.items()}
    flat = ids.ravel()
    pixels = np.flatnonzero(flat >= ISAID_MIN_ID)
    order = np.argsort(flat[pixels], kind="stable")
    pixels = pixels[order]
    values, first = np.unique(flat[pixels], return_index=True)
    rows, cols = np.divmod(pixels, ids.shape[1])
    instances = []
    for value, lo, hi in zip(values, first, list(first[1:]) + [len(pixels)]):
        y0, y1 = int(rows[lo:hi].min()), int(rows[lo:hi].max()) + 1
        x0, x1 = int(cols[lo:hi].min()), int(cols[lo:hi].max()) + 1
        under = colours.ravel()[pixels[lo:hi]]
        under = under[under != 0]
        if under.size:
            kinds, counts = np.unique(under, return_counts=True)
            top = int(kinds[np.argmax(counts)])
            name = names.get(top, f"unknown-colour-{top & 255}-{top >> 8 & 255}-{top >> 16}")
        else:
            name = "unlabeled"
        crop = Crop(x0, y0, ids[y0:y1, x0:x1] == value)
        instances.append(GtInstance(name, crop, hi - lo))
    return SceneTruth(instances)


class IsaidPngTruth:
    """Scene <stem>: <gt>/<stem>_instance_id_RGB.png and <gt>/<stem>_instance_color_RGB.png."""

    def __init__(self, gt: str, storage_options: Optional[dict] = None):
        self.fs, self.root = storage.open_fs(gt, storage_options)

    def get(self, name: str) -> Optional[SceneTruth]:
        ids = storage.join(self.root, f"{name}_instance_id_RGB.png")
        colour = storage.join(self.root, f"{name}_instance_color_RGB.png")
        if not storage.exists(self.fs, ids):
            return None
        if not storage.exists(self.fs, colour):
            raise FileNotFoundError(f"{colour}: iSAID colour map missing (it gives the classes of {ids})")
        return isaid_truth(decode_image(self.fs.cat_file(ids), ids), decode_image(self.fs.cat_file(colour), colour))


class CocoTruth:
    """A COCO instances json: images are found by the stem of their file_name. Crowd annotations
    (iscrowd=1) are left out, as COCO's own evaluation ignores them."""

    def __init__(self, gt: str, storage_options: Optional[dict] = None):
        data = json.loads(storage.read_bytes(gt, storage_options))
        self.categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        self.images: dict[str, dict[str, Any]] = {}
        for image in data.get("images", []):
            name = stem(image["file_name"])
            if name in self.images:
                raise ValueError(f"{gt}: two images have the file stem {name!r}")
            self.images[name] = image
        self.annotations: dict[Any, list[dict[str, Any]]] = {}
        for ann in data.get("annotations", []):
            if not ann.get("iscrowd", 0):
                self.annotations.setdefault(ann["image_id"], []).append(ann)

    def get(self, name: str) -> Optional[SceneTruth]:
        image = self.images.get(name)
        if image is None:
            return None
        height, width = int(image["height"]), int(image["width"])
        instances = []
        for ann in self.annotations.get(image["id"], []):
            crop = coco_crop(ann["segmentation"], height, width)
            if crop is not None:
                class_name = self.categories.get(ann.get("category_id"), str(ann.get("category_id")))
                instances.append(GtInstance(class_name, crop, int(np.count_nonzero(crop.mask))))
        return SceneTruth(instances)


def coco_crop(segmentation: Any, height: int, width: int) -> Optional[Crop]:
    """A COCO `segmentation` (polygon list, compressed RLE or uncompressed RLE) -> Crop."""
    if isinstance(segmentation, list):
        return polygon_crop(segmentation, height, width)
    h, w = (int(v) for v in segmentation["size"])
    counts = segmentation["counts"]
    runs = string_to_counts(counts.decode() if isinstance(counts, bytes) else counts) \
        if isinstance(counts, (str, bytes)) else counts
    return rle_crop(runs, h, w)


def open_truth(gt: str, gt_format: str, storage_options: Optional[dict] = None) -> Any:
    if gt_format == "isaid-png":
        return IsaidPngTruth(gt, storage_options)
    if gt_format == "coco":
        return CocoTruth(gt, storage_options)
    raise ValueError(f"--gt-format must be one of {GT_FORMATS}, not {gt_format!r}")


# --- matching and scores ---


@dataclass
class Match:
    gt: int  # index in SceneTruth.instances, -1 when the mask overlaps no instance
    intersection: int
    union: int

    @property
    def iou(self) -> float:
        return self.intersection / self.union if self.union else 0.0


def match(crop: Optional[Crop], truth: SceneTruth) -> Match:
    """The ground-truth instance `crop` (scene pixels) shares most pixels with; ties: the first."""
    if crop is None:  # an empty mask matches nothing and scores 0
        return Match(-1, 0, 0)
    area = int(np.count_nonzero(crop.mask))
    x0, y0, x1, y1 = crop.box
    b = truth.boxes
    candidates = np.flatnonzero((b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0))
    best, best_inter = -1, 0
    for i in candidates:
        inter = intersection(crop, truth.instances[i].crop)
        if inter > best_inter:
            best, best_inter = int(i), inter
    if best < 0:
        return Match(-1, 0, area)
    return Match(best, best_inter, area + truth.instances[best].area - best_inter)


@dataclass
class Scores:
    instances: int
    mean_iou: float
    median_iou: float
    area_weighted_iou: float  # sum of intersections / sum of unions
    share_iou50: float  # share of instances with IoU >= 0.5


def scores(inter: np.ndarray, union: np.ndarray) -> Scores:
    """inter, union (N,) ints per instance -> Scores (NaN where N is 0)."""
    iou = np.divide(inter, union, out=np.zeros(len(inter)), where=union > 0)
    if not len(iou):
        return Scores(0, math.nan, math.nan, math.nan, math.nan)
    total = float(union.sum())
    return Scores(len(iou), float(iou.mean()), float(np.median(iou)),
                  float(inter.sum()) / total if total else 0.0, float((iou >= 0.5).mean()))


@dataclass
class EvalResult:
    out: str
    run_id: str  # the version scored
    gt: str
    gt_format: str
    scenes: int  # scenes (or tiles) that had ground truth
    scenes_without_gt: list[str]
    instances: int  # generated instances evaluated
    instances_without_gt: int  # generated instances of scenes without ground truth (not scored)
    unmatched: int  # evaluated instances that overlap no ground-truth instance (IoU 0)
    gt_instances: int  # ground-truth instances in the evaluated scenes
    gt_matched: int  # of those, how many some generated instance matched
    class_agreement: float  # share of matched instances whose class equals their match's class
    overall: Scores
    per_class: dict[str, Scores]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def same_class(a: str, b: str) -> bool:
    """iSAID 'Large_Vehicle' and DOTA 'large-vehicle' name the same class."""
    def key(name: str) -> str:
        return "-".join(name.replace("_", " ").replace("-", " ").lower().split())
    return key(a) == key(b)


class Accumulator:
    """Per-instance results, kept as small arrays (a few bytes per instance)."""

    def __init__(self) -> None:
        self.classes: list[str] = []
        self.inter: list[int] = []
        self.union: list[int] = []
        self.agree: list[bool] = []
        self.unmatched = 0
        self.gt_seen: dict[tuple[str, int], bool] = {}  # (scene key, gt index) -> matched

    def add(self, class_name: str, m: Match, scene: str, truth: SceneTruth) -> None:
        self.classes.append(class_name)
        self.inter.append(m.intersection)
        self.union.append(m.union)
        if m.gt < 0:
            self.unmatched += 1
        else:
            self.agree.append(same_class(class_name, truth.instances[m.gt].class_name))
            self.gt_seen[(scene, m.gt)] = True

    def result(self, **kwargs: Any) -> EvalResult:
        inter, union = np.asarray(self.inter, np.int64), np.asarray(self.union, np.int64)
        names = np.asarray(self.classes, dtype=object)
        per_class = {c: scores(inter[names == c], union[names == c]) for c in sorted(set(self.classes))}
        agreement = float(np.mean(self.agree)) if self.agree else math.nan
        return EvalResult(instances=len(inter), unmatched=self.unmatched, gt_matched=len(self.gt_seen),
                          class_agreement=agreement, overall=scores(inter, union), per_class=per_class, **kwargs)


def evaluate(out: str, gt: str, gt_format: str, storage_options: Optional[dict] = None,
             version: Union[int, str, None] = None) -> EvalResult:
    """Score a committed version (number or run id; None: the latest) of the dataset at `out`
    against ground truth `gt` ('isaid-png': a folder of iSAID PNGs; 'coco': a COCO instances
    json). Ground truth of a scene is looked up by the stem of the tile's source_uri (placed at
    the tile's x0, y0), else by the tile id (at 0, 0)."""
    source = open_truth(gt, gt_format, storage_options)
    get: Callable[[str], Optional[SceneTruth]] = functools.lru_cache(maxsize=CACHED_SCENES)(source.get)
    fs, root = storage.open_fs(out, storage_options)
    record = versions.find(fs, root, version)
    acc = Accumulator()
    gt_counts: dict[str, int] = {}
    missing: set[str] = set()
    skipped = 0
    for shard in record.shards:
        tiles = manifest.read_table(fs, layout.shard_path(root, "tiles", shard),
                                    ["tile_id", "source_uri", "x0", "y0"])
        place = {t["tile_id"]: t for t in tiles.to_pylist()}
        rows = manifest.read_table(fs, layout.shard_path(root, "instances", shard),
                                   ["tile_id", "class_name", "mask_rle"]).to_pylist()
        rows.sort(key=lambda r: (place[r["tile_id"]]["source_uri"], r["tile_id"]))  # one scene after another
        for row in rows:
            tile = place[row["tile_id"]]
            key, truth, dx, dy = stem(tile["source_uri"]), None, tile["x0"], tile["y0"]
            truth = get(key)
            if truth is None:
                key, dx, dy = row["tile_id"], 0, 0
                truth = get(key)
            if truth is None:
                missing.add(stem(tile["source_uri"]))
                skipped += 1
                continue
            gt_counts[key] = len(truth.instances)
            rle = row["mask_rle"]
            crop = rle_crop(string_to_counts(rle["counts"]), rle["height"], rle["width"])
            acc.add(row["class_name"], match(crop.shifted(dx, dy) if crop else None, truth), key, truth)
    if not gt_counts:
        raise FileNotFoundError(f"{gt}: no ground truth ({gt_format}) found for any scene of {out}")
    return acc.result(out=out, run_id=record.run_id, gt=gt, gt_format=gt_format, scenes=len(gt_counts),
                      scenes_without_gt=sorted(missing), instances_without_gt=skipped,
                      gt_instances=sum(gt_counts.values()))


def format_result(result: EvalResult) -> str:
    """A plain-text table for the terminal."""
    r = result
    lines = [
        f"Mask IoU of {r.out} (run {r.run_id}) against {r.gt} ({r.gt_format})",
        f"  scenes with ground truth: {r.scenes}; without: {len(r.scenes_without_gt)}"
        + (f" ({', '.join(r.scenes_without_gt[:5])}{', ...' if len(r.scenes_without_gt) > 5 else ''})"
           if r.scenes_without_gt else ""),
        f"  generated instances scored: {r.instances:,} ({r.unmatched:,} overlap no ground truth); "
        f"not scored (no ground truth): {r.instances_without_gt:,}",
        f"  ground-truth instances: {r.gt_instances:,}, of which {r.gt_matched:,} matched",
        f"  matched instances with the same class as their match: {pct(r.class_agreement)}",
        "",
        f"  {'class':<24}{'instances':>10}{'mean IoU':>10}{'median IoU':>12}{'area-weighted':>15}{'IoU>=0.5':>10}",
    ]
    for name, s in [*r.per_class.items(), ("all", r.overall)]:
        if name == "all":
            lines.append("  " + "-" * 79)
        lines.append(f"  {name:<24}{s.instances:>10,}{num(s.mean_iou):>10}{num(s.median_iou):>12}"
                     f"{num(s.area_weighted_iou):>15}{pct(s.share_iou50):>10}")
    return "\n".join(lines)


def num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"
