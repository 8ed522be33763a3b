"""One run's configuration: what to read, how to make masks, where to write.

`output_settings()` is the part of the configuration that changes output bytes; it goes into
every tile's fingerprint, so changing any of it recomputes the tiles it affects (all of them).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from samrs_ray.encoding.labelmap import PAINT_ORDERS
from samrs_ray.errors import ConfigError
from samrs_ray.inputs.images import DEFAULT_MAX_PIXELS
from samrs_ray.inputs.presets import PROMPT_TYPES, Preset
from samrs_ray.masks.engines import ENGINES
from samrs_ray.masks.model_types import IMAGE_BATCH

# Bumped when the output of the same inputs and settings changes (a bug fix in the recipe),
# so that an incremental run recomputes everything once.
RECIPE_VERSION = 1

# How long a run that asks for GPUs waits for the first GPU node (KubeRay: pod scheduling, image
# pull, raylet start) before it fails and says how to run without GPUs.
DEFAULT_GPU_WAIT_S = 900.0
DEFAULT_RAY_TIMEOUT_S = 60.0  # how long --address may take to answer before the run is an outage (exit 4)


def default_cache_dir() -> str:
    """Where remote checkpoints are cached on *this* node: each node resolves its own home, since
    the driver's may not exist on a worker."""
    return os.path.join(os.path.expanduser("~"), ".cache", "samrs-ray")


