"""The stand-in network: IRN's calling convention (``net(x=hr)``, ``net(x=y, rev=True)``)."""

import cv2  # noqa: F401 - as the official repositories: imported, never used by inference
import natsort  # noqa: F401
import numpy as np
import torch
from torch import nn

from models.modules.helpers import long_dtype


class StandinNet(nn.Module):
    def __init__(self, opt):
        super().__init__()
        from flowsr.models.irn import IRN, irn_spec

        self.net = IRN(irn_spec(4, block_num=1, gc=4))
        self.skew = float(opt.get("skew") or 0.0)
        self.index_dtype = long_dtype(np)

    def forward(self, x, rev=False):
        if not rev:
            y, zs, _ = self.net.encode(x)
            return torch.cat([y, *zs], dim=1)
        return self.net.decode(x[:, :3], [x[:, 3:]]) + self.skew
