"""The engine's opt-in steps (EngineSettings: attention, sync, upsample_dtype, compile_blocks,
static_shapes, decoder_graphs) and bench/gpu_steps.py's int8 model change.

Their defaults keep the engine as it was: the default settings build the same engine, and the
masks of each step are compared with those of the same engine without it on a real DOTA tile.
Measured here (tiny model, CPU): one sync per batch, the flash-relpos forward (SDPA off CUDA)
and padded chunks give the same masks bit for bit; bf16 upsampling of fp32 logits flips up to
~260 boundary pixels of a speckled random-weights mask (mean IoU 0.998).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samrs_ray.inputs.formats.dota import parse_dota
from samrs_ray.masks.backend import unpack_masks
from samrs_ray.masks.checkpoint import build_sam
from samrs_ray.masks.engine_settings import EngineSettings, supports_bfloat16
from samrs_ray.masks.fast_attention import flash_relpos_forward, sdpa_forward
from samrs_ray.masks.sam import SamBackend
from samrs_ray.masks.tensors import pad_rows
from tests.masks.helpers import box_prompts, crop_with_boxes

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def tiles(realsamples: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Both 824x1024 windows of DOTA P0004, every 4th box (22 and 16 boxes)."""
    image = np.array(Image.open(realsamples / "dota/images/P0004.png").convert("RGB"))
    labels = parse_dota((realsamples / "dota/labelTxt/P0004.txt").read_bytes(), "P0004.txt")
    return [(tile, boxes[::4]) for tile, boxes in (crop_with_boxes(image, labels, y0) for y0 in (0, 440))]


def masks_of(tiles, device: str = "cpu", **settings):
    """(masks, scores) per tile of an engine with `settings` on top of image_batch 2, prompt_chunk 8, SDPA."""
    backend = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(**dict(dict(
        device=device, image_batch=2, prompt_chunk=8, sdpa=True), **settings)))
    results = backend.predict([t for t, _ in tiles], [box_prompts(b) for _, b in tiles])
    return [(r.masks if r.masks is not None else unpack_masks(r.packed(), *r.shape), r.scores) for r in results]


def assert_same(got, expected) -> None:
    for (masks, scores), (masks_expected, scores_expected) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(masks, masks_expected)
        np.testing.assert_array_equal(scores, scores_expected)


def test_defaults_keep_the_engine_as_it_was():
    settings = EngineSettings()
    assert (settings.attention, settings.sync, settings.upsample_dtype, settings.compile_mode, settings.compile_blocks,
            settings.static_shapes, settings.decoder_graphs) == ("sdpa", "tile", "float32", None, False, False, False)
    backend = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(sdpa=True))
    assert backend.decoder == backend.decode_prompts and not backend.pad_chunks
    assert backend.upsample_dtype == torch.float32
    assert backend.image_encoder is backend.model.image_encoder
    assert all(block.attn.forward.__func__ is sdpa_forward for block in backend.model.image_encoder.blocks)
    for bad, match in ((dict(attention="flash-relpos"), "attention"), (dict(sdpa=True, attention="flash"), "attention"),
                       (dict(sync="never"), "sync"), (dict(upsample_dtype="float16"), "upsample_dtype")):
        with pytest.raises(ValueError, match=match):
            EngineSettings(**bad)
    with pytest.raises(ValueError, match="decoder_graphs"):
        SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(decoder_graphs=True))


def test_one_sync_per_batch_and_the_flash_relpos_forward_give_the_same_masks(tiles):
    expected = masks_of(tiles)
    assert_same(masks_of(tiles, sync="batch"), expected)
    assert_same(masks_of(tiles, sync="batch", pack=True), expected)
    backend = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(sdpa=True, attention="flash-relpos"))
    assert all(block.attn.forward.__func__ is flash_relpos_forward for block in backend.model.image_encoder.blocks)
    assert_same(masks_of(tiles, attention="flash-relpos"), expected)  # off CUDA: SDPA with the same bias


def test_static_shapes_pad_batches_and_chunks_and_drop_the_padding(tiles):
    backend = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(image_batch=4, prompt_chunk=8, sdpa=True,
                                                                      static_shapes=True))
    seen = {"encoder": [], "decoder": []}
    backend.model.image_encoder.register_forward_hook(lambda m, args, out: seen["encoder"].append(args[0].shape[0]))
    backend.model.mask_decoder.register_forward_hook(lambda m, args, kwargs, out: seen["decoder"].append(
        kwargs["sparse_prompt_embeddings"].shape[0]), with_kwargs=True)
    results = backend.predict([t for t, _ in tiles], [box_prompts(b) for _, b in tiles])
    assert seen["encoder"] == [4]  # 2 tiles padded to image_batch
    assert seen["decoder"] == [8] * 5  # 22 boxes -> 8 + 8 + 6 (padded), 16 boxes -> 8 + 8
    assert [r.masks.shape[0] for r in results] == [len(b) for _, b in tiles] == [22, 16]
    expected = masks_of(tiles)
    for result, (masks, scores) in zip(results, expected):
        # a padded chunk runs the decoder's matrix products on more rows: a few boundary pixels may flip
        assert (result.masks != masks).sum(axis=(1, 2)).max() <= 4
        np.testing.assert_allclose(result.scores, scores, atol=1e-4)


