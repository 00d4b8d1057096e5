"""ONNX's 2-D Conv conformance cases, reproduced by every backend."""

import numpy as np
import pytest

import fastconv
from tests.conformance import onnx_cases, onnx_pads


@pytest.mark.parametrize("case", onnx_cases("Conv"))
def test_onnx_conv(backend, case):
    (x, w, *b), want, attrs = case
    strides = tuple(attrs.get("strides", [1, 1]))
    dilations = tuple(attrs.get("dilations", [1, 1]))
    padding = onnx_pads(attrs, x.shape[2:], w.shape[2:], strides, dilations)
    got = fastconv.conv2d(x, w, b[0] if b else None, stride=strides, padding=padding, dilation=dilations,
                          groups=attrs.get("group", 1), backend=backend)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if attrs.get("auto_pad", b"").startswith(b"SAME") and padding[0][0] == padding[0][1] \
            and padding[1][0] == padding[1][1]:
        # where the two SAME flavours agree, the string form must give the same answer
        np.testing.assert_allclose(fastconv.conv2d(x, w, stride=strides, padding="same", backend=backend),
                                   want, rtol=1e-5, atol=1e-5)
