"""The SAM engine's settings (what each opt-in step of the fast path does, and its default) and
the facts about the device they follow from: bf16 support, CPU threads per engine, out of memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from samrs_ray.masks.fast_attention import KERNELS
from samrs_ray.masks.model_types import IMAGE_BATCH, PROMPT_CHUNK_GPU

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class EngineSettings:
    """How the engine runs.

    With float32, prompt_chunk=1 and sdpa/compile off, the masks are bit-for-bit those of
    SamPredictor.predict(box=...). Larger chunks, sdpa and compile change the float reduction
    order (logits move by ~1e-6 relative) and may flip a boundary pixel or two per mask.
    On a CPU, prompt_chunk 1-4 and image_batch 1 are fastest and smallest (each prompt carries
    a 4 MB image-token tensor through the decoder: chunk 64 took 5-14% longer and 2.6 GB more
    RSS on the bench box); 64 suits a GPU. Figures for every setting: bench/RESULTS.md.
    """

    device: str = "cpu"
    dtype: str = "float32"  # "float32" | "bfloat16" (autocast)
    image_batch: int = IMAGE_BATCH  # tiles per image-encoder call
    prompt_chunk: int = PROMPT_CHUNK_GPU  # prompts per prompt-encoder/mask-decoder call
    multimask: bool = False  # True: SAM's 3 masks per prompt, keep the one with the best predicted IoU
    pack: bool = False  # hand masks over bit-packed, packed on the device (TileMasks.bits); the Ray job's choice
    sdpa: bool = False  # image-encoder attention through F.scaled_dot_product_attention (patches the model)
    compile: bool = False  # torch.compile the image encoder and mask decoder (CPU: 12-33 s to compile, then 1.6x)
    pin_memory: bool = True  # CUDA: page-locked host buffers, asynchronous copies, one sync per tile
    reuse_host_memory: bool = True  # glibc: keep freed host memory in the process (see host_memory.py)
    threads: Optional[int] = None  # torch CPU threads for this process; None: leave as it is
    # The opt-in steps of bench/gpu_steps.py; each default is the engine's behaviour before them.
    attention: str = "sdpa"  # with sdpa: "sdpa" (bias as attn_mask) | "flash-relpos" (bias fused, Triton, CUDA)
    sync: str = "tile"  # CUDA: wait for the device once per "tile", or once per encoder "batch" (fuller queue)
    upsample_dtype: str = "float32"  # dtype of the mask upsampling to tile size ("bfloat16": half the bytes)
    compile_mode: Optional[str] = None  # with compile: torch.compile mode of the image encoder (None: default)
    compile_blocks: bool = False  # with compile: compile each ViT block, not the whole encoder (2 compiles, not 32)
    static_shapes: bool = False  # pad the last encoder batch and every decoder chunk to full size: one shape each
    decoder_graphs: bool = False  # CUDA: prompt encoder + mask decoder as CUDA graphs (chunks padded to prompt_chunk)

    def __post_init__(self) -> None:
        for name in ("dtype", "upsample_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"{name} must be one of {tuple(DTYPES)}, not {getattr(self, name)!r}")
        if self.attention not in KERNELS or (self.attention != "sdpa" and not self.sdpa):
            raise ValueError(f"attention must be one of {KERNELS} (all but 'sdpa' with sdpa=True), "
                             f"not {self.attention!r}")
        if self.sync not in ("tile", "batch"):
            raise ValueError(f"sync must be 'tile' or 'batch', not {self.sync!r}")
        if self.image_batch < 1 or self.prompt_chunk < 1:
            raise ValueError(
                f"image_batch and prompt_chunk must be >= 1 (got {self.image_batch}, {self.prompt_chunk})"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, not {self.threads}")


def engine_threads(device: str, engines: int = 1) -> Optional[int]:
    """CPU threads for one engine process: the cores this process may run on, shared by `engines`
    engines on the machine; None (leave torch's setting alone) when the engine runs on a GPU.

    Ray starts an actor with OMP_NUM_THREADS set to its num_cpus (1 by default), so torch in a
    SAM actor would use a single core even where that actor is the node's only heavy work.
    """
    if device != "cpu":
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, engines))


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error)
    )


def supports_bfloat16(device: torch.device) -> bool:
    """Whether bf16 autocast is native on `device` (emulated bf16 on an AVX2 CPU is ~40x slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return True
