"""LR encoders that condition a flow on the low-resolution image (ordinary nets, not invertible).

:class:`RRDBEncoder` is the ESRGAN generator used by SRFlow as its conditioning network: it
returns one feature map per flow level, at that level's spatial size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowsr.layers.subnets import RRDB
from flowsr.models.spec import check_keys

__all__ = ["EncoderSpec", "RRDBEncoder", "feature_name"]


@dataclass
class EncoderSpec:
    """Widths of the :class:`RRDBEncoder` (official SRFlow: nf 64, gc 32, 4 stacked blocks).

    Attributes:
        nf: feature width (conv_first, trunk, upconvs).
        nb: number of RRDB blocks in the trunk.
        gc: growth channels of the residual dense blocks.
        blocks: 0-based indices of the trunk blocks whose outputs are stacked onto every
            conditioning feature (SRFlow's ``stackRRDB.blocks``).
    """

    nf: int = 64
    nb: int = 23
    gc: int = 32
    blocks: list[int] = field(default_factory=lambda: [1, 8, 15, 22])

    def __post_init__(self) -> None:
        self.blocks = [int(b) for b in self.blocks]
        if self.nf < 1 or self.gc < 1 or self.nb < 1:
            raise ValueError(f"EncoderSpec: nf, gc and nb must be >= 1, got nf={self.nf} gc={self.gc} nb={self.nb}")
        bad = [b for b in self.blocks if not 0 <= b < self.nb]
        if bad:
            raise ValueError(f"EncoderSpec: stacked blocks {bad} are outside the trunk (0..{self.nb - 1})")

    @property
    def channels(self) -> int:
        """Channels of every conditioning feature: ``(1 + len(blocks)) * nf``."""
        return (1 + len(self.blocks)) * self.nf

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderSpec:
        return cls(**check_keys(cls, d))


def feature_name(level: int, levels: int) -> str:
    """Name of the encoder feature that conditions flow level ``level`` (0-based) of ``levels``.

    Level ``l`` works at ``HR / 2^(l+1) = LR * 2^(levels-2-l)`` (the flow's scale is
    ``2^(levels-1)``): the deepest level at LR/2 uses ``fea_up0``, the next ``fea_up1`` (LR size),
    then ``fea_up2``, ``fea_up4``, ... (``fea_up<k>`` lives at ``k * LR``).
    """
    if not 0 <= level < levels:
        raise ValueError(f"level must be in 0..{levels - 1}, got {level}")
    exponent = levels - 2 - level
    return "fea_up0" if exponent < 0 else f"fea_up{2**exponent}"


class RRDBEncoder(nn.Module):
    r"""SRFlow's RRDB (ESRGAN) LR encoder, returning one conditioning feature per flow level.

    ::

        fea     = conv_first(lr)                              (nf channels, LR size)
        block_i = output of trunk block i (RRDB), recorded for i in ``blocks``
        t       = trunk(fea)                                  (nb RRDBs)
        fea_up1 = t + trunk_conv(t)                           ("last_lr_fea", LR size)
        fea_up2 = lrelu(upconvs[0](nearest_x2(fea_up1)))      (2 LR)  -- post-activation
        fea_up4 = lrelu(upconvs[1](nearest_x2(fea_up2)))      (4 LR), ... up to ``scale``
        fea_up0 = bilinear_x1/2(fea_up1)                      (LR / 2; a 2x2 mean for even sizes)
        sr      = conv_last(lrelu(hr_conv(fea_up<scale>)))    (ESRGAN SR image; unused by the flow)

    ``lrelu`` is LeakyReLU(0.2). Note the skip of ``fea_up1``: it adds the trunk *output*, not
    ``conv_first``'s output as ESRGAN's generator does (spec A.2 step 3; the golden fixture
    differs by O(1) otherwise). Every returned ``fea_up<k>`` is concatenated with
    ``S = cat(block_i for i in blocks)`` nearest-resized to its size
    (``F.interpolate(S, size=...)``: pixel repetition up, top-left sample down), giving
    ``(1 + len(blocks)) * nf`` channels (:attr:`feature_channels`) at every level.

    Shapes: ``lr (B, C, h, w)`` with even ``h, w`` -> features ``(B, F, k h, k w)``.

    Parameter names: ``conv_first``, ``trunk.<i>.rdb<j>.conv<k>``, ``trunk_conv``,
    ``upconvs.<n>`` (official ``upconv<n+1>``), ``hr_conv`` (``HRconv``), ``conv_last``.
    ``log2(scale)`` upconvs exist (as in ESRGAN); the last one, ``hr_conv`` and ``conv_last``
    only feed the SR image, which is computed only when asked for.

    Papers: ESRGAN (Wang et al., ECCVW 2018); SRFlow (Lugmayr et al., ECCV 2020).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        *,
        nf: int = 64,
        nb: int = 23,
        gc: int = 32,
        blocks: list[int] | tuple[int, ...] = (1, 8, 15, 22),
        scale: int = 4,
    ):
        super().__init__()
        self.spec = EncoderSpec(nf=nf, nb=nb, gc=gc, blocks=list(blocks))
        n_up = int(round(math.log2(scale))) if scale >= 1 else -1
        if scale < 2 or 2**n_up != scale:
            raise ValueError(f"RRDBEncoder: scale must be a power of two >= 2, got {scale}")
        self.scale = int(scale)
        self.blocks = list(self.spec.blocks)
        self.conv_first = nn.Conv2d(in_channels, nf, 3, 1, 1)
        self.trunk = nn.ModuleList(RRDB(nf, gc) for _ in range(nb))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upconvs = nn.ModuleList(nn.Conv2d(nf, nf, 3, 1, 1) for _ in range(n_up))
        self.hr_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_channels, 3, 1, 1)
        self.feature_channels = self.spec.channels

    @classmethod
    def from_spec(cls, spec: EncoderSpec, in_channels: int = 3, out_channels: int = 3, scale: int = 4) -> RRDBEncoder:
        return cls(in_channels, out_channels, nf=spec.nf, nb=spec.nb, gc=spec.gc, blocks=spec.blocks, scale=scale)

    def features(self, lr: Tensor, max_factor: int | None = None, sr_image: bool = False) -> dict[str, Tensor]:
        """All named features for ``lr``.

        Returns ``fea_up0``, ``fea_up1``, ``fea_up2``, ... ``fea_up<max_factor>`` (each already
        concatenated with the stacked blocks; ``max_factor`` defaults to ``scale / 2``, the
        largest one a flow level uses), the raw trunk outputs ``block_<i>`` and, if ``sr_image``,
        the ESRGAN image ``sr`` (which needs every upconv).
        """
        max_factor = self.scale // 2 if max_factor is None else int(max_factor)
        if max_factor > self.scale or (max_factor >= 1 and 2 ** int(round(math.log2(max_factor))) != max_factor):
            raise ValueError(f"RRDBEncoder: max_factor must be a power of two <= {self.scale}, got {max_factor}")
        fea = self.conv_first(lr)
        out: dict[str, Tensor] = {}
        trunk = fea
        for i, block in enumerate(self.trunk):
            trunk = block(trunk)
            if i in self.blocks:
                out[f"block_{i}"] = trunk
        last = trunk + self.trunk_conv(trunk)
        raw = {
            "fea_up1": last,
            "fea_up0": F.interpolate(
                last, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True
            ),
        }
        n_up = len(self.upconvs) if sr_image else max(0, int(round(math.log2(max(max_factor, 1)))))
        h = last
        for n in range(n_up):
            h = F.leaky_relu(self.upconvs[n](F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
            raw[f"fea_up{2 ** (n + 1)}"] = h
        if sr_image:
            out["sr"] = self.conv_last(F.leaky_relu(self.hr_conv(h), 0.2))
        stacked = torch.cat([out[f"block_{i}"] for i in self.blocks], 1) if self.blocks else None
        for name, t in raw.items():
            factor = 0 if name == "fea_up0" else int(name[len("fea_up") :])
            if factor > max_factor:
                continue
            if stacked is not None:
                t = torch.cat([t, F.interpolate(stacked, size=t.shape[2:], mode="nearest")], 1)
            out[name] = t
        return out

    def level_features(self, lr: Tensor, levels: int) -> list[Tensor]:
        """The conditioning features of flow levels ``0 .. levels-1`` (level order, HR side first)."""
        if 2 ** (levels - 1) != self.scale:
            raise ValueError(
                f"RRDBEncoder: a x{self.scale} encoder serves {int(math.log2(self.scale)) + 1} levels, not {levels}"
            )
        feats = self.features(lr)
        return [feats[feature_name(l, levels)] for l in range(levels)]

    def forward(self, lr: Tensor, levels: int | None = None) -> list[Tensor]:
        """Same as :meth:`level_features` (``levels`` defaults to ``log2(scale) + 1``)."""
        return self.level_features(lr, levels if levels is not None else int(math.log2(self.scale)) + 1)
