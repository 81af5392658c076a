"""Throw bad inputs at the app's boundaries: each must end in a clear message or a correct result.

    python -m tests.reliability.fuzz [--seed 0] [--cases 1200] [--time-limit 600]
                                     [--out report.json] [--case N]

Four categories, interleaved (frames 40 %, clips, models and settings 20 % each):

  frames    every numpy dtype, shape, memory layout and value range (NaN, +-Inf, 16-bit, 0..1
            floats) through frames.as_frame_image and Segmenter.predict on a small real model.
  clips     valid clips cut at random bytes, bit-flipped, empty, random bytes, folders, missing
            and over-long names, stills and 1-frame clips, bad source specs: open_source(),
            start(), frames pulled for a bounded time, stop().
  models    ONNX models with random or broken metadata, damaged files, and outputs that are
            NaN/Inf always (refused at load) or only on bright frames (dropped by the worker).
  settings  rois.json, speed.json and the model card as nested JSON, FIFOs, huge sparse files,
            folders, invalid UTF-8, NaN, symlink loops, wrong types, and a remembered image
            area outside any frame (ImageArea must refuse it).

Each case ends as one of: correct (a right result), message (refused with a clear message), or
a failure: crash (an exception the boundary does not document, a traceback, a dead process),
hang (no answer within the case's timeout, or a thread left running), garbage (a wrong result
given silently) or wrong (a valid input refused). Cases run one at a time in a sandbox child
process, so a segfault, a blocked open() or a runaway allocation is charged to its case and the
run goes on. Case i of a seed is always the same input (--case N reruns it alone), so a shorter
run is a prefix of a longer one. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CORRECT, MESSAGE = "correct", "message"
CRASH, HANG, GARBAGE, WRONG = "crash", "hang", "garbage", "wrong"
OUTCOMES = (CORRECT, MESSAGE, CRASH, HANG, GARBAGE, WRONG)
FAILURES = (CRASH, HANG, GARBAGE, WRONG)
CATEGORIES = ("frames", "clips", "models", "settings")
# One round of the interleaving: frames 2 in 5, the others 1 in 5 each.
ROUND = ("frames", "clips", "frames", "models", "settings")
# Per-case limits, generous for a slow CI core: a clip plays up to 3 s, a model case loads a
# session and may run a worker over a few frames.
TIMEOUT_S = {"frames": 15.0, "clips": 20.0, "models": 30.0, "settings": 10.0}
START_TIMEOUT_S = 120.0  # the sandbox's imports and the shared test media
CLIP_WATCH_S = 3.0  # how long a clip case waits for a frame or an end/error state
MODEL_MEMORY_HEADROOM = 3 << 30  # bytes a model case may add: more means a runaway allocation

# --- the plan: case i of a seed is always the same input -----------------------------------

# Repeats weight the kinds the app converts (uint8, 16-bit, float) over those it refuses.
FRAME_KINDS = ("bool", "int8", "uint8", "uint8", "uint8", "int16", "uint16", "uint16", "int32",
               "int64", "uint32", "uint64", "float16", "float16", "float32", "float32",
               "float32", "float64", "float64", "complex64", "object", "str", ">u2", ">f4",
               "not_array")
FRAME_SHAPES = ("0d", "1d", "0x0", "0xW", "HW0", "1x1", "HW", "HW", "HW", "HW1", "HW2", "HW3",
                "HW3", "HW3", "HW4", "HW4", "HW5", "4d", "wide", "tall", "wide_rgb")
FRAME_VALUES = ("full", "byte", "byte", "unit", "unit", "full16", "low16", "const", "nan",
                "posinf", "neginf", "negative", "over255", "huge")
FRAME_LAYOUTS = ("C", "C", "F", "strided", "reversed", "broadcast", "readonly", "transposed")
NOT_ARRAYS = ("none", "list", "bytes", "str", "float", "numpy_scalar", "memoryview", "dict")

CLIP_KINDS = ("valid", "cut", "cut", "flip", "flip_header", "zero", "random_bytes", "text",
              "image_as_video", "wrong_suffix", "dir", "missing", "long_name", "bad_spec",
              "bad_spec", "long_path", "unicode_name", "one_frame", "still_image",
              "cut_while_playing")
# What a clip case must end in: frames (a correct result), a message, or either.
CLIP_EXPECT = {"valid": "frames", "long_path": "frames", "unicode_name": "frames",
               "one_frame": "frames", "still_image": "frames", "dir": "message",
               "missing": "message", "long_name": "message", "bad_spec": "message"}

META_MUTATIONS = ("no_metadata", "missing_key", "classes_not_json", "classes_not_list",
                  "classes_too_few", "classes_non_str", "classes_duplicate",
                  "classes_no_background", "classes_blank_name", "classes_unicode",
                  "classes_count_mismatch", "input_not_json", "input_not_object",
                  "input_missing_field", "size_bad", "size_huge", "size_lenient",
                  "size_mismatch", "norm_bad", "norm_extreme", "unsure_bad", "unsure_ok",
                  "text_garbage", "extra_keys", "huge_value")
MODEL_FILES = ("truncated", "bitflip", "zero", "text", "png", "random", "dir", "missing",
               "symlink_loop", "fifo")
NONFINITE_ALWAYS = ("nan_always", "inf_always", "neginf_always", "mul_inf", "presence_nan",
                    "presence_inf")
NONFINITE_SOMETIMES = ("nan_bright", "inf_bright", "presence_nan_bright", "neginf_class_bright")
MODEL_KINDS = (tuple(f"meta:{m}" for m in META_MUTATIONS)
               # the long lists of bad values come up more often
               + ("meta:size_bad", "meta:size_bad", "meta:norm_bad", "meta:unsure_bad")
               + tuple(f"file:{f}" for f in MODEL_FILES)
               + tuple(f"always:{n}" for n in NONFINITE_ALWAYS)
               + tuple(f"sometimes:{n}" for n in NONFINITE_SOMETIMES))

SETTINGS_CONTENTS = ("nested_list", "nested_obj", "deep_entry", "fifo", "huge_sparse",
                     "directory", "invalid_utf8", "nan", "top_level", "symlink_loop",
                     "dangling_symlink", "empty", "random_bytes", "truncated", "bom", "huge_int",
                     "unreadable", "valid")
SETTINGS_KINDS = (tuple(f"{target}:{c}" for target in ("rois", "speed", "card")
                        for c in SETTINGS_CONTENTS)
                  + ("rois:wrong_types", "rois:roi_outside", "rois:roi_outside",
                     "rois:many_entries", "rois:long_key", "speed:garbage_entry",
                     "speed:garbage_entry", "speed:garbage_entry"))

KINDS = {"frames": FRAME_KINDS, "clips": CLIP_KINDS, "models": MODEL_KINDS,
         "settings": SETTINGS_KINDS}


@dataclass(frozen=True)
class Case:
    index: int
    category: str
    kind: str
    params: dict

    def describe(self) -> str:
        shown = {k: v for k, v in self.params.items() if k not in ("seed", "variant")}
        extra = " ".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.category}/{self.kind}" + (f" {extra}" if extra else "")


def _kind_stream(seed: int, category: str) -> Iterator[str]:
    """The category's kinds over and over, each pass in a fresh shuffled order: every kind
    comes up once per pass, so even a short run covers them all."""
    rng = random.Random(f"{seed}/{category}/kinds")
    kinds = list(KINDS[category])
    while True:
        rng.shuffle(kinds)
        yield from kinds


def _params(category: str, kind: str, rng: random.Random, variant: int) -> dict:
    """The case's random choices; the input itself is built in the sandbox from params["seed"]."""
    p: dict[str, Any] = {}
    if category == "frames":
        if kind == "not_array":
            p["value"] = rng.choice(NOT_ARRAYS)
        else:
            p.update(shape=rng.choice(FRAME_SHAPES), values=rng.choice(FRAME_VALUES),
                     layout=rng.choice(FRAME_LAYOUTS))
    elif category == "clips":
        p["container"] = rng.choice(("avi", "mp4"))
    elif category == "settings":
        p["default_path"] = rng.random() < 0.3  # the settings folder from XDG_CONFIG_HOME
    p["seed"] = rng.getrandbits(31)
    p["variant"] = variant
    return p


def make_plan(seed: int, n: int) -> list[Case]:
    streams = {c: _kind_stream(seed, c) for c in CATEGORIES}
    seen: Counter = Counter()
    cases = []
    for i in range(n):
        category = ROUND[i % len(ROUND)]
        kind = next(streams[category])
        # which entry of the kind's list of bad values: the next one each time, from a start
        # that depends on the seed
        start = random.Random(f"{seed}/{category}/{kind}/variant").randrange(10_000)
        variant = start + seen[category, kind]
        seen[category, kind] += 1
        cases.append(Case(i, category, kind, _params(category, kind, random.Random(
            f"{seed}/{i}"), variant)))
    return cases


# --- the parent: runs the plan through the sandbox, keeps the score -------------------------

@dataclass
class CaseResult:
    index: int
    category: str
    kind: str
    input: str
    outcome: str
    detail: str
    seconds: float


