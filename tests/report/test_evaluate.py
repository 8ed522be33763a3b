"""`samrs-ray evaluate`: mask IoU against iSAID PNGs and COCO json, on DOTA P0004 with the box backend."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samrs_ray.dataset import manifest, storage, versions
from samrs_ray.encoding.crops import MaskCrop
from samrs_ray.encoding.rle import decode_rle
from samrs_ray.inputs.formats import parse_dota
from samrs_ray.planning.geometry import fill_polygon
from samrs_ray.report.evaluate import evaluate, format_result, match
from samrs_ray.report.ground_truth import GtInstance, SceneTruth
from tests.datasets import isaid_ids
from tests.encoding.helpers import encode_rle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def box_run(sota_box_run) -> Path:
    return sota_box_run[0]




def filled_box_median(realsamples: Path) -> float:
    """Median IoU of P0004's filled DOTA quads (whole scene, no tiling) with their best iSAID instance,
    computed here without samrs_ray.report.evaluate."""
    path = realsamples / "dota" / "labelTxt" / "P0004.txt"
    ids = isaid_ids(realsamples)
    ious = []
    for ann in parse_dota(path.read_bytes(), str(path)).annotations:
        mask = fill_polygon(np.asarray(ann.polygon).reshape(4, 2), *ids.shape)
        values, counts = np.unique(ids[mask], return_counts=True)
        best = values[values > 0][np.argmax(counts[values > 0])]
        ious.append((mask & (ids == best)).sum() / (mask | (ids == best)).sum())
    return float(np.median(ious))






def test_match_picks_the_most_overlapped_instance() -> None:
    a = GtInstance("a", MaskCrop(0, 0, np.ones((4, 4), bool)), 16)
    b = GtInstance("b", MaskCrop(3, 0, np.ones((4, 4), bool)), 16)
    truth = SceneTruth([a, b])
    m = match(MaskCrop(2, 0, np.ones((4, 4), bool)), truth)  # 8 pixels of a, 12 of b: b wins
    assert (m.gt, m.intersection, m.union) == (1, 12, 20)
    assert match(MaskCrop(50, 50, np.ones((2, 2), bool)), truth).iou == 0.0
    assert match(None, truth).gt == -1




def test_box_backend_on_p0004_against_isaid(box_run: Path, realsamples: Path) -> None:
    result = evaluate(str(box_run), str(realsamples / "isaid"), "isaid-png")
    assert (result.scenes, result.scenes_without_gt, result.instances_without_gt) == (1, ["P1888"], 64)
    assert result.instances == 149  # P0004's 107 objects, 42 of them in both tiles
    assert (result.gt_instances, result.gt_matched, result.unmatched) == (116, 107, 0)
    assert result.class_agreement == 1.0
    direct = filled_box_median(realsamples)
    assert 0.75 < direct < 0.9
    assert result.overall.median_iou == pytest.approx(direct, abs=0.03)
    assert result.overall.share_iou50 == 1.0
    assert 0.75 < result.overall.area_weighted_iou < 0.9 and 0.75 < result.overall.mean_iou < 0.9
    assert set(result.per_class) == {"large-vehicle", "small-vehicle"}
    assert result.per_class["large-vehicle"].instances + result.per_class["small-vehicle"].instances == 149
    text = format_result(result)
    assert "large-vehicle" in text and f"{result.overall.median_iou:.3f}" in text and "P1888" in text


def shifted_copy(out: Path, dest: Path, dx: int, dy: int) -> Path:
    """The dataset's manifests with every mask moved dx, dy pixels (a deliberately wrong output)."""
    fs, root = storage.open_fs(str(out))
    record = versions.latest(fs, root)
    tiles = manifest.read_dataset(str(out), "tiles")
    rows = manifest.read_dataset(str(out), "instances").to_pylist()
    for row in rows:
        rle = row["mask_rle"]
        mask = decode_rle(rle["counts"], rle["height"], rle["width"])
        moved = np.zeros_like(mask)
        moved[dy:, dx:] = mask[:mask.shape[0] - dy, :mask.shape[1] - dx]
        row["mask_rle"] = dict(rle, counts=encode_rle(moved))
        row["area"] = int(moved.sum())
    dest_fs, dest_root = storage.open_fs(str(dest))
    name = manifest.write_shard(dest_fs, dest_root, tiles, pa.Table.from_pylist(rows, schema=manifest.INSTANCES))
    versions.commit(dest_fs, dest_root, dataclasses.replace(record, shards=[name], errors=[]))
    return dest


def test_shifted_output_scores_clearly_worse(box_run: Path, realsamples: Path, tmp_path: Path) -> None:
    good = evaluate(str(box_run), str(realsamples / "isaid"), "isaid-png")
    bad = evaluate(str(shifted_copy(box_run, tmp_path / "shifted", 5, 5)), str(realsamples / "isaid"), "isaid-png")
    assert bad.instances == good.instances
    assert bad.overall.median_iou < good.overall.median_iou - 0.25
    assert bad.overall.area_weighted_iou < good.overall.area_weighted_iou - 0.2
    assert bad.overall.share_iou50 < 0.7


def coco_json(images: list[dict], annotations: list[dict], names: list[str]) -> dict:
    for i, ann in enumerate(annotations, start=1):
        ann.setdefault("id", i)
        ann.setdefault("iscrowd", 0)
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}


