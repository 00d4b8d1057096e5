"""The numba backend's depthwise kernels: both paths of ``_numba_depthwise`` (every edge case of the
flat one: runs across row ends, taps wholly in the padding, cropping; bands of the packed one,
channel multipliers) and the channels in lanes of ``_numba_depthwise_lanes``, and the NaN/inf
rules, against the reference loops in float64."""

import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv  # noqa: E402
from fastconv.backends import _numba_depthwise as dw  # noqa: E402
from fastconv.backends import _numba_depthwise_lanes as dwl  # noqa: E402
from fastconv.backends import reference  # noqa: E402
from fastconv.geometry import Geometry  # noqa: E402
from tests.oracle import extra_bytes  # noqa: E402
from tests.quiet import ran_parts  # noqa: E402

numba_jit = fastconv.backends.get("numba")
RNG = np.random.default_rng(11)
lanes_only = pytest.mark.skipif(not numba_jit._gemm.WIDE, reason="the lanes kernel needs AVX-512")


def _same_values(got, want, tol):
    """NaN and inf where the reference has them, the finite values within ``tol``."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=tol, atol=tol)


@pytest.fixture
def no_lanes(monkeypatch):
    """The depthwise forward without the lanes kernel (it would take these float32 calls), numba's
    kernels chosen afresh before and after."""
    monkeypatch.setattr(numba_jit, "LANES_MAX_BYTES", -1)
    numba_jit.forget_kernels()
    yield
    numba_jit.forget_kernels()


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
def test_both_passes_match_the_reference(no_lanes, shape, kernel, mult, kwargs, path, dtype):
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
def test_non_finite_values_at_row_ends_stay_where_they_belong(no_lanes, kh):
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
        _same_values(got, want, 1e-12)


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
    _same_values(got, want, 1e-12)


# The lanes kernel (float32, one output channel an input channel): channel counts around a task's
# 16 lanes, rows of more outputs than one run of sums (``MAX_OUTPUTS``), planes of more pixels than
# a transposed block, kernel rows wholly in the padding, strides, dilations, one-sided and cropping
# padding, and CASES' single-channel-multiplier ones.
LANE_CASES = [
    ((2, 20, 7, 7), (7, 7), dict(padding=3)),
    ((3, 33, 14, 12), (7, 7), dict(padding=3)),
    ((2, 16, 9, 9), (3, 3), dict(stride=2, padding=1)),
    ((2, 17, 10, 11), (5, 5), dict(stride=2, padding=2)),
    ((1, 40, 8, 8), (3, 3), dict(padding=2, dilation=2)),
    ((2, 5, 6, 6), (3, 3), dict(padding=0)),
    ((1, 16, 3, 3), (5, 5), dict(padding=4)),  # rows and columns of taps in the padding only
    ((2, 31, 13, 9), (3, 3), dict(stride=3, padding=1)),
    ((1, 3, 19, 21), (2, 4), dict(padding=((1, 0), (3, 0)))),
    ((1, 2, 1, 40), (1, 7), dict(padding=((0, 0), (6, 0)))),
    ((1, 4, 12, 30), (3, 5), dict(stride=(1, 2), padding=(1, 2), dilation=(2, 1))),
] + [(shape, kernel, kwargs) for shape, kernel, mult, kwargs, path in CASES
       if mult == 1 and shape[2] < 100 and not (path == "flat" and kernel[0] * kernel[1] <= 3)]


@lanes_only
@pytest.mark.parametrize("shape,kernel,kwargs", LANE_CASES)
def test_the_lanes_match_the_reference(shape, kernel, kwargs):
    geom = Geometry.from_args(shape, (shape[1], 1, *kernel), groups=shape[1], **kwargs)
    x, w, gy = (RNG.standard_normal(s) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    bias = RNG.standard_normal(geom.c_out)
    x32, w32, gy32, b32 = (a.astype(np.float32) for a in (x, w, gy, bias))
    assert numba_jit._forward_plan(geom, 4, 2**30, None, 2)[1] == "depthwise-lanes"
    got = numba_jit.forward(x32, w32, geom, b32)
    np.testing.assert_allclose(got, reference.forward(x, w, geom) + bias.reshape(-1, 1, 1), rtol=1e-5, atol=1e-5)
    # the input gradient's stride phases are depthwise forwards too (cropped where the stride skips)
    np.testing.assert_allclose(numba_jit.grad_input(gy32, w32, geom), reference.grad_input(gy, w, geom),
                               rtol=1e-5, atol=1e-5)


@lanes_only
def test_the_lanes_give_the_same_bits_for_any_batch_and_threads():
    geom = Geometry.from_args((5, 37, 14, 14), (37, 1, 7, 7), groups=37, padding=3)
    x, w, b = (RNG.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, (37,)))
    whole = numba_jit.forward(x, w, geom, b)
    one = Geometry.from_args((1, 37, 14, 14), (37, 1, 7, 7), groups=37, padding=3)
    with fastconv.threads(1):
        alone = [numba_jit.forward(x[i:i + 1], w, one, b) for i in range(5)]
    np.testing.assert_array_equal(whole, np.concatenate(alone))


@lanes_only
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's inf * 0
def test_the_lanes_keep_non_finite_values_where_they_belong():
    # an inf weight meets the padding's zeros as the packed path's does (NaN there, as the
    # reference); an inf or NaN input reaches only the outputs whose taps read it
    geom = Geometry.from_args((1, 18, 6, 7), (18, 1, 3, 3), groups=18, padding=1)
    x, w = RNG.standard_normal(geom.x_shape), RNG.standard_normal(geom.w_shape)
    x[0, 0, 2, 0] = np.inf
    x[0, 17, 5, 6] = np.nan
    for weights in (w, np.where(np.arange(w.size).reshape(w.shape) == 3, np.inf, w)):
        got = numba_jit.forward(x.astype(np.float32), weights.astype(np.float32), geom)
        want = reference.forward(x, weights, geom)
        _same_values(got, want, 1e-5)


@lanes_only
def test_which_depthwise_calls_take_the_lanes():
    def kernel(xs, k, dtype=4, mult=1, **kw):
        geom = Geometry.from_args(xs, (xs[1] * mult, 1, k, k), groups=xs[1], **kw)
        return numba_jit._forward_plan(geom, dtype, 2**30, None, 2)[1]

    assert kernel((32, 768, 7, 7), 7, padding=3) == "depthwise-lanes"
    assert kernel((32, 144, 56, 56), 3, padding=1) == "depthwise-lanes"
    assert kernel((8, 32, 224, 224), 3, stride=2, padding=1) == "depthwise-lanes"  # 3.8 MiB a slot
    assert kernel((2, 8, 320, 320), 3, padding=1) == "depthwise-packed"  # 12.6 MiB: the rows' own path
    assert kernel((32, 768, 7, 7), 7, dtype=8, padding=3) == "depthwise-packed"  # float32 only
    assert kernel((32, 96, 7, 7), 3, mult=2, padding=1) == "depthwise-packed"  # one output channel each

    def row(length, taps):  # a 1-D layer's plane of one row, "same" padding: the rows' flat path ...
        geom = Geometry.from_args((8, 64, 1, length), (64, 1, 1, taps), groups=64, padding=(0, taps // 2))
        return numba_jit._forward_plan(geom, 4, 2**30, None, 2)[1], numba_jit._lanes_grad_weight_fit(geom, 4)

    assert row(4000, 3) == ("depthwise-flat", False)
    assert row(4000, 5) == ("depthwise-lanes", True)  # ... up to 3 taps (``LANES_FLAT_MAX_TAPS``)


# The strided input gradient's phases together (``_dwl._gi_part``): kernels larger and smaller than
# the stride (phases no tap reaches: zeros), odd sizes, one-sided and cropping padding, a stride on
# one axis only.
GRAD_LANE_CASES = [
    ((2, 20, 14, 14), (3, 3), dict(stride=2, padding=1)),
    ((3, 33, 13, 11), (5, 5), dict(stride=2, padding=2)),
    ((2, 17, 9, 10), (2, 2), dict(stride=2)),
    ((1, 16, 10, 10), (2, 2), dict(stride=3, padding=1)),  # a third of the phases get no tap
    ((1, 5, 12, 9), (3, 3), dict(stride=(1, 2), padding=(1, 0))),
    ((2, 8, 11, 12), (4, 3), dict(stride=3, padding=((2, 0), (0, 1)))),
    ((1, 3, 7, 7), (7, 7), dict(stride=2, padding=3)),
]


@lanes_only
@pytest.mark.parametrize("shape,kernel,kwargs", GRAD_LANE_CASES)
def test_the_lanes_input_gradient_at_a_stride(monkeypatch, shape, kernel, kwargs):
    geom = Geometry.from_args(shape, (shape[1], 1, *kernel), groups=shape[1], **kwargs)
    gy, w = RNG.standard_normal(geom.y_shape), RNG.standard_normal(geom.w_shape)
    gy32, w32 = gy.astype(np.float32), w.astype(np.float32)
    assert numba_jit._lanes_grad_input_fit(geom, 4, 2**30, None)
    got = numba_jit.grad_input(gy32, w32, geom)
    np.testing.assert_allclose(got, reference.grad_input(gy, w, geom), rtol=1e-5, atol=1e-5)
    # the same bits as the phases one at a time on the lanes kernel
    monkeypatch.setattr(numba_jit, "_lanes_grad_input_fit", lambda *args: False)
    np.testing.assert_array_equal(numba_jit.grad_input(gy32, w32, geom), got)


@lanes_only
def test_which_strided_input_gradients_take_the_lanes():
    def fits(xs, k, item=4, mult=1, pinned=None, **kw):
        geom = Geometry.from_args(xs, (xs[1] * mult, 1, k, k), groups=xs[1], **kw)
        return numba_jit._lanes_grad_input_fit(geom, item, 2**30, pinned)

    assert fits((32, 576, 14, 14), 3, stride=2, padding=1)
    assert not fits((32, 576, 14, 14), 3, item=8, stride=2, padding=1)  # float32 only
    assert not fits((32, 96, 14, 14), 3, mult=2, stride=2, padding=1)  # one output channel each
    assert not fits((2, 8, 320, 320), 3, stride=2, padding=1)  # past LANES_MAX_BYTES
    assert not fits((8, 32, 14, 14), 3, stride=2, padding=1, pinned=(((0, 0), "depthwise-packed"),))


# The weight gradient with channels in lanes (``_dwl._gw_part``): more than one block of channels
GRAD_WEIGHT_LANE_CASES = [
    ((2, 20, 7, 7), (7, 7), dict(padding=3)),
    ((3, 33, 14, 12), (5, 5), dict(padding=2)),
    ((2, 17, 9, 9), (3, 3), dict(stride=2, padding=1)),
    ((2, 40, 8, 8), (3, 3), dict(padding=2, dilation=2)),
    ((1, 18, 3, 3), (5, 5), dict(padding=4)),  # rows and columns of taps in the padding only
    ((2, 31, 13, 9), (3, 3), dict(stride=3, padding=1)),
    ((1, 19, 19, 21), (2, 9), dict(padding=((1, 0), (3, 5)))),  # 9 taps a row: two runs of sums
    ((1, 24, 12, 30), (3, 5), dict(stride=(1, 2), padding=(1, 2), dilation=(2, 1))),
]


@lanes_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,kwargs", GRAD_WEIGHT_LANE_CASES)
def test_the_lanes_weight_gradient(shape, kernel, kwargs, dtype):
    geom = Geometry.from_args(shape, (shape[1], 1, *kernel), groups=shape[1], **kwargs)
    x, gy = RNG.standard_normal(geom.x_shape), RNG.standard_normal(geom.y_shape)
    assert numba_jit._lanes_grad_weight_fit(geom, np.dtype(dtype).itemsize)
    got = numba_jit.grad_weight(gy.astype(dtype), x.astype(dtype), geom)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, reference.grad_weight(gy, x, geom), rtol=tol, atol=tol)
    with fastconv.threads(1):  # the blocks of channels are what the threads share
        np.testing.assert_array_equal(numba_jit.grad_weight(gy.astype(dtype), x.astype(dtype), geom), got)


@lanes_only
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's inf * 0
def test_the_lanes_weight_gradient_leaves_non_finite_values_to_the_rows_path():
    geom = Geometry.from_args((2, 20, 6, 7), (20, 1, 3, 3), groups=20, padding=1)
    x, gy = RNG.standard_normal(geom.x_shape), RNG.standard_normal(geom.y_shape)
    x[1, 0, 2, 6] = np.inf
    gy[0, 17, 0, 0] = np.nan
    gy[1, 3, 5, 6] = np.inf  # at a corner: its taps into the padding have no product
    got = numba_jit.grad_weight(gy.astype(np.float32), x.astype(np.float32), geom)
    want = reference.grad_weight(gy, x, geom)
    _same_values(got, want, 1e-4)


@lanes_only
def test_which_weight_gradients_take_the_lanes():
    def fits(xs, k, item=4, mult=1, **kw):
        geom = Geometry.from_args(xs, (xs[1] * mult, 1, k, k), groups=xs[1], **kw)
        return numba_jit._lanes_grad_weight_fit(geom, item)

    assert fits((32, 960, 7, 7), 3, padding=1)
    assert fits((32, 17, 7, 7), 3, padding=1)
    assert not fits((32, 16, 7, 7), 3, padding=1)  # one block of channels: one thread's work
    assert fits((32, 960, 7, 7), 3, item=8, padding=1)  # float64 too (its forward: float32 only)
    assert not fits((32, 96, 7, 7), 3, mult=2, padding=1)
    assert not fits((2, 32, 320, 320), 3, padding=1)  # past LANES_MAX_BYTES


@lanes_only
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("name", ["forward", "grad_input", "grad_weight"])
def test_the_lanes_stay_inside_the_scratch_they_size(name, threads):
    """Workspaces exactly as large as the sizers say, followed by guards left untouched."""
    geom = Geometry.from_args((3, 37, 9, 11), (37, 1, 3, 4), groups=37, stride=2, padding=(1, 2))
    x, w, gy = (RNG.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    hyper = (geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h, geom.dil_w)
    if name == "forward":
        nf, ni = dwl.scratch(*geom.x_shape, geom.kh, geom.kw, geom.oh, geom.ow, geom.sw, geom.dil_w, threads)
        got, want = np.empty(geom.y_shape, np.float32), reference.forward(x, w, geom)
        args, prepare, part = (x, w, np.zeros(37, np.float32), got, *hyper), dwl._prepare, dwl._part
    elif name == "grad_input":
        phases, pl, wp = dwl.grad_input_plan(geom)
        nf, ni = dwl.grad_input_scratch(37, geom.oh, geom.ow, geom.ih, geom.iw, geom.kh, geom.kw, wp, len(phases),
                                        threads)
        got, want = np.empty(geom.x_shape, np.float32), reference.grad_input(gy, w, geom)
        args, prepare, part = (gy, w, got, phases, pl, wp, geom.sh, geom.sw), dwl._gi_prepare, dwl._gi_part
    else:
        nf, ni = dwl.grad_weight_scratch(37, geom.ih, geom.iw, geom.kh, geom.kw, geom.oh, geom.ow, geom.sw, geom.dil_w,
                                         threads)
        got, want = np.empty(geom.w_shape, np.float32), reference.grad_weight(gy, x, geom)
        args, prepare, part = (gy, x, got, *hyper), dwl._gw_prepare, dwl._gw_part
    fws, iws = np.full(nf + 64, np.nan, np.float32), np.full(ni + 8, -7, np.int64)
    prepare(*args, threads, fws[:nf], iws[:ni])
    for slot in range(threads):  # every slot, as fastconv's threads run them
        part(*args, threads, fws[:nf], iws[:ni], slot)
    assert np.isnan(fws[nf:]).all() and (iws[ni:] == -7).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@lanes_only
@pytest.mark.parametrize("name", ["forward", "grad_input", "grad_weight"])
def test_the_lanes_extra_memory_stays_under_budget(budget, monkeypatch, name):
    # 1 MiB: each of two slots' transposed planes (7x7 C=768: 21 KiB), the packed weight (147 KiB)
    # and the tables; the input gradient at stride 2 (gx's planes, 14x14: 12 KiB a slot)
    stride = 2 if name == "grad_input" else 1
    geom = Geometry.from_args((8, 768, 7 * stride, 7 * stride), (768, 1, 7, 7), groups=768, stride=stride, padding=3)
    x, w, gy = (RNG.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    ran = ran_parts(monkeypatch)
    budget(2**20)
    call = {"forward": lambda: numba_jit.forward(x, w, geom), "grad_input": lambda: numba_jit.grad_input(gy, w, geom),
            "grad_weight": lambda: numba_jit.grad_weight(gy, x, geom)}[name]
    extra, _ = extra_bytes(call)
    assert extra <= 2**20, f"{name}: {extra} bytes beyond the result"
    assert {dwl._part, dwl._gi_part, dwl._gw_part} & set(ran)
    budget(16 * 2**10)  # too little for the lanes: the rows' paths
    ran.clear()
    call()
    assert not {dwl._part, dwl._gi_part, dwl._gw_part} & set(ran)


# 3-D depthwise forwards on their own kernel (``_dw3_part``): (x shape, kernel, multiplier, kwargs)
VOLUME_CASES = [
    ((2, 3, 5, 6, 7), (3, 3, 3), 1, dict(padding=1)),
    ((2, 3, 5, 6, 7), (3, 3, 3), 2, dict(padding=1)),  # a channel multiplier
    ((1, 2, 7, 9, 8), (2, 3, 2), 3, dict(padding=(1, 0, 2), stride=(2, 1, 3))),  # strides, an even depth
    ((1, 2, 9, 9, 9), (3, 3, 3), 1, dict(padding=2, dilation=2)),
    ((1, 2, 9, 9, 9), (3, 3, 3), 1, dict(padding=((2, 0), (1, 1), (0, 2)), dilation=(2, 1, 1))),  # uneven
    ((2, 4, 4, 5, 6), (1, 3, 3), 1, dict(padding=(0, 1, 1))),  # 1 x kH x kW: no depth taps
    ((1, 2, 6, 6, 6), (3, 3, 3), 1, dict(stride=2)),  # unpadded
    ((1, 2, 3, 4, 4), (3, 3, 3), 1, dict(padding=(3, 1, 1))),  # taps wholly in the depth padding
    ((1, 2, 4, 130, 9), (3, 3, 3), 1, dict(padding=1)),  # two bands of rows
]


def _volume(shape, kernel, mult, kwargs, dtype=np.float64, seed=0):
    c = shape[1]
    geom = Geometry.from_args(shape, (c * mult, 1, *kernel), groups=c, **kwargs)
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (geom.x_shape, geom.w_shape, (geom.c_out,)))
    return geom, x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,mult,kwargs", VOLUME_CASES)
def test_volumes_run_their_own_kernel_and_match_the_reference(monkeypatch, shape, kernel, mult, kwargs, dtype):
    geom, x, w, b = _volume(shape, kernel, mult, kwargs, dtype)
    ran = ran_parts(monkeypatch)
    kept = x.copy(), w.copy(), b.copy()
    for bias in (None, b):
        got = numba_jit.forward(x, w, geom, bias)
        want = reference.forward(x.astype(np.float64), w.astype(np.float64), geom,
                                 None if bias is None else bias.astype(np.float64))
        assert got.dtype == dtype and got.flags.c_contiguous and got.shape == geom.y_shape
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    assert ran == [dw._dw3_part, dw._dw3_part]
    for before, now in zip(kept, (x, w, b)):
        np.testing.assert_array_equal(before, now)  # inputs untouched


def test_volumes_give_the_same_bits_for_any_threads(use_threads):
    geom, x, w, b = _volume((3, 5, 6, 7, 8), (3, 3, 3), 2, dict(padding=1), np.float32)
    outs = []
    for threads in (1, 2, 3):
        use_threads(threads)
        outs.append(numba_jit.forward(x, w, geom, b))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_volumes_whose_kernel_is_1x1_in_the_plane_keep_the_lifts_view(monkeypatch):
    """A kD x 1 x 1 kernel at unit stride, unpadded in the plane: the lift's 2-D depthwise call over
    (D, H*W), a view, ran faster than the volume kernel; padded in the plane, the kernel."""
    ran = ran_parts(monkeypatch)
    for kwargs, own in ((dict(padding=(1, 0, 0)), False), (dict(padding=1), True)):
        geom, x, w, b = _volume((2, 3, 5, 6, 7), (3, 1, 1), 1, kwargs)
        ran.clear()
        np.testing.assert_allclose(numba_jit.forward(x, w, geom, b), reference.forward(x, w, geom, b), rtol=1e-12,
                                   atol=1e-12)
        assert (dw._dw3_part in ran) is own


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's inf * 0
def test_volumes_with_a_non_finite_weight_take_the_lift_and_match_the_reference(monkeypatch):
    """inf or NaN in the weight: the lift's 2-D path, which mends its products with the padding."""
    geom, x, w, b = _volume((1, 2, 4, 5, 5), (3, 3, 3), 1, dict(padding=1))
    w[1, 0, 0, 1, 1] = np.inf
    ran = ran_parts(monkeypatch)
    with np.errstate(invalid="ignore"):
        got, want = numba_jit.forward(x, w, geom), reference.forward(x, w, geom)
    assert dw._dw3_part not in ran
    _same_values(got, want, 1e-10)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_volumes_stay_inside_the_scratch_they_size(threads):
    """Workspaces exactly as large as ``_dw3_scratch`` says, followed by guards left untouched."""
    geom, x, w, b = _volume((2, 3, 5, 7, 9), (3, 2, 3), 2, dict(padding=(1, 1, 0), stride=(2, 1, 2)), np.float32)
    (sd, sh, sw), (dd, dh, dwl_), ((pd, _), (pt, _), (pl, _)) = geom.stride, geom.dilation, geom.padding
    nf, ni = dw._dw3_scratch(geom.x_shape, geom.y_shape, *geom.kernel, sd, sh, sw, dd, dh, dwl_, threads)
    fws, iws = np.full(nf + 64, np.nan, np.float32), np.full(ni + 8, -7, np.int64)
    got = np.empty(geom.y_shape, np.float32)
    for slot in range(threads):
        dw._dw3_part(x, w, b, got, sd, sh, sw, pd, pt, pl, dd, dh, dwl_, threads, fws[:nf], iws[:ni], slot)
    assert np.isnan(fws[nf:]).all() and (iws[ni:] == -7).all()
    np.testing.assert_allclose(got, reference.forward(x, w, geom, b), rtol=1e-4, atol=1e-4)


def test_volume_extra_memory_stays_under_budget(budget, monkeypatch):
    """Each slot's packed planes of a band (N=2 C=64 16x28x28, 3x3x3: 18 planes of 30x30 for two
    slots, 130 KiB) within 1 MiB; past the budget the lift's path, as before."""
    geom, x, w, _ = _volume((2, 64, 16, 28, 28), (3, 3, 3), 1, dict(padding=1), np.float32)
    ran = ran_parts(monkeypatch)
    budget(2**20)
    extra, _ = extra_bytes(lambda: numba_jit.forward(x, w, geom))
    assert extra <= 2**20, f"{extra} bytes beyond the result"
    assert dw._dw3_part in ran
    budget(32 * 2**10)
    ran.clear()
    numba_jit.forward(x, w, geom)
    assert dw._dw3_part not in ran
