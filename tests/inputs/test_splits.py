"""samrs_ray/inputs/splits.py: where each scene's split comes from, in the stated order."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs_ray.errors import ConfigError
from samrs_ray.inputs.splits import DEFAULT_SPLIT, hashed_split, scene_splits

SCENES = [f"{i:05d}" for i in range(1, 9)]


def test_lists_first_then_the_split_given_then_the_default(tmp_path: Path) -> None:
    (tmp_path / "val.txt").write_text("00002\n00003.jpg\n\n99999\n")  # DIOR style; unknown names are ignored
    (tmp_path / "test.txt").write_text("00004\n")
    lists = {"val": str(tmp_path / "val.txt"), "test": str(tmp_path / "test.txt")}
    assert scene_splits(SCENES, lists=lists)["00002"] == "val"
    found = scene_splits(SCENES, split="train", lists=lists)
    assert [found[s] for s in SCENES] == ["train", "val", "val", "test", "train", "train", "train", "train"]
    assert set(scene_splits(SCENES).values()) == {DEFAULT_SPLIT}


def test_a_table_of_scenes_and_splits(tmp_path: Path) -> None:
    (tmp_path / "splits.txt").write_text("00001 val\n00002 test\n\n00003 val\n")
    found = scene_splits(SCENES, table=str(tmp_path / "splits.txt"))
    assert [found[s] for s in SCENES[:4]] == ["val", "test", "val", DEFAULT_SPLIT]
    (tmp_path / "bad.txt").write_text("00001 val\n00002\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: expected '<scene> <split>', found '00002'"):
        scene_splits(SCENES, table=str(tmp_path / "bad.txt"))


def test_a_hashed_split_is_stable_and_near_its_ratio() -> None:
    names = [f"P{i:04d}" for i in range(2000)]
    first = scene_splits(names, ratio=0.8)
    assert first == scene_splits(list(reversed(names)), ratio=0.8)  # a scene's split depends on its name only
    assert 0.77 < sum(s == "train" for s in first.values()) / len(names) < 0.83
    assert {hashed_split(n, 0.8) for n in names} == {"train", "val"}


def test_mistakes_are_configuration_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("00001\n")
    (tmp_path / "b.txt").write_text("00001\n")
    with pytest.raises(ConfigError, match="scene 00001 is in two split lists: a and b"):
        scene_splits(SCENES, lists={"a": str(tmp_path / "a.txt"), "b": str(tmp_path / "b.txt")})
    with pytest.raises(ConfigError, match="--split-list .*missing.txt: cannot read it"):
        scene_splits(SCENES, lists={"val": str(tmp_path / "missing.txt")})
    with pytest.raises(ConfigError, match="split name 'Train Set'"):
        scene_splits(SCENES, split="Train Set")
    with pytest.raises(ConfigError, match="--split-ratio must be between 0 and 1"):
        scene_splits(SCENES, ratio=1.5)
