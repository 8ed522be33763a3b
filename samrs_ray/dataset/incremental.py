"""What is already done, which shards make up the next dataset version, and the clean-up.

Every shard on storage (committed ones and those a killed or beaten run left behind) is indexed
by the (tile_id, fingerprint) pairs it holds and the PNGs its tiles use. A planned tile whose
fingerprint is found there, with its label PNG present, is skipped. After the run, each tile of
the new version is taken from exactly one shard: committed shards first (unchanged datasets
stay byte-identical), then this run's, then leftovers; a shard is kept whole when all its tiles
are wanted, else its wanted rows are copied into a new shard.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from samrs_ray.dataset import layout, manifest, storage
from samrs_ray.dataset.versions import RunRecord
from samrs_ray.job.faults import crash_point

INDEX_COLUMNS = ["tile_id", "fingerprint", "source_uri", "n_instances", "label_uri", "color_uri", "image_uri", "split"]
URI_COLUMNS: dict[layout.PngFolder, str] = {"labels": "label_uri", "color": "color_uri", "tiles": "image_uri"}


@dataclass
class ShardIndex:
    """For every shard on storage: its tiles as {tile_id: fingerprint}, their instance counts,
    scenes and label PNGs, and the PNG file names its tiles use in each folder."""

    tiles: dict[str, dict[str, str]] = field(default_factory=dict)
    instances: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # shard -> tile -> scene image
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # shard -> tile -> label PNG name
    splits: dict[str, dict[str, Optional[str]]] = field(default_factory=dict)  # shard -> tile -> split
    pngs: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # shard -> folder -> names

    def add(self, name: str, table: pa.Table) -> None:
        """Index one shard from its tiles table (INDEX_COLUMNS at least)."""
        ids = table.column("tile_id").to_pylist()
        self.tiles[name] = dict(zip(ids, table.column("fingerprint").to_pylist()))
        self.instances[name] = dict(zip(ids, table.column("n_instances").to_pylist()))
        sources = table.column("source_uri").to_pylist()
        self.sources[name] = dict(zip(ids, sources))
        self.splits[name] = dict(zip(ids, table.column("split").to_pylist()))
        # by file name, not URI, so that a dataset copied elsewhere still finds its files; an uncut
        # tile's image is its scene, an input file, not one of the dataset's tiles/ PNGs
        names = {folder: [posixpath.basename(u) if u and not (folder == "tiles" and u == source) else ""
                          for u, source in zip(table.column(column).to_pylist(), sources)]
                 for folder, column in URI_COLUMNS.items()}
        self.labels[name] = dict(zip(ids, names["labels"]))
        self.pngs[name] = {folder: set(found) - {""} for folder, found in names.items()}

    def instance_counts(self) -> dict[tuple[str, str], int]:
        """{(tile_id, fingerprint): n_instances} over all shards."""
        return {(t, fp): self.instances[name][t] for name, tiles in self.tiles.items() for t, fp in tiles.items()}

    def known_by_source(self, label_files: set[str]) -> dict[str, frozenset[str]]:
        """Fingerprints done per scene image URI, counting only tiles whose label PNG (a name
        in `label_files`) exists."""
        known: dict[str, set[str]] = defaultdict(set)
        for name, tiles in self.tiles.items():
            for tile, fp in tiles.items():
                if self.labels[name][tile] in label_files:
                    known[self.sources[name][tile]].add(fp)
        return {source: frozenset(fps) for source, fps in known.items()}


def read_index(fs: fsspec.AbstractFileSystem, out: str) -> ShardIndex:
    """Index every tiles shard under <out>/manifest/tiles (a shard without its instances file
    is incomplete and ignored; a file that does not read is ignored too: it was never committed)."""
    index = ShardIndex()
    tiles_dir = layout.table_folder(out, "tiles")
    instances = set(storage.list_names(fs, layout.table_folder(out, "instances")))
    for filename in storage.list_names(fs, tiles_dir):
        if not filename.endswith(".parquet") or filename not in instances:
            continue
        try:
            table = manifest.read_table(fs, storage.join(tiles_dir, filename), INDEX_COLUMNS)
        except (OSError, pa.ArrowException):
            continue
        index.add(layout.shard_of_file(filename), table)
    return index


def label_pngs(fs: fsspec.AbstractFileSystem, out: str) -> set[str]:
    """Names of the label PNGs on storage."""
    return {n for n in storage.list_names(fs, layout.png_folder(out, "labels")) if n.endswith(".png")}


@dataclass
class Selection:
    keep: list[str]  # shards that go into the new version as they are
    copy: dict[str, list[str]]  # shard -> tile ids to copy out of it into new shards


def select_shards(wanted: dict[str, str], index: ShardIndex, order: Iterable[str],
                  splits: Optional[dict[str, str]] = None) -> tuple[Selection, set[str]]:
    """Cover each wanted {tile_id: fingerprint} exactly once from the shards in `order`. A shard
    is kept whole only if its rows also hold the wanted `splits` {tile_id: split}; else its
    usable rows are copied (and their split set). Returns the selection and the wanted tiles no
    shard holds (should be empty)."""
    assigned: set[str] = set()
    selection = Selection(keep=[], copy={})
    for name in order:
        tiles = index.tiles.get(name)
        if not tiles:
            continue
        usable = [t for t, fp in tiles.items() if wanted.get(t) == fp and t not in assigned]
        if not usable:
            continue
        moved = splits is not None and any(index.splits[name][t] != splits[t] for t in usable)
        if len(usable) == len(tiles) and not moved:
            selection.keep.append(name)
        else:
            selection.copy[name] = usable
        assigned.update(usable)
    return selection, set(wanted) - assigned


def shard_order(index: ShardIndex, committed: Optional[RunRecord], new: list[str]) -> list[str]:
    previous = committed.shards if committed else []
    rest = sorted(set(index.tiles) - set(previous) - set(new))
    return [*previous, *new, *rest]


def copy_rows(fs: fsspec.AbstractFileSystem, out: str, copy: dict[str, list[str]], shard_tiles: int,
              index: ShardIndex, splits: Optional[dict[str, str]] = None) -> list[str]:
    """Copy the chosen tiles (and their instances) out of their shards into new shards of at
    most `shard_tiles` tiles, with their split set from `splits`, added to the index; returns
    the new shard names."""
    tiles_parts, instance_parts = [], []
    for name, tile_ids in sorted(copy.items()):
        keep = pa.array(tile_ids)
        for table, parts in (("tiles", tiles_parts), ("instances", instance_parts)):
            data = manifest.read_table(fs, layout.shard_path(out, table, name), manifest.TABLES[table].names)
            parts.append(data.filter(pc.is_in(data.column("tile_id"), value_set=keep)))
    if not tiles_parts:
        return []
    tiles = pa.concat_tables(tiles_parts).sort_by("tile_id")
    if splits is not None:
        moved = pa.array([splits[t] for t in tiles.column("tile_id").to_pylist()], pa.string())
        tiles = tiles.set_column(tiles.schema.get_field_index("split"), "split", moved)
    instances = pa.concat_tables(instance_parts)
    names = []
    for start in range(0, tiles.num_rows, shard_tiles):
        chunk = tiles.slice(start, shard_tiles)
        chosen = pc.is_in(instances.column("tile_id"), value_set=chunk.column("tile_id"))
        names.append(manifest.write_shard(fs, out, chunk, instances.filter(chosen)))
        index.add(names[-1], chunk)
    return names


def collect_garbage(fs: fsspec.AbstractFileSystem, out: str, kept: list[RunRecord], index: ShardIndex,
                    spare_after: Optional[float]) -> int:
    """After a commit: delete the shards, error files and PNGs that none of the `kept` versions
    uses, and the temp files of killed writes, except files modified after `spare_after` (POSIX seconds: another run at work started
    then, and they may be its uncommitted output). Returns the number of files deleted."""
    shards = {n for record in kept for n in record.shards}
    used: dict[str, set[str]] = {
        layout.table_folder(out, "tiles"): {layout.shard_file(n) for n in shards},
        layout.table_folder(out, "instances"): {layout.shard_file(n) for n in shards},
        layout.table_folder(out, "errors"): {layout.shard_file(n) for record in kept for n in record.errors},
    }
    if shards <= set(index.pngs):  # else some kept shard went unread: which PNGs it uses is unknown
        for folder in layout.PNG_FOLDERS:
            used[layout.png_folder(out, folder)] = {n for shard in shards for n in index.pngs[shard][folder]}
    # and the temp files of writes killed midway (local disks) in the folders that hold no shard or PNG
    temp_folders = [out, layout.versions_folder(out), layout.active_folder(out),
                    posixpath.dirname(layout.scene_cache(out))]
    doomed: list[str] = []
    for folder in [*used, *temp_folders]:
        found = storage.list_modified(fs, folder)
        found.pop(layout.DELTA_LOG, None)  # a table's Delta log, which publishing keeps
        doomed += [storage.join(folder, n) for n, modified in found.items()
                   if (n not in used[folder] if folder in used else storage.is_temp(n))
                   and (spare_after is None or modified < spare_after)]
    for path in doomed:
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass
        crash_point("in-clean-up")
    return len(doomed)
