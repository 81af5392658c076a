"""The phantom's physics that guidance depends on, its determinism and its interfaces."""

from __future__ import annotations

import csv
import os

import cv2
import numpy as np
import pytest

from sonoguide.phantom.generator import DEPTH_RANGE_MM, generate
from sonoguide.phantom.labels import ARTERY, NEEDLE, NERVE, VEIN
from sonoguide.phantom.simulator import PhantomSimulator
from tests.waiting import wait_until

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
SMALL = (192, 192)


def _area(frame, code: int) -> int:
    return int((frame.labels == code).sum())


def _find_patient(scene: str, wanted, size=SMALL, skip: int = 0) -> PhantomSimulator:
    """The first patient (by seed) whose anatomy has a property, e.g. an IJV over the carotid;
    `skip` takes a later one."""
    for seed in range(60):
        sim = PhantomSimulator(scene, seed=seed, size=size)
        if wanted(sim.anatomy):
            if skip == 0:
                return sim
            skip -= 1
    pytest.fail(f"no {scene} patient with the wanted anatomy among 60 seeds")


def _has_vessels(a) -> bool:
    """Both vessels, the artery inside the default 38 mm wide view."""
    return a.vein is not None and a.artery is not None and abs(a.artery.cx) + a.artery.a < 17


def _overlap(a) -> bool:
    return _has_vessels(a) and abs(a.vein.cx - a.artery.cx) < 0.5 * a.vein.a \
        and a.vein.cy < a.artery.cy


def _lateral(a) -> bool:
    return _has_vessels(a) and abs(a.vein.cx - a.artery.cx) > a.vein.a + a.artery.a + 1 \
        and abs(a.vein.cx) < 8


@pytest.mark.parametrize("scene,which", [("jugular", 0), ("jugular", 1), ("jugular", 2),
                                         ("interscalene", 0), ("axillary", 0), ("femoral", 0),
                                         ("popliteal", 1)])
def test_probe_pressure_collapses_the_vein_but_not_the_artery(scene, which):
    sim = _find_patient(scene, _has_vessels, skip=which)
    t = 0.4  # same moment of the cardiac and breathing cycle for both
    free = sim.render(t)
    sim.set_pressure(1.0)
    pressed = sim.render(t)
    assert _area(pressed, VEIN) < 0.5 * _area(free, VEIN)
    a0, a1 = _area(free, ARTERY), _area(pressed, ARTERY)
    assert a0 > 100
    assert abs(a1 - a0) / a0 < 0.15


def test_overlapping_vein_collapses_above_a_round_artery():
    sim = _find_patient("jugular", _overlap)  # the IJV over the carotid: the dangerous case
    free = sim.render(0.0)
    sim.set_pressure(1.0)
    pressed = sim.render(0.0)
    assert _area(pressed, VEIN) < 0.5 * _area(free, VEIN)
    assert abs(_area(pressed, ARTERY) - _area(free, ARTERY)) < 0.15 * _area(free, ARTERY)


@pytest.mark.parametrize("bpm", [60.0, 100.0])
def test_artery_pulsates_at_the_set_heart_rate(bpm):
    sim = PhantomSimulator("supraclavicular", seed=2, size=(128, 128))
    sim.set_heart_rate(bpm)
    fps, seconds = 20.0, 9.0
    areas = np.array([_area(sim.render(i / fps), ARTERY) for i in range(int(fps * seconds))],
                     float)
    assert areas.std() > 0.02 * areas.mean()  # it visibly pulses
    spectrum = np.abs(np.fft.rfft(areas - areas.mean()))
    freqs = np.fft.rfftfreq(len(areas), 1.0 / fps)
    peak_hz = freqs[1:][np.argmax(spectrum[1:])]
    assert peak_hz == pytest.approx(bpm / 60.0, abs=1.5 / seconds)


def test_heart_rate_change_keeps_the_pulse_continuous():
    sim = PhantomSimulator("jugular", seed=0, size=(96, 96))
    before = sim.render(3.0).info["cardiac_phase"]
    sim.set_heart_rate(110)
    after = sim.render(3.0).info["cardiac_phase"]
    assert after == pytest.approx(before)


def _ring(mask: np.ndarray, inner_px: int, outer_px: int) -> np.ndarray:
    k = lambda r: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))  # noqa: E731
    return cv2.dilate(mask, k(outer_px)).astype(bool) & ~cv2.dilate(mask, k(inner_px)).astype(bool)


