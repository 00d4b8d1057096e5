"""The numba backend beyond the shared suite: its code paths, NaN/inf, caching, numba absent.

The shared suite (test_against_torch.py) checks every parameter form against torch; here the
packed path, the direct loops' stride-1 "flat" path and its border-column repair get shapes chosen
to hit each case, and the process-level behaviour (on-disk cache, read-only install, numba
missing) runs in subprocesses.
"""

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastconv
from fastconv._precision import TOLERANCE
from fastconv.backends import reference
from fastconv.geometry import Geometry

nb = pytest.importorskip("numba")
numba_jit = fastconv.backends.get("numba")
ROOT = Path(__file__).resolve().parents[1]

# (x shape, w shape, hyper-parameters). Groups of 4+ output channels take the packed path, and so
# does the input gradient (as a transposed convolution) unless depthwise or both strided and
# dilated; the rest take the direct loops: stride 1 with ow == iw flat, else row by row.
SHAPES = [
    pytest.param((2, 5, 6, 7), (7, 5, 3, 3), dict(padding=((0, 2), (2, 0))), id="flat-left-pad"),
    pytest.param((2, 5, 6, 7), (9, 5, 3, 3), dict(padding=((2, 2), (4, 0)), dilation=2), id="flat-dil2"),
    pytest.param((2, 5, 6, 7), (9, 5, 3, 5), dict(padding=((1, 1), (3, 1))), id="flat-wide-kernel"),
    pytest.param((2, 5, 3, 3), (9, 5, 5, 7), dict(padding=((0, 4), (6, 0))), id="flat-kernel-wider-than-input"),
    pytest.param((3, 8, 14, 14), (16, 4, 3, 3), dict(padding=1, groups=2), id="flat-groups-cb-remainder"),
    pytest.param((2, 6, 5, 5), (6, 6, 1, 1), {}, id="flat-1x1"),
    pytest.param((3, 8, 7, 7), (8, 1, 3, 3), dict(padding=1, groups=8), id="flat-depthwise"),
    pytest.param((2, 8, 9, 8), (12, 8, 3, 2), dict(stride=(2, 1), padding=((0, 2), (1, 3)), dilation=(2, 1)),
                 id="rows-stride-dil"),
    pytest.param((2, 8, 9, 8), (9, 8, 3, 2), dict(stride=(1, 3), padding=((3, 0), (0, 4))), id="rows-s13"),
    pytest.param((2, 5, 6, 7), (5, 5, 2, 3), {}, id="rows-valid"),
    pytest.param((2, 3, 9, 11), (8, 3, 3, 5), {}, id="rows-valid-k5"),
    pytest.param((2, 3, 13, 12), (9, 3, 7, 7), dict(stride=2, padding=3), id="rows-stem-k7s2"),
    pytest.param((1, 2, 5, 70), (4, 2, 3, 7), dict(stride=(1, 2), padding=3), id="rows-merged-taps-s2"),
    pytest.param((1, 2, 4, 40), (4, 2, 2, 5), {}, id="rows-merged-taps-valid"),
    pytest.param((1, 2, 9, 80), (5, 2, 3, 6), dict(stride=(1, 2), padding=((1, 0), (4, 1)), dilation=(1, 2)),
                 id="rows-merged-taps-dil"),
    pytest.param((1, 2, 4, 5), (5, 2, 4, 5), {}, id="kernel-eq-input"),
    # packed path: several bands of rows per image (wide rows), a transposed padding below zero
    # (cropped) in the input gradient, stride phases of an even kernel, one input channel
    pytest.param((1, 4, 6, 300), (5, 4, 3, 3), dict(padding=1), id="packed-row-blocks"),
    pytest.param((1, 2, 300, 3), (4, 2, 3, 3), dict(padding=1), id="packed-row-blocks-narrow"),
    pytest.param((1, 3, 100, 98), (5, 3, 3, 3), dict(padding=((1, 0), (2, 1))), id="packed-bands"),
    pytest.param((2, 3, 45, 98), (5, 3, 3, 3), dict(stride=2, padding=2, dilation=(2, 1)), id="packed-bands-s2"),
    pytest.param((2, 4, 5, 6), (4, 4, 3, 3), dict(padding=((3, 1), (0, 4))), id="packed-pad-over-kernel"),
    pytest.param((2, 3, 9, 10), (6, 3, 4, 4), dict(stride=2, padding=((1, 2), (0, 3))), id="packed-phases-k4s2"),
    pytest.param((3, 1, 12, 12), (6, 1, 5, 5), {}, id="packed-one-input-channel"),
]


