"""The README's two set-up commands on a fresh clone, as a new user runs them: wall time of each and
the size of the venv each leaves.

    python3 bench/fresh_install.py [--only quick-start|tests] [--keep]

The clone is made from this checkout's HEAD into a temporary folder, with ../shared linked beside
it. The tests command is timed up to the end of its installs (the suite's own time is pytest's).
Figures go to bench/RESULTS.md by hand, with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text[text.index("## Quick start"):], flags=re.S)
    quick_start, tests = blocks[0].strip(), blocks[1].strip()
    return {"quick-start": quick_start, "tests": tests.rsplit(" && ", 1)[0]}  # up to the pytest run


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["quick-start", "tests"])
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="samrs-fresh-"))
    try:
        (root / "shared").symlink_to(REPO.parent / "shared")
        for name, command in readme_commands().items():
            if args.only and name != args.only:
                continue
            clone = root / name
            subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
            started = time.monotonic()
            run = subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True, text=True)
            seconds = time.monotonic() - started
            status = "ok" if run.returncode == 0 else f"FAILED ({run.returncode}): {run.stderr[-500:]}"
            print(f"{name:12} {seconds:7.1f} s  venv {folder_bytes(clone / '.venv') / 2**30:5.2f} GiB  {status}")
        if args.keep:
            print(f"kept: {root}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
