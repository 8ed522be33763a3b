"""SamBackend gives, per prompt, the mask the official SamPredictor gives (fp32, CPU).

Measured on the P0004 tiles below (tiny model): with prompt_chunk=1 the masks and predicted
IoUs are bit-identical to SamPredictor, whatever image_batch is (batched image encoding gave
no difference). With prompt chunks > 1 the mask decoder's matrix products run on more rows,
MKL picks other kernels, and the logits move by ~1e-6: at most 2 boundary pixels per mask
flip (about 1 in 20 masks has one), and the predicted IoU moves by < 1e-6. The batched test
allows at most MAX_PIXELS_PER_MASK flipped pixels per mask and 1e-4 on the IoU.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry

from samrs_ray.masks.backend import PromptBatch, TileMasks, unpack_masks
from samrs_ray.masks.checkpoint import build_sam
from samrs_ray.masks.engine_settings import EngineSettings, supports_bfloat16
from samrs_ray.masks.sam import SamBackend
from samrs_ray.masks.tensors import pack_bits
from tests.masks.helpers import box_prompts, p0004_tiles  # noqa: F401  (fixture)

MAX_PIXELS_PER_MASK = 4
TILE = 1024


@pytest.fixture(scope="module")
def tiny():
    return build_sam("tiny")


def official_masks(model, tile: np.ndarray, boxes: np.ndarray) -> TileMasks:
    """What SAMRS's recipe gives: SamPredictor.set_image, then predict(box=...) per box."""
    predictor = SamPredictor(model)
    predictor.set_image(tile)
    results = [predictor.predict(box=box, multimask_output=False) for box in boxes]
    return TileMasks(np.stack([m[0] for m, _, _ in results]), np.array([s[0] for _, s, _ in results]))


@pytest.fixture(scope="module")
def p0004_official(tiny, p0004_tiles) -> list[TileMasks]:
    return [official_masks(tiny, tile, boxes) for tile, boxes in p0004_tiles]


def test_unbatched_masks_equal_the_official_predictor(tiny, p0004_tiles, p0004_official):
    backend = SamBackend(tiny, "tiny", "", EngineSettings(image_batch=1, prompt_chunk=1))
    results = backend.predict([t for t, _ in p0004_tiles], [box_prompts(b) for _, b in p0004_tiles])
    for result, official, (tile, boxes) in zip(results, p0004_official, p0004_tiles):
        assert result.masks.dtype == bool and result.masks.shape == (len(boxes), 1024, 824)
        assert result.masks.any()
        np.testing.assert_array_equal(result.masks, official.masks)
        np.testing.assert_array_equal(result.scores, official.scores)


def test_batched_masks_match_the_official_predictor_to_a_few_pixels(tiny, p0004_tiles, p0004_official):
    backend = SamBackend(tiny, "tiny", "", EngineSettings(image_batch=2, prompt_chunk=64))
    results = backend.predict([t for t, _ in p0004_tiles], [box_prompts(b) for _, b in p0004_tiles])
    for result, official in zip(results, p0004_official):
        flipped = (result.masks != official.masks).sum(axis=(1, 2))
        assert flipped.max() <= MAX_PIXELS_PER_MASK, flipped
        np.testing.assert_allclose(result.scores, official.scores, atol=1e-4)


@pytest.mark.slow
def test_full_size_vit_b_masks_equal_the_official_predictor(p0004_tiles):
    """One real tile, a handful of its boxes, SAM ViT-B architecture with random weights."""
    torch.manual_seed(0)
    model = sam_model_registry["vit_b"]()
    tile, boxes = p0004_tiles[0]
    boxes = boxes[:5]
    started = time.perf_counter()
    official = official_masks(model, tile, boxes)
    backend = SamBackend(model, "vit_b", "", EngineSettings(image_batch=1, prompt_chunk=1))
    [result] = backend.predict([tile], [box_prompts(boxes)])
    np.testing.assert_array_equal(result.masks, official.masks)
    np.testing.assert_array_equal(result.scores, official.scores)
    assert time.perf_counter() - started < 120  # keep it fit for the default run


