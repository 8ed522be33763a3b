"""TorchGeo trains on the geo export: the scene and its label COG, intersected, sampled at random,
give images and masks aligned pixel for pixel (a map run with the box engine: each box's pixels
are its class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchgeo")

import rasterio  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchgeo.datasets import stack_samples  # noqa: E402
from torchgeo.samplers import RandomGeoSampler  # noqa: E402

import samrs_ray  # noqa: E402
from tests.geodata import ORIGIN, PIXEL, box_in_lonlat, write_geojson, write_raster  # noqa: E402

pytestmark = pytest.mark.slow
CLASSES = ("plane", "ship")
BOXES = [("plane", (100, 100, 400, 300)), ("ship", (900, 700, 1200, 1000)), ("ship", (1250, 80, 1450, 300))]
WIDTH, HEIGHT = 1500, 1200


def truth() -> np.ndarray:
    """(HEIGHT, WIDTH): the label raster the boxes make, 255 elsewhere."""
    label = np.full((HEIGHT, WIDTH), samrs_ray.IGNORE_ID, np.int64)
    for name, (x0, y0, x1, y1) in BOXES:
        label[y0:y1, x0:x1] = CLASSES.index(name)
    return label


def test_random_samples_of_scene_and_label_cog_are_aligned_pixel_for_pixel(tmp_path: Path, local_ray) -> None:
    scenes = tmp_path / "rasters"
    scenes.mkdir()
    (tmp_path / "layers").mkdir()
    write_raster(scenes / "field.tif", WIDTH, HEIGHT, cog=True)
    write_geojson(tmp_path / "layers" / "boxes.geojson", [{"class": c, "ring": box_in_lonlat(*b)} for c, b in BOXES])
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    samrs_ray.generate(preset="custom", classes=tmp_path / "classes.txt", label_format="vector", images=scenes,
                       labels=tmp_path / "layers", out=tmp_path / "out", model="box", say=lambda _: None)
    samrs_ray.export(str(tmp_path / "out"), str(tmp_path / "geo"), "geo")

    pairs = samrs_ray.SceneRasters(scenes) & samrs_ray.LabelRasters(tmp_path / "geo")
    torch.manual_seed(0)
    size = 256
    loader = DataLoader(pairs, sampler=RandomGeoSampler(pairs, size=size, length=24), batch_size=8,
                        collate_fn=stack_samples)
    with rasterio.open(scenes / "field.tif") as scene:
        pixels = scene.read()
    label = truth()
    labelled = 0
    for batch in loader:
        assert batch["image"].shape[1:] == (3, size, size) and batch["mask"].shape[1:] == (size, size)
        assert batch["mask"].dtype == torch.int64
        for image, mask, bounds in zip(batch["image"], batch["mask"], batch["bounds"]):
            x, y = bounds[0], bounds[1]
            col, row = round((x.start - ORIGIN[0]) / PIXEL), round((ORIGIN[1] - y.stop) / PIXEL)
            window = np.s_[row:row + size, col:col + size]
            assert np.array_equal(image.numpy(), pixels[(slice(None), *window)].astype(np.float32))
            assert np.array_equal(mask.numpy(), label[window])
            labelled += int((mask != samrs_ray.IGNORE_ID).sum())
    assert labelled > 0  # the samples did cover boxes: what was compared holds classes, not only nodata
