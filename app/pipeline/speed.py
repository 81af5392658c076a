"""Which shipped variant of a mode's model, on how many threads, runs fastest on this CPU.

int8 is not always faster than float32: on CPUs without VNNI (many AVX2 laptops) float32 can
win. So the variants that ship (each model's `<mode>.ship.json` lists them under "variants",
with their validation Dice) are timed here, through the app's own Segmenter on a realistic
input, on 1..N ONNX Runtime threads, and the fastest one the model card allows is picked (fewer
threads win a near tie, within 5 %). A variant is allowed when each class's Dice is within the
card's "max_dice_drop" of the best variant's and the file is the one the card measured (sha256).
A variant that fails to load or answers NaN is skipped with a message naming it. The choice is
cached in the settings folder (speed.json), keyed by the CPU, the ONNX Runtime version and the
hash of every variant file, so only the first start on a machine (or after a model or ONNX
Runtime update) pays for the measurement (a few seconds: 4 x 33 plexus runs on 2 cores).

    python -m sonoguide.pipeline.speed [--mode plexus|jugular|all] [--recalibrate]

prints the table (median, p95 and inferences/s of every variant x thread count): the benchmark.
Qt-free and torch-free.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sonoguide.pipeline.analysis import MODES
from sonoguide.pipeline.calibration import default_config_dir
from sonoguide.pipeline.segmenter import ModelLoadError, Segmenter
from sonoguide.pipeline.settings_file import read_json_settings, write_json_settings

CACHE_NAME = "speed.json"
CACHE_FORMAT = 1
DEFAULT_MAX_DICE_DROP = 0.02
WARMUP_RUNS = 3
ROUNDS = 3  # timed runs are split into interleaved rounds so a load burst hits every option
TIE_MARGIN = 0.05  # medians closer than this are a tie: the fewer threads win
IMAGE_SHAPE = (400, 500)  # (H, W): a typical scanner image area, resized by the Segmenter


@dataclass(frozen=True)
class Variant:
    """One file of a mode's model as its ship.json records it."""
    path: Path
    precision: str  # "int8", "float32", or "default" when the card lists no variants
    dice: dict[str, float] | None = None  # validation Dice per class, from the card
    sha256: str | None = None  # hash of the file the card measured
    allowed: bool = True  # within max_dice_drop of the best variant on every class
    reason: str = ""  # why not allowed

    @property
    def label(self) -> str:
        return self.path.name if self.precision == "default" else self.precision


@dataclass(frozen=True)
class SpeedChoice:
    path: Path
    precision: str
    threads: int
    median_ms: float
    p95_ms: float
    per_s: float
    from_cache: bool
    table: tuple[dict, ...] = field(default=())  # every (variant, threads) timing
    skipped: tuple[str, ...] = field(default=())  # variants not timed, and why
    # The speed cache could not be read (it was moved aside, hence measured again) or saved:
    # a sentence for the window, else None. A failed save is told once per process.
    cache_problem: str | None = None

    def summary(self) -> str:
        """Short status-bar text, e.g. "int8, 2 threads: 96/s (measured here)"."""
        what = self.path.name if self.precision == "default" else self.precision
        plural = "" if self.threads == 1 else "s"
        when = "measured here earlier" if self.from_cache else "measured here"
        return f"{what}, {self.threads} thread{plural}: {self.per_s:.0f}/s ({when})"


def _default_models_dir() -> Path:
    from sonoguide.pipeline.models import MODELS_DIR  # late: models.py may import this module

    return MODELS_DIR


# --- the card's variants ---------------------------------------------------------------------
def _read_json(path: Path) -> object:
    # A shipped card is never moved aside; a bad one only means "no variants" (the default).
    return read_json_settings(path, move_aside=False).data or None


def _finite_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _dice(value: object) -> dict[str, float] | None:
    if not isinstance(value, dict) or not value:
        return None
    if not all(isinstance(k, str) and _finite_number(v) for k, v in value.items()):
        return None
    return {k: float(v) for k, v in value.items()}


