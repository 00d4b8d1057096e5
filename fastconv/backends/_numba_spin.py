"""A short wait for work, spinning rather than sleeping: fastconv's helper threads (``_workers``)
look for the next call's items for ``SPIN_S`` before they sleep on their lock.

Why: a helper asleep on a lock is woken by the kernel, which on these virtual machines took longer
than a small call's whole share: MNIST's first layer on two threads, 0.2 ms of work per thread,
ran no faster than on one, because the calling thread had taken both halves before the helper was
up. OpenMP's threads (torch's) spin a while after each parallel region for the same reason.

The caller of a call waits for its helpers the same way: a helper counts itself gone from its
job (``_left_then_spin``) only once it has released the GIL, so the caller, spinning on that
count, takes the GIL at once, rather than sleeping on a lock until the kernel wakes it (30-40 us
on these machines, after a helper's last item).

The spin runs in compiled code without the GIL (a Python loop would hold it from the thread that
posts the work), reading the pool's post counter with an atomic load (a plain load could be
hoisted out of the loop) and pausing between reads (the ``pause`` instruction: the spinning core
yields to its sibling and saves power). Time is read from the CPU's cycle counter, calibrated
against the clock once. x86-64 only; elsewhere helpers sleep at once.
"""

import platform
import time

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._numba_kernels import _JIT, njit

SPIN_S = 0.001  # how long a helper looks for work before it sleeps
AVAILABLE = platform.machine().lower() in ("x86_64", "amd64")


@intrinsic
def _load_acquire(typingctx, address):
    """The int64 at ``address``, read anew on every call. (An address, not an array: wrapping an
    array for a compiled call allocates, and the spin runs after every call.)"""
    def codegen(context, builder, signature, args):
        return builder.load_atomic(builder.inttoptr(args[0], ir.IntType(64).as_pointer()), "acquire", 8)
    return types.int64(types.intp), codegen


@intrinsic
def _pause_then_clock(typingctx):
    """A ``pause`` instruction, then the CPU's cycle counter."""
    def codegen(context, builder, signature, args):
        module = builder.module

        def declared(name, returns):
            return module.globals.get(name) or ir.Function(module, ir.FunctionType(returns, []), name=name)
        builder.call(declared("llvm.x86.sse2.pause", ir.VoidType()), [])
        return builder.call(declared("llvm.readcyclecounter", ir.IntType(64)), [])
    return types.int64(), codegen


@intrinsic
def _add_one(typingctx, address):
    """Add 1 to the int64 at ``address``, atomically: other helpers may add to it at once."""
    def codegen(context, builder, signature, args):
        pointer = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        builder.atomic_rmw("add", pointer, ir.Constant(ir.IntType(64), 1), "release")
        return context.get_dummy_value()
    return types.none(types.intp), codegen


@njit(**_JIT)
def _spin(address, seen, ticks):  # pragma: no cover
    """True once the int64 at ``address`` is no longer ``seen``; False after ``ticks`` cycles."""
    start = _pause_then_clock()
    while _load_acquire(address) == seen:
        if _pause_then_clock() - start > ticks:
            return False
    return True


@njit(**_JIT)
def _left_then_spin(left, address, seen, ticks):  # pragma: no cover
    """Count one more helper gone at ``left`` (with the GIL released, here), then ``_spin``."""
    _add_one(left)
    return _spin(address, seen, ticks)


@njit(**_JIT)
def _clock():  # pragma: no cover
    return _pause_then_clock()


def spinner():
    """``(wait, leave_wait)`` for ``_workers.set_idle_spin``: ``wait(counter, seen, left)`` adds one
    to ``left[0]``, then spins up to ``SPIN_S`` until ``counter[0] != seen``; ``leave_wait(counter,
    seen)`` only spins. Compiles (or loads) the spins and calibrates the cycle counter: call it
    once, from one thread, outside any call's timing."""
    counter = np.zeros(1, np.int64)
    _spin(counter.ctypes.data, 1, 0)  # compiled before anything is timed
    _left_then_spin(counter.ctypes.data, counter.ctypes.data, 2, 0)
    _clock()
    c0, t0 = _clock(), time.perf_counter()
    time.sleep(0.002)
    c1, t1 = _clock(), time.perf_counter()
    ticks = max(1, int((c1 - c0) / (t1 - t0) * SPIN_S))
    return (lambda counter, seen, left: _left_then_spin(left.ctypes.data, counter.ctypes.data, seen, ticks),
            lambda counter, seen: _spin(counter.ctypes.data, seen, ticks))
