"""Benchmark: SAMRS's naive loop, this project's engine, and the whole Ray job, on the same
tiles and the same weights, in one run.

  (a) naive: per tile SamPredictor.set_image, then predict_torch on batches of 20 boxes, fp32
      (the loop SAMRS ran), in a plain process (default threads and allocator)
  (b) engine: SamBackend.predict on all tiles, built by the Ray job's own MaskActor (so with
      the settings the job uses: prompt_chunk, image_batch, dtype, SDPA, threads)
  (c) job: samrs_ray.job.generate(model='sam') on a folder of the same scenes + DOTA
      labels, written to a temp dir. Ray is started first (ray.init(num_cpus=N), timed on its
      own), then generate() is timed; "incl. Ray start-up" adds the two.

Tiles: the real samples' DOTA scenes (P0004 824x1464 -> 2 tiles, P1888 712x557 -> 1 tile)
cut by the job's own planner (samrs_ray.planning.plan.plan_scene), so (a), (b) and (c) see the same
1024x1024 padded tiles and the same box prompts; --copies N repeats the scenes under other
names. Weights: random (speed does not depend on them), written once to a checkpoint that all
three load; 'tiny' is a FAKE few-layer SAM. Each of (a), (b), (c) runs in its own Python
process, so its peak RSS is its own and process-wide settings (threads, allocator) stay in it.

Busy share: the job's MaskActor logs every predict() call (samrs_ray/masks/busy.py, switched
on by $SAMRS_RAY_BUSY_LOG); the share of generate()'s wall time inside predict() is how busy
the job kept the engine (on a GPU an upper bound of the accelerator's busy time).

    .venv/bin/python -m bench.engine                       # tiny, CPU, 2 copies = 6 tiles
    .venv/bin/python -m bench.engine --copies 4 --plot timeline.png   # + a PNG of the job's predict() calls
    .venv/bin/python -m bench.engine --model-type vit_b --scenes P1888 --copies 1
    .venv/bin/python -m bench.engine --model-type vit_h --device cuda --dtype bfloat16 --copies 40 --num-cpus 8
    .venv/bin/python -m bench.engine --engines sam,sam2,hq-sam   # each engine against its own official
                      # predictor (bench/other_engines.py; its options: --sam2-type, --hq-type, ...)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
    current_rss,
    job_config,
    load_masks,
    planned_tiles,
    prepare_inputs,
    save_masks,
    timed,
)
from samrs_ray.masks.backend import TileMasks
from samrs_ray.masks.busy import peak_rss

NAIVE_BOX_BATCH = 20  # what SAMRS's script used
CHECKED_TILES = 12  # (b) and (c) masks compared on this many tiles (random-weight masks decode slowly)


def naive_predict(predictor, tile: Tile, device: torch.device) -> tuple[TileMasks, torch.Tensor]:
    """SAMRS's loop on one tile: set_image, then predict_torch on batches of 20 boxes.

    Returns the masks and the low-res logits (n, 1, 256, 256) float32 on the host.
    """
    predictor.set_image(tile.image)
    boxes, masks, scores, logits = tile.prompts.boxes, [], [], []
    with torch.no_grad():
        for start in range(0, len(boxes), NAIVE_BOX_BATCH):
            chunk = torch.as_tensor(boxes[start : start + NAIVE_BOX_BATCH], device=device)
            chunk = predictor.transform.apply_boxes_torch(chunk, tile.image.shape[:2])
            m, s, low_res = predictor.predict_torch(None, None, boxes=chunk, multimask_output=False)
            masks.append(m[:, 0].cpu().numpy())
            scores.append(s[:, 0].cpu().numpy())
            logits.append(low_res.float().cpu())
    return TileMasks(np.concatenate(masks), np.concatenate(scores)), torch.cat(logits)


def naive_worker(spec: Spec) -> dict[str, Any]:
    """(a): SAMRS's loop, fp32, in a process with torch's default threads and glibc's default allocator."""
    from segment_anything import SamPredictor

    from samrs_ray.masks.checkpoint import load_sam

    device = torch.device(spec.device)
    tiles = planned_tiles(spec)
    model, _ = load_sam(spec.model_type, spec.checkpoint, spec.workdir, device=spec.device)
    predictor = SamPredictor(model)
    return measure(spec, tiles, lambda chosen: [naive_predict(predictor, t, device)[0] for t in chosen], device)


