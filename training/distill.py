"""Knowledge distillation: a shipped model (the teacher, an ONNX file) labels each training batch
as the student sees it, and the student learns the teacher's probabilities beside the truth.

Config, in a training config:
    "distill": {"teacher": "training/teachers/plexus-7.onnx", "weight": 1.0,
                "label": ["usgra-seg", "uns-nerve"], "teacher_only": ["uns-nerve"],
                "bound": {"uns-nerve": "nerve"}, "per_epoch": {"uns-nerve": 320}}

- label: the sample groups (a real source's "kind") the teacher labels. Others (the phantom's
  scenes) keep their truth alone: it is exact, and newer than what the teacher learnt (the
  anatomy under the needle).
- teacher_only: groups whose masks are not the student's classes; only the teacher's labels
  count there.
- bound: a group whose mask is an upper bound of one class (uns-nerve's outline of the whole
  plexus region holds every nerve pixel): the teacher's probability of that class outside the
  mask moves to the background before the student learns it.
- per_epoch: how many of a group's samples each epoch draws (a fresh random subset each time),
  so thousands of teacher-labelled frames do not crowd out the labelled ones.

The teacher runs through ONNX Runtime on the augmented batch itself (resized to its own input
size and back), so its labels follow every flip, warp and gain change with no bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sonoguide.pipeline.contract import ModelContract


class DistillError(ValueError):
    """A teacher that cannot label the student's batches (other classes or preprocessing)."""


@dataclass(frozen=True)
class DistillConfig:
    teacher: Path
    weight: float = 1.0
    label: tuple[str, ...] = ()
    teacher_only: tuple[str, ...] = ()
    bound: dict[str, str] = field(default_factory=dict)
    per_epoch: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict, resolve) -> DistillConfig:
        """resolve: turns the config's teacher path into a file (relative to the repository)."""
        return cls(resolve(raw["teacher"]), float(raw.get("weight", 1.0)),
                   tuple(raw.get("label", ())),
                   tuple(raw.get("teacher_only", ())), dict(raw.get("bound", {})),
                   {k: int(v) for k, v in raw.get("per_epoch", {}).items()})


class Teacher:
    """An exported model as a labeller of preprocessed batches [N, 1, h, w] at any size."""

    def __init__(self, path: Path, student: ModelContract, threads: int = 2) -> None:
        from sonoguide.training.export import check_contract, ort_session

        if not Path(path).exists():
            raise DistillError(f"teacher model {path} does not exist")
        self.session = ort_session(path, threads=threads)
        self.contract = check_contract(self.session)
        if self.contract.classes != student.classes:
            raise DistillError(f"teacher {path} has classes {self.contract.classes}, the "
                               f"student {student.classes}")
        mine = (self.contract.scale, self.contract.mean, self.contract.std)
        theirs = (student.scale, student.mean, student.std)
        if not np.allclose(mine, theirs):
            raise DistillError(f"teacher {path} normalises its input as {mine}, the student as "
                               f"{theirs}: its labels would be for another image")
        self.input = self.session.get_inputs()[0].name
        self.version = self.contract.version

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class probabilities [N, C, h, w] at the batch's size, and presence probabilities
        [N, C] when the teacher has a presence output."""
        size = x.shape[-2:]
        own = (self.contract.height, self.contract.width)
        xin = x if tuple(size) == own else F.interpolate(x, size=own, mode="bilinear",
                                                           align_corners=False)
        outs = self.session.run(None, {self.input: xin.cpu().numpy().astype(np.float32)})
        probs = torch.from_numpy(outs[0]).softmax(1)
        if tuple(size) != own:
            probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
        presence = torch.from_numpy(outs[1]).sigmoid() if len(outs) > 1 else None
        return probs.to(x.device), None if presence is None else presence.to(x.device)


def bound_class(probs: torch.Tensor, mask: torch.Tensor, cls: int) -> torch.Tensor:
    """Probabilities with class `cls` only where mask == cls; what is taken moves to class 0
    (the background), so each pixel still sums to one."""
    outside = (mask != cls).to(probs.dtype)
    taken = probs[:, cls] * outside
    out = probs.clone()
    out[:, cls] -= taken
    out[:, 0] += taken
    return out


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of -sum_c target_c log softmax(logits)_c."""
    return -(target * logits.log_softmax(1)).sum(1).mean()


def epoch_order(groups: list[str], per_epoch: dict[str, int],
                rng: np.random.Generator) -> np.ndarray:
    """Sample indices for one epoch: every sample of the other groups, and a fresh random
    per_epoch[g] of each capped group g; shuffled."""
    groups_arr = np.asarray(groups)
    keep = [np.flatnonzero(~np.isin(groups_arr, list(per_epoch)))]
    for g, n in per_epoch.items():
        members = np.flatnonzero(groups_arr == g)
        keep.append(rng.choice(members, size=min(n, len(members)), replace=False))
    return rng.permutation(np.concatenate(keep))


def distill_loss(logits: torch.Tensor, presence: torch.Tensor | None, x: torch.Tensor,
                 y: torch.Tensor, groups: list[str], cfg: DistillConfig, teacher: Teacher,
                 classes: tuple[str, ...], presence_weight: float) -> torch.Tensor | None:
    """The student's loss against the teacher's labels on the rows the teacher labels (None when
    the batch has none)."""
    rows = [i for i, g in enumerate(groups) if g in cfg.label]
    if not rows:
        return None
    idx = torch.tensor(rows, device=logits.device)
    probs, t_presence = teacher(x[idx])
    for j, i in enumerate(rows):
        if groups[i] in cfg.bound:
            c = classes.index(cfg.bound[groups[i]])
            probs[j:j + 1] = bound_class(probs[j:j + 1], y[i:i + 1], c)
    loss = soft_cross_entropy(logits[idx], probs)
    if presence is not None and t_presence is not None:
        loss = loss + presence_weight * F.binary_cross_entropy_with_logits(presence[idx],
                                                                           t_presence)
    return cfg.weight * loss
