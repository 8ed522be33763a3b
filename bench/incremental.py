"""Benchmark: a no-change rerun over many synthetic tiles must cost listing and hashing, not inference.

Writes N small synthetic DOTA scenes (used whole: one tile each), runs the job once with the
box backend, then again with nothing changed, and prints the time of each phase of the rerun.

    .venv/bin/python bench/incremental.py --tiles 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
from PIL import Image

from samrs_ray import incremental, storage
from samrs_ray.classes import PRESETS
from samrs_ray.config import JobConfig
from samrs_ray.formats import LABEL_FORMATS
from samrs_ray.inputs import IMAGE_SUFFIXES, list_sizes
from samrs_ray.job import generate


def write_scenes(folder: Path, count: int, size: int) -> None:
    """`count` noise scenes of size x size pixels, each with two small DOTA boxes."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labelTxt").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / "images" / f"S{i:05d}.png")
        corners = [(int(x), int(y), int(x) + 12, int(y) + 10) for x, y in rng.integers(0, size - 12, (2, 2))]
        (folder / "labelTxt" / f"S{i:05d}.txt").write_text(
            "".join(f"{a} {b} {c} {b} {c} {d} {a} {d} small-vehicle 0\n" for a, b, c, d in corners))


def timed(label: str, fn):
    t0 = time.perf_counter()
    result = fn()
    print(f"  {label:<38} {time.perf_counter() - t0:8.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiles", type=int, default=10000)
    parser.add_argument("--size", type=int, default=64, help="scene (= tile) size in pixels")
    parser.add_argument("--workdir", help="where to write scenes and the dataset (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="samrs-incremental-"))
    data, out = root / "data", root / "out"
    if not (data / "images").is_dir():
        timed(f"write {args.tiles} synthetic scenes", lambda: write_scenes(data, args.tiles, args.size))
    preset = dataclasses.replace(PRESETS["sota"], tile_size=None)
    config = JobConfig(preset=preset, images=str(data / "images"), labels=str(data / "labelTxt"), out=str(out),
                       model="box", write_color=False)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    quiet = lambda _: None  # noqa: E731

    print("first run (everything processed):")
    t0 = time.perf_counter()
    first = generate(config, say=quiet)
    first_s = time.perf_counter() - t0
    print(f"  total {first_s:.1f} s, {first.counts['processed']} tiles processed, {first.counts['processed'] / first_s:.1f} tiles/s")

    print("no-change rerun, its parts measured on their own:")
    images = timed("list images + labels", lambda: sorted(list_sizes(config.images, IMAGE_SUFFIXES)) + sorted(list_sizes(config.labels, LABEL_FORMATS["dota"].suffixes)))
    fs, path = storage.open_fs(config.out)
    timed("index shards + list label PNGs", lambda: (incremental.read_index(fs, path), incremental.label_pngs(fs, path)))
    timed("read + sha256 every image and label", lambda: [hashlib.sha256(Path(p).read_bytes()).digest() for p in images])
    t0 = time.perf_counter()
    second = generate(config, say=quiet)
    second_s = time.perf_counter() - t0
    c = second.counts
    print(f"  whole rerun                            {second_s:8.2f} s  ({c['processed']} processed, {c['skipped']} skipped)")
    print(f"rerun / first run: {second_s / first_s:.2f}; tiles checked per second on rerun: {c['skipped'] / second_s:.0f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
