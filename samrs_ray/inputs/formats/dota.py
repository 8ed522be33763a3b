"""DOTA labelTxt: optional header lines, then one object per line.

    imagesource:GoogleEarth
    gsd:0.146343590398
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult

Coordinates are pixels, integers (DOTA_devkit) or `398.0`-style floats, CRLF or LF.
A 9-token line (no `difficult`) is read as difficult=0, as DOTA_devkit's `parse_dota_poly`
does; any other token count is an issue for that line. Header lines are recognised by their
key wherever they appear.
"""

from __future__ import annotations

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, InputIssue, ParsedLabels, enclosing_box
from samrs_ray.inputs.formats.checks import coordinate, decode_text, flag, quad_problem

HEADER_KEYS = ("imagesource", "gsd")
COORDINATE_NAMES = ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4")


def parse_dota(text: str | bytes, source: str) -> ParsedLabels:
    """All objects of one labelTxt file; bad lines become issues, the rest is kept."""
    text = decode_text(text, source)
    labels = ParsedLabels(source=source, annotations=[], issues=[], meta={})
    # split on '\n' only (not str.splitlines) so line numbers match what an editor shows
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() in HEADER_KEYS:
            labels.meta[key.strip().lower()] = value.strip()
            continue
        try:
            labels.annotations.append(parse_object_line(line, source, number))
        except InputError as err:
            labels.issues.append(InputIssue.from_error(err))
    return labels


def parse_object_line(line: str, source: str, number: int) -> Annotation:
    """One `x1 y1 ... x4 y4 class [difficult]` line; raises InputError naming the line."""
    tokens = line.split()
    if len(tokens) not in (9, 10):
        raise InputError(
            source, f"expected 10 tokens (x1 y1 ... x4 y4 class difficult), found {len(tokens)}", number
        )
    try:
        polygon = tuple(coordinate(t, n, source, number) for t, n in zip(tokens[:8], COORDINATE_NAMES))
    except InputError as err:
        if len(tokens) == 9:  # most likely a coordinate is missing, not the difficult flag
            raise InputError(source, f"{err.reason} (the line has 9 tokens, expected "
                                     "x1 y1 ... x4 y4 class difficult)", number) from None
        raise
    difficult = flag(tokens[9] if len(tokens) == 10 else None, "difficult", source, number)
    problem = quad_problem(polygon)  # type: ignore[arg-type]
    if problem:
        raise InputError(source, problem, number)
    return Annotation(
        class_name=tokens[8],
        hbox=enclosing_box(polygon),  # type: ignore[arg-type]
        polygon=polygon,  # type: ignore[arg-type]
        difficult=difficult,
        source=source,
        line=number,
    )
