"""The one way SonoGuide writes a file the user keeps: whole, or not at all.

Everything goes to a temporary file in the same folder (a unique hidden name, so two writers
never share one), is flushed to the disk, and only then renamed over the final name: killing
the app, a power cut or a full disk never leaves half a file under a name the user sees.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def replace_atomically(path: str | os.PathLike, mode: str = "wb", *,
                       encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """`with replace_atomically(p, "w") as fh: fh.write(...)`: `p` appears, complete, when the
    block ends without an exception; otherwise the old `p` (if any) is untouched and the
    temporary file is gone. Creates the folder. OSError as the file system gives it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with open(fd, mode, encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """All of `data` under `path`, or nothing (see replace_atomically)."""
    text = isinstance(data, str)
    with replace_atomically(path, "w" if text else "wb",
                            encoding="utf-8" if text else None) as fh:
        fh.write(data)
