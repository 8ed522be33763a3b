"""`samrs-ray`'s options: one parser for every subcommand, so that one spelling and one help
style hold across them, and the JobConfig that `generate`'s options make."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from samrs_ray.config import JobConfig
from samrs_ray.encoding.labelmap import PAINT_ORDERS
from samrs_ray.errors import ConfigError
from samrs_ray.inputs.formats import LABEL_FORMATS
from samrs_ray.inputs.presets import PRESETS, PROMPT_TYPES, Preset, custom_preset
from samrs_ray.inputs.splits import DEFAULT_SPLIT
from samrs_ray.masks.engines import ENGINES

DESCRIPTION = """`samrs-ray`: generate | runs | stats | evaluate | export-coco | export.

Exit codes: 0 the run completed (quarantined inputs are listed in manifest/errors);
1 nothing could be processed; 2 the configuration is wrong (the message says what to change);
3 another run on the same --out committed first (nothing of this run was committed: rerun);
4 the run stopped before its commit (storage full or away, cluster lost): fix that and rerun;
5 the run committed, but partially: the store did not give some scenes' files (after retries),
so their committed tiles were kept as they were; the summary and _run.json's 'partial' name them.
"""


def tile_size(text: str) -> int:
    """Pixels, or 0 for 'none' (use images whole); an absent flag (None) keeps the preset's."""
    if text.lower() in ("none", "0"):
        return 0
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("tile size must be a positive number of pixels, or 'none'")
    return value


def band_list(text: str) -> tuple[int, ...]:
    try:
        bands = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give band numbers counted from 1, e.g. 4,3,2") from None
    if not 1 <= len(bands) <= 3 or min(bands) < 1:
        raise argparse.ArgumentTypeError("give 1 to 3 band numbers counted from 1, e.g. 4,3,2")
    return bands


def bbox(text: str) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give west,south,east,north in degrees, e.g. 14.9,41.9,15.1,42.1") from None
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south < north <= 90):
        raise argparse.ArgumentTypeError("give west,south,east,north in degrees, south below north")
    return west, south, east, north


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"endpoint_url\": \"http://...\"}'")
    return value


def add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-options", type=json_object, default={}, metavar="JSON",
                        help="fsspec options, e.g. '{\"endpoint_url\": \"http://127.0.0.1:8333\"}'; "
                             "S3 keys are better left to the AWS_* environment variables")


class ShowDefaults(argparse.HelpFormatter):
    """--help names every default that is a value (an open default is described in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, {}, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


# JobConfig's defaults, so the CLI cannot drift from the library
DEFAULTS = {f.name: f.default for f in dataclasses.fields(JobConfig)}


def preset_values(field: str) -> str:
    """'sota 1024, sior none, fast 600': a preset setting's default in each preset, for --help."""
    return ", ".join(f"{name} {'none' if getattr(p, field) is None else getattr(p, field)}"
                     for name, p in PRESETS.items())


