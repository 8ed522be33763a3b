"""samrs_ray/export.py: the SAMRS layout, checked against what SAMRS's training code reads
(its SegmentationDataset: <root>/train.txt and valid.txt, one name per line; images/<name>.png
and gray/<name>.png; its ins/ files' keys mask, bbox, category, label, size), incremental
reruns, and an export to S3."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samrs_ray import manifest
from samrs_ray.cli import main
from tests.datasets import local_path, synthetic_scenes
from tests.seaweed import S3Server

pytestmark = pytest.mark.slow


def generate(data: Path, out: Path, *extra: str) -> None:
    assert main(["generate", "--preset", "sota", "--model", "box", "--images", str(data / "images"),
                 "--labels", str(data / "labelTxt"), "--out", str(out), "--tile-size", "none", *extra]) == 0


def samrs_files(root: Path, list_name: str) -> list[tuple[Path, Path]]:
    """What SAMRS's SegmentationDataset builds from a list file: (image, label) paths."""
    names = [line.strip() for line in (root / list_name).read_text().splitlines()]
    return [(root / "images" / f"{n}.png", root / "gray" / f"{n}.png") for n in names]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, local_ray) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("export")
    data, out, dest = root / "data", root / "out", root / "samrs"
    synthetic_scenes(data, 5)
    (root / "val.txt").write_text("S00003\nS00004\n")
    generate(data, out, "--split-list", f"val={root / 'val.txt'}")
    assert main(["export", "--out", str(out), "--format", "samrs", "--dest", str(dest)]) == 0
    return data, out, dest


def test_samrs_training_code_finds_every_file_it_reads(exported) -> None:
    _, out, dest = exported
    tiles = {t["tile_id"]: t for t in manifest.read_dataset(str(out), "tiles").to_pylist()}
    train, valid = samrs_files(dest, "train.txt"), samrs_files(dest, "valid.txt")
    assert [i.stem for i, _ in train] == ["S00000", "S00001", "S00002"]  # trainval goes to train
    assert [i.stem for i, _ in valid] == ["S00003", "S00004"]
    for image_path, label_path in train + valid:
        image, label = np.array(Image.open(image_path)), np.array(Image.open(label_path))
        assert image.shape == (*label.shape, 3) and image.dtype == label.dtype == np.uint8
        source = tiles[image_path.stem]
        assert np.array_equal(label, np.array(Image.open(local_path(source["label_uri"]))))
        assert np.array_equal(image, np.array(Image.open(local_path(source["source_uri"])).convert("RGB")))
        assert (dest / "color" / label_path.name).is_file()


def test_instance_files_have_samrs_keys_and_their_masks_paint_the_label_map(exported) -> None:
    _, out, dest = exported
    for label_path in sorted((dest / "gray").glob("*.png")):
        label = np.array(Image.open(label_path))
        instances = json.loads((dest / "ins" / f"{label_path.stem}.json").read_text())
        painted = np.full(label.shape, 255, np.uint8)
        for item in instances:
            assert set(item) == {"mask", "bbox", "category", "label", "size"}
            mask = coco_mask.decode({"size": item["mask"]["size"], "counts": item["mask"]["counts"].encode()})
            assert mask.sum() == item["size"] and item["category"] == "small-vehicle" and len(item["bbox"]) == 4
            painted[mask.astype(bool)] = item["label"]
        assert np.array_equal(painted, label)


def names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.png"))


def test_mmseg_and_coco_layouts_follow_the_splits(exported, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    data, out, _ = exported
    mmseg, coco = tmp_path / "mmseg", tmp_path / "coco"
    for fmt, dest in (("mmseg", mmseg), ("coco", coco)):
        assert main(["export", "--out", str(out), "--format", fmt, "--dest", str(dest)]) == 0
    assert names(mmseg / "img_dir" / "train") == names(mmseg / "ann_dir" / "train") == ["S00000", "S00001", "S00002"]
    assert names(mmseg / "img_dir" / "val") == names(mmseg / "ann_dir" / "val") == ["S00003", "S00004"]
    for split, expected in (("train", 3), ("val", 2)):
        dataset = COCO(str(coco / f"{split}.json"))
        assert len(dataset.getImgIds()) == expected
        tiles = {img["tile_id"] for img in dataset.loadImgs(dataset.getImgIds())}
        assert {dataset.imgs[a["image_id"]]["tile_id"] for a in dataset.loadAnns(dataset.getAnnIds())} <= tiles

    # a scene moved to val moves its files, and only its files
    (tmp_path / "val.txt").write_text("S00002\nS00003\nS00004\n")
    generate(data, out, "--split-list", f"val={tmp_path / 'val.txt'}")
    kept = (mmseg / "img_dir" / "train" / "S00000.png").stat().st_mtime_ns
    assert main(["export", "--out", str(out), "--format", "mmseg", "--dest", str(mmseg)]) == 0
    assert names(mmseg / "img_dir" / "train") == names(mmseg / "ann_dir" / "train") == ["S00000", "S00001"]
    assert names(mmseg / "img_dir" / "val") == ["S00002", "S00003", "S00004"]
    assert (mmseg / "img_dir" / "train" / "S00000.png").stat().st_mtime_ns == kept


def test_a_rerun_writes_only_what_changed(exported) -> None:
    data, out, dest = exported
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")}
    label = data / "labelTxt" / "S00001.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n")
    for suffix, folder in (("png", "images"), ("txt", "labelTxt")):
        (data / folder / f"S00000.{suffix}").unlink()
    generate(data, out, "--split", "train")  # and every scene to train
    assert main(["export", "--out", str(out), "--format", "samrs", "--dest", str(dest)]) == 0
    after = {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")}
    changed = sorted(p.relative_to(dest).as_posix() for p in after if before.get(p) != after[p])
    assert changed == ["color/S00001.png", "gray/S00001.png", "images/S00001.png"]
    assert not list(dest.glob("*/S00000.*"))  # the deleted scene left the export
    assert (dest / "train.txt").read_text().split() == ["S00001", "S00002", "S00003", "S00004"]
    assert (dest / "valid.txt").read_text() == ""


def test_export_to_s3(exported, s3: S3Server) -> None:
    _, out, dest = exported
    remote = s3.uri(f"export-{uuid.uuid4().hex[:8]}")
    assert main(["export", "--out", str(out), "--format", "samrs", "--dest", remote,
                 "--storage-options", json.dumps(s3.storage_options)]) == 0
    fs = s3.filesystem()
    fs.invalidate_cache()
    root = remote.removeprefix("s3://")
    assert fs.cat_file(f"{root}/train.txt").decode() == (dest / "train.txt").read_text()
    for name in (dest / "train.txt").read_text().split():
        assert fs.cat_file(f"{root}/gray/{name}.png") == (dest / "gray" / f"{name}.png").read_bytes()
