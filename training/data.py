"""Labelled image folders -> (image uint8 HxW, mask uint8 HxW class index) pairs.

Four on-disk layouts are read: usgra-seg (RGB colour masks), a generic images/ + masks/ folder
with a colour or index palette, the Kaggle ultrasound-nerve-segmentation layout
(NAME.tif + NAME_mask.tif), and uns-nerve (images/sSS_NNNN.jpg + masks/sSS_NNNN.png, one 0/255
region mask per image, SS the subject). Every problem (missing mask, size mismatch, unknown
colour, a mid-grey region mask) raises DatasetError naming the file: nothing is skipped
silently, so a bad label cannot hide in training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sonoguide.pipeline.contract import ModelContract

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# usgra-seg masks, as RGB triplets (the README's colours).
USGRA_PALETTE = {"background": (0, 0, 0), "nerve": (128, 0, 0), "vessel": (0, 128, 0)}

# uns-nerve: one outline around the whole plexus region, not the nerves themselves; by default it
# is its own class so the two label styles are never silently mixed (config "as" changes it).
UNS_REGION_CLASS = "plexus_region"
# A region mask is 0/255. Grey levels within this many steps of 0 or 255 are compression noise
# and snap to the nearer end (threshold 128); anything further from both ends (32..223) is a
# soft or anti-aliased label, refused: thresholding it would silently move the outline.
REGION_MASK_TOLERANCE = 31
# uns-nerve file names: sSS_NNNN, SS the subject. Splits must keep a subject on one side.
SUBJECT_NAME = re.compile(r"^(s\d+)_\d+$")


class DatasetError(ValueError):
    """A labelled folder that cannot be read as asked; the message names the file."""


@dataclass(frozen=True)
class Sample:
    name: str  # file stem, what splits refer to
    image: np.ndarray  # (H, W) uint8 grayscale
    mask: np.ndarray  # (H, W) uint8 class index into the dataset's class list
    spacing_mm: float | None = None  # mm per image pixel where known (phantom)
    group: str = ""  # scene or dataset, for per-group metrics
    roi: tuple[int, int, int, int] | None = None  # (x, y, w, h) the app feeds the model; None: all

    def model_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Image and mask as the app's model sees them: cropped to the ROI."""
        if self.roi is None:
            return self.image, self.mask
        x, y, w, h = self.roi
        return self.image[y:y + h, x:x + w], self.mask[y:y + h, x:x + w]


def preprocess(image: np.ndarray, contract: ModelContract) -> np.ndarray:
    """The contract's preprocessing (ModelContract.normalize, shared with the app) for training.

    Whole image resized to (W, H) with INTER_AREA, then *scale, -mean, /std -> float32 (H, W).
    Resizing an image that already has the model size is a no-op, so training may resize first,
    augment at model size, then call this.
    """
    return contract.normalize(to_gray(image))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Class masks are resized with nearest neighbour: interpolated labels would be meaningless."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    raise DatasetError(f"image of shape {image.shape} is neither grayscale nor colour")


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:  # 16-bit scans: keep the dynamic range, drop the low byte
            img = (img >> 8).astype(np.uint8)
        else:
            raise DatasetError(f"{path}: pixel type {img.dtype} is not 8 or 16 bit")
    return to_gray(img)


def colour_mask_to_index(rgb: np.ndarray, palette: dict[int, tuple[int, int, int]],
                         path: Path) -> np.ndarray:
    """RGB colour mask -> class index; any colour outside the palette is an error."""
    out = np.zeros(rgb.shape[:2], np.uint8)
    known = np.zeros(rgb.shape[:2], bool)
    for idx, colour in palette.items():
        hit = np.all(rgb == np.asarray(colour, np.uint8), axis=-1)
        out[hit] = idx
        known |= hit
    if not known.all():
        ys, xs = np.nonzero(~known)
        bad = tuple(int(v) for v in rgb[ys[0], xs[0]])
        raise DatasetError(f"{path}: unknown mask colour RGB{bad} at x={xs[0]}, y={ys[0]} "
                           f"({int((~known).sum())} pixels); palette has "
                           f"{sorted(set(palette.values()))}")
    return out


