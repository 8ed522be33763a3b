"""The public face, as a user meets it: nothing imported but `samrs_ray` (and a Parquet reader for
the files it names), on the real DOTA samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

import samrs_ray


def test_import_is_cheap_and_every_name_of_the_face_loads() -> None:
    code = ("import sys, samrs_ray; heavy = {'ray', 'torch', 'pyarrow'} & set(sys.modules); "
            "assert not heavy, heavy; print(all(getattr(samrs_ray, n) is not None for n in samrs_ray.__all__))")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "True"
    assert {"generate", "read", "versions", "TileDataset", "tiles_dataset", "PRESETS", "ConfigError"} <= set(
        samrs_ray.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        samrs_ray.nothing_here  # noqa: B018


def test_generate_read_versions_and_tile_dataset_through_the_face(realsamples: Path, tmp_path: Path,
                                                                  local_ray) -> None:
    dota = realsamples / "dota"
    out = tmp_path / "sota"
    lines: list[str] = []
    first = samrs_ray.generate(preset="sota", images=dota / "images", labels=dota / "labelTxt", out=out,
                               model="box", split_ratio=0.5, say=lines.append)
    assert isinstance(first, samrs_ray.RunRecord) and first.version == 1
    assert any("committed" in line for line in lines)

    tiles = samrs_ray.read(str(out), "tiles")
    instances = samrs_ray.read(str(out), "instances", columns=["tile_id", "class_id", "mask_rle"])
    assert tiles.num_rows == first.counts["tiles"] > 0
    assert instances.num_rows == first.counts["instances"] > 0
    assert set(tiles.column("split").to_pylist()) <= {"train", "val"}
    assert sum(pq.read_metadata(uri).num_rows for uri in samrs_ray.table_uris(str(out), "instances")) == \
        instances.num_rows
    # the README's Hugging Face line
    hf = datasets.load_dataset("parquet", data_files=samrs_ray.table_uris(str(out), "tiles"),
                               cache_dir=str(tmp_path / "hf"))
    assert sorted(hf["train"]["tile_id"]) == sorted(tiles.column("tile_id").to_pylist())

    # an instance's mask is its tile's size, and its class one of the preset's
    size = {r["tile_id"]: (r["height"], r["width"]) for r in tiles.to_pylist()}
    row = instances.to_pylist()[0]
    mask = samrs_ray.decode_rle(row["mask_rle"]["counts"], *size[row["tile_id"]])
    assert mask.shape == size[row["tile_id"]] and mask.any()
    assert 0 <= row["class_id"] < len(samrs_ray.PRESETS["sota"].classes)

    dataset = samrs_ray.TileDataset(str(out), split="train", instances=True)
    assert len(dataset) == tiles.column("split").to_pylist().count("train")
    example = dataset[0]
    height, width = size[example["tile_id"]]
    assert example["image"].shape == (3, height, width) and example["label"].shape == (height, width)
    assert example["masks"].shape[1:] == (height, width) and len(example["classes"]) == len(example["masks"])

    # a second run is version 2; version 1 stays readable, and `versions` lists both
    second = samrs_ray.generate(preset="sota", images=str(dota / "images"), labels=str(dota / "labelTxt"),
                                out=str(out), model="box", split_ratio=0.5, say=lambda _: None)
    assert [r.version for r in samrs_ray.versions(str(out))] == [1, 2] and second.counts["processed"] == 0
    assert samrs_ray.read(str(out), "tiles", version=1).num_rows == tiles.num_rows


def test_a_misspelt_option_or_a_wrong_value_is_a_config_error(tmp_path: Path) -> None:
    given = {"preset": "sota", "images": str(tmp_path), "labels": str(tmp_path), "out": str(tmp_path / "out")}
    with pytest.raises(samrs_ray.ConfigError, match="--tile-sise"):
        samrs_ray.generate(**given, tile_sise=512)
    with pytest.raises(samrs_ray.ConfigError, match="--model: invalid choice: 'nope'"):
        samrs_ray.generate(**given, model="nope")
    with pytest.raises(samrs_ray.ConfigError, match="required: --out"):
        samrs_ray.generate(preset="sota", images=str(tmp_path), labels=str(tmp_path))
    assert not (tmp_path / "out").exists()
