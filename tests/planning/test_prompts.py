"""Prompts: each kind's values and shapes, the mask prompt's frame, and PromptBatch building."""

from __future__ import annotations

import numpy as np
import pytest
from segment_anything.utils.transforms import ResizeLongestSide
from shapely.geometry import Point, Polygon

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, enclosing_box
from samrs_ray.inputs.formats import parse_dota
from samrs_ray.inputs.presets import PROMPT_TYPES
from samrs_ray.planning.prompts import (
    MASK_INSIDE,
    MASK_OUTSIDE,
    build_prompts,
    hbox_prompt,
    point_prompt,
    rbox_mask_prompt,
    rhbox_prompt,
)
from samrs_ray.planning.tiling import objects_in_window, plan_windows

# a rectangle rotated by 45 degrees, centred at (200, 100)
DIAMOND = (200.0, 60.0, 240.0, 100.0, 200.0, 140.0, 160.0, 100.0)


def rotated(polygon=DIAMOND) -> Annotation:
    return Annotation(class_name="ship", hbox=enclosing_box(polygon), polygon=polygon, source="s.txt", line=2)


def horizontal(hbox=(10.0, 20.0, 50.0, 80.0)) -> Annotation:
    return Annotation(class_name="vehicle", hbox=hbox, source="d.xml", line=1)


def test_box_and_point_prompts():
    assert hbox_prompt(horizontal()).tolist() == [10, 20, 50, 80]
    assert hbox_prompt(horizontal()).dtype == np.float32
    assert rhbox_prompt(rotated()).tolist() == [160, 60, 240, 140]
    assert rhbox_prompt(horizontal()).tolist() == [10, 20, 50, 80]  # hbox-only: the box itself
    assert point_prompt(rotated()).tolist() == [200, 100]
    assert point_prompt(horizontal()).tolist() == [30, 50]
    assert point_prompt(rotated()).shape == (2,) and point_prompt(rotated()).dtype == np.float32


def test_rbox_mask_prompt_lands_where_sam_puts_the_polygon():
    # a tall 1464 x 824 tile: SAM scales by 1024/1464 and pads on the right
    tile_hw = (1464, 824)
    polygon = (100.0, 300.0, 700.0, 500.0, 600.0, 800.0, 0.0, 600.0)
    logits = rbox_mask_prompt(rotated(polygon), tile_hw)
    assert logits.shape == (256, 256) and logits.dtype == np.float32
    assert set(np.unique(logits)) == {MASK_INSIDE, MASK_OUTSIDE}
    # the polygon mapped with SAM's own transform, then to the 256 grid (1024 / 256 = 4)
    corners = ResizeLongestSide(1024).apply_coords(np.array(polygon).reshape(4, 2), tile_hw) / 4
    expected = Polygon(corners)
    inside = logits > 0
    assert inside.sum() == pytest.approx(expected.area, rel=0.03)
    rows, cols = np.nonzero(inside)
    centres = [Point(c + 0.5, r + 0.5) for r, c in zip(rows[::50], cols[::50])]
    assert all(expected.buffer(1e-6).contains(p) for p in centres)
    # the padding (right of the resized tile, x >= 577 / 4) is never positive
    assert not inside[:, 145:].any()


def test_rbox_mask_prompt_for_a_box_source_fills_the_box():
    logits = rbox_mask_prompt(horizontal((0.0, 0.0, 1024.0, 512.0)), (512, 1024))
    assert (logits[:128] == MASK_INSIDE).all() and (logits[128:] == MASK_OUTSIDE).all()


@pytest.mark.parametrize("kind", PROMPT_TYPES)
def test_build_prompts_shapes_and_rows(kind):
    anns = [rotated(), horizontal()]
    batch = build_prompts(anns, kind, (256, 512))
    assert batch.kind == kind and len(batch) == 2
    assert batch.boxes.shape == (2, 4) and batch.boxes.dtype == np.float32
    assert batch.polygons.shape == (2, 8)
    assert batch.polygons[0].tolist() == list(DIAMOND) and np.isnan(batch.polygons[1]).all()
    assert np.isfinite(batch.boxes).all()
    assert (batch.points is not None) == (kind == "point")
    assert (batch.mask_inputs is not None) == (kind == "rbox-mask")
    if kind == "point":
        assert batch.points.tolist() == [[200, 100], [30, 50]]
    if kind == "rbox-mask":
        assert batch.mask_inputs.shape == (2, 256, 256)


def test_build_prompts_clips_boxes_to_the_tile():
    batch = build_prompts([horizontal((-5.0, 10.0, 300.0, 90.0))], "hbox", (64, 256))
    assert batch.boxes.tolist() == [[0, 10, 256, 64]]


@pytest.mark.parametrize("kind", PROMPT_TYPES)
def test_no_objects_gives_an_empty_batch(kind):
    batch = build_prompts([], kind, (1024, 1024))
    assert len(batch) == 0 and batch.boxes.shape == (0, 4) and batch.polygons.shape == (0, 8)


def test_bad_kind_and_non_finite_coordinates():
    with pytest.raises(ValueError, match="unknown prompt kind"):
        build_prompts([horizontal()], "hbb", (100, 100))
    with pytest.raises(InputError, match="d.xml:1"):
        build_prompts([horizontal((float("nan"), 0.0, 5.0, 5.0))], "hbox", (100, 100))


def test_p0004_prompts_per_tile(realsamples):
    path = realsamples / "dota" / "labelTxt" / "P0004.txt"
    annotations = parse_dota(path.read_bytes(), str(path)).annotations
    for window in plan_windows(824, 1464, 1024, 200):
        local = [ann for _, ann in objects_in_window(annotations, window)]
        for kind in ("hbox", "rhbox", "point"):
            batch = build_prompts(local, kind, (window.height, window.width))
            assert len(batch) == len(local) > 0
            assert (batch.boxes[:, 2] > batch.boxes[:, 0]).all() and (batch.boxes[:, 3] > batch.boxes[:, 1]).all()
            assert (batch.boxes >= 0).all() and (batch.boxes <= 1024).all()
        # every centre point lies inside its (convex, clockwise) DOTA quad
        points = build_prompts(local, "point", (1024, 1024)).points
        for ann, (x, y) in zip(local, points):
            assert Polygon(np.array(ann.polygon).reshape(4, 2)).buffer(1e-3).contains(Point(x, y))
