"""The public functions: normalise and validate the arguments once, pick a backend, call it.

Everything that every backend would otherwise repeat lives here, for 1, 2 and 3 spatial axes
alike: array and dtype handling, layout conversion, unbatched input, the empty batch, padding
modes, the bias gradient, and ``backend="auto"``. Each public function is a thin door onto one
of four N-d routines (:func:`_conv`, :func:`_conv_backward`, :func:`_conv_transpose`,
:func:`_conv_transpose_backward`); the door adds the function's name to every validation error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import _padmodes, backends
from ._precision import get_precision
from ._threads import call_threads, one_call
from .geometry import Geometry, transposed_geometry

LAYOUTS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}  # channels first, last
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}
_KERNEL = {1: "k", 2: "kH, kW", 3: "kD, kH, kW"}


class ConvGrads(NamedTuple):
    """Gradients of a convolution's loss with respect to its input, weight and bias."""

    input: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None


Conv2dGrads = ConvGrads  # the 2-D name of API.md: the same type


class _door:
    """``with _door(fn):`` prefixes every ``ValueError``/``TypeError`` raised while validating with
    the public function's name: the helpers below and ``geometry.py`` raise plain messages, and the
    context is added once. A class, not a generator-based context manager: entered on every call,
    that cost 1 us of a 20 us small call."""

    __slots__ = ("fn",)

    def __init__(self, fn: str):
        self.fn = fn

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if kind is not None and issubclass(kind, (ValueError, TypeError)) and exc.args \
                and isinstance(exc.args[0], str):
            exc.args = (f"{self.fn}: {exc.args[0]}", *exc.args[1:])
        return False  # the exception, if any, goes on


def _array(value, name: str) -> np.ndarray:
    """``value`` as an ndarray (no copy), with a dtype fastconv computes in, else ``TypeError``."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"`{name}` must be a numeric array; got {type(value).__name__}") from exc
    if not (arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8)) and arr.dtype.kind not in "iub":
        raise TypeError(f"`{name}` has dtype {arr.dtype}; expected float32 or float64 "
                        f"(integer and bool arrays are computed in float64)")
    return arr


def _float_dtype(*arrays) -> np.dtype:
    """float32/float64 kept (in native byte order), integers and bool computed in float64, mixed
    inputs (the bias included) give the wider."""
    first = arrays[0].dtype
    if first in _FLOATS and all(a is None or a.dtype is first for a in arrays):  # the usual call: ~1 us less
        return first
    kinds = (a.dtype if a.dtype.kind == "f" else np.dtype(np.float64) for a in arrays if a is not None)
    return np.result_type(*kinds).newbyteorder("=")


@dataclass
class _Call:
    """A validated call without its arrays (which travel beside it as batched channels-first views):
    the layout, the geometry, the dtype, the backend asked for."""

    ndim: int
    layout: str
    unbatched: bool
    geom: Geometry
    dtype: np.dtype
    backend: str

    def impl(self, pass_: str = "forward"):
        """The backend module that runs ``pass_`` (``backends.PASSES``): ``"auto"``'s pick for it,
        or the named one if it supports the call."""
        if self.backend == "auto":
            return backends.get(backends.choose(self.geom, self.dtype, pass_=pass_))
        reason = backends.refusal(self.backend, self.geom, self.dtype)
        if reason is not None:
            raise ValueError(f"backend {self.backend!r} does not support this call: {reason}")
        return backends.get(self.backend)

    def contiguous(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype)

    def channels_last(self) -> bool:
        return self.layout == LAYOUTS[self.ndim][1]

    def user(self, y: np.ndarray, batched: bool = False) -> np.ndarray:
        """A channels-first batched result as the caller sees it (layout, unbatched), C-contiguous."""
        if self.channels_last():
            y = np.moveaxis(y, 1, -1)
        if self.unbatched and not batched:
            y = y[0]
        return np.ascontiguousarray(y)

    def user_shape(self, shape) -> tuple[int, ...]:
        n, c, *size = shape
        shape = (n, *size, c) if self.channels_last() else (n, c, *size)
        return shape[1:] if self.unbatched else shape

    def grad_output(self, grad_output, shape) -> np.ndarray:
        """``grad_output`` checked against the forward result's shape, batched channels-first."""
        gy = _array(grad_output, "grad_output")
        expected = self.user_shape(shape)
        if gy.shape != expected:
            raise ValueError(f"`grad_output` must have the forward output's shape {expected}; got {gy.shape}")
        if self.unbatched:
            gy = gy[np.newaxis]
        return self.contiguous(np.moveaxis(gy, -1, 1) if self.channels_last() else gy)


