"""The depthwise paths of the im2col backend (``groups == c_in``).

A GEMM per channel would be a tiny ``(c_out_g x kH*kW)`` product, so instead the kernel offsets
are shifted views of a work item's planes: elementwise multiply-accumulates (the gradients, and
strided forwards), or at unit stride kW shifted copies and one batched product for every kernel
row (:func:`_forward_runs`). Work items are blocks of images and channels (:func:`_items`).
"""

from __future__ import annotations

import math

import numpy as np

from .._threads import call_threads
from .._workers import buffer, call_budget, chunks, even, map_items, reserved, zeroed
from . import im2col  # its shape helpers (_padded_shape, _taps), read at call time: it imports this module

# Work items of the elementwise depthwise passes (the gradients, strided forwards) are streamed
# through ~18 passes: small enough to stay in cache, large enough for long loops (1, 4 and 16 MiB
# measured on dw-r28-c128-k3's forward when it took this path, with whole-image chunks; 4 was best).
PREFERRED_DEPTHWISE_CHUNK_BYTES = 4 * 2**20
# Scratch of one work item of the unit-stride depthwise forward: numpy's and BLAS's per-call
# costs, and the GIL they hold, shrink with larger items, cache hits with smaller. On
# dw-r28-c128-k3 at two threads (medians of `fastconv bench` runs): 2 MiB 8.4-8.6 ms, 4 MiB
# 6.5-7.6, 8 MiB 5.0-6.1, 16 MiB 5.1-6.4, 32 MiB (an item per thread) 11.8.
PREFERRED_DEPTHWISE_COLS_BYTES = 8 * 2**20


class _Planes:
    """How a depthwise chunk lays out its per-channel planes.

    With unit stride (the gradients: the unit-stride forward has its own layout), every output row
    is computed ``wp`` (the padded width) long, so that a kernel offset reads one contiguous run of
    the flattened padded plane instead of ``oh`` short rows (numpy then runs long SIMD loops); the
    ``wp - ow`` extra columns are held at zero. Other strides use 2-D strided views. A gradient's zeros meet
    real data in the extra columns, so an infinity there would leave NaN where the exact sum has
    none: the gradients check their result and redo the rare non-finite one without wide rows.
    """

    def __init__(self, geom, wide=True):
        self.geom = geom
        self.hp, self.wp = im2col._padded_shape(geom)
        self.wide = wide and geom.sh == geom.sw == 1
        if self.wide:  # the last offset's run overhangs the last padded row by (kw-1)*dil_w
            self.padded = (self.hp * self.wp + (geom.kw - 1) * geom.dil_w,)
            self.plane = (geom.oh * self.wp,)
        else:
            self.padded, self.plane = (self.hp, self.wp), (geom.oh, geom.ow)

    def grid(self, padded):
        """The ``(..., hp, wp)`` view of padded planes."""
        if not self.wide:
            return padded
        return padded[..., :self.hp * self.wp].reshape(*padded.shape[:-1], self.hp, self.wp)

    def interior(self, padded):
        g = self.geom
        return self.grid(padded)[..., g.pt:g.pt + g.ih, g.pl:g.pl + g.iw]

    def pixels(self, planes):
        """The ``(..., oh, ow)`` view of output planes."""
        if not self.wide:
            return planes
        return planes.reshape(*planes.shape[:-1], self.geom.oh, self.wp)[..., :self.geom.ow]

    def taps(self):
        """Yield ``(ky, kx, index)``: ``padded[index]`` is that offset's input for every output."""
        g = self.geom
        for ky, kx, rows, cols in im2col._taps(g):
            if self.wide:
                start = ky * g.dil_h * self.wp + kx * g.dil_w
                yield ky, kx, (Ellipsis, slice(start, start + self.plane[0]))
            else:
                yield ky, kx, (Ellipsis, rows, cols)

    def scalars(self, values):
        """Per-channel ``values`` shaped to broadcast over planes."""
        return values.reshape(values.shape + (1,) * len(self.plane))


