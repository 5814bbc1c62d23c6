"""Load official HCFlow, SRFlow and IRN checkpoints into flowsr models.

>>> model = load_official("SR_DF2K_X4_HCFlow++.pth", opt)     # doctest: +SKIP

``opt`` is the official network options: the structure of the official YAML with ``scale``,
``quant`` (SR) and ``network_G``. Each official implementation has a converter
(:class:`~flowsr.convert.base.OfficialConverter`: ``spec_from_opt``, ``model_from_opt``,
``key_map`` and ``OFFICIAL_OPTIONS``) registered in :data:`CONVERTERS`; :func:`load_official`
picks the one that understands ``opt``. Files are read with ``torch.load(...,
weights_only=True)``, so a checkpoint can never run code; a leading ``module.`` (DataParallel)
is stripped. Every official key must be consumed exactly once: a missing, unexpected,
mis-shaped or non-finite entry is a :class:`ValueError` that names it.
"""

from flowsr.convert.base import (
    CONVERTERS,
    OfficialConverter,
    converter_for,
    load_into,
    load_official,
    official_presets,
    read_state_dict,
    register_converter,
    state_keys,
)
from flowsr.convert.hcflow import HCFlowConverter
from flowsr.convert.irn import IRNConverter
from flowsr.convert.srflow import SRFlowConverter

__all__ = [
    "CONVERTERS",
    "HCFlowConverter",
    "IRNConverter",
    "OfficialConverter",
    "SRFlowConverter",
    "converter_for",
    "load_into",
    "load_official",
    "official_presets",
    "read_state_dict",
    "register_converter",
    "state_keys",
]
