"""The engine's fast path computes what the exact fp32 path computes.

SDPA attention (fast_attention.py) is checked against segment_anything's own Attention with
non-zero relative-position tables (random weights leave them at zero, which would hide a wrong
bias). The fast-path masks are checked against the exact fp32 engine (bit for bit the official
SamPredictor, see test_sam_engine.py) on a real DOTA tile. Measured there (tiny model): SDPA
and prompt chunks of 4 move the low-res logits by ~3e-7 relative, and at most 3 boundary
pixels of a mask flip.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.modeling.image_encoder import Attention

from samrs_ray.inputs.formats.dota import parse_dota
from samrs_ray.masks.backend import TileMasks, unpack_masks
from samrs_ray.masks.box import BoxBackend
from samrs_ray.masks.busy import BUSY_LOG, BusyInterval, busy_seconds, read_busy_log, timed_predict
from samrs_ray.masks.checkpoint import build_sam
from samrs_ray.masks.engine_settings import EngineSettings, engine_threads, supports_bfloat16
from samrs_ray.masks.fast_attention import sdpa_forward, use_sdpa
from samrs_ray.masks.host_memory import keep_freed_memory
from samrs_ray.masks.sam import SamBackend
from tests.masks.helpers import box_prompts, crop_with_boxes, randomise_rel_pos

MAX_PIXELS_PER_MASK = 4


def uses_sdpa(module: torch.nn.Module) -> bool:
    """Whether any image-encoder Attention in `module` has the SDPA forward."""
    from segment_anything.modeling.image_encoder import Attention

    return any(isinstance(child, Attention) and getattr(child.forward, "__func__", None) is sdpa_forward
               for child in module.modules())




def test_sdpa_attention_equals_the_original_attention():
    torch.manual_seed(0)
    attention = Attention(dim=64, num_heads=2, use_rel_pos=True, input_size=(14, 14)).eval()
    randomise_rel_pos(attention)
    x = torch.randn(3, 14, 14, 64)  # 3 windows of 14x14 tokens
    with torch.inference_mode():
        original = attention(x)
        fast = sdpa_forward(attention, x)
        attention.use_rel_pos = False  # the same attention without its relative-position bias
        unbiased = sdpa_forward(attention, x)
    torch.testing.assert_close(fast, original, rtol=1e-5, atol=1e-5)
    # the bias matters here (the output without it is far off), so the check above can fail
    assert (unbiased - original).abs().max() > 1e-2


def test_sdpa_image_encoder_equals_the_original_on_a_tiny_sam():
    """Windowed (14x14 on 64x64 tokens: padded) and global attention, batch of 2."""
    original, fast = build_sam("tiny"), build_sam("tiny")
    randomise_rel_pos(original)
    randomise_rel_pos(fast)
    assert use_sdpa(fast.image_encoder) == 2 and uses_sdpa(fast) and not uses_sdpa(original)
    pixels = torch.randn(2, 3, 1024, 1024)
    with torch.inference_mode():
        expected, got = original.image_encoder(pixels), fast.image_encoder(pixels)
    assert got.shape == (2, 256, 64, 64)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert Attention.forward is not sdpa_forward  # instances patched, the class left alone


@pytest.fixture(scope="module")
def p0004_tile(realsamples: Path) -> tuple[np.ndarray, np.ndarray]:
    """The top 824x1024 window of DOTA P0004 and every 2nd of its 85 boxes."""
    image = np.array(Image.open(realsamples / "dota/images/P0004.png").convert("RGB"))
    labels = parse_dota((realsamples / "dota/labelTxt/P0004.txt").read_bytes(), "P0004.txt")
    tile, boxes = crop_with_boxes(image, labels, 0)
    return tile, boxes[::2]


def logits_of(backend: SamBackend, tile: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """Low-res logits (n, 1, 256, 256) float32 of all boxes, in the backend's prompt chunks."""
    prompts = box_prompts(boxes)
    with torch.inference_mode(), backend.autocast():
        prepared = backend.prepare(tile)
        embedding = backend.encode([prepared])[0]
        image_pe = backend.model.prompt_encoder.get_dense_pe()
        parts = [backend.low_res_logits(prompts, prepared.original_size, embedding, image_pe, slice(s, s + 4))[0]
                 for s in range(0, len(boxes), 4)]
    return torch.cat(parts).float()


def mask_ious(a: TileMasks, b: TileMasks) -> np.ndarray:
    union = (a.masks | b.masks).sum(axis=(1, 2))
    return np.where(union == 0, 1.0, (a.masks & b.masks).sum(axis=(1, 2)) / np.maximum(union, 1))


def test_fast_path_masks_agree_with_exact_fp32(p0004_tile):
    tile, boxes = p0004_tile
    exact = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(image_batch=1, prompt_chunk=1))
    fast = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(image_batch=4, prompt_chunk=4, sdpa=True))
    assert uses_sdpa(fast.model) and not uses_sdpa(exact.model)
    [expected] = exact.predict([tile], [box_prompts(boxes)])
    [got] = fast.predict([tile], [box_prompts(boxes)])
    assert got.masks.shape == expected.masks.shape == (len(boxes), 1024, 824) and expected.masks.any()
    flipped = (got.masks != expected.masks).sum(axis=(1, 2))
    assert flipped.max() <= MAX_PIXELS_PER_MASK, flipped
    assert mask_ious(got, expected).mean() > 0.9999
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)
    reference = logits_of(exact, tile, boxes)
    relative = float((logits_of(fast, tile, boxes) - reference).norm() / reference.norm())
    assert relative < 1e-5, relative


