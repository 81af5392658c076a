"""Pulling the capture card's cable again and again: the short version of
`python -m tests.reliability.replug` (the 100-cycle run)."""

from __future__ import annotations

from tests.reliability.replug import FAILURE_STYLES, RECONNECT_LIMIT_S, RESOLUTIONS, run


def test_replugs_reconnect_within_4_s_and_each_new_size_gets_its_image_area(tmp_path):
    # periods shortened tenfold; reopen backoff, open times and the 4 s limit stay real
    report = run(cycles=10, resize_every=3, time_scale=0.1, seed=1, workdir=tmp_path)
    assert report.failures() == [], report.summary()
    cycles = report.cycles
    assert {c.style for c in cycles} == set(FAILURE_STYLES)  # every way a driver fails
    assert [c.cycle for c in cycles if c.resized] == [3, 6, 9]
    assert {(c.width, c.height) for c in cycles} == set(RESOLUTIONS)
    assert all(c.reconnect_s is not None and c.reconnect_s <= RECONNECT_LIMIT_S for c in cycles)
    assert all(c.roi_ok and c.redetect_said for c in cycles if c.resized)
    assert all(c.last_frame_kept and c.no_signal_seen for c in cycles)
    assert max(c.threads for c in cycles) == cycles[0].threads
    assert report.leftover_threads == [] and report.opens == report.releases