# every engine's model types, in registry order, each once
MODEL_TYPE_CHOICES = tuple(dict.fromkeys(t for engine in ENGINES.values() for t in engine.model_types))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samrs-ray", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="make (or update) a segmentation dataset from detection boxes",
                              formatter_class=ShowDefaults)
    gen.add_argument("--preset", required=True, choices=[*PRESETS, "custom"],
                     help="sota (DOTA), sior (DIOR), fast (FAIR1M), or custom with --classes")
    scenes = gen.add_mutually_exclusive_group(required=True)
    scenes.add_argument("--images", help="folder of scene images (local, s3://, gs://, ...); with --label-format vector "
                                         "also a STAC ItemCollection, Catalog or Collection (.json): each Item a scene")
    scenes.add_argument("--stac-search", metavar="URL",
                        help="with --label-format vector: the scenes are the Items a search of this STAC API finds "
                             "(--collection, --bbox, --datetime)")
    gen.add_argument("--labels", required=True, help="folder of label files (DOTA .txt or VOC/FAIR1M .xml), or with "
                                                   "--label-format vector a vector layer or a folder of them")
    gen.add_argument("--out", required=True, help="dataset folder (created; reruns update it incrementally)")
    gen.add_argument("--model", choices=tuple(ENGINES), default=DEFAULTS["model"],
                     help="mask engine: sam (Segment Anything; without --checkpoint it downloads the official "
                          "checkpoint: 2.4 GB for vit_h), sam2 (SAM 2.1), hq-sam (HQ-SAM), "
                          "or box: fill the boxes (no weights, no torch)")
    gen.add_argument("--model-type", choices=MODEL_TYPE_CHOICES, metavar="TYPE",
                     help="the engine's size: " + "; ".join(
                         f"{e.name}: {', '.join(e.model_types)} (default {e.default_type})"
                         for e in ENGINES.values() if e.model_types) + ". 'tiny' is a test model with random weights")
    gen.add_argument("--checkpoint", help="checkpoint URI of the engine (default: its official release file)")
    gen.add_argument("--hq-token-only", action="store_true",
                     help="hq-sam: the HQ token's mask alone, not added to SAM's (upstream's default: added)")
    gen.add_argument("--prompt", choices=PROMPT_TYPES, help="prompt kind (default: the preset's)")
    gen.add_argument("--tile-size", type=tile_size,
                     help=f"tile size in pixels, or 'none' (default: the preset's: {preset_values('tile_size')})")
    gen.add_argument("--gap", type=int,
                     help=f"overlap between neighbouring tiles, pixels (default: {preset_values('gap')})")
    gen.add_argument("--iof-thr", type=float, help="share of an object a tile must hold to keep it "
                                                   f"(default: {preset_values('iof_thr')})")
    gen.add_argument("--classes", help="custom preset: a file with one class name per line")
    gen.add_argument("--label-format", choices=list(LABEL_FORMATS), help="label format (default: the preset's)")
    gen.add_argument("--class-field", default=DEFAULTS["class_field"],
                     help="vector labels: the attribute holding each feature's class")
    gen.add_argument("--bands", type=band_list, metavar="R,G,B",
                     help="raster scenes: the bands to use, counted from 1 (default: red, green, blue by colour "
                          "interpretation, else the first three)")
    gen.add_argument("--stretch", metavar="none|minmax|percentile:LOW,HIGH",
                     help="raster scenes: how values become 8 bits, computed once per scene (default: none for "
                          "8-bit rasters, else percentile:2,98)")
    gen.add_argument("--collection", action="append", dest="collections", metavar="ID",
                     help="--stac-search: a collection to search; repeatable")
    gen.add_argument("--bbox", type=bbox, metavar="W,S,E,N", help="--stac-search: lon/lat bounds of the Items")
    gen.add_argument("--datetime", metavar="RANGE",
                     help="--stac-search: an RFC 3339 instant or interval, e.g. 2025-01-01/2025-12-31")
    gen.add_argument("--stac-asset", metavar="KEY",
                     help="STAC scenes: the asset of each Item to read, or band assets to stack as R,G,B "
                          "(e.g. B04,B03,B02; default: 'visual', else the Item's one asset with the visual role, "
                          "else its red, green and blue bands)")
    gen.add_argument("--paint-order", choices=PAINT_ORDERS, default=DEFAULTS["paint_order"],
                     help="overlaps in label maps: annotation order, later wins (SAMRS); or larger first")
    gen.add_argument("--no-color", action="store_true", help="do not write color/ palette PNGs")
    gen.add_argument("--split-list", action="append", metavar="SPLIT=FILE", default=[],
                     help="scenes of a split, one name per line (DIOR's ImageSets/Main/val.txt); repeatable")
    gen.add_argument("--split-file", help="a table of scenes and splits, '<scene> <split>' per line")
    gen.add_argument("--split", help="the split of every scene not in a list (e.g. train for DOTA's train/ folder)")
    gen.add_argument("--split-ratio", type=float,
                     help=f"else a hashed train/val split with this share in train (default: all {DEFAULT_SPLIT})")
    gen.add_argument("--max-pixels", type=int,
                     help=f"refuse scenes larger than this many pixels (default: {DEFAULTS['max_pixels']})")
    gen.add_argument("--gpus-per-actor", type=float, metavar="N",
                     help="GPUs each SAM mask actor asks Ray for (default: 1 on a cluster, so its autoscaler starts "
                          "GPU nodes; with a local Ray, 1 if this machine has a GPU); 0 for a CPU-only cluster")
    gen.add_argument("--gpu-wait", type=float, default=DEFAULTS["gpu_wait_s"], metavar="SECONDS",
                     help="how long to wait for the first GPU node before failing")
    gen.add_argument("--device", help="torch device for SAM (default: cuda where the actor's node has it, else cpu)")
    gen.add_argument("--dtype", choices=["float32", "bfloat16"],
                     help="default: bfloat16 when GPUs are asked for, else float32")
    gen.add_argument("--image-batch", type=int, default=DEFAULTS["image_batch"], help="tiles per image-encoder call")
    gen.add_argument("--prompt-chunk", type=int, help="prompts per decoder call (default: 64 GPU, 4 CPU)")
    gen.add_argument("--multimask", action="store_true", help="3 masks per prompt, keep the best")
    gen.add_argument("--compile", action="store_true",
                     help="torch.compile SAM in each actor (pays on long GPU runs; see README, Performance)")
    gen.add_argument("--num-actors", type=int,
                     help="a fixed number of mask actors (default: with GPUs, a pool that grows with them; else 1)")
    gen.add_argument("--shard-tiles", type=int, default=DEFAULTS["shard_tiles"], help="tiles per Parquet shard")
    gen.add_argument("--keep-versions", type=int, default=DEFAULTS["keep_versions"],
                     help="committed versions kept readable; clean-up deletes files only older ones use")
    gen.add_argument("--cache-dir", help="where each node caches remote checkpoints (default: ~/.cache/samrs-ray)")
    gen.add_argument("--address", help="Ray address (default: start a local Ray; 'auto' joins a running one)")
    gen.add_argument("--ray-timeout", type=float, default=DEFAULTS["ray_timeout_s"], metavar="SECONDS",
                     help="how long the Ray cluster at --address may take to answer; then exit 4, an outage")
    add_storage(gen)

    runs = commands.add_parser("runs", help="list the committed runs of a dataset")
    runs.add_argument("--out", required=True)
    add_storage(runs)

    stats = commands.add_parser("stats", help="statistics, figures and a browsable gallery (gallery.html) of a dataset")
    stats.add_argument("--out", required=True)
    stats.add_argument("--report", help="report folder (default: <out>/report)")
    stats.add_argument("--address", help="Ray address: compute on that cluster (default: in this process, or on a "
                                         "local Ray for a version of tens of thousands of tiles)")
    stats.add_argument("--version", help=VERSION_HELP)
    stats.add_argument("--compare", metavar="VERSION",
                       help="the gallery shows this version of each tile beside it (e.g. another engine's run)")
    add_storage(stats)

    coco = commands.add_parser("export-coco", help="write the dataset's instances as COCO json")
    coco.add_argument("--out", required=True)
    coco.add_argument("--dest", help="where to write (default: <out>/coco.json)")
    coco.add_argument("--version", help=VERSION_HELP)
    add_storage(coco)

    export = commands.add_parser("export", help="write a version in a layout other training code reads")
    export.add_argument("--out", required=True)
    export.add_argument("--format", required=True, choices=["samrs", "mmseg", "coco", "geo", "stac"],
                        help="samrs: images/ gray/ color/ ins/, train.txt valid.txt; mmseg: img_dir/ ann_dir/ by "
                             "split; coco: <split>.json; geo: a label COG per scene and instances.parquet "
                             "(GeoParquet polygons; needs the geo extra); stac: geo's files and a STAC Collection of label "
                             "Items, one per scene (collection.json, items/)")
    export.add_argument("--dest", required=True, help="where to write (any fsspec URI); reruns update it")
    export.add_argument("--version", help=VERSION_HELP)
    export.add_argument("--instances", choices=["pkl", "json"], default="pkl",
                        help="samrs: ins/<tile>.pkl as SAMRS released them (default) or .json; load pickles you trust")
    add_storage(export)

    evaluate = commands.add_parser("evaluate", help="mask IoU against ground-truth instance masks")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--gt", required=True, help="ground truth: iSAID PNG folder or COCO json file")
    evaluate.add_argument("--gt-format", required=True, choices=["isaid-png", "coco"])
    evaluate.add_argument("--version", action="append",
                          help=VERSION_HELP + "; give it twice or more to compare versions (engines) in one table")
    add_storage(evaluate)
    return parser


