"""Levels, the hierarchy builder and the model families built from it."""

from flowsr.models.checkpoint import load, save
from flowsr.models.encoders import EncoderSpec, RRDBEncoder
from flowsr.models.hcflow import HCFlowRescaling, HCFlowSR, NLLOutput, hcflow_rescaling_spec, hcflow_sr_spec
from flowsr.models.hierarchy import HierarchicalFlow, Level, build_hierarchy
from flowsr.models.irn import IRN, IRNLosses, irn_losses, irn_spec
from flowsr.models.spec import CouplingSpec, FeatureSpec, HierarchySpec, LatentSpec
from flowsr.models.srflow import SRFlow, SRFlowSpec, make_srflow_spec, srflow_spec

__all__ = [
    "CouplingSpec",
    "FeatureSpec",
    "HCFlowRescaling",
    "HCFlowSR",
    "HierarchicalFlow",
    "HierarchySpec",
    "LatentSpec",
    "Level",
    "NLLOutput",
    "build_hierarchy",
    "hcflow_rescaling_spec",
    "hcflow_sr_spec",
    "load",
    "save",
    "EncoderSpec",
    "RRDBEncoder",
    "SRFlow",
    "SRFlowSpec",
    "make_srflow_spec",
    "srflow_spec",
    "IRN",
    "IRNLosses",
    "irn_losses",
    "irn_spec",
]
