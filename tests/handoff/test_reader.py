"""samrs_ray/handoff/reader.py: a training loop's view of a committed dataset. The PyTorch dataset gives
the tile pixels, the label map and the instance masks that make it; Ray Data gives the same; a
small model trained on a generated dataset lowers its loss; S3 reads like a local folder."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samrs_ray.dataset import manifest
from samrs_ray.encoding.labelmap import IGNORE_ID
from samrs_ray.handoff.reader import TileDataset, tiles_dataset
from samrs_ray.job import generate
from tests.datasets import config, local_path, synthetic_scenes
from tests.seaweed import S3Server

pytestmark = pytest.mark.slow


def test_examples_hold_the_tile_its_label_map_and_the_masks_that_paint_it(sota_box_run) -> None:
    out, _ = sota_box_run
    dataset = TileDataset(str(out), instances=True)
    tiles = {t["tile_id"]: t for t in manifest.read_dataset(str(out), "tiles").to_pylist()}
    assert len(dataset) == 3 and [dataset[i]["tile_id"] for i in range(3)] == sorted(tiles)
    for example in (dataset[i] for i in range(len(dataset))):
        tile = tiles[example["tile_id"]]
        assert example["image"].shape == (3, 1024, 1024) and example["image"].dtype == torch.uint8
        pixels = np.array(Image.open(local_path(tile["image_uri"])))
        assert np.array_equal(example["image"].permute(1, 2, 0).numpy(), pixels)
        label = example["label"].numpy()
        assert np.array_equal(label, np.array(Image.open(local_path(tile["label_uri"]))))
        # the instances, painted in their order, are the label map (SAMRS's merge rule)
        assert example["masks"].shape[0] == example["classes"].shape[0] == tile["n_instances"]
        painted = np.full(label.shape, IGNORE_ID)
        for mask, class_id in zip(example["masks"].numpy(), example["classes"].tolist()):
            painted[mask] = class_id
        assert np.array_equal(painted, label)


def test_ray_data_reads_the_same_examples(sota_box_run, local_ray) -> None:
    out, _ = sota_box_run
    rows = sorted(tiles_dataset(str(out)).take_all(), key=lambda r: r["tile_id"])
    dataset = TileDataset(str(out))
    assert [r["tile_id"] for r in rows] == [dataset[i]["tile_id"] for i in range(len(dataset))]
    for row, i in zip(rows, range(len(dataset))):
        assert np.array_equal(row["label"], dataset[i]["label"].numpy())
        assert np.array_equal(row["image"], dataset[i]["image"].permute(1, 2, 0).numpy())


def test_a_model_trained_on_a_generated_dataset_lowers_its_loss(tmp_path: Path, local_ray) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    synthetic_scenes(data, 16, size=64)
    generate(config(data / "images", data / "labelTxt", out, preset_changes={"tile_size": None}), say=lambda _: None)
    classes = 16  # the sota preset's 15 classes and room to spare
    loader = torch.utils.data.DataLoader(TileDataset(str(out)), batch_size=4, shuffle=True, num_workers=1,
                                         generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, classes, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(4):
        for batch in loader:
            logits = model(batch["image"].float() / 255)
            loss = torch.nn.functional.cross_entropy(logits, batch["label"], ignore_index=IGNORE_ID)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])


def test_a_dataset_on_s3_reads_as_a_local_one(s3: S3Server, tmp_path: Path, local_ray) -> None:
    data = tmp_path / "data"
    synthetic_scenes(data, 3, size=64)
    prefix = f"reader-{uuid.uuid4().hex[:8]}"
    images, labels = s3.upload_dir(data / "images", f"{prefix}/images"), s3.upload_dir(data / "labelTxt", f"{prefix}/labels")
    out = s3.uri(f"{prefix}/out")
    generate(config(images, labels, out, storage_options=s3.storage_options, preset_changes={"tile_size": None}),
             say=lambda _: None)
    generate(config(data / "images", data / "labelTxt", tmp_path / "local", preset_changes={"tile_size": None}),
             say=lambda _: None)
    remote, local = TileDataset(out, storage_options=s3.storage_options), TileDataset(str(tmp_path / "local"))
    assert len(remote) == len(local) == 3
    for i in range(3):
        assert torch.equal(remote[i]["label"], local[i]["label"]) and torch.equal(remote[i]["image"], local[i]["image"])
