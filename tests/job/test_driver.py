"""samrs_ray/job/driver.py's exit codes for outages against mistakes: a Ray address or an S3
endpoint where nothing answers is exit 4 (rerun once it is up), naming it, in bounded time; a
bucket that does not exist on a store that answers is exit 2 (the configuration)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from samrs_ray.cli import main
from samrs_ray.job.graph import wait_for_head
from tests import REPO
from tests.datasets import synthetic_scenes
from tests.seaweed import S3Server, free_ports


def generate(data: Path, out: str, *extra: str) -> list[str]:
    return ["generate", "--preset", "sota", "--model", "box", "--images", str(data / "images"),
            "--labels", str(data / "labelTxt"), "--out", out, *extra]


def test_a_ray_address_where_nothing_listens_is_an_outage_within_the_bound(tmp_path: Path) -> None:
    # a process of its own: in this one, another test's Ray may be up, and the job would use it
    synthetic_scenes(tmp_path / "data", 1)
    (port,) = free_ports(1)
    started = time.monotonic()
    ran = subprocess.run([sys.executable, "-m", "samrs_ray.cli", *generate(
        tmp_path / "data", str(tmp_path / "out"), "--address", f"127.0.0.1:{port}", "--ray-timeout", "3")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 4, ran.stderr[-2000:]
    assert time.monotonic() - started < 60
    assert f"127.0.0.1:{port}" in ran.stderr and "--ray-timeout" in ran.stderr
    assert not (tmp_path / "out" / "_versions").exists()


def test_wait_for_head_returns_once_the_port_answers() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        wait_for_head(f"ray://127.0.0.1:{server.getsockname()[1]}", 2)  # returns: no error
    wait_for_head("auto", 0.1)  # left to ray.init


def test_an_s3_endpoint_where_nothing_listens_is_an_outage(tmp_path: Path, capsys) -> None:
    synthetic_scenes(tmp_path / "data", 1)
    (port,) = free_ports(1)
    options = f'{{"endpoint_url": "http://127.0.0.1:{port}", "key": "k", "secret": "s"}}'
    code = main(generate(tmp_path / "data", "s3://nowhere/out", "--storage-options", options))
    assert code == 4
    err = capsys.readouterr().err
    assert f"the store at http://127.0.0.1:{port} does not answer" in err


@pytest.mark.slow
def test_a_bucket_that_does_not_exist_is_a_configuration_error(s3: S3Server, tmp_path: Path, capsys) -> None:
    synthetic_scenes(tmp_path / "data", 1)
    labels = s3.upload_dir(tmp_path / "data" / "labelTxt", f"driver-{uuid.uuid4().hex[:8]}/labelTxt")
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/images"
    code = main(["generate", "--preset", "sota", "--model", "box", "--images", missing, "--labels", labels,
                 "--out", str(tmp_path / "out"), "--storage-options", json.dumps(s3.storage_options)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--images {missing}" in err


@pytest.mark.slow
def test_no_usable_scene_is_exit_1_with_every_input_in_the_errors(tmp_path: Path, local_ray, capsys) -> None:
    synthetic_scenes(tmp_path / "data", 2)
    for image in (tmp_path / "data" / "images").iterdir():
        image.write_bytes(b"not an image")
    code = main(generate(tmp_path / "data", str(tmp_path / "out")))
    assert code == 1
    assert "no scene could be used" in capsys.readouterr().err
    from samrs_ray.dataset import manifest
    errors = manifest.read_dataset(str(tmp_path / "out"), "errors").to_pylist()
    assert sorted(Path(e["source_uri"]).name for e in errors) == ["S00000.png", "S00001.png"]