def engine_worker(spec: Spec) -> dict[str, Any]:
    """(b): the backend the job's MaskActor builds, on all tiles in one predict() call."""
    from samrs_ray.job import resolve_engine
    from samrs_ray.job.actor import MaskActor

    device = torch.device(spec.device)
    tiles = planned_tiles(spec)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    config = resolve_engine(job_config(spec, out=str(Path(spec.workdir) / "unused")), gpus)
    backend = MaskActor(config).backend
    result = measure(spec, tiles, lambda chosen: backend.predict([t.image for t in chosen], [t.prompts for t in chosen]),
                     device)
    result["settings"] = dataclasses.asdict(backend.settings) | {"dtype_used": str(backend.dtype),
                                                                "torch_threads": torch.get_num_threads()}
    return result


def measure(spec: Spec, tiles: list[Tile], run: Callable[[list[Tile]], list[TileMasks]],
            device: torch.device) -> dict[str, Any]:
    """Warm up on one tile, then time `repeats` runs over all tiles; masks of the last run saved."""
    rss_loaded = current_rss()
    run(tiles[:1])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(spec.repeats):
        results, elapsed = timed(lambda: run(tiles), device)
        seconds.append(elapsed)
    masks_path = Path(spec.workdir) / f"masks-{os.getpid()}.npz"
    save_masks(masks_path, results)
    return {
        "seconds": seconds, "tiles": len(tiles), "boxes": sum(len(t.prompts) for t in tiles),
        "tile_ids": [t.tile_id for t in tiles], "masks": str(masks_path),
        "peak_rss": peak_rss(), "rss_loaded": rss_loaded, "torch_threads": torch.get_num_threads(),
        "cuda_peak": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }


def job_worker(spec: Spec) -> dict[str, Any]:
    """(c): ray.init(num_cpus) timed, then generate() timed, `repeats` times into fresh folders."""
    import ray

    from samrs_ray.dataset import manifest
    from samrs_ray.encoding.rle import decode_rle
    from samrs_ray.job import generate
    from samrs_ray.masks.busy import BUSY_LOG, busy_seconds, read_busy_log

    workdir = Path(spec.workdir)
    log = workdir / "busy.log"
    started = time.perf_counter()
    ray.init(num_cpus=spec.num_cpus, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {BUSY_LOG: str(log)}})
    ray_start = time.perf_counter() - started
    runs = []
    try:
        for i in range(spec.repeats):
            out = workdir / f"job-out-{i}"
            log.unlink(missing_ok=True)
            wall_start = time.time()
            started = time.perf_counter()
            record = generate(job_config(spec, str(out)), say=lambda _: None)
            seconds = time.perf_counter() - started
            wall_end = time.time()
            intervals = read_busy_log(log)
            busy = busy_seconds(intervals, wall_start, wall_end)
            runs.append({
                "seconds": seconds, "busy": busy, "predict_calls": len(intervals),
                "first_predict": min((x.start for x in intervals), default=wall_end) - wall_start,
                "after_last_predict": wall_end - max((x.end for x in intervals), default=wall_start),
                "actor_peak_rss": max((x.peak_rss for x in intervals), default=0),
                "calls": [(x.start - wall_start, x.end - wall_start, x.tiles)
                          for x in sorted(intervals, key=lambda x: x.start)],
                "tiles": record.counts["processed"], "instances": record.counts["instances"],
                "failed": record.counts["failed"], "out": str(out),
            })
    finally:
        ray.shutdown()
    driver_peak_rss = peak_rss()  # before the check below decodes every mask
    # the last run's masks of the first tiles, in the planner's tile order, for the (b) vs (c) check
    instances = manifest.read_dataset(runs[-1]["out"], "instances").to_pylist()
    by_tile: dict[str, list[dict]] = {}
    for row in sorted(instances, key=lambda r: (r["tile_id"], r["instance_id"])):
        by_tile.setdefault(row["tile_id"], []).append(row)
    masks = [TileMasks(np.stack([decode_rle(r["mask_rle"]["counts"], r["mask_rle"]["height"], r["mask_rle"]["width"])
                                 for r in by_tile[t.tile_id]]), np.zeros(0)) for t in planned_tiles(spec)[:CHECKED_TILES]]
    masks_path = workdir / "masks-job.npz"
    save_masks(masks_path, masks)
    return {"ray_start": ray_start, "runs": runs, "peak_rss": driver_peak_rss, "masks": str(masks_path)}


