"""Where a field problem leaves its trace: a rotating log file in the user's log folder.

Every run logs its version, the platform, the models and providers it chose, and every banner
the window showed (sonoguide.ui.banners), so a doctor's "it said NO SIGNAL twice this morning" can
be read back. Warnings also go to stderr, as before.

    Linux    ~/.local/state/SonoGuide/log/sonoguide.log
    macOS    ~/Library/Logs/SonoGuide/sonoguide.log
    Windows  %LOCALAPPDATA%\\SonoGuide\\Logs\\sonoguide.log
SONOGUIDE_LOG_DIR puts it elsewhere (tests use it).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import platform
import sys
from pathlib import Path

LOG_NAME = "sonoguide.log"
MAX_BYTES = 2 * 1024 * 1024  # a few days of a busy list; five old files are kept
BACKUPS = 5
FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_handlers: list[logging.Handler] = []  # ours, so configuring again replaces them


class _CurrentStderr(logging.StreamHandler):
    """stderr as it is when a record comes (a test harness swaps it), not as it was."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def default_log_dir() -> Path:
    override = os.environ.get("SONOGUIDE_LOG_DIR")
    if override:
        return Path(override)
    from platformdirs import user_log_dir

    return Path(user_log_dir("SonoGuide", appauthor=False))


def configure_logging(level: str = "INFO", log_dir: Path | None = None) -> Path | None:
    """Log at `level` to the rotating file (returned) and warnings to stderr; None when the
    folder cannot be written (then stderr only, and it says so)."""
    root = logging.getLogger()
    for handler in _handlers:
        root.removeHandler(handler)
        handler.close()
    _handlers.clear()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    console = _CurrentStderr()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("sonoguide: %(levelname)s: %(message)s"))
    _handlers.append(console)
    path: Path | None = (log_dir or default_log_dir()) / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES,
                                                    backupCount=BACKUPS, encoding="utf-8")
        file.setFormatter(logging.Formatter(FORMAT))
        _handlers.append(file)
    except OSError as exc:
        problem, path = f"no log file: cannot write {path} ({exc.strerror or exc})", None
    for handler in _handlers:
        root.addHandler(handler)
    if path is None:
        logging.getLogger(__name__).warning("%s", problem)
    return path


def app_version() -> str:
    """SonoGuide's installed version (from its package metadata, also inside the bundle)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sonoguide")
    except PackageNotFoundError:
        return "not installed"


def log_start(argv: list[str]) -> None:
    """The first lines of a run: what ran, where, with which arguments."""
    log = logging.getLogger("sonoguide")
    log.info("SonoGuide %s, Python %s, %s %s", app_version(), platform.python_version(),
             platform.platform(), platform.machine())
    log.info("arguments: %s", " ".join(argv) or "(none)")
