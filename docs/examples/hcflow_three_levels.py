"""Build a new 3-level (x8) HCFlow-style hierarchy with the builder, and use it.

Run: ``python docs/examples/hcflow_three_levels.py``
"""

import torch

from flowsr.models import CouplingSpec, FeatureSpec, HCFlowSR, HierarchySpec, LatentSpec
from flowsr.testing import perturb_parameters

fcn = CouplingSpec(kind="affine", subnet="fcn", hidden=16, scale="atan")
spec = HierarchySpec(
    levels=3,  # x8
    steps=[2, 2, 3],  # main-flow steps per level
    squeeze="checkerboard",
    coupling=fcn,
    keep=[None, None, None],  # half of the channels at inner levels, the 3-channel LR at the last
    latent=LatentSpec(steps=1, coupling=fcn, prior="exp"),  # conditional steps on each split-off part
    features=FeatureSpec(kind="rrdb", nf=8, gc=4, nb=[1, 1], concat=True),
)
print(spec.to_yaml())

torch.manual_seed(0)
model = HCFlowSR(spec, quant=256)
perturb_parameters(model, seed=0, scale=0.05)  # stand-in for training: non-trivial weights
model.eval()

hr = torch.rand(2, 3, 64, 48)
y, zs, logdet = model.encode(hr)
print("LR", tuple(y.shape), "latents (deepest first)", [tuple(z.shape) for z in zs])
print("round-trip error", (model.decode(y, zs) - hr).abs().max().item())

lr = torch.nn.functional.avg_pool2d(hr, 8)
print("NLL (bits per pixel)", model.nll(hr, lr).nll.tolist())
samples = model.sample(lr, temperature=0.8, n=4, generator=torch.Generator().manual_seed(0))
print("4 samples per LR image:", tuple(samples.shape))