def _inputs(xs, ws, kwargs, dtype, seed=0):
    geom = Geometry.from_args(xs, ws, **kwargs)
    rng = np.random.default_rng(seed)
    x, w, gy = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, geom.y_shape))
    return geom, x, w, gy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", SHAPES)
def test_kernels_match_reference(xs, ws, kwargs, dtype):
    geom, x, w, gy = _inputs(xs, ws, kwargs, dtype)
    tol = dict(rtol=TOLERANCE[np.dtype(dtype)], atol=TOLERANCE[np.dtype(dtype)])
    for got, want in [(numba_jit.forward(x, w, geom), reference.forward(x, w, geom)),
                      (numba_jit.grad_input(gy, w, geom), reference.grad_input(gy, w, geom)),
                      (numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom))]:
        assert got.dtype == dtype and got.flags.c_contiguous and got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("xs, ws, kwargs", [SHAPES[0], SHAPES[4], SHAPES[6], SHAPES[7]])
def test_nan_and_inf_in_x_propagate_like_reference(xs, ws, kwargs, value):
    """Every output reading a non-finite input is non-finite, and no other: the weight gradient's
    flat path subtracts stray products, and must not let that turn into NaN anywhere else."""
    geom, x, w, gy = _inputs(xs, ws, kwargs, np.float64)
    rng = np.random.default_rng(1)
    for _ in range(4):
        x[tuple(rng.integers(0, s) for s in x.shape)] = value
    with np.errstate(invalid="ignore"):  # inf - inf in the reference's sums: the NaN expected
        pairs = [(numba_jit.forward(x, w, geom), reference.forward(x, w, geom)),
                 (numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom))]
    for got, want in pairs:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", [
    ((2, 3, 9, 10), (6, 3, 4, 4), dict(stride=2, padding=((1, 2), (0, 3)))),  # phases of uneven sizes
    ((2, 4, 11, 13), (4, 1, 3, 3), dict(stride=(3, 2), padding=1, groups=4)),  # depthwise, stride 3 by 2
    ((1, 4, 1, 41), (6, 2, 1, 5), dict(stride=(1, 2), padding=(0, 2), groups=2)),  # 1-D: phases across only
    ((2, 2, 3, 3), (2, 2, 3, 3), dict(stride=2)),  # a phase of one pixel
], ids=["uneven", "depthwise-s32", "1d", "tiny"])
def test_strided_input_gradient_phases_put_in_place_together_or_one_by_one(monkeypatch, xs, ws, kwargs, dtype):
    # ``_interleave_part`` writes each line of gx once from the phases side by side; the same bits
    # as each phase's copy into its strided view (below ``INTERLEAVE_MIN_BYTES``)
    geom, x, w, gy = _inputs(xs, ws, kwargs, dtype)
    one_by_one = numba_jit.grad_input(gy, w, geom)
    monkeypatch.setattr(numba_jit, "INTERLEAVE_MIN_BYTES", 0)
    together = numba_jit.grad_input(gy, w, geom)
    np.testing.assert_array_equal(together, one_by_one)
    tol = TOLERANCE[np.dtype(dtype)]
    np.testing.assert_allclose(together, reference.grad_input(gy, w, geom), rtol=tol, atol=tol)
    with fastconv.threads(1):
        np.testing.assert_array_equal(numba_jit.grad_input(gy, w, geom), together)


def test_phases_side_by_side_fill_the_store_exactly():
    # ``phase_offset``: each phase starts where the one before it ends, and the last ends at gx's size
    planes, h, w, sh, sw = 6, 11, 7, 3, 2
    k = pytest.importorskip("fastconv.backends._numba_kernels")
    end = 0
    for ry in range(sh):
        for rx in range(sw):
            assert k.phase_offset(planes, h, w, sh, sw, ry, rx) == end
            end += planes * len(range(ry, h, sh)) * len(range(rx, w, sw))
    assert end == planes * h * w


