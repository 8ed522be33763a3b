"""After the graph: which shards make the new version, the errors shard, the counts, the commit
and the clean-up. Ray-free: it works on the rows the graph returned.

    rows -> Outcome (tiles, scenes, errors) -> shard selection -> errors shard -> RunRecord
      -> versions.commit (fails if another run committed first; then the Delta tables: delta.publish)
      -> incremental.collect_garbage
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

import fsspec
import pyarrow as pa
from deltalake.exceptions import DeltaError

from samrs_ray.config import JobConfig
from samrs_ray.dataset import delta, incremental, layout, manifest, storage, versions
from samrs_ray.dataset.versions import RunRecord
from samrs_ray.encoding.tile import tile_uris
from samrs_ray.inputs.annotation import InputIssue
from samrs_ray.job.faults import crash_point
from samrs_ray.job.rows import NODE_COLUMNS, Kind, Status, error_row
from samrs_ray.masks.engines import ENGINES

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """The rows of one run, by kind: every input ends up in exactly one of these lists."""

    tiles: list[dict[str, Any]]
    scenes: list[dict[str, Any]]
    errors: list[dict[str, Any]]  # unusable inputs, and the tiles that failed (as error rows)
    # committed tiles of the scenes the store did not give, which stay as they are: {tile id: (fingerprint, split)}
    kept: dict[str, tuple[str, Optional[str]]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[dict[str, Any]], pair_errors: list[dict[str, Any]]) -> "Outcome":
        tiles = [r for r in rows if r["kind"] == Kind.TILE]
        failed = [error_row(InputIssue(r["source_uri"], r["reason"], stage=r["stage"]), tile=r["tile_id"])
                  for r in tiles if r["status"] == Status.FAILED]
        return cls(tiles, [r for r in rows if r["kind"] == Kind.SCENE],
                   pair_errors + [r for r in rows if r["kind"] == Kind.ERROR] + failed)

    def with_status(self, *statuses: Status) -> list[dict[str, Any]]:
        return [r for r in self.tiles if r["status"] in statuses]

    def wanted(self) -> dict[str, str]:
        """{tile id: fingerprint} of the tiles in the new version."""
        return {**{r["tile_id"]: r["fingerprint"] for r in self.with_status(Status.PROCESSED, Status.SKIPPED)},
                **{tile: fingerprint for tile, (fingerprint, _) in self.kept.items()}}

    def splits(self) -> dict[str, str]:
        """{tile id: split} of the tiles in the new version."""
        return {**{r["tile_id"]: r["split"] for r in self.with_status(Status.PROCESSED, Status.SKIPPED)},
                **{tile: split for tile, (_, split) in self.kept.items()}}

    def keep_committed(self, index: incremental.ShardIndex, committed: Optional[RunRecord],
                       unread: dict[str, tuple[str, str]]) -> dict[str, str]:
        """Keep the committed tiles of the scenes the store did not give, {image uri: (scene, why)}:
        a hiccup of the store must not shrink the dataset. Returns {scene: what became of it}."""
        kept_by_source: dict[str, int] = {}
        for name in committed.shards if committed else ():
            for tile, fingerprint in index.tiles.get(name, {}).items():
                source = index.sources[name][tile]
                if source in unread:
                    self.kept[tile] = (fingerprint, index.splits[name][tile])
                    kept_by_source[source] = kept_by_source.get(source, 0) + 1
        version = committed.version if committed else 0
        return {scene: (f"kept from version {version} ({kept_by_source[source]} tiles): {why}"
                        if source in kept_by_source else f"not in the dataset yet: {why}")
                for source, (scene, why) in sorted(unread.items(), key=lambda item: item[1])}


def finish(fs: fsspec.AbstractFileSystem, out: str, config: JobConfig, run_id: str, started: datetime,
           checksum: str, committed: Optional[RunRecord], index: incremental.ShardIndex,
           outcome: Outcome, n_pairs: int, cluster: dict[str, Any], unread: dict[str, tuple[str, str]],
           stretch: dict[str, dict[str, Any]], given: str, items: dict[str, dict[str, str]]) -> RunRecord:
    """Write the version the run's rows make, commit it as the version after `committed`, clean
    up; returns the committed record. `unread`: the scenes the store did not give, {image uri:
    (scene, why)}, whose committed tiles stay; `stretch`: RunRecord.stretch; `given`:
    RunRecord.inputs; `items`: RunRecord.items. Raises ConcurrentRunError when another run committed
    since this one started."""
    partial = outcome.keep_committed(index, committed, unread)
    new_shards = index_new_shards(fs, out, index, outcome, config.write_color)
    wanted = outcome.wanted()
    shards = select_shards(fs, out, wanted, outcome.splits(), index, committed, new_shards, config.shard_tiles)
    error_shards = write_errors(fs, out, run_id, outcome.errors)
    removed = sorted(committed_tiles(index, committed) - set(wanted))
    processed = [r["tile_id"] for r in outcome.with_status(Status.PROCESSED)]
    record = RunRecord(
        run_id=run_id, started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=config.public(),
        model={"id": config.model_id, "type": config.model_type if ENGINES[config.model].model_types else "",
               "checksum": checksum},
        counts=counts(outcome, n_pairs, wanted, index, len(removed)), shards=shards, errors=error_shards,
        changes={"processed": processed[:100], "removed": removed[:100]},
        cluster=cluster, version=(committed.version if committed else 0) + 1,
        parent=committed.run_id if committed else "", partial=partial, stretch=stretch, items=items,
        tables=delta.next_pins(committed), inputs=given,
    )
    check_present(fs, out, shards, index)
    crash_point("before-commit")
    versions.commit(fs, out, record, publish=lambda: publish_tables(fs, out, record, config, index))
    clean_up(fs, out, config, record, index)
    return record


def clean_up(fs: fsspec.AbstractFileSystem, out: str, config: JobConfig, record: RunRecord,
             index: incremental.ShardIndex) -> None:
    """After `record`'s commit: delete what no retained version uses (incremental.collect_garbage)."""
    try:
        kept = versions.retained(versions.history(fs, out), config.keep_versions)
        incremental.collect_garbage(fs, out, kept, index, versions.spare_after(fs, out, record.run_id))
    except OSError as error:  # committed already; what is left over, the next run's clean-up removes
        log.warning("%s: version %d committed, but clean-up stopped: %s", out, record.version, error)


