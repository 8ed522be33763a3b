"""Checkpoint files on a node: fetched from any fsspec URI into the node's cache (one copy per
version of the object), and their sha256 remembered per version of the file, with the SAM
model types each was checked as. Nothing here imports torch, so a driver whose checkpoint was
already checked finds its hash without the ~4 s of importing torch (job.actor.model_checksum).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import warnings
from typing import TYPE_CHECKING, Optional

import fsspec

from samrs_ray.dataset import storage
from samrs_ray.errors import CheckpointError
from samrs_ray.masks.model_types import MODEL_TYPES, OFFICIAL_CHECKPOINTS

if TYPE_CHECKING:
    from samrs_ray.config import JobConfig


def checkpoint_source(
    model_type: str, checkpoint: Optional[str], cache_dir: str, storage_options: Optional[dict]
) -> Optional[tuple[str, str]]:
    """(URI, local path) of the weights for `model_type`, fetched into the cache when remote; None
    for tiny SAM without a checkpoint (random weights)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown SAM model type {model_type!r}; expected one of {MODEL_TYPES}")
    if checkpoint is None and model_type == "tiny":
        return None
    uri = checkpoint if checkpoint is not None else OFFICIAL_CHECKPOINTS[model_type]
    return uri, fetch_checkpoint(uri, cache_dir, storage_options)


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def uri_digest(uri: str) -> str:
    """The start of every cached file name of `uri`, whatever its version."""
    return hashlib.sha256(uri.encode()).hexdigest()[:16] + "-"


def cache_name(uri: str, version: str = "") -> str:
    """A safe file name for one version of a remote URI: short hashes of the URI and of the
    version, plus the URI's sanitised basename."""
    stamp = hashlib.sha256(version.encode()).hexdigest()[:12]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", uri.rstrip("/").rsplit("/", 1)[-1]).lstrip(".") or "checkpoint"
    return f"{uri_digest(uri)}{stamp}-{base[:100]}"


def remote_version(uri: str, storage_options: Optional[dict]) -> str:
    """What the store says about the object at `uri` now (size, ETag, modification time, ...), as
    one string that changes when the object is replaced. Raises when the store cannot be asked."""
    fs, path = storage.open_fs(uri, storage_options)
    fs.invalidate_cache(path)  # a listing cached by this process must not hide a replacement
    info = fs.info(path)
    return storage.version_of(info)


def cached_copies(cache_dir: str, uri: str) -> list[str]:
    """Paths of the cached copies of `uri` (any version), newest first."""
    prefix, found = uri_digest(uri), []
    for name in os.listdir(cache_dir):
        if name.startswith(prefix):
            path = os.path.join(cache_dir, name)
            with contextlib.suppress(FileNotFoundError):  # another process removed it just now
                found.append((os.path.getmtime(path), path))
    return [path for _, path in sorted(found, reverse=True)]