@dataclass
class Report:
    seed: int
    planned: int
    results: list[CaseResult] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped_early: bool = False
    time_limit_s: float = 0.0

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.outcome in FAILURES]

    def counts(self, category: str | None = None) -> Counter:
        return Counter(r.outcome for r in self.results
                       if category is None or r.category == category)

    def summary_line(self) -> str:
        c = self.counts()
        n, failed = len(self.results), sum(c[o] for o in FAILURES)
        line = (f"{n} bad inputs: {n - failed} handled ({c[MESSAGE]} clear messages, "
                f"{c[CORRECT]} correct results), {failed} failures")
        if self.stopped_early:
            line += (f" -- stopped early at the {self.time_limit_s:g} s time limit, "
                     f"{n} of {self.planned} cases run")
        return line

    def table(self) -> str:
        head = f"{'category':<10}{'cases':>7}" + "".join(f"{o:>9}" for o in OUTCOMES)
        lines = [head, "-" * len(head)]
        for category in (*CATEGORIES, None):
            c = self.counts(category)
            n = sum(c.values())
            lines.append(f"{category or 'total':<10}{n:>7}" + "".join(f"{c[o]:>9}"
                                                                   for o in OUTCOMES))
        return "\n".join(lines)

    def failure_lines(self, rerun: str) -> list[str]:
        """Each distinct failure once (same kind, outcome and first words), with a rerun line."""
        groups: dict[tuple, list[CaseResult]] = {}
        for r in self.failures:
            sig = (r.outcome, r.category, r.kind, re.sub(r"\d+", "N", r.detail[:60]))
            groups.setdefault(sig, []).append(r)
        lines = []
        for (outcome, category, kind, _sig), rs in groups.items():
            first = rs[0]
            lines.append(f"FAIL [{outcome}] {category}/{kind} x{len(rs)}, e.g. case "
                         f"{first.index}: {first.input}")
            lines += [f"    {line}" for line in first.detail.splitlines()[:8]]
            lines.append(f"    rerun: {rerun} --case {first.index}")
        return lines

    def format(self) -> str:
        out = [self.table(), "", self.summary_line(), f"run time {self.elapsed_s:.1f} s"]
        failures = self.failure_lines(f"python -m tests.reliability.fuzz --seed {self.seed}")
        if failures:
            out += ["", *failures]
        return "\n".join(out)

    def to_json(self) -> dict:
        return {"seed": self.seed, "planned": self.planned, "run": len(self.results),
                "elapsed_s": round(self.elapsed_s, 2), "stopped_early": self.stopped_early,
                "summary": self.summary_line(),
                "by_category": {c: dict(self.counts(c)) for c in CATEGORIES},
                "cases": [asdict(r) for r in self.results]}


class Sandbox:
    """One child process that runs cases; replaced when a case kills it or never answers."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited threads
        self._proc: Any = None
        self._conn: Any = None
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_child_main, args=(child, str(self.work)),
                                       name="fuzz-sandbox", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(START_TIMEOUT_S):
            self._kill()
            raise RuntimeError(f"the fuzz sandbox did not start within {START_TIMEOUT_S:g} s "
                               f"(see {self.work / 'sandbox.log'})")
        try:
            hello = parent.recv()
        except EOFError:
            hello = None
        if hello != "ready":
            self._kill()
            raise RuntimeError(f"the fuzz sandbox failed to start: {hello!r} "
                               f"(see {self.work / 'sandbox.log'})")

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(5.0)
        if self._conn is not None:
            self._conn.close()

    def _restart(self) -> None:
        self._kill()
        self.restarts += 1
        self._start()

    def run(self, case: Case, timeout: float) -> tuple[str, str, str]:
        """(outcome, detail, input description) of one case."""
        try:
            self._conn.send(case)
        except OSError:  # the child died after its last answer (a thread's late fault)
            self._restart()
            self._conn.send(case)
        if self._conn.poll(timeout):
            try:
                return self._conn.recv()
            except EOFError:
                pass
        else:
            if self._proc.is_alive():
                self._restart()
                return HANG, f"no answer within {timeout:g} s (the sandbox was killed)", ""
        self._proc.join(5.0)
        code = self._proc.exitcode
        self._restart()
        how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return CRASH, f"the process died ({how}) while handling this input", ""

    def close(self) -> None:
        try:
            self._conn.send(None)
            self._proc.join(5.0)
        except (OSError, ValueError):
            pass
        self._kill()


def run(seed: int = 0, cases: int = 1200, time_limit: float = 600.0, out: str | None = None,
        echo: Callable[[str], None] | None = print, only: int | None = None) -> Report:
    """Run the first `cases` cases of `seed` (or only case `only`); stops starting new cases
    after `time_limit` s (the case then running may take its own timeout more)."""
    plan = make_plan(seed, cases if only is None else only + 1)
    if only is not None:
        plan = plan[only:]
    report = Report(seed, len(plan), time_limit_s=time_limit)
    work = Path(tempfile.mkdtemp(prefix="sonoguide-fuzz-"))
    t0 = time.monotonic()
    sandbox = None
    try:
        sandbox = Sandbox(work)
        for case in plan:
            if time.monotonic() - t0 > time_limit:
                report.stopped_early = True
                break
            t_case = time.monotonic()
            outcome, detail, described = sandbox.run(case, TIMEOUT_S[case.category])
            detail, described = _printable(detail), _printable(described)
            report.results.append(CaseResult(case.index, case.category, case.kind,
                                             described or case.describe(), outcome, detail,
                                             round(time.monotonic() - t_case, 3)))
            if echo is not None and only is not None:
                echo(f"case {case.index}: {described or case.describe()}\n"
                     f"  {outcome}: {detail}")
            elif echo is not None and len(report.results) % 100 == 0:
                echo(f"  ... {len(report.results)} cases, {len(report.failures)} failures, "
                     f"{time.monotonic() - t0:.0f} s")
    finally:
        if sandbox is not None:
            sandbox.close()
        report.elapsed_s = time.monotonic() - t0
        _remove_tree(work)
    if echo is not None:
        echo(report.format())
    if out:
        Path(out).write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
    return report


def _printable(text: str) -> str:
    """Lone surrogates and the like (a fuzzed name quoted in a message) as escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _remove_tree(path: Path) -> None:
    """rmtree that also gets through folders a case made unreadable (chmod 000)."""
    def unlock(func, name, _exc) -> None:
        try:
            os.chmod(os.path.dirname(name), 0o700)
            os.chmod(name, 0o700)
            func(name)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=unlock)
    else:
        shutil.rmtree(path, onerror=unlock)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.reliability.fuzz",
                                description="Fuzz SonoGuide's boundaries with bad inputs.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=1200)
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--out", help="write the full report (every case) as JSON here")
    p.add_argument("--case", type=int, help="rerun only this case of the seed's plan")
    a = p.parse_args(argv)
    report = run(a.seed, a.cases, a.time_limit, a.out, only=a.case)
    return 1 if report.failures else 0


# --- the sandbox child ------------------------------------------------------------------------
# Everything below runs in the child process: it imports the app, builds the inputs from each
# case's seed and judges what the app did with them.

FRAME_WORDS = ("frame", "roi", "image", "picture", "pixel")
SOURCE_WORDS = ("source", "video", "file", "camera", "phantom", "folder", "clip", "play")
CLIP_SIZE = (160, 120)  # (w, h) of the shared test clips
CLIP_FRAMES = 12
CLIP_FPS = 120.0  # a whole clip plays in 0.1 s
MODEL_SIZE = (32, 32)
CLASSES = ("background", "nerve", "vessel")


def _exc_head(exc: BaseException) -> str:
    """Exception type, message and the innermost frames: enough to find the code to fix."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    name = type(exc).__name__
    module = type(exc).__module__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    return f"{name}: {str(exc)[:300]}" + (f"\n  at {where}" if where else "")


def _says_nonfinite(text: str) -> bool:
    return bool(re.search(r"non-?finite|\bnan\b|\binf", text, re.IGNORECASE))


def _clear(exc: BaseException, types: tuple[type, ...], words: tuple[str, ...] = ()) -> bool:
    """A documented refusal: the documented type, and a message a person can act on."""
    text = str(exc).strip()
    return (isinstance(exc, types) and bool(text) and "Traceback" not in text
            and (not words or any(w in text.lower() for w in words)))


class _Capture:
    """Warnings logged by the app and exceptions that escaped threads, per case."""

    def __init__(self) -> None:
        import logging

        self.warnings: list[str] = []
        self.thread_errors: list[str] = []
        capture = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    capture.warnings.append(record.getMessage())
                except Exception:  # a message that cannot be formatted is still a message
                    capture.warnings.append(str(record.msg))

        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        root.addHandler(Handler(logging.WARNING))
        root.setLevel(logging.WARNING)

        def hook(args: threading.ExceptHookArgs) -> None:
            name = args.thread.name if args.thread is not None else "?"
            if args.exc_value is not None:
                capture.thread_errors.append(f"thread {name}: {_exc_head(args.exc_value)}")

        threading.excepthook = hook

    def reset(self) -> None:
        self.warnings.clear()
        self.thread_errors.clear()


class _Env:
    """The child's shared media and helpers (built once, reused by every case)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.assets = work / "assets"
        self.assets.mkdir(parents=True, exist_ok=True)
        self.capture = _Capture()
        self._segmenter: Any = None
        self.home = work / "home"  # every settings path the app derives lands in here
        self.home.mkdir(exist_ok=True)
        os.environ["HOME"] = str(self.home)
        os.environ["XDG_CONFIG_HOME"] = str(self.home / ".config")
        os.environ["APPDATA"] = str(self.home / "AppData")

    def case_dir(self, case: Case) -> Path:
        d = self.work / "cases" / f"{case.index:06d}"
        if d.exists():
            _remove_tree(d)
        d.mkdir(parents=True)
        return d

    def asset(self, name: str) -> Path:
        """Shared media, written once (through a temporary name: a killed child never leaves
        half a file for the next one)."""
        path = self.assets / name
        if path.exists():
            return path
        tmp = self.assets / f"tmp-{os.getpid()}-{name}"
        _write_asset(name, tmp)
        os.replace(tmp, path)
        return path

    def segmenter(self) -> Any:
        if self._segmenter is None:
            from sonoguide.pipeline.segmenter import Segmenter

            self._segmenter = Segmenter(self.asset("threshold.onnx"), provider="cpu",
                                        intra_op_threads=1)
        return self._segmenter


