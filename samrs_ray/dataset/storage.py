"""Reading and writing bytes on any fsspec filesystem, with writes a reader never sees half done."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import ssl
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Optional, Protocol, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from samrs_ray.errors import StoreError

T = TypeVar("T")


# One retry policy for S3, owned here (README, "When the store fails"): botocore's standard mode
# makes 3 attempts of each request, with bounded waits for a connection and for each read;
# s3fs's own retry loop is turned off, as it would multiply botocore's attempts (5 x 5 in their
# defaults); with_retries makes 3 tries of that for a file; and the run's budget (use_budget)
# stops every read once the store has stopped serving. Options the user gives win.
S3_CLIENT_CONFIG = {"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 5, "read_timeout": 20}


def open_fs(uri: str, storage_options: Optional[dict[str, Any]] = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without protocol) for a URI; the S3 endpoint and keys come from
    storage_options or the standard AWS environment variables (s3fs/botocore read them)."""
    options = dict(storage_options or {})
    s3 = uri.startswith(("s3://", "s3a://"))
    if s3:
        options["config_kwargs"] = {**S3_CLIENT_CONFIG, **(options.get("config_kwargs") or {})}
    fs, path = fsspec.core.url_to_fs(uri, **options)
    if s3:
        fs.retries = 1  # s3fs: one call per request; botocore retries it
    return fs, path.rstrip("/")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


# What object stores say about an object that changes when it is replaced: s3 (ETag,
# LastModified), gcs (generation, md5Hash, updated), local (mtime), memory (created); size everywhere.
VERSION_FIELDS = ("size", "ETag", "etag", "LastModified", "generation", "md5Hash", "updated", "mtime", "created")


def version_of(info: dict[str, Any]) -> str:
    """A file's version as the store reports it (an fsspec `info` or `find(detail=True)` entry):
    one string that changes when the file is replaced, so its bytes need not be read to tell."""
    return json.dumps({field: str(info[field]) for field in VERSION_FIELDS if field in info}, sort_keys=True)


# What the S3 and HTTP clients raise when no answer came at all: the store is away (an outage,
# exit 4), which says nothing about the configuration (exit 2).
UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ProxyConnectionError",
               "SSLError", "ClientConnectorError", "ClientConnectorSSLError", "ServerDisconnectedError",
               "ServerTimeoutError", "ConnectionError")


def is_unreachable(error: BaseException) -> bool:
    """The store gave no answer: connection refused, a name that does not resolve, a failed TLS
    handshake, a timeout. A bucket that does not exist or refused credentials are answers."""
    seen: set[int] = set()
    link: Optional[BaseException] = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, (ConnectionError, socket.gaierror, ssl.SSLError, TimeoutError)) \
                or type(link).__name__ in UNREACHABLE:
            return True
        link = link.__cause__ or link.__context__
    return False


def endpoint_of(uri: str, storage_options: Optional[dict[str, Any]] = None) -> str:
    """Where a URI's store answers, for messages: the S3 endpoint given or in the environment, else
    the URI's scheme ('s3 (AWS)')."""
    options = storage_options or {}
    given = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    scheme = uri.split("://", 1)[0] if "://" in uri else "file"
    if scheme in ("s3", "s3a"):
        given = given or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return given or "s3 (AWS)"
    return given or scheme


def read_bytes(uri: str, storage_options: Optional[dict[str, Any]] = None) -> bytes:
    fs, path = open_fs(uri, storage_options)
    return fs.cat_file(path)


# Our own tries come on top of the S3 client's (S3_CLIENT_CONFIG: 3 attempts); they ride out a
# store that is away for longer: a restart, a failover. A file the store keeps refusing with fast
# errors costs 9 requests and at most about 14 s (3 x 3 s of botocore's backoff, 1 s and 2 s of
# ours, with jitter); one whose requests time out, at most about 3 minutes.
READ_ATTEMPTS = 3
READ_BACKOFF_S = 1.0


class Budget(Protocol):
    """A run's budget of store failures, shared by every read of the run (job/budget.py keeps it
    in a Ray actor): once spent, the run stops asking the store, and each file not read yet is a
    StoreError at once (its scene keeps its committed tiles) instead of costing its retries."""

    def spent(self) -> Optional[str]:
        """Why the store is not to be asked any more; None while it is."""

    def record(self, failed: bool) -> None:
        """One try's outcome."""


