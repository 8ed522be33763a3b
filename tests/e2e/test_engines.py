"""The mask engines end to end on a real sample (P1888, one tile, 64 boxes), each a FAKE tiny model
with random weights built from its own package's modules: switching engines on one dataset
recomputes every mask and rewrites no RGB tile, and a checkpoint of another engine stops the run
before Ray starts (exit 2), naming what it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from samrs_ray.cli import main
from samrs_ray.dataset import manifest
from samrs_ray.job import generate
from samrs_ray.masks.checkpoint import build_tiny_sam
from tests.datasets import config, local_path

pytestmark = pytest.mark.slow


def quiet(_: str) -> None:
    pass


def p1888(realsamples: Path, tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(realsamples / "dota" / "images" / "P1888.png", images / "P1888.png")
    return images, realsamples / "dota" / "labelTxt"


def tile_files(out: Path) -> dict[str, tuple[str, int]]:
    """Each file of the dataset's one tile: {column: (path, modification time in ns)}."""
    (tile,) = manifest.read_dataset(str(out), "tiles").to_pylist()
    return {c: (str(local_path(tile[c])), local_path(tile[c]).stat().st_mtime_ns)
            for c in ("image_uri", "label_uri", "color_uri")}


def test_switching_engines_recomputes_the_masks_and_rewrites_no_rgb_tile(realsamples: Path, tmp_path: Path,
                                                                        local_ray) -> None:
    images, labels = p1888(realsamples, tmp_path)
    out = tmp_path / "out"
    seen = []
    for model, changes in (("sam", {}), ("sam2", {}), ("hq-sam", {}), ("hq-sam", {"hq_token_only": True})):
        record = generate(config(images, labels, out, model=model, model_type="tiny", **changes), say=quiet)
        assert record.model["id"] == f"{model}-tiny"
        assert (record.counts["processed"], record.counts["instances"]) == (1, 64), model
        files = tile_files(out)
        if seen:
            assert files["image_uri"] == seen[-1]["image_uri"], model  # the same RGB tile file, not rewritten
            assert files["label_uri"][0] != seen[-1]["label_uri"][0], model  # new masks, a new label file
        seen.append(files)
    # the same engine and settings again: nothing to do
    again = generate(config(images, labels, out, model="hq-sam", model_type="tiny", hq_token_only=True), say=quiet)
    assert (again.counts["processed"], again.counts["skipped"]) == (0, 1)


@pytest.mark.parametrize("model", ["sam2", "hq-sam"])
def test_a_sam_checkpoint_for_another_engine_stops_before_any_work(realsamples: Path, tmp_path: Path, capsys,
                                                                  model: str) -> None:
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save(build_tiny_sam().state_dict(), checkpoint)
    images, labels = p1888(realsamples, tmp_path)
    code = main(["generate", "--preset", "sota", "--images", str(images), "--labels", str(labels),
                 "--out", str(tmp_path / "out"), "--model", model, "--model-type", "tiny",
                 "--checkpoint", str(checkpoint)])
    assert code == 2
    assert f"is a sam tiny checkpoint, not a {model} tiny one" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
