"""Proof that ``flowsr train`` trains what the official HCFlow code trains.

:func:`replay_official` takes a training-step fixture recorded from the official code (its
options ``opt``, a batch, the weights before iteration 1, and per iteration the random tensors
the official code drew, its learning rates, ``log_dict`` and weights) and runs the iterations
through the trainer's own step code: the :class:`~flowsr.train.objectives.Objective` that
``flowsr train`` builds from a recipe, with the same phases, optimisers, clipping and schedules.
Only the noise differs: a :class:`~flowsr.train.noise.ReplayNoise` hands back the recorded draws.

:func:`official_config` is the translation of the official training options into a flowsr
training config -- the recipe settings that reproduce the official training (among them
``train.legacy_grad_leak: true``). Options flowsr cannot express are errors that name them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from flowsr.convert import converter_for, load_into
from flowsr.models.base import get_family
from flowsr.train.coerce import apply_overrides
from flowsr.train.config import config_from_dict
from flowsr.train.noise import ReplayNoise
from flowsr.train.objectives import make_objective

__all__ = ["OFFICIAL_LOG_NAMES", "official_config", "official_log", "replay_official"]

#: flowsr's logged term -> the official ``log_dict`` name, per task
OFFICIAL_LOG_NAMES: dict[str, dict[str, str]] = {
    "sr": {
        "nll": "nll",
        "hr_l1": "l_g_pix_hr",
        "hr_l2": "l_g_pix_hr",
        "perceptual": "l_g_fea",
        "gan_g": "l_g_gan",
        "d_real": "l_d_real",
        "d_fake": "l_d_fake",
        "d_real_logit": "D_real",
        "d_fake_logit": "D_fake",
    },
    "rescaling": {"lr_l2": "l_g_lr", "lr_l1": "l_g_lr", "z_l2": "l_g_z", "hr_l1": "l_g_hr", "hr_l2": "l_g_hr"},
}

_GAN_TYPES = {"gan": "vanilla", "lsgan": "lsgan"}


def _get(d: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    """The official ``opt_get``: a missing key or ``None`` is the default."""
    value = (d or {}).get(key)
    return default if value is None else value


def _criterion(t: Mapping[str, Any], name: str, prefix: str) -> tuple[str, float]:
    """``(flowsr loss key, weight)`` of an official pixel loss (``pixel_criterion_hr`` ...)."""
    criterion = _get(t, f"pixel_criterion_{name}", "l1")
    if criterion not in ("l1", "l2"):
        raise ValueError(f"official option train.pixel_criterion_{name} {criterion!r}: flowsr has l1 and l2")
    return f"{prefix}_{criterion}", float(_get(t, f"pixel_weight_{name}", 0.0))


def official_config(opt: Mapping[str, Any], family: str, hr_size: int | None = None) -> dict[str, Any]:
    """The flowsr training config (as a dict) that trains like the official options ``opt``.

    Args:
        opt: the official options (``train``, ``network_D``, ``datasets.train.GT_size``, ...).
        family: the flowsr model family of ``opt``'s network (its task picks the losses).
        hr_size: the HR patch size (default ``datasets.train.GT_size``, else 160); the
            discriminator's input size.
    """
    t = opt.get("train") or {}
    task = get_family(family).task
    if _get(t, "lr_scheme", "MultiStepLR") != "MultiStepLR":
        raise ValueError(f"official option train.lr_scheme {t['lr_scheme']!r}: flowsr has MultiStepLR only")
    if _get(t, "warmup_iter", -1) > 0:
        raise ValueError("official option train.warmup_iter > 0: flowsr has no learning-rate warm-up")
    if _get(t, "restarts", []):
        raise ValueError("official option train.restarts: flowsr has no learning-rate restarts")
    niter = int(_get(t, "niter", 1))
    size = hr_size or _get(_get(opt.get("datasets"), "train", {}), "GT_size", 160)
    milestones = [int(m) for m in _get(t, "lr_steps", [])]
    milestones += [int(float(r) * niter) for r in _get(t, "lr_steps_rel", [])]
    losses: dict[str, Any] = {}
    hr_key, hr_weight = _criterion(t, "hr", "hr")
    if task == "sr":
        losses.update(nll=float(_get(t, "nll_weight", 1.0)), hr_temperature=0.0)
        losses["sample_temperature"] = float(_get(t, "eps_std_reverse", 0.9))
        if _get(t, "feature_weight", 0) > 0:
            raise ValueError(
                "official option train.feature_weight > 0: the replay has no VGG19 weights "
                "(flowsr trains it with losses.perceptual and losses.perceptual_weights)"
            )
        if _get(t, "gan_weight", 0) > 0:
            gan_type = _get(t, "gan_type", "gan")
            if gan_type not in _GAN_TYPES:
                raise ValueError(f"official option train.gan_type {gan_type!r}: flowsr has 'gan' and 'lsgan'")
            losses.update(gan=float(t["gan_weight"]), gan_type=_GAN_TYPES[gan_type])
    else:
        lr_key, lr_weight = _criterion(t, "lr", "lr")
        losses.update(
            nll=0.0, hr_temperature=float(_get(t, "eps_std_reverse", 1.0)), z_l2=float(_get(t, "weight_z", 0))
        )
        losses[lr_key] = lr_weight
        if _get(t, "feature_weight", 0) > 0 or _get(t, "gan_weight", 0) > 0:
            raise ValueError("official rescaling options with feature or GAN losses: flowsr has none for rescaling")
    if hr_weight:
        losses[hr_key] = hr_weight
    d_opt = opt.get("network_D") or {}
    if _get(d_opt, "which_model_D", "discriminator_vgg_160") not in ("discriminator_vgg_160", "discriminator_vgg_128"):
        raise ValueError(f"official option network_D.which_model_D {d_opt['which_model_D']!r}: flowsr has the VGG ones")
    return {
        "name": "official_replay",
        "model": {"family": family},
        "losses": losses,
        "optim": {
            "lr": float(t["lr_G"]),
            "betas": [float(_get(t, "beta1", 0.9)), float(_get(t, "beta2", 0.999))],
            "weight_decay": float(_get(t, "weight_decay_G", 0.0)),
            "eps": 1e-8,
            "milestones": milestones,
            "gamma": float(_get(t, "lr_gamma", 0.5)),
            "clip_value": None if t.get("max_grad_clip") is None else float(t["max_grad_clip"]),
            "clip_norm": None if t.get("max_grad_norm") is None else float(t["max_grad_norm"]),
        },
        "discriminator": {
            "nf": int(_get(d_opt, "nf", 64)),
            "input_size": int(size),
            "lr": float(_get(t, "lr_D", 5e-5)),
            "betas": [float(_get(t, "beta1_D", 0.9)), float(_get(t, "beta2_D", 0.999))],
            "weight_decay": float(_get(t, "weight_decay_D", 0.0)),
            "init_iters": int(_get(t, "D_init_iters", 0)),
            "update_ratio": int(_get(t, "D_update_ratio", 1)),
        },
        "data": {"patch_size": int(size)},
        "train": {"iterations": niter, "legacy_grad_leak": True, "device": "cpu"},
    }


def official_log(record: Mapping[str, float], task: str, losses: Mapping[str, Any]) -> dict[str, float]:
    """flowsr's record of an iteration under the official ``log_dict`` names (only the terms that
    were computed). The official ``nll`` is the weighted one (``nll_weight * nll``)."""
    names = OFFICIAL_LOG_NAMES[task]
    log = {names[k]: float(v) for k, v in record.items() if k in names and v == v}
    if "nll" in log:
        log["nll"] *= float(losses.get("nll", 1.0))
    return log


def replay_official(fixture: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run the iterations of an official training-step fixture through flowsr's step code.

    ``fixture`` as loaded by ``torch.load(path, weights_only=True)``: ``opt``, ``hr``, ``lr``,
    ``G0`` (and ``D0`` with a GAN), ``steps`` (each with ``draws`` and ``draw_kinds``). The
    model comes from ``opt`` through the converters, ``G0`` is loaded with the converter's key
    map. Returns one dict per iteration: ``step``, ``lr_G``, ``lr_D`` (``None`` without a
    discriminator), ``log`` (official names), ``G`` and ``D`` (state dicts under the official
    names, after the iteration).

    ``overrides`` (dotted config keys, e.g. ``{"train.legacy_grad_leak": False}``) replace parts of
    the official settings, to measure how far a flowsr alternative is from the official training.
    """
    opt = fixture["opt"]
    hr, lr = fixture["hr"], fixture["lr"]
    converter = converter_for(opt)
    model = converter.model_from_opt(opt).to(hr.dtype)
    key_map = converter.key_map(model, list(fixture["G0"]))
    load_into(model, fixture["G0"], key_map)
    model.train()
    cfg = config_from_dict(apply_overrides(official_config(opt, model.family, int(hr.shape[-1])), overrides))
    cfg.train.dtype = str(hr.dtype).removeprefix("torch.")
    objective = make_objective(model, cfg, device=torch.device("cpu"), dtype=hr.dtype)
    adversary = objective.adversary
    if adversary is not None:
        if fixture.get("D0") is None:
            raise ValueError("replay_official: the options train a GAN but the fixture has no D0")
        adversary.net.load_state_dict(fixture["D0"])
    official_key = {flowsr: official for official, flowsr in key_map.items()}
    weights = {k: float(v) for k, v in objective.weights.items() if isinstance(v, (int, float))}
    results = []
    for index, step in enumerate(fixture["steps"], start=1):
        iteration = int(step.get("step", index))
        noise = ReplayNoise(step["draws"], step["draw_kinds"], dtype=hr.dtype)
        record = objective.iteration(iteration, hr, lr, noise)
        noise.finish()
        state = model.state_dict()
        results.append(
            {
                "step": iteration,
                "lr_G": objective.generator.lr,
                "lr_D": adversary.updater.lr if adversary is not None else None,
                "log": official_log(record, model.task, weights),
                "G": {official_key[k]: v.detach().clone() for k, v in state.items() if k in official_key},
                "D": {k: v.detach().clone() for k, v in adversary.net.state_dict().items()} if adversary else None,
            }
        )
    return results