def random_tile(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_point_mask_and_multimask_prompts_equal_the_official_predictor(tiny):
    tile = random_tile(300, 500)
    predictor = SamPredictor(tiny)
    predictor.set_image(tile)
    boxes = np.array([[20, 30, 200, 180], [250, 100, 480, 290]], np.float32)
    points = np.array([[110, 105], [365, 195]], np.float32)
    mask_inputs = np.random.default_rng(1).normal(size=(2, 256, 256)).astype(np.float32)
    base = box_prompts(boxes)
    cases = {
        "point": (PromptBatch("point", boxes, base.polygons, points=points), False,
                  [predictor.predict(point_coords=p[None], point_labels=np.array([1]), multimask_output=False)
                   for p in points]),
        "rbox-mask": (PromptBatch("rbox-mask", boxes, base.polygons, mask_inputs=mask_inputs), False,
                      [predictor.predict(mask_input=m[None], multimask_output=False) for m in mask_inputs]),
        "multimask": (base, True, [predictor.predict(box=b, multimask_output=True) for b in boxes]),
    }
    for name, (prompts, multimask, expected) in cases.items():
        backend = SamBackend(tiny, "tiny", "", EngineSettings(prompt_chunk=1, multimask=multimask))
        [result] = backend.predict([tile], [prompts])
        best = [int(np.argmax(scores)) for _, scores, _ in expected]  # one mask per prompt: the best
        np.testing.assert_array_equal(result.masks, np.stack([m[i] for (m, _, _), i in zip(expected, best)]), name)
        np.testing.assert_array_equal(result.scores, [s[i] for (_, s, _), i in zip(expected, best)], name)


def test_zero_prompts_give_empty_results_of_the_tile_shape(tiny):
    backend = SamBackend(tiny, "tiny", "sha", EngineSettings())
    empty = box_prompts(np.zeros((0, 4)))
    results = backend.predict([random_tile(200, 300), random_tile(100, 150)],
                              [empty, box_prompts(np.array([[10, 10, 90, 60]]))])
    assert results[0].masks.shape == (0, 200, 300) and results[0].masks.dtype == bool
    assert results[0].scores.shape == (0,) and results[0].scores.dtype == np.float32
    assert results[1].masks.shape == (1, 100, 150)
    assert backend.predict([], []) == []
    assert (backend.name, backend.model_id, backend.checksum) == ("sam", "sam-tiny", "sha")


class OutOfMemoryFirst(torch.nn.Module):
    """TEST DOUBLE for a GPU condition that cannot happen on this CPU: wraps a real module,
    raises torch.OutOfMemoryError on its first `failures` calls, records each call's batch size."""

    def __init__(self, module: torch.nn.Module, failures: int):
        super().__init__()
        self.module, self.failures, self.batch_sizes = module, failures, []

    def forward(self, *args, **kwargs):
        first = args[0] if args else next(iter(kwargs.values()))
        self.batch_sizes.append(len(kwargs.get("sparse_prompt_embeddings", first)))
        if self.failures > 0:
            self.failures -= 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by the test double)")
        return self.module(*args, **kwargs)


def test_out_of_memory_retries_with_half_the_batch(tiny):
    tiles = [random_tile(120, 160, seed) for seed in range(2)]
    prompts = [box_prompts(np.array([[5, 5, 60, 50], [40, 30, 150, 110], [0, 0, 160, 120]]))] * 2
    expected = SamBackend(tiny, "tiny", "", EngineSettings(image_batch=1, prompt_chunk=2)).predict(tiles, prompts)

    decoder, encoder = tiny.mask_decoder, tiny.image_encoder
    try:
        tiny.mask_decoder = OutOfMemoryFirst(decoder, failures=1)
        tiny.image_encoder = OutOfMemoryFirst(encoder, failures=1)
        tiny.image_encoder.img_size = encoder.img_size
        backend = SamBackend(tiny, "tiny", "", EngineSettings(image_batch=2, prompt_chunk=4))
        with pytest.warns(UserWarning, match="out of memory"):
            results = backend.predict(tiles, prompts)
        assert tiny.image_encoder.batch_sizes == [2, 1, 1]
        assert tiny.mask_decoder.batch_sizes == [3, 2, 1, 2, 1]  # 4 failed on 3 prompts, then chunks of 2
        assert (backend.image_batch, backend.prompt_chunk) == (1, 2)
        for result, reference in zip(results, expected):
            np.testing.assert_array_equal(result.masks, reference.masks)

        tiny.mask_decoder = OutOfMemoryFirst(decoder, failures=100)
        backend = SamBackend(tiny, "tiny", "", EngineSettings(image_batch=1, prompt_chunk=2))
        with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="even with prompt_chunk=1"):
            backend.predict(tiles[:1], prompts[:1])
    finally:
        tiny.mask_decoder, tiny.image_encoder = decoder, encoder


