"""flowsr: conditional normalizing-flow layers for image super-resolution and rescaling.

Built on FrEIA 0.2: every layer is a FrEIA ``InvertibleModule`` (:mod:`flowsr.layers`); the
hierarchy builder (:mod:`flowsr.models`) assembles them into HCFlow and related models, and
:mod:`flowsr.convert` loads the official checkpoints. See ``docs/architecture.md``.

The names below are imported on first use (PEP 562), not when ``flowsr`` is imported: the
``flowsr`` command imports ``flowsr.cli``, and ``flowsr --help`` must not pay for importing torch.
``from flowsr import HCFlowSR`` and ``flowsr.models`` work as before.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Submodules reachable as attributes of the package.
_SUBMODULES = ("convert", "data", "layers", "metrics", "models", "testing")

#: Public name -> the module that defines it.
_NAMES: dict[str, str] = {
    "load_official": "flowsr.convert",
    **{
        name: "flowsr.layers"
        for name in (
            "FCN",
            "RRDB",
            "ActNorm",
            "AffineCoupling",
            "AffineInjector",
            "ConditionalGaussianSplit",
            "CouplingBase",
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
            "Squeeze",
            "StepInfo",
            "ThreeShiftCoupling",
            "ZeroConv2d",
            "dequantize",
            "quantize",
            "register_coupling",
            "register_subnet",
            "set_finite_checks",
        )
    },
    **{
        name: "flowsr.models"
        for name in (
            "FAMILIES",
            "FlowSRModel",
            "IRN",
            "CouplingSpec",
            "FeatureSpec",
            "HCFlowRescaling",
            "HCFlowSR",
            "HierarchicalFlow",
            "HierarchySpec",
            "LatentSpec",
            "SRFlow",
            "NonFiniteOutputError",
            "build_hierarchy",
            "from_pretrained",
            "get_family",
            "hcflow_rescaling_spec",
            "hcflow_sr_spec",
            "irn_spec",
            "load",
            "register_family",
            "save",
            "srflow_spec",
        )
    },
}

__all__ = sorted([*_SUBMODULES, *_NAMES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"flowsr.{name}")
    elif name in _NAMES:
        module = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'flowsr' has no attribute {name!r}")
    globals()[name] = module  # cache: the next access is a plain attribute
    return module


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
