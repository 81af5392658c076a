"""Scanning simulator: one phantom patient under a linear (or convex) probe, frame by frame.

Per patient (and per depth / frequency setting) the static tissue maps are built once
(tissue.py). Per frame only: a smooth inverse deformation on a coarse grid (motion.py),
upsampled and applied with cv2.remap to the speckle, specular/attenuation maps and labels;
blending of two speckle realisations for slow decorrelation; the needle; TGC; log compression
with gain and dynamic range. Everything is numpy + OpenCV.

Controls are plain methods, safe to call from another thread while a source renders.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from sonoguide.phantom.anatomy import Anatomy
from sonoguide.phantom.motion import Pose, VeinChains, inverse_map
from sonoguide.phantom.needle import NeedleState, draw_needle
from sonoguide.phantom.scenes import ALIASES, make_anatomy
from sonoguide.phantom.scenes import SCENES as ALL_SCENES
from sonoguide.phantom.tissue import Grid, TissueMaps, build_tissue

_DB = 20.0 / math.log(10.0)
_TISSUE_GREY_DB = 16.0  # display offset: generic tissue lands at a dark grey at 0 dB gain
NOISE_FIELDS, NOISE_PAD = 3, 64  # receiver-noise patterns kept per view, and their extra width


@dataclass
class PhantomFrame:
    image: np.ndarray  # (H, W) uint8 B-mode
    labels: np.ndarray  # (H, W) uint8 phantom label codes (sonoguide.phantom.labels)
    needle_tip: tuple[float, float] | None  # (x, y) px
    pixel_spacing_mm: float
    t: float
    scene: str = ""
    info: dict = field(default_factory=dict)  # pressure, heart rate, phase.. for tests/logs
    # the label codes without the needle drawn over them: the tissue a needle passes through is
    # still artery or nerve (what a sonographer outlines), so models learn anatomy from these
    anatomy: np.ndarray | None = None

    @property
    def tissue_labels(self) -> np.ndarray:
        """Anatomy labels under the needle too (`labels` where no needle is drawn)."""
        return self.labels if self.anatomy is None else self.anatomy


def patient_anatomy(scene: str, seed: int, mirror: bool | None = None) -> Anatomy:
    """The anatomy a PhantomSimulator of this scene and seed draws (its seed's stream 0)."""
    return make_anatomy(scene, np.random.default_rng([int(seed), 0]), mirror)


def _pulse_wave(phase: float) -> float:
    """Arterial diameter over one beat, 0..1: fast systolic rise, slower diastolic run-off."""
    p = phase % 1.0
    rise = 0.18
    if p < rise:
        return 0.5 - 0.5 * math.cos(math.pi * p / rise)
    return 0.5 + 0.5 * math.cos(math.pi * (p - rise) / (1.0 - rise))


class PhantomSimulator:
    SCENES = (*ALL_SCENES, *ALIASES)

    def __init__(self, scene: str = "jugular", seed: int = 0, size: tuple[int, int] = (512, 512),
                 depth_mm: float = 40.0, *, probe_width_mm: float = 38.0,
                 frequency_mhz: float | None = None, slide_margin_mm: float = 15.0,
                 max_tilt_deg: float = 15.0,
                 realisations: int = 2, mirror: bool | None = None,
                 anatomy: Anatomy | None = None, geometry: str = "linear") -> None:
        """size is (height, width) in pixels, like a numpy shape. geometry "linear" (a linear
        array, the default) or "curvilinear" (a convex array: sector picture, 5 MHz default)."""
        if scene not in self.SCENES:
            raise ValueError(f"unknown phantom scene {scene!r}; choose one of {self.SCENES}")
        if geometry not in ("linear", "curvilinear"):
            raise ValueError(f"unknown probe geometry {geometry!r}; use linear or curvilinear")
        self.curvilinear = geometry == "curvilinear"
        self.radius_mm = 50.0  # convex array: radius of the face
        self.half_angle = math.radians(30.0)  # and half the sector angle
        if frequency_mhz is None:
            frequency_mhz = 5.0 if self.curvilinear else 10.0
        h, w = int(size[0]), int(size[1])
        if h < 32 or w < 32:
            raise ValueError(f"phantom size {size} too small (min 32x32)")
        self.scene = ALIASES.get(scene, scene)
        self.seed = int(seed)
        self.size = (h, w)
        self.probe_width_mm = float(probe_width_mm)
        self.slide_margin_mm = float(slide_margin_mm)
        self.max_tilt_deg = float(np.clip(max_tilt_deg, 0.0, 30.0))
        self.realisations = int(realisations)
        self.anatomy = anatomy if anatomy is not None else patient_anatomy(
            self.scene, self.seed, mirror)
        self._chains = VeinChains.from_vessel(self.anatomy.vein) if self.anatomy.vein else None
        # controls
        self._depth_mm = float(np.clip(depth_mm, 20.0, 60.0))
        self._frequency = float(frequency_mhz)
        self._pose = Pose()
        self._pressure = 0.0
        self._gain_db = 0.0
        self._dr_db = 78.0
        self._needle: NeedleState | None = None
        self._hr = 72.0
        self._rr = 14.0  # breaths per minute
        self._resp_amp = 0.12  # fraction of vein height gained/lost with breathing
        self._pulse_amp = 0.075  # fractional radius change of the artery per beat
        self._decorr_hz = 0.05  # speckle decorrelation speed
        self._tgc_slope = -1.0  # dB/cm left after TGC: the picture darkens a little with depth
        self._focus_mm: float | None = None
        self._phase0 = float(np.random.default_rng([self.seed, 2]).random())
        # electronic (receiver) noise: this scanner's level at the skin (dB re tissue echo) and
        # how fast the TGC that compensates tissue attenuation lifts it with depth (dB/cm)
        noise_rng = np.random.default_rng([self.seed, 3])
        self._noise_db = float(noise_rng.uniform(-36.0, -28.0))
        self._noise_rise = float(noise_rng.uniform(2.0, 4.0))
        # near-field gain: sonographers turn the top of the TGC down (skin, fat and the first
        # fascia would otherwise glare), so the first few millimetres sit several dB lower
        self._near_db = float(np.random.default_rng([self.seed, 6]).uniform(-9.0, -3.0))
        self._noise_unit: np.ndarray | None = None
        self._phase_ref = (0.0, self._phase0)
        self._last_t = 0.0
        self._lock = threading.Lock()
        self._maps: TissueMaps | None = None
        self._built_for: tuple[float, float] | None = None
        self._pending: tuple[tuple[float, float], TissueMaps] | None = None
        self._builder: threading.Thread | None = None
        self._view_depth = -1.0
        self._view_dirty = True
        # True for live sources: depth / frequency changes rebuild in the background instead
        # of stalling a frame (frames then depend on timing, so generators leave it False)
        self.async_rebuild = False

    # --- controls (plain methods; any thread) -------------------------------------------------
    def set_probe_offset(self, mm: float) -> None:
        m = self.slide_margin_mm
        self._pose = Pose(float(np.clip(mm, -m, m)), self._pose.tilt_deg)

    def set_tilt(self, deg: float) -> None:
        lim = self.max_tilt_deg
        self._pose = Pose(self._pose.offset_mm, float(np.clip(deg, -lim, lim)))

    def set_pressure(self, pressure: float) -> None:
        self._pressure = float(np.clip(pressure, 0.0, 1.0))

    def set_needle(self, depth_mm: float | None, angle_deg: float = 30.0, in_plane: bool = True,
                   x_mm: float = 0.0, **look: Any) -> None:
        """Needle tip depth below the skin in mm (None removes it); angle to the skin surface.
        look: NeedleState's appearance fields (brightness, from_right, gaps, ..); left out, the
        classic phantom needle. An unknown name is a TypeError."""
        if depth_mm is None:
            self._needle = None
        else:
            self._needle = NeedleState(float(np.clip(depth_mm, 0.0, 80.0)), float(angle_deg),
                                       bool(in_plane), float(x_mm), **look)

    def set_gain(self, db: float) -> None:
        self._gain_db = float(np.clip(db, -30.0, 30.0))

    def set_dynamic_range(self, db: float) -> None:
        self._dr_db = float(np.clip(db, 20.0, 100.0))

    def set_depth(self, mm: float) -> None:
        self._depth_mm = float(np.clip(mm, 20.0, 60.0))

    def set_frequency(self, mhz: float) -> None:
        self._frequency = float(np.clip(mhz, 4.0, 18.0))

    def set_tgc(self, slope_db_per_cm: float = -1.0, focus_mm: float | None = None) -> None:
        """Residual gain change with depth after TGC, and the transmit focus depth (None: 45 %
        of the imaging depth)."""
        self._tgc_slope = float(np.clip(slope_db_per_cm, -6.0, 6.0))
        self._focus_mm = None if focus_mm is None else float(focus_mm)
        self._view_dirty = True  # recompute the TGC curve on the next frame

    def set_heart_rate(self, bpm: float) -> None:
        bpm = float(np.clip(bpm, 30.0, 200.0))
        t = self._last_t  # keep the cardiac phase continuous across the change
        self._phase_ref = (t, self._cardiac_phase(t))
        self._hr = bpm

    def reset_time(self) -> None:
        """Forget the clock history: the cardiac phase at t=0 is the patient's own again."""
        self._phase_ref = (0.0, self._phase0)
        self._last_t = 0.0

    def set_respiratory_rate(self, per_min: float) -> None:
        self._rr = float(np.clip(per_min, 4.0, 40.0))

    # --- read-outs -----------------------------------------------------------------------------
    @property
    def pixel_spacing_mm(self) -> float:
        """Of the rendered picture (the last one, for a curvilinear probe)."""
        if self.curvilinear and self._view_depth > 0:
            return self._display_sp
        return self._depth_mm / self.size[0]

    @property
    def depth_mm(self) -> float:
        return self._depth_mm

    @property
    def heart_rate(self) -> float:
        return self._hr

    @property
    def pressure(self) -> float:
        return self._pressure

    @property
    def gain_db(self) -> float:
        return self._gain_db

    @property
    def dynamic_range_db(self) -> float:
        return self._dr_db

    @property
    def probe_offset_mm(self) -> float:
        return self._pose.offset_mm

    @property
    def tilt_deg(self) -> float:
        return self._pose.tilt_deg

    def _cardiac_phase(self, t: float) -> float:
        t0, p0 = self._phase_ref
        return p0 + (t - t0) * self._hr / 60.0

    # --- rendering -----------------------------------------------------------------------------
    def _make_maps(self, depth_mm: float, frequency_mhz: float) -> TissueMaps:
        """The patient's static maps at the pixel spacing of this depth (the slow part)."""
        h, w = self.size
        sp = depth_mm / h
        # tissue a tilted / slid probe can reach, plus a little for pulsation and collapse
        tilt = math.radians(self.max_tilt_deg)
        view_half = w * sp / 2
        if self.curvilinear:
            view_half = (self.radius_mm + depth_mm) * math.sin(self.half_angle)
        half = view_half + self.slide_margin_mm + depth_mm * math.sin(tilt) + 2.0
        deep = depth_mm / math.cos(tilt) + view_half * math.sin(tilt) + 3.0
        grid = Grid(sp, -half, int(math.ceil(2 * half / sp)) + 1, int(math.ceil(deep / sp)))
        return build_tissue(self.anatomy, grid, np.random.default_rng([self.seed, 1]),
                            frequency_mhz, self.realisations)

    def _setup_view(self, depth_mm: float) -> None:
        """Screen geometry for a depth (cheap)."""
        h, w = self.size
        sp = depth_mm / h
        self._view_depth = depth_mm
        # the deformation is smooth: evaluate it every ~0.5 mm on a coarse grid whose nodes
        # sit where cv2.resize samples them, and let resize interpolate
        # (pixel i's centre is i * sp deep / i * sp - W * sp / 2 lateral, as in tissue.Grid)
        self._step = step = int(np.clip(round(0.5 / sp), 2, 8))
        gh, gw = max(2, -(-h // step)), max(2, -(-w // step))
        ys = ((np.arange(gh) + 0.5) * h / gh - 0.5) * sp
        xs = ((np.arange(gw) + 0.5) * w / gw - 0.5) * sp - w * sp / 2
        self._coarse = np.meshgrid(xs, ys)
        # the probe's footprint: columns beyond it stay black like on a scanner
        xcol = np.arange(w) * sp - w * sp / 2
        self._dark_cols = np.abs(xcol) > self.probe_width_mm / 2
        self._display_sp, self._origin_row, self._scan_map = sp, 0.0, None
        if self.curvilinear:
            self._setup_sector(depth_mm, sp)
        # TGC curve: a mild focal-zone gain, a residual slope with depth, the near field down
        depth = np.arange(h) * sp
        focus = 0.45 * depth_mm if self._focus_mm is None else self._focus_mm
        tgc_db = (2.5 * np.exp(-(((depth - focus) / (0.3 * depth_mm)) ** 2))
                  + self._tgc_slope * depth / 10.0 + self._near_db * np.exp(-depth / 6.0))
        self._tgc = np.power(10.0, tgc_db / 20.0).astype(np.float32)[:, None]
        self._noise = self._noise_fields(depth)

    def _noise_fields(self, depth: np.ndarray) -> np.ndarray:
        """NOISE_FIELDS receiver-noise patterns (envelope of band-limited complex Gaussian
        noise, wider than the picture so each frame can take a different lateral window),
        scaled by the noise level at each depth. It is what keeps shadows and the deep field
        from being pure black, and makes deep views grainy. The patterns are made once per
        picture size; a depth or TGC change only rescales them (no hitch while dragging)."""
        h, w = self.size
        if self._noise_unit is None:
            rng = np.random.default_rng([self.seed, 4, h, w])
            iq = rng.standard_normal((NOISE_FIELDS, h, w + NOISE_PAD, 2), dtype=np.float32)
            unit = np.empty((NOISE_FIELDS, h, w + NOISE_PAD), np.float32)
            for k in range(NOISE_FIELDS):  # the receive filter: about a pixel of correlation
                re, im = (cv2.GaussianBlur(iq[k, ..., c], (0, 0), sigmaX=1.2, sigmaY=0.8)
                          for c in (0, 1))
                unit[k] = cv2.magnitude(re, im)
            unit *= np.float32(1.0 / np.sqrt(np.mean(unit[0] ** 2)))  # unit RMS
            self._noise_unit = unit
        level_db = self._noise_db + self._noise_rise * depth / 10.0
        return self._noise_unit * np.power(10.0, level_db / 20.0).astype(np.float32)[None, :, None]

    def _noise_window(self, t: float) -> np.ndarray:
        """This frame's receiver noise: fresh-looking every frame, the same for the same t."""
        rng = np.random.default_rng([self.seed, 5, int(round(t * 1e4))])
        k, off = int(rng.integers(NOISE_FIELDS)), int(rng.integers(NOISE_PAD + 1))
        return self._noise[k, :, off:off + self.size[1]]

    def _setup_sector(self, depth_mm: float, sp: float) -> None:
        """Convex array: the rendered raster is (beam angle, range); beams fan out from a centre
        `radius_mm` above the skin, and a scan conversion draws the sector picture."""
        h, w = self.size
        big_r, phi = self.radius_mm, self.half_angle
        xs, ys = self._coarse
        theta = xs / (w * sp / 2) * phi
        self._coarse = ((big_r + ys) * np.sin(theta), (big_r + ys) * np.cos(theta) - big_r)
        self._dark_cols = np.zeros(w, bool)
        y_min = big_r * math.cos(phi) - big_r  # the face's ends lie above its centre
        d_sp = max((depth_mm - y_min) / h, 2 * (big_r + depth_mm) * math.sin(phi) / w)
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        x_mm, y_mm = (u - w / 2) * d_sp, y_min + v * d_sp
        r = np.hypot(x_mm, y_mm + big_r) - big_r
        theta = np.arctan2(x_mm, y_mm + big_r)
        col = w / 2 + theta / phi * (w / 2)
        row = r / sp
        outside = (np.abs(theta) > phi) | (r < 0) | (r > depth_mm)
        col[outside], row[outside] = -10.0, -10.0
        self._scan_map = np.dstack([col, row]).astype(np.float32)
        self._display_sp, self._origin_row = d_sp, -y_min / d_sp

    def _ensure_maps(self) -> TissueMaps:
        want = (self._depth_mm, self._frequency)
        if self._pending is not None:  # a background rebuild finished: swap it in
            self._built_for, self._maps = self._pending
            self._pending = None
        if self._maps is None or (self._built_for != want and not self.async_rebuild):
            self._maps, self._built_for = self._make_maps(*want), want
        elif self._built_for != want and (self._builder is None
                                          or not self._builder.is_alive()):
            # live use: keep showing the old maps (rescaled) while the new ones are built,
            # so a depth change never freezes the picture
            def build(want=want) -> None:
                try:
                    self._pending = (want, self._make_maps(*want))
                except Exception:  # keep the old picture rather than retry every frame
                    self._depth_mm, self._frequency = self._built_for


            self._builder = threading.Thread(target=build, name="phantom-rebuild", daemon=True)
            self._builder.start()
        if self._view_dirty or self._view_depth != self._depth_mm:
            self._view_dirty = False
            self._setup_view(self._depth_mm)
        return self._maps

    def _vessel_state(self, t: float) -> tuple[float, float, float]:
        """(pulsation s, vein collapse k, cardiac phase) at time t."""
        phase = self._cardiac_phase(t)
        pulse = self._pulse_amp * _pulse_wave(phase)
        breath = self._resp_amp * math.sin(2 * math.pi * t * self._rr / 60.0)
        k = 0.97 * self._pressure ** 0.8 + breath * (1.0 - self._pressure)
        return pulse, float(np.clip(k, -0.25, 0.97)), phase

    def render(self, t: float) -> PhantomFrame:
        with self._lock:
            return self._render(float(t))

    def _render(self, t: float) -> PhantomFrame:
        maps = self._ensure_maps()
        self._last_t = t
        h, w = self.size
        sp = self._view_depth / h  # screen mm per pixel
        msp = maps.grid.spacing_mm  # tissue map mm per pixel (differs while rebuilding)
        pose, gain, dr, needle = self._pose, self._gain_db, self._dr_db, self._needle
        pulse, k, phase = self._vessel_state(t)

        xs, ys = self._coarse
        xt, yt = inverse_map(xs, ys, pose, self.anatomy.artery, pulse, self._chains, k,
                             smooth_px=1.2 / (self._step * sp))
        coarse = np.dstack([(xt - maps.grid.x0_mm) / msp, yt / msp]).astype(np.float32)
        m = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)

        spk = cv2.remap(maps.speckle, m, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        add = cv2.remap(maps.additive, m, None, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT)
        labels = cv2.remap(maps.labels, m, None, cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT)
        # two speckle realisations mixed on a slow circle (slow decorrelation, statistics stay
        # fully developed); the two orthogonal mixes are averaged like the scanner's two-look
        # spatial compounding, which softens speckle the way real images look
        th = 2 * math.pi * self._decorr_hz * t
        c, s = math.cos(th), math.sin(th)
        a0, a1, a2, a3 = cv2.split(spk)
        env = cv2.magnitude(cv2.addWeighted(a0, c, a2, s, 0.0), cv2.addWeighted(a1, c, a3, s, 0.0))
        if self.realisations > 1:
            env2 = cv2.magnitude(cv2.addWeighted(a2, c, a0, -s, 0.0),
                                 cv2.addWeighted(a3, c, a1, -s, 0.0))
            env = cv2.addWeighted(env, 0.5, env2, 0.5, 0.0)
        lin = cv2.add(env, add)
        lin += self._noise_window(t)
        lin *= self._tgc
        d_sp, half_face = sp, self.probe_width_mm / 2
        if self._scan_map is not None:  # sector picture from the (angle, range) raster
            lin = cv2.remap(lin, self._scan_map, None, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
            labels = cv2.remap(labels, self._scan_map, None, cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT)
            d_sp, half_face = self._display_sp, self.radius_mm * math.sin(self.half_angle)
        tip, anatomy = None, None
        if needle is not None:
            anatomy = labels.copy()
            tip = draw_needle(lin, labels, needle, d_sp, half_face, self._origin_row)
        floor = 10.0 ** (-(_TISSUE_GREY_DB + gain) / 20.0)
        cv2.log(cv2.add(lin, floor), lin)
        scale = 255.0 / dr
        image = cv2.convertScaleAbs(lin, alpha=scale * _DB, beta=scale * (_TISSUE_GREY_DB + gain))
        image[:, self._dark_cols] = 0
        labels[:, self._dark_cols] = 0
        if anatomy is not None:
            anatomy[:, self._dark_cols] = 0
        if tip is not None and not (0 <= tip[0] < w and 0 <= tip[1] < h):
            tip = None  # tip outside the picture: the scanner cannot show it
        return PhantomFrame(image, labels, tip, d_sp, t, self.scene,
                            {"pressure": self._pressure, "heart_rate": self._hr,
                             "cardiac_phase": phase % 1.0, "vein_collapse": k, "pulse": pulse,
                             "gain_db": gain, "depth_mm": self._view_depth, "needle": needle,
                             "maps_depth_mm": self._built_for[0] if self._built_for else None},
                            anatomy)
