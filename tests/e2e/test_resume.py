"""A run killed mid-way (driver and its local Ray, SIGKILL) leaves the last committed dataset
intact, and the next run finishes the work: the result equals a clean run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from samrs_ray.dataset import manifest, storage, versions
from samrs_ray.job import generate
from tests import REPO
from tests.datasets import config, dataset_rows, local_path, synthetic_scenes

pytestmark = pytest.mark.slow


def cli(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--model", "box",
            "--images", str(data / "images"), "--labels", str(data / "labelTxt"), "--out", str(out),
            "--tile-size", "none", "--shard-tiles", "2", "--no-color"]


def shard_count(out: Path) -> int:
    folder = out / "manifest" / "tiles"
    return len(list(folder.glob("*.parquet"))) if folder.is_dir() else 0


def kill_when_shards_appear(command: list[str], out: Path, shards: int, timeout: float = 240) -> bool:
    """Run `command`, SIGKILL its whole process group once `shards` new shard files exist.
    Returns False when the run finished before that."""
    before = shard_count(out)
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if shard_count(out) >= before + shards:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.02)
        raise AssertionError("the run neither wrote shards nor finished in time")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def snapshot(out: Path) -> tuple[list, list, dict[str, bytes]]:
    pngs = {t["tile_id"]: local_path(t["label_uri"]).read_bytes()
            for t in manifest.read_dataset(str(out), "tiles").to_pylist()}
    tiles = dataset_rows(str(out), "tiles", drop=("created_at", "label_uri", "color_uri", "image_uri"))
    instances = dataset_rows(str(out), "instances")
    return tiles, instances, pngs


def test_killed_run_then_rerun_equals_a_clean_run(tmp_path: Path, local_ray) -> None:
    data, out, clean = tmp_path / "data", tmp_path / "out", tmp_path / "clean"
    synthetic_scenes(data, 40)
    # a committed version with 40 scenes
    generate(config(data / "images", data / "labelTxt", out, preset_changes={"tile_size": None},
                    shard_tiles=2, write_color=False), say=lambda _: None)
    committed = snapshot(out)
    run_json = (out / "_run.json").read_bytes()

    # new scenes and an edited one, then a run killed after a few shards
    synthetic_scenes(data, 120)
    label = data / "labelTxt" / "S00001.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n")
    killed = kill_when_shards_appear(cli(data, out), out, shards=3)
    assert killed, "the run finished before it could be killed; make it longer"

    # readers still see the committed version, whole
    assert (out / "_run.json").read_bytes() == run_json
    assert snapshot(out)[:2] == committed[:2]
    fs, root = storage.open_fs(str(out))
    record = versions.latest(fs, root)
    assert all((out / "manifest" / "tiles" / f"{n}.parquet").is_file() for n in record.shards)

    # the rerun reuses what the killed run finished and equals a clean run
    resumed = subprocess.run(cli(data, out), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = versions.latest(fs, root)
    assert record.counts["tiles"] == 120
    assert record.counts["processed"] < 120 - 40 + 1, "work finished before the kill was redone"
    subprocess.run(cli(data, clean), cwd=REPO, capture_output=True, timeout=600, check=True)
    got, want = snapshot(out), snapshot(clean)
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert got[2] == want[2]
    tile_ids = [t["tile_id"] for t in got[0]]
    assert len(tile_ids) == len(set(tile_ids)) == 120
    # nothing left over: every file on disk belongs to one of the two versions kept readable
    kept = versions.history(fs, root)[-2:]
    used = {local_path(t["label_uri"]).name: t["tile_id"] for r in kept
            for t in manifest.read_dataset(str(out), "tiles", version=r.run_id).to_pylist()}
    assert {p.name for p in (out / "labels").glob("*.png")} == set(used)
    assert {p.stem for p in (out / "manifest" / "tiles").glob("*.parquet")} == {n for r in kept for n in r.shards}
    assert Image.open(out / "labels" / next(n for n, t in used.items() if t == "S00001")).size == (128, 128)


@pytest.mark.parametrize("stage", ["MaskActor", "encode_batch"])
def test_a_killed_worker_is_replaced_without_duplicates(tmp_path: Path, local_ray, stage: str) -> None:
    """SIGKILL the process of the mask actor, or of an encode task, mid-run: Ray restarts it and
    retries its batch; the dataset equals a clean run's, with every tile once."""
    import threading

    import psutil

    data, out, clean = tmp_path / "data", tmp_path / "out", tmp_path / "clean"
    # an encode task lasts a few ms on small tiles: larger ones keep its process busy long enough to be seen
    scenes, size = (150, 128) if stage == "MaskActor" else (60, 512)
    synthetic_scenes(data, scenes, size=size)
    make = lambda target: config(data / "images", data / "labelTxt", target,  # noqa: E731
                                 preset_changes={"tile_size": None}, shard_tiles=2, write_color=False)
    killed: list[int] = []

    def kill_actor_once_work_is_flowing() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if shard_count(out) >= 2:
                for process in psutil.process_iter(["pid", "cmdline"]):
                    if stage in " ".join(process.info["cmdline"] or []):  # Ray titles a worker by its task
                        process.kill()
                        killed.append(process.info["pid"])
                        return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_actor_once_work_is_flowing)
    killer.start()
    record = generate(make(out), say=lambda _: None)
    killer.join()
    assert killed, f"no {stage} process was found to kill"
    assert record.counts["tiles"] == scenes and record.counts["failed"] == 0
    generate(make(clean), say=lambda _: None)
    got, want = snapshot(out), snapshot(clean)
    assert got == want
    assert len({t["tile_id"] for t in got[0]}) == len(got[0]) == scenes
