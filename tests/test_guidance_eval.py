"""The guidance eval's pure parts (sonoguide.pipeline.guidance_eval): the angle finder, the truth
rules and the miss reasons, on synthetic label maps. Fast: no phantom, no model."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sonoguide.phantom.labels import ARTERY, NERVE, VEIN
from sonoguide.pipeline import guidance_eval as ge
from sonoguide.pipeline.frames import Roi, Structure
from sonoguide.pipeline.guidance import (
    ARTERY_FIRST,
    INTRANEURAL,
    TIP_IN_ARTERY,
    VESSEL_ON_PATH,
    Guidance,
    assess,
)
from sonoguide.pipeline.needle import IN_PLANE, NeedleFinding

SP = 0.2  # mm per px of the synthetic maps
SIZE = 200


def _view() -> ge.View:
    return ge.View(SIZE, SIZE, SP, (-20.0, 0.0), 0.0, SIZE - 1.0)


def _disc(labels: np.ndarray, centre: tuple[int, int], radius: int, code: int) -> None:
    cv2.circle(labels, centre, radius, int(code), -1)


def _neck() -> np.ndarray:
    """An artery shallow on the left, a vein deeper on the right (a 40 x 40 mm view)."""
    labels = np.zeros((SIZE, SIZE), np.uint8)
    _disc(labels, (70, 60), 15, ARTERY)
    _disc(labels, (150, 150), 30, VEIN)
    return labels


def _point(view: ge.View, angle: float, s_mm: float) -> tuple[int, int]:
    a = math.radians(angle)
    return (int(round(view.entry[0] + s_mm / SP * math.cos(a))),
            int(round(view.entry[1] + s_mm / SP * math.sin(a))))


def test_label_runs() -> None:
    s = np.arange(10, dtype=float)
    codes = np.array([0, 2, 2, 2, 0, 0, 3, 3, 0, 1], np.uint8)
    assert ge.label_runs(s, codes) == [ge.Run(2, 1.0, 3.0), ge.Run(3, 6.0, 7.0),
                                       ge.Run(1, 9.0, 9.0)]
    assert ge.label_runs(np.array([]), np.array([], np.uint8)) == []


def test_middle_of_longest_stretch() -> None:
    ok = {15: None, 16: 1.0, 17: 2.0, 18: None, 19: 3.0, 20: 4.0, 21: 5.0, 22: None}
    assert ge.middle_of_longest(ok) == (20, 4.0)
    assert ge.middle_of_longest({15: None, 16: None}) is None


@pytest.mark.parametrize("scenario, code", [("artery_first", ARTERY), ("vein_clear", VEIN)])
def test_angle_finder_stops_the_tip_inside_the_structure_met_first(scenario, code) -> None:
    labels, view = _neck(), _view()
    plan = ge.find_plan(scenario, "jugular", labels, view, SIZE * SP)
    assert plan is not None
    angle, start, stop = plan
    assert start < stop
    x, y = _point(view, angle, stop)
    assert labels[y, x] == code  # the tip ends inside it
    s, codes = ge.cast(labels, view, angle)
    first = next(c for c in codes if c in (ARTERY, VEIN))
    assert first == code  # and that is what the line meets first
    x, y = _point(view, angle, start)
    assert 0 <= x < SIZE and labels[y, x] == 0  # the run starts in the picture, outside it


def test_angle_finder_clear_line_meets_nothing_and_none_when_impossible() -> None:
    labels, view = _neck(), _view()
    plan = ge.find_plan("clear", "jugular", labels, view, SIZE * SP)
    assert plan is not None
    _, codes = ge.cast(labels, view, plan[0])
    assert not np.isin(codes, (ARTERY, VEIN)).any()
    # a picture that is all vein: no line is clear, no line meets the artery
    full = np.full((SIZE, SIZE), VEIN, np.uint8)
    assert ge.find_plan("clear", "jugular", full, view, SIZE * SP) is None
    assert ge.find_plan("artery_first", "jugular", full, view, SIZE * SP) is None


def test_vessel_on_path_stops_short_of_the_vessel() -> None:
    labels, view = np.zeros((SIZE, SIZE), np.uint8), _view()
    _disc(labels, (120, 120), 25, ARTERY)
    angle, _, stop = ge.find_plan("vessel_on_path", "plexus", labels, view, SIZE * SP)
    x, y = _point(view, angle, stop)
    assert labels[y, x] == 0
    s, codes = ge.cast(labels, view, angle)
    entry = s[np.flatnonzero(codes == ARTERY)[0]]
    assert entry - stop == pytest.approx(ge.SHORT_OF_MM, abs=2 * SP)


def test_visible_length_of_the_shaft() -> None:
    view = ge.View(SIZE, SIZE, SP, (-20.0, 0.0), 10.0, 190.0)
    # along y = x + 20: enters the shown columns at x = 10 (y 30), the tip at (40, 60)
    assert ge.visible_mm(view, (40.0, 60.0)) == pytest.approx(30 * math.sqrt(2) * SP)
    assert ge.visible_mm(view, (5.0, 25.0)) == 0.0  # still beyond the probe's face


def _structures(labels: np.ndarray, names: dict[int, str]) -> list[Structure]:
    out = []
    for code, name in names.items():
        contours, _ = cv2.findContours((labels == code).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        for c in contours:
            c = c.reshape(-1, 2).astype(np.float32)
            out.append(Structure(name, c, float(cv2.contourArea(c)), tuple(c.mean(0)), 0.99))
    return out


def _needle(tip: tuple[float, float], angle: float) -> NeedleFinding:
    return NeedleFinding(IN_PLANE, tip, (0.0, 0.0), angle, True, None, 1.0)


@pytest.mark.parametrize("tip, angle, expected", [
    ((70.0, 60.0), 40.0, {TIP_IN_ARTERY.key: True, ARTERY_FIRST.key: None}),  # in the artery
    ((40.0, 35.0), 40.0, {TIP_IN_ARTERY.key: False, ARTERY_FIRST.key: True}),  # heading to it
    ((100.0, 100.0), 45.0, {TIP_IN_ARTERY.key: False, ARTERY_FIRST.key: False}),  # to the vein
    ((20.0, 170.0), 15.0, {TIP_IN_ARTERY.key: False, ARTERY_FIRST.key: False}),  # nothing
])
def test_jugular_truth_and_the_guide_agree_on_truth_outlines(tip, angle, expected) -> None:
    labels = _neck()
    assert ge.truth("jugular", labels, tip, angle) == expected
    # the guide's own rule, fed the truth as sure outlines and the true needle, says the same
    found = assess("jugular", _structures(labels, {ARTERY: "artery", VEIN: "vein"}), None,
                   _needle(tip, angle), Roi(0, 0, SIZE, SIZE), SP)
    keys = {w.key for w in found.warnings}
    assert {k: k in keys for k in expected} == {k: bool(v) for k, v in expected.items()}


def test_jugular_truth_vein_before_artery_is_no_warning() -> None:
    labels = np.zeros((SIZE, SIZE), np.uint8)
    _disc(labels, (80, 80), 20, VEIN)
    _disc(labels, (140, 140), 20, ARTERY)
    assert ge.truth("jugular", labels, (40.0, 40.0), 45.0)[ARTERY_FIRST.key] is False
    assert ge.truth("jugular", labels, (110.0, 110.0), 45.0)[ARTERY_FIRST.key] is True


def test_plexus_truth() -> None:
    labels = np.zeros((SIZE, SIZE), np.uint8)
    _disc(labels, (80, 80), 20, NERVE)
    _disc(labels, (150, 150), 15, VEIN)
    assert ge.truth("plexus", labels, (80.0, 80.0), 45.0) == {
        INTRANEURAL.key: True, VESSEL_ON_PATH.key: True}
    assert ge.truth("plexus", labels, (80.0, 80.0), 20.0) == {
        INTRANEURAL.key: True, VESSEL_ON_PATH.key: False}
    assert ge.truth("plexus", labels, (20.0, 150.0), 30.0) == {
        INTRANEURAL.key: False, VESSEL_ON_PATH.key: False}


def test_miss_reasons_in_order() -> None:
    labels = _neck()
    tip, angle = (70.0, 60.0), 40.0
    end = (199.0, 60.0 + 129.0 * math.tan(math.radians(angle)))
    sure = _structures(labels, {ARTERY: "artery", VEIN: "vein"})
    unsure = [Structure(s.class_name, s.contour, s.area_px, s.centroid, 0.5, unsure=True)
              for s in sure]
    found = Guidance(_needle(tip, angle), None, ())
    kind = TIP_IN_ARTERY.key
    assert ge.miss_reason(kind, Guidance(None, None, ()), (), sure, tip, end, SP) == ge.NOT_FOUND
    assert ge.miss_reason(kind, found, (), [s for s in sure if s.class_name == "vein"], tip,
                          end, SP) == ge.NOT_DRAWN
    assert ge.miss_reason(kind, found, (), unsure, tip, end, SP) == ge.UNSURE
    assert ge.miss_reason(kind, found, (kind,), sure, tip, end, SP) == ge.GATE
    off = Guidance(_needle((tip[0] - 20, tip[1] - 17), angle), None, ())
    assert ge.miss_reason(kind, off, (), sure, tip, end, SP) == ge.TIP_OFF


def test_false_reason_tells_a_boundary_case() -> None:
    labels = _neck()
    # 0.6 mm (3 px) outside the artery's edge: a boundary case, not an invented outline
    tip = (70.0 - 18.0, 60.0)
    _, points, _ = ge.truth_path(labels, tip, 40.0)
    g = Guidance(_needle(tip, 40.0), None, ())
    assert ge.false_reason(TIP_IN_ARTERY.key, g, labels, tip, points, SP) == ge.BOUNDARY
    far = (20.0, 150.0)
    _, points, _ = ge.truth_path(labels, far, 20.0)
    g = Guidance(_needle(far, 20.0), None, ())
    assert ge.false_reason(TIP_IN_ARTERY.key, g, labels, far, points, SP) == ge.OUTLINE


def test_seeds_from() -> None:
    assert ge.seeds_from("9100-9102,9200") == [9100, 9101, 9102, 9200]
