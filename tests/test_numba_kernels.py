"""The numba kernels' building blocks: the register-tile helpers, the named layouts and the
scratch they size, and the partial tiles (fewer than 4 channels) of every pass.

test_numba.py checks the backend end to end on shapes chosen per code path; here each helper is
held to NumPy on its own (through a small compiled caller, since they are inlined where used), and
the channel counts around the tile width are swept through all three passes.
"""

import numpy as np
import pytest

nb = pytest.importorskip("numba")

import fastconv  # noqa: E402
from fastconv._precision import TOLERANCE  # noqa: E402
from fastconv.backends import _numba_kernels as k  # noqa: E402
from fastconv.backends import reference  # noqa: E402
from fastconv.geometry import Geometry  # noqa: E402

numba_jit = fastconv.backends.get("numba")
RNG = np.random.default_rng(7)


def _rand(*shape):
    return RNG.standard_normal(shape)


@nb.njit
def _call_axpy(acc, x, wt, cnt):
    a0, a1, a2, a3 = k._rows4(acc, 0, 0, acc.shape[1])
    x0, x1, x2, x3 = k._rows4(x, 0, 0, x.shape[1])
    k._axpy4x4(a0, a1, a2, a3, x0, x1, x2, x3, wt, cnt)
    k._axpy1x4(a0, x0, x1, x2, x3, wt[:, 0], cnt)
    k._axpy4x1(a0, a1, a2, a3, x0, wt[0], cnt)
    k._axpy(a3, x3, wt[3, 3], cnt)


def test_axpy_tiles_match_numpy():
    acc, x, wt = _rand(4, 40), _rand(4, 40), _rand(4, 4)
    want = acc.copy()
    cnt = 37  # past cnt nothing changes
    want[:, :cnt] += wt.T @ x[:, :cnt]
    want[0, :cnt] += wt[:, 0] @ x[:, :cnt]
    want[:, :cnt] += wt[0][:, None] * x[0, :cnt]
    want[3, :cnt] += wt[3, 3] * x[3, :cnt]
    _call_axpy(acc, x, wt, cnt)
    np.testing.assert_allclose(acc, want, rtol=1e-12, atol=1e-12)


@nb.njit
def _call_dots(y, x, cnt, zero):
    y0, y1, y2, y3 = k._rows4(y, 0, 0, y.shape[1])
    x0, x1, x2, x3 = k._rows4(x, 0, 0, x.shape[1])
    s = k._dot4x4(y0, y1, y2, y3, x0, x1, x2, x3, cnt, zero)
    t = k._dot1x4(y0, x0, x1, x2, x3, cnt, zero)
    return s, t, k._dot(y1, x2, cnt, zero)


def test_dot_tiles_match_numpy():
    y, x = _rand(4, 50), _rand(4, 50)
    s, t, d = _call_dots(y, x, 45, 0.0)
    np.testing.assert_allclose(np.array(s), y[:, :45] @ x[:, :45].T, rtol=1e-12)
    np.testing.assert_allclose(np.array(t), x[:, :45] @ y[0, :45], rtol=1e-12)
    assert d == pytest.approx(y[1, :45] @ x[2, :45], rel=1e-12)


def test_rows4_repeats_the_last_row_past_the_end():
    a = np.arange(12.0).reshape(3, 4)

    @nb.njit
    def rows(a, r0):
        return k._rows4(a, r0, 1, 3)

    got = rows(a, 1)
    assert [list(r) for r in got] == [[5.0, 6.0], [9.0, 10.0], [9.0, 10.0], [9.0, 10.0]]


