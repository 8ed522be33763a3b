"""What a run asks of the Ray cluster, and waiting until the cluster can give it.

A run declares its mask actors' GPUs (`JobConfig.gpus_per_actor`); it never decides from which
nodes happen to be up. On an autoscaling cluster (KubeRay with a GPU group of minReplicas 0, or
Ray's own autoscaler) no GPU node exists when the run starts: the driver shows the autoscaler a
demand for one GPU bundle (a placement group), waits until a node that has it is alive, and
releases the demand, so the mask actors then get that node and the autoscaler gives it back
when it idles after the run. A cluster that can never provide the GPUs fails in bounded time
with a message that names the CPU-only flag, instead of hanging with pending actors.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Optional

import ray
from ray.util.placement_group import placement_group, remove_placement_group

from samrs_ray.errors import ConfigError

CPU_ONLY_HINT = "for a cluster without GPUs, pass --gpus-per-actor 0 (SAM then runs on CPU workers)"
POLL_S = 1.0
# Ray's autoscaler v1 (as `ray start --autoscaling-config` and KubeRay's in-tree autoscaler run it)
# publishes its state under this key every few seconds; a cluster without an autoscaler never
# does. (Autoscaler v2 keeps its state elsewhere: there only the --gpu-wait bound applies.)
AUTOSCALER_STATUS_KEY = b"__autoscaling_status"
# An autoscaler that can start a GPU node starts launching within an update or two (5 s each).
NO_LAUNCH_GRACE_S = 30.0


def gpu_nodes(gpus: float) -> list[str]:
    """Ids of the alive nodes with at least `gpus` GPUs (in total, busy or not)."""
    return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) >= gpus]


def autoscaler_status() -> Optional[dict]:
    """The v1 autoscaler's last published status, or None when it has published none."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(AUTOSCALER_STATUS_KEY)
    return json.loads(raw) if raw else None


def launching(status: dict) -> bool:
    """Whether the autoscaler is starting nodes (launches requested, or nodes not yet joined)."""
    report = status.get("autoscaler_report") or {}
    return bool(report.get("pending_launches") or report.get("pending_nodes"))


def autoscaler_v2() -> bool:
    from ray.autoscaler.v2.utils import is_autoscaler_v2

    try:
        return is_autoscaler_v2()
    except Exception:  # older or newer Ray without the check: assume v1, whose signals are read below
        return False


def wait_for_gpus(gpus: float, timeout_s: float, say: Callable[[str], None] = print) -> float:
    """Block until a node with `gpus` GPUs is alive; returns the seconds waited (0 when one is).

    Raises ConfigError after `timeout_s`, or sooner (about 30 s) when a v1 autoscaler cluster
    shows that no GPU node is coming: no autoscaler runs, or it launches nothing for the demand
    (it has no node type with GPUs, or the GPU group is at its maximum).
    """
    if gpu_nodes(gpus):
        return 0.0
    say(f"no GPU node is up yet: asking the autoscaler for one (waiting up to {timeout_s:.0f} s)")
    started = last_launch = time.monotonic()
    watch_v1 = not autoscaler_v2()
    demand = placement_group([{"GPU": gpus}], name="samrs-ray-gpu-demand")
    try:
        while not gpu_nodes(gpus):
            now = time.monotonic()
            status = autoscaler_status() if watch_v1 else None
            if status is not None and launching(status):
                last_launch = now
            if watch_v1 and now - last_launch > NO_LAUNCH_GRACE_S:
                why = "no autoscaler runs" if status is None else "its autoscaler started no GPU node"
                raise ConfigError(f"each mask actor asks for {gpus:g} GPU; the cluster has no GPU node and {why} "
                                  f"in {now - started:.0f} s (no node type with GPUs, or the GPU group is at its "
                                  f"maximum); {CPU_ONLY_HINT}")
            if now - started > timeout_s:
                raise ConfigError(f"each mask actor asks for {gpus:g} GPU, and no GPU node came up within "
                                  f"{timeout_s:.0f} s (--gpu-wait); {CPU_ONLY_HINT}")
            time.sleep(POLL_S)
    finally:
        remove_placement_group(demand)
    waited = time.monotonic() - started
    say(f"GPU node up after {waited:.1f} s")
    return waited