@pytest.mark.parametrize("scene,seed", [("jugular", 0), ("jugular", 3), ("supraclavicular", 1)])
def test_vessel_labels_line_up_with_dark_lumens_and_bright_walls(scene, seed):
    sim = PhantomSimulator(scene, seed=seed, size=(384, 384))
    f = sim.render(0.5)
    img = f.image.astype(float)
    sp = f.pixel_spacing_mm
    for code in (ARTERY, VEIN):
        n, comp = cv2.connectedComponents((f.labels == code).astype(np.uint8))
        if n < 2:
            continue
        big = max(range(1, n), key=lambda i: (comp == i).sum())
        lumen = (comp == big).astype(np.uint8)
        if lumen.sum() < np.pi * (2.0 / sp) ** 2:  # small vessels are blurred by the PSF
            continue
        # the lumen away from its edge (a coarse PSF smears the wall ~0.3 mm into it)
        core = cv2.erode(lumen, np.ones((5, 5), np.uint8)).astype(bool)
        inside = img[core].mean()
        tissue = img[_ring(lumen, int(2.5 / sp), int(5 / sp)) & (f.labels == 0)].mean()
        # anechoic lumens are black; slow-flow (hypoechoic) ones grey but still darker
        echo = max(v.lumen_echo for v in sim.anatomy.vessels if v.label == code)
        assert inside < (0.5 if echo <= 1.0 else 0.85) * tissue, (code, inside, tissue)
        if code != ARTERY or sim.anatomy.artery.wall_brightness < 4.0:
            continue
        # the carotid's thick wall: a bright band hugging the lumen's roof and floor
        wall = _ring(lumen, 0, int(1.2 / sp))
        ys = np.nonzero(lumen)[0]
        cy, half_h = ys.mean(), (ys.max() - ys.min()) / 2
        rows = np.arange(img.shape[0])[:, None]
        wall &= np.abs(rows - cy) > 0.6 * half_h
        assert img[wall].mean() > 1.5 * tissue


def test_first_rib_casts_an_acoustic_shadow():
    sim = PhantomSimulator("supraclavicular", seed=0, size=(256, 256), depth_mm=45)
    f = sim.render(0.0)
    col = int(round(128 + sim.anatomy.artery.cx / f.pixel_spacing_mm))
    # the rib lies under the subclavian artery: the bottom of the picture there holds nothing
    # but the receiver's noise floor, dark yet not a painted black
    shadow = f.image[int(0.92 * 256):, col - 3:col + 3]
    tissue = f.image[:128][f.image[:128] > 0]  # upper half, inside the probe's footprint
    assert 1 < shadow.mean() < 25
    assert shadow.mean() < 0.4 * tissue.mean()


def test_fluid_gives_posterior_enhancement(monkeypatch):
    # the same patient twice: as built, and with blood attenuating like soft tissue. Under the
    # vein the real one is clearly brighter; above it nothing changes.
    import sonoguide.phantom.anatomy as anatomy

    sim = _find_patient("jugular", _lateral, size=(256, 256))
    real = sim.render(0.0).image.astype(float)
    echo, _, tex = anatomy.TISSUES["blood"]
    monkeypatch.setitem(anatomy.TISSUES, "blood", (echo, anatomy.TISSUES["deep"][1], tex))
    flat = PhantomSimulator("jugular", seed=sim.seed, size=(256, 256)).render(0.0)
    flat_img, sp = flat.image.astype(float), flat.pixel_spacing_mm
    v = sim.anatomy.vein
    cols = slice(int(128 + (v.cx - 0.4 * v.a) / sp), int(128 + (v.cx + 0.4 * v.a) / sp))
    below = slice(int((v.cy + v.b + 1.0) / sp), int((v.cy + v.b + 5.0) / sp))
    above = slice(int((v.cy - v.b - 4.0) / sp), int((v.cy - v.b - 1.0) / sp))
    assert real[below, cols].mean() > 1.25 * flat_img[below, cols].mean()
    assert real[above, cols].mean() == pytest.approx(flat_img[above, cols].mean(), rel=0.02)


def test_same_seed_same_frames_and_different_seed_differs():
    a = PhantomSimulator("jugular", seed=5, size=(128, 128))
    b = PhantomSimulator("jugular", seed=5, size=(128, 128))
    c = PhantomSimulator("jugular", seed=6, size=(128, 128))
    for t in (0.0, 0.7):
        fa, fb, fc = a.render(t), b.render(t), c.render(t)
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.labels, fb.labels)
        assert not np.array_equal(fa.image, fc.image)
    g1 = [f.image for f in generate("plexus", 3, seed=9, size=(96, 96))]
    g2 = [f.image for f in generate("plexus", 3, seed=9, size=(96, 96))]
    assert all(np.array_equal(x, y) for x, y in zip(g1, g2, strict=True))
    assert not np.array_equal(g1[0], g1[1])  # each sample a different patient


def test_speckle_belongs_to_the_tissue_and_decorrelates_slowly():
    sim = PhantomSimulator("interscalene", seed=0, size=(128, 128))
    frames = [sim.render(t).image.astype(float) for t in (0.0, 1 / 30, 4.0)]
    corr = lambda x, y: np.corrcoef(x.ravel(), y.ravel())[0, 1]  # noqa: E731
    assert corr(frames[0], frames[1]) > 0.9  # next frame: the same texture
    assert corr(frames[0], frames[2]) < corr(frames[0], frames[1])