def _items(geom, itemsize, unit, preferred, per_channel=0, per_thread=0):
    """Work items ``(b0, b1, c0, c1)`` of a depthwise pass, blocks of images and channels of about
    ``preferred`` bytes of scratch, and ``(items, threads, images, channels)``: the threads to run
    them and the most images and channels in an item. A thread's scratch (``unit`` elements per
    channel and image, ``per_channel`` per channel, ``per_thread`` more) stays within its share of
    the memory budget: a layer of many channels takes fewer per item, not only fewer images; when
    not even one channel of one image fits, fewer threads run."""
    n, g = geom.n, geom.groups
    budget = call_budget(geom, itemsize) // itemsize
    per_thread += reserved()
    threads = int(max(1, min(call_threads(), budget // (unit + per_channel + per_thread))))
    room = budget // threads - per_thread
    units = max(1, preferred // (unit * itemsize))
    cb = int(max(1, min(g, -(-units // n), room // (unit + per_channel))))
    nb = int(max(1, min(n, units // cb, (room - cb * per_channel) // (cb * unit))))
    nb, cb = even(n, nb), even(g, cb)
    items = [(b0, b1, c0, min(g, c0 + cb)) for b0, b1 in chunks(geom.n, nb) for c0 in range(0, g, cb)]
    return items, min(threads, len(items)), nb, cb


def forward(x, w, geom, bias=None):
    """im2col's ``forward`` on a depthwise layer: shifted views of the planes, scaled and added."""
    if geom.sh == geom.sw == 1:
        return _forward_runs(x, w, geom, bias)
    g, cog = geom.groups, geom.c_out_g
    lay = _Planes(geom)
    padded, plane = math.prod(lay.padded), math.prod(lay.plane)
    items, threads, _, _ = _items(geom, x.itemsize, padded + 2 * cog * plane, PREFERRED_DEPTHWISE_CHUNK_BYTES)
    y = np.empty(geom.y_shape, x.dtype)
    ys = y.reshape(geom.n, g, cog, geom.oh, geom.ow)
    wk = w.reshape(g, cog, geom.kh, geom.kw)

    def work(b0, b1, c0, c1, scratch):
        m, c = b1 - b0, c1 - c0
        # Every plane has its own padded block, so the borders stay zero whatever m and c.
        xp = buffer(scratch, "xp", (m, c) + lay.padded, x.dtype, zeros=True)
        lay.interior(xp)[...] = x[b0:b1, c0:c1]
        xp = xp[:, :, None]  # broadcast over the channel multiplier
        acc = buffer(scratch, "acc", (m, c, cog) + lay.plane, x.dtype)
        tmp = buffer(scratch, "tmp", (m, c, cog) + lay.plane, x.dtype)
        for ky, kx, index in lay.taps():
            scale = lay.scalars(wk[c0:c1, :, ky, kx])
            if ky == kx == 0:
                np.multiply(xp[index], scale, out=acc)
            else:
                np.multiply(xp[index], scale, out=tmp)
                acc += tmp
        if bias is not None:
            acc += lay.scalars(bias.reshape(g, cog)[c0:c1])
        ys[b0:b1, c0:c1] = lay.pixels(acc)

    map_items(items, work, threads)
    return y


def _forward_runs(x, w, geom, bias=None):
    """Unit stride. Each channel's planes, for all images of an item, lie end to end, ``ow`` wide
    and padded above and below only, so that a kernel offset reads one contiguous run. The ``kW``
    column offsets are copied once each, as runs shifted sideways with the columns they do not
    reach zeroed (a row of ones below them carries the bias). One BLAS product per channel block,
    ``(c_out_g*kH, kW+1) @ (kW+1, pixels)``, gives every kernel row's partial sums; adding them
    shifted by whole rows gives the output, whose planes are then contiguous: the last add writes
    straight into ``y``. dw-r28-c128-k3, one thread: 8.4 ms, against 10.3 ms for the layout
    before (rows padded on both sides, a product per kernel row, then a crop into ``y`` whose
    inner loops were one row long). Copying all nine offsets for one product, or adding nine
    scaled runs, was slower than either (5.9 and 7.2 ms against 5.1 for the copies and products
    of that older layout alone).

    Every step covers a block of channels in one numpy call (matmul loops over them in C): with
    a call per channel, two threads ran no faster than one, queueing for the GIL.
    """
    g, cog, kh, kw = geom.groups, geom.c_out_g, geom.kh, geom.kw
    hq, wq = geom.ih + geom.pt + geom.pb, geom.ow  # every output column has its own layout column
    plane, pixels = hq * wq, geom.oh * geom.ow
    row_step = geom.dil_h * wq  # one kernel row further down
    overhang = (kh - 1) * row_step  # the last kernel row reads past the item's planes
    k = kw + (bias is not None)
    # scratch per channel and image: kW (+1) shifted planes, the partial sums and their total
    items, threads, nb, cb = _items(geom, x.itemsize, (k + cog * kh + cog) * plane,
                                    PREFERRED_DEPTHWISE_COLS_BYTES, per_channel=(k + cog * kh) * overhang)
    weights = np.zeros((g, cog, kh, k), x.dtype)
    weights[..., :kw] = w.reshape(g, cog, kh, kw)
    if bias is not None:  # the first kernel row's product adds it, from the row of ones
        weights[:, :, 0, kw] = bias.reshape(g, cog)
    weights = weights.reshape(g, cog * kh, k)
    y = np.empty(geom.y_shape, x.dtype)
    ys = y.reshape(geom.n, g, cog, pixels)
    flat = geom.iw == wq  # rows of x and of the layout have one width: copy whole planes

    def work(b0, b1, c0, c1, scratch):
        m, c = b1 - b0, c1 - c0
        length = m * plane
        fresh = not zeroed(scratch, "cols")
        # Laid out for nb images whatever m, so that the zeros never move.
        cols = buffer(scratch, "cols", (cb, k, nb * plane + overhang), x.dtype, zeros=True)
        if fresh and bias is not None:
            cols[:, kw] = 1
        src = x[b0:b1, c0:c1].transpose(1, 0, 2, 3)
        for kx in range(kw):
            shift = kx * geom.dil_w - geom.pl  # layout column j holds input column j + shift
            j0, j1 = max(0, -shift), min(wq, geom.iw - shift)
            if j0 >= j1:
                continue  # this offset reads only padding
            grid = cols[:c, kx, :length].reshape(c, m, hq, wq)[:, :, geom.pt:geom.pt + geom.ih]
            if flat:  # one long copy per plane; the values it wraps into other rows are zeroed
                a, e = max(shift, 0), geom.ih * geom.iw - max(-shift, 0)
                runs = grid.reshape(c, m, geom.ih * wq)
                runs[:, :, a - shift:e - shift] = src.reshape(c, m, -1)[:, :, a:e]
                grid[..., :j0] = 0
                grid[..., j1:] = 0
            else:
                grid[..., j0:j1] = src[..., j0 + shift:j1 + shift]
        sums = buffer(scratch, "sums", (c, cog * kh, length + overhang), x.dtype)
        np.matmul(weights[c0:c1], cols[:c, :, :length + overhang], out=sums)
        sums = sums.reshape(c, cog, kh, length + overhang)

        def term(ky):
            return sums[:, :, ky, ky * row_step:ky * row_step + length]

        def outputs(a):  # the output pixels: the first oh rows of each plane
            return a.reshape(c, cog, m, plane)[..., :pixels]

        out = ys[b0:b1, c0:c1].transpose(1, 2, 0, 3)
        if kh == 1:
            out[...] = outputs(term(0))
            return
        total = term(0)
        if kh > 2:
            total = np.add(total, term(1), out=buffer(scratch, "total", (c, cog, length), x.dtype))
            for ky in range(2, kh - 1):
                total += term(ky)
        np.add(outputs(total), outputs(term(kh - 1)), out=out)

    map_items(items, work, threads)
    return y


def _wide_gy(gy, geom, lay, b0, b1, c0, c1, scratch):
    """gy of images b0:b1, channels c0:c1, as ``(m, c, c_out_g, *plane)``, zero off the image."""
    gyw = buffer(scratch, "gyw", (b1 - b0, c1 - c0, geom.c_out_g) + lay.plane, gy.dtype, zeros=True)
    lay.pixels(gyw)[...] = gy.reshape(geom.n, geom.groups, geom.c_out_g, geom.oh, geom.ow)[b0:b1, c0:c1]
    return gyw


def grad_input(gy, w, geom, wide=True):
    """im2col's ``grad_input`` on a depthwise layer: ``gy`` scaled and added into shifted views."""
    g, cog = geom.groups, geom.c_out_g
    lay = _Planes(geom, wide)
    padded, plane = math.prod(lay.padded), math.prod(lay.plane)
    items, threads, _, _ = _items(geom, gy.itemsize, padded + (cog + 1) * plane,
                                  PREFERRED_DEPTHWISE_CHUNK_BYTES)
    gx = np.empty(geom.x_shape, gy.dtype)
    wk = w.reshape(g, cog, geom.kh, geom.kw)

    def work(b0, b1, c0, c1, scratch):
        m, c = b1 - b0, c1 - c0
        gyw = _wide_gy(gy, geom, lay, b0, b1, c0, c1, scratch)
        gxp = buffer(scratch, "gxp", (m, c) + lay.padded, gy.dtype)
        tmp = buffer(scratch, "tmp", (m, c) + lay.plane, gy.dtype)
        gxp[...] = 0
        for ky, kx, index in lay.taps():
            for j in range(cog):  # the channel multiplier, almost always 1
                np.multiply(gyw[:, :, j], lay.scalars(wk[c0:c1, j, ky, kx]), out=tmp)
                gxp[index] += tmp
        gx[b0:b1, c0:c1] = lay.interior(gxp)

    map_items(items, work, threads)
    if lay.wide and not np.isfinite(gx.sum()):  # see _Planes; a sum allocates no mask
        return grad_input(gy, w, geom, wide=False)
    return gx


def grad_weight(gy, x, geom, wide=True):
    """im2col's ``grad_weight`` on a depthwise layer: one dot of ``gy`` with each shifted view."""
    g, cog = geom.groups, geom.c_out_g
    lay = _Planes(geom, wide)
    padded, plane = math.prod(lay.padded), math.prod(lay.plane)
    taps = geom.kh * geom.kw
    # per channel and image: the padded planes, gy's, x's shifted copy when not wide, the dots
    items, threads, _, _ = _items(geom, x.itemsize, padded + (cog + 1) * plane + taps * cog,
                                  PREFERRED_DEPTHWISE_CHUNK_BYTES, per_channel=taps * cog,
                                  per_thread=geom.c_out * taps)

    def work(b0, b1, c0, c1, scratch):
        m, c = b1 - b0, c1 - c0
        xp = buffer(scratch, "xp", (m, c) + lay.padded, x.dtype, zeros=True)
        lay.interior(xp)[...] = x[b0:b1, c0:c1]
        gyw = _wide_gy(gy, geom, lay, b0, b1, c0, c1, scratch).reshape(m, c, cog, plane)
        dots = buffer(scratch, "dots", (taps, m, c, cog), x.dtype)
        for t, (_, _, index) in enumerate(lay.taps()):
            shifted = xp[index]
            if not lay.wide:  # vecdot wants whole planes contiguous; the wide layout has them
                shifted = buffer(scratch, "shifted", shifted.shape, x.dtype)
                np.copyto(shifted, xp[index])
            # The zero columns of gyw cancel the garbage that the wide rows read.
            np.vecdot(gyw, shifted.reshape(m, c, 1, plane), out=dots[t])
        # one sum over the item's images for every tap: numpy calls per tap cost more than the dots
        part = np.sum(dots, axis=1, out=buffer(scratch, "part", (taps, c, cog), x.dtype))
        return slice(c0, c1), part.transpose(1, 2, 0)  # added into gw's channels in item order

    gw = map_items(items, work, threads, np.zeros((g, cog, taps), x.dtype)).reshape(geom.w_shape)
    if lay.wide and not np.isfinite(gw.sum()):  # see _Planes
        return grad_weight(gy, x, geom, wide=False)
    return gw


