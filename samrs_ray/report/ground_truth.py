"""Ground truth to score a dataset against, by scene: iSAID's instance PNGs or a COCO instances
json, each instance a MaskCrop in scene pixels. GROUND_TRUTH names the formats `samrs-ray
evaluate --gt-format` takes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

import numpy as np

from samrs_ray.dataset import storage
from samrs_ray.encoding.crops import MaskCrop, crop_of
from samrs_ray.encoding.rle import decode_crop, string_to_counts
from samrs_ray.inputs.images import decode_image
from samrs_ray.inputs.listing import stem
from samrs_ray.planning.geometry import fill_polygon

ISAID_MIN_ID = 1000  # the iSAID devkit reads ids below 1000 as no instance
# iSAID semantic colours (R, G, B) as PIL reads the *_instance_color_RGB.png files (devkit labels.py)
ISAID_CLASSES: dict[tuple[int, int, int], str] = {
    (0, 0, 63): "ship", (0, 63, 63): "storage_tank", (0, 63, 0): "baseball_diamond",
    (0, 63, 127): "tennis_court", (0, 63, 191): "basketball_court", (0, 63, 255): "Ground_Track_Field",
    (0, 127, 63): "Bridge", (0, 127, 127): "Large_Vehicle", (0, 0, 127): "Small_Vehicle",
    (0, 0, 191): "Helicopter", (0, 0, 255): "Swimming_pool", (0, 191, 127): "Roundabout",
    (0, 127, 191): "Soccer_ball_field", (0, 127, 255): "plane", (0, 100, 155): "Harbor",
}

def rle_crop(runs: Sequence[int], height: int, width: int) -> Optional[MaskCrop]:
    """COCO uncompressed counts -> Crop of the set pixels (rle.decode_crop), or None when empty."""
    found = decode_crop(runs, height, width)
    return None if found is None else MaskCrop(*found)


def polygon_crop(polygons: Sequence[Sequence[float]], height: int, width: int) -> Optional[MaskCrop]:
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
    return crop_of(mask, x0, y0)


@dataclass
class GtInstance:
    class_name: str
    crop: MaskCrop
    area: int


@dataclass
class SceneTruth:
    """All ground-truth instances of one scene (or tile); boxes (N, 4) int64 x0, y0, x1, y1 (exclusive)."""

    instances: list[GtInstance]
    boxes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.boxes = np.array([g.crop.bounds for g in self.instances], dtype=np.int64).reshape(-1, 4)


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
        crop = MaskCrop(x0, y0, ids[y0:y1, x0:x1] == value)
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
                instances.append(GtInstance(class_name, crop, int(np.count_nonzero(crop.pixels))))
        return SceneTruth(instances)


def coco_crop(segmentation: Any, height: int, width: int) -> Optional[MaskCrop]:
    """A COCO `segmentation` (polygon list, compressed RLE or uncompressed RLE) -> Crop."""
    if isinstance(segmentation, list):
        return polygon_crop(segmentation, height, width)
    h, w = (int(v) for v in segmentation["size"])
    counts = segmentation["counts"]
    runs = string_to_counts(counts.decode() if isinstance(counts, bytes) else counts) \
        if isinstance(counts, (str, bytes)) else counts
    return rle_crop(runs, h, w)


class Truth(Protocol):
    def get(self, name: str) -> Optional[SceneTruth]:
        """The ground truth of scene (file stem) or tile `name`; None when it has none."""


GROUND_TRUTH: dict[str, type] = {"isaid-png": IsaidPngTruth, "coco": CocoTruth}


def open_truth(gt: str, gt_format: str, storage_options: Optional[dict] = None) -> Truth:
    if gt_format not in GROUND_TRUTH:
        raise ValueError(f"--gt-format must be one of {tuple(GROUND_TRUTH)}, not {gt_format!r}")
    return GROUND_TRUTH[gt_format](gt, storage_options)
