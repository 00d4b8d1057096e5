"""im2col backend: the convolution as BLAS matrix products over an ``as_strided`` view of the input.

Forward: work items of a few images run on fastconv's threads, each on one BLAS thread; an item
copies its receptive fields once into a reused ``(C_in*kH*kW, OH*OW)`` patch matrix per image and
multiplies it straight into NCHW ``y`` (images too small for a good GEMM share one). A 1x1
stride-1 unpadded convolution multiplies the input itself. grad_weight is one GEMM per chunk of
images; grad_input is the forward of ``gy`` with the flipped kernel at unit stride, else a GEMM
folded back (col2im) by one strided add per kernel offset. Depthwise layers use shifted runs of
the planes, multiplied elementwise or in one batched product per block of channels, instead of a
tiny GEMM per channel. Extra memory is capped by
``set_memory_budget`` (default max(256 MiB, 2x input)), all threads' scratch together.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._threads import get_num_threads, single_threaded_blas
from ._lift import lifted

NAME = "im2col"


def supports(geom, dtype, precision):
    """Every call: 1-D and 3-D run through the 2-D kernels (``_lift``), exact at any precision."""
    return None

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes; the default budget is this or 2x the input, if larger
_budget: int | None = None  # None: the default rule above

# Chunks larger than this gain nothing (the GEMMs are already large) but pay page faults on fresh
# buffers: glibc recycles freed blocks up to 32 MiB without returning them to the kernel.
PREFERRED_CHUNK_BYTES = 24 * 2**20
# The forward pass runs work items (a few images each) on fastconv's threads, each item's GEMM on
# one BLAS thread: the patch copies run in parallel too, and no thread waits on another's BLAS
# workers. An item holds at least this many multiply-adds, so that its Python-level cost (tens of
# microseconds) stays small next to its work: MNIST's first layer (460 K per image) took 1.30 ms
# in items of 4 M, 1.08 ms in one chunk, on one thread.
ITEM_MIN_MACS = 16_000_000
# Images with fewer output pixels than this share one GEMM per item, then a transposing copy into
# NCHW; larger ones get a GEMM each, written straight into y. One thread, r7-c512-k3 (49 pixels):
# a GEMM per image 1.71x torch's time, 16 images per GEMM 1.34x; r14 (196 pixels) equal either way,
# r28 (784) 1.24x per image against 1.36x grouped by 4.
GROUP_BELOW_PIXELS = 128
GROUP_COLUMNS = 1024  # columns (images x pixels) that a shared GEMM aims for
# An image whose patch matrix is larger than this is copied and multiplied a band of output rows at
# a time, so that the GEMM reads it from cache. One thread: r56-c64-k3 93 ms against 104 in one
# piece, stem 27.5 against 30.6, r14 and r28 2-3% faster; 1 MiB and 512 KiB bands did no better.
ROW_BAND_BYTES = 2 * 2**20
# grad_weight contracts each band over its pixels: bands are used only when that contraction is at
# least this long (r56: 896 pixels, 132 -> 110 ms; the stem 3472, 39.5 -> 30.8 ms), since shorter
# ones lose to the GEMM over several whole images (r28's 448-pixel bands: 104 -> 112 ms).
BAND_MIN_CONTRACTION = 768
# Work items of the elementwise depthwise passes (the gradients, strided forwards) are streamed
# through ~18 passes: small enough to stay in cache, large enough for long loops (1, 4 and 16 MiB
# measured on dw-r28-c128-k3's forward when it took this path, with whole-image chunks; 4 was best).
PREFERRED_DEPTHWISE_CHUNK_BYTES = 4 * 2**20
# Scratch of one work item of the unit-stride depthwise forward: numpy's and BLAS's per-call
# costs, and the GIL they hold, shrink with larger items, cache hits with smaller. On
# dw-r28-c128-k3 at two threads (medians of `fastconv bench` runs): 2 MiB 8.4-8.6 ms, 4 MiB
# 6.5-7.6, 8 MiB 5.0-6.1, 16 MiB 5.1-6.4, 32 MiB (an item per thread) 11.8.
PREFERRED_DEPTHWISE_COLS_BYTES = 8 * 2**20


def set_memory_budget(nbytes: int | None) -> int | None:
    """Cap the extra memory (bytes) of every later call; ``None`` restores the default rule.

    The default is ``max(DEFAULT_MEMORY_BUDGET, 2 * input.nbytes)``. The batch is split into
    chunks that fit, depthwise layers into blocks of channels too, and an image whose patches do
    not fit into bands of output rows. The smallest piece is one row of one image's patches (of
    one channel, depthwise) beside its zero-padded copy: a budget below that is exceeded by what
    the piece needs. Returns the previous setting, so that callers can restore it.
    """
    global _budget
    if nbytes is not None and (not isinstance(nbytes, (int, np.integer)) or nbytes < 0):
        raise ValueError(f"`nbytes` must be a non-negative int or None; got {nbytes!r}")
    previous, _budget = _budget, None if nbytes is None else int(nbytes)
    return previous


def memory_budget(input_nbytes: int) -> int:
    """The budget in bytes that applies to a call whose input takes ``input_nbytes``."""
    return _budget if _budget is not None else max(DEFAULT_MEMORY_BUDGET, 2 * input_nbytes)


def _call_budget(geom, itemsize) -> int:
    """``memory_budget`` of a call on ``geom``'s input."""
    return memory_budget(geom.n * geom.c_in * geom.ih * geom.iw * itemsize)


