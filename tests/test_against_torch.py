"""One test body per pass, run over every backend in the registry, with torch as the oracle."""

import numpy as np
import pytest

import fastconv
from tests.oracle import Spec, assert_close

S = Spec
CASES = [
    pytest.param(S((2, 3, 7, 7), (4, 3, 3, 3), padding=1), id="k3-p1"),
    pytest.param(S((2, 4, 5, 6), (3, 4, 1, 1)), id="k1"),
    pytest.param(S((2, 4, 5, 6), (3, 4, 1, 1), stride=2, padding=1), id="k1-s2-p1"),
    pytest.param(S((1, 2, 4, 5), (3, 2, 4, 5)), id="kernel-eq-input"),
    pytest.param(S((2, 2, 9, 9), (3, 2, 2, 2), stride=3), id="stride-gt-kernel"),
    pytest.param(S((2, 3, 9, 8), (4, 3, 3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
                 id="asym-stride-pad-dil"),
    pytest.param(S((2, 2, 7, 6), (3, 2, 3, 3), padding=((0, 2), (1, 0))), id="per-side"),
    pytest.param(S((1, 2, 6, 7), (2, 2, 2, 3), padding=((3, 0), (0, 4)), stride=2), id="per-side-large-s2"),
    pytest.param(S((2, 2, 6, 7), (3, 2, 3, 2), padding="valid"), id="valid"),
    pytest.param(S((2, 2, 6, 7), (3, 2, 3, 3), padding="same"), id="same"),
    pytest.param(S((2, 2, 6, 7), (3, 2, 4, 2), padding="same"), id="same-even-kernel"),
    pytest.param(S((2, 2, 7, 8), (3, 2, 3, 3), padding="same", stride=2), id="same-s2"),
    pytest.param(S((1, 2, 9, 6), (3, 2, 3, 2), padding="same", stride=(3, 2), dilation=2), id="same-s3-d2"),
    pytest.param(S((2, 4, 6, 6), (6, 2, 3, 3), padding=1, groups=2), id="groups2"),
    pytest.param(S((2, 3, 6, 6), (3, 1, 3, 3), padding=1, groups=3), id="depthwise"),
    pytest.param(S((2, 3, 6, 5), (6, 1, 3, 3), stride=2, groups=3, dilation=(1, 2)),
                 id="depthwise-x2-s2-d12"),
    pytest.param(S((2, 3, 7, 7), (4, 3, 3, 3), padding=1, bias=False), id="no-bias"),
    pytest.param(S((1, 1, 6, 6), (2, 1, 3, 3)), id="n1-cin1"),
    pytest.param(S((2, 2, 5, 5), (3, 2, 3, 3), padding=3), id="pad-gt-half-kernel"),
    pytest.param(S((2, 3, 6, 7), (4, 3, 1, 3), padding=(0, 1)), id="nonsquare-kernel"),
    pytest.param(S((2, 3, 6, 7), (4, 3, 3, 3), padding=1, stride=(1, 2)), id="s12-p1"),
    pytest.param(S((1, 3, 6, 7), (4, 3, 3, 3), padding=1, unbatched=True), id="unbatched-3d"),
    pytest.param(S((2, 4, 6, 7), (4, 2, 3, 2), padding=(1, 0), groups=2, layout="NHWC"), id="nhwc-groups"),
    pytest.param(S((1, 3, 6, 5), (2, 3, 3, 3), padding="same", stride=2, layout="NHWC", unbatched=True),
                 id="nhwc-unbatched-same-s2"),
    pytest.param(S((2, 3, 6, 7), (4, 3, 3, 3), padding=1, view="fortran"), id="fortran-input"),
    pytest.param(S((2, 3, 6, 7), (4, 3, 3, 3), stride=2, view="negstride"), id="negstride-input"),
]
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", CASES)
def test_forward_matches_torch(backend, spec, dtype):
    x, w, b = spec.inputs(dtype)
    before = [a.copy() for a in (x, w) + ((b,) if b is not None else ())]
    got = fastconv.conv2d(x, w, b, **spec.kwargs, backend=backend, layout=spec.layout)
    want = spec.torch_forward(x, w, b)
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    assert got.flags.c_contiguous and got.flags.writeable
    assert_close(got, want, dtype)
    for a, saved in zip((x, w, b), before):
        np.testing.assert_array_equal(a, saved)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", CASES)
def test_backward_matches_torch(backend, spec, dtype):
    x, w, _ = spec.inputs(dtype)
    y_shape = spec.torch_forward(x, w, None).shape
    gy = np.random.default_rng(1).standard_normal(y_shape).astype(dtype)  # random: ones hide transposes
    saved = (x.copy(), w.copy(), gy.copy())
    g = fastconv.conv2d_backward(gy, x, w, **spec.kwargs, bias=spec.bias, backend=backend,
                                 layout=spec.layout)
    want_gx, want_gw, want_gb = spec.torch_backward(gy, x, w)
    assert g.input.shape == x.shape and g.weight.shape == w.shape
    assert g.input.dtype == g.weight.dtype == np.dtype(dtype)
    assert_close(g.input, want_gx, dtype, "grad input")
    assert_close(g.weight, want_gw, dtype, "grad weight")
    if spec.bias:
        assert g.bias.dtype == np.dtype(dtype)
        assert_close(g.bias, want_gb, dtype, "grad bias")
    else:
        assert g.bias is None
    for a, s in zip((x, w, gy), saved):
        np.testing.assert_array_equal(a, s)


def test_mixed_and_integer_dtypes(backend):
    """float32 with float64 gives float64; integer and bool inputs are computed in float64."""
    spec = Spec((1, 2, 5, 5), (3, 2, 3, 3), padding=1)
    x32, w64, b = spec.inputs(np.float32)[0], spec.inputs(np.float64)[1], None
    y = fastconv.conv2d(x32, w64, backend=backend, padding=1)
    assert y.dtype == np.float64
    assert_close(y, spec.torch_forward(x32, w64, b), np.float64)
    xi = np.arange(50, dtype=np.int16).reshape(1, 2, 5, 5) - 25
    wb = np.random.default_rng(0).random((3, 2, 3, 3)) > 0.5
    y = fastconv.conv2d(xi, wb, padding=1, backend=backend)
    assert y.dtype == np.float64
    assert_close(y, spec.torch_forward(xi, wb, None), np.float64)
    g = fastconv.conv2d_backward(np.ones_like(y, dtype=np.float32), xi, wb, padding=1, backend=backend)
    assert g.input.dtype == g.weight.dtype == g.bias.dtype == np.float64


def test_empty_batch(backend):
    x, w = np.zeros((0, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    y = fastconv.conv2d(x, w, np.ones(3, np.float32), padding=1, backend=backend)
    assert y.shape == (0, 3, 5, 5) and y.dtype == np.float32
    g = fastconv.conv2d_backward(y, x, w, padding=1, backend=backend)
    assert g.input.shape == x.shape and g.weight.shape == w.shape
    assert not g.weight.any() and not g.bias.any()


def test_auto_runs_what_choose_backend_names(monkeypatch):
    spec = Spec((2, 3, 8, 8), (4, 3, 3, 3), padding=1)
    x, w, b = spec.inputs(np.float32)
    name = fastconv.choose_backend(x.shape, w.shape, padding=1, dtype=x.dtype)
    assert name in fastconv.backends()
    calls = []
    impl = fastconv.backends.get(name)
    monkeypatch.setattr(impl, "forward", lambda *a: calls.append(name) or np.zeros((2, 4, 8, 8), np.float32))
    fastconv.conv2d(x, w, padding=1)
    assert calls == [name]
