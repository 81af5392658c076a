"""The frames a model gets most wrong, as a picture for its card: what it still gets wrong.

Per frame, the mean Dice over the foreground classes that the truth or the prediction holds
(a class drawn on a frame without it scores 0 there), from the same presence-gated prediction
`evaluate` scores. The worst `k` are drawn with the truth's outlines (thin) and the outlines the
app draws (thick; dashed where it draws them unsure), so a reader sees the error and whether
the app showed its doubt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sonoguide.training.data import Sample
from sonoguide.training.evaluate import predict_in_roi
from sonoguide.training.export import check_contract, ort_session
from sonoguide.training.outlines import map_classes

# foreground classes in order: (matplotlib colour, its name for the legend)
COLOURS = (("#ffd400", "yellow"), ("#ff3b30", "red"), ("#34c759", "green"), ("#0a84ff", "blue"))


def _colour(c: int) -> tuple[str, str]:
    return COLOURS[(c - 1) % len(COLOURS)]


def frame_scores(model: str | Path, samples: list[Sample], classes: tuple[str, ...]
                 ) -> list[dict[str, float]]:
    """Per sample, Dice of each foreground class the truth or the prediction holds."""
    session = ort_session(model)
    contract = check_contract(session)
    table = map_classes(contract.classes, classes)
    out = []
    for s in samples:
        pred = table[predict_in_roi(session, contract, s)]
        scores = {}
        for c in range(1, len(classes)):
            p, t = pred == c, s.mask == c
            if p.any() or t.any():
                scores[classes[c]] = float(2 * np.sum(p & t) / (p.sum() + t.sum()))
        out.append(scores)
    return out


def worst(scores: list[dict[str, float]], k: int) -> list[int]:
    """Indices of the k frames with the lowest mean score (frames with nothing to score are
    left out)."""
    scored = [(float(np.mean(list(s.values()))), i) for i, s in enumerate(scores) if s]
    return [i for _, i in sorted(scored)[:k]]


def worst_frames_figure(model: str | Path, samples: list[Sample], classes: tuple[str, ...],
                        out: str | Path, k: int = 6, title: str = "") -> list[int]:
    """Draw the k worst frames to `out` (PNG); returns their indices into samples."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sonoguide.training.steadiness import DrawnPredictor

    scores = frame_scores(model, samples, classes)
    picked = worst(scores, k)
    drawer = DrawnPredictor(model, classes)
    cols = min(3, max(1, len(picked)))
    rows = max(1, -(-len(picked) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.5 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picked, strict=False):
        s = samples[i]
        ax.imshow(s.image, cmap="gray", vmin=0, vmax=255)
        for c in range(1, len(classes)):
            contours, _ = cv2.findContours((s.mask == c).astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_NONE)
            for ct in contours:
                pts = np.vstack([ct[:, 0], ct[:1, 0]])
                ax.plot(pts[:, 0], pts[:, 1], color=_colour(c)[0], lw=0.8)
        drawer.reset()  # each frame alone, as evaluate scores it
        _, analysis = drawer.analyze(s.image, s.roi)
        for st in analysis.structures:
            c = drawer.data_class(st.class_name)
            if not c:
                continue
            pts = np.vstack([st.contour, st.contour[:1]])
            ax.plot(pts[:, 0], pts[:, 1], color=_colour(c)[0], lw=2.2,
                    ls="--" if st.unsure else "-")
        text = ", ".join(f"{n} {v:.2f}" for n, v in scores[i].items())
        ax.set_title(f"{s.name}: Dice {text}", fontsize=8)
    legend = ", ".join(f"{n} {_colour(c)[1]}" for c, n in enumerate(classes) if c)
    fig.suptitle(f"{title or Path(model).name}: worst {len(picked)} frames. Thin: truth; thick: "
                 f"drawn by the app (dashed: drawn unsure). {legend}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return picked
