"""numba's kernels for kernels one pixel wide over long rows (``_numba_columns``): which calls take
them, and every edge of their sums (taps clipped by the top and bottom padding, chunk ends rounded
up to whole vectors, remainder channels, groups, dilation, slots) against the reference."""

import numpy as np
import pytest

import fastconv
from fastconv.backends import reference
from fastconv.backends._lift import as_2d
from fastconv.geometry import Geometry
from tests.nrt_count import array_wrappers
from tests.quiet import ran_parts

pytest.importorskip("numba")
numba_jit = fastconv.backends.get("numba")
from fastconv.backends import _numba_columns as cols  # noqa: E402  (needs numba)


def _rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("kw, sh, sw, pl, iw, ow, takes", [
    (1, 1, 1, 0, 3136, 3136, True),   # a 3x1x1 kernel's (D, H*W) view
    (1, 1, 1, 0, 520, 520, True),     # just past the packed path's one-row bands
    (1, 1, 1, 0, 384, 384, False),    # bands of two rows: the packed path is as fast
    (3, 1, 1, 1, 3136, 3136, False),  # wider kernels: packed
    (1, 2, 1, 0, 3136, 3136, False),  # a temporal stride: packed, in segments
    (1, 1, 2, 0, 3136, 1568, False),
    (1, 1, 1, 1, 3136, 3138, False),  # padded sideways
])
def test_which_calls_take_the_columns_kernels(kw, sh, sw, pl, iw, ow, takes):
    assert cols.applies(kw, sh, sw, pl, iw, ow) == takes


# (x shape, w shape, hyper-parameters), 2-D with rows of 520+ columns: taps clipped at the top and
# bottom, dilated taps, taps that reach no row at all, input and output channels that are not
# multiples of 4, groups, a 1x1 kernel, and a 3-D temporal kernel through the lift
CASES = [
    pytest.param((2, 8, 3, 600), (8, 8, 3, 1), dict(padding=(1, 0)), id="k3-pad1"),
    pytest.param((1, 5, 4, 530), (6, 5, 3, 1), dict(padding=((2, 0), (0, 0)), dilation=(2, 1)), id="dil2-top"),
    pytest.param((2, 7, 2, 1100), (9, 7, 5, 1), dict(padding=((3, 3), (0, 0))), id="taps-off-image"),
    pytest.param((3, 6, 3, 513), (9, 2, 2, 1), dict(padding=((0, 1), (0, 0)), groups=3), id="groups-k2"),
    pytest.param((1, 13, 1, 2000), (5, 13, 1, 1), {}, id="1x1"),
    pytest.param((2, 4, 5, 24, 24), (6, 2, 3, 1, 1), dict(padding=(1, 0, 0), groups=2), id="3d-3x1x1"),
]
CONV = {4: (fastconv.conv2d, fastconv.conv2d_backward), 5: (fastconv.conv3d, fastconv.conv3d_backward)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES)
def test_columns_kernels_match_reference(xs, ws, kwargs, dtype):
    geom = Geometry.from_args(xs, ws, **kwargs)
    flat = as_2d(geom)
    assert cols.applies(flat.kw, flat.sh, flat.sw, flat.pl, flat.iw, flat.ow)
    x, w, gy, bias = (_rand(s, dtype, i) for i, s in enumerate((xs, ws, geom.y_shape, (ws[0],))))
    fwd, bwd = CONV[len(xs)]
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    want_y = fwd(x.astype(float), w.astype(float), bias.astype(float), backend="reference", **kwargs)
    want_g = bwd(gy.astype(float), x.astype(float), w.astype(float), backend="reference", **kwargs)
    for threads in (1, 2, 3):  # slots that split tasks unevenly
        with fastconv.threads(threads):
            np.testing.assert_allclose(fwd(x, w, bias, backend="numba", **kwargs), want_y, **tol)
            no_bias = want_y - bias.reshape(-1, *[1] * (len(xs) - 2))
            np.testing.assert_allclose(fwd(x, w, backend="numba", **kwargs), no_bias, **tol)
            for got, want in zip(bwd(gy, x, w, backend="numba", **kwargs), want_g):
                np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_input_gradient_of_a_strided_k_x_1_kernel_runs_its_phases_here(monkeypatch, dtype):
    # A stride of 2 down the rows: the forward pass is the packed path's, each stride phase of the
    # input gradient (a stride-1 convolution with a 2x1 or 1x1 kernel over long rows) these kernels'.
    geom = Geometry.from_args((2, 6, 7, 600), (5, 6, 3, 1), stride=(2, 1), padding=(1, 0))
    x, w, gy = (_rand(s, dtype, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    ran = ran_parts(monkeypatch)
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(numba_jit.grad_input(gy, w, geom), reference.grad_input(gy, w, geom), **tol)
    assert ran == [cols._columns_part] * 2


def test_every_slot_of_a_large_call_and_the_rounded_chunk_ends(monkeypatch):
    # Calls under SERIAL_MAX_MACS run one slot; this one is split among threads, its chunks end on
    # whole vectors only where that reads nothing past the input (the last image's last channel).
    geom = Geometry.from_args((2, 16, 4, 2999), (12, 16, 3, 1), padding=(1, 0))
    assert geom.macs > numba_jit.SERIAL_MAX_MACS and geom.oh * geom.ow % cols.CHUNK
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    with fastconv.threads(2):
        got = numba_jit.forward(x, w, geom), numba_jit.grad_weight(gy, x, geom)
    np.testing.assert_allclose(got[0], reference.forward(x, w, geom), rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(got[1], reference.grad_weight(gy, x, geom), rtol=2e-4, atol=5e-3)


# NaN and inf meeting the padding: test_numba.py's test_nan_and_inf_meeting_padding_give_nan_like_reference
# has a case of these kernels.


def test_the_columns_kernels_run_and_allocate_nothing_when_warm(monkeypatch):
    # They take the call (spied), and a warm call's only Numba allocations are the wrappers of the
    # kernels' array arguments: 6 for the forward's prepare and each slot, 5 per weight-gradient slot.
    geom = Geometry.from_args((2, 8, 8, 1024), (8, 8, 3, 1), padding=(1, 0))
    assert geom.macs >= numba_jit.SERIAL_MAX_MACS  # two slots
    x, w, gy = (_rand(s, np.float32, i) for i, s in enumerate((geom.x_shape, geom.w_shape, geom.y_shape)))
    ran = ran_parts(monkeypatch)
    calls = ((numba_jit.forward, (x, w, geom)), (numba_jit.grad_weight, (gy, x, geom)))
    with fastconv.threads(2):
        for fn, args in calls:
            fn(*args)  # warm: compiled, workspaces grown
        assert ran == [cols._columns_part, cols._columns_gw_part]
        assert array_wrappers(calls) == [6 * 3, 5 * 2]
