"""Artery or vein, by behaviour: per tracked vessel, does it pulse, does it compress?

One frame cannot tell a vein from an artery; a few seconds can. A vein flattens under probe
pressure that leaves the artery round; an artery's cross-section swells with every beat.

- `VesselTracker` keeps an identity per vessel across the model's results (nearest centroid,
  gated by the vessel's size, a missed frame or a flicker of class tolerated) and a short area
  history per identity.
- `VesselBehaviour` feeds it and judges each identity over the last seconds:
  * pulses: a spectral peak of its area (relative to its own slow level) at 0.7-3 Hz (42-180
    bpm), clearly above the band's noise and large enough to be an arterial pulse; the peak
    gives the heart rate;
  * compresses: its area falls below half of its uncompressed level, for a moment, while
    another tracked vessel keeps its own area (probe pressure, not a lifted probe or a zoom);
    True for the one that fell, False for the one that held;
  * each is None ("cannot tell") until the evidence is there: too few or too uneven samples,
    a noisy series, or no pressure that compressed anything.
  A `caution` is raised when the behaviour contradicts the model's class (a "vein" that pulses
  like an artery or does not compress under pressure that compresses the other vessel; an
  "artery" that compresses).

Qt-free, numpy only; use from one thread (the session's show(), which sees each new result).
Figures on held-out phantom runs: python -m sonoguide.pipeline.vessel_behaviour_eval
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sonoguide.pipeline.frames import Structure

VESSEL_CLASSES = ("vein", "artery", "vessel")  # the jugular model's, and the plexus model's
ARTERY, VEIN = "artery", "vein"


@dataclass(frozen=True)
class VesselSample:
    """One sighting of a tracked vessel."""

    t: float  # capture time of the analysed frame (s)
    area: float  # mm^2 where the frame's scale is known, else full-frame px (see unit)
    area_px: float  # full-frame px (what the matching gate uses, with the centroid)
    centroid: tuple[float, float]  # x, y full-frame px
    class_name: str  # the model's class on this frame
    confidence: float


class VesselTrack:
    """One vessel's identity and its recent sightings (oldest first)."""

    def __init__(self, track_id: int, history_s: float) -> None:
        self.id = track_id
        self.history_s = history_s
        self.samples: collections.deque[VesselSample] = collections.deque()
        self.first_t = math.inf

    @property
    def last(self) -> VesselSample:
        return self.samples[-1]

    @property
    def radius_px(self) -> float:
        return math.sqrt(max(self.last.area_px, 1.0) / math.pi)

    def add(self, sample: VesselSample) -> None:
        self.first_t = min(self.first_t, sample.t)
        self.samples.append(sample)
        while self.samples and self.samples[0].t < sample.t - self.history_s:
            self.samples.popleft()

    def in_window(self, t0: float) -> list[VesselSample]:
        return [s for s in self.samples if s.t >= t0]

    def class_name(self, t0: float = -math.inf) -> str:
        """The model's majority class over the sightings since t0 (it may flicker)."""
        names = collections.Counter(s.class_name for s in self.samples if s.t >= t0)
        return names.most_common(1)[0][0] if names else self.last.class_name


