"""Helpers of the encoding tests: masks as the job encodes them."""

from __future__ import annotations

import numpy as np

from samrs_ray.encoding.rle import describe_mask, string_to_counts


def encode_rle(mask: np.ndarray) -> str:
    """mask (H, W) bool -> COCO compressed counts string, as the job writes it."""
    return describe_mask(mask).counts


def run_lengths(mask: np.ndarray) -> list[int]:
    """mask (H, W) bool -> COCO uncompressed counts, as the job writes them."""
    return string_to_counts(encode_rle(mask))
