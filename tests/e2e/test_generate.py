"""`samrs-ray generate` end to end on a local Ray: real samples with the box backend and a
tiny SAM, a mix of broken inputs, and incremental reruns."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samrs_ray.cli import main
from samrs_ray.cli.commands import format_runs
from samrs_ray.dataset import manifest, versions
from samrs_ray.encoding.rle import decode_rle
from samrs_ray.inputs.formats import read_labels
from samrs_ray.inputs.presets import IGNORE_ID, PRESETS
from samrs_ray.job import generate
from samrs_ray.planning.tiling import objects_in_window, plan_windows, tile_id
from tests.datasets import config, dataset_rows, delta_agrees, file_digests, local_path, synthetic_scenes, write_scene

pytestmark = pytest.mark.slow
SOTA = PRESETS["sota"]


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def box_run(sota_box_run, realsamples: Path):
    out, record = sota_box_run
    return out, record, realsamples / "dota"


def expected_tiles(dota: Path) -> dict[str, list[str]]:
    """Class names per tile, computed straight from the label files with the tiling functions."""
    expected = {}
    for scene in ("P0004", "P1888"):
        width, height = Image.open(dota / "images" / f"{scene}.png").size
        anns = read_labels((dota / "labelTxt" / f"{scene}.txt").read_bytes(), scene, "dota").annotations
        for window in plan_windows(width, height, 1024, 200):
            kept = objects_in_window(anns, window, 0.7)
            if kept:
                expected[tile_id(scene, 1024, window)] = [a.class_name for _, a in kept]
    return expected


def test_counts_add_up_on_the_real_samples(box_run) -> None:
    out, record, dota = box_run
    c = record.counts
    # P0004 (824x1464: two windows) and P1888 have images; five label files have none.
    assert (c["scenes"], c["scenes_ok"], c["tiles"], c["processed"], c["skipped"], c["failed"]) == (2, 2, 3, 3, 0, 0)
    assert c["objects"] == 107 + 64 == c["objects_in_tiles"]
    assert c["errors"] == 5
    errors = manifest.read_dataset(str(out), "errors").to_pylist()
    assert sorted(Path(e["source_uri"]).name for e in errors) == ["P0770.txt", "P1088.txt", "P1234.txt", "P2598.txt", "P2709.txt"]
    assert all(e["stage"] == "pair" and "has no image" in e["reason"] for e in errors)
    saved = json.loads((out / "_run.json").read_text())
    assert saved["model"] == {"id": "box-fill", "type": "", "checksum": ""}
    assert (out / "_versions" / f"{record.version:08d}.json").read_bytes() == (out / "_run.json").read_bytes()


def test_instances_match_the_annotations_tile_by_tile(box_run) -> None:
    out, record, dota = box_run
    expected = expected_tiles(dota)
    tiles = manifest.read_dataset(str(out), "tiles").to_pylist()
    instances = manifest.read_dataset(str(out), "instances").to_pylist()
    assert sorted(t["tile_id"] for t in tiles) == sorted(expected)
    by_tile: dict[str, list[dict]] = {}
    for row in sorted(instances, key=lambda r: (r["tile_id"], r["instance_id"])):
        by_tile.setdefault(row["tile_id"], []).append(row)
    for tile in tiles:
        rows = by_tile[tile["tile_id"]]
        assert [r["class_name"] for r in rows] == expected[tile["tile_id"]]
        assert tile["n_instances"] == len(rows)
        assert [r["instance_id"] for r in rows] == list(range(len(rows)))
    # every object of P0004 lands in at least one tile
    p0004_lines = {r["source_line"] for r in instances if r["tile_id"].startswith("P0004")}
    assert len(p0004_lines) == 107


def test_label_pngs_hold_the_masks_painted_in_annotation_order(box_run) -> None:
    out, record, dota = box_run
    instances = manifest.read_dataset(str(out), "instances").to_pylist()
    for tile in manifest.read_dataset(str(out), "tiles").to_pylist():
        label = np.array(Image.open(local_path(tile["label_uri"])))
        assert label.shape == (1024, 1024) and label.dtype == np.uint8
        assert set(np.unique(label)) <= set(range(len(SOTA.classes))) | {IGNORE_ID}
        painted = np.full(label.shape, IGNORE_ID, np.uint8)
        rows = sorted((r for r in instances if r["tile_id"] == tile["tile_id"]), key=lambda r: r["instance_id"])
        for row in rows:
            rle = row["mask_rle"]
            mask = decode_rle(rle["counts"], rle["height"], rle["width"])
            theirs = coco_mask.decode({"size": [rle["height"], rle["width"]], "counts": rle["counts"].encode()})
            assert np.array_equal(mask, theirs.astype(bool))
            assert mask.sum() == row["area"] > 0
            painted[mask] = row["class_id"]
        assert np.array_equal(painted, label)
        colour = Image.open(local_path(tile["color_uri"]))
        assert colour.mode == "P" and colour.size == (1024, 1024)
        pixels = Image.open(local_path(tile["image_uri"]))
        assert pixels.size == (1024, 1024) and pixels.mode == "RGB"


def test_tiny_sam_run(realsamples: Path, tmp_path: Path, local_ray) -> None:
    """The SAM path through the actor pool (tiny SAM, random weights: a FAKE model, but the real
    segment_anything modules): every box gets a mask row and the label map agrees with them."""
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(realsamples / "dota" / "images" / "P1888.png", images / "P1888.png")
    labels = realsamples / "dota" / "labelTxt"
    out = tmp_path / "out"
    record = generate(config(images, labels, out, model="sam", model_type="tiny"), say=quiet)
    assert (record.counts["tiles"], record.counts["instances"]) == (1, 64)
    assert record.model["id"] == "sam-tiny"
    rows = dataset_rows(str(out), "instances")
    assert Counter(r["class_name"] for r in rows) == {"large-vehicle": 50, "small-vehicle": 14}
    assert all(np.isfinite(r["predicted_iou"]) and r["prompt_type"] == "hbox" for r in rows)
    (tile,) = manifest.read_dataset(str(out), "tiles").to_pylist()
    label = np.array(Image.open(local_path(tile["label_uri"])))
    painted = np.full(label.shape, IGNORE_ID, np.uint8)
    for r in rows:
        painted[decode_rle(r["mask_rle"]["counts"], 1024, 1024)] = r["class_id"]
    assert np.array_equal(painted, label)


def test_broken_inputs_are_quarantined_and_counted(realsamples: Path, tmp_path: Path, local_ray) -> None:
    data = tmp_path / "data"
    write_scene(data, "good", (300, 200), [("small-vehicle", 10, 10, 40, 30), ("plane", 100, 50, 180, 120)])
    # a truncated PNG
    write_scene(data, "truncated", (300, 200), [("ship", 10, 10, 40, 30)])
    png = (data / "images" / "truncated.png").read_bytes()
    (data / "images" / "truncated.png").write_bytes(png[: len(png) // 3])
    # bad lines among good ones
    write_scene(data, "badlines", (300, 200), [("ship", 10, 10, 40, 30)])
    with open(data / "labelTxt" / "badlines.txt", "a") as f:
        f.write("1 2 3 4 ship 0\n")  # wrong token count (line 2)
        f.write("10 10 nan 10 40 30 10 30 ship 0\n")  # NaN (line 3)
        f.write("10 10 40 10 40 30 10 30 unicorn 0\n")  # unknown class (line 4)
        f.write("900 900 950 900 950 950 900 950 ship 0\n")  # outside the 300x200 image (line 5)
        f.write("10 10 10 10 10 10 10 10 ship 0\n")  # zero area (line 6)
    write_scene(data, "orphanimage", (100, 100), [])
    (data / "labelTxt" / "orphanimage.txt").unlink()
    (data / "labelTxt" / "orphanlabel.txt").write_text("1 1 5 1 5 5 1 5 ship 0\n")
    (data / "images" / "notanimage.png").write_bytes(b"this is not a png")
    (data / "labelTxt" / "notanimage.txt").write_text("1 1 5 1 5 5 1 5 ship 0\n")
    out = tmp_path / "out"

    code = main(["generate", "--preset", "sota", "--images", str(data / "images"), "--labels",
                 str(data / "labelTxt"), "--out", str(out), "--model", "box", "--tile-size", "none"])
    assert code == 0
    record = versions.latest(*_fs(out))
    errors = manifest.read_dataset(str(out), "errors").to_pylist()
    where = {(Path(e["source_uri"]).name, e["line"]) for e in errors}
    assert {("truncated.png", None), ("orphanimage.png", None), ("orphanlabel.txt", None),
            ("notanimage.png", None)} <= where
    assert {("badlines.txt", n) for n in (2, 3, 4, 5, 6)} <= where
    reasons = " | ".join(e["reason"] for e in errors)
    assert "unicorn" in reasons and "outside" in reasons
    c = record.counts
    assert (c["scenes"], c["scenes_ok"], c["tiles"]) == (4, 2, 2)  # good, badlines usable
    assert c["instances"] == 3
    object_errors = [e for e in errors if e["line"] is not None]
    assert c["objects"] == c["objects_in_tiles"] + len(object_errors)
    assert c["errors"] == len(errors) == 4 + 5
    # nothing half written: no temp files, every listed file exists
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    for tile in manifest.read_dataset(str(out), "tiles").to_pylist():
        assert local_path(tile["label_uri"]).is_file()


def test_nothing_to_process_is_an_error(tmp_path: Path, local_ray) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    code = main(["generate", "--preset", "sota", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--out", str(tmp_path / "out"), "--model", "box"])
    assert code == 2
    assert not (tmp_path / "out" / "_run.json").exists()


def _fs(out: Path):
    from samrs_ray.dataset import storage

    return storage.open_fs(str(out))


def test_reruns_are_incremental(tmp_path: Path, local_ray, capsys) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    synthetic_scenes(data, 6)
    run = lambda: generate(config(data / "images", data / "labelTxt", out,  # noqa: E731
                                  preset_changes={"tile_size": None}), say=quiet)
    first = run()
    assert (first.counts["tiles"], first.counts["processed"]) == (6, 6)
    before = file_digests(out)

    second = run()
    assert (second.counts["processed"], second.counts["skipped"], second.counts["removed"]) == (0, 6, 0)
    assert file_digests(out) == before, "a no-change rerun must not change a byte of the dataset"

    # one label file edited: only its tile is recomputed
    label = data / "labelTxt" / "S00002.txt"
    label.write_text("\n".join(label.read_text().splitlines()[:2]) + "\n")
    third = run()
    assert (third.counts["processed"], third.counts["skipped"]) == (1, 5)
    assert third.changes["processed"] == ["S00002"]
    after = file_digests(out)
    assert before.items() <= after.items(), "files of the version readers may hold must not change"
    added = sorted(k for k in after.keys() - before.keys() if not k.startswith("manifest/"))
    assert [k.split(".")[0] for k in added] == ["color/S00002", "labels/S00002"]
    assert sum(1 for r in dataset_rows(str(out), "instances") if r["tile_id"] == "S00002") == 2
    delta_agrees(str(out))

    # one scene deleted: its rows and files leave the dataset
    (data / "images" / "S00003.png").unlink()
    (data / "labelTxt" / "S00003.txt").unlink()
    fourth = run()
    assert (fourth.counts["tiles"], fourth.counts["removed"], fourth.counts["processed"]) == (5, 1, 0)
    assert "S00003" not in {r["tile_id"] for r in dataset_rows(str(out), "tiles")}
    assert list(out.glob("labels/S00003.*.png"))  # the previous version, still readable, uses it
    assert "S00003" in {r["tile_id"] for r in dataset_rows(str(out), "tiles", version=third.run_id)}
    delta_agrees(str(out))
    # Polars reads the version before at its pins: the scene is there
    previous = pl.read_delta(str(out / "manifest" / "tiles"), version=third.tables["tiles"])
    assert "S00003" in previous["tile_id"].to_list() and previous.height == 6
    for version, images in ((None, 5), (third.run_id, 6), ("3", 6)):  # export-coco reads any kept version
        dest = tmp_path / f"coco-{version}.json"
        assert main(["export-coco", "--out", str(out), "--dest", str(dest)] + (["--version", version] if version else [])) == 0
        assert len(json.loads(dest.read_text())["images"]) == images
    assert main(["export-coco", "--out", str(out), "--dest", str(tmp_path / "x.json"), "--version", first.run_id]) == 1
    assert "is no longer readable" in capsys.readouterr().err

    # a setting that changes the output recomputes everything
    fifth = generate(config(data / "images", data / "labelTxt", out, preset_changes={"tile_size": None},
                            paint_order="area-desc"), say=quiet)
    assert fifth.counts["processed"] == 5
    assert not list(out.glob("*/S00003.*.png"))  # no kept version uses it any more

    fs, root = _fs(out)
    history = versions.history(fs, root)
    assert [(r.run_id, r.version) for r in history] == [(r.run_id, i) for i, r in
                                                        enumerate((first, second, third, fourth, fifth), 1)]
    assert main(["runs", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(r.run_id in printed for r in history)
    assert format_runs(history, history[-2:]).count("\n*") == 2 + 1  # 2 readable, and the legend


def test_a_rerun_reads_only_the_scenes_whose_file_versions_changed(tmp_path: Path, local_ray) -> None:
    """Unchanged scenes are taken from the scene cache by their files' versions (size, times);
    one rewritten file is read again, and here refused. (test_job_s3 counts the reads on S3.)"""
    data, out = tmp_path / "data", tmp_path / "out"
    synthetic_scenes(data, 4)
    lines: list[str] = []
    run = lambda: generate(config(data / "images", data / "labelTxt", out,  # noqa: E731
                                  preset_changes={"tile_size": None}), say=lines.append)
    first = run()
    second = run()
    # every scene as version 1 had it: nothing of the dataset is read (no scene cache, no shard)
    assert "4 scenes, all with the file versions and settings of version 1: nothing to read or compute" in lines
    assert (second.counts["processed"], second.counts["skipped"], second.counts["errors"]) == (0, 4, 0)
    assert second.counts == {**first.counts, "processed": 0, "skipped": 4}

    image = data / "images" / "S00001.png"
    image.write_bytes(bytes(image.stat().st_size))  # the same size, not a PNG any more
    third = run()
    assert "3 scenes with the same file versions as before (not read), 1 read to check" in lines
    assert (third.counts["skipped"], third.counts["errors"], third.counts["removed"]) == (3, 1, 1)
    assert [(e["source_uri"], e["stage"]) for e in dataset_rows(str(out), "errors")] == [(str(image), "read")]


def test_coco_export_loads_in_pycocotools(box_run, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    out, record, dota = box_run
    dest = tmp_path / "coco.json"
    assert main(["export-coco", "--out", str(out), "--dest", str(dest)]) == 0
    coco = COCO(str(dest))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 213
    categories = coco.loadCats(coco.getCatIds())
    assert [c["name"] for c in categories] == list(SOTA.classes)  # in label order, ids from 1
    assert [c["id"] for c in categories] == list(range(1, len(SOTA.classes) + 1))
    instances = {(r["tile_id"], r["instance_id"]): r for r in manifest.read_dataset(str(out), "instances").to_pylist()}
    by_tile = {img["id"]: img["tile_id"] for img in coco.loadImgs(coco.getImgIds())}
    for ann in coco.loadAnns(coco.getAnnIds())[:40]:
        mask = coco.annToMask(ann).astype(bool)
        matches = [r for (t, _), r in instances.items() if t == by_tile[ann["image_id"]]
                   and r["mask_rle"]["counts"] == ann["segmentation"]["counts"]]
        assert matches and mask.sum() == ann["area"] == matches[0]["area"]
        assert ann["category_id"] == matches[0]["class_id"] + 1


def test_coco_export_reads_as_coco_tools_read_it(box_run, tmp_path: Path) -> None:
    """File names are relative to the image root the export names, and each mask lands on its
    own image: torchvision's CocoDetection opens the image, the mask has its size, and the
    label map of that tile carries the mask's class under most of it."""
    from torchvision.datasets import CocoDetection

    out, record, dota = box_run
    dest = tmp_path / "coco.json"
    assert main(["export-coco", "--out", str(out), "--dest", str(dest)]) == 0
    exported = json.loads(dest.read_text())
    root = exported["info"]["image_root"]
    assert root == str(out / "tiles")
    assert all(not img["file_name"].startswith(("/", "file:")) for img in exported["images"])
    labels_by_tile = {t["tile_id"]: local_path(t["label_uri"]).name
                      for t in manifest.read_dataset(str(out), "tiles").to_pylist()}
    dataset = CocoDetection(root, str(dest))
    assert len(dataset) == 3
    for index in range(len(dataset)):
        image, targets = dataset[index]
        info = dataset.coco.loadImgs(dataset.ids[index])[0]
        assert image.size == (info["width"], info["height"])
        label = np.array(Image.open(out / "labels" / labels_by_tile[info["tile_id"]]))
        for target in targets[:20]:
            mask = dataset.coco.annToMask(target).astype(bool)
            assert mask.shape == (image.height, image.width)
            under = label[mask]
            assert (under == target["category_id"] - 1).mean() > 0.5


