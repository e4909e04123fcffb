"""The guard that keeps regex scans exact at a window's cut (patch/reach.py)."""

from __future__ import annotations

import re

from airflow_bigfile.patch.reach import factors, guarded


def test_guard_keeps_group_numbers_names_and_flags():
    pattern = re.compile(rb"(?i)(?P<user>\w+)@(OLD)\.com")
    guard = guarded(pattern)
    match = guard.search(b"x Bob@old.com y")
    assert match is not None and match.group("user", 2) == (b"Bob", b"old")
    assert guard.groupindex == pattern.groupindex and guard.groups == pattern.groups
    # the guard fires (an empty match) where an attempt can read to the end of the range
    assert guard.search(b"  12345", 0, 7).span() == (2, 2)
    assert guard.search(b"  12345 ", 0, 8).span() == (2, 2)  # or the byte before it
    assert guard.search(b"  12345  ", 0, 9).start() == 8  # the scan owns no such start


def test_factors_cover_the_inside_of_matches_and_nothing_else():
    inside = factors(re.compile(rb"(\d+)@old\.com"))
    assert inside is not None
    for piece in (b"23@ol", b"l", b"3@old.com", b"", b"99999"):
        assert inside.fullmatch(piece), piece
    for piece in (b"3@old.com\n", b"a1", b"@new"):
        assert not inside.fullmatch(piece), piece
    assert factors(re.compile(rb"x(?=y)")) is None  # lookaround: every attempt is guarded
