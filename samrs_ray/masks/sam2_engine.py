"""SAM 2.1 as the job's mask engine (masks/engines.py names it "sam2"): checking its checkpoint
before Ray starts, and building it in a mask actor with the engine settings the run declared."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from samrs_ray.config import JobConfig
    from samrs_ray.masks.backend import MaskBackend


def check(config: "JobConfig") -> str:
    """The checkpoint's sha256, checked to hold exactly the SAM 2.1 `model_type` config's keys
    ('' for the FAKE tiny model with random weights). A file this node already checked needs no torch."""
    from samrs_ray.masks.checkpoint_files import engine_check

    return engine_check("sam2", config, "samrs_ray.masks.sam2_model:build_sam2_model")


def build(config: "JobConfig", expected_checksum: Optional[str]) -> "MaskBackend":
    """SAM 2.1 loaded once for this actor, on its GPU when it has one; an actor whose checkpoint's
    sha256 differs from the driver's refuses to start."""
    from samrs_ray.masks import engine_checkpoint
    from samrs_ray.masks.sam2 import Sam2Backend
    from samrs_ray.masks.sam2_model import build_sam2_model
    from samrs_ray.masks.sam_engine import actor_settings

    model, checksum = engine_checkpoint.load("sam2", config.model_type, build_sam2_model, config.checkpoint,
                                             config.node_cache_dir(), config.storage_options,
                                             expected_sha=expected_checksum)
    return Sam2Backend(model, config.model_type, checksum, actor_settings(config, sam_steps=False))

