"""Numba kernels of the ``numba`` backend that run a multi-tap kernel with many channels (a strided
3x3, a 2x2 phase of a strided layer's input gradient, a 7x7 stem) as matrix products on
``_numba_gemm``'s register tiles, over columns of patches.

A work item is a range of the batch's flat output pixels ``q = n*P + p`` (``P`` pixels an image).
It copies each pixel's patch into a column of ``B`` (rows ``(c, ky, kx)``, the order of ``w``'s
flat rows; zero where a tap reads padding), multiplies the packed weight by it
(``_numba_gemm.batch``) and puts the product's rows into ``y``, adding the bias. The weight
gradient is the same columns' adjoint: each slice of the pixels sums ``gy``'s columns times
``B``'s into its own ``gw`` (``_numba_gemm.red_batch``), and the slices' sums are added in order.

Against the packed path (``_numba_kernels``' 4x4 dot products, sums in memory) the sums stay in
registers; against im2col's NumPy products the tiles run AVX-512 where this machine's OpenBLAS
picks AVX2 kernels. The columns are ``kh*kw / (sh*sw)`` times the input, an item's at a time.
"""

import numpy as np

from .._workers import Shared, buffer, chunks, kept, map_items, reserved
from . import _numba_gemm as _gemm
from ._numba_gemm import KC, MR
from ._numba_kernels import _JIT, njit

U = np.uint64  # offsets into flat arrays

# A work item's output pixels: the products' width. Two threads, float32, N=32 3x3 stride 2,
# forward in ms with items of 128 / 256 / 512 pixels: 14x14 C=256 -> 512 10.5 / 10.8 / 10.5,
# 28x28 C=128 -> 256 10.1 / 10.3 / 10.1 (im2col's 19.5 and 18.6).
ITEM_PIXELS = 256
PART_PIXELS = 16  # items hold whole half panels of the tiles' columns (a half runs on its own tile)
_NO_SPANS = np.empty((0, 4), np.int64)


