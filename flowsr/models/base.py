"""What every model family built on one hierarchy shares: spec, flow, config, input checks."""

from __future__ import annotations

from torch import Tensor, nn

from flowsr.layers.base import check_finite
from flowsr.models.hierarchy import build_hierarchy
from flowsr.models.spec import HierarchySpec

__all__ = ["HierarchicalModel"]


class HierarchicalModel(nn.Module):
    """A model around one :class:`~flowsr.models.hierarchy.HierarchicalFlow` built from ``spec``.

    Subclasses set ``family`` (the name :mod:`flowsr.models.checkpoint` stores) and extend
    :meth:`config` with their own options, which :meth:`from_config` passes back as keywords.
    """

    family = ""

    def __init__(self, spec: HierarchySpec):
        super().__init__()
        self.spec = spec
        self.flow = build_hierarchy(spec)

    @property
    def scale(self) -> int:
        return self.spec.scale

    def config(self) -> dict:
        """Everything besides the weights needed to rebuild the model (see :mod:`flowsr.models.checkpoint`)."""
        return {"spec": self.spec.to_dict()}

    @classmethod
    def from_config(cls, config: dict):
        """Inverse of :meth:`config`."""
        config = dict(config)
        return cls(HierarchySpec.from_dict(config.pop("spec")), **config)

    def _check_image(self, x: Tensor, what: str, channels: int, factor: int) -> None:
        """``ValueError`` unless ``x`` is a finite float ``(B, channels, H, W)`` with H, W divisible by ``factor``."""
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: {what} must have shape (B, {channels}, H, W), got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"{name}: {what} must be a floating-point tensor (values in [0, 1]), got {x.dtype}")
        if factor > 1 and (x.shape[2] % factor or x.shape[3] % factor):
            raise ValueError(
                f"{name}: {what} size {tuple(x.shape[2:])} is not divisible by the scale {factor} "
                f"(2^levels, levels={self.spec.levels})"
            )
        check_finite(name, what, x)
