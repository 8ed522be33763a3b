"""Label maps (paint order), COCO RLE against pycocotools, and PNG bytes."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samrs_ray.encoding.labelmap import PAINT_ORDERS
from samrs_ray.encoding.png import decode_label_png, image_png, label_pngs
from samrs_ray.encoding.rle import MaskSummary, counts_to_strings, decode_rle, mask_box, string_to_counts
from samrs_ray.inputs.presets import IGNORE_ID, SOTA_CLASSES
from samrs_ray.masks.backend import pack_masks, unpack_masks
from tests.encoding.helpers import counts_to_string, describe_mask, encode_rle, paint_label_map, run_lengths

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
    summary = describe_mask(mask)
    assert summary == MaskSummary(counts, simple_area(mask), simple_box(mask))
    assert np.array_equal(decode_rle(counts, *mask.shape), mask)
    assert summary.area == int(coco_mask.area(reference))
    box = mask_box(mask)
    if mask.any():
        x, y, w, h = coco_mask.toBbox(reference)
        assert box == (x, y, x + w, y + h)
    else:
        assert box is None


def simple_area(mask: np.ndarray) -> int:
    return int(mask.sum())


def simple_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return None if xs.size == 0 else (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


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


@pytest.mark.parametrize("seed", range(40))
def test_rle_from_the_box_crop_matches_pycocotools(seed):
    """Crops of every kind: speckled or solid, touching any border, full height or width, non-square."""
    rng = np.random.default_rng(100 + seed)
    h, w = rng.integers(1, 60, size=2)
    y0, y1 = sorted(rng.integers(0, h + 1, size=2))
    x0, x1 = sorted(rng.integers(0, w + 1, size=2))
    if seed % 4 == 0:
        y0, y1 = 0, h  # whole columns: the crop is one stretch of the image
    if seed % 5 == 0:
        x0, x1 = 0, w
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < rng.choice([0.1, 0.5, 0.95, 1.0])
    check_against_pycocotools(mask)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (7, 3), (64, 48)])
def test_rle_single_pixels_and_border_masks(shape):
    h, w = shape
    for y, x in [(0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0)]:
        mask = np.zeros(shape, bool)
        mask[y, x] = True
        check_against_pycocotools(mask)
    for border in [np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]]:
        mask = np.zeros(shape, bool)
        mask[border] = True
        check_against_pycocotools(mask)
        check_against_pycocotools(~mask)


def test_rle_of_an_empty_mask_is_all_background():
    summary = describe_mask(np.zeros((1024, 1024), bool))
    assert summary.counts == pycoco(np.zeros((1024, 1024), bool))["counts"].decode()
    assert string_to_counts(summary.counts) == [1024 * 1024]
    assert summary.area == 0 and summary.box is None


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_zero_size_masks_are_empty(shape):
    """A mask with no rows or no columns has no set pixel: one background run of 0, no box."""
    mask = np.zeros(shape, bool)
    assert describe_mask(mask) == MaskSummary(counts_to_string([0]), 0, None)
    assert run_lengths(mask) == [0] and mask_box(mask) is None


def test_counts_to_string_matches_pycocotools_on_big_and_negative_deltas():
    # runs from 0 to a full 1024x1024 tile: deltas of every sign and up to 5 groups
    rng = np.random.default_rng(5)
    for _ in range(20):
        cuts = np.sort(rng.choice(1024 * 1024, size=rng.integers(1, 40), replace=False))
        counts = np.diff(np.concatenate(([0], cuts, [1024 * 1024]))).tolist()
        reference = coco_mask.frPyObjects({"size": [1024, 1024], "counts": counts}, 1024, 1024)
        assert counts_to_string(counts) == reference["counts"].decode()
        assert string_to_counts(counts_to_string(counts)) == counts
    assert counts_to_string([]) == ""


def test_rle_on_masks_with_bools_stored_as_255():
    # PIL's mode "1" images give numpy bools whose bytes are 255, not 1
    canvas = Image.new("1", (40, 30))
    canvas.paste(1, (5, 7, 20, 25))
    mask = np.asarray(canvas)
    assert mask.view(np.uint8).max() == 255
    check_against_pycocotools(mask)
    label = paint_label_map(mask[None], np.array([4]))
    assert np.array_equal(label == 4, mask) and (label[~mask] == IGNORE_ID).all()


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
    with pytest.raises(ValueError, match="ends inside a number"):
        decode_rle("a", 1, 1)  # 'a' = 49 + 0x20: a group that says more follow, and none does
    with pytest.raises(ValueError, match="non-ASCII"):
        decode_rle("0é", 1, 1)


def test_decode_matches_pycocotools_on_noise_masks():
    """Speckled masks (random-weight SAM) have ~half a million runs: decoded in numpy, as pycocotools does."""
    mask = np.random.default_rng(3).random((512, 300)) < 0.5
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert string_to_counts(rle["counts"].decode()) == run_lengths(mask)
    assert np.array_equal(decode_rle(rle["counts"].decode(), 512, 300), coco_mask.decode(rle).astype(bool))


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


def reference_painter(masks: np.ndarray, class_ids: np.ndarray, order: str) -> np.ndarray:
    label = np.full(masks.shape[1:], IGNORE_ID, np.uint8)
    sequence = list(range(len(masks)))
    if order == "area-desc":
        sequence.sort(key=lambda i: -int(masks[i].sum()))  # Python's sort is stable
    for i in sequence:
        label[masks[i]] = class_ids[i]
    return label


@pytest.mark.parametrize("order", PAINT_ORDERS)
@pytest.mark.parametrize("seed", range(4))
def test_label_map_equals_a_full_tile_painter(order, seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((12, 50, 70), bool)
    for mask in masks[:-1]:  # the last one stays empty
        y0, x0 = rng.integers(0, 45), rng.integers(0, 65)
        y1, x1 = rng.integers(y0 + 1, 51), rng.integers(x0 + 1, 71)
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < (0.6 if seed % 2 else 1.0)
    masks[3] = masks[2]  # equal areas: annotation order decides
    class_ids = rng.integers(0, IGNORE_ID, size=len(masks))
    assert np.array_equal(paint_label_map(masks, class_ids, order), reference_painter(masks, class_ids, order))


def test_unpack_masks_round_trips_pack_masks():
    masks = np.random.default_rng(0).random((3, 17, 11)) < 0.3
    unpacked = unpack_masks(pack_masks(masks), 3, 17, 11)
    assert unpacked.dtype == bool and np.array_equal(unpacked, masks)
    assert set(np.unique(unpacked.view(np.uint8))) <= {0, 1}


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

    grey_png, colour_png = label_pngs(label, palette)
    gray = Image.open(io.BytesIO(grey_png))
    assert gray.mode == "L" and np.array_equal(np.asarray(gray), label)
    colour = Image.open(io.BytesIO(colour_png))
    assert colour.mode == "P" and np.array_equal(np.asarray(colour), label)
    as_rgb = np.asarray(colour.convert("RGB"))
    assert (as_rgb[:5] == 0).all()  # 255 is black
    assert np.array_equal(as_rgb[label == 2], np.tile([0, 0, 255], ((label == 2).sum(), 1)))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image_png(rgb)))), rgb)
    for png in (grey_png, colour_png):  # read back as stats and the reader do
        decoded = decode_label_png(png)
        assert decoded.dtype == np.uint8 and decoded.flags.writeable and np.array_equal(decoded, label)

    assert label_pngs(label, palette) == label_pngs(label.copy(), list(palette))
    assert image_png(rgb) == image_png(rgb.copy())
    with pytest.raises(ValueError, match="uint8"):
        label_pngs(label.astype(np.int32), None)


def idat(png: bytes) -> bytes:
    """The data of a PNG's IDAT chunks."""
    found, at = b"", 8
    while at < len(png):
        (length,), kind = struct.unpack(">I", png[at:at + 4]), png[at + 4:at + 8]
        if kind == b"IDAT":
            found += png[at + 8:at + 8 + length]
        at += 12 + length
    return found


