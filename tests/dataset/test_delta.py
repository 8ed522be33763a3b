"""samrs_ray/dataset/delta.py: each committed version as one Delta commit per table, read by
engines that know nothing of samrs-ray (deltalake's pyarrow reader, Polars), at the version that
the record pins; catching up after a crash between the commit and publishing; two publishers of
one version; Delta's own commit on a real S3 server (SeaweedFS) with two writers."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, create_table_with_add_actions

from samrs_ray.dataset import delta, incremental, layout, manifest, storage, versions
from samrs_ray.dataset.versions import RunRecord
from tests.datasets import write_shard
from tests.seaweed import S3Server


class Killed(BaseException):
    """The run's process dies here."""


def killed() -> None:
    raise Killed


def commit(fs, out: str, shards: list[str], committed: Optional[RunRecord], publish: bool = True,
           storage_options: Optional[dict] = None) -> RunRecord:
    """Commit the next version with these shards (and an errors shard), as commit.finish does."""
    version = (committed.version if committed else 0) + 1
    run_id = f"run-{version}"
    errors = pa.Table.from_pylist([{"source_uri": f"/l/bad-{version}.txt", "line": None, "stage": "read",
                                    "reason": "not a label file", "tile_id": None}], schema=manifest.ERRORS)
    manifest.write_table(fs, layout.shard_path(out, "errors", run_id), errors)
    record = RunRecord(run_id, "2026-12-07T00:00:00+00:00", "", {"keep_versions": 3}, {"id": "box-fill"}, {},
                       shards=shards, errors=[run_id], changes={}, version=version,
                       tables=delta.next_pins(committed))
    if not publish:  # killed between its commit and publishing
        with pytest.raises(Killed):
            versions.commit(fs, out, record, publish=killed)
        return record
    versions.commit(fs, out, record, publish=lambda: delta.publish(fs, out, record, storage_options))
    return record


def tile_ids(frame: pl.DataFrame) -> list[str]:
    return sorted(frame["tile_id"].to_list())


def read_at_pins(out: str, table: str) -> pl.DataFrame:
    """As a user with nothing of samrs-ray: the pins from _run.json, then Polars."""
    pins = json.loads(Path(out, "_run.json").read_text())["tables"]
    return pl.read_delta(f"{out}/manifest/{table}", version=pins[table])


def test_engines_read_each_committed_version_at_its_pins(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "ds"))
    v1 = commit(fs, out, [write_shard(fs, out, {"a": "1", "b": "1"}), write_shard(fs, out, {"c": "1"})], None)
    # version 2: tile a edited (new shard), b dropped, c unchanged; the old shards stay on storage
    v2 = commit(fs, out, [write_shard(fs, out, {"a": "2"}), v1.shards[1]], v1)
    assert (v1.tables, v2.tables) == ({"tiles": 0, "instances": 0, "errors": 0},
                                      {"tiles": 1, "instances": 1, "errors": 1})

    assert tile_ids(read_at_pins(out, "tiles")) == ["a", "c"]
    assert tile_ids(read_at_pins(out, "instances")) == ["a", "c"]
    assert read_at_pins(out, "errors")["source_uri"].to_list() == ["/l/bad-2.txt"]
    # the folder holds three tiles shards, Delta's version 1 two, and its version 0 the first two
    assert len(list(Path(out, "manifest", "tiles").glob("*.parquet"))) == 3
    tiles_v1 = DeltaTable(f"{out}/manifest/tiles", version=v1.tables["tiles"]).to_pyarrow_table()
    assert sorted(zip(tiles_v1["tile_id"].to_pylist(), tiles_v1["fingerprint"].to_pylist())) == \
        [("a", "1"), ("b", "1"), ("c", "1")]
    latest = DeltaTable(f"{out}/manifest/tiles").to_pyarrow_table()
    assert sorted(zip(latest["tile_id"].to_pylist(), latest["fingerprint"].to_pylist())) == [("a", "2"), ("c", "1")]
    # the same rows as samrs-ray's own reader, with the same values in the list columns
    ours = manifest.read_dataset(out, "instances").sort_by("tile_id")
    theirs = DeltaTable(f"{out}/manifest/instances").to_pyarrow_table().sort_by("tile_id")
    assert theirs["prompt_box"].to_pylist() == ours["prompt_box"].to_pylist()
    assert DeltaTable(f"{out}/manifest/instances").count() == 2  # from the commit's row counts, no file read
    # each commit names the dataset version it publishes
    assert [h.get("samrs_ray.version") for h in DeltaTable(f"{out}/manifest/tiles").history()] == [2, 1]


def test_a_version_committed_but_not_published_is_published_by_the_next_run(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "ds"))
    v1 = commit(fs, out, [write_shard(fs, out, {"a": "1"})], None)
    v2 = commit(fs, out, [write_shard(fs, out, {"b": "1"})], v1, publish=False)  # killed after its commit
    assert json.loads(Path(out, "_run.json").read_text())["version"] == 1  # _run.json still names v1, published
    assert tile_ids(read_at_pins(out, "tiles")) == ["a"]

    v3 = commit(fs, out, [v2.shards[0], write_shard(fs, out, {"c": "1"})], v2)
    table = DeltaTable(f"{out}/manifest/tiles")
    assert (table.version(), table.transaction_version(delta.APP_ID)) == (v3.tables["tiles"], 3)
    assert tile_ids(pl.read_delta(f"{out}/manifest/tiles", version=v2.tables["tiles"])) == ["b"]
    assert tile_ids(read_at_pins(out, "tiles")) == ["b", "c"]


