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
        return dict(stride=self.stride, padding=self.pad, dilation=self.dilation, groups=self.groups)

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

SUITES: dict[str, tuple[Case, ...]] = {"default": BENCH, "full": BENCH}


def by_name(name: str) -> Case:
    """The case called ``name`` in any suite."""
    for suite in SUITES.values():
        for case in suite:
            if case.name == name:
                return case
    raise KeyError(name)