def _arrays(ndim: int, input, weight, layout, transposed: bool):
    """Batched channels-first views of ``input`` and ``weight`` (no data copied), and whether the
    input came unbatched."""
    if layout not in LAYOUTS[ndim]:
        raise ValueError(f"`layout` must be {' or '.join(map(repr, LAYOUTS[ndim]))}; got {layout!r}")
    x = _array(input, "input")
    w = _array(weight, "weight")
    last = layout == LAYOUTS[ndim][1]
    if x.ndim not in (ndim + 1, ndim + 2):
        spatial = _SPATIAL[ndim]
        dims = (f"(N, {spatial}, C) or unbatched ({spatial}, C)" if last
                else f"(N, C, {spatial}) or unbatched (C, {spatial})")
        raise ValueError(f"`input` must have {ndim + 2} dimensions {dims}; got shape {x.shape}")
    if w.ndim != ndim + 2:
        io = ("C_in", "C_out/groups") if transposed else ("C_out", "C_in/groups")
        w_dims = f"({io[0]}, {_KERNEL[ndim]}, {io[1]})" if last else f"({io[0]}, {io[1]}, {_KERNEL[ndim]})"
        raise ValueError(f"`weight` must have {ndim + 2} dimensions {w_dims}; got shape {w.shape}")
    unbatched = x.ndim == ndim + 1
    x, w = _views(x, w, unbatched, last)
    return x, w, unbatched


def _views(x: np.ndarray, w: np.ndarray, unbatched: bool, channels_last: bool):
    """``x`` batched and both channels-first, as views."""
    if unbatched:
        x = x[np.newaxis]
    if channels_last:
        x, w = np.moveaxis(x, -1, 1), np.moveaxis(w, -1, 1)
    return x, w


def _bias(bias, c_out: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = _array(bias, "bias")
    if b.shape != (c_out,):
        raise ValueError(f"`bias` must have shape ({c_out},), one value per output channel; got shape {b.shape}")
    return b


def _check_bias_flag(bias) -> None:
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"`bias` must be True or False (whether the forward pass had one); "
                        f"got {type(bias).__name__}")


def _quiet():
    """NaN and inf propagate silently, as in torch: ``inf * 0`` is not worth a RuntimeWarning."""
    return np.errstate(invalid="ignore", over="ignore")


def _conv_call(ndim, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout):
    """Validate a convolution call: ``(call, x, w, bias, pad)``, ``x`` and ``w`` batched
    channels-first views. With a padding mode other than zeros,
    ``pad`` fills the border (``pad.apply``) and the call's geometry is the padded input's, with no
    padding left for the backend."""
    backends.check_name(backend)
    x, w, unbatched = _arrays(ndim, input, weight, layout, transposed=False)
    geom = Geometry.from_args(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation, groups=groups)
    b = _bias(bias, geom.c_out)
    pad = _padmodes.Padding.of(geom, padding_mode)
    dtype = _float_dtype(x, w, b)
    call = _Call(ndim, layout, unbatched, geom if pad is None else pad.geometry(geom), dtype, backend)
    return call, x, w, b, pad


# Calls validated before, by their arguments: each one's checked ``_Call`` (without its arrays),
# padding and backends, so that a call repeated on same-shaped arrays skips the validation and
# auto's choice. On single-r32-k3 (one 32x32 image, 3 -> 8 channels, a 25 us kernel) those were 4
# and 3.5 us alone but cost 25 us of the call's 55: Python's work between two compiled calls runs
# slower than alone (2026-12-03, Zen 3; the same on one thread, so not the helper threads). Kept
# with auto's final picks only, and as long as ``backends.generation()`` stays.
_VALIDATED: dict[tuple, tuple] = {}
_VALIDATED_MAX = 1024  # a bound, not an LRU, like auto's own cache


def _plain(values) -> bool:
    """Whether every value is an exact int or str, or a tuple of them: hash-equal then only to values
    that validate the same (``1.0``, ``True`` and ``1`` are equal keys, and a float stride is an error).
    ``geometry._key`` solves the same for ``Geometry.from_args`` by tagging each value with its type,
    any type; on a repeat that took 1.9 us for single-r32's arguments against this check's 0.36."""
    for value in values:
        kind = type(value)
        if not (kind is int or kind is str or (kind is tuple and _plain(value))):
            return False
    return True


