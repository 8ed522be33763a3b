"""Label readers on the real DOTA / DIOR-R samples (facts from SOURCES.md) and on synthetic edge cases."""

from __future__ import annotations

from collections import Counter

import pytest

from samrs_ray.errors import InputError
from samrs_ray.inputs.formats import drop_outside_image, read_labels
from samrs_ray.inputs.formats.dior import parse_dior
from samrs_ray.inputs.formats.dota import parse_dota
from samrs_ray.inputs.formats.fair1m import parse_fair1m
from samrs_ray.inputs.presets import PRESETS, assign_class_ids, custom_preset

DIOR_XML = "dior/Annotations/Oriented Bounding Boxes/00001.xml"

# file -> (class counts, number of difficult objects or None where SOURCES.md gives none)
DOTA_FACTS = {
    "P0004": ({"large-vehicle": 87, "small-vehicle": 20}, 34),
    "P1888": ({"large-vehicle": 50, "small-vehicle": 14}, 0),
    "P0770": ({"tennis-court": 10, "swimming-pool": 9, "baseball-diamond": 2, "ground-track-field": 1}, None),
    "P1088": ({"plane": 22, "small-vehicle": 9, "large-vehicle": 3}, None),
    "P1234": ({"storage-tank": 110, "ship": 24, "bridge": 6, "harbor": 4}, 44),
    "P2598": ({"small-vehicle": 16, "tennis-court": 4, "large-vehicle": 3, "soccer-ball-field": 2,
               "ground-track-field": 1}, None),
    "P2709": ({"storage-tank": 145, "large-vehicle": 7, "ship": 6}, 17),
}


def read_dota(realsamples, relative: str):
    data = (realsamples / relative).read_bytes()
    return data, read_labels(data, relative, "dota")


@pytest.mark.parametrize("name", sorted(DOTA_FACTS))
def test_real_dota_files_give_the_published_counts(realsamples, name):
    classes, difficult = DOTA_FACTS[name]
    _, labels = read_dota(realsamples, f"dota/labelTxt/{name}.txt")
    assert labels.issues == []
    assert Counter(a.class_name for a in labels.annotations) == classes
    if difficult is not None:
        assert sum(a.difficult for a in labels.annotations) == difficult
    for a in labels.annotations:
        xs, ys = a.polygon[0::2], a.polygon[1::2]
        assert a.hbox == (min(xs), min(ys), max(xs), max(ys))
        assert a.source == f"dota/labelTxt/{name}.txt"


def test_lf_float_and_crlf_integer_files_both_read(realsamples):
    p0004_bytes, p0004 = read_dota(realsamples, "dota/labelTxt/P0004.txt")
    p1888_bytes, p1888 = read_dota(realsamples, "dota/labelTxt/P1888.txt")
    assert b"\r\n" not in p0004_bytes and b"398.0" in p0004_bytes
    assert b"\r\n" in p1888_bytes
    assert len(p0004.annotations) == 107 and len(p1888.annotations) == 64
    # SOURCES.md: P0004 has a vertex on the right border, x = W = 824
    assert max(a.hbox[2] for a in p0004.annotations) == 824.0
    assert all(v == int(v) for a in p1888.annotations for v in a.polygon)
    assert p1888.meta.keys() == {"imagesource", "gsd"}
    assert p1888.annotations[0].line == 3 and p1888.annotations[-1].line == 66


def test_header_goes_to_meta_and_lines_count_from_the_file_start(realsamples):
    _, labels = read_dota(realsamples, "dota/labelTxt/P1234.txt")
    assert labels.meta == {"imagesource": "GF", "gsd": "1"}
    assert len(labels.annotations) == 144
    first = labels.annotations[0]
    assert first.line == 3  # after imagesource: and gsd:
    assert first.polygon == (2512, 3597, 2528, 3602, 2519, 3642, 2504, 3637)
    assert first.class_name == "bridge" and not first.difficult


def test_mmrotate_fixture_reports_the_self_intersecting_line_and_keeps_the_rest(realsamples):
    _, labels = read_dota(realsamples, "mmrotate_fixtures/main/labelTxt/P0004__1__0___0.txt")
    assert [a.line for a in labels.annotations] == [1, 2, 3]
    assert [a.difficult for a in labels.annotations] == [False, False, True]
    assert len(labels.issues) == 1
    issue = labels.issues[0]
    assert issue.line == 4 and issue.stage == "read"
    assert "self-intersecting" in issue.reason
    assert str(issue).startswith("mmrotate_fixtures/main/labelTxt/P0004__1__0___0.txt:4: ")


