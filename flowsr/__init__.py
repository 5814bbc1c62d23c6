"""flowsr: conditional normalizing-flow layers for image super-resolution and rescaling.

Built on FrEIA 0.2; reproduces HCFlow, SRFlow-like and IRN-like models from one toolkit.
See ``docs/architecture.md`` for the package layout and conventions.
"""

__version__ = "0.1.0"
