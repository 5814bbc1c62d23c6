"""Training under faults and bad input (issue #14: defects 3, 4, 10, 13, 14): damaged checkpoints
fall back, runs that change nothing fail, a full disk is one line, one process per run folder,
configuration values are checked before anything is built."""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import make, params, tiny_config

from flowsr.train import ConfigError, Trainer, TrainingError, config_from_dict, latest_checkpoint, load_config
from flowsr.train.config import available_cores
from flowsr.train.lock import RunLock


def _four_iterations(tmp_path: Path) -> tuple[dict, Path, dict]:
    """A run of 4 iterations with checkpoints at 2 and 4; returns its config, folder and weights."""
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 4}, checkpoint={"every": 2, "keep_last": 0})
    run = tmp_path / "run"
    trainer = make(cfg, run)
    trainer.run()
    return cfg, run, params(trainer)


def _nan_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64  # float32 NaNs
    path.write_bytes(bytes(data))


def _garbage_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(range(64))  # finite but wrong values
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "nan weights": ("iter_00000004.safetensors", _nan_bytes, "does not match the checksum"),
    "changed weights": ("iter_00000004.safetensors", _garbage_bytes, "does not match the checksum"),
    "truncated weights": ("iter_00000004.safetensors", _truncate, "truncated or damaged"),
    "truncated state": ("iter_00000004.pt", _truncate, "truncated or damaged"),
    "empty state": ("iter_00000004.pt", lambda p: p.write_bytes(b""), "is empty"),
    "empty weights": ("iter_00000004.safetensors", lambda p: p.write_bytes(b""), "is empty"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, damage: str) -> None:
    cfg, run, straight = _four_iterations(tmp_path)
    name, harm, reason = DAMAGES[damage]
    harm(run / "checkpoints" / name)
    resumed = make(cfg, run)
    assert resumed.iteration == 2
    log = (run / "train.log").read_text()
    assert f"cannot resume from {run / 'checkpoints' / name}" in log and reason in log
    assert "resumed from the previous good checkpoint" in log
    assert (run / "checkpoints" / "damaged" / name).is_file()  # kept for inspection, out of the way
    assert [r["iteration"] for r in resumed.run()] == [3, 4]
    for k, v in straight.items():  # the redone iterations are the same as the first time
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_nan_weights_without_a_checksum_are_refused_too(tmp_path: Path) -> None:
    """An older checkpoint (no checksum in its state) with NaN weights: the finite check catches it."""
    cfg, run, _ = _four_iterations(tmp_path)
    state_path = run / "checkpoints" / "iter_00000004.pt"
    state = torch.load(state_path, weights_only=True)
    del state["weights_sha256"]
    torch.save(state, state_path)
    _nan_bytes(run / "checkpoints" / "iter_00000004.safetensors")
    assert make(cfg, run).iteration == 2
    assert "holds non-finite weights" in (run / "train.log").read_text()


def test_no_usable_checkpoint_and_a_damaged_explicit_one_are_errors(tmp_path: Path) -> None:
    cfg, run, _ = _four_iterations(tmp_path)
    for name in ("iter_00000002.pt", "iter_00000004.pt"):
        _truncate(run / "checkpoints" / name)
    with pytest.raises(TrainingError, match=r"no usable checkpoint in .*iter_00000004\.pt.*iter_00000002\.pt"):
        make(cfg, run)
    with pytest.raises(TrainingError, match=r"cannot resume: \S*iter_00000002\.pt cannot be read"):
        make(cfg, tmp_path / "other", **{"train.resume": str(run / "checkpoints" / "iter_00000002.pt")})
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    del state["family"]  # a state without its family: named, not a bare KeyError 'family'
    torch.save(state, tmp_path / "nofamily.pt")
    with pytest.raises(TrainingError, match=r"lacks the entries \['family'\]"):
        make(cfg, tmp_path / "third", **{"train.resume": str(tmp_path / "nofamily.pt")})


