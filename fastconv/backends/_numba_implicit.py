"""Numba kernels of the ``numba`` backend that run stride-1 convolutions as implicit matrix
products on ``_numba_gemm``'s register tiles, reading the zero-padded input where it lies instead
of a copy per tap: the weight gradient of layers with channels enough to fill the tiles, the
forward of layers with few input channels (``fw_part``), and the forward and weight gradient of
grouped layers of few channels a group (``gfw_part``, ``ggw_part``, at the end).

The weight gradient:

    gw[co, ci, ky, kx] = sum over n, oy, ox of gy[n, co, oy, ox] * xp[n, ci, oy + ky*dh, ox + kx*dw]

with ``xp`` the zero-padded input, of ``Hp x Wp`` pixels. Number the "wide" pixels
``q = oy * Wp + ox`` with ``ox`` running on past the output's width to ``Wp``: then the factor of tap
``(ky, kx)`` and channel ``ci`` is one run of xp's plane, from ``ky*dh*Wp + kx*dw`` on, so A's rows
(tap, channel) are the padded input where it lies, one plane apart from a channel to the next. B is
gy transposed into panels of ``nr`` output channels, zero at the wide pixels past the output's
width (what A's rows hold there is multiplied by zero). C is gw transposed, rows (tap, channel),
copied into gw when the sum is done. Against the packed kernels' dot products (sums in memory),
the sums stay in registers; the price is ``Wp / ow`` times the multiply-adds (9/7 at 7x7 outputs,
16/14 at 14x14) and a padded copy of each image.

Each slot takes a range of panels (output channels): it pads every image itself (a copy, cheap
against the product) and packs only its panels of gy, so slots share nothing and every sum runs in
the same order whatever the thread count. Small images go in groups (``GROUP_PIXELS``), whose tile
calls keep one tile of C in L1; a large image's wide pixels split into blocks of up to ``KC``.

Measured (2 threads, float32, N=32, 3x3, padded; each call after 50 ms idle): 7x7 C=512 30-33 ms
against the packed kernels' 56-66, 14x14 C=256 22-28 against 39-43, 28x28 C=128 25-28 against
30-33, 56x56 C=64 27-29 against 27-31.

The forward: rows are output channels, columns an output row's pixels, and the reduction runs over
(input channel, ky, kx), all of it in one call of the tile's ``planes`` variant, whose B steps run
along a kernel row (``dil_w`` apart), wrap to the next (``dil_h`` padded rows on) and, every kh
rows, to the next channel's plane, so the tile's sums stay in registers throughout. A tile is 32
(float32) pixels wide; a row's last pixels take a tile no wider than they need (``_row_tile``): a
half, or on Zen 4 three quarters (``_numba_gemm.NARROW``), so an output row of 24 loses no
columns there (8 of 32 elsewhere: ``FW_MAX_WASTE``). Two threads, float32 unless named, forward
time with the narrower last tiles over without, 11 rounds interleaved in one process (2026-12-03,
Zen 4): MNIST's first layer 0.77 (float64 0.80), N=32 3 -> 64 channels 26x26 (24 wide) 0.80,
N=16 3 -> 64 56x56 (54 wide) 0.91; one thread, MNIST 0.67-0.82.
Measured (2 threads, float32, same run as torch): MNIST's first layer (N=64, 1 -> 32 channels,
5x5, 28x28) 1.2-1.4x torch's time, against 1.9-2.0x for the packed kernels; N=32, 3 -> 64
channels, 3x3, 32x32: 0.6-0.9x, against 1.5x. On small images (7x7 to 14x14), whose rows would
fill a quarter to a half of a tile, the columns are the image's wide pixels instead (as the weight
gradient's), and up to 64 input channels (``FW_WIDE_MAX_CHANNELS``); on Zen 4's half-width units
rows, and wide pixels that waste little, of up to 256 (``FW_HALF_WIDTH_MAX_CHANNELS``). The input
gradient of a stride-1 layer is such a forward too (of gy, by the flipped kernel: ``numba_jit.grad_input``), with
gy's channels as its input channels: two threads, float32, N=32, 3x3 padded, gx ms against the
packed kernels' (11 interleaved rounds): 7x7 C=16 0.38 / 0.45, C=32 0.61 / 0.87, C=64 1.43 / 1.56;
10x10 C=48 1.60 / 2.25; 14x14 C=32 1.19 / 1.59, C=64 4.73 / 5.40. Its sums run in another order
than the packed kernels', and it takes a call by the image's size: ``fastconv.dask`` runs a chunk
on the whole array's kernel (``numba_jit.whole_choices``).
"""

import functools
import math

import numpy as np

from .._threads import call_threads
from . import _numba_gemm as _gemm
from ._numba_gemm import (
    KC,
    MR,
    NARROW,
    _nr,
    _tile_planes,
    _tile_planes_half,
    _tile_planes_narrow,
    _tile_planes_ragged,
    _tile_planes_ragged_half,
    _tile_rows,
    _tile_rows_half,
    _tile_taps,
    _tile_taps_ragged,
    _tile_taps_ragged_half,
    _whole_rows,
    tile_cols,
)
from ._numba_kernels import _JIT, _aligned, njit

U = np.uint64  # offsets into flat arrays

# Input channels from which this beats the packed kernels' weight gradient, and output channels
# (two panels of AVX-512's: one per thread) from which it runs on two threads. With AVX2 (an AVX2
# Zen 3, 2 threads, float32, weight gradient alone, ms, medians of 9 interleaved rounds, these tiles
# / the packed kernels, 2026-12-03): N=16 32 -> 64 channels 5x5 28x28 19.5 / 37.9; N=8 C=64 3x3
# 56x56 17.4 / 29.0; N=32 C=128 28x28 68 / 120; C=64 7x7 4.8 / 11.5.
MIN_CHANNELS = 32
MIN_OUT_CHANNELS = 64
# A unit of work: images whose wide pixels (up to GROUP_PIXELS) run through every tile of C before
# the next unit, and whose B (gy's panels) stays in L2 (GROUP_BYTES); a larger unit loads and stores
# each tile of C fewer times. Two threads, N=32, 7x7 C=512: 256 pixels 33.1 ms, 1024 29.9.
GROUP_PIXELS = 1024
GROUP_BYTES = 512 * 2**10


def applies(geom) -> bool:
    """Whether a 2-D weight gradient takes this kernel: stride 1, one group, channels enough each
    side, a non-empty output, on a CPU with register tiles (``_numba_gemm.TILES``)."""
    return (_gemm.TILES and geom.n * geom.oh * geom.ow > 0 and (geom.sh, geom.sw) == (1, 1) and geom.groups == 1
            and geom.c_in >= MIN_CHANNELS and geom.c_out >= MIN_OUT_CHANNELS)


