"""Vector label layers: every format, feature ids, and one issue per bad feature or layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyogrio")

import shapely  # noqa: E402

from samrs_ray.inputs.vectors import read_layer  # noqa: E402

GOOD = [shapely.box(500010, 4649900, 500040, 4649950), shapely.Point(500100, 4649800)]


def write_layers(folder: Path) -> dict[str, Path]:
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"class": ["plane", "ship"]}, geometry=GOOD, crs="EPSG:32633")
    paths = {}
    for suffix in ("gpkg", "geojson"):
        paths[suffix] = folder / f"boxes.{suffix}"
        frame.to_file(paths[suffix])
    paths["shp"] = folder / "boxes.shp"
    frame.iloc[:1].to_file(paths["shp"])  # a Shapefile holds one geometry type
    paths["parquet"] = folder / "boxes.parquet"
    frame.to_parquet(paths["parquet"])
    return paths


@pytest.mark.parametrize("suffix", ["gpkg", "geojson", "shp", "parquet"])
def test_each_format_reads_classes_geometries_and_the_crs(tmp_path: Path, suffix: str) -> None:
    features, issues = read_layer(str(write_layers(tmp_path)[suffix]), "class", {})
    assert not issues
    expected = 1 if suffix == "shp" else 2
    assert [f.class_name for f in features] == ["plane", "ship"][:expected]
    assert [f.geometry.equals(g) for f, g in zip(features, GOOD)] == [True] * expected
    assert all("32633" in f.crs for f in features)


def test_bad_features_are_issues_naming_the_layer_and_the_feature_id(tmp_path: Path) -> None:
    layer = tmp_path / "bad.geojson"
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    features = [{"type": "Feature", "properties": {"class": "plane"}, "geometry": g} for g in (
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, None, bowtie,
        {"type": "LineString", "coordinates": [[0, 0], [1, 1]]})]
    features.append({"type": "Feature", "properties": {"class": None}, "geometry": {"type": "Point", "coordinates": [0, 0]}})
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    good, issues = read_layer(str(layer), "class", {})
    assert len(good) == 1 and good[0].fid == 0
    reasons = {issue.line: issue.reason for issue in issues}
    assert set(reasons) == {1, 2, 3, 4} and all(issue.source == str(layer) for issue in issues)
    assert "null geometry" in reasons[1] and "invalid geometry" in reasons[2]
    assert "LineString" in reasons[3] and "--class-field" in reasons[4]


def test_a_geojson_features_integer_id_is_its_id_and_stays_when_a_feature_before_it_goes(tmp_path: Path) -> None:
    layer = tmp_path / "ids.geojson"
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    features = [{"type": "Feature", "id": i, "properties": {"class": "plane"}, "geometry": square} for i in (7, 12, 30)]
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    assert [f.fid for f in read_layer(str(layer), "class", {})[0]] == [7, 12, 30]
    layer.write_text(json.dumps({"type": "FeatureCollection", "features": features[1:]}))
    assert [f.fid for f in read_layer(str(layer), "class", {})[0]] == [12, 30]


def test_a_layer_without_the_class_field_or_without_a_crs_is_one_issue(tmp_path: Path) -> None:
    import geopandas as gpd

    frame = gpd.GeoDataFrame({"kind": ["plane"]}, geometry=GOOD[:1], crs="EPSG:32633")
    frame.to_file(tmp_path / "kind.gpkg")
    _, (issue,) = read_layer(str(tmp_path / "kind.gpkg"), "class", {})
    assert "no 'class' attribute" in issue.reason and "kind" in issue.reason
    frame.set_crs(None, allow_override=True).to_file(tmp_path / "nocrs.gpkg")
    features, (issue,) = read_layer(str(tmp_path / "nocrs.gpkg"), "kind", {})
    assert not features and "no CRS" in issue.reason


def test_rasterio_and_pyogrio_share_one_process_whichever_loads_first(tmp_path: Path) -> None:
    """Each wheel bundles its own GDAL; the job loads both in a planning worker."""
    from tests.geodata import write_raster

    layer = write_layers(tmp_path)["gpkg"]
    raster = write_raster(tmp_path / "a.tif", 64, 64)
    use = (f"import pyogrio, rasterio; assert len(pyogrio.read_arrow({str(layer)!r})[1]) == 2; "
           f"assert rasterio.open({str(raster)!r}).read().shape == (3, 64, 64)")
    for order in (use, use.replace("import pyogrio, rasterio", "import rasterio, pyogrio")):
        subprocess.run([sys.executable, "-c", order], check=True, timeout=120)
