"""All integer shape arithmetic of fastconv, and the validation that goes with it.

Nothing here touches array data: the public functions in ``api.py`` hand shapes and
hyper-parameters in, and get back a frozen :class:`Geometry` that every backend reads. A
geometry has 1, 2 or 3 spatial axes, each described by one entry of per-axis tuples, and every
formula is written once, as a loop over axes (numpy's ``sliding_window_view`` is the model):
the output size in :func:`out_size`, ``"same"`` padding in :func:`same_padding`, the transposed
convolution in :func:`transposed_geometry`, the input gradient as a forward convolution in
:meth:`Geometry.input_gradient_as_forward`, and a dilated convolution as undilated ones on its
phases in :meth:`Geometry.phases`.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import NamedTuple

PADDING_STRINGS = ("valid", "same")
AXES = {1: "L", 2: "HxW", 3: "DxHxW"}  # how messages name the spatial axes of each rank
# The largest result or scratch buffer a call may ask for, in elements, before it is refused with
# a ValueError naming the argument: numpy's own limit is 2**63 bytes, and long before that a
# call would only fail inside a backend, each in its own way (OverflowError, negative dimensions).
MAX_ELEMENTS = 2**48


def _is_int(value) -> bool:
    # bool is an int subclass, but `stride=True` is a bug in the caller, not a stride of 1.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_seq(value) -> bool:
    return isinstance(value, (tuple, list))


def per_axis(value, name: str, ndim: int, *, minimum: int = 1) -> tuple[int, ...]:
    """``3`` -> ``(3,) * ndim``; a sequence of ``ndim`` ints as a tuple; each must be >= minimum.

    >>> per_axis(2, "stride", 3), per_axis([1, 2], "stride", 2)
    ((2, 2, 2), (1, 2))
    """
    kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    expected = f"{kind} or {ndim} of them, one per axis" if ndim > 1 else kind
    if ndim == 1:
        expected += " (or a sequence of one)"
    if _is_int(value):
        items = (int(value),) * ndim
    elif _is_seq(value) and all(_is_int(v) for v in value):
        if len(value) != ndim:
            raise ValueError(f"`{name}` must be {expected}; got {value!r} ({len(value)} values for "
                             f"{ndim} spatial axes)")
        items = tuple(int(v) for v in value)
    else:
        raise TypeError(f"`{name}` must be {expected}; got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"`{name}` must be {expected}; got {value!r}")
    return items


def pair(value, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` or ``[2, 3]`` -> ``(2, 3)``: :func:`per_axis` for two axes."""
    return per_axis(value, name, 2, minimum=minimum)


def check_groups(groups) -> int:
    if not _is_int(groups):
        raise TypeError(f"`groups` must be a positive int; got {groups!r}")
    if groups < 1:
        raise ValueError(f"`groups` must be a positive int; got {groups}")
    return int(groups)


def out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Output length along one axis, given the *total* padding of that axis.

    ``floor((size + pad - dil*(k-1) - 1) / stride) + 1``; may be < 1 (the caller reports it).
    """
    return (size + pad - dil * (k - 1) - 1) // stride + 1


def taps_share(in_size, kernel, out_size, stride, dilation, before) -> float:
    """The share of the output positions' kernel taps that read the input rather than padding,
    per axis: ``in_size`` inputs, ``kernel`` taps ``dilation`` apart, ``out_size`` outputs
    ``stride`` apart, ``before`` padded (negative: cropped) before the first. An axis's taps on the
    input, summed over its outputs, times the other axes' (the window is their product)."""
    share = 1.0
    for i, k, o, s, d, b in zip(in_size, kernel, out_size, stride, dilation, before):
        if o:
            share *= sum(0 <= p * s - b + j * d < i for p in range(o) for j in range(k)) / (o * k)
    return share


