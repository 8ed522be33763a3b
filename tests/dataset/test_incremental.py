"""The incremental core on its own, without Ray: planning a scene, grouping scenes, shard names,
which shards make a version, copying rows out of shards, reading the shard index, clean-up,
and one tile's outputs."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from samrs_ray.dataset import incremental, layout, manifest, storage
from samrs_ray.dataset.incremental import ShardIndex
from samrs_ray.dataset.versions import RunRecord
from samrs_ray.encoding.rle import decode_rle
from samrs_ray.encoding.tile import encode_tile, output_paths
from samrs_ray.inputs.listing import ScenePair
from samrs_ray.job.rows import Kind, Stage, Status
from samrs_ray.masks.backend import pack_masks
from samrs_ray.planning.plan import PlanSettings, group_scenes, plan_scene
from tests.datasets import SOTA, instances_table, scene, settings, tiles_table, write_shard

# --- planning -----------------------------------------------------------------------------------


def test_a_scene_plans_a_summary_and_a_row_per_window_with_objects(tmp_path: Path) -> None:
    rows = list(plan_scene(scene(tmp_path), settings(), frozenset()))
    summary = [r for r in rows if r["kind"] == Kind.SCENE]
    tiles = [r for r in rows if r["kind"] == Kind.TILE]
    assert len(summary) == 1 and summary[0]["status"] == Status.OK
    # 1500x900 with 1024/200 windows: x at 0 and 476, y at 0 -> 2 windows, one object in each
    assert (summary[0]["n_windows"], summary[0]["n_empty"], summary[0]["n_objects"]) == (2, 0, 2)
    assert [t["tile_id"] for t in tiles] == ["S1__1024__0___0", "S1__1024__476___0"]
    assert all(t["status"] == Status.TODO and len(t["pixels"]) == 1024 * 1024 * 3 for t in tiles)
    pixels = np.frombuffer(tiles[1]["pixels"], np.uint8).reshape(1024, 1024, 3)
    original = np.array(Image.open(tmp_path / "images" / "S1.png"))
    assert np.array_equal(pixels[:900, :1024], original[:, 476:1500])  # the window, cut exactly
    assert (pixels[900:] == SOTA.pad_value).all()  # padded below the scene


def test_a_big_scene_streams_its_tiles_instead_of_holding_them_all(tmp_path: Path) -> None:
    """16 tiles of 3 MB from one 3000x3000 scene (27 MB as RGB): planning holds the scene's file,
    its pixels once, and the tiles not yet taken; never all 16 tiles, nor a second copy of the pixels."""
    starts = (0, 824, 1648, 1976)  # the 1024/200 windows of 3000 pixels
    boxes = [("plane", x + 500, y + 500, x + 540, y + 530) for x in starts for y in starts]
    pair = scene(tmp_path, size=(3000, 3000), boxes=boxes)
    tracemalloc.start()
    try:
        tiles = 0
        for row in plan_scene(pair, settings(), frozenset()):
            tiles += row["kind"] == Kind.TILE and len(row["pixels"]) == 1024 * 1024 * 3
            del row  # taken and gone, as Ray Data does with each block it has sent on
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tiles == 16
    encoded, pixels, tile = Path(pair.image_uri).stat().st_size, 27e6, 3 * 2**20
    assert peak < encoded + pixels + 2 * tile, f"planning peaked at {peak / 1e6:.0f} MB"


def test_a_known_fingerprint_is_skipped_without_decoding_pixels(tmp_path: Path) -> None:
    pair = scene(tmp_path)
    first = [r for r in plan_scene(pair, settings(), frozenset()) if r["kind"] == Kind.TILE]
    again = [r for r in plan_scene(pair, settings(), frozenset({first[0]["fingerprint"]})) if r["kind"] == Kind.TILE]
    assert [r["status"] for r in again] == [Status.SKIPPED, Status.TODO]
    assert again[0]["pixels"] == b"" and again[0]["fingerprint"] == first[0]["fingerprint"]


def test_fingerprints_change_with_settings_and_objects_not_with_nothing(tmp_path: Path) -> None:
    pair = scene(tmp_path)
    fingerprints = lambda s: [r["fingerprint"] for r in plan_scene(pair, s, frozenset()) if r["kind"] == Kind.TILE]
    base = fingerprints(settings())
    assert fingerprints(settings()) == base
    other = PlanSettings(SOTA, digest="another-digest", max_pixels=10**8, storage_options={})
    assert set(fingerprints(other)).isdisjoint(base)
    scene(tmp_path, boxes=[("plane", 100, 100, 210, 180), ("ship", 1300, 700, 1400, 760)])  # first box moved
    moved = fingerprints(settings())
    assert moved[0] != base[0] and moved[1] == base[1]


def test_an_unreadable_scene_is_one_error_row_naming_it(tmp_path: Path) -> None:
    pair = scene(tmp_path)
    Path(pair.image_uri).write_bytes(b"not a png")
    rows = list(plan_scene(pair, settings(), frozenset()))
    assert [(r["kind"], r["stage"]) for r in rows] == [(Kind.ERROR, Stage.READ)]
    assert rows[0]["source_uri"] == pair.image_uri and rows[0]["reason"]


def test_an_object_in_no_tile_is_reported(tmp_path: Path) -> None:
    # windows at x 0, 824 and 1476; a long thin object across them all: none holds 70% of it
    pair = scene(tmp_path, size=(2500, 900), boxes=[("bridge", 400, 400, 2100, 420)])
    rows = list(plan_scene(pair, settings(), frozenset()))
    errors = [r for r in rows if r["kind"] == Kind.ERROR]
    assert len(errors) == 1 and errors[0]["stage"] == Stage.TILE and "in no tile" in errors[0]["reason"]
    assert errors[0]["line"] == 1


def test_scenes_group_by_bytes_in_order_with_enough_groups_and_big_ones_alone() -> None:
    pairs = [ScenePair(f"S{i}", f"/i/S{i}.png", f"/l/S{i}.txt") for i in range(6)]
    sizes = {p.image_uri: 10 for p in pairs} | {"/i/S3.png": 1000}
    groups = group_scenes(pairs, sizes, parallelism=2, group_bytes=30)
    assert [p for g in groups for p in g] == pairs  # every scene once, in order
    assert [[p.name for p in g] for g in groups] == [["S0", "S1", "S2"], ["S3"], ["S4", "S5"]]
    assert len(group_scenes(pairs, {p.image_uri: 10 for p in pairs}, parallelism=4)) >= 4


# --- shards -------------------------------------------------------------------------------------








def test_shard_names_come_from_content_not_order() -> None:
    pairs = [("a", "1"), ("b", "2")]
    assert manifest.shard_name(pairs) == manifest.shard_name(reversed(pairs))
    assert manifest.shard_name(pairs) != manifest.shard_name([("a", "1"), ("b", "3")])


def index_of(shards: dict[str, dict[str, str]]) -> incremental.ShardIndex:
    index = incremental.ShardIndex()
    for name, tile_fps in shards.items():
        index.add(name, tiles_table(tile_fps))
    return index


def test_each_wanted_tile_comes_from_exactly_one_shard_committed_first() -> None:
    index = index_of({"old": {"a": "1", "b": "1"}, "new": {"b": "1", "c": "2"}, "stale": {"d": "9"}})
    wanted = {"a": "1", "b": "1", "c": "2"}
    selection, missing = incremental.select_shards(wanted, index, ["old", "new", "stale"])
    assert missing == set()
    assert selection.keep == ["old"]  # whole: all its tiles wanted
    assert selection.copy == {"new": ["c"]}  # b is already covered by 'old'
    selection, missing = incremental.select_shards({"a": "2"}, index, ["old", "new"])
    assert missing == {"a"} and selection.keep == [] and selection.copy == {}


def test_shard_order_is_committed_then_new_then_leftovers() -> None:
    index = index_of({"c1": {"a": "1"}, "n1": {"b": "1"}, "left": {"c": "1"}})
    record = RunRecord("r", "", "", {}, {}, {}, shards=["c1"], errors=[], changes={})
    assert incremental.shard_order(index, record, ["n1"]) == ["c1", "n1", "left"]


def test_copied_rows_make_new_shards_the_index_reads_back(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    big = write_shard(fs, out, {"a": "1", "b": "1", "c": "1"})
    copied = incremental.copy_rows(fs, out, {big: ["a", "c"]}, shard_tiles=1, index=incremental.ShardIndex())
    assert len(copied) == 2  # at most one tile per shard
    # an incomplete shard (tiles file without its instances) and a broken file are not indexed
    manifest.write_table(fs, layout.shard_path(out, "tiles", "orphan"), tiles_table({"x": "1"}))
    storage.write_atomic(fs, layout.shard_path(out, "tiles", "broken"), b"not parquet")
    storage.write_atomic(fs, layout.shard_path(out, "instances", "broken"), b"not parquet")
    index = incremental.read_index(fs, out)
    assert set(index.tiles) == {big, *copied}
    assert sorted(t for name in copied for t in index.tiles[name]) == ["a", "c"]
    instances = [manifest.read_table(fs, layout.shard_path(out, "instances", n)) for n in copied]
    assert sorted(t.column("tile_id")[0].as_py() for t in instances) == ["a", "c"]


def version(shards: list[str], errors: tuple[str, ...] = ()) -> RunRecord:
    return RunRecord("r", "", "", {}, {}, {}, shards=shards, errors=list(errors), changes={})


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_clean_up_after_a_commit_keeps_exactly_what_the_kept_versions_use(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    previous = write_shard(fs, out, {"a": "1"})
    latest = write_shard(fs, out, {"a": "2"})  # tile a changed: new PNG names
    dropped = write_shard(fs, out, {"b": "1"})
    for tile, fp in (("a", "1"), ("a", "2"), ("b", "1")):
        for folder in layout.PNG_FOLDERS:
            storage.write_atomic(fs, layout.png_path(out, folder, tile, fp), b"png")
    manifest.write_table(fs, layout.shard_path(out, "errors", "old-run"), pa.table({"x": [1]}))
    storage.write_atomic(fs, layout.png_path(out, "labels", "c", "1") + ".tmp", b"half")  # a killed write
    index = incremental.read_index(fs, out)

    # the last two versions kept: both of a's PNG sets stay, b's go
    deleted = incremental.collect_garbage(fs, out, [version([previous]), version([latest])], index, None)
    assert deleted == 2 + 3 + 1 + 1  # b's shard pair, b's three PNGs, the old errors shard, the temp file
    pngs = [f"{folder}/a.{fp}.png" for folder in ("color", "labels", "tiles") for fp in "12"]
    assert files_under(tmp_path / "out") == sorted(
        pngs + [f"manifest/{t}/{n}.parquet" for t in ("instances", "tiles") for n in (previous, latest)])
    assert dropped not in str(files_under(tmp_path / "out"))

    # only the latest kept: the previous version's files go
    assert incremental.collect_garbage(fs, out, [version([latest])], index, None) == 2 + 3
    assert not (tmp_path / "out" / "labels" / "a.1.png").exists()


def test_clean_up_removes_the_temp_files_of_killed_writes_outside_the_shard_folders(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    killed = [storage.temp_beside(path, b"half") for path in (
        layout.run_record(out), layout.version_path(out, 3), layout.active_path(out, "dead"), layout.scene_cache(out))]
    storage.write_atomic(fs, layout.version_path(out, 2), b"{}")  # not a temp file: stays
    assert incremental.collect_garbage(fs, out, [version([])], ShardIndex(), spare_after=None) == 4
    assert not any(Path(path).exists() for path in killed)
    assert files_under(tmp_path / "out") == ["_versions/00000002.json"]


def test_clean_up_spares_files_younger_than_another_run_at_work(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    theirs = write_shard(fs, out, {"b": "1"})  # written by a run still at work
    storage.write_atomic(fs, layout.png_path(out, "labels", "b", "1"), b"png")
    index = incremental.read_index(fs, out)
    started = (tmp_path / "out" / "labels" / "b.1.png").stat().st_mtime - 1
    assert incremental.collect_garbage(fs, out, [version([])], index, spare_after=started) == 0
    assert incremental.collect_garbage(fs, out, [version([])], index, spare_after=started + 3600) == 3
    assert not list(tmp_path.glob(f"out/manifest/*/{theirs}.parquet"))


def test_a_shard_once_written_is_never_written_again(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    name = write_shard(fs, out, {"a": "1"})
    path = tmp_path / "out" / "manifest" / "tiles" / f"{name}.parquet"
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    assert manifest.write_shard(fs, out, tiles_table({"a": "1"}).set_column(
        14, "created_at", pa.array(["2030-01-01T00:00:00+00:00"])), instances_table(["a"])) == name
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# --- one tile's outputs -------------------------------------------------------------------------


def test_a_tile_encodes_to_its_pngs_and_instance_rows(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    masks = np.zeros((2, 6, 8), dtype=bool)
    masks[0, 1:4, 1:5] = True
    masks[1, 2:5, 3:7] = True  # overlaps the first: the later instance wins (SAMRS's rule)
    objects = [{"class_id": 4, "class_name": "plane", "difficult": False, "hbox": [1, 1, 5, 4], "polygon": None,
                "line": 1},
               {"class_id": 5, "class_name": "ship", "difficult": True, "hbox": [3, 2, 7, 5], "polygon": None,
                "line": 2}]
    rgb = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    row = {"tile_id": "S1__8__0___0", "objects": json.dumps(objects), "height": 6, "width": 8, "cut": True,
           "masks": pack_masks(masks), "scores": np.array([0.9, 0.8], np.float32).tobytes(),
           "prompt_boxes": np.array([[1, 1, 5, 4], [3, 2, 7, 5]], np.float32).tobytes(), "pixels": rgb.tobytes(),
           "label_source_uri": "/l/S1.txt", "fingerprint": "f" * 64, "pixels_key": "0" * 64}
    instances = encode_tile(fs, out, row, "hbox", "annotation", SOTA.palette).to_pylist()
    paths = output_paths(out, row)
    assert paths["labels"] == str(tmp_path / "out" / "labels" / "S1__8__0___0.ffffffffffffffff.png")
    label = np.array(Image.open(paths["labels"]))
    expected = np.full((6, 8), 255, np.uint8)
    expected[masks[0]] = 4
    expected[masks[1]] = 5
    assert np.array_equal(label, expected)
    assert np.array_equal(np.array(Image.open(paths["tiles"])), rgb)
    assert Image.open(paths["color"]).mode == "P"
    assert [(i["instance_id"], i["class_name"], i["difficult"], i["source_line"]) for i in instances] == [
        (0, "plane", False, 1), (1, "ship", True, 2)]
    for i, mask in zip(instances, masks):
        rle = i["mask_rle"]
        assert np.array_equal(decode_rle(rle["counts"], rle["height"], rle["width"]), mask)
        assert i["area"] == mask.sum()
    assert instances[0]["predicted_iou"] == pytest.approx(0.9)


def test_new_labels_on_the_same_pixels_get_new_label_files_and_keep_the_tile_png(tmp_path: Path) -> None:
    fs, out = storage.open_fs(str(tmp_path / "out"))
    objects = [{"class_id": 4, "class_name": "plane", "difficult": False, "hbox": [1, 1, 5, 4], "polygon": None,
                "line": 1}]
    masks = np.zeros((1, 6, 8), dtype=bool)
    row = {"tile_id": "S1__8__0___0", "objects": json.dumps(objects), "height": 6, "width": 8, "cut": True,
           "masks": pack_masks(masks), "scores": np.zeros(1, np.float32).tobytes(),
           "prompt_boxes": np.zeros((1, 4), np.float32).tobytes(), "label_source_uri": "/l/S1.txt",
           "pixels": np.zeros((6, 8, 3), np.uint8).tobytes(), "fingerprint": "a" * 64, "pixels_key": "0" * 64}
    encode_tile(fs, out, row, "hbox", "annotation", SOTA.palette)
    first = output_paths(out, row)
    tile_png = Path(first["tiles"]).stat().st_mtime_ns
    edited = {**row, "fingerprint": "b" * 64}  # a label edit: same pixels, new fingerprint
    encode_tile(fs, out, edited, "hbox", "annotation", SOTA.palette)
    second = output_paths(out, edited)
    assert second["labels"] != first["labels"] and Path(first["labels"]).is_file()  # the old one untouched
    assert second["tiles"] == first["tiles"] and Path(first["tiles"]).stat().st_mtime_ns == tile_png

