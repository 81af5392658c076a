"""`sonoguide` command line: the window by default, or the same pipeline headless.

    sonoguide                                   window, phantom IJ scene, jugular model
    sonoguide --mode plexus                     window, phantom plexus scene, plexus model
    sonoguide --headless --source phantom --max-frames 600 --report r.json
    sonoguide --headless --source scan.mp4 --mode jugular --timeline areas.csv

Exit status: 0 when video ran (even without a model: the message says why there is no
overlay), 1 when nothing could run (source unusable, no frame), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.pipeline.analysis import MODES
from app.pipeline.providers import (
    PROVIDER_CHOICES,
    configure_cv2_threads,
    default_intra_op_threads,
)

DEFAULT_MODE = "jugular"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonoguide",
        description="Real-time ultrasound guidance overlays (research and training use, "
                    "not a medical device).")
    parser.add_argument("--source", default=None,
                        help="phantom | phantom:SCENE (jugular, plexus, axillary, "
                             "infraclavicular, elbow, femoral, popliteal) | camera:N | VIDEO_PATH "
                             "(default: the phantom scene of the mode)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                        help="plexus (nerve block) or jugular (IJ cannulation); default jugular")
    parser.add_argument("--model", default=None,
                        help="ONNX model to use instead of the mode's shipped model")
    parser.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                        help="inference provider; auto = GPU when usable, else CPU")
    parser.add_argument("--threads", type=_positive_int, default=default_intra_op_threads(),
                        help="ONNX Runtime intra-op threads (default: 2, or half the cores "
                             "up to 4; here %(default)s)")
    parser.add_argument("--headless", action="store_true",
                        help="run the pipeline without a window and print a summary")
    parser.add_argument("--max-frames", type=_positive_int, default=None,
                        help="headless: stop after N input frames")
    parser.add_argument("--duration", type=float, default=None,
                        help="headless: stop after this many seconds")
    parser.add_argument("--report", type=Path, default=None,
                        help="headless: write the run report as JSON here (with per-class "
                             "area median/min/max)")
    parser.add_argument("--timeline", type=Path, default=None, metavar="OUT.csv",
                        help="headless: write per-frame class areas as CSV (frame_id, t_s, one "
                             "column per class; mm2 when the pixel spacing is known, else px)")
    return parser


def resolve_source(spec: str | None, mode: str) -> str:
    """No source, or plain "phantom": the phantom scene that matches the mode."""
    if spec is None or spec.strip().lower() == "phantom":
        return f"phantom:{mode}"
    return spec


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.source = resolve_source(args.source, args.mode)
    configure_cv2_threads(1)  # see providers.configure_cv2_threads for why
    if args.headless:
        return run_headless_cli(args)
    try:
        from app.ui.app import run_gui
    except ImportError as exc:
        _say(f"the window cannot start ({exc}); try --headless")
        return 1
    return run_gui(args)


def run_headless_cli(args: argparse.Namespace) -> int:
    from app.pipeline.models import load_mode
    from app.pipeline.runner import detected_roi_provider, run_headless
    from app.pipeline.segmenter import ModelLoadError
    from app.pipeline.worker import InferenceWorker
    from app.sources.factory import open_source

    try:
        source = open_source(args.source)
    except ValueError as exc:
        _say(f"source: {exc}")
        return 1
    if args.max_frames is None and args.duration is None and hasattr(source, "loop"):
        source.loop = False  # a clip with no frame limit plays once, then the run reports
    errors: list[str] = []
    worker = roi_provider = None
    model_info = None
    try:
        segmenter, analyzer = load_mode(args.mode, args.model, args.provider, args.threads)
        if segmenter.provider_note:
            errors.append(f"provider: {segmenter.provider_note}")
        roi_provider = detected_roi_provider(errors)
        worker = InferenceWorker(segmenter, analyzer, roi_provider)
    except (ModelLoadError, ValueError) as exc:
        errors.append(f"model: {exc}")
        model_info = {"name": Path(args.model).stem if args.model else args.mode,
                      "version": None}
        _say(f"model: {exc} -- running video without overlay")
    areas: list = []
    report = run_headless(source, worker, args.max_frames, duration_s=args.duration,
                          errors=errors, model_info=model_info, areas_out=areas)
    report["mode"] = args.mode
    report["source_spec"] = args.source
    # the image area the model saw (x, y, w, h, full-frame px): check it without a window
    found = getattr(roi_provider, "found", {})
    report["roi"] = [[r.x, r.y, r.w, r.h] for r in found.values()]
    print(summary_line(report))
    if args.timeline is not None:
        from app.pipeline.timeline import write_csv

        try:
            write_csv(args.timeline, areas)
        except OSError as exc:
            _say(f"cannot write timeline {args.timeline}: {exc}")
            return 1
    if args.report is not None:
        try:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            _say(f"cannot write report {args.report}: {exc}")
            return 1
    return 0 if report["frames_in"] > 0 else 1


def summary_line(report: dict) -> str:
    lat = report["latency_ms"]
    model = report.get("model") or {}
    model_text = (f"model {model.get('name')} (version {model.get('version')}) on "
                  f"{report['provider']}"
                  if report["provider"] else f"model {model.get('name', '-')} not loaded")
    lat_text = (f"latency p50 {lat['p50']:.1f} ms p95 {lat['p95']:.1f} ms"
                if lat["p50"] is not None else "no overlay")
    return (f"{report['source']}: {report['frames_in']} frames in at "
            f"{report['input_fps']:.1f} fps, "
            f"{report['frames_inferred']} inferred ({100 * report['inferred_fraction']:.1f}%) "
            f"at {report['inference_fps']:.1f} fps, {lat_text}; "
            f"{model_text}; {len(report['errors'])} error(s)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _say(message: str) -> None:
    print(f"sonoguide: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