def test_needle_in_plane_and_out_of_plane():
    sim = PhantomSimulator("jugular", seed=0, size=(256, 256))
    assert sim.render(0).needle_tip is None
    sim.set_needle(15.0, angle_deg=30.0)
    f = sim.render(0)
    x, y = f.needle_tip
    assert y == pytest.approx(15.0 / f.pixel_spacing_mm, abs=1)
    ys, xs = np.nonzero(f.labels == NEEDLE)
    assert len(xs) > 50 and np.hypot(xs - x, ys - y).min() < 3
    assert f.image[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].max() > 200  # bright tip
    sim.set_needle(12.0, in_plane=False, x_mm=3.0)
    f = sim.render(0)
    assert (f.labels == NEEDLE).sum() < 100  # a dot, not a shaft
    assert f.needle_tip[0] == pytest.approx(128 + 3.0 / f.pixel_spacing_mm, abs=1)


def test_a_needle_in_the_artery_leaves_the_artery_in_the_anatomy_labels():
    # models learn the artery from tissue_labels: a needle inside it must not cut it out
    from sonoguide.phantom.labels import JUGULAR_CLASSES
    from sonoguide.training.phantom_data import _sample

    sim = PhantomSimulator("jugular", seed=0, size=(256, 256))
    bare = sim.render(0)
    assert bare.anatomy is None and bare.tissue_labels is bare.labels
    ys, xs = np.nonzero(bare.labels == ARTERY)
    cx, cy = xs.mean(), ys.mean()
    sp, half = bare.pixel_spacing_mm, sim.probe_width_mm / 2
    # aim from the left entry (4 mm beyond the probe's end) at the artery's centre
    dx_mm, depth = (cx - 128) * sp + half + 4.0, cy * sp
    sim.set_needle(depth, angle_deg=float(np.degrees(np.arctan2(depth, dx_mm))))
    f = sim.render(0)
    shaft_in_artery = (f.labels == NEEDLE) & (bare.labels == ARTERY)
    assert shaft_in_artery.sum() > 20  # the needle's label covers part of the artery
    assert (f.tissue_labels[shaft_in_artery] == ARTERY).all()  # the anatomy keeps it
    assert np.array_equal(f.tissue_labels, bare.labels)
    model = _sample(f, "x", "jugular", JUGULAR_CLASSES).mask
    assert (model[shaft_in_artery] == JUGULAR_CLASSES.index("artery")).all()


def _classic_needle(lin, labels, depth, angle, sp, half, origin_row=0.0):
    """The phantom needle as drawn before its look became adjustable (the reference)."""
    one = 16
    h, w = lin.shape

    def px(x, y):
        return int(round((w / 2 + x / sp) * one)), int(round((origin_row + y / sp) * one))

    ang = np.deg2rad(angle)
    ex, tx = -half - 4.0, -half - 4.0 + depth / np.tan(ang)
    echo = 1500.0 * (0.15 + 0.85 * np.cos(ang) ** 4)
    layer = np.zeros_like(lin)
    thick = max(1, int(round(0.35 / sp)))
    for k in range(4):
        dy = k * 0.45 / np.cos(ang)
        cv2.line(layer, px(ex, dy), px(tx, depth + dy), echo * 0.12 ** k, thick, cv2.LINE_AA, 4)
    cv2.circle(layer, px(tx, depth), max(1, int(0.4 / sp)) * one, echo * 1.4, -1, cv2.LINE_AA, 4)
    np.maximum(lin, layer, out=lin)
    cv2.line(labels, px(ex, 0.0), px(tx, depth), NEEDLE, max(1, int(round(0.9 / sp))),
             cv2.LINE_8, 4)


@pytest.mark.parametrize("depth,angle,sp,origin_row", [(15.0, 30.0, 40 / 192, 0.0),
                                                      (20.0, 60.0, 40 / 256, 0.0),
                                                      (18.0, 40.0, 0.2, 30.0)])
def test_default_needle_looks_as_it_always_did(depth, angle, sp, origin_row):
    # the live window's "Needle tip" slider calls set_needle(depth, angle): its needle (and the
    # shipped models' view of it) must not change with the training-only look parameters
    from sonoguide.phantom.needle import NeedleState, draw_needle

    tissue = np.random.default_rng(0).random((192, 192)).astype(np.float32) * 50
    labels = np.zeros((192, 192), np.uint8)
    lin, lab = tissue.copy(), labels.copy()
    tip = draw_needle(lin, lab, NeedleState(depth, angle), sp, 19.0, origin_row)
    ref_lin, ref_lab = tissue.copy(), labels.copy()
    _classic_needle(ref_lin, ref_lab, depth, angle, sp, 19.0, origin_row)
    assert np.array_equal(lin, ref_lin) and np.array_equal(lab, ref_lab)
    assert tip[1] == pytest.approx(origin_row + depth / sp)


