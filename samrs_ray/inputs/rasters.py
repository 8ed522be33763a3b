"""Raster scenes (GeoTIFF, COG, anything GDAL reads) read by window: a tile reads its own window
and nothing else, so a scene of any size plans in the memory of a few tiles.

    uri -> RasterScene (header, bands, stretch; once per scene) -> read_window -> (RGB uint8, nodata)

The model wants 3 bands of uint8. `--bands` chooses the bands (1-based, as GDAL counts them;
default: red, green, blue by colour interpretation, else the first three, a single band repeated);
16-bit and float imagery is mapped to 0..255 by a `Stretch` computed once per scene from a
decimated read (GDAL serves it from the overviews of a COG), so that every tile of a scene sees
the same mapping. Needs the `geo` extra (rasterio); nothing here knows of Ray.
"""

from __future__ import annotations

import math
import re
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Optional

import numpy as np

from samrs_ray.dataset import storage
from samrs_ray.errors import ConfigError, InputError
from samrs_ray.inputs.raster_store import StoreFiles, failed

# The longest side of the decimated read a scene's stretch is computed from: 1 Mpx, which a COG
# serves from one overview level, and enough for percentiles to within a grey level.
STRETCH_SAMPLE = 1024

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")  # GeoTIFF and COG first; any GDAL raster works
Transform = tuple[float, float, float, float, float, float]  # a, b, c, d, e, f (rasterio's Affine order)


@dataclass(frozen=True)
class Stretch:
    """How a scene's values become 0..255: 'none' clips, 'minmax' and 'percentile:LOW,HIGH' map
    [low, high] of each band linearly. `low`/`high` are per chosen band, set once per scene."""

    method: str  # 'none' | 'minmax' | 'percentile'
    percentiles: tuple[float, float] = (0.0, 100.0)
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @classmethod
    def parse(cls, text: Optional[str]) -> Optional["Stretch"]:
        """'none', 'minmax' or 'percentile:2,98'; None: the default (none for 8-bit data, else
        percentile:2,98; RasterScene.open decides per scene)."""
        if text is None:
            return None
        if text in ("none", "minmax"):
            return cls(text)
        match = re.fullmatch(r"percentile:([0-9.]+),([0-9.]+)", text)
        if match and 0 <= float(match[1]) < float(match[2]) <= 100:
            return cls("percentile", (float(match[1]), float(match[2])))
        raise ConfigError(f"--stretch {text!r}: give none, minmax or percentile:LOW,HIGH with 0 <= LOW < HIGH <= 100")

    def __str__(self) -> str:
        return "percentile:%g,%g" % self.percentiles if self.method == "percentile" else self.method

    def apply(self, values: np.ndarray) -> np.ndarray:
        """values (3, h, w) of any dtype -> (3, h, w) uint8."""
        if self.method == "none":
            return np.clip(values, 0, 255).astype(np.uint8)
        low = np.asarray(self.low, np.float64)[:, None, None]
        span = np.maximum(np.asarray(self.high, np.float64)[:, None, None] - low, 1e-12)
        return np.rint(np.clip((values - low) / span, 0, 1) * 255).astype(np.uint8)


DEFAULT_STRETCH = Stretch("percentile", (2.0, 98.0))


