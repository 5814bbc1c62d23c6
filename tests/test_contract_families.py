"""The model-family contract over every registered family and every one of its presets.

Every check of ``flowsr.testing.families.FAMILY_CHECKS`` (registry, float64 round trip, latent
shapes, sampling, upscale / downscale per task, training losses with a gradient for every
parameter, save / load, config, bad input) runs on a tiny model of each preset
(``family.shrink_spec(family.preset_spec(preset))``) of each family in ``flowsr.models.FAMILIES``.
A new family is covered by registering it; no test code.

Also here: a family registered later runs through the same contract, and the contract catches
broken families (it is not vacuous).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from flowsr import testing as ft
from flowsr.models import FAMILIES, IRN, register_family
from flowsr.models.irn import irn_spec
from flowsr.testing.families import FAMILY_CHECKS

PRESETS = [(name, preset) for name, cls in sorted(FAMILIES.items()) for preset in cls.presets]


@pytest.mark.parametrize("check", list(FAMILY_CHECKS))
@pytest.mark.parametrize(("family", "preset"), PRESETS, ids=[f"{f}-{p}" for f, p in PRESETS])
def test_family_contract(family, preset, check):
    FAMILY_CHECKS[check](FAMILIES[family], preset)


class CheckerboardIRN(IRN):
    """A family registered by a user: IRN-like rescaling with a checkerboard squeeze."""

    family = "test_checkerboard_irn"
    presets = ("x2", "x4")

    @classmethod
    def preset_spec(cls, name: str):
        return dataclasses.replace(irn_spec(int(name[1:])), squeeze="checkerboard")


def test_a_family_registered_later_runs_the_contract():
    register_family(CheckerboardIRN)
    try:
        assert ft.check_family("test_checkerboard_irn", presets=CheckerboardIRN.presets) == list(FAMILY_CHECKS)
    finally:
        del FAMILIES[CheckerboardIRN.family]
    with pytest.raises(ValueError, match="not registered"):
        ft.check_family(CheckerboardIRN)


class InexactIRN(CheckerboardIRN):
    family = "test_inexact_irn"

    def _decode_unchecked(self, lr, zs):
        return super()._decode_unchecked(lr, zs) + 1e-6


class DeadParameterIRN(CheckerboardIRN):
    family = "test_dead_parameter_irn"

    def __init__(self, spec):
        super().__init__(spec)
        self.dead = nn.Parameter(torch.zeros(3))  # never used, and not declared


class FalselyUnusedIRN(CheckerboardIRN):
    family = "test_falsely_unused_irn"
    has_unused_parameters = True  # but every parameter is used


class DisconnectedIRN(CheckerboardIRN):
    """Declares unused parameters; its loss misses one that its outputs do use."""

    family = "test_disconnected_irn"
    has_unused_parameters = True

    def __init__(self, spec):
        super().__init__(spec)
        self.gain = nn.Parameter(torch.ones(()))

    def _decode_unchecked(self, lr, zs):
        return super()._decode_unchecked(lr, zs) * self.gain

    @classmethod
    def loss_terms(cls, losses):
        return ["fit"]

    def training_losses(self, hr, lr, noise, losses):
        y, _, _ = self.encode(hr)
        fit = ((y - lr) ** 2).mean()
        return {"fit": fit, "total": fit}


@pytest.mark.parametrize(
    ("cls", "check", "message"),
    [
        (InexactIRN, "round_trip", "differs from hr"),
        (DeadParameterIRN, "training", "no gradient reaches"),
        (FalselyUnusedIRN, "training", "every parameter gets a gradient"),
        (DisconnectedIRN, "training", "change the outputs"),
    ],
    ids=["inexact-decode", "undeclared-unused-parameter", "stale-unused-flag", "loss-misses-a-used-parameter"],
)
def test_the_contract_catches_broken_families(cls, check, message):
    register_family(cls)
    try:
        with pytest.raises(AssertionError, match=message):
            ft.check_family(cls, checks=[check])
    finally:
        del FAMILIES[cls.family]
