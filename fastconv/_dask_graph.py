"""Chunk arithmetic and graph building for :mod:`fastconv.dask`; no array data is touched here.

Every task of a chunked convolution needs a *window* of an array: its own chunk plus a halo from
its neighbours, and zeros where the window passes the array's true ends (the convolution's
padding). :func:`gather` finds the pieces of the chunks that make up a window and adds a small
slicing task for every partial chunk, so that only the halo travels to the task, not the whole
neighbouring chunk. :class:`Axis` holds one spatial axis's convolution arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product


def cut(chunk, src):
    """A copy of part of a chunk: a view would keep the whole chunk in memory until its reader ran."""
    return chunk[src].copy()


def edges(chunks) -> list[int]:
    """Chunk sizes ``(3, 4, 2)`` -> boundaries ``[0, 3, 7, 9]``."""
    out = [0]
    for size in chunks:
        out.append(out[-1] + int(size))
    return out


def spans(bounds) -> list[tuple[int, int]]:
    """Boundaries ``[0, 3, 7]`` -> ranges ``[(0, 3), (3, 7)]``."""
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a convolution: input ``size``, kernel ``k``, ``stride``, dilation ``dil``,
    zero padding ``before``/``after``, the output length ``out``, and where the caller's input
    starts (``origin``: not 0 when the array is already padded by a padding mode).

    Output ``o`` reads the padded input ``[o*stride, o*stride + span)``, which is
    ``[o*stride - before, ...)`` in the array's own coordinates.
    """

    size: int
    k: int
    stride: int
    dil: int
    before: int
    after: int
    out: int
    origin: int = 0

    @property
    def span(self) -> int:
        """How many input positions one output's taps reach across (the dilated kernel)."""
        return self.dil * (self.k - 1) + 1

    def out_edges(self, in_bounds) -> list[int]:
        """Output chunk boundaries for input chunk boundaries ``in_bounds``.

        Output ``o`` goes with the input chunk that holds the caller's input position ``o*stride``
        (for "same" padding at stride 1 the output chunks are the input's). Input chunks shorter
        than the stride can own no output and merge into their neighbour's output chunk; no input
        is rechunked.
        """
        inner = (min(max(math.ceil((c - self.origin) / self.stride), 0), self.out) for c in in_bounds[1:-1])
        return sorted({0, self.out, *inner})

    def window(self, o0: int, o1: int) -> tuple[int, int]:
        """The input range (own coordinates, may pass either end: padding) read by outputs ``[o0, o1)``."""
        return o0 * self.stride - self.before, (o1 - 1) * self.stride + self.span - self.before

    def readers(self, p0: int, p1: int) -> tuple[int, int]:
        """The outputs ``[olo, ohi)`` whose span covers some input position in ``[p0, p1)``; empty when
        ``olo >= ohi`` (positions between strided windows, or padding the outputs never reach)."""
        q0, q1 = p0 + self.before, p1 + self.before  # padded coordinates
        olo = max(0, -((self.span - 1 - q0) // self.stride))  # ceil((q0 - span + 1) / stride)
        ohi = min(self.out, (q1 - 1) // self.stride + 1)
        if ohi - olo == 1 and self.stride > 1 and self.out > 1:
            # fastconv computes a single output with stride 1 (the stride no longer matters), and
            # numba's input gradient then groups its terms otherwise than the whole array's strided
            # pass: one more output, which adds no term here, keeps the chunk on the same path.
            olo, ohi = (olo, ohi + 1) if ohi < self.out else (olo - 1, ohi)
        return olo, ohi


@dataclass(frozen=True)
class _Piece:
    index: int  # the chunk along this axis
    src: slice  # the part of that chunk in the window
    dst: slice  # where it goes in the window
    full: bool  # the whole chunk


def _axis_pieces(bounds, lo: int, hi: int) -> list[_Piece]:
    """The chunks (boundaries ``bounds``) overlapping ``[lo, hi)``, clipped to the array."""
    a, z = max(lo, 0), min(hi, bounds[-1])
    pieces = []
    for i, (c0, c1) in enumerate(spans(bounds)):
        s0, s1 = max(a, c0), min(z, c1)
        if s0 < s1:
            pieces.append(_Piece(i, slice(s0 - c0, s1 - c0), slice(s0 - lo, s1 - lo), (s0, s1) == (c0, c1)))
    return pieces


class Gatherer:
    """Adds to one graph ``dsk`` the slicing tasks that windows of dask arrays need, each once."""

    def __init__(self, dsk: dict, name: str):
        self.dsk = dsk
        self.name = name  # the slicing tasks' key prefix
        self._slices: dict = {}

    def gather(self, arr, window) -> tuple[list, list[tuple[slice, ...]]]:
        """Keys of the pieces of ``arr`` that cover ``window`` (one ``(lo, hi)`` per axis, in the array's
        coordinates, possibly past its ends) and where each piece goes in the window.

        The window's positions outside the array are covered by no piece: the task fills them with
        zeros. A piece that is a whole chunk is that chunk's key; a part of a chunk is a new task
        slicing it, run where the chunk lives.
        """
        per_axis = [_axis_pieces(edges(chunks), lo, hi) for chunks, (lo, hi) in zip(arr.chunks, window)]
        keys, places = [], []
        for combo in product(*per_axis):
            key = (arr.name, *(p.index for p in combo))
            if not all(p.full for p in combo):
                src = tuple(p.src for p in combo)
                ident = (key, tuple((s.start, s.stop) for s in src))  # slices are unhashable before 3.12
                cached = self._slices.get(ident)
                if cached is None:
                    cached = self._slices[ident] = (self.name, len(self._slices))
                    self.dsk[cached] = (cut, key, src)
                key = cached
            keys.append(key)
            places.append(tuple(p.dst for p in combo))
        return keys, places
