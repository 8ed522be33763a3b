"""The Ray Data graph, and the driver around it.

    scene pairs --flat_map(plan)--> tile rows --map_batches(MaskActor, actor pool)--> masks
      --map_batches(encode, CPU tasks)--> PNGs + instance rows --map_batches(shards)--> Parquet
      --> summaries on the driver --> errors shard, shard selection, commit, clean-up

Rows that are skipped or are errors flow through every stage untouched, so the driver sees
every input exactly once at the end. Each stage is a thin wrapper over a pure module
(plan, masks, outputs, manifest).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import ray

import samrs_ray
from samrs_ray import incremental, layout, manifest, preflight, storage
from samrs_ray.annotation import InputIssue
from samrs_ray.capacity import wait_for_gpus
from samrs_ray.config import JobConfig
from samrs_ray.inputs import ScenePair
from samrs_ray.masks.busy import timed_predict
from samrs_ray.manifest import RunRecord
from samrs_ray.outputs import encode_tile, output_paths, tile_pixels
from samrs_ray.plan import (ERROR, SCENE, SKIPPED, TILE, TODO, PlanSettings, error_row, group_scenes, plan_scene,
                             record_annotation, settings_digest)
from samrs_ray.progress import Progress
from samrs_ray.prompts import build_prompts

log = logging.getLogger(__name__)

PROCESSED, FAILED = "processed", "failed"
HEAVY_COLUMNS = ("pixels", "masks", "scores", "prompt_boxes")
ACTOR_BATCHES = 4  # image-encoder batches' worth of rows per GPU mask-actor call
HELPER_NICENESS = 19  # CPU stages run below the mask actors' priority (see below_engine_priority)

# torch, torchvision and segment_anything are imported only where a model is built or checked
# (MaskActor, model_checksum): every Ray worker that runs a planning, encoding or shard task
# imports this module, and those imports cost ~3 s of CPU per worker at the start of a job.


# --- model -------------------------------------------------------------------------------


def model_checksum(config: JobConfig) -> str:
    """The checkpoint's sha256, checked to be a SAM state dict of the right type before any tile
    is processed ('' for the box backend and for tiny SAM with random weights)."""
    if config.model == "box":
        return ""
    from samrs_ray.masks.checkpoint import check_checkpoint

    return check_checkpoint(config.model_type, config.checkpoint, config.node_cache_dir(), config.storage_options)


class MaskActor:
    """Holds one mask backend (SAM loaded once per actor, on its GPU when it has one).

    `expected_checksum` is the checkpoint's sha256 as the driver found it (None: not checked); an
    actor whose copy differs refuses to start rather than file its masks under the driver's.
    """

    def __init__(self, config: JobConfig, expected_checksum: Optional[str] = None):
        self.config = config
        if config.model == "box":
            from samrs_ray.masks.box import BoxBackend

            self.backend = BoxBackend()
            return
        import torch

        from samrs_ray.masks.checkpoint import load_sam
        from samrs_ray.masks.sam import EngineSettings, SamBackend, engine_threads

        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if config.gpus_per_actor and device == "cpu":
            # A node Ray counts as a GPU node without CUDA (a misconfigured image, Ray's fake
            # autoscaler): the masks are still right, only slow; the settings stay the declared ones.
            log.warning("mask actor on node %s: Ray gave it %g GPU but torch finds no CUDA; SAM runs on the CPU",
                        this_node(), config.gpus_per_actor)
        model, checksum = load_sam(config.model_type, config.checkpoint, config.node_cache_dir(), config.storage_options,
                                   expected_sha=expected_checksum)
        settings = EngineSettings(device=device, dtype=config.dtype or "float32", image_batch=config.image_batch,
                                  prompt_chunk=config.prompt_chunk or 4, multimask=config.multimask,
                                  sdpa=True, compile=config.compile, pack=True,
                                  threads=engine_threads(device, config.num_actors or 1))
        self.backend = SamBackend(model, config.model_type, checksum, settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        todo = indices(batch, TODO)
        if todo:
            rows = [row_at(batch, i) for i in todo]
            self.infer(rows)
            for row in rows:
                row["mask_node"] = this_node()
            put_rows(batch, todo, rows)
        return batch

    def infer(self, rows: list[dict[str, Any]]) -> None:
        """Fill masks/scores/prompt_boxes of each row, or mark it failed with the reason."""
        images, prompts, ready = [], [], []
        for row in rows:
            try:
                anns = [record_annotation(o, row["label_source_uri"]) for o in json.loads(row["objects"])]
                prompts.append(build_prompts(anns, self.config.preset.prompt, (row["height"], row["width"])))
            except Exception as error:  # a prompt SAM cannot take: this tile fails, the batch goes on
                fail(row, "infer", f"cannot build prompts: {type(error).__name__}: {error}")
                continue
            images.append(tile_pixels(row["pixels"], row["height"], row["width"]))
            ready.append(row)
        rows = ready
        if not rows:
            return
        try:
            results = timed_predict(self.backend, images, prompts)
        except Exception:  # one bad tile must not fail its batch: retry one by one
            results = []
            for row, image, prompt in zip(rows, images, prompts):
                try:
                    results.extend(timed_predict(self.backend, [image], [prompt]))
                except Exception as error:
                    results.append(error)
        for row, prompt, result in zip(rows, prompts, results):
            if isinstance(result, Exception):
                fail(row, "infer", f"mask inference failed: {type(result).__name__}: {result}")
                continue
            row["masks"] = result.packed()
            row["scores"] = result.scores.astype(np.float32).tobytes()
            row["prompt_boxes"] = prompt.boxes.astype(np.float32).tobytes()


# --- stages ------------------------------------------------------------------------------


def this_node() -> str:
    """The Ray node id of this worker: each tile records where each stage ran (_run.json 'cluster')."""
    return ray.get_runtime_context().get_node_id()


def below_engine_priority() -> None:
    """Lower this worker process's CPU priority (once; workers are reused) below the mask actors'.

    Ray starts every worker, actors included, at niceness 15 (raylet's worker_niceness); planning
    and encoding tasks go to 19, which the kernel's scheduler weighs 2.4x less. On a GPU node
    15 CPU tasks would otherwise share the cores equally with the actor's one Python thread that
    feeds the GPU. (On the 2-core bench box it changed nothing measurable: there the actor already
    had both cores.) Tasks still use every core the actors leave idle."""
    current = os.nice(0)
    if current < HELPER_NICENESS:
        os.nice(HELPER_NICENESS - current)


def indices(batch: dict[str, np.ndarray], status: str) -> list[int]:
    """Positions of the rows with `status`; the other rows pass through a stage untouched."""
    return np.flatnonzero(batch["status"] == status).tolist()


def row_at(batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    return {k: unbox(v[i]) for k, v in batch.items()}


def unbox(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def put_rows(batch: dict[str, np.ndarray], positions: list[int], rows: list[dict[str, Any]]) -> None:
    """Write rows back into the batch's columns (as object columns, so any value fits)."""
    for key in batch:
        column = batch[key] if batch[key].dtype == object else batch[key].astype(object)
        for i, row in zip(positions, rows):
            column[i] = row[key]
        batch[key] = column


def cleared(batch: dict[str, np.ndarray], keys: tuple[str, ...], value: Any) -> dict[str, np.ndarray]:
    for key in keys:
        column = np.empty(len(batch[key]), dtype=object)
        column[:] = [value] * len(column)
        batch[key] = column
    return batch


def fail(row: dict[str, Any], stage: str, reason: str) -> None:
    row.update(status=FAILED, stage=stage, reason=reason)


@dataclass(frozen=True)
class WriteSettings:
    out: str
    storage_options: dict
    prompt_type: str
    paint_order: str
    palette: Optional[tuple]
    model_id: str
    subset: str


def encode_batch(batch: dict[str, np.ndarray], settings: WriteSettings) -> dict[str, np.ndarray]:
    """'todo' rows with masks -> PNGs written, instance rows (JSON) filled; heavy columns dropped."""
    below_engine_priority()
    todo = indices(batch, TODO)
    if todo:
        fs, out = storage.open_fs(settings.out, settings.storage_options)
        rows = [row_at(batch, i) for i in todo]
        for row in rows:
            try:
                instances = encode_tile(fs, out, row, settings.prompt_type, settings.paint_order, settings.palette)
                row.update(status=PROCESSED, instances=json.dumps(instances), n_instances=len(instances),
                           created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           encode_node=this_node())
            except Exception as error:
                fail(row, "write", f"cannot write tile outputs: {type(error).__name__}: {error}")
        put_rows(batch, todo, rows)
    return cleared(batch, HEAVY_COLUMNS, b"")


def shard_batch(batch: dict[str, np.ndarray], settings: WriteSettings) -> dict[str, np.ndarray]:
    """Processed rows -> one Parquet shard pair; returns the rows (now with their shard name)."""
    below_engine_priority()
    done = indices(batch, PROCESSED)
    if done:
        fs, out = storage.open_fs(settings.out, settings.storage_options)
        rows = [row_at(batch, i) for i in done]
        tiles = pa.Table.from_pylist([tile_record(r, fs, out, settings) for r in rows], schema=manifest.TILES)
        instances = pa.Table.from_pylist(
            [i for r in rows for i in json.loads(r["instances"])], schema=manifest.INSTANCES)
        name = manifest.write_shard(fs, out, tiles, instances)
        for row in rows:
            row.update(shard=name, shard_node=this_node())
        put_rows(batch, done, rows)
    return cleared(batch, ("instances",), "[]")


def tile_record(row: dict[str, Any], fs, out: str, settings: WriteSettings) -> dict[str, Any]:
    paths = {k: fs.unstrip_protocol(v) for k, v in output_paths(out, row["tile_id"]).items()}
    return {
        "tile_id": row["tile_id"], "subset": settings.subset, "source_uri": row["source_uri"],
        "label_source_uri": row["label_source_uri"], "x0": row["x0"], "y0": row["y0"],
        "width": row["width"], "height": row["height"],
        "image_uri": paths["tiles"] if row["cut"] else row["source_uri"],
        "label_uri": paths["labels"], "color_uri": paths["color"] if settings.palette else None,
        "n_instances": row["n_instances"], "fingerprint": row["fingerprint"],
        "model": settings.model_id, "created_at": row["created_at"],
    }


# --- driver ------------------------------------------------------------------------------


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
        wants_gpu = config.model == "sam" and config.device in (None, "cuda")
        gpus = float(wants_gpu and (config.address is not None or local_gpus > 0))
    on_gpu = gpus > 0
    return replace(
        config,
        gpus_per_actor=gpus if config.model == "sam" else 0.0,
        dtype=config.dtype or ("bfloat16" if on_gpu else "float32"),
        prompt_chunk=config.prompt_chunk or (64 if on_gpu else 4),
        num_actors=config.num_actors or (None if on_gpu else 1),
    )


def connect(address: Optional[str]) -> bool:
    """Join the Ray cluster at `address`, or start a local one (the embedded default). Returns
    whether this call did it (False: the caller's Ray is used, and left running)."""
    if ray.is_initialized():
        return False
    # Ray 2.60 warns on every start that token authentication is on: that is the intended setup
    # (README, On a Ray cluster), not something for the user to act on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    return True


def run_id_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + uuid.uuid4().hex[:6]


def generate(config: JobConfig, say: Callable[[str], None] = print) -> RunRecord:
    """Run the job; returns the committed run record. Raises ConfigError before any work when
    the configuration cannot work (no inputs, bad checkpoint, unreadable output location)."""
    started = datetime.now(timezone.utc)
    clock = Clock()
    run_id = run_id_now()
    fs, out = storage.open_fs(config.out, config.storage_options)
    say(f"samrs-ray run {run_id}: {config.preset.name} from {config.images} -> {config.out}")
    # everything that can fail without Ray fails here, before a cluster is started or joined
    preflight.require_sam_extra(config)
    inputs = preflight.find_inputs(config)
    image_sizes, pairs, pair_issues = inputs.image_sizes, inputs.pairs, inputs.pair_issues
    preflight.check_writable(config)
    checksum = model_checksum(config)
    started_ray = connect(config.address)
    config = resolve_engine(config, ray.cluster_resources().get("GPU", 0) if config.address is None else 0)
    clock.lap("start")

    committed = manifest.read_committed(fs, out)
    index = incremental.read_index(fs, out)
    known = index.known_by_source(incremental.label_pngs(fs, out))
    say(f"{len(pairs)} scenes, {len(pair_issues)} unpaired files; {sum(len(t) for t in index.tiles.values())} "
        f"tiles already on storage")

    plan_settings, write_settings = stage_settings(config, checksum)
    parallelism = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))

    # Scenes with tiles already done are checked first, cheaply (read, hash, plan; no pixels,
    # no model); only those that changed go through the full graph with the new scenes. So a
    # night without changes never loads SAM or asks for a GPU.
    seen = [p for p in pairs if p.image_uri in known]
    rows, changed = check_scenes(scene_items(group_scenes(seen, image_sizes, parallelism), known), plan_settings)
    todo = [p for p in pairs if p.image_uri not in known or p.name in changed]
    gpu_wait = None
    if todo:
        if config.gpus_per_actor:
            gpu_wait = wait_for_gpus(config.gpus_per_actor, config.gpu_wait_s, say)
        items = scene_items(group_scenes(todo, image_sizes, parallelism), known)
        rows += run_graph(items, plan_settings, write_settings, config, checksum, Progress(len(todo), say))
    clock.lap("work")

    cluster = {"gpu_wait_s": gpu_wait, "stages": stage_nodes(rows)}
    record = finish(fs, out, config, run_id, started, checksum, committed, index,
                    rows, [error_row(i) for i in pair_issues], len(pairs), cluster)
    clock.lap("commit")
    if started_ray:
        ray.shutdown()
        clock.lap("shutdown")
    say(summary_text(record, clock))
    return record


