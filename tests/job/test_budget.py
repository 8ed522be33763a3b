"""samrs_ray/job/budget.py: failed tries in a row across the run's processes spend the budget; an
answer in between resets it; once spent, every copy of the budget (each task's) says why, and
storage.with_retries then asks the store nothing."""

from __future__ import annotations

import pickle

import pytest

from samrs_ray.dataset import storage
from samrs_ray.errors import StoreError
from samrs_ray.job.budget import StoreBudget


def test_failures_in_a_row_spend_it_and_an_answer_resets_the_count(local_ray) -> None:
    budget = StoreBudget(limit=3)
    other_task = pickle.loads(pickle.dumps(budget))  # as Ray hands it to another task
    budget.record(True)
    other_task.record(True)
    other_task.record(False)  # the store answered someone: the count starts again
    budget.record(True)
    other_task.record(True)
    assert budget.spent() is None
    budget.record(True)
    assert "3 failed tries in a row" in budget.spent()
    third_task = pickle.loads(pickle.dumps(budget))
    assert third_task.spent() == budget.spent()


def test_with_retries_asks_nothing_once_it_is_spent(local_ray) -> None:
    budget = StoreBudget(limit=2)
    calls: list[int] = []

    def refused() -> bytes:
        calls.append(1)
        raise OSError("503 SlowDown")

    storage.use_budget(budget)
    try:
        with pytest.raises(StoreError, match="SlowDown"):
            storage.with_retries("s3://b/a.png", refused, attempts=3, backoff_s=0)
        assert len(calls) == 2  # the second failure spent the budget: no third try
        with pytest.raises(StoreError, match="not asked: the run's store error budget is spent"):
            storage.with_retries("s3://b/b.png", refused, attempts=3, backoff_s=0)
        assert len(calls) == 2
    finally:
        storage.use_budget(None)