@pytest.mark.parametrize(("cb", "step"), [(1, 1), (2, 1), (3, 1), (4, 1), (4, 4)])  # 4 gy rows: 4 gx rows
def test_scatter_tap_updates_only_its_cb_rows(cb, step):
    g, s, wt = _rand(4, 30), _rand(4, 30), _rand(step, cb)

    @nb.njit
    def tap(g, s, wt, cb, step, qstep):
        g0, g1, g2, g3 = k._strided4(g, 0, 1, qstep, 10)
        s0, s1, s2, s3 = k._rows4(s, 0, 2, 12)
        k._scatter_tap(g0, g1, g2, g3, s0, s1, s2, s3, wt, cb, step, 10)

    want = g.copy()
    want[:cb, 1:29:3][:, :10] += wt.T @ s[:step, 2:12]
    tap(g, s, wt, cb, step, 3)
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cb", [1, 2, 3, 4])
def test_gather_tap_updates_only_its_cb_sums(cb):
    y, x = _rand(4, 20), _rand(20)
    gw = _rand(6)

    @nb.njit
    def tap(gwv, y, x, cb):
        y0, y1, y2, y3 = k._rows4(y, 0, 0, 20)
        k._gather_tap(gwv, y0, y1, y2, y3, x, cb, 20, 0.0)

    want = gw.copy()
    want[1:1 + cb] += y[:cb] @ x
    tap(gw[1:1 + cb], y, x, cb)
    np.testing.assert_allclose(gw, want, rtol=1e-12)


LAYOUT_ARGS = [  # n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads
    (32, 64, 64, 3, 3, 56, 56, 1, 1, 1, 1, 1, 2),
    (2, 6, 1, 5, 5, 300, 7, 2, 1, 1, 2, 6, 3),
    (1, 3, 2, 7, 7, 1, 1, 2, 2, 1, 1, 1, 8),
]


@pytest.mark.parametrize("args", LAYOUT_ARGS)
def test_layouts_are_named_and_cover_the_output(args):
    n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dh, dw, groups, nthreads = args
    lay = k._forward_layout(*args)
    assert type(lay).__name__ == "ForwardLayout" and lay._fields[0] == "nblk"
    assert lay.rows * lay.nband >= oh > (lay.nband - 1) * lay.rows
    assert lay.nblk * k.CB >= c_out // groups and lay.ntask == n * groups * lay.nband * lay.nseg * lay.nblk
    assert k._forward_scratch(*args) == (lay.wsize + lay.nslot * lay.slot, c_in_g * kh * kw)
    gl = k._gw_layout(*args)
    assert type(gl).__name__ == "GwLayout"
    assert k._gw_scratch(*args) == (gl.nslot * gl.slot, gl.nslot * c_in_g * kh * kw)
    assert gl.nimg >= 1 and gl.ntask == groups * gl.nblk


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kernel", ["forward", "grad_weight"])
def test_packed_kernels_stay_inside_the_scratch_they_size(kernel, threads):
    """Workspaces exactly as large as the sizer says, followed by NaN guards left untouched."""
    x, w = _rand(3, 5, 9, 11).astype(np.float32), _rand(6, 5, 3, 2).astype(np.float32)
    geom = Geometry.from_args(x.shape, w.shape, stride=(2, 1), padding=1, dilation=(1, 2))
    y = np.empty(geom.y_shape, np.float32)
    sizer = k._forward_scratch if kernel == "forward" else k._gw_scratch
    nf, ni = sizer(3, 6, 5, 3, 2, geom.oh, geom.ow, 2, 1, 1, 2, 1, threads)
    fws = np.full(nf + 64, np.nan, np.float32)
    iws = np.full(ni + 8, -7, np.int64)
    if kernel == "forward":
        args = (x, w, np.empty(0, np.float32), y, 2, 1, 1, 1, 1, 2, 1, threads, fws[:nf], iws[:ni])
        k._forward_prepare(*args)
        for slot in range(threads):  # every slot, as fastconv's threads run them
            k._forward_part(*args, slot)
        want = reference.forward(x, w, geom)
        got = y
    else:
        gy = _rand(*geom.y_shape).astype(np.float32)
        got = np.empty(w.shape, np.float32)
        for slot in range(threads):  # every slot, as fastconv's threads run them
            k._grad_weight_part(gy, x, got, 2, 1, 1, 1, 1, 2, 1, np.float32(0), threads, fws[:nf], iws[:ni], slot)
        want = reference.grad_weight(gy, x, geom)
    assert np.isnan(fws[nf:]).all() and (iws[ni:] == -7).all()
    tol = TOLERANCE[np.dtype(np.float32)]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