def _chunks(geom, nb: int):
    for b0 in range(0, geom.n, nb):
        yield b0, min(geom.n, b0 + nb)


def _padded_shape(geom):
    return geom.ih + geom.pt + geom.pb, geom.iw + geom.pl + geom.pr


def _is_padded(geom) -> bool:
    return bool(geom.pt or geom.pb or geom.pl or geom.pr)


def _padded_size(geom) -> int:
    """Elements of one zero-padded image copy; 0 when the convolution has no padding."""
    hp, wp = _padded_shape(geom)
    return geom.c_in * hp * wp if _is_padded(geom) else 0


def _taps(geom):
    """Yield ``(ky, kx, rows, cols)``: each kernel offset and the slices of the padded input it
    reads for all output pixels, ``padded[rows, cols][oy, ox] = padded[oy*sh + ky*dil_h, ...]``."""
    for ky in range(geom.kh):
        top = ky * geom.dil_h
        rows = slice(top, top + geom.sh * (geom.oh - 1) + 1, geom.sh)
        for kx in range(geom.kw):
            left = kx * geom.dil_w
            yield ky, kx, rows, slice(left, left + geom.sw * (geom.ow - 1) + 1, geom.sw)


def _windows(xp, geom):
    """Read-only view ``(m, c_in, kh, kw, oh, ow)`` of padded images: every receptive field."""
    sn, sc, sy, sx = xp.strides
    return as_strided(xp, (xp.shape[0], geom.c_in, geom.kh, geom.kw, geom.oh, geom.ow),
                      (sn, sc, sy * geom.dil_h, sx * geom.dil_w, sy * geom.sh, sx * geom.sw),
                      writeable=False)


def _padded(x, b0, b1, geom, scratch):
    """Images ``b0:b1`` zero-padded in this thread's ``scratch``; ``x``'s own when unpadded."""
    if not _is_padded(geom):
        return x[b0:b1]
    # laid out for the chunk's nb images whatever m, so the zero borders stay put
    xp = _buffer(scratch, "xp", (b1 - b0, geom.c_in, *_padded_shape(geom)), x.dtype, zeros=True)
    xp[:, :, geom.pt:geom.pt + geom.ih, geom.pl:geom.pl + geom.iw] = x[b0:b1]
    return xp


