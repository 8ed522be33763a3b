"""Scaled-dot-product attention for SAM's ViT image encoder, swapped into a built model.

segment_anything's `Attention.forward` materialises the attention matrix by hand,
`softmax(q k^T * scale + rel_h + rel_w) v`, with its decomposed relative-position bias added
in between. The same value is `F.scaled_dot_product_attention(q, k, v, attn_mask=bias)` with
the bias (rel_h + rel_w) passed as a float mask (pytorch-labs/segment-anything-fast does the
same): SDPA then picks a fused kernel (flash / memory-efficient on CUDA, the fused CPU kernel
here) that never keeps the (L, L) probabilities around.

`use_sdpa(module, "flash-relpos")` swaps in `flash_relpos_forward` instead: the bias stays in
its two decomposed tables and flash_relpos.py's Triton kernel adds it inside a flash-attention
loop on CUDA (SDPA with the summed bias elsewhere, the same values as the default).

Only the instances of the model given are changed (their `forward` attribute); the
segment_anything class itself is left alone, so other models in the process keep the original.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

KERNELS = ("sdpa", "flash-relpos")


def decomposed_rel_pos(q: torch.Tensor, attention: Attention,
                       size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of `add_decomposed_rel_pos`, not summed.

    q: (B, heads, H*W, C) queries (unscaled). Returns rel_h (B, heads, H*W, H) and rel_w
    (B, heads, H*W, W) in q's dtype: rel_h[b, n, (i, j), k] + rel_w[b, n, (i, j), l] is the bias of
    query (i, j) against key (k, l).
    """
    height, width = size
    batch, heads, length, channels = q.shape
    rel_h = get_rel_pos(height, height, attention.rel_pos_h)  # (H, H, C)
    rel_w = get_rel_pos(width, width, attention.rel_pos_w)  # (W, W, C)
    r_q = q.reshape(batch * heads, height, width, channels)
    bias_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h.to(q.dtype))  # (B*heads, H, W, H)
    bias_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w.to(q.dtype))  # (B*heads, H, W, W)
    return bias_h.reshape(batch, heads, length, height), bias_w.reshape(batch, heads, length, width)


def rel_pos_bias(q: torch.Tensor, attention: Attention, size: tuple[int, int]) -> torch.Tensor:
    """The decomposed relative-position bias of `add_decomposed_rel_pos`, as an attention mask.

    q: (B, heads, H*W, C) queries (unscaled, as the original uses them).
    Returns (B, heads, H*W, H*W) in q's dtype: bias[b, n, (i, j), (k, l)] = rel_h[.., i, j, k] + rel_w[.., i, j, l].
    """
    height, width = size
    batch, heads, length, _ = q.shape
    rel_h, rel_w = decomposed_rel_pos(q, attention, size)  # (B, heads, H*W, H), (B, heads, H*W, W)
    bias = rel_h[..., :, None] + rel_w[..., None, :]  # (B, heads, H*W, H, W)
    return bias.reshape(batch, heads, length, height * width)


def sdpa_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """Attention.forward through F.scaled_dot_product_attention. x: (B, H, W, dim) -> (B, H, W, dim)."""
    batch, height, width, _ = x.shape
    # (3, B, heads, H*W, C): the same layout the original builds before flattening B and heads
    qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    bias = rel_pos_bias(q, self, (height, width)) if self.use_rel_pos else None
    # SDPA's default scale is head_dim ** -0.5, the original's self.scale
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, heads, H*W, C)
    out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return self.proj(out)


def flash_relpos_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """Attention.forward with the bias fused into flash attention (flash_relpos.relpos_attention).
    x: (B, H, W, dim) -> (B, H, W, dim)."""
    from samrs_ray.masks.flash_relpos import relpos_attention  # Triton is imported only by engines that ask

    batch, height, width, _ = x.shape
    qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, heads, H*W, C) views: the kernel reads them through their strides
    if self.use_rel_pos:
        out = relpos_attention(q, k, v, *decomposed_rel_pos(q, self, (height, width)))
    else:
        out = F.scaled_dot_product_attention(q, k, v)  # no bias: PyTorch's own flash kernel
    out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return self.proj(out)


def use_sdpa(module: torch.nn.Module, kernel: str = "sdpa") -> int:
    """Make every segment_anything image-encoder Attention inside `module` compute with SDPA
    (kernel 'sdpa') or with the fused rel-pos flash kernel ('flash-relpos').

    Patches instances (their `forward`), never the class. Returns how many were patched.
    """
    if kernel not in KERNELS:
        raise ValueError(f"attention kernel must be one of {KERNELS}, not {kernel!r}")
    forward = sdpa_forward if kernel == "sdpa" else flash_relpos_forward
    count = 0
    for child in module.modules():
        if isinstance(child, Attention):
            child.forward = types.MethodType(forward, child)
            count += 1
    return count

