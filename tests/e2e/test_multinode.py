"""The job on real multi-node Ray clusters on this machine (tests/raycluster.py):

- Ray's fake autoscaling cluster, a CPU-only head and a GPU node type with min 0: the job's
  declared GPU makes the autoscaler start the GPU node, the mask actors run there, and the
  fingerprints do not depend on which nodes were up;
- a KubeRay-shaped cluster (head with 0 CPUs, two worker raylets) with inputs, checkpoint and
  outputs on the SeaweedFS S3 server: the same dataset as a local run, a worker killed during
  the mask stage loses nothing, and GPUs the cluster can never give fail in bounded time.

The GPU nodes here are Ray's count only (a FAKE GPU: no CUDA on this machine), so tiny SAM (a
FAKE model with random weights, built from the real segment_anything modules) runs on their CPUs,
as the engine's fallback does on any node without CUDA.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest
import torch

from samrs_ray.dataset import manifest, storage, versions
from samrs_ray.masks.checkpoint import build_tiny_sam
from tests.datasets import dataset_rows, synthetic_scenes
from tests.raycluster import RayCluster, fake_autoscaling_config
from tests.seaweed import S3Server

pytestmark = pytest.mark.slow
SAMRS = Path(sys.executable).parent / "samrs-ray"
JOB_TIMEOUT_S = 900
# what differs between two datasets of the same inputs written to different places
LOCATION_COLUMNS = ("created_at", "source_uri", "label_source_uri", "image_uri", "label_uri", "color_uri")


def generate_command(images: str, labels: str, out: str, *extra: str, address: Optional[str] = None) -> list[str]:
    """`samrs-ray generate` with tiny SAM, as a user types it."""
    command = [str(SAMRS), "generate", "--preset", "sota", "--images", images, "--labels", labels, "--out", out,
               "--model", "sam", "--model-type", "tiny", "--dtype", "float32", *extra]
    return command + ["--address", address] if address else command


def generate(images: str, labels: str, out: str, env: dict[str, str], *extra: str,
             address: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run generate_command in a driver process of its own, to the end."""
    return subprocess.run(generate_command(images, labels, out, *extra, address=address), env=env,
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S)


def committed(out: str, storage_options: Optional[dict] = None) -> dict:
    """The committed _run.json of `out`, as a dict."""
    record = versions.latest(*storage.open_fs(out, storage_options))
    assert record is not None, f"nothing committed in {out}"
    return record.__dict__


def fingerprints(out: str, storage_options: Optional[dict] = None) -> dict[str, str]:
    tiles = manifest.read_dataset(out, "tiles", storage_options)
    return dict(zip(tiles.column("tile_id").to_pylist(), tiles.column("fingerprint").to_pylist()))


def same_dataset(a: str, b: str, a_options: Optional[dict] = None, b_options: Optional[dict] = None) -> None:
    for table in ("tiles", "instances"):
        assert dataset_rows(a, table, a_options, LOCATION_COLUMNS) == dataset_rows(b, table, b_options,
                                                                                  LOCATION_COLUMNS), table
    label_bytes = {}
    for out, options in ((a, a_options), (b, b_options)):
        fs, _ = storage.open_fs(out, options)
        uris = manifest.read_dataset(out, "tiles", options).column("label_uri").to_pylist()
        label_bytes[out] = sorted(hashlib.sha256(fs.cat_file(uri)).hexdigest() for uri in uris)
    assert label_bytes[a] == label_bytes[b]


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


# --- autoscaling from zero -------------------------------------------------------------------


