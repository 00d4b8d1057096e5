"""fastconv.set_num_threads / get_num_threads / threads: a process-wide default, a per-thread
override, cores shared among concurrent calls, BLAS switched only while im2col's calls run."""

import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastconv
from fastconv import _threads, _workers
from fastconv.backends import im2col
from fastconv.geometry import Geometry


def _blas_threads():
    """Thread counts of numpy's BLAS (torch or scipy may load others, which fastconv never uses):
    the one in numpy's wheel, else every BLAS loaded."""
    blas = {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
    wheel = {path: n for path, n in blas.items() if "numpy" in path}
    return wheel or blas


@pytest.fixture(autouse=True)
def _restore():
    yield
    fastconv.set_num_threads(None)


@pytest.fixture
def blas_at_3():
    """BLAS at 3 threads during the test (an unusual count, so that a stray 1 or default shows)."""
    with threadpool_limits(limits=3, user_api="blas"):
        yield


def _in_threads(*targets, timeout=30):
    """Run each target in a thread of its own; re-raise the first failure here."""
    errors = []

    def run(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001  (reported in the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def test_default_is_all_cores():
    assert _threads.requested() is None
    assert fastconv.get_num_threads() == _threads._all_cores() >= 1


def test_set_and_get_leave_blas_alone():
    blas_before = _blas_threads()
    fastconv.set_num_threads(1)
    assert fastconv.get_num_threads() == 1 and _threads.requested() == 1
    assert _blas_threads() == blas_before  # process-wide: only im2col's calls switch it, and back
    fastconv.set_num_threads(None)
    assert fastconv.get_num_threads() == _threads._all_cores()


def test_set_num_threads_is_seen_by_every_thread():
    fastconv.set_num_threads(1)
    seen = []
    _in_threads(lambda: seen.append(fastconv.get_num_threads()))
    assert seen == [1]


def test_context_manager_nests_and_restores():
    blas_before = _blas_threads()
    with fastconv.threads(1):
        assert fastconv.get_num_threads() == 1
        with fastconv.threads(2):
            assert fastconv.get_num_threads() == 2
        assert fastconv.get_num_threads() == 1
    assert _threads.requested() is None
    assert _blas_threads() == blas_before


def test_block_overrides_the_default_in_its_thread_only():
    fastconv.set_num_threads(3)
    with fastconv.threads(1):
        assert fastconv.get_num_threads() == 1
        fastconv.set_num_threads(2)  # the default changes; this block still decides here
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() == 2


def test_context_manager_restores_on_error():
    with pytest.raises(KeyError):
        with fastconv.threads(1):
            raise KeyError
    assert _threads.requested() is None


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                      ("2", TypeError)])
def test_bad_counts_are_rejected(bad, exc):
    with pytest.raises(exc, match=r"set_num_threads: `n` must be a positive int or None; got"):
        fastconv.set_num_threads(bad)
    with pytest.raises(exc, match=r"threads: `n` must be a positive int or None; got"):
        with fastconv.threads(bad):
            pass
    assert _threads.requested() is None


def test_setting_threads_does_not_import_numba():
    code = "import sys, fastconv; fastconv.set_num_threads(1); print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_numba_already_imported_follows_the_setting():
    nb = pytest.importorskip("numba")
    before = nb.get_num_threads()
    with fastconv.threads(1):
        assert nb.get_num_threads() == 1
    assert nb.get_num_threads() == before


# --------------------------------------------------- the repros (#15 item 3), one each

def test_overlapping_blocks_in_two_threads_each_see_their_own_count():
    # Before: one process-wide setting; the block that closed last restored the other's count,
    # leaving the setting at 1 for good.
    one_in, two_in, one_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with fastconv.threads(1):
            one_in.set()
            two_in.wait(10)
            seen["first, second inside"] = fastconv.get_num_threads()
        one_out.set()
        seen["first, after"] = _threads.requested()

    def second():
        one_in.wait(10)
        with fastconv.threads(2):
            two_in.set()
            one_out.wait(10)
            seen["second, first gone"] = fastconv.get_num_threads()
        seen["second, after"] = _threads.requested()

    _in_threads(first, second)
    assert seen == {"first, second inside": 1, "second, first gone": 2, "first, after": None, "second, after": None}
    assert _threads.requested() is None and fastconv.get_num_threads() == _threads._all_cores()


def test_a_block_while_another_thread_runs_im2col_leaves_blas_alone(blas_at_3):
    # Before: `threads(2)` captured the 1 that a concurrent im2col call had set and restored it.
    geom = Geometry.from_args((8, 8, 16, 16), (8, 8, 3, 3), padding=1)
    x, w = np.ones(geom.x_shape, np.float32), np.ones(geom.w_shape, np.float32)
    stop = threading.Event()

    def compute():
        while not stop.is_set():
            im2col.forward(x, w, geom)

    def blocks():
        try:
            for _ in range(200):
                with fastconv.threads(2):
                    pass
        finally:
            stop.set()

    _in_threads(compute, blocks)
    assert set(_blas_threads().values()) == {3}


def test_a_numba_thread_keeps_its_count_while_another_is_inside_threads_1():
    # Before: the numba backend read the process-wide 1 and kept it (21.5 -> 51.6 ms per call).
    nb = pytest.importorskip("numba")
    before = nb.get_num_threads()
    x, w = np.ones((2, 16, 32, 32), np.float32), np.ones((16, 16, 3, 3), np.float32)  # above SERIAL_MAX_MACS
    inside, done = threading.Event(), threading.Event()

    def holder():
        with fastconv.threads(1):
            inside.set()
            done.wait(20)

    def numba_user():
        try:
            inside.wait(10)
            assert _threads.requested() is None
            fastconv.conv2d(x, w, padding=1, backend="numba")
            assert nb.get_num_threads() == before
        finally:
            done.set()

    _in_threads(holder, numba_user)
    fastconv.conv2d(x, w, padding=1, backend="numba")
    assert nb.get_num_threads() == before


def test_concurrent_calls_share_the_cores(monkeypatch):
    # k user threads calling at once (dask's threaded scheduler) get about cores/k threads each.
    geom = Geometry.from_args((16, 8, 16, 16), (8, 8, 3, 3), padding=1)
    x, w = np.ones(geom.x_shape, np.float32), np.ones(geom.w_shape, np.float32)
    want = im2col.forward(x, w, geom)
    arrived = threading.Barrier(2, timeout=10)

    def four_cores():  # reached by each call once it is counted: both are, past the barrier
        arrived.wait()
        return 4

    monkeypatch.setattr(_threads, "_all_cores", four_cores)
    planned = []
    original = _workers._map

    def spy(items, work, threads, *rest):
        planned.append((_threads.call_threads(), threads))
        arrived.wait()  # neither call ends before the other has counted the calls in progress
        return original(items, work, threads, *rest)

    monkeypatch.setattr(_workers, "_map", spy)
    results = []
    _in_threads(*[lambda: results.append(im2col.forward(x, w, geom))] * 2)
    assert sorted(planned[-2:]) == [(2, 2), (2, 2)]
    assert all(np.array_equal(r, want) for r in results)


def test_call_threads_counts_calls_in_progress(monkeypatch):
    monkeypatch.setattr(_threads, "_all_cores", lambda: 6)
    assert _threads.call_threads() == 6
    monkeypatch.setitem(_threads._calls, -1, None)  # another thread's call in progress
    monkeypatch.setitem(_threads._calls, -2, None)
    assert _threads.call_threads() == 2  # a call starting now would be the third
    with fastconv.threads(5):
        assert _threads.call_threads() == 5  # a count asked for is a count given


def test_a_call_keeps_its_count_while_others_start(monkeypatch):
    monkeypatch.setattr(_threads, "_all_cores", lambda: 4)
    seen = []

    @_threads.counted_call
    def call():
        seen.append(_threads.call_threads())
        _threads._calls[-1] = None  # another call starts meanwhile
        try:
            seen.append(_threads.call_threads())
        finally:
            del _threads._calls[-1]

    call()
    assert seen == [4, 4] and not _threads._calls


# ------------------------------------------------------------------- single_threaded_blas

def test_single_threaded_blas_restores_the_count_it_found(blas_at_3):
    with _threads.single_threaded_blas():
        assert set(_blas_threads().values()) == {1}
    assert set(_blas_threads().values()) == {3}
    with _threads.single_threaded_blas(active=False):
        assert set(_blas_threads().values()) == {3}


def test_overlapping_single_threaded_blocks_restore_once_the_last_one_ends(blas_at_3):
    # Calls from two user threads overlap: the first out must not restore under the second,
    # nor the second restore the first's "1" for good. Each thread opens and closes its own block.
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with _threads.single_threaded_blas():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with _threads.single_threaded_blas():
            second_in.set()
            first_out.wait(10)
            seen["after the first left"] = set(_blas_threads().values())

    _in_threads(first, second)
    assert seen == {"after the first left": {1}}
    assert set(_blas_threads().values()) == {3}


def test_nested_blocks_restore_at_the_outer_exit(blas_at_3):
    with _threads.single_threaded_blas():
        with _threads.single_threaded_blas():
            assert set(_blas_threads().values()) == {1}
        assert set(_blas_threads().values()) == {1}
    assert set(_blas_threads().values()) == {3}


def test_im2col_on_one_thread_keeps_blas_to_one_thread_and_restores_it(blas_at_3, monkeypatch):
    seen = []
    original = _workers._map

    def spy(items, work, threads, *rest):
        seen.append(set(_blas_threads().values()))
        return original(items, work, threads, *rest)

    monkeypatch.setattr(_workers, "_map", spy)
    geom = Geometry.from_args((1, 4, 8, 8), (4, 4, 3, 3), padding=1)
    with fastconv.threads(1):
        im2col.forward(np.ones(geom.x_shape), np.ones(geom.w_shape), geom)
    assert seen == [{1}]
    assert set(_blas_threads().values()) == {3}


def test_uncapped_kept_scratch_returns_its_last_view_again():
    # the numba backend's workspaces: the same view while shape and dtype repeat, a new one otherwise
    _workers.drop_kept()
    a = _workers.kept("u", (16,), np.float32, capped=False)
    assert _workers.kept("u", (16,), np.float32, capped=False) is a
    b = _workers.kept("u", (8,), np.float32, capped=False)
    assert b is not a and b.shape == (8,) and np.shares_memory(a, b)
    c = _workers.kept("u", (64,), np.float64, capped=False)  # grown
    assert c.dtype == np.float64 and not np.shares_memory(a, c)
    _workers.drop_kept()
    assert _workers.kept("u", (64,), np.float64, capped=False) is not c
    _workers.drop_kept()


def test_kept_scratch_is_reused_per_thread_and_bounded(monkeypatch):
    """``kept`` scratch: the same memory on this thread's next call when it fits (grown when not),
    another thread's own, sizes past KEPT_MAX_BYTES made afresh, and ``drop_kept`` frees it."""
    _workers.drop_kept()
    a = _workers.kept("t", (4, 8), np.float32)
    assert a.shape == (4, 8) and a.dtype == np.float32 and a.ctypes.data % 64 == 0
    b = _workers.kept("t", (3, 2), np.float64)  # 48 bytes fit in the 128 kept
    assert np.shares_memory(a, b)
    c = _workers.kept("t", (64,), np.float64)  # 512 bytes: grown
    assert not np.shares_memory(a, c) and np.shares_memory(c, _workers.kept("t", (64,), np.float64))
    other = []
    thread = threading.Thread(target=lambda: other.append(_workers.kept("t", (64,), np.float64)))
    thread.start()
    thread.join()
    assert not np.shares_memory(c, other[0])
    monkeypatch.setattr(_workers, "KEPT_MAX_BYTES", 256)
    big = _workers.kept("t", (64,), np.float64)
    assert not np.shares_memory(c, big) and not np.shares_memory(big, _workers.kept("t", (64,), np.float64))
    _workers.drop_kept()
    assert not np.shares_memory(c, _workers.kept("t", (8,), np.float64))
    _workers.drop_kept()


def test_map_items_scratch_is_kept_between_calls_per_work():
    """A thread's buffers from one call serve its next call of the same work, in any dtype, and
    each work keeps its own (a training step's passes); but within one call, a work that makes
    buffers frees those other works made in that call (the call's scratch stays in its budget)."""
    _workers.drop_kept()
    seen = []

    def work(i, scratch):
        seen.append(_workers.buffer(scratch, "v", (1024,), np.float32))

    def other(i, scratch):
        seen.append(_workers.buffer(scratch, "v", (512,), np.float64))

    def calls(*runs):
        for run in runs:
            with _threads.one_call():
                _workers.map_items([(0,)], run, 1)
        return [v.ctypes.data for v in seen[-len(runs):]]

    first, again = calls(work, work)
    assert again == first
    mine, theirs, mine_again, theirs_again = calls(work, other, work, other)
    assert mine == first and theirs != first and (mine_again, theirs_again) == (mine, theirs)
    with _threads.one_call():  # both in one call: the second frees the first's, which it made
        _workers.drop_kept()
        _workers.map_items([(0,)], work, 1)
        _workers.map_items([(0,)], other, 1)
    made, theirs = seen[-2:]
    assert calls(other)[0] == theirs.ctypes.data and calls(work)[0] != made.ctypes.data  # (made is alive)
    _workers.drop_kept()
    calls(other)
    assert not np.shares_memory(seen[-1], theirs)
    _workers.drop_kept()


def test_a_second_warm_call_allocates_no_scratch():
    """winograd's products' buffers (16 MiB a thread at N=32 C=512 7x7) and its transformed kernel
    come back from the last call: freed and made afresh, their pages went back to the kernel,
    which zeroed them again on every call."""
    pytest.importorskip("numba")
    from fastconv.backends import winograd
    from tests.oracle import extra_bytes
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 64, 8, 8)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    def call():  # one thread: a helper that joins no item of a call makes its scratch in a later one
        with fastconv.threads(1):
            return fastconv.conv2d(x, w, padding=1, backend="winograd")
    winograd.warmup(np.float32)  # (else the first calls may run the direct fallback)
    cold, _ = extra_bytes(call)  # scratch dropped first
    assert cold > 256 * 2**10
    import tracemalloc
    call()
    tracemalloc.start()
    try:
        got = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - got.nbytes < cold / 4, (peak - got.nbytes, cold)


