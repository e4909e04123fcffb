"""Fault injection through a faulty fsspec wrapper, at every call of an edit in turn:
transient errors are retried and the edit succeeds; EIO and ENOSPC fail cleanly with the
target intact. Faults that outlive the retries, through each operator:
``test_operator_faults.py``; the mapping itself: ``tests/unit/test_error_policy.py``."""

from __future__ import annotations

import random

import fsspec
import pytest

from airflow_bigfile import (
    Append,
    BigFileError,
    Patch,
    Replace,
    StorageError,
    edit_file,
)
from airflow_bigfile.io import retry as retry_module
from tests.faulty import TRANSIENT, FaultyFileSystem

fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)

DATA = bytes(random.Random(7).choice(b"ab\n") for _ in range(5000))
EDITS = [Replace(b"aab", b"Q"), Patch(10, b"ZZ"), Append(b"END")]
EXPECTED = (DATA[:10] + b"ZZ" + DATA[12:]).replace(b"aab", b"Q") + b"END"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries never sleep in tests."""
    monkeypatch.setattr(retry_module, "DEFAULT", retry_module.policy(sleep=lambda s: None))


@pytest.fixture
def target() -> str:
    mem = fsspec.filesystem("memory")
    mem.pipe("/faults/data.bin", DATA)
    yield "faulty::memory://faults/data.bin"
    mem.rm("/faults", recursive=True)


def _expected_model() -> bytes:
    data = DATA[:10] + b"ZZ" + DATA[12:]
    assert data[10:12] == b"ZZ"
    return EXPECTED


def _content() -> bytes:
    return fsspec.filesystem("memory").cat("/faults/data.bin")


def _leftovers() -> list[str]:
    return [p for p in fsspec.filesystem("memory").find("/faults") if p != "/faults/data.bin"]


def _total_calls(target: str) -> int:
    FaultyFileSystem.reset()
    edit_file(target, EDITS, shard_size=512, workers=1)
    calls = FaultyFileSystem.calls
    fsspec.filesystem("memory").pipe("/faults/data.bin", DATA)
    return calls


def test_clean_run_matches_model(target: str) -> None:
    FaultyFileSystem.reset()
    edit_file(target, EDITS, shard_size=512, workers=1)
    assert _content() == _expected_model()


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_faults_are_retried(target: str, kind: str) -> None:
    total = _total_calls(target)
    for call in range(1, total + 1):
        fsspec.filesystem("memory").pipe("/faults/data.bin", DATA)
        # fail this call and the retry after it: two transient faults in a row
        FaultyFileSystem.reset({call: kind, call + 1: kind})
        edit_file(target, EDITS, shard_size=512, workers=1)
        assert _content() == EXPECTED, f"{kind} at call {call}"
        assert _leftovers() == []


@pytest.mark.parametrize("kind", ["EIO", "ENOSPC"])
def test_permanent_faults_fail_cleanly(target: str, kind: str) -> None:
    total = _total_calls(target)
    failed = 0
    for call in range(1, total + 1):
        fsspec.filesystem("memory").pipe("/faults/data.bin", DATA)
        FaultyFileSystem.reset({call: kind})
        try:
            edit_file(target, EDITS, shard_size=512, workers=1)
        except BigFileError as exc:
            failed += 1
            assert isinstance(exc, StorageError), f"{kind} at call {call}: {exc!r}"
            message = str(exc)
            assert ("Input/output" in message) if kind == "EIO" else ("No space" in message)
            assert "\n" not in message
            assert _content() == DATA, f"target changed after {kind} at call {call}"
        else:
            # the fault hit a call whose failure does not matter (cleanup of a leftover)
            assert _content() == EXPECTED
        FaultyFileSystem.reset()
        assert _leftovers() == [], f"leftovers after {kind} at call {call}"
    assert failed > total // 2