def fetch_checkpoint(uri: str, cache_dir: str, storage_options: Optional[dict] = None) -> str:
    """Local path of the checkpoint at `uri`.

    Local paths (or file://) are used in place. Anything else fsspec reads (s3://, gs://,
    https://, memory://) is copied into `cache_dir`, one file per version of the object: the
    store is asked for the object's size, ETag and modification time each time, so a
    checkpoint replaced at the same URI is fetched again (and its older copies removed). When
    the store cannot be asked (offline, or the object is gone), the newest cached copy is used,
    with a warning. The copy is written under a temporary name and renamed when complete, so an
    interrupted download never leaves a file that looks like a finished checkpoint.
    """
    if is_local(uri):
        path = uri[len("file://"):] if uri.startswith("file://") else uri
        if not os.path.isfile(path):
            raise CheckpointError(f"{uri}: checkpoint file not found")
        return path
    os.makedirs(cache_dir, exist_ok=True)
    # One download per node: the mask actors of a node start together, and all but the first wait
    # here, then find the finished copy. The lock is on the cache folder itself, so it leaves no file.
    lock = os.open(cache_dir, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return fetch_unlocked(uri, cache_dir, storage_options)
    finally:
        os.close(lock)  # closing releases the lock


def fetch_unlocked(uri: str, cache_dir: str, storage_options: Optional[dict]) -> str:
    try:
        version = remote_version(uri, storage_options)
    except Exception as error:
        copies = cached_copies(cache_dir, uri)
        if not copies:
            raise CheckpointError(f"{uri}: cannot fetch checkpoint: {type(error).__name__}: {error}") from error
        warnings.warn(f"{uri}: cannot ask the store for the checkpoint's version ({type(error).__name__}: {error}); "
                      f"using the cached copy {copies[0]}")
        return copies[0]
    target = os.path.join(cache_dir, cache_name(uri, version))
    if os.path.isfile(target):
        return target
    fd, partial_path = tempfile.mkstemp(dir=cache_dir, prefix=".partial-", suffix=".pth")
    digest = hashlib.sha256()  # hashed as it arrives: the copy is never read again to check it
    try:
        with os.fdopen(fd, "wb") as out, fsspec.open(uri, "rb", **(storage_options or {})) as src:
            while chunk := src.read(16 << 20):
                out.write(chunk)
                digest.update(chunk)
        os.replace(partial_path, target)
    except Exception as error:
        os.unlink(partial_path)
        raise CheckpointError(f"{uri}: cannot fetch checkpoint: {type(error).__name__}: {error}") from error
    remember(target, cache_dir, sha256=digest.hexdigest())
    memos = os.path.join(cache_dir, "sha256")
    for old in cached_copies(cache_dir, uri):
        if old != target:
            with contextlib.suppress(OSError):  # another process may have removed it first
                os.unlink(old)
                for memo in os.listdir(memos):  # the superseded copy's remembered hashes
                    if memo.startswith(uri_digest(os.path.abspath(old))):
                        os.unlink(os.path.join(memos, memo))
    return target


def file_sha256(path: str, cache_dir: str) -> str:
    """sha256 of a local file, remembered in `cache_dir` by the file's version (size, inode,
    modification and change times), so that a node hashes a checkpoint once per version: the
    driver checks it, each mask actor on the node then finds its hash instead of reading the
    file again (1.6 s for ViT-H's 2.5 GB), and so does the next night's run."""
    remembered = read_memo(path, cache_dir).get("sha256")
    if remembered is not None:
        return remembered
    sha = sha256_file(path)
    remember(path, cache_dir, sha256=sha)
    return sha


def checked_sha256(path: str, cache_dir: str, model_type: str) -> Optional[str]:
    """The remembered sha256 of this version of `path` if it was checked as a SAM `model_type`
    checkpoint (checkpoint.check_checkpoint): then the driver need not import torch to check it."""
    memo = read_memo(path, cache_dir)
    return memo.get("sha256") if model_type in memo.get("checked", ()) else None


def read_memo(path: str, cache_dir: str) -> dict:
    """What is remembered of this version of `path`: {'sha256': hex, 'checked': [model types]}."""
    with contextlib.suppress(OSError, ValueError):
        with open(sha256_memo(path, cache_dir)) as f:
            memo = json.load(f)
        if isinstance(memo, dict) and re.fullmatch(r"[0-9a-f]{64}", str(memo.get("sha256"))):
            return memo
    return {}


def sha256_memo(path: str, cache_dir: str) -> str:
    """Where the hash of this version of `path` is remembered. The change time (ctime) is set by
    the kernel on every write, so a file edited in place and given back its mtime still differs."""
    stat = os.stat(path)
    version = f"{stat.st_size}:{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"
    return os.path.join(cache_dir, "sha256", cache_name(os.path.abspath(path), version))


def remember(path: str, cache_dir: str, sha256: str, checked: Optional[str] = None) -> None:
    """Keep `sha256` as the hash of this version of `path` (and that it was checked as SAM
    `checked`); where the cache cannot be written, the file is simply hashed again next time."""
    memo = sha256_memo(path, cache_dir)
    known = read_memo(path, cache_dir)
    types = sorted(set(known.get("checked", [])) | ({checked} if checked else set())) if known.get("sha256") == sha256 \
        else ([checked] if checked else [])
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=os.path.dirname(memo), prefix=".partial-")
        with os.fdopen(fd, "w") as f:
            json.dump({"sha256": sha256, "checked": types}, f)
        os.replace(partial, memo)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def engine_checked_sha256(engine: str, model_type: str, checkpoint: Optional[str], cache_dir: str,
                          storage_options: Optional[dict]) -> Optional[str]:
    """For the SAM 2 and HQ-SAM engines: the remembered sha256 of their checkpoint if this node
    already checked this version of it as `engine` `model_type` (engine_checkpoint.check), else
    None. The file is fetched when remote; '' for the FAKE 'tiny' model without a checkpoint."""
    from samrs_ray.masks.model_types import ENGINE_CHECKPOINTS

    if checkpoint is None and model_type == "tiny":
        return ""
    path = fetch_checkpoint(checkpoint or ENGINE_CHECKPOINTS[engine][model_type], cache_dir, storage_options)
    return checked_sha256(path, cache_dir, f"{engine}:{model_type}")


def engine_check(engine: str, config: "JobConfig", build_model: str) -> str:
    """check() of the SAM 2 and HQ-SAM engines: the checkpoint's sha256, remembered when this node
    already checked this version of it, else checked by loading it into `build_model`
    ("module:function", engine_checkpoint.check); torch is imported only then."""
    known = engine_checked_sha256(engine, config.model_type, config.checkpoint, config.node_cache_dir(),
                                  config.storage_options)
    if known is not None:
        return known
    from samrs_ray.masks import engine_checkpoint
    from samrs_ray.masks.engines import resolve

    return engine_checkpoint.check(engine, config.model_type, resolve(build_model), config.checkpoint,
                                   config.node_cache_dir(), config.storage_options)
