"""samrs_ray/handoff/export.py: the SAMRS layout, checked against what SAMRS's code reads (its
SegmentationDataset: <root>/train.txt and valid.txt, one name per line; images/<name>.png and
gray/<name>.png; its `Generate Dataset/statistic.py`: ins/*.pkl, each a pickled list of dicts
indexed by label and summed by size), the JSON instances option, incremental reruns, and an
export to S3."""

from __future__ import annotations

import glob
import json
import os
import pickle
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samrs_ray.cli import main
from samrs_ray.dataset import manifest
from samrs_ray.inputs.presets import PRESETS
from tests.datasets import dataset_rows, local_path, synthetic_scenes
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
        instances = pickle.loads((dest / "ins" / f"{label_path.stem}.pkl").read_bytes())
        painted = np.full(label.shape, 255, np.uint8)
        for item in instances:
            assert set(item) == {"mask", "bbox", "category", "label", "size"}
            mask = coco_mask.decode({"size": item["mask"]["size"], "counts": item["mask"]["counts"].encode()})
            assert mask.sum() == item["size"] and item["category"] == "small-vehicle" and len(item["bbox"]) == 4
            painted[mask.astype(bool)] = item["label"]
        assert np.array_equal(painted, label)


def samrs_statistic(ins_dir: Path) -> tuple[Counter, Counter, int]:
    """What SAMRS's statistic.py computes, read as it reads: every ins/*.pkl loaded with
    pickle.load, per `label` the instances and pixels (`size`) of the non-empty masks; and how
    many instances the files hold in all."""
    instances, pixels, total = Counter(), Counter(), 0
    for file in glob.glob(os.path.join(str(ins_dir), "*.pkl")):
        with open(file, "rb") as f:
            image_info = pickle.load(f)
        for ins_info in image_info:
            total += 1
            if ins_info["size"] > 0:
                instances[ins_info["label"]] += 1
                pixels[ins_info["label"]] += ins_info["size"]
    return instances, pixels, total


class PlainValues(pickle.Unpickler):
    """Loads a pickle only if it names no class or function: lists, dicts, str, int, float."""

    def find_class(self, module: str, name: str):
        raise AssertionError(f"the pickle refers to {module}.{name}")


def test_samrs_statistic_counts_every_instance_of_the_dataset(sota_box_run, tmp_path: Path) -> None:
    out, _ = sota_box_run
    dest = tmp_path / "samrs"
    assert main(["export", "--out", str(out), "--format", "samrs", "--dest", str(dest)]) == 0
    rows = dataset_rows(str(out), "instances")
    tiles = {t["tile_id"]: t for t in dataset_rows(str(out), "tiles")}
    assert sorted(p.name for p in (dest / "ins").iterdir()) == sorted(f"{t}.pkl" for t in tiles)

    instances, pixels, total = samrs_statistic(dest / "ins")
    assert total == len(rows) > 0
    assert instances == Counter(r["class_id"] for r in rows if r["area"] > 0) and len(instances) > 1
    assert pixels == Counter({c: sum(r["area"] for r in rows if r["class_id"] == c) for c in instances})
    assert set(instances) <= set(range(len(PRESETS["sota"].classes)))  # statistic.py's dict keys

    for tile_id, tile in tiles.items():
        with open(dest / "ins" / f"{tile_id}.pkl", "rb") as f:
            image_info = PlainValues(f).load()
        expected = [r for r in rows if r["tile_id"] == tile_id]
        assert type(image_info) is list and len(image_info) == len(expected)
        for ins, row in zip(image_info, expected):
            assert set(ins) == {"mask", "bbox", "category", "label", "size"}
            assert type(ins["label"]) is int and type(ins["size"]) is int and type(ins["category"]) is str
            assert (ins["label"], ins["category"], ins["size"]) == (row["class_id"], row["class_name"], row["area"])
            assert type(ins["bbox"]) is list and [type(v) for v in ins["bbox"]] == [float] * 4
            assert ins["bbox"] == pytest.approx(row["prompt_box"])
            assert set(ins["mask"]) == {"size", "counts"} and type(ins["mask"]["counts"]) is str
            assert type(ins["mask"]["size"]) is list and ins["mask"]["size"] == [tile["height"], tile["width"]]
            mask = coco_mask.decode(ins["mask"])
            assert mask.shape == (tile["height"], tile["width"]) and int(mask.sum()) == ins["size"]


def test_instances_json_option_and_switching_back_and_forth(exported, tmp_path: Path) -> None:
    _, out, pkl_dest = exported
    dest = tmp_path / "samrs"

    def export(choice: str) -> None:
        assert main(["export", "--out", str(out), "--format", "samrs", "--dest", str(dest), "--instances", choice]) == 0

    def suffixes() -> set[str]:
        return {p.suffix for p in (dest / "ins").iterdir()}

    assert main(["export", "--out", str(out), "--format", "samrs", "--dest", str(pkl_dest)]) == 0
    export("json")
    assert suffixes() == {".json"}
    for file in (pkl_dest / "ins").glob("*.pkl"):
        assert json.loads((dest / "ins" / f"{file.stem}.json").read_text()) == pickle.loads(file.read_bytes())
    state = json.loads((dest / ".samrs-ray-export.json").read_text())
    assert all(f"ins/{tile}.json" in entry["files"] for tile, entry in state.items())

    pixels = {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")}
    export("pkl")
    assert suffixes() == {".pkl"}
    assert {p.name: p.read_bytes() for p in (dest / "ins").iterdir()} == \
        {p.name: p.read_bytes() for p in (pkl_dest / "ins").iterdir()}
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")} == pixels  # only the ins files changed
    export("json")
    assert suffixes() == {".json"}


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
