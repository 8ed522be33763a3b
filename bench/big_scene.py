"""Benchmark: the memory one big scene costs the whole job (every process), against its pixels.

A DOTA-v2-sized scene (20,000 x 20,000 pixels, 3,000 objects; real DOTA pixels, P0004 repeated)
is written once, then the job runs on it with the box backend on a local Ray. Every second the
private memory (RssAnon) of the driver and of every Ray worker, plus the object store's use,
are summed; the peak of that sum above the idle cluster is what the scene cost. The scene's
RGB pixels are width x height x 3 bytes: the issue's bound is those pixels plus a few tiles.

    .venv/bin/python -m bench.big_scene --size 20000 --objects 3000
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
from PIL import Image
from ray._private import internal_api

from bench.common import REALSAMPLES
from samrs_ray.config import JobConfig
from samrs_ray.encoding.png import image_png
from samrs_ray.inputs.presets import PRESETS
from samrs_ray.job import generate


def write_scene(folder: Path, size: int, objects: int) -> None:
    """One size x size scene of real DOTA pixels (P0004 repeated) with `objects` small DOTA boxes."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labelTxt").mkdir(parents=True, exist_ok=True)
    sample = np.asarray(Image.open(REALSAMPLES / "dota" / "images" / "P0004.png").convert("RGB"))
    reps = (size // sample.shape[0] + 1, size // sample.shape[1] + 1, 1)
    pixels = np.ascontiguousarray(np.tile(sample, reps)[:size, :size])
    (folder / "images" / "BIG.png").write_bytes(image_png(pixels))
    del pixels
    rng = np.random.default_rng(3)
    corners = rng.integers(0, size - 80, (objects, 2))
    sizes = rng.integers(12, 70, (objects, 2))
    lines = [f"{x} {y} {x + w} {y} {x + w} {y + h} {x} {y + h} small-vehicle 0\n"
             for (x, y), (w, h) in zip(corners.tolist(), sizes.tolist())]
    (folder / "labelTxt" / "BIG.txt").write_text("".join(lines))


def private_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"RssAnon:\s+(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else 0


def job_memory() -> tuple[int, int]:
    """(private memory of this process and every Ray process, the object store's use), bytes."""
    total = private_bytes(os.getpid())
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                title = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::") or b"raylet" in title or b"gcs_server" in title:
                total += private_bytes(int(entry.name))
    plasma = re.search(r"Plasma memory usage (\d+) MiB", internal_api.memory_summary(stats_only=True))
    return total, (int(plasma.group(1)) << 20 if plasma else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, help="keep the scene here (default: a temp dir)")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="samrs-big-scene-"))
    if not (root / "images" / "BIG.png").exists():
        t0 = time.perf_counter()
        write_scene(root, args.size, args.objects)
        print(f"wrote a {args.size}x{args.size} scene ({(root / 'images' / 'BIG.png').stat().st_size / 1e9:.2f} GB PNG) "
              f"with {args.objects} objects in {time.perf_counter() - t0:.0f} s")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    time.sleep(5)  # the cluster settles: its idle memory is the baseline
    idle = sum(job_memory())
    samples, stop = [job_memory()], threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(job_memory())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    config = JobConfig(preset=PRESETS["sota"], images=str(root / "images"), labels=str(root / "labelTxt"),
                       out=str(root / "out"), model="box", write_color=False)
    t0 = time.perf_counter()
    record = generate(config, say=lambda _: None)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    ray.shutdown()
    pixels = args.size * args.size * 3
    above = max(sum(s) for s in samples) - idle
    print(f"{record.counts['tiles']} tiles, {record.counts['instances']} instances in {wall:.0f} s wall")
    print(f"peak memory above the idle cluster, all processes and the object store: {above / 1e9:.2f} GB "
          f"= {above / pixels:.1f}x the scene's RGB pixels ({pixels / 1e9:.2f} GB); apart: processes' private "
          f"memory peaked at {max(p for p, _ in samples) / 1e9:.2f} GB, the object store at "
          f"{max(o for _, o in samples) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
