"""``flowsr bench --official``: detection, import stubs, conversion, agreement, interleaved timing
and the report, against a stand-in for an official repository (``tests/official_standin``; the
real official code is not needed). No timing assertions."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from flowsr import bench
from flowsr.bench import official, sidebyside, sidebyside_report
from flowsr.convert import CONVERTERS, OfficialConverter

STANDIN = Path(__file__).parent / "official_standin"


class StandinConverter(OfficialConverter):
    """The stand-in network's state dict is a tiny flowsr IRN's under the prefix ``net.``."""

    name = "standin"
    OFFICIAL_OPTIONS = {
        "tiny": {"model": "standin", "network_G": {"which_model_G": "standin"}},
        "skewed": {"model": "standin", "network_G": {"which_model_G": "standin"}, "skew": 1e-3},
    }

    @classmethod
    def matches(cls, opt) -> bool:
        return opt.get("model") == "standin"

    @classmethod
    def model_from_opt(cls, opt):
        from flowsr.models.irn import IRN, irn_spec

        return IRN(irn_spec(4, block_num=1, gc=4))

    @classmethod
    def key_map(cls, model, official_keys):
        return {k: k.removeprefix("net.") for k in official_keys}


def _build(code, opt):
    return code.run(code.load("models.networks").define_G, dict(opt)).eval()


def _encode(net, hr, lr):
    out = net(x=hr)
    return {"lr": out[:, :3], "z": out[:, 3:]}


def _decode(net, lr, heat):
    z = heat * torch.randn(lr.shape[0], 45, *lr.shape[2:])
    return net(x=torch.cat([lr, z], 1), rev=True)


REPO = official.OfficialRepo("codes", "models/modules/Standin_arch.py", _build, _encode, _decode)


@pytest.fixture
def standin(tmp_path, monkeypatch) -> Path:
    """A copy of the stand-in checkout (so that nothing written into it would go unnoticed),
    registered as the official code of the ``tiny_irn`` preset."""
    root = tmp_path / "Standin"
    shutil.copytree(STANDIN, root)
    monkeypatch.setitem(CONVERTERS, "standin", StandinConverter)
    monkeypatch.setitem(official.REPOS, "Standin", REPO)
    monkeypatch.setitem(official.OFFICIAL_PRESETS, "tiny_irn", official.OfficialPreset("Standin", "standin", "tiny"))
    return root


def test_detects_a_checkout_by_its_files(standin, tmp_path) -> None:
    for path in (standin, standin / "codes"):
        found = official.detect_repo(path)
        assert found.repo == "Standin" and found.code == standin / "codes"
    with pytest.raises(ValueError, match="not a checkout of an official repository"):
        official.detect_repo(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        official.detect_repo(tmp_path / "missing")


def test_official_imports_stub_what_is_missing_and_restore_everything(standin) -> None:
    import numpy
    import scipy.interpolate

    path, modules = list(sys.path), set(sys.modules)
    had_long, had_interp2d = hasattr(numpy, "long"), hasattr(scipy.interpolate, "interp2d")
    with official.official_imports(standin / "codes") as code:
        net = _build(code, StandinConverter.OFFICIAL_OPTIONS["tiny"])
        assert {"cv2", "natsort", "torchvision", "torchvision.utils"} <= set(code.stubs)
        with pytest.raises(RuntimeError, match="import-time stand-in"):
            sys.modules["cv2"].imread("x.png")  # a stub fails loudly when used
    assert net.index_dtype is numpy.long or not had_long  # the alias existed while importing
    assert sys.path == path
    assert not {m for m in set(sys.modules) - modules if m.split(".")[0] in ("models", "cv2", "natsort", "torchvision")}
    assert hasattr(numpy, "long") == had_long and hasattr(scipy.interpolate, "interp2d") == had_interp2d
    assert not list(standin.rglob("*.pyc")) and not list(standin.rglob("__pycache__"))  # nothing written
    with torch.no_grad():  # the imported classes keep working after the context
        assert net(x=torch.rand(1, 3, 16, 16)).shape == (1, 48, 4, 4)


def test_record_draws_sees_the_official_draws_without_changing_them() -> None:
    torch.manual_seed(3)
    expected = (torch.rand(2), torch.normal(0.0, 0.5, size=(3,)), torch.randn(4))
    torch.manual_seed(3)
    with official.record_draws() as draws:
        got = (torch.rand(2), torch.normal(0.0, 0.5, size=(3,)), torch.randn(4))
    assert [k for k, _ in draws] == ["uniform", "normal", "normal"]
    for a, b, (_, c) in zip(expected, got, draws):
        assert torch.equal(a, b) and torch.equal(b, c)
    assert torch.rand is not None and "recorded" not in torch.rand.__name__  # restored


def test_interleave_alternates_and_warms_up() -> None:
    calls: list[str] = []
    res = sidebyside.interleave(lambda: calls.append("o"), lambda: calls.append("f"), 4, 1, lambda: calls.append("w"))
    assert calls == ["w", "f", "o", "f", "f", "o", "o", "f", "f", "o"]
    assert len(res["official"]) == len(res["flowsr"]) == 4
    assert res["others_cpu"] is None or res["others_cpu"] >= 0


def test_side_by_side_rows_agree_and_get_a_ratio(standin) -> None:
    pair = sidebyside.build_pair("tiny_irn", official.detect_repo(standin))
    assert all(k.startswith("net.") for k in pair.net.state_dict())  # the stand-in's own keys, converted
    for op in ("encode", "decode", "samples"):
        row = sidebyside.measure_pair(pair, op, rounds=2, n=3)
        assert "error" not in row, row.get("error")
        assert row["agree"] and row["check"]["rel"] <= 1e-5, row["check"]
        assert len(row["official"]) == len(row["flowsr"]) == 2
        assert row["ratio"] == pytest.approx(row["flowsr_median"] / row["official_median"])
        assert row["flop"] > 0
    assert sidebyside.check(pair, "encode")["what"] in ("lr", "z")


def test_a_disagreeing_network_is_flagged_and_gets_no_ratio(standin, monkeypatch) -> None:
    monkeypatch.setitem(official.OFFICIAL_PRESETS, "tiny_irn", official.OfficialPreset("Standin", "standin", "skewed"))
    pair = sidebyside.build_pair("tiny_irn", official.detect_repo(standin))
    encode = sidebyside.measure_pair(pair, "encode", rounds=1, flops=False)
    decode = sidebyside.measure_pair(pair, "decode", rounds=1, flops=False)
    assert encode["agree"] and encode["ratio"] is not None  # the skew is in the reverse only
    assert not decode["agree"] and decode["ratio"] is None
    assert decode["check"]["max_abs"] == pytest.approx(1e-3, rel=1e-3)
    cells = dict(zip(sidebyside_report.COLUMNS, sidebyside_report.rows([decode], None)[0]))
    assert cells["flowsr / official"] == "no ratio: outputs disagree"
    assert "no ratio (outputs disagree)" in "\n".join(sidebyside_report.targets([decode]))


def _row(op: str, ratio: float | None, others: float = 0.0) -> dict:
    return {
        "preset": "hcflow_sr_x4",
        "op": op,
        "samples": 8,
        "batch": 1,
        "official_median": 2.0,
        "official_min": 1.9,
        "flowsr_median": 2.0 * (ratio or 1.0),
        "flowsr_min": 1.8,
        "ratio": ratio,
        "check": {"max_abs": 0.0, "rel": 0.0, "what": "hr"},
        "others_cpu": others,
        "flop": 100e9,
    }


def test_targets_are_measured_not_assumed() -> None:
    lines = sidebyside_report.targets(
        [_row("decode", 0.5), _row("encode", 0.9), _row("samples", 0.59), _row("train", 1.2, others=1.5)]
    )
    assert "decode: target flowsr / official <= 0.75x: 0.50x (met)" in lines[0]
    assert "0.90x (NOT met)" in lines[1]
    assert "<= 0.6x: 0.59x (met)" in lines[2]
    assert "1.20x (NOT met; measured while other processes used 1.5 cores: not conclusive)" in lines[3]
    cells = dict(zip(sidebyside_report.COLUMNS, sidebyside_report.rows([_row("decode", 0.5)], 100.0)[0]))
    assert cells["GFLOP/s"] == "100" and cells["% conv peak"] == "100%" and cells["flowsr / official"] == "0.50x"


def test_cli_runs_side_by_side_and_writes_the_report(standin, tmp_path, capsys) -> None:
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = ["--official", str(standin), "--preset", "tiny_irn", "--rounds", "2", "--samples", "2"]
    argv += ["--threads", "1", "--calib-seconds", "0.01", "--markdown", str(md), "--json", str(js), "--rerun-busy"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "flowsr / official" in out and "tiny IRN x4" in out
    data = json.loads(js.read_text())
    ops = [r["op"] for r in data["side_by_side"] if not r.get("rerun")]
    assert ops == ["encode", "decode", "samples"]  # no training step without a train options file
    busy = [r for r in data["side_by_side"] if (r.get("others_cpu") or 0) > 0.25 and not r.get("rerun")]
    assert len([r for r in data["side_by_side"] if r.get("rerun")]) == len(busy)  # busy rows measured again
    text = md.read_text()
    assert text.startswith("# flowsr benchmarks")
    assert "| " + " | ".join(sidebyside_report.COLUMNS) + " |" in text
    for needle in ("Command: `python -m flowsr.bench --official", "Machine:", "## Targets", "% conv peak", "Standin"):
        assert needle in text
    assert bench.main(["--from-json", str(js), "--quiet"]) == 0  # the report again, from the JSON
    assert "flowsr / official" in capsys.readouterr().out


def test_without_official_code_there_is_no_ratio(tmp_path, capsys) -> None:
    argv = ["--preset", "tiny_irn", "--ops", "decode", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    assert bench.main([*argv, "--calib-seconds", "0.01", "--in-process", "--no-flops"]) == 0
    assert "official" not in capsys.readouterr().out


def test_train_options_are_the_checkouts_for_the_cpu(standin) -> None:
    from flowsr.bench.official_train import train_options

    network = {"scale": 4, "quant": 64, "network_G": {"which_model_G": "standin"}, "other": 1}
    opt = train_options(standin / "codes", "options/train/train_standin.yml", network)
    assert opt["model"] == "Standin" and opt["scale"] == 4 and opt["quant"] == 64
    assert opt["network_G"] == {"which_model_G": "standin"} and "other" not in opt  # the network options win
    assert opt["gpu_ids"] is None and opt["dist"] is False and opt["is_train"] is True
    assert opt["path"] == {"resume_state": None}  # never resumes from the checkout's experiments
    assert opt["train"]["lr_steps"] == [500, 750]  # as the official option parser


def test_latents_are_matched_by_shape() -> None:
    deep, shallow, other = torch.zeros(1, 21, 4, 4), torch.ones(1, 6, 8, 8), torch.zeros(1, 6, 8, 8)
    official_out = {"z1": torch.rand(1, 6, 8, 8), "z2": torch.rand(1, 21, 4, 4), "z3": torch.rand(1, 6, 8, 8)}
    got = sidebyside.match_latents(official_out, [deep, shallow, other])
    assert got["z1"] is shallow and got["z2"] is deep and got["z3"] is other
    assert sidebyside.match_latents({"z": torch.rand(2, 3)}, [deep]) == {}