@dataclass(frozen=True)
class RasterScene:
    """What planning needs of a raster scene, read once from its header (JSON-able via to_dict)."""

    uri: str
    width: int
    height: int
    crs: Optional[str]  # "EPSG:n" where the CRS has a code, else WKT; None without georeferencing (FAIR1M)
    transform: Transform  # pixel -> map (identity for a TIFF without georeferencing)
    bands: tuple[int, int, int]  # 1-based band indexes giving R, G, B
    dtype: str
    nodata: Optional[float]  # the declared nodata value; None: the file's mask, if any, says
    stretch: Stretch
    # a scene of single-band files, one per band (a STAC Item's B04, B03, B02): their URIs, `uri`
    # the first; their bands are the scene's bands 1, 2, 3 (open_scene). Empty: one file, `uri`.
    band_uris: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # without band_uris when there are none: the image keys of one-file scenes stay as they were
        return {k: v for k, v in asdict(self).items() if k != "band_uris" or v}

    def stretch_record(self) -> dict[str, Any]:
        """How this scene's values became 8 bits, as the run's record keeps it."""
        return {"bands": list(self.bands), "dtype": self.dtype, "stretch": str(self.stretch),
                "low": list(self.stretch.low), "high": list(self.stretch.high)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RasterScene":
        stretch = data["stretch"]
        return cls(**{**data, "transform": tuple(data["transform"]), "bands": tuple(data["bands"]),
                      "band_uris": tuple(data.get("band_uris", ())),
                      "stretch": Stretch(stretch["method"], tuple(stretch["percentiles"]), tuple(stretch["low"]),
                                         tuple(stretch["high"]))})


@contextmanager
def open_raster(uri: str, storage_options: dict) -> Iterator[Any]:
    """A rasterio dataset of `uri` (local or any fsspec store, read by range requests).
    InputError naming the file when GDAL cannot read it; StoreError when the store did not give
    the bytes after the job's retries (the file may be fine: it is read again next run)."""
    import rasterio  # the geo extra: only raster scenes need it

    fs, path = storage.open_fs(uri, storage_options)
    store = None if storage.is_local(fs) else StoreFiles(fs)

    def opened() -> Any:
        try:
            return rasterio.open(path, opener=store)
        except FileNotFoundError:
            raise InputError(uri, "file not found (deleted after listing?)") from None
        except rasterio.errors.RasterioIOError as error:
            raise failed(uri, store, f"GDAL cannot read this raster: {error}") from None

    with storage.with_retries(uri, opened) as dataset:
        yield Raster(dataset, uri, store)


def open_scene(scene: RasterScene, storage_options: dict) -> Any:
    """The scene's raster, a context manager: its file, or its band files as one raster."""
    return open_pixels(scene.uri, scene.band_uris, storage_options)


def open_pixels(uri: str, band_uris: tuple[str, ...], storage_options: dict) -> Any:
    """The raster at `uri` (open_raster), or with `band_uris` those files as one (open_bands)."""
    return open_bands(band_uris, storage_options) if band_uris else open_raster(uri, storage_options)


@contextmanager
def open_bands(uris: tuple[str, ...], storage_options: dict) -> Iterator["BandStack"]:
    """Single-band files on one grid as one raster whose band i is file i's first band. InputError
    naming a file whose grid (size, CRS, transform) is not the first file's."""
    with ExitStack() as stack:
        rasters = [stack.enter_context(open_raster(uri, storage_options)) for uri in uris]
        grid = (rasters[0].width, rasters[0].height, rasters[0].crs, rasters[0].transform)
        for uri, raster in zip(uris[1:], rasters[1:]):
            if (raster.width, raster.height, raster.crs, raster.transform) != grid:
                raise InputError(uri, f"this band's grid (size, CRS, transform) differs from {uris[0]}'s")
        yield BandStack(rasters)


class BandStack:
    """Band files read as one raster: the header is the first file's, and `read` stacks each file's
    first band (colour interpretation: red, green, blue, in the files' order)."""

    def __init__(self, rasters: list["Raster"]):
        self.rasters = rasters

    def __getattr__(self, name: str) -> Any:  # width, height, crs, transform, nodata
        return getattr(self.rasters[0], name)

    @property
    def count(self) -> int:
        return len(self.rasters)

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(r.dtypes[0] for r in self.rasters)

    @property
    def colorinterp(self) -> tuple[Any, ...]:
        from rasterio.enums import ColorInterp

        return (ColorInterp.red, ColorInterp.green, ColorInterp.blue)[:self.count]

    def read(self, indexes: list[int], out_shape: Optional[tuple[int, ...]] = None, **kwargs: Any) -> Any:
        if out_shape is not None:
            kwargs["out_shape"] = out_shape[-2:]
        return np.ma.stack([self.rasters[i - 1].read(1, **kwargs) for i in indexes])


class Raster:
    """An open raster scene: rasterio's dataset, whose pixel reads are retried when the store
    failed them."""

    def __init__(self, dataset: Any, uri: str, store: Optional[StoreFiles]):
        self.dataset, self.uri, self.store = dataset, uri, store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dataset, name)

    def read(self, *args: Any, **kwargs: Any) -> Any:
        def once() -> Any:
            try:
                return self.dataset.read(*args, **kwargs)
            except Exception as error:  # truncated TIFF, corrupt block, or a store that failed GDAL's read
                raise failed(self.uri, self.store, f"cannot read pixels: {error}") from None

        return storage.with_retries(self.uri, once)


