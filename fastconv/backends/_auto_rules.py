"""``"auto"``'s table: which backend runs a call, by its geometry, dtype and pass.

Three tables of rows, each row a name, a condition on the geometry and the backends it prefers in
order: ``AUTO_RULES`` (every pass), ``AUTO_PASS_RULES`` (one pass, first) and ``AUTO_DTYPE_RULES``
(one dtype, before both); the registry (``fastconv.backends``: ``_order``, ``choose``) reads them
and ranks the candidates. Beside each condition's limits (the ``AUTO_*`` constants) stand the
measurements that drew them, with the machine, the method and the date: a row is added, or a limit
moved, once a measurement says where a backend wins. Nothing here times anything or loads a
backend except through ``_backend_says``, which asks a backend's own module about its kernels.
"""

from __future__ import annotations

import math

from ..geometry import Geometry
from ._lift import as_2d

# The "auto" table. Each row: a name, a condition on the geometry, and the backends it prefers in
# order. The first row whose condition holds ranks the candidates (the available backends whose
# `supports` accepts the call at the current precision and that are ready); candidates that the
# row does not name come next, in registry order, and "reference" last. So a new backend is
# considered everywhere with no edit here, and a row is added once a measurement says where it wins.
# Rows and constants from `fastconv bench --suite full --threads 2 --backends im2col,numba,torch
# --repeat 5`, two runs on the idle 2-core CI machine (2026-11-27 04:15 and 05:46; the table is in the
# README's `backend="auto"` section), and from 29 more shapes on 2026-12-01 18:20-18:30 (now
# `fastconv bench --suite rules --repeat 5`, 2 threads; README): numba's packed direct loops are up to 1.7x
# faster than im2col on most shapes, depthwise ones 1.2-2.4x. BLAS's blocking (im2col, winograd)
# wins where each image has few output pixels and many channels per group: at 49 pixels (7x7) from
# 64 channels on (r7-c64: im2col 2.98x torch's time, numba 4.13; r7-c32: numba 3.33, im2col 4.08),
# at 196 (14x14) from about 100 (r14-c128: winograd 1.82, numba 2.44; r14-c96 a tie; r14-c64 and
# ResNeXt's 32 groups of 8 or 16 channels: numba 1.55-2.00 against 2.45-4.22), so the line is
# drawn at ``AUTO_BLAS_CHANNELS`` x sqrt(pixels) channels. 1x1 kernels are plain matrix products:
# im2col on few pixels whatever the channels (r14-c64-1x1: 1.66 against numba's 3.08), and on more
# pixels past the same channel line (20x20 c256: 1.12 against 1.29; 28x28 c256 and c512 ties;
# 28x28 c64 numba, 1.11 against 1.41). Calls of at most 1M multiply-accumulates go to numba whatever
# their shape: im2col's dozen NumPy calls cost more than the arithmetic there.
AUTO_NUMBA_MAX_MACS = 1_000_000  # at or below: numba (single-r32-k3 has 221k; mnist-r28-k5 29M)
AUTO_IM2COL_BELOW_PIXELS = 256  # output pixels per image below which BLAS may run (r7: 49, r14: 196)
AUTO_BLAS_CHANNELS = 7  # ... given at least this x sqrt(pixels) input channels per group (49: 49, 196: 98)
# winograd transforms the whole weight on every call (C_out x C_in x 3x3 -> x 4x4, then streamed by
# its products), which a batch of few tiles does not repay: `fastconv bench --shape ... --backends
# winograd,im2col,torch --repeat 5` and `--repeat 7` (2 threads, float32, 2026-12-02, after im2col's
# weight gradient lost its transposed copy), im2col's time over winograd's, forward / backward, by
# F(2x2) tiles in the batch: 16 (one 7x7 image, C=512) 0.29 / 0.58; 25 (10x10, C=256) 0.59 / 0.29;
# 32 (two 7x7, C=512) 0.83 / 0.85; 36 (one 12x12, C=384) 0.37 / 0.43; 48 (three 8x8, C=256) 1.41 /
# 1.41, (three 7x7, C=128) 0.87 / 1.04; 49 (one 14x14, C=256) 0.99-1.37 / 0.69-0.91; 50 (two
# 10x10, C=256) 1.03-1.49 / 1.15-1.28, (two 9x9, C=512) 0.96 / 0.97; 64 (four 7x7, C=512) 1.36 /
# 1.10, (C=256) 1.52 / 1.35. So the line is at 48, where the runs turn to ties and winograd. With
# 1024 channels winograd's backward wins even on one 7x7 image (0.71 / 1.75): the rule stops at
# 512. Earlier runs, before that fix, agree on the forward: one 7x7 image of 128-448 channels
# 0.24-0.39, 8x8 and C=512 0.56.
AUTO_FEW_TILES = 48  # F(2x2) tiles over the batch (the 2-D call's images): below, im2col
AUTO_FEW_TILES_MAX_CHANNELS = 512  # per group, in and out
# winograd runs a dilated 3x3 call at stride 1 as undilated ones on its phases (every d-th pixel
# from each offset, stacked along the batch: ``backends/_phases.py``), which pays where the phases
# are not tiny and the channels many: `fastconv bench --shape ... --backends winograd,numba,torch
# --repeat 5` (2 threads, float32, 2026-12-02, two runs), forward / backward time over torch's,
# winograd against numba: 28x28 d2 N=32 C=128 0.80-0.85 / 0.94-1.03 against 1.29-1.40 /
# 1.18-1.20, N=8 C=256 0.83-0.85 / 0.84-0.93 against 1.29-1.39 / 1.17-1.18; 32x32 d4 N=8 C=256
# (phases 8x8) 0.99-1.01 / 0.94-1.08 against 1.65 / 1.40; 28x28 d6 N=4 C=512 (4-5) 1.65-1.86 /
# 1.95-2.16 against 1.99-2.29 / 1.94-2.09; 20x20 d5 N=8 C=128 (4) 2.34 / 2.26 against 2.36 /
# 2.49. Numba's below: 24x24 d8 C=128 (phases 3x3) 3.21 / 3.72 against 2.50 / 2.42, 32x32 d12
# C=256 (2-3) 1.65-1.72 / 3.24-3.91 against 1.66-1.75 / 2.52-2.56; 24x24 d3 C=96 (8x8) 1.75-2.02 /
# 2.03-2.16 against 1.57-1.71 / 1.69-1.79; 56x56 d2 C=64 1.16-1.20 / 1.08-1.45 against 1.21-1.34 /
# 1.06-1.17.
# Without AVX-512, numba's packed loops run 256-bit vectors like BLAS's, and BLAS's blocking wins
# where each output pixel reads few taps or the input at a stride: numba's time over im2col's, two
# threads, float32, forward / backward, medians of 5 interleaved rounds (`fastconv bench --suite
# rules --backends numba,im2col,winograd,auto,torch` and 14 more `--shape`s, an AVX2 Zen 3,
# 2026-12-04): 3x3 at stride 2, 48 to 256 channels, 1.19-2.62 / 1.31-2.11; 3x3x3 at stride 2 1.29
# / 1.43; 1-D k5 at stride 2 1.18 / 1.45; 1x1 from 48 channels 1.21-2.38 / 1.07-2.81 (28x28 64 ->
# 256 1.55 / 1.34); 3x1x1 1.27 / 1.19, 7x1 1.38 / 1.08, 1x7 1.20 / 1.13, 1-D k3 1.00-1.21 / 0.99-
# 1.07. Not with more taps at stride 1: 1-D k9 over 16000 0.78 / 0.73, 5x5 1.06-1.14 / 0.94-0.96,
# 7x7 0.96 / 1.09; nor with fewer channels: 3 -> 64 at 32x32 0.58 forward, 32-channel 5x5 0.95 /
# 0.80, ResNeXt's 8 or 16 a group 0.57-0.79.
AUTO_NARROW_BLAS_CHANNELS = 48
AUTO_PHASE_MIN = 4  # output pixels of a phase, down and across
AUTO_PHASE_CHANNELS = 128  # per group, in and out


def _pixels(geom: Geometry) -> int:
    """Output pixels per image of the 2-D call that runs (1-D and 3-D calls run as 2-D ones)."""
    return math.prod(as_2d(geom).out_size)


def _many_channels(geom: Geometry) -> bool:
    """At least ``AUTO_BLAS_CHANNELS`` x sqrt(output pixels) input channels per group: the call's
    own channels, not the lift's (which folds a 3-D kernel's depth into them): 3x3x3 at stride 2
    from 28x28 planes to 14x14 with 64 channels ran on numba in 0.78-0.89x im2col's time (three
    runs of the rules suite), where the lift's 192 channels would have picked im2col; 3x3x3 over
    14x14 planes with 128 channels stays on winograd (0.91-0.97x numba's time in those runs)."""
    return geom.c_in_g >= AUTO_BLAS_CHANNELS * math.sqrt(_pixels(geom))


def _blas_shaped(geom: Geometry) -> bool:
    """Few output pixels per image and many channels per group: BLAS's blocking wins there."""
    return _pixels(geom) < AUTO_IM2COL_BELOW_PIXELS and _many_channels(geom)


def _is_3x3s1(geom: Geometry) -> bool:
    flat = as_2d(geom)
    return (flat.kernel, flat.stride, flat.dilation) == ((3, 3), (1, 1), (1, 1))


def _tiles(geom: Geometry) -> int:
    """F(2x2) tiles over the batch of the 2-D call that runs."""
    flat = as_2d(geom)
    return flat.n * flat.tiles(2)


# winograd over numba's implicit forward on small images (``numba_jit.small_images``) where both
# sides have its 64 channels and the batch has this many F(2x2) tiles: its input transform runs
# with a vector's lanes of images (``winograd._lanes``) and its items wait for the transformed
# kernel spinning (``winograd.KERNEL_SPIN_S``). `fastconv bench --shape ... --backends
# numba,winograd,torch --pass both --repeat 7` (2 threads, float32, 2026-12-06, Zen 4), 64 -> 64
# channels, forward / backward time over torch's, winograd against numba: N=32 7x7 1.17 / 1.24
# against 1.67 / 1.44, 8x8 1.32 / 1.18 against 1.43 / 1.29, 9x9 1.42-1.62 / 1.26-1.27 against
# 1.48-1.54 / 1.28-1.31; N=64 7x7 1.10 / 1.29 against 1.63 / 1.39, 9x9 1.42 / 1.26 against 1.43 /
# 1.21; 64 -> 128 N=32 7x7 1.15 / 1.20 against 1.61 / 1.34, N=64 9x9 1.19 / 1.20 against 1.44 /
# 1.39. Below, numba's: N=16 (256 tiles at 7x7 and 8x8) 7x7 1.93 / 1.53 against 1.63 / 1.39, 8x8
# 1.71 / 1.28 against 1.45 / 1.20; N=32 6x6 (288) 1.81 / 1.31 against 1.75 / 1.37; N=8 7x7 2.40 /
# 1.60 against 1.59 / 1.39.
AUTO_SMALL_IMAGE_WINOGRAD_TILES = 512


def _winograd_small_images(geom: Geometry) -> bool:
    """Of the small-image calls numba's rows take, those winograd runs faster: 64 channels a side
    (``winograd.beats_direct``) over ``AUTO_SMALL_IMAGE_WINOGRAD_TILES`` F(2x2) tiles or more."""
    return _tiles(geom) >= AUTO_SMALL_IMAGE_WINOGRAD_TILES and _backend_says("winograd", "beats_direct", geom)


def _few_tiles(geom: Geometry) -> bool:
    """A 3x3 stride-1 call whose batch has fewer than ``AUTO_FEW_TILES`` F(2x2) tiles and at most
    ``AUTO_FEW_TILES_MAX_CHANNELS`` channels per group each side: what winograd's products save
    there does not repay its transform of the whole weight on every call."""
    flat = as_2d(geom)
    return (_is_3x3s1(geom) and _tiles(geom) < AUTO_FEW_TILES
            and max(flat.c_in_g, flat.c_out_g) <= AUTO_FEW_TILES_MAX_CHANNELS)