class Clock:
    """A run's wall time in named parts, from the process's start (samrs_ray.STARTED)."""

    def __init__(self) -> None:
        self.last = samrs_ray.STARTED
        self.parts: dict[str, float] = {}

    def lap(self, part: str) -> None:
        now = time.monotonic()
        self.parts[part] = now - self.last
        self.last = now

    def __str__(self) -> str:
        return f"{sum(self.parts.values()):.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in self.parts.items()) + ")"


def stage_settings(config: JobConfig, checksum: str) -> tuple[PlanSettings, WriteSettings]:
    """What the planning and the writing stages need of the job's configuration; the plan's
    digest covers every output setting and the model's checksum, so a change recomputes tiles."""
    plan = PlanSettings(config.preset, settings_digest(config.output_settings(checksum)), config.max_pixels,
                        config.storage_options)
    write = WriteSettings(
        out=config.out, storage_options=config.storage_options, prompt_type=config.preset.prompt,
        paint_order=config.paint_order, palette=config.preset.palette if config.write_color else None,
        model_id=config.model_id, subset=config.preset.name)
    return plan, write


def scene_items(groups: list[list[ScenePair]], known: dict[str, frozenset[str]]) -> list[dict[str, Any]]:
    """One Ray Data item per group of scenes, each scene with the fingerprints already done."""
    return [{"scenes": [{"name": p.name, "image_uri": p.image_uri, "label_uri": p.label_uri,
                         "known": sorted(known.get(p.image_uri, ()))} for p in group]} for group in groups]


