"""IRN-like rescaling: golden fixtures of the official IRN, official key sets and parameter counts,
properties of the model on tiny configurations, and clear errors on bad input.

Every ``irn*_golden.pt`` file in ``tests/fixtures/official`` is checked (more can be added with
``FLOWSR_EXTRA_GOLDEN``, a folder of fixtures made the same way); nothing here depends on the
particular sizes, seeds or ``block_num`` of the shipped file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from golden import RTOL, assert_close, assert_rel_close, golden_files, load_golden, official_fixtures
from hypothesis import given
from hypothesis import strategies as st

from flowsr.convert import load_official
from flowsr.convert.irn import OFFICIAL_OPTIONS, IRNConverter
from flowsr.layers.quantization import quantize
from flowsr.models.checkpoint import FAMILIES, load, save
from flowsr.models.irn import IRN, irn_losses, irn_spec
from flowsr.models.spec import LatentSpec
from flowsr.testing import (
    assert_invertible,
    assert_logdet_matches_autograd,
    assert_reverse_logdet_negates,
    perturb_parameters,
)

GOLDEN_FILES = golden_files("irn*_golden.pt")


def _train_weights(opt: dict, scale: int) -> dict[str, float]:
    train = opt.get("train") or {}
    return {
        "lambda_fit": float(train.get("lambda_fit_forw", scale**2)),
        "lambda_rec": float(train.get("lambda_rec_back", 1.0)),
        "lambda_ce": float(train.get("lambda_ce_forw", 1.0)),
    }


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_irn_golden(path: Path) -> None:
    g = load_golden(path)
    model = load_official(g["state_dict"], g["opt"])
    assert isinstance(model, IRN)
    hr = g["hr"]
    with torch.no_grad():
        # forward: cat(y, z), per-sample log-det (its batch mean is the official value)
        y, zs, logdet = model.encode(hr)
        assert len(zs) == 1
        assert_close(torch.cat([y, zs[0]], 1), g["fwd_out"], "fwd_out")
        assert_rel_close(logdet, g["fwd_logdet_per_sample"], "fwd_logdet_per_sample")
        if "fwd_jacobian_official" in g:
            official = g["fwd_jacobian_official"]
            assert_rel_close(logdet.double().mean(), official, "official forward log-det (batch mean)")
        if "fwd_trace" in g:  # one entry per official operation = flowsr's body modules in level order
            ops = [m for level in model.flow.levels for m in level.body.module_list]
            assert len(ops) == len(g["fwd_trace"])
            h = hr
            for op, (name, expected) in zip(ops, g["fwd_trace"]):
                (h,), _ = op([h])
                assert_close(h, expected, f"fwd_trace {name}", rtol=RTOL)

        # 8-bit LR: equal up to a rounding flip of one 1/255 step
        lr_q = model.downscale(hr)
        assert_close(lr_q, g["fwd_lr_quant"], "fwd_lr_quant", atol=1 / 255 + 1e-6)
        exact_quant = torch.equal(lr_q, g["fwd_lr_quant"])

        # reverse from the stored inputs
        c = model.spec.out_channels
        rev_y, rev_z = g["rev_in"][:, :c], g["rev_in"][:, c:]
        assert_close(model.decode(rev_y, [rev_z]), g["rev_out"], "rev_out", atol=1e-4, rtol=1e-5)
        up = model.upscale(rev_y, zs=[rev_z], clamp=False)
        assert_close(up, g["rev_out"], "upscale(zs=[rev_z])", atol=1e-4, rtol=1e-5)
        (_,), rev_logdet = model.flow([rev_y, rev_z], rev=True)
        if "rev_jacobian_official" in g:
            official = g["rev_jacobian_official"]
            assert_rel_close(rev_logdet.double().mean(), official, "official reverse log-det (batch mean)")
        zero = torch.zeros_like(rev_z)
        assert_close(model.decode(g["fwd_lr_quant"], [zero]), g["rev_zero_out"], "rev_zero_out", atol=1e-4, rtol=1e-5)
        assert_close(
            model.upscale(g["fwd_lr_quant"], temperature=0.0, clamp=False),
            g["rev_zero_out"],
            "upscale(T=0)",
            atol=1e-4,
            rtol=1e-5,
        )
        assert_close(model.decode(g["fwd_out"][:, :c], [g["fwd_out"][:, c:]]), g["rev_of_fwd_out"], "rev_of_fwd_out")
        assert_close(model.decode(g["fwd_out"][:, :c], [g["fwd_out"][:, c:]]), hr, "rev_of_fwd_out vs hr", atol=1e-4)
        if "rev_quant_truez_out" in g:
            assert_close(
                model.decode(g["fwd_lr_quant"], [g["fwd_out"][:, c:]]),
                g["rev_quant_truez_out"],
                "rev_quant_truez_out",
                atol=1e-4,
                rtol=1e-5,
            )

        # the three official training losses with the explicit Gaussian sample train_z
        weights = _train_weights(g["opt"], model.scale)
        losses = irn_losses(model, hr, g["lr_ref"], [g["train_z"]], **weights)
        assert_rel_close(losses.l_forw_fit, g["loss_forw_fit"], "loss_forw_fit")
        assert_rel_close(losses.l_forw_ce, g["loss_forw_ce"], "loss_forw_ce")
        if exact_quant:
            assert_rel_close(losses.l_back_rec, g["loss_back_rec"], "loss_back_rec")
        else:  # a rounding flip in our 8-bit LR: evaluate the official definition on the official LR
            x_hat = model.decode(g["fwd_lr_quant"], [g["train_z"]])
            rec = weights["lambda_rec"] * torch.sqrt((hr - x_hat) ** 2 + 1e-6).sum((1, 2, 3)).mean()
            assert_rel_close(rec, g["loss_back_rec"], "loss_back_rec (from the official 8-bit LR)")


# --------------------------------------------------------------------------------------------
# official configurations
# --------------------------------------------------------------------------------------------

OFFICIAL_PARAMS = {"IRN_x2": 1_668_000, "IRN_x4": 4_355_376, "IRN_x8": 11_120_256}
OFFICIAL_KEYS = {"IRN_x2": 241, "IRN_x4": 482, "IRN_x8": 723}


@pytest.mark.parametrize("name", sorted(OFFICIAL_OPTIONS))
def test_official_configs_keys_and_parameter_counts(name: str) -> None:
    opt = OFFICIAL_OPTIONS[name]
    scale = opt["scale"]
    assert IRNConverter.spec_from_opt(opt) == irn_spec(scale), "preset differs from the official options"
    model = IRNConverter.model_from_opt(opt)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == OFFICIAL_PARAMS[name] - 48 * sum(
        4**l for l in range(int(math.log2(scale)))
    ), "only the Haar weights are fixed"
    path = official_fixtures() / f"official_keys_irn_x{scale}.json"
    keys = json.loads(path.read_text())
    assert len(keys) == OFFICIAL_KEYS[name]
    mapping = IRNConverter.key_map(model, [k for k, _ in keys])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(mapping.values()) == sorted(ours), "official and flowsr keys are not in one-to-one correspondence"
    for key, shape in keys:
        assert ours[mapping[key]] == tuple(shape), f"{key}: shape {shape} vs flowsr {ours[mapping[key]]}"
    # load_official consumes a full official state dict (with a DataParallel prefix)
    state = {f"module.{k}": torch.full(tuple(s), 0.5) for k, s in keys}
    loaded = load_official(state, opt)
    assert all(bool((v == 0.5).all()) for v in loaded.state_dict().values())


def _small_official_state(scale: int = 4, blocks=(1, 1), gc: int = 2) -> tuple[dict, dict]:
    opt = {
        "scale": scale,
        "network_G": {
            "which_model_G": {"subnet_type": "DBNet"},
            "in_nc": 3,
            "out_nc": 3,
            "block_num": list(blocks),
            "scale": scale,
            "gc": gc,
        },
    }
    model = IRNConverter.model_from_opt(opt)
    inverse = {v: k for k, v in IRNConverter.key_map(model, _official_keys(opt)).items()}
    return opt, {inverse[k]: v.clone() for k, v in model.state_dict().items()}


def _official_keys(opt: dict) -> list[str]:
    keys, i = [], 0
    for n in opt["network_G"]["block_num"]:
        keys.append(f"operations.{i}.haar_weights")
        for b in range(1, n + 1):
            keys += [
                f"operations.{i + b}.{s}.conv{k}.{p}" for s in "FGH" for k in range(1, 6) for p in ("weight", "bias")
            ]
        i += n + 1
    return keys


def test_load_official_fails_clearly() -> None:
    opt, state = _small_official_state()
    assert isinstance(load_official(state, opt), IRN)
    missing = dict(state)
    del missing["operations.3.G.conv2.bias"]
    with pytest.raises(ValueError, match="missing 1 key"):
        load_official(missing, opt)
    extra = {**state, "operations.2.F.conv1.weight": state["operations.1.F.conv1.weight"]}
    with pytest.raises(ValueError, match=r"unexpected key.*operations\.2\.F"):
        load_official(extra, opt)
    with pytest.raises(ValueError, match=r"unexpected key.*haar_weights"):
        load_official({**state, "operations.1.haar_weights": state["operations.0.haar_weights"]}, opt)
    bad = {**state, "operations.1.H.conv5.weight": torch.zeros(1, 1, 3, 3)}
    with pytest.raises(ValueError, match=r"operations\.1\.H\.conv5\.weight.*shape"):
        load_official(bad, opt)
    with pytest.raises(ValueError, match="DBNet"):
        resnet = {**opt["network_G"], "which_model_G": {"subnet_type": "Resnet"}}
        IRNConverter.model_from_opt({**opt, "network_G": resnet})
    with pytest.raises(ValueError, match="block_num"):
        IRNConverter.model_from_opt({**opt, "network_G": {**opt["network_G"], "block_num": [1, 1, 1]}})
    with pytest.raises(ValueError, match="differs"):
        IRNConverter.model_from_opt({**opt, "scale": 2})


# --------------------------------------------------------------------------------------------
# properties on tiny configurations (float64)
# --------------------------------------------------------------------------------------------


def tiny_irn(levels: int, blocks, gc: int = 3, in_channels: int = 3, seed: int = 0, scale: float = 0.1) -> IRN:
    spec = irn_spec(2**levels, block_num=blocks, gc=gc, in_channels=in_channels, out_channels=in_channels)
    model = IRN(spec)
    # IRN's conv5 starts at zero (identity blocks): perturb so the couplings do something.
    perturb_parameters(model, seed=seed, scale=scale)
    return model.eval()


@pytest.mark.parametrize("levels", [1, 2, 3])
@given(
    seed=st.integers(0, 2**16), batch=st.integers(1, 2), blocks=st.integers(1, 2), in_channels=st.sampled_from([1, 3])
)
def test_irn_exact_inverse_and_logdet(
    float64, levels: int, seed: int, batch: int, blocks: int, in_channels: int
) -> None:
    model = tiny_irn(levels, blocks, in_channels=in_channels, seed=seed)
    s = model.scale
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(batch, in_channels, s * (1 + seed % 2), s * 2, generator=g)
    assert_invertible(model.flow, [hr])
    assert_reverse_logdet_negates(model.flow, [hr])
    assert_logdet_matches_autograd(model.flow, [hr[:1]])
    y, zs, logdet = model.encode(hr)
    assert y.shape == (batch, in_channels, hr.shape[2] // s, hr.shape[3] // s)
    expected = [(batch, in_channels * (4**levels - 1), *y.shape[2:])]
    assert [zs[0].shape] == model.latent_shapes(y.shape[2:], batch) == expected
    torch.testing.assert_close(model.decode(y, zs), hr, rtol=1e-10, atol=1e-10)
    # log-det = sum of coupling log-scales + the Haar terms (C H W / 4) ln(1/16) per level
    haar = sum(
        in_channels * 4**l * (hr.shape[2] >> l) * (hr.shape[3] >> l) / 4 * math.log(1 / 16) for l in range(levels)
    )
    unperturbed = IRN(model.spec)  # identity blocks: only the Haar terms remain
    _, _, ld0 = unperturbed.encode(hr)
    torch.testing.assert_close(ld0, torch.full((batch,), haar), rtol=1e-12, atol=1e-9)


def test_irn_blocks_at_init_are_identity(float64) -> None:
    """IRN init: DenseBlock conv5 zero, conv1-4 xavier_normal * 0.1, zero biases -> every block is the identity."""
    model = IRN(irn_spec(4, block_num=2, gc=4))
    for level in model.flow.levels:
        for step in list(level.body.module_list)[1:]:
            for net in (step.coupling.phi, step.coupling.eta, step.coupling.rho):
                assert not net.conv5.weight.any() and not net.conv5.bias.any()
                for conv in (net.conv1, net.conv2, net.conv3, net.conv4):
                    assert conv.weight.any() and not conv.bias.any()
                    fan_in, fan_out = conv.weight[0].numel(), conv.weight.shape[0] * conv.weight[0, 0].numel()
                    expected = 0.1 * math.sqrt(2 / (fan_in + fan_out))  # xavier_normal_ std * 0.1
                    assert 0.5 * expected < conv.weight.std().item() < 1.5 * expected
    hr = torch.rand(2, 3, 8, 12)
    y, zs, _ = model.encode(hr)
    haar = torch.nn.functional.avg_pool2d(torch.nn.functional.avg_pool2d(hr, 2), 2)
    torch.testing.assert_close(y, haar, rtol=1e-12, atol=1e-12)


def test_irn_generic_block_num_and_sizes() -> None:
    model = tiny_irn(3, [1, 2, 1], gc=2, seed=5, scale=0.05)
    assert model.spec.level_steps() == [1, 2, 1]
    hr = torch.rand(1, 3, 16, 24)
    y, zs, _ = model.encode(hr)
    assert y.shape == (1, 3, 2, 3) and zs[0].shape == (1, 189, 2, 3)
    torch.testing.assert_close(model.decode(y, zs), hr, atol=1e-5, rtol=1e-5)


def test_upscale_is_seeded_and_clamped() -> None:
    model = tiny_irn(2, 1, seed=1)
    lr = model.downscale(torch.rand(2, 3, 16, 16))
    assert lr.shape == (2, 3, 4, 4)
    torch.testing.assert_close(lr, quantize(lr), rtol=0, atol=0)
    a = model.upscale(lr, generator=torch.Generator().manual_seed(1))
    b = model.upscale(lr, generator=torch.Generator().manual_seed(1))
    c = model.upscale(lr, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert a.shape == (2, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    # z ~ N(0, T^2 I): temperature scales the same draw; T = 0 is the zero latent
    (z,) = model.sample_latents(lr, 0.5, torch.Generator().manual_seed(3))
    (z1,) = model.sample_latents(lr, 1.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, 0.5 * z1)
    raw = model.upscale(lr, temperature=0.5, generator=torch.Generator().manual_seed(3), clamp=False)
    torch.testing.assert_close(raw, model.decode(lr, [z]))
    zero = model.decode(lr, [torch.zeros_like(z)])
    torch.testing.assert_close(model.upscale(lr, temperature=0.0, clamp=False), zero)
    torch.testing.assert_close(model.upscale(lr, zs=[z]), raw.clamp(0, 1))
    # unquantised downscale: the raw LR clamped to [0, 1]
    hr = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(model.downscale(hr, quantize_8bit=False), model.encode(hr)[0].clamp(0, 1))


def test_losses_definitions_and_gradients() -> None:
    torch.manual_seed(0)
    model = tiny_irn(2, 1, gc=4, seed=2, scale=0.05).train()
    hr = torch.rand(3, 3, 16, 16)
    lr_ref = torch.nn.functional.avg_pool2d(hr, 4)
    z = torch.randn(3, 45, 4, 4)
    out = irn_losses(model, hr, lr_ref, [z], lambda_ce=0.5, lambda_rec=2.0)
    y, (z_f,), _ = model.encode(hr)
    torch.testing.assert_close(out.l_forw_fit, 16 * ((y - lr_ref) ** 2).sum((1, 2, 3)).mean())  # default scale^2
    torch.testing.assert_close(out.l_forw_ce, 0.5 * (z_f**2).sum() / 3)
    x_hat = model.decode(quantize(y), [z])
    torch.testing.assert_close(out.l_back_rec, 2.0 * torch.sqrt((hr - x_hat) ** 2 + 1e-6).sum((1, 2, 3)).mean())
    torch.testing.assert_close(out.total, out.l_forw_fit + out.l_forw_ce + out.l_back_rec)
    # gradients reach every trainable parameter (the rec loss through the straight-through quantiser)
    out.l_back_rec.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # sampled z is reproducible with a generator, and a few Adam steps reduce the loss
    a = irn_losses(model, hr, lr_ref, generator=torch.Generator().manual_seed(0)).total
    b = irn_losses(model, hr, lr_ref, generator=torch.Generator().manual_seed(0)).total
    assert a.item() == b.item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(10):
        loss = irn_losses(model, hr, lr_ref, [z]).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < history[0]


def test_checkpoint_round_trip(tmp_path) -> None:
    assert FAMILIES["irn"] is IRN
    model = tiny_irn(2, [1, 2], gc=2, seed=4)
    loaded = load(save(model, tmp_path / "irn.safetensors"))
    assert type(loaded) is IRN and loaded.config() == model.config() and loaded.spec == model.spec
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded.encode(x)[1][0], model.encode(x)[1][0], rtol=0, atol=0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.encode(torch.rand(1, 3, 18, 16)), "not divisible by the scale 4"),
        (lambda m: m.encode(torch.rand(1, 3, 16, 16, dtype=torch.float64)), "float64 .* model is torch.float32"),
        (lambda m: m.encode(torch.rand(1, 3, 0, 16)), "empty"),
        (lambda m: m.encode(torch.rand(1, 4, 16, 16)), r"HR image must have shape \(B, 3, H, W\)"),
        (lambda m: m.encode(torch.rand(3, 16, 16)), r"\(B, 3, H, W\)"),
        (lambda m: m.encode(torch.full((1, 3, 16, 16), float("nan"))), "NaN"),
        (lambda m: m.downscale(torch.full((1, 3, 16, 16), float("inf"))), "NaN or Inf"),
        (
            lambda m: m.decode(torch.rand(1, 3, 4, 4), [torch.rand(1, 44, 4, 4)]),
            r"latent 0 \(deepest first\) must have shape \(1, 45, 4, 4\)",
        ),
        (lambda m: m.decode(torch.rand(1, 3, 4, 4), [torch.rand(2, 45, 4, 4)]), "latent 0 .* must have shape"),
        (lambda m: m.decode(torch.rand(1, 3, 4, 4), [torch.rand(1, 45, 4, 4)] * 2), "expected a list of 1 latent"),
        (lambda m: m.decode(torch.rand(1, 3, 4, 4), None), "expected a list of 1 latent"),
        (lambda m: m.decode(torch.rand(1, 3, 4, 4), torch.rand(1, 45, 4, 4)), "expected a list of 1 latent"),
        (lambda m: m.decode(torch.rand(1, 3, 4, 4), [torch.full((1, 45, 4, 4), float("nan"))]), "NaN"),
        (lambda m: m.upscale(torch.rand(1, 3, 4, 4), zs=[torch.rand(1, 45, 4, 5)]), "latent 0 .* must have shape"),
        (lambda m: m.upscale(torch.rand(1, 3, 4, 4), generator="seed"), "generator must be a torch.Generator"),
        (lambda m: m.upscale(torch.rand(1, 1, 4, 4)), r"LR image must have shape \(B, 3, H, W\)"),
        (lambda m: m.upscale(torch.rand(1, 3, 4, 4), temperature=float("nan")), "temperature"),
        (lambda m: m.upscale(torch.rand(1, 3, 4, 4), temperature=-1.0), "temperature"),
        (lambda m: irn_losses(m, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 4, 5)), "reference LR must have shape"),
        (
            lambda m: irn_losses(m, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 4, 4), [torch.rand(1, 9, 4, 4)]),
            "latent 0",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    model = tiny_irn(2, 1)
    with pytest.raises(ValueError, match=message):
        call(model)


def test_bad_specs_raise() -> None:
    with pytest.raises(ValueError, match="power of two"):
        irn_spec(3)
    with pytest.raises(ValueError, match="block_num"):
        irn_spec(4, block_num=[8])
    spec = irn_spec(4)
    with pytest.raises(ValueError, match="split only at its last level"):
        IRN(type(spec)(**{**spec.__dict__, "keep": [6, None]}))
    with pytest.raises(ValueError, match="no learned prior"):
        IRN(type(spec)(**{**spec.__dict__, "latent": LatentSpec(steps=0, prior="exp")}))


# -- the documented example stays in sync with docs/examples and keeps running ---------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_example_is_in_sync_and_runs() -> None:
    example = DOCS / "examples" / "irn_example.py"
    section = (DOCS / "irn.md").read_text().split("## Example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == example.read_text().rstrip() + "\n", "docs/irn.md example differs from docs/examples"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "IRN x4 4,355,376 parameters" in result.stdout and "reloaded IRN same LR: True" in result.stdout
