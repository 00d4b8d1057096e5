"""fastconv: fast, exact 2-D convolution and its gradients on NumPy arrays.

The public API is in :mod:`fastconv.api`; backends live in :mod:`fastconv.backends`.
Importing fastconv imports neither numba nor torch.
"""

from . import backends  # callable: fastconv.backends() lists the usable backend names
from ._threads import get_num_threads, set_num_threads, threads
from .api import (
    Conv2dGrads,
    choose_backend,
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
)
from .layer import Conv2d

__version__ = "0.1.0"

__all__ = ["Conv2d", "Conv2dGrads", "__version__", "backends", "choose_backend", "conv2d", "conv2d_backward",
           "conv_transpose2d", "conv_transpose2d_backward", "get_num_threads", "set_num_threads", "threads"]
