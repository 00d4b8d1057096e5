"""Counting Numba's runtime allocations during calls: the warm-call tests of the numba kernels."""

import numpy as np

from tests.quiet import settle


def array_wrappers(calls) -> list[float]:
    """For each ``(fn, args)`` of ``calls``, the Numba runtime allocations made by ``fn(*args)``, in
    units of what wrapping one array argument of a jitted function allocates (so a warm call of
    kernels that allocate nothing counts their array arguments, once per kernel call)."""
    from numba import njit
    from numba.core.runtime import _nrt_python, rtsys

    @njit
    def one_array(a):
        return a.size

    probe = np.ones(3)
    one_array(probe)  # compiled
    settle()  # a background compile's allocations are counted process-wide
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats().alloc
        one_array(probe)
        per_array = rtsys.get_allocation_stats().alloc - before
        counts = []
        for fn, args in calls:
            before = rtsys.get_allocation_stats().alloc
            fn(*args)
            counts.append((rtsys.get_allocation_stats().alloc - before) / per_array)
        return counts
    finally:
        _nrt_python.memsys_disable_stats()
