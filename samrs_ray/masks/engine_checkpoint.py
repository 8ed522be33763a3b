"""Checkpoints of the SAM 2.1 and HQ-SAM engines: where each model type's official file is, what
a state dict is for (so that a file of another engine or size is refused naming what it is),
and reading one with torch.load(weights_only=True) into the engine's model.

SAM's own checkpoints are checkpoint.py's; fetching, caching and hashing are checkpoint_files.py's,
shared by every engine.
"""

from __future__ import annotations

import pickle
import zipfile
from typing import Callable, Optional

import torch

from samrs_ray.errors import CheckpointError
from samrs_ray.masks.checkpoint import PIXEL_MEAN, PIXEL_STD, guess_model_type, unpickler_reason
from samrs_ray.masks.checkpoint_files import fetch_checkpoint, file_sha256, remember
from samrs_ray.masks.model_types import ENGINE_CHECKPOINTS

# (Hiera trunk blocks, trunk width) of each SAM 2 model type: how a state dict tells its size.
HIERA_SHAPES = {(12, 96): "hiera_t", (16, 96): "hiera_s", (24, 112): "hiera_b+", (48, 144): "hiera_l",
                (5, 16): "tiny"}


def describe(state: object) -> tuple[Optional[str], Optional[str]]:
    """(engine, model type) a loaded checkpoint is for, as far as its keys tell; None where unknown."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        inner = state["model"]
        blocks = len({k.split(".")[3] for k in inner if k.startswith("image_encoder.trunk.blocks.")})
        patch = inner.get("image_encoder.trunk.patch_embed.proj.weight")
        return "sam2", None if patch is None else HIERA_SHAPES.get((blocks, int(patch.shape[0])))
    if isinstance(state, dict) and "image_encoder.patch_embed.proj.weight" in state:
        engine = "hq-sam" if "mask_decoder.hf_token.weight" in state else "sam"
        return engine, guess_model_type(state)
    return None, None


def what_it_is(state: object) -> str:
    engine, model_type = describe(state)
    if engine is None:
        return "not a checkpoint of SAM, SAM 2 or HQ-SAM"
    return f"a {engine} {model_type or '(unknown size)'} checkpoint"


def source(engine: str, model_type: str, checkpoint: Optional[str], cache_dir: str,
           storage_options: Optional[dict]) -> Optional[tuple[str, str]]:
    """(URI, local path) of the weights, fetched into the cache when remote; None for the FAKE
    'tiny' model without a checkpoint (seeded random weights)."""
    if checkpoint is None and model_type == "tiny":
        return None
    uri = checkpoint if checkpoint is not None else ENGINE_CHECKPOINTS[engine][model_type]
    return uri, fetch_checkpoint(uri, cache_dir, storage_options)


def read(path: str, uri: str) -> object:
    """The checkpoint's contents, read with weights_only=True (a file that carries code is refused)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{uri}: refused or unreadable checkpoint: {unpickler_reason(error)}") from error
    except Exception as error:
        raise CheckpointError(
            f"{uri}: not a readable PyTorch checkpoint (corrupt or truncated?): {type(error).__name__}: {error}"
        ) from error


def fit(engine: str, model_type: str, model: torch.nn.Module, state: object, uri: str) -> None:
    """Load `state` into `model` (strictly: exactly the model's keys and shapes), or raise
    CheckpointError saying what the file is for."""
    found = describe(state)
    if found != (engine, model_type):
        if found[0] != engine or (found[1] is not None and found[1] != model_type):
            raise CheckpointError(f"{uri}: is {what_it_is(state)}, not a {engine} {model_type} one; "
                                  f"use --model {found[0] or '?'} --model-type {found[1] or '?'}")
    tensors = state["model"] if engine == "sam2" else state
    if not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise CheckpointError(f"{uri}: expected a state dict of tensors")
    on_meta = any(t.is_meta for t in model.parameters())
    try:
        model.load_state_dict(tensors, strict=True, assign=on_meta)
    except RuntimeError as error:
        raise CheckpointError(f"{uri}: does not fit {engine} {model_type}: {error}") from error
    if on_meta:
        # A model built on the meta device (no random init, no copy: checkpoint.sam_from_file's reason)
        # gets the file's tensors; SAM's normalisation is the only thing no checkpoint holds.
        model.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        model.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)
        left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise RuntimeError(f"{engine} tensors that no checkpoint holds: {left}")
        model.float()


def load(engine: str, model_type: str, build: Callable[[str, bool], torch.nn.Module], checkpoint: Optional[str],
         cache_dir: str, storage_options: Optional[dict] = None,
         expected_sha: Optional[str] = None) -> tuple[torch.nn.Module, str]:
    """(model with the checkpoint's weights, sha256 of the file); the FAKE tiny one with ''.
    build(model_type, on_meta) makes the architecture (on the meta device where it can, when a
    checkpoint will give it its tensors). With `expected_sha` (the driver's), other bytes are refused."""
    found = source(engine, model_type, checkpoint, cache_dir, storage_options)
    model = build(model_type, found is not None)
    if found is None:
        return model, ""
    uri, path = found
    fit(engine, model_type, model, read(path, uri), uri)
    sha = file_sha256(path, cache_dir)
    if expected_sha is not None and sha != expected_sha:
        # Outputs are fingerprinted with the driver's checksum; other weights' masks must not be filed under it.
        raise CheckpointError(f"{uri}: this worker's copy has sha256 {sha[:12]}..., the job's driver read "
                              f"{expected_sha[:12]}...: the file changed during the run, or this node's cache is stale")
    return model.eval(), sha


def check(engine: str, model_type: str, build: Callable[[str, bool], torch.nn.Module], checkpoint: Optional[str],
          cache_dir: str, storage_options: Optional[dict] = None) -> str:
    """What load checks, for the job's driver; remembers the file as checked, so that the next run
    on this node finds its hash without torch. Returns the sha256 ('' for the FAKE tiny model)."""
    _, sha = load(engine, model_type, build, checkpoint, cache_dir, storage_options)
    found = source(engine, model_type, checkpoint, cache_dir, storage_options)
    if found is not None:
        remember(found[1], cache_dir, sha256=sha, checked=f"{engine}:{model_type}")
    return sha