def same_padding(size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """Per-side padding that gives ``ceil(size / stride)`` outputs, any odd one at the end."""
    span = dil * (k - 1) + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def side_padding(padding, name: str = "padding", ndim: int = 2, *,
                 strings: bool = True) -> tuple[tuple[int, int], ...]:
    """Numeric padding -> one ``(before, after)`` pair per axis; strings are handled by the caller.

    An int pads every side; ``ndim`` ints pad both sides of each axis; ``ndim`` pairs give each
    side. ``((top, bottom), (left, right))`` in 2-D.
    """
    strings = ", 'valid' or 'same'" if strings else ""
    expected = (f"an int >= 0, {ndim} of them (one per axis) or {ndim} (before, after) pairs{strings}"
                if ndim > 1 else f"an int >= 0, a sequence of one, or one (before, after) pair{strings}")
    if _is_seq(padding) and padding and all(_is_seq(p) for p in padding):
        if len(padding) != ndim or not all(len(p) == 2 and all(_is_int(v) for v in p) for p in padding):
            error = ValueError if all(_is_seq(p) and all(_is_int(v) for v in p) for p in padding) else TypeError
            raise error(f"`{name}` must be {expected}; got {padding!r}")
        if min(v for p in padding for v in p) < 0:
            raise ValueError(f"`{name}` must be {expected}; got {padding!r} (negative)")
        return tuple((int(a), int(b)) for a, b in padding)
    if isinstance(padding, str):
        raise ValueError(f"`{name}` must be {expected}; got the string {padding!r}")
    if not (_is_int(padding) or _is_seq(padding) and all(_is_int(p) for p in padding)):
        raise TypeError(f"`{name}` must be {expected}; got {padding!r}")
    if _is_seq(padding) and len(padding) != ndim:
        raise ValueError(f"`{name}` must be {expected}; got {padding!r} ({len(padding)} values for {ndim} "
                         f"spatial axes)")
    return tuple((p, p) for p in per_axis(padding, name, ndim, minimum=0))


def padding_arg(padding, ndim: int) -> str | tuple[tuple[int, int], ...]:
    """A convolution's ``padding`` checked: ``"valid"``, ``"same"`` or one ``(before, after)`` pair
    per axis."""
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"`padding` must be an int, one per axis, (before, after) pairs, "
                             f"'valid' or 'same'; got the string {padding!r}")
        return padding
    return side_padding(padding, ndim=ndim)


def _axes(sizes) -> str:
    return "x".join(map(str, sizes))


def _axis_2d(field: str, axis: int, side: int | None = None):
    """A getter of ``field[axis]`` (``[side]``) that only a 2-D geometry answers."""
    def get(geom):
        if len(geom.in_size) != 2:
            raise AttributeError(f"a {len(geom.in_size)}-D geometry has no 2-D-only attribute; read `{field}`'s "
                                 f"per-axis tuple instead")
        value = getattr(geom, field)[axis]
        return value if side is None else value[side]
    return get


class StridePhase(NamedTuple):
    """One phase of a strided input gradient (``Geometry.stride_phases``), a tuple per axis."""

    first: tuple[int, ...]    # its first tap k0: the taps k0, k0 + stride, ... of the kernel
    offset: tuple[int, ...]   # the input positions it holds: offset, offset + stride, ...
    taps: tuple[int, ...]     # how many taps
    pad: tuple[int, ...]      # gy's padding before it on each axis (negative: cropped)
    size: tuple[int, ...]     # its extent: how many input positions


