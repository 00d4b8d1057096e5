"""Numba kernels of the ``numba`` backend that run a forward over small images on ``_numba_gemm``'s
register tiles with the batch's images as the tiles' columns, one output pixel at a time, over
the taps that read the image only.

With the input laid out as ``xt[iy, ix, c, n]`` (a copy: ``(H, W, C, N)``), output pixel ``(oy,
ox)`` is

    y[:, :, oy, ox].T (K x N) = sum over the kernel rows ky that read the image of
                                A[:, ky's steps] @ xt[iy, ix0 .. ix1, :, :] (steps x N)

where A is the weight with its reduction in the order ``(ky, kx, c)``, and a kernel row's taps
that read the image (``kx0 .. kx1``) are one run of its steps, whose factors are one run of
``xt``'s rows, ``N`` apart: B is read where it lies, and so is A (a transposed copy of the
weight; each of its values meets a few pixels' panels of B, too few to repay packing it). The
taps that read padding are left out, not multiplied by zeros: over a 4x4 image a 5x5 kernel
padded by 2 reads the image at 196 of its 400 (pixel, tap) pairs, a 7x7 one over 7x7 at 1,369 of
2,401. The patches' columns (``_numba_patches``) and the implicit forward (``_numba_implicit``)
multiply the padding's zeros too, and copy columns or padded planes.

A work item is a range of the output channels (whole panels of the tiles' rows), over every pixel:
it copies its rows of the weight, then per block of ``KC`` reduction steps (its A, in L2) every
pixel's runs within the block, each run's B (``N`` columns) in L1 across the item's panels of
rows, and puts its rows of the sums (kept per pixel, ``(pixels, rows, N)``) into ``y``. The
threads share the input's copy (``Shared``). Each output's sums run in the same order whatever the
thread count or the batch: the same bits (and a ``fastconv.dask`` chunk's, whose runs are the
whole array's).

The weight gradient (``grad_weight``, at the end) runs per tap over the output pixels whose tap
reads the image, with the images as the reduction instead.

Measured (one thread, float32, N=32 256 -> 256 5x5 over 4x4, padded by 2; Zen 4): the products
7.2 ms (114 GFLOP/s of the taps that read the image), the input's copy 0.1-0.3, the weight's
0.15-0.3, putting the sums 0.2; the patches' forward 18.0 and torch's 9.0. Two threads: forward
4.7-5.1 ms, weight gradient 5.0 (numba's kernels before: 9.4 and 16.4; torch's 4.5 and 6.5). See
``numba_jit._images_fit`` for where it runs.

On the cores it runs on (``_gemm.NARROW``: a 512-bit multiply-add costs two 256-bit ones) the
tiles' columns come in 256-bit vectors where a 512-bit one would be half empty or less (8 images:
``_gemm._tile_rows_narrow``, 8 sums a tile) or three quarters full (24: three vectors); each sum's
multiply-adds run in the same order, so the bits are those of any other tile. Two threads, N=8 128
-> 128 7x7 6x6, forward 1.6 ms against 2.6 on the half-empty 512-bit vectors (torch's 1.35);
tiles of 16 rows by one 256-bit vector measured no faster than 8 rows.
"""
import numpy as np

from .._workers import Shared, buffer, kept, map_items, reserved
from . import _numba_gemm as _gemm
from ._numba_gemm import KC, MR, _batch_cols, _panel_width, _rows_tile, _whole_rows
from ._numba_kernels import _JIT, njit

# The tiles' columns come in vectors of this many bits (``_rows_tile``: 256-bit vectors on ``NARROW``
# cores, where a 512-bit one costs two; the kernel runs on those only: ``numba_jit.IMAGES``).
LANE_BITS = 256


def applies(groups, dil_w) -> bool:
    """Whether a 2-D forward call (or an input gradient's stride phase) of this kind can run here:
    on register tiles, in one group, its kernel rows' taps adjacent (undilated across: each row's
    taps that read the image are one run of ``xt``'s rows)."""
    return _gemm.TILES and groups == 1 and dil_w == 1


