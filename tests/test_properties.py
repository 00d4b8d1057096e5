"""Property-based cases: random geometries (derandomised, bounded) against torch."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
from tests.oracle import Spec, assert_close


@st.composite
def specs(draw):
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    form = draw(st.sampled_from(["int", "pair", "sides", "valid", "same"]))
    padding = {"int": draw(st.integers(0, 2)), "pair": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
               "sides": tuple(tuple(draw(st.integers(0, 2)) for _ in range(2)) for _ in range(2)),
               "valid": "valid", "same": "same"}[form]
    # Input at least as large as the dilated kernel, so every padding form gives an output.
    ih = dilation[0] * (kh - 1) + 1 + draw(st.integers(0, 4))
    iw = dilation[1] * (kw - 1) + 1 + draw(st.integers(0, 4))
    return Spec((draw(st.integers(1, 2)), c_in, ih, iw), (c_out, c_in // groups, kh, kw), stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                layout=draw(st.sampled_from(["NCHW", "NHWC"])), unbatched=draw(st.booleans()))


@settings(derandomize=True, max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs(), dtype=st.sampled_from([np.float32, np.float64]))
def test_random_geometries_match_torch(backend, spec, dtype):
    if spec.unbatched:
        spec = Spec((1, *spec.x[1:]), spec.w, **{k: getattr(spec, k) for k in (
            "stride", "padding", "dilation", "groups", "bias", "layout", "unbatched")})
    x, w, b = spec.inputs(dtype)
    y = fastconv.conv2d(x, w, b, **spec.kwargs, layout=spec.layout, backend=backend)
    assert_close(y, spec.torch_forward(x, w, b), dtype)
    gy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    g = fastconv.conv2d_backward(gy, x, w, **spec.kwargs, bias=spec.bias, layout=spec.layout, backend=backend)
    for got, want in zip(g, spec.torch_backward(gy, x, w)):
        if got is not None:
            assert_close(got, want, dtype)