def test_a_run_whose_every_step_is_skipped_fails(tmp_path: Path) -> None:
    trainer = make(tiny_config("hcflow_rescaling", train={"iterations": 2}, checkpoint={"every": 0}), tmp_path)
    forward = trainer._g.forward

    def poisoned(task, *args, **kwargs):
        out = forward(task, *args, **kwargs)
        out["total"] = out["total"] * float("nan")
        return out

    trainer._g.forward = poisoned
    with pytest.raises(TrainingError, match=r"every optimiser step of iterations 1\.\.2 was skipped"):
        trainer.run()


def test_the_command_exits_non_zero_when_every_step_is_skipped(tmp_path: Path) -> None:
    """The whole command: a recipe whose NLL overflows (an LR Gaussian of std e^-1000) skips every
    step; that is an error, not a finished run."""
    recipe = tmp_path / "overflow.yaml"
    cfg = tiny_config("hcflow_sr", train={"iterations": 2}, checkpoint={"every": 0})
    cfg["model"]["options"] = {"lr_log_std": -1000.0}
    recipe.write_text(json.dumps(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "flowsr.train", str(recipe), "--run-dir", str(tmp_path / "run"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("flowsr.train: error: every optimiser step of iterations 1..2 was skipped")


def _limited_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    """The OS refuses the checkpoint (a file-size limit stands in for a full disk): one error line
    naming the file, no traceback (also none from TensorBoard's writer thread), exit 2, and the
    previous checkpoint still resumes."""
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 2}, checkpoint={"every": 2})
    cfg["log"].update(tensorboard=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(cfg))
    run = tmp_path / "run"
    make(cfg, run).run()  # the checkpoint at 2, in this process (a subprocess costs its imports)
    base = [sys.executable, "-m", "flowsr.train", str(recipe), "--run-dir", str(run), "--quiet"]
    before = (run / "checkpoints" / "iter_00000002.safetensors").read_bytes()
    proc = subprocess.run(
        [*base, "--iterations", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited_file_size(64 * 1024),  # logs fit, the weights do not
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "while writing" in lines[0] or "cannot write" in lines[0], lines
    assert "iter_00000004.safetensors" in lines[0] and "iter_00000002.pt is intact" in lines[0]
    assert (run / "checkpoints" / "iter_00000002.safetensors").read_bytes() == before
    assert latest_checkpoint(run) == run / "checkpoints" / "iter_00000002.pt"
    assert make(cfg, run).iteration == 2


def test_no_space_left_on_device_is_said_so(tmp_path: Path, monkeypatch) -> None:
    import errno

    import flowsr.models.checkpoint as model_checkpoint

    cfg = tiny_config("hcflow_rescaling", train={"iterations": 1}, checkpoint={"every": 1})
    trainer = make(cfg, tmp_path)

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_checkpoint, "atomic_write", full)
    with pytest.raises(TrainingError, match=r"^no space left on device while writing \S*iter_00000001\.safetensors$"):
        trainer.run()
    assert "stopped: no space left on device" in (tmp_path / "train.log").read_text()


# -- one process per run folder -----------------------------------------------------------------


def test_a_run_folder_in_use_is_refused_naming_the_holder(tmp_path: Path) -> None:
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 1}, checkpoint={"every": 1})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from flowsr.train.lock import RunLock; lock = RunLock(sys.argv[1]); "
            "lock.acquire(); print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(TrainingError, match=rf"in use by another training process \(pid {holder.pid} on host "):
            make(cfg, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    trainer = make(cfg, tmp_path)  # the kernel dropped the dead holder's lock: taken over
    assert trainer.run()[0]["iteration"] == 1
    assert not (tmp_path / "train.lock").exists()  # released at the end of the run


def test_a_stale_lock_is_taken_over_and_a_live_one_respected(tmp_path: Path) -> None:
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 1}, checkpoint={"every": 1})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = {"pid": gone.pid, "host": os.uname().nodename, "started": "2020-01-01 00:00:00"}
    (tmp_path / "train.lock").write_text(json.dumps(record))
    make(cfg, tmp_path).run()
    assert (
        f"took over the lock of a training process that is gone (pid {gone.pid}" in (tmp_path / "train.log").read_text()
    )
    # a record naming a live process (without its kernel lock, e.g. on a file system without flock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "train.lock").write_text(json.dumps({**record, "pid": sleeper.pid}))
        with pytest.raises(TrainingError, match=rf"pid {sleeper.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


# -- configuration values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override,message",
    [
        ({"train.threads": 0}, r"train.threads must be 1 \.\. \d+"),
        ({"train.threads": -2}, r"train.threads must be 1 \.\. \d+"),
        ({"train.threads": 100000}, r"train.threads must be 1 \.\. \d+"),
        ({"train.seed": -1}, r"train.seed must be an integer in 0 \.\. 2\*\*63 - 1, got -1"),
        ({"train.seed": 2**70}, r"train.seed must be an integer"),
        ({"optim.lr": float("inf")}, r"optim.lr must be a finite number"),
        (["optim.lr=.nan"], r"optim.lr must be a finite number"),
        (["losses.hr_l1=-.inf"], r"losses.hr_l1 must be a finite number"),
        (["optim.lr=.inf"], r"optim.lr must be a finite number, got inf"),
        ({"optim.betas": [0.9, 1.5]}, r"optim.betas must be two numbers in \[0, 1\)"),
        ({"optim.gamma": 0}, r"optim.gamma must be > 0"),
        ({"optim.clip_norm": -1}, r"optim.clip_norm must be > 0"),
        ({"optim.milestones_rel": [1.5]}, r"milestones_rel must be fractions"),
        ({"log.ema": 1.0}, r"log.ema must be in \[0, 1\)"),
    ],
)
def test_bad_values_are_config_errors_before_anything_is_built(override: dict | list, message: str) -> None:
    from flowsr.train.coerce import apply_overrides

    with pytest.raises(ConfigError, match=message):
        config_from_dict(apply_overrides(tiny_config("hcflow_rescaling"), override))


