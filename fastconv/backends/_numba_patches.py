"""Numba kernels of the ``numba`` backend that run a multi-tap kernel with many channels (a strided
3x3 layer, say) as matrix products on ``_numba_gemm``'s register tiles, over columns of patches.

A work item is a range of the batch's flat output pixels ``q = n*P + p`` (``P`` pixels an image).
It copies each pixel's patch into a column of ``B`` (rows ``(c, ky, kx)``, the order of ``w``'s
flat rows; zero where a tap reads padding), multiplies the packed weight by it
(``_numba_gemm.batch``) and puts the product's rows into ``y``, adding the bias. The input
gradient of a strided layer is its adjoint: the transposed kernel times ``gy``'s columns,
scattered into ``gx`` through the same windows (``scatter``). The weight gradient sums ``gy``'s
columns times ``B``'s per slice of the pixels into the slice's own ``gw``
(``_numba_gemm.red_batch``), and the slices' sums are added in order.

Against the packed path (``_numba_kernels``' 4x4 dot products, sums in memory) the sums stay in
registers; against im2col's NumPy products the tiles run AVX-512 where this machine's OpenBLAS
picks AVX2 kernels. The columns are ``kh*kw / (sh*sw)`` times the input, an item's at a time.
Where they do not pay (a short reduction, long rows at stride 1) ``applies`` says no.
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
# Below this many output pixels a thread (a batch of one 7x7 or 14x14 image, say), the threads
# split the output channels instead: items of pixels would each read the whole packed weight for
# a few columns, two threads each streaming all of it. Past it the split did not pay: two threads,
# float32, forward time split / not, 15 interleaved rounds, 512 -> 512 7x7 N=6 (294 pixels) 0.96,
# N=8 1.08; 256 -> 256 14x14 N=2 1.06; 256 -> 512 14x14 at stride 2 N=8 1.03.
ROWS_MAX_PIXELS = 128
PART_PIXELS = 16  # items hold whole half panels of the tiles' columns (a half runs on its own tile)
_NO_SPANS = np.empty((0, 4), np.int64)


def applies(kh, kw, sh, sw, groups, c_in, c_out, ow, dil_w=1, by_size=None) -> bool:
    """Whether a 2-D forward (or a stride phase of an input gradient, or a weight gradient) with
    this kernel, stride, channels and output width runs here: more than one tap, rows (output
    channels a group: ``MIN_OUT_CHANNELS``) and a reduction enough to fill the tiles, and either a
    stride or, with AVX-512, at stride 1 a reduction long beside rows that the packed kernels run
    short and padded (``_stride1_pays``). With
    ``by_size`` (a bool), that answer replaces the one by the rows' width at stride 1 (a chunk of
    a larger array takes the kernels where the whole array's call does)."""
    cg, kg = c_in // groups, c_out // groups
    if not _gemm.TILES or kh * kw == 1 or kg < MIN_OUT_CHANNELS or cg * kh * kw < MIN_REDUCTION:
        return False
    if sh * sw > 1:
        return True
    if not _gemm.WIDE:  # at stride 1 measured against the packed kernels with AVX-512 only
        return False
    return _stride1_pays(cg * kh * kw, kg, ow, ow + (kw - 1) * dil_w) if by_size is None else by_size


def _stride1_pays(steps, kg, ow, wq) -> bool:
    """At stride 1: whether the columns beat the packed kernels, which run each output row over
    the padded input's width ``wq`` (the ``kw - 1`` extra columns are computed and dropped) in
    loops of ``ow``. The score, reduction steps per output column times ``wq / ow``, must pass a
    higher bar with few output channels a group, whose products amortize the columns' copy
    less."""
    score = steps / ow * wq / ow
    return score >= (STRIDE1_MIN_SCORE if kg >= MANY_OUT_CHANNELS else STRIDE1_MIN_SCORE_FEW)


