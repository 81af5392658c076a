"""Soak: does memory stay flat over a long run? Samples the process's RSS and plots it.

    python -m tests.reliability.soak headless --minutes 60 --out soak-headless
    QT_QPA_PLATFORM=offscreen python -m tests.reliability.soak window --minutes 20 \
        --switch-every 10 --out soak-window

headless: `sonoguide --headless` on the phantom (the shipped model, in this process).
window: the real window on the phantom, switching procedure (plexus <-> jugular, model and
scene) every --switch-every seconds.

Growth is the median RSS of the last tenth of the run against the median of the first tenth
after the warm-up (models loaded, arenas and caches filled); the run fails (exit 1) at
--max-growth-pct or more. Writes rss.csv and rss.png to --out.
"""

from __future__ import annotations

import argparse
import csv
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_MAX_GROWTH_PCT = 5.0


def rss_mb() -> float:
    """Resident memory of this process (Linux /proc; resource's peak elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


class Sampler:
    """RSS and thread count every `every_s` seconds on a helper thread."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.samples: list[tuple[float, float, int]] = []  # (t s, rss MB, threads)
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self._t0, rss_mb(), threading.active_count()))
            if self._stop.wait(self.every_s):
                return


def growth(samples: list[tuple[float, float, int]], warmup_s: float) -> dict:
    """RSS figures after the warm-up: start/end medians (first and last tenth) and growth %."""
    after = [s for s in samples if s[0] >= warmup_s]
    if len(after) < 4:
        raise ValueError(f"too few samples after the {warmup_s:.0f} s warm-up ({len(after)}); "
                         "run longer or sample more often")
    tenth = max(2, len(after) // 10)
    start = float(np.median([s[1] for s in after[:tenth]]))
    end = float(np.median([s[1] for s in after[-tenth:]]))
    rss = np.array([s[1] for s in after])
    return {"samples": len(after), "warmup_s": warmup_s, "start_mb": round(start, 1),
            "end_mb": round(end, 1), "min_mb": round(float(rss.min()), 1),
            "max_mb": round(float(rss.max()), 1),
            "growth_pct": round(100.0 * (end - start) / start, 2),
            "threads_start": after[0][2], "threads_end": after[-1][2]}


def write_outputs(out: Path, samples: list[tuple[float, float, int]], title: str,
                  warmup_s: float, marks: list[float] = ()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "rss.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["t_s", "rss_mb", "threads"])
        writer.writerows([f"{t:.1f}", f"{r:.1f}", n] for t, r, n in samples)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: rss.csv only, no plot")
        return
    t = np.array([s[0] for s in samples]) / 60.0
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(t, [s[1] for s in samples], lw=1.2, label="RSS")
    ax.axvspan(0, warmup_s / 60.0, color="0.9", label="warm-up")
    for i, m in enumerate(marks):
        ax.axvline(m / 60.0, color="tab:orange", lw=0.3, alpha=0.5,
                   label="mode switch" if i == 0 else None)
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "rss.png", dpi=110)
    plt.close(fig)


def soak_headless(args: argparse.Namespace) -> tuple[list, list[float], str]:
    from sonoguide import cli

    sampler = Sampler(args.sample_every).start()
    report = args.out / "report.json"
    code = cli.main(["--headless", "--source", args.source, "--mode", args.mode,
                     "--duration", str(args.minutes * 60.0), "--report", str(report)])
    sampler.stop()
    if code != 0:
        raise SystemExit(f"the headless run failed (exit {code}); see {report}")
    return sampler.samples, [], f"headless {args.source} ({args.mode}), {args.minutes:g} min"


def soak_window(args: argparse.Namespace) -> tuple[list, list[float], str]:
    from sonoguide.ui.app import ensure_app, real_deps
    from sonoguide.ui.window import MainWindow

    app = ensure_app()
    window = MainWindow(real_deps(), source="phantom", mode=args.mode)
    window.resize(1280, 800)
    window.show()
    sampler = Sampler(args.sample_every).start()
    marks: list[float] = []
    modes = ("plexus", "jugular") if args.mode == "plexus" else ("jugular", "plexus")
    t0 = time.monotonic()
    end = t0 + args.minutes * 60.0
    next_switch = t0 + args.switch_every if args.switch_every > 0 else float("inf")
    switches = 0
    try:
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.002)
            if time.monotonic() >= next_switch:
                switches += 1
                window.set_mode(modes[switches % 2])
                marks.append(time.monotonic() - t0)
                next_switch += args.switch_every
    finally:
        sampler.stop()
        window.shutdown()
        window.close()
    every = f", mode switch every {args.switch_every:g} s" if args.switch_every > 0 else ""
    return sampler.samples, marks, f"window, phantom{every}, {args.minutes:g} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SonoGuide memory soak (RSS over time)")
    parser.add_argument("kind", choices=("headless", "window"))
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the growth figure (default: a tenth of the "
                             "run, 30 s to 3 min)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--switch-every", type=float, default=10.0,
                        help="window: seconds between procedure switches (0: none)")
    parser.add_argument("--source", default="phantom", help="headless: the source")
    parser.add_argument("--mode", default="jugular", choices=("plexus", "jugular"))
    parser.add_argument("--max-growth-pct", type=float, default=DEFAULT_MAX_GROWTH_PCT)
    parser.add_argument("--out", type=Path, default=Path("soak"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    warmup = args.warmup if args.warmup is not None else min(180.0, max(30.0, args.minutes * 6))
    run: Callable = soak_headless if args.kind == "headless" else soak_window
    samples, marks, title = run(args)
    figures = growth(samples, warmup)
    write_outputs(args.out, samples, title, warmup, marks)
    ok = figures["growth_pct"] < args.max_growth_pct
    print(f"{title}: RSS {figures['start_mb']} -> {figures['end_mb']} MB after a "
          f"{warmup:.0f} s warm-up ({figures['growth_pct']:+.2f} %, range "
          f"{figures['min_mb']}-{figures['max_mb']} MB, {figures['samples']} samples); threads "
          f"{figures['threads_start']} -> {figures['threads_end']}; "
          f"{'PASS' if ok else 'FAIL'} (limit {args.max_growth_pct:g} %); plot: "
          f"{args.out / 'rss.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
