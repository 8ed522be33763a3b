"""Label readers (DOTA, DIOR, FAIR1M) into `Annotation`s, and the checks applied after reading.

A reader returns the usable objects plus one `InputIssue` per unusable object; a file that
cannot be read at all (XML that does not parse, bytes that are not text) raises `InputError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from shapely.geometry import Polygon, box

from samrs_ray.inputs.annotation import Annotation, InputIssue, ParsedLabels
from samrs_ray.inputs.formats.dior import parse_dior
from samrs_ray.inputs.formats.dota import parse_dota
from samrs_ray.inputs.formats.fair1m import parse_fair1m


@dataclass(frozen=True)
class LabelFormat:
    """One label format: its name (as --label-format says it), the suffixes of its files, and
    its reader (file bytes, source URI -> ParsedLabels)."""

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[str | bytes, str], ParsedLabels]
    per_scene: bool = True  # a label file per scene, paired by stem; False: layers covering many scenes


def per_scene_refused(data: str | bytes, source: str) -> ParsedLabels:
    raise ValueError(f"{source}: vector layers are read whole by inputs/vectors.py, not per scene")


# Every label format the job reads; a new format is one entry here (and a reader module).
LABEL_FORMATS: dict[str, LabelFormat] = {f.name: f for f in (
    LabelFormat("dota", (".txt",), parse_dota),
    LabelFormat("dior", (".xml",), parse_dior),
    LabelFormat("fair1m", (".xml",), parse_fair1m),
    # map layers cover many scenes: read once per run (inputs/vectors.py), never per scene
    LabelFormat("vector", (".geojson", ".gpkg", ".shp", ".parquet", ".geoparquet"), per_scene_refused, per_scene=False),
)}

__all__ = ["LABEL_FORMATS", "LabelFormat", "drop_outside_image", "parse_dior", "parse_dota", "parse_fair1m",
           "read_labels"]


def read_labels(data: bytes, source: str, label_format: str) -> ParsedLabels:
    """Parse one label file's bytes with the reader of `label_format` (a LABEL_FORMATS name)."""
    fmt = LABEL_FORMATS.get(label_format)
    if fmt is None:
        raise ValueError(f"unknown label format {label_format!r}; expected one of {sorted(LABEL_FORMATS)}")
    return fmt.read(data, source)


def drop_outside_image(
    annotations: list[Annotation], width: int, height: int
) -> tuple[list[Annotation], list[InputIssue]]:
    """Objects that overlap the `width` x `height` image; one entirely outside it is an issue.

    Touching the border is not overlapping: an object needs a positive area inside the image.
    Objects partly outside are kept whole; clipping is tiling's job.
    """
    image = box(0, 0, width, height)
    kept: list[Annotation] = []
    issues: list[InputIssue] = []
    for annotation in annotations:
        x0, y0, x1, y1 = annotation.hbox
        if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
            kept.append(annotation)  # the common case, no geometry needed
            continue
        if annotation.polygon is not None:
            shape = Polygon(list(zip(annotation.polygon[0::2], annotation.polygon[1::2])))
        else:
            shape = box(x0, y0, x1, y1)
        if shape.intersection(image).area > 0:
            kept.append(annotation)
        else:
            issues.append(InputIssue(
                annotation.source,
                f"object lies entirely outside the {width}x{height} image "
                f"(box {x0:g},{y0:g},{x1:g},{y1:g})",
                annotation.line,
            ))
    return kept, issues
