"""Validation during training: :func:`validate` computes ``val.metric`` over the validation images.

SR models sample from the given LR (at ``val.temperature``, default 0: the mean sample);
rescaling models upscale their own 8-bit LR (default temperature 1), as the official validation.
Latents come from a generator seeded per image, so validation is deterministic. ``nll`` (SR) is
the family's likelihood term, lower is better.
"""

from __future__ import annotations

import numpy as np
import torch

from flowsr.models.base import FlowSRModel, GeneratorNoise, NonFiniteOutputError
from flowsr.train.config import ValConfig
from flowsr.train.data import ValDataset
from flowsr.train.noise import VAL_TAG, derive_seed

__all__ = ["LOWER_IS_BETTER", "validate"]

#: metrics (validation or training) for which a smaller value is better
LOWER_IS_BETTER = ("nll", "loss_ema")


@torch.no_grad()
def validate(
    model: FlowSRModel,
    images: ValDataset,
    cfg: ValConfig,
    *,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> float | None:
    """The mean of ``cfg.metric`` over ``images`` (``None`` without images). The model is put in
    eval mode for the pass and back in train mode afterwards. An image on which the model
    overflows counts as NaN (the mean then is NaN and never becomes the best)."""
    from flowsr import metrics

    sr_task = model.task == "sr"
    temperature = cfg.temperature if cfg.temperature is not None else (0.0 if sr_task else 1.0)
    model.eval()
    values = []
    try:
        for i in range(len(images)):
            item = images[i]
            hr, lr = item["hr"][None].to(device, dtype), item["lr"][None].to(device, dtype)
            gen = torch.Generator(device=device).manual_seed(derive_seed(seed, VAL_TAG, i))
            if cfg.metric == "nll":
                noise = GeneratorNoise(1, gen, dtype=dtype)
                values.append(float(model.training_losses(hr, lr, noise, {"nll": 1.0})["nll"]))
                continue
            try:
                if sr_task:
                    sr = model.sample(lr, temperature=temperature, generator=gen)
                else:
                    sr = model.upscale(model.downscale(hr), temperature=temperature, generator=gen)
            except NonFiniteOutputError:
                values.append(float("nan"))
                continue
            sr, hr = sr[0].float().cpu(), hr[0].float().cpu()
            values.append(float(metrics.psnr(sr, hr, crop_border=model.scale, y_channel=cfg.metric == "psnr_y")))
    finally:
        model.train()
    return float(np.mean(values)) if values else None