class VesselTracker:
    """An identity per vessel across frames.

    Each new result's vessels are matched greedily, cheapest first, to the live tracks: the
    cost is the centroid distance in units of the larger radius, plus a size-change and a
    class-change term. A match must lie within `gate` radii (plus `slack_px` for probe motion
    between results) and within a factor `max_area_change` of the last area, so a vessel that
    flattens over a few frames keeps its identity while a different vessel does not take it.
    A track survives `max_missing_s` without a sighting (a missed frame, a vein pressed flat);
    an unmatched vessel starts a new identity. Time running backwards or a gap over
    `reset_gap_s` (seek, source switch) starts afresh.
    """

    def __init__(self, classes: Sequence[str] = VESSEL_CLASSES, *, history_s: float = 10.0,
                 max_missing_s: float = 2.0, gate: float = 1.0, slack_px: float = 12.0,
                 max_area_change: float = 4.0, class_change_cost: float = 0.3,
                 reset_gap_s: float = 3.0, max_tracks: int = 12) -> None:
        self.classes = tuple(classes)
        self.history_s = history_s
        self.max_missing_s = max_missing_s
        self.gate = gate
        self.slack_px = slack_px
        self.max_area_change = max_area_change
        self.class_change_cost = class_change_cost
        self.reset_gap_s = reset_gap_s
        self.max_tracks = max_tracks
        self.tracks: dict[int, VesselTrack] = {}
        self.times: collections.deque[float] = collections.deque()  # every update, kept
        self.unit: str | None = None  # "mm2" or "px"
        self._next_id = 1
        self.last_t: float | None = None

    def reset(self) -> None:
        self.tracks.clear()
        self.times.clear()
        self.unit = None
        self.last_t = None

    def update(self, structures: Iterable[Structure], t: float) -> list[int | None]:
        """Match this result's structures to tracks; returns the track id of each structure
        given (None for a structure of another class, e.g. a nerve)."""
        structures = list(structures)
        if self.last_t is not None and not 0.0 <= t - self.last_t <= self.reset_gap_s:
            self.reset()
        vessels = [i for i, s in enumerate(structures) if s.class_name in self.classes]
        unit = "mm2" if vessels and all(structures[i].area_mm2 is not None
                                        for i in vessels) else "px"
        if vessels and self.unit is not None and unit != self.unit:
            self.reset()  # a calibration arrived or left: one series never mixes units
        if vessels:
            self.unit = unit
        self.last_t = t
        self.times.append(t)
        while self.times and self.times[0] < t - self.history_s:
            self.times.popleft()
        for tid in [tid for tid, tr in self.tracks.items()
                    if t - tr.last.t > self.max_missing_s]:
            del self.tracks[tid]

        pairs: list[tuple[float, int, int]] = []
        for i in vessels:
            s = structures[i]
            r_s = math.sqrt(max(s.area_px, 1.0) / math.pi)
            for tid, tr in self.tracks.items():
                last = tr.last
                d = math.hypot(s.centroid[0] - last.centroid[0], s.centroid[1] - last.centroid[1])
                r = max(r_s, tr.radius_px)
                change = max(s.area_px, 1.0) / max(last.area_px, 1.0)
                if d > self.gate * r + self.slack_px or not (
                        1.0 / self.max_area_change <= change <= self.max_area_change):
                    continue
                cost = d / r + 0.5 * abs(math.log(change))
                if tr.class_name() != s.class_name:
                    cost += self.class_change_cost
                pairs.append((cost, i, tid))
        pairs.sort()
        ids: list[int | None] = [None] * len(structures)
        taken: set[int] = set()
        for _, i, tid in pairs:
            if ids[i] is None and tid not in taken:
                ids[i] = tid
                taken.add(tid)
        for i in sorted(vessels, key=lambda i: ids[i] is None):  # matched ones first
            track_id = ids[i] if ids[i] is not None else self._new_track(t)
            ids[i] = track_id
            if track_id is None:
                continue  # every track was seen on this very result: no room for more
            s = structures[i]
            area = s.area_mm2 if unit == "mm2" and s.area_mm2 is not None else s.area_px
            self.tracks[track_id].add(VesselSample(t, float(area), float(s.area_px),
                                                   (float(s.centroid[0]),
                                                    float(s.centroid[1])),
                                                   s.class_name, float(s.confidence)))
        return ids

    def _new_track(self, t: float) -> int | None:
        if len(self.tracks) >= self.max_tracks:  # forget the one seen longest ago
            oldest = min(self.tracks.values(), key=lambda tr: tr.last.t)
            if oldest.last.t >= t:
                return None
            del self.tracks[oldest.id]
        tid = self._next_id
        self._next_id += 1
        self.tracks[tid] = VesselTrack(tid, self.history_s)
        return tid


# -------------------------------------------------------------------------------------------
# Pulsatility


@dataclass(frozen=True)
class Pulse:
    """The spectral reading of one area series."""

    pulses: bool | None  # None: cannot tell (too few / uneven samples, or too noisy)
    rate_bpm: float | None  # the peak's frequency when it pulses
    amplitude: float | None  # the peak's amplitude, a fraction of the vessel's area
    snr: float | None  # the peak over the band's median amplitude


