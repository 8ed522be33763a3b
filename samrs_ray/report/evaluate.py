"""Mask quality of a generated dataset against ground-truth instance masks (iSAID PNGs or COCO json).

Each generated instance (tile pixels, placed in its scene at the tile's x0, y0) is matched to
the ground-truth instance of that scene it overlaps most (most shared pixels, any class); its
IoU is intersection / union with that instance, 0 when it overlaps none. Instances of
overlapping tiles are evaluated each on its own, and a mask's pixels in a tile's padding count
in its union. Scores, overall and per generated class: mean and median IoU per instance, the
area-weighted IoU (sum of intersections / sum of unions, i.e. each instance weighted by its
union area), the share of instances with IoU >= 0.5, and the mean boundary F-score of each mask
against its match (boundary.py; 0 when it matches none). compare.py puts several versions (one
per engine, say) side by side.

Masks are held by their bounding box (encoding.crops.MaskCrop), never at scene size, so a small vehicle in a
20000 x 20000 scene costs its own pixels. The dataset is read one shard pair at a time in
this process; ground truth (ground_truth.py) is read per scene and kept for the last few scenes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import numpy as np

from samrs_ray.dataset import layout, manifest, storage, versions
from samrs_ray.encoding.crops import MaskCrop
from samrs_ray.encoding.rle import string_to_counts
from samrs_ray.inputs.listing import stem
from samrs_ray.inputs.presets import class_key
from samrs_ray.report.boundary import boundary_f
from samrs_ray.report.ground_truth import SceneTruth, open_truth, rle_crop

CACHED_SCENES = 4


def intersection(a: MaskCrop, b: MaskCrop) -> int:
    ax0, ay0, ax1, ay1 = a.bounds
    bx0, by0, bx1, by1 = b.bounds
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 >= x1 or y0 >= y1:
        return 0
    return int(np.count_nonzero(a.pixels[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0]
                                & b.pixels[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]))


@dataclass
class Match:
    gt: int  # index in SceneTruth.instances, -1 when the mask overlaps no instance
    intersection: int
    union: int

    @property
    def iou(self) -> float:
        return self.intersection / self.union if self.union else 0.0


def match(crop: Optional[MaskCrop], truth: SceneTruth) -> Match:
    """The ground-truth instance `crop` (scene pixels) shares most pixels with; ties: the first."""
    if crop is None:  # an empty mask matches nothing and scores 0
        return Match(-1, 0, 0)
    area = int(np.count_nonzero(crop.pixels))
    x0, y0, x1, y1 = crop.bounds
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
    boundary_f: float = math.nan  # mean boundary F-score (boundary.py)


def scores(inter: np.ndarray, union: np.ndarray, bf: Optional[np.ndarray] = None) -> Scores:
    """inter, union (N,) ints and bf (N,) boundary F-scores per instance -> Scores (NaN where N is 0)."""
    iou = np.divide(inter, union, out=np.zeros(len(inter)), where=union > 0)
    if not len(iou):
        return Scores(0, math.nan, math.nan, math.nan, math.nan)
    total = float(union.sum())
    return Scores(len(iou), float(iou.mean()), float(np.median(iou)),
                  float(inter.sum()) / total if total else 0.0, float((iou >= 0.5).mean()),
                  float(bf.mean()) if bf is not None and len(bf) else math.nan)


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
    model: str = ""  # the version's model id (sam-vit_h, sam2-hiera_l, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Accumulator:
    """Per-instance results, kept as small arrays (a few bytes per instance)."""

    def __init__(self) -> None:
        self.classes: list[str] = []
        self.inter: list[int] = []
        self.union: list[int] = []
        self.bf: list[float] = []
        self.agree: list[bool] = []
        self.unmatched = 0
        self.gt_seen: dict[tuple[str, int], bool] = {}  # (scene key, gt index) -> matched

    def add(self, class_name: str, m: Match, scene: str, truth: SceneTruth, bf: float = 0.0) -> None:
        self.classes.append(class_name)
        self.bf.append(bf)
        self.inter.append(m.intersection)
        self.union.append(m.union)
        if m.gt < 0:
            self.unmatched += 1
        else:
            self.agree.append(class_key(class_name) == class_key(truth.instances[m.gt].class_name))
            self.gt_seen[(scene, m.gt)] = True

    def result(self, **kwargs: Any) -> EvalResult:
        inter, union = np.asarray(self.inter, np.int64), np.asarray(self.union, np.int64)
        names, bf = np.asarray(self.classes, dtype=object), np.asarray(self.bf, np.float64)
        per_class = {c: scores(inter[names == c], union[names == c], bf[names == c]) for c in sorted(set(self.classes))}
        agreement = float(np.mean(self.agree)) if self.agree else math.nan
        return EvalResult(instances=len(inter), unmatched=self.unmatched, gt_matched=len(self.gt_seen),
                          class_agreement=agreement, overall=scores(inter, union, bf), per_class=per_class, **kwargs)


def evaluate(out: str, gt: str, gt_format: str, storage_options: Optional[dict] = None,
             version: versions.Version = None) -> EvalResult:
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
            crop = crop.shifted(dx, dy) if crop else None
            found = match(crop, truth)
            bf = boundary_f(crop, truth.instances[found.gt].crop if found.gt >= 0 else None)
            acc.add(row["class_name"], found, key, truth, bf)
    if not gt_counts:
        raise FileNotFoundError(f"{gt}: no ground truth ({gt_format}) found for any scene of {out}")
    return acc.result(out=out, run_id=record.run_id, gt=gt, gt_format=gt_format, scenes=len(gt_counts),
                      scenes_without_gt=sorted(missing), instances_without_gt=skipped,
                      gt_instances=sum(gt_counts.values()), model=record.model.get("id", ""))


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
        f"  {'class':<24}{'instances':>10}{'mean IoU':>10}{'median IoU':>12}{'area-weighted':>15}{'IoU>=0.5':>10}"
        f"{'boundary F':>12}",
    ]
    for name, s in [*r.per_class.items(), ("all", r.overall)]:
        if name == "all":
            lines.append("  " + "-" * 91)
        lines.append(f"  {name:<24}{s.instances:>10,}{num(s.mean_iou):>10}{num(s.median_iou):>12}"
                     f"{num(s.area_weighted_iou):>15}{pct(s.share_iou50):>10}{num(s.boundary_f):>12}")
    return "\n".join(lines)


def num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"
