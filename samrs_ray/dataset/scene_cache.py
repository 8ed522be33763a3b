"""What planning found in each scene, kept by the scene's file versions, so that a rerun over
unchanged scenes reads none of their bytes.

Planning a scene reads its image and label file, hashes the image and cuts it into windows; its
rows (the scene's counts, each tile's fingerprint, the unusable objects) depend only on those
two files' contents and the plan settings. The store reports a version of each file in its
listing (size and ETag or modification time: storage.version_of), so a scene whose two versions
and settings are those of an earlier run has the rows that run planned, and a night without
changes lists the inputs and reads this one file instead of every input byte.

    <out>/_cache/scenes.parquet    one row per planned row, keyed by its scene's `scene_key`

Every scene's outcome is kept, whichever it was: its tiles, no tile (no object, or none of a known
class), or the error of a file whose bytes are bad. So an unchanged scene replays its outcome and
a night without changes plans nothing, even where some scenes make no tile.

The file is only a shortcut: a missing or unreadable one means planning from the bytes, as a
first run does. Not kept: scenes the store did not give (Stage.STORE: the cause may pass), and
statuses: which tiles are done is decided from the dataset each run (replay). Nothing here knows
of Ray.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from typing import Any, Optional

import fsspec
import pyarrow as pa

from samrs_ray.dataset import layout, manifest
from samrs_ray.inputs.listing import ScenePair, StoredFile
from samrs_ray.job.rows import ROW, Kind, Stage, Status, empty_row
from samrs_ray.planning.plan import PlanSettings

log = logging.getLogger(__name__)

FORMAT = 2  # raised when planning changes what it makes of the same files

# the plan's own columns (rows.py): what a scene's files and the settings decide
PLAN_COLUMNS = ("kind", "status", "scene", "tile_id", "fingerprint", "pixels_key", "source_uri", "label_source_uri",
                "cut", "x0", "y0", "width", "height", "n_objects", "n_windows", "n_empty", "n_in_tiles", "reason",
                "stage", "line", "crs", "transform")
COLUMNS = pa.schema([pa.field("key", pa.string()), *(ROW.field(name) for name in PLAN_COLUMNS)])

Cache = dict[str, list[dict[str, Any]]]  # scene_key -> the scene's plan rows


def scene_key(settings: PlanSettings, pair: ScenePair, files: dict[str, StoredFile],
              objects_digest: Optional[str] = None) -> Optional[str]:
    """What a scene's plan depends on: its name, both files and their versions, the plan settings.
    A map scene (`objects_digest` given) has its objects' digest in place of a label file's
    version. None when the store reports no version for a file (then the scene is always read)."""
    image, label = files.get(pair.image_uri), files.get(pair.label_uri)
    label_version = objects_digest or (label.version if label is not None else "")
    if image is None or not image.version or not label_version:
        return None
    part = [FORMAT, settings.digest, settings.max_pixels, pair.name, pair.image_uri, image.version,
            pair.label_uri, label_version]
    return hashlib.sha256(json.dumps(part).encode()).hexdigest()


def inputs_digest(keys: dict[str, Optional[str]], splits: dict[str, str], left_out: list[tuple]) -> Optional[str]:
    """One digest of everything a run is given: each scene's `scene_key` (its files' store
    versions and the output settings), its split, and the inputs left out before planning
    (`left_out`: (source, line, reason) of unpaired files, bad map features). A version whose
    record holds the same digest is what this run would make, so the run need read nothing of the
    dataset (driver.work). None when a scene has no key: then the run always plans."""
    if any(key is None for key in keys.values()):
        return None
    part = [FORMAT, sorted(keys.items()), sorted(splits.items()), sorted(map(list, left_out))]
    return hashlib.sha256(json.dumps(part, default=str).encode()).hexdigest()


def read(fs: fsspec.AbstractFileSystem, out: str) -> Cache:
    """The cache as the last run left it; empty when there is none or it does not read."""
    try:
        table = manifest.read_table(fs, layout.scene_cache(out), COLUMNS.names)
    except (OSError, pa.ArrowException, KeyError):
        return {}
    cache: Cache = defaultdict(list)
    for row in table.to_pylist():
        cache[row.pop("key")].append(row)
    return dict(cache)


def replay(cached: list[dict[str, Any]], known: frozenset[str], split: str) -> list[dict[str, Any]]:
    """A scene's cached rows as planning them again would give them: each tile 'skipped' when its
    fingerprint is `known` (done in the dataset), else 'todo' (without pixels: the scene must be
    planned from its bytes to compute it)."""
    rows = []
    for cached_row in cached:
        row = {**empty_row(), **cached_row, "split": split}
        if row["kind"] == Kind.TILE:
            row["status"] = Status.SKIPPED if row["fingerprint"] in known else Status.TODO
        rows.append(row)
    return rows


def is_store_trouble(row: dict[str, Any]) -> bool:
    """The store did not give one of the scene's files: the scene is read again next time."""
    return row["kind"] == Kind.ERROR and row["stage"] == Stage.STORE


def write(fs: fsspec.AbstractFileSystem, out: str, rows: list[dict[str, Any]], keys: dict[str, Optional[str]]) -> int:
    """Keep the plan rows of a run (every scene's, whatever became of its tiles), by `keys`
    {scene name: scene_key}; returns the number of scenes kept."""
    by_scene: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_scene[row["scene"]].append(row)
    kept = []
    for scene, scene_rows in by_scene.items():
        key = keys.get(scene)
        if key is None or any(is_store_trouble(r) for r in scene_rows):
            continue
        for row in scene_rows:
            plan_row = {name: row[name] for name in COLUMNS.names if name != "key"}
            if row["kind"] == Kind.TILE:  # what became of the tile is not the plan's
                plan_row.update(status=Status.TODO.value, reason="", stage="")
            kept.append({"key": key, **plan_row})
    table = pa.Table.from_pylist(kept, schema=COLUMNS)
    try:
        manifest.write_table(fs, layout.scene_cache(out), table)
    except OSError as error:  # a shortcut only: the next run plans from the bytes what it cannot replay
        log.warning("%s: the scene cache was not written (%s); the next run reads the scenes instead", out, error)
        return 0
    return len({row["key"] for row in kept})
