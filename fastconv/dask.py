"""fastconv on dask arrays: convolutions and their gradients over arrays larger than memory.

``fastconv.dask.conv1d/conv2d/conv3d`` and their ``_backward`` take the arguments of fastconv's
functions, with ``input`` (and ``grad_output``) a dask array chunked along the batch and along any
spatial axis, with chunks of any size, and return lazy dask arrays that any dask scheduler computes:
threads by default, a ``dask.distributed`` cluster when a client is active. Needs the extra:
``pip install 'fastconv[dask]'``; ``import fastconv`` alone never imports dask.

How the work is split
---------------------
- One task per output chunk. Its input *window* is its own part of the input plus a halo of the
  kernel's reach from the neighbouring chunks; the padding (every form, "same" included) is
  applied once, at the true borders of the whole array: positions of a window past the array's
  ends are zeros, and each task runs a valid (unpadded) convolution of its window. One small
  task per chunk cuts the halos its neighbours need, so only halos move between workers, never
  whole chunks; a chunk smaller than the halo is simply read whole, by every window that reaches it.
- Output chunks follow the input's: output ``o`` belongs to the input chunk holding position
  ``o * stride`` (with "same" padding at stride 1 the output chunks equal the input's). Chunk
  boundaries are thus aligned to the stride without rechunking the input; input chunks shorter
  than the stride merge into their neighbour's output chunk. The batch chunks map one to one.
- The channel axis is rechunked to one chunk if it is not (every output channel reads them all).
- The input gradient is chunked like the input and computed chunk by chunk, exactly: each chunk is
  the transposed convolution of the window of the output gradient that reads it. The weight
  gradient is one partial sum per output chunk, added up by a tree reduction of fan-in
  ``SPLIT_EVERY`` (no task holds all partials); the bias gradient is dask's tree-reduced sum.

Padding modes other than zeros pad the dask array itself once (border rows joining the end chunks)
and fold the border's gradient back, in fastconv's order of additions. Channels-last layouts and
unbatched input are transposed / expanded lazily around the same computation.

Results equal fastconv's in-memory functions on the computed arrays. ``backend="auto"`` is resolved
once per pass, on the whole array's geometry, so every chunk runs the backend the in-memory call
would (the forward's pick, and for ``conv*d_backward`` the input and the weight gradient's); so
are the kernels a backend picks by the array's size (its ``whole_choices``, run in each task under
its ``choosing_as``). numba names the kernel of the whole array's forward and of each stride phase
of its input gradient (its kernels each sum a pixel's terms in their own order, and some are chosen
by the image's size: the implicit forward, the columns kernels of ``k x 1`` kernels over long rows,
the patches; a depthwise layer's flat path needs an output as wide as its input, which a chunk
gets by computing a wider one and keeping its own columns). The forward pass and the input
gradient are then the same bits with the numba backend, but where the whole array's kernel would
take a chunk past its memory budget (it then runs its own). Winograd's output tiles start at each
chunk's edge, not the array's, and backends built on BLAS (im2col, the reference's tensordot) let
BLAS pick its kernels by the matrices' sizes: those may differ in the last bits. The weight and
bias gradients, sums in another order, agree to float rounding.

Threads: each task runs fastconv on its share of the cores: one thread on a ``dask.distributed``
worker (dask's own convention) or in a thread of the local threaded scheduler (one thread per core
by default), the caller's :func:`fastconv.set_num_threads` setting under the synchronous scheduler.
The caller's precision setting (:func:`fastconv.precision`) is carried into every task.
"""

from __future__ import annotations

from itertools import product

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

import fastconv

from . import _dask_padding, _dask_tasks, _padmodes, _threads, backends
from ._dask_graph import Axis, Gatherer, edges, spans
from ._precision import get_precision
from .api import LAYOUTS
from .geometry import Geometry

__all__ = ["SPLIT_EVERY", "conv1d", "conv1d_backward", "conv2d", "conv2d_backward", "conv3d", "conv3d_backward"]

SPLIT_EVERY = 8  # fan-in of the weight and bias gradients' tree reductions


