"""Hypothesis strategies for the label readers and the contract every reader's result must meet
(the scene images' are in image_strategies.py). Shared by tests/formats/test_properties.py and
bench/fuzz_readers.py, which runs from the repo root as `python -m bench.fuzz_readers` so that
`tests` imports as a package, with no sys.path edits.

Random bytes rarely get past a reader's first check, so most inputs are built with the format's
structure (DOTA lines, VOC/DIOR and FAIR1M XML trees, the real sample files) and
filled with hostile values: nan, inf, huge or negative numbers, missing fields, unicode, wrong
separators, odd XML encodings, truncation, flipped bytes.
"""

from __future__ import annotations

import copy
import math
import xml.etree.ElementTree as ET
from functools import lru_cache

from hypothesis import strategies as st
from shapely.geometry import Polygon

from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import Annotation, InputIssue, enclosing_box
from samrs_ray.inputs.formats import drop_outside_image, read_labels
from tests import SHARED

REALSAMPLES = SHARED / "data" / "realsamples"
URIS = ("s3://bucket/labels/P0001.txt", "scenes/Ünï cødé [1].xml", "/tmp/a:b/label")

# --- bytes-level mutations, for labels and images alike ---


@st.composite
def mutated(draw, data: bytes, max_steps: int = 3) -> bytes:
    """`data` after a few truncations, flipped bytes, insertions, deletions or duplications."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, max_steps))):
        op = draw(st.sampled_from(("truncate", "flip", "insert", "delete", "duplicate")))
        at = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[at:]
        elif op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 256))]
    return bytes(data)


@lru_cache(maxsize=None)
def real_labels(pattern: str) -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in sorted(REALSAMPLES.glob(pattern))) if REALSAMPLES.is_dir() else ()


@st.composite
def from_real(draw, pattern: str) -> bytes:
    """A real sample file, truncated or mutated (an empty file when shared/ is not there)."""
    files = real_labels(pattern)
    return draw(mutated(files[draw(st.integers(0, len(files) - 1))])) if files else b""


# --- text values ---


def rarely(draw, one_in: int = 8) -> bool:
    """True about once in `one_in` draws: for damage that, drawn for every field, would leave
    hardly any file intact enough to reach the checks behind it."""
    return draw(st.integers(0, one_in - 1)) == 0


SAFE = st.characters(exclude_categories=("Cs", "Cc"))  # no control characters: XML cannot hold most
ODD_NUMBERS = ("nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e-400", "0x10", "1,5",
               "1_000", "+5", "-0", "1e", ".", "-", "", " ", "١٢٣", "１２", "5e-324", "1.7976931348623157e308",
               "-1.7976931348623157e308", "9" * 400, "1e308", "1e200", "-1e200", "1e-200")
NUMBERS = st.one_of(
    st.integers(-5000, 5000).map(str),
    st.floats(-1e4, 1e4).map(lambda v: f"{v:.3f}"),
    st.floats().map(repr),  # nan, inf, -0.0, 5e-324, 1.7e308 ...
    st.integers(-10 ** 400, 10 ** 400).map(str),
    st.sampled_from(ODD_NUMBERS),
    st.text(SAFE, max_size=6),
)
NAMES = st.one_of(st.sampled_from(("plane", "small-vehicle", "golffield", "Small Car", "Expressway-Service-area")),
                  st.text(SAFE, min_size=1, max_size=12))  # leaf() makes the empty ones
FLAGS = st.one_of(*[st.sampled_from(("0", "1"))] * 3, st.sampled_from((" 1 ", "2", "-1", "true", "")),
                  st.text(SAFE, max_size=3))


@st.composite
def quad(draw) -> list[str]:
    """8 coordinate tokens: mostly a rectangle (sometimes flat, or its corners in bow-tie order)."""
    if rarely(draw, 4):
        return draw(st.lists(NUMBERS, min_size=8, max_size=8))
    x, y = draw(st.integers(-200, 5000)), draw(st.integers(-200, 5000))
    w, h = draw(st.sampled_from((0, 1, 7, 300))), draw(st.sampled_from((0, 1, 9, 200)))
    corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    if rarely(draw, 4):
        corners = draw(st.permutations(corners))
    fmt = draw(st.sampled_from(("{}", "{}.0", "{}.5")))
    return [fmt.format(v) for corner in corners for v in corner]


# --- DOTA ---

SEPARATORS = (" ", " ", "\t", "  ", ",", ", ", ";", "\u3000", "\xa0", "\x0b", "\x1c")


@st.composite
def dota_line(draw) -> str:
    kind = draw(st.sampled_from(("object", "object", "object", "header", "garbage", "blank")))
    if kind == "header":
        key = draw(st.sampled_from(("imagesource", "gsd", "GSD", " gsd ", "other")) | st.text(max_size=5))
        return f"{key}:{draw(st.text(max_size=10))}"
    if kind == "garbage":
        return draw(st.text(max_size=40))
    if kind == "blank":
        return draw(st.sampled_from(("", " ", "\t", "\x0c")))
    tokens = draw(quad()) + [draw(NAMES.map(lambda s: s if s.strip() else "plane"))]
    difficult = draw(FLAGS)
    if difficult:
        tokens.append(difficult)
    for _ in range(draw(st.integers(1, 2)) if rarely(draw, 4) else 0):  # missing or extra fields
        at = draw(st.integers(0, len(tokens)))
        if draw(st.booleans()) and at < len(tokens):
            del tokens[at]
        else:
            tokens.insert(at, draw(NUMBERS))
    return draw(st.sampled_from(SEPARATORS)).join(tokens)


def encode(draw, text: str) -> bytes:
    """Text as bytes: mostly UTF-8, sometimes with a BOM, UTF-16, or a legacy codec."""
    codecs = ("utf-8-sig", "utf-16", "utf-16-be", "latin-1", "cp1252")
    codec = draw(st.sampled_from(codecs)) if rarely(draw, 4) else "utf-8"
    return text.encode(codec, errors="xmlcharrefreplace")


@st.composite
def dota_files(draw) -> bytes:
    lines = draw(st.lists(dota_line(), max_size=8))
    text = draw(st.sampled_from(("\n", "\r\n", "\r"))).join(lines) + draw(st.sampled_from(("", "\n")))
    return draw(mutated(encode(draw, text), max_steps=1)) if rarely(draw, 4) else encode(draw, text)


DOTA = st.one_of(*[dota_files()] * 4, from_real("dota/labelTxt/*.txt"),
                 from_real("mmrotate_fixtures/main/labelTxt/*.txt"),
                 from_real("mmrotate_fixtures/1.x/dota/labelTxt/*.txt"), st.binary(max_size=200))

# --- XML: VOC/DIOR and FAIR1M trees, then serialised with odd prologs and encodings ---

# encodings a declaration may name: readable, unknown, multi-byte (expat cannot), not text codecs
DECLARED = ("utf-16", "ISO-8859-1", "cp1252", "ascii", "utf-7", "shift_jis", "utf-32", "bogus",
            "hex", "rot13", "idna", "punycode", "unicode_escape", "mbcs", "")
XML_TEXT = st.one_of(NUMBERS, st.text(SAFE, max_size=12), st.sampled_from(("]]>", "&amp;", "&#0;", "\x00")))


def leaf(draw, parent: ET.Element, tag: str, values=NUMBERS) -> None:
    """`tag` under `parent` with a value drawn from `values`; now and then missing, twice, empty
    or nested instead."""
    shape = draw(st.sampled_from(("missing", "twice", "empty", "nested"))) if rarely(draw) else "value"
    if shape == "missing":
        return
    for _ in range(2 if shape == "twice" else 1):
        element = ET.SubElement(parent, tag)
        if shape == "nested":
            ET.SubElement(element, "value").text = draw(values)
        elif shape != "empty":
            element.text = draw(values)


@st.composite
def voc_object(draw) -> ET.Element:
    obj = ET.Element("object")
    leaf(draw, obj, "name", NAMES)
    leaf(draw, obj, "difficult", FLAGS)
    kind = draw(st.sampled_from(("bndbox", "robndbox", "both", "neither")))
    if kind in ("bndbox", "both"):
        box = ET.SubElement(obj, "bndbox")
        values = draw(quad())
        for field, value in zip(("xmin", "ymin", "xmax", "ymax"), values[:2] + values[4:6]):
            leaf(draw, box, field, NUMBERS if rarely(draw) else st.just(value))
    if kind in ("robndbox", "both"):
        box = ET.SubElement(obj, "robndbox")
        values = iter(draw(quad()))
        for corner in ("left_top", "right_top", "right_bottom", "left_bottom"):
            for axis in "xy":
                leaf(draw, box, f"{axis}_{corner}", NUMBERS if rarely(draw) else st.just(next(values)))
    return obj


@st.composite
def fair1m_object(draw) -> ET.Element:
    obj = ET.Element("object")
    result = ET.SubElement(obj, "possibleresult")
    leaf(draw, result, "name", NAMES)
    points = ET.SubElement(obj, "points")
    values = draw(quad())
    texts = [f"{x},{y}" for x, y in zip(values[0::2], values[1::2])]
    texts += draw(st.sampled_from(([], [texts[0]], [texts[0] + " "], ["0,0"])))
    for text in texts:
        separator = draw(st.sampled_from((", ", ";", " ", ",,"))) if rarely(draw) else ","
        ET.SubElement(points, "point").text = draw(XML_TEXT) if rarely(draw) else text.replace(",", separator)
    return obj


@st.composite
def xml_tree(draw, fair1m: bool) -> ET.Element:
    tag = draw(st.sampled_from(("Annotation", "doc", "x:annotation"))) if rarely(draw, 16) else "annotation"
    root = ET.Element(tag)
    leaf(draw, ET.SubElement(root, "source") if fair1m else root, "filename", XML_TEXT)
    size = ET.SubElement(root, "size")
    leaf(draw, size, "width", XML_TEXT)
    leaf(draw, size, "height", XML_TEXT)
    parent = ET.SubElement(root, "objects") if fair1m else root
    for obj in draw(st.lists(fair1m_object() if fair1m else voc_object(), max_size=5)):
        parent.append(obj)
    return root


def mutate_tree(draw, root: ET.Element) -> None:
    """Delete, rename, duplicate or re-value a few elements anywhere in the tree."""
    for _ in range(draw(st.integers(0, 3)) if rarely(draw, 2) else 0):
        parents = {child: parent for parent in root.iter() for child in parent}
        if not parents:
            return
        element = draw(st.sampled_from([e for e in root.iter() if e is not root]))
        op = draw(st.sampled_from(("delete", "text", "rename", "duplicate", "child")))
        if op == "delete":
            parents[element].remove(element)
        elif op == "text":
            element.text = draw(XML_TEXT)
        elif op == "rename":
            element.tag = draw(st.sampled_from(("object", "name", "bndbox", "robndbox", "point", "x")))
        elif op == "duplicate":
            parents[element].append(copy.deepcopy(element))
        else:
            ET.SubElement(element, draw(st.sampled_from(("object", "name", "point", "junk")))).text = draw(XML_TEXT)


@st.composite
def serialised(draw, root: ET.Element) -> bytes:
    """The tree as a file: an optional declaration (any encoding name), DOCTYPE, comments."""
    body = ET.tostring(root, encoding="unicode")
    damage = draw(st.sampled_from(("declaration", "prolog", "encoding", "bytes"))) if rarely(draw, 2) else None
    declared = draw(st.sampled_from(DECLARED)) if damage == "declaration" else draw(st.sampled_from(("UTF-8", None)))
    prolog = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else ""
    if damage == "prolog":
        prolog += draw(st.sampled_from(("<!-- comment -->\n", "<!DOCTYPE annotation>\n", "<?pi data?>\n",
                                        '<!DOCTYPE annotation SYSTEM "file:///etc/passwd">\n',
                                        '<!DOCTYPE annotation [<!ENTITY e "x">]>\n')))
    data = encode(draw, body) if damage == "encoding" else (prolog + body).encode("utf-8")
    return draw(mutated(data, max_steps=1)) if damage == "bytes" else data


@st.composite
def xml_files(draw, fair1m: bool) -> bytes:
    """A generated tree, or (DIOR) the real sample's tree, mutated, then serialised."""
    real = () if fair1m else real_labels("dior/Annotations/*/*.xml")
    if real and draw(st.booleans()):
        root = ET.fromstring(real[draw(st.integers(0, len(real) - 1))])
    else:
        root = draw(xml_tree(fair1m))
    mutate_tree(draw, root)
    return draw(serialised(root))


