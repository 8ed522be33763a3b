"""`samrs-ray export --format geo`: a committed version as GIS tools open it.

    <dest>/<scene>.tif          a COG per scene: the scene's CRS, transform and size, uint8 class
                                ids, 255 = nodata (no object, or no data), with overviews
    <dest>/instances.parquet    GeoParquet 1.1, one row per object (not per tile appearance): its
                                mask as (multi)polygons in the scene's CRS (geoparquet.py)

An object appears in every overlapping tile that holds it; its mask here comes from the tile
where its prompt box lies farthest from the tile's edge, so there is one mask per object
whatever the tiling, and the tiles' seams do not cut it. Scenes of a detection dataset have no
CRS: their rasters have none, and their polygons are in pixels with a null CRS. Scenes in several
CRSs give one instances file per CRS (`instances.<EPSG_n>.parquet`).

Incremental: `<dest>/.samrs-ray-geo/` keeps each scene's tiles (ids and fingerprints) and its
objects; a rerun rewrites the scenes whose tiles changed, removes the scenes gone, and merges the
kept parts into the instances file(s). Needs the geo extra (rasterio, pyproj).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from typing import Optional

import numpy as np
import pyarrow as pa
import shapely

from samrs_ray.dataset import manifest, storage
from samrs_ray.dataset.versions import Version
from samrs_ray.encoding.labelmap import paint
from samrs_ray.encoding.rle import decode_crop, string_to_counts
from samrs_ray.handoff.geoparquet import OBJECTS, objects_table, read_objects, table_bytes
from samrs_ray.inputs.presets import IGNORE_ID
from samrs_ray.inputs.rasters import open_raster, tile_transform
from samrs_ray.planning.tiling import scene_of

STATE_FOLDER = ".samrs-ray-geo"
TILE_COLUMNS = ["tile_id", "source_uri", "x0", "y0", "width", "height", "fingerprint", "crs", "transform"]
STRIP_ROWS = 2048  # label raster rows painted at a time: 80 MB of a 40,000 px wide scene
GDAL_CACHE_MB = 256  # GDAL's block cache while the label COG is written
INSTANCE_COLUMNS = ["tile_id", "instance_id", "class_id", "class_name", "prompt_type", "prompt_box", "mask_rle",
                    "predicted_iou", "source_uri", "source_line", "area"]


def export_geo(out: str, dest: str, version: Version = None, storage_options: Optional[dict] = None
               ) -> dict[str, int]:
    """Write (or update) the geo layout of a committed version at `dest`; returns counts: scenes,
    written, removed, objects."""
    options = storage_options or {}
    tiles = manifest.read_dataset(out, "tiles", options, columns=TILE_COLUMNS, version=version).to_pylist()
    instances = manifest.read_dataset(out, "instances", options, columns=INSTANCE_COLUMNS, version=version).to_pylist()
    by_tile: dict[str, list[dict]] = defaultdict(list)
    for row in instances:
        by_tile[row["tile_id"]].append(row)
    scenes: dict[str, list[dict]] = defaultdict(list)
    for tile in tiles:
        scenes[tile["source_uri"]].append(tile)
    fs, root = storage.open_fs(dest, options)
    state_path = storage.join(root, STATE_FOLDER, "state.json")
    before = json.loads(fs.cat_file(state_path)) if storage.exists(fs, state_path) else {}
    now: dict[str, dict] = {}
    written = 0
    for source, scene_tiles in sorted(scenes.items()):
        name = scene_of(scene_tiles[0]["tile_id"])  # not the file's stem: a STAC scene is named by its Item
        digest = sorted([t["tile_id"], t["fingerprint"]] for t in scene_tiles)
        now[name] = {"tiles": digest}
        if before.get(name, {}).get("tiles") == digest and storage.exists(fs, part_path(root, name)):
            now[name]["crs"] = before[name]["crs"]
            continue
        crs = write_scene(fs, root, name, source, scene_tiles, by_tile, options)
        now[name]["crs"] = crs
        written += 1
    for gone in sorted(set(before) - set(now)):
        for path in (storage.join(root, f"{gone}.tif"), part_path(root, gone)):
            if storage.exists(fs, path):
                fs.rm_file(path)
    objects = merge_parts(fs, root, now, before)
    storage.write_atomic(fs, state_path, json.dumps(now, sort_keys=True).encode())  # last: a killed export redoes
    return {"scenes": len(now), "written": written, "removed": len(set(before) - set(now)), "objects": objects}


def part_path(root: str, scene: str) -> str:
    return storage.join(root, STATE_FOLDER, f"{scene}.parquet")


def write_scene(fs, root: str, name: str, source: str, tiles: list[dict], by_tile: dict[str, list[dict]],
                options: dict) -> Optional[str]:
    """The scene's label COG and its objects' part; returns the scene's CRS (None: pixels)."""
    with open_raster(source, options) as src:
        width, height = src.width, src.height
        crs = src.crs.to_string() if src.crs else None
        transform = tuple(src.transform)[:6]
    chosen = choose_masks(tiles, by_tile)
    painted = []  # (class id, x, y, crop), in paint order
    rows = []
    for key in sorted(chosen, key=object_order):
        tile, instance = chosen[key]
        found = decode_crop(string_to_counts(instance["mask_rle"]["counts"]), tile["height"], tile["width"])
        geometry = shapely.Polygon()
        area = 0
        if found is not None:
            x0, y0, crop = found
            sx, sy = tile["x0"] + x0, tile["y0"] + y0
            crop = crop[: max(0, height - sy), : max(0, width - sx)]  # a padded window may pass the scene's edge
            painted.append((instance["class_id"], sx, sy, crop))
            geometry = polygons(crop, tile_transform(transform, sx, sy))
            area = int(crop.sum())
        rows.append({"geometry": geometry, "scene": name, "class_id": instance["class_id"],
                     "class_name": instance["class_name"], "layer": instance["source_uri"],
                     "feature_id": instance["source_line"], "prompt_type": instance["prompt_type"],
                     "predicted_iou": instance["predicted_iou"], "tile_id": tile["tile_id"], "area_px": area})
    storage.write_atomic(fs, storage.join(root, f"{name}.tif"), label_cog(painted, width, height, crs, transform))
    storage.write_atomic(fs, part_path(root, name), table_bytes(objects_table(rows, crs)))
    return crs


