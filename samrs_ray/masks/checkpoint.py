"""SAM checkpoints: check and load safely (fetching and hashing the files: checkpoint_files.py).

A checkpoint is a plain state dict of tensors (the official release files are). It is read
with `torch.load(..., weights_only=True)`, so a file that carries code is refused, never run.
Every problem (cannot fetch, corrupt, wrong model type) is a `CheckpointError` that names the
URI, raised when the model is loaded, i.e. before any tile is processed.
"""

from __future__ import annotations

import pickle
import zipfile
from functools import partial
from typing import Optional

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samrs_ray.errors import CheckpointError
from samrs_ray.masks.checkpoint_files import checkpoint_source, file_sha256, remember
from samrs_ray.masks.model_types import MODEL_TYPES

TINY_DEPTH = 2
TINY_EMBED_DIM = 64
TINY_SEED = 0

# The image normalisation every SAM builder passes to Sam (segment_anything/build_sam.py).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

# (image_encoder depth, embed dim) of each model type: how a state dict tells its type.
ENCODER_SHAPES: dict[tuple[int, int], str] = {
    (32, 1280): "vit_h",
    (24, 1024): "vit_l",
    (12, 768): "vit_b",
    (TINY_DEPTH, TINY_EMBED_DIM): "tiny",
}


def build_tiny_sam() -> Sam:
    """A FAKE stand-in for SAM, for fast CPU tests: random weights, not a trained model.

    Same modules and interfaces as the real SAM (1024 input, 16 px patches, 64x64x256 image
    embedding, the real prompt encoder and two-way mask decoder), so SamPredictor and the
    engine treat it exactly like vit_h; only the image encoder is 2 narrow blocks and the
    decoder MLPs are narrower. Untrained: its masks mean nothing, only their equality does.
    """
    embed_dim, image_size, patch_size = 256, 1024, 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=TINY_EMBED_DIM,
            depth=TINY_DEPTH,
            num_heads=2,
            mlp_ratio=2,
            out_chans=embed_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=14,
            global_attn_indexes=(TINY_DEPTH - 1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=embed_dim,
            image_embedding_size=(image_size // patch_size, image_size // patch_size),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=embed_dim, mlp_dim=256, num_heads=8),
            transformer_dim=embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=64,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    ).eval()


def build_sam(model_type: str) -> Sam:
    """The architecture of `model_type` with random weights (no checkpoint read)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown SAM model type {model_type!r}; expected one of {MODEL_TYPES}")
    if model_type == "tiny":
        # fork_rng: a fixed seed for reproducible tiny weights without touching the caller's RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            return build_tiny_sam()
    return sam_model_registry[model_type](checkpoint=None)


def read_state_dict(path: str, uri: str) -> dict[str, torch.Tensor]:
    """The tensors in a checkpoint file, read with weights_only=True (code is refused)."""
    try:
        # mmap needs torch's zip format (torch.save since 1.6); older files are read whole
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        detail = unpickler_reason(error)
        if "global" in detail.lower():  # a class or function reference: the pickle would run code
            raise CheckpointError(
                f"{uri}: refused to load: the file references code ({detail}); torch.load with "
                f"weights_only=True only reads tensors, and a SAM checkpoint is a plain state dict"
            ) from error
        raise CheckpointError(f"{uri}: not a readable PyTorch checkpoint (corrupt?): {detail}") from error
    except Exception as error:
        raise CheckpointError(
            f"{uri}: not a readable PyTorch checkpoint (corrupt or truncated?): {type(error).__name__}: {error}"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{uri}: expected a state dict of tensors, found {type(state).__name__}")
    return state


def unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The one informative line of torch's long weights_only error, e.g. 'Unsupported global: ...'."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    return text.split("\n", 1)[0].strip() or type(error).__name__


def guess_model_type(state: dict[str, torch.Tensor]) -> Optional[str]:
    """Which of MODEL_TYPES a state dict is for, from its encoder depth and width; None if unknown."""
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    patch = state.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return None
    return ENCODER_SHAPES.get((depth, int(patch.shape[0])))


def load_sam(
    model_type: str,
    checkpoint: Optional[str],
    cache_dir: str,
    storage_options: Optional[dict] = None,
    device: str = "cpu",
    expected_sha: Optional[str] = None,
) -> tuple[Sam, str]:
    """SAM of `model_type` with the weights at `checkpoint` (any fsspec URI), in eval mode.

    Returns (model, sha256 of the checkpoint bytes). checkpoint=None means the official
    release file for vit_h/vit_l/vit_b, and random weights (fixed seed, sha '') for 'tiny'.
    With `expected_sha` (what the job's driver found), a file with other bytes is refused.
    """
    source = checkpoint_source(model_type, checkpoint, cache_dir, storage_options)
    if source is None:
        return build_sam("tiny").to(device).eval(), ""
    uri, path = source
    model, sha = sam_from_file(model_type, path, uri), file_sha256(path, cache_dir)
    if expected_sha is not None and sha != expected_sha:
        # Outputs are fingerprinted with the driver's checksum; masks from other weights must not
        # be filed under it.
        raise CheckpointError(
            f"{uri}: this worker's copy ({path}) has sha256 {sha[:12]}..., the job's driver read "
            f"{expected_sha[:12]}...: the file changed during the run, or this node's cache holds "
            f"an older copy (delete it to fetch the file again)"
        )
    return model.to(device).eval(), sha


def check_checkpoint(
    model_type: str, checkpoint: Optional[str], cache_dir: str, storage_options: Optional[dict] = None
) -> str:
    """What load_sam checks (the file is a SAM state dict of `model_type`), for the job's driver,
    which needs no model: the file is memory-mapped, so nothing is copied or moved to a device.
    Returns the checkpoint's sha256 ('' for tiny SAM with random weights)."""
    source = checkpoint_source(model_type, checkpoint, cache_dir, storage_options)
    if source is None:
        return ""
    uri, path = source
    sam_from_file(model_type, path, uri)
    sha = file_sha256(path, cache_dir)
    remember(path, cache_dir, sha256=sha, checked=model_type)
    return sha


def sam_from_file(model_type: str, path: str, uri: str) -> Sam:
    """SAM of `model_type` whose parameters are the checkpoint's own tensors, on the CPU.

    The model is built on the meta device and given the file's tensors (memory-mapped where
    the file allows), so no random initialisation runs and nothing is copied: for vit_h that
    is ~3 s of init and a 2.5 GB copy saved per process. pixel_mean and pixel_std are the
    only buffers no checkpoint holds (non-persistent in Sam); they get SAM's fixed values.
    """
    with torch.device("meta"):
        model = build_sam(model_type)
    fit_state_dict(model, read_state_dict(path, uri), model_type, uri)
    model.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
    model.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a segment-anything version with other non-persistent buffers
        raise RuntimeError(f"SAM tensors that no checkpoint holds and sam_from_file does not set: {left}")
    return model.float()  # a half-precision file is upcast, as loading into a built model would


def fit_state_dict(model: Sam, state: dict[str, torch.Tensor], model_type: str, uri: str) -> None:
    """Give `model` (built on the meta device) the tensors of `state` themselves, or raise
    CheckpointError saying which model type the file is for."""
    found = guess_model_type(state)
    if found is not None and found != model_type:
        raise CheckpointError(
            f"{uri}: checkpoint is for SAM {found}, not {model_type} "
            f"(its image encoder has the shape of {found}); use model type {found!r}"
        )
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        hint = f" (it looks like {found})" if found else ""
        raise CheckpointError(f"{uri}: does not fit SAM {model_type}{hint}: {error}") from error
