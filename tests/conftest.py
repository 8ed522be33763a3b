"""Shared fixtures. Real sample data is read from ../shared, never copied into the project."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALSAMPLES = REPO.parent / "shared" / "data" / "realsamples"


@pytest.fixture(scope="session")
def realsamples() -> Path:
    if not REALSAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REALSAMPLES}")
    return REALSAMPLES
