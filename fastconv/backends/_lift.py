"""1-D and 3-D convolutions run through a backend's 2-D kernels: ``@lifted`` on its three passes.

1-D is 2-D with a unit height, and a 3-D kernel that is 1x1 in the plane (at stride 1, unpadded
there: a temporal 3x1x1 kernel) is 2-D over ``(D, H*W)``: views only, no copy. Other 3-D calls
fold the kernel's depth into the channels: output plane ``od`` reads the input planes
``od*sd - pd + kd*dd`` for ``kd < kD``, so stacking those ``kD`` planes as ``kD * C_in/groups``
channels of each group makes the whole 3-D convolution one 2-D convolution over ``N*OD`` images,
with the weight ``(C_out, kD*C_in/groups, kH, kW)``: the same multiply-adds as a direct 3-D sum,
in one large GEMM or packed loop instead of ``kD`` small ones. The stacked copy holds ``kD/sd``
times the input; it is built for a slice of the output planes at a time, so that it stays under
``CHUNK_BYTES`` and a quarter of the memory budget (or one plane), and the 2-D call plans its own
scratch within what the copies leave of the budget (``_workers.holding``). The input gradient is
the 2-D one of the stacked copy, added back plane by plane in a fixed order (bit-reproducible);
the weight gradient is the 2-D one, summed over the slices in float64 (``PartSum``).

A backend may take some 3-D calls itself before they reach the lift: numba runs the forward of
depthwise volumes on a kernel of its own (``numba_jit._depthwise_volume``), which a grouped 2-D
call of kD channels a group ran 2-6x slower.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np

from .._threads import call_threads
from .._workers import call_budget, holding, kept, map_items
from ..geometry import Geometry
from ._padding_nan import depth_padding_products, not_finite

# Largest stacked copy of a 3-D call made at once (plus its output slice): large enough that the
# 2-D call keeps every thread busy, small enough to stay far under the memory budget.
CHUNK_BYTES = 64 * 2**20


def _is_view(geom: Geometry) -> bool:
    """Whether the 2-D convolution is a view of the arrays: 1-D (a unit height), or 3-D with a
    kernel of 1x1 in the plane at stride 1 and no padding there (a 3x1x1 temporal kernel: the
    planes' pixels form one long row, ``(D, H*W)``, and nothing is copied)."""
    return geom.ndim == 1 or (geom.kernel[1:] == (1, 1) and geom.stride[1:] == (1, 1)
                              and geom.padding[1:] == ((0, 0), (0, 0)))


def _is_subsampled(geom: Geometry) -> bool:
    """Whether ``geom`` is a 3-D 1x1x1 kernel at a stride, unpadded (3-D networks' strided
    shortcuts): it reads every ``stride``-th pixel, and runs as the stride-1 call over those
    (``_subsampled``), copied once, a view of a 2-D call then."""
    return geom.ndim == 3 and geom.kernel == (1, 1, 1) and not geom.is_padded and geom.stride != (1, 1, 1)


def _subsampled(geom: Geometry) -> Geometry:
    """The stride-1 call over the pixels that ``_is_subsampled``'s ``geom`` reads."""
    return replace(geom, in_size=geom.out_size, stride=(1, 1, 1), dilation=(1, 1, 1))


def _picked(geom: Geometry) -> tuple:
    """The index of those pixels in ``geom``'s input."""
    return (slice(None), slice(None), *(slice(0, (o - 1) * s + 1, s) for o, s in zip(geom.out_size, geom.stride)))


def as_2d(geom: Geometry) -> Geometry:
    """The 2-D convolution that a 1-D or 3-D ``geom`` runs as (per slice of output planes when 3-D
    planes are stacked: ``n`` counts the ``N*OD`` images)."""
    if geom.ndim == 2:
        return geom
    if _is_subsampled(geom):
        return as_2d(_subsampled(geom))
    if geom.ndim == 1:
        return replace(geom, in_size=(1, *geom.in_size), kernel=(1, *geom.kernel), stride=(1, *geom.stride),
                       padding=((0, 0), *geom.padding), dilation=(1, *geom.dilation),
                       out_size=(1, *geom.out_size))
    if _is_view(geom):
        (d, h, w), (od, _, _) = geom.in_size, geom.out_size
        return replace(geom, in_size=(d, h * w), kernel=(geom.kernel[0], 1), stride=(geom.stride[0], 1),
                       padding=(geom.padding[0], (0, 0)), dilation=(geom.dilation[0], 1), out_size=(od, h * w))
    kd = geom.kernel[0]
    return replace(geom, n=geom.n * geom.out_size[0], c_in=geom.c_in * kd, in_size=geom.in_size[1:],
                   kernel=geom.kernel[1:], stride=geom.stride[1:], padding=geom.padding[1:],
                   dilation=geom.dilation[1:], out_size=geom.out_size[1:])


class PartSum:
    """The weight gradients of a wrapped call's pieces (3-D slices here, phases in ``_phases``):
    the first as it is where it is the only one, else all added in float64, in the pieces'
    order, and rounded once, so that the error stays one piece's however many there are."""

    def __init__(self):
        self.first = self.total = None

    def held(self, nbytes: int) -> int:
        """The bytes held beside the call that makes the next piece's gradient (``nbytes``): from
        the second piece on (``after_first``)."""
        return 0 if self.first is None else self.after_first(nbytes, self.first.itemsize)

    @staticmethod
    def after_first(nbytes: int, itemsize: int) -> int:
        """``held`` from the second piece on: the first, the float64 total, and that piece's
        gradient itself (``nbytes`` each, in values of ``itemsize`` bytes)."""
        return 2 * nbytes + nbytes * 8 // itemsize

    def add(self, part: np.ndarray) -> None:
        if self.first is None:
            self.first = part
            return
        if self.total is None:
            self.total = self.first.astype(np.float64)
        self.total += part

    def result(self, shape, dtype) -> np.ndarray:
        if self.total is not None:
            return self.total.astype(dtype)
        return self.first if self.first is not None else np.zeros(shape, dtype)


def lifted(pass_fn, pass_name: str | None = None, pin=None):
    """Decorate a backend's 2-D ``forward``, ``grad_input`` or ``grad_weight`` so that it runs 1-D and
    3-D geometries too (``pass_name``: which of the three, when the function is named otherwise).
    ``pin(geom, dtype)``: a context that yields whether a 3-D forward runs by runs of planes
    (``depth_runs``), as decided on the whole call (a ``fastconv.dask`` chunk: on the whole array),
    and in which its 2-D calls run the kernels that the backend picks for the whole call (its
    ``whole_choices``), as a chunk's do: runs stack fewer channels and would otherwise pick by their
    own sizes, and so sum in another order than a chunk's."""
    name = pass_name or pass_fn.__name__
    view, subsampled, stacked = _LIFTS[name]

    @functools.wraps(pass_fn)
    def run(a, b, geom, *rest):
        if geom.ndim == 2:
            return pass_fn(a, b, geom, *rest)
        if _is_subsampled(geom):
            return subsampled(pass_fn, a, b, geom, *rest)
        if _is_view(geom):
            return view(pass_fn, a, b, geom, *rest)
        if name != "forward":  # (the weight gradient decides its runs itself: no pin there)
            return stacked(pass_fn, a, b, geom, *rest)
        if pin is None:
            return stacked(pass_fn, a, b, geom, *rest, split=depth_runs(geom))
        with pin(geom, a.dtype) as split:
            return stacked(pass_fn, a, b, geom, *rest, split=split)
    return run


# ------------------------------------------------------------- 1-D, and 3-D with 1x1 in the plane

def _forward_view(fn, x, w, geom, bias=None):
    flat = as_2d(geom)
    return fn(x.reshape(flat.x_shape), w.reshape(flat.w_shape), flat, bias).reshape(geom.y_shape)


def _grad_input_view(fn, gy, w, geom):
    flat = as_2d(geom)
    return fn(gy.reshape(flat.y_shape), w.reshape(flat.w_shape), flat).reshape(geom.x_shape)


def _grad_weight_view(fn, gy, x, geom):
    flat = as_2d(geom)
    return fn(gy.reshape(flat.y_shape), x.reshape(flat.x_shape), flat).reshape(geom.w_shape)


# ------------------------------------------------------------- 3-D 1x1x1 at a stride (``_is_subsampled``)
#
# Stacked (below), such a call copied its planes at the depth's stride, then the 2-D call copied
# the pixels at the plane's stride again. Two threads, float32, ms through the stacked planes / the
# pixels picked once, medians of 5 interleaved rounds in one process (an AMD Zen 4, 2026-12-07),
# numba's forward, input and weight gradients, stride 2: N=4 256 -> 512 4x14x14 1.49 / 0.96, 1.54 /
# 0.96, 1.04 / 0.74; N=4 128 -> 256 8x28x28 2.49 / 1.72, 3.64 / 2.10, 2.25 / 1.56; N=16 64 -> 192
# 8x8x8 0.64 / 0.34, 0.72 / 0.32, 0.61 / 0.30 (im2col's alike: 0.38-0.89x the time).

def _forward_subsampled(fn, x, w, geom, bias=None):
    xs = np.ascontiguousarray(x[_picked(geom)])
    with holding(xs.nbytes):
        return _forward_view(fn, xs, w, _subsampled(geom), bias)


def _grad_input_subsampled(fn, gy, w, geom):
    gx = np.zeros(geom.x_shape, gy.dtype)  # the pixels no output reads: zero
    gx[_picked(geom)] = _grad_input_view(fn, gy, w, _subsampled(geom))
    return gx


def _grad_weight_subsampled(fn, gy, x, geom):
    xs = np.ascontiguousarray(x[_picked(geom)])
    with holding(xs.nbytes):
        return _grad_weight_view(fn, gy, xs, _subsampled(geom))


# ------------------------------------------------------------------------------------- 3-D

def _plane_slices(geom: Geometry, itemsize: int):
    """Per slice of output planes ``o0:o1``, its 2-D geometry. A slice's stacked input and output
    take at most ``CHUNK_BYTES`` and a quarter of the memory budget (one plane at least), on top of
    what the 2-D call itself keeps under the budget."""
    od, per_plane = geom.out_size[0], geom.c_in * geom.kernel[0] * math.prod(geom.in_size[1:])
    per_plane = (per_plane + geom.c_out * math.prod(geom.out_size[1:])) * geom.n * itemsize
    room = min(CHUNK_BYTES, call_budget(geom, itemsize) // 4)
    step = max(1, min(od, room // max(1, per_plane)))
    flat = as_2d(geom)
    for o0 in range(0, od, step):
        o1 = min(od, o0 + step)
        yield o0, o1, replace(flat, n=geom.n * (o1 - o0))


def _taps(geom: Geometry, o0: int, o1: int):
    """Per depth tap ``kd``: the output planes ``a:b`` (within ``o0:o1``) whose input plane lies in
    the input, and the slice of input planes they read."""
    (d,), (sd,), ((pd, _),), (dd,) = geom.in_size[:1], geom.stride[:1], geom.padding[:1], geom.dilation[:1]
    for kd in range(geom.kernel[0]):
        first = kd * dd - pd  # input plane read by output plane 0
        a = max(o0, -(first // sd))  # the first output plane reading a plane >= 0
        b = min(o1, (d - 1 - first) // sd + 1)  # one past the last reading a plane < d
        if a < b:
            yield kd, a, b, slice(first + a * sd, first + (b - 1) * sd + 1, sd)


# Output planes near the depth's ends read some input planes in its padding: their taps there only
# multiply zeros. Where it pays (``depth_runs``), the forward and the weight gradient run each run of
# planes whose taps read the same input (``_runs``) as a 2-D call of its own, stacking those taps
# alone with the weight's planes of those taps, so that no backend multiplies the depth padding
# (torch's direct loops skip it too): a third of the work at 2 planes deep and a 3x3x3 kernel
# padded by 1. The forward's sums then leave out those zeros, so they round as a call on fewer
# channels does: ``fastconv.dask`` passes the depth padding of a chunk at the depth's ends as
# padding, not zeros, and the 2-D calls of one 3-D call run the kernels of the whole call
# (``lifted``'s ``pin``), as a chunk's do, so that a chunk's sums are the whole array's. The input
# gradient keeps every tap: a chunk's runs there end at its own bounds (its window's crops), not
# the depth's, and a run of fewer channels can take another kernel (other bits).

def _runs(geom: Geometry, o0: int, o1: int, split: bool = True):
    """``(a, b, k0, k1)``: the runs of output planes ``a:b`` within ``o0:o1`` whose input planes in
    the input are those of depth taps ``k0:k1`` (``k0 == k1``: none, every tap in the padding);
    not ``split``: ``o0:o1`` as one run of every tap, the padding's planes stacked as zeros."""
    (d,), (sd,), ((pd, _),), (dd,), (kd,) = (geom.in_size[:1], geom.stride[:1], geom.padding[:1],
                                             geom.dilation[:1], geom.kernel[:1])
    if not split:
        return [(o0, o1, 0, kd)]
    runs = []
    for o in range(o0, o1):
        k0 = min(kd, max(0, -(-(pd - o * sd) // dd)))  # the first tap reading a plane >= 0
        k1 = max(k0, min(kd, (d - 1 + pd - o * sd) // dd + 1))  # one past the last reading a plane < d
        if runs and runs[-1][2:] == [k0, k1]:
            runs[-1][1] = o + 1
        else:
            runs.append([o, o + 1, k0, k1])
    return [tuple(r) for r in runs]


# Where the forward's runs pay: the multiply-adds they leave out, per element of the weight that
# their own 2-D calls prepare beyond one whole weight (each call copies, packs or transforms its
# taps' planes of it), at least ``RUNS_MIN_SAVED``. Two threads, float32, forward time by runs /
# every tap stacked, medians of 5 interleaved rounds in one process (an AMD Zen 4, 2026-12-07),
# numba / winograd / im2col: N=4 3x3x3 512 -> 512 2x7x7 (392 saved an element) 0.80 / 0.92 / 0.90;
# 256 -> 256 4x14x14 (392) 0.92 / 1.00 / 0.88; 128 -> 256 8x28x28 at stride 2 (392) 0.96 / - / 0.92;
# but 256 -> 512 4x14x14 at stride 2 (98) 1.08 / - / 1.07; N=2 5x5x5 48 -> 256 4x4x4 (21) 1.42 /
# 1.94 / 1.86, 3x3x3 160 -> 384 4x4x4 (16) 1.09 / 1.48 / 2.83. And at least ``RUNS_MIN_FRACTION`` of
# the call's multiply-adds: N=2 3x3x3 C=64 16x56x56 (a 24th saved, 3136 an element) 0.99 / 1.03 /
# 0.98; and ``RUNS_MIN_MACS`` for each call past the first (a smaller call runs its kernels less
# well, and costs its own fixed price): N=4 3x3x3 256 -> 256 in 32 groups 4x14x14 (14 M saved a
# call) 1.13 / 1.36 / 0.92; N=4 C=96 3x20x20 (133 M) 1.00 / 1.11 / 1.08; auto (numba, through the
# API, runs on / off, 7 interleaved rounds) on a random draw's N=64 C=96 4x4x4 (85 M) 1.30; but N=2
# 5x5x5 128 -> 128 2x12x12 (708 M) 0.46 / 0.53 / 0.42, N=4 C=256 4x14x14 (462 M) above; near 230 M
# ties (N=8 C=64 8x28x28 0.96 / 1.00 / 0.96, 128 -> 256 8x28x28 at stride 2 0.96 / - / 0.92). Out of
# sample (the same run as the first figures): N=8 256 -> 256 2x14x14 0.73 / 0.79 / 0.69, N=8 128 ->
# 128 4x28x28 0.87 / 0.95 / 0.87, N=8 64 -> 64 8x28x28 0.96 / 1.00 / 0.96, N=2 5x5x5 128 -> 128
# 2x12x12 0.46 / 0.53 / 0.42; and after: N=16 128 -> 128 2x14x14 0.68 / 0.78 / 0.70, N=16 C=64
# 2x28x28 0.70 / 0.77 / 0.72, N=4 C=64 4x56x56 0.85 / 0.93 / 0.87, N=8 C=256 4x14x14 0.86 / 0.97 /
# 0.89, N=8 C=512 2x7x7 0.79 / 0.91 / 0.86. (winograd's 3x3x3 forward over planes of 64 tiles and
# more runs its own 3-D kernel, not the lift: ``winograd._native_3d``.)
RUNS_MIN_SAVED = 300
RUNS_MIN_FRACTION = 0.05
RUNS_MIN_MACS = 300_000_000  # left out, per 2-D call past the first
# The weight gradient's runs each write a gradient of the whole weight (their taps', placed among
# zeros) that the lift then adds in float64 (``PartSum``): per element of those beyond one, at least
# ``RUNS_MIN_SAVED_WEIGHT`` multiply-adds left out. Weight gradient's time by runs / every tap, as
# above, numba / winograd / im2col: N=8 256 -> 256 2x14x14 (1045 an element) 0.76 / 0.92 / 0.73; N=8
# 128 -> 128 4x28x28 (2091) 0.87 / 0.90 / 0.85; N=2 5x5x5 128 -> 128 2x12x12 (346) 0.75 / 0.81 /
# 0.73; but N=4 512 -> 512 2x7x7 (131) 1.37 / 1.78 / 1.52, 256 -> 256 4x14x14 (261) 0.99 / 1.28 /
# 0.90, N=8 512 -> 512 2x7x7 (261) 1.01 / 1.00 / 1.00. And: N=16 128 -> 128 2x14x14 (2091) 0.74 /
# 0.77 / 0.67, N=16 C=64 2x28x28 (8363) 0.74 / 0.71 / 0.80, N=4 C=64 4x56x56 (4181) 0.92 / 0.90 /
# 0.87, N=8 C=256 4x14x14 (523) 0.93 / 1.07 / 0.90.
RUNS_MIN_SAVED_WEIGHT = 300


def depth_runs(geom: Geometry, weight: bool = False) -> bool:
    """Whether a 3-D call's forward (``weight``: weight gradient) runs by runs of output planes
    (``_runs``): where some taps read the depth's padding and leaving them out pays
    (``RUNS_MIN_SAVED``, ``RUNS_MIN_FRACTION``, ``RUNS_MIN_MACS``; ``RUNS_MIN_SAVED_WEIGHT``).
    Kept by the call and those lines (13 us worked out, every 3-D forward and weight gradient)."""
    return _depth_runs(geom, weight, (RUNS_MIN_SAVED, RUNS_MIN_SAVED_WEIGHT, RUNS_MIN_FRACTION, RUNS_MIN_MACS))


@functools.lru_cache(maxsize=256)
def _depth_runs(geom: Geometry, weight: bool, lines) -> bool:
    min_saved, min_saved_weight, min_fraction, min_macs = lines
    runs = _runs(geom, 0, geom.out_size[0])
    kd = geom.kernel[0]
    taps = sum((b - a) * (k1 - k0) for a, b, k0, k1 in runs)
    saved = (geom.out_size[0] * kd - taps) * geom.macs // (geom.out_size[0] * kd)
    if weight:  # each run's call writes a gradient of the whole weight's size
        per, extra = min_saved_weight, (len(runs) - 1) * math.prod(geom.w_shape)
    else:
        per, extra = min_saved, (sum(k1 - k0 for _, _, k0, k1 in runs) - kd) * math.prod(geom.w_shape) // kd
    return saved >= max(per * max(extra, 1), min_fraction * geom.macs, min_macs * max(len(runs) - 1, 1))


def _skips(geom: Geometry, runs) -> bool:
    """Whether some of ``runs`` (``_runs``) leave taps out."""
    return any((k0, k1) != (0, geom.kernel[0]) for _, _, k0, k1 in runs)


def _run_geometry(geom: Geometry, a: int, b: int, k0: int, k1: int) -> Geometry:
    """The 2-D call of output planes ``a:b`` stacking depth taps ``k0:k1`` (``_runs``)."""
    return replace(as_2d(geom), n=geom.n * (b - a), c_in=geom.c_in * (k1 - k0))


# Bytes that one item of the copies below moves, about: an item per (image, plane) ran each copy
# in NumPy's per-call overhead on small volumes (16 images of 24 channels, 4x8x8: 2 ms of copies in
# a 5.5 ms forward, two threads contending for the GIL), while large volumes still split into many
# items, one per few planes, for the threads to share.
ITEM_BYTES = 512 * 2**10


def _each_block(n: int, o0: int, o1: int, plane_bytes: int, copy) -> None:
    """``copy(b0, b1, oa, ob)`` over blocks of images ``b0:b1`` and output planes ``oa:ob`` that
    cover images ``0:n`` and planes ``o0:o1``, each moving about ``ITEM_BYTES`` (``plane_bytes`` an
    image's plane), on the call's threads: these copies move the whole input or output, and one
    core alone made them a fifth of a 1x3x3 convolution's time."""
    planes = max(1, ITEM_BYTES // max(1, plane_bytes))
    if planes >= o1 - o0:  # whole images a block
        images = planes // (o1 - o0)
        items = [(b, min(n, b + images), o0, o1) for b in range(0, n, images)]
    else:
        items = [(b, b + 1, o, min(o1, o + planes)) for b in range(n) for o in range(o0, o1, planes)]
    map_items(items, lambda b0, b1, oa, ob, scratch: copy(b0, b1, oa, ob), call_threads())


# The stacked input and gy's planes are the calling thread's kept buffers (``_workers.kept``), read
# only by the 2-D call they are made for: made afresh, their pages were zeroed by the kernel at
# their first touch on every call. Two threads, float32, numba's forward, ms fresh / kept, medians
# of 9 interleaved rounds (2026-12-04, an Intel Xeon): 3x5x5 depthwise at stride 2, N=16 C=64
# 8x28x28 (38 MB stacked) 17.5 / 13.3; 3x3x3 s2 N=32 C=96 8x12x12 (21 MB) 13.3 / 13.2.


def _stacked(x, geom: Geometry, o0: int, o1: int, k0: int, k1: int) -> np.ndarray:
    """Input planes of depth taps ``k0:k1`` of output planes ``o0:o1`` stacked as channels (zeros
    where they lie in the depth's padding): ``(N*(o1-o0), G*(k1-k0)*Cg, H, W)``."""
    n, g, cg = geom.n, geom.groups, geom.c_in_g
    out = kept("lift-stacked", (n, o1 - o0, g, k1 - k0, cg, *geom.in_size[1:]), x.dtype)  # (kept: see above)
    xg = x.reshape(n, g, cg, *geom.in_size)

    def copy(b0, b1, oa, ob):
        inside = {k: (a, b, planes) for k, a, b, planes in _taps(geom, oa, ob)}
        for k in range(k0, k1):
            a, b, planes = inside.get(k, (oa, oa, None))  # planes a:b read the input, the rest its depth padding
            if a < b:
                out[b0:b1, a - o0:b - o0, :, k - k0] = xg[b0:b1, :, :, planes].transpose(0, 3, 1, 2, 4, 5)
            out[b0:b1, oa - o0:a - o0, :, k - k0] = 0
            out[b0:b1, b - o0:ob - o0, :, k - k0] = 0
    _each_block(n, o0, o1, (k1 - k0) * geom.c_in * math.prod(geom.in_size[1:]) * x.itemsize, copy)
    return out.reshape(n * (o1 - o0), g * (k1 - k0) * cg, *geom.in_size[1:])


def _stacked_weight(w, geom: Geometry, k0: int, k1: int) -> np.ndarray:
    """``(C_out, Cg, kD, kH, kW)`` -> ``(C_out, (k1-k0)*Cg, kH, kW)``, the channel order of
    :func:`_stacked` of depth taps ``k0:k1``."""
    return np.ascontiguousarray(w[:, :, k0:k1].transpose(0, 2, 1, 3, 4)).reshape(geom.c_out, -1, *geom.kernel[1:])


def _planes_of(y2, geom: Geometry, o0: int, o1: int, out: np.ndarray) -> None:
    """``(N*(o1-o0), C, OH, OW)`` -> ``out[:, :, o0:o1]``."""
    y5 = y2.reshape(geom.n, o1 - o0, *y2.shape[1:])

    def copy(b0, b1, oa, ob):
        out[b0:b1, :, oa:ob] = y5[b0:b1, oa - o0:ob - o0].transpose(0, 2, 1, 3, 4)
    _each_block(geom.n, o0, o1, math.prod(y2.shape[1:]) * y2.itemsize, copy)


def _gy_planes(gy, o0: int, o1: int) -> np.ndarray:
    """``gy[:, :, o0:o1]`` as ``(N*(o1-o0), C, OH, OW)``."""
    out = kept("lift-gy", (gy.shape[0], o1 - o0, gy.shape[1], *gy.shape[3:]), gy.dtype)  # (kept: see above)

    def copy(b0, b1, oa, ob):
        out[b0:b1, oa - o0:ob - o0] = gy[b0:b1, :, oa:ob].transpose(0, 2, 1, 3, 4)
    _each_block(gy.shape[0], o0, o1, math.prod(out.shape[2:]) * gy.itemsize, copy)
    return out.reshape(-1, gy.shape[1], *gy.shape[3:])


def _forward_3d(fn, x, w, geom, bias=None, split=False):
    y = np.empty(geom.y_shape, x.dtype)
    weights = {}  # the weight's planes of each run's taps, kept while a later run reads them (across slices)
    runs = [r for o0, o1, _ in _plane_slices(geom, x.itemsize) for r in _runs(geom, o0, o1, split)]
    last = {r[2:]: i for i, r in enumerate(runs)}  # each weight's last run: then dropped
    for i, (a, b, k0, k1) in enumerate(runs):
        if k0 == k1:  # every tap in the depth padding
            y[:, :, a:b] = 0 if bias is None else bias.reshape(-1, 1, 1, 1)
            continue
        flat = _run_geometry(geom, a, b, k0, k1)
        if (k0, k1) not in weights:
            weights[k0, k1] = _stacked_weight(w, geom, k0, k1)
        xs = _stacked(x, geom, a, b, k0, k1)
        with holding(sum(v.nbytes for v in weights.values()) + xs.nbytes + math.prod(flat.y_shape) * x.itemsize):
            y2 = fn(xs, weights[k0, k1], flat, bias)
        _planes_of(y2, geom, a, b, y)
        del xs, y2  # never two runs' copies at once (the next run's are made before assignment)
        if last[k0, k1] == i:
            del weights[k0, k1]
    if _skips(geom, runs) and not_finite(w, y, geom.has_blind_tap):  # inf * 0 where a tap left out reads padding
        depth_padding_products(y, w, geom, runs, forward=True)
    return y


def _grad_input_3d(fn, gy, w, geom):
    # every tap's stacked channels, those in the depth's padding too (``_runs``: not left out here)
    gx = np.zeros(geom.x_shape, gy.dtype)
    n, g, cg, kd = geom.n, geom.groups, geom.c_in_g, geom.kernel[0]
    w2 = _stacked_weight(w, geom, 0, kd)
    gxg = gx.reshape(n, g, cg, *geom.in_size)
    for o0, o1, flat in _plane_slices(geom, gy.itemsize):
        gys = _gy_planes(gy, o0, o1)
        with holding(w2.nbytes + gys.nbytes + math.prod(flat.x_shape) * gy.itemsize):
            gx2 = fn(gys, w2, flat)
        gx2 = gx2.reshape(n, o1 - o0, g, kd, cg, *geom.in_size[1:])

        def add(b0, b1, _, __, gx2=gx2, o0=o0, o1=o1):  # the taps in order: bit-reproducible
            for k, a, b, planes in _taps(geom, o0, o1):
                # planes of one tap are distinct (stride >= 1), so this += never adds twice into one
                gxg[b0:b1, :, :, planes] += gx2[b0:b1, a - o0:b - o0, :, k].transpose(0, 2, 3, 1, 4, 5)
        _each_block(n, 0, 1, gx2[0].nbytes, add)
        del gys, gx2, add
    return gx


def _grad_weight_3d(fn, gy, x, geom):
    parts = PartSum()
    kd, cg = geom.kernel[0], geom.c_in_g
    full = math.prod(geom.w_shape) * x.itemsize
    split = depth_runs(geom, weight=True)  # (its sums are a chunk's to within rounding in any case: no pin)
    runs = [r for o0, o1, _ in _plane_slices(geom, x.itemsize) for r in _runs(geom, o0, o1, split)]
    for a, b, k0, k1 in runs:
        if k0 == k1:
            continue
        flat = _run_geometry(geom, a, b, k0, k1)
        gys, xs = _gy_planes(gy, a, b), _stacked(x, geom, a, b, k0, k1)
        with holding(gys.nbytes + xs.nbytes + parts.held(full) + full):
            part = fn(gys, xs, flat)
        del gys, xs
        if (k0, k1) != (0, kd):  # placed among the taps it leaves at zero
            whole = np.zeros((geom.c_out, kd, cg, *geom.kernel[1:]), x.dtype)
            whole[:, k0:k1] = part.reshape(geom.c_out, k1 - k0, cg, *geom.kernel[1:])
            part = whole.reshape(as_2d(geom).w_shape)
        parts.add(part)
        del part
    gw2 = parts.result(as_2d(geom).w_shape, x.dtype)
    gw = np.ascontiguousarray(gw2.reshape(geom.c_out, kd, cg, *geom.kernel[1:]).transpose(0, 2, 1, 3, 4))
    if _skips(geom, runs) and not_finite(gy, gw, geom.has_blind_output):  # inf * 0 where a tap left out meets padding
        depth_padding_products(gw, gy, geom, runs, forward=False)
    return gw


_LIFTS = {  # each pass's (view, subsampled, stacked) lifts
    "forward": (_forward_view, _forward_subsampled, _forward_3d),
    "grad_input": (_grad_input_view, _grad_input_subsampled, _grad_input_3d),
    "grad_weight": (_grad_weight_view, _grad_weight_subsampled, _grad_weight_3d),
}
