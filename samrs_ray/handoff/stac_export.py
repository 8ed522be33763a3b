"""`samrs-ray export --format stac`: a committed version as a STAC Collection of label Items, one
per scene, over the files of `export --format geo` (written first, into the same folder).

    <dest>/collection.json      the Collection: the dataset's classes, extent and version
    <dest>/items/<scene>.json   a label Item per scene
    <dest>/<scene>.tif          its label COG (the Item's 'labels' asset; geo_export.py)
    <dest>/instances.parquet    the objects as GeoParquet polygons (its 'instances' asset), one file
                                for every scene: an Item's objects are the rows whose `scene` is its id

Each Item carries the label extension (`label:type` raster: the COG is the label; its classes are
the pixel values, and `label:overviews` counts the scene's objects by class name), the
classification extension on the COG (each class id's name, its palette colour, 255 = nodata),
the projection extension (the scene's CRS, transform and shape) and the processing extension
(the engine, its model type and checkpoint checksum, the dataset version). A scene of a detection
dataset has no CRS: its Item has no geometry, and a null `proj:code`.

Hrefs are relative, so the folder can be copied anywhere (a self-contained catalog). A rerun
rewrites only the Items whose bytes change, and deletes those of the scenes gone.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from typing import Any, Optional

import pystac
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension

import samrs_ray
from samrs_ray.dataset import manifest, storage, versions
from samrs_ray.dataset.versions import RunRecord, Version
from samrs_ray.handoff.geo_export import STATE_FOLDER, export_geo, instances_file, part_path
from samrs_ray.handoff.geoparquet import read_objects
from samrs_ray.inputs.listing import stem
from samrs_ray.inputs.presets import IGNORE_ID, Preset
from samrs_ray.inputs.rasters import open_raster
from samrs_ray.planning.tiling import scene_of

ITEMS_FOLDER = "items"
# pystac deprecates its label extension's API (the extension is unmaintained upstream), so its
# fields are written here as the schema gives them; pystac's own API for the others
LABEL = "https://stac-extensions.github.io/label/v1.0.1/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PARQUET_TYPE = "application/vnd.apache.parquet"


def export_stac(out: str, dest: str, version: Version = None, storage_options: Optional[dict] = None
                ) -> dict[str, int]:
    """Write (or update) the geo layout and its STAC Collection at `dest`; returns the geo export's
    counts and `items`, the Items (re)written."""
    options = storage_options or {}
    counts = export_geo(out, dest, version, options)
    out_fs, out_root = storage.open_fs(out, options)
    record = versions.find(out_fs, out_root, version)
    preset = Preset(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.config["preset"].items()})
    sources = {scene_of(row["tile_id"]): row["source_uri"] for row in
               manifest.read_dataset(out, "tiles", options, ["tile_id", "source_uri"], version=version).to_pylist()}
    fs, root = storage.open_fs(dest, options)
    state = json.loads(fs.cat_file(storage.join(root, STATE_FOLDER, "state.json")))
    crss = {scene["crs"] for scene in state.values()}

    items = []
    for name in sorted(state):
        objects = read_objects(fs.cat_file(part_path(root, name))).column("class_name").to_pylist()
        with open_raster(fs.unstrip_protocol(storage.join(root, f"{name}.tif")), options) as cog:
            items.append(scene_item(name, sources.get(name, ""), cog, Counter(objects), preset, record,
                                    instances_file(state[name]["crs"], crss)))
    written = 0
    for item in items:
        path = storage.join(root, ITEMS_FOLDER, f"{item['id']}.json")
        data = (json.dumps(item, indent=2) + "\n").encode()
        if not storage.exists(fs, path) or fs.cat_file(path) != data:
            storage.write_atomic(fs, path, data)
            written += 1
    found = set(storage.list_names(fs, storage.join(root, ITEMS_FOLDER)))
    for gone in sorted(found - {f"{item['id']}.json" for item in items}):
        fs.rm_file(storage.join(root, ITEMS_FOLDER, gone))
    collection = dataset_collection(stem(out_root.rstrip("/")), items, preset, record)
    storage.write_atomic(fs, storage.join(root, "collection.json"), (json.dumps(collection, indent=2) + "\n").encode())
    return {**counts, "items": written}


def class_names(preset: Preset) -> list[str]:
    """The classes as the classification extension spells names (letters, digits, - and _)."""
    return [re.sub(r"[^0-9A-Za-z_-]+", "-", name).strip("-") or f"class-{i}" for i, name in enumerate(preset.classes)]


def scene_item(name: str, source: str, cog: Any, objects: Counter, preset: Preset, record: RunRecord,
               instances: str) -> dict[str, Any]:
    """One scene's label Item. `cog`: its label COG, open in rasterio; `objects`: {class name:
    objects}; `instances`: the GeoParquet file holding its objects."""
    crs = cog.crs.to_string() if cog.crs else None
    geometry, bbox = footprint(cog) if crs else (None, None)
    fields = {
        "label:description": f"{preset.name}: semantic labels from each box's SAM mask ({record.model['id']})",
        "label:type": "raster", "label:properties": None, "label:tasks": ["segmentation"],
        "label:methods": ["automated"], "label:classes": [{"name": None, "classes": list(range(len(preset.classes)))}],
        "label:overviews": [{"property_key": "class_name",
                             "counts": [{"name": n, "count": objects[n]} for n in preset.classes if objects[n]]}],
    }
    item = pystac.Item(id=name, geometry=geometry, bbox=bbox, datetime=datetime.fromisoformat(record.finished_at),
                       properties=fields, collection=None, stac_extensions=[LABEL, PROCESSING])
    ProjectionExtension.ext(item, add_if_missing=True).apply(
        code=crs, shape=[cog.height, cog.width], transform=list(cog.transform)[:6])
    item.properties.update({
        "processing:software": {"samrs-ray": samrs_ray.__version__},
        "processing:lineage": f"every object's box given to {record.model['id']} as a prompt; masks painted in "
                              f"{record.config.get('paint_order', 'annotation')} order",
        "samrs:engine": record.config.get("model", ""), "samrs:model_type": record.model.get("type", ""),
        "samrs:checkpoint_sha256": record.model.get("checksum", ""),
        "samrs:dataset_version": record.version, "samrs:run_id": record.run_id,
    })
    labels = pystac.Asset(href=f"../{name}.tif", media_type=COG_TYPE, roles=["labels", "labels-raster"],
                          title="class id per pixel, 255 = no object or no data")
    item.add_asset("labels", labels)
    palette = [f"{r:02X}{g:02X}{b:02X}" for r, g, b in preset.palette]
    ClassificationExtension.ext(labels, add_if_missing=True).classes = [
        *(Classification.create(value=i, name=n, title=preset.classes[i], color_hint=palette[i])
          for i, n in enumerate(class_names(preset))),
        Classification.create(value=IGNORE_ID, name="nodata", nodata=True)]
    item.add_asset("instances", pystac.Asset(
        href=f"../{instances}", media_type=PARQUET_TYPE, roles=["labels", "labels-vector"],
        title=f"GeoParquet polygons of every scene's objects; this scene's have scene == {name!r}"))
    data = item.to_dict(include_self_link=False, transform_hrefs=False)
    data["collection"] = COLLECTION_ID
    data["links"] = [{"rel": rel, "href": "../collection.json", "type": "application/json"}
                     for rel in ("root", "parent", "collection")]
    if name in record.items:  # the STAC Item of the imagery it labels, and which of its assets
        data["links"].append({"rel": "source", "href": record.items[name]["item"], "type": "application/geo+json",
                              "title": f"the scene's Item; its asset {record.items[name]['asset']!r} was read",
                              "samrs:asset": record.items[name]["asset"], "label:assets": ["labels"]})
    elif source:  # the image file it labels
        data["links"].append({"rel": "source", "href": source, "title": "the scene's image", "label:assets": ["labels"]})
    return data


def footprint(cog: Any) -> tuple[dict[str, Any], list[float]]:
    """The raster's outline in lon/lat (EPSG:4326, as STAC wants), densified so that it follows a
    projected CRS's curves, and its bbox."""
    import shapely
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(cog.crs.to_string(), "EPSG:4326", always_xy=True)
    left, bottom, right, top = cog.bounds
    outline = shapely.segmentize(shapely.box(left, bottom, right, top), max((right - left), (top - bottom)) / 16)
    ring = [to_lonlat.transform(x, y) for x, y in outline.exterior.coords]
    polygon = shapely.Polygon(ring)
    return shapely.geometry.mapping(polygon), list(polygon.bounds)