def test_empty_label_file_has_no_objects_and_no_issue(realsamples):
    data, labels = read_dota(realsamples, "mmrotate_fixtures/main/labelTxt/P0004__1__0___1024.txt")
    assert data == b""
    assert labels.annotations == [] and labels.issues == [] and labels.meta == {}


def test_crop_fixture_coordinates_stay_in_the_crop_frame(realsamples):
    _, labels = read_dota(realsamples, "mmrotate_fixtures/1.x/dota/labelTxt/P2805__1024__0___0.txt")
    assert [a.class_name for a in labels.annotations] == ["plane"] * 4
    assert not any(a.difficult for a in labels.annotations)
    # 1024-crop frame, not the 170x170 thumbnail's
    assert 170 < max(a.hbox[2] for a in labels.annotations) <= 1024


def test_synthetic_dota_bad_lines_become_issues_and_the_rest_goes_on():
    text = "\r\n".join([
        "imagesource:GoogleEarth",                           # 1 header
        "gsd:0.5",                                           # 2 header
        "10 10 20 10 20 20 10 20 plane 0",                   # 3 ok
        "",                                                  # 4 blank
        "10 10 20 10 20 20 10 20 plane 0 extra",             # 5 too many tokens
        "10 10 20 10 20 20 10 plane 0",                      # 6 too few
        "10 10 20 10 nan 20 10 20 plane 0",                  # 7 NaN
        "10 10 20 10 20 inf 10 20 plane 0",                  # 8 inf
        "10 10 20 ten 20 20 10 20 plane 0",                  # 9 not a number
        "10 10 20 10 30 10 40 10 plane 0",                   # 10 zero area (collinear)
        "10 10 10 10 10 10 10 10 plane 0",                   # 11 zero area (one point)
        "10 10 20 20 20 10 10 20 plane 0",                   # 12 bow-tie
        "10 10 20 10 20 20 10 20 ship",                      # 13 9 tokens: difficult = 0
        "1.5 2.5 30.25 2.5 30.25 40 1.5 40 harbor 1",        # 14 ok, floats, difficult
        "10 10 20 10 20 20 10 20 ship 2",                    # 15 difficult not 0/1
        "10 10 20 10 20 20 plane 0",                         # 16 too few
    ]) + "\r\n"
    labels = parse_dota(text.encode(), "x/bad.txt")
    assert labels.meta == {"imagesource": "GoogleEarth", "gsd": "0.5"}
    assert [(a.line, a.class_name, a.difficult) for a in labels.annotations] == [
        (3, "plane", False), (13, "ship", False), (14, "harbor", True)]
    assert labels.annotations[2].hbox == (1.5, 2.5, 30.25, 40.0)
    reasons = {i.line: i.reason for i in labels.issues}
    assert sorted(reasons) == [5, 6, 7, 8, 9, 10, 11, 12, 15, 16]
    assert "found 11" in reasons[5] and "found 8" in reasons[16]
    assert reasons[6] == "y4 'plane' is not a number (the line has 9 tokens, expected x1 y1 ... x4 y4 class difficult)"
    assert "x3 'nan'" in reasons[7] and "finite" in reasons[7]
    assert "y3 'inf'" in reasons[8]
    assert "y2 'ten' is not a number" in reasons[9]
    assert "zero area" in reasons[10] and "zero area" in reasons[11]
    assert "self-intersecting" in reasons[12]
    assert "difficult must be 0 or 1" in reasons[15]
    assert all(i.source == "x/bad.txt" for i in labels.issues)


def test_counter_clockwise_quads_are_fine():
    labels = parse_dota("10 20 20 20 20 10 10 10 plane 0\n", "ccw.txt")
    assert len(labels.annotations) == 1 and labels.issues == []


def test_undecodable_label_bytes_raise_naming_the_file():
    with pytest.raises(InputError, match=r"^labels/P9\.txt: not UTF-8 text"):
        read_labels(b"10 10 20 10 \xff\xfe plane 0\n", "labels/P9.txt", "dota")


def test_unknown_label_format_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown label format 'voc'"):
        read_labels(b"", "x", "voc")


def test_real_dior_r_file(realsamples):
    data = (realsamples / DIOR_XML).read_bytes()
    labels = read_labels(data, DIOR_XML, "dior")
    assert labels.issues == []
    assert labels.meta == {"filename": "00001.jpg", "width": "800", "height": "800"}
    [golf] = labels.annotations
    assert golf.class_name == "golffield" and not golf.difficult and golf.line == 1
    assert golf.polygon == (133, 237, 684, 237, 684, 672, 133, 672)
    assert golf.hbox == (133, 237, 684, 672)
    assert labels.annotations == parse_dior(data.decode(), DIOR_XML).annotations  # str and bytes agree