@dataclass(frozen=True)
class JobConfig:
    """Everything `samrs-ray generate` needs. URIs are anything fsspec reads (local, s3://, gs://)."""

    preset: Preset
    images: str
    labels: str
    out: str
    model: str = "sam"  # an engine of masks/engines.ENGINES: sam, sam2, hq-sam, or box (the box fill, no weights)
    model_type: Optional[str] = None  # None: the engine's default (vit_h for sam and hq-sam, hiera_l for sam2)
    checkpoint: Optional[str] = None  # None: the official release file of model_type
    max_pixels: int = DEFAULT_MAX_PIXELS
    # map runs (--label-format vector): the raster bands giving R, G, B (1-based; None: by colour
    # interpretation), the stretch to 8 bits (None: none for 8-bit rasters, else percentile:2,98)
    # and the layers' class attribute
    bands: Optional[tuple[int, ...]] = None
    stretch: Optional[str] = None
    class_field: str = "class"
    stac_asset: Optional[str] = None  # --images a STAC document: the asset of each Item to read (None: 'visual')
    # --stac-search: `images` is a STAC API whose search (these collections, bbox, datetime) gives the scenes
    stac_search: bool = False
    collections: tuple[str, ...] = ()
    bbox: Optional[tuple[float, float, float, float]] = None  # west, south, east, north in lon/lat
    datetime: Optional[str] = None  # RFC 3339 instant or interval, e.g. 2025-01-01/2025-12-31
    paint_order: str = "annotation"
    write_color: bool = True
    storage_options: dict[str, Any] = field(default_factory=dict)
    # splits (splits.py): per-split list files {split: URI}, one split for every scene, a hashed ratio
    split_lists: dict[str, str] = field(default_factory=dict)
    split_file: Optional[str] = None  # '<scene> <split>' lines
    split: Optional[str] = None
    split_ratio: Optional[float] = None
    # engine
    # What each mask actor asks Ray for. None: 1 for SAM on a cluster (--address), so the autoscaler
    # brings GPU nodes up; on the embedded local Ray, 1 when this machine has a GPU, else 0.
    # Every engine default below follows from it, never from which nodes happen to be up.
    gpus_per_actor: Optional[float] = None
    gpu_wait_s: float = DEFAULT_GPU_WAIT_S
    device: Optional[str] = None  # None: 'cuda' where the actor's node has CUDA, else 'cpu' (with a warning)
    dtype: Optional[str] = None  # None: 'bfloat16' when GPUs are declared, else 'float32'
    image_batch: int = IMAGE_BATCH
    prompt_chunk: Optional[int] = None  # None: 64 with GPUs declared, else 4 (see EngineSettings)
    multimask: bool = False
    hq_token_only: bool = False  # hq-sam: the HQ token's mask alone (True) or added to SAM's (False, upstream's default)
    compile: bool = False  # torch.compile in each actor: minutes to compile, then faster (bench/RESULTS.md)
    # Ray
    address: Optional[str] = None  # None: start a local Ray
    ray_timeout_s: float = DEFAULT_RAY_TIMEOUT_S
    num_actors: Optional[int] = None  # None: with GPUs, a pool that grows with the GPUs; else 1
    shard_tiles: int = 1000  # tiles per Parquet shard
    keep_versions: int = 2  # committed versions whose files clean-up keeps readable
    cache_dir: Optional[str] = None  # None: each node's own default_cache_dir()

    def __post_init__(self) -> None:
        if self.model not in ENGINES:
            raise ConfigError(f"--model must be one of {tuple(ENGINES)}, not {self.model!r}")
        types = ENGINES[self.model].model_types
        if self.model_type is None:  # frozen: the engine's default is set once, here
            object.__setattr__(self, "model_type", ENGINES[self.model].default_type or "")
        if types and self.model_type not in types:
            raise ConfigError(f"--model-type of --model {self.model} must be one of {types}, not {self.model_type!r}")
        if self.paint_order not in PAINT_ORDERS:
            raise ConfigError(f"--paint-order must be one of {PAINT_ORDERS}, not {self.paint_order!r}")
        if self.preset.prompt not in PROMPT_TYPES:
            raise ConfigError(f"--prompt must be one of {PROMPT_TYPES}, not {self.preset.prompt!r}")
        for name in ("image_batch", "shard_tiles", "max_pixels", "keep_versions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.prompt_chunk is not None and self.prompt_chunk < 1:
            raise ConfigError("--prompt-chunk must be at least 1")
        if self.num_actors is not None and self.num_actors < 1:
            raise ConfigError("--num-actors must be at least 1")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ConfigError("--gpus-per-actor must be 0 (CPU only) or more")
        if self.gpu_wait_s <= 0:
            raise ConfigError("--gpu-wait must be a positive number of seconds")
        if self.ray_timeout_s <= 0:
            raise ConfigError("--ray-timeout must be a positive number of seconds")
        if self.bands is not None and (not 1 <= len(self.bands) <= 3 or min(self.bands) < 1):
            raise ConfigError("--bands takes 1 to 3 band numbers, counted from 1 (e.g. 4,3,2)")
        if self.stretch is not None:
            from samrs_ray.inputs.rasters import Stretch  # numpy only; checks the spelling before Ray starts
            Stretch.parse(self.stretch)
        if (self.collections or self.bbox or self.datetime) and not self.stac_search:
            raise ConfigError("--collection, --bbox and --datetime filter a --stac-search; give the API's URL there")
        if self.out.rstrip("/") in (self.images.rstrip("/"), self.labels.rstrip("/")):
            raise ConfigError("--out must not be the --images or --labels folder")

    def node_cache_dir(self) -> str:
        """The checkpoint cache of the node this is called on."""
        return self.cache_dir or default_cache_dir()

    @property
    def model_id(self) -> str:
        return ENGINES[self.model].model_id(self.model_type)

    def output_settings(self, model_checksum: str) -> dict[str, Any]:
        """Settings that change output bytes (JSON-able). Engine batch sizes are left out:
        they change speed, not the recipe. dtype is in: bf16 masks differ from fp32 ones."""
        p = self.preset
        engine = ENGINES[self.model]
        return {
            "recipe": RECIPE_VERSION,
            "preset": p.name,
            "classes": list(p.classes),
            "palette": [list(c) for c in p.palette] if self.write_color else None,
            "label_format": p.label_format,
            "prompt": p.prompt,
            "tile_size": p.tile_size,
            "gap": p.gap,
            "iof_thr": p.iof_thr,
            "pad_value": list(p.pad_value),
            "paint_order": self.paint_order,
            "model": self.model_id,
            "model_checksum": model_checksum,
            "dtype": self.dtype if ENGINES[self.model].model_types else None,
            "multimask": self.multimask if ENGINES[self.model].model_types else None,
            # map runs only, so that the fingerprints of label-file runs stay as they were
            **({"bands": list(self.bands or ()), "stretch": self.stretch, "class_field": self.class_field}
               if p.label_format == "vector" else {}),
            # an engine's own settings (hq-sam's hq_token_only); other engines' fingerprints stay as they were
            **{name: getattr(self, name) for name in engine.settings},
        }

    def public(self) -> dict[str, Any]:
        """The configuration as recorded in _run.json: storage options are left out (they may
        hold credentials)."""
        data = dataclasses.asdict(self)
        data["storage_options"] = sorted(self.storage_options)  # which keys were set, no values
        data["preset"] = {k: v for k, v in data["preset"].items() if k != "palette"}
        return data
