"""Tensor helpers of the SAM engine: padding a prompt chunk to a fixed size, packing masks to bits
on the device, and the checks on what predict() is given."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from samrs_ray.inputs.presets import PROMPT_TYPES
from samrs_ray.masks.backend import PromptBatch


def pad_rows(tensor: Optional[torch.Tensor], size: int) -> Optional[torch.Tensor]:
    """(n, ...) -> (size, ...) with the last row repeated (n <= size); None stays None."""
    if tensor is None or len(tensor) >= size:
        return tensor
    return torch.cat([tensor, tensor[-1:].expand(size - len(tensor), *tensor.shape[1:])])


def pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """masks (N, H, W) bool -> ((N*H*W + 7) // 8,) uint8 on the same device, np.packbits's layout
    (flattened, most significant bit first, the last byte padded with zeros)."""
    flat = masks.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=masks.device)
    return (flat.view(-1, 8).to(torch.uint8) * weights).sum(dim=1, dtype=torch.uint8)


def check_inputs(image: np.ndarray, batch: PromptBatch, index: int) -> None:
    """Refuse what SAM would silently turn into garbage (wrong layout, NaN prompts)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"tile {index}: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if batch.kind not in PROMPT_TYPES:
        raise ValueError(f"tile {index}: unknown prompt kind {batch.kind!r}; expected one of {PROMPT_TYPES}")
    if len(batch) == 0:
        return
    needed = {"point": "points", "rbox-mask": "mask_inputs"}.get(batch.kind, "boxes")
    values = getattr(batch, needed)
    if values is None or len(values) != len(batch):
        raise ValueError(f"tile {index}: {batch.kind!r} prompts need {needed} for all {len(batch)} prompts")
    if not np.isfinite(values).all():
        raise ValueError(f"tile {index}: {needed} of the {batch.kind!r} prompts contain NaN or infinity")
