"""Feature extractors that condition a level's latent flow (not invertible, ordinary nets)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowsr.layers.subnets import RRDB

__all__ = ["HierarchicalFeatures", "KeptPart"]


class HierarchicalFeatures(nn.Module):
    """HCFlow's per-level conditional feature network (an RRDB trunk).

    Input ``u_l = cat(keep_l, up_2(feat_{l+1}), up_4(feat_{l+2}), ...)``: the kept part of the
    level and the nearest-upsampled features of every deeper level (deepest last), so the latent
    of level ``l`` is conditioned on the whole LR side of the hierarchy below it.

    ``first = conv_first(u)``, ``f1 = trunk0(first)``, ``f2 = trunk_conv(trunk1(f1)) + first``;
    output ``cat(f1, f2)`` (``concat=True``, HCFlow SR, ``2 nf`` channels) or ``f2``
    (HCFlow rescaling, where trunk1 follows trunk0 and ``nf`` channels come out).

    Shapes: keep ``(B, C_keep, H, W)``, deeper features ``(B, F, H / 2^k, W / 2^k)`` -> ``(B, F, H, W)``.
    """

    def __init__(self, in_channels: int, nf: int = 64, gc: int = 32, nb: Sequence[int] = (7, 7), concat: bool = True):
        super().__init__()
        if len(nb) != 2:
            raise ValueError(f"HierarchicalFeatures: nb must list two trunk lengths, got {list(nb)}")
        self.concat = concat
        self.conv_first = nn.Conv2d(in_channels, nf, 3, 1, 1)
        self.trunk0 = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb[0])])
        self.trunk1 = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb[1])])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.out_channels = 2 * nf if concat else nf

    def forward(self, keep: Tensor, deeper: Sequence[Tensor] = ()) -> Tensor:
        u = _with_upsampled(keep, deeper)
        first = self.conv_first(u)
        f1 = self.trunk0(first)
        f2 = self.trunk_conv(self.trunk1(f1)) + first
        return torch.cat([f1, f2], 1) if self.concat else f2


class KeptPart(nn.Module):
    """Conditions a split-off part on the kept part itself (Glow / SRFlow learned-prior split)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.out_channels = in_channels

    def forward(self, keep: Tensor, deeper: Sequence[Tensor] = ()) -> Tensor:
        return keep


def _with_upsampled(keep: Tensor, deeper: Sequence[Tensor]) -> Tensor:
    if not deeper:
        return keep
    # Nearest upsampling (pixel repetition by 2^k) is the official HCFlow operator.
    ups = [F.interpolate(f, size=keep.shape[-2:], mode="nearest") for f in deeper]
    return torch.cat([keep, *ups], 1)
