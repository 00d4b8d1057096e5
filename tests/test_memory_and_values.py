"""Inputs are never modified and never aliased, whatever their memory order; NaN and inf propagate."""

import numpy as np
import pytest

import fastconv
from tests.oracle import Spec, assert_close

SPEC = Spec((2, 4, 7, 6), (6, 2, 3, 3), stride=(2, 1), padding=((1, 0), (2, 1)), groups=2)


def _views(a):
    """The same values in memory orders that catch a backend assuming C order or writable data."""
    base = np.ascontiguousarray(a)
    ro = base.copy()
    ro.flags.writeable = False
    return {
        "C": base.copy(),
        "fortran": np.asfortranarray(base),
        "negative-strides": base[..., ::-1].copy()[..., ::-1],
        "read-only": ro,
        "strided-slice": np.repeat(base, 2, axis=-1)[..., ::2],
        "broadcast": np.broadcast_to(base[:1], base.shape) if base.shape[0] > 1 else base,
    }


@pytest.mark.parametrize("order", list(_views(np.zeros((2, 2)))))
def test_inputs_unchanged_and_not_aliased(backend, order):
    x0, w0, b0 = SPEC.inputs(np.float64)
    x, w, b = (_views(a)[order] for a in (x0, w0, b0))
    y = fastconv.conv2d(x, w, b, **SPEC.kwargs, backend=backend)
    gy = _views(np.random.default_rng(3).standard_normal(y.shape))[order]
    saved = [a.copy() for a in (x, w, b, gy)]
    g = fastconv.conv2d_backward(gy, x, w, **SPEC.kwargs, backend=backend)
    assert_close(y, SPEC.torch_forward(np.array(x), np.array(w), np.array(b)))
    for want, got in zip(SPEC.torch_backward(np.array(gy), np.array(x), np.array(w)), g):
        assert_close(got, want)
    y = fastconv.conv2d(x, w, b, **SPEC.kwargs, backend=backend)
    for a, s in zip((x, w, b, gy), saved):
        np.testing.assert_array_equal(a, s)
    for out in (y, *g):
        assert out.flags.c_contiguous and out.flags.writeable
        assert not any(np.shares_memory(out, a) for a in (x, w, b, gy))


def test_results_do_not_alias_inputs_in_trivial_cases(backend):
    """A 1x1 kernel on one channel is an identity-like case where returning a view would be tempting."""
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
    w = np.ones((1, 1, 1, 1))
    y = fastconv.conv2d(x, w, backend=backend)
    g = fastconv.conv2d_backward(x, x, w, backend=backend)
    assert not np.shares_memory(y, x) and not np.shares_memory(g.input, x)
    y[...] = 0
    assert x.any()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_propagate(backend, bad):
    """Non-finite values reach exactly the outputs whose receptive field holds them; no crash."""
    x, w, b = SPEC.inputs(np.float32)
    x = x.copy()
    x[1, 0, 3, 2] = bad
    y = fastconv.conv2d(x, w, b, **SPEC.kwargs, backend=backend)
    reach = SPEC.torch_forward((~np.isfinite(x)).astype(np.float64), np.ones_like(w, np.float64), None) > 0
    assert np.array_equal(~np.isfinite(y), reach)
    if bad == np.nan:
        assert np.isnan(y[reach]).all()
    g = fastconv.conv2d_backward(np.ones_like(y), x, w, **SPEC.kwargs, backend=backend)
    assert np.isfinite(g.input).all()  # the input gradient never reads x
    assert not np.isfinite(g.weight[:3]).all() and np.isfinite(g.weight[3:]).all()  # group 0 only
