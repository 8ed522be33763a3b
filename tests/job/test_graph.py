"""samrs_ray/job/graph.py: the stages after planning, each with its settings and the row columns
it reads and writes."""

from __future__ import annotations

from samrs_ray.job.graph import Stage, resolve_engine, stages
from samrs_ray.job.rows import ROW
from samrs_ray.job.stages import stage_settings
from tests.datasets import config


def box_stages(**changes) -> list[Stage]:
    resolved = resolve_engine(config("i", "l", "o", **changes), local_gpus=0)
    return stages(resolved, "", stage_settings(resolved, "")[1])


def test_every_column_a_stage_reads_is_a_row_column_or_written_before_it() -> None:
    available = set(ROW.names)
    for stage in box_stages():
        assert set(stage.reads) <= available, stage.fn
        available |= set(stage.writes)
    assert "instances" in available  # encode hands the instance rows to the shard stage


def test_the_stages_carry_the_runs_batch_sizes_and_resources() -> None:
    mask, encode, shard = box_stages(image_batch=3, shard_tiles=50)
    assert (mask.batch_size, encode.batch_size, shard.batch_size) == (3, 3, 50)
    assert mask.options["num_gpus"] is None and mask.options["compute"].max_size == 1  # box: one CPU actor
    assert shard.options["num_cpus"] != encode.options.get("num_cpus", 1)  # not fused with encoding
