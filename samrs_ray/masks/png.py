"""PNG bytes for label maps, their palette view, and tile pixels.

Same input, same bytes: PIL writes no timestamp or other metadata unless asked, and the
zlib level is fixed here, so reruns write byte-identical files.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

from samrs_ray.classes import IGNORE_ID

COMPRESS_LEVEL = 6  # zlib's default: a fixed value keeps the bytes stable


def encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=COMPRESS_LEVEL, optimize=False)
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
    return encode(Image.fromarray(rgb, mode="RGB"))
