"""DICOM cine source: a multi-frame ultrasound DICOM file played like a recorded clip.

The file's own frame time paces playback, and the mm per pixel comes from the header's
ultrasound region calibration, so depths and areas are in mm without clicking a ruler.

Design: `DicomSource` subclasses `FileSource` and swaps only what it reads from. Its `_open`
returns a `DicomFrames`, which reads like the cv2.VideoCapture that FileSource plays from
(read(), set/get of the frame position, fps, frame count and size, release()). So pacing,
loop, pause/seek/step, analyse-every-frame, stills and cut-off clips behave exactly as for a
video file, with no second copy of that playback loop, and the Clip tab and the live session
drive it unchanged. (Factoring the loop out of FileSource into a shared "frame reader" would
be cleaner still; file.py is not ours to change at present.) The cost: `DicomFrames.read()`
hands over BGR, as VideoCapture does, which FileSource turns back into RGB.

Frames are decoded one at a time by pydicom as they are played (`iter_pixels` over the file,
restarted on a seek), never all at once: a 10 s 800x600 RGB cine at 30 fps is 430 MB decoded.
Compressed pixel data goes through pydicom's decoders: RLE natively, JPEG (baseline, extended,
lossless, JPEG-LS) through pylibjpeg-libjpeg; anything else is refused with a message naming
the transfer syntax and what would decode it.

Pixels become what a Frame holds (uint8 grey or RGB): YBR is converted to RGB by pydicom,
palette colour through its LUT, MONOCHROME1 is inverted. Grey pixels deeper than 8 bits (or
carrying a window or rescale) go through pydicom's modality LUT and window, then the output
range of those steps (BitsStored's range, rescaled; the VOI LUT's own depth) maps onto 0..255
linearly; colour deeper than 8 bits keeps its top 8 stored bits.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, iter_pixels, pixel_array
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from sonoguide.pipeline.frames import Frame, Roi
from sonoguide.pipeline.image_area import valid_roi, valid_spacing
from sonoguide.sources.file import FALLBACK_FPS, MAX_PLAUSIBLE_FPS, FileSource

log = logging.getLogger(__name__)

SQUARE_TOLERANCE = 0.02  # |dx| and |dy| this close (relative): square pixels, one spacing
TISSUE, SPATIAL_2D, UNITS_CM = 1, 1, 3  # Region Data Type, Spatial Format, Physical Units codes
VIDEO_SYNTAX_HINT = "video inside DICOM (MPEG/H.264/HEVC) is not decoded here; export it as mp4"


class DicomError(Exception):
    """A DICOM file that cannot be played; the message is for the user and names the file."""


@dataclass(frozen=True)
class DicomHeader:
    """What playback needs from the header, read once when the file is opened."""

    dataset: Dataset  # the header without pixel data: LUTs, window, rescale
    rows: int
    columns: int
    frames: int  # declared Number of Frames (1 for a single image)
    transfer_syntax: UID
    fps: float
    spacing_mm: float | None
    roi: Roi | None  # the calibrated ultrasound region, in pixels
    modality: str
    notes: tuple[str, ...]  # why the fps or spacing is a fallback, a modality other than US

    @property
    def photometric(self) -> str:
        return str(self.dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()

    def info(self) -> dict[str, object]:
        """Status info for the UI and the report."""
        info: dict[str, object] = {
            "pixel_spacing_mm": self.spacing_mm, "modality": self.modality or None,
            "transfer_syntax": self.transfer_syntax.name, "photometric": self.photometric,
            "roi": None if self.roi is None else [self.roi.x, self.roi.y, self.roi.w,
                                                  self.roi.h],
            "notes": list(self.notes)}
        if self.notes:
            info["note"] = "; ".join(self.notes)
        return info


# --- header ------------------------------------------------------------------------------------

def read_header(path: Path) -> DicomHeader:
    """The header of the DICOM file at `path`; DicomError saying why it cannot be played."""
    name = path.name[:60]
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise DicomError(f"{name} is not a DICOM file (no 'DICM' marker at byte 128)") from exc
    except FileNotFoundError as exc:
        raise DicomError(f"DICOM file not found: {path}") from exc
    except OSError as exc:
        raise DicomError(f"cannot open {name}: {exc.strerror or exc}") from exc
    except Exception as exc:  # pydicom's many ways of meeting a damaged header
        raise DicomError(f"cannot read the DICOM header of {name} (truncated or corrupt): "
                         f"{_why(exc)}") from exc
    try:
        return _header_of(ds, name)
    except DicomError:
        raise
    except Exception as exc:  # pydicom converts values as they are read: a damaged one fails
        raise DicomError(f"cannot make sense of the DICOM header of {name} (corrupt?): "
                         f"{_why(exc)}") from exc


def _header_of(ds: Dataset, name: str) -> DicomHeader:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if not syntax:
        raise DicomError(f"cannot read {name}: its header names no transfer syntax "
                         "(truncated or not a DICOM file)")
    syntax = UID(str(syntax))
    rows, columns = _int(ds.get("Rows")), _int(ds.get("Columns"))
    if not rows or not columns:
        sop = str(ds.get("SOPClassUID", "") or "")
        if sop and UID(sop).name != sop and "Image" not in UID(sop).name:
            raise DicomError(f"{name} holds no image (it is a {UID(sop).name})")
        # an image object, or a cut SOP class: the header stops short
        raise DicomError(f"{name} is cut off or damaged: its header ends before the image "
                         "size (no rows/columns)")
    _check_decoder(syntax, name)
    frames = max(1, _int(ds.get("NumberOfFrames")) or 1)
    fps, fps_note = frame_rate(ds)
    spacing, roi, spacing_note = region_calibration(ds, columns, rows)
    modality = str(ds.get("Modality", "") or "").strip().upper()
    notes = [n for n in (fps_note if frames > 1 else None, spacing_note) if n]
    if modality and modality != "US":
        notes.insert(0, f"not an ultrasound image (modality {modality}): played as it is")
    return DicomHeader(ds, rows, columns, frames, syntax, fps, spacing, roi, modality,
                       tuple(notes))


def _check_decoder(syntax: UID, name: str) -> None:
    label = syntax.name if syntax.name != str(syntax) else f"{syntax} (unknown or private)"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        hint = VIDEO_SYNTAX_HINT if "MPEG" in label or "HEVC" in label else "no decoder exists"
        raise DicomError(f"cannot play {name}: transfer syntax {label} is not supported "
                         f"({hint})") from exc
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoding package"
        raise DicomError(f"cannot play {name}: transfer syntax {label} needs a decoder that "
                         f"is not installed ({needs})")


def frame_rate(ds: Dataset) -> tuple[float, str | None]:
    """Frames per second from Frame Time, Frame Time Vector, Cine Rate or Recommended Display
    Frame Rate (the first plausible one, in that order); FALLBACK_FPS and a note if none is."""
    candidates: list[tuple[float | None, str | None]] = []
    frame_time = _float(ds.get("FrameTime"))
    candidates.append((1000.0 / frame_time if frame_time and frame_time > 0 else None, None))
    vector = [t for t in (_float(v) for v in _values(ds.get("FrameTimeVector"))[1:])
              if t is not None and t > 0]  # the first entry is frame 0's: 0
    if vector:
        mean = sum(vector) / len(vector)
        varies = max(vector) - min(vector) > 0.1 * mean
        # one pace for the whole clip: FileSource plays at a single rate
        candidates.append((1000.0 / mean, f"frame times vary ({min(vector):.0f}-"
                           f"{max(vector):.0f} ms): played at their mean, {1000.0 / mean:.1f} "
                           "fps" if varies else None))
    candidates += [(_float(ds.get("CineRate")), None),
                   (_float(ds.get("RecommendedDisplayFrameRate")), None)]
    for fps, note in candidates:
        if fps is not None and 0 < fps <= MAX_PLAUSIBLE_FPS:
            return fps, note
    return FALLBACK_FPS, f"no usable frame time in the header: played at {FALLBACK_FPS:g} fps"


def region_calibration(ds: Dataset, width: int, height: int
                       ) -> tuple[float | None, Roi | None, str | None]:
    """(mm per pixel, the region's bounds, a note): from the 2D tissue region of the Sequence
    of Ultrasound Regions, else Pixel Spacing, else (None, None, why)."""
    regions = list(ds.get("SequenceOfUltrasoundRegions") or [])
    usable = []
    for region in regions:
        dx, dy = _float(region.get("PhysicalDeltaX")), _float(region.get("PhysicalDeltaY"))
        if (_int(region.get("RegionSpatialFormat")) != SPATIAL_2D
                or _int(region.get("PhysicalUnitsXDirection")) != UNITS_CM
                or _int(region.get("PhysicalUnitsYDirection")) != UNITS_CM
                or not dx or not dy):
            continue
        roi = _region_roi(region, width, height)
        area = 0 if roi is None else roi.w * roi.h
        # tissue first (a colour-flow box has the image's scale, not its bounds), then the largest
        usable.append((_int(region.get("RegionDataType")) == TISSUE, area, dx, dy, roi))
    if usable:
        tissue, _, dx, dy, roi = max(usable, key=lambda u: (u[0], u[1]))
        spacing, note = _square(abs(dx) * 10.0, abs(dy) * 10.0, "region")  # cm -> mm
        if not tissue:  # e.g. only a colour-flow box: its scale, but not the image's bounds
            roi = None
            note = "; ".join(filter(None, ["scale from a non-tissue ultrasound region", note]))
        if valid_spacing(spacing):
            return spacing, roi, note
        why = f"ultrasound region scale {spacing:.4g} mm/px is not plausible"
    elif regions:
        why = f"none of the {len(regions)} ultrasound regions is a 2D region calibrated in cm"
    else:
        why = "no ultrasound region calibration in the header"
    row, col = (_float(v) for v in (_values(ds.get("PixelSpacing")) + [None, None])[:2])
    if row and col:
        spacing, note = _square(abs(col), abs(row), "Pixel Spacing")
        if valid_spacing(spacing):
            return spacing, None, "; ".join(filter(None, [f"{why}: Pixel Spacing used", note]))
        why += f"; Pixel Spacing {spacing:.4g} mm/px is not plausible"
    return None, None, f"{why}: calibrate with two ruler marks"


def _square(x_mm: float, y_mm: float, what: str) -> tuple[float, str | None]:
    """One spacing for square pixels; the vertical one (depth) and a note if not square."""
    if abs(x_mm - y_mm) <= SQUARE_TOLERANCE * max(x_mm, y_mm):
        return (x_mm + y_mm) / 2.0, None
    return y_mm, (f"{what} pixels are not square ({x_mm:.4g} x {y_mm:.4g} mm): the vertical "
                  "spacing is used, so depths are right but areas are off by "
                  f"{abs(x_mm / y_mm - 1.0):.0%}")


def _region_roi(region: Dataset, width: int, height: int) -> Roi | None:
    x0, y0 = _int(region.get("RegionLocationMinX0")), _int(region.get("RegionLocationMinY0"))
    x1, y1 = _int(region.get("RegionLocationMaxX1")), _int(region.get("RegionLocationMaxY1"))
    if None in (x0, y0, x1, y1) or x1 < x0 or y1 < y0:
        return None
    roi = Roi(x0, y0, x1 - x0 + 1, y1 - y0 + 1).clamp(width, height)  # bounds are inclusive
    return roi if valid_roi(roi, width, height) else None


def _why(exc: Exception) -> str:
    """An exception for a message: pydicom's can run to hundreds of characters."""
    text = str(exc)
    return f"{type(exc).__name__}: {text if len(text) <= 120 else text[:117] + '...'}"


def _object_kind(ds: Dataset) -> str:
    sop = ds.get("SOPClassUID")
    return f"SOP class: {UID(str(sop)).name}" if sop else "no SOP class in its header"


def _values(value: object) -> list:
    """A DICOM value of any multiplicity as a list (None: empty)."""
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


# --- pixels ------------------------------------------------------------------------------------

def to_display(arr: np.ndarray, header: DicomHeader) -> np.ndarray:
    """A decoded frame (pydicom, YBR already RGB) as uint8 grey or RGB."""
    ds, photometric = header.dataset, header.photometric
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)  # 16-bit entries
    if arr.ndim == 3:
        bits = _int(ds.get("BitsStored")) or 8
        return arr if arr.dtype == np.uint8 else (arr >> max(bits - 8, 0)).astype(np.uint8)
    grey = _grey_to_uint8(arr, ds)
    return 255 - grey if photometric == "MONOCHROME1" else grey


