"""Checkpoint fetching and loading (masks/checkpoint.py and masks/checkpoint_files.py): round
trip, checksum, remote cache, hashes remembered per version, and every refusal."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
import torch
from segment_anything import sam_model_registry

from samrs_ray.masks import checkpoint_files
from samrs_ray.masks.checkpoint import (
    MODEL_TYPES,
    CheckpointError,
    build_tiny_sam,
    check_checkpoint,
    guess_model_type,
    load_sam,
)
from samrs_ray.masks.checkpoint_files import cache_name, fetch_checkpoint, sha256_file
from samrs_ray.masks.model_types import OFFICIAL_CHECKPOINTS


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAM with random weights (seed 123, unlike load_sam's built-in seed), saved as SAM is."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save(build_tiny_sam().state_dict(), path)
    return path


def test_round_trip_loads_the_saved_weights_and_records_the_checksum(tiny_checkpoint: Path, tmp_path: Path):
    model, sha = load_sam("tiny", str(tiny_checkpoint), str(tmp_path / "cache"))
    saved = torch.load(tiny_checkpoint, weights_only=True)
    assert sha == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest() == sha256_file(str(tiny_checkpoint))
    assert not model.training
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    # a local file is used in place, not copied; only its hash is remembered
    assert [p.relative_to(tmp_path / "cache").parts[0] for p in (tmp_path / "cache").rglob("*")] == ["sha256"] * 2


def test_loaded_model_equals_one_built_and_filled_the_usual_way(tiny_checkpoint: Path, tmp_path: Path):
    """load_sam builds on the meta device and takes the file's tensors; the result must be the model
    one gets by building SAM (random init) and loading the file into it: every parameter and buffer
    (pixel_mean and pixel_std are in no checkpoint), their dtypes, and the image embedding of a tile."""
    model, _ = load_sam("tiny", str(tiny_checkpoint), str(tmp_path))
    usual = build_tiny_sam()
    usual.load_state_dict(torch.load(tiny_checkpoint, weights_only=True))
    ours = dict(model.named_parameters()) | dict(model.named_buffers())
    theirs = dict(usual.named_parameters()) | dict(usual.named_buffers())
    assert ours.keys() == theirs.keys() >= {"pixel_mean", "pixel_std"}
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and ours[name].device == tensor.device, name
        assert torch.equal(ours[name], tensor), name
    image = torch.randint(0, 256, (1, 3, 1024, 1024)).float()
    with torch.no_grad():
        assert torch.equal(model.image_encoder(model.preprocess(image[0])[None]),
                           usual.image_encoder(usual.preprocess(image[0])[None]))


def test_a_copy_other_than_the_drivers_is_refused(tiny_checkpoint: Path, tmp_path: Path):
    """Each mask actor loads its own copy; if its bytes are not the ones the driver checked (the file
    was replaced during the run, or a node's cache is stale), it refuses, naming both checksums."""
    _, sha = load_sam("tiny", str(tiny_checkpoint), str(tmp_path), expected_sha=sha256_file(str(tiny_checkpoint)))
    other = "f" * 64
    with pytest.raises(CheckpointError, match=f"tiny.pth: this worker's copy .* has sha256 {sha[:12]}.*ffffffffffff"):
        load_sam("tiny", str(tiny_checkpoint), str(tmp_path), expected_sha=other)


def test_a_node_hashes_a_checkpoint_once_per_version(tiny_checkpoint: Path, tmp_path: Path, monkeypatch):
    """The driver's check hashes the file; the actors' loads on the same node, and the next run,
    find that hash instead of reading the file again. A file rewritten in place is hashed anew,
    even when it keeps its size and modification time."""
    path = tmp_path / "tiny.pth"
    path.write_bytes(tiny_checkpoint.read_bytes())
    hashed: list[str] = []
    real = checkpoint_files.sha256_file
    monkeypatch.setattr(checkpoint_files, "sha256_file", lambda p: hashed.append(p) or real(p))
    cache = str(tmp_path / "cache")
    sha = check_checkpoint("tiny", str(path), cache)
    for _ in range(3):
        assert load_sam("tiny", str(path), cache, expected_sha=sha)[1] == sha
    assert check_checkpoint("tiny", str(path), cache) == sha
    assert hashed == [str(path)]

    stat = path.stat()
    state = torch.load(path, weights_only=True)
    next(iter(state.values())).view(-1)[0] += 1  # one weight
    torch.save(state, path)
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CheckpointError, match="the job's driver read"):
        load_sam("tiny", str(path), cache, expected_sha=sha)
    assert len(hashed) == 2


