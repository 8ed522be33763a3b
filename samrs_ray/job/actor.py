"""The mask stage: an actor that holds one mask backend (SAM on its node's GPU, or the box
baseline) and fills the masks of the rows still to compute.

torch, torchvision and segment_anything are imported only here, where a model is built or
checked: every Ray worker that plans, encodes or writes shards imports the job's other modules,
and those imports cost ~3 s of CPU per worker.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from samrs_ray.config import JobConfig
from samrs_ray.encoding.tile import tile_pixels
from samrs_ray.job.faults import crash_point
from samrs_ray.job.rows import Stage, Status, fail, indices, put_rows, row_at
from samrs_ray.job.stages import this_node
from samrs_ray.masks.busy import timed_predict
from samrs_ray.masks.engines import ENGINES
from samrs_ray.planning.plan import tile_prompts

log = logging.getLogger(__name__)


def model_checksum(config: JobConfig) -> str:
    """The engine's weights' sha256, checked before any tile is processed ('' without weights)."""
    return ENGINES[config.model].check(config)


class MaskActor:
    """Holds one mask backend (SAM loaded once per actor, on its GPU when it has one).

    `expected_checksum` is the checkpoint's sha256 as the driver found it (None: not checked); an
    actor whose copy differs refuses to start rather than file its masks under the driver's.
    """

    def __init__(self, config: JobConfig, expected_checksum: Optional[str] = None):
        self.config = config
        self.backend = ENGINES[config.model].build(config, expected_checksum)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        todo = indices(batch, Status.TODO)
        if todo:
            rows = [row_at(batch, i) for i in todo]
            self.infer(rows)
            for row in rows:
                row["mask_node"] = this_node()
            put_rows(batch, todo, rows)
        return batch

    def infer(self, rows: list[dict[str, Any]]) -> None:
        """Fill masks/scores/prompt_boxes of each row, or mark it failed with the reason."""
        images, prompts, ready = [], [], []
        for row in rows:
            try:
                prompts.append(tile_prompts(row, self.config.preset.prompt))
            except Exception as error:  # a prompt SAM cannot take: this tile fails, the batch goes on
                fail(row, Stage.INFER, f"cannot build prompts: {type(error).__name__}: {error}")
                continue
            images.append(tile_pixels(row["pixels"], row["height"], row["width"]))
            ready.append(row)
        rows = ready
        if not rows:
            return
        try:
            results = timed_predict(self.backend, images, prompts)
            crash_point("infer")
        except Exception:  # one bad tile must not fail its batch: retry one by one
            results = []
            for row, image, prompt in zip(rows, images, prompts):
                try:
                    results.extend(timed_predict(self.backend, [image], [prompt]))
                except Exception as error:
                    results.append(error)
        for row, prompt, result in zip(rows, prompts, results):
            if isinstance(result, Exception):
                fail(row, Stage.INFER, f"mask inference failed: {type(result).__name__}: {result}")
                continue
            row["masks"] = result.packed()
            row["scores"] = result.scores.astype(np.float32).tobytes()
            row["prompt_boxes"] = prompt.boxes.astype(np.float32).tobytes()
