"""Reliability of fastconv's threads: interrupts at any point, items that raise, concurrent callers.

The interrupt tests run in a child process, so that a hang is a timeout with every thread's stack
(faulthandler) rather than a stuck test session, and so that their signal handlers stay there.
"""

import contextlib
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import types

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastconv
from fastconv import _threads, _workers
from fastconv.backends import im2col, reference
from fastconv.geometry import Geometry


def blas():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

# Interrupts at random points of im2col calls on two threads (about 1 ms each): half from a timer
# thread calling _thread.interrupt_main() (the next bytecode raises), half from SIGALRM via
# setitimer, whose handler raises KeyboardInterrupt and which also cuts short blocking waits.
INTERRUPTS = textwrap.dedent("""
    import _thread, faulthandler, random, signal, sys, threading, time
    import numpy as np
    from threadpoolctl import threadpool_info
    import fastconv
    from fastconv import _threads, _workers
    from fastconv.backends import im2col
    from fastconv.geometry import Geometry

    rounds, seed, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    faulthandler.dump_traceback_later(limit, exit=True)  # a hang prints every thread's stack, exits 1
    # A parent that ignores SIGINT passes that on, and interrupt_main() then does nothing: in two
    # full-suite runs (fresh kernels to compile) the first interrupt never arrived. Not seen alone.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def blas():
        return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    geom = Geometry.from_args((8, 16, 20, 20), (16, 16, 3, 3), padding=1)
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    passes = [(im2col.forward, (x, w, geom)), (im2col.grad_input, (gy, w, geom)),
              (im2col.grad_weight, (gy, x, geom))]
    fastconv.set_num_threads(2)

    def call_all():
        return [f(*args) for f, args in passes]

    def best_time():
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            call_all()
            times.append(time.perf_counter() - t0)
        return min(times)

    want = call_all()
    blas_before = blas()
    span = best_time()

    def alarm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, alarm)
    rnd = random.Random(seed)
    inside = 0  # interrupts that landed inside a call
    for i in range(rounds):
        delay = rnd.uniform(0, 1.5 * span)
        in_call = False
        try:
            if i % 2:
                signal.setitimer(signal.ITIMER_REAL, delay)
            else:
                threading.Timer(delay, _thread.interrupt_main).start()
            in_call = True
            call_all()
            in_call = False
            for _ in range(10_000):  # short sleeps: interrupt_main() wakes no sleeping thread
                time.sleep(0.001)
            raise AssertionError("no interrupt arrived")
        except KeyboardInterrupt:
            inside += in_call
    signal.setitimer(signal.ITIMER_REAL, 0)

    got = call_all()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)  # the same bits: every pass is deterministic
    assert blas() == blas_before, (blas(), blas_before)
    assert not _threads._blas_users, _threads._blas_users
    after = best_time()
    assert after < 3 * span, f"calls after the interrupts took {after:.4f} s, before {span:.4f} s"
    print(f"OK {inside} of {rounds} interrupts inside a call; round {span * 1e3:.2f} ms before, "
          f"{after * 1e3:.2f} ms after")
""")


@pytest.mark.parametrize("seed", [1, 2])
def test_interrupts_at_random_points_leave_the_next_call_correct_and_fast(seed):
    rounds, limit = 150, 40
    run = subprocess.run([sys.executable, "-c", INTERRUPTS, str(rounds), str(seed), str(limit)],
                         capture_output=True, text=True, timeout=limit + 20)
    assert run.returncode == 0 and run.stdout.startswith("OK"), run.stdout + run.stderr
    inside = int(run.stdout.split()[1])
    assert inside > rounds // 4, run.stdout  # most interrupts must land inside a call


def test_an_item_that_raises_stops_the_others_and_the_next_call_works():
    done = []

    def work(i, scratch):
        if i == 3:
            raise ValueError("item 3")
        done.append(i)

    with pytest.raises(ValueError, match="item 3"):
        _workers.map_items([(i,) for i in range(64)], work, 2)
    assert len(done) < 63  # the threads stopped taking items
    done.clear()
    _workers.map_items([(i,) for i in range(64)], lambda i, scratch: done.append(i), 2)
    assert sorted(done) == list(range(64))


