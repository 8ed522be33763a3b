"""samrs_ray/job/commit.py: a version with a file missing is never committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs_ray.dataset import incremental, layout, storage
from samrs_ray.job.commit import check_present
from tests.datasets import write_shard


def test_a_version_with_a_vanished_file_is_refused(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    shard = write_shard(fs, out, {"a": "1", "b": "1"})
    for tile in ("a", "b"):
        for folder in layout.PNG_FOLDERS:
            storage.write_atomic(fs, layout.png_path(out, folder, tile, "1"), b"png")
    index = incremental.read_index(fs, out)
    check_present(fs, out, [shard], index)  # all there

    (tmp_path / "out" / "labels" / "b.1.png").unlink()  # removed by someone else's clean-up
    with pytest.raises(RuntimeError, match=r"1 files of the new version vanished during the run \(\['.*/labels/b.1.png'\]\)"):
        check_present(fs, out, [shard], index)
    (tmp_path / "out" / "manifest" / "instances" / f"{shard}.parquet").unlink()
    with pytest.raises(RuntimeError, match="2 files of the new version vanished"):
        check_present(fs, out, [shard], index)


@pytest.mark.parametrize("folder", ["tiles", "color"])
def test_a_version_whose_reused_tile_or_colour_png_vanished_is_refused(tmp_path: Path, folder: str) -> None:
    # a version reuses the tiles/ PNG of every unchanged window: a concurrent clean-up can remove it too
    fs, out = storage.open_fs(str(tmp_path / "out"))
    shard = write_shard(fs, out, {"a": "1"})
    for name in layout.PNG_FOLDERS:
        storage.write_atomic(fs, layout.png_path(out, name, "a", "1"), b"png")
    index = incremental.read_index(fs, out)
    (tmp_path / "out" / folder / "a.1.png").unlink()
    with pytest.raises(RuntimeError, match=rf"1 files of the new version vanished.*/{folder}/a.1.png"):
        check_present(fs, out, [shard], index)
