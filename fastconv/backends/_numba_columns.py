"""Numba kernels of the ``numba`` backend for kernels one pixel wide at unit stride, unpadded sideways
(``k x 1``, the ``1 x 1`` kernel included), over long rows: the forward pass (also each stride
phase of the input gradient) and the weight gradient, with no packed copy of the input.

Such a kernel keeps the width (``OW == W``), and with the rows of an image laid end to end, tap
``ky`` of output column ``c`` (flat) reads input column ``c + (ky*dil_h - pt)*W``: one fixed shift
per tap. So every (input channel, ky) term of the sum is a contiguous run of the input itself, and
the rows of the zero padding are the columns a tap does not reach. A 3-D temporal ``kD x 1 x 1``
kernel arrives here from the lift as a ``(kD, 1)`` kernel over ``(D, H*W)``, whose packed band (all
channels x kD rows of 3136 pixels for 56x56 planes) was copied once per output row: the copy cost
as much as a third of the sum. The same route is im2col's ``_im2col_shifted``, with BLAS's products
in place of these loops.

A task is (image, group, chunk of flat output columns, block of CB output channels), the blocks
innermost so that the chunk's runs (input channels x kernel rows x ``CHUNK`` columns) stay in L2
while every block reads them; 4 runs x 4 output channels share each load and store of an
accumulator kept in L1. Taps never read the padding: where the reference's ``inf * 0`` there gives
NaN, the caller puts it back (``padding_products``). Scratch: the packed weights (as large as w) and
per thread a ``CB x CHUNK`` accumulator.
"""

from collections import namedtuple

from ._numba_kernels import _JIT, CB, RUN_PAD, TILE, _aligned, _axpy4x1, _axpy4x4, _dot4x4, _rows4, njit

CHUNK = 512  # flat output columns per task (float32: the runs of 64 channels x 3 taps, 384 KiB, in L2)


def applies(kw, sh, sw, pl, iw, ow, by_size=None) -> bool:
    """Whether a 2-D call (kernel width, strides, left padding, input and output widths) takes
    these kernels: a ``k x 1`` kernel whose output columns are input columns (the width kept; an
    input gradient's phase may read a cut of its input, ``-pl`` columns in, which the caller
    copies out first), over rows so long that the packed path's
    band is one row (copied again for every output row, kH times the input). With ``by_size`` (a
    bool), that answer replaces the one by the rows' length (a chunk of a larger array takes the
    kernels where the whole array's call does: ``numba_jit.choosing_as``). On shorter rows the
    packed path is as fast or faster (its runs are whole bands; here a tap that stops at the
    image's top or bottom row leaves a run that is not whole vectors): measured 2 threads, float32,
    7x1 over 8x64x28x28 1.33 ms packed against 1.62, 3x1 over 4x64x16x384 a tie, over widths 640
    and 2048 4.1 against 4.9 ms and 6.5 against 8.2; 3x1x1 over 2x64x16x56x56 11.6 against 14.4."""
    if not (kw == 1 and sh == sw == 1 and pl <= 0 and ow - pl <= iw):
        return False
    return CB * ow * 2 > TILE if by_size is None else by_size


ColumnsLayout = namedtuple("ColumnsLayout", [
    "nblk",    # blocks of CB output channels per group
    "nchunk",  # chunks of each image's flat output columns
    "chunk",   # columns per chunk (the last one may be shorter)
    "ntask",   # (image, group, chunk, block) tasks
    "nslot",   # threads that take a range of them
    "wsize",   # elements of the packed weights (first in the float workspace)
    "astride",  # elements between accumulator rows
    "slot",    # elements of one thread's accumulator
])


