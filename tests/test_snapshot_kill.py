"""kill -9 while snapshots are written: the short version of
`python -m tests.reliability.snapshot_kill` (30 kills)."""

from __future__ import annotations

import json

import cv2
import numpy as np

from tests.reliability.snapshot_kill import check_folder, png_problem, run


def test_killed_snapshot_writer_leaves_no_truncated_file_under_a_final_name(tmp_path):
    rounds = run(kills=5, seed=0, max_delay_s=0.8, workdir=tmp_path)
    assert [p for r in rounds for p in r.problems] == []
    assert sum(r.snapshots for r in rounds) > 0  # the writer was really at work


def test_the_check_finds_cut_pictures_and_records_without_their_pictures(tmp_path):
    """The kill run is only as good as its check: it must see what a non-atomic writer leaves."""
    ok, encoded = cv2.imencode(".png", np.full((40, 60, 3), 90, np.uint8))
    assert ok
    whole = encoded.tobytes()
    assert png_problem(whole) is None
    assert png_problem(whole[:-12]) == "no IEND chunk"
    assert "cut off" in png_problem(whole[: len(whole) // 2])
    assert png_problem(whole + b"junk") == "4 bytes after IEND"

    stem = "sonoguide_20240101_120000_f7"
    (tmp_path / f"{stem}_raw.png").write_bytes(whole)
    (tmp_path / f"{stem}_overlay.png").write_bytes(whole[:100])  # cut mid-file
    (tmp_path / f"{stem}.json").write_text(json.dumps({"frame_id": 7}))
    (tmp_path / "sonoguide_20240101_120001_f8.json").write_text('{"frame_id": 8')  # half a JSON
    (tmp_path / "sonoguide_20240101_120002_f9.json").write_text('{"frame_id": 9}')  # no pictures
    (tmp_path / ".sonoguide_20240101_120003_f10_raw.png.part").write_bytes(whole[:50])  # allowed
    snapshots, temp, orphans, problems = check_folder(tmp_path)
    assert (snapshots, temp, orphans) == (3, 1, 0)
    text = "\n".join(problems)
    assert f"{stem}_overlay.png" in text and "f8.json: not valid JSON" in text
    assert "f9.json: its raw PNG is missing" in text
    assert "f9.json: its overlay PNG is missing" in text
    assert f"{stem}_raw.png" not in text and "part" not in text
