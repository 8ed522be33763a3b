"""Map features placed on the scenes they fall on, in each scene's pixels."""

from __future__ import annotations

import pytest

pytest.importorskip("pyproj")

import shapely  # noqa: E402

from samrs_ray.inputs.presets import custom_preset  # noqa: E402
from samrs_ray.inputs.rasters import RasterScene, Stretch  # noqa: E402
from samrs_ray.inputs.vectors import Feature  # noqa: E402
from samrs_ray.planning.footprints import assign_features  # noqa: E402
from tests.geodata import ORIGIN, PIXEL, UTM33, box_in_lonlat, pixel_to_map  # noqa: E402

PRESET = custom_preset("plane\nship\n")


def scene(name: str, col_offset: int = 0, crs: str = UTM33) -> RasterScene:
    x, y = pixel_to_map(col_offset, 0)
    return RasterScene(f"/data/{name}.tif", 1000, 800, crs, (PIXEL, 0.0, x, 0.0, -PIXEL, y), (1, 2, 3), "uint8",
                       None, Stretch("none"))


def lonlat(fid: int, cls: str, geometry) -> Feature:
    return Feature("/labels/boxes.geojson", fid, cls, geometry, "EPSG:4326")


def test_a_lonlat_box_lands_on_its_pixels_in_a_utm_scene() -> None:
    feature = lonlat(0, "plane", shapely.Polygon(box_in_lonlat(100, 200, 180, 260)))
    placed, issues = assign_features({"a": scene("a")}, [feature], PRESET)
    (annotation, class_id), = placed["a"]
    assert not issues and class_id == 0 and annotation.layer == "/labels/boxes.geojson" and annotation.line == 0
    assert annotation.hbox == pytest.approx((100, 200, 180, 260), abs=0.05)


def test_a_feature_goes_to_every_scene_it_meets_and_an_edge_object_is_kept_whole() -> None:
    # scene b starts 900 columns east of a: a box across a's right edge is on both
    scenes = {"a": scene("a"), "b": scene("b", col_offset=900)}
    feature = lonlat(3, "ship", shapely.Polygon(box_in_lonlat(950, 10, 1050, 60)))
    placed, issues = assign_features(scenes, [feature], PRESET)
    assert not issues
    assert placed["a"][0][0].hbox == pytest.approx((950, 10, 1050, 60), abs=0.05)  # tiling clips it
    assert placed["b"][0][0].hbox == pytest.approx((50, 10, 150, 60), abs=0.05)


def test_a_rotated_polygon_gives_a_quad_and_a_point_asks_for_a_point_prompt() -> None:
    diamond = shapely.Polygon([pixel_to_map(*p) for p in ((300, 100), (400, 200), (300, 300), (200, 200))])
    point = shapely.Point(pixel_to_map(500, 500))
    features = [Feature("/l.gpkg", 1, "plane", diamond, UTM33), Feature("/l.gpkg", 2, "ship", point, UTM33)]
    (rotated, _), (dot, _) = assign_features({"a": scene("a")}, features, PRESET)[0]["a"]
    assert rotated.hbox == pytest.approx((200, 100, 400, 300)) and rotated.polygon is not None
    assert shapely.Polygon(list(zip(rotated.polygon[0::2], rotated.polygon[1::2]))).area == pytest.approx(20000)
    assert dot.prompt == "point" and dot.hbox == pytest.approx((499.5, 499.5, 500.5, 500.5))


def test_unknown_classes_and_features_off_every_scene_are_issues() -> None:
    far = lonlat(7, "plane", shapely.Polygon(box_in_lonlat(5000, 5000, 5100, 5100)))
    odd = lonlat(8, "tank", shapely.Polygon(box_in_lonlat(10, 10, 20, 20)))
    placed, issues = assign_features({"a": scene("a")}, [far, odd], PRESET)
    assert placed == {}
    assert {(i.line, i.reason.split(":")[0]) for i in issues} == {
        (7, "feature lies outside every scene (compared in the scenes' CRS)"),
        (8, "class 'tank' is not in preset custom")}


def test_scenes_in_another_crs_than_the_layer_are_compared_in_it() -> None:
    """A layer in UTM, a scene in EPSG:3857 (web mercator): the same ground, other numbers."""
    from pyproj import Transformer

    to_web = Transformer.from_crs(UTM33, "EPSG:3857", always_xy=True)
    x, y = to_web.transform(*ORIGIN)
    web = RasterScene("/data/web.tif", 1000, 800, "EPSG:3857", (0.5, 0.0, x, 0.0, -0.5, y), (1, 2, 3), "uint8",
                      None, Stretch("none"))
    feature = Feature("/l.gpkg", 0, "plane", shapely.box(*pixel_to_map(100, 300), *pixel_to_map(150, 250)), UTM33)
    (annotation, _), = assign_features({"web": web}, [feature], PRESET)[0]["web"]
    # web mercator stretches distances by 1/cos(latitude) (about 1.35 at 42 N) around the origin
    x0, y0, x1, y1 = annotation.hbox
    assert 120 < x0 < 150 and 1.3 < (x1 - x0) / 50 < 1.4 and 1.3 < (y1 - y0) / 50 < 1.4