WORKERS = {"naive": naive_worker, "engine": engine_worker, "job": job_worker}


def run_worker(kind: str, spec: Spec) -> dict[str, Any]:
    """Run one worker in a fresh Python process; its result comes back as JSON."""
    spec_path = Path(spec.workdir) / "spec.json"
    result_path = Path(spec.workdir) / f"result-{kind}.json"
    spec_path.write_text(json.dumps(dataclasses.asdict(spec)))
    subprocess.run([sys.executable, "-m", "bench.engine", "--worker", kind, "--spec", str(spec_path), "--result", str(result_path)],
                   check=True)
    return json.loads(result_path.read_text())


# --- report ---------------------------------------------------------------------------------


def rate_line(label: str, seconds: float, tiles: int, boxes: int, ratio: str, memory: str) -> str:
    return (f"{label:<34} {seconds:8.2f} s {tiles / seconds:8.3f} tiles/s {boxes / seconds:8.2f} boxes/s"
            f"  {ratio:<14} {memory}")


def gib(n: Optional[float]) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def report(spec: Spec, naive: dict, engine: dict, job: dict) -> None:
    tiles, boxes = engine["tiles"], engine["boxes"]
    assert naive["tile_ids"] == engine["tile_ids"] and naive["boxes"] == boxes
    a, b = min(naive["seconds"]), min(engine["seconds"])
    best = min(job["runs"], key=lambda r: r["seconds"])
    c, c_cold = best["seconds"], best["seconds"] + job["ray_start"]
    print(f"\nmachine: {os.cpu_count()} CPUs, torch {torch.__version__}, load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"model sam-{spec.model_type} (random weights), {spec.device}; {tiles} tiles, {boxes} boxes; "
          f"best of {spec.repeats} (all runs: a {fmt(naive['seconds'])}, b {fmt(engine['seconds'])}, "
          f"c {fmt([r['seconds'] for r in job['runs']])})")
    settings = engine["settings"]
    print(f"engine: dtype {settings['dtype_used']}, image_batch {settings['image_batch']}, prompt_chunk "
          f"{settings['prompt_chunk']}, sdpa {settings['sdpa']}, compile {settings['compile']}, "
          f"threads {settings['torch_threads']}; naive: threads {naive['torch_threads']}")
    memory = {k: f"peak RSS {gib(r['peak_rss'])} (+{gib(r['peak_rss'] - r['rss_loaded'])} over the loaded model)"
              + (f", GPU {gib(r['cuda_peak'])}" if r["cuda_peak"] is not None else "") for k, r in
              (("a", naive), ("b", engine))}
    print(rate_line("(a) naive SAMRS loop", a, tiles, boxes, "", memory["a"]))
    print(rate_line("(b) engine", b, tiles, boxes, f"b/a {a / b:.2f}x", memory["b"]))
    print(rate_line("(c) Ray job, generate() only", c, tiles, boxes, f"c/b {b / c:.2f}",
                    f"actor peak RSS {gib(best['actor_peak_rss'])}, driver {gib(job['peak_rss'])}"))
    print(rate_line("(c) incl. Ray start-up", c_cold, tiles, boxes, f"c/b {b / c_cold:.2f}",
                    f"ray.init {job['ray_start']:.1f} s"))
    # what a long run tends to: start-up (actor start, model load, the first tiles planned) and the
    # last batches' encoding are paid once per run, the rest per tile
    steady = c - best["first_predict"] - best["after_last_predict"]
    print(rate_line("(c) first predict to last predict", steady, tiles, boxes, f"c/b {b / steady:.2f}",
                    f"start-up {best['first_predict']:.1f} s, tail {best['after_last_predict']:.1f} s"))
    print(f"engine busy in (c): {best['busy']:.1f} s of {c:.1f} s = {best['busy'] / c:.0%} "
          f"({best['predict_calls']} predict calls; first starts {best['first_predict']:.1f} s after generate() "
          f"starts, last ends {best['after_last_predict']:.1f} s before it returns)")
    if best["tiles"] != tiles or best["failed"]:
        print(f"WARNING: the job processed {best['tiles']} tiles ({best['failed']} failed), the engine {tiles}")
    a_masks, b_masks, c_masks = (load_masks(Path(r["masks"])) for r in (naive, engine, job))
    pairs = (("a vs b", a_masks, b_masks), (f"b vs c (first {len(c_masks)} tiles)", b_masks[:len(c_masks)], c_masks))
    for label, x, y in pairs:
        agree = agreement(x, y)
        print(f"masks {label}: mean IoU {agree['mean_iou']:.6f}, bit-identical {agree['identical']:.1%}, "
              f"most pixels flipped in one mask {agree['worst_flipped']}")


