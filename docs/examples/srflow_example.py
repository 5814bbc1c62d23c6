"""SRFlow with flowsr: a small x4 model from the builder, likelihood, sampling, checkpoint, official conversion.

Run: ``python docs/examples/srflow_example.py`` (a few seconds on a CPU; the last part needs the
official fixtures of a flowsr checkout (tests/fixtures/official) and is skipped without them).
"""

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from flowsr.convert import load_official
from flowsr.models import SRFlow, load, make_srflow_spec, save, srflow_spec
from flowsr.testing import perturb_parameters

# 1. The official architectures are presets; parameter counts match the official networks.
for name in ("DF2K_4X", "CelebA_8X", "DF2K_8X"):
    print(name, f"{sum(p.numel() for p in SRFlow(srflow_spec(name)).parameters()):,} parameters")

# 2. A small x4 SRFlow (3 flow levels) with the same layers and builder.
spec = make_srflow_spec(4, K=2, extra_steps=2, hidden=16, nf=8, nb=3, gc=4, blocks=[0, 2])
print(spec.to_yaml())  # round-trips with SRFlowSpec.from_yaml
torch.manual_seed(0)
model = SRFlow(spec, quant=32)
perturb_parameters(model, seed=0, scale=0.05)  # stand-in for training: non-trivial weights
model.eval()

hr = torch.rand(2, 3, 32, 48)
lr = F.avg_pool2d(hr, 4)  # (2, 3, 8, 12): LR sizes must be even
with torch.no_grad():
    _, zs, logdet = model.encode(hr, lr)  # latents deepest first: [z (96, 4, 6), eps (6, 16, 24)]
    print("latents", [tuple(z.shape) for z in zs], "log-det", logdet.tolist())
    print("round-trip error", (model.decode(lr, zs) - hr).abs().max().item())
    print("NLL (bits per pixel, no dequantisation)", model.nll(hr, lr).nll.tolist())
    print("NLL with hr + (u - 1/2)/32", model.nll(hr, lr, dequantize_hr=True).nll.tolist())
    samples = model.sample(lr, temperature=0.9, n=3, generator=torch.Generator().manual_seed(0))
    print("3 samples per LR image:", tuple(samples.shape))

# 3. flowsr checkpoint: one file with the weights and the SRFlowSpec.
with tempfile.TemporaryDirectory() as tmp:
    again = load(save(model, Path(tmp) / "srflow_x4.safetensors"))
    with torch.no_grad():
        assert torch.equal(again.encode(hr, lr)[1][0], zs[0])

# 4. An official checkpoint (here the reduced network of an official golden fixture).
golden = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "official" / "srflow_small_golden.pt"
if golden.is_file():
    g = torch.load(golden, weights_only=True)
    official = load_official(g["state_dict"], g["opt"])  # opt: the official yml structure (network_G, scale)
    with torch.no_grad():
        zs = official.encode(g["hr"], g["lr"])[1]
        err = max((a - b).abs().max().item() for a, b in zip(zs, reversed(g["fwd_latents"])))
        print("official golden: max latent error", err, "NLL", official.nll(g["hr"], g["lr"]).nll.tolist())
