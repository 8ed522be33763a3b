"""What every mask backend takes and returns. Pure data; no model code here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import numpy as np


@dataclass
class PromptBatch:
    """All N prompts of one tile, in tile pixel coordinates.

    kind: one of classes.PROMPT_TYPES ('hbox', 'rhbox', 'point', 'rbox-mask').
    boxes: (N, 4) float32 xyxy, always set (the box the prompt came from; used by the box
        backend and recorded in the manifest as prompt_box).
    polygons: (N, 8) float32, NaN rows where the source object has no polygon.
    points: (N, 2) float32 xy, set for kind 'point'.
    mask_inputs: (N, 256, 256) float32 SAM mask-prompt logits, set for kind 'rbox-mask'.
    """

    kind: str
    boxes: np.ndarray
    polygons: np.ndarray
    points: Optional[np.ndarray] = None
    mask_inputs: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class TileMasks:
    """Backend output for one tile: N masks at tile resolution and their scores (N,) float32.

    masks: (N, H, W) bool; or None when the backend packed them on its device (8x fewer bytes
    to copy back, no packing on the host), then bits: np.packbits(masks) ((N*H*W + 7) // 8,)
    uint8 and shape: (N, H, W).
    """

    masks: Optional[np.ndarray]
    scores: np.ndarray
    bits: Optional[np.ndarray] = None
    shape: Optional[tuple[int, int, int]] = None

    def packed(self) -> bytes:
        """The masks as pack_masks bytes (what unpack_masks reads)."""
        return self.bits.tobytes() if self.masks is None else pack_masks(self.masks)


def pack_masks(masks: np.ndarray) -> bytes:
    """masks (N, H, W) bool -> bytes (N*H*W/8, rounded up): how masks travel between Ray stages."""
    return np.packbits(masks, axis=None).tobytes()


def unpack_masks(data: bytes | np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    """Inverse of pack_masks -> (count, height, width) bool."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * height * width)
    return bits.reshape(count, height, width).view(bool)  # unpackbits gives 0/1 bytes: valid bools, no copy


class MaskBackend(Protocol):
    name: str  # 'sam' or 'box'
    model_id: str  # e.g. 'sam-vit_h' or 'box-fill'
    checksum: str  # sha256 of the checkpoint bytes; '' when there is no checkpoint

    def predict(self, images: Sequence[np.ndarray], prompts: Sequence[PromptBatch]) -> list[TileMasks]:
        """images[i]: (H, W, 3) uint8; prompts[i]: that tile's prompts. Returns one TileMasks per tile."""
        ...