def test_threads_above_the_cores_are_allowed_with_a_warning(tmp_path: Path) -> None:
    threads = available_cores() + 1
    try:
        trainer = make(tiny_config("hcflow_rescaling", train={"iterations": 0, "threads": threads}), tmp_path)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(1)
    assert trainer.iteration == 0
    assert f"warning: train.threads {threads} is more than the" in (tmp_path / "train.log").read_text()


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), r"is a PNG image, not a recipe"),
        (b"\xff\xd8\xff\xe0" + bytes(100), r"is a JPEG image, not a recipe"),
        (b"model: {family: hcflow_sr}\n\xe9t\xe9\n", r"is not UTF-8 text"),
        (b"model: [unclosed\n", r"is not valid YAML"),
        (b"- a list\n", r"the top level must be a mapping"),
    ],
)
def test_files_that_are_not_recipes_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_init_from_a_file_without_family_metadata_is_named(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "flowsr/1"})
    with pytest.raises(ConfigError, match=r"model.init_from .*weights\.safetensors' has no 'family' metadata"):
        make(tiny_config("hcflow_rescaling", model={"init_from": str(path)}), tmp_path / "run")
    # a flowsr checkpoint whose weights are NaN is refused before training starts
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 1}, checkpoint={"every": 1})
    make(cfg, tmp_path / "base").run()
    weights = tmp_path / "base" / "checkpoints" / "iter_00000001.safetensors"
    _nan_bytes(weights)
    with pytest.raises(ConfigError, match=r"holds non-finite weights"):
        make(tiny_config("hcflow_rescaling", model={"init_from": str(weights)}), tmp_path / "run2")


def test_a_no_op_rerun_changes_nothing_in_the_run_folder(tmp_path: Path) -> None:
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 2}, checkpoint={"every": 2})
    make(cfg, tmp_path).run()
    watched = ("config.yaml", "log.csv", "checkpoints/latest.json", "checkpoints/iter_00000002.pt")
    before = {name: ((tmp_path / name).read_bytes(), (tmp_path / name).stat().st_mtime_ns) for name in watched}
    time.sleep(0.01)
    for iterations in (2, 1):  # the same length, and a shorter one: nothing to do
        assert make(cfg, tmp_path, **{"train.iterations": iterations}).run() == []
    after = {name: ((tmp_path / name).read_bytes(), (tmp_path / name).stat().st_mtime_ns) for name in watched}
    assert after == before
    assert "iterations: 2\n" in (tmp_path / "config.yaml").read_text()


