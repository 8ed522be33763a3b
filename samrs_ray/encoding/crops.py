"""Each instance mask as the box of its set pixels and the pixels inside it.

A SAM mask covers a small part of its 1024x1024 tile, and everything the encode stage does with
it (paint the label map, count the area, write the COCO RLE) needs only that box. The masks
arrive bit-packed (masks/backend.pack_masks); unpacking all of them is 1 MB of bools per mask
and was a tenth of the encode stage. So the boxes are found in the packed bytes, where each
tile row of a mask is width/8 bytes, and only the bytes inside each box are unpacked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from samrs_ray.masks.backend import unpack_masks


@dataclass(frozen=True)
class MaskCrop:
    """One non-empty mask: `pixels` (h, w) bool, tight (its first and last row and column each
    hold a set pixel), at column x0, row y0 of the tile."""

    x0: int
    y0: int
    pixels: np.ndarray

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), ends exclusive."""
        return self.x0, self.y0, self.x0 + self.pixels.shape[1], self.y0 + self.pixels.shape[0]

    def shifted(self, dx: int, dy: int) -> "MaskCrop":
        """The same mask moved by (dx, dy): from tile pixels to scene pixels."""
        return MaskCrop(self.x0 + dx, self.y0 + dy, self.pixels)


def crop_of(mask: np.ndarray, x0: int = 0, y0: int = 0) -> Optional[MaskCrop]:
    """mask (h, w) bool at (x0, y0) -> its tight crop, or None when no pixel is set."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    columns = np.flatnonzero(mask[top:bottom].any(axis=0))
    left, right = int(columns[0]), int(columns[-1]) + 1
    return MaskCrop(x0 + left, y0 + top, mask[top:bottom, left:right])


def crops_of_masks(masks: np.ndarray) -> list[Optional[MaskCrop]]:
    """masks (N, H, W) bool -> N crops (None for an empty mask)."""
    return [crop_of(np.asarray(mask, dtype=bool)) for mask in masks]


def crops_of_packed(data: bytes, count: int, height: int, width: int) -> list[Optional[MaskCrop]]:
    """pack_masks bytes of (count, height, width) masks -> count crops (None for an empty mask),
    unpacking only the bytes inside each mask's box."""
    if width % 8:  # rows do not start on byte boundaries: unpack all (whole scenes of odd widths only)
        return crops_of_masks(unpack_masks(data, count, height, width))
    packed = np.frombuffer(data, dtype=np.uint8, count=count * height * width // 8).reshape(count, height, width // 8)
    words = packed.view(np.uint64) if width % 64 == 0 else packed  # 8 bytes at a time where they fit
    rows_set = words.any(axis=2)  # (count, height)
    crops: list[Optional[MaskCrop]] = []
    for i in range(count):
        rows = np.flatnonzero(rows_set[i])
        if rows.size == 0:
            crops.append(None)
            continue
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        band = packed[i, top:bottom]
        columns = np.flatnonzero(band.any(axis=0))
        first, last = int(columns[0]), int(columns[-1]) + 1
        bits = np.unpackbits(band[:, first:last], axis=1).view(bool)  # 0/1 bytes: valid bools, no copy
        crops.append(crop_of(bits, 8 * first, top))
    return crops


def without_nodata(crops: list[Optional[MaskCrop]], nodata: np.ndarray) -> list[Optional[MaskCrop]]:
    """The crops with the tile's nodata pixels (H, W) bool cleared: nothing is labelled where the
    scene has no data (a mask made empty by it becomes None)."""
    cleared: list[Optional[MaskCrop]] = []
    for crop in crops:
        if crop is None:
            cleared.append(None)
            continue
        x0, y0, x1, y1 = crop.bounds
        cleared.append(crop_of(crop.pixels & ~nodata[y0:y1, x0:x1], x0, y0))
    return cleared
