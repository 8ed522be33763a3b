"""Label maps (paint order), COCO RLE against pycocotools, and PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samrs_ray.classes import IGNORE_ID, SOTA_CLASSES
from samrs_ray.masks.labelmap import PAINT_ORDERS, paint_label_map
from samrs_ray.masks.png import color_png, image_png, label_png
from samrs_ray.masks.rle import decode_rle, encode_rle, mask_area, mask_box

ISAID_COLOURS = {(0, 127, 127): "large-vehicle", (0, 0, 127): "small-vehicle"}  # SOURCES.md


def isaid_p0004(realsamples) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The 116 iSAID instance masks of P0004 (H, W) bool, their SOTA class ids, and the class-colour map."""
    ids_rgb = np.asarray(Image.open(realsamples / "isaid" / "P0004_instance_id_RGB.png").convert("RGB"), np.int64)
    colour = np.asarray(Image.open(realsamples / "isaid" / "P0004_instance_color_RGB.png").convert("RGB"))
    ids = ids_rgb[..., 0] + 256 * ids_rgb[..., 1] + 65536 * ids_rgb[..., 2]
    masks, class_ids = [], []
    for instance in np.unique(ids[ids > 0]):
        mask = ids == instance
        r, g, b = colour[mask][0]
        masks.append(mask)
        class_ids.append(SOTA_CLASSES.index(ISAID_COLOURS[(int(r), int(g), int(b))]))
    return masks, np.array(class_ids), colour


def pycoco(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


# --- RLE -------------------------------------------------------------------------------


def check_against_pycocotools(mask: np.ndarray) -> None:
    reference = pycoco(mask)
    counts = encode_rle(mask)
    assert counts == reference["counts"].decode("ascii")
    assert np.array_equal(decode_rle(counts, *mask.shape), mask)
    assert mask_area(mask) == int(coco_mask.area(reference))
    box = mask_box(mask)
    if mask.any():
        x, y, w, h = coco_mask.toBbox(reference)
        assert box == (x, y, x + w, y + h)
    else:
        assert box is None


@pytest.mark.parametrize("seed", range(6))
def test_rle_matches_pycocotools_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 300, size=2)
    # blobs (long runs, big deltas) and noise (short runs, negative deltas) both exercise the string code
    mask = rng.random((h, w)) < (0.5 if seed % 2 else 0.02)
    if seed >= 4:
        mask = np.zeros((h, w), bool)
        mask[h // 4: h // 2, w // 3: w - 1] = True
    check_against_pycocotools(mask)


@pytest.mark.parametrize("shape", [(1, 1), (17, 5), (1024, 1024)])
def test_rle_empty_and_full_masks(shape):
    check_against_pycocotools(np.zeros(shape, bool))
    check_against_pycocotools(np.ones(shape, bool))


def test_rle_on_real_isaid_masks(realsamples):
    masks, _, _ = isaid_p0004(realsamples)
    assert len(masks) == 116  # SOURCES.md: 116 iSAID instances in P0004
    for mask in masks:
        assert mask.shape == (1464, 824)
        check_against_pycocotools(mask)


def test_decode_refuses_counts_of_the_wrong_size():
    counts = encode_rle(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="4x5"):
        decode_rle(counts, 4, 5)
    with pytest.raises(ValueError, match="invalid character"):
        decode_rle("0 1", 1, 1)


# --- label maps ------------------------------------------------------------------------


def two_overlapping() -> np.ndarray:
    masks = np.zeros((2, 6, 6), bool)
    masks[0, 0:4, 0:4] = True  # big, class 3
    masks[1, 2:4, 2:4] = True  # small, inside the big one, class 7
    return masks


def test_label_map_annotation_order_later_wins():
    masks = two_overlapping()
    label = paint_label_map(masks, np.array([3, 7]))
    assert label.dtype == np.uint8 and label.shape == (6, 6)
    assert (label[2:4, 2:4] == 7).all() and (label[0:2, 0:4] == 3).all()
    assert (label[4:, :] == IGNORE_ID).all()
    # reversed annotation order: the big one, painted last, now covers the small one
    assert (paint_label_map(masks[::-1], np.array([7, 3]))[0:4, 0:4] == 3).all()


def test_label_map_area_desc_keeps_small_on_top():
    masks = two_overlapping()[::-1]  # small first: in annotation order the big one would hide it
    label = paint_label_map(masks, np.array([7, 3]), order="area-desc")
    assert (label[2:4, 2:4] == 7).all() and (label[0:2, 0:4] == 3).all()
    assert PAINT_ORDERS == ("annotation", "area-desc")
    with pytest.raises(ValueError, match="paint order"):
        paint_label_map(masks, np.array([7, 3]), order="random")
    with pytest.raises(ValueError, match="class ids"):
        paint_label_map(masks, np.array([7, 255]))


def test_label_map_empty_tile_is_all_ignore():
    assert (paint_label_map(np.zeros((0, 5, 7), bool), np.zeros(0, int)) == IGNORE_ID).all()


def test_label_map_from_isaid_instances_matches_isaid_class_map(realsamples):
    masks, class_ids, colour = isaid_p0004(realsamples)
    label = paint_label_map(np.stack(masks), class_ids)
    for rgb, name in ISAID_COLOURS.items():
        assert np.array_equal(label == SOTA_CLASSES.index(name), (colour == rgb).all(axis=-1))
    assert np.array_equal(label == IGNORE_ID, (colour == 0).all(axis=-1))


# --- PNG -------------------------------------------------------------------------------


def test_pngs_round_trip_and_are_deterministic():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 4, (40, 30), dtype=np.uint8)
    label[:5] = IGNORE_ID
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9)]
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)

    gray = Image.open(io.BytesIO(label_png(label)))
    assert gray.mode == "L" and np.array_equal(np.asarray(gray), label)
    colour = Image.open(io.BytesIO(color_png(label, palette)))
    assert colour.mode == "P" and np.array_equal(np.asarray(colour), label)
    as_rgb = np.asarray(colour.convert("RGB"))
    assert (as_rgb[:5] == 0).all()  # 255 is black
    assert np.array_equal(as_rgb[label == 2], np.tile([0, 0, 255], ((label == 2).sum(), 1)))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image_png(rgb)))), rgb)

    assert label_png(label) == label_png(label.copy())
    assert color_png(label, palette) == color_png(label.copy(), list(palette))
    assert image_png(rgb) == image_png(rgb.copy())
    with pytest.raises(ValueError, match="uint8"):
        label_png(label.astype(np.int32))