def pulsatility(t: np.ndarray, area: np.ndarray, *, band_hz: tuple[float, float] = (0.7, 3.0),
                min_span_s: float = 4.0, min_rate_hz: float = 7.0, max_gap_s: float = 0.5,
                min_amplitude: float = 0.025, min_snr: float = 4.0) -> Pulse:
    """Is there a heart-rate oscillation in this (possibly unevenly sampled) area series?

    The series is put on a uniform grid (linear interpolation: frame times jitter and frames
    drop), divided by its own moving average over one period of the band's lowest frequency
    (pressure ramps and breathing are slower and go; a relative series makes the threshold the
    same for a big vein and a small artery), Hann-windowed, and its amplitude spectrum taken
    (zero-padded to < 0.01 Hz bins). pulses is True when the band's highest peak
    - is at least min_amplitude (an arterial pulse changes the area by ~10-20 % peak to peak,
      ~6-8 % at the fundamental; a vein nudged by its neighbour by ~1 %),
    - stands min_snr times over the band's median away from it and its harmonics,
    - is a real peak, not the shoulder of slower change (the highest within 0.2 Hz, outside
      the band too: the kink of a press-and-release leaves a low-frequency hump), and
    - is there in both halves of the window (a beat is steady; one jolt is not);
    False when the peak is small and the band quiet enough that such a pulse would have shown;
    None otherwise (cannot tell).
    """
    t = np.asarray(t, np.float64)
    area = np.asarray(area, np.float64)
    unknown = Pulse(None, None, None, None)
    if t.size < 2:
        return unknown
    span = float(t[-1] - t[0])
    if (span < min_span_s or t.size < min_rate_hz * span or float(np.max(np.diff(t))) > max_gap_s
            or np.any(area <= 0)):
        return unknown
    f_lo, f_hi = band_hz
    fs = max(2.5 * f_hi, min(30.0, (t.size - 1) / span))  # well above the band's Nyquist need
    grid = np.arange(int(span * fs) + 1) / fs
    x = np.interp(t[0] + grid, t, area)
    n_avg = max(3, int(round(fs / f_lo)) | 1)  # odd, one slowest period
    rel = x / _moving_average(x, n_avg) - 1.0
    rel -= rel.mean()
    n_fft = 1 << int(math.ceil(math.log2(fs / 0.01)))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / fs)
    step = float(freqs[1])
    amp = _amplitudes(rel, n_fft)
    in_band = np.flatnonzero((freqs >= f_lo) & (freqs <= f_hi))
    k = int(in_band[np.argmax(amp[in_band])])
    peak = float(amp[k])
    # the band's noise: its median away from the peak and the peak's harmonics
    band_f = freqs[in_band]
    away = np.ones(in_band.size, bool)
    for h in (0.5, 1.0, 2.0, 3.0):
        away &= np.abs(band_f - h * freqs[k]) > 0.2
    noise = float(np.median(amp[in_band[away]] if away.sum() >= 10 else amp[in_band]))
    snr = peak / max(noise, 1e-12)
    # a pulse's second harmonic can outgrow a weak fundamental: prefer the fundamental
    if freqs[k] / 2.0 >= f_lo:
        reach = max(1, int(round(0.03 / step)))
        kh = int(round(freqs[k] / 2.0 / step))
        kh = kh - reach + int(np.argmax(amp[kh - reach:kh + reach + 1]))
        if amp[kh] >= 0.5 * peak and amp[kh] >= min_snr * noise:
            k = kh
    f_peak = float(freqs[k])
    a, b, c = amp[k - 1], amp[k], amp[k + 1]  # parabolic interpolation of the peak
    if a - 2 * b + c < 0:
        f_peak += step * 0.5 * (a - c) / (a - 2 * b + c)
    near = np.abs(freqs - freqs[k]) <= 0.2
    is_peak = amp[k] >= float(np.max(amp[near]))
    half = rel.size // 2
    steady = all(_amplitude_at(part, fs, f_peak) >= 0.5 * float(amp[k])
                 for part in (rel[:half], rel[half:]))
    if peak >= min_amplitude and snr >= min_snr:
        if is_peak and steady:
            return Pulse(True, float(60.0 * f_peak), peak, float(snr))
        return Pulse(None, None, peak, float(snr))
    if min_snr * noise < min_amplitude:  # quiet: a pulse of min_amplitude would have shown
        return Pulse(False, None, peak, float(snr))
    return Pulse(None, None, peak, float(snr))


