"""Checks before Ray starts: every mistake that can be found without a cluster, reported in
seconds, with a message that says what to change, and nothing left behind.

The inputs are listed and paired, the output location is tried, and (for SAM) the extra is
installed; the checkpoint is checked by the driver right after (job.actor.model_checksum).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import os
import posixpath
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

import fsspec

from samrs_ray.config import JobConfig
from samrs_ray.dataset import storage
from samrs_ray.errors import ConfigError, InputError, RunFailed, StoreError
from samrs_ray.inputs.annotation import InputIssue, Stage
from samrs_ray.inputs.formats import LABEL_FORMATS
from samrs_ray.inputs.listing import (IMAGE_SUFFIXES, ScenePair, StoredFile, is_stac, list_files, list_sizes,
                                      pair_by_stem)
from samrs_ray.inputs.presets import PRESETS
from samrs_ray.inputs.splits import scene_splits
from samrs_ray.masks.engines import ENGINES

T = TypeVar("T")

if TYPE_CHECKING:
    from samrs_ray.inputs.map_inputs import MapScenes
    from samrs_ray.inputs.stac import StacScene


@dataclass(frozen=True)
class Inputs:
    """What a run will read: every image with its size, the scenes and their splits, and the
    files left unpaired."""

    files: dict[str, StoredFile]  # every image and label file listed
    pairs: list[ScenePair]
    pair_issues: list[InputIssue]
    splits: dict[str, str]  # scene name -> split
    maps: Optional["MapScenes"] = None  # a map run's rasters and their objects (--label-format vector)

    def objects_digest(self, name: str) -> Optional[str]:
        """A map scene's objects as a digest (what its labels are, in place of a label file's version)."""
        if self.maps is None:
            return None
        return hashlib.sha256(self.maps.objects[name].encode()).hexdigest()

    @property
    def image_sizes(self) -> dict[str, int]:
        return {pair.image_uri: self.files[pair.image_uri].size for pair in self.pairs}


def require_engine_extra(config: JobConfig) -> None:
    engine = ENGINES[config.model]
    missing = [m for m in engine.needs if not installed(m)]
    if missing:
        # sam2's only release is a source archive whose build imports torch: pip needs telling
        first = "pip install --no-build-isolation sam2==1.1.0, then " if "sam2" in missing else ""
        raise ConfigError(f"--model {config.model} needs {', '.join(missing)}: install its extra "
                          f"({first}pip install 'samrs-ray[{engine.extra}]'), or run the box baseline with --model box")


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False


def find_inputs(config: JobConfig) -> Inputs:
    """List and pair the inputs; ConfigError when nothing could be processed, saying why."""
    fmt = config.preset.label_format
    if fmt == "vector":
        return find_map_inputs(config)
    if is_stac(config.images) or config.stac_search:
        raise ConfigError(f"--images {config.images}: STAC items are map scenes: give --label-format vector and "
                          "vector layers as --labels")
    images = list_folder("--images", config.images, IMAGE_SUFFIXES, config)
    labels = list_folder("--labels", config.labels, LABEL_FORMATS[fmt].suffixes, config)
    pairs, issues = pair_by_stem(sorted(images), sorted(labels))
    if not pairs:
        raise ConfigError(nothing_paired(config, len(images), len(labels)))
    splits = scene_splits([p.name for p in pairs], config.split, config.split_lists, config.split_ratio,
                          config.storage_options, config.split_file)
    return Inputs({**images, **labels}, pairs, issues, splits)


def list_folder(flag: str, uri: str, suffixes: tuple[str, ...], config: JobConfig) -> dict[str, StoredFile]:
    return read_input(flag, uri, config, lambda: list_files(uri, suffixes, config.storage_options), "list it")


def read_input(flag: str, uri: str, config: JobConfig, read: Callable[[], T], doing: str) -> T:
    """`read()` of the input `flag` names, its failures as the command's errors: a missing or bad
    input is a ConfigError saying what to change (with the nearest name), a store that does not
    answer an outage (RunFailed, exit 4), a StoreError as it is."""
    try:
        return read()
    except InputError as error:
        raise ConfigError(f"{flag} {uri}: {error.reason}{nearest_name(uri, config)}") from None
    except FileNotFoundError:
        raise ConfigError(f"{flag} {uri}: no such file{nearest_name(uri, config)}") from None
    except StoreError:  # not the configuration's fault: exit 4, rerun once the store is back
        raise
    except Exception as error:
        if storage.is_unreachable(error):
            raise unreachable(flag, uri, config, error) from error
        raise ConfigError(f"{flag} {uri}: cannot {doing}: {type(error).__name__}: {error}") from error


def unreachable(flag: str, uri: str, config: JobConfig, error: BaseException) -> RunFailed:
    """An outage before the run: exit 4 naming the endpoint, not a configuration error."""
    return RunFailed(f"{flag} {uri}: the store at {storage.endpoint_of(uri, config.storage_options)} does not "
                     f"answer ({type(error).__name__}: {error}). Nothing was written; rerun once it is up.")


def nearest_name(uri: str, config: JobConfig) -> str:
    """'; did you mean .../labelTxt?' for a misspelled last path element, when a close one exists."""
    parent, name = posixpath.split(uri.rstrip("/"))
    try:
        fs, root = fsspec.core.url_to_fs(parent or ".", **config.storage_options)
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(root, detail=False)]
    except Exception:  # the parent is missing or unreadable too: nothing to suggest
        return ""
    close = difflib.get_close_matches(name, [n for n in names if n != name], n=1, cutoff=0.6)
    return f"; did you mean {posixpath.join(parent, close[0])}?" if close else ""


def nothing_paired(config: JobConfig, n_images: int, n_labels: int) -> str:
    fmt = config.preset.label_format
    expected = "/".join(LABEL_FORMATS[fmt].suffixes)
    message = (f"nothing to process: no image in {config.images} has a {expected} label file in {config.labels} "
               f"({n_images} images, {n_labels} {expected} label files)")
    if n_labels or not n_images:
        return message
    others = other_label_files(config, fmt)
    if not others:
        return message
    found = ", ".join(f"{count} {suffix} files" for suffix, count in others.most_common())
    preset_of = {preset.label_format: name for name, preset in PRESETS.items()}
    fixes = [f"--preset {preset_of[f]} or --label-format {f}" if f in preset_of else f"--label-format {f}"
             for f, other in LABEL_FORMATS.items() if f != fmt and set(other.suffixes) & set(others)]
    return (f"--preset {config.preset.name} reads {fmt} labels ({expected} files), but {config.labels} has "
            f"{found}: for those, use {'; or '.join(fixes)}")


def other_label_files(config: JobConfig, fmt: str) -> Counter:
    """Counts of the label files of other formats' suffixes under --labels."""
    suffixes = {s for f, other in LABEL_FORMATS.items() if f != fmt for s in other.suffixes}
    suffixes -= set(LABEL_FORMATS[fmt].suffixes)
    try:
        found = list_sizes(config.labels, tuple(suffixes), config.storage_options)
    except Exception:
        return Counter()
    return Counter(posixpath.splitext(uri)[1].lower() for uri in found)


