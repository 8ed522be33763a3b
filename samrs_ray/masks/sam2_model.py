"""SAM 2.1 models: the architecture of each model type, built from sam2's own Hydra configs with
the overrides `sam2.build_sam.build_sam2` applies, and a FAKE tiny one for CPU tests.

`build_sam2` is not used itself: it loads checkpoints with a plain torch.load and moves the
model to CUDA by default; here the architecture is built with no checkpoint and the weights
are read by engine_checkpoint.py with weights_only=True.
"""

from __future__ import annotations

import torch

from samrs_ray.masks.model_types import SAM2_TYPES

TINY_SEED = 0

CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
}

# What build_sam2(apply_postprocessing=True) adds, and so what SAM2ImagePredictor runs with: with
# multimask_output=False the decoder still computes its three masks and falls back to the best
# of them when the single mask's stability score is below 0.98 (dynamic_multimask_via_stability).
POSTPROCESSING = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]

# The FAKE tiny SAM 2: hiera_t's config with a 16-wide, 5-block Hiera trunk and one memory-attention
# layer (unused on images); the prompt encoder and mask decoder are the real ones.
TINY = [
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[7,7]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.memory_attention.num_layers=1",
]


def build_sam2_model(model_type: str, on_meta: bool = False) -> torch.nn.Module:
    """The SAM2Base of `model_type` with random weights, in eval mode, on the CPU (sam2's Hiera
    cannot be built on the meta device: on_meta is accepted and ignored).
    'tiny' is a FAKE for tests: seeded random weights, not a trained model."""
    if model_type not in SAM2_TYPES:
        raise ValueError(f"unknown SAM 2 model type {model_type!r}; expected one of {SAM2_TYPES}")
    import sam2  # noqa: F401  (registers sam2's configs with Hydra)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = POSTPROCESSING + (TINY if model_type == "tiny" else [])
    cfg = compose(config_name=CONFIGS[model_type], overrides=overrides)
    OmegaConf.resolve(cfg)
    # fork_rng: fixed weights for the fake without touching the caller's RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = instantiate(cfg.model, _recursive_=True)
    return model.eval()


def random_checkpoint(model_type: str, path: str, seed: int = 1) -> None:
    """Write a SAM 2 checkpoint in the official layout ({"model": state_dict}) with seeded random
    weights, for tests and benchmarks (the official files cannot be downloaded there)."""
    model = build_sam2_model(model_type)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    torch.save({"model": model.state_dict()}, path)
