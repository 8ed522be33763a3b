"""COCO run-length encoding in numpy: the same counts strings as pycocotools.mask.encode.

COCO RLE runs over the mask in column-major order (down each column, then the next
column), alternating background and foreground runs and always starting with background
(a mask whose first pixel is set starts with a 0-length run). The compressed string
writes each count (from the 4th on, as the difference to the count two before) in 5-bit
groups, least significant first, 0x20 = "more groups follow", offset by 48 into ASCII,
as maskApi.c's rleToString / rleFrString do.

Speed: SAM masks cover a small part of a 1024x1024 tile, so the counts are found in the mask's
crop (crops.py), with the background between its columns standing in for the rest; the
string is built with numpy for all counts at once, one 5-bit group per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from samrs_ray.encoding.crops import MaskCrop, crop_of
from samrs_ray.inputs.annotation import Box


@dataclass(frozen=True)
class MaskSummary:
    """What the manifest keeps of one mask: COCO counts string, area (set pixels), box (mask_box's)."""

    counts: str
    area: int
    box: Optional[Box]


def crop_transitions(crop: np.ndarray, x0: int, y0: int, height: int) -> np.ndarray:
    """crop (h, w) bool at (x0, y0) of an image `height` rows tall -> (T,) int64 column-major full-image
    indices where the pixel value changes (the first pixel counts as a change from background).

    The crop's columns are laid out with one background row after each (when the crop is shorter
    than the image), standing in for the background between crop columns; a full-height crop is
    one contiguous stretch of the image and needs none. A trailing background element closes the
    last run.
    """
    h, w = crop.shape
    stride = h + 1 if h < height else h
    flat = np.zeros(w * stride + 1, dtype=bool)
    flat[: w * stride].reshape(w, stride)[:, :h] = crop.T
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        changes = np.concatenate(([0], changes))
    if stride == height:  # the crop is whole columns: one stretch of the image
        return changes + (x0 * height + y0)
    # (x0 + column) * height + y0 + row, with row = change - column * stride
    return changes + (changes // stride) * (height - stride) + (x0 * height + y0)


def counts_from_transitions(transitions: np.ndarray, size: int) -> np.ndarray:
    """(T,) increasing change indices of a mask of `size` pixels -> COCO counts (int64)."""
    transitions = transitions[transitions < size]  # a run that ends at the last pixel ends the mask
    if size == 0:
        return np.zeros(1, dtype=np.int64)
    return np.diff(np.concatenate(([0], transitions, [size]))).astype(np.int64, copy=False)


def describe_crops(crops: Sequence[Optional[MaskCrop]], height: int, width: int) -> list[MaskSummary]:
    """A tile's masks as crops -> their summaries; the strings are written for all masks at once."""
    counts = [np.array([height * width], dtype=np.int64) if crop is None else
              counts_from_transitions(crop_transitions(crop.pixels, crop.x0, crop.y0, height), height * width)
              for crop in crops]
    return [MaskSummary(text, 0, None) if crop is None else
            MaskSummary(text, int(np.count_nonzero(crop.pixels)), as_box(crop.bounds))
            for crop, text in zip(crops, counts_to_strings(counts))]


def counts_to_strings(masks: Sequence[np.ndarray]) -> list[str]:
    """Several masks' COCO counts (int64 arrays) -> their compressed strings, all counts of all
    masks in one pass (a tile has dozens to hundreds of masks; one pass each was most of the time).

    maskApi.c writes 5-bit groups of x until the rest of x is all sign bits, i.e. until
    x >> (5k - 1) is 0 or -1: x takes k = bit_length(x if x >= 0 else ~x) // 5 + 1 groups.
    """
    if not masks:
        return []
    sizes = np.array([len(c) for c in masks], dtype=np.int64)
    counts = np.concatenate(masks).astype(np.int64, copy=False)
    position = np.arange(counts.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # index within its mask
    x = counts.copy()
    later = np.flatnonzero(position >= 3)  # maskApi.c: 'if(i>2)', not i>=2
    x[later] -= counts[later - 2]
    magnitude = x ^ (x >> 63)  # ~x for negative x: the bits that are not sign
    groups = np.frexp(magnitude.astype(np.float64))[1] // 5 + 1  # frexp's exponent = bit length (< 2**53)
    starts = np.cumsum(groups) - groups
    codes = np.empty(int(groups.sum()), dtype=np.int64)
    for k in range(int(groups.max()) if x.size else 0):
        todo = np.flatnonzero(groups > k) if k else slice(None)  # mostly one group: the first step takes all
        more = (groups[todo] > k + 1).astype(np.int64) << 5
        codes[starts[todo] + k] = ((x[todo] >> (5 * k)) & 0x1F) | more  # arithmetic shift, as C's
    text = (codes + 48).astype(np.uint8).tobytes().decode("ascii")
    owner = np.repeat(np.arange(len(masks)), sizes)
    ends = np.cumsum(np.bincount(owner, weights=groups, minlength=len(masks))).astype(np.int64).tolist()
    return [text[start:end] for start, end in zip([0, *ends[:-1]], ends)]


def string_to_counts(text: str) -> list[int]:
    """Compressed string -> COCO counts (maskApi.c's rleFrString), all numbers at once."""
    if not text:
        return []
    if not text.isascii():
        raise ValueError("RLE counts string has a non-ASCII character")
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    bad = np.flatnonzero((codes < 0) | (codes >= 64))
    if bad.size:
        raise ValueError(f"RLE counts string has an invalid character {text[bad[0]]!r} at {bad[0]}")
    if codes.size and codes[-1] & 0x20:
        raise ValueError("RLE counts string ends inside a number")
    last = np.flatnonzero((codes & 0x20) == 0)  # the final group of each number
    first = np.concatenate(([0], last[:-1] + 1))
    group = np.arange(codes.size) - np.repeat(first, last - first + 1)  # k: position within its number
    if group.size and group.max() > 12:
        raise ValueError("RLE counts string holds a number too large for 64 bits")
    x = np.add.reduceat((codes & 0x1F) << (5 * group), first)
    negative = (codes[last] & 0x10) != 0
    x[negative] |= np.int64(-1) << (5 * (group[last][negative] + 1))  # sign-extend
    # maskApi.c: 'if(m>2) x+=cnts[m-2]': counts 2, 4, 6... and 1, 3, 5... are running sums
    counts = x.copy()
    counts[2::2] = np.cumsum(x[2::2])
    counts[1::2] = np.cumsum(x[1::2])
    return counts.tolist()


def decode_crop(runs: Sequence[int], height: int, width: int) -> Optional[tuple[int, int, np.ndarray]]:
    """COCO uncompressed counts (column-major, background first) -> (x0, y0, mask (h, w) bool) of
    the set pixels' bounding box, or None when none is set. Only the columns that hold set pixels
    are expanded: evaluation decodes thousands of small masks of large scenes."""
    runs = np.asarray(runs, dtype=np.int64)
    if (runs < 0).any() or int(runs.sum()) != height * width:
        raise ValueError(f"RLE runs cover {int(runs.sum())} pixels, not {height}x{width}, or are negative")
    ends = np.cumsum(runs)
    starts = ends - runs
    fg = (np.arange(len(runs)) % 2 == 1) & (runs > 0)
    s, e = starts[fg], ends[fg]
    if s.size == 0:
        return None
    c0, c1 = int(s[0] // height), int((e[-1] - 1) // height + 1)
    base = c0 * height
    edges = np.zeros((c1 - c0) * height + 1, dtype=np.int32)
    np.add.at(edges, s - base, 1)
    np.add.at(edges, e - base, -1)
    columns = (np.cumsum(edges[:-1]) > 0).reshape(c1 - c0, height).T  # (height, c1 - c0)
    rows = np.flatnonzero(columns.any(axis=1))
    return c0, int(rows[0]), np.ascontiguousarray(columns[rows[0]:rows[-1] + 1])


def decode_rle(counts: str, height: int, width: int) -> np.ndarray:
    """COCO compressed counts string -> mask (height, width) bool."""
    mask = np.zeros((height, width), dtype=bool)
    found = decode_crop(string_to_counts(counts), height, width)
    if found is not None:
        x0, y0, crop = found
        mask[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return mask


def mask_box(mask: np.ndarray) -> Optional[Box]:
    """(x0, y0, x1, y1) of the set pixels, x1/y1 exclusive; None for an empty mask.

    Exclusive ends make x1 - x0 and y1 - y0 equal COCO's bbox w and h (pycocotools' toBbox
    gives [x0, y0, w, h]), and the same box as prompts use for a filled integer box.
    """
    crop = crop_of(np.asarray(mask, dtype=bool))
    return None if crop is None else as_box(crop.bounds)


def as_box(bounds: tuple[int, int, int, int]) -> Box:
    """MaskCrop.bounds' ints -> the float box the manifest keeps."""
    return tuple(float(v) for v in bounds)
