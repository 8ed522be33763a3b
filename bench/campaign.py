"""The campaign (issue 23): faults at random, many times, against the dataset's promises.

    .venv/bin/python -m bench.campaign --runs 200 --seed 0      # from the repository root

SeaweedFS, the fault proxy (tests/faultproxy.py) and a local Ray cluster start once. Each run is
an iteration: the inputs on S3 change (seeded: a label edited, a scene added, deleted, without
objects, with a truncated image, new pixels); a faulty `samrs-ray generate --address` subprocess
meets S3 faults at random rates through the proxy, sometimes a 503 on one scene's file (always,
or N times), sometimes a SIGKILL of its driver or of a busy Ray worker; a fault-free run follows.
After each run the invariant is checked through the direct endpoint (bench/campaign_checks.py);
the fault-free run must also exit 0 with what a clean run of the same inputs into a fresh local
folder gives, and leave nothing behind. The inputs follow from --seed alone, so `--seed S --runs
I+1` replays a failing run I's inputs (which request meets a fault depends on timing). Failures
go to <workdir>/failures.json with the logs of their runs. Exit 1 if any check failed.

`--maps` runs the same campaign as map runs (`--label-format vector`): the scenes are GeoTIFFs and
their boxes one GeoJSON layer in lon/lat (bench/campaign_maps.py); the targeted 503 hits a raster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import fsspec
import numpy as np
from PIL import Image

from bench import campaign_maps
from bench.campaign_checks import Invariant, content, difference, sha
from tests.datasets import write_scene
from tests.faultproxy import KINDS, FaultProxy, FaultRates
from tests.raycluster import RAY, RayCluster
from tests.seaweed import S3Server, SeaweedS3

SIZES, CLASSES = (128, 192, 256), ("small-vehicle", "plane", "ship", "storage-tank")
# killed runs' leases expire within the campaign (900 s by default), so their left-overs are checked too
LEASE_EXPIRY_S = 60.0
NOT_WORKERS = ("ray::IDLE", "ray::DashboardAgent", "ray::RuntimeEnvAgent")
RUN_ARGS = ["--preset", "sota", "--model", "box", "--tile-size", "128", "--gap", "32", "--shard-tiles", "8"]
FOLDERS = {False: ("images", "labelTxt"), True: ("rasters", "layers")}  # --images, --labels; by --maps


@dataclass
class Run:
    code: Any  # exit status; -9 when SIGKILLed; "timeout"
    seconds: float
    run_id: str
    log: Path


@dataclass
class Report:
    mutations: list[str]
    plan: str = ""
    runs: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


class Campaign:
    """One S3 server, proxy and Ray cluster for many iterations (`iteration(i)`)."""

    def __init__(self, workdir: Path, seed: int = 0, s3: Optional[S3Server] = None, scenes: int = 8,
                 run_timeout_s: float = 300.0, maps: bool = False):
        self.workdir, self.seed, self.s3, self.n_scenes, self.timeout_s = workdir, seed, s3, scenes, run_timeout_s
        self.maps = maps
        self.faults: Counter[str] = Counter()
        self.exits: dict[str, Counter] = defaultdict(Counter)
        self.counts: Counter[str] = Counter()  # failures by check
        self.failures: list[dict] = []
        self.refs: dict[str, tuple] = {}
        self.uploaded: dict[str, str] = {}  # inputs: relative path: sha256
        self.durations: list[float] = []
        self.next_scene = 0
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> "Campaign":
        with self.stack:
            if self.s3 is None:
                self.s3 = self.stack.enter_context(SeaweedS3(self.workdir / "weed"))
            self.fs = self.s3.filesystem()
            self.proxy = FaultProxy(self.s3)
            proxied = self.stack.enter_context(self.proxy)
            # the cluster's workers read and write S3 with its environment: through the proxy
            env = {**proxied.env, "SAMRS_RAY_LEASE_EXPIRY_S": str(LEASE_EXPIRY_S)}
            self.cluster = self.stack.enter_context(RayCluster(self.workdir, env=env))
            subprocess.run([str(RAY), "get-auth-token", "--generate"], env=self.cluster.env, capture_output=True)
            self.cluster.start_head(num_cpus=2)
            self.root = f"{self.s3.bucket}/campaign-{self.seed}-{uuid.uuid4().hex[:6]}"
            self.out, self.inputs = f"{self.root}/out", self.workdir / "inputs"
            self.invariant = Invariant(self.fs, self.out, LEASE_EXPIRY_S)
            (self.workdir / "logs").mkdir(exist_ok=True)
            rng = random.Random(f"{self.seed}/initial")
            for _ in range(self.n_scenes):
                self.new_scene(rng, rng.randint(1, 4))
            self.sync()
            first = self.run(f"s3://{self.out}", "initial")
            failures = self.after_run(first, None, self.snapshot(), "initial")
            if first.code != 0 or failures:
                raise RuntimeError(f"the first run did not commit cleanly: {failures} ({first.log})")
            self.stack = self.stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stack.close()

    def new_scene(self, rng: random.Random, objects: int, corrupt: bool = False) -> str:
        name, size = f"S{self.next_scene:05d}", rng.choice(SIZES)
        self.next_scene += 1
        boxes = [box(rng, size) for _ in range(objects)]
        write_scene(self.inputs, name, (size, size), boxes, seed=rng.randrange(1 << 30))
        if corrupt:  # a truncated PNG, as an upload cut short leaves it
            image = self.inputs / "images" / f"{name}.png"
            image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
        return name

    def mutate(self, rng: random.Random) -> list[str]:
        done = []
        for _ in range(rng.choice((1, 1, 2))):
            names = sorted(p.stem for p in (self.inputs / "labelTxt").glob("*.txt"))
            ops = ["edit label", "new pixels"] + ["add", "add empty", "add corrupt"] * (len(names) < 10)
            op = rng.choice(ops + ["delete"] * (len(names) > 4))
            if op.startswith("add"):
                name = self.new_scene(rng, 0 if op == "add empty" else rng.randint(1, 4), op == "add corrupt")
                done.append(f"{op} {name}")
                continue
            name = rng.choice(names)
            label, image = self.inputs / "labelTxt" / f"{name}.txt", self.inputs / "images" / f"{name}.png"
            with Image.open(image) as opened:  # the header is enough, even of a truncated PNG
                size = opened.size[0]
            if op == "delete":
                label.unlink()
                image.unlink()
            elif op == "edit label":
                lines = label.read_text().splitlines()
                if len(lines) > 1 and rng.random() < 0.5:
                    lines.pop(rng.randrange(len(lines)))
                else:
                    cls, x0, y0, x1, y1 = box(rng, size)
                    lines.append(f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1} {cls} 0")
                label.write_text("\n".join(lines) + "\n")
            else:
                pixels = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 255, (size, size, 3), np.uint8)
                Image.fromarray(pixels).save(image)
            done.append(f"{op} {name}")
        return done

    def snapshot(self) -> dict[str, tuple]:
        """{scene: (image sha256, label file sha256)} of the local inputs (a map run's are made of them)."""
        files: dict[str, dict[str, str]] = defaultdict(dict)
        for path in self.inputs.rglob("*"):
            if path.is_file():
                files[path.stem][path.parent.name] = sha(path.read_bytes())
        return {scene: (f.get("images"), f.get("labelTxt")) for scene, f in files.items()}

    def sync(self) -> None:
        """The local inputs onto S3 (rendered as a map run's with --maps), through the direct
        endpoint (only what changed)."""
        source = self.inputs
        if self.maps:
            source = self.workdir / "map-inputs"
            campaign_maps.render(self.inputs, source)
        now = {p.relative_to(source).as_posix(): sha(p.read_bytes()) for p in source.rglob("*") if p.is_file()}
        for rel, digest in sorted(now.items()):
            if self.uploaded.get(rel) != digest:
                self.fs.pipe_file(f"{self.root}/{rel}", (source / rel).read_bytes())
        for rel in sorted(set(self.uploaded) - set(now)):
            self.fs.rm_file(f"{self.root}/{rel}")
        self.uploaded = now
        self.fs.invalidate_cache()

    def run(self, out: str, name: str, kill: Optional[tuple[str, float]] = None) -> Run:
        log = self.workdir / "logs" / f"{name}.log"
        images, labels = FOLDERS[self.maps]
        command = [str(RAY.parent / "samrs-ray"), "generate", *RUN_ARGS, "--images", f"s3://{self.root}/{images}",
                   "--labels", f"s3://{self.root}/{labels}", "--out", out, "--address", self.cluster.address]
        command += ["--label-format", "vector"] if self.maps else []
        start = time.monotonic()
        with open(log, "w") as sink:
            process = subprocess.Popen(command, env=self.cluster.env, stdout=sink, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            if kill:
                self.kill(process, kill[0], start + kill[1], start + self.timeout_s)
            try:
                code = process.wait(timeout=max(1.0, start + self.timeout_s - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = "timeout"
        found = re.search(r"samrs-ray run (\S+):", log.read_text(errors="replace"))
        return Run(code, time.monotonic() - start, found.group(1) if found else "", log)

    def kill(self, process: subprocess.Popen, what: str, at: float, deadline: float) -> None:
        """SIGKILL the driver at `at`, or from then on the first busy Ray worker of the cluster."""
        while process.poll() is None and time.monotonic() < at:
            time.sleep(0.05)
        while process.poll() is None and time.monotonic() < deadline:
            busy = [process.pid] if what == "driver" else ray_workers({p.pid for p in self.cluster.processes})
            if busy:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(random.Random(at).choice(busy), signal.SIGKILL)
                    self.faults[f"{what} kill"] += 1
                return
            time.sleep(0.1)

    def iteration(self, index: int) -> Report:
        rng = random.Random(f"{self.seed}/{index}")
        report = Report(self.mutate(rng))
        self.sync()
        inputs, before = self.snapshot(), self.invariant.latest()
        level = rng.choice((0.005, 0.02, 0.05, 0.15))
        rates = FaultRates(**{k: rng.uniform(0, level) * (rng.random() < 0.6) for k in KINDS},
                           slow_s=rng.uniform(0.2, 2.0))
        report.plan = str(rates)
        self.proxy.configure(rates, seed=rng.randrange(1 << 32))
        no_cache = rng.random() < 0.3  # then a run reads unchanged scenes too (README: only slower)
        if no_cache:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(f"{self.out}/_cache", recursive=True)
            report.plan += " no scene cache"
        if rng.random() < 0.3:  # one scene's file refused (every time, or N times): a scene the run reads
            changed = sorted(s for s in inputs if inputs[s] != self.invariant.snapshots[before].get(s))
            scene, times = rng.choice(changed if changed and not no_cache else sorted(inputs)), rng.randint(1, 60)
            times = rng.choice((None, None, times))  # s3fs and botocore try a GET 25 times; the job 3 times that
            folder = rng.choice(("images/", "labelTxt/")) if not self.maps else "rasters/"  # not the one layer
            pattern = f"{self.root}/{folder}{scene}.*"
            self.proxy.target("GET", pattern, "slow_down", times)
            report.plan += f" 503x{times or 'always'} {pattern.rsplit('/', 2)[-2]}/{scene}"
        what, moment = rng.choices(("driver", "worker", None), (0.25, 0.15, 0.6))[0], rng.random()
        typical = statistics.median(self.durations[-5:]) if self.durations else 10.0
        kill = (what, 0.5 + moment * typical) if what else None
        report.plan += f" kill {what} at {kill[1]:.1f} s" if kill else ""
        injected = Counter(self.proxy.injected)
        faulty = self.run(f"s3://{self.out}", f"{index:04d}-faulty", kill)
        self.proxy.configure(FaultRates())
        self.proxy.clear_targets()
        self.proxy.requests.clear()
        self.faults.update(self.proxy.injected - injected)
        if not kill:
            self.durations.append(faulty.seconds)
        report.failures += self.after_run(faulty, before, inputs, "faulty")
        middle, since = self.invariant.latest(), time.time()
        clean = self.run(f"s3://{self.out}", f"{index:04d}-fault-free")
        report.failures += self.after_run(clean, middle, inputs, "fault-free")
        report.failures += self.converged(clean)
        report.failures += [self.fail(*f) for f in self.invariant.leftovers(since, clean.run_id)]
        report.failures += [self.fail(*f) for f in self.invariant.unpublished()]
        report.runs = [f"faulty exit {faulty.code} in {faulty.seconds:.1f} s",
                       f"fault-free exit {clean.code} in {clean.seconds:.1f} s"]
        for failure in report.failures:
            failure.update(seed=self.seed, run=index, mutations=report.mutations, plan=report.plan,
                           logs=[str(faulty.log), str(clean.log)])
        self.failures += report.failures
        return report

    def after_run(self, run: Run, before: Optional[int], inputs: dict, which: str) -> list[dict]:
        self.exits[which][run.code] += 1
        return [self.fail(*f) for f in self.invariant.after_run(run.run_id, run.code, before, inputs, which)]

    def converged(self, clean: Run) -> list[dict]:
        if clean.code != 0:
            return [self.fail("diverged", f"the fault-free run exited {clean.code} ({clean.log})")]
        digest = sha(json.dumps(sorted(self.uploaded.items())).encode())[:16]
        if digest not in self.refs:
            out = self.workdir / "refs" / digest
            reference = self.run(str(out), f"ref-{digest}")
            if reference.code != 0:
                return [self.fail("diverged", f"the reference run exited {reference.code} ({reference.log})")]
            self.refs[digest] = content(fsspec.filesystem("file"), str(out))
        got, want = content(self.fs, self.out), self.refs[digest]
        return [] if got == want else [self.fail("diverged", difference(got, want))]

    def fail(self, check: str, detail: str) -> dict:
        self.counts[check] += 1
        return {"check": check, "detail": detail}

    def table(self) -> str:
        lines = ["faults injected, by kind"]
        lines += [f"  {kind:<24}{self.faults[kind]:>6}" for kind in (*KINDS, "driver kill", "worker kill")]
        lines.append("runs ended, by exit code")
        for which, codes in self.exits.items():
            lines.append(f"  {which:<24}" + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items(), key=str)))
        lines += [f"versions damaged (must be 0)            {len(self.invariant.damaged):>6}",
                  f"runs that lost a committed tile (0)     {self.counts['lost']:>6}",
                  f"exit codes that contradict the store    {self.counts['dishonest']:>6}",
                  f"convergence failures                    {self.counts['diverged']:>6}",
                  f"fault-free runs left unpublished (0)    {self.counts['delta']:>6}",
                  f"temp files left                         {len(self.invariant.left):>6}"]
        return "\n".join(lines)


def box(rng: random.Random, size: int) -> tuple[str, int, int, int, int]:
    x0, y0, w, h = rng.randrange(size - 30), rng.randrange(size - 30), rng.randrange(8, 28), rng.randrange(8, 28)
    return rng.choice(CLASSES), x0, y0, x0 + w, y0 + h


def ray_workers(roots: set[int]) -> list[int]:
    """Busy Ray workers below `roots`: cmdline 'ray::<task or actor>'. Not idle ones, and not the
    node's agents: the raylet dies with them (fate sharing), a node death, not a worker's."""
    children, commands = defaultdict(list), {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            commands[int(entry)] = command.decode(errors="replace")
        except OSError:
            continue
        children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    found, todo = [], list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            todo.append(child)
            if commands[child].startswith("ray::") and not commands[child].startswith(NOT_WORKERS):
                found.append(child)
    return sorted(found)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="iterations (a faulty and a fault-free run each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes", type=int, default=8, help="scenes at the start")
    parser.add_argument("--workdir", help="where logs, inputs and S3 data go (default: a new /tmp folder)")
    parser.add_argument("--maps", action="store_true", help="map runs: GeoTIFF scenes and a GeoJSON layer")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="samrs-campaign-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"campaign: {args.runs} runs, seed {args.seed}, in {workdir}", flush=True)
    started = time.monotonic()
    with Campaign(workdir, args.seed, scenes=args.scenes, maps=args.maps) as campaign:
        try:
            for index in range(args.runs):
                began = time.monotonic()
                report = campaign.iteration(index)
                verdict = "; ".join(f"{f['check']}: {f['detail']}" for f in report.failures) or "ok"
                print(f"[{index + 1}/{args.runs}] seed {args.seed} run {index} ({time.monotonic() - began:.0f} s): "
                      f"{', '.join(report.mutations)} | faults: {report.plan or 'none'} | {'; '.join(report.runs)} "
                      f"| {verdict}", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        (workdir / "failures.json").write_text(json.dumps(campaign.failures, indent=1, default=str))
        print(f"\n{campaign.table()}\n{time.monotonic() - started:.0f} s in all; failures: "
              f"{workdir / 'failures.json'}", flush=True)
        return 1 if campaign.failures else 0


if __name__ == "__main__":
    sys.exit(main())