# Channel counts around the tile width (CB = CI = 4) in every pass, on the packed path, the
# input gradient's flat path with its border repair (non-finite weights take it), and its row
# loops (strided and dilated): every partial tile runs.
@pytest.mark.parametrize("c_in_g", [1, 2, 3, 5])
@pytest.mark.parametrize("c_out_g", [1, 3, 4, 6])
@pytest.mark.parametrize("kwargs", [dict(padding=((2, 0), (1, 2))), dict(stride=2, dilation=2, padding=1)],
                         ids=["flat", "rows"])
def test_partial_tiles_match_reference(c_in_g, c_out_g, kwargs):
    groups = 2
    x = _rand(2, c_in_g * groups, 7, 8)
    w = _rand(c_out_g * groups, c_in_g, 3, 3)
    geom = Geometry.from_args(x.shape, w.shape, groups=groups, **kwargs)
    gy = _rand(*geom.y_shape)
    tol = dict(rtol=TOLERANCE[np.dtype(np.float64)], atol=TOLERANCE[np.dtype(np.float64)])
    np.testing.assert_allclose(numba_jit.forward(x, w, geom), reference.forward(x, w, geom), **tol)
    np.testing.assert_allclose(numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom), **tol)
    np.testing.assert_allclose(numba_jit.grad_input(gy, w, geom), reference.grad_input(gy, w, geom), **tol)
    # the direct loops (flat path and border repair, or the row loops) with the same channels
    for nthreads in (1, 3):  # every slot of the work, as fastconv's threads would run them
        gx = np.full(geom.x_shape, np.nan)
        for slot in range(nthreads):
            k._grad_input_part(gy, w, gx, geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h, geom.dil_w, groups, 0.0,
                               nthreads, np.empty(0), np.empty(0, np.int64), slot)
        np.testing.assert_allclose(gx, reference.grad_input(gy, w, geom), **tol)
    # the weight gradient's exact row loops (its fallback for non-finite blocks)
    gw = np.zeros(w.shape)
    for g in range(groups):
        for co0 in range(g * c_out_g, (g + 1) * c_out_g, k.CB):
            cb = min(k.CB, (g + 1) * c_out_g - co0)
            for bn in range(x.shape[0]):
                k._gw_rows(gy, x, gw, bn, co0, cb, g * c_in_g, geom.sh, geom.sw, geom.pt, geom.pl,
                           geom.dil_h, geom.dil_w, 0.0)
    np.testing.assert_allclose(gw, reference.grad_weight(gy, x, geom), **tol)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 3, 2048), (4, 3, 5), dict(padding=4, dilation=2)),  # a long signal: whole one-row bands of 2048
    # temporal, strided: rows of 2304 (at unit stride _numba_columns takes them)
    ((1, 4, 5, 48, 48), (6, 2, 3, 1, 1), dict(stride=(2, 1, 1), padding=(1, 0, 0), groups=2)),
])
def test_long_rows_are_summed_in_segments_and_match(x_shape, w_shape, kwargs):
    # One-row bands longer than SEGMENT are summed a segment of output columns at a time when the
    # kernel is one pixel wide.
    import fastconv.backends._lift as lift

    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    flat = lift.as_2d(geom)
    lay = k._forward_layout(flat.n, *flat.w_shape, flat.oh, flat.ow, flat.sh, flat.sw, flat.dil_h, flat.dil_w,
                            flat.groups, 2)
    assert (lay.nseg > 1) == (flat.kw == 1) and flat.ow % lay.nseg == 0  # 1-D: whole rows
    x, w, gy = (_rand(*s) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    bias = _rand(geom.c_out)
    conv = {3: (fastconv.conv1d, fastconv.conv1d_backward), 5: (fastconv.conv3d, fastconv.conv3d_backward)}
    fwd, bwd = conv[len(x_shape)]
    for threads in (1, 2):
        with fastconv.threads(threads):
            np.testing.assert_allclose(fwd(x, w, bias, backend="numba", **kwargs),
                                       fwd(x, w, bias, backend="reference", **kwargs), rtol=1e-10, atol=1e-10)
            got = bwd(gy, x, w, backend="numba", **kwargs)
            want = bwd(gy, x, w, backend="reference", **kwargs)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