def _needle_frames(**look):
    """The same patient and moment with the classic needle and with a varied look."""
    sim = PhantomSimulator("jugular", seed=0, size=(256, 256))
    sim.set_needle(20.0, 30.0)
    classic = sim.render(0.3)
    sim.set_needle(20.0, 30.0, **look)
    return classic, sim.render(0.3)


def _back_from_tip_mm(frame, mask):
    ys, xs = np.nonzero(mask)
    return np.hypot(xs - frame.needle_tip[0], ys - frame.needle_tip[1]) * frame.pixel_spacing_mm


def test_a_dim_needle_is_dimmer_but_still_labelled():
    classic, dim = _needle_frames(brightness=0.4)
    shaft = classic.labels == NEEDLE
    assert dim.image[shaft].mean() < classic.image[shaft].mean() - 40
    assert dim.image[shaft].mean() > dim.image[classic.labels == 0].mean() + 20  # still shows
    assert np.array_equal(dim.labels == NEEDLE, shaft)
    _, gone = _needle_frames(brightness=0.1)  # barely above the tissue: not labelled at all
    assert not (gone.labels == NEEDLE).any() and gone.needle_tip == classic.needle_tip


def test_a_right_side_needle_enters_from_the_right():
    left, right = _needle_frames(from_right=True)
    w = left.image.shape[1]
    assert right.needle_tip[0] == pytest.approx(w - left.needle_tip[0], abs=1e-6)
    assert right.needle_tip[1] == left.needle_tip[1]
    ys, xs = np.nonzero(right.labels == NEEDLE)
    assert xs.min() >= right.needle_tip[0] - 3  # the shaft lies right of its tip ...
    assert xs[ys.argmin()] > 0.9 * w  # ... coming in at the right edge
    _, far = _needle_frames(from_right=True, entry_offset_mm=12.0)  # punctured farther out
    ys_far = np.nonzero(far.labels == NEEDLE)[0]
    assert ys_far.min() > ys.min() + 4.0 / far.pixel_spacing_mm * np.tan(np.deg2rad(30)) - 2


def test_a_gapped_needle_has_dark_unlabelled_gaps_along_its_line():
    classic, gapped = _needle_frames(gaps=((5.0, 4.0), (15.0, 3.0)))
    shaft = classic.labels == NEEDLE
    back = _back_from_tip_mm(classic, shaft)
    img, lab = gapped.image[shaft].astype(float), gapped.labels[shaft]
    for a, b in ((5.0, 4.0), (15.0, 3.0)):
        gap = (back > a + 0.5) & (back < a + b - 0.5)
        echo = (back > a + b + 1.0) & (back < a + b + 3.0)
        assert img[gap].mean() < 0.6 * img[echo].mean()
        assert (lab[gap] != NEEDLE).all() and (lab[echo] == NEEDLE).mean() > 0.9
    near_tip = back < 4.0
    assert (lab[near_tip] == NEEDLE).mean() > 0.9 and img[near_tip].mean() > 150


def test_labels_mark_only_the_visible_echo_of_an_off_plane_needle():
    classic, off = _needle_frames(elevation_mm=2.5)  # the shaft drifts out of the beam
    lab = off.labels == NEEDLE
    assert lab.any() and lab.sum() < (classic.labels == NEEDLE).sum()
    assert _back_from_tip_mm(off, lab).min() > 2.0  # the faded end near the tip: unlabelled
    x, y = (int(round(v)) for v in off.needle_tip)
    tip_box = np.s_[y - 2:y + 3, x - 2:x + 3]
    assert off.image[tip_box].mean() < classic.image[tip_box].mean() - 60
    assert off.image[lab].mean() > off.image[off.labels == 0].mean() + 40  # labelled: it shows


def test_needle_look_options_render():
    # bend, reverberation, tip and the out-of-plane cut and tail draw without fuss
    _, bent = _needle_frames(bend_mm=1.0, reverb_count=6, reverb_spacing_mm=1.0,
                             reverb_decay=0.4, tip_gain=0.8)
    assert (bent.labels == NEEDLE).sum() > 50
    sim = PhantomSimulator("jugular", seed=0, size=(256, 256))
    sim.set_needle(12.0, 45.0, False, 3.0, cut_mm=2.5, tail_count=0)
    cut = sim.render(0.3)
    sim.set_needle(12.0, 45.0, False, 3.0)
    dot = sim.render(0.3)
    assert (cut.labels == NEEDLE).sum() > (dot.labels == NEEDLE).sum()
    with pytest.raises(TypeError):
        sim.set_needle(12.0, colour="red")


