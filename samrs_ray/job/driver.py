"""`generate()`: one run of the job, from the checks before Ray starts to the summary."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone
from typing import Callable, Optional

import fsspec
import ray

import samrs_ray
from samrs_ray.config import JobConfig
from samrs_ray.dataset import incremental, scene_cache, storage, versions
from samrs_ray.dataset.versions import RunRecord
from samrs_ray.errors import ConcurrentRunError, ConfigError, RunFailed
from samrs_ray.inputs import preflight
from samrs_ray.inputs.annotation import Stage
from samrs_ray.inputs.listing import stem
from samrs_ray.job import faults
from samrs_ray.job.actor import model_checksum
from samrs_ray.job.budget import StoreBudget
from samrs_ray.job.capacity import wait_for_gpus
from samrs_ray.job.commit import Outcome, finish, stage_nodes, unchanged
from samrs_ray.job.graph import check_scenes, connect, resolve_engine, run_graph, scene_items
from samrs_ray.job.progress import Progress
from samrs_ray.job.rows import Status, error_row
from samrs_ray.job.stages import stage_settings
from samrs_ray.planning.plan import PlanSettings


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
    preflight.require_engine_extra(config)
    inputs = preflight.find_inputs(config)
    preflight.check_writable(config)
    checksum = model_checksum(config)
    faults.arm()
    try:
        started_ray = connect(config.address, config.ray_timeout_s)
    except Exception as error:  # a cluster gone or unreachable: nothing was started or written
        raise RunFailed(f"cannot reach the Ray cluster at {config.address or 'a new local Ray'}: "
                        f"{root_cause(error)}. Nothing was written; rerun once it is up.") from error
    config = resolve_engine(config, ray.cluster_resources().get("GPU", 0) if config.address is None else 0)
    clock.lap("start")
    try:
        with versions.Lease(fs, out, run_id):
            record = work(fs, out, config, run_id, started, checksum, inputs, say, clock)
    except (ConcurrentRunError, ConfigError):  # their own words, and exit codes, already
        raise
    except Exception as error:  # storage or cluster trouble mid-run: say what, and what is safe
        raise RunFailed(f"{config.out}: the run stopped before its commit: {root_cause(error)}. The committed "
                        "version is untouched; fix the cause and rerun (finished tiles are reused).") from error
    finally:
        if started_ray:
            ray.shutdown()
            clock.lap("shutdown")
    say(summary_text(record, clock))
    return record


# "OSError: [Errno 28] No space left on device": the line that ends a Python traceback
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$", re.MULTILINE)


def root_cause(error: BaseException) -> str:
    """What went wrong first, as 'Type: text'. A Ray task's error arrives without its cause
    object, but its text holds the task's traceback, whose first exception line is the cause."""
    chain = [error]
    while (deeper := getattr(chain[-1], "cause", None) or chain[-1].__cause__) is not None and deeper not in chain:
        chain.append(deeper)
    for link in chain:
        for match in EXCEPTION_LINE.finditer(str(link)):
            if not match.group(1).startswith("ray."):
                return f"{match.group(1)}: {match.group(2)}"
    return f"{type(chain[-1]).__name__}: {chain[-1]}".strip().splitlines()[-1]


