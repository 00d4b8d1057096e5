"""All integer shape arithmetic of fastconv, and the validation that goes with it.

Nothing here touches array data: the public functions in ``api.py`` hand shapes and
hyper-parameters in, and get back a frozen :class:`Geometry` that every backend reads.
The output-size formula is written once, in :func:`out_size`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

PADDING_STRINGS = ("valid", "same")


def _is_int(value) -> bool:
    # bool is an int subclass, but `stride=True` is a bug in the caller, not a stride of 1.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def pair(value, name: str, *, minimum: int = 1, fn: str = "conv2d") -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` or ``[2, 3]`` -> ``(2, 3)``; each entry must be >= minimum."""
    expected = ("a positive int or a pair of positive ints" if minimum == 1
                else f"an int >= {minimum} or a pair of ints >= {minimum}")
    if _is_int(value):
        items = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        items = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{fn}: `{name}` must be {expected}; got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{fn}: `{name}` must be {expected}; got {value!r}")
    return items


def _groups(groups, fn: str) -> int:
    if not _is_int(groups):
        raise TypeError(f"{fn}: `groups` must be a positive int; got {groups!r}")
    if groups < 1:
        raise ValueError(f"{fn}: `groups` must be a positive int; got {groups}")
    return int(groups)


def out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Output length along one axis, given the *total* padding of that axis.

    ``floor((size + pad - dil*(k-1) - 1) / stride) + 1``; may be < 1 (the caller reports it).
    """
    return (size + pad - dil * (k - 1) - 1) // stride + 1


def same_padding(size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """Per-side padding that gives ``ceil(size / stride)`` outputs, any odd one at the end."""
    span = dil * (k - 1) + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def side_padding(padding, name: str = "padding",
                 fn: str = "conv2d") -> tuple[tuple[int, int], tuple[int, int]]:
    """Numeric padding -> ``((top, bottom), (left, right))``; strings are handled by the caller."""
    expected = ("an int >= 0, a pair (ph, pw), per-side pairs ((top, bottom), (left, right))"
                + (", 'valid' or 'same'" if fn == "conv2d" else ""))
    if _is_int(padding) or (isinstance(padding, (tuple, list)) and len(padding) == 2
                            and all(_is_int(p) for p in padding)):
        ph, pw = pair(padding, name, minimum=0, fn=fn)
        return (ph, ph), (pw, pw)
    if (isinstance(padding, (tuple, list)) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding)
            and all(_is_int(v) for p in padding for v in p)):
        (top, bottom), (left, right) = padding
        if min(top, bottom, left, right) < 0:
            raise ValueError(f"{fn}: `{name}` must be {expected}; got {padding!r} (negative)")
        return (int(top), int(bottom)), (int(left), int(right))
    if isinstance(padding, str):
        raise ValueError(f"{fn}: `{name}` must be {expected}; got the string {padding!r}")
    raise TypeError(f"{fn}: `{name}` must be {expected}; got {padding!r}")


@dataclass(frozen=True)
class Geometry:
    """A fully normalised 2-D convolution, batched NCHW: everything a backend needs but the data.

    Input ``(n, c_in, ih, iw)``, weight ``(c_out, c_in // groups, kh, kw)``, output
    ``(n, c_out, oh, ow)``. Padding is per side: ``pt, pb`` (top, bottom), ``pl, pr``
    (left, right). Output pixel ``(oy, ox)`` reads input row ``oy*sh - pt + ky*dil_h``.
    """

    n: int
    c_in: int
    ih: int
    iw: int
    c_out: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int
    dil_h: int
    dil_w: int
    groups: int
    oh: int
    ow: int

    @property
    def c_in_g(self) -> int:
        """Input channels per group (the weight's second dimension)."""
        return self.c_in // self.groups

    @property
    def c_out_g(self) -> int:
        """Output channels per group."""
        return self.c_out // self.groups

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c_in, self.ih, self.iw)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in_g, self.kh, self.kw)

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c_out, self.oh, self.ow)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the forward pass (each gradient costs the same)."""
        return self.n * self.c_out * self.oh * self.ow * self.c_in_g * self.kh * self.kw

    @classmethod
    def from_args(cls, x_shape, w_shape, *, stride=1, padding=0, dilation=1, groups=1,
                  fn: str = "conv2d") -> Geometry:
        """Validate the hyper-parameters against batched-NCHW shapes and build the geometry.

        Raises ``ValueError``/``TypeError`` naming the offending argument; never touches data.
        """
        n, c_in, ih, iw = (int(s) for s in x_shape)
        c_out, c_in_g, kh, kw = (int(s) for s in w_shape)
        sh, sw = pair(stride, "stride", fn=fn)
        dil_h, dil_w = pair(dilation, "dilation", fn=fn)
        groups = _groups(groups, fn)
        if min(c_out, c_in_g, kh, kw) < 1:
            raise ValueError(f"{fn}: `weight` must have no empty dimension (C_out, C_in/groups, kH, kW); "
                             f"got shape {tuple(w_shape)}")
        if c_in % groups:
            raise ValueError(f"{fn}: `groups`={groups} must divide the input's {c_in} channels")
        if c_out % groups:
            raise ValueError(f"{fn}: `groups`={groups} must divide the weight's {c_out} output channels "
                             f"(weight.shape[0])")
        if c_in_g * groups != c_in:
            raise ValueError(f"{fn}: `weight` has {c_in_g} input channels per group but `input` has "
                             f"{c_in} channels and groups={groups} (expected {c_in // groups})")
        if isinstance(padding, str):
            if padding not in PADDING_STRINGS:
                raise ValueError(f"{fn}: `padding` must be an int, a pair, per-side pairs, 'valid' or "
                                 f"'same'; got the string {padding!r}")
            if padding == "valid":
                (pt, pb), (pl, pr) = (0, 0), (0, 0)
            else:
                (pt, pb), (pl, pr) = same_padding(ih, kh, sh, dil_h), same_padding(iw, kw, sw, dil_w)
        else:
            (pt, pb), (pl, pr) = side_padding(padding, fn=fn)
        oh = out_size(ih, kh, sh, pt + pb, dil_h)
        ow = out_size(iw, kw, sw, pl + pr, dil_w)
        if oh < 1 or ow < 1:
            raise ValueError(
                f"{fn}: output would be empty: the dilated kernel spans "
                f"{dil_h * (kh - 1) + 1}x{dil_w * (kw - 1) + 1} but the padded input is "
                f"{ih + pt + pb}x{iw + pl + pr} (`weight` {kh}x{kw}, `dilation` {(dil_h, dil_w)}, "
                f"`padding` {padding!r}, input {ih}x{iw})")
        return cls(n=n, c_in=c_in, ih=ih, iw=iw, c_out=c_out, kh=kh, kw=kw, sh=sh, sw=sw,
                   pt=pt, pb=pb, pl=pl, pr=pr, dil_h=dil_h, dil_w=dil_w, groups=groups, oh=oh, ow=ow)


def transposed_out_size(size: int, k: int, stride: int, pad: int, dil: int, output_padding: int) -> int:
    """Output length of a transposed convolution along one axis, given the *total* padding (cropping).

    ``(size - 1)*stride - pad + dil*(k-1) + 1 + output_padding``: the inverse of :func:`out_size`
    for the convolution whose input gradient it is; may be < 1 (the caller reports it).
    """
    return (size - 1) * stride - pad + dil * (k - 1) + 1 + output_padding


def transposed_geometry(z_shape, w_shape, *, stride=1, padding=0, output_padding=0, groups=1,
                        dilation=1, fn: str = "conv_transpose2d") -> Geometry:
    """The convolution whose input gradient is the transposed convolution of ``z`` by ``w``.

    ``z_shape`` is the transposed convolution's batched NCHW input ``(n, c_in, h, w)`` and
    ``w_shape`` its weight ``(c_in, c_out // groups, kh, kw)``. In the returned geometry, ``x_shape``
    is the transposed convolution's output and ``w_shape`` its weight. ``y_shape`` is ``z_shape``
    except when ``output_padding >= stride`` (allowed when dilation > stride): the convolution
    then has ``output_padding // stride`` more rows (columns) than ``z``, and the caller pads
    ``z`` with zeros, which contribute nothing.
    """
    n, c_z, ih, iw = (int(s) for s in z_shape)
    c_in, c_out_g, kh, kw = (int(s) for s in w_shape)
    sh, sw = pair(stride, "stride", fn=fn)
    dil_h, dil_w = pair(dilation, "dilation", fn=fn)
    op_h, op_w = pair(output_padding, "output_padding", minimum=0, fn=fn)
    groups = _groups(groups, fn)
    if min(c_in, c_out_g, kh, kw) < 1:
        raise ValueError(f"{fn}: `weight` must have no empty dimension (C_in, C_out/groups, kH, kW); "
                         f"got shape {tuple(w_shape)}")
    if c_z != c_in:
        raise ValueError(f"{fn}: `weight` expects {c_in} input channels (weight.shape[0]) but `input` "
                         f"has {c_z}")
    if c_in % groups:
        raise ValueError(f"{fn}: `groups`={groups} must divide the input's {c_in} channels")
    if min(ih, iw) < 1:
        raise ValueError(f"{fn}: `input` must have a non-empty image; got {ih}x{iw}")
    if op_h >= max(sh, dil_h) or op_w >= max(sw, dil_w):
        raise ValueError(f"{fn}: `output_padding` must be smaller than stride or dilation in each "
                         f"dimension; got output_padding {(op_h, op_w)}, stride {(sh, sw)}, "
                         f"dilation {(dil_h, dil_w)}")
    (pt, pb), (pl, pr) = side_padding(padding, fn=fn)
    oh = transposed_out_size(ih, kh, sh, pt + pb, dil_h, op_h)
    ow = transposed_out_size(iw, kw, sw, pl + pr, dil_w, op_w)
    if oh < 1 or ow < 1:
        raise ValueError(f"{fn}: output would be empty ({oh}x{ow}): `padding` {padding!r} crops more "
                         f"than the full {oh + pt + pb}x{ow + pl + pr} output of a {ih}x{iw} input")
    geom = Geometry(n=n, c_in=c_out_g * groups, ih=oh, iw=ow, c_out=c_in, kh=kh, kw=kw, sh=sh, sw=sw,
                    pt=pt, pb=pb, pl=pl, pr=pr, dil_h=dil_h, dil_w=dil_w, groups=groups,
                    oh=ih + op_h // sh, ow=iw + op_w // sw)
    assert geom.oh == out_size(oh, kh, sh, pt + pb, dil_h) and geom.ow == out_size(ow, kw, sw, pl + pr, dil_w)
    return geom
