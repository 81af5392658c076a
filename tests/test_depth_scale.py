"""The depth scale found on the scanner screen (sonoguide.pipeline.depth_scale), on drawn screens
(tests.scanner_screens) whose true mm per pixel is known. Never a silent wrong scale: where
the finder cannot tell, it gives no scale and says why, or asks for the tick interval."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sonoguide.pipeline.depth_scale import DepthScale, find_depth_scale
from sonoguide.pipeline.frames import Roi
from sonoguide.pipeline.roi import detect_roi
from tests.scanner_screens import Ruler, draw_screen, measure, outcome, random_screen

WITHIN = 0.02  # the bar: the scale within 2 % of the truth


def close(value: float | None, truth: float) -> bool:
    return value is not None and abs(value / truth - 1) <= WITHIN


def test_drawn_screens_are_measured_right_and_never_silently_wrong():
    """60 screens over sizes, depths, ruler styles, distractors, rescaling and JPEG: no scale
    more than 2 % off is ever offered; rulers with minor ticks are found within 2 %; rulers
    with one tick level are read where a cm number labels each tick, otherwise asked about,
    with the right spacing."""
    screens = [random_screen(seed) for seed in range(60)]
    outcomes = [outcome(s, find_depth_scale(s.image, s.roi)) for s in screens]
    rulers = [s.ruler for s in screens]
    assert "wrong" not in outcomes and "asked-bad" not in outcomes, outcomes
    assert sum(o in ("right", "asked") for o in outcomes) >= 0.95 * len(outcomes), outcomes
    two_level = [o for o, r in zip(outcomes, rulers, strict=True) if r.minor_mm]
    assert two_level.count("right") >= 0.95 * len(two_level), two_level
    one_level = [o for o, r in zip(outcomes, rulers, strict=True) if not r.minor_mm]
    assert one_level and set(one_level) <= {"right", "asked", "none"}, one_level
    unlabelled = [o for o, r in zip(outcomes, rulers, strict=True)
                  if not r.minor_mm and not r.labels]
    assert unlabelled and set(unlabelled) <= {"asked", "none"}, unlabelled


STYLES = {
    "5 mm minors, right": Ruler(minor_mm=5.0),
    "2 mm minors, left": Ruler(minor_mm=2.0, side="left", labels=False),
    "ticks grow towards the image": Ruler(minor_mm=5.0, anchor="far"),
    "centred ticks on a spine": Ruler(minor_mm=5.0, anchor="centre", spine=True),
    "thin 1-px ticks": Ruler(minor_mm=2.0, thickness=1),
    "thick 3-px ticks, thin minors": Ruler(minor_mm=5.0, thickness=3, minor_thickness=1),
    "grey ticks": Ruler(minor_mm=5.0, colour=(140, 140, 140)),
    "yellow ticks": Ruler(minor_mm=2.0, colour=(235, 220, 60), side="left"),
    "dots": Ruler(minor_mm=5.0, mark="dot", major_len=15, labels=False),
    "dots, 2 mm": Ruler(minor_mm=2.0, mark="dot", major_len=10, side="left"),
    "inside the image's dark margin": Ruler(minor_mm=5.0, inside=True, gap=4, major_len=12,
                                            minor_len=6, labels=False),
    "+ crosses": Ruler(minor_mm=5.0, mark="cross", anchor="centre", major_len=20),
    "+ crosses, 2 mm, left": Ruler(minor_mm=2.0, mark="cross", anchor="centre", major_len=16,
                                   side="left", labels=False),
}
SIZES_DEPTHS = [((640, 480), 40.0), ((1280, 720), 60.0), ((1920, 1080), 30.0)]


@pytest.mark.parametrize("size, depth", SIZES_DEPTHS, ids=["640x480", "1280x720", "1920x1080"])
@pytest.mark.parametrize("style", list(STYLES), ids=list(STYLES))
def test_each_tick_style_is_found(style, size, depth):
    ruler = STYLES[style]
    screen = draw_screen(size, depth, ruler, seed=7)
    found = find_depth_scale(screen.image, screen.roi)
    assert found.found and close(found.mm_per_px, screen.mm_per_px), found.reason
    assert found.minor_per_major == 10 / ruler.minor_mm - 1
    assert found.major_mm == 10.0 and "assumed" in found.reason
    assert abs(found.major_spacing_px / screen.major_spacing_px - 1) <= WITHIN
    # the ticks shown are the ruler's: one at the image's top (0 cm), one per minor step
    assert abs(found.major_ticks_px[0] - screen.roi.y) <= 2
    assert len(found.ticks_px) >= 0.9 * (depth / ruler.minor_mm + 1)
    assert found.column_x is not None and abs(
        found.column_x - (screen.roi.x + screen.roi.w / 2)) > 0.4 * screen.roi.w
    assert 0 < found.confidence <= 1


@pytest.mark.parametrize("depth", [20.0, 45.0, 90.0, 160.0])
def test_depths_from_2_to_16_cm(depth):
    screen = draw_screen((1280, 720), depth, Ruler(minor_mm=5.0 if depth < 100 else None))
    found = find_depth_scale(screen.image, screen.roi, major_mm=10.0)
    assert close(found.mm_per_px, screen.mm_per_px), found.reason


def test_one_tick_level_asks_for_the_interval():
    """Ticks all alike could be 1 cm or 5 mm apart: the spacing is found, the scale is not
    guessed (a factor-2 error in every depth would be a silent wrong scale): the window asks,
    prefilled with 10 mm, and the answer gives the scale."""
    screen = draw_screen((1280, 720), 50.0, Ruler(minor_mm=None, labels=False))
    asked = find_depth_scale(screen.image, screen.roi)
    assert asked.needs_interval and asked.mm_per_px is None and not asked.found
    assert asked.minor_per_major == 0 and asked.major_mm is None
    assert abs(asked.major_spacing_px / screen.major_spacing_px - 1) <= WITHIN
    assert "how many mm" in asked.reason and len(asked.ticks_px) == 6
    answered = asked.with_interval(10.0)
    assert answered.found and close(answered.mm_per_px, screen.mm_per_px)
    assert "as given" in answered.reason
    with pytest.raises(ValueError, match="not a plausible scale"):
        asked.with_interval(1000.0)
    with pytest.raises(ValueError, match="positive"):
        asked.with_interval(-1.0)
    # why not assume 10 mm: a ruler whose ticks, all alike, are 5 mm apart looks the same
    fives = draw_screen((1280, 720), 50.0, Ruler(minor_mm=5.0, major_len=14, minor_len=14,
                                                 labels=False))
    asked = find_depth_scale(fives.image, fives.roi)
    assert asked.needs_interval and asked.mm_per_px is None
    assert abs(asked.major_spacing_px / (fives.major_spacing_px / 2) - 1) <= WITHIN
    assert close(asked.with_interval(5.0).mm_per_px, fives.mm_per_px)


ONE_LEVEL = {
    "lines, right": Ruler(minor_mm=None),
    "lines, left": Ruler(minor_mm=None, side="left"),
    "dots": Ruler(minor_mm=None, mark="dot", major_len=15),
    "grey, far-anchored, spine": Ruler(minor_mm=None, colour=(150, 150, 150), anchor="far",
                                       spine=True),
    "yellow, thin, left": Ruler(minor_mm=None, thickness=1, colour=(235, 220, 60),
                                side="left"),
}


@pytest.mark.parametrize("size, depth", SIZES_DEPTHS, ids=["640x480", "1280x720", "1920x1080"])
@pytest.mark.parametrize("style", list(ONE_LEVEL), ids=list(ONE_LEVEL))
def test_one_level_ruler_with_cm_labels_is_read(style, size, depth):
    """Ticks all alike, each with its cm number beside it (away from the image): the labels
    say the ticks are centimetres, 10 mm apart, without asking; without the labels it asks."""
    ruler = ONE_LEVEL[style]
    screen = draw_screen(size, depth, ruler, seed=5)
    found = find_depth_scale(screen.image, screen.roi)
    assert found.found and close(found.mm_per_px, screen.mm_per_px), found.reason
    assert found.major_mm == 10.0 and found.minor_per_major == 0 and "labelled" in found.reason
    assert abs(found.major_ticks_px[0] - screen.roi.y) <= 2
    bare = draw_screen(size, depth, replace(ruler, labels=False), seed=5)
    asked = find_depth_scale(bare.image, bare.roi)
    assert asked.needs_interval and not asked.found and asked.mm_per_px is None, asked.reason
    assert outcome(bare, asked) == "asked"


@pytest.mark.parametrize("size, depth", SIZES_DEPTHS, ids=["640x480", "1280x720", "1920x1080"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_labels_on_every_other_tick_are_not_read_as_cm_ticks(size, depth, side):
    """Ticks all alike every 5 mm, the cm number beside every 2nd one: read as 5 mm or asked,
    never 10 mm per tick. Likewise 1 cm ticks labelled every 2 or 5 cm (0, 2, 4...): not read
    as 5 or 2 mm ticks; asked."""
    fives = draw_screen(size, depth, Ruler(minor_mm=5.0, major_len=14, minor_len=14,
                                           side=side), seed=2)
    found = find_depth_scale(fives.image, fives.roi)
    assert outcome(fives, found) in ("right", "asked"), found.reason
    if found.found:
        assert close(found.mm_per_px, fives.mm_per_px), found.reason
    else:
        assert abs(found.major_spacing_px / (fives.major_spacing_px / 2) - 1) <= WITHIN
    for every in (2, 5):
        sparse = draw_screen(size, depth, Ruler(minor_mm=None, side=side,
                                                label_every_cm=every), seed=2)
        found = find_depth_scale(sparse.image, sparse.roi)
        assert not found.found and outcome(sparse, found) in ("asked", "none"), found.reason


def test_a_given_interval_is_used():
    """major_mm (the user's answer, remembered per source) is what the major ticks mean."""
    screen = draw_screen((1280, 720), 50.0, Ruler(minor_mm=None, mark="dot", major_len=15))
    found = find_depth_scale(screen.image, screen.roi, major_mm=10.0)
    assert found.found and close(found.mm_per_px, screen.mm_per_px)
    assert found.major_mm == 10.0 and "as given" in found.reason
    two_level = draw_screen((1280, 720), 50.0, Ruler(minor_mm=5.0))
    found = find_depth_scale(two_level.image, two_level.roi, major_mm=20.0)
    assert close(found.mm_per_px, 2 * two_level.mm_per_px) and found.major_mm == 20.0
    with pytest.raises(ValueError):
        find_depth_scale(two_level.image, two_level.roi, major_mm=0.0)


@pytest.mark.parametrize("seed", range(6))
def test_no_ruler_no_scale_and_a_reason(seed):
    """Distractors alone (menu text in evenly spaced lines, a straight TGC curve with evenly
    spaced nodes, a colour bar, labels) give no scale and say why."""
    screen = draw_screen(((640, 480), (1280, 720), (1920, 1080))[seed % 3], 40.0, None,
                         seed=seed, straight_tgc=True)
    found = find_depth_scale(screen.image, screen.roi)
    assert found == DepthScale(None, 0.0, found.reason) and not found.needs_interval
    assert "tick" in found.reason or "marks" in found.reason


def test_distractors_do_not_fool_it():
    """The ruler wins over evenly spaced menu lines, a straight TGC curve with evenly spaced
    nodes on the ruler's side, a colour bar and a focus marker beside it."""
    for seed in range(4):
        for ruler in (Ruler(minor_mm=5.0, side="left"), Ruler(minor_mm=2.0)):
            screen = draw_screen((1280, 720), 70.0, ruler, seed=seed, straight_tgc=True)
            found = find_depth_scale(screen.image, screen.roi)
            assert close(found.mm_per_px, screen.mm_per_px), (seed, found.reason)
        # one tick level beside evenly spaced TGC nodes: asked about the ruler's spacing, or
        # read from its cm labels
        for labels, ok in ((False, ("asked", "none")), (True, ("right", "asked", "none"))):
            screen = draw_screen((1280, 720), 70.0, Ruler(minor_mm=None, labels=labels),
                                 seed=seed, straight_tgc=True)
            found = find_depth_scale(screen.image, screen.roi)
            assert outcome(screen, found) in ok, (seed, labels, found.reason)


def test_rescaled_and_compressed_captures():
    """A capture card that rescales the scanner's screen (another size, another aspect) and
    compresses it (MJPG) still gives the scale, in the capture's pixels."""
    for native, size in (((1024, 768), (1280, 720)), ((1920, 1080), (1280, 720)),
                         ((640, 480), (1920, 1080))):
        screen = draw_screen(size, 50.0, Ruler(minor_mm=5.0, thickness=1), native=native,
                             jpeg=75, noise=1.5)
        found = find_depth_scale(screen.image, screen.roi)
        assert close(found.mm_per_px, screen.mm_per_px), (native, found.reason)


def test_grey_screens_and_the_detected_image_area():
    screen = draw_screen((1280, 720), 60.0, Ruler(minor_mm=2.0))
    grey = np.ascontiguousarray(screen.image[:, :, 1])
    assert close(find_depth_scale(grey, screen.roi).mm_per_px, screen.mm_per_px)
    # as the app does it: the image area found by detect_roi, then the ruler beside it
    for seed in range(3):
        screen = draw_screen((1920, 1080), 40.0, Ruler(minor_mm=5.0), seed=seed,
                             distractors=("labels",))
        roi = detect_roi(screen.image)
        found = find_depth_scale(screen.image, roi)
        assert close(found.mm_per_px, screen.mm_per_px), (roi, screen.roi, found.reason)


def test_other_drawings_of_a_ruler():
    """Rulers drawn by the project's other screen makers: the scanner clip's (ticks every
    5 mm over 50 mm) and tests.clips.scanner_screen (minor ticks every h/40 px)."""
    from sonoguide.training.scanner_clip import DEPTH_MM, IMAGE_AREA, screen_template
    from tests.clips import scanner_screen

    roi = Roi(*IMAGE_AREA)
    found = find_depth_scale(np.ascontiguousarray(screen_template()[:, :, ::-1]), roi)
    assert close(found.mm_per_px, DEPTH_MM / roi.h), found.reason
    found = find_depth_scale(scanner_screen(), Roi(420, 140, 1000, 800))
    assert found.minor_per_major == 4 and abs(found.major_spacing_px - 100) < 1


def test_unusable_input():
    screen = draw_screen((640, 480), 40.0, Ruler())
    with pytest.raises(ValueError):
        find_depth_scale(screen.image.astype(np.float32), screen.roi)
    assert find_depth_scale(screen.image, Roi(10, 10, 200, 20)).mm_per_px is None
    blank = np.zeros((480, 640, 3), np.uint8)
    assert "no evenly spaced" in find_depth_scale(blank, Roi.full(blank)).reason


def test_the_measurement_script_runs():
    m = measure(n=5, seed=0)
    assert m["n"] == 5 and sum(m["counts"].values()) == 5 and len(m["times"]) == 5


def found_right(screen) -> DepthScale:
    found = find_depth_scale(screen.image, screen.roi)
    assert found.found and close(found.mm_per_px, screen.mm_per_px), found.reason
    return found


def test_a_ruler_on_the_right_edge_gives_the_major_spacing():
    """The common layout: ticks right of the image, 2 mm minors between the centimetres; the
    scale comes from the majors' spacing (fitted over every tick), not the minors'."""
    screen = draw_screen((1280, 720), 80.0, Ruler(minor_mm=2.0, side="right", labels=False))
    found = found_right(screen)
    assert found.column_x > screen.roi.x + screen.roi.w and found.minor_per_major == 4
    assert abs(found.major_spacing_px - screen.major_spacing_px) < 0.2
    assert len(found.major_ticks_px) == 9 and len(found.ticks_px) == 41


def test_rescaled_captures_keep_small_marks():
    """A capture card's rescaling blurs small marks and moves whole-pixel ticks: a scanner's
    1280x720 screen shrunk to 640x480 (its dots gain a faint halo row), a 640x480 one
    enlarged to 1920x1080 (2 mm minors' rounding grows to +-1 px), an 800x600 one enlarged
    with centred ticks on a spine (a minor tick's short half lost in the spine)."""
    found_right(draw_screen((640, 480), 140.0, Ruler(
        minor_mm=5.0, side="left", inside=True, gap=2, mark="dot", major_len=15,
        colour=(213, 213, 213), labels=False), native=(1280, 720), seed=37))
    found_right(draw_screen((640, 480), 140.0, Ruler(
        minor_mm=5.0, side="left", mark="dot", major_len=15, colour=(228, 228, 228)),
        native=(1280, 720), seed=302))
    found_right(draw_screen((1920, 1080), 90.0, Ruler(
        minor_mm=2.0, side="left", gap=21, thickness=2, minor_thickness=2, major_len=6,
        minor_len=3, colour=(245, 245, 245), labels=False), native=(640, 480), seed=482))
    found = found_right(draw_screen((1920, 1080), 50.0, Ruler(
        minor_mm=5.0, gap=20, thickness=3, minor_thickness=3, major_len=9, minor_len=4,
        anchor="centre", spine=True, colour=(90, 230, 90), labels=False), native=(800, 600),
        seed=460))
    assert found.minor_per_major == 1


def test_ticks_on_the_image_edges_and_a_grey_ui():
    """The 0 and the last tick are drawn on the image area's top and bottom edges: on a
    mid-grey UI they stand out less there (measured against the grey) but are still majors."""
    for seed, ruler in ((445, Ruler(minor_mm=2.0, inside=True, gap=2, thickness=3,
                                    minor_thickness=3, major_len=16, minor_len=7,
                                    anchor="centre", colour=(190, 190, 190), labels=False)),
                        (321, Ruler(minor_mm=2.0, inside=True, gap=5, thickness=1,
                                    minor_thickness=1, major_len=20, minor_len=11,
                                    spine=True, colour=(150, 150, 150), labels=False))):
        screen = draw_screen((1920, 1080), 25.0, ruler, seed=seed, background=75)
        found = found_right(screen)
        assert found.minor_per_major == 4 and abs(found.major_ticks_px[0] - screen.roi.y) <= 2


def test_blurred_captures_read_the_cm_labels():
    """An analog capture's blur: the ticks and their cm numbers stand out less (on a grey UI,
    or thin white ticks under JPEG too), the labels are still read, and the ticks' own blur
    beside them is no label."""
    screens = [
        draw_screen((640, 480), 70.0, Ruler(minor_mm=None, side="left", gap=3, thickness=3,
                                            major_len=18, colour=(90, 230, 90)),
                    native=(1280, 1024), background=88, blur=1.07, seed=7,
                    distractors=("labels", "menu", "tgc")),
        draw_screen((1920, 1080), 45.0, Ruler(minor_mm=None, side="left", gap=16, thickness=1,
                                              major_len=13, colour=(242, 242, 242)),
                    roi=Roi(616, 136, 872, 857), background=33, jpeg=70, noise=0.6,
                    blur=0.96, seed=138, distractors=("labels", "menu"))]
    for screen in screens:
        assert "labelled" in found_right(screen).reason


def test_dots_all_one_size_ask():
    """Dots every 5 mm drawn all one size (a small ruler in the image's margin): which are the
    centimetres cannot be told; it asks, about their spacing, rather than guess 10 mm."""
    screen = draw_screen((640, 480), 100.0, Ruler(minor_mm=5.0, inside=True, gap=5, mark="dot",
                                                  major_len=7, labels=False), seed=205)
    asked = find_depth_scale(screen.image, screen.roi)
    assert asked.needs_interval and not asked.found and outcome(screen, asked) == "asked"
    assert close(asked.with_interval(5.0).mm_per_px, screen.mm_per_px)


@pytest.mark.parametrize("size, native", [((640, 480), None), ((1280, 720), (1280, 1024)),
                                          ((1280, 720), None), ((1920, 1080), (800, 600))])
def test_lines_of_menu_text_are_no_ruler(size, native):
    """A column of parameter text beside the image: evenly spaced lines whose glyphs' strokes
    line up in a column (and pass for ticks, bigger and smaller): no scale is claimed."""
    for seed in range(8):
        screen = draw_screen(size, 50.0, None, seed=seed, native=native,
                             distractors=("menu", "labels"))
        found = find_depth_scale(screen.image, screen.roi)
        assert not found.found and not found.needs_interval, (seed, found.reason)


@pytest.mark.parametrize("added_styles", [False, True])
def test_screens_without_a_ruler_that_once_fooled_it(added_styles):
    """Screens without a ruler where lines of menu text, a TGC line with evenly spaced nodes,
    compression ringing or speckle at the image's edge once passed for ticks (a scale, or a
    question about their spacing): nothing is claimed."""
    seeds = ((595, 1449, 1974, 1989) if not added_styles else
             (1063, 1119, 1797, 2312, 5300, 5338, 5433, 5812, 5852, 6309, 6354, 6871, 7005))
    for seed in seeds:
        screen = random_screen(seed, with_ruler=False, added_styles=added_styles)
        found = find_depth_scale(screen.image, screen.roi)
        assert not found.found and not found.needs_interval, (seed, found.reason)
