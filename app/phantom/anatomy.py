"""Patient anatomy as 2-D transverse scenes, in millimetres.

Coordinates: x lateral (0 under the probe centre, + to screen right), y depth below the skin.
A scene is a painter-ordered list of tissue regions (polygons), specular interfaces (fascia,
bone surfaces, pleura) and the two vessels that move (the pulsating artery and the compressible
vein). Each builder draws one random "patient" from an rng: sizes, depths, IJV position and side
vary the way they do between people. Nothing here touches pixels; see tissue.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from sonoguide.phantom.labels import ARTERY, BACKGROUND, NERVE, VEIN

# name -> (mean backscatter, round-trip attenuation dB/cm, texture)
# Backscatter is relative to generic soft tissue (1.0). Attenuation is what is left after the
# scanner's TGC: at ~10 MHz soft tissue loses ~10 dB/cm round trip and blood ~3, and TGC is set
# for tissue, so tissue keeps ~3.4 and blood comes out negative (-3): the posterior enhancement
# under vessels. Bone and air give shadows.
TISSUES: dict[str, tuple[float, float, str]] = {
    "deep": (0.7, 3.4, "plain"),
    "skin": (1.5, 3.6, "plain"),
    "fat": (0.35, 3.0, "fat"),
    "muscle": (0.22, 3.8, "muscle"),
    # a hypoechoic muscle belly (scalenes, SCM in many people): nearly as dark as a vessel but
    # textured with faint striation; also the small dark look-alikes (omohyoid, lymph node
    # cortex, tendon) that are not vessels
    "dmuscle": (0.035, 3.8, "dmuscle"),
    "node": (0.035, 2.6, "plain"),
    "gland": (1.45, 3.8, "plain"),
    "connective": (2.6, 3.6, "plain"),
    "blood": (0.012, -3.0, "plain"),
    "fascicle": (0.2, 3.0, "plain"),
    "cartilage": (0.07, 2.0, "plain"),
    "bone": (0.25, 220.0, "plain"),
    "air": (0.0, 400.0, "plain"),
}


def ellipse(cx: float, cy: float, a: float, b: float, n: int = 48, tri: float = 0.0,
            tri_angle: float = -np.pi / 2, wobble: np.ndarray | None = None,
            phase: np.ndarray | None = None) -> np.ndarray:
    """Closed polygon (n, 2): ellipse with optional triangular bulge (IJV) and wobble
    (relative amplitudes of harmonics 1, 2, ..; `phase` their phases, default k)."""
    th = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = 1.0 + tri * np.cos(3 * (th - tri_angle))
    if wobble is not None and len(wobble):
        k = np.arange(1, len(wobble) + 1)[:, None]
        ph = k if phase is None or not len(phase) else np.asarray(phase)[:, None]
        r = r + (np.asarray(wobble)[:, None] * np.cos(k * th[None, :] + ph)).sum(0)
    return np.stack([cx + a * r * np.cos(th), cy + b * r * np.sin(th)], 1)


def band(x0: float, x1: float, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Polygon between two depth profiles sampled evenly from x0 to x1."""
    xs = np.linspace(x0, x1, len(top))
    return np.concatenate([np.stack([xs, top], 1), np.stack([xs[::-1], bottom[::-1]], 1)])


