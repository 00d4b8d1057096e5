"""Numba kernels of the ``numba`` backend: arrays and plain ints in, results written into outputs.

Index convention (as in ``reference.py``): output pixel ``(oy, ox)`` reads input pixel
``(oy*sh - pt + ky*dil_h, ox*sw - pl + kx*dil_w)``. The packed path copies the input with its zero
padding, a band of rows at a time; the direct loops of the input gradient (``_grad_input``, also
the exact fallback of the weight gradient's ``_gw_rows``) run only over the taps that land inside.
"""

from collections import namedtuple

import numpy as np
from numba import njit as _njit
from numba.extending import register_jitable

from .. import _cache

# fastmath without 'nnan'/'ninf': NaN and inf still propagate as in torch; 'reassoc' lets LLVM
# vectorise the dot products of the weight gradient, 'contract' fuses multiply-adds.
_FASTMATH = {"reassoc", "contract"}
_CACHE = _cache.numba_enabled()
_JIT = dict(nogil=True, cache=_CACHE, fastmath=_FASTMATH, error_model="numpy")


def njit(**options):
    """``numba.njit`` whose ``cache=True`` means fastconv's cache (``fastconv._cache``: a per-user,
    versioned directory, damaged files refused), not Numba's, which writes beside the package;
    in memory when that directory is not writable."""
    def decorate(fn):
        dispatcher = _njit(**dict(options, cache=False))(fn)
        if options.get("cache"):
            _cache.attach_numba_cache(dispatcher)
        return dispatcher
    return decorate


# The multiply-add bodies, each written once. CB (and CI) is the width of these register tiles,
# not a free setting: the helpers name their four accumulators, sources and weights as scalars,
# which is what keeps them in registers (Numba has no stack arrays: a loop over a small array of
# accumulators would load and store them at every step). Another width means new helpers.
# The helpers take their rows as separate 1-D views: 4-tuples of views passed into them cost
# 1.1-1.5x in the forward pass (measured), so ``_rows4`` and its kin are unpacked where called. A
# caller with fewer than 4 channels gets repeated rows from them and uses only the first ``cb``.
CB = 4  # output channels computed together: each input load feeds CB multiply-adds
CI = 4  # gy channels per pass of the input gradient's flat path (each gx load and store feeds CB*CI)


@njit(inline="always", **_JIT)
def _rows4(a, r0, lo, hi):  # pragma: no cover
    """(a[r0, lo:hi], ..., a[r0 + 3, lo:hi]), rows past ``a``'s last repeating it (never used)."""
    last = a.shape[0] - 1
    return (a[r0, lo:hi], a[min(r0 + 1, last), lo:hi], a[min(r0 + 2, last), lo:hi],
            a[min(r0 + 3, last), lo:hi])


@njit(inline="always", **_JIT)
def _strided4(a, r0, lo, step, cnt):  # pragma: no cover
    """``_rows4`` of ``cnt`` elements ``step`` apart from ``lo``."""
    last = a.shape[0] - 1
    hi = lo + (cnt - 1) * step + 1
    return (a[r0, lo:hi:step], a[min(r0 + 1, last), lo:hi:step], a[min(r0 + 2, last), lo:hi:step],
            a[min(r0 + 3, last), lo:hi:step])


@njit(inline="always", **_JIT)
def _runs4(xp, offs, t, cnt):  # pragma: no cover
    """The packed input's runs of terms t..t+3: 4 views of ``cnt`` elements."""
    return (xp[offs[t]:offs[t] + cnt], xp[offs[t + 1]:offs[t + 1] + cnt],
            xp[offs[t + 2]:offs[t + 2] + cnt], xp[offs[t + 3]:offs[t + 3] + cnt])


@njit(inline="always", **_JIT)
def _axpy4x4(a0, a1, a2, a3, x0, x1, x2, x3, wt, cnt):  # pragma: no cover
    """a_j[k] += sum over i of wt[i, j] * x_i[k]: 16 multiply-adds per load and store of a_j."""
    w00, w01, w02, w03 = wt[0, 0], wt[1, 0], wt[2, 0], wt[3, 0]
    w10, w11, w12, w13 = wt[0, 1], wt[1, 1], wt[2, 1], wt[3, 1]
    w20, w21, w22, w23 = wt[0, 2], wt[1, 2], wt[2, 2], wt[3, 2]
    w30, w31, w32, w33 = wt[0, 3], wt[1, 3], wt[2, 3], wt[3, 3]
    for k in range(cnt):
        v0 = x0[k]
        v1 = x1[k]
        v2 = x2[k]
        v3 = x3[k]
        a0[k] += w00 * v0 + w01 * v1 + w02 * v2 + w03 * v3
        a1[k] += w10 * v0 + w11 * v1 + w12 * v2 + w13 * v3
        a2[k] += w20 * v0 + w21 * v1 + w22 * v2 + w23 * v3
        a3[k] += w30 * v0 + w31 * v1 + w32 * v2 + w33 * v3


@njit(inline="always", **_JIT)
def _axpy1x4(a, x0, x1, x2, x3, wv, cnt):  # pragma: no cover
    """a[k] += sum over i of wv[i] * x_i[k]: one row fed by 4 sources (one channel, 4 terms)."""
    w0, w1, w2, w3 = wv[0], wv[1], wv[2], wv[3]
    for k in range(cnt):
        a[k] += w0 * x0[k] + w1 * x1[k] + w2 * x2[k] + w3 * x3[k]


@njit(inline="always", **_JIT)
def _axpy4x1(a0, a1, a2, a3, x, wv, cnt):  # pragma: no cover
    """a_j[k] += wv[j] * x[k]: 4 rows fed by one source (one term, 4 channels)."""
    w0, w1, w2, w3 = wv[0], wv[1], wv[2], wv[3]
    for k in range(cnt):
        v = x[k]
        a0[k] += w0 * v
        a1[k] += w1 * v
        a2[k] += w2 * v
        a3[k] += w3 * v


