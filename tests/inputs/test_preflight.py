"""Mistakes are reported before Ray starts, in seconds, with what to change, and leave nothing
behind (samrs_ray/inputs/preflight.py), as a new user meets them on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samrs_ray.errors import ConfigError
from samrs_ray.inputs import preflight
from tests.datasets import config

SAMRS = Path(sys.executable).parent / "samrs-ray"


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([str(SAMRS), "generate", *args], capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started


def test_a_preset_of_another_format_names_expected_found_and_the_fix(realsamples: Path, tmp_path: Path) -> None:
    dota = realsamples / "dota"
    out = tmp_path / "out" / "sior"
    result, seconds = run_cli("--preset", "sior", "--images", str(dota / "images"), "--labels",
                              str(dota / "labelTxt"), "--out", str(out), "--model", "box")
    assert result.returncode == 2
    message = result.stderr
    assert "--preset sior reads dior labels (.xml files)" in message
    assert "has 7 .txt files" in message
    assert "--preset sota or --label-format dota" in message
    assert "Ray" not in result.stdout + result.stderr  # reported before any Ray started
    assert not (tmp_path / "out").exists()  # nothing left behind
    print(f"reported in {seconds:.1f} s")


def test_a_misspelled_folder_gets_the_nearest_existing_name(realsamples: Path, tmp_path: Path) -> None:
    dota = realsamples / "dota"
    result, _ = run_cli("--preset", "sota", "--images", str(dota / "images"), "--labels", str(dota / "labeltxt"),
                        "--out", str(tmp_path / "out"), "--model", "box")
    assert result.returncode == 2
    assert f"--labels {dota / 'labeltxt'}: no such file or folder; did you mean {dota / 'labelTxt'}?" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_bad_checkpoint_fails_before_ray_and_leaves_no_folder(realsamples: Path, tmp_path: Path) -> None:
    dota = realsamples / "dota"
    bad = tmp_path / "sam_vit_b.pth"
    bad.write_bytes(b"not a checkpoint" * 100)
    result, _ = run_cli("--preset", "sota", "--images", str(dota / "images"), "--labels", str(dota / "labelTxt"),
                        "--out", str(tmp_path / "new" / "out"), "--model-type", "vit_b", "--checkpoint", str(bad))
    assert result.returncode == 2 and str(bad) in result.stderr
    assert not (tmp_path / "new").exists()


def test_sam_without_its_extra_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"samrs-ray\[sam\]"):
        preflight.require_engine_extra(config("i", "l", "o", model="sam"))
    preflight.require_engine_extra(config("i", "l", "o", model="box"))  # the box baseline needs none of it


def test_check_writable_removes_the_folders_it_created(tmp_path: Path) -> None:
    preflight.check_writable(config("i", "l", tmp_path / "a" / "b" / "c"))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    preflight.check_writable(config("i", "l", tmp_path / "kept" / "new"))
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


def test_the_box_quick_start_runs_without_torch(realsamples: Path, tmp_path: Path) -> None:
    """The quick start installs no torch: the box baseline must run end to end (driver and every Ray
    worker) with torch, torchvision and segment_anything unimportable."""
    blocker = tmp_path / "no-torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'segment_anything'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)')\n"
        "sys.meta_path.insert(0, NoTorch())\n")
    dota = realsamples / "dota"
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([str(SAMRS), "generate", "--preset", "sota", "--images", str(dota / "images"),
                             "--labels", str(dota / "labelTxt"), "--out", str(tmp_path / "out"), "--model", "box"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "blocked by the test" not in result.stdout + result.stderr
    assert (tmp_path / "out" / "_run.json").exists()
    sam = subprocess.run([str(SAMRS), "generate", "--preset", "sota", "--images", str(dota / "images"),
                          "--labels", str(dota / "labelTxt"), "--out", str(tmp_path / "sam")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert sam.returncode == 2 and "pip install 'samrs-ray[sam]'" in sam.stderr