DIOR_HBB = """<?xml version="1.0" encoding="UTF-8"?>
<annotation>
    <filename>11726.jpg</filename>
    <size><width>800</width><height>800</height><depth>3</depth></size>
    <object><name>Expressway-Service-area</name><difficult>0</difficult>
        <bndbox><xmin>100</xmin><ymin>120</ymin><xmax>300</xmax><ymax>330</ymax></bndbox></object>
    <object><name>vehicle</name><difficult>1</difficult>
        <bndbox><xmin>5</xmin><ymin>6</ymin><xmax>15</xmax><ymax>18</ymax></bndbox></object>
    <object><name>vehicle</name>
        <bndbox><xmin>50</xmin><ymin>60</ymin><xmax>40</xmax><ymax>70</ymax></bndbox></object>
    <object><name>ship</name><pose>Unspecified</pose></object>
    <object><name>ship</name><robndbox><x_left_top>1</x_left_top><y_left_top>1</y_left_top>
        <x_right_top>9</x_right_top><y_right_top>1</y_right_top>
        <x_right_bottom>9</x_right_bottom></robndbox></object>
    <object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>
    <object><name>dam</name>
        <bndbox><xmin>1</xmin><ymin>NaN</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>
</annotation>
"""


def test_synthetic_dior_horizontal_boxes_and_bad_objects():
    labels = read_labels(DIOR_HBB.encode(), "Annotations/11726.xml", "dior")
    assert labels.meta == {"filename": "11726.jpg", "width": "800", "height": "800"}
    first, second = labels.annotations
    assert (first.class_name, first.hbox, first.polygon, first.difficult, first.line) == (
        "Expressway-Service-area", (100, 120, 300, 330), None, False, 1)
    assert (second.class_name, second.difficult, second.line) == ("vehicle", True, 2)
    reasons = {i.line: i.reason for i in labels.issues}
    assert sorted(reasons) == [3, 4, 5, 6, 7]
    assert "degenerate box" in reasons[3]
    assert "neither <bndbox> nor <robndbox>" in reasons[4]
    assert "<y_right_bottom> is missing" in reasons[5]
    assert "no <name>" in reasons[6]
    assert "<ymin> 'NaN'" in reasons[7]
    # DIOR names are matched case-insensitively against the SIOR class list
    kept, issues = assign_class_ids(labels.annotations, PRESETS["sior"])
    assert [cid for _, cid in kept] == [6, 18] and issues == []


FAIR1M_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
  <source><filename>1234.tif</filename><origin>GF2/GF3</origin></source>
  <research><version>2.0</version><pluginname>FAIR1M</pluginname></research>
  <size><width>1000</width><height>1000</height><depth>3</depth></size>
  <objects>
    <object>
      <coordinate>pixel</coordinate><type>rectangle</type><description>None</description>
      <possibleresult><name>Small Car</name></possibleresult>
      <points><point>385.000000,633.000000</point><point>395.500000,633.000000</point>
        <point>395.500000,652.000000</point><point>385.000000,652.000000</point>
        <point>385.000000,633.000000</point></points>
    </object>
    <object>
      <possibleresult><name>Dry Cargo Ship</name></possibleresult>
      <points><point>100,100</point><point>300,150</point><point>280,230</point><point>80,180</point></points>
    </object>
    <object>
      <possibleresult><name>Boeing737</name></possibleresult>
      <points><point>1,1</point><point>9,1</point><point>9,9</point><point>1,9</point><point>2,2</point></points>
    </object>
    <object>
      <possibleresult><name>Van</name></possibleresult>
      <points><point>1,1</point><point>9,1</point><point>9,9</point></points>
    </object>
    <object>
      <possibleresult><name>Tugboat</name></possibleresult>
      <points><point>1;1</point><point>9,1</point><point>9,9</point><point>1,9</point></points>
    </object>
    <object>
      <possibleresult><name>Bus</name></possibleresult>
      <points><point>1,1</point><point>9,9</point><point>9,1</point><point>1,9</point></points>
    </object>
  </objects>
