"""The pure-python approximate-time synchroniser."""

import pytest

from humanoid_inspection.perception.sync import ApproximateTimeSync


def test_matches_within_slop_and_drops_older():
    got = []
    sync = ApproximateTimeSync(3, slop=0.02, callback=lambda *m: got.append(m))
    sync.add(0, 1.000, 'c1')
    sync.add(1, 1.005, 'd1')
    assert not got
    sync.add(2, 1.001, 'i1')
    assert got == [('c1', 'd1', 'i1')]
    assert sync.pending() == [0, 0, 0]


def test_picks_closest_partner_and_skips_unmatched():
    sync = ApproximateTimeSync(2, slop=0.01)
    sync.add(0, 1.00, 'c1')
    sync.add(0, 1.10, 'c2')
    assert sync.add(1, 1.101, 'd2') == ['c2', 'd2']
    assert sync.pending() == [0, 0]  # c1 is older than the match: dropped


def test_no_match_outside_slop():
    sync = ApproximateTimeSync(2, slop=0.005)
    sync.add(0, 1.0, 'c')
    assert sync.add(1, 1.02, 'd') is None
    assert sync.matched == 0


def test_queue_is_bounded():
    sync = ApproximateTimeSync(2, slop=0.001, queue_size=3)
    for i in range(10):
        sync.add(0, float(i), i)
    assert sync.pending() == [3, 0]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSync(1, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSync(2, -1.0)