def _on_phases(geom: Geometry) -> bool:
    """A dilated 3x3 kernel at stride 1 with ``AUTO_PHASE_CHANNELS`` channels per group (in and
    out) and output phases of at least ``AUTO_PHASE_MIN`` pixels down and across."""
    flat = as_2d(geom)
    return ((flat.kernel, flat.stride) == ((3, 3), (1, 1)) and flat.dilation != (1, 1)
            and min(flat.c_in_g, flat.c_out_g) >= AUTO_PHASE_CHANNELS
            and all(o // d >= AUTO_PHASE_MIN for o, d in zip(flat.out_size, flat.dilation)))


def _blas_without_wide_tiles(geom: Geometry) -> bool:
    """Where numba runs no AVX-512 register tiles: at least ``AUTO_NARROW_BLAS_CHANNELS`` input
    channels per group (the call's own), and either a stride (but not few output channels for the
    taps in one group: ``_few_outputs_for_taps``) or a kernel of fewer than 9 taps (the 2-D call's:
    1x1, 3x1 or a 3x1x1 kernel's (D, H*W) view, 1x7, 1-D k3)."""
    flat = as_2d(geom)
    strided = max(flat.stride) > 1
    return (geom.c_in_g >= AUTO_NARROW_BLAS_CHANNELS and _without_wide_tiles(geom)
            and ((strided and not (geom.groups == 1 and _few_outputs_for_taps(geom)))
                 or math.prod(flat.kernel) < 9))


# Without AVX-512 numba's patches (strided layers of 32+ output channels a group, on AVX2's tiles)
# beat im2col's forward only over a long reduction (or with few output channels for the taps:
# ``_few_outputs_for_taps``): float32, each pass alone, 7 interleaved rounds,
# 2 threads, an AVX2 Zen 3 (2026-12-04), forward ms numba / im2col by input channels x taps: 3x3
# stride 2 N=64 96 -> 192 14x14 (864) 9.8 / 14.3, N=32 128 -> 256 28x28 (1152) 27.6 / 28.1, 256 ->
# 512 14x14 (2304) 31.3 / 32.9, N=8 192 -> 128 40x40 (1728) 11.8 / 12.7; 5x5 stride 2 N=8 128 -> 64
# 24x24 (3200) 6.05 / 7.10; 7x7 stride 2 N=2 128 -> 128 56x56 (6272) 22.2 / 28.1, N=16 48 -> 128
# 17x17 (2352) 6.3 / 6.6; but 64 -> 64 56x56 (576) 24.0 / 19.3, 64 -> 128 28x28 (576) 8.8 / 8.9, 32 ->
# 64 64x64 (288) 10.6 / 8.6, 1-D k5 64 -> 128 (320) 53.7 / 48.9. Their input gradient, the patches'
# adjoint, won on every 2-D and 3-D layer measured (``AUTO_PASS_RULES``).
AUTO_NARROW_PATCHES_REDUCTION = 768  # input channels a group x taps from which the forward takes them


def _on_patches(g: Geometry) -> bool:
    """numba's patches run the call (``numba_jit.patches``): with AVX-512 wherever they apply,
    without it on 2-D and 3-D calls of ``AUTO_NARROW_PATCHES_REDUCTION`` reduction steps."""
    if not _backend_says("numba", "patches", g):
        return False
    flat = as_2d(g)
    return not _without_wide_tiles(g) or (
        g.ndim >= 2 and flat.c_in_g * math.prod(flat.kernel) >= AUTO_NARROW_PATCHES_REDUCTION)


def _backend_says(name: str, question: str, geom: Geometry) -> bool:
    """Backend ``name``'s own answer to ``question`` (a function of the geometry in its module)
    for this call; False when it is not installed."""
    from . import _load, available  # the registry: loaded before any row is asked (it imports this module)

    module = _load(name) if name in available() else None
    return module is not None and getattr(module, question)(geom)


def _register_tiles(g: Geometry) -> bool:
    """Where numba runs its AVX-512 register tiles (``numba_jit.register_tiles``), on full-width
    units or half-width ones."""
    return _backend_says("numba", "register_tiles", g)


def _without_wide_tiles(g: Geometry) -> bool:
    """Where numba runs no AVX-512 register tiles (``_register_tiles``): rows measured on an AVX2
    CPU, where numba's loops run BLAS's vector width."""
    return not _register_tiles(g)


# Without AVX-512, numba's grouped kernels and its 3-D calls' lifted ones run packed loops, and
# winograd beats them from 32 channels a group (in and out) where dense 2-D layers of 32-63
# channels are near ties: float32, each pass alone, 7 interleaved rounds, 2 threads, an AVX2 Zen 3
# (2026-12-04), forward ms winograd / numba: grouped 32 a group N=16 28x28 6.9 / 7.4, N=16 14x14
# 3.7 / 4.8, 32x32 6.0 / 7.6; 40 a group 28x28 5.7 / 8.7; 48 a group 14x14 3.8 / 7.7, N=32 7x7 5.7 /
# 12.3; 56 a group 14x14 8.5 / 13.4 (24 a group ties: 7.9 / 7.5 and 5.2 / 5.7); 3x3x3 N=2 C=32
# 8x28x28 4.7 / 6.5, C=40 8x20x20 5.5 / 7.8, C=48 8x16x16 4.5 / 7.6 (the input gradient ties, C=24
# ties both), but 1x3x3 C=32 5.2 / 3.4; dense 2-D, 32 to 56 channels, numba faster on 5 of 9.
AUTO_GROUPED_WINOGRAD_CHANNELS = 32


# With AVX-512 on full-width units (an Intel Xeon, 2 threads, float32, each pass alone, medians of
# 5 interleaved rounds, 2026-12-04; ms numba / im2col (/ winograd), forward, input gradient, weight
# gradient), BLAS's products lose where they have few rows, the output channels of layers that
# ``_blas_shaped`` gives them: 3x3 d2 N=8 192 -> 8 14x14 0.57 / 1.55, 0.40 / 0.63, 0.95 / 1.57; 3x3
# N=8 256 -> 16 10x10 0.78 / 1.49, 0.45 / 0.81, 0.99 / 1.54, N=16 128 -> 8 7x7 0.33 / 0.86, 0.22 /
# 0.52, 0.48 / 0.98; 5x5 N=16 384 -> 24 10x10 6.78 / 11.65, 3.67 / 3.28, 8.14 / 13.15; (3x3 at
# stride 1 runs winograd there: 256 -> 32 14x14 1.74 / 2.42 / 1.25). And they win where the
# output channels are many beside the input's: 8x as many and 512 (forward, weight gradient) or
# 256 (input gradient): 7x7 N=64 3 -> 512 10x10 11.1 / 4.8, 16.7 / 7.0, 13.5 / 5.4; 3x3 N=16 16 ->
# 512 28x28 11.2 / 7.2, 15.5 / 8.5, 12.1 / 8.7; 7x7 N=4 32 -> 512 14x14 6.3 / 5.3, 11.5 / 6.5, 6.4 /
# 5.4; 1-D k7 s2 N=32 24 -> 512 over 256 5.7 / 3.6, 7.5 / 3.6, 5.2 / 3.8; 1-D k5 N=8 64 -> 512
# 14.5 / 10.1, 17.5 / 10.7, 11.5 / 11.5; 1-D k3 d2 N=1 8 -> 512 1.04 / 1.02, 5.17 / 0.97, 1.73 /
# 1.54; 3x3 N=1 48 -> 512 80x80 27.9 / 10.6 (/ 8.3), 18.2 / 10.8 (/ 10.4), 10.8 / 12.4. At 256 and
# 384 only the input gradient: 5x5 N=32 3 -> 256 28x28 3.72 / 6.71, 12.9 / 8.5, 8.8 / 8.6; 3x3 N=4
# 8 -> 256 56x56 1.76 / 2.30, 3.71 / 2.65, 2.87 / 3.15; 5x5 N=16 32 -> 256 14x14 5.21 / 5.61, 9.55 /
# 7.17, 5.40 / 5.94; N=16 16 -> 256 20x20 5.18 / 5.50, 8.81 / 7.82, 9.54 / 6.22; 1-D k7 N=8 16 ->
# 256 over 2048 5.33 / 4.46, 7.09 / 4.49, 5.25 / 5.58; 3x3 N=8 8 -> 384 28x28 1.42 / 1.81, 3.00 /
# 2.02, 2.58 / 2.34. (On Zen 4 and on AVX2 these rows were not measured: they do not apply there.
# Nor does the first on one image, nor at a stride on few pixels (below): 7x7 s2 N=16 256 -> 32
# 7x7, auto's forward 4.8x torch's time on BLAS, 7.1x on numba; 7x7 N=1 128 -> 32 14x14 backward
# 1.37x BLAS's time.) Since
# the implicit forward's rows of up to 128 channels there (``_numba_implicit._fw_limits``), numba's
# forward wins or ties on many of those many-output layers (ms numba / im2col: 3x3 N=16 16 -> 512
# 28x28 6.96 / 7.57, 14x14 2.17 / 2.56; 1-D k5 N=8 64 -> 512 9.63 / 10.40; 5x5 N=8 32 -> 512 28x28
# 18.0 / 18.7) but not on up to 4 input channels (7x7 3 -> 512 11.3 / 5.0) nor at a stride (1-D k7
# s2 24 -> 512 5.8 / 3.6): the forward's row holds there only.
AUTO_FEW_OUT_CHANNELS = 32  # per group: at most this many keep numba on full-width AVX-512
AUTO_MANY_OUT_RATIO = 8  # output channels over input channels, per group ...
AUTO_MANY_OUT_CHANNELS = 512  # ... and at least this many: BLAS's weight gradient (its forward: see the row)
AUTO_MANY_OUT_GRAD_INPUT_CHANNELS = 256  # ... the input gradient's
# At a stride (same machine, 2026-12-04, 7 interleaved rounds, ms numba / im2col, forward, input
# gradient, weight gradient) the first row holds from 49 output pixels an image: 3x3 s2 N=8 256 ->
# 16 28x28 2.13 / 3.09, 3.13 / 5.82, 3.17 / 3.29; 5x5 s2 N=16 192 -> 24 14x14 2.94 / 3.84, 3.77 /
# 7.15, 3.48 / 4.37; 7x7 s2 N=16 256 -> 16 14x14 5.60 / 9.21, 6.16 / 15.5, 6.74 / 9.42; 5x5 s2 N=16
# 256 -> 32 20x20 7.69 / 11.3, 8.82 / 14.4, 9.56 / 10.6; 3x3 s2 N=4 384 -> 24 28x28 and N=8 512 -> 8
# 14x14 alike; N=32 128 -> 32 14x14 (7x7 out) 2.24 / 2.24, 3.05 / 3.83, 2.48 / 2.33. Below, BLAS's
# forward and weight gradient won or tied: 6x6 out (N=16 256 -> 32 12x12) 1.88 / 1.91, 2.43 / 1.95;
# 4x4 (7x7 s2 N=16 256 -> 32 7x7) 5.76 / 4.57, 6.08 / 5.20. Their input gradients all ran faster on
# numba (3.29 / 8.69 at 4x4): the strided row of few output channels for the taps
# (``_strided_few_outputs``) holds there too.
AUTO_FEW_OUT_STRIDED_MIN_PIXELS = 49  # output pixels per image from which the few-output row holds at a stride
# The strided weight gradients that ``AUTO_PASS_RULES`` gives BLAS ran faster on numba there (ms
# numba / im2col): 7x7 s2 N=1 128 -> 8 112x112 7.72 / 22.9, -> 32 9.15 / 25.8, -> 128 32.4 / 43.2,
# N=4 64 -> 16 56x56 2.93 / 6.66; 1-D k7 s2 N=64 256 -> 8 (2 groups) 12.3 / 26.8, k5 s2 N=16 128 ->
# 32 3.96 / 4.82, -> 128 8.37 / 8.91; 3x3 s2 N=8 256 -> 64 28x28 4.08 / 4.64, -> 256 9.79 / 10.2, N=16
# 64 -> 32 56x56 6.52 / 7.06, -> 128 12.3 / 12.7; but not on one image of fewer patches, where
# BLAS's products are short: N=1 3x3 s2 192 -> 48 56x56 (1.4 Mi elements of patches) 3.09 / 2.06,
# -> 96 3.59 / 2.59, 128 -> 64 2.03 / 1.49, 256 -> 64 80x80 (3.7 Mi) 7.79 / 6.11, 96 -> 48 112x112
# (2.7 Mi) 5.85 / 4.03, 5x5 192 -> 48 56x56 (3.8 Mi) 6.19 / 5.24 (N=2 192 -> 48 3.09 / 3.08), while
# 7x7 128 -> 8 (19 Mi) and 3x3 384 -> 128 112x112 (11 Mi; backward 0.88x) ran faster on numba.
# (Since numba's packs gy's columns there, ``_numba_patches._swaps``, its pass alone, repeated, ran
# faster on those single images too, 192 -> 48 1.54 / 1.69 ms, but auto's backward, its passes in
# turn as a caller runs them, took 1.03-1.24x as long with it: the one-image line stays.)
AUTO_FULL_WIDTH_WEIGHT_PATCHES = 8 * 2**20  # elements of one image's patches: see the strided weight gradient's row
# On half-width units (Zen 4) numba's strided weight gradient, since its patches' register tiles,
# also beat BLAS's up to 256 input channels a group over two images or more (2 threads, float32, ms
# numba / im2col, medians of per-round ratios over 7-9 interleaved rounds, family 25 model 17,
# 2026-12-06): 3x3 s2 N=32 64 -> 128 28x28 0.87, 56x56 0.86, N=32 128 -> 256 56x56 0.88, 28x28 0.93,
# N=8 128 -> 256 28x28 0.92, N=16 96 -> 192 32x32 0.84, N=32 256 -> 256 14x14 0.95, N=16 28x28 0.94,
# N=4 64 -> 64 112x112 0.98; 5x5 s2 N=16 64 -> 128 32x32 0.83; 1-D k5 s2 N=64 256 -> 256 over 1000
# 0.88-0.92, k7 s2 N=32 64 -> 128 over 2048 0.85, k9 s4 N=16 C=96 0.88; ties from 256 -> 512 (N=32
# 28x28 1.00, N=16 14x14 1.01; 1-D N=8 512 -> 512 0.99), BLAS's from 384 input channels (N=32 384 ->
# 384 14x14 1.05, N=8 512 -> 512 28x28 1.10, N=32 512 -> 512 14x14 1.03) and on one image (N=1 192 ->
# 48 56x56 1.07, 256 -> 64 80x80 1.32; N=2 192 -> 48 0.98). The whole backward as auto runs it
# (`fastconv bench --pass backward --repeat 7`, auto / numba, over torch's time): 3x3 s2 N=32 64 ->
# 128 28x28 1.16 / 1.11, 56x56 1.14 / 1.05, N=8 128 -> 256 28x28 1.28 / 1.12, N=16 96 -> 192 32x32
# 1.13 / 1.04, N=32 256 -> 256 14x14 1.13 / 1.06, 5x5 s2 N=16 64 -> 128 1.39 / 1.26; 384 -> 384 1.04 /
# 1.08; and where the row of few pixels per image and many channels (``_blas_shaped``) gave BLAS's:
# 3x3 s2 N=16 128 -> 256 14x14 0.88, N=32 256 -> 256 7x7 0.92, N=16 64 -> 128 8x8 0.88, N=32 128 ->
# 256 14x14 0.87. But not over few output pixels in the batch, where BLAS's splits the input
# channels over the threads (ms numba / im2col, 9 rounds, the same day): 3x3 s2 256 -> 512 7x7 out
# N=2 (98 pixels) 1.66, N=4 1.24, N=8 (392) 1.12, N=16 (784) 1.01; 128 -> 256 7x7 N=4 1.10, N=16
# 0.88; 192 -> 256 5x5 N=4 1.34; 256 -> 256 14x14 N=2 (392) 1.08, 128 -> 256 0.94; 256 -> 256 4x4
# N=32 (512) 0.92.
AUTO_HALF_WIDTH_WEIGHT_BLAS_CHANNELS = 384  # input channels per group from which BLAS's is kept there ...
AUTO_HALF_WIDTH_WEIGHT_MIN_PIXELS = 512  # ... and output pixels in the batch under which


def _strided_weight(g: Geometry) -> bool:
    """A strided 1-D or 2-D layer, a kernel past 1x1, 64+ input channels per group: BLAS's weight
    gradient (``AUTO_PASS_RULES``, and in float64 ``AUTO_DTYPE_RULES``)."""
    return g.ndim <= 2 and max(g.stride) > 1 and math.prod(g.kernel) > 1 and g.c_in_g >= 64


def _strided_weight_blas(g: Geometry) -> bool:
    """``_strided_weight``'s float32 row: everywhere without AVX-512's register tiles; with them,
    one image of up to ``AUTO_FULL_WIDTH_WEIGHT_PATCHES`` elements of patches, and on half-width
    units also ``AUTO_HALF_WIDTH_WEIGHT_BLAS_CHANNELS`` input channels per group or more, or fewer
    than ``AUTO_HALF_WIDTH_WEIGHT_MIN_PIXELS`` output pixels in the batch."""
    if not _strided_weight(g):
        return False
    if not _register_tiles(g):
        return True
    return ((g.n == 1 and _patches(g) <= AUTO_FULL_WIDTH_WEIGHT_PATCHES)
            or (not _full_width(g) and (g.c_in_g >= AUTO_HALF_WIDTH_WEIGHT_BLAS_CHANNELS
                                        or g.n * _pixels(g) < AUTO_HALF_WIDTH_WEIGHT_MIN_PIXELS)))


# The BLAS row of few pixels and many channels (``_blas_shaped``, drawn on 2026-11-27 against
# numba's packed loops) lost on 1-D calls at unit stride on Zen 4's half-width units once numba's
# implicit forward took rows of up to 256 channels there (``_numba_implicit.FW_HALF_WIDTH_MAX_CHANNELS``):
# 2 threads, float32, ms numba / im2col, medians of per-round ratios over 7 interleaved rounds
# (2026-12-06), forward, input gradient, weight gradient: k3 N=8 256 -> 256 over 64 0.89, 0.54, 0.68;
# N=32 C=128 over 96 0.64, 0.54, 0.73; N=16 128 -> 256 over 64 0.75, 0.56, 0.57; N=2 C=256 over 128
# 0.99, 0.48, 0.66; N=8 C=256 over 128 0.82, 0.79, 0.79; k5 N=16 C=256 over 128 0.82, 0.74, 0.83; N=16
# C=160 over 200 0.76, 0.64, 0.86; k7 N=32 C=192 over 100 0.68, 0.69, 0.74. Where the implicit forward
# does not run the pass (past 256 channels in): k3 N=8 C=384 over 128 1.08, 1.02, 0.85; N=16 C=512 over
# 64 1.58, 1.49, 0.94; N=8 512 -> 256 over 128 1.10 (forward), 0.68 (its input gradient: 256 in),
# 0.79; N=4 C=512 over 200 0.94, 0.93, 0.92. The weight gradient won on every one.


# On full-width units the implicit forward takes 1-D signals' rows whatever their channels
# (``_numba_implicit._signal_rows``), and then beat BLAS there too, but at 512 input channels: 2
# threads, float32, ms numba / im2col, medians of 5 interleaved rounds after a 0.12 s idle each (an
# Intel Xeon, family 6 model 167, 2026-12-07), forward, input gradient, weight gradient: k3 N=8 256
# -> 256 over 64 1.15 / 1.54, 1.40 / 1.94, 1.09 / 1.48; N=32 C=128 over 96 1.19 / 2.15, 1.28 /
# 2.44, 1.35 / 1.89; N=16 128 -> 256 over 64 0.84 / 1.17, 1.04 / 1.48, 0.99 / 1.40; N=2 C=256 over
# 128 0.52 / 0.68, 0.79 / 1.02, 0.61 / 0.77; N=8 1.61 / 1.92, 1.88 / 2.45, 1.73 / 2.13; N=8 C=384
# 3.58 / 3.95, 4.28 / 5.10, 3.64 / 3.73; N=32 512 -> 256 over 128 12.3 / 14.7, 12.9 / 16.0, 12.4 /
# 14.8; k5 N=16 C=256 over 128 5.17 / 6.37, 5.51 / 7.29, 5.30 / 5.82; N=16 C=160 over 200 3.36 /
# 4.29, 3.53 / 4.60, 3.80 / 4.26; N=4 384 -> 48 over 128 0.49 / 0.92, 0.51 / 0.78, 1.16 / 1.12; k7
# N=32 C=192 over 100 6.75 / 9.03, 7.19 / 10.0, 6.48 / 7.91; N=2 64 -> 384 over 64 0.28 / 0.37,
# 0.44 / 0.39, 0.34 / 0.39. Lost: k3 N=16 C=512 over 64 6.59 / 5.98, 8.15 / 8.51, 6.91 / 6.37; N=4
# C=512 over 200 5.37 / 4.99, 7.07 / 6.83, 5.13 / 4.95. In float64, where the implicit forward keeps
# its limits, numba's took 1.3-2.5x BLAS's time (``AUTO_DTYPE_RULES``).
AUTO_FULL_WIDTH_1D_MAX_CHANNELS = 384  # per group, in and out


def _one_d_implicit(g: Geometry, says: str | None) -> bool:
    """On AVX-512, a 1-D call at unit stride that the BLAS row of few pixels takes (``_blas_shaped``)
    where numba's ``says`` (its implicit forward runs the pass; None: any): on half-width units,
    and on full-width ones with up to ``AUTO_FULL_WIDTH_1D_MAX_CHANNELS`` channels a side, the
    forward on the implicit forward whatever the pass."""
    if not _one_d_few_pixels(g):
        return False
    if _half_width(g):
        return says is None or _backend_says("numba", says, g)
    return (_full_width_1d(g) and _backend_says("numba", "implicit_forward", g)
            and (says is None or _backend_says("numba", says, g)))


def _one_d_few_pixels(g: Geometry) -> bool:
    """A 1-D call at unit stride that the BLAS row of few pixels takes (``_blas_shaped``)."""
    return g.ndim == 1 and g.stride == (1,) and _blas_shaped(g)


def _full_width_1d(g: Geometry) -> bool:
    """On full-width AVX-512, up to ``AUTO_FULL_WIDTH_1D_MAX_CHANNELS`` channels per group a side."""
    return _full_width(g) and max(g.c_in_g, g.c_out_g) <= AUTO_FULL_WIDTH_1D_MAX_CHANNELS


def _patches(g: Geometry) -> int:
    """Elements of one image's patches (im2col's columns): input channels per group x taps x output pixels."""
    return g.c_in_g * math.prod(g.kernel) * math.prod(g.out_size)


# winograd beat numba's direct loops there on 3x3 stride-1 layers with fewer than
# ``winograd.TILED_MIN_CHANNELS`` channels on one side where the other has many (same machine, ms
# winograd / numba, forward, input gradient; the weight gradient runs numba's at these counts
# either way): N=16 256 -> 48 20x20 6.41 / 10.5, 5.34 / 5.92; 48 -> 256 5.19 / 5.71, 6.19 / 10.4;
# 256 -> 32 5.72 / 7.52, 4.39 / 4.34; N=4 256 -> 24 56x56 8.28 / 9.94, 5.89 / 5.61; N=1 4 groups of
# 128 -> 32 56x56 4.81 / 12.9, 3.86 / 12.3; N=8 320 -> 40 24x24 5.55 / 7.83, 3.59 / 5.24; N=16 512
# -> 24 16x16 6.29 / 8.35, 3.96 / 4.47; N=8 48 -> 320 32x32 6.95 / 8.21, 8.35 / 15.9; N=32 32 -> 256
# 14x14 3.92 / 4.10, 4.98 / 7.98. Not below 256 on the other side: N=8 128 -> 32 28x28 2.69 / 2.26,
# 32 -> 128 2.24 / 1.95, 64 -> 32 40x40 2.37 / 2.12, N=32 48 -> 48 28x28 4.73 / 4.35 (96 -> 48
# 56x56 won, 3.99 / 4.93); nor 3-D (1x3x3 256 -> 32 8x16x16 5.71 / 5.58, 4.52 / 3.56).
# In grouped layers numba's kernels lost from fewer channels: ms winograd / numba, forward, input
# gradient, per group in -> out: N=1 4 groups of 128 -> 32 56x56 4.69 / 12.7, 3.80 / 11.9; N=16 4
# of 48 -> 48 20x20 5.34 / 8.18, 5.26 / 8.29; N=8 2 of 64 -> 32 40x40 4.55 / 6.61, 4.09 / 6.21; N=8
# 4 of 32 -> 64 28x28 4.86 / 6.58, 5.18 / 6.91; 4 of 40 -> 40 3.97 / 5.13, 3.92 / 5.12; 8 of 48 ->
# 48 10.2 / 14.8, 10.2 / 15.0; N=16 4 of 96 -> 24 14x14 3.41 / 4.83, 2.73 / 4.64; N=2 2 of 128 ->
# 32 56x56 5.10 / 6.50, 4.02 / 6.20; but at 32 -> 32 numba's won (N=8 8 groups 28x28 3.82 / 5.86,
# N=4 2.11 / 3.25, N=8 2 groups 56x56 3.85 / 5.49), and at 16 -> 16 (1.29 / 2.70).
AUTO_LOPSIDED_MIN_CHANNELS = 24  # per group, the fewer side ...
AUTO_LOPSIDED_MAX_CHANNELS = 256  # ... and the more: winograd on full-width AVX-512
AUTO_LOPSIDED_GROUPED_MAX_CHANNELS = 40  # ... in grouped layers


def _lopsided_3x3(g: Geometry) -> bool:
    """A 2-D 3x3 stride-1 layer of ``AUTO_LOPSIDED_MIN_CHANNELS`` channels per group or more one
    way and ``AUTO_LOPSIDED_MAX_CHANNELS`` or more the other (``AUTO_LOPSIDED_GROUPED_MAX_CHANNELS``
    in grouped layers), on full-width AVX-512."""
    few, many = sorted((g.c_in_g, g.c_out_g))
    most = AUTO_LOPSIDED_GROUPED_MAX_CHANNELS if g.groups > 1 else AUTO_LOPSIDED_MAX_CHANNELS
    return (g.ndim == 2 and _is_3x3s1(g) and few >= AUTO_LOPSIDED_MIN_CHANNELS and many >= most
            and _full_width(g))


# One 1-D signal: numba's kernels scaled poorly to two threads there (its packed forward of 128 ->
# 512 channels, k9 over 1024: 13.2 ms on one thread, 13.7 on two) and BLAS's won (same machine,
# ms im2col / numba, forward, input gradient, weight gradient, 5 interleaved rounds): k9 128 ->
# 512 over 1024 5.41 / 13.5, 5.06 / 16.1, 5.13 / 5.37; k5 32 -> 256 over 16000 7.02 / 18.3, 7.15 /
# 14.9, 9.70 / 7.49; k7 d2 48 -> 256 over 4096 3.39 / 8.62, 3.08 / 10.1, 4.16 / 6.02; k3 32 -> 32
# over 16000 1.73 / 2.19, 1.67 / 2.18, 2.03 / 2.20; k5 16 -> 256 over 1024 0.33 / 0.54, 0.31 /
# 1.01, 0.42 / 0.60; but k3 8 -> 64 over 16000 0.59 / 0.51, 0.65 / 2.30, 1.21 / 1.17. On 14 more
# (seed 22, auto with the row / without, 5 rounds in one process): forward 0.32-0.93 but 1.27 (k5
# d2 8 -> 48), backward 0.61-1.00 undilated, dilated 0.61-2.55 (k5 d2 32 -> 64 over 32000): dilated
# calls keep the rows below. On 14 undilated ones (seed 23): forward 0.30-0.89 and backward
# 0.54-1.17 from 32 output channels, but with 8 or 16 forward 1.34-1.98 (k9 32 -> 16, k7 96 -> 8,
# k5 s2 256 -> 8; k1 64 -> 16 0.67) and backward 1.36-1.71: those keep numba's. On 12 more (seed
# 24, 32+ output channels) forward 0.33-0.92 but 1.13 (k3 8 -> 64), backward 0.52-0.99 but 1.55 and
# 1.56 (k3 96 and 128 -> 64 over 32000): a row of the forward pass only (``AUTO_PASS_RULES``).
AUTO_ONE_SIGNAL_MIN_OUT_CHANNELS = 32


def _one_signal(g: Geometry) -> bool:
    """An undilated 1-D call on one image with ``AUTO_ONE_SIGNAL_MIN_OUT_CHANNELS`` output channels
    per group or more, on full-width AVX-512."""
    return (g.ndim == 1 and g.n == 1 and g.dilation == (1,) and g.c_out_g >= AUTO_ONE_SIGNAL_MIN_OUT_CHANNELS
            and _full_width(g))


# A 2-D layer whose windows tile the input (stride equal to the kernel, unpadded: the 4x4/4 stems of
# ConvNeXt and Swin, 2x2/2 downsampling) is one product of the weight with the input permuted (its
# patch matrix holds each input value once): BLAS's, where the reduction is short, beat numba's
# packed kernels, whose loads per multiply-add such a reduction does not amortise. Two threads,
# float32, forward ms im2col / numba, `fastconv bench --repeat 7` (2026-12-05, Intel Xeon, AVX-512),
# by input channels x taps: 4x4/4 N=16 1 -> 64 (16) 2.06 / 2.11; 2x2/2 N=16 8 -> 64 112x112 (32)
# 2.98 / 3.62; 4x4/4 3 -> 48 (48) 2.50 / 3.24, 3 -> 96 3.77 / 5.93, N=8 2.06 / 2.68, N=32 3 -> 192
# 19.3 / 23.6; 2x2/2 16 -> 64 (64) 4.03 / 5.14; 24 -> 96 112x112 (96) 7.34 / 9.87; but 32 -> 64
# 56x56 (128) 2.16 / 1.82, 192 -> 384 28x28 9.24 / 8.09, 16x16/16 3 -> 384 (768) 17.0 / 15.6.
# On AVX-512's half-width units (an AMD Zen 4, 2026-12-05, `fastconv bench --pass forward --repeat
# 5`), BLAS's wins further:
# 2x2/2 N=32 32 -> 64 56x56 (128) 3.62 / 4.11, 8x8/8 3 -> 64 (192) 5.50 / 6.61, 2x2/2 96 -> 192
# 56x56 (384) 22.8 / 25.0; ties from 768: 2x2/2 N=16 192 -> 384 28x28 10.1 / 9.79, 16x16/16 N=8 3
# -> 384 6.08 / 6.35, N=16 3 -> 768 19.5 / 18.7.
AUTO_TILED_WINDOWS_MAX_REDUCTION = 96
AUTO_TILED_WINDOWS_HALF_WIDTH_MAX_REDUCTION = 384


def _tiled_windows(g: Geometry) -> bool:
    """A 2-D layer of one group whose undilated windows tile the input (stride equal to the kernel,
    past 1x1, unpadded) with up to ``AUTO_TILED_WINDOWS_MAX_REDUCTION`` input channels x taps
    (``AUTO_TILED_WINDOWS_HALF_WIDTH_MAX_REDUCTION`` on AVX-512's half-width units)."""
    taps = math.prod(g.kernel)
    if not (g.ndim == 2 and g.groups == 1 and taps > 1 and g.stride == g.kernel and g.dilation == (1, 1)
            and g.padding == ((0, 0), (0, 0))):
        return False
    return g.c_in * taps <= (AUTO_TILED_WINDOWS_HALF_WIDTH_MAX_REDUCTION if _half_width(g)
                             else AUTO_TILED_WINDOWS_MAX_REDUCTION)


def _full_width(g: Geometry) -> bool:
    """Where numba's register tiles run AVX-512 on full-width units (``numba_jit.full_width_tiles``)."""
    return _backend_says("numba", "full_width_tiles", g)


def _half_width(g: Geometry) -> bool:
    """Where numba's register tiles run AVX-512 on half-width units (AMD Zen 4): rows measured there."""
    return _register_tiles(g) and not _full_width(g)


def _many_outputs(g: Geometry, least: int) -> bool:
    """A kernel past 1x1 with ``least`` output channels per group or more, ``AUTO_MANY_OUT_RATIO``
    times the input channels, on full-width AVX-512 (``_many_outputs_any``); not a 3x3 stride-1
    layer of 64+ channels each side that winograd's rows take (``_winograd_channels``), whose
    float32 backward then ran faster on winograd's passes on small images, the same or slower on
    larger ones (auto's backward, this row / without it, 7 interleaved rounds in one process,
    2026-12-04: 3x3 N=16 64 -> 512 14x14 0.88, N=32 96 -> 1024 7x7 0.85, N=16 128 -> 1024 7x7 0.87,
    N=32 64 -> 512 10x10 0.92, N=8 64 -> 512 28x28 0.99, N=2 64 -> 640 56x56 1.08; with fewer input
    channels it lost, 24-48 -> 256-512 0.98-1.12: those keep BLAS's). On five layers drawn after
    it: 0.83-0.99. (Not in float64: ``AUTO_DTYPE_RULES``.)"""
    return _many_outputs_any(g, least) and not _winograd_channels(g)


def _winograd_channels(g: Geometry) -> bool:
    """A 3x3 stride-1 layer of channels enough that winograd beats numba's direct loops
    (``winograd.beats_direct``): ``AUTO_RULES``' row of 64+ channels, which the many-output rows
    leave to it."""
    return _is_3x3s1(g) and _backend_says("winograd", "beats_direct", g)


def _many_outputs_any(g: Geometry, least: int) -> bool:
    """A kernel past 1x1 with ``least`` output channels per group or more, ``AUTO_MANY_OUT_RATIO``
    times the input channels, on full-width AVX-512."""
    return _many_out_channels(g, least) and _full_width(g)


def _many_out_channels(g: Geometry, least: int, ratio: int = AUTO_MANY_OUT_RATIO) -> bool:
    """A kernel past 1x1 with ``least`` output channels per group or more, ``ratio`` times the
    input channels: the many-output rows' shape, on any CPU."""
    return math.prod(g.kernel) > 1 and g.c_out_g >= max(least, ratio * g.c_in_g)


def _winograd_without_wide_tiles(g: Geometry) -> bool:
    """A 3x3 stride-1 call without AVX-512, grouped with ``AUTO_GROUPED_WINOGRAD_CHANNELS`` channels
    per group each side, or 3-D with a kernel 3+ deep and as many channels."""
    return (_is_3x3s1(g) and min(g.c_in_g, g.c_out_g) >= AUTO_GROUPED_WINOGRAD_CHANNELS
            and (g.groups > 1 or (g.ndim == 3 and g.kernel[0] >= 3)) and _without_wide_tiles(g))


# Winograd (F(2x2,3x3) at "highest") wins on 3x3 stride-1 layers of few pixels per image, where
# numba's loops are short: three runs of `make bench` (2 threads, 2026-12-01 15:24-15:32, medians
# of the runs): r7-c512 forward winograd 1.79x torch's time, im2col 2.57, numba 3.04; backward
# 1.95 / 2.42 / 2.59; r14-c256 a tie with numba (1.51-1.55). With NumPy's products on that
# AVX-512 machine, numba's were faster on larger images (r56-c64 forward 0.99 against winograd's
# 1.12, r28-c128 1.23 against 1.39; the 3d suite's 56x56 planes 1.44-1.53 against 1.60-1.72), so
# rows below picked numba there until the register tiles. A kernel one pixel wide over long rows
# (a 3x1x1 kernel's (D, H*W) view) is numba's too since its taps read the input where it lies
# (`_numba_columns`): `fastconv bench --suite 3d`, 2026-12-01 18:40, 3x1x1 numba 0.94x
# torch's time forward and 1.30 backward against im2col's shifted GEMMs' 1.32 and 1.51.
# Where numba's register tiles (`_numba_gemm`, AVX-512) run the products, the backends say so:
# winograd's (`winograd.beats_direct`, 64+ channels per group; `make bench`, 2026-12-01 19:3x, 2 threads,
# winograd forward / backward 0.97 / 0.93x torch's time on r56-c64, numba 1.11 / 1.00; 0.94 / 1.16
# on r28-c128, numba 1.20 / 1.30) and numba's 1x1 kernels (`numba_jit.matrix_product`: 0.6-1.1x
# torch's time, against BLAS's 1.4-1.8x with this machine's AVX2 OpenBLAS; README). Without AVX-512
# numba's loops have narrower vectors too, and winograd on NumPy's products beats them from 64
# channels as well (an AVX2 Zen 3, 2026-12-03: `make bench` r56-c64 forward 0.62x torch's time
# against numba's 1.43, r28-c128 0.82 against 1.37; `winograd.TILED_MIN_CHANNELS`).
AUTO_RULES: tuple[tuple[str, object, tuple[str, ...]], ...] = (
    ("depthwise", lambda g: g.is_depthwise, ("numba", "im2col")),
    ("small call", lambda g: g.macs <= AUTO_NUMBA_MAX_MACS, ("numba", "im2col")),
    # (of the calls that the next two rows give winograd)
    ("3x3 at stride 1, few tiles in the batch, up to 512 channels",
     lambda g: _few_tiles(g) and (_backend_says("winograd", "beats_direct", g) or _blas_shaped(g)),
     ("im2col", "winograd", "numba")),
    # (With AVX-512 only: on AVX2 numba's weight gradient runs its packed loops, and winograd's
    # backward won. N=32, 7x7 C=64, two threads, 9 interleaved rounds, 2026-12-03, Zen 3: backward
    # numba 2.07x torch's time, winograd 1.45; forward numba 1.57.)
    ("3x3 at stride 1 on small images, numba's implicit forward both ways, but winograd's from 64 channels "
     "a side over 512+ F(2x2) tiles",
     lambda g: (_is_3x3s1(g) and _backend_says("numba", "small_images", g)
                and _register_tiles(g) and not _winograd_small_images(g)), ("numba", "winograd", "im2col")),
    ("3x3 at stride 1, 64+ channels",
     _winograd_channels, ("winograd", "numba", "im2col")),
    ("full-width AVX-512: 2-D 3x3 at stride 1, 24+ channels one way and 256+ (grouped: 40+) the other", _lopsided_3x3,
     ("winograd", "numba", "im2col")),
    ("3x3 at stride 1 without AVX-512, 32+ channels: grouped, or 3-D kernels 3+ deep", _winograd_without_wide_tiles,
     ("winograd", "numba", "im2col")),
    ("3x3 at stride 1, few pixels, many channels", lambda g: _is_3x3s1(g) and _blas_shaped(g),
     ("winograd", "im2col", "numba")),
    ("dilated 3x3 at stride 1, 128+ channels, phases of 4x4+ pixels",
     lambda g: _on_phases(g) and _backend_says("winograd", "beats_direct", g), ("winograd", "numba", "im2col")),
    # Read on the 2-D call that runs (backends/_lift.py): 3-D calls with the kernel's depth folded
    # into the channels, so a 1x3x3 kernel is a 3x3 one; a 3x1x1 kernel runs as 3x1 over (D, H*W).
    ("1x1 matrix product on numba's register tiles", lambda g: _backend_says("numba", "matrix_product", g),
     ("numba", "im2col")),
    # `fastconv bench --shape ... --backends numba,im2col,torch` (2 threads, float32, 2026-12-02):
    # N=32 3x3 stride 2, 14x14 256 -> 512 forward 10.3-10.9 against im2col's 18.8 ms, backward
    # 26 (with the input gradient as the patches' adjoint) against 43-48; 28x28 128 -> 256
    # forward 10.2 / 18.8
    ("strided or short rows, many channels: columns of patches on numba's register tiles",
     _on_patches, ("numba", "im2col")),
    ("without AVX-512, 48+ channels: strided or fewer than 9 taps on BLAS", _blas_without_wide_tiles,
     ("im2col", "numba")),
    # (Below 48 channels too, 2-D 1x1 kernels: float32, each pass alone, 7 interleaved rounds, 2
    # threads, an AVX2 Zen 3 (2026-12-04), ms im2col / numba, forward, input gradient, weight
    # gradient: N=32 16 -> 64 56x56 3.55 / 5.69, 3.09 / 8.17, 5.77 / 6.52; 24 -> 24 2.21 / 3.53, 2.82
    # / 3.37, 5.17 / 6.94; 32 -> 32 28x28 1.55 / 1.61, 1.35 / 1.56, 2.27 / 2.63; N=16 40 -> 80 40x40
    # 3.04 / 3.12, 2.78 / 3.10, 3.88 / 4.87; 8 -> 16 and 16 -> 16 56x56, 12 -> 24 112x112 forward ties,
    # the gradients 1.02-1.75x. A 1-D or 3-D call's 1x1 weight gradient ran faster on numba: 1-D 32
    # channels over 4096 3.05 / 4.26, 1x1x1 24 -> 48 8x28x28 3.38 / 4.36; those stay numba's.)
    ("without AVX-512, 2-D 1x1 kernels of one group on BLAS",
     lambda g: g.ndim == 2 and g.groups == 1 and math.prod(g.kernel) == 1 and _without_wide_tiles(g),
     ("im2col", "numba")),
    ("1x1 kernel, few pixels or many channels", lambda g: math.prod(as_2d(g).kernel) == 1 and (
        _pixels(g) < AUTO_IM2COL_BELOW_PIXELS or _many_channels(g)), ("im2col", "numba")),
    ("full-width AVX-512: few pixels per image, many input channels, up to 32 output channels, 2+ images, "
     "at a stride 49+ pixels",
     lambda g: (_blas_shaped(g) and g.c_out_g <= AUTO_FEW_OUT_CHANNELS and g.n >= 2
                and (max(g.stride) == 1 or _pixels(g) >= AUTO_FEW_OUT_STRIDED_MIN_PIXELS) and _full_width(g)),
     ("numba", "im2col")),
    ("full-width AVX-512: 512+ output channels, 8x the input's, up to 4 input channels or at a stride",
     lambda g: _many_outputs(g, AUTO_MANY_OUT_CHANNELS) and (g.c_in_g <= 4 or max(g.stride) > 1),
     ("im2col", "numba")),
    ("few pixels per image, many channels", _blas_shaped, ("im2col", "numba")),
    ("otherwise", lambda g: True, ("numba", "im2col")),
)


def _past_small(g: Geometry) -> bool:
    """Neither depthwise nor a small call: ``AUTO_RULES``' first two rows hold for every pass."""
    return not g.is_depthwise and g.macs > AUTO_NUMBA_MAX_MACS


# A pass may run on another backend than the others: these rows come first for their pass (past
# depthwise and small calls, ``_past_small``), else ``AUTO_RULES`` decides. Two threads, float32,
# each gradient timed alone, medians of 5-9 interleaved rounds (2026-12-03, the default and rules
# suites), ms, numba against im2col unless said. Input gradient: 1x1 kernels (w's transpose times
# gy) 24.0 / 21.7 (14x14 256 -> 1024), 22.0 / 20.9 (28x28 256 -> 256), 12.5 / 11.4 (20x20), 8.8 /
# 7.9 (14x14 128 -> 512), 7.9 / 7.3, 1.0 / 0.8, 16.4 / 15.0 at stride 2, 1-D 6.4 / 6.2, 8 x 28x28
# 512 20.5 / 20.2 (but 7x7 512 -> 128 2.4 / 2.7); up to 4 input channels (numba's register tiles
# want 8 rows of them): the stem 7x7/2 51.2 / 34.3, 32x32 3 -> 64 6.9 / 5.0, MNIST 2.3 / 2.0. Both
# rows in one group only: no grouped layer was timed (numba's grouped kernels against im2col's loop
# over groups). Weight gradient: 3x3 stride 1 on few F(2x2) tiles, numba against winograd: 75 tiles
# (3 x 10x10, C=384) 7.0 / 7.8, 98 (2 x 14x14, 512) 14.0 / 16.4, 128 (8 x 7x7, 256) 4.5 / 5.2, (512)
# 16.0 / 15.9, 196 (4 x 14x14, 256) 8.5 / 7.1, 256 (16 x 7x7) 7.5 / 7.2; strided, kernels past 1x1,
# 64+ input channels, 1-D and 2-D: 1-D k=5 s=2 72.1 / 49.2, 3x3/2 9.8 / 9.6, 31.9 / 29.5, 32.5 /
# 29.3 (3-D 3x3x3/2: 16.3 / 17.1, left to numba).
# Without numba's register tiles (an AVX2 Zen 3, 2026-12-03, 9 interleaved rounds), ms winograd /
# numba / im2col: 75 tiles (3 x 10x10, C=384) 10.0 / 21.9 / 13.2, 98 (2 x 14x14, 512) 17.7 / 43.8
# / 22.6, 64 (4 x 7x7, 128) 3.1 / 3.6 / 1.6, 96 (6 x 7x7, 256) 7.7 / 11.5 / 5.6: im2col first, at
# most 1.3x the fastest there. The weight gradient of up to 4 input channels, on the AVX2 Zen 3
# (2026-12-04, 7-9 interleaved rounds, ms numba / im2col, float32 then float64): the stem 7x7/2
# 24.4 / 18.1, 103.5 / 44.6; 32x32 3 -> 64 6.3 / 5.8, 18.6 / 13.5; MNIST 2.0 / 1.7, 2.7 / 3.1. Not
# measured with AVX-512, where numba's loops run twice the lanes: left to the rows below there.
# Without AVX-512, numba's weight gradient of 3x3 stride-1 layers with fewer than 64 output
# channels runs its packed loops (its register tiles want 64, ``_numba_implicit.MIN_OUT_CHANNELS``),
# where auto's rows give the layer numba (below ``winograd.TILED_MIN_CHANNELS``). winograd's own
# weight gradient runs from 32 channels a group (``winograd.WEIGHT_MIN_CHANNELS_BLAS``) and was
# faster on 8 of 9 such layers: float32, each pass alone, 5 interleaved rounds, 2 threads, an AVX2
# Zen 3 (2026-12-04), ms winograd / numba / im2col: N=32 C=32 56x56 16.7 / 23.3 / 17.2, 28x28 4.8 /
# 6.7 / 6.3, 7x7 1.16 / 1.35 / 1.18 (14x14 3.37 / 2.95 / 4.12); C=48 28x28 7.2 / 13.9 / 11.6; N=16
# C=40 40x40 6.7 / 9.8 / 8.5; 4 groups of 32 28x28 8.9 / 12.1 / 14.8, 8 of 32 14x14 4.1 / 7.0 / 6.7,
# 2 of 32 32x32 7.3 / 9.9 / 9.6; 3x3x3 N=2 C=32 8x28x28 7.0 / 10.7 / 11.5. Checked on 8 layers
# not used to draw it (32 to 60 channels, 7x7 to 36x36, 4 groups of 48, 3x3x3 with 48; 7 rounds):
# numba's 1.24-2.0x winograd's time, winograd the fastest on all 8. (Identical code timed so
# varies by up to +-30 % a round on this host: medians; N=32 C=32 14x14 alone, 15 rounds: 1.89 /
# 2.51 / 2.02.)
# Both rows of up to 4 input channels hold from 17 output channels: with fewer, each pass of
# numba's ran faster, its loops short of nothing while BLAS's products have few rows. Float32,
# each pass alone, 7-9 interleaved rounds, 2 threads, an AVX2 Zen 3 (2026-12-04), ms numba /
# im2col, input gradient then weight gradient: 5x5 N=64 1 -> 2 112x112 3.90 / 15.5, 6.44 / 19.1;
# N=16 3 -> 6 4.46 / 14.5, 5.07 / 14.9; 7x7 N=4 2 -> 8 128x128 3.56 / 6.55, 1.91 / 3.74; 3x3 N=32 3
# -> 16 64x64 5.04 / 6.51, 3.25 / 6.10; 3x3x3 N=64 1 -> 16 8x14x14 12.2 / 14.3, 12.5 / 14.3. From
# 24 output channels BLAS wins or ties: 3x3 3 -> 32 7.93 / 5.71 (the weight gradient 6.01 /
# 6.89), 3 -> 48 11.3 / 7.65, 8.45 / 8.22; 5x5 1 -> 24 4.56 / 4.15, 3.68 / 3.10; MNIST 1 -> 32
# ties. The input gradient's row was measured with AVX-512 from 32 output channels only.
AUTO_FEW_INPUT_MIN_OUT_CHANNELS = 17
AUTO_WEIGHT_TILES = 128  # F(2x2) tiles below which numba's weight gradient beats winograd's
AUTO_WINOGRAD_WEIGHT_CHANNELS = 32  # per group each side, without AVX-512: winograd's own weight gradient


# The weight gradient of many channels over few tiles runs best on im2col's split by input
# channels (``im2col.split_by_channels``): full-width AVX-512 (an Intel Xeon), two threads, float32,
# 3x3, ms im2col / numba or winograd, separate processes alternating per sample, 9 rounds
# (2026-12-05): N=4 C=512 7x7 (64 F(2x2) tiles) 4.7 / numba 7.7, N=4 C=384 9x9 (100) 4.3 / 5.4; in
# one process, interleaved: N=2 C=512 7x7 3.2 / 4.9. From ``AUTO_WEIGHT_TILES`` winograd's: N=8 7x7
# (128) C=384 5.4 / winograd 4.3 (C=512 9.1 / 10.3), N=16 C=512 7x7 (256) 17.3 / 15.3; and numba's
# under 384 channels: N=2 C=256 14x14 3.5 / 2.9, N=4 C=256 7x7 2.1 / 2.1. On AVX-512's half-width
# units (an AMD Zen 4, 2026-12-05; two threads, float32, each gradient alone, medians of 7 calls
# after an idle pause, 7 interleaved rounds, ms im2col / numba / winograd) the split holds there too:
# N=4 C=384 7x7 3.25 / 3.94 / 3.97, C=512 5.78 / 7.04 / 7.24, N=2 C=512 10x10 5.95 / 6.78 / 6.74,
# N=2 C=384 12x12 4.71 / 4.98 / 4.77; but below 384 channels winograd's gradient led numba's (the
# few-tiles row's pick there until then) from 192 channels a side, one group measured
# (``AUTO_HALF_WIDTH_WINOGRAD_WEIGHT_CHANNELS``): N=4 C=192 7x7 1.30 / 1.27 / 1.13, N=2 10x10 1.25 /
# 1.18 / 1.09, N=4 C=256 7x7 1.63 / 1.75 / 1.33, N=3 8x8 1.61 / 1.69 / 1.23, N=2 10x10 1.63 / 1.71
# / 1.26, 14x14 2.80 / 2.77 / 1.79, N=6 7x7 2.27 / 2.42 / 1.68, N=4 C=320 7x7 2.68 / 3.24 / 2.63,
# 256 -> 512 7x7 2.75 / 3.40 / 2.67; numba's kept at 128 (N=4 7x7 2.10 / 0.51 / 0.54, N=2 10x10
# 0.98 / 0.49 / 0.51).
AUTO_SPLIT_WEIGHT_CHANNELS = 384  # a side, at least
AUTO_HALF_WIDTH_WINOGRAD_WEIGHT_CHANNELS = 192  # a side, per group, at least


def _split_weight(g: Geometry) -> bool:
    """The weight gradient's row of im2col's split by input channels: 3x3 at stride 1, one group,
    ``AUTO_SPLIT_WEIGHT_CHANNELS`` a side, under ``AUTO_WEIGHT_TILES`` F(2x2) tiles, with AVX-512
    (full-width units or half-width)."""
    flat = as_2d(g)
    return (_is_3x3s1(g) and flat.groups == 1 and min(flat.c_in, flat.c_out) >= AUTO_SPLIT_WEIGHT_CHANNELS
            and _tiles(g) < AUTO_WEIGHT_TILES and _register_tiles(g)
            and _backend_says("im2col", "split_by_channels", flat))


def _half_width_winograd_weight(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 3x3 stride-1 layer of one group on ``AUTO_FEW_TILES`` to
    ``AUTO_WEIGHT_TILES`` F(2x2) tiles (``_few_weight_tiles``) with
    ``AUTO_HALF_WIDTH_WINOGRAD_WEIGHT_CHANNELS`` channels or more each side: winograd's weight
    gradient, not numba's."""
    flat = as_2d(g)
    return (_few_weight_tiles(g) and flat.groups == 1
            and min(flat.c_in, flat.c_out) >= AUTO_HALF_WIDTH_WINOGRAD_WEIGHT_CHANNELS and _half_width(g))


def _few_weight_tiles(g: Geometry) -> bool:
    """A 3x3 stride-1 layer of ``AUTO_FEW_TILES`` to ``AUTO_WEIGHT_TILES`` F(2x2) tiles in the
    batch: the weight gradient's rows below."""
    return _is_3x3s1(g) and AUTO_FEW_TILES <= _tiles(g) < AUTO_WEIGHT_TILES


def _winograd_own_weight(g: Geometry) -> bool:
    """A 3x3 stride-1 layer of ``AUTO_WEIGHT_TILES`` F(2x2) tiles or more and
    ``AUTO_WINOGRAD_WEIGHT_CHANNELS`` channels per group each side (the 2-D call's), without
    AVX-512: winograd's own weight gradient runs there, on NumPy's products."""
    flat = as_2d(g)
    return (_is_3x3s1(g) and _tiles(g) >= AUTO_WEIGHT_TILES
            and min(flat.c_in_g, flat.c_out_g) >= AUTO_WINOGRAD_WEIGHT_CHANNELS and _without_wide_tiles(g))


def _few_inputs(g: Geometry) -> bool:
    """One group of up to 4 input channels and ``AUTO_FEW_INPUT_MIN_OUT_CHANNELS`` output channels."""
    return g.groups == 1 and g.c_in <= 4 and g.c_out >= AUTO_FEW_INPUT_MIN_OUT_CHANNELS


# The input gradient of a strided 1-D call of few input channels and many output channels: on
# AVX-512's half-width units BLAS's (the output gradient's columns, then added back over the taps)
# beat numba's phases. Two threads, float32, each pass alone (an idle pause, 30 ms of its calls,
# then 20 ms timed), medians of 3 interleaved rounds (2026-12-06, an AMD Zen 4), ms numba / im2col,
# stride 2: N=64 16 -> 256 k5 over 1000 2.47 / 0.88 (the row's worst), N=16 16 -> 256 k3 over 256
# 1.67 / 1.37, N=64 16 -> 64 k9 over 64 2.06 / 1.40, N=8 16 -> 384 k7 over 1000 1.68 / 1.29, over
# 128 3.23 / 1.70; N=16 8 -> 128 k5 over 256 2.19 / 1.12, N=64 8 -> 256 k3 over 4000 0.48 / 0.25,
# N=64 8 -> 64 k5 over 64 2.20 / 1.79, N=8 8 -> 256 k7 over 256 2.06 / 1.32, 8 -> 384 k9 over 4000
# 0.96 / 0.64; ties and a loss: N=8 8 -> 128 k3 over 4000 1.20 / 1.17, N=64 8 -> 128 k9 over 1000
# 0.87 / 0.79, N=64 8 -> 64 k9 over 4000 0.80 / 0.92. (The random layer that found it: N=64 16 ->
# 384 k5 over 64, 4.6x torch's input gradient on numba's, 1.2x on BLAS's.) From 32 input channels
# they split (N=8 32 -> 128 k9 1.94 / 1.81; 64 channels: numba's won 5 of 9), the line left there.
# Float64, 5 rounds: N=64 16 -> 256 k5 over 1000 48.8 / 20.1, 16 -> 384 over 64 7.97 / 3.10, N=16 8
# -> 128 k5 over 256 3.72 / 2.44, N=8 16 -> 384 k7 over 128 2.62 / 1.51.
AUTO_HALF_WIDTH_STRIDED_1D_INPUTS = 16  # input channels, at most, ...
AUTO_HALF_WIDTH_STRIDED_1D_OUTPUTS = 64  # ... and output channels, at least


def _half_width_strided_1d_few_inputs(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 1-D call at a stride, one group, up to
    ``AUTO_HALF_WIDTH_STRIDED_1D_INPUTS`` input channels and ``AUTO_HALF_WIDTH_STRIDED_1D_OUTPUTS``
    output channels or more: BLAS's input gradient."""
    return (g.ndim == 1 and g.groups == 1 and max(g.stride) > 1 and g.c_in <= AUTO_HALF_WIDTH_STRIDED_1D_INPUTS
            and g.c_out >= AUTO_HALF_WIDTH_STRIDED_1D_OUTPUTS and _half_width(g))


# Without AVX-512, numba's input gradient at a stride (a stride-1 forward per phase of the input)
# beats im2col's (a GEMM, then adding its columns back over every tap) where the output channels
# are few for the taps: up to this many for every 9 taps (3x3: 32, 5x5: 88, 7x7: 174). Float32,
# each pass alone, 7-9 interleaved rounds, 2 threads, an AVX2 Zen 3 (2026-12-04), ms numba /
# im2col: 3x3 stride 2 N=32 64 -> 16 32x32 5.91 / 8.09, 128 -> 32 28x28 9.52 / 12.7; 5x5 stride 2
# N=32 96 -> 16 17x17 7.18 / 17.9, N=16 64 -> 32 32x32 5.94 / 11.1, 64 -> 64 12.2 / 15.4, N=32 32
# -> 32 17x17 3.99 / 8.10; 7x7 stride 2 N=1 192 -> 64 64x64 21.5 / 35.7, N=16 48 -> 128 17x17 11.7
# / 13.9, N=2 128 -> 128 56x56 24.0 / 26.3. Past the line BLAS's: 3x3 stride 2 64 -> 64 56x56 36.0
# / 34.3, 64 -> 128 18.6 / 15.6, 96 -> 192 23.3 / 16.3, 128 -> 256 58.6 / 37.4, 256 -> 512 102 /
# 40.9; 1-D k5 stride 2 64 -> 128 64.1 / 49.1; 3x3x3 stride 2 64 -> 128 ties. Their forward ran
# faster on numba too, or tied (forward ms numba / im2col, 5 interleaved rounds: 5x5 stride 2 N=32
# 96 -> 16 17x17 3.58 / 6.10, N=16 64 -> 32 32x32 4.48 / 6.07, 48 -> 24 28x28 2.33 / 3.36, 64 -> 64
# 8.31 / 9.55; 3x3 stride 2 N=8 64 -> 16 56x56 1.94 / 3.25, 64 -> 32 32x32 4.92 / 5.02, 128 -> 32
# 28x28 7.10 / 7.20, 256 -> 32 14x14 5.25 / 4.97, 96 -> 24 40x40 6.12 / 6.00): ``AUTO_RULES``' BLAS
# row without AVX-512 leaves them to numba. Their weight gradient stays BLAS's from 64 input
# channels (the pass row below; im2col 1.1-1.4x faster).
AUTO_FOLD_OUT_CHANNELS = 32  # per 9 taps: strided layers of at most this many run numba


def _few_outputs_for_taps(g: Geometry) -> bool:
    """At most ``AUTO_FOLD_OUT_CHANNELS`` output channels per group for every 9 taps of the 2-D
    call's kernel (which has more than one)."""
    taps = math.prod(as_2d(g).kernel)
    return taps > 1 and 9 * g.c_out_g <= AUTO_FOLD_OUT_CHANNELS * taps


# ... and on half-width units (Zen 4, 2026-12-06, the input gradient alone, ms numba / im2col, 7
# interleaved rounds): 3x3 s2 N=32 384 -> 16 7x7 5.04 / 11.4, N=32 256 -> 32 14x14 7.96 / 10.8, N=16
# 512 -> 32 10x10 6.30 / 7.94, N=32 48 -> 32 10x10 1.58 / 1.55 (past the line, 48 outputs: N=16
# 192 -> 48 7x7 1.63 / 1.38).


def _strided_few_outputs(g: Geometry) -> bool:
    """One group, a stride, and few output channels for the kernel's taps (``_few_outputs_for_taps``):
    measured without AVX-512, on full-width AVX-512 and on half-width (Zen 4)."""
    return g.groups == 1 and max(g.stride) > 1 and _few_outputs_for_taps(g)


# Where numba's forward runs its tiles of output pixels (``numba_jit.pixel_tiles``), and its input
# gradient's stride phases do, the rows below give it the pass on full-width AVX-512, past the rows
# that had given it BLAS (few pixels per image and many channels, mostly). Two threads, float32,
# each pass alone, 7 interleaved rounds (2026-12-04, an Intel Xeon), ms numba / im2col, forward
# then input gradient, on the 6 of 140 random layers whose pick moved: 3x3 s2 N=16 192 -> 48 7x7
# 0.31 / 0.82, 1.28 / 1.14; N=32 512 -> 96 14x14 (2 groups) 3.65 / 7.64, 10.0 / 12.3; N=16 512 ->
# 48 28x28 6.76 / 11.9, 14.0 / 18.6; N=64 96 -> 48 20x20 2.54 / 4.60, 6.58 / 8.12; 1x5x5 s2 N=1
# 512 -> 64 16x16x16 (2 groups) 2.52 / 6.12, 5.18 / 9.77; dilated 3x3 N=4 128 -> 48 14x14 forward
# 0.52 / 0.90. Their weight gradients stay where they were (BLAS's was faster on 4 of 5). 3x3
# layers at stride 1 are left to winograd's rows, and to BLAS the forward of padded 1x1 kernels (8
# x 12x12 256 -> 512 2.14 / 1.98, 32 x 14x14 256 -> 1024 23.0 / 20.1), of up to 4 input channels
# (7x7 N=64 3 -> 512 10x10 5.14 / 4.79) and of 8x as many output channels, 512+, as their row has
# it (near ties: 1-D k7 s2 N=32 24 -> 512 3.39 / 3.16, 48 -> 512 5.04 / 5.79). On the lines of
# the row of few pixels per image and up to 32 output channels the forward moved too: 5x5 N=16 384
# -> 33 10x10 7.20 / 15.4, -> 48 6.96 / 15.7, one image 384 -> 24 1.00 / 1.34; 3x3 s2 N=16 256 ->
# 32 12x12 0.61 / 1.82.


# On half-width units (Zen 4), where numba's tiles of output pixels now run the forward within
# their own limits (``numba_jit.PIXELS_HALF_WIDTH``; never an input gradient's phases there), the
# forward's row holds as well: ms numba / im2col, 7 interleaved rounds (2026-12-06), 3x3 s2 N=32
# 384 -> 16 7x7 1.08 / 3.26, N=16 512 -> 32 10x10 1.65 / 3.52, N=32 256 -> 32 14x14 2.63 / 5.94,
# N=16 192 -> 48 7x7 0.49 / 0.77; 7x7 N=16 128 -> 16 10x10 1.99 / 6.98; 5x5 N=16 384 -> 33 10x10
# 8.59 / 12.72, N=64 192 -> 32 7x7 6.52 / 18.0; 3x3 d2 N=8 512 -> 48 14x14 4.50 / 6.11. (Their
# input and weight gradients split: 0.44-1.20x and 0.55-1.38x; those rows are not taken.)


def _on_pixel_tiles(g: Geometry, question: str) -> bool:
    """With AVX-512's register tiles, not 3x3 at stride 1 (winograd's rows), where numba's
    ``question`` (``pixel_tiles``, ``pixel_tiles_input``) says its tiles of output pixels run the
    pass (the input gradient's phases: full-width units only)."""
    return _register_tiles(g) and not _is_3x3s1(g) and _backend_says("numba", question, g)


# One image of many channels: numba's kernels and winograd's split a batch's images, tiles or rows
# over the threads, and at one image their parts are few and small, where BLAS's products of one
# image's patches stay large. Two threads, float32, each pass alone, medians of 5-7 interleaved
# rounds without an idle pause before each sample (which favoured BLAS: see below; the totals below
# were timed with it), an Intel Xeon (2026-12-04), ms im2col / auto's pick before (numba unless
# said), forward, input gradient, weight gradient: 3x3 384 -> 512 14x14 3.65 / 5.38 (winograd), 3.43
# / 4.69 (winograd), 3.20 / 9.44; 512 -> 96 14x14 1.61 / 1.91 (winograd), 1.46 / 1.68 (winograd),
# 1.57 / 2.07; 3x1x1 256 -> 128 4x28x28 2.72 / 7.70, 3.58 / 6.70; 3x3 s2 384 -> 64 7x7 0.21 / 0.38,
# 0.33 / 0.38; 1x1 384 -> 64 80x80 forward 1.60 / 3.10; 1-D k3 d2 128 -> 128 over 1024 0.69 / 1.37,
# 0.83 / 1.37, 0.81 / 0.97; 1x1x1 384 -> 128 4x16x16 0.43 / 0.96, weight 0.76 / 0.98. Where the rows
# stop: the input gradient lost at 128 input channels (3x3 s2 112x112 128 -> 64 1.35x the time
# before, 28x28 1.12; 3x3 d2 28x28 128 -> 256 1.07), hence its 256; the weight gradient of a 5x5
# layer over 56x56 output pixels (256 -> 64 23.4 / 18.4), hence its pixels; few output channels ran
# numba's tiles of output pixels (5x5 384 -> 24 10x10, 1.34 / 1.00 at the twenty-ninth stop). 3x3
# layers at stride 1 of 48+ F(2x2) tiles (one 14x14 image) are winograd's rows' but for BLAS's
# weight gradient and, under 128 tiles with fewer than 512 channels on a side, its forward: there
# winograd and BLAS tied or either won by up to 1.4x (1024 -> 512 14x14 forward 9.72 / 8.03, 1024 ->
# 1024 18.2 / 15.1, 640 -> 320 input gradient 5.78 / 4.09, 1024 -> 1024 15.2 / 20.3; 192 -> 128
# 28x28 forward 2.26 / 1.99). Below 128 input channels BLAS won where the outputs are many for the
# inputs (16+ input channels, 96+ output channels and twice the input's, 200+ input channels x
# taps): 5x5 s2 96 -> 512 7x7 0.37 / 1.10, 0.57 / 1.17; 3x3 s2 24 -> 128 56x56 0.30 / 0.58, 0.44 /
# 1.46, 0.43 / 0.62; 7x7 d2 16 -> 256 10x10 0.24 / 0.53, weight 0.25 / 0.78; 3x3 32 -> 256 7x7
# forward 0.09 / 0.30 (winograd); numba's past those lines: 3x3 16 -> 256 7x7 forward 0.04 / 0.07
# (BLAS / numba), 3x1x1 16 -> 256 4x28x28 1.32 / 0.86, 1x3x3 32 -> 128 8x16x16 (the lift's 8 images)
# 1.39 / 0.84. The forward of a kernel past 1x1 over more than 1024 output pixels stayed numba's
# (5x5 256 -> 64 56x56 26.6 / 15.0, 384 -> 96 40x40 d2 24.9 / 15.4, 3x3 s2 128 -> 128 112x112 7.9 /
# 6.4; 1x1 384 -> 64 80x80 0.48x), and 3x3 stride-1 forwards of 1024 input channels winograd's
# (14x14 -> 256 7.35 / 5.16). With the rows as they stand, on 112 layers of one image (about 60 of
# them random, which drew the limits; 1-D to 3-D, kernels 1-7, strides, dilation), the passes that
# moved, time now over before, medians of 5 interleaved rounds (float64 3), each sample after a 0.15
# s pause (as the bench's ``SETTLE_S``: OpenBLAS's threads spin for about 0.1 s after a call, and a
# first run without the pause put numba's calls after BLAS's beside them): float32 forward 57 moved,
# geomean 0.64 (0.23-1.52), input gradient 34, 0.65 (0.23-1.15), weight gradient 53, 0.66
# (0.25-1.35); float64 (with its rows in ``AUTO_DTYPE_RULES``) 48, 0.63 (0.32-1.06); 34, 0.63
# (0.25-1.42); 51, 0.61 (0.26-1.19). The passes past 1.2x were calls under 0.35 ms but for float64's
# input gradients of 3x3 layers (1024 -> 256 10x10 1.42, 128 -> 256 28x28 d2 1.20); such calls'
# ratios moved by up to +-30 % from one run to the next.
AUTO_ONE_IMAGE_CHANNELS = 128  # input channels, one group: from these (and 33+ outputs) BLAS runs one image
AUTO_ONE_IMAGE_GRAD_INPUT_CHANNELS = 256  # ... its input gradient from these
AUTO_ONE_IMAGE_PIXELS = 1024  # ... its weight gradient, and a forward of a kernel past 1x1, up to these output pixels
AUTO_ONE_IMAGE_WINOGRAD_CHANNELS = 512  # 3x3 at stride 1: from these each side the forward stays winograd's
AUTO_ONE_IMAGE_WINOGRAD_INPUTS = 1024  # ... and from these input channels
AUTO_ONE_IMAGE_MIN_INPUTS = 16  # fewer input channels: with many outputs for them (below), still numba's
AUTO_ONE_IMAGE_MANY_OUTPUTS = 96  # output channels, and 2x the input's: BLAS's from 16 input channels
AUTO_ONE_IMAGE_MIN_REDUCTION = 200  # ... and this many input channels x taps (3x3 from 24 channels; 16 ran numba)
# The forward of a kernel past 1x1 over many input channels (not the many outputs for few above) went
# to BLAS up to 1024 output pixels, a line drawn from 56x56 and 40x40 images (above); between 64 and
# 1024 pixels numba's kernels have since run it faster. Two threads, float32, `fastconv bench --pass
# forward --backends auto,torch --repeat 7` (2026-12-05, Intel Xeon), auto's time over torch's,
# BLAS's / numba's, one image: 5x5 256 -> 256 14x14 2.41 / 1.63, 16x16 -> 192 2.38 / 1.52, 18x18
# 2.15 / 1.59, 20x20 2.00 / 1.41, 24x24 -> 192 2.06 / 1.43, 28x28 2.09 / 1.41; 3x3 s2 384 -> 128
# 36x36 2.20 / 1.41, 256 -> 80 56x56 2.36 / 1.44, 128 -> 128 40x40 1.80 / 1.83. At 64 pixels and
# under, BLAS's as before (3x3 s2 384 -> 64 7x7 0.21 against numba's 0.38 ms at the rows' drawing),
# and 1-D and 3-D calls (1-D k3 d2 128 -> 128 over 1024 0.69 against 1.37 then).
AUTO_ONE_IMAGE_FORWARD_PIXELS = 64


def _one_image(g: Geometry) -> bool:
    """One image of one group, on full-width AVX-512, of ``AUTO_ONE_IMAGE_CHANNELS`` input channels or
    more and more than ``AUTO_FEW_OUT_CHANNELS`` output channels, or of many outputs for its inputs
    (``_one_image_many_outputs``)."""
    if g.n != 1 or g.groups != 1 or not _full_width(g):
        return False
    return g.c_in >= AUTO_ONE_IMAGE_CHANNELS and g.c_out > AUTO_FEW_OUT_CHANNELS or _one_image_many_outputs(g)


def _one_image_many_outputs(g: Geometry) -> bool:
    """``AUTO_ONE_IMAGE_MIN_INPUTS`` input channels or more, at least ``AUTO_ONE_IMAGE_MANY_OUTPUTS``
    output channels and twice the input's, a kernel past 1x1, ``AUTO_ONE_IMAGE_MIN_REDUCTION``
    input channels times taps or more, one image in the 2-D call that runs (a 1x3x3 kernel's lift
    runs the depth's planes as images)."""
    return (g.c_in >= AUTO_ONE_IMAGE_MIN_INPUTS and g.c_out >= max(AUTO_ONE_IMAGE_MANY_OUTPUTS, 2 * g.c_in)
            and math.prod(g.kernel) > 1 and g.c_in * math.prod(g.kernel) >= AUTO_ONE_IMAGE_MIN_REDUCTION
            and as_2d(g).n == 1)


def _one_image_forward(g: Geometry) -> bool:
    """``_one_image`` with a 1x1 kernel or up to ``AUTO_ONE_IMAGE_PIXELS`` output pixels (a 2-D kernel
    other than 3x3 at stride 1 over many input channels, not many outputs for few, up to
    ``AUTO_ONE_IMAGE_FORWARD_PIXELS``), but not 3x3 at stride 1 on ``AUTO_WEIGHT_TILES`` F(2x2)
    tiles or more, nor on ``AUTO_FEW_TILES`` or more with ``AUTO_ONE_IMAGE_WINOGRAD_CHANNELS``
    channels each side or ``AUTO_ONE_IMAGE_WINOGRAD_INPUTS`` input channels (winograd's rows)."""
    if not _one_image(g) or math.prod(g.kernel) > 1 and _pixels(g) > AUTO_ONE_IMAGE_PIXELS:
        return False
    if (g.ndim == 2 and math.prod(g.kernel) > 1 and not _is_3x3s1(g) and _pixels(g) > AUTO_ONE_IMAGE_FORWARD_PIXELS
            and not _one_image_many_outputs(g)):
        return False
    if not _is_3x3s1(g) or _tiles(g) < AUTO_FEW_TILES:
        return True
    return (_tiles(g) < AUTO_WEIGHT_TILES and min(g.c_in, g.c_out) < AUTO_ONE_IMAGE_WINOGRAD_CHANNELS
            and g.c_in < AUTO_ONE_IMAGE_WINOGRAD_INPUTS)


def _one_image_grad_input(g: Geometry) -> bool:
    """``_one_image`` from ``AUTO_ONE_IMAGE_GRAD_INPUT_CHANNELS`` input channels (or with many outputs
    for its inputs), up to ``AUTO_ONE_IMAGE_PIXELS`` output pixels as the other two rows, but not 3x3
    at stride 1 on ``AUTO_FEW_TILES`` F(2x2) tiles or more. Past those pixels BLAS's input gradient
    left its threads spinning into numba's weight gradient (the other row's pick there): two threads,
    float32, `fastconv bench --pass backward` (2026-12-05, Intel Xeon), auto's time over torch's
    before / after: one image 5x5 256 -> 512 38x38 2.35 / 1.44, 384 -> 192 40x40 2.01 / 1.40, 256 ->
    64 56x56 2.22 / 1.54, 256 -> 128 40x40 2.61 / 1.52, 7x7 256 -> 96 36x36 1.95 / 1.73; six layers
    within the line unchanged (5x5 256 -> 256 32x32 1.67 / 1.70, 3x3 s2 256 -> 128 56x56 1.30 /
    1.29). (Timed alone, each after an idle pause, BLAS's input gradient had won at 56x56.)"""
    return (_one_image(g) and (g.c_in >= AUTO_ONE_IMAGE_GRAD_INPUT_CHANNELS or _one_image_many_outputs(g))
            and _pixels(g) <= AUTO_ONE_IMAGE_PIXELS
            and not (_is_3x3s1(g) and _tiles(g) >= AUTO_FEW_TILES))


def _one_image_weight(g: Geometry) -> bool:
    """``_one_image`` up to ``AUTO_ONE_IMAGE_PIXELS`` output pixels, but not 3x3 at stride 1 on
    ``AUTO_FEW_TILES`` F(2x2) tiles or more: those go to the few-tiles row (numba's, up to
    ``AUTO_WEIGHT_TILES``) and winograd's. Measured in its backward pass, where BLAS's gradient
    followed winograd's input gradient: two threads, float32, `fastconv bench --pass backward
    --backends auto,torch --repeat 7` (2026-12-05, Intel Xeon), auto's time over torch's, BLAS's
    gradient / the new pick, one image 3x3: 384 -> 192 28x28 (196 tiles) 1.51 / 0.91, 256 -> 256
    28x28 1.41 / 0.87, 192 -> 384 28x28 1.48 / 0.85, 128 -> 128 32x32 1.45 / 0.97, 384 -> 384 24x24
    1.57 / 0.96, 256 -> 256 32x32 1.27 / 0.70, 512 -> 512 28x28 1.36 / 0.85; 256 -> 256 20x20 (100)
    1.64 / 1.26, 384 -> 384 18x18 (81) 2.10 / 1.41, 512 -> 512 16x16 (64) 1.65 / 1.37, 14x14 (49)
    1.93 / 1.48, 256 -> 256 14x14 1.87 / 1.62, 384 -> 192 16x16 1.72 / 1.50. (numba's gradient
    at 128+ tiles, in place of winograd's: 1.06-1.18, but for 256 -> 256 32x32 0.96.) Timed alone,
    each after an idle pause, BLAS's gradient had looked no slower: the pause hid the spin its BLAS
    threads leave (README, "Threads")."""
    return (_one_image(g) and _pixels(g) <= AUTO_ONE_IMAGE_PIXELS
            and not (_is_3x3s1(g) and _tiles(g) >= AUTO_FEW_TILES))


# A 3-D kernel of one tap across a plane (kD x 1 x 1, R(2+1)D's temporal layers) is a sum of kD 1x1
# products of whole planes (``_im2col_shifted``: BLAS on shifted views, no patches), where numba
# runs it as a kD x 1 kernel over (D, H*W) on its tiles of output pixels. Two threads, float32, each
# pass alone, medians of 5 interleaved rounds (no idle pause: see ``AUTO_ONE_IMAGE_*``; the 13
# layers' figures below had it), an Intel Xeon (2026-12-04), ms im2col / numba, forward, input
# gradient (weight gradient: ties either way, 0.86-1.41, left to the rows below):
# 3x1x1 N=8 256 -> 128 4x28x28 19.8 / 44.5, 23.6 / 39.2; N=4 64 -> 64 8x56x56 15.8 / 21.4, 17.6 /
# 22.2; N=8 128 -> 128 8x14x14 5.85 / 6.21, 6.43 / 6.23; N=16 32 -> 32 16x28x28 10.8 / 11.5, 12.8 /
# 12.3; N=4 144 -> 64 8x28x28 7.16 / 11.7, 9.36 / 11.4; N=4 256 -> 256 16x14x14 21.9 / 27.0, 23.8 /
# 27.6; N=2 64 -> 64 16x56x56 16.6 / 21.8, 18.9 / 22.0. (2-D 7x1 and 1x7 kernels, whose rows are not
# planes, ran faster on numba: N=8 128 -> 192 17x17 7x1 forward 4.12 / 3.32.) Where the rows stop,
# 8 more layers: few channels, N=32 16 -> 32 8x28x28 forward 8.32 / 5.04, input gradient 6.69 /
# 5.59; the input gradient of few output channels, N=16 48 -> 24 8x56x56 43.0 / 31.2. On the 13
# past the lines (kD 2, 3 and 5), time BLAS's over numba's, each sample after a 0.15 s pause (see
# ``AUTO_ONE_IMAGE_*``): forward geomean 0.81 (0.48-1.33), input gradient 0.83 (0.61-1.49; float64
# 0.70 and 0.47); the losses N=8 128 -> 128 8x14x14 (1.33, 1.49) and the input gradient of N=8
# 128 -> 64 2x1x1 4x56x56 (1.17).
AUTO_PLANE_TAPS_CHANNELS = 32  # per side, from which the forward runs BLAS
AUTO_PLANE_TAPS_GRAD_INPUT_OUTPUTS = 64  # output channels from which the input gradient does


def _plane_taps(g: Geometry) -> bool:
    """A 3-D kernel of one tap across a plane and more than one deep, unit stride and dilation, one
    group, on full-width AVX-512."""
    return (g.ndim == 3 and g.kernel[0] > 1 and g.kernel[1:] == (1, 1) and g.stride == (1, 1, 1)
            and g.dilation == (1, 1, 1) and g.groups == 1 and _full_width(g))


def _strided_pointwise(g: Geometry) -> bool:
    """A 2-D 1x1 kernel at a stride, one group, on full-width AVX-512: numba's input gradient (its
    products on three-vector tiles, ``_numba_gemm.BATCH_NV``, beside a scatter into the pixels read)
    ran faster than BLAS's. Float32, each pass alone after a 0.15 s pause, medians of 7 interleaved
    rounds, two threads, an Intel Xeon (2026-12-05), numba's time over im2col's: 256 -> 512 28x28
    N=32 0.75, N=8 0.62, 512 -> 1024 14x14 0.64, 1024 -> 2048 0.96, 64 -> 128 56x56 0.91, 64 -> 256
    28x28 0.79, 128 -> 256 N=16 0.62. At unit stride BLAS kept most (1.10-1.68; 7x7 images, whose 49
    pixels fill a three-vector panel and a column, 0.73-0.96, but 8x8 1.26: not a rule). In float64
    mixed (0.93, 1.12, 1.05): ``AUTO_DTYPE_RULES`` keeps BLAS's there."""
    return g.ndim == 2 and g.groups == 1 and math.prod(g.kernel) == 1 and max(g.stride) > 1 and _full_width(g)


# numba's patches forward over few output pixels splits the output channels among the threads
# (``_numba_patches._row_blocks``), each reading its own rows of the weight where they lie
# (``_numba_gemm.batch_rows``), where BLAS (and the patches before) split the pixels and packed the
# whole weight for a few columns. Two threads, float32, forward ms im2col / numba / torch, 7
# interleaved rounds (`fastconv bench`, each sample after its idle pause), an Intel Xeon
# (2026-12-05): 3x3 at stride 1, 512 -> 512 one 7x7 image 2.67 / 1.97 / 1.30, two 5.36 / 2.56 /
# 1.89; 1024 -> 1024 one 7x7 14.9 / 5.96 / 14.8; 384 -> 384 12x12 2.55 / 1.80 / 1.51; at stride 2
# 512 -> 512 14x14 2.64 / 2.05 / 1.41. At 256 input channels a tie or a loss: 7x7 0.83 / 1.13,
# 10x10 1.10 / 1.04, 256 -> 512 14x14 at stride 2 1.42 / 1.42 (back to back, without the pause,
# numba's 0.71, 1.07 against BLAS's 0.80, 1.23: its second thread's wake-up is a larger share of
# these); below, BLAS's lead grows (128 -> 128 7x7 0.29 / 0.47, 96 -> 192 10x10 0.39 / 0.64).
# The gradients stay BLAS's (numba's 1.2-4x its time on these layers), and so does float64's
# forward (``AUTO_DTYPE_RULES``: numba's 1.28-1.97x BLAS's time on six of these layers, before
# ``batch_rows``).
AUTO_PATCH_ROWS_CHANNELS = 384  # input channels per group from which numba's patches run the forward


def _patch_rows(g: Geometry) -> bool:
    """One group of ``AUTO_PATCH_ROWS_CHANNELS`` input channels or more whose forward runs numba's
    patches with the threads splitting the output channels (``numba_jit.patch_rows``), on
    full-width AVX-512; not 3x3 at stride 1 on ``AUTO_FEW_TILES`` F(2x2) tiles or more, which
    winograd's rows and the one-image rows decide (not measured against numba's patches)."""
    return (g.groups == 1 and g.c_in >= AUTO_PATCH_ROWS_CHANNELS and _full_width(g)
            and not (_is_3x3s1(g) and _tiles(g) >= AUTO_FEW_TILES) and _backend_says("numba", "patch_rows", g))


# On AVX-512's half-width units (AMD Zen 4) the same patches, the threads splitting the output
# channels, beat BLAS from fewer channels, but were measured only on 3x3 layers at stride 1 over few
# F(2x2) tiles (``AUTO_FEW_TILES``: one or two small images), which the few-tiles row had sent to
# BLAS (its line was drawn against winograd, before numba's patches ran at stride 1); other kernels
# over few pixels ran numba's patches there already. Two threads, float32, forward, `fastconv bench
# --backends im2col,numba,winograd,torch --pass both --repeat 7` (each sample after its idle pause;
# 2026-12-05, Zen 4), time over torch's, im2col / numba / winograd, one image of 3x3 unless said:
# 512 -> 512 7x7 1.67 / 1.09 / 1.41 (another run 3.47 / 1.20 / 1.55), two 2.34 / 1.34 / 1.16; 256 ->
# 256 7x7 2.28 / 0.85 / 1.87, two 2.81 / 1.53 / 1.75, 8x8 1.65 / 1.19 / 1.76, 10x10 1.85 / 1.43 /
# 1.56; 384 -> 384 12x12 1.71 / 1.20 / 1.50; 256 -> 512 7x7 1.33 / 1.03 / 1.95; 128 -> 128 12x12
# 1.49 / 1.23 / 3.15. Medians of 7 calls after an idle pause, each pass alone (ms, im2col /
# numba): 512 7x7 1.86 / 1.73, 256 7x7 0.60 / 0.54, 384 12x12 2.58 / 2.08, two 128 7x7 0.64 /
# 0.45. Below 12M multiply-adds BLAS kept its lead or tied: 128 -> 128 7x7 (7.2M) 0.37 / 0.42 ms,
# the bench 1.99 / 3.30; 8x8 (9.4M) 2.09 / 2.94 in the bench, 0.35 / 0.29 ms; 192 -> 192 7x7
# (16M) 0.42 / 0.44 ms, the bench 2.11 / 1.27. The gradients stay the few-tiles row's (numba's
# input gradient 1.3-1.9x BLAS's time there, its weight gradient 1.1-1.8x). After a BLAS call the
# lead is gone (BLAS's idle threads spin into numba's): a bottleneck block of one image, 1x1 on BLAS,
# the 3x3, 1x1 on BLAS, ms with the 3x3 on BLAS / numba, 2048 -> 512 7x7 4.95 / 5.03, 1536 -> 384
# 12x12 7.84 / 7.35. (The input gradient on winograd from 25 tiles, 0.7-0.9x BLAS's time alone,
# moved auto's backward beside BLAS's weight gradient by 0.72-1.89x, four of five layers slower:
# not kept.)
AUTO_FEW_TILES_PATCH_ROWS_MACS = 12_000_000


def _few_tiles_patch_rows(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 2-D 3x3 stride-1 call of one group on few F(2x2) tiles
    (``_few_tiles``) with ``AUTO_FEW_TILES_PATCH_ROWS_MACS`` multiply-adds or more whose forward runs
    numba's patches with the threads splitting the output channels (``numba_jit.patch_rows``), or its
    images as the tiles' columns, which split them too and take such calls of 8+ images first."""
    return (g.ndim == 2 and g.groups == 1 and _few_tiles(g) and g.macs >= AUTO_FEW_TILES_PATCH_ROWS_MACS
            and _half_width(g) and (_backend_says("numba", "patch_rows", g) or _backend_says("numba", "images", g)))


# The weight gradient of 2-D kernels past 3x3 at stride 1 on outputs whose padded rows are 1.4x
# their width or more (7x7 to 9x9 outputs of 5x5 and 7x7 kernels), 256+ channels a side, one group:
# numba's implicit product (``_numba_implicit``) sums over "wide" rows, the padded input's width
# (11-13 columns for 7 outputs), a third to a half of them thrown away, where BLAS's patches hold
# the outputs alone. Two threads, float32, each gradient alone, medians of 5 calls, an AMD Zen 4
# (AVX-512 on 256-bit units, 2026-12-05), ms im2col / numba: N=32 C=256 7x7 5x5 31.7 / 37.3, C=512
# 112.6 / 154.6; N=16 C=256 7x7 7x7 31.2 / 44.3, N=8 C=512 62.6 / 115.2; N=32 C=256 9x9 5x5 52.0 /
# 56.5, 5x5 5x5 17.3 / 22.4; N=4 C=256 7x7 5x5 4.4 / 6.5. Past the lines: C=128 7x7 5x5 11.7 / 10.3,
# C=64 4.5 / 2.6, 10x10 7x7 C=128 38.6 / 37.4, 64 -> 128 7x7 7x7 5.0 / 5.7; 13x13 and 14x14 (1.29-1.31)
# C=128-256 1.00-1.22x. Not measured on full-width AVX-512 nor without AVX-512: not there.
AUTO_WIDE_ROWS_RATIO = 1.4  # the padded input's width over the output's
AUTO_WIDE_ROWS_CHANNELS = 256  # per side


def _wide_rows_weight(g: Geometry) -> bool:
    """The weight gradient's row above (``AUTO_WIDE_ROWS_RATIO``), with numba's register tiles on
    half-width AVX-512 units."""
    return (g.ndim == 2 and g.groups == 1 and g.stride == (1, 1) and g.dilation == (1, 1) and g.kh * g.kw > 9
            and min(g.c_in, g.c_out) >= AUTO_WIDE_ROWS_CHANNELS
            and g.iw + g.pl + g.pr >= AUTO_WIDE_ROWS_RATIO * g.ow
            and _half_width(g))


# 3x3 kernels at stride 1 with fewer channels than ``winograd.beats_direct``'s 64, on AVX-512's
# half-width units: winograd's forward and input gradient beat numba's loops on images of 28x28
# and up from 32 channels, and 3x3x3 kernels on any planes from 32 channels (its products reduce
# over the kernel's depth times the channels), on planes of 28x28 and up from 16; its weight
# gradient is numba's below ``winograd.WEIGHT_MIN_CHANNELS``. Two threads, each pass alone, ms
# numba / winograd, medians of 5-7 interleaved rounds (2026-12-06, an AMD Zen 4), float32 forward,
# input gradient. 2-D: N=32 C=32 56x56 11.8 / 8.6, 11.8 / 8.6; C=48 24.4 / 15.1, 24.7 / 15.2; C=32
# 28x28 3.16 / 2.40, 3.14 / 2.29; C=48 6.28 / 4.17, 6.33 / 4.15; N=64 C=32 32x32 7.80 / 5.25, 7.90 /
# 5.23; N=8 C=32 112x112 11.0 / 8.6, 11.1 / 8.6; not on smaller images (N=16 C=32 20x20 0.74 /
# 0.81, 0.77 / 0.81; N=32 C=32 14x14 0.74 / 0.91; N=16 C=48 14x14 0.81 / 0.80) nor 16 channels
# (N=32 56x56 3.92 / 3.80; N=128 32x32 5.10 / 4.41: left to numba). 3x3x3: N=2 C=32 16x56x56 36.5 /
# 25.1, 42.3 / 23.7; N=4 C=32 8x28x28 10.0 / 6.5, 10.6 / 6.5; N=8 C=32 8x14x14 5.8 / 4.5, 4.8 / 4.1;
# N=4 C=32 16x16x16 8.0 / 7.6, 6.7 / 5.9; N=1 C=32 8x112x112 38.1 / 21.3, 42.4 / 23.5; N=8 C=48
# 8x16x16 14.6 / 9.1, 12.6 / 9.4; N=4 C=40 8x10x10 4.1 / 2.1, 2.7 / 2.0; 64 -> 32 8x8x8 1.55 / 1.06,
# 1.17 / 1.02; 16-24 channels on 28x28 planes and up: N=4 C=16 16x32x32 8.8 / 6.3, 7.9 / 5.7; N=2
# C=16 16x56x56 12.1 / 8.4, 10.7 / 8.0; N=2 C=16 16x28x28 3.9 / 2.8, 3.1 / 2.7; N=4 C=20 8x28x28
# 4.7 / 4.1, 4.1 / 3.7; N=2 C=24 16x28x28 6.2 / 4.2, 5.5 / 4.1; not on smaller planes of fewer
# channels (N=8 C=24 8x16x16 6.1 / 6.3, 4.4 / 6.7), nor the input gradient on 8x8 planes (C=32 2.3
# / 2.8; the forward 4.3 / 2.2 there). float64 alike or more so: 2-D N=32 C=32 56x56 24.7 / 13.5,
# 23.1 / 13.7, N=32 C=48 28x28 25.2 / 11.2, 28.2 / 12.1, N=16 C=32 20x20 1.73 / 1.74, 1.80 / 1.67;
# 3x3x3 N=2 C=32 16x56x56 120 / 54, 120 / 47; N=4 C=16 16x32x32 15.6 / 9.8, 14.0 / 9.4. The weight
# gradient the same either way (0.89-1.08). (`fastconv bench --backends auto,numba,torch --pass
# both --repeat 7`, over torch's time, auto now / numba's in the same run, forward, backward: N=32
# C=48 56x56 0.68 / 0.93, 0.84 / 0.93; 3x3x3 N=2 C=32 16x56x56 0.90 / 1.39, 1.14 / 1.49.)
AUTO_FEW_CHANNELS_WINOGRAD = 32  # per group, each side
AUTO_FEW_CHANNELS_WINOGRAD_3D = 16  # ... 3x3x3: from these on planes of AUTO_FEW_CHANNELS_WINOGRAD_PIXELS
AUTO_FEW_CHANNELS_WINOGRAD_PIXELS = 784  # output pixels of an image (a plane): 28x28
AUTO_FEW_CHANNELS_WINOGRAD_GRAD_INPUT_PIXELS = 100  # the input gradient's 3-D planes: at least 10x10


def _few_channels_winograd(g: Geometry, least_pixels: int = 0) -> bool:
    """On AVX-512's half-width units, 3x3 at stride 1 (2-D, or 3x3x3), undilated, one group, with
    fewer channels than winograd's own rows take (``winograd.beats_direct``): 2-D with
    ``AUTO_FEW_CHANNELS_WINOGRAD`` channels a side on ``AUTO_FEW_CHANNELS_WINOGRAD_PIXELS`` output
    pixels; 3x3x3 with as many channels on any planes, or ``AUTO_FEW_CHANNELS_WINOGRAD_3D`` on
    planes of those pixels; and output images (planes) of ``least_pixels`` at least."""
    deep = g.ndim == 3 and g.kernel[0] == 3
    if not ((g.ndim == 2 or deep) and g.groups == 1 and _is_3x3s1(g) and g.stride[0] == g.dilation[0] == 1
            and _half_width(g)) or _backend_says("winograd", "beats_direct", g):
        return False
    least, pixels = min(g.c_in, g.c_out), _pixels(g)
    if pixels < least_pixels:
        return False
    if pixels >= AUTO_FEW_CHANNELS_WINOGRAD_PIXELS:
        return least >= (AUTO_FEW_CHANNELS_WINOGRAD_3D if deep else AUTO_FEW_CHANNELS_WINOGRAD)
    return deep and least >= AUTO_FEW_CHANNELS_WINOGRAD


# On AVX-512's half-width units the input gradient of layers with many output channels beside few
# input ones (gy's many channels summed into few) runs faster on BLAS than on numba's loops, whose
# tiles have few output channels to fill: the full-width row (``_many_outputs``) measured there.
# Two threads, each pass alone after an idle pause and 30 ms of its own calls, ms over torch's in
# the same process, numba / im2col, medians of 7 interleaved rounds (2026-12-06, an AMD Zen 4),
# float32: 3x3 N=16 16 -> 512 28x28 1.32 / 1.08, 14x14 2.05 / 1.39; N=1 48 -> 512 14x14 1.94 /
# 1.15; N=16 32 -> 512 10x10 2.73 / 2.31; N=32 48 -> 512 7x7 3.43 / 2.23; N=8 8 -> 384 28x28 0.98 /
# 0.72; 5x5 N=2 48 -> 512 7x7 4.77 / 2.36; N=8 48 -> 384 7x7 4.65 / 3.56; N=2 64 -> 512 17x17 2.30
# / 1.41; N=8 24 -> 384 14x14 1.73 / 1.59; 7x7 N=4 32 -> 512 14x14 2.47 / 1.70; N=16 8 -> 512 28x28
# 0.88 / 0.73; 1-D k5 N=8 64 -> 512 over 1024 1.13 / 1.09, N=4 16 -> 384 over 2048 1.21 / 1.25.
# float64 more so (3x3 N=16 16 -> 512 14x14 2.60 / 0.95; 5x5 N=8 48 -> 384 7x7 2.34 / 1.05). Not
# from 256 output channels (5x5 N=16 16 -> 256 20x20 1.70 / 1.93, 32 -> 256 14x14 1.83 / 1.92; 1-D
# k7 16 -> 256 0.97 / 1.08), nor at a stride (5x5 s2 N=8 32 -> 512 14x14 1.36 / 2.23, 3x3 s2 N=32
# 48 -> 512 1.09 / 1.59), nor in groups (3x3 s2 two groups of 24 -> 256 17x17 3.57 / 1.73 but the
# other passes 1.77 / 4.28, 1.55 / 2.89), nor in the other passes (forward 3x3 N=32 3 -> 512 28x28
# 0.19 / 0.26, 5x5 s2 N=8 32 -> 512 1.63 / 2.34; weight gradient 3x3 s2 N=32 48 -> 512 0.85 / 1.28,
# 5x5 N=16 3 -> 512 14x14 1.86 / 2.75: no line held). Nor on one image: timed as a backward runs
# them, the input gradient then numba's weight gradient back to back, BLAS's threads left spinning
# took more of the weight gradient's time than they saved (ms over torch's input gradient, BLAS's
# input gradient / numba's: N=1 3x3 48 -> 512 14x14 4.77 / 3.28, 16 -> 512 28x28 3.29 / 3.05; 1-D
# k5 64 -> 512 over 2048 3.71 / 2.47, k7 24 -> 384 6.68 / 3.73; 5x5 32 -> 384 20x20 4.73 / 4.32),
# where two images and more still gained (5x5 N=2 48 -> 512 7x7 5.81 / 7.37, N=8 48 -> 384 6.04 /
# 7.75, N=2 64 -> 512 17x17 3.29 / 4.17; 7x7 N=4 32 -> 512 14x14 3.92 / 4.43; 3x3 N=16 16 -> 512
# 14x14 3.10 / 3.29; N=8 24 -> 384 5x5 2.75 / 2.91; N=16 8 -> 512 7x7 1.53 / 1.58).
AUTO_HALF_WIDTH_MANY_OUT_GRAD_INPUT_CHANNELS = 384  # per group, and AUTO_MANY_OUT_RATIO times the input's


def _half_width_many_outputs(g: Geometry) -> bool:
    """On AVX-512's half-width units, a kernel past 1x1 at unit stride in one group over two images
    or more (of the 2-D call) with ``AUTO_HALF_WIDTH_MANY_OUT_GRAD_INPUT_CHANNELS`` output channels
    or more, ``AUTO_MANY_OUT_RATIO`` times the input's; not a layer that winograd's own rows take
    (``_winograd_channels``)."""
    return (g.groups == 1 and max(g.stride) == 1 and as_2d(g).n >= 2
            and _many_out_channels(g, AUTO_HALF_WIDTH_MANY_OUT_GRAD_INPUT_CHANNELS)
            and _half_width(g) and not _winograd_channels(g))


# winograd's own rows start at 64 channels a side (``winograd.beats_direct``); on AVX-512's
# half-width units its fixed cost a call (the kernel's transform, its items' start) is not repaid
# by small 2-D calls of 64-79 channels on small images, where numba's implicit forward runs: its
# forward there, same method as above, ms over torch's, numba / winograd: 3x3 64 -> 64 N=2 14x14
# (98 F(2x2) tiles) 1.45 / 2.38, N=4 14x14 1.37 / 1.72, N=6 14x14 1.24 / 1.45, N=4 10x10 1.59 /
# 2.26, N=2 12x12 1.69 / 2.66; 64 -> 128 N=1 16x16 1.30 / 1.70; 64 -> 80 N=3 14x14 1.49 / 1.49;
# under ``AUTO_FEW_TILES``, where the few-tiles row gave BLAS's (numba / im2col): N=1 9x9 1.37 /
# 1.91, 12x12 1.33 / 1.89, N=2 8x8 1.81 / 4.08.
# Not past 256 output pixels an image (N=1 64 -> 64 28x28 1.67 / 1.51, N=1 35x35 1.92 / 1.46, N=2
# 64 -> 128 20x20 1.29 / 1.15), nor from 300 tiles (N=8 14x14 1.20 / 1.14), nor from 80 channels
# (N=2 96 -> 96 17x17 2.62 / 1.83, N=2 128 -> 128 14x14 2.35 / 1.57), nor in the input gradient
# (64 -> 80 N=3 14x14 1.94 / 1.64, 64 -> 128 N=1 16x16 1.64 / 1.47), nor in float64 (N=2 14x14
# 1.87 / 1.07, N=4 10x10 2.15 / 0.85: ``AUTO_DTYPE_RULES``). On ten layers drawn after that:
# 64 -> 64 N=8 8x8 1.57 / 1.80, N=2 12x12 1.58 / 3.14, N=1 13x13 1.06 / 5.36; 64 -> 72 N=1 15x15
# 1.15 / 1.42; 64 -> 128 N=6 6x6 1.72 / 2.51; but not past 128 channels on the larger side (64 ->
# 256 N=1 16x16 1.66 / 1.17, N=4 11x11 1.40 / 1.10; 64 -> 192 N=4 8x8 1.54 / 1.45), since left out.
AUTO_HALF_WIDTH_SMALL_WINOGRAD_CHANNELS = 80  # on the smaller side: below, ...
AUTO_HALF_WIDTH_SMALL_WINOGRAD_MAX_CHANNELS = 128  # ... up to these on the larger, ...
AUTO_HALF_WIDTH_SMALL_WINOGRAD_PIXELS = 256  # ... up to these output pixels an image ...
AUTO_HALF_WIDTH_SMALL_WINOGRAD_TILES = 300  # ... and under these F(2x2) tiles in the batch: numba's forward


def _half_width_small_winograd(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 2-D 3x3 stride-1 call of one group that winograd's own rows
    take (``_winograd_channels``) with under ``AUTO_HALF_WIDTH_SMALL_WINOGRAD_CHANNELS`` channels on
    its smaller side and ``AUTO_HALF_WIDTH_SMALL_WINOGRAD_MAX_CHANNELS`` at most on the larger,
    ``AUTO_HALF_WIDTH_SMALL_WINOGRAD_PIXELS`` output pixels an image at most, under
    ``AUTO_HALF_WIDTH_SMALL_WINOGRAD_TILES`` F(2x2) tiles, whose forward numba's implicit forward
    runs."""
    return (g.ndim == 2 and g.groups == 1 and _winograd_channels(g)
            and min(g.c_in, g.c_out) < AUTO_HALF_WIDTH_SMALL_WINOGRAD_CHANNELS
            and max(g.c_in, g.c_out) <= AUTO_HALF_WIDTH_SMALL_WINOGRAD_MAX_CHANNELS
            and _pixels(g) <= AUTO_HALF_WIDTH_SMALL_WINOGRAD_PIXELS and _tiles(g) < AUTO_HALF_WIDTH_SMALL_WINOGRAD_TILES
            and _half_width(g) and _backend_says("numba", "implicit_forward", g))


# The row of 3x3 stride-1 calls on few pixels with many input channels (``_blas_shaped``) gives
# winograd calls of few output channels, where its products are (C_out x C_in) by (C_in x tiles) with
# few rows, and its input gradient's (C_in x C_out) with a short contraction. On AVX-512's
# half-width units numba's forward and input gradient beat it there. Two threads, float32, each
# pass alone (an idle pause, 30 ms of its calls, then 20 ms timed), time over torch's, medians of 3
# interleaved rounds (2026-12-06, an AMD Zen 4), forward then input gradient, numba / winograd:
# N=8 128 -> 3 7x7 1.84 / 2.35, 0.62 / 2.29; -> 8 12x12 1.42 / 2.45, 1.07 / 3.40; -> 16 7x7 1.95 /
# 3.99, 1.74 / 5.15; -> 32 12x12 1.47 / 3.03, 1.46 / 2.62; 512 -> 3 12x12 1.19 / 1.72, 0.55 / 1.20;
# -> 8 7x7 2.10 / 2.38, 1.19 / 9.74; -> 16 12x12 1.46 / 2.65, 1.70 / 3.16; -> 32 7x7 2.15 / 3.63,
# 2.03 / 3.06; N=32 128 -> 3 12x12 1.17 / 2.00, 0.56 / 1.11; -> 8 7x7 1.62 / 2.28, 1.17 / 3.13; -> 16
# 12x12 1.39 / 2.33, 1.37 / 2.08; -> 32 7x7 1.89 / 2.54, 1.77 / 2.40; 512 -> 3 7x7 1.80 / 2.54, 0.53
# / 1.54; -> 8 12x12 1.04 / 1.49, 0.76 / 1.84; -> 16 7x7 1.65 / 3.26, 1.78 / 2.95; -> 32 12x12 1.29
# / 1.44, 1.41 / 1.41; 3x3x3 N=8 384 -> 3 4x7x7 2.14 / 3.05, 1.36 / 3.92, -> 8 2.04 / 3.23, 2.24 /
# 3.84, -> 32 2.70 / 3.23, 2.71 / 3.00; N=4 256 -> 8 8x14x14 1.57 / 2.11, 1.47 / 2.50. At 48 output
# channels they split (7x7 and 12x12, N=8 and 32, 128 and 512 inputs: numba's forward won 4 of
# 8, winograd's 2; the input gradient 3 and 3), the line left there. The weight gradients tied
# (numba / winograd 0.90-1.10 but for 512 -> 8 12x12 at N=32, 1.31, and 3x3x3 8x14x14 -> 8, 1.33):
# they stay winograd's. (The random layers that found it: N=64 128 -> 3 7x7, N=4 512 -> 8 12x12
# and 3x3x3 N=8 384 -> 3 4x7x7, 1.9-3.4x torch's time on winograd's forward.) Checked on layers
# drawn after (ms numba / winograd): N=8 384 -> 32 14x14 2.85 / 4.20, 2.44 / 3.52; N=16 384 -> 32
# 7x7 1.66 / 1.78, 1.49 / 1.75; N=32 96 -> 32 10x10 1.35 / 1.48, 1.39 / 1.73; 1x3x3 N=2 256 -> 24
# 8x7x7 1.35 / 1.83, 1.16 / 1.99; 3x3x3 N=8 512 -> 16 4x4x4 3.65 / 4.66, but its input gradient
# 10.1 / 5.37 (and N=4 96 -> 32 4x4x4 3.40 / 1.61): numba's input gradient only from planes of
# 7x7 (``AUTO_HALF_WIDTH_FEW_OUT_PIXELS``).
AUTO_HALF_WIDTH_FEW_OUT_3X3 = 48  # output channels under which ...
AUTO_HALF_WIDTH_FEW_OUT_PIXELS = 49  # ... from these output pixels an image (a plane): the input gradient's row
# (and ``_half_width_few_outputs_weight``'s: both lost on 4x4 planes, below)


# On full-width units (an Intel Xeon, family 6 model 167, 2026-12-07; each pass alone as above, ms
# numba / winograd, float32, forward, input gradient, weight gradient): N=16 512 -> 32 7x7 1.27 /
# 1.89, 1.39 / 1.51, 2.72 / 2.57; N=32 256 -> 16 7x7 0.77 / 1.11, 0.78 / 1.35, 1.14 / 1.10; N=8 384
# -> 24 10x10 0.81 / 1.41, 0.79 / 1.13, 1.43 / 1.43; N=16 256 -> 32 12x12 1.32 / 1.78, 1.48 / 1.60,
# 1.74 / 1.69; N=64 192 -> 8 8x8 1.09 / 1.20, 0.77 / 1.42, 1.21 / 1.24; N=8 512 -> 32 14x14 1.90 /
# 3.02, 1.70 / 2.02, 3.07 / 3.14; N=16 384 -> 16 9x9 0.83 / 1.96, 0.90 / 1.45, 1.20 / 1.22; N=4 512
# -> 24 12x12 0.87 / 1.66, 0.74 / 1.03, 1.66 / 1.74; N=32 128 -> 32 7x7 0.54 / 1.02, 0.62 / 1.03,
# 0.80 / 0.81. Past 32 output channels winograd's won or tied: N=32 512 -> 40 7x7 3.11 / 2.46, 2.74 /
# 2.64; N=16 512 -> 48 7x7 1.74 / 1.93, 1.82 / 1.59; -> 64 2.34 / 2.25, 2.28 / 1.79. In float64
# winograd's won the forward and input gradient of two of three (512 -> 32 7x7 2.89 / 2.32, 3.35 /
# 2.04; 384 -> 24 10x10 2.07 / 1.90; 384 -> 16 9x9 1.74 / 2.63): float64 keeps them
# (``AUTO_DTYPE_RULES``). 3x3x3 calls were not measured there.
AUTO_FULL_WIDTH_FEW_OUT_3X3 = 33  # output channels under which, on full-width units (2-D, float32), ...


def _few_outputs_3x3(g: Geometry, least_pixels: int = 0) -> bool:
    """On AVX-512, a 3x3 stride-1 call of one group that the row of few pixels and many input
    channels gives winograd (``_blas_shaped``, past the few-tiles row), with ``least_pixels`` output
    pixels an image (a plane) or more and few output channels: on half-width units under
    ``AUTO_HALF_WIDTH_FEW_OUT_3X3`` (3x3x3 too), on full-width ones 2-D under
    ``AUTO_FULL_WIDTH_FEW_OUT_3X3``: numba's forward, and its input gradient from
    ``AUTO_HALF_WIDTH_FEW_OUT_PIXELS``."""
    if not (g.groups == 1 and _is_3x3s1(g) and _pixels(g) >= least_pixels):
        return False
    if _full_width(g):
        most = AUTO_FULL_WIDTH_FEW_OUT_3X3 if g.ndim == 2 else 0
    elif _half_width(g):
        most = AUTO_HALF_WIDTH_FEW_OUT_3X3
    else:
        return False
    return g.c_out < most and _blas_shaped(g) and not _few_tiles(g)


def _full_width_few_outputs_3x3(g: Geometry) -> bool:
    """``_few_outputs_3x3``'s calls on full-width units (float64 keeps winograd's there)."""
    return _full_width(g) and _few_outputs_3x3(g)


# The row of few pixels per image and many input channels (``_blas_shaped``) gives BLAS every pass
# of kernels but 3x3 at stride 1. On AVX-512's half-width units numba's beat it where the output channels are
# few, and where im2col runs a k x 1 kernel on its shifted columns (one product per tap and image:
# narrow ones on small images). Two threads, float32, each pass alone as above, time over torch's,
# medians of 5 interleaved rounds (2026-12-06, an AMD Zen 4), numba / im2col, forward, input
# gradient, weight gradient: 7x1 N=64 96 -> 48 12x12 1.15 / 3.36, 0.53 / 2.27, 2.29 / 4.12; N=32
# 128 -> 16 10x10 1.23 / 5.03, 1.64 / 11.1, 3.91 / 8.47; 3x1 N=64 128 -> 8 8x8 0.84 / 4.80, 1.06 /
# 9.90, 3.74 / 9.52; 7x1 N=32 256 -> 96 12x12 (numba's forward and input gradient already) weight
# 1.43 / 1.54. The weight gradient of few output channels: 5x5 N=32 256 -> 8 12x12 1.53 / 4.82, N=8
# 512 -> 24 7x7 2.70 / 4.20, N=16 384 -> 48 10x10 2.67 / 2.97; 3x3 d2 N=16 256 -> 32 12x12 2.50 /
# 2.86; 5x5x5 N=2 192 -> 8 8x14x14 1.90 / 4.96; 1x5x5 N=8 256 -> 32 4x10x10 2.49 / 4.86; 3x3x3 s2
# N=4 128 -> 16 8x14x14 7.47 / 11.0; ties 1x7 N=16 256 -> 32 14x14 2.53 / 2.38 and 3x3 s2 N=32 192
# -> 16 14x14 4.63 / 4.57; with 64 output channels too (5x5 N=16 384 -> 64 14x14 1.17 / 1.94), not
# tried further. The input gradients of those split (0.87-1.14x BLAS's time), and strided 1-D and
# 2-D weight gradients keep their own row (3x3 s2 N=16 512 -> 48 10x10 3.76 / 2.43). Checked on
# layers drawn after (weight gradient, ms numba / im2col): 7x7 N=32 128 -> 16 10x10 14.6 / 26.4, N=8
# 384 -> 16 7x7 7.80 / 11.5, N=2 512 -> 8 10x10 1.82 / 5.82; 5x5x5 N=4 256 -> 16 8x8x8 36.0 / 67.3;
# 7x7x7 N=1 512 -> 16 8x8x8 62.8 / 106, s2 N=2 384 -> 8 14x14x14 81.1 / 126; 3x3x3 s2 N=1 384 -> 16
# 14x14x14 10.6 / 10.9, N=8 512 -> 16 8x14x14 42.7 / 38.3; but 7x7x7 N=2 192 -> 32 4x4x4 25.3 /
# 15.4: not on planes under 7x7 (``AUTO_HALF_WIDTH_FEW_OUT_PIXELS``).
AUTO_HALF_WIDTH_FEW_OUT_WEIGHT = 64  # output channels under which ...


def _half_width_shifted(g: Geometry) -> bool:
    """On AVX-512's half-width units, a call of one group, few pixels and many input channels
    (``_blas_shaped``) that im2col runs on its shifted columns (``im2col.shifted_columns``): numba's
    passes (grouped ones not measured)."""
    return g.groups == 1 and _blas_shaped(g) and _half_width(g) and _backend_says("im2col", "shifted_columns", g)


def _half_width_few_outputs_weight(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 2-D or 3-D call of one group, a kernel past 1x1, few pixels
    (``AUTO_HALF_WIDTH_FEW_OUT_PIXELS`` an image or a plane at least) and many input channels
    (``_blas_shaped``), under ``AUTO_HALF_WIDTH_FEW_OUT_WEIGHT`` output channels: numba's weight
    gradient (past the strided rows), but not of 3x3 stride-1 calls, whose winograd's tied with it
    (``AUTO_HALF_WIDTH_FEW_OUT_3X3``)."""
    return (g.ndim >= 2 and g.c_out < AUTO_HALF_WIDTH_FEW_OUT_WEIGHT
            and _half_width_few_pixels(g, AUTO_HALF_WIDTH_FEW_OUT_PIXELS))


def _half_width_few_pixels(g: Geometry, least_pixels: int) -> bool:
    """The calls of the half-width rows of few output channels, whatever their count: on AVX-512's
    half-width units, one group, a kernel past 1x1 but not 3x3 at stride 1 (winograd's rows and
    ``_few_outputs_3x3``), ``least_pixels`` output pixels an image (a plane) or more, and few
    pixels with many input channels (``_blas_shaped``)."""
    return (g.groups == 1 and math.prod(g.kernel) > 1 and _pixels(g) >= least_pixels and _blas_shaped(g)
            and not _is_3x3s1(g) and _half_width(g))


# Their input gradients at unit stride, over two images and more, ran faster on numba's too (the
# same method, 2026-12-07, Zen 4, ms numba / im2col, 14 layers drawn at random in the row's reach
# whose input gradient auto gave BLAS, /tmp script seed 21): 5x5 N=2 384 -> 15 10x10 0.61 / 1.12,
# N=8 96 -> 42 1.23 / 1.68, N=32 192 -> 25 7x7 2.82 / 3.27, N=8 96 -> 33 12x12 1.27 / 1.66; 7x7 N=8
# 96 -> 18 7x7 0.96 / 1.31, N=32 96 -> 57 5.66 / 8.18, N=2 256 -> 40 12x12 2.15 / 2.91, N=8 256 ->
# 52 10x10 6.36 / 7.99; 3x3 d2 N=32 64 -> 33 8x8 0.69 / 1.17, N=16 64 -> 49 0.51 / 1.05; 5x5x5 N=2
# 512 -> 17 7x7x7 11.2 / 12.1; on one image either won (5x5 256 -> 27 7x7 0.48 / 0.42, 384 -> 17
# 14x14 0.93 / 0.77; 7x7 384 -> 45 8x8 1.90 / 3.07): one image keeps BLAS's. On 13 drawn after
# (seed 22), auto's backward 0.70-0.96x its time before (geomean 0.87). In float64 numba's lost on
# all 13 (auto's backward 1.22-1.81x): float64 keeps BLAS's (``AUTO_DTYPE_RULES``).
AUTO_HALF_WIDTH_FEW_OUT_INPUT_IMAGES = 2  # at least: numba's input gradient at unit stride


def _half_width_few_outputs_input(g: Geometry) -> bool:
    """``_half_width_few_outputs_weight``'s calls at unit stride over
    ``AUTO_HALF_WIDTH_FEW_OUT_INPUT_IMAGES`` images and more: numba's input gradient."""
    return (g.n >= AUTO_HALF_WIDTH_FEW_OUT_INPUT_IMAGES and max(g.stride) == 1
            and _half_width_few_outputs_weight(g))


# Fewer output channels still, on half-width units: under numba's tiles of output pixels (which it
# runs from 16 output channels or so) its forward runs its packed loops, and the row of few pixels
# and many input channels (``_blas_shaped``) gave the call BLAS's products of a few rows over
# patches it builds in memory. numba's loops won every forward measured, at every kernel, stride and
# axis count. Two threads, float32, each pass alone after an idle pause and 30 ms of its own calls,
# medians of 5 interleaved rounds (2026-12-07, an AMD Zen 4), time over torch's, numba / im2col,
# forward, weight gradient, on 18 layers drawn at random in the row's reach (/tmp script, seed 7):
# 3x3 s2 N=32 192 -> 5 14x14 2.14 / 3.38, 3.54 / 3.45; 5x5 s2 N=2 256 -> 15 14x14 2.66 / 4.19, 2.17
# / 3.51; N=4 512 -> 6 12x12 2.74 / 5.76, 2.60 / 3.94; 3x3 s2 N=2 512 -> 9 16x16 2.40 / 2.76, 2.55 /
# 2.80; 7x7 s2 N=2 192 -> 13 10x10 2.33 / 3.05, 2.02 / 2.39; 7x7 N=8 256 -> 1 12x12 0.55 / 3.05,
# 0.91 / 3.72; 5x5 N=32 512 -> 9 14x14 1.18 / 5.66, 1.73 / 4.23; 3x3x3 s2 N=1 96 -> 11 12x12x12
# 1.05 / 2.43, 2.05 / 2.13; 5x5x5 s2 N=1 192 -> 13 4.04 / 7.33, 4.77 / 6.40; N=32 192 -> 10 4x4x4
# (2x2x2 out) 4.13 / 12.0, 14.5 / 10.9; 5x5x5 N=2 512 -> 7 6x6x6 3.94 / 12.5, 4.14 / 10.5; 1-D k11
# d2 N=16 192 -> 14 over 32 1.29 / 3.58, 1.94 / 2.37; k11 N=32 256 -> 3 over 32 1.18 / 2.67, 1.25 /
# 1.88; k9 s2 N=32 256 -> 11 over 64 2.51 / 2.97, 2.51 / 3.17; k7 s2 N=8 256 -> 12 over 256 1.65 /
# 2.68, 1.99 / 2.37; k3 s2 N=32 512 -> 7 over 256 0.99 / 1.69, 1.57 / 2.33; k11 s2 N=16 512 -> 5
# 0.82 / 2.77, 1.25 / 2.88; k5 s2 N=8 256 -> 8 over 128 1.65 / 3.23, 1.83 / 2.52. And before them,
# forward: 7x7 N=16 128 -> 4 14x14 0.69 / 3.44, 5x5x5 s2 N=8 192 -> 3 12x12x12 2.83 / 8.67 (the
# worst of 40 random layers: auto's forward 8.9x torch's time on BLAS's), N=4 128 -> 3 8x24x24 1.93 /
# 4.44, 5x5 N=2 512 -> 8 10x10 1.65 / 4.28, 1-D k7 N=8 512 -> 8 over 128 1.06 / 2.35. Their weight
# gradients won where the output planes are not tiny (the strided ones past the strided rows' BLAS,
# measured there with many output channels), from 5x5 (25) pixels: lost on 2x2x2. Their input
# gradients mostly ran numba's already (the strided row of few outputs for the taps); at unit
# stride the row above takes them from 7x7 planes (7x7 N=8 12x12 0.34 / 0.38, 5x5 N=32 14x14 0.86 /
# 0.85) and leaves smaller ones BLAS's (5x5x5 over 6x6x6 3.20 / 1.84). In float64 numba's forward won all but the
# strided 1-D ones (ms numba / im2col: k9 s2 2.95 / 2.50, k7 s2 1.73 / 1.53, k3 s2 7.61 / 7.23) and
# its weight gradient 10 of 18: float64 keeps BLAS's there (``AUTO_DTYPE_RULES``).
AUTO_HALF_WIDTH_FEWEST_OUT = 16  # output channels, at most: numba's forward ...
AUTO_HALF_WIDTH_FEWEST_OUT_WEIGHT_PIXELS = 25  # ... and from these output pixels an image (a plane) its weight gradient


def _half_width_fewest_outputs(g: Geometry, least_pixels: int = 0) -> bool:
    """On AVX-512's half-width units, a call of one group, a kernel past 1x1, few pixels (from
    ``least_pixels`` an image or a plane) and many input channels (``_blas_shaped``) and at most
    ``AUTO_HALF_WIDTH_FEWEST_OUT`` output channels, but not 3x3 at stride 1 (winograd's rows and
    ``_few_outputs_3x3``): numba's forward, and from ``AUTO_HALF_WIDTH_FEWEST_OUT_WEIGHT_PIXELS``
    its weight gradient, at any stride."""
    return g.c_out <= AUTO_HALF_WIDTH_FEWEST_OUT and _half_width_few_pixels(g, least_pixels)


# 1x1 kernels of several groups (ShuffleNet's, say) run as one matrix product per group on BLAS, while
# numba's 1x1 products on the register tiles take one group only (``numba_jit.matrix_product``): its
# grouped kernel takes few channels a group, and the rest falls to its packed loops. On AVX-512's
# half-width units BLAS's products won every forward those loops would run (0.24-0.87x their time) and
# all input gradients but one tie (0.33-1.02x). Two threads, float32, each pass alone as above, ms
# numba / im2col, forward, input gradient (2026-12-07, an AMD Zen 4): N=32 240 -> 240 in 3 groups
# 28x28 8.77 / 6.23, 8.81 / 6.32; 240 -> 60 5.46 / 2.64, 3.77 / 2.15; N=16 32 -> 192 in 2 groups 20x20
# 0.56 / 0.29, 1.04 / 0.35; N=16 96 -> 192 in 2 56x56 10.9 / 8.36, 11.1 / 7.64; N=16 16 -> 256 in 2
# 5.78 / 4.89, 7.55 / 4.22; N=1 128 -> 384 in 8 56x56 0.53 / 0.42, 0.82 / 0.35; N=4 72 -> 288 in 3
# 28x28 0.53 / 0.41, 0.77 / 0.41; N=1 72 -> 576 0.26 / 0.23, 0.48 / 0.18; 1-D N=8 144 -> 384 in 3 over
# 256 0.67 / 0.56, 0.84 / 0.58; N=4 384 -> 64 in 4 0.31 / 0.17, 0.24 / 0.18; N=32 1024 -> 256 in 8
# 7.35 / 4.62, 7.13 / 6.18; 1x1x1 N=8 512 -> 64 in 8 8x8x8 1.12 / 0.27, 0.67 / 0.33; N=32 256 -> 32 in
# 2 3.01 / 1.37, 1.47 / 1.49. (Some took BLAS already, by the row of few pixels or many channels: N=32
# 480 -> 480 in 3 14x14 8.13 / 5.61.) Where numba's grouped kernel runs, the two split or tied (N=8
# 128 -> 128 in 4 56x56 1.59 / 1.83, 1.94 / 2.21; N=16 256 -> 256 in 8 28x28 1.78 / 1.67, 1.85 / 1.93;
# N=8 128 -> 256 in 8 20x20 0.42 / 0.27, 0.48 / 0.23; 1-D N=16 64 -> 128 in 8 over 4096 4.19 / 4.15,
# 2.21 / 1.64), and so did its columns (1-D N=32 48 -> 192 in 3 3.29 / 3.11, 2.53 / 3.01): left to it.
# Their weight gradients split too (numba's won 5 of 8): left to the rows as they were.


def _half_width_grouped_pointwise(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 1x1 kernel of several groups (not depthwise) whose forward
    numba runs on its packed loops (``numba_jit.packed_forward``): BLAS's forward and input
    gradient, a group at a time."""
    return (g.groups > 1 and not g.is_depthwise and math.prod(g.kernel) == 1 and _half_width(g)
            and _backend_says("numba", "packed_forward", g))


# 1x1 kernels of one group: numba's products on its register tiles (``numba_jit.matrix_product``)
# were drawn against an OpenBLAS that ran AVX2 kernels; NumPy's OpenBLAS 0.3.31 runs its SkylakeX
# (AVX-512) kernels on Zen 4, and its forward now wins or ties wherever both sides have 128+
# channels: numba packs the whole weight on one thread before its products, and a batch of few
# pixels gives its two threads few panels of columns. Two threads, each pass alone, medians of 30
# back-to-back calls (80 for the weight gradients), time over torch's, numba / BLAS (2026-12-07, an
# AMD Zen 4): forward, N=1 7x7 256 -> 1024 4.52 / 1.36, 512 -> 2048 4.80 / 1.11, 1024 -> 2048 2.48 /
# 1.01; 14x14 512 -> 512 1.45 / 0.96, 2048 -> 512 1.50 / 1.00; 28x28 512 -> 2048 1.29 / 1.01; N=2 7x7
# 512 -> 512 2.04 / 1.35; 14x14 1.23 / 1.07; N=4 7x7 2048 -> 512 1.73 / 1.15; N=8 7x7 2048 -> 512
# 1.30 / 0.87; 14x14 512 -> 512 1.30 / 1.06; 28x28 512 -> 2048 0.81 / 0.74, 1024 -> 256 1.01 / 0.99
# (ties from about 3,000 pixels in the batch: N=4 28x28 1024 -> 256 0.96 / 0.98, N=32 14x14 256 ->
# 1024 in `make bench` 0.90 / 0.88); at a stride, N=1 14x14 1024 -> 2048 2.43 / 1.06, N=8 28x28 512
# -> 1024 1.17 / 0.93; float64 N=1 7x7 1024 -> 2048 2.01 / 1.08, N=8 28x28 256 -> 1024 1.17 / 0.76.
# With 64 channels a side numba's won from about 1,500 pixels (N=16 14x14 64 -> 256 0.96 / 1.12, 256
# -> 64 1.10 / 1.34, N=32 7x7 64 -> 256 1.21 / 1.40) and lost below (N=1 56x56 64 -> 64 1.56 / 0.90):
# left to it. The weight gradient of one image of fewer than ``AUTO_IM2COL_BELOW_PIXELS`` output
# pixels (a short reduction into a large gw) runs on BLAS too: 7x7 256 -> 1024 3.23 / 1.35, 1024 ->
# 256 0.64 / 0.43, 512 -> 512 1.48 / 1.00, 128 -> 512 2.50 / 1.79; 14x14 256 -> 1024 1.85 / 1.09, 128
# -> 128 0.96 / 0.94; 1024 -> 2048 at a stride to 7x7 0.84 / 0.36; float64 7x7 1024 -> 2048 3.35 /
# 0.84. numba's won over more pixels (28x28 512 -> 512 1.04 / 1.32) and two images (7x7 512 -> 512
# 1.01 / 1.26, 1024 -> 256 0.54 / 0.70). Through auto, 60 random 1x1 layers (1-32 images, 7x7-56x56,
# 64-2048 channels, strides 1-2; `fastconv bench --shape ... --backends auto,torch --pass both
# --repeat 5`, two runs against the rows before, alternating), auto's time over its time before on
# the passes that moved, the best run of each: forward 0.94 (25 moved; one 28x28 image 512 -> 2048 at
# stride 2 0.55, one 14x14 1024 -> 1024 0.57; before im2col's one-image GEMM, one 7x7 128 -> 1024
# 1.50) and 0.91 (19), backward 0.64 (7) and 0.67 (3). In ResNet-50's bottleneck blocks at batch 1
# (three blocks of 1x1, winograd's 3x3, 1x1), where BLAS's threads spin into winograd's call, the
# forward stayed within the runs' spread: 28x28 9.2-10.1 ms against 9.3-10.1, 14x14 10.1 against 10.1.
AUTO_HALF_WIDTH_POINTWISE_CHANNELS = 128  # a side, at least


def _half_width_pointwise(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 1x1 kernel of one group (in the 2-D call that runs), of at
    least ``AUTO_HALF_WIDTH_POINTWISE_CHANNELS`` channels each side: BLAS's forward."""
    flat = as_2d(g)
    return (flat.groups == 1 and math.prod(flat.kernel) == 1
            and min(flat.c_in, flat.c_out) >= AUTO_HALF_WIDTH_POINTWISE_CHANNELS and _half_width(g))


def _half_width_pointwise_weight(g: Geometry) -> bool:
    """``_half_width_pointwise`` on one image of fewer than ``AUTO_IM2COL_BELOW_PIXELS`` output
    pixels: BLAS's weight gradient."""
    return as_2d(g).n == 1 and _pixels(g) < AUTO_IM2COL_BELOW_PIXELS and _half_width_pointwise(g)


# The input gradient of one strided image: numba's patches' adjoint gives each thread whole images
# (no two threads write a value of gx), so one image runs on one thread, where BLAS's products of
# the image's patches take both. Splitting the adjoint's chunks of input channels among the threads
# (tried) ran faster pass by pass but slower in a backward pass, its helper thread spinning into the
# weight gradient's BLAS call (auto's backward 1.6-2.2x its time before on one-image 3x3 layers at
# stride 2): not kept. Two threads, `fastconv bench --shape <24 random strided layers> --backends
# auto,im2col,numba,torch --pass backward --repeat 5` (2026-12-07, an AMD Zen 4, float32), backward
# time over torch's, auto's (numba's input gradient, BLAS's weight gradient) / BLAS's both: one
# image with 128+ output channels, 14 of 14 to BLAS, 3x3 at stride 2 64 -> 512 14x14 2.19 / 1.53, 96
# -> 384 2.18 / 1.67, 256 -> 384 1.63 / 1.21, 32x32 1.61 / 1.32, 96 -> 192 16x16 1.57 / 1.10, 192 ->
# 256 32x32 1.13 / 0.83; 5x5 128 -> 512 14x14 1.57 / 0.98, 24x24 1.25 / 0.92, 32x32 1.50 / 1.13; 7x7
# 64 -> 192 28x28 2.14 / 1.64, 128 -> 192 56x56 1.91 / 1.67, 384 -> 192 32x32 1.82 / 1.51, 512 ->
# 128 24x24 1.94 / 1.85, 256 -> 192 16x16 0.74 / 0.64. Under 128 output channels split (64 -> 56x56
# 3x3 1.92 / 2.20, 96 -> 56x56 5x5 1.91 / 2.45; 96 -> 14x14 1.96 / 1.64), and so did two images
# (192 -> 192 14x14 2.42 / 1.60, 96 -> 128 7x7 1.82 / 2.33): left to the rows below. float64, the
# input gradient alone: numba's 1.49-1.89x torch's time, BLAS's 0.88-1.48 (four of the layers). On
# a fresh draw of 24 such layers (seed 12; the command as above with `--backends auto,torch --pass
# both`, two runs against the rows before, alternating), the 11 that moved took 0.80x auto's
# backward time (0.63-1.03, best run of each).
AUTO_HALF_WIDTH_STRIDED_IMAGE_OUTPUTS = 128  # output channels, at least


def _half_width_strided_image_input(g: Geometry) -> bool:
    """On AVX-512's half-width units, one 2-D image at a stride, one group, a kernel past 1x1 and at
    least ``AUTO_HALF_WIDTH_STRIDED_IMAGE_OUTPUTS`` output channels: BLAS's input gradient."""
    return (g.ndim == 2 and g.n == 1 and g.groups == 1 and g.stride != (1, 1) and math.prod(g.kernel) > 1
            and g.c_out >= AUTO_HALF_WIDTH_STRIDED_IMAGE_OUTPUTS and _half_width(g))


# The few-tiles row (``_few_tiles``) gives BLAS the gradients of 3x3 stride-1 calls over few F(2x2)
# tiles, a line drawn on full-width units with as many output channels as input ones (the note at
# ``AUTO_FEW_TILES_PATCH_ROWS_MACS``). On AVX-512's half-width units, over two images or more, BLAS's
# products of those few pixels lose to numba's and winograd's unless the output channels are many.
# Two threads, float32, auto's backward as it runs it (the input gradient, then the weight
# gradient, each sample after an idle pause and 30 ms of its own calls), time over torch's, medians
# of 7 interleaved rounds in one process (2026-12-06, an AMD Zen 4), BLAS's both / numba's both /
# winograd's input gradient and numba's weight gradient: N=2 7x7 256 -> 64 (the worst of 40 random
# layers: 2.99x torch's backward) 4.15 / 2.16 for the input gradient alone, 3.29 / 1.50 the weight
# gradient's; N=2 8x8 256 -> 64 5.31 / 1.65 / 1.84, 256 -> 256 1.67 / 1.75 / 1.35; N=2 6x6 512 ->
# 128 3.00 / 1.85 / 1.64; N=2 8x8 96 -> 192 3.57 / 1.74 / 1.67; N=2 7x7 96 -> 256 2.11 / 1.73 /
# 1.63, 64 -> 256 3.21 / 2.05 / 2.29, 128 -> 512 2.74 / 1.88 / 1.61; N=3 5x5 96 -> 96 3.47 / 2.01 /
# 2.31; N=3 6x6 384 -> 192 2.85 / 1.88 / 1.66; N=2 4x4 192 -> 192 3.45 / 2.22 / 2.18; N=4 5x5 512 ->
# 384 1.63 / 1.94 / 1.48; N=6 4x4 512 -> 192 2.61 / 1.83 / 1.69, 512 -> 384 1.93 / 1.81 / 1.50, 192
# -> 512 2.28 / 2.10 / 1.61; N=8 4x4 384 -> 128 3.05 / 1.70 / 1.55. winograd's input gradient from
# 128 channels a side, numba's below (96 -> 96 and 64 -> 256 above). Not from 512 output channels
# (N=2 6x6 256 -> 512 1.68 / 2.17 / 1.75, N=2 4x4 192 -> 512 1.75 / 2.42 / 2.52), nor on one image,
# where BLAS won about as often as it lost (N=1 7x7 384 -> 384 1.41 / 2.56 / 1.65, 10x10 512 -> 512
# 1.22 / 1.73 / 1.28, 64 -> 256 1.34 / 2.00 / 1.86; 12x12 256 -> 128 2.19 / 1.55 / 1.56, 10x10 96 ->
# 64 2.07 / 1.66 / 3.36; 7x7 512 -> 64 1.95 / 2.00 / 1.94).
AUTO_HALF_WIDTH_FEW_TILES_MAX_OUT = 384  # output channels up to which, ...
AUTO_HALF_WIDTH_FEW_TILES_WINOGRAD = 128  # ... and channels a side from which winograd's input gradient runs


def _half_width_few_tiles(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 2-D 3x3 stride-1 call of one group on few F(2x2) tiles
    (``_few_tiles``) over two images or more with up to ``AUTO_HALF_WIDTH_FEW_TILES_MAX_OUT`` output
    channels, whose gradients run on numba's register tiles (the input gradient on winograd from
    ``AUTO_HALF_WIDTH_FEW_TILES_WINOGRAD`` channels a side)."""
    return (g.ndim == 2 and g.groups == 1 and g.n >= 2 and g.c_out <= AUTO_HALF_WIDTH_FEW_TILES_MAX_OUT
            and _few_tiles(g) and _half_width(g))


# The many-output input-gradient row (``_half_width_many_outputs``) holds on more layers under 5x5
# and 7x7 kernels, for both gradients: from 4x the input's output channels (384 and up), over two
# images and more. Two threads, float32,
# auto's backward as it runs it (the input gradient, then the weight gradient, each sample after an
# idle pause and 30 ms of its own calls), time over torch's, BLAS's both / numba's both, medians
# of 7 interleaved rounds in one process (2026-12-06, an AMD Zen 4): 5x5 N=2 96 -> 512 10x10 (of 40
# random layers, a backward 1.7x the fastest backend's) 1.25 / 2.01 for the weight gradient alone,
# 1.67 / 3.44 the input gradient's; N=2 192 -> 768 7x7 1.08 / 1.87, 128 -> 768 1.22 / 2.28; N=2 96
# -> 384 14x14 1.31 / 1.67, 96 -> 512 20x20 1.27 / 1.59; N=4 72 -> 384 17x17 1.38 / 1.50, 72 -> 512
# 14x14 1.27 / 1.61, 96 -> 512 10x10 1.47 / 1.86; N=8 64 -> 384 17x17 1.38 / 1.60; N=16 72 -> 512
# 10x10 1.39 / 1.58; 7x7 N=2 96 -> 384 14x14 1.37 / 2.04, 80 -> 512 10x10 1.37 / 2.94, 17x17 1.26 /
# 2.01 (12 of 12; BLAS's weight gradient alone beside numba's input gradient won or tied on all 12).
AUTO_HALF_WIDTH_MANY_OUT_LARGE_RATIO = 4  # output channels over input channels, at least, under ...
AUTO_HALF_WIDTH_LARGE_KERNEL = 5  # ... kernels of this many taps down and across, at least: BLAS's gradients


def _half_width_large_kernel(g: Geometry) -> bool:
    """On AVX-512's half-width units, a 2-D call of one group, undilated at unit stride, under a
    kernel of ``AUTO_HALF_WIDTH_LARGE_KERNEL`` taps down and across or more: the shape of the
    large-kernel rows whose gradients run BLAS's."""
    return (g.ndim == 2 and g.groups == 1 and max(g.stride) == 1 and max(g.dilation) == 1
            and min(g.kernel) >= AUTO_HALF_WIDTH_LARGE_KERNEL and _half_width(g))


def _half_width_many_outputs_large(g: Geometry) -> bool:
    """A large-kernel call (``_half_width_large_kernel``) over two images or more with
    ``AUTO_HALF_WIDTH_MANY_OUT_GRAD_INPUT_CHANNELS`` output channels or more,
    ``AUTO_HALF_WIDTH_MANY_OUT_LARGE_RATIO`` times the input's (``_many_out_channels``)."""
    return (g.n >= 2 and _many_out_channels(g, AUTO_HALF_WIDTH_MANY_OUT_GRAD_INPUT_CHANNELS,
                                            AUTO_HALF_WIDTH_MANY_OUT_LARGE_RATIO)
            and _half_width_large_kernel(g))


# On AVX-512's half-width units the gradients of one image under 5x5 and 7x7 kernels at stride 1
# with many output channels over small outputs run faster on BLAS's patches than on numba's
# (which split one image's few rows, or its taps, over the threads). Two threads, float32, auto's
# backward as it runs it (each sample after an idle pause and 30 ms of its own calls), time over
# torch's, BLAS's both / numba's both, medians of 7 interleaved rounds in one process (2026-12-06,
# an AMD Zen 4): 7x7 128 -> 512 7x7 1.08 / 3.20, 192 -> 256 7x7 1.42 / 3.35, 64 -> 192 7x7 2.08 /
# 2.91, 128 -> 384 12x12 1.29 / 2.11, 16 -> 256 17x17 1.69 / 2.24, 96 -> 256 20x20 1.58 / 1.97;
# 5x5 48 -> 384 10x10 1.49 / 2.71, 64 -> 192 12x12 1.95 / 2.53, 96 -> 256 17x17 1.53 / 1.92, 20x20
# 1.50 / 1.85, 192 -> 256 20x20 1.71 / 1.82; a tie at 192 -> 192 14x14 (2.10 / 2.10). Not below 192
# output channels (7x7 256 -> 128 12x12 2.50 / 2.57, 64 -> 96 20x20 3.12 / 2.47; 5x5 128 -> 32
# 17x17 2.12 / 1.97), nor on larger outputs (5x5 48 -> 256 28x28 1.62 / 1.49), nor over more
# images (5x5 N=4 128 -> 96 7x7 3.30 / 2.44, N=16 48 -> 192 12x12 2.08 / 1.75).
AUTO_HALF_WIDTH_ONE_IMAGE_OUT_CHANNELS = 192  # output channels, at least, ...
AUTO_HALF_WIDTH_ONE_IMAGE_PIXELS = 400  # ... and output pixels, at most (20x20): BLAS's gradients


def _half_width_one_image_gradients(g: Geometry) -> bool:
    """A large-kernel call (``_half_width_large_kernel``) of one image with
    ``AUTO_HALF_WIDTH_ONE_IMAGE_OUT_CHANNELS`` output channels or more over at most
    ``AUTO_HALF_WIDTH_ONE_IMAGE_PIXELS`` output pixels."""
    return (g.n == 1 and g.c_out >= AUTO_HALF_WIDTH_ONE_IMAGE_OUT_CHANNELS
            and _pixels(g) <= AUTO_HALF_WIDTH_ONE_IMAGE_PIXELS and _half_width_large_kernel(g))


# On AVX-512's half-width units the forward of one image of up to 4 input channels (a stem) and
# many output channels runs faster on BLAS: numba's tiles want 8 rows of input channels and take a
# panel of output channels a thread, one image splitting little. Two threads, float32, forward
# alone after an idle pause and 30 ms of its own calls, time over torch's, numba / im2col, medians
# of 7 interleaved rounds in one process (2026-12-06, an AMD Zen 4): 5x5 3 -> 512 35x35 2.11 / 1.08
# (of 40 random layers, the forward furthest from the fastest backend), 4 -> 384 35x35 2.20 / 1.21,
# 4 -> 512 s2 56x56 1.34 / 1.22; 7x7 3 -> 512 28x28 2.37 / 1.27, 3 -> 768 1.92 / 1.15 (s2), 2.29 /
# 1.20, 1 -> 512 35x35 2.29 / 1.11, 2 -> 512 56x56 1.89 / 1.07, 3 -> 192 112x112 1.82 / 1.16, 3 ->
# 512 0.55 / 0.41, 4 -> 768 s2 56x56 1.37 / 1.16; 3x3 4 -> 768 20x20 2.26 / 1.21, s2 56x56 1.31 /
# 1.19, 2 -> 384 s2 112x112 1.28 / 0.97; ties at 224x224 (1 -> 384 7x7 0.44 / 0.44, 2 -> 768 s2 0.42
# / 0.44). Not below 192 output channels (5x5 s2 1 -> 96 224x224 1.31 / 1.49), nor over more images
# (4 -> 512 7x7 N=4 35x35 1.24 / 1.13 but 1 -> 512 N=4 14x14 1.51 / 1.78, 3 -> 384 5x5 N=16 14x14
# 1.56 / 2.54, 2 -> 128 7x7 N=8 56x56 0.83 / 1.10).
AUTO_HALF_WIDTH_STEM_OUT_CHANNELS = 192


def _half_width_stem(g: Geometry) -> bool:
    """On AVX-512's half-width units, the 2-D call of one image, a kernel past 1x1, up to 4 input
    channels (``_few_inputs``) and ``AUTO_HALF_WIDTH_STEM_OUT_CHANNELS`` output channels or more,
    whose forward runs BLAS's."""
    return (g.ndim == 2 and g.n == 1 and math.prod(g.kernel) > 1 and _few_inputs(g)
            and g.c_out >= AUTO_HALF_WIDTH_STEM_OUT_CHANNELS and _half_width(g))


# winograd's kernels past 3x3 (``winograd._convolve_large``: F(2x2,3x3) blocks on one grid, 49
# products per 2x2 output tile and channel pair at 5x5, 100 at 7x7, against a direct sum's 100 and
# 196), forward and input gradient, where its products (its grid's too) come to at most 0.9 of a
# direct sum's (``winograd.large_blocks``); its weight gradient is numba's. Each pass alone, 5
# interleaved rounds, 2 threads, float32, an AMD Zen 4 (2026-12-06), time over torch's forward
# (the gradient: over torch's backward), winograd against the faster of numba and im2col, 48
# layers drawn at random (two draws; 5x5 and 7x7, 16 to 512 channels, 7x7 to 56x56, 1 to 32
# images). Within that bound, from 24 channels a side and 150M multiply-adds, it won every one
# of 27 layers both ways: forward 5x5 N=2 384 -> 64 56x56 0.75 / 1.59, N=1 64 -> 64 56x56 0.82 /
# 1.44, N=4 512 -> 48 28x28 0.86 / 1.43, N=2 128 -> 512 0.78 / 1.23, N=1 24 -> 128 56x56 0.66 /
# 0.92, N=8 96 -> 64 17x17 1.17 / 1.85, N=16 64 -> 48 17x17 1.29 / 2.00, N=4 32 -> 512 14x14 1.15
# / 1.42, N=16 96 -> 256 10x10 1.19 / 1.54, N=32 512 -> 32 10x10 1.58 / 1.59; 7x7 N=2 64 -> 384
# 40x40 0.78 / 1.23, N=1 256 -> 256 28x28 0.91 / 1.40, N=32 64 -> 48 14x14 1.42 / 1.85; the input
# gradient alike (N=2 128 -> 512 28x28 0.39 / 0.61, N=8 128 -> 256 17x17 0.45 / 0.71). Below those
# limits it lost 15 of 21 forwards (11 of 21 input gradients): 16 channels a side (16 -> 16 28x28 2.03 / 1.35, 512 -> 16
# 7x7 14x14 2.15 / 1.65, 16 -> 128 28x28 1.40 / 1.26; won 1.04 / 1.19 at 192 -> 16 40x40), calls
# under 150M multiply-adds (64 -> 48 20x20, 123M, 2.06 / 1.39; 48 -> 32 14x14 1.75 / 1.59; one
# 10x10 image 96 -> 512 1.85 / 1.36; won 2.50 / 3.47 at 192 -> 32 7x7 10x10, 60M). In float64 (the
# same method, five layers within the limits) its forward 0.17-0.78 / 0.26-1.09, its input
# gradient 0.14-0.46 / 0.17-0.65. Drawn on AVX-512's half-width units. On full-width ones (an Intel
# Xeon, family 6 model 167, 2026-12-07, each pass alone, 3 interleaved rounds, ms winograd / numba
# / im2col) it won the forward and input gradient of all 9 layers within the limits timed: 5x5 N=8
# 512 -> 64 14x14 9.42 / 15.5 / 27.2 and 9.15 / 13.9 / 13.0; N=1 192 -> 64 20x20 1.28 / 1.77 / 2.95,
# 1.26 / 2.42 / 1.80; N=16 C=64 28x28 7.68 / 10.5 / 18.5, 7.77 / 10.6 / 19.3; N=8 C=128 11.7 / 20.3 /
# 29.0, 11.9 / 20.6 / 30.5; N=16 96 -> 192 20x20 14.3 / 23.9 / 26.5, 15.0 / 28.4 / 36.3; N=4 C=256
# 14x14 8.48 / 10.6 / 14.8, 9.66 / 13.2 / 19.5; N=32 48 -> 64 28x28 11.6 / 15.3 / 25.5, 11.4 / 15.7 /
# 30.5; N=8 C=384 10x10 21.2 / 24.0 / 25.1, 25.1 / 33.0 / 33.7; 7x7 N=8 C=96 28x28 15.2 / 22.8 /
# 35.0, 15.3 / 24.0 / 37.6. Its weight gradient (where it runs the adjoint) against numba's, which
# auto gave those: 0.61-1.00 (N=8 C=96 7x7 19.8 / 32.4, N=8 C=128 5x5 14.3 / 20.3). In float64
# (3 layers) 0.42-0.49x numba's time each pass. On one image it lost where the one-image rows give
# BLAS's passes (N=1 512 -> 512 5x5 14x14: forward 14.1 against numba's 12.1, input gradient 20.4
# against BLAS's 13.3), though it won on larger images (N=1 256 -> 64 5x5 32x32 2.74 / 4.41 / 8.53,
# 2.13 / 3.61 / 4.67; 128 -> 256 7x7 28x28 7.82 / 10.4 / 15.5, 8.35 / 15.6 / 28.4): on full-width
# units one image keeps the rows of before. Not measured without AVX-512: not there.
AUTO_LARGE_WINOGRAD_CHANNELS = 24  # each side, at least
AUTO_LARGE_WINOGRAD_MACS = 150_000_000  # multiply-adds of the call, at least
# Not over few tiles: the blocks' filters (16 points a block, 4 blocks at 5x5: 64 MiB at 512 -> 512)
# are transformed on every call, which a batch of few output tiles does not repay, as at 3x3
# (``AUTO_FEW_TILES``). Each pass alone as above, ms numba / im2col / winograd (2026-12-07, Zen 4),
# forward, input gradient, by F(2x2) tiles in the batch: 16 (N=1 512 -> 512 5x5 8x8) 4.58 / 8.35 /
# 12.3, 17.4 / 8.97 / 15.7; 32 (N=2 8x8) 10.1 / 11.5 / 19.5, 21.6 / 22.3 / 24.1; 50 (N=2 256 ->
# 384 5x5 10x10) 6.56 / 6.95 / 8.97, 12.9 / 15.6 / 10.6; 49 (N=1 256 -> 256 5x5 14x14) 6.02 / 6.34 /
# 5.17, 7.09 / 8.38 / 5.06; 98 (N=2 256 -> 256 7x7 14x14) 15.4 / 25.2 / 16.8, 23.0 / 36.2 / 16.1;
# 100 (N=4 256 -> 256 5x5 10x10) 7.98 / 8.88 / 7.79, 9.92 / 11.3 / 8.20. From 48 tiles, on
# either kind of unit (the full-width units' measurements had 200 and more). Not in float64, whose
# forward winograd's blocks won there too (ms winograd / the pick without them, 3 rounds: N=1 192 ->
# 512 12x12 10.2 / 20.0, N=1 256 -> 192 12x12 4.9 / 8.8, N=2 512 -> 384 8x8 21.8 / 28.0, N=1 512 ->
# 512 10x10 26.1 / 27.8), and its input gradient on two images (N=2 512 -> 384 8x8 backward 46.7
# / 77.1): float64 keeps the row without the floor (``AUTO_DTYPE_RULES``).
AUTO_LARGE_WINOGRAD_MIN_TILES = 48


def _large_winograd(g: Geometry, least_tiles: int | None = None) -> bool:
    """2-D, undilated, one group, channels enough a side, multiply-adds enough, F(2x2) tiles enough
    in the batch (``least_tiles``, None: ``AUTO_LARGE_WINOGRAD_MIN_TILES``), on AVX-512 (half-width
    units, or full-width ones from two images), where winograd runs the kernel (5x5, 7x7, any mix of
    3, 5 and 7 taps past 3x3, at unit stride) in few products enough (``winograd.large_blocks``,
    which checks the kernel): its blocks."""
    return (g.ndim == 2 and g.groups == 1 and g.dilation == (1, 1)
            and min(g.c_in, g.c_out) >= AUTO_LARGE_WINOGRAD_CHANNELS and g.macs >= AUTO_LARGE_WINOGRAD_MACS
            and _tiles(g) >= (AUTO_LARGE_WINOGRAD_MIN_TILES if least_tiles is None else least_tiles)
            and (_half_width(g) or (_full_width(g) and g.n >= 2)) and _backend_says("winograd", "large_blocks", g))


def _large_winograd_weight(g: Geometry) -> bool:
    """``_large_winograd``'s calls whose weight gradient winograd runs as its blocks' adjoint
    (``winograd.large_weight_blocks``: 64+ channels a side, an image a thread, 60K+ of a thread's
    grid tiles times channels), but for the wide rows that BLAS's patches take
    (``_wide_rows_weight``: 16 x 256 -> 384 5x5 9x9, ms winograd / numba / im2col 44.3 / 45.5 /
    36.3; 32 x 256 -> 256 5x5 14x14 87.9 / 121 / 131; 2 threads, float32, Zen 4, 2026-12-06)."""
    return (_large_winograd(g) and not _wide_rows_weight(g)
            and _backend_says("winograd", "large_weight_blocks", g))


def _gradient_rows(name, condition, order):
    """Two rows of ``AUTO_PASS_RULES``, the input gradient's and the weight gradient's, alike."""
    return tuple((pass_, name, condition, order) for pass_ in ("grad_input", "grad_weight"))


# numba's forward over small images with the batch's images as the register tiles' columns, which
# leaves out the taps that read padding (``numba_jit.images``, ``images_input``; half-width AVX-512
# only, where it was measured). `fastconv bench --shape <51 such layers> --backends
# auto,numba,im2col,winograd,torch --pass both --repeat 3` (2 threads, float32, 2026-12-07, Zen 4),
# and each pass alone (5 interleaved rounds), time over torch's, numba against the best of the
# others, forward / input gradient: kernels past 3x3 over up to 14x14 images, N=64 384 -> 32 5x5
# 4x4 1.42 / 1.36 against 2.71 / 2.71 (auto had run im2col: 6.95), N=32 192 -> 32 7x7 5x5 1.75 /
# 1.29 against 4.88 / 3.36 (8.57), N=32 128 -> 128 5x5 6x6 1.22 / 1.26 against 1.84 / 1.60, N=16 32
# -> 96 7x7 14x14 1.15 / 1.24 against 1.57 / 1.56, N=16 256 -> 256 5x5 8x8 1.09 / 1.20 against 1.51
# / 1.48, N=32 96 -> 96 7x7 12x12 1.06 / 1.11 against 1.32 / 1.43, where winograd's 3x3 blocks had
# run them (``_large_winograd``); ties N=16 96 -> 256 5x5 10x10 1.15 / 1.25 against 1.18 / 1.23; its
# losses N=32 64 -> 48 7x7 14x14 forward 1.60 against 1.43 (the input gradient 1.17 against 1.41),
# N=32 192 -> 32 5x5 10x10 1.53 against 1.43 (1.26 / 1.40), N=24 192 -> 192 5x5 8x8 1.51 / 1.57
# against 1.47 / 1.35, N=8 96 -> 512 5x5 2x2 input gradient 5.72 against BLAS's 3.29. Past 14x14
# winograd's blocks won (N=24 64 -> 64 7x7 16x16 1.56 / 1.55 against 1.22 / 1.15). At 3x3 winograd's
# F(2x2) won but where the padding is a third of the taps or more: N=64 512 -> 64 6x6 (21 %) 1.62 /
# 1.43 against 1.21 / 0.98, N=24 512 -> 96 5x5 (25 %) 1.80 / 1.93 against 1.70 / 1.05, N=16 384 ->
# 128 3x3 (40 %) 1.79 / 1.99 against 2.77 / 1.92.
# A batch that fills its last vector of columns in part costs it that much more: N=24 (three
# quarters of two vectors) won where the taps on the image over the vectors' share filled were 0.92
# at most (128 -> 256 5x5 7x7 1.52 against 1.84, 192 -> 32 7x7 10x10 1.66 against 1.85) and lost
# from 0.96 (192 -> 192 5x5 8x8, above; 96 -> 512 5x5 10x10, 1.03: forward 33.3 against 24.8 ms).
# Since the tiles' columns run in 256-bit vectors there (8 images each; the same bits), the vectors
# filled are counted in 8s: N=24 96 -> 512 5x5 10x10 (0.77 of the taps on the image) now 1.15 / 1.23
# against winograd's 1.28 / 1.21 (its weight gradient 1.00, where BLAS's ran at 1.44), N=8 128 -> 128
# 7x7 6x6 numba's forward 0.59x its time before. Each pass alone as above, 41 layers of 8-40 images
# that numba runs so (another seed: 2026-12-07): numba's forward beat the others' best up to 0.70 of
# the taps on the image (0.21-0.93x; but 0.74-3.7x on 2x2 and 3x3 images of 32-48 input channels,
# calls of 0.2-0.3 ms in torch), input gradient to 0.58 (0.32-0.79x, but 1.11-1.48x on four such),
# and lost or tied from 0.72 (forward 0.75-1.41x, input gradient 0.54-1.41x); N=20 (the last of three
# 256-bit vectors half empty) lost at 0.77 (1.27x and 1.18x winograd's time).
AUTO_IMAGES_MAX_PIXELS = 196  # output pixels an image, kernels past 3x3
AUTO_IMAGES_MIN_PADDING = 0.33  # of the taps, any kernel
AUTO_IMAGES_MAX_COST = 0.93  # the taps on the image over the share of the last vector of images filled
AUTO_IMAGES_LANES = 8  # images a vector of the tiles' columns (float32, 256 bits, as numba's on half-width units)


def _images(g: Geometry, question: str) -> bool:
    """On half-width AVX-512, numba runs the pass with the batch's images as the tiles' columns
    (``question``: numba's ``images`` or ``images_input``) over images of at most
    ``AUTO_IMAGES_MAX_PIXELS`` output pixels with a kernel past 3x3, or with
    ``AUTO_IMAGES_MIN_PADDING`` of the taps on padding; in either case its taps on the image over
    its vectors' fill (``AUTO_IMAGES_LANES`` images each) at most ``AUTO_IMAGES_MAX_COST``."""
    if not _half_width(g) or not _backend_says("numba", question, g):
        return False
    flat = as_2d(g)
    fill = flat.n / (-(-flat.n // AUTO_IMAGES_LANES) * AUTO_IMAGES_LANES)
    return flat.input_taps_share <= AUTO_IMAGES_MAX_COST * fill and (
        1 - flat.input_taps_share >= AUTO_IMAGES_MIN_PADDING
        or (math.prod(flat.kernel) > 9 and math.prod(flat.out_size) <= AUTO_IMAGES_MAX_PIXELS))


# Its weight gradient (``_numba_images.grad_weight``: per tap, gy's pixels by the input pixels that
# the tap reads, a reduction over the images of a row) where the forward runs it, each pass alone as
# above (5 interleaved rounds, 72 layers), numba's time over auto's pick before: past 3x3 from 16
# images 0.24-0.93 (N=64 384 -> 32 5x5 4x4 0.24 against BLAS's, N=32 192 -> 192 5x5 8x8 0.72
# against winograd's, N=16 256 -> 256 5x5 8x8 0.70), but 1.34 on N=24 96 -> 384 5x5 2x2; of 8 images
# (each row's reduction 8 images wide) 1.41-3.00 against BLAS's; at 3x3 against winograd's own
# 1.51 (N=32 128 -> 192 3x3) and 2.62 (N=64 256 -> 32 3x3). Before the wide rows' BLAS
# (``_wide_rows_weight``, measured against numba's kernels before): ms numba / BLAS N=32 256 -> 256
# 5x5 7x7 19.5 / 33.0, N=16 256 -> 384 5x5 9x9 31.4 / 39.4.
AUTO_IMAGES_WEIGHT_MIN_IMAGES = 16


def _images_weight(g: Geometry) -> bool:
    """``_images``' forwards of kernels past 3x3 over ``AUTO_IMAGES_WEIGHT_MIN_IMAGES`` images or
    more: numba's weight gradient runs per tap there too."""
    flat = as_2d(g)
    return flat.n >= AUTO_IMAGES_WEIGHT_MIN_IMAGES and math.prod(flat.kernel) > 9 and _images(g, "images")


AUTO_PASS_RULES: tuple[tuple[str, str, object, tuple[str, ...]], ...] = (
    ("forward", "AVX-512 on half-width units: numba's images as the tiles' columns, small images of kernels past "
     "3x3 or a third of the taps on padding", lambda g: _images(g, "images"), ("numba", "winograd", "im2col")),
    ("grad_input", "AVX-512 on half-width units: the same", lambda g: _images(g, "images_input"),
     ("numba", "winograd", "im2col")),
    ("grad_weight", "AVX-512 on half-width units: the same, kernels past 3x3, 16+ images: its weight gradient per tap",
     _images_weight, ("numba", "winograd", "im2col")),
    *((pass_, "AVX-512 (full-width units: 2+ images): 2-D 5x5 and 7x7 kernels at stride 1, one group, 24+ channels "
       "a side, 150M+ multiply-adds, 48+ F(2x2) tiles, products at most 0.9 of a direct sum's: winograd's 3x3 "
       "blocks", _large_winograd,
       ("winograd", "numba", "im2col"))
      for pass_ in ("forward", "grad_input")),
    ("grad_weight", "AVX-512: the same, 64+ channels a side, an image a thread, 60K+ of a "
     "thread's tiles times channels, not BLAS's wide rows: winograd's 3x3 blocks' adjoint", _large_winograd_weight,
     ("winograd", "numba", "im2col")),
    ("forward", "full-width AVX-512: numba's patches over few output pixels, the threads splitting the output "
     "channels, 384+ input channels, one group",
     _patch_rows, ("numba", "im2col")),
    ("forward", "AVX-512 on half-width units: 3x3 at stride 1 under 48 F(2x2) tiles (up to 512 channels a side), "
     "one group, 12M+ multiply-adds: numba's patches or images, the threads splitting the output channels",
     _few_tiles_patch_rows, ("numba", "im2col")),
    ("forward", "full-width AVX-512: one image of one group, 128+ input channels and 33+ output channels, or 16+ and "
     "96+ (2x the input's; kernel past 1x1); kernels past 1x1 up to 1024 output pixels (2-D ones but 3x3 at "
     "stride 1: 64, without many outputs for few inputs); 3x3 at stride 1 under 128 "
     "F(2x2) tiles, from 48 under 512 channels a side and 1024 input channels",
     _one_image_forward, ("im2col", "numba")),
    ("grad_input", "full-width AVX-512: one image of one group, 256+ input channels and 33+ output channels, or 16+ "
     "and 96+ (2x the input's; kernel past 1x1); up to 1024 output pixels; 3x3 at stride 1 under 48 F(2x2) tiles",
     _one_image_grad_input, ("im2col", "numba")),
    ("grad_weight", "full-width AVX-512: one image of one group, 128+ input channels and 33+ output channels, or 16+ "
     "and 96+ (2x the input's; kernel past 1x1); up to 1024 output pixels; not 3x3 at stride 1 on 48+ F(2x2) tiles",
     _one_image_weight, ("im2col", "numba")),
    ("forward", "full-width AVX-512: 3-D kD x 1 x 1 kernels at unit stride, one group, 32+ channels a side: BLAS's "
     "shifted products", lambda g: _plane_taps(g) and min(g.c_in, g.c_out) >= AUTO_PLANE_TAPS_CHANNELS,
     ("im2col", "numba")),
    ("grad_input", "full-width AVX-512: 3-D kD x 1 x 1 kernels at unit stride, one group, 64+ output channels: BLAS's "
     "shifted products", lambda g: _plane_taps(g) and g.c_out >= AUTO_PLANE_TAPS_GRAD_INPUT_OUTPUTS,
     ("im2col", "numba")),
    ("forward", "full-width AVX-512: 1-D, one image, undilated, 32+ output channels", _one_signal,
     ("im2col", "numba")),
    ("forward", "2-D windows that tile the input (stride equal to the kernel, unpadded, one group), up to 96 input "
     "channels x taps (384 on AVX-512's half-width units): BLAS's product of the permuted input", _tiled_windows,
     ("im2col", "numba")),
    ("forward", "AVX-512: numba's tiles of output pixels, kernel past 1x1, 5+ input channels, "
     "not 3x3 at stride 1 nor 512+ output channels 8x the input's",
     lambda g: (math.prod(as_2d(g).kernel) > 1 and g.c_in_g > 4 and not _many_outputs(g, AUTO_MANY_OUT_CHANNELS)
                and _on_pixel_tiles(g, "pixel_tiles")), ("numba", "im2col")),
    ("forward", "AVX-512 on half-width units: 1x1 kernel, one group, 128+ channels a side: BLAS's product",
     _half_width_pointwise, ("im2col", "numba")),
    ("grad_weight", "AVX-512 on half-width units: 1x1 kernel, one group, 128+ channels a side, one image under 256 "
     "output pixels: BLAS's product", _half_width_pointwise_weight, ("im2col", "numba")),
    ("grad_input", "AVX-512 on half-width units: one 2-D image at a stride, one group, kernel past 1x1, 128+ output "
     "channels: BLAS's", _half_width_strided_image_input, ("im2col", "numba")),
    *((pass_, "AVX-512 on half-width units: 1x1 kernels of several groups on numba's packed loops: BLAS's "
       "products, a group at a time", _half_width_grouped_pointwise, ("im2col", "numba"))
      for pass_ in ("forward", "grad_input")),
    ("forward", "AVX-512 on half-width units: kernel past 1x1, one group, few pixels, many input channels, up to "
     "16 output channels, not 3x3 at stride 1: numba's packed loops", _half_width_fewest_outputs, ("numba", "im2col")),
    ("grad_input", "full-width AVX-512: 2-D 1x1 kernel at a stride, one group: numba's products",
     _strided_pointwise, ("numba", "im2col")),
    ("grad_input", "1x1 kernel, one group: w's transpose times gy",
     lambda g: g.groups == 1 and math.prod(g.kernel) == 1, ("im2col", "numba")),
    ("grad_input", "up to 4 input channels, 17+ output channels, one group", _few_inputs, ("im2col", "numba")),
    ("grad_input", "AVX-512 on half-width units: 1-D at a stride, one group, up to 16 input channels, 64+ output "
     "channels: BLAS's", _half_width_strided_1d_few_inputs, ("im2col", "numba")),
    ("grad_input", "full-width AVX-512: 256+ output channels, 8x the input's",
     lambda g: _many_outputs(g, AUTO_MANY_OUT_GRAD_INPUT_CHANNELS), ("im2col", "numba")),
    ("grad_input", "at a stride, few output channels for the taps, one group",
     _strided_few_outputs, ("numba", "im2col")),
    ("grad_input", "2-D and 3-D on numba's patches (at a stride, many channels), without AVX-512",
     lambda g: g.ndim >= 2 and _backend_says("numba", "patches", g) and _without_wide_tiles(g), ("numba", "im2col")),
    ("grad_input", "AVX-512: numba's stride phases on tiles of output pixels (full-width units), not 3x3 at "
     "stride 1",
     lambda g: _on_pixel_tiles(g, "pixel_tiles_input"), ("numba", "im2col")),
    ("grad_weight", "full-width AVX-512: 512+ output channels, 8x the input's",
     lambda g: _many_outputs(g, AUTO_MANY_OUT_CHANNELS), ("im2col", "numba")),
    ("grad_weight", "AVX-512 on half-width units: 2-D kernels past 3x3 at stride 1, the padded rows 1.4x the "
     "output's width, 256+ channels a side, one group: BLAS's patches (numba's wide rows)",
     _wide_rows_weight, ("im2col", "numba")),
    ("grad_weight", "up to 4 input channels, 17+ output channels, one group, without AVX-512",
     lambda g: _few_inputs(g) and _without_wide_tiles(g), ("im2col", "numba")),
    ("grad_weight", "AVX-512: 3x3 at stride 1, one group, 384+ channels a side, under 128 F(2x2) tiles, "
     "2+ images: im2col's gradient split by input channels", _split_weight, ("im2col", "numba")),
    ("grad_weight", "AVX-512 on half-width units: 3x3 at stride 1, 48-127 F(2x2) tiles in the batch, one group, "
     "192+ channels a side: winograd's", _half_width_winograd_weight, ("winograd", "im2col", "numba")),
    ("grad_weight", "3x3 at stride 1, 48-127 F(2x2) tiles in the batch, numba's register tiles",
     lambda g: _few_weight_tiles(g) and _register_tiles(g), ("numba", "im2col", "winograd")),
    ("grad_weight", "3x3 at stride 1, 48-127 F(2x2) tiles in the batch", _few_weight_tiles,
     ("im2col", "winograd", "numba")),
    ("grad_weight", "3x3 at stride 1, 128+ F(2x2) tiles, 32+ channels per group, without AVX-512",
     _winograd_own_weight, ("winograd", "im2col", "numba")),
    ("grad_weight", "AVX-512 on half-width units: kernel past 1x1, one group, few pixels (25+ an image or a plane), "
     "many input channels, up to 16 output channels, not 3x3 at stride 1, at any stride: numba's",
     lambda g: _half_width_fewest_outputs(g, AUTO_HALF_WIDTH_FEWEST_OUT_WEIGHT_PIXELS), ("numba", "im2col")),
    ("grad_weight", "strided 1-D and 2-D, kernel past 1x1, 64+ input channels per group (with AVX-512's tiles "
     "one image of up to 8 Mi patch elements, and on half-width units 384+ input channels per group or under "
     "512 output pixels in the batch)",
     _strided_weight_blas, ("im2col", "numba")),
    ("grad_weight", "AVX-512 on half-width units: strided 1-D and 2-D, kernel past 1x1, 64-383 input channels per "
     "group, 512+ output pixels in the batch, one image only past 8 Mi patch elements (past the BLAS row of few "
     "pixels too)",
     lambda g: _strided_weight(g) and _half_width(g) and not _strided_weight_blas(g), ("numba", "im2col")),
    ("forward", "AVX-512: 1-D at stride 1, few pixels, many channels (full-width units: up to 384 a side), on "
     "numba's implicit forward", lambda g: _one_d_implicit(g, "implicit_forward"), ("numba", "im2col")),
    ("grad_input", "AVX-512: 1-D at stride 1, few pixels, many channels (full-width units: up to 384 a side), on "
     "numba's implicit forward", lambda g: _one_d_implicit(g, "implicit_input_gradient"), ("numba", "im2col")),
    ("grad_weight", "AVX-512: 1-D at stride 1, few pixels, many channels (full-width units: up to 384 a side, "
     "its forward on numba's implicit forward)", lambda g: _one_d_implicit(g, None), ("numba", "im2col")),
    ("forward", "AVX-512 on half-width units: 3x3 at stride 1, one group, under 64 channels a side: 32+ on 28x28 "
     "images and up; 3x3x3 32+ on any planes, 16+ on 28x28 and up", _few_channels_winograd,
     ("winograd", "numba", "im2col")),
    ("grad_input", "AVX-512 on half-width units: 3x3 at stride 1, one group, under 64 channels a side: 32+ on 28x28 "
     "images and up; 3x3x3 32+ on planes of 10x10 and up, 16+ on 28x28 and up",
     lambda g: _few_channels_winograd(g, AUTO_FEW_CHANNELS_WINOGRAD_GRAD_INPUT_PIXELS),
     ("winograd", "numba", "im2col")),
    ("grad_input", "AVX-512 on half-width units: kernel past 1x1 at unit stride, one group, 2+ images, 384+ output "
     "channels, 8x the input's", _half_width_many_outputs, ("im2col", "numba")),
    ("forward", "AVX-512: 3x3 at stride 1, one group, few pixels, many input channels, few output channels (half-"
     "width units: under 48; full-width: 2-D, up to 32): numba's", _few_outputs_3x3, ("numba", "winograd", "im2col")),
    ("grad_input", "AVX-512: 3x3 at stride 1, one group, few pixels (49+ an image), many input channels, few output "
     "channels (half-width units: under 48; full-width: 2-D, up to 32): numba's",
     lambda g: _few_outputs_3x3(g, AUTO_HALF_WIDTH_FEW_OUT_PIXELS), ("numba", "winograd", "im2col")),
    ("forward", "AVX-512 on half-width units: 2-D 3x3 at stride 1, one group, 64-79 channels on the smaller side and "
     "up to 128 on the larger, up to 256 output pixels an image, under 300 F(2x2) tiles: numba's implicit forward",
     _half_width_small_winograd, ("numba", "winograd", "im2col")),
    ("grad_input", "AVX-512 on half-width units: 2-D 3x3 at stride 1 under 48 F(2x2) tiles over 2+ images, one "
     "group, up to 384 output channels, 128+ channels a side: winograd's",
     lambda g: _half_width_few_tiles(g) and min(g.c_in, g.c_out) >= AUTO_HALF_WIDTH_FEW_TILES_WINOGRAD,
     ("winograd", "numba", "im2col")),
    *_gradient_rows("AVX-512 on half-width units: 2-D 3x3 at stride 1 under 48 F(2x2) tiles over 2+ images, one "
                    "group, up to 384 output channels: numba's", _half_width_few_tiles, ("numba", "im2col")),
    ("forward", "AVX-512 on half-width units: 2-D, one image, kernel past 1x1, up to 4 input channels, 192+ output "
     "channels: BLAS's", _half_width_stem, ("im2col", "numba")),
    *_gradient_rows("AVX-512 on half-width units: 2-D, one group, 2+ images, 5x5 kernels and up at unit stride, 384+ "
                    "output channels, 4x the input's: BLAS's", _half_width_many_outputs_large, ("im2col", "numba")),
    *_gradient_rows("AVX-512 on half-width units: 2-D, one image, one group, 5x5 kernels and up at stride 1, 192+ "
                    "output channels, up to 400 output pixels: BLAS's", _half_width_one_image_gradients,
                    ("im2col", "numba")),
    *((pass_, "AVX-512 on half-width units: one group, few pixels, many input channels, a k x 1 kernel on im2col's "
       "shifted columns: numba's", _half_width_shifted, ("numba", "im2col"))
      for pass_ in ("forward", "grad_input", "grad_weight")),
    ("grad_input", "AVX-512 on half-width units: 2-D and 3-D at unit stride, 2+ images, kernel past 1x1, few pixels, "
     "many input channels, one group, under 64 output channels, not 3x3 at stride 1: numba's",
     _half_width_few_outputs_input, ("numba", "im2col")),
    ("grad_weight", "AVX-512 on half-width units: 2-D and 3-D, kernel past 1x1, few pixels, many input channels, "
     "one group, under 64 output channels, not 3x3 at stride 1: numba's", _half_width_few_outputs_weight,
     ("numba", "im2col")),
)

# Rows for one dtype, first for it (past depthwise and small calls, ``_past_small``): ``(dtype name,
# pass or "*" for every pass, name, condition, order)``. In float64 without AVX-512 numba's loops
# lose far more than in float32: two threads, an AVX2 Zen 3 (2026-12-04), numba's packed forward
# of N=32 C=128 28x28 ran at 47 GFLOP/s (float32 132), BLAS's at 76 (118), and its packed weight
# gradient scaled to two threads in float32 (47.7 -> 24.7 ms, N=32 C=32 56x56) but not in float64
# (85.6 -> 70.1). Each pass timed alone, medians of 5 interleaved rounds, ms, float64, N=32 unless
# said, winograd / numba / im2col. 3x3 at stride 1: C=32 56x56 forward 23.4 / 33.7 / 40.0, input
# gradient 21.6 / 34.1 / 39.8, weight gradient 32.4 / 149 / 41.6; 28x28 7.1 / 16.1 / 12.7, 8.2 /
# 10.5 / 11.3, 10.9 / 46.5 / 18.3; 14x14 2.6 / 3.1 / 6.0, 3.2 / 5.3 / 4.1, 4.3 / 13.7 / 4.9; 7x7
# 1.60 / 1.82 / 2.10, 1.66 / 1.40 / 2.22, 3.07 / 7.06 / 1.81; C=48 28x28 10.3 / 34.4 / 19.0, 9.8 /
# 35.2 / 20.5, 16.6 / 93.9 / 26.3; N=16 24 -> 48 28x28 4.4 / 10.9 / 9.2, 5.0 / 11.4 / 8.0, (numba's)
# 13.4 / 34.7 / 7.7; C=16 56x56 10.8 / 8.8 / 13.9, 11.0 / 10.1 / 15.5, 28.4 / 44.3 / 15.7; N=8 8 ->
# 16 112x112 7.2 / 5.7 / 12.5, 8.9 / 6.8 / 12.0, 13.8 / 20.7 / 8.4; grouped, N=16, 32 groups of 16
# 14x14 12.2 / 18.6 / 15.9, 12.2 / 19.7 / 19.2, 30.2 / 58.1 / 24.1; of 8 28x28 17.5 / 21.1 / 20.2,
# 17.5 / 22.2 / 22.3, 28.3 / 46.3 / 37.7; 4 groups of 32 28x28 11.8 / 30.4 / 18.7, 11.7 / 30.8 /
# 18.7, 13.6 / 84.0 / 26.7; 3-D 3x3x3 N=2 C=32 8x28x28 8.9 / 23.5 / 16.0, 9.0 / 23.5 / 13.0, 11.7 /
# 35.1 / 23.5. Other kernels, numba / im2col: 5x5 N=8 32 -> 64 56x56 75.2 / 37.4, 77.4 / 48.1, 71.3
# / 50.5; N=16 C=64 28x28 81.4 / 39.8, 81.4 / 40.4, 67.5 / 47.6; 16 -> 32 28x28 20.9 / 13.3, 20.9 /
# 17.0, 55.1 / 16.2; 7x7 N=8 C=32 28x28 22.1 / 12.6, 22.3 / 13.0, 59.0 / 14.9; 3x3 at stride 2
# 32 -> 64 56x56 36.4 / 19.0, 45.2 / 25.4, 89.1 / 26.1; 1x1 32 -> 64 56x56 10.9 / 8.7, 12.2 / 8.2,
# 14.6 / 15.9 (the weight gradient of 1x1 kernels stays numba's: 24 -> 96 7.4 / 10.4, 40 -> 80
# 4.4 / 4.3, 64 -> 128 4.4 / 5.1); but 1-D k9 N=16 C=32 over 8000 39.3 / 59.4, 39.1 / 60.9, 101 /
# 68.7, and dilated 3x3 (N=8 C=32 32x32 d2 3.3 / 6.8, 3.5 / 5.5, 7.6 / 5.3). Batches of few tiles
# keep im2col (one 7x7 image of 256 channels 2.63 / 3.71 / 1.64, one 12x12 of 128 1.17 / 1.69 /
# 1.16; two 7x7 of 512 7.9 / 27.0 / 11.7). Scored on 20 shapes not used to draw the rows (3x3 of
# 12-96 channels over 20x20 to 64x64, grouped, 5x5, 7x7, strided, dilated, 1x1, 1-D, 3-D, few
# input channels; 5 interleaved rounds): auto's pick over the fastest backend's time, per pass,
# geomean 1.05 (the float32 rows: about 1.3), 9 of 60 passes over 1.1x (32), worst the input gradient
# of few input channels (``AUTO_PASS_RULES``' float32 row; 5x5 3 -> 16 2.84), 3x3x3 with 16
# channels 1.64, 3x3 24 -> 24 over 20x20 1.40. Not measured with AVX-512.
AUTO_F64_WINOGRAD_CHANNELS = 24  # per group, in and out (8 in grouped layers): 3x3 stride-1 to winograd
AUTO_F64_WINOGRAD_GROUPED_CHANNELS = 8
AUTO_F64_BLAS_CHANNELS = 16  # input channels per group from which other kernels run im2col
AUTO_F64_POINTWISE_CHANNELS = 64  # input channels per group up to which a 1x1 weight gradient runs numba


def _f64_winograd(g: Geometry) -> bool:
    """A 3x3 stride-1 layer past the few-tiles row with ``AUTO_F64_WINOGRAD_CHANNELS`` channels per
    group each side (``AUTO_F64_WINOGRAD_GROUPED_CHANNELS`` in grouped layers), without AVX-512."""
    flat = as_2d(g)
    least = AUTO_F64_WINOGRAD_GROUPED_CHANNELS if g.groups > 1 else AUTO_F64_WINOGRAD_CHANNELS
    return (_is_3x3s1(g) and not _few_tiles(g) and min(flat.c_in_g, flat.c_out_g) >= least
            and _without_wide_tiles(g))


AUTO_DTYPE_RULES: tuple[tuple[str, str, str, object, tuple[str, ...]], ...] = (
    # (The one-image rows of ``AUTO_PASS_RULES`` lost to float64's winograd on 3x3 layers at stride
    # 1 of 48+ F(2x2) tiles: forward time BLAS's over winograd's, 3 rounds without the idle pause
    # that ``AUTO_ONE_IMAGE_*``' totals had (it favoured BLAS), 2026-12-04, 512 -> 256
    # 20x20 1.37, 1024 -> 128 14x14 1.25, 1024 -> 256 1.20, 192 -> 64 1.13, 512 -> 96 1.06, 384 -> 96
    # 1.04; the weight gradient of 192 -> 96 28x28 (196 tiles) 1.23. There winograd's rows decide.)
    ("float64", "forward", "full-width AVX-512: one image, 3x3 at stride 1 on 48+ F(2x2) tiles, 64+ channels",
     lambda g: _one_image(g) and _is_3x3s1(g) and _tiles(g) >= AUTO_FEW_TILES and _winograd_channels(g),
     ("winograd", "numba", "im2col")),
    ("float64", "forward", "full-width AVX-512: numba's patches over few output pixels, 384+ input channels: BLAS's",
     _patch_rows, ("im2col", "numba")),
    ("float64", "grad_weight", "full-width AVX-512: one image, 3x3 at stride 1 on 128+ F(2x2) tiles, 64+ channels",
     lambda g: _one_image(g) and _is_3x3s1(g) and _tiles(g) >= AUTO_WEIGHT_TILES and _winograd_channels(g),
     ("winograd", "numba", "im2col")),
    ("float64", "grad_weight", "3x3 at stride 1, 128+ F(2x2) tiles, 32+ channels per group, without AVX-512",
     _winograd_own_weight, ("winograd", "im2col", "numba")),
    ("float64", "grad_weight", "1x1 kernels, up to 64 input channels per group, without AVX-512",
     lambda g: math.prod(g.kernel) == 1 and g.c_in_g <= AUTO_F64_POINTWISE_CHANNELS and _without_wide_tiles(g),
     ("numba", "im2col")),
    ("float64", "grad_weight", "without AVX-512: BLAS's products", _without_wide_tiles, ("im2col", "numba")),
    # (On full-width AVX-512 the float32 row of ``AUTO_PASS_RULES`` gives these numba's; in float64
    # numba's took 1.26-2.04x BLAS's time there: auto's backward, 5 rounds in one process,
    # 2026-12-04, 3x3 s2 N=32 64 -> 64 56x56 1.45, 64 -> 128 28x28 1.47, 128 -> 256 1.72, 256 ->
    # 512 14x14 2.04, 1-D k5 s2 64 -> 128 1.26.)
    ("float64", "grad_weight", "strided 1-D and 2-D, kernel past 1x1, 64+ input channels per group",
     _strided_weight, ("im2col", "numba")),
    # (numba's implicit rows of 1-D signals on full-width units are float32's: in float64 its packed
    # loops took 1.3-2.5x BLAS's time there, 2026-12-07, ms numba / im2col, forward, input gradient,
    # weight gradient: k3 N=8 256 -> 256 over 64 4.82 / 2.19, 4.29 / 2.88, 2.94 / 2.39; over 128 10.0
    # / 4.39, 10.8 / 5.17, 6.25 / 4.01; N=8 C=384 23.6 / 9.38, 20.1 / 11.1, 16.0 / 7.81; N=32 512 ->
    # 256 68.4 / 33.8, 70.8 / 36.0, 39.1 / 31.2.)
    ("float64", "forward", "full-width AVX-512: 2-D 3x3 at stride 1, few pixels, up to 32 output channels: "
     "winograd's", _full_width_few_outputs_3x3, ("winograd", "numba", "im2col")),
    ("float64", "grad_input", "full-width AVX-512: 2-D 3x3 at stride 1, few pixels, up to 32 output channels: "
     "winograd's", _full_width_few_outputs_3x3, ("winograd", "numba", "im2col")),
    ("float64", "*", "full-width AVX-512: 1-D at stride 1, few pixels, many channels: BLAS's",
     lambda g: _one_d_few_pixels(g) and _full_width(g), ("im2col", "numba")),
    # (In float64 the many-output rows also hold where winograd's take the layer in float32: auto's
    # backward with winograd's passes / BLAS's, 5 rounds, 3x3 N=16 64 -> 512 14x14 1.69, N=8 28x28
    # 1.45, N=16 20x20 1.48, N=32 7x7 1.58, N=8 40x40 1.34; 96 -> 768 14x14 0.82, N=32 96 -> 1024 7x7
    # 0.93, N=4 128 -> 1024 28x28 0.85.)
    ("float64", "grad_input", "full-width AVX-512: 2-D 1x1 kernel at a stride, one group: BLAS's products",
     _strided_pointwise, ("im2col", "numba")),
    ("float64", "grad_input", "full-width AVX-512: 256+ output channels, 8x the input's",
     lambda g: _many_outputs_any(g, AUTO_MANY_OUT_GRAD_INPUT_CHANNELS), ("im2col", "numba")),
    ("float64", "grad_weight", "full-width AVX-512: 512+ output channels, 8x the input's",
     lambda g: _many_outputs_any(g, AUTO_MANY_OUT_CHANNELS), ("im2col", "numba")),
    # (The half-width rows of few pixels with few output channels or shifted columns give numba's
    # weight gradient in float32; in float64 BLAS's won half of those measured, ms numba / im2col,
    # each pass alone, 5 interleaved rounds (2026-12-06, Zen 4): 7x1 N=64 96 -> 48 12x12 24.4 /
    # 12.6, 5x5 N=16 384 -> 48 10x10 52.6 / 31.2; but 5x5 N=32 256 -> 8 12x12 20.0 / 46.1, 5x5x5 N=2
    # 192 -> 8 8x14x14 48.0 / 110: BLAS's kept, as before. Their forward and input gradient stay
    # numba's, as in float32: 7x1 14.0 / 13.5, 14.4 / 17.1; 3x3 N=32 128 -> 8 7x7 numba / winograd
    # 0.48 / 0.84, 0.52 / 1.23, 3x3x3 N=8 384 -> 8 4x7x7 8.6 / 14.9, 9.7 / 14.9, but N=32 512 -> 32
    # 7x7 11.2 / 6.3, 12.0 / 6.6.)
    ("float64", "grad_weight", "AVX-512 on half-width units: few pixels, many input channels, under 64 output "
     "channels (up to 16 at any stride) or a k x 1 kernel on im2col's shifted columns: BLAS's",
     lambda g: (_half_width_few_outputs_weight(g) or _half_width_shifted(g)
                or _half_width_fewest_outputs(g, AUTO_HALF_WIDTH_FEWEST_OUT_WEIGHT_PIXELS)), ("im2col", "numba")),
    ("float64", "grad_input", "AVX-512 on half-width units: 2-D and 3-D at unit stride, 2+ images, few pixels, many "
     "input channels, under 64 output channels: BLAS's (the float32 row's numba lost here)",
     _half_width_few_outputs_input, ("im2col", "numba")),
    ("float64", "forward", "AVX-512 on half-width units: 1-D at a stride, few pixels, many input channels, up to 16 "
     "output channels: BLAS's (the float32 row's numba lost here)",
     lambda g: g.ndim == 1 and max(g.stride) > 1 and _half_width_fewest_outputs(g), ("im2col", "numba")),
    ("float64", "forward", "AVX-512 on half-width units: 2-D 3x3 at stride 1, 64-79 channels, small images: "
     "winograd's (the float32 row's numba lost here)", _half_width_small_winograd, ("winograd", "numba", "im2col")),
    # (float64, the same method, BLAS's both / numba's both / winograd's and numba's: N=2 8x8 256 ->
    # 256 0.88 / 1.61 / 1.51, N=6 4x4 512 -> 192 0.79 / 0.89 / 1.02, but N=2 7x7 256 -> 64 2.38 / 2.17
    # / 1.01, N=3 5x5 96 -> 96 3.94 / 3.08 / 1.11: no line drawn, the few-tiles row's BLAS kept.)
    *(("float64",) + row for row in _gradient_rows(
        "AVX-512 on half-width units: 2-D 3x3 at stride 1 under 48 F(2x2) tiles over 2+ images, up to 384 output "
        "channels: BLAS's (the float32 rows' numba and winograd not measured to win here)", _half_width_few_tiles,
        ("im2col", "winograd", "numba"))),
    ("float64", "*", "3x3 at stride 1, 24+ channels per group (8+ in grouped layers), without AVX-512",
     _f64_winograd, ("winograd", "im2col", "numba")),
    ("float64", "*", "2-D and 3-D kernels but 3x3 at stride 1, 16+ input channels per group, without AVX-512",
     lambda g: (g.ndim >= 2 and (as_2d(g).kernel, as_2d(g).stride) != ((3, 3), (1, 1))
                and g.c_in_g >= AUTO_F64_BLAS_CHANNELS and _without_wide_tiles(g)), ("im2col", "numba")),
    # (last: where no float64 row holds, as the float32 row did before its floor)
    *(("float64", pass_, "AVX-512: 2-D 5x5 and 7x7 kernels at stride 1, as the float32 row but over any number of "
       "F(2x2) tiles: winograd's 3x3 blocks", lambda g: _large_winograd(g, 0), ("winograd", "numba", "im2col"))
      for pass_ in ("forward", "grad_input")),
)