_budget: list[Budget] = []  # the budget this process's reads report to (use_budget)


def use_budget(budget: Optional[Budget]) -> None:
    """Make with_retries report to `budget` in this process (None: to none)."""
    _budget[:] = [budget] if budget is not None else []


def with_retries(uri: str, call: Callable[[], T], attempts: int = READ_ATTEMPTS,
                 backoff_s: float = READ_BACKOFF_S) -> T:
    """call() (which reads `uri`), retrying the store's errors with exponential backoff and jitter.

    FileNotFoundError passes at once: the file is gone, which retrying does not change. Any
    other OSError that persists becomes a StoreError, as does every read once the run's budget
    (use_budget) is spent."""
    tries, last = 0, ""
    while True:
        why = _budget[0].spent() if _budget else None
        if why is not None:
            raise StoreError(uri, f"{last}; then not asked: {why}" if last else f"not asked: {why}", tries)
        try:
            result = call()
            if _budget:
                _budget[0].record(False)
            return result
        except FileNotFoundError:
            raise
        except OSError as error:
            if _budget:
                _budget[0].record(True)
            tries, last = tries + 1, f"{type(error).__name__}: {error}"
            if tries == attempts:
                raise StoreError(uri, last, attempts) from error
            time.sleep(backoff_s * 2 ** (tries - 1) * random.uniform(0.5, 1.5))


def read_bytes_retrying(uri: str, storage_options: Optional[dict[str, Any]] = None) -> bytes:
    return with_retries(uri, lambda: read_bytes(uri, storage_options))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a whole file so that readers see either nothing or all of it.

    Local disks: write a hidden temp file beside the target, then rename (atomic on POSIX).
    Object stores: a single PUT is already atomic, so write directly.
    """
    if is_local(fs):
        tmp = temp_beside(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    else:
        fs.pipe_file(path, data)


def temp_beside(path: str, data: bytes) -> str:
    """Write `data` whole to a hidden temp file in `path`'s folder (created if need be); returns
    its path. A failed write (a full disk) leaves no half-written temp file behind."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def is_temp(name: str) -> bool:
    """A temp_beside file's name: left behind only when its writer was killed mid-write."""
    return name.startswith(".") and name.endswith(".tmp")


def exists(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    try:
        return fs.exists(path)
    except FileNotFoundError:
        return False


def list_names(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """File names directly in a folder (empty when the folder does not exist)."""
    try:
        entries = fs.ls(folder, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    return sorted(os.path.basename(e.rstrip("/")) for e in entries)


def create_new(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write a whole file only if none exists at `path`; False (nothing written) if one does.

    This is what makes a commit safe against a concurrent one. Local disks: a hard link of a
    complete temp file, which the kernel refuses atomically when the name exists. S3: a
    conditional PUT (If-None-Match: *, s3fs's mode="create"; AWS S3 and SeaweedFS honour it).
    Other stores get fsspec's create mode, which is a check then a write on stores without a
    conditional write of their own: a narrow window in which two writers can both win."""
    if is_local(fs):
        tmp = temp_beside(path, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    try:
        fs.pipe_file(path, data, mode="create")
        return True
    except (FileExistsError, OSError):
        fs.invalidate_cache(path)
        if exists(fs, path):  # the precondition failed: someone else's file is there
            return False
        raise


def list_details(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, dict[str, Any]]:
    """{name: what the store says of it (fsspec's detail: size, ...)} of a folder's entries."""
    try:
        entries = fs.ls(folder, detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    return {os.path.basename(entry["name"].rstrip("/")): entry for entry in entries}


def list_modified(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, float]:
    """{file name: modification time (POSIX seconds, as the store reports it)} of a folder."""
    found = {}
    for entry in list_details(fs, folder).values():
        stamp = entry.get("mtime", entry.get("LastModified", entry.get("updated")))
        if isinstance(stamp, str):  # gcsfs: ISO 8601
            stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        seconds = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp or 0)
        found[os.path.basename(entry["name"].rstrip("/"))] = seconds
    return found
