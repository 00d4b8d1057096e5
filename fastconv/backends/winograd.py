"""Winograd backend: 3x3 stride-1 convolutions as F(2x2,3x3) tiles ("highest") or F(4x4,3x3) ("high");
5x5 and 7x7 ones as F(2x2,3x3) blocks on one transformed input (``_convolve_large``).
Blocks of tiles run on fastconv's threads: Numba transforms, alpha^2 products with the transformed
kernel (on numba's register tiles with AVX-512 or AVX2, else single-threaded BLAS), the output
transform; grad_input is the same with the flipped kernel, grad_weight the adjoint (products over
the tiles, per slice of the batch) from 96 channels (32 without AVX-512), else numba's. Where the
transformed kernel outgrows L3 and the transformed input, the threads take blocks of output channels
instead (``_by_channels``). Extra memory: the transformed kernel (16/9 or 4x w; by channels one
block per thread and the transformed input), per thread one block, the weight gradient's slices'
sums (kept for the calling thread between calls), within the memory budget. Error (README): F(2x2)
within 2x a direct sum's, F(4x4) within 16x. The fastest fastconv backend on dense 3x3 layers of 64+
channels (with AVX-512 0.7-0.9x torch's time from 14x14 to 56x56, 0.8-0.9x at 7x7; on an AVX2 Zen 3
0.4-0.8x, each pass); inf/NaN rerun direct. 3-D kD x 3 x 3 kernels transform each input plane once
(``_convolve_3d``); 1-D, grouped and depth-dilated 3-D calls run through the 2-D passes (``_lift``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

import numpy as np

from .._precision import get_precision
from .._threads import call_threads, counted_call
from .._workers import Shared, buffer, call_budget, chunks, even, keep_apart, kept, map_items, reserved
from . import _numba_gemm as _gemm
from . import _numba_spin as _spin
from . import _winograd_kernels as _k
from ._lift import as_2d, lifted
from ._padding_nan import all_finite
from ._phases import phased, undilated

NAME = "winograd"

TILE = {"highest": 2, "high": 4}  # output tile m of F(m x m, 3x3) at each precision level
# "high" allows F(4x4) but runs F(2x2), the more accurate, where F(4x4) is not faster
# (``_f4_pays``): where 4x4 tiles pad the output so much that they save little (14x14: 16 tiles of
# 36 products against 49 of 16), and where F(4x4)'s transformed filters, 2.25x F(2x2)'s, are many
# bytes per tile (many channels, few images): the products then stream them for little work.
# Two threads, float32, forward time F(4x4) / F(2x2), 7 interleaved rounds (the input gradient
# alike), with filter bytes per 4x4 tile: N=32 C=64 56x56 0.5 KB 0.79 (bench); N=32 C=128 28x28
# 1.5 KB 0.88; N=32 C=64 7x7 4.6 KB 0.89; N=32 C=192 18x18 6.6 KB 0.89; N=32 C=256 16x16 18 KB
# 0.84; N=8 C=256 20x20 47 KB 0.84; N=16 C=256 16x16 37 KB 1.03; N=32 C=512 16x16 72 KB 1.17;
# N=8 C=512 16x16 288 KB 1.49; N=32 C=256 14x14 (products 0.73x) 1.13.
F4_MAX_PRODUCTS = 0.7  # F(4x4)'s multiplications over F(2x2)'s, the tiles' padding included
F4_SPLIT_MAX_PRODUCTS = 0.75  # ... in the passes that may split the output channels (``_f4_pays``): 13x13, 14x14
F4_MAX_FILTER_BYTES = 48 * 2**10  # F(4x4)'s transformed filters per 4x4 tile of the batch
# In those passes (forward, input gradient), by items, F(4x4) also pays at 13x13 and 14x14 with
# up to F4_SPLIT_FILTER_BYTES of filters a tile while all of them stay within L3
# (F4_ITEMS_MAX_FILTER_BYTES). Two threads, float32, forward time F(4x4) / F(2x2), 9 interleaved
# rounds, items of 24 MiB (2026-12-02): 14x14 N=32 C=64 0.94, C=128 0.90, C=192 0.85, C=256 0.81-0.84
# (the input gradient 0.81), N=64 C=256 0.89, N=16 C=256 0.89, N=8 C=256 (74 KB a tile) 0.94,
# N=16 C=384 (83 KB) 0.86; 13x13 N=32 C=256 0.79; 16x16 N=8 C=256 (74 KB) 0.92. Past them:
# N=4 C=256 (147 KB) 0.86-0.97 at 14x14 but 1.00-1.15 at 16x16, N=8 C=384 (166 KB) 0.97-1.00,
# N=2 C=256 (295 KB) 1.20-1.30, N=32 C=512 (38 MB of filters) 1.00-1.03; float64 N=32 C=256
# 14x14 and N=16 16x16 1.00 and 0.99; one thread, N=32 and N=8 C=256 14x14, 1.02 and 0.99 (ties:
# the more accurate F(2x2) runs there).
F4_SPLIT_FILTER_BYTES = 128 * 2**10
# ... and from a panel of AVX-512's tiles (two 64-byte vectors of tiles) on: at N=4 7x7 C=512 (16
# tiles) F(4x4) by channels took 1.49x F(2x2)'s time there, and on AVX2 (a panel of 16 tiles) 1.20x
F4_MIN_TILE_BYTES = _gemm.WIDE_ROW_BYTES
F4_ITEMS_MAX_FILTER_BYTES = 24 * 2**20  # (by channels' floor when these were measured)
# A work item's tiles: the products' width. One thread, OPENBLAS_CORETYPE=SkylakeX, F(2x2): 56
# tiles 179-190 GFLOP/s, 224 tiles 188-228 (C=64-128), 448 182; at C=512 (7x7) 32 tiles 146,
# 128 tiles 184. Items hold at most ITEM_BYTES of transformed input and products and at least one
# row of tiles. Two threads, float32, forward time over items of at most 224 tiles and 8 MiB cut
# evenly (11 interleaved rounds): N=32 C=512 7x7 (256 tiles against 128) 0.91, N=16 C=512 14x14
# (224 against 112) 0.83, N=4 C=512 28x28 0.79, N=32 C=256 16x16 (whole panels) 0.81, N=20-24
# C=256 14x14 0.88, N=64 C=64 32x32 0.92; the bench's other 3x3 shapes the same items.
# At most 16 MiB, F(4x4) at C=256 (74 KB a tile) had items of 224 tiles: 14x14 N=32, 512 tiles,
# ran three items on two threads. Forward time with 24 MiB over 16 MiB, F(4x4), same rounds as
# above: 14x14 N=32 C=256 0.85-0.89, 13x13 0.85, N=64 C=256 0.90; eleven other shapes 0.89-1.03.
ITEM_TILES = 256
ITEM_BYTES = 24 * 2**20
# Items hold whole panels of the register tiles' columns (32 tiles in float32) where one is near
# that size and the threads' shares stay even (``_slowest``): an item that ends in part of a
# panel took about this much longer per tile (two threads, N=32 C=256 16x16, items of 27 and 29
# tile rows of 8 against 24, 28 and 32: 1.04-1.17x).
PART_PANEL_COST = 1.15
# The weight gradient's slices: each sums its tiles' products in the dtype, over at most about
# SLICE_TILES tiles (the slices' sums are added in float64), so that its rounding error stays
# near a direct sum's on large batches and images (float32, relative RMS over a direct sum's,
# BLAS's: N=32 C=64 56x56, 25088 tiles, one slice per thread 1.62x, slices of 2048 1.47x).
SLICE_TILES = 2048
# ... summing in blocks of up to GW_ITEM_TILES tiles and GW_ITEM_BYTES of transformed tiles: each
# block reads and writes the slice's sums once (at 7x7 C=512 16 MiB a slice), so larger blocks
# than the forward's items pay there. Two threads, float32, time over blocks of 224 tiles and 8
# MiB, 11 interleaved rounds: 7x7 C=512 N=32 0.82 (blocks of 256 tiles and 16 MiB
# 0.98, 32 MiB 0.88); 14x14 C=256 0.99; 28x28 C=128 0.97.
GW_ITEM_TILES = 512
GW_ITEM_BYTES = 32 * 2**20


# Where the transformed kernel (per group alpha^2 x C_out x C_in) is large beside L3 and beside the
# batch's transformed input (alpha^2 x C_in x tiles), every item above streams all of it from
# memory, each thread its own copy: at 7x7 C=512 N=32, F(4x4)'s 38 MB of filters against 9 MB of
# input, two threads took 23.6 ms of products where one took 13.8. There the threads split the
# output channels instead (``_by_channels``): the input is transformed once into memory that stays
# in L3, each block's filters are transformed into a buffer of its thread (``BLOCK_BYTES``) and
# used at once. Two threads, float32, forward time by channels / by items, 7-11 interleaved rounds
# (2 MiB blocks):
# F(4x4) N=32 C=512 7x7 0.64-0.69, N=16 C=512 14x14 0.91-0.92; F(2x2), 16 MiB of filters (which
# L3 holds over the items), N=8 C=512 7x7 0.79-0.91, N=16 7x7 0.89-1.01, N=4 14x14 1.05-1.06,
# N=2 14x14 1.09, N=1 C=256 14x14 1.17.
# Since the blocks of LARGE_BLOCK_BYTES (below), by channels pays from 16 MiB of transformed kernel
# (half of L3) and 1.2x the input: two threads, time with these two limits / with 24 MiB and 1.5x
# before, forward / backward (the input gradient splits the same way), 7-9 interleaved rounds in
# one process (2026-12-03, Zen 4): F(2x2) float32 C=512 N=8 14x14 0.91 / 0.97, N=2 28x28 0.96 /
# 0.95, N=8 7x7 0.93 / 0.96, N=1 14x14 0.80 / 0.95, N=4 14x14 0.95 / 1.03, N=16 7x7 1.03 / 0.98;
# float64 C=384 N=4 14x14 0.88 / 0.96, N=8 7x7 1.01 / 1.02; at "high", where F(4x4) now also
# runs at 7x7 and 14x14 (``_f4_pays``), C=384 N=8 14x14 0.76 / 0.95, N=32 7x7 0.71 / 0.88, N=16
# 7x7 0.67 / 0.90, N=16 14x14 0.99 / 1.00, N=4 28x28 1.02 / 1.03. The same bits wherever the
# algorithm is the same.
# The 16 MiB floor went on 2026-12-06 (Zen 4): below it too, each item of few tiles had streamed a
# kernel several times its input for little work. Two threads, F(2x2), time by channels / by items,
# medians of per-round ratios over 9-15 interleaved rounds in one process: float32 forward N=4
# C=384 7x7 (9 MiB of filters) 0.64 and 0.86, N=2 C=256 10x10 0.76 and 0.98, N=8 C=384 7x7 0.90 and
# 0.87, N=16 C=384 7x7 0.92, N=8 C=256 7x7 0.93, N=2 C=384 14x14 0.84, N=2 C=128 14x14 (1 MiB) 0.84
# and 0.98, N=4 C=128 7x7 0.95, N=4 C=192 12x12 0.93, C=64-96 on one or two images (256-576 KiB)
# 0.94-0.96, N=1 C=256 14x14 0.98, N=4 C=256 14x14 1.01; the input gradient N=4 C=384 7x7 0.96,
# N=2 C=256 10x10 0.90, N=2 C=128 14x14 0.92, N=8 C=384 7x7 0.96; float64 N=2 C=256 10x10 0.81,
# N=1 C=256 14x14 0.90, N=4 C=128 7x7 0.95, N=2 C=96 14x14 0.92, N=2 C=128 14x14 0.92-1.05 (a tie).
# Below 1.2x the input, mixed (ratio 0.4 against 1.2: 0.96-1.07).
BY_CHANNELS_RATIO = 1.2  # the transformed kernel over the transformed input
BY_CHANNELS_MAX_BYTES = 24 * 2**20  # the transformed input, read once per block: within L3 (32 MiB)
BY_CHANNELS_LANES = True  # the input transform by images in lanes there too (``INPUT_LANES_F4``)
BLOCK_BYTES = 2 * 2**20  # a block's transformed filters (1-3 MiB measured alike)
# ... and from LARGE_INPUT_BYTES of transformed input on, LARGE_BLOCK_BYTES (where the budget holds
# them; else BLOCK_BYTES): every block reads the whole transformed input, which from about that
# size no longer stays in cache from one block to the next (as measured below; L3 is 32 MiB), so
# fewer blocks read it fewer times; where it stays, smaller blocks keep their filters' transform
# nearer the products that read it. Two threads, float32, F(4x4) C=512 at
# "high", forward ms with blocks of 2 MiB / 12 MiB, medians of 11 calls in five alternating pairs
# of processes (2026-12-03, Zen 4): N=4 28x28 (14 MiB of input) 72-95 / 32-39, N=16 14x14 (18
# MiB) 49-60 / 35-47, N=2 28x28 (7 MiB) 23-30 / 16-24, N=32 7x7 (9 MiB) 17-23 / 19-21; 4.5 MiB of
# input: N=16 7x7 9.7-15 / 12-13, N=4 14x14 9.8-16 / 12-14 (medians 10.3 / 12.0, 10.2 / 12.9).
LARGE_INPUT_BYTES = 6 * 2**20
LARGE_BLOCK_BYTES = 12 * 2**20

# Channels per group (read and written) from which winograd beats numba's direct loops (for
# "auto"). On the register tiles (AVX-512): 2 threads, N=32 (16 and 8 for the larger images),
# forward time over numba's, 7 interleaved rounds: 16 channels at 56x56 1.99, 32 at 56x56 / 28x28 /
# 7x7 1.32-1.44, 64 at 112x112 / 56x56 / 14x14 0.86-1.01, 96 at 14x14 0.96, and 8-32 per group
# (ResNeXt, groups of 4) 1.7-2.9; the input gradient alike. On NumPy's products without AVX-512
# (an AVX2 Zen 3, 2026-12-03), where numba's loops have narrower vectors too: N=32, ms winograd /
# numba, forward, input gradient: 16 channels 56x56 16.4 / 8.2, 12.4 / 7.3; 32 at 56x56 28.0 /
# 24.0, 22.2 / 23.8, at 28x28 7.9 / 5.5, 8.6 / 5.6; 64 at 14x14 7.2 / 6.6, 6.6 / 6.8, at 56x56
# 47.4 / 66.8, 41.8 / 64.4; 128 at 28x28 53.3 / 73.6; 256 at 14x14 40.7 / 91.7; 512 at 7x7
# 49.6 / 166 (torch 60-80 ms from 56x56 to 7x7: winograd 0.46-0.83x its time). (Before the AVX2
# tiles, which tie with NumPy's products at F(2x2): ``_on_tiles``.)
TILED_MIN_CHANNELS = 64
# Channels per group (read and written) from which the weight gradient's Winograd tiles beat
# numba's: 2 threads, float32, ms winograd / numba: N=32 C=64 56x56 25.0 / 25.3, 28x28 6.8 / 6.6;
# C=96 28x28 11.6 / 16.8, 14x14 3.5 / 4.9; N=16 C=128 14x14 3.2 / 3.4; N=8 C=256 28x28 18.3 /
# 20.9. At 64 a tie: numba's direct sums, the more accurate, keep it.
WEIGHT_MIN_CHANNELS = 96
# ... and on NumPy's products (``_red_products``; no AVX-512), where numba's loops are slower:
# Zen 3, 2 threads, float32, N=32, ms winograd / numba (/ im2col): 16 channels 56x56 22.1 / 11.6;
# 32 at 56x56 29.2 / 32.9 (/ 26.2), at 28x28 8.2 / 9.1 (/ 8.5); 64 at 14x14 6.5 / 9.9 (/ 7.0),
# at 56x56 56.7 / 106 (/ 66); 128 at 28x28 51.5 / 113 (/ 78); 512 at 7x7 46.0 / 190 (/ 68).
WEIGHT_MIN_CHANNELS_BLAS = 32


def beats_direct(geom) -> bool:
    """Whether a 2-D or 3-D call has channels enough (``TILED_MIN_CHANNELS``) that this backend
    beats numba's direct loops, its products on numba's register tiles (AVX-512 or AVX2) or else
    on NumPy's: for ``"auto"``. 3-D calls run them in ``_convolve_3d`` or in the lift's 2-D calls.
    `fastconv bench --suite 3d` (2 threads, float32, 2026-12-02, AVX-512), time over torch's,
    winograd / numba, forward and backward: 3x3x3 0.81 / 1.50 and 0.98 / 1.18, 1x3x3 1.23 / 1.36
    and 1.11 / 1.13 (3x3x3 forward 1.34-1.38 with NumPy's products before)."""
    return geom.ndim in (2, 3) and min(geom.c_in_g, geom.c_out_g) >= TILED_MIN_CHANNELS


# The products of ``_convolve_large`` over a direct sum's multiply-adds, up to which it beat numba's
# direct loops and BLAS's (for ``"auto"``): 2 threads, float32, each pass alone, an AMD Zen 4
# (2026-12-06), 48 random 5x5 and 7x7 layers, forward time over torch's, winograd against the
# faster of the others: at 0.53-0.73 (5x5 from 10x10 outputs up, 7x7 from 20x20) it won on every
# layer of 150M+ multiply-adds and 24+ channels a side (16 -> 128 5x5 28x28 lost, 1.40 / 1.26);
# at 0.84-0.85 (7x7 on 14x14 and 17x17) 1.42 / 1.85, 1.28 / 1.46,
# 1.20 / 1.62; at 1.00 (7x7 on 10x10) 1.81 / 1.92 but 2.67 / 2.59 and 1.41 / 1.29; at 1.50 (7x7 on
# 7x7: a grid of 6x6 tiles for 4x4) 2.75-4.45 / 1.34-2.90.
LARGE_MAX_WORK = 0.9


def large_blocks(geom) -> bool:
    """Whether this backend runs the call's kernel, past 3x3, as F(2x2,3x3) blocks
    (``_convolve_large``) with at most ``LARGE_MAX_WORK`` of a direct sum's multiply-adds in its
    products (the grid's tiles past the output counted): for ``"auto"``."""
    flat = as_2d(geom)
    if (flat.kh, flat.kw) == (3, 3) or supports(geom, np.float32, "highest") is not None:
        return False
    work = 1.0
    for k, out in ((flat.kh, flat.oh), (flat.kw, flat.ow)):  # products a 2x2 tile, over the grid, per output pixel
        work *= sum(map(sum, _live(_blocks(k)))) * _grid(k, out) / (k * out)
    return work <= LARGE_MAX_WORK


def supports(geom, dtype, precision):
    """None when this backend runs the call, else why not. 3-D calls run as 2-D ones with the
    kernel's depth folded into the channels (``_lift``), so a kD x 3 x 3 kernel qualifies."""
    if geom.ndim == 1:
        return "2-D and 3-D convolutions only"
    if geom.c_in_g == 1:
        return "not depthwise layers (one input channel per group): direct loops are faster"
    flat = as_2d(geom)
    if (flat.sh, flat.sw) != (1, 1) or not (flat.kh in LARGE_TAPS and flat.kw in LARGE_TAPS):
        return "3x3, 5x5 and 7x7 kernels (3, 5 or 7 taps each way) at stride 1 only"
    if (flat.kh, flat.kw) != (3, 3) and not _gemm.TILES:
        return "kernels past 3x3 on numba's register tiles only (AVX-512 or AVX2)"
    if np.dtype(dtype) not in (np.float32, np.float64):
        return "float32 and float64 only"
    if precision not in TILE:
        return f"precision 'highest' or 'high' only, not {precision!r}"
    return None


def algorithm(geom, dtype, precision) -> str:
    """The algorithm a supported call runs at ``precision``, e.g. ``"F(4x4,3x3)"``, with the
    weight gradient's where it differs."""
    flat, itemsize = undilated(as_2d(geom)), np.dtype(dtype).itemsize
    if (flat.kh, flat.kw) != (3, 3):
        return f"F(2x2,{flat.kh}x{flat.kw}) in 3x3 blocks"
    m = _tile(flat, precision, itemsize, split=not _native_3d(geom, itemsize))
    mw = _tile(flat, precision, itemsize, split=False)
    return f"F({m}x{m},3x3)" + (f", weight F({mw}x{mw},3x3)" if mw != m else "")


def _tile(geom, precision, itemsize, split) -> int:
    """The output tile m of F(m x m, 3x3) for this (2-D) call; ``split``: in a pass that may split
    the output channels over the threads (``_by_channels``: the 2-D forward and input gradient)."""
    return 4 if TILE[precision] == 4 and _f4_pays(geom, itemsize, split) else 2


def _f4_pays(geom, itemsize, split) -> bool:
    """Whether F(4x4) is expected to be faster than F(2x2) here (see ``F4_MAX_PRODUCTS``): with
    many filter bytes per tile, or up to ``F4_SPLIT_MAX_PRODUCTS``, only in the passes that may
    split the output channels (``split``) over a panel of tiles at least, by items where the
    filters are few enough (``F4_SPLIT_FILTER_BYTES``), else where the threads split the output
    channels both ways (``_channel_plan``). Two threads, float32, time
    F(4x4) by channels / F(2x2), 9 interleaved rounds: forward N=32 C=512 7x7 0.81, N=16 0.77,
    N=8 0.72 (N=4, 16 tiles, 1.49); backward with F(4x4)'s weight gradient too 0.99 and 1.12,
    which therefore keeps F(2x2) there. Split so, F(4x4) also pays with up to
    ``F4_SPLIT_MAX_PRODUCTS`` of F(2x2)'s products, F(2x2) running by items: 14x14 (0.73) C=512,
    9 rounds, two or three runs, forward N=2 0.66-0.71, N=4 0.66-0.70, N=8 0.75-0.83, N=16
    0.99-1.02; backward (its weight gradient F(2x2)) N=2 0.96, N=4 0.92, N=8 1.01, N=16 1.02; at
    10x10 (0.81) N=8 forward 1.22. By items it pays on NumPy's products too (no AVX-512: an AVX2
    Zen 3, 2026-12-03, 9 interleaved rounds in one process, forward / input gradient F(4x4) over
    F(2x2)): 14x14 N=32 C=64 0.90 / 0.87, C=128 0.82 / 0.81, C=256 0.80 / 0.82, N=16 0.87 /
    0.84, N=8 1.00 / 1.02, N=16 C=384 0.84 / 0.83; 13x13 N=32 C=256 0.73 / 0.78; 16x16 N=8 C=256
    0.78 / 0.79; 20x20 0.71 / 0.72; 14x14 N=8 C=192 0.91 / 1.00. Since the threads split the
    output channels below 16 MiB of transformed kernel too (``BY_CHANNELS_RATIO``), F(4x4) so split
    runs there where F(2x2) had, on few images: time with / without it, 9-15 interleaved rounds in
    one process (2026-12-06, Zen 4), forward / backward, float32 N=4 C=256 14x14 (9 MiB of F(4x4)
    filters) 0.80-0.81 / 0.91-0.96, N=2 0.90-0.95 / 0.95-1.00, N=4 13x13 0.78-0.86 / 0.91-0.93
    (an unchanged layer beside them, N=1: 0.97 / 1.01), 16x16 N=4 0.76 / 0.92, N=2 0.87 / 0.92;
    float64 N=2 C=128 14x14 0.94 / 0.78, N=2 C=192 0.89 / 0.97, N=4 C=192 0.80 / 0.90, N=4 C=128
    13x13 0.80."""
    h4, w4 = -(-geom.oh // 4), -(-geom.ow // 4)  # 4x4 tiles down and across an output
    t4, t2 = geom.tiles(4), geom.tiles(2)
    filters = 36 * geom.groups * geom.c_in_g * geom.c_out_g * itemsize
    if 36 * t4 <= F4_MAX_PRODUCTS * 16 * t2 and filters <= F4_MAX_FILTER_BYTES * max(1, geom.n * t4):
        return True
    if 36 * t4 > F4_SPLIT_MAX_PRODUCTS * 16 * t2 or not split or geom.n * t4 < F4_MIN_TILE_BYTES // itemsize:
        return False
    if (itemsize == 4 and call_threads() >= 2 and min(geom.c_in_g, geom.c_out_g) >= TILED_MIN_CHANNELS
            and filters <= min(F4_ITEMS_MAX_FILTER_BYTES, F4_SPLIT_FILTER_BYTES * geom.n * t4)):
        return True  # by items (F4_SPLIT_FILTER_BYTES); where it ties, the more accurate F(2x2) runs
    if not _gemm.TILES:
        return False  # (only the register tiles split the output channels)
    forward = _channel_plan(geom.n * h4, w4, 4, geom.c_in_g, geom.c_out_g, geom, itemsize)
    backward = _channel_plan(geom.n * -(-geom.ih // 4), -(-geom.iw // 4), 4, geom.c_out_g, geom.c_in_g, geom, itemsize)
    return forward is not None and backward is not None


@counted_call
def forward(x, w, geom, bias=None):
    """y of shape ``geom.y_shape``, dtype of ``x``, plus ``bias[co]`` when given."""
    if not _native_3d(geom, x.itemsize):
        return _forward_nd(x, w, geom, bias)
    y = _convolve_3d(x, w, geom, bias, transposed=False)
    return y if y is not None else _direct().forward(x, w, geom, bias)


def _forward_2d(x, w, geom, bias=None):
    y = _convolve(x, w, geom, geom.c_out, (geom.oh, geom.ow), geom.pt, geom.pl, bias, transposed=False)
    # inf or NaN in the result: Winograd spreads them over whole tiles; the direct sums do not
    return y if y is not None else _direct().forward(x, w, geom, bias)


@counted_call
def grad_input(gy, w, geom):
    """Gradient with respect to the input: the stride-1 convolution of gy with the flipped,
    channel-transposed kernel, padded by 2 - p on each side (negative: cropped)."""
    if not (_native_3d(geom, gy.itemsize) and geom.stride[0] == 1):
        return _grad_input_nd(gy, w, geom)
    gx = _convolve_3d(gy, w, geom, None, transposed=True)
    return gx if gx is not None else _direct().grad_input(gy, w, geom)


def _grad_input_2d(gy, w, geom):
    gx = _convolve(gy, w, geom, geom.c_in, (geom.ih, geom.iw), geom.kh - 1 - geom.pt, geom.kw - 1 - geom.pl, None,
                   transposed=True)
    return gx if gx is not None else _direct().grad_input(gy, w, geom)


def _direct():
    from . import numba_jit
    return numba_jit


# 1-D and 3-D calls otherwise run through the 2-D passes (``_lift``), dilated ones through
# undilated calls on their phases (``_phases``)
_forward_nd = lifted(phased(_forward_2d, "forward"), "forward")
_grad_input_nd = lifted(phased(_grad_input_2d, "grad_input"), "grad_input")


@counted_call
@lifted
def grad_weight(gy, x, geom):
    """Gradient with respect to the weight, shaped like ``w``: the F(m x m, 3x3) adjoint
    (``_grad_weight_2d``; dilated, on the phases) where it beats numba's (``_winograd_weight``),
    else the numba backend's (dilated, on the call itself: the phases' copies would only add)."""
    if _winograd_weight(undilated(geom), x.itemsize):
        return _grad_weight_phases(gy, x, geom)
    return _direct().grad_weight(gy, x, geom)


def _grad_weight_tiles(gy, x, geom):
    """``_grad_weight_2d`` (3x3) or ``_grad_weight_large`` where it runs (``_winograd_weight``: each
    undilated piece checks its own sums against the budget its caller leaves), else, or where a
    result is inf or NaN, numba's."""
    if _winograd_weight(geom, x.itemsize):
        gw = (_grad_weight_2d if (geom.kh, geom.kw) == (3, 3) else _grad_weight_large)(gy, x, geom)
        if gw is not None:
            return gw
    return _direct().grad_weight(gy, x, geom)


_grad_weight_phases = phased(_grad_weight_tiles, "grad_weight")


def _winograd_weight(geom, itemsize) -> bool:
    """Whether a 2-D call's weight gradient runs as Winograd tiles: a 3x3 stride-1 kernel (what the
    lift passes for a supported call), channels enough that they beat numba's
    (``WEIGHT_MIN_CHANNELS`` on the register tiles, else ``WEIGHT_MIN_CHANNELS_BLAS``), and one
    slice's sums (``alpha^2`` kernels) within half the memory budget; or a larger kernel's blocks
    (``_grad_weight_large``) on the register tiles, ``LARGE_WEIGHT_MIN_CHANNELS`` a side, an image
    a thread at least (its slices are of whole images) and ``LARGE_WEIGHT_MIN_WORK``, products at
    most ``LARGE_MAX_WORK`` of a direct sum's (``large_blocks``)."""
    if (geom.ndim, geom.sh, geom.sw, geom.dil_h, geom.dil_w) != (2, 1, 1, 1, 1):
        return False
    channels = min(geom.c_in_g, geom.c_out_g)
    if (geom.kh, geom.kw) != (3, 3):  # (``large_blocks`` checks the kernel's taps)
        threads = call_threads()
        tiles = -(-geom.n // threads) * _grid(geom.kh, geom.oh) * _grid(geom.kw, geom.ow)
        return (_weight_on_tiles() and channels >= LARGE_WEIGHT_MIN_CHANNELS and geom.n >= threads
                and tiles * channels >= LARGE_WEIGHT_MIN_WORK and large_blocks(geom))
    sums = 36 * geom.groups * geom.c_in_g * geom.c_out_g * itemsize
    least = WEIGHT_MIN_CHANNELS if _weight_on_tiles() else WEIGHT_MIN_CHANNELS_BLAS
    return channels >= least and 2 * sums <= call_budget(geom, itemsize)


def _grad_weight_2d(gy, x, geom):
    """gw = sum over tiles of G^T [(A dy A^T) * (B^T d B)] G: the input's tiles transformed as the
    forward's, the output gradient's through A, per transform point a product over the tiles,
    G^T last. The batch's tile rows are cut into slices of about ``SLICE_TILES`` tiles, in whole
    rounds of the threads, each summing its products into its own ``alpha^2`` kernels (in blocks of
    up to ``GW_ITEM_TILES`` tiles), so that the result does not depend on which thread ran what;
    the slices' sums are added in order, in float64, before G^T. None when a result is inf or
    NaN.

    On the register tiles, where m does not divide the output, each point's products skip the
    tiles whose output gradient is zero there (``_tile_spans``: a cropped tile row's or column's
    last point, as the forward's products skip them): 225 of F(2x2)'s 256 per image at 7x7. Two
    threads, time skipping / not, 7 interleaved rounds in one process (2026-12-04), float32: N=32
    C=512 7x7 0.96, N=8 0.96, N=32 C=256 7x7 0.88, N=16 C=256 13x13 0.92, N=32 C=128 27x27 0.98,
    N=32 C=384 9x9 0.93, N=16 C=512 5x5 0.94; float64 0.98, 0.91, 0.98 (the first, third and sixth)."""
    m = _tile(geom, get_precision(), x.itemsize, split=False)
    a2, groups, dtype, itemsize = (m + 2) ** 2, geom.groups, x.dtype, x.itemsize
    cs, cd = geom.c_in_g, geom.c_out_g
    tiles_h, tiles_w = -(-geom.oh // m), -(-geom.ow // m)
    rows = geom.n * tiles_h
    gw = np.empty(geom.w_shape, dtype)
    if rows == 0:
        gw[...] = 0
        return gw
    one = groups * a2 * cd * cs * itemsize  # one slice's sums
    budget = call_budget(geom, itemsize)
    threads = call_threads()
    want = -(-rows * tiles_w // SLICE_TILES)
    want = -(-want // threads) * threads  # whole rounds of the threads
    cut = even(rows, -(-rows // int(max(1, min(want, budget // 2 // one)))))
    slices = -(-rows // cut)
    tiles = _weight_on_tiles()  # (``red_batch`` runs any channel counts, its last tiles padded)
    # NumPy's products write each point's product into ``red`` before adding it to the slice's sums
    red = _gemm.red_batch_scratch(cs, itemsize) if tiles else cd * cs
    size, threads = _plan(rows, tiles_w, a2 * (cs + cd) * itemsize, slices * one + threads * red * itemsize,
                          geom, itemsize, _k.transform_scratch(m, 1, 1, itemsize)[0], GW_ITEM_TILES, GW_ITEM_BYTES)
    parts = kept("gw-slices", (slices, groups, a2, cd, cs), dtype)  # written whole before read

    def work(i, scratch):
        r_first, r_last = i * cut, min(rows, (i + 1) * cut)
        step = even(r_last - r_first, size)  # blocks of one size: a short one would cost its C traffic
        for r0 in range(r_first, r_last, step):
            r1 = min(r_last, r0 + step)
            nt = (r1 - r0) * tiles_w
            v = buffer(scratch, "v", (a2 * cs * nt,), dtype)
            dm = buffer(scratch, "m", (a2 * cd * nt,), dtype)
            s, wk = _transform_work(scratch, m, r1 - r0, tiles_w, dtype)
            rs = buffer(scratch, "red", (red,), dtype)
            # a cropped tile's output gradient is zero at the points only its cropped pixels read
            lanes = _lanes(m, r0, r1, tiles_h, tiles_w, itemsize) if tiles and WEIGHT_LANES else 0
            order, spans = (_tile_spans(m, r0, r1, tiles_h, tiles_w, (geom.oh, geom.ow), lanes) if tiles
                            else (_NO_ORDER, _NO_SPANS))
            for g in range(groups):
                _k._input_transform(x, g * cs, cs, r0, r1, tiles_h, tiles_w, geom.pt, geom.pl, m, v, s, wk, 0, cs,
                                    order, 0, lanes)
                _k._grad_output_transform(gy, g * cd, cd, r0, r1, tiles_h, tiles_w, m, dm, wk, order)
                if tiles:
                    _gemm.red_batch(dm, v, parts[i, g].reshape(-1), cd, cs, nt, r0 > r_first, rs, spans)
                    continue
                _red_products(dm.reshape(a2, cd, nt), v.reshape(a2, cs, nt), parts[i, g], r0 > r_first,
                              rs.reshape(cd, cs))

    bad = []

    def finish(r0, r1):
        if _k._filter_grad_transform(parts, m, r0, r1, gw, 0):
            bad.append(True)

    with np.errstate(invalid="ignore", over="ignore"):
        map_items([(i,) for i in range(slices)], work, threads)
        _evenly(groups * cd, threads, finish)
    return None if bad else gw


# The weight gradient of a kernel past 3x3 as the forward's blocks (``_convolve_large``), adjoint:
# each block's F(2x2,3x3) weight gradient pairs the output gradient's tiles with the input's tiles
# of the grid ``offs[b]`` further on (``_k.large_red``), and G^T makes each block's 3x3 of taps,
# of which it keeps its own. It beat numba's direct loops where each thread sums many tiles (its
# sums, 49 or 100 blocks' points of cd x cs values a slice, and their G^T cost alike however few
# tiles a slice holds) and the channels are not few (the transforms' share). Two threads, float32,
# ms winograd / numba, medians of 5 interleaved rounds (an AMD Zen 4, 2026-12-06), with a thread's
# grid tiles times the channels (the fewer a side), 22 layers: won 5x5 N=16 64 -> 64 56x56 (431K)
# 36.4 / 51.8, N=32 64 -> 64 28x28 (230K) 22.6 / 29.0, N=8 80 -> 80 40x40 (141K) 16.3 / 32.9, N=8 128
# -> 128 28x28 (115K) 23.4 / 28.7, N=4 192 -> 192 28x28 (86K) 24.9 / 31.1, N=6 160 -> 160 24x24 (81K)
# 20.1 / 28.8, N=8 64 -> 128 32x32 (74K) 14.6 / 18.6, 7x7 N=8 96 -> 192 28x28 (98K) 50.7 / 73.1; 5x5
# N=8 256 -> 256 14x14 (66K) 30.6 / 32.5, N=8 128 -> 128 20x20 (62K) 13.9 / 14.9; 7x7 N=12 96 -> 96
# 16x16 (58K) 17.8 / 24.0, N=4 96 -> 96 28x28 (49K) 15.8 / 21.8; even or lost: 5x5 N=3 128 -> 128
# 28x28 (58K) 11.3 / 10.9, N=32 32 -> 32 28x28 (32 channels) 8.7 / 8.7, N=4 48 -> 48 40x40 (42K) 6.1 /
# 4.4, 7x7 N=8 64 -> 64 20x20 (37K) 10.4 / 8.2, 5x5 N=4 256 -> 256 14x14 (33K) 19.2 / 16.8, N=16 64 ->
# 64 14x14 (33K) 5.7 / 4.1, N=4 128 -> 128 20x20 (31K) 9.2 / 7.9, N=1 192 -> 256 17x17 (one image a
# slice: one thread) 10.3 / 5.8, N=2 256 -> 128 and 128 -> 128 20x20 (15K) 10.7 / 8.4, 6.1 / 4.2.
# The limits keep to the wins from 60K (the two 7x7 wins below it left out); of 7 layers drawn
# after, the 5 within them won (0.64-0.98 of numba's time), of the 2 outside, 5x5 N=24 72 -> 72
# 14x14 (55K) would have won (9.8 / 13.1), N=2 192 -> 192 28x28 (43K) was even.
LARGE_WEIGHT_MIN_CHANNELS = 64
LARGE_WEIGHT_MIN_WORK = 60_000  # the grid's tiles of a thread's images times the channels a side, at least


def large_weight_blocks(geom) -> bool:
    """Whether a 2-D call's weight gradient, its kernel past 3x3, runs as the blocks' adjoint
    (``_winograd_weight``, ``_grad_weight_large``): for ``"auto"``."""
    return geom.ndim == 2 and (geom.kh, geom.kw) != (3, 3) and _winograd_weight(geom, 4)


def _grad_weight_large(gy, x, geom):
    """gw of a kernel of ``LARGE_TAPS`` by F(2x2,3x3) blocks over the forward's grid (``_grid``):
    the input transformed over it, the output gradient through A (zeros on the tiles past the
    output), per block and live point a product over the tiles (``_k.large_red``), each block's
    G^T last. Slices of whole images (a block pairs a tile with one further down its image), as
    many as whole rounds of the threads, about ``SLICE_TILES`` tiles each, each summing into its
    own sums in blocks of images that fit the memory budget; the slices' sums added in order in
    float64. None where a result is inf or NaN, or one image of one thread does not fit the
    budget (the caller then runs numba's)."""
    bh, bw = _blocks(geom.kh), _blocks(geom.kw)
    tiles_h, tiles_w = _grid(geom.kh, geom.oh), _grid(geom.kw, geom.ow)
    blocks, offs, live = _block_layout(bh, bw, tiles_w)
    nb, tiles = len(blocks), tiles_h * tiles_w
    groups, cs, cd, n = geom.groups, geom.c_in_g, geom.c_out_g, geom.n
    dtype, itemsize = x.dtype, x.itemsize
    one = groups * nb * 16 * cd * cs * itemsize  # a slice's sums
    budget = call_budget(geom, itemsize) - reserved() * itemsize
    threads = call_threads()
    want = -(-max(1, -(-n * tiles // SLICE_TILES)) // threads) * threads
    slices = int(max(1, min(want, n, budget // 2 // one)))
    cut = -(-n // slices)
    slices = -(-n // cut)
    red = _gemm.red_batch_scratch(cs, itemsize)

    def image_bytes(images):  # a block of images: its transformed input and output gradient, transforms
        return 16 * (cs + cd) * images * tiles * itemsize + _k.transform_scratch(2, images * tiles_h, tiles_w,
                                                                                 itemsize)[0]
    spare = budget - slices * one - 9 * groups * cd * cs * itemsize  # (and the blocks' 3x3 filters)
    threads = int(min(threads, slices, spare // (image_bytes(1) + red * itemsize) if spare > 0 else 0))
    if threads < 1:
        return None
    size = max(1, min(cut, ITEM_TILES // tiles or 1))
    while size > 1 and threads * (image_bytes(size) + red * itemsize) > spare:
        size -= 1
    parts = kept("gw-slices", (slices, groups, nb * 16, cd, cs), dtype)  # written whole before read

    def work(i, scratch):
        for n0 in range(i * cut, min(n, (i + 1) * cut), size):
            n1 = min(n, (i + 1) * cut, n0 + size)
            r0, r1 = n0 * tiles_h, n1 * tiles_h
            p = (r1 - r0) * tiles_w
            v = buffer(scratch, "v", (16 * cs * p,), dtype)
            dm = buffer(scratch, "m", (16 * cd * p,), dtype)
            s, wk = _transform_work(scratch, 2, r1 - r0, tiles_w, dtype)
            rs = buffer(scratch, "red", (red,), dtype)
            for g in range(groups):
                _k._input_transform(x, g * cs, cs, r0, r1, tiles_h, tiles_w, geom.pt, geom.pl, 2, v, s, wk, 0, cs,
                                    _NO_ORDER)
                _k._grad_output_transform(gy, g * cd, cd, r0, r1, tiles_h, tiles_w, 2, dm, wk, _NO_ORDER)
                _k.large_red(dm, v, parts[i, g].reshape(-1), live, offs, cd, cs, p, n0 > i * cut, rs)

    gw = np.empty(geom.w_shape, dtype)
    gw3 = np.empty((groups * cd, cs, 3, 3), dtype)
    bad = []

    def finish(r0, r1, block):
        if _k._filter_grad_transform(parts, 2, r0, r1, gw3, block * 16):
            bad.append(True)

    with np.errstate(invalid="ignore", over="ignore"):
        map_items([(i,) for i in range(slices)], work, threads)
        for block, (i, j) in enumerate(blocks):
            (ky0, ny), (kx0, nx) = bh[i], bw[j]
            _evenly(groups * cd, call_threads(), functools.partial(finish, block=block))
            gw[:, :, ky0:ky0 + ny, kx0:kx0 + nx] = gw3[:, :, :ny, :nx]
    return None if bad else gw


def _red_products(dm, v, sums, add, product):
    """``sums[xi] (+)= dm[xi] @ v[xi].T`` for each transform point xi (added when ``add``) on NumPy's
    products: ``_gemm.red_batch`` where the register tiles do not run. ``product``: one point's."""
    for xi in range(dm.shape[0]):
        if add:
            np.matmul(dm[xi], v[xi].T, out=product)
            sums[xi] += product
        else:
            np.matmul(dm[xi], v[xi].T, out=sums[xi])


def _plan(rows, tiles_w, per_tile, shared, geom, itemsize, work=0, item_tiles=None, item_bytes=None, panel=1):
    """``(tile rows per work item, threads)``: items of about ``item_tiles`` tiles and at most
    ``item_bytes`` (of ``per_tile`` bytes each; ``ITEM_TILES`` and ``ITEM_BYTES`` unless given),
    at most a thread's share of the rows, and every thread's block, with its transforms' ``work``
    bytes per tile, plus the ``shared`` bytes within the memory budget (fewer threads when one row
    each does not fit; one row at least). With ``panel`` (the products' columns per register
    tile), items hold whole panels of tiles where that is near the size wanted. That size or an
    even cut of the rows, whichever leaves the busiest thread less (``_slowest``)."""
    per_row = per_tile * tiles_w
    budget = call_budget(geom, itemsize) - shared
    reserve = reserved() * itemsize
    threads = int(max(1, min(call_threads(), budget // (per_row + work * tiles_w + reserve))))
    fits = (budget // threads - reserve) // (per_row + work * tiles_w)
    tiles = item_tiles or ITEM_TILES
    q = panel // math.gcd(panel, tiles_w)  # rows of a whole number of panels
    q = q if q * tiles_w <= 2 * tiles else 1
    want = max(q, round(-(-tiles // tiles_w) / q) * q)
    most = min(fits, (item_bytes or ITEM_BYTES) // per_row, -(-rows // threads))
    size = int(max(1, min(want, most // q * q or most)))
    if not rows:
        return 1, threads  # an empty batch: no items
    return min((size, even(rows, size)), key=lambda s: _slowest(rows, s, threads, q)), threads


def _slowest(rows, size, threads, q) -> float:
    """The busiest thread's work when ``rows`` run in items of ``size`` rows, items going to
    whichever thread is free (in order): rows, those of items that are not whole panels (of ``q``
    rows) counted ``PART_PANEL_COST`` times."""
    def cost(r):
        return r * (PART_PANEL_COST if r % q else 1.0)
    whole, last = divmod(rows, size)
    rounds, extra = divmod(whole, threads)  # ``extra`` threads run one item more
    busiest = (rounds + (extra > 0)) * cost(size)
    return max(busiest, rounds * cost(size) + cost(last)) if last else busiest  # last: a thread of ``rounds``


def _convolve(src, w, geom, c_dst, out_hw, pt, pl, bias, transposed):
    """The stride-1 3x3 convolution of ``src`` into ``c_dst`` channels of ``out_hw`` pixels, input
    pixel ``(oy - pt + ky, ox - pl + kx)``; with w's kernels (``transposed``: flipped, channels
    swapped). None when a result is inf or NaN."""
    if w.shape[-2:] != (3, 3):
        return _convolve_large(src, w, geom, c_dst, out_hw, pt, pl, bias, transposed)
    m = _tile(geom, get_precision(), src.itemsize, split=True)
    a2, groups, dtype, itemsize = (m + 2) ** 2, geom.groups, src.dtype, src.itemsize
    cs, cd = src.shape[1] // groups, c_dst // groups  # channels per group read and written
    tiles_h, tiles_w = -(-out_hw[0] // m), -(-out_hw[1] // m)
    rows = src.shape[0] * tiles_h  # rows of tiles over the whole batch
    tiles = _on_tiles(cs, cd)
    edges = _edges(m, src.shape, out_hw, pt, pl) if tiles else (False, False)
    y = np.empty((src.shape[0], c_dst, *out_hw), dtype)
    b = np.empty(0, dtype) if bias is None else bias
    wv = w.reshape(groups, cd if not transposed else w.shape[0] // groups, -1, 3, 3)
    if transposed:  # (group, input channel, output channel, ky, kx), flipped: a view, no copy
        wv = wv.transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    if tiles:
        plan = _channel_plan(rows, tiles_w, m, cs, cd, geom, itemsize, edges)
        if plan:
            with np.errstate(invalid="ignore", over="ignore"):
                bad = _by_channels(src, wv, m, plan, tiles_h, tiles_w, pt, pl, b, y, out_hw, edges)
            return None if bad else y
    u, up = _kernel_arrays(groups, _filters(m, edges), cd, cs, dtype, tiles)
    size, threads = _plan(rows, tiles_w, (_slots(a2, cs, cd) if tiles else a2 * (cs + cd)) * itemsize,
                          u.nbytes + up.nbytes, geom, itemsize,
                          _k.transform_scratch(m, 1, 1, itemsize)[0] + a2 * PLANE_GAP_BYTES,
                          panel=_gemm.tile_cols(itemsize) if tiles else 1)
    bad = []
    kernel = _kernel_work(wv, m, u, up, tiles, threads)
    spin = _spin.ticks(KERNEL_SPIN_S) if tiles else 0  # cycles an item waits for the kernel spinning

    def work(r0, r1, scratch):
        kernel.help()
        nt = (r1 - r0) * tiles_w
        if tiles:  # one buffer (``_slots``), its points' planes apart by a gap (``_planes``)
            total, vo, vstep, mstep = _planes(a2, cs, cd, nt, itemsize)
            z = buffer(scratch, "vm", (total,), dtype)
            v, mm = z[vo:], z[:a2 * mstep]
        else:  # NumPy's products would copy an input that overlaps their output
            v = buffer(scratch, "v", (a2 * cs * nt,), dtype)
            mm = buffer(scratch, "m", (a2 * cd * nt,), dtype)
        s, wk = _transform_work(scratch, m, r1 - r0, tiles_w, dtype)
        if tiles:  # the item's transforms and products in one compiled call
            lanes = _lanes(m, r0, r1, tiles_h, tiles_w, itemsize)
            order, products = _cropped(m, r0, r1, tiles_h, tiles_w, out_hw, itemsize, edges, lanes)
            keep_apart()
            call = (src, cs, cd, r0, r1, tiles_h, tiles_w, pt, pl, m, v, mm, s, wk, order, up,
                    buffer(scratch, "tiles", (_gemm.batch_scratch(cd, itemsize),), dtype), products, b, y)
            # It transforms its input while other threads finish the kernel's last parts, then waits
            # for them inside the compiled call (``KERNEL_SPIN_S``); past that, here, asleep.
            got = _k.item(*call, False, vstep, mstep, lanes, kernel.state, len(kernel.parts), spin)
            if got == _k.ITEM_WAITING:
                kernel.ready()
                keep_apart()
                got = _k.item(*call, True, vstep, mstep, lanes, kernel.state, 0, 0)
            if got == _k.ITEM_BAD:
                bad.append(True)
            return
        for g in range(groups):  # NumPy's products
            _k._input_transform(src, g * cs, cs, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, 0, cs, _NO_ORDER)
            kernel.ready()
            np.matmul(u[g], v.reshape(a2, cs, nt), out=mm.reshape(a2, cd, nt))
            if _k._output_transform(mm, g * cd, cd, r0, r1, tiles_h, tiles_w, m, b, y, wk, _NO_ORDER):
                bad.append(True)

    # inf and NaN only send the call to the direct fallback: no warning for them
    with np.errstate(invalid="ignore", over="ignore"):  # map_items keeps BLAS to one thread per worker
        map_items(list(chunks(rows, size)), work, threads, shared=(kernel,))
    return None if bad else y


# Elements between two transform points' planes in the one buffer of the register tiles' items
# (``_planes``): a plane of cs x tiles values is often a multiple of 4 KiB (at 56x56 C=64 items of
# 224 tiles, 56 KiB; at 7x7 C=512 every item), so that the transforms' 16 streams, one per point,
# met in the same few sets of L1 and evicted each other's lines. One thread, F(2x2)'s input
# transform of N=32 56x56 C=64 in items of 224 / 252 tiles (planes 56 KiB / 63 KiB): 11.1 / 7.9 ms.
PLANE_GAP_BYTES = 64


def _planes(a2, cs, cd, nt, itemsize):
    """``(elements, v's offset, v's plane step, mm's plane step)`` of an item's one buffer on the
    register tiles: ``_slots`` with each point's plane (cs or cd x nt values) followed by a gap of
    ``PLANE_GAP_BYTES``. Product xi still overwrites only input planes already read: mm's plane xi
    ends at ``xi*mstep + cd*nt``, v's plane xi starts at ``vo + xi*vstep``, and ``vo`` is
    ``_slots``' offset, which covers ``xi*(mstep - vstep) + cd*nt`` for every xi (the gaps cancel)."""
    gap = PLANE_GAP_BYTES // itemsize
    vstep, mstep = cs * nt + gap, cd * nt + gap
    vo = (_slots(a2, cs, cd) - a2 * cs) * nt
    return vo + a2 * vstep, vo, vstep, mstep


def _slots(a2, cs, cd) -> int:
    """Elements per tile of the products' one buffer on the register tiles, the transformed input
    (``a2`` slots of ``cs`` channels) at its end and the products (``a2`` of ``cd``) from its
    start: product xi, run after those before it, overwrites only input slots that they have read
    (``_gemm.batch`` runs the slots in order), so the two take a2 + 1 slots, not 2 a2. Two
    threads, float32, forward time one buffer / two, 15-21 interleaved rounds in one process:
    N=32 C=512 7x7 0.97-0.98, C=256 14x14 0.93, C=128 28x28 0.96, C=64 56x56 1.01 (2026-12-03)."""
    return a2 * cs + cd + max(0, (a2 - 1) * (cd - cs))


def _channel_plan(rows, tiles_w, m, cs, cd, geom, itemsize, edges=(False, False)):
    """For ``_by_channels``: ``(output channels per block, threads)``, or None where the transformed
    kernel is small beside the transformed input (``BY_CHANNELS_RATIO``), whatever its size, the
    input's is over ``BY_CHANNELS_MAX_BYTES`` or the two do not fit the memory budget (a block's
    transformed filters with ``edges``' too, ``_filters``). Blocks of about ``BLOCK_BYTES`` of
    transformed filters, or ``LARGE_BLOCK_BYTES`` from ``LARGE_INPUT_BYTES`` of transformed input
    on where they fit."""
    a2, groups, threads = (m + 2) ** 2, geom.groups, call_threads()
    u = groups * a2 * cd * cs * itemsize  # the transformed kernel
    v = groups * a2 * cs * rows * tiles_w * itemsize  # the whole batch's transformed input
    if u < BY_CHANNELS_RATIO * v or v > BY_CHANNELS_MAX_BYTES or threads < 2 or not rows:
        return None
    for block in ((LARGE_BLOCK_BYTES,) if v >= LARGE_INPUT_BYTES else ()) + (BLOCK_BYTES,):
        kb = _block_channels(block, a2, cs, cd, groups, threads, itemsize)
        per_thread = ((_filters(m, edges) * _gemm.packed_size(kb, cs) + _gemm.batch_scratch(kb, itemsize)
                       + a2 * kb * rows * tiles_w + reserved()) * itemsize
                      + _k.transform_scratch(m, rows, tiles_w, itemsize)[0])
        if v + threads * per_thread <= call_budget(geom, itemsize):
            return kb, threads
    return None


def _block_channels(block, a2, cs, cd, groups, threads, itemsize) -> int:
    """Output channels per block of ``_by_channels``: whole panels of a group's output channels, of
    about ``block`` bytes of transformed filters each, as many blocks as whole rounds of the
    threads where there are panels enough."""
    panels = -(-cd // _gemm.MR)  # per group
    per_group = -(-panels // max(1, block // (a2 * cs * _gemm.MR * itemsize)))  # blocks
    rounds = -(-groups * per_group // threads)
    per_group = min(panels, max(per_group, -(-rounds * threads // groups)))
    return -(-panels // per_group) * _gemm.MR


def _by_channels(src, wv, m, plan, tiles_h, tiles_w, pt, pl, b, y, out_hw, edges):
    """``_convolve``'s work with the threads splitting the channels, over the whole batch at once:
    the input tiles are transformed (parts of the input channels, into ``vs``, shared), each block
    of output channels transforms its filters into its thread's buffer and, once the input's parts
    are done, runs its products and output transform. The same sums in the same order as by
    items: the same bits. Returns whether a value written is inf or NaN."""
    kb, threads = plan
    groups, cd, cs = wv.shape[0], wv.shape[1], wv.shape[2]
    a2, dtype = (m + 2) ** 2, src.dtype
    rows = src.shape[0] * tiles_h
    nt = rows * tiles_w
    # per group (a2, cs, tiles), kept between calls as the transformed kernel is (``_kernel_arrays``):
    # made afresh, 9.4 MB at r7's F(4x4), glibc gave its pages back after each call and the kernel
    # zeroed them at the next one's first touch. Two threads, N=32 C=512 7x7 at "high", forward in
    # new processes, medians of 15 calls, three alternating runs: 23.6-32.4 ms (best 19.3-20.0)
    # against 25.8-46.1 (best 22.5-27.6) made afresh.
    vs = kept("winograd-input", (groups, a2 * cs * nt), dtype)
    parts = -(-threads // groups)  # of a group's input channels: at least a part per thread
    lanes = _lanes(m, 0, rows, tiles_h, tiles_w, dtype.itemsize, by_channels=True) if BY_CHANNELS_LANES else 0
    order, products = _cropped(m, 0, rows, tiles_h, tiles_w, out_hw, dtype.itemsize, edges, lanes)

    def transform(g, c0, c1, scratch):
        s, wk = _transform_work(scratch, m, rows, tiles_w, dtype)
        _k._input_transform(src, g * cs + c0, c1 - c0, 0, rows, tiles_h, tiles_w, pt, pl, m, vs[g], s, wk, c0, cs,
                            order, 0, lanes)

    bad = []
    # the input's parts as work the blocks share (``Shared``): a block takes the parts not yet taken,
    # transforms its filters, then waits for the parts other threads are on
    inputs = Shared([(g, c0, c1) for g in range(groups) for c0, c1 in chunks(cs, -(-cs // parts))], transform)

    def block(g, k0, scratch):
        inputs.help(scratch)
        k = min(kb, cd - k0)
        up = buffer(scratch, "up", (_filters(m, edges), _gemm.packed_size(k, cs)), dtype)
        _k._filter_transform_packed(wv[g:g + 1, k0:k0 + k], m, 0, -(-k // _gemm.MR), up, 0, 0, 3, 3)
        inputs.ready(scratch)
        mm = buffer(scratch, "m", (a2 * k * nt,), dtype)
        _gemm.batch(up, k, vs[g], mm, cs, nt, buffer(scratch, "tiles", (_gemm.batch_scratch(k, dtype.itemsize),),
                                                     dtype), products, cs * nt)
        wk = _transform_work(scratch, m, rows, tiles_w, dtype)[1]
        if _k._output_transform(mm, g * cd + k0, k, 0, rows, tiles_h, tiles_w, m, b, y, wk, order):
            bad.append(True)

    map_items([(g, k0) for g in range(groups) for k0 in range(0, cd, kb)], block, threads, shared=(inputs,))
    return bool(bad)


_NO_ORDER, _NO_SPANS = np.empty(0, np.int64), np.empty((0, 4), np.int64)  # every tile, in row order
# The products that only cropped pixels read (``_k.tile_order``) are skipped where that leaves at
# most this share of the products' panels of register-tile columns, counted in halves (a span that
# ends mid-panel costs a half-width tile there, ``_gemm._batch_panel``): the tiles' new order costs
# the input transform about 15 % more (its shift's fix-ups). Two threads, float32, time skipping /
# not, 11-13 interleaved rounds, same bits (2026-12-02, since spans end on half tiles): N=32 C=512
# 7x7 F(2x2) by items (112.5 panels of 128) forward 0.94, input gradient 0.92 (0.98-1.00 when such
# an end cost a whole tile and a copy); F(4x4) by channels forward 0.89, input gradient 0.90; N=32
# C=256 14x14 F(4x4) by items (264.5 of 288) 0.97-0.98. Left whole: N=8 C=512 7x7 F(2x2) (30 of
# 32) 0.98-0.99; N=32 C=128 27x27 F(2x2) (0.97) 1.09 before; N=8 F(4x4) (41 of 36) 1.5 before.
CROP_MAX_PANELS = 0.92


def _tile_spans(m, r0, r1, tiles_h, tiles_w, out_hw, lanes=0):
    """``(order, spans)`` of ``_k.tile_order`` for tile rows r0 .. r1 of outputs ``out_hw`` where m
    does not divide them or with ``lanes`` (``_lanes``), else empty (row order, every tile at
    every point). Read-only by use."""
    cut_h, cut_w = out_hw[0] % m != 0, out_hw[1] % m != 0
    if not (cut_h or cut_w or lanes):
        return _NO_ORDER, _NO_SPANS
    return _orders(m, r0 % tiles_h, r1 - r0, tiles_h, tiles_w, cut_h, cut_w, lanes)


# The tile orders and the choice to skip cropped products are kept between calls, by their
# arguments (a tile order depends on the first row only through its place in an image): made
# afresh, their Python and the kernel's dispatch took 100-150 us of a forward's start at N=32 C=512
# 7x7 (the interpreter's caches cold after the call before), 2 us a work item at 56x56.
ORDERS_KEPT = 32


@functools.lru_cache(maxsize=ORDERS_KEPT)
def _orders(m, first, rows, tiles_h, tiles_w, cut_h, cut_w, lanes=0):
    """``_k.tile_order`` of ``rows`` tile rows from row ``first`` of an image on."""
    order = np.empty(rows * tiles_w, np.int64)
    spans = np.empty(((m + 2) ** 2, 4), np.int64)
    _k.tile_order(first, first + rows, tiles_h, tiles_w, m, cut_h, cut_w, order, spans, lanes)
    return order, spans


def _cropped(m, r0, r1, tiles_h, tiles_w, out_hw, itemsize, edges, lanes=0):
    """``(order, plan)`` for the products of a forward (``_gemm.batch``'s plan): the products only a
    cropped pixel reads are skipped where that saves enough (``CROP_MAX_PANELS``), and always
    where ``edges`` (``_edges``) merges an edge tile's points. Else empty: row order, every
    product. With ``lanes`` (``_lanes``), the order is ``_input_lanes``' whatever is skipped."""
    return _cropped_rows(m, r0 % tiles_h, r1 - r0, tiles_h, tiles_w, tuple(out_hw), itemsize, CROP_MAX_PANELS,
                         tuple(edges), lanes)


@functools.lru_cache(maxsize=ORDERS_KEPT)
def _cropped_rows(m, first, rows, tiles_h, tiles_w, out_hw, itemsize, most, edges, lanes=0):
    """``_cropped`` of ``rows`` tile rows from row ``first`` of an image on, skipping up to ``most``."""
    order, _ = _tile_spans(m, first, first + rows, tiles_h, tiles_w, out_hw, lanes)
    cuts = (out_hw[0] % m != 0, out_hw[1] % m != 0)
    if not any(cuts):
        return order, _gemm.NO_PLAN
    plan = _products_plan(m, _k.tile_counts(first, rows, tiles_h, tiles_w, *cuts), cuts, edges)
    if any(edges):  # the edge tiles' bits: every item alike, whatever its rows
        return order, plan
    nt = rows * tiles_w
    nr = _gemm.tile_cols(itemsize)
    half = nr // 2
    used = plan[..., 0] >= 0
    halves = int(((-(-(plan[..., 2] - plan[..., 1]) // half) - (-(plan[..., 4] - plan[..., 3]) // half)) * used).sum())
    if halves > most * len(plan) * 2 * -(-nt // nr):
        return (order if lanes else _NO_ORDER), _gemm.NO_PLAN
    return order, plan


# The input transform by images in lanes (``_k._input_lanes``), for F(2x2) on rows of fewer than
# ``_k.WIDE_ROW_TILES`` tiles, in items of whole images. Two threads, float32, forward time lanes /
# gathered (the same bits), medians of 9 interleaved rounds in one process (Zen 4, 2026-12-06), with
# each tile position's tiles transformed in vectors from planes of float64: N=32 7x7 C=64 0.82,
# C=128 0.87, C=256 0.94, C=512 (r7) 0.97; items of 8 and 4 images: 12x12 C=128 0.98, 15x15 0.99;
# float64 N=32 7x7 C=96 0.93, C=256 0.98, C=512 0.99, N=16 C=512 1.02 (0.92-1.06). Before that
# kernel (a gather into phases, then B^T in loops of 16-48 values: too short to vectorise) the
# transformed input's size had to stay under 3 MiB (C=256 and C=512 took 1.01-1.02x the time).
INPUT_LANES = True
# F(4x4)'s too (``_k._lanes_f4``: the same kernel with the six-point B^T), and F(2x2)'s by channels
# (``_by_channels``: the whole batch at once), from a vector's lanes of images: two threads, float32,
# forward time gathered / in lanes, medians of 9-15 interleaved rounds in one process (an Intel
# Xeon, family 6 model 167, 2026-12-07, the same bits): "high" N=32 C=512 7x7 1.08-1.10, C=128 7x7
# 1.13, N=16 C=512 1.01, N=8 0.97-1.01, N=32 C=256 14x14 1.04, N=16 12x12 1.04, N=32 C=128 13x13
# 1.24; input gradient r7 1.02, 14x14 1.02; float64 C=256 7x7 1.07, 14x14 1.00; "highest" by
# channels N=16 C=512 7x7 1.035. Under a vector's lanes of images the masked lanes lost: "high" N=4
# C=512 7x7 0.97, N=2 0.94; by channels at "highest" N=1 / 2 / 4 0.94 / 0.94 / 0.97, N=2 C=256 14x14
# 0.92 (F(2x2)'s items keep theirs whatever their images, as measured above).
INPUT_LANES_F4 = True
# The weight gradient's blocks of whole images too, their output gradient's tiles and the products'
# spans in the lanes' order (so its sums over the tiles run in another order: other bits, as near a
# float64 sum): backward time gathered / in lanes, r7 1.02, N=32 C=256 14x14 1.01, C=128 7x7 1.04.
WEIGHT_LANES = True


def _lanes(m, r0, r1, tiles_h, tiles_w, itemsize, by_channels=False) -> int:
    """The images of tile rows r0 .. r1 where their input transform runs by ``_k._input_lanes``
    (above), else 0."""
    images = (r1 - r0) // tiles_h
    if not (r0 % tiles_h == 0 and (r1 - r0) % tiles_h == 0):
        return 0
    few = images < _gemm.VBITS // (8 * itemsize)  # under a vector's lanes of images
    if m == 2:
        return images if INPUT_LANES and tiles_w < _k.WIDE_ROW_TILES and not (few and by_channels) else 0
    return images if INPUT_LANES_F4 and tiles_w < _k.WIDE_ROW_TILES_F4 and not few else 0


# Edge tiles, F(2x2) only: where the output's last tile row (or column) keeps one of its two
# pixels and the two input rows past that pixel's window lie in the zero padding (the padding
# after the image is 1 or more), the tile's kept pixel is a two-tap sum down that axis, d0*g0 +
# d1*g1: its transform values there are d0 - d2 = d0 at point 0, d1 + d2 = d1 at point 1 and
# d2 - d1 = -d1 at point 2, so that points 1 and 2 sum to (G1 - G2) g * d1 = g1 * d1. Those tiles
# run two products down that axis, not three: point 0, point 1 with the filters' middle tap row
# in place of G's row 1 (``EDGE_FILTERS`` more transformed filters, ``_k._filter_transform_packed``),
# and point 2's products set to zero, which the output transform then adds. On 7x7 outputs, 196
# of F(2x2)'s 256 products per image and channel pair, against 225 skipping only the cropped
# pixels' (``tile_order``), and a direct sum's rounding in that axis. Two threads, float32, time
# with edge tiles / without, forward and input gradient, 7-9 interleaved rounds in one process
# (Zen 4, 2026-12-05): N=32 C=512 7x7 0.93-0.96 and 0.955, N=16 0.94 and 0.94, N=8 0.99 and 1.00,
# N=4 1.03 and 1.03, N=1 1.28 and 1.25 (the extra filters' transform, 0.55 ms at C=512, against
# few products: ``EDGE_FILTER_TILES``); N=32 C=384 7x7 0.94 / 0.95, C=256 7x7 0.98 / 1.00, 13x13
# 0.93 / 0.93, C=128 15x15 0.93 / 0.92, C=192 17x17 0.92 / 0.92 (the last three skipped no
# products before: too few for ``CROP_MAX_PANELS``); but C=128 27x27 1.08 / 1.08, where the tiles'
# new order cost the row-order transforms their vectors (``_k.WIDE_ROW_TILES``): not there.
EDGE_TAPS = True
EDGE_FILTERS = 9  # (1', j) for the 4 points j across, (i, 1') for the 4 down, (1', 1')
EDGE_FILTER_TILES = 48  # products saved (tiles at one point) a call needs per extra filter: twice their cost
_EDGE_SKIP, _EDGE_ZERO, _EDGE_TAP = -1, -2, -3  # a point's part down one axis, besides its own index


def _edges(m, src_shape, out_hw, pt, pl):
    """``(rows, columns)``: whether an image's last tile row (column) runs as edge tiles (above) in
    a call on ``src_shape`` (N, C, H, W) giving ``out_hw``: where that pays, on rows of fewer than
    ``_k.WIDE_ROW_TILES`` tiles, with products enough saved over the batch (``EDGE_FILTER_TILES``)."""
    if m != 2 or not EDGE_TAPS or -(-out_hw[1] // m) >= _k.WIDE_ROW_TILES:
        return (False, False)
    edges = tuple(bool(o % 2 and o + 2 - i - p >= 1) for i, o, p in zip(src_shape[2:], out_hw, (pt, pl)))
    cropped = [2 * o + o % 2 for o in out_hw]  # transform points down and across, the cropped pixels' skipped
    saved = cropped[0] * cropped[1] - (cropped[0] - edges[0]) * (cropped[1] - edges[1])
    return edges if src_shape[0] * saved >= EDGE_FILTERS * EDGE_FILTER_TILES else (False, False)


def _filters(m, edges) -> int:
    """Transformed filters a group: alpha^2, and ``EDGE_FILTERS`` more with edge tiles."""
    return (m + 2) ** 2 + (EDGE_FILTERS if any(edges) else 0)


def _products_plan(m, counts, cuts, edges):
    """``_gemm.batch``'s plan over ``tile_order``'s four spans of ``counts`` tiles: at transform
    point (i, j), each span's tiles with the point's filters, the edge tiles' (``_edges``), zeros,
    or not at all where only cropped pixels read it."""
    a = m + 2
    plan = np.zeros((a * a, _gemm.PLAN_ENTRIES, 5), np.int64)
    plan[..., 0] = _gemm.UNUSED
    bounds = np.cumsum((0, *counts))
    in_last = ((False, False), (True, False), (False, True), (True, True))  # the spans' tiles: last row, column
    for i in range(a):
        for j in range(a):
            runs = {}
            for (last_h, last_w), lo, hi in zip(in_last, bounds[:-1], bounds[1:]):
                r = _part(i, a, last_h and cuts[0], last_h and edges[0])
                c = _part(j, a, last_w and cuts[1], last_w and edges[1])
                if lo == hi or _EDGE_SKIP in (r, c):
                    continue
                key = _gemm.ZERO if _EDGE_ZERO in (r, c) else _edge_filter(r, c, a)
                spans = runs.setdefault(key, [])
                if spans and spans[-1][1] == lo:
                    spans[-1] = (spans[-1][0], int(hi))
                else:
                    spans.append((int(lo), int(hi)))
            for e, (key, spans) in enumerate(runs.items()):
                assert len(spans) <= 2
                plan[i * a + j, e] = (key, *spans[0], *(spans[1] if len(spans) > 1 else (0, 0)))
    return plan


def _part(i, a, cropped, edge):
    """Point i's part down one axis of a tile: its own index i, ``_EDGE_TAP`` (the middle tap, an
    edge tile's point 1), ``_EDGE_ZERO`` (an edge tile's point 2) or ``_EDGE_SKIP`` (the last point
    of a tile whose last pixel is cropped: no kept pixel reads it)."""
    if cropped and i == a - 1:
        return _EDGE_SKIP
    if edge and i == 1:
        return _EDGE_TAP
    return _EDGE_ZERO if edge and i == 2 else i


def _edge_filter(r, c, a):
    """The transformed filters of a point whose parts down and across are r and c (``_part``)."""
    if r != _EDGE_TAP and c != _EDGE_TAP:
        return r * a + c
    if c != _EDGE_TAP:
        return a * a + c  # (1', j)
    return a * a + a + r if r != _EDGE_TAP else a * a + 2 * a  # (i, 1'), (1', 1')


_transform_sizes = functools.lru_cache(maxsize=ORDERS_KEPT)(_k.transform_scratch)  # per item, of a few sizes


def _transform_work(scratch, m, rows, tiles_w, dtype):
    """The transforms' work arrays for a block of ``rows`` tile rows (``transform_scratch``)."""
    s, wk = _transform_sizes(m, rows, tiles_w, np.dtype(dtype).itemsize)[1]
    return buffer(scratch, "s", (s,), dtype), buffer(scratch, "wk", (wk,), np.float64)


def _on_tiles(cs, cd) -> bool:
    """Whether the products run on numba's register tiles (AVX-512 or AVX2: ``_gemm.TILES``):
    channels enough to fill them, cs read and cd written per group. On AVX2 against NumPy's
    products (Zen 3, 2026-12-03, two threads, float32, N=32, 9 interleaved rounds in one
    process), forward time over torch's, "highest" (F(2x2)): 56x56 C=64 0.55 / 0.57, 28x28
    C=128 0.68 / 0.69, 14x14 C=256 0.60 / 0.63, 7x7 C=512 0.55 / 0.55; "high" (F(4x4)): 0.34 /
    0.40, 0.38 / 0.42, 14x14 25.4 / 27.1 ms, 7x7 (F(4x4) by channels, against F(2x2) by items)
    22.6 / 35.9 ms; the input gradient alike. (The weight gradient's: ``_weight_on_tiles``.)"""
    return _gemm.TILES and min(cs, cd) >= _gemm.MR


def _weight_on_tiles() -> bool:
    """Whether the weight gradient's products run on numba's register tiles (``_gemm.red_batch``),
    else on NumPy's (``_red_products``): with AVX-512 only. On AVX2's tiles it took 1.03-1.45x
    NumPy's time (Zen 3, 2026-12-03, N=32, 56x56 C=64 to 7x7 C=512, both levels, 9 interleaved
    rounds in one process)."""
    return _gemm.WIDE


def _kernel_arrays(groups, a2, cd, k, dtype, tiles):
    """``(u, up)``: the transformed kernel ``u[g, xi]`` (cd x k) for NumPy's products, or, with
    ``tiles``, ``up[g, xi]`` the same packed for the register tiles; the other one empty. Kept
    between calls (``kept``): 16 MiB at C=512, made afresh each call, was 4,096 pages for the
    kernel to zero at their first touch, where glibc gave its pages back."""
    if tiles:
        return np.empty(0, dtype), kept("winograd-kernel", (groups, a2, _gemm.packed_size(cd, k)), dtype)
    return kept("winograd-kernel", (groups, a2, cd, k), dtype), np.empty((groups, a2, 0), dtype)


# Parts of the kernel's transform per thread (``_kernel_work``): a helper that wakes late finds
# some taken by the threads already running. Two threads, N=32 C=512 7x7 F(2x2), forward time over
# torch's, 15 interleaved rounds: 1, 2 and 4 parts 0.74, 0.76 and 0.77 (ranges 0.67-0.85): alike.
KERNEL_PARTS = 2
# How long an item, its input transformed, waits for the kernel's last parts spinning in its compiled
# call (``_k.item``, ``_spin.parts_done``) before it returns to sleep on the Event (``Shared.ready``).
# Asleep there after idle, a helper ran only once the waker's item had ended (by that timing, woken
# onto the waker's CPU): N=32 C=64 7x7 forward, calls 3-6 after 0.12 s idle, the helper's wait
# 0.75 ms of a 1.9 ms call (0.97 ms from the 50th call on). Two threads, float32, forward,
# spinning / asleep, timed as the bench times (0.12 s idle, 30 ms of calls, then 20 ms timed),
# medians of 10 alternating rounds in one process (Zen 4, 2026-12-06): N=32 7x7 C=64 0.63-0.64,
# C=128 0.96, N=8 C=64 0.67-0.79, N=32 C=64 14x14 0.94, C=512 7x7 (r7) 1.00, C=128 28x28 0.99.
KERNEL_SPIN_S = 0.002


def _kernel_work(wv, m, u, up, tiles, threads):
    """The transform of the kernels ``wv`` (groups, cd, k, 3, 3) into ``_kernel_arrays``' ``u``
    (``u[g, xi] = (G f G^T)[xi]``, in parts of (group, row) pairs) or, with ``tiles``, ``up`` (each
    group's ``xi`` packed for the register tiles, in parts of (group, panel of output channels)
    pairs), as work the items' threads share (:class:`Shared`). It had run as a ``map_items`` call
    of its own before the items: two threads, float32, N=32 C=512 7x7 F(2x2), that call took
    1.6-1.9 ms for 1.0-1.2 ms of transforms a thread (the helper woke late), then the items woke
    the helper again. Forward time shared / before, 15-31 interleaved rounds: 7x7 C=512 0.96-0.98,
    14x14 C=256 0.96, 28x28 C=128 0.98, 56x56 C=64 0.98 (ranges 0.6-1.5: a noisy machine)."""
    if tiles:
        up2 = up.reshape(-1, up.shape[-1])
        n = wv.shape[0] * -(-wv.shape[1] // _gemm.MR)
        run = lambda p0, p1: _k._filter_transform_packed(wv, m, p0, p1, up2, 0, 0, 3, 3)  # noqa: E731
    else:
        n, run = wv.shape[0] * wv.shape[1], lambda r0, r1: _k._filter_transform(wv, m, r0, r1, u)
    return Shared(list(chunks(n, max(1, -(-n // (KERNEL_PARTS * threads))))), run)


def _evenly(n, threads, run):
    """``run(i0, i1)`` over ``range(n)`` cut into one even part per thread, on the threads."""
    map_items(list(chunks(n, -(-n // threads))), lambda i0, i1, scratch: run(i0, i1), threads)


# ------------------------------------------------------- kernels past 3x3, as F(2x2,3x3) blocks

# A kernel of k taps down an axis is cut into blocks of 3 (taps 2b, 2b + 1, and 2b + 2 only in the
# last block, zero in the others), each an F(2x2,3x3) kernel whose output tile i reads the input
# tile i + b of one grid, transformed once: output tile t sums, per transform point, block b's
# transformed filter times the transformed input of tile t + offset(b) (``_k.large_products``; a
# decomposition after Huang et al., "DWM: A Decomposable Winograd Method for Convolution
# Acceleration", 2020). A block whose third tap is zero has a zero transformed filter at the point
# at infinity: its product there is skipped. Products per 2x2 output tile and channel pair, against
# a direct sum's 4 k^2: 5x5 49 (0.49), 7x7 100 (0.51); each block's sum is F(2x2,3x3)'s, so the
# error stays a direct sum's (README, "Winograd and precision"). The grid runs past the output by
# a tile per block down and across (their products are computed and dropped).
LARGE_TAPS = (3, 5, 7)  # taps down (and across) a kernel this backend runs


def _blocks(k):
    """``(first tap, taps)`` of each 3x3 block of a kernel axis of ``k`` taps."""
    nb = max(1, k // 2)
    return [(2 * b, min(3 if b == nb - 1 else 2, k - 2 * b)) for b in range(nb)]


def _live(blocks):
    """Per block of a kernel axis (``_blocks``), which of F(2x2,3x3)'s four transform points take
    products: not the point at infinity (the last) where the block's third tap is zero."""
    return [(True, True, True, taps == 3) for _, taps in blocks]


def _block_layout(bh, bw, tiles_w):
    """``(blocks, offs, live)`` of a kernel's 3x3 blocks (``_blocks`` down, ``bh``, and across,
    ``bw``): each block's (down, across) index, how many tiles further along the grid (rows of
    ``tiles_w``) its input tile lies than its output tile, and which of the 16 transform points
    take its products (``_live``)."""
    blocks = [(i, j) for i in range(len(bh)) for j in range(len(bw))]
    offs = np.array([i * tiles_w + j for i, j in blocks], np.int64)
    live_h, live_w = _live(bh), _live(bw)
    live = np.array([[live_h[i][xi // 4] and live_w[j][xi % 4] for xi in range(16)] for i, j in blocks])
    return blocks, offs, live


def _grid(k, out):
    """Tiles of ``_convolve_large``'s grid along an axis of ``out`` output pixels under ``k``
    taps: the output's 2-pixel tiles, and one more for each block past the first."""
    return -(-out // 2) + len(_blocks(k)) - 1


# Items of whole images leave a thread idle where the images are fewer than the threads or do not
# split evenly among them, and then the threads split the output channels instead (``_large_by_channels``).
# Two threads, float32, forward time by channels / by images, 7 interleaved rounds in one process
# (an AMD Zen 4, 2026-12-06): one image 5x5 256 -> 256 28x28 0.53, 64 -> 64 56x56 0.59; three
# images 256 -> 256 14x14 0.78, 128 -> 128 28x28 0.89, two groups of 32 over 32x32 0.77; five 0.91
# and 1.03; two, four, six and seven 0.95-1.14 (two 7x7 128 -> 128 28x28 1.04, six 5x5 1.14).
LARGE_BY_CHANNELS = None  # (for measuring: True or False forces the way ``_large_plan`` takes)


def _large_plan(src, cs, cd, out_hw, kernel, geom, itemsize):
    """``(blocks down, blocks across, grid rows an image, grid columns, (way, size, threads))`` for
    ``_convolve_large``: by items of ``size`` whole images, or, where the images are fewer than the
    threads or split unevenly among them (``LARGE_BY_CHANNELS``), by blocks of ``size`` output
    channels over the whole batch (``"channels"``); None where neither fits the memory budget."""
    bh, bw = _blocks(kernel[0]), _blocks(kernel[1])
    tiles_h, tiles_w = _grid(kernel[0], out_hw[0]), _grid(kernel[1], out_hw[1])
    nb, n, threads = len(bh) * len(bw), src.shape[0], call_threads()
    budget = call_budget(geom, itemsize) - reserved() * itemsize
    tiles = tiles_h * tiles_w
    by_channels = n < threads or (n % threads and n < 2 * threads)
    by_channels = by_channels if LARGE_BY_CHANNELS is None else LARGE_BY_CHANNELS
    if n and by_channels and threads > 1:
        panels = -(-cd // _gemm.MR)
        kb = -(-panels // -(-threads // geom.groups)) * _gemm.MR  # a group's share of the threads
        one = ((nb * 16 * _gemm.packed_size(kb, cs) + 16 * kb * n * tiles + _gemm.batch_scratch(kb, itemsize))
               * itemsize + _k.transform_scratch(2, n * tiles_h, tiles_w, itemsize)[0])
        shared = geom.groups * 16 * cs * n * tiles * itemsize
        if shared + threads * one <= budget:
            return bh, bw, tiles_h, tiles_w, ("channels", kb, threads)
    shared = geom.groups * nb * 16 * _gemm.packed_size(cd, cs) * itemsize

    def item_bytes(images):  # an item's scratch: its transformed input and products, transforms, tiles
        return ((16 * (cs + cd) * images * tiles + _gemm.batch_scratch(cd, itemsize)) * itemsize
                + _k.transform_scratch(2, images * tiles_h, tiles_w, itemsize)[0])

    if n == 0 or shared + item_bytes(1) > budget:
        return None
    threads = int(max(1, min(threads, n, (budget - shared) // item_bytes(1))))
    per_item = max(1, min(-(-n // threads), ITEM_TILES // tiles))
    while per_item > 1 and shared + threads * item_bytes(per_item) > budget:
        per_item -= 1
    items = -(-n // per_item)
    items = -(-items // threads) * threads  # whole rounds of the threads
    return bh, bw, tiles_h, tiles_w, ("images", -(-n // items), threads)


def _convolve_large(src, w, geom, c_dst, out_hw, pt, pl, bias, transposed):
    """``_convolve`` for kernels past 3x3 (``LARGE_TAPS``) on the register tiles, by items of whole
    images (``_large_by_images``) or by blocks of output channels (``_large_by_channels``), as
    ``_large_plan`` says: the input transformed over the grid, the blocks' filters, their
    products (``_k.large_products``), the output transform. None when a result is inf or NaN, or
    where neither way fits the memory budget (the caller then runs numba's direct loops)."""
    kh, kw = w.shape[-2:]
    groups, dtype, itemsize = geom.groups, src.dtype, src.itemsize
    cs, cd = src.shape[1] // groups, c_dst // groups
    plan = _large_plan(src, cs, cd, out_hw, (kh, kw), geom, itemsize)
    if plan is None:
        return None
    bh, bw, tiles_h, tiles_w, (way, size, threads) = plan
    wv = w.reshape(groups, cd if not transposed else w.shape[0] // groups, -1, kh, kw)
    if transposed:  # (group, input channel, output channel, ky, kx), flipped: a view, no copy
        wv = wv.transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    blocks, offs, live = _block_layout(bh, bw, tiles_w)

    def transform(g, k0, k1, block, p0, p1, up):  # a block's filters of output channels k0 .. k1, panels p0 .. p1
        (ky0, ny), (kx0, nx) = bh[blocks[block][0]], bw[blocks[block][1]]
        _k._filter_transform_packed(wv[g:g + 1, k0:k1], 2, p0, p1, up, ky0, kx0, ny, nx)

    y = np.empty((src.shape[0], c_dst, *out_hw), dtype)
    b = np.empty(0, dtype) if bias is None else bias
    run = _large_by_channels if way == "channels" else _large_by_images
    with np.errstate(invalid="ignore", over="ignore"):
        bad = run(src, groups, cs, cd, size, threads, blocks, live, offs, transform, tiles_h, tiles_w, pt, pl, b, y)
    return None if bad else y


def _await(shared, spin, *args):
    """Return once ``shared``'s parts are finished: spinning up to ``spin`` cycles
    (``KERNEL_SPIN_S``) in compiled code, then asleep on it (helping first, with ``args``)."""
    if not (spin and _spin.parts_done(shared.state, len(shared.parts), spin)):
        shared.ready(*args)


def _large_by_images(src, groups, cs, cd, per_item, threads, blocks, live, offs, transform, tiles_h, tiles_w,
                     pt, pl, b, y):
    """``_convolve_large``'s items of ``per_item`` whole images; the blocks' filters transformed
    first, in parts the items share (in the 3x3 path's kept buffer, which grows to the larger of
    the two). Returns whether a value written is inf or NaN."""
    dtype, itemsize = src.dtype, src.itemsize
    ups = kept("winograd-kernel", (groups, len(blocks), 16, _gemm.packed_size(cd, cs)), dtype)
    panels = -(-cd // _gemm.MR)
    step = max(1, -(-panels // KERNEL_PARTS))
    filters = Shared([(g, 0, cd, block, p0, min(panels, p0 + step), ups[g, block]) for g in range(groups)
                      for block in range(len(blocks)) for p0 in range(0, panels, step)], transform)
    bad = []
    spin = _spin.ticks(KERNEL_SPIN_S)

    def work(n0, n1, scratch):
        filters.help()
        keep_apart()
        r0, r1 = n0 * tiles_h, n1 * tiles_h
        p = (r1 - r0) * tiles_w
        v = buffer(scratch, "v", (16 * cs * p,), dtype)
        mm = buffer(scratch, "m", (16 * cd * p,), dtype)
        s, wk = _transform_work(scratch, 2, r1 - r0, tiles_w, dtype)
        tiles = buffer(scratch, "tiles", (_gemm.batch_scratch(cd, itemsize),), dtype)
        for g in range(groups):
            _k._input_transform(src, g * cs, cs, r0, r1, tiles_h, tiles_w, pt, pl, 2, v, s, wk, 0, cs, _NO_ORDER)
            _await(filters, spin)
            keep_apart()
            _k.large_products(ups[g], live, offs, v, mm, cs, cd, p, tiles)
            if _k._output_transform(mm, g * cd, cd, r0, r1, tiles_h, tiles_w, 2, b, y, wk, _NO_ORDER):
                bad.append(True)

    map_items(list(chunks(src.shape[0], per_item)), work, threads, shared=(filters,))
    return bool(bad)


def _large_by_channels(src, groups, cs, cd, kb, threads, blocks, live, offs, transform, tiles_h, tiles_w,
                       pt, pl, b, y):
    """``_convolve_large`` with the threads splitting the output channels (blocks of ``kb``) over
    the whole batch, as ``_by_channels`` does: the input transformed in parts the blocks share,
    each block transforming its own filters meanwhile. Returns whether a value written is inf or
    NaN."""
    dtype, itemsize = src.dtype, src.itemsize
    rows = src.shape[0] * tiles_h
    p = rows * tiles_w
    vs = kept("winograd-input", (groups, 16 * cs * p), dtype)
    parts = -(-threads // groups)

    def inputs_part(g, c0, c1, scratch):
        s, wk = _transform_work(scratch, 2, rows, tiles_w, dtype)
        _k._input_transform(src, g * cs + c0, c1 - c0, 0, rows, tiles_h, tiles_w, pt, pl, 2, vs[g], s, wk, c0, cs,
                            _NO_ORDER)

    inputs = Shared([(g, c0, c1) for g in range(groups) for c0, c1 in chunks(cs, -(-cs // parts))], inputs_part)
    bad = []
    spin = _spin.ticks(KERNEL_SPIN_S)

    def block(g, k0, scratch):
        inputs.help(scratch)
        keep_apart()
        k = min(kb, cd - k0)
        up = buffer(scratch, "up", (len(blocks), 16, _gemm.packed_size(k, cs)), dtype)
        for i in range(len(blocks)):  # every 3x3 block's filters of these output channels
            transform(g, k0, k0 + k, i, 0, -(-k // _gemm.MR), up[i])
        _await(inputs, spin, scratch)
        keep_apart()
        mm = buffer(scratch, "m", (16 * k * p,), dtype)
        _k.large_products(up, live, offs, vs[g], mm, cs, k, p,
                          buffer(scratch, "tiles", (_gemm.batch_scratch(k, itemsize),), dtype))
        wk = _transform_work(scratch, 2, rows, tiles_w, dtype)[1]
        if _k._output_transform(mm, g * cd + k0, k, 0, rows, tiles_h, tiles_w, 2, b, y, wk, _NO_ORDER):
            bad.append(True)

    map_items([(g, k0) for g in range(groups) for k0 in range(0, cd, kb)], block, threads, shared=(inputs,))
    return bool(bad)


# ----------------------------------------------------------------- 3-D, each plane transformed once

# A 3-D call's work items in ``_convolve_3d`` are an image's blocks of tile rows in one plane, so
# their products are as wide as a plane's tiles; the lift's 2-D call takes every plane of the batch
# together. Two threads, float32, ms native / lift, medians of 7 interleaved rounds (an Intel Xeon,
# 2026-12-04), forward, input gradient: 1x3x3 (where the lift copies each plane once too) N=8 64 ->
# 256 8x8x8 11.5 / 4.07, 13.0 / 4.56; N=4 64 -> 64 8x16x16 5.02 / 2.84, 5.08 / 2.96; N=2 8x28x28
# 5.26 / 4.19, 5.14 / 4.11; 8x56x56 16.8 / 14.4, 16.5 / 14.5; 3x3x3 N=4 C=64 8x8x8 (16 F(2x2) tiles
# a plane) 4.32 / 2.36, 4.35 / 2.34; but N=2 8x16x16 (64) 3.72 / 4.11, 3.78 / 3.51; 8x28x28 8.80 /
# 10.0, 8.96 / 8.92; C=32 16x56x56 21.2 / 28.8, 21.5 / 29.1 (the weight gradient alike either way).
NATIVE_3D_MIN_TILES = 64  # F(2x2) tiles in an output plane


def _native_3d(geom, itemsize) -> bool:
    """Whether a 3-D call runs :func:`_convolve_3d`: one group, no dilation, a kernel 2+ deep,
    planes of ``NATIVE_3D_MIN_TILES`` tiles or more, and the transposed copies of input and output
    within half the memory budget (else the lift's slices)."""
    if geom.ndim != 3 or geom.groups != 1 or geom.dilation != (1, 1, 1) or geom.kernel[0] == 1:
        return False
    if geom.kernel[1:] != (3, 3):
        return False  # (larger planes' kernels through the lift's 2-D calls: ``_convolve_large``)
    if geom.tiles(2) < NATIVE_3D_MIN_TILES:
        return False
    planes = (math.prod(geom.x_shape) + math.prod(geom.y_shape)) * itemsize
    return 2 * planes <= call_budget(geom, itemsize)


def _depth_taps(q, kd, d_in):
    """``(t0, t1)``: the depth taps of an output plane whose first tap reads input plane ``q`` that
    read planes inside ``0 .. d_in`` (t0 == t1: none)."""
    t0, t1 = min(kd, max(0, -q)), max(0, min(kd, d_in - q))
    return (t0, max(t0, t1))


def _convolve_3d(src, w, geom, bias, transposed):
    """A 3-D convolution with a ``kD x 3 x 3`` kernel as F(m x m, 3x3) tiles in each plane.

    Through the lift, output plane ``od`` stacks its ``kD`` input planes as channels, so each input
    plane is copied and transformed ``kD`` times. Here each plane is transformed once: a work item
    (an image, a block of tile rows) transforms the block in every input plane into
    ``V[xi, plane, c, tile]`` (zero planes for the depth padding), where the ``kD`` planes of an
    output plane are adjacent; its products are then ``U[xi] @ V[xi, od*sd : od*sd + kD]`` with K =
    kD*C, the stacked kernel's order. ``transposed``: the input gradient (unit depth stride), the
    same with the flipped, channel-swapped kernel. None when a result is inf or NaN."""
    n, (kd,) = src.shape[0], geom.kernel[:1]
    if transposed:  # gx[c] = sum over co and taps of the flipped w[co, c] * gy[co], padded 2 - p
        cs, cd, (d_in,), (d_out,) = geom.c_out, geom.c_in, geom.out_size[:1], geom.in_size[:1]
        pd, sd = kd - 1 - geom.padding[0][0], 1
        pt, pl = 2 - geom.padding[1][0], 2 - geom.padding[2][0]
        out_hw = geom.in_size[1:]
        wk = w.transpose(1, 0, 2, 3, 4)[:, :, ::-1, ::-1, ::-1]  # (c, co, kd, ky, kx)
    else:
        cs, cd, (d_in,), (d_out,) = geom.c_in, geom.c_out, geom.in_size[:1], geom.out_size[:1]
        pd, sd = geom.padding[0][0], geom.stride[0]
        pt, pl = geom.padding[1][0], geom.padding[2][0]
        out_hw = geom.out_size[1:]
        wk = w
    m = _tile(as_2d(geom), get_precision(), src.itemsize, split=False)  # the forward's planes decide, as in 2-D
    a2, dtype = (m + 2) ** 2, src.dtype
    tiles_h, tiles_w = -(-out_hw[0] // m), -(-out_hw[1] // m)
    q0 = -pd  # the first input plane read (negative: padding); V's plane j is input plane q0 + j
    depth = (d_out - 1) * sd + kd
    # the stacked kernel (cd, kD*cs, 3, 3) in (kd, c) order, transformed: u[0, xi, cd, kD*cs], or
    # packed for numba's register tiles where the 2-D call would run its products there
    wst = np.ascontiguousarray(wk.transpose(0, 2, 1, 3, 4)).reshape(1, cd, kd * cs, 3, 3)
    tiles = _on_tiles(cs, cd)
    u, up = _kernel_arrays(1, a2, cd, kd * cs, dtype, tiles)
    per_tile = a2 * (depth * cs + cs + cd) * src.itemsize
    size, threads = _plan(tiles_h, tiles_w, per_tile, u.nbytes + up.nbytes + 2 * (
        src.nbytes + n * cd * d_out * out_hw[0] * out_hw[1] * src.itemsize), geom, src.itemsize,
        _k.transform_scratch(m, 1, 1, src.itemsize)[0], panel=_gemm.tile_cols(src.itemsize) if tiles else 1)
    # planes first, channels second: each plane (d, C, H, W) is a 2-D batch item of the transforms
    xt = np.empty((n, d_in, cs, *src.shape[3:]), dtype)
    yt = np.empty((n, d_out, cd, *out_hw), dtype)
    b = np.empty(0, dtype) if bias is None else bias
    bad = []
    kernel = _kernel_work(wst, m, u, up, tiles, threads)
    # Each output plane's products run over its taps that read input planes, not the depth's zero
    # planes (a third of them at 2 planes deep, a sixth at 4): the same sums without their zero
    # terms. Not with a non-finite weight: its products with the padding are NaN in the reference.
    taps = [_depth_taps(od * sd + q0, kd, d_in) for od in range(d_out)]
    if any(t != (0, kd) for t in taps) and not all_finite(np.ascontiguousarray(w)):
        taps = [(0, kd)] * d_out

    def planes_in(i, d, scratch):
        xt[i, d] = src[i, :, d]

    def work(i, r0, r1, scratch):
        kernel.help()
        nt = (r1 - r0) * tiles_w
        v3 = buffer(scratch, "v3", (a2, depth, cs, nt), dtype)
        v = buffer(scratch, "v", (a2 * cs * nt,), dtype)
        mm = buffer(scratch, "m", (a2 * cd * nt,), dtype)
        s, wk = _transform_work(scratch, m, r1 - r0, tiles_w, dtype)
        for j in range(depth):
            q = q0 + j
            if 0 <= q < d_in:
                _k._input_transform(xt[i], 0, cs, q * tiles_h + r0, q * tiles_h + r1, tiles_h, tiles_w, pt, pl,
                                    m, v, s, wk, 0, cs, _NO_ORDER)
                v3[:, j] = v.reshape(a2, cs, nt)
            else:
                v3[:, j] = 0
        kernel.ready()
        for od in range(d_out):
            t0, t1 = taps[od]
            if t0 == t1:  # every tap in the padding: the bias alone
                mm[:a2 * cd * nt] = 0
            elif tiles:  # B[xi] = v3[xi, od*sd : od*sd + kD], depth*cs*nt apart; steps of taps t0 .. t1
                _gemm.batch_steps(up[0], cd, v3.reshape(-1)[od * sd * cs * nt:], mm, kd * cs, nt,
                                  buffer(scratch, "tiles", (_gemm.batch_scratch(cd, src.itemsize),), dtype),
                                  depth * cs * nt, t0 * cs, t1 * cs)
            else:
                np.matmul(u[0][:, :, t0 * cs:t1 * cs], v3[:, od * sd + t0:od * sd + t1].reshape(a2, (t1 - t0) * cs, nt),
                          out=mm.reshape(a2, cd, nt))
            if _k._output_transform(mm, 0, cd, od * tiles_h + r0, od * tiles_h + r1, tiles_h, tiles_w, m, b,
                                    yt[i], wk, _NO_ORDER):
                bad.append(True)

    def planes_out(i, d, scratch):
        out[i, :, d] = yt[i, d]

    items = [(i, r0, min(tiles_h, r0 + size)) for i in range(n) for r0 in range(0, tiles_h, size)]
    with np.errstate(invalid="ignore", over="ignore"):
        map_items([(i, d) for i in range(n) for d in range(d_in)], planes_in, threads)
        map_items(items, work, threads, shared=(kernel,))
    if bad:
        return None
    out = np.empty((n, cd, d_out, *out_hw), dtype)
    map_items([(i, d) for i in range(n) for d in range(d_out)], planes_out, threads)
    return out


# Compiled in the background for "auto", as the numba backend's kernels are (see its `ready`): a
# first call never waits seconds for Numba. Fork safety comes from the numba backend's fork hooks,
# which hold Numba's compiler lock over a fork, whichever thread compiles.
_ready: set[str] = set()
_compiling: dict[str, threading.Thread] = {}
_state = threading.Lock()


def ready(dtype) -> bool:
    """True once this backend's kernels for ``dtype`` are compiled or loaded, and the numba
    backend's (its weight gradient); until then each call starts what is missing in the background."""
    from . import numba_jit

    name = numba_jit.dtype_name(dtype)
    if name not in _ready:
        numba_jit.start_compile(_compile_in_background, name, "winograd", _compiling, _state)
    return numba_jit.ready(dtype) and name in _ready


def _compile_in_background(name):
    from . import numba_jit

    if numba_jit.stopping():  # the process is exiting (``numba_jit._stop_compiles``)
        return
    with contextlib.suppress(Exception):  # a broken install: auto keeps to the other backends
        _transforms(np.dtype(name))


def _after_fork_in_child():
    global _state
    _state = threading.Lock()
    _compiling.clear()  # the parent's compile thread did not come along


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _transforms(dtype):
    """Compile (or load) the transforms for ``dtype``: a forward and an input gradient with
    NumPy's products (2 channels) and with the register tiles' (``_gemm.MR`` channels: a first
    call at 64 channels waited 1.7 s for them without), and one weight gradient of its own; they
    compile F(2x2) and F(4x4) alike (m is an argument)."""
    from ..geometry import Geometry

    if _gemm.TILES:  # kernels past 3x3 (``_convolve_large``), on the register tiles only
        c = _gemm.MR
        large = Geometry.from_args((1, c, 5, 5), (c, c, 5, 5), padding=2)
        x, w = np.ones(large.x_shape, dtype), np.ones(large.w_shape, dtype)
        grad_input(forward(x, w, large, np.ones(c, dtype)), w, large)
        counted_call(_grad_weight_large)(np.ones(large.y_shape, dtype), x, large)  # (the blocks' adjoint)
    for c in sorted({2, _gemm.MR}):
        geom = Geometry.from_args((1, c, 5, 5), (c, c, 3, 3), padding=1)
        x, w = np.ones(geom.x_shape, dtype), np.ones(geom.w_shape, dtype)
        grad_input(forward(x, w, geom, np.ones(c, dtype)), w, geom)
    if _weight_on_tiles():  # the weight gradient's own kernels, which grad_weight runs from WEIGHT_MIN_CHANNELS
        counted_call(_grad_weight_2d)(np.ones(geom.y_shape, dtype), x, geom)
    _ready.add(np.dtype(dtype).name)
    return geom, x, w


def warmup(dtype):
    """Compile (or load from the on-disk cache) the kernels for ``dtype``, the numba backend's
    weight gradient included."""
    geom, x, w = _transforms(np.dtype(dtype))
    grad_weight(np.ones(geom.y_shape, dtype), x, geom)
