"""The test suite. Unit tests mirror samrs_ray/ (tests/masks/test_sam.py tests
samrs_ray/masks/sam.py; tests/test_rows.py tests samrs_ray/job/rows.py); tests/e2e/ holds the
end-to-end tests, by feature. Helpers: datasets.py (synthetic scenes, reading outputs back),
seaweed.py (a real S3 server), raycluster.py (real multi-node Ray)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # real samples and CRD schemas; read there, never copied here