def index_mask(raw: np.ndarray, values: dict[int, int], path: Path) -> np.ndarray:
    """Index mask (stored value -> class index); values outside the table are an error."""
    if raw.ndim == 3:
        raw = raw[:, :, 0]
    table = np.full(256, 255, np.uint8)
    for value, idx in values.items():
        table[value] = idx
    out = table[raw]
    if (out == 255).any():
        bad = sorted(set(np.unique(raw[out == 255]).tolist()))[:5]
        raise DatasetError(f"{path}: unknown mask value(s) {bad}; known {sorted(values)}")
    return out


@dataclass(frozen=True)
class FolderSpec:
    """How to read one labelled folder.

    layout: "folder" (images/NAME.ext + masks/NAME.ext), "kaggle" (NAME.tif + NAME_mask.tif) or
    "uns-nerve" (a folder whose names are sSS_NNNN, SS the subject).
    colours: class name -> RGB triplet, for colour masks; or values: stored value -> class name,
    for index masks; or region: the class a binary 0/255 region mask's 255 pixels become (grey
    levels checked as REGION_MASK_TOLERANCE says). Class names must be in the target class list
    (extra target classes are simply absent from this data).
    """

    root: Path
    layout: str = "folder"
    colours: dict[str, tuple[int, int, int]] | None = None
    values: dict[int, str] | None = None
    region: str | None = None

    @classmethod
    def from_config(cls, cfg: dict, base: Path | None = None) -> FolderSpec:
        root = Path(cfg["root"]).expanduser()
        if base is not None and not root.is_absolute():
            root = base / root
        kind = cfg.get("kind", "folder")
        if kind == "usgra-seg":
            return cls(root, "folder", colours=dict(USGRA_PALETTE))
        if kind == "kaggle":
            return cls(root, "kaggle", values={0: "background", 255: cfg.get("class", "nerve")})
        if kind == "uns-nerve":
            # "as": the class the region is read as; "nerve" would mix the two label styles
            # (usgra-seg outlines nerves, uns-nerve the region around them): only on purpose.
            return cls(root, "uns-nerve", region=str(cfg.get("as", UNS_REGION_CLASS)))
        colours = cfg.get("colours")
        values = cfg.get("values")
        if (colours is None) == (values is None):
            raise DatasetError(f"dataset {root}: give exactly one of 'colours' or 'values'")
        return cls(root, "folder",
                   colours={k: tuple(v) for k, v in colours.items()} if colours else None,
                   values={int(k): v for k, v in values.items()} if values else None)


def _class_index(name: str, classes: tuple[str, ...], where: Path) -> int:
    if name not in classes:
        raise DatasetError(f"{where}: class {name!r} is not one of {classes}")
    return classes.index(name)


def list_pairs(spec: FolderSpec) -> list[tuple[str, Path, Path]]:
    """(name, image path, mask path) for every image; a missing mask is an error."""
    if not spec.root.is_dir():
        raise DatasetError(f"dataset folder {spec.root} does not exist")
    pairs = []
    if spec.layout == "kaggle":
        for img in sorted(spec.root.glob("*.tif")):
            if img.stem.endswith("_mask"):
                continue
            mask = img.with_name(f"{img.stem}_mask.tif")
            if not mask.exists():
                raise DatasetError(f"{img}: mask {mask.name} is missing")
            pairs.append((img.stem, img, mask))
    else:  # "folder" and "uns-nerve"
        img_dir, mask_dir = spec.root / "images", spec.root / "masks"
        if not img_dir.is_dir() or not mask_dir.is_dir():
            raise DatasetError(f"{spec.root}: needs images/ and masks/ folders")
        for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            candidates = [mask_dir / (img.stem + s) for s in IMAGE_SUFFIXES]
            mask = next((c for c in candidates if c.exists()), None)
            if mask is None:
                raise DatasetError(f"{img}: no mask {img.stem}.* in {mask_dir}")
            pairs.append((img.stem, img, mask))
        orphans = {p.stem for p in mask_dir.iterdir()} - {n for n, _, _ in pairs}
        if orphans:
            raise DatasetError(f"{mask_dir}: mask(s) without an image: {sorted(orphans)[:5]}")
        if spec.layout == "uns-nerve":
            for name, img, _ in pairs:
                subject_of(name, img)
    if not pairs:
        raise DatasetError(f"{spec.root}: no images found")
    return pairs


