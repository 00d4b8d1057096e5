"""fastconv: fast, exact convolution in one, two and three dimensions, and its gradients, on NumPy arrays.

The public API is in :mod:`fastconv.api`; backends live in :mod:`fastconv.backends`.
Importing fastconv imports neither numba nor torch (nor dask: :mod:`fastconv.dask` is imported
on its own).
"""

from . import backends  # callable: fastconv.backends() lists the usable backend names
from ._precision import get_precision, precision, set_precision
from ._threads import get_num_threads, set_num_threads, threads
from .api import (
    Conv2dGrads,
    ConvGrads,
    choose_backend,
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv3d,
    conv3d_backward,
    conv_transpose1d,
    conv_transpose1d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    conv_transpose3d,
    conv_transpose3d_backward,
)
from .layer import Conv1d, Conv2d, Conv3d

__version__ = "0.1.0"

__all__ = ["Conv1d", "Conv2d", "Conv2dGrads", "Conv3d", "ConvGrads", "__version__", "backends", "choose_backend",
           "conv1d", "conv1d_backward", "conv2d", "conv2d_backward", "conv3d", "conv3d_backward",
           "conv_transpose1d", "conv_transpose1d_backward", "conv_transpose2d", "conv_transpose2d_backward",
           "conv_transpose3d", "conv_transpose3d_backward", "get_num_threads", "get_precision", "precision",
           "set_num_threads", "set_precision", "threads"]
