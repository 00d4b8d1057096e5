"""Chunk arithmetic and graph building for :mod:`fastconv.dask`; no array data is touched here.

Every task of a chunked convolution needs a *window* of an array: its own chunk plus a halo from
its neighbours, and zeros where the window passes the array's true ends (the convolution's
padding). :class:`Gatherer` finds the pieces of the chunks that make up each window and cuts the
halos where their chunks live, so that only halos travel between workers, never whole chunks.
:class:`Axis` holds one spatial axis's convolution arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product


def cut(chunk, srcs) -> list:
    """Copies of parts of a chunk: views would keep the whole chunk in memory until its readers ran."""
    return [chunk[src].copy() for src in srcs]


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


@dataclass(frozen=True)
class Window:
    """How a task assembles its window from the arrays it reads: which part of each (an index into
    a :func:`cut`, or None for a whole chunk), where each goes, and the window's shape."""

    picks: tuple
    places: tuple
    shape: tuple[int, ...]


class Gatherer:
    """Builds the windows of dask arrays for the tasks of one graph ``dsk``.

    Parts of chunks (halos) are cut where their chunk lives, by one task per chunk that returns
    every part any window wants from it (:func:`cut`): only those parts travel to other workers,
    never a whole neighbouring chunk, and a chunk costs one extra task, not one per neighbour.
    Call :meth:`finish` once every window is gathered.
    """

    def __init__(self, dsk: dict, name: str):
        self.dsk = dsk
        self.name = name  # the cutting tasks' key prefix
        self._parts: dict = {}  # chunk key -> {part's bounds: index in its cut}, in request order
        self._srcs: dict = {}  # chunk key -> the parts' slices, in the same order
        self._names: dict = {}  # an array's name -> the name of its cuts (one gatherer may serve two arrays)

    def gather(self, arr, window) -> tuple[list, Window]:
        """The keys a task reads for ``window`` of ``arr`` (one ``(lo, hi)`` per axis, in the array's
        coordinates, possibly past its ends), and how it assembles them.

        The window's positions outside the array are covered by no piece: the task fills them with
        zeros (the padding).
        """
        per_axis = [_axis_pieces(edges(chunks), lo, hi) for chunks, (lo, hi) in zip(arr.chunks, window)]
        keys, picks, places = [], [], []
        for combo in product(*per_axis):
            key, pick = (arr.name, *(p.index for p in combo)), None
            if not all(p.full for p in combo):
                src = tuple(p.src for p in combo)
                parts = self._parts.setdefault(key, {})
                ident = tuple((s.start, s.stop) for s in src)  # slices are unhashable before Python 3.12
                if ident not in parts:
                    parts[ident] = len(parts)
                    self._srcs.setdefault(key, []).append(src)
                key, pick = self._cut_key(key), parts[ident]
            keys.append(key)
            picks.append(pick)
            places.append(tuple(p.dst for p in combo))
        return keys, Window(tuple(picks), tuple(places), tuple(hi - lo for lo, hi in window))

    def finish(self) -> None:
        """Add the cutting tasks to the graph."""
        for key, srcs in self._srcs.items():
            self.dsk[self._cut_key(key)] = (cut, key, srcs)

    def _cut_key(self, chunk_key) -> tuple:
        name = self._names.setdefault(chunk_key[0], f"{self.name}-{len(self._names)}")
        return (name, *chunk_key[1:])
