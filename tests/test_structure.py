"""The package's shape, as the README's Development section draws it: only the job (and two
named modules) knows of Ray, and no module grows past what a newcomer reads in one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests import REPO

PACKAGE = REPO / "samrs_ray"
# Ray Data over a version's shards for large stats, and Ray Train's reader: opt-in, imported lazily
RAY_OUTSIDE_JOB = {"report/shard_tasks.py", "handoff/reader.py"}
MAX_LINES = 350


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports_ray(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ray":
            return True
    return False


def test_outside_the_job_nothing_imports_ray() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in modules() if imports_ray(p)
                 and p.relative_to(PACKAGE).parts[0] != "job" and str(p.relative_to(PACKAGE)) not in RAY_OUTSIDE_JOB]
    assert offenders == []


def test_the_row_and_the_fault_points_load_without_ray() -> None:
    # planning and the dataset modules use job/rows.py and job/faults.py: the job package must not pull Ray in
    code = ("import sys, samrs_ray.job.rows, samrs_ray.job.faults, samrs_ray.planning.plan, "
            "samrs_ray.dataset.incremental; print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=REPO).stdout.strip() == "False"


def test_no_module_is_over_the_line_cap() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
