"""A run SIGKILLed at every step (faults.py: the driver and its local Ray, as when a pod dies):
planning, inference, encoding, shard writing, before the commit, during it, during clean-up;
a run whose disk fills up, or whose S3 store goes away mid-run and comes back; a label file
rewritten while the run reads it; a checkpoint replaced during a run.

For each step: the committed version stays readable and byte-identical (the new one, when the
kill came after its record was created); the next run converges to exactly what a clean run
gives (the same rows, created_at aside, and the same label PNG bytes); no tile appears twice;
every scene ends up in the dataset or in manifest/errors."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

from samrs_ray.dataset import layout, manifest, storage, versions
from samrs_ray.errors import RunFailed
from samrs_ray.job import driver, generate
from samrs_ray.job.faults import CRASH_AT_ENV
from samrs_ray.masks.checkpoint import build_tiny_sam
from tests import REPO
from tests.datasets import config, dataset_rows, delta_agrees, local_path, synthetic_scenes
from tests.seaweed import SeaweedS3

pytestmark = pytest.mark.slow
STEPS = ["plan", "infer", "encode", "shard", "before-commit", "in-commit", "in-publish", "in-clean-up"]
URIS = ("label_uri", "color_uri", "image_uri")


def cli(data: Path, out: Path) -> list[str]:
    # --keep-versions 1: the run's clean-up has the previous version's files to delete
    return [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--model", "box",
            "--images", str(data / "images"), "--labels", str(data / "labelTxt"), "--out", str(out),
            "--tile-size", "none", "--shard-tiles", "3", "--keep-versions", "1"]


def run(data: Path, out: Path, crash_at: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT_ENV}
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    return subprocess.run(cli(data, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          start_new_session=True)


def version_files(out: Path) -> dict[str, str]:
    """sha256 of every file the committed version uses (its record included), by path."""
    fs, root = storage.open_fs(str(out))
    record = versions.latest(fs, root)
    paths = [Path(layout.version_path(root, record.version))]
    paths += [Path(layout.shard_path(root, t, n)) for n in record.shards for t in ("tiles", "instances")]
    paths += [Path(layout.shard_path(root, "errors", n)) for n in record.errors]
    paths += [local_path(t[c]) for t in manifest.read_dataset(str(out), "tiles").to_pylist() for c in URIS
              if t[c] and local_path(t[c]).is_relative_to(out)]  # image_uri is the scene itself when uncut
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def content(out: Path) -> tuple[list, list, dict[str, bytes]]:
    tiles = manifest.read_dataset(str(out), "tiles").to_pylist()
    ids = [t["tile_id"] for t in tiles]
    assert len(ids) == len(set(ids)), "a tile appears twice"
    labels = {t["tile_id"]: local_path(t["label_uri"]).read_bytes() for t in tiles}
    delta_agrees(str(out))
    drop = ("created_at", *URIS)
    return dataset_rows(str(out), "tiles", drop=drop), dataset_rows(str(out), "instances"), labels


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A committed dataset of 8 scenes; inputs changed since (4 scenes added, one label edited,
    one scene deleted); and what a clean run of the changed inputs gives."""
    root = tmp_path_factory.mktemp("faults")
    data, committed, clean = root / "data", root / "committed", root / "clean"
    synthetic_scenes(data, 8)
    assert run(data, committed).returncode == 0
    synthetic_scenes(data, 12)
    label = data / "labelTxt" / "S00001.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n")
    for folder, suffix in (("images", "png"), ("labelTxt", "txt")):
        (data / folder / f"S00002.{suffix}").unlink()
    assert run(data, clean).returncode == 0
    return {"data": data, "committed": committed, "clean": clean}


