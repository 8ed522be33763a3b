"""Annotation -> SAM prompt, for the four prompt kinds SAMRS compared.

    'hbox'      the horizontal box, as SAM's box prompt             (4,) xyxy
    'rhbox'     the box enclosing the rotated polygon, as box prompt (4,) xyxy
    'point'     the object's centre, as one foreground point       (2,) xy
    'rbox-mask' the rotated polygon, as SAM's mask_input logits     (256, 256)

SAMRS chose 'hbox' for horizontal-box sources and 'rhbox' for rotated ones. All inputs
and outputs are in tile pixels of the original tile (SAM's own transform resizes them),
except the mask prompt, which must already be in SAM's low-resolution input frame.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, enclosing_box
from samrs_ray.inputs.presets import PROMPT_TYPES
from samrs_ray.masks.backend import PromptBatch
from samrs_ray.planning.geometry import box_corners, fill_polygon

# Logits of the mask prompt. SAM was trained with its own previous, unthresholded low-res
# logits as mask_input; confident pixels there sit around +-10..30. +-20 is a confident
# value inside that range (sigmoid(20) = 1 - 2e-9): a saturated "certainly object /
# certainly not" without feeding magnitudes SAM never saw.
MASK_INSIDE = 20.0
MASK_OUTSIDE = -20.0


def hbox_prompt(ann: Annotation) -> np.ndarray:
    """(4,) float32 xyxy: the annotation's horizontal box (SAM `box` input, one row of (N, 4))."""
    return np.asarray(ann.hbox, dtype=np.float32)


def rhbox_prompt(ann: Annotation) -> np.ndarray:
    """(4,) float32 xyxy: the box enclosing the rotated polygon; hbox-only sources: the box itself."""
    if ann.polygon is None:
        return hbox_prompt(ann)
    return np.asarray(enclosing_box(ann.polygon), dtype=np.float32)


def point_prompt(ann: Annotation) -> np.ndarray:
    """(2,) float32 xy: the object's centre (SAM `point_coords` row of (N, 1, 2), label 1).

    The mean of the polygon's 4 corners (the centre of a rotated rectangle, and inside any
    convex quad), else the centre of the box.
    """
    if ann.polygon is None:
        x0, y0, x1, y1 = ann.hbox
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=np.float32)
    corners = np.asarray(ann.polygon, dtype=np.float64).reshape(4, 2)
    return corners.mean(axis=0).astype(np.float32)


def rbox_mask_prompt(
    ann: Annotation, tile_hw: tuple[int, int], input_size: int = 1024, mask_size: int = 256
) -> np.ndarray:
    """(mask_size, mask_size) float32 logits for SAM's `mask_input` (a row of (N, 1, 256, 256)).

    SAM resizes the tile so its longest side is `input_size` (ResizeLongestSide, same
    rounding) and pads bottom/right to input_size x input_size; mask_input covers that
    padded square at mask_size resolution. The polygon (or box) is mapped into that frame
    and filled at mask_size with masks.box's pixel-centre rule: MASK_INSIDE inside,
    MASK_OUTSIDE elsewhere, padding included.
    """
    height, width = tile_hw
    scale = input_size / max(height, width)
    new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    if ann.polygon is not None:
        corners = np.asarray(ann.polygon, dtype=np.float64).reshape(4, 2)
    else:
        corners = box_corners(np.asarray(ann.hbox, dtype=np.float64))
    # tile pixels -> SAM input pixels (per axis, as ResizeLongestSide.apply_coords) -> mask pixels
    corners = corners * np.array([new_w / width, new_h / height]) * (mask_size / input_size)
    inside = fill_polygon(corners, mask_size, mask_size)
    return np.where(inside, MASK_INSIDE, MASK_OUTSIDE).astype(np.float32)


def clip_box(box: np.ndarray, tile_hw: tuple[int, int]) -> np.ndarray:
    height, width = tile_hw
    return np.clip(box, 0, [width, height, width, height]).astype(np.float32)


def build_prompts(annotations: Sequence[Annotation], kind: str, tile_hw: tuple[int, int]) -> PromptBatch:
    """All prompts of one tile (tile-relative annotations) as a PromptBatch of `kind`.

    boxes (N, 4): the hbox ('hbox', 'point') or rhbox ('rhbox', 'rbox-mask'), clipped to the
    tile; polygons (N, 8), NaN rows for hbox-only objects; points (N, 2) for 'point';
    mask_inputs (N, 256, 256) for 'rbox-mask'. A non-finite coordinate raises InputError.
    """
    if kind not in PROMPT_TYPES:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {PROMPT_TYPES}")
    height, width = tile_hw
    for ann in annotations:
        values = ann.hbox + (ann.polygon or ())
        if not all(math.isfinite(v) for v in values):
            raise InputError(ann.source, "object has a non-finite coordinate", ann.line)
    n = len(annotations)
    box_of = hbox_prompt if kind in ("hbox", "point") else rhbox_prompt
    boxes = np.zeros((n, 4), dtype=np.float32)
    polygons = np.full((n, 8), np.nan, dtype=np.float32)
    for i, ann in enumerate(annotations):
        boxes[i] = clip_box(box_of(ann), tile_hw)
        if ann.polygon is not None:
            polygons[i] = ann.polygon
    batch = PromptBatch(kind=kind, boxes=boxes, polygons=polygons)
    if kind == "point":
        points = np.stack([point_prompt(a) for a in annotations]) if n else np.zeros((0, 2), np.float32)
        batch.points = np.clip(points, 0, [width, height]).astype(np.float32)
    elif kind == "rbox-mask":
        batch.mask_inputs = (
            np.stack([rbox_mask_prompt(a, tile_hw) for a in annotations])
            if n else np.zeros((0, 256, 256), np.float32)
        )
    return batch
