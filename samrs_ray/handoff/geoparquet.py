"""Objects as GeoParquet 1.1: WKB geometry, the CRS as PROJJSON, a bbox covering column.

    rows {geometry (shapely), properties...} + CRS -> one Parquet file with the 'geo' metadata

GeoParquet has one CRS per geometry column: objects of scenes in several CRSs go to one file per
CRS (geo_export.py names them). A CRS of None is written as an explicit null, which the spec
reads as "unknown": the pixel coordinates of a detection dataset's scenes. Needs pyproj.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import shapely

GEOPARQUET_VERSION = "1.1.0"
BBOX = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64())])

# the attribute columns, in order, after geometry and bbox
OBJECTS = pa.schema([
    ("scene", pa.string()),
    ("class_id", pa.int32()),
    ("class_name", pa.string()),
    ("layer", pa.string()),  # the vector layer (map runs) or label file the object came from
    ("feature_id", pa.int64()),  # its id there: the feature's FID or row, or the label file's line
    ("prompt_type", pa.string()),
    ("predicted_iou", pa.float32()),
    ("tile_id", pa.string()),  # the tile whose mask this is: where the object lies farthest from the edge
    ("area_px", pa.int64()),
])


def projjson(crs: Optional[str]) -> Optional[dict[str, Any]]:
    """'EPSG:32633' or WKT -> PROJJSON (a dict); None stays None (an unknown CRS)."""
    if crs is None:
        return None
    from pyproj import CRS

    return json.loads(CRS.from_user_input(crs).to_json())


def objects_table(rows: list[dict[str, Any]], crs: Optional[str]) -> pa.Table:
    """rows: OBJECTS' columns plus 'geometry' (shapely Polygon or MultiPolygon, possibly empty) ->
    a table with GeoParquet 1.1 metadata."""
    geometries = [r["geometry"] for r in rows]
    bounds = [None if g.is_empty else dict(zip(("xmin", "ymin", "xmax", "ymax"), g.bounds)) for g in geometries]
    columns = {
        "geometry": pa.array(shapely.to_wkb(geometries).tolist() if rows else [], pa.binary()),
        "bbox": pa.array(bounds, BBOX),
        **{field.name: pa.array([r[field.name] for r in rows], field.type) for field in OBJECTS},
    }
    present = [g for g in geometries if not g.is_empty]
    total = shapely.total_bounds(present).tolist() if present else None
    types = sorted({g.geom_type for g in geometries}) or ["Polygon", "MultiPolygon"]
    column = {"encoding": "WKB", "geometry_types": types, "crs": projjson(crs),
              "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}}
    if total is not None and all(map(_finite, total)):
        column["bbox"] = total
    metadata = {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}
    return pa.table(columns).replace_schema_metadata({b"geo": json.dumps(metadata).encode()})


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    # row groups of 10,000 objects, so a reader filtering on bbox skips most of a big file
    pq.write_table(table, sink, compression="zstd", row_group_size=10_000)
    return sink.getvalue().to_pybytes()


def read_objects(data: bytes) -> pa.Table:
    """A table written by objects_table (geometry as WKB), for merging per-scene parts."""
    return pq.read_table(pa.BufferReader(data))
