"""The needle and its warnings on screen: drawn with the overlay, gone with it."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest

from sonoguide.pipeline.frames import Roi, Segmentation, Target
from sonoguide.pipeline.guidance import ARTERY_FIRST, TIP_IN_ARTERY, assess
from sonoguide.pipeline.needle import IN_PLANE, OUT_OF_PLANE, NeedleFinding
from tests.test_guidance import circle

pytestmark = pytest.mark.gui


def finding(kind: str = IN_PLANE) -> NeedleFinding:
    in_plane = kind == IN_PLANE
    return NeedleFinding(kind=kind, tip=(50.0, 50.0), shaft_start=(0.0, 0.0) if in_plane else None,
                         angle_deg=45.0 if in_plane else None,
                         from_left=True if in_plane else None, tip_depth_mm=5.0,
                         confidence=0.9)


def segmentation(kind: str = IN_PLANE) -> Segmentation:
    roi = Roi(0, 0, 200, 200)
    structures = (circle("artery", 120, 120, 15),)
    guidance = assess("jugular", structures, Target("vein", 160, 160, 16.0, 0.9),
                      finding(kind), roi, mm_per_px=0.1)
    return Segmentation(frame_id=1, t_capture=0.0, t_done=0.01,
                        classes=("background", "vein", "artery"), roi=roi,
                        labels=np.zeros((200, 200), np.uint8), structures=structures,
                        guidance=guidance)


def test_the_needle_is_drawn_with_its_depth_and_path_and_hidden_with_the_overlay(qtbot):
    from sonoguide.ui.overlay import OverlayItems

    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    overlay = OverlayItems(widget.addViewBox())
    overlay.show(segmentation(), opacity=1.0, fill=False)
    needle = overlay.needle
    assert needle.shaft.isVisible() and needle.tip.isVisible() and needle.path.isVisible()
    assert needle.text == "tip 5.0 mm \N{MIDDLE DOT} 45\N{DEGREE SIGN}  target 16 mm"
    line = needle.path.line()  # dashed from the tip to the image area's bottom
    assert (line.x1(), line.y1()) == (50.0, 50.0) and line.y2() == pytest.approx(199.0)
    overlay.hide()
    assert not needle.tip.isVisible() and needle.text == ""


def test_an_out_of_plane_dot_says_it_may_be_the_shaft(qtbot):
    from sonoguide.ui.overlay import OverlayItems

    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    overlay = OverlayItems(widget.addViewBox())
    overlay.show(segmentation(OUT_OF_PLANE), opacity=1.0, fill=False)
    assert "tip or shaft?" in overlay.needle.text
    assert not overlay.needle.path.isVisible() and not overlay.needle.shaft.isVisible()


def test_warnings_take_the_danger_and_caution_rows_and_clear(qtbot):
    from sonoguide.ui.banners import Banners

    banners = Banners()
    qtbot.addWidget(banners)
    banners.show_warnings([TIP_IN_ARTERY, ARTERY_FIRST])
    assert banners.text("danger") == "ARTERY: Needle in the artery"
    assert banners.text("caution").startswith("ARTERY ON PATH")
    banners.show_warnings(())
    assert banners.text("danger") == "" and banners.text("caution") == ""


def test_a_snapshot_draws_the_needle_and_records_it():
    from sonoguide.pipeline.findings import overlay_record
    from sonoguide.ui.snapshot import render_overlay_bgr

    seg = segmentation()
    picture = render_overlay_bgr(np.zeros((200, 200), np.uint8), seg)
    assert picture[25, 25].any()  # on the shaft, half-way to the tip at (50, 50)
    assert not picture[25, 150].any()
    record = overlay_record(seg)
    assert record["needle"]["tip_xy"] == [50.0, 50.0]
    assert record["needle"]["to_target_mm"] == pytest.approx(15.6, abs=0.1)
    assert record["warnings"] == [{"key": "artery_on_path", "word": "ARTERY ON PATH",
                                   "level": "caution",
                                   "text": "The path crosses the artery before the vein"}]


def test_a_recording_replays_the_needle_and_warnings_it_recorded():
    from sonoguide.pipeline.findings import guidance_from_record, overlay_record

    seg = segmentation()
    record = overlay_record(seg)
    back = guidance_from_record(record, dx=10, dy=20)  # the recording holds the image area
    assert back.warnings == seg.guidance.warnings
    assert back.needle.tip == (40.0, 30.0) and back.needle.kind == IN_PLANE
    assert back.path.to_target.distance_mm == pytest.approx(15.6, abs=0.1)
    assert guidance_from_record({"structures": []}) is None  # recorded before needles existed


def test_a_vessels_measured_behaviour_is_written_under_it_and_recorded(qtbot):
    import dataclasses

    from sonoguide.pipeline.findings import overlay_record
    from sonoguide.pipeline.vessel_behaviour import BehaviourReport, VesselReport
    from sonoguide.ui.overlay import OverlayItems

    artery = VesselReport(track_id=3, class_name="artery", centroid=(120.0, 120.0),
                          seen_now=True, pulses=True, heart_rate_bpm=72.0,
                          pulse_amplitude=0.06, compresses=False, lowest_ratio=0.95,
                          behaves_as="artery", caution=None)
    seg = segmentation()
    seg = dataclasses.replace(seg, guidance=dataclasses.replace(
        seg.guidance, vessels=BehaviourReport(1.0, (artery,), (3,))))
    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    overlay = OverlayItems(widget.addViewBox())
    overlay.show(seg, opacity=1.0, fill=False)
    assert overlay.tag_texts() == ["does not compress · pulses 72/min"]
    overlay.hide()
    assert overlay.tag_texts() == []
    (vessel,) = overlay_record(seg)["vessels"]
    assert vessel["behaves_as"] == "artery" and vessel["heart_rate_bpm"] == 72.0