def test_declared_gpu_brings_up_a_gpu_node_from_zero_and_the_masks_run_there(tmp_path: Path) -> None:
    data = tmp_path / "data"
    synthetic_scenes(data, 3)
    images, labels = str(data / "images"), str(data / "labelTxt")
    with RayCluster(tmp_path) as cluster:
        cluster.start_head(num_cpus=2, autoscaling=fake_autoscaling_config(
            cluster.gcs_port, head_cpus=2, gpu_node={"CPU": 2, "GPU": 1}, max_gpu_nodes=1))
        assert [n["resources_total"].get("GPU", 0) for n in cluster.alive_nodes()] == [0]
        head = cluster.alive_nodes()[0]["node_id"]

        out = str(tmp_path / "cluster")
        first = generate(images, labels, out, cluster.env, address=cluster.address)
        ok(first)
        gpu_nodes = {n["node_id"] for n in cluster.alive_nodes() if n["resources_total"].get("GPU", 0) >= 1}
        run = committed(out)
        # the GPU node came up for this run, and every tile's masks were made on it
        assert run["cluster"]["gpu_wait_s"] > 0
        assert gpu_nodes and head not in gpu_nodes
        assert set(run["cluster"]["stages"]["mask"]) <= gpu_nodes
        assert sum(run["cluster"]["stages"]["mask"].values()) == run["counts"]["processed"] == 3
        # the engine settings are the declared ones (a GPU run), not what was up at the start
        assert (run["config"]["gpus_per_actor"], run["config"]["prompt_chunk"]) == (1.0, 64)
        assert "torch finds no CUDA; SAM runs on the CPU" in first.stdout + first.stderr

        # now the GPU node is up: the same command recomputes nothing, and asks for no node
        again = generate(images, labels, out, cluster.env, address=cluster.address)
        ok(again)
        rerun = committed(out)
        assert (rerun["counts"]["processed"], rerun["counts"]["skipped"]) == (0, 3)
        assert rerun["cluster"]["gpu_wait_s"] is None
        cluster_fingerprints = fingerprints(out)

        # the other engines on the same cluster: their masks are made on the GPU node too
        for model in ("sam2", "hq-sam"):
            other = str(tmp_path / model)
            ok(generate(images, labels, other, cluster.env, "--model", model, address=cluster.address))
            engine_run = committed(other)
            assert engine_run["model"]["id"] == f"{model}-tiny" and engine_run["counts"]["processed"] == 3
            assert set(engine_run["cluster"]["stages"]["mask"]) <= gpu_nodes

    # the same inputs on the embedded local Ray (no GPU at all) with the same --dtype
    local = str(tmp_path / "local")
    ok(generate(images, labels, local, cluster.env))
    assert committed(local)["config"]["gpus_per_actor"] == 0.0
    same_dataset(out, local)
    assert fingerprints(local) == cluster_fingerprints
    print(f"first GPU node after {run['cluster']['gpu_wait_s']:.1f} s; stages {json.dumps(run['cluster']['stages'])}; "
          f"fingerprints {sorted(cluster_fingerprints.values())}")


# --- a KubeRay-shaped cluster on S3 ------------------------------------------------------------


@pytest.fixture(scope="module")
def kuberay_shaped(s3: S3Server, tmp_path_factory: pytest.TempPathFactory):
    """Head with --num-cpus 0 (as cluster/ runs it), two worker raylets with one (fake) GPU each
    and a HOME of their own, as pods have; every process has the S3 server's AWS_* variables."""
    workdir = tmp_path_factory.mktemp("kuberay-shaped")
    with RayCluster(workdir, env=s3.env) as cluster:
        cluster.start_head(num_cpus=0)
        workers = {name: (cluster.start_worker(name, num_cpus=1, num_gpus=1, home=workdir / name), workdir / name)
                   for name in ("worker-a", "worker-b")}
        yield cluster, workers


