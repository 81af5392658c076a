"""Segmentation losses over logits [N, C, H, W] and integer targets [N, H, W].

Choices (config "loss"): ce, dice, frame-dice, focal, combo (CE + Dice), combo-frame
(CE + frame Dice), ce+focal, ce+lovasz.
Dice and Lovasz optimise overlap directly, which matters here because nerves and vessels cover
only a few percent of the pixels; CE keeps early training stable. Batch-pooled Dice is dominated
by the large structures of the batch; frame Dice weighs every frame's structure alike, as the
per-frame mean Dice of the evaluation (and a doctor looking at one frame) does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target)


def _soft_dice_terms(logits: torch.Tensor, target: torch.Tensor, dims: tuple[int, ...],
                     eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft Dice of the foreground classes summed over `dims`, and the true pixel counts."""
    probs = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)[:, 1:]
    inter = (probs * onehot).sum(dims)
    truth = onehot.sum(dims)
    return (2 * inter + eps) / (probs.sum(dims) + truth + eps), truth


def soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes, pooled over the batch.

    Pooling over the batch keeps a frame without a vessel from giving an undefined Dice.
    """
    dice, _ = _soft_dice_terms(logits, target, (0, 2, 3), eps)
    return 1 - dice.mean()


def frame_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the (frame, foreground class) pairs where the class is present.

    A small nerve missed costs as much as a large vessel missed. Frames without the class are
    left to CE and the presence head (their Dice is undefined).
    """
    dice, truth = _soft_dice_terms(logits, target, (2, 3), eps)
    present = truth > 0
    if not present.any():
        return logits.sum() * 0
    return 1 - dice[present].mean()


def focal(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss: CE down-weighted on pixels already classified confidently."""
    logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


def _lovasz_grad(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors."""
    total = sorted_truth.sum()
    inter = total - sorted_truth.cumsum(0)
    union = total + (1 - sorted_truth).cumsum(0)
    jaccard = 1 - inter / union
    if len(jaccard) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovasz-softmax (Berman et al. 2018): a convex surrogate of per-class IoU.

    Classes absent from the batch are left out so they do not reward predicting nothing.
    """
    probs = logits.softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    flat = target.reshape(-1)
    losses = []
    for c in range(logits.shape[1]):
        truth = (flat == c).to(probs.dtype)
        if truth.sum() == 0:
            continue
        errors = (truth - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(truth[order])))
    return torch.stack(losses).mean() if losses else logits.sum() * 0


LOSSES: dict[str, LossFn] = {
    "ce": cross_entropy,
    "dice": soft_dice,
    "frame-dice": frame_dice,
    "focal": focal,
    "combo": lambda lg, t: cross_entropy(lg, t) + soft_dice(lg, t),
    "combo-frame": lambda lg, t: cross_entropy(lg, t) + frame_dice(lg, t),
    "ce+focal": lambda lg, t: cross_entropy(lg, t) + focal(lg, t),
    "ce+lovasz": lambda lg, t: cross_entropy(lg, t) + lovasz_softmax(lg, t),
}


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]


def presence_loss(presence_logits: torch.Tensor, target: torch.Tensor,
                  min_pixels: int = 1) -> torch.Tensor:
    """BCE on 'class c appears in the frame' (background column included, it is always there)."""
    n, c = presence_logits.shape
    counts = F.one_hot(target.reshape(n, -1), c).sum(dim=1)
    present = (counts >= min_pixels).to(presence_logits.dtype)
    return F.binary_cross_entropy_with_logits(presence_logits, present)