@dataclass(frozen=True)
class Geometry:
    """A fully normalised convolution over 1, 2 or 3 spatial axes, batched channels-first.

    Input ``(n, c_in, *in_size)``, weight ``(c_out, c_in // groups, *kernel)``, output
    ``(n, c_out, *out_size)``. ``padding`` holds one ``(before, after)`` pair per axis. Along
    each axis, output index ``o`` reads input index ``o*stride - before + k*dilation``.
    The 2-D names (``ih, iw, kh, kw, sh, sw, pt, pb, pl, pr, dil_h, dil_w, oh, ow``) read those
    tuples on a 2-D geometry and raise ``AttributeError`` on any other.
    """

    n: int
    c_in: int
    c_out: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    out_size: tuple[int, ...]

    @property
    def ndim(self) -> int:
        """Number of spatial axes: 1, 2 or 3."""
        return len(self.in_size)

    @property
    def c_in_g(self) -> int:
        """Input channels per group (the weight's second dimension)."""
        return self.c_in // self.groups

    @property
    def c_out_g(self) -> int:
        """Output channels per group."""
        return self.c_out // self.groups

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.n, self.c_in, *self.in_size)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.c_out, self.c_in_g, *self.kernel)

    @property
    def y_shape(self) -> tuple[int, ...]:
        return (self.n, self.c_out, *self.out_size)

    @cached_property
    def padded_size(self) -> tuple[int, ...]:
        """The zero-padded input's spatial size (read on every numba call: computed once)."""
        return tuple(i + a + b for i, (a, b) in zip(self.in_size, self.padding))

    @property
    def interior(self) -> tuple[slice, ...]:
        """Slices of the padded input's spatial axes that hold the input itself."""
        return tuple(slice(a, a + i) for i, (a, _) in zip(self.in_size, self.padding))

    @cached_property
    def is_padded(self) -> bool:
        return any(a or b for a, b in self.padding)

    @cached_property
    def has_blind_tap(self) -> bool:
        """Whether some kernel index along some axis reads the padding at every output position
        (a kernel wider than the input, say): its taps multiply no input value at all."""
        for i, k, o, s, d, (before, _) in zip(self.in_size, self.kernel, self.out_size, self.stride, self.dilation,
                                              self.padding):
            for j in range(k):
                first = max(0, -(-(before - j * d) // s))  # the first output whose index j lies inside
                if first >= o or first * s - before + j * d >= i:
                    return True
        return False

    @cached_property
    def input_taps_share(self) -> float:
        """The share of the output positions' kernel taps that read the input, not the padding (1.0
        unpadded): what a kernel that leaves out the taps on padding multiplies of a direct sum's
        terms (``numba``'s images as the register tiles' columns)."""
        return taps_share(self.in_size, self.kernel, self.out_size, self.stride, self.dilation,
                          tuple(before for before, _ in self.padding))

    @cached_property
    def has_blind_output(self) -> bool:
        """Whether some output position along some axis has its whole window in the padding (a
        padding wider than the kernel's reach, say): its gradient meets no input value."""
        for i, k, o, s, d, (before, _) in zip(self.in_size, self.kernel, self.out_size, self.stride, self.dilation,
                                              self.padding):
            if o and (o - 1) * s - before >= i:  # the last window starts past the input
                return True
            for start in range(-before, min(o, -(-before // s)) * s - before, s):  # windows that start before it
                j = -(start // d)  # its first tap at or past the input's start
                if j >= k or start + j * d >= i:
                    return True
        return False

    @property
    def span(self) -> tuple[int, ...]:
        """Reach of the dilated kernel along each axis, ``dilation*(k-1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @cached_property
    def macs(self) -> int:
        """Multiply-accumulates of the forward pass (each gradient costs the same)."""
        return self.n * self.c_out * math.prod(self.out_size) * self.c_in_g * math.prod(self.kernel)

    def tiles(self, m: int) -> int:
        """``m x m`` tiles over one output plane (the last two axes; a 1-D output is one row of
        ``m``-wide tiles): Winograd's F(m x m) work units, the last ones padded past the edge."""
        return math.prod(-(-o // m) for o in self.out_size[-2:])

    @property
    def is_depthwise(self) -> bool:
        """One input channel per group, more than one group."""
        return self.groups > 1 and self.c_in_g == 1

    @cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

    def __hash__(self) -> int:
        """The fields' hash, computed once per instance: geometries key the per-call caches
        (``backends._entry``), and the dataclass's hash built the fields' tuple anew each time
        (0.5 us of a small call)."""
        return self._hash

    # 2-D conveniences: the names the 2-D kernels are written in. Read a dozen times per call, and
    # geometries are reused (from_args caches them): each is computed once per instance and then
    # read from the instance's dict (0.35 -> 0.03 us each). The fields stay the dataclass's own.
    ih = cached_property(_axis_2d("in_size", 0))
    iw = cached_property(_axis_2d("in_size", 1))
    kh = cached_property(_axis_2d("kernel", 0))
    kw = cached_property(_axis_2d("kernel", 1))
    sh = cached_property(_axis_2d("stride", 0))
    sw = cached_property(_axis_2d("stride", 1))
    pt = cached_property(_axis_2d("padding", 0, 0))
    pb = cached_property(_axis_2d("padding", 0, 1))
    pl = cached_property(_axis_2d("padding", 1, 0))
    pr = cached_property(_axis_2d("padding", 1, 1))
    dil_h = cached_property(_axis_2d("dilation", 0))
    dil_w = cached_property(_axis_2d("dilation", 1))
    oh = cached_property(_axis_2d("out_size", 0))
    ow = cached_property(_axis_2d("out_size", 1))

    @classmethod
    def from_args(cls, x_shape, w_shape, *, stride=1, padding=0, dilation=1, groups=1) -> Geometry:
        """:meth:`_build`, cached by the arguments' values and types."""
        try:
            key = (tuple(x_shape), tuple(w_shape), _key(stride), _key(padding), _key(dilation), _key(groups))
            return _GEOMETRIES[key]
        except KeyError:
            geom = cls._build(x_shape, w_shape, stride=stride, padding=padding, dilation=dilation, groups=groups)
            if len(_GEOMETRIES) >= 1024:  # a bound, not an LRU: long-running callers see few shapes
                _GEOMETRIES.clear()
            _GEOMETRIES[key] = geom
            return geom
        except TypeError:  # unhashable arguments: no cache, and _build says what is wrong with them
            return cls._build(x_shape, w_shape, stride=stride, padding=padding, dilation=dilation, groups=groups)

    @classmethod
    def _build(cls, x_shape, w_shape, *, stride=1, padding=0, dilation=1, groups=1) -> Geometry:
        """Validate the hyper-parameters against batched channels-first shapes; build the geometry.

        The number of spatial axes is ``len(x_shape) - 2``. Raises ``ValueError``/``TypeError``
        naming the offending argument (the public function adds its own name); never touches data.
        """
        ndim = len(x_shape) - 2
        n, c_in, *in_size = (int(s) for s in x_shape)
        c_out, c_in_g, *kernel = (int(s) for s in w_shape)
        stride = per_axis(stride, "stride", ndim)
        dilation = per_axis(dilation, "dilation", ndim)
        groups = check_groups(groups)
        if min(c_out, c_in_g, *kernel) < 1:
            raise ValueError(f"`weight` must have no empty dimension (C_out, C_in/groups, kernel); "
                             f"got shape {tuple(w_shape)}")
        if c_in % groups:
            raise ValueError(f"`groups`={groups} must divide the input's {c_in} channels")
        if c_out % groups:
            raise ValueError(f"`groups`={groups} must divide the weight's {c_out} output channels "
                             f"(weight.shape[0])")
        if c_in_g * groups != c_in:
            raise ValueError(f"`weight` has {c_in_g} input channels per group but `input` has "
                             f"{c_in} channels and groups={groups} (expected {c_in // groups})")
        pads = padding_arg(padding, ndim)
        if pads == "valid":
            pads = tuple((0, 0) for _ in in_size)
        elif pads == "same":
            pads = tuple(same_padding(*a) for a in zip(in_size, kernel, stride, dilation))
        out = tuple(out_size(i, k, s, a + b, d)
                    for i, k, s, (a, b), d in zip(in_size, kernel, stride, pads, dilation))
        geom = cls(n=n, c_in=c_in, c_out=c_out, groups=groups, in_size=tuple(in_size), kernel=tuple(kernel),
                   stride=stride, padding=pads, dilation=dilation, out_size=out)
        if min(out) < 1:
            raise ValueError(
                f"output would be empty: the dilated kernel spans {_axes(geom.span)} but the padded "
                f"input is {_axes(geom.padded_size)} (`weight` {_axes(kernel)}, `dilation` "
                f"{dilation if ndim > 1 else dilation[0]}, `padding` {padding!r}, input {_axes(in_size)})")
        return geom.canonical()

    def canonical(self) -> Geometry:
        """The same convolution with every result and scratch size checked and its arithmetic kept
        small: along an axis with one output, the stride never matters and becomes the smallest
        that still gives one output (a legal ``stride=10**18`` otherwise overflows the backends'
        index arithmetic; 1 would break ``out_size``'s formula when the input reaches past the
        window), and padding that no window reaches is dropped."""
        stride, pads = list(self.stride), list(self.padding)
        for axis, (i, o, span) in enumerate(zip(self.in_size, self.out_size, self.span)):
            before, after = pads[axis]
            if o == 1:
                stride[axis] = min(stride[axis], i + before + after - span + 1)
            # The last window ends at (o-1)*stride + span in padded coordinates: what lies beyond
            # is never read by any pass, so it need not be allocated.
            reach = (o - 1) * stride[axis] + span
            pads[axis] = (before, max(0, min(after, reach - before - i)))
        geom = replace(self, stride=tuple(stride), padding=tuple(pads))
        for what, size in (("the input's zero-padded copy", geom.c_in * math.prod(geom.padded_size)),
                           ("the output", geom.n * geom.c_out * math.prod(geom.out_size)),
                           ("one image's patch matrix", geom.c_in * math.prod(geom.kernel)
                            * math.prod(geom.out_size))):
            if size > MAX_ELEMENTS:
                raise ValueError(f"{what} would hold {size:.3g} elements, more than fastconv "
                                 f"allocates ({MAX_ELEMENTS:.3g}); check `padding`, `stride` and `dilation` "
                                 f"(padding {self.padding}, output {_axes(self.out_size)})")
        return geom

    def input_gradient_as_forward(self) -> Geometry | None:
        """The geometry of ``grad_input`` computed as a forward convolution of ``gy``, or None.

        With unit stride, ``gx`` is the correlation of ``gy``, padded on each side by the dilated
        kernel's reach less the original padding, with the flipped, channel-transposed kernel
        (:func:`flip_kernel`). None when a stride is above 1 or a padding exceeds the reach
        (then ``gx`` would need cropping).
        """
        reach = tuple(s - 1 for s in self.span)
        if any(s != 1 for s in self.stride) or any(max(p) > r for p, r in zip(self.padding, reach)):
            return None
        return replace(self, c_in=self.c_out, c_out=self.c_in, in_size=self.out_size, out_size=self.in_size,
                       padding=tuple((r - a, r - b) for r, (a, b) in zip(reach, self.padding)))

    def stride_as_channels(self) -> Geometry | None:
        """A strided convolution of one group, undilated, as a stride-1 one (space to depth), or
        None where it has no stride, groups or a dilation.

        Along an axis of stride s, output ``o`` reads the padded input at ``s*o + k``; with
        ``k = s*t + r`` that is input phase r (``xp[r::s]``) at ``o + t``. So the phases, stacked as
        channels (``(r_1, .., r_d, c)``, the channel last), convolved at stride 1 and without padding
        by the kernel's taps split the same way (``w[..., r::s]``, zero past the kernel's end:
        ``ceil(k / s)`` taps an axis), give the same output. Each phase holds ``out + taps - 1``
        pixels along an axis, ``xp[s*j + r]`` at j (zero outside the input)."""
        if self.groups != 1 or any(d != 1 for d in self.dilation) or all(s == 1 for s in self.stride):
            return None
        taps = tuple(-(-k // s) for k, s in zip(self.kernel, self.stride))
        size = tuple(o + t - 1 for o, t in zip(self.out_size, taps))
        c = self.c_in * math.prod(self.stride)
        return replace(self, c_in=c, in_size=size, kernel=taps, stride=(1,) * self.ndim,
                       padding=((0, 0),) * self.ndim)

    def phases(self) -> list[tuple[tuple[int, ...], tuple[int, ...], Geometry | None]]:
        """A dilated convolution at unit stride as undilated ones on its phases.

        Along an axis of dilation d, the outputs ``o = p + d*q`` of phase ``p`` read only the
        inputs ``r + d*j`` of one phase ``r`` (``p - before`` modulo d), at ``j = q + k + s``
        (``s = (p - before - r) / d``): an undilated convolution of that phase, padded by ``-s``
        before (never negative) and by what makes its output the phase's. Per output phase that
        holds outputs (one index per axis, ``p[a] < dilation[a]``), ``(p, r, geom)``: ``geom`` that
        convolution, the batch unchanged; None where input phase ``r`` is empty along an axis (the
        outputs read only padding). Raises ``ValueError`` at a stride above 1."""
        if any(s != 1 for s in self.stride):
            raise ValueError(f"phases need unit stride, not {self.stride}")
        per_axis = []
        for i, o, k, d, (before, _) in zip(self.in_size, self.out_size, self.kernel, self.dilation, self.padding):
            axis = []
            for p in range(min(d, o)):
                r = (p - before) % d
                shift, outs, ins = (p - before - r) // d, len(range(p, o, d)), len(range(r, i, d))
                axis.append((p, r, ins, (-shift, outs + k - 1 - ins + shift), outs))
            per_axis.append(axis)
        out = []
        for combo in itertools.product(*per_axis):
            p, r, ins, pads, outs = zip(*combo)
            sub = replace(self, in_size=ins, padding=pads, dilation=(1,) * self.ndim, out_size=outs)
            out.append((p, r, sub if all(ins) else None))
        return out

    def stride_phases(self) -> list[StridePhase]:
        """The input gradient at a stride as stride-1 forward convolutions of ``gy``, one per phase.

        Along an axis of stride s, the inputs ``x[r::s]`` (phase r) receive gradient only from the
        taps ``k0, k0 + s, ...`` with ``k0 - before = r`` (mod s): those taps, flipped, over ``gy``
        padded by the reach of the ``m`` taps less ``(r + before - k0) // s`` (negative: cropped).
        Only the phases some tap reaches (``k0 < min(k, s)``) are listed; the others get no
        gradient. At unit stride: one phase, ``input_gradient_as_forward``'s convolution. Raises
        ``ValueError`` where an axis has both a stride and a dilation (its taps' phases would
        follow ``d*k0``: not needed, as no backend splits such a call)."""
        if any(s > 1 and d > 1 for s, d in zip(self.stride, self.dilation)):
            raise ValueError(f"stride phases need unit stride or dilation, not {self.stride} and {self.dilation}")
        per_axis = []
        for i, k, s, d, (before, _) in zip(self.in_size, self.kernel, self.stride, self.dilation, self.padding):
            axis = []
            for k0 in range(min(k, s)):
                r, m = (k0 - before) % s, len(range(k0, k, s))
                axis.append((k0, r, m, d * (m - 1) - (r + before - k0) // s, len(range(r, i, s))))
            per_axis.append(axis)
        return [StridePhase(*zip(*combo)) for combo in itertools.product(*per_axis)]


def _key(value):
    """A cache key for an argument that tells apart what validation tells apart: the type of every
    entry goes in with its value (``True == 1`` and ``2.0 == 2``, but neither is a valid stride)."""
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_key(v) for v in value))
    return (type(value), value)


_GEOMETRIES: dict = {}  # from_args' cache: a small call spends ~10 us building its geometry


def transposed_out_size(size: int, k: int, stride: int, pad: int, dil: int, output_padding: int) -> int:
    """Output length of a transposed convolution along one axis, given the *total* padding (cropping).

    ``(size - 1)*stride - pad + dil*(k-1) + 1 + output_padding``: the inverse of :func:`out_size`
    for the convolution whose input gradient it is; may be < 1 (the caller reports it).
    """
    return (size - 1) * stride - pad + dil * (k - 1) + 1 + output_padding


def transposed_geometry(z_shape, w_shape, *, stride=1, padding=0, output_padding=0, groups=1,
                        dilation=1) -> Geometry:
    """The convolution whose input gradient is the transposed convolution of ``z`` by ``w``.

    ``z_shape`` is the transposed convolution's batched channels-first input ``(n, c_in, *size)``
    and ``w_shape`` its weight ``(c_in, c_out // groups, *kernel)``. In the returned geometry,
    ``x_shape`` is the transposed convolution's output and ``w_shape`` its weight. ``y_shape`` is
    ``z_shape`` except when ``output_padding >= stride`` (allowed when dilation > stride): the
    convolution then has ``output_padding // stride`` more entries than ``z`` along that axis, and
    the caller pads ``z`` with zeros, which contribute nothing.
    """
    ndim = len(z_shape) - 2
    n, c_z, *size = (int(s) for s in z_shape)
    c_in, c_out_g, *kernel = (int(s) for s in w_shape)
    stride = per_axis(stride, "stride", ndim)
    dilation = per_axis(dilation, "dilation", ndim)
    out_pad = per_axis(output_padding, "output_padding", ndim, minimum=0)
    groups = check_groups(groups)
    if min(c_in, c_out_g, *kernel) < 1:
        raise ValueError(f"`weight` must have no empty dimension (C_in, C_out/groups, kernel); "
                         f"got shape {tuple(w_shape)}")
    if c_z != c_in:
        raise ValueError(f"`weight` expects {c_in} input channels (weight.shape[0]) but `input` "
                         f"has {c_z}")
    if c_in % groups:
        raise ValueError(f"`groups`={groups} must divide the input's {c_in} channels")
    if min(size) < 1:
        raise ValueError(f"`input` must have a non-empty image; got {_axes(size)}")
    if any(op >= max(s, d) for op, s, d in zip(out_pad, stride, dilation)):
        show = [t if ndim > 1 else t[0] for t in (out_pad, stride, dilation)]
        raise ValueError(f"`output_padding` must be smaller than stride or dilation in each "
                         f"dimension; got output_padding {show[0]}, stride {show[1]}, dilation {show[2]}")
    pads = side_padding(padding, ndim=ndim, strings=False)
    full = tuple(transposed_out_size(i, k, s, a + b, d, op)
                 for i, k, s, (a, b), d, op in zip(size, kernel, stride, pads, dilation, out_pad))
    if min(full) < 1:
        uncropped = tuple(f + a + b for f, (a, b) in zip(full, pads))
        raise ValueError(f"output would be empty ({_axes(full)}): `padding` {padding!r} crops more "
                         f"than the full {_axes(uncropped)} output of a {_axes(size)} input")
    geom = Geometry(n=n, c_in=c_out_g * groups, c_out=c_in, groups=groups, in_size=full, kernel=tuple(kernel),
                    stride=stride, padding=pads, dilation=dilation,
                    out_size=tuple(i + op // s for i, op, s in zip(size, out_pad, stride)))
    assert geom.out_size == tuple(out_size(f, k, s, a + b, d)
                                  for f, k, s, (a, b), d in zip(full, kernel, stride, pads, dilation))
    return geom.canonical()
