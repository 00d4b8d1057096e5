"""torch as the oracle, plus the test-side description of a convolution problem.

The padding arithmetic here is written again on purpose, independently of
``fastconv.geometry``: a test that asked fastconv how much to pad could not catch it padding wrong.
torch always receives fresh C-contiguous float64 copies: torch 2.13 on the CPU was seen to return
a wrong float64 weight gradient for tensors made from NumPy views with degenerate strides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fastconv._precision import TOLERANCE
from fastconv._workers import drop_kept
from tests.quiet import settle

# Results are compared with a float64 oracle; atol scales with the largest expected magnitude.
TOL = TOLERANCE


def assert_close(got, want, dtype=None, what=""):
    dtype = np.dtype(dtype or got.dtype)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


def extra_bytes(run):
    """``(bytes, result)``: the peak memory that ``run()`` allocates beyond its result, measured by
    tracemalloc on a second call (the first imports code and warms pools, which is not scratch);
    scratch kept between calls (``_workers.kept``) is freed first, so that it counts, and a
    background compile is waited for, so that its allocations do not."""
    import tracemalloc

    run()
    drop_kept()
    settle()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        got = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before - got.nbytes, got


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def torch_pad(padding, ih, iw, kh, kw, stride=1, dilation=1):
    """Any fastconv padding form -> ``F.pad`` order ``(left, right, top, bottom)``."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":  # ceil(in / stride) outputs; the odd extra row/column at the end
        def axis(size, k, s, d):
            total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
            return total // 2, total - total // 2
        (top, bottom), (left, right) = axis(ih, kh, sh, dh), axis(iw, kw, sw, dw)
        return (left, right, top, bottom)
    if isinstance(padding, int):
        return (padding,) * 4
    if all(isinstance(p, int) for p in padding):
        ph, pw = padding
        return (pw, pw, ph, ph)
    (top, bottom), (left, right) = padding
    return (left, right, top, bottom)


def _t(a, grad=False):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64).copy()).requires_grad_(grad)


@dataclass(frozen=True)
class Spec:
    """A test problem. Shapes are batched NCHW; ``layout``/``unbatched`` say how the caller passes them."""

    x: tuple
    w: tuple
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True
    layout: str = "NCHW"
    unbatched: bool = False
    view: str = ""  # "", "fortran" or "negstride": how the input array is laid out in memory
    extra: dict = field(default_factory=dict)

    @property
    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def inputs(self, dtype, seed=0):
        """``(x, w, b)`` as the caller passes them (layout, batching, memory order)."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x).astype(dtype)
        w = rng.standard_normal(self.w).astype(dtype)
        b = rng.standard_normal(self.w[0]).astype(dtype) if self.bias else None
        x, w = self.to_user(x), self.to_user(w)
        if self.unbatched:
            x = x[0]
        if self.view == "fortran":
            x = np.asfortranarray(x)
        elif self.view == "negstride":
            x = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
        return x, w, b

    def to_user(self, a):
        """A batched NCHW (or OIHW) array in the caller's layout."""
        return a.transpose(0, 2, 3, 1) if self.layout == "NHWC" else a

    def from_user(self, a, batched=True):
        """The caller's array back to batched NCHW (or OIHW)."""
        if not batched:
            a = a[np.newaxis]
        return a.transpose(0, 3, 1, 2) if self.layout == "NHWC" else a

    def _torch_out(self, x, w, b):
        n, c, ih, iw = x.shape
        kh, kw = w.shape[2:]
        pad = torch_pad(self.padding, ih, iw, kh, kw, self.stride, self.dilation)
        return F.conv2d(F.pad(x, pad), w, b, stride=self.stride, dilation=self.dilation, groups=self.groups)

    def torch_forward(self, x, w, b):
        """The expected output, float64, in the caller's layout."""
        x4 = self.from_user(x, batched=not self.unbatched)
        y = self._torch_out(_t(x4), _t(self.from_user(w)), None if b is None else _t(b))
        y = self.to_user(y.detach().numpy())
        return y[0] if self.unbatched else y

    def torch_backward(self, gy, x, w):
        """Expected ``(gx, gw, gb)`` for a given upstream gradient, float64, in the caller's layout."""
        tx = _t(self.from_user(x, batched=not self.unbatched), True)
        tw = _t(self.from_user(w), True)
        tb = _t(np.zeros(self.w[0]), True)
        y = self._torch_out(tx, tw, tb)
        gx, gw, gb = torch.autograd.grad(y, (tx, tw, tb), _t(self.from_user(gy, not self.unbatched)))
        gx = self.to_user(gx.numpy())
        return (gx[0] if self.unbatched else gx), self.to_user(gw.numpy()), gb.numpy()
