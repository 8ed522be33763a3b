"""samrs_ray/report/compare.py: two versions of one dataset made by two engines (the box fill,
then the FAKE tiny SAM 2), scored against iSAID in one table."""

from __future__ import annotations

from pathlib import Path

from samrs_ray.cli import main
from samrs_ray.job import generate
from samrs_ray.report.compare import compare, format_comparison
from tests.datasets import config


def test_two_engines_in_one_table(realsamples: Path, tmp_path: Path, local_ray, capsys) -> None:
    dota, out, gt = realsamples / "dota", tmp_path / "sota", str(realsamples / "isaid")
    box = generate(config(dota / "images", dota / "labelTxt", out, model="box"), say=lambda _: None)
    sam2 = generate(config(dota / "images", dota / "labelTxt", out, model="sam2", model_type="tiny"),
                    say=lambda _: None)
    assert (box.version, sam2.version) == (1, 2)
    results = compare(str(out), gt, "isaid-png", ["1", "2"])
    assert [r.model for r in results] == ["box-fill", "sam2-tiny"]
    assert results[0].instances == results[1].instances == 149  # the same tiles and prompts
    assert 0 < results[0].overall.boundary_f <= 1 and 0 <= results[1].overall.boundary_f <= 1
    assert results[0].overall.mean_iou != results[1].overall.mean_iou
    capsys.readouterr()
    assert main(["evaluate", "--out", str(out), "--gt", gt, "--gt-format", "isaid-png",
                 "--version", "1", "--version", "2"]) == 0
    text = capsys.readouterr().out
    assert text == format_comparison(results, ["1", "2"]) + "\n"
    header, columns = text.splitlines()[2:4]
    assert "v1 box-fill" in header and "v2 sam2-tiny" in header and columns.split() == ["class"] + ["n", "mIoU", "BF"] * 2
    assert "highest mean IoU: version" in text