def test_warmup_compiles_the_phases_interleave():
    # a first strided input gradient past ``INTERLEAVE_MIN_BYTES`` must not wait for a compile
    k = pytest.importorskip("fastconv.backends._numba_kernels")
    numba_jit.warmup(np.float32)
    before = len(k._interleave_part.signatures)
    assert before
    geom, x, w, gy = _inputs((1, 2, 7, 9), (2, 2, 3, 3), dict(stride=2, padding=1), np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_jit, "INTERLEAVE_MIN_BYTES", 0)
        numba_jit.grad_input(gy, w, geom)
    assert len(k._interleave_part.signatures) == before


def test_inputs_are_not_modified_and_outputs_are_new():
    geom, x, w, gy = _inputs((2, 4, 6, 6), (4, 4, 3, 3), dict(padding=1), np.float32)
    saved = [a.copy() for a in (x, w, gy)]
    outs = [numba_jit.forward(x, w, geom), numba_jit.grad_input(gy, w, geom), numba_jit.grad_weight(gy, x, geom)]
    for a, s in zip((x, w, gy), saved):
        np.testing.assert_array_equal(a, s)
    for out in outs:
        assert not any(np.shares_memory(out, a) for a in (x, w, gy))


def _python(code: str, env_extra=None, cwd=ROOT) -> str:
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


_TIMED_CALLS = """
    import time
    import numpy as np
    import fastconv
    x = np.ones((2, 3, 8, 8), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    def call():
        t = time.perf_counter()
        fastconv.conv2d(x, w, padding=1, backend="numba")
        fastconv.conv2d_backward(np.ones((2, 4, 8, 8), np.float32), x, w, padding=1, backend="numba")
        return time.perf_counter() - t
    first, second = call(), call()
    from fastconv.backends import _numba_kernels as k
    kernels = [f for f in vars(k).values() if hasattr(f, "stats")]
    hits = sum(sum(f.stats.cache_hits.values()) for f in kernels)
    misses = sum(sum(f.stats.cache_misses.values()) for f in kernels)
    print(first, second, hits, misses)
"""


def test_second_process_loads_kernels_from_the_disk_cache():
    """Compiling takes seconds; a later process loads the kernels from disk instead.

    Numba's own one-time start (``import numba``, its typing registries and, when SciPy is
    installed, a probe of SciPy's BLAS: about 0.6-0.9 s here) happens before the timed calls:
    every Numba program pays it, and what this checks is that no compilation is left in them.
    """
    _python("import numpy as np, fastconv; fastconv.backends.get('numba').warmup(np.float32)")  # fills it
    first, second, hits, misses = _python("\n    import numba; numba.njit(lambda: 0)()" + _TIMED_CALLS).split()
    assert int(hits) >= 2 and int(misses) == 0, "kernels were compiled again instead of loaded from the cache"
    assert float(first) - float(second) < 0.5, (first, second)


def test_without_the_cache_float32_kernels_use_no_float64():
    """FASTCONV_NUMBA_CACHE=0 compiles in memory (inspectable); a float64 literal in a float32
    kernel would appear as an fpext (float32 -> float64 conversion) in the LLVM IR."""
    out = _python("""
        import re
        import numpy as np
        from fastconv.backends import numba_jit, _numba_kernels as k
        numba_jit.warmup(np.float32)
        kernels = [f for f in vars(k).values() if hasattr(f, "inspect_llvm")]
        assert sum(sum(f.stats.cache_hits.values()) for f in kernels) == 0
        # Skip the wrappers that box a float32 result into a Python float for the interpreter.
        bodies = [fn for f in kernels for ir in f.inspect_llvm().values()
                  for fn in ir.split("\\ndefine ") if not re.match(r"[^@(]*@_ZN\\d*(cpython|cfunc)", fn)]
        print(len(kernels), sum("fpext" in fn for fn in bodies))
    """, {"FASTCONV_NUMBA_CACHE": "0"})
    n_kernels, with_fpext = map(int, out.split())
    assert n_kernels >= 3 and with_fpext == 0