def test_generator_needles_vary_and_stay_deterministic():
    from sonoguide.phantom.generator import NEEDLE_RATE, _set_needle, sample
    from sonoguide.phantom.needle import NeedleState

    class Recorder:
        curvilinear = True  # never aimed (aiming renders; see the test after this one)

        def __init__(self) -> None:
            self.needles: list[NeedleState | None] = []

        def set_needle(self, depth, *args, **look) -> None:
            self.needles.append(None if depth is None else NeedleState(depth, *args, **look))

    rec = Recorder()
    for i in range(400):
        _set_needle(rec, np.random.default_rng([0, i, 1, 2]), 0.0,
                    np.random.default_rng([0, i, 1, 3]))
    drawn = [n for n in rec.needles if n is not None]
    assert abs(len(drawn) / 400 - NEEDLE_RATE) < 0.08
    shafts = [n for n in drawn if n.in_plane]
    angles, depths = [n.angle_deg for n in shafts], [n.depth_mm for n in drawn]
    assert min(angles) < 20 and max(angles) > 65 and max(depths) > 40
    assert 0.3 < np.mean([n.from_right for n in shafts]) < 0.7
    bright = [n.brightness for n in drawn]
    assert min(bright) < 0.3 and max(bright) > 0.9
    assert {n.reverb_count for n in shafts} == set(range(7))
    assert {len(n.gaps) for n in shafts} == {0, 1, 2, 3}
    for key in ("elevation_mm", "bend_mm"):
        assert 0.1 < np.mean([getattr(n, key) != 0.0 for n in shafts]) < 0.6, key
    entries = [n.entry_offset_mm for n in shafts]
    assert min(entries) < 1.0 and max(entries) > 12.0
    dots = [n for n in drawn if not n.in_plane]
    assert 0.1 < np.mean([n.cut_mm > 0 for n in dots]) < 0.6
    assert {n.tail_count for n in dots} == set(range(7))
    # the same (scene, seed, index), the same frame, needle included
    frames = [sample("jugular", 7, i, size=(96, 96)) for i in range(6)]
    assert any((f.labels == NEEDLE).any() for f in frames)
    for i, f in enumerate(frames):
        again = sample("jugular", 7, i, size=(96, 96))
        assert np.array_equal(f.image, again.image) and np.array_equal(f.labels, again.labels)
        assert f.needle_tip == again.needle_tip


def test_some_generator_needles_are_aimed_into_a_structure():
    # random needles rarely end inside the anatomy; models must see those frames too
    from sonoguide.phantom.generator import AIM_RATE, generate

    def shares(aimed: float) -> tuple[int, int]:
        in_plane = inside = 0
        for f in generate("jugular", 60, 3, size=(128, 128), frames_per_patient=3,
                          aimed=aimed):
            if f.needle_tip is None or (f.labels == NEEDLE).sum() < 15:
                continue  # no needle, out of view, or an out-of-plane dot
            in_plane += 1
            x, y = (int(round(v)) for v in f.needle_tip)
            inside += f.tissue_labels[y, x] in (NERVE, ARTERY, VEIN)
        return in_plane, inside

    in_plane, inside = shares(AIM_RATE)
    assert in_plane >= 12 and inside / in_plane > 0.6 * AIM_RATE
    assert shares(0.0)[1] <= 1  # off by default: random needles almost never end in one


def test_controls_change_the_picture():
    sim = PhantomSimulator("jugular", seed=2, size=(128, 128))
    base = sim.render(0.0)
    sim.set_gain(10)
    assert sim.render(0.0).image.mean() > base.image.mean() + 5
    sim.set_gain(0)
    sim.set_depth(60)
    deep = sim.render(0.0)
    assert deep.pixel_spacing_mm == pytest.approx(60 / 128)
    assert _area(deep, ARTERY) < _area(base, ARTERY)  # same artery, smaller on a deeper view
    sim.set_depth(1000)  # out of range: clamped, never a crash
    assert sim.depth_mm == 60


def test_every_scene_labels_its_structures():
    for scene, codes in (("jugular", {ARTERY, VEIN}), ("supraclavicular", {NERVE, ARTERY}),
                         ("interscalene", {NERVE})):
        f = PhantomSimulator(scene, seed=0, size=(128, 128)).render(0)
        assert codes <= set(np.unique(f.labels).tolist()), scene
        assert f.image.dtype == np.uint8 and f.image.shape == (128, 128)


@pytest.mark.parametrize("scene", ["axillary", "infraclavicular", "elbow", "femoral", "popliteal"])
def test_limb_scenes_show_a_nerve_beside_an_artery_and_a_vein(scene):
    # the peripheral block views: every patient has its nerve, artery and compressible vein in
    # view, none overlapping another (labels stay exact), and nerve labels over fascicles
    for seed in range(6):
        sim = PhantomSimulator(scene, seed=seed, size=(128, 128), probe_width_mm=46.0,
                               depth_mm=DEPTH_RANGE_MM[scene][1])
        assert sim.anatomy.artery is not None and sim.anatomy.vein is not None, (scene, seed)
        codes = set(np.unique(sim.render(0.3).labels).tolist())
        assert {NERVE, ARTERY, VEIN} <= codes, (scene, seed, codes)


