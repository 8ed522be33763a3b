"""samrs_ray/job/rows.py: the typed instances column between the encode and shard stages."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from samrs_ray.dataset import manifest
from samrs_ray.job.rows import Status, with_instances


def batch(statuses: list[str]) -> dict[str, np.ndarray]:
    return {"status": np.array(statuses, dtype=object), "n_instances": np.arange(len(statuses))}


def instance(tile: str, i: int) -> dict:
    return {"tile_id": tile, "instance_id": i, "class_id": 3, "class_name": "ship", "difficult": False,
            "prompt_type": "rbox", "prompt_box": [1.0, 2.0, 30.0, 40.0], "polygon": None,
            "mask_rle": {"counts": "PXc1", "height": 1024, "width": 1024}, "area": 7,
            "predicted_iou": 0.5, "mask_box": None, "source_uri": "file:///x.txt", "source_line": i}


def test_blocks_without_instances_stack_with_blocks_that_have_them() -> None:
    # a batch of skipped tiles only has nothing to infer a list type from
    none = with_instances(batch([Status.SKIPPED.value, Status.SKIPPED.value]), [None, None])
    rows = pa.Table.from_pylist([instance("t0", 0), instance("t0", 1)], schema=manifest.INSTANCES)
    some = with_instances(batch([Status.PROCESSED.value]), [rows])
    assert none.schema == some.schema
    stacked = pa.concat_tables([none, some])
    rows = pa.Table.from_struct_array(pc.list_flatten(stacked["instances"]).combine_chunks()).cast(manifest.INSTANCES)
    assert rows.to_pylist() == [instance("t0", 0), instance("t0", 1)]
    assert stacked["status"].to_pylist() == ["skipped", "skipped", "processed"]


def test_each_row_gets_its_own_instances() -> None:
    tables = [pa.Table.from_pylist([instance("a", 0), instance("a", 1)], schema=manifest.INSTANCES), None,
              pa.Table.from_pylist([instance("c", 0)], schema=manifest.INSTANCES)]
    block = with_instances(batch([Status.PROCESSED.value, Status.FAILED.value, Status.PROCESSED.value]), tables)
    assert [[i["tile_id"] for i in row] for row in block["instances"].to_pylist()] == [["a", "a"], [], ["c"]]
    assert block["instances"].type == pa.list_(pa.struct(list(manifest.INSTANCES)))


def test_the_row_is_declared_once_and_the_tables_agree_with_it() -> None:
    from samrs_ray.dataset import manifest, scene_cache
    from samrs_ray.job.rows import JSON_COLUMNS, ROW, empty_row

    assert list(empty_row()) == ROW.names
    assert pa.Table.from_pylist([empty_row()], schema=ROW).num_rows == 1  # every neutral value has its type
    for name in scene_cache.PLAN_COLUMNS:
        assert scene_cache.COLUMNS.field(name).type == ROW.field(name).type
    # the manifests are the on-disk contract (narrower integers keep them small): same kind of value
    for table in (manifest.TILES, manifest.ERRORS):
        for name in set(table.names) & set(ROW.names):
            a, b = table.field(name).type, ROW.field(name).type
            as_json = name in JSON_COLUMNS and pa.types.is_fixed_size_list(a) and b == pa.string()
            assert (pa.types.is_integer(a) and pa.types.is_integer(b)) or a == b or as_json, name
