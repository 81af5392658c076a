"""One place that turns a source spec string (command line, settings, UI) into a FrameSource.

Specs: "phantom" (jugular scene), "phantom:SCENE" (any scene of sonoguide.phantom.scenes),
"camera:N" (capture card N; "camera" alone is 0), a path to a video file or a DICOM file
(ultrasound cine or image), or a SonoGuide recording folder.
"""

from __future__ import annotations

from pathlib import Path

from sonoguide.phantom.scenes import SCENES, SOURCE_SCENES
from sonoguide.sources.base import FrameSource

PHANTOM_SCENES = SOURCE_SCENES  # every scene the simulator draws (sonoguide.phantom.scenes)
DEFAULT_PHANTOM_SCENE = "jugular"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".wmv", ".mpg", ".mpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
DICOM_MAGIC_AT, DICOM_MAGIC = 128, b"DICM"  # after the 128-byte preamble of a DICOM file

VALID_FORMS = ('"phantom", "phantom:SCENE" (' + ", ".join(PHANTOM_SCENES) + '), '
               '"camera:N" (N = 0, 1, ...), '
               "the path of a video file (" + ", ".join(VIDEO_SUFFIXES[:4]) + "), "
               "of a DICOM file (.dcm) or of a SonoGuide recording folder")


def _parse(spec: str, must_exist: bool = True) -> tuple[str, str]:
    """(kind, argument): ("phantom", scene) | ("camera", "N") | ("file", absolute path)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty source spec; valid forms: {VALID_FORMS}")
    text = spec.strip()
    head, _, arg = text.partition(":")
    kind = head.lower()
    if kind == "phantom":
        scene = (arg or DEFAULT_PHANTOM_SCENE).strip().lower()
        if scene not in PHANTOM_SCENES and scene not in SCENES:
            raise ValueError(f"unknown phantom scene {arg!r} in {spec!r}; "
                             f"scenes: {', '.join(PHANTOM_SCENES)}")
        return "phantom", scene
    if kind == "camera":
        index = (arg or "0").strip()
        if not (index.isascii() and index.isdigit()):  # "²".isdigit() is True
            raise ValueError(f"camera index must be a number >= 0 in {spec!r}, e.g. camera:0")
        return "camera", str(int(index))
    try:
        path = Path(text).expanduser()
        is_file, is_dir = path.is_file(), path.is_dir()
    except RuntimeError as exc:  # "~someone/clip.mp4" for a user this machine does not know
        raise ValueError(f"cannot use {_shorten(text)}: {exc}") from exc
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ValueError(f"cannot use {_shorten(text)} as a video file: "
                         f"{exc.strerror or exc}") from exc
    if is_dir and (path / "recording.json").is_file():  # a SonoGuide recording folder
        return "recording", str(path.resolve())
    if is_file or (not must_exist and not is_dir):
        try:
            return "file", str(path.resolve())
        except (OSError, RuntimeError):  # a symlink loop: keep the name as given
            return "file", str(path.absolute())
    if is_dir:
        raise ValueError(f"{spec!r} is a folder, neither a video file nor a SonoGuide recording; "
                         f"valid forms: {VALID_FORMS}")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        raise ValueError(f"video file not found: {path}")
    if path.suffix.lower() in DICOM_SUFFIXES:
        raise ValueError(f"DICOM file not found: {path}")
    raise ValueError(f"unknown source {spec!r}; valid forms: {VALID_FORMS}")


def open_source(spec: str) -> FrameSource:
    """A new, not yet started source for `spec`; ValueError with the valid forms if unknown.

    The caller starts it (source.start()) and stops it (source.stop()).
    """
    kind, arg = _parse(spec)
    if kind == "phantom":
        try:
            from sonoguide.sources.phantom import PhantomSource
        except ImportError as exc:
            raise ValueError(f"the phantom source is not available in this build: {exc}") from exc
        return PhantomSource(scene=arg)
    if kind == "camera":
        from sonoguide.sources.capture import CaptureSource

        return CaptureSource(index=int(arg))
    if kind == "recording":
        from sonoguide.sources.recording import RecordingSource

        return RecordingSource(arg)
    if is_dicom_file(arg):
        from sonoguide.sources.dicom import DicomSource

        return DicomSource(arg)
    from sonoguide.sources.file import FileSource

    return FileSource(arg)


def is_dicom_file(path: str | Path) -> bool:
    """A .dcm/.dicom name, or "DICM" after the preamble (DICOM files often have no suffix);
    reads 132 bytes at most. An unreadable file is left to the video source to report."""
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(DICOM_MAGIC_AT + len(DICOM_MAGIC))
    except OSError:
        return False
    return head[DICOM_MAGIC_AT:] == DICOM_MAGIC


def source_key(spec: str) -> str:
    """Stable key for per-source settings (ROI, pixel spacing): same source, same key.

    "phantom" and "phantom:jugular" share a key; files are keyed by their absolute path (also
    when the file is gone, so its settings can still be found or forgotten).
    """
    kind, arg = _parse(spec, must_exist=False)
    return f"{kind}:{arg}"


def _shorten(text: str, keep: int = 60) -> str:
    """A name for a message: a 300-character path would bury the reason."""
    return repr(text) if len(text) <= keep else repr(text[:keep // 2] + "..." + text[-keep // 2:])
