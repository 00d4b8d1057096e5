"""Named problem sizes, defined once and shared by ``bench/``, the CLI and the tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Geometry


@dataclass(frozen=True)
class Case:
    """One convolution problem in batched NCHW: input ``(n, c_in, ih, iw)``, weight
    ``(c_out, c_in // groups, k, k)``."""

    name: str
    n: int
    c_in: int
    ih: int
    iw: int
    c_out: int
    k: int
    stride: int = 1
    pad: int = 0
    groups: int = 1
    dilation: int = 1

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c_in, self.ih, self.iw)

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.k, self.k)

    @property
    def kwargs(self) -> dict:
        """Hyper-parameters as keyword arguments of :func:`fastconv.conv2d` (and torch's)."""
        return {"stride": self.stride, "padding": self.pad, "dilation": self.dilation, "groups": self.groups}

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


# The performance suite of the im2col and numba issues (N, C_in, H=W, C_out, k, stride, pad, groups).
BENCH: tuple[Case, ...] = (
    Case("r56-c64-k3", 32, 64, 56, 56, 64, 3, 1, 1),
    Case("r28-c128-k3", 32, 128, 28, 28, 128, 3, 1, 1),
    Case("r14-c256-k3", 32, 256, 14, 14, 256, 3, 1, 1),
    Case("r7-c512-k3", 32, 512, 7, 7, 512, 3, 1, 1),
    Case("stem-r224-k7s2", 8, 3, 224, 224, 64, 7, 2, 3),
    Case("r14-c256-1x1-c1024", 32, 256, 14, 14, 1024, 1, 1, 0),
    Case("dw-r28-c128-k3", 32, 128, 28, 28, 128, 3, 1, 1, groups=128),
    Case("mnist-r28-k5", 64, 1, 28, 28, 32, 5, 1, 0),
    Case("single-r32-k3", 1, 3, 32, 32, 8, 3, 1, 1),
)

# The CI gate's suite: each code path of BENCH (3x3, 7x7 stride 2, 1x1, depthwise, one input
# channel, batch 1) at a quarter of the batch, so that interleaved repeats of every backend and
# torch, forward and backward, fit in a few minutes on 2 shared cores.
QUICK: tuple[Case, ...] = (
    Case("q-r28-c128-k3", 8, 128, 28, 28, 128, 3, 1, 1),
    Case("q-r7-c512-k3", 8, 512, 7, 7, 512, 3, 1, 1),
    Case("q-stem-r224-k7s2", 2, 3, 224, 224, 64, 7, 2, 3),
    Case("q-r14-c256-1x1-c1024", 8, 256, 14, 14, 1024, 1, 1, 0),
    Case("q-dw-r28-c128-k3", 8, 128, 28, 28, 128, 3, 1, 1, groups=128),
    Case("mnist-r28-k5", 64, 1, 28, 28, 32, 5, 1, 0),
    Case("single-r32-k3", 1, 3, 32, 32, 8, 3, 1, 1),
)

# Shapes outside BENCH that the "auto" rule must also get right: strided and dilated 3x3, a
# grouped (not depthwise) convolution, a small batch of a deep layer, and a wide-kernel layer.
EXTRA: tuple[Case, ...] = (
    Case("r56-c64-k3s2", 32, 64, 56, 56, 128, 3, 2, 1),
    Case("r28-c128-k3d2", 32, 128, 28, 28, 128, 3, 1, 2, dilation=2),
    Case("g4-r28-c128-k3", 32, 128, 28, 28, 128, 3, 1, 1, groups=4),
    Case("n1-r14-c256-k3", 1, 256, 14, 14, 256, 3, 1, 1),
    Case("dw-r56-c32-k5", 16, 32, 56, 56, 32, 5, 1, 2, groups=32),
)

# Tiny shapes for the CLI's own tests and smoke runs: a second each, whatever the backend.
TINY: tuple[Case, ...] = (
    Case("tiny-k3", 2, 3, 8, 8, 4, 3, 1, 1),
    Case("tiny-dw-k3s2", 2, 4, 9, 9, 4, 3, 2, 1, groups=4),
)

SUITES: dict[str, tuple[Case, ...]] = {"default": BENCH, "quick": QUICK, "full": BENCH + EXTRA, "tiny": TINY}

# The reference backend loops over output pixels in Python: timed only up to this many
# multiply-accumulates (single-r32-k3 and the tiny shapes), where a call takes milliseconds.
REFERENCE_MAX_MACS = 1_000_000


def name(case: Case) -> str:
    """The case's name, for test ids and table titles."""
    return case.name


def by_name(name: str) -> Case:
    """The case called ``name`` in any suite."""
    for suite in SUITES.values():
        for case in suite:
            if case.name == name:
                return case
    raise KeyError(name)


SHAPE_FIELDS = ("N", "C", "H", "W", "K", "k", "stride", "pad", "groups", "dilation")
SHAPE_FORMAT = "N,C,H,W,K,k,stride,pad[,groups[,dilation]]"
_FIELD_MEANING = {"N": "batch size", "C": "input channels", "H": "input height", "W": "input width",
                  "K": "output channels", "k": "kernel size", "stride": "stride", "pad": "padding",
                  "groups": "groups", "dilation": "dilation"}


def parse_shape(text: str) -> Case:
    """``"N,C,H,W,K,k,stride,pad[,groups[,dilation]]"`` -> a :class:`Case`; ``ValueError`` naming
    the wrong field.

    >>> parse_shape("8,64,56,56,64,3,1,1").name
    'n8-c64-56x56-k64x3-s1-p1'
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not 8 <= len(parts) <= 10:
        raise ValueError(f"shape {text!r} has {len(parts)} fields; expected 8 to 10: {SHAPE_FORMAT}")
    values = {}
    for field, part in zip(SHAPE_FIELDS, parts):
        minimum = 0 if field == "pad" else 1
        try:
            value = int(part)
        except ValueError:
            value = None
        if value is None or value < minimum:
            kind = "an int >= 0" if minimum == 0 else "a positive int"
            raise ValueError(f"shape {text!r}: field {field} ({_FIELD_MEANING[field]}) must be {kind}; "
                             f"got {part!r} (format {SHAPE_FORMAT})")
        values[field] = value
    n, c, h, w, k_out, k = (values[f] for f in SHAPE_FIELDS[:6])
    stride, pad = values["stride"], values["pad"]
    groups, dilation = values.get("groups", 1), values.get("dilation", 1)
    extra = (f"-g{groups}" if groups != 1 else "") + (f"-d{dilation}" if dilation != 1 else "")
    case = Case(f"n{n}-c{c}-{h}x{w}-k{k_out}x{k}-s{stride}-p{pad}{extra}", n, c, h, w, k_out, k,
                stride, pad, groups, dilation)
    try:
        Geometry.from_args(case.x_shape, case.w_shape, **case.kwargs)
    except ValueError as exc:  # groups not dividing the channels, a kernel larger than the input...
        raise ValueError(f"shape {text!r}: {str(exc).removeprefix('conv2d: ')}") from None
    return case
