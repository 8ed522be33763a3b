"""samrs_ray/dataset/versions.py: the commit log's exclusive create (local disk and a real S3 server),
a commit that loses to another, finding readable versions, and the leases of runs at work."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from samrs_ray.dataset import layout, storage, versions
from samrs_ray.dataset.versions import RunRecord
from samrs_ray.errors import ConcurrentRunError
from tests.seaweed import S3Server


def record(run_id: str, version: int, keep: int = 2) -> RunRecord:
    return RunRecord(run_id, f"2026-12-02T00:00:0{version}+00:00", "", {"keep_versions": keep}, {"id": "box-fill"},
                     {}, shards=[f"shard-{run_id}"], errors=[], changes={}, version=version)


def test_create_new_refuses_a_second_writer_on_a_local_disk(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path))
    path = storage.join(out, "_versions", "00000001.json")
    assert storage.create_new(fs, path, b"first")
    assert not storage.create_new(fs, path, b"second")
    assert Path(path).read_bytes() == b"first"
    assert [p.name for p in Path(path).parent.iterdir()] == ["00000001.json"]  # no temp file left


def test_create_new_refuses_a_second_writer_on_s3(s3: S3Server) -> None:
    # SeaweedFS honours If-None-Match: * on PUT, as AWS S3 does: the commit's guarantee on S3
    fs, root = storage.open_fs(s3.uri(f"create-{uuid.uuid4().hex[:8]}"), s3.storage_options)
    path = storage.join(root, "_versions", "00000001.json")
    assert storage.create_new(fs, path, b"first")
    assert not storage.create_new(fs, path, b"second")
    assert fs.cat_file(path) == b"first"


def test_a_commit_that_lost_names_the_winner_and_changes_nothing(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path))
    versions.commit(fs, out, record("run-a", 1))
    winner = record("run-b", 2)
    versions.commit(fs, out, winner)
    with pytest.raises(ConcurrentRunError, match="another run \\(run-b, started .*\\) committed version 2"):
        versions.commit(fs, out, record("run-c", 2))  # started from version 1, like run-b
    assert versions.latest(fs, out) == winner
    assert (tmp_path / "_run.json").read_bytes() == winner.to_json()


def test_a_commit_whose_answer_was_lost_is_the_runs_own_not_a_conflict(tmp_path: Path) -> None:
    # The conditional PUT of _versions/<N>.json landed but its answer was lost; the client's retry
    # then finds the object there (412 on S3). The record there is this run's: the commit succeeded.
    fs, out = storage.open_fs(str(tmp_path))
    versions.commit(fs, out, record("run-a", 1))
    mine = record("run-b", 2)
    assert storage.create_new(fs, layout.version_path(out, 2), mine.to_json())  # the PUT that landed
    versions.commit(fs, out, mine)  # the retry
    assert versions.latest(fs, out) == mine
    assert (tmp_path / "_run.json").read_bytes() == mine.to_json()  # not left stale


def test_versions_are_found_by_number_or_run_id_while_kept(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path))
    for i, run in enumerate(["r1", "r2", "r3"], 1):
        versions.commit(fs, out, record(run, i, keep=2))
    assert [r.run_id for r in versions.history(fs, out)] == ["r1", "r2", "r3"]
    assert versions.find(fs, out, None).run_id == "r3"
    assert versions.find(fs, out, "2").run_id == versions.find(fs, out, "r2").run_id == "r2"
    with pytest.raises(FileNotFoundError, match="version r1 is no longer readable"):
        versions.find(fs, out, "r1")
    with pytest.raises(FileNotFoundError, match="no version 'r9'"):
        versions.find(fs, out, "r9")


def test_a_v1_dataset_is_version_zero_and_the_log_follows_it(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path))
    v1 = record("old", 0)
    storage.write_atomic(fs, layout.run_record(out), v1.to_json())
    storage.write_atomic(fs, storage.join(layout.v1_history_folder(out), "old.json"), v1.to_json())
    assert versions.latest(fs, out) == v1
    versions.commit(fs, out, record("new", 1))
    assert [r.run_id for r in versions.history(fs, out)] == ["old", "new"]
    assert versions.latest(fs, out).run_id == "new"


def test_clean_up_spares_the_files_of_other_live_runs_only(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path))
    assert versions.spare_after(fs, out, "me") is None
    with versions.Lease(fs, out, "other") as other:
        lease = json.loads((tmp_path / "_active" / "other.json").read_text())
        assert lease["run_id"] == "other"
        assert versions.spare_after(fs, out, "me") == pytest.approx(other.started_at - versions.CLOCK_SLACK_S)
        assert versions.spare_after(fs, out, "other") is None  # a run's own files are not spared from itself
    assert not (tmp_path / "_active" / "other.json").exists()
    # a run killed without dropping its lease stops protecting anything once the lease expires
    stale = {"run_id": "dead", "started_at": time.time() - 7200, "refreshed_at": time.time() - 2 * versions.LEASE_EXPIRY_S}
    storage.write_atomic(fs, layout.active_path(out, "dead"), json.dumps(stale).encode())
    assert versions.spare_after(fs, out, "me") is None
    assert not (tmp_path / "_active" / "dead.json").exists()  # and is removed: a dead run leaves nothing


def test_a_record_with_fields_of_a_later_release_still_reads() -> None:
    newer = json.loads(record("r1", 3).to_json()) | {"lineage": {"from": "elsewhere"}}
    back = RunRecord.from_json(json.dumps(newer).encode())
    assert (back.run_id, back.version, back.stretch) == ("r1", 3, {})
    assert "stretch" not in json.loads(record("r2", 4).to_json())  # none stretched: what older readers know