def _patches(xp, geom, scratch, image_major, rows=slice(None), ones=False):
    """The patch matrices of padded images ``xp`` (output rows ``rows``), copied once into this
    thread's ``scratch``; with ``ones``, each group's matrix gets a last row of ones, so that a
    bias column in the weights adds the bias inside the GEMM instead of in a pass over ``y``.

    Image-major ``(m, groups, K, pixels)``: each image's own matrices, for a GEMM per image that
    writes straight into NCHW. Channel-major ``(groups, K, m*pixels)``: images inside a row, so
    that one GEMM covers the whole chunk. Either way the copy runs along output rows.
    """
    windows = _windows(xp, geom)[..., rows, :]
    m, (oh, ow) = len(xp), windows.shape[-2:]
    g, kg = geom.groups, geom.c_in_g * geom.kh * geom.kw
    windows = windows.reshape(m, g, kg // (geom.kh * geom.kw), geom.kh, geom.kw, oh, ow)
    if image_major:
        cols = _buffer(scratch, "cols", (m, g, kg + ones, oh * ow), xp.dtype)
        # Splitting axes of a slice always gives a view, so the copy lands in cols.
        np.copyto(cols[:, :, :kg].reshape(windows.shape), windows)
    else:
        cols = _buffer(scratch, "cols", (g, kg + ones, m * oh * ow), xp.dtype)
        windows = windows.transpose(1, 2, 3, 4, 0, 5, 6)
        np.copyto(cols[:, :kg].reshape(windows.shape), windows)
    if ones:
        cols[..., kg, :] = 1
    return cols


def _reserved() -> int:
    """Elements of each thread's share of the budget kept apart from its scratch arrays.
    Elementwise ops on strided views run through numpy's buffered iterator, which allocates up to
    one buffer of ``np.getbufsize()`` elements per operand whatever the chunk; the views and small
    arrays a work item makes take a few hundred bytes more."""
    return 3 * np.getbufsize() + 1024


def _thread_share(geom, itemsize) -> int:
    """Bytes of the memory budget that each of fastconv's threads may hold as scratch, besides
    ``_reserved()``."""
    return _call_budget(geom, itemsize) // get_num_threads() - _reserved() * itemsize


def _band_rows(geom, itemsize) -> int:
    """Output rows per band of one image's patch matrix: ``ROW_BAND_BYTES`` of it (see there), or
    less when a thread's share of the memory budget, beyond its padded copy of the image, is
    smaller (one row at least); ``oh`` or more when the whole matrix fits at once."""
    room = _thread_share(geom, itemsize) - _padded_size(geom) * itemsize
    return max(1, min(ROW_BAND_BYTES, room) // (geom.c_in * geom.kh * geom.kw * geom.ow * itemsize))


def _is_pointwise(geom) -> bool:
    """A 1x1 stride-1 unpadded convolution: the input is its own patch matrix."""
    return geom.kh == geom.kw == geom.sh == geom.sw == 1 and not _is_padded(geom)


def _is_depthwise(geom) -> bool:
    return geom.groups > 1 and geom.c_in_g == 1


# ---------------------------------------------------------------------------------- forward

@lifted
def forward(x, w, geom, bias=None):
    """``y = w @ cols`` per work item of a few images, spread over threads; depthwise has its own path.

    A GEMM per image writes its output straight into NCHW ``y``; images too small for a good GEMM
    are grouped (see ``GROUP_BELOW_PIXELS``). A 1x1 stride-1 unpadded convolution multiplies the
    input itself, with no copy.
    """
    if _is_depthwise(geom):
        return _forward_depthwise(x, w, geom, bias)
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    pointwise = _is_pointwise(geom)
    grouped = p < GROUP_BELOW_PIXELS
    copied = not pointwise or grouped  # else the input is its own patch matrix
    ones = bias is not None and copied  # see _patches; on one thread, mnist 1.2 -> 1.0 ms
    band = _band_rows(geom, x.itemsize) if copied and not grouped else geom.oh
    # a banded item holds one image's padded copy and one band of its patches at a time
    per_image = (geom.groups * (kg + ones) * min(band, geom.oh) * geom.ow + _padded_size(geom) if copied else 0) \
        + (geom.c_out * p if grouped else 0)
    want = max(-(-ITEM_MIN_MACS // (geom.c_out * kg * p)), -(-GROUP_COLUMNS // p) if grouped else 1)
    nb, threads = _thread_plan(geom, x.itemsize, max(per_image, 1), 1 if band < geom.oh else want)
    y = np.empty(geom.y_shape, x.dtype)
    wg = w.reshape(g, cog, kg)
    if ones:
        wg = np.concatenate([wg, bias.reshape(g, cog, 1)], axis=2)

    def work(b0, b1, scratch):
        m = b1 - b0
        ys = y[b0:b1].reshape(m, g, cog, p)
        if not copied:
            np.matmul(wg, x[b0:b1].reshape(m, g, kg, p), out=ys)
            if bias is not None:  # added while this item's output is in cache
                ys += bias.reshape(g, cog, 1)
        elif grouped:
            cols = _patches(_padded(x, b0, b1, geom, scratch), geom, scratch, image_major=False, ones=ones)
            yt = _buffer(scratch, "yt", (g, cog, m * p), x.dtype)
            np.matmul(wg, cols, out=yt)
            np.copyto(ys, yt.reshape(g, cog, m, p).transpose(2, 0, 1, 3))
        elif band >= geom.oh:  # each image's GEMM lands in its own slice of y
            cols = _patches(_padded(x, b0, b1, geom, scratch), geom, scratch, image_major=True, ones=ones)
            np.matmul(wg, cols, out=ys)
        else:
            for i in range(m):
                xp = _padded(x, b0 + i, b0 + i + 1, geom, scratch)
                for r0 in range(0, geom.oh, band):
                    r1 = min(geom.oh, r0 + band)
                    cols = _patches(xp, geom, scratch, image_major=True, rows=slice(r0, r1), ones=ones)
                    np.matmul(wg, cols[0], out=ys[i, :, :, r0 * geom.ow:r1 * geom.ow])

    with single_threaded_blas(threads > 1):
        _map_chunks(geom, nb, work, threads)
    return y


# ---------------------------------------------------------------------------- grad_weight

def _matmul_nt(a, b, out):
    """``out = a @ b.T`` over a long shared axis, written to ``out`` (..., m, k), C-contiguous.

    OpenBLAS runs such a product up to several times faster when the longer side of the result
    is its rows (measured: (147 x 64) from rows of 37632 in 16 ms, its transpose in 370 ms); the
    other orientation lands in a transposed scratch of ``out``'s size.
    """
    if a.shape[-2] >= b.shape[-2]:
        np.matmul(a, b.swapaxes(-1, -2), out=out)
    else:
        scratch = np.empty(out.shape[:-2] + out.shape[:-3:-1], out.dtype)
        np.matmul(b, a.swapaxes(-1, -2), out=scratch)
        np.copyto(out, scratch.swapaxes(-1, -2))


@lifted
def grad_weight(gy, x, geom):
    """``gw += gy_chunk @ cols.T``: one GEMM per chunk and group, contracting over images too;
    chunks spread over threads as in the forward pass, each thread summing its own ``gw``."""
    if _is_depthwise(geom):
        return _grad_weight_depthwise(gy, x, geom)
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    band = _band_rows(geom, x.itemsize)
    per_image = geom.c_in * geom.kh * geom.kw * p + _padded_size(geom) + geom.c_out * p
    if band < geom.oh and (band * geom.ow >= BAND_MIN_CONTRACTION
                           or per_image * x.itemsize > _thread_share(geom, x.itemsize)):
        return _grad_weight_banded(gy, x, geom, band)
    nb, threads = _thread_plan(geom, x.itemsize, per_image, PREFERRED_CHUNK_BYTES // (per_image * x.itemsize),
                               fixed=3 * g * cog * kg)

    def work(b0, b1, scratch):
        m = b1 - b0
        cols = _patches(_padded(x, b0, b1, geom, scratch), geom, scratch, image_major=False)
        # gy gathered channel-major, like cols, so that images join the contraction
        gyc = _buffer(scratch, "gy", (g, cog, m, p), x.dtype)
        np.copyto(gyc, gy[b0:b1].reshape(m, g, cog, p).transpose(1, 2, 0, 3))
        part = _buffer(scratch, "part", (g, cog, kg), x.dtype)
        _matmul_nt(gyc.reshape(g, cog, m * p), cols, part)
        _buffer(scratch, "gw", (g, cog, kg), x.dtype, zeros=True)[...] += part

    with single_threaded_blas(threads > 1):
        scratches = _map_chunks(geom, nb, work, threads)
    return _sum_of(scratches, "gw").reshape(geom.w_shape)


def _grad_weight_banded(gy, x, geom, band):
    """Large images: a GEMM per band of ``band`` output rows of one image, whose patches stay in
    cache, contracting over the band's pixels; ``gy``'s rows are read where they lie."""
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    per_image = geom.c_in * geom.kh * geom.kw * band * geom.ow + _padded_size(geom)
    nb, threads = _thread_plan(geom, x.itemsize, per_image, 1, fixed=3 * g * cog * kg)

    def work(b0, b1, scratch):
        for i in range(b0, b1):
            xp = _padded(x, i, i + 1, geom, scratch)
            gyi = gy[i].reshape(g, cog, p)
            for r0 in range(0, geom.oh, band):
                r1 = min(geom.oh, r0 + band)
                cols = _patches(xp, geom, scratch, image_major=True, rows=slice(r0, r1))
                part = _buffer(scratch, "part", (g, cog, kg), x.dtype)
                _matmul_nt(gyi[:, :, r0 * geom.ow:r1 * geom.ow], cols[0], part)
                _buffer(scratch, "gw", (g, cog, kg), x.dtype, zeros=True)[...] += part

    with single_threaded_blas(threads > 1):
        scratches = _map_chunks(geom, nb, work, threads)
    return _sum_of(scratches, "gw").reshape(geom.w_shape)


def _sum_of(scratches, name):
    """The sum of every thread's ``name`` scratch array (each thread's own partial sum); a thread
    that found every item taken has none."""
    total, *others = (scratch[name] for scratch in scratches if name in scratch)
    for part in others:
        total += part
    return total


# ----------------------------------------------------------------------------- grad_input

@lifted
def grad_input(gy, w, geom):
    """``gcols = w.T @ gy`` per image, then col2im: one strided add per kernel offset; with unit
    stride (usually) a forward convolution of ``gy`` instead."""
    if _is_pointwise(geom):
        return _grad_input_pointwise(gy, w, geom)
    transposed = _as_forward(geom)
    if transposed is not None and (geom.c_out_g == 1 or not _is_depthwise(geom)):
        gx = forward(gy, _flipped(w, geom), transposed)
        # The zeros padded around gy meet every weight; should one be infinite, 0 * inf puts
        # NaN where the exact sum has none, so the rare non-finite result is redone by the fold.
        if np.isfinite(gx.sum()):
            return gx
    if _is_depthwise(geom):
        return _grad_input_depthwise(gy, w, geom)
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    hp, wp = _padded_shape(geom)
    padded = _is_padded(geom)
    per_image = geom.c_in * geom.kh * geom.kw * p + _padded_size(geom)
    # Bands of output rows only when one image's patches do not fit in a thread's share of the
    # budget: the fold's strided adds per band cost more than cache misses save (stem: +5-12 %).
    band = geom.oh
    if per_image * gy.itemsize > _thread_share(geom, gy.itemsize):
        band = min(_band_rows(geom, gy.itemsize), geom.oh)
        per_image = geom.c_in * geom.kh * geom.kw * band * geom.ow + _padded_size(geom)
    want = 1 if band < geom.oh else -(-ITEM_MIN_MACS // (geom.c_out * kg * p))
    nb, threads = _thread_plan(geom, gy.itemsize, per_image, want)
    gx = np.empty(geom.x_shape, gy.dtype)
    wt = w.reshape(g, cog, kg).transpose(0, 2, 1)

    def work(b0, b1, scratch):
        # As in the forward pass: a GEMM per image (or band of its rows), then their fold.
        m = b1 - b0
        gys = gy[b0:b1].reshape(m, g, cog, p)
        gxp = _buffer(scratch, "gxp", (m, geom.c_in, hp, wp), gy.dtype) if padded else gx[b0:b1]
        gxp[...] = 0
        for r0 in range(0, geom.oh, band):
            r1 = min(geom.oh, r0 + band)
            gcols = _buffer(scratch, "gcols", (m, geom.c_in, geom.kh, geom.kw, r1 - r0, geom.ow), gy.dtype)
            np.matmul(wt, gys[..., r0 * geom.ow:r1 * geom.ow], out=gcols.reshape(m, g, kg, -1))
            for ky, kx, rows, cols in _taps(geom):
                rows = slice(rows.start + r0 * geom.sh, rows.start + (r1 - 1) * geom.sh + 1, geom.sh)
                gxp[:, :, rows, cols] += gcols[:, :, ky, kx]
        if padded:
            gx[b0:b1] = gxp[:, :, geom.pt:geom.pt + geom.ih, geom.pl:geom.pl + geom.iw]

    with single_threaded_blas(threads > 1):
        _map_chunks(geom, nb, work, threads)
    return gx


def _as_forward(geom):
    """The geometry of ``grad_input`` run as a forward convolution of ``gy``, or None.

    With unit stride, ``gx`` is the correlation of ``gy``, padded by the dilated kernel span less
    the original padding, with the flipped, transposed kernel. That is an im2col copy of ``gy``
    (cheaper than the fold's read-modify-write adds) and a GEMM contracting over C_out*kH*kW.
    It needs no cropping: every original padding at most ``dil*(k-1)``, as is usual. Its patch
    matrix holds C_out*kH*kW rows against the fold's C_in*kH*kW, so it is only taken while C_out
    is at most twice C_in (or the kernel is 1x1: no blow-up either way); MNIST's first layer
    (1 -> 32 channels) folds 4x faster.
    """
    if geom.c_out > 2 * geom.c_in and geom.kh * geom.kw > 1:
        return None
    return geom.input_gradient_as_forward()


def _flipped(w, geom):
    """The kernel of :func:`_as_forward`: ``(c_in, c_out/groups, kh, kw)``, rotated 180 degrees."""
    w5 = w.reshape(geom.groups, geom.c_out_g, geom.c_in_g, geom.kh, geom.kw)
    return np.ascontiguousarray(w5.transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]).reshape(
        geom.c_in, geom.c_out_g, geom.kh, geom.kw)


def _grad_input_pointwise(gy, w, geom):
    g, p = geom.groups, geom.ih * geom.iw
    gx = np.empty(geom.x_shape, gy.dtype)
    np.matmul(w.reshape(g, geom.c_out_g, geom.c_in_g).transpose(0, 2, 1),
              gy.reshape(geom.n, g, geom.c_out_g, p), out=gx.reshape(geom.n, g, geom.c_in_g, p))
    return gx


# ------------------------------------------------------------------------------ depthwise
# groups == c_in: a GEMM per channel would be a tiny (c_out_g x kH*kW) product, so instead the
# kernel offsets are shifted views of the whole chunk's planes: elementwise multiply-accumulates
# (the gradients, and strided forwards), or at unit stride forward kW shifted copies and one
# batched product for every kernel row (_forward_depthwise_runs).

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
        self.hp, self.wp = _padded_shape(geom)
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
        for ky, kx, rows, cols in _taps(g):
            if self.wide:
                start = ky * g.dil_h * self.wp + kx * g.dil_w
                yield ky, kx, (Ellipsis, slice(start, start + self.plane[0]))
            else:
                yield ky, kx, (Ellipsis, rows, cols)

    def scalars(self, values):
        """Per-channel ``values`` shaped to broadcast over planes."""
        return values.reshape(values.shape + (1,) * len(self.plane))


def _thread_plan(geom, itemsize: int, per_image: int, want: int, fixed: int = 0) -> tuple[int, int]:
    """``(images per work item, threads)`` for work spread over threads, each thread holding one
    item's scratch of ``per_image`` elements per image plus ``fixed`` elements: up to ``want``
    images, no more than an even share of the batch, and every thread's scratch within its share
    of the memory budget. When even one image per thread does not fit, fewer threads run."""
    threads = get_num_threads()
    budget = _call_budget(geom, itemsize)
    per_image_bytes = per_image * itemsize
    iterator = (_reserved() + fixed) * itemsize
    threads = int(max(1, min(threads, budget // (per_image_bytes + iterator))))
    fits = (budget // threads - iterator) // per_image_bytes
    nb = int(max(1, min(want, -(-geom.n // threads), fits)))
    return nb, min(threads, -(-geom.n // nb))


def _depthwise_items(geom, itemsize, unit, preferred, per_channel=0, per_thread=0):
    """Work items ``(b0, b1, c0, c1)`` of a depthwise pass, blocks of images and channels of about
    ``preferred`` bytes of scratch, and ``(items, threads, images, channels)``: the threads to run
    them and the most images and channels in an item. A thread's scratch (``unit`` elements per
    channel and image, ``per_channel`` per channel, ``per_thread`` more) stays within its share of
    the memory budget: a layer of many channels takes fewer per item, not only fewer images; when
    not even one channel of one image fits, fewer threads run."""
    n, g = geom.n, geom.groups
    budget = _call_budget(geom, itemsize) // itemsize
    per_thread += _reserved()
    threads = int(max(1, min(get_num_threads(), budget // (unit + per_channel + per_thread))))
    room = budget // threads - per_thread
    units = max(1, preferred // (unit * itemsize))
    cb = int(max(1, min(g, -(-units // n), room // (unit + per_channel))))
    nb = int(max(1, min(n, units // cb, (room - cb * per_channel) // (cb * unit))))
    nb, cb = _even(n, nb), _even(g, cb)
    items = [(b0, b1, c0, min(g, c0 + cb)) for b0, b1 in _chunks(geom, nb) for c0 in range(0, g, cb)]
    return items, min(threads, len(items)), nb, cb


def _even(total: int, most: int) -> int:
    """The smallest part size that splits ``total`` into as few parts as parts of ``most`` would:
    parts of 31 and 1 would leave a thread with the crumbs."""
    return -(-total // -(-total // most))


def _map_chunks(geom, nb, work, threads):
    """``_map_items`` over the chunks of ``nb`` images: ``work(b0, b1, scratch)``."""
    return _map_items(list(_chunks(geom, nb)), work, threads)


def _map_items(items, work, threads):
    """Run ``work(*item, scratch)`` on every item, spread over ``threads`` threads; returns the
    ``scratch`` dicts, one per thread, each reused across its items.

    numpy's elementwise loops and copies run on one core, and release the GIL (as BLAS does), so
    Python threads give them the cores that BLAS and torch would use. Items go to whichever
    thread is free, so a core that another process slows takes fewer.
    """
    threads = min(threads, len(items))
    if threads <= 1:
        scratch = {}
        for item in items:
            work(*item, scratch)
        return [scratch]
    pending, lock = iter(items), threading.Lock()
    errors = np.geterr()  # np.errstate is per thread: the caller's must hold in the workers too
    failed = threading.Event()

    def worker():
        # Each worker pulls items until none is left: memory stays one scratch per thread,
        # however many items (a future per item held ~2 KB each, beyond a small budget).
        scratch = {}
        with np.errstate(**errors):
            while not failed.is_set():
                with lock:
                    item = next(pending, None)
                if item is None:
                    break
                try:
                    work(*item, scratch)
                except BaseException:
                    failed.set()  # the others stop at their next item
                    raise
        return scratch

    others = [_pool(threads - 1).submit(worker) for _ in range(threads - 1)]
    scratches = [worker()]  # the calling thread works too
    return scratches + [future.result() for future in others]


_executor: tuple[int, ThreadPoolExecutor] | None = None


def _pool(workers: int) -> ThreadPoolExecutor:
    """A pool kept between calls with at least ``workers`` threads: starting threads on every call
    cost more than MNIST's first layer takes to compute. A larger pool replaces a smaller one
    (whose idle threads end once no caller holds it)."""
    global _executor
    if _executor is None or _executor[0] < workers:
        _executor = (workers, ThreadPoolExecutor(workers, thread_name_prefix="fastconv-im2col"))
    return _executor[1]


def _forget_pool():
    """A forked child has none of its parent's threads: the pool must be started afresh there,
    or work handed to it would wait forever (a DataLoader forking worker processes, say)."""
    global _executor
    _executor = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_pool)


def _buffer(scratch, name, shape, dtype, zeros=False):
    """The scratch array ``name`` with ``shape``, carved from one buffer made for the largest chunk
    seen so far; ``zeros`` buffers are zeroed once, their users overwrite only what varies."""
    size = math.prod(shape)
    if name not in scratch or scratch[name].size < size:
        scratch[name] = (np.zeros if zeros else np.empty)(size, dtype)
    return scratch[name][:size].reshape(shape)


def _forward_depthwise(x, w, geom, bias=None):
    if geom.sh == geom.sw == 1:
        return _forward_depthwise_runs(x, w, geom, bias)
    g, cog = geom.groups, geom.c_out_g
    lay = _Planes(geom)
    padded, plane = math.prod(lay.padded), math.prod(lay.plane)
    items, threads, _, _ = _depthwise_items(geom, x.itemsize, padded + 2 * cog * plane,
                                            PREFERRED_DEPTHWISE_CHUNK_BYTES)
    y = np.empty(geom.y_shape, x.dtype)
    ys = y.reshape(geom.n, g, cog, geom.oh, geom.ow)
    wk = w.reshape(g, cog, geom.kh, geom.kw)

    def work(b0, b1, c0, c1, scratch):
        m, c = b1 - b0, c1 - c0
        # Every plane has its own padded block, so the borders stay zero whatever m and c.
        xp = _buffer(scratch, "xp", (m, c) + lay.padded, x.dtype, zeros=True)
        lay.interior(xp)[...] = x[b0:b1, c0:c1]
        xp = xp[:, :, None]  # broadcast over the channel multiplier
        acc = _buffer(scratch, "acc", (m, c, cog) + lay.plane, x.dtype)
        tmp = _buffer(scratch, "tmp", (m, c, cog) + lay.plane, x.dtype)
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

    _map_items(items, work, threads)
    return y


def _forward_depthwise_runs(x, w, geom, bias=None):
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
    items, threads, nb, cb = _depthwise_items(geom, x.itemsize, (k + cog * kh + cog) * plane,
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
        fresh = "cols" not in scratch
        # Laid out for nb images whatever m, so that the zeros never move.
        cols = _buffer(scratch, "cols", (cb, k, nb * plane + overhang), x.dtype, zeros=True)
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
        sums = _buffer(scratch, "sums", (c, cog * kh, length + overhang), x.dtype)
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
            total = np.add(total, term(1), out=_buffer(scratch, "total", (c, cog, length), x.dtype))
            for ky in range(2, kh - 1):
                total += term(ky)
        np.add(outputs(total), outputs(term(kh - 1)), out=out)

    with single_threaded_blas(threads > 1):
        _map_items(items, work, threads)
    return y


def _wide_gy(gy, geom, lay, b0, b1, c0, c1, scratch):
    """gy of images b0:b1, channels c0:c1, as ``(m, c, c_out_g, *plane)``, zero off the image."""
    gyw = _buffer(scratch, "gyw", (b1 - b0, c1 - c0, geom.c_out_g) + lay.plane, gy.dtype, zeros=True)
    lay.pixels(gyw)[...] = gy.reshape(geom.n, geom.groups, geom.c_out_g, geom.oh, geom.ow)[b0:b1, c0:c1]
    return gyw


def _grad_input_depthwise(gy, w, geom, wide=True):
    g, cog = geom.groups, geom.c_out_g
    lay = _Planes(geom, wide)
    padded, plane = math.prod(lay.padded), math.prod(lay.plane)
    items, threads, _, _ = _depthwise_items(geom, gy.itemsize, padded + (cog + 1) * plane,
                                            PREFERRED_DEPTHWISE_CHUNK_BYTES)
    gx = np.empty(geom.x_shape, gy.dtype)
    wk = w.reshape(g, cog, geom.kh, geom.kw)

    def work(b0, b1, c0, c1, scratch):
        m, c = b1 - b0, c1 - c0
        gyw = _wide_gy(gy, geom, lay, b0, b1, c0, c1, scratch)
        gxp = _buffer(scratch, "gxp", (m, c) + lay.padded, gy.dtype)
        tmp = _buffer(scratch, "tmp", (m, c) + lay.plane, gy.dtype)
        gxp[...] = 0
        for ky, kx, index in lay.taps():
            for j in range(cog):  # the channel multiplier, almost always 1
                np.multiply(gyw[:, :, j], lay.scalars(wk[c0:c1, j, ky, kx]), out=tmp)
                gxp[index] += tmp
        gx[b0:b1, c0:c1] = lay.interior(gxp)

    _map_items(items, work, threads)
    if lay.wide and not np.isfinite(gx.sum()):  # see _Planes; a sum allocates no mask
        return _grad_input_depthwise(gy, w, geom, wide=False)
    return gx


def _grad_weight_depthwise(gy, x, geom, wide=True):
    g, cog = geom.groups, geom.c_out_g
    lay = _Planes(geom, wide)
    padded, plane = math.prod(lay.padded), math.prod(lay.plane)
    taps = geom.kh * geom.kw
    # per channel and image: the padded planes, gy's, x's shifted copy when not wide, the dots
    items, threads, _, _ = _depthwise_items(geom, x.itemsize, padded + (cog + 1) * plane + taps * cog,
                                            PREFERRED_DEPTHWISE_CHUNK_BYTES, per_channel=taps * cog,
                                            per_thread=geom.c_out * taps)

    def work(b0, b1, c0, c1, scratch):
        m, c = b1 - b0, c1 - c0
        xp = _buffer(scratch, "xp", (m, c) + lay.padded, x.dtype, zeros=True)
        lay.interior(xp)[...] = x[b0:b1, c0:c1]
        gyw = _wide_gy(gy, geom, lay, b0, b1, c0, c1, scratch).reshape(m, c, cog, plane)
        dots = _buffer(scratch, "dots", (taps, m, c, cog), x.dtype)
        for t, (_, _, index) in enumerate(lay.taps()):
            shifted = xp[index]
            if not lay.wide:  # vecdot wants whole planes contiguous; the wide layout has them
                shifted = _buffer(scratch, "shifted", shifted.shape, x.dtype)
                np.copyto(shifted, xp[index])
            # The zero columns of gyw cancel the garbage that the wide rows read.
            np.vecdot(gyw, shifted.reshape(m, c, 1, plane), out=dots[t])
        # one sum over the item's images for every tap: numpy calls per tap cost more than the dots
        part = np.sum(dots, axis=1, out=_buffer(scratch, "part", (taps, c, cog), x.dtype))
        gw = _buffer(scratch, "gw", (g, cog, taps), x.dtype, zeros=True)  # this thread's sum
        gw[c0:c1] += part.transpose(1, 2, 0)

    scratches = _map_items(items, work, threads)
    gw = _sum_of(scratches, "gw").reshape(geom.w_shape)
    if lay.wide and not np.isfinite(gw.sum()):  # see _Planes
        return _grad_weight_depthwise(gy, x, geom, wide=False)
    return gw


def warmup(dtype):
    """Nothing to compile; BLAS needs no priming."""
