"""IRN with flowsr: presets, a small x4 model from the builder, rescaling, losses, checkpoint, official conversion.

Run: ``python docs/examples/irn_example.py`` (a few seconds on a CPU; the last part needs the
official fixtures of a flowsr checkout (tests/fixtures/official) and is skipped without them).
"""

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from flowsr.convert import load_official
from flowsr.data import imresize, read_image, sample_images
from flowsr.models import IRN, irn_losses, irn_spec, load, save

# 1. The official architectures are presets; parameter counts match the official networks.
for scale in (2, 4, 8):
    print(f"IRN x{scale}", f"{sum(p.numel() for p in IRN(irn_spec(scale)).parameters()):,} parameters")

# 2. A small x4 IRN: 2 levels (Haar + 2 InvBlockExp each), DenseBlock growth 8.
spec = irn_spec(4, block_num=[2, 2], gc=8)
print(spec.to_yaml())  # a plain HierarchySpec; round-trips with HierarchySpec.from_yaml
torch.manual_seed(0)
model = IRN(spec)

# 3. A few training steps with the official losses (lambda_fit defaults to scale^2 = 16) on
#    crops of the bundled butterfly; lr_ref is the MATLAB-bicubic LR of the float HR, as in the
#    official data pipeline (neither rounded nor clamped).
_, hr_path, _ = sample_images("general_x4")[0]
image = read_image(hr_path)  # (3, 256, 256) in [0, 1]
hr = torch.stack([image[:, y : y + 32, x : x + 48] for y, x in [(40, 40), (100, 120), (160, 60), (200, 180)]])
lr_ref = imresize(hr, 0.25)  # (4, 3, 8, 12)
opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)
for it in range(20):
    losses = irn_losses(model, hr, lr_ref, generator=torch.Generator().manual_seed(it))
    opt.zero_grad()
    losses.total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10)
    opt.step()
    if it % 5 == 0 or it == 19:
        print(
            f"step {it:2d}: fit {losses.l_forw_fit.item():.4f}  ce {losses.l_forw_ce.item():.1f}  "
            f"rec {losses.l_back_rec.item():.1f}"
        )

# 4. The bijection and rescaling.
model.eval()
with torch.no_grad():
    y, zs, logdet = model.encode(hr)  # y (4, 3, 8, 12) raw LR, zs = [z (4, 45, 8, 12)], logdet (4,)
    print("y", tuple(y.shape), "z", tuple(zs[0].shape), "log-det", [round(v, 1) for v in logdet.tolist()])
    print("round-trip error", (model.decode(y, zs) - hr).abs().max().item())
    lr8 = model.downscale(hr)  # 8-bit LR (what IRN stores / transmits)
    up = model.upscale(lr8, generator=torch.Generator().manual_seed(0))  # z ~ N(0, I), clamped to [0, 1]
    up_mean = model.upscale(lr8, temperature=0.0)  # z = 0
    # After 20 steps the reverse pass has not learned to cope with z ~ N(0, I) yet (l_back_rec
    # trains it to over a full run), so the T = 1 sample is poor and T = 0 is far better here.
    print("upscaled", tuple(up.shape), "PSNR vs HR (dB):", round(-10 * torch.log10(F.mse_loss(up, hr)).item(), 2))
    print("z = 0 upscale PSNR (dB):", round(-10 * torch.log10(F.mse_loss(up_mean, hr)).item(), 2))

# 5. flowsr checkpoint: one file with the weights and the HierarchySpec.
with tempfile.TemporaryDirectory() as tmp:
    path = save(model, Path(tmp) / "irn_x4_small.safetensors")
    again = load(path)
    print("reloaded", type(again).__name__, "same LR:", torch.equal(again.downscale(hr), lr8))

# 6. Official checkpoint (here the reduced official network of the golden fixture).
golden = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "official" / "irn_small_golden.pt"
if golden.is_file():
    g = torch.load(golden, weights_only=True)
    official = load_official(g["state_dict"], g["opt"])  # or a .pth path with OFFICIAL_OPTIONS["IRN_x4"]
    with torch.no_grad():
        y, zs, logdet = official.encode(g["hr"])
        err = (torch.cat([y, zs[0]], 1) - g["fwd_out"]).abs().max().item()
        print(
            f"official forward reproduced to {err:.1e}; log-det batch mean {logdet.mean().item():.3f} "
            f"(official {g['fwd_jacobian_official'].item():.3f})"
        )
else:
    print("official fixtures not found (not a flowsr checkout); skipping the official-checkpoint part")