def test_read_only_install_compiles_in_memory(tmp_path):
    """No writable cache anywhere (package dir, NUMBA_CACHE_DIR, user cache): still computes."""
    shutil.copytree(ROOT / "fastconv", tmp_path / "fastconv", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "fastconv" / "backends" / "__pycache__").write_text("")  # a file: no dir can go here
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    out = _python(f"""
        import numpy as np, fastconv
        assert fastconv.__file__.startswith({str(tmp_path)!r})
        y = fastconv.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), padding=1, backend="numba")
        print(y[0, 0, 2, 2])
    """, {"NUMBA_CACHE_DIR": str(blocked / "numba"), "HOME": str(blocked),
                          "XDG_CACHE_HOME": str(blocked), "PYTHONDONTWRITEBYTECODE": "1"}, cwd=tmp_path)
    assert float(out) == 18.0


def test_without_numba_the_backend_is_absent_and_the_rest_works():
    out = _python("""
        import sys
        sys.modules["numba"] = None  # makes `import numba` raise ImportError
        import numpy as np, fastconv
        assert "numba" not in fastconv.backends(), fastconv.backends()
        x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
        y = fastconv.conv2d(x, w, padding=1)
        g = fastconv.conv2d_backward(np.ones_like(y), x, w, padding=1)
        with fastconv.threads(1):
            fastconv.conv2d(x, w, padding=1)
        try:
            fastconv.conv2d(x, w, backend="numba")
        except ImportError as exc:
            print("ImportError", "numba" in str(exc))
        print(y[0, 0, 2, 2], g.weight.shape)
    """)
    assert out.split("\n")[:2] == ["ImportError True", "18.0 (3, 2, 3, 3)"]


def test_thread_count_is_honoured_by_the_kernels(monkeypatch):
    # The kernels are slots of work on fastconv's threads: as many slots as the call's count.
    x, w = np.ones((2, 16, 32, 32), np.float32), np.ones((16, 16, 3, 3), np.float32)  # above SERIAL_MAX_MACS
    seen = []
    original = numba_jit.map_items

    def spy(items, work, threads, total=None, compiled=False):
        seen.append(threads)
        return original(items, work, threads, total, compiled=compiled)

    monkeypatch.setattr(numba_jit, "map_items", spy)
    with fastconv.threads(1):
        fastconv.conv2d(x, w, padding=1, backend="numba")
        fastconv.conv2d_backward(np.ones((2, 16, 32, 32), np.float32), x, w, padding=1, backend="numba")
    assert seen == []  # one thread: the calling thread alone
    with fastconv.threads(2):
        fastconv.conv2d(x, w, padding=1, backend="numba")
    assert seen == [2]


def test_small_calls_run_on_the_calling_thread_and_restore_the_count():
    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    before = nb.get_num_threads()
    fastconv.conv2d(x, w, padding=1, backend="numba")
    assert nb.get_num_threads() == before


@pytest.mark.parametrize("where", ["w", "gy"])
@pytest.mark.parametrize("xs, ws, kwargs", [SHAPES[0], SHAPES[6], SHAPES[7],
                                            pytest.param((1, 4, 3, 600), (4, 4, 3, 1), dict(padding=(1, 0)),
                                                         id="columns-k3x1-long-rows")])
def test_nan_and_inf_meeting_padding_give_nan_like_reference(xs, ws, kwargs, where):
    """A non-finite weight (forward) or gy (weight gradient) times a zero of the padding is NaN in the
    reference and in torch's forward, although the kernels never read the padding."""
    geom, x, w, gy = _inputs(xs, ws, kwargs, np.float64)
    arr = w if where == "w" else gy
    arr[(0,) * arr.ndim] = np.inf  # a corner: its taps reach the padding
    arr[tuple(s - 1 for s in arr.shape)] = np.nan
    with np.errstate(invalid="ignore"):
        pairs = [(numba_jit.forward(x, w, geom), reference.forward(x, w, geom)),
                 (numba_jit.grad_input(gy, w, geom), reference.grad_input(gy, w, geom)),
                 (numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom))]
    for got, want in pairs:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("xs, ws, blind", [((1, 16, 3, 3), (16, 16, 3, 3), False), ((1, 4, 1, 1), (4, 4, 3, 3), True)])