@njit(inline="always", **_JIT)
def _axpy(a, x, w, cnt):  # pragma: no cover
    """a[k] += w * x[k]."""
    for k in range(cnt):
        a[k] += w * x[k]


@njit(inline="always", **_JIT)
def _dot4x4(y0, y1, y2, y3, x0, x1, x2, x3, cnt, zero):  # pragma: no cover
    """s[j][i] = dot(y_j[:cnt], x_i[:cnt]): 16 sums in registers, 8 loads per 16 multiply-adds."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for k in range(cnt):
        v0 = x0[k]
        v1 = x1[k]
        v2 = x2[k]
        v3 = x3[k]
        u = y0[k]
        s00 += u * v0
        s01 += u * v1
        s02 += u * v2
        s03 += u * v3
        u = y1[k]
        s10 += u * v0
        s11 += u * v1
        s12 += u * v2
        s13 += u * v3
        u = y2[k]
        s20 += u * v0
        s21 += u * v1
        s22 += u * v2
        s23 += u * v3
        u = y3[k]
        s30 += u * v0
        s31 += u * v1
        s32 += u * v2
        s33 += u * v3
    return ((s00, s01, s02, s03), (s10, s11, s12, s13), (s20, s21, s22, s23), (s30, s31, s32, s33))


@njit(inline="always", **_JIT)
def _dot1x4(u, x0, x1, x2, x3, cnt, zero):  # pragma: no cover
    """s[i] = dot(u[:cnt], x_i[:cnt]) for the 4 rows x_i: each load of u feeds 4 sums."""
    s0 = s1 = s2 = s3 = zero
    for k in range(cnt):
        v = u[k]
        s0 += v * x0[k]
        s1 += v * x1[k]
        s2 += v * x2[k]
        s3 += v * x3[k]
    return s0, s1, s2, s3


@njit(inline="always", **_JIT)
def _dot(u, x, cnt, zero):  # pragma: no cover
    """dot(u[:cnt], x[:cnt])."""
    s = zero
    for k in range(cnt):
        s += u[k] * x[k]
    return s


@njit(inline="always", **_JIT)
def _scatter_tap(g0, g1, g2, g3, s0, s1, s2, s3, wt, cb, step, cnt):  # pragma: no cover
    """One tap of the input gradient: g_j += sum over the ``step`` gy rows s_i of wt[i, j] * s_i,
    for the ``cb`` gx rows g_j: the 4x4 tile with 4 of each, else one gy row at a time."""
    if step == CI:
        _axpy4x4(g0, g1, g2, g3, s0, s1, s2, s3, wt, cnt)
    elif cb == CB:
        _axpy4x1(g0, g1, g2, g3, s0, wt[0], cnt)
    else:
        _axpy(g0, s0, wt[0, 0], cnt)
        if cb > 1:
            _axpy(g1, s0, wt[0, 1], cnt)
        if cb > 2:
            _axpy(g2, s0, wt[0, 2], cnt)


@njit(inline="always", **_JIT)
def _gather_tap(gwv, y0, y1, y2, y3, x, cb, cnt, zero):  # pragma: no cover
    """One tap of the weight gradient: gwv[j] += dot(y_j, x) for the ``cb`` gy rows y_j."""
    if cb == CB:
        sums = _dot1x4(x, y0, y1, y2, y3, cnt, zero)
        for j in range(CB):
            gwv[j] += sums[j]
    else:
        gwv[0] += _dot(y0, x, cnt, zero)
        if cb > 1:
            gwv[1] += _dot(y1, x, cnt, zero)
        if cb > 2:
            gwv[2] += _dot(y2, x, cnt, zero)


@njit(**_JIT)
def _ox_range(off, sw, iw, ow):  # pragma: no cover
    """First and one-past-last ``ox`` whose input column ``ox*sw + off`` lies in ``[0, iw)``."""
    lo = max(0, (sw - 1 - off) // sw)
    hi = min(ow, (iw - 1 - off) // sw + 1)
    return lo, hi


TILE = 4096  # elements of the output block kept hot while the taps stream past (16 KiB in float32)
SEGMENT = 1024  # columns of a long one-row band summed at a time (see _forward_layout)


# Packed path (any stride, dilation, padding and groups). A thread copies a band of input rows of
# one image and group into a zero-padded buffer split into stride phases, and reuses it for its
# consecutive blocks of output channels. There every (input channel, ky, kx) "term" of the sum is
# one contiguous run over whole output rows of width ``wq`` (the last ``wq - ow`` columns of each
# row are computed and thrown away), so there is no border to repair and no short row loop: 4 terms
# x 4 output channels share each load and store of the accumulator. Scratch, allocated per call:
# the packed weights (as large as w), and per thread the band (input channels x ~1K elements for
# the forward pass, ~8K for the weight gradient), 4 channels of gy and a 4-row accumulator.
STACK_MIN = 512  # the weight gradient stacks small images into runs of at least this many pixels
GW_BAND = 8192  # and cuts larger ones into bands of about this many pixels (2048: r56 1.1x slower)
RUN_PAD = 16  # runs are rounded up to a multiple of this, so that no scalar remainder loop runs


@njit(**_JIT)
def _packed_dims(oh, ow, kh, kw, sh, sw, dil_h, dil_w):  # pragma: no cover
    """Rows and columns of one stride phase of the packed input."""
    return oh + (kh - 1) * dil_h // sh, ow + (kw - 1) * dil_w // sw


@njit(**_JIT)
def _pack_input(x, bn, c0, cg, xp, sh, sw, pt, pl, hq, wq, nimg, b, u0):  # pragma: no cover
    """xp[((c*sh + py)*sw + px)*nimg*hq*wq + (b*hq + u)*wq + v] = padded x[bn, c0 + c] at
    ((u0 + u)*sh + py, v*sw + px): a band of ``hq`` rows from phase row ``u0``, in image slot ``b``
    of the ``nimg`` stacked in each plane."""
    ih, iw = x.shape[2], x.shape[3]
    for c in range(cg):
        for py in range(sh):
            for px in range(sw):
                lo, hi = _ox_range(px - pl, sw, iw, wq)
                hi = max(lo, hi)
                plane = xp[(((c * sh + py) * sw + px) * nimg + b) * hq * wq:]
                for u in range(hq):
                    row = plane[u * wq:(u + 1) * wq]
                    iy = (u0 + u) * sh + py - pt
                    if iy < 0 or iy >= ih:
                        row[:] = 0
                        continue
                    xrow = x[bn, c0 + c, iy]
                    row[:lo] = 0
                    row[hi:] = 0
                    for v in range(lo, hi):
                        row[v] = xrow[v * sw + px - pl]
    xp[cg * sh * sw * nimg * hq * wq:] = 0  # the tail read by the last runs


@njit(**_JIT)
def _pack_terms(c_in_g, kh, kw, sh, sw, dil_h, dil_w, hq, wq, offs):  # pragma: no cover
    """offs[t]: offset in the packed input of term t = (ci, ky, kx) for output pixel (0, 0), in w's
    order."""
    t = 0
    for ci in range(c_in_g):
        for ky in range(kh):
            for kx in range(kw):
                ph = (ci * sh + ky * dil_h % sh) * sw + kx * dil_w % sw
                offs[t] = ph * hq * wq + ky * dil_h // sh * wq + kx * dil_w // sw
                t += 1


@njit(**_JIT)
def _pack_weights(w, groups, wp):  # pragma: no cover
    """wp[g*nblk + b, t, j] = w[output channel b*CB + j of group g, term t]; zero past the group's
    last channel, so remainder blocks run the same 4-channel code (their extra rows are dropped)."""
    c_out, c_in_g, kh, kw = w.shape
    c_out_g = c_out // groups
    nblk = (c_out_g + CB - 1) // CB
    nt = c_in_g * kh * kw
    wf = w.reshape(c_out, nt)
    wp[:] = 0
    for g in range(groups):
        for b in range(nblk):
            for j in range(min(CB, c_out_g - b * CB)):
                co = g * c_out_g + b * CB + j
                for t in range(nt):
                    wp[g * nblk + b, t, j] = wf[co, t]


# The forward pass slices the packed input open-ended (``xp[o:]``) where the other passes use
# ``_runs4``'s bounded views: in ``_fwd_packed`` those compiled to code that ran 1.5x slower once
# loaded from the disk cache (though faster when compiled in the process: same kernels, measured
# both ways, r56 and r28 forward); the form below measures as before in both.
@njit(inline="always", **_JIT)
def _mac4(a0, a1, a2, a3, xp, o0, o1, o2, o3, wt, cnt):  # pragma: no cover
    """``_axpy4x4`` over the packed input's runs at offsets o0..o3."""
    _axpy4x4(a0, a1, a2, a3, xp[o0:], xp[o1:], xp[o2:], xp[o3:], wt, cnt)