# Two threads, float32, 3x3, C = K, batches of about 2 GFLOP, forward time over the packed
# kernels' (2026-12-02): at stride 2, 7x7 outputs C=32 0.63, C=64-512 0.34-0.44; 14x14 C=32 0.93,
# 64-512 0.64-0.83; 28x28 C=32 1.52, C=64 1.01, 128-512 0.68-0.79; 56x56 C=32 1.01, 64-512
# 0.60-0.92. The weight gradient at stride 2: 0.42-0.97 but 1.17 at 56x56 C=32 (stride 1:
# numba's implicit products come first).
# A short reduction leaves the columns' copy as costly as the products (ResNet's stem, 7x7 at
# stride 2 from 3 channels, 147 steps: forward 1.9-2.5x, items of 256-4096 pixels; an item of
# 4096: columns 0.54 ms, products 0.65 at 121 GFLOP/s): at least one whole block (KC).
# Output channels a group, from which the products pay for the columns' copy: 64 with AVX-512's
# tiles of 8 rows; with AVX2's of 6, 32 (an AVX2 Zen 3, 2 threads, float32, 2026-12-04, 5
# interleaved rounds, stride 2, ms forward / input gradient / weight gradient, patches against the
# packed kernels: 3x3 N=32 64 -> 32 32x32 4.92 / 6.44 / 7.70 against 5.73 / 7.96 / 8.48, N=64 20x20
# 3.62 / 4.21 / 4.66 against 4.26 / 5.95 / 7.00, 128 -> 48 28x28 7.23 / 9.26 / 12.7 against 12.6 /
# 13.1 / 17.9; 5x5 N=32 32 -> 32 17x17 1.76 / 2.19 / 2.41 against 2.12 / 2.66 / 2.95; but 24 output
# channels lost the forward, 2.58 against 2.33, and 16 lost 1.0-1.5x).
MIN_OUT_CHANNELS = 64 if _gemm.WIDE else 32
MIN_REDUCTION = 256
# At stride 1, N=32 (16 at 24x24 and above), C = K unless given, forward / backward time over the
# packed kernels', 7-9 interleaved rounds (the score in brackets). 3x3 (2026-12-02, an earlier
# stop): 7x7 C=32 0.93 [53], C=64-512 0.44-0.60 [106+]; 14x14 C=32 1.79 [24], 64 1.12 [47],
# 128-512 0.83-0.90 [94+]; 28x28 C=64 1.45 [22], 128 1.09 [44], 256 1.00 [88], 512 0.91; 56x56
# C=64 1.27, 128 0.98 [21], 256 0.90 [43], 512 0.78 [85]. This stop (Zen 4), 64 output channels:
# 3x3 8x8 0.82 / 0.82 [90], 10x10 0.96 / 0.96 [69]; 5x5 14x14 0.97 / 0.97 [147], 24x24 1.04 /
# 1.05 [78], 28x28 1.01-1.10 / 1.01-1.06 [65], 35x35 C=48 1.20 / 1.04 [38]; 7x7 32x32 1.00-1.11
# / 1.03-1.04 [116], 14x14 C=32 0.92 / 1.02 [160]; 1x7 56x56 1.20 / 1.08 [9], 1x5 20x20 1.12 /
# 1.04 [19]. 96+ output channels: 1x7 17x17 C=128 0.47-0.71 / 0.84-0.86 [71], C=160 0.78 / 0.90
# [89], C=192 0.72 / 0.84 [107], 14x14 0.68 / 0.79 [91], 20x20 0.76 / 0.89 [58]; 7x1 17x17 C=128
# 0.77-1.07 / 0.98-1.01 [53], C=160 0.90 / 0.94 [66], C=192 0.83 / 0.90 [79]; 1x3 14x14 C=256
# 0.80-0.84 / 0.90-0.91 [63]; 3x1 8x8 C=384 0.68 / 0.81 [144]; 3x3 14x14 C=96 0.78 / 0.90 [71],
# 17x17 C=128 0.83 / 0.91 [76]. (The rule before, 81 steps per column whatever the width and
# channels, left Inception's 1x7 layers on the packed kernels: 1.8x torch's time.)
STRIDE1_MIN_SCORE = 55
STRIDE1_MIN_SCORE_FEW = 85  # ... below MANY_OUT_CHANNELS output channels a group
MANY_OUT_CHANNELS = 96


