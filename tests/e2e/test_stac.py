"""Scenes from STAC: an ItemCollection of COGs and a GeoPackage of boxes through `generate`,
`export --format stac` and TorchGeo, locally and on S3 (SeaweedFS), with the box engine. Items
that cannot be scenes are errors rows naming the Item."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

pytest.importorskip("pystac")

import geopandas  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import shapely  # noqa: E402
from PIL import Image  # noqa: E402
import torch  # noqa: E402

import samrs_ray  # noqa: E402
from tests.geodata import (box_in_lonlat, stac_item, write_band_files, write_item_collection,  # noqa: E402
                           write_raster)
from tests.handoff.helpers import stac_registry, validate_stac  # noqa: E402
from tests.seaweed import CountingProxy, S3Server  # noqa: E402
from tests.stacapi import StacApi  # noqa: E402

pytestmark = pytest.mark.slow
BOXES = [("plane", (100, 100, 400, 300)), ("ship", (900, 700, 1200, 1000))]
RASTERIO = Path(__file__).parents[1] / "data" / "rasterio"


def write_inputs(folder: Path, bands: bool = False) -> Path:
    """Rasters, an ItemCollection of them with relative hrefs (two scenes, three bad Items; with
    `bands`, a third scene of single-band COGs on S2A_field's grid), the boxes (a GeoPackage in
    lon/lat) and the classes; returns the ItemCollection."""
    (folder / "cogs").mkdir(parents=True)
    (folder / "layers").mkdir()
    write_raster(folder / "cogs" / "field.tif", 1500, 1200, cog=True)
    write_raster(folder / "cogs" / "pixels.tif", 300, 200, crs=None, cog=True)
    shutil.copy(RASTERIO / "rgb-byte-tenth.tif", folder / "cogs" / "landsat.tif")
    (folder / "cogs" / "broken.tif").write_text("not a raster")
    items = [stac_item("S2A_field", folder / "cogs" / "field.tif", {"visual": "cogs/field.tif"}),
             stac_item("L7_landsat", folder / "cogs" / "landsat.tif", {"visual": "cogs/landsat.tif"}),
             stac_item("bands_only", folder / "cogs" / "field.tif", {"B04": "cogs/field.tif"}),
             stac_item("no_crs", None, {"visual": "cogs/pixels.tif"}),
             stac_item("broken", None, {"visual": "cogs/broken.tif"})]
    if bands:  # B04, B03, B02 with the eo extension's common names: no visual asset, so they are stacked
        (folder / "cogs" / "s2b").mkdir()
        write_band_files(folder / "cogs" / "field.tif", folder / "cogs" / "s2b")
        item = stac_item("S2B_bands", folder / "cogs" / "field.tif",
                         {name: f"cogs/s2b/{name}.tif" for name in ("B02", "B03", "B04")})
        for name, colour in (("B04", "red"), ("B03", "green"), ("B02", "blue")):
            item["assets"][name]["eo:bands"] = [{"name": name, "common_name": colour}]
        items.append(item)
    boxes = geopandas.GeoDataFrame({"class": [c for c, _ in BOXES]},
                                   geometry=[shapely.Polygon(box_in_lonlat(*b)) for _, b in BOXES], crs="EPSG:4326")
    boxes.to_file(folder / "layers" / "boxes.gpkg")
    (folder / "classes.txt").write_text("plane\nship\n")
    return write_item_collection(folder / "search.json", items)


def generate(stac: str, labels: str, out: str, classes: Path, options: dict | None = None) -> samrs_ray.RunRecord:
    return samrs_ray.generate(preset="custom", classes=classes, label_format="vector", images=stac, labels=labels,
                              out=out, model="box", storage_options=options, say=lambda _: None)


def test_an_item_collection_becomes_scenes_named_by_item_and_a_label_collection(tmp_path: Path, local_ray) -> None:
    stac = write_inputs(tmp_path, bands=True)
    out = str(tmp_path / "out")
    record = generate(str(stac), str(tmp_path / "layers"), out, tmp_path / "classes.txt")
    tiles = samrs_ray.read(out, "tiles").to_pylist()
    assert {t["tile_id"].split("__")[0] for t in tiles} == {"S2A_field", "S2B_bands"}  # no box falls on L7_landsat
    assert record.items == {"S2A_field": {"item": f"{stac}#S2A_field", "asset": "visual"},
                            "L7_landsat": {"item": f"{stac}#L7_landsat", "asset": "visual"},
                            "S2B_bands": {"item": f"{stac}#S2B_bands", "asset": "B04,B03,B02"}}
    errors = {e["source_uri"]: e["reason"] for e in samrs_ray.read(out, "errors").to_pylist()}
    assert "item bands_only has no asset 'visual' (its assets: B04)" in errors[f"{stac}#bands_only"]
    assert errors[str(tmp_path / "cogs" / "pixels.tif")].startswith("item no_crs: the raster has no CRS")
    assert errors[str(tmp_path / "cogs" / "broken.tif")].startswith("item broken: ")
    # every Item is a scene or an errors row; each box lies on S2A_field and on S2B_bands
    assert record.counts["scenes_ok"] == 3 and record.counts["objects"] == 2 * len(BOXES)
    # the stacked bands are the pixels of the RGB COG they were cut from: each window's tile PNG holds
    # the same pixels for both scenes
    windows: dict[str, dict[str, str]] = {}
    for tile in tiles:
        scene, _, window = tile["tile_id"].partition("__")
        windows.setdefault(window, {})[scene] = tile["image_uri"].removeprefix("file://")
    assert windows and all(np.array_equal(np.asarray(Image.open(pair["S2A_field"])), np.asarray(Image.open(
        pair["S2B_bands"]))) for pair in windows.values())

    dest = tmp_path / "stac-out"
    samrs_ray.export(out, str(dest), "stac")
    schemas = stac_registry()
    assert sorted(p.name for p in (dest / "items").iterdir()) == ["S2A_field.json", "S2B_bands.json"]
    item = json.loads((dest / "items" / "S2A_field.json").read_text())
    validate_stac(item, "item", schemas)
    assert [(link["href"], link["samrs:asset"]) for link in item["links"] if link["rel"] == "source"] == [
        (f"{stac}#S2A_field", "visual")]
    assert (dest / "S2A_field.tif").is_file() and not (dest / "field.tif").exists()

    # TorchGeo: the scene's COG and its label COG (named by the Item) sample aligned, pixel for pixel
    from torchgeo.samplers import RandomGeoSampler

    pairs = samrs_ray.SceneRasters(tmp_path / "cogs" / "field.tif") & samrs_ray.LabelRasters(dest / "S2A_field.tif")
    with rasterio.open(dest / "S2A_field.tif") as label, rasterio.open(tmp_path / "cogs" / "field.tif") as scene:
        painted, pixels, origin = label.read(1), scene.read(), label.transform
    torch.manual_seed(1)
    for query in RandomGeoSampler(pairs, size=128, length=8):
        sample = pairs[query]
        col, row = round((query[0].start - origin.c) / origin.a), round((origin.f - query[1].stop) / origin.a)
        assert np.array_equal(sample["mask"].numpy(), painted[row:row + 128, col:col + 128])
        assert np.array_equal(sample["image"].numpy(), pixels[:, row:row + 128, col:col + 128].astype(np.float32))


def test_on_s3_an_unchanged_night_reads_no_asset_byte_and_an_updated_item_is_read_again(
        s3: S3Server, tmp_path: Path, local_ray) -> None:
    prefix = f"stac-{uuid.uuid4().hex[:8]}"
    write_inputs(tmp_path / "data")
    data, out = s3.upload_dir(tmp_path / "data", f"{prefix}/data"), s3.uri(f"{prefix}/out")
    classes = tmp_path / "data" / "classes.txt"
    first = generate(f"{data}/search.json", f"{data}/layers", out, classes, s3.storage_options)
    assert first.counts["scenes_ok"] == 2 and first.counts["processed"] > 0
    proxy = CountingProxy(s3)
    with proxy as counted:
        second = generate(f"{data}/search.json", f"{data}/layers", out, classes, counted.storage_options)
    assert proxy.reads(f"{s3.bucket}/{prefix}/data/cogs") == []
    assert second.counts["processed"] == 0 and second.counts["tiles"] == first.counts["tiles"]

    # the STAC export, written to the store: its Item validates and links to the Item it labels
    counts = samrs_ray.export(out, s3.uri(f"{prefix}/stac"), "stac", storage_options=s3.storage_options)
    assert counts["items"] == 1
    item = json.loads(s3.filesystem().cat_file(f"{s3.bucket}/{prefix}/stac/items/S2A_field.json"))
    validate_stac(item, "item", stac_registry())
    assert [link["href"] for link in item["links"] if link["rel"] == "source"] == [f"{data}/search.json#S2A_field"]

    # upstream updates the Item: its scene is read again and, as for a raster with a new store version,
    # every window of it recomputed
    search = json.loads((tmp_path / "data" / "search.json").read_text())
    search["features"][0]["properties"]["updated"] = "2026-02-01T00:00:00Z"
    s3.filesystem().pipe(f"{s3.bucket}/{prefix}/data/search.json", json.dumps(search).encode())
    proxy = CountingProxy(s3)
    with proxy as counted:
        third = generate(f"{data}/search.json", f"{data}/layers", out, classes, counted.storage_options)
    assert {r.split("/")[-1] for r in proxy.reads(f"{s3.bucket}/{prefix}/data/cogs")} == {"field.tif"}
    assert third.counts["tiles"] == third.counts["processed"] == first.counts["tiles"]


def test_a_search_of_a_stac_api_gives_the_items_it_finds(tmp_path: Path, local_ray) -> None:
    write_inputs(tmp_path)
    search = json.loads((tmp_path / "search.json").read_text())
    for item in search["features"]:  # an API serves absolute hrefs, and Items of a collection
        item["collection"] = "fields"
        for asset in item["assets"].values():
            asset["href"] = str(tmp_path / asset["href"])
    search["features"][1]["properties"]["datetime"] = "2024-06-01T10:00:00Z"  # L7_landsat: outside the dates
    (tmp_path / "api-items.json").write_text(json.dumps(search))
    (tmp_path / "collection.json").write_text(json.dumps({
        "type": "Collection", "stac_version": "1.1.0", "id": "fields", "description": "test scenes",
        "license": "CC0-1.0", "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}}))
    out = str(tmp_path / "out")
    with StacApi([tmp_path / "collection.json", tmp_path / "api-items.json"]) as api:
        record = samrs_ray.generate(preset="custom", classes=tmp_path / "classes.txt", label_format="vector",
                                    stac_search=api.url, collection="fields", datetime="2025-01-01/2025-12-31",
                                    bbox=(-180, -90, 180, 90), labels=tmp_path / "layers", out=out, model="box",
                                    say=lambda _: None)
    assert record.items == {"S2A_field": {"item": f"{api.url}/collections/fields/items/S2A_field", "asset": "visual"}}
    assert record.config["stac_search"] and record.config["datetime"] == "2025-01-01/2025-12-31"
    errors = {e["source_uri"] for e in samrs_ray.read(out, "errors").to_pylist()}
    assert f"{api.url}/collections/fields/items/bands_only" in errors  # found, but without a visual asset
    assert not any("L7_landsat" in e for e in errors)  # not found: not an input of this run

    # the API gone: an outage (exit 4), nothing written
    with pytest.raises(samrs_ray.RunFailed, match="does not answer"):
        samrs_ray.generate(preset="custom", classes=tmp_path / "classes.txt", label_format="vector",
                           stac_search=api.url, labels=tmp_path / "layers", out=out, model="box", say=lambda _: None)
    assert [r.version for r in samrs_ray.versions(out)] == [1]
