"""Needle guidance: the projected path and the warnings a doctor would act on."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sonoguide.pipeline.frames import Roi, Structure, Target
from sonoguide.pipeline.guidance import (
    ARTERY_FIRST,
    INTRANEURAL,
    TIP_IN_ARTERY,
    VESSEL_ON_PATH,
    WarningGate,
    assess,
    path_text,
    ray_entry,
    tip_within,
)
from sonoguide.pipeline.needle import IN_PLANE, OUT_OF_PLANE, NeedleFinding

ROI = Roi(0, 0, 400, 400)


def circle(name: str, cx: float, cy: float, r: float, unsure: bool = False) -> Structure:
    a = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    contour = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1).astype(np.float32)
    return Structure(name, contour, math.pi * r * r, (cx, cy), 0.9, unsure=unsure)


def needle(tip: tuple[float, float], angle: float = 45.0, kind: str = IN_PLANE) -> NeedleFinding:
    in_plane = kind == IN_PLANE
    return NeedleFinding(kind=kind, tip=tip, shaft_start=(0.0, 0.0) if in_plane else None,
                         angle_deg=angle if in_plane else None,
                         from_left=True if in_plane else None, tip_depth_mm=None,
                         confidence=0.9)


def test_a_segment_meets_a_circle_at_its_wall():
    c = circle("vein", 100, 0, 10)
    assert abs(ray_entry((0, 0), (200, 0), c.contour) - 90.0) < 0.5
    assert ray_entry((0, 50), (200, 50), c.contour) is None  # passes beside it
    assert ray_entry((100, 0), (200, 0), c.contour) == 0.0  # starts inside


def test_ij_path_through_the_artery_before_the_vein_warns():
    # 45 degrees from (50, 50): the line y = x passes (150, 150) then (250, 250)
    artery, vein = circle("artery", 150, 150, 20), circle("vein", 250, 250, 30)
    g = assess("jugular", [artery, vein], None, needle((50, 50)), ROI)
    assert g.warnings == (ARTERY_FIRST,)
    # the vein first, the artery behind it: what a careful operator does; no warning
    vein_first = assess("jugular", [circle("vein", 150, 150, 20), circle("artery", 250, 250, 30)],
                        None, needle((50, 50)), ROI)
    assert vein_first.warnings == ()


def test_tip_inside_the_artery_is_a_danger():
    g = assess("jugular", [circle("artery", 100, 100, 20)], None, needle((105, 100)), ROI)
    assert g.warnings == (TIP_IN_ARTERY,) and g.warnings[0].level == "danger"
    # an out-of-plane dot in the artery: tip or shaft, the needle is in it either way
    dot = assess("jugular", [circle("artery", 100, 100, 20)], None,
                 needle((100, 100), kind=OUT_OF_PLANE), ROI)
    assert dot.warnings == (TIP_IN_ARTERY,) and dot.path is None


def test_a_dashed_structure_never_warns():
    g = assess("jugular", [circle("artery", 100, 100, 20, unsure=True)], None,
               needle((100, 100)), ROI)
    assert g.warnings == ()
    g = assess("plexus", [circle("nerve", 100, 100, 20, unsure=True)], None, needle((100, 100)),
               ROI)
    assert g.warnings == ()


def notched(name: str, cx: int, cy: int, r: int, tip: tuple[int, int], width: int = 5
             ) -> Structure:
    """A disc with a 45-degree needle's band cut out of it up to `tip`: how a model that leaves
    the needle's bright pixels out of the tissue it pierces outlines it."""
    mask = np.zeros((400, 400), np.uint8)
    cv2.circle(mask, (cx, cy), r, 1, -1)
    cv2.line(mask, (tip[0] - 200, tip[1] - 200), tip, 0, width)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
    return Structure(name, contour, float(mask.sum()), (cx, cy), 0.9)


def test_a_tip_in_the_notch_it_cut_is_inside_but_a_tip_short_of_the_wall_is_not():
    artery = notched("artery", 200, 200, 40, (200, 200))
    assert not tip_within(artery.contour, needle((200.0, 200.0)), 0.0)  # outside the outline
    assert tip_within(artery.contour, needle((200.0, 200.0)), 8.0)  # but in its notch
    g = assess("jugular", [artery], None, needle((200.0, 200.0)), ROI, mm_per_px=0.25)
    assert g.warnings == (TIP_IN_ARTERY,)
    # short of a whole artery (3 px before its wall, heading at it): ahead, not on both sides
    wall = 200 - 40 / math.sqrt(2) - 3 / math.sqrt(2)
    whole = circle("artery", 200, 200, 40)
    assert not tip_within(whole.contour, needle((wall, wall)), 8.0)
    # between two nerves, each 3 px to one side of the tip: not inside either
    a, b = circle("nerve", 200.2, 229.8, 18), circle("nerve", 229.8, 200.2, 18)
    assert all(ray_entry((215, 215), (215 + s * 8, 215 - s * 8), n.contour) is not None
               for s, n in ((-1, a), (1, b)))
    g = assess("plexus", [a, b], None, needle((215.0, 215.0)), ROI, mm_per_px=0.25)
    assert INTRANEURAL not in g.warnings
    g = assess("plexus", [notched("nerve", 200, 200, 30, (205, 205))], None,
               needle((205.0, 205.0)), ROI, mm_per_px=0.25)
    assert INTRANEURAL in g.warnings


