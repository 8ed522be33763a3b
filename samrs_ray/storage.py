"""Reading and writing bytes on any fsspec filesystem, with writes a reader never sees half done."""

from __future__ import annotations

import os
import uuid
from typing import Any, Optional

import fsspec
from fsspec.implementations.local import LocalFileSystem


def open_fs(uri: str, storage_options: Optional[dict[str, Any]] = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without protocol) for a URI; the S3 endpoint and keys come from
    storage_options or the standard AWS environment variables (s3fs/botocore read them)."""
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return fs, path.rstrip("/")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def read_bytes(uri: str, storage_options: Optional[dict[str, Any]] = None) -> bytes:
    fs, path = open_fs(uri, storage_options)
    return fs.cat_file(path)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write a whole file so that readers see either nothing or all of it.

    Local disks: write a hidden temp file beside the target, then rename (atomic on POSIX).
    Object stores: a single PUT is already atomic, so write directly.
    """
    if is_local(fs):
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


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
