"""Dataset versions: the commit log, which versions stay readable, and the runs at work.

    _versions/00000001.json, ...   one RunRecord per committed version; creating it is the commit
    _run.json                      a copy of the latest record, for tools that read one file
    _active/<run_id>.json          a lease per run at work (started_at, refreshed_at)

Optimistic concurrency, as in Delta Lake's log: a run reads the latest version N when it
starts, writes only files no version uses yet, and commits by creating `_versions/N+1` with
`storage.create_new`. If another run created it first, the commit fails with
ConcurrentRunError and nothing of the run becomes visible; its finished tiles stay on storage
for the rerun to reuse.

Clean-up (incremental.collect_garbage) keeps the files of the last `keep` versions, so a
reader that opened a version a moment before the next commit can still read it, and leaves
alone every file younger than the start of another run at work (its lease), because those may
be that run's uncommitted output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Union

import fsspec

from samrs_ray.dataset import layout, storage
from samrs_ray.errors import ConcurrentRunError
from samrs_ray.job.faults import crash_point

log = logging.getLogger(__name__)

# A run that has not refreshed its lease for this long is presumed dead, and clean-up may then
# remove its uncommitted files. Long, because a live run presumed dead loses its work (its commit
# then finds files missing and refuses); SAMRS_RAY_LEASE_EXPIRY_S shortens it where runs are
# known to die rather than stall (the fault campaign kills drivers on purpose).
LEASE_EXPIRY_S = float(os.environ.get("SAMRS_RAY_LEASE_EXPIRY_S", 900))
LEASE_REFRESH_S = min(60.0, LEASE_EXPIRY_S / 4)
CLOCK_SLACK_S = 300.0  # store clocks and the driver's may differ by this much

# What a reader asks for: a version number, a run id, or None for the latest committed (find)
Version = Union[int, str, None]


@dataclass
class RunRecord:
    """One committed dataset version and how it came to be (`_versions/<version>.json`)."""

    run_id: str
    started_at: str
    finished_at: str
    config: dict[str, Any]
    model: dict[str, str]  # {'id': ..., 'type': ..., 'checksum': ...}
    counts: dict[str, int]
    shards: list[str]  # names of the tiles/instances shard pairs in this version
    errors: list[str]  # names of the errors shards
    changes: dict[str, list[str]]  # tile ids processed / removed by this run (first ones only)
    # where the run ran: seconds waited for the first GPU node (None: none asked for or none needed
    # waiting), and {stage: {Ray node id: tiles}} for the tiles it computed
    cluster: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # 1, 2, ... in commit order; 0 for a layout-v1 record
    parent: str = ""  # run_id of the version this run started from ("" for the first)
    # {scene: what became of it} for the scenes the store did not give: a partial night (exit 5)
    partial: dict[str, str] = field(default_factory=dict)
    # {scene: {'bands', 'dtype', 'stretch', 'low', 'high'}} for a map run's raster scenes stretched
    # to 8 bits (16-bit or float data): the values computed once per scene, per chosen band
    stretch: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {scene: {'item': URI, 'asset': key}} for the scenes read from STAC Items (inputs/stac.py)
    items: dict[str, dict[str, str]] = field(default_factory=dict)
    # {table: Delta version} of this version's tables (dataset/delta.py); {} in records written before them
    tables: dict[str, int] = field(default_factory=dict)
    # scene_cache.inputs_digest of what the run was given ("": not known): a run given the same
    # inputs commits this version's files again without reading the dataset
    inputs: str = ""

    def to_json(self) -> bytes:
        # `stretch` and `items` only where a scene was stretched or came from STAC: the records of
        # other runs still open in a samrs-ray from before those fields
        fields_ = {k: v for k, v in self.__dict__.items() if k not in ("stretch", "items") or v}
        return (json.dumps(fields_, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> "RunRecord":
        # fields a later samrs-ray added are left out, so that an older reader opens a newer version
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in json.loads(data).items() if key in known})


def history(fs: fsspec.AbstractFileSystem, out: str) -> list[RunRecord]:
    """Every committed version's record, oldest first: layout v1's `_runs/` (if any), then the log."""
    v1 = layout.v1_history_folder(out)
    records = [RunRecord.from_json(fs.cat_file(storage.join(v1, n)))
               for n in storage.list_names(fs, v1) if n.endswith(".json")]
    log = layout.versions_folder(out)
    numbered = sorted((v, n) for n in storage.list_names(fs, log) if (v := layout.version_of_file(n)) is not None)
    return records + [RunRecord.from_json(fs.cat_file(storage.join(log, n))) for _, n in numbered]


def latest(fs: fsspec.AbstractFileSystem, out: str) -> Optional[RunRecord]:
    """The committed version: the log's last record, or a v1 dataset's `_run.json`; None before
    the first commit."""
    log = layout.versions_folder(out)
    numbers = [v for n in storage.list_names(fs, log) if (v := layout.version_of_file(n)) is not None]
    if numbers:
        return RunRecord.from_json(fs.cat_file(layout.version_path(out, max(numbers))))
    path = layout.run_record(out)
    return RunRecord.from_json(fs.cat_file(path)) if storage.exists(fs, path) else None


def run_record_version(fs: fsspec.AbstractFileSystem, out: str) -> Optional[int]:
    """The version `_run.json` names (None: none, or unreadable)."""
    try:
        return int(json.loads(fs.cat_file(layout.run_record(out)))["version"])
    except (OSError, ValueError, KeyError):
        return None


def retained(records: list[RunRecord], keep: int) -> list[RunRecord]:
    """The versions whose files are kept: the last `keep` (at least the latest)."""
    return records[-max(1, keep):]


def find(fs: fsspec.AbstractFileSystem, out: str, version: Version, keep: Optional[int] = None
         ) -> RunRecord:
    """A committed version by number or run id (None: the latest). Refuses one whose files may
    have been cleaned up: only the last `keep` versions are readable (keep=None: the count the
    latest run kept)."""
    missing = FileNotFoundError(f"{out}: no committed dataset (no _versions/ or _run.json); "
                                "run `samrs-ray generate` first")
    if version is None:
        record = latest(fs, out)
        if record is None:
            raise missing
        return record
    records = history(fs, out)
    if not records:
        raise missing
    keep = keep if keep is not None else int(records[-1].config.get("keep_versions", 1))
    readable = retained(records, keep)
    for record in records:
        if str(version) in (record.run_id, str(record.version)):
            if record not in readable:
                raise FileNotFoundError(f"{out}: version {version} is no longer readable (only the last {keep} "
                                        "are kept; `samrs-ray runs` lists them)")
            return record
    raise FileNotFoundError(f"{out}: no version {version!r}; `samrs-ray runs` lists the versions")


def commit(fs: fsspec.AbstractFileSystem, out: str, record: RunRecord,
           publish: Optional[Callable[[], None]] = None) -> None:
    """Publish `record` as version record.version: create its log entry, which fails if another
    run has committed that version since this run started; then `publish()` (the Delta tables);
    then refresh `_run.json`, so that `_run.json` names only versions whose tables are published.

    Everything the record lists must already be written."""
    data = record.to_json()
    if not storage.create_new(fs, layout.version_path(out, record.version), data):
        other = RunRecord.from_json(fs.cat_file(layout.version_path(out, record.version)))
        if other.run_id == record.run_id:
            # our own record: the conditional PUT succeeded but its answer was lost, and the
            # client's retry found the object there
            log.info("%s: version %d is this run's own (a retried commit)", out, record.version)
        else:
            raise ConcurrentRunError(
                f"{out}: another run ({other.run_id}, started {other.started_at}) committed version "
                f"{record.version} while this run ({record.run_id}) worked from version {record.version - 1}. "
                "Nothing of this run was committed, and nothing of the other run's was touched. Rerun: "
                "the tiles this run finished are on storage and will be reused.")
    crash_point("in-commit")
    if publish is not None:
        publish()
    try:
        storage.write_atomic(fs, layout.run_record(out), data)
    except OSError as error:  # committed already (the log is the truth); the next commit refreshes it
        log.warning("%s: version %d committed, but _run.json was not refreshed: %s", out, record.version, error)


# --- runs at work -----------------------------------------------------------------------------


class Lease:
    """This run's `_active/<run_id>.json`, held while the run works on `out`:

        with Lease(fs, out, run_id):
            ...  # a thread refreshes it every LEASE_REFRESH_S; it is removed at the end

    A run killed without removing it is presumed dead once it is LEASE_EXPIRY_S old."""

    def __init__(self, fs: fsspec.AbstractFileSystem, out: str, run_id: str) -> None:
        self.fs, self.path, self.run_id = fs, layout.active_path(out, run_id), run_id
        self.started_at = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.keep_fresh, name="samrs-ray-lease", daemon=True)

    def __enter__(self) -> "Lease":
        self.write()
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join()
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            pass
        except OSError as error:  # the store is away: the lease expires by itself
            log.warning("cannot remove %s (%s); it expires in %.0f s", self.path, error, LEASE_EXPIRY_S)

    def write(self) -> None:
        body = {"run_id": self.run_id, "started_at": self.started_at, "refreshed_at": time.time(),
                "started": datetime.fromtimestamp(self.started_at, timezone.utc).isoformat(timespec="seconds")}
        storage.write_atomic(self.fs, self.path, json.dumps(body).encode())

    def keep_fresh(self) -> None:
        while not self.stop.wait(LEASE_REFRESH_S):
            try:
                self.write()
            except OSError as error:  # the store is away for a moment; the next refresh may reach it
                log.warning("cannot refresh %s: %s", self.path, error)


def spare_after(fs: fsspec.AbstractFileSystem, out: str, run_id: str) -> Optional[float]:
    """Files modified after this time (POSIX seconds) may be another live run's uncommitted
    output: the earliest other run's start, less CLOCK_SLACK_S; None when no other run is at
    work. A lease not refreshed for LEASE_EXPIRY_S belongs to a run that died without dropping
    it: it is removed here, so that dead runs leave nothing behind."""
    folder = layout.active_folder(out)
    starts = []
    for name in storage.list_names(fs, folder):
        if name == f"{run_id}.json" or storage.is_temp(name):
            continue
        path = storage.join(folder, name)
        try:
            lease = json.loads(fs.cat_file(path))
        except (OSError, ValueError):
            continue  # dropped while we looked, or half visible on a store without atomic writes
        if time.time() - float(lease["refreshed_at"]) < LEASE_EXPIRY_S:
            starts.append(float(lease["started_at"]))
        else:
            with contextlib.suppress(OSError):
                fs.rm_file(path)
    return min(starts) - CLOCK_SLACK_S if starts else None
