"""What a person sees while a run works: Ray Data's live display of each stage in a terminal, the
job's own progress line (in a terminal and in logs), and a summary whose parts add up."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from samrs_ray.job.progress import Progress, duration

pytestmark = pytest.mark.slow
SAMRS = Path(sys.executable).parent / "samrs-ray"
RAY_53727 = "has constructor arguments in the object store"  # Ray Data's own actor notice, every run


def test_a_run_in_a_terminal_shows_stages_progress_and_an_honest_summary(realsamples: Path, tmp_path: Path) -> None:
    if shutil.which("script") is None:
        pytest.skip("util-linux `script` is needed for a pseudo-terminal")
    dota = realsamples / "dota"
    command = (f"{SAMRS} generate --preset sota --images {dota / 'images'} --labels {dota / 'labelTxt'} "
               f"--out {tmp_path / 'out'} --model box")
    result = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, timeout=300)
    screen = result.stdout.decode(errors="replace")
    assert result.returncode == 0, screen[-3000:]
    # Ray Data's live display names each stage with its progress
    assert re.search(r"MapBatches\(MaskActor\)\s+100%", screen)
    assert "progress: 2/2 scenes done, 3 tiles written" in screen
    summary = re.search(r"committed \(box-fill\) in ([\d.]+) s \(start ([\d.]+) s, work ([\d.]+) s, "
                        r"commit ([\d.]+) s, shutdown ([\d.]+) s\)", screen)
    assert summary, screen[-2000:]
    total, *parts = map(float, summary.groups())
    assert abs(total - sum(parts)) < 0.2
    alarming = [line for line in screen.splitlines() if re.search(r"WARNING| E \d+ \d+\]|Traceback", line)
                and RAY_53727 not in line]
    assert alarming == []


def test_the_progress_line_gives_rate_and_eta() -> None:
    said: list[str] = []
    progress = Progress(scenes=4, say=said.append, every_s=0.0)
    progress.started -= 30  # as if the run began 30 s ago
    progress.update(scenes=1, written=60)
    assert re.fullmatch(r"progress: 1/4 scenes done, 60 tiles written \(2\.0 tiles/s, 30 s so far, ETA 1 min 30 s\)",
                        said[-1]), said[-1]
    progress.update(scenes=3, written=60, failed=2)
    assert "4/4 scenes done, 120 tiles written, 2 failed" in said[-1] and "ETA" not in said[-1]
    assert (duration(59), duration(3600 + 120)) == ("59 s", "1 h 02 min")
