"""The nightly path as users hit it: an unchanged night over scenes that made no tile plans
nothing; the store failing on a scene keeps its committed tiles and says so (exit 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import pytest

from samrs_ray import cli
from samrs_ray.job.faults import CRASH_AT_ENV
from tests import REPO
from tests.datasets import dataset_rows, synthetic_scenes, write_scene
from tests.faultproxy import FaultProxy
from tests.seaweed import S3Server

pytestmark = pytest.mark.slow


def generate(data: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--model", "box",
               "--images", str(data / "images"), "--labels", str(data / "labelTxt"), "--out", str(out),
               "--tile-size", "none"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          start_new_session=True)


def test_an_unchanged_night_over_scenes_that_made_no_tile_plans_nothing(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    synthetic_scenes(data, 2)
    # three scenes that make no tile: bad image bytes, no object, objects of unknown classes only
    write_scene(data, "Xbad", (64, 64), [("plane", 5, 5, 30, 30)])
    (data / "images" / "Xbad.png").write_bytes(b"not a png at all")
    write_scene(data, "Xempty", (64, 64), [])
    write_scene(data, "Xunknown", (64, 64), [("flying-saucer", 5, 5, 30, 30)])
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT_ENV}
    first = generate(data, out, env)
    assert first.returncode == 0, first.stderr
    assert "2 processed" in first.stdout

    first_rows = dataset_rows(str(out), "tiles", version="1")
    # nothing changed: any planning task would be killed at its first scene
    again = generate(data, out, {**env, CRASH_AT_ENV: "plan"})
    assert again.returncode == 0, again.stderr
    assert "5 scenes, all with the file versions and settings of version 1: nothing to read or compute" in again.stdout
    assert "2 in dataset: 0 processed, 2 unchanged" in again.stdout
    # a label file without an image: the night is not the same as version 1's, so the scenes are
    # replayed from the scene cache, the three that made no tile included, and none planned
    (data / "labelTxt" / "Xorphan.txt").write_text("")
    third = generate(data, out, {**env, CRASH_AT_ENV: "plan"})
    assert third.returncode == 0, third.stderr
    assert "5 scenes with the same file versions as before (not read), 0 read to check" in third.stdout
    assert "2 in dataset: 0 processed, 2 unchanged" in third.stdout
    for version in ("2", "3"):  # version 1's rows, which version 2 committed again
        assert dataset_rows(str(out), "tiles", version=version) == first_rows
        # the bad file is still quarantined in the new version, with its reason
        errors = dataset_rows(str(out), "errors", version=version, drop=())
        assert any(e["source_uri"].endswith("Xbad.png") and e["stage"] == "read" for e in errors)


# One retry in botocore (and s3fs's own on SlowDown): the job's retries are what is tested here.
FEW_CLIENT_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}}}


def generate_s3(data: str, out: str, storage_options: dict) -> int:
    return cli.main(["generate", "--preset", "sota", "--model", "box", "--images", f"{data}/images",
                     "--labels", f"{data}/labelTxt", "--out", out, "--tile-size", "none",
                     "--storage-options", json.dumps({**storage_options, **FEW_CLIENT_RETRIES})])


def test_a_store_that_fails_on_a_scene_keeps_its_committed_tiles_and_says_so(
        s3: S3Server, tmp_path: Path, local_ray, capsys) -> None:
    prefix = f"nightly-{uuid.uuid4().hex[:8]}"
    synthetic_scenes(tmp_path / "data", 3)
    data, out = s3.upload_dir(tmp_path / "data", f"{prefix}/data"), s3.uri(f"{prefix}/out")
    assert generate_s3(data, out, s3.storage_options) == 0
    first = dataset_rows(out, "tiles", s3.storage_options)
    # S00001's labels are edited, so tonight its image must be read; the store answers 503 to every try
    label = tmp_path / "data" / "labelTxt" / "S00001.txt"
    label.write_text(label.read_text().splitlines()[0] + "\n")
    s3.filesystem().put_file(str(label), f"{s3.bucket}/{prefix}/data/labelTxt/S00001.txt")

    proxy = FaultProxy(s3)
    proxy.target("GET", f"*/{prefix}/data/images/S00001.png", "slow_down")
    capsys.readouterr()
    with proxy as faulty:
        assert generate_s3(data, out, faulty.storage_options) == 5
    said = capsys.readouterr()
    assert "partial: the store did not give 1 scenes" in said.err
    assert "S00001: kept from version 1 (1 tiles): cannot read from the store:" in said.out
    assert proxy.injected["slow_down"] >= 3  # the job's own three tries, each after the client's
    # the dataset did not shrink: S00001's committed tile is in version 2 as it was
    assert dataset_rows(out, "tiles", s3.storage_options) == first
    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.invalidate_cache()
    record = json.loads(fs.cat_file(f"{s3.bucket}/{prefix}/out/_run.json"))
    assert (record["version"], list(record["partial"]), record["counts"]["removed"]) == (2, ["S00001"], 0)
    errors = dataset_rows(out, "errors", s3.storage_options, drop=())
    assert [(e["stage"], e["source_uri"].endswith("S00001.png")) for e in errors] == [("store", True)]

    # a hiccup that passes (two failed GETs) is retried, and the night is whole: S00001 is recomputed
    proxy = FaultProxy(s3)
    proxy.target("GET", f"*/{prefix}/data/images/S00001.png", "slow_down", times=2)
    with proxy as faulty:
        assert generate_s3(data, out, faulty.storage_options) == 0
    assert "1 processed, 2 unchanged" in capsys.readouterr().out
    assert dataset_rows(out, "errors", s3.storage_options, drop=()) == []


def test_a_commit_whose_answer_was_lost_is_not_a_conflict_with_itself(
        s3: S3Server, tmp_path: Path, local_ray, capsys) -> None:
    prefix = f"lost-{uuid.uuid4().hex[:8]}"
    synthetic_scenes(tmp_path / "data", 2)
    data, out = s3.upload_dir(tmp_path / "data", f"{prefix}/data"), s3.uri(f"{prefix}/out")
    proxy = FaultProxy(s3)
    # the version record's conditional PUT is done upstream, and its answer lost: the client retries
    proxy.target("PUT", f"*/{prefix}/out/_versions/*", "reset_after", times=1)
    with proxy as faulty:
        assert generate_s3(data, out, faulty.storage_options) == 0
    assert proxy.injected["reset_after"] == 1
    assert [method for method, path in proxy.requests if "/_versions/" in path and method == "PUT"] == ["PUT", "PUT"]
    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.invalidate_cache()
    record = json.loads(fs.cat_file(f"{s3.bucket}/{prefix}/out/_run.json"))  # refreshed, not stale
    assert record == json.loads(fs.cat_file(f"{s3.bucket}/{prefix}/out/_versions/00000001.json"))


def test_a_store_that_cannot_list_the_inputs_stops_the_run_as_a_store_error(
        s3: S3Server, tmp_path: Path, capsys) -> None:
    prefix = f"nolist-{uuid.uuid4().hex[:8]}"
    synthetic_scenes(tmp_path / "data", 1)
    data, out = s3.upload_dir(tmp_path / "data", f"{prefix}/data"), s3.uri(f"{prefix}/out")
    proxy = FaultProxy(s3)
    proxy.target("GET", s3.bucket, "internal_error")  # every listing of the bucket: 500
    with proxy as faulty:
        code = generate_s3(data, out, faulty.storage_options)
    # 4 (rerun once the store is back), not 2 (the configuration is wrong)
    assert code == 4, capsys.readouterr().err
    assert "the store did not answer after 3 tries" in capsys.readouterr().err


def test_an_input_store_that_stops_serving_ends_the_run_in_bounded_time(
        s3: S3Server, tmp_path: Path, local_ray, capsys) -> None:
    """The inputs' prefix answers 503 SlowDown to every read from tonight on, the output is served:
    with the client's own retry policy (no test override), the run's store error budget stops it
    long before 40 new scenes x their retries; it commits a partial night (exit 5) that keeps every
    committed tile, and the next clean night converges."""
    prefix = f"outage-{uuid.uuid4().hex[:8]}"
    synthetic_scenes(tmp_path / "data", 4)
    data, out = s3.upload_dir(tmp_path / "data", f"{prefix}/data"), s3.uri(f"{prefix}/out")
    night = lambda options: cli.main(["generate", "--preset", "sota", "--model", "box",  # noqa: E731
                                      "--images", f"{data}/images", "--labels", f"{data}/labelTxt", "--out", out,
                                      "--tile-size", "none", "--storage-options", json.dumps(options)])
    assert night(s3.storage_options) == 0
    committed = dataset_rows(out, "tiles", s3.storage_options)
    synthetic_scenes(tmp_path / "data", 44)  # 40 new scenes tonight, and the 4 uploaded again
    s3.upload_dir(tmp_path / "data", f"{prefix}/data")

    proxy = FaultProxy(s3)
    proxy.target("GET", f"*/{prefix}/data/*", "slow_down")  # every read of an input; listings pass
    capsys.readouterr()
    started = time.monotonic()
    with proxy as faulty:
        assert night(faulty.storage_options) == 5
    took = time.monotonic() - started
    said = capsys.readouterr()
    assert "the store stopped serving: the run's store error budget is spent" in said.out
    assert took < 120, f"the outage took {took:.0f} s to end the run"
    # each refused try is 3 requests (botocore's standard mode); the budget spares most scenes theirs
    assert proxy.injected["slow_down"] < 40 * 9 / 2, proxy.injected
    assert dataset_rows(out, "tiles", s3.storage_options) == committed  # no committed tile lost
    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.invalidate_cache()
    record = json.loads(fs.cat_file(f"{s3.bucket}/{prefix}/out/_run.json"))
    # uploaded again, the 4 committed scenes have new store versions and had to be read too
    partial = record["partial"]
    assert sorted(s for s, why in partial.items() if why.startswith("kept from version 1")) == \
        ["S00000", "S00001", "S00002", "S00003"]
    assert len(partial) == 44 and sum("not asked" in why for why in partial.values()) > 20

    assert night(s3.storage_options) == 0  # the store is back: the 40 scenes are read and computed
    assert len(dataset_rows(out, "tiles", s3.storage_options)) == 44


def test_tiles_that_failed_are_computed_by_the_next_night_given_the_same_inputs(realsamples: Path, tmp_path: Path,
                                                                              local_ray) -> None:
    """A version with failed tiles is not what the same inputs make: the next night, given them
    unchanged, takes the long path and computes the tiles; only the night after is 'unchanged'."""
    import samrs_ray

    dota, out = realsamples / "dota", tmp_path / "out"
    out.mkdir()
    (out / "labels").write_text("a file where the label PNGs' folder goes: every tile's write fails")
    lines: list[str] = []

    def night() -> dict[str, int]:
        lines.clear()
        return samrs_ray.generate(preset="sota", images=dota / "images", labels=dota / "labelTxt", out=out,
                                  model="box", say=lines.append).counts

    first = night()
    assert (first["failed"], first["tiles"]) == (3, 0)
    (out / "labels").unlink()
    second = night()
    assert (second["processed"], second["tiles"], second["failed"]) == (3, 3, 0)
    assert not any("nothing to read or compute" in line for line in lines)
    third = night()
    assert (third["processed"], third["tiles"]) == (0, 3)
    assert any("nothing to read or compute" in line for line in lines)