@njit(**_JIT)
def _columns_layout(n, c_out, c_in_g, kh, oh, ow, groups, nthreads):  # pragma: no cover
    """How ``_columns_part`` cuts its work and scratch; shared with ``_columns_scratch``."""
    nblk = (c_out // groups + CB - 1) // CB
    total = oh * ow
    nchunk = max(1, (total + CHUNK - 1) // CHUNK)
    chunk = (total + nchunk - 1) // nchunk
    chunk = min(total, (chunk + RUN_PAD - 1) // RUN_PAD * RUN_PAD)  # whole vectors but at the end
    nchunk = (total + chunk - 1) // chunk
    ntask = n * groups * nchunk * nblk
    nslot = min(ntask, nthreads)
    wsize = _aligned(groups * nblk * kh * c_in_g * CB)
    # rows of whole vectors (runs are rounded up to them), plus one line: rows a multiple of 4 KiB
    # apart make each load of a row wait on the store to another (4K aliasing)
    astride = _aligned(chunk) + 16
    return ColumnsLayout(nblk, nchunk, chunk, ntask, nslot, wsize, astride, _aligned(CB * astride))


@njit(**_JIT)
def _columns_scratch(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads):  # pragma: no cover
    """Elements of the float workspace and of the int64 one (none) that ``_columns_part`` needs
    (``_forward_scratch``'s signature)."""
    lay = _columns_layout(n, c_out, c_in_g, kh, oh, ow, groups, nthreads)
    return lay.wsize + lay.nslot * lay.slot, 0


@njit(inline="always", **_JIT)
def _columns_views(w, y, groups, nthreads, fws):  # pragma: no cover
    """``_columns_part``'s layout and its packed weights in ``fws``: ``wp[g*nblk + b, ky, ci, j]``."""
    c_out, c_in_g, kh = w.shape[0], w.shape[1], w.shape[2]
    lay = _columns_layout(y.shape[0], c_out, c_in_g, kh, y.shape[2], y.shape[3], groups, nthreads)
    return lay, fws[:groups * lay.nblk * kh * c_in_g * CB].reshape((groups * lay.nblk, kh, c_in_g, CB))


@njit(**_JIT)
def _columns_prepare(x, w, bias, y, pt, dil_h, groups, nthreads, fws, iws):  # pragma: no cover
    """The packed weights every slot reads, zero past each group's last output channel (so a
    remainder block runs the same 4-channel code; its extra rows are dropped)."""
    lay, wp = _columns_views(w, y, groups, nthreads, fws)
    c_out, c_in_g, kh = w.shape[0], w.shape[1], w.shape[2]
    c_out_g = c_out // groups
    wp[:] = 0
    for g in range(groups):
        for b in range(lay.nblk):
            for j in range(min(CB, c_out_g - b * CB)):
                co = g * c_out_g + b * CB + j
                for ky in range(kh):
                    for ci in range(c_in_g):
                        wp[g * lay.nblk + b, ky, ci, j] = w[co, ci, ky, 0]


@njit(inline="always", **_JIT)
def _tap_columns(ky, dil_h, pt, iw, plane, c0, c1):  # pragma: no cover
    """Tap ``ky``'s shift in the flat input, and the output columns ``lo:hi`` within ``c0:c1``
    whose input row lies inside the image (``lo >= hi``: none)."""
    shift = (ky * dil_h - pt) * iw
    return shift, max(c0, -shift), min(c1, plane - shift)


@njit(**_JIT)
def _columns_slot(x, bias, y, pt, dil_h, groups, lay, wp, acc, t0, t1):  # pragma: no cover
    """Tasks ``t0:t1`` of ``_columns_part`` with the accumulator ``acc`` (CB rows ``lay.astride``
    apart)."""
    n, c_in, ih, iw = x.shape
    c_out, total = y.shape[1], y.shape[2] * y.shape[3]
    c_in_g, c_out_g = c_in // groups, c_out // groups
    kh = wp.shape[1]
    plane = ih * iw
    xf = x.reshape(x.size)  # runs are open-ended slices of the flat input (see _mac4)
    yf = y.reshape((n, c_out, total))
    st = lay.astride
    a0 = acc[:st]
    a1 = acc[st:2 * st]
    a2 = acc[2 * st:3 * st]
    a3 = acc[3 * st:4 * st]
    for task in range(t0, t1):
        b = task % lay.nblk
        rest = task // lay.nblk
        c0 = rest % lay.nchunk * lay.chunk
        g = rest // lay.nchunk % groups
        bn = rest // (lay.nchunk * groups)
        c1 = min(total, c0 + lay.chunk)
        a0[:] = 0
        a1[:] = 0
        a2[:] = 0
        a3[:] = 0
        wb = wp[g * lay.nblk + b]
        base = (bn * c_in + g * c_in_g) * plane  # the group's first input channel
        for ky in range(kh):
            shift, lo, hi = _tap_columns(ky, dil_h, pt, iw, plane, c0, c1)
            if lo >= hi:
                continue
            o, cnt = lo - c0, hi - lo
            s = base + lo + shift
            # A run that ends at the chunk's end is rounded up to whole vectors (no scalar loop: a
            # 1x1 kernel over 14x14 images ran 1.3x slower with one): its extra columns read the
            # next input row or channel and land in accumulator columns that are never copied
            # out; not past the input's end, nor where the tap stops at the image's last row
            # (the columns after it are real outputs).
            if hi == c1 and s + (c_in_g - 1) * plane + (cnt + RUN_PAD - 1) // RUN_PAD * RUN_PAD <= x.size:
                cnt = (cnt + RUN_PAD - 1) // RUN_PAD * RUN_PAD
            ci = 0
            while ci + 4 <= c_in_g:
                r = s + ci * plane
                _axpy4x4(a0[o:], a1[o:], a2[o:], a3[o:], xf[r:], xf[r + plane:], xf[r + 2 * plane:],
                         xf[r + 3 * plane:], wb[ky, ci:ci + 4], cnt)
                ci += 4
            while ci < c_in_g:  # the last 1-3 input channels
                _axpy4x1(a0[o:], a1[o:], a2[o:], a3[o:], xf[s + ci * plane:], wb[ky, ci], cnt)
                ci += 1
        co0 = g * c_out_g + b * CB
        for j in range(min(CB, c_out_g - b * CB)):
            yr = yf[bn, co0 + j, c0:c1]
            ar = acc[j * st:]
            if bias.size:
                bj = bias[co0 + j]
                for i in range(c1 - c0):
                    yr[i] = ar[i] + bj
            else:
                for i in range(c1 - c0):
                    yr[i] = ar[i]


@njit(**_JIT)
def _columns_part(x, w, bias, y, pt, dil_h, groups, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of y[n, co] = bias[co] (none if empty) + sum over the group's
    ci and ky of w[co, ci, ky, 0] * x[n, ci] shifted by ``ky*dil_h - pt`` rows, after
    ``_columns_prepare``; each slot takes one contiguous range of the tasks."""
    lay, wp = _columns_views(w, y, groups, nthreads, fws)
    if slot >= lay.nslot:
        return
    base = lay.wsize + slot * lay.slot
    _columns_slot(x, bias, y, pt, dil_h, groups, lay, wp, fws[base:base + lay.slot],
                  lay.ntask * slot // lay.nslot, lay.ntask * (slot + 1) // lay.nslot)


# The weight gradient of the same kernels: gw[co, ci, ky] = sum over images and flat columns c of
# gy[n, co, c] * x[n, ci, c + shift(ky)], over the columns whose tap lies inside. A task is a
# block of CB output channels; each slot owns a range of them (it writes their rows of gw, so no
# partial sums are kept or added across threads, and the sums' order does not depend on the thread
# count) and walks the images' columns a chunk at a time, every block of its range running over
# the chunk while the chunk's gy and input runs are in L2: 4 gy rows x 4 input runs per dot product.
@njit(**_JIT)
def _columns_gw_part(gy, x, gw, pt, dil_h, groups, zero, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of the weight gradient above (no scratch)."""
    n, c_in, ih, iw = x.shape
    c_out, c_in_g, kh = gw.shape[0], gw.shape[1], gw.shape[2]
    c_out_g = c_out // groups
    total = gy.shape[2] * gy.shape[3]
    plane = ih * iw
    nblk = (c_out_g + CB - 1) // CB
    ntask = groups * nblk
    nslot = min(ntask, nthreads)
    if slot >= nslot:
        return
    t0, t1 = ntask * slot // nslot, ntask * (slot + 1) // nslot
    xf = x.reshape((n, c_in, plane))
    gyf = gy.reshape((n, c_out, total))
    for task in range(t0, t1):
        co0 = task // nblk * c_out_g + task % nblk * CB
        for j in range(min(CB, c_out_g - task % nblk * CB)):
            gw[co0 + j] = zero
    for bn in range(n):
        for c0 in range(0, total, CHUNK):
            c1 = min(total, c0 + CHUNK)
            for task in range(t0, t1):
                g = task // nblk
                co0 = g * c_out_g + task % nblk * CB
                cb = min(CB, c_out_g - task % nblk * CB)
                for ky in range(kh):
                    shift, lo, hi = _tap_columns(ky, dil_h, pt, iw, plane, c0, c1)
                    if lo >= hi:
                        continue
                    cnt = hi - lo
                    y0, y1, y2, y3 = _rows4(gyf[bn], co0, lo, hi)
                    xg = xf[bn, g * c_in_g:(g + 1) * c_in_g]
                    ci = 0
                    while ci < c_in_g:
                        x0, x1, x2, x3 = _rows4(xg, ci, lo + shift, hi + shift)  # repeats past the last
                        sums = _dot4x4(y0, y1, y2, y3, x0, x1, x2, x3, cnt, zero)
                        for j in range(cb):
                            for i in range(min(4, c_in_g - ci)):
                                gw[co0 + j, ci + i, ky, 0] += sums[j][i]
                        ci += 4