def test_a_non_finite_weight_is_found_from_an_output_smaller_than_the_weight(xs, ws, blind):
    """Where y is the smaller, the forward scans it, not w, for the trace of a non-finite weight
    (``_not_finite``); a tap that reads only padding (1x1 image, 3x3 kernel) leaves no
    trace in y, so there w is scanned."""
    geom, x, w, _ = _inputs(xs, ws, dict(padding=1), np.float64)
    assert geom.has_blind_tap == blind and math.prod(geom.y_shape) < w.size
    w[0, 0, 0, 0] = np.inf  # the first row of taps: padding only on the 1x1 image
    w[-1, -1, 1, 1] = np.nan  # the centre tap: inside the input
    with np.errstate(invalid="ignore"):
        got, want = numba_jit.forward(x, w, geom), reference.forward(x, w, geom)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert not np.isfinite(want[0, 0]).any()  # the inf weight reached every output of its channel


@pytest.mark.parametrize("xs, ws, padding, blind", [((2, 2, 6, 6), (3, 2, 3, 3), 1, False),
                                                     ((1, 2, 2, 2), (3, 2, 3, 3), 3, True)])
def test_a_non_finite_gradient_is_found_from_a_weight_gradient_smaller_than_it(xs, ws, padding, blind):
    """The weight gradient's check (``_not_finite``), the forward's adjoint: gw scanned
    where it is the smaller, gy where a pixel's window lies in the padding alone (padding 3 on a
    2x2 image, 3x3 kernel: the corner pixels) and leaves no trace in gw."""
    geom, x, _, gy = _inputs(xs, ws, dict(padding=padding), np.float64)
    assert geom.has_blind_output == blind and gy.size > math.prod(ws)
    gy[0, 0, 0, 0] = np.inf  # the corner pixel: its window is all padding on the 2x2 image
    gy[-1, -1, 2, 2] = np.nan
    with np.errstate(invalid="ignore"):
        got, want = numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert not np.isfinite(want[0]).all()


def test_finite_values_whose_squares_overflow_put_no_nan_at_the_padding():
    """The finiteness check sums squares (``_all_finite``): 1e20 squared overflows float32, which
    sends the call down the exact path for non-finite values, and that path must find none."""
    geom, x, w, gy = _inputs((1, 2, 5, 5), (3, 2, 3, 3), dict(padding=1), np.float32)
    w[0, 0, 0, 0] = gy[0, 0, 0, 0] = 1e20
    with np.errstate(over="ignore"):  # as the public functions run it
        assert not numba_jit._all_finite(w)
        pairs = [(numba_jit.forward(x, w, geom), reference.forward(x, w, geom)),
                 (numba_jit.grad_weight(gy, x, geom), reference.grad_weight(gy, x, geom))]
    for got, want in pairs:
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=1), dict(padding=1, groups=8),
                                    dict(padding=2, dilation=2)])
