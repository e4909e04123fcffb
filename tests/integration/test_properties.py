"""Property tests: the engine (``edit_file``) against the in-memory reference model.

For random small files over a few symbols (so self-overlapping and shard-straddling matches are
common), random lists of all six edits and random shard geometry (shards from 1 byte up), the
engine must either refuse the list with an :class:`EditError` exactly when the model does,
leaving the file byte-for-byte unchanged, or leave exactly the model's bytes.

Profiles (environment ``BIGFILE_HYPOTHESIS_PROFILE``): ``quick``, ``default`` (the whole module
in well under a minute) and ``thorough``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from airflow_bigfile import (
    DataFile,
    edit_file,  # noqa: E402
)
from airflow_bigfile import payload as payload_module  # noqa: E402
from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate
from airflow_bigfile.exceptions import BigFileError, EditConflictError, EditError, PatternError
from airflow_bigfile.patch import patcher as patch_module  # noqa: E402
from airflow_bigfile.plan import manifest as plan_module  # noqa: E402
from tests.model import apply_model, match_count

# -- settings -------------------------------------------------------------------------------

_COMMON = dict(deadline=None, print_blob=True,
               phases=[p for p in Phase if p is not Phase.explain],   # keep failures quick
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("bigfile-quick", max_examples=20, **_COMMON)
settings.register_profile("bigfile-default", max_examples=150, **_COMMON)
settings.register_profile("bigfile-thorough", max_examples=2000, **_COMMON)
_PROFILE = settings.get_profile(
    "bigfile-" + os.environ.get("BIGFILE_HYPOTHESIS_PROFILE", "default"))


def scaled(weight: float) -> settings:
    """The module's profile with ``weight`` times its number of examples."""
    return settings(_PROFILE, max_examples=max(5, int(_PROFILE.max_examples * weight)))


# -- strategies -----------------------------------------------------------------------------

ALPHABETS = [b"ab", b"ab\n", b"a\n", b"ab\n\x00c"]
LITERALS = [b"a", b"aa", b"aba", b"abab", b"ba", b"\n", b"b\n", b"a\na"]
REPLACEMENTS = [b"", b"X", b"YY", b"aa", b"\n", b"ab"]
REGEXES = [                       # (pattern, template)
    (rb"a+b", rb"<\g<0>>"),
    (rb"(a)(b)", rb"\2\1"),
    (rb"\bab", b"X"),
    (rb"a|ab", b"Q"),
    (rb"[ab]{2,3}", b""),
    (rb"(?m)^a", b"S"),
    (rb"(?<=\n)b", b"B"),
    (rb"a(?=b)", b"-"),
    (rb"b\n?a", b"_"),
    (rb"(a)|(b)", rb"[\1\2]"),
    (rb"(?<=b)a*", b"Z"),         # zero-length after a b that no a follows
    (rb"a*", b"E"),               # always matches zero bytes somewhere
]
LONG_REGEXES = [(rb"a+", b"X"), (rb"(ab)+", b"Y"), (rb"[ab\n]+", b""), (rb"a+b", rb"\g<0>!"),
                (rb"b[a\n]*b", b"-")]

MAX_MATCH_64 = st.just(64)
small_data = st.lists(st.sampled_from(b"abXY\n"), min_size=0, max_size=3).map(bytes)


def contents(max_size: int) -> st.SearchStrategy[bytes]:
    return st.sampled_from(ALPHABETS).flatmap(
        lambda alphabet: st.lists(st.sampled_from(alphabet), max_size=max_size).map(bytes))


def _regex_replace(t: tuple[tuple[bytes, bytes], int]) -> Replace | None:
    """The regex edit, or None where its pattern cannot match within ``max_match`` (the
    constructor refuses those before any I/O, as test_max_match.py checks)."""
    (find, replace), max_match = t
    try:
        return Replace(find, replace, regex=True, max_match=max_match)
    except PatternError:
        return None


