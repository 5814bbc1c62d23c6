"""The training engine: resume exactness, 2-process DDP equivalence, non-finite steps, atomic
checkpoints, keep-last-N, configs, data determinism, losses."""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch

import flowsr.train.checkpoints as checkpoints_mod
import flowsr.train.trainer as trainer_mod
from flowsr.layers.actnorm import ActNorm
from flowsr.train import ConfigError, Trainer, TrainingError, config_from_dict, latest_checkpoint, load_config
from flowsr.train.data import PatchDataset, StepBatchSampler, list_images
from flowsr.train.losses import GANLoss, PerceptualLoss, VGG19Features, VGGDiscriminator, load_vgg19_state


def tiny_config(family: str = "hcflow_sr", **sections) -> dict:
    """A tiny shrunk model on the bundled faces: a few ms per iteration."""
    cfg = {
        "name": "test",
        "model": {"family": family, "preset": "x4", "shrink": True},
        "data": {"source": "samples", "samples": "face_x8", "lr": "bicubic", "patch_size": 16, "batch_size": 4},
        "losses": {"nll": 1.0},
        "optim": {"lr": 1e-3, "milestones": [4], "gamma": 0.5},
        "train": {"iterations": 6, "seed": 3, "device": "cpu"},
        "checkpoint": {"every": 3, "keep_last": 0},
        "log": {"every": 1, "tensorboard": False, "plot": False, "progress": False},
    }
    if family == "hcflow_rescaling":
        cfg["losses"] = {"nll": 0.0, "lr_l2": 0.05, "z_l2": 1e-5, "hr_l1": 1.0}
        cfg["data"].update(hflip=True, vflip=True, rot90=True)
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def make(cfg: dict, run_dir: Path, **overrides) -> Trainer:
    return Trainer(config_from_dict(cfg), run_dir=run_dir, quiet=True, overrides=overrides or None)


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def interrupt_at(trainer: Trainer, step: int, monkeypatch) -> None:
    """Run ``trainer`` until a KeyboardInterrupt at the start of iteration ``step``."""
    original = trainer._train_step

    def crash(i, batch):
        if i == step:
            raise KeyboardInterrupt
        return original(i, batch)

    monkeypatch.setattr(trainer, "_train_step", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()


LOSS_KEYS = ("loss", "nll", "hr_l1", "lr_l2", "z_l2", "lr", "skipped")

# -- resume -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family,extra",
    [
        ("hcflow_rescaling", {}),
        # HCFlow+ procedure (separate NLL and pixel steps) with the official gradient leak, whose
        # carried-over gradient must be part of the checkpoint
        ("hcflow_sr", {"losses": {"nll": 2e-3, "hr_l1": 1.0}, "train": {"legacy_grad_leak": True}}),
    ],
)
def test_resume_continues_with_exactly_the_same_losses(tmp_path: Path, monkeypatch, family: str, extra: dict) -> None:
    cfg = tiny_config(family, **extra)
    straight = make(cfg, tmp_path / "a").run()
    final = params(make(cfg, tmp_path / "a2", **{"train.iterations": 0}))  # fresh model, for contrast
    full = Trainer(config_from_dict(cfg), run_dir=tmp_path / "a", quiet=True)  # resumes at the end
    assert full.iteration == 6 and full.run() == []
    end_params = params(full)
    assert any(not torch.equal(end_params[k], final[k]) for k in final)

    # interrupted after iteration 4 (checkpoint at 3): iteration 4 is lost and redone
    interrupt_at(make(cfg, tmp_path / "b"), 5, monkeypatch)
    resumed = make(cfg, tmp_path / "b")
    assert resumed.iteration == 3
    rest = resumed.run()
    assert [r["iteration"] for r in rest] == [4, 5, 6]
    for a, b in zip(straight[3:], rest):
        for key in LOSS_KEYS:
            if key in a:
                assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), (key, a, b)
    got = params(resumed)
    for k, v in end_params.items():
        assert torch.equal(v, got[k]), k
    # the log of the resumed run equals the uninterrupted one (row 4 written before the crash was replaced)
    rows_a, rows_b = (list(csv.DictReader(open(d / "log.csv"))) for d in (tmp_path / "a", tmp_path / "b"))
    assert [r["iteration"] for r in rows_b] == [str(i) for i in range(1, 7)]
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def test_learning_rate_milestones_are_inclusive(tmp_path: Path) -> None:
    cfg = tiny_config(optim={"lr": 1e-3, "milestones": [2], "milestones_rel": [0.75]}, train={"iterations": 4})
    records = make(cfg, tmp_path, **{"checkpoint.every": 0}).run()
    # milestones 2 and int(0.75 * 4) = 3, each applying from its own iteration on
    assert [r["lr"] for r in records] == [1e-3, 5e-4, 2.5e-4, 2.5e-4]


