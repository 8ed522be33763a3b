"""Helpers of the mask-engine tests: prompts from boxes, crops, randomised weights."""

from __future__ import annotations

import numpy as np
import torch

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
