"""Two runs on one --out (versions.py: an optimistic commit). The run that commits second fails
(ConcurrentRunError; exit 3 from the CLI) with a message naming the other run, the committed
version stays whole, nothing of the winner's is removed, and a rerun of the loser converges to
what a clean run gives. On a local folder and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from samrs_ray.dataset import layout, manifest, storage, versions
from samrs_ray.errors import ConcurrentRunError
from samrs_ray.job import generate
from tests import REPO
from tests.datasets import config, dataset_rows, delta_agrees, synthetic_scenes

pytestmark = pytest.mark.slow
URIS = ("label_uri", "color_uri", "image_uri")


def quiet(_: str) -> None:
    pass


@dataclass
class Place:
    """Inputs (all scenes; only S00001) and the dataset, as URIs of one store."""

    everything: tuple[str, str]
    only_s1: tuple[str, str]
    out: str
    storage_options: dict

    def run(self, inputs: tuple[str, str], out: Optional[str] = None) -> versions.RunRecord:
        return generate(config(*inputs, out or self.out, storage_options=self.storage_options,
                               preset_changes={"tile_size": None}), say=quiet)


def local_inputs(tmp_path: Path) -> tuple[Path, Path]:
    data, only = tmp_path / "data", tmp_path / "only-s1"
    synthetic_scenes(data, 2)
    for folder, suffix in (("images", "png"), ("labelTxt", "txt")):
        (only / folder).mkdir(parents=True)
        shutil.copy(data / folder / f"S00001.{suffix}", only / folder)
    return data, only


def edit_label(data: Path) -> None:
    label = data / "labelTxt" / "S00000.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n")


@pytest.fixture(params=["local", "s3"])
def place(request, tmp_path: Path) -> Place:
    data, only = local_inputs(tmp_path)
    if request.param == "local":
        return Place((str(data / "images"), str(data / "labelTxt")), (str(only / "images"), str(only / "labelTxt")),
                     str(tmp_path / "out"), {})
    s3 = request.getfixturevalue("s3")
    prefix = f"concurrent-{uuid.uuid4().hex[:8]}"
    upload = lambda folder, name: (s3.upload_dir(folder / "images", f"{prefix}/{name}/images"),  # noqa: E731
                                   s3.upload_dir(folder / "labelTxt", f"{prefix}/{name}/labelTxt"))
    place = Place(upload(data, "data"), upload(only, "only"), s3.uri(f"{prefix}/out"), s3.storage_options)
    place.upload_edit = lambda: s3.upload_dir(data / "labelTxt", f"{prefix}/data/labelTxt")  # type: ignore[attr-defined]
    return place


def committed_and_whole(out: str, storage_options: Optional[dict]) -> tuple[versions.RunRecord, set[str]]:
    """The committed version, after checking that every file it references exists and that no
    tile appears twice; returns it and its tile ids."""
    fs, root = storage.open_fs(out, storage_options)
    fs.invalidate_cache()
    record = versions.latest(fs, root)
    tiles = manifest.read_dataset(out, "tiles", storage_options).to_pylist()
    ids = [t["tile_id"] for t in tiles]
    assert len(ids) == len(set(ids)), "a tile appears twice"
    referenced = [layout.shard_path(root, table, n) for n in record.shards for table in ("tiles", "instances")]
    referenced += [layout.shard_path(root, "errors", n) for n in record.errors]
    referenced += [fs._strip_protocol(t[c]) for t in tiles for c in URIS if t[c]]
    missing = [path for path in referenced if not fs.exists(path)]
    assert not missing, f"the committed version references missing files: {missing[:5]}"
    delta_agrees(out, storage_options)  # the loser published nothing to the Delta tables
    return record, set(ids)


def test_the_second_commit_fails_and_the_first_stays_whole(place: Place, tmp_path: Path, local_ray,
                                                           monkeypatch) -> None:
    place.run(place.everything)  # version 1: both scenes
    edit_label(tmp_path / "data")
    if hasattr(place, "upload_edit"):
        place.upload_edit()
    # Run A (both scenes: S00000 to compute) gets to its commit; just then run B (S00001 only:
    # nothing to compute, S00000 removed) runs from start to commit.
    real_commit, runs = versions.commit, {}

    def b_commits_first(fs, root, record, **kwargs):
        if "b" not in runs:
            runs["b"] = None
            runs["b"] = place.run(place.only_s1)
        return real_commit(fs, root, record, **kwargs)

    monkeypatch.setattr(versions, "commit", b_commits_first)
    with pytest.raises(ConcurrentRunError) as lost:
        place.run(place.everything)
    monkeypatch.setattr(versions, "commit", real_commit)
    winner = runs["b"]
    assert f"another run ({winner.run_id}, started {winner.started_at}) committed version 2" in str(lost.value)
    assert "Rerun" in str(lost.value)

    record, tiles = committed_and_whole(place.out, place.storage_options)
    assert (record.run_id, record.version, tiles) == (winner.run_id, 2, {"S00001"})

    # A's computed tile survived B's clean-up (A was at work), so the rerun computes nothing
    again = place.run(place.everything)
    assert (again.version, again.counts["processed"], again.counts["tiles"]) == (3, 0, 2)
    committed_and_whole(place.out, place.storage_options)
    clean = place.run(place.everything, str(tmp_path / "clean"))
    assert clean.counts["processed"] == 2
    drop = ("created_at", *URIS)
    for table in ("tiles", "instances"):
        assert dataset_rows(place.out, table, place.storage_options, drop) == \
            dataset_rows(str(tmp_path / "clean"), table, None, drop)


def cli(inputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--model", "box",
            "--images", str(inputs / "images"), "--labels", str(inputs / "labelTxt"), "--out", str(out),
            "--tile-size", "none"]


def test_two_command_line_runs_started_seconds_apart(tmp_path: Path) -> None:
    """As users meet it: a run by hand while the nightly one works. Whichever commits second
    exits 3; the dataset stays whole, and rerunning the loser completes it."""
    data, only = local_inputs(tmp_path)
    synthetic_scenes(data, 24)  # enough work for A to be still at it when B commits
    out = tmp_path / "out"
    a = subprocess.Popen(cli(data, out), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    b = subprocess.Popen(cli(only, out), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finished = {name: (p, *p.communicate(timeout=600)) for name, p in (("a", a), ("b", b))}
    codes = {name: p.returncode for name, (p, _, _) in finished.items()}
    assert set(codes.values()) <= {0, 3} and 0 in codes.values(), finished
    committed_and_whole(str(out), None)
    for name, code in codes.items():
        if code == 3:  # the loser says who won and what to do, then a rerun completes it
            assert "another run (" in finished[name][2] and "Rerun" in finished[name][2]
            rerun = subprocess.run(cli(data if name == "a" else only, out), cwd=REPO, capture_output=True,
                                   text=True, timeout=600)
            assert rerun.returncode == 0, rerun.stderr[-3000:]
    record, tiles = committed_and_whole(str(out), None)
    # the dataset is what the last committed run's inputs make: every scene of it, once
    expected = {"S00001"} if record.config["images"] == str(only / "images") else {f"S{i:05d}" for i in range(24)}
    assert tiles == expected
