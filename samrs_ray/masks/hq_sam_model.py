"""HQ-SAM models: the architecture of each model type from segment_anything_hq's own builders,
with no checkpoint read (their loader uses a plain torch.load; engine_checkpoint.py reads the
weights with weights_only=True), and a FAKE tiny one for CPU tests.

segment_anything_hq is the PyPI package `segment-anything-hq`; the upstream repository installs
as `segment_anything` and would shadow SAM, so it is not used.
"""

from __future__ import annotations

import warnings
from functools import partial

import torch

from samrs_ray.masks.checkpoint import PIXEL_MEAN, PIXEL_STD, TINY_DEPTH, TINY_EMBED_DIM
from samrs_ray.masks.model_types import HQ_TYPES

TINY_SEED = 0


def modules():
    """segment_anything_hq.modeling, imported without the deprecation and registry warnings that
    its bundled TinyViT raises against current timm (it imports timm without declaring it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        import segment_anything_hq.modeling

    return segment_anything_hq.modeling


def build_tiny_hq_sam() -> torch.nn.Module:
    """A FAKE stand-in for HQ-SAM, for fast CPU tests: random weights, not a trained model.

    SAM's tiny fake (checkpoint.build_tiny_sam) with HQ-SAM's image encoder (which also returns
    the features after each global-attention block) and its HQ mask decoder fed by them."""
    hq = modules()
    ImageEncoderViT, MaskDecoderHQ, PromptEncoder = hq.ImageEncoderViT, hq.MaskDecoderHQ, hq.PromptEncoder
    Sam, TwoWayTransformer = hq.Sam, hq.TwoWayTransformer

    embed_dim, image_size, patch_size = 256, 1024, 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size, patch_size=patch_size, embed_dim=TINY_EMBED_DIM, depth=TINY_DEPTH, num_heads=2,
            mlp_ratio=2, out_chans=embed_dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=14, global_attn_indexes=(TINY_DEPTH - 1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=embed_dim, image_embedding_size=(image_size // patch_size, image_size // patch_size),
            input_image_size=(image_size, image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoderHQ(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=embed_dim, mlp_dim=256, num_heads=8),
            transformer_dim=embed_dim, iou_head_depth=3, iou_head_hidden_dim=64, vit_dim=TINY_EMBED_DIM,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )


def build_hq_sam(model_type: str, on_meta: bool = False) -> torch.nn.Module:
    """HQ-SAM of `model_type` with random weights (seeded for the FAKE 'tiny'), in eval mode; on the
    meta device with on_meta (no init: a checkpoint's tensors are assigned to it)."""
    if model_type not in HQ_TYPES:
        raise ValueError(f"unknown HQ-SAM model type {model_type!r}; expected one of {HQ_TYPES}")
    if model_type == "tiny":
        # fork_rng: fixed weights for the fake without touching the caller's RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            return build_tiny_hq_sam().eval()
    modules()
    from segment_anything_hq import sam_model_registry

    if on_meta:
        with torch.device("meta"):
            return sam_model_registry[model_type](checkpoint=None).eval()
    return sam_model_registry[model_type](checkpoint=None).eval()


def random_checkpoint(model_type: str, path: str, seed: int = 1) -> None:
    """Write an HQ-SAM checkpoint in the official layout (a plain state dict) with seeded random
    weights, for tests and benchmarks."""
    model = build_hq_sam(model_type)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    torch.save(model.state_dict(), path)
