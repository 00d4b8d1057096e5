"""conv_transpose2d and its backward: torch as the oracle, the adjoint identity, ONNX conformance."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from tests.oracle import assert_close


def _t(a, grad=False):
    # Fresh C-contiguous float64 copies: torch 2.13 mishandles some NumPy views (see tests/oracle.py).
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64).copy()).requires_grad_(grad)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _sides(padding):
    """Any numeric padding -> ``((top, bottom), (left, right))``, written apart from fastconv's."""
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if all(isinstance(p, int) for p in padding):
        return (padding[0],) * 2, (padding[1],) * 2
    return tuple(padding[0]), tuple(padding[1])


def torch_transpose(z, w, b, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch's conv_transpose2d, extended to per-side padding: crop the full output (zero-extended
    at the bottom/right by output_padding) on each side."""
    (top, bottom), (left, right) = _sides(padding)
    if top == bottom and left == right:
        return F.conv_transpose2d(z, w, b, stride, (top, left), output_padding, groups, dilation)
    (oph, opw) = _pair(output_padding)
    full = F.conv_transpose2d(z, w, None, stride, 0, 0, groups, dilation)
    full = F.pad(full, (0, opw, 0, oph))
    y = full[:, :, top:full.shape[2] - bottom, left:full.shape[3] - right]
    return y if b is None else y + b.reshape(-1, 1, 1)


CASES = [  # (z shape NCHW, weight shape (C_in, C_out/groups, kH, kW), kwargs)
    pytest.param((2, 3, 4, 5), (3, 2, 3, 3), {}, id="k3"),
    pytest.param((2, 3, 4, 4), (3, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1},
                 id="s2-p1-op1"),
    pytest.param((1, 2, 3, 4), (2, 3, 2, 3), {"stride": (3, 2), "padding": (1, 2), "output_padding": (2, 1)},
                 id="s32-p12-op21-nonsquare"),
    pytest.param((2, 2, 3, 4), (2, 2, 3, 2), {"dilation": 3, "output_padding": 2}, id="op-ge-stride-d3"),
    pytest.param((2, 4, 3, 4), (4, 2, 3, 3), {"stride": (2, 1), "dilation": (3, 2), "output_padding": (2, 1),
                                                   "padding": 1, "groups": 2}, id="op-ge-stride-groups-asym"),
    pytest.param((2, 4, 4, 4), (4, 3, 3, 3), {"stride": 2, "groups": 2}, id="groups2"),
    pytest.param((2, 3, 4, 4), (3, 1, 3, 3), {"padding": 1, "groups": 3}, id="depthwise"),
    pytest.param((2, 2, 4, 5), (2, 3, 3, 3), {"dilation": (2, 1), "padding": (2, 0)}, id="dilation"),
    pytest.param((2, 2, 4, 4), (2, 3, 3, 3), {"stride": 2, "padding": ((0, 2), (1, 0)), "output_padding": 1},
                 id="per-side"),
    pytest.param((1, 1, 1, 1), (1, 2, 1, 1), {}, id="1x1"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("z_shape, w_shape, kwargs", CASES)
def test_forward_and_backward_match_torch(backend, z_shape, w_shape, kwargs, dtype):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(z_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    z0, w0 = z.copy(), w.copy()
    tz, tw, tb = _t(z, True), _t(w, True), _t(b, True)
    want = torch_transpose(tz, tw, tb, **kwargs)
    got = fastconv.conv_transpose2d(z, w, b, **kwargs, backend=backend)
    assert got.shape == tuple(want.shape) and got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, want.detach().numpy(), what="forward")

    gy = rng.standard_normal(got.shape).astype(dtype)
    gz, gw, gb = torch.autograd.grad(want, (tz, tw, tb), _t(gy))
    g = fastconv.conv_transpose2d_backward(gy, z, w, **kwargs, backend=backend)
    for name, got_g, want_g in zip(("input", "weight", "bias"), g, (gz, gw, gb)):
        assert got_g.dtype == dtype and got_g.flags.c_contiguous
        assert_close(got_g, want_g.numpy(), what=name)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("unbatched", [False, True])
def test_layouts_and_unbatched(backend, layout, unbatched):
    rng = np.random.default_rng(1)
    n = 1 if unbatched else 2
    z, w, b = rng.standard_normal((n, 4, 3, 4)), rng.standard_normal((4, 1, 3, 2)), rng.standard_normal(2)
    kwargs = {"stride": 2, "padding": (1, 0), "output_padding": 1, "groups": 2}
    tz, tw, tb = _t(z, True), _t(w, True), _t(b, True)
    want = torch_transpose(tz, tw, tb, **kwargs)
    gy = rng.standard_normal(want.shape)
    gz, gw, gb = torch.autograd.grad(want, (tz, tw, tb), _t(gy))

    def user(a, batched=True):  # batched NCHW (or (C_in, C_out/g, kH, kW)) -> the caller's view
        a = a.transpose(0, 2, 3, 1) if layout == "NHWC" else a
        return a[0] if unbatched and batched else a

    got = fastconv.conv_transpose2d(user(z), user(w, False), b, **kwargs, backend=backend, layout=layout)
    assert_close(got, user(want.detach().numpy()))
    g = fastconv.conv_transpose2d_backward(user(gy), user(z), user(w, False), **kwargs, backend=backend,
                                           layout=layout)
    assert_close(g.input, user(gz.numpy()))
    assert_close(g.weight, user(gw.numpy(), False))
    assert_close(g.bias, gb.numpy())


def test_empty_batch_and_no_bias(backend):
    z, w = np.zeros((0, 2, 3, 3)), np.ones((2, 3, 2, 2))
    y = fastconv.conv_transpose2d(z, w, np.ones(3), stride=2, backend=backend)
    assert y.shape == (0, 3, 6, 6)
    g = fastconv.conv_transpose2d_backward(np.zeros((0, 3, 6, 6)), z, w, stride=2, bias=False,
                                           backend=backend)
    assert g.input.shape == z.shape and g.weight.shape == w.shape and g.bias is None
    np.testing.assert_array_equal(g.weight, 0)


@pytest.mark.parametrize("seed", range(4))
def test_adjoint_identity(backend, seed):
    """<conv2d(x), y> = <x, conv_transpose2d(y)>: the transposed convolution is the adjoint."""
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2]))
    c_in, c_out = 2 * groups, 3 * groups
    kh, kw = rng.integers(1, 4, size=2)
    sh, sw = rng.integers(1, 4, size=2)
    dh, dw = rng.integers(1, 3, size=2)
    pt, pb, pl, pr = (int(p) for p in rng.integers(0, 3, size=4))
    ih, iw = rng.integers(6, 10, size=2)
    x = rng.standard_normal((2, c_in, ih, iw))
    w = rng.standard_normal((c_out, c_in // groups, kh, kw))
    kwargs = {"stride": (int(sh), int(sw)), "padding": ((pt, pb), (pl, pr)), "dilation": (int(dh), int(dw)),
                  "groups": groups}
    y = fastconv.conv2d(x, w, **kwargs, backend=backend)
    v = rng.standard_normal(y.shape)
    # The rows of x that no window reaches are recovered by output_padding.
    op = ((ih + pt + pb - dh * (kh - 1) - 1) % sh, (iw + pl + pr - dw * (kw - 1) - 1) % sw)
    xt = fastconv.conv_transpose2d(v, w, output_padding=op, **kwargs, backend=backend)
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, v), np.vdot(x, xt), rtol=1e-10)


def test_transposed_is_the_input_gradient_of_conv2d(backend):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 2))
    kwargs = {"stride": 2, "padding": 1, "dilation": (1, 2), "groups": 2}
    gy = rng.standard_normal(fastconv.conv2d(x, w, **kwargs).shape)
    gx = fastconv.conv2d_backward(gy, x, w, **kwargs, backend=backend).input
    assert_close(fastconv.conv_transpose2d(gy, w, **kwargs, output_padding=(0, 1), backend=backend), gx)


@pytest.mark.parametrize("kwargs, match, exc", [
    ({"output_padding": 1}, r"`output_padding` must be smaller than stride or dilation", ValueError),
    ({"stride": 2, "dilation": 3, "output_padding": (3, 0)}, r"`output_padding`", ValueError),
    ({"output_padding": -1}, r"`output_padding`", ValueError),
    ({"padding": "same"}, r"`padding`", ValueError),
    ({"padding": 5}, r"output would be empty", ValueError),
    ({"groups": 2}, r"`groups`=2 must divide the input's 3 channels", ValueError),
    ({"stride": 0}, r"`stride`", ValueError),
    ({"backend": "nope"}, r"unknown `backend`", ValueError),
    ({"layout": "NDHWC"}, r"`layout`", ValueError),
])
def test_bad_arguments(kwargs, match, exc):
    z, w = np.ones((1, 3, 3, 3)), np.ones((3, 2, 3, 3))
    with pytest.raises(exc, match=match):
        fastconv.conv_transpose2d(z, w, **kwargs)


def test_bad_shapes():
    z = np.ones((1, 3, 3, 3))
    expects = r"`weight` expects 2 input channels \(weight.shape\[0\]\) but `input` has 3"
    with pytest.raises(ValueError, match=expects):
        fastconv.conv_transpose2d(z, np.ones((2, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"`bias` must have shape \(4,\)"):
        fastconv.conv_transpose2d(np.ones((1, 4, 3, 3)), np.ones((4, 2, 3, 3)), np.ones(2), groups=2)
    with pytest.raises(ValueError, match=r"`grad_output` must have the .*output's shape \(1, 2, 5, 5\)"):
        fastconv.conv_transpose2d_backward(np.ones((1, 2, 4, 4)), z, np.ones((3, 2, 3, 3)))
    with pytest.raises(TypeError, match=r"`bias` must be True or False"):
        fastconv.conv_transpose2d_backward(np.ones((1, 2, 5, 5)), z, np.ones((3, 2, 3, 3)), bias=None)


# ---- ONNX ConvTranspose conformance --------------------------------------------------------------

def _shared() -> Path | None:
    for root in (Path(__file__).resolve().parents[2] / "shared", os.environ.get("FASTCONV_SHARED")):
        if root and (Path(root) / "conformance" / "onnx_node").is_dir():
            return Path(root)
    return None


SHARED = _shared()
ONNX_CASES = sorted(p.name for p in (SHARED / "conformance" / "onnx_node").glob("test_convtranspose*")) \
    if SHARED else []


def _onnx_to_torch_args(attrs: dict, z_hw, k_hw):
    """ONNX ConvTranspose attributes -> conv_transpose2d keyword arguments (per-side padding).

    ONNX's ``output_shape`` (and ``auto_pad=SAME_*``, which asks for ``input * stride``) fixes the
    total padding; a negative total means the output extends past the full result, which is
    what ``output_padding`` does at the bottom/right.
    """
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    output_padding = list(attrs.get("output_padding", (0, 0)))
    auto_pad = attrs.get("auto_pad", b"NOTSET").decode()
    pads = list(attrs.get("pads", (0, 0, 0, 0)))  # [top, left, bottom, right]
    out_shape = attrs.get("output_shape")
    if out_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [size * s for size, s in zip(z_hw, strides)]
    if auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    if out_shape is not None:
        for axis in range(2):
            total = (strides[axis] * (z_hw[axis] - 1) + output_padding[axis]
                     + (k_hw[axis] - 1) * dilations[axis] + 1 - out_shape[axis])
            if auto_pad == "SAME_UPPER":
                pads[axis], pads[axis + 2] = total // 2, total - total // 2
            else:
                pads[axis], pads[axis + 2] = total - total // 2, total // 2
    for axis in range(2):
        assert pads[axis] >= 0, "a negative leading pad has no torch equivalent"
        if pads[axis + 2] < 0:
            output_padding[axis] -= pads[axis + 2]
            pads[axis + 2] = 0
    return {"stride": strides, "dilation": dilations, "groups": attrs.get("group", 1),
                "padding": ((pads[0], pads[2]), (pads[1], pads[3])), "output_padding": tuple(output_padding)}


@pytest.mark.skipif(SHARED is None, reason="shared/conformance not found (set FASTCONV_SHARED)")
@pytest.mark.parametrize("case", ONNX_CASES)
def test_onnx_convtranspose_conformance(backend, case):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    folder = SHARED / "conformance" / "onnx_node" / case
    node = onnx.load(str(folder / "model.onnx")).graph.node[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    data = folder / "test_data_set_0"
    inputs = [numpy_helper.to_array(onnx.load_tensor(str(data / f"input_{i}.pb")))
              for i in range(len(node.input))]
    want = numpy_helper.to_array(onnx.load_tensor(str(data / "output_0.pb")))
    z, w, *bias = inputs
    kwargs = _onnx_to_torch_args(attrs, z.shape[2:], w.shape[2:])
    got = fastconv.conv_transpose2d(z, w, bias[0] if bias else None, **kwargs, backend=backend)
    assert got.shape == want.shape
    assert_close(got, want)
