"""Winograd backend: 3x3 stride-1 convolutions as F(2x2,3x3) tiles ("highest") or F(4x4,3x3) ("high").
Blocks of tiles run on fastconv's threads: Numba transforms into a cache-sized (alpha^2, C, tiles) block,
alpha^2 single-threaded BLAS products with the transformed kernel, the output transform; grad_input is
the same with the flipped kernel, grad_weight the numba backend's. Extra memory: the transformed kernel
(16/9 or 4x w) and per thread one block, under im2col's memory budget. Error (README): F(2x2) within 2x a
direct sum's, F(4x4) ~10x; wins on many channels over 14-56 pixel images; non-finite results rerun direct.
"""

from __future__ import annotations

import numpy as np

from .._precision import get_precision
from .._threads import get_num_threads, single_threaded_blas
from .._workers import buffer as _buffer
from .._workers import map_items as _map_items
from .._workers import memory_budget
from .._workers import reserved as _reserved
from . import _winograd_kernels as _k

NAME = "winograd"

TILE = {"highest": 2, "high": 4}  # output tile m of F(m x m, 3x3) at each precision level
# A work item's transformed input and products (alpha^2 x (C + K) x tiles) aim for this size, so
# that they stay in the core's 1 MiB share of L2 between the transform, the products and the
# output transform; never fewer tiles than ITEM_MIN_TILES (the products get too thin).
ITEM_BYTES = 1 * 2**20
ITEM_MIN_TILES = 16


def supports(geom, dtype, precision):
    """None when this backend runs the call, else why not."""
    if getattr(geom, "ndim", 2) != 2:  # older geometries are 2-D and have no ndim
        return "2-D convolutions only"
    if (geom.kh, geom.kw, geom.sh, geom.sw, geom.dil_h, geom.dil_w) != (3, 3, 1, 1, 1, 1):
        return "3x3 kernels at stride 1 and dilation 1 only"
    if geom.c_in_g == 1:
        return "not depthwise layers (one input channel per group): direct loops are faster"
    if np.dtype(dtype) not in (np.float32, np.float64):
        return "float32 and float64 only"
    if precision not in TILE:
        return f"precision 'highest' or 'high' only, not {precision!r}"
    return None


def algorithm(geom, dtype, precision) -> str:
    """The algorithm a supported call runs at ``precision``, e.g. ``"F(4x4,3x3)"``."""
    m = TILE[precision]
    return f"F({m}x{m},3x3)"


def forward(x, w, geom, bias=None):
    """y of shape ``geom.y_shape``, dtype of ``x``, plus ``bias[co]`` when given."""
    y = _convolve(x, w, geom, geom.c_out, (geom.oh, geom.ow), geom.pt, geom.pl, bias, transposed=False)
    if y is None:  # inf or NaN in the result: Winograd spreads them over whole tiles
        from . import numba_jit
        return numba_jit.forward(x, w, geom, bias)
    return y


def grad_input(gy, w, geom):
    """Gradient with respect to the input: the stride-1 convolution of gy with the flipped,
    channel-transposed kernel, padded by 2 - p on each side (negative: cropped)."""
    gx = _convolve(gy, w, geom, geom.c_in, (geom.ih, geom.iw), 2 - geom.pt, 2 - geom.pl, None, transposed=True)
    if gx is None:
        from . import numba_jit
        return numba_jit.grad_input(gy, w, geom)
    return gx


def grad_weight(gy, x, geom):
    """Gradient with respect to the weight, shaped like ``w``: the numba backend's direct loops."""
    from . import numba_jit
    return numba_jit.grad_weight(gy, x, geom)


def _plan(tiles, per_tile, shared, geom, itemsize):
    """``(tiles per work item, threads)``: items of about ``ITEM_BYTES``, an even share of the
    tiles, and every thread's block plus the ``shared`` bytes within the memory budget (fewer
    threads when one tile each does not fit; one tile per item at the least)."""
    budget = memory_budget(geom.n * geom.c_in * geom.ih * geom.iw * itemsize) - shared
    reserve = _reserved() * itemsize
    threads = int(max(1, min(get_num_threads(), budget // (per_tile + reserve))))
    fits = (budget // threads - reserve) // per_tile
    want = max(ITEM_MIN_TILES, ITEM_BYTES // per_tile)
    size = int(max(1, min(want, fits, -(-tiles // threads))))
    return -(-tiles // -(-tiles // size)), threads  # equal items: no thread left with crumbs


def _convolve(src, w, geom, c_dst, out_hw, pt, pl, bias, transposed):
    """The stride-1 3x3 convolution of ``src`` into ``c_dst`` channels of ``out_hw`` pixels, input
    pixel ``(oy - pt + ky, ox - pl + kx)``; with w's kernels (``transposed``: flipped, channels
    swapped). None when a result is inf or NaN."""
    m = TILE[get_precision()]
    a2, groups, dtype = (m + 2) ** 2, geom.groups, src.dtype
    cs, cd = src.shape[1] // groups, c_dst // groups  # channels per group read and written
    tiles_h, tiles_w = -(-out_hw[0] // m), -(-out_hw[1] // m)
    tiles = src.shape[0] * tiles_h * tiles_w
    u = np.empty((groups, a2, cd, cs), dtype)
    size, threads = _plan(tiles, a2 * (cs + cd) * src.itemsize, u.nbytes, geom, src.itemsize)
    y = np.empty((src.shape[0], c_dst, *out_hw), dtype)
    b = np.empty(0, dtype) if bias is None else bias
    bad = []

    def transform_filter(k0, k1, scratch):
        _k._filter_transform(w, groups, m, transposed, k0, k1, u)

    def work(t0, t1, scratch):
        nt = t1 - t0
        v = _buffer(scratch, "v", (a2 * cs * nt,), dtype)
        mm = _buffer(scratch, "m", (a2 * cd * nt,), dtype)
        for g in range(groups):
            _k._input_transform(src, g * cs, cs, t0, t1, tiles_h, tiles_w, pt, pl, m, v)
            np.matmul(u[g], v.reshape(a2, cs, nt), out=mm.reshape(a2, cd, nt))
            if _k._output_transform(mm, g * cd, cd, t0, t1, tiles_h, tiles_w, m, b, y):
                bad.append(True)

    rows = w.shape[0]  # the filter transform splits w's rows evenly over the threads
    per = -(-rows // threads)
    with single_threaded_blas(threads > 1):
        _map_items([(k0, min(rows, k0 + per)) for k0 in range(0, rows, per)], transform_filter, threads)
        _map_items([(t0, min(tiles, t0 + size)) for t0 in range(0, tiles, size)], work, threads)
    return None if bad else y


def warmup(dtype):
    """Compile (or load from the on-disk cache) the kernels for ``dtype``: one call per pass,
    which compiles F(2x2) and F(4x4) alike (m is an argument)."""
    from ..geometry import Geometry

    geom = Geometry.from_args((1, 2, 5, 5), (2, 2, 3, 3), padding=1)
    x, w = np.ones(geom.x_shape, dtype), np.ones(geom.w_shape, dtype)
    gy = forward(x, w, geom, np.ones(2, dtype))
    grad_input(gy, w, geom)
    grad_weight(gy, x, geom)