def wavy(rng: np.random.Generator, x0: float, x1: float, y: float, amp: float,
         n: int = 24, tilt: float = 0.0) -> np.ndarray:
    """A smooth random depth profile around y (for layer boundaries and fascia)."""
    xs = np.linspace(x0, x1, n)
    k = rng.uniform(0.3, 1.5, 3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    u = (xs - x0) / max(x1 - x0, 1e-6) * 2 * np.pi
    waves = sum(np.sin(k[i] * u + ph[i]) for i in range(3)) / 2
    return y + tilt * (xs - (x0 + x1) / 2) + amp * waves


@dataclass
class Part:
    polygon: np.ndarray  # (N, 2) mm, closed
    tissue: str
    label: int = BACKGROUND
    rim: float = 0.0  # specular boundary brightness, stronger where the beam hits it square
    rim_mm: float = 0.3
    gain: float = 1.0  # backscatter relative to the tissue's mean (patients and parts differ)
    soft: bool = False  # edges blurred into the surroundings (muscle bellies, fat, bands)
    role: str = ""  # "vessel" for a vessel's wall and lumen, "distractor" for look-alikes


@dataclass
class Line:
    points: np.ndarray  # (N, 2) mm, open polyline
    brightness: float
    thickness_mm: float = 0.3
    reverb: float = 0.0  # air interface: copies at 2x, 3x.. the depth with this decay


@dataclass
class Vessel:
    label: int  # ARTERY or VEIN
    cx: float
    cy: float
    a: float  # lateral semi-axis (lumen), mm
    b: float  # vertical semi-axis (lumen), mm
    wall_mm: float
    wall_brightness: float
    tri: float = 0.0  # triangular IJV shape
    wobble: tuple[float, ...] = ()  # small shape harmonics (veins are not perfect ovals)
    phases: tuple[float, ...] = ()  # phases of those harmonics (default: fixed)
    wall_echo: float = 1.0  # scattering of the wall annulus (its specular rim is separate)
    lumen_echo: float = 1.0  # > 1: echoes in the lumen (slow flow, "smoke"): hypoechoic grey
    soft: bool = False  # no specular wall line at all, as many have (the edge stays crisp)

    def _shape(self, grow: float) -> np.ndarray:
        return ellipse(self.cx, self.cy, self.a + grow, self.b + grow, n=64, tri=self.tri,
                       wobble=np.array(self.wobble) if self.wobble else None,
                       phase=np.array(self.phases) if self.phases else None)

    def lumen(self) -> np.ndarray:
        return self._shape(0.0)

    def outer(self) -> np.ndarray:
        return self._shape(self.wall_mm)

    def parts(self) -> list[Part]:
        return [Part(self.outer(), "connective", rim=self.wall_brightness,
                     rim_mm=0.4 * self.wall_mm, gain=self.wall_echo, soft=self.soft,
                     role="vessel"),
                Part(self.lumen(), "blood", self.label, gain=self.lumen_echo, soft=self.soft,
                     role="vessel")]


def _outline(rng: np.random.Generator, irregular: float) -> dict:
    """A vessel's smooth random radial perturbation: harmonic amplitudes and phases."""
    return {"wobble": tuple(rng.normal(0, irregular, 4) / np.array([2.0, 1.0, 1.4, 2.0])),
            "phases": tuple(rng.uniform(0, 2 * np.pi, 4))}


def vessel_shape(rng: np.random.Generator, irregular: float, thin_wall: bool = True) -> dict:
    """Random outline and echo character of one vessel: a smooth radial perturbation (fixed in
    the tissue, so pulsation and collapse deform it like the rest), a wall that is often faint
    (veins: `thin_wall`; an artery's muscular wall scatters more), and sometimes faint echoes
    inside the lumen."""
    return {**_outline(rng, irregular),
            "wall_echo": float(rng.uniform(0.2, 0.7) if thin_wall else rng.uniform(0.5, 0.85)),
            "lumen_echo": float(rng.uniform(1.5, 3.0) if rng.random() < 0.25 else 1.0)}


def plexus_vessel_look(rng: np.random.Generator, irregular: float = 0.04,
                       max_lumen: float = 6.5) -> dict:
    """The wider range of vessel appearance in plexus views (subclavian, axillary, transverse
    cervical vessels): the lumen anywhere from anechoic black to clearly hypoechoic grey with
    slow-flow speckle (still several dB under tissue, and still enhancing below: blood
    attenuates little whatever it echoes), and the wall anywhere from a strong specular ring
    to no wall line at all."""
    wall = str(rng.choice(["ring", "faint", "none"], p=[0.35, 0.3, 0.35]))
    lumen = 1.0
    if rng.random() < 0.6:
        lumen = float(np.exp(rng.uniform(np.log(2.0), np.log(max_lumen))))
    return {**_outline(rng, irregular),
            "wall_echo": float(rng.uniform(0.5, 0.85) if wall == "ring"
                               else rng.uniform(0.2, 0.45)),
            "lumen_echo": lumen, "soft": wall == "none"}


def _wall(rng: np.random.Generator, look: dict, strong: tuple[float, float]) -> float:
    """Specular wall brightness for a plexus vessel look: none, faint or a strong ring."""
    if look["soft"]:
        return 0.0
    return float(rng.uniform(*strong) if look["wall_echo"] >= 0.5 else rng.uniform(0.3, 1.5))


@dataclass
class Anatomy:
    scene: str
    parts: list[Part] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    labels: list[tuple[np.ndarray, int]] = field(default_factory=list)  # label-only polygons
    artery: Vessel | None = None  # pulsates
    vein: Vessel | None = None  # collapses under pressure, breathes
    shadows: list[np.ndarray] = field(default_factory=list)  # edge-shadow points (x, y) mm
    vessels: list[Vessel] = field(default_factory=list)  # every vessel drawn (incl. small ones)
    layer0: int = 0  # parts below this index are the generic layers (background, skin, fat)

    def add_vessel(self, v: Vessel) -> None:
        self.parts.extend(v.parts())
        self.vessels.append(v)
        # refraction at the lateral edges of round fluid structures: thin shadows below them
        self.shadows += _edge_shadows(v)

    def mirrored(self) -> Anatomy:
        """The other side of the neck: the same patient seen left-right flipped."""
        def flip(p: np.ndarray) -> np.ndarray:
            q = np.array(p, dtype=np.float64, copy=True)
            q[:, 0] *= -1
            return q

        flipped = {id(v): replace(v, cx=-v.cx) for v in self.vessels}
        for v in (self.artery, self.vein):
            if v is not None and id(v) not in flipped:
                flipped[id(v)] = replace(v, cx=-v.cx)

        def flip_v(v: Vessel | None) -> Vessel | None:
            return None if v is None else flipped[id(v)]

        return Anatomy(
            self.scene,
            [replace(p, polygon=flip(p.polygon)) for p in self.parts],
            [Line(flip(ln.points), ln.brightness, ln.thickness_mm, ln.reverb)
             for ln in self.lines],
            [(flip(poly), code) for poly, code in self.labels],
            flip_v(self.artery), flip_v(self.vein),
            [(-x, y) for x, y in self.shadows],
            [flipped[id(v)] for v in self.vessels], self.layer0)


def _edge_shadows(v: Vessel) -> list[tuple[float, float]]:
    return [(v.cx - v.a - v.wall_mm, v.cy), (v.cx + v.a + v.wall_mm, v.cy)]


# ---------------------------------------------------------------------------------------------
# Shared layers


def _skin_and_fat(a: Anatomy, rng: np.random.Generator, fat_mm: float, half: float = 45) -> float:
    """Skin, subcutaneous fat with septa, platysma-like fascia; returns fat bottom depth."""
    skin = rng.uniform(1.0, 1.6)
    a.parts.append(Part(band(-half, half, np.zeros(2), np.full(2, skin)), "skin"))
    bottom = wavy(rng, -half, half, skin + fat_mm, 0.8)
    a.parts.append(Part(band(-half, half, np.full(24, skin), bottom), "fat"))
    a.lines.append(Line(np.array([[-half, 0.1], [half, 0.1]]), 9.0, 0.2))
    a.lines.append(Line(np.stack([np.linspace(-half, half, 24), np.full(24, skin)], 1), 4.0, 0.2))
    xs = np.linspace(-half, half, 24)
    a.lines.append(Line(np.stack([xs, bottom], 1), rng.uniform(5, 9), 0.12))
    for _ in range(int(rng.integers(1, 4))):  # septa in the fat
        y = rng.uniform(skin + 0.5, skin + fat_mm - 0.3)
        x0 = rng.uniform(-half, half - 10)
        x1 = x0 + rng.uniform(6, 25)
        a.lines.append(Line(np.stack([np.linspace(x0, x1, 10),
                                      wavy(rng, x0, x1, y, 0.5, 10, rng.uniform(-0.1, 0.1))], 1),
                            rng.uniform(2.5, 6), 0.15))
    a.layer0 = len(a.parts)
    return float(np.mean(bottom))


def _muscle(a: Anatomy, rng: np.random.Generator, x0: float, x1: float, top: float,
            bottom: float, taper: float = 0.0,
            fascia: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """A muscle belly between two wavy boundaries with bright fascia on both."""
    n = 24
    t = wavy(rng, x0, x1, top, 0.7, n)
    b = wavy(rng, x0, x1, bottom, 0.9, n)
    if taper:  # thin towards one end (SCM medial edge)
        w = np.linspace(0, 1, n) ** 1.5 if taper > 0 else np.linspace(1, 0, n) ** 1.5
        b = b - (b - t) * w * abs(taper)
    a.parts.append(Part(band(x0, x1, t, b), "muscle", soft=True))
    xs = np.linspace(x0, x1, n)
    a.lines.append(Line(np.stack([xs, t], 1), fascia * rng.uniform(0.7, 1.2), 0.12))
    a.lines.append(Line(np.stack([xs, b], 1), fascia * rng.uniform(0.7, 1.2), 0.12))
    return t, b


def _belly(a: Anatomy, rng: np.random.Generator, cx: float, cy: float, w: float, h: float,
           rim: float = 5.0, tissue: str = "muscle") -> np.ndarray:
    """A muscle belly in cross-section: an irregular oval with a bright fascial sheath."""
    poly = ellipse(cx, cy, w, h, 40, tri=rng.uniform(0, 0.08), tri_angle=rng.uniform(0, 6.3),
                   wobble=rng.normal(0, 0.04, 4))
    a.parts.append(Part(poly, tissue, rim=rim * rng.uniform(0.7, 1.3), rim_mm=0.15, soft=True))
    return poly


def _bone(a: Anatomy, rng: np.random.Generator, cx: float, top: float, w: float, h: float,
          bright: float = 16.0) -> None:
    """A bone cross-section: bright convex upper surface, complete shadow below."""
    poly = ellipse(cx, top + h, w / 2, h, n=40, wobble=rng.normal(0, 0.03, 3))
    a.parts.append(Part(poly, "bone"))
    upper = poly[(poly[:, 1] <= top + h)]
    upper = upper[np.argsort(upper[:, 0])]
    a.lines.append(Line(upper, bright, 0.45))


def _background(a: Anatomy, rng: np.random.Generator, half: float = 45,
                depth: float = 80) -> None:
    """Generic deep soft tissue with soft brighter (connective) and darker (fat) regions, so
    the background is mottled like a real neck rather than uniform."""
    a.parts.append(Part(band(-half, half, np.zeros(2), np.full(2, depth)), "deep"))
    for _ in range(int(rng.integers(5, 10))):
        a.parts.append(Part(ellipse(rng.uniform(-35, 35), rng.uniform(5, 60), rng.uniform(3, 12),
                                    rng.uniform(2, 6), 24, wobble=rng.normal(0, 0.08, 4)),
                            "connective" if rng.random() < 0.6 else "fat",
                            gain=float(rng.uniform(0.4, 1.0)), soft=True))


def _scatter_fascia(a: Anatomy, rng: np.random.Generator, n: int, y0: float, y1: float,
                    half: float = 35) -> None:
    """Short intermuscular fascia and connective strands: the bright wavy streaks that fill
    real B-mode images between the named structures."""
    for _ in range(n):
        y = rng.uniform(y0, y1)
        x0 = rng.uniform(-half, half)
        x1 = x0 + rng.uniform(4, 22)
        xs = np.linspace(x0, x1, 10)
        a.lines.append(Line(np.stack([xs, wavy(rng, x0, x1, y, rng.uniform(0.1, 0.5) * (x1 - x0)
                                                / 10, 10, rng.uniform(-0.2, 0.2))], 1),
                            rng.uniform(1.5, 7.0), rng.uniform(0.06, 0.16)))


# ---------------------------------------------------------------------------------------------
# Scenes


def jugular(rng: np.random.Generator) -> Anatomy:
    """Internal jugular vein / common carotid at the mid neck, medial to screen right."""
    a = Anatomy("jugular")
    _background(a, rng)
    fat_bottom = _skin_and_fat(a, rng, rng.uniform(2.0, 5.0))
    # sternocleidomastoid: lateral-superficial lens, thinning medially
    scm_top = fat_bottom + 0.3
    scm_bot = scm_top + rng.uniform(6.0, 10.0)
    _muscle(a, rng, -45, rng.uniform(8, 16), scm_top, scm_bot, taper=0.7)

    r_a = rng.uniform(3.0, 4.6)  # carotid lumen radius
    ax = rng.uniform(-1.0, 6.0)
    ay = scm_bot + r_a + rng.uniform(1.0, 4.0)
    va = rng.uniform(4.5, 8.5)  # IJV semi-axes
    vb = va * rng.uniform(0.55, 0.95)
    # where the IJV lies relative to the carotid: the overlapping case is the dangerous one
    pos = rng.choice(["lateral", "anterolateral", "overlap"], p=[0.45, 0.35, 0.20])
    if pos == "lateral":
        vx = ax - r_a - va - rng.uniform(0.8, 3.0)
        vy = ay + rng.uniform(-2.5, 1.5)
    elif pos == "anterolateral":
        vx = ax - (r_a + va) * rng.uniform(0.45, 0.75)
        vy = ay - r_a - vb * rng.uniform(0.3, 0.6)
    else:
        vx = ax + rng.uniform(-2.5, 2.0)
        vy = ay - r_a - vb - rng.uniform(0.8, 2.0)
    vy = max(vy, scm_top + vb + 1.0)
    # the carotid stays below the vein's floor wherever their columns overlap
    ay = max(ay, _vein_floor_over(vx, vy, va, vb, ax, r_a) + r_a + 1.2)

    # thyroid lobe medial to the carotid, under thin strap muscles; trachea at the medial edge
    _scatter_fascia(a, rng, int(rng.integers(6, 14)), scm_bot, 45)
    tx = ax + r_a + rng.uniform(7.0, 11.0)
    _muscle(a, rng, ax + r_a - 2, 45, fat_bottom + 0.3, fat_bottom + rng.uniform(2.5, 4.5),
            fascia=6.0)
    thy = ellipse(tx, ay - rng.uniform(0, 3), rng.uniform(8, 11), rng.uniform(6.5, 9.5), 40,
                  tri=0.08, tri_angle=np.pi, wobble=rng.normal(0, 0.03, 4))
    a.parts.append(Part(thy, "gland", rim=2.0, rim_mm=0.2))
    tr_x = tx + rng.uniform(9, 15)  # the trachea: usually just beyond the medial edge
    tr_top = fat_bottom + rng.uniform(6, 10)
    tr_r = rng.uniform(8, 11)
    a.parts.append(Part(ellipse(tr_x, tr_top + tr_r, tr_r + 1.6, tr_r + 1.6, 48), "cartilage"))
    a.parts.append(Part(ellipse(tr_x, tr_top + tr_r + 1.6, tr_r, tr_r, 48), "air"))
    th = np.linspace(np.pi * 1.05, np.pi * 1.95, 30)
    arc = np.stack([tr_x + tr_r * np.cos(th), tr_top + 1.6 + tr_r + tr_r * np.sin(th)], 1)
    a.lines.append(Line(arc, 18.0, 0.5, reverb=0.45))

    # prevertebral muscle and transverse process deep
    deep_top = max(ay, vy) + max(r_a, vb) + rng.uniform(3, 6)
    _muscle(a, rng, -45, 45, deep_top, deep_top + rng.uniform(5, 8), fascia=5.0)
    bone_x = ax + rng.uniform(-10, -3)
    _belly(a, rng, bone_x + rng.uniform(8, 14), deep_top + rng.uniform(3, 6), rng.uniform(5, 8),
           rng.uniform(2.5, 4))  # longus colli
    _belly(a, rng, bone_x - rng.uniform(9, 14), deep_top + rng.uniform(1, 4), rng.uniform(6, 9),
           rng.uniform(3, 5))  # anterior scalene
    _bone(a, rng, bone_x, deep_top + rng.uniform(5, 9), rng.uniform(8, 13), rng.uniform(2, 4))

    artery = Vessel(ARTERY, ax, ay, r_a, r_a * rng.uniform(0.88, 1.0), rng.uniform(0.45, 0.7),
                    rng.uniform(5.5, 8.5), **vessel_shape(rng, 0.025, False))
    vein = Vessel(VEIN, vx, vy, va, vb, rng.uniform(0.2, 0.3), rng.uniform(0.6, 3),
                  tri=rng.uniform(0.0, 0.14), **vessel_shape(rng, 0.06))
    a.add_vessel(vein)
    a.add_vessel(artery)
    # vagus nerve in the sheath between them, posteriorly
    nx, ny = (ax + vx) / 2, max(ay, vy) + rng.uniform(2, 4)
    a.parts.append(Part(ellipse(nx, ny, 1.3, 1.1, 20), "fascicle", NERVE, rim=5.0, rim_mm=0.3))
    a.artery, a.vein = artery, vein
    return a


def _vein_floor_over(vx: float, vy: float, va: float, vb: float, ax: float, r: float) -> float:
    """Deepest point of the vein's lower edge over the artery's columns (or -inf)."""
    xs = np.linspace(ax - r - 1.5, ax + r + 1.5, 21)
    u = (xs - vx) / (va + 0.5)
    inside = np.abs(u) < 1
    if not inside.any():
        return -np.inf
    return float((vy + (vb + 0.5) * np.sqrt(1 - u[inside] ** 2)).max())


def supraclavicular(rng: np.random.Generator) -> Anatomy:
    """Brachial plexus above the clavicle: subclavian artery, trunks, first rib, pleura."""
    a = Anatomy("supraclavicular")
    _background(a, rng)
    fat_bottom = _skin_and_fat(a, rng, rng.uniform(3.0, 7.0))
    _muscle(a, rng, -45, 45, fat_bottom + 0.3, fat_bottom + rng.uniform(1.5, 3.0), fascia=6.0)
    r_a = rng.uniform(2.8, 6.5)  # subclavian artery: up to 13 mm across
    ax = rng.uniform(2.0, 9.0)
    ay = fat_bottom + rng.uniform(7.0, 14.0) + max(r_a - 4.3, 0.0)
    # middle scalene lateral-deep, anterior scalene medial
    _belly(a, rng, ax - rng.uniform(18, 24), ay + rng.uniform(1, 4), rng.uniform(8, 12),
           rng.uniform(5, 8))  # middle scalene
    _belly(a, rng, ax + r_a + rng.uniform(7, 10), ay - rng.uniform(3, 6), rng.uniform(5, 8),
           rng.uniform(3, 5))  # anterior scalene

    _scatter_fascia(a, rng, int(rng.integers(5, 12)), fat_bottom, ay + 12)
    # plexus: "bunch of grapes" lateral and superficial to the artery
    px = ax - r_a - rng.uniform(6.0, 9.0)
    py = ay - rng.uniform(1.0, 4.0)
    cw, ch = rng.uniform(5.0, 8.0), rng.uniform(3.0, 5.0)
    _nerve_cluster(a, rng, px, py, cw, ch)

    # first rib under the artery/plexus, pleura medial to it
    # some views sit lower / more lateral: rib and pleura much deeper, room for a big vein
    deep_view = bool(rng.random() < 0.4)
    rib_top = ay + r_a + rng.uniform(1.5, 3.5) + (rng.uniform(10, 20) if deep_view else 0.0)
    rib_x = (ax + px) / 2 + rng.uniform(-2, 2)
    rib_w = rng.uniform(14, 20)
    _bone(a, rng, rib_x, rib_top, rib_w, rng.uniform(3, 5), bright=18.0)
    pl_y = rib_top + rng.uniform(0.5, 3.0)
    x0 = rib_x + rib_w / 2 - 1.0
    xs = np.linspace(x0, 45, 20)
    pl = np.stack([xs, wavy(rng, x0, 45, pl_y, 0.3, 20, rng.uniform(-0.05, 0.1))], 1)
    lung = np.concatenate([pl, [[45, 90], [x0, 90]]])
    a.parts.append(Part(lung, "air"))
    a.lines.append(Line(pl, 15.0, 0.45, reverb=0.5))
    if rng.random() < 0.5:  # pleura lateral to the rib as well
        x1 = rib_x - rib_w / 2 + 1.0
        xs = np.linspace(-45, x1, 20)
        pl2 = np.stack([xs, wavy(rng, -45, x1, pl_y + rng.uniform(0, 2), 0.3, 20)], 1)
        a.parts.append(Part(np.concatenate([pl2, [[x1, 90], [-45, 90]]]), "air"))
        a.lines.append(Line(pl2, 14.0, 0.45, reverb=0.5))

    look = plexus_vessel_look(rng, 0.03)
    artery = Vessel(ARTERY, ax, ay, r_a, r_a * rng.uniform(0.85, 1.0), rng.uniform(0.45, 0.7),
                    _wall(rng, look, (5.5, 8.5)), **look)
    a.add_vessel(artery)
    a.artery = artery
    if rng.random() < 0.5:  # a small superficial vessel (transverse cervical / suprascapular)
        look = plexus_vessel_look(rng, 0.05)
        look["lumen_echo"] = min(look["lumen_echo"], 3.0)  # small: the PSF greys it anyway
        sv = Vessel(VEIN if rng.random() < 0.5 else ARTERY, px + rng.uniform(-4, 6),
                    fat_bottom + rng.uniform(2.5, 4.0), rng.uniform(1.0, 1.8),
                    rng.uniform(0.8, 1.4), 0.3, _wall(rng, look, (1.0, 3.5)), **look)
        a.add_vessel(sv)
    _big_vein(a, rng, px, py, ch, fat_bottom, 0.85 if deep_view else 0.3)
    _small_vessels_by(a, rng, px, py, cw, ch)
    return a


def _nerve_cluster(a: Anatomy, rng: np.random.Generator, px: float, py: float, cw: float,
                   ch: float, fascicles: tuple[int, int] = (7, 16)) -> None:
    """A plexus trunk / division cluster: many dark round fascicles in a brighter, speckled
    epineurium (the honeycomb), with only a faint outer boundary. The label covers the whole
    cluster, the way annotators outline the nerve."""
    a.parts.append(Part(ellipse(px, py, cw, ch, 32, wobble=rng.normal(0, 0.05, 3),
                                phase=rng.uniform(0, 6.3, 3)), "connective",
                        rim=rng.uniform(0.0, 1.5), rim_mm=0.15, gain=rng.uniform(1.0, 2.0),
                        soft=True))
    _fascicles(a, rng, px, py, cw, ch, int(rng.integers(*fascicles)), radii=(0.7, 1.6),
               rim=(0.0, 1.0), gain=(0.02, 0.1))
    a.labels.append((ellipse(px, py, cw + 0.4, ch + 0.4, 32), NERVE))


def _big_vein(a: Anatomy, rng: np.random.Generator, px: float, py: float, ch: float,
              fat_bottom: float, p: float) -> None:
    """Sometimes a large (8-20 mm) vein deep or beside the plexus (subclavian / axillary vein
    as the probe sits lower or more lateral), often hypoechoic and soft edged. It is the
    patient's compressible vein."""
    if rng.random() > p:
        return
    occ = _Occupancy(a)
    for _ in range(20):
        r = rng.uniform(4.0, 10.0)
        b = r * rng.uniform(0.6, 0.95)
        if rng.random() < 0.5:  # under the cluster
            cx, cy = px + rng.uniform(-6, 6), py + ch + b + rng.uniform(0.8, 5.0)
        else:  # anywhere at mid depth or deep
            cx, cy = rng.uniform(-28, 28), rng.uniform(fat_bottom + b + 2, 42.0)
        look = plexus_vessel_look(rng, 0.06)
        v = Vessel(VEIN, cx, cy, r, b, rng.uniform(0.2, 0.35), _wall(rng, look, (1.0, 3.0)),
                   tri=rng.uniform(0.0, 0.1), **look)
        if occ.free(v.outer(), 1.0) and not _shadowed(a, cx, r + 1.0, cy):
            a.add_vessel(v)
            a.vein = v
            return


def _shadowed(a: Anatomy, cx: float, half: float, cy: float) -> bool:
    """Whether bone or air lies above depth cy anywhere within cx +- half (a vessel there
    would sit in an acoustic shadow: labelled but invisible)."""
    for p in a.parts:
        if p.tissue in ("bone", "air"):
            q = p.polygon
            sel = (np.abs(q[:, 0] - cx) < half) & (q[:, 1] < cy)
            if sel.any() or (q[:, 0].min() < cx - half and q[:, 0].max() > cx + half
                             and q[:, 1].min() < cy):
                return True
    return False


def _small_vessels_by(a: Anatomy, rng: np.random.Generator, px: float, py: float, cw: float,
                      ch: float) -> None:
    """Small vessels (dorsal scapular, transverse cervical) right beside the nerve cluster."""
    occ = _Occupancy(a)
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        for _try in range(10):
            r = rng.uniform(0.8, 2.0)
            ang = rng.uniform(0, 2 * np.pi)
            cx = px + (cw + r + rng.uniform(0.6, 1.5)) * np.cos(ang)
            cy = py + (ch + r + rng.uniform(0.6, 1.5)) * np.sin(ang)
            look = plexus_vessel_look(rng, 0.04)
            look["lumen_echo"] = min(look["lumen_echo"], 3.0)
            v = Vessel(ARTERY if rng.random() < 0.5 else VEIN, cx, cy, r,
                       r * rng.uniform(0.75, 1.0), 0.3, _wall(rng, look, (1.5, 4.0)), **look)
            if occ.free(v.outer(), 0.4):
                a.add_vessel(v)
                occ.add(v.outer())
                break


def _fascicles(a: Anatomy, rng: np.random.Generator, cx: float, cy: float, w: float, h: float,
               n: int, radii: tuple[float, float] = (0.9, 1.8),
               rim: tuple[float, float] = (4, 7),
               gain: tuple[float, float] = (1.0, 1.0)) -> list[tuple[float, float, float]]:
    """Hypoechoic round fascicles (rims of brightness `rim`), packed inside an ellipse."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(n * 12):
        if len(placed) >= n:
            break
        r = rng.uniform(*radii)
        ang = rng.uniform(0, 2 * np.pi)
        rad = np.sqrt(rng.uniform(0, 1))
        x = cx + (w - r) * rad * np.cos(ang)
        y = cy + (h - r) * rad * np.sin(ang)
        if all((x - px) ** 2 + (y - py) ** 2 > (r + pr + 0.35) ** 2 for px, py, pr in placed):
            placed.append((x, y, r))
    for x, y, r in placed:
        a.parts.append(Part(ellipse(x, y, r, r * rng.uniform(0.8, 1.0), 20), "fascicle",
                            rim=rng.uniform(*rim), rim_mm=0.2, gain=rng.uniform(*gain)))
    return placed


def interscalene(rng: np.random.Generator) -> Anatomy:
    """Interscalene groove: C5-C7 roots stacked between anterior and middle scalene."""
    a = Anatomy("interscalene")
    _background(a, rng)
    fat_bottom = _skin_and_fat(a, rng, rng.uniform(2.0, 4.5))
    gx = rng.uniform(-5.0, 3.0)  # the groove
    _scatter_fascia(a, rng, int(rng.integers(6, 14)), fat_bottom, 45)
    scm_bot = fat_bottom + rng.uniform(4.0, 7.0)
    _muscle(a, rng, gx - 6, 45, fat_bottom + 0.3, scm_bot, taper=-0.3)
    top = scm_bot + rng.uniform(0.5, 2.0)
    r5 = rng.uniform(1.3, 2.0)
    roots = []
    y = top + r5 + 0.5
    for r in (r5, r5 * rng.uniform(1.05, 1.3), r5 * rng.uniform(1.1, 1.4)):
        x = gx + rng.uniform(-1.0, 1.0)
        roots.append((x, y + r, r))
        y += 2 * r + rng.uniform(0.8, 2.5)
    bottom = y + 1.0
    # middle scalene lateral (bigger), anterior scalene medial; the roots sit in the groove
    rmax = max(r for *_, r in roots)
    mid = (top + bottom) / 2
    ms_w, as_w = rng.uniform(9, 13), rng.uniform(6, 8)
    _belly(a, rng, gx - rmax - 0.8 - ms_w, mid + rng.uniform(0, 3), ms_w,
           max((bottom - top) / 2 + rng.uniform(0, 2), 0.45 * ms_w), rim=6.0)
    _belly(a, rng, gx + rmax + 0.8 + as_w, mid + rng.uniform(-1, 2), as_w,
           max((bottom - top) / 2 - rng.uniform(0, 2), 0.5 * as_w), rim=6.0)
    root_parts = []  # (part, vertical semi-axis) of each root
    for x, yy, r in roots:
        ry = r * rng.uniform(0.85, 1.0)
        root_parts.append((Part(ellipse(x, yy, r, ry, 24), "fascicle", NERVE,
                                rim=rng.uniform(1.5, 3.0), rim_mm=0.2,
                                gain=rng.uniform(0.3, 0.8)), ry))
        a.parts.append(root_parts[-1][0])
    _bone(a, rng, gx + rng.uniform(-6, 4), bottom + rng.uniform(7, 12), rng.uniform(10, 15),
          rng.uniform(2, 4))
    if rng.random() < 0.7:  # carotid and IJV at the medial edge of the view
        r_a = rng.uniform(3.0, 4.2)
        ax = gx + rng.uniform(16, 22)
        ay = top + rng.uniform(3, 8)
        # beside (often dark) scalene and SCM muscle: only faintly hypoechoic lumens
        look = plexus_vessel_look(rng, 0.025, 3.0)
        artery = Vessel(ARTERY, ax, ay, r_a, r_a * rng.uniform(0.88, 1.0), 0.55,
                        _wall(rng, look, (5, 7)), **look)
        look = plexus_vessel_look(rng, 0.06, 3.0)
        vein = Vessel(VEIN, ax - r_a - rng.uniform(3, 5), ay - rng.uniform(2, 5),
                      rng.uniform(3.5, 6), rng.uniform(2.5, 4), 0.3, _wall(rng, look, (0.6, 2.5)),
                      rng.uniform(0, 0.12), **look)
        ay_min = _vein_floor_over(vein.cx, vein.cy, vein.a, vein.b, ax, r_a) + r_a + 1.2
        artery.cy = max(ay, ay_min)
        a.add_vessel(vein)
        a.add_vessel(artery)
        a.artery, a.vein = artery, vein
    # Most roots show a few dark fascicles in brighter epineurium rather than one dark disc (a
    # disc reads as a small vessel). Drawn from a spawned stream (spawning leaves `rng`'s own
    # stream where it was), so the rest of a seed's patient is what it was before.
    inner = rng.spawn(1)[0]
    for (x, yy, r), (part, ry) in zip(roots, root_parts, strict=True):
        if inner.random() < 0.6:
            part.gain = float(inner.uniform(1.5, 3.0))
            _fascicles(a, inner, x, yy, 0.8 * r, 0.8 * ry, int(inner.integers(2, 6)),
                       radii=(0.3 * r, 0.55 * r), rim=(0.0, 1.0), gain=(0.1, 0.4))
            a.labels.append((part.polygon, NERVE))
    return a


# ---------------------------------------------------------------------------------------------
# What makes a patient look like a real scan rather than a diagram: hypoechoic muscle bellies,
# dark look-alikes that are not vessels, thick blurry fascia bands. All unlabelled (background).

_RES = 0.4  # mm per cell of the occupancy raster
_X0, _W, _H = -50.0, 250, 238  # covers x -50..50 mm, depth 0..95 mm


class _Occupancy:
    """Coarse raster of what look-alikes must keep clear of, so labels stay exact: labelled
    structures, vessels and their walls, label-only polygons, bone, air and cartilage."""

    def __init__(self, a: Anatomy) -> None:
        self.m = np.zeros((_H, _W), np.uint8)
        for p in a.parts:
            if p.label or p.role == "vessel" or p.tissue in ("bone", "air", "cartilage"):
                self.add(p.polygon)
        for poly, _ in a.labels:
            self.add(poly)
        self.dist = None

    @staticmethod
    def _px(poly: np.ndarray) -> np.ndarray:
        return np.round((np.asarray(poly) - [_X0, 0.0]) / _RES).astype(np.int32)

    def add(self, poly: np.ndarray) -> None:
        cv2.fillPoly(self.m, [self._px(poly)], 1)
        self.dist = None

    def _distance(self) -> np.ndarray:
        """Distance (mm) of every cell to the nearest occupied one, computed when needed."""
        if self.dist is None:
            self.dist = cv2.distanceTransform(1 - self.m, cv2.DIST_L2, 3) * _RES
        return self.dist

    def clearance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance (mm) from points to the nearest occupied cell (0 outside the raster)."""
        dist = self._distance()
        c = np.round((np.asarray(x) - _X0) / _RES).astype(int)
        r = np.round(np.asarray(y) / _RES).astype(int)
        ok = (c >= 0) & (c < _W) & (r >= 0) & (r < _H)
        out = np.zeros(np.shape(x))
        out[ok] = dist[r[ok], c[ok]]
        return out

    def free(self, poly: np.ndarray, margin: float) -> bool:
        """Whether the polygon and a margin around it cover nothing occupied."""
        px = self._px(poly)
        lo = np.maximum(px.min(0) - 1, 0)
        hi = np.minimum(px.max(0) + 2, [_W, _H])
        if np.any(hi <= lo):
            return True
        inside = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
        cv2.fillPoly(inside, [px - lo], 1)
        crop = self._distance()[lo[1]:hi[1], lo[0]:hi[0]]
        return bool((crop[inside > 0] > margin).all())


def _darken_muscles(a: Anatomy, rng: np.random.Generator) -> None:
    """Muscle echogenicity varies between people and muscles; many bellies are hypoechoic."""
    level = rng.uniform(0.3, 1.0)
    dark = rng.uniform(0.2, 0.6)  # this patient's share of very dark bellies
    for i, p in enumerate(a.parts):
        if p.tissue == "muscle":
            a.parts[i] = replace(p, tissue="dmuscle" if rng.random() < dark else "muscle",
                                 gain=p.gain * level * rng.uniform(0.7, 1.3))


def _big_bellies(a: Anatomy, rng: np.random.Generator, y0: float) -> None:
    """Large hypoechoic muscle bellies under the named structures (painted first, so anything
    specific lies on top of them): 'dark' must not mean 'vessel'."""
    new = []
    # label-only outlines (a plexus sheath) are not painted: keep clear of them
    occ = _Occupancy(Anatomy(a.scene, labels=a.labels))
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(10):
            # elongated (a muscle is never a compact round blob), slightly tilted
            w = rng.uniform(8, 20)
            h = max(2.5, w * rng.uniform(0.2, 0.45))
            cx, cy = rng.uniform(-32, 32), rng.uniform(y0 + h * 0.6, y0 + 28)
            poly = _tilt(ellipse(cx, cy, w, h, 40, tri=rng.uniform(0, 0.12),
                                 tri_angle=rng.uniform(0, 6.3), wobble=rng.normal(0, 0.05, 4),
                                 phase=rng.uniform(0, 6.3, 4)), cx, cy, rng.normal(0, 0.12))
            if occ.free(poly, 0.5):
                break
        else:
            continue
        new.append(Part(poly, "dmuscle", rim=rng.uniform(2.5, 6.0), rim_mm=0.2,
                        gain=rng.uniform(0.6, 2.0), soft=True, role="distractor"))
        a.lines += _septa(rng, poly, cx, cy, w, h)
    a.parts[a.layer0:a.layer0] = new
    a.layer0 += len(new)


def _tilt(poly: np.ndarray, cx: float, cy: float, ang: float) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    d = poly - [cx, cy]
    return np.stack([cx + c * d[:, 0] - s * d[:, 1], cy + s * d[:, 0] + c * d[:, 1]], 1)


def _septa(rng: np.random.Generator, poly: np.ndarray, cx: float, cy: float, w: float,
           h: float) -> list[Line]:
    """Faint intramuscular septa along a belly's long axis (the fibrillar look of muscle)."""
    lines = []
    inside = cv2.pointPolygonTest
    cnt = poly.astype(np.float32).reshape(-1, 1, 2)
    for _ in range(int(rng.integers(1, 4))):
        y = cy + rng.uniform(-0.6, 0.6) * h
        x0 = cx + rng.uniform(-0.8, 0.1) * w
        x1 = x0 + rng.uniform(0.3, 0.9) * w
        pts = np.stack([np.linspace(x0, x1, 10),
                        wavy(rng, x0, x1, y, 0.15, 10, rng.uniform(-0.1, 0.1))], 1)
        keep = np.array([inside(cnt, (float(x), float(yy)), True) > 0.5 for x, yy in pts])
        if keep.sum() >= 3:
            lines.append(Line(pts[keep], rng.uniform(1.5, 4.0), rng.uniform(0.06, 0.12)))
    return lines


def _look_alike(rng: np.random.Generator, cx: float, cy: float, scale: float = 1.0,
                kind: str | None = None) -> list[Part]:
    """A small dark structure that is not a vessel: lymph node (dark cortex, bright hilum),
    a small muscle such as omohyoid (dark, textured, bright sheath: the classic vessel mimic),
    a tendon (dotty internal echoes) or a dark fat lobule (soft edged)."""
    kind = kind or str(rng.choice(["node", "muscle", "tendon", "lobule"], p=[0.3, 0.35, 0.15,
                                                                            0.2]))
    ang = rng.uniform(0, 6.3, 4)
    if kind == "node":
        w, h = rng.uniform(2.5, 6.0) * scale, rng.uniform(1.4, 3.2) * scale
        out = [Part(ellipse(cx, cy, w, h, 32, wobble=rng.normal(0, 0.04, 4), phase=ang), "node",
                    rim=rng.uniform(0.5, 3.0), rim_mm=0.15, gain=rng.uniform(0.8, 3.0),
                    role="distractor")]
        if rng.random() < 0.85:  # echogenic fatty hilum, usually eccentric
            out.append(Part(ellipse(cx + rng.uniform(-0.3, 0.3) * w,
                                    cy + rng.uniform(-0.2, 0.2) * h, w * rng.uniform(0.25, 0.5),
                                    h * rng.uniform(0.2, 0.45), 20), "connective",
                            gain=rng.uniform(0.3, 1.0), soft=True, role="distractor"))
        return out
    if kind == "muscle":  # elongated, never a round blob
        w = rng.uniform(2.5, 6.0) * scale
        h = w * rng.uniform(0.3, 0.55)
        return [Part(ellipse(cx, cy, w, h, 32, wobble=rng.normal(0, 0.05, 4), phase=ang),
                     "dmuscle", rim=rng.uniform(2.0, 7.0), rim_mm=0.2,
                     gain=rng.uniform(0.5, 1.5), role="distractor")]
    if kind == "tendon":
        w, h = rng.uniform(1.5, 4.0) * scale, rng.uniform(1.0, 2.5) * scale
        return [Part(ellipse(cx, cy, w, h, 28, wobble=rng.normal(0, 0.04, 4), phase=ang),
                     "muscle", rim=rng.uniform(1.5, 4.0), rim_mm=0.15,
                     gain=rng.uniform(0.4, 1.2), role="distractor")]
    w, h = rng.uniform(3.0, 8.0) * scale, rng.uniform(1.5, 4.0) * scale
    return [Part(ellipse(cx, cy, w, h, 32, wobble=rng.normal(0, 0.08, 4), phase=ang), "fat",
                 gain=rng.uniform(0.1, 0.35), soft=True, role="distractor")]


def _look_alikes(a: Anatomy, rng: np.random.Generator, occ: _Occupancy, y0: float) -> None:
    for _ in range(int(rng.integers(2, 6))):
        for _try in range(12):
            cx, cy = rng.uniform(-30, 30), rng.uniform(y0 + 2, y0 + 30)
            parts = _look_alike(rng, cx, cy)
            if occ.free(parts[0].polygon, 0.8):
                a.parts.extend(parts)
                occ.add(parts[0].polygon)
                if parts[0].tissue == "node" and rng.random() < 0.6:  # its sides refract too
                    xs = parts[0].polygon[:, 0]
                    a.shadows += [(float(xs.min()), cy), (float(xs.max()), cy)]
                break


def _fascia_bands(a: Anatomy, rng: np.random.Generator, occ: _Occupancy) -> None:
    """Bright fascia / fat septa of varying thickness with blurred edges along some of the
    thin specular lines (kept clear of labelled structures)."""
    share = rng.uniform(0.3, 0.8)
    thick = rng.uniform(0.4, 1.6)  # this patient's typical band thickness, mm
    for ln in list(a.lines):
        if ln.reverb or ln.brightness >= 10 or rng.random() > share:
            continue
        pts = ln.points
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        length = float(seg.sum())
        if length < 4:
            continue
        s = np.concatenate([[0.0], np.cumsum(seg)])
        t = np.linspace(0, length, max(4, int(length / 0.5)))
        x, y = np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])
        knots = rng.uniform(0.2, 1.0, max(3, int(length / 4) + 2))
        tk = thick * np.interp(np.linspace(0, len(knots) - 1, len(t)), np.arange(len(knots)),
                               knots)
        off = rng.uniform(-0.5, 0.5) * tk  # the band need not be centred on the line
        ok = occ.clearance(x, y) > tk + 1.5
        gain = rng.uniform(0.4, 1.6)
        # one band per run of free points
        edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(int), [0]])))
        for i0, i1 in zip(edges[::2], edges[1::2], strict=True):
            if i1 - i0 < 6:
                continue
            sl = slice(i0, i1)
            top = np.stack([x[sl], y[sl] + off[sl] - tk[sl] / 2], 1)
            bot = np.stack([x[sl], y[sl] + off[sl] + tk[sl] / 2], 1)
            a.parts.append(Part(np.concatenate([top, bot[::-1]]), "connective", gain=gain,
                                soft=True, role="distractor"))


