"""Reading and writing SonoGuide's JSON settings files so that no file can stop the app.

A settings file is whatever is found at its path: a FIFO (open() would block forever), a
device, a directory, a huge file, deeply nested JSON (RecursionError), invalid UTF-8, NaN.
read_json_settings never blocks, never reads more than the limit, never raises; a file it
refuses is moved aside (so the next save can write a good one) and the caller gets a sentence
for the window. write_json_settings is atomic and answers a sentence instead of raising.
Qt-free; every settings file (rois.json, speed.json) goes through here.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from sonoguide.pipeline.files import write_atomically

MAX_BYTES = 1 << 20  # settings files are a few KiB; anything near this is not ours
MAX_DEPTH = 32  # ours nest 5 deep; deeper data would only trouble later recursive code
KEEP_ASIDE = 3  # moved-aside files kept per settings file (older ones are deleted)
DEFAULTS = "SonoGuide starts with defaults"


@dataclass(frozen=True)
class SettingsRead:
    """What a settings file held. `data` is {} when the file is missing (no problem: a first
    start) or refused (then `problem` says why, for the window, and `moved_to` where it went)."""
    data: dict
    problem: str | None = None
    moved_to: Path | None = None


class _Refused(Exception):
    """Why a file is not used, in plain words."""


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to infinity without passing parse_constant
        raise ValueError(f"{text} is out of range")
    return value


def _depth(value: object) -> int:
    """Nesting depth, without recursion (the data may be just under the recursion limit)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:  # no need to look further down once too deep
                todo.extend((v, level + 1) for v in
                            (item.values() if isinstance(item, dict) else item))
    return deepest


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "it is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "it is a named pipe, not a file"
    if stat.S_ISSOCK(mode):
        return "it is a socket, not a file"
    return "it is a device or other special file, not a regular file"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _parse(path: Path, max_bytes: int) -> dict:
    """The file's top-level JSON object; _Refused, or FileNotFoundError when there is none."""
    # stat first so a device is never even opened; fstat below is what counts (no race).
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _Refused(_kind(mode))
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_BINARY", 0))
    fd = os.open(path, flags)  # O_NONBLOCK: a FIFO swapped in meanwhile cannot block us
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(_kind(info.st_mode))
        if info.st_size > max_bytes:
            raise _Refused(f"it is too large: {_size(info.st_size)}, "
                           f"settings are at most {_size(max_bytes)}")
        chunks: list[bytes] = []
        left = max_bytes + 1  # +1: a file that grew since fstat is still caught
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > max_bytes:
        raise _Refused(f"it is larger than {_size(max_bytes)}")
    try:
        data = json.loads(raw.decode("utf-8-sig"), parse_constant=_no_constants,
                          parse_float=_finite_float)
    except UnicodeDecodeError:
        raise _Refused("it is not UTF-8 text") from None
    except RecursionError:
        raise _Refused("it is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, huge integers
        raise _Refused(f"it is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Refused("its top level is not a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise _Refused("it is nested too deeply")
    return data


def _move_aside(path: Path) -> Path:
    """Rename `path` to `<name>.corrupt-<time>` (never over an older one); delete all but the
    newest KEEP_ASIDE of those so a file that keeps going bad cannot fill the disk."""
    # fixed width down to the nanosecond: names sort by age, and one freed by the pruning
    # below is never handed out again (which would put a new file among the old ones)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}.{time.time_ns() % 10**9:09d}"
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while os.path.lexists(aside):
        aside = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
        n += 1
    os.replace(path, aside)
    olds = sorted(path.parent.glob(f"{path.name}.corrupt*"),
                  key=lambda p: (p.name != f"{path.name}.corrupt", p.name))  # the legacy name
    for old in olds[:-KEEP_ASIDE]:
        try:
            if not old.is_dir():  # a folder that was in the way is left to the user
                old.unlink()
        except OSError:
            pass
    return aside


def read_json_settings(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES,
                       move_aside: bool = True, then: str = DEFAULTS) -> SettingsRead:
    """The JSON object in `path`, read without blocking and within `max_bytes`; never raises.

    A missing file (or missing folder) is {} with no problem. Anything else unusable is {}
    with `problem` naming the file, why, and what was done ("... moved aside to <name> and
    `then`."); with move_aside=False (a shipped file, not the user's) it is left in place.
    """
    path = Path(path)
    try:
        return SettingsRead(_parse(path, max_bytes))
    except (FileNotFoundError, NotADirectoryError):
        return SettingsRead({})
    except _Refused as exc:
        why = str(exc)
    except OSError as exc:  # permission denied, I/O error, ...
        why = f"it could not be read: {(exc.strerror or str(exc)).lower()}"
    except (MemoryError, RecursionError, ValueError) as exc:  # defensive: none expected here
        why = f"it could not be read: {type(exc).__name__}"
    start = f"Settings file {path} was unreadable ({why})"
    if not move_aside:
        return SettingsRead({}, f"{start}; {then}.")
    try:
        aside = _move_aside(path)
    except OSError as exc:
        return SettingsRead({}, f"{start} and could not be moved aside "
                                f"({(exc.strerror or str(exc)).lower()}); {then}.")
    return SettingsRead({}, f"{start}; it was moved aside to {aside.name} and {then}.", aside)


def write_json_settings(path: str | os.PathLike, data: dict) -> str | None:
    """Write `data` to `path` atomically (a temporary file in the same folder, fsync, replace:
    a crash or full disk never leaves half a file), creating the folder. None when saved, else
    a sentence for the window; never raises for a bad folder, a full disk or unwritable data."""
    path = Path(path)
    try:
        write_atomically(path, json.dumps(data, indent=1, allow_nan=False) + "\n")
        return None
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
    except (ValueError, TypeError, RecursionError) as exc:  # NaN, a non-JSON value: our bug
        why = f"the settings could not be encoded: {exc}"
    return f"Cannot save settings: {path}: {why} (kept for this session only)."
