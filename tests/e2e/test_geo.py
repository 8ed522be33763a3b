"""Map runs end to end: a COG and a GeoJSON in EPSG:4326 through `generate` and `export --format
geo`, locally and on S3 (SeaweedFS), with the box backend."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

pytest.importorskip("rasterio")

import shapely  # noqa: E402

from samrs_ray import cli  # noqa: E402
from samrs_ray.dataset import manifest  # noqa: E402
from tests.faultproxy import NO_CLIENT_RETRIES, FaultProxy  # noqa: E402
from tests.geodata import UTM33, box_in_lonlat, pixel_to_map, write_geojson, write_raster  # noqa: E402
from tests.seaweed import CountingProxy, S3Server  # noqa: E402

pytestmark = pytest.mark.slow
SCHEMA = Path(__file__).parents[1] / "data" / "geoparquet" / "schema.json"

# pixel boxes of scene "field" (1500 x 1200, 0.5 m pixels, UTM 33N), given to the job in lon/lat
BOXES = {0: ("plane", (100, 100, 180, 160)), 1: ("ship", (900, 800, 1000, 900)), 2: ("ship", (1300, 80, 1420, 150))}


def write_inputs(folder: Path) -> None:
    (folder / "rasters").mkdir(parents=True)
    (folder / "layers").mkdir()
    write_raster(folder / "rasters" / "field.tif", 1500, 1200, cog=True)
    features = [{"class": c, "ring": box_in_lonlat(*b)} for c, b in BOXES.values()]
    features += [{"class": "plane", "geometry": None}, {"class": "tank", "ring": box_in_lonlat(10, 10, 30, 30)},
                 {"class": "ship", "ring": box_in_lonlat(9000, 9000, 9100, 9100)}]
    write_geojson(folder / "layers" / "boxes.geojson", features)
    (folder / "classes.txt").write_text("plane\nship\n")


def generate(folder: Path | str, out: str, classes: Path, options: dict | None = None) -> int:
    extra = ["--storage-options", json.dumps(options)] if options else []
    return cli.main(["generate", "--preset", "custom", "--classes", str(classes), "--label-format", "vector",
                     "--images", f"{folder}/rasters", "--labels", f"{folder}/layers", "--out", out,
                     "--model", "box", *extra])


def box_in_map(box: tuple[int, int, int, int]) -> shapely.Polygon:
    (x0, y0), (x1, y1) = pixel_to_map(box[0], box[1]), pixel_to_map(box[2], box[3])
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def check_export(dest: Path, scene: Path) -> None:
    """The label COG is georeferenced as its scene, its pixels under each box hold the box's class,
    and each object's polygon covers its box; the GeoParquet validates."""
    import geopandas as gpd
    import pyarrow.parquet as pq
    import rasterio
    from rio_cogeo.cogeo import cog_validate

    assert cog_validate(str(dest / "field.tif"))[0]
    with rasterio.open(dest / "field.tif") as label, rasterio.open(scene) as source:
        assert (label.crs, label.transform, label.shape) == (source.crs, source.transform, source.shape)
        assert label.nodata == 255 and label.overviews(1)
        pixels = label.read(1)
    for class_name, (x0, y0, x1, y1) in BOXES.values():
        assert (pixels[y0:y1, x0:x1] == ["plane", "ship"].index(class_name)).all()
    assert (pixels == 255).sum() == pixels.size - sum((b[2] - b[0]) * (b[3] - b[1]) for _, b in BOXES.values())

    objects = gpd.read_parquet(dest / "instances.parquet")
    assert objects.crs == UTM33 and len(objects) == len(BOXES)  # one row per object, not per tile
    for row in objects.itertuples():
        class_name, box = BOXES[row.feature_id]
        truth = box_in_map(box)
        assert row.class_name == class_name and row.scene == "field" and row.prompt_type == "hbox"
        assert row.geometry.intersection(truth).area / row.geometry.union(truth).area >= 0.99
    geo = json.loads(pq.read_schema(dest / "instances.parquet").metadata[b"geo"])
    geoparquet_validator().validate(geo)