def choose_masks(tiles: list[dict], by_tile: dict[str, list[dict]]) -> dict[tuple, tuple[dict, dict]]:
    """{object: (tile, instance row)}: for each object (its layer or label file, and its id there)
    the appearance whose prompt box is farthest from its tile's edge (ties: the first tile id)."""
    best: dict[tuple, tuple[float, dict, dict]] = {}
    for tile in sorted(tiles, key=lambda t: t["tile_id"]):
        for instance in by_tile.get(tile["tile_id"], ()):
            x0, y0, x1, y1 = instance["prompt_box"]
            margin = min(x0, y0, tile["width"] - x1, tile["height"] - y1)
            key = (instance["source_uri"], instance["source_line"])
            if key not in best or margin > best[key][0]:
                best[key] = (margin, tile, instance)
    return {key: (tile, instance) for key, (_, tile, instance) in best.items()}


def object_order(key: tuple) -> tuple:
    """Paint order: by layer and id, as the objects were read (later wins an overlap, SAMRS's rule)."""
    return (key[0] or "", key[1] if key[1] is not None else -1)


def polygons(mask: np.ndarray, transform: tuple) -> shapely.Geometry:
    """mask (h, w) bool -> its pixels' outline as a Polygon or MultiPolygon in map coordinates."""
    from affine import Affine
    from rasterio.features import shapes

    parts = [shapely.geometry.shape(geom) for geom, value in
             shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=Affine(*transform)) if value]
    merged = shapely.union_all(parts) if parts else shapely.Polygon()
    return merged if merged.geom_type in ("Polygon", "MultiPolygon") else shapely.Polygon()


