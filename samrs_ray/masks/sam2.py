"""The SAM 2.1 mask backend: several tiles per image-encoder call, many prompts per decoder call.

Per tile it computes what `SAM2ImagePredictor.set_image(tile)` + `predict(box=..., multimask_output=False)`
computes for each box (same SAM2Transforms resize and normalisation, the same no-memory embedding
added to the lowest-resolution features, the same box-as-two-points prompt, upsampling and
threshold), only batched:

    tiles (H, W, 3) uint8 -> SAM2Transforms -> (B, 3, 1024, 1024) -> forward_image
      -> image embedding (B, 256, 64, 64) + high-res features (B, 32, 256, 256), (B, 64, 128, 128)
    per tile, per chunk of n prompts -> sam_prompt_encoder -> sam_mask_decoder -> (n, 1, 256, 256)
      -> bilinear to (H, W) -> logits > 0 -> (n, H, W) bool

Like the official predictor, the model is built with dynamic_multimask_via_stability (what
build_sam2 adds): with one mask asked for, a prompt whose single mask is unstable (stability
score < 0.98) gets the best of the decoder's other three masks instead. The masks equal the
predictor's for that reason too; sam2_model.POSTPROCESSING is where it is set.

The loop over tiles and chunks, out-of-memory halving, bf16 autocast, device packing and the
host copies are SamBackend's (sam.py); this class changes what differs: the transforms, the
encoder's outputs and the decoder's inputs. SDPA patching, compilation, static shapes and CUDA
graphs are SAM-only steps and are refused here.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from samrs_ray.masks.backend import PromptBatch
from samrs_ray.masks.engine_settings import DTYPES, EngineSettings, supports_bfloat16
from samrs_ray.masks.host_memory import keep_freed_memory
from samrs_ray.masks.sam import PreparedTile, SamBackend

Features = tuple[torch.Tensor, list[torch.Tensor]]  # one tile's image embedding and high-res features


def refuse_sam_only_steps(settings: EngineSettings, engine: str) -> None:
    """The fast-path steps written for SAM's ViT (sam.py) have no counterpart in this engine."""
    for name in ("sdpa", "compile", "static_shapes", "decoder_graphs"):
        if getattr(settings, name):
            raise ValueError(f"{engine}: the engine setting {name} is SAM's only; turn it off")


def stretched_mask_prompts(batch: PromptBatch, rows: slice, original_size: tuple[int, int]) -> np.ndarray:
    """R-Box mask prompts (n, 256, 256) in SAM 2's input frame for a tile that is not square.

    The planner draws them in SAM's frame (planning.prompts.rbox_mask_prompt: the longest side
    resized to 1024, then padded); SAM 2 stretches the tile to 1024 x 1024, so for a square tile
    the two frames are one, and otherwise each polygon (else its box) is filled again here, with
    the planner's pixel rule and logits."""
    from samrs_ray.planning.geometry import box_corners, fill_polygon
    from samrs_ray.planning.prompts import MASK_INSIDE, MASK_OUTSIDE

    height, width = original_size
    out = []
    for polygon, box in zip(batch.polygons[rows], batch.boxes[rows]):
        corners = polygon.astype(np.float64).reshape(4, 2) if np.isfinite(polygon).all() else \
            box_corners(box.astype(np.float64))
        inside = fill_polygon(corners * np.array([256 / width, 256 / height]), 256, 256)
        out.append(np.where(inside, MASK_INSIDE, MASK_OUTSIDE).astype(np.float32))
    return np.stack(out) if out else np.zeros((0, 256, 256), np.float32)


