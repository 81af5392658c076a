"""Kill -9 a headless recording at a random moment; does everything before it play?

    python -m tests.reliability.record_kill --minutes 10 [--seed 0] [--out DIR]

Starts `sonoguide --headless --source phantom --record DIR` (the shipped model), SIGKILLs it
at a random moment within the run, then replays the recording folder: every complete segment
must play, nothing may be reported damaged, and the last frame recorded must lie within 1 s
of the kill (the segment being written when it died is all that may be lost). Exit 1 if not.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sonoguide.sources.base import SourceState
from sonoguide.sources.recording import RecordingSource

LOSS_LIMIT_S = 1.0  # one segment
SLACK_S = 0.3  # the kill and the first-frame moment are seen by polling from outside


@dataclass(frozen=True)
class KillResult:
    killed_after_s: float  # from the first frame to the kill
    recorded_s: float  # time of the last frame that replays
    frames: int
    segments: int
    problems: tuple[str, ...]

    @property
    def lost_s(self) -> float:
        return self.killed_after_s - self.recorded_s

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost_s <= LOSS_LIMIT_S + SLACK_S


def record_and_kill(folder: Path, after_s: float, extra_args: list[str] = (),
                    env: dict | None = None, start_timeout_s: float = 120.0) -> KillResult:
    """Record into `folder` (must not exist) and SIGKILL the run `after_s` after its first
    frame; then replay what is there."""
    command = [sys.executable, "-m", "sonoguide.cli", "--headless", "--source", "phantom",
               "--record", str(folder), *extra_args]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first_partial = folder / ".seg-000000.avi"  # opened with the first frame
    try:
        deadline = time.monotonic() + start_timeout_s
        while not first_partial.exists() and not (folder / "seg-000000.avi").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the recording did not start (exit {proc.poll()})")
            time.sleep(0.005)
        t_first = time.monotonic()
        time.sleep(max(0.0, t_first + after_s - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait(30)
    finally:
        proc.kill()
    return check(folder, t_kill - t_first)


def check(folder: Path, killed_after_s: float) -> KillResult:
    problems: list[str] = []
    source = RecordingSource(folder, loop=False)
    warning = source.status.info.get("warning")
    if warning:
        problems.append(f"damaged: {warning}")
    if source.status.state is SourceState.ERROR:
        return KillResult(killed_after_s, 0.0, 0, 0, (source.status.message, *problems))
    source.start()
    frames, last, recorded_s = 0, -1, 0.0
    try:
        deadline = time.monotonic() + 60.0 + 2.0 * killed_after_s
        while time.monotonic() < deadline:
            frame = source.wait_frame(last, 0.2)
            if frame is not None:
                frames, last = frames + 1, frame.frame_id
                recorded_s = frame.meta.get("recorded", {}).get("t_s", recorded_s)
                source.frame_done(frame.frame_id)
            elif source.status.state in (SourceState.ENDED, SourceState.ERROR):
                break
        else:
            problems.append("replay did not finish in time")
    finally:
        source.stop()
    expected = sum(n for _, n in source._segments)
    if frames != expected:
        problems.append(f"{frames} frames replayed of {expected} in the segments")
    return KillResult(killed_after_s, recorded_s, frames, len(source._segments), tuple(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="length of the run the kill falls into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the recording here (default: a temporary folder)")
    args = parser.parse_args(argv)
    after_s = random.Random(args.seed).uniform(0.1, 1.0) * args.minutes * 60.0
    work = Path(tempfile.mkdtemp(prefix="sonoguide-record-kill-"))
    folder = args.out or work / "recording"
    print(f"recording on the phantom; kill -9 after {after_s:.1f} s ...", flush=True)
    try:
        result = record_and_kill(folder, after_s, env={**os.environ})
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"killed {result.killed_after_s:.1f} s after the first frame; {result.frames} frames "
          f"in {result.segments} segments replay, the last recorded at {result.recorded_s:.2f} s: "
          f"{result.lost_s:.2f} s lost (limit {LOSS_LIMIT_S:g} s)")
    for problem in result.problems:
        print(f"FAIL: {problem}")
    print("PASS" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
