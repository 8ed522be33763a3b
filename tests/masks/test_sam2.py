"""Sam2Backend gives, per box, the mask the official SAM2ImagePredictor gives (fp32, CPU), with
the predictor's defaults: multimask_output=False and its dynamic_multimask_via_stability
fall-back (the model is built as build_sam2 builds it).

The model is the FAKE tiny SAM 2 (sam2_model.TINY: a narrow Hiera, the real prompt encoder and
decoder) with seeded random weights, on two real tiles of P0004; every 4th box keeps the
official per-box loop short on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrs_ray.masks.backend import PromptBatch, unpack_masks
from samrs_ray.masks.engine_settings import EngineSettings
from samrs_ray.masks.sam2 import Sam2Backend
from samrs_ray.masks.sam2_model import build_sam2_model
from tests.masks.helpers import box_prompts, mask_iou, p0004_tiles  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def tiny2() -> torch.nn.Module:
    return build_sam2_model("tiny")


def official(model, tile: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAM2ImagePredictor.set_image, then predict(box=..., multimask_output=False) per box:
    masks (N, H, W) bool, scores (N,)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model)
    predictor.set_image(tile)
    results = [predictor.predict(box=box, multimask_output=False) for box in boxes]
    return np.stack([m[0] > 0 for m, _, _ in results]), np.array([s[0] for _, s, _ in results])


@pytest.fixture(scope="module")
def p0004_official2(tiny2, p0004_tiles):
    return [official(tiny2, tile, boxes) for tile, boxes in p0004_tiles]


@pytest.mark.parametrize("image_batch,prompt_chunk", [(1, 1), (2, 16)])
def test_masks_equal_the_official_predictor_box_by_box(tiny2, p0004_tiles, p0004_official2, image_batch,
                                                       prompt_chunk):
    backend = Sam2Backend(tiny2, "tiny", "", EngineSettings(image_batch=image_batch, prompt_chunk=prompt_chunk,
                                                             sdpa=False))
    results = backend.predict([t for t, _ in p0004_tiles], [box_prompts(b) for _, b in p0004_tiles])
    for result, (masks, scores), (tile, boxes) in zip(results, p0004_official2, p0004_tiles):
        assert result.masks.shape == (len(boxes), *tile.shape[:2]) and result.masks.any()
        ious = [mask_iou(a, b) for a, b in zip(result.masks, masks)]
        assert min(ious) >= 0.99, ious
        np.testing.assert_allclose(result.scores, scores, atol=1e-4)


def test_the_stability_fallback_is_what_the_predictor_does(tiny2, p0004_tiles):
    """Some of these boxes' single masks are unstable under the random weights: the predictor
    (and so the engine) then returns one of the three multimask outputs instead."""
    decoder = tiny2.sam_mask_decoder
    assert decoder.dynamic_multimask_via_stability and decoder.dynamic_multimask_stability_thresh == 0.98
    tile, boxes = p0004_tiles[0]
    backend = Sam2Backend(tiny2, "tiny", "", EngineSettings(prompt_chunk=8, sdpa=False))
    decoder.dynamic_multimask_via_stability = False
    try:
        plain = backend.predict([tile], [box_prompts(boxes)])[0]
    finally:
        decoder.dynamic_multimask_via_stability = True
    fallback = backend.predict([tile], [box_prompts(boxes)])[0]
    masks, _ = official(tiny2, tile, boxes)
    assert min(mask_iou(a, b) for a, b in zip(fallback.masks, masks)) >= 0.99
    assert not np.array_equal(plain.masks, fallback.masks)  # the fall-back changed some masks


def test_point_and_mask_prompts_and_packing(tiny2, p0004_tiles):
    tile, boxes = p0004_tiles[1]
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    points = PromptBatch("point", boxes, np.full((len(boxes), 8), np.nan, np.float32), points=centres)
    logits = np.where(np.random.default_rng(0).random((len(boxes), 256, 256)) > 0.5, 4.0, -4.0).astype(np.float32)
    masked = PromptBatch("rbox-mask", boxes, points.polygons, mask_inputs=logits)
    backend = Sam2Backend(tiny2, "tiny", "", EngineSettings(prompt_chunk=4, sdpa=False, pack=True))
    for result in backend.predict([tile, tile], [points, masked]):
        masks = unpack_masks(result.packed(), *result.shape)
        assert masks.shape == (len(boxes), *tile.shape[:2]) and result.scores.shape == (len(boxes),)


def test_sam_only_settings_are_refused(tiny2):
    with pytest.raises(ValueError, match="SAM's only"):
        Sam2Backend(tiny2, "tiny", "", EngineSettings(sdpa=True))


def test_mask_prompts_of_a_non_square_tile_are_drawn_in_sam2s_stretched_frame() -> None:
    """A square box filling a 200 x 100 tile covers all of SAM 2's 256 x 256 mask prompt."""
    from samrs_ray.masks.sam2 import stretched_mask_prompts
    from samrs_ray.planning.prompts import MASK_INSIDE

    batch = PromptBatch("rbox-mask", np.array([[0, 0, 200, 100]], np.float32), np.full((1, 8), np.nan, np.float32),
                        mask_inputs=np.zeros((1, 256, 256), np.float32))
    (mask,) = stretched_mask_prompts(batch, slice(0, 1), (100, 200))
    assert (mask == MASK_INSIDE).all()
