"""``flowsr bench`` runs end to end and reports what it should (no timing assertions: timings
belong in ``docs/benchmarks.md``, never in the test suite)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from flowsr import bench
from flowsr.layers.actnorm import ActNorm

TINY = ["--repeats", "1", "--warmup", "0", "--threads", "1", "--calib-seconds", "0.01", "--samples", "2"]


def test_flop_counter_counts_a_single_convolution_and_a_matmul() -> None:
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 10, 12)
    assert bench.count_flops(lambda: conv(x)) == 2 * (2 * 10 * 12) * 8 * 4 * 9  # 2 FLOP per MAC
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    assert bench.count_flops(lambda: a @ b) == 2 * 5 * 7 * 3
    assert bench.count_flops(lambda: torch.relu(x) + 1) == 0  # elementwise ops are not counted


def test_bench_runs_end_to_end_on_a_tiny_preset(tmp_path, capsys) -> None:
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    ops = ["encode", "decode", "train", "samples", "samples_repeat", "tiled"]
    argv = [
        "--preset",
        "tiny_hcflow_sr",
        "--ops",
        *ops,
        *TINY,
        "--in-process",
        "--markdown",
        str(md),
        "--json",
        str(js),
    ]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("preset "))
    for column in bench.COLUMNS:
        assert column in header
    for label in ["encode", "decode", "train (batch 1)", "samples (N=2)", "samples_repeat (N=2)", "tiled 16->64"]:
        assert label in out

    data = json.loads(js.read_text())
    assert set(data) == {"meta", "machine", "calibration", "results"}
    assert data["calibration"]["conv3x3_64"] > 0 and data["calibration"]["matmul_1024"] > 0
    results = {r["op"]: r for r in data["results"]}
    assert set(results) == set(ops)
    for op, r in results.items():
        assert "error" not in r, r.get("error")
        assert r["finite"] is True
        assert len(r["times"]) == 1 and r["median"] > 0 and r["peak_rss_mib"] > 0
        assert r["load_before"] is not None and r["load_after"] is not None
        if op != "tiled":
            assert r["flop"] > 0
    assert results["samples"]["hr_pixels"] == 2 * results["decode"]["hr_pixels"]
    assert results["tiled"]["hr_pixels"] == 64 * 64
    # the shared-feature sampling does the LR-only work once: fewer FLOPs than the repeated LR
    assert results["samples"]["flop"] < results["samples_repeat"]["flop"]

    text = md.read_text()
    assert text.startswith("# flowsr benchmarks")
    assert "python -m flowsr.bench --all --markdown docs/benchmarks-presets.md" in text
    assert "| " + " | ".join(bench.COLUMNS) + " |" in text
    for needle in ["Command:", "Machine:", "torch " + torch.__version__, "Load averages", "conv3x3_64", "Targets"]:
        assert needle in text


@pytest.mark.parametrize("preset", ["tiny_hcflow_rescaling", "tiny_srflow", "tiny_irn"])
def test_every_family_runs(preset: str, tmp_path) -> None:
    if bench.available_presets([preset])[preset] is not None:
        pytest.skip(bench.available_presets([preset])[preset])
    js = tmp_path / "bench.json"
    argv = ["--preset", preset, "--ops", "encode", "decode", "train", "samples", *TINY, "--in-process", "--quiet"]
    assert bench.main([*argv, "--json", str(js)]) == 0
    for r in json.loads(js.read_text())["results"]:
        assert "error" not in r and r["finite"] is True and r["flop"] > 0


def test_fresh_process_per_measurement(tmp_path) -> None:
    js = tmp_path / "bench.json"
    argv = ["--preset", "tiny_irn", "--ops", "decode", *TINY, "--no-flops", "--quiet", "--json", str(js)]
    assert bench.main(argv) == 0
    data = json.loads(js.read_text())
    (r,) = data["results"]
    assert "error" not in r and not r.get("in_process")
    assert r["peak_rss_mib"] >= r["rss_start_mib"] > 0  # this process's own high-water mark
    assert r["threads"] == 1


def test_variants_report_their_deviation_from_float32(tmp_path) -> None:
    js = tmp_path / "bench.json"
    argv = ["--preset", "tiny_hcflow_sr", "--ops", "decode", *TINY, "--in-process", "--quiet", "--json", str(js)]
    for extra in (["--amp", "bf16-features"], ["--channels-last"], ["--amp", "bf16"]):
        assert bench.main([*argv, *extra]) == 0
        (r,) = json.loads(js.read_text())["results"]
        assert "error" not in r, r.get("error")
        assert 0 <= r["deviation"]["mean_abs"] <= r["deviation"]["max_abs"] <= 1  # outputs are clamped to [0, 1]
    assert r["amp"] == "bf16"


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def test_plan_all_has_the_extra_rows_and_skips_missing_presets(monkeypatch) -> None:
    jobs = bench.plan(_args(["--all"]))
    keys = {(j["preset"], j["op"], j["batch"], j["amp"], j["compile"], j["channels_last"]) for j in jobs}
    assert ("hcflow_sr_x4", "train", 4, None, False, False) in keys
    assert ("hcflow_sr_x4", "tiled", 1, None, False, False) in keys
    assert ("hcflow_sr_x4", "samples_repeat", 1, None, False, False) in keys
    assert ("hcflow_sr_x8", "samples_repeat", 1, None, False, False) in keys
    assert ("hcflow_sr_x4", "decode", 1, "bf16", False, False) in keys
    assert ("hcflow_sr_x4", "decode", 1, None, True, False) in keys
    for name in bench.FULL_PRESETS:
        assert any(j["preset"] == name for j in jobs)
    assert all(j["threads"] == 2 and j["repeats"] == 3 and j["samples"] == 8 for j in jobs if j["op"] != "tiled")

    missing = {name: None for name in bench.PRESETS}
    missing["srflow_x4"] = "flowsr.models.srflow.srflow_spec not available"
    monkeypatch.setattr(bench.command, "available_presets", lambda names=None: {n: missing[n] for n in names})
    jobs = bench.plan(_args(["--all"]))
    (skipped,) = [j for j in jobs if j["preset"] == "srflow_x4"]
    assert "not available" in skipped["skip"]
    row = bench.rows([skipped], None)[0]
    assert "not measured" in row[2]


def test_table_without_the_official_code_has_no_ratio() -> None:
    result = {
        "preset": "hcflow_sr_x4",
        "op": "decode",
        "median": 0.855,
        "min": 0.85,
        "max": 0.9,
        "hr_pixels": 160 * 160,
        "flop": 184.3e9,
        "peak_rss_mib": 480.0,
        "load_before": (0.1, 0.1, 0.1),
        "load_after": (1.0, 0.3, 0.1),
        "others_cpu": 0.0,
        "finite": True,
    }
    (row,) = bench.rows([result], {"conv3x3_64": 431.0})
    cells = dict(zip(bench.COLUMNS, row))
    assert not any("official" in c for c in bench.COLUMNS)  # ratios come only from the side-by-side run
    assert cells["GFLOP"] == "184.3" and cells["GFLOP/s"] == "216" and cells["% conv peak"] == "50%"
    assert cells["s / MP"] == "33.4" and cells["load 1m before/after"] == "0.10/1.00"
    samples = {**result, "op": "samples", "samples": 8, "median": 6.0, "hr_pixels": 8 * 160 * 160}
    repeat = {**samples, "op": "samples_repeat", "median": 9.0}
    lines = "\n".join(bench.targets([result, samples, repeat], "cpu"))
    assert "6.00 s vs 9.00 s with the LR repeated (1.50x faster" in lines
    assert "official" not in lines
    busy = {**samples, "others_cpu": 1.2}
    assert "not conclusive" in "\n".join(bench.targets([busy, repeat], "cpu"))


def test_nontrivial_weights_are_finite_and_bounded() -> None:
    preset = bench.PRESETS["tiny_hcflow_sr"]
    hr, lr = bench.crop_inputs(preset)
    model = bench.make_nontrivial(preset.build(), inputs=(hr, lr))
    zero = [n for n, p in model.named_parameters() if not bool(p.any())]
    assert not zero
    assert all(bool(m.initialized) for m in model.modules() if isinstance(m, ActNorm))
    with torch.no_grad():
        y, zs, _ = model.encode(hr)
        x = model.decode(lr, model.sample_latents(lr, 0.8, torch.Generator().manual_seed(0)))
    assert all(torch.isfinite(z).all() and 0.1 < float(z.std()) < 10 for z in zs)  # like a trained net's latents
    assert torch.isfinite(x).all() and float(x.abs().max()) < 1e3


def test_cli_has_the_bench_command(capsys) -> None:
    cli = pytest.importorskip("flowsr.cli")
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "bench" not in sub.choices:
        pytest.skip("flowsr.cli does not register 'bench' (yet)")
    assert cli.main(["bench", "--help"]) == 0
    assert "--markdown" in capsys.readouterr().out


def test_report_can_be_rendered_again_from_json(tmp_path, capsys) -> None:
    js, md = tmp_path / "bench.json", tmp_path / "again.md"
    argv = ["--preset", "tiny_hcflow_sr", "--ops", "decode", *TINY, "--in-process", "--quiet", "--json", str(js)]
    assert bench.main(argv) == 0
    first = capsys.readouterr().out
    assert bench.main(["--from-json", str(js), "--markdown", str(md), "--quiet"]) == 0
    again = capsys.readouterr().out
    assert first.strip() == again.strip()  # same table and targets
    assert "tiny_hcflow_sr" in md.read_text()