def test_bad_scene_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown phantom scene"):
        PhantomSimulator("knee")
    with pytest.raises(ValueError, match="unknown phantom scene"):
        next(generate("knee", 1, 0))


def test_phantom_source_publishes_labelled_frames():
    from sonoguide.sources.phantom import PhantomSource

    src = PhantomSource("plexus", fps=60.0, size=(96, 96))
    assert src.name == "phantom:supraclavicular"
    src.simulator.set_needle(10.0)
    src.start()
    try:
        first = src.wait_frame(-1, timeout=5.0)
        assert first is not None
        second = src.wait_frame(first.frame_id, timeout=5.0)
        assert second is not None and second.frame_id > first.frame_id
        assert second.truth is not None and second.truth.shape == second.image.shape
        assert second.pixel_spacing_mm == pytest.approx(40.0 / 96)
        assert "needle_tip" in second.meta
    finally:
        src.stop()
    assert not src.running


def test_cli_writes_frames_and_clip(tmp_path):
    from sonoguide.phantom.cli import main

    assert main(["--scene", "jugular", "--frames", "3", "--size", "64", "64",
                 "--out", str(tmp_path / "f")]) == 0
    assert len(list((tmp_path / "f" / "images").glob("*.png"))) == 3
    mask = cv2.imread(str(tmp_path / "f" / "masks" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 64) and mask.max() <= NEEDLE
    assert main(["--scene", "interscalene", "--clip", "--seconds", "0.5", "--fps", "10",
                 "--size", "64", "64", "--needle", "--out", str(tmp_path / "c")]) == 0
    cap = cv2.VideoCapture(str(tmp_path / "c" / "clip.mp4"))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n == 5
    with open(tmp_path / "c" / "meta.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and float(rows[0]["pixel_spacing_mm"]) > 0


def test_generator_index_addressable_and_patients_shared_on_request():
    from sonoguide.phantom.generator import sample

    frames = list(generate("jugular", 4, seed=3, size=(96, 96), frames_per_patient=2))
    alone = sample("jugular", 3, 3, size=(96, 96), frames_per_patient=2)
    assert np.array_equal(frames[3].image, alone.image)  # any index, same frame
    assert np.array_equal(frames[3].labels, alone.labels)
    resumed = next(generate("jugular", 1, seed=3, size=(96, 96), start=2, frames_per_patient=2))
    assert np.array_equal(resumed.image, frames[2].image)


def test_live_depth_change_shows_the_new_depth_at_once_and_sharpens_later():
    sim = PhantomSimulator("jugular", seed=0, size=(128, 128))
    sim.async_rebuild = True
    sim.render(0.0)
    sim.set_depth(55)
    f = sim.render(0.1)  # no waiting for the rebuild: old maps, new geometry
    assert f.pixel_spacing_mm == pytest.approx(55 / 128)
    assert _area(f, ARTERY) > 0
    t = iter(0.1 + i / 30 for i in range(1, 1 << 30))  # the background rebuild lands a few
    assert wait_until(lambda: sim.render(next(t)).info["maps_depth_mm"] == 55)  # frames later


def test_curvilinear_probe_draws_a_sector_with_matching_labels():
    lin = PhantomSimulator("jugular", seed=0, size=(128, 128), depth_mm=50).render(0.0)
    sim = PhantomSimulator("jugular", seed=0, size=(128, 128), depth_mm=50,
                           geometry="curvilinear")
    f = sim.render(0.0)
    assert f.pixel_spacing_mm > lin.pixel_spacing_mm  # a sector is wider than it is deep
    assert f.image[-1, 0] == 0 and f.image[-1, -1] == 0  # black outside the fan
    assert f.image[5:40, 54:74].mean() > 10  # picture under the middle of the face
    assert {ARTERY, VEIN} <= set(np.unique(f.labels).tolist())
    with pytest.raises(ValueError, match="geometry"):
        PhantomSimulator("jugular", geometry="phased")


def test_vein_breathes_and_probe_slide_moves_the_anatomy():
    sim = _find_patient("jugular", _has_vessels, size=(128, 128))
    sim.set_respiratory_rate(15)  # one breath every 4 s
    veins = [_area(sim.render(t), VEIN) for t in np.arange(0, 4, 0.25)]
    assert min(veins) < 0.9 * max(veins)
    f0 = sim.render(0.0)
    sim.set_probe_offset(5.0)  # slide 5 mm towards screen-right: anatomy moves left on screen
    f1 = sim.render(0.0)
    x0 = np.nonzero(f0.labels == ARTERY)[1].mean()
    x1 = np.nonzero(f1.labels == ARTERY)[1].mean()
    assert x0 - x1 == pytest.approx(5.0 / f0.pixel_spacing_mm, abs=2)


def _topmost_parts(sim: PhantomSimulator, size: int) -> np.ndarray:
    """Which anatomy part is visible at each screen pixel (probe centred, untilted): the
    painter's order of the tissue maps, on the screen grid."""
    from sonoguide.phantom.tissue import Grid

    sp = sim.depth_mm / size
    grid = Grid(sp, -size * sp / 2, size, size)
    ids = np.zeros((size, size), np.int32)
    for i, part in enumerate(sim.anatomy.parts):
        cv2.fillPoly(ids, [grid.to_px(part.polygon)], i + 1, cv2.LINE_8, 4)
    return ids


@pytest.mark.parametrize("scene", ["jugular", "supraclavicular", "interscalene"])
def test_dark_muscle_and_look_alikes_are_dark_background(scene):
    # hypoechoic muscle bellies and small dark look-alikes (nodes, omohyoid-like muscles) are
    # in every patient, are labelled background, and are nearly as dark as a vessel
    size, dark, grey = 256, [], []
    for seed in range(4):
        sim = PhantomSimulator(scene, seed=seed, size=(size, size))
        sim.set_heart_rate(30.0)
        f = sim.render(0.0)
        ids = _topmost_parts(sim, size)
        parts = sim.anatomy.parts
        look = [i + 1 for i, p in enumerate(parts) if p.role == "distractor"
                and p.tissue in ("dmuscle", "node")]
        assert any(p.tissue == "dmuscle" for p in parts), (scene, seed)
        mask = np.isin(ids, look).astype(np.uint8)
        mask = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)  # away from edges
        assert not f.labels[mask].any(), (scene, seed)  # background, not vessel or nerve
        plain = np.isin(ids, [i + 1 for i, p in enumerate(parts) if p.tissue == "deep"]
                        + [0]) & (f.labels == 0)
        if mask.sum() > 200 and plain.sum() > 200:
            dark.append(np.median(f.image[mask]))
            grey.append(np.median(f.image[plain]))
    assert len(dark) >= 2
    assert np.median(dark) < 0.75 * np.median(grey)


def test_vessel_free_training_patients_at_the_intended_rate():
    from sonoguide.phantom.generator import VESSEL_FREE_RATE, _patient

    n = 120
    free = [_patient("jugular", 0, i, (64, 64)).anatomy.vessels == [] for i in range(n)]
    assert abs(np.mean(free) - VESSEL_FREE_RATE) < 0.08
    frames = list(generate("jugular", 40, seed=0, size=(96, 96)))
    no_vessel = [not np.isin(f.labels, [ARTERY, VEIN]).any() for f in frames]
    expected = free[:40]
    assert no_vessel == expected  # exactly the vessel-free patients, with no vessel label
    assert any(no_vessel) and not all(no_vessel)
    assert all(f.image.mean() > 10 for f in frames)  # still a picture of tissue
    # the live phantom is not affected: its patients keep their vessels
    for seed in range(5):
        live = PhantomSimulator("jugular", seed=seed, size=SMALL).anatomy
        assert live.artery is not None and live.vein is not None


def test_vessel_walls_are_specular_and_outlines_irregular():
    # a vessel's wall is bright where the beam meets it square (roof, floor), weak at its
    # sides; outlines are not perfect ellipses, and they keep their shape over time
    sim = _find_patient("jugular", _lateral, size=(384, 384))
    f = sim.render(0.5)
    img, sp = f.image.astype(float), f.pixel_spacing_mm
    lumen = (f.labels == ARTERY).astype(np.uint8)
    ys, xs = np.nonzero(lumen)
    cy, cx = ys.mean(), xs.mean()
    wall = _ring(lumen, 0, int(1.0 / sp))
    rows, cols = np.indices(img.shape)
    ang = np.arctan2(rows - cy, cols - cx)
    roof_floor = wall & (np.abs(np.sin(ang)) > 0.9)
    sides = wall & (np.abs(np.cos(ang)) > 0.9)
    assert img[roof_floor].mean() > 1.3 * img[sides].mean()
    for v in sim.anatomy.vessels:
        r = np.hypot(*(v.lumen() - [v.cx, v.cy]).T / np.array([[v.a], [v.b]]))
        assert r.std() > 0.005  # not an exact ellipse


def _big_plexus_vessel(a):
    """The large vein where there is one, else the artery."""
    return a.vein if a.vein is not None and a.vein.a >= 4.0 else a.artery


def _hypoechoic_vessel(a) -> bool:
    v = _big_plexus_vessel(a)
    return (v is not None and 2.0 < v.lumen_echo and v.soft and v.a >= 3.5
            and abs(v.cx) + v.a < 16 and v.cy + v.b < 33)


def test_hypoechoic_soft_vessel_is_darker_than_tissue_and_enhances_below(monkeypatch):
    # a big plexus vessel with slow-flow echoes and no wall: grey rather than black, still
    # darker than the tissue round it, and the tissue below it is brighter (posterior
    # enhancement: the cue that tells it from a dark muscle belly)
    import sonoguide.phantom.anatomy as anatomy

    size = 320
    sim = _find_patient("supraclavicular", _hypoechoic_vessel, size=(size, size))
    v = _big_plexus_vessel(sim.anatomy)
    sim.set_heart_rate(30.0)
    f = sim.render(0.0)
    img, sp = f.image.astype(float), f.pixel_spacing_mm
    lumen = (f.labels == v.label).astype(np.uint8)
    n, comp = cv2.connectedComponents(lumen)
    r, c = int(v.cy / sp), int(size / 2 + v.cx / sp)
    lumen = (comp == comp[r, c]).astype(np.uint8)
    core = cv2.erode(lumen, np.ones((7, 7), np.uint8)).astype(bool)
    tissue = img[_ring(lumen, int(2.0 / sp), int(5 / sp)) & (f.labels == 0)]
    assert img[core].mean() < 0.85 * np.median(tissue)
    assert img[core].mean() > 4  # not simply black
    echo, _, tex = anatomy.TISSUES["blood"]
    monkeypatch.setitem(anatomy.TISSUES, "blood", (echo, anatomy.TISSUES["deep"][1], tex))
    flat = PhantomSimulator("supraclavicular", seed=sim.seed, size=(size, size))
    flat.set_heart_rate(30.0)
    flat_img = flat.render(0.0).image.astype(float)
    cols = slice(int(size / 2 + (v.cx - 0.4 * v.a) / sp), int(size / 2 + (v.cx + 0.4 * v.a) / sp))
    below = slice(int((v.cy + v.b + 1.5) / sp), int((v.cy + v.b + 5.0) / sp))
    assert img[below, cols].mean() > 1.15 * flat_img[below, cols].mean()


def test_plexus_vessels_range_from_black_ringed_to_grey_soft_and_large():
    vessels = [v for seed in range(30)
               for v in PhantomSimulator("supraclavicular", seed=seed,
                                         size=(64, 64)).anatomy.vessels]
    assert any(v.lumen_echo == 1.0 for v in vessels)  # anechoic
    assert any(v.lumen_echo > 3.0 for v in vessels)  # clearly hypoechoic
    assert any(v.soft and v.wall_brightness == 0 for v in vessels)  # no wall, soft edge
    assert any(v.wall_brightness > 5 for v in vessels)  # strong specular ring
    assert max(2 * v.a for v in vessels) > 15.0  # up to subclavian / axillary vein size
    assert max(v.cy for v in vessels) > 25.0  # also deep


@pytest.mark.parametrize("scene", ["jugular", "supraclavicular", "interscalene"])
def test_dark_muscle_distractors_are_elongated_with_fascia(scene):
    # a dark muscle belly must not look like a vessel: elongated (not a compact round blob),
    # with a bright fascial boundary; no posterior enhancement (it attenuates like tissue)
    import sonoguide.phantom.anatomy as anatomy

    assert anatomy.TISSUES["dmuscle"][1] >= anatomy.TISSUES["deep"][1]
    n = 0
    for seed in range(6):
        for p in PhantomSimulator(scene, seed=seed, size=(64, 64)).anatomy.parts:
            if p.role != "distractor" or p.tissue != "dmuscle":
                continue
            (_, _), (w, h), _ = cv2.minAreaRect(p.polygon.astype(np.float32))
            assert max(w, h) > 1.6 * min(w, h), (scene, seed, w, h)
            assert p.rim >= 2.0
            n += 1
    assert n > 0


def test_plexus_nerve_cluster_is_a_honeycomb_of_dark_fascicles_in_bright_epineurium():
    # supraclavicular trunks: dark round fascicles inside a brighter speckled epineurium; the
    # nerve label covers the whole cluster
    size, darker, brighter = 384, 0, 0
    for seed in range(6):
        sim = PhantomSimulator("supraclavicular", seed=seed, size=(size, size), depth_mm=40)
        sim.set_heart_rate(30.0)
        f = sim.render(0.0)
        img = cv2.GaussianBlur(f.image.astype(np.float32), (0, 0), 1.0)
        ids = _topmost_parts(sim, size)
        parts = sim.anatomy.parts
        nerve = f.labels == NERVE
        fasc = np.isin(ids, [i + 1 for i, p in enumerate(parts) if p.tissue == "fascicle"])
        fasc = cv2.erode(fasc.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if nerve.sum() < 500 or (fasc & nerve).sum() < 30:
            continue
        assert (fasc & ~nerve).sum() == 0  # every fascicle inside the labelled cluster
        matrix = nerve & ~cv2.dilate(fasc.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        around = _ring(nerve.astype(np.uint8), 3, int(3.0 / f.pixel_spacing_mm)) & (f.labels == 0)
        darker += np.median(img[fasc & nerve]) < 0.85 * np.median(img[matrix])
        brighter += np.median(img[matrix]) > np.median(img[around])
    assert darker >= 4 and brighter >= 3
