"""SAM 2 and HQ-SAM checkpoints (masks/engine_checkpoint.py): read with weights_only=True, loaded
strictly, and a file of another engine or size refused (exit 2) naming what it is."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from samrs_ray.errors import CheckpointError
from samrs_ray.masks import engine_checkpoint
from samrs_ray.masks.checkpoint import build_tiny_sam
from samrs_ray.masks.hq_sam_model import build_hq_sam
from samrs_ray.masks.hq_sam_model import random_checkpoint as hq_checkpoint
from samrs_ray.masks.sam2_model import build_sam2_model
from samrs_ray.masks.sam2_model import random_checkpoint as sam2_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {name: folder / f"{name}.pt" for name in ("sam", "sam2", "hq-sam")}
    torch.save(build_tiny_sam().state_dict(), paths["sam"])
    sam2_checkpoint("tiny", str(paths["sam2"]))
    hq_checkpoint("tiny", str(paths["hq-sam"]))
    return paths


BUILDERS = {"sam2": build_sam2_model, "hq-sam": build_hq_sam}


@pytest.mark.parametrize("engine", ["sam2", "hq-sam"])
def test_round_trip_and_the_checksum_is_remembered(files, engine, tmp_path: Path):
    model, sha = engine_checkpoint.load(engine, "tiny", BUILDERS[engine], str(files[engine]), str(tmp_path))
    saved = torch.load(files[engine], weights_only=True)
    saved = saved["model"] if engine == "sam2" else saved
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved) and not model.training
    assert engine_checkpoint.check(engine, "tiny", BUILDERS[engine], str(files[engine]), str(tmp_path)) == sha
    from samrs_ray.masks.checkpoint_files import engine_checked_sha256

    assert engine_checked_sha256(engine, "tiny", str(files[engine]), str(tmp_path), None) == sha
    assert engine_checked_sha256(engine, "tiny", None, str(tmp_path), None) == ""


@pytest.mark.parametrize("engine,other,named", [
    ("sam2", "sam", "a sam tiny checkpoint"), ("sam2", "hq-sam", "a hq-sam tiny checkpoint"),
    ("hq-sam", "sam", "a sam tiny checkpoint"), ("hq-sam", "sam2", "a sam2 tiny checkpoint"),
])
def test_a_checkpoint_of_another_engine_is_refused_naming_it(files, engine, other, named, tmp_path: Path):
    with pytest.raises(CheckpointError, match=f"is {named}, not a {engine} tiny one") as raised:
        engine_checkpoint.check(engine, "tiny", BUILDERS[engine], str(files[other]), str(tmp_path))
    assert raised.value.exit_code == 2


def test_a_checkpoint_of_another_size_is_refused_naming_it(files, tmp_path: Path):
    with pytest.raises(CheckpointError, match="is a sam2 tiny checkpoint, not a sam2 hiera_t one; use --model sam2 "
                                              "--model-type tiny"):
        engine_checkpoint.fit("sam2", "hiera_t", torch.nn.Module(), torch.load(files["sam2"], weights_only=True), "f")


def test_missing_or_extra_keys_are_refused(files, tmp_path: Path):
    state = torch.load(files["sam2"], weights_only=True)
    state["model"]["extra.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="does not fit sam2 tiny"):
        engine_checkpoint.load("sam2", "tiny", build_sam2_model, str(path), str(tmp_path))


def test_a_file_that_carries_code_is_refused(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "hook": pickle.loads}, path)
    with pytest.raises(CheckpointError, match="refused or unreadable"):
        engine_checkpoint.load("sam2", "tiny", build_sam2_model, str(path), str(tmp_path))


def test_what_it_is():
    assert engine_checkpoint.what_it_is({"a": torch.zeros(1)}) == "not a checkpoint of SAM, SAM 2 or HQ-SAM"


def test_a_real_size_hq_sam_is_built_on_the_meta_device_and_given_the_files_tensors():
    """vit_b: no random init; every tensor is the checkpoint's, SAM's normalisation is set."""
    model = build_hq_sam("vit_b", on_meta=True)
    state = {name: torch.full(t.shape, 0.5) for name, t in model.state_dict().items()}
    assert engine_checkpoint.describe(state) == ("hq-sam", "vit_b")
    engine_checkpoint.fit("hq-sam", "vit_b", model, state, "file")
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert float(model.mask_decoder.hf_token.weight[0, 0]) == 0.5 and model.pixel_mean.flatten()[0] == 123.675