class Sam2Backend(SamBackend):
    """MaskBackend running a sam2 `SAM2Base` model on batches of tiles."""

    name = "sam2"

    def __init__(self, model: torch.nn.Module, model_type: str, checksum: str, settings: EngineSettings):
        from sam2.utils.transforms import SAM2Transforms

        refuse_sam_only_steps(settings, "sam2")
        self.settings = settings
        self.device = torch.device(settings.device)
        self.model = model.to(self.device).eval()
        self.model_id = f"sam2-{model_type}"
        self.checksum = checksum
        size = self.model.image_size
        # SAM2ImagePredictor's defaults: threshold 0, no hole or sprinkle removal
        self.transforms = SAM2Transforms(resolution=size, mask_threshold=0.0)
        self.feature_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
        self.dtype = DTYPES[settings.dtype]
        if self.dtype == torch.bfloat16 and not supports_bfloat16(self.device):
            warnings.warn(f"{self.device} has no native bfloat16; running SAM 2 in float32")
            self.dtype = torch.float32
        self.image_batch, self.prompt_chunk = settings.image_batch, settings.prompt_chunk
        if settings.reuse_host_memory:
            keep_freed_memory()
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        self.pad_chunks = False
        self.pinned = settings.pin_memory and self.device.type == "cuda"

    def dense_pe(self) -> torch.Tensor:
        return self.model.sam_prompt_encoder.get_dense_pe()

    def prepare(self, image: np.ndarray) -> PreparedTile:
        """image (H, W, 3) uint8 RGB -> (1, 3, 1024, 1024) as SAM2ImagePredictor.set_image makes it (on the host)."""
        pixels = self.transforms(image)[None]
        size = self.model.image_size
        return PreparedTile(pixels=self.to_device(pixels), input_size=(size, size),
                            original_size=(image.shape[0], image.shape[1]))

    def encode(self, tiles: list[PreparedTile]) -> list[Features]:
        """One image-encoder call for all tiles: per tile, the (1, 256, 64, 64) embedding and the
        high-res features [(1, 32, 256, 256), (1, 64, 128, 128)], as SAM2ImagePredictor.set_image_batch."""
        pixels = torch.cat([tile.pixels for tile in tiles])  # (B, 3, 1024, 1024)
        backbone = self.model.forward_image(pixels)
        _, vision_feats, _, _ = self.model._prepare_backbone_features(backbone)
        if self.model.directly_add_no_mem_embed:
            # SAM 2 is trained on videos: a single image gets the "no memory" embedding added
            vision_feats[-1] = vision_feats[-1] + self.model.no_mem_embed
        count = len(tiles)
        feats = [feat.permute(1, 2, 0).reshape(count, -1, *size)
                 for feat, size in zip(vision_feats[::-1], self.feature_sizes[::-1])][::-1]
        return [(feats[-1][i : i + 1], [level[i : i + 1] for level in feats[:-1]]) for i in range(count)]

    def prompts(self, batch: PromptBatch, original_size: tuple[int, int], rows: slice):
        """(points, mask_input) for sam_prompt_encoder, as SAM2ImagePredictor._prep_prompts and
        _predict make them: a box is two points labelled 2 and 3; coordinates are normalised by
        the tile size and scaled to 1024, in float32 on the device. points: ((n, k, 2), (n, k)) or
        None; mask_input: (n, 1, 256, 256) or None."""
        if batch.kind == "rbox-mask":
            masks = batch.mask_inputs[rows] if original_size[0] == original_size[1] else \
                stretched_mask_prompts(batch, rows, original_size)
            return None, torch.as_tensor(masks, dtype=torch.float, device=self.device)[:, None]
        if batch.kind == "point":
            coords = torch.as_tensor(batch.points[rows], dtype=torch.float, device=self.device)[:, None, :]
            coords = self.transforms.transform_coords(coords, normalize=True, orig_hw=original_size)
            return (coords, torch.ones(coords.shape[:2], dtype=torch.int, device=self.device)), None
        boxes = torch.as_tensor(batch.boxes[rows], dtype=torch.float, device=self.device)
        coords = self.transforms.transform_boxes(boxes, normalize=True, orig_hw=original_size)  # (n, 2, 2)
        labels = torch.tensor([[2, 3]], dtype=torch.int, device=self.device).repeat(len(coords), 1)
        return (coords, labels), None

    def decode_chunk(self, tile: PreparedTile, embedding: Features, batch: PromptBatch, image_pe: torch.Tensor,
                     start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts [start, stop) of one tile -> masks (n, H, W) bool and predicted IoU (n,) float32
        (SamBackend.decode_chunk's contract). embedding: the tile's encode() output; image_pe: (1, 256, 64, 64)."""
        points, mask_input = self.prompts(batch, tile.original_size, slice(start, stop))
        sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        image_embed, high_res = embedding
        logits, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.settings.multimask,
            repeat_image=sparse.shape[0] > 1,  # one image, many prompts (the predictor's "batched mode")
            high_res_features=high_res,
        )  # logits (n, C, 256, 256), iou (n, C)
        best = iou.argmax(dim=1)
        picked = torch.arange(iou.shape[0], device=iou.device)
        logits, iou = logits[picked, best][:, None], iou[picked, best]
        masks = self.transforms.postprocess_masks(logits, tile.original_size)[:, 0] > self.transforms.mask_threshold
        return (masks if self.settings.pack else self.to_host(masks)), self.to_host(iou.float())
