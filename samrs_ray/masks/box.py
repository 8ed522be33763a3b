"""The box-fill baseline: each prompt's rotated polygon (or its box) filled, no model.

It is what a detection label alone says about the pixels, the baseline SAM must beat, and
the way to run the whole job without SAM weights.

Pixels are filled by geometry.fill_polygon (its docstring gives the pixel convention).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from samrs_ray.masks.backend import PromptBatch, TileMasks
from samrs_ray.planning.geometry import box_corners, fill_polygon


def check(config: object) -> str:
    """No weights to check: the box baseline's checksum is ''."""
    return ""


def build(config: object, expected_checksum: object) -> "BoxBackend":
    return BoxBackend()


class BoxBackend:
    """MaskBackend that fills each prompt's polygon (NaN row: its box); scores are all 1.0."""

    name = "box"
    model_id = "box-fill"
    checksum = ""

    def predict(self, images: Sequence[np.ndarray], prompts: Sequence[PromptBatch]) -> list[TileMasks]:
        """images[i]: (H, W, 3) uint8; prompts[i]: its N prompts -> TileMasks (N, H, W) bool, (N,) float32."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompt batches")
        return [self.fill(image.shape[0], image.shape[1], batch) for image, batch in zip(images, prompts)]

    def fill(self, height: int, width: int, batch: PromptBatch) -> TileMasks:
        masks = np.zeros((len(batch), height, width), dtype=bool)
        for i in range(len(batch)):
            polygon = batch.polygons[i]
            corners = polygon.reshape(4, 2) if np.isfinite(polygon).all() else box_corners(batch.boxes[i])
            masks[i] = fill_polygon(corners, height, width)
        return TileMasks(masks=masks, scores=np.ones(len(batch), dtype=np.float32))