def test_a_fetched_checkpoint_is_hashed_as_it_arrives(tiny_checkpoint: Path, tmp_path: Path, memory_fs, monkeypatch):
    with fsspec.open("memory://ckpts/hashed.pth", "wb") as f:
        f.write(tiny_checkpoint.read_bytes())
    monkeypatch.setattr(checkpoint_files, "sha256_file", lambda p: pytest.fail(f"{p} was read again to hash it"))
    sha = check_checkpoint("tiny", "memory://ckpts/hashed.pth", str(tmp_path))
    assert sha == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()


def test_half_precision_checkpoint_is_upcast(tiny_checkpoint: Path, tmp_path: Path):
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in torch.load(tiny_checkpoint, weights_only=True).items()}, path)
    model, _ = load_sam("tiny", str(path), str(tmp_path))
    assert {t.dtype for t in model.state_dict().values()} == {torch.float32}


def test_legacy_format_checkpoint_loads(tiny_checkpoint: Path, tmp_path: Path):
    """Files saved before torch 1.6's zip format cannot be memory-mapped; they are read whole."""
    path = tmp_path / "legacy.pth"
    saved = torch.load(tiny_checkpoint, weights_only=True)
    torch.save(saved, path, _use_new_zipfile_serialization=False)
    model, _ = load_sam("tiny", str(path), str(tmp_path))
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)


def test_tiny_without_checkpoint_is_seeded_random_with_no_checksum(tmp_path: Path):
    first, sha = load_sam("tiny", None, str(tmp_path))
    second, _ = load_sam("tiny", None, str(tmp_path))
    assert sha == ""
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_official_checkpoints_are_the_release_files():
    assert set(OFFICIAL_CHECKPOINTS) == {"vit_h", "vit_l", "vit_b"}
    assert OFFICIAL_CHECKPOINTS["vit_h"] == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"
    assert OFFICIAL_CHECKPOINTS["vit_b"].endswith("/sam_vit_b_01ec64.pth")


@pytest.mark.parametrize("model_type", ["vit_h", "vit_l", "vit_b"])
def test_model_type_is_told_from_the_state_dict_shapes(model_type: str):
    with torch.device("meta"):  # the real architecture, without allocating its weights
        state = sam_model_registry[model_type]().state_dict()
    assert guess_model_type(state) == model_type


def test_wrong_model_type_names_the_file_and_the_right_type(tiny_checkpoint: Path, tmp_path: Path):
    with pytest.raises(CheckpointError) as error:
        load_sam("vit_b", str(tiny_checkpoint), str(tmp_path))
    message = str(error.value)
    assert str(tiny_checkpoint) in message and "vit_b" in message and "'tiny'" in message


def test_state_dict_missing_a_key_is_a_clear_error(tiny_checkpoint: Path, tmp_path: Path):
    state = torch.load(tiny_checkpoint, weights_only=True)
    del state["mask_decoder.iou_token.weight"]
    path = tmp_path / "incomplete.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit SAM tiny") as error:
        load_sam("tiny", str(path), str(tmp_path))
    assert str(path) in str(error.value) and "iou_token" in str(error.value)


