"""The boundary fuzz in short (tests/reliability/fuzz.py): a few hundred bad frames, clips,
models and settings files, and not one may end in a crash, a hang or silent garbage.

The full run (1200 cases by default): python -m tests.reliability.fuzz
"""

from __future__ import annotations

import pytest

from tests.reliability.fuzz import CATEGORIES, run

CASES = 250  # the first 250 cases of seed 0: every category, most kinds at least once


def test_short_fuzz_ends_every_bad_input_in_a_message_or_a_correct_result() -> None:
    report = run(seed=0, cases=CASES, time_limit=60.0, echo=None)
    ran = {r.category for r in report.results}
    assert ran == set(CATEGORIES), f"only {sorted(ran)} ran: {report.summary_line()}"
    # A slow machine may stop at the time limit; what ran must still be a fair sample.
    assert len(report.results) >= CASES // 2, report.summary_line()
    if report.failures:  # the table and each distinct failure, with the line to rerun it
        rerun = "python -m tests.reliability.fuzz --seed 0"
        pytest.fail("\n".join([report.table(), report.summary_line(),
                               *report.failure_lines(rerun)]), pytrace=False)
