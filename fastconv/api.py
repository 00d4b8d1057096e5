"""The public functions: normalise and validate the arguments once, pick a backend, call it.

Everything that every backend would otherwise repeat lives here: array and dtype handling,
layout conversion, unbatched input, the empty batch, bias, and ``backend="auto"``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import backends
from .geometry import Geometry, transposed_geometry

LAYOUTS = ("NCHW", "NHWC")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Conv2dGrads(NamedTuple):
    """Gradients of a convolution's loss with respect to its input, weight and bias."""

    input: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None


def _array(value, name: str, fn: str) -> np.ndarray:
    """``value`` as an ndarray (no copy), with a dtype fastconv computes in, else ``TypeError``."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{fn}: `{name}` must be a numeric array; got {type(value).__name__}") from exc
    if arr.dtype not in _FLOATS and arr.dtype.kind not in "iub":
        raise TypeError(f"{fn}: `{name}` has dtype {arr.dtype}; expected float32 or float64 "
                        f"(integer and bool arrays are computed in float64)")
    return arr


def _float_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32/float64 kept, integers and bool computed in float64, mixed inputs give the wider."""
    return np.result_type(*(a.dtype if a.dtype in _FLOATS else np.float64 for a in arrays))


def _check_layout(layout, fn: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"{fn}: `layout` must be 'NCHW' or 'NHWC'; got {layout!r}")


_W_DIMS = {  # (transposed, layout) -> the weight's dimensions, for error messages
    (False, "NCHW"): "(C_out, C_in/groups, kH, kW)", (False, "NHWC"): "(C_out, kH, kW, C_in/groups)",
    (True, "NCHW"): "(C_in, C_out/groups, kH, kW)", (True, "NHWC"): "(C_in, kH, kW, C_out/groups)",
}


def _to_nchw(input, weight, layout: str, fn: str, *, transposed: bool = False):
    """Batched NCHW views of ``input`` and ``weight`` (no data copied) and whether input was 3-D."""
    x = _array(input, "input", fn)
    w = _array(weight, "weight", fn)
    spatial = "(N, C, H, W) or unbatched (C, H, W)" if layout == "NCHW" else "(N, H, W, C) or (H, W, C)"
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: `input` must have 4 dimensions {spatial}; got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{fn}: `weight` must have 4 dimensions {_W_DIMS[transposed, layout]}; "
                         f"got shape {w.shape}")
    unbatched = x.ndim == 3
    if unbatched:
        x = x[np.newaxis]
    if layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
        w = w.transpose(0, 3, 1, 2)
    return x, w, unbatched


def _from_nchw(y: np.ndarray, layout: str, unbatched: bool) -> np.ndarray:
    """Undo :func:`_to_nchw` on a result; always returns a C-contiguous array."""
    if layout == "NHWC":
        y = y.transpose(0, 2, 3, 1)
    if unbatched:
        y = y[0]
    return np.ascontiguousarray(y)


def _bias(bias, c_out: int, fn: str) -> np.ndarray | None:
    if bias is None:
        return None
    b = _array(bias, "bias", fn)
    if b.shape != (c_out,):
        raise ValueError(f"{fn}: `bias` must have shape ({c_out},), one value per output channel; "
                         f"got shape {b.shape}")
    return b


def _check_bias_flag(bias, fn: str) -> None:
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"{fn}: `bias` must be True or False (whether the forward pass had one); "
                        f"got {type(bias).__name__}")


def _grad_output(grad_output, shape4, layout: str, unbatched: bool, fn: str) -> np.ndarray:
    """``grad_output`` checked against the forward result's shape, as a batched NCHW view."""
    gy = _array(grad_output, "grad_output", fn)
    expected = _user_shape(shape4, layout, unbatched)
    if gy.shape != expected:
        raise ValueError(f"{fn}: `grad_output` must have the forward output's shape {expected}; "
                         f"got {gy.shape}")
    if unbatched:
        gy = gy[np.newaxis]
    return gy.transpose(0, 3, 1, 2) if layout == "NHWC" else gy


