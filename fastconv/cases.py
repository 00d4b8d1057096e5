"""Named problem sizes, defined once and shared by ``bench/``, the CLI, the gate and the tests, and
the ``--shape`` grammar that makes one from text.

A :class:`Case` is a convolution over 1, 2 or 3 spatial axes, batched and channels-first: input
``(n, c_in, *size)``, weight ``(c_out, c_in // groups, *kernel)``, with a stride, a
``(before, after)`` padding and a dilation per axis. The shape arithmetic stays in
:mod:`fastconv.geometry`; a case only names the arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from .geometry import Geometry, same_padding

FUNCTIONS = {1: "conv1d", 2: "conv2d", 3: "conv3d"}  # the public function of each number of axes


@dataclass(frozen=True)
class Case:
    """One convolution problem; :func:`case` builds one from ints or per-axis tuples."""

    name: str
    n: int
    c_in: int
    size: tuple[int, ...]  # input spatial size, one entry per axis
    c_out: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]  # (before, after) per axis
    groups: int = 1
    dilation: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def function(self) -> str:
        """``"conv1d"``, ``"conv2d"`` or ``"conv3d"``: the fastconv (and torch) function of the case."""
        return FUNCTIONS[self.ndim]

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.n, self.c_in, *self.size)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.c_out, self.c_in // self.groups, *self.kernel)

    @property
    def symmetric(self) -> bool:
        return all(a == b for a, b in self.padding)

    @property
    def kwargs(self) -> dict:
        """Hyper-parameters as keyword arguments of fastconv's functions (and torch's, when the
        padding is the same on both sides of each axis: see :attr:`symmetric`)."""
        padding = tuple(a for a, _ in self.padding) if self.symmetric else self.padding
        return {"stride": self.stride, "padding": padding, "dilation": self.dilation, "groups": self.groups}

    @property
    def geometry(self) -> Geometry:
        return Geometry.from_args(self.x_shape, self.w_shape, **self.kwargs)

    @property
    def macs(self) -> int:
        return self.geometry.macs

    def make_inputs(self, dtype=np.float32, seed: int = 0):
        """Random ``(x, w, b)`` of this case's shapes, reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(dtype)
        w = rng.standard_normal(self.w_shape).astype(dtype)
        b = rng.standard_normal(self.c_out).astype(dtype)
        return x, w, b


