"""flowsr: conditional normalizing-flow layers for image super-resolution and rescaling.

Built on FrEIA 0.2: every layer is a FrEIA ``InvertibleModule`` (:mod:`flowsr.layers`); the
hierarchy builder (:mod:`flowsr.models`) assembles them into HCFlow and related models, and
:mod:`flowsr.convert` loads the official checkpoints. See ``docs/architecture.md``.
"""

from flowsr import layers, models, testing
from flowsr.convert import load_official
from flowsr.layers import (
    FCN,
    RRDB,
    ActNorm,
    AffineCoupling,
    AffineInjector,
    ConditionalGaussianSplit,
    DenseBlock,
    FixedPermutation,
    FlowGraph,
    FlowModule,
    FlowSequence,
    FlowStep,
    GaussianWhitening,
    HaarDownsampling,
    InvBlockExp,
    InvConv1x1,
    Inverse,
    NflowsTransform,
    Squeeze,
    ThreeShiftCoupling,
    ZeroConv2d,
    dequantize,
    quantize,
)
from flowsr.models import (
    CouplingSpec,
    FeatureSpec,
    HCFlowRescaling,
    HCFlowSR,
    HierarchicalFlow,
    HierarchySpec,
    LatentSpec,
    build_hierarchy,
    hcflow_rescaling_spec,
    hcflow_sr_spec,
    load,
    save,
)

__version__ = "0.1.0"

__all__ = [
    "FCN",
    "RRDB",
    "ActNorm",
    "AffineCoupling",
    "AffineInjector",
    "ConditionalGaussianSplit",
    "CouplingSpec",
    "DenseBlock",
    "FeatureSpec",
    "FixedPermutation",
    "FlowGraph",
    "FlowModule",
    "FlowSequence",
    "FlowStep",
    "GaussianWhitening",
    "HCFlowRescaling",
    "HCFlowSR",
    "HaarDownsampling",
    "HierarchicalFlow",
    "HierarchySpec",
    "InvBlockExp",
    "InvConv1x1",
    "Inverse",
    "LatentSpec",
    "NflowsTransform",
    "Squeeze",
    "ThreeShiftCoupling",
    "ZeroConv2d",
    "build_hierarchy",
    "dequantize",
    "hcflow_rescaling_spec",
    "hcflow_sr_spec",
    "layers",
    "load",
    "load_official",
    "models",
    "quantize",
    "save",
    "testing",
]