def test_shared_work_runs_each_part_once_and_is_whole_where_items_need_it():
    ran, lock = [], threading.Lock()

    def part(i):
        time.sleep(0.001 * (i % 3))  # parts of uneven length, taken by whichever thread is free
        with lock:
            ran.append(i)

    for threads in (1, 2, 3):
        ran.clear()
        shared = _workers.Shared([(i,) for i in range(13)], part)
        seen = []

        def work(i, scratch, shared=shared, seen=seen):
            shared.help()
            shared.ready()
            seen.append(len(ran))

        _workers.map_items([(i,) for i in range(7)], work, threads, shared=(shared,))
        assert sorted(ran) == list(range(13)) and seen == [13] * 7, threads
        assert list(shared.state) == [13, 0]  # what compiled code reads: parts finished, not failed
    _workers.Shared([], None).ready()  # no parts: nothing to wait for


def test_compiled_code_waits_for_shared_parts_until_done_failed_or_out_of_time():
    spin = pytest.importorskip("fastconv.backends._numba_spin")
    ticks = spin.ticks(0.002)
    shared = _workers.Shared([(0,), (1,)], lambda i: time.sleep(0.001))
    start = time.perf_counter()
    assert not spin.parts_done(shared.state, 2, ticks)  # none done: it gives up
    assert time.perf_counter() - start < 0.5  # roughly 2 ms where it spins; generous for a loaded machine
    worker = threading.Thread(target=shared.help)
    worker.start()
    if spin.AVAILABLE:  # (elsewhere no spin: one look)
        assert spin.parts_done(shared.state, 2, spin.ticks(5.0))  # done within the spin
    worker.join()
    assert spin.parts_done(shared.state, 2, 0)
    shared.fail()
    assert not spin.parts_done(shared.state, 2, ticks)  # the job failed: no wait succeeds


@pytest.mark.parametrize("failing", ["part", "item"])
def test_a_failure_in_shared_work_or_an_item_ends_every_wait_and_is_raised(failing):
    # One thread fails while the other waits for the parts it took: the wait must end (the job
    # failed), and map_items raise the failure, not the waiter's _Stopped.
    started = threading.Event()

    def part(i):
        if i == 0:
            started.wait(10)  # the other thread has reached ready() and waits for this part
            time.sleep(0.02)
            if failing == "part":
                raise ValueError("part 0")

    shared = _workers.Shared([(0,), (1,)], part)

    def work(i, scratch):
        shared.help()
        if failing == "item" and i == 1:
            started.set()
            raise ValueError("item 1")
        started.set()
        shared.ready()

    with pytest.raises(ValueError, match="part 0" if failing == "part" else "item 1"):
        _workers.map_items([(0,), (1,)], work, 2, shared=(shared,))
    done = []
    _workers.map_items([(i,) for i in range(8)], lambda i, scratch: done.append(i), 2)
    assert sorted(done) == list(range(8))


def test_every_item_runs_once_and_the_callers_errstate_holds_in_every_thread():
    seen = []

    def work(i, scratch):
        seen.append((i, np.geterr()["divide"]))

    with np.errstate(divide="raise"):
        _workers.map_items([(i,) for i in range(100)], work, 3)
    assert sorted(i for i, _ in seen) == list(range(100))
    assert {mode for _, mode in seen} == {"raise"}