def test_nerve_block_intraneural_and_vessel_on_path():
    nerve, vessel = circle("nerve", 100, 100, 20), circle("vessel", 250, 250, 20)
    g = assess("plexus", [nerve, vessel], None, needle((100, 100)), ROI)
    assert INTRANEURAL in g.warnings and VESSEL_ON_PATH in g.warnings
    assert g.warnings[0] == INTRANEURAL  # the danger first
    clear = assess("plexus", [nerve, circle("vessel", 300, 60, 20)], None, needle((60, 60)), ROI)
    assert clear.warnings == ()


def test_the_path_runs_to_the_image_area_edge_and_measures_the_target():
    roi = Roi(100, 50, 300, 300)  # image area inside a larger screen
    # found on the image area at (50, 50), 45 degrees: full frame (150, 100)
    g = assess("jugular", [], Target("vein", 250, 200, 20.0, 0.9), needle((50, 50)), roi,
               mm_per_px=0.1)
    assert g.needle.tip == (150, 100)
    assert g.path.start == (150, 100)
    ex, ey = g.path.end
    assert abs(ey - (roi.y + roi.h - 1)) < 1e-6 and abs(ex - ey - 50) < 1e-6  # the bottom edge
    # the target lies on the path, 100*sqrt(2) px = 14.1 mm ahead
    assert abs(g.path.to_target.distance_mm - 14.14) < 0.05
    assert path_text(g.path) == "45\N{DEGREE SIGN}  target 14 mm"


def test_no_needle_no_guidance():
    g = assess("jugular", [circle("artery", 100, 100, 20)], None, None, ROI)
    assert g.needle is None and g.path is None and g.warnings == ()


def test_the_gate_needs_two_results_and_drops_at_once():
    gate = WarningGate(confirm=2)
    assert gate.update([TIP_IN_ARTERY]) == ()  # one result could be a flicker
    assert gate.update([TIP_IN_ARTERY]) == (TIP_IN_ARTERY,)
    assert gate.update([]) == ()  # the evidence is gone: so is the banner
    assert gate.update([TIP_IN_ARTERY]) == ()  # and it must build up again
    assert gate.update([ARTERY_FIRST, TIP_IN_ARTERY]) == (TIP_IN_ARTERY,)  # its second in a row
    assert gate.update([ARTERY_FIRST, TIP_IN_ARTERY]) == (TIP_IN_ARTERY, ARTERY_FIRST)


def test_a_result_moved_by_measured_motion_moves_its_needle_and_path():
    from sonoguide.pipeline.frames import Frame, Segmentation
    from sonoguide.pipeline.motion import Motion, warp_segmentation

    roi = Roi(0, 0, 300, 300)
    artery = circle("artery", 150, 150, 20)
    guidance = assess("jugular", [artery], None, needle((50, 50)), roi)
    seg = Segmentation(1, 0.0, 0.01, ("background", "vein", "artery"), roi,
                       np.zeros((300, 300), np.uint8), (artery,), guidance=guidance)
    shift = Motion(np.array([[1.0, 0.0, 12.0], [0.0, 1.0, -5.0]]), 0.1, 0.9, 1.0)
    frame = Frame(np.zeros((300, 300), np.uint8), 2, 0.03, roi=roi)
    moved = warp_segmentation(seg, shift, frame).guidance
    assert moved.needle.tip == pytest.approx((62.0, 45.0))
    assert moved.needle.shaft_start == pytest.approx((12.0, -5.0))
    assert moved.path.start == pytest.approx((62.0, 45.0))
    assert moved.warnings == guidance.warnings  # the analysed frame's, dropped with the result


def test_resetting_the_analyzer_forgets_the_needle_and_the_vessels():
    """A seek or a new source resets the analyzer: no needle or vessel history carried over."""
    from sonoguide.pipeline.analysis import Analyzer
    from sonoguide.pipeline.guidance import Guide

    analyzer = Analyzer(("background", "vein", "artery"), "jugular")
    analyzer.guide = Guide("jugular")
    analyzer.guide.gate.update([TIP_IN_ARTERY])
    analyzer.guide.behaviour.update([circle("artery", 100, 100, 20)], 1.0)
    analyzer.reset()
    assert analyzer.guide.gate.update([TIP_IN_ARTERY]) == ()  # builds up again from nothing
    assert not analyzer.guide.behaviour.tracker.tracks