def geoparquet_validator():
    """The GeoParquet 1.1 schema's validator, its PROJJSON $ref resolved from pyproj's own copy."""
    import jsonschema
    import pyproj
    from referencing import Registry, Resource

    projjson = json.loads((Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json").read_text())
    registry = Registry().with_resource("https://proj.org/schemas/v0.5/projjson.schema.json",
                                        Resource.from_contents(projjson))
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()), registry=registry)


def test_a_cog_and_lonlat_boxes_become_georeferenced_labels_and_polygons(tmp_path: Path, local_ray, capsys) -> None:
    write_inputs(tmp_path)
    out = str(tmp_path / "out")
    assert generate(tmp_path, out, tmp_path / "classes.txt") == 0
    errors = manifest.read_dataset(out, "errors").to_pylist()
    assert sorted((e["line"], e["reason"].split(" ")[0]) for e in errors) == [(3, "feature"), (4, "class"),
                                                                             (5, "feature")]
    tiles = manifest.read_dataset(out, "tiles").to_pylist()
    assert {t["crs"] for t in tiles} == {UTM33}
    for tile in tiles:  # each tile's own transform: its window's corner in map units
        assert tile["transform"][2:6:3] == list(pixel_to_map(tile["x0"], tile["y0"]))

    assert cli.main(["export", "--out", out, "--format", "geo", "--dest", str(tmp_path / "geo")]) == 0
    check_export(tmp_path / "geo", tmp_path / "rasters" / "field.tif")

    # an unchanged night plans nothing; an edited feature recomputes the tiles it touches only
    capsys.readouterr()
    assert generate(tmp_path, out, tmp_path / "classes.txt") == 0
    assert "0 processed, 4 unchanged" in capsys.readouterr().out
    layer = tmp_path / "layers" / "boxes.geojson"
    data = json.loads(layer.read_text())
    data["features"][2]["geometry"]["coordinates"] = [box_in_lonlat(1300, 80, 1430, 150)]
    layer.write_text(json.dumps(data))
    assert generate(tmp_path, out, tmp_path / "classes.txt") == 0
    assert "1 processed, 3 unchanged" in capsys.readouterr().out  # the one window that holds it (476, 0)
    assert cli.main(["export", "--out", out, "--format", "geo", "--dest", str(tmp_path / "geo")]) == 0
    assert "1 scenes (1 written, 0 removed)" in capsys.readouterr().out
    assert cli.main(["export", "--out", out, "--format", "geo", "--dest", str(tmp_path / "geo")]) == 0
    assert "1 scenes (0 written, 0 removed)" in capsys.readouterr().out


