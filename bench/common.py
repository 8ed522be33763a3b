"""What the bench scripts share: the real samples, scenes made from them, the job's planned tiles
as the engine sees them, a run's inputs from the command line, timing and mask agreement.

Bench scripts run as modules from the repository root (`python -m bench.engine`), so they import
this module and the installed samrs_ray without editing sys.path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from samrs_ray.inputs.presets import PRESETS
from samrs_ray.masks.backend import PromptBatch, TileMasks, pack_masks, unpack_masks
from samrs_ray.masks.checkpoint import MODEL_TYPES, build_sam

REALSAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "realsamples"
PRESET = PRESETS["sota"]  # DOTA labels, 1024 tiles with a 200 gap, H-Box prompts


@dataclass
class Spec:
    """What every worker process needs (written as JSON next to the scenes)."""

    model_type: str
    checkpoint: str
    scenes: str  # folder with images/ and labelTxt/
    device: str
    dtype: Optional[str]
    image_batch: int
    prompt_chunk: Optional[int]
    repeats: int
    num_cpus: int
    workdir: str


@dataclass
class Tile:
    tile_id: str
    image: np.ndarray  # (1024, 1024, 3) uint8
    prompts: PromptBatch


# --- inputs --------------------------------------------------------------------------------


def make_scenes(realsamples: Path, names: list[str], copies: int, folder: Path) -> None:
    """folder/images/<name>_c<i>.png + folder/labelTxt/<name>_c<i>.txt: `copies` copies of each scene."""
    for sub in ("images", "labelTxt"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        for i in range(copies):
            shutil.copyfile(realsamples / "dota/images" / f"{name}.png", folder / "images" / f"{name}_c{i}.png")
            shutil.copyfile(realsamples / "dota/labelTxt" / f"{name}.txt", folder / "labelTxt" / f"{name}_c{i}.txt")


def job_config(spec: Spec, out: str, **changes: Any):
    from samrs_ray.config import JobConfig

    scenes = Path(spec.scenes)
    return JobConfig(preset=PRESET, images=str(scenes / "images"), labels=str(scenes / "labelTxt"), out=out,
                     model="sam", model_type=spec.model_type, checkpoint=spec.checkpoint, device=spec.device,
                     dtype=spec.dtype, image_batch=spec.image_batch, prompt_chunk=spec.prompt_chunk,
                     write_color=True, cache_dir=str(Path(spec.workdir) / "cache"), **changes)


def planned_tiles(spec: Spec) -> list[Tile]:
    """The 'todo' tiles of the scenes exactly as the job plans them, with their prompts (plan.tile_prompts, as the mask stage)."""
    from samrs_ray.encoding.tile import tile_pixels
    from samrs_ray.inputs.listing import pair_by_stem
    from samrs_ray.job.rows import Kind, Status
    from samrs_ray.planning.plan import PlanSettings, plan_scene, tile_prompts

    scenes = Path(spec.scenes)
    images = sorted(str(p) for p in (scenes / "images").iterdir())
    labels = sorted(str(p) for p in (scenes / "labelTxt").iterdir())
    pairs, _ = pair_by_stem(images, labels)
    settings = PlanSettings(PRESET, "bench", 10**9, {})
    tiles = []
    for pair in pairs:
        for row in plan_scene(pair, settings, frozenset()):
            if row["kind"] == Kind.TILE and row["status"] == Status.TODO:
                tiles.append(Tile(row["tile_id"], tile_pixels(row["pixels"], row["height"], row["width"]).copy(),
                                  tile_prompts(row, PRESET.prompt)))
    return tiles


def add_input_arguments(parser: argparse.ArgumentParser, copies: int) -> None:
    """The options every bench here shares: which model, device, scenes and checkpoint."""
    parser.add_argument("--model-type", choices=MODEL_TYPES, default="tiny")
    parser.add_argument("--scenes", default="P0004,P1888", help="real-sample DOTA scenes to use")
    parser.add_argument("--copies", type=int, default=copies, help="copies of each scene (P0004: 2 tiles, P1888: 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--realsamples", type=Path, default=REALSAMPLES)
    parser.add_argument("--checkpoint", type=Path, help="random-weights checkpoint to reuse (written there if missing)")


def prepare_inputs(args: argparse.Namespace, workdir: Path) -> str:
    """workdir/scenes with the chosen scenes' copies; returns the checkpoint's path, written if missing."""
    make_scenes(args.realsamples, args.scenes.split(","), args.copies, workdir / "scenes")
    checkpoint = args.checkpoint or workdir / "checkpoint.pth"
    if not checkpoint.exists():
        write_checkpoint(args.model_type, checkpoint)
    return str(checkpoint)


def write_checkpoint(model_type: str, path: Path) -> None:
    """Random weights (seed 0) as a plain state dict, the form of the official release files."""
    torch.manual_seed(0)
    torch.save(build_sam(model_type).state_dict(), path)


# --- measuring -------------------------------------------------------------------------------


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(run: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def save_masks(path: Path, results: list[TileMasks]) -> None:
    """All masks bit-packed (N_total*H*W/8 bytes) with their per-tile counts; read with load_masks."""
    masks = [r.masks if r.masks is not None else unpack_masks(r.bits, *r.shape) for r in results]
    counts = np.array([len(m) for m in masks])
    shape = np.array(masks[0].shape[1:]) if masks else np.zeros(2, int)
    packed = pack_masks(np.concatenate(masks)) if masks else b""
    np.savez(path, counts=counts, shape=shape, packed=np.frombuffer(packed, np.uint8))


def load_masks(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        counts, (height, width), packed = data["counts"], data["shape"], data["packed"]
    return np.split(unpack_masks(packed, int(counts.sum()), height, width), np.cumsum(counts)[:-1])


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> dict[str, float]:
    """Mean mask IoU between two runs, share of bit-identical masks, most pixels flipped in one mask."""
    ious, same, worst = [], 0, 0
    for x, y in zip(a, b, strict=True):
        for m, n in zip(x, y, strict=True):
            union = (m | n).sum()
            ious.append(1.0 if union == 0 else (m & n).sum() / union)
            flipped = int((m != n).sum())
            same += flipped == 0
            worst = max(worst, flipped)
    return {"mean_iou": float(np.mean(ious)) if ious else 1.0, "identical": same / max(len(ious), 1),
            "worst_flipped": worst}


# --- workers (one process each) ---------------------------------------------------------------