def test_bad_inputs_are_refused_before_any_inference(tiny):
    backend = SamBackend(tiny, "tiny", "", EngineSettings())
    with pytest.raises(ValueError, match="tile 0: boxes of the 'hbox' prompts contain NaN"):
        backend.predict([random_tile(50, 50)], [box_prompts(np.array([[1, 2, np.nan, 4]]))])
    with pytest.raises(ValueError, match=r"tile 1: expected an \(H, W, 3\) uint8 RGB image"):
        backend.predict([random_tile(50, 50), np.zeros((50, 50), np.uint8)], [box_prompts(np.zeros((0, 4)))] * 2)
    with pytest.raises(ValueError, match="'point' prompts need points"):
        backend.predict([random_tile(50, 50)], [PromptBatch("point", np.zeros((1, 4), np.float32), np.zeros((1, 8)))])
    with pytest.raises(ValueError, match="dtype must be one of"):
        EngineSettings(dtype="float16")


def test_bfloat16_runs_where_native_else_falls_back_to_float32_with_a_warning(tiny, p0004_tiles):
    tile, boxes = p0004_tiles[0]
    boxes = boxes[:2]
    fp32 = SamBackend(tiny, "tiny", "", EngineSettings()).predict([tile], [box_prompts(boxes)])[0]
    if supports_bfloat16(torch.device("cpu")):
        backend = SamBackend(tiny, "tiny", "", EngineSettings(dtype="bfloat16"))
        assert backend.dtype == torch.bfloat16
        bf16 = backend.predict([tile], [box_prompts(boxes)])[0]
        assert bf16.masks.dtype == bool and bf16.scores.dtype == np.float32
        iou = (fp32.masks & bf16.masks).sum(axis=(1, 2)) / (fp32.masks | bf16.masks).sum(axis=(1, 2))
        assert iou.min() > 0.9, iou
    else:  # this CPU (AVX2) only emulates bf16
        with pytest.warns(UserWarning, match="no native bfloat16; running SAM in float32"):
            backend = SamBackend(tiny, "tiny", "", EngineSettings(dtype="bfloat16"))
        assert backend.dtype == torch.float32
        np.testing.assert_array_equal(backend.predict([tile], [box_prompts(boxes)])[0].masks, fp32.masks)


def test_packed_masks_are_the_same_masks_bit_packed(tiny, p0004_tiles):
    """The Ray job asks for packed masks (pack=True): the same bits np.packbits gives, scores unchanged."""
    tiles, prompts = [t for t, _ in p0004_tiles], [box_prompts(b) for _, b in p0004_tiles]
    plain = SamBackend(tiny, "tiny", "", EngineSettings(prompt_chunk=4)).predict(tiles, prompts)
    packed = SamBackend(tiny, "tiny", "", EngineSettings(prompt_chunk=4, pack=True)).predict(tiles, prompts)
    for p, q, (tile, boxes) in zip(plain, packed, p0004_tiles):
        assert q.masks is None and q.shape == (len(boxes), 1024, 824)
        assert q.packed() == np.packbits(p.masks, axis=None).tobytes()
        np.testing.assert_array_equal(unpack_masks(q.packed(), *q.shape), p.masks)
        np.testing.assert_array_equal(q.scores, p.scores)


@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 1), (2, 8, 8), (4, 13, 3)])
def test_device_bit_packing_matches_numpy(shape):
    """pack_bits runs where the masks are (the GPU): np.packbits's layout, padding included."""
    masks = np.random.default_rng(sum(shape)).random(shape) < 0.5
    np.testing.assert_array_equal(pack_bits(torch.from_numpy(masks)).numpy(), np.packbits(masks, axis=None))