def _key(fn: str, ndim: int, x, w, b, args: tuple) -> tuple | None:
    """The key of a call of ``fn`` in ``_VALIDATED``: the arrays' shapes and dtypes, the other
    arguments, the precision and the threads (auto's pick may depend on them: ``backends._entry``);
    None for anything but ndarrays and plain arguments (``_plain``)."""
    if type(x) is not np.ndarray or type(w) is not np.ndarray or not (b is None or type(b) is np.ndarray) \
            or not _plain(args):
        return None
    return (fn, ndim, x.shape, x.dtype, w.shape, w.dtype, None if b is None else (b.shape, b.dtype), args,
            get_precision(), call_threads())


def _validated(key: tuple | None, x: np.ndarray, w: np.ndarray):
    """``(call, x, w, pad, backend modules)`` of a call validated before, ``x`` and ``w`` as
    batched channels-first views; or None."""
    hit = _VALIDATED.get(key) if key is not None else None
    if hit is None:
        return None
    call, pad, impls, generation = hit
    if generation != backends.generation() or (call.backend == "auto" and backends.measuring()):
        return None
    last = call.channels_last()
    if call.unbatched or last:
        x, w = _views(x, w, call.unbatched, last)
    return call, x, w, pad, impls


def _remember(key: tuple | None, call: _Call, pad, impls: tuple, passes=("forward",)) -> None:
    """Keep a call that has just passed validation, with its padding and the backend module
    ``impls`` of each pass (``backends.PASSES``): see ``_VALIDATED``."""
    if key is None:
        return
    if call.backend == "auto" and any(backends.settled(call.geom, call.dtype, p) != impl.NAME
                                      for p, impl in zip(passes, impls)):
        return  # not auto's final pick: its best backend still compiles
    if len(_VALIDATED) >= _VALIDATED_MAX:
        _VALIDATED.clear()
    _VALIDATED[key] = (call, pad, impls, backends.generation())


def _conv(ndim, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout):
    key = _key("conv", ndim, input, weight, bias, (stride, padding, dilation, groups, padding_mode, backend,
                                                    layout))
    hit = _validated(key, input, weight)
    if hit is None:
        call, x, w, b, pad = _conv_call(ndim, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                                        backend, layout)
        impls = (call.impl(),)
        _remember(key, call, pad, impls)
    else:
        (call, x, w, pad, impls), b = hit, bias
    geom, (impl,) = call.geom, impls
    if geom.n == 0:
        return call.user(np.zeros(geom.y_shape, dtype=call.dtype))
    x = call.contiguous(x) if pad is None else pad.apply(x, call.dtype)
    b = None if b is None else call.contiguous(b)
    with _quiet():
        # the backend adds the bias, im2col while each block of output is still in cache
        y = impl.forward(x, call.contiguous(w), geom, b)
    return call.user(y)


def _conv_backward(ndim, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, bias,
                   backend, layout) -> ConvGrads:
    _check_bias_flag(bias)
    key = _key("conv_backward", ndim, input, weight, None, (stride, padding, dilation, groups, padding_mode,
                                                             backend, layout))
    hit = _validated(key, input, weight)
    if hit is None:
        call, x, w, _, pad = _conv_call(ndim, input, weight, None, stride, padding, dilation, groups, padding_mode,
                                        backend, layout)
        gy = call.grad_output(grad_output, call.geom.y_shape)
        impls = call.impl("grad_input"), call.impl("grad_weight")  # auto may pick two
        _remember(key, call, pad, impls, ("grad_input", "grad_weight"))
    else:
        call, x, w, pad, impls = hit
        gy = call.grad_output(grad_output, call.geom.y_shape)
    geom, (gx_impl, gw_impl) = call.geom, impls
    if geom.n == 0:
        gx, gw = np.zeros(x.shape, dtype=call.dtype), np.zeros(geom.w_shape, dtype=call.dtype)
    else:
        x = call.contiguous(x) if pad is None else pad.apply(x, call.dtype)
        with _quiet(), one_call():  # one call: its scratch within one budget (``_workers.thread_scratch``)
            gx = gx_impl.grad_input(gy, call.contiguous(w), geom)
            gw = gw_impl.grad_weight(gy, x, geom)
        if pad is not None:
            gx = pad.fold(gx)
    gb = gy.sum(axis=(0, *range(2, ndim + 2))) if bias else None
    return ConvGrads(call.user(gx), call.user(gw, batched=True), gb)