def test_the_driver_check_finds_what_loading_finds_without_building_the_model(tiny_checkpoint: Path, tmp_path: Path):
    """check_checkpoint (the job's driver) matches the file against a meta-device model: same checksum
    as load_sam for a good file, the same errors for a wrong type, a missing key or a wrong shape."""
    _, checksum = load_sam("tiny", str(tiny_checkpoint), str(tmp_path))
    assert check_checkpoint("tiny", str(tiny_checkpoint), str(tmp_path)) == checksum != ""
    assert check_checkpoint("tiny", None, str(tmp_path)) == ""
    with pytest.raises(CheckpointError, match="'tiny'"):
        check_checkpoint("vit_b", str(tiny_checkpoint), str(tmp_path))
    state = torch.load(tiny_checkpoint, weights_only=True)
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.iou_prediction_head.layers.0.weight"] = torch.zeros(3, 3)
    path = tmp_path / "misfit.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit SAM tiny") as error:
        check_checkpoint("tiny", str(path), str(tmp_path))
    assert "iou_token" in str(error.value) and "size mismatch" in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_is_a_clear_error(tiny_checkpoint: Path, tmp_path: Path, damage: str):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / f"{damage}.pth"
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint\n" * 100)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as error:
        load_sam("tiny", str(path), str(tmp_path))
    assert str(path) in str(error.value)