def test_zeroed_scratch_is_zeroed_in_every_job():
    """A zeroed buffer is made in each job: the kept one of that name, from an earlier call's work,
    holds that call's values (im2col's padded copies rely on the zeros their own layout left)."""
    _workers.drop_kept()

    def dirty(i, scratch):
        _workers.buffer(scratch, "xp", (64,), np.float32)[:] = 7

    def clean(i, scratch):
        first = not _workers.zeroed(scratch, "xp")
        xp = _workers.buffer(scratch, "xp", (64,), np.float32, zeros=True)
        if first:
            assert not xp.any()
        xp[:] = 1

    for work in (dirty, clean, dirty, clean, clean):
        _workers.map_items([(i,) for i in range(4)], work, 2)
    for work in (dirty, clean):  # the same code both times: zeroed buffers are still not kept
        _workers.map_items([(0,)], lambda i, scratch, work=work: work(i, scratch), 1)


def test_scratch_is_not_kept_after_a_failed_job_nor_where_the_caller_holds_memory():
    """A job cut short (here an exception; an interrupt anywhere in the same way) leaves no
    scratch behind; a job whose caller holds memory beside its calls (``holding``: its share of
    the budget assumes the calls' scratch freed) neither uses the kept scratch nor keeps its own;
    a job inside an item gets its own."""
    _workers.drop_kept()
    made = []

    def work(fail, scratch):
        made.append(_workers.buffer(scratch, "v", (256,), np.float32))
        if fail:
            raise ValueError("item")

    _workers.map_items([(False,)], work, 1)
    with pytest.raises(ValueError):
        _workers.map_items([(True,)], work, 1)
    _workers.map_items([(False,)], work, 1)
    same = np.shares_memory
    assert same(made[1], made[0]) and not same(made[2], made[0])
    with _workers.holding(1):
        _workers.map_items([(False,)], work, 1)
    _workers.map_items([(False,)], work, 1)
    assert not same(made[3], made[2]) and not same(made[4], made[3]) and not same(made[4], made[2])

    def outer(i, scratch):
        made.append(_workers.buffer(scratch, "v", (256,), np.float32))
        _workers.map_items([(False,)], work, 1)
    made.clear()
    _workers.map_items([(0,)], outer, 1)
    assert not same(made[0], made[1])
    _workers.drop_kept()


def test_compiled_items_leave_blas_alone_and_get_no_scratch(blas_at_3):
    """``map_items(..., compiled=True)`` (numba's slot kernels): BLAS keeps its count, the items get
    no scratch, every item runs once on two threads, and an item's exception still reaches the
    caller."""
    seen, blas = [], []

    def work(i, scratch):
        assert scratch is None
        blas.append(set(_blas_threads().values()))
        seen.append(i)

    with fastconv.threads(2):
        _workers.map_items([(i,) for i in range(16)], work, 2, compiled=True)
    assert sorted(seen) == list(range(16)) and blas and all(b == {3} for b in blas)

    def fails(i, scratch):
        if i == 5:
            raise ValueError("item 5")

    with fastconv.threads(2), pytest.raises(ValueError, match="item 5"):
        _workers.map_items([(i,) for i in range(8)], fails, 2, compiled=True)
