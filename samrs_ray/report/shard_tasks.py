"""One function over a version's shards, in this process or as Ray tasks.

A dataset that one process reads in seconds is read here, by a few threads (manifest reads,
PNG decodes and object-store requests release the GIL): starting Ray would cost more than the
work. Larger versions, or any version when the user names a cluster, go to Ray, quietly: Ray
Data's INFO lines (execution plans, logged progress) go to the Ray Data log of the session,
not to the terminal, and a Ray started here is shut down before returning.

The function returns a JSON-able value; both ways return the values in the shards' order, so
the caller's result does not depend on which way ran.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional

THREADS = 8  # enough to overlap object-store round trips; a local disk needs fewer


def map_shards(fn: Callable[[str], Any], shards: list[str], on_ray: bool = False,
               address: Optional[str] = None) -> list[Any]:
    """[fn(shard) for shard in shards]: in this process, or (on_ray) as one Ray task per shard,
    joining the Ray that runs, else `address`, else a local Ray started for the call."""
    if not shards:
        return []
    if on_ray:
        return ray_map(fn, shards, address)
    with ThreadPoolExecutor(max_workers=min(THREADS, len(shards))) as pool:
        return list(pool.map(fn, shards))


def call_row(row: dict[str, Any], fn: Callable[[str], Any]) -> dict[str, Any]:
    """Ray Data `map` function: {'index', 'shard'} -> {'index', 'value': JSON text} (a fixed row
    schema, whatever fn returns)."""
    return {"index": row["index"], "value": json.dumps(fn(row["shard"]))}


def ray_map(fn: Callable[[str], Any], shards: list[str], address: Optional[str]) -> list[Any]:
    import ray  # here, so that the in-process way never imports Ray

    started = start_ray(address)
    try:
        with quiet_ray_data():
            import ray.data

            items = [{"index": i, "shard": s} for i, s in enumerate(shards)]
            dataset = ray.data.from_items(items, override_num_blocks=len(shards))
            # in a terminal, the live display `generate` shows: Ray Data's default one needs tqdm
            dataset.context.enable_rich_progress_bars, dataset.context.use_ray_tqdm = True, False
            rows = dataset.map(functools.partial(call_row, fn=fn)).take_all()
    finally:
        if started:
            ray.shutdown()
    return [json.loads(r["value"]) for r in sorted(rows, key=lambda r: r["index"])]


def start_ray(address: Optional[str]) -> bool:
    """Join `address`, or start a local Ray, unless Ray runs already. Returns whether it did.

    Unlike generate's Ray (job.graph.connect), workers' output is not copied to this process:
    a report has nothing to say from the workers that its result does not."""
    import ray

    if ray.is_initialized():
        return False
    # Ray 2.60 warns on every start that token authentication is on: the intended setup
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return True


@contextlib.contextmanager
def quiet_ray_data() -> Iterator[None]:
    """Ray Data's console handler shows warnings only, while its file handler (the session's
    logs/ray-data/ray-data.log) keeps everything. Ray Data's default handlers are restored after,
    so a caller's own Ray Data work logs as before."""
    import ray.data  # noqa: F401  (configures the 'ray.data' logger's handlers)
    from ray.data._internal.logging import SessionFileHandler

    console = [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, SessionFileHandler)]
    levels = [h.level for h in console]
    for handler in console:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        yield
    finally:
        for handler, level in zip(console, levels):
            handler.setLevel(level)