def applies(kh, kw, groups, c_in, c_out) -> bool:
    """Whether a 2-D forward (or a stride phase of an input gradient) with this kernel and these
    channels runs here: more than one tap, and rows and reductions enough to fill the tiles."""
    return (_gemm.WIDE and kh * kw > 1 and c_out // groups >= MIN_OUT_CHANNELS
            and c_in // groups * kh * kw >= MIN_REDUCTION)


MIN_OUT_CHANNELS = 32
MIN_REDUCTION = 64


def _items(q, per_pixel, fixed, shared, threads, budget):
    """``(pixels per item, threads)`` for ``q`` output pixels: about ``ITEM_PIXELS`` in whole
    ``PART_PIXELS``, as many items as whole rounds of the threads, each thread's scratch
    (``per_pixel`` bytes a pixel and ``fixed``) and the ``shared`` bytes within ``budget`` (fewer
    threads where they do not fit); None where one part of one thread does not fit."""
    spare = budget - shared
    each = fixed
    threads = int(max(1, min(threads, spare // (each + PART_PIXELS * per_pixel))))
    most = int((spare // threads - each) // per_pixel) // PART_PIXELS * PART_PIXELS
    if most < PART_PIXELS:
        return None
    items = -(-q // min(ITEM_PIXELS, most))
    items = -(-items // threads) * threads
    size = -(-q // items)
    size = min(most, -(-size // PART_PIXELS) * PART_PIXELS)
    return size, min(threads, -(-q // size))


def forward(x, w5, bias, y, sh, sw, pt, pl, dh, dw, threads, budget, compile_only=False) -> bool:
    """``y`` (C-contiguous ``(N, K, OH, OW)``) = the convolution of ``x`` (C-contiguous, padded by
    ``pt`` rows above and ``pl`` columns left) with the kernels ``w5[g, k, c]`` (any view:
    ``(groups, K/groups, C/groups, kh, kw)``, say an input gradient's flipped and transposed
    kernels where they lie), plus ``bias`` (empty: none). False, ``y`` unwritten, where an item's
    scratch does not fit ``budget`` bytes. ``compile_only`` (warmup): on the calling thread alone."""
    n, _, h, wd = x.shape
    groups, kg, cg, kh, kw = w5.shape
    c_out, taps = groups * kg, kh * kw
    kr, p_img = cg * taps, y.shape[2] * y.shape[3]
    q = n * p_img
    hp, wp = padded_plane(h, wd, kh, kw, sh, sw, dh, dw, y.shape[2], y.shape[3])
    table = tap_table(kh, kw, sh, sw, dh, dw, y.shape[2], y.shape[3], wp)
    item = x.itemsize
    # per thread: b and c, the item's planes and gather table, and the tiles' scratch
    per_pixel = (kr + kg + hp * wp / p_img) * item + taps * 8
    fixed = (2 * hp * wp + _gemm.batch_scratch(kg, item) + reserved()) * item
    plan = _items(q, per_pixel, fixed, groups * _gemm.packed_size(kg, kr) * item, threads, budget)
    if plan is None:
        return False
    size, threads = plan
    ap = kept("patches-packed", (groups, _gemm.packed_size(kg, kr)), x.dtype)  # (a new one each call: page faults)
    y3 = y.reshape(n, c_out, p_img)
    bias = bias if bias is not None else np.empty(0, x.dtype)
    panels = _gemm._whole_rows(kg) // _gemm.MR
    per_part = max(1, -(-groups * panels // (2 * threads)))  # two parts a thread
    packing = Shared([(g, p0, min(panels, p0 + per_part)) for g in range(groups) for p0 in range(0, panels, per_part)],
                     lambda g, p0, p1: pack(w5[g], ap[g], p0, p1))

    def work(q0, q1, scratch):
        packing.help()
        nt = q1 - q0
        b = buffer(scratch, "b", (kr * nt,), x.dtype)
        c = buffer(scratch, "c", (kg * nt,), x.dtype)
        nf, ni = columns_scratch(nt, p_img, hp, wp, taps)
        s, ix = buffer(scratch, "s", (nf,), x.dtype), buffer(scratch, "ix", (ni,), np.uint64)
        tiles = buffer(scratch, "tiles", (_gemm.batch_scratch(kg, item),), x.dtype)
        for g in range(groups):
            columns(x, g * cg, cg, pt, pl, table, q0, q1, hp, wp, s, ix, b)
            packing.ready()  # (the first group's columns overlap the packing's last parts)
            _gemm.batch(ap[g:g + 1], kg, b, c, kr, nt, tiles, _NO_SPANS, kr * nt)
            put(c, g * kg, kg, q0, q1, bias, y3)

    # warmup runs on the calling thread: plain compiled loops, no pool thread to outlive a fork
    map_items(list(chunks(q, size)), work, 1 if compile_only else threads, shared=(packing,))
    return True


# The weight gradient's slices of the pixels: each sums its own gw, so that the result does not
# depend on which thread ran what, and its float32 rounding stays near a direct sum's on large
# batches (winograd's ``SLICE_TILES`` alike); the slices' sums are added in order.
SLICE_PIXELS = 2048


def grad_weight(gy, x, gw, sh, sw, pt, pl, dh, dw, threads, budget, compile_only=False) -> bool:
    """``gw`` (C-contiguous, shaped like the weight) = the weight gradient of the convolution of
    ``x`` into ``gy`` (both C-contiguous; ``forward``'s geometry): per slice of the flat output
    pixels, per block of them, the patches' columns ``B`` and ``gy``'s columns ``A``, summed as
    ``A @ B.T`` (``_numba_gemm.red_batch``) into the slice's own sums. The slices (as many as
    whole rounds of the threads, about ``SLICE_PIXELS`` each) are added in order, so the result
    depends on the thread count only. False, ``gw`` unwritten, where the scratch does not fit
    ``budget`` bytes. ``compile_only`` (warmup): on the calling thread alone."""
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = gw.shape
    groups, oh, ow = c_in // cg, gy.shape[2], gy.shape[3]
    kg, taps = c_out // groups, kh * kw
    kr, p_img = cg * taps, oh * ow
    q = n * p_img
    hp, wp = padded_plane(h, wd, kh, kw, sh, sw, dh, dw, oh, ow)
    table = tap_table(kh, kw, sh, sw, dh, dw, oh, ow, wp)
    item = x.itemsize
    one = gw.size * item  # a slice's sums
    want = -(-max(1, -(-q // SLICE_PIXELS)) // threads) * threads
    slices = int(min(want, max(1, budget // 2 // one), max(1, q)))
    per_pixel = (kr + kg + hp * wp / p_img) * item + taps * 8
    fixed = (2 * hp * wp + _gemm.red_batch_scratch(kr, item) + reserved()) * item
    cut = -(-q // slices)
    plan = _items(cut, per_pixel, fixed, slices * one, min(threads, slices), budget)
    if plan is None:
        return False
    size, threads = plan
    parts = kept("patches-gw", (slices, groups, kg * kr), x.dtype)  # written whole before read
    gy3 = gy.reshape(n, c_out, p_img)

    def work(i, scratch):
        q0, q1 = i * cut, min(q, (i + 1) * cut)
        step = -(-(q1 - q0) // -(-(q1 - q0) // size))  # blocks of one size
        red = buffer(scratch, "red", (_gemm.red_batch_scratch(kr, item),), x.dtype)
        for r0 in range(q0, q1, step):
            r1 = min(q1, r0 + step)
            nt = r1 - r0
            b = buffer(scratch, "b", (kr * nt,), x.dtype)
            a = buffer(scratch, "a", (kg * nt,), x.dtype)
            nf, ni = columns_scratch(nt, p_img, hp, wp, taps)
            s, ix = buffer(scratch, "s", (nf,), x.dtype), buffer(scratch, "ix", (ni,), np.uint64)
            for g in range(groups):
                columns(x, g * cg, cg, pt, pl, table, r0, r1, hp, wp, s, ix, b)
                take(gy3, g * kg, kg, r0, r1, a)
                _gemm.red_batch(a, b, parts[i, g], kg, kr, nt, r0 > q0, red)

    items = [(i,) for i in range(slices) if i * cut < q]
    parts[len(items):] = 0
    map_items(items, work, 1 if compile_only else threads)
    out = gw.reshape(groups, kg * kr)
    out[...] = parts[0]
    for i in range(1, slices):
        out += parts[i]
    return True


@njit(**_JIT)
def pack(w4, ap, ip0, ip1):  # pragma: no cover
    """The panels of rows ip0 .. ip1 of A (rows k, columns ``(c, ky, kx)`` of the kernels
    ``w4[k, c, ky, kx]``, any view) into ``ap`` as ``_numba_gemm._pack_a`` lays them out. The
    column's (c, ky, kx) are counted along, not divided out: a division per column took as long
    as a copy of the whole kernel (1 ms at 512 x 256 x 2 x 2)."""
    m, _, kh, kw = w4.shape
    k = w4.shape[1] * kh * kw
    mp = _gemm._whole_rows(m)
    for pc in range(0, k, KC):
        kc = min(KC, k - pc)
        for ip in range(ip0, ip1):
            base = pc * mp + ip * kc * MR
            c, t = divmod(pc, kh * kw)
            ky, kx = divmod(t, kw)
            for kk in range(kc):
                for r in range(MR):
                    i = ip * MR + r
                    ap[base + kk * MR + r] = w4[i, c, ky, kx] if i < m else 0
                kx += 1
                if kx == kw:
                    kx, ky = 0, ky + 1
                    if ky == kh:
                        ky, c = 0, c + 1


def padded_plane(h, w, kh, kw, sh, sw, dh, dw, oh, ow):
    """``(hp, wp)``: the rows and columns of an input plane with its padding that the taps read
    (padded row ``oy*sh + ky*dh`` holds input row ``oy*sh - pt + ky*dh``)."""
    return (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1


def tap_table(kh, kw, sh, sw, dh, dw, oh, ow, wp):
    """``(kh*kw, oh*ow)`` int64: for each tap and output pixel of an image, the offset of the pixel
    it reads in a padded plane ``wp`` wide (``padded_plane``)."""
    ky, kx = np.divmod(np.arange(kh * kw), kw)
    oy, ox = np.divmod(np.arange(oh * ow), ow)
    return ((oy[None, :] * sh + ky[:, None] * dh) * wp + ox[None, :] * sw + kx[:, None] * dw).astype(np.int64)


def columns_scratch(nt, p_img, hp, wp, taps):
    """``(floats, ints)``: elements of ``columns``' work arrays for an item of ``nt`` pixels."""
    images = (nt - 1) // p_img + 2 if nt else 0  # an item may start part-way into an image
    return images * hp * wp, taps * nt


@njit(**_JIT)
def columns(x, c0, cn, pt, pl, table, q0, q1, hp, wp, s, ix, b):  # pragma: no cover
    """``b`` (flat ``(cn*T, q1 - q0)``, T = taps) = the patches of the flat output pixels q0 .. q1
    over input channels c0 .. c0 + cn of ``x`` (C-contiguous ``(N, C, H, W)``, padded by ``pt``
    rows above and ``pl`` columns left, negative: cropped): row ``c*T + t``, column ``q - q0``
    reads ``table[t, p]`` in the padded plane (``hp x wp``) of channel ``c0 + c`` of image
    ``q // P``. Per channel, the item's planes are copied into ``s`` (whose borders stay zero),
    then each tap's row is gathered by a table over the whole item (``ix``), in loops of unsigned
    offsets (Numba tests a signed index for a negative one on every access). One thread, 14x14
    C=256 stride 2, items of 256 pixels: 0.3 ns a value where a test per value in loops of one
    image's pixels took 1.4-1.8."""
    taps, p_img = table.shape
    h, w = x.shape[2], x.shape[3]
    nt = q1 - q0
    n0 = q0 // p_img
    images = (q1 - 1) // p_img + 1 - n0 if nt else 0
    plane = U(hp * wp)
    s[:U(images) * plane] = 0
    for t in range(taps):
        for j in range(nt):
            q = q0 + j
            n = q // p_img
            ix[U(t * nt + j)] = U(n - n0) * plane + U(table[t, q - n * p_img])
    y0, y1 = max(0, -pt), min(h, hp - pt)  # the input rows and columns inside the padded plane
    x0, x1 = max(0, -pl), min(w, wp - pl)
    xf = x.reshape(x.size)
    for c in range(cn):  # a channel's rows of b whole before the next's
        for i in range(images):
            src0 = U(((n0 + i) * x.shape[1] + c0 + c) * h * w)
            for iy in range(y0, y1):
                src, dst = src0 + U(iy * w + x0), U(i) * plane + U((iy + pt) * wp + x0 + pl)
                for k in range(U(x1 - x0)):
                    s[dst + k] = xf[src + k]
        for t in range(taps):
            row, o = U((c * taps + t) * nt), U(t * nt)
            for j in range(U(nt)):
                b[row + j] = s[ix[o + j]]


@njit(**_JIT)
def put(cm, k0, kn, q0, q1, bias, y):  # pragma: no cover
    """``y[n, k0 + k, p] = cm[k, q - q0] (+ bias[k0 + k])`` for the flat output pixels q0 .. q1,
    ``cm`` the flat ``(kn, q1 - q0)`` product, ``y`` C-contiguous ``(N, K, P)``."""
    p_img, kk = y.shape[2], y.shape[1]
    yf = y.reshape(y.size)
    nt = q1 - q0
    q = q0
    while q < q1:
        n = q // p_img
        p0 = q - n * p_img
        p1 = min(p_img, p0 + q1 - q)
        for k in range(kn):
            add = bias[k0 + k] if bias.size else 0
            src, dst = U(k * nt + q - q0), U((n * kk + k0 + k) * p_img + p0)
            for p in range(U(p1 - p0)):
                yf[dst + p] = cm[src + p] + add
        q += p1 - p0


@njit(**_JIT)
def take(gy, k0, kn, q0, q1, a):  # pragma: no cover
    """``a`` (flat ``(kn, q1 - q0)``) = ``gy[n, k0 + k, p]`` for the flat pixels q0 .. q1 (``put``'s
    adjoint, ``gy`` C-contiguous ``(N, K, P)``)."""
    p_img, kk = gy.shape[2], gy.shape[1]
    gf = gy.reshape(gy.size)
    nt = q1 - q0
    q = q0
    while q < q1:
        n = q // p_img
        p0 = q - n * p_img
        p1 = min(p_img, p0 + q1 - q)
        for k in range(kn):
            dst, src = U(k * nt + q - q0), U((n * kk + k0 + k) * p_img + p0)
            for p in range(U(p1 - p0)):
                a[dst + p] = gf[src + p]
        q += p1 - p0
