"""`samrs-ray stats`: the job on the real samples, then the report; every number a figure shows
is checked against counts computed straight from the manifests and the label PNGs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrs_ray.dataset import manifest, storage, versions
from samrs_ray.inputs.presets import IGNORE_ID, PRESETS
from samrs_ray.job import generate
from samrs_ray.report import figures
from samrs_ray.report.stats import HIST_MAX, N_BINS, compute_stats, size_histogram, write_report
from tests import REPO
from tests.datasets import config, local_path

pytestmark = pytest.mark.slow
SOTA = PRESETS["sota"]


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def box_run(sota_box_run) -> Path:
    return sota_box_run[0]


@pytest.fixture(scope="module")
def report(box_run: Path) -> tuple[dict, Path]:
    folder = box_run.parent / "report"
    return write_report(str(box_run), str(folder), None), folder


def direct_counts(out: Path) -> dict:
    """What the figures must show, from the manifests and label PNGs without samrs_ray.report.stats."""
    tiles = manifest.read_dataset(str(out), "tiles").to_pylist()
    instances = manifest.read_dataset(str(out), "instances").to_pylist()
    areas = np.array([r["area"] for r in instances])
    label_pixels = Counter()
    for tile in tiles:
        values, counts = np.unique(np.array(Image.open(local_path(tile["label_uri"]))), return_counts=True)
        label_pixels.update(dict(zip(values.tolist(), counts.tolist())))
    edges = list(range(0, HIST_MAX + 1, 50)) + [np.inf]
    return {
        "images": len({t["source_uri"] for t in tiles}),
        "tiles": len(tiles),
        "instances": len(instances),
        "per_class": [sum(r["class_name"] == c for r in instances) for c in SOTA.classes],
        "instance_pixels": [sum(r["area"] for r in instances if r["class_name"] == c) for c in SOTA.classes],
        "label_pixels": [label_pixels.get(i, 0) for i in range(len(SOTA.classes))],
        "unlabeled": label_pixels[IGNORE_ID],
        "hist": np.histogram(areas, bins=edges)[0].tolist(),
    }


def test_stats_json_equals_direct_counts(box_run: Path, report) -> None:
    stats, folder = report
    want = direct_counts(box_run)
    assert json.loads((folder / "stats.json").read_text()) == stats
    assert list(stats["subsets"]) == ["sota"]
    s = stats["subsets"]["sota"]
    # P0004 (824 x 1464) gives two 1024 windows, P1888 one; 107 + 64 objects, 42 in both P0004 tiles
    assert (s["images"], s["tiles"], s["instances"]) == (want["images"], want["tiles"], want["instances"]) == (2, 3, 213)
    assert s["tile_sizes"] == {"1024x1024": 3}
    assert (s["classes"], s["classes_present"], s["empty_masks"]) == (18, 2, 0)
    assert [c["name"] for c in s["per_class"]] == list(SOTA.classes)
    assert [c["instances"] for c in s["per_class"]] == want["per_class"]
    assert [c["instance_pixels"] for c in s["per_class"]] == want["instance_pixels"]
    assert [c["label_pixels"] for c in s["per_class"]] == want["label_pixels"]
    assert s["unlabeled_pixels"] == want["unlabeled"]
    assert s["mask_size_hist"] == want["hist"] and sum(s["mask_size_hist"]) == 213
    # overlapping masks: the label map holds fewer large-vehicle pixels than the masks add up to
    assert want["label_pixels"][0] < want["instance_pixels"][0]


def test_every_figure_shows_the_direct_counts(box_run: Path, report) -> None:
    stats, _ = report
    want = direct_counts(box_run)

    table = figures.summary_table(stats).axes[0].tables[0]
    cells = {(r, c): cell.get_text().get_text() for (r, c), cell in table.get_celld().items()}
    header = [cells[(0, c)] for c in range(7)]
    row = dict(zip(header, [cells[(1, c)] for c in range(7)]))
    assert row["subset"] == "sota" and row["tile size"] == "1024x1024"
    assert (row["images"], row["tiles"], row["instances"]) == ("2", "3", "213")

    instances_ax, pixels_ax = figures.class_counts(stats).axes
    assert [t.get_text() for t in instances_ax.get_yticklabels()] == list(SOTA.classes)
    assert list(instances_ax.containers[0].datavalues) == want["per_class"]
    assert list(pixels_ax.containers[0].datavalues) == want["label_pixels"]
    [marks] = pixels_ax.get_lines()
    shown = np.nan_to_num(np.asarray(marks.get_xdata(), float)).tolist()
    assert shown == want["instance_pixels"]

    [hist_ax] = figures.mask_sizes(stats).axes
    regular, overflow = hist_ax.containers
    assert list(regular.datavalues) + list(overflow.datavalues) == want["hist"]
    assert [round(p.get_x()) for p in regular] == list(range(0, HIST_MAX, 50))
    assert overflow[0].get_x() == HIST_MAX


def test_report_files(report) -> None:
    stats, folder = report
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["class_counts.png", "examples.png", "mask_sizes.png", "stats.json", "summary.md",
                     "summary_table.png"]
    for name in names:
        if name.endswith(".png"):
            with Image.open(folder / name) as image:
                assert image.format == "PNG" and min(image.size) > 100
    summary = (folder / "summary.md").read_text()
    assert "| sota | 2 | 3 | 3 | 1024x1024 | 18 (2) | 213 | 0 |" in summary
    assert "| 0 | large-vehicle | 173 |" in summary and "![examples.png](examples.png)" in summary
    # the examples are the three tiles, P0004's first tile (most instances) first
    assert [e["tile_id"] for e in stats["subsets"]["sota"]["examples"]] == [
        "P0004__1024__0___0", "P0004__1024__0___440", "P1888__1024__0___0"]


@pytest.fixture(scope="module")
def many_shards(realsamples: Path, tmp_path_factory: pytest.TempPathFactory, local_ray) -> Path:
    """The real samples with one tile per shard."""
    out = tmp_path_factory.mktemp("many-shards") / "sota"
    dota = realsamples / "dota"
    generate(config(dota / "images", dota / "labelTxt", out, shard_tiles=1), say=quiet)
    assert len(versions.latest(storage.open_fs(str(out))[0], str(out)).shards) == 3
    return out


def test_stats_add_up_over_many_shards(many_shards: Path, report) -> None:
    """One tile per shard: P0004's two tiles land in different shards and still count as one image."""
    many = compute_stats(str(many_shards))["subsets"]["sota"]
    one = report[0]["subsets"]["sota"]
    drop = ("examples",)
    assert {k: v for k, v in many.items() if k not in drop} == {k: v for k, v in one.items() if k not in drop}
    assert [e["tile_id"] for e in many["examples"]] == [e["tile_id"] for e in one["examples"]]


