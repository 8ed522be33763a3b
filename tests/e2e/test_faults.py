"""A run SIGKILLed at every step (faults.py: the driver and its local Ray, as when a pod dies):
planning, inference, encoding, shard writing, before the commit, during it, during clean-up.

For each step: the committed version stays readable and byte-identical (the new one, when the
kill came after its record was created); the next run converges to exactly what a clean run
gives (the same rows, created_at aside, and the same label PNG bytes); no tile appears twice;
every scene ends up in the dataset or in manifest/errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from samrs_ray import layout, manifest, storage, versions
from samrs_ray.faults import CRASH_AT_ENV
from tests import REPO
from tests.datasets import dataset_rows, local_path, synthetic_scenes

pytestmark = pytest.mark.slow
STEPS = ["plan", "infer", "encode", "shard", "before-commit", "in-commit", "in-clean-up"]
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
    if step in ("in-commit", "in-clean-up"):  # killed after the new version's record was created
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
