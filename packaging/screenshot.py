"""Grab the real window to assets/screenshot.png (for the README).

Runs the app like `sonoguide` with no arguments (IJ phantom, jugular model; the shipped models,
or whatever is available: a missing model shows its banner, which is what a user would see),
lets it run long enough for the area chart to have a few seconds of history, then grabs the
window. On a phantom it presses the probe once (pressure 0 -> --press % -> 0, as a trainee
would with the Pressure slider) so the chart shows the vein collapsing and refilling beside
the pulsing artery; the grab comes after the release, with the vein open.

    xvfb-run -a -s "-screen 0 1600x1000x24" python packaging/screenshot.py
    xvfb-run -a -s "-screen 0 1366x768x24" python packaging/screenshot.py --size 1366x768 \
        --out /tmp/small.png
    python packaging/screenshot.py --mode plexus --press 0 --out /tmp/plexus.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pressure(elapsed: float, seconds: float, peak: int) -> int:
    """0 for the first quarter, up and down through the middle, 0 for the last quarter
    (trapezoid: ramps of an eighth of the run, a hold of a quarter)."""
    u = elapsed / seconds
    rise = min(max((u - 0.25) / 0.125, 0.0), 1.0)
    fall = min(max((0.75 - u) / 0.125, 0.0), 1.0)
    return round(peak * min(rise, fall))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="default: the mode's phantom scene")
    parser.add_argument("--mode", default="jugular", choices=("plexus", "jugular"),
                        help="default: jugular, as the app")
    parser.add_argument("--seconds", type=float, default=8.0, help="run time before the grab")
    parser.add_argument("--press", type=int, default=60,
                        help="phantom pressure %% at the middle of the run (0 = no press)")
    parser.add_argument("--needle", type=int, default=0,
                        help="phantom needle tip depth in mm, as the Needle tip slider (0 = none)")
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshot.png")
    args = parser.parse_args(argv)

    from sonoguide.ui.app import ensure_app, real_deps
    from sonoguide.ui.controller import PHANTOM_SCENE_FOR_MODE
    from sonoguide.ui.window import MainWindow

    app = ensure_app()
    window = MainWindow(real_deps(args.provider, None),
                        source=args.source or PHANTOM_SCENE_FOR_MODE[args.mode], mode=args.mode)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < args.seconds:
        if window.phantom_controls.simulator_attached and args.press:
            window.phantom_controls.pressure.setValue(_pressure(elapsed, args.seconds,
                                                                args.press))
        if window.phantom_controls.simulator_attached and args.needle:
            window.phantom_controls.needle.setValue(args.needle)
        app.processEvents()
        time.sleep(0.005)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(args.out))
    banners = {name: window.banner_text(name) for name in window.banners}
    print(f"screenshot {'written to' if ok else 'FAILED:'} {args.out}")
    print("banners:", {k: v for k, v in banners.items() if v} or "none")
    print("status:", " | ".join(label.text() for label in window.status_labels.values()))
    window.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
