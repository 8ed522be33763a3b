"""Listing scene images and label files (local folders and a real S3 server) and pairing them."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from samrs_ray.errors import InputError
from samrs_ray.inputs.formats import LABEL_FORMATS, read_labels
from samrs_ray.inputs.images import image_size
from samrs_ray.inputs.listing import IMAGE_SUFFIXES, ScenePair, list_sizes, pair_by_stem

DOTA_LABEL_STEMS = ["P0004", "P0770", "P1088", "P1234", "P1888", "P2598", "P2709"]


def list_files(uri: str, suffixes: tuple[str, ...], storage_options=None) -> list[str]:
    return sorted(list_sizes(uri, suffixes, storage_options))


def test_list_real_dota_folders(realsamples):
    images = list_files(str(realsamples / "dota/images"), IMAGE_SUFFIXES)
    labels = list_files(str(realsamples / "dota/labelTxt"), LABEL_FORMATS["dota"].suffixes)
    assert images == [str(realsamples / "dota/images" / f"{s}.png") for s in ("P0004", "P1888")]
    assert labels == [str(realsamples / "dota/labelTxt" / f"{s}.txt") for s in DOTA_LABEL_STEMS]


def test_listing_is_recursive(realsamples):
    images = list_files(str(realsamples / "mmrotate_fixtures"), IMAGE_SUFFIXES)
    assert [Path(p).name for p in images] == ["P2805__1024__0___0.png", "P0004__1__0___0.png"]
    assert images == sorted(images)  # '1.x/...' sorts before 'main/...'


def test_pair_real_dota_scenes(realsamples):
    images = list_files(str(realsamples / "dota/images"), IMAGE_SUFFIXES)
    labels = list_files(str(realsamples / "dota/labelTxt"), LABEL_FORMATS["dota"].suffixes)
    pairs, issues = pair_by_stem(images, labels)
    assert pairs == [
        ScenePair("P0004", images[0], str(realsamples / "dota/labelTxt/P0004.txt")),
        ScenePair("P1888", images[1], str(realsamples / "dota/labelTxt/P1888.txt")),
    ]
    # the five label-only files of SOURCES.md, each reported, none silently skipped
    assert [Path(i.source).stem for i in issues] == ["P0770", "P1088", "P1234", "P2598", "P2709"]
    assert all(i.stage == "pair" and "label file has no image" in i.reason for i in issues)


def test_pair_dior_across_folders_with_spaces(realsamples):
    images = list_files(str(realsamples / "dior"), IMAGE_SUFFIXES)
    labels = list_files(str(realsamples / "dior/Annotations"), LABEL_FORMATS["dior"].suffixes)
    pairs, issues = pair_by_stem(images, labels)
    assert issues == []
    [pair] = pairs
    assert pair.name == "00001"
    assert pair.label_uri.endswith("Oriented Bounding Boxes/00001.xml")
    assert pair.image_uri.endswith("JPEGImages-trainval/00001.jpg")


def test_suffixes_match_case_insensitively_and_filter(tmp_path):
    for name in ("a/B.PNG", "a/c.Tif", "d.jpeg", "notes.txt", "e.xml", "f.png.bak"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = list_files(str(tmp_path), IMAGE_SUFFIXES)
    assert found == [str(tmp_path / "a/B.PNG"), str(tmp_path / "a/c.Tif"), str(tmp_path / "d.jpeg")]
    assert list_files(str(tmp_path), LABEL_FORMATS["fair1m"].suffixes) == [str(tmp_path / "e.xml")]


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        list_files(str(tmp_path / "nope"), IMAGE_SUFFIXES)


def test_pairing_edge_cases():
    images = ["s3://b/img/P1.png", "s3://b/img/P2.png", "s3://b/img/a/P3.png", "s3://b/img/b/P3.tif",
              "s3://b/img/my scene.png"]
    labels = ["s3://b/lab/P1.txt", "s3://b/lab/P3.txt", "s3://b/lab/P4.txt", "s3://b/lab/my scene.txt"]
    pairs, issues = pair_by_stem(images, labels)
    assert pairs == [ScenePair("P1", "s3://b/img/P1.png", "s3://b/lab/P1.txt")]
    by_source = {i.source: i.reason for i in issues}
    assert set(by_source) == {"s3://b/img/P2.png", "s3://b/img/a/P3.png", "s3://b/img/b/P3.tif",
                              "s3://b/lab/P3.txt", "s3://b/lab/P4.txt", "s3://b/img/my scene.png",
                              "s3://b/lab/my scene.txt"}
    assert "image has no label file" in by_source["s3://b/img/P2.png"]
    assert "label file has no image" in by_source["s3://b/lab/P4.txt"]
    assert "shared by 2 images and 1 label files" in by_source["s3://b/lab/P3.txt"]
    assert "not usable in output file names" in by_source["s3://b/img/my scene.png"]
    assert all(i.stage == "pair" for i in issues)


def test_list_and_pair_on_s3(realsamples, s3):
    """On the real S3 server of conftest (signed requests): URIs come back as s3://bucket/key."""
    fs = s3.filesystem()
    uploads = {
        "dota/images/P0004.png": "dota/images/P0004.png",
        "dota/images/train/P1888.png": "dota/images/P1888.png",
        "dota/labelTxt/P0004.txt": "dota/labelTxt/P0004.txt",
        "dota/labelTxt/P1888.txt": "dota/labelTxt/P1888.txt",
        "dota/labelTxt/P0770.txt": "dota/labelTxt/P0770.txt",
    }
    for key, relative in uploads.items():  # to the test server only, never into the project
        fs.pipe_file(f"{s3.bucket}/test-inputs/{key}", (realsamples / relative).read_bytes())
    fs.invalidate_cache()
    root = s3.uri("test-inputs")
    options = s3.storage_options
    images = list_files(f"{root}/dota/images", IMAGE_SUFFIXES, storage_options=options)
    labels = list_files(f"{root}/dota/labelTxt/", LABEL_FORMATS["dota"].suffixes, storage_options=options)
    assert images == [f"{root}/dota/images/P0004.png", f"{root}/dota/images/train/P1888.png"]
    assert labels == [f"{root}/dota/labelTxt/{s}.txt" for s in ("P0004", "P0770", "P1888")]
    pairs, issues = pair_by_stem(images, labels)
    assert [p.name for p in pairs] == ["P0004", "P1888"]
    assert [(i.source, i.stage) for i in issues] == [(f"{root}/dota/labelTxt/P0770.txt", "pair")]
    # the URIs open again on their own, as a Ray worker would open them
    with fsspec.open(pairs[0].image_uri, "rb", **options) as f:
        assert image_size(f.read(), pairs[0].image_uri) == (824, 1464)
    with fsspec.open(pairs[1].label_uri, "rb", **options) as f:
        assert len(read_labels(f.read(), pairs[1].label_uri, "dota").annotations) == 64
    with pytest.raises(InputError, match="no such file or folder"):
        list_files(f"{root}/nothing-here", IMAGE_SUFFIXES, storage_options=options)
