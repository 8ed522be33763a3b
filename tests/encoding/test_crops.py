"""Mask crops found in packed bytes: the same boxes and pixels as from the full masks, and the
same RLE, area and label map the full masks give."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from samrs_ray.encoding.crops import crop_of, crops_of_masks, crops_of_packed
from samrs_ray.encoding.labelmap import paint_crops
from samrs_ray.encoding.rle import describe_crops
from samrs_ray.inputs.presets import IGNORE_ID
from samrs_ray.masks.backend import pack_masks
from tests.encoding.helpers import describe_mask, paint_label_map


def random_masks(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Speckled rectangles at random places, some touching the tile's edges, and empty masks."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, height, width), bool)
    for i, mask in enumerate(masks):
        if i % 5 == 4:
            continue  # empty
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = rng.integers(y0 + 1, height + 1), rng.integers(x0 + 1, width + 1)
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.7
    masks[0, -1, -1] = masks[0, 0, 0] = True  # corner to corner
    return masks


# widths: a multiple of 64 (read 8 bytes at a time), of 8 (a byte at a time), neither (unpack all)
@pytest.mark.parametrize("height, width", [(70, 128), (33, 24), (17, 11), (1024, 1024)])
def test_crops_of_packed_equal_crops_of_the_masks(height, width):
    masks = random_masks(12, height, width, seed=width)
    expected = crops_of_masks(masks)
    found = crops_of_packed(pack_masks(masks), len(masks), height, width)
    assert [c is None for c in found] == [c is None for c in expected] == [m.sum() == 0 for m in masks]
    for got, want, mask in zip(found, expected, masks):
        if want is None:
            continue
        assert got.bounds == want.bounds
        assert np.array_equal(got.pixels, want.pixels) and got.pixels.dtype == bool
        x0, y0, x1, y1 = got.bounds  # tight, and nothing outside the box is set
        assert got.pixels[0].any() and got.pixels[-1].any() and got.pixels[:, 0].any() and got.pixels[:, -1].any()
        assert mask.sum() == got.pixels.sum() == mask[y0:y1, x0:x1].sum()


def test_rle_and_label_map_from_packed_crops_equal_those_of_full_masks():
    masks = random_masks(15, 96, 64, seed=3)
    crops = crops_of_packed(pack_masks(masks), len(masks), 96, 64)
    for summary, mask in zip(describe_crops(crops, 96, 64), masks):
        assert summary == describe_mask(mask)
        assert summary.counts == coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
    class_ids = np.arange(len(masks)) % 7
    for order in ("annotation", "area-desc"):
        assert np.array_equal(paint_crops(crops, class_ids, (96, 64), order), paint_label_map(masks, class_ids, order))


def test_an_all_empty_tile():
    crops = crops_of_packed(pack_masks(np.zeros((3, 16, 16), bool)), 3, 16, 16)
    assert crops == [None, None, None]
    assert (paint_crops(crops, np.array([1, 2, 3]), (16, 16)) == IGNORE_ID).all()
    assert crop_of(np.zeros((0, 0), bool)) is None
