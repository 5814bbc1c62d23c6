"""A recipe's ``imports``: a coupling registered outside flowsr, used by name in ``model.spec``,
trains, and the run resumes from its own config (issue #10 item 7 relies on this)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from flowsr.layers.registry import COUPLINGS
from flowsr.train import ConfigError, Trainer, load_config

COUPLING = '''
"""A NICE-style additive coupling (a test plugin)."""
from flowsr.layers import CouplingBase, register_coupling


@register_coupling("{name}")
class TinyAdditive(CouplingBase):
    def __init__(self, dims_in, dims_c=None, *, subnet_constructor, split_len=None):
        super().__init__(dims_in, dims_c, split_len=split_len)
        self.out = self.dims_in[0][0] - self.split_len
        self.subnet = subnet_constructor(self.split_len + self.cond_channels, self.out)

    def coupling_forward(self, x1, x2, c):
        t = self.run_subnet(self.subnet, self.subnet_input(x1, c), self.out)
        return x1, x2 + t, x1.new_zeros(x1.shape[0])

    def coupling_inverse(self, y1, y2, c):
        t = self.run_subnet(self.subnet, self.subnet_input(y1, c), self.out)
        return y1, y2 - t, y1.new_zeros(y1.shape[0])
'''


def _recipe(folder: Path, name: str, imports: list[str]) -> Path:
    recipe = {
        "imports": imports,
        "model": {
            "family": "hcflow_sr",
            "preset": "x4",
            "shrink": True,
            "spec": {"coupling": {"kind": name, "scale": None}, "latent": {"coupling": {"kind": name, "scale": None}}},
        },
        "data": {"source": "samples", "samples": "face_x8", "lr": "bicubic", "patch_size": 16, "batch_size": 2},
        "losses": {"nll": 1.0},
        "optim": {"lr": 1e-4},
        "train": {"iterations": 1, "seed": 0, "device": "cpu"},
        "checkpoint": {"every": 1},
        "log": {"every": 1, "tensorboard": False, "plot": False, "progress": False},
    }
    path = folder / "custom.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_a_recipe_imports_its_coupling_and_the_run_resumes(tmp_path: Path, monkeypatch) -> None:
    name = f"tiny_additive_{uuid.uuid4().hex[:8]}"
    plugins = tmp_path / "recipes" / "layers"
    plugins.mkdir(parents=True)
    (plugins / "tiny_additive.py").write_text(COUPLING.format(name=name))
    recipe = _recipe(tmp_path / "recipes", name, ["layers/tiny_additive.py"])  # relative to the recipe
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    trainer = Trainer(str(recipe), run_dir=tmp_path / "run", quiet=True)
    assert name in COUPLINGS
    kinds = {type(m).__name__ for m in trainer.model.modules()}
    assert "TinyAdditive" in kinds
    assert trainer.run()[0]["iteration"] == 1
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["imports"] == [str((plugins / "tiny_additive.py").resolve())]
    # the run's own config resumes it, from anywhere
    monkeypatch.chdir(tmp_path / "run")
    again = Trainer(tmp_path / "run" / "config.yaml", overrides=["train.iterations=2"], quiet=True)
    assert again.iteration == 1 and [r["iteration"] for r in again.run()] == [2]


def test_bad_imports_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"imports: no such file 'missing\.py'"):
        load_config(_recipe(tmp_path, "affine", ["missing.py"]))
    with pytest.raises(ConfigError, match=r"imports: cannot import module 'no_such_module_xyz'"):
        load_config(_recipe(tmp_path, "affine", ["no_such_module_xyz"]))
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"broken\.py failed: RuntimeError: boom"):
        load_config(_recipe(tmp_path, "affine", ["broken.py"]))
    assert load_config(_recipe(tmp_path, "affine", ["json"])).imports == ["json"]  # a module by name