def read_pair(spec: FolderSpec, name: str, img_path: Path, mask_path: Path,
              classes: tuple[str, ...]) -> Sample:
    image = read_image(img_path)
    raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DatasetError(f"cannot read mask {mask_path}")
    if raw.shape[:2] != image.shape:
        raise DatasetError(f"{mask_path}: mask size {raw.shape[1]}x{raw.shape[0]} differs from "
                           f"image {img_path.name} size {image.shape[1]}x{image.shape[0]}")
    if spec.region is not None:
        mask = region_mask(raw, _class_index(spec.region, classes, mask_path), mask_path)
    elif spec.colours is not None:
        if raw.ndim != 3 or raw.shape[2] < 3:
            raise DatasetError(f"{mask_path}: expected an RGB colour mask, got shape {raw.shape}")
        rgb = cv2.cvtColor(raw[:, :, :3], cv2.COLOR_BGR2RGB)  # OpenCV reads BGR
        palette = {_class_index(n, classes, mask_path): c for n, c in spec.colours.items()}
        mask = colour_mask_to_index(rgb, palette, mask_path)
    else:
        assert spec.values is not None
        table = {v: _class_index(n, classes, mask_path) for v, n in spec.values.items()}
        mask = index_mask(raw, table, mask_path)
    return Sample(name, image, mask)


def load_folder(spec: FolderSpec, classes: tuple[str, ...],
                names: list[str] | None = None) -> list[Sample]:
    """Read every pair (or just `names`, in that order); errors name the offending file."""
    pairs = list_pairs(spec)
    if names is not None:
        by_name = {n: (n, i, m) for n, i, m in pairs}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DatasetError(f"{spec.root}: split names files that are not there: {missing[:5]}")
        pairs = [by_name[n] for n in names]
    return [read_pair(spec, n, i, m, classes) for n, i, m in pairs]


def region_mask(raw: np.ndarray, index: int, path: Path) -> np.ndarray:
    """Binary 0/255 region mask -> class index (`index` inside, 0 outside), thresholded at 128.

    Levels within REGION_MASK_TOLERANCE of 0 or 255 are compression noise and snap to that end;
    a mask with levels in between (mid-grey: a soft edge, an anti-aliased or wrong file) is
    refused, naming the file, the count and the first such pixel.
    """
    if raw.dtype != np.uint8:
        raise DatasetError(f"{path}: region mask pixel type {raw.dtype}, expected 8-bit 0/255")
    gray = to_gray(raw)
    mid = (gray > REGION_MASK_TOLERANCE) & (gray < 255 - REGION_MASK_TOLERANCE)
    if mid.any():
        ys, xs = np.nonzero(mid)
        raise DatasetError(
            f"{path}: region mask has {int(mid.sum())} mid-grey pixel(s) (first value "
            f"{int(gray[ys[0], xs[0]])} at x={xs[0]}, y={ys[0]}); a region mask must be 0/255 "
            f"(levels 0-{REGION_MASK_TOLERANCE} and {255 - REGION_MASK_TOLERANCE}-255 are "
            f"tolerated as compression noise)")
    return np.where(gray >= 128, np.uint8(index), np.uint8(0))


def subject_of(name: str, where: Path | str = "") -> str:
    """The subject of an uns-nerve file name (sSS_NNNN -> sSS); an error naming the file if the
    name does not say it, since subject-wise splits depend on it."""
    m = SUBJECT_NAME.match(name)
    if m is None:
        raise DatasetError(f"{where or name}: name {name!r} is not sSS_NNNN (SS the subject), "
                           f"so its subject is unknown")
    return m.group(1)