def _write_asset(name: str, tmp: Path) -> None:
    import cv2

    from tests.clips import frame_image, write_clip
    from tests.model_factory import make_model

    stem, suffix = name.rsplit(".", 1)
    if name == "threshold.onnx":
        make_model(tmp, CLASSES, (48, 64), presence=True)
    elif stem in ("clip", "one_frame"):
        n = CLIP_FRAMES if stem == "clip" else 1
        write_clip(tmp, n, CLIP_FPS, CLIP_SIZE, {"avi": "MJPG", "mp4": "mp4v"}[suffix])
    elif stem == "still":
        ok, data = cv2.imencode(f".{suffix}", frame_image(5, CLIP_SIZE))
        if not ok:
            raise RuntimeError(f"cannot encode a {suffix} still")
        tmp.write_bytes(data.tobytes())
    else:
        raise ValueError(f"unknown asset {name}")


def _child_main(conn: Any, work: str) -> None:
    work_dir = Path(work)
    # FFmpeg, ONNX Runtime and OpenCV talk on stderr; keep the run's own output readable.
    log = os.open(work_dir / "sandbox.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        import sonoguide  # noqa: F401  (telemetry off before onnxruntime loads)
        import sonoguide.pipeline.segmenter  # noqa: F401
        import sonoguide.sources.factory  # noqa: F401

        env = _Env(work_dir)
        for name in ("threshold.onnx", "clip.avi", "clip.mp4"):
            env.asset(name)
    except Exception as exc:
        conn.send(f"setup failed: {_exc_head(exc)}")
        return
    conn.send("ready")
    runners = {"frames": _frames_case, "clips": _clips_case, "models": _models_case,
               "settings": _settings_case}
    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        if case is None:
            return
        env.capture.reset()
        described = [""]
        try:
            outcome, detail = runners[case.category](case, env, described)
        except Exception as exc:  # the fuzz's own mistake: counted, and shown as such
            outcome, detail = CRASH, f"fuzz harness error (not the app's): {_exc_head(exc)}"
        if env.capture.thread_errors and outcome not in FAILURES:
            outcome, detail = CRASH, "an exception escaped a thread: " + "; ".join(
                env.capture.thread_errors)[:600]
        conn.send((outcome, detail, described[0]))


# --- frames ------------------------------------------------------------------------------------

def _not_array(which: str) -> object:
    import numpy as np

    return {"none": None, "list": [[0, 128], [255, 7]], "bytes": b"\x00" * 64,
            "str": "frame", "float": 3.5, "numpy_scalar": np.uint8(7),
            "memoryview": memoryview(bytes(64)), "dict": {"image": [1, 2]}}[which]


def _frame_shape(kind: str, h: int, w: int, big: int) -> tuple[int, ...]:
    return {"0d": (), "1d": (w,), "0x0": (0, 0), "0xW": (0, w), "HW0": (h, w, 0),
            "1x1": (1, 1), "HW": (h, w), "HW1": (h, w, 1), "HW2": (h, w, 2), "HW3": (h, w, 3),
            "HW4": (h, w, 4), "HW5": (h, w, 5), "4d": (1, h, w, 3), "wide": (1, big),
            "tall": (big, 1), "wide_rgb": (2, big // 2, 3)}[kind]


def _base_values(values: str, shape: tuple[int, ...], rng: Any) -> Any:
    """float64 pixel values of the requested kind (NaN/Inf sprinkled where asked)."""
    import numpy as np

    draw = {"byte": (0, 255), "unit": (0, 1), "full16": (0, 65535), "low16": (0, 4095),
            "negative": (-255, 255), "over255": (0, 1000), "full": (0, 255)}
    if values in draw:
        v = rng.uniform(*draw[values], size=shape)
    elif values == "const":
        v = np.full(shape, float(rng.uniform(0, 255)))
    elif values == "huge":
        v = rng.uniform(-1, 1, size=shape) * 1e300
    else:  # nan / posinf / neginf: byte values with a few special ones
        v = rng.uniform(0, 255, size=shape)
        special = {"nan": np.nan, "posinf": np.inf, "neginf": -np.inf}[values]
        if v.size:
            flat = v.reshape(-1)
            flat[rng.integers(0, flat.size, size=max(1, flat.size // 100))] = special
    return v


def _cast(v: Any, dtype: str, values: str, rng: Any) -> Any:
    import numpy as np

    if dtype == "bool":
        return v > 127
    if dtype in ("object", "str"):
        ints = np.clip(np.nan_to_num(v), -1e15, 1e15).round().astype(np.int64)
        return ints.astype(object) if dtype == "object" else ints.astype(str)
    if dtype == "complex64":
        return (v + 1j * rng.uniform(0, 1, size=v.shape)).astype(np.complex64)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if values == "full":
            native = dt.newbyteorder("=")
            return rng.integers(info.min, info.max, size=v.shape, dtype=native,
                                endpoint=True).astype(dt)
        top = float(info.max) if dt.itemsize < 8 else np.nextafter(float(info.max), 0)
        bottom = float(info.min)
        v = np.clip(np.nan_to_num(v, nan=0.0, posinf=top, neginf=bottom), bottom, top)
        return v.astype(dt)
    if values == "full":  # the dtype's whole finite range
        v = rng.uniform(-1, 1, size=v.shape) * float(np.finfo(dt).max)
    return v.astype(dt)


def _layout(a: Any, layout: str) -> Any:
    """The same values in another memory layout (a view wherever numpy allows one)."""
    import numpy as np

    if a.ndim < 2 or layout == "C":
        return a
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros((a.shape[0] * 2, a.shape[1] * 3, *a.shape[2:]), a.dtype)
        big[::2, ::3] = a
        return big[::2, ::3]
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if layout == "broadcast":  # every row the first one, zero stride, read-only
        return np.broadcast_to(a[:1], a.shape)
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, 0, 1)), 0, 1)  # transposed


def _make_frame(case: Case) -> Any:
    import numpy as np

    p = case.params
    rng = np.random.default_rng(p["seed"])
    if case.kind == "not_array":
        return _not_array(p["value"])
    h, w = int(rng.integers(1, 97)), int(rng.integers(1, 129))
    shape = _frame_shape(p["shape"], h, w, int(rng.integers(10_000, 60_000)))
    with np.errstate(all="ignore"):
        values = np.asarray(_base_values(p["values"], shape, rng))  # 0-d stays an array
        return _layout(np.asarray(_cast(values, case.kind, p["values"], rng)), p["layout"])


def _frame_expectation(src: Any) -> tuple[str, Any, float, tuple, str]:
    """What as_frame_image's documented contract says about `src`: (verdict, reference values
    on the 0..255 scale, tolerance, output shape, why). verdict: accept / refuse / either (a
    refusal is fine, an acceptance must convert right) / either_int (integers: accepted only
    if every value is already 0..255, unchanged)."""
    import numpy as np

    if not isinstance(src, np.ndarray):
        return "refuse", None, 0, (), "not a numpy array"
    if src.size == 0:
        return "refuse", None, 0, (), "empty"
    if src.ndim == 2:
        out_shape = src.shape
    elif src.ndim == 3 and src.shape[2] in (1, 3, 4):
        out_shape = src.shape[:2] if src.shape[2] == 1 else (*src.shape[:2], 3)
    else:
        return "refuse", None, 0, (), f"shape {src.shape} is neither grey nor RGB(A)"
    pix = np.array(src)  # the values, whatever the layout
    if pix.ndim == 3:
        pix = pix[:, :, 0] if pix.shape[2] == 1 else pix[:, :, :3]
    dt = src.dtype
    native = dt.isnative
    if dt.kind == "u" and dt.itemsize == 1:
        return "accept", pix.astype(np.float64), 0.0, out_shape, "uint8"
    if dt.kind == "u" and dt.itemsize == 2:  # 16-bit capture: same brightness on 0..255
        return ("accept" if native else "either", pix.astype(np.float64) * (255.0 / 65535.0),
                1.01, out_shape, "16-bit")
    if dt.kind == "f":
        v = pix.astype(np.float64)
        if not np.isfinite(v).all():
            return "refuse", None, 0, (), "NaN or infinite pixels"
        lo, hi = float(v.min()), float(v.max())
        if lo < 0 or hi > 255:
            return "refuse", None, 0, (), f"float values {lo:.3g}..{hi:.3g} outside 0..255"
        scale = 255.0 if hi <= 1.0 else 1.0  # 0..1 floats are brightness fractions
        return ("accept" if native else "either", v * scale, 0.501, out_shape,
                "0..1 float" if scale > 1 else "0..255 float")
    if dt.kind in "iu":
        return "either_int", pix, 0, out_shape, f"{dt} integers"
    return "refuse", None, 0, (), f"{dt} is no pixel type"


def _describe_frame(src: Any, case: Case) -> str:
    import numpy as np

    if not isinstance(src, np.ndarray):
        return f"{type(src).__name__} {str(src)[:40]!r}"
    p = case.params
    order = "C" if src.flags.c_contiguous else ("F" if src.flags.f_contiguous else "strided")
    return (f"ndarray {src.dtype.str} shape {src.shape} {p['layout']} ({order}) "
            f"values {p['values']}")


def _check_converted(out: Any, expect: tuple) -> str | None:
    """None if as_frame_image's result is right for `expect`, else what is wrong."""
    import numpy as np

    verdict, ref, tol, shape, why = expect
    if verdict == "refuse":
        return f"accepted a frame that must be refused ({why})"
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8:
        return f"returned {type(out).__name__} {getattr(out, 'dtype', '')}, not a uint8 array"
    if verdict == "either_int":
        if ref.min() < 0 or ref.max() > 255:
            return f"accepted {why} outside 0..255 ({ref.min()}..{ref.max()})"
        ref, tol = ref.astype(np.float64), 0.0
    if out.shape != tuple(shape):
        return f"returned shape {out.shape}, expected {tuple(shape)}"
    err = np.abs(out.astype(np.float64) - ref)
    if err.max() > tol:
        kind = ""
        if ref.max() - ref.min() >= 8 and int(out.max()) == int(out.min()):
            kind = f" (a flat {int(out.max())} picture: all-black/white)"
        return (f"{why} converted wrongly{kind}: expected {ref.min():.1f}..{ref.max():.1f}, "
                f"got {int(out.min())}..{int(out.max())}, largest error {err.max():.1f}")
    return None


def _check_prediction(pred: Any, n_classes: int, size: tuple[int, int]) -> str | None:
    import numpy as np

    probs = getattr(pred, "probs", None)
    if not isinstance(probs, np.ndarray) or probs.shape != (n_classes, *size):
        return f"probs shape {getattr(probs, 'shape', None)}, expected {(n_classes, *size)}"
    if not np.isfinite(probs).all() or probs.min() < -1e-6 or probs.max() > 1 + 1e-6:
        return "probabilities not finite or outside 0..1"
    if np.abs(probs.sum(axis=0) - 1).max() > 1e-3:
        return "class probabilities do not sum to 1"
    presence = pred.presence
    if presence is not None and (presence.shape != (n_classes,) or not np.isfinite(presence).all()
                                 or presence.min() < 0 or presence.max() > 1):
        return f"presence {presence!r} not {n_classes} probabilities"
    if not math.isfinite(pred.inference_ms) or pred.inference_ms < 0:
        return f"inference_ms {pred.inference_ms}"
    return None


def _frames_case(case: Case, env: _Env, described: list[str]) -> tuple[str, str]:
    import numpy as np

    from sonoguide.pipeline.frames import as_frame_image

    src = _make_frame(case)
    described[0] = _describe_frame(src, case)
    expect = _frame_expectation(src)
    original = np.array(src, copy=True) if isinstance(src, np.ndarray) else None
    try:
        out, refusal = as_frame_image(src), None
    except Exception as exc:
        out, refusal = None, exc
    if refusal is not None:
        if not _clear(refusal, (ValueError, TypeError), FRAME_WORDS):
            return CRASH, f"as_frame_image raised {_exc_head(refusal)}"
        if expect[0] == "accept":
            return WRONG, f"as_frame_image refused a valid {expect[4]} frame: {refusal}"
    else:
        problem = _check_converted(out, expect)
        if problem:
            return GARBAGE, f"as_frame_image {problem}"
    # The segmenter must see exactly the picture as_frame_image defines, or refuse the same.
    seg = env.segmenter()
    try:
        pred, error = seg.predict(src), None
    except Exception as exc:
        pred, error = None, exc
    if original is not None and not np.array_equal(original, src,
                                                   equal_nan=src.dtype.kind in "fc"):
        return GARBAGE, "as_frame_image or predict changed the caller's array"
    if refusal is not None:
        if error is None:
            return GARBAGE, (f"predict accepted a frame as_frame_image refuses ({refusal}); "
                             "it segmented whatever it made of it")
        if not _clear(error, (ValueError, TypeError), FRAME_WORDS):
            return CRASH, f"predict raised {_exc_head(error)}"
        return MESSAGE, f"refused: {refusal}"
    if error is not None:
        if _clear(error, (ValueError, TypeError), FRAME_WORDS):
            return WRONG, f"predict refused a frame as_frame_image accepts: {error}"
        return CRASH, f"predict raised {_exc_head(error)}"
    problem = _check_prediction(pred, len(seg.classes), (seg.contract.height,
                                                         seg.contract.width))
    if problem:
        return GARBAGE, f"predict: {problem}"
    same = seg.predict(out)
    if not np.allclose(pred.probs, same.probs, atol=1e-5):
        return GARBAGE, "predict saw another picture than as_frame_image's conversion"
    return CORRECT, f"converted as {expect[4]} to {out.dtype}{out.shape}"


# --- clips -------------------------------------------------------------------------------------

BAD_SPECS = ("", "   ", "phantom:nowhere", "camera:abc", "camera:-1", "camera:1.5", "camera:\u00b2",
             ":", "\x00", "a" * 5000, "clip.mp4\x00.txt", "~no_such_user_fuzz/clip.mp4",
             "file:///no/such/clip.mp4", "C:\\no\\such\\clip.mp4", "/no/such/dir/clip.avi",
             "http://example.invalid/clip.mp4", "\ud800.mp4")


def _clip_input(case: Case, env: _Env, d: Path, rng: Any) -> tuple[str, Path | None]:
    """(the spec to open, the file a playing case may damage)."""
    kind, container = case.kind, case.params["container"]
    clip = env.asset(f"clip.{container}")
    data = clip.read_bytes()
    target = d / f"x.{container}"
    if kind in ("valid", "cut_while_playing"):
        shutil.copyfile(clip, target)
    elif kind == "cut":
        target.write_bytes(data[: int(rng.integers(0, len(data)))])
    elif kind in ("flip", "flip_header"):
        raw = bytearray(data)
        span = min(len(raw), 512) if kind == "flip_header" else len(raw)
        for at in rng.integers(0, span, size=int(rng.integers(1, 65))):
            raw[at] ^= int(rng.integers(1, 256))
        target.write_bytes(bytes(raw))
    elif kind == "zero":
        target = d / f"x.{rng.choice(['mp4', 'avi', 'mkv', 'mov'])}"
        target.touch()
    elif kind == "random_bytes":
        target = d / "x.mp4"
        target.write_bytes(rng.bytes(int(rng.integers(1, 100_000))))
    elif kind == "text":
        target.write_text("not a video\n" * int(rng.integers(1, 1000)), encoding="utf-8")
    elif kind == "image_as_video":
        target = d / "x.mp4"
        shutil.copyfile(env.asset("still.png"), target)
    elif kind == "wrong_suffix":  # avi content named .mp4 and the other way round
        target = d / ("x.mp4" if container == "avi" else "x.avi")
        shutil.copyfile(clip, target)
    elif kind == "dir":
        target.mkdir()
    elif kind == "missing":
        return str(d / "nowhere" / f"x.{container}"), None
    elif kind == "long_name":
        return str(d / ("n" * 300 + f".{container}")), None
    elif kind == "bad_spec":
        return str(_cycle(case.params["variant"], BAD_SPECS)), None
    elif kind == "long_path":  # over 300 characters, each part within the file system's limit
        folder = d
        while len(str(folder)) < 320:
            folder = folder / ("p" * 100)
        folder.mkdir(parents=True)
        target = folder / f"x.{container}"
        shutil.copyfile(clip, target)
    elif kind == "unicode_name":
        target = d / f"\u00e9cho \u8d85\u97f3\u6ce2 \U0001fa7b {rng.integers(100)}.{container}"
        shutil.copyfile(clip, target)
    elif kind == "one_frame":
        target = d / f"one.{container}"
        shutil.copyfile(env.asset(f"one_frame.{container}"), target)
    elif kind == "still_image":
        target = d / f"still.{'png' if container == 'avi' else 'jpg'}"
        shutil.copyfile(env.asset(target.name), target)
    else:
        raise ValueError(f"unknown clip kind {kind}")
    return str(target), target


def _frame_problem(frame: Any, last_id: int, size: tuple[int, int] | None) -> str | None:
    import numpy as np

    image = frame.image
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        return f"frame {frame.frame_id}: picture is {type(image).__name__} " \
               f"{getattr(image, 'dtype', '')}, not uint8"
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        return f"frame {frame.frame_id}: picture shape {image.shape}"
    if size is not None and image.shape[:2] != (size[1], size[0]):
        return f"frame {frame.frame_id}: {image.shape[1]}x{image.shape[0]}, the clip is " \
               f"{size[0]}x{size[1]}"
    if frame.frame_id <= last_id:
        return f"frame id {frame.frame_id} after {last_id}"
    if not math.isfinite(frame.t_capture):
        return f"frame {frame.frame_id}: capture time {frame.t_capture}"
    return None


def _guard_message(text: str) -> bool:
    """A status that is an exception caught by the source's last-resort guard, not a sentence."""
    return "Traceback" in text or bool(re.match(r"^[A-Za-z_.]*(Error|Exception)\b", text))


def _stop(source: Any) -> str | None:
    try:
        source.stop()
    except Exception as exc:
        return _exc_head(exc)
    return None


def _watch(source: Any, case: Case, damage: Path | None, rng: Any,
           size: tuple[int, int] | None) -> tuple[int, str | None, Any]:
    """Pull frames until the source ends or fails (plus a moment for a last frame), it has
    played the clip through and looped, or CLIP_WATCH_S pass: (frames, first problem, last
    status)."""
    from sonoguide.sources.base import SourceState

    terminal = (SourceState.ERROR, SourceState.ENDED)
    frames, last_id, problem, ended_at, cut = 0, -1, None, None, False
    deadline = time.monotonic() + CLIP_WATCH_S
    while time.monotonic() < deadline:
        frame = source.wait_frame(last_id, 0.05)
        if frame is not None:
            problem = problem or _frame_problem(frame, last_id, size)
            last_id, frames = frame.frame_id, frames + 1
            if case.kind == "cut_while_playing" and not cut and damage is not None:
                keep = int(damage.stat().st_size * float(rng.uniform(0, 0.9)))
                os.truncate(damage, keep)  # the clip is cut while the source reads it
                cut = True
            if frames >= CLIP_FRAMES + 3:  # played through and looped
                break
        if source.status.state in terminal:
            ended_at = ended_at or time.monotonic()
            if time.monotonic() - ended_at > 0.1:  # a moment for a last frame
                break
        else:
            ended_at = None
    return frames, problem, source.status


def _clips_case(case: Case, env: _Env, described: list[str]) -> tuple[str, str]:
    import numpy as np

    from sonoguide.sources.base import SourceState
    from sonoguide.sources.factory import open_source

    rng = np.random.default_rng(case.params["seed"])
    d = env.case_dir(case)
    spec, damage = _clip_input(case, env, d, rng)
    expect = CLIP_EXPECT.get(case.kind, "either")
    described[0] = f"{case.kind} {spec if len(spec) < 120 else spec[:60] + '...' + spec[-40:]!r}"
    try:
        source = open_source(spec)
    except Exception as exc:
        if not _clear(exc, (ValueError,), SOURCE_WORDS):
            return CRASH, f"open_source raised {_exc_head(exc)}"
        if expect == "frames":
            return WRONG, f"open_source refused a playable input: {exc}"
        return MESSAGE, f"open_source: {exc}"
    if expect == "message":
        return GARBAGE, f"open_source accepted {spec!r} as {type(source).__name__}"
    before = {t.ident for t in threading.enumerate()}
    try:
        source.start()
    except Exception as exc:
        return CRASH, f"start() raised {_exc_head(exc)}"
    try:
        frames, problem, status = _watch(source, case, damage, rng,
                                         CLIP_SIZE if expect == "frames" else None)
    finally:
        t_stop = time.monotonic()
        stop_error = _stop(source)
    if stop_error:
        return CRASH, f"stop() raised {stop_error}"
    stop_s = time.monotonic() - t_stop
    deadline = time.monotonic() + 0.5  # a thread that ends just after join() is no leak
    while True:
        left = [t.name for t in threading.enumerate() if t.ident not in before
                and t.name.startswith("source:") and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if left or stop_s > 2.5:
        return HANG, f"stop() took {stop_s:.1f} s and left {left or 'nothing'} running"
    message = str(status.message)
    summary = f"{frames} frames, state {status.state.value}: {message[:160]}"
    if problem:
        return GARBAGE, f"ill-formed frame ({problem}); {summary}"
    if status.state is SourceState.ERROR and _guard_message(message):
        return CRASH, f"the source thread raised, caught only by its guard: {message[:300]}"
    if frames:
        return CORRECT, summary
    if status.state in (SourceState.ERROR, SourceState.ENDED) and message.strip():
        if expect == "frames":
            return WRONG, f"no frame from a playable input; {summary}"
        return MESSAGE, summary
    return HANG, (f"no frame and no end or error within {CLIP_WATCH_S:g} s (state "
                  f"{status.state.value}, message {message[:100]!r})")


# --- models ------------------------------------------------------------------------------------

def _write_model(path: Path, meta: dict[str, str] | None, *, size: tuple | None = MODEL_SIZE,
                 channels: int = 3, poison: str | None = None, presence: bool = True) -> Path:
    """A small real ONNX model: 1x1 convolution logits (bright -> class 1, dark -> class 2),
    a presence head, and optionally NaN/Inf poured into its outputs. size None: any input size
    (the metadata alone says what to feed it)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    h, w = ("H", "W") if size is None else size
    nodes: list = []
    inits: list = []

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    weight = np.zeros((channels, 1, 1, 1), np.float32)
    bias = np.zeros(channels, np.float32)
    if channels > 1:
        weight[1], bias[1] = 8.0, -4.0
    if channels > 2:
        weight[2], bias[2] = -8.0, 4.0
    nodes.append(helper.make_node("Conv", ["input", const("w", weight), const("b", bias)],
                                  ["raw"]))
    logits = "raw"
    if poison in ("nan_always", "inf_always", "neginf_always"):
        value = {"nan_always": np.nan, "inf_always": np.inf, "neginf_always": -np.inf}[poison]
        nodes.append(helper.make_node("Add", ["raw", const("poison", [value])], ["poisoned"]))
        logits = "poisoned"
    elif poison == "mul_inf":  # a zero logit times infinity: NaN
        nodes.append(helper.make_node("Mul", ["raw", const("poison", [np.inf])], ["poisoned"]))
        logits = "poisoned"
    flag = None
    if poison and poison.endswith("_bright"):  # only when the mean input is over 0.5
        nodes.append(helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3],
                                      keepdims=1))
        nodes.append(helper.make_node("Greater", ["mean", const("half", [0.5])], ["bright"]))
        if poison == "neginf_class_bright":  # -inf for one class: probability 0, all finite
            bad = const("bad", np.array([0, 0, -np.inf][:channels]).reshape(1, channels, 1, 1))
            good = const("good", np.zeros((1, channels, 1, 1)))
        else:
            value = np.inf if poison == "inf_bright" else np.nan
            bad, good = const("bad", [value]), const("good", [0.0])
        nodes.append(helper.make_node("Where", ["bright", bad, good], ["flag"]))
        if poison != "presence_nan_bright":
            nodes.append(helper.make_node("Add", ["raw", "flag"], ["poisoned"]))
            logits = "poisoned"
        else:
            nodes.append(helper.make_node("Flatten", ["flag"], ["flag2"], axis=1))
            flag = "flag2"
    nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels, h, w])]
    if presence:
        nodes.append(helper.make_node("GlobalMaxPool", ["logits"], ["pmax"]))
        nodes.append(helper.make_node("Flatten", ["pmax"], ["pflat"], axis=1))
        out = "pflat"
        if poison in ("presence_nan", "presence_inf"):
            value = np.nan if poison == "presence_nan" else np.inf
            nodes.append(helper.make_node("Add", ["pflat", const("ppoison", [value])], ["pp"]))
            out = "pp"
        elif flag is not None:
            nodes.append(helper.make_node("Add", ["pflat", flag], ["pp"]))
            out = "pp"
        nodes.append(helper.make_node("Identity", [out], ["presence"]))
        outputs.append(helper.make_tensor_value_info("presence", TensorProto.FLOAT,
                                                     ["N", channels]))
    graph = helper.make_graph(
        nodes, "fuzz", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                      ["N", 1, h, w])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="sonoguide-fuzz")
    model.ir_version = 8
    if meta:
        helper.set_model_props(model, meta)
    path.write_bytes(model.SerializeToString())
    return path


_INPUT_TOKENS = {"height": "32", "width": "32", "scale": "0.00392156862745098", "mean": "0",
                 "std": "1"}


def _meta(classes: str = '["background", "nerve", "vessel"]', **tokens: str) -> dict[str, str]:
    """Contract metadata with raw JSON tokens, so NaN, 1e400 or "64" go in exactly as written;
    a token None leaves that field out."""
    from sonoguide.pipeline.contract import KEY_CLASSES, KEY_INPUT, KEY_TRAINED_ON, KEY_VERSION

    merged = {**_INPUT_TOKENS, **tokens}
    spec = ", ".join(f'"{k}": {v}' for k, v in merged.items() if v is not None)
    return {KEY_CLASSES: classes, KEY_INPUT: "{" + spec + "}", KEY_VERSION: "fuzz-1",
            KEY_TRAINED_ON: "nothing"}


def _cycle(variant: int, options: tuple | list) -> Any:
    """The case's own entry of a list of bad values: successive cases of a kind take
    successive entries, so a run covers the whole list once the kind comes up often enough."""
    return options[variant % len(options)]


def _pick(rng: Any, options: tuple | list) -> Any:
    return options[int(rng.integers(0, len(options)))]


def _garbage_text(rng: Any) -> str:
    pieces = ("\u0000", "\u202e", "\ufeff", "\U0001fa7b", "\u8d85\u97f3\u6ce2", "\n\t",
              '"}{[', "\\", "%s%n", "\u00e9", " " * 50, "x" * 3000)
    return "".join(_pick(rng, pieces) for _ in range(int(rng.integers(1, 8))))


def _meta_case(name: str, rng: Any,
               variant: int) -> tuple[dict[str, str], str, dict, Callable | None]:
    """(metadata, expectation, graph options, check of a loaded contract) for a mutation.
    expectation: refuse (ModelLoadError), load (must load and work) or either."""
    from sonoguide.pipeline.contract import KEY_CLASSES, KEY_INPUT, KEY_UNSURE, REQUIRED_KEYS

    meta = _meta()
    graph: dict[str, Any] = {}
    if name == "no_metadata":
        return {}, "refuse", graph, None
    if name == "missing_key":
        del meta[_cycle(variant, REQUIRED_KEYS)]
        return meta, "refuse", graph, None
    if name == "classes_not_json":
        meta[KEY_CLASSES] = _cycle(variant, ("[background, nerve, vessel]", '["background", "ner',
                                            "", "background,nerve,vessel", "\u0000"))
        return meta, "refuse", graph, None
    if name == "classes_not_list":
        meta[KEY_CLASSES] = _cycle(variant, ('{"0": "background"}', '"background nerve vessel"',
                                            "3", "null", "true"))
        return meta, "refuse", graph, None
    if name == "classes_too_few":
        meta[KEY_CLASSES] = _cycle(variant, ("[]", '["background"]'))
        return meta, "refuse", graph, None
    if name == "classes_non_str":
        meta[KEY_CLASSES] = _cycle(variant, ('["background", 1, "vessel"]',
                                            '["background", null, "vessel"]',
                                            '["background", ["nerve"], "vessel"]',
                                            '["background", true, "vessel"]'))
        return meta, "refuse", graph, None
    if name == "classes_duplicate":  # two classes of one name: the analysis cannot tell them
        meta[KEY_CLASSES] = _cycle(variant, ('["background", "nerve", "nerve"]',
                                            '["background", "background", "nerve"]'))
        return meta, "refuse", graph, None
    if name == "classes_no_background":
        meta[KEY_CLASSES] = _cycle(variant, ('["nerve", "background", "vessel"]',
                                            '["Background", "nerve", "vessel"]'))
        return meta, "refuse", graph, None
    if name == "classes_blank_name":  # a class the legend could not name
        meta[KEY_CLASSES] = _cycle(variant, ('["background", "", "vessel"]',
                                            '["background", "nerve", "   "]'))
        return meta, "refuse", graph, None
    if name == "classes_unicode":  # odd but distinct, non-blank names: a valid model
        names = ["background"]
        while len(names) < 3:
            text = _garbage_text(rng)
            if text.strip() and text not in names:
                names.append(text)
        meta[KEY_CLASSES] = json.dumps(names, ensure_ascii=bool(rng.integers(0, 2)))
        return meta, "load", graph, (lambda c, n=tuple(names): None if c.classes == n
                                     else f"classes read as {c.classes!r}")
    if name == "classes_count_mismatch":
        meta[KEY_CLASSES] = '["background", "nerve", "vessel", "artery"]'
        return meta, "refuse", graph, None
    if name == "input_not_json":
        meta[KEY_INPUT] = _cycle(variant, ("{height: 32}", '{"height": 32', "", "NaN"))
        return meta, "refuse", graph, None
    if name == "input_not_object":
        meta[KEY_INPUT] = _cycle(variant, ("[32, 32, 0.0039, 0, 1]", "32", '"32x32"', "null"))
        return meta, "refuse", graph, None
    if name == "input_missing_field":
        meta = _meta(**{_cycle(variant, tuple(_INPUT_TOKENS)): None})
        return meta, "refuse", graph, None
    field_name = _pick(rng, ("height", "width"))
    if name == "size_bad":  # the graph takes any size: only the contract can refuse these
        bad = ("0", "-5", "NaN", "Infinity", "-Infinity", "1e400", "null", '"abc"', "[32]",
               "{}", "true", "1.5", '""')
        return _meta(**{field_name: _cycle(variant, bad)}), "refuse", {"size": None}, None
    if name == "size_huge":  # 100000 x 100000 floats: 37 GiB per input
        return _meta(height="100000", width="100000"), "refuse", {"size": None}, None
    if name == "size_lenient":  # written oddly but meaning 32: refuse, or read as 32
        token = _cycle(variant, ('"32"', "32.0", "3.2e1"))
        return (_meta(**{field_name: token}), "either", {"size": None},
                lambda c: None if (c.height, c.width) == (32, 32)
                else f"size read as {c.height}x{c.width}")
    if name == "size_mismatch":
        return _meta(), "refuse", {"size": (48, 32)}, None
    if name == "norm_bad":
        which = _pick(rng, ("scale", "mean", "std"))
        bad = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "null", '"x"', "[]", "{}"]
        if which != "mean":
            bad += ["0", "-1", "-0.0"]
        return _meta(**{which: _pick(rng, bad)}), "refuse", graph, None
    if name == "norm_extreme":  # finite but extreme: refuse, or work / drop frames clearly
        which, token = _cycle(variant, (("std", "1e-45"), ("scale", "1e38"), ("std", "1e30"),
                                       ("mean", "-1e38"), ("std", "true"), ("scale", '"0.004"')))
        return _meta(**{which: token}), "either", graph, None
    if name == "unsure_bad":
        meta[KEY_UNSURE] = _cycle(variant, ('{"nerve": 0}', '{"nerve": 1}', '{"nerve": 1.5}',
                                           '{"nerve": -0.1}', '{"nerve": NaN}', '{"nerve": "0.5"}',
                                           '{"nerve": true}', '{"artery": 0.5}',
                                           '{"background": 0.5}', '[0.5]', '{"nerve": 0.5'))
        return meta, "refuse", graph, None
    if name == "unsure_ok":
        meta[KEY_UNSURE] = '{"nerve": 0.3}'
        return meta, "load", graph, (lambda c: None if c.unsure_threshold("nerve") == 0.3
                                     else "unsure level not read")
    if name == "text_garbage":
        from sonoguide.pipeline.contract import KEY_TRAINED_ON, KEY_VERSION

        meta[KEY_VERSION], meta[KEY_TRAINED_ON] = _garbage_text(rng), _garbage_text(rng)
        return meta, "load", graph, None
    if name == "extra_keys":
        meta.update({"sonoguide.future": _garbage_text(rng), _garbage_text(rng): "x",
                     "sonoguide.classes ": "[]"})
        return meta, "load", graph, None
    if name == "huge_value":
        from sonoguide.pipeline.contract import KEY_VERSION

        meta[KEY_VERSION] = "v" * 1_000_000
        return meta, "load", graph, None
    raise ValueError(f"unknown mutation {name}")


@contextlib.contextmanager
def _memory_cap(headroom: int = MODEL_MEMORY_HEADROOM) -> Iterator[None]:
    """Cap the address space a little above today's use (Linux): a model that wants tens of
    GiB fails its allocation here instead of taking the machine down."""
    try:
        import resource
    except ImportError:
        yield
        return
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = vm + headroom
        for limit in (soft, hard):
            if limit != resource.RLIM_INFINITY:
                cap = min(cap, limit)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (OSError, StopIteration, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _test_pictures(rng: Any) -> list:
    import numpy as np

    dark = np.clip(rng.normal(30, 8, (120, 160)), 0, 255).astype(np.uint8)
    bright = np.clip(rng.normal(220, 8, (120, 160)), 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    return [dark, bright, noise]


def _load(path: Path) -> Any:
    from sonoguide.pipeline.segmenter import Segmenter

    return Segmenter(path, provider="cpu", intra_op_threads=1)


def _judge_refusal(exc: Exception, path: Path, expect: str) -> tuple[str, str]:
    from sonoguide.pipeline.segmenter import ModelLoadError

    text = str(exc)
    if not _clear(exc, (ModelLoadError,)):
        return CRASH, f"loading raised {_exc_head(exc)}"
    if not text.startswith(str(path)):
        return WRONG, f"ModelLoadError does not start with the file's path: {text[:200]}"
    if re.search(r"unable to allocate|failed to allocate|MemoryError|bad_alloc", text,
                 re.IGNORECASE):
        return CRASH, ("refused only by running out of memory (the contract let it through "
                       f"to the warm-up): {text[:300]}")
    if expect == "load":
        return WRONG, f"a valid model was refused: {text[:300]}"
    return MESSAGE, text[:300]


def _models_case(case: Case, env: _Env, described: list[str]) -> tuple[str, str]:
    import numpy as np

    rng = np.random.default_rng(case.params["seed"])
    d = env.case_dir(case)
    family, _, name = case.kind.partition(":")
    path = d / "model.onnx"
    check = None
    if family == "meta":
        meta, expect, graph, check = _meta_case(name, rng, case.params["variant"])
        _write_model(path, meta, **graph)
        shown = {k: (v if len(v) < 80 else v[:60] + f"...({len(v)} chars)")
                 for k, v in meta.items()}
        described[0] = f"{case.kind} metadata {shown}"
    elif family == "file":
        expect = "refuse" if name not in ("truncated", "bitflip") else "either"
        described[0] = _damaged_model(name, path, d, rng)
    elif family == "always":
        _write_model(path, _meta(), poison=name)
        expect = "refuse"
        described[0] = f"{case.kind}: a model whose output is always {name}"
    else:
        _write_model(path, _meta(), poison=name)
        described[0] = f"{case.kind}: non-finite output only on bright frames"
        return _sometimes_case(path, name, rng)
    with _memory_cap():
        try:
            seg = _load(path)
        except Exception as exc:
            outcome, detail = _judge_refusal(exc, path, expect)
            if family == "always" and outcome == MESSAGE and not _says_nonfinite(detail):
                return WRONG, f"refused, but not for its NaN/Inf output: {detail}"
            return outcome, detail
        if expect == "refuse":
            return GARBAGE, (f"loaded a model that must be refused ({case.kind}): classes "
                             f"{seg.classes}, input {seg.contract.height}x{seg.contract.width}, "
                             f"scale {seg.contract.scale}, std {seg.contract.std}")
        problem = check(seg.contract) if check is not None else None
        if problem:
            return GARBAGE, f"loaded with a wrong reading of its metadata: {problem}"
        return _run_loaded(seg, expect, rng)


def _damaged_model(name: str, path: Path, d: Path, rng: Any) -> str:
    good = _write_model(d / "good.onnx", _meta()).read_bytes()
    if name == "truncated":
        cut = int(rng.integers(1, len(good)))
        path.write_bytes(good[:cut])
        return f"file:truncated at byte {cut} of {len(good)}"
    if name == "bitflip":
        raw = bytearray(good)
        spots = rng.integers(0, len(raw), size=int(rng.integers(1, 17)))
        for at in spots:
            raw[at] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(raw))
        return f"file:bitflip at bytes {sorted(int(s) for s in spots)}"
    if name == "zero":
        path.touch()
    elif name == "text":
        path.write_text("this is not a model\n", encoding="utf-8")
    elif name == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    elif name == "random":
        path.write_bytes(rng.bytes(int(rng.integers(1, 50_000))))
    elif name == "dir":
        path.mkdir()
    elif name == "missing":
        pass
    elif name == "symlink_loop":
        os.symlink(path.name, path)
    elif name == "fifo":
        os.mkfifo(path)
    return f"file:{name}"


def _run_loaded(seg: Any, expect: str, rng: Any) -> tuple[str, str]:
    """A model that loaded: predictions must be well-formed, or refused with a clear message."""
    size = (seg.contract.height, seg.contract.width)
    dropped = []
    for picture in _test_pictures(rng):
        try:
            pred = seg.predict(picture)
        except Exception as exc:
            if not (_clear(exc, (ValueError,)) and _says_nonfinite(str(exc))):
                return CRASH, f"predict raised {_exc_head(exc)}"
            dropped.append(str(exc))
            continue
        problem = _check_prediction(pred, len(seg.classes), size)
        if problem:
            return GARBAGE, f"predict: {problem}"
    if dropped and expect == "load":
        return WRONG, f"a valid model's predictions were dropped: {dropped[0][:200]}"
    if dropped:
        return MESSAGE, f"loaded; {len(dropped)} of 3 frames dropped: {dropped[0][:200]}"
    return CORRECT, f"loaded {seg.describe()[:120]}, 3 frames segmented"


def _sometimes_case(path: Path, name: str, rng: Any) -> tuple[str, str]:
    """NaN/Inf on bright frames only: the load passes, and during a run through the inference
    worker every bright frame's result must be dropped and counted, never delivered."""
    import numpy as np

    from sonoguide.pipeline.frames import Frame
    from sonoguide.pipeline.models import analyzer_for
    from sonoguide.pipeline.worker import InferenceWorker

    try:
        seg = _load(path)
    except Exception as exc:
        outcome, detail = _judge_refusal(exc, path, "load")
        return outcome, detail
    pattern = [bool(b) for b in rng.integers(0, 2, size=6)]
    pattern[int(rng.integers(0, 6))] = True
    pattern[int(rng.integers(0, 6))] = False
    worker = InferenceWorker(seg, analyzer_for(seg, "plexus"))
    delivered: list = []
    finished: list[int] = []
    cond = threading.Condition()

    def done(frame_id: int) -> None:
        with cond:
            finished.append(frame_id)
            cond.notify_all()

    worker.add_listener(delivered.append)
    worker.add_finished_listener(done)
    try:
        for i, bright in enumerate(pattern):
            level = 220 if bright else 30
            image = np.clip(rng.normal(level, 8, (120, 160)), 0, 255).astype(np.uint8)
            worker.submit(Frame(image=image, frame_id=i, t_capture=time.monotonic(),
                                source="fuzz"))
            with cond:
                if not cond.wait_for(lambda i=i: i in finished, timeout=8.0):
                    return HANG, f"the worker never finished frame {i}"
    finally:
        worker.stop()
    if worker.running:
        return HANG, "the inference thread still runs after stop()"
    bright_ids = {i for i, b in enumerate(pattern) if b}
    got = {s.frame_id for s in delivered}
    poisoned = name != "neginf_class_bright"
    for s in delivered:
        problem = _segmentation_problem(s)
        if problem:
            return GARBAGE, f"delivered frame {s.frame_id}: {problem}"
    if poisoned and got & bright_ids:
        return GARBAGE, f"results of NaN/Inf frames {sorted(got & bright_ids)} were delivered"
    want = set(range(len(pattern))) - (bright_ids if poisoned else set())
    if got != want:
        return WRONG, f"results delivered for {sorted(got)}, expected {sorted(want)}"
    errors = list(worker.errors)
    if poisoned and (worker.error_count != len(bright_ids)
                     or not all(_says_nonfinite(e) for e in errors)):
        return WRONG, (f"{len(bright_ids)} bright frames, {worker.error_count} errors counted: "
                       f"{errors[:2]}")
    if not poisoned:
        return (CORRECT, "all 6 frames delivered, finite") if not errors else (
            WRONG, f"finite frames counted as errors: {errors[:2]}")
    return MESSAGE, f"{len(bright_ids)} of 6 frames dropped and counted: {errors[0][:160]}"


def _segmentation_problem(s: Any) -> str | None:
    import numpy as np

    if not isinstance(s.labels, np.ndarray) or s.labels.shape != (s.roi.h, s.roi.w):
        return f"labels shape {getattr(s.labels, 'shape', None)} for ROI {s.roi}"
    if int(s.labels.max(initial=0)) >= len(s.classes):
        return "labels name a class the model does not have"
    for st in s.structures:
        if not (math.isfinite(st.confidence) and 0 <= st.confidence <= 1
                and math.isfinite(st.area_px) and np.isfinite(st.contour).all()):
            return f"structure {st.class_name} with non-finite values"
    if s.target is not None and not all(math.isfinite(v) for v in (s.target.x, s.target.y,
                                                                  s.target.confidence)):
        return "target with non-finite position or confidence"
    if not all(math.isfinite(v) for v in s.present.values()):
        return "non-finite presence"
    return None


# --- settings ----------------------------------------------------------------------------------

ROI_KEY = "file:/fuzz/clip.mp4"
ROI_FRAME = (640, 480)  # (w, h) of the frame the image area is checked against


def _valid_rois(rng: Any, n: int = 3) -> dict[str, dict]:
    out = {}
    for i in range(n):
        roi = [int(rng.integers(0, 200)), int(rng.integers(0, 200)), int(rng.integers(64, 400)),
               int(rng.integers(64, 280))]
        spacing = round(float(rng.uniform(0.02, 0.9)), 4) if rng.random() < 0.8 else None
        out[f"file:/clips/{i}.mp4@640x480"] = {"roi": roi, "pixel_spacing_mm": spacing}
    return out


def _card() -> str:
    return json.dumps({"variants": [{"file": "plexus.onnx", "precision": "float32",
                                     "dice": {"nerve": 0.8, "vessel": 0.7}}],
                       "max_dice_drop": 0.02})


def _settings_text(target: str, content: str, valid: str, rng: Any) -> bytes | None:
    """The bytes of a bad settings file (None: the content is not plain bytes)."""
    big_int = "9" * 5000
    if content == "nested_list":
        return b"[" * int(rng.integers(1000, 200_000))
    if content == "nested_obj":
        return b'{"a":' * int(rng.integers(1000, 100_000))
    if content == "deep_entry":
        depth = int(rng.integers(100, 5000))
        return ('{"' + ROI_KEY + '": {"roi": ' + "[" * depth + "0" + "]" * depth
                + "}}").encode()
    if content == "invalid_utf8":
        return b'{"file:/clips/\xff\xfe\xc0.mp4": {"roi": [0, 0, 100, 100]}}'
    if content == "nan":
        token = _pick(rng, ("NaN", "Infinity", "-Infinity"))
        if target == "rois":
            return (f'{{"{ROI_KEY}@640x480": {{"roi": [0, 0, 100, 100], '
                    f'"pixel_spacing_mm": {token}}}}}').encode()
        if target == "card":
            return valid.replace("0.02", token).encode()
        return re.sub(r'"median_ms": [0-9.e+-]+', f'"median_ms": {token}', valid).encode()
    if content == "top_level":
        return _pick(rng, (b"[]", b'"rois"', b"1", b"null", b"true", b"[{}]"))
    if content == "empty":
        return b""
    if content == "random_bytes":
        return rng.bytes(int(rng.integers(1, 5000)))
    if content == "truncated":
        return valid.encode()[: int(rng.integers(0, max(1, len(valid) - 1)))]
    if content == "bom":
        return b"\xef\xbb\xbf" + valid.encode()
    if content == "huge_int":
        if target == "rois":
            return f'{{"{ROI_KEY}@640x480": {{"roi": [{big_int}, 0, 100, 100]}}}}'.encode()
        return f'{{"format": {big_int}, "max_dice_drop": {big_int}}}'.encode()
    if content in ("valid", "unreadable"):
        return valid.encode()
    return None


def _make_settings_file(path: Path, target: str, content: str, valid: str, rng: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _settings_text(target, content, valid, rng)
    if data is not None:
        path.write_bytes(data)
        if content == "unreadable":
            path.chmod(0)
    elif content == "fifo":
        os.mkfifo(path)
    elif content == "huge_sparse":  # over 100 MB of zeros that take no disk
        with open(path, "wb") as f:
            f.write(valid.encode())
            f.truncate(int(rng.integers(100, 400)) << 20)
    elif content == "directory":
        path.mkdir()
        (path / "inside.json").write_text("{}", encoding="utf-8")
    elif content == "symlink_loop":
        os.symlink(path.name, path)
    elif content == "dangling_symlink":
        os.symlink(path.parent / "nowhere" / "x.json", path)
    else:
        raise ValueError(f"unknown settings content {content}")


def _settings_case(case: Case, env: _Env, described: list[str]) -> tuple[str, str]:
    import numpy as np

    rng = np.random.default_rng(case.params["seed"])
    d = env.case_dir(case)
    target, _, content = case.kind.partition(":")
    config = d / "config"
    os.environ["XDG_CONFIG_HOME"] = str(config)  # what the default paths derive from
    os.environ["APPDATA"] = str(config)
    default = case.params.get("default_path", False) and target != "card"
    described[0] = f"{case.kind}{' at the default path' if default else ''}"
    if target == "rois":
        return _rois_case(env, d, config, content, bool(default), rng, case.params["variant"])
    return _speed_case(env, d, config, target, content, bool(default), rng,
                       case.params["variant"])


def _store_problems(store: Any, env_warnings: list[str]) -> list[str]:
    return list(getattr(store, "problems", []) or []) + list(env_warnings)


def _entry_problem(key: str, setting: Any) -> str | None:
    from sonoguide.pipeline.frames import Roi

    roi, spacing = setting.roi, setting.pixel_spacing_mm
    if roi is not None and not (isinstance(roi, Roi) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in (roi.x, roi.y, roi.w, roi.h))
            and roi.x >= 0 and roi.y >= 0 and roi.w > 0 and roi.h > 0):
        return f"entry {key!r} has ROI {roi!r}"
    if spacing is not None and not (isinstance(spacing, float) and math.isfinite(spacing)
                                    and spacing > 0):
        return f"entry {key!r} has pixel spacing {spacing!r}"
    return None


def _rois_case(env: _Env, d: Path, config: Path, content: str, default: bool, rng: Any,
               variant: int) -> tuple[str, str]:
    from sonoguide.pipeline.calibration import RoiSetting, RoiStore
    from sonoguide.pipeline.frames import Roi

    warnings = env.capture.warnings
    path = config / "sonoguide" / "rois.json" if default else d / "rois.json"
    good = _valid_rois(rng)
    expected: dict | None = None  # entries that must come back exactly (None: none known)
    bad_entries = False
    if content == "wrong_types":
        bad = {"a@1x1": {"roi": "0,0,100,100"}, "b@1x1": {"roi": [0.5, 0, 100, 100]},
               "c@1x1": {"roi": [True, 0, 100, 100]}, "d@1x1": {"roi": [-1, 0, 100, 100]},
               "e@1x1": {"roi": [0, 0, 0, 100]}, "f@1x1": {"roi": [0, 0, 100]},
               "g@1x1": {"pixel_spacing_mm": "0.1"}, "h@1x1": {"pixel_spacing_mm": -0.1},
               "i@1x1": {"pixel_spacing_mm": True}, "j@1x1": [0, 0, 100, 100],
               "k@1x1": "roi", "l@1x1": {"roi": {"x": 0}}, "m@1x1": {"pixel_spacing_mm": 0}}
        chosen = dict(list(bad.items())[: int(rng.integers(1, len(bad) + 1))])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**good, **chosen}), encoding="utf-8")
        expected, bad_entries = good, True
    elif content == "roi_outside":
        return _roi_outside_case(path, rng, variant)
    elif content == "many_entries":
        many = {f"file:/clips/{i}.mp4@640x480": {"roi": [i % 500, 0, 100, 100],
                                                 "pixel_spacing_mm": None}
                for i in range(int(rng.integers(5000, 30_000)))}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(many), encoding="utf-8")
        expected = many
    elif content == "long_key":
        long = {"k" * int(rng.integers(10_000, 200_000)): {"roi": [0, 0, 100, 100],
                                                           "pixel_spacing_mm": 0.1}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(long), encoding="utf-8")
        expected = long
    else:
        _make_settings_file(path, "rois", content, json.dumps(good), rng)
        if content in ("valid", "unreadable", "bom"):
            expected = good
    bad_file = expected is None and content not in ("dangling_symlink",)
    try:
        store = RoiStore() if default else RoiStore(path)
        entries = {k: store.get(k) for k in store.keys()}
    except Exception as exc:
        return CRASH, f"RoiStore raised {_exc_head(exc)}"
    for key, setting in entries.items():
        problem = _entry_problem(key, setting)
        if problem:
            return GARBAGE, f"RoiStore kept an invalid entry: {problem}"
    problems = _store_problems(store, warnings)
    if expected is not None:
        want = {k: (None if v.get("roi") is None else Roi(*v["roi"]), v.get("pixel_spacing_mm"))
                for k, v in expected.items()}
        got = {k: (s.roi, s.pixel_spacing_mm) for k, s in entries.items()}
        # a refusal of the whole file is fine where a reader may reasonably balk at it: a
        # BOM, no permission, or a file far bigger than settings ever get (megabytes)
        whole = content in ("bom", "unreadable", "many_entries")
        if got != want and not (whole and not got and problems):
            extra = sorted(set(got) - set(want))[:3]
            lost = sorted(set(want) - set(got))[:3]
            if extra:
                return GARBAGE, f"RoiStore kept entries that are not valid: {extra}"
            return WRONG, f"RoiStore lost or changed valid entries: {lost or 'values differ'}"
    elif entries and content not in ("dangling_symlink",):
        return GARBAGE, f"RoiStore read entries out of a bad file: {sorted(entries)[:3]}"
    if (bad_file or bad_entries) and not problems:
        return GARBAGE, "a bad settings file was dropped without any message"
    # Saving must work again (or say why not), whatever the old file was.
    before = len(problems)
    try:
        store.set("fuzz:check", Roi(1, 2, 100, 100), 0.25)
        again = RoiStore() if default else RoiStore(path)
        kept = again.get("fuzz:check")
    except Exception as exc:
        return CRASH, f"saving after a bad file raised {_exc_head(exc)}"
    saved_problems = _store_problems(store, warnings)[before:]
    if kept != RoiSetting(Roi(1, 2, 100, 100), 0.25) and not saved_problems:
        return GARBAGE, f"a saved setting was lost without a message (read back {kept!r})"
    if problems:
        return MESSAGE, problems[0][:300]
    return CORRECT, f"{len(entries)} entries read, saving works"


