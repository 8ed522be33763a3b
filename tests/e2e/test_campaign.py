"""A few iterations of the fault campaign (bench/campaign.py) in the suite, with a fixed seed:
the inputs change, a run meets random S3 faults (through tests/faultproxy.py) and sometimes a
SIGKILL of its driver or of a busy Ray worker, and a fault-free run follows; after each, every
retained version is whole, no tile is twice or lost, the exit code agrees with the store, the
fault-free run equals a clean run of the same inputs, and its clean-up leaves nothing behind.

The seed is chosen so that these iterations hold a driver kill, a worker kill and a scene whose
file the store refuses (the campaign prints each iteration's plan). The whole campaign, 200
iterations, is `python -m bench.campaign --runs 200 --seed 0`; `--maps` runs it as map runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.campaign import Campaign
from tests.faultproxy import KINDS
from tests.seaweed import S3Server

pytestmark = pytest.mark.slow
SEED, ITERATIONS = 2375, 3


def test_a_few_campaign_iterations_keep_the_invariant(s3: S3Server, tmp_path: Path) -> None:
    with Campaign(tmp_path, seed=SEED, s3=s3, scenes=4, run_timeout_s=120) as campaign:
        reports = [campaign.iteration(index) for index in range(ITERATIONS)]
        print(campaign.table())
        failures = [f for report in reports for f in report.failures]
        assert not failures, "\n".join(f"run {f['run']} ({f['plan']}): {f['check']}: {f['detail']}" for f in failures)
        # the campaign did inject faults, else the test proves nothing
        assert sum(campaign.faults.values()) > 0, campaign.table()
        assert campaign.exits["fault-free"] == {0: ITERATIONS}, campaign.table()


# iterations 5 and 7 of seed 3: S3 faults at high rates, a driver kill, a raster added whose TIFF is
# cut short (iteration 0 refuses a raster always: minutes of retries)
MAP_SEED, MAP_ITERATIONS = 3, (5, 7)


def test_a_few_map_campaign_iterations_keep_the_invariant(s3: S3Server, tmp_path: Path) -> None:
    """The same, as map runs: GeoTIFF scenes and one GeoJSON layer in lon/lat (bench/campaign_maps.py)."""
    with Campaign(tmp_path, seed=MAP_SEED, s3=s3, scenes=4, run_timeout_s=120, maps=True) as campaign:
        reports = [campaign.iteration(index) for index in MAP_ITERATIONS]
        print(campaign.table())
        failures = [f for report in reports for f in report.failures]
        assert not failures, "\n".join(f"run {f['run']} ({f['plan']}): {f['check']}: {f['detail']}" for f in failures)
        assert sum(campaign.faults[kind] for kind in KINDS) > 0, campaign.table()
        assert campaign.exits["fault-free"] == {0: len(MAP_ITERATIONS)}, campaign.table()
