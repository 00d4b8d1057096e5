"""Forked children and concurrent threads (issue 15, item 1).

Numba's GNU OpenMP layer killed a child forked after any numba or auto call ("fork() called from a
process already using GNU OpenMP") and hung multiprocessing.Pool; the workqueue layer aborts when
two threads launch kernels at once. Each scenario runs in a fresh interpreter (no torch loaded, a
known threading layer), under a timeout so that a hang fails instead of stalling the suite.
"""

import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")
pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")

# Above numba_jit.SERIAL_MAX_MACS (2M), so that the kernels launch the threading layer's workers.
_SETUP = """
    import multiprocessing, threading
    import numpy as np
    import fastconv as fc
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 16, 32, 32)).astype(np.float32)
    want = fc.conv2d(x, w, padding=1, backend="reference")
    want_gw = fc.conv2d_backward(gy, x, w, padding=1, backend="reference").weight

    def err(backend):
        y = fc.conv2d(x, w, padding=1, backend=backend)
        gw = fc.conv2d_backward(gy, x, w, padding=1, backend=backend).weight
        return float(max(abs(y - want).max(), abs(gw - want_gw).max() / 10))
"""


def _run(code: str, env=None, timeout=180) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_SETUP) + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


LAYERS = [pytest.param({}, id="default-layer"),
          pytest.param({"NUMBA_THREADING_LAYER": "workqueue"}, id="workqueue")]


@pytest.mark.parametrize("env", LAYERS)
def test_fork_pool_after_numba_im2col_and_auto_calls(env):
    out = _run("""
        for backend in ("numba", "im2col", "auto"):
            assert err(backend) < 1e-3
        # maxtasksperchild=1: the replacement workers are forked from the pool's handler thread
        with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
            errors = pool.map_async(err, ["numba", "auto", "im2col", "numba"], chunksize=1).get(timeout=120)
        import numba
        print(max(errors), numba.threading_layer())
    """, env)
    error, layer = out.split()
    assert float(error) < 1e-3
    assert layer == env.get("NUMBA_THREADING_LAYER", layer) and layer != "omp"


@pytest.mark.parametrize("env", LAYERS)
def test_concurrent_numba_calls_from_several_threads(env):
    """As dask's threaded scheduler does: every result is the one-thread-at-a-time result, bit for bit."""
    out = _run("""
        results, errors = [], []
        def worker():  # the first numba calls of the process start in all four threads at once
            for _ in range(15):
                results.append(fc.conv2d(x, w, padding=1, backend="numba"))
                errors.append(err("numba"))
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        alone = fc.conv2d(x, w, padding=1, backend="numba")
        print(sum(not np.array_equal(y, alone) for y in results) + sum(e > 1e-3 for e in errors), len(results))
    """, env)
    assert out.split() == ["0", "60"]


def test_fork_while_the_kernels_compile_in_the_background(tmp_path):
    """A fork during the background compile that `auto` starts (an empty cache): the child must
    neither inherit a held compiler lock nor wait for a compile thread it does not have."""
    out = _run("""
        fc.conv2d(x, w, padding=1)  # auto: starts compiling numba's kernels in the background
        with multiprocessing.get_context("fork").Pool(1) as pool:
            errors = pool.map_async(err, ["auto", "numba"], chunksize=1).get(timeout=150)
        print(max(errors))
    """, {"FASTCONV_CACHE_DIR": str(tmp_path)}, timeout=240)
    assert float(out) < 1e-3
