"""Unplug/replug endurance run: a fake capture card through the real live session.

    python -m tests.reliability.replug [--cycles 100] [--resize-every 10] [--time-scale 1.0]
        [--seed 0] [--unplug 0.2 3.0] [--out DIR]

A fake capture device (the CaptureSource's opener) serves scanner screens with the ultrasound
image inside menus, text and a depth ruler. Each cycle it is unplugged for a random 0.2-3 s,
failing the way drivers do (read returns False, read raises and the reopen raises, read returns
an empty picture, read hangs like a stuck driver), then plugged back in; every `--resize-every`th
replug it comes back at another resolution (1920x1080 -> 1280x720 -> 640x480 -> ...). A real
LiveSession with ImageArea(detect_roi) and a RoiStore in a temporary folder pulls frames the way
the window does (on the source's publish signal and a ~60 Hz tick).

Per cycle: reconnect time (the first new frame pulled after the replug minus the replug moment),
whether the image area was found again for the new size (ROI inside the new frame and on the
screen's image area), whether the last frame stayed and "no signal" was shown while unplugged,
RSS (VmRSS) and threading.active_count(). Criteria (exit 1 when one fails): every reconnect
within 4 s; every resolution change re-detected; RSS growth after the warm-up cycles (at one
resolution) within 10 %; threads flat and none left after stop; every capture handle released.

--time-scale shortens the plugged and unplugged periods (and a stuck read) only: reopen backoff,
device open times and the 4 s limit stay real, so a short run still measures true reconnects.
--out DIR writes replug.csv (one row per cycle) and replug.png (RSS, threads, reconnect time).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from sonoguide.pipeline.calibration import RoiStore
from sonoguide.pipeline.frames import Frame, Roi
from sonoguide.pipeline.image_area import ImageArea
from sonoguide.pipeline.roi import detect_roi
from sonoguide.pipeline.session import LiveSession
from sonoguide.sources.base import SourceState
from sonoguide.sources.capture import CaptureSource
from tests.clips import scanner_screen

# screen size -> where the ultrasound image lies on it (x, y, w, h)
IMAGE_AREAS: dict[tuple[int, int], tuple[int, int, int, int]] = {
    (1920, 1080): (420, 140, 1000, 800),
    (1280, 720): (300, 90, 700, 520),
    (640, 480): (210, 135, 300, 240),
}
RESOLUTIONS = tuple(IMAGE_AREAS)
FAILURE_STYLES = ("read-false", "read-raises", "read-empty", "hang")
UNPLUG_S = (0.2, 3.0)  # how long the cable is out (before --time-scale)
PLUGGED_S = (0.3, 1.5)  # how long frames flow between pulls of the cable
HANG_MAX_S = 1.5  # a stuck read returns False after this (or at the replug)
OPEN_S = (0.05, 0.3)  # a driver's open time (real, never scaled)
CARD_FPS = 30.0
TICK_S = 1 / 60  # the window's timer
RECONNECT_LIMIT_S = 4.0
GIVE_UP_S = 15.0  # no frame this long after a replug: the cycle failed, go on with the next
ROI_TOLERANCE_PX = 3
WARMUP_CYCLES = 10
RSS_WINDOW = 5  # cycles whose median RSS stands for "start" and "end" (one sample is noisy)
RSS_GROWTH_LIMIT = 0.10
STALE_S = 1.2  # an unplug this long shows "no signal" even while a driver hangs in read()
SCREEN_VARIANTS = 3  # different speckle per resolution, so frames are not all the same


class FakeCard:
    """A capture card the run unplugs and plugs back in. A device opened before an unplug stays
    dead after the replug (as a real one does): the source must release and reopen it."""

    def __init__(self, size: tuple[int, int], *, seed: int = 0, time_scale: float = 1.0) -> None:
        self.size = size
        self.plugged = True
        self.style = FAILURE_STYLES[0]
        self.generation = 0  # rises at each unplug; devices of an older one are dead
        self.replugged = threading.Event()
        self.hang_s = HANG_MAX_S * time_scale
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.opens = self.releases = 0
        self.screens = {size: _screens(size, seed) for size in RESOLUTIONS}

    def unplug(self, style: str) -> None:
        with self.lock:
            self.plugged, self.style = False, style
            self.generation += 1
            self.replugged.clear()

    def replug(self, size: tuple[int, int]) -> None:
        with self.lock:
            self.plugged, self.size = True, size
        self.replugged.set()

    def opener(self, index: int, backend: int) -> FakeDevice:
        with self.lock:
            delay = self.rng.uniform(*OPEN_S)
        time.sleep(delay)
        with self.lock:
            if not self.plugged and self.style == "read-raises":
                raise OSError(f"device {index} is gone")
            if self.plugged:
                self.opens += 1  # a handle that did open must be released again
            return FakeDevice(self, self.plugged, self.generation, self.size)

    def released(self) -> None:
        with self.lock:
            self.releases += 1


class FakeDevice:
    """One opened handle of the card (cv2.VideoCapture-like)."""

    def __init__(self, card: FakeCard, opened: bool, generation: int,
                 size: tuple[int, int]) -> None:
        self.card, self.opened, self.generation, self.size = card, opened, generation, size
        self.count = 0
        self.closed = False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened and not self.closed

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(1 / CARD_FPS)
        card = self.card
        if card.generation == self.generation and not self.closed:
            screens = card.screens[self.size]
            self.count += 1
            return True, screens[self.count % len(screens)]
        if card.style == "read-raises":
            raise OSError("select() timeout")
        if card.style == "read-empty":
            return True, np.empty((0, 0, 3), np.uint8)
        if card.style == "hang":
            card.replugged.wait(card.hang_s)
        return False, None

    def set(self, prop_id: int, value: float) -> bool:
        return True

    def get(self, prop_id: int) -> float:
        granted = {cv2.CAP_PROP_FRAME_WIDTH: self.size[0], cv2.CAP_PROP_FRAME_HEIGHT: self.size[1],
                   cv2.CAP_PROP_FPS: CARD_FPS, cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"MJPG")}
        return float(granted.get(prop_id, 0.0))

    def release(self) -> None:
        if not self.closed:
            self.closed = True
            if self.opened:
                self.card.released()


def _screens(size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """BGR scanner screens (what cv2 hands over) with the image at IMAGE_AREAS[size]."""
    return [cv2.cvtColor(scanner_screen(size, IMAGE_AREAS[size], seed=seed + i), cv2.COLOR_RGB2BGR)
            for i in range(SCREEN_VARIANTS)]


def roi_matches(roi: Roi | None, size: tuple[int, int]) -> bool:
    """Inside the frame and on the screen's image area."""
    if roi is None:
        return False
    w, h = size
    if roi.x < 0 or roi.y < 0 or roi.x + roi.w > w or roi.y + roi.h > h:
        return False
    x, y, aw, ah = IMAGE_AREAS[size]
    found = (roi.x, roi.y, roi.x + roi.w, roi.y + roi.h)
    truth = (x, y, x + aw, y + ah)
    return max(abs(a - b) for a, b in zip(found, truth, strict=True)) <= ROI_TOLERANCE_PX