def test_resume_follows_a_changed_schedule(tmp_path: Path, monkeypatch) -> None:
    # stopped after 3 of 8 iterations with milestones_rel 0.75 (= 6), then resumed with iterations
    # 6 (milestone 4): the same as a run of 6 iterations from the start
    long = tiny_config(optim={"lr": 1e-3, "milestones": [], "milestones_rel": [0.75]}, train={"iterations": 8})
    short = tiny_config(optim={"lr": 1e-3, "milestones": [], "milestones_rel": [0.75]}, train={"iterations": 6})
    straight = make(short, tmp_path / "a").run()
    interrupt_at(make(long, tmp_path / "b"), 4, monkeypatch)
    rest = make(short, tmp_path / "b").run()
    assert [r["iteration"] for r in rest] == [4, 5, 6]
    assert [r["lr"] for r in straight] == [1e-3] * 3 + [5e-4] * 3
    rows_a, rows_b = (list(csv.DictReader(open(d / "log.csv"))) for d in (tmp_path / "a", tmp_path / "b"))
    assert [(r["iteration"], r["lr"], r["loss"]) for r in rows_a] == [
        (r["iteration"], r["lr"], r["loss"]) for r in rows_b
    ]


def test_legacy_grad_leak_changes_only_later_iterations(tmp_path: Path) -> None:
    base = tiny_config(losses={"nll": 2e-3, "hr_l1": 1.0}, train={"iterations": 2}, checkpoint={"every": 0})
    clean = make(base, tmp_path / "clean").run()
    leak = make(base, tmp_path / "leak", **{"train.legacy_grad_leak": True}).run()
    assert clean[0]["loss"] == leak[0]["loss"]  # nothing to leak into iteration 1's NLL step
    assert clean[1]["hr_l1"] != leak[1]["hr_l1"]  # iteration 2's NLL step also got iteration 1's pixel gradient


# -- data-parallel ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, runs: list, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    results = []
    try:
        for cfg, run_dir in runs:  # one process group for all runs
            trainer = Trainer(config_from_dict(cfg), run_dir=run_dir, quiet=True)
            results.append({"records": trainer.run(), "params": params(trainer)})
        torch.save(results, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_ddp_equals_one_process(tmp_path: Path) -> None:
    """2 Gloo processes with 2 samples each == 1 process with the global batch of 4.

    float64: weights and losses agree to 1e-6 after 3 iterations (in fact ~1e-12). float32: the
    losses of the first iteration agree to float rounding; later ones drift as any two float32
    runs with different reduction orders do (Adam turns gradients that are zero up to rounding,
    e.g. of freshly data-initialised ActNorm biases, into updates of the size of the lr).
    """
    runs = []
    for family, extra in (("hcflow_sr", {"losses": {"nll": 1.0, "hr_l1": 0.5}}), ("hcflow_rescaling", {})):
        for dtype, iterations in (("float64", 3), ("float32", 1)):
            cfg = tiny_config(
                family, train={"iterations": iterations, "dtype": dtype}, checkpoint={"every": 0}, **extra
            )
            runs.append((cfg, str(tmp_path / f"multi_{family}_{dtype}")))
    out = tmp_path / "ddp"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), runs, str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    for i, (cfg, run_dir) in enumerate(runs):
        single = make(cfg, tmp_path / f"single_{i}")
        single_records = single.run()
        multi = ranks[0][i]
        float64 = cfg["train"]["dtype"] == "float64"
        for key, value in params(single).items():
            assert torch.equal(ranks[0][i]["params"][key], ranks[1][i]["params"][key]), key  # ranks in sync
            if float64:
                torch.testing.assert_close(multi["params"][key], value, rtol=1e-6, atol=1e-6, msg=key)
        assert len(multi["records"]) == len(single_records) == cfg["train"]["iterations"]
        for a, b in zip(single_records, multi["records"]):
            # float32 SR: hr_l1 comes after iteration 1's NLL update, compare the NLL only
            keys = ("loss", "nll", "hr_l1", "lr_l2", "z_l2") if float64 or "nll" not in a else ("nll",)
            for key in keys:
                if key in a:
                    assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (cfg["train"], key, a, b)
        assert latest_checkpoint(run_dir) is not None  # written by rank 0


# -- non-finite losses --------------------------------------------------------------------------------


