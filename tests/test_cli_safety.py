"""Issue 14's command-line defects, each as a regression test: outputs never overwrite inputs, a
batch goes on past bad images, NaN outputs are reported per image, bounds on --threads / --seed /
counts, explicit paths that are missing or unreadable are errors, and messages that say what is
wrong. OS-level cases (thread counts that crashed, a closed pipe) run in a subprocess with limits.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from cli_helpers import REPO, assert_one_line_error, make_files, run, run_subprocess, smooth, snapshot

import flowsr.cli.modelref as modelref
from flowsr.data import read_image, write_image
from flowsr.models import NonFiniteOutputError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory)


def _folder(path, names, size=(6, 5)):
    path.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_image(path / name, smooth(*size, seed=i))
    return path


# -- defect 1: outputs never overwrite inputs ---------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_rescale_into_the_input_folder_never_writes_an_input(capsys, files, tmp_path, overwrite) -> None:
    # cat_LR.png is the user's own file: it must survive, whatever flowsr names its outputs
    d = tmp_path / "dir"
    _folder(d, ["cat.png", "cat_LR.png", "cat_lr.png", "cat_rec.png"], size=(12, 8))
    before = snapshot(d)
    extra = ["--overwrite"] if overwrite else []
    code, _, err = run(capsys, "rescale", d, "-c", files["rs"], "-o", d, "-t", "1", *extra)
    after = snapshot(d)
    for name, data in before.items():
        assert after[name] == data, f"{name} was written ({err})"
    # cat_lr.png / cat_rec.png look like cat's outputs: skipped as inputs, protected as files
    assert code == 2 and "never writes into its inputs" in err
    # without the look-alikes: both images are processed, neither is written
    (d / "cat_lr.png").unlink()
    (d / "cat_rec.png").unlink()
    before = snapshot(d)
    code, _, err = run(capsys, "rescale", d, "-c", files["rs"], "-o", d, "-t", "1", *extra)
    assert code == 0, err
    after = snapshot(d)
    assert all(after[n] == b for n, b in before.items())
    assert {"cat_lr.png", "cat_rec.png", "cat_LR_lr.png", "cat_LR_rec.png"} <= set(after)


def test_rescale_up_and_sr_with_input_names_like_outputs(capsys, files, tmp_path) -> None:
    d = _folder(tmp_path / "up", ["a.png", "a_up.png"])
    before = snapshot(d)
    code, _, err = run(capsys, "rescale", d, "-c", files["rs"], "--mode", "up", "-o", d, "-t", "1")
    assert code == 0, err
    after = snapshot(d)
    assert all(after[n] == b for n, b in before.items())
    assert {"a_rec.png", "a_up_rec.png"} <= set(after)  # both were inputs: both processed
    d = _folder(tmp_path / "sr", ["x.png", "x_t0.8_s0.png"])
    before = snapshot(d)
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "sr", d, "-c", files["sr"], "-o", d, "-t", "0.8", *extra)
        assert code == 2 and "x_t0.8_s0.png" in err, err
        assert snapshot(d) == before  # nothing written, not even x's other outputs


def test_explicit_inputs_that_collide_with_outputs_are_refused_before_any_work(capsys, files, tmp_path) -> None:
    d = _folder(tmp_path / "d", ["x.png", "x_t0.8_s0.png", "y.png"])
    before = snapshot(d)
    for argv in (
        ["sr", d / "y.png", d / "x.png", d / "x_t0.8_s0.png", "-o", d, "-t", "0.8", "--overwrite"],
        ["sr", d / "x.png", "-o", d / "x.png", "-t", "0"],  # -o file.png naming the input itself
        ["sr", d / "x.png", "-o", d / "x.png", "-t", "0", "--overwrite"],
        ["sr", d / "x.png", d / "x_t0.8_s0.png", "-o", d, "-t", "0.8", "--suffix", "v2", "--overwrite"],
    ):
        code, _, err = run(capsys, *argv, "-c", files["sr"])
        if "--suffix" in argv:  # no collision with a suffix: both processed, inputs untouched
            assert code == 0, err
        else:
            assert_one_line_error(code, err, "input")
        after = snapshot(d)
        assert all(after[n] == b for n, b in before.items())
        if "--suffix" not in argv:
            assert after == before  # checked before any work: y.png was not processed either


def test_an_output_hard_linked_to_an_input_is_refused(capsys, files, tmp_path) -> None:
    d = _folder(tmp_path / "in", ["p.png"])
    out = tmp_path / "out"
    out.mkdir()
    os.link(d / "p.png", out / "p_t0_s0.png")  # the would-be output is the input under another name
    before = (d / "p.png").read_bytes()
    code, _, err = run(capsys, "sr", d / "p.png", "-c", files["sr"], "-o", out, "-t", "0", "--overwrite")
    assert_one_line_error(code, err, "would overwrite the input")
    assert (d / "p.png").read_bytes() == before


def test_existing_outputs_need_overwrite_and_two_inputs_with_one_output_name(capsys, files, tmp_path) -> None:
    d = _folder(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    assert run(capsys, "sr", d, "-c", files["sr"], "-o", out, "-t", "0")[0] == 0
    first = snapshot(out)
    code, _, err = run(capsys, "sr", d, "-c", files["sr"], "-o", out, "-t", "0")
    assert_one_line_error(code, err, "exist already", "--overwrite")
    assert snapshot(out) == first
    code, _, err = run(capsys, "sr", d, "-c", files["sr"], "-o", out, "-t", "0", "--overwrite")
    assert code == 0, err
    write_image(d / "a.jpg", smooth(6, 5))  # a.png and a.jpg: both would write a_t0_s0.png
    code, _, err = run(capsys, "sr", d, "-c", files["sr"], "-o", tmp_path / "o2", "-t", "0")
    assert_one_line_error(code, err, "two outputs would be named")


# -- defect 6: a model that overflows -------------------------------------------------------------------


def test_non_finite_output_is_reported_for_that_image_and_the_batch_continues(
    capsys, files, tmp_path, monkeypatch
) -> None:
    import flowsr.inference as inference

    real = inference.super_resolve

    def overflow_on_wide(model, lr, t, *args, **kwargs):
        if lr.shape[-1] == 9:  # b.png
            raise NonFiniteOutputError("the model produced non-finite values")
        return real(model, lr, t, *args, **kwargs)

    monkeypatch.setattr(inference, "super_resolve", overflow_on_wide)
    d = tmp_path / "in"
    d.mkdir()
    write_image(d / "a.png", smooth(6, 5))
    write_image(d / "b.png", smooth(6, 9))
    write_image(d / "c.png", smooth(6, 5, seed=2))
    code, _, err = run(capsys, "sr", d, "-c", files["sr"], "-o", tmp_path / "o", "-t", "0", "0.8")
    assert code == 2
    assert "model produced non-finite values for" in err and "b.png at T=0; try a lower temperature" in err
    assert "1 of 3 images failed (" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "a_t0.8_s0.png",
        "a_t0_s0.png",
        "c_t0.8_s0.png",
        "c_t0_s0.png",
    ]  # nothing at all for b


def test_a_real_overflow_names_image_and_temperature(capsys, files, tmp_path) -> None:
    code, _, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-o", tmp_path, "-t", "1e30")
    assert_one_line_error(code, err, "model produced non-finite values for", "lr.png at T=1e+30", "lower temperature")
    assert not list(tmp_path.iterdir())


# -- defect 7 and 13: bounds of numbers ------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["100000", "5000"])
def test_absurd_thread_counts_are_refused_without_crashing(tmp_path, threads) -> None:
    proc = run_subprocess("info", "--list", "--threads", threads, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)  # was 139 (segfault) / 11x slower
    assert_one_line_error(proc.returncode, proc.stderr, "--threads", "at most")


def test_thread_bounds_in_process(capsys) -> None:
    from flowsr.cli.options import THREADS_PER_CORE, cpu_cores

    code, _, err = run(capsys, "info", "--list", "--threads", "0")
    assert_one_line_error(code, err, "--threads", ">= 1")
    code, _, err = run(capsys, "info", "--list", "--threads", str(cpu_cores() * THREADS_PER_CORE + 1))
    assert_one_line_error(code, err, "--threads", "at most")
    try:
        code, _, err = run(capsys, "info", "--list", "--threads", str(cpu_cores() + 1))
        assert code == 0
        assert "warning" in err and "CPU cores" in err  # allowed, with a warning
        assert torch.get_num_threads() == cpu_cores() + 1
    finally:
        torch.set_num_threads(1)  # the test workers' setting (conftest)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sr", "{lr}", "-c", "{sr}", "--seed", str(2**64)], "--seed"),
        (["sr", "{lr}", "-c", "{sr}", "--seed", "-" + str(2**70)], "--seed"),
        (["sr", "{lr}", "-c", "{sr}", "-n", "0"], "--samples"),
        (["sr", "{lr}", "-c", "{sr}", "--tile", "-3"], "--tile"),
        (["sr", "{lr}", "-c", "{sr}", "--tile", "8", "--overlap", "16"], "--overlap 16 is more than half of --tile 8"),
        (["sr", "{lr}", "-c", "{sr}", "-t", "nan"], "--temperature"),
        (["sr", "{lr}", "-c", "{sr}", "-t", "inf"], "--temperature"),
        (["rescale", "{hr}", "-c", "{rs}", "--tile", "2"], "--tile 2 is smaller than"),
        (["test", "{sr}", "--data", "general_x4", "--max-images", "0"], "--max-images"),
        (["test", "{sr}", "--data", "general_x4", "--max-images", "-1"], "--max-images"),
        (["demo", "--max-images", "0"], "--max-images"),
        (["bench", "--repeats", "0"], "--repeats"),
        (["bench", "--repeats", "-3"], "--repeats"),
    ],
)
def test_out_of_range_numbers_are_one_line_errors(capsys, files, tmp_path, argv, needle) -> None:
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    code, _, err = run(capsys, *argv, *(["-o", tmp_path / "o"] if argv[0] in ("sr", "rescale") else []))
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


def test_duplicate_temperatures_are_used_once(capsys, files, tmp_path) -> None:
    code, out, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-o", tmp_path, "-t", "0.8", "0.80", "8e-1")
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir()] == ["lr_t0.8_s0.png"]
    assert "1 image(s)" in out and "more than once" in out


# -- defect 8: one bad file does not abort the batch -----------------------------------------------------


def test_a_bad_file_is_reported_and_the_others_are_processed(capsys, files, tmp_path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    write_image(d / "a_good.png", smooth(6, 5))
    (d / "b_empty.png").write_bytes(b"")
    write_image(d / "c_good.png", smooth(5, 6))
    code, _, err = run(capsys, "sr", d, "-c", files["sr"], "-o", tmp_path / "o", "-t", "0")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "b_empty.png" in lines[0] and "cannot read" in lines[0]
    assert lines[1].startswith("flowsr: error: 1 of 3 images failed (") and "b_empty.png" in lines[1]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_good_t0_s0.png", "c_good_t0_s0.png"]
    code, _, err = run(capsys, "rescale", d, "-c", files["rs"], "-o", tmp_path / "r", "-t", "1")
    assert code == 2 and "1 of 3 images failed" in err
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "a_good_lr.png",
        "a_good_rec.png",
        "c_good_lr.png",
        "c_good_rec.png",
    ]


def test_test_command_continues_past_a_bad_image(capsys, files, tmp_path) -> None:
    hr = tmp_path / "data"
    hr.mkdir()
    write_image(hr / "a.png", smooth(24, 20))
    (hr / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_image(hr / "c.png", smooth(20, 24, seed=3))
    out = tmp_path / "res"
    code, _, err = run(capsys, "test", files["sr"], "--data", hr, "-t", "0", "--no-nll", "-o", out)
    assert code == 2 and "b.png" in err and "1 of 3 images failed" in err
    md = (out / "metrics.md").read_text()
    assert "| a | T=0 |" in md and "| c | T=0 |" in md and "| b |" not in md and "1 image(s) failed" in md
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["a.png", "c.png"]


# -- defect 9: explicit paths that are missing or unreadable ---------------------------------------------


def test_demo_models_folder_must_exist_and_hold_readable_models(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "demo", "--models", tmp_path / "typo", "-o", tmp_path / "o")
    assert_one_line_error(code, err, "typo", "does not exist")
    d = tmp_path / "models"
    d.mkdir()
    (d / "broken.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = run(capsys, "demo", "--models", d, "-o", tmp_path / "o")
    assert_one_line_error(code, err, "broken.safetensors")
    (d / "broken.safetensors").unlink()
    code, _, err = run(capsys, "demo", "--models", d, "-o", tmp_path / "o")
    assert_one_line_error(code, err, "no flowsr models")
    assert not (tmp_path / "o").exists()


# -- defect 13: messages that say what is wrong -----------------------------------------------------------


def test_unreadable_checkpoint_says_permission_denied(capsys, files, tmp_path, monkeypatch) -> None:
    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(modelref, "_open_for_read", denied)  # the tests run as root, who reads anything
    code, _, err = run(capsys, "sr", files["lr"], "-c", files["sr"], "-o", tmp_path)
    assert_one_line_error(code, err, "cannot read checkpoint", "permission denied")
    assert "No such file" not in err


def test_misleading_messages_are_fixed(capsys, files, tmp_path) -> None:
    png = files["lr"]
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    pth = tmp_path / "x.pth"
    pth.write_bytes(b"not a torch file")
    cases = [
        (["sr", files["lr"], "-c", files["sr"], "--device", "mps"], "MPS is not available"),
        (["sr", files["lr"], "-c", files["sr"], "--device", "cuda:7"], "--device cuda:7"),
        (["sr", fifo, "-c", files["sr"]], "is a FIFO"),
        (["sr", files["lr"], "-c", files["sr"], "-t", "0", "-o", a_file], "is a file, not a folder"),
        (["sr", files["lr"], "-c", files["sr"], "-t", "0", "-o", a_file / "sub"], "is a file, not a folder"),
        (["test", png, "--data", "general_x4"], "is an image"),
        (["train", png], "is an image"),
        (["convert", pth, "--config", png, "-o", tmp_path / "o.safetensors"], "is an image"),
        (["info", "no_such_model_name"], "bundled model"),
        (["info", fifo], "not a regular file"),
        (["convert", fifo, "--config", "SR_DF2K_4X", "-o", tmp_path / "o.safetensors"], "is a FIFO"),
        (["test", files["sr"], "--data", fifo], "is a FIFO"),
        (["test", files["sr"], "--data", files["lr"]], "is a file, not a folder"),
    ]
    for argv, needle in cases:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, needle)
        assert "Errno" not in err and "codec" not in err and "No such file" not in err


def test_a_random_state_dict_gives_a_short_message(capsys, files, tmp_path) -> None:
    from safetensors.torch import save_file

    from flowsr.models.checkpoint import read_metadata

    meta = read_metadata(files["sr"])
    bogus = tmp_path / "bogus.safetensors"
    save_file({f"w{i}": torch.zeros(2) for i in range(2000)}, str(bogus), metadata=meta)
    code, _, err = run(capsys, "info", bogus)
    assert_one_line_error(code, err, "cannot load checkpoint")
    assert len(err) < 1000


def test_a_closed_stdout_ends_quietly_and_the_work_is_done(files, tmp_path) -> None:
    # `flowsr ... | head -1`: the reader goes away; no "Broken pipe" error, and a batch still finishes
    d = _folder(tmp_path / "in", ["a.png", "b.png"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for argv, outputs in (
        (["--help"], []),
        (["sr", d, "-c", files["sr"], "-t", "0", "-o", tmp_path / "o"], ["a_t0_s0.png", "b_t0_s0.png"]),
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowsr", *map(str, argv)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=env,
        )
        proc.stdout.close()  # the reader is gone before the first line
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert err.decode().strip() == ""
        if outputs:
            assert sorted(p.name for p in (tmp_path / "o").iterdir()) == outputs
            assert read_image(tmp_path / "o" / "a_t0_s0.png").shape == (3, 24, 20)
