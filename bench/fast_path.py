"""Benchmark: the engine's fast path, one step at a time, against exact fp32.

Every step changes one setting of the steps kept before it, and runs in its own Python process
(so the allocator, thread and torch.compile state of one step cannot help another):

  L0 engine before the fast path: fp32, image_batch 4, prompt_chunk 4, glibc's default allocator
  L1 + keep freed host memory (host_memory.py)
  L2 + SDPA attention in the image encoder (fast_attention.py)
  L3   image_batch 1 (one tile per image-encoder call): kept on a CPU, not on a GPU
  L4   prompt_chunk 64 (all boxes of a tile in one decoder call): kept on a GPU, not on a CPU
  L5 + torch.compile of the image encoder and the mask decoder (compile time is in "warm-up")
  L6 + bf16 autocast

and, for scale, the naive loop of SAMRS (bench/engine.py's (a)) as it ran (N0) and with the
allocator setting of L1 (N1).

Each step is kept only if it pays (KEPT below: on a CPU from the figures in bench/RESULTS.md, on
a GPU the job's defaults); --steps picks some. For each step: best-of-R seconds on the
same tiles, tiles/s, boxes/s, speed-up over L0; and against the exact fp32 reference (prompt
chunk 1, image_batch 1, no SDPA: the masks of SamPredictor.predict, bit for bit): the masks'
mean IoU and the relative error of the low-resolution logits on the first tile
(||logits - reference|| / ||reference||, all its prompts).

Tiles as in bench/engine.py: the real samples' DOTA scenes planned by the job's own planner.

    .venv/bin/python -m bench.fast_path                     # tiny, CPU, 3 tiles
    .venv/bin/python -m bench.fast_path --device cuda --model-type vit_h --copies 8 --steps L0,L2,L4,L5,L6
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from bench.common import (
    Spec,
    Tile,
    add_input_arguments,
    agreement,
    load_masks,
    planned_tiles,
    prepare_inputs,
    save_masks,
    timed,
)
from bench.engine import naive_predict
from samrs_ray.masks.busy import peak_rss
from samrs_ray.masks.checkpoint import load_sam
from samrs_ray.masks.engine_settings import EngineSettings
from samrs_ray.masks.host_memory import keep_freed_memory
from samrs_ray.masks.sam import SamBackend

BEFORE = dict(dtype="float32", image_batch=4, prompt_chunk=4, sdpa=False, compile=False, reuse_host_memory=False)
STEPS: dict[str, tuple[str, dict[str, Any]]] = {
    "L0": ("engine before the fast path", {}),
    "L1": ("+ keep freed host memory", dict(reuse_host_memory=True)),
    "L2": ("+ SDPA image-encoder attention", dict(sdpa=True)),
    "L3": ("  image_batch 1", dict(image_batch=1)),
    "L4": ("  prompt_chunk 64", dict(prompt_chunk=64)),
    "L5": ("+ torch.compile", dict(compile=True)),
    "L6": ("+ bf16 autocast", dict(dtype="bfloat16")),
}
NAIVE: dict[str, tuple[str, dict[str, Any]]] = {
    "N0": ("naive SAMRS loop", dict(reuse_host_memory=False)),
    "N1": ("naive + keep freed host memory", dict(reuse_host_memory=True)),
}
KEPT = {"cpu": ("L1", "L2", "L3", "L5", "L6"), "cuda": ("L1", "L2", "L4", "L5", "L6")}  # carried to later steps
EXACT = dict(BEFORE, image_batch=1, prompt_chunk=1, reuse_host_memory=True)


def step_settings(chosen: list[str], device: str) -> dict[str, dict[str, Any]]:
    """Settings of each chosen step: its change on top of the kept steps before it (a kept
    step that --steps leaves out still carries its change). Naive steps: {'naive': True, ...}."""
    settings = {name: dict(change, naive=True, device=device) for name, (_, change) in NAIVE.items() if name in chosen}
    kept = dict(BEFORE, device=device)
    for name, (_, change) in STEPS.items():
        if name in chosen:
            settings[name] = dict(kept, **change)
        if name in KEPT[torch.device(device).type]:
            kept = dict(kept, **change)
    return settings


def logits_sample(backend: SamBackend, tile: Tile) -> np.ndarray:
    """The first tile's kept-mask logits for all its prompts: (n, 1, 256, 256) float32."""
    chunk = backend.prompt_chunk
    with torch.inference_mode(), backend.autocast():
        prepared = backend.prepare(tile.image)
        embedding = backend.encode([prepared])[0]
        image_pe = backend.model.prompt_encoder.get_dense_pe()
        parts = [backend.low_res_logits(tile.prompts, prepared.original_size, embedding, image_pe, slice(s, s + chunk))[0]
                 for s in range(0, len(tile.prompts), chunk)]
    return torch.cat(parts).float().cpu().numpy()


