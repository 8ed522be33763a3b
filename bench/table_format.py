"""The open-table spike (issue 30): Delta Lake over the dataset's own Parquet shards, measured.

    python -m bench.table_format [--shards 100,1000,10000] [--races 20]

1. Two writers commit from the same table version, `--races` times, on a local disk and on
   SeaweedFS (S3 on loopback): each time one must land and one get a clean conflict.
2. Publishing a dataset version with delta.publish, the job's own path: a first version of S
   shards (the upgrade of an existing dataset: add actions by reference, no data file rewritten),
   then a version that changes 10 of them: wall time, and the bytes of the Delta commit.
3. Readers that know nothing of samrs-ray read the published version at its pin: Polars,
   deltalake's pyarrow reader, DuckDB over that Arrow dataset, Ray Data's read_delta.

Prints one table per part; the figures are in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Schema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, create_table_with_add_actions

from samrs_ray.dataset import delta, layout, storage, versions
from samrs_ray.dataset.versions import RunRecord
from tests.datasets import write_shard
from tests.seaweed import SeaweedS3


def race(uri: str, options: dict, trials: int) -> tuple[int, int, int]:
    """(one landed, both landed, none landed) over `trials` races of two appends."""
    schema = pa.schema([("tile_id", pa.string())])
    one = both = none = 0
    for trial in range(trials):
        target = f"{uri}/race-{trial}"
        create_table_with_add_actions(target, Schema.from_arrow(schema), [], storage_options=options)
        tables = [DeltaTable(target, storage_options=options) for _ in range(2)]
        landed: list[bool] = []

        def append(table: DeltaTable, name: str) -> None:
            try:
                table.create_write_transaction([AddAction(name, 1, {}, int(time.time() * 1000), True, "")],
                                               mode="append", schema=schema,
                                               commit_properties=CommitProperties(max_commit_retries=0))
                landed.append(True)
            except CommitFailedError:
                landed.append(False)

        threads = [threading.Thread(target=append, args=(t, f"{n}.parquet")) for t, n in zip(tables, "ab")]
        [t.start() for t in threads]
        [t.join() for t in threads]
        one += sum(landed) == 1
        both += sum(landed) == 2
        none += sum(landed) == 0
    return one, both, none


def record(version: int, shards: list[str], committed) -> RunRecord:
    return RunRecord(f"run-{version}", "", "", {"keep_versions": 2}, {"id": "box-fill"}, {}, shards=shards,
                     errors=[], changes={}, version=version, tables=delta.next_pins(committed))


def rows_of(out: str, shards: list[str]) -> dict[str, int]:
    """The row counts the job passes (from its shard index): one tile, one instance a shard here."""
    return {layout.shard_path(out, table, name): 1 for name in shards for table in ("tiles", "instances")}


def publishing(fs, out: str, count: int, options) -> dict[str, float]:
    shards = [write_shard(fs, out, {f"t{i:06d}": "1"}) for i in range(count)]
    first = record(1, shards, None)
    versions.commit(fs, out, first)
    started = time.perf_counter()
    delta.publish(fs, out, first, options, rows_of(out, shards))
    first_s = time.perf_counter() - started
    changed = [write_shard(fs, out, {f"t{i:06d}": "2"}) for i in range(10)]
    second = record(2, changed + shards[10:], first)
    versions.commit(fs, out, second)
    started = time.perf_counter()
    delta.publish(fs, out, second, options, rows_of(out, changed))
    second_s = time.perf_counter() - started
    log = layout.delta_log(out, "tiles")
    commit_bytes = fs.info(f"{log}/{second.tables['tiles']:020d}.json")["size"]
    return {"first_s": first_s, "edit_s": second_s, "edit_commit_kb": commit_bytes / 1024}


def readers(out: str) -> dict[str, int]:
    import duckdb
    import polars as pl
    import ray

    uri = f"{out}/manifest/tiles"
    arrow = DeltaTable(uri).to_pyarrow_dataset()  # noqa: F841 - DuckDB finds it by its name
    found = {"polars": pl.read_delta(uri).height, "deltalake/pyarrow": DeltaTable(uri).to_pyarrow_table().num_rows,
             "duckdb (Arrow dataset)": duckdb.sql("select count(*) from arrow").fetchall()[0][0]}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        found["ray.data.read_delta"] = ray.data.read_delta(uri).count()
    finally:
        ray.shutdown()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="100,1000,10000")
    parser.add_argument("--races", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="table-format-"))
    with SeaweedS3(work / "s3") as s3:
        _, root3 = storage.open_fs(s3.uri("race"), s3.storage_options)
        options3 = delta.object_store_options(s3.storage_options)
        print("1. two writers, one table version: one landed / both / none")
        local = race(str(work / "race"), {}, args.races)
        print(f"   local disk   {local[0]:>3} / {local[1]} / {local[2]}")
        remote = race(f"s3://{root3}", options3, args.races)
        print(f"   SeaweedFS    {remote[0]:>3} / {remote[1]} / {remote[2]}")

        print("2. delta.publish: first version of S shards (by reference), then 10 shards changed")
        print(f"   {'store':<10} {'S':>6} {'first s':>8} {'edit s':>7} {'edit commit KB':>15}")
        for count in map(int, args.shards.split(",")):
            fs, out = storage.open_fs(str(work / f"local-{count}"))
            figures = publishing(fs, out, count, None)
            print(f"   {'local':<10} {count:>6} {figures['first_s']:>8.2f} {figures['edit_s']:>7.2f} "
                  f"{figures['edit_commit_kb']:>15.1f}")
            if count <= 1000:  # one SeaweedFS PUT per shard to set up: the larger size takes long here
                fs, out = storage.open_fs(s3.uri(f"publish-{count}"), s3.storage_options)
                figures = publishing(fs, out, count, s3.storage_options)
                print(f"   {'SeaweedFS':<10} {count:>6} {figures['first_s']:>8.2f} {figures['edit_s']:>7.2f} "
                      f"{figures['edit_commit_kb']:>15.1f}")

        print("3. readers with nothing of samrs-ray, rows of the latest version (want "
              f"{args.shards.split(',')[0]})")
        for reader, rows in readers(str(work / f"local-{args.shards.split(',')[0]}")).items():
            print(f"   {reader:<24} {rows:>6}")


if __name__ == "__main__":
    main()