def rss_mb() -> float | None:
    """Resident memory of this process (Linux), None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Viewer:
    """Pulls frames as the window does: at once on the source's publish signal, else on a
    ~60 Hz tick; notes whether "no signal" was on screen."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.wake = threading.Event()
        session.on_frame = self.wake.set  # the window emits a queued signal here
        self.no_signal_seen = False

    def tick(self) -> Frame | None:
        self.wake.wait(TICK_S)
        self.wake.clear()
        frame = self.session.pull()
        self.session.show()
        source = self.session.source
        if source is not None and source.status.state is SourceState.NO_SIGNAL:
            self.no_signal_seen = True
        return frame

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick()

    def first_frame_after(self, t: float, timeout: float) -> tuple[Frame | None, float]:
        """The first frame captured after monotonic time `t`, and when it was pulled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.tick()
            if frame is not None and frame.t_capture >= t:
                return frame, time.monotonic()
        return None, time.monotonic()


@dataclasses.dataclass
class Cycle:
    cycle: int
    style: str
    unplug_s: float
    width: int
    height: int
    resized: bool
    reconnect_s: float | None  # None: no frame within GIVE_UP_S
    roi_ok: bool
    redetect_said: bool  # the image area told the user it was found again
    last_frame_kept: bool
    no_signal_seen: bool
    rss_mb: float | None
    threads: int


@dataclasses.dataclass
class Report:
    cycles: list[Cycle]
    threads_before: int  # before the source started
    threads_after: int  # after session.stop()
    leftover_threads: list[str]  # started by the run and still alive after stop
    opens: int
    releases: int
    wall_s: float

    def reconnects(self) -> list[float]:
        return [c.reconnect_s if c.reconnect_s is not None else float("inf") for c in self.cycles]

    def rss_growth(self) -> tuple[float, float, tuple[int, int]] | None:
        """Median RSS of the first and the last RSS_WINDOW cycles after warm-up, per resolution
        (frames of another size hold other amounts of memory): the resolution that grew most."""
        after = [c for c in self.cycles[WARMUP_CYCLES:] if c.rss_mb is not None]
        worst = None
        for size in RESOLUTIONS:
            same = [c.rss_mb for c in after if (c.width, c.height) == size]
            if len(same) < 2 * RSS_WINDOW:
                continue
            start = statistics.median(same[:RSS_WINDOW])
            end = statistics.median(same[-RSS_WINDOW:])
            if worst is None or end / start > worst[1] / worst[0]:
                worst = (start, end, size)
        return worst

    def failures(self) -> list[str]:
        out = []
        slow = [c for c in self.cycles
                if c.reconnect_s is None or c.reconnect_s > RECONNECT_LIMIT_S]
        if slow:
            out.append(f"{len(slow)} reconnect(s) over {RECONNECT_LIMIT_S:g} s: cycles "
                       f"{[c.cycle for c in slow]}")
        resized = [c for c in self.cycles if c.resized]
        missed = [c.cycle for c in resized if not (c.roi_ok and c.redetect_said)]
        if missed:
            out.append(f"image area not found again after a size change: cycles {missed}")
        wrong = [c.cycle for c in self.cycles if not c.resized and not c.roi_ok]
        if wrong:
            out.append(f"image area wrong after a replug: cycles {wrong}")
        lost = [c.cycle for c in self.cycles if not c.last_frame_kept]
        if lost:
            out.append(f"last frame lost while unplugged: cycles {lost}")
        silent = [c.cycle for c in self.cycles if c.unplug_s >= STALE_S and not c.no_signal_seen]
        if silent:
            out.append(f"no 'no signal' during a {STALE_S:g} s+ unplug: cycles {silent}")
        rss = self.rss_growth()
        if rss is not None and rss[1] > rss[0] * (1 + RSS_GROWTH_LIMIT):
            out.append(f"RSS grew {100 * (rss[1] / rss[0] - 1):.1f} % after warm-up "
                       f"({rss[0]:.0f} -> {rss[1]:.0f} MB)")
        threads = [c.threads for c in self.cycles]
        if threads and max(threads) > threads[0]:
            out.append(f"threads grew during the run: {threads[0]} -> max {max(threads)}")
        if self.leftover_threads:
            out.append(f"threads left after stop: {self.leftover_threads}")
        if self.opens != self.releases:
            out.append(f"capture handles leaked: {self.opens} opened, {self.releases} released")
        return out

    def summary(self) -> str:
        times = np.array(self.reconnects())
        finite = times[np.isfinite(times)]
        resized = [c for c in self.cycles if c.resized]
        ok = sum(c.roi_ok and c.redetect_said for c in resized)
        rss = self.rss_growth()
        rss_text = ("growth n/a (too few cycles)" if rss is None else
                    f"growth after {WARMUP_CYCLES} warm-up cycles {rss[0]:.1f} -> {rss[1]:.1f} "
                    f"MB ({100 * (rss[1] / rss[0] - 1):+.1f} %; medians of the first and last "
                    f"{RSS_WINDOW} cycles at {rss[2][0]}x{rss[2][1]}, the size that grew most)")
        samples = [c.rss_mb for c in self.cycles if c.rss_mb is not None]
        rss_range = (f"first {samples[0]:.1f}, last {samples[-1]:.1f}, min {min(samples):.1f}, "
                     f"max {max(samples):.1f} MB" if samples else "not measured")
        threads = [c.threads for c in self.cycles]
        styles = {s: sum(c.style == s for c in self.cycles) for s in FAILURE_STYLES}
        lines = [
            f"cycles: {len(self.cycles)} ({', '.join(f'{k} {v}' for k, v in styles.items())}), "
            f"wall {self.wall_s:.1f} s",
            "reconnect: " + (f"median {np.median(finite):.2f} s, p95 "
                             f"{np.percentile(finite, 95):.2f} s, max {times.max():.2f} s"
                             if finite.size else "none"),
            f"reconnects over {RECONNECT_LIMIT_S:g} s: "
            f"{int(np.sum(times > RECONNECT_LIMIT_S))}",
            f"re-detections ok/expected: {ok}/{len(resized)}; image area right on "
            f"{sum(c.roi_ok for c in self.cycles)}/{len(self.cycles)} replugs",
            f"'no signal' shown: {sum(c.no_signal_seen for c in self.cycles)}/"
            f"{len(self.cycles)} unplugs; last frame kept: "
            f"{sum(c.last_frame_kept for c in self.cycles)}/{len(self.cycles)}",
            f"RSS: {rss_range}; {rss_text}",
            f"threads: {self.threads_before} before start, {threads[0]} -> {threads[-1]} "
            f"(max {max(threads)}) during, {self.threads_after} after stop",
            f"capture handles: {self.opens} opened, {self.releases} released",
        ]
        return "\n".join(lines)


def run(cycles: int = 100, resize_every: int = 10, time_scale: float = 1.0, seed: int = 0,
        workdir: Path | None = None, progress: bool = False,
        unplug_range_s: tuple[float, float] = UNPLUG_S) -> Report:
    rng = random.Random(seed)
    t_start = time.monotonic()
    size_index = 0
    card = FakeCard(RESOLUTIONS[size_index], seed=seed, time_scale=time_scale)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        messages: list[str] = []
        area = ImageArea(detect_roi, RoiStore(Path(tmp) / "rois.json"), say=messages.append)
        session = LiveSession(area)
        viewer = Viewer(session)
        before = set(threading.enumerate())
        threads_before = threading.active_count()
        source = CaptureSource(index=0, opener=card.opener)
        source.start()
        session.set_source(source, "camera:0")
        rows: list[Cycle] = []
        try:
            frame, _ = viewer.first_frame_after(0.0, GIVE_UP_S)
            if frame is None or not roi_matches(frame.roi, card.size):
                raise RuntimeError(f"no first frame or wrong image area: {frame and frame.roi}")
            viewer.run_for(rng.uniform(*PLUGGED_S) * time_scale)
            for i in range(1, cycles + 1):
                style = FAILURE_STYLES[(i - 1) % len(FAILURE_STYLES)]
                unplug_s = rng.uniform(*unplug_range_s) * time_scale
                viewer.no_signal_seen = False
                card.unplug(style)
                viewer.run_for(unplug_s)
                kept = session.current is not None and source.latest() is not None
                resized = i % resize_every == 0
                if resized:
                    size_index = (size_index + 1) % len(RESOLUTIONS)
                size = RESOLUTIONS[size_index]
                said = len(messages)
                t_replug = time.monotonic()  # before the card is back: its frames come later
                card.replug(size)
                frame, t_pulled = viewer.first_frame_after(t_replug, GIVE_UP_S)
                new_size = frame is not None and (frame.width, frame.height) == size
                roi_ok = bool(new_size and roi_matches(frame.roi, size))
                no_signal_seen = viewer.no_signal_seen
                # frames flow until the next pull of the cable; memory and threads are sampled
                # at its end, in a steady state, not amid the re-detection's temporaries
                viewer.run_for(rng.uniform(*PLUGGED_S) * time_scale)
                current = session.current
                roi_ok = roi_ok and current is not None and roi_matches(current.roi, size)
                redetect_said = any("size changed" in m for m in messages[said:]) == resized
                rows.append(Cycle(
                    cycle=i, style=style, unplug_s=round(unplug_s, 3), width=size[0],
                    height=size[1], resized=resized,
                    reconnect_s=None if frame is None else round(t_pulled - t_replug, 3),
                    roi_ok=roi_ok, redetect_said=redetect_said, last_frame_kept=kept,
                    no_signal_seen=no_signal_seen, rss_mb=rss_mb(),
                    threads=threading.active_count()))
                if progress:
                    c = rows[-1]
                    print(f"cycle {i:3d} {style:11s} out {unplug_s:4.2f} s -> {size[0]}x"
                          f"{size[1]}{' (new size)' if resized else ''}: back in "
                          f"{c.reconnect_s} s, image area {'ok' if c.roi_ok else 'WRONG'}, "
                          f"RSS {c.rss_mb or 0:.0f} MB, {c.threads} threads", flush=True)
        finally:
            session.stop()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and set(threading.enumerate()) - before:
            time.sleep(0.02)
        leftover = sorted(t.name for t in set(threading.enumerate()) - before)
        return Report(rows, threads_before, threading.active_count(), leftover, card.opens,
                      card.releases, time.monotonic() - t_start)


def write_outputs(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = out / "replug.csv"
    fields = [f.name for f in dataclasses.fields(Cycle)]
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in report.cycles:
            writer.writerow(dataclasses.asdict(row))
    written = [table]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    n = [c.cycle for c in report.cycles]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(n, [c.rss_mb or np.nan for c in report.cycles])
    axes[0].set_ylabel("RSS (MB)")
    axes[0].axvline(WARMUP_CYCLES, color="grey", linestyle=":")
    axes[1].step(n, [c.threads for c in report.cycles], where="mid")
    axes[1].set_ylabel("threads")
    axes[2].bar(n, [c.reconnect_s if c.reconnect_s is not None else GIVE_UP_S
                    for c in report.cycles],
                color=["tab:orange" if c.resized else "tab:blue" for c in report.cycles])
    axes[2].axhline(RECONNECT_LIMIT_S, color="red", linestyle="--")
    axes[2].set_ylabel("reconnect (s)")
    axes[2].set_xlabel("cycle (orange: new resolution)")
    fig.suptitle("capture unplug/replug")
    fig.tight_layout()
    picture = out / "replug.png"
    fig.savefig(picture, dpi=100)
    plt.close(fig)
    written.append(picture)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.replug",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--resize-every", type=int, default=10,
                        help="every Nth replug comes back at another resolution")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="multiply plugged/unplugged periods (backoff and limits stay real)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unplug", type=float, nargs=2, default=UNPLUG_S, metavar=("MIN", "MAX"),
                        help="seconds the cable is out, drawn uniformly (default %(default)s); "
                             "long ones reach the longest reopen backoff")
    parser.add_argument("--out", type=Path, default=None, help="write replug.csv and .png here")
    parser.add_argument("--quiet", action="store_true", help="no line per cycle")
    args = parser.parse_args(argv)
    # the source logs every raising read; here they are the read-raises cycles, on purpose
    logging.getLogger("sonoguide.sources.capture").setLevel(logging.ERROR)
    report = run(args.cycles, args.resize_every, args.time_scale, args.seed,
                 progress=not args.quiet, unplug_range_s=tuple(args.unplug))
    print(report.summary())
    if args.out is not None:
        for path in write_outputs(report, args.out):
            print(f"wrote {path}")
    failures = report.failures()
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
