"""The one part of the build that pyproject.toml cannot say: ship the top-level ``recipes/`` folder
(training recipes and the demo recipes' training images) as the package ``flowsr.recipes``, so that
the recipes are usable after a wheel install (``flowsr.data.recipe_path("irn_x4_tiny")``) while the
repository keeps a single copy of them in ``recipes/``. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["flowsr", "flowsr.*"]), "flowsr.recipes"],
    package_dir={"flowsr.recipes": "recipes"},
)
