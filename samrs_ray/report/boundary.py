"""The boundary F-score of a mask against its ground-truth instance (Perazzi et al., DAVIS 2016):
how well the outlines agree, which IoU hides for large objects (a mask one pixel too wide all
round keeps a high IoU). Boundary pixels are a mask's pixels with a 4-neighbour outside it; a
boundary pixel of one mask counts as matched when one of the other's lies within TOLERANCE pixels
(a square window). Precision: matched share of the mask's boundary; recall: of the ground
truth's; F = 2PR / (P + R). Computed on the two masks' common window only, never at scene size.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from samrs_ray.encoding.crops import MaskCrop

TOLERANCE = 2  # pixels


def boundary(mask: np.ndarray) -> np.ndarray:
    """mask (h, w) bool -> its boundary (h, w) bool: pixels with a 4-neighbour outside (or off the window)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """mask (h, w) bool grown by `radius` pixels in a square window (a separable max filter)."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        for step in range(1, radius + 1):
            shifted = np.roll(out, step, axis=axis)
            back = np.roll(out, -step, axis=axis)
            # np.roll wraps around; the window is padded by radius, so wrapped pixels are all False
            grown |= shifted | back
        out = grown
    return out


def boundary_f(mask: Optional[MaskCrop], truth: Optional[MaskCrop], tolerance: int = TOLERANCE) -> float:
    """F-score of the boundaries of `mask` and `truth` (crops in the same frame); 0 when either is missing."""
    if mask is None or truth is None:
        return 0.0
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = mask.bounds, truth.bounds
    x0, y0 = min(ax0, bx0) - tolerance, min(ay0, by0) - tolerance
    width, height = max(ax1, bx1) + tolerance - x0, max(ay1, by1) + tolerance - y0
    edges = []
    for crop in (mask, truth):
        window = np.zeros((height, width), bool)
        cx0, cy0, cx1, cy1 = crop.bounds
        window[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = crop.pixels
        edges.append(boundary(window))
    ours, theirs = edges
    precision = np.count_nonzero(ours & dilate(theirs, tolerance)) / max(1, np.count_nonzero(ours))
    recall = np.count_nonzero(theirs & dilate(ours, tolerance)) / max(1, np.count_nonzero(theirs))
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
