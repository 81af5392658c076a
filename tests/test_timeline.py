"""Vessel area over time: per-class totals, the rolling window, the run summary and CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from sonoguide.pipeline.frames import Roi, Segmentation, Structure
from sonoguide.pipeline.timeline import (
    MM2,
    PX,
    AreaSample,
    AreaSummary,
    AreaTimeline,
    TimelineCsv,
    area_sample,
    summarize,
    write_csv,
)

CLASSES = ("background", "vein", "artery")


def seg(frame_id: int, t: float, areas: dict[str, list[float]], mm: float | None = None,
        classes: tuple[str, ...] = CLASSES) -> Segmentation:
    """A Segmentation whose structures have these pixel areas (mm2 too when `mm` is given)."""
    structures = tuple(
        Structure(name, np.zeros((3, 2), np.float32), px, (0.0, 0.0), 0.9,
                  None if mm is None else px * mm * mm)
        for name, values in areas.items() for px in values)
    return Segmentation(frame_id, t, t + 0.02, classes, Roi(0, 0, 100, 100),
                        np.zeros((100, 100), np.uint8), structures)


def test_sample_sums_each_class_and_uses_mm2_when_spacing_is_known():
    sample = area_sample(seg(1, 0.0, {"vein": [100.0, 50.0]}, mm=0.1))
    assert sample.unit == MM2
    assert sample.areas == pytest.approx({"vein": 1.5, "artery": 0.0})  # artery not seen: 0
    px = area_sample(seg(1, 0.0, {"artery": [40.0]}))
    assert px.unit == PX and px.areas["artery"] == 40.0


def test_timeline_keeps_only_the_last_window_and_is_bounded():
    timeline = AreaTimeline(window_s=2.0, max_samples=50)
    for i in range(100):  # 10 s at 10 Hz
        timeline.add(seg(i, i * 0.1, {"vein": [float(i)]}, mm=1.0))
    t, areas = timeline.series()
    assert len(timeline) <= 21 and t[0] >= -2.0 and t[-1] == 0.0
    assert areas["vein"][-1] == 99.0 and set(areas) == {"vein", "artery"}
    small = AreaTimeline(window_s=100.0, max_samples=5)
    for i in range(20):
        small.add(seg(i, i * 0.1, {"vein": [1.0]}))
    assert len(small) == 5


def test_timeline_starts_over_for_another_model_or_unit():
    timeline = AreaTimeline()
    timeline.add(seg(1, 0.0, {"vein": [10.0]}))  # px: no spacing yet
    timeline.add(seg(2, 0.1, {"vein": [10.0]}, mm=0.1))  # a calibration arrived: mm2
    assert len(timeline) == 1 and timeline.unit == MM2
    timeline.add(seg(3, 0.2, {"nerve": [5.0]}, classes=("background", "nerve", "vessel")))
    assert timeline.classes == ("nerve", "vessel") and len(timeline) == 1
    timeline.add(seg(4, 0.3, {}, classes=("background", "nerve", "vessel")))  # nothing found
    assert len(timeline) == 2  # 0 area is 0 in any unit: no restart


def test_summary_and_csv_of_a_compressed_vein(tmp_path):
    samples = [area_sample(seg(i, i / 30, {"vein": [100.0 - 10 * i], "artery": [40.0]}, mm=1.0))
               for i in range(10)]
    summary = summarize(samples)
    assert summary["unit"] == MM2
    assert summary["classes"]["vein"] == {"median": 55.0, "min": 10.0, "max": 100.0,
                                          "frames_seen": 10, "frames": 10}
    path = tmp_path / "a.csv"
    write_csv(path, samples)
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["frame_id", "t_s", "vein_mm2", "artery_mm2"]
    assert len(rows) == 11 and rows[1][:3] == ["0", "0.0000", "100.00"]
    assert summarize([]) == {"unit": PX, "classes": {}}


def test_a_long_run_summary_stays_bounded_and_right():
    """Hours of frames: min/max/counts exact, the median from a bounded uniform sample."""
    summary = AreaSummary(sample_size=500, seed=1)
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 100.0, 20_000)
    for i, v in enumerate(values):
        summary.add(AreaSample(i, i / 30, {"vein": float(v), "artery": 0.0}, MM2))
    out = summary.as_dict()
    vein = out["classes"]["vein"]
    assert summary._reservoir.shape == (500, 2) and out["median_of"] == 500
    assert vein["frames"] == 20_000 and vein["frames_seen"] == 20_000
    assert vein["min"] == round(values.min(), 2) and vein["max"] == round(values.max(), 2)
    assert abs(vein["median"] - np.median(values)) < 6.0  # 500 uniform picks: within ~3 %


def test_a_class_first_seen_late_counts_its_earlier_frames_as_zero():
    summary = AreaSummary()
    summary.add(AreaSample(0, 0.0, {"vein": 5.0}, MM2))
    summary.add(AreaSample(1, 0.1, {"vein": 5.0, "artery": 9.0}, MM2))
    artery = summary.as_dict()["classes"]["artery"]
    assert artery == {"median": 4.5, "min": 0.0, "max": 9.0, "frames_seen": 1, "frames": 2}


def test_timeline_csv_is_written_whole_at_close_and_leaves_nothing_else(tmp_path):
    out = TimelineCsv(tmp_path / "t.csv")
    out.add(area_sample(seg(5, 1.0, {})))  # nothing found yet: the unit comes later
    assert not (tmp_path / "t.csv").exists()  # no half file under the final name mid-run
    out.add(area_sample(seg(6, 1.5, {"vein": [12.0]}, mm=1.0)))
    out.close()
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows == [["frame_id", "t_s", "vein_mm2", "artery_mm2"],
                    ["5", "0.0000", "0.00", "0.00"], ["6", "0.5000", "12.00", "0.00"]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