def test_non_finite_loss_skips_the_step_and_is_logged(tmp_path: Path) -> None:
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 2}, checkpoint={"every": 1})
    reference = make(cfg, tmp_path / "ref", **{"train.iterations": 1})
    reference.run()
    trainer = make(cfg, tmp_path / "nan")
    forward = trainer._g.forward

    def poisoned(task, *args, **kwargs):
        out = forward(task, *args, **kwargs)
        if trainer._step_for_test == 2:
            out["total"] = out["total"] * float("nan")
        return out

    original_step = trainer._train_step

    def step(s, batch):
        trainer._step_for_test = s
        return original_step(s, batch)

    trainer._g.forward = poisoned
    trainer._train_step = step
    records = trainer.run()
    assert [r["skipped"] for r in records] == [0.0, 1.0]
    assert math.isnan(records[1]["loss"])
    for k, v in params(reference).items():  # iteration 2 changed nothing
        assert torch.equal(v, trainer.model.state_dict()[k]), k
    assert trainer.skipped_total == 1 and math.isfinite(trainer.loss_ema)
    assert "iteration 2: skipped the loss loss is not finite" in (tmp_path / "nan" / "train.log").read_text()
    rows = list(csv.DictReader(open(tmp_path / "nan" / "log.csv")))
    assert rows[1]["skipped"] == "1.0"
    # a checkpoint is only written from finite weights
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    assert trainer.save_checkpoint() is None
    assert json.loads((tmp_path / "nan" / "checkpoints" / "latest.json").read_text())["iteration"] == 2


# -- checkpoints ----------------------------------------------------------------------------------------


def test_crash_during_save_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 2}, checkpoint={"every": 1})
    first = make(cfg, tmp_path)
    first.run()
    before = params(first)
    state_2 = (tmp_path / "checkpoints" / "iter_00000002.pt").read_bytes()

    real_atomic_write = checkpoints_mod.atomic_write

    def half_written(path, write):
        def partial(tmp):  # a partial file, then the disk is full
            Path(tmp).write_bytes(b"PK\x03\x04 truncated")
            raise OSError(errno.ENOSPC, "No space left on device")

        return real_atomic_write(path, partial)

    monkeypatch.setattr(checkpoints_mod, "atomic_write", half_written)
    second = make(cfg, tmp_path, **{"train.iterations": 3})
    with pytest.raises(TrainingError, match=r"no space left on device while writing \S*iter_00000003\.pt"):
        second.run()
    monkeypatch.undo()
    ckdir = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path) == ckdir / "iter_00000002.pt"
    assert (ckdir / "iter_00000002.pt").read_bytes() == state_2
    assert not (ckdir / "iter_00000003.pt").exists() and not list(ckdir.glob("*.tmp"))
    resumed = make(cfg, tmp_path, **{"train.iterations": 3})
    assert resumed.iteration == 2
    for k, v in before.items():
        assert torch.equal(v, resumed.model.state_dict()[k])
    # the weights file: an interrupted safetensors write never replaces the old file either
    import flowsr.models.checkpoint as model_ckpt

    monkeypatch.setattr(model_ckpt, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(TrainingError, match=r"cannot write \S*iter_00000002\.safetensors: killed"):
        resumed.save_checkpoint()
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == ckdir / "iter_00000002.pt"
    assert resumed.run()[0]["iteration"] == 3


def test_keep_last_n_best_and_logs(tmp_path: Path) -> None:
    cfg = tiny_config(
        "hcflow_rescaling",
        train={"iterations": 5},
        checkpoint={"every": 1, "keep_last": 2},
        log={"every": 2, "tensorboard": True, "plot": True},
    )
    make(cfg, tmp_path).run()
    ckdir = tmp_path / "checkpoints"
    names = sorted(p.name for p in ckdir.iterdir())
    assert [n for n in names if n.startswith("iter_")] == [
        "iter_00000004.pt",
        "iter_00000004.safetensors",
        "iter_00000005.pt",
        "iter_00000005.safetensors",
    ]
    assert {"best.pt", "best.safetensors", "best.json", "latest.json"} <= set(names)
    best = json.loads((ckdir / "best.json").read_text())
    assert best["metric"] == "loss_ema" and 1 <= best["iteration"] <= 5
    from flowsr.models.checkpoint import load, read_metadata

    assert read_metadata(ckdir / "iter_00000005.safetensors")["iteration"] == "5"
    assert load(ckdir / "best.safetensors").family == "hcflow_rescaling"
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["iteration"] for r in rows] == ["2", "4", "5"]  # every 2 and at the end
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.yaml").is_file() and "iter 5/5" in (tmp_path / "train.log").read_text()