def model_variants(mode: str, models_dir: Path | None = None) -> list[Variant]:
    """The mode's model files listed under "variants" in `<mode>.ship.json`, each marked allowed
    or not by the card's Dice rule; [the default `<mode>.onnx`] when the card lists none (or
    cannot be read). Never raises for a bad card; ValueError for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    folder = Path(models_dir) if models_dir is not None else _default_models_dir()
    default = [Variant(folder / f"{mode}.onnx", "default")]
    card = _read_json(folder / f"{mode}.ship.json")
    entries = card.get("variants") if isinstance(card, dict) else None
    if not isinstance(entries, list):
        return default
    drop = card.get("max_dice_drop", DEFAULT_MAX_DICE_DROP)
    if not _finite_number(drop) or drop < 0:
        drop = DEFAULT_MAX_DICE_DROP
    found: list[Variant] = []
    for e in entries:
        if not isinstance(e, dict):
            continue
        name = e.get("file")
        # A plain file name inside the models folder: a card cannot point elsewhere.
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            continue
        if any(v.path.name == name for v in found):
            continue
        precision = e.get("precision") if isinstance(e.get("precision"), str) else "unknown"
        sha = e.get("sha256") if isinstance(e.get("sha256"), str) else None
        found.append(Variant(folder / name, precision or "unknown", _dice(e.get("dice")), sha))
    if not found:
        return default
    best: dict[str, float] = {}
    for v in found:
        for k, d in (v.dice or {}).items():
            best[k] = max(best.get(k, -math.inf), d)
    if not best:  # no Dice anywhere: the card cannot tell them apart, all are allowed
        return found
    out = []
    for v in found:
        if v.dice is None:
            out.append(replace(v, allowed=False, reason="the card records no Dice for it"))
            continue
        short = [f"{k} {v.dice.get(k, float('nan')):.3f} < best {b:.3f} - {drop:g}"
                 for k, b in sorted(best.items())
                 if k not in v.dice or v.dice[k] < b - drop - 1e-9]
        out.append(replace(v, allowed=not short, reason="; ".join(short)))
    return out


# --- this machine ----------------------------------------------------------------------------
def usable_cores() -> int:
    """Cores this process may run on (taskset / cgroup affinity), else the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_thread_options(cores: int | None = None) -> tuple[int, ...]:
    """1..2 threads on machines of up to 4 cores (1 on one core), 1..4 on bigger ones: the
    window and the video source need a core too, and models of this size stop scaling."""
    cores = cores or usable_cores()
    top = min(2, cores) if cores <= 4 else 4
    return tuple(range(1, top + 1))


def cpu_signature() -> dict:
    """What identifies this CPU for the cache: model name and instruction-set flags from
    /proc/cpuinfo where there is one (platform.processor() otherwise), machine, usable cores."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if not model and key in ("model name", "hardware", "cpu model"):
                    model = value.strip()
                elif not flags and key in ("flags", "features"):
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    return {"model": model or platform.processor() or "unknown",
            "flags": hashlib.sha256(flags.encode()).hexdigest()[:16] if flags else "",
            "machine": platform.machine(), "cores": usable_cores()}


def file_sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _ort_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def speckle_image(shape: tuple[int, int] = IMAGE_SHAPE, seed: int = 0) -> np.ndarray:
    """A B-mode-like uint8 image: Rayleigh speckle, brighter near the skin, two dark vessels."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = rng.rayleigh(40.0, (h, w)) * np.linspace(1.3, 0.6, h)[:, None]
    yy, xx = np.mgrid[:h, :w]
    for cy, cx, r in ((0.45, 0.35, 0.09), (0.55, 0.65, 0.06)):
        img[(yy - cy * h) ** 2 + (xx - cx * w) ** 2 < (r * min(h, w)) ** 2] *= 0.12
    return np.clip(img, 0, 255).astype(np.uint8)


# --- the cache -------------------------------------------------------------------------------
def default_cache_path() -> Path:
    return default_config_dir() / CACHE_NAME


_unsaved: set[Path] = set()  # caches whose failed save was told already (told once)


def _read_cache(path: Path) -> tuple[dict, str | None]:
    """The cache, and the problem to tell when the file was unusable (then moved aside). Valid
    JSON of another shape (an older format) is silently measured again and overwritten."""
    read = read_json_settings(path, then="the model speed is measured again")
    data = read.data
    if data.get("format") != CACHE_FORMAT or not isinstance(data.get("entries"), dict):
        data = {"format": CACHE_FORMAT, "entries": {}}
    return data, read.problem


def _write_cache(path: Path, data: dict) -> str | None:
    """Atomic; a folder that cannot be written only loses the cache, never the choice. The
    problem (None once told for this path, until a save there works again)."""
    problem = write_json_settings(path, data)
    if problem is None:
        _unsaved.discard(path)
        return None
    if path in _unsaved:
        return None
    _unsaved.add(path)
    return problem


def _row_ok(row: object) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("file"), str)
            and isinstance(row.get("precision"), str)
            and isinstance(row.get("threads"), int) and not isinstance(row["threads"], bool)
            and row["threads"] > 0
            and all(_finite_number(row.get(k)) and row[k] > 0
                    for k in ("median_ms", "p95_ms", "per_s")))


