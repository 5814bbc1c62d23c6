"""flowsr's LPIPS against the reference ``lpips`` package (issue #13 item 6), and finding the weights.

The ``lpips`` package is a test-only dependency, installed by ``make venv`` with ``--no-deps``: it
imports torchvision only for the AlexNet *definition* (``torchvision.models.alexnet().features``),
and PyPI's torchvision does not import beside the CPU torch used here. The test therefore puts a
stand-in ``torchvision`` module in ``sys.modules`` whose ``alexnet()`` is the same layer stack
written with plain torch (``_AlexNetFeatures`` below, indices as torchvision's), initialised from a
random AlexNet state dict. Everything else — the input scaling, the feature taps, the channel
normalisation, the real v0.1 linear weights from the package's ``weights/v0.1/alex.pth`` and the
spatial average — is the ``lpips`` package's own code. The ImageNet AlexNet weights cannot be
fetched here, so both sides get the same random ones (loaded from one ``alexnet-owt-*.pth`` file in
a temporary torch hub cache, which also exercises flowsr's weight discovery).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from flowsr.metrics import LPIPS, find_lpips_weights, lpips_available


def _torchvision_alexnet_features() -> nn.Sequential:
    """torchvision's ``AlexNet().features`` layer stack, in plain torch."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _random_alexnet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    features = _torchvision_alexnet_features()
    state = {f"features.{k}": v.clone() for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.randn(8, 8)  # present in the real file, unused by LPIPS
    return state


@pytest.fixture
def hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub cache (``$TORCH_HOME/hub``) so that no real cache on the machine is used."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return Path(torch.hub.get_dir())


@pytest.fixture
def reference_lpips(monkeypatch):
    """The ``lpips`` package, imported with the stand-in torchvision (see the module docstring)."""
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("the lpips package is not installed (make venv installs it: pip install --no-deps lpips)")
    state: dict[str, dict] = {}

    class _AlexNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = _torchvision_alexnet_features()
            if state.get("alexnet"):
                self.load_state_dict(
                    {k: v for k, v in state["alexnet"].items() if k.startswith("features.")}, strict=True
                )

    def alexnet(pretrained: bool = False, weights=None, **_):
        assert not pretrained and weights is None, "the reference must not try to download anything"
        return _AlexNet()

    models = types.SimpleNamespace(alexnet=alexnet)
    fake = types.ModuleType("torchvision")
    fake.models = models
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    return lpips, state


def test_finds_the_lin_weights_in_the_lpips_package_and_alexnet_in_the_hub_cache(hub: Path) -> None:
    found = find_lpips_weights()
    spec = importlib.util.find_spec("lpips")
    if spec is not None:
        assert found.lin == Path(spec.submodule_search_locations[0]) / "weights" / "v0.1" / "alex.pth"
    assert found.alexnet is None and not found.complete
    ok, msg = lpips_available()
    assert not ok and "AlexNet weights not found (flowsr never downloads them)" in msg
    assert str(hub / "checkpoints" / "alexnet-owt-*.pth") in msg  # says where it looked
    with pytest.raises(FileNotFoundError, match="looked in: "):
        LPIPS()
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(_random_alexnet_state(), hub / "checkpoints" / "alexnet-owt-7be5be79.pth")
    found = find_lpips_weights()
    assert found.alexnet == hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    # given paths win and are never replaced by found files, even when missing
    missing = find_lpips_weights(alexnet_path=hub / "nope.pth")
    assert missing.alexnet is None and f"{hub / 'nope.pth'} (given)" in missing.searched


def test_lin_weights_are_found_in_torchmetrics_when_lpips_is_absent(tmp_path: Path, monkeypatch, hub) -> None:
    # A stand-in torchmetrics package layout (torchmetrics itself is not a dependency).
    pkg = tmp_path / "site" / "torchmetrics"
    (pkg / "functional" / "image" / "lpips_models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    lin = pkg / "functional" / "image" / "lpips_models" / "alex.pth"
    torch.save({f"lin{k}.model.1.weight": torch.ones(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}, lin)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "lpips" else real_find_spec(n, *a))
    found = find_lpips_weights()
    assert found.lin == lin
    assert any("package 'lpips' not installed" in s for s in found.searched)


def test_flowsr_lpips_equals_the_lpips_package_on_the_same_alexnet_weights(hub: Path, reference_lpips, capsys) -> None:
    lpips, state = reference_lpips
    alex_state = _random_alexnet_state(seed=3)
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(alex_state, hub / "checkpoints" / "alexnet-owt-7be5be79.pth")
    state["alexnet"] = alex_state

    ours = LPIPS()  # both files found: the random AlexNet in the hub cache, lin weights in the lpips package
    assert ours.lin_path == Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
    capsys.readouterr()
    # The reference really uses its own shipped lin weights and our random AlexNet.
    assert torch.equal(ref.lin0.model[1].weight, ours.lins[0].weight)
    assert torch.equal(ref.net.slice1[0].weight, alex_state["features.0.weight"])

    g = torch.Generator().manual_seed(7)
    x0 = torch.rand(3, 3, 64, 80, generator=g)
    x1 = (x0 + 0.1 * torch.randn(3, 3, 64, 80, generator=g)).clamp(0, 1)
    with torch.no_grad():
        d_ours = ours(x0, x1)
        d_ref = ref(x0, x1, normalize=True).reshape(-1)  # normalize=True: inputs in [0, 1], as ours
        assert d_ref.shape == d_ours.shape == (3,) and bool((d_ref > 0).all())
        torch.testing.assert_close(d_ours, d_ref, rtol=1e-6, atol=1e-7)
        # a second size and unrelated images
        y0, y1 = torch.rand(2, 3, 96, 96, generator=g), torch.rand(2, 3, 96, 96, generator=g)
        torch.testing.assert_close(ours(y0, y1), ref(y0, y1, normalize=True).reshape(-1), rtol=1e-6, atol=1e-7)
