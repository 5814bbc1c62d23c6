"""Bad input at the model boundary gives one clear ValueError, the same way in every family, and a
model that overflows says so instead of returning NaN (issue #14 defects 6, 11 and 12)."""

from __future__ import annotations

import pytest
import torch

from flowsr import inference
from flowsr.models import FAMILIES, NonFiniteOutputError, load


def _tiny(name: str):
    cls = FAMILIES[name]
    torch.manual_seed(0)
    return cls(cls.shrink_spec(cls.preset_spec(cls.presets[1]))).eval()


def _lr(model, size: int = 4, dtype=torch.float32) -> torch.Tensor:
    s = size * model.lr_multiple
    return torch.rand(1, model.in_channels, s, s, dtype=dtype)


CALLS = {
    "encode": lambda m, lr: m.encode(
        torch.rand(1, m.in_channels, lr.shape[2] * m.scale, lr.shape[3] * m.scale, dtype=lr.dtype), lr
    ),
    "decode": lambda m, lr: m.decode(lr, [z.to(lr.dtype) for z in m.sample_latents(lr.float(), 1.0)]),
    "sample": lambda m, lr: m.sample(lr, 0.5),
    "upscale": lambda m, lr: m.upscale(lr, 0.5),
    "super_resolve": lambda m, lr: inference.super_resolve(m, lr, 0.5),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_float64_input_to_a_float32_model_is_one_clear_error(family: str, call: str) -> None:
    model = _tiny(family)
    with torch.no_grad(), pytest.raises(ValueError, match="is torch.float64 .* the model is torch.float32") as info:
        CALLS[call](model, _lr(model, dtype=torch.float64))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_api_gaps_are_clear_errors(family: str) -> None:
    model = _tiny(family)
    lr = _lr(model)
    cases = [
        (lambda: model.sample(torch.rand(1, 3, 0, 0)), "empty"),
        (lambda: model.decode(lr, None), "expected a list of"),
        (lambda: model.sample(lr, 0.5, n=2.5), "n must be an int >= 1"),
        (lambda: model.sample(lr, 0.5, n=0), "n must be an int >= 1"),
        (lambda: model.sample(lr, 0.5, generator="seed"), "generator must be a torch.Generator"),
        (lambda: model.sample(lr, float("inf")), "temperature must be a finite number"),
        (lambda: model.sample(lr, "hot"), "temperature must be a number"),
        (lambda: inference.draw_latents(model, (-4, 4), 0.5), "draw_latents: need an LR size of two positive"),
        (lambda: inference.super_resolve(model, lr, 0.5, tile=0), "tile must be a positive int"),
        (lambda: inference.super_resolve(model, lr, 0.5, tile=-3), "tile must be a positive int"),
        (lambda: inference.super_resolve(model, lr, 0.5, tile=4, overlap=-1), "overlap must be a non-negative"),
    ]
    if model.task == "rescaling":
        hr = torch.rand(1, 3, 16, 16)
        cases.append((lambda: inference.downscale(model, hr, tile=0), "tile must be a positive int"))
    for call, message in cases:
        with torch.no_grad(), pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize("name", ["hcflow_sr_x4_demo"])  # its exp prior overflows (the rescaling prior is atan-bounded)
def test_an_overflowing_sample_raises_instead_of_returning_nan(name: str) -> None:
    model = load(name)
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with pytest.raises(NonFiniteOutputError, match="try a lower temperature"):
            model.sample(lr, 1e30)
        with pytest.raises(NonFiniteOutputError, match="try a lower temperature"):
            inference.super_resolve(model, lr, 1e30, tile=4, overlap=2)


def test_bundled_sr_model_on_binary_noise_at_the_default_temperature() -> None:
    """Out-of-distribution LR images (binary noise, 1-px stripes) drive the bundled SR model's
    unbounded learned prior scale exp(l) past float32 at T=0.8 (level 0's GaussianWhitening: l ~ 70).
    Clamping l would turn NaN into ~1e5-valued garbage, so the model reports it instead; T=0 works."""
    model = load("hcflow_sr_x4_demo")
    lr = (torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float().expand(1, 3, 16, 16)
    with torch.no_grad():
        with pytest.raises(NonFiniteOutputError, match="non-finite values at temperature 0.8"):
            model.sample(lr, 0.8, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(model.sample(lr, 0.0)).all()
