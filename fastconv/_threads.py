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


_blas_controller = None  # threadpoolctl's view of the loaded BLAS libraries, found once (~1 ms)
_single_lock = threading.Lock()
_single_users = 0  # calls inside single_threaded_blas now, from any thread
_single_limiter = None  # what the first of them changed, undone by the last


@contextlib.contextmanager
def single_threaded_blas(active: bool = True):
    """BLAS on one thread inside the block, then back to the count it had.

    For a backend that runs BLAS calls from several threads of its own: each call then keeps to
    its thread, so the threads never oversubscribe the cores or wait on each other's BLAS
    workers. The setting is process-wide, so overlapping blocks (calls from several user threads)
    share it: the first sets it, the last restores it. ``active=False`` makes the block a no-op.
    """
    global _blas_controller, _single_users, _single_limiter
    if not active:
        yield
        return
    with _single_lock:
        if _single_users == 0:
            if _blas_controller is None:
                from threadpoolctl import ThreadpoolController

                _blas_controller = ThreadpoolController().select(user_api="blas")
            _single_limiter = _blas_controller.limit(limits=1)
        _single_users += 1
    try:
        yield
    finally:
        with _single_lock:
            _single_users -= 1
            if _single_users == 0:
                _single_limiter.restore_original_limits()
                _single_limiter = None