DIOR = st.one_of(*[xml_files(False)] * 4, from_real("dior/Annotations/*/*.xml"), st.binary(max_size=200))
FAIR1M = st.one_of(*[xml_files(True)] * 4, st.binary(max_size=200))
LABELS = {"dota": DOTA, "dior": DIOR, "fair1m": FAIR1M}

# --- the contract ---


def check_error(err: InputError, uri: str) -> None:
    assert err.source == uri and str(err).startswith(uri), f"InputError does not name {uri!r}: {err}"
    assert err.reason.strip(), "InputError without a reason"


def check_annotation(a: Annotation, uri: str) -> None:
    assert a.source == uri and a.class_name.strip() and isinstance(a.difficult, bool), a
    assert all(math.isfinite(v) for v in a.hbox), f"non-finite box {a.hbox}"
    x0, y0, x1, y1 = a.hbox
    assert x1 > x0 and y1 > y0, f"empty box {a.hbox}"
    if a.polygon is not None:
        assert len(a.polygon) == 8 and all(math.isfinite(v) for v in a.polygon), f"bad polygon {a.polygon}"
        assert a.hbox == enclosing_box(a.polygon)
        shape = Polygon(list(zip(a.polygon[0::2], a.polygon[1::2])))
        assert shape.is_valid and shape.area > 0, f"polygon {a.polygon}: valid {shape.is_valid}, area {shape.area}"


def check_labels(fmt: str, data: bytes, uri: str, width: int, height: int) -> str:
    """Read `data` as `fmt` and check the result; returns the outcome ('annotations', 'issues',
    'empty' or 'InputError'). AssertionError, or any other exception, is a broken contract."""
    try:
        labels = read_labels(data, uri, fmt)
    except InputError as err:
        check_error(err, uri)
        return "InputError"
    assert labels.source == uri
    for issue in labels.issues:
        assert isinstance(issue, InputIssue) and issue.source == uri and issue.reason.strip(), issue
    for annotation in labels.annotations:
        check_annotation(annotation, uri)
    lines = [r.line for r in labels.annotations + labels.issues]
    assert all(isinstance(n, int) and n >= 1 for n in lines) and len(set(lines)) == len(lines), lines
    kept, dropped = drop_outside_image(labels.annotations, width, height)
    assert len(kept) + len(dropped) == len(labels.annotations)
    assert all(issue.source == uri and str(width) in issue.reason for issue in dropped), dropped
    return "annotations" if labels.annotations else "issues" if labels.issues else "empty"
