"""Needs ``numpy.long`` (removed in numpy 1.24, back in 2.x) and a name that does not exist."""

from scipy.interpolate import interp2d  # noqa: F401 - removed in SciPy 1.14: stubbed when missing
from torchvision.utils import make_grid  # noqa: F401 - torchvision is not installed: stubbed


def long_dtype(np):
    return np.long
