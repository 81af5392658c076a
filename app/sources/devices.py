"""Which capture devices are there? Lists the ones that actually open, quickly and quietly."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2

from sonoguide.sources.capture import (
    Opener,
    VideoCaptureLike,
    backend_name,
    default_backend,
    quiet_opencv_logs,
)

V4L_SYSFS = Path("/sys/class/video4linux")


@dataclass(frozen=True)
class CaptureDeviceInfo:
    index: int
    name: str  # driver's name where the OS tells it (Linux), else "capture device N"
    width: int  # the resolution it opened with (before the source asks for its own)
    height: int
    backend: str

    @property
    def label(self) -> str:
        return f"{self.index}: {self.name} ({self.width}x{self.height})"

    @property
    def spec(self) -> str:
        """The open_source() spec for this device."""
        return f"camera:{self.index}"


def _linux_name(index: int) -> str | None:
    try:
        return (V4L_SYSFS / f"video{index}" / "name").read_text().strip() or None
    except OSError:
        return None


def _candidate_indices(max_index: int, probing_real_devices: bool) -> list[int]:
    # On Linux the device nodes say which indices exist, so absent ones are not even tried.
    if probing_real_devices and sys.platform.startswith("linux"):
        return [i for i in range(max_index) if Path(f"/dev/video{i}").exists()]
    return list(range(max_index))


def list_capture_devices(max_index: int = 8, opener: Opener | None = None,
                         backend: int | None = None) -> list[CaptureDeviceInfo]:
    """Devices among indices 0..max_index-1 that open; [] when there are none (never raises)."""
    chosen = default_backend() if backend is None else backend
    open_device: Opener = opener or (lambda i, b: cv2.VideoCapture(i, b))
    found: list[CaptureDeviceInfo] = []
    with quiet_opencv_logs():
        for index in _candidate_indices(max_index, opener is None):
            cap: VideoCaptureLike | None = None
            try:
                cap = open_device(index, chosen)
                if not cap.isOpened():
                    continue
                width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
                height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                name = _linux_name(index) if opener is None else None
                found.append(CaptureDeviceInfo(index, name or f"capture device {index}",
                                               width, height, backend_name(chosen)))
            except Exception:  # a broken driver makes that index unusable, not the list
                continue
            finally:
                if cap is not None:
                    try:
                        cap.release()
                    except Exception:
                        pass
    return found
