"""The inputs of a map run (`--label-format vector`): raster scenes, and vector layers whose features
fall on them, found before Ray starts.

    --images rasters -> RasterScene per scene (headers; cached by store version)
    --labels layers  -> features -> each scene's objects in its pixels (planning/footprints.py)

A scene's header (size, CRS, transform, bands, stretch) is kept in `<out>/_cache/rasters.json`
by the file's store version and the band and stretch settings, so a night without changes lists
the rasters and reads none of their bytes. What a scene's tiles depend on without reading its
pixels is its `image_key` (URI, store version, bands, stretch) and its objects. Needs the `geo`
extra. Nothing here knows of Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import fsspec

from samrs_ray.dataset import layout, storage
from samrs_ray.errors import InputError, StoreError
from samrs_ray.inputs.annotation import InputIssue, Stage
from samrs_ray.inputs.listing import SAFE_NAME, ScenePair, StoredFile, stem
from samrs_ray.inputs.presets import Preset
from samrs_ray.inputs.rasters import RasterScene, Stretch, read_scene
from samrs_ray.inputs.vectors import Feature, read_layer
from samrs_ray.planning.footprints import assign_features
from samrs_ray.planning.plan import object_record

if TYPE_CHECKING:
    from samrs_ray.inputs.stac import StacScene

log = logging.getLogger(__name__)

HEADER_THREADS = 16  # headers are a few range requests each: waiting on the store, not the CPU


@dataclass(frozen=True)
class MapScenes:
    """Every raster scene usable for a map run, with its header, image key and objects (JSON)."""

    pairs: list[ScenePair]
    rasters: dict[str, RasterScene]
    image_keys: dict[str, str]
    objects: dict[str, str]  # scene name -> JSON list of plan.object_record in scene pixels
    issues: list[InputIssue]
    placed: int  # objects placed on scenes, all scenes together
    # scene name -> {'item': its STAC Item's URI, 'asset': the asset read}, for scenes from STAC
    items: dict[str, dict[str, str]] = field(default_factory=dict)


def map_scenes(images: dict[str, StoredFile], layers: dict[str, StoredFile], labels_uri: str, preset: Preset,
               class_field: str, bands: Optional[tuple[int, ...]], stretch: Optional[Stretch],
               storage_options: dict, fs: fsspec.AbstractFileSystem, out: str,
               items: Optional[dict[str, "StacScene"]] = None) -> MapScenes:
    """Read the layers and the rasters' headers (cached), and place every feature on its scenes.
    `items`: {raster URI: the STAC Item it is an asset of}; such a scene is named by its Item's id,
    any other by its file's stem."""
    items = items or {}
    issues: list[InputIssue] = []
    by_name: dict[str, str] = {}
    for uri in sorted(images):
        name = items[uri].item_id if uri in items else stem(uri)
        if not SAFE_NAME.fullmatch(name) or name in by_name:
            issues.append(InputIssue(uri, f"scene name {name!r} is unusable or shared by two rasters "
                                          "(allowed: letters, digits, . _ -; one raster per name)", stage=Stage.PAIR))
            continue
        by_name[name] = uri
    headers = read_headers(by_name, images, bands, stretch, storage_options, fs, out, items)
    rasters: dict[str, RasterScene] = {}
    for name, header in headers.items():
        item = f"item {name}: " if by_name[name] in items else ""  # a STAC Item's asset: name the Item too
        if isinstance(header, InputIssue):
            issues.append(dataclasses.replace(header, reason=item + header.reason))
        elif header.crs is None:
            issues.append(InputIssue(header.uri, f"{item}the raster has no CRS: map features cannot be placed on it "
                                                 "(set one: gdal_edit.py -a_srs EPSG:...)", stage=Stage.READ))
        else:
            rasters[name] = header
    features: list[Feature] = []
    for uri in sorted(layers):
        found, bad = read_layer(uri, class_field, storage_options)
        features += found
        issues += bad
    placed, placing_issues = assign_features(rasters, features, preset)
    issues += placing_issues
    # every usable raster is a scene, objects or not: so each input is in the outputs or the errors
    pairs = [ScenePair(name, rasters[name].uri, labels_uri) for name in sorted(rasters)]
    objects = {name: json.dumps([object_record(a, c) for a, c in placed.get(name, ())], sort_keys=True)
               for name in rasters}
    keys = {name: image_key(rasters[name], images[rasters[name].uri]) for name in rasters}
    from_stac = {items[r.uri].item_id: {"item": items[r.uri].item_uri, "asset": items[r.uri].asset}
                 for r in rasters.values() if r.uri in items}
    return MapScenes(pairs, rasters, keys, objects, issues, placed=sum(map(len, placed.values())), items=from_stac)


