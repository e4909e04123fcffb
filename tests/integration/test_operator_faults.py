"""Storage faults through ``edit_file`` and each operator, as Airflow sees them.

A faulty filesystem (:mod:`tests.faulty`) breaks every read of the target from the 3rd on,
during one step only. A transient fault (a connection reset, an S3 503 or 500) that outlives
the engine's retries must reach Airflow as a retryable exception (not
``AirflowFailException``), and the retried task must then succeed: a retried commit finds
the staging it left. A permanent fault (EIO, ENOSPC, S3 403) must fail the task at once with
``AirflowFailException``. Either way the target is unchanged and nothing is left beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fsspec
import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow_bigfile.operators import (
    BigFileCommitOperator,
    BigFileEditOperator,
    BigFilePatchShardsOperator,
    BigFilePlanOperator,
)

from airflow_bigfile import (
    BigFileError,
    StorageError,
    TargetPermissionError,
    TransientStorageError,
    edit_file,
)
from airflow_bigfile.io import retry as retry_module
from tests.faulty import PERMANENT, TRANSIENT, FaultyFileSystem, FaultyStaging

fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)
fsspec.register_implementation("flaky", FaultyStaging, clobber=True)

DATA = b"".join(b"%05d,user%d@old.com\n" % (i, i % 7) for i in range(400))
EDITS = [{"op": "replace", "find": "00007,user0@old.com", "replace": "00007,masked"},
         {"op": "append", "data": "end\n"}]
EXPECTED = DATA.replace(b"00007,user0@old.com", b"00007,masked") + b"end\n"
TARGET = "faulty::memory://opfaults/data.csv"
STAGING = "memory://opfaults-staging"
STEPS = ("edit_file", "edit", "plan", "patch", "commit")


@pytest.fixture(autouse=True)
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh target in memory; retries never sleep."""
    monkeypatch.setattr(retry_module, "DEFAULT", retry_module.policy(sleep=lambda s: None))
    mem = fsspec.filesystem("memory")
    mem.pipe("/opfaults/data.csv", DATA)
    mem.makedirs("/opfaults-staging", exist_ok=True)
    FaultyFileSystem.reset()
    yield
    FaultyFileSystem.reset()
    for folder in ("/opfaults", "/opfaults-staging"):
        if mem.exists(folder):
            mem.rm(folder, recursive=True)


def _content() -> bytes:
    return fsspec.filesystem("memory").cat("/opfaults/data.csv")


def _leftovers() -> list[str]:
    mem = fsspec.filesystem("memory")
    return [p for p in mem.find("/opfaults") + mem.find("/opfaults-staging")
            if p != "/opfaults/data.csv"]


class Run:
    """The steps of one edit: ``edit_file``, the one-task operator, or plan -> patch ->
    commit (each batch patched by its own operator), run one at a time as Airflow would."""

    def __init__(self, how: str, staging: str = STAGING) -> None:
        self.how, self.staging = how, staging
        self.batches: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    @property
    def steps(self) -> list[str]:
        return [self.how] if self.how in ("edit_file", "edit") else ["plan", "patch", "commit"]

    def run(self, step: str) -> Any:
        if step == "edit_file":
            return edit_file(TARGET, EDITS, shard_size=512, workers=1)
        if step == "edit":
            return BigFileEditOperator(task_id="edit", path=TARGET, edits=EDITS,
                                       shard_size=512, workers=1).execute({})
        if step == "plan":
            self.batches = BigFilePlanOperator(task_id="plan", path=TARGET, edits=EDITS,
                                               staging=self.staging, shard_size=512,
                                               max_batches=2).execute({})
            return self.batches
        if step == "patch":
            self.results = [BigFilePatchShardsOperator(task_id="patch", batch=b).execute({})
                            for b in self.batches]
            return self.results
        return BigFileCommitOperator(task_id="commit", results=self.results,
                                     path=TARGET).execute({})


