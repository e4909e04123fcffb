"""The engine on every backend: one suite that local files, fsspec's memory filesystem, S3
(moto) and Azure Blob (Azurite) all pass (fsspec's ``tests/abstract`` pattern).

Each test takes ``any_backend`` (``tests/conftest.py``), a fresh folder on one backend; a new
backend joins every test here, in ``test_fsspec.py`` and in ``test_pandas_dask.py`` by adding
its fixture to ``any_backend``'s params. The sample file is ``backend.sample`` bytes over a few
symbols, so matches are many and some straddle shard boundaries; shards are a quarter of it
(S3 raises them to its 5 MiB minimum part).

What only one backend has is tested beside it: the local Safety contract in
``test_safety.py`` and friends, the bytes S3 moves and its killed multipart commits in
``test_s3.py``, Azure's in ``test_azure.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from airflow_bigfile import (
    Append,
    Delete,
    Insert,
    Patch,
    Replace,
    Truncate,
    commit_edit,
    edit_file,
    patch_batch,
    plan_edit,
    recover_target,
)
from airflow_bigfile.edits import Edit
from airflow_bigfile.exceptions import (
    EditConflictError,
    EditError,
    SourceChangedError,
    TargetNotFoundError,
)
from tests.backends import Backend, sample
from tests.model import apply_model

NAME = "data.csv"


#: edit lists as functions of the sample's size ``n``
EDIT_CASES: dict[str, Callable[[int], list[Edit]]] = {
    "replace-same-length": lambda n: [Replace(b"ab", b"BA")],
    "replace-shrinks": lambda n: [Replace(b"ab,", b"X")],
    "replace-grows": lambda n: [Replace(b"a\n", b"[a]\n")],
    "regex": lambda n: [Replace(rb"b(a{3,}),", rb"<\1>", regex=True, max_match=256)],
    "offset-edits": lambda n: [
        Insert(0, b"HEAD"), Patch(7 * n // 12 + 3, b"PATCHED"),
        Delete(5 * n // 12 - 10, n // 12), Insert(9 * n // 12, b"INSERTED"),
        Truncate(11 * n // 12 + 1), Append(b"tail\n" * 1000)],
    "append": lambda n: [Append(b"2026-12-03,new,row\n" * 100)],
    "patches": lambda n: [Patch(n // 3, b"P1"), Patch(n - 2, b"P2")],
}


@pytest.fixture
def target(any_backend: Backend) -> tuple[Backend, bytes, str]:
    """The backend, the sample put on it, and the URL the engine edits."""
    data = sample(any_backend.sample)
    any_backend.put(NAME, data)
    return any_backend, data, any_backend.target(NAME)


def options(backend: Backend) -> dict:
    return {"storage_options": backend.options, "shard_size": backend.sample // 4,
            "workers": 2}


@pytest.mark.parametrize("case", list(EDIT_CASES))
def test_edits_match_the_model(target: tuple[Backend, bytes, str], case: str) -> None:
    backend, data, url = target
    edits = EDIT_CASES[case](len(data))
    result = edit_file(url, edits, **options(backend))
    expected = apply_model(data, edits)
    assert backend.get(NAME) == expected
    assert (result.size_before, result.size_after) == (len(data), len(expected))
    assert result.commit_mode in backend.commit_modes, result
    assert backend.names() == [NAME]                  # no staging, lock or new file left


def test_dry_run_changes_nothing(target: tuple[Backend, bytes, str]) -> None:
    backend, data, url = target
    edits = [Replace(b"a\n", b"[a]\n")]
    dry = edit_file(url, edits, dry_run=True, **options(backend))
    assert backend.get(NAME) == data and backend.names() == [NAME]
    real = edit_file(url, edits, **options(backend))
    assert (dry.dry_run, real.dry_run) == (True, False)
    assert (dry.matches, dry.size_after) == (real.matches, real.size_after)
    assert real.matches == data.count(b"a\n")


def test_empty_edit_list(target: tuple[Backend, bytes, str]) -> None:
    backend, data, url = target
    result = edit_file(url, [], **options(backend))
    assert result.commit_mode == "none"
    assert backend.get(NAME) == data and backend.names() == [NAME]


@pytest.mark.parametrize(("edits", "error", "says"), [
    pytest.param(lambda n: [Patch(n + 5, b"x")], EditError, "past the end", id="past-end"),
    pytest.param(lambda n: [Delete(10, 5), Patch(12, b"x")], EditConflictError, "conflicts with",
                 id="conflict"),
])
def test_bad_input_touches_nothing(target: tuple[Backend, bytes, str],
                                   edits: Callable[[int], list[Edit]], error: type,
                                   says: str) -> None:
    backend, data, url = target
    with pytest.raises(error, match=says):
        edit_file(url, edits(len(data)), **options(backend))
    assert backend.get(NAME) == data and backend.names() == [NAME]


def test_missing_target(any_backend: Backend) -> None:
    with pytest.raises(TargetNotFoundError, match="nope.csv"):
        edit_file(any_backend.target("nope.csv"), [Append(b"x")],
                  storage_options=any_backend.options)
    assert any_backend.names() == []


def test_plan_patch_commit(target: tuple[Backend, bytes, str]) -> None:
    """The three steps with staging on the same backend, batch by batch."""
    backend, data, url = target
    edits = [Insert(0, b"HEAD"), Replace(b"b,b", b"<b>"), Append(b"tail\n")]
    plan = plan_edit(url, edits, staging=backend.target("staging"), max_batches=3,
                     storage_options=backend.options, staging_options=backend.options,
                     shard_size=backend.sample // 4)
    assert 1 <= len(plan.batches) <= 3
    done = [patch_batch(batch, storage_options=backend.options,
                        staging_options=backend.options) for batch in plan.batches]
    assert backend.get(NAME) == data
    result = commit_edit(plan.staging, target=url, batches=done,
                         storage_options=backend.options, staging_options=backend.options)
    assert backend.get(NAME) == apply_model(data, edits)
    assert result.size_after == len(apply_model(data, edits))


def test_source_changed_between_plan_and_commit(target: tuple[Backend, bytes, str]) -> None:
    backend, data, url = target
    plan = plan_edit(url, [Replace(b"ab", b"BA")], staging=backend.target("staging"),
                     storage_options=backend.options, staging_options=backend.options,
                     shard_size=backend.sample // 4)
    done = [patch_batch(batch, storage_options=backend.options,
                        staging_options=backend.options) for batch in plan.batches]
    other = data[:100] + b"another writer" + data[114:]
    backend.put(NAME, other)
    with pytest.raises(SourceChangedError):
        commit_edit(plan.staging, batches=done, storage_options=backend.options,
                    staging_options=backend.options)
    assert backend.get(NAME) == other


def test_recover_leaves_a_clean_target(target: tuple[Backend, bytes, str]) -> None:
    backend, data, url = target
    result = recover_target(url, storage_options=backend.options)
    assert result.clean
    assert backend.get(NAME) == data and backend.names() == [NAME]
