"""The layer contract over every layer case (``flowsr.testing.layer_cases()``).

Every check of ``flowsr.testing.contract.LAYER_CHECKS`` (float64 properties with the autograd
log-det, the layer as a FrEIA ``GraphINN`` node, float32, bad input, bad conditions) runs on
every case: flowsr's layers (``flowsr/testing/builtin_cases.py``: fixed paper configurations and
``*_drawn`` cases whose hyper-parameters Hypothesis draws), and every coupling registered with
``register_coupling`` (``"coupling:<name>"``, built like the hierarchy builder builds it).
Adding a layer is one ``register_layer_case`` line; no test code.

Also here: every layer class of ``flowsr.layers`` has a case, couplings registered later join
the run, and the contract catches broken layers (it is not vacuous).
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import pytest
import torch
from FrEIA.modules import InvertibleModule
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import flowsr.layers
from flowsr import testing as ft
from flowsr.layers import COUPLINGS, CouplingBase, FlowModule, register_coupling
from flowsr.testing.contract import LAYER_CHECKS

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*triangular_solve.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.qr.*:UserWarning"),
]

NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]

CASES = ft.layer_cases()  # read at collection: every coupling registered by then has its case

def _params():
    for name in sorted(CASES):
        for check in LAYER_CHECKS:
            yield pytest.param(name, check, id=f"{name}-{check}")


@pytest.mark.parametrize(("case_name", "check"), list(_params()))
@given(data=st.data())
def test_layer_contract(case_name, check, data):
    LAYER_CHECKS[check](CASES[case_name], data)


@pytest.fixture
def no_shrinking():
    """These tests expect the contract to fail: skip Hypothesis' shrinking of the failing example
    (it only makes the report smaller, and takes most of the time)."""
    settings.register_profile("no-shrinking", settings(settings.default, phases=NO_SHRINK))
    previous = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile("no-shrinking")
    try:
        yield
    finally:
        settings.load_profile(previous)


def _layer_classes() -> set[type]:
    """Every invertible layer class defined in the modules of ``flowsr.layers``."""
    found = set()
    for info in pkgutil.iter_modules(flowsr.layers.__path__, "flowsr.layers."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, InvertibleModule) and obj.__module__ == info.name:
                found.add(obj)
    return found - {FlowModule, CouplingBase}  # the templates, tested through their subclasses


def test_every_layer_class_has_a_case():
    covered = {case.layer for case in CASES.values()}
    missing = sorted(cls.__name__ for cls in _layer_classes() - covered)
    assert not missing, f"layers without a contract case (add a register_layer_case line): {missing}"


def test_every_registered_coupling_has_a_case():
    cases = ft.layer_cases()  # now: other tests may have registered couplings since collection
    assert {f"coupling:{name}" for name in COUPLINGS} <= set(cases)
    assert all(cases[f"coupling:{name}"].layer is cls for name, cls in COUPLINGS.items())
    assert {"coupling:affine", "coupling:three_shift", "coupling:inv_block_exp"} <= set(CASES)


class ToyAdditive(CouplingBase):
    """NICE-style additive coupling: ``y2 = x2 + t(x1, c)``, log-det 0 (``wrong_logdet`` breaks it)."""

    def __init__(self, dims_in, dims_c=None, *, subnet_constructor, wrong_logdet: bool = False):
        super().__init__(dims_in, dims_c)
        self.wrong_logdet = wrong_logdet
        self.net = subnet_constructor(self.split_len + self.cond_channels, self.dims_in[0][0] - self.split_len)

    def _shift(self, x1, c):
        return self.run_subnet(self.net, self.subnet_input(x1, c), self.dims_in[0][0] - self.split_len)

    def coupling_forward(self, x1, x2, c):
        logdet = self._zero_logdet(x1) + (1e-3 if self.wrong_logdet else 0.0)
        return x1, x2 + self._shift(x1, c), logdet

    def coupling_inverse(self, y1, y2, c):
        return y1, y2 - self._shift(y1, c), self._zero_logdet(y1)


def test_a_coupling_registered_later_joins_the_contract():
    register_coupling("toy_additive")(ToyAdditive)
    try:
        case = ft.layer_cases()["coupling:toy_additive"]
        assert case.layer is ToyAdditive
        assert ft.check_layer("coupling:toy_additive", max_examples=3) == list(LAYER_CHECKS)
        assert ft.check_layer(ToyAdditive, max_examples=3) == list(LAYER_CHECKS)  # the class, the same case
    finally:
        del COUPLINGS["toy_additive"]
    assert "coupling:toy_additive" not in ft.layer_cases()


def test_the_contract_catches_a_wrong_logdet(no_shrinking):
    with pytest.raises(AssertionError, match="log-det"):
        ft.check_layer(ToyAdditive, checks=["properties"], max_examples=5, options={"wrong_logdet": True})


class IgnoresItsCondition(FlowModule):
    """Doubles its input, accepts any conditions without checking them (a contract violation)."""

    def forward(self, x, c=None, rev=False, jac=True):
        self._check_input(x, rev)
        factor = 0.5 if rev else 2.0
        return (x[0] * factor,), torch.full((x[0].shape[0],), x[0][0].numel() * torch.log(torch.tensor(factor)).item())


def test_the_contract_catches_unchecked_conditions(no_shrinking):
    assert ft.check_layer(IgnoresItsCondition, checks=["properties", "bad_input"], max_examples=3)
    with pytest.raises(AssertionError, match="expected 0 condition"):
        ft.check_layer(IgnoresItsCondition, checks=["bad_conditions"], max_examples=3)


def test_the_contract_catches_an_identity(no_shrinking):
    with pytest.raises(AssertionError, match="identity"):
        ft.check_layer(
            ft.LayerCase(lambda dims_in: flowsr.layers.FixedPermutation(dims_in, kind="reverse"), max_channels=1),
            checks=["properties"],
            max_examples=3,
        )


def test_a_user_layer_joins_the_run_with_one_line():
    name = "test_contract_layers.doubling"
    try:
        ft.register_layer_case(name, ft.LayerCase(IgnoresItsCondition))
        assert ft.layer_cases()[name].layer is IgnoresItsCondition
        ft.register_layer_case(name, ft.LayerCase(IgnoresItsCondition))  # the same case again: fine
        with pytest.raises(ValueError, match="already registered"):
            ft.register_layer_case(name, ft.LayerCase(ToyAdditive))
    finally:
        ft.LAYER_CASES.pop(name, None)


def test_layer_case_validation():
    with pytest.raises(ValueError, match="conditions"):
        ft.LayerCase(IgnoresItsCondition, conditions=(2, 1))
    with pytest.raises(ValueError, match="min_channels"):
        ft.LayerCase(IgnoresItsCondition, min_channels=0)
    with pytest.raises(ValueError, match="unknown layer case"):
        ft.check_layer("no such case")
    with pytest.raises(ValueError, match="unknown checks"):
        ft.check_layer(IgnoresItsCondition, checks=["speed"])