def test_validation_rows_in_the_csv_and_the_plot(tmp_path: Path) -> None:
    cfg = tiny_config(
        "hcflow_rescaling",
        train={"iterations": 2},
        checkpoint={"every": 0},
        data={"exclude": ["36"]},
        val={"every": 1, "metric": "psnr_y", "data": {"source": "samples", "samples": "face_x8", "names": ["36"]}},
        log={"every": 1, "plot": True},
    )
    trainer = make(cfg, tmp_path)
    trainer.run()
    rows = trainer.read_log()
    val = [r for r in rows if math.isfinite(r["val_psnr_y"])]
    train = [r for r in rows if math.isfinite(r["loss"])]
    assert [r["iteration"] for r in val] == [1, 2] and [r["iteration"] for r in train] == [1, 2]
    assert all(5 < r["val_psnr_y"] < 60 and math.isnan(r["loss"]) for r in val)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_without_tensorboard_and_matplotlib(tmp_path: Path, monkeypatch) -> None:
    for name in ("tensorboard", "torch.utils.tensorboard", "matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 2}, checkpoint={"every": 1})
    cfg["log"].update(tensorboard=True, plot=True)
    records = make(cfg, tmp_path).run()
    assert len(records) == 2
    notes = [line for line in (tmp_path / "train.log").read_text().splitlines() if "not installed" in line]
    assert len(notes) == 1 and "tensorboard" in notes[0] and "matplotlib" in notes[0]
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "curves.png").exists()
    assert latest_checkpoint(tmp_path) is not None


def test_the_loop_refuses_a_concurrent_start_in_the_same_folder(tmp_path: Path) -> None:
    """Two trainers on one folder in one process: the second one's run is refused while the first
    holds the lock (the lock is per open file, not per process)."""
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 1}, checkpoint={"every": 1})
    first = make(cfg, tmp_path)
    with RunLock(tmp_path):
        with pytest.raises(TrainingError, match="in use by another training process"):
            first.run()
    assert first.run()[0]["iteration"] == 1


def test_constructing_a_trainer_from_a_run_config_resumes(tmp_path: Path) -> None:
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 1}, checkpoint={"every": 1})
    make(cfg, tmp_path / "run").run()
    again = Trainer(tmp_path / "run" / "config.yaml", overrides=["train.iterations=2"], quiet=True)
    assert again.run_dir == tmp_path / "run" and again.iteration == 1
    assert [r["iteration"] for r in again.run()] == [2]


def test_a_failing_tensorboard_writer_stops_quietly(tmp_path: Path, capfd) -> None:
    """The writer thread's I/O error (a full disk) becomes one log line, not a thread traceback,
    and closing the writer afterwards raises nothing."""
    import errno
    import threading

    from flowsr.train.runlog import RunLog

    log = RunLog(tmp_path, main=True, quiet=True)
    hook = threading.excepthook
    log.open_tensorboard(purge_step=1)
    writer = log.tensorboard._writer.file_writer.event_writer._async_writer

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer._writer.write = full
    for step in range(3):
        log.tensorboard.scalar("train/loss", 1.0, step)
        time.sleep(0.2)
    log.flush()
    log.close()
    assert threading.excepthook is hook  # restored
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in (tmp_path / "train.log").read_text().splitlines() if "TensorBoard" in line]
    assert len(lines) == 1 and lines[0].endswith("TensorBoard logging stopped: no space left on device")


def test_temporary_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir(parents=True)
    left = [tmp_path / ".config.yaml.x1y2.tmp", tmp_path / "checkpoints" / ".iter_00000002.pt.abcd.tmp"]
    for p in left:
        p.write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("mine")  # not one of flowsr's temporary files
    make(tiny_config("hcflow_rescaling", train={"iterations": 0}), tmp_path)
    assert not any(p.exists() for p in left) and (tmp_path / "notes.tmp").is_file()
