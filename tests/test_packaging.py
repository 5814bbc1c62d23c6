"""Packaging (issue #13 item 4): declared bounds vs what is tested, the wheel's contents (recipes,
samples with licence notes, models, licence metadata), a wheel usable from an empty folder, and the
recipe helpers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from flowsr.data import list_recipes, recipe_path, recipes_dir, resolve_recipe_data

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONSTRAINTS = {
    m.group(1).lower(): Version(m.group(2))
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (REPO / "constraints.txt").read_text(), re.M)
}


def _lower_bound(spec: SpecifierSet) -> Version | None:
    bounds = [Version(s.version) for s in spec if s.operator in (">=", "==")]
    return max(bounds) if bounds else None


def test_declared_lower_bounds_of_python_and_torch_are_the_tested_versions() -> None:
    python_floor = _lower_bound(SpecifierSet(PYPROJECT["project"]["requires-python"]))
    header = (REPO / "constraints.txt").read_text()
    tested_python = re.search(r"\(Python (\d+\.\d+)", header)
    assert tested_python, "constraints.txt states the Python version it was made with"
    assert python_floor == Version(tested_python.group(1))
    assert sys.version_info[:2] >= (python_floor.major, python_floor.minor)
    deps = {Requirement(d).name.lower(): Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    torch_floor = _lower_bound(deps["torch"].specifier)
    assert torch_floor == Version(CONSTRAINTS["torch"].base_version), (torch_floor, CONSTRAINTS["torch"])
    # Every runtime dependency is pinned by the constraints the suite runs with, inside its declared range.
    for name, req in deps.items():
        assert name in CONSTRAINTS, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(CONSTRAINTS[name], prereleases=True), (name, req, CONSTRAINTS[name])


def test_training_only_dependencies_are_an_extra_and_the_core_does_not_import_them() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    train = {Requirement(r).name for r in extras["train"]}
    assert train == {"tensorboard", "matplotlib"}
    assert train <= {Requirement(r).name for r in extras["dev"]}  # make venv / the suite still get them
    assert not train & {Requirement(d).name for d in PYPROJECT["project"]["dependencies"]}
    code = (
        "import sys, flowsr, flowsr.cli, flowsr.data, flowsr.models, flowsr.metrics, flowsr.inference;"
        "print(sorted(m for m in ('matplotlib', 'tensorboard', 'torchvision', 'lpips') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_licence_metadata() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    assert "LICENSE" in project["license-files"]
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]  # PEP 639: SPDX only


def _build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources (so the checkout gets no build/ folder)."""
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for folder in ("flowsr",):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    dist = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0 and "No module named" in out.stderr:
        pytest.skip(f"cannot build a wheel here: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = dist.glob("flowsr-*.whl")
    return wheel


def test_wheel_ships_recipes_samples_models_and_licences_and_works_from_an_empty_folder(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for yaml in (REPO / "flowsr" / "recipes").glob("*.yaml"):
        assert f"flowsr/recipes/{yaml.name}" in names, yaml.name
    for image in (REPO / "flowsr" / "recipes" / "data" / "train").iterdir():
        assert f"flowsr/recipes/data/train/{image.name}" in names, image.name
    for path in (REPO / "flowsr" / "data").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert path.relative_to(REPO).as_posix() in names, path
    assert "flowsr/data/samples/face_x8/LICENSE-NOTE" in names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta and "Requires-Python: >=3.11" in meta
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith("licenses/flowsr/data/samples/face_x8/LICENSE-NOTE") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "docs/")) or "__pycache__" in n]
    # The unpacked wheel (dependencies from this environment) finds its recipes, samples and models.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import flowsr, flowsr.data as d; from flowsr.models.checkpoint import load;"
        "print(flowsr.__file__); print(d.recipe_path('hcflow_rescaling_x4_tiny'));"
        "print(d.resolve_recipe_data('data/train', d.recipe_path('hcflow_sr_x4_demo')));"
        "print(len(d.redistributable_pairs()), type(load('hcflow_sr_x4_demo')).__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == str(site / "flowsr" / "__init__.py")
    assert lines[1] == str(site / "flowsr" / "recipes" / "hcflow_rescaling_x4_tiny.yaml")
    assert lines[2] == str(site / "flowsr" / "recipes" / "data" / "train")
    assert lines[3] == "5 HCFlowSR"


def test_recipe_helpers(tmp_path: Path, monkeypatch) -> None:
    assert recipes_dir().is_dir()
    names = list_recipes()
    assert "hcflow_rescaling_x4_tiny" in names and "irn_x4_tiny" in names
    assert len(names) == len(list((REPO / "flowsr" / "recipes").glob("*.yaml")))
    monkeypatch.chdir(tmp_path)  # from any folder: by name, by file name, by the docs' recipes/... path
    want = recipes_dir() / "irn_x4_tiny.yaml"
    assert recipe_path("irn_x4_tiny") == recipe_path("irn_x4_tiny.yaml") == want
    assert recipe_path("recipes/irn_x4_tiny.yaml") == want
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\n")
    assert recipe_path(mine) == mine and recipe_path("mine.yaml") == Path("mine.yaml")
    with pytest.raises(FileNotFoundError, match="recipe not found: 'irn_x4_tinny'; did you mean irn_x4_tiny"):
        recipe_path("irn_x4_tinny")
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        recipe_path("elsewhere/irn_x4_tiny.yaml")  # only bare names and recipes/... mean the bundled ones
    data = resolve_recipe_data("data/train", want)
    assert data == recipes_dir() / "data" / "train" and data.is_dir()
    assert resolve_recipe_data("no/such/dir", want) == Path("no/such/dir")
    (tmp_path / "data" / "train").mkdir(parents=True)  # a local folder of that name wins
    assert resolve_recipe_data("data/train", want) == Path("data/train")
