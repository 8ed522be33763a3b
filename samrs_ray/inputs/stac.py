"""Scenes from STAC: `--images` may name a STAC ItemCollection (a saved search) or a static
Catalog or Collection, as JSON at any fsspec URI, and `--stac-search URL` searches a STAC API
(pystac-client). Each Item is a raster scene named by its id, read from one of its assets
(`--stac-asset`, default 'visual'), or from three single-band assets stacked as R, G, B
(`--stac-asset B04,B03,B02`; by default the assets whose bands' common names are red, green and
blue, when the Item has no visual asset).

    collection.json / items.json / a search -> Items (pystac, read through fsspec)
      -> {asset URI: StoredFile} and {asset URI: StacScene}: the Item's id, its own URI, the asset's key

An Item's store version is what the Item says of the asset: its `updated` (or `datetime`) and the
asset's fields (href, `file:checksum`, `file:size`, ...). An Item whose projection extension gives
the grid (`proj:code`, `proj:shape`, `proj:transform`) and whose raster bands say uint8 (and
nodata) is planned from those fields, with no header read (StacScene.header). So a night whose Items are unchanged reads
the catalog's JSON and no asset byte; an Item updated upstream is read again. An Item without the
asset, or whose id is no usable name, is an InputIssue naming the Item and the problem. Needs
pystac (the geo extra). Nothing here knows of Ray.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import pystac

from samrs_ray.dataset import storage
from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import InputIssue, Stage
from samrs_ray.inputs.listing import SAFE_NAME, StoredFile
from samrs_ray.inputs.rasters import RasterScene, Stretch

DEFAULT_ASSET = "visual"


@dataclass(frozen=True)
class StacScene:
    """Where a scene came from: its Item's id and URI, and the asset read."""

    item_id: str
    item_uri: str
    asset: str  # the asset's key, or the band assets' keys joined by ','
    band_uris: tuple[str, ...] = ()  # a scene of single-band assets: their URIs, in R, G, B order
    grid: Optional[dict[str, Any]] = None  # what the Item says of the raster (grid_of); None: not enough

    def header(self, uri: str, bands: Optional[tuple[int, ...]], stretch: Optional[Stretch]) -> Optional[RasterScene]:
        """The scene's header from the Item's fields, as read_scene would give it from the file;
        None when they do not say enough (then the header is read): a stretch, or bands the Item
        does not list, need the file."""
        grid = self.grid
        if grid is None or stretch not in (None, Stretch("none")) or (bands and max(bands) > grid["count"]):
            return None
        if bands:
            chosen = (bands * 3)[:3] if len(bands) == 1 else tuple(bands[:3])
        else:
            chosen = (1, 2, 3) if grid["count"] >= 3 else (1, 1, 1)
        return RasterScene(uri, grid["width"], grid["height"], grid["crs"], tuple(grid["transform"]),
                           chosen, "uint8", grid["nodata"], Stretch("none"), self.band_uris)  # type: ignore[arg-type]


class _FsspecStacIO(pystac.StacIO):
    """pystac's reads through fsspec (any store, with the run's storage options); it writes nothing."""

    def __init__(self, storage_options: dict) -> None:
        super().__init__()
        self.storage_options = storage_options

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        uri = str(source)
        return storage.read_bytes(uri, self.storage_options).decode()

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("samrs-ray reads STAC inputs; it does not write them")