def _amplitudes(x: np.ndarray, n_fft: int) -> np.ndarray:
    """Amplitude of a sinusoid at each rfft frequency (Hann window, zero-padded)."""
    w = np.hanning(x.size)
    return 2.0 * np.abs(np.fft.rfft(w * (x - x.mean()), n_fft)) / w.sum()


def _amplitude_at(x: np.ndarray, fs: float, f: float) -> float:
    w = np.hanning(x.size)
    phase = np.exp(-2j * np.pi * f * np.arange(x.size) / fs)
    return float(2.0 * abs(np.sum(w * (x - x.mean()) * phase)) / w.sum())


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average with mirrored ends (no edge droop)."""
    half = n // 2
    padded = np.pad(x, half, mode="reflect") if x.size > half else np.pad(x, half, mode="edge")
    return np.convolve(padded, np.ones(n) / n, mode="valid")


# -------------------------------------------------------------------------------------------
# Compressibility


def _running_median(x: np.ndarray, n: int) -> np.ndarray:
    if x.size < n or n < 2:
        return x.copy()
    half = n // 2
    padded = np.pad(x, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.median(windows, axis=1)


@dataclass(frozen=True)
class _Series:
    """A track's area relative to its uncompressed level, on every update time of the window
    (NaN where it was not seen and is not known to be pressed flat)."""

    ratio: np.ndarray
    baseline: float


def _relative_series(track: VesselTrack, times: np.ndarray, *, smooth: int,
                     baseline_q: float, collapsed_below: float,
                     max_missing_s: float) -> _Series | None:
    seen = [s for s in track.samples if s.t >= times[0]]
    if not seen:
        return None
    ts = np.array([s.t for s in seen])
    areas = _running_median(np.array([s.area for s in seen]), smooth)  # one odd frame is no
    baseline = float(np.quantile(areas, baseline_q))  # drop; the level it usually has
    if baseline <= 0:
        return None
    ratio = np.full(times.size, np.nan)
    pos = np.searchsorted(ts, times)
    at = np.minimum(pos, ts.size - 1)
    exact = ts[at] == times
    ratio[exact] = areas[at[exact]] / baseline
    # missing right after shrinking, on a frame that was analysed: pressed flat, not lost (a
    # vein under firm pressure becomes a slit the model no longer outlines)
    before = np.maximum(pos - 1, 0)
    flat = (~exact & (pos > 0) & (areas[before] / baseline <= collapsed_below)
            & (times - ts[before] <= max_missing_s))
    ratio[flat] = 0.0
    return _Series(ratio, baseline)


def _longest_run(mask: np.ndarray, times: np.ndarray) -> float:
    """Longest stretch of True, in seconds (first to last time of the run)."""
    best, start = 0.0, None
    for j, m in enumerate(mask):
        if m and start is None:
            start = j
        if start is not None and (not m or j == mask.size - 1):
            end = j if m else j - 1
            best = max(best, float(times[end] - times[start]))
            start = None
    return best


# -------------------------------------------------------------------------------------------
# Per-vessel verdicts


@dataclass(frozen=True)
class VesselReport:
    """What the behaviour says about one tracked vessel."""

    track_id: int
    class_name: str  # the model's majority class over the window
    centroid: tuple[float, float]  # last seen, full-frame px
    seen_now: bool  # found in the newest result
    pulses: bool | None
    heart_rate_bpm: float | None  # when it pulses
    pulse_amplitude: float | None  # the heart-rate band's peak, a fraction of the area
    compresses: bool | None
    lowest_ratio: float | None  # smallest area / uncompressed area while another held
    behaves_as: str | None  # "artery", "vein" or None (cannot tell)
    caution: str | None  # the behaviour contradicts the model's class

    @property
    def tags(self) -> tuple[str, ...]:
        """Words to show beside the vessel's label, once measured."""
        tags = []
        if self.compresses is True:
            tags.append("compresses")
        elif self.compresses is False:
            tags.append("does not compress")
        if self.pulses:
            tags.append("pulses")
        return tuple(tags)


