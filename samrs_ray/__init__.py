"""samrs-ray: SAMRS-style segmentation datasets from detection boxes, on Ray.

What a user calls is here, and only here (`__all__`); the folders below are the job's machinery,
free to change between releases.

    import samrs_ray

    record = samrs_ray.generate(preset="sota", images="DOTA/images", labels="DOTA/labelTxt",
                                out="s3://bucket/sota")          # RunRecord: .version, .counts
    tiles = samrs_ray.read("s3://bucket/sota", "tiles")           # pyarrow.Table, latest version
    old = samrs_ray.read("s3://bucket/sota", "instances", version=3)
    samrs_ray.versions("s3://bucket/sota")                        # [RunRecord, ...], oldest first

    dataset = samrs_ray.TileDataset("s3://bucket/sota", split="train")   # for a torch DataLoader
    dataset[0]["image"], dataset[0]["label"]                      # (3, H, W) uint8, (H, W) int64
    samrs_ray.tiles_dataset("s3://bucket/sota")                   # a Ray Dataset, for Ray Train
    samrs_ray.table_uris("s3://bucket/sota", "tiles")             # Parquet files, for any reader
    samrs_ray.export("s3://bucket/sota", "geo/", "geo")            # or "samrs", "mmseg", "coco"
    samrs_ray.SceneRasters("scenes/") & samrs_ray.LabelRasters("geo/")   # TorchGeo (torchgeo extra)

    samrs_ray.PRESETS["sota"].classes                             # class id -> name
    samrs_ray.decode_rle(row["mask_rle"]["counts"], h, w)         # (h, w) bool

Errors: every one subclasses SamrsRayError (and the builtin a caller would catch), with the exit
code `samrs-ray` ends with: ConfigError, CheckpointError, ConcurrentRunError, RunFailed,
StoreError; InputError is a bad input file, which a run records and goes on without.

The names load on first use, so `import samrs_ray` (and so the `samrs-ray` command's start)
stays cheap, and Ray is imported only by what runs on it.
"""

from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
# When this process began its work, near enough (the package is the CLI's first import): a run's
# summary counts its wall time from here, Ray's start included.
STARTED = time.monotonic()

_FACE = {
    "generate": "samrs_ray.api", "read": "samrs_ray.api", "table_uris": "samrs_ray.api",
    "versions": "samrs_ray.api",
    "RunRecord": "samrs_ray.dataset.versions",
    "TileDataset": "samrs_ray.handoff.reader", "tiles_dataset": "samrs_ray.handoff.reader",
    "export": "samrs_ray.handoff.export",
    "SceneRasters": "samrs_ray.handoff.torchgeo", "LabelRasters": "samrs_ray.handoff.torchgeo",
    "PRESETS": "samrs_ray.inputs.presets", "Preset": "samrs_ray.inputs.presets",
    "custom_preset": "samrs_ray.inputs.presets", "IGNORE_ID": "samrs_ray.inputs.presets",
    "decode_rle": "samrs_ray.encoding.rle",
    **{name: "samrs_ray.errors" for name in ("SamrsRayError", "ConfigError", "CheckpointError",
                                              "ConcurrentRunError", "RunFailed", "StoreError", "InputError")},
}
__all__ = ["__version__", *_FACE]

if TYPE_CHECKING:  # what editors and type checkers see; at run time, __getattr__ loads them
    from samrs_ray.api import generate, read, table_uris, versions
    from samrs_ray.dataset.versions import RunRecord
    from samrs_ray.encoding.rle import decode_rle
    from samrs_ray.errors import (CheckpointError, ConcurrentRunError, ConfigError, InputError, RunFailed,
                                  SamrsRayError, StoreError)
    from samrs_ray.handoff.export import export
    from samrs_ray.handoff.reader import TileDataset, tiles_dataset
    from samrs_ray.handoff.torchgeo import LabelRasters, SceneRasters
    from samrs_ray.inputs.presets import IGNORE_ID, PRESETS, Preset, custom_preset


def __getattr__(name: str) -> Any:
    if name not in _FACE:
        raise AttributeError(f"module 'samrs_ray' has no attribute {name!r}")
    try:
        module = importlib.import_module(_FACE[name])
    except ModuleNotFoundError as error:  # an extra's package (torchgeo, rasterio): say which
        raise ImportError(f"samrs_ray.{name} needs the package {error.name!r}, which is not installed "
                          f"(README, Quick start: the extras)") from error
    value = getattr(module, name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FACE})
