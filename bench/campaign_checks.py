"""The campaign's invariant (bench/campaign.py), read from the store through the direct endpoint,
never through the fault proxy:

    whole      every file a retained version lists (its record, shards, errors shards, the PNGs
               its tiles use) exists, with the bytes it had when first seen committed
    delta      a retained version that its Delta tables have published is, at its pins, exactly
               the shards its record lists; after a fault-free run the latest version is published
    no twice   no tile twice in a version
    no loss    a committed tile of a scene whose files did not change is in the next version (the
               scenes of a partial version, exit 5, count with the files their kept tiles came from)
    honest     exit 0, 1 or 5 means the run committed; 2, 3 or 4 that it did not (the campaign's
               runs are sequential, so exit 3, a conflict, is never right)
    clean      after a fault-free run: no hidden *.tmp, no stale lease (or the run's own) in
               _active/, no shard or PNG that no retained version uses and that is older than
               every live lease (the clean-up's own rule: a killed run's lease protects its files
               until it expires: SAMRS_RAY_LEASE_EXPIRY_S, 60 s in the campaign)

The version records, file digests and tile maps are remembered while a version is retained.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from samrs_ray.dataset import delta, layout
from samrs_ray.dataset.versions import CLOCK_SLACK_S

COMMITTED, NOT_COMMITTED = (0, 1, 5), (2, 3, 4)  # exit codes that say the run did / did not commit
URIS = ("label_uri", "color_uri", "image_uri")
Failure = tuple[str, str]  # (check, what broke)


class Invariant:
    """What the campaign knows of one dataset on S3 (`out`: bucket/key, no protocol)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, out: str, lease_expiry_s: float):
        self.fs, self.out, self.lease_expiry_s = fs, out, lease_expiry_s
        self.records: dict[int, dict] = {}
        self.snapshots: dict[int, dict[str, tuple]] = {}  # version: its inputs, {scene: (image, label) sha}
        self.digests: dict[str, str] = {}  # path: sha256 when first seen committed (while retained)
        self.tiles: dict[int, dict[str, tuple[str, str]]] = {}  # version: {tile: (fingerprint, scene)}
        self.used: set[str] = set()  # the files of the retained versions
        self.damaged: set[int] = set()
        self.left: set[str] = set()

    def latest(self) -> Optional[int]:
        return max(self.records, default=None)

    def after_run(self, run_id: str, code: Any, before: Optional[int], inputs: dict, which: str) -> list[Failure]:
        """After any run: the retained versions whole, the exit code honest, no committed tile
        lost since version `before`. `inputs`: the scenes' digests the run was given."""
        self.fs.invalidate_cache()
        folder = layout.versions_folder(self.out)
        for name in self.fs.ls(folder, detail=False, refresh=True) if self.fs.exists(folder) else []:
            version = layout.version_of_file(name.rsplit("/", 1)[-1])
            if version is not None and version not in self.records:
                self.records[version] = record = json.loads(self.fs.cat_file(name))
                # a partial version keeps the tiles the parent had of the scenes the store did not give
                parent = self.snapshots.get(version - 1, {})
                self.snapshots[version] = {**inputs, **{s: parent.get(s) for s in record.get("partial", {})}}
        failures: list[Failure] = []
        latest = self.latest()
        keep = int(self.records[latest]["config"].get("keep_versions", 1)) if latest else 0
        retained = sorted(self.records)[-keep:] if keep else []
        used: dict[str, str] = {}
        for version in retained:
            problems, files = self.check_version(version)
            used.update(files)
            if problems:
                self.damaged.add(version)
                failures += [("damaged", f"version {version}: {p}") for p in problems[:10]]
        self.digests = {p: d for p, d in self.digests.items() if p in used}
        self.used = set(used)
        self.tiles = {v: tiles for v, tiles in self.tiles.items() if v in retained}
        committed = bool(run_id) and any(r["run_id"] == run_id for r in self.records.values())
        if (code in COMMITTED and not committed) or (code in NOT_COMMITTED and committed):
            failures.append(("dishonest", f"{which} run {run_id} exited {code}, but it "
                                          f"{'did' if committed else 'did not'} commit"))
        if before is not None and latest != before and before in self.tiles:
            old, new, was = self.tiles[before], self.tiles[latest], self.snapshots[before]
            lost = sorted(t for t, (fp, scene) in old.items()
                          if was.get(scene) == inputs.get(scene) and new.get(t, ("",))[0] != fp)
            if lost:
                failures.append(("lost", f"{which} run exit {code}: version {latest} lost {len(lost)} tiles of "
                                         f"version {before} whose scenes did not change: {lost[:5]}"))
        return failures

    def check_version(self, version: int) -> tuple[list[str], dict[str, str]]:
        """Whole and no tile twice: (problems, {path: sha256} of the files the version uses)."""
        record, problems, files = self.records[version], [], {}
        paths = [layout.version_path(self.out, version)] + [
            layout.shard_path(self.out, table, name) for name in record["shards"] for table in ("tiles", "instances")]
        paths += [layout.shard_path(self.out, "errors", name) for name in record["errors"]]
        tables = []
        for path in paths:
            data = self.read(path, files, problems)
            if data is not None and "/manifest/tiles/" in path:
                tables.append(pq.read_table(io.BytesIO(data), columns=["tile_id", "fingerprint", "source_uri", *URIS]))
        tiles = pa.concat_tables(tables).to_pylist() if tables else []
        for uri in sorted({t[c] for t in tiles for c in URIS if t[c] and t[c].startswith(f"s3://{self.out}/")}):
            self.read(uri.removeprefix("s3://"), files, problems)  # not the scene itself (an uncut tile's image)
        twice = [t for t, n in Counter(t["tile_id"] for t in tiles).items() if n > 1]
        problems += [f"tiles twice: {twice[:5]}"] if twice else []
        problems += self.delta_problems(version, require=False)
        self.tiles[version] = {t["tile_id"]: (t["fingerprint"], Path(t["source_uri"]).stem) for t in tiles}
        return problems, files

    def delta_problems(self, version: int, require: bool) -> list[str]:
        """The version's Delta tables at its pins hold exactly its shards (once published;
        `require`: it must be published by now)."""
        record, problems = self.records[version], []
        options = delta.object_store_options(self.fs.storage_options)
        for table, pin in record.get("tables", {}).items():
            uri = f"s3://{layout.table_folder(self.out, table)}"
            try:
                at = DeltaTable(uri, storage_options=options).version()
            except TableNotFoundError:
                at = -1
            if at < pin:
                problems += [f"{table}: not published to Delta"] if require else []
                continue
            names = record["errors"] if table == "errors" else record["shards"]
            want = {f"{uri}/{layout.shard_file(n)}" for n in names}
            got = set(DeltaTable(uri, version=pin, storage_options=options).file_uris())
            if got != want:
                problems.append(f"{table}: Delta version {pin} holds {len(got - want)} files too many, "
                                f"lacks {len(want - got)}")
        return problems

    def unpublished(self) -> list[Failure]:
        """After a fault-free run: its version's Delta tables are published, at its pins."""
        latest = self.latest()
        problems = self.delta_problems(latest, require=True) if latest is not None else []
        return [("delta", f"version {latest}: {p}") for p in problems]

    def read(self, path: str, files: dict[str, str], problems: list[str]) -> Optional[bytes]:
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            problems.append(f"{path} missing")
            return None
        files[path] = sha(data)
        if self.digests.setdefault(path, files[path]) != files[path]:
            problems.append(f"{path} changed since it was committed")
        return data

    def leftovers(self, since: float, run_id: str) -> list[Failure]:
        """What the clean-up of run `run_id`, started at `since` (POSIX s), should have removed.
        A lease counts as live if it was live when that run started: a superset of those its
        clean-up saw, so no file it rightly spared is counted."""
        self.fs.invalidate_cache()
        found = self.fs.find(self.out, detail=True)
        leases = {p: json.loads(self.fs.cat_file(p)) for p in found if p.startswith(f"{self.out}/_active/")}
        live = [float(lease["started_at"]) for lease in leases.values()
                if since - float(lease["refreshed_at"]) < self.lease_expiry_s and lease["run_id"] != run_id]
        spare_after = min(live) - CLOCK_SLACK_S if live else math.inf
        # a lease is a left-over if it had expired when that run started; one that expired while
        # the run worked may have been live at its clean-up, and is checked after the next run
        left = [p for p, lease in leases.items()
                if lease["run_id"] == run_id or since - float(lease["refreshed_at"]) >= self.lease_expiry_s]
        for path, info in found.items():
            rel, name = path[len(self.out) + 1:], path.rsplit("/", 1)[-1]
            if f"/{layout.DELTA_LOG}/" in path:
                continue  # Delta's log: its commits and checkpoints are the tables' history
            if name.startswith(".") and name.endswith(".tmp"):
                left.append(path)
            elif rel.split("/")[0] in ("manifest", *layout.PNG_FOLDERS) and path not in self.used:
                if info["LastModified"].timestamp() < spare_after:
                    left.append(path)
        new = sorted(set(left) - self.left)  # each left-over counted once, however long it stays
        self.left.update(new)
        return [("left", f"{len(new)} files left after the clean-up: {new[:5]}")] if new else []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content(fs: fsspec.AbstractFileSystem, out: str) -> tuple[list, list]:
    """The latest version's tiles (tile_id, fingerprint, n_instances) and instance rows, sorted:
    what the fault-free run and a clean run of the same inputs must agree on."""
    names = [n.rsplit("/", 1)[-1] for n in fs.ls(layout.versions_folder(out), detail=False, refresh=True)]
    latest = max(v for n in names if (v := layout.version_of_file(n)) is not None)
    record = json.loads(fs.cat_file(layout.version_path(out, latest)))
    tables = {table: [pq.read_table(io.BytesIO(fs.cat_file(layout.shard_path(out, table, n)))).to_pylist()
                      for n in record["shards"]] for table in ("tiles", "instances")}
    tiles = sorted((t["tile_id"], t["fingerprint"], t["n_instances"]) for part in tables["tiles"] for t in part)
    instances = sorted((row for part in tables["instances"] for row in part),
                       key=lambda r: (r["tile_id"], r["instance_id"]))
    return tiles, instances


def difference(got: tuple[list, list], want: tuple[list, list]) -> str:
    """How two content() results differ, in a line."""
    extra, missing = sorted(set(got[0]) - set(want[0])), sorted(set(want[0]) - set(got[0]))
    return (f"tiles not in the clean run {extra[:3]}, missing {missing[:3]}; instances {len(got[1])} vs "
            f"{len(want[1])}, equal: {got[1] == want[1]}")
