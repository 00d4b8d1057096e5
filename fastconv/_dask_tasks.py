"""What one task of :mod:`fastconv.dask` runs: assemble its window, then call fastconv on it.

Every function here receives NumPy arrays (dask substitutes the chunks for their keys) and a
:class:`Plan` fixed when the graph was built, so a task computes the same thing on any scheduler,
in any thread or process.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass

import numpy as np

import fastconv

from . import _threads, backends
from ._dask_graph import Window
from ._precision import precision
from .geometry import Geometry


@dataclass(frozen=True)
class Plan:
    """A chunked call's settings, resolved once on the caller's thread when the graph is built."""

    nd: int  # spatial axes
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    backend: str  # a real backend, "auto" already resolved on the whole array's geometry
    dtype: np.dtype  # the result's dtype
    precision: str  # the caller's precision level: a task's thread would otherwise see the default
    threads: int | None  # the caller's fastconv thread count (None: every core)
    choices: object = None  # the backend's choices by size on the whole array (``whole_choices``), or None


def assemble(arrays, window: Window, dtype) -> np.ndarray:
    """One C-contiguous ``dtype`` window from the chunks and cuts it reads; positions no piece covers
    are zero padding."""
    pieces = [a if pick is None else a[pick] for a, pick in zip(arrays, window.picks)]
    if len(pieces) == 1 and pieces[0].shape == window.shape:
        return np.ascontiguousarray(pieces[0], dtype=dtype)
    out = np.zeros(window.shape, dtype=dtype)
    for piece, place in zip(pieces, window.places):
        out[place] = piece
    return out


def _on_distributed_worker() -> bool:
    distributed = sys.modules.get("distributed")  # never imported here: a local scheduler needs none
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:  # "No worker found": a local scheduler in a process that imported distributed
        return False
    return True


def task_threads(budget: int | None) -> int | None:
    """fastconv threads for one task, so that dask's threads times fastconv's fit the cores.

    On a ``dask.distributed`` worker: 1, dask's own convention there (each worker thread is one
    core; its nannies set ``OMP_NUM_THREADS=1`` for the same reason). On the calling thread (the
    synchronous scheduler): the caller's own setting ``budget``. In a thread of the local threaded
    scheduler: the caller's cores shared among the pool's threads (1 with dask's default pool of
    one thread per core).
    """
    if _on_distributed_worker():
        return 1
    if threading.current_thread() is threading.main_thread():
        return budget
    import dask
    import dask.system

    pool = dask.config.get("num_workers", None) or dask.system.CPU_COUNT
    return max(1, (budget or _threads._all_cores()) // pool)


@contextlib.contextmanager
def _running(plan: Plan):
    """The plan's precision, its backend's choices by the whole array's size and this task's share
    of the threads around one fastconv call; NaN and inf propagate silently, as in ``fastconv``'s
    own functions."""
    n = task_threads(plan.threads)
    counted = contextlib.nullcontext() if n == _threads.requested() else fastconv.threads(n)
    chosen = (contextlib.nullcontext() if plan.choices is None
              else backends.get(plan.backend).choosing_as(plan.choices))
    with counted, chosen, precision(plan.precision), np.errstate(invalid="ignore", over="ignore"):
        yield


def forward(arrays, window: Window, w, b, depth, plan: Plan) -> np.ndarray:
    """One output chunk: the valid convolution of its input window (padding already in the window),
    but for a 3-D window's ``depth`` padding ``(before, after)``, left out of it (``dask._depth_padding``)."""
    x = assemble(arrays, window, plan.dtype)
    conv = getattr(fastconv, f"conv{plan.nd}d")
    padding = 0 if depth == (0, 0) else (depth, (0, 0), (0, 0))
    with _running(plan):
        return conv(x, w, b, plan.stride, padding, plan.dilation, plan.groups, backend=plan.backend)


def grad_input(arrays, window: Window, w, plan: Plan, crops, offsets, out_shape) -> np.ndarray:
    """One input-gradient chunk of ``out_shape``: the transposed convolution of the output-gradient
    window that reads it, cropped by ``crops`` (per-side pairs) to the chunk, placed at ``offsets``;
    positions that no output reads keep a zero gradient."""
    if 0 in window.shape:  # no output reads this chunk
        return np.zeros(out_shape, dtype=plan.dtype)
    gy = assemble(arrays, window, plan.dtype)
    transposed = getattr(fastconv, f"conv_transpose{plan.nd}d")
    with _running(plan):
        gx = transposed(gy, w, None, plan.stride, crops, 0, plan.groups, plan.dilation, backend=plan.backend)
    if gx.shape == tuple(out_shape):
        return gx
    out = np.zeros(out_shape, dtype=plan.dtype)
    out[(slice(None), slice(None), *(slice(o, o + s) for o, s in zip(offsets, gx.shape[2:])))] = gx
    return out


def grad_weight(x_arrays, x_window: Window, gy_arrays, gy_window: Window, w_shape, plan: Plan) -> np.ndarray:
    """One chunk's share of the weight gradient, ``(1, *w_shape)``: its output-gradient chunk against
    the input window that chunk's outputs read. The backend is called directly: the public
    ``conv*d_backward`` would also compute an input gradient, as costly, only to discard it."""
    if x_window.shape[0] == 0:
        return np.zeros((1, *w_shape), dtype=plan.dtype)
    x = assemble(x_arrays, x_window, plan.dtype)
    gy = assemble(gy_arrays, gy_window, plan.dtype)
    geom = Geometry.from_args(x.shape, w_shape, stride=plan.stride, padding=0, dilation=plan.dilation,
                              groups=plan.groups)
    impl = backends.get(plan.backend)
    with _running(plan):
        return impl.grad_weight(gy, x, geom)[np.newaxis]
