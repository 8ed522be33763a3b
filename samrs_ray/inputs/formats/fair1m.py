"""FAIR1M XML: `objects/object`, each with `possibleresult/name` and `points/point` "x,y".

FAIR1M closes each polygon: 5 points, the 5th repeating the 1st; 4 points are accepted too.
Spaces in class names become '-' ('Small Car' -> 'Small-Car'), as SAMRS did. FAIR1M has no
difficult flag. `line` of each annotation is its 1-based `<object>` index.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, ParsedLabels, enclosing_box
from samrs_ray.inputs.formats.checks import coordinate, parse_objects, parse_xml, quad_problem


def parse_fair1m(text: str | bytes, source: str) -> ParsedLabels:
    """All objects of one FAIR1M XML file; an XML that does not parse raises InputError."""
    root = parse_xml(text, source)
    if root.tag != "annotation":
        raise InputError(source, f"not a FAIR1M annotation: the root element is <{root.tag}>")
    fields = {"filename": root.findtext("source/filename"),
              "width": root.findtext("size/width"),
              "height": root.findtext("size/height")}
    meta = {key: value.strip() for key, value in fields.items() if value and value.strip()}
    return parse_objects(root.findall("objects/object"), parse_object, source, meta)


def parse_object(element: ET.Element, source: str, index: int) -> Annotation:
    name = "-".join((element.findtext("possibleresult/name") or "").split())
    if not name:
        raise InputError(source, "object has no <possibleresult><name>", index)
    points = [parse_point(p.text, source, index) for p in element.findall("points/point")]
    if len(points) == 5:
        if points[4] != points[0]:
            raise InputError(source, "5 points, but the 5th does not repeat the 1st", index)
        points = points[:4]
    if len(points) != 4:
        raise InputError(source, f"expected 4 points (or 5 closing the polygon), found {len(points)}", index)
    polygon = tuple(v for point in points for v in point)
    problem = quad_problem(polygon)  # type: ignore[arg-type]
    if problem:
        raise InputError(source, problem, index)
    return Annotation(name, enclosing_box(polygon), polygon, False, source, index)  # type: ignore[arg-type]


def parse_point(text: str | None, source: str, index: int) -> tuple[float, float]:
    parts = (text or "").split(",")
    if len(parts) != 2:
        raise InputError(source, f"point {(text or '').strip()!r} is not 'x,y'", index)
    return coordinate(parts[0], "point x", source, index), coordinate(parts[1], "point y", source, index)
