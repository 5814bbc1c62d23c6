"""flowsr reproduces the official HCFlow networks (golden fixtures made with the official code).

Every ``hcflow*_golden.pt`` file in ``tests/fixtures/official`` is checked (more can be added
with ``FLOWSR_EXTRA_GOLDEN``, a folder of fixtures made the same way); nothing here depends on
the particular sizes, seeds or configurations of the shipped files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from golden import RTOL, assert_close, assert_rel_close, golden_files, load_golden, official_fixtures

from flowsr.convert import load_official
from flowsr.convert.hcflow import OFFICIAL_OPTIONS, HCFlowConverter
from flowsr.models.hcflow import (
    HCFlowRescaling,
    HCFlowSR,
    hcflow_rescaling_spec,
    hcflow_sr_spec,
    standard_normal_logp,
)

# Network fixtures only: the training-step fixtures (*_train_golden.pt) have their own test.
NETWORK_FILES = [p for p in golden_files("hcflow*_golden.pt") if not p.name.endswith("_train_golden.pt")]
SR_FILES = [p for p in NETWORK_FILES if "rescaling" not in p.name]
RESCALING_FILES = [p for p in NETWORK_FILES if "rescaling" in p.name]


@pytest.mark.parametrize("path", SR_FILES, ids=lambda p: p.stem)
def test_sr_golden(path: Path) -> None:
    g = load_golden(path)
    model = load_official(g["state_dict"], g["opt"])
    assert isinstance(model, HCFlowSR)
    with torch.no_grad():
        y, zs, logdet = model.encode(g["hr_dequant"])
        assert_close(y, g["lr_raw"], "lr_raw")
        assert len(zs) == len(g["eps_fwd"])
        for i, (z, e) in enumerate(zip(zs, g["eps_fwd"])):
            assert_close(z, e, f"latent {i}")
        logdet_flow = g["logdet_init"] + logdet + sum(standard_normal_logp(z) for z in zs)
        assert_rel_close(logdet_flow, g["logdet_flow"], "logdet_flow")

        out = model.nll(g["hr"], g["lr"], noise=g["dequant_noise"])
        assert_rel_close(out.nll, g["nll_per_sample"], "nll")
        assert_close(out.nll.mean(), g["nll"], "nll (batch mean)", atol=RTOL * abs(g["nll"].item()))
        assert_close(out.lr, g["lr_out"], "lr_out")

        assert_close(model.decode(g["rev_lr"], g["eps_rev"]), g["sr_raw"], "sr_raw")
        zeros = [torch.zeros_like(e) for e in g["eps_rev"]]
        assert_close(
            model.decode(g["rev_lr"], zeros).clamp(0, 1), g["sr_heat0"], "sr_heat0 (clamped, as the official sampler)"
        )
        assert_close(model.decode(g["lr_raw"], g["eps_fwd"]), g["roundtrip_hr"], "roundtrip_hr")


@pytest.mark.parametrize("path", RESCALING_FILES, ids=lambda p: p.stem)
def test_rescaling_golden(path: Path) -> None:
    g = load_golden(path)
    model = load_official(g["state_dict"], g["opt"])
    assert isinstance(model, HCFlowRescaling)
    with torch.no_grad():
        y, zs, _ = model.encode(g["hr"])
        assert_close(y, g["lr_raw"], "lr_raw")
        expected = [g["levels_fwd"][l]["z"] for l in sorted(g["levels_fwd"], reverse=True)]
        assert len(zs) == len(expected)
        for i, (z, e) in enumerate(zip(zs, expected)):
            assert_close(z, e, f"latent {i}")
        assert_close(model.downscale(g["hr"]), g["lr_quant"], "lr_quant", atol=1 / 255 + 1e-6)
        assert_close(model.decode(g["rev_lr"], g["eps_rev"]), g["sr_raw"], "sr_raw")
        zeros = [torch.zeros_like(e) for e in g["eps_rev"]]
        assert_close(
            model.decode(g["rev_lr"], zeros).clamp(0, 1), g["sr_heat0"], "sr_heat0 (clamped, as the official sampler)"
        )
        assert_close(model.decode(g["lr_raw"], expected), g["roundtrip_hr"], "roundtrip_hr")


OFFICIAL_PARAMS = {"SR_DF2K_4X": 23_232_539, "SR_CelebA_8X": 27_017_723, "Rescaling_DF2K_4X": 4_396_350}
KEY_FILES = {
    "SR_DF2K_4X": "official_keys_test_SR_DF2K_4X_HCFlow.json",
    "SR_CelebA_8X": "official_keys_test_SR_CelebA_8X_HCFlow.json",
    "Rescaling_DF2K_4X": "official_keys_test_Rescaling_DF2K_4X_HCFlow.json",
}
PRESETS = {
    "SR_DF2K_4X": lambda: hcflow_sr_spec(4),
    "SR_CelebA_8X": lambda: hcflow_sr_spec(8),
    "Rescaling_DF2K_4X": lambda: hcflow_rescaling_spec(4),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_OPTIONS))
def test_official_configs_keys_and_parameter_counts(name: str) -> None:
    opt = OFFICIAL_OPTIONS[name]
    assert HCFlowConverter.spec_from_opt(opt) == PRESETS[name](), "preset differs from the official options"
    model = HCFlowConverter.model_from_opt(opt)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]
    path = official_fixtures() / KEY_FILES[name]
    keys = json.loads(path.read_text())
    mapping = HCFlowConverter.key_map(model, [k for k, _ in keys])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(mapping.values()) == sorted(ours), "official and flowsr keys are not in one-to-one correspondence"
    for key, shape in keys:
        assert ours[mapping[key]] == tuple(shape), f"{key}: shape {shape} vs flowsr {ours[mapping[key]]}"
