"""``Conv2d``: the operator class the tutorial recommends, a convolution layer with a cache.

Hyper-parameters are attributes, the forward pass keeps what the backward pass needs, and the
backward pass returns the input gradient and stores the parameter gradients, as ``torch.nn.Conv2d``
with autograd would. The arithmetic is :func:`fastconv.conv2d` and :func:`fastconv.conv2d_backward`.
"""

from __future__ import annotations

import math

import numpy as np

from . import _padmodes, backends
from .api import _FLOATS, _array, _to_nchw, conv2d, conv2d_backward
from .geometry import PADDING_STRINGS, Geometry, _is_int, pair, side_padding


class Conv2d:
    """A 2-D convolution layer with parameters, a forward cache and a backward pass.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or pair of ints
    stride, dilation : int or pair of ints, default 1
    padding : int, pair, per-side pairs ``((top, bottom), (left, right))``, ``"valid"`` or ``"same"``
        As for :func:`fastconv.conv2d`; default 0.
    groups : int, default 1
    bias : bool, default True
        Whether the layer adds a learnable bias.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}, default "zeros"
        What the border holds, as in torch: zeros, the mirror image without the edge row
        (needs padding < input size), copies of the edge row, or the opposite side of the image
        (needs padding <= input size).
    dtype : {np.float32, np.float64}, default np.float32
        Dtype of the parameters, of the computation and of the results; inputs are converted to it.
    backend : str, default "auto"
        ``"auto"`` or one of :func:`fastconv.backends`.
    seed : int, numpy Generator or None, default None
        Seed of ``np.random.default_rng`` for the initial parameters.

    Attributes
    ----------
    weight : ndarray
        ``(out_channels, in_channels // groups, kH, kW)``, initialised like ``torch.nn.Conv2d``:
        uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (kaiming uniform with ``a=sqrt(5)``),
        where ``fan_in = in_channels // groups * kH * kW``.
    bias : ndarray or None
        ``(out_channels,)``, uniform on the same interval; None when ``bias=False``.
    grad_weight, grad_bias : ndarray or None
        Set by each :meth:`backward` (overwritten, not accumulated); None before the first.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> layer = fastconv.Conv2d(3, 8, 3, padding=1, padding_mode="reflect", seed=0)
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    >>> y = layer(x)
    >>> y.shape
    (2, 8, 16, 16)
    >>> gx = layer.backward(np.ones_like(y))
    >>> gx.shape, layer.grad_weight.shape, layer.grad_bias.shape
    ((2, 3, 16, 16), (8, 3, 3, 3), (8,))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, dtype=np.float32,
                 backend: str = "auto", seed=None):
        fn = "Conv2d"
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not _is_int(value):
                raise TypeError(f"{fn}: `{name}` must be a positive int; got {value!r}")
            if value < 1:
                raise ValueError(f"{fn}: `{name}` must be a positive int; got {value!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value % groups:
                raise ValueError(f"{fn}: `{name}`={value} must be divisible by `groups`={groups}")
        self.kernel_size = pair(kernel_size, "kernel_size", fn=fn)
        self.stride = pair(stride, "stride", fn=fn)
        self.dilation = pair(dilation, "dilation", fn=fn)
        if isinstance(padding, str):
            if padding not in PADDING_STRINGS:
                raise ValueError(f"{fn}: `padding` must be an int, a pair, per-side pairs, 'valid' or "
                                 f"'same'; got the string {padding!r}")
            self.padding = padding
        else:
            (top, bottom), (left, right) = side_padding(padding, fn=fn)
            self.padding = (top, left) if top == bottom and left == right else ((top, bottom), (left, right))
        if padding_mode not in _padmodes.PADDING_MODES:
            raise ValueError(f"{fn}: `padding_mode` must be one of "
                             f"{', '.join(map(repr, _padmodes.PADDING_MODES))}; got {padding_mode!r}")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{fn}: `bias` must be True or False; got {type(bias).__name__}")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"{fn}: `dtype` must be float32 or float64; got {dtype!r}") from exc
        if self.dtype not in _FLOATS:
            raise TypeError(f"{fn}: `dtype` must be float32 or float64; got {self.dtype}")
        backends.check_name(backend, fn)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.padding_mode, self.backend = padding_mode, backend

        rng = np.random.default_rng(seed)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        bound = 1.0 / math.sqrt(fan_in)
        # torch: kaiming_uniform_(a=sqrt(5)) has gain sqrt(1/3), so its bound sqrt(3)*gain/sqrt(fan_in)
        # is the same 1/sqrt(fan_in) as the bias's.
        self.weight = rng.uniform(-bound, bound, (self.out_channels, self.in_channels // self.groups, kh, kw)
                                  ).astype(self.dtype)
        self.bias = rng.uniform(-bound, bound, self.out_channels).astype(self.dtype) if bias else None
        self.grad_weight: np.ndarray | None = None
        self.grad_bias: np.ndarray | None = None
        self._cache = None

    def __repr__(self) -> str:
        extra = "".join(f", {name}={value!r}" for name, value, default in (
            ("stride", self.stride, (1, 1)), ("padding", self.padding, (0, 0)),
            ("dilation", self.dilation, (1, 1)), ("groups", self.groups, 1),
            ("bias", self.bias is not None, True), ("padding_mode", self.padding_mode, "zeros"))
            if value != default)
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{extra}, "
                f"dtype={self.dtype.name})")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The convolution of ``x``, ``(N, C_in, H, W)`` or ``(C_in, H, W)``; keeps what backward needs."""
        fn = "Conv2d"
        x4, w, unbatched = _to_nchw(x, self.weight, "NCHW", fn)
        geom = Geometry.from_args(x4.shape, w.shape, stride=self.stride, padding=self.padding,
                                  dilation=self.dilation, groups=self.groups, fn=fn)
        sides = ((geom.pt, geom.pb), (geom.pl, geom.pr))
        if self.padding_mode == "zeros":
            index, padding = None, sides
            xp = np.array(x4, dtype=self.dtype, order="C")  # a copy: the caller may change x before backward
        else:
            _padmodes.check_size(geom.ih, geom.pt, geom.pb, self.padding_mode, "height", fn)
            _padmodes.check_size(geom.iw, geom.pl, geom.pr, self.padding_mode, "width", fn)
            index = (_padmodes.source_index(geom.ih, geom.pt, geom.pb, self.padding_mode),
                     _padmodes.source_index(geom.iw, geom.pl, geom.pr, self.padding_mode))
            padding = 0
            xp = _padmodes.pad(x4, *index).astype(self.dtype, copy=False)
        # Copies, so that an optimiser step between forward and backward cannot change the gradient.
        w = np.array(self.weight, dtype=self.dtype, order="C")
        b = None if self.bias is None else np.asarray(self.bias, dtype=self.dtype)
        y = conv2d(xp, w, b, self.stride, padding, self.dilation, self.groups, backend=self.backend)
        self._cache = {"x": xp, "w": w, "padding": padding, "index": index, "x_hw": (geom.ih, geom.iw),
                       "y_shape": y.shape, "unbatched": unbatched}
        return y[0] if unbatched else y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient of the loss with respect to the last forward's input, given that of its output.

        Sets :attr:`grad_weight` and :attr:`grad_bias`, replacing earlier values.
        """
        fn = "Conv2d.backward"
        if self._cache is None:
            raise RuntimeError(f"{fn}: call the layer on an input (forward) before backward")
        cache = self._cache
        gy = _array(grad_output, "grad_output", fn)
        expected = cache["y_shape"][1:] if cache["unbatched"] else cache["y_shape"]
        if gy.shape != expected:
            raise ValueError(f"{fn}: `grad_output` must have the forward output's shape {expected}; "
                             f"got {gy.shape}")
        if cache["unbatched"]:
            gy = gy[np.newaxis]
        g = conv2d_backward(gy.astype(self.dtype, copy=False), cache["x"], cache["w"], self.stride,
                            cache["padding"], self.dilation, self.groups, bias=self.bias is not None,
                            backend=self.backend)
        gx = g.input if cache["index"] is None else _padmodes.fold(g.input, *cache["index"], *cache["x_hw"])
        self.grad_weight, self.grad_bias = g.weight, g.bias
        return np.ascontiguousarray(gx[0] if cache["unbatched"] else gx)