def test_a_warm_call_allocates_nothing_in_its_kernels(threads, kwargs):
    # Packed weights, term offsets and every thread's band live in workspaces kept between calls;
    # the only Numba allocations left are the wrappers of each kernel's array arguments.
    from numba import njit
    from numba.core.runtime import _nrt_python, rtsys

    @njit
    def five_arrays(a, b, c, d, e):
        return a.size

    geom = Geometry.from_args((4, 8, 40, 40), (8, 8 // kwargs.get("groups", 1), 3, 3), **kwargs)
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (geom.x_shape, geom.w_shape, geom.y_shape))
    arrays = [np.ones(3)] * 5
    five_arrays(*arrays)
    # Array arguments wrapped per call: each kernel's (its arrays and the two workspaces), once for
    # a small call (the serial kernel), else once to prepare, once per slot of work and once to
    # finish, as ``_run_parts`` runs them (counted by a spy on it: the slots depend on the path)
    wrappers = []

    def spy(part, macs, *args, workspaces, prepare=None, serial=None, finish=None, pieces=1, budget=None):
        nthreads, nslots = numba_jit._slots(macs, pieces)
        if budget is not None:
            nthreads, nslots = numba_jit._within(workspaces, nthreads, pieces, budget)
        arrays = 2 + sum(isinstance(a, np.ndarray) for a in args)
        if nthreads == 1 and serial is not None:
            wrappers.append(arrays)
        else:
            wrappers.append(arrays * ((prepare is not None) + nslots + (finish is not None and nslots > 1)))
        return real_run(part, macs, *args, workspaces=workspaces, prepare=prepare, serial=serial, finish=finish,
                        pieces=pieces, budget=budget)

    real_run = numba_jit._run_parts
    calls = [(numba_jit.forward, (x, w, geom)), (numba_jit.grad_weight, (gy, x, geom)),
             (numba_jit.grad_input, (gy, w, geom))]
    _nrt_python.memsys_enable_stats()
    try:
        with fastconv.threads(threads):
            before = rtsys.get_allocation_stats().alloc
            five_arrays(*arrays)
            per_call = rtsys.get_allocation_stats().alloc - before  # the five arguments' wrappers
            assert per_call % 5 == 0
            for fn, args in calls:
                fn(*args)  # warm: compiled, workspaces grown
                wrappers.clear()
                before = rtsys.get_allocation_stats().alloc
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(numba_jit, "_run_parts", spy)
                    fn(*args)
                assert wrappers, fn.__name__
                assert rtsys.get_allocation_stats().alloc - before == sum(wrappers) * per_call // 5, fn.__name__
    finally:
        _nrt_python.memsys_disable_stats()


# -- first use: auto never waits for a compile; explicit calls say so; warmup ahead of time -------

_FIRST_AUTO = """
    import time
    import numpy as np
    import fastconv
    from fastconv.backends import numba_jit
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 3, 5, 5)).astype(np.float32)  # 5x5: a shape where auto's rule prefers numba
    start = time.perf_counter()
    y = fastconv.conv2d(x, w, padding=2)
    first = time.perf_counter() - start
    ok = np.allclose(y, fastconv.conv2d(x, w, padding=2, backend="reference"), rtol=1e-4, atol=1e-4)
    print(first, ok, fastconv.choose_backend(x.shape, w.shape, padding=2))
    deadline = time.perf_counter() + {wait}
    while not numba_jit.ready(np.float32) and time.perf_counter() < deadline:
        time.sleep(0.05)
    print(numba_jit.ready(np.float32), fastconv.choose_backend(x.shape, w.shape, padding=2))
"""


def test_first_auto_call_with_an_empty_cache_does_not_wait_for_the_compile(tmp_path):
    """Issue 13: under 1 s and correct, while numba compiles in the background."""
    first, second = _python(_FIRST_AUTO.format(wait=0), {"FASTCONV_CACHE_DIR": str(tmp_path)}).splitlines()
    seconds, ok, pick = first.split()
    assert float(seconds) < 1.0 and ok == "True" and pick != "numba"
    assert second.split()[0] == "False"  # still compiling: the exit waits for the kernel in progress only


_EXIT_DURING_COMPILE = """
    import atexit, threading
    import numpy as np

    def report():  # registered before fastconv's own handler, so it runs after it
        from fastconv.backends import numba_jit
        alive = [t.name for t in threading.enumerate() if "-compile-" in t.name and t.is_alive()]
        print(numba_jit.stopping(), "float32" in numba_jit._ready, alive)

    atexit.register(report)
    import fastconv
    # auto: starts numba's compile in the background; the process exits at once
    fastconv.conv2d(np.ones((8, 3, 32, 32), np.float32), np.ones((16, 3, 5, 5), np.float32), padding=2)
"""


def test_an_exit_during_the_background_compile_waits_for_its_current_kernel_only(tmp_path):
    """A process that exits while auto's background compile runs stops it after the kernel it is on
    (an exit with the thread still inside LLVM crashed: a segfault once, an LLVM assertion once):
    none is left running when the interpreter shuts down, and the later kernels are not compiled
    for nothing."""
    assert _python(_EXIT_DURING_COMPILE, {"FASTCONV_CACHE_DIR": str(tmp_path)}).split() == ["True", "False", "[]"]


def test_auto_switches_to_numba_once_its_kernels_are_loaded():
    _python("import numpy as np; from fastconv.backends import numba_jit; numba_jit.warmup(np.float32)")
    first, second = _python(_FIRST_AUTO.format(wait=60)).splitlines()
    assert first.split()[1] == "True"
    assert second.split() == ["True", "numba"]


_EXPLICIT = """
    import logging
    import numpy as np
    import fastconv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for _ in range(3):
        fastconv.conv2d(np.ones((1, 4, 6, 6), np.float32), np.ones((4, 4, 3, 3), np.float32), backend="numba")
"""


def test_an_explicit_numba_call_says_once_that_it_compiles(tmp_path):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_EXPLICIT)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, FASTCONV_CACHE_DIR=str(tmp_path)), timeout=300)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "numba kernels for float32" in line]
    assert len(said) == 1 and said[0].startswith("WARNING") and "compiling" in said[0], proc.stderr


