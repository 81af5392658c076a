"""Deterministic stream of labelled phantom frames for training: one new "patient" per sample.

Sample i depends only on (scene, seed, i), so a data set is reproducible and can be split or
resumed by index. Each sample varies what varies between patients and scans: anatomy (incl. the
IJV overlapping the artery), side, imaging depth, probe frequency, gain, dynamic range, probe
pressure, slide and tilt, time in the cardiac and breathing cycle, and sometimes a needle.
A share of patients (VESSEL_FREE_RATE) is scanned where no vessel is in the plane, so a model
learns that a frame can have none (the live phantom always shows its vessels).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from sonoguide.phantom.anatomy import without_vessels
from sonoguide.phantom.simulator import PhantomFrame, PhantomSimulator, patient_anatomy

DEPTH_RANGE_MM = {"jugular": (30.0, 50.0), "supraclavicular": (30.0, 50.0),
                  "plexus": (30.0, 50.0), "interscalene": (25.0, 40.0), "axillary": (20.0, 40.0),
                  "infraclavicular": (35.0, 55.0), "elbow": (20.0, 35.0),
                  "femoral": (25.0, 45.0), "popliteal": (30.0, 50.0)}
VESSEL_FREE_RATE = 0.15  # share of patients seen with no vessel in the plane


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


def _scan(sim: PhantomSimulator, scene: str, seed: int, index: int) -> PhantomFrame:
    """One frame of a patient with this sample's own probe handling and settings."""
    rng = np.random.default_rng([int(seed), int(index), zlib.crc32(scene.encode()), 1])
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
    if rng.random() < 0.3:
        sim.set_needle(float(rng.uniform(5.0, 30.0)), float(rng.uniform(15.0, 50.0)),
                       bool(rng.random() < 0.75), float(rng.uniform(-10.0, 10.0)))
    else:
        sim.set_needle(None)
    return sim.render(float(rng.uniform(0.0, 10.0)))


def sample(scene: str, seed: int, index: int, size: tuple[int, int] = (256, 256),
           frames_per_patient: int = 1) -> PhantomFrame:
    """Sample `index` of the stream (scene, seed); the same arguments give the same frame."""
    fpp = max(1, int(frames_per_patient))
    return _scan(_patient(scene, seed, index // fpp, size), scene, seed, index)


def generate(scene: str, n: int, seed: int, size: tuple[int, int] = (256, 256),
             start: int = 0, frames_per_patient: int = 1) -> Iterator[PhantomFrame]:
    """n labelled frames, deterministic in (scene, seed, index).

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
        yield _scan(sim, scene, seed, i)
