"""Planning one scene: read its image and label bytes once, and turn them into tile rows.

    ScenePair -> bytes -> annotations (with class ids) -> windows -> one row per window with objects

Each row is a plain dict with every column of `rows.empty_row` (see rows.py for what each
means). A tile whose fingerprint is already in the dataset is planned as 'skipped' and its
pixels are never decoded; everything that cannot be used becomes an 'error' row. Nothing here
knows of Ray.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from samrs_ray.dataset import storage
from samrs_ray.errors import InputError, StoreError
from samrs_ray.inputs.annotation import Annotation, InputIssue
from samrs_ray.inputs.formats import drop_outside_image, read_labels
from samrs_ray.inputs.images import check_pixel_cap, decode_image, image_size
from samrs_ray.inputs.listing import ScenePair
from samrs_ray.inputs.presets import Preset, assign_class_ids
from samrs_ray.job.rows import Kind, Stage, Status, empty_row, error_row
from samrs_ray.planning.prompts import PromptBatch, build_prompts
from samrs_ray.planning.tiling import Window, cut_tile, objects_in_window, plan_windows, tile_id


def object_record(annotation: Annotation, class_id: int) -> dict[str, Any]:
    """A tile-relative object as JSON-able data; also what its tile's fingerprint covers."""
    record = {
        "class_id": class_id,
        "class_name": annotation.class_name,
        "difficult": annotation.difficult,
        "hbox": [round(v, 4) for v in annotation.hbox],
        "polygon": None if annotation.polygon is None else [round(v, 4) for v in annotation.polygon],
        "line": annotation.line,
    }
    if annotation.layer is not None:  # map features only, so label files' fingerprints stay as they were
        record.update(layer=annotation.layer, prompt=annotation.prompt)
    return record


def record_annotation(record: dict[str, Any], source: str) -> Annotation:
    polygon = record["polygon"]
    return Annotation(record["class_name"], tuple(record["hbox"]), None if polygon is None else tuple(polygon),
                      record["difficult"], record.get("layer") or source, record["line"], record.get("layer"),
                      record.get("prompt"))


def tile_annotations(row: dict[str, Any]) -> list[Annotation]:
    """A tile row's objects as Annotations again (tile pixels), for its prompts."""
    return [record_annotation(o, row["label_source_uri"]) for o in json.loads(row["objects"])]


def tile_prompts(row: dict[str, Any], prompt_type: str) -> PromptBatch:
    """A tile row's prompts of one kind (the objects of label files all take the preset's)."""
    return build_prompts(tile_annotations(row), prompt_type, (row["height"], row["width"]))


def prompt_groups(row: dict[str, Any], prompt_type: str) -> list[tuple[list[int], PromptBatch]]:
    """A tile row's prompts, as the mask stage gives them to the engine: one batch per prompt kind
    (objects of map layers may ask for their own: a point feature, a point prompt), each with the
    positions of its objects in the row. Label files give one batch of `prompt_type`."""
    annotations = tile_annotations(row)
    kinds = [a.prompt or prompt_type for a in annotations]
    groups = []
    for kind in dict.fromkeys(kinds) or [prompt_type]:
        members = [i for i, k in enumerate(kinds) if k == kind]
        groups.append((members, build_prompts([annotations[i] for i in members], kind, (row["height"], row["width"]))))
    return groups


def fingerprint(settings_digest: str, image_sha: str, window: Window, objects_json: str) -> str:
    """What a tile's output depends on: settings (incl. model checksum), pixels, window, objects."""
    digest = hashlib.sha256()
    for part in (settings_digest, image_sha, f"{window.x0},{window.y0},{window.width},{window.height}", objects_json):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def pixels_key(image_sha: str, window: Window, pad_value: tuple[int, int, int]) -> str:
    """What a cut tile's pixels depend on: the scene's bytes, the window and the padding. Labels
    and the model do not enter, so a label edit or a new model never rewrites a tile's RGB PNG."""
    part = f"{image_sha}\0{window.x0},{window.y0},{window.width},{window.height}\0{pad_value}"
    return hashlib.sha256(part.encode()).hexdigest()


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PlanSettings:
    """What planning needs from the job configuration (small, so it ships to every task)."""

    preset: Preset
    digest: str  # settings_digest of the output settings
    max_pixels: int
    storage_options: dict


def plan_scene(pair: ScenePair, settings: PlanSettings, known: frozenset[str], cut: bool = True
               ) -> Iterator[dict[str, Any]]:
    """All rows of one scene: a 'scene' row, one 'tile' row per window with objects, and an
    'error' row per unusable object. An unreadable scene gives its 'error' row(s) only.

    `known`: fingerprints already in the dataset for this scene; their tiles are 'skipped'.
    cut=False plans without decoding pixels ('todo' rows then carry none): to check for changes.
    Rows come out one at a time and each 'todo' tile's pixels are cut as it goes out, so a big
    scene needs its decoded pixels and the tiles in flight, not all its tiles at once.
    """
    scene: Optional[np.ndarray] = None
    try:
        rows, image_bytes = plan_readable_scene(pair, settings, known)
        if cut and any(r["status"] == Status.TODO for r in rows):
            scene = decode_image(image_bytes, pair.image_uri, settings.max_pixels, writable=False)
        del image_bytes  # the encoded scene is not needed once decoded
    except InputError as error:  # the file's fault: quarantined
        rows = [error_row(InputIssue.from_error(error))]
    except StoreError as error:  # the store's fault: the scene's committed tiles are kept
        rows = [error_row(InputIssue.from_store_error(error))]
    for row in rows:
        row["scene"] = pair.name
        if scene is not None and row["status"] == Status.TODO:
            window = Window(row["x0"], row["y0"], row["width"], row["height"])
            yield {**row, "pixels": cut_tile(scene, window, settings.preset.pad_value).tobytes()}
        else:
            yield row


