"""Padding modes other than zeros on dask arrays: :class:`fastconv._padmodes.Padding`'s gather and
its adjoint (the fold of the border's gradient), lazily, in the in-memory functions' order of
additions so that the input gradient stays bit-equal to fastconv's."""

from __future__ import annotations

import itertools

import dask.array as da


def _along(axis: int, index) -> tuple:
    """An index tuple that applies ``index`` to spatial axis ``axis`` of a batched channels-first array."""
    return (slice(None),) * (axis + 2) + (index,)


def apply(x, pad):
    """``x`` (N, C, *size) padded through ``pad``'s index maps. Each axis's border joins the chunk at
    that end, so the padded array's inner chunk boundaries are the input's, shifted by the border."""
    for axis, (index, before) in enumerate(zip(pad.index, pad.before)):
        chunks = list(x.chunks[axis + 2])
        after = len(index) - before - sum(chunks)
        x = x[_along(axis, index)]
        chunks[0] += before
        chunks[-1] += after
        x = x.rechunk({axis + 2: tuple(chunks)})
    return x


def fold(gxp, pad, chunks):
    """The adjoint of :func:`apply`, rechunked to ``chunks``: each padded position's gradient added to
    the input position it copies, axis by axis and border position by border position, as
    ``Padding.fold`` adds them."""
    for axis, (src, before, size) in enumerate(zip(pad.index, pad.before, pad.in_size)):
        interior = gxp[_along(axis, slice(before, before + size))]
        sources: dict[int, list[int]] = {}  # input position -> the border positions that copy it, in order
        for p in itertools.chain(range(before), range(before + size, len(src))):
            sources.setdefault(int(src[p]), []).append(p)
        pieces, start = [], 0
        for i in sorted(sources):
            row = interior[_along(axis, slice(i, i + 1))]
            for p in sources[i]:
                row = row + gxp[_along(axis, slice(p, p + 1))]
            pieces += [interior[_along(axis, slice(start, i))], row]
            start = i + 1
        pieces.append(interior[_along(axis, slice(start, size))])
        gxp = da.concatenate(pieces, axis=axis + 2)
    return gxp.rechunk(chunks)