def check_writable(config: JobConfig) -> None:
    """Write and delete a probe under --out; a local folder created for the probe is removed
    again, so a run that fails its checks leaves nothing behind."""
    fs, out = storage.open_fs(config.out, config.storage_options)
    created = first_missing_folder(out) if storage.is_local(fs) else None
    probe = storage.join(out, f".write-probe-{uuid.uuid4().hex}.tmp")  # a temp file: clean-up removes a leftover
    try:
        storage.write_atomic(fs, probe, b"")
        fs.rm_file(probe)
    except Exception as error:
        if storage.is_unreachable(error):
            raise unreachable("--out", config.out, config, error) from error
        raise ConfigError(f"cannot write to --out {config.out}: {type(error).__name__}: {error}") from error
    finally:
        if created:
            remove_empty_tree(created)


def first_missing_folder(path: str) -> str | None:
    """The outermost folder of `path` that does not exist yet (None: it exists)."""
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def remove_empty_tree(folder: str) -> None:
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(root)
        except OSError:  # not empty: someone else wrote there meanwhile; leave it
            return


GEO_MODULES = ("rasterio", "pyproj", "pyogrio", "pystac")


def list_images(config: JobConfig, suffixes: tuple[str, ...]
                ) -> tuple[dict[str, StoredFile], dict[str, "StacScene"], list[InputIssue]]:
    """A map run's rasters: the files under --images, or the assets of the STAC Items it names
    (inputs/stac.py), with the Item of each asset and the Items that cannot be scenes."""
    if not is_stac(config.images) and not config.stac_search:
        return list_folder("--images", config.images, suffixes, config), {}, []
    from samrs_ray.inputs.stac import StacSearch, stac_scenes

    search = StacSearch(config.collections, config.bbox, config.datetime) if config.stac_search else None
    return read_input("--images", config.images, config,
                      lambda: stac_scenes(config.images, config.stac_asset, config.storage_options, search),
                      "read it as STAC")


def find_map_inputs(config: JobConfig) -> Inputs:
    """A map run's inputs: rasters under --images, vector layers under --labels, each feature placed
    on the scenes it falls on (inputs/map_inputs.py)."""
    missing = [m for m in GEO_MODULES if not installed(m)]
    if missing:
        raise ConfigError(f"--label-format vector needs {', '.join(missing)}: pip install 'samrs-ray[geo]'")
    from samrs_ray.inputs.map_inputs import map_scenes
    from samrs_ray.inputs.rasters import RASTER_SUFFIXES, Stretch

    images, items, item_issues = list_images(config, RASTER_SUFFIXES)
    layers = list_folder("--labels", config.labels, LABEL_FORMATS["vector"].suffixes, config)
    fs, out = storage.open_fs(config.out, config.storage_options)
    maps = map_scenes(images, layers, config.labels, config.preset, config.class_field, config.bands,
                      Stretch.parse(config.stretch), config.storage_options, fs, out, items)
    maps = dataclasses.replace(maps, issues=item_issues + maps.issues)
    refused = any(issue.stage == Stage.STORE for issue in maps.issues)  # then a partial night, not a wrong flag
    if not maps.placed and not refused:
        first = "; ".join(str(issue) for issue in maps.issues[:3])
        raise ConfigError(f"nothing to process: no feature of the {len(layers)} layers in {config.labels} falls on "
                          f"any of the {len(images)} rasters in {config.images}" + (f" ({first})" if first else ""))
    splits = scene_splits([p.name for p in maps.pairs], config.split, config.split_lists, config.split_ratio,
                          config.storage_options, config.split_file)
    return Inputs({**images, **layers}, maps.pairs, maps.issues, splits, maps)