def read_scene(uri: str, storage_options: dict, bands: Optional[tuple[int, ...]] = None,
               stretch: Optional[Stretch] = None, band_uris: tuple[str, ...] = ()) -> RasterScene:
    """The scene's header, its bands and its stretch (computed here: one decimated read).
    `band_uris`: the scene is these single-band files, `uri` the first (open_bands)."""
    with open_pixels(uri, band_uris, storage_options) as src:
        chosen = choose_bands(src, bands, uri)
        georeferenced = src.crs is not None
        transform = tuple(src.transform)[:6] if georeferenced or not src.transform.is_identity else (
            1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        if stretch is None:
            stretch = Stretch("none") if src.dtypes[chosen[0] - 1] == "uint8" else DEFAULT_STRETCH
        if stretch.method != "none":
            stretch = measured(src, chosen, stretch, uri)
        return RasterScene(uri, src.width, src.height, src.crs.to_string() if georeferenced else None,
                           transform, chosen, src.dtypes[chosen[0] - 1], src.nodata, stretch, band_uris)


def choose_bands(src: Any, bands: Optional[tuple[int, ...]], uri: str) -> tuple[int, int, int]:
    """`bands` checked against the file, or red/green/blue by colour interpretation, else the
    first three, else one band three times."""
    if bands:
        missing = [b for b in bands if not 1 <= b <= src.count]
        if missing:
            raise InputError(uri, f"--bands {','.join(map(str, bands))}: the raster has bands 1..{src.count}, "
                                  f"not {','.join(map(str, missing))}")
        return (bands * 3)[:3] if len(bands) == 1 else tuple(bands[:3])  # type: ignore[return-value]
    names = [ci.name for ci in src.colorinterp]
    if all(c in names for c in ("red", "green", "blue")):
        return tuple(names.index(c) + 1 for c in ("red", "green", "blue"))  # type: ignore[return-value]
    return (1, 2, 3) if src.count >= 3 else (1, 1, 1)


def measured(src: Any, bands: tuple[int, int, int], stretch: Stretch, uri: str) -> Stretch:
    """`stretch` with its per-band low and high, from a read of at most STRETCH_SAMPLE pixels a side."""
    scale = max(src.width, src.height) / STRETCH_SAMPLE
    shape = (3, max(1, math.ceil(src.height / max(scale, 1))), max(1, math.ceil(src.width / max(scale, 1))))
    sample = src.read(list(bands), out_shape=shape, masked=True)
    low, high = [], []
    q = stretch.percentiles if stretch.method == "percentile" else (0.0, 100.0)
    for band in sample:
        valid = band.compressed().astype(np.float64)
        valid = valid[np.isfinite(valid)]
        lo, hi = (np.percentile(valid, q).tolist() if valid.size else (0.0, 255.0))
        low.append(float(lo))
        high.append(float(hi))
    return Stretch(stretch.method, stretch.percentiles, tuple(low), tuple(high))


def read_window(src: Any, scene: RasterScene, x0: int, y0: int, width: int, height: int,
                pad_value: tuple[int, int, int]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """One window -> (RGB (height, width, 3) uint8, nodata (height, width) bool or None when no
    pixel is nodata). Parts outside the scene are padded with `pad_value` and are not nodata."""
    from rasterio.windows import Window

    values = src.read(list(scene.bands), window=Window(x0, y0, width, height), boundless=True, masked=True)
    invalid = np.ma.getmaskarray(values).all(axis=0)  # nodata where every chosen band says so (GDAL: per band)
    if np.issubdtype(values.dtype, np.floating):
        invalid |= ~np.isfinite(values.data).any(axis=0)
    rgb = scene.stretch.apply(values.data.astype(np.float64) if values.dtype != np.uint8 else values.data)
    rgb = np.ascontiguousarray(rgb.transpose(1, 2, 0))
    inside_h, inside_w = max(0, min(height, scene.height - y0)), max(0, min(width, scene.width - x0))
    outside = np.ones((height, width), bool)
    outside[:inside_h, :inside_w] = False
    rgb[outside] = pad_value
    rgb[invalid & ~outside] = pad_value
    nodata = invalid & ~outside
    return rgb, (nodata if nodata.any() else None)


def tile_transform(scene_transform: Transform, x0: int, y0: int) -> Transform:
    """The affine transform of a window starting at (x0, y0) of a scene with `scene_transform`."""
    a, b, c, d, e, f = scene_transform
    return (a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0)
