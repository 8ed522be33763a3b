"""samrs_ray/report/ground_truth.py: iSAID PNGs and COCO masks read as crops in scene pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samrs_ray.encoding.rle import decode_rle
from samrs_ray.report.ground_truth import isaid_truth, polygon_crop, rle_crop
from tests.datasets import isaid_ids
from tests.encoding.helpers import run_lengths


def test_rle_crop_equals_the_full_decode() -> None:
    rng = np.random.default_rng(3)
    for h, w in [(7, 5), (32, 48), (1, 9)]:
        for density in (0.02, 0.3, 1.0):
            mask = rng.random((h, w)) < density
            mask[h // 2, w - 1] = True  # never empty
            counts = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
            crop = rle_crop(run_lengths(mask), h, w)
            assert crop is not None
            rows, cols = np.nonzero(mask)
            assert (crop.x0, crop.y0) == (cols.min(), rows.min())
            full = np.zeros((h, w), bool)
            full[crop.y0:crop.y0 + crop.pixels.shape[0], crop.x0:crop.x0 + crop.pixels.shape[1]] = crop.pixels
            assert np.array_equal(full, mask) and np.array_equal(full, decode_rle(counts, h, w))
            assert crop.bounds == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    assert rle_crop([35], 5, 7) is None
    with pytest.raises(ValueError, match="not 5x7"):
        rle_crop([3, 4], 5, 7)


def test_polygon_crop_is_the_filled_polygon_clipped_to_the_image() -> None:
    crop = polygon_crop([[2, 3, 12, 3, 12, 8, 2, 8]], 10, 20)
    assert (crop.x0, crop.y0) == (2, 3) and crop.pixels.sum() == 50 and crop.pixels[:5, :10].all()
    clipped = polygon_crop([[-5, -5, 4, -5, 4, 4, -5, 4]], 10, 10)
    assert (clipped.x0, clipped.y0, int(clipped.pixels.sum())) == (0, 0, 16)
    assert polygon_crop([[20, 20, 30, 20, 30, 30]], 10, 10) is None


def test_isaid_reader_on_p0004(realsamples: Path) -> None:
    """SOURCES.md: 116 instances, Large_Vehicle 92 and Small_Vehicle 24."""
    folder = realsamples / "isaid"
    ids_rgb = np.asarray(Image.open(folder / "P0004_instance_id_RGB.png").convert("RGB"))
    colour = np.asarray(Image.open(folder / "P0004_instance_color_RGB.png").convert("RGB"))
    truth = isaid_truth(ids_rgb, colour)
    names = [g.class_name for g in truth.instances]
    assert len(names) == 116 and names.count("Large_Vehicle") == 92 and names.count("Small_Vehicle") == 24
    ids = isaid_ids(realsamples)
    assert sum(g.area for g in truth.instances) == int((ids >= 1000).sum())
    for g in truth.instances[:10]:
        x0, y0, x1, y1 = g.crop.bounds
        value = ids[y0, x0:x1][g.crop.pixels[0]][0]
        assert np.array_equal(g.crop.pixels, ids[y0:y1, x0:x1] == value)
        assert g.area == (ids == value).sum() == g.crop.pixels.sum()