def test_validation_picks_best(tmp_path: Path) -> None:
    cfg = tiny_config(
        "hcflow_rescaling",
        train={"iterations": 2},
        checkpoint={"every": 0},
        data={"exclude": ["36"]},
        val={"every": 1, "metric": "psnr_y", "data": {"source": "samples", "samples": "face_x8", "names": ["36"]}},
    )
    trainer = make(cfg, tmp_path)
    trainer.run()
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best["metric"] == "psnr_y" and 5 < best["value"] < 60
    assert "validation psnr_y" in (tmp_path / "train.log").read_text()


def test_resume_never_refuses_a_used_run_dir(tmp_path: Path) -> None:
    cfg = tiny_config("hcflow_rescaling", train={"iterations": 1}, checkpoint={"every": 1})
    make(cfg, tmp_path).run()
    with pytest.raises(trainer_mod.TrainingError, match="already holds checkpoints"):
        make(cfg, tmp_path, **{"train.resume": "never"})


# -- configs -----------------------------------------------------------------------------------------------


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'losses.nl'"):
        config_from_dict({"losses": {"nl": 1.0}})
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        config_from_dict({"trian": {}})
    with pytest.raises(ConfigError, match="optim.lr must be a number"):
        config_from_dict({"optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="model.family: unknown model family"):
        config_from_dict({"model": {"family": "glow"}})
    with pytest.raises(ConfigError, match=r"unknown key 'model.spec.stepz'"):
        make(tiny_config(model={"spec": {"stepz": 3}}), tmp_path)
    path = tmp_path / "r.yaml"
    path.write_text("losses:\n  lr_l2: 1e-5\noptim:\n  lr: 2.5e-4\n")  # YAML 1.1 reads 1e-5 as a string
    cfg = load_config(path, overrides=["train.iterations=7", "data.batch_size=2"])
    assert cfg.losses.lr_l2 == 1e-5 and cfg.name == "r" and cfg.train.iterations == 7 and cfg.data.batch_size == 2
    # a weight the family's objective does not use is an error, not silently ignored
    with pytest.raises(ConfigError, match="hcflow_sr family does not use losses.z_l2"):
        load_config(path, overrides=["losses.z_l2=1e-5"])
    with pytest.raises(ConfigError, match="perceptual_weights"):
        make(tiny_config(losses={"perceptual": 0.1}), tmp_path / "p")
    with pytest.raises(ConfigError, match="init_from"):
        make(tiny_config(model={"init_from": str(tmp_path / "missing.safetensors")}), tmp_path / "q")


# -- data ---------------------------------------------------------------------------------------------------


def test_patches_are_deterministic_aligned_and_sharded() -> None:
    cfg = config_from_dict(tiny_config("hcflow_rescaling", data={"patch_size": 32, "lr": "files"})).data
    with pytest.raises(ConfigError, match="x8, the model is x4"):
        list_images(cfg, 4)
    cfg.lr = "auto"
    ds = PatchDataset(cfg, 8, seed=1)
    a, b = ds[(2, 5, 1)], ds[(2, 5, 1)]
    assert torch.equal(a["hr"], b["hr"]) and a["hr"].shape == (3, 32, 32) and a["lr"].shape == (3, 4, 4)
    assert not torch.equal(ds[(2, 5, 2)]["hr"], a["hr"])
    full = StepBatchSampler(len(ds), 4, seed=1, start=0, end=3)
    shards = [StepBatchSampler(len(ds), 4, seed=1, start=0, end=3, rank=r, world=2) for r in range(2)]
    for batch, b0, b1 in zip(full, *shards):
        assert batch == b0 + b1
    # every image once per epoch
    keys = [k for step in range(1, 4) for k in full.keys(step)]
    assert sorted(k[0] for k in keys[:6]) == list(range(6))
    # with LR files (x8 faces), the patch is an aligned crop of the pair
    cfg.hflip = cfg.vflip = cfg.rot90 = False
    plain = PatchDataset(cfg, 8, seed=1)
    item = plain[(3, 7, 0)]
    hr_full, lr_full = plain.images.load(3)
    hits = [
        (y, x)
        for y in range(0, hr_full.shape[1] - 31, 8)
        for x in range(0, hr_full.shape[2] - 31, 8)
        if torch.equal(hr_full[:, y : y + 32, x : x + 32], item["hr"])
    ]
    assert len(hits) == 1
    y, x = hits[0]
    assert torch.equal(item["lr"], lr_full[:, y // 8 : y // 8 + 4, x // 8 : x // 8 + 4])


# -- losses --------------------------------------------------------------------------------------------------


def test_vgg19_loads_torchvision_layout_and_reports_missing_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = VGG19Features().state_dict()
    assert list(state)[-2:] == ["features.34.weight", "features.34.bias"] and len(state) == 32
    path = tmp_path / "vgg19.pth"
    torch.save({**{f"module.{k}": v for k, v in state.items()}, "classifier.0.weight": torch.zeros(2)}, path)
    loss = PerceptualLoss(path)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    value = loss(x, torch.rand(1, 3, 32, 32))
    value.backward()
    assert value > 0 and x.grad is not None and not any(p.requires_grad for p in loss.parameters())
    assert torch.equal(load_vgg19_state(path)["features.0.weight"], state["features.0.weight"])
    with pytest.raises(FileNotFoundError, match="never downloads"):
        PerceptualLoss(tmp_path / "absent.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="lack"):
        PerceptualLoss(tmp_path / "bad.pth")


def test_discriminator_and_gan_losses() -> None:
    d = VGGDiscriminator()
    assert sum(p.numel() for p in d.parameters()) == 14_960_201  # official discriminator_vgg_160
    small = VGGDiscriminator(nf=8, input_size=32)
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 1)
    with pytest.raises(ValueError, match="input must be 32x32"):
        small(torch.rand(2, 3, 64, 64))
    logits = torch.tensor([[0.0], [2.0]])
    assert GANLoss("vanilla")(logits, True) == pytest.approx(
        float(torch.nn.functional.softplus(-logits).mean()), rel=1e-6
    )
    assert GANLoss("lsgan")(logits, False) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "family,extra",
    [
        ("srflow", {"model": {"preset": "DF2K_4X"}, "losses": {"nll": 1.0, "hr_l1": 0.1}}),
        ("irn", {"losses": {"nll": 0.0}}),
    ],
)
def test_srflow_and_irn_families_train(tmp_path: Path, family: str, extra: dict) -> None:
    trainer = make(tiny_config(family, train={"iterations": 2}, checkpoint={"every": 2}, **extra), tmp_path)
    records = trainer.run()
    assert len(records) == 2 and all(math.isfinite(r["loss"]) and r["skipped"] == 0 for r in records)
    assert set(trainer.terms) == ({"fit", "ce", "rec"} if family == "irn" else {"nll", "hr_l1"})
    with pytest.raises(ConfigError, match="the irn family does not use losses.nll"):
        config_from_dict(tiny_config("irn"))  # nll 1.0 is not an IRN loss


@pytest.mark.parametrize("mode", ["all", "latent", "none"])
def test_actnorm_init_modes(tmp_path: Path, mode: str) -> None:
    """``latent`` data-initialises only the ActNorms off the main flow; ``none`` none of them."""
    cfg = tiny_config("hcflow_rescaling", model={"actnorm_init": mode}, optim={"lr": 1e-7})
    trainer = make(cfg, tmp_path / mode, **{"train.iterations": 1})
    trainer.run()
    levels = trainer.model.flow.levels

    def largest_bias(parts) -> float:
        return max(float(m.bias.detach().abs().max()) for p in parts for m in p.modules() if isinstance(m, ActNorm))

    body, latent = largest_bias(lv.body for lv in levels), largest_bias(lv.latent for lv in levels)
    # A data initialisation moves a bias far from 0; one Adam step of lr 1e-7 moves it by ~1e-7.
    assert (body > 1e-3) == (mode == "all")
    assert (latent > 1e-3) == (mode != "none")


def test_folder_data_pairs_lr_files_by_the_one_rule(tmp_path: Path) -> None:
    """Training pairs HR and LR files like ``flowsr test`` (flowsr.data.pairs): ``<stem>`` or the
    DIV2K/BasicSR ``<stem>x<scale>``, any image extension; two images of one stem are an error."""
    from flowsr.data import write_image
    from flowsr.train.config import DataConfig
    from flowsr.train.data import list_images

    hr, lr = tmp_path / "HR", tmp_path / "LR"
    hr.mkdir()
    lr.mkdir()
    for stem in ("a", "b"):
        write_image(hr / f"{stem}.png", torch.rand(3, 16, 16))
    write_image(lr / "ax4.png", torch.rand(3, 4, 4))
    write_image(lr / "b.webp", torch.rand(3, 4, 4))
    cfg = DataConfig(source="folders", hr_dir=str(hr), lr_dir=str(lr), lr="files")
    records = list_images(cfg, 4)
    assert [(r.name, r.lr.name) for r in records] == [("a", "ax4.png"), ("b", "b.webp")]
    write_image(lr / "b.png", torch.rand(3, 4, 4))
    with pytest.raises(ConfigError, match="lr_dir: .* has two images named 'b'"):
        list_images(cfg, 4)
