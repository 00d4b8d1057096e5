"""Work items on fastconv's threads, within a memory budget: what every BLAS-based backend shares.

A backend splits a call into work items (a few images, a block of channels) and plans how many
images an item holds so that every thread's scratch fits its share of the memory budget
(:func:`thread_plan`); the threads are ``fastconv._threads.call_threads()``, fixed for the call
by the ``counted_call`` decorator on its passes. It then runs the items on a pool of threads
kept between calls (:func:`map_items`), each thread carving its scratch arrays from buffers of
its own (:func:`buffer`). The budget (:func:`set_memory_budget`) caps the extra memory of a
call, all threads' scratch together.
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import ctypes
import itertools
import math
import os
import threading

import numpy as np

from ._threads import call_number as _threads_call_number
from ._threads import call_threads, single_threaded_blas, thread_local

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


_held = thread_local(nbytes=0)  # bytes that this thread's caller holds beside its calls (``holding``)


@contextlib.contextmanager
def holding(nbytes: int):
    """Calls made on this thread within plan with ``nbytes`` less of the budget: what a wrapper
    holds beside the calls it makes (a dilated call's copies of its phases, ``backends/_phases.py``)."""
    before = _held.nbytes
    _held.nbytes = before + int(nbytes)
    try:
        yield
    finally:
        _held.nbytes = before


def call_budget(geom, itemsize) -> int:
    """``memory_budget`` of a call on ``geom``'s input, less what its caller holds (``holding``)."""
    return max(0, memory_budget(math.prod(geom.x_shape) * itemsize) - _held.nbytes)


def reserved() -> int:
    """Elements of each thread's share of the budget kept apart from its scratch arrays.
    Elementwise ops on strided views run through numpy's buffered iterator, which allocates up to
    one buffer of ``np.getbufsize()`` elements per operand whatever the chunk; the views and small
    arrays a work item makes take a few hundred bytes more."""
    return 3 * np.getbufsize() + 1024


def thread_share(geom, itemsize) -> int:
    """Bytes of the memory budget that each of fastconv's threads may hold as scratch, besides
    ``reserved()``."""
    return call_budget(geom, itemsize) // call_threads() - reserved() * itemsize


def thread_plan(geom, itemsize: int, per_image: int, want: int, fixed: int = 0) -> tuple[int, int]:
    """``(images per work item, threads)`` for work spread over threads, each thread holding one
    item's scratch of ``per_image`` elements per image plus ``fixed`` elements: up to ``want``
    images, no more than an even share of the batch, and every thread's scratch within its share
    of the memory budget. When even one image per thread does not fit, fewer threads run."""
    threads = call_threads()
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


def map_chunks(n, nb, work, threads, total=None):
    """``map_items`` over the chunks of ``nb`` images of a batch of ``n``: ``work(b0, b1, scratch)``."""
    return map_items(list(chunks(n, nb)), work, threads, total)


def map_items(items, work, threads, total=None, shared=(), compiled=False):
    """Run ``work(*item, scratch)`` on every item, spread over ``threads`` threads, ``scratch``
    being a dict of the running thread's, kept across its items (see :func:`buffer`).

    With ``total`` (an array), the items are the terms of a sum: each ``work`` returns
    ``(where, part)``, and ``total[where] += part`` is done for every item in item order,
    whichever thread finishes first, so that the sum has the same bits on every run with the same
    items (fastconv's rule: each backend is bit-reproducible for a given thread count). A part
    that finishes before the ones ahead of it is copied to wait for them; when ``threads`` copies
    wait already, its thread waits too. Returns ``total``.

    numpy's elementwise loops and copies run on one core, and release the GIL (as BLAS does), so
    Python threads give them the cores that BLAS and torch would use. The calling thread works
    too; items go to whichever thread is free, so a core that another process slows takes fewer.
    Should an item raise, or the caller be interrupted (KeyboardInterrupt), the other threads
    finish the item they are on and take no other; then the exception propagates.

    ``shared``: the :class:`Shared` work that the items need (whose waits end, should the job fail).

    BLAS runs on one thread meanwhile when several threads run items (each product then keeps to
    its thread) or when the call may use only one; a single thread allowed more keeps BLAS's own.

    ``compiled``: each item is one call of compiled code that calls no BLAS, needs no scratch
    (``work`` gets None) and keeps no NumPy error state (numba's slot kernels): BLAS's thread count
    is left alone, and no thread sets up a scratch dict or the caller's ``np.errstate``. On 2
    shared cores those steps cost 20-40 us of a 0.5 ms call (two BLAS reconciles, a helper's
    entry and exit), most of it on the path from the last item to the caller's return.
    """
    threads = min(threads, len(items))
    terms = None if total is None else _OrderedSum(total, threads)
    if compiled:
        _map(items, work, threads, terms, shared, compiled)
        return total
    with single_threaded_blas(threads > 1 or call_threads() == 1):
        _map(items, work, threads, terms, shared)
    return total


def _map(items, work, threads, terms, shared, compiled=False):
    keep = not _held.nbytes  # (the caller's: helpers have their own)
    call = _threads_call_number()
    if threads <= 1:
        with _no_scratch() if compiled else thread_scratch(work, keep, call) as scratch:
            for item in items:
                result = work(*item, scratch)
                if terms is not None:
                    terms.total[result[0]] += result[1]
        return
    job = _Job(items, work, terms, shared, keep, call, compiled)
    pool = _the_pool()
    try:
        pool.post(job, threads - 1)
        with _no_scratch() if compiled else thread_scratch(work, keep, call) as scratch:
            job.run(scratch)
    except BaseException:
        job.fail()
        raise
    finally:
        job.close()
        pool.missed = not job.joined
    if job.failures:
        raise job.failures[0]


class _Stopped(Exception):
    """A thread waiting to add its part, or for :class:`Shared` work, learns that the job failed: it
    takes no other item."""


class Shared:
    """Work that every item of a ``map_items`` job needs done first, shared by its threads within the
    job: ``run(*part, *args)`` for every part, ``args`` those of the item's call (say its thread's
    scratch). An item calls :meth:`help` when it starts (taking parts no thread has taken yet) and
    :meth:`ready` where it first needs the whole (helping, then waiting for the parts other threads
    are on). A separate ``map_items`` call before the job waited for its slowest thread and woke the
    helpers twice; here a helper that wakes late finds the parts taken and goes on with its item,
    and the threads' first steps that do not need the parts (winograd's input transform) overlap
    the last parts. Safe because a part is only ever taken by a thread that runs it to the end
    before it waits; should the job fail, waiters raise ``_Stopped``.
    """

    def __init__(self, parts, run):
        self.parts, self.run = parts, run
        self.taken = itertools.count()  # next(...) hands each part to one thread
        self.left = len(parts)  # parts not finished yet
        self.lock = threading.Lock()
        self.done = threading.Event()  # set when every part is finished, or when the job failed
        # parts finished, and whether the job failed: what compiled code waits on
        # (``_numba_spin.parts_done``) where Python waits on ``done``
        self.state = np.zeros(2, np.int64)
        self.broken = False
        if not parts:
            self.done.set()

    def help(self, *args):
        """Run parts no thread has taken yet, until none is left: ``run(*part, *args)``."""
        while not self.broken:
            i = next(self.taken)
            if i >= len(self.parts):
                return
            try:
                self.run(*self.parts[i], *args)
            except BaseException:
                self.fail()
                raise
            with self.lock:
                self.left -= 1
                self.state[0] += 1
                if not self.left:
                    self.done.set()

    def ready(self, *args):
        """Return once every part is finished (helping first, with ``args``); raise ``_Stopped`` if
        the job failed."""
        self.help(*args)
        self.done.wait()
        if self.broken:
            raise _Stopped

    def fail(self):
        """No part starts any more, and every wait ends (the job failed)."""
        self.broken = True
        self.state[1] = 1
        self.done.set()


ORDER_POLL_S = 0.01  # how often a thread waiting to add its part looks whether the job failed


class _OrderedSum:
    """``total[where] += part`` for every item, in item order (see :func:`map_items`).

    A thread whose part can neither be added (items ahead still run) nor wait as a copy (``spare``
    copies wait already) sleeps on a lock of its own, which the next thread to add parts releases.
    It had slept on one lock shared by every waiter and released by each adder: a release that no
    one was waiting for yet stayed, and the releasing thread, waiting next, took it itself, so that
    the thread that could go on slept out its timeout while the other waited for it. On two
    threads, after both had idled (they then ran unevenly, and waits came often), im2col's weight
    gradient of a 7x1 kernel (N=64 96 -> 48 12x12, 64 items) took 80-105 ms a call, its threads
    asleep 10 ms at a time, against 9-13 ms once warm (2026-12-06, Zen 4); now 6-16 ms either way.
    """

    def __init__(self, total, spare):
        self.total, self.spare = total, spare
        self.next = 0  # the item whose part is added next
        self.waiting = {}  # item index -> (where, a copy of its part): items ahead still run
        self.lock = threading.Lock()
        self.sleepers = []  # the locks of the threads waiting for parts to be added: released then

    def add(self, i, where, part, job):
        while True:
            with self.lock:
                if i == self.next:
                    self.total[where] += part
                    self.next += 1
                    while self.next in self.waiting:
                        later_where, later = self.waiting.pop(self.next)
                        self.total[later_where] += later
                        self.next += 1
                    sleepers, self.sleepers = self.sleepers, []
                    break
                if len(self.waiting) < self.spare:
                    self.waiting[i] = (where, part.copy())
                    return
                # As many copies wait as threads run: the item ``next`` is running (items are taken
                # in order, and it never waits), so this wait ends, unless the job failed.
                wake = _thread.allocate_lock()
                wake.acquire()
                self.sleepers.append(wake)
            if job.failed:
                raise _Stopped
            wake.acquire(timeout=ORDER_POLL_S)
        for wake in sleepers:  # each taken from the list once, so released once
            wake.release()


class _Job:
    """One ``map_items`` call: its items, taken in turn by the calling thread and the helpers
    that join it.

    A KeyboardInterrupt can land between any two bytecodes of the calling thread. So nothing the
    helpers need is ever locked by the caller: items are handed out by ``itertools.count``, who
    is inside by list appends and removals, and the stop by one attribute store, all atomic under
    the GIL; the caller sleeps on a lock of its own, with a timeout, rechecking who is inside.
    (Before, with a ThreadPoolExecutor, an interrupt inside ``future.result()`` could leave the
    future's lock held and a pool thread waiting on it forever, so that a later call hung.)
    """

    def __init__(self, items, work, terms, shared=(), keep=True, call=0, compiled=False):
        self.items, self.work, self.terms, self.shared = items, work, terms, shared
        self.keep, self.call = keep, call  # for the threads' scratch (``thread_scratch``)
        self.compiled = compiled  # no scratch, no error state (``map_items``)
        self.taken = itertools.count()  # next(...) hands each item index to one thread
        self.errors = np.geterr()  # np.errstate is per thread: the caller's holds in the helpers
        self.stop = False  # no thread takes another item: the caller left, or an item raised
        self.failed = False  # an item raised, or the caller was interrupted: parts are dropped
        self.failures = []  # what the helpers' items raised
        self.inside = []  # helpers in this job now
        self.left = _thread.allocate_lock()  # released by each helper leaving; the caller waits on it
        self.left.acquire()
        self.gone = np.zeros(1, np.int64)  # helpers gone, counted once they released the GIL (a hint)
        self.cpus = {_cpu()}  # the CPUs its threads run on (the caller's so far): see ``_apart``
        self.where = {}  # per thread (ident): the CPU it was last seen on (``keep_apart``)
        self.joined = False  # whether a helper took part before the caller had finished

    def run(self, scratch):
        count = len(self.items)
        outer, _running.job = getattr(_running, "job", None), self  # (an item may run a job of its own)
        self.where[threading.get_ident()] = _cpu()
        try:
            self._items(count, scratch)
        finally:
            _running.job = outer

    def _items(self, count, scratch):
        while not self.stop:
            i = next(self.taken)
            if i >= count:
                break
            try:
                result = self.work(*self.items[i], scratch)
            except _Stopped:  # another thread failed: it raises its own exception
                break
            if self.terms is not None:
                try:
                    self.terms.add(i, *result, self)
                except _Stopped:
                    break

    def help(self):
        """A helper's part: items until none is left, unless the caller has already gone."""
        me = object()
        self.inside.append(me)  # before reading stop: the caller reads inside after setting it
        try:
            if not self.stop:
                self.joined = True
                _apart(self.cpus)
                if self.compiled:
                    self.run(None)
                else:
                    with np.errstate(**self.errors), thread_scratch(self.work, self.keep, self.call) as scratch:
                        self.run(scratch)
        except BaseException as exc:  # handed to the caller, who raises it
            self.failures.append(exc)
            self.fail()
        finally:
            self.inside.remove(me)
            try:
                self.left.release()
            except RuntimeError:  # already released by another helper, not yet seen by the caller
                pass

    def fail(self):
        """No thread takes another item, and parts wait no longer (an item raised, or the caller
        was interrupted)."""
        self.failed = self.stop = True
        for work in self.shared:
            work.fail()

    def close(self):
        """In the caller, last: no new item starts; wait for the helpers to finish theirs. An
        interrupt while waiting is held back until they have (they hold this call's arrays)."""
        self.stop = True
        interrupt = None
        while self.inside:
            try:
                # a helper leaves ``inside`` before it counts itself gone: a count that moves is
                # seen here after, and ``inside`` is read again
                seen = int(self.gone[0])
                if not self.inside:
                    break
                if _leave_wait is None or not _leave_wait(self.gone, seen):
                    self.left.acquire(timeout=0.05)  # the timeout only guards against a missed release
            except BaseException as exc:
                interrupt = interrupt or exc
        # The pool's queue keeps this job until each helper it asked for has looked at it, which
        # may be after the call returns (the caller did every item first); a helper that looks
        # late only reads ``stop``. Dropping the work and items here frees the call's arrays
        # now: they had outlived the call, by a whole slice's copies in the 3-D lift.
        self.items = self.work = self.terms = self.shared = None
        if interrupt is not None:
            raise interrupt


_idle_spin = None  # wait(counter, seen, left) -> bool, or None: see set_idle_spin
_leave_wait = None  # leave_wait(counter, seen) -> bool, or None


def set_idle_spin(wait, leave_wait=None) -> None:
    """Have the pool's helpers, out of work, call ``wait(posts, seen, left)`` before they sleep:
    compiled code that adds one to ``left[0]`` (the count of helpers gone from the job they left
    last, an int64 array), then returns True as soon as ``posts[0]`` (the pool's count of posted
    jobs) is no longer ``seen``, and False after a short while (the numba backend's
    ``_numba_spin``). And have a caller waiting for its helpers call ``leave_wait(left, seen)``:
    True once ``left[0]`` is no longer ``seen``, False after a short while. ``None``: helpers
    sleep at once, callers sleep on a lock."""
    global _idle_spin, _leave_wait
    _idle_spin, _leave_wait = wait, leave_wait


def _cpu_reader():
    """libc's ``sched_getcpu`` (the CPU the calling thread is on, read without a system call), or
    None where it or ``os.sched_setaffinity`` is missing (not Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        read = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    read.restype, read.argtypes = ctypes.c_int, ()
    return read


_read_cpu = _cpu_reader()


def _cpu() -> int:
    """The CPU the calling thread runs on, or -1 where that is not known."""
    return _read_cpu() if _read_cpu is not None else -1


_running = threading.local()  # .job: the ``_Job`` whose items the thread runs now (``keep_apart``)


def keep_apart() -> None:
    """In an item of a job on several threads, before a long step of compiled code: where the
    calling thread runs on the CPU another of the job's threads was last seen on, move it to
    another allowed CPU (as ``_apart`` moves a helper at its start). A thread that slept in the
    middle of an item (on the GIL, on a :class:`Shared` wait) was woken beside its waker on this
    VM after its CPUs had idled, and the two then ran their items on one CPU while the other
    idled, call after call. Two threads, N=32 C=64 7x7, winograd's forward (2026-12-06, Zen 4):
    calls 5-40 after 0.12 s idle 1.8-1.9 ms each without this, 1.3 with it, 0.7-1.0 from about
    the 60th on either way; timed as the bench does (an idle pause, 30 ms of calls, then 20 ms
    timed), 2.0-2.3 ms a call without, 1.4-1.8 with. (Most of the rest was a thread asleep on
    winograd's :class:`Shared` kernel: its items now wait for it spinning, ``winograd.KERNEL_SPIN_S``.)"""
    job = getattr(_running, "job", None)
    if job is None or _read_cpu is None:
        return
    me, cpu = threading.get_ident(), _cpu()
    others = {c for t, c in list(job.where.items()) if t != me}
    job.where[me] = _move_off(others) if cpu in others else cpu


def _apart(cpus):
    """Move the calling helper off the CPU it woke on where one of the job's threads runs there
    (``cpus``, to which it adds its own), if another is allowed. Linux woke a helper on its
    caller's CPU (the wakee placed beside its waker) after both of this VM's two CPUs had idled for
    50 ms or more, and did not move it within the call: the two shared one core while the other
    idled, and the caller ran the call's items on its own. Two threads, one 1-D signal of 128
    channels to 512, kernel 9, forward: 7.0 ms back to back, 14.6-15.1 ms after 100-300 ms asleep,
    in 1 call of 4 after 300 ms (2026-12-04, Intel Xeon VM). (``_move_off``.)"""
    cpu = _cpu()
    cpus.add(_move_off(cpus) if cpu in cpus and cpu >= 0 else cpu)


def _move_off(taken) -> int:
    """Move the calling thread to an allowed CPU outside ``taken``, if there is one: a mask without
    them moves it at once, and its old mask is set back at once (the thread stays where it went),
    so the scheduler stays free to balance the threads later. Returns the CPU it runs on."""
    with contextlib.suppress(OSError):  # the mask changed meanwhile (a cpuset): stay
        allowed = os.sched_getaffinity(0)
        free = allowed - taken
        if free:
            os.sched_setaffinity(0, free)
            os.sched_setaffinity(0, allowed)
    return _cpu()


class _Pool:
    """Helper threads kept between calls (starting threads on every call cost more than MNIST's
    first layer takes to compute), shared by every caller: a job asks for up to n helpers; a
    helper busy with another caller's job joins when it is free, if work is left by then. Out of
    work, a helper spins a while before it sleeps, when a backend has provided the spin
    (``set_idle_spin``): woken from sleep, it started after the caller had done the whole of a
    small call."""

    def __init__(self):
        self.jobs = collections.deque()  # one entry per helper a job asked for
        self.wakes = []  # per helper: the lock it sleeps on; a release wakes it
        self.grow = threading.Lock()
        self.posts = np.zeros(1, np.int64)  # jobs posted so far: what a spinning helper watches
        # per helper: its thread id; whether it sleeps on its lock (from just before it does until
        # it runs again); its own mask while a poster has narrowed it (``_steer``), else None
        self.tids, self.asleep, self.masks = [], [], []
        self.steering = threading.Lock()  # a narrowed mask and its saved copy change together
        self.missed = False  # no helper took part in the last job (``map_items``): see ``_steer``

    def post(self, job, helpers):
        if len(self.wakes) < helpers:
            with self.grow:
                while len(self.wakes) < helpers:
                    wake = _thread.allocate_lock()
                    wake.acquire()
                    self.asleep.append(False)
                    self.masks.append(None)
                    thread = threading.Thread(target=self._serve, args=(wake, len(self.wakes)), daemon=True,
                                              name=f"fastconv-worker-{len(self.wakes)}")
                    thread.start()
                    self.tids.append(thread.native_id)
                    self.wakes.append(wake)
        self.jobs.extend([job] * helpers)
        self.posts[0] += 1  # (racing posters may count one: the value still moves)
        cpu = _cpu()
        for i, wake in enumerate(list(self.wakes)):  # all: the idle ones take the entries, the busy ones look later
            if self.asleep[i] or self.missed:
                self._steer(i, cpu)
            try:
                wake.release()
            except RuntimeError:  # already woken, has not looked yet
                pass

    def _steer(self, i, cpu):
        """Narrow helper ``i``'s mask to the allowed CPUs but ``cpu`` (the poster's) before waking
        it, where it sleeps or took no part in the last job; it sets its own mask back once it
        runs (``_awake``), so the scheduler stays free to move it later. On this VM Linux woke a
        sleeping helper on its waker's CPU (an idle virtual CPU counts as taken) and left it queued
        there behind the caller for milliseconds, call after call, while the other CPU idled: the
        caller ran the calls alone, and ``_apart`` cannot move a helper that does not run. Two
        threads, MNIST's 5x5 forward (``fastconv bench --shape 64,1,28,28,32,5,1,0 --backends
        numba,im2col,torch --pass forward --repeat 15``, 2026-12-05), ms medians, two runs each
        interleaved: without this numba 1.23 / 1.06, im2col 1.28 / 1.26 (their best rounds 0.55 and
        0.67); steering sleeping helpers only 1.08 / 0.77, 1.00 / 0.79; these and helpers that
        missed a job 0.70 / 0.69, 1.06 / 0.86; torch 0.56-0.64 in each. Three system calls, about
        1.5 us."""
        if cpu < 0:
            return
        with self.steering, contextlib.suppress(OSError):  # a cpuset changed meanwhile: leave it
            own = self.masks[i] or os.sched_getaffinity(self.tids[i])
            others = own - {cpu}
            if others and others != own:
                os.sched_setaffinity(self.tids[i], others)
                self.masks[i] = own

    def _awake(self, i):
        """Helper ``i`` runs again: its own mask back, where a poster narrowed it."""
        with self.steering:
            self.asleep[i] = False
            own, self.masks[i] = self.masks[i], None
            if own is not None:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, own)

    def _serve(self, wake, i):
        while True:
            seen = int(self.posts[0])  # before looking: a job posted after this moves the count
            gone = _NOBODY  # the count of the job this helper left last, not yet moved
            while True:
                try:
                    job = self.jobs.popleft()
                except IndexError:
                    break
                gone[0] += 1  # (another helper may add at once: a hint lost, its caller then sleeps)
                if self.masks[i] is not None:
                    self._awake(i)
                job.help()
                gone = job.gone
                del job  # a finished call's arrays are not kept alive by an idle helper
            spin = _idle_spin
            if spin is not None and spin(self.posts, seen, gone):
                continue  # a job was posted while spinning (its release of ``wake`` is stale, harmless)
            self.asleep[i] = True
            wake.acquire()
            self._awake(i)


_pool: _Pool | None = None
_NOBODY = np.zeros(1, np.int64)  # what a helper counts itself gone from before its first job


def _the_pool() -> _Pool:
    global _pool
    if _pool is None:
        _pool = _Pool()
    return _pool


def _forget_pool():
    """A forked child has none of its parent's threads: the pool must be started afresh there,
    or work handed to it would wait forever (a DataLoader forking worker processes, say)."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_pool)


# Scratch kept for each thread between calls (``kept``, and ``thread_scratch``'s buffers), at most
# this many bytes of each.
KEPT_MAX_BYTES = DEFAULT_MEMORY_BUDGET // 2
_kept = threading.local()
_dropped = [0]  # drop_kept calls so far: a thread's kept buffers made before the last are dropped


def kept(name, shape, dtype, capped=True):
    """Scratch array ``name`` (any hashable) of ``shape`` for the calling thread's call, 64-byte
    aligned, carved from a buffer kept for this thread between calls and grown to the largest size
    asked (``capped``: up to ``KEPT_MAX_BYTES``, larger ones made afresh; the numba backend's
    workspaces are not capped). A warm call then allocates nothing: glibc maps an allocation of 32
    MiB or more afresh on every call, and the kernel zeroes its pages at their first touch each time
    (winograd's weight gradient at 7x7 C=512, 32 MiB of slices' sums, spent 5-55 ms a call in the
    kernel, two threads, against 27-41 ms of products and transforms). The buffer is this
    thread's, and a call uses it only while it runs, so threads and successive calls never share
    it; ``drop_kept`` frees it. Uncapped, the same shape and dtype as the last time get the same
    view again (making it, two a call, was 2 us of single-r32-k3's 21)."""
    store = _kept.__dict__  # (keys that need not be names: this dict is only read here)
    if store.get("dropped", 0) != _dropped[0]:  # drop_kept ran (maybe on another thread) since
        store.clear()
        store["dropped"] = _dropped[0]
    last = None if capped else store.get((name, "view"))
    if last is not None and last.shape == shape and last.dtype == dtype:
        return last
    del last  # (no reference here to the old buffer when a larger one is made: see below)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if capped and nbytes > KEPT_MAX_BYTES:
        return np.empty(shape, dtype)
    raw = store.get(name)
    if raw is None or raw.size < nbytes:
        # the old one goes first, never both at once: the store's references and this frame's
        # (which had kept it alive while its successor was made: twice the memory at a peak)
        raw = store[name] = store[name, "view"] = None
        raw = store[name] = _aligned(np.empty, nbytes, np.dtype(np.uint8))
    view = store[name, "view"] = raw[:nbytes].view(dtype).reshape(shape)
    return view


def drop_kept():
    """Free the calling thread's ``kept`` buffers and scratch (``thread_scratch``) now, and every
    other thread's where it next asks for them (the memory tests measure a call that allocates
    its scratch afresh)."""
    _dropped[0] += 1
    _kept.__dict__.clear()
    _scratch.stores = None


class _Scratch(dict):
    """One work's scratch buffers on one thread, by name (``buffer``): which were made zeroed in
    this job, the call the job is part of, the call that last grew them, and the thread's other
    works' (``thread_scratch``)."""

    def __init__(self, stores, call):
        super().__init__()
        self.zeroed = set()
        self.stores, self.call, self.grown = stores, call, 0

    def grow(self):
        """Before a buffer is made: free the thread's other works' buffers made or grown in this
        same call, so that a call's scratch stays what its budget planned (one work's at a
        time); those kept from earlier calls stay."""
        for code, other in list(self.stores.items()):
            if other.grown == self.call:
                del self.stores[code]
        self.grown = self.call


_scratch = thread_local(stores=None)  # this thread's kept _Scratch of each work, by code
_stores_dropped = thread_local(count=0)  # _dropped[0] when this thread's stores were made


@contextlib.contextmanager
def _no_scratch():
    """``thread_scratch``'s stand-in for compiled items: no scratch."""
    yield None


@contextlib.contextmanager
def thread_scratch(work, keep=True, call=None):
    """The scratch dict of ``map_items``' ``work`` on this thread, kept between its calls, as
    ``kept`` is: made afresh on every call, winograd's 16 MiB a thread at N=32 C=512 7x7 went
    back to the kernel when freed, and its pages were zeroed again at their first touch
    (1,500-3,500 page faults and 8-19 ms of system time a call at 14x14 and 7x7, two threads,
    where an earlier call in the process had not yet raised glibc's thresholds).

    A thread keeps one dict per work (by its code), up to ``KEPT_MAX_BYTES`` in all: a training
    step's forward, input gradient and weight gradient each find their own. Within one call
    (``call``: the ``_threads.call_number`` of the job's caller), a work that must make a buffer
    first frees the others' made in that call (``_Scratch.grow``), so that the call's scratch
    stays within its budget as it did when every job freed its own. A job whose caller holds
    memory beside its calls (``holding``: the 3-D lift's stacked planes, whose share of the budget
    assumes the calls' scratch freed) neither finds nor keeps any (``keep`` false).

    Buffers made zeroed (``buffer(..., zeros=True)``) are dropped when the job ends: their users
    rely on the zeros their own call's layout left. The dict is taken from the thread for the job
    and given back only when the job ends normally, so a job inside an item on the same thread
    gets a dict of its own, and a job cut short (an exception, an interrupt anywhere) leaves none
    half-made behind."""
    code = getattr(work, "__code__", work)
    stores = _scratch.stores
    if stores is None or _stores_dropped.count != _dropped[0]:
        stores = _scratch.stores = None  # the old ones go first
        stores = _scratch.stores = {}
        _stores_dropped.count = _dropped[0]
    if not keep:
        stores.clear()
    store = stores.pop(code, None)
    if store is None:
        store = _Scratch(stores, 0)
    store.call = _threads_call_number() if call is None else call
    yield store
    for name in store.zeroed:
        store.pop(name, None)
    store.zeroed.clear()
    if keep:
        stores[code] = store
        if sum(raw.nbytes for kept_store in stores.values() for raw in kept_store.values()) > KEPT_MAX_BYTES:
            stores.clear()
            if sum(raw.nbytes for raw in store.values()) <= KEPT_MAX_BYTES:
                stores[code] = store


def buffer(scratch, name, shape, dtype, zeros=False):
    """The scratch array ``name`` with ``shape`` and ``dtype``, carved from one buffer of bytes made
    for the largest chunk seen so far (in ``scratch``, the dict that ``map_items`` hands its work:
    kept between calls, so the buffer may come from an earlier call, of another dtype); ``zeros``
    buffers are zeroed once, in this call, their users overwrite only what varies."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    nbytes = size * dtype.itemsize
    raw = scratch.get(name)
    if raw is None or raw.nbytes < nbytes or zeros and not zeroed(scratch, name):
        scratch.pop(name, None)
        raw = None  # the old one goes first, this frame's reference too (kept, it lived beside its successor)
        if isinstance(scratch, _Scratch):
            scratch.grow()
        raw = scratch[name] = _aligned((np.zeros if zeros else np.empty), nbytes, np.dtype(np.uint8))
        if zeros and isinstance(scratch, _Scratch):
            scratch.zeroed.add(name)
    return raw[:nbytes].view(dtype).reshape(shape)


def zeroed(scratch, name) -> bool:
    """Whether ``buffer(scratch, name, ..., zeros=True)`` has made ``name`` in this job already (a
    kept buffer of that name, from an earlier call, is no zeroed one)."""
    return name in scratch.zeroed if isinstance(scratch, _Scratch) else name in scratch


def _aligned(make, size, dtype):
    """``make(size, dtype)`` starting on a 64-byte boundary: an AVX-512 vector's load from an
    address off it spans two cache lines (winograd's products, one thread, 16 x 256 x 256 x 224:
    171-172 GFLOP/s at 16 bytes off, 177-188 aligned; NumPy aligns to 16)."""
    raw = make(size + 64 // dtype.itemsize, dtype)
    start = (-raw.ctypes.data % 64) // dtype.itemsize
    return raw[start:start + size]