def _per_axis(value, ndim: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * ndim


def case(name: str, n: int, c_in: int, size, c_out: int, kernel, stride=1, pad=0, groups: int = 1,
         dilation=1) -> Case:
    """A :class:`Case` from ints (the same on every axis) or per-axis tuples; ``pad`` may also be
    ``(before, after)`` pairs per axis. ``size`` (a tuple) sets the number of axes; an int ``size``
    means a square 2-D image."""
    size = _per_axis(size, 2)
    ndim = len(size)
    pads = [p if isinstance(p, (tuple, list)) else (p, p) for p in _per_axis(pad, ndim)]
    return Case(name, n, c_in, size, c_out, _per_axis(kernel, ndim), _per_axis(stride, ndim),
                tuple((int(a), int(b)) for a, b in pads), groups, _per_axis(dilation, ndim))


# The performance suite of the im2col and numba issues (N, C_in, H=W, C_out, k, stride, pad, groups).
BENCH: tuple[Case, ...] = (
    case("r56-c64-k3", 32, 64, 56, 64, 3, 1, 1),
    case("r28-c128-k3", 32, 128, 28, 128, 3, 1, 1),
    case("r14-c256-k3", 32, 256, 14, 256, 3, 1, 1),
    case("r7-c512-k3", 32, 512, 7, 512, 3, 1, 1),
    case("stem-r224-k7s2", 8, 3, 224, 64, 7, 2, 3),
    case("r14-c256-1x1-c1024", 32, 256, 14, 1024, 1, 1, 0),
    case("dw-r28-c128-k3", 32, 128, 28, 128, 3, 1, 1, groups=128),
    case("mnist-r28-k5", 64, 1, 28, 32, 5, 1, 0),
    case("single-r32-k3", 1, 3, 32, 8, 3, 1, 1),
)

# The CI gate's suite: each code path of BENCH (3x3, 7x7 stride 2, 1x1, depthwise, one input
# channel, batch 1) at a quarter of the batch, so that interleaved repeats of every backend and
# torch, forward and backward, fit in a few minutes on 2 shared cores.
QUICK: tuple[Case, ...] = (
    case("q-r28-c128-k3", 8, 128, 28, 128, 3, 1, 1),
    case("q-r7-c512-k3", 8, 512, 7, 512, 3, 1, 1),
    case("q-stem-r224-k7s2", 2, 3, 224, 64, 7, 2, 3),
    case("q-r14-c256-1x1-c1024", 8, 256, 14, 1024, 1, 1, 0),
    case("q-dw-r28-c128-k3", 8, 128, 28, 128, 3, 1, 1, groups=128),
    case("mnist-r28-k5", 64, 1, 28, 32, 5, 1, 0),
    case("single-r32-k3", 1, 3, 32, 8, 3, 1, 1),
)

# Shapes outside BENCH that the "auto" rule must also get right: strided and dilated 3x3, a
# grouped (not depthwise) convolution, a small batch of a deep layer, and a wide-kernel layer.
EXTRA: tuple[Case, ...] = (
    case("r56-c64-k3s2", 32, 64, 56, 128, 3, 2, 1),
    case("r28-c128-k3d2", 32, 128, 28, 128, 3, 1, 2, dilation=2),
    case("g4-r28-c128-k3", 32, 128, 28, 128, 3, 1, 1, groups=4),
    case("n1-r14-c256-k3", 1, 256, 14, 256, 3, 1, 1),
    case("dw-r56-c32-k5", 16, 32, 56, 32, 5, 1, 2, groups=32),
)

# Signals and time series (issue 11): a 9-tap filter bank over a 1 s, 16 kHz signal, and a dilated
# temporal-convolution (TCN/WaveNet) layer, padded to keep its length.
ONE_D: tuple[Case, ...] = (
    case("l16000-c64-k9", 16, 64, (16000,), 64, 9, 1, 4),
    case("tcn-l4096-c128-k3d8", 16, 128, (4096,), 128, 3, 1, 8, dilation=8),
)

# Video and volumes: a full 3x3x3 layer, the (2+1)-D pair that factorises it (R(2+1)D), and a
# depthwise 3x3x3 one (X3D, MoViNet).
THREE_D: tuple[Case, ...] = (
    case("v16x56-c64-k3", 2, 64, (16, 56, 56), 64, 3, 1, 1),
    case("v16x56-c64-k1x3x3", 2, 64, (16, 56, 56), 64, (1, 3, 3), 1, (0, 1, 1)),
    case("v16x56-c64-k3x1x1", 2, 64, (16, 56, 56), 64, (3, 1, 1), 1, (1, 0, 0)),
    case("v16x56-dw-c64-k3", 2, 64, (16, 56, 56), 64, 3, 1, 1, groups=64),  # X3D's depthwise 3x3x3
)

# Tiny shapes for the CLI's own tests and smoke runs: a second each, whatever the backend.
TINY: tuple[Case, ...] = (
    case("tiny-k3", 2, 3, 8, 4, 3, 1, 1),
    case("tiny-dw-k3s2", 2, 4, 9, 4, 3, 2, 1, groups=4),
)
TINY_1D: tuple[Case, ...] = (
    case("tiny-l32-k3", 2, 3, (32,), 4, 3, 1, 1),
    case("tiny-l32-k3d2-causal", 2, 4, (32,), 4, 3, 1, ((4, 0),), dilation=2),
)
TINY_3D: tuple[Case, ...] = (
    case("tiny-v4x6-k3", 1, 2, (4, 6, 6), 3, 3, 1, 1),
    case("tiny-v4x6-k1x3x3s2", 1, 2, (4, 6, 6), 2, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
)

# The shapes that placed the "auto" rule's channel line (fastconv/backends/_auto_rules.py), none of
# them in the suites above: 1-D pointwise and strided layers, 7x1 and 1x7 kernels, ResNeXt's 32
# groups, 3x3 layers over 7x7 and 14x14 images with 32 to 256 channels, 1x1 kernels over 7x7 to
# 28x28 images with 64 to 512 channels, ResNet's strided layers and 3-D 3x3x3 and 1x1x1 ones; and
# 3x3 layers over batches of few tiles (the few-tiles row: 16 and 36 tiles; 50 and 64 past it). In
# the --shape grammar, parsed below (after the grammar's functions).
RULES_SHAPES = (
    "n=16 c=64 size=4096 k=64 kernel=1", "n=16 c=64 size=8000 k=128 kernel=5 stride=2 pad=2",
    "n=32 c=128 size=17x17 k=128 kernel=7x1 pad=3x0", "n=32 c=128 size=17x17 k=128 kernel=1x7 pad=0x3",
    "n=32 c=256 size=14x14 k=256 kernel=3x3 pad=1 groups=32",
    "n=32 c=512 size=14x14 k=512 kernel=3x3 pad=1 groups=32", "n=8 c=32 size=112x112 k=64 kernel=5x5 pad=2",
    "n=64 c=3 size=32x32 k=64 kernel=3x3 pad=1",
    "n=32 c=32 size=7x7 k=32 kernel=3x3 pad=1", "n=32 c=64 size=7x7 k=64 kernel=3x3 pad=1",
    "n=32 c=128 size=7x7 k=128 kernel=3x3 pad=1", "n=32 c=256 size=7x7 k=256 kernel=3x3 pad=1",
    "n=32 c=64 size=14x14 k=64 kernel=3x3 pad=1", "n=32 c=96 size=14x14 k=96 kernel=3x3 pad=1",
    "n=32 c=128 size=14x14 k=128 kernel=3x3 pad=1",
    "n=32 c=64 size=14x14 k=64 kernel=1x1", "n=32 c=128 size=14x14 k=512 kernel=1x1",
    "n=32 c=512 size=7x7 k=128 kernel=1x1", "n=32 c=256 size=20x20 k=256 kernel=1x1",
    "n=32 c=64 size=28x28 k=256 kernel=1x1", "n=32 c=256 size=28x28 k=256 kernel=1x1",
    "n=8 c=512 size=28x28 k=512 kernel=1x1",
    "n=32 c=64 size=28x28 k=128 kernel=3x3 stride=2 pad=1", "n=32 c=128 size=28x28 k=256 kernel=3x3 stride=2 pad=1",
    "n=32 c=256 size=14x14 k=512 kernel=3x3 stride=2 pad=1", "n=32 c=256 size=28x28 k=512 kernel=1x1 stride=2",
    "n=2 c=64 size=16x28x28 k=128 kernel=3x3x3 stride=2 pad=1", "n=2 c=128 size=8x14x14 k=128 kernel=3x3x3 pad=1",
    "n=2 c=64 size=16x28x28 k=64 kernel=1x1x1",
    "n=1 c=512 size=7x7 k=512 kernel=3x3 pad=1", "n=1 c=384 size=12x12 k=384 kernel=3x3 pad=1",
    "n=2 c=256 size=10x10 k=256 kernel=3x3 pad=1", "n=4 c=384 size=7x7 k=384 kernel=3x3 pad=1",
)

SUITES: dict[str, tuple[Case, ...]] = {
    "default": BENCH, "quick": QUICK, "full": BENCH + EXTRA, "1d": ONE_D, "3d": THREE_D,
    "tiny": TINY, "tiny1d": TINY_1D, "tiny3d": TINY_3D,
}  # and "rules", below

# The reference backend loops over output pixels in Python: timed only up to this many
# multiply-accumulates (single-r32-k3 and the tiny shapes), where a call takes milliseconds.
REFERENCE_MAX_MACS = 1_000_000


def name(case: Case) -> str:
    """The case's name, for test ids and table titles."""
    return case.name


def by_name(name: str) -> Case:
    """The case called ``name`` in any suite."""
    for suite in SUITES.values():
        for c in suite:
            if c.name == name:
                return c
    raise KeyError(name)


def describe(c: Case) -> str:
    """One line for a table's title: shapes, hyper-parameters and the forward pass's FLOPs."""
    pads = {a for pair in c.padding for a in pair}
    pad = str(pads.pop()) if len(pads) == 1 else _pad_text(c.padding)
    extra = (f" g{c.groups}" if c.groups != 1 else "") + (f" d{_compact(c.dilation)}" if set(c.dilation) != {1}
                                                          else "")
    return (f"x({','.join(map(str, c.x_shape))}) -> {c.c_out}ch k{_axes(c.kernel)} s{_compact(c.stride)} "
            f"p{pad}{extra} · {2 * c.macs / 1e9:.3g} GFLOP fwd")


# -- the --shape grammar -------------------------------------------------------------------------

SHAPE_FIELDS = ("N", "C", "H", "W", "K", "k", "stride", "pad", "groups", "dilation")
LEGACY_FORMAT = "N,C,H,W,K,k,stride,pad[,groups[,dilation]]"
KEYED_FORMAT = "n=N c=C size=AxB.. k=K kernel=AxB.. [stride=S] [pad=P] [groups=G] [dil=D]"
SHAPE_FORMAT = f"'{KEYED_FORMAT}' or {LEGACY_FORMAT}"
SHAPE_HELP = f"""\
A shape is either key=value fields separated by spaces or commas (any number of spatial axes):
  {KEYED_FORMAT}
    size    input size per axis: 16000 (1-D), 56x56 (2-D), 16x56x56 (3-D)
    kernel  per axis, or one int for every axis: 3x3, 1x3x3, 9
    stride, dil  one int for every axis, or one per axis: 2, 1x2
    pad     one int (every side), one per axis (1x0), before:after per axis (2:0 or 0:1x1:2),
            same or valid
  e.g. "n=16 c=128 size=4096 k=128 kernel=3 dil=8 pad=8", "n=2 c=64 size=16x56x56 k=64 kernel=1x3x3 pad=0x1x1"
or the 2-D positional form {LEGACY_FORMAT} (square kernel), e.g. 8,64,56,56,64,3,1,1."""
_FIELD_MEANING = {"N": "batch size", "C": "input channels", "H": "input height", "W": "input width",
                  "K": "output channels", "k": "kernel size", "stride": "stride", "pad": "padding",
                  "groups": "groups", "dilation": "dilation"}
_KEYS = {"n": "n", "c": "c", "size": "size", "k": "k", "kernel": "kernel", "stride": "stride", "s": "stride",
         "pad": "pad", "padding": "pad", "p": "pad", "groups": "groups", "g": "groups", "dil": "dil",
         "dilation": "dil", "d": "dil"}


def _axes(values) -> str:
    return "x".join(map(str, values))


def _compact(values) -> str:
    """``(2, 2)`` -> ``2``, ``(1, 2)`` -> ``1x2``: one figure when every axis has the same."""
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else _axes(values)


def _pad_text(padding) -> str:
    if all(a == b for a, b in padding):
        return _axes(a for a, _ in padding)
    return "x".join(f"{a}:{b}" for a, b in padding)


def shape_name(c: Case) -> str:
    """The name a parsed shape gets, e.g. ``n8-c64-56x56-k64-3x3-s1-p1``."""
    extra = (f"-g{c.groups}" if c.groups != 1 else "") + (f"-d{_compact(c.dilation)}" if set(c.dilation) != {1}
                                                          else "")
    pads = {a for pair in c.padding for a in pair}
    pad = str(pads.pop()) if len(pads) == 1 else _pad_text(c.padding)
    return (f"n{c.n}-c{c.c_in}-{_axes(c.size)}-k{c.c_out}-{_axes(c.kernel)}-s{_compact(c.stride)}-p{pad}"
            f"{extra}")


def parse_shape(text: str, name: str | None = None) -> Case:
    """A :class:`Case` from the ``--shape`` grammar (:data:`SHAPE_HELP`); ``ValueError`` naming the
    wrong field. ``name`` names the case (default: :func:`shape_name`).

    >>> parse_shape("8,64,56,56,64,3,1,1").name
    'n8-c64-56x56-k64-3x3-s1-p1'
    >>> parse_shape("n=16 c=128 size=4096 k=128 kernel=3 dil=8 pad=8").name
    'n16-c128-4096-k128-3-s1-p8-d8'
    """
    text = str(text)
    parsed = _parse_keyed(text) if "=" in text else _parse_legacy(text)
    try:
        parsed.geometry  # noqa: B018  (validates: groups dividing channels, a kernel larger than the input...)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"shape {text!r}: {str(exc).split(': ', 1)[-1]}") from None
    return replace(parsed, name=name or shape_name(parsed))


def _int(text: str, what: str, minimum: int, shape: str, fmt: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "an int >= 0" if minimum == 0 else "a positive int"
        raise ValueError(f"shape {shape!r}: field {what} must be {kind}; got {text!r} (format {fmt})")
    return value


def _parse_legacy(text: str) -> Case:
    parts = [p.strip() for p in text.split(",")]
    if not 8 <= len(parts) <= 10:
        raise ValueError(f"shape {text!r} has {len(parts)} fields; expected 8 to 10: {LEGACY_FORMAT}, "
                         f"or key=value fields: {KEYED_FORMAT}")
    v = {f: _int(p, f"{f} ({_FIELD_MEANING[f]})", 0 if f == "pad" else 1, text, LEGACY_FORMAT)
         for f, p in zip(SHAPE_FIELDS, parts)}
    return case("", v["N"], v["C"], (v["H"], v["W"]), v["K"], v["k"], v["stride"], v["pad"],
                v.get("groups", 1), v.get("dilation", 1))


def _parse_keyed(text: str) -> Case:
    fields: dict[str, str] = {}
    for item in filter(None, re.split(r"[\s,]+", text.strip())):
        key, sep, value = item.partition("=")
        canonical = _KEYS.get(key.strip().lower())
        if not sep or canonical is None:
            raise ValueError(f"shape {text!r}: unknown field {item!r}; expected {KEYED_FORMAT}")
        if canonical in fields:
            raise ValueError(f"shape {text!r}: field {key!r} given twice")
        fields[canonical] = value.strip()
    missing = [k for k in ("n", "c", "size", "k", "kernel") if k not in fields]
    if missing:
        raise ValueError(f"shape {text!r}: missing {', '.join(missing)} (format {KEYED_FORMAT})")

    def axes(key: str, ndim: int | None, minimum: int = 1) -> tuple[int, ...]:
        values = tuple(_int(v, key, minimum, text, KEYED_FORMAT) for v in fields[key].lower().split("x"))
        if ndim is not None and len(values) == 1:
            return values * ndim
        if ndim is not None and len(values) != ndim:
            raise ValueError(f"shape {text!r}: field {key} has {len(values)} axes but size has {ndim}")
        return values

    size = axes("size", None)
    if len(size) > 3:
        raise ValueError(f"shape {text!r}: field size has {len(size)} axes; fastconv convolves 1, 2 or 3")
    ndim = len(size)
    kernel = axes("kernel", ndim)
    stride = axes("stride", ndim) if "stride" in fields else (1,) * ndim
    dilation = axes("dil", ndim) if "dil" in fields else (1,) * ndim
    pad = _parse_pad(fields.get("pad", "0"), size, kernel, stride, dilation, text)
    return case("", _int(fields["n"], "n", 1, text, KEYED_FORMAT), _int(fields["c"], "c", 1, text, KEYED_FORMAT),
                size, _int(fields["k"], "k", 1, text, KEYED_FORMAT), kernel, stride, pad,
                _int(fields.get("groups", "1"), "groups", 1, text, KEYED_FORMAT), dilation)


def _parse_pad(value: str, size, kernel, stride, dilation, text: str):
    """``same``/``valid``, one int, one per axis, or ``before:after`` per axis -> pairs per axis."""
    ndim = len(size)
    if value.lower() == "valid":
        return ((0, 0),) * ndim
    if value.lower() == "same":
        return tuple(same_padding(*args) for args in zip(size, kernel, stride, dilation))
    items = value.lower().split("x")
    if len(items) == 1:
        items = items * ndim
    if len(items) != ndim:
        raise ValueError(f"shape {text!r}: field pad has {len(items)} axes but size has {ndim}")
    pairs = []
    for item in items:
        before, sep, after = item.partition(":")
        a = _int(before, "pad", 0, text, KEYED_FORMAT)
        pairs.append((a, _int(after, "pad", 0, text, KEYED_FORMAT) if sep else a))
    return tuple(pairs)


SUITES["rules"] = tuple(parse_shape(text) for text in RULES_SHAPES)