def plan_group(group: dict[str, Any], settings: PlanSettings, cut: bool) -> list[dict[str, Any]]:
    below_engine_priority()
    rows = []
    for scene in group["scenes"]:
        pair = ScenePair(scene["name"], scene["image_uri"], scene["label_uri"])
        rows += plan_scene(pair, settings, frozenset(scene["known"]), cut)
    node = this_node()
    for row in rows:
        row["plan_node"] = node
    return rows


def check_scenes(items: list[dict[str, Any]], settings: PlanSettings) -> tuple[list[dict[str, Any]], set[str]]:
    """Plan scenes without pixels. Returns the rows of the scenes with nothing to do, and the
    names of the scenes with tiles to (re)compute."""
    if not items:
        return [], set()
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.flat_map(plan_group, fn_args=(settings, False)).drop_columns([*HEAVY_COLUMNS, "instances", "objects"])
    rows = [dict(r) for r in ds.iter_rows()]
    changed = {r["scene"] for r in rows if r["status"] == TODO}
    return [r for r in rows if r["scene"] not in changed], changed


def run_graph(items: list[dict], plan_settings: PlanSettings, write_settings: WriteSettings,
              config: JobConfig, checksum: str, progress: Progress) -> list[dict[str, Any]]:
    """The streaming graph; returns the light summary row of every scene, tile and error."""
    # Retries are Ray Data's defaults: a dead task is rerun and a dead actor restarted
    # (max_restarts=-1, max_task_retries=-1); shard names derive from content, so a rerun
    # batch overwrites its own files instead of duplicating rows.
    on_gpu = bool(config.gpus_per_actor)
    # In a terminal, Ray Data's live display of every stage (rich); elsewhere Ray Data logs its
    # progress every few seconds, and Progress adds the job's own line.
    context = ray.data.DataContext.get_current()
    context.enable_rich_progress_bars, context.use_ray_tqdm = True, False
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.flat_map(plan_group, fn_args=(plan_settings, True))
    # Scene summaries and unchanged tiles ride along with the tiles to compute (a third of the rows for
    # small scenes), and each actor call costs a Ray round trip: so on a GPU, several encoder batches
    # per call. A CPU engine takes seconds per tile, where the round trip is nothing and a big last
    # call would only leave more tiles to encode after it.
    rows_per_call = config.image_batch * (ACTOR_BATCHES if on_gpu else 1)
    # Two calls per actor: Ray Data turns the next batch's block into numpy, and the last batch's
    # masks into a block, in a second thread while __call__ runs; __call__ itself stays one at a
    # time (Ray Data's lock), so the model never holds two batches' activations.
    ds = ds.map_batches(
        MaskActor, fn_constructor_args=(config, checksum), batch_size=rows_per_call, batch_format="numpy",
        compute=mask_pool(config.num_actors), num_gpus=config.gpus_per_actor or None)
    # encode as soon as the engine hands over a batch, so little is left to encode when it stops
    ds = ds.map_batches(encode_batch, fn_args=(write_settings,), batch_size=config.image_batch, batch_format="numpy")
    # num_cpus differs from encode_batch's (1) so that Ray Data does not fuse the two stages: a fused
    # stage takes the larger batch size, and no tile would be encoded before shard_tiles tiles had masks.
    ds = ds.map_batches(shard_batch, fn_args=(write_settings,), batch_size=config.shard_tiles, batch_format="numpy",
                        num_cpus=0.5)
    ds = ds.drop_columns([*HEAVY_COLUMNS, "instances", "objects"])
    rows = []
    for row in map(dict, ds.iter_rows()):
        rows.append(row)
        tile = row["kind"] == TILE
        progress.update(scenes=row["kind"] == SCENE, written=tile and row["status"] == PROCESSED,
                        failed=tile and row["status"] == FAILED)
    progress.done()
    return rows


