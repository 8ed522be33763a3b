"""HqSamBackend gives, per box, the mask segment_anything_hq's SamPredictor.predict_torch gives
(fp32, CPU), for hq_token_only False (upstream's default) and True.

The model is the FAKE tiny HQ-SAM (hq_sam_model.build_tiny_hq_sam) with seeded random weights,
on two real tiles of P0004 (every 4th box).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrs_ray.masks.engine_settings import EngineSettings
from samrs_ray.masks.hq_sam import HqSamBackend
from samrs_ray.masks.hq_sam_model import build_hq_sam, modules
from tests.masks.helpers import box_prompts, mask_iou, p0004_tiles, randomise_rel_pos  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def tiny_hq() -> torch.nn.Module:
    model = build_hq_sam("tiny")
    randomise_rel_pos(model)
    return model


def official(model, tile: np.ndarray, boxes: np.ndarray, hq_token_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """SamPredictor.set_image, then predict_torch(boxes=..., multimask_output=False) per box:
    masks (N, H, W) bool, scores (N,)."""
    modules()  # imported once without its import-time warnings
    from segment_anything_hq import SamPredictor

    predictor = SamPredictor(model)
    predictor.set_image(tile)
    masks, scores = [], []
    with torch.no_grad():
        for box in boxes:
            box = predictor.transform.apply_boxes(box[None], tile.shape[:2])
            mask, score, _ = predictor.predict_torch(None, None, boxes=torch.as_tensor(box, dtype=torch.float),
                                                     multimask_output=False, hq_token_only=hq_token_only)
            masks.append(mask[0, 0].numpy())
            scores.append(float(score[0, 0]))
    return np.stack(masks), np.array(scores, np.float32)


@pytest.mark.parametrize("hq_token_only", [False, True])
def test_masks_equal_the_official_predictor_box_by_box(tiny_hq, p0004_tiles, hq_token_only):
    backend = HqSamBackend(tiny_hq, "tiny", "", EngineSettings(image_batch=2, prompt_chunk=16, sdpa=False),
                           hq_token_only=hq_token_only)
    results = backend.predict([t for t, _ in p0004_tiles], [box_prompts(b) for _, b in p0004_tiles])
    for result, (tile, boxes) in zip(results, p0004_tiles):
        masks, scores = official(tiny_hq, tile, boxes, hq_token_only)
        assert result.masks.shape == (len(boxes), *tile.shape[:2]) and result.masks.any()
        ious = [mask_iou(a, b) for a, b in zip(result.masks, masks)]
        assert min(ious) >= 0.99, ious
        np.testing.assert_allclose(result.scores, scores, atol=1e-4)


def test_hq_token_only_changes_the_masks(tiny_hq, p0004_tiles):
    tile, boxes = p0004_tiles[0]
    settings = EngineSettings(prompt_chunk=8, sdpa=False)
    both = HqSamBackend(tiny_hq, "tiny", "", settings).predict([tile], [box_prompts(boxes)])[0]
    alone = HqSamBackend(tiny_hq, "tiny", "", settings, hq_token_only=True).predict([tile], [box_prompts(boxes)])[0]
    assert not np.array_equal(both.masks, alone.masks)
    assert HqSamBackend(tiny_hq, "tiny", "", settings).model_id == "hq-sam-tiny"
