"""GUI benchmark: run the real window for a while and print medians / p95.

    QT_QPA_PLATFORM=offscreen python -m app.ui.bench --seconds 10 --source phantom:plexus

Figures: GUI tick cost (pull frame + set image + overlay decision + paint), the age of each frame
when it reaches the screen, how often a fresh overlay is painted, and the model latency
(capture -> result) of the results painted. Rendering to a real display adds the paint cost
of the compositor, which offscreen does not include.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _stats(values: list[float]) -> str:
    if not values:
        return "n=0"
    a = np.asarray(values)
    return f"median {np.median(a):.2f}  p95 {np.percentile(a, 95):.2f}  n={len(a)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SonoGuide GUI benchmark")
    parser.add_argument("--source", default="phantom:plexus")
    parser.add_argument("--mode", default="plexus", choices=("plexus", "jugular"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from app.ui.app import ensure_app, real_deps
    from app.ui.window import MainWindow

    app = ensure_app()
    window = MainWindow(real_deps(args.provider, args.threads), source=args.source,
                        mode=args.mode, model_path=args.model)
    window.resize(1600, 1000)
    window.show()

    tick_ms: list[float] = []
    frame_age_ms: list[float] = []
    painted_latency_ms: list[float] = []
    ticks_with_new_frame = ticks_painted = 0
    last_frame = last_painted = None
    original_tick = window._tick

    def timed_tick() -> None:
        nonlocal ticks_with_new_frame, ticks_painted, last_frame, last_painted
        t0 = time.perf_counter()
        original_tick()
        tick_ms.append((time.perf_counter() - t0) * 1000)
        frame = window.shown_frame
        if frame is not None and frame is not last_frame:
            last_frame = frame
            ticks_with_new_frame += 1
            frame_age_ms.append((time.monotonic() - frame.t_capture) * 1000)
            if window.overlay.visible:
                ticks_painted += 1
        if window.painted is not None and window.painted is not last_painted:
            last_painted = window.painted
            painted_latency_ms.append(window.painted.latency_s * 1000)

    window._timer.timeout.disconnect()
    window._timer.timeout.connect(timed_tick)
    warmup_end = time.monotonic() + 2.0  # model load + first frames
    while time.monotonic() < warmup_end:
        app.processEvents()
        time.sleep(0.002)
    tick_ms.clear(), frame_age_ms.clear(), painted_latency_ms.clear()
    ticks_with_new_frame = ticks_painted = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.002)

    print(f"source {args.source}  mode {args.mode}  "
          f"model {window.model.version if window.model else 'none'}  "
          f"provider {window.model.provider if window.model else '-'}")
    print(f"frames shown       {ticks_with_new_frame / args.seconds:.1f} /s")
    print(f"GUI tick (ms)      {_stats(tick_ms)}")
    print(f"frame age at show  {_stats(frame_age_ms)}  (ms since capture)")
    print(f"overlay on frames  {100 * ticks_painted / max(ticks_with_new_frame, 1):.0f} %")
    print(f"painted latency    {_stats(painted_latency_ms)}  (ms capture -> result)")
    banners = {k: v for k in window.banners if (v := window.banner_text(k))}
    print(f"banners at end     {banners or 'none'}")
    window.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