def test_two_publishers_of_one_version_make_one_commit(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "ds"))
    v1 = commit(fs, out, [write_shard(fs, out, {"a": "1"})], None)
    v2 = commit(fs, out, [write_shard(fs, out, {"b": "1"})], v1, publish=False)
    failures: list[BaseException] = []

    def publish() -> None:
        try:
            delta.publish(fs, out, v2)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=publish) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not failures
    for table in delta.TABLES:
        history = DeltaTable(f"{out}/manifest/{table}").history()
        assert [h.get("samrs_ray.version") for h in history] == [2, 1], table


def test_clean_up_keeps_the_delta_log(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "ds"))
    v1 = commit(fs, out, [write_shard(fs, out, {"a": "1"})], None)
    v2 = commit(fs, out, [write_shard(fs, out, {"a": "2"})], v1)
    kept = versions.retained(versions.history(fs, out), 1)
    assert incremental.collect_garbage(fs, out, kept, incremental.read_index(fs, out), None) >= 2
    assert tile_ids(read_at_pins(out, "tiles")) == ["a"]
    assert DeltaTable(f"{out}/manifest/tiles").version() == v2.tables["tiles"]


def test_a_shard_file_is_a_plain_parquet_list_and_reads_back_as_declared(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "ds"))
    name = write_shard(fs, out, {"a": "1"})
    assert pq.read_schema(layout.shard_path(out, "instances", name)).field("prompt_box").type == \
        pa.list_(pa.float32())
    assert manifest.read_table(fs, layout.shard_path(out, "instances", name)).schema.field("prompt_box").type == \
        manifest.INSTANCES.field("prompt_box").type


def test_object_store_options_follow_fsspec_options(monkeypatch) -> None:
    options = delta.object_store_options({"key": "k", "secret": "s", "endpoint_url": "http://127.0.0.1:9000",
                                          "client_kwargs": {"region_name": "eu-west-1"}})
    assert options == {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                       "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1",
                       "AWS_ALLOW_HTTP": "true", "conditional_put": "etag"}
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert delta.object_store_options(None) == {"conditional_put": "etag"}  # the AWS_* environment then
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333")  # a plain-HTTP endpoint from the environment
    assert delta.object_store_options(None) == {"AWS_ALLOW_HTTP": "true", "conditional_put": "etag"}


@pytest.mark.slow
def test_on_s3_publishing_reads_back_and_two_delta_writers_get_one_winner(s3: S3Server) -> None:
    fs, out = storage.open_fs(s3.uri(f"delta-{uuid.uuid4().hex[:8]}"), s3.storage_options)
    v1 = commit(fs, out, [write_shard(fs, out, {"a": "1", "b": "1"})], None, storage_options=s3.storage_options)
    v2 = commit(fs, out, [write_shard(fs, out, {"a": "2"})], v1, storage_options=s3.storage_options)
    options = delta.object_store_options(s3.storage_options)
    uri = f"s3://{out}/manifest/tiles"
    assert tile_ids(pl.read_delta(uri, version=v2.tables["tiles"], storage_options=options)) == ["a"]
    assert tile_ids(pl.read_delta(uri, version=v1.tables["tiles"], storage_options=options)) == ["a", "b"]

    # Delta's commit on SeaweedFS: two writers from the same table version, one lands, one conflicts
    target = f"s3://{out}/race"
    schema = Schema.from_arrow(pa.schema([("tile_id", pa.string())]))
    create_table_with_add_actions(target, schema, [], storage_options=options)
    shard = layout.shard_path(out, "tiles", v2.shards[0])
    fs.copy(shard, f"{out}/race/one.parquet")
    fs.copy(shard, f"{out}/race/two.parquet")
    tables = [DeltaTable(target, storage_options=options) for _ in range(2)]
    outcomes: list[str] = []

    def append(table: DeltaTable, name: str) -> None:
        size = fs.info(f"{out}/race/{name}")["size"]
        try:
            table.create_write_transaction([AddAction(name, size, {}, int(time.time() * 1000), True, "")],
                                           mode="append", schema=schema,
                                           commit_properties=CommitProperties(max_commit_retries=0))
            outcomes.append("landed")
        except CommitFailedError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=append, args=(t, n)) for t, n in zip(tables, ("one.parquet", "two.parquet"))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes) == ["conflict", "landed"]
    assert len(DeltaTable(target, storage_options=options).file_uris()) == 1


def test_an_unchanged_version_shares_its_parents_commits_and_catches_them_up(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "ds"))
    v1 = commit(fs, out, [write_shard(fs, out, {"a": "1"})], None)
    v2 = commit(fs, out, [write_shard(fs, out, {"b": "1"})], v1, publish=False)  # killed before publishing
    # an unchanged night after it: the same files, so the same pins, and no commit of its own
    v3 = dataclasses.replace(v2, run_id="run-3", version=3, tables=dict(v2.tables))
    versions.commit(fs, out, v3, publish=lambda: delta.publish(fs, out, v3))
    table = DeltaTable(f"{out}/manifest/tiles")
    assert table.version() == v3.tables["tiles"] == v2.tables["tiles"] == 1  # v2's commit, published by v3's run
    assert [h.get("samrs_ray.version") for h in table.history()] == [2, 1]
    assert tile_ids(read_at_pins(out, "tiles")) == ["b"]
    delta.publish(fs, out, v3)  # again: nothing to do
    assert DeltaTable(f"{out}/manifest/tiles").version() == 1