def label_cog(painted: list[tuple[int, int, int, np.ndarray]], width: int, height: int, crs: Optional[str],
              transform: tuple) -> bytes:
    """Masks painted on a (height, width) uint8 label raster of IGNORE_ID -> the bytes of a deflated
    COG with overviews, 255 as nodata. `painted`: (class id, x, y, crop (h, w) bool) in paint
    order. The raster is painted STRIP_ROWS rows at a time into a tiled GeoTIFF, which GDAL then
    copies to a COG: a scene of any size costs one strip of memory, not the whole label raster."""
    import rasterio
    import rasterio.shutil
    from affine import Affine
    from rasterio.windows import Window

    with tempfile.TemporaryDirectory(prefix="samrs-ray-cog-") as folder:
        plain, cog = os.path.join(folder, "label.tif"), os.path.join(folder, "label.cog.tif")
        profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint8", nodata=IGNORE_ID,
                       tiled=True, blockxsize=512, blockysize=512, compress="deflate", transform=Affine(*transform))
        if crs:
            profile["crs"] = crs
        # GDAL's block cache defaults to 5% of the machine's memory, more than the label raster
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=GDAL_CACHE_MB):
            with rasterio.open(plain, "w", **profile) as dst:
                for top in range(0, height, STRIP_ROWS):
                    strip = np.full((min(STRIP_ROWS, height - top), width), IGNORE_ID, np.uint8)
                    for class_id, x, y, crop in painted:
                        first, end = max(y, top), min(y + crop.shape[0], top + strip.shape[0])
                        if first < end:
                            paint(strip[first - top:end - top, x:x + crop.shape[1]], crop[first - y:end - y], class_id)
                    dst.write(strip, 1, window=Window(0, top, width, strip.shape[0]))
            rasterio.shutil.copy(plain, cog, driver="COG", compress="deflate", blocksize=512,
                                 overview_resampling="nearest")
        with open(cog, "rb") as f:
            return f.read()


def merge_parts(fs, root: str, now: dict[str, dict], before: dict[str, dict]) -> int:
    """instances.parquet (or one per CRS) from the scenes' parts; returns the number of objects."""
    by_crs: dict[Optional[str], list[pa.Table]] = defaultdict(list)
    for name in sorted(now):
        by_crs[now[name]["crs"]].append(read_objects(fs.cat_file(part_path(root, name))))
    names = {crs: instances_file(crs, set(by_crs)) for crs in by_crs}
    total = 0
    for crs, parts in by_crs.items():
        table = pa.concat_tables(parts)
        rows = table.select([f.name for f in OBJECTS]).to_pylist()
        for row, wkb in zip(rows, table.column("geometry").to_pylist()):
            row["geometry"] = shapely.from_wkb(wkb)
        storage.write_atomic(fs, storage.join(root, names[crs]), table_bytes(objects_table(rows, crs)))
        total += len(rows)
    old = {"instances.parquet"} | {f"instances.{crs_tag(v['crs'])}.parquet" for v in before.values()}
    for stale in old - set(names.values()):
        if storage.exists(fs, storage.join(root, stale)):
            fs.rm_file(storage.join(root, stale))
    return total


def instances_file(crs: Optional[str], crss: set[Optional[str]]) -> str:
    """The name of the GeoParquet file that holds the objects of the scenes in `crs`, when the
    export's scenes are in `crss`: one file for one CRS, else one per CRS."""
    return "instances.parquet" if len(crss) == 1 else f"instances.{crs_tag(crs)}.parquet"


def crs_tag(crs: Optional[str]) -> str:
    """A file-name-safe tag of a CRS: 'EPSG_32633', 'pixels' for none, else a sanitised short form."""
    if crs is None:
        return "pixels"
    return re.sub(r"[^A-Za-z0-9]+", "_", crs)[:40].strip("_")
