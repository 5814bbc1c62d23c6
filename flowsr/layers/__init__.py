"""Invertible layers (FrEIA 0.2 ``InvertibleModule``s) and the subnets they use.

Every layer documents its forward, inverse and log-det math and its shapes; see
``docs/layers.md`` for an overview and ``docs/architecture.md`` for the shared conventions.

Extension points: :class:`CouplingBase` (the coupling template), :func:`register_coupling`
and :func:`register_subnet` (names a ``HierarchySpec`` can use), :class:`StepInfo` (what the
builder tells a coupling about its step), :func:`set_finite_checks`, :func:`batch_logdet`.
"""

from flowsr.layers.actnorm import ActNorm
from flowsr.layers.adapters import NflowsTransform
from flowsr.layers.base import FlowModule, batch_logdet, set_finite_checks
from flowsr.layers.coupling import AffineCoupling, AffineInjector, CouplingBase, InvBlockExp, ThreeShiftCoupling
from flowsr.layers.graph import FlowGraph
from flowsr.layers.invconv import FixedPermutation, InvConv1x1
from flowsr.layers.quantization import dequantize, quantize
from flowsr.layers.registry import (
    COUPLINGS,
    SUBNETS,
    StepInfo,
    get_coupling,
    get_subnet,
    register_coupling,
    register_subnet,
)
from flowsr.layers.reshape import HaarDownsampling, Squeeze
from flowsr.layers.sequence import FlowSequence, Inverse
from flowsr.layers.split import ConditionalGaussianSplit, GaussianWhitening
from flowsr.layers.step import FlowStep
from flowsr.layers.subnets import FCN, RRDB, ConvActNorm, DenseBlock, ResidualDenseBlock, ZeroConv2d

__all__ = [
    "COUPLINGS",
    "SUBNETS",
    "CouplingBase",
    "StepInfo",
    "batch_logdet",
    "get_coupling",
    "get_subnet",
    "register_coupling",
    "register_subnet",
    "set_finite_checks",
    "FCN",
    "RRDB",
    "ActNorm",
    "AffineCoupling",
    "AffineInjector",
    "ConditionalGaussianSplit",
    "ConvActNorm",
    "DenseBlock",
    "FixedPermutation",
    "FlowGraph",
    "FlowModule",
    "FlowSequence",
    "FlowStep",
    "GaussianWhitening",
    "HaarDownsampling",
    "InvBlockExp",
    "InvConv1x1",
    "Inverse",
    "NflowsTransform",
    "ResidualDenseBlock",
    "Squeeze",
    "ThreeShiftCoupling",
    "ZeroConv2d",
    "dequantize",
    "quantize",
]