def read_items(uri: str, storage_options: dict) -> Iterator[tuple[pystac.Item, str]]:
    """Every Item of the ItemCollection, Catalog or Collection at `uri` (a Catalog's children too),
    with the Item's URI (`<uri>#<id>` for an Item of an ItemCollection that has no self link).
    InputError naming `uri` when it is no STAC document."""
    io = _FsspecStacIO(storage_options)
    try:
        data = json.loads(io.read_text(uri))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(uri, f"not a STAC JSON document: {error}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "FeatureCollection":
        collection = pystac.ItemCollection.from_dict(data, preserve_dict=False)
        for item in collection:
            where = item.get_self_href() or f"{uri}#{item.id}"
            if item.get_self_href() is None:  # relative asset hrefs are relative to the file that holds them
                item.set_self_href(uri)
            yield item, where
    elif kind in ("Catalog", "Collection"):
        catalog = pystac.read_dict(data, href=uri, stac_io=io)
        yield from ((item, item.get_self_href() or f"{uri}#{item.id}") for item in catalog.get_items(recursive=True))
    elif kind == "Feature":
        yield pystac.Item.from_dict(data, href=uri), uri
    else:
        raise InputError(uri, f"not a STAC ItemCollection, Catalog, Collection or Item (type {kind!r})")


@dataclass(frozen=True)
class StacSearch:
    """A search of a STAC API (`--stac-search URL`): what its Items must match."""

    collections: tuple[str, ...] = ()
    bbox: Optional[tuple[float, float, float, float]] = None  # west, south, east, north in lon/lat
    datetime: Optional[str] = None  # RFC 3339 instant or interval

    def items(self, url: str) -> Iterator[tuple[pystac.Item, str]]:
        """The Items the API at `url` finds, each with its own URI (its self link), page by page."""
        from pystac_client import Client

        found = Client.open(url).search(collections=list(self.collections) or None, bbox=self.bbox,
                                        datetime=self.datetime)
        yield from ((item, item.get_self_href() or f"{url}#{item.id}") for item in found.items())


def choose_assets(item: pystac.Item, wanted: Optional[str]) -> Optional[tuple[str, ...]]:
    """The asset keys to read: `wanted` ('visual', or 'B04,B03,B02' for bands stacked as R, G, B),
    or by default 'visual', else the one asset whose roles say 'visual', else the assets of the
    red, green and blue bands; None when the Item has none of them."""
    if wanted:
        keys = tuple(wanted.split(","))
        return keys if all(key in item.assets for key in keys) else None
    if DEFAULT_ASSET in item.assets:
        return (DEFAULT_ASSET,)
    visual = [key for key, asset in item.assets.items() if "visual" in (asset.roles or [])]
    if len(visual) == 1:
        return (visual[0],)
    by_colour = {common_name(asset): key for key, asset in item.assets.items()}
    rgb = tuple(by_colour.get(colour) for colour in ("red", "green", "blue"))
    return rgb if None not in rgb else None  # type: ignore[return-value]


def common_name(asset: pystac.Asset) -> Optional[str]:
    """The common name (red, green, ...) of a single-band asset: STAC 1.1's `bands`, or the eo
    extension's `eo:bands` of STAC 1.0."""
    bands = asset.extra_fields.get("bands") or asset.extra_fields.get("eo:bands") or []
    if len(bands) != 1 or not isinstance(bands[0], dict):
        return None
    return bands[0].get("eo:common_name") or bands[0].get("common_name")


def stac_scenes(uri: str, asset: Optional[str], storage_options: dict, search: Optional[StacSearch] = None
                ) -> tuple[dict[str, StoredFile], dict[str, StacScene], list[InputIssue]]:
    """The rasters of the Items at `uri` (with `search`: that the STAC API at `uri` finds):
    ({asset URI: StoredFile}, {asset URI: StacScene}, the Items that cannot be scenes)."""
    files: dict[str, StoredFile] = {}
    scenes: dict[str, StacScene] = {}
    issues: list[InputIssue] = []
    seen: set[str] = set()
    for item, source in search.items(uri) if search else read_items(uri, storage_options):
        keys = choose_assets(item, asset)
        if not SAFE_NAME.fullmatch(item.id) or item.id in seen:
            issues.append(InputIssue(source, f"item id {item.id!r} is unusable as a scene name or shared by two "
                                             "items (allowed: letters, digits, . _ -)", stage=Stage.PAIR))
            continue
        if keys is None:
            issues.append(InputIssue(source, f"item {item.id} has no asset {asset or DEFAULT_ASSET!r} (its assets: "
                                             f"{', '.join(sorted(item.assets)) or 'none'}), nor red, green and "
                                             "blue band assets; choose with --stac-asset", stage=Stage.READ))
            continue
        seen.add(item.id)
        chosen = [item.assets[key] for key in keys]
        hrefs = tuple(absolute_href(a) for a in chosen)
        stamp = [item.properties.get("updated") or item.properties.get("datetime"), [a.to_dict() for a in chosen]]
        files[hrefs[0]] = StoredFile(sum(int(a.extra_fields.get("file:size") or 0) for a in chosen),
                                     hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest())
        scenes[hrefs[0]] = StacScene(item.id, source, ",".join(keys), hrefs if len(hrefs) > 1 else (),
                                     grid_of(item, chosen))
    return files, scenes, issues


def grid_of(item: pystac.Item, assets: list[pystac.Asset]) -> Optional[dict[str, Any]]:
    """The raster's grid and bands as the Item says them: the projection extension (on the asset,
    else the Item) and the raster bands (`raster:bands`, or STAC 1.1's `bands`); None unless all
    are there, every band is uint8 with one nodata, and band assets each hold one band."""
    def field(name: str) -> Any:
        return assets[0].extra_fields.get(name, item.properties.get(name))

    epsg = field("proj:epsg")
    crs = field("proj:code") or (f"EPSG:{epsg}" if epsg else None)
    shape, transform = field("proj:shape"), field("proj:transform")
    bands = [band for asset in assets for band in (asset.extra_fields.get("raster:bands")
                                                   or asset.extra_fields.get("bands") or [])]
    if not (crs and shape and transform and bands) or len(shape) != 2 or len(transform) < 6:
        return None
    if (len(assets) > 1 and len(bands) != len(assets)) or {b.get("data_type") for b in bands} != {"uint8"}:
        return None
    nodata = {b.get("nodata") for b in bands}
    if len(nodata) != 1:
        return None
    return {"crs": crs, "height": int(shape[0]), "width": int(shape[1]),
            "transform": [float(v) for v in transform[:6]], "count": len(bands), "nodata": nodata.pop()}


def absolute_href(asset: pystac.Asset) -> str:
    """A relative href resolved against the Item's document; an absolute path stays a path (pystac
    would make it a path on an API's host)."""
    if "://" in asset.href or asset.href.startswith("/"):
        return asset.href
    return asset.get_absolute_href() or asset.href
