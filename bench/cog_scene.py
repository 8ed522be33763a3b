"""Benchmark: one big COG scene and ~20,000 map boxes through a map run (box backend).

A synthetic size x size RGB COG (tiled 512, deflate, overviews; real DOTA pixels, P0004 repeated)
and a GeoPackage of boxes in its CRS are written once. Then:

1. planning memory: one planning task (one part of PART_WINDOWS windows, pixels read) in a fresh
   process; its peak RSS, against the scene's RGB size;
2. the job on a local Ray, local files: tiles/s (tiles written / the run's work time);
3. the same scene as one PNG with DOTA labels through the label-file path (`--png`): tiles/s and
   what a planning worker must hold (the decoded scene);
4. with `--s3`, the COG and the layer on SeaweedFS (loopback) behind a counting proxy: the first
   run's tiles/s, and an unchanged rerun's GETs of the raster (the target is none);
5. `export --format geo` of the local run in a fresh process: its time and peak RSS, against the
   scene's label raster (`--export-only` measures just this on a workdir that has the run).

    .venv/bin/python -m bench.cog_scene --size 40000 --boxes 20000 [--png] [--s3]

GPU steps for the same scene: `python -m bench.cog_scene --model sam --model-type vit_h
--checkpoint sam_vit_h.pth` on a GPU machine (the mask stage then runs SAM on the GPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import REALSAMPLES

CRS = "EPSG:32633"
ORIGIN = (500_000.0, 4_650_000.0)
PIXEL = 0.3  # metres: an aerial orthophoto


def write_cog(path: Path, size: int) -> None:
    """size x size RGB COG written by 512-pixel strips (the scene is never whole in memory)."""
    import rasterio
    from rasterio.shutil import copy as gdal_copy
    from rasterio.transform import from_origin

    sample = np.asarray(Image.open(REALSAMPLES / "dota" / "images" / "P0004.png").convert("RGB"))
    strip = 512
    staging = path.with_suffix(".staging.tif")
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=CRS, tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="YES",
                   transform=from_origin(*ORIGIN, PIXEL, PIXEL))
    with rasterio.open(staging, "w", **profile) as dst:
        for top in range(0, size, strip):
            rows = np.arange(top, min(top + strip, size)) % sample.shape[0]
            cols = np.arange(size) % sample.shape[1]
            dst.write(sample[rows][:, cols].transpose(2, 0, 1), window=((top, top + len(rows)), (0, size)))
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        gdal_copy(staging, path, driver="COG", compress="deflate", blocksize=512, overview_resampling="average",
                  BIGTIFF="YES")
    staging.unlink()


def write_boxes(folder: Path, size: int, count: int) -> None:
    """A GeoPackage of `count` boxes (12-70 pixels) in the scene's CRS, and the same boxes as DOTA
    labels for the PNG comparison."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(3)
    corners = rng.integers(0, size - 80, (count, 2))
    sides = rng.integers(12, 70, (count, 2))
    x0, y0 = ORIGIN[0] + corners[:, 0] * PIXEL, ORIGIN[1] - corners[:, 1] * PIXEL
    boxes = shapely.box(x0, y0 - sides[:, 1] * PIXEL, x0 + sides[:, 0] * PIXEL, y0)
    gpd.GeoDataFrame({"class": ["small-vehicle"] * count}, geometry=boxes, crs=CRS).to_file(
        folder / "layers" / "boxes.gpkg")
    lines = [f"{x} {y} {x + w} {y} {x + w} {y + h} {x} {y + h} small-vehicle 0\n"
             for (x, y), (w, h) in zip(corners.tolist(), sides.tolist())]
    (folder / "labelTxt" / "big.txt").write_text("".join(lines))


