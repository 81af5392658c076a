"""Deterministic stream of labelled phantom frames for training: one new "patient" per sample.

Sample i depends only on (scene, seed, i), so a data set is reproducible and can be split or
resumed by index. Each sample varies what varies between patients and scans: anatomy (incl. the
IJV overlapping the artery), side, imaging depth, probe frequency, gain, dynamic range, probe
pressure, slide and tilt, time in the cardiac and breathing cycle, and in half the samples a
needle: in-plane at 15-70 degrees from either side, 5-45 mm deep, or out-of-plane, each with its
own look (brightness, reverberation, dropouts, off-plane fade, bend, tip; comet tail or cut).
A share of patients (VESSEL_FREE_RATE) is scanned where no vessel is in the plane, so a model
learns that a frame can have none (the live phantom always shows its vessels). On request
(`aimed`, e.g. AIM_RATE) a share of the in-plane needles is aimed so its tip lies inside a
nerve, artery or vein: frames a model must still outline with a needle in them (random needles
rarely reach one). Off by default, so earlier data sets stay as they were.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from sonoguide.phantom.anatomy import without_vessels
from sonoguide.phantom.labels import ARTERY, NERVE, VEIN
from sonoguide.phantom.needle import NeedleState, tip_mm
from sonoguide.phantom.simulator import PhantomFrame, PhantomSimulator, patient_anatomy

DEPTH_RANGE_MM = {"jugular": (30.0, 50.0), "supraclavicular": (30.0, 50.0),
                  "plexus": (30.0, 50.0), "interscalene": (25.0, 40.0), "axillary": (20.0, 40.0),
                  "infraclavicular": (35.0, 55.0), "elbow": (20.0, 35.0),
                  "femoral": (25.0, 45.0), "popliteal": (30.0, 50.0)}
VESSEL_FREE_RATE = 0.15  # share of patients seen with no vessel in the plane
NEEDLE_RATE = 0.5  # share of samples with a needle (3 in 4 of them in-plane)
AIM_RATE = 0.35  # a suggested share of in-plane needles aimed into a structure (`aimed`)
_AIM_ANGLES = (15.0, 70.0)  # the in-plane range


def _patient(scene: str, seed: int, patient: int, size: tuple[int, int]) -> PhantomSimulator:
    """The simulator for one patient: anatomy, imaging depth, probe and frequency."""
    rng = np.random.default_rng([int(seed), int(patient), zlib.crc32(scene.encode())])
    lo, hi = DEPTH_RANGE_MM.get(scene, (30.0, 50.0))
    sim_seed = int(rng.integers(1 << 31))
    depth, width = float(rng.uniform(lo, hi)), float(rng.choice([38.0, 38.0, 46.0, 60.0]))
    freq = float(rng.uniform(7.0, 13.0))
    anatomy = None
    if rng.random() < VESSEL_FREE_RATE:
        # the same anatomy the simulator would draw for this seed, minus its vessels
        anatomy = without_vessels(patient_anatomy(scene, sim_seed), rng)
    return PhantomSimulator(scene, seed=sim_seed, size=size, depth_mm=depth,
                            probe_width_mm=width, frequency_mhz=freq, slide_margin_mm=4.0,
                            max_tilt_deg=10.0, realisations=1, anatomy=anatomy)


def _scan(sim: PhantomSimulator, scene: str, seed: int, index: int, aimed: float = 0.0
          ) -> PhantomFrame:
    """One frame of a patient with this sample's own probe handling and settings."""
    key = [int(seed), int(index), zlib.crc32(scene.encode())]
    rng = np.random.default_rng([*key, 1])
    sim.reset_time()
    sim.set_probe_offset(float(rng.uniform(-4.0, 4.0)))
    sim.set_tilt(float(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)))
    # most scans are light-touch; some compress hard (the vein then nearly vanishes)
    sim.set_pressure(float(rng.choice([0.0, rng.uniform(0.0, 0.4), rng.uniform(0.4, 1.0)],
                                      p=[0.4, 0.4, 0.2])))
    sim.set_gain(float(rng.normal(0.0, 4.0)))
    sim.set_dynamic_range(float(rng.uniform(55.0, 85.0)))
    sim.set_tgc(float(rng.uniform(-2.5, 1.0)), float(rng.uniform(0.3, 0.7)) * sim.depth_mm)
    sim.set_heart_rate(float(rng.uniform(50.0, 120.0)))
    t = float(rng.uniform(0.0, 10.0))
    _set_needle(sim, np.random.default_rng([*key, 2]), t, np.random.default_rng([*key, 3]),
                aimed)
    return sim.render(t)


