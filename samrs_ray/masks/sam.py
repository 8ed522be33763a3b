"""The SAM mask backend: encode several tiles per image-encoder call, then decode all prompts
of each tile in chunks.

Per tile it computes what the official `SamPredictor.set_image(tile)` + `predict(box=...)`
computes for each box (same resize, normalisation, padding, prompt transform, upsampling
and threshold), only batched:

    tiles (H, W, 3) uint8 -> ResizeLongestSide -> model.preprocess -> (B, 3, 1024, 1024)
      -> image_encoder -> (B, 256, 64, 64)
    per tile, per chunk of n prompts -> prompt_encoder -> mask_decoder -> (n, 1, 256, 256) logits
      -> postprocess_masks -> (n, 1, H, W) -> logits > mask_threshold -> (n, H, W) bool

The fast path (EngineSettings) adds, each measured in bench/RESULTS.md: bf16 autocast, SDPA
attention in the image encoder (fast_attention.py), torch.compile of the image encoder and
mask decoder, page-locked host buffers with one device sync per tile (CUDA), and keeping freed
host memory in the process (host_memory.py). Opt-in, measured by bench/gpu_steps.py and off by
default: the fused rel-pos flash-attention kernel (flash_relpos.py), per-block compilation with
static shapes, CUDA graphs for the mask decoder, one sync per encoder batch, bf16 upsampling.

The settings live in engine_settings.py, the tensor helpers (input checks, prompts as tensors,
padding, packing to bits) in tensors.py.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, TypeVar

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from samrs_ray.masks.backend import PromptBatch, TileMasks
from samrs_ray.masks.engine_settings import DTYPES, EngineSettings, is_out_of_memory, supports_bfloat16
from samrs_ray.masks.fast_attention import use_sdpa
from samrs_ray.masks.host_memory import keep_freed_memory
from samrs_ray.masks.tensors import check_inputs, pack_bits, pad_rows, prompt_tensors

T = TypeVar("T")


@dataclass
class PreparedTile:
    """One tile as the image encoder takes it.

    pixels: (1, 3, S, S) float, normalised and padded (S = image_encoder.img_size).
    input_size: (h, w) after ResizeLongestSide, before padding. original_size: (H, W).
    """

    pixels: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


class SamBackend:
    """MaskBackend running a segment_anything `Sam` model on batches of tiles.

    The backend owns `model`: it moves it to the device and, with settings.sdpa, swaps the
    attention of its image encoder (see fast_attention.use_sdpa).
    """

    name = "sam"

    def __init__(self, model: Sam, model_type: str, checksum: str, settings: EngineSettings):
        self.settings = settings
        self.device = torch.device(settings.device)
        self.model = model.to(self.device).eval()
        self.model_id = f"sam-{model_type}"
        self.checksum = checksum
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self.dtype = DTYPES[settings.dtype]
        if self.dtype == torch.bfloat16 and not supports_bfloat16(self.device):
            warnings.warn(f"{self.device} has no native bfloat16; running SAM in float32 (the same masks, faster here)")
            self.dtype = torch.float32
        self.upsample_dtype = DTYPES[settings.upsample_dtype] if supports_bfloat16(self.device) else torch.float32
        if settings.decoder_graphs and self.device.type != "cuda":
            raise ValueError(f"decoder_graphs (CUDA graphs) needs a CUDA device, not {self.device}")
        # The batch sizes that fit: halved (and kept halved) when the device runs out of memory.
        self.image_batch = settings.image_batch
        self.prompt_chunk = settings.prompt_chunk
        if settings.reuse_host_memory:
            keep_freed_memory()
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        if settings.sdpa:
            use_sdpa(self.model.image_encoder, settings.attention)
        self.image_encoder = self.model.image_encoder
        self.mask_decoder = self.model.mask_decoder
        self.decoder = self.decode_prompts
        # Padded batches and chunks keep one input shape: no recompiles, and the CUDA graphs need it.
        self.pad_chunks = settings.static_shapes or settings.decoder_graphs
        dynamic = False if settings.static_shapes else None
        if settings.compile:
            # Compiled wrappers share the model's weights. Static shapes first; a second batch or
            # chunk size recompiles once with a dynamic batch dimension (torch's automatic dynamic).
            # compile_blocks: all windowed blocks share one compiled graph (their weights are its inputs),
            # the global blocks another: ViT-H compiles 2 blocks' worth of code instead of 32.
            for block in self.model.image_encoder.blocks if settings.compile_blocks else ():
                block.compile(mode=settings.compile_mode, dynamic=dynamic)
            if not settings.compile_blocks:
                self.image_encoder = torch.compile(self.image_encoder, mode=settings.compile_mode, dynamic=dynamic)
            if not settings.decoder_graphs:
                self.mask_decoder = torch.compile(self.mask_decoder, dynamic=dynamic)
        if settings.decoder_graphs:
            # reduce-overhead: the ~150 small kernels of a decoder call replayed as one CUDA graph
            self.decoder = torch.compile(self.decode_prompts, mode="reduce-overhead", dynamic=False)
        # Page-locked host memory makes host<->GPU copies asynchronous; it means nothing on a CPU.
        self.pinned = settings.pin_memory and self.device.type == "cuda"

    def predict(self, images: Sequence[np.ndarray], prompts: Sequence[PromptBatch]) -> list[TileMasks]:
        """images[i]: (H, W, 3) uint8 RGB; prompts[i]: its prompts. One TileMasks per tile, in order."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompt batches")
        for index, (image, batch) in enumerate(zip(images, prompts)):
            check_inputs(image, batch, index)
        results: list[TileMasks] = []
        with torch.inference_mode(), self.autocast():
            image_pe = self.dense_pe()  # (1, 256, 64, 64), same for every call
            start = 0
            while start < len(images):
                count = self.image_batch
                tiles = [self.prepare(image) for image in images[start : start + count]]
                embeddings = self.retry_smaller("image_batch", lambda: self.encode(tiles))
                if embeddings is None:
                    continue
                batches = prompts[start : start + count]
                if self.settings.sync == "batch":
                    # one wait per encoder batch: the device decodes tile i while Python queues tile i+1
                    pending = [self.queue_tile(t, e, b, image_pe) for t, e, b in zip(tiles, embeddings, batches)]
                    self.wait()
                    results.extend(finish() for finish in pending)
                else:
                    results.extend(self.decode_tile(t, e, b, image_pe) for t, e, b in zip(tiles, embeddings, batches))
                start += len(tiles)
        return results

    def dense_pe(self) -> torch.Tensor:
        """The prompt encoder's (1, 256, 64, 64) positional encoding of the image embedding."""
        return self.model.prompt_encoder.get_dense_pe()

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def prepare(self, image: np.ndarray) -> PreparedTile:
        """Resize and normalise one tile exactly as SamPredictor.set_image does. image: (H, W, 3) uint8 RGB."""
        target = self.transform.get_preprocess_shape(image.shape[0], image.shape[1], self.transform.target_length)
        # apply_image goes through PIL even when the size is already right, where PIL's resize is a copy
        same_size = target == image.shape[:2]
        resized = np.require(image, requirements="W") if same_size else self.transform.apply_image(image)
        pixels = self.to_device(torch.from_numpy(resized)).permute(2, 0, 1).contiguous()[None]
        return PreparedTile(
            pixels=self.model.preprocess(pixels),
            input_size=(resized.shape[0], resized.shape[1]),
            original_size=(image.shape[0], image.shape[1]),
        )

    def to_device(self, host: torch.Tensor) -> torch.Tensor:
        """A host tensor on the engine's device; from page-locked memory, asynchronously, on CUDA."""
        if self.pinned:
            return host.pin_memory().to(self.device, non_blocking=True)
        return host.to(self.device)

    def to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """A device tensor's copy on the host: into page-locked memory without waiting, on CUDA
        (read it only after self.wait()); the tensor itself on a CPU."""
        if not self.pinned:
            return tensor.cpu()
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        return host.copy_(tensor, non_blocking=True)

    def wait(self) -> None:
        """Wait for this engine's queued device work (and copies) to finish."""
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def encode(self, tiles: list[PreparedTile]) -> list[torch.Tensor]:
        """One image-encoder call for all tiles: a (1, 256, 64, 64) embedding per tile."""
        pixels = torch.cat([tile.pixels for tile in tiles])  # (B, 3, 1024, 1024)
        if self.settings.static_shapes and len(tiles) < self.image_batch:
            # the compiled encoder's one shape: copies of the last tile, their embeddings dropped below
            pixels = torch.cat([pixels, pixels[-1:].expand(self.image_batch - len(tiles), -1, -1, -1)])
        embeddings = self.image_encoder(pixels)
        return list(embeddings.split(1)[: len(tiles)])

    def decode_tile(
        self, tile: PreparedTile, embedding: torch.Tensor, batch: PromptBatch, image_pe: torch.Tensor
    ) -> TileMasks:
        """All prompts of one tile -> its masks, waiting for the device once.
        embedding: the tile's (1, 256, 64, 64) image embedding; image_pe: (1, 256, 64, 64) get_dense_pe()."""
        finish = self.queue_tile(tile, embedding, batch, image_pe)
        self.wait()  # once per tile: the device runs ahead of Python while the chunks are queued
        return finish()

    def queue_tile(
        self, tile: PreparedTile, embedding: torch.Tensor, batch: PromptBatch, image_pe: torch.Tensor
    ) -> Callable[[], TileMasks]:
        """Queue one tile's device work; returns what builds its TileMasks after self.wait().
        embedding: the tile's (1, 256, 64, 64) image embedding; image_pe: (1, 256, 64, 64) get_dense_pe()."""
        height, width = tile.original_size
        masks: list[torch.Tensor] = []  # (n, H, W) bool chunks: on the host, or on the device when packing
        scores: list[torch.Tensor] = []
        start = 0
        while start < len(batch):
            stop = start + self.prompt_chunk
            decoded = self.retry_smaller(
                "prompt_chunk", lambda: self.decode_chunk(tile, embedding, batch, image_pe, start, stop)
            )
            if decoded is None:
                continue
            masks.append(decoded[0])
            scores.append(decoded[1])
            start = stop
        if not masks:
            return lambda: TileMasks(masks=np.zeros((0, height, width), bool), scores=np.zeros(0, np.float32))
        if self.settings.pack:
            stacked = torch.cat(masks)  # (N, H, W) bool on the device
            # numpy packs 15x faster than torch on a CPU; on a GPU, packing there copies 8x fewer bytes back
            on_cpu = self.device.type == "cpu"
            bits = np.packbits(stacked.numpy(), axis=None) if on_cpu else self.to_host(pack_bits(stacked))
            return lambda: TileMasks(masks=None, scores=np.concatenate([s.numpy() for s in scores]),
                                     bits=np.asarray(bits), shape=tuple(stacked.shape))
        return lambda: TileMasks(masks=np.concatenate([m.numpy() for m in masks]),
                                 scores=np.concatenate([s.numpy() for s in scores]))

    def decode_chunk(
        self,
        tile: PreparedTile,
        embedding: torch.Tensor,
        batch: PromptBatch,
        image_pe: torch.Tensor,
        start: int,
        stop: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts [start, stop) of one tile -> masks (n, H, W) bool (on the device when packing, else
        on the host) and predicted IoU (n,) float32 on the host (on CUDA still being copied: read
        them after self.wait())."""
        logits, iou = self.low_res_logits(batch, tile.original_size, embedding, image_pe, slice(start, stop))
        # Upsample only the kept mask, in upsample_dtype, and threshold on the device: a bool copy is 4x smaller.
        masks = self.model.postprocess_masks(logits.to(self.upsample_dtype), tile.input_size, tile.original_size)
        masks = masks[:, 0] > self.model.mask_threshold
        return (masks if self.settings.pack else self.to_host(masks)), self.to_host(iou.float())

    def low_res_logits(
        self,
        batch: PromptBatch,
        original_size: tuple[int, int],
        embedding: torch.Tensor,
        image_pe: torch.Tensor,
        rows: slice,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts `rows` of one tile -> the kept mask's logits (n, 1, 256, 256) and predicted IoU (n,).

        embedding: the tile's (1, 256, 64, 64) image embedding; image_pe: get_dense_pe().
        """
        points, boxes, mask_inputs = prompt_tensors(batch, original_size, rows, self.transform, self.device)
        count, size = len(range(len(batch))[rows]), self.prompt_chunk
        if self.pad_chunks:
            # One decoder shape: the last prompt repeated up to prompt_chunk, its copies' outputs dropped.
            # Padding the prompts, not the embeddings, keeps the dense embedding an expanded view.
            points = None if points is None else (pad_rows(points[0], size), pad_rows(points[1], size))
            boxes, mask_inputs = pad_rows(boxes, size), pad_rows(mask_inputs, size)
        if not self.settings.decoder_graphs:
            logits, iou = self.decoder(points, boxes, mask_inputs, embedding, image_pe)
            return (logits[:count], iou[:count]) if self.pad_chunks else (logits, iou)
        torch.compiler.cudagraph_mark_step_begin()
        logits, iou = self.decoder(points, boxes, mask_inputs, embedding, image_pe)
        return logits[:count].clone(), iou[:count].clone()  # the graph's outputs are overwritten by its next replay

    def decode_prompts(self, points: Optional[tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
                       mask_inputs: Optional[torch.Tensor], embedding: torch.Tensor,
                       image_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on n prompts (prompt_tensors' layout) -> the kept mask's logits
        (n, 1, 256, 256) and predicted IoU (n,). embedding, image_pe: (1, 256, 64, 64)."""
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_inputs)
        logits, iou = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.settings.multimask,
        )  # logits (n, C, 256, 256), iou (n, C); C = 3 with multimask else 1
        best = iou.argmax(dim=1)
        picked = torch.arange(iou.shape[0], device=iou.device)
        return logits[picked, best][:, None], iou[picked, best]

    def retry_smaller(self, setting: str, step: Callable[[], T]) -> Optional[T]:
        """step() or, when the device runs out of memory, None after halving `setting`.

        The caller re-runs the step with the smaller size; at size 1 the error is re-raised.
        """
        try:
            return step()
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            size = getattr(self, setting)
            if size <= 1:
                raise RuntimeError(
                    f"SAM {self.model_id} ran out of memory on {self.device} even with {setting}=1; "
                    f"use a smaller model, a device with more memory, or dtype='bfloat16'"
                ) from error
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        warnings.warn(f"out of memory on {self.device}: retrying with {setting}={size // 2}")
        setattr(self, setting, size // 2)
        return None