def test_coco_rle_ground_truth_scores_like_the_isaid_pngs(box_run: Path, realsamples: Path, tmp_path: Path) -> None:
    """The iSAID instances written as COCO RLE (by pycocotools) give exactly the same scores."""
    ids = isaid_ids(realsamples)
    colour = np.asarray(Image.open(realsamples / "isaid" / "P0004_instance_color_RGB.png").convert("RGB"))
    names = ["Large_Vehicle", "Small_Vehicle"]
    annotations = []
    for value in np.unique(ids[ids >= 1000]):
        mask = ids == value
        r, g, b = colour[mask][0]
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        annotations.append({"image_id": 4, "category_id": 1 if (r, g, b) == (0, 127, 127) else 2,
                            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    annotations.append({"image_id": 4, "category_id": 1, "iscrowd": 1,  # crowd regions are not instances
                        "segmentation": {"size": [1464, 824], "counts": [0, 1464 * 824]}})
    gt = tmp_path / "isaid_val.json"
    images = [{"id": 4, "file_name": "images/P0004.png", "height": 1464, "width": 824}]
    gt.write_text(json.dumps(coco_json(images, annotations, names)))
    from_coco = evaluate(str(box_run), str(gt), "coco")
    from_png = evaluate(str(box_run), str(realsamples / "isaid"), "isaid-png")
    assert from_coco.overall == from_png.overall and from_coco.per_class == from_png.per_class
    assert (from_coco.gt_instances, from_coco.class_agreement) == (116, 1.0)


def test_coco_polygons_of_the_dota_boxes_give_iou_one(box_run: Path, realsamples: Path, tmp_path: Path) -> None:
    """Ground truth = the DOTA quads themselves: every instance not cut by its tile scores exactly 1,
    so the placement at the tile's x0, y0 is right to the pixel."""
    path = realsamples / "dota" / "labelTxt" / "P0004.txt"
    anns = parse_dota(path.read_bytes(), str(path)).annotations
    annotations = [{"image_id": 1, "category_id": 1, "segmentation": [list(a.polygon)]} for a in anns]
    gt = tmp_path / "quads.json"
    images = [{"id": 1, "file_name": "P0004.png", "height": 1464, "width": 824}]
    gt.write_text(json.dumps(coco_json(images, annotations, ["large-vehicle"])))
    result = evaluate(str(box_run), str(gt), "coco")
    assert result.overall.median_iou == 1.0 and result.overall.share_iou50 == 1.0
    assert result.gt_matched == 107


def test_coco_ground_truth_by_tile_id(box_run: Path, tmp_path: Path) -> None:
    """COCO images named by tile id are in tile pixels: the dataset scored against itself is perfect."""
    rows = manifest.read_dataset(str(box_run), "instances").to_pylist()
    tiles = sorted({r["tile_id"] for r in rows})
    images = [{"id": i, "file_name": f"{t}.png", "height": 1024, "width": 1024} for i, t in enumerate(tiles)]
    annotations = [{"image_id": tiles.index(r["tile_id"]), "category_id": 1 + (r["class_name"] == "small-vehicle"),
                    "segmentation": {"size": [1024, 1024], "counts": r["mask_rle"]["counts"]}} for r in rows]
    gt = tmp_path / "self.json"
    gt.write_text(json.dumps(coco_json(images, annotations, ["large-vehicle", "small-vehicle"])))
    result = evaluate(str(box_run), str(gt), "coco")
    assert (result.instances, result.scenes, result.instances_without_gt) == (213, 3, 0)
    assert result.overall.mean_iou == 1.0 and result.class_agreement == 1.0


def test_errors(box_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gt-format"):
        evaluate(str(box_run), str(tmp_path), "voc")
    with pytest.raises(FileNotFoundError, match="no ground truth"):
        evaluate(str(box_run), str(tmp_path), "isaid-png")
    with pytest.raises(FileNotFoundError, match="samrs-ray generate"):
        evaluate(str(tmp_path), str(tmp_path), "isaid-png")


def test_version_option_scores_that_version(realsamples: Path, tmp_path: Path, local_ray, capsys) -> None:
    """Version 1 uses the scenes whole, version 2 cuts 1024 tiles: P0004's 107 objects, then 149
    instances (42 objects in both of its tiles). --version picks one, the default is the latest."""
    from samrs_ray.cli import main
    from samrs_ray.job import generate
    from tests.datasets import config

    dota, out, gt = realsamples / "dota", tmp_path / "sota", str(realsamples / "isaid")
    first = generate(config(dota / "images", dota / "labelTxt", out, preset_changes={"tile_size": None}),
                     say=lambda _: None)
    second = generate(config(dota / "images", dota / "labelTxt", out), say=lambda _: None)
    assert (first.version, second.version) == (1, 2)
    capsys.readouterr()
    args = ["evaluate", "--out", str(out), "--gt", gt, "--gt-format", "isaid-png"]
    for version, record, scored in (["--version", "1"], first, 107), ([], second, 149), \
            (["--version", first.run_id], first, 107):
        assert main(args + version) == 0
        text = capsys.readouterr().out
        assert f"(run {record.run_id})" in text and f"generated instances scored: {scored} " in text
    assert evaluate(str(out), gt, "isaid-png", version=1).instances == 107
    assert main(args + ["--version", "7"]) == 1
    assert "no version '7'" in capsys.readouterr().err
