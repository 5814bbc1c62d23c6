"""SRFlow: golden fixtures of the official network, official key lists and parameter counts,
property tests of tiny configurations, clear errors.

Every ``srflow*_golden.pt`` file in ``tests/fixtures/official`` is checked (more can be added
with ``FLOWSR_EXTRA_GOLDEN``, a folder of fixtures made the same way); nothing here depends on
the particular sizes, seeds or reduced configuration of the shipped file. The official latent
lists are in forward order (HR-side split first, final ``z`` last); flowsr's are deepest first,
so they are compared reversed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from golden import assert_close, assert_rel_close, golden_files, official_fixtures
from hypothesis import given
from hypothesis import strategies as st

from flowsr.convert import load_official
from flowsr.convert.srflow import OFFICIAL_OPTIONS, SRFlowConverter
from flowsr.models.checkpoint import load, save
from flowsr.models.encoders import RRDBEncoder, feature_name
from flowsr.models.hcflow import standard_normal_logp
from flowsr.models.srflow import SRFlow, SRFlowSpec, make_srflow_spec, srflow_spec
from flowsr.testing import (
    assert_invertible,
    assert_logdet_matches_autograd,
    assert_reverse_logdet_negates,
    perturb_parameters,
)

GOLDEN_FILES = golden_files("srflow*_golden.pt")


def _split_logp(zs: list[torch.Tensor]) -> torch.Tensor:
    """Official running log-det = flowsr log-det + the N(0, I) log-density of the split latents."""
    return sum((standard_normal_logp(z) for z in zs[1:]), torch.zeros(zs[0].shape[0]))


# -- golden fixtures --------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_srflow_golden(path: Path) -> None:
    g = torch.load(path, map_location="cpu", weights_only=True)
    model = load_official(g["state_dict"], g["opt"])
    assert isinstance(model, SRFlow) and not model.training
    hr, lr = g["hr"], g["lr"]
    H, W = hr.shape[2:]
    with torch.no_grad():
        # encoder
        names = model.feature_names()
        for level, name in g.get("level_to_feature", {}).items():
            assert names[int(level) - 1] == name, f"level {level}: flowsr uses {names[int(level) - 1]}, official {name}"
        feats = model.encoder.features(lr, sr_image="rrdb_out" in g)
        for name, expected in {**g["rrdb_features"], **g.get("rrdb_blocks", {})}.items():
            assert_close(feats[name], expected, f"encoder {name}")
        if "rrdb_out" in g:
            assert_close(feats["sr"], g["rrdb_out"], "encoder SR image (unused by the flow)")

        # forward without dequantisation (the official default)
        _, zs, logdet = model.encode(hr, lr)
        expected = list(reversed(g["fwd_latents"]))
        assert len(zs) == len(expected)
        for i, (z, e) in enumerate(zip(zs, expected)):
            assert_close(z, e, f"latent {i} (deepest first)")
        assert_rel_close(logdet + _split_logp(zs), g["fwd_logdet"], "fwd_logdet")
        assert_rel_close(model.nll(hr, lr).nll, g["fwd_nll"], "fwd_nll")

        # forward with the official dequantisation hr + (u - 1/2) / quant, -ln(quant) H W
        assert model.quant == int(g["quant"])
        noise = g["dequant_noise"]
        _, zs_n, logdet_n = model.encode(hr + noise / g["quant"], lr)
        for i, (z, e) in enumerate(zip(zs_n, reversed(g["fwd_noise_latents"]))):
            assert_close(z, e, f"dequantised latent {i}")
        start = -math.log(float(g["quant"])) * H * W
        assert_rel_close(start + logdet_n + _split_logp(zs_n), g["fwd_noise_logdet"], "fwd_noise_logdet")
        out = model.nll(hr, lr, noise=noise)
        assert_rel_close(out.nll, g["fwd_noise_nll"], "fwd_noise_nll")

        # reverse
        rev = list(reversed(g["rev_latents"]))
        assert_close(model.decode(lr, rev), g["rev_sr"], "rev_sr")
        x, rev_logdet = model.flow.decode(rev[0], rev[1:], c=model.conditions(lr))
        assert_close(x, g["rev_sr"], "rev_sr (flow)")
        assert_rel_close(rev_logdet - _split_logp(rev), g["rev_logdet"], "rev_logdet")
        zeros = [torch.zeros_like(z) for z in rev]
        assert_close(model.decode(lr, zeros), g["rev_zero_sr"], "rev_zero_sr")
        _, rev_zero_logdet = model.flow.decode(zeros[0], zeros[1:], c=model.conditions(lr))
        assert_rel_close(rev_zero_logdet - _split_logp(zeros), g["rev_zero_logdet"], "rev_zero_logdet")
        assert_close(model.decode(lr, expected), g["rev_of_fwd_sr"], "rev_of_fwd_sr")


# -- official configurations --------------------------------------------------------------------

OFFICIAL_PARAMS = {"DF2K_4X": 39_541_811, "CelebA_8X": 40_030_531, "DF2K_8X": 50_821_891}
KEY_FILES = {
    "DF2K_4X": "official_keys_srflow_x4.json",
    "CelebA_8X": "official_keys_srflow_x8.json",
    "DF2K_8X": "official_keys_srflow_x8_df2k.json",
}


def _official_keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    path = official_fixtures() / KEY_FILES[name]
    return [(k, tuple(s)) for k, s in json.loads(path.read_text())]


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_official_configs_keys_and_parameter_counts(name: str) -> None:
    opt = OFFICIAL_OPTIONS[name]
    assert SRFlowConverter.spec_from_opt(opt) == srflow_spec(name), "preset differs from the official options"
    model = SRFlowConverter.model_from_opt(opt)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]
    assert sum(p.numel() for p in SRFlow(srflow_spec(name)).parameters()) == OFFICIAL_PARAMS[name]
    keys = _official_keys(name)
    mapping = SRFlowConverter.key_map(model, [k for k, _ in keys])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(mapping.values()) == sorted(ours), "official and flowsr keys are not in one-to-one correspondence"
    for key, shape in keys:
        assert ours[mapping[key]] == shape, f"{key}: shape {shape} vs flowsr {ours[mapping[key]]}"
    # load_official consumes every key exactly once (with a DataParallel prefix, too)
    state = {f"module.{k}": torch.full(s, 0.01) for k, s in keys}
    loaded = load_official(state, opt)
    assert all(bool((p == 0.01).all()) for p in loaded.parameters())


def test_load_official_fails_clearly() -> None:
    opt = OFFICIAL_OPTIONS["DF2K_4X"]
    keys = _official_keys("DF2K_4X")
    state = {k: torch.zeros(s) for k, s in keys}
    with pytest.raises(ValueError, match="unexpected key.*layers.999"):
        load_official({**state, "flowUpsamplerNet.layers.999.actnorm.bias": torch.zeros(1)}, opt)
    with pytest.raises(ValueError, match="layers.1.affine.*no counterpart"):  # plain step, no coupling
        load_official({**state, "flowUpsamplerNet.layers.1.affine.fAffine.0.weight": torch.zeros(1)}, opt)
    with pytest.raises(ValueError, match="unexpected key.*RRDB_trunk.23"):
        load_official({**state, "RRDB.RRDB_trunk.23.RDB1.conv1.weight": torch.zeros(1)}, opt)
    missing = dict(state)
    del missing["flowUpsamplerNet.layers.19.conv.logs"]
    with pytest.raises(ValueError, match="missing 1 key"):
        load_official(missing, opt)
    wrong = dict(state)
    wrong["flowUpsamplerNet.layers.3.invconv.weight"] = torch.zeros(13, 13)
    with pytest.raises(ValueError, match=r"layers.3.invconv.weight.*shape \(13, 13\)"):
        load_official(wrong, opt)
    # the x8 key list does not fit the x4 options
    with pytest.raises(ValueError):
        load_official({k: torch.zeros(s) for k, s in _official_keys("CelebA_8X")}, opt)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda o: o["network_G"]["flow"].update(coupling="Affine"), "coupling"),
        (lambda o: o["network_G"]["flow"]["split"].update(conditional=True), "split.conditional"),
        (lambda o: o["network_G"]["flow"]["split"].update(correct_splits=True), "correct_splits"),
        (lambda o: o["network_G"]["flow"].update(fea_up0=False), "fea_up0"),
        (lambda o: o["network_G"]["flow"]["stackRRDB"].update(concat=False), "concat"),
        (lambda o: o["network_G"]["flow"].update(L=4), "scale 4 does not match L=4"),
        (lambda o: o["network_G"]["flow"].pop("split"), "split"),
        (lambda o: o["network_G"].pop("flow"), "network_G.flow"),
    ],
)
def test_unsupported_official_options(edit, message: str) -> None:
    opt = json.loads(json.dumps(OFFICIAL_OPTIONS["DF2K_4X"]))
    edit(opt)
    with pytest.raises(ValueError, match=message):
        SRFlowConverter.spec_from_opt(opt)


# -- tiny configurations --------------------------------------------------------------------------


def tiny_spec(scale: int, in_channels: int = 3, **kw) -> SRFlowSpec:
    args = {"K": 1, "extra_steps": 1, "hidden": 4, "nf": 2, "nb": 2, "gc": 2, "blocks": [0, 1]}
    args.update(kw)
    return make_srflow_spec(scale, in_channels=in_channels, unused_conv_channels=4, **args)


def _model(spec: SRFlowSpec, seed: int = 0) -> SRFlow:
    model = SRFlow(spec)
    # Moderate random weights: every coupling, injector and prior is far from its initial state.
    perturb_parameters(model, seed=seed, scale=0.05)
    return model.eval()


def _pair(model: SRFlow, lr_size=(2, 2), batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = model.spec.flow.in_channels
    lr = torch.rand(batch, c, *lr_size, generator=g)
    hr = torch.rand(batch, c, lr_size[0] * model.scale, lr_size[1] * model.scale, generator=g)
    return hr, lr


@pytest.mark.parametrize("scale, in_channels", [(2, 3), (4, 3), (8, 1)])
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 2))
def test_flow_with_conditions_exact_and_logdet(float64, scale: int, in_channels: int, seed: int, batch: int) -> None:
    model = _model(tiny_spec(scale, in_channels), seed)
    hr, lr = _pair(model, batch=batch, seed=seed)
    cond = model.conditions(lr)
    assert [tuple(c.shape[2:]) for c in cond] == [
        (hr.shape[2] >> (l + 1), hr.shape[3] >> (l + 1)) for l in range(model.levels)
    ]
    assert_invertible(model.flow, [hr], cond)
    assert_reverse_logdet_negates(model.flow, [hr], cond)
    assert_logdet_matches_autograd(model.flow, [hr[:1]], [c[:1] for c in cond])


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_model_round_trip_and_shapes(float64, scale: int) -> None:
    model = _model(tiny_spec(scale, K=[1, 2, 1, 2][: int(math.log2(scale)) + 1]), seed=scale)
    hr, lr = _pair(model, lr_size=(2, 4))
    _, zs, logdet = model.encode(hr, lr)
    assert [tuple(z.shape) for z in zs] == model.latent_shapes(lr.shape[2:], 2)
    assert sum(z[0].numel() for z in zs) == hr[0].numel()
    L = model.levels
    assert zs[0].shape == (2, 3 * 4**L // 2 ** max(L - 2, 0), hr.shape[2] >> L, hr.shape[3] >> L)
    assert len(zs) == 1 + max(L - 2, 0) and logdet.shape == (2,)
    torch.testing.assert_close(model.decode(lr, zs), hr, atol=1e-10, rtol=1e-10)
    out = model.nll(hr, lr)
    expected = -(logdet + sum(standard_normal_logp(z) for z in zs)) / (math.log(2) * hr.shape[2] * hr.shape[3])
    torch.testing.assert_close(out.nll, expected)
    torch.testing.assert_close(out.bits_per_dim, expected / 3)


def test_no_split_and_split_levels() -> None:
    with_split = tiny_spec(8)
    assert [k for k in with_split.flow.keep] == [None, None, 0, 0]
    assert with_split.flow.kept_channels() == [6, 12, 48, 192]
    no_split = tiny_spec(8, split=False)
    model = _model(no_split)
    hr, lr = _pair(model)
    _, zs, _ = model.encode(hr, lr)
    assert len(zs) == 1 and zs[0].shape == (2, 3 * 4**4, 1, 1)


def test_encoder_features() -> None:
    torch.manual_seed(0)
    enc = RRDBEncoder(nf=4, nb=3, gc=2, blocks=[0, 2], scale=8).eval()
    lr = torch.rand(2, 3, 6, 10)
    with torch.no_grad():
        f = enc.features(lr, sr_image=True)
    assert set(f) == {"fea_up0", "fea_up1", "fea_up2", "fea_up4", "block_0", "block_2", "sr"}
    assert f["sr"].shape == (2, 3, 48, 80)
    for k, size in {"fea_up0": (3, 5), "fea_up1": (6, 10), "fea_up2": (12, 20), "fea_up4": (24, 40)}.items():
        assert f[k].shape == (2, 12, *size)
    stacked = torch.cat([f["block_0"], f["block_2"]], 1)
    torch.testing.assert_close(f["fea_up1"][:, 4:], stacked, rtol=0, atol=0)
    # fea_up0: bilinear 1/2 = 2x2 mean for even sizes; stacked blocks nearest-sampled (top-left)
    torch.testing.assert_close(f["fea_up0"][:, :4], F.avg_pool2d(f["fea_up1"][:, :4], 2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(f["fea_up0"][:, 4:], stacked[:, :, 0::2, 0::2], rtol=0, atol=0)
    torch.testing.assert_close(f["fea_up2"][:, 4:], stacked.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert [feature_name(l, 4) for l in range(4)] == ["fea_up4", "fea_up2", "fea_up1", "fea_up0"]
    assert [t.shape[2] for t in enc(lr)] == [24, 12, 6, 3]


def test_sampling_is_reproducible_with_a_generator() -> None:
    model = _model(tiny_spec(4))
    _, lr = _pair(model)
    a = model.sample(lr, 0.9, generator=torch.Generator().manual_seed(1))
    b = model.sample(lr, 0.9, generator=torch.Generator().manual_seed(1))
    c = model.sample(lr, 0.9, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert a.shape == (2, 3, 8, 8) and a.min() >= 0 and a.max() <= 1
    many = model.sample(lr, 0.9, n=3, generator=torch.Generator().manual_seed(1))
    assert many.shape == (3, 2, 3, 8, 8)
    zeros = [torch.zeros(s) for s in model.latent_shapes(lr.shape[2:], 2)]
    torch.testing.assert_close(model.sample(lr, 0.0), model.decode(lr, zeros).clamp(0, 1), rtol=0, atol=0)
    # the same latents, drawn explicitly, give the same sample
    zs = model.sample_latents(lr, 0.9, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.decode(lr, zs).clamp(0, 1), a, rtol=0, atol=0)


def test_dequantised_nll() -> None:
    model = _model(tiny_spec(4))
    hr, lr = _pair(model)
    noise = torch.rand(hr.shape, generator=torch.Generator().manual_seed(3)) - 0.5
    out = model.nll(hr, lr, noise=noise)
    _, zs, logdet = model.encode(hr + noise / model.quant, lr)
    H, W = hr.shape[2:]
    total = -math.log(model.quant) * H * W + logdet + sum(standard_normal_logp(z) for z in zs)
    torch.testing.assert_close(out.logdet, total)
    torch.testing.assert_close(out.nll, -total / (math.log(2) * H * W))
    assert torch.equal(out.logp_lr, torch.zeros(2)) and out.lr is lr
    a = model.nll(hr, lr, generator=torch.Generator().manual_seed(5), dequantize_hr=True)
    b = model.nll(hr, lr, generator=torch.Generator().manual_seed(5), dequantize_hr=True)
    torch.testing.assert_close(a.nll, b.nll, rtol=0, atol=0)
    assert not torch.equal(a.nll, model.nll(hr, lr).nll)


def test_nll_trains() -> None:
    torch.manual_seed(0)
    model = SRFlow(tiny_spec(4)).train()  # ActNorms initialise from the first batch
    hr = torch.rand(4, 3, 16, 16)
    lr = F.avg_pool2d(hr, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = model.nll(hr, lr).nll.mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.unused_conv.weight.grad is None  # never called


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: m.encode(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 2, 4)),
            r"HR image must have shape \(1, 3, 8, 16\)",
        ),
        (lambda m: m.encode(torch.rand(1, 3, 12, 12), torch.rand(1, 3, 3, 3)), "LR image size .* must be even"),
        (lambda m: m.sample(torch.rand(1, 3, 3, 2)), "must be even"),
        (
            lambda m: m.encode(torch.rand(1, 4, 8, 8), torch.rand(1, 3, 2, 2)),
            r"HR image must have shape \(B, 3, H, W\)",
        ),
        (lambda m: m.encode(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 2, 2)), r"LR image must have shape \(B, 3"),
        (lambda m: m.encode(torch.rand(2, 3, 8, 8), torch.rand(1, 3, 2, 2)), "HR image must have shape"),
        (lambda m: m.encode(torch.full((1, 3, 8, 8), float("nan")), torch.rand(1, 3, 2, 2)), "NaN"),
        (lambda m: m.decode(torch.full((1, 3, 2, 2), float("inf")), []), "NaN or Inf"),
        (lambda m: m.decode(torch.rand(1, 3, 2, 2), [torch.rand(1, 96, 1, 1)]), "expected a list of 2 latents"),
        (lambda m: m.decode(torch.rand(1, 3, 2, 2), torch.rand(1, 96, 1, 1)), "a list of 2 latents"),
        (
            lambda m: m.decode(torch.rand(1, 3, 2, 2), [torch.rand(1, 96, 1, 1), torch.rand(1, 6, 2, 2)]),
            r"latent 1 \(deepest first\) must have shape \(1, 6, 4, 4\)",
        ),
        (lambda m: m.sample(torch.rand(1, 3, 2, 2), temperature=float("nan")), "temperature"),
        (lambda m: m.sample(torch.rand(1, 3, 2, 2), n=0), "n must be"),
        (lambda m: m.nll(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 2, 2), noise=torch.rand(1, 3, 4, 4)), "noise"),
        (
            lambda m: m.nll(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 2, 2), generator=torch.Generator()),
            "dequantize_hr",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    model = SRFlow(tiny_spec(4)).eval()
    with pytest.raises(ValueError, match=message):
        call(model)


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match="power of two"):
        make_srflow_spec(6)
    with pytest.raises(ValueError, match="outside the trunk"):
        make_srflow_spec(4, nb=3, blocks=[1, 3])
    spec = tiny_spec(4)
    with pytest.raises(ValueError, match="condition_channels"):
        SRFlowSpec(flow=spec.flow, encoder={**spec.encoder.to_dict(), "nf": 3})
    with pytest.raises(ValueError, match="unknown preset|unknown SRFlow preset"):
        srflow_spec("DF2K_2X")


def test_spec_round_trips_and_checkpoint(tmp_path) -> None:
    for spec in (srflow_spec("DF2K_4X"), srflow_spec("CelebA_8X"), tiny_spec(8, K=[1, 2, 1, 1], split=False)):
        assert SRFlowSpec.from_yaml(spec.to_yaml()) == spec
        assert SRFlowSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    model = _model(tiny_spec(4), seed=3)
    model.quant = 64
    path = save(model, tmp_path / "srflow.safetensors")
    loaded = load(path)
    assert type(loaded) is SRFlow and loaded.config() == model.config() and loaded.quant == 64
    hr, lr = _pair(model)
    torch.testing.assert_close(loaded.encode(hr, lr)[1][0], model.encode(hr, lr)[1][0], rtol=0, atol=0)


def test_official_init() -> None:
    """SRFlow initialisation: zero output convs make every coupling the constant sigmoid(2) + 1e-4 scaling."""
    torch.manual_seed(0)
    model = SRFlow(tiny_spec(4)).eval()
    step = model.flow.levels[0].body.module_list[2]
    assert step.injector is not None and step.coupling is not None
    assert abs(step.coupling.subnet.conv1.weight.std().item() - 0.05) < 0.02
    hr, lr = _pair(model)
    x = torch.rand(1, 12, 4, 4)
    c = model.conditions(lr[:1])[0]
    (y,), logdet = step.coupling([x], c=[c])
    s = torch.sigmoid(torch.tensor(2.0)) + 1e-4
    torch.testing.assert_close(y[:, 6:], x[:, 6:] * s)
    torch.testing.assert_close(y[:, :6], x[:, :6])
    torch.testing.assert_close(logdet, torch.log(s) * 6 * 16 * torch.ones(1))


# -- the documented example stays in sync with docs/examples and keeps running ---------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_example_is_in_sync_and_runs() -> None:
    example = DOCS / "examples" / "srflow_example.py"
    section = (DOCS / "srflow.md").read_text().split("## Example", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == example.read_text().rstrip() + "\n", "docs/srflow.md example differs from docs/examples"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "39,541,811" in result.stdout and "3 samples per LR image: (3, 2, 3, 32, 48)" in result.stdout
