"""Segmentation networks: U-Net, LinkNet and FCN decoders over a choice of encoder.

All return logits at input resolution, [N, C, H, W]; with presence=True also [N, C] logits that
each class appears in the frame (the app hides a class whose presence probability is < 0.5,
which is how false vessels on frames without any are suppressed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sonoguide.training.encoders import build_encoder, conv_bn_relu

ARCHS = ("unet", "linknet", "fcn")


def up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class UNetDecoder(nn.Module):
    """Upsample, concatenate the skip, two 3x3 convs; at each level from deep to shallow."""

    def __init__(self, enc_ch: tuple[int, ...], width: int):
        super().__init__()
        rev = enc_ch[::-1]
        outs = [max(width // 2**i, 16) for i in range(len(rev) - 1)]
        self.blocks = nn.ModuleList()
        cin = rev[0]
        for skip, cout in zip(rev[1:], outs, strict=True):
            self.blocks.append(nn.Sequential(conv_bn_relu(cin + skip, cout),
                                             conv_bn_relu(cout, cout)))
            cin = cout
        self.out_channels = cin

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for block, skip in zip(self.blocks, feats[-2::-1], strict=True):
            x = block(torch.cat([up_to(x, skip), skip], dim=1))
        return x


class LinkBlock(nn.Module):
    """LinkNet decoder block: 1x1 squeeze, upsample + 3x3, 1x1 expand; the skip is added."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        # Lite0's shallow levels have only 16-40 channels; a quarter of that (LinkNet's rule
        # for ResNet widths) starved the decoder and it lost the vessel class entirely.
        mid = max(cin // 4, 32)
        self.squeeze = conv_bn_relu(cin, mid, kernel=1)
        self.conv = conv_bn_relu(mid, mid)
        self.expand = conv_bn_relu(mid, cout, kernel=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.conv(up_to(self.squeeze(x), skip))
        return self.expand(x) + skip


class LinkNetDecoder(nn.Module):
    def __init__(self, enc_ch: tuple[int, ...], width: int):
        super().__init__()
        rev = enc_ch[::-1]
        self.blocks = nn.ModuleList(LinkBlock(a, b) for a, b in zip(rev[:-1], rev[1:],
                                                                     strict=True))
        self.refine = conv_bn_relu(rev[-1], width)
        self.out_channels = width

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for block, skip in zip(self.blocks, feats[-2::-1], strict=True):
            x = block(x, skip)
        return self.refine(x)


class FCNDecoder(nn.Module):
    """FCN-8s style: class-width score maps from the three deepest levels, upsampled and summed."""

    def __init__(self, enc_ch: tuple[int, ...], width: int):
        super().__init__()
        self.scores = nn.ModuleList(nn.Conv2d(c, width, 1) for c in enc_ch[-3:])
        self.out_channels = width

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        deep = feats[-3:]
        x = self.scores[-1](deep[-1])
        for score, f in zip(self.scores[-2::-1], deep[-2::-1], strict=True):
            x = up_to(x, f) + score(f)
        return F.relu(x)


DECODERS = {"unet": UNetDecoder, "linknet": LinkNetDecoder, "fcn": FCNDecoder}


class SegNet(nn.Module):
    def __init__(self, arch: str, encoder: str, n_classes: int, presence: bool = False,
                 width: int = 32, pretrained: bool = True, frozen_blocks: int = 0):
        super().__init__()
        if arch not in DECODERS:
            raise ValueError(f"unknown network {arch!r}; choose one of {ARCHS}")
        self.encoder = build_encoder(encoder, pretrained=pretrained, frozen_blocks=frozen_blocks)
        self.decoder = DECODERS[arch](self.encoder.channels, width)
        self.head = nn.Conv2d(self.decoder.out_channels, n_classes, 1)
        self.presence = nn.Linear(self.encoder.channels[-1], n_classes) if presence else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        logits = up_to(self.head(self.decoder(feats)), x)
        if self.presence is None:
            return logits
        pooled = feats[-1].mean(dim=(2, 3))
        return logits, self.presence(pooled)


class MemberMean(nn.Module):
    """Several trained networks as one model: the mean of their logits (and presence logits).
    Members that differ only in their seed err in different places; the mean errs less."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outs = [m(x) for m in self.members]
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(o).mean(0) for o in zip(*outs, strict=True))
        return torch.stack(outs).mean(0)


def build_net(cfg: dict, n_classes: int, pretrained: bool = True) -> SegNet:
    """cfg keys: arch, encoder, presence, width, frozen_blocks (see configs/*.json)."""
    return SegNet(cfg.get("arch", "linknet"), cfg.get("encoder", "lite0"), n_classes,
                  presence=bool(cfg.get("presence", False)), width=int(cfg.get("width", 32)),
                  pretrained=pretrained, frozen_blocks=int(cfg.get("frozen_blocks", 0)))
