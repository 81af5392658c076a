"""kill -9 at random moments while snapshots are written: no truncated file under a final name.

    python -m tests.reliability.snapshot_kill [--kills 30] [--seed 0] [--max-delay 1.5]

Each round starts a child process that writes snapshots without pause through the app's own
writer (sonoguide.ui.snapshot.save_snapshot: raw PNG, overlay PNG, JSON) into a fresh folder, waits
until it is writing, lets it run for a random (seeded) moment and SIGKILLs it. Then every file
under a final name in that folder is checked: a PNG must be whole (signature, every chunk's CRC,
IEND as the last bytes) and decode with cv2.imread; a JSON must parse, name its frame and have
both its PNGs, whole, beside it. Leftovers under temporary names (.NAME.part) are allowed; what
the kill interrupted is counted (inside a file write: a temp file is left; between a snapshot's
files: pictures without their JSON yet) to show the kills landed inside snapshots. Exit 1 on
any bad file under a final name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEMP_NAME = re.compile(r"^\..+\.part$")  # sonoguide.ui.snapshot's temporary names
STEM = re.compile(r"^sonoguide_\d{8}_\d{6}_f(\d+)$")
FRAME_SIZE = (1280, 720)  # (w, h): noisy pictures of this size take ~0.1 s each to write
READY = "writing"
READY_TIMEOUT_S = 60.0


# --- child: write snapshots until killed ---------------------------------------------------------

def child(folder: Path, first_id: int, seed: int) -> None:
    from sonoguide.pipeline.frames import Frame, Roi
    from sonoguide.ui.snapshot import save_snapshot

    rng = np.random.default_rng(seed)
    w, h = FRAME_SIZE
    # noise compresses badly: files of a few MB, so a kill often lands inside one
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]
    roi = Roi(w // 8, h // 10, w * 3 // 4, h * 4 // 5)
    crop_choices = (True, False)
    print(READY, flush=True)
    frame_id = first_id
    while True:
        frame = Frame(image=images[frame_id % 2], frame_id=frame_id, t_capture=time.monotonic(),
                      source="camera:0", roi=roi)
        save_snapshot(folder, frame, None, spacing_mm=0.1, info={"writer": "snapshot_kill"},
                      image_area_only=crop_choices[frame_id % 2])
        frame_id += 1


# --- parent: kill and check ----------------------------------------------------------------------

def png_problem(data: bytes) -> str | None:
    """Why `data` is not a whole PNG file, or None."""
    if not data.startswith(PNG_SIGNATURE):
        return "no PNG signature"
    pos = len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            return f"chunk header cut off at byte {pos}"
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return f"{kind!r} chunk cut off ({len(data)} of {end} bytes)"
        if zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"{kind!r} chunk CRC mismatch"
        pos = end
        if kind == b"IEND":
            return None if pos == len(data) else f"{len(data) - pos} bytes after IEND"
    return "no IEND chunk"


def picture_problem(path: Path) -> str | None:
    import cv2

    problem = png_problem(path.read_bytes())
    if problem is None and cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
        problem = "cv2.imread cannot decode it"
    return problem


@dataclasses.dataclass
class Round:
    kill: int
    delay_s: float
    snapshots: int  # complete (JSON written)
    temp_left: int  # a kill inside a file leaves its temporary file
    pictures_without_json: int  # a kill between the files of one snapshot
    problems: list[str]

    @property
    def landed(self) -> str:
        if self.temp_left:
            return "inside a file write"
        if self.pictures_without_json:
            return "between a snapshot's files"
        return "before a snapshot's first file"  # rendering, encoding, or between snapshots


def check_folder(folder: Path) -> tuple[int, int, int, list[str]]:
    """(complete snapshots, temp files, pictures without JSON, problems) of one folder."""
    problems: list[str] = []
    temp = 0
    pictures: dict[str, Path] = {}
    records: list[Path] = []
    for path in sorted(folder.iterdir()) if folder.exists() else []:
        name = path.name
        if TEMP_NAME.match(name):
            temp += 1
        elif name.endswith(".png"):
            pictures[name] = path
            problem = picture_problem(path)
            if problem:
                problems.append(f"{name}: {problem}")
        elif name.endswith(".json"):
            records.append(path)
        else:
            problems.append(f"{name}: unexpected file under a final name")
    for path in records:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: not valid JSON ({exc})")
            continue
        stem = path.name[:-len(".json")]
        match = STEM.match(stem)
        if match is None or not isinstance(record, dict) or \
                record.get("frame_id") != int(match.group(1)):
            problems.append(f"{path.name}: does not name its frame")
        for part in ("raw", "overlay"):
            if f"{stem}_{part}.png" not in pictures:
                problems.append(f"{path.name}: its {part} PNG is missing")
    stems = {p.name[:-len(".json")] for p in records}
    orphans = [n for n in pictures if n.rsplit("_", 1)[0] not in stems]
    return len(records), temp, len(orphans), problems


def _wait_ready(proc: subprocess.Popen, timeout: float) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != READY:
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"snapshot writer did not start: {line!r} {err[-2000:]}")


def run(kills: int = 30, seed: int = 0, max_delay_s: float = 1.5,
        workdir: Path | None = None, progress: bool = False) -> list[Round]:
    rng = random.Random(seed)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for k in range(kills):
            folder = Path(tmp) / f"kill{k:03d}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.snapshot_kill", "--child", str(folder),
                 "--first-id", str(1000 * k), "--seed", str(seed + k)],
                cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
            try:
                _wait_ready(proc, READY_TIMEOUT_S)
                delay = rng.uniform(0.0, max_delay_s)
                time.sleep(delay)
                alive = proc.poll() is None
                os.kill(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            snapshots, temp, orphans, problems = check_folder(folder)
            if not alive:
                problems.append(f"writer died by itself before the kill: {err[-2000:]}")
            rounds.append(Round(k + 1, round(delay, 3), snapshots, temp, orphans, problems))
            if progress:
                r = rounds[-1]
                print(f"kill {r.kill:3d} after {r.delay_s:5.3f} s: {r.snapshots} complete, "
                      f"{r.landed}{'; ' + '; '.join(problems) if problems else ''}", flush=True)
            shutil.rmtree(folder, ignore_errors=True)  # a few MB per snapshot: keep disk use low
    return rounds


def summary(rounds: list[Round], wall_s: float) -> str:
    landed = {kind: sum(r.landed == kind for r in rounds)
              for kind in ("inside a file write", "between a snapshot's files",
                           "before a snapshot's first file")}
    bad = [p for r in rounds for p in r.problems]
    return "\n".join([
        f"kills: {len(rounds)}, wall {wall_s:.1f} s",
        f"snapshots completed before the kills: {sum(r.snapshots for r in rounds)}",
        "kill landed: " + ", ".join(f"{k} {v}" for k, v in landed.items()),
        f"temporary files left (allowed): {sum(r.temp_left for r in rounds)}",
        f"truncated or half-written files under a final name: {len(bad)}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.snapshot_kill",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=1.5,
                        help="kill at a random moment up to this many seconds into writing")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--first-id", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.first_id, args.seed)
        return 0
    t0 = time.monotonic()
    rounds = run(args.kills, args.seed, args.max_delay, progress=True)
    print(summary(rounds, time.monotonic() - t0))
    bad = [p for r in rounds for p in r.problems]
    for problem in bad:
        print(f"FAIL: {problem}")
    print("PASS" if not bad else "FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
