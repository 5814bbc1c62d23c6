"""Official-checkpoint loading: files, prefixes and every way a state dict can be wrong."""

from __future__ import annotations

import json

import pytest
import torch

from flowsr.convert import load_official
from flowsr.convert.hcflow import OFFICIAL_OPTIONS, HCFlowConverter
from flowsr.models.checkpoint import load, save


@pytest.fixture
def official(golden_dir):
    """A random state dict with the official key names and shapes of HCFlow rescaling x4."""
    keys = json.loads((golden_dir / "official_keys_test_Rescaling_DF2K_4X_HCFlow.json").read_text())
    g = torch.Generator().manual_seed(0)
    return OFFICIAL_OPTIONS["Rescaling_DF2K_4X"], {k: 0.02 * torch.randn(shape, generator=g) for k, shape in keys}


def test_loads_from_a_pth_file_with_module_prefix(tmp_path, official) -> None:
    opt, state = official
    path = tmp_path / "official.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    model = load_official(path, opt)
    assert not model.training
    mapping = HCFlowConverter.key_map(model, list(state))
    for key, value in state.items():
        mapped = mapping[key]
        torch.testing.assert_close(model.state_dict()[mapped], value, rtol=0, atol=0)


def test_unexpected_missing_and_misshaped_keys_are_named(official) -> None:
    opt, state = official
    extra = dict(state, **{"flow.level0_condFlow.bogus.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="bogus"):
        load_official(extra, opt)
    key = next(iter(state))
    missing = {k: v for k, v in state.items() if k != key}
    with pytest.raises(ValueError, match="missing 1 key"):
        load_official(missing, opt)
    bad = dict(state)
    bad["flow.level1_condFlow.f.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError, match=r"flow\.level1_condFlow\.f\.weight.*shape"):
        load_official(bad, opt)


def test_rejects_pickled_code_and_non_state_dicts(tmp_path, official) -> None:
    opt, _ = official
    path = tmp_path / "evil.pth"
    torch.save({"a": object()}, path)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_official(path, opt)
    with pytest.raises(ValueError, match="which_model_G"):
        load_official({}, {"network_G": {}})


def test_converted_model_saves_as_one_flowsr_file(tmp_path, official) -> None:
    opt, state = official
    model = load_official(state, opt)
    path = save(model, tmp_path / "converted.safetensors")
    again = load(path)
    hr = torch.rand(1, 3, 16, 16)
    y = model.encode(hr)[0]
    assert torch.isfinite(y).all()
    torch.testing.assert_close(again.encode(hr)[0], y, rtol=0, atol=0)