# The forward: input channels up to which its tiles beat the packed kernels, and the most columns
# a tile may compute past an output row's end, as a fraction of the row (a 24-pixel row takes one
# 32-column tile: 1/3), counted in whole tiles even where a row's last tile is narrower
# (``_row_tile``), which leaves the choice of kernel the same on every CPU
FW_MAX_CHANNELS = 8
FW_MAX_WASTE = 1 / 3
# ... and on small images, whose rows fill few of a tile's columns, over wide pixels: up to this
# many input channels, where the wide pixels waste at most FW_WIDE_MAX_WASTE of the tiles' columns
# (7x7, padded: 61 wide pixels for 49, in two tiles of 32). Two threads, float32, N=32, 3x3 padded,
# forward ms, wide pixels / the kernels that ran before (packed) / winograd, 11 interleaved rounds:
# 7x7 C=16 0.26 / 0.30 / 0.52, C=32 0.44 / 0.69 / 0.66, C=48 0.75 / 1.30 / 0.86, C=64 1.12 / 1.31 /
# 1.25 (N=8 0.47 / 0.61 / 0.67), C=128 4.67 / 3.90 / 4.12; 10x10 C=32 0.72 / 1.00 / 0.77, C=64 2.11 /
# 3.13 / 1.57; 14x14 C=32 1.17 / 1.52 / 1.45, C=64 3.93 / 5.04 / 3.22. (auto keeps winograd from 64
# channels: ``winograd.TILED_MIN_CHANNELS``.)
FW_WIDE_MAX_CHANNELS = 64
FW_WIDE_MAX_WASTE = 0.5
# The forward on AVX2's tiles (an AVX2 Zen 3, 2 threads, float32, time over torch's, medians of 9
# interleaved rounds, these tiles / the packed kernels that ran there before, 2026-12-03): MNIST's
# first layer 0.89 / 1.35; N=32 3 -> 64 channels 32x32 0.56 / 0.94, 8 -> 32 0.94 / 1.46; N=16 3 ->
# 64 56x56 0.74 / 0.92; wide pixels, N=32 padded 3x3, min ms: 7x7 C=16 0.20 / 0.24, C=32 0.46 /
# 0.63, C=64 1.32 / 2.05; 10x10 C=32 0.60 / 0.88, C=64 1.89 / 2.93.
# Without AVX-512 the limits above (drawn on a Zen 4, whose packed kernels run 512-bit vectors)
# keep too many calls on the packed kernels. On AVX2 the wide pixels won at every channel count and
# up to 0.92 of their columns wasted, and rows of up to 32 input channels won too (an AVX2 Zen 3, 2
# threads, float32, forward ms, these tiles / the packed kernels, 7 interleaved rounds,
# 2026-12-04). Wide pixels: 3x3 N=32 C=64 5x5 0.97 / 1.96, C=96 1.76 / 3.65, C=128 7x7 5.6 / 8.6,
# C=192 13.1 / 22.4, N=8 C=256 14x14 15.4 / 16.6; 5x5 N=32 C=256 7x7 79 / 133, N=16 C=96 4.6 /
# 7.1, C=128 14x14 25.7 / 36.7, N=64 C=48 7x7 6.4 / 10.7, N=32 C=64 9x9 7.9 / 12.9, N=4 C=160
# 10x10 5.1 / 7.1; 7x7 N=16 32 -> 64 10x10 5.1 / 6.9. Rows: 5x5 N=8 32 -> 64 28x28 6.0 / 7.8, N=8
# 16 -> 32 56x56 6.4 / 7.5; 7x7 N=8 C=32 28x28 6.5 / 8.1; 3x3 N=16 C=32 28x28 2.19 / 2.43; 1-D k5
# N=16 C=32 11.2 / 13.0 (16 channels over 56x56 tie: 3.52 / 3.38). Rows of 64 channels and more
# won on 5x5 and 7x7 kernels (0.86-0.88) but lost on 3x3 ones (1.0-1.3, 9 rounds; 3x3x3 with 64
# channels 1.32): left to the packed kernels. In float64 (the same runs, 7 rounds) the wide pixels
# won up to 128 channels (3x3 N=32 C=64 5x5 2.63 / 6.37, C=128 7x7 22.0 / 23.8 and the input
# gradient 19.1 / 25.4; 5x5 N=16 C=96 7x7 16.2 / 24.1) but not at 256 (14x14: 69.8 / 62.9), and
# rows of 32 channels lost (3x3 N=16 28x28 11.8 / 6.1). Per bytes an element: ``(rows' channels,
# wide pixels' channels, wide pixels' waste)``.
FW_NARROW_LIMITS = {4: (32, math.inf, 1.0), 8: (FW_MAX_CHANNELS, 128, 1.0)}
# With AVX-512 on full-width units (an Intel Xeon, where the packed kernels' 512-bit sums in memory
# are no faster than Zen 4's but the tiles twice as fast) rows won up to 128 input channels, in
# float32, where the batch has an image for every thread (the slots split the images): 2 threads,
# forward ms these tiles / what ran before (packed, or the patches), medians of 5 rounds
# interleaved in one process (2026-12-04): 3x3 N=8 16 -> 32 56x56 0.97 / 1.72, 48 -> 48 3.83 /
# 5.73, N=16 64 -> 128 28x28 5.67 / 9.69, N=8 128 -> 64 56x56 15.8 / 20.8, 12 -> 64 1.31 / 2.12;
# 5x5 N=16 16 -> 32 28x28 1.19 / 1.90, 32 -> 64 4.29 / 7.11, N=8 32 -> 32 80x80 8.0 / 13.5, 64 ->
# 64 28x28 3.92 / 7.12, 96 -> 96 9.63 / 11.91 (patches), 128 -> 128 16.6 / 18.3 (patches); 7x7 N=8
# 40 -> 80 28x28 6.30 / 8.71 (patches), N=16 96 -> 96 20x20 23.6 / 25.4 (patches); 1-D k5 N=64 32
# -> 48 over 1024 (0.58x), N=16 128 -> 128 9.7 / 14.3, k7 N=8 32 -> 256 over 256 0.84 / 1.54, k9
# N=16 64 -> 64 3.71 / 6.06; N=2 16 -> 32 112x112 0.80 / 1.40, N=3 32 -> 32 56x56 5x5 2.37 /
# 2.63. Lost: 256 channels (5x5 N=8 14x14 21.1 / 17.6, patches) and one image on two threads (N=1
# 32 -> 96 80x80 5x5 6.48 / 5.17, 16 -> 32 112x112 0.76 / 0.74). The input gradients that run as
# this forward gained alike (0.44-0.66 of their time). The wide pixels' limits stay AVX-512's
# (``"auto"`` reads them: ``numba_jit.small_images``); float64 was not measured.
FW_FULL_WIDTH_MAX_CHANNELS = 128
# On half-width units (Zen 4) the limits above were drawn on 3x3 kernels over small images, where
# the wide pixels waste a quarter of their columns and more. Measured there on other layers (2
# threads, ms the kernel chosen before (packed or patches) / this forward, forward and input
# gradient, medians of per-round ratios over 7 interleaved rounds, family 25 model 17, 2026-12-06),
# float32, by rows: 5x5 N=4 256 -> 256 56x56 0.84 / 0.84, N=32 128 28x28 0.92 / 0.93, N=16 128
# 56x56 0.80, N=16 64 -> 128 56x56 0.88, N=32 C=64 28x28 0.89 / 0.88, N=32 C=32 0.85 / 0.84, N=8 C=64
# 112x112 0.91 / 0.91, N=32 96 -> 128 28x28 0.92; 7x7 N=16 C=64 28x28 0.79 / 0.78, C=128 0.81-0.84 /
# 0.84, N=8 C=256 0.92, N=4 C=96 0.82 / 0.84; 3x3 N=32 C=64 56x56 0.87 / 0.87, N=8 C=128 0.88 / 0.87,
# N=32 32 -> 256 0.88 / 0.81, N=16 C=256 28x28 (dilated 2) 0.91 / 0.97, N=32 C=128 28x28 0.99; 1-D
# k9 N=32 C=256 over 1024 0.93 / 0.94, k5 C=128 over 4096 0.98 / 0.98; by wide pixels, where they
# waste little of the tiles' columns (``_wide_columns``): 7x1 (no padding across) 17x17 (0.05
# wasted) N=32 C=128 0.90 / 0.88, C=160 0.89, N=16 C=192 0.89; 3x3 35x35 (0.06) N=16 C=96 0.87 /
# 0.87, N=2 C=256 0.88 / 0.85; 5x5 35x35 (0.12) N=16 C=192 0.88 / 0.89; but 3x3 N=32 C=256 14x14
# (0.14) 1.01, C=512 1.02, 17x17 (0.16) 1.02: the line between.
# float64: 7x7 N=16 C=64 28x28 0.72 / 0.74, 5x5 N=16 C=128 0.87 / 0.81, 7x1 N=32 C=128 17x17 0.89 /
# 0.76, 3x3 N=16 C=96 35x35 0.78 / 0.82. Not taken: 512 input channels (5x5 N=4 28x28 1.00 / 1.00),
# wide pixels wasting more (1x7 17x17 C=128, 0.38: 1.10; 5x5 14x14 C=128, 0.27: 1.02; 7x7 17x17,
# 0.33: 1.03 / 0.99), one image on two threads (5x5 N=1 C=128 56x56 1.37 / 1.35, C=64 112x112 1.31
# / 1.49; 7x1 N=1 C=192 1.12 / 1.10; N=2 on two threads 0.99 / 0.99).
FW_HALF_WIDTH_MAX_CHANNELS = 256
FW_HALF_WIDTH_WIDE_MAX_WASTE = 0.13


