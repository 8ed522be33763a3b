"""The nightly path as users hit it: an unchanged night over scenes that made no tile plans
nothing; the store failing on a scene keeps its committed tiles and says so (exit 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from samrs_ray.faults import CRASH_AT_ENV
from tests import REPO
from tests.datasets import dataset_rows, synthetic_scenes, write_scene

pytestmark = pytest.mark.slow


def generate(data: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "samrs_ray.cli", "generate", "--preset", "sota", "--model", "box",
               "--images", str(data / "images"), "--labels", str(data / "labelTxt"), "--out", str(out),
               "--tile-size", "none"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          start_new_session=True)


def test_an_unchanged_night_over_scenes_that_made_no_tile_plans_nothing(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    synthetic_scenes(data, 2)
    # three scenes that make no tile: bad image bytes, no object, objects of unknown classes only
    write_scene(data, "Xbad", (64, 64), [("plane", 5, 5, 30, 30)])
    (data / "images" / "Xbad.png").write_bytes(b"not a png at all")
    write_scene(data, "Xempty", (64, 64), [])
    write_scene(data, "Xunknown", (64, 64), [("flying-saucer", 5, 5, 30, 30)])
    env = {k: v for k, v in os.environ.items() if k != CRASH_AT_ENV}
    first = generate(data, out, env)
    assert first.returncode == 0, first.stderr
    assert "2 processed" in first.stdout

    # nothing changed: any planning task would be killed at its first scene
    again = generate(data, out, {**env, CRASH_AT_ENV: "plan"})
    assert again.returncode == 0, again.stderr
    assert "5 scenes with the same file versions as before (not read), 0 read to check" in again.stdout
    assert "2 in dataset: 0 processed, 2 unchanged" in again.stdout
    assert dataset_rows(str(out), "tiles", version="2") == dataset_rows(str(out), "tiles", version="1")
    # the bad file is still quarantined in the new version, with its reason
    errors = dataset_rows(str(out), "errors", version="2", drop=())
    assert any(e["source_uri"].endswith("Xbad.png") and e["stage"] == "read" for e in errors)
