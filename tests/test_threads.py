"""fastconv.set_num_threads / get_num_threads / threads: one setting for Numba and BLAS."""

import subprocess
import sys
import threading

import pytest
from threadpoolctl import threadpool_info

import fastconv
from fastconv import _threads


def _blas_threads():
    return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def _restore():
    yield
    fastconv.set_num_threads(None)


def test_default_is_all_cores():
    assert _threads.requested() is None
    assert fastconv.get_num_threads() == _threads._all_cores() >= 1


def test_set_and_get():
    fastconv.set_num_threads(1)
    assert fastconv.get_num_threads() == 1 and _threads.requested() == 1
    assert set(_blas_threads().values()) <= {1}
    fastconv.set_num_threads(None)
    assert fastconv.get_num_threads() == _threads._all_cores()


def test_context_manager_restores_blas_and_setting():
    blas_before = _blas_threads()
    with fastconv.threads(1):
        assert fastconv.get_num_threads() == 1
        assert set(_blas_threads().values()) <= {1}
        with fastconv.threads(2):
            assert fastconv.get_num_threads() == 2
        assert fastconv.get_num_threads() == 1
    assert _threads.requested() is None
    assert _blas_threads() == blas_before


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


def test_single_threaded_blas_restores_the_count_it_found():
    fastconv.set_num_threads(3)
    with _threads.single_threaded_blas():
        assert set(_blas_threads().values()) == {1}
    assert set(_blas_threads().values()) == {3}
    with _threads.single_threaded_blas(active=False):
        assert set(_blas_threads().values()) == {3}


def test_overlapping_single_threaded_blocks_restore_once_the_last_one_ends():
    # Calls from two user threads overlap: the first out must not restore under the second,
    # nor the second restore the first's "1" for good. Each thread opens and closes its own block.
    fastconv.set_num_threads(3)
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

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"after the first left": {1}}
    assert set(_blas_threads().values()) == {3}


def test_nested_blocks_restore_at_the_outer_exit():
    fastconv.set_num_threads(3)
    with _threads.single_threaded_blas():
        with _threads.single_threaded_blas():
            assert set(_blas_threads().values()) == {1}
        assert set(_blas_threads().values()) == {1}
    assert set(_blas_threads().values()) == {3}