class _Call:
    """A validated call, as batched channels-first arrays: ``x`` (dask, channels in one chunk, padded
    here for a padding mode other than zeros), ``w`` (NumPy, the result's dtype), the per-axis
    arithmetic ``axes`` and the tasks' ``plan`` of each pass."""

    def __init__(self, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend,
                 layout):
        x = input if isinstance(input, da.Array) else da.asarray(input)
        w = np.asarray(weight)
        # fastconv's own function validates everything (with its own messages) on an empty batch,
        # and gives the result's dtype, without touching the data
        probe = getattr(fastconv, f"conv{nd}d")(_empty_batch(x, nd), w, bias, stride, padding, dilation, groups,
                                                 padding_mode=padding_mode, backend=backend, layout=layout)
        self.nd, self.dtype = nd, probe.dtype
        self.unbatched = x.ndim == nd + 1
        self.channels_last = layout == LAYOUTS[nd][1]
        if self.channels_last:
            w = np.moveaxis(w, -1, 1)
        self.x = self.to_internal(x)
        self.w = np.ascontiguousarray(w, dtype=self.dtype)
        self.b = None if bias is None else np.ascontiguousarray(bias, dtype=self.dtype)
        geom = Geometry.from_args(self.x.shape, self.w.shape, stride=stride, padding=padding, dilation=dilation,
                                  groups=groups)
        self.backend, self.picked_on = backend, geom  # "auto" is resolved per pass on this (``plan``)
        self.x_chunks = self.x.chunks  # the input's own chunks: the input gradient's
        self.pad = _padmodes.Padding.of(geom, padding_mode)
        origins = (0,) * nd
        if self.pad is not None:  # the padded input, then a convolution without padding
            self.x = _dask_padding.apply(self.x, self.pad)
            origins = self.pad.before
            geom = self.pad.geometry(geom)
        self.axes = [Axis(*a, *p, o, origin) for *a, p, o, origin in zip(
            geom.in_size, geom.kernel, geom.stride, geom.dilation, geom.padding, geom.out_size, origins)]
        self.geom = geom
        self.out_bounds = [a.out_edges(edges(c)) for a, c in zip(self.axes, self.x.chunks[2:])]

    def plan(self, pass_):
        """The tasks' plan for ``pass_`` (``backends.PASSES``), made when the graph that runs it is
        built (inside the public call: its precision and threads): ``"auto"`` resolved for that
        pass on the whole array, as the in-memory call resolves it, and what the backend chooses
        by the whole array's size. A forward's graph asks nothing about the gradients (whose pick
        could start compiling a backend that the forward does not run)."""
        name = self.backend if self.backend != "auto" else backends.choose(self.picked_on, self.dtype, pass_=pass_)
        whole = getattr(backends.get(name), "whole_choices", None)  # what it chooses by the whole array's size
        g = self.geom
        return _dask_tasks.Plan(self.nd, g.stride, g.dilation, g.groups, name, self.dtype, get_precision(),
                                _threads.requested(), whole and whole(g, self.dtype))

    def to_internal(self, arr):
        """A user-layout dask array as batched channels-first, its channels in one chunk."""
        if self.unbatched:
            arr = arr[np.newaxis]
        if self.channels_last:
            arr = arr.transpose(0, self.nd + 1, *range(1, self.nd + 1))
        return arr.rechunk({1: -1})

    def to_user(self, arr):
        """Undo :meth:`to_internal` on a result."""
        if self.channels_last:
            arr = arr.transpose(0, *range(2, self.nd + 2), 1)
        return arr[0] if self.unbatched else arr

    def out_blocks(self):
        """``(batch block, spatial block indices, batch range, output ranges)`` of every output chunk."""
        for i, (n0, n1) in enumerate(spans(edges(self.x.chunks[0]))):
            for idx in product(*(range(len(e) - 1) for e in self.out_bounds)):
                yield i, idx, (n0, n1), [(e[j], e[j + 1]) for e, j in zip(self.out_bounds, idx)]

    def x_window(self, batch, ranges):
        """The input window (batch, channels, spatial ranges) that outputs ``ranges`` read."""
        return [batch, (0, self.x.shape[1])] + [a.window(*r) for a, r in zip(self.axes, ranges)]

    def out_chunks(self):
        return (self.x.chunks[0], (self.w.shape[0],), *(tuple(np.diff(e).tolist()) for e in self.out_bounds))


def _empty_batch(arr, nd):
    """A stand-in for ``arr`` with an empty batch (batched, for unbatched input): fastconv's checks run on
    it at no cost. Of any other number of dimensions, a zero-strided view that fastconv rejects."""
    if arr.ndim in (nd + 1, nd + 2):
        return np.empty((0, *arr.shape[arr.ndim - nd - 1:]), dtype=arr.dtype)
    return np.broadcast_to(np.zeros((), dtype=arr.dtype), arr.shape)


def _graph(kind, call, plan, *extra):
    """A new graph's layer name, its dict with the weight under one key (sent once to each worker,
    not once per task), and its halo gatherer."""
    name = f"fastconv-{kind}{call.nd}d-{tokenize(call.x.name, call.w, call.b, plan, *extra)}"
    dsk = {} if kind == "grad-weight" else {(f"{name}-weight",): call.w}  # the weight's shape is enough there
    return name, dsk, (f"{name}-weight",), Gatherer(dsk, f"{name}-halo")


