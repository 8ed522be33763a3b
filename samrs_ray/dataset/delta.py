"""The dataset's tables as Delta Lake tables, so that any engine reads a committed version.

    manifest/<table>/_delta_log/    Delta Lake's log (tiles, instances, errors), beside the shards

The shards stay where the workers wrote them. Publishing a dataset version makes one Delta
commit per table that adds the shards the version gained and removes those it dropped, by
reference: no data file is read or rewritten. A version is published once, whoever publishes it
(the run that committed it, or the next run catching up after a crash between the two): its
commit lands at its pin or not at all. Each commit carries Delta's transaction marker `APP_ID`
= the dataset version, and the run id in its commit info. A version with the files of the one
before it (an unchanged night) makes no commit: its pins are its parent's.

One dataset version is one set of table versions that readers see whole: the version record
(`_versions/N.json`, `_run.json`) pins each table's Delta version in `tables`, chosen before the
commit as the previous pin + 1. Publishing lands each table exactly there, oldest version first,
and `_run.json` points at a version only once its tables are published. So a reader that reads
the pins from `_run.json` gets version N's tiles with version N's instances, with nothing of
samrs-ray installed:

    pins = json.load(open(f"{out}/_run.json"))["tables"]
    tiles = polars.read_delta(f"{out}/manifest/tiles", version=pins["tiles"])

The `_versions/` record stays the commit, as before: its conditional create picks one winner
among concurrent runs, and only the winner publishes. Delta's own commit is a conditional create
too (object_store's `If-None-Match: *` on S3, a hard link on local disks), so two publishers of
the same version cannot both land. These tables are written by samrs-ray alone: a commit of
another writer (an OPTIMIZE, say) would shift the pins.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Optional

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from samrs_ray.dataset import layout, manifest, storage
from samrs_ray.dataset.versions import RunRecord
from samrs_ray.job.faults import crash_point

log = logging.getLogger(__name__)

APP_ID = "samrs-ray"  # Delta's transaction marker (txn.appId); its version is the dataset version
TABLES: tuple[layout.Table, ...] = ("instances", "errors", "tiles")  # publishing order: tiles last
# A checkpoint every 10 commits: a reader replays at most 10 JSON commits after the last checkpoint.
CONFIGURATION = {"delta.checkpointInterval": "10"}


def delta_schema(schema: pa.Schema) -> pa.Schema:
    """A manifest schema as Delta declares it: Delta has no fixed-size list, so those are lists
    (the shard files store them as plain Parquet lists: manifest.shard_bytes)."""
    def plain(t: pa.DataType) -> pa.DataType:
        return pa.list_(t.value_type) if pa.types.is_fixed_size_list(t) else t
    return pa.schema([pa.field(f.name, plain(f.type), f.nullable) for f in schema])


def object_store_options(storage_options: Optional[dict[str, Any]]) -> dict[str, str]:
    """fsspec/s3fs storage options as delta-rs (arrow-rs object_store) takes them. Keys that are
    not given come from the standard AWS_* environment variables there too. The commit is a
    conditional PUT (`conditional_put: etag`), which AWS S3 and SeaweedFS honour."""
    options = dict(storage_options or {})
    kwargs = options.get("client_kwargs") or {}
    config = options.get("config_kwargs") or {}
    found = {
        "AWS_ACCESS_KEY_ID": options.get("key"), "AWS_SECRET_ACCESS_KEY": options.get("secret"),
        "AWS_SESSION_TOKEN": options.get("token"),
        "AWS_ENDPOINT_URL": options.get("endpoint_url") or kwargs.get("endpoint_url"),
        "AWS_REGION": kwargs.get("region_name") or config.get("region_name"),
    }
    result = {key: str(value) for key, value in found.items() if value}
    endpoint = result.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if (endpoint or "").startswith("http://"):  # object_store refuses plain HTTP unless told
        result["AWS_ALLOW_HTTP"] = "true"
    return {**result, "conditional_put": "etag"}


def table_uri(fs: fsspec.AbstractFileSystem, out: str, table: layout.Table) -> str:
    folder = layout.table_folder(out, table)
    return folder if storage.is_local(fs) else fs.unstrip_protocol(folder)


def next_pins(committed: Optional[RunRecord]) -> dict[str, int]:
    """The Delta versions the version after `committed` will have: its pins + 1, or 0 (a new
    table) after a version that has none (before the first commit, or one written before the Delta tables)."""
    if committed is None or not committed.tables:
        return {table: 0 for table in TABLES}
    return {table: committed.tables[table] + 1 for table in TABLES}


def publish(fs: fsspec.AbstractFileSystem, out: str, record: RunRecord,
            storage_options: Optional[dict[str, Any]] = None, rows: Optional[dict[str, int]] = None) -> None:
    """Make `record`'s tables Delta commits at its pins, publishing any version before it that
    a crashed run committed but did not publish. `rows`: {shard file path: row count} where
    known (else each new file's Parquet footer is read). Raises OSError when the store fails;
    the version is committed all the same, and the next run publishes it."""
    options = object_store_options(None if storage.is_local(fs) else storage_options)
    for table in TABLES:
        current = _open(table_uri(fs, out, table), options)
        at = current.version() if current is not None else -1
        head, pending = record, []
        while head.tables[table] > at:  # the commits the table lacks, newest first
            parent = None if head.tables[table] == 0 else RunRecord.from_json(
                fs.cat_file(layout.version_path(out, head.version - 1)))
            if parent is None or parent.tables.get(table) != head.tables[table]:
                pending.append(head)  # else head is its parent's commit again (an unchanged night)
            if parent is None:
                break
            head = parent
        for each in reversed(pending):
            _publish_one(fs, out, table, each, options, rows or {}, current)
            current = None  # changed: the next one loads it again
        crash_point("in-publish")


def published(fs: fsspec.AbstractFileSystem, out: str, table: layout.Table, options: dict[str, str]) -> int:
    """The table's Delta version: every dataset version pinned at or below it is published (-1: none)."""
    current = _open(table_uri(fs, out, table), options)
    return current.version() if current is not None else -1


def _open(uri: str, options: dict[str, str]) -> Optional[DeltaTable]:
    try:
        return DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        return None


def _publish_one(fs: fsspec.AbstractFileSystem, out: str, table: layout.Table, record: RunRecord,
                 options: dict[str, str], rows: dict[str, int], current: Optional[DeltaTable]) -> None:
    """One dataset version's commit to one table; `current`: the table as loaded, if it is."""
    uri, pin = table_uri(fs, out, table), record.tables[table]
    names = {layout.shard_file(n) for n in (record.errors if table == "errors" else record.shards)}
    commit = CommitProperties(app_transactions=[Transaction(APP_ID, record.version)], max_commit_retries=0,
                              custom_metadata={"samrs_ray.version": record.version, "samrs_ray.run_id": record.run_id})
    schema = delta_schema(manifest.TABLES[table])
    try:
        if pin == 0:
            create_table_with_add_actions(uri, Schema.from_arrow(schema), _adds(fs, out, table, sorted(names), rows),
                                          mode="error", configuration=CONFIGURATION, storage_options=options,
                                          commit_properties=commit)
        else:
            delta = current if current is not None else DeltaTable(uri, storage_options=options)
            if delta.version() >= pin:
                return  # another process published it since we looked
            if delta.version() != pin - 1:
                raise RuntimeError(f"{uri}: Delta version {delta.version()}, but dataset version {record.version} is "
                                   f"pinned at {pin}: a writer other than samrs-ray committed to this table")
            present = set(delta.get_add_actions(flatten=True).column("path").to_pylist())
            now = int(time.time() * 1000)
            actions = [RemoveAction(path, True, now) for path in sorted(present - names)]
            delta.create_write_transaction([*actions, *_adds(fs, out, table, sorted(names - present), rows)],
                                           mode="append", schema=schema, commit_properties=commit)
    except DeltaError:  # CommitFailedError, or the table created: fine if another process published it
        if published(fs, out, table, options) < pin:
            raise
    log.debug("%s: dataset version %d published as Delta version %d", uri, record.version, pin)


def _adds(fs: fsspec.AbstractFileSystem, out: str, table: layout.Table, files: list[str],
          rows: dict[str, int]) -> list[AddAction]:
    """Delta add actions for shard files of a table folder, with their sizes and row counts
    (`numRecords`, which engines use to count without reading)."""
    folder = layout.table_folder(out, table)
    # one listing rather than a HEAD a file when there are many (a dataset's first publication)
    sizes = {n: info["size"] for n, info in storage.list_details(fs, folder).items()} if len(files) > 100 else {}
    actions = []
    for name in files:
        path = storage.join(folder, name)
        size = sizes[name] if name in sizes else fs.info(path)["size"]
        count = rows.get(path)
        if count is None:
            with fs.open(path, "rb") as f:
                count = pq.ParquetFile(f).metadata.num_rows
        actions.append(AddAction(name, int(size), {}, int(time.time() * 1000), True,
                                 json.dumps({"numRecords": count})))
    return actions
