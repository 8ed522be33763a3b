"""The campaign's inputs as a map run's (`python -m bench.campaign --maps`): the same DOTA-style
scenes the campaign edits (images/<scene>.png, labelTxt/<scene>.txt, boxes in pixels), rendered as

    rasters/<scene>.tif      a GeoTIFF in UTM 33N, each scene at its own place (1 m pixels); a
                             truncated PNG gives a truncated TIFF
    layers/boxes.geojson     every box of every scene as a polygon in lon/lat, field `class`, and
                             an `id` that stays when other features come and go (scene number x
                             1000 + line), as a GeoPackage's FIDs do: with row numbers for ids, an
                             edit renumbers the later features and recomputes their tiles

Rendering is deterministic: a scene whose PNG and label file did not change renders to the same
bytes, so the campaign uploads only what changed, as a user's sync would.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

CRS = "EPSG:32633"
PIXEL = 1.0  # metres
SPACING = 1000.0  # metres between scenes' origins: no two scenes meet (the campaign's scenes are <= 256 px)


def origin(scene: str) -> tuple[float, float]:
    """Where scene 'S00012' lies: its top-left corner in UTM 33N."""
    index = int(scene.lstrip("S"))
    return 500_000.0 + SPACING * (index % 50), 4_500_000.0 - SPACING * (index // 50)


def render(inputs: Path, folder: Path) -> None:
    """inputs (images/, labelTxt/) -> folder (rasters/, layers/boxes.geojson), replacing what was there."""
    from pyproj import Transformer

    (folder / "rasters").mkdir(parents=True, exist_ok=True)
    (folder / "layers").mkdir(exist_ok=True)
    scenes = sorted(p.stem for p in (inputs / "images").glob("*.png"))
    for old in (folder / "rasters").glob("*.tif"):
        if old.stem not in scenes:
            old.unlink()
    to_lonlat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    features = []
    for scene in scenes:
        (folder / "rasters" / f"{scene}.tif").write_bytes(geotiff((inputs / "images" / f"{scene}.png").read_bytes(),
                                                                  origin(scene)))
        x, y = origin(scene)
        for number, line in enumerate((inputs / "labelTxt" / f"{scene}.txt").read_text().splitlines()):
            if not line.strip():
                continue
            values = line.split()
            x0, y0, x1, y1 = float(values[0]), float(values[1]), float(values[4]), float(values[5])
            corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
            ring = [list(to_lonlat.transform(x + col * PIXEL, y - row * PIXEL)) for col, row in corners]
            features.append({"type": "Feature", "id": int(scene.lstrip("S")) * 1000 + number,
                             "properties": {"class": values[8]},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
    layer = {"type": "FeatureCollection", "features": features}
    (folder / "layers" / "boxes.geojson").write_text(json.dumps(layer))


def geotiff(png: bytes, corner: tuple[float, float]) -> bytes:
    """A PNG's pixels as GeoTIFF bytes at `corner`; a PNG that does not decode (the campaign's
    truncated upload) gives a TIFF of its size cut to half, as such an upload would be."""
    import rasterio
    from rasterio.transform import from_origin

    try:
        with Image.open(io.BytesIO(png)) as image:
            pixels, broken = np.asarray(image.convert("RGB")), False
    except OSError:
        with Image.open(io.BytesIO(png)) as image:  # the header is whole
            pixels, broken = np.full((image.height, image.width, 3), 128, np.uint8), True
    height, width = pixels.shape[:2]
    with rasterio.MemoryFile() as memory:
        with memory.open(driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=CRS,
                         transform=from_origin(*corner, PIXEL, PIXEL), tiled=True, blockxsize=64,
                         blockysize=64) as dst:
            dst.write(pixels.transpose(2, 0, 1))
        data = memory.read()
    return data[: len(data) // 2] if broken else data
