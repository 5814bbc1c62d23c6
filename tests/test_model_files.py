"""Model files people can share (issue #13 item 5): bundled names, files and hub-style folders for
``flowsr.models.checkpoint.load`` / ``from_pretrained``, card front matter, and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flowsr.data import bundled_models, read_card, resolve_model
from flowsr.data.catalog import format_front_matter
from flowsr.models.checkpoint import from_pretrained, list_models, load, load_state, read_metadata, save

NAMES = ("hcflow_rescaling_x4_demo", "hcflow_sr_x4_demo")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bundled_name_file_and_folder_load_the_same_model(tmp_path: Path) -> None:
    assert from_pretrained is load
    entry = resolve_model("hcflow_sr_x4_demo")
    assert entry.bundled and entry.path.name == "hcflow_sr_x4_demo.safetensors" and entry.card.is_file()
    by_name = load("hcflow_sr_x4_demo")
    assert not by_name.training
    assert _same_weights(by_name, load(entry.path))
    assert _same_weights(by_name, from_pretrained("hcflow_sr_x4_demo.safetensors"))  # name with suffix
    folder = tmp_path / "my-model"
    folder.mkdir()
    shutil.copy(entry.path, folder / "model.safetensors")
    shutil.copy(entry.card, folder / "README.md")
    assert _same_weights(by_name, load(folder))
    got = resolve_model(folder)
    assert got.name == "my-model" and got.card == folder / "README.md" and got.metadata["library_name"] == "flowsr"
    assert read_metadata(folder)["recipe"] == "hcflow_sr_x4_demo"
    # a folder with one differently named file and its <name>.md card
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(entry.path, other / "x.safetensors")
    (other / "x.md").write_text(format_front_matter({"license": "mit"}) + "# x\n")
    got = resolve_model(other)
    assert got.path == other / "x.safetensors" and got.metadata == {"license": "mit"} and got.title == "x"
    # a local file of the same name wins over the bundled model
    local = tmp_path / "hcflow_sr_x4_demo"
    shutil.copy(resolve_model("hcflow_rescaling_x4_demo").path, local)
    assert resolve_model(local).path == local


def test_list_models_exposes_the_cards_metadata() -> None:
    models = list_models()
    assert [m.name for m in models] == list(NAMES) == [m.name for m in bundled_models()]
    for m in models:
        assert m.metadata["library_name"] == "flowsr" and m.metadata["license"] == "mit", m.name
        assert m.title.startswith(f"{m.name}: ")


@pytest.mark.parametrize("name", NAMES)
def test_card_front_matter_agrees_with_the_checkpoint_and_the_card_tables(name: str) -> None:
    entry = resolve_model(name)
    meta, body = read_card(entry.card)
    for key in ("license", "library_name", "pipeline_tag", "datasets", "metrics", "base_recipe", "model-index"):
        assert key in meta, key
    ckpt = read_metadata(entry.path)
    model = load(entry.path)
    info = meta["flowsr"]
    assert info["weights"] == entry.path.name and info["family"] == ckpt["family"] == model.family
    assert info["scale"] == model.scale and info["iterations"] == int(ckpt["iteration"])
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["base_recipe"] == ckpt["recipe"] and info["recipe"] == f"flowsr/recipes/{ckpt['recipe']}.yaml"
    assert info["demo_temperatures"] == [float(t) for t in ckpt["demo_temperatures"].split()]
    assert (Path(__file__).resolve().parents[1] / info["recipe"]).is_file()
    # every metric of the front matter is the number of the card's "mean" row and column it names
    lines = body.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| image | method |"))
    columns = [c.strip() for c in lines[head].strip("|").split("|")]
    rows = {}
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "mean":
            rows[cells[1]] = dict(zip(columns, cells))
    (result,) = meta["model-index"][0]["results"]
    assert len(result["metrics"]) >= 8
    for metric in result["metrics"]:
        column, method = metric["name"].split(" (")
        assert float(rows[method.rstrip(")")][column]) == metric["value"], metric


def test_clear_errors_for_missing_truncated_foreign_and_non_finite_files(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load(tmp_path / "nope.safetensors")
    assert "model not found" in str(info.value) and "hcflow_sr_x4_demo" in str(info.value)
    with pytest.raises(FileNotFoundError, match="bundled: hcflow_rescaling_x4_demo, hcflow_sr_x4_demo"):
        load("hcflow_sr_x8_demo")
    good = resolve_model("hcflow_sr_x4_demo").path.read_bytes()
    for label, data in {"empty": b"", "half": good[: len(good) // 2], "cut": good[:-1], "text": b"hello"}.items():
        p = tmp_path / f"{label}.safetensors"
        p.write_bytes(data)
        for fn in (load, read_metadata, load_state):
            with pytest.raises(ValueError) as info:
                fn(p)
            assert str(info.value).startswith(f"not a flowsr checkpoint or truncated: {p} ("), (label, info.value)
            assert "\n" not in str(info.value)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match=f"{foreign}: not a flowsr checkpoint"):
        load(foreign)
    # NaN weights
    model = load("hcflow_sr_x4_demo")
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    nan_file = save(model, tmp_path / "nan.safetensors")
    for fn in (load, load_state):
        with pytest.raises(ValueError, match=f"^{nan_file} holds non-finite weights \\(NaN or Inf in 1 of "):
            fn(nan_file)
    assert set(load_state("hcflow_sr_x4_demo")) == set(model.state_dict())
    # weights that do not fit the architecture: a short message, not every key
    meta = read_metadata("hcflow_sr_x4_demo")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"w": torch.zeros(2)}, wrong, metadata=meta)
    with pytest.raises(ValueError, match="do not fit its hcflow_sr architecture: .* missing .*; 1 unexpected") as info:
        load(wrong)
    assert len(str(info.value)) < 600
    no_family = tmp_path / "nofamily.safetensors"
    save_file({"w": torch.zeros(2)}, no_family, metadata={"format": meta["format"]})
    with pytest.raises(ValueError, match="has no model family"):
        load(no_family)
    # folders without weights, or with several and no model.safetensors
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no .safetensors file"):
        load(tmp_path / "empty_dir")
    with pytest.raises(FileNotFoundError, match="holds 2 .safetensors files and no model.safetensors"):
        d = tmp_path / "two"
        d.mkdir()
        shutil.copy(foreign, d / "a.safetensors")
        shutil.copy(foreign, d / "b.safetensors")
        load(d)
    # an unreadable file (simulated: root reads anything)
    from flowsr.models import checkpoint

    def denied(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint, "_open_for_read", denied)
    target = resolve_model("hcflow_sr_x4_demo").path
    with pytest.raises(PermissionError, match=f"^cannot read {target}: permission denied$"):
        load("hcflow_sr_x4_demo")
