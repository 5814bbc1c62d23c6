"""Levels, the hierarchy builder and the model families built from it.

Every family implements :class:`~flowsr.models.base.FlowSRModel` and is registered by name in
:data:`FAMILIES` (:func:`register_family`, :func:`get_family`).
"""

from flowsr.models.base import (
    FAMILIES,
    FlowSRModel,
    GeneratorNoise,
    HierarchicalModel,
    NoiseSource,
    NonFiniteOutputError,
    get_family,
    register_family,
)
from flowsr.models.checkpoint import from_pretrained, list_models, load, model_info, read_metadata, save
from flowsr.models.encoders import EncoderSpec, RRDBEncoder
from flowsr.models.hcflow import HCFlowRescaling, HCFlowSR, NLLOutput, hcflow_rescaling_spec, hcflow_sr_spec
from flowsr.models.hierarchy import HierarchicalFlow, Level, build_hierarchy
from flowsr.models.irn import IRN, IRNLosses, irn_losses, irn_spec
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec
from flowsr.models.srflow import SRFlow, SRFlowSpec, make_srflow_spec, srflow_spec

__all__ = [
    "FAMILIES",
    "CouplingSpec",
    "EncoderSpec",
    "FeatureSpec",
    "FlowSRModel",
    "GeneratorNoise",
    "HCFlowRescaling",
    "HCFlowSR",
    "HierarchicalFlow",
    "HierarchicalModel",
    "HierarchySpec",
    "IRN",
    "IRNLosses",
    "LatentSpec",
    "Level",
    "NLLOutput",
    "NoiseSource",
    "NonFiniteOutputError",
    "RRDBEncoder",
    "SRFlow",
    "SRFlowSpec",
    "build_hierarchy",
    "from_pretrained",
    "list_models",
    "model_info",
    "get_family",
    "hcflow_rescaling_spec",
    "hcflow_sr_spec",
    "irn_losses",
    "irn_spec",
    "load",
    "make_srflow_spec",
    "read_metadata",
    "register_family",
    "save",
    "srflow_spec",
]
