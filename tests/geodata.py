"""Rasters and vector layers the geospatial tests write, with known transforms and CRSs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

UTM33 = "EPSG:32633"  # a projected CRS: metres
ORIGIN = (500_000.0, 4_650_000.0)  # the top-left corner of the test scenes, UTM 33N (about 42 N, 15 E)
PIXEL = 0.5  # metres


def write_raster(path: Path, width: int = 1500, height: int = 1200, crs: Optional[str] = UTM33,
                 origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL, count: int = 3, dtype: str = "uint8",
                 nodata: Optional[float] = None, cog: bool = False, seed: int = 0,
                 colorinterp: Optional[list[str]] = None) -> Path:
    """A textured raster (GeoTIFF, or a COG with overviews) with north-up pixels of `pixel` map units."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    top = 255 if dtype == "uint8" else 4000
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((np.sin(xx / 37.0) + np.cos(yy / 23.0) + 2) / 4 * top)
    data = np.stack([(base * (0.6 + 0.2 * b) + rng.integers(0, top // 16 + 1, (height, width))) % top
                     for b in range(count)]).astype(dtype)
    profile = dict(driver="COG" if cog else "GTiff", width=width, height=height, count=count, dtype=dtype,
                   crs=crs, transform=from_origin(origin[0], origin[1], pixel, pixel) if crs else None, nodata=nodata)
    if cog:
        profile.update(compress="deflate", blocksize=256, overview_resampling="average")
    else:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if nodata is not None:
        data[:, : height // 4, : width // 4] = nodata  # the top-left corner has no data
    with rasterio.open(path, "w", **{k: v for k, v in profile.items() if v is not None}) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = [getattr(ColorInterp, c) for c in colorinterp]
    return path


def pixel_to_map(col: float, row: float, origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL
                 ) -> tuple[float, float]:
    return origin[0] + col * pixel, origin[1] - row * pixel


def box_in_lonlat(col0: float, row0: float, col1: float, row1: float) -> list[list[float]]:
    """A pixel box of the test scene as a lon/lat ring (EPSG:4326), densified so it stays the box."""
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(UTM33, "EPSG:4326", always_xy=True)
    ring = [(col0, row0), (col1, row0), (col1, row1), (col0, row1), (col0, row0)]
    return [list(to_lonlat.transform(*pixel_to_map(c, r))) for c, r in ring]


def write_geojson(path: Path, features: list[dict]) -> Path:
    """features: {"class": name, "ring": lon/lat ring} or {"class": name, "point": [lon, lat]} or raw."""
    out = []
    for i, f in enumerate(features):
        if "ring" in f:
            geometry = {"type": "Polygon", "coordinates": [f["ring"]]}
        elif "point" in f:
            geometry = {"type": "Point", "coordinates": f["point"]}
        else:
            geometry = f.get("geometry")
        out.append({"type": "Feature", "id": i, "properties": {"class": f.get("class")}, "geometry": geometry})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": out}))
    return path


def stac_item(item_id: str, raster: Optional[Path], assets: dict[str, str], updated: str = "2026-01-01T00:00:00Z"
              ) -> dict:
    """A STAC 1.1 Item with projection-extension fields read from `raster` (when given), and
    `assets` {key: href} (COGs, role visual for 'visual')."""
    properties = {"datetime": "2025-06-01T10:00:00Z", "updated": updated}
    geometry, bbox, extensions = None, None, []
    if raster is not None:
        import rasterio
        from pyproj import Transformer

        with rasterio.open(raster) as src:
            if src.crs:
                properties.update({"proj:code": src.crs.to_string(), "proj:shape": [src.height, src.width],
                                   "proj:transform": list(src.transform)[:6]})
                extensions.append("https://stac-extensions.github.io/projection/v2.0.0/schema.json")
                to_lonlat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
                left, bottom, right, top = src.bounds
                ring = [list(to_lonlat.transform(x, y)) for x, y in
                        ((left, bottom), (right, bottom), (right, top), (left, top), (left, bottom))]
                geometry = {"type": "Polygon", "coordinates": [ring]}
                bbox = [min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring),
                        max(p[1] for p in ring)]
    return {"type": "Feature", "stac_version": "1.1.0", "stac_extensions": extensions, "id": item_id,
            "geometry": geometry, **({"bbox": bbox} if bbox else {}), "properties": properties, "links": [],
            "assets": {key: {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                             "roles": ["visual" if key == "visual" else "data"]} for key, href in assets.items()}}


def write_item_collection(path: Path, items: list[dict]) -> Path:
    """A saved STAC search: an ItemCollection (GeoJSON FeatureCollection) of `items`."""
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}, indent=1))
    return path


def write_band_files(rgb: Path, folder: Path, names: tuple[str, ...] = ("B04", "B03", "B02")) -> list[Path]:
    """Each band of the raster `rgb` as a single-band COG on its grid (a Sentinel-2-like Item's
    band assets): `folder/<name>.tif`, in band order."""
    import rasterio

    with rasterio.open(rgb) as src:
        profile = {**src.profile, "count": 1, "driver": "COG", "compress": "deflate", "blocksize": 256}
        for key in ("tiled", "blockxsize", "blockysize", "interleave"):
            profile.pop(key, None)
        paths = []
        for band, name in enumerate(names, start=1):
            paths.append(folder / f"{name}.tif")
            with rasterio.open(paths[-1], "w", **profile) as dst:
                dst.write(src.read(band), 1)
    return paths
