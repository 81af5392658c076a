"""Artery or vein by behaviour: pulse found by its spectral peak, compression only while the
other vessel holds, identities kept across missed frames, 'cannot tell' without evidence, and
the caution when the model's class contradicts the behaviour."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from sonoguide.pipeline.frames import Structure
from sonoguide.pipeline.vessel_behaviour import (
    BehaviourReport,
    VesselBehaviour,
    VesselTracker,
    pulsatility,
)

FPS = 30.0
VEIN_XY, ARTERY_XY = (200.0, 150.0), (320.0, 260.0)


def _times(seconds: float, seed: int = 0, drop: float = 0.1) -> np.ndarray:
    """Frame times at ~30 fps, jittered, with some frames missing (as the model's results)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds, 1.0 / FPS) + rng.normal(0.0, 0.002, int(math.ceil(seconds * FPS)))
    keep = rng.random(t.size) >= drop
    keep[0] = True
    return np.sort(t[keep])


def _vessel(name: str, xy: tuple[float, float], area: float) -> Structure:
    r = math.sqrt(area / math.pi)
    th = np.linspace(0.0, 2 * math.pi, 24, endpoint=False)
    contour = np.stack([xy[0] + r * np.cos(th), xy[1] + r * np.sin(th)], 1).astype(np.float32)
    return Structure(name, contour, float(area), xy, 0.98, area_mm2=float(area) * 0.0061)


Area = Callable[[float], float]


def _feed(vein: Area | None, artery: Area | None, seconds: float = 10.0, *,
          vein_name: str = "vein", artery_name: str = "artery", seed: int = 0,
          behaviour: VesselBehaviour | None = None) -> tuple[VesselBehaviour, BehaviourReport]:
    """Two vessels whose areas follow the given functions of time; a function returning 0
    leaves the vessel out of that frame."""
    behaviour = behaviour or VesselBehaviour()
    report = behaviour.report
    noise = np.random.default_rng(seed + 1)
    for t in _times(seconds, seed):
        found = []
        for fn, name, xy in ((vein, vein_name, VEIN_XY), (artery, artery_name, ARTERY_XY)):
            if fn is not None and (area := fn(float(t))) > 0:
                found.append(_vessel(name, xy, area * (1 + noise.normal(0.0, 0.01))))
        report = behaviour.update(found, float(t))
    return behaviour, report


def _pulsing(bpm: float, base: float = 7000.0, depth: float = 0.14) -> Area:
    return lambda t: base * (1.0 + depth * (0.5 - 0.5 * math.cos(2 * math.pi * bpm / 60 * t)))


def _steady(base: float = 14000.0) -> Area:
    return lambda t: base * (1.0 + 0.08 * math.sin(2 * math.pi * 0.23 * t))  # breathing


def _pressed(base: float = 14000.0, low: float = 0.3, seconds: float = 10.0) -> Area:
    """Pressure 0 -> peak -> 0 over the run: the area falls to `low` of its level and back."""
    return lambda t: base * (1.0 - (1.0 - low) * max(0.0, 1.0 - abs(2 * t / seconds - 1)))


def _by_name(report: BehaviourReport, name: str):
    found = [v for v in report.vessels if v.class_name == name]
    assert len(found) == 1, report.vessels
    return found[0]


# --- pulsatility -------------------------------------------------------------------------------
def test_pulse_at_1_2_hz_is_found_with_its_rate() -> None:
    t = _times(6.0, seed=3)
    rng = np.random.default_rng(4)
    area = 5000.0 * (1 + 0.07 * np.sin(2 * np.pi * 1.2 * t)) + rng.normal(0, 25, t.size)
    got = pulsatility(t, area)
    assert got.pulses is True
    assert got.rate_bpm == pytest.approx(72.0, abs=2.0)


def test_flat_series_does_not_pulse() -> None:
    t = _times(6.0, seed=5)
    area = 5000.0 + np.random.default_rng(6).normal(0, 25, t.size)
    assert pulsatility(t, area).pulses is False


def test_slow_changes_are_not_a_pulse() -> None:
    """Breathing (0.23 Hz) and a pressure ramp sit below the heart-rate band."""
    t = _times(6.0, seed=7)
    area = 9000.0 * (1 + 0.12 * np.sin(2 * np.pi * 0.23 * t)) * (1 - 0.1 * t)
    assert pulsatility(t, area).pulses is False


def test_too_short_too_sparse_or_too_noisy_cannot_tell() -> None:
    t = _times(2.0)
    assert pulsatility(t, np.full(t.size, 5000.0)).pulses is None  # 2 s: too short
    sparse = np.arange(0.0, 6.0, 0.25)  # 4 results/s: cannot see 3 Hz
    assert pulsatility(sparse, np.full(sparse.size, 5000.0)).pulses is None
    t = _times(6.0, seed=8)
    noisy = 5000.0 * (1 + np.random.default_rng(9).normal(0, 0.08, t.size))
    assert pulsatility(t, noisy).pulses is None


# --- compressibility ---------------------------------------------------------------------------
def test_vein_that_loses_70_percent_while_artery_holds_compresses() -> None:
    _, report = _feed(_pressed(low=0.3), _pulsing(80))
    vein, artery = _by_name(report, "vein"), _by_name(report, "artery")
    assert vein.compresses is True and vein.behaves_as == "vein"
    assert vein.lowest_ratio is not None and vein.lowest_ratio < 0.4
    assert artery.compresses is False and artery.behaves_as == "artery"
    assert artery.pulses is True and artery.heart_rate_bpm == pytest.approx(80, abs=3)
    assert "compresses" in vein.tags and "pulses" in artery.tags
    assert report.cautions == ()


def test_both_shrinking_together_is_not_compression() -> None:
    """Probe lifted or zoomed out: every vessel shrinks, none held."""
    def shrink(t: float) -> float:
        return 1.0 - 0.7 * max(0.0, 1.0 - abs(2 * t / 10.0 - 1))

    _, report = _feed(lambda t: 14000 * shrink(t), lambda t: _pulsing(80)(t) * shrink(t))
    assert all(v.compresses is None for v in report.vessels)
    assert _by_name(report, "vein").behaves_as is None


def test_no_pressure_cannot_tell_compressibility() -> None:
    _, report = _feed(_steady(), _pulsing(60))
    vein, artery = _by_name(report, "vein"), _by_name(report, "artery")
    assert vein.compresses is None and artery.compresses is None
    assert vein.pulses is False and vein.behaves_as is None  # not a guess
    assert artery.pulses is True and artery.behaves_as == "artery"
    assert report.cautions == ()


def test_light_pressure_that_does_not_halve_the_vein_cannot_tell() -> None:
    _, report = _feed(_pressed(low=0.65), _pulsing(100))
    assert all(v.compresses is None for v in report.vessels)


def test_vein_pressed_out_of_sight_still_compresses() -> None:
    """Under firm pressure the vein becomes a slit the model no longer outlines."""
    squash = _pressed(low=0.0)
    _, report = _feed(lambda t: squash(t) if squash(t) > 3000 else 0.0, _pulsing(70))
    assert _by_name(report, "vein").compresses is True
    assert _by_name(report, "artery").compresses is False


# --- identity ----------------------------------------------------------------------------------
def test_identity_survives_a_missed_frame_and_a_new_vessel_gets_a_new_id() -> None:
    tracker = VesselTracker()
    vein, artery = _vessel("vein", VEIN_XY, 14000), _vessel("artery", ARTERY_XY, 7000)
    first = tracker.update([vein, artery], 0.0)
    assert tracker.update([artery], 1 / 30) == [first[1]]  # the vein missed one frame
    moved = _vessel("vein", (VEIN_XY[0] + 6, VEIN_XY[1] + 4), 12500)
    assert tracker.update([moved, artery], 2 / 30) == first
    flicker = _vessel("artery", VEIN_XY, 13000)  # the model calls it artery for a frame
    assert tracker.update([artery, flicker], 3 / 30) == [first[1], first[0]]
    other = _vessel("vein", (60.0, 400.0), 3000)
    ids = tracker.update([vein, artery, other], 4 / 30)
    assert ids[:2] == first and ids[2] not in first


def test_identity_is_forgotten_after_a_long_absence_or_a_jump_back_in_time() -> None:
    tracker = VesselTracker(max_missing_s=1.0)
    vein, artery = _vessel("vein", VEIN_XY, 14000), _vessel("artery", ARTERY_XY, 7000)
    first = tracker.update([vein, artery], 0.0)
    tracker.update([artery], 1.5)
    assert tracker.update([vein, artery], 1.6)[0] not in first
    tracker.update([vein, artery], 0.5)  # seek back: start afresh
    assert len(tracker.tracks) == 2


def test_more_vessels_than_tracks_drops_the_extra_and_keeps_the_rest() -> None:
    tracker = VesselTracker(max_tracks=2)
    vein, artery = _vessel("vein", VEIN_XY, 14000), _vessel("artery", ARTERY_XY, 7000)
    first = tracker.update([vein, artery], 0.0)
    ids = tracker.update([vein, artery, _vessel("vein", (60.0, 400.0), 3000)], 1 / 30)
    assert ids == [*first, None] and len(tracker.tracks) == 2


# --- caution -----------------------------------------------------------------------------------
def test_caution_when_the_vein_pulses_and_never_compresses() -> None:
    """The model swapped them: its 'vein' pulses; nothing is pressed."""
    _, report = _feed(_steady(), _pulsing(90), vein_name="artery", artery_name="vein")
    called_vein = _by_name(report, "vein")
    assert called_vein.pulses is True and called_vein.behaves_as == "artery"
    assert called_vein.caution is not None and "pulses" in called_vein.caution
    assert len(report.cautions) == 1


def test_caution_when_pressure_flattens_the_called_artery_but_not_the_called_vein() -> None:
    _, report = _feed(_pressed(low=0.3), _pulsing(75), vein_name="artery", artery_name="vein")
    assert "compress" in _by_name(report, "artery").caution
    assert "does not compress" in _by_name(report, "vein").caution


def test_report_finds_a_drawn_structure_by_index_or_position() -> None:
    _, report = _feed(_pressed(low=0.3), _pulsing(80), seconds=6.0)
    moved = _vessel("vein", (VEIN_XY[0] + 5, VEIN_XY[1]), 9000)
    assert report.for_structure(moved) is _by_name(report, "vein")
    assert report.for_structure(_vessel("vein", (450.0, 450.0), 9000)) is None


# --- one phantom run ---------------------------------------------------------------------------
def test_phantom_vein_compresses_and_artery_pulses() -> None:
    """A few seconds of a phantom patient at 12 frames/s (enough for a 3 Hz band), truth
    labels as structures, the probe pressed and released."""
    from sonoguide.phantom.labels import ARTERY, VEIN
    from sonoguide.phantom.simulator import PhantomSimulator
    from sonoguide.pipeline.vessel_behaviour_eval import pressure_at, truth_structures

    sim = PhantomSimulator("jugular", seed=11, size=(256, 256))
    sim.set_heart_rate(84)
    behaviour = VesselBehaviour()
    seconds = 7.0
    for k in range(int(seconds * 12)):
        t = k / 12.0
        sim.set_pressure(pressure_at(t, seconds, 0.8))
        frame = sim.render(t)
        behaviour.update(truth_structures(frame.labels, frame.pixel_spacing_mm,
                                          {ARTERY: "artery", VEIN: "vein"}), t)
    vein, artery = _by_name(behaviour.report, "vein"), _by_name(behaviour.report, "artery")
    assert vein.compresses is True and vein.behaves_as == "vein"
    assert artery.behaves_as == "artery" and artery.pulses is True
    assert artery.heart_rate_bpm == pytest.approx(84, abs=4)
    assert behaviour.report.cautions == ()
