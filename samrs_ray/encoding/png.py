"""PNG bytes for label maps, their palette view, and tile pixels.

Same input, same bytes: PIL writes no timestamp or other metadata unless asked, and the
zlib levels are fixed here, so reruns write byte-identical files.

Tile pixels are written at zlib level 1, label maps at 6. The RGB tile PNG is most of the
encode stage's time, and level 1 writes it several times faster for a few percent more bytes
(bench/RESULTS.md has the measurement); label maps are flat regions, cheap at level 6.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

from samrs_ray.classes import IGNORE_ID

COMPRESS_LEVEL = 6  # zlib's default: a fixed value keeps the bytes stable
TILE_COMPRESS_LEVEL = 1  # tile pixels: ~4x faster than 6 for ~8% more bytes (see above)


def encode(image: Image.Image, level: int = COMPRESS_LEVEL) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level, optimize=False)
    return buffer.getvalue()


def check_label(label: np.ndarray) -> None:
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label map must be (H, W) uint8, got {label.shape} {label.dtype}")


def label_png(label: np.ndarray) -> bytes:
    """label (H, W) uint8 class ids -> single-channel 'L' PNG."""
    check_label(label)
    return encode(Image.fromarray(label, mode="L"))


def color_png(label: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> bytes:
    """label (H, W) uint8 -> palette ('P') PNG: class i in palette[i], 255 and unused ids black."""
    check_label(label)
    if len(palette) > IGNORE_ID:
        raise ValueError(f"at most {IGNORE_ID} palette colours fit (id {IGNORE_ID} is unlabeled)")
    colours = np.zeros((256, 3), dtype=np.uint8)
    if len(palette):
        colours[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    image = Image.fromarray(label, mode="P")
    image.putpalette(colours.ravel().tolist())
    return encode(image)


def image_png(rgb: np.ndarray) -> bytes:
    """rgb (H, W, 3) uint8 -> RGB PNG."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    return encode(Image.fromarray(rgb, mode="RGB"), TILE_COMPRESS_LEVEL)
