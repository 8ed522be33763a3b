"""Raster scenes planned by parts: the same tiles as one pass, windows read one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio")

from samrs_ray.inputs.annotation import Annotation  # noqa: E402
from samrs_ray.inputs.presets import custom_preset  # noqa: E402
from samrs_ray.inputs.rasters import read_scene  # noqa: E402
from samrs_ray.job.rows import Kind, Status  # noqa: E402
from samrs_ray.planning import raster_plan  # noqa: E402
from samrs_ray.planning.plan import PlanSettings, object_record  # noqa: E402
from samrs_ray.planning.raster_plan import plan_part, scene_parts  # noqa: E402
from tests.geodata import write_raster  # noqa: E402

PRESET = custom_preset("plane\nship\n", tile_size=256, gap=56)
SETTINGS = PlanSettings(PRESET, "digest", 10**9, {})


def objects(boxes: list[tuple[float, float, float, float]]) -> str:
    return json.dumps([object_record(Annotation("plane", b, None, False, "/l.gpkg", i, "/l.gpkg"), 0)
                       for i, b in enumerate(boxes)], sort_keys=True)


def plan(path: Path, boxes, cut: bool, monkeypatch=None, per_part: int = 4):
    if monkeypatch is not None:
        monkeypatch.setattr(raster_plan, "PART_WINDOWS", per_part)
    raster = read_scene(str(path), {})
    parts = scene_parts("s", raster, "key", "/l.gpkg", objects(boxes), PRESET.tile_size, PRESET.gap)
    return parts, [row for part in parts for row in plan_part(part, SETTINGS, frozenset(), cut)]


BOXES = [(10, 10, 60, 50), (300, 300, 340, 350), (900, 700, 950, 760), (5, 780, 40, 799)]


def test_parts_plan_the_same_tiles_as_one_pass(tmp_path: Path, monkeypatch) -> None:
    path = write_raster(tmp_path / "s.tif", 1000, 800)
    _, whole = plan(path, BOXES, cut=False, monkeypatch=monkeypatch, per_part=10_000)
    parts, split = plan(path, BOXES, cut=False, monkeypatch=monkeypatch, per_part=4)
    assert len(parts) > 3
    key = lambda rows: sorted((r["kind"], r["tile_id"], r["fingerprint"], r["objects"]) for r in rows)  # noqa: E731
    assert key(split) == key(whole)
    assert sum(r["kind"] == Kind.SCENE for r in split) == 1


def test_planning_without_pixels_reads_no_raster_byte(tmp_path: Path, monkeypatch) -> None:
    path = write_raster(tmp_path / "s.tif", 1000, 800)
    parts = scene_parts("s", read_scene(str(path), {}), "key", "/l.gpkg", objects(BOXES), 256, 56)
    path.unlink()  # the header came from the driver: planning must not need the file
    rows = [r for part in parts for r in plan_part(part, SETTINGS, frozenset(), cut=False)]
    assert {r["status"] for r in rows if r["kind"] == Kind.TILE} == {Status.TODO}


def test_cut_tiles_carry_their_window_pixels_and_georeferencing(tmp_path: Path) -> None:
    import rasterio

    path = write_raster(tmp_path / "s.tif", 1000, 800)
    _, rows = plan(path, BOXES[:1], cut=True)
    (tile,) = [r for r in rows if r["kind"] == Kind.TILE]
    with rasterio.open(path) as src:
        expected = src.read(window=((0, 256), (0, 256))).transpose(1, 2, 0)
    assert np.array_equal(np.frombuffer(tile["pixels"], np.uint8).reshape(256, 256, 3), expected)
    assert tile["crs"] == "EPSG:32633" and json.loads(tile["transform"])[2] == pytest.approx(500_000.0)


def test_a_window_all_nodata_is_an_error_row_not_a_tile(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nd.tif", 2000, 1600, nodata=0)  # the top-left 500 x 400 has no data
    _, rows = plan(path, [(10, 10, 60, 50), (20, 60, 40, 90)], cut=True)
    assert not [r for r in rows if r["kind"] == Kind.TILE]
    (error,) = [r for r in rows if r["kind"] == Kind.ERROR]
    assert "all nodata" in error["reason"] and "its 2 objects" in error["reason"] and error["tile_id"]


def test_a_tile_with_some_nodata_carries_its_mask(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nd.tif", 1000, 800, nodata=0)
    _, rows = plan(path, [(150, 150, 240, 240)], cut=True)
    tile = next(r for r in rows if r["kind"] == Kind.TILE and r["x0"] == 0 and r["y0"] == 0)
    nodata = np.unpackbits(np.frombuffer(tile["nodata"], np.uint8), count=256 * 256).reshape(256, 256)
    assert nodata[:200, :250].all() and not nodata[200:, :].any()
