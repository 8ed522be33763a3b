"""The functions `import samrs_ray` gives (the package's `__init__` lists the whole face).

    record = samrs_ray.generate(preset="sior", images="DIOR/JPEGImages", labels="DIOR/Annotations",
                                out="out/sior", model="box")
    tiles = samrs_ray.read("out/sior", "tiles")              # pyarrow.Table, one row per tile
    instances = samrs_ray.read("out/sior", "instances", version=1)
    [r.version for r in samrs_ray.versions("out/sior")]     # [1, 2, ...]

`generate` takes the command line's options as keyword arguments, and parses them with the
command line's own parser: one set of names, defaults and checks for both.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any, Callable, Literal, Optional

import pyarrow as pa

from samrs_ray.dataset import manifest, storage
from samrs_ray.dataset import versions as _versions
from samrs_ray.dataset.versions import RunRecord, Version
from samrs_ray.errors import ConfigError

Table = Literal["tiles", "instances", "errors"]


def generate(*, say: Callable[[str], None] = print, **options: Any) -> RunRecord:
    """Make a dataset version, or update one incrementally: `samrs-ray generate` in this process.

    Arguments:
      preset (str): 'sota', 'sior', 'fast', or 'custom' with classes=FILE.
      images (str): the scenes' folder, at any fsspec URI; for a map run (label_format='vector')
        also a STAC ItemCollection, Catalog or Collection (.json).
      stac_search (str): instead of images, a STAC API whose search gives the scenes, with
        collection (str or list of str), bbox ((west, south, east, north)) and datetime (str).
      labels (str): the label files' folder, or (label_format='vector') a vector layer.
      out (str): the dataset's folder; a rerun updates it.
      **options: any other option of `samrs-ray generate --help`, named with underscores:
        model='box', tile_size=512, split_list={'val': 'val.txt'}, bands=(4, 3, 2),
        storage_options={'endpoint_url': ...}, no_color=True, address='auto', ...
        True gives a flag, and False or None leaves an option out.
      say (Callable[[str], None]): where the run's progress lines go.

    Returns:
      (RunRecord): the committed version: `.version`, `.counts` (tiles, instances, errors, ...),
        `.partial` ({scene: why} for the scenes the store did not give; the CLI exits 5 then).

    Raises ConfigError for an unknown option or a wrong value, and the errors `samrs-ray`
    turns into exit codes (samrs_ray.errors): ConcurrentRunError, RunFailed, StoreError.
    """
    from samrs_ray.cli.parser import build_parser, config_from_args, refuse_relative_paths
    from samrs_ray.job import generate as run

    argv = ["generate"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        # '--flag=value', so that a value starting with '-' (a bbox's west) is not read as an option
        if value is True:
            argv.append(flag)
        elif name == "split_list" and isinstance(value, dict):
            argv += [f"{flag}={split}={uri}" for split, uri in value.items()]
        elif name == "collection" and isinstance(value, (list, tuple)):
            argv += [f"{flag}={collection}" for collection in value]
        elif isinstance(value, dict):
            argv.append(f"{flag}={json.dumps(value)}")
        elif isinstance(value, (list, tuple)):
            argv.append(f"{flag}={','.join(map(str, value))}")
        else:
            argv.append(f"{flag}={os.fspath(value) if isinstance(value, os.PathLike) else value}")
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = build_parser().parse_args(argv)
    except SystemExit:  # argparse's way of refusing: its message, as the error
        message = errors.getvalue().strip().splitlines()
        raise ConfigError(message[-1].removeprefix("samrs-ray generate: error: ") if message
                          else f"generate: cannot use {sorted(options)}") from None
    refuse_relative_paths(args)
    return run(config_from_args(args), say=say)


def read(out: str, table: Table = "tiles", version: Version = None, columns: Optional[list[str]] = None,
         storage_options: Optional[dict] = None) -> pa.Table:
    """One table of a committed version, whole, in this process.

    Arguments:
      out (str): the dataset's folder, at any fsspec URI.
      table (str): 'tiles' (one row per tile: tile_id, split, image_uri, label_uri, x0, y0, width,
        height, ...), 'instances' (one row per instance: tile_id, class_id, mask_rle, prompt_box,
        ...) or 'errors' (one row per input left out: source_uri, line, stage, reason).
      version (int or str or None): a version number or run id; None for the latest.
      columns (list of str or None): the columns to read; None for all.

    Returns:
      (pyarrow.Table): the rows. For a dataset too big for one process, give
        `table_uris(...)` to `ray.data.read_parquet`, or read the Delta table (README).
    """
    return manifest.read_dataset(out, table, storage_options, columns, version=version)


def table_uris(out: str, table: Table = "tiles", version: Version = None,
               storage_options: Optional[dict] = None) -> list[str]:
    """The full URIs of a committed version's Parquet files of `table`: for `ray.data.read_parquet`,
    Hugging Face's `datasets.load_dataset("parquet", data_files=...)` or any Parquet reader."""
    return manifest.dataset_uris(out, table, storage_options, version=version)


def versions(out: str, storage_options: Optional[dict] = None) -> list[RunRecord]:
    """Every committed version's record, oldest first (`samrs-ray runs`): `.version`, `.run_id`,
    `.finished_at`, `.model`, `.counts`. Only the last `keep_versions` are still readable."""
    fs, root = storage.open_fs(out, storage_options)
    return _versions.history(fs, root)
