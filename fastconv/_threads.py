"""fastconv's thread setting: a process-wide default and a per-thread override, shared fairly
among concurrent calls.

:func:`set_num_threads` sets the default for every thread; ``with threads(n):`` overrides it in
the calling thread only, so that user threads (dask's threaded scheduler, say) may each choose
their own. With neither, a call uses all cores, shared evenly among the calls in progress in
other threads (:func:`call_threads`), so that k concurrent callers use about cores/k threads
each instead of k times the cores. Numba's own setting is per calling thread: the numba backend
reads :func:`requested` before each call. BLAS's is process-wide, so no setting here changes it;
a backend that runs BLAS on threads of its own switches it to one thread only while its calls
run (:func:`single_threaded_blas`). Numba is never imported from here, threadpoolctl only by the
first such call.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import numbers
import os
import sys
import threading


def thread_local(**defaults) -> threading.local:
    """A ``threading.local`` whose attributes read ``defaults`` in a thread that has not set them.
    Read on every call: ``getattr(local, name, default)`` on an unset attribute raises and catches
    an AttributeError inside, 0.3 us each time; a class attribute is found at once."""
    return type("ThreadLocal", (threading.local,), defaults)()


_default: int | None = None  # set_num_threads's count; None: all cores
_UNSET = object()
_local = thread_local(count=_UNSET)  # the count of this thread's innermost `threads` block
_calls: dict[int, None] = {}  # threads inside a counted backend call now, by thread id
_call = thread_local(threads=None, number=0)  # the count fixed for the call this thread is in, and its number
_numbers = itertools.count(1)  # calls begun so far (``next`` is atomic under the GIL)


def _all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def requested() -> int | None:
    """This thread's count: its ``threads(n)`` block's, else :func:`set_num_threads`'s; ``None``
    when neither set one."""
    count = _local.count
    return _default if count is _UNSET else count


def get_num_threads() -> int:
    """Threads fastconv computes with in this thread: its setting (:func:`threads`,
    :func:`set_num_threads`), else all cores."""
    count = requested()
    return count if count is not None else _all_cores()


def call_threads() -> int:
    """Threads for the backend call in progress in this thread, fixed when it began (see
    :func:`counted_call`): this thread's setting if any, else the cores shared evenly among the
    counted calls in progress, this one included. Outside a call, what one starting now gets."""
    count = _call.threads
    if count is not None:
        return count
    count = requested()
    if count is not None:
        return count
    cores = _all_cores()
    calls = len(_calls) + (threading.get_ident() not in _calls)  # this one counts too
    return max(1, cores // calls)


def counted_call(pass_fn):
    """Decorate a backend pass: while it runs, it counts among the calls that share the cores,
    and :func:`call_threads` stays what it was when it began (its work plan and its memory
    shares must agree). A call made inside another (grad_input through forward) is part of it."""
    @functools.wraps(pass_fn)
    def run(*args, **kwargs):
        with one_call():
            return pass_fn(*args, **kwargs)
    return run


@contextlib.contextmanager
def one_call():
    """The block is one call, as a ``counted_call`` pass is (it counts among the calls sharing
    the cores, its thread count is fixed when it begins, it has a number of its own: ``call_number``);
    the passes inside it are parts of it (the two gradients of ``conv2d_backward``)."""
    if _call.threads is not None:
        yield
        return
    me = threading.get_ident()
    try:  # an interrupt anywhere in here is undone by the finally (or by this thread's next call)
        _calls[me] = None
        _call.number = next(_numbers)
        _call.threads = call_threads()
        yield
    finally:
        _call.threads = None
        _calls.pop(me, None)


def call_number() -> int:
    """The number of the call in progress in this thread (0 outside any)."""
    return _call.number if _call.threads is not None else 0


def _check(n, fn: str) -> int | None:
    if n is None:
        return None
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TypeError(f"{fn}: `n` must be a positive int or None; got {n!r}")
    if n < 1:
        raise ValueError(f"{fn}: `n` must be a positive int or None; got {n}")
    return int(n)


def _apply_numba(n: int | None) -> None:
    """Give Numba ``n`` threads in this Python thread (Numba's setting is per thread), if already
    imported."""
    numba = _numba()
    if numba is not None:
        cap = numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(cap if n is None else min(n, cap))


def _numba():
    """The numba module if something already imported it (never imports it), else None."""
    numba = sys.modules.get("numba")
    return numba if hasattr(numba, "set_num_threads") else None


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for every backend, in every thread without a ``threads(n)`` block of its
    own; ``None`` restores the default (all cores, shared among concurrent calls).

    Parameters
    ----------
    n : int or None
        A positive count; Numba caps it at ``NUMBA_NUM_THREADS`` (the cores by default).

    Raises
    ------
    TypeError, ValueError
        When ``n`` is not a positive int or None.

    Examples
    --------
    >>> import fastconv
    >>> fastconv.set_num_threads(1)
    >>> fastconv.get_num_threads()
    1
    >>> fastconv.set_num_threads(None)
    """
    global _default
    _default = _check(n, "set_num_threads")
    if _local.count is _UNSET:  # else this thread's block still decides
        _apply_numba(_default)


@contextlib.contextmanager
def threads(n: int | None):
    """Context manager: compute with ``n`` threads inside the block, in this thread only, then
    restore the previous setting (other threads keep theirs; ``None``: all cores).

    Examples
    --------
    >>> import fastconv
    >>> with fastconv.threads(1):
    ...     fastconv.get_num_threads()
    1
    """
    n = _check(n, "threads")
    previous = _local.count
    numba = _numba()
    numba_previous = numba.get_num_threads() if numba is not None else None
    try:
        _local.count = n
        _apply_numba(n)
        yield
    finally:
        if previous is _UNSET:
            del _local.count
        else:
            _local.count = previous
        if numba_previous is not None:  # also undoes a count set with numba.set_num_threads directly
            numba.set_num_threads(numba_previous)


# BLAS's thread count is process-wide, so the blocks of all threads share one switch: the first
# block to open sets one thread, the last to close restores the counts found. Interrupt-safe: a
# KeyboardInterrupt may land between any two bytecodes of the caller (never in a pool thread),
# so the record of who is inside is one atomic dict operation per block, and whatever the switch
# should be is recomputed from that record on every entry and exit (_reconcile) instead of being
# kept in step by counting; a block cut short anywhere is undone by its own exit or, at worst
# (an interrupt inside that exit), by its thread's next block.
_blas_libs = None  # threadpoolctl's controllers of the loaded BLAS libraries, found once (~1 ms)
_blas_lock = threading.Lock()
_blas_users: dict[int, None] = {}  # threads inside single_threaded_blas now, by thread id
_blas_saved: list[int] | None = None  # counts found by the first block, restored by the last
_inside = thread_local(blas=False)  # this thread is inside a block (an inner one then does nothing)


@contextlib.contextmanager
def single_threaded_blas(active: bool = True):
    """BLAS on one thread inside the block, then back to the count it had.

    For a backend that runs BLAS calls from several threads of its own: each call then keeps to
    its thread, so the threads never oversubscribe the cores or wait on each other's BLAS
    workers. The setting is process-wide, so overlapping blocks (calls from several user threads)
    share it: the first sets it, the last restores it. Blocks nest (an inner one does nothing).
    ``active=False`` makes the block a no-op.
    """
    if not active or _inside.blas:
        yield
        return
    me = threading.get_ident()
    entered = []
    try:
        entered.append(True)  # from here on, the finally undoes whatever happened
        _inside.blas = True
        _blas_users[me] = None
        _reconcile()
        yield
    finally:
        if entered:
            _inside.blas = False  # first: should the rest be cut short, the next block heals it
            _blas_users.pop(me, None)
            _reconcile()


def _reconcile() -> None:
    """Make BLAS's thread count what ``_blas_users`` asks for: one while anyone is inside."""
    global _blas_libs, _blas_saved
    with _blas_lock:
        if _blas_libs is None:
            from threadpoolctl import ThreadpoolController

            _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers
        if _blas_users:
            if _blas_saved is None:
                _blas_saved = [lib.get_num_threads() for lib in _blas_libs]
            for lib in _blas_libs:  # every time, not only on the first entry: cheap (~1 us), and it
                _set_blas(lib, 1)   # repairs a switch that an interrupt cut short
        elif _blas_saved is not None:
            for lib, count in zip(_blas_libs, _blas_saved):
                _set_blas(lib, count)
            _blas_saved = None


def _set_blas(lib, count) -> None:
    # threadpoolctl lets only the first thread that set OpenBLAS's count set it again and ignores
    # the others silently (its "controlling thread"); any of our threads may be the first or the
    # last inside, so the library's own setter is called directly where threadpoolctl has one.
    if count is not None:
        getattr(lib, "_real_set_num_threads", lib.set_num_threads)(count)


def _after_fork_in_child() -> None:
    """A forked child has only the thread that forked: blocks and calls that other threads had
    open are gone, and so may be the holder of ``_blas_lock``. ``_blas_saved`` stays: the child's
    BLAS has the parent's count, which the child's next block restores when it closes."""
    global _blas_lock
    _blas_lock = threading.Lock()
    me = threading.get_ident()
    for record, mine in ((_blas_users, _inside.blas),
                         (_calls, _call.threads is not None)):
        record.clear()
        if mine:  # forked from inside, whose exit runs in the child too
            record[me] = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
