"""Tensor helpers of the SAM engine: the checks on what predict() is given, prompts as the
prompt encoder's input tensors, padding a prompt chunk to a fixed size, and packing masks to
bits on the device."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from samrs_ray.inputs.presets import PROMPT_TYPES
from samrs_ray.masks.backend import PromptBatch


def prompt_tensors(
    batch: PromptBatch, original_size: tuple[int, int], rows: slice, transform: ResizeLongestSide,
    device: torch.device,
) -> tuple[Optional[tuple[torch.Tensor, torch.Tensor]], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(points, boxes, mask_inputs) for the prompt encoder, in the model's input frame, on `device`.

    Prompts `rows` of one tile of original_size (H, W); transform: the engine's ResizeLongestSide.
    Coordinates are transformed in numpy float64 then cast, as SamPredictor.predict does,
    so each prompt lands on exactly the same float32 value as in the official path.
    'point': one foreground point (n, 1, 2) + labels (n, 1); 'rbox-mask': (n, 1, 256, 256)
    mask logits alone; 'hbox'/'rhbox': boxes (n, 4) xyxy.
    """
    if batch.kind == "point":
        coords = transform.apply_coords(batch.points[rows], original_size)
        coords = torch.as_tensor(coords, dtype=torch.float, device=device)[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=device)
        return (coords, labels), None, None
    if batch.kind == "rbox-mask":
        mask_inputs = torch.as_tensor(batch.mask_inputs[rows], dtype=torch.float, device=device)
        return None, None, mask_inputs[:, None]
    boxes = transform.apply_boxes(batch.boxes[rows], original_size)
    return None, torch.as_tensor(boxes, dtype=torch.float, device=device), None


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
    """Refuse what SAM would silently turn into garbage (wrong layout, NaN prompts).
    image: tile `index`, expected (H, W, 3) uint8 RGB; batch: its prompts."""
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
