"""One thread setting for fastconv: Numba's worker threads and the BLAS threads of ``im2col``.

The two never run at the same time within a call, so giving both the same count keeps fastconv
at that many busy cores. The default (no call to :func:`set_num_threads`) leaves both libraries
at their own defaults, which use every core. Numba is never imported from here: the numba backend
reads :func:`requested` before each call (Numba's setting is per calling thread), and
threadpoolctl is imported only when a count is set.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
import threading

_requested: int | None = None  # None: every core, the libraries' own defaults
_blas_limiter = None  # threadpoolctl's handle on the BLAS limits we set, to undo them


def _all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def requested() -> int | None:
    """The count set by :func:`set_num_threads`, or ``None`` when left at the default."""
    return _requested


def get_num_threads() -> int:
    """Threads fastconv computes with: the count set by :func:`set_num_threads`, else all cores."""
    return _requested if _requested is not None else _all_cores()


def _check(n) -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TypeError(f"set_num_threads: `n` must be a positive int or None; got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads: `n` must be a positive int or None; got {n}")
    return int(n)


def _apply(n: int | None) -> None:
    """Give BLAS (process-wide) and Numba (this Python thread, if already imported) ``n`` threads."""
    global _blas_limiter
    if _blas_limiter is not None:  # back to the limits found before fastconv changed them
        _blas_limiter.restore_original_limits()
        _blas_limiter = None
    if n is not None:
        from threadpoolctl import threadpool_limits

        _blas_limiter = threadpool_limits(limits=n, user_api="blas")
    numba = _numba()
    if numba is not None:
        cap = numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(cap if n is None else min(n, cap))


def _numba():
    """The numba module if something already imported it (never imports it), else None."""
    numba = sys.modules.get("numba")
    return numba if hasattr(numba, "set_num_threads") else None


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for every backend (Numba kernels and BLAS); ``None`` restores all cores.

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
    global _requested
    n = None if n is None else _check(n)
    _requested = n
    _apply(n)


@contextlib.contextmanager
def threads(n: int | None):
    """Context manager: compute with ``n`` threads inside the block, then restore the previous setting.

    Examples
    --------
    >>> import fastconv
    >>> with fastconv.threads(1):
    ...     fastconv.get_num_threads()
    1
    """
    previous = _requested
    numba = _numba()
    numba_previous = numba.get_num_threads() if numba is not None else None
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)
        if numba_previous is not None:  # also undo a count set with numba.set_num_threads directly
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
_inside = threading.local()  # .blas: this thread is inside a block (an inner one then does nothing)


@contextlib.contextmanager
def single_threaded_blas(active: bool = True):
    """BLAS on one thread inside the block, then back to the count it had.

    For a backend that runs BLAS calls from several threads of its own: each call then keeps to
    its thread, so the threads never oversubscribe the cores or wait on each other's BLAS
    workers. The setting is process-wide, so overlapping blocks (calls from several user threads)
    share it: the first sets it, the last restores it. Blocks nest (an inner one does nothing).
    ``active=False`` makes the block a no-op.
    """
    if not active or getattr(_inside, "blas", False):
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
    """A forked child has only the thread that forked: blocks that other threads had open are
    gone, and so may be the holder of ``_blas_lock``. ``_blas_saved`` stays: the child's BLAS
    has the parent's count, which the child's next block restores when it closes."""
    global _blas_lock
    _blas_lock = threading.Lock()
    _blas_users.clear()
    if getattr(_inside, "blas", False):  # forked from inside a block, whose exit runs here too
        _blas_users[threading.get_ident()] = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
