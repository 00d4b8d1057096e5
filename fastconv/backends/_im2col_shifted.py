"""im2col's route for kernels one pixel wide at stride 1 with no horizontal padding: no patch copy.

Such a kernel (``k x 1``: a 3-D temporal ``kD x 1 x 1`` kernel arrives here from the lift as a
``(kD, 1)`` kernel over ``(D, H*W)``) reads, for tap ``ky``, the input pixel ``(oy + ky*dil_h -
pt, ox)`` of output pixel ``(oy, ox)``: with the rows of an image laid end to end, one fixed shift
``(ky*dil_h - pt) * W`` of the output's column. Each tap is then a GEMM of the weight's slice with
a plain (strided) view of the input columns, and the output is their sum: no patch matrix (kH
times the input) is copied. The sum is formed a chunk of output columns at a time, so that the
partial products stay in cache; the rows of the zero padding are simply the columns a tap does not
reach. Measured, 2 threads, N=2, C=64, 16x56x56, 3x1x1 (`fastconv bench --suite 3d`): forward
1.67x torch's time, backward 1.43, where the patch-matrix route took 1.75 and 1.67.

The input gradient (a forward convolution with the flipped kernel, of the same kind) and the
weight gradient (per tap, ``gy_chunk @ x_chunk.T`` summed over the chunks in a fixed order) use
the same columns. Taps never read the padding: where the reference's ``inf * 0`` there gives NaN,
``padding_products`` puts it back.
"""

from __future__ import annotations

import numpy as np

from .._workers import buffer, even, map_items, thread_share
from ._padding_nan import padding_products

# Output columns per work item: the items' partial products (C_out x this, float32: 512 KiB for
# 64 channels at 2048) stay in L2 between the taps' GEMMs and the adds.
CHUNK_ELEMENTS = 2**17
MIN_COLUMNS = 512  # and each GEMM keeps at least this many columns (narrow ones run below peak)
FLOOR_COLUMNS = 64  # unless the memory budget says otherwise, down to this (or one output row)


def applies(geom) -> bool:
    """Whether a 2-D ``geom`` takes this route: a ``k x 1`` kernel (k > 1) at unit stride, no
    horizontal padding, one input channel per group or more (depthwise has its own path)."""
    return (geom.ndim == 2 and geom.kw == 1 and geom.kh > 1 and geom.sh == geom.sw == 1
            and geom.pl == geom.pr == 0 and geom.c_in_g > 1)


def _columns(geom, per_column: int, itemsize: int):
    """``(image, c0, c1)`` work items: chunks of each image's output columns, each thread's
    ``per_column`` elements of scratch per column within its share of the memory budget, down to
    one output row (or ``FLOOR_COLUMNS``) of columns: a budget below that is exceeded by it."""
    total = geom.oh * geom.ow
    room = max(geom.ow, FLOOR_COLUMNS, thread_share(geom, itemsize) // (itemsize * max(1, per_column)))
    step = min(total, room, max(MIN_COLUMNS, CHUNK_ELEMENTS // max(1, per_column)))
    step = even(total, step)
    return [(b, c0, min(total, c0 + step)) for b in range(geom.n) for c0 in range(0, total, step)]


def _reach(geom, ky, c0, c1):
    """Tap ``ky``'s shift, and the output columns ``a:b`` within ``c0:c1`` whose input row lies
    inside the image."""
    shift = (ky * geom.dil_h - geom.pt) * geom.iw
    return shift, max(c0, -shift), min(c1, geom.ih * geom.iw - shift)


def forward(x, w, geom, bias, threads):
    g, cog, cig = geom.groups, geom.c_out_g, geom.c_in_g
    y = np.empty(geom.y_shape, x.dtype)
    xf = x.reshape(geom.n, g, cig, geom.ih * geom.iw)
    yf = y.reshape(geom.n, g, cog, geom.oh * geom.ow)
    taps = np.ascontiguousarray(w.reshape(g, cog, cig, geom.kh).transpose(3, 0, 1, 2))  # (kh, g, cog, cig)
    reach = [_reach(geom, ky, 0, geom.oh * geom.ow) for ky in range(geom.kh)]
    # a tap that reaches every output column (the middle one, usually) writes the sum's first term
    full = next((ky for ky, (_, a, b) in enumerate(reach) if a == 0 and b == geom.oh * geom.ow), None)

    def work(b, c0, c1, scratch):
        out = yf[b, :, :, c0:c1]
        if full is None:
            out[...] = 0
        else:
            s = reach[full][0]
            np.matmul(taps[full], xf[b, :, :, c0 + s:c1 + s], out=out)
        part = buffer(scratch, "part", (g, cog, c1 - c0), x.dtype)
        for ky in range(geom.kh):
            shift, a, e = _reach(geom, ky, c0, c1)
            if ky == full or a >= e:
                continue
            np.matmul(taps[ky], xf[b, :, :, a + shift:e + shift], out=part[:, :, :e - a])
            out[:, :, a - c0:e - c0] += part[:, :, :e - a]
        if bias is not None:
            out += bias.reshape(g, cog, 1)

    map_items(_columns(geom, geom.c_out, x.itemsize), work, threads)
    if not np.isfinite(w.sum()):  # rare: NaN where an infinite weight meets the padding
        padding_products(y, ~np.isfinite(w), geom, forward=True)
    return y


def grad_weight(gy, x, geom, threads, matmul_nt):
    """``gw[:, :, ky] = sum over images and chunks of gy_chunk @ x_shifted_chunk.T``, the chunks'
    parts added in item order (bit-reproducible for a thread count)."""
    g, cog, cig = geom.groups, geom.c_out_g, geom.c_in_g
    xf = x.reshape(geom.n, g, cig, geom.ih * geom.iw)
    gyf = gy.reshape(geom.n, g, cog, geom.oh * geom.ow)

    def work(b, c0, c1, scratch):
        part = buffer(scratch, "part", (geom.kh, g, cog, cig), x.dtype)
        for ky in range(geom.kh):
            shift, a, e = _reach(geom, ky, c0, c1)
            if a >= e:
                part[ky] = 0
                continue
            matmul_nt(gyf[b, :, :, a:e], xf[b, :, :, a + shift:e + shift], part[ky])
        return Ellipsis, part

    # no scratch per column (the taps read gy and x where they lie): long contractions
    total = map_items(_columns(geom, 1, x.itemsize), work, threads, np.zeros((geom.kh, g, cog, cig), x.dtype))
    gw = np.ascontiguousarray(total.transpose(1, 2, 3, 0)).reshape(geom.w_shape)
    if not np.isfinite(gy.sum()):
        padding_products(gw, ~np.isfinite(gy), geom, forward=False)
    return gw