def _fw_limits(itemsize, images=0):
    """``(FW_MAX_CHANNELS, FW_WIDE_MAX_CHANNELS, FW_WIDE_MAX_WASTE)`` with AVX-512's tiles (rows up
    to ``FW_FULL_WIDTH_MAX_CHANNELS`` on full-width units in float32, and up to
    ``FW_HALF_WIDTH_MAX_CHANNELS`` on half-width ones, over at least as many ``images`` as
    threads), else ``FW_NARROW_LIMITS`` for the dtype's ``itemsize``."""
    if not _gemm.WIDE:
        return FW_NARROW_LIMITS[itemsize]
    if images >= max(2, call_threads()):
        if _gemm.FULL_WIDTH and itemsize == 4:
            return FW_FULL_WIDTH_MAX_CHANNELS, FW_WIDE_MAX_CHANNELS, FW_WIDE_MAX_WASTE
        if _gemm.NARROW:
            return FW_HALF_WIDTH_MAX_CHANNELS, FW_WIDE_MAX_CHANNELS, FW_WIDE_MAX_WASTE
    return FW_MAX_CHANNELS, FW_WIDE_MAX_CHANNELS, FW_WIDE_MAX_WASTE


# 1-D signals (one row an image) on full-width units take the rows past ``FW_FULL_WIDTH_MAX_CHANNELS``
# (drawn on 2-D layers, where the patches ran beside them): the other kernel there is the packed
# loops, sums in memory. Two threads, float32, forward and input gradient ms packed / these tiles,
# the better of two interleaved runs each (an Intel Xeon, family 6 model 167, 2026-12-07): k3 N=16
# 192 -> 128 over 1024 15.7 / 10.9 and 10.7 / 10.2, 512 -> 512 over 512 73.7 / 49.4 and 76.3 /
# 52.4, N=8 1024 -> 1024 over 256 79.8 / 51.8 and 95.0 / 66.5, d2 N=16 256 -> 256 over 1024 29.4 /
# 26.2; k5 N=16 256 -> 256 over 1024 60.5 / 41.1 and 59.4 / 42.4, N=64 384 -> 384 over 128 89.2 /
# 43.7, N=4 384 -> 48 over 128 0.92 / 0.51, N=2 256 -> 256 over 1024 7.09 / 5.06; k7 N=16 512 -> 64
# over 512 23.7 / 14.7; k9 N=32 256 -> 256 over 4096 876 / 761. But where an image's input passes
# half of L2 (``FW_FULL_WIDTH_SIGNAL_BYTES``) they lost: k3 N=4 512 -> 512 over 2048 70.6 / 86.1,
# N=2 37.7 / 42.3, N=8 512 -> 1024 over 1024 140 / 152 (input gradient 152 / 180), N=4 192 -> 384
# over 4096 45.9 / 49.2, N=8 192 -> 768 189 / 199; k5 N=3 256 -> 256 over 2048 21.2 / 26.2.
FW_FULL_WIDTH_SIGNAL_BYTES = 2**20


def _signal_rows(geom, itemsize) -> bool:
    """Whether a call of one-row images (a 1-D signal's) takes ``fw_part``'s rows whatever its
    channels: on full-width AVX-512 in float32, an image for every thread, each image's input
    within ``FW_FULL_WIDTH_SIGNAL_BYTES``."""
    return (_gemm.WIDE and _gemm.FULL_WIDTH and itemsize == 4 and geom.in_size[0] == 1 and geom.kernel[0] == 1
            and geom.n >= max(2, call_threads())
            and geom.c_in * geom.in_size[-1] * itemsize <= FW_FULL_WIDTH_SIGNAL_BYTES)


def forward_applies(geom, itemsize, by_size=None) -> bool:
    """Whether a 2-D forward call takes ``fw_part``: stride 1, one group, a tile's rows of output
    channels or more, on a CPU with register tiles (``_numba_gemm.TILES``: AVX-512, or AVX2 and
    FMA, whose tiles won too: measured above); few input channels and output rows that fill their
    tiles well, or (``forward_wide``) up to ``FW_WIDE_MAX_CHANNELS`` over small images. With
    ``by_size`` (a bool) that answer replaces the one by channels and image size: a chunk of a
    larger array takes the kernel where the whole array's call does (``numba_jit.choosing_as``)."""
    if not (_gemm.TILES and geom.n * geom.oh * geom.ow > 0 and (geom.sh, geom.sw) == (1, 1) and geom.groups == 1
            and geom.c_out >= MR):
        return False
    if by_size is not None:
        return by_size
    rows_channels, wide_channels, _ = _fw_limits(itemsize, geom.n)
    by_rows, wide = _fw_fill(geom, itemsize)
    if by_rows:
        return geom.c_in <= rows_channels or _signal_rows(geom, itemsize)
    if wide and geom.c_in <= wide_channels:
        return True
    # half-width units' rows limit (``FW_HALF_WIDTH_MAX_CHANNELS``) over wide pixels that waste little
    return (_gemm.NARROW and geom.c_in <= rows_channels
            and _wide_columns(geom, itemsize) <= (1 + FW_HALF_WIDTH_WIDE_MAX_WASTE) * geom.oh * geom.ow)


