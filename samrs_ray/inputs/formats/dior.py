"""DIOR Pascal-VOC XML, horizontal (`<bndbox>`) and oriented (DIOR-R `<robndbox>`) boxes.

Class names are kept as written (`golffield`, `Expressway-Service-area`); presets match
them case-insensitively. `line` of each annotation is its 1-based `<object>` index.
Coordinates are kept as in the file (no VOC 1-based shift), like SAMRS did.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, ParsedLabels, enclosing_box
from samrs_ray.inputs.formats.checks import coordinate, flag, parse_objects, parse_xml, quad_problem

# DIOR-R corner order; the polygon keeps it: left-top, right-top, right-bottom, left-bottom
CORNERS = ("left_top", "right_top", "right_bottom", "left_bottom")
BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def parse_dior(text: str | bytes, source: str) -> ParsedLabels:
    """All objects of one DIOR XML file; an XML that does not parse raises InputError."""
    root = parse_xml(text, source)
    if root.tag != "annotation":
        raise InputError(source, f"not a VOC annotation: the root element is <{root.tag}>")
    return parse_objects(root.findall("object"), parse_object, source, voc_meta(root))


def voc_meta(root: ET.Element) -> dict[str, str]:
    fields = {"filename": root.findtext("filename"),
              "width": root.findtext("size/width"),
              "height": root.findtext("size/height")}
    return {key: value.strip() for key, value in fields.items() if value and value.strip()}


def parse_object(element: ET.Element, source: str, index: int) -> Annotation:
    name = (element.findtext("name") or "").strip()
    if not name:
        raise InputError(source, "object has no <name>", index)
    difficult = flag(element.findtext("difficult"), "<difficult>", source, index)
    rotated, horizontal = element.find("robndbox"), element.find("bndbox")
    if rotated is not None:
        polygon = tuple(
            coordinate(rotated.findtext(f"{axis}_{corner}"), f"<{axis}_{corner}>", source, index)
            for corner in CORNERS
            for axis in "xy"
        )
        problem = quad_problem(polygon)  # type: ignore[arg-type]
        if problem:
            raise InputError(source, problem, index)
        hbox = enclosing_box(polygon)  # type: ignore[arg-type]
        return Annotation(name, hbox, polygon, difficult, source, index)  # type: ignore[arg-type]
    if horizontal is not None:
        x0, y0, x1, y1 = (coordinate(horizontal.findtext(f), f"<{f}>", source, index) for f in BOX_FIELDS)
        if x1 <= x0 or y1 <= y0:
            corners = f"{x0:g},{y0:g},{x1:g},{y1:g}"
            raise InputError(source, f"degenerate box: xmin,ymin,xmax,ymax = {corners}", index)
        return Annotation(name, (x0, y0, x1, y1), None, difficult, source, index)
    raise InputError(source, "object has neither <bndbox> nor <robndbox>", index)
