"""samrs_ray/report/gallery.py: the page `samrs-ray stats` writes to look at a dataset. It shows every
tile with its label map over the pixels, flagged tiles first, a legend, filters by class and
split, and nothing from the network; a real headless Chromium renders it (screenshot, and the
DOM after its script ran)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrs_ray.cli import main
from samrs_ray.dataset import manifest
from samrs_ray.inputs.presets import PRESETS
from tests.datasets import synthetic_scenes

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CARD = re.compile(r'<figure class="card( flagged)?" data-classes="([^"]*)" data-split="([^"]*)"[^>]*>'
                  r'<img src="gallery/([^"]+)\.jpg"')


@pytest.fixture(scope="module")
def report(tmp_path_factory, local_ray) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gallery")
    data, out = root / "data", root / "out"
    synthetic_scenes(data, 6)
    (root / "val.txt").write_text("S00004\nS00005\n")
    # tiny SAM (random weights, a FAKE model) draws some empty and some unsure masks: tiles to flag
    assert main(["generate", "--preset", "sota", "--model", "sam", "--model-type", "tiny", "--tile-size", "none",
                 "--images", str(data / "images"), "--labels", str(data / "labelTxt"), "--out", str(out),
                 "--split-list", f"val={root / 'val.txt'}"]) == 0
    assert main(["stats", "--out", str(out)]) == 0
    return out, out / "report"


def test_every_tile_is_shown_flagged_first_and_nothing_comes_from_the_network(report) -> None:
    out, folder = report
    page = (folder / "gallery.html").read_text()
    cards = CARD.findall(page)
    instances = defaultdict(list)
    for row in manifest.read_dataset(str(out), "instances").to_pylist():
        instances[row["tile_id"]].append(row)
    tiles = {t["tile_id"]: t for t in manifest.read_dataset(str(out), "tiles").to_pylist()}
    assert sorted(c[3] for c in cards) == sorted(tiles)
    should_flag = {t for t, rows in instances.items() if any(r["area"] == 0 or r["predicted_iou"] < 0.5 for r in rows)}
    flagged = [c[3] for c in cards if c[0]]
    assert flagged and set(flagged) == should_flag and [c[3] for c in cards][:len(flagged)] == flagged
    assert {c[3]: c[2] for c in cards} == {t: tiles[t]["split"] for t in tiles}
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # offline: no CDN, no remote image
    for _, _, _, tile_id in cards:
        thumbnail = Image.open(folder / "gallery" / f"{tile_id}.jpg")
        assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 256
    assert all(name in page for name in PRESETS["sota"].classes)  # the legend


def chromium(*args: str) -> subprocess.CompletedProcess:
    # as root in a container: no sandbox, and no reliance on a large /dev/shm
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=5000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_it_renders_in_headless_chromium(report, tmp_path: Path) -> None:
    _, folder = report
    page = (folder / "gallery.html").as_uri()
    shot = tmp_path / "shot.png"
    chromium("--window-size=1280,1600", f"--screenshot={shot}", page)
    pixels = np.array(Image.open(shot).convert("RGB")).reshape(-1, 3)
    # the legend's swatch of small-vehicle, the synthetic scenes' one class, is on screen
    swatch = PRESETS["sota"].palette[PRESETS["sota"].classes.index("small-vehicle")]
    assert (np.abs(pixels.astype(int) - swatch).sum(axis=1) <= 6).sum() > 50
    assert pixels.std() > 20  # thumbnails drawn, not a blank page

    dom = chromium("--dump-dom", page + "#split=val").stdout
    shown = re.findall(r'<figure class="card[^"]*"[^>]*>', dom)
    visible = [card for card in shown if " hidden" not in card]
    assert len(shown) == 6 and len(visible) == 2 and all('data-split="val"' in card for card in visible)
    assert "2 shown" in dom


def test_two_versions_side_by_side(report, tmp_path: Path) -> None:
    """The same tiles made again by another engine (the FAKE tiny SAM 2): `stats --compare 1`
    shows each tile's label maps of both versions, the latest on the left."""
    out, _ = report
    data = out.parent / "data"
    assert main(["generate", "--preset", "sota", "--model", "sam2", "--model-type", "tiny", "--tile-size", "none",
                 "--images", str(data / "images"), "--labels", str(data / "labelTxt"), "--out", str(out),
                 "--split-list", f"val={out.parent / 'val.txt'}"]) == 0
    folder = tmp_path / "versus"
    assert main(["stats", "--out", str(out), "--report", str(folder), "--compare", "1"]) == 0
    page = (folder / "gallery.html").read_text()
    assert "Side by side: left v2 sam2-tiny, right v1 sam-tiny." in page
    pairs = re.findall(r'<div class="pair"><img src="gallery/([^"]+)\.jpg"[^>]*><img src="(gallery/[^"]+)"', page)
    assert len(pairs) == 6
    for tile_id, theirs in pairs:
        assert theirs == f"gallery/{tile_id}.v1.jpg"
        ours, other = (np.asarray(Image.open(folder / name)) for name in (f"gallery/{tile_id}.jpg", theirs))
        assert ours.shape == other.shape
    if CHROMIUM is not None:
        chromium("--window-size=1280,900", f"--screenshot={tmp_path / 'versus.png'}", (folder / "gallery.html").as_uri())
        assert np.array(Image.open(tmp_path / "versus.png")).std() > 20