def test_configuration_errors_stop_before_any_work(realsamples: Path, tmp_path: Path, capsys) -> None:
    dota = realsamples / "dota"
    base = ["generate", "--preset", "sota", "--images", str(dota / "images"), "--labels", str(dota / "labelTxt")]
    bad_checkpoint = tmp_path / "sam_vit_b.pth"
    bad_checkpoint.write_bytes(b"not a checkpoint" * 100)
    cases = {
        "checkpoint": (["--out", str(tmp_path / "a"), "--model-type", "vit_b", "--checkpoint", str(bad_checkpoint)],
                       str(bad_checkpoint)),
        "images": (["--out", str(tmp_path / "b"), "--model", "box", "--images", str(tmp_path / "nowhere")],
                   "nowhere"),
        "gap": (["--out", str(tmp_path / "c"), "--model", "box", "--gap", "2000"], "--gap"),
    }
    for what, (extra, named) in cases.items():
        assert main([*base, *extra]) == 2, what
        message = capsys.readouterr().err
        assert named in message, (what, message)
        assert not list(tmp_path.glob("*/_run.json")), what
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not os.access(readonly, os.W_OK):  # root may write anywhere
            assert main([*base, "--out", str(readonly / "out"), "--model", "box"]) == 2
            assert "cannot write to --out" in capsys.readouterr().err
    finally:
        readonly.chmod(0o700)


def test_stage_modules_do_not_import_torch() -> None:
    """Every Ray worker that plans, encodes or writes shards imports samrs_ray.pipeline; torch,
    torchvision and segment_anything (~3 s of CPU per worker) belong only to the mask actor."""
    import subprocess
    import sys

    probe = ("import sys, samrs_ray.job, samrs_ray.job.stages, samrs_ray.cli, samrs_ray.config; "
             "print(sorted(m for m in ('torch', 'torchvision', 'segment_anything') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"