class CreatesMarkerWhenUnpickled:
    """A pickle payload that runs code on load: unpickling it creates `marker`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_that_carries_code_is_refused(tiny_checkpoint: Path, tmp_path: Path):
    marker = tmp_path / "code-ran"
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["payload"] = CreatesMarkerWhenUnpickled(str(marker))
    path = tmp_path / "evil.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="refused to load") as error:
        load_sam("tiny", str(path), str(tmp_path))
    assert str(path) in str(error.value)
    assert not marker.exists()
    # the payload is real: a plain unpickler would have run it
    pickle.loads(pickle.dumps(CreatesMarkerWhenUnpickled(str(marker))))
    assert marker.exists()


@pytest.fixture
def memory_fs():
    fs = fsspec.filesystem("memory")
    yield fs
    fs.rm("/ckpts", recursive=True) if fs.exists("/ckpts") else None


def test_remote_checkpoint_is_copied_once_into_the_cache(tiny_checkpoint: Path, tmp_path: Path, memory_fs):
    uri = "memory://ckpts/models/tiny sam.pth"
    memory_fs.pipe(uri, tiny_checkpoint.read_bytes())
    cache = tmp_path / "cache"
    path = fetch_checkpoint(uri, str(cache))
    assert Path(path).parent == cache and Path(path).read_bytes() == tiny_checkpoint.read_bytes()
    assert " " not in Path(path).name and Path(path).name.endswith("tiny_sam.pth")
    # no temporary file left behind; the copy's hash, taken as it arrived, is remembered
    assert sorted(os.listdir(cache)) == sorted([Path(path).name, "sha256"]) and len(os.listdir(cache / "sha256")) == 1

    assert fetch_checkpoint(uri, str(cache)) == path  # the same version: not copied again
    assert sorted(os.listdir(cache)) == sorted([Path(path).name, "sha256"])

    memory_fs.rm(uri)  # offline, or the object gone: the cached copy still serves, with a warning
    with pytest.warns(UserWarning, match="using the cached copy"):
        assert fetch_checkpoint(uri, str(cache)) == path
    with pytest.warns(UserWarning, match="using the cached copy"):
        model, sha = load_sam("tiny", uri, str(cache))
    assert sha == sha256_file(str(tiny_checkpoint))


def test_a_checkpoint_replaced_on_s3_is_fetched_again(tiny_checkpoint: Path, tmp_path: Path, s3):
    """A nightly run after new weights were uploaded under the same URI must use them: same size,
    other bytes (only the ETag tells them apart), on a real S3 server."""
    uri = s3.uri(f"test_checkpoint/{os.getpid()}-{tmp_path.name}/sam.pth")
    fs = fsspec.filesystem("s3", **s3.storage_options)
    first = tiny_checkpoint.read_bytes()
    fs.pipe_file(uri, first)
    cache = tmp_path / "cache"
    old = fetch_checkpoint(uri, str(cache), s3.storage_options)
    assert Path(old).read_bytes() == first
    _, old_sha = load_sam("tiny", uri, str(cache), s3.storage_options)

    torch.manual_seed(7)
    second = tmp_path / "retrained" / tiny_checkpoint.name  # the same name inside torch's zip: the same size
    second.parent.mkdir()
    torch.save(build_tiny_sam().state_dict(), second)
    assert second.stat().st_size == len(first) and second.read_bytes() != first
    fs.pipe_file(uri, second.read_bytes())

    new = fetch_checkpoint(uri, str(cache), s3.storage_options)
    assert Path(new).read_bytes() == second.read_bytes()
    assert sorted(os.listdir(cache)) == sorted([Path(new).name, "sha256"])  # the superseded copy is gone
    assert len(os.listdir(cache / "sha256")) == 1  # and so is its remembered hash
    _, new_sha = load_sam("tiny", uri, str(cache), s3.storage_options)
    assert new_sha == sha256_file(str(second)) != old_sha


def test_unfetchable_checkpoint_names_the_uri_and_leaves_no_partial_file(tmp_path: Path, memory_fs):
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="memory://ckpts/missing.pth: cannot fetch"):
        fetch_checkpoint("memory://ckpts/missing.pth", str(cache))
    assert os.listdir(cache) == []
    with pytest.raises(CheckpointError, match="not found"):
        load_sam("tiny", str(tmp_path / "nowhere.pth"), str(cache))


def test_cache_name_cannot_escape_the_cache_dir():
    name = cache_name("s3://bucket/../../etc/.passwd")
    assert "/" not in name and not name.startswith(".") and name.endswith("passwd")
    assert cache_name("s3://a/x.pth") != cache_name("s3://b/x.pth")


def test_unknown_model_type_is_refused(tmp_path: Path):
    assert MODEL_TYPES == ("vit_h", "vit_l", "vit_b", "tiny")
    with pytest.raises(ValueError, match="unknown SAM model type 'vit_x'"):
        load_sam("vit_x", None, str(tmp_path))


def test_a_node_downloads_a_remote_checkpoint_once_while_its_actors_start_together(tmp_path: Path, monkeypatch):
    """The mask actors of a node fetch under one lock per URI: never two downloads at once, and
    the ones that waited find the finished copy."""
    import threading
    import time


    active, most, downloads = [0], [0], []
    real = checkpoint_files.fetch_unlocked

    def counted(uri, cache_dir, storage_options):
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.2)
        try:
            path = real(uri, cache_dir, storage_options)
            downloads.append(path)
            return path
        finally:
            active[0] -= 1

    monkeypatch.setattr(checkpoint_files, "fetch_unlocked", counted)
    with fsspec.open("memory://models/lock-test.pth", "wb") as f:
        f.write(b"weights")
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(
        checkpoint_files.fetch_checkpoint("memory://models/lock-test.pth", str(tmp_path)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and len(set(paths)) == 1 and len(paths) == 3
    assert sorted(os.listdir(tmp_path)) == sorted([Path(paths[0]).name, "sha256"])


def test_a_checkpoint_this_node_checked_is_not_checked_again_nor_torch_imported(tiny_checkpoint: Path, tmp_path: Path):
    """The driver's start-up on a warm node (a nightly run with the same checkpoint): its hash and
    its check as SAM of that type are remembered, so the driver imports no torch (~4 s)."""
    cache = tmp_path / "cache"
    script = (
        "import sys, json\n"
        "from samrs_ray.inputs.presets import PRESETS\nfrom samrs_ray.config import JobConfig\n"
        "from samrs_ray.job.actor import model_checksum\n"
        f"config = JobConfig(preset=PRESETS['sota'], images='i', labels='l', out='o', model='sam', model_type='tiny',"
        f" checkpoint={str(tiny_checkpoint)!r}, cache_dir={str(cache)!r})\n"
        "print(json.dumps([model_checksum(config), 'torch' in sys.modules]))\n")
    run = lambda: json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,  # noqa: E731
                                            check=True).stdout.splitlines()[-1])
    expected = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert run() == [expected, True]  # the first time: checked with torch
    assert run() == [expected, False]  # then: remembered