VERSION_HELP = "a committed version, by number or run id (default: the latest; `samrs-ray runs` lists them)"


def make_preset(args: argparse.Namespace) -> Preset:
    if args.preset == "custom":
        if not args.classes:
            raise ConfigError("--preset custom needs --classes FILE (one class name per line)")
        try:
            text = Path(args.classes).read_text()
        except OSError as error:
            raise ConfigError(f"--classes {args.classes}: {error.strerror}") from None
        try:
            base = custom_preset(text, label_format=args.label_format or "dota")
        except ValueError as error:
            raise ConfigError(f"--classes {args.classes}: {error}") from None
    else:
        base = PRESETS[args.preset]
    changes: dict[str, Any] = {}
    if args.prompt:
        changes["prompt"] = args.prompt
    if args.label_format:
        changes["label_format"] = args.label_format
    if args.tile_size is not None:
        changes["tile_size"] = args.tile_size or None
    if args.gap is not None:
        changes["gap"] = args.gap
    if args.iof_thr is not None:
        changes["iof_thr"] = args.iof_thr
    size = changes.get("tile_size", base.tile_size)
    gap = changes.get("gap", base.gap)
    if size is not None and not 0 <= gap < size:
        raise ConfigError(f"--gap must be in [0, tile size): got gap {gap} with tile size {size}")
    if not 0 < changes.get("iof_thr", base.iof_thr) <= 1:
        raise ConfigError("--iof-thr must be in (0, 1]")
    return replace(base, **changes)


