"""Tiling cost on a synthetic DOTA-size scene: time and peak memory of plan + objects + cut.

    PYTHONPATH=. .venv/bin/python bench/tiling.py [--size 4000] [--objects 2000]

The target (issue 2): well under a second of CPU for a 4000 x 4000 scene with ~2000 objects
in 1024/200 windows, and memory near one scene plus one tile. Time is measured in one pass,
memory (tracemalloc, which slows Python code down) in a second pass.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from samrs_ray.inputs.annotation import Annotation, enclosing_box
from samrs_ray.planning.tiling import cut_tile, objects_in_window, plan_windows

PAD = (104, 116, 124)


def random_objects(rng: np.random.Generator, scene: int, count: int) -> list[Annotation]:
    """Rotated rectangles, 8-150 px long, anywhere in the scene (some crossing its border)."""
    objects = []
    for i in range(count):
        cx, cy = rng.uniform(0, scene, 2)
        w, h = rng.uniform(8, 150), rng.uniform(8, 60)
        a = rng.uniform(0, np.pi)
        axes = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2 @ axes + (cx, cy)
        polygon = tuple(float(v) for v in corners.ravel())
        objects.append(Annotation("ship", enclosing_box(polygon), polygon, source="synthetic", line=i + 1))
    return objects


def tile_scene(scene: np.ndarray, objects: list[Annotation], size: int, gap: int) -> tuple[int, int]:
    """Everything tiling does for one scene; tiles are dropped as soon as cut (the caller ships them)."""
    windows = plan_windows(scene.shape[1], scene.shape[0], size, gap)
    kept = 0
    for window in windows:
        local = objects_in_window(objects, window)
        if local:
            cut_tile(scene, window, PAD)  # the copy is the cost measured; the job ships it on
            kept += len(local)
    return len(windows), kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--gap", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    objects = random_objects(rng, args.size, args.objects)
    rss_before_scene = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scene = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    wall, cpu = time.perf_counter(), time.process_time()
    n_windows, kept = tile_scene(scene, objects, args.tile, args.gap)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tile_scene(scene, objects, args.tile, args.gap)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()

    mib = 1 / 2**20
    scene_b, tile_b = scene.nbytes, args.tile * args.tile * 3
    print(f"scene {args.size}x{args.size}, {args.objects} objects, {n_windows} windows of "
          f"{args.tile}/{args.gap}, {kept} tile objects")
    print(f"time: {wall:.3f} s wall, {cpu:.3f} s CPU")
    print(f"scene {scene_b * mib:.1f} MiB, one tile {tile_b * mib:.1f} MiB")
    print(f"tracemalloc peak above the scene: {peak * mib:.1f} MiB = {peak / tile_b:.2f} tiles")
    print(f"maxrss: {rss_before_scene / 1024:.0f} MiB before the scene, {rss_before / 1024:.0f} MiB with it, "
          f"{rss_after / 1024:.0f} MiB after tiling (+{(rss_after - rss_before) / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
