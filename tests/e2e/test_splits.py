"""Splits end to end: every tile carries its scene's split; moving a scene to another split
rewrites its rows and no mask; the reader serves one split."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs_ray.cli import main
from samrs_ray.dataset import manifest
from samrs_ray.handoff.reader import TileDataset
from tests.datasets import file_digests, synthetic_scenes

pytestmark = pytest.mark.slow


def generate(data: Path, out: Path, *split_args: str) -> int:
    return main(["generate", "--preset", "sota", "--model", "box", "--images", str(data / "images"),
                 "--labels", str(data / "labelTxt"), "--out", str(out), "--tile-size", "none", *split_args])


def splits_of(out: Path) -> dict[str, str]:
    return {t["tile_id"]: t["split"] for t in manifest.read_dataset(str(out), "tiles").to_pylist()}


def test_a_scene_moved_to_another_split_rewrites_rows_not_masks(tmp_path: Path, local_ray) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    synthetic_scenes(data, 6)
    (tmp_path / "val.txt").write_text("S00001\nS00002\n")
    assert generate(data, out, "--split-list", f"val={tmp_path / 'val.txt'}", "--split", "train") == 0
    assert splits_of(out) == {f"S{i:05d}": "val" if i in (1, 2) else "train" for i in range(6)}
    pngs = {k: v for k, v in file_digests(out).items() if k.endswith(".png")}

    (tmp_path / "val.txt").write_text("S00001\n")  # S00002 moves to train
    assert generate(data, out, "--split-list", f"val={tmp_path / 'val.txt'}", "--split", "train") == 0
    fs_record = manifest.read_dataset(str(out), "tiles").to_pylist()
    assert len({t["tile_id"] for t in fs_record}) == len(fs_record) == 6
    assert splits_of(out) == {f"S{i:05d}": "val" if i == 1 else "train" for i in range(6)}
    assert {k: v for k, v in file_digests(out).items() if k.endswith(".png")} == pngs  # no mask recomputed

    assert [e["tile_id"] for e in TileDataset(str(out), split="val")] == ["S00001"]
    assert len(TileDataset(str(out), split="train")) == 5


def test_without_split_options_every_scene_is_trainval(tmp_path: Path, local_ray) -> None:
    data = tmp_path / "data"
    synthetic_scenes(data, 2)
    assert generate(data, tmp_path / "out") == 0
    assert set(splits_of(tmp_path / "out").values()) == {"trainval"}