def _quiet():
    """NaN and inf propagate silently, as in torch: ``inf * 0`` is not worth a RuntimeWarning."""
    return np.errstate(invalid="ignore", over="ignore")


def _backend_name(backend, geom: Geometry, dtype) -> str:
    return backends.choose(geom, dtype) if backend == "auto" else backend


def _user_shape(shape4, layout: str, unbatched: bool) -> tuple[int, ...]:
    """A batched NCHW shape as the caller sees it (layout, unbatched)."""
    n, c, h, w_ = shape4
    shape = (n, h, w_, c) if layout == "NHWC" else (n, c, h, w_)
    return shape[1:] if unbatched else shape


def _conv_call(input, weight, stride, padding, dilation, groups, backend, layout, fn):
    """Validate a convolution call: ``(x, w, geom, dtype, unbatched, impl)``, batched NCHW views."""
    _check_layout(layout, fn)
    backends.check_name(backend, fn)
    x, w, unbatched = _to_nchw(input, weight, layout, fn)
    geom = Geometry.from_args(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, fn=fn)
    dtype = _float_dtype(x, w)
    return x, w, geom, dtype, unbatched, backends.get(_backend_name(backend, geom, dtype))


def choose_backend(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                   dtype=np.float32, layout: str = "NCHW") -> str:
    """The backend that ``backend="auto"`` runs for a call with these shapes and arguments.

    Resolve ``"auto"`` once and pass the name as ``backend=`` to pin the choice.

    Examples
    --------
    >>> choose_backend((8, 3, 32, 32), (16, 3, 3, 3), padding=1) in backends()
    True
    """
    _check_layout(layout, "choose_backend")
    x, w, _ = _to_nchw(np.empty(input_shape, dtype=np.uint8), np.empty(weight_shape, dtype=np.uint8),
                       layout, "choose_backend")
    geom = Geometry.from_args(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, fn="choose_backend")
    return backends.choose(geom, np.dtype(dtype))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
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
    backend : str, default "auto"
        ``"auto"`` or one of :func:`fastconv.backends`.
    layout : {"NCHW", "NHWC"}, default "NCHW"

    Returns
    -------
    ndarray
        ``(N, C_out, OH, OW)`` (or the matching NHWC / unbatched shape), a new C-contiguous array
        of the dtype of ``input`` and ``weight``: float32 and float64 are kept, mixed inputs give
        the wider one, integer and bool inputs give float64.

    Raises
    ------
    ValueError
        Bad shapes or hyper-parameter values, an unknown backend or layout; raised before any work.
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
    fn = "conv2d"
    x, w, geom, dtype, unbatched, impl = _conv_call(input, weight, stride, padding, dilation, groups,
                                                    backend, layout, fn)
    b = _bias(bias, geom.c_out, fn)
    b = None if b is None else np.ascontiguousarray(b, dtype=dtype)
    if geom.n == 0:
        y = np.zeros(geom.y_shape, dtype=dtype)
    else:
        with _quiet():
            # the backend adds the bias, im2col while each block of output is still in cache
            y = impl.forward(np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(w, dtype=dtype), geom, b)
    return _from_nchw(y, layout, unbatched)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    bias: bool = True, backend: str = "auto", layout: str = "NCHW") -> Conv2dGrads:
    """Gradients of a loss through :func:`conv2d`, given the gradient of its output.

    Parameters
    ----------
    grad_output : ndarray
        The gradient of the loss with respect to ``conv2d``'s output: the output's shape.
    input, weight, stride, padding, dilation, groups, backend, layout
        As given to :func:`conv2d`.
    bias : bool, default True
        Whether the forward pass had a bias (whose gradient is then returned).

    Returns
    -------
    Conv2dGrads
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
    fn = "conv2d_backward"
    _check_bias_flag(bias, fn)
    x, w, geom, dtype, unbatched, impl = _conv_call(input, weight, stride, padding, dilation, groups,
                                                    backend, layout, fn)
    gy = np.ascontiguousarray(_grad_output(grad_output, geom.y_shape, layout, unbatched, fn), dtype=dtype)
    if geom.n == 0:
        gx, gw = np.zeros(geom.x_shape, dtype=dtype), np.zeros(geom.w_shape, dtype=dtype)
    else:
        with _quiet():
            gx = impl.grad_input(gy, np.ascontiguousarray(w, dtype=dtype), geom)
            gw = impl.grad_weight(gy, np.ascontiguousarray(x, dtype=dtype), geom)
    gb = gy.sum(axis=(0, 2, 3)) if bias else None
    return Conv2dGrads(_from_nchw(gx, layout, unbatched),
                       _from_nchw(gw, layout, False), gb)


def _transposed_call(input, weight, stride, padding, output_padding, groups, dilation, backend,
                     layout, fn):
    """Validate a transposed-convolution call: ``(z, w, geom, dtype, unbatched, impl)``, NCHW."""
    _check_layout(layout, fn)
    backends.check_name(backend, fn)
    z, w, unbatched = _to_nchw(input, weight, layout, fn, transposed=True)
    geom = transposed_geometry(z.shape, w.shape, stride=stride, padding=padding,
                               output_padding=output_padding, groups=groups, dilation=dilation, fn=fn)
    dtype = _float_dtype(z, w)
    return z, w, geom, dtype, unbatched, backends.get(_backend_name(backend, geom, dtype))


def _zero_extend(z: np.ndarray, shape, dtype) -> np.ndarray:
    """``z`` as a C-contiguous ``dtype`` array of ``shape``, the extra rows and columns zero."""
    if z.shape == tuple(shape):
        return np.ascontiguousarray(z, dtype=dtype)
    out = np.zeros(shape, dtype=dtype)
    out[:, :, :z.shape[2], :z.shape[3]] = z
    return out


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
        of the dtype of ``input`` and ``weight``.

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
    fn = "conv_transpose2d"
    z, w, geom, dtype, unbatched, impl = _transposed_call(input, weight, stride, padding, output_padding,
                                                          groups, dilation, backend, layout, fn)
    b = _bias(bias, geom.c_in, fn)
    if geom.n == 0:
        y = np.zeros(geom.x_shape, dtype=dtype)
    else:
        with _quiet():
            y = impl.grad_input(_zero_extend(z, geom.y_shape, dtype), np.ascontiguousarray(w, dtype=dtype),
                                geom)
    if b is not None:
        y += b.astype(dtype, copy=False).reshape(-1, 1, 1)
    return _from_nchw(y, layout, unbatched)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, bias: bool = True, backend: str = "auto",
                              layout: str = "NCHW") -> Conv2dGrads:
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
    Conv2dGrads
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
    fn = "conv_transpose2d_backward"
    _check_bias_flag(bias, fn)
    z, w, geom, dtype, unbatched, impl = _transposed_call(input, weight, stride, padding, output_padding,
                                                          groups, dilation, backend, layout, fn)
    gy = np.ascontiguousarray(_grad_output(grad_output, geom.x_shape, layout, unbatched, fn), dtype=dtype)
    if geom.n == 0:
        gz, gw = np.zeros(z.shape, dtype=dtype), np.zeros(geom.w_shape, dtype=dtype)
    else:
        # The convolution may see more rows than z (output_padding >= stride): those extra outputs
        # are cropped from gz, and their zero padding in z adds nothing to gw.
        with _quiet():
            gz = impl.forward(gy, np.ascontiguousarray(w, dtype=dtype), geom)[:, :, :z.shape[2], :z.shape[3]]
            gw = impl.grad_weight(_zero_extend(z, geom.y_shape, dtype), gy, geom)
    gb = gy.sum(axis=(0, 2, 3)) if bias else None
    return Conv2dGrads(_from_nchw(gz, layout, unbatched), _from_nchw(gw, layout, False), gb)
