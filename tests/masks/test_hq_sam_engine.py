"""samrs_ray/masks/hq_sam_engine.py: the driver's check and the actor's build of HQ-SAM, and its
hq_token_only setting in the fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs_ray.cli.parser import build_parser, config_from_args
from samrs_ray.masks.engines import ENGINES
from samrs_ray.masks.hq_sam import HqSamBackend
from samrs_ray.masks.hq_sam_model import random_checkpoint
from tests.datasets import config


def test_check_then_build_with_the_checked_checksum(tmp_path: Path) -> None:
    checkpoint = tmp_path / "hq_tiny.pth"
    random_checkpoint("tiny", str(checkpoint))
    run = config("i", "l", "o", model="hq-sam", model_type="tiny", checkpoint=str(checkpoint),
                 cache_dir=str(tmp_path / "cache"), hq_token_only=True)
    sha = ENGINES["hq-sam"].check(run)
    backend = ENGINES["hq-sam"].build(run, sha)
    assert isinstance(backend, HqSamBackend) and backend.model_id == "hq-sam-tiny" and backend.hq_token_only


def test_hq_token_only_is_in_the_fingerprint_with_upstreams_default() -> None:
    default = config("i", "l", "o", model="hq-sam", model_type="vit_b")
    assert default.hq_token_only is False and default.model_id == "hq-sam-vit_b"
    alone = config("i", "l", "o", model="hq-sam", model_type="vit_b", hq_token_only=True)
    assert default.output_settings("x")["hq_token_only"] is False
    assert alone.output_settings("x")["hq_token_only"] is True


def test_the_command_line_takes_the_engine_its_type_and_the_setting() -> None:
    args = build_parser().parse_args(["generate", "--preset", "sota", "--images", "i", "--labels", "l", "--out", "o",
                                      "--model", "hq-sam", "--hq-token-only"])
    run = config_from_args(args)
    assert (run.model, run.model_type, run.hq_token_only) == ("hq-sam", "vit_h", True)


def test_help_lists_every_engine_and_its_types(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{sam,sam2,hq-sam,box}" in text
    assert "sam2: hiera_t, hiera_s, hiera_b+, hiera_l, tiny (default hiera_l)" in text
    assert "hq-sam: vit_b, vit_l, vit_h, tiny (default vit_h)" in text