def _transposed_call(ndim, input, weight, stride, padding, output_padding, groups, dilation, backend, layout):
    """Validate a transposed-convolution call: ``(call, z, w)``, ``z`` and ``w`` batched channels-first
    views (its geometry is the convolution whose input gradient it is: ``x_shape`` its output,
    ``y_shape`` its input, see ``transposed_geometry``)."""
    backends.check_name(backend)
    z, w, unbatched = _arrays(ndim, input, weight, layout, transposed=True)
    geom = transposed_geometry(z.shape, w.shape, stride=stride, padding=padding, output_padding=output_padding,
                               groups=groups, dilation=dilation)
    return _Call(ndim, layout, unbatched, geom, _float_dtype(z, w), backend), z, w


def _zero_extend(z: np.ndarray, shape, dtype) -> np.ndarray:
    """``z`` as a C-contiguous ``dtype`` array of ``shape``, the extra entries of each axis zero."""
    if z.shape == tuple(shape):
        return np.ascontiguousarray(z, dtype=dtype)
    out = np.zeros(shape, dtype=dtype)
    out[tuple(slice(0, s) for s in z.shape)] = z
    return out


def _conv_transpose(ndim, input, weight, bias, stride, padding, output_padding, groups, dilation, backend,
                    layout):
    key = _key("conv_transpose", ndim, input, weight, bias, (stride, padding, output_padding, groups, dilation,
                                                              backend, layout))
    hit = _validated(key, input, weight)
    if hit is None:
        call, z, w = _transposed_call(ndim, input, weight, stride, padding, output_padding, groups, dilation,
                                      backend, layout)
        b = _bias(bias, call.geom.c_in)
        if b is not None:
            call.dtype = _float_dtype(z, w, b)
        impls = (call.impl("grad_input"),)  # a transposed convolution is the convolution's input gradient
        _remember(key, call, None, impls, ("grad_input",))
    else:
        (call, z, w, _, impls), b = hit, bias
    geom, (impl,) = call.geom, impls
    if geom.n == 0:
        return call.user(np.zeros(geom.x_shape, dtype=call.dtype))
    with _quiet():
        y = impl.grad_input(_zero_extend(z, geom.y_shape, call.dtype), call.contiguous(w), geom)
    if b is not None:
        y += b.astype(call.dtype, copy=False).reshape(-1, *(1,) * ndim)
    return call.user(y)


def _conv_transpose_backward(ndim, grad_output, input, weight, stride, padding, output_padding, groups,
                             dilation, bias, backend, layout) -> ConvGrads:
    _check_bias_flag(bias)
    key = _key("conv_transpose_backward", ndim, input, weight, None, (stride, padding, output_padding, groups,
                                                                       dilation, backend, layout))
    hit = _validated(key, input, weight)
    if hit is None:
        call, z, w = _transposed_call(ndim, input, weight, stride, padding, output_padding, groups, dilation,
                                      backend, layout)
        gy = call.grad_output(grad_output, call.geom.x_shape)
        impls = call.impl("forward"), call.impl("grad_weight")
        _remember(key, call, None, impls, ("forward", "grad_weight"))
    else:
        call, z, w, _, impls = hit
        gy = call.grad_output(grad_output, call.geom.x_shape)
    geom, (gz_impl, gw_impl) = call.geom, impls
    if geom.n == 0:
        gz, gw = np.zeros(z.shape, dtype=call.dtype), np.zeros(geom.w_shape, dtype=call.dtype)
    else:
        # The convolution may see more entries than z (output_padding >= stride): those extra
        # outputs are cropped from gz, and their zero padding in z adds nothing to gw.
        with _quiet(), one_call():
            gz = gz_impl.forward(gy, call.contiguous(w), geom)[tuple(slice(0, s) for s in z.shape)]
            gw = gw_impl.grad_weight(_zero_extend(z, geom.y_shape, call.dtype), gy, geom)
    gb = gy.sum(axis=(0, *range(2, ndim + 2))) if bias else None
    return ConvGrads(call.user(gz), call.user(gw, batched=True), gb)


