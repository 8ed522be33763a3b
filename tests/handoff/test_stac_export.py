"""`export --format stac`: a map run's scene and a detection dataset's scenes become label Items
that validate, offline, against the STAC 1.1 core, label, classification, projection and
processing schemas (tests/data/stac), and that pystac reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pystac")

import pystac  # noqa: E402
import shapely  # noqa: E402

import samrs_ray  # noqa: E402
from tests.geodata import UTM33, box_in_lonlat, write_geojson, write_raster  # noqa: E402
from tests.handoff.helpers import stac_registry, validate_stac  # noqa: E402

pytestmark = pytest.mark.slow
BOXES = [("plane", (100, 100, 400, 300)), ("ship", (900, 700, 1200, 1000)), ("ship", (1250, 80, 1450, 300))]


def test_a_map_run_exports_label_items_that_validate_and_pystac_reads(tmp_path: Path, local_ray) -> None:
    scenes = tmp_path / "rasters"
    scenes.mkdir()
    (tmp_path / "layers").mkdir()
    write_raster(scenes / "field.tif", 1500, 1200, cog=True)
    write_geojson(tmp_path / "layers" / "boxes.geojson", [{"class": c, "ring": box_in_lonlat(*b)} for c, b in BOXES])
    (tmp_path / "classes.txt").write_text("plane\nship\n")
    out, dest = tmp_path / "out", tmp_path / "stac"
    record = samrs_ray.generate(preset="custom", classes=tmp_path / "classes.txt", label_format="vector",
                                images=scenes, labels=tmp_path / "layers", out=out, model="box", say=lambda _: None)
    counts = samrs_ray.export(str(out), str(dest), "stac")
    assert counts["scenes"] == counts["items"] == 1

    schemas = stac_registry()
    collection = json.loads((dest / "collection.json").read_text())
    item = json.loads((dest / "items" / "field.json").read_text())
    validate_stac(collection, "collection", schemas)
    used = validate_stac(item, "item", schemas)
    assert {u.split("/")[3] for u in used[1:]} == {"label", "classification", "projection", "processing"}

    properties = item["properties"]
    assert properties["proj:code"] == UTM33 and properties["proj:shape"] == [1200, 1500]
    assert properties["label:type"] == "raster" and properties["label:tasks"] == ["segmentation"]
    assert properties["label:methods"] == ["automated"]
    assert {c["name"]: c["count"] for c in properties["label:overviews"][0]["counts"]} == {"plane": 1, "ship": 2}
    assert properties["samrs:dataset_version"] == record.version and properties["samrs:engine"] == "box"
    classes = item["assets"]["labels"]["classification:classes"]
    assert [(c["value"], c["name"]) for c in classes] == [(0, "plane"), (1, "ship"), (255, "nodata")]
    assert classes[-1]["nodata"] is True
    # the footprint (lon/lat) holds every box
    footprint = shapely.geometry.shape(item["geometry"])
    assert all(footprint.contains(shapely.Polygon(box_in_lonlat(*box))) for _, box in BOXES)
    assert [link["href"] for link in item["links"] if link["rel"] == "source"] == [str(scenes / "field.tif")]

    # pystac walks it from the Collection, and every asset's href is a file of the export
    read = pystac.Collection.from_file(str(dest / "collection.json"))
    items = list(read.get_items())
    assert [i.id for i in items] == ["field"]
    assert all(Path(asset.get_absolute_href()).is_file() for asset in items[0].assets.values())

    # a rerun of the export rewrites no Item
    assert samrs_ray.export(str(out), str(dest), "stac")["items"] == 0


def test_scenes_without_a_crs_are_items_without_geometry(sota_box_run, tmp_path: Path) -> None:
    out, record = sota_box_run
    counts = samrs_ray.export(str(out), str(tmp_path / "stac"), "stac")
    schemas = stac_registry()
    items = sorted((tmp_path / "stac" / "items").glob("*.json"))
    assert len(items) == counts["scenes"] == record.counts["scenes_ok"]
    for path in items:
        item = json.loads(path.read_text())
        validate_stac(item, "item", schemas)
        assert item["geometry"] is None and item["properties"]["proj:code"] is None
    collection = json.loads((tmp_path / "stac" / "collection.json").read_text())
    validate_stac(collection, "collection", schemas)
    assert sorted(link["href"] for link in collection["links"] if link["rel"] == "item") == sorted(
        f"./items/{p.name}" for p in items)
