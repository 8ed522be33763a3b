"""samrs_ray/dataset/scene_cache.py: which changes make a scene be read again, and what a cached scene
gives back, without Ray."""

from __future__ import annotations

from pathlib import Path

from samrs_ray.dataset import layout, scene_cache, storage
from samrs_ray.inputs.annotation import InputIssue
from samrs_ray.inputs.listing import ScenePair, StoredFile, list_files
from samrs_ray.job.rows import Kind, Stage, Status, error_row
from samrs_ray.planning.plan import PlanSettings, plan_scene
from tests.datasets import SOTA, scene, settings

LIGHT = [name for name in scene_cache.COLUMNS.names if name != "key"]


def light(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in LIGHT + ["split"]} for r in rows]


def test_the_key_follows_both_files_versions_and_the_settings() -> None:
    pair = ScenePair("S1", "/i/S1.png", "/l/S1.txt")
    files = {"/i/S1.png": StoredFile(10, '{"mtime": "1"}'), "/l/S1.txt": StoredFile(5, '{"mtime": "1"}')}
    key = scene_cache.scene_key(settings(), pair, files)
    assert key == scene_cache.scene_key(settings(), pair, dict(files))
    changed = [
        scene_cache.scene_key(settings(), pair, {**files, "/i/S1.png": StoredFile(10, '{"mtime": "2"}')}),
        scene_cache.scene_key(settings(), pair, {**files, "/l/S1.txt": StoredFile(6, '{"size": "6"}')}),
        scene_cache.scene_key(PlanSettings(SOTA, "other-digest", 10**8, {}), pair, files),
        scene_cache.scene_key(PlanSettings(SOTA, "settings-digest", 10**6, {}), pair, files),
        scene_cache.scene_key(settings(), ScenePair("S1", "/j/S1.png", "/l/S1.txt"),
                              {**files, "/j/S1.png": files["/i/S1.png"]}),
    ]
    assert len({key, *changed}) == 6
    # a store that reports no version: the scene is always read
    assert scene_cache.scene_key(settings(), pair, {**files, "/i/S1.png": StoredFile(10, "")}) is None


def test_a_cached_scene_replays_as_planning_it_again_would(tmp_path: Path) -> None:
    pair = scene(tmp_path)
    planned = list(plan_scene(pair, settings(), frozenset(), cut=False))
    for row in planned:
        row["split"] = "train"
    files = {**list_files(str(tmp_path / "images"), (".png",)), **list_files(str(tmp_path / "labelTxt"), (".txt",))}
    key = scene_cache.scene_key(settings(), pair, files)
    fs, out = storage.open_fs(str(tmp_path / "out"))
    assert scene_cache.write(fs, out, planned, {"S1": key}) == 1
    cache = scene_cache.read(fs, out)
    assert list(cache) == [key]

    done = frozenset(r["fingerprint"] for r in planned if r["kind"] == Kind.TILE)
    for known in (frozenset(), done, frozenset(list(done)[:1])):
        again = list(plan_scene(pair, settings(), known, cut=False))
        for row in again:
            row["split"] = "val"
        assert light(scene_cache.replay(cache[key], known, "val")) == light(again)


def test_a_file_with_bad_bytes_is_kept_and_replays_its_error(tmp_path: Path) -> None:
    # the file's own fault: the same bytes give the same error, so it is not read again
    pair = scene(tmp_path)
    Path(pair.image_uri).write_bytes(b"not a png")
    planned = list(plan_scene(pair, settings(), frozenset(), cut=False))
    assert [(r["kind"], r["stage"], r["line"]) for r in planned] == [(Kind.ERROR, Stage.READ, -1)]
    fs, out = storage.open_fs(str(tmp_path / "out"))
    assert scene_cache.write(fs, out, planned, {"S1": "some-key"}) == 1
    (replayed,) = scene_cache.replay(scene_cache.read(fs, out)["some-key"], frozenset(), "train")
    assert (replayed["kind"], replayed["source_uri"], replayed["reason"]) == (
        Kind.ERROR, pair.image_uri, planned[0]["reason"])


def test_a_scene_the_store_did_not_give_is_not_kept(tmp_path: Path) -> None:
    # the store's fault (StoreError): the next run reads the scene again
    pair = scene(tmp_path)
    store_trouble = error_row(InputIssue(pair.image_uri, "cannot read from the store: ...", stage=Stage.STORE))
    fs, out = storage.open_fs(str(tmp_path / "out"))
    assert scene_cache.write(fs, out, [{**store_trouble, "scene": "S1"}], {"S1": "some-key"}) == 0
    assert scene_cache.read(fs, out) == {}


def test_what_became_of_a_tile_is_not_kept_and_a_broken_cache_is_no_cache(tmp_path: Path) -> None:
    pair = scene(tmp_path)
    planned = list(plan_scene(pair, settings(), frozenset(), cut=False))
    tile = next(r for r in planned if r["kind"] == Kind.TILE)
    tile.update(status=Status.FAILED, stage=Stage.INFER, reason="mask inference failed: ...", n_instances=3)
    fs, out = storage.open_fs(str(tmp_path / "out"))
    scene_cache.write(fs, out, planned, {"S1": "k"})
    (replayed,) = [r for r in scene_cache.replay(scene_cache.read(fs, out)["k"], frozenset(), "train")
                   if r["tile_id"] == tile["tile_id"]]
    assert (replayed["status"], replayed["stage"], replayed["reason"], replayed["n_instances"]) == (
        Status.TODO, "", "", 0)
    Path(layout.scene_cache(out)).write_bytes(b"PAR1 truncated")
    assert scene_cache.read(fs, out) == {}