@pytest.mark.parametrize("step", STEPS)
def test_a_run_killed_at_each_step_leaves_a_whole_version_and_the_rerun_converges(world, step, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(world["committed"], out)
    before = version_files(out)

    killed = run(world["data"], out, crash_at=step)
    assert killed.returncode == -9, f"the run was not killed at {step}: {killed.stderr[-2000:]}"
    fs, root = storage.open_fs(str(out))
    committed = versions.latest(fs, root)
    if step in ("in-commit", "in-publish", "in-clean-up"):  # killed after the new version's record was created
        assert committed.version == 2
        version_files(out)  # every file it uses is there
    else:
        assert committed.version == 1
        assert version_files(out) == before, "the committed version changed under its readers"

    rerun = run(world["data"], out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert content(out) == content(world["clean"])
    record = versions.latest(fs, root)
    assert (record.counts["scenes"], record.counts["scenes_ok"], record.counts["tiles"]) == (11, 11, 11)
    assert record.counts["processed"] <= 5  # the 4 new scenes and the edited one, at most


# --- the store: full, or gone for a while ---------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at path: a real filesystem that fills up."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_stops_the_run_clearly_and_the_rerun_converges(tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic_scenes(data, 4, size=256)
    with small_disk(tmp_path / "disk", "300k") as disk:
        out = disk / "out"
        assert run(data, out).returncode == 0
        before = version_files(out)
        synthetic_scenes(data, 60, size=256)  # about twice what the disk holds

        full = run(data, out)
        assert full.returncode == 4, full.stderr[-3000:]
        message = full.stderr.strip().splitlines()[-1]
        assert "OSError: [Errno 28] No space left on device" in message and "committed version is untouched" in message
        assert version_files(out) == before
        assert not list(out.rglob("*.tmp")), "half-written files left behind"

        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        assert run(data, out).returncode == 0
        assert run(data, tmp_path / "clean").returncode == 0
        assert content(out) == content(tmp_path / "clean")


def shards_on(fs, root: str) -> int:
    try:
        return len(fs.ls(f"{root}/manifest/tiles", refresh=True))
    except FileNotFoundError:
        return 0


def test_the_store_going_away_mid_run_stops_it_clearly_and_the_rerun_converges(tmp_path: Path) -> None:
    weed = SeaweedS3(tmp_path / "weed", bucket="outage")
    s3 = weed.start()
    try:
        data = tmp_path / "data"
        synthetic_scenes(data, 8)
        upload = lambda: (s3.upload_dir(data / "images", "in/images"), s3.upload_dir(data / "labelTxt", "in/labels"))  # noqa: E731
        images, labels = upload()
        out = s3.uri("out")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **s3.env}
        command = [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--model", "box",
                   "--images", images, "--labels", labels, "--out", out, "--tile-size", "none", "--shard-tiles", "2"]
        finish = lambda: subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)  # noqa: E731
        assert finish().returncode == 0
        fs, root = storage.open_fs(out, s3.storage_options)
        record = versions.latest(fs, root)
        committed = {p: fs.cat_file(p) for p in
                     [layout.version_path(root, record.version)]
                     + [layout.shard_path(root, t, n) for n in record.shards for t in ("tiles", "instances")]}

        synthetic_scenes(data, 40)
        upload()
        running = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        before = shards_on(fs, root)
        deadline = time.monotonic() + 300
        while shards_on(fs, root) == before and running.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running.poll() is None, "the run finished before the store could go away; make it longer"
        weed.stop()  # the store goes away mid-run
        _, stderr = running.communicate(timeout=900)
        assert running.returncode == 4, stderr[-3000:]
        assert "the run stopped before its commit" in stderr and "committed version is untouched" in stderr

        weed.come_back()  # ... and comes back later
        fs.invalidate_cache()
        assert {p: fs.cat_file(p) for p in committed} == committed
        assert versions.latest(fs, root).version == record.version
        rerun = finish()
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        clean = tmp_path / "clean"
        local = [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--model", "box",
                 "--images", str(data / "images"), "--labels", str(data / "labelTxt"), "--out", str(clean),
                 "--tile-size", "none"]
        assert subprocess.run(local, cwd=REPO, capture_output=True, timeout=600).returncode == 0
        drop = ("created_at", "source_uri", "label_source_uri", *URIS)
        for table in ("tiles", "instances"):
            assert dataset_rows(out, table, s3.storage_options, drop) == dataset_rows(str(clean), table, None, drop)
    finally:
        weed.stop()


# --- inputs that change under the run ----------------------------------------------------------


def in_process(data: Path, out: Path, **changes) -> versions.RunRecord:
    return generate(config(data / "images", data / "labelTxt", out, preset_changes={"tile_size": None}, **changes),
                    say=lambda _: None)


def test_a_label_file_rewritten_while_the_run_reads_it(tmp_path: Path, local_ray) -> None:
    """Rewritten in place, over and over, as an editor or a sync tool would, while a run reads
    it: the run commits a whole version (what it read, or an error row for a half-written read);
    once the file is still, the next run converges to a clean run's dataset."""
    data = tmp_path / "data"
    synthetic_scenes(data, 30)
    label = data / "labelTxt" / "S00007.txt"
    versions_of_it = [label.read_text(), label.read_text().splitlines()[0] + "\n"]
    stop = threading.Event()

    def keep_rewriting() -> None:
        i = 0
        while not stop.is_set():
            with open(label, "w") as f:  # not atomic: a reader may see it half written
                for line in versions_of_it[i % 2].splitlines(keepends=True):
                    f.write(line)
                    f.flush()
            i += 1

    writer = threading.Thread(target=keep_rewriting)
    writer.start()
    try:
        during = in_process(data, tmp_path / "out")
    finally:
        stop.set()
        writer.join()
    fs, root = storage.open_fs(str(tmp_path / "out"))
    assert versions.latest(fs, root).run_id == during.run_id
    content(tmp_path / "out")  # whole: every tile once, every label PNG readable
    label.write_text(versions_of_it[1])
    in_process(data, tmp_path / "out")
    in_process(data, tmp_path / "clean")
    assert content(tmp_path / "out") == content(tmp_path / "clean")


def test_a_checkpoint_replaced_during_the_run_stops_it_before_any_mask(tmp_path: Path, local_ray,
                                                                     monkeypatch) -> None:
    """The driver hashes the checkpoint; a mask actor whose copy hashes otherwise refuses to
    start, so no mask is filed under the wrong model. The committed version stays; the rerun
    computes every tile with the new weights."""
    data, out = tmp_path / "data", tmp_path / "out"
    synthetic_scenes(data, 3)
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.manual_seed(1)
    torch.save(build_tiny_sam().state_dict(), checkpoint)
    sam = {"model": "sam", "model_type": "tiny", "checkpoint": str(checkpoint)}
    first = in_process(data, out, **sam)
    synthetic_scenes(data, 5)

    real_checksum = driver.model_checksum

    def checksum_then_replace(config):
        found = real_checksum(config)
        torch.manual_seed(2)
        torch.save(build_tiny_sam().state_dict(), checkpoint)  # replaced after the driver looked
        return found

    monkeypatch.setattr(driver, "model_checksum", checksum_then_replace)
    with pytest.raises(RunFailed, match="the file changed during the run"):
        in_process(data, out, **sam)
    monkeypatch.undo()
    fs, root = storage.open_fs(str(out))
    assert versions.latest(fs, root).run_id == first.run_id

    again = in_process(data, out, **sam)
    assert again.model["checksum"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest() != first.model["checksum"]
    assert (again.counts["processed"], again.counts["tiles"]) == (5, 5)