@njit(**_JIT)
def _fwd_packed(xp, offs, wb, y, bn, co0, cb, wq, oy0, nr, acc):  # pragma: no cover
    """y[bn, co0:co0+cb, oy0:oy0+nr] from the packed band of input rows; ``wb`` is this block's
    packed weights, ``acc`` holds CB accumulator rows of ``acc.size // CB`` elements. (It takes
    no bias: with a bias array among its arguments, the same code ran 1.6x slower once loaded from
    the disk cache, as fast as ever when compiled in the process; the caller adds the bias to the
    block while it is in cache.)"""
    ow = y.shape[3]
    nt = offs.shape[0]
    stride = acc.shape[0] // CB
    cnt = (nr * wq + RUN_PAD - 1) // RUN_PAD * RUN_PAD
    a0 = acc[:cnt]
    a1 = acc[stride:stride + cnt]
    a2 = acc[2 * stride:2 * stride + cnt]
    a3 = acc[3 * stride:3 * stride + cnt]
    a0[:] = 0
    a1[:] = 0
    a2[:] = 0
    a3[:] = 0
    t = 0
    if cb == 1:  # one channel (depthwise): its 4 terms per load and store, no idle rows
        while t + 4 <= nt:
            _axpy1x4(a0, xp[offs[t]:], xp[offs[t + 1]:], xp[offs[t + 2]:], xp[offs[t + 3]:], wb[t:t + 4, 0], cnt)
            t += 4
    while t + 4 <= nt:
        _mac4(a0, a1, a2, a3, xp, offs[t], offs[t + 1], offs[t + 2],
              offs[t + 3], wb[t:t + 4], cnt)
        t += 4
    while t < nt:  # the last 1-3 terms
        if cb == 1:
            _axpy(a0, xp[offs[t]:], wb[t, 0], cnt)
        else:
            _axpy4x1(a0, a1, a2, a3, xp[offs[t]:], wb[t], cnt)
        t += 1
    for j in range(cb):
        for r in range(nr):
            yr = y[bn, co0 + j, oy0 + r]
            ar = acc[j * stride + r * wq:]
            for ox in range(ow):
                yr[ox] = ar[ox]


U = np.uint64  # flat offsets: Numba tests a signed index for wrap-around, which stops a loop vectorising


@register_jitable
def aligned(n):
    """``n`` elements rounded up to whole 64-byte lines (in float32), for scratch carved from one
    workspace: every piece starts where a fresh allocation would. A plain function from Python
    (sizers that must compile nothing: a first call after ``warmup`` compiles nothing more) that
    compiled code can call too."""
    return (n + 15) // 16 * 16


_aligned = njit(inline="always", **_JIT)(aligned)  # the same, inlined in compiled code


