"""A dataset written in layout v1 (`labels/<tile_id>.png`, `_runs/`, `_run.json` only, no
splits), or in layout v2 before its tables were Delta tables, is upgraded by the next run
without recomputing a mask, and stays readable as a version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from samrs_ray.dataset import layout, manifest, storage, versions
from samrs_ray.job import generate
from tests.datasets import config, dataset_rows, delta_agrees, file_digests, local_path

pytestmark = pytest.mark.slow


def downgrade_to_v1(out: Path) -> None:
    """Rewrite a one-version dataset as layout v1 wrote it: PNGs named by tile id, the tiles
    table pointing at them, the record in `_runs/<run_id>.json` and `_run.json`, no log."""
    fs, root = storage.open_fs(str(out))
    record = versions.latest(fs, root)
    v1_shards = []
    for name in record.shards:
        path = layout.shard_path(root, "tiles", name)
        table = manifest.read_table(fs, path)
        # v1 named a shard by its (tile_id, fingerprint) pairs alone
        v1_name = manifest.shard_name(zip(table.column("tile_id").to_pylist(), table.column("fingerprint").to_pylist()))
        Path(layout.shard_path(root, "instances", name)).rename(layout.shard_path(root, "instances", v1_name))
        Path(path).unlink()
        path = layout.shard_path(root, "tiles", v1_name)
        v1_shards.append(v1_name)
        for column in ("label_uri", "color_uri", "image_uri"):
            renamed = []
            for uri in table.column(column).to_pylist():
                old = local_path(uri)
                new = old.with_name(old.name.split(".")[0] + ".png")
                old.rename(new)
                renamed.append("file://" + str(new))
            table = table.set_column(table.schema.get_field_index(column), column, pa.array(renamed))
        manifest.write_table(fs, path, table.drop_columns(["split"]))  # v1 had no splits
    data = record.__dict__ | {"shards": v1_shards}
    del data["version"], data["parent"], data["tables"], data["inputs"]
    for table in ("tiles", "instances", "errors"):  # v1 had no Delta log
        shutil.rmtree(layout.delta_log(root, table))
    (out / "_runs").mkdir()
    (out / "_runs" / f"{record.run_id}.json").write_text(json.dumps(data))
    (out / "_run.json").write_text(json.dumps(data))
    shutil.rmtree(out / "_versions")


def test_a_v1_dataset_is_upgraded_without_recomputing(realsamples: Path, tmp_path: Path, local_ray) -> None:
    dota = realsamples / "dota"
    out = tmp_path / "out"
    run = lambda: generate(config(dota / "images", dota / "labelTxt", out), say=lambda _: None)  # noqa: E731
    run()
    downgrade_to_v1(out)
    v1_rows = dataset_rows(str(out), "tiles")
    v1_files = file_digests(out)
    assert sorted(p.name for p in (out / "labels").iterdir()) == [
        "P0004__1024__0___0.png", "P0004__1024__0___440.png", "P1888__1024__0___0.png"]

    upgraded = run()
    assert (upgraded.version, upgraded.counts["processed"], upgraded.counts["skipped"]) == (1, 0, 3)
    rows = dataset_rows(str(out), "tiles")
    assert {r.pop("split") for r in rows} == {"trainval"}  # the one thing rewritten: rows gain their split
    assert rows == [{k: v for k, v in r.items() if k != "split"} for r in v1_rows]  # pointing at the v1 files
    assert v1_files.items() <= file_digests(out).items()  # not a byte of v1 changed
    fs, root = storage.open_fs(str(out))
    assert [(r.run_id, r.version) for r in versions.history(fs, root)][1:] == [(upgraded.run_id, 1)]
    assert dataset_rows(str(out), "tiles", version=versions.history(fs, root)[0].run_id) == v1_rows


def test_a_dataset_without_delta_tables_gets_them_from_the_next_run(realsamples: Path, tmp_path: Path,
                                                                     local_ray) -> None:
    dota = realsamples / "dota"
    out = tmp_path / "out"
    run = lambda: generate(config(dota / "images", dota / "labelTxt", out), say=lambda _: None)  # noqa: E731
    first = run()
    # as samrs-ray wrote it before the Delta tables: no log, no pins and no input digest in the records
    for table in ("tiles", "instances", "errors"):
        shutil.rmtree(out / "manifest" / table / layout.DELTA_LOG)
    for path in [out / "_run.json", *(out / "_versions").iterdir()]:
        record = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in record.items() if k not in ("tables", "inputs")}))
    pngs = {k: v for k, v in file_digests(out).items() if k.endswith(".png")}
    old_rows = dataset_rows(str(out), "tiles")

    upgraded = run()
    assert (upgraded.version, upgraded.counts["processed"], upgraded.counts["skipped"]) == (2, 0, 3)
    assert upgraded.tables == {"tiles": 0, "instances": 0, "errors": 0}
    delta_agrees(str(out))
    assert {k: v for k, v in file_digests(out).items() if k.endswith(".png")} == pngs  # no mask recomputed
    assert dataset_rows(str(out), "tiles", version=first.run_id) == old_rows  # the old version, still readable