def test_bfloat16_fast_path_masks_are_close_to_fp32(p0004_tile):
    if not supports_bfloat16(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16 (the engine falls back to fp32, see test_sam_engine)")
    tile, boxes = p0004_tile
    boxes = boxes[:12]
    exact = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(prompt_chunk=1))
    fast = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(prompt_chunk=4, sdpa=True, dtype="bfloat16"))
    [expected] = exact.predict([tile], [box_prompts(boxes)])
    [got] = fast.predict([tile], [box_prompts(boxes)])
    ious = mask_ious(got, expected)
    assert ious.mean() > 0.95 and ious.min() > 0.85, ious
    reference = logits_of(exact, tile, boxes)
    assert float((logits_of(fast, tile, boxes) - reference).norm() / reference.norm()) < 0.05


FAULTS = """
import resource, sys
import torch
from samrs_ray.masks.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # 64 MB, above glibc's largest dynamic mmap threshold; freed at the next iteration. (torch, not
    # numpy: numpy asks for huge pages, which hides the faults.)
    a = torch.ones(16 << 20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[10:]))  # after the heap has grown to its working size
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_stops_the_page_faults_of_big_tensors():
    faults = {mode: int(subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "keep")}
    # 20 x 64 MB faulted in page by page (16,384 faults each) by default; reused when kept. Alone,
    # 'keep' faults ~0 times; beside a running Ray session the kernel refaulted a few buffers
    # (98,304 vs 327,700 seen), so the check is a clear cut, not a tenfold one.
    assert faults["default"] > 20 * 10_000 and faults["keep"] < faults["default"] / 2, faults
    assert keep_freed_memory() is keep_freed_memory()  # once per process


def test_engine_threads_shares_the_cores_on_a_cpu_and_leaves_gpus_alone():
    cores = engine_threads("cpu", 1)
    assert cores is not None and cores >= 1
    assert engine_threads("cpu", 2 * cores) == 1
    assert engine_threads("cuda", 1) is None
    threads = torch.get_num_threads()
    try:
        SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="threads"):
        EngineSettings(threads=0)


def test_predict_calls_are_logged_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    backend = BoxBackend()
    tiles = [np.zeros((64, 80, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)]
    prompts = [box_prompts(np.array([[1, 2, 30, 40], [5, 5, 9, 9]])), box_prompts(np.array([[0, 0, 8, 8]]))]
    log = tmp_path / "busy.log"
    monkeypatch.delenv(BUSY_LOG, raising=False)
    timed_predict(backend, tiles, prompts)
    assert not log.exists()
    monkeypatch.setenv(BUSY_LOG, str(log))
    started = time.time()
    results = timed_predict(backend, tiles, prompts)
    timed_predict(backend, tiles[:1], prompts[:1])
    assert [r.masks.shape for r in results] == [(2, 64, 80), (1, 32, 32)]
    first, second = read_busy_log(log)
    assert (first.tiles, first.prompts, second.tiles, second.prompts) == (2, 3, 1, 2)
    assert started <= first.start <= first.end <= second.start <= time.time() and first.peak_rss > 0


def test_busy_seconds_counts_overlapping_calls_once():
    def call(start: float, end: float) -> BusyInterval:
        return BusyInterval(1, start, end, 1, 1, 0)

    calls = [call(2, 5), call(4, 6), call(8, 9), call(0.5, 1.5)]
    assert busy_seconds(calls, 1, 10) == pytest.approx(0.5 + 4 + 1)
    assert busy_seconds(calls, 4.5, 8.5) == pytest.approx(1.5 + 0.5)
    assert busy_seconds([], 0, 10) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked transfers are a CUDA path")
def test_pinned_transfers_give_the_same_masks_on_cuda(p0004_tile):
    tile, boxes = p0004_tile
    plain = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(device="cuda", prompt_chunk=4, pin_memory=False))
    pinned = SamBackend(build_sam("tiny"), "tiny", "", EngineSettings(device="cuda", prompt_chunk=4))
    assert pinned.pinned and not plain.pinned
    [expected] = plain.predict([tile], [box_prompts(boxes)])
    [got] = pinned.predict([tile], [box_prompts(boxes)])
    np.testing.assert_array_equal(got.masks, expected.masks)
    np.testing.assert_array_equal(got.scores, expected.scores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="packing on the device is a CUDA path")
def test_masks_packed_on_cuda_equal_the_host_masks(p0004_tile):
    tile, boxes = p0004_tile
    model = build_sam("tiny")
    [expected] = SamBackend(model, "tiny", "", EngineSettings(device="cuda", prompt_chunk=64)).predict(
        [tile], [box_prompts(boxes)])
    [got] = SamBackend(model, "tiny", "", EngineSettings(device="cuda", prompt_chunk=64, pack=True)).predict(
        [tile], [box_prompts(boxes)])
    assert got.masks is None and got.shape == expected.masks.shape
    np.testing.assert_array_equal(unpack_masks(got.packed(), *got.shape), expected.masks)
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_the_job_actor_builds_the_engine_from_the_command_line(tmp_path: Path):
    """`--compile` and the job's fixed engine choices (SDPA, masks packed) reach the actor's SamBackend."""
    from samrs_ray.cli.parser import build_parser, config_from_args
    from samrs_ray.job.actor import MaskActor

    args = build_parser().parse_args(["generate", "--images", str(tmp_path / "i"), "--labels", str(tmp_path / "l"),
                                      "--out", str(tmp_path / "o"), "--preset", "sota", "--model-type", "tiny",
                                      "--compile"])
    config = config_from_args(args)
    assert config.compile
    settings = MaskActor(config).backend.settings
    assert settings.compile and settings.pack and settings.sdpa and settings.device == "cpu"
    plain = config_from_args(build_parser().parse_args(["generate", "--images", "i", "--labels", "l", "--out", "o",
                                                            "--preset", "sota"]))
    assert not plain.compile