def plan_readable_scene(pair: ScenePair, settings: PlanSettings, known: frozenset[str]
                        ) -> tuple[list[dict[str, Any]], bytes]:
    """The scene's rows without pixels, and the image file's bytes."""
    preset = settings.preset
    label_bytes = read_source(pair.label_uri, settings.storage_options)
    image_bytes = read_source(pair.image_uri, settings.storage_options)
    width, height = image_size(image_bytes, pair.image_uri)
    check_pixel_cap(width, height, settings.max_pixels, pair.image_uri)
    parsed = read_labels(label_bytes, pair.label_uri, preset.label_format)
    with_ids, class_issues = assign_class_ids(parsed.annotations, preset)
    inside, outside_issues = drop_outside_image([a for a, _ in with_ids], width, height)
    kept_ids = {id(a) for a in inside}
    annotations = [(a, c) for a, c in with_ids if id(a) in kept_ids]
    issues = parsed.issues + class_issues + outside_issues

    image_sha = hashlib.sha256(image_bytes).hexdigest()
    windows = plan_windows(width, height, preset.tile_size, preset.gap)
    cut = preset.tile_size is not None
    rows: list[dict[str, Any]] = []
    in_tiles: set[int] = set()
    empty = 0
    for window in windows:
        try:
            kept = objects_in_window([a for a, _ in annotations], window, preset.iof_thr)
        except InputError as error:  # a zero-area object: the readers refuse these, but stay total
            return [error_row(InputIssue.from_error(error, stage=Stage.TILE))], b""
        if not kept:
            empty += 1
            continue
        in_tiles.update(index for index, _ in kept)
        objects_json = json.dumps([object_record(a, annotations[i][1]) for i, a in kept], sort_keys=True)
        row = empty_row()
        row.update(
            kind=Kind.TILE, scene=pair.name, tile_id=tile_id(pair.name, preset.tile_size, window),
            fingerprint=fingerprint(settings.digest, image_sha, window, objects_json),
            pixels_key=pixels_key(image_sha, window, preset.pad_value) if cut else "",
            source_uri=pair.image_uri, label_source_uri=pair.label_uri, cut=cut,
            x0=window.x0, y0=window.y0, width=window.width, height=window.height, objects=objects_json,
        )
        row["status"] = Status.SKIPPED if row["fingerprint"] in known else Status.TODO
        rows.append(row)

    for index, (annotation, _) in enumerate(annotations):
        if index not in in_tiles:  # SAMRS dropped these silently; we say so
            issues.append(InputIssue(
                annotation.source,
                f"object is in no tile: no {preset.tile_size}px window holds {preset.iof_thr:.0%} of it",
                annotation.line, stage=Stage.TILE,
            ))
    summary = empty_row()
    summary.update(kind=Kind.SCENE, status=Status.OK, scene=pair.name, source_uri=pair.image_uri,
                   label_source_uri=pair.label_uri, n_objects=len(parsed.annotations) + len(parsed.issues),
                   n_windows=len(windows), n_empty=empty, n_in_tiles=len(in_tiles))
    return [summary, *rows, *(error_row(issue) for issue in issues)], image_bytes


# Encoded image bytes one planning task reads: large enough that Ray's per-task cost is small
# against the reading and hashing, small enough that planning streams into inference.
PLAN_GROUP_BYTES = 64 << 20


def group_scenes(pairs: list[ScenePair], sizes: dict[str, int], parallelism: int,
                 group_bytes: int = PLAN_GROUP_BYTES) -> list[list[ScenePair]]:
    """Consecutive scenes in groups of about `group_bytes` of image files (a big scene alone),
    and at least `parallelism` groups when there are that many scenes."""
    total = sum(sizes.get(p.image_uri, 0) for p in pairs)
    limit = max(1, min(group_bytes, total // max(1, parallelism)))
    groups: list[list[ScenePair]] = []
    current: list[ScenePair] = []
    filled = 0
    for pair in pairs:
        size = sizes.get(pair.image_uri, 0)
        if current and filled + size > limit:
            groups.append(current)
            current, filled = [], 0
        current.append(pair)
        filled += size
    if current:
        groups.append(current)
    return groups


def read_source(uri: str, storage_options: dict) -> bytes:
    try:
        return storage.read_bytes_retrying(uri, storage_options)
    except FileNotFoundError:
        raise InputError(uri, "file not found (deleted after listing?)") from None