def test_concurrent_callers_get_correct_results_and_leave_blas_as_found():
    # As dask's threaded scheduler calls: several user threads, each a mix of passes and shapes,
    # some inside a `threads(n)` block of their own.
    problems = []
    for shape, kwargs in [(((6, 8, 12, 12), (8, 8, 3, 3)), {"padding": 1}),
                          (((5, 6, 9, 9), (6, 1, 3, 3)), {"padding": 1, "groups": 6}),
                          (((4, 8, 10, 10), (4, 8, 1, 1)), {})]:
        geom = Geometry.from_args(*shape, **kwargs)
        rng = np.random.default_rng(len(problems))
        x, w, gy = (rng.standard_normal(s) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
        want = (reference.forward(x, w, geom), reference.grad_input(gy, w, geom), reference.grad_weight(gy, x, geom))
        problems.append((geom, x, w, gy, want))
    blas_before = blas()
    errors = []

    def caller(k):
        try:
            with fastconv.threads(k % 3 + 1) if k % 2 else contextlib.nullcontext():
                for i in range(30):
                    geom, x, w, gy, want = problems[(i + k) % len(problems)]
                    got = (im2col.forward(x, w, geom), im2col.grad_input(gy, w, geom), im2col.grad_weight(gy, x, geom))
                    for a, b in zip(got, want):
                        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
        except BaseException as exc:  # noqa: BLE001  (reported by the test's thread)
            errors.append(exc)

    callers = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(60)
    assert not any(t.is_alive() for t in callers)
    if errors:
        raise errors[0]
    assert blas() == blas_before and not _threads._blas_users and not _threads._calls



# (x shape, w shape, hyper-parameters, memory budget): a dense layer in many chunks, one whose
# images go in bands of rows, a depthwise one in blocks of images and channels.
DETERMINISM = {
    "dense-chunks": ((16, 8, 12, 12), (16, 8, 3, 3), {"padding": 1}, 400 * 2**10),  # 16 items
    "dense-bands": ((8, 8, 40, 40), (8, 8, 3, 3), {"padding": 1}, 400 * 2**10),  # 8 images, in bands
    "depthwise": ((16, 32, 14, 14), (32, 1, 3, 3), {"padding": 1, "groups": 32}, 400 * 2**10),  # 16 items
}


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("name", DETERMINISM)
def test_every_pass_gives_the_same_bits_on_every_run_under_load(name, threads):
    x_shape, w_shape, kwargs, nbytes = DETERMINISM[name]
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    rng = np.random.default_rng(7)
    # values of very different sizes, so that the order of a sum shows in its last bits
    x, w, gy = (rng.standard_normal(s).astype(np.float32) * rng.choice([1e-3, 1, 1e3], s).astype(np.float32)
                for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    busy, stop = threading.Event(), threading.Event()

    def load():  # another thread keeps a core busy, so that the threads finish in varying order
        a = np.ones(2**16)
        busy.set()
        while not stop.is_set():
            np.sqrt(a, out=a)

    loader = threading.Thread(target=load)
    loader.start()
    previous = _workers.set_memory_budget(nbytes)
    try:
        busy.wait(10)
        with fastconv.threads(threads):
            for pass_, args in [("forward", (x, w)), ("grad_input", (gy, w)), ("grad_weight", (gy, x))]:
                runs = [getattr(im2col, pass_)(*args, geom) for _ in range(12)]
                assert all(np.array_equal(r, runs[0]) for r in runs), f"{name} {pass_}: results differ"
    finally:
        _workers.set_memory_budget(previous)
        stop.set()
        loader.join()


def test_holding_lowers_this_threads_budget_only_and_always_restores_it():
    """``_workers.holding``: what a wrapper holds comes off the budget of the calls it makes, on
    its own thread only (another caller keeps the whole budget), nested holds add up, and the
    budget is back whole after an exception."""
    geom = Geometry.from_args((1, 1, 8, 8), (1, 1, 3, 3))
    previous = _workers.set_memory_budget(10_000)
    try:
        seen = []
        with _workers.holding(3_000):
            with _workers.holding(4_000):
                assert _workers.call_budget(geom, 8) == 3_000
                other = threading.Thread(target=lambda: seen.append(_workers.call_budget(geom, 8)))
                other.start()
                other.join()
            assert _workers.call_budget(geom, 8) == 7_000
            with pytest.raises(RuntimeError), _workers.holding(20_000):
                assert _workers.call_budget(geom, 8) == 0  # never negative
                raise RuntimeError
            assert _workers.call_budget(geom, 8) == 7_000
        assert seen == [10_000] and _workers.call_budget(geom, 8) == 10_000
    finally:
        _workers.set_memory_budget(previous)


def test_parts_are_added_in_item_order_whatever_the_order_they_finish():
    # Items finish in a shuffled order (random sleeps); the sum must still be ((p0 + p1) + p2) ...
    # Floats of very different sizes make any other order show.
    rnd = random.Random(3)
    parts = [np.float64(v) for v in (1e16, 1.0, -1e16, 1.0, 3.5, 1e-3, 2.0**53, 1.0) * 4]
    delays = [rnd.uniform(0, 0.003) for _ in parts]
    want = np.zeros(1)
    for p in parts:
        want[0] += p

    def work(i, scratch):
        time.sleep(delays[i])
        return Ellipsis, np.array([parts[i]])

    for threads in (1, 2, 3, 5):
        got = _workers.map_items([(i,) for i in range(len(parts))], work, threads, np.zeros(1))
        assert got.tobytes() == want.tobytes(), threads


@pytest.mark.parametrize("slow", [0, 5])
def test_parts_that_wait_for_a_slow_item_are_all_added(slow):
    # One slow item: the others' parts fill the waiting room, then their threads wait for it. Every
    # part must still be added once (a thread that gave up waiting when the caller ran out of items
    # dropped its part: a wrong gradient, seen as results that differed between runs).
    parts = [float(2**i) for i in range(40)]

    def work(i, scratch):
        if i == slow:
            time.sleep(0.05)
        return Ellipsis, np.array([parts[i]])

    for threads in (2, 3):
        got = _workers.map_items([(i,) for i in range(len(parts))], work, threads, np.zeros(1))
        assert got[0] == sum(parts), threads


def test_a_thread_waiting_to_add_its_part_is_woken_by_the_add(monkeypatch):
    # Room for one copy: item 1's part waits as a copy, so item 2's thread must wait for item 0.
    # Adding item 0 must wake it, even where the adder, waiting next itself (item 4, with item 3's
    # copy in the room), looks before the woken thread has run: both threads on one CPU make that
    # likely. With one lock shared by the waiters, the adder took its own wake and both slept out
    # the timeout (10 ms each time; here long enough to fail).
    monkeypatch.setattr(_workers, "ORDER_POLL_S", 60.0)
    job = types.SimpleNamespace(failed=False)
    one_cpu = {min(os.sched_getaffinity(0))} if hasattr(os, "sched_setaffinity") else None

    def pinned():
        if one_cpu is not None:
            os.sched_setaffinity(0, one_cpu)

    def round_():
        terms = _workers._OrderedSum(np.zeros(1), 1)
        terms.add(1, Ellipsis, np.array([2.0]), job)

        def waiter():
            pinned()
            terms.add(2, Ellipsis, np.array([4.0]), job)

        other = threading.Thread(target=waiter, daemon=True)
        other.start()
        _until(lambda: terms.sleepers, "item 2's thread waits")
        for i in (0, 3, 4):
            terms.add(i, Ellipsis, np.array([2.0**i]), job)
        other.join()
        assert terms.total[0] == 31

    def rounds():
        pinned()
        for _ in range(200):
            round_()

    runner = threading.Thread(target=rounds, daemon=True)
    runner.start()
    runner.join(20)
    assert not runner.is_alive(), "a thread waiting to add its part was not woken by the add"


def _until(condition, what):
    """Wait until ``condition()`` holds, 10 s at most; else fail, saying ``what``."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def _both(n=2):
    """Items that each need the other thread inside: the helper joins the job."""
    both = threading.Barrier(n, timeout=10)
    return [(i,) for i in range(n)], lambda i, scratch: both.wait()


def test_a_call_done_before_a_helper_looks_leaves_none_of_its_arrays_alive():
    # Every helper is busy on another caller's job, so this call's entry in the pool's queue waits
    # there after the caller has done every item and returned: it must not keep the call's arrays.
    import weakref

    started, go = [], threading.Event()

    def blocking(i, scratch):
        started.append(i)
        go.wait(10)

    other = threading.Thread(target=_workers.map_items, args=([(i,) for i in range(8)], blocking, 8))
    other.start()
    try:
        _until(lambda: len(started) == 8, "the helpers did not all start")
        big = np.ones(1000)
        _workers.map_items([(0,), (1,)], lambda i, scratch, big=big: big.sum(), 2)
        gone = weakref.ref(big)
        del big
        assert gone() is None
    finally:
        go.set()
        other.join()


@pytest.fixture
def idle_spin():
    """``idle_spin(wait)``: the pool's helpers call ``wait`` out of work in this test."""
    previous = _workers._idle_spin, _workers._leave_wait
    yield _workers.set_idle_spin
    _workers.set_idle_spin(*previous)


def test_a_helper_out_of_work_spins_on_the_post_count_then_sleeps(idle_spin):
    # The spin gets the pool's count of posts and the value it had before the helper looked for
    # work, and the count of helpers gone from the job it left; returning False sends the helper
    # to sleep, and the next post wakes it as before.
    seen = []
    idle_spin(lambda posts, value, gone: seen.append((posts, value)) or False)
    items, work = _both()  # the helper joins each job
    for _ in range(3):
        _workers.map_items(items, work, 2)
    _until(lambda: len(seen) >= 3, "the helper never spun out of work")
    pool = _workers._the_pool()
    assert len(seen) >= 3 and all(posts is pool.posts for posts, _ in seen)
    assert all(value <= pool.posts[0] for _, value in seen)


def test_a_job_posted_while_helpers_spin_is_taken_and_none_is_lost(idle_spin):
    spin = pytest.importorskip("fastconv.backends._numba_spin")
    if not spin.AVAILABLE:
        pytest.skip("the spin is x86-64 only")
    idle_spin(*spin.spinner())
    items, work = _both()
    for i in range(200):  # back to back: each job is posted while the helper spins, or after it slept
        got = _workers.map_items(items, work, 2)
        assert got is None, i
        if i % 50 == 49:
            time.sleep(2 * spin.SPIN_S)  # and after a spin that ran out


needs_affinity = pytest.mark.skipif(
    _workers._read_cpu is None or len(getattr(os, "sched_getaffinity", lambda pid: ())(0)) < 2,
    reason="needs sched_getcpu, sched_setaffinity and two CPUs")


@pytest.fixture
def masks(monkeypatch):
    """``(calls, allowed, here, there)``: the masks this thread sets (recorded, then set), its
    allowed CPUs, the one it runs on, another; its CPU then read as ``here``, then ``there``."""
    calls = []
    real = os.sched_setaffinity
    me = threading.get_ident()  # (a pool thread of an earlier test may still set its own mask meanwhile)
    monkeypatch.setattr(os, "sched_setaffinity",
                        lambda pid, mask: (threading.get_ident() == me and calls.append(set(mask)), real(pid, mask)))
    allowed = os.sched_getaffinity(0)
    here = _workers._cpu()
    there = min(allowed - {here})
    reads = iter([here, there])  # where it woke, then where the mask sent it
    monkeypatch.setattr(_workers, "_read_cpu", lambda: next(reads))
    return calls, allowed, here, there


@needs_affinity
def test_a_helper_that_wakes_on_a_cpu_of_its_job_moves_off_it_and_keeps_its_mask(monkeypatch, masks):
    # Linux may wake a helper on its caller's CPU (both idle a while): the helper leaves it with a
    # mask that excludes the CPUs the job's threads are on, then sets its mask back at once.
    calls, allowed, here, there = masks
    cpus = {here}
    _workers._apart(cpus)
    assert calls == [allowed - {here}, allowed]
    assert os.sched_getaffinity(0) == allowed
    assert cpus == {here, there}  # its own CPU added: a third thread keeps off both
    monkeypatch.setattr(_workers, "_read_cpu", lambda: here)
    calls.clear()
    _workers._apart({-5})  # on none of the job's CPUs: no system call
    assert calls == []


@needs_affinity
def test_a_helper_stays_where_it_is_when_no_other_cpu_is_allowed_or_the_mask_cannot_be_set(monkeypatch):
    allowed = os.sched_getaffinity(0)
    cpus = set(allowed)
    _workers._apart(cpus)  # every allowed CPU taken: nowhere to go
    assert os.sched_getaffinity(0) == allowed

    def refused(pid, mask):
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(os, "sched_setaffinity", refused)
    cpus = {_workers._cpu()}
    _workers._apart(cpus)  # a cpuset changed meanwhile: the helper runs on where it is
    assert os.sched_getaffinity(0) == allowed


@needs_affinity
def test_a_thread_that_lands_on_another_thread_s_cpu_mid_call_moves_off_it(monkeypatch, masks):
    # Woken mid-item (the GIL, a Shared wait) beside its waker, a job's thread moves off the CPU
    # another of its threads was last seen on, then sets its mask back; elsewhere, no system call.
    calls, allowed, here, there = masks
    job = types.SimpleNamespace(where={-1: here})  # another thread (ident -1) last seen here
    monkeypatch.setattr(_workers._running, "job", job, raising=False)
    _workers.keep_apart()
    assert calls == [allowed - {here}, allowed]
    assert os.sched_getaffinity(0) == allowed
    assert job.where == {-1: here, threading.get_ident(): there}
    calls.clear()
    monkeypatch.setattr(_workers, "_read_cpu", lambda: there)
    _workers.keep_apart()  # apart already
    monkeypatch.setattr(_workers._running, "job", None)
    _workers.keep_apart()  # outside a job's items
    assert calls == []


def test_every_thread_of_a_job_is_seen_where_it_runs_and_no_item_is_left_with_the_job():
    seen = []

    def item(i, scratch):
        job = _workers._running.job
        _workers.map_items([(0,), (1,)], lambda j, inner: None, 2)  # a job of its own inside the item
        _workers.keep_apart()
        seen.append((job, _workers._running.job))
    _workers.map_items([(i,) for i in range(8)], item, 2)
    assert len(seen) == 8 and all(job is not None and after is job for job, after in seen)
    assert threading.get_ident() in seen[0][0].where
    assert getattr(_workers._running, "job", None) is None  # the caller's, cleared with the call


@pytest.fixture
def fresh_pool(monkeypatch, idle_spin):
    """A pool of its own whose helpers sleep at once when out of work (no spin)."""
    idle_spin(None)
    pool = _workers._Pool()
    monkeypatch.setattr(_workers, "_pool", pool)
    return pool


@needs_affinity
def test_a_sleeping_helper_is_woken_off_the_posters_cpu_and_then_has_its_own_mask_again(fresh_pool):
    # Linux may wake a sleeping helper on its waker's CPU and leave it queued there: the poster
    # narrows its mask to the other allowed CPUs first, and the helper sets its own back once it runs.
    allowed = os.sched_getaffinity(0)
    _workers.map_items(*_both(), 2)
    _until(lambda: fresh_pool.asleep[0], "the helper never slept")
    tid, here = fresh_pool.tids[0], _workers._cpu()
    fresh_pool._steer(0, here)
    fresh_pool._steer(0, here)  # steered twice before it ran: its own mask is still the one kept
    assert os.sched_getaffinity(tid) == allowed - {here}
    assert fresh_pool.masks[0] == allowed
    _workers.map_items(*_both(), 2)  # it joins (the barrier), having set its mask back first
    assert fresh_pool.masks[0] is None
    assert os.sched_getaffinity(tid) == allowed
    fresh_pool._steer(0, -1)  # where the CPU cannot be read: no system call, no mask kept
    assert fresh_pool.masks[0] is None


@needs_affinity
def test_a_helper_is_not_steered_where_its_mask_allows_no_other_cpu_or_cannot_be_set(fresh_pool, monkeypatch):
    _workers.map_items(*_both(), 2)
    _until(lambda: fresh_pool.asleep[0], "the helper never slept")
    tid, here = fresh_pool.tids[0], _workers._cpu()
    own = os.sched_getaffinity(tid)
    with monkeypatch.context() as patch:
        patch.setattr(os, "sched_getaffinity", lambda pid: {here})  # a cpuset of one CPU: nowhere to go
        fresh_pool._steer(0, here)
    assert fresh_pool.masks[0] is None

    def refused(pid, mask):
        raise OSError(22, "Invalid argument")
    with monkeypatch.context() as patch:
        patch.setattr(os, "sched_setaffinity", refused)  # a cpuset changed meanwhile: it stays
        fresh_pool._steer(0, here)
    assert fresh_pool.masks[0] is None  # nothing narrowed, nothing to set back
    _workers.map_items(*_both(), 2)  # it runs, its mask as it was
    assert os.sched_getaffinity(tid) == own and fresh_pool.masks[0] is None


@needs_affinity
def test_a_helper_that_missed_a_job_is_steered_when_the_next_is_posted(fresh_pool, monkeypatch):
    steered = []
    _workers.map_items(*_both(), 2)
    assert fresh_pool.missed is False  # it took part
    _until(lambda: fresh_pool.asleep[0], "the helper never slept")
    fresh_pool.asleep[0] = False  # as if running: only a missed job has it steered now
    monkeypatch.setattr(fresh_pool, "_steer", lambda i, cpu: steered.append(i))
    post = fresh_pool.post
    monkeypatch.setattr(fresh_pool, "post", lambda job, helpers: None)  # no helper sees the job
    _workers.map_items([(0,), (1,)], lambda i, scratch: None, 2)
    assert fresh_pool.missed is True and steered == []
    monkeypatch.setattr(fresh_pool, "post", post)
    _workers.map_items(*_both(), 2)
    assert steered == [0] and fresh_pool.missed is False


def test_jobs_run_where_the_cpu_cannot_be_read(monkeypatch):
    monkeypatch.setattr(_workers, "_read_cpu", None)
    assert _workers._cpu() == -1
    got = _workers.map_items([(i,) for i in range(6)], lambda i, scratch: None, 2)
    assert got is None


def test_the_spin_returns_when_the_count_moves_and_gives_up_after_spin_s():
    spin = pytest.importorskip("fastconv.backends._numba_spin")
    if not spin.AVAILABLE:
        pytest.skip("the spin is x86-64 only")
    wait = spin.spinner()[1]
    posts = np.zeros(1, np.int64)
    start = time.perf_counter()
    assert wait(posts, 0) is False
    took = time.perf_counter() - start
    assert 0.5 * spin.SPIN_S <= took < 0.5  # roughly SPIN_S; generous for a loaded machine
    posts[0] = 1
    assert wait(posts, 0) is True
    later = threading.Timer(0.0002, lambda: posts.__setitem__(0, 2))
    later.start()
    assert wait(posts, 1) in (True, False)  # moved within the spin, or the timer thread was late
    later.join()
    assert wait(posts, 1) is True


def test_a_helper_counts_itself_gone_once_out_of_the_gil_and_the_caller_sees_it():
    # The idle spin adds one to the count of the job the helper left (compiled, the GIL released),
    # then spins on the post count; the caller's leave_wait returns once that count moves.
    spin = pytest.importorskip("fastconv.backends._numba_spin")
    if not spin.AVAILABLE:
        pytest.skip("the spin is x86-64 only")
    wait, leave_wait = spin.spinner()
    posts, gone = np.zeros(1, np.int64), np.zeros(1, np.int64)
    assert wait(posts, 1, gone) is True and gone[0] == 1  # the count moved; the posts had too
    assert leave_wait(gone, 1) is False and leave_wait(gone, 0) is True
    helper = threading.Thread(target=wait, args=(posts, 0, gone))
    helper.start()
    assert leave_wait(gone, 1) in (True, False)  # the helper added within the spin, or started late
    posts[0] = 1
    helper.join()
    assert gone[0] == 2
