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

Inside a call, an item that needs work other threads are finishing (winograd's transformed kernel,
a ``_workers.Shared``) waits for it in its compiled code (``parts_done``) rather than asleep on an
Event: woken, a sleeper needs the GIL and a CPU again, and after idle it ran only once its waker's
item had ended (by that timing, woken onto the waker's CPU).
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
# ``parts_done`` yields its CPU every YIELD_LOOKS looks (a few microseconds of pauses): after idle
# a thread woken from a sleep (on the GIL) was placed on its waker's CPU, and a thread spinning there
# without yielding held it up to the spin's end: winograd's N=32 C=64 7x7 forward, calls 2-10 after
# 0.12 s idle, 3.6-4.0 ms each without yielding, 1.3-1.6 with.
YIELDS = AVAILABLE and platform.system() == "Linux"
YIELD_LOOKS = 64


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


@intrinsic
def _yield_cpu(typingctx):
    """libc's ``sched_yield``: a thread that shares its CPU with another runnable one lets it run."""
    def codegen(context, builder, signature, args):
        module = builder.module
        fn = module.globals.get("sched_yield") or ir.Function(module, ir.FunctionType(ir.IntType(32), []),
                                                             name="sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


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


if YIELDS:
    @njit(inline="always", **_JIT)
    def _let_others_run():  # pragma: no cover
        _yield_cpu()
else:
    @njit(inline="always", **_JIT)
    def _let_others_run():  # pragma: no cover
        pass


if AVAILABLE:
    @njit(inline="always", **_JIT)
    def parts_done(state, parts, ticks):  # pragma: no cover
        """In compiled code: whether ``state[0]`` (a :class:`_workers.Shared`'s parts finished)
        reaches ``parts`` within ``ticks`` cycles, spinning; False at once when ``state[1]`` is set
        (the job failed). The waiter keeps its CPU and never needs the GIL (see ``KERNEL_SPIN_S``
        in ``winograd``)."""
        address = state.ctypes.data
        start = _pause_then_clock()
        looks = 0
        while _load_acquire(address + 8) == 0:
            if _load_acquire(address) >= parts:
                return True
            if _pause_then_clock() - start > ticks:
                return False
            looks += 1
            if looks % YIELD_LOOKS == 0:
                _let_others_run()
        return False
else:
    @njit(inline="always", **_JIT)
    def parts_done(state, parts, ticks):  # pragma: no cover
        """``parts_done`` without a spin (no ``pause`` instruction here): one look."""
        return state[1] == 0 and state[0] >= parts


_ticks_per_s = 0.0  # the cycle counter's rate, once measured (no lock: two threads measuring agree)


def ticks(seconds: float) -> int:
    """Cycles of the CPU's counter in ``seconds``, for the spins' limits; 0 where there is no spin.
    Compiles (or loads) the clock and measures its rate on first use (2 ms asleep)."""
    global _ticks_per_s
    if not AVAILABLE:
        return 0
    if not _ticks_per_s:
        _clock()
        c0, t0 = _clock(), time.perf_counter()
        time.sleep(0.002)
        c1, t1 = _clock(), time.perf_counter()
        _ticks_per_s = (c1 - c0) / (t1 - t0)
    return max(1, int(_ticks_per_s * seconds))


def spinner():
    """``(wait, leave_wait)`` for ``_workers.set_idle_spin``: ``wait(counter, seen, left)`` adds one
    to ``left[0]``, then spins up to ``SPIN_S`` until ``counter[0] != seen``; ``leave_wait(counter,
    seen)`` only spins. Compiles (or loads) the spins and calibrates the cycle counter: call it
    once, from one thread, outside any call's timing."""
    counter = np.zeros(1, np.int64)
    _spin(counter.ctypes.data, 1, 0)  # compiled before anything is timed
    _left_then_spin(counter.ctypes.data, counter.ctypes.data, 2, 0)
    spin = ticks(SPIN_S)
    return (lambda counter, seen, left: _left_then_spin(left.ctypes.data, counter.ctypes.data, seen, spin),
            lambda counter, seen: _spin(counter.ctypes.data, seen, spin))
