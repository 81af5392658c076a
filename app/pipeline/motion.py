"""Image motion between the frame the model analysed and a newer frame on screen.

When the model is slower than the video, its last result may be drawn on a newer frame only
after it has been moved there by the measured image motion (the probe sliding or tilting), and
never when that motion cannot be measured reliably. One global affine is measured: slide,
in-plane tilt (a depth-proportional shear) and depth zoom are affine on a linear probe; local
tissue deformation (pulsation, a vein collapsing under pressure) is not followed.

Measurement: both ROI crops, grey, shrunk to about `work_px` on the long side; dense DIS
optical flow src -> dst; flow sampled on a grid of textured points; RANSAC affine fit; then the
fit is checked photometrically (the shrunk src warped by it must look like dst), because DIS
flow is smooth by construction, so a small fit residual alone does not prove the flow is right.
DIS loses track of shifts beyond ~10 % of the picture; then the global shift found by phase
correlation is undone first and the flow measured again. On phantom pairs the accepted fits
had >= 0.6 inliers and <= 0.5 work px residual, 752 unrelated pairs <= 0.2 and >= 2 px: the
limits below sit between.

Not followed (a global affine cannot): a vein collapsing under the probe, pulsation. The fit
is then about the unmoved tissue around them and is accepted, so the old outline of a vein
being compressed stays open; keep the age of a moved result bounded.

Qt-free: numpy + OpenCV only. One MotionEstimator per thread (it caches the analysed frame).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from sonoguide.pipeline.frames import Frame, Roi, Segmentation, Structure, Target
from sonoguide.pipeline.guidance import Guidance
from sonoguide.pipeline.roi import depth_mm

BLANK = "blank image"
SIZE_CHANGED = "frame size changed"
AREA_CHANGED = "image area changed"
TOO_LARGE = "motion too large"
UNRELIABLE = "flow unreliable"


@dataclass(frozen=True, eq=False)
class Motion:
    """A measured motion; eq=False: dataclass equality cannot compare arrays."""

    matrix: np.ndarray  # 2x3 float64, full-frame px: analysed (older) frame -> shown frame
    residual_px: float  # median residual of the flow vs the affine fit, full-frame px
    inlier_fraction: float
    ms: float  # time the estimate took


@dataclass(frozen=True)
class MotionCheck:
    motion: Motion | None  # None: do not draw the old result on the new frame
    reason: str = ""  # "" when reliable, else a short user-readable reason (constants above)


_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, np.float64)
    a.flags.writeable = False
    return a


def _h(m: np.ndarray) -> np.ndarray:
    """2x3 affine -> 3x3 homogeneous."""
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _translate(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class _Prepared:
    small: np.ndarray  # uint8 grey, work size
    textured: np.ndarray  # bool, work size: enough local gradient to follow
    texture_fraction: float
    scale: tuple[float, float]  # work px per ROI px (x, y)


class MotionEstimator:
    """Measures the motion of the image area from an analysed frame to a newer one.

    work_px: about the long side of the shrunk images the flow runs on (an integer shrink
      factor: 512 px -> 128); speed vs precision, the fit errs by ~0.1-0.2 work px. 128
      rather than 171 px: 1.8 instead of 2.9 ms a frame, and the shown-overlay Dice on the
      plexus sweep at 15 inferences/s is the same (0.906 / 0.897 vs 0.907 / 0.899).
    max_shift_frac: a larger shift of the image area's centre (fraction of its width/height)
      is refused: the model's result is no longer about what is on screen.
    max_deform: refused when the affine stretches or squeezes any direction by more than this
      (a zoom, or the shear of an in-plane tilt of more than ~14 degrees).
    max_rotation_deg: in-plane rotation limit (a probe's picture does not rotate much).
    min_texture: share of the work image that must carry texture, else "blank image".
    min_inliers, max_residual_work: RANSAC inlier share and median flow residual (work px)
      the fit must reach.
    min_ncc: normalised cross-correlation of the warped analysed image with the shown one
      (textured overlap, work size) the fit must reach, and it must beat leaving it unwarped.
    """

    def __init__(self, work_px: int = 128, max_shift_frac: float = 0.2, *,
                 max_deform: float = 0.15, max_rotation_deg: float = 10.0,
                 min_texture: float = 0.15, min_inliers: float = 0.4,
                 max_residual_work: float = 1.0, min_ncc: float = 0.7,
                 grid_step: int = 4, preset: int = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                 finest_scale: int = 1) -> None:
        if work_px < 32:
            raise ValueError(f"work_px must be at least 32, got {work_px}")
        self.work_px = int(work_px)
        self.max_shift_frac = float(max_shift_frac)
        self.max_deform = float(max_deform)
        self.max_rotation_deg = float(max_rotation_deg)
        self.min_texture = float(min_texture)
        self.min_inliers = float(min_inliers)
        self.max_residual_work = float(max_residual_work)
        self.min_ncc = float(min_ncc)
        self.grid_step = int(grid_step)
        self._dis = cv2.DISOpticalFlow_create(preset)
        # the presets stop at 1/4 resolution (finest scale 2); one level finer halves the fit
        # error on ultrasound speckle for ~0.5 ms at 160 px
        self._dis.setFinestScale(int(finest_scale))
        # the analysed frame is compared with every newer frame until the next result: keep it
        self._cache: tuple[np.ndarray, Roi, _Prepared] | None = None
        self._last_dst: tuple[np.ndarray, Roi, _Prepared] | None = None
        self._window: np.ndarray | None = None  # phase correlation's Hann window

    # --------------------------------------------------------------------------------------
    def estimate(self, src: Frame, dst: Frame) -> MotionCheck:
        """Motion from `src` (the frame the model analysed) to `dst` (the frame on screen)."""
        t0 = time.perf_counter()
        if src.image.shape != dst.image.shape:
            return MotionCheck(None, SIZE_CHANGED)
        if src.roi != dst.roi:
            return MotionCheck(None, AREA_CHANGED)
        roi = (src.roi or Roi.full(src.image)).clamp(src.width, src.height)
        if src.image is dst.image:
            return MotionCheck(Motion(_frozen(_IDENTITY), 0.0, 1.0, _ms(t0)))
        pa, pb = self._prepare_src(src.image, roi), self._prepare_dst(dst.image, roi)
        # the same picture (a frozen scanner, a repeated frame): zero motion is exact; compared
        # shrunk, as the flow would be (full size costs ~0.2 ms more at 1080p)
        if np.array_equal(pa.small, pb.small):
            return MotionCheck(Motion(_frozen(_IDENTITY), 0.0, 1.0, _ms(t0)))
        if min(pa.texture_fraction, pb.texture_fraction) < self.min_texture:
            return MotionCheck(None, BLANK)

        found = self._fit(pa, pb, None)
        if found is None:
            # DIS loses track beyond ~10 % of the picture in one step (a fast sweep, a slow
            # model): undo the global shift phase correlation finds, and measure the rest
            shift = self._global_shift(pa, pb)
            found = None if shift is None else self._fit(pa, pb, shift)
        if found is None or isinstance(found, str):
            return MotionCheck(None, found or UNRELIABLE)
        fit, residual, inlier_fraction = found

        # work px -> ROI px -> full frame (cv2.resize maps pixel centres onto pixel centres)
        sx, sy = pa.scale
        to_work = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5],
                            [0.0, 0.0, 1.0]]) @ _translate(-roi.x, -roi.y)
        full = (np.linalg.inv(to_work) @ _h(fit) @ to_work)[:2]
        if self._too_large(full, roi):
            return MotionCheck(None, TOO_LARGE)
        residual_px = residual * 2.0 / (sx + sy)
        return MotionCheck(Motion(_frozen(full), residual_px, inlier_fraction, _ms(t0)))

    # --------------------------------------------------------------------------------------
    def _fit(self, pa: _Prepared, pb: _Prepared, shift: tuple[int, int] | None
             ) -> tuple[np.ndarray, float, float] | str | None:
        """Affine fit (work px) to the flow from pa to pb, measured after undoing a global
        shift if given: (fit, median residual, inlier share), BLANK, or None (unreliable)."""
        h, w = pa.small.shape
        target, (dx, dy) = pb.small, shift or (0, 0)
        if shift is not None:  # undo the shift (whole px: no blur), add it back to the fit
            target = cv2.warpAffine(pb.small, np.float32([[1, 0, -dx], [0, 1, -dy]]), (w, h),
                                    flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        flow = self._dis.calc(pa.small, target, None)
        m, step = 4, self.grid_step  # flow within a few px of the border is extrapolated
        ys, xs = np.mgrid[m:h - m:step, m:w - m:step]
        keep = pa.textured[ys, xs]
        xs, ys = xs[keep], ys[keep]
        if xs.size < 12:
            return BLANK
        p = np.stack([xs, ys], -1).astype(np.float32)
        q = p + flow[ys, xs]
        fit, inliers = cv2.estimateAffine2D(p, q, method=cv2.RANSAC, ransacReprojThreshold=1.0,
                                            maxIters=500, confidence=0.995, refineIters=10)
        if fit is None or inliers is None:
            return None
        fit[:, 2] += (dx, dy)
        q += np.float32([dx, dy])
        residual = float(np.median(np.linalg.norm(p @ fit[:, :2].T + fit[:, 2] - q, axis=1)))
        inlier_fraction = float(inliers.mean())
        if (inlier_fraction < self.min_inliers or residual > self.max_residual_work
                or not self._looks_right(pa, pb, fit)):
            return None
        return fit, residual, inlier_fraction

    def _global_shift(self, pa: _Prepared, pb: _Prepared) -> tuple[int, int] | None:
        """Translation of the whole picture in whole work px, by phase correlation (a Hann
        window against the edges; ~0.3 ms); None when it finds too little to restart from."""
        h, w = pa.small.shape
        if self._window is None or self._window.shape != (h, w):
            self._window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(pa.small.astype(np.float32),
                                                pb.small.astype(np.float32), self._window)
        if response < 0.1 or math.hypot(dx, dy) < 2.0:
            return None  # no clear peak, or a shift the first attempt already covered
        return round(dx), round(dy)

    def _prepare_src(self, image: np.ndarray, roi: Roi) -> _Prepared:
        # identity of the array, not frame_id: ids restart when the source changes; holding
        # the array keeps its id from being reused. Measured frame to frame (MotionChain),
        # the last dst is the next src: both are kept.
        for cached in (self._cache, self._last_dst):
            if cached is not None and cached[0] is image and cached[1] == roi:
                return cached[2]
        prepared = self._prepare(roi.crop(image))
        self._cache = (image, roi, prepared)
        return prepared

    def _prepare_dst(self, image: np.ndarray, roi: Roi) -> _Prepared:
        prepared = self._prepare(roi.crop(image))
        self._last_dst = (image, roi, prepared)
        return prepared

    def _prepare(self, crop: np.ndarray) -> _Prepared:
        if crop.ndim == 3:
            code = cv2.COLOR_RGBA2GRAY if crop.shape[2] == 4 else cv2.COLOR_RGB2GRAY
            crop = cv2.cvtColor(np.ascontiguousarray(crop), code)  # grey first: 3x less to shrink
        # an integer shrink factor keeps INTER_AREA on its fast path (~4x faster); given fx,
        # cv2.resize maps with exactly that scale, whatever size it rounds the output to
        f = max(1, round(max(crop.shape) / self.work_px))
        small = crop if f == 1 else cv2.resize(crop, None, fx=1.0 / f, fy=1.0 / f,
                                               interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small)
        # followable texture: smoothed gradient magnitude above ~0.5 grey level per work px
        # (flat black, a uniform frame, the lumen of a vessel carry none)
        gx = cv2.Sobel(small, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(small, cv2.CV_32F, 0, 1)
        textured = cv2.blur(cv2.magnitude(gx, gy), (5, 5)) > 4.0
        return _Prepared(small, textured, float(textured.mean()), (1.0 / f, 1.0 / f))

    def _looks_right(self, pa: _Prepared, pb: _Prepared, fit: np.ndarray) -> bool:
        """Does the analysed image, moved by the fit, look like the shown one (and more so
        than not moved)? Catches smooth, well-fitting flow that is simply wrong."""
        h, w = pb.small.shape
        warped = cv2.warpAffine(pa.small, fit, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        valid = cv2.warpAffine(pa.textured.view(np.uint8), fit, (w, h),
                               flags=cv2.INTER_NEAREST, borderValue=0).view(bool)
        valid &= pb.textured
        if valid.mean() < 0.5 * self.min_texture:
            return False
        moved = _ncc(warped, pb.small, valid)
        still = _ncc(pa.small, pb.small, pa.textured & pb.textured)
        # (a small true motion of fine speckle can correlate a little less than none at all,
        # the static near field and receiver noise weigh in: a small margin)
        return moved >= self.min_ncc and moved >= still - 0.05

    def _too_large(self, full: np.ndarray, roi: Roi) -> bool:
        centre = np.array([roi.x + (roi.w - 1) / 2, roi.y + (roi.h - 1) / 2, 1.0])
        dx, dy = full @ centre - centre[:2]
        if abs(dx) > self.max_shift_frac * roi.w or abs(dy) > self.max_shift_frac * roi.h:
            return True
        lin = full[:, :2]
        if np.linalg.det(lin) <= 0:  # a mirror image is no probe motion
            return True
        u, sv, vt = np.linalg.svd(lin)
        if sv[0] > 1.0 + self.max_deform or sv[1] < 1.0 / (1.0 + self.max_deform):
            return True
        rot = u @ vt  # the rotation part of the polar decomposition
        return abs(math.degrees(math.atan2(rot[1, 0], rot[0, 0]))) > self.max_rotation_deg


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if mask.sum() < 16:
        return -1.0
    x = a[mask].astype(np.float32)
    y = b[mask].astype(np.float32)
    x -= x.mean()
    y -= y.mean()
    den = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return float(np.dot(x, y)) / den if den > 0 else -1.0


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


# --- moving a result ------------------------------------------------------------------------

def warp_segmentation(seg: Segmentation, motion: Motion, frame: Frame) -> Segmentation:
    """`seg` (of an older frame) moved by `motion` onto `frame`, the frame it will be drawn on.

    Contours, centroids, the target and the label map move with the affine; areas scale with
    its determinant. Contours are clipped to the image area (what the model itself would
    outline there), a structure moved wholly out of it is dropped, and so is a target that
    left it. Confidence and doubt are the model's, unchanged.
    """
    new_roi = frame.roi or seg.roi
    m = np.asarray(motion.matrix, np.float64)
    det = abs(float(np.linalg.det(m[:, :2])))
    # ROI coordinates of the analysed frame -> ROI coordinates of the shown one
    m_roi = (_translate(-new_roi.x, -new_roi.y) @ _h(m) @ _translate(seg.roi.x, seg.roi.y))[:2]
    if np.allclose(m_roi, _IDENTITY) and new_roi == seg.roi:
        labels = seg.labels
    else:
        labels = cv2.warpAffine(seg.labels, m_roi, (new_roi.w, new_roi.h),
                                flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0)
    structures = tuple(s for s in (_warp_structure(s, m, det, new_roi) for s in seg.structures)
                       if s is not None)
    target = None
    if seg.target is not None:
        target = _warp_target(seg.target, m, seg, new_roi, frame.pixel_spacing_mm)
    return dataclasses.replace(seg, frame_id=frame.frame_id, warped_from=seg.frame_id,
                               roi=new_roi, labels=labels, structures=structures,
                               target=target, guidance=_warp_guidance(seg.guidance, m))


def _warp_guidance(guidance: Guidance | None, m: np.ndarray) -> Guidance | None:
    """The needle and its path moved like the anatomy around them; the warnings are the
    analysed frame's (the result is dropped past its budget, and they with it)."""
    if guidance is None or guidance.needle is None:
        return guidance
    needle = guidance.needle

    def move(point: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if point is None else tuple(float(v) for v in _move([point], m)[0])

    path = guidance.path
    if path is not None:
        path = dataclasses.replace(path, start=move(path.start), end=move(path.end))
    return dataclasses.replace(
        guidance, needle=dataclasses.replace(needle, tip=move(needle.tip),
                                             shaft_start=move(needle.shaft_start)),
        path=path)


def _move(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float32).reshape(-1, 1, 2)
    return cv2.transform(pts, m).reshape(-1, 2)


def _bounds(roi: Roi) -> tuple[float, float, float, float]:
    """The image area's outer pixel edges (pixel centres are integers)."""
    return roi.x - 0.5, roi.y - 0.5, roi.x + roi.w - 0.5, roi.y + roi.h - 0.5


def _warp_structure(s: Structure, m: np.ndarray, det: float, roi: Roi) -> Structure | None:
    contour = _move(s.contour, m)
    moved_area = abs(_polygon_area(contour))
    clipped = _clip_to_box(contour, _bounds(roi))
    if len(clipped) < 3:
        return None
    visible = 1.0
    if len(clipped) != len(contour) or not np.array_equal(clipped, contour):
        if moved_area <= 0.0:
            return None
        visible = abs(_polygon_area(clipped)) / moved_area
        if visible <= 0.0:
            return None
    cx, cy = _move([s.centroid], m)[0]
    scale = det * visible
    return dataclasses.replace(
        s, contour=np.ascontiguousarray(clipped, np.float32), centroid=(float(cx), float(cy)),
        area_px=float(s.area_px * scale),
        area_mm2=None if s.area_mm2 is None else float(s.area_mm2 * scale))


def _warp_target(t: Target, m: np.ndarray, seg: Segmentation, roi: Roi,
                 spacing: float | None) -> Target | None:
    x, y = (float(v) for v in _move([(t.x, t.y)], m)[0])
    x0, y0, x1, y1 = _bounds(roi)
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        return None  # its structure left the picture: no marker off the image
    if spacing is None:
        spacing = _spacing_of(seg)
    return dataclasses.replace(t, x=x, y=y, depth_mm=depth_mm(y, roi, spacing))


def _spacing_of(seg: Segmentation) -> float | None:
    """mm per pixel the result was measured with, for a frame that does not say its own:
    from the target's depth, else from an area in mm^2."""
    t = seg.target
    if t is not None and t.depth_mm is not None and t.y - seg.roi.y > 1.0:
        return t.depth_mm / (t.y - seg.roi.y)
    for s in seg.structures:
        if s.area_mm2 is not None and s.area_px > 0:
            return math.sqrt(s.area_mm2 / s.area_px)
    return None


def _polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0].astype(np.float64), poly[:, 1].astype(np.float64)
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _clip_to_box(poly: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Sutherland-Hodgman clip of a closed polygon to an axis-aligned box, vectorised per
    edge; a polygon inside the box comes back unchanged."""
    x0, y0, x1, y1 = box
    pts = np.asarray(poly, np.float64)
    if (len(pts) and pts[:, 0].min() >= x0 and pts[:, 0].max() <= x1
            and pts[:, 1].min() >= y0 and pts[:, 1].max() <= y1):
        return np.asarray(poly, np.float32)
    for axis, limit, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False),
                                    (1, y1, True)):
        if len(pts) == 0:
            break
        nxt = np.roll(pts, -1, axis=0)
        inside = pts[:, axis] <= limit if keep_below else pts[:, axis] >= limit
        inside_next = np.roll(inside, -1)
        denom = nxt[:, axis] - pts[:, axis]
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(denom != 0, (limit - pts[:, axis]) / denom, 0.0)
        cross = pts + f[:, None] * (nxt - pts)
        cross[:, axis] = limit
        # edge i (pts[i] -> pts[i+1]) emits: the crossing when it changes side, then pts[i+1]
        # when that end is inside
        out = np.empty((2 * len(pts), 2))
        emit = np.zeros(2 * len(pts), bool)
        out[0::2], emit[0::2] = cross, inside != inside_next
        out[1::2], emit[1::2] = nxt, inside_next
        pts = out[emit]
    return pts.astype(np.float32)


# --- benchmark ------------------------------------------------------------------------------

def _benchmark(n: int = 240) -> None:
    """python -m sonoguide.pipeline.motion [taskset -c 0 ...]: ms per estimate, cv2 on one thread,
    on a phantom probe sweep (1.5 cm/s back and forth at 30 fps, the model a result every
    third frame, each result drawn on the next three frames), as the 512 px phantom and as a
    1080p RGB capture-card screen with a 900x860 image area."""
    from sonoguide.phantom.simulator import PhantomSimulator  # dev tool only

    cv2.setNumThreads(1)
    sim = PhantomSimulator("jugular", seed=3)
    small, screen = [], []
    roi = Roi(510, 110, 900, 860)
    for i in range(n):
        sim.set_probe_offset(abs((0.5 * i) % 40.0 - 20.0) - 10.0)  # -10..10 mm, 0.5 mm/frame
        img = sim.render(i / 30).image
        small.append(Frame(img, i, i / 30))
        rgb = np.zeros((1080, 1920, 3), np.uint8)
        roi.crop(rgb)[:] = cv2.resize(img, (roi.w, roi.h))[:, :, None]
        screen.append(Frame(rgb, i, i / 30, roi=roi))
    for name, frames in (("512x512 grey phantom", small), ("1920x1080 RGB screen", screen)):
        est = MotionEstimator()
        first = None
        times, refused = [], 0
        for i in range(6, n):
            check = est.estimate(frames[(i // 3) * 3 - 3], frames[i])
            if check.motion is None:
                refused += 1
            elif first is None:
                first = check.motion.ms  # DIS allocates its buffers on the first call
            else:
                times.append(check.motion.ms)
        ms = np.array(times)
        print(f"{name}: work {est.work_px} px, cv2 threads 1: median {np.median(ms):.2f} ms, "
              f"p95 {np.percentile(ms, 95):.2f} ms, max {ms.max():.2f} ms over {ms.size} "
              f"(first call {first:.1f} ms); refused {refused}")


if __name__ == "__main__":
    _benchmark()


class MotionChain:
    """Frame-to-frame motion of the frames shown, composed on demand.

    One measurement per new frame, between neighbouring frames (the smallest motion, so the
    most reliable), however many model results land while it is on screen: a result of frame
    j drawn on frame k is moved by the links j->j+1->...->k. Any refused link refuses the
    whole move, with its reason.
    """

    def __init__(self, estimator: MotionEstimator | None = None, keep: int = 64) -> None:
        self.estimator = estimator or MotionEstimator()
        self.keep = keep
        # add() may run on a helper thread ahead of the view (LiveSession measures every new
        # frame as it arrives) while the view composes: one lock, held while measuring, so a
        # view asking for a frame being measured waits for it instead of measuring it twice
        self._lock = threading.Lock()
        # (source, frame_id) -> (frame, motion from the previous frame or None, reason)
        self._links: dict[tuple[str, int], tuple[Frame, Motion | None, str]] = {}
        self._last: Frame | None = None

    def add(self, frame: Frame) -> float | None:
        """Measure the motion from the last frame added to `frame`; ms spent, or None when
        `frame` was already in the chain."""
        key = (frame.source, frame.frame_id)
        with self._lock:
            if key in self._links:
                return None
            last = self._last
            if last is not None and last.source == frame.source \
                    and frame.frame_id < last.frame_id:
                return None  # older than the newest measured (ids only rise per source)
            if last is None or last.source != frame.source:
                self._links.clear()  # another source: start over
                link: tuple[Frame, Motion | None, str] = (frame, None, "no earlier frame")
                spent = None
            else:
                check = self.estimator.estimate(last, frame)
                link = (frame, check.motion, check.reason)
                spent = check.motion.ms if check.motion is not None else None
            self._links[key] = link
            self._last = frame
            while len(self._links) > self.keep:
                del self._links[next(iter(self._links))]
            return spent

    def reset(self) -> None:
        """Forget every link (a new source: its frame ids start again)."""
        with self._lock:
            self._links.clear()
            self._last = None

    def motion(self, src: tuple[str, int], dst: Frame) -> MotionCheck:
        """The composed motion from frame `src` (source, frame_id) to `dst` (added before)."""
        with self._lock:
            keys = list(self._links)
            links = dict(self._links)
        end = (dst.source, dst.frame_id)
        if src not in links or end not in links:
            return MotionCheck(None, "analysed frame not kept")
        i, j = keys.index(src), keys.index(end)
        if i > j:
            return MotionCheck(None, "result of a later frame")
        total, residual, inliers = _IDENTITY.copy(), 0.0, 1.0
        for key in keys[i + 1:j + 1]:
            _, step, reason = links[key]
            if step is None:
                return MotionCheck(None, reason or UNRELIABLE)
            total = (_h(step.matrix) @ _h(total))[:2]
            residual += step.residual_px
            inliers = min(inliers, step.inlier_fraction)
        roi = (dst.roi or Roi.full(dst.image)).clamp(dst.width, dst.height)
        if self.estimator._too_large(total, roi):
            return MotionCheck(None, TOO_LARGE)
        return MotionCheck(Motion(_frozen(total), residual, inliers, 0.0))