def _forward(call: _Call):
    plan = call.plan("forward")
    name, dsk, wkey, gather = _graph("conv", call, plan)
    for i, idx, batch, ranges in call.out_blocks():
        window, depth = _depth_padding(call, call.x_window(batch, ranges))
        keys, window = gather.gather(call.x, window)
        dsk[(name, i, 0, *idx)] = (_dask_tasks.forward, keys, window, wkey, call.b, depth, plan)
    gather.finish()
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[call.x])
    return da.Array(graph, name, call.out_chunks(), dtype=call.dtype)


def _depth_padding(call: _Call, window):
    """``(window, padding)``: a 3-D forward's input window without the planes past the depth's
    ends, and those as the chunk's depth padding (``(before, after)``), so that its call leaves
    out the taps there as the whole array's does (``backends/_lift.py``: the same sums); 1-D and
    2-D windows, and 3-D windows of planes all in the padding, as they are, ``(0, 0)``."""
    if call.nd != 3:
        return window, (0, 0)
    (lo, hi), d = window[2], call.x.shape[2]
    before, after = max(0, -lo), max(0, hi - d)
    if lo + before >= hi - after:
        return window, (0, 0)
    return [*window[:2], (lo + before, hi - after), *window[3:]], (before, after)


def _grad_input(call: _Call, gy):
    """Chunked like the input: each chunk from the window of ``gy`` whose outputs read it."""
    plan = call.plan("grad_input")
    name, dsk, wkey, gather = _graph("grad-input", call, plan, gy.name)
    c_in, c_out = call.x.shape[1], call.w.shape[0]
    for i, (n0, n1) in enumerate(spans(edges(call.x.chunks[0]))):
        for idx in product(*(range(len(c)) for c in call.x.chunks[2:])):
            own = [spans(edges(c))[j] for c, j in zip(call.x.chunks[2:], idx)]
            readers = [a.readers(p0, p1) for a, (p0, p1) in zip(call.axes, own)]
            window = [(n0, n1), (0, c_out)] + [(lo, max(lo, hi)) for lo, hi in readers]
            read = [a.window(lo, hi) for a, (lo, hi) in zip(call.axes, readers)]  # what those outputs read
            crops = tuple((max(p0 - q0, 0), max(q1 - p1, 0)) for (p0, p1), (q0, q1) in zip(own, read))
            offsets = tuple(max(q0 - p0, 0) for (p0, _), (q0, _) in zip(own, read))
            out_shape = (n1 - n0, c_in, *(p1 - p0 for p0, p1 in own))
            keys, gy_window = gather.gather(gy, window)
            dsk[(name, i, 0, *idx)] = (_dask_tasks.grad_input, keys, gy_window, wkey, plan, crops, offsets,
                                       out_shape)
    gather.finish()
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[gy])
    return da.Array(graph, name, call.x.chunks, dtype=call.dtype)


def _grad_weight(call: _Call, gy):
    """One partial weight gradient per output chunk, stacked on a new axis, then tree-summed."""
    plan = call.plan("grad_weight")
    name, dsk, _, gather = _graph("grad-weight", call, plan, gy.name)
    count = 0
    for _, _, batch, ranges in call.out_blocks():
        x_keys, x_window = gather.gather(call.x, call.x_window(batch, ranges))
        gy_keys, gy_window = gather.gather(gy, [batch, (0, call.w.shape[0]), *ranges])
        dsk[(name, count) + (0,) * (call.nd + 2)] = (_dask_tasks.grad_weight, x_keys, x_window, gy_keys, gy_window,
                                                     call.w.shape, plan)
        count += 1
    gather.finish()
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[call.x, gy])
    partials = da.Array(graph, name, ((1,) * count, *((s,) for s in call.w.shape)), dtype=call.dtype)
    return partials.sum(axis=0, split_every=SPLIT_EVERY)


def _conv(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout):
    call = _Call(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout)
    return call.to_user(_forward(call))


