"""Keeping fastconv's background work out of what a test measures.

The numba and winograd backends compile their kernels on a daemon thread when ``"auto"`` first
asks for them (``ready``), and that thread runs the kernels it compiled. Its calls and allocations
are the process's: a spy on ``numba_jit._run_parts``, tracemalloc or Numba's allocation counters
would count them as the test's own (seen: ``_columns_gw_part`` among a 1x1 call's parts, when the
test ran right after others that had started the compile)."""

import sys
import threading


def settle():
    """Wait until the background compiles that have started are done (none start here)."""
    for name in ("fastconv.backends.numba_jit", "fastconv.backends.winograd"):
        module = sys.modules.get(name)  # not imported: nothing of it started
        for thread in list(getattr(module, "_compiling", {}).values()):
            thread.join()


def ran_parts(monkeypatch, record=lambda part, kwargs: part):
    """A list to which every later ``numba_jit._run_parts`` call made on this thread appends
    ``record(part, kwargs)`` (a background compile's calls are not this test's)."""
    from fastconv.backends import numba_jit

    ran, me, real_run = [], threading.get_ident(), numba_jit._run_parts

    def spy(part, *args, **kwargs):
        if threading.get_ident() == me:
            ran.append(record(part, kwargs))
        return real_run(part, *args, **kwargs)

    monkeypatch.setattr(numba_jit, "_run_parts", spy)
    return ran