def _roi_outside_case(path: Path, rng: Any, variant: int) -> tuple[str, str]:
    """A remembered image area and scale that do not fit the picture must not be used."""
    import numpy as np

    from sonoguide.pipeline.calibration import RoiStore
    from sonoguide.pipeline.frames import Frame, Roi
    from sonoguide.pipeline.image_area import SPACING_RANGE_MM, ImageArea

    w, h = ROI_FRAME
    roi = _cycle(variant, ([100000, 100000, 50, 50], [600, 400, 100, 100], [0, 0, 3, 3],
                          [639, 479, 1, 1], [0, 0, 641, 480], [10, 10, 200, 150], [0, 0, 640, 480]))
    spacing = _pick(rng, (1000.0, 5.0, 1e-9, 0.2, None))
    key = ROI_KEY + (f"@{w}x{h}" if rng.random() < 0.7 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: {"roi": roi, "pixel_spacing_mm": spacing}}),
                    encoding="utf-8")
    said: list[str] = []
    try:
        area = ImageArea(Roi.full, RoiStore(path), say=said.append)
        area.reset(ROI_KEY)
        frame = area.prepare(Frame(image=np.zeros((h, w), np.uint8), frame_id=0,
                                   t_capture=time.monotonic()))
    except Exception as exc:
        return CRASH, f"ImageArea with a remembered area raised {_exc_head(exc)}"
    got = frame.roi
    fits = roi[0] + roi[2] <= w and roi[1] + roi[3] <= h and roi[2] >= 64 and roi[3] >= 64
    plausible = spacing is not None and SPACING_RANGE_MM[0] <= spacing <= SPACING_RANGE_MM[1]
    if got is None or got.x < 0 or got.y < 0 or got.x + got.w > w or got.y + got.h > h:
        return GARBAGE, f"remembered {roi} gave an image area {got} outside the {w}x{h} frame"
    if fits and got != Roi(*roi):
        return WRONG, f"a remembered area {roi} that fits was not used (got {got})"
    if not fits and got == Roi(*roi):
        return GARBAGE, f"a remembered area {roi} that does not fit was used"
    if plausible and frame.pixel_spacing_mm != spacing:
        return WRONG, f"a plausible remembered scale {spacing} was not used"
    if spacing is not None and not plausible and frame.pixel_spacing_mm == spacing:
        return GARBAGE, f"an implausible remembered scale {spacing} mm/px was used"
    refused = (not fits) + (spacing is not None and not plausible)
    if refused and len(said) < refused:
        return GARBAGE, f"remembered {roi} / {spacing} refused without telling (said {said})"
    if refused:
        return MESSAGE, "; ".join(said)[:300]
    return CORRECT, f"remembered {roi} / {spacing} used"