CASES = [pytest.param("edit_file", "edit_file", id="edit_file"),
         pytest.param("edit", "edit", id="edit-operator"),
         pytest.param("fleet", "plan", id="plan-operator"),
         pytest.param("fleet", "patch", id="patch-operator"),
         pytest.param("fleet", "commit", id="commit-operator")]


def _until(run: Run, step: str) -> None:
    """Run the steps before ``step`` on a healthy store."""
    for before in run.steps[:run.steps.index(step)]:
        run.run(before)


def _after(run: Run, step: str) -> None:
    for later in run.steps[run.steps.index(step) + 1:]:
        run.run(later)


@pytest.mark.parametrize(("how", "step"), CASES)
def test_each_step_reads_the_target_at_least_three_times(how: str, step: str) -> None:
    """The faults below hit reads each step really makes."""
    run = Run(how)
    _until(run, step)
    FaultyFileSystem.reset()
    run.run(step)
    assert FaultyFileSystem.reads >= 3, FaultyFileSystem.reads
    _after(run, step)
    assert _content() == EXPECTED and _leftovers() == []


@pytest.mark.parametrize("fault", TRANSIENT)
@pytest.mark.parametrize(("how", "step"), CASES)
def test_transient_fault_is_left_to_airflow_retries(how: str, step: str, fault: str) -> None:
    """Reads failing from the 3rd on outlive the engine's retries: the step raises a
    TransientStorageError (retryable, not AirflowFailException), the target is unchanged,
    and Airflow's retry of the step, on a store that answers again, finishes the edit."""
    run = Run(how)
    _until(run, step)
    FaultyFileSystem.fail_reads(3, fault)
    with pytest.raises(BigFileError) as info:
        run.run(step)
    FaultyFileSystem.reset()
    assert isinstance(info.value, TransientStorageError), repr(info.value)
    assert not isinstance(info.value, AirflowFailException)
    assert "run the job again later" in str(info.value)
    assert _content() == DATA
    run.run(step)  # Airflow's retry of the same task
    _after(run, step)
    assert _content() == EXPECTED
    assert _leftovers() == []


@pytest.mark.parametrize("fault", PERMANENT)
@pytest.mark.parametrize(("how", "step"), CASES)
def test_permanent_fault_fails_at_once(how: str, step: str, fault: str) -> None:
    """EIO, ENOSPC or an S3 403 from the 3rd read on: the step fails without retry
    (``AirflowFailException`` from an operator, a permanent StorageError from edit_file),
    the target is unchanged and nothing is left beside it."""
    run = Run(how)
    _until(run, step)
    FaultyFileSystem.fail_reads(3, fault)
    expected = BigFileError if how == "edit_file" else AirflowFailException
    with pytest.raises(expected) as info:
        run.run(step)
    FaultyFileSystem.reset()
    cause = info.value if how == "edit_file" else info.value.__cause__
    assert isinstance(cause, TargetPermissionError if fault == "403" else StorageError)
    assert not isinstance(cause, TransientStorageError)
    assert _content() == DATA
    left = _leftovers()
    if step == "patch":
        # The job's other batches may still be writing its staging: the failed batch
        # leaves the job's folder, and nothing else, to whoever runs the job again.
        job = "/" + run.batches[0]["staging"].removeprefix("memory://").lstrip("/")
        assert left and all(p.startswith(job + "/") for p in left), left
    else:
        assert left == []




def test_staging_on_a_flaky_store_is_retried_by_the_engine() -> None:
    """Plan, patch and commit with the staging on a store of its own where one call in 5
    fails: the engine's retries absorb each fault (none reaches Airflow)."""
    run = Run("fleet", staging="flaky::memory://opfaults-staging")
    FaultyStaging.reset({n: "reset" for n in range(5, 4000, 5)})
    try:
        for step in run.steps:
            run.run(step)
        assert FaultyStaging.calls > 20
    finally:
        FaultyStaging.reset()
    assert _content() == EXPECTED
    assert _leftovers() == []