def mask_pool(num_actors: Optional[int]) -> ray.data.ActorPoolStrategy:
    """A fixed pool of `num_actors`, or (None) Ray Data's autoscaling pool from one actor to as
    many as the cluster's GPUs allow: it grows as the autoscaler adds GPU nodes during the run."""
    sizes = {"size": num_actors} if num_actors else {"min_size": 1, "max_size": None}
    return ray.data.ActorPoolStrategy(**sizes, max_concurrent_calls_per_actor=2)


def finish(fs, out: str, config: JobConfig, run_id: str, started: datetime, checksum: str,
           committed: Optional[RunRecord], index: incremental.ShardIndex,
           rows: list[dict[str, Any]], pair_errors: list[dict[str, Any]], n_pairs: int,
           cluster: dict[str, Any]) -> RunRecord:
    """Errors shard, shard selection, commit, clean-up; returns the committed record."""
    tiles = [r for r in rows if r["kind"] == TILE]
    scenes = [r for r in rows if r["kind"] == SCENE]
    errors = pair_errors + [r for r in rows if r["kind"] == ERROR]
    failed = [r for r in tiles if r["status"] == FAILED]
    errors += [error_row(InputIssue(r["source_uri"], r["reason"], stage=r["stage"]), tile=r["tile_id"]) for r in failed]

    # The shards this run wrote, indexed from the summaries they were written from (no read-back).
    written: dict[str, list[dict[str, Any]]] = {}
    for r in tiles:
        if r["status"] == PROCESSED:
            written.setdefault(r["shard"], []).append({c: r[c] for c in incremental.INDEX_COLUMNS})
    new_shards = sorted(written)
    for name in new_shards:
        index.add(name, pa.Table.from_pylist(written[name]))
    wanted = {r["tile_id"]: r["fingerprint"] for r in tiles if r["status"] in (PROCESSED, SKIPPED)}
    selection, missing = incremental.select_shards(wanted, index, incremental.shard_order(index, committed, new_shards))
    if missing:  # a skipped tile whose shard vanished between planning and now: not in this version
        raise RuntimeError(f"{len(missing)} tiles are in no shard (storage changed during the run?): "
                           f"{sorted(missing)[:5]}; rerun to recompute them")
    copied = incremental.copy_rows(fs, out, selection.copy, config.shard_tiles)
    shards = sorted(selection.keep + copied)

    error_table = pa.Table.from_pylist(
        [{"source_uri": e["source_uri"], "line": None if e["line"] < 0 else e["line"], "stage": e["stage"],
          "reason": e["reason"], "tile_id": e["tile_id"] or None} for e in errors], schema=manifest.ERRORS)
    error_shards = []
    if errors:
        error_shards = [run_id]
        manifest.write_table(fs, layout.shard_path(out, "errors", run_id), error_table)

    previous_tiles = set()
    if committed:
        for name in committed.shards:
            previous_tiles.update(index.tiles.get(name, {}))
    processed = [r["tile_id"] for r in tiles if r["status"] == PROCESSED]
    removed = sorted(previous_tiles - set(wanted))
    counts_of = index.instance_counts()
    instances = sum(counts_of[(t, fp)] for t, fp in wanted.items())
    counts = {
        "scenes": n_pairs,
        "scenes_ok": len(scenes),
        "tiles": len(wanted),
        "processed": len(processed),
        "skipped": sum(r["status"] == SKIPPED for r in tiles),
        "failed": len(failed),
        "removed": len(removed),
        "empty_windows": sum(r["n_empty"] for r in scenes),
        "instances": instances,
        "objects": sum(r["n_objects"] for r in scenes),
        "objects_in_tiles": sum(r["n_in_tiles"] for r in scenes),
        "errors": len(errors),
    }
    record = RunRecord(
        run_id=run_id, started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=config.public(),
        model={"id": config.model_id, "type": config.model_type if config.model == "sam" else "",
               "checksum": checksum},
        counts=counts, shards=shards, errors=error_shards,
        changes={"processed": processed[:100], "removed": removed[:100]},
        cluster=cluster,
    )
    manifest.commit(fs, out, record)
    incremental.collect_garbage(fs, out, record, set(wanted))
    return record