def plot_timeline(path: Path, spec: Spec, engine: dict, job: dict) -> None:
    """PNG: the best job run's predict() calls on a time axis from generate()'s start, above the
    time the engine alone took for the same tiles."""
    from samrs_ray.report.figures import new_figure, to_png

    best = min(job["runs"], key=lambda r: r["seconds"])
    alone, run = min(engine["seconds"]), best["seconds"]
    fig = new_figure(10, 2.6)
    ax = fig.add_subplot()
    ax.broken_barh([(start, end - start) for start, end, _ in best["calls"]], (1.6, 0.8), color="#4c72b0",
                   edgecolor="white", linewidth=1.5)
    for start, end, tiles in best["calls"]:
        ax.text((start + end) / 2, 2.0, str(tiles), ha="center", va="center", color="white", fontsize=8)
    ax.broken_barh([(0, run)], (1.1, 0.3), color="#cccccc")
    ax.broken_barh([(0, alone)], (0.2, 0.8), color="#dd8452")
    ax.set_yticks([2.0, 1.25, 0.6], ["(c) predict() calls\n(tiles per call)", "(c) generate()", "(b) engine alone"])
    ax.set_xlim(0, max(run, alone) * 1.02)
    ax.set_xlabel("seconds from the start of generate()")
    ax.set_title(f"sam-{spec.model_type} on {spec.device}, {engine['tiles']} tiles: engine busy {best['busy'] / run:.0%} "
                 f"of the job; start-up {best['first_predict']:.1f} s, tail {best['after_last_predict']:.1f} s, "
                 f"c/b {alone / run:.2f}", fontsize=10)
    path.write_bytes(to_png(fig))


def fmt(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def main() -> None:
    if "--engines" in sys.argv:  # the engines' comparison has options of its own
        from bench import other_engines

        return other_engines.main()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser, copies=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="engine and job dtype; default: the job's (bf16 on GPUs, fp32 on CPUs)")
    parser.add_argument("--image-batch", type=int, default=4)
    parser.add_argument("--prompt-chunk", type=int, default=None, help="default: the job's (64 on GPUs, 4 on CPUs)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each of (a), (b), (c); the best counts")
    parser.add_argument("--num-cpus", type=int, default=2, help="ray.init(num_cpus=...) for (c)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG timeline of the job's predict() calls here")
    parser.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        spec = Spec(**json.loads(args.spec.read_text()))
        args.result.write_text(json.dumps(WORKERS[args.worker](spec)))
        return
    if not (args.realsamples / "dota/images").is_dir():
        sys.exit(f"real samples not found at {args.realsamples} (see --realsamples)")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="samrs-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        spec = Spec(model_type=args.model_type, checkpoint=prepare_inputs(args, workdir), scenes=str(workdir / "scenes"),
                    device=args.device, dtype=args.dtype, image_batch=args.image_batch, prompt_chunk=args.prompt_chunk,
                    repeats=args.repeats, num_cpus=args.num_cpus, workdir=str(workdir))
        results = {}
        for kind in ("naive", "engine", "job"):
            print(f"running ({'abc'[list(WORKERS).index(kind)]}) {kind} ...", flush=True)
            results[kind] = run_worker(kind, spec)
            seconds = min(results[kind]["seconds"]) if kind != "job" else min(r["seconds"] for r in results[kind]["runs"])
            tiles = results[kind].get("tiles") or results[kind]["runs"][0]["tiles"]
            print(f"    {kind}: {seconds:.2f} s, {tiles / seconds:.3f} tiles/s", flush=True)
        report(spec, results["naive"], results["engine"], results["job"])
        if args.plot:
            plot_timeline(args.plot, spec, results["engine"], results["job"])
            print(f"timeline: {args.plot}")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
