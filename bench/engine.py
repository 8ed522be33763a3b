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

    .venv/bin/python bench/engine.py                       # tiny, CPU, 2 copies = 6 tiles
    .venv/bin/python bench/engine.py --copies 4 --plot timeline.png   # + a PNG of the job's predict() calls
    .venv/bin/python bench/engine.py --model-type vit_b --scenes P1888 --copies 1
    .venv/bin/python bench/engine.py --model-type vit_h --device cuda --dtype bfloat16 --copies 40 --num-cpus 8
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from samrs_ray.inputs.presets import PRESETS
from samrs_ray.masks.backend import PromptBatch, TileMasks, pack_masks, unpack_masks
from samrs_ray.masks.busy import peak_rss
from samrs_ray.masks.checkpoint import MODEL_TYPES, build_sam

REALSAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "realsamples"
NAIVE_BOX_BATCH = 20  # what SAMRS's script used
CHECKED_TILES = 12  # (b) and (c) masks compared on this many tiles (random-weight masks decode slowly)
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
    subprocess.run([sys.executable, __file__, "--worker", kind, "--spec", str(spec_path), "--result", str(result_path)],
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
