"""STAC documents as scenes: ItemCollections and static catalogs (local and on SeaweedFS), the asset
chosen, each Item's store version, and the Items that cannot be scenes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

pystac = pytest.importorskip("pystac")

from samrs_ray.errors import InputError  # noqa: E402
from samrs_ray.inputs.annotation import Stage  # noqa: E402
from samrs_ray.inputs.rasters import Stretch  # noqa: E402
from samrs_ray.inputs.stac import stac_scenes  # noqa: E402
from tests.geodata import stac_item, write_item_collection  # noqa: E402
from tests.seaweed import S3Server  # noqa: E402


def write_catalog(root: Path) -> Path:
    """A static catalog as pystac saves one: a root Catalog, a child Collection, two Items whose
    assets have relative hrefs (one a visual COG, one three band COGs by common name)."""
    catalog = pystac.Catalog("archive", "scenes of a year")
    collection = pystac.Collection("fields", "fields", pystac.Extent(
        pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])))
    catalog.add_child(collection)
    for data in (stac_item("a", None, {"visual": "a.tif"}),
                 stac_item("b", None, {"B04": "b/B04.tif", "B03": "b/B03.tif", "B02": "b/B02.tif"})):
        for key, colour in (("B04", "red"), ("B03", "green"), ("B02", "blue")):
            if key in data["assets"]:
                data["assets"][key]["eo:bands"] = [{"name": key, "common_name": colour}]
        item = pystac.Item.from_dict(data)
        collection.add_item(item)
    catalog.normalize_hrefs(str(root))
    for item in catalog.get_items(recursive=True):  # asset hrefs relative to each Item's own file
        for asset in item.assets.values():
            asset.href = f"./{asset.href}"
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def test_a_static_catalog_locally_and_on_s3_gives_every_item_with_absolute_hrefs(s3: S3Server, tmp_path: Path
                                                                                  ) -> None:
    catalog = write_catalog(tmp_path / "stac")
    files, scenes, issues = stac_scenes(str(catalog), None, {})
    assert not issues
    item_dir = {s.item_id: Path(s.item_uri).parent for s in scenes.values()}
    assert {s.item_id: (s.asset, s.band_uris) for s in scenes.values()} == {
        "a": ("visual", ()),
        "b": ("B04,B03,B02", tuple(str(item_dir["b"] / "b" / f"{band}.tif") for band in ("B04", "B03", "B02")))}
    assert sorted(files) == sorted([str(item_dir["a"] / "a.tif"), str(item_dir["b"] / "b" / "B04.tif")])

    prefix = f"stac-{uuid.uuid4().hex[:8]}"
    remote = s3.upload_dir(tmp_path / "stac", prefix)
    remote_files, remote_scenes, _ = stac_scenes(f"{remote}/catalog.json", None, s3.storage_options)
    assert sorted(remote_files) == [f"{remote}/fields/a/a.tif", f"{remote}/fields/b/b/B04.tif"]
    assert {s.item_uri for s in remote_scenes.values()} == {f"{remote}/fields/a/a.json", f"{remote}/fields/b/b.json"}
    # the same Items on another store: the same versions (what the Item says, not where it is)
    assert sorted(f.version for f in remote_files.values()) == sorted(f.version for f in files.values())


def test_an_items_version_changes_with_its_updated_time_and_its_asset(tmp_path: Path) -> None:
    def version(item: dict) -> str:
        path = write_item_collection(tmp_path / f"{uuid.uuid4().hex}.json", [item])
        (stored,) = stac_scenes(str(path), None, {})[0].values()
        return stored.version

    item = stac_item("a", None, {"visual": "a.tif"})
    same = version(item)
    assert version(json.loads(json.dumps(item))) == same
    item["properties"]["updated"] = "2026-03-01T00:00:00Z"
    assert version(item) != same
    item["assets"]["visual"]["file:checksum"] = "1220abcd"
    assert len({version(item), same}) == 2


def test_items_that_cannot_be_scenes_are_issues_naming_them(tmp_path: Path) -> None:
    items = [stac_item("ok", None, {"visual": "ok.tif"}), stac_item("two", None, {"B04": "b.tif", "B08": "n.tif"}),
             stac_item("bad name!", None, {"visual": "x.tif"}), stac_item("ok", None, {"visual": "again.tif"})]
    path = write_item_collection(tmp_path / "items.json", items)
    files, scenes, issues = stac_scenes(str(path), None, {})
    assert [s.item_id for s in scenes.values()] == ["ok"]
    assert [(i.source, i.stage) for i in issues] == [(f"{path}#two", Stage.READ), (f"{path}#bad name!", Stage.PAIR),
                                                     (f"{path}#ok", Stage.PAIR)]
    assert "item two has no asset 'visual' (its assets: B04, B08)" in issues[0].reason
    # --stac-asset names the asset to read; one the Item lacks is its issue
    _, chosen, missing = stac_scenes(str(path), "B04", {})
    assert [s.item_id for s in chosen.values()] == ["two"] and len(missing) == 3

    (tmp_path / "not.json").write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(InputError, match="not a STAC ItemCollection"):
        stac_scenes(str(tmp_path / "not.json"), None, {})


def test_the_projection_and_raster_fields_give_the_header_that_reading_the_file_gives(tmp_path: Path) -> None:
    import shutil

    from samrs_ray.inputs.rasters import read_scene

    real = tmp_path / "landsat.tif"  # rasterio's CC0 sample: uint8, 3 bands, nodata 0, UTM 18N
    shutil.copy(Path(__file__).parents[1] / "data" / "rasterio" / "rgb-byte-tenth.tif", real)
    item = stac_item("landsat", real, {"visual": str(real), "gone": str(tmp_path / "missing.tif")})
    for asset in item["assets"].values():
        asset["raster:bands"] = [{"data_type": "uint8", "nodata": 0}] * 3
    path = write_item_collection(tmp_path / "items.json", [item])
    (scene,) = stac_scenes(str(path), None, {})[1].values()
    assert scene.header(str(real), None, None) == read_scene(str(real), {})
    # no byte of the file is read for it: an asset that does not exist has the same header
    (gone,) = stac_scenes(str(path), "gone", {})[1].values()
    assert gone.header(str(tmp_path / "missing.tif"), (3, 2, 1), None).bands == (3, 2, 1)
    # what the fields cannot say: a stretch, a band they do not list, 16-bit data
    assert scene.header(str(real), None, Stretch("minmax")) is None
    assert scene.header(str(real), (4, 3, 2), None) is None
    for asset in item["assets"].values():
        asset["raster:bands"] = [{"data_type": "uint16"}] * 3
    write_item_collection(path, [item])
    (sixteen,) = stac_scenes(str(path), None, {})[1].values()
    assert sixteen.grid is None
