"""COCO run-length encoding in numpy: the same counts strings as pycocotools.mask.encode.

COCO RLE runs over the mask in column-major order (down each column, then the next
column), alternating background and foreground runs and always starting with background
(a mask whose first pixel is set starts with a 0-length run). The compressed string
writes each count (from the 4th on, as the difference to the count two before) in 5-bit
groups, least significant first, 0x20 = "more groups follow", offset by 48 into ASCII,
as maskApi.c's rleToString / rleFrString do.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def run_lengths(mask: np.ndarray) -> list[int]:
    """mask (H, W) bool -> COCO's uncompressed counts."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(edges).tolist()
    return [0] + counts if flat[0] else counts


def counts_to_string(counts: list[int]) -> str:
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count  # maskApi.c: 'if(i>2)', not i>=2
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as C's on a signed long
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def string_to_counts(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            if p >= len(text):
                raise ValueError("RLE counts string ends inside a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE counts string has an invalid character {text[p]!r} at {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: np.ndarray) -> str:
    """mask (H, W) bool -> COCO compressed counts string (pycocotools' `counts`, decoded to str)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    return counts_to_string(run_lengths(mask))


def decode_rle(counts: str, height: int, width: int) -> np.ndarray:
    """COCO compressed counts string -> mask (height, width) bool."""
    runs = string_to_counts(counts)
    if any(r < 0 for r in runs) or sum(runs) != height * width:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels, not {height}x{width}, or are negative")
    values = np.arange(len(runs)) % 2 == 1  # background first
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T


def mask_area(mask: np.ndarray) -> int:
    """Number of set pixels (COCO's `area` for a mask)."""
    return int(np.count_nonzero(mask))


def mask_box(mask: np.ndarray) -> Optional[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of the set pixels, x1/y1 exclusive; None for an empty mask.

    Exclusive ends make x1 - x0 and y1 - y0 equal COCO's bbox w and h (pycocotools' toBbox
    gives [x0, y0, w, h]), and the same box as prompts use for a filled integer box.
    """
    columns = np.flatnonzero(mask.any(axis=0))
    if columns.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(columns[0]), float(rows[0]), float(columns[-1] + 1), float(rows[-1] + 1))