# Ray's job supervisor sets this for the entrypoint of `ray job submit`; with it, the working
# directory is Ray's uploaded copy of the submitter's, which Ray deletes after the job.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
PATH_OPTIONS = ("images", "labels", "out", "checkpoint", "classes", "split_file")


def refuse_relative_paths(args: argparse.Namespace) -> None:
    """Under `ray job submit`, a relative local path means a folder inside Ray's temporary copy
    of the working directory: inputs are not found there, and a dataset written there is
    deleted with the job. Refuse it before any work."""
    if RAY_JOB_ENV not in os.environ:
        return
    given = [(name.replace("_", "-"), getattr(args, name, None)) for name in PATH_OPTIONS]
    given += [("split-list", item.partition("=")[2]) for item in getattr(args, "split_list", [])]
    for name, value in given:
        if value and "://" not in value and not os.path.isabs(value):
            raise ConfigError(f"--{name} {value}: a relative path inside a Ray job resolves in Ray's temporary "
                              f"copy of the working directory (deleted after the job); give an absolute path "
                              f"that every node can read, or a URI such as s3://bucket/...")


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """The JobConfig of `generate`'s arguments: each option named like a JobConfig field sets it,
    and an option left out (None) keeps JobConfig's default."""
    fields = {f.name for f in dataclasses.fields(JobConfig)}
    given = {name: value for name, value in vars(args).items() if name in fields and value is not None}
    if args.stac_search:
        given.update(images=args.stac_search, stac_search=True)
    given["collections"] = tuple(args.collections or ())
    given.update(preset=make_preset(args), write_color=not args.no_color, gpu_wait_s=args.gpu_wait,
                 ray_timeout_s=args.ray_timeout,
                 split_lists=split_lists(args.split_list))
    return JobConfig(**given)


def split_lists(given: list[str]) -> dict[str, str]:
    """['train=a.txt', 'val=b.txt'] -> {'train': 'a.txt', 'val': 'b.txt'}."""
    lists = {}
    for item in given:
        split, _, uri = item.partition("=")
        if not split or not uri or split in lists:
            raise ConfigError(f"--split-list {item!r}: give SPLIT=FILE, once per split")
        lists[split] = uri
    return lists


