"""SAM as the job's mask engine: checking its checkpoint before Ray starts, and building it in a
mask actor with the engine settings the run declared (masks/engines.py names it "sam")."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Optional

from samrs_ray.masks.model_types import PROMPT_CHUNK_CPU

if TYPE_CHECKING:
    from samrs_ray.config import JobConfig
    from samrs_ray.masks.engine_settings import EngineSettings
    from samrs_ray.masks.sam import SamBackend

log = logging.getLogger(__name__)
DISPLAY_NAMES = {"sam": "SAM", "sam2": "SAM 2", "hq-sam": "HQ-SAM"}


def check(config: "JobConfig") -> str:
    """The checkpoint's sha256, checked to be a SAM state dict of the right type ('' for tiny SAM
    with random weights)."""
    from samrs_ray.masks.checkpoint_files import checked_sha256, checkpoint_source

    # A file this node already checked (the same version) needs neither torch nor reading again.
    source = checkpoint_source(config.model_type, config.checkpoint, config.node_cache_dir(), config.storage_options)
    checked = None if source is None else checked_sha256(source[1], config.node_cache_dir(), config.model_type)
    if checked is not None:
        return checked
    from samrs_ray.masks.checkpoint import check_checkpoint

    return check_checkpoint(config.model_type, config.checkpoint, config.node_cache_dir(), config.storage_options)


def build(config: "JobConfig", expected_checksum: Optional[str]) -> "SamBackend":
    """SAM loaded once for this actor, on its GPU when it has one. An actor whose checkpoint's
    sha256 differs from `expected_checksum` (what the driver checked) refuses to start rather
    than file its masks under the driver's."""
    from samrs_ray.masks.checkpoint import load_sam
    from samrs_ray.masks.sam import SamBackend

    settings = actor_settings(config)
    model, checksum = load_sam(config.model_type, config.checkpoint, config.node_cache_dir(), config.storage_options,
                               expected_sha=expected_checksum)
    return SamBackend(model, config.model_type, checksum, settings)


def actor_settings(config: "JobConfig", sam_steps: bool = True) -> "EngineSettings":
    """A mask actor's engine settings, as the run declared them. sam_steps=False (SAM 2, HQ-SAM):
    without the steps written for SAM's ViT alone (SDPA patching, compilation)."""
    import torch

    from samrs_ray.masks.engine_settings import EngineSettings, engine_threads

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if config.gpus_per_actor and device == "cpu":
        # A node Ray counts as a GPU node without CUDA (a misconfigured image, Ray's fake
        # autoscaler): the masks are still right, only slow; the settings stay the declared ones.
        log.warning("mask actor on %s: Ray gave it %g GPU but torch finds no CUDA; %s runs on the CPU",
                    os.uname().nodename, config.gpus_per_actor, DISPLAY_NAMES.get(config.model, config.model))
    return EngineSettings(device=device, dtype=config.dtype or "float32", image_batch=config.image_batch,
                          prompt_chunk=config.prompt_chunk or PROMPT_CHUNK_CPU, multimask=config.multimask,
                          sdpa=sam_steps, compile=config.compile and sam_steps, pack=True,
                          threads=engine_threads(device, config.num_actors or 1))