def unchanged(fs: fsspec.AbstractFileSystem, out: str, config: JobConfig, run_id: str, started: datetime,
              committed: RunRecord) -> RunRecord:
    """The version after `committed` when the run was given what it was given: the same shards
    and errors, committed again, with nothing read of the dataset. Clean-up only when the version
    that falls out of retention now had other files: after `keep_versions` such nights in a row,
    every retained version has the same files, and a night costs a constant number of requests."""
    record = dataclasses.replace(
        committed, run_id=run_id, started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), config=config.public(),
        counts={**committed.counts, "processed": 0, "skipped": committed.counts["tiles"], "kept": 0, "failed": 0,
                "removed": 0},
        changes={"processed": [], "removed": []}, cluster={"gpu_wait_s": None, "stages": {}},
        version=committed.version + 1, parent=committed.run_id, tables=committed.tables or delta.next_pins(committed))
    crash_point("before-commit")
    # the same files, so the same Delta versions: nothing to publish, unless the committed version's
    # own commits are missing (its run was killed before publishing; _run.json names it only after)
    named = versions.run_record_version(fs, out)
    publish = None if named == committed.version and committed.tables else (
        lambda: publish_tables(fs, out, record, config, None))
    versions.commit(fs, out, record, publish=publish)
    fallen = record.version - config.keep_versions
    try:
        gone = RunRecord.from_json(fs.cat_file(layout.version_path(out, fallen))) if fallen >= 1 else None
    except OSError:  # not there (a dataset upgraded from layout v1), or the store failed: the next run cleans up
        gone = None
    if gone is not None and (sorted(gone.shards), sorted(gone.errors)) != (sorted(record.shards), sorted(record.errors)):
        clean_up(fs, out, config, record, incremental.read_index(fs, out))
    return record


def publish_tables(fs: fsspec.AbstractFileSystem, out: str, record: RunRecord, config: JobConfig,
                   index: Optional[incremental.ShardIndex]) -> None:
    """The committed version's Delta commits (delta.publish), with the row counts the index knows
    (None: none known). A store that fails here leaves the version committed: the next run
    publishes it."""
    rows: dict[str, int] = {}
    for name in record.shards if index is not None else ():
        rows[layout.shard_path(out, "tiles", name)] = len(index.tiles.get(name, {}))
        rows[layout.shard_path(out, "instances", name)] = sum(index.instances.get(name, {}).values())
    if record.errors and index is not None:
        rows[layout.shard_path(out, "errors", record.errors[0])] = record.counts["errors"]
    try:
        delta.publish(fs, out, record, config.storage_options, rows)
    except (OSError, DeltaError, RuntimeError) as error:
        log.warning("%s: version %d committed, but its Delta tables were not published (%s); the next run "
                    "publishes them", out, record.version, error)


