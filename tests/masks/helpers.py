"""Helpers of the mask-engine tests: prompts from boxes, crops, randomised weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samrs_ray.inputs.formats.dota import parse_dota
from samrs_ray.masks.backend import PromptBatch

TILE = 1024


def box_prompts(boxes: np.ndarray) -> PromptBatch:
    return PromptBatch("hbox", boxes.astype(np.float32), np.full((len(boxes), 8), np.nan, np.float32))


def crop_with_boxes(image: np.ndarray, labels, y0: int) -> tuple[np.ndarray, np.ndarray]:
    """The 824-wide, TILE-high window at row y0, and the hboxes with >= 70% of their area in it."""
    tile = image[y0 : y0 + TILE]
    height, width = tile.shape[:2]
    boxes = []
    for annotation in labels.annotations:
        x0, top, x1, bottom = annotation.hbox
        clipped = np.clip([x0, top - y0, x1, bottom - y0], 0, [width, height, width, height])
        if (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) >= 0.7 * (x1 - x0) * (bottom - top):
            boxes.append(clipped)
    return tile, np.array(boxes, np.float32)


def randomise_rel_pos(model: torch.nn.Module, seed: int = 1) -> None:
    """Non-zero relative-position tables, the same for every model given the same seed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "rel_pos" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def p0004_tiles(realsamples: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two real tiles of P0004 (824x1464): rows 0-1024 and 440-1464, as a 1024/824 tiler cuts them.

    Every 4th box is kept so the per-box official loops stay fast on 2 CPU cores.
    """
    image = np.array(Image.open(realsamples / "dota/images/P0004.png").convert("RGB"))
    labels = parse_dota((realsamples / "dota/labelTxt/P0004.txt").read_bytes(), "P0004.txt")
    assert image.shape == (1464, 824, 3) and len(labels.annotations) == 107
    tiles = [crop_with_boxes(image, labels, y0) for y0 in (0, 1464 - TILE)]
    assert [len(boxes) for _, boxes in tiles] == [85, 64]
    return [(tile, boxes[::4]) for tile, boxes in tiles]