@dataclass(frozen=True)
class BehaviourReport:
    """The vessels' behaviour after one result."""

    t: float
    vessels: tuple[VesselReport, ...]
    structure_ids: tuple[int | None, ...]  # track id of each structure given to update()

    @property
    def cautions(self) -> tuple[str, ...]:
        return tuple(v.caution for v in self.vessels if v.caution)

    @property
    def heart_rate_bpm(self) -> float | None:
        rates = [v.heart_rate_bpm for v in self.vessels if v.heart_rate_bpm is not None]
        return float(np.median(rates)) if rates else None

    def vessel(self, track_id: int | None) -> VesselReport | None:
        return next((v for v in self.vessels if v.track_id == track_id), None)

    def for_structure(self, structure: Structure) -> VesselReport | None:
        """The report of a drawn structure, by position: the vessel whose last centroid is
        nearest, within the structure's own radius (vessels do not overlap). Works on a result
        moved onto a newer frame too, where structures may have been dropped, so indices no
        longer line up with structure_ids."""
        best, best_d = None, math.sqrt(max(structure.area_px, 1.0) / math.pi)
        for v in self.vessels:
            d = math.hypot(structure.centroid[0] - v.centroid[0],
                           structure.centroid[1] - v.centroid[1])
            if d <= best_d:
                best, best_d = v, d
        return best


