"""samrs_ray/report/shard_tasks.py: one function over shards, here or as Ray tasks (the Ray way is
tested through stats, tests/test_stats.py)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

from samrs_ray.report.shard_tasks import map_shards, quiet_ray_data


def slow_first(shard: str) -> dict:
    """Finishes in the reverse order of the shards."""
    time.sleep(0.05 * (5 - int(shard)))
    return {"shard": shard}


def test_in_process_values_come_in_the_shards_order() -> None:
    assert map_shards(slow_first, [str(i) for i in range(5)]) == [{"shard": str(i)} for i in range(5)]
    assert map_shards(slow_first, []) == []


def test_in_process_way_does_not_import_ray() -> None:
    code = ("import sys; from samrs_ray.report.shard_tasks import map_shards; map_shards(len, ['a', 'bb']); "
            "print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_ray_data_console_shows_warnings_only_and_is_restored() -> None:
    from ray.data._internal.logging import SessionFileHandler

    handlers = logging.getLogger("ray.data").handlers
    before = [h.level for h in handlers]
    with quiet_ray_data():
        levels = {isinstance(h, SessionFileHandler): h.level for h in handlers}
        assert levels[False] >= logging.WARNING and levels[True] < logging.INFO
    assert [h.level for h in handlers] == before
