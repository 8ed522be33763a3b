"""Property tests: whatever bytes a label file or a scene image holds, the readers and the image
checks give annotations, issues or an InputError naming the file, never another exception.

The strategies (tests/formats/strategies.py, image_strategies.py) build inputs with each
format's structure; bench/fuzz_readers.py runs the same ones 10,000 times per reader.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samrs_ray.errors import InputError
from samrs_ray.inputs.formats import LABEL_FORMATS, read_labels
from samrs_ray.inputs.images import check_pixel_cap
from tests.inputs.formats.image_strategies import check_image, images
from tests.inputs.formats.strategies import LABELS, URIS, check_error, check_labels

# what the libraries say about the broken files fed to them; only exceptions break the contract
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning:shapely"),
              pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")]  # 'unicode_escape' XML

# Derandomized, so a CI run is reproducible and cannot fail on an input no earlier run saw;
# the wider random search is bench/fuzz_readers.py. No example database: nothing is written
# into the work tree.
PROPERTY = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SIDES = st.integers(1, 10_000)


def test_every_label_format_has_a_strategy():
    assert LABELS.keys() == {name for name, fmt in LABEL_FORMATS.items() if fmt.per_scene}


@pytest.mark.parametrize("fmt", sorted(LABELS))
def test_reader_gives_annotations_issues_or_input_error(fmt):
    @PROPERTY
    @given(data=LABELS[fmt], uri=st.sampled_from(URIS), width=SIDES, height=SIDES)
    def check(data, uri, width, height):
        check_labels(fmt, data, uri, width, height)

    check()


@PROPERTY
@given(fmt=st.sampled_from(sorted(LABELS)), data=st.one_of(*LABELS.values()), uri=st.sampled_from(URIS))
def test_reader_given_another_formats_file(fmt, data, uri):
    check_labels(fmt, data, uri, 1024, 1024)


ENTITIES = '<!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'


@PROPERTY
@given(fmt=st.sampled_from(("dior", "fair1m")),
       codec=st.sampled_from(("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1")),
       declared=st.booleans())
def test_entity_declarations_are_refused_in_any_encoding(fmt, codec, declared):
    name = {"utf-8-sig": "utf-8", "utf-16-le": "utf-16", "utf-16-be": "utf-16"}.get(codec, codec)
    prolog = f'<?xml version="1.0" encoding="{name}"?>' if declared else ""
    text = f"{prolog}{ENTITIES}<annotation><filename>&b;</filename></annotation>"
    data = text.encode(codec)
    if codec in ("utf-16-le", "utf-16-be"):
        data = "\ufeff".encode(codec) + data  # without a BOM or declaration expat cannot tell
    with pytest.raises(InputError, match="entities") as caught:
        read_labels(data, URIS[0], fmt)
    check_error(caught.value, URIS[0])


@PROPERTY
@given(data=images(), uri=st.sampled_from(URIS), writable=st.booleans())
def test_image_checks_give_a_size_and_pixels_or_input_error(data, uri, writable):
    # a low cap keeps a mutated header from asking for a big decode; the cap itself is below
    check_image(data, uri, max_pixels=1 << 20, writable=writable)


@PROPERTY
@given(width=st.integers(1, 2 ** 32), height=st.integers(1, 2 ** 32), cap=st.integers(1, 2 ** 40))
def test_pixel_cap_refuses_exactly_the_scenes_above_it(width, height, cap):
    if width * height <= cap:
        check_pixel_cap(width, height, cap, URIS[0])
        return
    with pytest.raises(InputError, match=f"--max-pixels {width * height}") as caught:
        check_pixel_cap(width, height, cap, URIS[0])
    check_error(caught.value, URIS[0])


# --- inputs the fuzzing found, kept as plain regression tests ---


@pytest.mark.parametrize("declared", ["utf-7", "shift_jis", "bogus", "rot13", "idna", "punycode", "mbcs"])
@pytest.mark.parametrize("fmt", ["dior", "fair1m"])
def test_xml_declaring_an_unreadable_encoding_is_an_input_error(fmt, declared):
    # expat takes single-byte codecs only; Python's codec lookup raised LookupError, ValueError
    # or UnicodeError out of the reader before
    data = f'<?xml version="1.0" encoding="{declared}"?>\n<annotation>\x80</annotation>'.encode("latin-1")
    with pytest.raises(InputError, match="encoding") as caught:
        read_labels(data, URIS[1], fmt)
    check_error(caught.value, URIS[1])


def test_quad_whose_area_cancels_out_in_floating_point_is_an_issue():
    # a valid triangle (one corner repeated) with a non-zero hull, whose shoelace area is 0.0
    line = b"578 67782763866635176 2356 579 2356 579 2356 578 plane 0\n0 0 10 0 10 10 0 10 plane 0"
    labels = read_labels(line, URIS[0], "dota")
    assert [a.line for a in labels.annotations] == [2]
    assert [(i.line, i.source) for i in labels.issues] == [(1, URIS[0])]
    assert "area rounds to zero" in labels.issues[0].reason and "6.77828e+16" in labels.issues[0].reason