def work(fs: fsspec.AbstractFileSystem, out: str, config: JobConfig, run_id: str, started: datetime,
         checksum: str, inputs: preflight.Inputs, say: Callable[[str], None], clock: "Clock") -> RunRecord:
    """From the committed version to the next one: plan, compute what changed, commit."""
    pairs, pair_issues = inputs.pairs, inputs.pair_issues
    committed = versions.latest(fs, out)
    plan_settings, write_settings = stage_settings(config, checksum)
    splits = inputs.splits
    keys, given = scene_keys(inputs, plan_settings)
    # The same inputs as the committed version's, all of them read then and no tile failed: that
    # version is what this run would make. Its files are trusted by its commit, so the night reads
    # nothing of the dataset (no shard, no listing) and commits them again: O(1) requests.
    if (committed is not None and given is not None and committed.inputs == given and not committed.partial
            and not committed.counts.get("failed")):
        say(f"{len(pairs)} scenes, all with the file versions and settings of version {committed.version}: "
            "nothing to read or compute")
        record = unchanged(fs, out, config, run_id, started, committed)
        clock.lap("commit")
        return record

    index = incremental.read_index(fs, out)
    known = index.known_by_source(incremental.label_pngs(fs, out))
    say(f"{len(pairs)} scenes, {len(pair_issues)} inputs left out before planning (unpaired files, bad map "
        f"features); {sum(len(t) for t in index.tiles.values())} "
        f"tiles already on storage")
    parallelism = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))

    # Every scene the scene cache holds with the same file versions replays its outcome (tiles,
    # no tile, or a bad file) without a byte read. Other scenes with tiles already done are checked
    # cheaply (read, hash, plan; no pixels, no model). Only the scenes that changed, and new ones,
    # go through the full graph: so a night without changes never loads SAM or asks for a GPU.
    cache = scene_cache.read(fs, out)
    budget = StoreBudget()
    replayed = {p.name: scene_cache.replay(cache[keys[p.name]], known.get(p.image_uri, frozenset()), splits[p.name])
                for p in pairs if keys[p.name] in cache}
    unread = [p for p in pairs if p.name not in replayed]
    seen = [p for p in unread if p.image_uri in known]
    rows, changed = check_scenes(scene_items(seen, inputs, known, config.preset, parallelism), plan_settings, budget)
    changed |= {name for name, scene_rows in replayed.items() if any(r["status"] == Status.TODO for r in scene_rows)}
    rows += [row for name, scene_rows in replayed.items() if name not in changed for row in scene_rows]
    say(f"{len(replayed)} scenes with the same file versions as before (not read), {len(seen)} read to check")
    todo = [p for p in pairs if p.name in changed or (p.name not in replayed and p.image_uri not in known)]
    gpu_wait = None
    if todo:
        if config.gpus_per_actor:
            gpu_wait = wait_for_gpus(config.gpus_per_actor, config.gpu_wait_s, say)
        items = scene_items(todo, inputs, known, config.preset, parallelism)
        rows += run_graph(items, plan_settings, write_settings, config, checksum, Progress(len(todo), say), budget)
    if (why := budget.spent()) is not None:
        say(f"the store stopped serving: {why}; the scenes it did not give keep their committed tiles")
    scene_cache.write(fs, out, rows, keys)
    clock.lap("work")

    outcome = Outcome.of(rows, [error_row(i) for i in pair_issues])
    cluster = {"gpu_wait_s": gpu_wait, "stages": stage_nodes(outcome)}
    why = {r["scene"]: r["reason"] for r in rows if scene_cache.is_store_trouble(r)}
    not_given = {p.image_uri: (p.name, why[p.name]) for p in pairs if p.name in why}
    # a map run's raster whose header the store did not give is no scene of this run, yet its
    # committed tiles stay as a planned scene's do
    not_given |= {i.source: (stem(i.source), i.reason) for i in pair_issues if i.stage == Stage.STORE}
    rasters = inputs.maps.rasters if inputs.maps else {}
    stretched = {name: r.stretch_record() for name, r in rasters.items() if r.stretch.method != "none"}
    record = finish(fs, out, config, run_id, started, checksum, committed, index, outcome, len(pairs), cluster,
                    not_given, stretched, given or "", inputs.maps.items if inputs.maps else {})
    clock.lap("commit")
    return record


def scene_keys(inputs: preflight.Inputs, plan_settings: PlanSettings) -> tuple[dict[str, Optional[str]], Optional[str]]:
    """Each scene's scene_cache.scene_key, and the digest of all the run is given (RunRecord.inputs)."""
    keys = {p.name: scene_cache.scene_key(plan_settings, p, inputs.files, inputs.objects_digest(p.name))
            for p in inputs.pairs}
    left_out = [(i.source, i.line, i.reason) for i in inputs.pair_issues]
    return keys, scene_cache.inputs_digest(keys, inputs.splits, left_out)


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


def summary_text(record: RunRecord, clock: Clock) -> str:
    c = record.counts
    lines = [
        f"run {record.run_id} committed ({record.model['id']}) in {clock}",
        f"  scenes    {c['scenes_ok']} usable of {c['scenes']}",
        f"  tiles     {c['tiles']} in dataset: {c['processed']} processed, {c['skipped']} unchanged; "
        f"{c['failed']} failed, {c['removed']} removed, {c['empty_windows']} empty windows",
        f"  instances {c['instances']} (objects read {c['objects']}, in tiles {c['objects_in_tiles']})",
        f"  errors    {c['errors']} (see manifest/errors)" if c["errors"] else "  errors    none",
    ]
    if record.partial:  # and the exit code is 5 (cli.py), so that a cron job sees the night was partial
        lines.append(f"  partial   {len(record.partial)} scenes the store did not give, read again next run:")
        lines += [f"    {scene}: {what}" for scene, what in list(record.partial.items())[:PARTIAL_LINES]]
        if len(record.partial) > PARTIAL_LINES:
            lines.append(f"    ... and {len(record.partial) - PARTIAL_LINES} more in _run.json's 'partial'")
    return "\n".join(lines)


PARTIAL_LINES = 10  # scenes named in the summary; _run.json has them all