class VesselBehaviour:
    """Feed it every new model result; it tracks the vessels and judges their behaviour.

    pulse_window_s: the seconds of area history the pulse is read from (>= 4 beats at 42 bpm).
    compress_window_s: the seconds over which a compression is remembered and the vessels'
      uncompressed levels (their `baseline_q` quantile) are taken.
    compressed_below: a vessel compresses when its area falls under this fraction of its
      uncompressed level ...
    hold_above: ... while another tracked vessel keeps at least this fraction of its own (an
      artery's beat takes it to ~0.85; both shrinking is a lifted probe, a zoom or a slide);
    min_event_s: ... for at least this long (one bad frame is not a compression).
    min_track_s / min_track_samples: a vessel is judged only once seen this long and often.
    every_s: the verdicts are recomputed at most this often (the tracker follows every call).
    """

    def __init__(self, classes: Sequence[str] = VESSEL_CLASSES, *,
                 pulse_window_s: float = 6.0, compress_window_s: float = 10.0,
                 compressed_below: float = 0.5, hold_above: float = 0.7,
                 min_event_s: float = 0.3, baseline_q: float = 0.97,
                 min_track_s: float = 2.0, min_track_samples: int = 12,
                 every_s: float = 0.0, tracker: VesselTracker | None = None,
                 pulse_options: dict | None = None) -> None:
        self.pulse_window_s = pulse_window_s
        self.compress_window_s = compress_window_s
        self.compressed_below = compressed_below
        self.hold_above = hold_above
        self.min_event_s = min_event_s
        self.baseline_q = baseline_q
        self.min_track_s = min_track_s
        self.min_track_samples = min_track_samples
        self.every_s = every_s
        self.pulse_options = dict(pulse_options or {})
        self.tracker = tracker or VesselTracker(
            classes, history_s=max(pulse_window_s, compress_window_s))
        self.report: BehaviourReport = BehaviourReport(0.0, (), ())
        self._judged_t: float | None = None
        self._verdicts: tuple[VesselReport, ...] = ()

    def reset(self) -> None:
        """Forget everything (source switch, seek, another model, freeze)."""
        self.tracker.reset()
        self.report = BehaviourReport(0.0, (), ())
        self._judged_t = None
        self._verdicts = ()

    def update(self, structures: Sequence[Structure], t: float) -> BehaviourReport:
        """One new model result (its structures and its frame's capture time)."""
        structures = tuple(structures)
        ids = self.tracker.update(structures, t)
        if (self._judged_t is None or t - self._judged_t >= self.every_s
                or t < self._judged_t):
            self._verdicts = self._judge(t)
            self._judged_t = t
        seen = {i for i in ids if i is not None}
        vessels = tuple(_replace_seen(v, v.track_id in seen) for v in self._verdicts
                        if v.track_id in self.tracker.tracks)
        self.report = BehaviourReport(t, vessels, tuple(ids))
        return self.report

    # ---------------------------------------------------------------------------------------
    def _judge(self, t: float) -> tuple[VesselReport, ...]:
        tracks = [tr for tr in self.tracker.tracks.values() if self._established(tr, t)]
        pulses = {tr.id: self._pulse(tr, t) for tr in tracks}
        compresses, lowest = self._compression(tracks, t)
        reports = []
        for tr in tracks:
            p = pulses[tr.id]
            c = compresses.get(tr.id)
            name = tr.class_name(t - self.compress_window_s)
            behaves = _behaves_as(p.pulses, c)
            reports.append(VesselReport(
                tr.id, name, tr.last.centroid, tr.last.t == t, p.pulses, p.rate_bpm,
                p.amplitude, c, lowest.get(tr.id), behaves, _caution(name, p.pulses, c)))
        return tuple(reports)

    def _established(self, tr: VesselTrack, t: float) -> bool:
        recent = tr.in_window(t - self.compress_window_s)
        return (len(recent) >= self.min_track_samples
                and recent[-1].t - recent[0].t >= self.min_track_s)

    def _pulse(self, tr: VesselTrack, t: float) -> Pulse:
        recent = tr.in_window(t - self.pulse_window_s)
        if len(recent) < 2:
            return Pulse(None, None, None, None)
        return pulsatility(np.array([s.t for s in recent]), np.array([s.area for s in recent]),
                           **self.pulse_options)

    def _compression(self, tracks: list[VesselTrack], t: float
                     ) -> tuple[dict[int, bool], dict[int, float]]:
        times = np.array([u for u in self.tracker.times if u >= t - self.compress_window_s])
        if times.size < 2:
            return {}, {}
        series = {}
        for tr in tracks:
            s = _relative_series(tr, times, smooth=5, baseline_q=self.baseline_q,
                                 collapsed_below=0.6,
                                 max_missing_s=self.tracker.max_missing_s)
            if s is not None:
                series[tr.id] = s
        verdict: dict[int, bool] = {}
        lowest: dict[int, float] = {}
        for a, sa in series.items():
            for b, sb in series.items():
                if a == b:
                    continue
                holds = sb.ratio >= self.hold_above  # NaN (not seen) never holds
                both = holds & ~np.isnan(sa.ratio)
                if both.any():
                    low = float(np.nanmin(sa.ratio[both]))
                    lowest[a] = min(lowest.get(a, math.inf), low)
                pressed = holds & (sa.ratio <= self.compressed_below)
                if _longest_run(pressed, times) >= self.min_event_s:
                    verdict[a] = True
                    verdict.setdefault(b, False)  # it held under pressure that flattened a
        return verdict, lowest


def _replace_seen(v: VesselReport, seen: bool) -> VesselReport:
    return v if v.seen_now == seen else replace(v, seen_now=seen)


def _behaves_as(pulses: bool | None, compresses: bool | None) -> str | None:
    """What the behaviour alone says. A vessel that compresses is a vein unless it also pulses
    (then it is ambiguous); one that held while another flattened, or that pulses, an artery.
    A quiet vessel that was never pressed: cannot tell (a vein, or an artery seen poorly)."""
    if compresses is True:
        return VEIN if pulses is not True else None
    if compresses is False or pulses is True:
        return ARTERY
    return None


def _caution(class_name: str, pulses: bool | None, compresses: bool | None) -> str | None:
    if class_name == VEIN:
        if pulses is True and compresses is not True:
            return ("Labelled vein, but it pulses like an artery"
                    + (" and does not compress" if compresses is False else ""))
        if compresses is False:
            return ("Labelled vein, but it does not compress under pressure that "
                    "compresses the other vessel")
    if class_name == ARTERY and compresses is True:
        return "Labelled artery, but it compresses like a vein"
    return None