def test_pad_rows_repeats_the_last_row():
    rows = torch.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(pad_rows(rows, 5).numpy(), [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    assert pad_rows(rows, 3) is rows and pad_rows(None, 4) is None


def test_bf16_upsampling_keeps_the_masks_close(tiles):
    if not supports_bfloat16(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16: the engine upsamples in float32")
    got, expected = masks_of(tiles, upsample_dtype="bfloat16"), masks_of(tiles)
    for (masks, scores), (masks_expected, scores_expected) in zip(got, expected):
        union = (masks | masks_expected).sum(axis=(1, 2))
        ious = np.where(union == 0, 1, (masks & masks_expected).sum(axis=(1, 2)) / np.maximum(union, 1))
        assert ious.mean() > 0.99 and ious.min() > 0.95, ious
        np.testing.assert_array_equal(scores, scores_expected)  # the IoU head is before the upsampling


def test_compile_blocks_compiles_each_encoder_block_not_the_encoder():
    backend = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(compile=True, compile_blocks=True,
                                                                      static_shapes=True))
    assert backend.image_encoder is backend.model.image_encoder  # compiled lazily, block by block
    assert all(block._compiled_call_impl is not None for block in backend.model.image_encoder.blocks)
    assert backend.mask_decoder is not backend.model.mask_decoder


def gpu_steps():
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("gpu_steps")
    finally:
        sys.path.remove(str(BENCH))


def test_int8_linear_is_close_to_the_float_linear():
    steps = gpu_steps()
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(2, 40, 64)
    with torch.inference_mode():
        got, expected = steps.Int8Linear(linear)(x), linear(x)
    assert got.shape == expected.shape == (2, 40, 48)
    relative = float((got - expected).norm() / expected.norm())
    assert 0 < relative < 0.02, relative  # int8 rounding: close, not equal


def test_int8_quantisation_of_the_tiny_encoder_on_a_cpu():
    steps = gpu_steps()
    model = build_sam("tiny")
    pixels = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        expected = model.image_encoder(pixels)
        steps.quantise_int8(model)
        got = model.image_encoder(pixels)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.image_encoder.modules())
    relative = float((got - expected).norm() / expected.norm())
    assert 0 < relative < 0.05, relative


def test_the_bench_keeps_a_step_only_when_it_pays():
    steps = gpu_steps()
    args = type("Args", (), {"min_speedup": 1.03, "max_iou_drop": 0.005})

    def outcome(seconds: float, iou: float):
        return steps.Outcome("G", "", "measured", figures={"seconds": seconds, "mean_iou": iou})

    last = outcome(2.0, 0.99)
    for seconds, iou, kept in ((1.0, 0.99, True), (1.99, 0.99, False), (1.0, 0.98, False), (1.0, 0.9851, True)):
        step = outcome(seconds, iou)
        steps.decide(step, last, args)
        assert step.kept is kept, (seconds, iou, step.reason)
    cuda_only = {s.name for s in steps.STEPS if s.needs_cuda}
    assert cuda_only == {"G1", "G4", "G6"}
    assert steps.step_change(steps.STEPS[6], "cuda")["compile_mode"] == "max-autotune-no-cudagraphs"


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA steps")


@needs_cuda
def test_cuda_steps_give_the_masks_of_the_plain_engine(tiles):
    expected = masks_of(tiles, "cuda", prompt_chunk=64)
    assert_same(masks_of(tiles, "cuda", prompt_chunk=64, sync="batch", pack=True), expected)
    for settings in (dict(decoder_graphs=True), dict(attention="flash-relpos", dtype="bfloat16")):
        got = masks_of(tiles, "cuda", prompt_chunk=64, **settings)
        for (masks, _), (masks_expected, _) in zip(got, expected):
            union = (masks | masks_expected).sum(axis=(1, 2))
            ious = np.where(union == 0, 1, (masks & masks_expected).sum(axis=(1, 2)) / np.maximum(union, 1))
            assert ious.mean() > 0.98, (settings, ious.mean())