COLLECTION_ID = "samrs-ray"  # each dataset's own Collection; its title names the dataset


def dataset_collection(name: str, items: list[dict[str, Any]], preset: Preset, record: RunRecord) -> dict[str, Any]:
    """The Collection of `items`: spatial extent over their bboxes (the whole globe when no scene
    has a CRS), time from the version's commit."""
    boxes = [item["bbox"] for item in items if item.get("bbox")]
    bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
            if boxes else [-180.0, -90.0, 180.0, 90.0])
    when = datetime.fromisoformat(record.finished_at)
    collection = pystac.Collection(
        id=COLLECTION_ID, title=f"{name}: samrs-ray dataset version {record.version}",
        description=f"Segmentation labels made by samrs-ray ({preset.name}, {record.model['id']}) from detection boxes.",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[when, None]])),
        license="other", summaries=pystac.Summaries({"label:classes": [{"name": None, "classes": list(range(
            len(preset.classes)))}], "label:type": ["raster"], "label:tasks": ["segmentation"]}))
    collection.stac_extensions.append(LABEL)
    data = collection.to_dict(include_self_link=False, transform_hrefs=False)
    data["links"] = [{"rel": "root", "href": "./collection.json", "type": "application/json"},
                     *({"rel": "item", "href": f"./{ITEMS_FOLDER}/{item['id']}.json", "type": "application/geo+json"}
                       for item in items)]
    return data
