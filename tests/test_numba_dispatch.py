"""Numba's dispatcher types a call's arguments in C when every argument is an array or a scalar of
a compiled signature, and in Python otherwise (an argument left to its default, a tuple, None):
40 us a call against 0.5 us, per call of a kernel from Python, which small layers pay many times
(winograd's 3x3 filter transform did, per part: N=8 128 -> 128 8x8, one thread, 0.25 ms of a
1.2 ms forward). Warm calls of every backend's passes on layers of each kind type nothing in
Python."""

import collections

import numpy as np
import pytest

import fastconv
from fastconv._precision import PRECISIONS

numba = pytest.importorskip("numba")
from numba.core import dispatcher  # noqa: E402  (needs numba)

LAYERS = [  # (x, w, keywords)
    ((8, 64, 8, 8), (64, 64, 3, 3), dict(padding=1)),                # winograd's 3x3 tiles, numba's
    ((4, 32, 12, 12), (16, 32, 3, 3), dict(padding=1)),              # ... by output channels
    ((8, 48, 5, 5), (40, 48, 5, 5), dict(padding=2)),                # 5x5: winograd's blocks, numba's images
    ((4, 16, 9, 9), (24, 16, 3, 3), dict(stride=2, padding=1)),      # a stride
    ((4, 64, 7, 7), (96, 64, 1, 1), {}),                             # 1x1
    ((4, 32, 9, 9), (32, 1, 3, 3), dict(padding=1, groups=32)),      # depthwise
    ((4, 32, 9, 9), (32, 8, 3, 3), dict(padding=2, groups=4, dilation=2)),
    ((2, 3, 32, 32), (8, 3, 7, 7), dict(stride=2, padding=3)),       # a stem
]


@pytest.fixture
def typed_in_python(monkeypatch):
    """Counts of arguments typed in Python, by kernel."""
    seen = collections.Counter()
    real = dispatcher._DispatcherBase.typeof_pyval

    def typeof_pyval(self, value):
        seen[f"{self.py_func.__module__}.{self.py_func.__name__}"] += 1
        return real(self, value)

    monkeypatch.setattr(dispatcher._DispatcherBase, "typeof_pyval", typeof_pyval)
    return seen


@pytest.mark.parametrize("xs, ws, kwargs", LAYERS)
def test_warm_calls_type_their_kernels_arguments_in_c(typed_in_python, xs, ws, kwargs):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)

    def every_pass():
        for name in fastconv.backends.available():
            if name == "reference":
                continue
            for precision in PRECISIONS:
                with fastconv.precision(precision):
                    try:
                        y = fastconv.conv2d(x, w, backend=name, **kwargs)
                    except ValueError:  # not a call this backend runs
                        continue
                    fastconv.conv2d_backward(np.ones_like(y), x, w, backend=name, **kwargs)

    every_pass()  # compiled (or loaded), and each kernel's signature seen once
    typed_in_python.clear()
    every_pass()
    assert not typed_in_python
