"""The numba backend's depthwise kernel (``_numba_depthwise``): both of its paths, every edge case
of the flat one (runs across row ends, taps wholly in the padding, cropping), bands of the packed
one, channel multipliers, and the NaN/inf rules, against the reference loops in float64."""

import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv  # noqa: E402
from fastconv.backends import _numba_depthwise as dw  # noqa: E402
from fastconv.backends import reference  # noqa: E402
from fastconv.geometry import Geometry  # noqa: E402

numba_jit = fastconv.backends.get("numba")
RNG = np.random.default_rng(11)


def _flat(geom):
    flat = dw._dw_layout(geom.n, geom.c_in, geom.ih, geom.iw, geom.kh, geom.kw, geom.oh, geom.ow, geom.sh,
                         geom.sw, geom.pl, geom.dil_h, geom.dil_w, 2).flat
    assert flat == dw.takes_flat(geom.sh, geom.sw, geom.iw, geom.ow, geom.oh, geom.kh, geom.kw, geom.dil_w)  # twice
    return flat


# (x shape, kernel, multiplier, kwargs, path): "flat" keeps the width at stride 1, with a kernel of
# one row at most 3 wide (``FLAT_MAX_REACH``), of one column, or planes of one row; the 3x3 kernels
# of the flat path's edge cases run the packed path since its loops went flat (both kept)
CASES = [
    ((2, 3, 7, 9), (3, 3), 1, dict(padding=1), "packed"),
    ((2, 3, 7, 9), (1, 3), 1, dict(padding=(0, 1)), "flat"),
    ((2, 3, 7, 9), (3, 3), 1, dict(padding="same", dilation=2), "packed"),  # 5 wide: the packed path
    ((1, 2, 6, 5), (5, 5), 2, dict(padding=2), "packed"),
    ((1, 2, 6, 5), (1, 5), 1, dict(padding=((0, 0), (4, 0))), "packed"),
    ((1, 2, 6, 5), (1, 3), 1, dict(padding=((0, 0), (2, 0))), "flat"),       # causal: every dx < 0
    ((1, 2, 6, 5), (3, 3), 1, dict(padding=((1, 1), (0, 2))), "packed"),     # every dx > 0
    ((1, 2, 6, 5), (1, 3), 1, dict(padding=((1, 1), (0, 2))), "flat"),       # ... and a row of padding each side
    ((1, 2, 6, 5), (3, 3), 1, dict(padding=((3, 3), (0, 2))), "packed"),     # taps wholly in the padding
    ((1, 2, 6, 5), (3, 1), 1, dict(padding=((3, 3), (0, 0))), "flat"),       # ... on the flat path
    ((1, 2, 4, 2), (3, 3), 3, dict(padding=((1, 1), (2, 0))), "packed"),     # |dx| up to the width
    ((1, 2, 4, 2), (1, 3), 3, dict(padding=((1, 1), (2, 0))), "flat"),
    ((1, 2, 1, 9), (1, 7), 1, dict(padding=((0, 0), (3, 3))), "flat"),       # one row: flat at any width
    ((1, 2, 4, 3), (3, 7), 3, dict(padding=((1, 1), (3, 3))), "packed"),
    ((2, 4, 9, 8), (3, 3), 1, dict(padding=0), "packed"),
    ((2, 4, 9, 8), (3, 3), 1, dict(stride=2, padding=1), "packed"),
    ((1, 3, 11, 10), (5, 5), 2, dict(stride=(2, 3), padding=(2, 1), dilation=(1, 2)), "packed"),
    ((1, 2, 130, 131), (3, 3), 1, dict(stride=2, padding=1), "packed"),     # two bands of rows
    ((1, 2, 7, 1), (3, 1), 1, dict(padding=((1, 1), (0, 0))), "flat"),       # width 1
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,mult,kwargs,path", CASES)
def test_both_passes_match_the_reference(shape, kernel, mult, kwargs, path, dtype):
    n, c, h, w_ = shape
    geom = Geometry.from_args(shape, (c * mult, 1, *kernel), groups=c, **kwargs)
    assert numba_jit._depthwise(geom.groups, geom.c_in_g) and _flat(geom) == (path == "flat")
    x, w, gy = (RNG.standard_normal(s) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    bias = RNG.standard_normal(geom.c_out)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    cast = [a.astype(dtype) for a in (x, w, gy, bias)]
    got = numba_jit.forward(cast[0], cast[1], geom, cast[3])
    want = reference.forward(x, w, geom) + bias.reshape(-1, 1, 1)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(numba_jit.grad_input(cast[2], cast[1], geom), reference.grad_input(gy, w, geom), **tol)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's inf * 0
@pytest.mark.parametrize("kh", [1, 3])
def test_non_finite_values_at_row_ends_stay_where_they_belong(kh):
    # the flat path's runs (a kernel of one row) read the next row's first pixel in place of the
    # padding: an inf there must not reach the row's last output, and an inf weight times padding
    # is NaN (as the reference); the packed path (3x3) alike
    geom = Geometry.from_args((1, 2, 5, 6), (2, 1, kh, 3), groups=2, padding=(kh // 2, 1))
    assert _flat(geom) == (kh == 1)
    x, w = RNG.standard_normal(geom.x_shape), RNG.standard_normal(geom.w_shape)
    x[0, 0, 2, 0] = np.inf
    x[0, 1, 1, 5] = np.nan
    for weights in (w, np.where(np.arange(w.size).reshape(w.shape) == 3, np.inf, w)):
        got, want = numba_jit.forward(x, weights, geom), reference.forward(x, weights, geom)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


def test_conv1d_depthwise_runs_the_flat_path_and_matches():
    x, w = RNG.standard_normal((2, 4, 50)), RNG.standard_normal((4, 1, 9))
    got = fastconv.conv1d(x, w, padding="same", groups=4, backend="numba")
    want = fastconv.conv1d(x, w, padding="same", groups=4, backend="reference")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,mult,kwargs,path", CASES)
def test_weight_gradient_matches_the_reference(shape, kernel, mult, kwargs, path, dtype):
    n, c, h, w_ = shape
    geom = Geometry.from_args(shape, (c * mult, 1, *kernel), groups=c, **kwargs)
    x, gy = (RNG.standard_normal(s) for s in (geom.x_shape, geom.y_shape))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    got = numba_jit.grad_weight(gy.astype(dtype), x.astype(dtype), geom)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, reference.grad_weight(gy, x, geom), **tol)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's inf * 0
def test_weight_gradient_non_finite_values_match_the_reference():
    # an inf at a row's end meets gy's thrown-away columns: that channel is summed again exactly
    geom = Geometry.from_args((2, 3, 6, 7), (3, 1, 3, 3), groups=3, padding=1)
    x, gy = RNG.standard_normal(geom.x_shape), RNG.standard_normal(geom.y_shape)
    x[1, 0, 2, 6] = np.inf
    gy[0, 2, 0, 0] = np.nan
    got, want = numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)
