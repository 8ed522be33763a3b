"""The run's budget of store failures (storage.Budget), counted across every task of the run.

One small actor per run holds the count; each planning task reports each read's outcome to it
and asks it before each try. The rule is consecutive failed tries, run-wide: a store that serves
anything resets the count, so scattered faults (a 503 here, a reset there) never spend it,
while a store or prefix that refuses everything spends it within a few rounds of the planning
slots, whatever the number of scenes. Then every file not read yet is a StoreError at once: its
scene keeps its committed tiles, the run commits what it finished and exits 5 (a partial night).
"""

from __future__ import annotations

import time
from typing import Optional

import ray

# Failed tries in a row, across the run, that mean the store has stopped serving. Each try is
# already the S3 client's own retries; the job makes up to 3 tries a file (storage.READ_ATTEMPTS),
# so this is the last tries of about 4 files with nothing served in between.
FAILURES_IN_A_ROW = 12
ASK_EVERY_S = 1.0
ANSWER_S = 10.0  # longer, and the count is as good as lost: reads go on without it


@ray.remote(num_cpus=0, max_restarts=0)
class _Count:
    def __init__(self, limit: int) -> None:
        self.limit, self.in_a_row, self.failed, self.served = limit, 0, 0, 0

    def record(self, failed: bool) -> None:
        if self.in_a_row >= self.limit:
            return  # spent for good
        self.in_a_row = self.in_a_row + 1 if failed else 0
        self.failed += failed
        self.served += not failed

    def spent(self) -> Optional[str]:
        if self.in_a_row < self.limit:
            return None
        return (f"the run's store error budget is spent ({self.limit} failed tries in a row; "
                f"{self.failed} failed, {self.served} served in all)")


class StoreBudget:
    """storage.Budget over the run's actor; picklable, so each task gets one in its arguments.

    A failed try is reported at once, and the count asked again before the next try. While reads
    succeed, this process reports a success and asks at most once a second (ASK_EVERY_S): any
    answer resets the count, so that is enough, and a run of 10^5 scenes does not queue 10^5
    calls at one actor."""

    def __init__(self, limit: int = FAILURES_IN_A_ROW) -> None:
        self.count = _Count.remote(limit)
        self.why: Optional[str] = None
        self.ask_at = self.report_at = 0.0

    def spent(self) -> Optional[str]:
        now = time.monotonic()
        if self.why is None and now >= self.ask_at:
            self.ask_at = now + ASK_EVERY_S
            try:
                self.why = ray.get(self.count.spent.remote(), timeout=ANSWER_S)
            except ray.exceptions.RayError:  # the count is lost (its node died): reads go on, each with its tries
                pass
        return self.why

    def record(self, failed: bool) -> None:
        now = time.monotonic()
        if not failed and now < self.report_at:
            return
        self.report_at = now + ASK_EVERY_S if not failed else 0.0
        self.ask_at = 0.0 if failed else self.ask_at
        try:
            ray.get(self.count.record.remote(failed), timeout=ANSWER_S)
        except ray.exceptions.RayError:
            pass

    def __getstate__(self) -> dict:
        return {"count": self.count, "why": None, "ask_at": 0.0, "report_at": 0.0}
