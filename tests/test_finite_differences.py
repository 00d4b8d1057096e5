"""float64 gradients checked by central differences: no torch involved."""

import numpy as np
import pytest

import fastconv
from tests.oracle import Spec

CASES = [
    pytest.param(Spec((2, 3, 6, 5), (4, 3, 3, 2), stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2)),
                 id="asym"),
    pytest.param(Spec((1, 4, 5, 5), (4, 2, 3, 3), padding="same", stride=2, groups=2), id="same-s2-groups"),
    pytest.param(Spec((2, 3, 5, 6), (3, 1, 2, 2), padding=1, groups=3, layout="NHWC"), id="depthwise-nhwc"),
    # dilated at stride 1: winograd's phases (of two sizes per axis here), every backend
    pytest.param(Spec((2, 4, 9, 8), (3, 4, 3, 3), padding=((2, 1), (3, 0)), dilation=(2, 3)), id="dilated-s1"),
]


@pytest.mark.parametrize("spec", CASES)
def test_gradients_match_central_differences(backend, spec):
    x, w, b = spec.inputs(np.float64, seed=5)
    rng = np.random.default_rng(6)
    y = fastconv.conv2d(x, w, b, **spec.kwargs, layout=spec.layout, backend=backend)
    gy = rng.standard_normal(y.shape)

    def loss(x_, w_, b_):
        return float(np.sum(fastconv.conv2d(x_, w_, b_, **spec.kwargs, layout=spec.layout,
                                            backend=backend) * gy))

    g = fastconv.conv2d_backward(gy, x, w, **spec.kwargs, layout=spec.layout, backend=backend)
    eps = 1e-6
    for k, (arr, grad) in enumerate(((x, g.input), (w, g.weight), (b, g.bias))):
        for flat in rng.choice(arr.size, size=min(arr.size, 12), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            plus, minus = [a.copy() for a in (x, w, b)], [a.copy() for a in (x, w, b)]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            # The loss is linear in each argument, so central differences are exact up to rounding.
            assert abs(numeric - grad[idx]) <= 1e-6 * max(1.0, abs(numeric)), (k, idx, numeric, grad[idx])
