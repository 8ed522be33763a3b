"""The README's `ray job submit` block, run exactly as written, as a new user would after the
quick start: in a fresh copy of the checkout with ../shared beside it, in a PID and network
namespace of its own (so its `ray start`/`ray stop` meet no other Ray of this machine, and
everything it started ends with it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import REPO, SHARED

pytestmark = pytest.mark.slow


def readme_block(heading: str) -> str:
    """The first ```bash block after `heading` in the README."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)


def fresh_checkout(root: Path) -> Path:
    """The files a clone would have (tracked, and new files not ignored) under root/repo, the
    venv linked in, and ../shared beside it."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    repo = root / "repo"
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    (repo / ".venv").symlink_to(REPO / ".venv")
    (root / "shared").symlink_to(SHARED)
    return repo


def in_namespace(script: str, cwd: Path) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (util-linux) for a PID and network namespace of its own")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VIRTUAL_ENV", "AWS_"))}
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--net", "bash", "-c",
                           "ip link set lo up && " + script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def test_ray_job_submit_block_works_as_written(tmp_path: Path) -> None:
    if not (SHARED / "data" / "realsamples").is_dir():
        pytest.skip("real samples not found beside the checkout")
    block = readme_block("### On a Ray cluster")
    repo = fresh_checkout(tmp_path)
    submit = block[block.index("ray job submit"):block.index("ray stop")]
    # Then, before `ray stop`, the same submission with a relative --out, which must be refused.
    relative = submit.replace('"$PWD/out/sota-job"', "out/relative")
    assert relative != submit
    lines = block.rstrip().splitlines()
    assert lines[-1] == "ray stop"
    # What the README tells a user whose first submission meets a head still starting: try again.
    started = next(i for i, line in enumerate(lines) if line.startswith("ray start --head"))
    lines.insert(started + 1, "for _ in $(seq 120); do ray job submit --address http://127.0.0.1:8265 -- true"
                              " > /dev/null 2>&1 && break; sleep 1; done")
    script = "set -e\n" + "\n".join(lines[:-1]) + "\nset +e\n" + relative + "\necho relative-exit=$?\nray stop\n"
    result = in_namespace(script, repo)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]

    record = json.loads((repo / "out" / "sota-job" / "_run.json").read_text())
    assert (record["counts"]["tiles"], record["counts"]["instances"]) == (3, 213)
    assert "committed" in output  # the job's summary reaches the submitter
    assert "progress: 2/2 scenes done, 3 tiles written" in output  # and its progress, as log lines
    assert "relative-exit=1" in output
    assert "--out out/relative: a relative path inside a Ray job" in output
    assert not list(repo.rglob("relative"))  # nothing written anywhere for the refused run


def test_the_other_engines_block_reads_the_committed_version(sota_box_run, tmp_path: Path) -> None:
    """The README's Delta Lake block, as written, in a folder where the quick start's `out/sota` is."""
    out, record = sota_box_run
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Reading it with your own engines"):]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sota").symlink_to(out)
    check = 'print(json.dumps([len(instances), arrow.count_rows(), tiles.count()]))'
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    ran = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", block + check], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    counts = json.loads(ran.stdout.strip().splitlines()[-1])
    assert counts == [record.counts["instances"], record.counts["tiles"], record.counts["tiles"]]