def forward_wide(geom, itemsize) -> bool:
    """Whether ``fw_part`` runs over wide pixels: where output rows fill their tiles poorly and the
    wide pixels well (``_fw_fill``)."""
    by_rows, wide = _fw_fill(geom, itemsize)
    return wide and not by_rows


def _fw_fill(geom, itemsize):
    """Whether an image's output fills ``fw_part``'s tiles well ``(by rows, by wide pixels)``: at most
    ``FW_MAX_WASTE`` and the wide pixels' waste (``_fw_limits``) of their columns past it, a
    half-width tile counted half. Counted in AVX-512's tiles on every CPU, so that the tiles' width
    moves no call from one kernel to another: AVX2's tiles, half as wide, waste at most as many
    columns."""
    nr = _gemm.WIDE_ROW_BYTES // itemsize
    oh, ow = geom.oh, geom.ow
    return (oh * -(-ow // nr) * nr <= (1 + FW_MAX_WASTE) * oh * ow,
            _wide_columns(geom, itemsize) <= (1 + _fw_limits(itemsize)[2]) * oh * ow)


def _wide_columns(geom, itemsize) -> int:
    """The tiles' columns over an image's wide pixels (AVX-512's tiles; a half-width last tile
    counted half)."""
    nr = _gemm.WIDE_ROW_BYTES // itemsize
    k_img = (geom.oh - 1) * (geom.ow + (geom.kw - 1) * geom.dil_w) + geom.ow
    whole, left = divmod(k_img, nr)
    return whole * nr + (0 if not left else nr // 2 if 2 * left <= nr else nr)


class Plan:
    """How a call on ``geom`` in ``nslots`` slots cuts its work: ``args()`` are ``gw_part``'s
    after the arrays and the hyper-parameters: ``wp`` and ``plane`` (the padded width and pixels),
    ``k_img`` (an image's wide pixels), ``group`` (images per unit), ``kc`` (wide pixels per block),
    ``cpad`` (input channels rounded up to whole tiles)."""

    def __init__(self, geom, itemsize, nslots):
        hp, self.wp = geom.padded_size  # at stride 1: the output's size plus the kernel's reach
        self.plane = hp * self.wp
        self.k_img = (geom.oh - 1) * self.wp + geom.ow
        nblk = -(-self.k_img // KC)
        self.kc = -(-self.k_img // nblk)
        self.cpad = _whole_rows(geom.c_in)
        self.nr = tile_cols(itemsize)
        self.taps, self.c_out = geom.kh * geom.kw, geom.c_out
        share = _slot_size(self.c_out, self.taps, 1, self.kc, self.cpad, self.plane, nslots, self.nr)[0]
        b_image = self.kc * share * self.nr * itemsize
        self.group = max(1, min(geom.n, GROUP_PIXELS // self.k_img, GROUP_BYTES // b_image))

    def args(self):
        return self.wp, self.plane, self.k_img, self.group, self.kc, self.cpad

    def scratch(self, nslots):
        """Float and int64 workspace elements of ``gw_part`` for ``nslots`` slots."""
        _, *sizes = _slot_size(self.c_out, self.taps, self.group, self.kc, self.cpad, self.plane, nslots, self.nr)
        return nslots * sum(sizes), nslots


@njit(inline="always", **_JIT)
def _slot_size(c_out, taps, group, kc, cpad, plane, nslots, nr):  # pragma: no cover
    """``(panels per slot, x's padded copy, B, C)``: a slot's share and scratch, in elements."""
    share = ((c_out + nr - 1) // nr + nslots - 1) // nslots
    ws = share * nr
    return share, _aligned(cpad * group * plane), _aligned(group * kc * ws), _aligned(taps * cpad * ws)


@njit(**_JIT)
def _pad_images(x, n0, g, pt, pl, cpad, wp, plane, xl):  # pragma: no cover
    """xl[c, j] = image n0 + j of x, channel c, zero-padded to a plane of ``wp`` columns (zero
    channels from x's channel count to ``cpad``)."""
    c_in, ih, iw = x.shape[1], x.shape[2], x.shape[3]
    # (loops over views indexed from 0: with an offset in the index, Numba's loops were not
    # vectorised, 4-6x slower; a slice's assignment costs more on small planes)
    for c in range(cpad):
        for j in range(g):
            dst = xl[(c * g + j) * plane:(c * g + j + 1) * plane]
            for i in range(plane):
                dst[i] = 0
            if c >= c_in:
                continue
            for iy in range(ih):
                row = dst[(pt + iy) * wp + pl:(pt + iy) * wp + pl + iw]
                src = x[n0 + j, c, iy]
                for ix in range(iw):
                    row[ix] = src[ix]


@njit(**_JIT)
def _pack_gy(gy3, n0, g, p0, kc, jp0, npan, wp, ow, bp):  # pragma: no cover
    """bp[(j*npan + jl)*kc*nr + kk*nr + q] = gy3[n0 + j, (jp0 + jl)*nr + q] at wide pixel p0 + kk,
    zero past the output's width (``ow``) or gy's channels. A pixel's ``nr`` values are written
    together (from as many rows of gy): twice as fast as a channel's run at a stride."""
    c_out = gy3.shape[1]
    nr = _nr(bp)
    for j in range(g):
        for jl in range(npan):
            base = (j * npan + jl) * kc * nr
            cq = min(nr, c_out - (jp0 + jl) * nr)
            src = gy3[n0 + j, (jp0 + jl) * nr:(jp0 + jl) * nr + cq]
            pos = p0
            while pos < p0 + kc:  # a run of one wide row: the output's pixels, then zeros
                oy = pos // wp
                end = min(p0 + kc, (oy + 1) * wp)
                valid = min(end, oy * wp + ow)
                for t in range(pos, valid):
                    o = base + (t - p0) * nr
                    pix = oy * ow + t - oy * wp
                    for q in range(cq):
                        bp[o + q] = src[q, pix]
                    for q in range(cq, nr):
                        bp[o + q] = 0
                for t in range(max(pos, valid), end):
                    o = base + (t - p0) * nr
                    for q in range(nr):
                        bp[o + q] = 0
                pos = end


@njit(**_JIT)
def gw_part(gy3, x, gw2, kh, kw, dil_h, dil_w, pt, pl, wp, plane, k_img, group, kc, cpad, nthreads, fws, iws,
            slot):  # pragma: no cover
    """This slot's panels of gw (see the module's docstring); ``iws[slot]`` = 1 when a value is
    inf or NaN (the caller then recomputes by the packed kernels: what A's rows hold past the
    output's width is not multiplied by zero when it is inf)."""
    n_img, c_in, ow = x.shape[0], x.shape[1], wp - (kw - 1) * dil_w
    c_out = gy3.shape[1]
    nr = _nr(fws)
    taps = kh * kw
    share, xsize, bsize, csize = _slot_size(c_out, taps, group, kc, cpad, plane, nthreads, nr)
    ws = share * nr
    npan_all = (c_out + nr - 1) // nr
    jp0 = min(slot * share, npan_all)
    npan = min(share, npan_all - jp0)
    iws[slot] = 0
    if npan == 0:
        return
    own = fws[slot * (xsize + bsize + csize):]
    xl, bp, ct = own[:xsize], own[xsize:xsize + bsize], own[xsize + bsize:xsize + bsize + csize]
    first = True
    for n0 in range(0, n_img, group):
        g = min(group, n_img - n0)
        _pad_images(x, n0, g, pt, pl, cpad, wp, plane, xl)
        lda = g * plane  # from one channel's row to the next's
        for p0 in range(0, k_img, kc):
            kb = min(kc, k_img - p0)
            _pack_gy(gy3, n0, g, p0, kb, jp0, npan, wp, ow, bp)
            for cb in range(0, cpad, MR):  # a tile's rows of channels: their planes stay in L1 over the taps
                for tap in range(taps):
                    toff = (tap // kw) * dil_h * wp + (tap % kw) * dil_w + p0
                    for jl in range(npan):
                        c0 = (tap * cpad + cb) * ws + jl * nr
                        for j in range(g):
                            add = 0 if first and j == 0 else 1
                            _tile_rows(xl, cb * lda + j * plane + toff, lda, bp, (j * npan + jl) * kb * nr, nr,
                                       ct, c0, ws, kb, add, bp, 0, 0)
            first = False
    bad = False
    for c in range(c_in):  # C (rows tap, channel) into gw (rows output channel): in L1, 9 rows of C
        for co in range(jp0 * nr, min((jp0 + npan) * nr, c_out)):
            for tap in range(taps):
                v = ct[(tap * cpad + c) * ws + co - jp0 * nr]
                gw2[co, c * taps + tap] = v
                bad |= v - v != 0
    if bad:
        iws[slot] = 1


# -- forward: rows are output channels, columns an output row's pixels, written into y ------------


@functools.lru_cache(maxsize=1024)  # every call asks, and the Numba helpers below cost ~1 us from Python
def fw_scratch(c_out, c_in, taps, plane, nslots, itemsize, wide_px=0):
    """Float workspace elements of ``fw_part``: A packed and the bias padded to whole tiles (shared),
    and per slot an image's padded planes (with a tile's columns of slack past the last: the last
    tile reads past its image), a scratch tile and, over ``wide_px`` wide pixels, an image's output
    in wide pixels."""
    mp = _whole_rows(c_out)
    slot = sum(_fw_slot(c_in, plane, tile_cols(itemsize), mp * wide_px))
    return _aligned(mp * c_in * taps) + _aligned(mp) + nslots * slot, 0


@njit(inline="always", **_JIT)
def _fw_slot(c_in, plane, nr, wide):  # pragma: no cover
    """A slot's padded planes, its scratch tile and its wide output, in elements."""
    return _aligned(c_in * plane + 2 * nr), _aligned(MR * nr), _aligned(wide)


@njit(inline="always", **_JIT)
def _fw_views(w, plane, wide, nthreads, fws, slot):  # pragma: no cover
    """``fw_part``'s workspace, laid out as ``fw_scratch`` sizes it: A packed and the padded bias
    (shared), and slot ``slot``'s padded planes, scratch tile and wide output (``wide`` elements)."""
    c_out, c_in, kh, kw = w.shape
    mp = _whole_rows(c_out)
    asize = _aligned(mp * c_in * kh * kw)
    xsize, tsize, wsize = _fw_slot(c_in, plane, _nr(fws), wide)
    own = asize + _aligned(mp) + slot * (xsize + tsize + wsize)
    tile = own + xsize
    return (fws[:asize], fws[asize:asize + mp], fws[own:tile], fws[tile:tile + MR * _nr(fws)],
            fws[tile + tsize:tile + tsize + wide])


@njit(inline="always", **_JIT)
def _phase_block(phase_taps, p, mp, c_in, kh, kw):  # pragma: no cover
    """``(A's offset, first channel, channels, taps down, taps across)`` of stride phase ``p``'s
    block (``phase_taps[p]``: its taps down and across, and the taps of the phases before it; the
    phases' channels stacked in order, an equal share each, w's taps past a phase's its zeros, left
    out); with none (None), the whole kernel."""
    if phase_taps is None:
        return 0, 0, c_in, kh, kw
    cp = c_in // phase_taps.shape[0]
    return mp * cp * phase_taps[p, 2], p * cp, cp, phase_taps[p, 0], phase_taps[p, 1]


@njit(**_JIT)
def fw_prepare(x, w, bias, y3, dil_h, dil_w, pt, pl, wp, plane, wide, phase_taps, nthreads, fws,
               iws):  # pragma: no cover
    """A (w, rows output channels, steps (ci, ky, kx)) packed in panels of MR rows,
    ``ap[ip*K*MR + k*MR + r]``, zero rows past w's; the bias padded to whole panels. With
    ``phase_taps`` (stride phases stacked as channels, ``_phase_block``; None: none): each
    phase's block of its own taps, one after the other."""
    c_out, c_in, kh, kw = w.shape
    mp = _whole_rows(c_out)
    ap, bias_p, _, _, _ = _fw_views(w, plane, 0, nthreads, fws, 0)
    for p in range(1 if phase_taps is None else phase_taps.shape[0]):
        off, c0, cp, th, tw = _phase_block(phase_taps, p, mp, c_in, kh, kw)
        k = cp * th * tw
        for ip in range(mp // MR):
            for ci in range(cp):
                for ky in range(th):
                    for kx in range(tw):
                        kk = (ci * th + ky) * tw + kx
                        for r in range(MR):
                            i = ip * MR + r
                            ap[off + (ip * k + kk) * MR + r] = w[i, c0 + ci, ky, kx] if i < c_out else 0
    for i in range(mp):
        bias_p[i] = bias[i] if i < bias.size else 0


@njit(**_JIT)
def fw_part(x, w, bias, y3, dil_h, dil_w, pt, pl, wp, plane, wide, phase_taps, nthreads, fws, iws,
            slot):  # pragma: no cover
    """This slot's share of the images: y3[n, co, oy*ow + ox] = sum over (ci, ky, kx) of
    w[co, ci, ky, kx] * xp[n, ci, (oy + ky*dil_h)*wp + ox + kx*dil_w] + bias[co], a tile of MR
    output channels x ``nr`` pixels at a time, every (ci, ky, kx) step in one call of the tile's
    ``planes`` variant: B is the padded planes where they lie, from the tile's first pixel on.

    The tile's pixels are either ``nr`` of one output row (``wide`` 0), written straight into y:
    where the row ends within the tile, its last columns spill into the next row of the same
    channels, which a later tile overwrites (rows go in order); only a tile that would pass the
    plane's end (its last row's), and a panel of fewer than MR channels, go through the scratch
    tile, whose spill would land in other channels. Or (``wide`` 1: small images, whose rows would
    fill few of a tile's columns) ``nr`` wide pixels ``q = oy*wp + ox``, running on over the
    padding's columns from one row to the next, into the slot's wide output, whose pixels inside the
    output are copied into y once the image is done. With ``phase_taps`` (x's channels stride
    phases: ``numba_jit._phase_taps``), a tile runs a call per phase over its own taps, each after
    the first adding to the sums (the bias with the first)."""
    n_img, c_in = x.shape[0], x.shape[1]
    c_out, _, kh, kw = w.shape
    ow = wp - (kw - 1) * dil_w
    pix = y3.shape[2]
    oh = pix // ow
    k_img = (oh - 1) * wp + ow  # wide pixels up to the output's last
    mp = _whole_rows(c_out)
    nr = _nr(fws)
    k = c_in * kh * kw
    ap, bias_p, xl, ct, yw = _fw_views(w, plane, mp * k_img if wide else 0, nthreads, fws, slot)
    yf = y3.reshape(-1)
    share = (n_img + nthreads - 1) // nthreads
    n0 = min(slot * share, n_img)
    n1 = min(n0 + share, n_img)
    addb = 1 if bias.size else 0
    for i in range(c_in * plane, xl.size):
        xl[i] = 0
    for n in range(n0, n1):
        _pad_images(x, n, 1, pt, pl, c_in, wp, plane, xl)
        for ip in range(mp // MR):
            i0 = ip * MR
            rows = min(MR, c_out - i0)
            if wide:
                for q0 in range(0, k_img, nr):
                    cols = min(nr, k_img - q0)
                    c0 = i0 * k_img + q0
                    # without phases (None) Numba compiles this branch alone: with the loop beside
                    # it, the tiles of few steps ran 3-7 % slower
                    if phase_taps is None:
                        _fw_wide_tile(ap, ip * k * MR, xl, q0, dil_w, yw, c0, k_img, k, 0, bias_p, i0, addb, kw,
                                      dil_h * wp, kh, plane, cols, nr)
                    else:
                        for p in range(phase_taps.shape[0]):  # (the phases' sums added in C)
                            off, cf, cp, th, tw = _phase_block(phase_taps, p, mp, c_in, kh, kw)
                            add, ab = (1, 0) if p > 0 else (0, addb)
                            _fw_wide_tile(ap, off + ip * cp * th * tw * MR, xl, cf * plane + q0, dil_w, yw, c0, k_img,
                                          cp * th * tw, add, bias_p, i0, ab, tw, dil_h * wp, th, plane, cols, nr)
                continue
            for oy in range(oh):
                for ox0 in range(0, ow, nr):
                    width = _row_tile(nr, ow - ox0)
                    direct = rows == MR and oy * ow + ox0 + width <= pix  # (a spill within the plane)
                    dst, c0, ldc = (yf, (n * c_out + i0) * pix + oy * ow + ox0, pix) if direct else (ct, 0, nr)
                    if phase_taps is None:
                        _fw_row_tile(ap, ip * k * MR, xl, oy * wp + ox0, dil_w, dst, c0, ldc, k, 0, bias_p, i0, addb,
                                     kw, dil_h * wp, kh, plane, width, nr)
                    else:
                        for p in range(phase_taps.shape[0]):
                            off, cf, cp, th, tw = _phase_block(phase_taps, p, mp, c_in, kh, kw)
                            add, ab = (1, 0) if p > 0 else (0, addb)
                            _fw_row_tile(ap, off + ip * cp * th * tw * MR, xl, cf * plane + oy * wp + ox0, dil_w, dst,
                                         c0, ldc, cp * th * tw, add, bias_p, i0, ab, tw, dil_h * wp, th, plane, width,
                                         nr)
                    if not direct:
                        cols = min(width, ow - ox0)
                        for r in range(rows):
                            out = y3[n, i0 + r, oy * ow + ox0:oy * ow + ox0 + cols]  # (a view: see _pad_images)
                            tile = ct[r * nr:r * nr + cols]
                            for j in range(cols):
                                out[j] = tile[j]
        if wide:  # the image's output pixels out of its wide ones
            for co in range(c_out):
                for oy in range(oh):  # (views indexed from 0: see _pad_images)
                    out = yf[(n * c_out + co) * pix + oy * ow:(n * c_out + co) * pix + (oy + 1) * ow]
                    src = yw[co * k_img + oy * wp:co * k_img + oy * wp + ow]
                    for ox in range(ow):
                        out[ox] = src[ox]


@njit(inline="always", **_JIT)
def _fw_wide_tile(ap, a0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane, cols,
                  nr):  # pragma: no cover
    """``fw_part``'s tile of ``cols`` wide pixels (at most ``nr``): the whole tile, or a masked
    one of at most half or of the first ``cols`` columns."""
    if cols == nr:
        _tile_planes(ap, a0, 0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane)
    elif 2 * cols <= nr:
        _tile_planes_ragged_half(ap, a0, 0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane,
                                 cols)
    else:
        _tile_planes_ragged(ap, a0, 0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane, cols)


@njit(inline="always", **_JIT)
def _fw_row_tile(ap, a0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane, width,
                 nr):  # pragma: no cover
    """``fw_part``'s tile of ``width`` columns of an output row (``_row_tile``): whole, half or
    three quarters of ``nr``."""
    if width == nr:
        _tile_planes(ap, a0, 0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane)
    elif 2 * width == nr:
        _tile_planes_half(ap, a0, 0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane)
    else:
        _tile_planes_narrow(ap, a0, 0, xl, b0, ldb, c, c0, ldc, k, add, bias_p, i0, addb, kw, ldr, kh, plane)


@njit(inline="always", **_JIT)
def _row_tile(nr, left):  # pragma: no cover
    """The columns of the tile that computes an output row's ``left`` pixels from its last tile's
    first: a whole one, or past the row's end no wider than needed (a half, or with ``NARROW``
    three quarters); its columns past the row's end spill into the next row as a whole tile's do."""
    if 2 * left <= nr:
        return nr // 2
    if NARROW and 4 * left <= 3 * nr:
        return 3 * nr // 4
    return nr


@njit(**_JIT)
def fw_serial(x, w, bias, y3, dil_h, dil_w, pt, pl, wp, plane, wide, phase_taps, nthreads, fws,
              iws):  # pragma: no cover
    """A one-slot call's ``fw_prepare`` and ``fw_part`` in one dispatch."""
    fw_prepare(x, w, bias, y3, dil_h, dil_w, pt, pl, wp, plane, wide, phase_taps, 1, fws, iws)
    fw_part(x, w, bias, y3, dil_h, dil_w, pt, pl, wp, plane, wide, phase_taps, 1, fws, iws, 0)


# -- the forward of grouped layers of few channels a group (ResNeXt's) ---------------------------
#
# Each (image, group) is a small stride-1 convolution of ``cg`` input and ``kg`` output channels:
# too few for the packed kernels' 4x4 dot products, whose sums live in memory. Here a tile of MR
# output channels runs over ``nr`` pixels of one output row with every (ky, ci, kx) step in one
# call, its sums in registers throughout: the group's padded input is laid out with its channels
# inside each row, ``xl[(yy*cg + ci)*wp + xx]``, so that step ``(ky*cg + ci)*kw + kx`` reads row
# ``ky*cg + ci`` past the tile's, ``wp`` apart (the ``taps`` tile's ``ldr``). A row's ragged end
# runs on the masked tiles, straight into y.


@njit(inline="always", **_JIT)
def _copy_group(xf, xl, n, g, cg, c_in, ih, iw, pt, pl, hp, wp, cstride, rstride):  # pragma: no cover
    """``xl[c*cstride + (pt + iy)*rstride + pl + ix] = x[n, g*cg + c, iy, ix]`` (x flat as ``xf``)
    for a group's channels, the pixels inside the ``hp x wp`` padded plane (cropped where a padding
    is negative); the padding is left as it is. Unsigned offsets, as in _numba_patches: a signed
    index is tested for a negative value on every access, and with views per row the copy took as
    long as the tiles."""
    iy0, iy1 = max(0, -pt), min(ih, hp - pt)
    ix0, ix1 = max(0, -pl), min(iw, wp - pl)
    for c in range(cg):
        src0 = U(((n * c_in + g * cg + c) * ih + iy0) * iw + ix0)
        dst0 = U(c * cstride + (pt + iy0) * rstride + pl + ix0)
        for iy in range(U(iy1 - iy0)):
            src, dst = src0 + iy * U(iw), dst0 + iy * U(rstride)
            for j in range(U(ix1 - ix0)):
                xl[dst + j] = xf[src + j]


def grouped_applies(sh, sw, dil_h, groups, c_in, c_out) -> bool:
    """Whether a stride-1 grouped 2-D forward (or stride-1 input gradient) takes ``gfw_part``: up
    to ``GROUPED_MAX_CHANNELS`` input channels a group, output channels a group in whole tiles of
    MR, undilated rows (the layout above), on a CPU with AVX-512."""
    cg, kg = c_in // groups, c_out // groups
    return (_gemm.WIDE and groups > 1 and sh == sw == 1 and dil_h == 1 and cg <= GROUPED_MAX_CHANNELS
            and kg % MR == 0 and kg <= GROUPED_MAX_CHANNELS)


GROUPED_MAX_CHANNELS = 32


def gfw_scratch(groups, kg, cg, taps, plane, reach, nslots, itemsize):
    """Float workspace elements of ``gfw_part``: A packed per group and the bias per group (shared),
    and per slot a group's padded input (with a tile's columns and the kernel's reach of slack past
    its end)."""
    nr = tile_cols(itemsize)
    return (_aligned(groups * kg * cg * taps) + _aligned(groups * kg)
            + nslots * _aligned(cg * plane + nr + reach)), 0


@njit(inline="always", **_JIT)
def _gfw_views(w, groups, plane, reach, nthreads, fws, slot):  # pragma: no cover
    """``gfw_part``'s workspace, laid out as ``gfw_scratch`` sizes it."""
    c_out, cg, kh, kw = w.shape
    asize = _aligned(c_out * cg * kh * kw)
    xsize = _aligned(cg * plane + _nr(fws) + reach)
    own = asize + _aligned(c_out) + slot * xsize
    return fws[:asize], fws[asize:asize + c_out], fws[own:own + xsize]


@njit(**_JIT)
def gfw_prepare(x, w, bias, y3, groups, dil_w, pt, pl, wp, plane, nthreads, fws, iws):  # pragma: no cover
    """A packed per panel of MR output channels, steps (ky, ci, kx):
    ``ap[(ip*K + (ky*cg + ci)*kw + kx)*MR + r] = w[ip*MR + r, ci, ky, kx]`` (the panels of every
    group in turn); the bias, zero where there is none."""
    c_out, cg, kh, kw = w.shape
    k = cg * kh * kw
    ap, bias_p, _ = _gfw_views(w, groups, plane, (kw - 1) * dil_w, nthreads, fws, 0)
    for ip in range(c_out // MR):
        for ky in range(kh):
            for ci in range(cg):
                for kx in range(kw):
                    kk = (ky * cg + ci) * kw + kx
                    for r in range(MR):
                        ap[(ip * k + kk) * MR + r] = w[ip * MR + r, ci, ky, kx]
    for i in range(c_out):
        bias_p[i] = bias[i] if bias.size else 0


@njit(**_JIT)
def gfw_part(x, w, bias, y3, groups, dil_w, pt, pl, wp, plane, nthreads, fws, iws, slot):  # pragma: no cover
    """This slot's share of the (image, group) pairs: y3[n, g*kg + co, oy*ow + ox] = sum over (ky,
    ci, kx) of w[g*kg + co, ci, ky, kx] * xp[n, g*cg + ci, oy + ky, ox + kx*dil_w] + bias, a tile
    of MR output channels x ``nr`` pixels of an output row at a time, written into y."""
    n_img, c_in, ih, iw = x.shape
    c_out, cg, kh, kw = w.shape
    kg = c_out // groups
    ow = wp - (kw - 1) * dil_w
    pix = y3.shape[2]
    oh = pix // ow
    hp = plane // wp
    k = cg * kh * kw
    nr = _nr(fws)
    ap, bias_p, xl = _gfw_views(w, groups, plane, (kw - 1) * dil_w, nthreads, fws, slot)
    yf = y3.reshape(-1)
    xf = x.reshape(x.size)
    units = n_img * groups
    share = (units + nthreads - 1) // nthreads
    u0 = min(slot * share, units)
    u1 = min(u0 + share, units)
    addb = 1 if bias.size else 0
    for i in range(xl.size):  # the padding, and the slack, stay zero over the slot's units
        xl[i] = 0
    for u in range(u0, u1):
        n, g = u // groups, u % groups
        _copy_group(xf, xl, n, g, cg, c_in, ih, iw, pt, pl, hp, wp, wp, cg * wp)  # channels inside each row
        for ip in range(g * kg // MR, (g + 1) * kg // MR):
            for oy in range(oh):
                for ox0 in range(0, ow, nr):
                    cols = min(nr, ow - ox0)
                    b0 = oy * cg * wp + ox0
                    c0 = (n * c_out + ip * MR) * pix + oy * ow + ox0
                    if cols == nr:
                        _tile_taps(ap, ip * k * MR, 0, xl, b0, dil_w, yf, c0, pix, k, 0, bias_p, ip * MR, addb, kw, wp)
                    elif 2 * cols > nr:
                        _tile_taps_ragged(ap, ip * k * MR, 0, xl, b0, dil_w, yf, c0, pix, k, 0, bias_p, ip * MR, addb,
                                          kw, wp, cols)
                    else:
                        _tile_taps_ragged_half(ap, ip * k * MR, 0, xl, b0, dil_w, yf, c0, pix, k, 0, bias_p, ip * MR,
                                               addb, kw, wp, cols)


@njit(**_JIT)
def gfw_serial(x, w, bias, y3, groups, dil_w, pt, pl, wp, plane, nthreads, fws, iws):  # pragma: no cover
    """A one-slot call's ``gfw_prepare`` and ``gfw_part`` in one dispatch."""
    gfw_prepare(x, w, bias, y3, groups, dil_w, pt, pl, wp, plane, 1, fws, iws)
    gfw_part(x, w, bias, y3, groups, dil_w, pt, pl, wp, plane, 1, fws, iws, 0)


# -- grouped weight gradient: C's rows are (ky, input channel), its columns (kx, output channel) --
#
# A layer of few channels a group leaves the weight gradient's tiles mostly empty (8 output
# channels of a panel of 32). So the kernel's columns go into B as well: with gt holding gy
# transposed, ``gt[(q + kw - 1)*kg + co] = gy_wide[co, q]`` (wide pixels q as above, zero past the
# output's width and outside the image), B's row q read where it lies at ``gt[q*kg:]`` is
# ``gy_wide[co, q - kx]`` at column ``(kw - 1 - kx)*kg + co``: every tap's column for the
# output channels of one group, ``kg`` apart (the columns past ``kw*kg`` are computed and dropped).
# A's rows are the group's padded input planes where they lie, ``ky*dil_h`` padded rows on, so
#
#     C[(ky, ci), (kw - 1 - kx)*kg + co] = sum over q of xp[ci, q + ky*dil_h*wp + kx] * gy_wide[co, q]
#
# with the reduction over the oh*wp wide pixels of each image, nothing packed but gy's transpose.


def grouped_gw_applies(geom) -> bool:
    """Whether a 2-D weight gradient takes ``ggw_part``: stride 1, undilated columns (B's rows
    are gt's, ``kg`` apart), groups of up to ``GROUPED_MAX_CHANNELS`` input channels in whole
    tiles of MR and as many output channels at most, a non-empty output, AVX-512."""
    cg, kg = geom.c_in // geom.groups, geom.c_out // geom.groups
    return (_gemm.WIDE and geom.groups > 1 and (geom.sh, geom.sw) == (1, 1) and geom.dil_w == 1
            and geom.n * geom.oh * geom.ow > 0 and cg % MR == 0 and cg <= GROUPED_MAX_CHANNELS
            and kg <= GROUPED_MAX_CHANNELS)


@njit(inline="always", **_JIT)
def _ggw_sizes(groups, kg, cg, kh, kw, oh, wp, plane, nslots, nr):  # pragma: no cover
    """``(groups per slot, panels, x's padded copy, gt, C)`` of a slot of ``ggw_part``, in
    elements."""
    share = (groups + nslots - 1) // nslots
    panels = (kw * kg + nr - 1) // nr
    wide = oh * wp
    gsize = max((wide + kw - 1) * kg, (wide - 1) * kg + panels * nr)
    return share, panels, _aligned(cg * plane), _aligned(gsize), _aligned(share * kh * cg * panels * nr)


def ggw_scratch(groups, kg, cg, kh, kw, oh, wp, plane, nslots, itemsize):
    """Float and int64 workspace elements of ``ggw_part`` for ``nslots`` slots."""
    _, _, *sizes = _ggw_sizes(groups, kg, cg, kh, kw, oh, wp, plane, nslots, tile_cols(itemsize))
    return nslots * sum(sizes), nslots


@njit(**_JIT)
def ggw_part(gy3, x, gw2, groups, kh, kw, dil_h, pt, pl, wp, plane, nthreads, fws, iws, slot):  # pragma: no cover
    """This slot's share of the groups' weight gradients (see above), each summed over the images
    in order (the same bits on any number of threads); ``iws[slot]`` = 1 when a value is inf or
    NaN (the caller then recomputes by another kernel: A's values at the wide pixels are multiplied
    by zero, and inf * 0 is NaN). An image at a time, through all of the slot's groups: x and gy
    are read in order (a group at a time over the images read each a few KiB apart, and the copies
    took as long as the tiles), and C stays in L2 (a group's is 3 KiB at 8 channels)."""
    n_img, c_in, ih, iw = x.shape
    c_out, pix = gy3.shape[1], gy3.shape[2]
    cg, kg = c_in // groups, c_out // groups
    ow = wp - (kw - 1)
    oh = pix // ow
    hp = plane // wp
    wide = oh * wp
    taps = kh * kw
    nr = _nr(fws)
    share, panels, xsize, gsize, csize = _ggw_sizes(groups, kg, cg, kh, kw, oh, wp, plane, nthreads, nr)
    ws = panels * nr
    gc = kh * cg * ws  # a group's C
    own = fws[slot * (xsize + gsize + csize):]
    xl, gt, ct = own[:xsize], own[xsize:xsize + gsize], own[xsize + gsize:xsize + gsize + csize]
    g0 = min(slot * share, groups)
    g1 = min(g0 + share, groups)
    iws[slot] = 0
    for i in range(xl.size):  # the padding and gt's zeros stay over the slot's groups and images
        xl[i] = 0
    for i in range(gt.size):
        gt[i] = 0
    xf = x.reshape(x.size)
    gf = gy3.reshape(gy3.size)
    for n in range(n_img):
        add = 0 if n == 0 else 1
        for g in range(g0, g1):
            _copy_group(xf, xl, n, g, cg, c_in, ih, iw, pt, pl, hp, wp, plane, wp)  # a plane per channel
            for co in range(U(kg)):  # gy's group transposed: a pixel's kg values together
                src0 = U((n * c_out + g * kg) * pix) + co * U(pix)
                for oy in range(U(oh)):
                    src, dst = src0 + oy * U(ow), (oy * U(wp) + U(kw - 1)) * U(kg) + co
                    for ox in range(U(ow)):
                        gt[dst + ox * U(kg)] = gf[src + ox]
            cg0 = (g - g0) * gc
            for ky in range(kh):
                for cb in range(0, cg, MR):
                    for p in range(panels):
                        a0, b0, c0 = cb * plane + ky * dil_h * wp, p * nr, cg0 + (ky * cg + cb) * ws + p * nr
                        if 2 * (kw * kg - p * nr) > nr:
                            _tile_rows(xl, a0, plane, gt, b0, kg, ct, c0, ws, wide, add, gt, 0, 0)
                        else:  # a half panel's columns or fewer left (48 columns: a panel and a half)
                            _tile_rows_half(xl, a0, plane, gt, b0, kg, ct, c0, ws, wide, add, gt, 0, 0)
    bad = False
    for g in range(g0, g1):  # C into gw
        cg0 = (g - g0) * gc
        for ci in range(cg):
            for co in range(kg):
                for ky in range(kh):
                    for kx in range(kw):
                        v = ct[cg0 + (ky * cg + ci) * ws + (kw - 1 - kx) * kg + co]
                        gw2[g * kg + co, ci * taps + ky * kw + kx] = v
                        bad |= v - v != 0
    if bad:
        iws[slot] = 1
