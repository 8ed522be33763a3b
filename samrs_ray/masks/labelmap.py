"""Instance masks -> one semantic label map (uint8 class ids, 255 = unlabeled)."""

from __future__ import annotations

import numpy as np

from samrs_ray.classes import IGNORE_ID

# 'annotation': paint in annotation order, the later instance wins an overlap (SAMRS's rule).
# 'area-desc': paint the larger instances first, so a small object on a large one stays visible.
PAINT_ORDERS = ("annotation", "area-desc")


def paint_label_map(masks: np.ndarray, class_ids: np.ndarray, order: str = "annotation") -> np.ndarray:
    """masks (N, H, W) bool, class_ids (N,) ints in [0, 254] -> label map (H, W) uint8.

    Starts at IGNORE_ID (255) and paints each instance's pixels with its class id.
    'area-desc' sorts stably, so equal areas keep annotation order.
    """
    if order not in PAINT_ORDERS:
        raise ValueError(f"unknown paint order {order!r}; expected one of {PAINT_ORDERS}")
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    class_ids = np.asarray(class_ids)
    if class_ids.shape != (masks.shape[0],):
        raise ValueError(f"{masks.shape[0]} masks but class_ids has shape {class_ids.shape}")
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= IGNORE_ID):
        raise ValueError(f"class ids must be in [0, {IGNORE_ID - 1}], got {class_ids.min()}..{class_ids.max()}")
    label = np.full(masks.shape[1:], IGNORE_ID, dtype=np.uint8)
    sequence = range(len(masks))
    if order == "area-desc":
        areas = masks.reshape(len(masks), -1).sum(axis=1)
        sequence = np.argsort(-areas, kind="stable")
    for i in sequence:
        label[masks[i].astype(bool, copy=False)] = class_ids[i]
    return label