def roughen(a: Anatomy, rng: np.random.Generator) -> Anatomy:
    """Add what a real scan has besides the named structures (in place; returns `a`)."""
    y0 = float(a.parts[a.layer0 - 1].polygon[:, 1].mean()) if a.layer0 else 3.0
    _darken_muscles(a, rng)
    occ = _Occupancy(a)
    _fascia_bands(a, rng, occ)
    _look_alikes(a, rng, occ, y0)
    _big_bellies(a, rng, y0)
    return a


def without_vessels(a: Anatomy, rng: np.random.Generator) -> Anatomy:
    """The same patient seen where no vessel is in the plane: every vessel (wall and lumen)
    removed, the tissue underneath showing; sometimes a dark non-vessel structure (muscle,
    node) lies where the artery was, so "round and dark" alone never means "vessel"."""
    gone = {(round(x, 6), round(y, 6)) for v in a.vessels for x, y in _edge_shadows(v)}
    parts = [p for p in a.parts if p.role != "vessel"]
    if a.artery is not None and rng.random() < 0.5:
        v = a.artery
        parts += _look_alike(rng, v.cx, v.cy, scale=max(v.a, v.b) / 3.0,
                             kind=str(rng.choice(["muscle", "node"])))
    return Anatomy(a.scene, parts, list(a.lines), list(a.labels), None, None,
                   [s for s in a.shadows if (round(s[0], 6), round(s[1], 6)) not in gone],
                   [], a.layer0)


NECK_SCENES = {"jugular": jugular, "supraclavicular": supraclavicular,
               "interscalene": interscalene}
