"""The HQ-SAM mask backend: SAM's batched backend (sam.py) with HQ-SAM's two differences.

- The image encoder also returns the features after its first global-attention block (the
  "interm embeddings"), which the HQ decoder fuses into its high-quality output token.
- The mask decoder takes `hq_token_only`: False (the upstream predictor's default) adds the HQ
  token's mask logits to SAM's; True keeps the HQ token's mask alone. It is an engine setting
  and part of every tile's fingerprint (config.output_settings).

Per box it computes what `segment_anything_hq.SamPredictor.set_image(tile)` +
`predict_torch(boxes=..., multimask_output=False, hq_token_only=...)` computes.
"""

from __future__ import annotations

import torch

from samrs_ray.masks.engine_settings import EngineSettings
from samrs_ray.masks.sam import PreparedTile, SamBackend
from samrs_ray.masks.sam2 import refuse_sam_only_steps

Features = tuple[torch.Tensor, list[torch.Tensor]]  # one tile's (1, 256, 64, 64) embedding and interm features


class HqSamBackend(SamBackend):
    """MaskBackend running a segment_anything_hq `Sam` model on batches of tiles."""

    name = "hq-sam"

    def __init__(self, model: torch.nn.Module, model_type: str, checksum: str, settings: EngineSettings,
                 hq_token_only: bool = False):
        # SAM's attention patch and compiled paths are written for segment_anything's ViT classes
        refuse_sam_only_steps(settings, "hq-sam")
        super().__init__(model, model_type, checksum, settings)
        self.model_id = f"hq-sam-{model_type}"
        self.hq_token_only = hq_token_only

    def encode(self, tiles: list[PreparedTile]) -> list[Features]:
        """One image-encoder call for all tiles: per tile its (1, 256, 64, 64) embedding and the
        (1, 64, 64, C) features after each global-attention block (C: the encoder's width)."""
        pixels = torch.cat([tile.pixels for tile in tiles])  # (B, 3, 1024, 1024)
        embeddings, interm = self.image_encoder(pixels)
        return [(embeddings[i : i + 1], [level[i : i + 1] for level in interm]) for i in range(len(tiles))]

    def decode_prompts(self, points, boxes, mask_inputs, embedding: Features,
                       image_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + HQ mask decoder on n prompts (tensors.prompt_tensors' layout) -> the mask's
        logits (n, 1, 256, 256) and predicted IoU (n,). embedding: encode()'s; image_pe: (1, 256, 64, 64)."""
        features, interm = embedding
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        # with multimask_output the HQ decoder itself keeps SAM's best mask (by predicted IoU)
        logits, iou = self.mask_decoder(
            image_embeddings=features,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.settings.multimask,
            hq_token_only=self.hq_token_only,
            interm_embeddings=interm,
        )  # logits (n, 1, 256, 256), iou (n, 1)
        return logits, iou[:, 0]