def make_subject_split(names: list[str], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                       seed: int = 0, dataset: str = "uns-nerve") -> dict:
    """Seeded train/val/test split by subject: every frame of a subject lands in one part.

    Subjects (not frames) are shuffled with numpy default_rng(seed) and cut by `fractions` of the
    subject count (val and test rounded, train the rest), so near-duplicate frames of one sweep
    never sit on both sides. The file records the subjects and frame counts of each part.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise DatasetError(f"split fractions {fractions} must be three shares summing to 1")
    by_subject: dict[str, list[str]] = {}
    for n in names:
        by_subject.setdefault(subject_of(n), []).append(n)
    subjects = sorted(by_subject, key=lambda s: (len(s), s))
    order = np.random.default_rng(seed).permutation(len(subjects))
    n_val = int(round(len(subjects) * fractions[1]))
    n_test = int(round(len(subjects) * fractions[2]))
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
             "train": order[n_val + n_test:]}
    chosen = {k: sorted((subjects[i] for i in v), key=lambda s: (len(s), s))
              for k, v in parts.items()}
    split: dict = {
        "dataset": dataset,
        "by": "subject",
        "rule": (f"by subject, {'/'.join(f'{f:.0%}' for f in fractions)} of "
                 f"{len(subjects)} subjects (train/val/test), numpy default_rng({seed}) "
                 f"permutation of the sorted subjects; fixed, never regenerate"),
        "subjects": {k: chosen[k] for k in ("train", "val", "test")},
        "frames": {k: sum(len(by_subject[s]) for s in chosen[k]) for k in ("train", "val", "test")},
    }
    for k in ("train", "val", "test"):
        split[k] = sorted(n for s in chosen[k] for n in by_subject[s])
    check_subjects(split, dataset)
    return split


def check_subjects(split: dict, where: Path | str) -> None:
    """Refuse a split that puts one subject in two parts (or whose recorded subjects disagree with
    its files), naming the subject: frames of one subject are near-duplicates."""
    parts = [k for k in ("train", "val", "test") if isinstance(split.get(k), list)]
    seen: dict[str, str] = {}
    for part in parts:
        found = {subject_of(n, where) for n in split[part]}
        for subject in sorted(found):
            if subject in seen:
                raise DatasetError(f"{where}: subject {subject} is in both {seen[subject]} and "
                                   f"{part}; a subject's frames must all be on one side")
            seen[subject] = part
        recorded = split.get("subjects", {}).get(part)
        if recorded is not None and set(recorded) != found:
            odd = sorted(set(recorded) ^ found)
            raise DatasetError(f"{where}: {part} subjects recorded as {sorted(recorded)} but its "
                               f"files belong to {sorted(found)} (differs in {odd})")


def make_split(samples: list[Sample], stratify_class: int, val_fraction: float = 0.2,
               seed: int = 0) -> dict[str, list[str]]:
    """Seeded split by file, stratified by whether `stratify_class` appears in the mask."""
    rng = np.random.default_rng(seed)
    split: dict[str, list[str]] = {"train": [], "val": []}
    for has in (True, False):
        group = sorted(s.name for s in samples if bool((s.mask == stratify_class).any()) == has)
        order = rng.permutation(len(group))
        n_val = int(round(len(group) * val_fraction))
        split["val"] += [group[i] for i in order[:n_val]]
        split["train"] += [group[i] for i in order[n_val:]]
    return {k: sorted(v) for k, v in split.items()}


def read_split(path: Path) -> dict[str, list[str]]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "train" not in data or "val" not in data:
        raise DatasetError(f"{path}: a split file needs 'train' and 'val' lists")
    parts = [k for k in ("train", "val", "test") if k in data]
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            overlap = set(data[a]) & set(data[b])
            if overlap:
                raise DatasetError(f"{path}: files in both {a} and {b}: {sorted(overlap)[:5]}")
    names = [n for k in parts for n in data[k]]
    # By subject when it says so, or when every name carries its subject (uns-nerve's sSS_NNNN):
    # a by-file split of such a set would put one subject's near-duplicate frames on both sides.
    if data.get("by") == "subject" or (names and all(SUBJECT_NAME.match(n) for n in names)):
        check_subjects(data, path)
    return data
