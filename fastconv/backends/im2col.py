"""im2col backend: the convolution as BLAS matrix products over an ``as_strided`` view of the input.

Forward: work items of a few images run on fastconv's threads, each on one BLAS thread; an item
copies its receptive fields once into a reused ``(C_in*kH*kW, OH*OW)`` patch matrix per image and
multiplies it straight into NCHW ``y`` (images too small for a good GEMM share one). A 1x1
stride-1 unpadded convolution multiplies the input itself. grad_weight is one GEMM per chunk of
images; grad_input is the forward of ``gy`` with the flipped kernel at unit stride, else a GEMM
folded back (col2im) by one strided add per kernel offset. Depthwise layers use shifted runs of
the planes, multiplied elementwise or in one batched product per block of channels, instead of a
tiny GEMM per channel (``_im2col_depthwise``). Extra memory is capped by
``set_memory_budget`` (default max(256 MiB, 2x input)), all threads' scratch together; the
budget, the thread pool and the work planning live in ``fastconv._workers``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._threads import call_threads, counted_call
from .._workers import (
    buffer,
    call_budget,
    chunks,
    holding,
    map_chunks,
    map_items,
    memory_budget,
    reserved,
    set_memory_budget,
    thread_plan,
    thread_share,
)
from ..geometry import Geometry
from . import _im2col_depthwise as _depthwise
from . import _im2col_shifted as _shifted
from ._lift import as_2d, lifted

NAME = "im2col"
# The memory budget's setter and rule live in fastconv._workers (every backend keeps to it);
# tests and the README name them here.
__all__ = ["NAME", "supports", "forward", "grad_input", "grad_weight", "warmup", "memory_budget",
           "set_memory_budget"]


def supports(geom, dtype, precision):
    """Every call: 1-D and 3-D run through the 2-D kernels (``_lift``), exact at any precision."""
    return None

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
# r28 (784) 1.24x per image against 1.36x grouped by 4. A batch of one image has its own GEMM: grouped,
# it went through two copies for nothing (a 1x1 kernel's input, which it multiplies where it lies, and
# the product): two threads, float32, an AMD Zen 4, medians of 30 calls, one 7x7 image 128 -> 1024
# 0.093 ms against 0.132, -> 2048 0.185 against 0.213.
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
# grad_input at unit stride runs as a forward of gy by the kernel flipped and transposed, a copy
# of C_in x C_out/groups x kH x kW elements (NumPy's strided copy: 2-3.5 ms at 512 x 512 x 3 x 3
# here), against the fold's adds over C_in x kH x kW x the batch's output pixels: where those are
# few beside the output channels, the fold is faster. Two threads, float32, 3x3 padded, C_in =
# C_out, gx time fold / as a forward, 11 interleaved rounds, by C_out over the batch's output
# pixels: 5.2 (C=512 N=2 7x7, C=256 N=1 7x7) 0.73, 0.71; 2.6 (N=1 7x7 C=128, 14x14 C=512; N=4 7x7
# C=512; N=2 7x7 C=256) 0.50, 0.76, 0.96, 1.00; 1.3 (N=1 14x14 C=256, N=2 14x14 C=512, N=4 7x7
# C=256, N=8 7x7 C=512) 0.88, 0.86, 1.02, 1.20; 0.65 and below 0.95-1.29 (2026-12-03).
FOLD_CHANNELS_PER_PIXEL = 2


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
    xp = buffer(scratch, "xp", (b1 - b0, geom.c_in, *_padded_shape(geom)), x.dtype, zeros=True)
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
        cols = buffer(scratch, "cols", (m, g, kg + ones, oh * ow), xp.dtype)
        # Splitting axes of a slice always gives a view, so the copy lands in cols.
        np.copyto(cols[:, :, :kg].reshape(windows.shape), windows)
    else:
        cols = buffer(scratch, "cols", (g, kg + ones, m * oh * ow), xp.dtype)
        windows = windows.transpose(1, 2, 3, 4, 0, 5, 6)
        np.copyto(cols[:, :kg].reshape(windows.shape), windows)
    if ones:
        cols[..., kg, :] = 1
    return cols


def _band_rows(geom, itemsize, fixed=0) -> int:
    """Output rows per band of one image's patch matrix: ``ROW_BAND_BYTES`` of it (see there), or
    less when a thread's share of the memory budget, beyond its padded copy of the image and
    ``fixed`` more elements, is smaller (one row at least); ``oh`` or more when the whole matrix
    fits at once."""
    room = thread_share(geom, itemsize) - (_padded_size(geom) + fixed) * itemsize
    return max(1, min(ROW_BAND_BYTES, room) // (geom.c_in * geom.kh * geom.kw * geom.ow * itemsize))


def _is_pointwise(geom) -> bool:
    """A 1x1 stride-1 unpadded convolution: the input is its own patch matrix."""
    return geom.kh == geom.kw == geom.sh == geom.sw == 1 and not _is_padded(geom)


def _is_depthwise(geom) -> bool:
    return geom.groups > 1 and geom.c_in_g == 1


# ---------------------------------------------------------------------------------- forward

@counted_call
@lifted
def forward(x, w, geom, bias=None):
    """``y = w @ cols`` per work item of a few images, spread over threads; depthwise has its own path.

    A GEMM per image writes its output straight into NCHW ``y``; images too small for a good GEMM
    are grouped (see ``GROUP_BELOW_PIXELS``). A 1x1 stride-1 unpadded convolution multiplies the
    input itself, with no copy.
    """
    if _is_depthwise(geom):
        return _depthwise.forward(x, w, geom, bias)
    if _shifted.applies(geom):
        return _shifted.forward(x, w, geom, bias, call_threads())
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    pointwise = _is_pointwise(geom)
    grouped = p < GROUP_BELOW_PIXELS and geom.n > 1
    copied = not pointwise or grouped  # else the input is its own patch matrix
    ones = bias is not None and copied  # see _patches; on one thread, mnist 1.2 -> 1.0 ms
    band = _band_rows(geom, x.itemsize) if copied and not grouped else geom.oh
    # a banded item holds one image's padded copy and one band of its patches at a time
    per_image = (geom.groups * (kg + ones) * min(band, geom.oh) * geom.ow + _padded_size(geom) if copied else 0) \
        + (geom.c_out * p if grouped else 0)
    want = max(-(-ITEM_MIN_MACS // (geom.c_out * kg * p)), -(-GROUP_COLUMNS // p) if grouped else 1)
    nb, threads = thread_plan(geom, x.itemsize, max(per_image, 1), 1 if band < geom.oh else want)
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
            yt = buffer(scratch, "yt", (g, cog, m * p), x.dtype)
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

    map_chunks(geom.n, nb, work, threads)
    return y


# ---------------------------------------------------------------------------- grad_weight

def _matmul_nt(a, b, out):
    """``out = a @ b.T`` over a long shared axis, written to ``out`` (..., m, n), C-contiguous.

    OpenBLAS has run such a product up to several times faster when the longer side of the result
    is its rows (measured: (147 x 64) from rows of 37632 in 16 ms, its transpose in 370 ms); the
    other orientation lands in a transposed scratch of ``out``'s size, where that result is small
    beside the operands. A large one costs more to copy back than it saves: the weight gradient of
    one 7x7 image with 1024 channels, (1024 x 9216) from rows of 49, took 110 ms that way and 6.6
    ms directly (2 threads; 512 x 4608 from rows of 196: 12.8 against 5.0).
    """
    (m, k), n = a.shape[-2:], b.shape[-2]
    if m >= n or 8 * m * n > k * (m + n):
        np.matmul(a, b.swapaxes(-1, -2), out=out)
    else:
        scratch = np.empty(out.shape[:-2] + out.shape[:-3:-1], out.dtype)
        np.matmul(b, a.swapaxes(-1, -2), out=scratch)
        np.copyto(out, scratch.swapaxes(-1, -2))


@counted_call
@lifted
def grad_weight(gy, x, geom):
    """``gw += gy_chunk @ cols.T``: one GEMM per chunk and group, contracting over images too;
    chunks spread over threads as in the forward pass, their parts added in chunk order."""
    if _is_depthwise(geom):
        return _depthwise.grad_weight(gy, x, geom)
    if _shifted.applies(geom):
        return _shifted.grad_weight(gy, x, geom, call_threads(), _matmul_nt)
    if split_by_channels(geom) and _split_fits(geom, x.itemsize):
        return _grad_weight_by_channels(gy, x, geom)
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    sums = g * cog * kg
    band = _band_rows(geom, x.itemsize, 4 * sums)  # (beside the banded way's sums: ``_grad_weight_banded``)
    per_image = geom.c_in * geom.kh * geom.kw * p + _padded_size(geom) + geom.c_out * p
    if band < geom.oh and (band * geom.ow >= BAND_MIN_CONTRACTION
                           or per_image * x.itemsize > thread_share(geom, x.itemsize)):
        # (not where one thread's band with its extra sums passes the budget and holds more than a
        # whole image would: the sums of many values from a short contraction)
        banded = geom.c_in * geom.kh * geom.kw * band * geom.ow + _padded_size(geom) + 4 * sums + reserved()
        if banded * x.itemsize <= call_budget(geom, x.itemsize) or banded < per_image + 3 * sums + reserved():
            return _grad_weight_banded(gy, x, geom, band)
    # fixed: per thread a part, a copy of one waiting for the chunks ahead, _matmul_nt's scratch
    nb, threads = thread_plan(geom, x.itemsize, per_image, PREFERRED_CHUNK_BYTES // (per_image * x.itemsize),
                              fixed=3 * g * cog * kg)
    # One chunk (a small batch): its product is the gradient, written in place; a zeroed total
    # and the part added to it cost 25 % of the call at N=1 C=512 7x7 (0.85 of 3.3 ms).
    one = nb >= geom.n
    gw = np.empty((g, cog, kg), x.dtype) if one else np.zeros((g, cog, kg), x.dtype)

    def work(b0, b1, scratch):
        m = b1 - b0
        cols = _patches(_padded(x, b0, b1, geom, scratch), geom, scratch, image_major=False)
        # gy gathered channel-major, like cols, so that images join the contraction
        gyc = buffer(scratch, "gy", (g, cog, m, p), x.dtype)
        np.copyto(gyc, gy[b0:b1].reshape(m, g, cog, p).transpose(1, 2, 0, 3))
        part = gw if one else buffer(scratch, "part", (g, cog, kg), x.dtype)
        _matmul_nt(gyc.reshape(g, cog, m * p), cols, part)
        return Ellipsis, part

    map_chunks(geom.n, nb, work, threads, None if one else gw)
    return gw.reshape(geom.w_shape)


# A weight gradient of many values from a short contraction (few pixels: small images, a small
# batch) is split by input channels over the threads, each thread contracting over the whole
# batch for its own columns of the gradient (no parts to add, BLAS on one thread each), rather
# than by images, each thread a part of the whole gradient, added after. Two threads, float32,
# 3x3, time by channels / by images, separate processes alternating per sample, 9 rounds
# (2026-12-05): C=512 7x7 N=2 0.52, N=4 0.53, N=8 0.74; N=8 C=384 7x7 0.85; 14x14 N=32 C=256 (94
# values a pixel) 0.72, N=2 0.95; but N=16 C=128 14x14 (47) 1.06. In one process, interleaved, ms:
# C=512 7x7 N=16 17.3 / 21.4, N=32 34.4 / 36.4; N=32 C=128 28x28 (5.9) 47.3 / 44.9, C=64 56x56 71.4 /
# 53.4. One image stays one product on BLAS's threads (N=1 C=512 14x14 by channels 1.14).
SPLIT_VALUES_PER_PIXEL = 64  # gradient values per pixel contracted (images x output pixels), at least


def shifted_columns(geom) -> bool:
    """Whether a call runs on the shifted columns (``_im2col_shifted``: a k x 1 kernel at unit
    stride, unpadded across), read on the 2-D call that runs: for ``"auto"``."""
    return _shifted.applies(as_2d(geom))


def split_by_channels(geom) -> bool:
    """Whether 2-D ``geom``'s weight gradient splits the input channels over the threads
    (``SPLIT_VALUES_PER_PIXEL``): one group, two images and two threads or more; ``grad_weight``
    does so where that also fits the memory budget (``_split_fits``)."""
    pixels = geom.n * geom.oh * geom.ow
    return (geom.groups == 1 and call_threads() >= 2 and geom.n >= 2 and geom.c_in >= 2
            and geom.c_out * geom.c_in * geom.kh * geom.kw >= SPLIT_VALUES_PER_PIXEL * pixels)


def _split_fits(geom, itemsize) -> bool:
    """Whether each thread's padded copy and patches of its input channels over the whole batch,
    with the output gradient gathered once, fit the call's memory budget."""
    threads = call_threads()
    part = -(-geom.c_in // threads) / geom.c_in  # a thread's share of the channels
    per_thread = part * geom.n * (geom.c_in * geom.kh * geom.kw * geom.oh * geom.ow + _padded_size(geom))
    need = threads * (per_thread + reserved()) + geom.c_out * geom.n * geom.oh * geom.ow
    return need * itemsize <= call_budget(geom, itemsize)


def _grad_weight_by_channels(gy, x, geom):
    """``split_by_channels``' weight gradient: each thread one GEMM, the whole batch's output
    gradient (channel-major) times its input channels' patches, into its columns of the result."""
    threads = call_threads()
    n, p, taps = geom.n, geom.oh * geom.ow, geom.kh * geom.kw
    gyc = np.empty((geom.c_out, n, p), x.dtype)  # images joined in the contraction
    np.copyto(gyc, gy.reshape(n, geom.c_out, p).transpose(1, 0, 2))
    gyc = gyc.reshape(geom.c_out, n * p)
    gw = np.empty((geom.c_out, geom.c_in * taps), x.dtype)

    def work(c0, c1, scratch):
        part = Geometry.from_args((n, c1 - c0, geom.ih, geom.iw), (geom.c_out, c1 - c0, geom.kh, geom.kw),
                                  stride=geom.stride, padding=geom.padding, dilation=geom.dilation)
        cols = _patches(_padded(x[:, c0:c1], 0, n, part, scratch), part, scratch, image_major=False)
        np.matmul(gyc, cols[0].T, out=gw[:, c0 * taps:c1 * taps])

    map_items(list(chunks(geom.c_in, -(-geom.c_in // threads))), work, threads)
    return gw.reshape(geom.w_shape)


def _grad_weight_banded(gy, x, geom, band):
    """Large images: a GEMM per band of ``band`` output rows of one image, whose patches stay in
    cache, contracting over the band's pixels; ``gy``'s rows are read where they lie."""
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    per_image = geom.c_in * geom.kh * geom.kw * band * geom.ow + _padded_size(geom)
    # fixed: per thread the item's part, a band's, a copy waiting for the items ahead, _matmul_nt's scratch
    nb, threads = thread_plan(geom, x.itemsize, per_image, 1, fixed=4 * g * cog * kg)

    def work(b0, b1, scratch):
        part = buffer(scratch, "part", (g, cog, kg), x.dtype)
        for i in range(b0, b1):
            xp = _padded(x, i, i + 1, geom, scratch)
            gyi = gy[i].reshape(g, cog, p)
            for r0 in range(0, geom.oh, band):  # the bands' sum in band order, in this item
                r1 = min(geom.oh, r0 + band)
                cols = _patches(xp, geom, scratch, image_major=True, rows=slice(r0, r1))
                first = i == b0 and r0 == 0
                out = part if first else buffer(scratch, "band", (g, cog, kg), x.dtype)
                _matmul_nt(gyi[:, :, r0 * geom.ow:r1 * geom.ow], cols[0], out)
                if not first:
                    part += out
        return Ellipsis, part

    return map_chunks(geom.n, nb, work, threads, np.zeros((g, cog, kg), x.dtype)).reshape(geom.w_shape)


# ----------------------------------------------------------------------------- grad_input

@counted_call
@lifted
def grad_input(gy, w, geom):
    """``gcols = w.T @ gy`` per image, then col2im: one strided add per kernel offset; with unit
    stride (usually) a forward convolution of ``gy`` instead."""
    if _is_pointwise(geom):
        return _grad_input_pointwise(gy, w, geom)
    transposed = _as_forward(geom)
    if transposed is not None and (geom.c_out_g == 1 or not _is_depthwise(geom)):
        flipped = _flipped(w, geom)
        with holding(flipped.nbytes):  # (the forward plans its scratch beside the copy)
            gx = forward(gy, flipped, transposed)
        del flipped
        # The zeros padded around gy meet every weight; should one be infinite, 0 * inf puts
        # NaN where the exact sum has none, so the rare non-finite result is redone by the fold.
        if np.isfinite(gx.sum()):
            return gx
    if _is_depthwise(geom):
        return _depthwise.grad_input(gy, w, geom)
    g, cog, p = geom.groups, geom.c_out_g, geom.oh * geom.ow
    kg = geom.c_in_g * geom.kh * geom.kw
    hp, wp = _padded_shape(geom)
    padded = _is_padded(geom)
    per_image = geom.c_in * geom.kh * geom.kw * p + _padded_size(geom)
    # Bands of output rows only when one image's patches do not fit in a thread's share of the
    # budget: the fold's strided adds per band cost more than cache misses save (stem: +5-12 %).
    band = geom.oh
    if per_image * gy.itemsize > thread_share(geom, gy.itemsize):
        band = min(_band_rows(geom, gy.itemsize), geom.oh)
        per_image = geom.c_in * geom.kh * geom.kw * band * geom.ow + _padded_size(geom)
    want = 1 if band < geom.oh else -(-ITEM_MIN_MACS // (geom.c_out * kg * p))
    nb, threads = thread_plan(geom, gy.itemsize, per_image, want)
    gx = np.empty(geom.x_shape, gy.dtype)
    wt = w.reshape(g, cog, kg).transpose(0, 2, 1)
    tiled = _tiled(geom)

    def work(b0, b1, scratch):
        # As in the forward pass: a GEMM per image (or band of its rows), then their fold.
        m = b1 - b0
        gys = gy[b0:b1].reshape(m, g, cog, p)
        gxp = buffer(scratch, "gxp", (m, geom.c_in, hp, wp), gy.dtype) if padded else gx[b0:b1]
        if tiled != "exact":
            gxp[...] = 0
        for r0 in range(0, geom.oh, band):
            r1 = min(geom.oh, r0 + band)
            gcols = buffer(scratch, "gcols", (m, geom.c_in, geom.kh, geom.kw, r1 - r0, geom.ow), gy.dtype)
            np.matmul(wt, gys[..., r0 * geom.ow:r1 * geom.ow], out=gcols.reshape(m, g, kg, -1))
            if tiled:  # each pixel from one tap at most: the fold is one copy into the windows
                sn, sc, sy, sx = gxp.strides
                windows = as_strided(gxp[:, :, r0 * geom.sh:], (m, geom.c_in, r1 - r0, geom.kh, geom.ow, geom.kw),
                                     (sn, sc, sy * geom.sh, sy, sx * geom.sw, sx))
                np.copyto(windows, gcols.transpose(0, 1, 4, 2, 5, 3))
                continue
            for ky, kx, rows, cols in _taps(geom):
                rows = slice(rows.start + r0 * geom.sh, rows.start + (r1 - 1) * geom.sh + 1, geom.sh)
                gxp[:, :, rows, cols] += gcols[:, :, ky, kx]
        if padded:
            gx[b0:b1] = gxp[:, :, geom.pt:geom.pt + geom.ih, geom.pl:geom.pl + geom.iw]

    map_chunks(geom.n, nb, work, threads)
    return gx


def _tiled(geom):
    """Whether the fold of ``grad_input`` is one copy: undilated windows that do not overlap (a
    stride at least the kernel along each axis: a ViT's 16x16 patches at stride 16), ``"exact"``
    where they also cover the padded input (nothing left to zero). The taps' strided adds took
    1024 passes over the output gradient's columns at 32x32 (two threads, float32, N=16 3 -> 768
    256x256: the input gradient 92 ms against numba's 32)."""
    if (geom.dil_h, geom.dil_w) != (1, 1) or geom.sh < geom.kh or geom.sw < geom.kw:
        return False
    exact = (geom.oh * geom.sh, geom.ow * geom.sw, geom.kh, geom.kw) == (*_padded_shape(geom), geom.sh, geom.sw)
    return "exact" if exact else True


def _as_forward(geom):
    """The geometry of ``grad_input`` run as a forward convolution of ``gy``, or None.

    With unit stride, ``gx`` is the correlation of ``gy``, padded by the dilated kernel span less
    the original padding, with the flipped, transposed kernel. That is an im2col copy of ``gy``
    (cheaper than the fold's read-modify-write adds) and a GEMM contracting over C_out*kH*kW.
    It needs no cropping: every original padding at most ``dil*(k-1)``, as is usual. Its patch
    matrix holds C_out*kH*kW rows against the fold's C_in*kH*kW, so it is only taken while C_out
    is at most twice C_in (or the kernel is 1x1: no blow-up either way); MNIST's first layer
    (1 -> 32 channels) folds 4x faster. Nor where the batch has few output pixels beside the
    output channels (``FOLD_CHANNELS_PER_PIXEL``): the kernel's flipped copy then costs more than
    the fold.
    """
    if geom.c_out > 2 * geom.c_in and geom.kh * geom.kw > 1:
        return None
    if geom.kh * geom.kw > 1 and geom.n * geom.oh * geom.ow * FOLD_CHANNELS_PER_PIXEL <= geom.c_out_g:
        return None
    return geom.input_gradient_as_forward()


def _flipped(w, geom):
    """The kernel of :func:`_as_forward`: ``(c_in, c_out/groups, kh, kw)``, rotated 180 degrees."""
    w5 = w.reshape(geom.groups, geom.c_out_g, geom.c_in_g, geom.kh, geom.kw)
    return np.ascontiguousarray(w5.transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]).reshape(
        geom.c_in, geom.c_out_g, geom.kh, geom.kw)


def _grad_input_pointwise(gy, w, geom):
    """``gx = w.T @ gy`` per image, with no copy; images spread over threads like the forward
    pass's, so that the call keeps to its thread count whatever BLAS's own."""
    g, cog, cig, p = geom.groups, geom.c_out_g, geom.c_in_g, geom.ih * geom.iw
    gx = np.empty(geom.x_shape, gy.dtype)
    wt = w.reshape(g, cog, cig).transpose(0, 2, 1)
    nb, threads = thread_plan(geom, gy.itemsize, 1, -(-ITEM_MIN_MACS // (geom.c_out * cig * p)))

    def work(b0, b1, scratch):
        m = b1 - b0
        np.matmul(wt, gy[b0:b1].reshape(m, g, cog, p), out=gx[b0:b1].reshape(m, g, cig, p))

    map_chunks(geom.n, nb, work, threads)
    return gx


def warmup(dtype):
    """Nothing to compile; BLAS needs no priming."""

