"""Benchmark: a no-change rerun over many synthetic tiles must cost listing, not reading inputs
or inference; and a long first run must keep each worker's memory flat and not spill.

Writes N small synthetic DOTA scenes (used whole: one tile each), runs the job once with the
box backend, then again with nothing changed, and prints the time of each phase of the rerun.
During each run every Ray worker's resident memory is sampled (/proc, every 2 s): per role
(the process title: the mask actor, encode and plan tasks), its RSS early in the run, at its
end and at its peak; and the object store's spilled bytes (Ray's memory summary) after it.

    .venv/bin/python bench/incremental.py --tiles 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import ray
from PIL import Image
from ray._private import internal_api

from samrs_ray.config import JobConfig
from samrs_ray.dataset import incremental, scene_cache, storage
from samrs_ray.inputs.formats import LABEL_FORMATS
from samrs_ray.inputs.listing import IMAGE_SUFFIXES, list_sizes
from samrs_ray.inputs.presets import PRESETS
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


class WorkerMemory:
    """Samples the RSS of every Ray worker process on this machine in a thread, by role."""

    def __init__(self, every_s: float = 2.0):
        self.every_s = every_s
        self.samples: list[tuple[float, dict[int, tuple[str, int]]]] = []  # (t, {pid: (title, rss bytes)})
        self.plasma_mib: list[float] = []  # the object store's use at each sample
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self) -> "WorkerMemory":
        self.start = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()

    def loop(self) -> None:
        while not self.stop.wait(self.every_s):
            found = {}
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    title = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                    if not title.startswith("ray::") or title in ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent"):
                        continue
                    status = Path(entry.path, "status").read_text()
                except OSError:
                    continue
                rss = int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)) * 1024  # private: not the object store's pages
                found[int(entry.name)] = (title[len("ray::"):], rss)
            self.samples.append((time.monotonic() - self.start, found))
            summary = internal_api.memory_summary(stats_only=True)
            self.plasma_mib.append(float(re.search(r"Plasma memory usage (\d+) MiB", summary).group(1)))

    def report(self) -> list[str]:
        """Per role: private RSS (GB) of its largest process at 10% of the run, at the end, and the peak."""
        if not self.samples:
            return ["  (no worker sampled)"]
        roles: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for t, found in self.samples:
            by_role: dict[str, int] = defaultdict(int)
            for title, rss in found.values():
                by_role[role_of(title)] = max(by_role[role_of(title)], rss)
            for role, rss in by_role.items():
                roles[role].append((t, rss))
        end = self.samples[-1][0]
        lines = [f"  object store in use: peak {max(self.plasma_mib):.0f} MiB, median "
                 f"{sorted(self.plasma_mib)[len(self.plasma_mib) // 2]:.0f} MiB ({len(self.samples)} samples)"]
        for role, series in sorted(roles.items()):
            if role not in ROLES.values():
                continue  # Ray's own actors
            early = next(rss for t, rss in series if t >= min(0.1 * end, series[-1][0]))
            lines.append(f"  {role:<28} private RSS at 10% {early / 2**30:5.2f} GB, at the end {series[-1][1] / 2**30:5.2f} GB, "
                         f"peak {max(r for _, r in series) / 2**30:5.2f} GB")
        return lines


ROLES = {"plan_group": "plan task", "MaskActor": "mask actor", "encode_batch": "encode task",
         "shard_batch": "shard task"}


def role_of(title: str) -> str:
    """'MapWorker(MapBatches(MaskActor))' -> 'mask actor'; task titles by their function."""
    return next((role for key, role in ROLES.items() if key in title), title)


def spilled_mib() -> float:
    """MiB the object store has spilled to disk so far (0 when Ray reports none)."""
    found = re.search(r"Spilled (\d+) MiB", internal_api.memory_summary(stats_only=True))
    return float(found.group(1)) if found else 0.0


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
    with WorkerMemory() as memory:
        first = generate(config, say=quiet)
    first_s = time.perf_counter() - t0
    print(f"  total {first_s:.1f} s, {first.counts['processed']} tiles processed, {first.counts['processed'] / first_s:.1f} tiles/s")
    print("\n".join(memory.report()))
    print(f"  object store spilled so far: {spilled_mib():.0f} MiB")

    print("no-change rerun, its parts measured on their own:")
    images = timed("list images + labels", lambda: sorted(list_sizes(config.images, IMAGE_SUFFIXES)) + sorted(list_sizes(config.labels, LABEL_FORMATS["dota"].suffixes)))
    fs, path = storage.open_fs(config.out)
    timed("index shards + list label PNGs", lambda: (incremental.read_index(fs, path), incremental.label_pngs(fs, path)))
    timed("read + sha256 every image and label", lambda: [hashlib.sha256(Path(p).read_bytes()).digest() for p in images])
    timed("read the scene cache", lambda: scene_cache.read(fs, path))
    lines: list[str] = []
    t0 = time.perf_counter()
    second = generate(config, say=lines.append)
    second_s = time.perf_counter() - t0
    print("  " + next((line for line in lines if "seen before" in line), "(no scene cache line)"))
    print("  " + next(line for line in lines if " committed " in line))
    c = second.counts
    print(f"  whole rerun                            {second_s:8.2f} s  ({c['processed']} processed, {c['skipped']} skipped)")
    print(f"rerun / first run: {second_s / first_s:.2f}; tiles checked per second on rerun: {c['skipped'] / second_s:.0f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
