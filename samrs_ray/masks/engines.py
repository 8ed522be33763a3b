"""The mask engines a run can ask for (`--model`), by name, and what the job needs to know of
each before loading it: its model types, the modules it needs, whether its actors want GPUs,
and how to check its weights and build it. Nothing here imports torch: the configuration, the
CLI and the preflight read this table, and only a mask actor builds an engine.

    ENGINES["sam"].build(config, expected_checksum)  # in a mask actor: a MaskBackend

Adding an engine is one entry here, one module with its `check` and `build` functions, and its
tests. SAM (sam_engine.py), SAM 2.1 (sam2_engine.py), HQ-SAM (hq_sam_engine.py) and the box fill
(box.py) are here; MobileSAM and EfficientViT-SAM are not (they install from git only).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from samrs_ray.masks.model_types import HQ_TYPES, MODEL_TYPES, SAM2_TYPES

if TYPE_CHECKING:
    from samrs_ray.config import JobConfig
    from samrs_ray.masks.backend import MaskBackend


@dataclass(frozen=True)
class Engine:
    name: str  # --model
    model_types: tuple[str, ...]  # --model-type choices; () when the engine has no weights
    needs: tuple[str, ...]  # modules that must be installed
    extra: str  # the package extra that installs them
    wants_gpu: bool  # its actors ask for GPUs on a cluster, and its numerics follow --dtype
    checker: str  # "module:function", (config) -> the weights' sha256 ('' without weights)
    builder: str  # "module:function", (config, expected sha256 or None) -> MaskBackend
    default_type: str = ""  # --model-type when none is given
    settings: tuple[str, ...] = ()  # JobConfig fields of this engine alone; part of every tile's fingerprint

    def model_id(self, model_type: str) -> str:
        """What the tiles table's `model` column and the fingerprint call this engine."""
        return f"{self.name}-{model_type}" if self.model_types else f"{self.name}-fill"

    def check(self, config: "JobConfig") -> str:
        return resolve(self.checker)(config)

    def build(self, config: "JobConfig", expected_checksum: Optional[str]) -> "MaskBackend":
        return resolve(self.builder)(config, expected_checksum)


def resolve(path: str) -> Callable:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


ENGINES: dict[str, Engine] = {
    "sam": Engine("sam", MODEL_TYPES, needs=("torch", "torchvision", "segment_anything"), extra="sam", wants_gpu=True,
                  checker="samrs_ray.masks.sam_engine:check", builder="samrs_ray.masks.sam_engine:build",
                  default_type="vit_h"),
    "sam2": Engine("sam2", SAM2_TYPES, needs=("torch", "torchvision", "sam2", "hydra"), extra="sam2", wants_gpu=True,
                   checker="samrs_ray.masks.sam2_engine:check", builder="samrs_ray.masks.sam2_engine:build",
                   default_type="hiera_l"),
    # segment_anything_hq imports timm without declaring it; its backend reuses segment_anything's transforms
    "hq-sam": Engine("hq-sam", HQ_TYPES, needs=("torch", "torchvision", "segment_anything", "segment_anything_hq", "timm"),
                     extra="hq-sam", wants_gpu=True, checker="samrs_ray.masks.hq_sam_engine:check",
                     builder="samrs_ray.masks.hq_sam_engine:build", default_type="vit_h", settings=("hq_token_only",)),
    "box": Engine("box", (), needs=(), extra="", wants_gpu=False,
                  checker="samrs_ray.masks.box:check", builder="samrs_ray.masks.box:build"),
}
