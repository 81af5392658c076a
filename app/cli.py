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
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from sonoguide.logs import LEVELS, app_version, configure_logging, log_start
from sonoguide.phantom.scenes import SOURCE_SCENES
from sonoguide.pipeline.analysis import DEFAULT_MODE, MODE_SCENES, MODES
from sonoguide.pipeline.providers import (
    PROVIDER_CHOICES,
    configure_cv2_threads,
)
from sonoguide.pipeline.session import (
    DEFAULT_BUDGET_S,
    FOLLOW_MOTION,
    HIDE,
    HOLD,
    LiveSession,
    OverlayPolicy,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonoguide",
        description="Real-time ultrasound guidance overlays (research and training use, "
                    "not a medical device).")
    parser.add_argument("--version", action="version", version=f"sonoguide {app_version()}")
    parser.add_argument("--source", default=None,
                        help=f"phantom | phantom:SCENE ({', '.join(SOURCE_SCENES)}) | camera:N | "
                             "VIDEO_PATH | DICOM_PATH | RECORDING_FOLDER (default: the phantom "
                             "scene of the mode)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE,
                        help="plexus (nerve block) or jugular (IJ cannulation); default jugular")
    parser.add_argument("--model", default=None,
                        help="ONNX model to use instead of the mode's shipped model")
    parser.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                        help="inference provider; auto = GPU when usable, else CPU")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="ONNX Runtime intra-op threads (default: measured fastest on this "
                             "machine with the model, see --calibrate-speed)")
    parser.add_argument("--calibrate-speed", action="store_true",
                        help="time every shipped model variant (int8, float32) and thread "
                             "count on this machine again, keep the fastest the model card "
                             "allows, print the table and exit")
    parser.add_argument("--budget-ms", type=float, default=1000.0 * DEFAULT_BUDGET_S,
                        help="a model result older than this is never drawn (default "
                             "%(default).0f ms)")
    parser.add_argument("--follow", choices=(FOLLOW_MOTION, HOLD, HIDE), default=FOLLOW_MOTION,
                        help="between model results: move the last one with the measured image "
                             "motion (motion, default), draw it unmoved (hold), or draw "
                             "nothing (hide)")
    parser.add_argument("--analyse-every-frame", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="video files: playback waits for the model on every frame "
                             "(default on; live sources always show the newest frame)")
    parser.add_argument("--log-level", choices=LEVELS, default="INFO",
                        help="how much goes to the log file (%(default)s; warnings also go to "
                             "stderr); the file is in the user's log folder, see README")
    parser.add_argument("--headless", action="store_true",
                        help="run the pipeline without a window and print a summary")
    parser.add_argument("--max-frames", type=_positive_int, default=None,
                        help="headless: stop after N input frames")
    parser.add_argument("--duration", type=float, default=None,
                        help="headless: stop after this many seconds")
    parser.add_argument("--report", type=Path, default=None,
                        help="headless: write the run report as JSON here (with per-class "
                             "area median/min/max)")
    parser.add_argument("--record", type=Path, default=None, metavar="DIR",
                        help="headless: record the image area of every frame and what was "
                             "shown on it into this new folder (replay: --source DIR)")
    parser.add_argument("--recorded-findings", action="store_true",
                        help="replaying a recording: report (and show) the findings recorded "
                             "with it instead of analysing it again")
    parser.add_argument("--timeline", type=Path, default=None, metavar="OUT.csv",
                        help="headless: write per-frame class areas as CSV (frame_id, t_s, one "
                             "column per class; mm2 when the pixel spacing is known, else px)")
    return parser


def resolve_source(spec: str | None, mode: str) -> str:
    """No source, or plain "phantom": the phantom scene that matches the mode."""
    if spec is None or spec.strip().lower() == "phantom":
        return MODE_SCENES[mode]
    return spec


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    log_start(sys.argv[1:] if argv is None else list(argv))
    args.source = resolve_source(args.source, args.mode)
    configure_cv2_threads(1)  # see providers.configure_cv2_threads for why
    if args.calibrate_speed:
        return calibrate_speed_cli(args)
    if args.headless:
        return run_headless_cli(args)
    try:
        from sonoguide.ui.app import run_gui
    except ImportError as exc:
        _say(f"the window cannot start ({exc}); try --headless")
        return 1
    return run_gui(args)


def build_session(args: argparse.Namespace, errors: list[str],
                  notes: list[str] | None = None) -> LiveSession:
    """The live session the headless run drives: remembered or detected image area and scale
    (the same store the window uses), the overlay policy from the arguments."""
    from sonoguide.pipeline.calibration import RoiStore
    from sonoguide.pipeline.depth_scale import find_depth_scale
    from sonoguide.pipeline.image_area import ImageArea
    from sonoguide.pipeline.roi import detect_roi

    # a settings file moved aside is a problem; what the image area found (its size changed,
    # a scale read from the ruler) is news, not an error
    say = notes.append if notes is not None else errors.append
    area = ImageArea(detect_roi, RoiStore(say=errors.append), say=say,
                     find_scale=find_depth_scale)
    policy = OverlayPolicy(budget_s=args.budget_ms / 1000.0, follow=args.follow)
    return LiveSession(area, policy=policy, analyse_every_frame=args.analyse_every_frame)


