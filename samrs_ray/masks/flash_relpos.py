"""Flash attention with SAM's decomposed relative-position bias fused in (a Triton kernel).

SAM's image encoder computes, per head, softmax(q k^T * scale + bias) v where

    bias[(i, j), (kh, kw)] = rel_h[(i, j), kh] + rel_w[(i, j), kw]

for query token (i, j) and key token (kh, kw) of an H x W grid of tokens: 14 x 14 windows in
most blocks and the whole 64 x 64 grid in the global-attention blocks. fast_attention.py hands
the summed (L, L) bias to F.scaled_dot_product_attention as `attn_mask`; with a float mask
PyTorch cannot use its flash kernel, and every global block materialises a (heads, 4096, 4096)
bias per tile (512 MB in bf16 for ViT-H). The kernel here reads rel_h (L, H) and rel_w (L, W)
instead and adds the bias tile by tile inside the online softmax, so the (L, L) matrix is never
built. Head dims: 80 for ViT-H (1280 / 16 heads), 64 for ViT-L and ViT-B, 32 for the fake tiny
SAM; the kernel pads the head dim to a power of two with masked loads.

The idea and the row-aligned bias loads follow pytorch-labs/segment-anything-fast
(`segment_anything_fast/flash_4.py`, Apache-2.0, by Christian Puhrsch and Daniel Haziza); this is
the project's own kernel: it also takes the 14 x 14 windows (196 tokens, not a block multiple),
any strides (q, k, v are views of the qkv projection) and fp32 (exact products, no TF32).

`relpos_attention` is the entry point: the kernel on CUDA (as the custom op
torch.ops.samrs_ray.relpos_attention, so torch.compile keeps it opaque), elsewhere SDPA with the
bias materialised, which is what fast_attention.py computes. `reference_relpos_attention` is
the plain fp32 formula; with TRITON_INTERPRET=1, `triton_relpos_attention` runs the kernel in
Triton's interpreter on CPU tensors (numpy; slow, for the tests).
"""

import math
import os
from typing import Optional

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only torch without Triton: relpos_attention falls back to SDPA
    triton = None

LOG2E = 1.4426950408889634  # softmax in base 2: exp(x) = exp2(x * log2(e)), exp2 is the fast instruction
BLOCK_N = 64  # keys per step; equal to the 64-token rows of global attention, so a key block is one row
# (BLOCK_M, num_warps, num_stages) tried once per shape and dtype on a GPU (triton.autotune)
CUDA_CONFIGS = ((64, 4, 2), (64, 4, 3), (128, 4, 3), (128, 8, 3))


def check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor) -> None:
    """q, k, v: (B, heads, L, D) of one dtype; rel_h: (B, heads, L, KH); rel_w: (B, heads, L, KW); L = KH * KW."""
    if not (q.shape == k.shape == v.shape and q.dim() == 4):
        raise ValueError(f"q, k, v must be (B, heads, L, D) alike, got {tuple(q.shape)} {tuple(k.shape)} "
                         f"{tuple(v.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype} {k.dtype} {v.dtype}")
    length = q.shape[2]
    if rel_h.shape[:3] != q.shape[:3] or rel_w.shape[:3] != q.shape[:3] or rel_h.shape[3] * rel_w.shape[3] != length:
        raise ValueError(f"rel_h {tuple(rel_h.shape)} and rel_w {tuple(rel_w.shape)} do not fit q {tuple(q.shape)}")


def summed_bias(rel_h: torch.Tensor, rel_w: torch.Tensor) -> torch.Tensor:
    """rel_h (B, heads, L, KH), rel_w (B, heads, L, KW) -> the (B, heads, L, L) bias, key index kh * KW + kw."""
    batch, heads, length, _ = rel_h.shape
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(batch, heads, length, length)


