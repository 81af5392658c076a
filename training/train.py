"""Train one segmentation network from a JSON config; resumes from its last checkpoint.

Config (see training/configs/plexus.json): classes, input (the contract's preprocessing), net,
loss, presence_weight, epochs, batch, lr, encoder_lr_scale, augment, train/val sources, out
(run folder).
Each epoch writes <out>/last.pt (model, optimiser, schedule, history, RNG) and the curves PNG,
so an interrupted run continues where it stopped when the same command is run again.
With "ema": decay (e.g. 0.995 per step), an exponential moving average of the weights is kept
beside the raw ones; it is what the per-epoch validation sees, what last.pt stores as "ema" and
what load_trained (hence export) returns.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from sonoguide.paths import data_root, repository
from sonoguide.pipeline.contract import ModelContract
from sonoguide.training.augment import AugmentConfig, augment
from sonoguide.training.data import (
    FolderSpec,
    Sample,
    load_folder,
    preprocess,
    read_split,
    resize_mask,
)
from sonoguide.training.distill import DistillConfig, Teacher, distill_loss, epoch_order
from sonoguide.training.losses import get_loss, presence_loss
from sonoguide.training.nets import SegNet, build_net

# run folders and relative config paths hang off the checkout (the current folder when installed)
REPO = repository() or Path.cwd()


@dataclass
class Config:
    raw: dict
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls(json.loads(Path(path).read_text()), Path(path))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.raw["classes"])

    def contract(self) -> ModelContract:
        spec = self.raw["input"]
        return ModelContract(self.classes, int(spec["height"]), int(spec["width"]),
                             float(spec["scale"]), float(spec["mean"]), float(spec["std"]),
                             str(self.raw.get("version", "dev")),
                             str(self.raw.get("trained_on", self.raw.get("name", ""))))

    def __getitem__(self, key: str):
        return self.raw[key]

    def get(self, key: str, default=None):
        return self.raw.get(key, default)


def load_sources(sources: list[dict], classes: tuple[str, ...], root: Path,
                 size: tuple[int, int]) -> list[Sample]:
    """Read each source of a config's "train" or "val" list.

    {"kind": "usgra-seg" | "folder" | "kaggle", "root": ..., "split": file, "part": "train"}
    or {"kind": "phantom", "scene": ..., "n": frames, "seed": ..., "stride": 1, "aimed": 0.0}
    (each frame a new patient; "aimed": share of in-plane needles put into a structure)
    or {"kind": "phantom-live", "scene": ..., "seed": 0, "n": frames, "fps": 30}
    (one patient as the app's live source plays it).
    """
    out: list[Sample] = []
    for src in sources:
        if src["kind"] == "phantom":
            from sonoguide.training.phantom_data import phantom_samples

            out += phantom_samples(src["scene"], int(src["n"]), int(src["seed"]), classes,
                                   size=tuple(src.get("size", size)),
                                   stride=int(src.get("stride", 1)),
                                   aimed=float(src.get("aimed", 0.0)))
            continue
        if src["kind"] == "phantom-live":
            from sonoguide.training.phantom_data import live_samples

            out += live_samples(src["scene"], int(src.get("seed", 0)), int(src["n"]), classes,
                                size=tuple(src.get("size", (512, 512))),
                                fps=float(src.get("fps", 30.0)))
            continue
        spec = FolderSpec.from_config(src, base=root)
        names = None
        if "split" in src:
            names = read_split(repo_path(src["split"]))[src.get("part", "train")]
        samples = load_folder(spec, classes, names)
        spacing = src.get("pixel_spacing_mm")
        out += [Sample(s.name, s.image, s.mask, spacing, src["kind"], _roi(s.image, src))
                for s in samples]
    return out


def _roi(image: np.ndarray, src: dict) -> tuple[int, int, int, int] | None:
    """With "roi": "detect", the ROI the app would find on this image (sonoguide.pipeline.roi),
    so the model trains and is judged on what the app feeds it; labels outside it stay in the
    truth."""
    if src.get("roi") != "detect":
        return None
    from sonoguide.pipeline.roi import detect_roi

    r = detect_roi(image)
    return (r.x, r.y, r.w, r.h)


def to_model_size(samples: list[Sample], contract: ModelContract) -> list[Sample]:
    """Crop to the ROI and resize once (INTER_AREA, as the contract does); augmentation then
    runs at model size."""
    h, w = contract.height, contract.width
    out = []
    for s in samples:
        img, mask = s.model_view()
        if img.shape != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        out.append(Sample(s.name, img, resize_mask(mask, h, w), s.spacing_mm, s.group))
    return out


def make_batch(samples: list[Sample], contract: ModelContract, aug: AugmentConfig | None,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for s in samples:
        img, mask = (augment(s.image, s.mask, aug, rng) if aug else (s.image, s.mask))
        xs.append(preprocess(img, contract))
        ys.append(mask)
    return (torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)).long())


def split_outputs(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (out[0], out[1]) if isinstance(out, tuple) else (out, None)


def param_groups(net: SegNet, encoder_scale: float) -> list[dict]:
    """Trainable parameters; the pretrained encoder's learn at encoder_scale times the rate
    (a fine-tuned ImageNet encoder keeps more of what it knows at a lower rate)."""
    enc = [p for p in net.encoder.parameters() if p.requires_grad]
    ids = {id(p) for p in enc}
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": rest, "lr_scale": 1.0},
            *([{"params": enc, "lr_scale": encoder_scale}] if enc else [])]


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 2% of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def validate(net: SegNet, samples: list[Sample], contract: ModelContract, loss_fn,
             batch: int, device: torch.device) -> dict:
    """Loss, pooled Dice and per-frame mean Dice (frames with the class) per foreground class,
    at model size: the quick per-epoch check."""
    net.eval()
    n_cls = len(contract.classes)
    inter, total = np.zeros(n_cls), np.zeros(n_cls)
    frames: dict[int, list[float]] = {c: [] for c in range(1, n_cls)}
    losses = []
    rng = np.random.default_rng(0)
    for i in range(0, len(samples), batch):
        x, y = make_batch(samples[i:i + batch], contract, None, rng)
        logits, _ = split_outputs(net(x.to(device)))
        losses.append(float(loss_fn(logits, y.to(device))))
        pred = logits.argmax(1).cpu().numpy()
        truth = y.numpy()
        for c in range(1, n_cls):
            hits = np.sum((pred == c) & (truth == c), axis=(1, 2))
            sizes = np.sum(pred == c, axis=(1, 2)) + np.sum(truth == c, axis=(1, 2))
            inter[c] += hits.sum()
            total[c] += sizes.sum()
            has = np.any(truth == c, axis=(1, 2))
            frames[c] += list(2 * hits[has] / sizes[has])
    dice = {contract.classes[c]: float(2 * inter[c] / total[c]) if total[c] else 1.0
            for c in range(1, n_cls)}
    frame = {contract.classes[c]: float(np.mean(v)) if v else None for c, v in frames.items()}
    return {"val_loss": float(np.mean(losses)), "val_dice": dice, "val_frame_dice": frame}


def step_loss(logits: torch.Tensor, pres: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor,
              groups: list[str], loss_fn, w_presence: float, distill: DistillConfig | None,
              teacher: Teacher | None, classes: tuple[str, ...]) -> torch.Tensor:
    """The truth's loss on rows whose masks are the student's classes, plus, when distilling,
    the teacher's on the rows it labels."""
    truth = [i for i, g in enumerate(groups) if not distill or g not in distill.teacher_only]
    loss = logits.sum() * 0  # keeps the graph when no row has a label of either kind
    if truth:
        rows = torch.tensor(truth, device=logits.device)
        loss = loss_fn(logits[rows], y[rows])
        if pres is not None:
            loss = loss + w_presence * presence_loss(pres[rows], y[rows])
    if distill is not None and teacher is not None:
        soft = distill_loss(logits, pres, x, y, groups, distill, teacher, classes, w_presence)
        if soft is not None:
            loss = loss + soft
    return loss


class WeightEMA:
    """Exponential moving average of a network's weights and BN statistics, updated per step.

    The decay ramps up as (1 + n) / (10 + n) so the first steps do not keep the random init.
    """

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = net.state_dict()
        for k, v in self.net.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)
            else:  # num_batches_tracked
                v.copy_(src[k])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "model": self.net.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.net.load_state_dict(state["model"])


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    a.plot(ep, [h["val_loss"] for h in history], label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    for i, name in enumerate(history[0]["val_dice"]):
        b.plot(ep, [h["val_dice"][name] for h in history], f"C{i}--", label=f"{name} pooled")
        frame = [(h.get("val_frame_dice") or {}).get(name) for h in history]
        if all(v is not None for v in frame):
            b.plot(ep, frame, f"C{i}-", label=f"{name} per-frame mean")
    b.set_xlabel("epoch")
    b.set_ylabel("validation Dice (model size)")
    b.set_ylim(0, 1)
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def init_from(net: torch.nn.Module, source: Path, device: torch.device) -> tuple[int, int]:
    """Pretrained weights (a run folder's last.pt, its EMA weights when kept) copied into `net`
    wherever a tensor's name and shape match: the encoder and decoder of a network pretrained
    on another label set, without its class head. Returns (copied, left as built)."""
    path = source / "last.pt" if source.is_dir() else source
    state = torch.load(path, map_location=device, weights_only=False)
    weights = state["ema"]["model"] if "ema" in state else state["model"]
    own = net.state_dict()
    matched = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    own.update(matched)
    net.load_state_dict(own)
    return len(matched), len(own) - len(matched)


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(cfg: Config, root: Path | None = None, device: str | None = None,
          max_steps: int | None = None, quiet: bool = False) -> Path:
    """Train (or resume) and return the run folder holding last.pt and curves.png."""
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed)
    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(int(cfg.get("threads", min(2, os.cpu_count() or 1))))
    contract = cfg.contract()
    size = (contract.height, contract.width)
    root = data_root(root)
    out = run_dir(cfg)
    if _finished(out / "last.pt", int(cfg.get("epochs", 40))):
        return out  # nothing left to do: skip loading (and generating) the data
    train_set = to_model_size(load_sources(cfg["train"], contract.classes, root, size), contract)
    val_set = to_model_size(load_sources(cfg["val"], contract.classes, root, size), contract)
    out.mkdir(parents=True, exist_ok=True)
    net = build_net(cfg["net"], len(contract.classes),
                    pretrained=bool(cfg["net"].get("pretrained", True))).to(dev)
    loss_fn = get_loss(cfg.get("loss", "combo"))
    w_presence = float(cfg.get("presence_weight", 0.3))
    aug = AugmentConfig.from_dict(cfg.get("augment")) if cfg.get("augment", {}) is not None \
        else None
    batch, epochs = int(cfg.get("batch", 8)), int(cfg.get("epochs", 40))
    distill = DistillConfig.from_dict(cfg["distill"], repo_path) if cfg.get("distill") else None
    teacher = Teacher(distill.teacher, contract) if distill else None
    groups = [s.group for s in train_set]
    per_epoch = distill.per_epoch if distill else {}
    epoch_size = sum(1 for g in groups if g not in per_epoch) + sum(
        min(n, groups.count(g)) for g, n in per_epoch.items())
    steps_per_epoch = max(1, epoch_size // batch)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(param_groups(net, float(cfg.get("encoder_lr_scale", 1.0))),
                            lr=float(cfg.get("lr", 1e-3)),
                            weight_decay=float(cfg.get("weight_decay", 1e-4)))
    ema_decay = float(cfg.get("ema", 0) or 0)
    ema = WeightEMA(net, ema_decay) if ema_decay > 0 else None
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    start_epoch, step = 0, 0
    ckpt = out / "last.pt"
    if cfg.get("init_from") and not ckpt.exists():
        copied, skipped = init_from(net, repo_path(cfg["init_from"]), dev)
        if ema is not None:
            ema.net.load_state_dict(net.state_dict())
        if not quiet:
            print(f"initialised from {cfg['init_from']}: {copied} tensors copied, "
                  f"{skipped} left as built (another head)")
    if ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        history, start_epoch, step = state["history"], state["epoch"], state["step"]
        rng.bit_generator.state = state["rng"]
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        elif ema is not None:  # a checkpoint from before EMA: the average starts from its weights
            ema.net.load_state_dict(state["model"])
        if not quiet:
            print(f"resuming {ckpt} at epoch {start_epoch}")
    (out / "config.json").write_text(json.dumps(cfg.raw, indent=2))
    warmup = min(steps_per_epoch * 2, total // 10 + 1)
    for epoch in range(start_epoch, epochs):
        net.train()
        order = (epoch_order(groups, per_epoch, rng) if per_epoch
                 else rng.permutation(len(train_set)))
        losses, t0 = [], time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", disable=quiet,
                   leave=False)
        for b in bar:
            for g in opt.param_groups:
                g["lr"] = g["lr_scale"] * lr_at(step, total, float(cfg.get("lr", 1e-3)), warmup)
            idx = order[b * batch:(b + 1) * batch]
            x, y = make_batch([train_set[i] for i in idx], contract, aug, rng)
            x, y = x.to(dev), y.to(dev)
            logits, pres = split_outputs(net(x))
            loss = step_loss(logits, pres, x, y, [groups[i] for i in idx], loss_fn, w_presence,
                             distill, teacher, contract.classes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(net)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
            step += 1
            if max_steps is not None and step >= max_steps:
                break
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
               "seconds": round(time.perf_counter() - t0, 1),
               **validate(ema.net if ema else net, val_set, contract, loss_fn, batch * 2,
                          dev)}
        history.append(row)
        if not quiet:
            dice = ", ".join(f"{k} {v:.3f}/{row['val_frame_dice'][k] or 0:.3f}"
                             for k, v in row["val_dice"].items())
            print(f"epoch {epoch + 1}: train {row['train_loss']:.3f} val {row['val_loss']:.3f} "
                  f"Dice pooled/frame {dice} ({row['seconds']} s)", flush=True)
        torch.save({"model": net.state_dict(), "optim": opt.state_dict(), "history": history,
                    "epoch": epoch + 1, "step": step, "rng": rng.bit_generator.state,
                    "config": cfg.raw, **({"ema": ema.state_dict()} if ema else {})}, ckpt)
        (out / "history.json").write_text(json.dumps(history, indent=1))
        plot_curves(history, out / "curves.png", cfg.get("name", out.name))
        if max_steps is not None and step >= max_steps:
            break
    return out


