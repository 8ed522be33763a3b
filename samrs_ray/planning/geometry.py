"""Polygons on the pixel grid: the one rasteriser that prompts, the box baseline and evaluation
share.

Pixel convention (here and in prompts.rbox_mask_prompt): pixel (row r, column c) covers
[c, c+1) x [r, r+1) and belongs to a polygon when its centre (c + 0.5, r + 0.5) lies inside,
with the top and left edges inside and the bottom and right edges outside. So an integer box
(x0, y0, x1, y1) fills exactly (x1 - x0) * (y1 - y0) pixels, and two polygons sharing an
edge never both claim a pixel.
"""

from __future__ import annotations

import numpy as np


def fill_polygon(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """polygon (K, 2) float xy corners, any K >= 3 -> mask (height, width) bool (even-odd rule).

    Scanline fill: for each pixel row, where does each edge cross the row's centre line;
    a pixel centre is inside when an odd number of crossings lie to its right.
    """
    mask = np.zeros((height, width), dtype=bool)
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3 or not np.isfinite(points).all():
        return mask
    xs, ys = points[:, 0], points[:, 1]
    # only rows/columns whose centres can be inside the polygon's bounds
    r0, r1 = max(int(np.floor(ys.min() - 0.5)), 0), min(int(np.ceil(ys.max() - 0.5)) + 1, height)
    c0, c1 = max(int(np.floor(xs.min() - 0.5)), 0), min(int(np.ceil(xs.max() - 0.5)) + 1, width)
    if r0 >= r1 or c0 >= c1:
        return mask
    cy = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5  # (R, 1)
    cx = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5  # (1, C)
    inside = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for (xa, ya), (xb, yb) in zip(points, np.roll(points, -1, axis=0)):
        if ya == yb:
            continue  # a horizontal edge never crosses a row centre line
        # half-open in y, so a vertex shared by two edges is counted once
        spans = (np.minimum(ya, yb) <= cy) & (cy < np.maximum(ya, yb))  # (R, 1)
        x_cross = xa + (cy - ya) * (xb - xa) / (yb - ya)  # (R, 1)
        inside ^= spans & (cx < x_cross)
    mask[r0:r1, c0:c1] = inside
    return mask


def box_corners(box: np.ndarray) -> np.ndarray:
    """box (4,) xyxy -> (4, 2) corners, clockwise on screen."""
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
