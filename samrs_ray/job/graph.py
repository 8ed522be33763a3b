"""The Ray Data graph: connecting to Ray, the engine settings a run declares, and the streaming
graph itself.

    scene groups --flat_map(plan_group)--> rows --map_batches(MaskActor, actor pool)--> masks
      --map_batches(encode_batch)--> PNGs + instance rows --map_batches(shard_batch)--> Parquet
      --> the rows' light columns, to the driver

Each map_batches stage is a `Stage` (stages() lists them): its function, batch size and format,
Ray options, and the row columns it reads and writes.

Rows that are skipped or are errors flow through every stage untouched, so the driver sees
every input exactly once at the end.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import ray

from samrs_ray.config import DEFAULT_RAY_TIMEOUT_S, JobConfig
from samrs_ray.inputs.listing import ScenePair
from samrs_ray.inputs.preflight import Inputs
from samrs_ray.inputs.presets import Preset
from samrs_ray.job.actor import MaskActor
from samrs_ray.job.budget import StoreBudget
from samrs_ray.job.progress import Progress
from samrs_ray.job.rows import HEAVY_COLUMNS, Kind, Status
from samrs_ray.job.stages import WriteSettings, encode_batch, plan_group, shard_batch
from samrs_ray.masks.engines import ENGINES
from samrs_ray.masks.model_types import PROMPT_CHUNK_CPU, PROMPT_CHUNK_GPU
from samrs_ray.planning.plan import PlanSettings, group_scenes
from samrs_ray.planning.raster_plan import scene_parts

ACTOR_BATCHES = 4  # image-encoder batches' worth of rows per GPU mask-actor call


def resolve_engine(config: JobConfig, local_gpus: float) -> JobConfig:
    """Fill the engine settings from what the run declares: bf16 and big prompt chunks when its
    mask actors ask for GPUs, fp32 and small chunks on CPUs.

    The declaration is `gpus_per_actor`; left open, it is 1 for SAM on a cluster (`address`), and
    on the embedded local Ray what this machine has (`local_gpus`, which is fixed). So the same
    command gives the same settings, and so the same fingerprints, whichever nodes are up.
    `num_actors` stays None for a GPU run: the mask pool then grows with the cluster's GPUs.
    """
    gpus = config.gpus_per_actor
    if gpus is None:
        wants_gpu = ENGINES[config.model].wants_gpu and config.device in (None, "cuda")
        gpus = float(wants_gpu and (config.address is not None or local_gpus > 0))
    if not ENGINES[config.model].wants_gpu:  # before on_gpu: an engine without a model takes no GPU, whatever was asked
        gpus = 0.0
    on_gpu = gpus > 0
    return replace(
        config,
        gpus_per_actor=gpus,
        dtype=config.dtype or ("bfloat16" if on_gpu else "float32"),
        prompt_chunk=config.prompt_chunk or (PROMPT_CHUNK_GPU if on_gpu else PROMPT_CHUNK_CPU),
        num_actors=config.num_actors or (None if on_gpu else 1),
    )


def connect(address: Optional[str], timeout_s: float = DEFAULT_RAY_TIMEOUT_S) -> bool:
    """Join the Ray cluster at `address`, or start a local one (the embedded default). Returns
    whether this call did it (False: the caller's Ray is used, and left running). Raises
    TimeoutError when nothing answers at a host:port `address` within `timeout_s`: ray.init
    itself would wait for it without end."""
    if ray.is_initialized():
        return False
    if address:
        wait_for_head(address, timeout_s)
    # Ray 2.60 warns on every start that token authentication is on: that is the intended setup
    # (README, On a Ray cluster), not something for the user to act on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    return True


def wait_for_head(address: str, timeout_s: float) -> None:
    """Return once a TCP connection to the head's host:port ('ray://' or a GCS address) opens,
    trying every second (a head that is starting answers a few seconds later). 'auto' and
    addresses without a port are left to ray.init."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout_s)).close()
            return
        except OSError as error:
            if time.monotonic() + 1 > deadline:
                raise TimeoutError(f"nothing answered at {address} for {timeout_s:.0f} s "
                                   f"({type(error).__name__}: {error}); --ray-timeout waits longer") from None
            time.sleep(1)


def scene_items(pairs: list[ScenePair], inputs: Inputs, known: dict[str, frozenset[str]], preset: Preset,
                parallelism: int) -> list[dict[str, Any]]:
    """The Ray Data items that plan these scenes, each scene with its split and the fingerprints
    already done: a group of scenes per item (plan.group_scenes), or for the raster scenes of a map
    run, a part of one scene per item (raster_plan.scene_parts), so a big scene plans in parallel."""
    def entry(pair: ScenePair) -> dict[str, Any]:
        return {"name": pair.name, "image_uri": pair.image_uri, "label_uri": pair.label_uri,
                "split": inputs.splits[pair.name], "known": sorted(known.get(pair.image_uri, ()))}

    maps = inputs.maps
    if maps is None:
        return [{"scenes": [entry(p) for p in group]} for group in group_scenes(pairs, inputs.image_sizes, parallelism)]
    return [{"scenes": [{**entry(p), "part": part.to_item()}]} for p in pairs
            for part in scene_parts(p.name, maps.rasters[p.name], maps.image_keys[p.name], p.label_uri,
                                    maps.objects[p.name], preset.tile_size, preset.gap)]


def check_scenes(items: list[dict[str, Any]], settings: PlanSettings, budget: Optional[StoreBudget] = None
                 ) -> tuple[list[dict[str, Any]], set[str]]:
    """Plan scenes without pixels. Returns the rows of the scenes with nothing to do, and the
    names of the scenes with tiles to (re)compute."""
    if not items:
        return [], set()
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.flat_map(plan_group, fn_args=(settings, False, budget)).drop_columns([*HEAVY_COLUMNS, "objects"])
    rows = [dict(r) for r in ds.iter_rows()]
    changed = {r["scene"] for r in rows if r["status"] == Status.TODO}
    return [r for r in rows if r["scene"] not in changed], changed


@dataclass(frozen=True)
class Stage:
    """One map_batches stage of the graph, with the Ray settings it runs with and the row columns
    (rows.ROW) it reads and writes. The CPU stages run below the mask actors' priority."""

    fn: Any  # a function of (batch, *fn_args), or a class of (*fn_constructor_args) whose instances are called
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    batch_size: int
    batch_format: str
    options: dict[str, Any] = field(default_factory=dict)  # map_batches' own: fn_args, compute, num_cpus, ...

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        return ds.map_batches(self.fn, batch_size=self.batch_size, batch_format=self.batch_format, **self.options)


def stages(config: JobConfig, checksum: str, write: WriteSettings) -> list[Stage]:
    """Masks, then the tiles' files, then the shards: the graph after planning."""
    on_gpu = bool(config.gpus_per_actor)
    # Scene summaries and unchanged tiles ride along with the tiles to compute (a third of the rows for
    # small scenes), and each actor call costs a Ray round trip: so on a GPU, several encoder batches
    # per call. A CPU engine takes seconds per tile, where the round trip is nothing and a big last
    # call would only leave more tiles to encode after it.
    rows_per_call = config.image_batch * (ACTOR_BATCHES if on_gpu else 1)
    return [
        # Two calls per actor: Ray Data turns the next batch's block into numpy, and the last batch's
        # masks into a block, in a second thread while __call__ runs; __call__ itself stays one at a
        # time (Ray Data's lock), so the model never holds two batches' activations.
        Stage(MaskActor, reads=("status", "objects", "label_source_uri", "pixels", "width", "height"),
              writes=("masks", "scores", "prompt_boxes", "status", "stage", "reason", "mask_node"),
              batch_size=rows_per_call, batch_format="numpy",
              options={"fn_constructor_args": (config, checksum), "compute": mask_pool(config.num_actors),
                       "num_gpus": config.gpus_per_actor or None}),
        # encode as soon as the engine hands over a batch, so little is left to encode when it stops
        Stage(encode_batch, reads=("status", "tile_id", "fingerprint", "pixels_key", "cut", "objects", "source_uri",
                                   "label_source_uri", "width", "height", *HEAVY_COLUMNS),
              writes=("status", "n_instances", "created_at", "encode_node", "stage", "reason", "instances",
                      *HEAVY_COLUMNS), batch_size=config.image_batch, batch_format="numpy",
              options={"fn_args": (write,)}),
        # num_cpus differs from encode_batch's (1) so that Ray Data does not fuse the two stages: a fused
        # stage takes the larger batch size, and no tile would be encoded before shard_tiles tiles had masks.
        Stage(shard_batch, reads=("status", "instances", "tile_id", "split", "source_uri", "label_source_uri", "x0",
                                  "y0", "width", "height", "cut", "fingerprint", "pixels_key", "n_instances",
                                  "created_at", "crs", "transform"),
              writes=("shard", "shard_node"), batch_size=config.shard_tiles, batch_format="pyarrow",
              options={"fn_args": (write,), "num_cpus": 0.5}),
    ]


def run_graph(items: list[dict], plan_settings: PlanSettings, write_settings: WriteSettings,
              config: JobConfig, checksum: str, progress: Progress, budget: Optional[StoreBudget] = None
              ) -> list[dict[str, Any]]:
    """The streaming graph; returns the light summary row of every scene, tile and error.
    `budget`: the run's store error budget, which planning's reads report to."""
    # Retries are Ray Data's defaults: a dead task is rerun and a dead actor restarted
    # (max_restarts=-1, max_task_retries=-1); shard names derive from content, so a rerun
    # batch overwrites its own files instead of duplicating rows.
    # In a terminal, Ray Data's live display of every stage (rich); elsewhere Ray Data logs its
    # progress every few seconds, and Progress adds the job's own line.
    context = ray.data.DataContext.get_current()
    context.enable_rich_progress_bars, context.use_ray_tqdm = True, False
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.flat_map(plan_group, fn_args=(plan_settings, True, budget))
    for stage in stages(config, checksum, write_settings):
        ds = stage.apply(ds)
    ds = ds.drop_columns([*HEAVY_COLUMNS, "objects"])
    rows = []
    for row in map(dict, ds.iter_rows()):
        rows.append(row)
        tile = row["kind"] == Kind.TILE
        progress.update(scenes=row["kind"] == Kind.SCENE, written=tile and row["status"] == Status.PROCESSED,
                        failed=tile and row["status"] == Status.FAILED)
    progress.done()
    return rows


def mask_pool(num_actors: Optional[int]) -> ray.data.ActorPoolStrategy:
    """A fixed pool of `num_actors`, or (None) Ray Data's autoscaling pool from one actor to as
    many as the cluster's GPUs allow: it grows as the autoscaler adds GPU nodes during the run."""
    sizes = {"size": num_actors} if num_actors else {"min_size": 1, "max_size": None}
    return ray.data.ActorPoolStrategy(**sizes, max_concurrent_calls_per_actor=2)