def _conv_backward(nd, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, bias, backend,
                   layout):
    fn = f"conv{nd}d_backward"
    call = _Call(nd, input, weight, None, stride, padding, dilation, groups, padding_mode, backend, layout)
    gy = grad_output if isinstance(grad_output, da.Array) else da.asarray(grad_output)
    x = input if isinstance(input, da.Array) else da.asarray(input)
    getattr(fastconv, fn)(_empty_batch(gy, nd), _empty_batch(x, nd), weight, stride, padding, dilation, groups,
                          padding_mode=padding_mode, bias=bias, backend=backend,
                          layout=layout)  # fastconv's checks of grad_output and of the bias flag
    y_shape = (call.x.shape[0], call.w.shape[0], *(a.out for a in call.axes))
    expected = tuple(call.to_user(np.broadcast_to(np.zeros((), np.int8), y_shape)).shape)
    if gy.shape != expected:
        raise ValueError(f"{fn}: `grad_output` must have the forward output's shape {expected}; got {gy.shape}")
    gy = call.to_internal(gy)
    gx = _grad_input(call, gy)
    if call.pad is not None:
        gx = _dask_padding.fold(gx, call.pad, call.x_chunks)
    gw = _grad_weight(call, gy)
    if call.channels_last:
        gw = da.moveaxis(gw, 1, -1)
    gb = gy.astype(call.dtype).sum(axis=(0, *range(2, nd + 2)), split_every=SPLIT_EVERY) if bias else None
    return fastconv.ConvGrads(call.to_user(gx), gw, gb)


_DOC = """{n}-D convolution of a dask array, lazily, chunk by chunk: :func:`fastconv.conv{n}d`'s arguments.

    ``input`` is a dask array (a NumPy array is wrapped as one chunk) chunked along the batch and
    any spatial axis, chunks of any size; ``weight`` and ``bias`` are NumPy arrays. Returns a dask
    array whose batch chunks are the input's and whose spatial chunks follow the input's at the
    stride (see the module's docstring); computed, it equals ``fastconv.conv{n}d`` on the computed
    input (to the bit with numba; BLAS-based backends may differ in the last bits). Bad arguments
    raise fastconv's own errors before any graph is built.{example}
    """

_BACKWARD_DOC = """Gradients through :func:`conv{n}d`, lazily: :func:`fastconv.conv{n}d_backward`'s arguments.

    ``grad_output`` and ``input`` are dask arrays (chunked independently), ``weight`` a NumPy array.
    Returns ``fastconv.ConvGrads(input, weight, bias)`` of dask arrays: ``input`` chunked like the
    input (each chunk exact: equal to fastconv's to the bit with numba), ``weight`` and ``bias``
    (None when ``bias=False``) of one chunk each, tree-reduced sums of per-chunk partial results
    (equal to fastconv's to float rounding).{example}
    """

_EXAMPLE_2D = """

    Examples
    --------
    >>> import dask.array as da, numpy as np, fastconv.dask as fcd
    >>> x = da.ones((2, 1, 6, 6), chunks=(1, 1, 3, 3))
    >>> y = fcd.conv2d(x, np.ones((1, 1, 3, 3)), padding="same")
    >>> y.chunks
    ((1, 1), (1,), (3, 3), (3, 3))
    >>> y[0, 0].compute()
    array([[4., 6., 6., 6., 6., 4.],
           [6., 9., 9., 9., 9., 6.],
           [6., 9., 9., 9., 9., 6.],
           [6., 9., 9., 9., 9., 6.],
           [6., 9., 9., 9., 9., 6.],
           [4., 6., 6., 6., 6., 4.]])
    >>> g = fcd.conv2d_backward(da.ones_like(y), x, np.ones((1, 1, 3, 3)), padding="same")
    >>> float(g.bias.compute()[0]), g.weight.numblocks
    (72.0, (1, 1, 1, 1))"""


def _documented(nd, backward=False):
    def decorate(fn):
        fn.__doc__ = (_BACKWARD_DOC if backward else _DOC).format(n=nd, example=_EXAMPLE_2D if nd == 2 and not
                                                                  backward else "")
        return fn
    return decorate


@_documented(1)
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           backend="auto", layout="NCL"):
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout)


@_documented(2)
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           backend="auto", layout="NCHW"):
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout)


@_documented(3)
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           backend="auto", layout="NCDHW"):
    return _conv(3, input, weight, bias, stride, padding, dilation, groups, padding_mode, backend, layout)


@_documented(1, backward=True)
def conv1d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *, bias=True,
                    padding_mode="zeros", backend="auto", layout="NCL"):
    return _conv_backward(1, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, bias,
                          backend, layout)


@_documented(2, backward=True)
def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *, bias=True,
                    padding_mode="zeros", backend="auto", layout="NCHW"):
    return _conv_backward(2, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, bias,
                          backend, layout)


@_documented(3, backward=True)
def conv3d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *, bias=True,
                    padding_mode="zeros", backend="auto", layout="NCDHW"):
    return _conv_backward(3, grad_output, input, weight, stride, padding, dilation, groups, padding_mode, bias,
                          backend, layout)