def _items(q, per_pixel, fixed, shared, threads, budget):
    """``(pixels per item, threads)`` for ``q`` output pixels: about ``ITEM_PIXELS`` in whole
    ``PART_PIXELS``, as many items as whole rounds of the threads, each thread's scratch
    (``per_pixel`` bytes a pixel and ``fixed``) and the ``shared`` bytes within ``budget`` (fewer
    threads where they do not fit); None where one part of one thread does not fit."""
    spare = budget - shared
    threads = int(max(1, min(threads, spare // (fixed + PART_PIXELS * per_pixel))))
    most = int((spare // threads - fixed) // per_pixel) // PART_PIXELS * PART_PIXELS
    if most < PART_PIXELS:
        return None
    items = -(-q // min(ITEM_PIXELS, most))
    items = -(-items // threads) * threads
    size = -(-q // items)
    size = min(most, -(-size // PART_PIXELS) * PART_PIXELS)
    return size, min(threads, -(-q // size))


def _item_bytes(rows, work, p_img, ow, sh, hp, wp, taps, item):
    """``(bytes a pixel, bytes)`` of a thread's scratch for an item: ``rows`` values a pixel (the
    columns and the product's), ``work`` values (the products' own scratch), and
    ``columns_scratch``'s, bounded linearly (the windows' rows: ``sh`` an output row, and at
    most ``2*sh + reach`` more an image)."""
    extra = 2 * sh + hp - (p_img // ow - 1) * sh
    per_pixel = (rows + (sh / ow + extra / p_img) * wp) * item + (taps + 5 / p_img) * 8
    return per_pixel, (2 * extra * wp + work + reserved()) * item + 10 * 8


def forward_plan(x_shape, w5_shape, y_shape, sh, sw, dh, dw, item, threads, budget):
    """``forward``'s ``(pixels per item, threads)`` (``_items``) for these shapes (``w5``'s: groups
    first) and bytes an element, or None where one part of one thread does not fit ``budget``."""
    n, _, h, wd = x_shape
    groups, kg, cg, kh, kw = w5_shape
    taps, oh, ow = kh * kw, y_shape[2], y_shape[3]
    kr, p_img = cg * taps, oh * ow
    hp, wp = padded_plane(h, wd, kh, kw, sh, sw, dh, dw, oh, ow)
    per_pixel, fixed = _item_bytes(kr + kg, _gemm.batch_scratch(kg, item), p_img, ow, sh, hp, wp, taps, item)
    shared = groups * _gemm.packed_size(kg, kr) * item + table_bytes(taps, p_img)
    return _items(n * p_img, per_pixel, fixed, shared, threads, budget)


def _row_blocks(q, kg, threads):
    """The blocks ``(k0, k1)`` of output channels (whole tiles' rows) that the threads take, each
    over all ``q`` output pixels, where the pixels are too few to split (``ROWS_MAX_PIXELS``):
    else one block, and the threads split the pixels."""
    panels = _gemm._whole_rows(kg) // MR
    parts = min(threads, panels) if q < threads * ROWS_MAX_PIXELS else 1
    per = -(-panels // parts)
    return [(p0 * MR, min(kg, (p0 + per) * MR)) for p0 in range(0, panels, per)]


def _rows_bytes(rows, kr, groups, q, p_img, ow, sh, hp, wp, taps, item):
    """A thread's bytes for a block of ``rows`` output channels (``_row_blocks``): its scratch for
    an item of all ``q`` pixels (``_item_bytes``) and its rows packed, per group."""
    per_pixel, fixed = _item_bytes(kr + rows, _gemm.batch_scratch(rows, item), p_img, ow, sh, hp, wp, taps, item)
    return per_pixel * q + fixed + groups * _gemm.packed_size(rows, kr) * item


def forward(x, w5, bias, y, sh, sw, pt, pl, dh, dw, threads, budget, compile_only=False) -> bool:
    """``y`` (C-contiguous ``(N, K, OH, OW)``) = the convolution of ``x`` (C-contiguous, padded by
    ``pt`` rows above and ``pl`` columns left) with the kernels ``w5[g, k, c]`` (any view:
    ``(groups, K/groups, C/groups, kh, kw)``), plus ``bias`` (empty: none). False, ``y`` unwritten, where an item's
    scratch does not fit ``budget`` bytes. ``compile_only`` (warmup): on the calling thread alone."""
    n, _, h, wd = x.shape
    groups, kg, cg, kh, kw = w5.shape
    c_out, taps = groups * kg, kh * kw
    kr, p_img = cg * taps, y.shape[2] * y.shape[3]
    q = n * p_img
    hp, wp = padded_plane(h, wd, kh, kw, sh, sw, dh, dw, y.shape[2], y.shape[3])
    ow = y.shape[3]
    plan = forward_plan(x.shape, w5.shape, y.shape, sh, sw, dh, dw, x.itemsize, threads, budget)
    if plan is None:
        return False
    table = tap_table(kh, kw, sh, sw, dh, dw, y.shape[2], y.shape[3])
    size, threads = plan
    y3 = y.reshape(n, c_out, p_img)
    bias = bias if bias is not None else np.empty(0, x.dtype)
    blocks = _row_blocks(q, kg, 2 if compile_only else threads)  # (warmup compiles both paths)
    # One thread over fewer pixels than an item takes one block of every row the same way: packing
    # the whole weight for one item's few columns cost more than the products. One thread, float32,
    # 3x3 at stride 1, forward ms packed / read where it lies (im2col's), medians of 100 calls, an AMD
    # Zen 4 (2026-12-05): 512 -> 512 one 7x7 image 4.77 / 3.20 (3.06-3.19), two 7.12 / 5.18 (5.49-5.74);
    # 256 -> 256 7x7 1.15 / 0.84 (0.81-0.88); 384 -> 384 12x12 4.62 / 3.78 (4.27-4.30).
    by_rows = len(blocks) > 1 or (threads == 1 and q < ITEM_PIXELS)
    if by_rows and (len(blocks) * _rows_bytes(blocks[0][1], kr, groups, q, p_img, ow, sh, hp, wp, taps, x.itemsize)
                    + table_bytes(taps, p_img) <= budget):
        # each block's weight rows read where they lie where they are whole tiles of rows (one panel
        # of columns or two meet each of them: packing cost as much as the products' reads)
        flat = w5.reshape(groups, kg * kr) if w5.flags.c_contiguous else None
        packs = flat is None or any((k1 - k0) % MR for k0, k1 in blocks)  # (only a last block past whole tiles)
        shape = (groups, len(blocks), _gemm.packed_size(blocks[0][1], kr))
        ap = kept("patches-packed", shape, x.dtype) if packs else None

        def rows(j, scratch):  # the threads' share of the output channels, all of the pixels
            k0, k1 = blocks[j]
            b, c, s, ix, tiles = _buffers(scratch, x.dtype, q, kr, k1 - k0, _gemm.batch_scratch(k1 - k0, x.itemsize),
                                          p_img, ow, sh, hp, wp, taps)
            for g in range(groups):
                columns(x, g * cg, cg, pt, pl, table, 0, q, ow, sh, sw, hp, wp, s, ix, b)
                if flat is not None and (k1 - k0) % MR == 0:
                    _gemm.batch_rows(flat[g, k0 * kr:k1 * kr], kr, k1 - k0, b, c, kr, q, tiles)
                else:
                    pack(w5[g, k0:k1], ap[g, j], 0, _gemm._whole_rows(k1 - k0) // MR)
                    _gemm.batch(ap[g, j:j + 1], k1 - k0, b, c, kr, q, tiles, _gemm.NO_PLAN, kr * q)
                put(c, g * kg + k0, k1 - k0, 0, q, bias, y3)

        map_items([(j,) for j in range(len(blocks))], rows, 1 if compile_only else len(blocks))
        if not compile_only:
            return True
    ap = kept("patches-packed", (groups, _gemm.packed_size(kg, kr)), x.dtype)  # (a new one each call: page faults)
    panels = _gemm._whole_rows(kg) // _gemm.MR
    per_part = max(1, -(-groups * panels // (2 * threads)))  # two parts a thread
    packing = Shared([(g, p0, min(panels, p0 + per_part)) for g in range(groups) for p0 in range(0, panels, per_part)],
                     lambda g, p0, p1: pack(w5[g], ap[g], p0, p1))

    def work(q0, q1, scratch):
        packing.help()
        nt = q1 - q0
        b, c, s, ix, tiles = _buffers(scratch, x.dtype, nt, kr, kg, _gemm.batch_scratch(kg, x.itemsize), p_img, ow, sh,
                                      hp, wp, taps)
        for g in range(groups):
            columns(x, g * cg, cg, pt, pl, table, q0, q1, ow, sh, sw, hp, wp, s, ix, b)
            packing.ready()  # (the first group's columns overlap the packing's last parts)
            _gemm.batch(ap[g:g + 1], kg, b, c, kr, nt, tiles, _gemm.NO_PLAN, kr * nt)
            put(c, g * kg, kg, q0, q1, bias, y3)

    # warmup runs on the calling thread: plain compiled loops, no pool thread to outlive a fork
    map_items(list(chunks(q, size)), work, 1 if compile_only else threads, shared=(packing,))
    return True


# The weight gradient's slices of the pixels: each sums its own gw, so that the result does not
# depend on which thread ran what, and its float32 rounding stays near a direct sum's on large
# batches (winograd's ``SLICE_TILES`` alike); the slices' sums are added in order.
SLICE_PIXELS = 2048


# The products (``red_batch``) pack one operand, a block of KC pixels of its rows, and read the
# other's rows where they lie: with fewer output channels than input channels x taps, packing gy's
# columns (the sums then come out transposed, and gw is their transpose) repaid where the output
# channels fill a panel of the tiles' columns and the sums stay within L2. Full-width AVX-512 (an
# Intel Xeon, 2 MiB of L2 a core; two threads, float32, 2026-12-04, weight gradient ms before /
# swapped, medians of 7 interleaved rounds, the same bits): 3x3 s2 N=8 256 -> 96 28x28 4.84 / 3.79,
# -> 128 5.73 / 4.99, -> 192 (1.7 MiB of sums) 7.62 / 7.17, N=32 128 -> 64 7.43 / 5.50, -> 256 18.2 /
# 16.0, N=16 64 -> 128 56x56 12.1 / 10.1; 1-D k5 s2 N=16 64 -> 64 3.12 / 2.51, 256 -> 128 17.2 / 13.7;
# 3x3x3 s2 N=32 96 -> 128 8x12x12 24.8 / 21.0, -> 64 17.8 / 14.2. Past L2 they lost: 3x3 s2 256 ->
# 256 (2.25 MiB) 9.26 / 10.8, N=16 512 -> 128 14x14 6.26 / 7.24, -> 512 22.7 / 36.5; and with
# fewer output channels than a panel: 1-D k7 s2 N=64 256 -> 8 (4 a group) 13.8 / 16.6.
SWAP_MAX_SUMS_BYTES = 2 * 2**20


def _swaps(kg, kr, itemsize) -> bool:
    """Whether the products pack gy's ``kg`` rows rather than the patches' ``kr`` (see above)."""
    return (_gemm.FULL_WIDTH and _gemm.tile_cols(itemsize) <= kg < kr
            and kg * kr * itemsize <= SWAP_MAX_SUMS_BYTES)


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
    item = x.itemsize
    one = gw.size * item  # a slice's sums
    want = -(-max(1, -(-q // SLICE_PIXELS)) // threads) * threads
    slices = int(min(want, max(1, budget // 2 // one), max(1, q)))
    swap = _swaps(kg, kr, item)
    packed = kg if swap else kr  # rows of the operand that ``red_batch`` packs
    per_pixel, fixed = _item_bytes(kr + kg, _gemm.red_batch_scratch(packed, item), p_img, ow, sh, hp, wp, taps, item)
    cut = -(-q // slices)
    plan = _items(cut, per_pixel, fixed, slices * one + table_bytes(taps, p_img), min(threads, slices), budget)
    if plan is None:
        return False
    table = tap_table(kh, kw, sh, sw, dh, dw, oh, ow)
    size, threads = plan
    parts = kept("patches-gw", (slices, groups, kg * kr), x.dtype)  # written whole before read
    gy3 = gy.reshape(n, c_out, p_img)

    def work(i, scratch):
        q0, q1 = i * cut, min(q, (i + 1) * cut)
        step = -(-(q1 - q0) // -(-(q1 - q0) // size))  # blocks of one size
        for r0 in range(q0, q1, step):
            r1 = min(q1, r0 + step)
            nt = r1 - r0
            b, a, s, ix, red = _buffers(scratch, x.dtype, nt, kr, kg, _gemm.red_batch_scratch(packed, item), p_img, ow,
                                        sh, hp, wp, taps)
            for g in range(groups):
                columns(x, g * cg, cg, pt, pl, table, r0, r1, ow, sh, sw, hp, wp, s, ix, b)
                take(gy3, g * kg, kg, r0, r1, a)
                if swap:  # the sums transposed, (kr, kg)
                    _gemm.red_batch(b, a, parts[i, g], kr, kg, nt, r0 > q0, red, _NO_SPANS)
                else:
                    _gemm.red_batch(a, b, parts[i, g], kg, kr, nt, r0 > q0, red, _NO_SPANS)

    items = [(i,) for i in range(slices) if i * cut < q]
    parts[len(items):] = 0
    map_items(items, work, 1 if compile_only else threads)
    for i in range(1, slices):  # in order, into the first slice's (kept) sums
        parts[0] += parts[i]
    if swap:  # the sums transposed, (kr, kg)
        gw.reshape(groups, kg, kr)[...] = parts[0].reshape(groups, kr, kg).transpose(0, 2, 1)
    else:
        gw.reshape(groups, kg * kr)[...] = parts[0]
    return True


# The input gradient's products run over chunks of A's rows (the transposed kernels', (c, ky,
# kx)) of about this many, so that a KC block of a chunk (512 KiB in float32) stays in L2.
CHUNK_ROWS = 512


def _chunk_channels(cg, taps):
    """Input channels in each of ``grad_input``'s chunks of A's rows."""
    return max(1, min(cg, CHUNK_ROWS // taps))


def grad_input_plan(gy_shape, w_shape, gx_shape, sh, sw, dh, dw, item, threads, budget):
    """``grad_input``'s ``(pixels per item, threads)`` (``_items``) for these shapes and bytes an
    element, or None where one part of one thread does not fit ``budget``."""
    n, c_in, h, wd = gx_shape
    c_out, cg, kh, kw = w_shape
    groups, oh, ow = c_in // cg, gy_shape[2], gy_shape[3]
    kg, taps = c_out // groups, kh * kw
    cc = _chunk_channels(cg, taps)
    rows, p_img = cc * taps, oh * ow
    hp, wp = padded_plane(h, wd, kh, kw, sh, sw, dh, dw, oh, ow)
    per_pixel, fixed = _item_bytes(rows + kg, _gemm.batch_scratch(rows, item), p_img, ow, sh, hp, wp, taps, item)
    nparts = groups * -(-cg // cc)
    shared = nparts * _gemm.packed_size(rows, kg) * item + table_bytes(taps, p_img)
    return _items(n * p_img, per_pixel, fixed, shared, threads, budget)


def grad_input(gy, w, gx, sh, sw, pt, pl, dh, dw, threads, budget, compile_only=False) -> bool:
    """``gx`` (C-contiguous, shaped like the input) = the input gradient of the convolution with
    ``w`` (C-contiguous) into ``gy`` (C-contiguous; ``forward``'s geometry), as ``forward``'s
    adjoint: per block of output pixels, the transposed kernels (rows ``(c, ky, kx)``, in chunks
    of about ``CHUNK_ROWS``) times ``gy``'s columns on the register tiles, each chunk's product
    added into ``gx`` at the pixels its taps read (``scatter``). A work item holds whole images,
    whose ``gx`` it zeroes and then adds to in order, so no two threads write a pixel. For a
    strided layer: its phases as stride-1 convolutions each packed a part of the weight and ran
    its own pass (two threads, float32, 14x14 256 -> 512 at stride 2: 14.9 ms). False, ``gx``
    unwritten, where the scratch does not fit ``budget`` bytes."""
    n, c_in, h, wd = gx.shape
    c_out, cg, kh, kw = w.shape
    groups, oh, ow = c_in // cg, gy.shape[2], gy.shape[3]
    kg, taps = c_out // groups, kh * kw
    p_img = oh * ow
    hp, wp = padded_plane(h, wd, kh, kw, sh, sw, dh, dw, oh, ow)
    item = gx.itemsize
    cc = _chunk_channels(cg, taps)
    parts = [(g, c0, min(cg, c0 + cc)) for g in range(groups) for c0 in range(0, cg, cc)]
    rows = cc * taps
    ap = _gemm.packed_size(rows, kg)
    plan = grad_input_plan(gy.shape, w.shape, gx.shape, sh, sw, dh, dw, item, threads, budget)
    if plan is None:
        return False
    table = tap_table(kh, kw, sh, sw, dh, dw, oh, ow)
    size, threads = plan
    per = max(1, min(size // p_img, -(-n // threads)))  # whole images an item
    packed = kept("patches-packed", (len(parts), ap), gx.dtype)
    wt = w.reshape(groups, kg, cg * taps)
    packing = Shared([(i,) for i in range(len(parts))], lambda i: pack_rows(
        wt[parts[i][0]], parts[i][1] * taps, parts[i][2] * taps, packed[i]))
    gy3 = gy.reshape(n, c_out, p_img)

    def work(i0, i1, scratch):
        packing.help()
        gx[i0:i1] = 0
        for r0 in range(i0 * p_img, i1 * p_img, size):
            r1 = min(i1 * p_img, r0 + size)
            nt = r1 - r0
            a, cm, s, ix, tiles = _buffers(scratch, gx.dtype, nt, kg, rows, _gemm.batch_scratch(rows, item), p_img,
                                           ow, sh, hp, wp, taps)
            for j, (g, c0, c1) in enumerate(parts):
                if c0 == 0:
                    take(gy3, g * kg, kg, r0, r1, a)
                packing.ready()
                m = (c1 - c0) * taps
                _gemm.batch(packed[j:j + 1], m, a, cm, kg, nt, tiles, _gemm.NO_PLAN, kg * nt)
                scatter(cm, g * cg + c0, c1 - c0, pt, pl, table, r0, r1, ow, sh, sw, hp, wp, s, ix, gx)

    map_items([(i0, min(n, i0 + per)) for i0 in range(0, n, per)], work, 1 if compile_only else threads,
              shared=(packing,))
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


@njit(**_JIT)
def pack_rows(wm, r0, r1, ap):  # pragma: no cover
    """A = the columns r0 .. r1 of ``wm`` (C-contiguous) as rows (``wm.T[r0:r1]``) into ``ap`` by
    ``_numba_gemm._pack_a``: the view made here has one layout for every chunk (made in Python,
    it is F-contiguous or not as the chunk falls, and each layout compiles anew)."""
    _gemm._pack_a(wm.T[r0:r1], ap)


def _buffers(scratch, dtype, nt, first, second, work, p_img, ow, sh, hp, wp, taps):
    """An item's scratch arrays: matrices of ``first`` and ``second`` rows by ``nt`` pixels, the
    windows and gather table of ``columns`` and ``scatter``, and ``work`` values for the products."""
    nf, ni = columns_scratch(nt, p_img, ow, sh, hp, wp, taps)
    return (buffer(scratch, "b", (first * nt,), dtype), buffer(scratch, "c", (second * nt,), dtype),
            buffer(scratch, "s", (nf,), dtype), buffer(scratch, "ix", (ni,), np.int64),
            buffer(scratch, "work", (work,), dtype))


def padded_plane(h, w, kh, kw, sh, sw, dh, dw, oh, ow):
    """``(hp, wp)``: the rows and columns of an input plane with its padding that the taps read
    (padded row ``oy*sh + ky*dh`` holds input row ``oy*sh - pt + ky*dh``)."""
    return (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1


def tap_table(kh, kw, sh, sw, dh, dw, oh, ow):
    """``(2, kh*kw, oh*ow)`` int64: for each tap and output pixel of an image, the row and the
    column of the padded plane that it reads (padded row ``oy*sh + ky*dh`` holds input row
    ``oy*sh - pt + ky*dh``)."""
    ky, kx = np.divmod(np.arange(kh * kw), kw)
    oy, ox = np.divmod(np.arange(oh * ow), ow)
    table = np.empty((2, kh * kw, oh * ow), np.int64)  # written in place: no temporaries of its size
    np.add.outer(ky * dh, oy * sh, out=table[0])
    np.add.outer(kx * dw, ox * sw, out=table[1])
    return table


def table_bytes(taps, p_img) -> int:
    """Bytes of ``tap_table``'s table, which a call holds beside its items' scratch."""
    return 2 * taps * p_img * 8


def columns_scratch(nt, p_img, ow, sh, hp, wp, taps):
    """``(floats, ints)``: elements of ``columns``' work arrays for an item of ``nt`` pixels, images
    of ``p_img`` pixels in rows of ``ow``: the windows of the padded planes it reads (``hp x wp``
    at most, fewer rows where it covers part of an image), its gather table and 5 ints an image."""
    images = (nt - 1) // p_img + 2 if nt else 0  # an item may start part-way into an image
    reach = hp - (p_img // ow - 1) * sh  # the rows below an output row's first that its taps read
    rows = min(images * hp, (nt // ow + 2 * images) * sh + images * reach)
    return rows * wp, taps * nt + 5 * images


@njit(**_JIT)
def _windows(table, q0, q1, ow, sh, sw, hp, wp, ix):  # pragma: no cover
    """For ``columns`` and ``scatter``: each image's window of the padded plane that the pixels q0
    .. q1 read, at ``ix[T*nt + 5*i ..]`` (its first row and column, pitch, rows, place in the
    windows laid end to end), and the table ``ix[t*nt + j]`` of the place of tap t of pixel q0 + j
    in them, an image's pixels at a time (no division per value). Returns ``(first image,
    images, the windows' size)``."""
    taps, p_img = table.shape[1], table.shape[2]
    reach_h = hp - (p_img // ow - 1) * sh
    reach_w = wp - (ow - 1) * sw
    nt = q1 - q0
    n0 = q0 // p_img
    images = (q1 - 1) // p_img + 1 - n0 if nt else 0
    win = U(taps * nt)
    used = 0
    for i in range(images):
        a = max(q0, (n0 + i) * p_img) - (n0 + i) * p_img  # the image's pixels a .. e in the item
        e = min(q1, (n0 + i + 1) * p_img) - (n0 + i) * p_img
        oy0, oy1 = a // ow, (e - 1) // ow
        c_lo, c_hi = (0, wp) if oy0 < oy1 else ((a - oy0 * ow) * sw, (e - 1 - oy0 * ow) * sw + reach_w)
        rows = (oy1 - oy0) * sh + reach_h
        o = win + U(5 * i)
        ix[o], ix[o + U(1)], ix[o + U(2)], ix[o + U(3)], ix[o + U(4)] = oy0 * sh, c_lo, c_hi - c_lo, rows, used
        used += rows * (c_hi - c_lo)
        j0 = (n0 + i) * p_img + a - q0
        for t in range(taps):
            d = U(t * nt + j0 - a)
            for p in range(a, e):
                ix[d + U(p)] = used - rows * (c_hi - c_lo) + (table[0, t, p] - oy0 * sh) * (c_hi - c_lo) \
                    + table[1, t, p] - c_lo
    return n0, images, used


@njit(**_JIT)
def scatter(cm, c0, cn, pt, pl, table, q0, q1, ow, sh, sw, hp, wp, s, ix, gx):  # pragma: no cover
    """``columns``' adjoint: ``gx[n, c0 + c]`` += each tap's row ``c*T + t`` of ``cm`` (flat ``(cn*T,
    q1 - q0)``) at the pixels it reads, through the same windows: per channel, the windows are
    zeroed, every tap added in, and their pixels inside the input added to ``gx``. The caller
    runs the items that share an image on one thread, in order."""
    taps, nt = table.shape[1], q1 - q0
    h, w = gx.shape[2], gx.shape[3]
    n0, images, used = _windows(table, q0, q1, ow, sh, sw, hp, wp, ix)
    win = U(taps * nt)
    gf = gx.reshape(gx.size)
    for c in range(cn):
        s[:U(used)] = 0
        for t in range(taps):
            row, o = U((c * taps + t) * nt), U(t * nt)
            for j in range(U(nt)):
                s[U(ix[o + j])] += cm[row + j]
        for i in range(images):
            o = win + U(5 * i)
            r_lo, c_lo, pitch, rows, place = ix[o], ix[o + U(1)], ix[o + U(2)], ix[o + U(3)], ix[o + U(4)]
            x0, x1 = max(0, c_lo - pl), min(w, c_lo + pitch - pl)
            dst0 = U(((n0 + i) * gx.shape[1] + c0 + c) * h * w)
            for iy in range(max(0, r_lo - pt), min(h, r_lo + rows - pt)):
                dst, src = dst0 + U(iy * w + x0), U(place + (iy + pt - r_lo) * pitch + x0 + pl - c_lo)
                for k in range(U(max(0, x1 - x0))):
                    gf[dst + k] += s[src + k]


@njit(**_JIT)
def columns(x, c0, cn, pt, pl, table, q0, q1, ow, sh, sw, hp, wp, s, ix, b):  # pragma: no cover
    """``b`` (flat ``(cn*T, q1 - q0)``, T = taps) = the patches of the flat output pixels q0 .. q1
    over input channels c0 .. c0 + cn of ``x`` (C-contiguous ``(N, C, H, W)``, padded by ``pt``
    rows above and ``pl`` columns left, negative: cropped): row ``c*T + t``, column ``q - q0`` is
    the pixel ``table[:, t, p]`` (row, column) of the padded plane (``hp x wp``) of channel
    ``c0 + c`` of image ``q // P``, output rows ``ow`` pixels wide at strides ``sh, sw``.

    Per image, the window of the padded plane that the item's pixels read (its rows; only its
    columns too where they lie in one output row) is laid in ``s``: its padding zeroed once,
    each channel's pixels copied. Then each tap's row of ``b`` is gathered by a table over the
    whole item (``ix``), in loops of unsigned offsets (Numba tests a signed index for a negative
    one on every access). One thread, 14x14 C=256 stride 2, items of 256 pixels: 0.3 ns a value
    where a test per value in loops of one image's pixels took 1.4-1.8; whole planes copied
    for every item cost 3.4x on 224x224 images."""
    taps, nt = table.shape[1], q1 - q0
    h, w = x.shape[2], x.shape[3]
    n0, images, used = _windows(table, q0, q1, ow, sh, sw, hp, wp, ix)
    win = U(taps * nt)
    s[:U(used)] = 0
    xf = x.reshape(x.size)
    for c in range(cn):  # a channel's rows of b whole before the next's
        for i in range(images):
            o = win + U(5 * i)
            r_lo, c_lo, pitch, rows, place = ix[o], ix[o + U(1)], ix[o + U(2)], ix[o + U(3)], ix[o + U(4)]
            x0, x1 = max(0, c_lo - pl), min(w, c_lo + pitch - pl)  # the input columns in the window
            src0 = U(((n0 + i) * x.shape[1] + c0 + c) * h * w)
            for iy in range(max(0, r_lo - pt), min(h, r_lo + rows - pt)):
                src, dst = src0 + U(iy * w + x0), U(place + (iy + pt - r_lo) * pitch + x0 + pl - c_lo)
                for k in range(U(max(0, x1 - x0))):
                    s[dst + k] = xf[src + k]
        for t in range(taps):
            row, o = U((c * taps + t) * nt), U(t * nt)
            for j in range(U(nt)):
                b[row + j] = s[U(ix[o + j])]


@njit(inline="always", **_JIT)
def _rows(cm, k0, kn, q0, q1, bias, y, back):  # pragma: no cover
    """``put`` (``back`` false) and ``take``: the runs of an image's pixels, row by row."""
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
            if back:
                for p in range(U(p1 - p0)):
                    cm[src + p] = yf[dst + p]
            else:
                for p in range(U(p1 - p0)):
                    yf[dst + p] = cm[src + p] + add
        q += p1 - p0


@njit(**_JIT)
def put(cm, k0, kn, q0, q1, bias, y):  # pragma: no cover
    """``y[n, k0 + k, p] = cm[k, q - q0] (+ bias[k0 + k])`` for the flat output pixels q0 .. q1,
    ``cm`` the flat ``(kn, q1 - q0)`` product, ``y`` C-contiguous ``(N, K, P)``."""
    _rows(cm, k0, kn, q0, q1, bias, y, False)


@njit(**_JIT)
def take(gy, k0, kn, q0, q1, a):  # pragma: no cover
    """``a`` (flat ``(kn, q1 - q0)``) = ``gy[n, k0 + k, p]`` for the flat pixels q0 .. q1 (``put``'s
    adjoint, ``gy`` C-contiguous ``(N, K, P)``)."""
    _rows(a, k0, kn, q0, q1, a[:0], gy, True)
