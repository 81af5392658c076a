"""Motion between the analysed frame and the shown one: the old result lands where the tissue
went on a speckle image and on the phantom under a sliding probe, is refused (never drawn
wrong) when motion cannot be measured, and warp_segmentation moves everything consistently."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sonoguide.phantom.labels import JUGULAR_CLASSES, to_model_classes
from sonoguide.phantom.simulator import PhantomSimulator
from sonoguide.pipeline.frames import Frame, Roi, Segmentation, Structure, Target
from sonoguide.pipeline.motion import (
    AREA_CHANGED,
    BLANK,
    SIZE_CHANGED,
    TOO_LARGE,
    UNRELIABLE,
    Motion,
    MotionEstimator,
    warp_segmentation,
)


def _speckle(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Ultrasound-like float image: smoothed gamma speckle, log-compressed, dark discs."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = cv2.GaussianBlur(rng.gamma(1.0, 1.0, shape).astype(np.float32), (0, 0), 1.5)
    for _ in range(5):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), int(rng.integers(20, 50))
        disc = np.zeros(shape, np.float32)
        cv2.circle(disc, (int(cx), int(cy)), r, 1.0, -1)
        img *= 1.0 - 0.85 * cv2.GaussianBlur(disc, (0, 0), 2.0)
    return np.log1p(img * 20.0).astype(np.float32)


def _affine(dx: float, dy: float, scale: float = 1.0, centre=(0.0, 0.0)) -> np.ndarray:
    cx, cy = centre
    return np.array([[scale, 0.0, dx + cx * (1 - scale)], [0.0, scale, dy + cy * (1 - scale)]])


def _pair(truth: np.ndarray, shape=(480, 640), seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two views of one speckle pattern; a point of the first lands at truth @ p in the
    second. Both are resampled (sub-pixel offset) so neither is sharper than the other."""
    h, w = shape
    base = _speckle((h + 200, w + 200), seed)
    s0 = np.array([[1.0, 0.0, -100.3], [0.0, 1.0, -100.6], [0.0, 0.0, 1.0]])
    s1 = np.vstack([truth, [0, 0, 1]]) @ s0
    a = cv2.warpAffine(base, s0[:2], (w, h), flags=cv2.INTER_LINEAR)
    b = cv2.warpAffine(base, s1[:2], (w, h), flags=cv2.INTER_LINEAR)
    lo, hi = float(base.min()), float(base.max())
    return tuple(np.clip((x - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8) for x in (a, b))


def _frame(image: np.ndarray, frame_id: int, roi: Roi | None = None,
           spacing: float | None = None) -> Frame:
    return Frame(image, frame_id, frame_id / 30, pixel_spacing_mm=spacing, roi=roi)


def _max_error(estimated: np.ndarray, truth: np.ndarray, roi: Roi) -> float:
    """Largest displacement error over the image area (its corners bound an affine's error)."""
    corners = np.array([[roi.x, roi.y, 1], [roi.x + roi.w - 1, roi.y, 1],
                        [roi.x, roi.y + roi.h - 1, 1], [roi.x + roi.w - 1, roi.y + roi.h - 1, 1]])
    return float(np.abs(corners @ (estimated - truth).T).max())


# --- (1) accuracy on speckle ----------------------------------------------------------------

@pytest.mark.parametrize("dx, dy, scale, rgb", [(7.4, -3.2, 1.0, False), (-12.0, 5.5, 1.03, True),
                                                (3.0, 9.0, 0.97, False)])
def test_measured_motion_matches_a_known_shift_and_zoom_within_a_pixel(dx, dy, scale, rgb):
    roi = Roi(40, 30, 560, 420)  # an offset image area: the result is in full-frame pixels
    truth = _affine(dx, dy, scale, centre=(320, 240))
    a, b = _pair(truth)
    if rgb:
        a, b = (np.dstack([x, x, x]) for x in (a, b))
    check = MotionEstimator().estimate(_frame(a, 1, roi), _frame(b, 2, roi))

    assert check.reason == "" and check.motion is not None
    m = check.motion
    err = _max_error(m.matrix, truth, roi)
    print(f"\nspeckle shift ({dx}, {dy}) x{scale}: max error {err:.2f} px, residual "
          f"{m.residual_px:.2f} px, inliers {m.inlier_fraction:.2f}, {m.ms:.2f} ms")
    assert err < 1.0
    assert m.matrix.shape == (2, 3) and m.matrix.dtype == np.float64
    assert not m.matrix.flags.writeable  # a shared, frozen result


def test_identical_frames_are_exactly_zero_motion():
    a, _ = _pair(_affine(0, 0))
    check = MotionEstimator().estimate(_frame(a, 1), _frame(a.copy(), 2))
    assert check.reason == ""
    np.testing.assert_array_equal(check.motion.matrix, [[1, 0, 0], [0, 1, 0]])
    assert check.motion.residual_px == 0.0 and check.motion.inlier_fraction == 1.0


# --- (2) the phantom under a sliding / tilting probe ----------------------------------------

@pytest.fixture(scope="module")
def phantom() -> PhantomSimulator:
    return PhantomSimulator("jugular", seed=0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


def _vessel_dice(labels: np.ndarray, truth: np.ndarray) -> float:
    """Mean Dice of vein and artery (model class indices vs phantom codes)."""
    ours = to_model_classes(truth, JUGULAR_CLASSES)
    return float(np.mean([_dice(labels == i, ours == i) for i in (1, 2)]))


@pytest.mark.parametrize("slide_mm, tilt_deg", [(1.5, 0.0), (-2.0, 0.0), (1.0, 3.0)])
def test_old_phantom_outlines_moved_by_measured_motion_match_the_new_frame(
        phantom, slide_mm, tilt_deg):
    # a 1-2 cm/s sweep: the probe moves 1-2 mm in the 100 ms the model is behind
    phantom.set_probe_offset(0.0)
    phantom.set_tilt(0.0)
    a = phantom.render(0.50)
    phantom.set_probe_offset(slide_mm)
    phantom.set_tilt(tilt_deg)
    b = phantom.render(0.60)
    sp = a.pixel_spacing_mm
    fa, fb = _frame(a.image, 10, spacing=sp), _frame(b.image, 13, spacing=sp)

    check = MotionEstimator().estimate(fa, fb)
    assert check.reason == "", check.reason
    m = check.motion
    # the slide moves the picture sideways by slide/spacing, the tilt shears it with depth
    th = math.radians(tilt_deg)
    truth = np.array([[1.0, -math.tan(th), -slide_mm / sp], [0.0, 1.0 / math.cos(th), 0.0]])
    err = _max_error(m.matrix, truth, Roi.full(a.image))

    roi = Roi.full(a.image)
    labels = to_model_classes(a.labels, JUGULAR_CLASSES)
    seg = Segmentation(10, fa.t_capture, fa.t_capture + 0.1, JUGULAR_CLASSES, roi, labels)
    moved = warp_segmentation(seg, m, fb)
    before, after = _vessel_dice(labels, b.labels), _vessel_dice(moved.labels, b.labels)
    print(f"\nphantom slide {slide_mm} mm tilt {tilt_deg} deg: max error {err:.2f} px "
          f"({err * sp:.2f} mm), residual {m.residual_px:.2f} px, inliers "
          f"{m.inlier_fraction:.2f}, vessel Dice unwarped {before:.3f} -> warped {after:.3f}, "
          f"{m.ms:.2f} ms")
    assert err < 2.5  # 0.2 mm; pulsation and breathing move the vessels a little on their own
    assert after > 0.93
    assert after > before + 0.1


def test_fast_sweep_beyond_the_flow_range_is_still_measured(phantom):
    """7 mm between the analysed and the shown frame (a 3.5 cm/s sweep, 200 ms behind): 18 %
    of the picture, past what the flow tracks on its own; the phase-correlation restart
    measures it."""
    phantom.set_tilt(0.0)
    phantom.set_probe_offset(-3.5)
    a = phantom.render(1.5)
    phantom.set_probe_offset(3.5)
    b = phantom.render(1.6)
    check = MotionEstimator().estimate(_frame(a.image, 1), _frame(b.image, 2))
    assert check.reason == ""
    truth = np.array([[1.0, 0.0, -7.0 / a.pixel_spacing_mm], [0.0, 1.0, 0.0]])  # -90 px
    assert _max_error(check.motion.matrix, truth, Roi.full(a.image)) < 2.5


def test_still_probe_phantom_is_nearly_zero_motion(phantom):
    phantom.set_probe_offset(0.0)
    phantom.set_tilt(0.0)
    a, b = phantom.render(1.0), phantom.render(1.1)  # breathing and pulse only
    check = MotionEstimator().estimate(_frame(a.image, 1), _frame(b.image, 2))
    assert check.reason == ""
    assert _max_error(check.motion.matrix, np.eye(2, 3), Roi.full(a.image)) < 1.5


# --- (3) refusals: never a wrong draw --------------------------------------------------------

@pytest.fixture(scope="module")
def speckle_pair() -> tuple[np.ndarray, np.ndarray]:
    return _pair(_affine(5.0, 2.0))


@pytest.mark.parametrize("which", ["src", "dst"])
@pytest.mark.parametrize("level", [0, 128])
def test_blank_frame_is_refused(speckle_pair, which, level):
    a, b = speckle_pair
    blank = np.full_like(a, level)
    src, dst = (blank, b) if which == "src" else (a, blank)
    check = MotionEstimator().estimate(_frame(src, 1), _frame(dst, 2))
    assert check.motion is None and check.reason == BLANK


def test_changed_frame_size_is_refused(speckle_pair):
    a, b = speckle_pair
    check = MotionEstimator().estimate(_frame(a, 1), _frame(b[:-10], 2))
    assert check.motion is None and check.reason == SIZE_CHANGED
    rgb = np.dstack([b, b, b])  # a different pixel format is another source too
    assert MotionEstimator().estimate(_frame(a, 1), _frame(rgb, 2)).reason == SIZE_CHANGED


def test_changed_image_area_is_refused(speckle_pair):
    a, b = speckle_pair
    est = MotionEstimator()
    check = est.estimate(_frame(a, 1, Roi(0, 0, 600, 480)), _frame(b, 2, Roi(0, 0, 610, 480)))
    assert check.motion is None and check.reason == AREA_CHANGED
    check = est.estimate(_frame(a, 1), _frame(a, 2, Roi(0, 0, 600, 480)))
    assert check.motion is None and check.reason == AREA_CHANGED


def test_motion_beyond_the_limits_is_refused():
    a, b = _pair(_affine(30.0, 0.0))  # measurable, but beyond a 3 % limit
    check = MotionEstimator(max_shift_frac=0.03).estimate(_frame(a, 1), _frame(b, 2))
    assert check.motion is None and check.reason == TOO_LARGE
    assert MotionEstimator().estimate(_frame(a, 1), _frame(b, 2)).reason == ""
    a, b = _pair(_affine(0.0, 0.0, 1.25, centre=(320, 240)))  # a 25 % zoom
    check = MotionEstimator().estimate(_frame(a, 1), _frame(b, 2))
    assert check.motion is None and check.reason in (TOO_LARGE, UNRELIABLE)


def test_huge_slide_is_refused(phantom):
    phantom.set_tilt(0.0)
    phantom.set_probe_offset(-6.0)
    a = phantom.render(2.0)
    phantom.set_probe_offset(6.0)  # 12 mm in one frame gap: a third of the picture
    b = phantom.render(2.1)
    check = MotionEstimator().estimate(_frame(a.image, 1), _frame(b.image, 2))
    assert check.motion is None and check.reason in (TOO_LARGE, UNRELIABLE)


def test_unrelated_pictures_are_refused(speckle_pair):
    a, _ = speckle_pair
    other, _ = _pair(_affine(0, 0), seed=7)
    check = MotionEstimator().estimate(_frame(a, 1), _frame(other, 2))
    assert check.motion is None and check.reason == UNRELIABLE
    scenes = [PhantomSimulator(s, seed=3).render(0.0).image for s in ("jugular", "femoral")]
    check = MotionEstimator().estimate(_frame(scenes[0], 1), _frame(scenes[1], 2))
    assert check.motion is None and check.reason == UNRELIABLE


def test_cached_analysed_frame_follows_the_roi(speckle_pair):
    """The estimator caches the analysed frame; a new ROI on the same array must not reuse it."""
    a, b = speckle_pair
    est = MotionEstimator()
    full = est.estimate(_frame(a, 1), _frame(b, 2)).motion.matrix
    roi = Roi(100, 80, 400, 300)
    part = est.estimate(_frame(a, 1, roi), _frame(b, 2, roi)).motion.matrix
    truth = _affine(5.0, 2.0)
    assert _max_error(part, truth, roi) < 1.0 and _max_error(full, truth, Roi.full(a)) < 1.0


# --- (4) warp_segmentation ------------------------------------------------------------------

ROI = Roi(100, 50, 200, 160)
SPACING = 0.1


def _disc_segmentation(cx_roi: float = 80, cy_roi: float = 60, r: int = 20) -> Segmentation:
    """A vein disc at (cx, cy) in ROI coordinates, as the Analyzer would report it."""
    labels = np.zeros((ROI.h, ROI.w), np.uint8)
    cv2.circle(labels, (int(cx_roi), int(cy_roi)), r, 1, -1)
    contours, _ = cv2.findContours(labels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = contours[0].reshape(-1, 2).astype(np.float32) + np.float32([ROI.x, ROI.y])
    area = float((labels == 1).sum())
    cx, cy = ROI.x + cx_roi, ROI.y + cy_roi
    vein = Structure("vein", contour, area, (cx, cy), 0.8, area * SPACING**2, unsure=True)
    target = Target("vein", cx, cy, (cy - ROI.y) * SPACING, 0.8, unsure=True)
    return Segmentation(7, 1.0, 1.2, JUGULAR_CLASSES, ROI, labels, (vein,), target,
                        {"vein": 0.9, "artery": 0.2})


def _motion(m: np.ndarray) -> Motion:
    return Motion(np.asarray(m, np.float64), 0.1, 0.9, 1.0)


def test_warp_moves_contour_centroid_target_and_labels_together():
    seg = _disc_segmentation()
    frame = _frame(np.zeros((300, 400), np.uint8), 9, ROI, SPACING)
    out = warp_segmentation(seg, _motion(_affine(20.0, 10.0)), frame)

    assert (out.frame_id, out.warped_from, out.t_capture, out.t_done) == (9, 7, 1.0, 1.2)
    assert out.roi == ROI and out.present == seg.present and out.classes == seg.classes
    (vein,) = out.structures
    np.testing.assert_allclose(vein.contour, seg.structures[0].contour + [20, 10], atol=1e-4)
    assert vein.centroid == pytest.approx((ROI.x + 100, ROI.y + 70))
    assert vein.area_px == pytest.approx(seg.structures[0].area_px)
    assert (vein.confidence, vein.unsure) == (0.8, True)
    # the label map moved the same way, in ROI coordinates
    ys, xs = np.nonzero(out.labels == 1)
    assert (xs.mean(), ys.mean()) == pytest.approx((100, 70), abs=0.5)
    assert out.labels.shape == (ROI.h, ROI.w) and out.labels.dtype == np.uint8
    # the contour outlines the moved labels: its centre is the labels' centre
    assert vein.contour.mean(axis=0) == pytest.approx((ROI.x + xs.mean(), ROI.y + ys.mean()),
                                                      abs=1.0)
    t = out.target
    assert (t.x, t.y) == pytest.approx((ROI.x + 100, ROI.y + 70))
    assert t.depth_mm == pytest.approx(70 * SPACING)  # 1 mm deeper than before
    assert (t.confidence, t.unsure) == (0.8, True)


def test_warp_scales_areas_and_depth_with_a_zoom():
    seg = _disc_segmentation()
    zoom = _affine(0.0, 0.0, 1.2, centre=(ROI.x, ROI.y))  # about the skin line's left end
    out = warp_segmentation(seg, _motion(zoom), _frame(np.zeros((300, 400), np.uint8), 9, ROI))
    (vein,) = out.structures
    assert vein.area_px == pytest.approx(seg.structures[0].area_px * 1.44)
    assert vein.area_mm2 == pytest.approx(seg.structures[0].area_mm2 * 1.44)
    assert (out.labels == 1).sum() == pytest.approx((seg.labels == 1).sum() * 1.44, rel=0.05)
    ys, xs = np.nonzero(out.labels == 1)  # the disc's centre (80, 60) moved 1.2x from (0, 0)
    assert (xs.mean(), ys.mean()) == pytest.approx((96, 72), abs=0.5)
    assert vein.centroid == pytest.approx((ROI.x + 96, ROI.y + 72))
    assert out.roi == ROI  # the frame names no image area: the result's is kept
    # a frame without a pixel spacing keeps the result's: depth grows with the zoom
    assert out.target.depth_mm == pytest.approx(seg.target.depth_mm * 1.2)


def test_structure_leaving_the_image_is_clipped_then_dropped():
    seg = _disc_segmentation(cx_roi=170)  # near the right edge (ROI is 200 wide)
    frame = _frame(np.zeros((300, 400), np.uint8), 9, ROI, SPACING)
    half = warp_segmentation(seg, _motion(_affine(29.0, 0.0)), frame)  # centre at the edge
    (vein,) = half.structures
    assert vein.contour[:, 0].max() <= ROI.x + ROI.w - 0.5
    assert vein.area_px == pytest.approx(seg.structures[0].area_px / 2, rel=0.1)
    assert half.target is not None  # on the last column: still in the picture
    assert half.target.x == pytest.approx(ROI.x + ROI.w - 1)

    gone = warp_segmentation(seg, _motion(_affine(60.0, 0.0)), frame)
    assert gone.structures == () and gone.target is None
    assert not (gone.labels == 1).any()


def test_unwarped_identity_keeps_everything():
    seg = _disc_segmentation()
    out = warp_segmentation(seg, _motion(np.eye(2, 3)),
                            _frame(np.zeros((300, 400), np.uint8), 8, ROI, SPACING))
    np.testing.assert_array_equal(out.labels, seg.labels)
    np.testing.assert_allclose(out.structures[0].contour, seg.structures[0].contour)
    assert out.target.depth_mm == pytest.approx(seg.target.depth_mm)
    assert out.warped_from == 7 and out.frame_id == 8


def test_chain_measures_once_per_frame_and_composes_to_the_direct_motion():
    """Frame to frame along a sweep: composing the links from frame 0 to frame 4 lands where
    one direct measurement does, and asking again costs no new measurement."""
    from sonoguide.pipeline.motion import MotionChain
    from sonoguide.pipeline.shown_accuracy import Sweep, phantom_frames

    frames = phantom_frames("jugular", seconds=5 / 30, sweep=Sweep(speed_mm_s=20.0))
    chain = MotionChain()
    calls = []
    estimate = chain.estimator.estimate
    chain.estimator.estimate = lambda a, b: (calls.append(b.frame_id), estimate(a, b))[1]
    for f in frames:
        chain.add(f)
    assert calls == [1, 2, 3, 4] and chain.add(frames[4]) is None  # already known: free
    composed = chain.motion((frames[0].source, 0), frames[4])
    direct = MotionEstimator().estimate(frames[0], frames[4])
    assert composed.motion is not None and direct.motion is not None
    corners = np.array([[0, 0, 1], [511, 0, 1], [0, 511, 1], [511, 511, 1]], float)
    gap = np.abs(corners @ composed.motion.matrix.T - corners @ direct.motion.matrix.T).max()
    assert gap < 2.0  # full-frame px
    assert len(calls) == 4  # composing measured nothing


def test_chain_refuses_a_move_across_a_refused_link():
    from sonoguide.pipeline.motion import MotionChain

    rng = np.random.default_rng(3)
    textured = cv2.GaussianBlur(rng.gamma(2.0, 40.0, (256, 256)).clip(0, 255).astype(np.uint8),
                                (3, 3), 0)
    blank = np.zeros((256, 256), np.uint8)
    frames = [Frame(img, i, i / 30, "s", roi=Roi(0, 0, 256, 256))
              for i, img in enumerate((textured, textured.copy(), blank, textured.copy()))]
    chain = MotionChain()
    for f in frames:
        chain.add(f)
    assert chain.motion(("s", 0), frames[1]).motion is not None
    assert chain.motion(("s", 0), frames[3]).reason == BLANK  # the blank frame breaks it
    assert chain.motion(("s", 7), frames[3]).motion is None  # never seen: not drawn
