"""Numba kernels of the ``numba`` backend for depthwise convolutions (``groups == C_in``, any channel
multiplier, kernel size, stride, dilation and padding): the forward pass (also each stride phase
of the input gradient, a forward pass with the flipped kernel) and the weight gradient.

The general packed kernel computes blocks of 4 output channels that share each input load; a
depthwise channel has no partner, and there a task (one image's channel: a few hundred
multiply-adds per row) paid mostly for packing and bookkeeping (6 GMAC/s on one thread, N=32,
C=128, 28x28, 3x3). Here each task is one input plane (a band of rows when it is large) and the
output channels that read it:

- "flat" (stride 1, padding that keeps the width: ``OW == W``, e.g. ``padding="same"``, and a
  kernel of one row at most 3 wide, of one column, or planes of one row: ``FLAT_MAX_REACH``): no
  copy at all. With equal row widths every tap is one contiguous run ``y[o] += w * x[o + shift]``
  over the plane's rows (restricted to the rows whose tap row lies inside), written straight into
  ``y``. Where a run crosses a row end it would add the neighbouring row's edge pixel in place of
  the zero padding: those few outputs (``|dx|`` per row) are saved before the run and put back
  after it, so the sum is exactly that of the taps inside, as in the packed path.
- "packed" (any other geometry): the plane is copied once into a zero-padded buffer split into
  stride phases (``_pack_terms``' layout), whose taps are contiguous runs summed 4 at a time into
  one accumulator row kept in L1, then copied into ``y``. Since its loops run on flat offsets it
  beats the flat one wherever the flat one saves edges on more than one kernel row.

Both read each input plane from memory once and write each output plane once; the bias is the
accumulator's starting value. Measured on one thread (N=32, C=128, 28x28, 3x3, pad 1): 2.5-2.9 ms
against the general kernel's 4.1-4.5 ms and torch's 4.6 ms. Summing a kernel column's taps together
(up to 4 per pass, the rows near the top and bottom apart) was tried: 15-25 % faster on 56x56 and
112x112 planes, but 1.3x slower on 28x28 and 2.4x on 14x14 (its setup per column and plane), and
its compile took 7.5 s against 3.2; not kept.
"""

from collections import namedtuple

from ._numba_kernels import (
    _JIT,
    RUN_PAD,
    TILE,
    U,
    _aligned,
    _all_finite,
    _axpy,
    _dot,
    _gw_rows,
    _pack_terms,
    _packed_dims,
    njit,
)

DwLayout = namedtuple("DwLayout", [
    "flat",    # the flat path (else the packed one)
    "wq",      # row width of the packed input and of the accumulator
    "rows",    # output rows per band
    "nband",   # bands per plane
    "hb",      # packed input rows per band
    "size",    # elements of one thread's packed band, or of its saved edge pixels (flat)
    "acc",     # elements of one thread's accumulator
    "ntask",   # (image, input channel, band) tasks
    "nslot",   # threads that take a range of them
    "slot",    # elements of one thread's scratch
])


# The flat path saves and restores the |dx| outputs at each row's ends for every tap, a strided
# loop that a wide kernel on small planes pays more for than its multiply-adds: it runs kernels of
# one row and at most this reach across (1x3: 2), of one column (no shift across: nothing to save)
# and planes of one row (1-D: no row ends), the packed path the rest. Two threads, float32,
# forward ms flat / packed, 2026-12-04, an AVX2 Zen 3 (the packed path's loops then on slices):
# 7x7 N=16 C=256 14x14 5.33 / 2.98, C=384 7x7 4.57 / 2.00, N=8 C=192 28x28 5.39 / 4.24, C=96
# 56x56 6.53 / 5.48, C=64 112x112 18.6 / 14.4; 5x5 C=256 14x14 2.40 / 2.13; but 3x3 14x14 1.07 /
# 1.68, 28x28 2.47 / 5.11, 112x112 4.75 / 10.7. With the packed path on flat offsets (Intel Xeon,
# 2026-12-04, two threads / one, forward; the input gradient alike): 3x3 N=32 C=512 7x7 2.01 /
# 1.19 and 3.87 / 1.71, C=256 14x14 1.96 / 1.11, C=128 28x28 2.34 / 1.63 and 3.92 / 3.07, N=16 C=64
# 56x56 1.65 / 1.40, N=8 C=32 112x112 2.24 / 1.30, C=144 56x56 1.94 / 1.54, N=16 C=256 10x10 0.83 /
# 0.41; but 1x3 N=32 C=96 28x28 0.85 / 0.91 and 1.35 / 1.51.
FLAT_MAX_REACH = 2


