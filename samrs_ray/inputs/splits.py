"""Which split (train, val, test, ...) each scene belongs to. Splits are per scene, so a
scene's overlapping tiles never straddle train and val; every tile carries its scene's split in
the tiles table. A split is not part of a tile's fingerprint: moving a scene to another split
rewrites its rows, never its masks.

Where a scene's split comes from, first match wins:
    1. a list file given for a split (`--split-list val=ImageSets/Main/val.txt`): one scene per
       line, as DIOR's ImageSets/Main/{train,val,test}.txt and SAMRS's train.txt / valid.txt are;
       or a table of scenes and splits (`--split-file splits.txt`: `<scene> <split>` per line);
    2. `--split NAME`: the split of every scene of this run's input location (DOTA's and
       FAIR1M's train/ and val/ folders, one run each);
    3. `--split-ratio F`: a deterministic hash of the scene name puts a share F of the scenes in
       train and the rest in val;
    4. DEFAULT_SPLIT.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import Optional

from samrs_ray.dataset import storage
from samrs_ray.errors import ConfigError
from samrs_ray.inputs.listing import IMAGE_SUFFIXES

DEFAULT_SPLIT = "trainval"
SPLIT_NAME = re.compile(r"[a-z][a-z0-9_-]*")


def hashed_split(scene: str, ratio: float) -> str:
    """'train' for a share `ratio` of scene names, else 'val'; the same answer on every run."""
    share = int.from_bytes(hashlib.sha256(scene.encode()).digest()[:8], "big") / 2**64
    return "train" if share < ratio else "val"


def read_split_list(uri: str, storage_options: Optional[dict] = None) -> list[str]:
    """Scene names of a list file: one per line, blank lines skipped, a file suffix dropped
    ('00001.jpg' and '00001' both name scene 00001)."""
    try:
        text = storage.read_bytes(uri, storage_options).decode()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--split-list {uri}: cannot read it: {error}") from None
    names = []
    for line in text.splitlines():
        name = line.strip()
        if name:
            stem, suffix = posixpath.splitext(name)
            names.append(stem if suffix.lower() in IMAGE_SUFFIXES else name)
    return names


def read_split_table(uri: str, storage_options: Optional[dict] = None) -> dict[str, list[str]]:
    """A `<scene> <split>` file -> {split: [scenes]}."""
    try:
        text = storage.read_bytes(uri, storage_options).decode()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--split-file {uri}: cannot read it: {error}") from None
    table: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ConfigError(f"--split-file {uri}:{number}: expected '<scene> <split>', found {line.strip()!r}")
        table.setdefault(fields[1], []).append(fields[0])
    return table


def scene_splits(scenes: list[str], split: Optional[str] = None, lists: Optional[dict[str, str]] = None,
                 ratio: Optional[float] = None, storage_options: Optional[dict] = None,
                 table: Optional[str] = None) -> dict[str, str]:
    """{scene: split} for every scene (see the module docstring for the order of precedence)."""
    named = {name: read_split_list(uri, storage_options) for name, uri in (lists or {}).items()}
    for name, listed_scenes in (read_split_table(table, storage_options) if table else {}).items():
        named.setdefault(name, []).extend(listed_scenes)
    for name in [split, *named]:
        if name is not None and not SPLIT_NAME.fullmatch(name):
            raise ConfigError(f"split name {name!r}: use lower-case letters, digits, - and _ (train, val, test)")
    if ratio is not None and not 0 < ratio < 1:
        raise ConfigError(f"--split-ratio must be between 0 and 1, not {ratio}")
    listed: dict[str, str] = {}
    for name, listed_scenes in sorted(named.items()):
        for scene in listed_scenes:
            if listed.get(scene, name) != name:
                raise ConfigError(f"scene {scene} is in two split lists: {listed[scene]} and {name}")
            listed[scene] = name
    fallback = (lambda scene: split) if split else \
        (lambda scene: hashed_split(scene, ratio)) if ratio is not None else (lambda scene: DEFAULT_SPLIT)
    return {scene: listed.get(scene) or fallback(scene) for scene in scenes}