def part_memory(folder: Path, out: Path) -> dict[str, float]:
    """Plan one part (its windows' pixels read) in a fresh process, as a planning task gets it: the
    part's item (header and the scene's objects) from the driver. Its peak RSS."""
    from samrs_ray.dataset import storage
    from samrs_ray.inputs.listing import list_files
    from samrs_ray.inputs.map_inputs import map_scenes
    from samrs_ray.inputs.presets import PRESETS
    from samrs_ray.planning.raster_plan import scene_parts

    preset = PRESETS["sota"]
    fs, root = storage.open_fs(str(out), {})
    maps = map_scenes(list_files(str(folder / "rasters"), (".tif",)), list_files(str(folder / "layers"), (".gpkg",)),
                      "layers", preset, "class", None, None, {}, fs, root)
    name = maps.pairs[0].name
    parts = scene_parts(name, maps.rasters[name], maps.image_keys[name], "layers", maps.objects[name],
                        preset.tile_size, preset.gap)
    item = folder / "part.json"
    item.write_text(json.dumps(parts[len(parts) // 2].to_item()))
    code = f"""
import json, resource
from samrs_ray.inputs.presets import PRESETS
from samrs_ray.planning.plan import PlanSettings
from samrs_ray.planning.raster_plan import RasterPart, plan_part
part = RasterPart.from_item(json.load(open({str(item)!r})))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tiles = sum(1 for row in plan_part(part, PlanSettings(PRESETS["sota"], "d", 10**10, {{}}), frozenset(), True)
            if row.get("pixels"))
print(json.dumps({{"tiles": tiles, "before_kib": before, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "parts": len(parts)}


def run(args: list[str]) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "samrs_ray.cli", *args], capture_output=True, text=True)
    if done.returncode not in (0,):
        raise SystemExit(f"samrs-ray {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.monotonic() - started, done.stdout


def work_seconds(said: str) -> float:
    """The run's own 'work' part (Clock): planning to the last shard, without Ray's start."""
    return float(said.split(" work ")[1].split(" s")[0])


def processed(said: str) -> int:
    return int(said.split(" in dataset: ")[1].split(" processed")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--boxes", type=int, default=20_000)
    parser.add_argument("--png", action="store_true", help="also run the scene as one PNG through the label-file path")
    parser.add_argument("--s3", action="store_true", help="also run it from SeaweedFS, and an unchanged rerun")
    parser.add_argument("--model", default="box")
    parser.add_argument("--model-type")
    parser.add_argument("--checkpoint")
    parser.add_argument("--workdir", help="keep the scene here between runs (default: a temporary folder)")
    parser.add_argument("--memory-only", action="store_true", help="measure the planning task's memory and stop")
    parser.add_argument("--export-only", action="store_true", help="measure the geo export of the workdir's run")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="cog-scene-"))
    for sub in ("rasters", "layers", "images", "labelTxt"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for old in work.glob("out-*") if not args.export_only else ():  # the scene is kept, the datasets are not
        shutil.rmtree(old)
    cog = work / "rasters" / "big.tif"
    if not cog.exists():
        started = time.monotonic()
        write_cog(cog, args.size)
        write_boxes(work, args.size, args.boxes)
        print(f"wrote a {args.size} x {args.size} COG ({cog.stat().st_size / 1e9:.2f} GB) and {args.boxes} boxes "
              f"in {time.monotonic() - started:.0f} s")
    (work / "classes.txt").write_text("small-vehicle\n")
    engine = ["--model", args.model, *(["--model-type", args.model_type] if args.model_type else []),
              *(["--checkpoint", args.checkpoint] if args.checkpoint else [])]
    rgb_gb = args.size * args.size * 3 / 1e9

    if args.export_only:
        export_memory(work, args.size)
        return
    memory = part_memory(work, work / "out-memory")
    print(f"planning task: {memory['tiles']} tiles of one of {memory['parts']} parts; peak RSS "
          f"{memory['peak_kib'] / 2**20:.2f} GiB (imports and the part's item alone: "
          f"{memory['before_kib'] / 2**20:.2f} GiB); the scene's RGB is {rgb_gb:.1f} GB")
    if args.memory_only:
        return

    common = ["--preset", "sota", "--label-format", "vector", "--images", str(work / "rasters"),
              "--labels", str(work / "layers"), *engine]
    wall, said = run(["generate", *common, "--out", str(work / "out-cog")])
    cog_rate = processed(said) / work_seconds(said)
    print(f"COG, local: {processed(said)} tiles in {work_seconds(said):.0f} s of work ({wall:.0f} s wall): "
          f"{cog_rate:.2f} tiles/s")
    wall, said = run(["generate", *common, "--out", str(work / "out-cog")])
    print(f"COG, local, unchanged rerun: {wall:.1f} s wall, {processed(said)} tiles processed")
    export_memory(work, args.size)

    if args.png:
        png = work / "images" / "big.png"
        if not png.exists():
            import rasterio

            with rasterio.open(cog) as src:
                Image.fromarray(src.read().transpose(1, 2, 0)).save(png, compress_level=1)
        wall, said = run(["generate", "--preset", "sota", "--images", str(work / "images"), "--labels",
                          str(work / "labelTxt"), "--out", str(work / "out-png"), "--max-pixels",
                          str(args.size * args.size), *engine])
        png_rate = processed(said) / work_seconds(said)
        print(f"PNG, today's path: {processed(said)} tiles in {work_seconds(said):.0f} s of work: {png_rate:.2f} "
              f"tiles/s; COG/PNG = {cog_rate / png_rate:.2f}x; a planning worker holds the decoded scene, "
              f"{rgb_gb:.1f} GB")

    if args.s3:
        s3_runs(work, common, engine)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"largest child process (the driver and its Ray, or the planning probe): {peak:.2f} GiB peak RSS")


def export_memory(work: Path, size: int) -> None:
    """`export --format geo` of out-cog in a fresh process: its wall time and peak RSS."""
    dest = work / "geo"
    shutil.rmtree(dest, ignore_errors=True)
    code = ("import resource, sys\nfrom samrs_ray import cli\ncode = cli.main(sys.argv[1:])\n"
            "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(code)\n")
    command = [sys.executable, "-c", code, "export", "--out", str(work / "out-cog"), "--format", "geo", "--dest",
               str(dest)]
    started = time.monotonic()
    said = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    peak = int(said.split("peak_kib")[-1]) / 2**20
    print(f"geo export: {time.monotonic() - started:.0f} s, peak RSS {peak:.2f} GiB; the scene's label raster "
          f"whole is {size * size / 2**30:.2f} GiB; label COG {(dest / 'big.tif').stat().st_size / 1e6:.1f} MB")


def s3_runs(work: Path, common: list[str], engine: list[str]) -> None:
    from tests.seaweed import CountingProxy, SeaweedS3, find_weed

    with SeaweedS3(work / "seaweed", bucket="bench", weed=find_weed()) as s3:
        s3.upload_dir(work / "rasters", "scene/rasters")
        s3.upload_dir(work / "layers", "scene/layers")
        data = s3.uri("scene")
        options = ["--storage-options", json.dumps(s3.storage_options)]
        remote = ["--preset", "sota", "--label-format", "vector", "--images", f"{data}/rasters", "--labels",
                  f"{data}/layers", *engine, "--out", s3.uri("out")]
        wall, said = run(["generate", *remote, *options])
        print(f"COG, S3: {processed(said)} tiles in {work_seconds(said):.0f} s of work: "
              f"{processed(said) / work_seconds(said):.2f} tiles/s")
        proxy = CountingProxy(s3)
        with proxy as counted:
            wall, said = run(["generate", *remote, "--storage-options", json.dumps(counted.storage_options)])
        print(f"COG, S3, unchanged rerun: {wall:.1f} s wall, {len(proxy.reads('bench/scene/rasters'))} GETs of the "
              f"raster, {processed(said)} tiles processed")


if __name__ == "__main__":
    main()
