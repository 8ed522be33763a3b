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
from samrs_ray.masks.backend import PromptBatch, TileMasks, pack_masks, unpack_masks
from samrs_ray.masks.busy import timed_predict
from samrs_ray.masks.engines import ENGINES
from samrs_ray.planning.plan import prompt_groups

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
        """Fill masks/scores/prompt_boxes of each row, or mark it failed with the reason. A tile
        whose objects ask for several prompt kinds goes to the engine once per kind."""
        images, prompts, calls = [], [], []  # calls: (row, its groups' positions in images)
        for row in rows:
            try:
                groups = prompt_groups(row, self.config.preset.prompt)
            except Exception as error:  # a prompt SAM cannot take: this tile fails, the batch goes on
                fail(row, Stage.INFER, f"cannot build prompts: {type(error).__name__}: {error}")
                continue
            pixels = tile_pixels(row["pixels"], row["height"], row["width"])
            calls.append((row, groups, list(range(len(images), len(images) + len(groups)))))
            images += [pixels] * len(groups)
            prompts += [batch for _, batch in groups]
        if not calls:
            return
        try:
            results = timed_predict(self.backend, images, prompts)
            crash_point("infer")
        except Exception:  # one bad tile must not fail its batch: retry one by one
            results = []
            for image, prompt in zip(images, prompts):
                try:
                    results.extend(timed_predict(self.backend, [image], [prompt]))
                except Exception as error:
                    results.append(error)
        for row, groups, positions in calls:
            found = [results[p] for p in positions]
            failed = next((r for r in found if isinstance(r, Exception)), None)
            if failed is not None:
                fail(row, Stage.INFER, f"mask inference failed: {type(failed).__name__}: {failed}")
                continue
            masks, scores, boxes = merged(groups, found, (row["height"], row["width"]))
            row["masks"], row["scores"], row["prompt_boxes"] = masks, scores, boxes


def merged(groups: list[tuple[list[int], PromptBatch]], results: list[TileMasks], shape: tuple[int, int]
           ) -> tuple[bytes, bytes, bytes]:
    """One tile's results of its prompt groups -> its packed masks, scores and prompt boxes, in
    object order."""
    if len(groups) == 1:
        (_, prompt), (result,) = groups[0], results
        return result.packed(), result.scores.astype(np.float32).tobytes(), prompt.boxes.astype(np.float32).tobytes()
    count = sum(len(members) for members, _ in groups)
    masks = np.zeros((count, *shape), bool)
    scores = np.zeros(count, np.float32)
    boxes = np.zeros((count, 4), np.float32)
    for (members, prompt), result in zip(groups, results):
        masks[members] = unpack_masks(result.packed(), len(members), *shape)
        scores[members] = result.scores
        boxes[members] = prompt.boxes
    return pack_masks(masks), scores.tobytes(), boxes.tobytes()
