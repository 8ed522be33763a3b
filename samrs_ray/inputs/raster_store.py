"""How GDAL reads a raster from any fsspec store: rasterio's `opener` over fsspec files with a
read-ahead (StoreFiles), whose failed reads are recorded (Watched), so that a store that went away
is told from a corrupt file (failed). Nothing here knows of Ray.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar

from samrs_ray.errors import InputError

T = TypeVar("T")

# fsspec's read-ahead per request for a remote scene: about one deflated 512 x 512 COG block, so a
# window costs a few range requests and no more bytes than it needs.
REMOTE_BLOCK = 1 << 20


def failed(uri: str, store: Optional["StoreFiles"], reason: str) -> Exception:
    """The error of a failed GDAL call: when a read from the store failed, the store's error as an
    OSError, which storage.with_retries retries (the store is asked again) and at last turns into
    a StoreError; else the file's (InputError)."""
    failure = store.failure if store is not None else None
    if failure is None:
        return InputError(uri, reason)
    store.failure = None
    if isinstance(failure, FileNotFoundError):
        return InputError(uri, "file not found (deleted while it was read?)")
    return failure if isinstance(failure, OSError) else OSError(f"{type(failure).__name__}: {failure}")


class StoreFiles:
    """What rasterio's `opener` asks of a store (rasterio.abc.FileContainer): files opened with a
    read-ahead of REMOTE_BLOCK, so GDAL's small range reads cost no more than they need. Every
    call records the store's error: rasterio turns any into "cannot open", which must not read as
    a bad file (a file not found is the file's own trouble, and rasterio probes for one)."""

    def __init__(self, fs: Any):
        self.fs = fs
        self.failure: Optional[BaseException] = None  # the last error a call to the store raised

    def watched(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except FileNotFoundError:
            raise
        except Exception as error:
            self.failure = error
            raise

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        file = self.watched(lambda: self.fs.open(path, mode, block_size=REMOTE_BLOCK, cache_type="readahead"))
        return Watched(file, self)

    def isfile(self, path: str) -> bool:
        return self.watched(lambda: self.fs.isfile(path))

    def isdir(self, path: str) -> bool:
        return self.watched(lambda: self.fs.isdir(path))

    def ls(self, path: str) -> list[str]:
        return self.watched(lambda: self.fs.ls(path, detail=False))

    def mtime(self, path: str) -> int:
        return 0  # GDAL asks, and does nothing with it for reading

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(0, timezone.utc)  # as mtime: asked, not used for reading

    def size(self, path: str) -> int:
        return self.watched(lambda: self.fs.size(path))


class Watched:
    """A store's file object whose failed read is a short read, with the error recorded on its
    container: GDAL only says that a read failed, and the job must tell a store that went away
    from a corrupt file. A read must not raise: rasterio's read callback turns an exception into
    (size_t)-1 bytes read, and GDAL aborts the process."""

    def __init__(self, file: Any, store: StoreFiles):
        self.file, self.store = file, store

    def read(self, *args: Any) -> bytes:
        try:
            return self.file.read(*args)
        except Exception as error:
            self.store.failure = error
            return b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __enter__(self) -> "Watched":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.file.close()
