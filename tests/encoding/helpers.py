"""Helpers of the encoding tests: masks as the job encodes them, from full (H, W) masks.

The job encodes crops (encoding/crops.py) of a tile's masks all at once; these take one full
mask, or a stack of them, through the same library calls."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from samrs_ray.encoding.crops import crop_of, crops_of_masks
from samrs_ray.encoding.labelmap import paint_crops
from samrs_ray.encoding.rle import MaskSummary, counts_to_strings, describe_crops, string_to_counts


def describe_mask(mask: np.ndarray) -> MaskSummary:
    """mask (H, W) bool -> COCO counts string, area and box, as the job's describe_crops gives them."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    return describe_crops([crop_of(mask)], *mask.shape)[0]


def counts_to_string(counts: Sequence[int] | np.ndarray) -> str:
    """One mask's COCO counts -> compressed string (maskApi.c's rleToString), by counts_to_strings."""
    return counts_to_strings([np.asarray(counts, dtype=np.int64).reshape(-1)])[0]


def paint_label_map(masks: np.ndarray, class_ids: np.ndarray, order: str = "annotation") -> np.ndarray:
    """masks (N, H, W) bool, class_ids (N,) ints in [0, 254] -> label map (H, W) uint8, by paint_crops."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    return paint_crops(crops_of_masks(masks), class_ids, masks.shape[1:], order)


def encode_rle(mask: np.ndarray) -> str:
    """mask (H, W) bool -> COCO compressed counts string, as the job writes it."""
    return describe_mask(mask).counts


def run_lengths(mask: np.ndarray) -> list[int]:
    """mask (H, W) bool -> COCO uncompressed counts, as the job writes them."""
    return string_to_counts(encode_rle(mask))
