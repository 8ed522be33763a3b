"""Archive scale (issue 30): an unchanged night over datasets of 10^5 and more tiles, without SAM.

    python -m bench.scale [--sizes 1000x100,10000x100] [--instances 16] [--work DIR]

Each size is SCENES x TILES per scene. The inputs exist, small (an 8 px PNG and a one-line label
file per scene), so that a night lists them. The committed dataset is built through the job's own
writer and commit path (manifest.write_shard, versions.commit with delta.publish) with synthetic
rows of real size: INSTANCES instances a tile, each with a COCO RLE of a ~40 px object on a 1024 px
tile, as SAMRS has. The version's input digest is the one the driver computes (driver.scene_keys),
so the night that follows is the job's unchanged night. It runs as `samrs-ray generate` in a
process of its own, which reports its peak RSS (the driver alone; Ray's processes are others).

Prints, per size: tiles, shard bytes, build time, the night's wall time and the driver's peak RSS.
The night with edits (0.1% of scenes) is not measured here yet: it still reads every shard
(bench/RESULTS.md, "Archive scale").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from samrs_ray.config import JobConfig
from samrs_ray.dataset import delta, layout, manifest, storage, versions
from samrs_ray.dataset.versions import RunRecord
from samrs_ray.inputs import preflight
from samrs_ray.inputs.presets import PRESETS
from samrs_ray.job.driver import scene_keys
from samrs_ray.job.stages import stage_settings

PRESET = dataclasses.replace(PRESETS["sota"], tile_size=None)
SHARD_TILES = 1000
# a ~40 x 40 px object on a 1024 x 1024 tile, as pycocotools writes its counts (about 60 characters)
RLE_COUNTS = "Rk`0>c?2N2N1O1N2O0O2N1O1O0O100O10000O1000O01O1N2O1N2M3N2O1N2Nnh_0"


def inputs(folder: Path, scenes: int) -> None:
    for sub in ("images", "labelTxt"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(folder / "images" / "S0.png")
    png = (folder / "images" / "S0.png").read_bytes()
    for i in range(scenes):
        (folder / "images" / f"S{i:06d}.png").write_bytes(png)
        (folder / "labelTxt" / f"S{i:06d}.txt").write_text("0 0 4 0 4 4 0 4 plane 0\n")
    (folder / "images" / "S0.png").unlink()


def shard(scene_ids: list[int], per_scene: int, instances: int, folder: Path) -> tuple[pa.Table, pa.Table]:
    tile_ids = [f"S{s:06d}__1024__{t * 824}___0" for s in scene_ids for t in range(per_scene)]
    n = len(tile_ids)
    sources = [str(folder / "images" / f"S{s:06d}.png") for s in scene_ids for _ in range(per_scene)]
    fingerprints = [f"{hash(t) & (2**64 - 1):016x}" * 4 for t in tile_ids]
    tiles = pa.table({
        "tile_id": tile_ids, "subset": ["sota"] * n, "split": ["trainval"] * n, "source_uri": sources,
        "label_source_uri": [s.replace("images", "labelTxt").replace(".png", ".txt") for s in sources],
        "x0": pa.array(np.zeros(n, np.int32)), "y0": pa.array(np.zeros(n, np.int32)),
        "width": pa.array(np.full(n, 1024, np.int32)), "height": pa.array(np.full(n, 1024, np.int32)),
        "image_uri": [f"file:///out/tiles/{t}.{f[:16]}.png" for t, f in zip(tile_ids, fingerprints)],
        "label_uri": [f"file:///out/labels/{t}.{f[:16]}.png" for t, f in zip(tile_ids, fingerprints)],
        "color_uri": [f"file:///out/color/{t}.{f[:16]}.png" for t, f in zip(tile_ids, fingerprints)],
        "n_instances": pa.array(np.full(n, instances, np.int32)), "fingerprint": fingerprints,
        "model": ["box-fill"] * n, "created_at": ["2026-12-07T00:00:00+00:00"] * n,
        "crs": pa.nulls(n, pa.string()), "transform": pa.nulls(n, pa.list_(pa.float64(), 6)),
    })
    m = n * instances
    boxes = np.tile(np.array([100, 100, 140, 140], np.float32), m)
    rows = pa.table({
        "tile_id": np.repeat(np.array(tile_ids, dtype=object), instances),
        "instance_id": pa.array(np.tile(np.arange(instances, dtype=np.int32), n)),
        "class_id": pa.array(np.full(m, 4, np.int32)), "class_name": ["plane"] * m,
        "difficult": pa.array(np.zeros(m, bool)), "prompt_type": ["hbox"] * m,
        "prompt_box": pa.FixedSizeListArray.from_arrays(pa.array(boxes), 4),
        "polygon": pa.nulls(m, pa.list_(pa.float32(), 8)),
        "mask_rle": pa.StructArray.from_arrays([pa.array([RLE_COUNTS] * m), pa.array(np.full(m, 1024, np.int32)),
                                                pa.array(np.full(m, 1024, np.int32))],
                                               fields=list(manifest.RLE)),
        "area": pa.array(np.full(m, 1600, np.int64)), "predicted_iou": pa.array(np.ones(m, np.float32)),
        "mask_box": pa.FixedSizeListArray.from_arrays(pa.array(boxes), 4),
        "source_uri": np.repeat(np.array(tiles["label_source_uri"].to_pylist(), dtype=object), instances),
        "source_line": pa.array(np.ones(m, np.int32)),
    })
    return tiles, rows


def build(work: Path, scenes: int, per_scene: int, instances: int) -> tuple[JobConfig, dict]:
    """Inputs, then a committed version of scenes x per_scene tiles; returns the night's config."""
    data, out = work / "data", work / "out"
    inputs(data, scenes)
    config = JobConfig(preset=PRESET, images=str(data / "images"), labels=str(data / "labelTxt"), out=str(out),
                       model="box")
    plan_settings, _ = stage_settings(config, "")
    keys, digest = scene_keys(preflight.find_inputs(config), plan_settings)
    fs, root = storage.open_fs(str(out))
    started, names, rows = time.perf_counter(), [], {}
    per_shard = max(1, SHARD_TILES // per_scene)
    for first in range(0, scenes, per_shard):
        ids = list(range(first, min(scenes, first + per_shard)))
        tiles, instance_rows = shard(ids, per_scene, instances, data)
        names.append(manifest.write_shard(fs, root, tiles, instance_rows))
        rows[layout.shard_path(root, "tiles", names[-1])] = tiles.num_rows
        rows[layout.shard_path(root, "instances", names[-1])] = instance_rows.num_rows
    n_tiles = scenes * per_scene
    record = RunRecord(
        "bench-scale", "2026-12-07T00:00:00+00:00", "", config.public(), {"id": "box-fill", "type": "", "checksum": ""},
        {"scenes": scenes, "scenes_ok": scenes, "tiles": n_tiles, "processed": n_tiles, "skipped": 0, "kept": 0,
         "failed": 0, "removed": 0, "empty_windows": 0, "instances": n_tiles * instances, "objects": scenes,
         "objects_in_tiles": scenes, "errors": 0},
        shards=sorted(names), errors=[], changes={}, version=1, tables=delta.next_pins(None), inputs=digest or "")
    versions.commit(fs, root, record, publish=lambda: delta.publish(fs, root, record, None, rows))
    shard_bytes = sum(p.stat().st_size for p in (out / "manifest").rglob("*.parquet"))
    return config, {"tiles": n_tiles, "shard_mb": shard_bytes / 2**20, "build_s": time.perf_counter() - started}


NIGHT = """
import json, resource, sys, time
from samrs_ray.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "night_s": time.perf_counter() - started,
                  "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def night(config: JobConfig) -> dict:
    args = ["generate", "--preset", "sota", "--tile-size", "none", "--model", "box", "--images", config.images,
            "--labels", config.labels, "--out", config.out]
    done = subprocess.run([sys.executable, "-c", NIGHT, *args], capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["code"] == 0, done.stderr[-2000:]
    assert "nothing to read or compute" in done.stdout, done.stdout[-2000:]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000x100,10000x100")
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="scale-"))
    print(f"{'scenes x tiles':>16} {'tiles':>10} {'shards MB':>10} {'build s':>8} {'night s':>8} {'driver MB':>10}")
    for size in args.sizes.split(","):
        scenes, per_scene = map(int, size.split("x"))
        config, built = build(work / size, scenes, per_scene, args.instances)
        ran = night(config)
        print(f"{size:>16} {built['tiles']:>10,} {built['shard_mb']:>10.0f} {built['build_s']:>8.1f} "
              f"{ran['night_s']:>8.1f} {ran['driver_peak_mb']:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
