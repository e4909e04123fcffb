"""``edit_file`` with a regex against ``re.sub`` on the whole file, through both engines.

RE2 runs a block's bulk when the pattern translates (patch/re2.py) and ``re`` the rest; the
result must be ``re.sub``'s at every shard size, with threads and processes, or an error
naming ``max_match`` with the file unchanged.
"""

from __future__ import annotations

import re
import resource
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_bigfile import Replace, edit_file
from airflow_bigfile.exceptions import PatternError
from airflow_bigfile.patch import re2
from airflow_bigfile.patch.re2 import translate
from airflow_bigfile.patch.scan import Matcher, Window
from tests.unit.test_re2 import ALPHABET, patterns, same_length_patterns


@pytest.fixture()
def small_bulk(monkeypatch):
    """RE2 takes any bulk, however short, so small files exercise it."""
    monkeypatch.setattr(re2, "MIN_BULK", 1)


PIECES = st.lists(st.binary(min_size=1, max_size=12).map(
    lambda b: bytes(ALPHABET[c % len(ALPHABET)] for c in b)), min_size=1, max_size=8)
SPLITS = {"repeat": st.integers(1, 30), "max_match": st.integers(8, 64),
          "shard_size": st.integers(1, 4096),
          "block": st.one_of(st.none(), st.integers(16, 512)), "workers": st.integers(1, 2)}


def check_edit_file(folder, pattern: bytes, template: bytes, data: bytes, max_match: int,
                    shard_size: int, block: int | None, workers: int) -> None:
    """``edit_file`` gives ``re.sub``'s bytes, or a ``max_match`` error with the file as it
    was (an error only where a cut makes an attempt unsure or a match is too long)."""
    compiled = re.compile(pattern)
    lengths = [m.end() - m.start() for m in compiled.finditer(data)]
    try:
        edit = Replace(pattern, template, regex=True, max_match=max_match)
    except PatternError:
        assert all(n > max_match for n in lengths)
        return
    path = folder / "f"
    path.write_bytes(data)
    extra = {} if block is None else {"block_size": block}
    try:
        edit_file(str(path), [edit], shard_size=shard_size, align=1, workers=workers, **extra)
    except PatternError as exc:
        assert path.read_bytes() == data
        assert 0 in lengths or "max_match" in str(exc)
        # a window that is the whole file errs only for a match that is really too long
        cut = shard_size < len(data) or (block is not None and block < len(data))
        assert 0 in lengths or cut or any(n > max_match for n in lengths)
        return
    assert path.read_bytes() == compiled.sub(template, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=patterns(nested=False), pieces=PIECES, **SPLITS)
def test_edit_file_equals_re_sub(tmp_path_factory, small_bulk, case, pieces, repeat,
                                 max_match, shard_size, block, workers):
    pattern, template = (text.encode("latin-1") for text in case)
    check_edit_file(tmp_path_factory.mktemp("engines"), pattern, template,
                    b"".join(pieces) * repeat, max_match, shard_size, block, workers)


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=same_length_patterns(), pieces=PIECES, **SPLITS)
def test_same_length_regex_equals_re_sub(tmp_path_factory, small_bulk, case, pieces, repeat,
                                         max_match, shard_size, block, workers):
    """Same-length regex replaces are written straight into the new file by the workers,
    matches straddling shards included."""
    pattern, template = case[0].encode("latin-1"), case[1].encode("latin-1")
    check_edit_file(tmp_path_factory.mktemp("same"), pattern, template,
                    b"".join(pieces) * repeat, max_match, shard_size, block, workers)


@pytest.mark.parametrize("executor", ["thread", "process"])
@pytest.mark.parametrize("pattern, template", [
    (rb"(\d+)@old\.com", rb"\1@new.org"),           # RE2
    (rb"(\d{4})-(\d\d)-(\d\d)", rb"\3.\2.\1"),      # RE2
    (rb"(?<=,)(\d+)@old\.com", rb"\1@new.org"),     # lookbehind: re
])
def test_csv_equals_re_sub(tmp_path, executor, pattern, template):
    line = b"%d,John Smith,%d@old.com,2023-01-%02d,text \xe9\n"
    data = b"".join(line % (i, i * 7, i % 28 + 1) for i in range(40_000))
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    result = edit_file(str(path), [Replace(pattern, template, regex=True)],
                       shard_size="256KiB", workers=2, executor=executor)
    assert path.read_bytes() == re.sub(pattern, template, data)
    assert result.matches == 40_000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("data", [b"a" * 100_000 + b"b", b"a" * 30_000 + b"b\n"])
def test_backtracking_pattern_runs_on_re2_in_linear_time(tmp_path, data):
    """The issue's case: ``(a+)+$`` on 100,000 ``a`` then ``b`` takes ``re`` longer than the
    universe's age; RE2 says "no match" at once (also before a final newline, where ``$``
    holds too)."""
    path = tmp_path / "f"
    path.write_bytes(data)
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = edit_file(str(path), [Replace(rb"(a+)+$", b"X", regex=True)])
    assert time.perf_counter() - wall < 1.0 and cpu_seconds() - cpu < 1.0
    assert [e["engine"] for e in result.regex_engines] == ["re2"]
    assert result.matches == 0 and path.read_bytes() == data


@pytest.mark.parametrize("shard_size", [1, 7, 64, 4096, 1 << 20])
@pytest.mark.parametrize("pattern, data", [
    (rb"(?:a+b){2}", b"aaaaabaaaaab" + b"x" * 100),     # two passes through a+: 12 bytes
    (rb"(?:ab)+$", b"ab" * 20),                          # one 40-byte match at the end
    (rb"(\d+,)+", b"1,22,333,4444,55555," + b"x" * 50),  # nested: 20 bytes
])
def test_a_match_longer_than_max_match_is_an_error_at_every_shard_size(
        tmp_path, small_bulk, shard_size, pattern, data):
    assert translate(re.compile(pattern), b"X").engine == "re2"
    path = tmp_path / "f"
    path.write_bytes(data)
    with pytest.raises(PatternError, match="max_match=8"):
        edit_file(str(path), [Replace(pattern, b"X", regex=True, max_match=8)],
                  shard_size=shard_size, align=1)
    assert path.read_bytes() == data


def test_bulk_runs_on_re2_up_to_a_clean_cut():
    data = bytearray(b"".join(b"%d,x,%d@old.com\n" % (i, i) for i in range(10_000)))
    matcher = Matcher(Replace(rb"(\d+)@old\.com", rb"\1@new.org", regex=True), 0, "e")
    bulk = matcher.bulk(Window(data, len(data), 0, False), 0, len(data) - 4098)
    assert bulk is not None and bulk.end <= len(data) - 4098
    assert bytes(bulk.data) == re.sub(rb"(\d+)@old\.com", rb"\1@new.org", data[:bulk.end])
    assert bulk.count == data.count(b"@old.com", 0, bulk.end) and bulk.first == 4
    # a run of digits long enough for a match over max_match: re must look
    data[1000:1000 + 5000] = b"7" * 5000
    assert matcher.bulk(Window(data, len(data), 0, False), 0, len(data) - 4098) is None
