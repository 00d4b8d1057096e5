"""Work items on fastconv's threads, within a memory budget: what every BLAS-based backend shares.

A backend splits a call into work items (a few images, a block of channels), plans how many
images an item holds so that every thread's scratch fits its share of the memory budget
(:func:`thread_plan`), then runs the items on a pool of threads kept between calls
(:func:`map_items`), each thread carving its scratch arrays from buffers of its own
(:func:`buffer`). The budget (:func:`set_memory_budget`) caps the extra memory of a call, all
threads' scratch together.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._threads import get_num_threads

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes; the default budget is this or 2x the input, if larger
_budget: int | None = None  # None: the default rule above


def set_memory_budget(nbytes: int | None) -> int | None:
    """Cap the extra memory (bytes) of every later call; ``None`` restores the default rule.

    The default is ``max(DEFAULT_MEMORY_BUDGET, 2 * input.nbytes)``. The batch is split into
    chunks that fit, depthwise layers into blocks of channels too, and an image whose patches do
    not fit into bands of output rows. The smallest piece is one row of one image's patches (of
    one channel, depthwise) beside its zero-padded copy: a budget below that is exceeded by what
    the piece needs. Returns the previous setting, so that callers can restore it.
    """
    global _budget
    if nbytes is not None and (not isinstance(nbytes, (int, np.integer)) or nbytes < 0):
        raise ValueError(f"`nbytes` must be a non-negative int or None; got {nbytes!r}")
    previous, _budget = _budget, None if nbytes is None else int(nbytes)
    return previous


def memory_budget(input_nbytes: int) -> int:
    """The budget in bytes that applies to a call whose input takes ``input_nbytes``."""
    return _budget if _budget is not None else max(DEFAULT_MEMORY_BUDGET, 2 * input_nbytes)


def call_budget(geom, itemsize) -> int:
    """``memory_budget`` of a call on ``geom``'s input."""
    return memory_budget(math.prod(geom.x_shape) * itemsize)


def reserved() -> int:
    """Elements of each thread's share of the budget kept apart from its scratch arrays.
    Elementwise ops on strided views run through numpy's buffered iterator, which allocates up to
    one buffer of ``np.getbufsize()`` elements per operand whatever the chunk; the views and small
    arrays a work item makes take a few hundred bytes more."""
    return 3 * np.getbufsize() + 1024


def thread_share(geom, itemsize) -> int:
    """Bytes of the memory budget that each of fastconv's threads may hold as scratch, besides
    ``reserved()``."""
    return call_budget(geom, itemsize) // get_num_threads() - reserved() * itemsize


def thread_plan(geom, itemsize: int, per_image: int, want: int, fixed: int = 0) -> tuple[int, int]:
    """``(images per work item, threads)`` for work spread over threads, each thread holding one
    item's scratch of ``per_image`` elements per image plus ``fixed`` elements: up to ``want``
    images, no more than an even share of the batch, and every thread's scratch within its share
    of the memory budget. When even one image per thread does not fit, fewer threads run."""
    threads = get_num_threads()
    budget = call_budget(geom, itemsize)
    per_image_bytes = per_image * itemsize
    iterator = (reserved() + fixed) * itemsize
    threads = int(max(1, min(threads, budget // (per_image_bytes + iterator))))
    fits = (budget // threads - iterator) // per_image_bytes
    nb = int(max(1, min(want, -(-geom.n // threads), fits)))
    return nb, min(threads, -(-geom.n // nb))


def even(total: int, most: int) -> int:
    """The smallest part size that splits ``total`` into as few parts as parts of ``most`` would:
    parts of 31 and 1 would leave a thread with the crumbs."""
    return -(-total // -(-total // most))


def chunks(n: int, nb: int):
    """``(b0, b1)`` of every chunk of ``nb`` images of a batch of ``n``."""
    for b0 in range(0, n, nb):
        yield b0, min(n, b0 + nb)


def map_chunks(n, nb, work, threads):
    """``map_items`` over the chunks of ``nb`` images of a batch of ``n``: ``work(b0, b1, scratch)``."""
    return map_items(list(chunks(n, nb)), work, threads)


def map_items(items, work, threads):
    """Run ``work(*item, scratch)`` on every item, spread over ``threads`` threads; returns the
    ``scratch`` dicts, one per thread, each reused across its items.

    numpy's elementwise loops and copies run on one core, and release the GIL (as BLAS does), so
    Python threads give them the cores that BLAS and torch would use. Items go to whichever
    thread is free, so a core that another process slows takes fewer.
    """
    threads = min(threads, len(items))
    if threads <= 1:
        scratch = {}
        for item in items:
            work(*item, scratch)
        return [scratch]
    pending, lock = iter(items), threading.Lock()
    errors = np.geterr()  # np.errstate is per thread: the caller's must hold in the workers too
    failed = threading.Event()

    def worker():
        # Each worker pulls items until none is left: memory stays one scratch per thread,
        # however many items (a future per item held ~2 KB each, beyond a small budget).
        scratch = {}
        with np.errstate(**errors):
            while not failed.is_set():
                with lock:
                    item = next(pending, None)
                if item is None:
                    break
                try:
                    work(*item, scratch)
                except BaseException:
                    failed.set()  # the others stop at their next item
                    raise
        return scratch

    others = [_pool(threads - 1).submit(worker) for _ in range(threads - 1)]
    scratches = [worker()]  # the calling thread works too
    return scratches + [future.result() for future in others]


def sum_of(scratches, name):
    """The sum of every thread's ``name`` scratch array (each thread's own partial sum); a thread
    that found every item taken has none."""
    total, *others = (scratch[name] for scratch in scratches if name in scratch)
    for part in others:
        total += part
    return total


_executor: tuple[int, ThreadPoolExecutor] | None = None


def _pool(workers: int) -> ThreadPoolExecutor:
    """A pool kept between calls with at least ``workers`` threads: starting threads on every call
    cost more than MNIST's first layer takes to compute. A larger pool replaces a smaller one
    (whose idle threads end once no caller holds it)."""
    global _executor
    if _executor is None or _executor[0] < workers:
        _executor = (workers, ThreadPoolExecutor(workers, thread_name_prefix="fastconv-worker"))
    return _executor[1]


def _forget_pool():
    """A forked child has none of its parent's threads: the pool must be started afresh there,
    or work handed to it would wait forever (a DataLoader forking worker processes, say)."""
    global _executor
    _executor = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_pool)


def buffer(scratch, name, shape, dtype, zeros=False):
    """The scratch array ``name`` with ``shape``, carved from one buffer made for the largest chunk
    seen so far; ``zeros`` buffers are zeroed once, their users overwrite only what varies."""
    size = math.prod(shape)
    if name not in scratch or scratch[name].size < size:
        scratch[name] = (np.zeros if zeros else np.empty)(size, dtype)
    return scratch[name][:size].reshape(shape)
