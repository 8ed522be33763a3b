"""samrs_ray/masks/sam2_engine.py: the driver's check and the actor's build of SAM 2.1."""

from __future__ import annotations

from pathlib import Path

from samrs_ray.masks.engines import ENGINES
from samrs_ray.masks.sam2 import Sam2Backend
from samrs_ray.masks.sam2_model import random_checkpoint
from tests.datasets import config


def test_default_type_and_model_id() -> None:
    assert config("i", "l", "o", model="sam2").model_id == "sam2-hiera_l"
    assert config("i", "l", "o", model="sam2", model_type="hiera_b+").model_id == "sam2-hiera_b+"


def test_check_then_build_with_the_checked_checksum(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam2_tiny.pt"
    random_checkpoint("tiny", str(checkpoint))
    run = config("i", "l", "o", model="sam2", model_type="tiny", checkpoint=str(checkpoint),
                 cache_dir=str(tmp_path / "cache"))
    sha = ENGINES["sam2"].check(run)
    assert len(sha) == 64 and ENGINES["sam2"].check(run) == sha  # the second time from the node's memo
    backend = ENGINES["sam2"].build(run, sha)
    assert isinstance(backend, Sam2Backend) and (backend.model_id, backend.checksum) == ("sam2-tiny", sha)
    assert not backend.settings.sdpa and backend.settings.pack


def test_fingerprint_settings_name_the_engine_type_and_checksum() -> None:
    sam = config("i", "l", "o", model="sam", model_type="tiny").output_settings("abc")
    sam2 = config("i", "l", "o", model="sam2", model_type="tiny").output_settings("abc")
    assert (sam2["model"], sam2["model_checksum"]) == ("sam2-tiny", "abc") and sam2 != sam
    assert "hq_token_only" not in sam2 and "hq_token_only" not in sam  # an hq-sam setting only
