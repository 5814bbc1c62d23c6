"""Property tests of the hierarchy builder and the HCFlow models on tiny configurations."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowsr.layers.quantization import quantize
from flowsr.models.checkpoint import load, save
from flowsr.models.hcflow import HCFlowRescaling, HCFlowSR, hcflow_rescaling_spec, hcflow_sr_spec
from flowsr.models.hierarchy import build_hierarchy
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec
from flowsr.testing import (
    assert_invertible,
    assert_logdet_matches_autograd,
    assert_reverse_logdet_negates,
    perturb_parameters,
)


def tiny_sr_spec(levels: int, in_channels: int = 1, steps=1, latent_steps=1) -> HierarchySpec:
    fcn = CouplingSpec(kind="affine", subnet="fcn", hidden=4, scale="atan")
    return HierarchySpec(
        in_channels=in_channels,
        out_channels=in_channels,
        levels=levels,
        steps=steps,
        coupling=fcn,
        latent=LatentSpec(steps=latent_steps, coupling=fcn, prior="exp"),
        features=FeatureSpec(kind="rrdb", nf=4, gc=2, nb=[1, 1], concat=True),
    )


def tiny_rescaling_spec(levels: int) -> HierarchySpec:
    return HierarchySpec(
        levels=levels,
        steps=2,
        squeeze="haar",
        permutation="none",
        coupling=CouplingSpec(kind="three_shift", subnet="dense", hidden=3),
        latent=LatentSpec(steps=1, coupling=CouplingSpec(kind="affine", subnet="fcn", hidden=4), prior="atan"),
        features=FeatureSpec(kind="rrdb", nf=4, gc=2, nb=[1, 1], concat=False),
    )


def _flow(spec: HierarchySpec, seed: int):
    flow = build_hierarchy(spec)
    # Large random weights compound over levels (unbounded priors, 1x1 convs): keep them moderate.
    perturb_parameters(flow, seed=seed, scale=0.05)
    return flow.eval()


def _input(spec: HierarchySpec, size_mult: int, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = spec.scale * size_mult
    return torch.rand(batch, spec.in_channels, s, s, generator=g)


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 2))
def test_hierarchy_exact_and_logdet(float64, levels: int, seed: int, batch: int) -> None:
    spec = tiny_sr_spec(levels)
    flow = _flow(spec, seed)
    x = _input(spec, 1 if levels > 2 else 2, batch, seed)
    assert_invertible(flow, [x])
    assert_reverse_logdet_negates(flow, [x])
    assert_logdet_matches_autograd(flow, [x[:1]])


@pytest.mark.parametrize("levels", [1, 2])
@given(seed=st.integers(0, 2**16))
def test_rescaling_hierarchy_exact_and_logdet(float64, levels: int, seed: int) -> None:
    spec = tiny_rescaling_spec(levels)
    flow = _flow(spec, seed)
    x = _input(spec, 1, 2, seed)
    assert_invertible(flow, [x])
    assert_logdet_matches_autograd(flow, [x[:1]])


@pytest.mark.parametrize("scale", [2, 4, 8, 16])
def test_builder_makes_every_scale(scale: int) -> None:
    spec = tiny_sr_spec({2: 1, 4: 2, 8: 3, 16: 4}[scale], in_channels=3)
    model = HCFlowSR(spec)
    perturb_parameters(model, seed=scale, scale=0.05)
    model.eval()
    hr = torch.rand(2, 3, 2 * scale, 3 * scale)
    y, zs, logdet = model.encode(hr)
    assert y.shape == (2, 3, 2, 3) and logdet.shape == (2,)
    assert len(zs) == spec.levels
    assert sum(z[0].numel() for z in zs) + y[0].numel() == hr[0].numel()
    torch.testing.assert_close(model.decode(y, zs), hr, atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_with_a_generator() -> None:
    model = HCFlowSR(tiny_sr_spec(2, in_channels=3)).eval()
    perturb_parameters(model, seed=0)
    lr = torch.rand(2, 3, 4, 4)
    a = model.sample(lr, 0.8, generator=torch.Generator().manual_seed(1))
    b = model.sample(lr, 0.8, generator=torch.Generator().manual_seed(1))
    c = model.sample(lr, 0.8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert a.shape == (2, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    many = model.sample(lr, 0.8, n=3, generator=torch.Generator().manual_seed(1))
    assert many.shape == (3, 2, 3, 16, 16)
    t0 = model.sample(lr, 0.0)
    torch.testing.assert_close(t0, model.sample(lr, 0.0), rtol=0, atol=0)


def test_nll_is_finite_and_decreases() -> None:
    torch.manual_seed(0)
    model = HCFlowSR(tiny_sr_spec(2, in_channels=3), quant=64).train()
    hr = torch.rand(4, 3, 16, 16)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    noise = torch.rand_like(hr)
    losses = []
    for _ in range(8):
        loss = model.nll(hr, lr, noise=noise).nll.mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.encode(torch.rand(1, 3, 18, 16)), "not divisible by the scale 4"),
        (lambda m: m.encode(torch.rand(1, 4, 16, 16)), r"\(B, 3, H, W\)"),
        (lambda m: m.encode(torch.full((1, 3, 16, 16), float("nan"))), "NaN"),
        (
            lambda m: m.nll(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 5, 4)),
            "HR image must have shape .* for an LR image of shape",
        ),
        (lambda m: m.decode(torch.rand(1, 3, 4, 4), [torch.rand(1, 21, 4, 4)]), "expected a list of 2 latents"),
        (lambda m: m.decode(torch.rand(1, 3, 4, 4), [torch.rand(1, 21, 4, 4), torch.rand(1, 6, 4, 4)]), "latent 1"),
        (lambda m: m.sample(torch.rand(1, 3, 4, 4), temperature=float("nan")), "temperature"),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    model = HCFlowSR(tiny_sr_spec(2, in_channels=3)).eval()
    with pytest.raises(ValueError, match=message):
        call(model)


def test_spec_round_trips_through_yaml() -> None:
    for spec in (hcflow_sr_spec(4), hcflow_sr_spec(8), hcflow_rescaling_spec(2), tiny_sr_spec(3, steps=[1, 2, 1])):
        assert HierarchySpec.from_yaml(spec.to_yaml()) == spec
    with pytest.raises(ValueError, match="steps"):
        HierarchySpec(levels=2, steps=[1, 2, 3])


def test_checkpoint_round_trip(tmp_path) -> None:
    for model in (HCFlowSR(tiny_sr_spec(2, in_channels=3), quant=32), HCFlowRescaling(tiny_rescaling_spec(2))):
        perturb_parameters(model, seed=3)
        model.eval()
        path = save(model, tmp_path / f"{model.family}.safetensors")
        loaded = load(path)
        assert type(loaded) is type(model) and loaded.config() == model.config()
        x = torch.rand(1, 3, 8, 8)
        torch.testing.assert_close(loaded.encode(x)[0], model.encode(x)[0], rtol=0, atol=0)


def test_rescaling_downscale_upscale_shapes() -> None:
    model = HCFlowRescaling(tiny_rescaling_spec(2)).eval()
    perturb_parameters(model, seed=0)
    hr = torch.rand(2, 3, 16, 16)
    lr = model.downscale(hr)
    assert lr.shape == (2, 3, 4, 4)
    torch.testing.assert_close(lr, quantize(lr), rtol=0, atol=0)
    assert model.upscale(lr, temperature=0.5).shape == hr.shape


_KEYS_SCRIPT = (
    "from flowsr.models.hcflow import HCFlowSR, hcflow_sr_spec; print(list(HCFlowSR(hcflow_sr_spec(8)).state_dict()))"
)


def test_state_dict_keys_identical_across_processes() -> None:
    runs = [
        subprocess.run([sys.executable, "-c", _KEYS_SCRIPT], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0].count("levels.2.latent") > 0
