"""Tiling: DOTA_devkit windows, tile ids, objects kept per window, and tile cutting."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from shapely.geometry import Polygon

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, enclosing_box
from samrs_ray.inputs.formats import parse_dota
from samrs_ray.planning.tiling import Window, cut_tile, objects_in_window, plan_windows, safe_scene_name, tile_id
from tests import REPO

PAD = (104, 116, 124)


def quad_annotation(corners: list[tuple[float, float]], name: str = "ship") -> Annotation:
    polygon = tuple(v for xy in corners for v in xy)
    return Annotation(class_name=name, hbox=enclosing_box(polygon), polygon=polygon, source="synthetic.txt", line=1)


def read_p0004(realsamples) -> list[Annotation]:
    path = realsamples / "dota" / "labelTxt" / "P0004.txt"
    labels = parse_dota(path.read_bytes(), str(path))
    assert len(labels.annotations) == 107 and not labels.issues  # SOURCES.md
    return labels.annotations


# --- windows ---------------------------------------------------------------------------


def test_p0004_windows_match_dota_devkit():
    # ImgSplit on 824 x 1464 with subsize 1024, gap 200 (slide 824):
    #   x: left=0, 0+1024 >= 824 -> left = max(824-1024, 0) = 0, break    -> x0 in {0}
    #   y: up=0, 1024 < 1464 -> window; up=824, 824+1024 >= 1464
    #      -> up = max(1464-1024, 0) = 440, window, break                  -> y0 in {0, 440}
    # subimages P0004__1__0___0 and P0004__1__0___440, both padded to 1024 x 1024.
    assert plan_windows(824, 1464, 1024, 200) == [Window(0, 0, 1024, 1024), Window(0, 440, 1024, 1024)]


def test_windows_cover_large_scene_x_major_last_at_border():
    # 2000: starts 0, 824, then 1648 + 1024 > 2000 -> shifted back to 2000 - 1024 = 976
    windows = plan_windows(2000, 1848, 1024, 200)
    assert [(w.x0, w.y0) for w in windows] == [
        (0, 0), (0, 824), (824, 0), (824, 824), (976, 0), (976, 824),
    ]
    assert all(w.x1 <= 2000 and w.y1 <= 1848 for w in windows)  # exactly at the border, never past


def test_window_exactly_at_border_and_one_pixel_over():
    assert plan_windows(1024, 1024, 1024, 200) == [Window(0, 0, 1024, 1024)]
    assert [w.x0 for w in plan_windows(1025, 1024, 1024, 200)] == [0, 1]


def test_whole_image_and_bad_settings():
    assert plan_windows(800, 800, None, 0) == [Window(0, 0, 800, 800)]
    with pytest.raises(ValueError, match="size > gap"):
        plan_windows(800, 800, 200, 200)
    with pytest.raises(ValueError, match="positive"):
        plan_windows(0, 800, 1024, 200)


# --- tile ids --------------------------------------------------------------------------


def test_tile_ids_dota_style_and_safe():
    assert tile_id("P0004", 1024, Window(0, 824, 1024, 1024)) == "P0004__1024__0___824"
    assert tile_id("00001", None, Window(0, 0, 800, 800)) == "00001"
    for hostile in ("../../etc/passwd", "..", ".", "a/b\\c", "sub/../x", "ünïcode name", "a" * 400):
        name = tile_id(hostile, 1024, Window(0, 0, 1024, 1024))
        assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        assert len(name) < 240
    # names that differ only in unsafe characters must not collide
    assert safe_scene_name("a b") != safe_scene_name("a_b") != safe_scene_name("a/b")
    with pytest.raises(ValueError):
        safe_scene_name("")


def test_tile_ids_stable_across_runs(realsamples):
    # two separate interpreters with different hash seeds: ids must not depend on either
    image = realsamples / "dota" / "images" / "P0004.png"
    script = (
        "import sys; from PIL import Image; from samrs_ray.planning.tiling import plan_windows, tile_id\n"
        "w, h = Image.open(sys.argv[1]).size\n"
        "print([tile_id(n, 1024, win) for n in ('P0004', 'P 0004/x') for win in plan_windows(w, h, 1024, 200)])"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script, str(image)], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert runs[0].startswith("['P0004__1024__0___0', 'P0004__1024__0___440', 'P_0004_x_")


# --- objects per window ----------------------------------------------------------------


def test_every_p0004_object_lands_in_a_tile_and_stays_inside(realsamples):
    annotations = read_p0004(realsamples)
    seen: set[int] = set()
    for window in plan_windows(824, 1464, 1024, 200):
        kept = objects_in_window(annotations, window)
        assert [i for i, _ in kept] == sorted(i for i, _ in kept)  # input order
        for index, local in kept:
            seen.add(index)
            assert local.class_name == annotations[index].class_name
            assert local.line == annotations[index].line
            coords = np.array(local.polygon).reshape(4, 2)
            assert (coords >= 0).all() and (coords[:, 0] <= window.width).all()
            assert (coords[:, 1] <= window.height).all()
            x0, y0, x1, y1 = local.hbox
            assert 0 <= x0 < x1 <= window.width and 0 <= y0 < y1 <= window.height
    assert seen == set(range(107))


def test_object_inside_is_shifted_with_corners_unchanged():
    ann = quad_annotation([(900, 900), (950, 910), (940, 960), (890, 950)])
    [(index, local)] = objects_in_window([ann], Window(824, 824, 1024, 1024))
    assert index == 0
    assert local.polygon == (76, 76, 126, 86, 116, 136, 66, 126)
    assert local.hbox == (66, 76, 126, 136)


def test_object_split_across_two_windows_kept_in_both_when_iof_high():
    # x from 800 to 1100; windows [0,1024) and [824,1848): 224/300 = 0.75 and 276/300 = 0.92 inside
    ann = quad_annotation([(800, 100), (1100, 100), (1100, 200), (800, 200)])
    left, right = Window(0, 0, 1024, 1024), Window(824, 0, 1024, 1024)
    [(_, in_left)] = objects_in_window([ann], left)
    [(_, in_right)] = objects_in_window([ann], right)
    assert in_left.hbox == (800, 100, 1024, 200)
    assert Polygon(np.array(in_left.polygon).reshape(4, 2)).area == pytest.approx(224 * 100)
    assert in_right.hbox == (0, 100, 276, 200)
    assert Polygon(np.array(in_right.polygon).reshape(4, 2)).area == pytest.approx(276 * 100)
    # clipped quads keep DOTA's orientation: positive shoelace sum (clockwise on screen)
    xs, ys = np.array(in_left.polygon[0::2]), np.array(in_left.polygon[1::2])
    assert np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys) > 0


def test_object_cut_below_iof_threshold_is_dropped():
    ann = quad_annotation([(900, 100), (1100, 100), (1100, 200), (900, 200)])  # 124/200 = 0.62 inside
    assert objects_in_window([ann], Window(0, 0, 1024, 1024), iof_thr=0.7) == []
    assert len(objects_in_window([ann], Window(0, 0, 1024, 1024), iof_thr=0.6)) == 1


def test_rotated_cut_that_is_not_a_quad_becomes_a_clamped_rectangle():
    # a diamond cut by the right edge gives a pentagon: min rotated rectangle, clamped to the tile
    ann = quad_annotation([(1000, 100), (1040, 140), (1000, 180), (960, 140)])
    [(_, local)] = objects_in_window([ann], Window(0, 0, 1024, 1024), iof_thr=0.5)
    coords = np.array(local.polygon).reshape(4, 2)
    assert (coords >= 0).all() and (coords <= 1024).all()
    assert local.hbox == pytest.approx((960, 100, 1024, 180))


def test_hbox_only_object_is_clipped_as_a_box():
    ann = Annotation(class_name="vehicle", hbox=(700, 10, 900, 60), source="x.xml", line=3)
    [(_, local)] = objects_in_window([ann], Window(0, 0, 800, 800), iof_thr=0.5)
    assert local.polygon is None and local.hbox == (700, 10, 800, 60)


def test_zero_area_cut_object_names_its_file_and_line():
    ann = Annotation(class_name="vehicle", hbox=(1000, 10, 1100, 10), source="bad.xml", line=7)
    with pytest.raises(InputError, match="bad.xml:7"):
        objects_in_window([ann], Window(0, 0, 1024, 1024))


# --- cutting pixels --------------------------------------------------------------------


def test_tiny_scene_padded_with_pad_value():
    scene = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    [window] = plan_windows(500, 300, 1024, 200)
    tile = cut_tile(scene, window, PAD)
    assert tile.shape == (1024, 1024, 3) and tile.dtype == np.uint8
    assert np.array_equal(tile[:300, :500], scene)
    assert (tile[300:] == PAD).all() and (tile[:, 500:] == PAD).all()


def test_cut_tile_is_a_copy_of_the_window_only():
    scene = np.arange(2000 * 1848 * 3, dtype=np.uint64).astype(np.uint8).reshape(1848, 2000, 3)
    window = plan_windows(2000, 1848, 1024, 200)[-1]  # (976, 824), ends at the border
    tile = cut_tile(scene, window, PAD)
    assert np.array_equal(tile, scene[824:1848, 976:2000])
    assert not np.shares_memory(tile, scene) and tile.flags.c_contiguous
    with pytest.raises(ValueError, match="does not start inside"):
        cut_tile(scene, Window(2000, 0, 1024, 1024), PAD)