@pytest.fixture(scope="module")
def s3_inputs(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Six scenes and a tiny SAM checkpoint (random weights, saved as a state dict) on S3."""
    local = tmp_path_factory.mktemp("s3-inputs")
    synthetic_scenes(local / "data", 6)
    torch.save(build_tiny_sam().state_dict(), local / "sam_tiny.pth")
    prefix = f"multinode-{uuid.uuid4().hex[:8]}"
    s3.filesystem().put_file(str(local / "sam_tiny.pth"), f"{s3.bucket}/{prefix}/sam_tiny.pth")
    return {"images": s3.upload_dir(local / "data" / "images", f"{prefix}/images"),
            "labels": s3.upload_dir(local / "data" / "labelTxt", f"{prefix}/labelTxt"),
            "checkpoint": s3.uri(f"{prefix}/sam_tiny.pth"), "prefix": prefix}


def test_gpus_the_cluster_can_never_give_fail_in_bounded_time(kuberay_shaped, s3: S3Server, s3_inputs) -> None:
    cluster, _ = kuberay_shaped
    started = time.monotonic()
    result = generate(s3_inputs["images"], s3_inputs["labels"], s3.uri(f"{s3_inputs['prefix']}/never"),
                      cluster.env, "--gpus-per-actor", "2", "--checkpoint", s3_inputs["checkpoint"],
                      address=cluster.address)
    seconds = time.monotonic() - started
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "asks for 2 GPU" in result.stderr and "--gpus-per-actor 0" in result.stderr
    assert seconds < 120
    fs = s3.filesystem()
    fs.invalidate_cache()
    assert not fs.exists(f"{s3.bucket}/{s3_inputs['prefix']}/never/_run.json")


def test_kuberay_shaped_cluster_on_s3_survives_a_killed_worker(kuberay_shaped, s3: S3Server, s3_inputs,
                                                               tmp_path: Path) -> None:
    cluster, workers = kuberay_shaped
    out = s3.uri(f"{s3_inputs['prefix']}/out")
    args = (s3_inputs["images"], s3_inputs["labels"], out, cluster.env, "--checkpoint", s3_inputs["checkpoint"])
    driver = subprocess.Popen(
        generate_command(*args[:3], "--checkpoint", s3_inputs["checkpoint"], address=cluster.address),
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # kill the first worker whose mask actor has fetched the checkpoint (its pod dies mid-stage)
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline and driver.poll() is None:
        for name, (process, home) in workers.items():
            if list((home / ".cache" / "samrs-ray").glob("*sam_tiny.pth")):
                victim = name
                time.sleep(2)
                cluster.kill(process)
                break
        time.sleep(0.5)
    assert victim, "no worker fetched the checkpoint"
    output, _ = driver.communicate(timeout=JOB_TIMEOUT_S)
    first_rc = driver.returncode

    # either it committed (Ray restarted the actor elsewhere) or it failed clearly; the next run completes
    if first_rc != 0:
        assert "Traceback" not in output.splitlines()[-1], output[-3000:]
    rerun = generate(*args, address=cluster.address)
    ok(rerun)

    run = committed(out, s3.storage_options)
    tiles = manifest.read_dataset(out, "tiles", s3.storage_options).column("tile_id").to_pylist()
    assert len(tiles) == len(set(tiles)) == 6  # no tile twice, none lost
    assert run["counts"]["scenes"] == run["counts"]["scenes_ok"] == 6
    assert run["counts"]["instances"] == run["counts"]["objects_in_tiles"] == 18
    survivor = next(home for name, (_, home) in workers.items() if name != victim)
    # each node fetched the checkpoint once at most, into its own cache (the survivor none when the
    # victim finished every mask before it died and the rerun had nothing to compute)
    assert len(list((survivor / ".cache" / "samrs-ray").glob("*sam_tiny.pth"))) <= 1

    # the same dataset as a local run of the same inputs and checkpoint
    local = str(tmp_path / "local")
    ok(generate(*args[:2], local, cluster.env, "--checkpoint", s3_inputs["checkpoint"]))
    same_dataset(out, local, s3.storage_options, None)
    history = versions.history(*storage.open_fs(out, s3.storage_options))
    head = next(n["node_id"] for n in cluster.alive_nodes() if n["is_head_node"])
    computed = [r for r in history if r.counts["processed"]]
    assert all(head not in r.cluster["stages"]["mask"] for r in computed)  # the head has no CPUs for it
    print(f"killed {victim}: first run exit {first_rc}; stages of the runs that computed tiles: "
          f"{[r.cluster['stages'] for r in computed]}")