def image_key(raster: RasterScene, stored: StoredFile) -> str:
    """What a raster scene's pixels are, as the store says: its URI and version, bands and stretch."""
    part = json.dumps([raster.uri, stored.version, stored.size, raster.to_dict()], sort_keys=True)
    return hashlib.sha256(part.encode()).hexdigest()


def read_headers(by_name: dict[str, str], images: dict[str, StoredFile], bands: Optional[tuple[int, ...]],
                 stretch: Optional[Stretch], storage_options: dict, fs: fsspec.AbstractFileSystem, out: str,
                 items: Optional[dict[str, "StacScene"]] = None) -> dict[str, RasterScene | InputIssue]:
    """Each scene's RasterScene (or the InputIssue of a raster GDAL cannot read, or the store did
    not give), from the cache where the file's version and the settings are the same: what GDAL
    made of it, header or error (a store's refusal is not kept: the file may be fine). `items`:
    {raster URI: its STAC Item}, whose fields may give the header (StacScene.header) and whose
    band files make one scene."""
    items = items or {}
    settings = json.dumps([list(bands or ()), str(stretch) if stretch else None])
    cache = read_cache(fs, out)
    fresh: dict[str, RasterScene | InputIssue] = {}
    todo = []
    for name, uri in by_name.items():
        hit = cache.get(uri)
        if hit and hit["version"] == images[uri].version and hit["settings"] == settings and images[uri].version:
            # a raster GDAL could not read stays unreadable until the store has another version of it
            fresh[name] = (InputIssue(uri, hit["issue"], stage=Stage.READ) if "issue" in hit
                           else RasterScene.from_dict(hit["scene"]))
        else:
            todo.append(name)

    def header(name: str) -> RasterScene | InputIssue:
        uri, item = by_name[name], items.get(by_name[name])
        if item is not None and (told := item.header(uri, bands, stretch)) is not None:
            return told
        try:
            return read_scene(uri, storage_options, bands, stretch, item.band_uris if item else ())
        except InputError as error:
            return InputIssue.from_error(error)
        except StoreError as error:  # the scene's committed tiles are kept (job/driver.py)
            return InputIssue.from_store_error(error)

    with ThreadPoolExecutor(HEADER_THREADS) as pool:
        fresh.update(zip(todo, pool.map(header, todo)))
    if todo:
        entries = {by_name[n]: {"version": images[by_name[n]].version, "settings": settings,
                                **({"scene": s.to_dict()} if isinstance(s, RasterScene) else {"issue": s.reason})}
                   for n, s in fresh.items() if isinstance(s, RasterScene) or s.stage == Stage.READ}
        write_cache(fs, out, entries)
    return fresh


def read_cache(fs: fsspec.AbstractFileSystem, out: str) -> dict[str, Any]:
    try:
        with fs.open(layout.raster_cache(out), "rb") as f:
            return json.load(f)
    except (OSError, ValueError):  # none yet, or unreadable: read the headers
        return {}


def write_cache(fs: fsspec.AbstractFileSystem, out: str, entries: dict[str, Any]) -> None:
    try:
        storage.write_atomic(fs, layout.raster_cache(out), json.dumps(entries, sort_keys=True).encode())
    except OSError as error:  # a shortcut only
        log.warning("%s: the raster header cache was not written (%s)", out, error)
