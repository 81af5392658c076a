"""GUI benchmark: run the real window for a while and measure what the user sees.

    QT_QPA_PLATFORM=offscreen python -m sonoguide.ui.bench --mode plexus --seconds 10
    QT_QPA_PLATFORM=offscreen python -m sonoguide.ui.bench --source clip.mp4 --follow hold

Per frame shown (the session's display counts): the share with a fresh overlay (the model's
result for that very frame), with a motion-followed one (an older result moved onto it) and
with none; frames shown per second; the frame's age when it is put on screen (capture -> end of
the GUI tick that set it); the GUI tick's cost; the model's own rate and latency; the age of the
overlays drawn; the cost of measuring the motion. A warm-up (at least 2 s, until the model
answers) comes first, then the session's counters are reset. A clip waits for the model on every
frame (the file source's default with a model), so its achieved playback rate is reported too.
Offscreen rendering leaves out the compositor's paint cost of a real display.

The last line is a README table row: | source | mode | follow | CPUs | shown/s | fresh % |
followed % | hidden % | frame age p50 / p95 | tick p50 / p95 | model/s | overlay age p50 / p95 |
flow p50 / p95 | playback x |
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

WARMUP_S = 2.0
WARMUP_MAX_S = 30.0  # a slow machine's model load: wait for the first answer up to this long


def _p(values: list[float]) -> str:
    """'median / p95' in ms, or '-' for no values."""
    if not values:
        return "-"
    a = np.asarray(values, float)
    return f"{np.median(a):.1f} / {np.percentile(a, 95):.1f}"


def _pump(app, seconds: float, until=None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end or (until is not None and not until()
                                     and time.monotonic() < end + WARMUP_MAX_S):
        app.processEvents()
        time.sleep(0.002)


def main(argv: list[str] | None = None) -> int:
    from sonoguide.pipeline.session import DEFAULT_BUDGET_S, FOLLOW_MOTION, HIDE, HOLD

    parser = argparse.ArgumentParser(description="SonoGuide GUI benchmark (what the user sees)")
    parser.add_argument("--source", default="phantom",
                        help="phantom (the mode's scene), phantom:SCENE, PATH or camera:N")
    parser.add_argument("--mode", default="plexus", choices=("plexus", "jugular"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--follow", default=FOLLOW_MOTION, choices=(FOLLOW_MOTION, HOLD, HIDE))
    parser.add_argument("--budget-ms", type=float, default=DEFAULT_BUDGET_S * 1000,
                        help="an overlay older than this is not drawn")
    parser.add_argument("--analyse-every-frame", action=argparse.BooleanOptionalAction,
                        default=True, help="clips: playback waits for the model (default on; "
                                           "off: real time, as a live source)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from sonoguide.ui.app import ensure_app, real_deps
    from sonoguide.ui.window import MainWindow

    app = ensure_app()
    window = MainWindow(real_deps(args.provider, args.threads), source=args.source,
                        mode=args.mode, model_path=args.model, budget_s=args.budget_ms / 1000,
                        follow=args.follow)
    window.resize(1600, 1000)
    window.show()
    session = window.session
    session.analyse_every_frame = args.analyse_every_frame

    tick_ms: list[float] = []
    latency_ms: list[float] = []  # per model result: capture -> result ready
    playback: list[float] = []
    state = {"result": None}
    original_tick = window._tick

    def timed_tick() -> None:
        t0 = time.perf_counter()
        original_tick()
        tick_ms.append((time.perf_counter() - t0) * 1000)
        result = session.latest_result()
        if result is not None and result.frame_id != state["result"]:
            state["result"] = result.frame_id
            latency_ms.append(result.latency_s * 1000)

    window._timer.timeout.disconnect()
    window._timer.timeout.connect(timed_tick)
    paint_ms: list[float] = []  # the view's repaints (image, overlay), in Qt's event loop
    view_class = type(window.graphics)
    original_paint = view_class.paintEvent

    def timed_paint(view, event) -> None:
        t0 = time.perf_counter()
        original_paint(view, event)
        paint_ms.append((time.perf_counter() - t0) * 1000)

    view_class.paintEvent = timed_paint
    _pump(app, WARMUP_S, until=lambda: session.results_seen > 0)  # model load, first answers
    session.reset_counts()
    for values in (tick_ms, latency_ms, paint_ms, window.frame_age_ms):
        values.clear()
    results0, t0 = session.results_seen, time.monotonic()
    end = t0 + args.seconds
    while time.monotonic() < end:
        _pump(app, 0.5)
        rate = getattr(window.source, "playback_rate", None)
        if rate is not None:
            playback.append(float(rate))
    elapsed = time.monotonic() - t0
    counts = session.display_counts()
    age_ms = list(window.frame_age_ms)  # the window's own: capture -> put on screen
    state["shown"] = len(age_ms)
    model_rate_end = session.model_rate()
    results = session.results_seen - results0

    model = window.model
    with_model = max(counts.frames - counts.no_model, 1)
    pct = {k: 100 * getattr(counts, k) / with_model for k in ("fresh", "followed", "hidden")}
    source = window.source
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"== {args.source}  mode {args.mode}  follow {args.follow}  budget {args.budget_ms:g} ms"
          f"  threads {args.threads or 'default'}  CPUs {cpus}  {elapsed:.1f} s  model "
          f"{model.version if model else 'none'} ({model.provider if model else '-'})")
    print(f"shown        {state['shown'] / elapsed:.1f} frames/s ({counts.frames} frames): "
          f"fresh {pct['fresh']:.1f} %  followed {pct['followed']:.1f} %  hidden "
          f"{pct['hidden']:.1f} %  (overlay {100 * counts.overlay_fraction:.1f} %"
          f"{f', no model {counts.no_model}' if counts.no_model else ''})")
    print(f"frame age    {_p(age_ms)} ms median / p95, capture -> on screen")
    print(f"GUI tick     {_p(tick_ms)} ms median / p95 ({len(tick_ms)} ticks: pull, show the "
          "frame, decide, update the overlay)")
    per_frame = len(paint_ms) / max(state["shown"], 1)
    print(f"paint        {_p(paint_ms)} ms median / p95 ({per_frame:.1f} repaints per frame "
          "shown)")
    print(f"model        {results / elapsed:.1f} results/s over the run, {model_rate_end:.1f}/s "
          f"at the end (model_rate); latency {_p(latency_ms)} ms median / p95")
    print(f"overlay age  {_p(session.overlay_age_ms)} ms median / p95 (frames with an overlay)")
    print(f"flow         {_p(session.flow_ms)} ms median / p95 ({len(session.flow_ms)} measured)")
    if playback:
        fps = getattr(source, "fps", None)
        print(f"playback     {np.median(playback):.2f} x real time (median of "
              f"{len(playback)} samples; clip {fps or '?'} fps), waits for the model: "
              f"{session.replay_waits}, frames not analysed "
              f"{getattr(source, 'frames_not_analysed', '-')}")
    banners = {k: v for k in window.banners if (v := window.banner_text(k))}
    print(f"banners      {banners or 'none'}")
    cells = [args.source, args.mode, args.follow, cpus, f"{state['shown'] / elapsed:.1f}",
             *(f"{pct[k]:.1f}" for k in ("fresh", "followed", "hidden")), _p(age_ms),
             _p(tick_ms), f"{results / elapsed:.1f}", _p(session.overlay_age_ms),
             _p(session.flow_ms), f"{np.median(playback):.2f}" if playback else "-"]
    print("| " + " | ".join(str(c) for c in cells) + " |")
    view_class.paintEvent = original_paint
    window.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
