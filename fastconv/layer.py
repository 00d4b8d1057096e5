"""``Conv1d``, ``Conv2d``, ``Conv3d``: the operator class the tutorial recommends, a convolution
layer with a cache.

Hyper-parameters are attributes, the forward pass keeps what the backward pass needs, and the
backward pass returns the input gradient and stores the parameter gradients, as torch's layers
with autograd would. The arithmetic, padding modes included, is :func:`fastconv.conv1d` (2d, 3d)
and its ``_backward``; one class serves the three ranks.
"""

from __future__ import annotations

import math

import numpy as np

from . import _padmodes, api, backends
from .api import _FLOATS, _door
from .geometry import _is_int, check_groups, padding_arg, per_axis


class _ConvNd:
    """A convolution layer over ``NDIM`` spatial axes; see :class:`Conv2d`."""

    NDIM = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", *, dtype=np.float32,
                 backend: str = "auto", seed=None):
        with _door(type(self).__name__):
            for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
                if not _is_int(value):
                    raise TypeError(f"`{name}` must be a positive int; got {value!r}")
                if value < 1:
                    raise ValueError(f"`{name}` must be a positive int; got {value!r}")
            groups = check_groups(groups)
            for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
                if value % groups:
                    raise ValueError(f"`{name}`={value} must be divisible by `groups`={groups}")
            nd = self.NDIM
            self.kernel_size = per_axis(kernel_size, "kernel_size", nd)
            self.stride = per_axis(stride, "stride", nd)
            self.dilation = per_axis(dilation, "dilation", nd)
            pads = padding_arg(padding, nd)
            # shown as given when it is a string or the same on both sides of every axis
            self.padding = pads if isinstance(pads, str) or any(a != b for a, b in pads) else tuple(a for a, _ in pads)
            if padding_mode not in _padmodes.PADDING_MODES:
                raise ValueError(f"`padding_mode` must be one of {', '.join(map(repr, _padmodes.PADDING_MODES))}; "
                                 f"got {padding_mode!r}")
            if not isinstance(bias, (bool, np.bool_)):
                raise TypeError(f"`bias` must be True or False; got {type(bias).__name__}")
            try:
                self.dtype = np.dtype(dtype)
            except TypeError as exc:
                raise TypeError(f"`dtype` must be float32 or float64; got {dtype!r}") from exc
            if self.dtype not in _FLOATS:
                raise TypeError(f"`dtype` must be float32 or float64; got {self.dtype}")
            backends.check_name(backend)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), groups
        self.padding_mode, self.backend = padding_mode, backend

        rng = np.random.default_rng(seed)
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        # torch: kaiming_uniform_(a=sqrt(5)) has gain sqrt(1/3), so its bound sqrt(3)*gain/sqrt(fan_in)
        # is the same 1/sqrt(fan_in) as the bias's.
        self.weight = rng.uniform(-bound, bound, (self.out_channels, self.in_channels // self.groups,
                                                  *self.kernel_size)).astype(self.dtype)
        self.bias = rng.uniform(-bound, bound, self.out_channels).astype(self.dtype) if bias else None
        self.grad_weight: np.ndarray | None = None
        self.grad_bias: np.ndarray | None = None
        self._cache = None

    def __repr__(self) -> str:
        ones, zeros = (1,) * self.NDIM, (0,) * self.NDIM
        extra = "".join(f", {name}={value!r}" for name, value, default in (
            ("stride", self.stride, ones), ("padding", self.padding, zeros),
            ("dilation", self.dilation, ones), ("groups", self.groups, 1),
            ("bias", self.bias is not None, True), ("padding_mode", self.padding_mode, "zeros"))
            if value != default)
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
                f"{extra}, dtype={self.dtype.name})")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    padding_mode=self.padding_mode, backend=self.backend)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The convolution of ``x``, batched or unbatched, channels first; keeps what backward needs."""
        name = type(self).__name__
        with _door(name):
            x = api._array(x, "input")
        # Copies, so that the caller changing x, or an optimiser step changing the weight, between
        # forward and backward cannot change the gradient.
        x = np.array(x, dtype=self.dtype, order="C")
        w = np.array(self.weight, dtype=self.dtype, order="C")
        b = None if self.bias is None else np.asarray(self.bias, dtype=self.dtype)
        y = _call(getattr(api, f"conv{self.NDIM}d"), name, x, w, b, **self._args())
        self._cache = {"x": x, "w": w, "y_shape": y.shape}
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient of the loss with respect to the last forward's input, given that of its output.

        Sets :attr:`grad_weight` and :attr:`grad_bias`, replacing earlier values.
        """
        name = f"{type(self).__name__}.backward"
        if self._cache is None:
            raise RuntimeError(f"{name}: call the layer on an input (forward) before backward")
        cache = self._cache
        with _door(name):
            gy = api._array(grad_output, "grad_output")
            if gy.shape != cache["y_shape"]:
                raise ValueError(f"`grad_output` must have the forward output's shape {cache['y_shape']}; "
                                 f"got {gy.shape}")
        backward = getattr(api, f"conv{self.NDIM}d_backward")
        g = _call(backward, name, gy.astype(self.dtype, copy=False), cache["x"], cache["w"],
                  bias=self.bias is not None, **self._args())
        self.grad_weight, self.grad_bias = g.weight, g.bias
        return g.input


def _call(fn, name, *args, **kwargs):
    """``fn(*args, **kwargs)`` with its errors named after the layer rather than the function."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        prefix = f"{fn.__name__}: "
        if exc.args and isinstance(exc.args[0], str) and exc.args[0].startswith(prefix):
            exc.args = (f"{name}: {exc.args[0][len(prefix):]}", *exc.args[1:])
        raise


class Conv1d(_ConvNd):
    """A 1-D convolution layer: :class:`Conv2d` along one axis (input ``(N, C_in, L)`` or ``(C_in, L)``).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> layer = fastconv.Conv1d(2, 4, 5, padding="same", padding_mode="symmetric", seed=0)
    >>> layer(np.ones((3, 2, 100))).shape
    (3, 4, 100)
    """

    NDIM = 1


class Conv2d(_ConvNd):
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
    padding_mode : {"zeros", "reflect", "replicate", "circular", "symmetric"}, default "zeros"
        What the border holds, as for :func:`fastconv.conv2d`: zeros, the mirror image without
        the edge row (needs padding < input size), copies of the edge row, the opposite side of
        the image (needs padding <= input size), or the mirror image with the edge row.
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

    NDIM = 2


class Conv3d(_ConvNd):
    """A 3-D convolution layer: :class:`Conv2d` over three axes (input ``(N, C_in, D, H, W)`` or
    ``(C_in, D, H, W)``).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> layer = fastconv.Conv3d(1, 2, 3, padding=1, seed=0)
    >>> layer(np.ones((1, 1, 4, 5, 6))).shape
    (1, 2, 4, 5, 6)
    """

    NDIM = 3