STAGE_NODE_COLUMNS = {"plan": "plan_node", "mask": "mask_node", "encode": "encode_node", "shard": "shard_node"}


def stage_nodes(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{stage: {node id: tiles}} over the tiles this run computed: where each stage ran."""
    nodes: dict[str, dict[str, int]] = {stage: {} for stage in STAGE_NODE_COLUMNS}
    for row in rows:
        if row["kind"] == TILE and row["status"] == PROCESSED:
            for stage, column in STAGE_NODE_COLUMNS.items():
                nodes[stage][row[column]] = nodes[stage].get(row[column], 0) + 1
    return nodes


def summary_text(record: RunRecord, clock: Clock) -> str:
    c = record.counts
    lines = [
        f"run {record.run_id} committed ({record.model['id']}) in {clock}",
        f"  scenes    {c['scenes_ok']} read of {c['scenes']}",
        f"  tiles     {c['tiles']} in dataset: {c['processed']} processed, {c['skipped']} unchanged; "
        f"{c['failed']} failed, {c['removed']} removed, {c['empty_windows']} empty windows",
        f"  instances {c['instances']} (objects read {c['objects']}, in tiles {c['objects_in_tiles']})",
        f"  errors    {c['errors']} (see manifest/errors)" if c["errors"] else "  errors    none",
    ]
    return "\n".join(lines)
