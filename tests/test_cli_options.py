"""Issue 13's command-line behaviour: bundled model names (-m), output naming and planning
(results/, -o file, --suffix, --ext, skipping own outputs), the model's temperatures, progress
callbacks, test --save-images, tile units, fast --help without torch, bench's common options."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from cli_helpers import REPO, assert_one_line_error, make_files, run, smooth, tiny_sr
from PIL import Image

from flowsr import inference as inf
from flowsr.cli.console import NoteLog, TileProgress
from flowsr.data import read_image, write_image
from flowsr.models import load, save


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory)


# -- models by name -----------------------------------------------------------------------------------


def test_bundled_models_by_name_in_help_list_and_commands(capsys, tmp_path) -> None:
    from flowsr.cli.modelref import bundled_names

    names = bundled_names()
    assert "hcflow_sr_x4_demo" in names
    code, out, _ = run(capsys, "info", "--list")
    assert code == 0 and all(n in out for n in names)
    for argv in (["--help"], ["sr", "--help"], ["rescale", "--help"], ["test", "--help"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0 and "hcflow_sr_x4_demo" in out and "hcflow_rescaling_x4_demo" in out
    lr = write_image(tmp_path / "face.png", smooth(8, 6))
    code, out, err = run(capsys, "sr", lr, "-m", "hcflow_sr_x4_demo", "-t", "0", "-o", tmp_path / "o")
    assert code == 0, err
    assert read_image(tmp_path / "o" / "face_t0_s0.png").shape == (3, 32, 24)
    code, out, err = run(capsys, "info", "hcflow_rescaling_x4_demo", "--json")
    assert code == 0 and '"task": "rescaling"' in out
    code, _, err = run(capsys, "sr", lr, "-m", "hcflow_sr_x4_dem", "-o", tmp_path / "o2")
    assert_one_line_error(code, err, "checkpoint not found", "hcflow_sr_x4_demo")  # the names are listed


def test_a_model_folder_in_the_model_hub_layout(capsys, files, tmp_path) -> None:
    folder = tmp_path / "my_model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(files["sr"].read_bytes())
    code, out, err = run(capsys, "info", folder)
    assert code == 0 and "hcflow_sr" in out, err


# -- output naming and planning ------------------------------------------------------------------------


def test_default_output_folder_is_results(capsys, files, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-t", "0")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["lr_t0_s0.png"]
    code, _, err = run(capsys, "rescale", files["hr"], "-c", files["rs"], "-t", "1")
    assert code == 0, err
    assert {"hr_lr.png", "hr_rec.png"} <= {p.name for p in (tmp_path / "results").iterdir()}


def test_o_file_png_writes_that_file(capsys, files, tmp_path) -> None:
    dst = tmp_path / "deep" / "result.png"
    code, _, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-t", "0.8", "-o", dst)
    assert code == 0, err
    assert dst.is_file() and not dst.is_dir() and read_image(dst).shape == (3, 28, 20)
    code, _, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-t", "0", "0.8", "-o", tmp_path / "two.png")
    assert_one_line_error(code, err, "names one file", "2 files")
    assert not (tmp_path / "two.png").exists()
    code, _, err = run(
        capsys, "rescale", files["hr"], "-c", files["rs"], "--mode", "down", "-o", tmp_path / "small.jpg"
    )
    assert code == 0, err
    with Image.open(tmp_path / "small.jpg") as im:
        assert im.format == "JPEG" and im.size == (6, 7)


@pytest.mark.parametrize(("ext", "fmt"), [("jpg", "JPEG"), ("webp", "WEBP"), ("tif", "TIFF"), ("png", "PNG")])
def test_suffix_and_ext(capsys, files, tmp_path, ext, fmt) -> None:
    code, _, err = run(
        capsys, "sr", files["lr"], "-c", files["sr"], "-t", "0", "-o", tmp_path, "--suffix", "v2", "--ext", ext
    )
    assert code == 0, err
    (out,) = tmp_path.iterdir()
    assert out.name == f"lr_v2_t0_s0.{ext}"
    with Image.open(out) as im:
        assert im.format == fmt and im.size == (20, 28)


def test_bad_suffix_and_ext_are_refused(capsys, files, tmp_path) -> None:
    for suffix in ("../up", "a/b", "", "_x"):
        code, _, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-o", tmp_path, "--suffix", suffix)
        if suffix == "":
            assert code == 0, err  # no suffix
        else:
            assert_one_line_error(code, err, "--suffix")
    code, _, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-o", tmp_path, "--ext", "gif")
    assert_one_line_error(code, err, "--ext")


def test_own_outputs_in_an_input_folder_are_skipped(capsys, files, tmp_path) -> None:
    d = tmp_path / "same"
    d.mkdir()
    write_image(d / "head.png", smooth(6, 5))
    write_image(d / "photo_2.png", smooth(5, 6, seed=1))
    code, _, err = run(capsys, "sr", d, "-c", files["sr"], "-o", d, "-t", "0.8")
    assert code == 0, err
    # run again into another folder: the outputs in `same` are not processed as inputs
    code, out, err = run(capsys, "sr", d, "-c", files["sr"], "-o", tmp_path / "again", "-t", "0.8")
    assert code == 0, err
    assert "skipping 2 file(s)" in out
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["head_t0.8_s0.png", "photo_2_t0.8_s0.png"]
    # a file named explicitly is an input
    code, _, err = run(capsys, "sr", d / "head_t0.8_s0.png", "-c", files["sr"], "-o", tmp_path / "x", "-t", "0")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["head_t0.8_s0_t0_s0.png"]


# -- temperatures ---------------------------------------------------------------------------------------


def test_temperatures_default_to_the_models_metadata_else_its_default(capsys, tmp_path) -> None:
    model = tiny_sr()
    with_meta = save(model, tmp_path / "m1.safetensors", extra={"demo_temperatures": "0 0.5"})
    plain = save(model, tmp_path / "m2.safetensors")
    lr = write_image(tmp_path / "in.png", smooth(6, 5))
    code, out, err = run(capsys, "sr", lr, "-c", with_meta, "-o", tmp_path / "a")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["in_t0.5_s0.png", "in_t0_s0.png"]
    assert "demo_temperatures" in out
    code, out, err = run(capsys, "sr", lr, "-c", plain, "-o", tmp_path / "b")
    assert code == 0, err
    t = f"{type(model).default_temperature:g}"
    assert [p.name for p in (tmp_path / "b").iterdir()] == [f"in_t{t}_s0.png"]


# -- progress -------------------------------------------------------------------------------------------


def test_tiles_report_progress(files) -> None:
    model = load(files["sr"])
    seen = []
    inf.super_resolve(model, smooth(20, 20)[None], 0.0, tile=8, overlap=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 9) for i in range(1, 10)]
    seen.clear()
    inf.super_resolve(model, smooth(5, 5)[None], 0.0, progress=lambda d, t: seen.append((d, t)))
    assert seen == []  # one piece: no progress
    hr = smooth(40, 40)[None]
    rs = load(files["rs"])
    inf.downscale(rs, hr, tile=16, overlap=4, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] > 1


def test_progress_bars_and_notes(capsys, monkeypatch) -> None:
    import flowsr.cli.console as console

    bars = []

    class FakeBar:
        def __init__(self, total, **kwargs):
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def refresh(self):
            pass

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setattr(console, "_tqdm", lambda **kw: FakeBar(**kw))
    bar = TileProgress("x")
    for done in range(1, 5):
        bar(done, 4)
    assert bars[0].n == 4 and bars[0].closed
    assert list(console.progress(range(3), desc="images")) == [0, 1, 2] and bars[1].n == 3
    notes = NoteLog()

    class Note:
        def __init__(self, kind, text):
            self.kind, self.text = kind, text

        def __str__(self):
            return self.text

    notes.add([Note("grey", "a.png: grey"), Note("alpha", "a.png: alpha")])
    notes.add([Note("grey", "b.png: grey")])
    notes.summary()
    out = capsys.readouterr().out
    assert out.count("grey") == 2 and "b.png" not in out and "1 more (grey)" in out


# -- test --save-images, tile units ----------------------------------------------------------------------


def test_test_save_images_and_nll_note(capsys, files, tmp_path) -> None:
    data = tmp_path / "hr"
    data.mkdir()
    write_image(data / "im.png", smooth(24, 20))
    out = tmp_path / "res"
    code, stdout, err = run(
        capsys, "test", files["sr"], "--data", data, "-t", "0", "0.8", "-n", "2", "-o", out, "--save-images"
    )
    assert code == 0, err
    assert sorted(p.name for p in (out / "images").iterdir()) == ["im_t0.8_s0.png", "im_t0.8_s1.png", "im_t0_s0.png"]
    md = (out / "metrics.md").read_text()
    assert "NLL (bits/px" in md and "can be negative" in md and "can be negative" in stdout
    code, _, err = run(capsys, "test", files["sr"], "--data", data, "-t", "0", "-o", out)
    assert_one_line_error(code, err, "exist already", "--overwrite")
    code, _, err = run(capsys, "test", files["rs"], "--data", data, "-o", tmp_path / "rs", "--save-images", "-t", "1")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "rs" / "images").iterdir()) == ["im_lr.png", "im_rec_t1.png"]


def test_rescale_tile_and_overlap_are_both_input_pixels(capsys, files, tmp_path) -> None:
    hr = smooth(48, 40, seed=4)
    path = write_image(tmp_path / "big.png", hr)
    code, _, err = run(
        capsys,
        "rescale",
        path,
        "-c",
        files["rs"],
        "--mode",
        "down",
        "--tile",
        "16",
        "--overlap",
        "8",
        "-o",
        tmp_path / "o",
    )
    assert code == 0, err
    model = load(files["rs"])
    expected = inf.downscale(model, read_image(path)[None], tile=16, overlap=8)[0]  # HR pixels, both
    torch.testing.assert_close(read_image(tmp_path / "o" / "big_lr.png"), expected, rtol=0, atol=0)
    code, _, err = run(
        capsys, "rescale", path, "-c", files["rs"], "--tile", "16", "--overlap", "9", "-o", tmp_path / "p"
    )
    assert_one_line_error(code, err, "--overlap 9 is more than half of --tile 16 HR pixels")


# -- help is fast: no torch -------------------------------------------------------------------------------


def test_help_imports_no_torch_and_is_fast() -> None:
    commands = ["", "sr", "rescale", "convert", "info", "test", "train", "demo"]
    script = f"""
