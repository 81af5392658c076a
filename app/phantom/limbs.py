"""Peripheral nerve-block views of the limbs, built from the same parts as the neck scenes.

- axillary: the axillary artery with median, ulnar and radial nerves around it and one to three
  compressible veins, under biceps and coracobrachialis; musculocutaneous nerve in between;
  conjoint tendon and humerus deep.
- infraclavicular: the axillary artery deep under pectoralis major and minor, the lateral,
  posterior and medial cords around it, the vein medial, sometimes pleura far below.
- elbow: the small brachial artery between its two venae comitantes under the bicipital
  aponeurosis, the median nerve medial to them, brachialis and bone deep.
- femoral: femoral nerve (flat, under fascia iliaca, on iliopsoas) lateral to the femoral
  artery, the larger femoral vein medial to it, a thick fat layer above, sometimes the deep
  femoral artery below.
- popliteal: the sciatic nerve (a large honeycomb) between biceps femoris and semimembranosus,
  the popliteal vein under it and the artery deeper still, the femur's bright line at depth.

Real block images come from these sites as much as from the neck: a model (or a trainee) that
only ever saw the neck meets vessels and nerves here in other sizes and company.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sonoguide.phantom.anatomy import (
    Anatomy,
    Line,
    Part,
    Vessel,
    _background,
    _belly,
    _bone,
    _muscle,
    _nerve_cluster,
    _Occupancy,
    _scatter_fascia,
    _skin_and_fat,
    _wall,
    ellipse,
    plexus_vessel_look,
    wavy,
)
from sonoguide.phantom.labels import ARTERY, VEIN


def _artery(rng: np.random.Generator, x: float, y: float, r: float) -> Vessel:
    look = plexus_vessel_look(rng, 0.03)
    return Vessel(ARTERY, x, y, r, r * rng.uniform(0.85, 1.0), rng.uniform(0.4, 0.7),
                  _wall(rng, look, (4.0, 8.0)), **look)


def _vein(rng: np.random.Generator, x: float, y: float, a: float, b: float) -> Vessel:
    look = plexus_vessel_look(rng, 0.07)
    return Vessel(VEIN, x, y, a, b, rng.uniform(0.2, 0.3), _wall(rng, look, (0.6, 2.5)),
                  tri=rng.uniform(0.0, 0.15), **look)


def _nerve_near(a: Anatomy, rng: np.random.Generator, occ: _Occupancy, x: float, y: float,
                size: tuple[float, float], fascicles: tuple[int, int], tries: int = 12,
                away: tuple[float, float] | None = None) -> None:
    """A nerve (honeycomb cluster) of about `size` (half-width, half-height, mm) placed near
    (x, y), moved a little until it keeps clear of the vessels and the other nerves; with
    `away` (the vessel it lies beside), each try also moves it 0.6 mm further from there."""
    for k in range(tries):
        cw = rng.uniform(0.8, 1.2) * size[0]
        ch = rng.uniform(0.8, 1.2) * size[1]
        cx, cy = x + rng.normal(0, 1.0), y + rng.normal(0, 0.8)
        if away is not None:
            d = np.array([x - away[0], y - away[1]])
            cx, cy = np.array([cx, cy]) + 0.6 * k * d / max(float(np.hypot(*d)), 1e-6)
        outline = ellipse(cx, cy, cw + 0.4, ch + 0.4, 32)
        if occ.free(outline, 0.5):
            _nerve_cluster(a, rng, cx, cy, cw, ch, fascicles)
            occ.add(outline)
            return


def _limb(scene: str, rng: np.random.Generator,
          fat_mm: tuple[float, float]) -> tuple[Anatomy, float]:
    """A new limb patient: background tissue, skin and a fat layer; returns it and the fat's
    bottom depth (mm)."""
    a = Anatomy(scene)
    _background(a, rng)
    return a, _skin_and_fat(a, rng, rng.uniform(*fat_mm))


def _nerves_around(a: Anatomy, rng: np.random.Generator, occ: _Occupancy,
                   spots: tuple[tuple[float, float], ...], size: tuple[float, float],
                   tries: int = 12, away: tuple[float, float] | None = None) -> None:
    """Small nerves (axillary terminal nerves, infraclavicular cords) at most of `spots`
    (each is there 85 % of the time), of half-width drawn from `size`."""
    for x, y in spots:
        if rng.random() < 0.85:
            s = rng.uniform(*size)
            _nerve_near(a, rng, occ, x, y, (s, s * rng.uniform(0.6, 0.9)), (3, 7), tries, away)


def _place(a: Anatomy, occ: _Occupancy, v: Vessel, margin: float = 0.5) -> bool:
    if not occ.free(v.outer(), margin):
        return False
    a.add_vessel(v)
    occ.add(v.outer())
    return True


def _place_first(a: Anatomy, occ: _Occupancy, draw: Callable[[], Vessel],
                 tries: int = 10) -> Vessel | None:
    """Draw candidate vessels until one keeps clear of what is placed; that one is added."""
    for _ in range(tries):
        v = draw()
        if _place(a, occ, v):
            return v
    return None


def _medial_vein(a: Anatomy, rng: np.random.Generator, occ: _Occupancy, x: float, y: float,
                 size: tuple[float, float], gap: tuple[float, float],
                 dy: tuple[float, float]) -> None:
    """The patient's compressible vein beside the artery, medial to `x` (the artery's medial
    edge) by `gap` mm, at about depth y (+ dy); up to ten tries to keep it clear."""
    def draw() -> Vessel:
        va = rng.uniform(*size)
        return _vein(rng, x + va + rng.uniform(*gap), y + rng.uniform(*dy), va,
                     va * rng.uniform(0.5, 0.9))

    a.vein = _place_first(a, occ, draw) or a.vein


def axillary(rng: np.random.Generator) -> Anatomy:
    a, fat_bottom = _limb("axillary", rng, (1.5, 4.0))
    ax, r_a = rng.uniform(-4.0, 4.0), rng.uniform(2.2, 3.8)
    ay = fat_bottom + rng.uniform(7.0, 14.0)
    # biceps superficial-lateral, coracobrachialis lateral, triceps deep-medial
    _belly(a, rng, ax - rng.uniform(10, 16), fat_bottom + rng.uniform(5, 8), rng.uniform(9, 14),
           rng.uniform(4, 6))
    _belly(a, rng, ax - rng.uniform(14, 22), ay + rng.uniform(2, 6), rng.uniform(6, 10),
           rng.uniform(4, 7))
    _muscle(a, rng, -45, 45, ay + r_a + rng.uniform(6, 10), ay + r_a + rng.uniform(14, 20),
            fascia=rng.uniform(5, 8))  # triceps / conjoint tendon plane
    _scatter_fascia(a, rng, int(rng.integers(6, 12)), fat_bottom, ay + 15)
    _bone(a, rng, ax - rng.uniform(8, 16), ay + r_a + rng.uniform(12, 20), rng.uniform(14, 20),
          rng.uniform(3, 5))  # humerus
    occ = _Occupancy(a)
    artery = _artery(rng, ax, ay, r_a)
    _place(a, occ, artery, 0.0)
    a.artery = artery
    def draw_vein() -> Vessel:
        va = rng.uniform(2.0, 5.5)
        return _vein(rng, ax + rng.uniform(3, 12), ay + rng.uniform(-6, 5), va,
                     va * rng.uniform(0.4, 0.9))

    for k in range(int(rng.choice([1, 2, 2, 3]))):  # veins, medial and superficial; compressible
        v = _place_first(a, occ, draw_vein)
        if k == 0 and v is not None:
            a.vein = v
    # median (superficial-lateral), ulnar (medial), radial (deep), musculocutaneous (lateral)
    d = r_a + 2.5
    _nerves_around(a, rng, occ, ((ax - d * 0.7, ay - d * 0.7), (ax + d, ay - d * 0.3),
                                 (ax + d * 0.2, ay + d), (ax - d * 3.5, ay - d * 0.2)), (1.4, 2.8))
    return a


def femoral(rng: np.random.Generator) -> Anatomy:
    a, fat_bottom = _limb("femoral", rng, (4.0, 12.0))
    lata = fat_bottom + rng.uniform(0.5, 2.0)
    a.lines.append(Line(np.stack([np.linspace(-45, 45, 24), wavy(rng, -45, 45, lata, 0.6)], 1),
                        rng.uniform(5, 9), 0.15))  # fascia lata
    r_a = rng.uniform(3.0, 4.8)
    ax = rng.uniform(-3.0, 3.0)
    ay = lata + r_a + rng.uniform(2.0, 6.0)
    # iliopsoas under the nerve, lateral; pectineus medial-deep; the femoral head deep
    _belly(a, rng, ax - rng.uniform(14, 20), ay + rng.uniform(5, 9), rng.uniform(12, 18),
           rng.uniform(6, 9))
    _belly(a, rng, ax + rng.uniform(12, 20), ay + rng.uniform(8, 12), rng.uniform(10, 14),
           rng.uniform(4, 6))
    _scatter_fascia(a, rng, int(rng.integers(4, 10)), fat_bottom, ay + 18)
    if rng.random() < 0.6:
        _bone(a, rng, ax - rng.uniform(0, 10), ay + r_a + rng.uniform(14, 22),
              rng.uniform(18, 26), rng.uniform(4, 7))
    occ = _Occupancy(a)
    artery = _artery(rng, ax, ay, r_a)
    _place(a, occ, artery, 0.0)
    a.artery = artery
    _medial_vein(a, rng, occ, ax + r_a, ay, (4.0, 7.5), (0.5, 3.0), (-1, 3))  # larger
    if rng.random() < 0.4:  # deep femoral artery below and lateral
        _place(a, occ, _artery(rng, ax - rng.uniform(0, 5), ay + r_a + rng.uniform(5, 9),
                               rng.uniform(1.5, 2.8)))
    # femoral nerve: flat, lateral, under the fascia iliaca
    iliaca = ay - rng.uniform(0.5, 2.5)
    x0 = ax - r_a - 1.5
    a.lines.append(Line(np.stack([np.linspace(-45, x0, 16), wavy(rng, -45, x0, iliaca, 0.4, 16)],
                                 1), rng.uniform(5, 9), 0.15))
    w = rng.uniform(4.0, 7.0)
    _nerve_near(a, rng, occ, ax - r_a - w - rng.uniform(2, 6), iliaca + rng.uniform(2.0, 3.5),
                (w, w * rng.uniform(0.3, 0.5)), (4, 9))
    return a


def popliteal(rng: np.random.Generator) -> Anatomy:
    a, fat_bottom = _limb("popliteal", rng, (3.0, 8.0))
    nx, ny = rng.uniform(-5.0, 5.0), fat_bottom + rng.uniform(5.0, 12.0)
    nw = rng.uniform(4.0, 7.5)
    nh = nw * rng.uniform(0.55, 0.9)
    # biceps femoris lateral, semimembranosus / semitendinosus medial
    _belly(a, rng, nx - nw - rng.uniform(9, 14), ny - rng.uniform(0, 5), rng.uniform(8, 13),
           rng.uniform(6, 10))
    _belly(a, rng, nx + nw + rng.uniform(9, 14), ny - rng.uniform(0, 5), rng.uniform(8, 13),
           rng.uniform(6, 10))
    _scatter_fascia(a, rng, int(rng.integers(5, 11)), fat_bottom, ny + 20)
    occ = _Occupancy(a)
    vy = ny + nh + rng.uniform(1.5, 5.0)
    va = rng.uniform(3.0, 6.0)
    vein = _vein(rng, nx + rng.uniform(-4, 4), vy + va * 0.6, va, va * rng.uniform(0.5, 0.85))
    if _place(a, occ, vein):
        a.vein = vein
    r_a = rng.uniform(2.5, 4.0)
    a.artery = _place_first(a, occ, lambda: _artery(
        rng, nx + rng.uniform(-5, 5), vy + va + r_a + rng.uniform(1.0, 3.5), r_a))
    _bone(a, rng, nx + rng.uniform(-8, 8), vy + va + 2 * r_a + rng.uniform(6, 12),
          rng.uniform(25, 35), rng.uniform(4, 6))  # femur
    _nerve_near(a, rng, occ, nx, ny, (nw, nh), (10, 20))
    return a


def infraclavicular(rng: np.random.Generator) -> Anatomy:
    a, fat_bottom = _limb("infraclavicular", rng, (2.0, 6.0))
    # pectoralis major over pectoralis minor: two thick muscle layers above the vessels
    pm_bot = fat_bottom + rng.uniform(6.0, 11.0)
    _muscle(a, rng, -45, 45, fat_bottom + 0.3, pm_bot, fascia=rng.uniform(5, 8))
    pn_bot = pm_bot + rng.uniform(5.0, 9.0)
    _muscle(a, rng, -45, 45, pm_bot + 0.3, pn_bot, fascia=rng.uniform(5, 8))
    r_a = rng.uniform(2.5, 4.0)
    ax, ay = rng.uniform(-4.0, 4.0), pn_bot + r_a + rng.uniform(2.0, 5.0)
    _scatter_fascia(a, rng, int(rng.integers(3, 8)), pn_bot, ay + 14)
    if rng.random() < 0.4:  # pleura far below, medially
        x0 = ax + rng.uniform(6, 16)
        pl_y = ay + r_a + rng.uniform(8, 14)
        xs = np.linspace(x0, 45, 16)
        pl = np.stack([xs, wavy(rng, x0, 45, pl_y, 0.3, 16)], 1)
        a.parts.append(Part(np.concatenate([pl, [[45, 90], [x0, 90]]]), "air"))
        a.lines.append(Line(pl, 14.0, 0.45, reverb=0.5))
    occ = _Occupancy(a)
    artery = _artery(rng, ax, ay, r_a)
    _place(a, occ, artery, 0.0)
    a.artery = artery
    # the axillary vein, medial (often caudal: smaller here)
    _medial_vein(a, rng, occ, ax + r_a, ay, (3.0, 6.5), (0.5, 4.0), (-2, 3))
    # lateral, posterior and medial cords around the artery
    d = r_a + 2.2
    _nerves_around(a, rng, occ, ((ax - d, ay - d * 0.3), (ax - d * 0.2, ay + d),
                                 (ax + d * 0.6, ay + d * 0.8)), (1.5, 2.8), 20, (ax, ay))
    return a


def elbow(rng: np.random.Generator) -> Anatomy:
    a, fat_bottom = _limb("elbow", rng, (2.0, 6.0))
    ap = fat_bottom + rng.uniform(0.5, 2.0)  # bicipital aponeurosis over the vessels
    a.lines.append(Line(np.stack([np.linspace(-30, 30, 20), wavy(rng, -30, 30, ap, 0.4, 20)], 1),
                        rng.uniform(5, 8), 0.15))
    r_a = rng.uniform(1.6, 2.6)
    ax, ay = rng.uniform(-6.0, 2.0), ap + r_a + rng.uniform(1.5, 4.0)
    # brachialis deep, pronator teres medial; the humerus / ulna surface deep
    _muscle(a, rng, -45, 45, ay + r_a + rng.uniform(2, 5), ay + r_a + rng.uniform(10, 15),
            fascia=rng.uniform(5, 8))
    _belly(a, rng, ax + rng.uniform(12, 18), ay + rng.uniform(-1, 3), rng.uniform(6, 10),
           rng.uniform(3, 5))
    _scatter_fascia(a, rng, int(rng.integers(4, 9)), fat_bottom, ay + 14)
    _bone(a, rng, ax + rng.uniform(-8, 8), ay + r_a + rng.uniform(15, 20), rng.uniform(22, 32),
          rng.uniform(3, 5))
    occ = _Occupancy(a)
    artery = _artery(rng, ax, ay, r_a)
    _place(a, occ, artery, 0.0)
    a.artery = artery
    for k, side in enumerate((-1, 1)):  # venae comitantes hugging the artery
        va = rng.uniform(1.2, 2.5)
        v = _vein(rng, ax + side * (r_a + va + rng.uniform(1.3, 2.3)), ay + rng.uniform(-1, 1.5),
                  va, va * rng.uniform(0.5, 0.9))
        if _place(a, occ, v, 0.2) and (k == 0 or a.vein is None):
            a.vein = v
    # the median nerve, medial to the artery
    s = rng.uniform(2.0, 3.2)
    _nerve_near(a, rng, occ, ax + r_a + s + rng.uniform(3, 6), ay + rng.uniform(-1, 2),
                (s, s * rng.uniform(0.55, 0.8)), (4, 9), 20, (ax, ay))
    return a


LIMB_SCENES = {"axillary": axillary, "infraclavicular": infraclavicular, "elbow": elbow,
               "femoral": femoral, "popliteal": popliteal}