def _items(k, threads):
    """``(r0, r1)`` ranges of ``k`` output channels, whole panels of rows each, the first the
    largest: two a thread where there are panels enough (a thread slowed by another process takes
    fewer)."""
    panels = _whole_rows(k) // MR
    count = max(1, min(panels, 2 * threads))
    per = -(-panels // count)
    return [(p0 * MR, min(k, (p0 + per) * MR)) for p0 in range(0, panels, per)]


def scratch_bytes(x_shape, k, kh, kw, oh, ow, item, threads):
    """Bytes that ``forward`` takes: the input's copy, the runs' table and the bias, and per thread
    an item's rows of the weight and of the sums (``_items``' largest) and ``reserved``'s."""
    n, c, h, w = x_shape
    r0, r1 = _items(k, threads)[0]
    mr = _whole_rows(r1 - r0)
    per_thread = (mr * kh * kw * c + oh * ow * mr * n + reserved()) * item + oh * ow * 8
    return (n * c * h * w + _whole_rows(k)) * item + oh * ow * (kh * 3 + 1) * 8 + threads * per_thread


def forward(x, w, bias, y, sh, sw, pt, pl, dh, threads, budget, compile_only=False) -> bool:
    """``y`` (C-contiguous ``(N, K, OH, OW)``) = the convolution of ``x`` (C-contiguous, padded by
    ``pt`` rows above and ``pl`` columns left, negative: cropped) with ``w`` (``(K, C, kh, kw)``, any
    view), plus ``bias`` (None or empty: none), at a stride, kernel rows ``dh`` apart. False, ``y``
    unwritten, where its scratch does not fit ``budget`` bytes. ``compile_only`` (warmup): on the
    calling thread alone."""
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    oh, ow = y.shape[2], y.shape[3]
    threads = 1 if compile_only else threads
    if scratch_bytes(x.shape, k, kh, kw, oh, ow, x.itemsize, threads) > budget:
        return False
    xt = kept("images-input", (h * wd * c * n,), x.dtype)
    runs, count = _runs(c, n, h, wd, kh, kw, sh, sw, pt, pl, dh, oh, ow)
    rows_of = _items(k, threads)
    bias_all = np.zeros(_whole_rows(k), x.dtype)
    if bias is not None and bias.size:
        bias_all[:k] = bias
    steps = kh * kw * c
    per = -(-h // (2 * threads))  # input rows a part of the copy: two parts a thread
    copying = Shared([(i0, min(h, i0 + per)) for i0 in range(0, h, per)],
                     lambda i0, i1: _transpose_in(x, xt, i0, i1, True))
    y3 = y.reshape(n, k, oh * ow)

    def work(r0, r1, scratch):
        copying.help()
        mr = _whole_rows(r1 - r0)
        # the item's rows of the weight, steps (ky, kx, c), read where they lie by the tiles
        a = buffer(scratch, "images-weight", (mr, kh, kw, c), x.dtype)
        np.copyto(a[:r1 - r0], w[r0:r1].transpose(0, 2, 3, 1))
        a[r1 - r0:] = 0
        sums = buffer(scratch, "images-sums", (oh * ow * mr * n,), x.dtype)
        started = buffer(scratch, "images-started", (oh * ow,), np.int64)
        copying.ready()
        _products(a.reshape(-1), mr, steps, xt, sums, bias_all[r0:r0 + mr], runs, count, n, started)
        _put(sums, mr, r0, r1, y3)

    map_items(rows_of, work, threads, shared=(copying,))
    return True


@njit(**_JIT)
def _runs(c, n, h, w, kh, kw, sh, sw, pt, pl, dh, oh, ow):  # pragma: no cover
    """Per output pixel ``q = oy*ow + ox``, its kernel rows that read the image: ``runs[q, e] =
    (s0, s1, b0)``, steps s0 .. s1 of the reduction (the row's taps that read the image, every
    channel) whose factors are ``xt``'s rows from element b0 on; ``count[q]`` of them."""
    runs = np.zeros((oh * ow, kh, 3), np.int64)
    count = np.zeros(oh * ow, np.int64)
    for oy in range(oh):
        for ox in range(ow):
            q = oy * ow + ox
            ix0 = ox * sw - pl
            kx0, kx1 = max(0, -ix0), min(kw, w - ix0)
            if kx0 >= kx1:
                continue
            for ky in range(kh):
                iy = oy * sh - pt + ky * dh
                if 0 <= iy < h:
                    e = count[q]
                    runs[q, e, 0] = (ky * kw + kx0) * c
                    runs[q, e, 1] = (ky * kw + kx1) * c
                    runs[q, e, 2] = (iy * w + ix0 + kx0) * c * n
                    count[q] = e + 1
    return runs, count


@njit(**_JIT)
def _transpose_in(x, xt, i0, i1, images_last):  # pragma: no cover
    """Rows i0 .. i1 of ``x`` (N, C, H, W) into ``xt``, flat (H, W, C, N) where ``images_last``
    (the forward's) else (H, W, N, C) (the weight gradient's). The forward's is written in order: a
    pixel's C x N values read from N x C lines that the next pixels reuse (in L2). (Written a pixel
    apart, the stores met in a few of L1's sets: N=32 256 channels 4x4, one thread, 0.45 ms against
    0.1; by blocks of channels, their lines kept in L1, no faster.) The weight gradient's runs an
    image at a time, whose C lines L1 keeps over the rows' pixels: 0.51-0.60x the time of the
    forward's order (one thread, N=8 384 channels 5x5 0.037 ms against 0.063, N=64 64 14x14 0.40
    against 0.79)."""
    n, c, h, w = x.shape
    if images_last:
        for iy in range(i0, i1):
            for ix in range(w):
                base = (iy * w + ix) * c * n
                for o in range(c):
                    for i in range(n):
                        xt[base + o * n + i] = x[i, o, iy, ix]
        return
    for i in range(n):
        for iy in range(i0, i1):
            for ix in range(w):
                base = ((iy * w + ix) * n + i) * c
                for o in range(c):
                    xt[base + o] = x[i, o, iy, ix]


@njit(**_JIT)
def _products(a, mp, k, xt, sums, bias, runs, count, n, started):  # pragma: no cover
    """``sums[q]`` (mp x n, per output pixel q) = A (``mp`` rows of ``k`` steps, C-contiguous) times
    the pixel's runs of ``xt`` (``_runs``), plus ``bias`` (mp); a pixel without runs gets the bias."""
    nr = _batch_cols(xt.itemsize)
    lanes = nr // _gemm.BATCH_NV
    pixels = runs.shape[0]
    started[:] = 0
    for pc in range(0, k, KC):  # A's block in L2 over every pixel
        kc = min(KC, k - pc)
        for q in range(pixels):
            for e in range(count[q]):
                first, last = max(runs[q, e, 0], pc), min(runs[q, e, 1], pc + kc)
                if first >= last:
                    continue
                b0 = runs[q, e, 2] + (first - runs[q, e, 0]) * n
                add = started[q]
                jb = 0
                while jb < n:  # B's panel in L1 over the rows
                    cols = min(_panel_width(n - jb, nr, lanes), n - jb)
                    for ip in range(mp // MR):
                        _rows_tile(a, ip * MR * k + first, k, xt, b0 + jb, n, sums, (q * mp + ip * MR) * n + jb,
                                   n, last - first, add, bias, ip * MR, 1 - add, cols, nr, _gemm.NARROW)
                    jb += cols
                started[q] = 1
    for q in range(pixels):
        if not started[q]:
            for r in range(mp):
                sums[(q * mp + r) * n:(q * mp + r + 1) * n] = bias[r]


@njit(**_JIT)
def _put(sums, mp, r0, r1, y3):  # pragma: no cover
    """Rows r0 .. r1 of ``y3`` (N, K, pixels) from ``sums`` (pixels, mp, N)."""
    n, _, pixels = y3.shape
    for b in range(n):
        for r in range(r1 - r0):
            for q in range(pixels):
                y3[b, r0 + r, q] = sums[(q * mp + r) * n + b]


# -- the weight gradient: per tap, gy's rows by the input's rows that the tap reads ------------------
#
# With gy laid out as ``gt[k, q, n]`` ((K, P, N): each output channel's pixels, the images inside)
# and the input as ``xs[iy, ix, n, c]`` ((H, W, N, C)), tap (ky, kx) of the weight gradient is
#
#     gw[:, :, ky, kx] (K x C) = sum over the output rows oy whose row iy the tap reads of
#                                gt[:, oy's pixels ox0 .. ox1, :] (K x L) @ xs[iy, ix0 .. ix1, :, :] (L x C)
#
# with L = (ox1 - ox0) N: the tap's output pixels in the row are one run of gt's values (A's rows
# where they lie, ``P N`` apart) and the input pixels they read one run of xs's rows (B where it
# lies, ``C`` apart). Only the pixels whose tap reads the image are multiplied.


def gw_scratch_bytes(x_shape, k, kh, kw, oh, ow, item):
    """Bytes that ``grad_weight`` takes: the input's and gy's copies, the taps' sums."""
    n, c, h, w = x_shape
    return (n * c * h * w + _whole_rows(k) * oh * ow * n + kh * kw * _whole_rows(k) * c + reserved()) * item


def grad_weight(gy, x, gw, pt, pl, dh, dw, threads, budget, compile_only=False) -> bool:
    """``gw`` (C-contiguous ``(K, C, kh, kw)``) = the weight gradient of the stride-1 convolution of
    ``x`` into ``gy`` (both C-contiguous), padded by ``pt`` rows above and ``pl`` columns left,
    taps ``dh`` and ``dw`` apart. False, ``gw`` unwritten, where the scratch does not fit
    ``budget`` bytes. Work items are ranges of output channels, every tap each; each sum runs in the
    same order whatever the thread count."""
    n, c, h, wd = x.shape
    k, _, kh, kw = gw.shape
    oh, ow = gy.shape[2], gy.shape[3]
    if gw_scratch_bytes(x.shape, k, kh, kw, oh, ow, x.itemsize) > budget:
        return False
    threads = 1 if compile_only else threads
    mp = _whole_rows(k)
    xs = kept("images-gw-input", (h * wd * n * c,), x.dtype)
    gt = kept("images-gw-gy", (mp * oh * ow * n,), x.dtype)
    sums = kept("images-gw-sums", (kh * kw, mp, c), x.dtype)
    per = -(-h // (2 * threads))
    items = _items(k, threads)  # ranges of output channels, every tap each
    copying = Shared([("x", i0, min(h, i0 + per)) for i0 in range(0, h, per)]
                     + [("gy", r0, _whole_rows(r1)) for r0, r1 in items],
                     lambda what, a, b: (_transpose_in(x, xs, a, b, False) if what == "x"
                                         else _transpose_gy(gy, gt, a, b)))

    def work(r0, r1, scratch):
        copying.ready()
        for tap in range(kh * kw):
            _gw_tap(gt, xs, sums[tap].reshape(-1), tap // kw, tap % kw, r0, _whole_rows(r1), pt, pl, dh, dw, oh, ow, h,
                    wd, n, c)
        # the item's rows of gw, whole: items that wrote taps of the same rows shared gw's lines (each
        # row's taps of a channel are one line) and slowed each other, two threads 1.5x one's time
        _gw_put(sums, gw, r0, r1)

    map_items(items, work, threads, shared=(copying,))
    return True


@njit(**_JIT)
def _gw_put(sums, gw, r0, r1):  # pragma: no cover
    """Rows r0 .. r1 of the taps' sums (taps, rows, C) into ``gw`` (K, C, kh, kw): each row's
    taps read in turn (the taps' planes lie a multiple of 4 KiB apart: read across them, their lines
    met in one set of L1) into its block of gw, which L1 holds."""
    _, c, kh, kw = gw.shape
    for r in range(r0, r1):
        for tap in range(kh * kw):
            ky, kx = tap // kw, tap % kw
            for ci in range(c):
                gw[r, ci, ky, kx] = sums[tap, r, ci]


@njit(**_JIT)
def _transpose_gy(gy, gt, r0, r1):  # pragma: no cover
    """Output channels r0 .. r1 of ``gy`` (N, K, OH, OW) into ``gt`` (flat (whole tiles of K, P, N)),
    zero past K."""
    n, k, oh, ow = gy.shape
    p = oh * ow
    for r in range(r0, r1):
        if r >= k:
            gt[r * p * n:(r + 1) * p * n] = 0
            continue
        for b in range(n):
            for oy in range(oh):
                for ox in range(ow):
                    gt[(r * p + oy * ow + ox) * n + b] = gy[b, r, oy, ox]


@njit(**_JIT)
def _gw_tap(gt, xs, sums, ky, kx, r0, r1, pt, pl, dh, dw, oh, ow, h, w, n, c):  # pragma: no cover
    """Rows r0 .. r1 (whole tiles) of tap (ky, kx)'s sums (``sums``: flat (rows, c)): gy's pixels
    whose tap reads the image by the input pixels they read, one output row at a time."""
    oy0, oy1 = max(0, pt - ky * dh), min(oh, h + pt - ky * dh)
    ox0, ox1 = max(0, pl - kx * dw), min(ow, w + pl - kx * dw)
    if oy0 >= oy1 or ox0 >= ox1:
        sums[r0 * c:r1 * c] = 0
        return
    nr = _batch_cols(xs.itemsize)
    lanes = nr // _gemm.BATCH_NV
    lda = oh * ow * n
    run = (ox1 - ox0) * n  # the reduction's steps a row
    jb = 0
    while jb < c:
        cols = min(_panel_width(c - jb, nr, lanes), c - jb)
        for i0 in range(r0, r1, MR):
            add = 0
            for oy in range(oy0, oy1):
                iy = oy - pt + ky * dh
                a0 = i0 * lda + (oy * ow + ox0) * n
                b0 = (iy * w + ox0 - pl + kx * dw) * n * c + jb
                for s0 in range(0, run, KC):
                    _rows_tile(gt, a0 + s0, lda, xs, b0 + s0 * c, c, sums, i0 * c + jb, c, min(KC, run - s0),
                               add, sums, 0, 0, cols, nr, _gemm.NARROW)
                    add = 1
        jb += cols
