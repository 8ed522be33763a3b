"""The fused rel-pos flash-attention kernel (flash_relpos.py) computes SAM's attention.

On a CPU the kernel runs in Triton's interpreter (numpy), in a subprocess: TRITON_INTERPRET=1
must be set before triton is imported, and this test process has imported it already. The
interpreter covers both bias paths (row-aligned blocks as in global attention, gathered bias
as in the 14 x 14 windows), non-power-of-two head dims (80, ViT-H's), rows past the end,
strided q/k/v and fp32/fp16. Not bf16: Triton 3.8's interpreter computes tl.dot on bf16
blocks wrongly (a 16 x 16 product off by ~1e10), so bf16 is checked by the CUDA tests below
and by bench/gpu_steps.py (G1) on a GPU. Measured in the interpreter: fp32 max error 1e-6 to
2e-6 against the fp32 formula, fp16 1e-3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from samrs_ray.masks.fast_attention import (
    decomposed_rel_pos,
    flash_relpos_forward,
    rel_pos_bias,
    sdpa_forward,
    use_sdpa,
)
from samrs_ray.masks.flash_relpos import (
    check_shapes,
    reference_relpos_attention,
    relpos_attention,
    sdpa_relpos_attention,
)
from tests.masks.helpers import randomise_rel_pos

INTERPRETED = r"""
import json, sys
import torch
from segment_anything.modeling.image_encoder import Attention
from samrs_ray.masks import flash_relpos
from samrs_ray.masks.fast_attention import use_sdpa
from samrs_ray.masks.flash_relpos import reference_relpos_attention, triton_relpos_attention
from tests.masks.helpers import randomise_rel_pos

assert flash_relpos.interpreting()
torch.manual_seed(0)
errors = {}
# (batch, heads, KH, KW, head dim, dtype, block_m, block_n)
CASES = {
    "windows 7x7, d 20 (gathered bias, rows past the end)": (2, 2, 7, 7, 20, torch.float32, 16, 16),
    "grid 4x16, d 32 (row-aligned bias)": (1, 2, 4, 16, 32, torch.float32, 16, 16),
    "ViT-H window 14x14, d 80": (1, 1, 14, 14, 80, torch.float32, 64, 64),
    "ViT-H-like global rows 8x64, d 80 (row-aligned)": (1, 1, 8, 64, 80, torch.float32, 64, 64),
    "windows 7x7, d 20, fp16": (2, 2, 7, 7, 20, torch.float16, 16, 16),
}
for name, (batch, heads, kh, kw, dim, dtype, block_m, block_n) in CASES.items():
    length = kh * kw
    # q, k, v as the encoder has them: strided views of one qkv tensor
    q, k, v = torch.randn(batch, length, 3, heads, dim).permute(2, 0, 3, 1, 4).to(dtype).unbind(0)
    rel_h = (torch.randn(batch, heads, length, kh) * 2).to(dtype)
    rel_w = (torch.randn(batch, heads, length, kw) * 2).to(dtype)
    got = triton_relpos_attention(q, k, v, rel_h, rel_w, block_m=block_m, block_n=block_n)
    expected = reference_relpos_attention(q, k, v, rel_h, rel_w)
    unbiased = reference_relpos_attention(q, k, v, rel_h * 0, rel_w * 0)
    errors[name] = [float((got.float() - expected.float()).abs().max()),
                    float((unbiased.float() - expected.float()).abs().max()), str(got.dtype), list(got.shape)]
# A segment_anything Attention (14 x 14 window, 2 heads of 32) with the kernel in its forward
attention = Attention(dim=64, num_heads=2, use_rel_pos=True, input_size=(14, 14)).eval()
randomise_rel_pos(attention)
x = torch.randn(2, 14, 14, 64)
with torch.inference_mode():
    original = attention(x)
    flash_relpos.relpos_attention = lambda *tensors: triton_relpos_attention(*tensors, block_m=64)
    use_sdpa(attention, "flash-relpos")
    fused = attention(x)