def test_grey_and_colour_label_pngs_share_one_compressed_stream():
    label = np.full((64, 48), IGNORE_ID, np.uint8)
    label[10:30, 5:40] = 3
    grey, colour = label_pngs(label, [(255, 0, 0)] * 5)
    assert idat(grey) == idat(colour) and len(idat(grey)) > 0
    assert label_pngs(label, None) == (grey, None)  # the grey PNG does not depend on the palette


def test_tile_pngs_of_real_scenes_round_trip_and_are_no_larger_than_pillows(realsamples):
    """The writer's promise (png.py): lossless, and files no larger than Pillow's at zlib level 1,
    the encoder it replaced, on real aerial pixels."""
    for scene in sorted((realsamples / "dota" / "images").glob("*.png")):
        rgb = np.ascontiguousarray(np.asarray(Image.open(scene).convert("RGB"))[:1024, :1024])
        ours = image_png(rgb)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(ours))), rgb), scene.name
        pillows = io.BytesIO()
        Image.fromarray(rgb).save(pillows, format="PNG", compress_level=1)
        assert len(ours) <= len(pillows.getvalue()), scene.name


def test_strings_of_several_masks_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(5)
    masks = [rng.integers(0, 5000, size=n) for n in (1, 0, 2, 3, 7, 40, 1)]
    masks[3][2] = 2**40  # a count needing many groups next to small ones
    assert counts_to_strings(masks) == [counts_to_string(c) for c in masks]
    assert counts_to_strings([]) == []


def test_label_pngs_of_real_and_speckled_masks_are_no_larger_than_pillows(realsamples):
    """png.py's promise for label maps: lossless, and no larger than Pillow's at level 6, both for
    a real label map (iSAID's P0004) and for speckled masks like those of random-weight SAM."""
    masks, class_ids, _ = isaid_p0004(realsamples)
    label = paint_label_map(np.stack(masks), class_ids)
    speckled = label.copy()
    speckled[(np.random.default_rng(0).random(label.shape) < 0.3) & (label != IGNORE_ID)] = IGNORE_ID
    for name, case in (("iSAID", label), ("speckled", speckled)):
        ours = label_pngs(case, None)[0]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(ours))), case), name
        pillows = io.BytesIO()
        Image.fromarray(case, mode="L").save(pillows, format="PNG", compress_level=6)
        assert len(ours) <= len(pillows.getvalue()), name