def step_worker(spec: Spec, settings: dict[str, Any], name: str,
                transform: Optional[Callable[[torch.nn.Module], None]] = None, warm_up: bool = True) -> dict[str, Any]:
    """One step in this process: `repeats` timed runs over all tiles (after a warm-up run unless
    warm_up is False); masks and first-tile logits saved as masks-<name>.npz, logits-<name>.npy.
    transform: changes the loaded model in place before the engine is built (bench/gpu_steps.py's
    int8 quantisation)."""
    device = torch.device(settings["device"])
    tiles = planned_tiles(spec)
    model, _ = load_sam(spec.model_type, spec.checkpoint, spec.workdir, device=settings["device"])
    if transform is not None:
        transform(model)
    if settings.get("naive"):
        from segment_anything import SamPredictor

        if settings["reuse_host_memory"]:
            keep_freed_memory()
        predictor = SamPredictor(model)
        dtype = "torch.float32"
        run = lambda: [naive_predict(predictor, tile, device)[0] for tile in tiles]  # noqa: E731
        sample = lambda: naive_predict(predictor, tiles[0], device)[1].numpy()  # noqa: E731
    else:
        backend = SamBackend(model, spec.model_type, "", EngineSettings(**settings))
        dtype = str(backend.dtype)
        run = lambda: backend.predict([t.image for t in tiles], [t.prompts for t in tiles])  # noqa: E731
        sample = lambda: logits_sample(backend, tiles[0])  # noqa: E731
    # Warm-up (and compilation): every batch and chunk size the timed runs meet.
    warm_up_s = timed(run, device)[1] if warm_up else 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(spec.repeats):
        results, elapsed = timed(run, device)
        seconds.append(elapsed)
    save_masks(Path(spec.workdir) / f"masks-{name}.npz", results)
    np.save(Path(spec.workdir) / f"logits-{name}.npy", sample())
    return {"seconds": seconds, "warm_up": warm_up_s, "tiles": len(tiles), "boxes": sum(len(t.prompts) for t in tiles),
            "dtype_used": dtype, "peak_rss": peak_rss(),
            "cuda_peak": torch.cuda.max_memory_allocated() if device.type == "cuda" else None}


def run_step(spec: Spec, settings: dict[str, Any], name: str) -> dict[str, Any]:
    path = Path(spec.workdir) / f"step-{name}.json"
    path.write_text(json.dumps({"spec": dataclasses.asdict(spec), "settings": settings, "name": name}))
    subprocess.run([sys.executable, "-m", "bench.fast_path", "--worker", str(path)], check=True)
    return json.loads(path.with_suffix(".result.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser, copies=1)
    parser.add_argument("--steps", default=",".join([*NAIVE, *STEPS]), help=f"some of {','.join([*NAIVE, *STEPS])}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        job = json.loads(args.worker.read_text())
        result = step_worker(Spec(**job["spec"]), job["settings"], job["name"])
        args.worker.with_suffix(".result.json").write_text(json.dumps(result))
        return
    chosen = args.steps.split(",")
    unknown = set(chosen) - set(STEPS) - set(NAIVE)
    if unknown:
        sys.exit(f"unknown steps {sorted(unknown)}; choose from {[*NAIVE, *STEPS]}")
    workdir = Path(tempfile.mkdtemp(prefix="samrs-fastpath-"))
    try:
        spec = Spec(model_type=args.model_type, checkpoint=prepare_inputs(args, workdir),
                    scenes=str(workdir / "scenes"), device=args.device, dtype=None, image_batch=1, prompt_chunk=None,
                    repeats=args.repeats, num_cpus=0, workdir=str(workdir))
        started = time.perf_counter()
        reference = run_step(spec, dict(EXACT, device=args.device), "exact")
        print(f"\nsam-{args.model_type} (random weights) on {args.device}, {reference['tiles']} tiles, "
              f"{reference['boxes']} boxes, best of {args.repeats}; each line printed as its step ends")
        print(f"{'step':<36}{'s':>8}{'tiles/s':>9}{'boxes/s':>9}{'vs first':>9}{'warm-up s':>10}  "
              f"{'mean IoU':>9} {'logits rel err':>14}  peak RSS", flush=True)
        print_step("exact fp32 (chunk 1, batch 1)", reference, reference, workdir, "exact")
        first = None
        for name, settings in step_settings(chosen, args.device).items():
            result = run_step(spec, settings, name)
            first = first or result
            title, change = {**NAIVE, **STEPS}[name]
            fallback = change.get("dtype") == "bfloat16" and result["dtype_used"] != "torch.bfloat16"
            print_step(f"{name} {title}" + (" (fp32: no native bf16)" if fallback else ""), result, first, workdir, name)
        print(f"{time.perf_counter() - started:.0f} s in all")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def print_step(label: str, result: dict, first: dict, workdir: Path, name: str) -> None:
    """One step's figures, and its masks and logits against the exact fp32 reference."""
    tiles, boxes = result["tiles"], result["boxes"]
    best = min(result["seconds"])
    agree = agreement(load_masks(workdir / "masks-exact.npz"), load_masks(workdir / f"masks-{name}.npz"))
    reference = np.load(workdir / "logits-exact.npy")
    rel = float(np.linalg.norm(np.load(workdir / f"logits-{name}.npy") - reference) / np.linalg.norm(reference))
    print(f"{label:<36}{best:8.2f}{tiles / best:9.3f}{boxes / best:9.2f}{min(first['seconds']) / best:8.2f}x"
          f"{result['warm_up']:10.1f}  {agree['mean_iou']:9.6f} {rel:14.1e}  {result['peak_rss'] / 2**30:.2f} GiB"
          + (f", GPU {result['cuda_peak'] / 2**30:.2f} GiB" if result["cuda_peak"] is not None else ""))
    print(f"{'':<36}all runs {'/'.join(f'{s:.2f}' for s in result['seconds'])} s; masks bit-identical "
          f"{agree['identical']:.1%}, most pixels flipped {agree['worst_flipped']}", flush=True)


if __name__ == "__main__":
    main()
