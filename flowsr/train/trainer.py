"""The training loop: :class:`Trainer` (``Trainer(recipe).run()``).

The trainer owns the loop and composes one collaborator per job:

* :mod:`~flowsr.train.objectives` -- what an iteration does (phases, losses, optimiser steps);
* :mod:`~flowsr.train.noise` -- the random tensors of each iteration (named, reproducible streams);
* :mod:`~flowsr.train.distribution` -- the data-parallel processes;
* :mod:`~flowsr.train.runlog` -- log lines, ``log.csv``, TensorBoard, ``curves.png``;
* :mod:`~flowsr.train.checkpoints` -- saving, pruning, the best checkpoint, resuming with fallback;
* :mod:`~flowsr.train.lock` -- one training process per run folder.

Determinism: all randomness of iteration ``i`` (data order, crops, flips, dequantisation noise,
latents) comes from generators seeded by ``(seed, i, what)`` for the whole global batch, sliced to
this process's part. A resumed run repeats an uninterrupted one exactly, and ``N`` data-parallel
processes compute the same losses as one process on the same global batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from flowsr.fileio import atomic_write
from flowsr.layers.actnorm import ActNorm, skip_data_init
from flowsr.train.build import build_model
from flowsr.train.checkpoints import CheckpointStore, DamagedCheckpoint, latest_checkpoint
from flowsr.train.config import TrainingConfig, available_cores, config_from_dict, config_to_dict, load_config
from flowsr.train.data import PatchDataset, StepBatchSampler, ValDataset, collate, make_train_loader
from flowsr.train.distribution import Distribution, resolve_device
from flowsr.train.errors import ConfigError, TrainingError
from flowsr.train.lock import RunLock
from flowsr.train.noise import StepNoise, rng_state, seed_everything, set_rng_state
from flowsr.train.objectives import make_objective
from flowsr.train.plugins import import_plugins
from flowsr.train.runlog import RunLog, write_errors
from flowsr.train.validation import LOWER_IS_BETTER, validate

__all__ = ["Trainer", "TrainingError", "latest_checkpoint"]


def _finite(x: float) -> bool:
    return math.isfinite(x)


class Trainer:
    """Train a flowsr model from a recipe.

    Args:
        config: a :class:`TrainingConfig`, a recipe path, or the name of a bundled recipe.
        overrides: dotted-key overrides (``["train.iterations=10"]`` or ``{"train.iterations": 10}``).
        run_dir: overrides ``train.run_dir`` (default ``runs/<name>``).
        quiet: no log lines on stderr (the log file, CSV, TensorBoard and plot are still written).

    ``Trainer(...)`` builds everything and, with ``train.resume: auto``, loads the run folder's
    latest usable checkpoint; :meth:`run` trains up to ``train.iterations`` and returns the
    per-iteration records of this call (dicts of floats: ``iteration``, ``lr``, ``loss``, each loss
    term, ``skipped``, ``grad_norm``). Attributes: ``model`` (the bare model), ``iteration`` (last
    completed), ``run_dir``, ``objective``, ``checkpoints``, ``runlog``.
    """

    def __init__(
        self,
        config: TrainingConfig | str | os.PathLike,
        *,
        overrides: dict | list | None = None,
        run_dir: str | os.PathLike | None = None,
        quiet: bool = False,
    ):
        if not isinstance(config, TrainingConfig):
            config = load_config(config, overrides)
        elif overrides:
            from flowsr.train.coerce import apply_overrides

            config = config_from_dict(apply_overrides(config_to_dict(config), overrides))
        self.cfg = cfg = config.validate()
        self.quiet = quiet
        self.dist = Distribution.from_env(cfg.train.device)
        self.device = resolve_device(cfg.train.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else cfg.run_dir()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.runlog = RunLog(self.run_dir, cfg.name, main=self.dist.main, quiet=quiet)
        self.checkpoints = CheckpointStore(self.ckpt_dir, cfg.checkpoint.keep_last, self.log)
        self.lock = RunLock(self.run_dir, self.log) if self.dist.main else None
        with self._locked():  # refused at once when another process trains here
            if self.dist.main:
                self.checkpoints.clean_temp_files(self.run_dir)
        threads, cores = cfg.train.threads, available_cores()
        if threads:
            torch.set_num_threads(threads)
            if threads > cores:
                self.log(f"warning: train.threads {threads} is more than the {cores} usable cores (slower)")
        self.family = cfg.model.family
        import_plugins(cfg.imports)

        seed_everything(cfg.train.seed)
        self.dtype = getattr(torch, cfg.train.dtype)
        self.model = build_model(cfg.model).to(self.device, self.dtype)
        if cfg.model.actnorm_init == "none":
            skip_data_init(self.model)
        elif cfg.model.actnorm_init == "latent":
            levels = getattr(getattr(self.model, "flow", None), "levels", None)
            if levels is None:
                raise ConfigError("config: model.actnorm_init 'latent' needs a model built on a hierarchical flow")
            for level in levels:
                skip_data_init(level.body)
        self.model.train()
        self.scale = int(self.model.scale)
        self.objective = make_objective(
            self.model, cfg, device=self.device, dtype=self.dtype, dist=self.dist, log=self.log
        )

        self.train_set = PatchDataset(cfg.data, self.scale, cfg.train.seed)
        self.val_set = None
        if cfg.val.every and cfg.val.data is not None:
            multiple = self.scale * self.model.lr_multiple
            self.val_set = ValDataset(cfg.val.data, self.scale, multiple, cfg.val.max_images)

        self.iteration = 0
        self.loss_ema: float | None = None
        self.best: dict | None = None  # {"metric", "value", "iteration"}
        self.runlog.configure(self.terms, cfg.val.metric if self.val_set is not None else None)
        self._window: list[dict] = []
        self._last_saved = -1
        self._resumed_from: Path | None = None
        self._bar: Any = None
        self._resume()

    # -- what the collaborators hold ------------------------------------------------------------
    @property
    def terms(self) -> list[str]:
        """The logged loss terms (the CSV columns besides ``loss``)."""
        return self.objective.terms

    @property
    def skipped_total(self) -> int:
        return self.objective.events.skipped_total

    @property
    def _g(self) -> torch.nn.Module:
        """The module every gradient-carrying model call goes through."""
        return self.objective.calls

    def log(self, message: str) -> None:
        """A line in ``train.log`` (rank 0) and, unless quiet, on stderr."""
        self.runlog.line(message)

    def read_log(self) -> list[dict]:
        """The rows of ``log.csv`` as dicts of floats (validation rows: only ``val_<metric>``)."""
        return self.runlog.read()

    def plot(self) -> Path | None:
        """Write ``curves.png`` from ``log.csv`` (``None`` without rows or matplotlib)."""
        return self.runlog.plot()

    # -- the run folder lock ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the run folder's lock (rank 0); every process stops if it cannot be taken."""
        error = None
        if self.lock is not None:
            try:
                self.lock.acquire()
            except TrainingError as err:
                error = err
        if not self.dist.agree(error is None, self.device):
            raise error or TrainingError(f"the run folder {self.run_dir} is in use by another training process")
        try:
            yield
        finally:
            if self.lock is not None:
                self.lock.release()

    # -- checkpoints -----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "family": self.family,
            "config": config_to_dict(self.cfg),
            "rng": rng_state(),
            "loss_ema": self.loss_ema,
            "best": self.best,
            "skipped_total": self.skipped_total,
            "world_size": self.dist.world,
            **self.objective.state_dict(),
        }

    def _params_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def save_checkpoint(self, tag: str | None = None) -> Path | None:
        """Write ``checkpoints/<tag>.safetensors`` (the model) and ``<tag>.pt`` (the training state);
        periodic ones (``tag`` None) update ``latest.json`` and prune. Returns the ``.pt`` path
        (``None`` on other ranks or when the weights are not finite: such weights are never saved)."""
        if not self.dist.main:
            return None
        if not self._params_finite():
            self.log(f"iteration {self.iteration}: NOT saving a checkpoint: the weights are not finite")
            return None
        path = self.checkpoints.save(tag, self.model, self._state(), self.iteration, self.cfg.name)
        if tag is None:
            self._last_saved = self.iteration
        return path

    def _resume(self) -> None:
        resume = self.cfg.train.resume
        if resume == "never":
            if self.checkpoints.candidates():
                raise TrainingError(
                    f"{self.run_dir} already holds checkpoints and train.resume is 'never': "
                    "choose another train.run_dir or set train.resume: auto"
                )
            return
        if resume != "auto":
            if not Path(resume).is_file():
                raise ConfigError(f"config: train.resume {resume!r} does not exist")
            self.load_checkpoint(resume)
            return
        damaged: list[DamagedCheckpoint] = []
        for path in self.checkpoints.candidates():
            try:
                found = self.checkpoints.read(path, self.device)
            except DamagedCheckpoint as err:
                damaged.append(err)
                self.log(f"cannot resume from {err}; trying the previous checkpoint")
                continue
            self._apply(path, *found)
            break
        else:
            if damaged:
                raise TrainingError(
                    f"no usable checkpoint in {self.ckpt_dir}: "
                    + "; ".join(str(d) for d in damaged)
                    + " (move them away to start the run again from scratch)"
                )
        if damaged:
            self.dist.barrier()  # every process has read the checkpoints before they move
            moved = self.checkpoints.set_aside(damaged) if self.dist.main else None
            self.log(
                f"resumed from the previous good checkpoint {self._resumed_from} (iteration {self.iteration})"
                + (f"; the damaged files are in {moved}" if moved else "")
            )

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore weights and training state from a ``.pt`` written by :meth:`save_checkpoint`
        (:class:`TrainingError` naming the file when it is damaged or does not fit the config)."""
        try:
            found = self.checkpoints.read(Path(path), self.device)
        except DamagedCheckpoint as err:
            raise TrainingError(f"cannot resume: {err}") from None
        self._apply(Path(path), *found)

    def _apply(self, path: Path, state: dict, weights: dict, metadata: dict) -> None:
        trained = state["family"]
        if trained != self.family or metadata.get("family") != self.family:
            raise TrainingError(f"{path} trained a {trained!r} model, the config a {self.family!r} one")
        try:
            self.model.load_state_dict(weights, strict=True)
        except RuntimeError as err:
            raise TrainingError(
                f"cannot resume from {path}: it does not match the configured model ({str(err).splitlines()[0]})"
            ) from None
        if state.get("config", {}).get("model") != config_to_dict(self.cfg)["model"]:
            self.log("warning: the model section of the config changed since the checkpoint was written")
        for note in self.objective.load_state_dict(state, path):
            self.log(note)
        set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.loss_ema = state.get("loss_ema")
        self.best = state.get("best")
        self.objective.events.skipped_total = int(state.get("skipped_total", 0))
        self._last_saved = self.iteration
        self._resumed_from = path
        if state.get("world_size", 1) != self.dist.world:
            self.log(
                f"note: resuming a {state.get('world_size', 1)}-process run with {self.dist.world} process(es); "
                "the global batch and the results are the same"
            )

    def _consider_best(self, metric: str, value: float | None) -> None:
        if value is None or not self.cfg.checkpoint.best or not _finite(value):
            return
        if self.best is not None and self.best.get("metric") == metric:
            better = value < self.best["value"] if metric in LOWER_IS_BETTER else value > self.best["value"]
            if not better:
                return
        self.best = {"metric": metric, "value": float(value), "iteration": self.iteration}
        if self.save_checkpoint("best") is not None:
            self.checkpoints.write_json("best.json", self.best)
            self.log(f"iteration {self.iteration}: new best {metric} {value:.5g}")

    # -- one iteration -----------------------------------------------------------------------------
    def _train_step(self, step: int, batch: dict) -> dict:
        """Iteration ``step`` on ``batch`` (this process's part): the objective with its noise."""
        b = self.cfg.data.batch_size
        noise = StepNoise(self.cfg.train.seed, step, b, self.dist.slots(b), self.device, self.dtype)
        return self.objective.iteration(step, batch["hr"], batch["lr"], noise)

    def _needs_data_init(self) -> bool:
        return any(isinstance(m, ActNorm) and not m.is_initialized for m in self.model.modules())

    @torch.no_grad()
    def _data_init(self, sampler: StepBatchSampler, step: int) -> None:
        """One-time ActNorm data initialisation on the first batch -- the *global* batch, with
        the iteration's own noise, in every process, so all processes (and a single-process
        run) get the same initial weights."""
        batch = collate([self.train_set[k] for k in sampler.keys(step)])
        hr, lr = batch["hr"].to(self.device, self.dtype), batch["lr"].to(self.device, self.dtype)
        b = self.cfg.data.batch_size
        noise = StepNoise(self.cfg.train.seed, step, b, range(b), self.device, self.dtype)
        self.model.train()
        self.objective.data_init(hr, lr, noise)
        self.log(f"ActNorm data initialisation on the first batch ({b} samples)")

    @torch.no_grad()
    def validate(self) -> float | None:
        """The validation metric (``val.metric``) over the validation images, or ``None``."""
        if self.val_set is None:
            return None
        return validate(
            self.model, self.val_set, self.cfg.val, seed=self.cfg.train.seed, device=self.device, dtype=self.dtype
        )

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        """Train from the current iteration to ``train.iterations``; returns this call's records.

        Raises :class:`TrainingError` when the run folder is in use, a write fails (``no space left
        on device while writing <file>``), every optimiser step of the call was skipped, or the
        weights end up non-finite."""
        end, start = self.cfg.train.iterations, self.iteration
        if self._resumed_from is not None:
            self.log(f"resumed from {self._resumed_from} at iteration {start}")
        if start >= end:  # a no-op: nothing in the run folder changes
            self.log(f"nothing to do: iteration {start} of {end} already done")
            return []
        with self._locked():
            return self._train(start, end)

    def _train(self, start: int, end: int) -> list[dict]:
        cfg = self.cfg
        if self.dist.main:
            written = config_to_dict(cfg)
            written["train"]["run_dir"] = str(self.run_dir.resolve())  # resumable from its config anywhere
            text = yaml.safe_dump(written, sort_keys=False)
            with write_errors(self.run_dir / "config.yaml"):
                atomic_write(self.run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(text))
            with write_errors(self.runlog.csv_path):
                self.runlog.truncate(start)
        nparams = sum(p.numel() for p in self.model.parameters())
        self.log(
            f"training {cfg.name}: {self.family} x{self.scale}, {nparams:,} parameters, iterations {start + 1}..{end}, "
            f"batch {cfg.data.batch_size} ({self.dist.world} process(es)), device {self.device}"
        )
        self._note_missing_tools()
        sampler = StepBatchSampler(
            len(self.train_set), cfg.data.batch_size, cfg.train.seed, start, end, self.dist.rank, self.dist.world
        )
        if self._needs_data_init():
            self._data_init(sampler, start + 1)
        self.objective.wrap()
        if cfg.log.tensorboard:
            self.runlog.open_tensorboard(purge_step=start + 1)
        loader = iter(make_train_loader(self.train_set, sampler, cfg.data.workers))
        records: list[dict] = []
        taken, skipped = self.objective.events.taken, self.skipped_total
        if self._show_progress():
            from tqdm.auto import tqdm

            self._bar = self.runlog.bar = tqdm(total=end, initial=start, dynamic_ncols=True, desc=cfg.name, unit="it")
        t0 = t_window = time.perf_counter()
        n_window = 0
        try:
            for step in range(start + 1, end + 1):
                batch = next(loader)
                batch = {k: v.to(self.device, self.dtype, non_blocking=True) for k, v in batch.items() if k != "index"}
                rec = self.dist.mean(self._train_step(step, batch), self.device)
                events = self.objective.events
                rec.update(iteration=step, lr=self.objective.generator.lr, skipped=float(events.skipped))
                rec["grad_norm"] = events.grad_norm
                self.iteration = step
                records.append(rec)
                loss = rec.get("loss", float("nan"))
                if events.skipped == 0 and _finite(loss):
                    a = cfg.log.ema
                    self.loss_ema = loss if self.loss_ema is None else a * self.loss_ema + (1 - a) * loss
                self._window.append(rec)
                n_window += 1
                if self._bar is not None:
                    self._bar.update(1)
                if step % cfg.log.every == 0 or step == end:
                    now = time.perf_counter()
                    self._flush_window(step, end, now - t0, n_window / max(now - t_window, 1e-9))
                    t_window, n_window = now, 0
                if cfg.val.every and self.val_set is not None and (step % cfg.val.every == 0 or step == end):
                    self._validate_and_pick_best(step)
                if cfg.checkpoint.every and step % cfg.checkpoint.every == 0 or step == end:
                    self._checkpoint(step)
        except TrainingError as err:
            self.runlog.line(f"stopped: {err}", echo=False)  # the caller reports it on the terminal
            raise
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = self.runlog.bar = None
            self.runlog.close()
        elapsed = time.perf_counter() - t0
        self.log(f"done: iteration {self.iteration}, {elapsed:.1f} s, {self.skipped_total} skipped steps in total")
        if cfg.log.plot:
            self._plot()
        self._check_outcome(start, taken, skipped)
        return records

    def _check_outcome(self, start: int, taken: int, skipped: int) -> None:
        """A run that changed nothing or diverged must not look like a success."""
        if self.objective.events.taken == taken and self.skipped_total > skipped:
            raise TrainingError(
                f"every optimiser step of iterations {start + 1}..{self.iteration} was skipped (non-finite losses "
                f"or gradients, see {self.run_dir / 'train.log'}): the weights did not change"
            )
        if not self._params_finite():
            last = latest_checkpoint(self.run_dir)
            raise TrainingError(
                f"the weights are not finite after iteration {self.iteration} (training diverged); "
                + (f"the last good checkpoint is {last}" if last else "no checkpoint was written")
            )

    def _show_progress(self) -> bool:
        p = str(self.cfg.log.progress).lower()
        if not self.dist.main or self.quiet and p == "auto":
            return False
        if p in ("true", "false"):
            return p == "true"
        return sys.stderr.isatty() and not os.environ.get("CI")

    def _note_missing_tools(self) -> None:
        log = self.cfg.log
        log.tensorboard, log.plot = self.runlog.note_missing_tools(log.tensorboard, log.plot)

    def _plot(self) -> None:
        try:
            self.runlog.plot()
        except OSError as err:  # the plot is a convenience: a failed write must not end the run
            self.log(f"curves.png not written: {err}")

    def _validate_and_pick_best(self, step: int) -> None:
        value = self.validate() if self.dist.main else None
        if value is not None:
            self.log(f"iteration {step}: validation {self.cfg.val.metric} {value:.4f}")
            with write_errors(self.runlog.csv_path):
                self.runlog.validation(step, value)
            self._consider_best(self.cfg.val.metric, value)
        self.dist.barrier()

    def _checkpoint(self, step: int) -> None:
        if self.dist.main:
            if self._last_saved != step:
                self.save_checkpoint()
            if self.val_set is None and self.loss_ema is not None:
                self._consider_best("loss_ema", self.loss_ema)
            if self.cfg.log.plot:
                self._plot()
            self.runlog.flush()
        self.dist.barrier()

    def _flush_window(self, step: int, end: int, elapsed: float, speed: float) -> None:
        window, self._window = self._window, []
        if not self.dist.main or not window:
            return
        row: dict[str, Any] = {"iteration": step}
        for key in ("lr", "loss", *self.terms, "grad_norm"):
            vals = [r[key] for r in window if key in r and _finite(r[key])]
            row[key] = float(np.mean(vals)) if vals else float("nan")
        row["lr"] = window[-1]["lr"]
        row["skipped"] = float(sum(r["skipped"] for r in window))
        row["time_s"] = round(elapsed, 3)
        row["it_per_s"] = round(speed, 4)
        with write_errors(self.runlog.csv_path):
            self.runlog.train_window(row)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.2g}", refresh=False)
        else:
            eta = (end - step) / max(speed, 1e-9)
            terms = " ".join(f"{k} {row[k]:.4g}" for k in self.terms if k in row)
            self.log(
                f"iter {step}/{end} loss {row['loss']:.5g} ({terms}) lr {row['lr']:.3g} "
                f"{speed:.2f} it/s ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}"
            )
