"""Overlay look and behaviour: palette, doubt shown as dashes, pooled items, snapshot rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonoguide.pipeline.contract import DEFAULT_UNSURE_BELOW
from sonoguide.pipeline.frames import Frame, Roi, Segmentation, Structure, Target
from sonoguide.ui import theme
from sonoguide.ui.overlay import contour_style, target_text
from sonoguide.ui.snapshot import render_overlay_bgr

PLEXUS = ("background", "nerve", "vessel")


def square(x: float, y: float, r: float) -> np.ndarray:
    return np.array([[x - r, y - r], [x + r, y - r], [x + r, y + r], [x - r, y + r]],
                    np.float32)


def structure(name: str, x: float, y: float, confidence: float = 0.9) -> Structure:
    """As the analyzer makes it for an uncalibrated model: unsure under the default level."""
    return Structure(name, square(x, y, 10), 400.0, (x, y), confidence,
                     unsure=confidence < DEFAULT_UNSURE_BELOW)


def seg(frame_id: int = 0, t: float = 0.0, structures=(), target=None) -> Segmentation:
    return Segmentation(frame_id, t, t + 0.02, PLEXUS, Roi(0, 0, 100, 80),
                        np.zeros((80, 100), np.uint8), tuple(structures), target)


def frame(frame_id: int, t: float) -> Frame:
    return Frame(np.zeros((80, 100), np.uint8), frame_id, t)


def test_palette_is_okabe_ito_per_class():
    for name, colour in (("nerve", "#F0E442"), ("artery", "#D55E00"), ("vein", "#56B4E9"),
                         ("vessel", "#CC79A7")):
        assert contour_style(structure(name, 5, 5), ("background", name), 1.0, True).colour == \
            colour


def test_unsure_structure_is_dashed_and_fainter():
    sure = contour_style(structure("nerve", 5, 5, 0.95), PLEXUS, 0.8, True)
    unsure = contour_style(structure("nerve", 5, 5, 0.3), PLEXUS, 0.8, True)
    assert not sure.dashed and unsure.dashed
    assert unsure.line_alpha < sure.line_alpha and unsure.fill_alpha < sure.fill_alpha


def test_fill_off_and_opacity_follow_the_controls():
    style = contour_style(structure("nerve", 5, 5), PLEXUS, 0.5, False)
    assert style.fill_alpha == 0.0 and style.line_alpha == pytest.approx(0.5)


def test_target_text_shows_the_analyzers_depth_or_asks_for_a_calibration():
    assert target_text(Target("nerve", 50, 60, 12.34, 0.9)) == "nerve  12.3 mm"
    # No depth from the analyzer (no scale on the frame): the view never makes one up.
    assert "calibrate" in target_text(Target("nerve", 50, 60, None, 0.9))
    assert target_text(Target("vein", 50, 60, 8.0, 0.2, unsure=True)).endswith("?")


def test_policy_draws_own_frame_hides_stale_and_unmeasured():
    from sonoguide.pipeline.session import FRESH, HIDDEN, HOLD, NO_MODEL, OverlayPolicy

    hold = OverlayPolicy(budget_s=0.1, follow=HOLD)
    own = hold.decide(frame(5, 1.00), seg(5, 1.00), model_ready_since=0.0)
    assert own.kind == FRESH and own.overlay is not None and not own.lagging
    stale = hold.decide(frame(12, 1.20), seg(5, 1.00), model_ready_since=0.0)
    assert stale.overlay is None and stale.lagging
    warming = hold.decide(frame(3, 0.5), None, model_ready_since=0.0)
    assert warming.overlay is None and not warming.lagging
    stuck = hold.decide(frame(60, 2.0), None, model_ready_since=0.0)
    assert stuck.lagging
    no_model = hold.decide(frame(12, 1.2), seg(5, 1.0), model_ready_since=None)
    assert no_model.kind == NO_MODEL and no_model.overlay is None and not no_model.lagging
    # Following motion, a result whose frame the policy never saw is never drawn unmoved.
    follow = OverlayPolicy(budget_s=0.1)
    unmeasured = follow.decide(frame(6, 1.03), seg(5, 1.00), model_ready_since=0.0)
    assert unmeasured.kind == HIDDEN and unmeasured.overlay is None


def test_snapshot_render_draws_class_colour_on_the_contour():
    image = np.full((80, 100), 100, np.uint8)
    out = render_overlay_bgr(image, seg(structures=[structure("nerve", 40, 40)]), fill=False)
    b, g, r = out[30, 40]  # on the top edge of the square around (40, 40)
    assert r > 180 and g > 180 and b < 120  # yellow
    assert tuple(out[40, 40]) == (100, 100, 100)  # inside untouched without fill
    filled = render_overlay_bgr(image, seg(structures=[structure("nerve", 40, 40)]), fill=True)
    assert tuple(filled[40, 40]) != (100, 100, 100)
    assert tuple(render_overlay_bgr(image, None)[40, 40]) == (100, 100, 100)


@pytest.fixture
def view(qtbot):
    import pyqtgraph as pg

    widget = pg.GraphicsLayoutWidget()
    qtbot.addWidget(widget)
    view = widget.addViewBox()
    yield view
    widget.close()  # keeps the widget (and so the view) alive through the test


@pytest.mark.gui
def test_overlay_items_are_reused_between_frames(view):
    from sonoguide.ui.overlay import OverlayItems

    overlay = OverlayItems(view)
    two = seg(1, structures=[structure("nerve", 20, 20), structure("vessel", 60, 40)],
              target=Target("nerve", 20, 20, 9.5, 0.9))
    overlay.show(two, opacity=1.0, fill=True)
    items_before = set(map(id, view.addedItems))
    assert len(overlay.visible_contours()) == 2 and overlay.label_text == "nerve  9.5 mm"
    marker = overlay._marker.mapToView(overlay._marker.boundingRect().center())
    assert (round(marker.x()), round(marker.y())) == (20, 20)  # the ring sits on the target
    one = seg(2, structures=[structure("vessel", 60, 40, confidence=0.2)])
    for _ in range(5):
        overlay.show(one, opacity=1.0, fill=True)
    assert set(map(id, view.addedItems)) == items_before  # no item churn
    (contour,) = overlay.visible_contours()
    from PySide6 import QtCore

    assert contour.pen().style() == QtCore.Qt.PenStyle.DashLine  # unsure vessel
    assert contour.pen().color().name().upper() == theme.CLASS_COLOURS["vessel"]
    assert overlay.label_text == ""  # no target this frame
    overlay.hide()
    assert not overlay.visible and overlay.visible_contours() == []


@pytest.mark.gui
def test_depth_ruler_reads_mm_below_the_roi_top(qtbot):
    from sonoguide.ui.overlay import DepthAxis

    axis = DepthAxis()
    assert axis.tickValues(0, 400, 400) == []  # no spacing known: no made-up scale
    axis.set_scale(origin_px=20, spacing_mm=0.1)  # 10 px per mm, skin line at y=20
    (major_step, majors), (_, minors) = axis.tickValues(0, 420, 400)
    assert majors[:3] == [20.0, 120.0, 220.0] and minors[0] == 70.0
    assert axis.tickStrings(majors[:3], 1.0, major_step) == ["0", "10", "20"]
    assert set(axis.tickStrings(minors, 1.0, major_step / 2)) == {""}


@pytest.mark.gui
def test_target_label_stays_on_the_image_side_of_the_marker(view, qtbot):
    """A target near the right edge gets its label on the left of the marker, so the depth
    text never runs off the image; near the left edge it stays on the right."""
    from sonoguide.ui.overlay import OverlayItems, target_summary

    view.setRange(xRange=(0, 100), yRange=(0, 80), padding=0.0)
    overlay = OverlayItems(view)
    for x, label_left_of_marker in ((90.0, True), (10.0, False)):
        overlay.show(seg(1, structures=[structure("vein", x, 40)],
                         target=Target("vein", x, 40, 12.0, 0.9)),
                     opacity=1.0, fill=True)
        box = overlay._label.mapRectToView(overlay._label.boundingRect())
        if label_left_of_marker:
            assert box.right() <= x
        else:
            assert box.left() >= x
    summary = target_summary(Target("vein", 50, 40, 12.0, 0.3, unsure=True))
    assert summary == "Target: vein 12.0 mm (unsure)"  # one line for the side panel
    # no depth and no calibration: the panel says what to do rather than printing "?"
    no_depth = Target("nerve", 50, 40, None, 0.3, unsure=True)
    assert target_summary(no_depth) == "Target: nerve depth: calibrate (unsure)"


def test_snapshot_keeps_patient_details_out_and_never_leaves_half_files(tmp_path, monkeypatch):
    """The PNGs hold the image area only (the scanner screen's name and ID stay off them), and
    a snapshot interrupted mid-way leaves no file under a final name and no JSON without its
    pictures."""
    import json
    import os

    import cv2

    from sonoguide.pipeline import files
    from sonoguide.pipeline.calibration import default_snapshot_dir
    from sonoguide.ui import snapshot

    image = np.full((120, 160), 90, np.uint8)
    image[:10, :] = 255  # the scanner's header: patient name and ID
    frame = Frame(image, 7, 1.0, "card", 0.1, roi=Roi(20, 20, 100, 80))
    paths = snapshot.save_snapshot(tmp_path, frame, seg(7, structures=[structure("nerve", 60,
                                                                                  60)]))
    raw = cv2.imread(str(paths.raw_png))
    assert raw.shape == (80, 100, 3) and raw.max() == 90  # no header pixel in the file
    assert cv2.imread(str(paths.overlay_png)).shape == (80, 100, 3)
    assert json.loads(paths.json.read_text())["pictures_cropped_to"] == [20, 20, 100, 80]

    real_replace, calls = os.replace, []

    def dies_on_the_second_file(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", dies_on_the_second_file)
    folder = tmp_path / "interrupted"
    with pytest.raises(OSError, match="killed"):
        snapshot.save_snapshot(folder, frame, None)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 1 and names[0].endswith("_raw.png")  # complete, and nothing else
    assert cv2.imread(str(folder / names[0])).shape == (80, 100, 3)
    assert default_snapshot_dir() != Path.cwd() / "snapshots"