def _grey_to_uint8(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    bits = _int(ds.get("BitsStored")) or 8
    has_voi = "WindowCenter" in ds or "VOILUTSequence" in ds
    has_modality = "RescaleSlope" in ds or "ModalityLUTSequence" in ds
    if arr.dtype == np.uint8 and bits == 8 and not has_voi and not has_modality:
        return arr  # the usual ultrasound frame: display values as stored
    # the range of the modality step's output (what pydicom's windowing maps onto, too)
    if ds.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** _int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    else:
        signed = _int(ds.get("PixelRepresentation")) == 1
        low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else \
            (0.0, 2.0 ** bits - 1)
        slope = _float(ds.get("RescaleSlope")) or 1.0
        intercept = _float(ds.get("RescaleIntercept")) or 0.0
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    values = apply_modality_lut(arr, ds)
    if has_voi:
        try:
            values = apply_voi_lut(values, ds)  # a VOI LUT first, else the window
            if ds.get("VOILUTSequence"):
                low, high = 0.0, float(2 ** _int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        except Exception as exc:  # a broken window (width 0, ...): shown without it
            log.debug("VOI not applied: %s", _why(exc))
    scaled = (np.asarray(values, np.float32) - low) * (255.0 / max(high - low, 1e-6))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


# --- a VideoCapture-like reader ------------------------------------------------------------

class DicomFrames:
    """Reads a DICOM file the way FileSource reads a cv2.VideoCapture: read() -> (ok, image)
    with colour as BGR, set/get of CAP_PROP_POS_FRAMES, CAP_PROP_FPS, CAP_PROP_FRAME_COUNT,
    CAP_PROP_FRAME_WIDTH/HEIGHT, isOpened() and release(). Frames are decoded as they are read.
    Used on one thread at a time (the producer's)."""

    def __init__(self, path: Path, header: DicomHeader, frame_count: int) -> None:
        self.path, self.header, self.frame_count = path, header, frame_count
        self._next = 0
        self._frames: Iterator[np.ndarray] | None = None
        self._open = True

    def isOpened(self) -> bool:  # noqa: N802  (cv2.VideoCapture's name)
        return self._open

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self._open or self._next >= self.frame_count:
            return False, None
        try:
            if self._frames is None:  # decoding starts (again) at the frame position
                self._frames = iter_pixels(self.path, indices=range(self._next,
                                                                    self.frame_count))
            image = to_display(next(self._frames), self.header)
        except Exception as exc:  # a damaged frame ends this pass like a cut-off clip
            log.warning("%s: frame %d cannot be decoded: %s", self.path.name, self._next,
                        _why(exc))
            self._close_frames()
            return False, None
        self._next += 1
        return True, (cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)

    def set(self, prop: int, value: float) -> bool:
        if prop != cv2.CAP_PROP_POS_FRAMES:
            return False
        target = max(0, int(value))
        if target != self._next:
            self._close_frames()
            self._next = target
        return True

    def get(self, prop: int) -> float:
        return float({cv2.CAP_PROP_POS_FRAMES: self._next, cv2.CAP_PROP_FPS: self.header.fps,
                      cv2.CAP_PROP_FRAME_COUNT: self.frame_count,
                      cv2.CAP_PROP_FRAME_WIDTH: self.header.columns,
                      cv2.CAP_PROP_FRAME_HEIGHT: self.header.rows}.get(prop, 0.0))

    def release(self) -> None:
        self._open = False
        self._close_frames()

    def _close_frames(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.close()  # type: ignore[attr-defined]  (a generator: closes the file)


# --- the source ----------------------------------------------------------------------------

class DicomSource(FileSource):
    """A DICOM file (multi-frame cine or a single image) played as a FileSource; frames carry
    the header's pixel spacing and `meta["roi"]`, the calibrated ultrasound region."""

    def __init__(self, path: str | Path, loop: bool = True) -> None:
        self._header: DicomHeader | None = None
        self._readable: int | None = None  # frames that decode (fewer in a cut-off file)
        super().__init__(path, loop=loop)  # probes the file: header, first and last frame
        self.name = f"dicom:{self.path.name}"

    @property
    def header(self) -> DicomHeader | None:
        return self._header

    @property
    def pixel_spacing_mm(self) -> float | None:
        return None if self._header is None else self._header.spacing_mm

    @property
    def roi(self) -> Roi | None:
        return None if self._header is None else self._header.roi

    def _probe(self) -> str | None:
        error = super()._probe()
        if error is None and self._header is not None:
            header, name = self._header, self.path.name
            extra = header.info()
            if self._readable is not None and self._readable < header.frames:
                # play what is there, as for a cut-off video file, and say so
                extra["warning"] = (f"{name} is cut off after {self._readable / header.fps:.1f}"
                                    f" s (truncated or corrupt): {self._readable} of "
                                    f"{header.frames} frames readable")
            first_note = f": {header.notes[0]}" if header.notes else ""
            self._set_status(self.status.state, f"opening {name}{first_note}", **extra)
        return error

    def _open(self) -> DicomFrames | str:  # type: ignore[override]
        """A reader over the file's frames, or a message saying why it cannot be played."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return f"DICOM file not found: {self.path}"
        except OSError as exc:
            return f"cannot open {self.path.name[:60]}: {exc.strerror or exc}"
        if not S_ISREG(stat.st_mode):
            return f"not a file: {self.path}"
        if self._header is None or (stat.st_size, stat.st_mtime_ns) != self._stamp:
            try:
                self._header = read_header(self.path)
                self._readable = self._count_readable(self._header)
            except DicomError as exc:
                return str(exc)
        self._stamp = (stat.st_size, stat.st_mtime_ns)
        return DicomFrames(self.path, self._header, self._readable or 1)

    def _count_readable(self, header: DicomHeader) -> int:
        """How many frames decode: all, or up to where a truncated file ends (a binary search
        needing about log2(frames) decodes, only when the last frame fails)."""
        name = self.path.name[:60]
        try:  # decoded and converted as playback will: its problems are said now
            to_display(pixel_array(self.path, index=0), header)
        except AttributeError as exc:
            if "no pixel data" in str(exc):
                raise DicomError(f"{name} has no pixel data (cut off before its pixels, or "
                                 f"not an image; {_object_kind(header.dataset)})") from exc
            raise DicomError(f"cannot decode the pixels of {name}: {exc}") from exc
        except Exception as exc:
            raise DicomError(f"cannot decode the first frame of {name} "
                             f"({header.transfer_syntax.name}; truncated or corrupt): "
                             f"{_why(exc)}") from exc
        last = header.frames - 1
        if last == 0 or self._decodes(last):
            return header.frames
        good, bad = 0, last  # frame `good` decodes, frame `bad` does not
        while bad - good > 1:
            middle = (good + bad) // 2
            good, bad = (middle, bad) if self._decodes(middle) else (good, middle)
        return good + 1

    def _decodes(self, index: int) -> bool:
        try:
            pixel_array(self.path, index=index, raw=True)
        except Exception:
            return False
        return True

    def _publish(self, image: np.ndarray, t_capture: float | None = None, *,
                 pixel_spacing_mm: float | None = None, truth: np.ndarray | None = None,
                 **meta: object) -> Frame:
        header = self._header
        if header is not None:
            if pixel_spacing_mm is None:
                pixel_spacing_mm = header.spacing_mm
            if header.roi is not None:
                meta.setdefault("roi", header.roi)
        return super()._publish(image, t_capture, pixel_spacing_mm=pixel_spacing_mm,
                                truth=truth, **meta)
