"""The scan state a shard's blocks hand on (patch/patcher.py ``ScanState``)."""

from __future__ import annotations

from airflow_bigfile.patch.patcher import ScanState


def test_fresh_shard_starts_at_its_start_with_nothing_carried():
    state = ScanState.resume(100, 200, [100, 100], owners=[0, 3])
    assert (state.cur, state.pos, state.counts) == (100, [100, 100], [0, 0])
    assert (state.reach_end, state.reach_owner, state.first) == (100, None, None)


def test_a_carried_match_covers_up_to_the_furthest_resume_and_names_its_edit():
    state = ScanState.resume(100, 200, [104, 120], owners=[0, 3])
    assert (state.cur, state.reach_end, state.reach_owner) == (120, 120, 3)
    # carried past the shard's end: the output starts at the end, nothing to emit
    assert ScanState.resume(100, 200, [250], owners=[1]).cur == 200


def test_pending_while_any_replace_still_scans_before_the_block_end():
    state = ScanState.resume(0, 100, [0, 60], owners=[0, 1])
    state.cur = 60
    assert state.pending(50)           # replace 0 still scans from 0
    state.pos[0] = 70
    assert not state.pending(50) and state.pending(61)


def test_first_change_stays_and_resume_out_is_at_least_the_next_shard():
    state = ScanState.resume(0, 100, [0, 0], owners=[0, 1])
    state.changed_at(7)
    state.changed_at(3)                # later calls never move it
    assert state.first == 7
    state.changes(105, 1)
    state.pos[:] = [90, 105]
    assert (state.reach_end, state.reach_owner) == (105, 1)
    assert state.resume_out(100) == [100, 105]