</annotation>
"""


def test_synthetic_fair1m_names_points_and_bad_objects():
    labels = read_labels(FAIR1M_XML.encode(), "train/labelXml/1234.xml", "fair1m")
    assert labels.meta == {"filename": "1234.tif", "width": "1000", "height": "1000"}
    car, ship = labels.annotations
    assert car.class_name == "Small-Car" and ship.class_name == "Dry-Cargo-Ship"
    assert car.polygon == (385, 633, 395.5, 633, 395.5, 652, 385, 652)  # closing point dropped
    assert car.hbox == (385, 633, 395.5, 652) and not car.difficult
    assert ship.polygon == (100, 100, 300, 150, 280, 230, 80, 180) and ship.hbox == (80, 100, 300, 230)
    reasons = {i.line: i.reason for i in labels.issues}
    assert sorted(reasons) == [3, 4, 5, 6]
    assert "5th does not repeat the 1st" in reasons[3]
    assert "found 3" in reasons[4]
    assert "'1;1' is not 'x,y'" in reasons[5]
    assert "self-intersecting" in reasons[6]
    kept, issues = assign_class_ids(labels.annotations, PRESETS["fast"])
    assert [cid for _, cid in kept] == [29, 15] and issues == []
    assert labels.annotations == parse_fair1m(FAIR1M_XML, "train/labelXml/1234.xml").annotations


@pytest.mark.parametrize("label_format", ["dior", "fair1m"])
def test_xml_that_does_not_parse_raises_naming_the_file(label_format):
    broken = b'<?xml version="1.0"?>\n<annotation>\n  <object><name>ship</name>\n</annotation>\n'
    with pytest.raises(InputError, match=r"^Annotations/broken\.xml:4: XML does not parse: mismatched tag") as caught:
        read_labels(broken, "Annotations/broken.xml", label_format)
    assert caught.value.line == 4


@pytest.mark.parametrize("label_format", ["dior", "fair1m"])
def test_xml_with_entity_declarations_is_refused(label_format):
    bomb = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]><annotation>&x;</annotation>'
    with pytest.raises(InputError, match="declares entities"):
        read_labels(bomb, "bomb.xml", label_format)


def test_wrong_root_element_is_a_file_error():
    with pytest.raises(InputError, match="root element is <html>"):
        read_labels(b"<html><body/></html>", "page.xml", "dior")


def test_class_ids_for_p0004_with_the_sota_preset(realsamples):
    _, labels = read_dota(realsamples, "dota/labelTxt/P0004.txt")
    kept, issues = assign_class_ids(labels.annotations, PRESETS["sota"])
    assert issues == []
    assert Counter(cid for _, cid in kept) == {0: 87, 9: 20}  # large-vehicle 0, small-vehicle 9
    assert [a for a, _ in kept] == labels.annotations  # annotation order is kept (paint order)


def test_class_ids_for_dior_with_the_sior_preset(realsamples):
    labels = read_labels((realsamples / DIOR_XML).read_bytes(), DIOR_XML, "dior")
    kept, issues = assign_class_ids(labels.annotations, PRESETS["sior"])
    assert [cid for _, cid in kept] == [9] and issues == []  # golffield


def test_a_class_missing_from_a_custom_preset_is_an_issue_per_object(realsamples):
    _, labels = read_dota(realsamples, "dota/labelTxt/P0004.txt")
    preset = custom_preset("# vehicles, but only the large ones\nlarge-vehicle\nplane\n")
    kept, issues = assign_class_ids(labels.annotations, preset)
    assert len(kept) == 87 and {cid for _, cid in kept} == {0}
    assert len(issues) == 20
    small_lines = [a.line for a in labels.annotations if a.class_name == "small-vehicle"]
    assert [i.line for i in issues] == small_lines
    assert all(i.source == "dota/labelTxt/P0004.txt" for i in issues)
    assert issues[0].reason == "class 'small-vehicle' is not in preset custom"


def test_real_objects_all_lie_in_their_image(realsamples):
    _, labels = read_dota(realsamples, "dota/labelTxt/P0004.txt")
    kept, issues = drop_outside_image(labels.annotations, 824, 1464)
    assert kept == labels.annotations and issues == []
    # the same boxes against a smaller frame: the ones right of x=400 fall outside entirely
    kept, issues = drop_outside_image(labels.annotations, 400, 1464)
    outside = [a.line for a in labels.annotations if a.hbox[0] >= 400]
    assert outside and [i.line for i in issues] == outside
    assert len(kept) + len(issues) == 107
    assert "entirely outside the 400x1464 image" in issues[0].reason


def test_outside_image_edge_cases():
    text = "\n".join([
        "-30 -30 -10 -30 -10 -10 -30 -10 plane 0",  # 1 fully outside, top-left
        "-10 10 10 10 10 20 -10 20 plane 0",        # 2 half inside: kept
        "100 10 120 10 120 20 100 20 plane 0",      # 3 starts at the right border: outside
        "60 90 110 40 160 90 110 140 plane 0",      # 4 diamond: its hbox corner is in, its area is not
    ])
    labels = parse_dota(text, "edge.txt")
    assert labels.issues == []
    kept, issues = drop_outside_image(labels.annotations, 100, 50)
    assert [a.line for a in kept] == [2]
    assert [i.line for i in issues] == [1, 3, 4]