# How the packed passes cut their work and scratch (each shared by the pass and its sizer).
ForwardLayout = namedtuple("ForwardLayout", [
    "nblk",    # blocks of CB output channels per group
    "wq",      # row width of the packed input and of the accumulator rows
    "rows",    # output rows per band
    "nband",   # bands per image
    "hb",      # packed input rows per band
    "stride",  # elements between accumulator rows
    "size",    # elements of one thread's packed band
    "ntask",   # (image, group, band, segment, block) tasks
    "nslot",   # threads that take a range of them
    "wsize",   # elements of the packed weights (first in the float workspace)
    "slot",    # elements of one thread's scratch (band + accumulator)
    "nseg",    # segments of each (one-row) band's columns summed apart; 1: whole bands
])
GwLayout = namedtuple("GwLayout", [
    "nblk", "wq",
    "nimg",     # images stacked in each plane
    "rows", "hb", "size",
    "gyp_row",  # elements of each packed gy row
    "ntask",    # (group, block) tasks
    "nslot", "slot",
])


@njit(**_JIT)
def _forward_layout(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads):  # pragma: no cover
    """How ``_forward_part`` cuts its work and scratch; shared with ``_forward_scratch``."""
    c_out_g = c_out // groups
    nblk = (c_out_g + CB - 1) // CB
    hq, wq = _packed_dims(oh, ow, kh, kw, sh, sw, dil_h, dil_w)
    rows = min(oh, max(1, TILE // (CB * wq)))  # output rows per band: the accumulator stays in L1
    nband = (oh + rows - 1) // rows
    rows = (oh + nband - 1) // nband  # bands of equal size: no short last band (single-r32: 30 + 2)
    hb = rows + hq - oh  # packed input rows per band
    # Accumulator rows 1024*k + 64 elements apart: rows a multiple of 4 KiB apart (r7: 4132 bytes
    # before) make each load of a row wait on the store to the previous one (4K aliasing).
    stride = (rows * wq + RUN_PAD + 1023) // 1024 * 1024 + 64
    # runs are rounded up to whole vectors, reading up to RUN_PAD + wq - 1 + (kw - 1)*dil_w//sw
    # past the last plane's end
    size = c_in_g * sh * sw * hb * wq + 2 * wq + RUN_PAD
    # A band of one long row (a 3x1x1 kernel at a temporal stride over (D, H*W) planes: rows of
    # 3136; at unit stride ``_numba_columns`` takes it) packs channels x kernel rows x the row, far
    # more than L2 holds, and every block of output channels would read it from memory again. At
    # unit stride output column c reads packed columns c + kx*dil_w, so the row can be summed in
    # segments of output columns, every block running over one segment while it is in cache: equal
    # segments, a divisor of the width of at most SEGMENT columns (a whole number of vectors).
    # Kernels one pixel wide only: 1-D signals measured no faster.
    nseg = 1
    if rows == 1 and sw == 1 and kw == 1 and ow > SEGMENT:  # 1-D rows measured no faster in segments
        for k in range(2, ow // (SEGMENT // 4) + 1):
            if ow % k == 0 and ow // k <= SEGMENT and (ow // k) % RUN_PAD == 0:
                nseg = k
                break
    ntask = n * groups * nband * nseg * nblk
    nslot = min(ntask, nthreads)
    wsize = _aligned(groups * nblk * c_in_g * kh * kw * CB)
    slot = _aligned(size) + _aligned(CB * stride)
    return ForwardLayout(nblk, wq, rows, nband, hb, stride, size, ntask, nslot, wsize, slot, nseg)


@njit(**_JIT)
def _forward_scratch(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads):  # pragma: no cover
    """Elements of the float workspace and of the int64 one that ``_forward_part`` needs."""
    lay = _forward_layout(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads)
    return lay.wsize + lay.nslot * lay.slot, c_in_g * kh * kw


@njit(inline="always", **_JIT)
def _forward_views(w, y, sh, sw, dil_h, dil_w, groups, nthreads, fws, iws):  # pragma: no cover
    """``_forward_part``'s layout, and where its term offsets and packed weights lie in ``iws`` and
    ``fws``."""
    c_out, c_in_g, kh, kw = w.shape
    lay = _forward_layout(y.shape[0], c_out, c_in_g, kh, kw, y.shape[2], y.shape[3], sh, sw, dil_h, dil_w, groups,
                          nthreads)
    nt = c_in_g * kh * kw
    return lay, iws[:nt], fws[:groups * lay.nblk * nt * CB].reshape((groups * lay.nblk, nt, CB))


@njit(**_JIT)
def _forward_setup(w, y, sh, sw, dil_h, dil_w, groups, nthreads, fws, iws):  # pragma: no cover
    """``_forward_views``, with the term offsets and packed weights written there."""
    lay, offs, wp = _forward_views(w, y, sh, sw, dil_h, dil_w, groups, nthreads, fws, iws)
    c_in_g, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    _pack_terms(c_in_g, kh, kw, sh, sw, dil_h, dil_w, lay.hb, lay.wq, offs)
    _pack_weights(w, groups, wp)
    return lay, offs, wp


@njit(**_JIT)
def _forward_slot(x, bias, y, sh, sw, pt, pl, groups, nblk, wq, rows, nband, hb, size, base, acc_size, t0, t1,
                  offs, wp, fws, nseg):  # pragma: no cover
    """Tasks ``t0:t1`` of ``_forward_part``, with the scratch at ``fws[base:]``."""
    c_out_g = y.shape[1] // groups
    c_in_g = x.shape[1] // groups
    oh = y.shape[2]
    xp = fws[base:base + size]
    acc = fws[base + _aligned(size):base + _aligned(size) + acc_size]
    seg = y.shape[3] // nseg
    # segments of a one-row band are the rows of this view of y (y itself when nseg is 1), and
    # start seg*s into the packed row
    ys = y.reshape((y.shape[0], y.shape[1], oh * nseg, seg))
    packed = -1
    for task in range(t0, t1):
        band = task // (nseg * nblk)  # image, group and band
        s = task // nblk % nseg
        b = task % nblk
        g = band // nband % groups
        bn = band // (nband * groups)
        oy0 = band % nband * rows
        if band != packed:
            _pack_input(x, bn, g * c_in_g, c_in_g, xp, sh, sw, pt, pl, hb, wq, 1, 0, oy0)
            packed = band
        co0, cb = g * c_out_g + b * CB, min(CB, c_out_g - b * CB)
        # a whole band of rows of y, or segment s of a one-row band (a row of ys)
        r0, nr = (oy0, min(rows, oh - oy0)) if nseg == 1 else (oy0 * nseg + s, 1)
        _fwd_packed(xp[s * seg:], offs, wp[g * nblk + b], ys, bn, co0, cb, wq if nseg == 1 else seg, r0, nr, acc)
        if bias.size:  # the block just written, while it is in cache; plain loops (a slice's
            for j in range(cb):  # += was a generic loop: mnist's forward 2x slower)
                bj = bias[co0 + j]
                for r in range(r0, r0 + nr):
                    yr = ys[bn, co0 + j, r]
                    for ox in range(yr.shape[0]):
                        yr[ox] += bj


@njit(**_JIT)
def _forward_prepare(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, groups, nthreads, fws, iws):  # pragma: no cover
    """The term offsets and packed weights that every slot of ``_forward_part`` reads (once, before
    the slots run)."""
    _forward_setup(w, y, sh, sw, dil_h, dil_w, groups, nthreads, fws, iws)


@njit(**_JIT)
def _forward_part(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, groups, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of y[n, co] = bias[co] (none if empty) + sum over the group's
    ci, ky, kx of w[co, ci, ky, kx] * shifted x[n, ci], packed, after ``_forward_prepare``.

    The work is split into (image, group, band of output rows, block of CB output channels); each
    slot takes one contiguous range of it with its own scratch, and packs a band of input rows
    again only when its range moves on to the next band (allocating and packing per block cost
    more than the 1x1 convolution's whole sum: 2.5x slower). All scratch (packed weights, term
    offsets, each slot's band and accumulator) is carved from the workspaces ``fws`` and ``iws``
    (sized by ``_forward_scratch``), so a call allocates nothing. The slots run on fastconv's
    threads (``numba_jit._run_parts``), not in a Numba parallel loop, which took twice as long to
    compile."""
    lay, offs, wp = _forward_views(w, y, sh, sw, dil_h, dil_w, groups, nthreads, fws, iws)
    if slot >= lay.nslot:
        return
    _forward_slot(x, bias, y, sh, sw, pt, pl, groups, lay.nblk, lay.wq, lay.rows, lay.nband, lay.hb, lay.size,
                  lay.wsize + slot * lay.slot, CB * lay.stride, lay.ntask * slot // lay.nslot,
                  lay.ntask * (slot + 1) // lay.nslot, offs, wp, fws, lay.nseg)


@njit(**_JIT)
def _forward_serial(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, groups, nthreads, fws, iws):  # pragma: no cover
    """``_forward_prepare`` and every slot of ``_forward_part`` on the calling thread (``nthreads``
    is 1): one dispatch for a small call (single-r32-k3: 8 us)."""
    lay, offs, wp = _forward_setup(w, y, sh, sw, dil_h, dil_w, groups, nthreads, fws, iws)
    _forward_slot(x, bias, y, sh, sw, pt, pl, groups, lay.nblk, lay.wq, lay.rows, lay.nband, lay.hb, lay.size,
                  lay.wsize, CB * lay.stride, 0, lay.ntask, offs, wp, fws, lay.nseg)


@njit(**_JIT)
def _gx_flat(gyf, wb, gxf, co0, c_out_g, ih, iw, oh, ow, pt, pl, dil_h, dil_w, zero):  # pragma: no cover
    """Stride 1 and ``ow == iw``: each tap scatters one contiguous run of gy onto whole gx rows.

    A run over several rows also touches, at its row ends, border columns of gx where the tap's
    output column is outside ``gy`` (it reads the neighbouring row instead); those columns are
    recomputed exactly at the end, which overwrites the wrong values (NaN and inf included).
    """
    cb, kh, kw = gxf.shape[0], wb.shape[2], wb.shape[3]
    rows = max(1, TILE // (cb * iw))
    for iy0 in range(0, ih, rows):
        iy1 = min(ih, iy0 + rows)
        co = co0
        while co < co0 + c_out_g:
            # 4 output channels per pass when possible: 16 multiply-adds per load and store of gx
            step = CI if cb == CB and co0 + c_out_g - co >= CI else 1
            for ky in range(kh):
                a = ky * dil_h - pt  # input row minus output row
                ylo = max(iy0, a)
                yhi = min(iy1, oh + a)
                if ylo >= yhi:
                    continue
                for kx in range(kw):
                    off = kx * dil_w - pl  # input column minus output column
                    lo = max(0, off)
                    hi = min(iw, ow + off)
                    if lo >= hi:
                        continue
                    q0 = ylo * iw + lo
                    q1 = (yhi - 1) * iw + hi
                    cnt = q1 - q0
                    p0 = q0 - a * iw - off  # flat output pixel of q0
                    g0, g1, g2, g3 = _rows4(gxf, 0, q0, q1)
                    s0, s1, s2, s3 = _rows4(gyf, co, p0, p0 + cnt)
                    _scatter_tap(g0, g1, g2, g3, s0, s1, s2, s3, wb[co:co + step, :, ky, kx], cb, step, cnt)
            co += step
    # border columns: those where some tap's output column falls outside gy
    left = min(iw, max(0, (kw - 1) * dil_w - pl))
    right = max(left, min(iw, ow - pl))
    if left > 0 or right < iw:
        _gx_border(gyf, wb, gxf, co0, c_out_g, ih, iw, oh, ow, pt, pl, dil_h, dil_w, left, right)


@njit(**_JIT)
def _gx_border(gyf, wb, gxf, co0, c_out_g, ih, iw, oh, ow, pt, pl, dil_h, dil_w, left, right):  # pragma: no cover
    """Recompute gx columns ``[0, left)`` and ``[right, iw)`` exactly, tap by tap, a column (a
    run ``iw`` apart in the flat arrays) at a time."""
    cb, kh, kw = gxf.shape[0], wb.shape[2], wb.shape[3]
    for j in range(cb):
        for iy in range(ih):
            for ix in range(iw):
                if ix < left or ix >= right:
                    gxf[j, iy * iw + ix] = 0
    co = co0
    while co < co0 + c_out_g:
        step = CI if cb == CB and co0 + c_out_g - co >= CI else 1
        for ky in range(kh):
            a = ky * dil_h - pt  # input row minus output row
            ylo = max(0, a)
            yhi = min(ih, oh + a)
            if ylo >= yhi:
                continue
            for kx in range(kw):
                off = kx * dil_w - pl  # input column minus output column
                lo = max(0, off)
                hi = min(iw, ow + off)
                wt = wb[co:co + step, :, ky, kx]
                for part in range(2):
                    c0, c1 = (lo, min(hi, left)) if part == 0 else (max(lo, right), hi)
                    for ix in range(c0, c1):
                        q = ylo * iw + ix
                        p = q - a * iw - off  # flat output pixel (ow == iw)
                        g0, g1, g2, g3 = _strided4(gxf, 0, q, iw, yhi - ylo)
                        s0, s1, s2, s3 = _strided4(gyf, co, p, iw, yhi - ylo)
                        _scatter_tap(g0, g1, g2, g3, s0, s1, s2, s3, wt, cb, step, yhi - ylo)
        co += step


@njit(**_JIT)
def _gx_rows(gyf, w, gxf, ci0, cil0, cb, co0, c_out_g, ih, iw, oh, ow, sh, sw, pt, pl, dil_h, dil_w):  # pragma: no cover
    """Any stride and padding: scatter one gy row at a time onto the gx rows it reads (``gyf``,
    ``gxf``: one image's channels, flat)."""
    kh, kw = w.shape[2], w.shape[3]
    for co in range(co0, co0 + c_out_g):
        for oy in range(oh):
            for ky in range(kh):
                iy = oy * sh - pt + ky * dil_h  # input row of this tap
                if iy < 0 or iy >= ih:
                    continue
                for kx in range(kw):
                    off = kx * dil_w - pl  # input column of ox = 0
                    lo, hi = _ox_range(off, sw, iw, ow)
                    cnt = hi - lo
                    if cnt <= 0:
                        continue
                    q = iy * iw + lo * sw + off
                    p = oy * ow + lo
                    gs = gyf[co, p:p + cnt]
                    wt = w[co:co + 1, cil0:cil0 + cb, ky, kx]
                    if sw == 1:
                        g0, g1, g2, g3 = _rows4(gxf, ci0, q, q + cnt)
                        _scatter_tap(g0, g1, g2, g3, gs, gs, gs, gs, wt, cb, 1, cnt)
                    else:
                        h0, h1, h2, h3 = _strided4(gxf, ci0, q, sw, cnt)
                        _scatter_tap(h0, h1, h2, h3, gs, gs, gs, gs, wt, cb, 1, cnt)


@njit(**_JIT)
def _grad_input_part(gy, w, gx, sh, sw, pt, pl, dil_h, dil_w, groups, zero, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of gx[n, ci] = sum over the group's co, ky, kx of
    w[co, ci, ky, kx] * gy[n, co] scattered back: a range of (image, group, block of CB input
    channels) tasks. The direct loops, for the rare calls the packed path does not take
    (strided and dilated, non-finite weights), run on fastconv's threads (``numba_jit._run_parts``):
    without Numba's parallel loop the kernel compiles in a third of the time. ``fws`` and ``iws``
    are unused (the signature of every slot kernel)."""
    n, c_in, ih, iw = gx.shape
    c_out, c_in_g, kh, kw = w.shape
    oh, ow = gy.shape[2], gy.shape[3]
    c_out_g = c_out // groups
    nblk = (c_in_g + CB - 1) // CB
    flat = sh == 1 and sw == 1 and ow == iw
    gxf = gx.reshape(n, c_in, ih * iw)
    gyf = gy.reshape(n, c_out, oh * ow)
    ntask = n * groups * nblk
    for task in range(ntask * slot // nthreads, ntask * (slot + 1) // nthreads):
        bn = task // (groups * nblk)
        g = (task // nblk) % groups
        cil0 = (task % nblk) * CB  # first input channel within the group
        ci0 = g * c_in_g + cil0
        cb = min(CB, c_in_g - cil0)
        for j in range(cb):
            gr = gxf[bn, ci0 + j]
            for q in range(ih * iw):
                gr[q] = 0
        if flat:
            _gx_flat(gyf[bn], w[:, cil0:cil0 + cb], gxf[bn, ci0:ci0 + cb], g * c_out_g, c_out_g,
                     ih, iw, oh, ow, pt, pl, dil_h, dil_w, zero)
        else:
            _gx_rows(gyf[bn], w, gxf[bn], ci0, cil0, cb, g * c_out_g, c_out_g, ih, iw, oh, ow,
                     sh, sw, pt, pl, dil_h, dil_w)


@njit(**_JIT)
def _gw_rows(gy, x, gw, bn, co0, cb, xc0, sh, sw, pt, pl, dil_h, dil_w, zero):  # pragma: no cover
    """Any stride and padding: one image's contribution to gw[co0:co0+cb], row by row."""
    ih, iw = x.shape[2], x.shape[3]
    c_in_g, kh, kw = gw.shape[1], gw.shape[2], gw.shape[3]
    oh, ow = gy.shape[2], gy.shape[3]
    gyf = gy[bn].reshape(gy.shape[1], oh * ow)
    xf = x[bn].reshape(x.shape[1], ih * iw)
    for ci in range(c_in_g):
        for oy in range(oh):
            for ky in range(kh):
                iy = oy * sh - pt + ky * dil_h  # input row of this tap
                if iy < 0 or iy >= ih:
                    continue
                for kx in range(kw):
                    off = kx * dil_w - pl  # input column of ox = 0
                    lo, hi = _ox_range(off, sw, iw, ow)
                    cnt = hi - lo
                    if cnt <= 0:
                        continue
                    q = iy * iw + lo * sw + off
                    p = oy * ow + lo
                    y0, y1, y2, y3 = _rows4(gyf, co0, p, p + cnt)
                    gwv = gw[co0:co0 + cb, ci, ky, kx]
                    if sw == 1:
                        _gather_tap(gwv, y0, y1, y2, y3, xf[xc0 + ci, q:q + cnt], cb, cnt, zero)
                    else:
                        _gather_tap(gwv, y0, y1, y2, y3, xf[xc0 + ci, q:q + (cnt - 1) * sw + 1:sw], cb, cnt, zero)


@njit(**_JIT)
def _pack_gy(gy, bn, co0, cb, gyp, hb, wq, b, oy0, nr):  # pragma: no cover
    """gyp[j, (b*hb + r)*wq + ox] = gy[bn, co0 + j, oy0 + r, ox] for j < cb and r < nr, zero in the
    rest of slot ``b``'s rows and columns, which meet the packed input's thrown-away ones."""
    ow = gy.shape[3]
    for j in range(cb):
        slot = gyp[j, b * hb * wq:(b + 1) * hb * wq]
        for r in range(nr):
            src = gy[bn, co0 + j, oy0 + r]
            dst = slot[r * wq:(r + 1) * wq]
            for ox in range(ow):
                dst[ox] = src[ox]
            dst[ow:] = 0
        slot[nr * wq:] = 0


@njit(**_JIT)
def _gw_packed(xp, offs, gyp, gw, co0, cb, cnt, zero):  # pragma: no cover
    """gw[co0 + j, term t] += dot(gyp[j, :cnt], xp[offs[t]:][:cnt]), 4 channels x 4 terms per pass."""
    nt = offs.shape[0]
    gwf = gw.reshape(gw.shape[0], nt)
    g0, g1, g2, g3 = _rows4(gyp, 0, 0, cnt)
    t = 0
    while t + 4 <= nt:
        x0, x1, x2, x3 = _runs4(xp, offs, t, cnt)
        if cb == 1:  # one channel (depthwise): no idle rows
            sums1 = _dot1x4(g0, x0, x1, x2, x3, cnt, zero)
            for i in range(4):
                gwf[co0, t + i] += sums1[i]
        else:
            sums = _dot4x4(g0, g1, g2, g3, x0, x1, x2, x3, cnt, zero)
            for j in range(cb):
                for i in range(4):
                    gwf[co0 + j, t + i] += sums[j][i]
        t += 4
    while t < nt:  # the last 1-3 terms
        run = xp[offs[t]:offs[t] + cnt]
        if cb == 1:
            gwf[co0, t] += _dot(g0, run, cnt, zero)
        else:
            sums1 = _dot1x4(run, g0, g1, g2, g3, cnt, zero)
            for j in range(cb):
                gwf[co0 + j, t] += sums1[j]
        t += 1


@njit(**_JIT)
def _all_finite(a):  # pragma: no cover
    """``np.isfinite(a).all()`` without the temporary boolean array."""
    for v in a.ravel():
        if not np.isfinite(v):
            return False
    return True


@njit(**_JIT)
def _gw_layout(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads):  # pragma: no cover
    """How ``_grad_weight_part`` cuts its work and scratch; shared with ``_gw_scratch``."""
    c_out_g = c_out // groups
    nblk = (c_out_g + CB - 1) // CB
    hq, wq = _packed_dims(oh, ow, kh, kw, sh, sw, dil_h, dil_w)
    # Small images are stacked nimg at a time in each plane: one dot product covers them all, so
    # that its setup and final sums are paid once (r7-c512: 1.5x faster). Large ones are cut into
    # bands of rows, so that the packed input stays ~channels x GW_BAND elements.
    nimg = min(n, max(1, STACK_MIN // (hq * wq)))
    rows = oh if nimg > 1 else min(oh, max(1, GW_BAND // wq))
    nband = (oh + rows - 1) // rows
    rows = (oh + nband - 1) // nband  # bands of equal size
    hb = rows + hq - oh  # packed input rows per band
    size = c_in_g * sh * sw * nimg * hb * wq + 2 * wq + RUN_PAD
    gyp_row = _aligned(nimg * hb * wq + RUN_PAD)
    ntask = groups * nblk
    nslot = min(ntask, nthreads)
    slot = _aligned(size) + CB * gyp_row
    return GwLayout(nblk, wq, nimg, rows, hb, size, gyp_row, ntask, nslot, slot)


@njit(**_JIT)
def _gw_scratch(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads):  # pragma: no cover
    """Elements of the float workspace and of the int64 one that ``_grad_weight_part`` needs."""
    lay = _gw_layout(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads)
    return lay.nslot * lay.slot, lay.nslot * c_in_g * kh * kw  # each slot its own term offsets


@njit(**_JIT)
def _grad_weight_part(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, groups, zero, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of gw[co, ci, ky, kx] = sum over n, oy, ox of gy[n, co, oy, ox] *
    x[n, ci, tap pixel], packed: one dot product of a channel's gy (packed to the runs' row width)
    with each term's run.

    Each slot owns a range of blocks of output channels and packs each image once for them; the
    slots run on fastconv's threads (``numba_jit._run_parts``: without Numba's parallel loop the
    kernel compiles in half the time). The thrown-away columns pair zeros of gy with real inputs,
    so a non-finite input there turns a block's result into NaN: such a block (rare) is summed
    again exactly by ``_gw_rows``. Scratch is carved from the workspaces ``fws`` and ``iws``
    (sized by ``_gw_scratch``).
    """
    n = x.shape[0]
    c_out, c_in_g, kh, kw = gw.shape
    oh, ow = gy.shape[2], gy.shape[3]
    c_out_g = c_out // groups
    lay = _gw_layout(n, c_out, c_in_g, kh, kw, oh, ow, sh, sw, dil_h, dil_w, groups, nthreads)
    nblk, wq, nimg, rows, hb, size = lay.nblk, lay.wq, lay.nimg, lay.rows, lay.hb, lay.size
    gyp_row, ntask, nslot, slot_size = lay.gyp_row, lay.ntask, lay.nslot, lay.slot
    if slot >= nslot:
        return
    nt = c_in_g * kh * kw
    offs = iws[slot * nt:(slot + 1) * nt]
    _pack_terms(c_in_g, kh, kw, sh, sw, dil_h, dil_w, nimg * hb, wq, offs)
    t0 = ntask * slot // nslot
    t1 = ntask * (slot + 1) // nslot
    base = slot * slot_size
    xp = fws[base:base + size]
    xp[:] = 0
    gyp = fws[base + _aligned(size):base + slot_size].reshape((CB, gyp_row))
    for task in range(t0, t1):
        g = task // nblk
        co0 = g * c_out_g + task % nblk * CB
        for j in range(min(CB, g * c_out_g + c_out_g - co0)):
            gw[co0 + j] = zero
    for bn0 in range(0, n, nimg):
        nb = min(nimg, n - bn0)
        if nb < nimg:  # the last images: no stale ones in the slots left over
            xp[:] = 0
        for oy0 in range(0, oh, rows):
            nr = min(rows, oh - oy0)
            cnt = (((nimg - 1) * hb + nr) * wq + RUN_PAD - 1) // RUN_PAD * RUN_PAD
            packed = -1
            for task in range(t0, t1):
                g = task // nblk
                co0 = g * c_out_g + task % nblk * CB
                cb = min(CB, g * c_out_g + c_out_g - co0)
                if g != packed:
                    for b in range(nb):
                        _pack_input(x, bn0 + b, g * c_in_g, c_in_g, xp, sh, sw, pt, pl, hb, wq, nimg, b, oy0)
                    packed = g
                for b in range(nb):
                    _pack_gy(gy, bn0 + b, co0, cb, gyp, hb, wq, b, oy0, nr)
                gyp[:cb, nb * hb * wq:] = 0  # the rows j >= cb are read but their sums dropped
                _gw_packed(xp, offs, gyp, gw, co0, cb, cnt, zero)
    for task in range(t0, t1):
        g = task // nblk
        co0 = g * c_out_g + task % nblk * CB
        cb = min(CB, g * c_out_g + c_out_g - co0)
        if not _all_finite(gw[co0:co0 + cb]):
            gw[co0:co0 + cb] = zero
            for bn in range(n):
                _gw_rows(gy, x, gw, bn, co0, cb, g * c_in_g, sh, sw, pt, pl, dil_h, dil_w, zero)


# -- the input gradient's stride phases, put in place together ------------------------------------


@register_jitable
def phase_offset(planes, h, w, sh, sw, ry, rx):
    """Where stride phase ``(ry, rx)`` of an input gradient of ``planes`` planes of ``h x w`` starts
    in ``_interleave_part``'s store: the phases one after another in row-major (ry, rx) order,
    each C-contiguous ``(planes, ceil((h - ry) / sh), ceil((w - rx) / sw))`` (``gx[..., ry::sh,
    rx::sw]``'s shape). A plain function from Python, as ``aligned`` is."""
    rows = 0  # of the phases above ry, each the whole width across its phases
    for a in range(ry):
        rows += (h - a + sh - 1) // sh
    cols = 0
    for b in range(rx):
        cols += (w - b + sw - 1) // sw
    return planes * (rows * w + (h - ry + sh - 1) // sh * cols)


@njit(**_JIT)
def _interleave_part(store, gx, sh, sw, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads``: gx[p, y, x] = phase (y % sh, x % sw)'s pixel (y // sh,
    x // sw) of plane p, the phases in ``store`` (``phase_offset``), for a range of planes, each
    row of gx written whole once. Assigning each phase to its strided view of gx instead wrote
    every line of gx once a phase, each time from memory: two threads, depthwise 3x3 stride 2, N=32
    C=128 56x56, 16 of the input gradient's 33 ms (2026-12-04)."""
    n, c, h, w = gx.shape
    planes = n * c
    p0, p1 = planes * slot // nthreads, planes * (slot + 1) // nthreads
    gf = gx.reshape(-1)
    starts = np.empty(sh * sw, np.int64)  # each phase's place in store, once rather than a row
    for ry in range(sh):
        for rx in range(sw):
            starts[ry * sw + rx] = phase_offset(planes, h, w, sh, sw, ry, rx)
    for p in range(p0, p1):
        for y in range(h):
            ry, i = y % sh, y // sh
            ph = (h - ry + sh - 1) // sh
            for rx in range(sw):  # the row's phases in turn, while it is in L1
                pw = (w - rx + sw - 1) // sw
                src = U(starts[ry * sw + rx] + (p * ph + i) * pw)
                dst = U((p * h + y) * w + rx)
                for j in range(U(pw)):
                    gf[dst + j * U(sw)] = store[src + j]
