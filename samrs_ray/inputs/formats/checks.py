"""Checks every label reader shares: text decoding, safe XML, numbers, and quad validity.

Each check raises `InputError` naming the file (and line) so a reader can turn it into an
`InputIssue` for that object and go on with the rest of the file.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Callable, Optional

from shapely.geometry import Polygon
from shapely.validation import explain_validity

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, InputIssue, ParsedLabels, Quad


def decode_text(data: str | bytes, source: str) -> str:
    """Label text as str. DOTA files are ASCII; UTF-8 (with or without BOM) is accepted."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(source, f"not UTF-8 text (byte {err.start} is {data[err.start]:#04x})") from None


# `<!ENTITY` as it appears in every encoding expat reads: expat takes UTF-16 (by BOM or
# declaration), and otherwise only encodings that keep ASCII's bytes for XML's syntax.
ENTITY_MARKERS = tuple("<!ENTITY".encode(codec) for codec in ("ascii", "utf-16-le", "utf-16-be"))


def parse_xml(data: str | bytes, source: str) -> ET.Element:
    """Root element of an annotation XML; a file that does not parse raises InputError.

    Label files never declare entities, and entity declarations are how XML bombs
    (billion laughs) work, so any `<!ENTITY` is refused before parsing.
    """
    markers = ENTITY_MARKERS if isinstance(data, bytes) else ("<!ENTITY",)
    if any(marker in data for marker in markers):  # type: ignore[operator]
        raise InputError(source, "XML declares entities; annotation files never need them, refused")
    try:
        return ET.fromstring(data)
    except ET.ParseError as err:
        raise InputError(source, f"XML does not parse: {err}", line=err.position[0]) from None
    except (LookupError, ValueError) as err:  # the declared encoding is unknown, multi-byte or not a text codec
        raise InputError(source, f"XML cannot be read in the encoding its declaration names: {err}") from None


def coordinate(token: Optional[str], what: str, source: str, line: int) -> float:
    """One finite pixel coordinate from text; `what` names it in the error (e.g. 'x2')."""
    if token is None or not token.strip():
        raise InputError(source, f"{what} is missing", line)
    try:
        value = float(token)
    except ValueError:
        raise InputError(source, f"{what} {token.strip()!r} is not a number", line) from None
    if not math.isfinite(value):
        raise InputError(source, f"{what} {token.strip()!r} is not a finite number", line)
    return value


def flag(token: Optional[str], what: str, source: str, line: int) -> bool:
    """A 0/1 field such as `difficult`; missing means 0 (both DOTA_devkit and VOC readers do so)."""
    text = (token or "0").strip()
    if text not in ("0", "1"):
        raise InputError(source, f"{what} must be 0 or 1, found {text!r}", line)
    return text == "1"


def quad_problem(polygon: Quad) -> Optional[str]:
    """Why a 4-point polygon cannot be used as an object outline, or None when it can.

    Zero area (collinear or repeated corners) is checked on the convex hull first, so a
    bow-tie whose two lobes cancel is still reported as self-intersecting, not as empty.
    """
    shape = Polygon(list(zip(polygon[0::2], polygon[1::2])))
    if shape.convex_hull.area == 0:
        return "degenerate polygon: zero area (corners are collinear or repeated)"
    if not shape.is_valid:
        return f"degenerate polygon: self-intersecting ({explain_validity(shape)})"
    if not shape.area > 0:  # valid with a non-zero hull, but the shoelace sum cancels out in floating point
        largest = max(abs(v) for v in polygon)
        return (f"degenerate polygon: its area rounds to zero (coordinates up to {largest:g} "
                "are too large for float precision)")
    return None


def parse_objects(
    elements: list[ET.Element], parse: Callable[[ET.Element, str, int], Annotation], source: str, meta: dict[str, str]
) -> ParsedLabels:
    """Parse each XML object element (1-based index as its 'line'); a bad one becomes an issue."""
    labels = ParsedLabels(source=source, annotations=[], issues=[], meta=meta)
    for index, element in enumerate(elements, start=1):
        try:
            labels.annotations.append(parse(element, source, index))
        except InputError as err:
            labels.issues.append(InputIssue.from_error(err))
    return labels