def run_headless_cli(args: argparse.Namespace) -> int:
    from sonoguide.pipeline.models import load_for_machine
    from sonoguide.pipeline.runner import run_headless
    from sonoguide.pipeline.segmenter import ModelLoadError
    from sonoguide.sources.factory import open_source, source_key

    try:
        source = open_source(args.source)
    except ValueError as exc:
        _say(f"source: {exc}")
        return 1
    if args.max_frames is None and args.duration is None and hasattr(source, "loop"):
        source.loop = False  # a clip with no frame limit plays once, then the run reports
    errors: list[str] = []
    notes: list[str] = []
    session = build_session(args, errors, notes)
    session.set_source(source, source_key(args.source))
    model_info = None
    try:
        if args.recorded_findings:
            from sonoguide.sources.recording import RecordingSource, recorded_findings

            if not isinstance(source, RecordingSource):
                _say("--recorded-findings needs a recording folder as --source")
                return 2
            model = recorded_findings(source)
        else:
            model = load_for_machine(args.mode, args.model, args.provider, args.threads)
        if model.segmenter.provider_note:
            errors.append(f"provider: {model.segmenter.provider_note}")
        if model.settings_problem:
            errors.append(f"settings: {model.settings_problem}")
        session.set_model(model)
    except (ModelLoadError, ValueError) as exc:
        errors.append(f"model: {exc}")
        model_info = {"name": Path(args.model).stem if args.model else args.mode,
                      "version": None}
        _say(f"model: {exc} -- running video without overlay")
    timeline = None
    if args.timeline is not None:
        from sonoguide.pipeline.timeline import TimelineCsv

        try:
            timeline = TimelineCsv(args.timeline)
        except OSError as exc:
            _say(f"cannot write timeline {args.timeline}: {exc}")
            return 1
    recorder = None
    if args.record is not None:
        from sonoguide.pipeline.recording import Recorder

        try:
            recorder = Recorder(args.record, info=_recording_info(args, session),
                                fps=source.nominal_fps or 30.0,
                                on_stop=lambda reason: errors.append(f"recording: {reason}"))
        except (OSError, ValueError) as exc:
            _say(f"cannot record into {args.record}: {exc}")
            return 1
        session.start_recording(recorder)
    with _stop_on_signals() as (stop_event, signals):
        if args.max_frames is None and args.duration is None and not hasattr(source, "loop"):
            _say(f"running on {args.source} until stopped: Ctrl-C (or SIGTERM) ends the run "
                 "and writes the report")
        report = run_headless(session, args.max_frames, duration_s=args.duration,
                              errors=errors, model_info=model_info, stop_event=stop_event,
                              stop_reason=lambda: "signal" if signals else "stopped",
                              on_area=timeline.add if timeline is not None else None)
    if signals:
        report["signal"] = signals[0]
    if recorder is not None:
        status = recorder.stop()
        report["recording"] = {"folder": str(status.folder), "frames": status.frames,
                               "seconds": status.seconds, "dropped": status.dropped,
                               "stopped_because": status.stopped_because or None}
    report["mode"] = args.mode
    report["notes"] = notes
    report["source_spec"] = args.source
    report["speed_choice"] = session.model.speed_note if session.model is not None else ""
    print(summary_line(report))
    if timeline is not None:
        try:
            timeline.close()
        except OSError as exc:
            _say(f"cannot write timeline {args.timeline}: {exc}")
            return 1
    if args.report is not None:
        try:
            from sonoguide.pipeline.files import write_atomically

            write_atomically(args.report, json.dumps(report, indent=2, allow_nan=False) + "\n")
        except (OSError, ValueError) as exc:
            _say(f"cannot write report {args.report}: {exc}")
            return 1
    return 0 if report["frames_in"] > 0 else 1


def _recording_info(args: argparse.Namespace, session: LiveSession) -> dict:
    """What recording.json says about where the pictures came from."""
    segmenter = session.model.segmenter if session.model is not None else None
    return {"source": args.source, "mode": args.mode,
            "model": None if segmenter is None else {
                "name": segmenter.name, "version": segmenter.contract.version}}


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[tuple[threading.Event, list[str]]]:
    """SIGTERM (a service manager, `kill`) and SIGINT (Ctrl-C) end a headless run the way its
    end of input would: the run stops, the report and timeline are written, and the report
    says `ended_by: "signal"`. Yields the event the run watches and the names received."""
    stop_event = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop_event.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop_event, received  # Python only delivers signals to the main thread
        return
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop_event, received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def calibrate_speed_cli(args: argparse.Namespace) -> int:
    """Measure the shipped variants of every mode again and print what was chosen."""
    from sonoguide.pipeline.segmenter import ModelLoadError
    from sonoguide.pipeline.speed import choose_speed, format_table

    options = None if args.threads is None else (args.threads,)
    for mode in MODES:
        try:
            choice = choose_speed(mode, thread_options=options, recalibrate=True,
                                  progress=lambda text: print(f"  {text}", flush=True))
        except ModelLoadError as exc:
            _say(f"{mode}: {exc}")
            return 1
        print(format_table(mode, choice))
    return 0


def summary_line(report: dict) -> str:
    lat = report["latency_ms"]
    model = report.get("model") or {}
    model_text = (f"model {model.get('name')} (version {model.get('version')}) on "
                  f"{report['provider']}"
                  if report["provider"] else f"model {model.get('name', '-')} not loaded")
    lat_text = (f"latency p50 {lat['p50']:.1f} ms p95 {lat['p95']:.1f} ms"
                if lat["p50"] is not None else "no overlay")
    shown = report.get("shown") or {}
    shown_text = ""
    if shown.get("frames") and report["provider"]:
        shown_text = (f"; overlay on {100 * shown['overlay_fraction']:.1f}% of frames shown "
                      f"({shown['fresh']} fresh, {shown['followed']} motion-followed, "
                      f"{shown['hidden']} hidden)")
    return (f"{report['source']}: {report['frames_in']} frames in at "
            f"{report['input_fps']:.1f} fps, "
            f"{report['frames_inferred']} inferred ({100 * report['inferred_fraction']:.1f}%) "
            f"at {report['inference_fps']:.1f} fps, {lat_text}{shown_text}; "
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