import contextlib, io, sys, time
start = time.perf_counter()
from flowsr.cli import main
worst = 0.0
for cmd in {commands!r}:
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(([cmd] if cmd else []) + ["--help"]) == 0
    worst = max(worst, time.perf_counter() - t)
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))[:5]
print(time.perf_counter() - start, worst)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    total, worst = map(float, proc.stdout.split())
    # typically ~0.05 s each; the bound is loose for loaded machines, torch alone takes seconds to import
    assert worst < 1.0 and total < 3.0, (total, worst)


def test_bench_shares_the_common_options(capsys) -> None:
    from flowsr.cli.bench import bench_parser

    text = bench_parser()._subparsers._group_actions[0].choices["bench"].format_help()
    assert "--debug" in text and "--threads" in text and "auto" in text
    ns = bench_parser().parse_args(["bench"])
    assert ns.device == "auto" and ns.threads is None and not getattr(ns, "debug", False)


def test_images_keep_alpha_grey_16_bit_and_orientation(capsys, tmp_path) -> None:
    """With the IO redesign's load_image / save_image (issue 13, item 2): outputs are the same kind of
    file as the inputs, each conversion is printed once."""
    import numpy as np

    import flowsr.data

    if not hasattr(flowsr.data, "load_image"):
        pytest.skip("flowsr.data.load_image / save_image are not in this flowsr yet")
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    d.mkdir()
    rgba = (rng.random((10, 12, 4)) * 255).astype("uint8")
    Image.fromarray(rgba, "RGBA").save(d / "alpha.png")
    Image.fromarray(rgba[..., 0], "L").save(d / "grey.png")
    Image.fromarray(rgba[..., 1], "L").save(d / "grey2.png")
    Image.fromarray((rng.random((10, 12)) * 65535).astype("uint16")).save(d / "g16.png")
    im = Image.fromarray(rgba[..., :3])
    exif = im.getexif()
    exif[274] = 6  # rotated 90 degrees clockwise when shown
    im.save(d / "rot.jpg", exif=exif)
    code, out, err = run(capsys, "sr", d, "-m", "hcflow_sr_x4_demo", "-t", "0", "-o", tmp_path / "o")
    assert code == 0, err
    modes = {}
    for p in (tmp_path / "o").iterdir():
        with Image.open(p) as img:
            modes[p.name] = (img.mode, img.size)
    assert modes["alpha_t0_s0.png"] == ("RGBA", (48, 40))
    assert modes["grey_t0_s0.png"] == ("L", (48, 40))
    assert modes["g16_t0_s0.png"][0].startswith("I;16")
    assert modes["rot_t0_s0.png"] == ("RGB", (40, 48))  # upright: the EXIF rotation was applied
    assert out.count("grey image") == 1 and "2 more (grey)" in out  # three grey inputs: printed once, counted