def choose_backend(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                   dtype=np.float32, layout: str | None = None, gradient: str | None = None) -> str:
    """The backend that ``backend="auto"`` runs for a convolution with these shapes and arguments:
    its forward, or with ``gradient="input"`` or ``"weight"`` that gradient (``conv2d_backward``
    and the like may run the two on different backends; a transposed convolution is the input
    gradient of the convolution whose shapes it takes, and its backward the forward and the
    weight gradient).

    The number of spatial axes is ``len(weight_shape) - 2`` (1, 2 or 3); ``input_shape`` may be
    batched or unbatched; ``layout`` defaults to channels first. Resolve ``"auto"`` once and pass
    the name as ``backend=`` to pin the choice. The answer depends on the current precision level.

    Examples
    --------
    >>> choose_backend((8, 3, 32, 32), (16, 3, 3, 3), padding=1) in backends()
    True
    >>> choose_backend((2, 16, 1000), (32, 16, 9), padding=4) in backends()
    True
    """
    with _door("choose_backend"):
        ndim = len(weight_shape) - 2
        if ndim not in LAYOUTS:
            raise ValueError(f"`weight_shape` must have 3, 4 or 5 entries (1, 2 or 3 spatial axes); "
                             f"got {tuple(weight_shape)}")
        layout = LAYOUTS[ndim][0] if layout is None else layout
        x, w, _ = _arrays(ndim, np.empty(input_shape, dtype=np.uint8), np.empty(weight_shape, dtype=np.uint8),
                          layout, transposed=False)
        geom = Geometry.from_args(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                                  groups=groups)
        passes = {None: "forward", "input": "grad_input", "weight": "grad_weight"}
        if gradient not in passes:
            raise ValueError(f"`gradient` must be None, 'input' or 'weight'; got {gradient!r}")
        return backends.choose(geom, np.dtype(dtype), pass_=passes[gradient])


# ---------------------------------------------------------------------------- the public doors

def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode: str = "zeros",
           backend: str = "auto", layout: str = "NCL") -> np.ndarray:
    """1-D convolution (cross-correlation), as in ``torch.nn.functional.conv1d``.

    ``input`` ``(N, C_in, L)`` or unbatched ``(C_in, L)`` (``layout="NLC"``: ``(N, L, C_in)``),
    ``weight`` ``(C_out, C_in // groups, k)`` (``"NLC"``: ``(C_out, k, C_in // groups)``); every other
    argument and the result's rules are those of :func:`conv2d` along one axis: ``stride`` and
    ``dilation`` an int or a sequence of one, ``padding`` an int, a sequence of one, one
    ``(before, after)`` pair in a sequence, ``"valid"`` or ``"same"``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv1d(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 2)))
    array([[[1., 3., 5., 7.]]])
    """
    with _door("conv1d"):
        return _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode: str = "zeros",
           backend: str = "auto", layout: str = "NCHW") -> np.ndarray:
    """2-D convolution (cross-correlation, as in ``torch.nn.functional.conv2d``).

    Parameters
    ----------
    input : ndarray
        ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; with ``layout="NHWC"``,
        ``(N, H, W, C_in)`` or ``(H, W, C_in)``.
    weight : ndarray
        ``(C_out, C_in // groups, kH, kW)``; with ``layout="NHWC"``, ``(C_out, kH, kW, C_in // groups)``.
    bias : ndarray or None, default None
        ``(C_out,)``.
    stride, dilation : int or pair of ints, default 1
        Each >= 1.
    padding : int, pair, per-side pairs ``((top, bottom), (left, right))``, ``"valid"`` or ``"same"``
        ``"same"`` gives ``ceil(H / stride)`` rows (any odd extra padding at the bottom/right) and,
        unlike torch, is allowed with stride > 1.
    groups : int, default 1
        Divides ``C_in`` and ``C_out``; ``groups == C_in`` is a depthwise convolution.
    padding_mode : {"zeros", "reflect", "replicate", "circular", "symmetric"}, default "zeros"
        What the padding holds: zeros; the mirror image without the edge (torch's ``reflect``,
        NumPy's ``reflect``, ndimage's ``mirror``; padding < size); copies of the edge; the opposite
        side (padding <= size); the mirror image with the edge (NumPy's and SciPy's ``symmetric``,
        ndimage's ``reflect``). Gradients landing in the border fold back onto the input.
    backend : str, default "auto"
        ``"auto"`` or one of :func:`fastconv.backends`.
    layout : {"NCHW", "NHWC"}, default "NCHW"

    Returns
    -------
    ndarray
        ``(N, C_out, OH, OW)`` (or the matching NHWC / unbatched shape), a new C-contiguous array
        of the dtype of ``input``, ``weight`` and ``bias``: float32 and float64 are kept, mixed
        inputs give the wider one, integer and bool inputs give float64.

    Raises
    ------
    ValueError
        Bad shapes or hyper-parameter values, an unknown backend or layout, a backend that does
        not support the call; raised before any work.
    TypeError
        A non-numeric, complex or float16 array, or hyper-parameters of the wrong type.

    Notes
    -----
    With total padding ``P`` along an axis, ``OH = floor((H + P - dilation*(kH - 1) - 1) / stride) + 1``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fastconv.conv2d(x, np.ones((1, 1, 2, 2)), stride=2)
    array([[[[10., 18.],
             [42., 50.]]]])
    """
    with _door("conv2d"):
        return _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode: str = "zeros",
           backend: str = "auto", layout: str = "NCDHW") -> np.ndarray:
    """3-D convolution (cross-correlation), as in ``torch.nn.functional.conv3d``.

    ``input`` ``(N, C_in, D, H, W)`` or unbatched ``(C_in, D, H, W)`` (``layout="NDHWC"``:
    ``(N, D, H, W, C_in)``), ``weight`` ``(C_out, C_in // groups, kD, kH, kW)`` (``"NDHWC"``:
    ``(C_out, kD, kH, kW, C_in // groups)``); every other argument and the result's rules are those
    of :func:`conv2d` per axis, with triples where 2-D takes pairs.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv3d(np.ones((1, 1, 3, 3, 3)), np.ones((1, 1, 2, 2, 2))).shape
    (1, 1, 2, 2, 2)
    """
    with _door("conv3d"):
        return _conv(3, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout)