def reference_relpos_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor,
                               rel_w: torch.Tensor) -> torch.Tensor:
    """The formula itself, in fp32, bias materialised: (B, heads, L, D) in q's dtype. Shapes as check_shapes."""
    check_shapes(q, k, v, rel_h, rel_w)
    scores = (q.float() @ k.float().transpose(-2, -1)) * q.shape[-1] ** -0.5 + summed_bias(rel_h.float(), rel_w.float())
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def sdpa_relpos_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor,
                          rel_w: torch.Tensor) -> torch.Tensor:
    """SDPA with the summed bias as attn_mask (fast_attention.sdpa_forward's computation). Shapes as check_shapes."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=summed_bias(rel_h, rel_w).to(q.dtype))


def relpos_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor,
                     rel_w: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + rel_h[.., kh] + rel_w[.., kw]) v: the fused kernel on CUDA, SDPA elsewhere.

    q, k, v: (B, heads, L, D), any strides; rel_h: (B, heads, L, KH); rel_w: (B, heads, L, KW), with
    L = KH * KW (the key grid). Returns (B, heads, L, D) contiguous, in q's dtype.
    """
    check_shapes(q, k, v, rel_h, rel_w)
    if q.is_cuda and triton is not None:
        return torch.ops.samrs_ray.relpos_attention(q, k, v, rel_h, rel_w)
    return sdpa_relpos_attention(q, k, v, rel_h, rel_w)


def triton_relpos_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor,
                            rel_w: torch.Tensor, block_m: Optional[int] = None, block_n: int = BLOCK_N) -> torch.Tensor:
    """The kernel itself (shapes as relpos_attention): on CUDA tensors, or on CPU tensors in Triton's
    interpreter (TRITON_INTERPRET=1 set before triton is imported: Triton's own library functions
    are built for one mode at import). block_m: fixed query block (None: autotuned on CUDA, 16 in
    the interpreter); block_n: keys per step."""
    if triton is None:
        raise RuntimeError("Triton is not installed")
    check_shapes(q, k, v, rel_h, rel_w)
    if not (q.is_cuda or interpreting()):
        raise RuntimeError("the Triton kernel runs on CUDA tensors, or on CPU ones with TRITON_INTERPRET=1 "
                           "set before triton is imported")
    batch, heads, length, dim = q.shape
    if interpreting():
        kernel, meta = jit_kernel(), {"BLOCK_M": block_m or 16}  # triton.jit gives the interpreted kernel
    elif block_m is None:
        kernel, meta = autotuned_kernel(), {}
    else:
        kernel, meta = jit_kernel(), {"BLOCK_M": block_m}
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    grid = lambda launch: (triton.cdiv(length, launch["BLOCK_M"]), batch * heads)  # noqa: E731
    kernel[grid](q, k, v, rel_h, rel_w, out, dim ** -0.5, *q.stride(), *k.stride(), *v.stride(), *rel_h.stride(),
                 *rel_w.stride(), *out.stride(), heads, KH=rel_h.shape[3], KW=rel_w.shape[3], HEAD_DIM=dim,
                 BLOCK_D=max(16, 1 << math.ceil(math.log2(dim))), BLOCK_N=block_n, EXACT=q.dtype == torch.float32,
                 **meta)
    return out