def edit_strategy(n: int, regexes=REGEXES, max_match=MAX_MATCH_64):
    pos = st.integers(0, n + 1)           # n + 1 is past the end
    return st.one_of(
        st.builds(Replace, st.sampled_from(LITERALS), st.sampled_from(REPLACEMENTS)),
        st.tuples(st.sampled_from(regexes), max_match).map(_regex_replace).filter(bool),
        st.builds(Patch, pos, small_data.filter(bool)),
        st.builds(Insert, pos, small_data),
        st.builds(Delete, pos, st.integers(1, max(1, n // 2) + 1)),
        st.builds(Truncate, st.integers(0, n + 3)),
        st.builds(Append, small_data),
    )


@st.composite
def cases(draw, max_size=48, max_edits=4, regexes=REGEXES, max_match=MAX_MATCH_64):
    data = draw(contents(max_size))
    edits = draw(st.lists(edit_strategy(len(data), regexes, max_match),
                          min_size=1, max_size=max_edits))
    return data, edits


@st.composite
def geometry(draw):
    """Engine keywords: shard alignment and size (a multiple of it, so 1-byte shards occur),
    the number of worker threads and sometimes a tiny read block."""
    align = draw(st.sampled_from([1, 1, 2, 3, 4, 8]))
    geo = {"align": align, "shard_size": align * draw(st.integers(1, 8)),
           "workers": draw(st.integers(1, 3))}
    block = draw(st.one_of(st.none(), st.integers(1, 16)))   # bytes a worker reads at a time
    if block is not None:
        geo["block_size"] = block
    return geo


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


# -- the check ------------------------------------------------------------------------------

def note_event(text: str) -> None:
    if currently_in_test_context():
        event(text)


def _reaches_max_match(data: bytes, edits: list) -> bool:
    """Some regex match is at least ``max_match`` long: the engine may then find it reaching
    the end of a shard's look-ahead window and refuse the edit naming ``max_match``."""
    return any(len(m.group()) >= e.max_match for e in edits
               if isinstance(e, Replace) and e.regex for m in re.finditer(e.find, data))


def _may_read_past_a_cut(error: Exception, data: bytes, kw: dict) -> bool:
    """The engine stops an attempt that can read more than ``max_match`` bytes past its
    start where a shard or block cuts the file (it cannot know that attempt's match), even
    when ``re.sub`` on the whole file finds a short one or none."""
    cut = min(kw.get("shard_size", len(data)), kw.get("block_size", len(data))) < len(data)
    return cut and "can be longer" in str(error)


def _run(path: str, edits: list, **kw):
    try:
        return edit_file(path, list(edits), **kw), None
    except BigFileError as exc:          # anything else is a bug and fails the test as is
        return None, exc


def check_engine(workdir: Path, data: bytes, edits: list, *, dry_first: bool = False,
          engine_edits: list | None = None, **kw):
    """Run the engine on a fresh file holding ``data`` and compare with the model (which
    applies ``edits``; the engine applies ``engine_edits``, the same edits in another form,
    when given). Returns the result (None when the edit list was refused)."""
    try:
        expected, model_error = apply_model(data, edits), None
    except EditError as exc:
        expected, model_error = None, exc
    note_event("model: " + (type(model_error).__name__ if model_error else "ok"))
    folder = tempfile.mkdtemp(dir=workdir)
    path = os.path.join(folder, "data.bin")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o640)
    context = f"data={data!r} edits={edits!r} kw={kw!r}"
    try:
        ours = edits if engine_edits is None else engine_edits
        if dry_first:
            dry, dry_error = _run(path, ours, dry_run=True, **kw)
            assert Path(path).read_bytes() == data, f"dry_run changed the file: {context}"
        result, error = _run(path, ours, **kw)
        after = Path(path).read_bytes()
        if model_error is not None:
            assert isinstance(error, EditError), (
                f"model refuses ({model_error}) but the engine gave {error or result!r}: "
                f"{context}")
            assert after == data, f"refused edit changed the file: {context}"
        elif (error is not None and isinstance(error, PatternError)
              and "max_match" in str(error)
              and (_reaches_max_match(data, edits) or _may_read_past_a_cut(error, data, kw))):
            note_event("engine: match reaches the window end")
            assert after == data, f"refused edit changed the file: {context}"
        else:
            assert error is None, f"engine refused ({error!r}), model gives {expected!r}: {context}"
            assert after == expected, f"engine wrote {after!r}, model {expected!r}: {context}"
            assert result.size_before == len(data), context
            assert result.size_after == len(expected), context
            assert result.matches == match_count(data, edits), context
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, f"mode bits lost: {context}"
        if dry_first:
            assert (dry_error is None) == (error is None), (
                f"dry run gave {dry_error or dry!r}, real run {error or result!r}: {context}")
            if error is None:
                assert (dry.size_before, dry.size_after, dry.matches) == (
                    result.size_before, result.size_after, result.matches), context
        leftovers = sorted(set(os.listdir(folder)) - {"data.bin"})
        assert not [name for name in leftovers if not name.endswith(".lock")], (
            f"left behind {leftovers}: {context}")
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- properties -----------------------------------------------------------------------------

@contextlib.contextmanager
def sparse_gap(gap: int | None):
    """Blocks with fewer literal matches than one per ``gap`` bytes stage match by match;
    the real gap (64 KiB) is larger than these files, so small gaps exercise that path."""
    saved = patch_module.SPARSE_GAP
    patch_module.SPARSE_GAP = gap or saved
    try:
        yield
    finally:
        patch_module.SPARSE_GAP = saved


@contextlib.contextmanager
def payloads_as(kind: str, edits: list, workdir: Path):
    """``edits`` with their data as given (``bytes``), or as :class:`DataFile` payloads:
    referenced from the manifest (``file``) or staged in 3-byte checked chunks (``staged``)."""
    if kind == "bytes":
        yield edits
        return
    folder = tempfile.mkdtemp(dir=workdir)
    out = []
    for i, edit in enumerate(edits):
        if isinstance(edit, (Patch, Insert, Append)):
            name = os.path.join(folder, f"data-{i}")
            with open(name, "wb") as f:
                f.write(edit.data)
            edit = dataclasses.replace(edit, data=DataFile(name))
        out.append(edit)
    saved = plan_module.INLINE_MAX, payload_module.CHUNK
    if kind == "staged":
        plan_module.INLINE_MAX, payload_module.CHUNK = 0, 3
    try:
        yield out
    finally:
        plan_module.INLINE_MAX, payload_module.CHUNK = saved
        shutil.rmtree(folder, ignore_errors=True)


@scaled(1.0)
@given(case=cases(), geo=geometry(), dry_first=st.booleans(),
       mode=st.sampled_from(["auto", "auto", "rewrite"]),
       gap=st.sampled_from([None, 1, 2, 7]),
       payload=st.sampled_from(["bytes", "bytes", "file", "staged"]))
def test_engine_matches_model(workdir, case, geo, dry_first, mode, gap, payload):
    data, edits = case
    with sparse_gap(gap), payloads_as(payload, edits, workdir) as ours:
        check_engine(workdir, data, edits, dry_first=dry_first, mode=mode, engine_edits=ours,
              **geo)


@scaled(0.5)
@given(case=cases(max_size=40, max_edits=2, regexes=LONG_REGEXES,
                  max_match=st.integers(1, 6)),
       geo=geometry())
def test_engine_enforces_max_match(workdir, case, geo):
    """With a small max_match, a longer match must fail the edit (the model raises)."""
    data, edits = case
    check_engine(workdir, data, edits, **geo)


@scaled(0.4)
@given(case=cases(max_size=40, max_edits=3), geo=geometry(),
       delimiter=st.sampled_from([b"\n", b"b"]))
def test_record_alignment_does_not_change_results(workdir, case, geo, delimiter):
    data, edits = case
    check_engine(workdir, data, edits, delimiter=delimiter, **geo)


@st.composite
def same_length_cases(draw):
    data = draw(contents(48))
    n = len(data)
    patch = small_data.filter(bool).flatmap(       # mostly inside the file
        lambda d: st.builds(Patch, st.integers(0, max(0, n - len(d)) + 1), st.just(d)))
    edit = st.one_of(
        patch,
        st.sampled_from([Replace(b"a", b"X"), Replace(b"aa", b"XY"), Replace(b"abab", b"ABAB"),
                         Replace(b"aba", b"\n\n\n"), Replace(b"\n", b"|")]),
    )
    return data, draw(st.lists(edit, min_size=1, max_size=3))


@scaled(0.4)
@given(case=same_length_cases(), geo=geometry(), mode=st.sampled_from(["inplace", "auto"]))
def test_same_length_edits_in_place(workdir, case, geo, mode):
    data, edits = case
    check_engine(workdir, data, edits, mode=mode, **geo)


@pytest.mark.parametrize("edits", [[Patch(1, b"X")], [Replace(b"ab", b"AB"), Patch(2, b"\n")]])
def test_inplace_mode_commits_in_place(workdir, edits):
    result = check_engine(workdir, b"abcabcab\n" * 3, edits, mode="inplace", shard_size=4, align=2,
                   workers=2)
    assert result.commit_mode == "inplace"


def test_inplace_mode_refuses_length_changes(workdir):
    """Edits that move bytes cannot commit in place (appends and truncates may)."""
    for edits in ([Insert(0, b"x")], [Replace(b"a", b"")], [Delete(0, 1)],
                  [Replace(b"a", b"bb", regex=True)], [Patch(0, b"x"), Insert(1, b"y")]):
        folder = tempfile.mkdtemp(dir=workdir)
        path = os.path.join(folder, "data.bin")
        Path(path).write_bytes(b"abc")
        with pytest.raises(EditError, match="inplace"):
            edit_file(path, edits, mode="inplace")
        assert Path(path).read_bytes() == b"abc"


# -- every shard size for a few tricky cases --------------------------------------------------

TRICKY = [
    (b"aaaaa", [Replace(b"aa", b"X")]),
    (b"aaaaaaa", [Replace(b"aa", b"aaa")]),
    (b"abababab", [Replace(b"abab", b"")]),
    (b"abababa", [Replace(b"aba", b"-")]),
    (b"aabaab\naab", [Replace(rb"a+b", rb"<\g<0>>", regex=True)]),
    (b"abab ab\nab", [Replace(rb"\bab", b"X", regex=True)]),
    (b"a\naa\nab\n", [Replace(rb"(?m)^a", b"S", regex=True)]),
    (b"aaaaa", [Replace(b"aa", b"X"), Patch(4, b"b"), Insert(2, b"|"), Append(b"!")]),
    (b"aaaaa", [Replace(b"aa", b"X"), Truncate(4), Insert(4, b"<")]),
    (b"abcdef", [Delete(1, 4), Insert(1, b"1"), Insert(5, b"5"), Truncate(9), Insert(6, b"6")]),
    (b"aaaa", [Replace(b"aa", b"X"), Truncate(3)]),                        # conflict
    (b"abab", [Replace(b"ab", b"X"), Replace(b"ba", b"Y")]),               # conflict
    (b"aaaaaa", [Replace(rb"a+", b"X", regex=True, max_match=5)]),         # too long
    (b"babb", [Replace(rb"(?<=b)a*", b"X", regex=True)]),                  # zero length
    (b"ab", [Replace(rb"(?<=b)a*", b"X", regex=True)]),                    # ... at the end
    (b"a", [Replace(rb"a*", b"X", regex=True)]),
    (b"", [Replace(rb"a*", b"X", regex=True)]),
]


@pytest.mark.parametrize("data, edits, first, second", [
    (b"abab", [Replace(b"ab", b"X"), Replace(b"ba", b"Y")], "edit #1", "edit #2"),
    (b"0123456789", [Append(b"x"), Patch(2, b"ab"), Delete(3, 2)], "edit #2", "edit #3"),
    (b"0123456789", [Truncate(4), Insert(6, b"x")], "edit #1", "edit #2"),
    (b"aaaa", [Replace(b"aa", b"X"), Patch(1, b"b")], "edit #1", "edit #2"),
])
def test_conflicts_name_both_edits(workdir, data, edits, first, second):
    folder = tempfile.mkdtemp(dir=workdir)
    path = os.path.join(folder, "data.bin")
    Path(path).write_bytes(data)
    for shard_size in (1, 3, 64):
        with pytest.raises(EditConflictError) as info:
            edit_file(path, edits, shard_size=shard_size, align=1)
        assert first in str(info.value) and second in str(info.value), str(info.value)
        assert Path(path).read_bytes() == data


@pytest.mark.parametrize("data, edits", TRICKY)
def test_tricky_cases_for_every_shard_size(workdir, data, edits):
    for shard_size in range(1, len(data) + 2):
        for gap in (None, 1):
            with sparse_gap(gap):
                check_engine(workdir, data, edits, shard_size=shard_size, align=1,
                      workers=1 + shard_size % 3)


def test_process_executor(workdir):
    for data, edits in TRICKY[:3] + TRICKY[7:9]:
        check_engine(workdir, data, edits, shard_size=2, align=1, workers=2, executor="process")
