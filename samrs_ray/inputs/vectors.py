"""Vector label layers (GeoJSON, GeoPackage, Shapefile, GeoParquet) -> features in map coordinates.

    layer file -> Feature(layer, fid, class, geometry, CRS) per usable feature, InputIssue per bad one

GeoJSON, GeoPackage and Shapefile are read with pyogrio (GDAL); GeoParquet with pyarrow and
shapely (pyogrio's GDAL has no Parquet driver). A feature's id is what the layer calls it: the
FID of a GeoPackage or Shapefile, a GeoJSON feature's integer `id`, else its row number (0-based;
always for GeoParquet); it goes to the errors manifest's `line` and to the instances'
`source_line`, and into its tiles' fingerprints. So with row numbers, a feature inserted or
deleted renumbers the later ones and recomputes their tiles. Needs the `geo` extra.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely.geometry.base import BaseGeometry

from samrs_ray.dataset import storage
from samrs_ray.inputs.annotation import InputIssue, Stage

SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")
DEFAULT_CLASS_FIELD = "class"


@dataclass(frozen=True)
class Feature:
    """One usable feature of a layer, in the layer's CRS."""

    layer: str  # the layer file's URI
    fid: int
    class_name: str
    geometry: BaseGeometry
    crs: str  # as the layer declares it (WKT, PROJJSON text or 'EPSG:n')


def read_layer(uri: str, class_field: str, storage_options: dict) -> tuple[list[Feature], list[InputIssue]]:
    """Every feature of one layer file: usable ones, and an InputIssue per bad one (null, empty or
    invalid geometry, no class). A layer without a CRS, or one that cannot be read, is one issue."""
    try:
        geometries, classes, fids, crs = read_geometries(uri, class_field, storage_options)
    except LayerError as error:
        return [], [InputIssue(uri, str(error), stage=Stage.READ)]
    if not crs:
        return [], [InputIssue(uri, "the layer has no CRS: its coordinates cannot be placed on any scene; "
                                    "set one (ogr2ogr -a_srs EPSG:...)", stage=Stage.READ)]
    features, issues = [], []
    for geometry, class_name, fid in zip(geometries, classes, fids):
        problem = geometry_problem(geometry) or (None if class_name not in (None, "") else
                                                 f"feature has no {class_field!r} value (--class-field names the "
                                                 "class attribute)")
        if problem:
            issues.append(InputIssue(uri, problem, int(fid), stage=Stage.READ))
        else:
            features.append(Feature(uri, int(fid), str(class_name), geometry, crs))
    return features, issues


def geometry_problem(geometry: Optional[BaseGeometry]) -> Optional[str]:
    if geometry is None:
        return "feature has a null geometry"
    if geometry.is_empty:
        return "feature has an empty geometry"
    if geometry.geom_type not in ("Point", "Polygon", "MultiPolygon"):
        return f"feature is a {geometry.geom_type}: prompts come from points and polygons only"
    if not geometry.is_valid:
        return f"feature has an invalid geometry ({shapely.is_valid_reason(geometry)})"
    return None


class LayerError(Exception):
    """A layer file that cannot be read at all; the message says why."""


def read_geometries(uri: str, class_field: str, storage_options: dict
                    ) -> tuple[list[Optional[BaseGeometry]], list[Any], list[int], Optional[str]]:
    suffix = posixpath.splitext(uri)[1].lower()
    try:
        if suffix in (".parquet", ".geoparquet"):
            return read_geoparquet(storage.read_bytes_retrying(uri, storage_options), class_field)
        with local_copy(uri, storage_options) as path:
            return read_ogr(path, class_field)
    except LayerError:
        raise
    except (OSError, ValueError, pa.ArrowException, KeyError) as error:
        raise LayerError(f"cannot read this vector layer: {type(error).__name__}: {error}") from None
    except Exception as error:  # pyogrio's DataSourceError and friends
        raise LayerError(f"cannot read this vector layer: {error}") from None


def read_ogr(path: str, class_field: str) -> tuple[list, list, list[int], Optional[str]]:
    import pyogrio

    info = pyogrio.read_info(path)
    if class_field not in list(info["fields"]):
        raise LayerError(f"the layer has no {class_field!r} attribute (it has {', '.join(info['fields']) or 'none'}); "
                         "--class-field names the class attribute")
    meta, table = pyogrio.read_arrow(path, columns=[class_field], return_fids=True)
    geometries = shapely.from_wkb(table.column(meta["geometry_name"] or "wkb_geometry").to_numpy(zero_copy_only=False))
    fid_column = meta.get("fid_column") or "OGC_FID"
    fids = table.column(fid_column).to_pylist() if fid_column in table.column_names else list(range(table.num_rows))
    return list(geometries), table.column(class_field).to_pylist(), fids, meta.get("crs")


def read_geoparquet(data: bytes, class_field: str) -> tuple[list, list, list[int], Optional[str]]:
    table = pq.read_table(pa.BufferReader(data))
    geo = json.loads((table.schema.metadata or {}).get(b"geo", b"null") or b"null")
    if not geo:
        raise LayerError("a Parquet file without GeoParquet metadata (no 'geo' key)")
    column = geo["primary_column"]
    info = geo["columns"][column]
    if info.get("encoding", "WKB") != "WKB":
        raise LayerError(f"GeoParquet encoding {info['encoding']!r}: only WKB is read")
    if class_field not in table.column_names:
        raise LayerError(f"the layer has no {class_field!r} column; --class-field names the class attribute")
    # GeoParquet: a missing 'crs' means OGC:CRS84; an explicit null means unknown
    crs = json.dumps(info["crs"]) if info.get("crs", "OGC:CRS84") not in (None, "OGC:CRS84") else (
        "OGC:CRS84" if "crs" not in info else None)
    wkb = table.column(column).to_numpy(zero_copy_only=False)
    geometries = [None if item is None else shapely.from_wkb(item) for item in wkb]
    return geometries, table.column(class_field).to_pylist(), list(range(table.num_rows)), crs


class local_copy:
    """A local path for a layer: the file itself, or for a remote one a temporary copy (with its
    Shapefile sidecars), since GDAL opens these by name."""

    def __init__(self, uri: str, storage_options: dict):
        self.uri, self.storage_options, self.folder = uri, storage_options, None

    def __enter__(self) -> str:
        fs, path = storage.open_fs(self.uri, self.storage_options)
        if storage.is_local(fs):
            return path
        self.folder = tempfile.TemporaryDirectory(prefix="samrs-ray-layer-")
        base, suffix = posixpath.splitext(self.uri)
        siblings = [suffix, *SHAPEFILE_SIDECARS] if suffix.lower() == ".shp" else [suffix]
        for ext in siblings:
            try:
                data = storage.read_bytes_retrying(base + ext, self.storage_options)
            except FileNotFoundError:
                continue
            with open(os.path.join(self.folder.name, "layer" + ext), "wb") as f:
                f.write(data)
        return os.path.join(self.folder.name, "layer" + suffix)

    def __exit__(self, *exc: Any) -> None:
        if self.folder is not None:
            self.folder.cleanup()

