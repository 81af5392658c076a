"""Grab the real window to assets/screenshot.png (for the README).

Runs the app on the phantom with the shipped models (or whatever is available: a missing model
shows its banner, which is what a user would see), lets it run, then grabs the window.

    xvfb-run -a -s "-screen 0 1600x1000x24" python packaging/screenshot.py
    python packaging/screenshot.py --mode jugular --source phantom:jugular --out /tmp/ij.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="default: the mode's phantom scene")
    parser.add_argument("--mode", default="plexus", choices=("plexus", "jugular"))
    parser.add_argument("--seconds", type=float, default=2.5, help="run time before the grab")
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshot.png")
    args = parser.parse_args(argv)

    from app.ui.app import ensure_app, real_deps
    from app.ui.controller import PHANTOM_SCENE_FOR_MODE
    from app.ui.window import MainWindow

    app = ensure_app()
    window = MainWindow(real_deps(args.provider, None),
                        source=args.source or PHANTOM_SCENE_FOR_MODE[args.mode], mode=args.mode)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
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
