"""What one training iteration does to a model: its phases, losses and optimiser steps.

:func:`make_objective` picks the objective by the model's ``task``:

* :class:`WholeObjective` (rescaling families): the family's ``training_losses`` is the whole
  objective; one backward, clipping and Adam step per iteration (hcflow-spec §6.3).
* :class:`SRObjective` (SR families), the official HCFlow SR order (hcflow-spec §6.2): if the
  generator is updated this iteration (``i % update_ratio == 0 and i > init_iters``, or no GAN):
  (a) the likelihood phase, the family's ``training_losses`` (with ``train.legacy_grad_leak``
  without clearing the gradients first, as the official code); (b) the pixel phase on a sample
  at ``hr_temperature`` (the mean sample); (c) the perceptual + GAN phase on a sample at
  ``sample_temperature``, the discriminator frozen -- each phase its own backward, clipping and
  Adam step. Then, with a GAN, one discriminator step on the real HR and the detached sample
  of (c) (during the warm-up a sample drawn without gradients).

Every iteration starts with the learning-rate schedules (:meth:`Objective.iteration`), so the
trainer and the official-parity replay (:mod:`flowsr.train.parity`) run exactly this code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from flowsr.models.base import FlowSRModel, NoiseSource
from flowsr.train.adversarial import Adversary
from flowsr.train.config import TrainingConfig
from flowsr.train.distribution import Distribution, ModelCalls
from flowsr.train.errors import ConfigError, TrainingError
from flowsr.train.losses import PerceptualLoss, pixel_loss
from flowsr.train.optim import StepEvents, Updater

__all__ = ["Objective", "SRObjective", "WholeObjective", "make_objective"]


class Objective:
    """The per-iteration training of ``model`` (subclasses implement :meth:`phases`).

    Args:
        model: the flowsr model (in train mode).
        cfg: the training config (``losses``, ``optim``, ``discriminator``, ``train``).
        device, dtype: where the training runs.
        dist: the data-parallel processes.
        log: where log lines go (skipped steps).

    Attributes: ``generator`` (the :class:`Updater` of the model's parameters), ``events``
    (skips, gradient norm), ``calls`` (the module every gradient-carrying model call goes
    through; DDP wraps it), ``terms`` (the names of the logged loss terms).
    """

    def __init__(
        self,
        model: FlowSRModel,
        cfg: TrainingConfig,
        *,
        device: torch.device,
        dtype: torch.dtype,
        dist: Distribution | None = None,
        log: Any = None,
    ):
        self.model, self.cfg, self.device, self.dtype = model, cfg, device, dtype
        self.dist = dist or Distribution()
        self.events = StepEvents(log or (lambda message: None))
        self.weights: dict[str, Any] = dataclasses.asdict(cfg.losses)
        self.calls: nn.Module = ModelCalls(model)
        self._g: nn.Module = self.calls  # the DDP wrapper once wrap() ran
        self._build_extras()
        o = cfg.optim
        self.generator = Updater(
            [p for p in model.parameters() if p.requires_grad],
            lr=o.lr,
            betas=o.betas,
            eps=o.eps,
            weight_decay=o.weight_decay,
            milestones=cfg.milestones(),
            gamma=o.gamma,
            clip_value=o.clip_value,
            clip_norm=o.clip_norm,
            dist=self.dist,
            events=self.events,
        )
        self.terms: list[str] = self._term_names()

    # -- for subclasses -----------------------------------------------------------------------
    def _build_extras(self) -> None:
        """Build loss networks (before the optimisers; their construction draws from the RNG)."""

    def _term_names(self) -> list[str]:
        return list(self.model.loss_terms(self.weights))

    def phases(self, step: int, hr: Tensor, lr: Tensor, noise: NoiseSource, record: dict[str, float]) -> None:
        """The updates of iteration ``step``; fills ``record`` with the logged terms and ``loss``."""
        raise NotImplementedError

    def data_init(self, hr: Tensor, lr: Tensor, noise: NoiseSource) -> None:
        """The forward pass that data-initialises the ActNorms (no gradients)."""
        self.model.encode(hr, lr)

    @property
    def adversary(self) -> Adversary | None:
        return None

    # -- the iteration ---------------------------------------------------------------------------
    def iteration(self, step: int, hr: Tensor, lr: Tensor, noise: NoiseSource) -> dict[str, float]:
        """Iteration ``step`` (1-based): the schedules advance, then the phases run. Returns the
        logged terms and ``loss`` (this process's values)."""
        self.events.begin()
        self.generator.schedule()
        if self.adversary is not None:
            self.adversary.updater.schedule()
        record: dict[str, float] = {}
        self.phases(step, hr, lr, noise, record)
        return record

    def wrap(self) -> None:
        """Put the gradient-carrying calls into ``DistributedDataParallel`` (several processes)."""
        if self.dist.enabled and self._g is self.calls:
            self._g = self.dist.wrap(self.calls, self.device, self.model.has_unused_parameters)
            if self.adversary is not None:
                self.adversary.wrap(self.dist, self.device)

    def _latents(self, noise: NoiseSource, name: str, lr: Tensor, temperature: float) -> list[Tensor]:
        shapes = [tuple(s[1:]) for s in self.model.latent_shapes(lr.shape[-2:], 1)]
        return noise.normal(name, shapes, temperature)

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Optimiser and schedule states (and the discriminator's, and the carried gradient)."""
        optimizer, scheduler = self.generator.state_dict()
        state = {"optimizer_g": optimizer, "scheduler_g": scheduler}
        if self.adversary is not None:
            state.update(self.adversary.state_dict())
        if self.cfg.train.legacy_grad_leak:
            # the gradient carried into the next likelihood step (hcflow-spec §9.6) is training state
            state["grads"] = [None if p.grad is None else p.grad.detach().cpu().clone() for p in self.generator.params]
        return state

    def load_state_dict(self, state: dict, source: Any = "the checkpoint") -> list[str]:
        """Restore :meth:`state_dict`; the schedules follow the config. Returns notes to log."""
        self.generator.load_state_dict(state["optimizer_g"], state["scheduler_g"])
        notes = [self.generator.follow_schedule(self.cfg.milestones(), self.cfg.optim.gamma)]
        if self.adversary is not None:
            if "discriminator" not in state:
                raise TrainingError(f"{source} has no discriminator state but the config trains a GAN")
            self.adversary.load_state_dict(state)
            notes.append(self.adversary.updater.follow_schedule(self.cfg.milestones(), self.cfg.optim.gamma))
        if "grads" in state:
            for p, g in zip(self.generator.params, state["grads"]):
                p.grad = None if g is None else g.to(p.device)
        return [n for n in notes if n]


class WholeObjective(Objective):
    """One step per iteration on the family's whole objective (``training_losses``)."""

    def phases(self, step: int, hr: Tensor, lr: Tensor, noise: NoiseSource, record: dict[str, float]) -> None:
        self.generator.zero_grad()
        terms = self._g("training_losses", hr, lr, noise, self.weights)
        for k, v in terms.items():
            record["loss" if k == "total" else k] = float(v.detach())
        self.generator.step(terms["total"], "loss", step)


class SRObjective(Objective):
    """The likelihood, pixel, perceptual + GAN phases and the discriminator step (module docstring)."""

    def _build_extras(self) -> None:
        losses = self.cfg.losses
        self.hr_temperature = losses.hr_temperature if losses.hr_temperature is not None else 0.0
        self.perceptual: PerceptualLoss | None = None
        if losses.perceptual > 0:
            if not losses.perceptual_weights:
                raise ConfigError("config: losses.perceptual > 0 needs losses.perceptual_weights (a local VGG19 file)")
            self.perceptual = PerceptualLoss(losses.perceptual_weights, losses.perceptual_criterion)
            self.perceptual = self.perceptual.to(self.device, self.dtype)
        self._adversary = (
            Adversary(self.cfg, self.device, self.dtype, self.dist, self.events) if losses.gan > 0 else None
        )

    @property
    def adversary(self) -> Adversary | None:
        return self._adversary

    def _term_names(self) -> list[str]:
        names = super()._term_names()
        names += [n for n in ("hr_l1", "hr_l2", "perceptual") if getattr(self.cfg.losses, n)]
        if self.adversary is not None:
            names += ["gan_g", "d_real", "d_fake", "d_real_logit", "d_fake_logit"]
        return names

    def data_init(self, hr: Tensor, lr: Tensor, noise: NoiseSource) -> None:
        # the official initialisation happens in the likelihood pass, on the dequantised HR
        self.model.training_losses(hr, lr, noise, self.weights)

    def updates_generator(self, step: int) -> bool:
        """Whether iteration ``step`` updates the generator (always without a GAN; with one after
        the warm-up ``discriminator.init_iters``, every ``update_ratio``-th iteration)."""
        d = self.cfg.discriminator
        return self.adversary is None or (step % d.update_ratio == 0 and step > d.init_iters)

    def phases(self, step: int, hr: Tensor, lr: Tensor, noise: NoiseSource, record: dict[str, float]) -> None:
        l = self.cfg.losses
        total, sample = 0.0, None
        update_g = self.updates_generator(step)
        if update_g:
            # (a) the likelihood phase (NLL, plus any LR terms of the family)
            if not self.cfg.train.legacy_grad_leak:
                self.generator.zero_grad()
            if self.model.loss_terms(self.weights):
                terms = self._g("training_losses", hr, lr, noise, self.weights)
                loss = terms.pop("total")
                record.update({k: float(v.detach()) for k, v in terms.items()})
                total += float(loss.detach())
                self.generator.step(loss, "NLL", step)
            self.generator.zero_grad()
            # (b) the pixel phase on the sample at hr_temperature (the mean sample by default)
            if l.hr_l1 or l.hr_l2:
                sr0 = self._g("decode", lr, self._latents(noise, "pixel", lr, self.hr_temperature)).clamp(0, 1)
                loss = 0.0
                for name, criterion in (("hr_l1", "l1"), ("hr_l2", "l2")):
                    if getattr(l, name):
                        term = getattr(l, name) * pixel_loss(sr0, hr, criterion)
                        record[name] = float(term.detach())
                        loss = loss + term
                total += float(loss.detach())
                self.generator.step(loss, "pixel", step)
            # (c) the perceptual + GAN phase on a sample at sample_temperature
            if self.perceptual is not None or self.adversary is not None:
                self.generator.zero_grad()
                sample = self._g("decode", lr, self._latents(noise, "sample", lr, l.sample_temperature)).clamp(0, 1)
                loss = 0.0
                if self.perceptual is not None:
                    term = l.perceptual * self.perceptual(sample, hr)
                    record["perceptual"] = float(term.detach())
                    loss = loss + term
                if self.adversary is not None:
                    term = l.gan * self.adversary.generator_loss(sample)
                    record["gan_g"] = float(term.detach())
                    loss = loss + term
                total += float(loss.detach())
                self.generator.step(loss, "perceptual/GAN", step)
        if self.adversary is not None:
            self.generator.zero_grad()
            if sample is None:  # the warm-up: the discriminator's fake, without gradients
                with torch.no_grad():
                    zs = self._latents(noise, "sample", lr, l.sample_temperature)
                    sample = self.model.decode(lr, zs).clamp(0, 1)
            self.adversary.step(hr, sample, step, record)
        record["loss"] = total if update_g else float("nan")


def make_objective(
    model: FlowSRModel,
    cfg: TrainingConfig,
    *,
    device: torch.device,
    dtype: torch.dtype,
    dist: Distribution | None = None,
    log: Any = None,
) -> Objective:
    """The objective of ``model``'s task (:class:`SRObjective` for ``"sr"``, else :class:`WholeObjective`)."""
    cls = SRObjective if model.task == "sr" else WholeObjective
    return cls(model, cfg, device=device, dtype=dtype, dist=dist, log=log)
