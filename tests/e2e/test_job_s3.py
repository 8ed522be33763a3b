"""The job against a real S3 server (SeaweedFS on loopback): in-process with storage options,
and as a Ray job (`ray start --head` + `ray job submit jobs/generate.py`) with only the
standard AWS environment variables."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from samrs_ray.dataset import manifest
from samrs_ray.job import generate
from tests import REPO
from tests.datasets import config, dataset_rows, local_path
from tests.raycluster import wait_for_job_agent
from tests.seaweed import CountingProxy, S3Server, free_ports

pytestmark = pytest.mark.slow
RAY = Path(sys.executable).parent / "ray"


def upload_dota(s3: S3Server, realsamples: Path, prefix: str) -> tuple[str, str]:
    images = s3.upload_dir(realsamples / "dota" / "images", f"{prefix}/images")
    labels = s3.upload_dir(realsamples / "dota" / "labelTxt", f"{prefix}/labelTxt")
    return images, labels


def test_generate_reads_and_writes_s3(s3: S3Server, realsamples: Path, tmp_path: Path, local_ray) -> None:
    prefix = f"job-{uuid.uuid4().hex[:8]}"
    images, labels = upload_dota(s3, realsamples, prefix)
    out = s3.uri(f"{prefix}/out")
    record = generate(config(images, labels, out, storage_options=s3.storage_options), say=lambda _: None)
    assert (record.counts["tiles"], record.counts["instances"], record.counts["errors"]) == (3, 213, 5)

    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.invalidate_cache()
    root = f"{s3.bucket}/{prefix}/out"
    run_json = fs.cat_file(f"{root}/_run.json")
    assert s3.secret_key.encode() not in run_json and s3.access_key.encode() not in run_json
    tiles = {t["tile_id"]: t for t in manifest.read_dataset(out, "tiles", s3.storage_options).to_pylist()}
    label = np.array(Image.open(io.BytesIO(fs.cat_file(tiles["P1888__1024__0___0"]["label_uri"]))))
    assert label.shape == (1024, 1024)

    # the same dataset as a local run of the same inputs
    local = tmp_path / "local"
    dota = realsamples / "dota"
    generate(config(dota / "images", dota / "labelTxt", local), say=lambda _: None)
    drop = ("created_at", "source_uri", "label_source_uri", "image_uri", "label_uri", "color_uri")
    assert dataset_rows(out, "tiles", s3.storage_options, drop) == dataset_rows(str(local), "tiles", None, drop)
    assert dataset_rows(out, "instances", s3.storage_options, drop) == dataset_rows(str(local), "instances", None, drop)
    (local_tile,) = [t for t in manifest.read_dataset(str(local), "tiles").to_pylist() if t["tile_id"] == "P1888__1024__0___0"]
    assert label.tobytes() == np.array(Image.open(local_path(local_tile["label_uri"]))).tobytes()

    again = generate(config(images, labels, out, storage_options=s3.storage_options), say=lambda _: None)
    assert (again.counts["processed"], again.counts["skipped"]) == (0, 3)


def test_an_unchanged_rerun_on_s3_reads_no_input(s3: S3Server, realsamples: Path, local_ray) -> None:
    """Every request of two runs goes through a counting proxy: the first reads each scene's image
    and label file, an unchanged rerun lists them and reads none (the scene cache, by ETag)."""
    prefix = f"reads-{uuid.uuid4().hex[:8]}"
    images, labels = upload_dota(s3, realsamples, prefix)
    proxy = CountingProxy(s3)
    with proxy as counted:
        run = lambda: generate(config(images, labels, counted.uri(f"{prefix}/out"),  # noqa: E731
                                      storage_options=counted.storage_options), say=lambda _: None)
        first = run()
        inputs = f"{s3.bucket}/{prefix}/images/", f"{s3.bucket}/{prefix}/labelTxt/"
        assert sorted(set(proxy.reads(inputs[0]))) == [f"/{inputs[0]}P0004.png", f"/{inputs[0]}P1888.png"]
        proxy.requests.clear()
        again = run()
    assert (first.counts["processed"], again.counts["processed"], again.counts["skipped"]) == (3, 0, 3)
    assert proxy.reads(inputs[0]) == [] and proxy.reads(inputs[1]) == []
    assert again.counts["errors"] == first.counts["errors"] == 5


@pytest.fixture()
def ray_head(s3: S3Server, tmp_path: Path):
    """A Ray head on loopback whose processes have the AWS_* variables of the S3 server (as pods
    get them from a Secret). Stopped by signalling its `ray start --block`."""
    gcs, dashboard, agent, agent_grpc, runtime_env, metrics, client = free_ports(7)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    env.update(s3.env)
    # Ray's token authentication, as on a real cluster: `ray start` writes a token to
    # ~/.ray/auth_token and the job CLI presents it.
    env["RAY_AUTH_MODE"] = "token"
    # the entrypoint's `python` is this environment's, as it is the image's in a pod
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
               "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
               "--ray-client-server-port", str(client), "--num-cpus", "2", "--disable-usage-stats",
               "--temp-dir", tempfile.mkdtemp(prefix="ray", dir="/tmp")]  # unix sockets need a short path
    log = open(tmp_path / "ray-head.log", "wb")
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready = subprocess.run([str(RAY), "job", "list", "--address", address], env=env, capture_output=True)
        if ready.returncode == 0:
            break
        assert head.poll() is None, (tmp_path / "ray-head.log").read_text()[-3000:]
        time.sleep(1)
    else:
        raise AssertionError("the Ray head did not come up: " + (tmp_path / "ray-head.log").read_text()[-3000:])
    wait_for_job_agent(address, env)
    yield address, env
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    log.close()


def test_ray_job_submit(ray_head, s3: S3Server, realsamples: Path) -> None:
    address, env = ray_head
    prefix = f"submit-{uuid.uuid4().hex[:8]}"
    images, labels = upload_dota(s3, realsamples, prefix)
    out = s3.uri(f"{prefix}/out")
    submitted = subprocess.run(
        [str(RAY), "job", "submit", "--address", address, "--runtime-env", "jobs/runtime_env.yaml", "--",
         "python", "jobs/generate.py", "--preset", "sota", "--images", images, "--labels", labels,
         "--out", out, "--model", "box"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "committed" in submitted.stdout  # the job's one-screen summary reaches the submitter
    assert s3.secret_key not in submitted.stdout + submitted.stderr

    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.invalidate_cache()
    record = json.loads(fs.cat_file(f"{s3.bucket}/{prefix}/out/_run.json"))
    assert (record["counts"]["tiles"], record["counts"]["instances"]) == (3, 213)
    tiles = manifest.read_dataset(out, "tiles", s3.storage_options)
    assert tiles.num_rows == 3
    assert all(fs.exists(uri) for uri in tiles.column("label_uri").to_pylist())

    # the other engines through the same submission path (FAKE tiny models, random weights)
    for model in ("sam2", "hq-sam"):
        submitted = subprocess.run(
            [str(RAY), "job", "submit", "--address", address, "--runtime-env", "jobs/runtime_env.yaml", "--",
             "python", "jobs/generate.py", "--preset", "sota", "--images", images, "--labels", labels,
             "--out", f"{out}-{model}", "--model", model, "--model-type", "tiny", "--gpus-per-actor", "0"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        record = json.loads(fs.cat_file(f"{s3.bucket}/{prefix}/out-{model}/_run.json"))
        assert record["model"]["id"] == f"{model}-tiny" and record["counts"]["instances"] == 213


def test_an_unchanged_night_costs_the_output_store_the_same_at_any_size(s3: S3Server, tmp_path: Path,
                                                                        local_ray) -> None:
    """Every request to the output goes through a counting proxy (the inputs are local): an
    unchanged night over 2,000 tiles makes the requests one over 100 tiles makes, by method."""
    from tests.datasets import synthetic_scenes

    proxy = CountingProxy(s3)
    nights = {}
    with proxy as counted:
        for scenes in (100, 2000):
            data = tmp_path / f"data-{scenes}"
            synthetic_scenes(data, scenes, size=64, objects=2)
            out = counted.uri(f"night-{uuid.uuid4().hex[:6]}-{scenes}")
            night = config(data / "images", data / "labelTxt", out, preset_changes={"tile_size": None},
                           shard_tiles=100, storage_options=counted.storage_options)
            first = generate(night, say=lambda _: None)
            assert first.counts["tiles"] == scenes
            proxy.requests.clear()
            again = generate(night, say=lambda _: None)
            assert (again.counts["processed"], again.counts["skipped"]) == (0, scenes)
            nights[scenes] = sorted(method for method, _ in proxy.requests)
    assert nights[100] == nights[2000]
    assert len(nights[2000]) < 60, nights[2000]  # a handful per table, not per shard or tile