def _cached_choice(entry: object, key: dict, folder: Path,
                   candidates: set[str]) -> SpeedChoice | None:
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    choice, table, skipped = entry.get("choice"), entry.get("table"), entry.get("skipped", [])
    if not _row_ok(choice) or choice["file"] not in candidates:
        return None
    if not isinstance(table, list) or not all(_row_ok(r) for r in table):
        return None
    if not isinstance(skipped, list) or not all(isinstance(s, str) for s in skipped):
        return None
    return _choice(folder / choice["file"], choice, True, table, skipped)


def _choice(path: Path, row: dict, from_cache: bool, table: Sequence[dict],
            skipped: Sequence[str]) -> SpeedChoice:
    return SpeedChoice(path, row["precision"], int(row["threads"]), float(row["median_ms"]),
                       float(row["p95_ms"]), float(row["per_s"]), from_cache,
                       tuple(dict(r) for r in table), tuple(skipped))


# --- measuring -------------------------------------------------------------------------------
def _finite(pred) -> bool:
    ok = bool(np.isfinite(pred.probs).all())
    return ok and (pred.presence is None or bool(np.isfinite(pred.presence).all()))


def _measure(variants: Sequence[Variant], thread_options: Sequence[int], runs: int,
             progress: Callable[[str], None] | None) -> tuple[list[dict], list[str]]:
    """Time every variant x thread count on the same image in interleaved rounds."""
    image = speckle_image()
    sessions: list[tuple[Variant, int, Segmenter]] = []
    skipped: list[str] = []
    bad_files: set[str] = set()  # a variant that fails on any thread count is not used at all
    for v in variants:
        for n in thread_options:
            if progress:
                progress(f"Timing {v.path.name} on {n} thread{'s' if n != 1 else ''}")
            try:
                seg = Segmenter(v.path, provider="cpu", intra_op_threads=n)
                preds = [seg.predict(image) for _ in range(WARMUP_RUNS)]
            except (ModelLoadError, ValueError, RuntimeError, OSError) as exc:
                skipped.append(f"{v.path.name}: failed to load or run ({str(exc)[:200]})")
                bad_files.add(v.path.name)
                break
            except Exception as exc:  # ORT raises its own types; a bad variant must not stop us
                skipped.append(f"{v.path.name}: failed to run ({type(exc).__name__}: "
                               f"{str(exc)[:200]})")
                bad_files.add(v.path.name)
                break
            if not all(_finite(p) for p in preds):
                skipped.append(f"{v.path.name}: gives non-finite probabilities "
                               "(NaN or infinity); not used")
                bad_files.add(v.path.name)
                break
            sessions.append((v, n, seg))
    sessions = [s for s in sessions if s[0].path.name not in bad_files]
    times: dict[int, list[float]] = {i: [] for i in range(len(sessions))}
    broken: set[int] = set()
    per_round = [runs // ROUNDS + (1 if r < runs % ROUNDS else 0) for r in range(ROUNDS)]
    for count in per_round:
        for i, (v, _n, seg) in enumerate(sessions):
            if i in broken:
                continue
            for _ in range(count):
                t0 = time.perf_counter()
                try:
                    pred = seg.predict(image)
                except Exception as exc:
                    skipped.append(f"{v.path.name}: failed during timing ({str(exc)[:200]})")
                    broken.add(i)
                    break
                times[i].append((time.perf_counter() - t0) * 1000.0)
                if not _finite(pred):
                    skipped.append(f"{v.path.name}: gives non-finite probabilities "
                                   "(NaN or infinity); not used")
                    broken.add(i)
                    break
    bad_files |= {sessions[i][0].path.name for i in broken}
    table = []
    for i, (v, n, _seg) in enumerate(sessions):
        if v.path.name in bad_files or not times[i]:
            continue
        ms = np.asarray(times[i])
        median = float(np.median(ms))
        table.append({"file": v.path.name, "precision": v.precision, "threads": int(n),
                      "median_ms": round(median, 3),
                      "p95_ms": round(float(np.percentile(ms, 95)), 3),
                      "per_s": round(1000.0 / median, 1) if median > 0 else 0.0,
                      "runs": len(ms)})
    return table, list(dict.fromkeys(skipped))


def pick(table: Sequence[dict]) -> dict:
    """The row with the lowest median, except that fewer threads win within TIE_MARGIN of it:
    a shared machine's noise is that large, and a thread left idle serves the window and the
    video source."""
    fastest = min(r["median_ms"] for r in table)
    close = [r for r in table if r["median_ms"] <= fastest * (1.0 + TIE_MARGIN)]
    return min(close, key=lambda r: (r["threads"], r["median_ms"]))


def choose_speed(mode: str, *, models_dir: Path | None = None,
                 thread_options: Sequence[int] | None = None, cache_path: Path | None = None,
                 recalibrate: bool = False, runs: int = 30,
                 progress: Callable[[str], None] | None = None) -> SpeedChoice:
    """The fastest allowed variant x thread count for `mode` on this machine (cached).

    Raises ModelLoadError only when no variant of the mode can run at all; a bad cache, a
    broken or disallowed variant only ends up in `skipped`.
    """
    folder = Path(models_dir) if models_dir is not None else _default_models_dir()
    threads = tuple(sorted({max(1, int(n)) for n in (thread_options
                                                     or default_thread_options())}))
    runs = max(1, int(runs))
    variants = model_variants(mode, folder)
    default = folder / f"{mode}.onnx"
    hashes = {p.name: file_sha256(p) for p in [v.path for v in variants] + [default]}
    skipped: list[str] = []
    candidates: dict[str, Variant] = {}
    for v in variants:
        if not v.allowed:
            skipped.append(f"{v.path.name}: not allowed by the model card ({v.reason})")
        elif v.sha256 and hashes[v.path.name] and hashes[v.path.name] != v.sha256:
            skipped.append(f"{v.path.name}: not allowed by the model card (the file differs "
                           "from the one its Dice was measured on: sha256 mismatch)")
        else:
            candidates[v.path.name] = v
    cache = cache_path if cache_path is not None else default_cache_path()
    key = {"cpu": cpu_signature(), "onnxruntime": _ort_version(), "mode": mode,
           "files": hashes, "allowed": sorted(candidates), "threads": list(threads)}
    data, problem = _read_cache(Path(cache))
    if not recalibrate:
        usable = {*candidates, default.name}  # the default: the fallback below
        cached = _cached_choice(data["entries"].get(mode), key, folder, usable)
        if cached is not None:
            return cached

    table, failed = _measure(list(candidates.values()), threads, runs, progress)
    skipped += failed
    if not table and default.name not in candidates:
        # Nothing the card allows can run: the default model, as the app would load it anyway.
        skipped.append(f"no allowed variant could be used; timing the default {default.name}")
        table, failed = _measure([Variant(default, "default")], threads, runs, progress)
        skipped += failed
    if not table:
        raise ModelLoadError(f"{folder}: no {mode} model variant could be used: "
                             + "; ".join(skipped))
    best = pick(table)
    data["entries"][mode] = {"key": key, "choice": best, "table": table, "skipped": skipped,
                             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    unsaved = _write_cache(Path(cache), data)
    problems = " ".join(p for p in (problem, unsaved) if p)
    return replace(_choice(folder / best["file"], best, False, table, skipped),
                   cache_problem=problems or None)


# --- the benchmark command -------------------------------------------------------------------
def format_table(mode: str, choice: SpeedChoice) -> str:
    cores = usable_cores()
    lines = [f"{mode}: {'cached' if choice.from_cache else 'measured'} on "
             f"{cpu_signature()['model']} ({cores} usable core{'' if cores == 1 else 's'}), "
             f"ONNX Runtime {_ort_version()}",
             f"  {'variant':<22} {'precision':<9} {'threads':>7} {'median ms':>10} "
             f"{'p95 ms':>8} {'per s':>7}"]
    for r in sorted(choice.table, key=lambda r: (r["file"], r["threads"])):
        mark = " *" if (r["file"] == choice.path.name and r["threads"] == choice.threads) else ""
        lines.append(f"  {r['file']:<22} {r['precision']:<9} {r['threads']:>7} "
                     f"{r['median_ms']:>10.2f} {r['p95_ms']:>8.2f} {r['per_s']:>7.1f}{mark}")
    lines += [f"  skipped: {s}" for s in choice.skipped]
    if choice.cache_problem:
        lines.append(f"  note: {choice.cache_problem}")
    lines.append(f"  chosen: {choice.path.name}, {choice.summary()}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sonoguide.pipeline.speed",
                                description="Time each shipped model variant x thread count "
                                "on this CPU and pick the fastest one the model card allows.")
    p.add_argument("--mode", default="all", choices=(*MODES, "all"))
    p.add_argument("--recalibrate", action="store_true",
                   help="measure again even if this machine's choice is cached")
    p.add_argument("--runs", type=int, default=30, help="timed runs per variant x threads")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts to try "
                   f"(default here: {' '.join(map(str, default_thread_options()))})")
    p.add_argument("--models-dir", type=Path, help="default: the shipped models folder")
    p.add_argument("--cache", type=Path, help=f"default: {default_cache_path()}")
    a = p.parse_args(argv)
    modes = MODES if a.mode == "all" else (a.mode,)
    status = 0
    for mode in modes:
        try:
            choice = choose_speed(mode, models_dir=a.models_dir, thread_options=a.threads,
                                  cache_path=a.cache, recalibrate=a.recalibrate, runs=a.runs)
        except ModelLoadError as exc:
            print(f"{mode}: {exc}")
            status = 1
            continue
        print(format_table(mode, choice))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