def takes_flat(sh, sw, iw, ow, oh, kh, kw, dil_w) -> bool:
    """Whether ``_depthwise_part`` takes the flat path (``_dw_layout`` asks its compiled twin)."""
    reach = (kw - 1) * dil_w
    return sh == 1 and sw == 1 and ow == iw and (oh == 1 or reach == 0 or (kh == 1 and reach <= FLAT_MAX_REACH))


_takes_flat = njit(inline="always", **_JIT)(takes_flat)


@njit(**_JIT)
def _dw_layout(n, c_in, ih, iw, kh, kw, oh, ow, sh, sw, pl, dil_h, dil_w, nthreads):  # pragma: no cover
    """How ``_depthwise_part`` cuts its work and scratch; shared with ``_dw_scratch``."""
    flat = _takes_flat(sh, sw, iw, ow, oh, kh, kw, dil_w)
    hq, wq = _packed_dims(oh, ow, kh, kw, sh, sw, dil_h, dil_w)
    rows = oh if flat else min(oh, max(1, TILE // wq))  # the accumulator stays in L1
    nband = (oh + rows - 1) // rows
    rows = (oh + nband - 1) // nband  # bands of equal size
    hb = rows + hq - oh
    if flat:  # the outputs of one tap's row ends: |dx| <= max(pl, (kw-1)*dil_w - pl) per row
        size = oh * max(1, pl, (kw - 1) * dil_w - pl)
        acc = 0
    else:
        size = sh * sw * hb * wq + 2 * wq + RUN_PAD
        acc = _aligned(rows * wq + RUN_PAD)
    ntask = n * c_in * nband
    nslot = max(1, min(ntask, nthreads))
    return DwLayout(flat, wq, rows, nband, hb, size, acc, ntask, nslot, _aligned(size) + acc)


@njit(**_JIT)
def _dw_scratch(x_shape, y_shape, kh, kw, sh, sw, pl, dil_h, dil_w, nthreads):  # pragma: no cover
    """Elements of the float and int64 workspaces that ``_depthwise_part`` needs."""
    n, c_in, ih, iw = x_shape
    lay = _dw_layout(n, c_in, ih, iw, kh, kw, y_shape[2], y_shape[3], sh, sw, pl, dil_h, dil_w, nthreads)
    return lay.nslot * lay.slot, lay.nslot * kh * kw


@njit(inline="always", **_JIT)
def _flat_run(ky, kx, ih, oh, ow, pt, pl, dil_h, dil_w):  # pragma: no cover
    """Tap ``(ky, kx)`` of a flat pair of planes (``ow == iw``, stride 1), shared by the forward
    pass and the weight gradient: its row and column shifts ``dy, dx``; the output rows ``r0:r1``
    it reaches (``r0 >= r1``: none, or it reads padding only); its flat run ``o0:o1`` (the first and
    last row's outermost pixels left out); and ``e0``, the first of the ``|dx|`` columns whose run
    crosses a row end."""
    dy, dx = ky * dil_h - pt, kx * dil_w - pl
    r0, r1 = max(0, -dy), min(oh, ih - dy)
    if dx <= -ow or dx >= ow:
        r1 = r0  # the tap reads padding only
    return dy, dx, r0, r1, r0 * ow + max(0, -dx), r1 * ow - max(0, dx), ow - dx if dx > 0 else 0


@njit(**_JIT)
def _flat_plane(xf, wv, bias, yf, ih, iw, oh, ow, kh, kw, pt, pl, dil_h, dil_w, save):  # pragma: no cover
    """One output plane from one input plane, both flat (row width ``ow == iw``), stride 1."""
    for o in range(oh * ow):
        yf[o] = bias
    for ky in range(kh):
        for kx in range(kw):
            dy, dx, r0, r1, o0, o1, e0 = _flat_run(ky, kx, ih, oh, ow, pt, pl, dil_h, dil_w)
            if r0 >= r1:
                continue
            nr, ne = r1 - r0, abs(dx)
            for col in range(ne):
                edge = yf[r0 * ow + e0 + col:r1 * ow:ow]
                kept = save[col * nr:(col + 1) * nr]
                for r in range(nr):
                    kept[r] = edge[r]
            _axpy(yf[o0:o1], xf[o0 + dy * iw + dx:o1 + dy * iw + dx], wv[ky * kw + kx], o1 - o0)
            for col in range(ne):
                edge = yf[r0 * ow + e0 + col:r1 * ow:ow]
                kept = save[col * nr:(col + 1) * nr]
                for r in range(nr):
                    edge[r] = kept[r]


@njit(**_JIT)
def _pack_plane(xf, plane, ih, iw, xp, sh, sw, pt, pl, hb, wq, u0):  # pragma: no cover
    """``_pack_input``'s layout for one channel (the flat ``xf`` from ``plane``, ``ih`` x ``iw``), a
    band of ``hb`` phase rows from ``u0``: rows wholly in the padding are zeroed; the rest copy
    their inside columns only, the padding columns being zero since the buffer was cleared (they
    are never written otherwise). Flat unsigned offsets (``U``), as in winograd's transforms."""
    for py in range(sh):
        for px in range(sw):
            lo = max(0, (sw - 1 - (px - pl)) // sw)  # _ox_range(px - pl, sw, iw, wq)
            hi = max(lo, min(wq, (iw - 1 - (px - pl)) // sw + 1))
            c0 = lo * sw + px - pl  # the input column of packed column lo
            for u in range(hb):
                rb = U(((py * sw + px) * hb + u) * wq)
                iy = (u0 + u) * sh + py - pt
                if iy < 0 or iy >= ih:
                    for v in range(U(wq)):
                        xp[rb + v] = 0
                    continue
                src, dst = U(plane + iy * iw + c0), rb + U(lo)
                if sw == 1:
                    for v in range(U(hi - lo)):
                        xp[dst + v] = xf[src + v]
                else:
                    for v in range(U(hi - lo)):
                        xp[dst + v] = xf[src + v * U(sw)]


@njit(**_JIT)
def _packed_taps(a, xp, offs, wv, nt, b0, cnt):  # pragma: no cover
    """a[k] = b0 + the ``nt`` taps ``wv[t] * xp[offs[t] + k]``, k < cnt, summed 4 at a time (then
    one at a time) in w's order, with flat unsigned offsets: the same sums, to the bit, as
    ``_axpy1x4`` over slices after a pass setting ``a`` to b0. One thread, N=32 C=128 30x30 3x3
    unpadded (this path): 8.2 ms with those, 4.2 with the offsets, 3.0 with the bias folded in
    (2026-12-04, Intel Xeon)."""
    n = U(cnt)
    t = 0
    while t + 4 <= nt:
        o0, o1, o2, o3 = U(offs[t]), U(offs[t + 1]), U(offs[t + 2]), U(offs[t + 3])
        w0, w1, w2, w3 = wv[t], wv[t + 1], wv[t + 2], wv[t + 3]
        if t == 0:  # the bias's pass folded in: b0 + (the 4 terms), as ``a[k] += ...`` after ``a[k] = b0``
            for k in range(n):
                a[k] = b0 + (w0 * xp[o0 + k] + w1 * xp[o1 + k] + w2 * xp[o2 + k] + w3 * xp[o3 + k])
        else:
            for k in range(n):
                a[k] += w0 * xp[o0 + k] + w1 * xp[o1 + k] + w2 * xp[o2 + k] + w3 * xp[o3 + k]
        t += 4
    if nt < 4:
        for k in range(n):
            a[k] = b0
    while t < nt:
        o0, w0 = U(offs[t]), wv[t]
        for k in range(n):
            a[k] += w0 * xp[o0 + k]
        t += 1


@njit(**_JIT)
def _dw_slot(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, flat, wq, rows, nband, hb, size, acc_size, t0, t1, offs,
             fws, base):  # pragma: no cover
    """Tasks ``t0:t1`` of ``_depthwise_part``, with the scratch at ``fws[base:]``."""
    n, c_in, ih, iw = x.shape
    c_out, _, kh, kw = w.shape
    m = c_out // c_in
    oh, ow = y.shape[2], y.shape[3]
    nt = kh * kw
    wf = w.reshape((c_out, nt))
    xf = x.reshape((n, c_in, ih * iw))
    yf = y.reshape((n, c_out, oh * ow))
    xflat, yflat = x.reshape(-1), y.reshape(-1)
    xp = fws[base:base + size]
    acc = fws[base + _aligned(size):base + _aligned(size) + acc_size]
    if not flat:
        xp[:] = 0  # the padding columns, which _pack_plane never writes
    for task in range(t0, t1):
        band = task % nband
        ci = task // nband % c_in
        bn = task // (nband * c_in)
        if flat:
            for j in range(m):
                co = ci * m + j
                _flat_plane(xf[bn, ci], wf[co], bias[co], yf[bn, co], ih, iw, oh, ow, kh, kw, pt, pl,
                            dil_h, dil_w, xp)
            continue
        oy0 = band * rows
        nr = min(rows, oh - oy0)
        cnt = (nr * wq + RUN_PAD - 1) // RUN_PAD * RUN_PAD
        _pack_plane(xflat, (bn * c_in + ci) * ih * iw, ih, iw, xp, sh, sw, pt, pl, hb, wq, oy0)
        for j in range(m):
            co = ci * m + j
            _packed_taps(acc, xp, offs, wf[co], nt, bias[co], cnt)
            out = U(((bn * c_out + co) * oh + oy0) * ow)
            for r in range(nr):
                src, dst = U(r * wq), out + U(r * ow)
                for ox in range(U(ow)):
                    yflat[dst + ox] = acc[src + ox]


@njit(**_JIT)
def _depthwise_part(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of y[n, co] = bias[co] + sum over ky, kx of w[co, 0, ky, kx] *
    shifted x[n, co // m], with ``m = C_out / C_in`` and ``y`` C-contiguous.

    Tasks are (image, input channel, band of output rows), one contiguous range per slot; each
    reads its input once for the ``m`` output channels. Each slot is run by one of fastconv's
    threads (``numba_jit._run_parts``): a kernel without Numba's parallel loops compiles in a
    third of the time, and these tasks are long enough for the thread pool's ~12 us."""
    n, c_in, ih, iw = x.shape
    kh, kw = w.shape[2], w.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    lay = _dw_layout(n, c_in, ih, iw, kh, kw, oh, ow, sh, sw, pl, dil_h, dil_w, nthreads)
    if slot >= lay.nslot:
        return
    nt = kh * kw
    offs = iws[slot * nt:(slot + 1) * nt]  # each slot its own: no two threads write one array
    _pack_terms(1, kh, kw, sh, sw, dil_h, dil_w, lay.hb, lay.wq, offs)
    _dw_slot(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, lay.flat, lay.wq, lay.rows, lay.nband, lay.hb, lay.size,
             lay.acc, lay.ntask * slot // lay.nslot, lay.ntask * (slot + 1) // lay.nslot, offs, fws,
             slot * lay.slot)


# ------------------------------------------------------------------------------ 3-D volumes

# A depthwise 3-D forward lifted to 2-D (``_lift``) stacks each output plane's kD input planes as
# channels: a grouped 2-D call of kD channels a group, which no depthwise path takes (numba's packed
# kernel at 5-10 GFLOP/s), after a copy of kD/sd times the input. Here a task packs its input
# plane's band once for every plane it reads (``_pack_plane``, zero planes for the depth padding)
# and sums each output plane's kD x kH x kW taps as runs over them (``_packed_taps``): no copy of
# the input, the multiply-adds of the direct sum; 1.7-6x faster than the lift (measured beside
# ``numba_jit._depthwise_volume``). The gradients keep the lift, whose input gradient is a
# depthwise call already (one channel a group into kD).


Dw3Layout = namedtuple("Dw3Layout", [
    "wq", "rows", "nband", "hb", "size", "acc", "ntask", "nslot", "slot",  # as DwLayout's packed path
    "ps",      # elements of one plane's packed band
    "dp",      # packed planes (the depth padding's among them)
])


@njit(**_JIT)
def _dw3_layout(n, c_in, kd, kh, kw, od, oh, ow, sd, sh, sw, dil_d, dil_h, dil_w, nthreads):  # pragma: no cover
    """How ``_dw3_part`` cuts its work and scratch (``Dw3Layout``): bands of output rows as
    ``_dw_layout``'s packed path, ``dp`` packed planes of ``ps`` elements each."""
    hq, wq = _packed_dims(oh, ow, kh, kw, sh, sw, dil_h, dil_w)
    rows = min(oh, max(1, TILE // wq))  # the accumulator stays in L1
    nband = (oh + rows - 1) // rows
    rows = (oh + nband - 1) // nband
    hb = rows + hq - oh
    ps = sh * sw * hb * wq
    dp = (od - 1) * sd + (kd - 1) * dil_d + 1  # the padded planes the output reads
    size = dp * ps + 2 * wq + RUN_PAD
    acc = _aligned(rows * wq + RUN_PAD)
    ntask = n * c_in * nband
    nslot = max(1, min(ntask, nthreads))
    return Dw3Layout(wq, rows, nband, hb, size, acc, ntask, nslot, _aligned(size) + acc, ps, dp)


@njit(**_JIT)
def _dw3_scratch(x_shape, y_shape, kd, kh, kw, sd, sh, sw, dil_d, dil_h, dil_w, nthreads):  # pragma: no cover
    """Elements of the float and int64 workspaces that ``_dw3_part`` needs."""
    lay = _dw3_layout(x_shape[0], x_shape[1], kd, kh, kw, y_shape[2], y_shape[3], y_shape[4], sd, sh, sw, dil_d,
                      dil_h, dil_w, nthreads)
    return lay.nslot * lay.slot, lay.nslot * kd * kh * kw


@njit(**_JIT)
def _dw3_part(x, w, bias, y, sd, sh, sw, pd, pt, pl, dil_d, dil_h, dil_w, nthreads, fws, iws,
              slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of the 3-D depthwise y[n, co] = bias[co] + sum over kz, ky, kx
    of w[co, 0, kz, ky, kx] * shifted x[n, co // m] (``m = C_out / C_in``, ``y`` C-contiguous).
    Tasks are (image, input channel, band of output rows), a contiguous range per slot, each
    reading its input once for the ``m`` output channels."""
    n, c_in, idp, ih, iw = x.shape
    c_out, _, kd, kh, kw = w.shape
    m = c_out // c_in
    od, oh, ow = y.shape[2], y.shape[3], y.shape[4]
    wq, rows, nband, hb, size, acc_size, ntask, nslot, slot_size, ps, dp = _dw3_layout(
        n, c_in, kd, kh, kw, od, oh, ow, sd, sh, sw, dil_d, dil_h, dil_w, nthreads)
    if slot >= nslot:
        return
    nt2 = kh * kw
    nt = kd * nt2
    offs = iws[slot * nt:(slot + 1) * nt]  # each slot its own: no two threads write one array
    _pack_terms(1, kh, kw, sh, sw, dil_h, dil_w, hb, wq, offs)  # a plane's taps, then each depth's
    for kz in range(kd - 1, 0, -1):  # from the last, so that offs[:nt2] is read before kz = 0's
        for t in range(nt2):
            offs[kz * nt2 + t] = kz * dil_d * ps + offs[t]
    wf = w.reshape((c_out, nt))
    xflat, yflat = x.reshape(-1), y.reshape(-1)
    base = slot * slot_size
    xp = fws[base:base + size]
    acc = fws[base + _aligned(size):base + _aligned(size) + acc_size]
    xp[:] = 0  # the padding columns and the depth padding's planes, which nothing writes
    for task in range(ntask * slot // nslot, ntask * (slot + 1) // nslot):
        band = task % nband
        ci = task // nband % c_in
        bn = task // (nband * c_in)
        oy0 = band * rows
        nr = min(rows, oh - oy0)
        cnt = (nr * wq + RUN_PAD - 1) // RUN_PAD * RUN_PAD
        for p in range(dp):
            d = p - pd
            if 0 <= d < idp:
                _pack_plane(xflat, ((bn * c_in + ci) * idp + d) * ih * iw, ih, iw, xp[p * ps:], sh, sw, pt, pl,
                            hb, wq, oy0)
        for j in range(m):
            co = ci * m + j
            for o in range(od):
                _packed_taps(acc, xp[o * sd * ps:], offs, wf[co], nt, bias[co], cnt)
                out = U((((bn * c_out + co) * od + o) * oh + oy0) * ow)
                for r in range(nr):
                    src, dst = U(r * wq), out + U(r * ow)
                    for ox in range(U(ow)):
                        yflat[dst + ox] = acc[src + ox]


# ---------------------------------------------------------------------------- weight gradient

LANES = 16  # the weight gradient's partial sums per tap: one 512-bit vector of float32


@njit(**_JIT)
def _dwgw_layout(c_in, m, kh, kw, oh, ow, sh, sw, dil_h, dil_w, nthreads):  # pragma: no cover
    """``(wq, hq, size, gsize, nslot, slot)`` of ``_dwgw_part``: whole planes, packed input, gy and
    the ``LANES`` partial sums of each of an input channel's ``m`` output channels' taps side by
    side in each thread's scratch (``gsize``: gy's and the sums')."""
    hq, wq = _packed_dims(oh, ow, kh, kw, sh, sw, dil_h, dil_w)
    size = sh * sw * hq * wq + 2 * wq + RUN_PAD
    gsize = _aligned(oh * wq + RUN_PAD) + _aligned(m * kh * kw * LANES)
    nslot = max(1, min(c_in, nthreads))
    return wq, hq, size, gsize, nslot, _aligned(size) + gsize


@njit(**_JIT)
def _dwgw_scratch(x_shape, y_shape, kh, kw, sh, sw, dil_h, dil_w, nthreads):  # pragma: no cover
    """Elements of the float and int64 workspaces that ``_dwgw_part`` needs."""
    wq, hq, size, gsize, nslot, slot = _dwgw_layout(x_shape[1], y_shape[1] // x_shape[1], kh, kw, y_shape[2],
                                                    y_shape[3], sh, sw, dil_h, dil_w, nthreads)
    return nslot * slot, nslot * kh * kw


@njit(**_JIT)
def _lane_dots(sums, gp, xp, offs, nt, cnt):  # pragma: no cover
    """sums[t*LANES + l] += the products ``gp[k] * xp[offs[t] + k]`` of the k < cnt that are l
    modulo ``LANES`` (cnt a multiple of it), 4 taps a pass: each partial sum its own lane, so the
    loops run on vectors, where one running sum a tap was a chain of scalar adds (Numba keeps
    the order of a sum as written)."""
    n = U(cnt)
    t = 0
    while t + 4 <= nt:
        o0, o1, o2, o3 = U(offs[t]), U(offs[t + 1]), U(offs[t + 2]), U(offs[t + 3])
        a0 = U(t * LANES)
        a1, a2, a3 = a0 + U(LANES), a0 + U(2 * LANES), a0 + U(3 * LANES)
        for k in range(U(0), n, U(LANES)):
            for lane in range(U(LANES)):
                v = gp[k + lane]
                sums[a0 + lane] += v * xp[o0 + k + lane]
                sums[a1 + lane] += v * xp[o1 + k + lane]
                sums[a2 + lane] += v * xp[o2 + k + lane]
                sums[a3 + lane] += v * xp[o3 + k + lane]
        t += 4
    while t < nt:
        o0, a0 = U(offs[t]), U(t * LANES)
        for k in range(U(0), n, U(LANES)):
            for lane in range(U(LANES)):
                sums[a0 + lane] += gp[k + lane] * xp[o0 + k + lane]
        t += 1


@njit(**_JIT)
def _dwgw_flat_plane(gf, xf, gwc, ih, iw, oh, ow, kh, kw, pt, pl, dil_h, dil_w, zero):  # pragma: no cover
    """gwc[t] += this plane's sum for each tap, both planes flat (``ow == iw``, stride 1): one dot
    product over the run of rows the tap reaches, less the products its run took across row ends
    (an inf or NaN there leaves a NaN, which the caller's exact recount replaces)."""
    for ky in range(kh):
        for kx in range(kw):
            dy, dx, r0, r1, o0, o1, e0 = _flat_run(ky, kx, ih, oh, ow, pt, pl, dil_h, dil_w)
            if r0 >= r1:
                continue
            shift = dy * iw + dx
            s = _dot(gf[o0:o1], xf[o0 + shift:o1 + shift], o1 - o0, zero)
            for r in range(r0, r1):  # the columns e0.. whose products crossed a row end
                for col in range(e0, e0 + abs(dx)):
                    o = r * ow + col
                    if o0 <= o < o1:
                        s -= gf[o] * xf[o + shift]
            gwc[ky * kw + kx] += s


@njit(**_JIT)
def _dwgw_packed(gflat, xflat, gwf, ci, n, c_in, c_out, ih, iw, oh, ow, m, nt, sh, sw, pt, pl, hq, wq, cnt, offs, xp,
                 gp, lanes, zero):  # pragma: no cover
    """Input channel ci's output channels' rows of ``gwf`` on the packed planes: each image's input
    plane packed (as the forward's packed path) and gy laid out at the packed width, the taps'
    products summed in ``LANES`` partial sums each (``_lane_dots``) over the images, then the
    lanes in order. Two threads, float32, N=32 3x3 C=512 7x7 2.11 -> 1.33 ms, C=128 28x28 2.72 ->
    2.45, stride 2 1.61 -> 1.51, N=16 C=256 10x10 0.85 -> 0.63, 5x5 C=32 56x56 2.30 -> 1.95 (against
    a running sum a tap, 2026-12-04, Intel Xeon); kernels of one row lost 2x (the flat path's)."""
    lanes[:] = zero
    for bn in range(n):
        _pack_plane(xflat, (bn * c_in + ci) * ih * iw, ih, iw, xp, sh, sw, pt, pl, hq, wq, 0)
        for j in range(m):
            src = U((bn * c_out + ci * m + j) * oh * ow)
            for r in range(oh):
                for ox in range(U(ow)):
                    gp[U(r * wq) + ox] = gflat[src + U(r * ow) + ox]
            _lane_dots(lanes[j * nt * LANES:(j + 1) * nt * LANES], gp, xp, offs, nt, cnt)
    for j in range(m):  # each tap's lanes, in order
        for t in range(nt):
            s = zero
            for lane in range(LANES):
                s += lanes[(j * nt + t) * LANES + lane]
            gwf[ci * m + j, t] = s


@njit(**_JIT)
def _dwgw_slot(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, zero, wq, hq, size, gsize, c0, c1, offs, fws,
               base):  # pragma: no cover
    """Input channels ``c0:c1`` of ``_dwgw_part``, with the scratch at ``fws[base:]``."""
    n, c_in, ih, iw = x.shape
    c_out, _, kh, kw = gw.shape
    m = c_out // c_in
    oh, ow = gy.shape[2], gy.shape[3]
    nt = kh * kw
    cnt = (oh * wq + RUN_PAD - 1) // RUN_PAD * RUN_PAD
    gwf = gw.reshape((c_out, nt))
    xflat, gflat = x.reshape(-1), gy.reshape(-1)
    xf, gyf = x.reshape((n, c_in, ih * iw)), gy.reshape((n, c_out, oh * ow))
    xp = fws[base:base + size]
    g0 = base + _aligned(size)  # gy at the packed width, then the lanes (``_dwgw_layout``)
    gp = fws[g0:g0 + _aligned(oh * wq + RUN_PAD)]
    lanes = fws[g0 + _aligned(oh * wq + RUN_PAD):g0 + gsize]
    xp[:] = 0  # the padding columns, which _pack_plane never writes
    gp[:] = 0  # and gy's thrown-away columns and tail
    flat = _takes_flat(sh, sw, iw, ow, oh, kh, kw, dil_w)  # as the forward's flat path: no packing at all
    for ci in range(c0, c1):
        if flat:
            for j in range(m):
                gwf[ci * m + j] = zero
            for bn in range(n):
                for j in range(m):
                    co = ci * m + j
                    _dwgw_flat_plane(gyf[bn, co], xf[bn, ci], gwf[co], ih, iw, oh, ow, kh, kw, pt, pl, dil_h, dil_w,
                                     zero)
        else:
            _dwgw_packed(gflat, xflat, gwf, ci, n, c_in, c_out, ih, iw, oh, ow, m, nt, sh, sw, pt, pl, hq, wq, cnt,
                         offs, xp, gp, lanes, zero)
        # The thrown-away columns pair gy's zeros with real inputs: an inf or NaN there makes the
        # sum NaN. Such a channel (rare) is summed again exactly, row by row.
        for j in range(m):
            co = ci * m + j
            if not _all_finite(gwf[co]):
                gwf[co] = zero
                for bn in range(n):
                    _gw_rows(gy, x, gw, bn, co, 1, ci, sh, sw, pt, pl, dil_h, dil_w, zero)


@njit(**_JIT)
def _dwgw_part(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, zero, nthreads, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nthreads`` of gw[co, 0, ky, kx] = sum over n and output pixels of gy[n, co]
    * shifted x[n, co // m]: a range of input channels. Per channel, each image's plane is packed
    once (as the forward's packed path) with gy laid out at the packed width, one dot product per
    tap; at stride 1 with the width kept the planes are read where they lie. Each channel's sum runs
    over the images in order: the same bits on any thread count."""
    c_in = x.shape[1]
    kh, kw = gw.shape[2], gw.shape[3]
    wq, hq, size, gsize, nslot, slot_size = _dwgw_layout(c_in, gw.shape[0] // c_in, kh, kw, gy.shape[2], gy.shape[3],
                                                         sh, sw, dil_h, dil_w, nthreads)
    if slot >= nslot:
        return
    nt = kh * kw
    offs = iws[slot * nt:(slot + 1) * nt]
    _pack_terms(1, kh, kw, sh, sw, dil_h, dil_w, hq, wq, offs)
    _dwgw_slot(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, zero, wq, hq, size, gsize, c_in * slot // nslot,
               c_in * (slot + 1) // nslot, offs, fws, slot * slot_size)
