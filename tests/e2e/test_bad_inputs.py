"""Bad input, end to end: one run over a folder holding every kind of broken file we know of,
beside good scenes. Each bad input gives a row in manifest/errors that names the file (and
line) and the problem in words; the good and the odd-but-valid scenes are processed; the
counts in the run record add up. XML bombs get a run of their own (DIOR format), and broken
checkpoints are configuration errors (exit 2) before Ray starts."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samrs_ray.dataset import manifest
from samrs_ray.job import generate
from samrs_ray.masks.checkpoint import build_tiny_sam
from tests.datasets import config

pytestmark = pytest.mark.slow
BOX = "10 10 40 10 40 40 10 40 plane 0\n"


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header that claims width x height pixels, with almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0"))
            + png_chunk(b"IEND", b""))


# (file, line or None, words the reason must hold); each is one kind of bad input
BAD = [
    ("trunc_png.png", None, "cannot decode PNG image: image file is truncated"),
    ("trunc_jpeg.jpg", None, "unreadable JPEG header"),
    ("trunc_tiff.tif", None, "cannot decode TIFF image: image file is truncated"),
    ("zero_bytes.png", None, "empty file (0 bytes)"),
    ("not_an_image.png", None, "not a PNG, JPEG, TIFF or BMP image"),
    ("bomb.png", None, "scene is 200000x200000 = 40,000,000,000 pixels, above the cap"),
    ("notutf8.txt", None, "not UTF-8 text"),
    ("badlines.txt", 2, "is not a number (the line has 9 tokens"),
    ("badlines.txt", 3, "expected 10 tokens (x1 y1 ... x4 y4 class difficult), found 11"),
    ("badlines.txt", 4, "'nan' is not a finite number"),
    ("badlines.txt", 5, "'inf' is not a finite number"),
    ("badlines.txt", 6, "zero area"),
    ("badlines.txt", 7, "self-intersecting"),
    ("badlines.txt", 8, "object lies entirely outside the 64x64 image"),
    ("badlines.txt", 9, "class 'unicorn' is not in preset sota"),
    ("dup.png", None, "scene name 'dup' is shared by 2 images and 1 label files"),
    ("dup.jpg", None, "scene name 'dup' is shared by 2 images and 1 label files"),
    ("bad name.png", None, "scene name 'bad name' is not usable in output file names"),
    ("..evil.png", None, "scene name '..evil' is not usable in output file names"),
    ("no_label.png", None, "image has no label file"),
    ("no_image.txt", None, "label file has no image"),
]
VALID_ODD = ["palette", "grey16", "rgba", "cmyk"]  # valid images: processed, not refused


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, local_ray) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("zoo")
    images, labels = root / "images", root / "labelTxt"
    images.mkdir()
    labels.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    picture = Image.fromarray(rgb)
    files = {
        "good.png": encoded(picture, "PNG"),
        "badlines.png": encoded(picture, "PNG"),
        "notutf8.png": encoded(picture, "PNG"),
        "trunc_png.png": encoded(picture, "PNG")[:300],
        "trunc_jpeg.jpg": encoded(picture, "JPEG")[:400],
        "trunc_tiff.tif": encoded(picture, "TIFF")[:500],
        "zero_bytes.png": b"",
        "not_an_image.png": b"this is text, not a PNG\n" * 10,
        "bomb.png": bomb_png(200_000, 200_000),
        "palette.png": encoded(picture.convert("P"), "PNG"),
        "grey16.png": encoded(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG"),
        "rgba.png": encoded(Image.fromarray(np.dstack([rgb, np.full((64, 64), 200, np.uint8)])), "PNG"),
        "cmyk.jpg": encoded(picture.convert("CMYK"), "JPEG"),
        "dup.png": encoded(picture, "PNG"),
        "dup.jpg": encoded(picture, "JPEG"),
        "bad name.png": encoded(picture, "PNG"),
        "..evil.png": encoded(picture, "PNG"),
        "no_label.png": encoded(picture, "PNG"),
    }
    for name, data in files.items():
        (images / name).write_bytes(data)
        stem = name.rsplit(".", 1)[0]
        if stem not in ("badlines", "notutf8", "no_label"):
            (labels / f"{stem}.txt").write_text(BOX)
    (labels / "no_image.txt").write_text(BOX)
    (labels / "notutf8.txt").write_bytes(b"10 10 40 10 40 40 10 40 pl\xe2ne 0\n")
    (labels / "badlines.txt").write_text("".join([
        BOX,                                            # 1 fine
        "10 10 40 10 40 40 10 plane 0\n",               # 2 too few fields
        "10 10 40 10 40 40 10 40 plane 0 extra\n",      # 3 too many fields
        "10 10 nan 10 40 40 10 40 plane 0\n",           # 4 NaN
        "10 10 40 10 40 inf 10 40 plane 0\n",           # 5 infinite
        "20 20 20 20 20 20 20 20 plane 0\n",            # 6 zero area
        "10 10 40 40 40 10 10 40 plane 0\n",            # 7 self-intersecting
        "500 500 540 500 540 540 500 540 plane 0\n",    # 8 wholly outside the 64x64 image
        "10 10 40 10 40 40 10 40 unicorn 0\n",          # 9 unknown class
    ]))
    record = generate(config(images, labels, root / "out", preset_changes={"tile_size": None}), say=lambda _: None)
    return root / "out", record


@pytest.mark.parametrize("name, line, words", BAD, ids=[f"{n}:{line or ''}" for n, line, _ in BAD])
def test_each_bad_input_is_an_error_row_naming_file_line_and_problem(zoo, name, line, words) -> None:
    out, _ = zoo
    errors = manifest.read_dataset(str(out), "errors").to_pylist()
    found = [e for e in errors if Path(e["source_uri"]).name == name and e["line"] == line]
    assert len(found) == 1, f"{name}:{line}: {[(Path(e['source_uri']).name, e['line']) for e in errors]}"
    assert words in found[0]["reason"], found[0]["reason"]


def test_the_rest_is_processed_and_the_counts_add_up(zoo) -> None:
    out, record = zoo
    tiles = {t["tile_id"]: t for t in manifest.read_dataset(str(out), "tiles").to_pylist()}
    assert set(tiles) == {"good", "badlines", *VALID_ODD}
    assert all(t["n_instances"] == 1 for t in tiles.values())  # badlines keeps its one good line
    c = record.counts
    errors = manifest.read_dataset(str(out), "errors").to_pylist()
    assert c["errors"] == len(errors) == len(BAD) + 3  # and the label files of 'dup', 'bad name', '..evil'
    paired = c["scenes"]  # scenes with one image and one label file
    scene_errors = [e for e in errors if e["stage"] != "pair" and e["line"] is None]
    assert paired == c["scenes_ok"] + len(scene_errors)
    object_errors = [e for e in errors if e["line"] is not None]
    assert c["objects"] == c["objects_in_tiles"] + len(object_errors)
    assert c["instances"] == c["objects_in_tiles"] == len(tiles)


XML_OBJECT = "<object><name>ship</name><robndbox><x_left_top>10</x_left_top><y_left_top>10</y_left_top>" \
             "<x_right_top>40</x_right_top><y_right_top>10</y_right_top><x_right_bottom>40</x_right_bottom>" \
             "<y_right_bottom>40</y_right_bottom><x_left_bottom>10</x_left_bottom><y_left_bottom>40</y_left_bottom>" \
             "</robndbox></object>"


def test_xml_bombs_and_external_entities_are_refused_and_the_rest_goes_on(realsamples: Path, tmp_path: Path,
                                                                           local_ray) -> None:
    dior = realsamples / "dior"
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    shutil.copy(dior / "JPEGImages-trainval" / "00001.jpg", images)
    shutil.copy(dior / "Annotations" / "Oriented Bounding Boxes" / "00001.xml", labels)
    for name in ("laughs", "external"):
        shutil.copy(dior / "JPEGImages-trainval" / "00001.jpg", images / f"{name}.jpg")
    (tmp_path / "secret.txt").write_text("must not be read")
    (labels / "laughs.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><annotation><filename>&c;</filename>' + XML_OBJECT + "</annotation>")
    (labels / "external.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY s SYSTEM "file://{tmp_path}/secret.txt">]>'
        "<annotation><filename>&s;</filename>" + XML_OBJECT + "</annotation>")
    record = generate(config(images, labels, tmp_path / "out", preset="sior"), say=lambda _: None)
    errors = {Path(e["source_uri"]).name: e["reason"] for e in manifest.read_dataset(str(tmp_path / "out"), "errors").to_pylist()}
    assert set(errors) == {"laughs.xml", "external.xml"}
    assert all("declares entities" in reason for reason in errors.values())
    assert not any("must not be read" in reason for reason in errors.values())
    assert record.counts["scenes_ok"] == 1 and record.counts["tiles"] == 1


def test_broken_checkpoints_are_configuration_errors_before_ray(realsamples: Path, tmp_path: Path) -> None:
    """A pickle carrying code (weights_only refuses it) and a checkpoint of another SAM size:
    exit 2, the file named, nothing written."""

    torch.manual_seed(0)
    state = build_tiny_sam().state_dict()
    state["payload"] = Image.new  # any global outside torch's allow-list: a pickle that calls code
    evil = tmp_path / "evil.pth"
    torch.save(state, evil)
    other = tmp_path / "tiny.pth"
    torch.save(build_tiny_sam().state_dict(), other)
    dota = realsamples / "dota"
    for checkpoint, model_type, words in ((evil, "tiny", "refused to load"), (other, "vit_b", "'tiny'")):
        out = tmp_path / f"out-{checkpoint.stem}"
        result = subprocess.run(
            [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--images", str(dota / "images"),
             "--labels", str(dota / "labelTxt"), "--out", str(out), "--model", "sam", "--model-type", model_type,
             "--checkpoint", str(checkpoint)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-2000:]
        assert str(checkpoint) in result.stderr and words in result.stderr
        assert not out.exists()
