"""What a run asks of the cluster is declared, and every engine default follows from the
declaration, never from which nodes are up (job.graph.resolve_engine, parser.refuse_relative_paths)."""

from __future__ import annotations

import pytest

from samrs_ray import cli
from samrs_ray.cli import parser
from samrs_ray.errors import ConfigError
from samrs_ray.job import resolve_engine
from samrs_ray.planning.plan import settings_digest
from tests.datasets import config


def sam(**changes):
    return config("in/images", "in/labels", "out", model="sam", model_type="tiny", **changes)


def engine(resolved):
    return resolved.gpus_per_actor, resolved.dtype, resolved.prompt_chunk, resolved.num_actors


@pytest.mark.parametrize("gpus_up", [0, 1, 8])
def test_sam_on_a_cluster_asks_one_gpu_per_actor_whatever_is_up(gpus_up: int) -> None:
    resolved = resolve_engine(sam(address="10.0.0.1:6379"), local_gpus=gpus_up)
    # num_actors None: Ray Data's autoscaling pool, from 1 to as many GPUs as the cluster gives
    assert engine(resolved) == (1.0, "bfloat16", 64, None)


def test_the_same_command_gives_the_same_fingerprint_settings_whatever_is_up() -> None:
    digests = {settings_digest(resolve_engine(sam(address="auto"), gpus).output_settings("sha")) for gpus in (0, 4)}
    assert len(digests) == 1


def test_cpu_only_cluster_flag_turns_the_gpu_request_off() -> None:
    assert engine(resolve_engine(sam(address="auto", gpus_per_actor=0), local_gpus=0)) == (0.0, "float32", 4, 1)


def test_embedded_local_ray_uses_what_the_machine_has() -> None:
    assert engine(resolve_engine(sam(), local_gpus=0)) == (0.0, "float32", 4, 1)
    assert engine(resolve_engine(sam(), local_gpus=2)) == (1.0, "bfloat16", 64, None)


def test_explicit_settings_win_over_the_defaults() -> None:
    resolved = resolve_engine(sam(address="auto", dtype="float32", prompt_chunk=8, num_actors=3), local_gpus=0)
    assert engine(resolved) == (1.0, "float32", 8, 3)
    assert engine(resolve_engine(sam(address="auto", gpus_per_actor=0.5), local_gpus=0))[0] == 0.5


def test_runs_that_need_no_gpu_ask_for_none() -> None:
    assert resolve_engine(config("i", "l", "o", model="box", address="auto"), local_gpus=4).gpus_per_actor == 0
    assert resolve_engine(sam(address="auto", device="cpu"), local_gpus=4).gpus_per_actor == 0


def test_the_box_model_gets_cpu_defaults_even_when_gpus_are_asked_for() -> None:
    # `--model box --gpus-per-actor 1`: no model to put on a GPU, so no bf16, no GPU prompt
    # chunk, and one CPU actor rather than an unbounded pool
    resolved = resolve_engine(config("i", "l", "o", model="box", gpus_per_actor=1, address="auto"), local_gpus=4)
    assert engine(resolved) == (0.0, "float32", 4, 1)


def test_a_negative_gpu_count_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="--gpus-per-actor"):
        sam(gpus_per_actor=-1)


GENERATE = ["generate", "--preset", "sota", "--model", "box"]


def test_inside_a_ray_job_relative_paths_are_refused_before_any_work(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv(parser.RAY_JOB_ENV, "{}")
    code = cli.main([*GENERATE, "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
                     "--out", "out/sota"])
    assert code == 2
    assert "--out out/sota: a relative path inside a Ray job" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_absolute_paths_and_uris_pass_inside_a_ray_job(monkeypatch) -> None:
    monkeypatch.setenv(parser.RAY_JOB_ENV, "{}")
    args = parser.build_parser().parse_args([*GENERATE, "--images", "/data/images", "--labels", "s3://b/labels",
                                          "--out", "gs://b/out", "--checkpoint", "file:///models/sam.pth"])
    parser.refuse_relative_paths(args)  # no error


def test_outside_a_ray_job_relative_paths_are_fine(monkeypatch) -> None:
    monkeypatch.delenv(parser.RAY_JOB_ENV, raising=False)
    parser.refuse_relative_paths(parser.build_parser().parse_args([*GENERATE, "--images", "i", "--labels", "l",
                                                             "--out", "o"]))