def test_warmup_command_compiles_every_step_with_progress_and_info_compiles_nothing(tmp_path):
    out = _python("import sys; from fastconv.cli import main; sys.exit(main(['warmup', '--dtype', 'float32']))")
    steps = len(numba_jit.WARMUP_STEPS)
    assert f"numba float32: compiling (or loading) {steps} steps" in out, out
    assert f"[{steps}/{steps}] input gradient" in out, out
    assert "warmup done in" in out
    # info on an empty cache: a line about the kernels, no compile (the layer starts by itself)
    line = _python("""
        from fastconv.backends import numba_jit, _numba_kernels as k
        print(numba_jit.describe(), sum(sum(f.stats.cache_misses.values()) for f in vars(k).values()
                                         if hasattr(f, "stats")))
    """, {"FASTCONV_CACHE_DIR": str(tmp_path)})
    assert "kernels float32 not compiled, float64 not compiled" in line and line.split()[-1] == "0", line


_WITHOUT_NUMBA = """
    import sys
    import numpy as np
    import fastconv as fc
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    w = np.ones((4, 3, 3, 3))
    y = fc.conv2d(x, w, padding=1)
    g = fc.conv2d_backward(np.ones_like(y), x, w, padding=1)
    dw = fc.conv2d(np.ones((1, 4, 9, 9), np.float32), np.ones((4, 1, 3, 3), np.float32), groups=4)
    try:
        fc.conv2d(x, w, backend="numba")
    except ImportError as exc:
        print(exc)
    print(np.__version__, "numba" in sys.modules, fc.backends(), fc.choose_backend(x.shape, w.shape, padding=1))
    print(y.shape, g.weight.shape, dw.dtype, float(y[0, 0, 3, 3] - x[0, :, 2:5, 2:5].sum()) < 1e-12)
"""


def test_pip_install_with_numpy_alone_runs(tmp_path):
    """`pip install` of this tree into a fresh environment with NumPy 2.0 (the lowest declared)
    and no numba: fastconv imports and convolves with im2col, and asking for numba names the
    extra. About 8 s: a venv, then pip from its cache (or the package index)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "fastconv", src / "fastconv", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    python = tmp_path / "venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    proc = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "numpy==2.0.*", str(src)], capture_output=True, text=True, timeout=600)
    if proc.returncode and any(s in proc.stderr for s in ("NewConnectionError", "Temporary failure in name resolution",
                                                          "No matching distribution")):
        pytest.skip(f"no package index or cache to install from: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([python, "-c", textwrap.dedent(_WITHOUT_NUMBA)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    error, versions, results = run.stdout.splitlines()
    assert "pip install 'fastconv[numba]'" in error
    assert versions.startswith("2.0.") and versions.split()[1:] == ["False", "['reference',", "'im2col']", "im2col"]
    assert results == "(2, 4, 8, 8) (4, 3, 3, 3) float32 True"
    installed = subprocess.run([python, "-c", "import fastconv, pathlib; print(pathlib.Path(fastconv.__file__)"
                                ".with_name('py.typed').exists())"], capture_output=True, text=True, cwd=tmp_path)
    assert installed.stdout.strip() == "True"  # PEP 561 marker shipped