def _aim(sim: PhantomSimulator, t: float, entry_mm: float, from_right: bool,
         rng: np.random.Generator) -> tuple[float, float, bool] | None:
    """(tip depth, angle, from_right) of an in-plane needle whose tip lies on a random pixel of
    a random structure of the needle-free frame at time t (the other side when this one needs
    an angle outside 15-70 degrees), or None when the frame has no structure to aim at."""
    sim.set_needle(None)
    labels = sim.render(t).labels
    codes = [c for c in (NERVE, ARTERY, VEIN) if (labels == c).any()]
    if not codes:
        return None
    ys, xs = np.nonzero(labels == codes[int(rng.integers(len(codes)))])
    i = int(rng.integers(len(xs)))
    sp, w = sim.pixel_spacing_mm, labels.shape[1]
    tx, ty = float(xs[i]) * sp - w * sp / 2, float(ys[i]) * sp  # screen mm (linear probe)
    half = sim.probe_width_mm / 2
    for right in (from_right, not from_right):
        # a zero-depth needle's tip is its skin puncture (phantom.needle places it)
        ex, _ = tip_mm(NeedleState(0.0, 45.0, from_right=right, entry_offset_mm=entry_mm), half)
        run = ex - tx if right else tx - ex  # towards the probe's centre
        if run > 0 and _AIM_ANGLES[0] <= (angle := float(np.degrees(np.arctan2(ty, run)))) \
                <= _AIM_ANGLES[1]:
            return ty, angle, right
    return None


def _set_needle(sim: PhantomSimulator, rng: np.random.Generator, t: float,
                aim_rng: np.random.Generator, aimed: float = 0.0) -> None:
    """This sample's needle, or none (1 - NEEDLE_RATE). Its own random stream, and every
    parameter is drawn every time, so the draws stay aligned whatever the branches; aiming has
    a stream of its own (aim_rng) for the same reason."""
    present, in_plane = rng.random() < NEEDLE_RATE, rng.random() < 0.75
    depth, angle = float(rng.uniform(5.0, 45.0)), float(rng.uniform(15.0, 70.0))
    x_mm, from_right = float(rng.uniform(-10.0, 10.0)), bool(rng.random() < 0.5)
    # skin puncture 0-15 mm beyond the probe's end, but near enough for the tip to lie under
    # the probe (farther out, a steep shallow needle would never reach the picture)
    run = depth / np.tan(np.deg2rad(angle))
    entry = float(rng.uniform(0.0, min(15.0, 0.9 * run)))
    brightness, tip_gain = float(rng.uniform(0.2, 1.0)), float(rng.uniform(0.8, 1.6))
    reverb = (int(rng.integers(0, 7)), float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.05, 0.4)))
    n_gaps = int(rng.choice(4, p=[0.55, 0.2, 0.15, 0.1]))
    shaft = depth / np.sin(np.deg2rad(angle))
    gaps = tuple((float(rng.uniform(1.0, max(1.5, min(shaft, 35.0)))),
                  float(rng.uniform(2.0, 8.0))) for _ in range(3))[:n_gaps]
    elevation = float(rng.uniform(0.5, 2.5)) if rng.random() < 0.25 else 0.0
    bend = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0))
    bend = bend if rng.random() < 0.3 else 0.0
    tail, cut = int(rng.integers(0, 7)), float(rng.uniform(1.0, 3.0))
    cut = cut if rng.random() < 0.3 else 0.0
    aim = aim_rng.random() < aimed
    if present and in_plane and aim and not sim.curvilinear:
        depth, angle, from_right = _aim(sim, t, entry, from_right, aim_rng) or (
            depth, angle, from_right)
    if not present:
        sim.set_needle(None)
    elif in_plane:
        sim.set_needle(depth, angle, True, brightness=brightness, from_right=from_right,
                       entry_offset_mm=entry, reverb_count=reverb[0], reverb_spacing_mm=reverb[1],
                       reverb_decay=reverb[2], gaps=gaps, elevation_mm=elevation, bend_mm=bend,
                       tip_gain=tip_gain)
    else:
        sim.set_needle(depth, angle, False, x_mm, brightness=brightness, from_right=from_right,
                       tail_count=tail, cut_mm=cut)


def sample(scene: str, seed: int, index: int, size: tuple[int, int] = (256, 256),
           frames_per_patient: int = 1, aimed: float = 0.0) -> PhantomFrame:
    """Sample `index` of the stream (scene, seed); the same arguments give the same frame."""
    fpp = max(1, int(frames_per_patient))
    return _scan(_patient(scene, seed, index // fpp, size), scene, seed, index, aimed)


def generate(scene: str, n: int, seed: int, size: tuple[int, int] = (256, 256),
             start: int = 0, frames_per_patient: int = 1, aimed: float = 0.0
             ) -> Iterator[PhantomFrame]:
    """n labelled frames, deterministic in (scene, seed, index, aimed).

    frames_per_patient=1 (default) makes every sample a new patient; k > 1 scans each patient
    k times with different settings, which is several times faster (building a patient costs
    far more than rendering a frame).
    """
    if scene not in PhantomSimulator.SCENES:
        raise ValueError(f"unknown phantom scene {scene!r}; choose one of "
                         f"{PhantomSimulator.SCENES}")
    fpp = max(1, int(frames_per_patient))
    sim, current = None, -1
    for i in range(start, start + int(n)):
        if i // fpp != current:
            current = i // fpp
            sim = _patient(scene, seed, current, size)
        yield _scan(sim, scene, seed, i, aimed)