errors["Attention forward"] = [float((fused - original).abs().max()), 0.0, str(fused.dtype), list(fused.shape)]
json.dump(errors, sys.stdout)
"""


def test_kernel_in_the_triton_interpreter_equals_the_formula():
    pytest.importorskip("triton", reason="the kernel is Triton; without it relpos_attention falls back to SDPA")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", INTERPRETED], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout)
    assert len(errors) == 6
    for name, (error, bias_effect, dtype, shape) in errors.items():
        tolerance = 2e-3 if dtype == "torch.float16" else 1e-5
        assert error < tolerance, (name, error)
        if name != "Attention forward":
            assert bias_effect > 0.05, (name, bias_effect)  # the bias matters: a kernel ignoring it fails
    assert errors["ViT-H window 14x14, d 80"][3] == [1, 1, 196, 80]
    assert errors["Attention forward"][3] == [2, 14, 14, 64]


def test_decomposed_terms_sum_to_the_bias_sdpa_uses():
    attention = Attention(dim=64, num_heads=2, use_rel_pos=True, input_size=(14, 14)).eval()
    randomise_rel_pos(attention)
    q = torch.randn(3, 2, 196, 32)
    rel_h, rel_w = decomposed_rel_pos(q, attention, (14, 14))
    assert rel_h.shape == rel_w.shape == (3, 2, 196, 14)
    summed = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(3, 2, 196, 196)
    torch.testing.assert_close(summed, rel_pos_bias(q, attention, (14, 14)), rtol=0, atol=0)


def test_flash_relpos_forward_off_cuda_is_the_sdpa_forward():
    """Off CUDA relpos_attention is SDPA with the same bias: the same numbers as sdpa_forward."""
    torch.manual_seed(0)
    attention = Attention(dim=64, num_heads=2, use_rel_pos=True, input_size=(14, 14)).eval()
    randomise_rel_pos(attention)
    x = torch.randn(2, 14, 14, 64)
    with torch.inference_mode():
        original = attention(x)
        assert use_sdpa(attention, "flash-relpos") == 1
        assert attention.forward.__func__ is flash_relpos_forward
        fused, sdpa = attention(x), sdpa_forward(attention, x)
    torch.testing.assert_close(fused, sdpa, rtol=0, atol=0)
    torch.testing.assert_close(fused, original, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="attention kernel"):
        use_sdpa(attention, "flash")


def test_fallback_and_formula_agree_and_shapes_are_checked():
    q, k, v = torch.randn(3, 2, 2, 49, 16).unbind(0)
    rel_h, rel_w = torch.randn(2, 2, 49, 7), torch.randn(2, 2, 49, 7)
    expected = reference_relpos_attention(q, k, v, rel_h, rel_w)
    torch.testing.assert_close(relpos_attention(q, k, v, rel_h, rel_w), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(relpos_attention(q, k, v, rel_h, rel_w), sdpa_relpos_attention(q, k, v, rel_h, rel_w),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not fit"):
        check_shapes(q, k, v, rel_h, rel_w[..., :6])
    with pytest.raises(ValueError, match="share a dtype"):
        check_shapes(q, k.half(), v, rel_h, rel_w)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernel runs on CUDA")


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("grid, dim, batch", [((14, 14), 80, 50), ((64, 64), 80, 2), ((64, 64), 64, 2)])
def test_kernel_on_cuda_equals_the_formula_at_sam_shapes(dtype, grid, dim, batch):
    """ViT-H windows (25 per tile, 16 heads of 80), ViT-H and ViT-B/L global attention."""
    torch.manual_seed(0)
    kh, kw = grid
    heads, length = 16 if dim == 80 else 12, kh * kw
    q, k, v = torch.randn(batch, length, 3, heads, dim, device="cuda").permute(2, 0, 3, 1, 4).to(dtype).unbind(0)
    rel_h, rel_w = (torch.randn(batch, heads, length, n, device="cuda").to(dtype) for n in (kh, kw))
    got = relpos_attention(q, k, v, rel_h, rel_w)
    expected = reference_relpos_attention(q, k, v, rel_h, rel_w)
    tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-4
    torch.testing.assert_close(got.float(), expected.float(), rtol=tolerance, atol=tolerance)


@needs_cuda
def test_kernel_runs_inside_a_compiled_encoder_block():
    torch.manual_seed(0)
    attention = Attention(dim=160, num_heads=2, use_rel_pos=True, input_size=(64, 64)).cuda().eval()
    randomise_rel_pos(attention)
    x = torch.randn(1, 64, 64, 160, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        original = attention(x)
        use_sdpa(attention, "flash-relpos")
        compiled = torch.compile(attention)(x)
    torch.testing.assert_close(compiled.float(), original.float(), rtol=5e-2, atol=5e-2)
