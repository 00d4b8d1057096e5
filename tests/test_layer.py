"""fastconv.Conv2d against torch.nn.Conv2d: every padding mode, forward and backward, every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastconv
from tests.oracle import assert_close, torch_pad

MODES = ["zeros", "reflect", "replicate", "circular"]


def _t(a, grad=False):
    # Fresh C-contiguous float64 copies: torch 2.13 mishandles some NumPy views (see tests/oracle.py).
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64).copy()).requires_grad_(grad)


def torch_layer(layer: fastconv.Conv2d, x):
    """The same layer in torch, float64, with fastconv's parameters; per-side and strided "same"
    padding (which torch.nn.Conv2d lacks) go through F.pad with the same mode."""
    tw = _t(layer.weight, True)
    tb = None if layer.bias is None else _t(layer.bias, True)
    pad = layer.padding
    native = pad in ("valid", "same") and layer.stride == (1, 1) or (
        not isinstance(pad, str) and all(isinstance(p, int) for p in pad))
    if native:
        conv = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, pad,
                               layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode,
                               dtype=torch.float64)
        conv.weight, conv.bias = torch.nn.Parameter(tw), None if tb is None else torch.nn.Parameter(tb)
        return lambda tx: conv(tx), conv.weight, conv.bias

    def run(tx):
        ih, iw = tx.shape[-2:]
        sides = torch_pad(pad, ih, iw, *layer.kernel_size, layer.stride, layer.dilation)
        mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
        batched = tx if tx.dim() == 4 else tx.unsqueeze(0)
        y = F.conv2d(F.pad(batched, sides, mode=mode), tw, tb, layer.stride, 0, layer.dilation, layer.groups)
        return y if tx.dim() == 4 else y[0]
    return run, tw, tb


CONFIGS = [
    pytest.param((2, 4, 7, 6), {"out_channels": 6, "kernel_size": 3, "padding": 2, "stride": 2},
                 id="k3-p2-s2"),
    pytest.param((2, 4, 6, 7), {"out_channels": 4, "kernel_size": (3, 2), "padding": (1, 2),
                                "dilation": (2, 1), "groups": 2}, id="groups-dilation-asym"),
    pytest.param((1, 3, 5, 5), {"out_channels": 3, "kernel_size": 3, "padding": 1, "groups": 3},
                 id="depthwise"),
    pytest.param((2, 2, 6, 5), {"out_channels": 3, "kernel_size": (2, 3), "padding": "same",
                                "dilation": (1, 2)}, id="same-odd-total"),  # the odd row at the end
    pytest.param((2, 2, 7, 6), {"out_channels": 3, "kernel_size": 3, "padding": "same", "stride": 2},
                 id="same-s2"),
    pytest.param((2, 2, 6, 5), {"out_channels": 3, "kernel_size": 3, "padding": ((2, 0), (1, 3)),
                                "stride": 2},
                 id="per-side"),
    pytest.param((2, 2, 3, 4), {"out_channels": 2, "kernel_size": 2, "padding": (3, 4)}, id="pad-at-limit"),
    pytest.param((2, 3, 5, 5), {"out_channels": 2, "kernel_size": 3, "bias": False}, id="no-bias"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own, about speed
@pytest.mark.parametrize("padding_mode", MODES)
@pytest.mark.parametrize("x_shape, kwargs", CONFIGS)
def test_forward_and_backward_match_torch(backend, padding_mode, x_shape, kwargs):
    if padding_mode == "reflect" and kwargs.get("padding") == (3, 4):
        kwargs = {**kwargs, "padding": (2, 3)}  # reflect needs padding < size; circular allows == size
    layer = fastconv.Conv2d(x_shape[1], **kwargs, padding_mode=padding_mode, dtype=np.float64, seed=0,
                            backend=backend)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)
    x0 = x.copy()
    run, tw, tb = torch_layer(layer, x)
    tx = _t(x, True)
    want = run(tx)
    got = layer(x)
    assert got.shape == tuple(want.shape) and got.dtype == np.float64 and got.flags.c_contiguous
    assert_close(got, want.detach().numpy(), what="forward")

    gy = rng.standard_normal(got.shape)
    params = (tx, tw) if tb is None else (tx, tw, tb)
    grads = torch.autograd.grad(want, params, _t(gy))
    gx = layer.backward(gy)
    assert gx.shape == x.shape and gx.flags.c_contiguous
    assert_close(gx, grads[0].numpy(), what="input")
    assert_close(layer.grad_weight, grads[1].numpy(), what="weight")
    if tb is None:
        assert layer.bias is None and layer.grad_bias is None
    else:
        assert_close(layer.grad_bias, grads[2].numpy(), what="bias")
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("padding_mode", MODES)
def test_unbatched_float32_and_integer_input(backend, padding_mode):
    layer = fastconv.Conv2d(2, 3, 3, padding=1, padding_mode=padding_mode, seed=3, backend=backend)
    x = np.arange(2 * 5 * 4).reshape(2, 5, 4) % 7  # integers: converted to the layer's float32
    run, tw, tb = torch_layer(layer, x)
    tx = _t(x, True)
    want = run(tx)
    got = layer(x)
    assert got.shape == (3, 5, 4) and got.dtype == np.float32
    assert_close(got, want.detach().numpy())
    gy = np.random.default_rng(0).standard_normal(got.shape).astype(np.float32)
    gx, gw, gb = torch.autograd.grad(want, (tx, tw, tb), _t(gy))
    assert_close(layer.backward(gy), gx.numpy())
    assert_close(layer.grad_weight, gw.numpy())
    assert_close(layer.grad_bias, gb.numpy())
    assert layer.grad_weight.dtype == np.float32


def test_init_matches_torch_distribution():
    layer = fastconv.Conv2d(32, 64, (3, 2), groups=2, seed=0)
    fan_in = 16 * 3 * 2
    bound = 1 / math.sqrt(fan_in)
    ref = torch.nn.Conv2d(32, 64, (3, 2), groups=2)
    assert layer.weight.shape == tuple(ref.weight.shape) and layer.bias.shape == tuple(ref.bias.shape)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    for ours, theirs in ((layer.weight, ref.weight), (layer.bias, ref.bias)):
        theirs = theirs.detach().numpy()
        assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
    # uniform on [-bound, bound]: the extremes are nearly reached, the variance is bound**2 / 3
    assert np.abs(layer.weight).max() > 0.99 * bound
    assert abs(layer.weight.var() / (bound ** 2 / 3) - 1) < 0.05
    assert abs(layer.weight.mean()) < 0.02 * bound
    assert np.abs(layer.bias).max() > 0.8 * bound


def test_seed_reproducibility():
    a, b = fastconv.Conv2d(3, 4, 3, seed=7), fastconv.Conv2d(3, 4, 3, seed=7)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    c = fastconv.Conv2d(3, 4, 3, seed=8)
    assert not np.array_equal(a.weight, c.weight)
    d = fastconv.Conv2d(3, 4, 3, dtype=np.float64, seed=np.random.default_rng(7))
    np.testing.assert_allclose(d.weight, a.weight, rtol=1e-6)
    assert fastconv.Conv2d(3, 4, 3).weight.shape == (4, 3, 3, 3)


def test_hyper_parameters_are_attributes():
    layer = fastconv.Conv2d(4, 6, 3, stride=(2, 1), padding=1, dilation=2, groups=2, bias=False,
                            padding_mode="circular", dtype=np.float64, backend="reference")
    assert (layer.in_channels, layer.out_channels, layer.kernel_size) == (4, 6, (3, 3))
    assert (layer.stride, layer.padding, layer.dilation, layer.groups) == ((2, 1), (1, 1), (2, 2), 2)
    assert (layer.padding_mode, layer.dtype, layer.backend) == ("circular", np.float64, "reference")
    assert layer.bias is None and layer.grad_weight is None and layer.grad_bias is None
    assert fastconv.Conv2d(1, 1, 1, padding=((1, 2), (0, 0))).padding == ((1, 2), (0, 0))
    assert "padding_mode='circular'" in repr(layer)


def test_backward_overwrites_and_uses_the_forward_state(backend):
    layer = fastconv.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=np.float64, seed=0,
                            backend=backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 5, 5))
    gy1, gy2 = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 5, 5))
    layer(x)
    layer.backward(gy1)
    gx2 = layer.backward(gy2)
    fresh = fastconv.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=np.float64, seed=0,
                            backend=backend)
    fresh(x)
    want_gx = fresh.backward(gy2)
    assert_close(gx2, want_gx)
    assert_close(layer.grad_weight, fresh.grad_weight)  # overwritten, not gy1 + gy2
    assert_close(layer.grad_bias, fresh.grad_bias)
    # changing the input or stepping the weight after forward does not change this backward
    layer(x)
    x[...] = 0
    layer.weight -= 1.0
    assert_close(layer.backward(gy2), want_gx)
    assert_close(layer.grad_weight, fresh.grad_weight)


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="before backward"):
        fastconv.Conv2d(1, 1, 3).backward(np.ones((1, 1, 1, 1)))


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"in_channels": 3, "groups": 2}, ValueError, r"`in_channels`=3 must be divisible by `groups`=2"),
    ({"out_channels": 3, "in_channels": 2, "groups": 2}, ValueError, r"`out_channels`=3 must be divisible"),
    ({"in_channels": 0}, ValueError, r"`in_channels` must be a positive int"),
    ({"in_channels": 2.0}, TypeError, r"`in_channels` must be a positive int"),
    ({"kernel_size": 0}, ValueError, r"`kernel_size`"),
    ({"stride": (1, 0)}, ValueError, r"`stride`"),
    ({"dilation": "2"}, TypeError, r"`dilation`"),
    ({"padding": -1}, ValueError, r"`padding`"),
    ({"padding": "full"}, ValueError, r"`padding`.*'full'"),
    ({"padding_mode": "mirror"}, ValueError, r"`padding_mode` must be one of 'zeros', 'reflect'"),
    ({"bias": "yes"}, TypeError, r"`bias`"),
    ({"dtype": np.float16}, TypeError, r"`dtype` must be float32 or float64"),
    ({"backend": "nope"}, ValueError, r"unknown `backend`"),
])
def test_constructor_validates(kwargs, exc, match):
    args = {"in_channels": 2, "out_channels": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(exc, match=match):
        fastconv.Conv2d(**args)


@pytest.mark.parametrize("padding_mode, padding, ok", [
    ("reflect", 3, False), ("reflect", 2, True), ("reflect", (0, 4), False),
    ("circular", 4, False), ("circular", 3, True), ("replicate", 9, True), ("zeros", 9, True),
])
def test_padding_mode_limits_match_torch(padding_mode, padding, ok):
    x = np.ones((1, 1, 3, 4))
    layer = fastconv.Conv2d(1, 1, 1, padding=padding, padding_mode=padding_mode)
    conv = torch.nn.Conv2d(1, 1, 1, padding=padding, padding_mode=padding_mode)
    if ok:
        assert layer(x).shape == tuple(conv(torch.ones(1, 1, 3, 4)).shape)
    else:
        with pytest.raises(RuntimeError):
            conv(torch.ones(1, 1, 3, 4))
        with pytest.raises(ValueError, match=f"padding_mode='{padding_mode}' needs padding"):
            layer(x)


def test_call_checks_shapes():
    layer = fastconv.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match=r"`weight` has 2 input channels per group but `input` has 4"):
        layer(np.ones((1, 4, 5, 5)))
    with pytest.raises(ValueError, match=r"`input` must have 4 dimensions"):
        layer(np.ones((5, 5)))
    layer(np.ones((1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"`grad_output` must have the .*shape \(1, 3, 3, 3\)"):
        layer.backward(np.ones((1, 3, 5, 5)))
