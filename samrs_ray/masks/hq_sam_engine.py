"""HQ-SAM as the job's mask engine (masks/engines.py names it "hq-sam"): checking its checkpoint
(SAM's keys plus the HQ decoder's) before Ray starts, and building it in a mask actor with the
declared engine settings and `hq_token_only` (a setting of the run, in every tile's fingerprint)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from samrs_ray.config import JobConfig
    from samrs_ray.masks.backend import MaskBackend


def check(config: "JobConfig") -> str:
    """The checkpoint's sha256, checked to be an HQ-SAM state dict of `model_type` ('' for the
    FAKE tiny model with random weights). A file this node already checked needs no torch."""
    from samrs_ray.masks.checkpoint_files import engine_check

    return engine_check("hq-sam", config, "samrs_ray.masks.hq_sam_model:build_hq_sam")


def build(config: "JobConfig", expected_checksum: Optional[str]) -> "MaskBackend":
    """HQ-SAM loaded once for this actor, on its GPU when it has one; an actor whose checkpoint's
    sha256 differs from the driver's refuses to start."""
    from samrs_ray.masks import engine_checkpoint
    from samrs_ray.masks.hq_sam import HqSamBackend
    from samrs_ray.masks.hq_sam_model import build_hq_sam
    from samrs_ray.masks.sam_engine import actor_settings

    model, checksum = engine_checkpoint.load("hq-sam", config.model_type, build_hq_sam, config.checkpoint,
                                             config.node_cache_dir(), config.storage_options,
                                             expected_sha=expected_checksum)
    return HqSamBackend(model, config.model_type, checksum, actor_settings(config, sam_steps=False),
                        hq_token_only=config.hq_token_only)
