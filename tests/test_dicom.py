"""DICOM cine source: files built here with pydicom play at their frame time, with the mm per
pixel of their ultrasound region calibration, in every pixel format scanners export."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.pixels.processing import convert_color_space
from pydicom.uid import (
    HTJ2K,
    MPEG4HP41,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from sonoguide import cli
from sonoguide.pipeline.frames import Roi
from sonoguide.sources.base import SourceState
from sonoguide.sources.dicom import DicomSource, frame_rate, region_calibration
from sonoguide.sources.factory import open_source, source_key
from tests.clips import frame_image, frame_index_of, published, red_corner_rgb
from tests.model_factory import make_model
from tests.waiting import FakeClock, wait_until

SIZE = (160, 128)  # (w, h): room for the frame index code of tests.clips
REGION = (10, 20, 149, 119)  # x0, y0, x1, y1 (inclusive), the tissue image on the screen
REGION_ROI = Roi(10, 20, 140, 100)
DELTA_CM = 0.012  # cm per pixel -> 0.12 mm/px


def us_region(x0: int = REGION[0], y0: int = REGION[1], x1: int = REGION[2],
              y1: int = REGION[3], dx: float = DELTA_CM, dy: float = DELTA_CM,
              data_type: int = 1, spatial: int = 1, units: int = 3) -> Dataset:
    """One item of the Sequence of Ultrasound Regions."""
    region = Dataset()
    region.RegionSpatialFormat = spatial  # 1: 2D
    region.RegionDataType = data_type  # 1: tissue, 2: colour flow, 3: PW Doppler, ...
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, y0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1, y1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = units  # 3: cm
    region.PhysicalDeltaX, region.PhysicalDeltaY = dx, dy
    return region


def twice(frames: np.ndarray) -> np.ndarray:
    """Two copies of the first frame: a 2-frame cine whose frames are the same, so a test of
    pixels need not know which frame it caught."""
    return np.stack([frames[0], frames[0]])


def grey_frames(n: int) -> np.ndarray:
    return np.stack([cv2.cvtColor(frame_image(i, SIZE), cv2.COLOR_BGR2GRAY) for i in range(n)])


def rgb_frames(n: int) -> np.ndarray:
    return np.stack([cv2.cvtColor(frame_image(i, SIZE), cv2.COLOR_BGR2RGB) for i in range(n)])


def write_dicom(path: Path, frames: np.ndarray, *, photometric: str | None = None,
                frame_time_ms: float | None = 40.0, regions: list[Dataset] | None = None,
                syntax: str = ExplicitVRLittleEndian, modality: str = "US",
                bits_stored: int | None = None, encoded: list[bytes] | None = None,
                pixels: bool = True, **elements: object) -> Path:
    """A DICOM file of `frames` ((n, h, w) grey or (n, h, w, 3) colour, uint8 or uint16):
    native, RLE-compressed (syntax=RLELossless) or with `encoded` frames encapsulated."""
    n, rows, columns = frames.shape[:3]
    colour = frames.ndim == 4
    sop_class = UltrasoundMultiFrameImageStorage if n > 1 else UltrasoundImageStorage
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = frames.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if n > 1:
        ds.NumberOfFrames = n
        if frame_time_ms is not None:
            ds.FrameTime = frame_time_ms
            ds.FrameIncrementPointer = 0x00181063
    if regions:
        ds.SequenceOfUltrasoundRegions = regions
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if encoded is not None:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
    elif pixels:
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
        if syntax != ExplicitVRLittleEndian:
            ds.compress(syntax)
    # a private transfer syntax does not say how the dataset is encoded: explicit VR LE
    known = UID(syntax).is_transfer_syntax
    ds.save_as(path, enforce_file_format=True,
               **({} if known else {"implicit_vr": False, "little_endian": True}))
    return path


def play_every(started, source: DicomSource, n: int) -> list:
    """The first `n` frames the source publishes, none missed (a plain reader only ever gets
    the newest frame and may miss one on a busy machine)."""
    frames = published(source)
    started(source)
    assert wait_until(lambda: len(frames) >= n), f"{len(frames)} frames: {source.status}"
    return frames[:n]


def first_frame(started, path: Path) -> np.ndarray:
    source = started(DicomSource(path))
    assert wait_until(lambda: source.latest() is not None), source.status
    return source.latest().image


@pytest.fixture(scope="module")
def cine(tmp_path_factory) -> Path:
    """12 grey frames, 40 ms apart (25 fps), calibrated at 0.12 mm/px in the tissue region."""
    path = tmp_path_factory.mktemp("dcm") / "cine.dcm"
    return write_dicom(path, grey_frames(12), regions=[us_region()])


# --- playback ----------------------------------------------------------------------------------

def test_a_cine_plays_at_its_frame_time_with_the_region_scale_and_loops(started, cine):
    clock = FakeClock()
    source = clock.drive(DicomSource(cine))
    assert source.fps == pytest.approx(25.0) and source.duration_s == pytest.approx(12 / 25)
    frames = published(source)
    started(source)
    clock.run(15.5 * 0.04)
    index = [frame_index_of(f.image) for f in frames]
    assert index == [f.meta["frame_index"] for f in frames]
    assert index == [i % 12 for i in range(16)]  # in order, and back to the start after the end
    # 40 ms apart, the loop's seam included: no gap, no catch-up burst
    assert np.diff([f.t_capture for f in frames]) == pytest.approx(0.04, abs=1e-9)
    assert all(f.pixel_spacing_mm == pytest.approx(DELTA_CM * 10) for f in frames)
    assert all(f.meta["roi"] == REGION_ROI for f in frames)
    info = source.status.info
    assert info["pixel_spacing_mm"] == pytest.approx(0.12)
    assert info["roi"] == [10, 20, 140, 100] and info["modality"] == "US"
    assert source.name == "dicom:cine.dcm" and source.status.state is SourceState.LIVE


def test_pause_step_and_seek_land_on_the_right_frame(started, cine):
    source = started(DicomSource(cine))
    assert wait_until(lambda: source.latest() is not None)
    source.step(0)  # pauses where it is
    assert wait_until(lambda: source.status.state is SourceState.PAUSED)
    source.seek(8 / 25)
    assert wait_until(lambda: frame_index_of(source.latest().image) == 8)
    source.step(-3)
    assert wait_until(lambda: frame_index_of(source.latest().image) == 5)
    source.step(1)
    assert wait_until(lambda: frame_index_of(source.latest().image) == 6)
    assert source.position_s == pytest.approx(6 / 25)


def test_analyse_every_frame_holds_playback_until_the_frame_is_done(started, cine):
    clock = FakeClock()
    source = clock.drive(DicomSource(cine))
    source.analyse_every_frame = True
    started(source)
    clock.settle()
    held = source.latest()
    clock.run(0.25)  # six frame periods: without the hold, six more frames
    assert source.latest() is held and source.waiting_for_analysis
    source.frame_done(held.frame_id)
    clock.settle()
    nxt = source.latest()
    assert nxt.frame_id == held.frame_id + 1
    assert frame_index_of(nxt.image) == frame_index_of(held.image) + 1


def test_a_single_image_is_a_still(started, tmp_path):
    path = write_dicom(tmp_path / "one.dcm", grey_frames(1), regions=[us_region()])
    clock = FakeClock()
    source = started(clock.drive(DicomSource(path)))
    clock.run(1.0)  # a still is published once, not looped as a one-frame film
    assert source.status.state is SourceState.ENDED
    assert source.status.info.get("still") is True
    assert source.frames_published == 1
    assert source.latest().pixel_spacing_mm == pytest.approx(0.12)


# --- pixel formats -------------------------------------------------------------------------

def test_rgb_frames_arrive_as_rgb(started, tmp_path):
    path = write_dicom(tmp_path / "rgb.dcm", twice(rgb_frames(1)))
    image = first_frame(started, path)
    assert image.shape == (128, 160, 3) and frame_index_of(image) == 0
    red, green, blue = red_corner_rgb(image)
    assert red > 200 and green < 50 and blue < 50


def test_ybr_full_is_converted_to_rgb(started, tmp_path):
    rgb = twice(rgb_frames(1))
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = write_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL")
    image = first_frame(started, path)
    assert np.abs(image.astype(int) - rgb[0]).max() <= 3  # the round trip's rounding only


def test_monochrome1_is_inverted(started, tmp_path):
    grey = twice(grey_frames(1))
    path = write_dicom(tmp_path / "m1.dcm", grey, photometric="MONOCHROME1")
    assert np.array_equal(first_frame(started, path), 255 - grey[0])


def test_16_bit_frames_scale_by_bits_stored_or_by_their_window(started, tmp_path):
    ramp = np.tile(np.linspace(0, 4095, SIZE[0]).astype(np.uint16), (SIZE[1], 1))
    frames = np.stack([ramp, ramp])
    plain = first_frame(started, write_dicom(tmp_path / "12bit.dcm", frames, bits_stored=12))
    assert plain.dtype == np.uint8
    assert np.abs(plain.astype(int) - np.rint(ramp / 4095 * 255)).max() <= 1
    windowed = first_frame(started, write_dicom(tmp_path / "win.dcm", frames, bits_stored=12,
                                                WindowCenter=1024, WindowWidth=1024))
    assert windowed[0, 0] == 0 and windowed[0, -1] == 255  # outside the window: clipped
    mid = int(np.argmin(np.abs(ramp[0].astype(int) - 1024)))
    assert abs(int(windowed[0, mid]) - 128) <= 3  # the window centre is mid-grey


def test_a_broken_window_is_ignored_and_a_palette_without_its_table_is_refused(started,
                                                                                 tmp_path):
    grey = twice(grey_frames(1)).astype(np.uint16) * 16  # 12 bits stored
    path = write_dicom(tmp_path / "w0.dcm", grey, bits_stored=12, WindowCenter=100,
                       WindowWidth=0)  # width 0: no window at all
    assert np.abs(first_frame(started, path).astype(int) - grey[0] // 16).max() <= 1
    path = write_dicom(tmp_path / "nolut.dcm", twice(grey_frames(1)),
                       photometric="PALETTE COLOR")
    source = started(DicomSource(path))
    assert source.status.state is SourceState.ERROR and "nolut.dcm" in source.status.message


def test_palette_colour_goes_through_its_lookup_table(started, tmp_path):
    index = np.tile(np.arange(SIZE[0], dtype=np.uint8), (SIZE[1], 1))
    lut = np.arange(256, dtype=np.uint16) * 257  # 16-bit entries
    path = write_dicom(
        tmp_path / "palette.dcm", np.stack([index, index]), photometric="PALETTE COLOR",
        RedPaletteColorLookupTableDescriptor=[256, 0, 16],
        GreenPaletteColorLookupTableDescriptor=[256, 0, 16],
        BluePaletteColorLookupTableDescriptor=[256, 0, 16],
        RedPaletteColorLookupTableData=lut.tobytes(),
        GreenPaletteColorLookupTableData=np.zeros(256, np.uint16).tobytes(),
        BluePaletteColorLookupTableData=(lut[::-1]).tobytes())
    image = first_frame(started, path)
    assert image.shape == (128, 160, 3)
    assert image[0, 100].tolist() == [100, 0, 155]


def test_rle_compressed_frames_decode_exactly(started, tmp_path):
    grey = grey_frames(4)
    path = write_dicom(tmp_path / "rle.dcm", grey, syntax=RLELossless, regions=[us_region()])
    source = DicomSource(path)
    frames = play_every(started, source, 4)
    assert [f.image.tolist() for f in frames] == [g.tolist() for g in grey]
    assert source.status.info["transfer_syntax"] == "RLE Lossless"


@pytest.mark.skipif(not get_decoder(JPEGBaseline8Bit).is_available,
                    reason="no JPEG decoder installed (pylibjpeg-libjpeg)")
def test_jpeg_baseline_frames_decode(started, tmp_path):
    rgb = rgb_frames(3)
    encoded = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in rgb]
    path = write_dicom(tmp_path / "jpeg.dcm", rgb, photometric="YBR_FULL_422",
                       syntax=JPEGBaseline8Bit, encoded=encoded, regions=[us_region()])
    frames = play_every(started, DicomSource(path), 3)
    assert [frame_index_of(f.image) for f in frames] == [0, 1, 2]
    assert np.abs(frames[0].image.astype(int) - rgb[0]).mean() < 4  # lossy, but RGB
    assert red_corner_rgb(frames[0].image)[0] > 200


# --- calibration and frame rate from the header ----------------------------------------------

def test_without_calibration_the_spacing_is_none_and_the_status_says_so(started, tmp_path):
    path = write_dicom(tmp_path / "bare.dcm", grey_frames(3))
    source = started(DicomSource(path))
    assert wait_until(lambda: source.latest() is not None)
    assert source.latest().pixel_spacing_mm is None and "roi" not in source.latest().meta
    assert "calibrate" in source.status.info["note"]
    assert source.status.info["pixel_spacing_mm"] is None


def test_pixel_spacing_is_the_fallback_and_a_colour_flow_box_is_not_the_image():
    ds = Dataset()
    ds.PixelSpacing = [0.2, 0.2]
    spacing, roi, note = region_calibration(ds, 160, 128)
    assert spacing == pytest.approx(0.2) and roi is None and "Pixel Spacing used" in note
    # tissue region preferred over a (smaller) colour-flow box with its own bounds
    ds.SequenceOfUltrasoundRegions = [us_region(40, 40, 120, 110, 0.02, 0.02, data_type=2),
                                      us_region()]
    assert region_calibration(ds, 160, 128) == (pytest.approx(0.12), REGION_ROI, None)
    # a colour-flow box alone gives the scale but not the image's bounds
    ds.SequenceOfUltrasoundRegions = [us_region(40, 40, 120, 110, 0.02, 0.02, data_type=2)]
    spacing, roi, note = region_calibration(ds, 160, 128)
    assert spacing == pytest.approx(0.2) and roi is None and "non-tissue" in note
    # a 1D (M-mode / Doppler) region or one in other units is not a scale for the image
    ds.SequenceOfUltrasoundRegions = [us_region(spatial=2), us_region(units=4)]
    spacing, _, note = region_calibration(ds, 160, 128)
    assert spacing == pytest.approx(0.2) and "2D region calibrated in cm" in note


def test_non_square_pixels_use_the_depth_spacing_and_say_so():
    ds = Dataset()
    ds.SequenceOfUltrasoundRegions = [us_region(dx=0.015, dy=0.012)]
    spacing, _, note = region_calibration(ds, 160, 128)
    assert spacing == pytest.approx(0.12) and "not square" in note
    ds.SequenceOfUltrasoundRegions = [us_region(dx=0.0121, dy=0.012)]  # within 2%: square
    assert region_calibration(ds, 160, 128)[2] is None


@pytest.mark.parametrize("elements, fps, note", [
    ({"FrameTime": 20.0}, 50.0, None),
    ({"FrameTimeVector": [0, 40, 40, 40]}, 25.0, None),
    ({"FrameTimeVector": [0, 20, 60]}, 25.0, "vary"),
    ({"CineRate": 15}, 15.0, None),
    ({"RecommendedDisplayFrameRate": 12}, 12.0, None),
    ({"FrameTime": 0.1, "CineRate": 24}, 24.0, None),  # 10000 fps: not a frame rate
    ({}, 30.0, "no usable frame time"),
])
def test_frame_rate_from_the_header(elements, fps, note):
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    got, got_note = frame_rate(ds)
    assert got == pytest.approx(fps)
    assert (got_note is None) if note is None else (note in got_note)


def test_another_modality_plays_with_a_note(started, tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", grey_frames(2), modality="CT",
                       SOPClassUID=CTImageStorage)
    source = started(DicomSource(path))
    assert wait_until(lambda: source.latest() is not None)
    assert "not an ultrasound image (modality CT)" in source.status.info["note"]


# --- files that cannot be played -----------------------------------------------------------

def test_no_pixel_data_is_an_error_naming_the_file(started, tmp_path):
    path = write_dicom(tmp_path / "nopix.dcm", grey_frames(2), pixels=False)
    source = started(DicomSource(path))
    assert source.status.state is SourceState.ERROR
    assert "nopix.dcm" in source.status.message and "no pixel data" in source.status.message
    assert wait_until(lambda: not source.running)  # done: it will never publish a frame
    assert source.frames_published == 0


@pytest.mark.parametrize("syntax, says", [
    (UID("1.2.826.0.1.3680043.99.1"), "1.2.826.0.1.3680043.99.1 (unknown or private)"),
    (MPEG4HP41, "export it as mp4"),
    (HTJ2K, "pylibjpeg-openjpeg"),
])
def test_an_undecodable_transfer_syntax_is_named(tmp_path, syntax, says):
    if syntax == HTJ2K and get_decoder(HTJ2K).is_available:
        pytest.skip("an HTJ2K decoder is installed here")
    path = write_dicom(tmp_path / "odd.dcm", grey_frames(2), syntax=syntax,
                       encoded=[b"\x00" * 64] * 2)
    source = DicomSource(path)
    assert source.status.state is SourceState.ERROR
    assert "odd.dcm" in source.status.message and says in source.status.message
    assert UID(syntax).name in source.status.message


def test_a_file_that_is_not_dicom_is_an_error(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("patient notes, not an image\n" * 20)
    source = open_source(str(path))
    assert isinstance(source, DicomSource) and source.status.state is SourceState.ERROR
    assert "notes.dcm is not a DICOM file" in source.status.message


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.9, 1.0])
def test_a_file_cut_in_its_header_is_an_error(started, tmp_path, cine, keep):
    data = cine.read_bytes()
    header = len(data) - 12 * SIZE[0] * SIZE[1] - 12  # the pixel data element's own 12 bytes
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:128 + int((header - 128) * keep)])
    source = started(DicomSource(path))  # never raises, neither here nor on its thread
    assert source.status.state is SourceState.ERROR and "cut.dcm" in source.status.message
    assert source.frames_published == 0


def test_a_file_cut_in_its_pixels_plays_what_is_there_and_says_so(started, tmp_path, cine):
    frame_bytes = SIZE[0] * SIZE[1]
    path = tmp_path / "cut.dcm"
    path.write_bytes(cine.read_bytes()[: -int(frame_bytes * 4.5)])  # 7 whole frames left
    source = DicomSource(path)
    assert source.duration_s == pytest.approx(7 / 25)
    assert "cut off" in source.status.info["warning"] and "7 of 12" in source.status.info["warning"]
    frames = play_every(started, source, 9)
    assert [frame_index_of(f.image) for f in frames] == list(range(7)) + [0, 1]


# --- factory and command line --------------------------------------------------------------

def test_the_factory_routes_dicom_by_suffix_and_by_content(tmp_path, cine):
    assert isinstance(open_source(str(cine)), DicomSource)
    bare = tmp_path / "IM_0001"  # scanners often write DICOM files with no suffix
    bare.write_bytes(cine.read_bytes())
    assert isinstance(open_source(str(bare)), DicomSource)
    with pytest.raises(ValueError, match="not found"):
        open_source(str(tmp_path / "gone.dcm"))
    assert source_key(str(cine)) == f"file:{cine.resolve()}"


def test_headless_run_reports_the_header_scale(tmp_path, cine, capsys):
    model = make_model(tmp_path / "plexus-test.onnx")
    report_path = tmp_path / "r.json"
    code = cli.main(["--headless", "--source", str(cine), "--mode", "plexus", "--model",
                     str(model), "--provider", "cpu", "--max-frames", "5", "--report",
                     str(report_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert report["source"] == "dicom:cine.dcm" and report["frames_in"] == 5
    assert report["pixel_spacing_mm"] == pytest.approx(0.12)
    assert report["errors"] == []
    x0, y0, x1, y1 = REGION  # the model saw the calibrated region, not the whole screen
    assert report["roi"] == [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
