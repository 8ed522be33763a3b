"""Real multi-node Ray clusters on this one machine, for the tests: several raylets on loopback
(`ray start --head` plus `ray start --address`), optionally with Ray's own fake autoscaler.

    with RayCluster(tmp_path) as cluster:
        cluster.start_head(num_cpus=0)
        worker = cluster.start_worker(num_cpus=1, num_gpus=1)
        subprocess.run([... "--address", cluster.address], env=cluster.env)

Every process a cluster starts is stopped when it exits: the `ray start --block` process groups,
and then any process still holding this cluster's GCS address (the raylets and workers that
Ray's fake autoscaler launched itself). Nothing is found by name, so a session's other Ray
(the in-process `ray.init()` of other tests) is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from tests.seaweed import free_ports

RAY = Path(sys.executable).parent / "ray"
UP_TIMEOUT_S = 120.0


def wait_for_job_agent(address: str, env: dict[str, str], timeout_s: float = UP_TIMEOUT_S) -> None:
    """Wait until the head at dashboard `address` takes a job. `ray start` returns before the
    head's dashboard agent has registered, and until it has, `ray job submit` fails with "No
    available agent to submit job" once Ray's own 10 s wait runs out (seen on a loaded CI box).
    A no-op submission is the check, because that is exactly what the test does next."""
    deadline = time.monotonic() + timeout_s
    while True:
        probe = subprocess.run([str(RAY), "job", "submit", "--address", address, "--", "true"],
                               env=env, capture_output=True, text=True, timeout=timeout_s)
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the Ray head at {address} took no job in {timeout_s:.0f} s:\n"
                                 + (probe.stdout + probe.stderr)[-3000:])
        time.sleep(1)


def ray_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment of every process of a test cluster and of its drivers, as a user's shell
    would have it after `source .venv/bin/activate`: this venv's `python` and `ray` first on PATH,
    and Ray's token authentication on (Ray 2.60 writes the token at the first start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "AWS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(Path.home() / ".ray" / "auth_token")
    env.update(extra or {})
    return env


def fake_autoscaling_config(gcs_port: int, head_cpus: int, gpu_node: dict[str, Any], max_gpu_nodes: int) -> dict:
    """An autoscaling cluster config for Ray's fake multi-node provider (the Ray wheel does not
    ship fake_multi_node/example.yaml): a head of `head_cpus` CPUs, and one worker type with
    `gpu_node` resources, from 0 to `max_gpu_nodes` nodes. The provider starts its raylets
    against gcs_address (otherwise port 6379)."""
    return {
        "cluster_name": "samrs-fake",
        "max_workers": max_gpu_nodes,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
            "ray.worker.gpu": {"resources": gpu_node, "node_config": {}, "min_workers": 0,
                               "max_workers": max_gpu_nodes},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.5, "docker": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
    }


class RayCluster:
    def __init__(self, workdir: Path, env: Optional[dict[str, str]] = None):
        self.workdir = workdir
        self.env = ray_env(env)
        self.gcs_port, self.dashboard_port = free_ports(2)
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # unix sockets need a short path
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "RayCluster":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        process = subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", *args], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def start_head(self, num_cpus: int, autoscaling: Optional[dict] = None) -> None:
        """The head, with its dashboard (`ray list`, `ray job submit` go through it)."""
        args = ["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.gcs_port),
                "--num-cpus", str(num_cpus), "--temp-dir", self.temp_dir, "--include-dashboard", "true",
                "--dashboard-port", str(self.dashboard_port), "--dashboard-host", "127.0.0.1"]
        env = dict(self.env)
        if autoscaling is not None:
            path = self.workdir / "autoscaling.json"
            path.write_text(json.dumps(autoscaling))
            args.append(f"--autoscaling-config={path}")
            env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        self._start("head", args, env)
        self.wait_nodes(1)

    def start_worker(self, name: str, num_cpus: int, num_gpus: int = 0, home: Optional[Path] = None) -> subprocess.Popen:
        """A worker raylet; `home` gives it its own HOME (its own ~/.cache, like a pod)."""
        env = dict(self.env)
        if home is not None:
            home.mkdir(parents=True, exist_ok=True)
            env["HOME"] = str(home)
        before = len(self.alive_nodes())
        process = self._start(name, ["--address", self.address, "--node-ip-address", "127.0.0.1",
                                     "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus)], env)
        self.wait_nodes(before + 1)
        return process

    def alive_nodes(self) -> list[dict[str, Any]]:
        """`ray list nodes` of the alive nodes: node_id, resources_total, is_head_node, ..."""
        listed = subprocess.run([str(RAY), "list", "nodes", "--address", self.address, "--format", "json",
                                 "--filter", "state=ALIVE", "--detail"],
                                env=self.env, capture_output=True, text=True, timeout=60)
        if listed.returncode != 0 or not listed.stdout.lstrip().startswith("["):
            return []  # not up yet ('No resource in the cluster')
        return json.loads(listed.stdout)

    def wait_nodes(self, count: int, timeout_s: float = UP_TIMEOUT_S) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            nodes = self.alive_nodes()
            if len(nodes) >= count:
                return nodes
            time.sleep(1)
        raise AssertionError(f"{count} Ray nodes did not come up in {timeout_s:.0f} s; head log:\n"
                             + (self.workdir / "head.log").read_text()[-3000:])

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL a node's whole process group, as when its pod dies."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """Processes still holding this cluster's GCS address or temp dir (fake autoscaler nodes)."""
        marks = (f"127.0.0.1:{self.gcs_port}", self.temp_dir)
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(mark in cmdline for mark in marks):
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