def test_ray_tasks_give_the_in_process_result(many_shards: Path, tmp_path: Path) -> None:
    """The Ray way (large versions, --address) and the in-process way write the same report; a Ray
    that was running (here the tests') is left running."""
    import ray

    on_ray = write_report(str(many_shards), str(tmp_path / "ray"), None, on_ray=True)
    here = write_report(str(many_shards), str(tmp_path / "here"), None, on_ray=False)
    assert on_ray == here and on_ray["subsets"]["sota"]["tiles"] == 3
    assert (tmp_path / "ray" / "stats.json").read_bytes() == (tmp_path / "here" / "stats.json").read_bytes()
    assert ray.is_initialized()


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """RAY_TMPDIR for a subprocess: Ray would put its session folders in its ray/ (a short path, as
    Ray's sockets live there)."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run(command: list[str], ray_tmp: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=dict(os.environ, RAY_TMPDIR=str(ray_tmp)), capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done


def ray_data_lines(text: str) -> list[str]:
    """Ray's log lines (Ray Data's execution plan and logged progress among them)."""
    return [line for line in text.splitlines() if re.search(r"\bINFO\b|Dataset dataset_|\.py:\d+ -- ", line)]


def test_cli_stats_of_a_small_dataset_does_not_start_ray(box_run: Path, tmp_path: Path, ray_tmp: Path) -> None:
    """3 tiles are read in this process: no Ray session, and only the summary on the terminal."""
    cli = Path(sys.executable).parent / "samrs-ray"
    done = run([str(cli), "stats", "--out", str(box_run), "--report", str(tmp_path / "report")], ray_tmp)
    assert not list(ray_tmp.glob("ray/session_*"))
    assert done.stdout.startswith("sota: 2 images, 3 tiles, 213 instances") and len(done.stdout.splitlines()) == 2
    assert ray_data_lines(done.stdout + done.stderr) == []
    assert json.loads((tmp_path / "report" / "stats.json").read_text())["subsets"]["sota"]["tiles"] == 3


def test_cli_stats_on_ray_is_quiet_and_stops_the_ray_it_started(box_run: Path, tmp_path: Path, ray_tmp: Path) -> None:
    """--address local: a Ray of its own, whose log lines go to the session's logs, shut down
    before main returns."""
    code = ("import ray; from samrs_ray.cli import main; "
            f"code = main(['stats', '--out', {str(box_run)!r}, '--report', {str(tmp_path / 'report')!r}, "
            "'--address', 'local']); print('Ray running after:', ray.is_initialized()); raise SystemExit(code)")
    done = run([sys.executable, "-c", code], ray_tmp)
    assert "3 tiles" in done.stdout and "Ray running after: False" in done.stdout
    assert ray_data_lines(done.stdout + done.stderr) == []
    log = ray_tmp / "ray" / "session_latest" / "logs" / "ray-data" / "ray-data.log"
    assert "Starting execution of Dataset" in log.read_text()


def test_label_pixels_can_be_skipped(box_run: Path) -> None:
    s = compute_stats(str(box_run), label_pixels=False)["subsets"]["sota"]
    assert s["unlabeled_pixels"] is None and all(c["label_pixels"] is None for c in s["per_class"])
    _, pixels_ax = figures.class_counts({"subsets": {"sota": s}}).axes
    assert list(pixels_ax.containers[0].datavalues) == [c["instance_pixels"] for c in s["per_class"]]


def test_histogram_bins() -> None:
    areas = np.array([0, 49, 50, 99, 2449, 2450, 2499, 2500, 10**7])
    hist = size_histogram(areas)
    assert len(hist) == N_BINS == 51
    assert hist[0] == 2 and hist[1] == 2 and hist[48] == 1 and hist[49] == 2 and hist[50] == 2
    assert hist.sum() == len(areas)


def test_wide_ranges_get_log_axes(report) -> None:
    stats = json.loads(json.dumps(report[0]))
    s = stats["subsets"]["sota"]
    assert figures.class_counts(stats).axes[0].get_xscale() == "linear"  # 173 vs 40 instances
    s["per_class"][1]["instances"] = 100_000
    s["mask_size_hist"][3] = 50_000
    assert figures.class_counts(stats).axes[0].get_xscale() == "log"
    assert figures.mask_sizes(stats).axes[0].get_yscale() == "log"


def test_blend_colours_only_labelled_pixels() -> None:
    image = np.full((2, 2, 3), 100, np.uint8)
    label = np.array([[0, IGNORE_ID], [1, IGNORE_ID]], np.uint8)
    out = figures.blend(image, label, [(255, 0, 0), (0, 0, 255)], alpha=0.5)
    assert out[0, 1].tolist() == out[1, 1].tolist() == [100, 100, 100]
    assert out[0, 0].tolist() == [177, 50, 50] and out[1, 0].tolist() == [50, 50, 177]


def test_no_committed_dataset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="samrs-ray generate"):
        write_report(str(tmp_path), None, None)


def test_report_on_s3(realsamples: Path, s3, report, local_ray) -> None:
    """Dataset and report on object storage: the Ray tasks read manifests and label PNGs from S3."""
    dota = realsamples / "dota"
    out = s3.uri("stats/sota")
    generate(config(dota / "images", dota / "labelTxt", out, storage_options=s3.storage_options), say=quiet)
    tiles = manifest.read_dataset(out, "tiles", s3.storage_options).to_pylist()
    assert all(t["label_uri"].startswith("s3://") for t in tiles)
    stats = write_report(out, None, s3.storage_options)
    fs = s3.filesystem()
    assert json.loads(fs.cat_file(f"{out}/report/stats.json")) == stats
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{out}/report", refresh=True)) == [
        "class_counts.png", "examples.png", "mask_sizes.png", "stats.json", "summary.md", "summary_table.png"]
    local = report[0]["subsets"]["sota"]
    assert {k: v for k, v in stats["subsets"]["sota"].items() if k != "examples"} == {
        k: v for k, v in local.items() if k != "examples"}