def conv1d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode: str = "zeros", bias: bool = True, backend: str = "auto",
                    layout: str = "NCL") -> ConvGrads:
    """Gradients of a loss through :func:`conv1d`; as :func:`conv2d_backward`, along one axis."""
    with _door("conv1d_backward"):
        return _conv_backward(1, grad_output, input, weight, stride, padding, dilation, groups, padding_mode,
                              bias, backend, layout)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode: str = "zeros", bias: bool = True, backend: str = "auto",
                    layout: str = "NCHW") -> ConvGrads:
    """Gradients of a loss through :func:`conv2d`, given the gradient of its output.

    Parameters
    ----------
    grad_output : ndarray
        The gradient of the loss with respect to ``conv2d``'s output: the output's shape.
    input, weight, stride, padding, dilation, groups, padding_mode, backend, layout
        As given to :func:`conv2d`.
    bias : bool, default True
        Whether the forward pass had a bias (whose gradient is then returned).

    Returns
    -------
    ConvGrads
        Named tuple ``(input, weight, bias)``: gradients shaped like ``input``, ``weight`` and
        ``(C_out,)`` (``bias`` is None when ``bias=False``), new C-contiguous arrays of the forward
        result's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    >>> g = fastconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> g.input[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> g.bias
    array([4.])
    """
    with _door("conv2d_backward"):
        return _conv_backward(2, grad_output, input, weight, stride, padding, dilation, groups, padding_mode,
                              bias, backend, layout)