def test_on_s3_an_unchanged_night_reads_no_raster_byte_and_a_refused_raster_keeps_its_tiles(
        s3: S3Server, tmp_path: Path, local_ray, capsys) -> None:
    prefix = f"geo-{uuid.uuid4().hex[:8]}"
    write_inputs(tmp_path / "data")
    data, out = s3.upload_dir(tmp_path / "data", f"{prefix}/data"), s3.uri(f"{prefix}/out")
    assert generate(data, out, tmp_path / "data" / "classes.txt", s3.storage_options) == 0
    proxy = CountingProxy(s3)
    with proxy as counted:
        assert generate(data, out, tmp_path / "data" / "classes.txt", counted.storage_options) == 0
    assert proxy.reads(f"{s3.bucket}/{prefix}/data/rasters") == []
    assert "0 processed, 4 unchanged" in capsys.readouterr().out
    dest = s3.uri(f"{prefix}/geo")
    assert cli.main(["export", "--out", out, "--format", "geo", "--dest", dest,
                     "--storage-options", json.dumps(s3.storage_options)]) == 0
    s3.filesystem().get(f"{s3.bucket}/{prefix}/geo/", str(tmp_path / "geo"), recursive=True)
    check_export(tmp_path / "geo", tmp_path / "data" / "rasters" / "field.tif")

    # an edited feature on a night the store refuses the raster's bytes: exit 5, and the scene's
    # committed tiles stay as they were; the next night recomputes the one window
    committed = manifest.read_dataset(out, "tiles", s3.storage_options).to_pylist()
    layer = tmp_path / "data" / "layers" / "boxes.geojson"
    edited = json.loads(layer.read_text())
    edited["features"][2]["geometry"]["coordinates"] = [box_in_lonlat(1300, 80, 1430, 150)]
    s3.filesystem().pipe(f"{s3.bucket}/{prefix}/data/layers/boxes.geojson", json.dumps(edited).encode())
    proxy = FaultProxy(s3)
    proxy.target("GET", f"{s3.bucket}/{prefix}/data/rasters/field.tif", "slow_down")
    with proxy as faulty:  # the job's three tries are under test
        options = {**faulty.storage_options, **NO_CLIENT_RETRIES}
        assert generate(data, out, tmp_path / "data" / "classes.txt", options) == 5
    assert "field: kept from version 2 (4 tiles): cannot read from the store:" in capsys.readouterr().out
    assert manifest.read_dataset(out, "tiles", s3.storage_options).to_pylist() == committed
    errors = manifest.read_dataset(out, "errors", s3.storage_options).to_pylist()
    assert [e["source_uri"] for e in errors if e["stage"] == "store"] == [f"{data}/rasters/field.tif"]
    # the raster uploaded again (a new store version): its header is read before Ray starts, refused too
    s3.filesystem().put_file(str(tmp_path / "data" / "rasters" / "field.tif"),
                             f"{s3.bucket}/{prefix}/data/rasters/field.tif")
    proxy = FaultProxy(s3)
    proxy.target("GET", f"{s3.bucket}/{prefix}/data/rasters/field.tif", "slow_down")
    with proxy as faulty:
        options = {**faulty.storage_options, **NO_CLIENT_RETRIES}
        assert generate(data, out, tmp_path / "data" / "classes.txt", options) == 5
    assert "field: kept from version 3 (4 tiles): cannot read from the store:" in capsys.readouterr().out
    assert manifest.read_dataset(out, "tiles", s3.storage_options).to_pylist() == committed
    assert generate(data, out, tmp_path / "data" / "classes.txt", s3.storage_options) == 0
    assert "4 processed, 0 unchanged" in capsys.readouterr().out  # a new version of the raster: every window


def test_bad_rasters_are_error_rows_a_stretch_is_recorded_and_a_missing_band_is_exit_2(
        tmp_path: Path, local_ray, capsys) -> None:
    write_inputs(tmp_path)
    cut = write_raster(tmp_path / "rasters" / "cut.tif", 600, 600, seed=1).read_bytes()
    (tmp_path / "rasters" / "cut.tif").write_bytes(cut[: len(cut) // 4])
    write_raster(tmp_path / "rasters" / "plain.tif", 300, 300, crs=None)  # no georeferencing
    write_raster(tmp_path / "rasters" / "deep.tif", 400, 400, dtype="uint16")  # stretched: recorded per scene
    out = str(tmp_path / "out")
    assert generate(tmp_path, out, tmp_path / "classes.txt") == 0
    reasons = {Path(e["source_uri"]).name: e["reason"] for e in manifest.read_dataset(out, "errors").to_pylist()}
    assert "GDAL cannot read" in reasons["cut.tif"] or "cannot read pixels" in reasons["cut.tif"]
    assert "no CRS" in reasons["plain.tif"]
    stretch = json.loads((tmp_path / "out" / "_run.json").read_text())["stretch"]
    assert list(stretch) == ["deep"]  # field.tif is 8-bit: not stretched
    assert {k: stretch["deep"][k] for k in ("bands", "dtype", "stretch")} == {
        "bands": [1, 2, 3], "dtype": "uint16", "stretch": "percentile:2,98"}
    assert all(0 <= low < high <= 4000 for low, high in zip(stretch["deep"]["low"], stretch["deep"]["high"]))
    capsys.readouterr()
    code = cli.main(["generate", "--preset", "custom", "--classes", str(tmp_path / "classes.txt"), "--label-format",
                     "vector", "--images", f"{tmp_path}/rasters", "--labels", f"{tmp_path}/layers", "--out", out,
                     "--model", "box", "--bands", "5,3,2"])
    assert code == 2 and "--bands 5,3,2: the raster has bands 1..3" in capsys.readouterr().err

