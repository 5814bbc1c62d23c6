"""The adversary of the SR GAN phase: :class:`Adversary` holds the discriminator (the official
``discriminator_vgg_160``, generalised to any width and input size), its Adam optimiser and
schedule, and the GAN losses of both sides.

As in the official HCFlow code the discriminator always runs in train mode (BatchNorm with batch
statistics, running statistics updated by every forward, also the generator's), is frozen
(``requires_grad`` off) while the generator's GAN loss is back-propagated, and its steps are not
clipped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowsr.train.config import TrainingConfig
from flowsr.train.distribution import Distribution
from flowsr.train.errors import ConfigError
from flowsr.train.losses import GANLoss, VGGDiscriminator
from flowsr.train.optim import StepEvents, Updater

__all__ = ["Adversary"]


class Adversary:
    """The discriminator side of a GAN objective (``losses.gan > 0``).

    Args:
        cfg: the training config (``discriminator`` section, ``losses.gan_type``, the schedule).
        device, dtype: where the discriminator lives.
        dist: the processes (``SyncBatchNorm`` on CUDA when there are several).
        events: where its skipped steps are recorded.
    """

    def __init__(
        self,
        cfg: TrainingConfig,
        device: torch.device,
        dtype: torch.dtype,
        dist: Distribution,
        events: StepEvents,
    ):
        d = cfg.discriminator
        size = d.input_size or cfg.data.patch_size
        if size is None:
            raise ConfigError("config: losses.gan > 0 needs discriminator.input_size (or data.patch_size)")
        self.net: nn.Module = VGGDiscriminator(3, d.nf, size).to(device, dtype).train()
        if dist.enabled and device.type == "cuda":
            self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
        self.loss = GANLoss(cfg.losses.gan_type)
        self.updater = Updater(
            self.net.parameters(),
            lr=d.lr,
            betas=d.betas,
            weight_decay=d.weight_decay,
            milestones=cfg.milestones(),
            gamma=cfg.optim.gamma,
            measure_norm=False,  # official: no clipping of the discriminator
            dist=dist,
            events=events,
        )
        self._calls: nn.Module = self.net  # DDP wrapper once wrap() ran

    def wrap(self, dist: Distribution, device: torch.device) -> None:
        """Route the discriminator's own step through ``DistributedDataParallel``."""
        self._calls = dist.wrap(self.net, device)

    def _trainable(self, on: bool) -> None:
        for p in self.net.parameters():
            p.requires_grad_(on)

    def generator_loss(self, sr: Tensor) -> Tensor:
        """The generator's GAN loss on ``sr`` (unweighted), the discriminator frozen."""
        self._trainable(False)
        return self.loss(self.net(sr), True)

    def step(self, hr: Tensor, fake: Tensor, iteration: int, record: dict[str, float]) -> None:
        """One discriminator step on the real ``hr`` and the detached ``fake``; records ``d_real`` /
        ``d_fake`` (the two losses) and ``d_real_logit`` / ``d_fake_logit`` (the mean outputs, the
        official ``D_real`` / ``D_fake``)."""
        self._trainable(True)
        self.updater.zero_grad()
        pred_real = self._calls(hr)
        pred_fake = self._calls(fake.detach())
        l_real, l_fake = self.loss(pred_real, True), self.loss(pred_fake, False)
        record["d_real"], record["d_fake"] = float(l_real.detach()), float(l_fake.detach())
        record["d_real_logit"] = float(pred_real.detach().mean())
        record["d_fake_logit"] = float(pred_fake.detach().mean())
        self.updater.step(l_real + l_fake, "discriminator", iteration)

    def state_dict(self) -> dict:
        optimizer, scheduler = self.updater.state_dict()
        return {"discriminator": self.net.state_dict(), "optimizer_d": optimizer, "scheduler_d": scheduler}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["discriminator"])
        self.updater.load_state_dict(state["optimizer_d"], state["scheduler_d"])