def _speed_case(env: _Env, d: Path, config: Path, target: str, content: str, default: bool,
                rng: Any, variant: int) -> tuple[str, str]:
    from sonoguide.pipeline.speed import choose_speed

    models = d / "models"
    models.mkdir()
    shutil.copyfile(env.asset("threshold.onnx"), models / "plexus.onnx")
    cache = config / "sonoguide" / "speed.json" if default else d / "speed.json"

    def choose() -> Any:
        return choose_speed("plexus", models_dir=models, thread_options=(1,),
                            cache_path=None if default else cache, runs=1)

    valid = _card()
    if target == "speed":  # a real cache to start from, written by the app itself
        try:
            choose()
        except Exception as exc:
            return CRASH, f"choose_speed on a clean folder raised {_exc_head(exc)}"
        valid = cache.read_text(encoding="utf-8")
        cache.unlink()
        file = cache
    else:
        file = models / "plexus.ship.json"
    if content == "garbage_entry":
        data = json.loads(valid)
        entry = data["entries"]["plexus"]
        where, value = _cycle(variant, (("threads", 0), ("threads", -1), ("threads", True),
                                       ("threads", "1"), ("threads", 1.5), ("threads", None),
                                       ("median_ms", math.nan), ("median_ms", -1.0),
                                       ("median_ms", "fast"), ("per_s", math.inf),
                                       ("file", "../plexus.onnx"), ("file", "/etc/passwd"),
                                       ("file", "missing.onnx"), ("file", 5), ("precision", 7),
                                       ("table", "x"), ("table", [1, 2]), ("skipped", "x"),
                                       ("choice", None)))
        if where in ("table", "skipped", "choice"):
            entry[where] = value
        else:
            entry["choice"][where] = value
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(data), encoding="utf-8")
    else:
        _make_settings_file(file, target, content, valid, rng)
    try:
        choice = choose()
    except Exception as exc:
        return CRASH, f"choose_speed raised {_exc_head(exc)}"
    if choice.path != models / "plexus.onnx" or choice.threads != 1 or not all(
            math.isfinite(v) and v > 0 for v in (choice.median_ms, choice.p95_ms,
                                                 choice.per_s)):
        return GARBAGE, (f"choose_speed gave {choice.path.name}, {choice.threads} threads, "
                         f"{choice.median_ms} ms")
    reused = content in ("valid", "unreadable", "bom") and target == "speed"
    if choice.from_cache and not reused:
        return GARBAGE, f"a bad speed cache ({content}) was used as it stood"
    if reused and not choice.from_cache and content == "valid":
        return WRONG, "a valid speed cache was not used (measured again)"
    note = getattr(choice, "cache_problem", None)
    if note:
        return MESSAGE, str(note)[:300]
    return CORRECT, f"{choice.summary()}{' (cache ignored)' if not choice.from_cache else ''}"


if __name__ == "__main__":
    raise SystemExit(main())