def conv3d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    padding_mode: str = "zeros", bias: bool = True, backend: str = "auto",
                    layout: str = "NCDHW") -> ConvGrads:
    """Gradients of a loss through :func:`conv3d`; as :func:`conv2d_backward`, per axis."""
    with _door("conv3d_backward"):
        return _conv_backward(3, grad_output, input, weight, stride, padding, dilation, groups, padding_mode,
                              bias, backend, layout)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     backend: str = "auto", layout: str = "NCL") -> np.ndarray:
    """1-D transposed convolution, as in ``torch.nn.functional.conv_transpose1d``; see
    :func:`conv_transpose2d` (weight ``(C_in, C_out // groups, k)``)."""
    with _door("conv_transpose1d"):
        return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation,
                               backend, layout)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, backend: str = "auto", layout: str = "NCHW") -> np.ndarray:
    """2-D transposed convolution, as in ``torch.nn.functional.conv_transpose2d``.

    The input gradient of :func:`conv2d` with the same weight and hyper-parameters, so every
    backend computes it with its ``grad_input`` kernel.

    Parameters
    ----------
    input : ndarray
        ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; with ``layout="NHWC"``,
        ``(N, H, W, C_in)`` or ``(H, W, C_in)``.
    weight : ndarray
        ``(C_in, C_out // groups, kH, kW)``; with ``layout="NHWC"``, ``(C_in, kH, kW, C_out // groups)``.
    bias : ndarray or None, default None
        ``(C_out,)``.
    stride, dilation : int or pair of ints, default 1
        Each >= 1.
    padding : int, pair or per-side pairs ``((top, bottom), (left, right))``, default 0
        Rows and columns cropped from each side of the full output (no strings).
    output_padding : int or pair of ints, default 0
        Rows (columns) added at the bottom (right); smaller than ``max(stride, dilation)``.
    groups : int, default 1
        Divides ``C_in``.
    backend : str, default "auto"
        ``"auto"`` or one of :func:`fastconv.backends`.
    layout : {"NCHW", "NHWC"}, default "NCHW"

    Returns
    -------
    ndarray
        ``(N, C_out, OH, OW)`` (or the matching NHWC / unbatched shape), a new C-contiguous array
        of the dtype of ``input``, ``weight`` and ``bias``.

    Raises
    ------
    ValueError
        Bad shapes or hyper-parameter values, an unknown backend or layout; raised before any work.
    TypeError
        A non-numeric, complex or float16 array, or hyper-parameters of the wrong type.

    Notes
    -----
    With total padding ``P`` along an axis,
    ``OH = (H - 1)*stride - P + dilation*(kH - 1) + 1 + output_padding``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.]])
    >>> fastconv.conv_transpose2d(np.ones((1, 2, 2)), np.ones((1, 1, 2, 2)))
    array([[[1., 2., 1.],
            [2., 4., 2.],
            [1., 2., 1.]]])
    """
    with _door("conv_transpose2d"):
        return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation,
                               backend, layout)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     backend: str = "auto", layout: str = "NCDHW") -> np.ndarray:
    """3-D transposed convolution, as in ``torch.nn.functional.conv_transpose3d``; see
    :func:`conv_transpose2d` (weight ``(C_in, C_out // groups, kD, kH, kW)``)."""
    with _door("conv_transpose3d"):
        return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation,
                               backend, layout)


def conv_transpose1d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, bias: bool = True, backend: str = "auto",
                              layout: str = "NCL") -> ConvGrads:
    """Gradients of a loss through :func:`conv_transpose1d`; see :func:`conv_transpose2d_backward`."""
    with _door("conv_transpose1d_backward"):
        return _conv_transpose_backward(1, grad_output, input, weight, stride, padding, output_padding, groups,
                                        dilation, bias, backend, layout)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, bias: bool = True, backend: str = "auto",
                              layout: str = "NCHW") -> ConvGrads:
    """Gradients of a loss through :func:`conv_transpose2d`, given the gradient of its output.

    The input gradient is a :func:`conv2d` of ``grad_output`` and the weight gradient is the
    convolution's weight gradient with the roles of input and output swapped, so every backend
    computes both with its existing kernels.

    Parameters
    ----------
    grad_output : ndarray
        The gradient of the loss with respect to ``conv_transpose2d``'s output: the output's shape.
    input, weight, stride, padding, output_padding, groups, dilation, backend, layout
        As given to :func:`conv_transpose2d`.
    bias : bool, default True
        Whether the forward pass had a bias (whose gradient is then returned).

    Returns
    -------
    ConvGrads
        Named tuple ``(input, weight, bias)``: gradients shaped like ``input``, ``weight`` and
        ``(C_out,)`` (``bias`` is None when ``bias=False``), new C-contiguous arrays of the forward
        result's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> z, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))
    >>> g = fastconv.conv_transpose2d_backward(np.ones((1, 1, 3, 3)), z, w)
    >>> g.input[0, 0]
    array([[4., 4.],
           [4., 4.]])
    >>> g.bias
    array([9.])
    """
    with _door("conv_transpose2d_backward"):
        return _conv_transpose_backward(2, grad_output, input, weight, stride, padding, output_padding, groups,
                                        dilation, bias, backend, layout)


def conv_transpose3d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, bias: bool = True, backend: str = "auto",
                              layout: str = "NCDHW") -> ConvGrads:
    """Gradients of a loss through :func:`conv_transpose3d`; see :func:`conv_transpose2d_backward`."""
    with _door("conv_transpose3d_backward"):
        return _conv_transpose_backward(3, grad_output, input, weight, stride, padding, output_padding, groups,
                                        dilation, bias, backend, layout)
