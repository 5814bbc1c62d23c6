"""One training iteration, official and flowsr, on the same batch and weights.

Official side: the repository's own training model class (``create_model`` of its ``models``
package, e.g. HCFlow's ``HCFlowSRModel``), built on the CPU from the official train options file
of the checkout (network options replaced by flowsr's copy of them, which are the same; no GPU,
no data loader, no resume), its generator loaded with the side-by-side weights; an iteration is
``update_learning_rate`` + ``feed_data`` + ``optimize_parameters`` as in the official training
loop. flowsr side: the trainer's own step (:func:`flowsr.train.objectives.make_objective` from
:func:`flowsr.train.parity.official_config`, the settings that train like the official options),
one ``Objective.iteration``.

:func:`check_training` runs one iteration of each from the same weights with the official
code's random draws replayed into flowsr (:class:`flowsr.train.noise.ReplayNoise`) and compares
the logged losses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flowsr.bench.official import OfficialCode, none_dict, record_draws

__all__ = ["TRAIN_STEP", "FlowsrTrainer", "OfficialTrainer", "check_training", "train_options"]

#: The iteration number both sides run: past HCFlow's ActNorm re-initialisation window
#: (``act_norm_start_step`` 100) and before any learning-rate milestone.
TRAIN_STEP = 1000


def train_options(code: Path, train_yml: str, network_opt: Mapping[str, Any]) -> dict[str, Any]:
    """The official train options file of the checkout, for the CPU: ``network_opt`` (scale,
    quant, network_G) over it, no GPU, no distributed training, no paths to resume from, and
    ``lr_steps_rel`` turned into ``lr_steps`` as the official option parser does."""
    import yaml

    opt = yaml.safe_load((Path(code) / train_yml).read_text())
    opt.update({k: v for k, v in network_opt.items() if k in ("scale", "quant", "network_G")})
    opt.update(is_train=True, dist=False, gpu_ids=None, path={"resume_state": None})
    train = opt["train"]
    if train.get("lr_steps_rel") and not train.get("lr_steps"):
        train["lr_steps"] = [int(float(r) * int(train["niter"])) for r in train["lr_steps_rel"]]
    return opt


@dataclasses.dataclass
class OfficialTrainer:
    """The official training model class, driven one iteration at a time."""

    model: Any
    hr: torch.Tensor
    lr: torch.Tensor

    @classmethod
    def build(cls, code: OfficialCode, opt: Mapping[str, Any], state: Mapping[str, torch.Tensor], hr, lr):
        """Inside :func:`~flowsr.bench.official.official_imports`: the official model class of
        ``opt['model']`` with ``state`` in its generator."""
        models = code.load("models")
        model = code.run(models.create_model, none_dict(dict(opt)), 0)
        net = getattr(model.netG, "module", model.netG)
        net.load_state_dict(state, strict=True)
        for m in net.modules():  # ActNorms initialised, as after the first batch
            flag = getattr(m, "inited", None)
            if isinstance(flag, torch.Tensor):
                flag.fill_(True)
            elif isinstance(flag, bool):
                m.inited = True
        return cls(model, hr, lr)

    def step(self, step: int = TRAIN_STEP) -> dict[str, float]:
        """One official iteration; returns its ``log_dict``."""
        self.model.update_learning_rate(step)
        self.model.feed_data({"LQ": self.lr, "GT": self.hr})
        self.model.optimize_parameters(step)
        return dict(self.model.log_dict)


@dataclasses.dataclass
class FlowsrTrainer:
    """flowsr's training step (the trainer's :class:`~flowsr.train.objectives.Objective`)."""

    objective: Any
    model: Any
    hr: torch.Tensor
    lr: torch.Tensor
    weights: dict[str, float]
    seed: int = 0

    @classmethod
    def build(cls, model, opt: Mapping[str, Any], hr, lr, seed: int = 0) -> FlowsrTrainer:
        from flowsr.train.config import config_from_dict
        from flowsr.train.objectives import make_objective
        from flowsr.train.parity import official_config

        train = dict(opt.get("train") or {})
        if not train.get("gan_weight"):  # no discriminator: its options (lr_D 0) are unused
            train.pop("lr_D", None)
        cfg = config_from_dict(official_config({**opt, "train": train}, model.family, int(hr.shape[-1])))
        model.train()
        objective = make_objective(model, cfg, device=torch.device("cpu"), dtype=hr.dtype)
        weights = {k: float(v) for k, v in objective.weights.items() if isinstance(v, (int, float))}
        return cls(objective, model, hr, lr, weights, seed)

    def step(self, step: int = TRAIN_STEP, noise: Any = None) -> dict[str, float]:
        """One flowsr iteration (latents and dequantisation noise from a seeded generator, or
        ``noise``); returns the logged terms under the official names."""
        from flowsr.models.base import GeneratorNoise
        from flowsr.train.parity import official_log

        if noise is None:
            noise = GeneratorNoise(self.hr.shape[0], torch.Generator().manual_seed(self.seed + step))
        record = self.objective.iteration(step, self.hr, self.lr, noise)
        return official_log(record, self.model.task, self.weights)


def check_training(official: OfficialTrainer, flowsr: FlowsrTrainer, step: int = TRAIN_STEP) -> dict[str, Any]:
    """One iteration of each from the same weights, the official draws replayed into flowsr:
    ``{"max_rel": largest relative difference of the logged losses, "terms": {name: (official,
    flowsr)}}``."""
    from flowsr.train.noise import ReplayNoise

    with record_draws() as draws:
        off = official.step(step)
    noise = ReplayNoise([t for _, t in draws], [k for k, _ in draws])
    ours = flowsr.step(step, noise)
    noise.finish()
    terms = {k: (float(off[k]), float(ours[k])) for k in off if k in ours}
    missing = sorted(set(off) ^ set(ours))
    rel = [abs(a - b) / max(1.0, abs(a)) for a, b in terms.values()]
    return {"max_rel": max(rel) if rel else float("inf"), "terms": terms, "unmatched": missing}
