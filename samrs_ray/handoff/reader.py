"""Reading a committed dataset for training: a map-style PyTorch dataset, and a Ray Data reader
for Ray Train, both over one committed version at any fsspec URI.

    dataset = TileDataset("s3://bucket/sota", instances=True)
    example = dataset[0]
    example["image"]      (3, H, W) uint8 tensor, RGB
    example["label"]      (H, W) int64 tensor: class ids (preset order), 255 = unlabeled
    example["tile_id"]    str
    example["masks"]      (N, H, W) bool tensor, one per instance, in paint order (instances=True)
    example["classes"]    (N,) int64 tensor, each instance's class id (instances=True)

    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=4, shuffle=True)
    ray_dataset = tiles_dataset("s3://bucket/sota")   # rows: image, label, tile_id (numpy)

torch is imported only when an example is built, so the reader's own code needs none; a
DataLoader takes any object with __len__ and __getitem__.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Optional

import numpy as np

from samrs_ray.dataset import manifest, storage
from samrs_ray.dataset.versions import Version
from samrs_ray.encoding.png import decode_label_png
from samrs_ray.encoding.rle import decode_rle
from samrs_ray.inputs.images import decode_image

TILE_COLUMNS = ["tile_id", "split", "image_uri", "label_uri", "x0", "y0", "width", "height"]


def load_tile(row: dict[str, Any], storage_options: Optional[dict] = None) -> dict[str, Any]:
    """One tiles-table row -> {'tile_id', 'image' (H, W, 3) uint8, 'label' (H, W) uint8}."""
    pixels = decode_image(storage.read_bytes(row["image_uri"], storage_options), row["image_uri"])
    label = decode_label_png(storage.read_bytes(row["label_uri"], storage_options))
    if pixels.shape[:2] != label.shape:  # a tile that is the whole scene: the scene's pixels as they are
        raise ValueError(f"{row['tile_id']}: image {pixels.shape[:2]} and label map {label.shape} differ")
    return {"tile_id": row["tile_id"], "image": pixels, "label": label}


class TileDataset:
    """A committed version (None: the latest) of the dataset at `out`, one example per tile of
    `split` (None: every tile), in tile id order, for a torch DataLoader.

    Arguments:
      out (str): the dataset's folder, at any fsspec URI.
      split (str or None): 'train', 'val', ...; None for every tile.
      version (int or str or None): a version number or run id; None for the latest.
      instances (bool): also give each tile's instance masks.
      transform (Callable or None): maps each example dict to what the loader yields.

    Each example (a dict):
      image (torch.Tensor): (3, H, W) uint8, RGB.
      label (torch.Tensor): (H, W) int64, class ids in the preset's order, 255 = unlabeled.
      tile_id (str): the tile's id.
      masks (torch.Tensor): (N, H, W) bool, one per instance, in paint order (instances=True).
      classes (torch.Tensor): (N,) int64, each instance's class id (instances=True).
    """

    def __init__(self, out: str, split: Optional[str] = None, version: Version = None,
                 storage_options: Optional[dict] = None, instances: bool = False,
                 transform: Optional[Callable[[dict[str, Any]], Any]] = None) -> None:
        self.storage_options = storage_options
        self.transform = transform
        self.rows = tile_rows(out, split, version, storage_options)
        # instance masks stay as RLE strings until an example asks for them: small, and picklable
        # into DataLoader workers
        self.instances: Optional[dict[str, list[tuple[int, int, str]]]] = None
        if instances:
            table = manifest.read_dataset(out, "instances", storage_options,
                                          ["tile_id", "instance_id", "class_id", "mask_rle"], version=version)
            self.instances = defaultdict(list)
            for r in table.to_pylist():
                self.instances[r["tile_id"]].append((r["instance_id"], r["class_id"], r["mask_rle"]["counts"]))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Any:
        import torch

        row = self.rows[index]
        tile = load_tile(row, self.storage_options)
        example = {"tile_id": tile["tile_id"],
                   "image": torch.from_numpy(np.ascontiguousarray(tile["image"].transpose(2, 0, 1))),
                   "label": torch.from_numpy(tile["label"].astype(np.int64))}
        if self.instances is not None:
            found = sorted(self.instances.get(row["tile_id"], []))
            height, width = tile["label"].shape
            masks = np.zeros((len(found), height, width), dtype=bool)
            for i, (_, _, counts) in enumerate(found):
                masks[i] = decode_rle(counts, height, width)
            example["masks"] = torch.from_numpy(masks)
            example["classes"] = torch.tensor([c for _, c, _ in found], dtype=torch.int64)
        return self.transform(example) if self.transform else example


def tile_rows(out: str, split: Optional[str], version: Version, storage_options: Optional[dict]) -> list[dict]:
    """The tiles table's rows of one split (None: all), in tile id order."""
    rows = manifest.read_dataset(out, "tiles", storage_options, TILE_COLUMNS, version=version).to_pylist()
    if split is not None:
        rows = [r for r in rows if r["split"] == split]
    return sorted(rows, key=lambda r: r["tile_id"])


def tiles_dataset(out: str, split: Optional[str] = None, version: Version = None,
                  storage_options: Optional[dict] = None):
    """The same examples as a Ray Dataset whose PNGs Ray's workers read: for Ray Train's
    `datasets=` across nodes. Rows: image (H, W, 3) uint8, label (H, W) uint8 (255 = unlabeled),
    tile_id (str). The tiles table (one small row per tile) is read here; the pixels are read
    where the rows go."""
    import ray

    return ray.data.from_items(tile_rows(out, split, version, storage_options)).map(
        lambda row: load_tile(row, storage_options))