def member_configs(cfg: Config) -> list[Config]:
    """A config with "members": n > 1 trains n copies that differ only in their seed (seed + k),
    each in <out>/m<k>; export averages them (nets.MemberMean). Otherwise the config itself."""
    n = int(cfg.get("members", 1))
    if n <= 1:
        return [cfg]
    return [Config({**cfg.raw, "members": 1, "seed": int(cfg.get("seed", 0)) + k,
                    "out": str(member_dir(Path(cfg["out"]), k))}, cfg.path) for k in range(n)]


def member_dir(run: Path, k: int) -> Path:
    return run / f"m{k}"


def member_runs(cfg: Config, run: str | Path | None = None) -> list[Path]:
    """The run folders holding the config's trained networks (under `run` if given)."""
    base = repo_path(run) if run else run_dir(cfg)
    n = len(member_configs(cfg))
    return [base] if n == 1 else [member_dir(base, k) for k in range(n)]


def repo_path(path: str | Path) -> Path:
    """A path from a config or the command line: relative ones are relative to the repo."""
    path = Path(path)
    return path if path.is_absolute() else REPO / path


def run_dir(cfg: Config) -> Path:
    return repo_path(cfg["out"])


def train_all(cfg: Config, root: Path | None = None, device: str | None = None) -> list[Path]:
    """Train (or resume) every member of the config; the run folders, in member order."""
    return [train(member, root, device) for member in member_configs(cfg)]


def _finished(ckpt: Path, epochs: int) -> bool:
    if not ckpt.exists():
        return False
    return torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] >= epochs


def load_trained(run: Path, device: str = "cpu", raw: bool = False) -> tuple[SegNet, Config]:
    """The run's network: its EMA weights when it kept them (unless raw), else the last ones."""
    state = torch.load(Path(run) / "last.pt", map_location=device, weights_only=False)
    cfg = Config(state["config"])
    net = build_net(cfg["net"], len(cfg.classes), pretrained=False)
    net.load_state_dict(state["ema"]["model"] if "ema" in state and not raw else state["model"])
    return net.eval(), cfg
