"""Finding inputs: list scene images and label files (local or s3://) and pair them by stem."""

from __future__ import annotations

import os
import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

from fsspec.implementations.local import LocalFileSystem

from samrs_ray.dataset.storage import open_fs, version_of, with_retries
from samrs_ray.errors import InputError
from samrs_ray.inputs.annotation import InputIssue, Stage

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# A scene name becomes part of output file names (tile ids), so it must be a plain name.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
STAC_SUFFIXES = (".json", ".geojson")  # --images naming one of these is a STAC document (inputs/stac.py)


@dataclass(frozen=True)
class ScenePair:
    """One scene: its name (the shared file stem), its image and its label file."""

    name: str
    image_uri: str
    label_uri: str


@dataclass(frozen=True)
class StoredFile:
    """An input file as its listing shows it: bytes, and the store's version (storage.version_of)."""

    size: int
    version: str


def list_files(uri: str, suffixes: tuple[str, ...], storage_options: Optional[dict] = None) -> dict[str, StoredFile]:
    """{file: StoredFile} of all files under `uri` (recursively) whose suffix is in `suffixes`
    (case-insensitive), from one listing.

    Local paths come back as absolute paths; remote ones as full URIs (`s3://bucket/key`),
    so each can be opened again with fsspec on any worker.
    """
    if "://" not in uri:
        uri = os.path.abspath(uri)  # '../data' -> '/abs/data': names stay stable wherever the job runs
    fs, root = open_fs(uri, storage_options)
    if not with_retries(uri, lambda: fs.exists(root)):
        raise InputError(uri, "no such file or folder")
    wanted = tuple(s.lower() for s in suffixes)
    found = with_retries(uri, lambda: fs.find(root, detail=True))
    local = isinstance(fs, LocalFileSystem)
    return {
        (path if local else fs.unstrip_protocol(path)): StoredFile(int(info.get("size") or 0), version_of(info))
        for path, info in found.items()
        if path.lower().endswith(wanted)
    }


def list_sizes(uri: str, suffixes: tuple[str, ...], storage_options: Optional[dict] = None) -> dict[str, int]:
    """{file: size in bytes}: list_files without versions."""
    return {path: file.size for path, file in list_files(uri, suffixes, storage_options).items()}


def stem(uri: str) -> str:
    """File name without its last suffix: 's3://b/images/P0004.png' -> 'P0004'."""
    return posixpath.splitext(posixpath.basename(uri))[0]


def pair_by_stem(
    image_uris: list[str], label_uris: list[str]
) -> tuple[list[ScenePair], list[InputIssue]]:
    """Scenes whose image and label file share a stem, sorted by name; every file left
    unpaired gets an InputIssue (stage 'pair'): a missing partner, a stem shared by several
    images or several label files (ambiguous), or a stem unsafe as an output name."""
    images: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, list[str]] = defaultdict(list)
    for uri in image_uris:
        images[stem(uri)].append(uri)
    for uri in label_uris:
        labels[stem(uri)].append(uri)

    pairs: list[ScenePair] = []
    issues: list[InputIssue] = []

    def refuse(uris: list[str], reason: str) -> None:
        issues.extend(InputIssue(uri, reason, stage=Stage.PAIR) for uri in sorted(uris))

    for name in sorted(images.keys() | labels.keys()):
        found_images, found_labels = images.get(name, []), labels.get(name, [])
        if not SAFE_NAME.fullmatch(name):
            refuse(found_images + found_labels,
                   f"scene name {name!r} is not usable in output file names (allowed: letters, digits, . _ -)")
        elif not found_labels:
            refuse(found_images, f"image has no label file (no label named {name}.*)")
        elif not found_images:
            refuse(found_labels, f"label file has no image (no image named {name}.*)")
        elif len(found_images) > 1 or len(found_labels) > 1:
            refuse(found_images + found_labels,
                   f"scene name {name!r} is shared by {len(found_images)} images and "
                   f"{len(found_labels)} label files; cannot tell which belong together")
        else:
            pairs.append(ScenePair(name, found_images[0], found_labels[0]))
    return pairs, issues


def is_stac(uri: str) -> bool:
    """Does `--images` name a STAC document (a JSON file) rather than a folder of images?"""
    return uri.lower().endswith(STAC_SUFFIXES)
