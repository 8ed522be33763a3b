"""Benchmark: where the engine's time per tile goes, stage by stage.

Runs the backend the job's MaskActor builds (bench/engine.py's (b)) on the real-sample tiles,
but calls its stages one at a time with a device sync after each, so each gets its own time:

  prepare   tile (H, W, 3) uint8 -> normalised, padded (1, 3, 1024, 1024) on the device
  encode    image encoder on image_batch tiles -> (B, 256, 64, 64)
  decode    per tile: prompt encoder + mask decoder in chunks, upsampling, threshold, packing,
            the copy back to the host

The syncs cost a little overlap, so the stages add up to a bit more than predict() takes; the
split is what to look at. With --trace, a torch.profiler trace of one predict() call is written
too (open it in chrome://tracing or Perfetto) with the operators that took the most time.

    .venv/bin/python -m bench.stages                                  # tiny, CPU
    python3 bench/stages.py --model-type vit_h --device cuda --copies 8 --trace /tmp/trace.json
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from bench.common import Spec, add_input_arguments, job_config, planned_tiles, prepare_inputs, timed
from samrs_ray.job import resolve_engine
from samrs_ray.job.actor import MaskActor


def stage_seconds(backend, tiles) -> dict[str, float]:
    """Seconds spent in each stage over all tiles, in image_batch groups as predict() makes them."""
    seconds: dict[str, float] = defaultdict(float)
    device = backend.device
    with torch.inference_mode(), backend.autocast():
        image_pe = backend.model.prompt_encoder.get_dense_pe()
        for start in range(0, len(tiles), backend.image_batch):
            group = tiles[start : start + backend.image_batch]
            prepared, elapsed = timed(lambda: [backend.prepare(t.image) for t in group], device)
            seconds["prepare"] += elapsed
            embeddings, elapsed = timed(lambda: backend.encode(prepared), device)
            seconds["encode"] += elapsed
            for tile, embedding, source in zip(prepared, embeddings, group):
                _, elapsed = timed(lambda: backend.decode_tile(tile, embedding, source.prompts, image_pe), device)
                seconds["decode"] += elapsed
    return seconds


def write_trace(backend, tiles, path: Path) -> None:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if backend.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        backend.predict([t.image for t in tiles], [t.prompts for t in tiles])
    profile.export_chrome_trace(str(path))
    key = "self_cuda_time_total" if backend.device.type == "cuda" else "self_cpu_time_total"
    print(profile.key_averages().table(sort_by=key, row_limit=15))
    print(f"trace: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser, copies=1)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    parser.add_argument("--image-batch", type=int, default=4)
    parser.add_argument("--prompt-chunk", type=int, default=None)
    parser.add_argument("--trace", type=Path, default=None, help="also write a torch.profiler trace here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="samrs-stages-"))
    spec = Spec(model_type=args.model_type, checkpoint=prepare_inputs(args, workdir), scenes=str(workdir / "scenes"),
                device=args.device, dtype=args.dtype, image_batch=args.image_batch, prompt_chunk=args.prompt_chunk,
                repeats=1, num_cpus=0, workdir=str(workdir))
    tiles = planned_tiles(spec)
    gpus = torch.cuda.device_count() if torch.device(args.device).type == "cuda" else 0
    backend = MaskActor(resolve_engine(job_config(spec, out=str(workdir / "unused")), gpus)).backend
    backend.predict([tiles[0].image], [tiles[0].prompts])  # warm-up

    _, whole = timed(lambda: backend.predict([t.image for t in tiles], [t.prompts for t in tiles]), backend.device)
    seconds = stage_seconds(backend, tiles)
    boxes = sum(len(t.prompts) for t in tiles)
    print(f"sam-{args.model_type} on {args.device} ({backend.dtype}, image_batch {backend.image_batch}, prompt_chunk "
          f"{backend.prompt_chunk}): {len(tiles)} tiles, {boxes} boxes")
    print(f"predict() as one call: {whole:.3f} s, {1000 * whole / len(tiles):.1f} ms per tile, "
          f"{len(tiles) / whole:.2f} tiles/s")
    total = sum(seconds.values())
    for stage, value in seconds.items():
        print(f"  {stage:<8} {value:8.3f} s  {1000 * value / len(tiles):7.1f} ms per tile  {value / total:6.1%}")
    print(f"  {'sum':<8} {total:8.3f} s  {1000 * total / len(tiles):7.1f} ms per tile")
    if args.trace:
        write_trace(backend, tiles, args.trace)


if __name__ == "__main__":
    main()