def index_new_shards(fs: fsspec.AbstractFileSystem, out: str, index: incremental.ShardIndex, outcome: Outcome,
                     with_color: bool) -> list[str]:
    """Add the shards this run wrote to the index, from the rows they were written from (no
    read-back); returns their names."""
    written: dict[str, list[dict[str, Any]]] = {}
    for r in outcome.with_status(Status.PROCESSED):
        entry = {**r, **tile_uris(fs, out, r, with_color)}
        written.setdefault(r["shard"], []).append({c: entry[c] for c in incremental.INDEX_COLUMNS})
    for name, rows in written.items():
        index.add(name, pa.Table.from_pylist(rows))
    return sorted(written)


def select_shards(fs: fsspec.AbstractFileSystem, out: str, wanted: dict[str, str], splits: dict[str, str],
                  index: incremental.ShardIndex, committed: Optional[RunRecord], new_shards: list[str],
                  shard_tiles: int) -> list[str]:
    """The shards of the new version: whole shards kept, plus new ones holding the rows copied
    out of shards that also hold tiles the version drops."""
    order = incremental.shard_order(index, committed, new_shards)
    selection, missing = incremental.select_shards(wanted, index, order, splits)
    if missing:  # a skipped tile whose shard vanished between planning and now: not in this version
        raise RuntimeError(f"{len(missing)} tiles are in no shard (storage changed during the run?): "
                           f"{sorted(missing)[:5]}; rerun to recompute them")
    return sorted(selection.keep + incremental.copy_rows(fs, out, selection.copy, shard_tiles, index, splits))


def check_present(fs: fsspec.AbstractFileSystem, out: str, shards: list[str], index: incremental.ShardIndex) -> None:
    """Never commit a version with a file missing: one listing per folder, against every shard
    pair and PNG the version uses: label, colour and tile PNGs (another run's clean-up could have
    removed a leftover this run chose to reuse, if the two disagree about the time)."""
    missing = [layout.shard_path(out, table, n) for table in ("tiles", "instances")
               for n in sorted(set(shards) - {layout.shard_of_file(f) for f in
                                               storage.list_names(fs, layout.table_folder(out, table))})]
    for folder in layout.PNG_FOLDERS:
        found = set(storage.list_names(fs, layout.png_folder(out, folder)))
        missing += sorted(storage.join(layout.png_folder(out, folder), n)
                          for n in set().union(*(index.pngs[shard][folder] for shard in shards)) - found)
    if missing:
        raise RuntimeError(f"{len(missing)} files of the new version vanished during the run ({missing[:3]}); "
                           "nothing was committed")


def write_errors(fs: fsspec.AbstractFileSystem, out: str, run_id: str, errors: list[dict[str, Any]]) -> list[str]:
    """The run's errors shard (named by the run); returns its name, or [] when there were none."""
    if not errors:
        return []
    table = pa.Table.from_pylist(
        [{"source_uri": e["source_uri"], "line": None if e["line"] < 0 else e["line"], "stage": e["stage"],
          "reason": e["reason"], "tile_id": e["tile_id"] or None} for e in errors], schema=manifest.ERRORS)
    manifest.write_table(fs, layout.shard_path(out, "errors", run_id), table)
    return [run_id]


def committed_tiles(index: incremental.ShardIndex, committed: Optional[RunRecord]) -> set[str]:
    """The tile ids of the committed version (empty before the first commit)."""
    tiles: set[str] = set()
    for name in committed.shards if committed else ():
        tiles.update(index.tiles.get(name, {}))
    return tiles


def counts(outcome: Outcome, n_pairs: int, wanted: dict[str, str], index: incremental.ShardIndex,
           removed: int) -> dict[str, int]:
    """The version's counts, as _run.json and the summary give them."""
    counts_of = index.instance_counts()
    scenes = outcome.scenes
    return {
        "scenes": n_pairs,
        "scenes_ok": len(scenes),
        "tiles": len(wanted),
        "processed": len(outcome.with_status(Status.PROCESSED)),
        "skipped": len(outcome.with_status(Status.SKIPPED)),
        "kept": len(outcome.kept),
        "failed": len(outcome.with_status(Status.FAILED)),
        "removed": removed,
        "empty_windows": sum(r["n_empty"] for r in scenes),
        "instances": sum(counts_of[(t, fp)] for t, fp in wanted.items()),
        "objects": sum(r["n_objects"] for r in scenes),
        "objects_in_tiles": sum(r["n_in_tiles"] for r in scenes),
        "errors": len(outcome.errors),
    }


def stage_nodes(outcome: Outcome) -> dict[str, dict[str, int]]:
    """{stage: {node id: tiles}} over the tiles this run computed: where each stage ran."""
    nodes: dict[str, dict[str, int]] = {stage: {} for stage in NODE_COLUMNS}
    for row in outcome.with_status(Status.PROCESSED):
        for stage, column in NODE_COLUMNS.items():
            nodes[stage][row[column]] = nodes[stage].get(row[column], 0) + 1
    return nodes