_KERNELS: dict = {}


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (TRITON_INTERPRET=1 when triton was imported)."""
    knobs = getattr(triton, "knobs", None)  # Triton >= 3.4; before it, only the environment says
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def jit_kernel():
    if "jit" not in _KERNELS:
        _KERNELS["jit"] = triton.jit(_relpos_attention_kernel)
    return _KERNELS["jit"]


def autotuned_kernel():
    # Built on first use, not at import: importing this module must not need a GPU.
    if "tuned" not in _KERNELS:
        configs = [triton.Config({"BLOCK_M": m}, num_warps=w, num_stages=s) for m, w, s in CUDA_CONFIGS]
        _KERNELS["tuned"] = triton.autotune(configs, key=["KH", "KW", "HEAD_DIM"])(jit_kernel())
    return _KERNELS["tuned"]


if triton is not None:

    def _relpos_attention_kernel(
        Q, K, V, RH, RW, Out, sm_scale,
        stride_qb, stride_qh, stride_qm, stride_qd,
        stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd,
        stride_hb, stride_hh, stride_hm, stride_hk,
        stride_wb, stride_wh, stride_wm, stride_wk,
        stride_ob, stride_oh, stride_om, stride_od,
        heads,
        KH: tl.constexpr, KW: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, EXACT: tl.constexpr,
    ):
        """One program: BLOCK_M queries of one (batch, head), all L = KH * KW keys in BLOCK_N steps,
        with the online softmax of flash attention (running max m_i, running sum l_i) in base 2."""
        length = KH * KW
        batch = (tl.program_id(1) // heads).to(tl.int64)  # int64: offsets of a big batch pass 2**31
        head = (tl.program_id(1) % heads).to(tl.int64)
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        m_valid = offs_m < length
        d_valid = offs_d < HEAD_DIM  # head dim 80 runs in a 128-wide block
        q_base = Q + batch * stride_qb + head * stride_qh
        q = tl.load(q_base + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                    mask=m_valid[:, None] & d_valid[None, :], other=0.0)
        k_base = K + batch * stride_kb + head * stride_kh
        v_base = V + batch * stride_vb + head * stride_vh
        rh_rows = RH + batch * stride_hb + head * stride_hh + offs_m * stride_hm  # (BLOCK_M,) pointers
        rw_rows = RW + batch * stride_wb + head * stride_wh + offs_m * stride_wm
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        qk_scale = sm_scale * 1.4426950408889634
        if KW == BLOCK_N:
            # Row-aligned (global attention, 64 x 64): every key block is one key row kh, its columns are
            # kw = 0..63, so rel_w's tile is the same for all blocks (loaded once) and rel_h is one column.
            bias_w = tl.load(rw_rows[:, None] + tl.arange(0, BLOCK_N)[None, :] * stride_wk, mask=m_valid[:, None],
                             other=0.0).to(tl.float32) * 1.4426950408889634
        for start_n in range(0, length, BLOCK_N):
            offs_n = start_n + tl.arange(0, BLOCK_N)
            n_valid = offs_n < length
            k = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
                        mask=d_valid[:, None] & n_valid[None, :], other=0.0)  # (BLOCK_D, BLOCK_N)
            if EXACT:
                s = tl.dot(q, k, input_precision="ieee")  # fp32 means fp32: no TF32 truncation
            else:
                s = tl.dot(q, k)  # 16-bit inputs, fp32 accumulation
            if KW == BLOCK_N:
                bias_h = tl.load(rh_rows + (start_n // KW) * stride_hk, mask=m_valid, other=0.0).to(tl.float32)
                s = s * qk_scale + (bias_h * 1.4426950408889634)[:, None] + bias_w
            else:
                # General grid (14 x 14 windows: 196 keys, rows straddle blocks): gather both tables.
                both = m_valid[:, None] & n_valid[None, :]
                bias = tl.load(rh_rows[:, None] + (offs_n // KW)[None, :] * stride_hk, mask=both, other=0.0)
                bias = bias.to(tl.float32)
                bias += tl.load(rw_rows[:, None] + (offs_n % KW)[None, :] * stride_wk, mask=both,
                                other=0.0).to(tl.float32)
                s = s * qk_scale + bias * 1.4426950408889634
                s = tl.where(n_valid[None, :], s, float("-inf"))  # keys past L weigh nothing
            m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every block holds at least one real key
            alpha = tl.math.exp2(m_i - m_new)
            p = tl.math.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                        mask=n_valid[:, None] & d_valid[None, :], other=0.0)  # (BLOCK_N, BLOCK_D)
            if EXACT:
                acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
            else:
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        acc = acc / l_i[:, None]
        tl.store(Out + batch * stride_ob + head * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od,
                 acc.to(Out.dtype.element_ty), mask=m_valid[:, None] & d_valid[None, :])

    @torch.library.custom_op("samrs_ray::relpos_attention", mutates_args=())
    def _relpos_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor,
                             rel_w: torch.Tensor) -> torch.Tensor:
        return triton_relpos_attention(q, k, v, rel_h, rel_w)

    @_relpos_attention_op.register_fake
    def _relpos_attention_shape(q, k, v, rel_h, rel_w):
        return q.new_empty(q.shape)
