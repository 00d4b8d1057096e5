"""fastconv.dask against fastconv's in-memory functions: every chunking, padding, stride, 1-3 axes, schedulers."""

from __future__ import annotations

import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
Callback = pytest.importorskip("dask.callbacks").Callback

import fastconv  # noqa: E402
import fastconv.dask as fcd  # noqa: E402
from fastconv import _dask_tasks  # noqa: E402
from fastconv._dask_graph import cut  # noqa: E402

EXACT = "numba"  # its per-element order of terms does not depend on the array's extent: same bits
rng = np.random.default_rng(14)


def _run(nd, x, w, b, chunks, gy_chunks=None, backend=EXACT, scheduler="sync", **kw):
    """fastconv.dask's forward pass and gradients, computed, and the in-memory ones."""
    conv, back = getattr(fastconv, f"conv{nd}d"), getattr(fastconv, f"conv{nd}d_backward")
    y_ref = conv(x, w, b, backend=backend, **kw)
    gy = rng.standard_normal(y_ref.shape)
    ref = back(gy, x, w, backend=backend, **kw)
    xd = da.from_array(x, chunks=chunks)
    y = getattr(fcd, f"conv{nd}d")(xd, w, b, backend=backend, **kw)
    g = getattr(fcd, f"conv{nd}d_backward")(da.from_array(gy, chunks=gy_chunks or 3), xd, w, backend=backend, **kw)
    assert g.weight.numblocks == (1,) * w.ndim and g.bias.numblocks == (1,)
    got = dask.compute(y, *g, scheduler=scheduler)
    return got, (y_ref, *ref)


def _check(got, ref, exact=True):
    (y, gx, gw, gb), (y_ref, gx_ref, gw_ref, gb_ref) = got, ref
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype and gx.shape == gx_ref.shape
    if exact:
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(gx, gx_ref)
    else:  # BLAS picks its kernels (and so its rounding) by the matrices' sizes
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)
    tol = 1e-12 if y.dtype == np.float64 else 1e-5  # sums over chunks, in another order
    np.testing.assert_allclose(gw, gw_ref, rtol=tol, atol=tol * np.abs(gw_ref).max())
    np.testing.assert_allclose(gb, gb_ref, rtol=tol, atol=tol * np.abs(gb_ref).max())


# chunkings of a (3, 4, 13, 11) input: every axis split, uneven, 1-wide (smaller than any halo)
CHUNKS_2D = [(2, 4, 5, 4), (1, 4, 1, 2), (3, 4, (6, 7), (1, 10)), (3, 4, (2, 9, 1, 1), (4, 1, 6))]
CASES_2D = [
    dict(padding="same"),
    dict(padding="valid"),
    dict(padding=2),
    dict(padding=(1, 0)),
    dict(padding=((2, 0), (1, 3))),
    dict(padding="same", stride=2),
    dict(padding=((2, 0), (1, 3)), stride=2),
    dict(padding=1, stride=(2, 3)),
    dict(padding="same", stride=3, dilation=2),
    dict(padding="valid", stride=3, dilation=(2, 1)),
    dict(padding="same", dilation=3, groups=2),
    dict(padding=1, stride=2, groups=4),  # depthwise
]


@pytest.mark.parametrize("kw", CASES_2D, ids=str)
@pytest.mark.parametrize("chunks", CHUNKS_2D, ids=str)
def test_2d_equals_in_memory(kw, chunks):
    c_out = 8 if kw.get("groups") == 4 else 6
    x = rng.standard_normal((3, 4, 13, 11))
    w = rng.standard_normal((c_out, 4 // kw.get("groups", 1), 3, 3))
    _check(*_run(2, x, w, rng.standard_normal(c_out), chunks, gy_chunks=(2, 3, 4, 3), **kw))


@pytest.mark.parametrize("kw", [dict(padding="same"), dict(padding=((2, 1),), stride=2, dilation=2),
                                dict(padding="valid", stride=3, groups=2)], ids=str)
def test_1d_equals_in_memory(kw):
    x, w = rng.standard_normal((3, 4, 29)), rng.standard_normal((6, 4 // kw.get("groups", 1), 4))
    for chunks in [(1, 4, 1), (2, 4, (3, 20, 5, 1))]:
        _check(*_run(1, x, w, rng.standard_normal(6), chunks, **kw))


@pytest.mark.parametrize("kw", [dict(padding="same"), dict(padding=((1, 0), (2, 2), (0, 3)), stride=(2, 1, 3)),
                                dict(padding="valid", dilation=2, groups=2)], ids=str)
def test_3d_equals_in_memory(kw):
    x, w = rng.standard_normal((2, 4, 7, 9, 8)), rng.standard_normal((6, 4 // kw.get("groups", 1), 3, 2, 3))
    for chunks in [(1, 4, 2, 4, 3), (2, 4, (1, 6), 9, (5, 1, 2))]:
        _check(*_run(3, x, w, rng.standard_normal(6), chunks, **kw))


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=((2, 1), (1, 0), (0, 1)), stride=(2, 1, 1)),
                                dict(padding=((4, 3), (1, 1), (1, 1)), dilation=(2, 1, 1))], ids=str)
def test_3d_by_runs_of_planes_equals_in_memory(kw, depth_runs_always):
    """Where a 3-D forward runs by runs of planes that leave out the depth's padding
    (``backends/_lift.py``), a chunk at the depth's ends gets its padding as padding and runs the
    whole array's kernels: the same sums as the in-memory call."""
    x, w = rng.standard_normal((2, 40, 9, 6, 5)), rng.standard_normal((16, 40, 3, 2, 3))
    for chunks in [(1, 40, 2, 6, 5), (2, 40, (1, 7, 1), 3, (4, 1))]:
        _check(*_run(3, x, w, rng.standard_normal(16), chunks, **kw))


def test_3d_strided_1x1x1_equals_in_memory():
    """A chunk of a 1x1x1 kernel at a stride runs on the pixels it reads as the whole array's call
    does (``backends/_lift.py``): the same sums."""
    x, w = rng.standard_normal((3, 40, 9, 8, 7)), rng.standard_normal((16, 40, 1, 1, 1))
    for chunks in [(2, 40, 3, 4, 7), (3, 40, (1, 7, 1), (5, 3), 2)]:
        _check(*_run(3, x, w, rng.standard_normal(16), chunks, stride=(2, 3, 2)))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "symmetric"])
def test_padding_modes(mode):
    x, w = rng.standard_normal((2, 3, 9, 10)), rng.standard_normal((5, 3, 3, 3))
    for chunks, kw in [((1, 3, 4, 3), dict(padding="same")), ((2, 3, 2, (1, 9)), dict(padding=(2, 1), stride=2))]:
        _check(*_run(2, x, w, rng.standard_normal(5), chunks, padding_mode=mode, **kw))


@pytest.mark.parametrize("backend", ["reference", "im2col", "auto"])
def test_other_backends_to_rounding(backend):
    if backend != "auto" and backend not in fastconv.backends():
        pytest.skip(f"backend {backend!r} is not installed")
    x, w = rng.standard_normal((3, 4, 13, 11)), rng.standard_normal((6, 2, 3, 3))
    _check(*_run(2, x, w, rng.standard_normal(6), (2, 4, 5, 4), backend=backend, padding="same", stride=2,
                 groups=2), exact=False)


def test_layouts_dtypes_and_unbatched():
    x, w = rng.standard_normal((2, 9, 8, 4)).astype(np.float32), rng.standard_normal((6, 3, 3, 4)).astype(np.float32)
    got, ref = _run(2, x, w, np.ones(6, np.float32), (1, 4, 3, 4), padding="same", stride=2, layout="NHWC")
    assert got[0].dtype == np.float32
    _check(got, ref)
    xi = rng.integers(-5, 5, (4, 9, 8))  # unbatched, integers: computed in float64
    y = fcd.conv2d(da.from_array(xi, chunks=(4, 3, 3)), w.transpose(0, 3, 1, 2), padding=1, backend=EXACT)
    np.testing.assert_array_equal(y.compute(scheduler="sync"),
                                  fastconv.conv2d(xi, w.transpose(0, 3, 1, 2), padding=1, backend=EXACT))


def test_chunk_layout_follows_input_and_stride():
    x = da.zeros((4, 3, 20, 17), chunks=(1, 3, (8, 7, 5), (9, 8)))
    w = np.ones((2, 3, 3, 3))
    assert fcd.conv2d(x, w, padding="same").chunks == ((1, 1, 1, 1), (2,), (8, 7, 5), (9, 8))
    # stride 2: output o goes with the chunk holding input row 2*o; no input rechunking
    assert fcd.conv2d(x, w, padding="same", stride=2).chunks[2:] == ((4, 4, 2), (5, 4))
    x1 = da.zeros((1, 3, 12, 5), chunks=(1, 1, 1, 5))  # channels in several chunks: merged
    assert fcd.conv2d(x1, w, padding=1, stride=3).chunks[1:] == ((2,), (1, 1, 1, 1), (2,))


def test_halos_are_cut_where_they_live():
    """One task per chunk cuts the halos its neighbours need (1 wide for a 3x3 kernel): only those
    travel to the neighbours' tasks, never the whole chunk."""
    x = da.zeros((1, 2, 40, 40), chunks=(1, 2, 20, 20))
    y = fcd.conv2d(x, np.ones((1, 2, 3, 3)), padding="same")
    cuts = [task for task in dict(y.__dask_graph__()).values() if isinstance(task, tuple) and task[0] is cut]
    assert len(cuts) == 4  # one per chunk: each has three neighbours, which want 3 parts of it
    for _, _, parts in cuts:
        assert len(parts) == 3
        assert sorted(min(s.stop - s.start for s in part[2:]) for part in parts) == [1, 1, 1]
        assert max(s.stop - s.start for part in parts for s in part[2:]) <= 20
    computed = y.compute(scheduler="sync")
    np.testing.assert_array_equal(computed, fastconv.conv2d(np.zeros((1, 2, 40, 40)), np.ones((1, 2, 3, 3)),
                                                            padding="same"))


def test_weight_gradient_is_a_tree_reduction():
    x = da.ones((16, 1, 8, 8), chunks=(1, 1, 4, 4))  # 64 partial sums
    g = fcd.conv2d_backward(da.ones((16, 1, 8, 8), chunks=(1, 1, 4, 4)), x, np.ones((1, 1, 3, 3)), padding=1)
    graph = g.weight.__dask_graph__()
    deps = graph.get_all_dependencies()
    partial = [k for k in graph if "grad-weight" in str(k[0]) and len(k) == 6]
    assert len(partial) == 64
    assert max(len(d & set(partial)) for d in deps.values()) <= fcd.SPLIT_EVERY
    # each tap reads the 8x8 ones where the padding lets it: 7x7 at the corners, 7x8 on the edges
    taps = np.array([[49, 56, 49], [56, 64, 56], [49, 56, 49]]) * 16.0
    np.testing.assert_array_equal(g.weight.compute(scheduler="sync")[0, 0], taps)


def test_threaded_scheduler_gives_the_same_bits():
    x, w = rng.standard_normal((4, 4, 24, 20)), rng.standard_normal((6, 4, 3, 3))
    got, ref = _run(2, x, w, rng.standard_normal(6), (1, 4, 7, 6), scheduler="threads", padding="same", stride=2)
    _check(got, ref)


def test_each_task_gets_its_share_of_threads():
    assert _dask_tasks.task_threads(None) is None  # the calling thread: the caller's own setting
    assert _dask_tasks.task_threads(3) == 3
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_dask_tasks.task_threads(None)))
    thread.start()
    thread.join()
    assert seen == [max(1, fastconv._threads._all_cores() // dask.system.CPU_COUNT)]
    with dask.config.set(num_workers=1):
        thread = threading.Thread(target=lambda: seen.append(_dask_tasks.task_threads(None)))
        thread.start()
        thread.join()
    assert seen[-1] == fastconv._threads._all_cores()


# numba's kernels sum a pixel's terms each in its own order, and some take a call by the image's size
# (or, depthwise, by whether the output keeps the input's width, which a chunk's window never
# does): chunks run the whole array's kernels (``whole_choices``), and so give the same bits. Each
# case but one has a chunk whose own choice differs from the whole array's.
CHOSEN_BY_SIZE = [
    # the implicit forward on 8x8 chunks, not on the whole 32x32 (packed: 16 channels over one
    # image, whose rows half-width AVX-512 takes only over an image a thread)
    ((1, 16, 32, 32), (16, 16, 3, 3), dict(padding=1), (1, 16, 8, 8)),
    # the implicit forward over 7x7 wide pixels, not on 3x3 chunks
    ((4, 16, 7, 7), (16, 16, 3, 3), dict(padding=1), (1, 16, 3, 3)),
    # the columns kernels over rows of 1024, not in chunks 100 wide (both passes)
    ((2, 4, 16, 1024), (16, 4, 3, 1), dict(padding=(1, 0)), (1, 4, 8, 100)),
    # a 3x3 kernel at stride 2 over wide rows: the input gradient's 2x1 and 1x1 phases on the
    # columns kernels, whose chunks read a column more of gy than they write
    ((2, 16, 10, 1200), (32, 16, 3, 3), dict(stride=2, padding=(0, 1)), (1, 16, 4, 768)),
    # 1x1 taps at stride 2 of a k x 1 kernel: the matrix products, which a chunk's cropped phase
    # takes too (it once ran the packed kernels: the same kernel, not a pinned one)
    ((2, 32, 10, 600), (32, 32, 3, 1), dict(stride=2, padding=(1, 0)), (1, 32, 3, 414)),
    # depthwise, "same" padding: the flat path on the whole array (a kernel of one row: a 3x3 one
    # runs the packed path everywhere), a wider output in chunks (undilated: a dilated kernel
    # reaches past ``_numba_depthwise.FLAT_MAX_REACH``; on AVX2 no chunk's own choice differs)
    ((2, 2, 34, 600), (32, 1, 1, 3), dict(padding=(0, 1), groups=2), (1, 2, 32, 369)),
    # depthwise at stride 2: each input-gradient phase's path
    ((2, 2, 13, 1200), (32, 1, 3, 3), dict(stride=2, padding=(0, 1), groups=2), (1, 2, 5, 783)),
    # the batch's images as the tiles' columns (both passes), not on chunks of 4 images (float64: half
    # a vector, whose padding, 36 %, is short of the half vector's limit) nor 2x6 pixels (no padding
    # above or below: 20 %)
    ((16, 32, 6, 6), (32, 32, 5, 5), dict(padding=2), (4, 32, 2, 6)),
]


@pytest.mark.parametrize("x_shape, w_shape, kw, chunks", CHOSEN_BY_SIZE,
                         ids=["implicit-whole-packed", "implicit-whole", "columns", "stride2-columns-phases",
                              "cropped-matrix-phase", "depthwise-flat", "depthwise-stride2", "images"])
def test_kernels_chosen_by_size_follow_the_whole_array(request, x_shape, w_shape, kw, chunks):
    numba_jit = pytest.importorskip("fastconv.backends.numba_jit")
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    stride = kw.get("stride", 1)
    gy_chunks = (1, w_shape[0], *(max(1, c // stride) for c in chunks[2:]))
    seen = []
    own = numba_jit._forward_kernel

    def spy(call, budget, pinned=None):  # each chunk's own choice beside the one it runs
        seen.append((own(call, budget), own(call, budget, pinned)))
        return seen[-1][1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_jit, "_forward_kernel", spy)
        _check(*_run(2, x, w, rng.standard_normal(w_shape[0]), chunks, gy_chunks=gy_chunks, **kw))
    pinned = any(mine != ran for mine, ran in seen)
    if request.node.callspec.id == "images" and not numba_jit.IMAGES:  # (Zen 4's only)
        return
    assert pinned == ("cropped" not in request.node.callspec.id) or not numba_jit._gemm.WIDE  # (most need AVX-512)


def _random_layer(seed):
    """A random 2-D layer of long rows or small images, strides 1-2, dilations 1-2, groups 1-2
    (depthwise among them), and a chunking of it: the kinds of call whose kernels differ by size."""
    r = np.random.default_rng(seed)
    kh, kw = (int(v) for v in r.choice([1, 3, 5], 2))
    stride, dil, groups = int(r.choice([1, 1, 2])), int(r.choice([1, 2])), int(r.choice([1, 2]))
    if stride > 1:
        dil = 1
    c_in, c_out = groups * int(r.choice([1, 4, 16])), groups * int(r.choice([1, 4, 32]))
    h = int(r.integers(kh * dil + 2, 24))
    wd = int(r.choice([int(r.integers(kw * dil + 2, 40)), 600, 1100]))
    pad = (int(r.integers(0, kh)) * dil, int(r.integers(0, kw)) * dil)
    chunks = (1, c_in, int(r.integers(max(3, kh * dil), h + 1)), int(r.integers(max(3, kw * dil), wd + 1)))
    return (2, c_in, h, wd), (c_out, c_in // groups, kh, kw), dict(stride=stride, padding=pad, dilation=dil,
                                                                    groups=groups), chunks


# seeds whose layers differed in the last bits before the whole array's kernels were carried (17 of
# the first 120), 140 (a depthwise phase cropped on the left, which a first version of the carrying
# missed) and a few that never differed; none of the first 300 differs now
SEEDS = (2, 8, 18, 36, 41, 43, 46, 53, 58, 75, 83, 85, 91, 98, 102, 103, 111, 140, 0, 1, 3)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_layers_chunked_are_the_same_bits(seed):
    x_shape, w_shape, kw, chunks = _random_layer(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    gy_chunks = (1, w_shape[0], *(max(1, c // kw["stride"]) for c in chunks[2:]))
    _check(*_run(2, x, w, rng.standard_normal(w_shape[0]), chunks, gy_chunks=gy_chunks, **kw))


def test_precision_and_backend_fixed_when_the_graph_is_built():
    x = da.ones((1, 1, 6, 6), chunks=3)
    with fastconv.precision("high"):
        y = fcd.conv2d(x, np.ones((1, 1, 3, 3)))
        auto = fastconv.choose_backend((1, 1, 6, 6), (1, 1, 3, 3), dtype=np.float64)  # may depend on the precision
    plans = [t[-1] for t in dict(y.__dask_graph__()).values() if isinstance(t, tuple) and callable(t[0])
             and t[0] is _dask_tasks.forward]
    assert plans and {p.precision for p in plans} == {"high"}
    assert {p.backend for p in plans} == {auto}


def test_auto_picks_each_pass_as_the_in_memory_calls_do(monkeypatch):
    # auto may run the two gradients on other backends than the forward (``AUTO_PASS_RULES``):
    # each pass's tasks carry their own pick, made once on the whole array, as conv2d_backward does
    picks = {"forward": "reference", "grad_input": "numba", "grad_weight": "im2col"}
    if not set(picks.values()) <= set(fastconv.backends()):
        pytest.skip("needs the reference, numba and im2col backends")
    monkeypatch.setattr(fastconv.backends, "choose", lambda geom, dtype, pass_="forward": picks[pass_])
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))
    y = fcd.conv2d(da.from_array(x, chunks=(1, 3, 5, 4)), w, padding=1)
    g = fcd.conv2d_backward(da.ones((2, 4, 9, 8), chunks=(1, 4, 4, 8)), da.from_array(x, chunks=(1, 3, 5, 4)), w,
                            padding=1)
    tasks = {}
    for graph in (y.__dask_graph__(), g.input.__dask_graph__(), g.weight.__dask_graph__()):
        for t in dict(graph).values():
            if isinstance(t, tuple) and callable(t[0]) and t[0].__module__ == _dask_tasks.__name__:
                plan = next(a for a in t if isinstance(a, _dask_tasks.Plan))
                tasks.setdefault(t[0].__name__, set()).add(plan.backend)
    assert tasks == {p: {b} for p, b in picks.items()}
    _check(*_run(2, x, w, None, (1, 3, 5, 4), backend="auto", padding=1), exact=False)


def test_a_forward_graph_resolves_auto_for_the_forward_alone(monkeypatch):
    # the gradients' picks are made by the graphs that run them: a forward's pick of theirs could
    # start compiling a backend (numba's ``ready``) that the forward never runs
    asked = []
    real = fastconv.backends.choose
    monkeypatch.setattr(fastconv.backends, "choose",
                        lambda geom, dtype, pass_="forward": asked.append(pass_) or real(geom, dtype, pass_=pass_))
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))
    fcd.conv2d(da.from_array(x, chunks=(1, 3, 5, 4)), w, padding=1)
    assert set(asked) == {"forward"}  # (the validating probe, an in-memory conv2d, asks too)
    asked.clear()
    fcd.conv2d_backward(da.ones((2, 4, 9, 8), chunks=(1, 4, 4, 8)), da.from_array(x, chunks=(1, 3, 5, 4)), w,
                        padding=1)
    assert {"grad_input", "grad_weight"} <= set(asked)  # (its probe, conv2d_backward, asks them too)


def test_errors_are_fastconvs_and_come_before_any_work():
    x = da.ones((2, 3, 8, 8), chunks=4)
    with pytest.raises(ValueError, match="padding"):
        fcd.conv2d(x, np.ones((4, 3, 3, 3)), padding="full")
    with pytest.raises(ValueError, match="groups"):
        fcd.conv2d(x, np.ones((4, 3, 3, 3)), groups=2)
    with pytest.raises(TypeError, match="dtype"):
        fcd.conv2d(x.astype(complex), np.ones((4, 3, 3, 3)))
    with pytest.raises(ValueError, match="dimensions"):
        fcd.conv2d(da.ones((8, 8)), np.ones((4, 3, 3, 3)))
    with pytest.raises(ValueError, match="grad_output"):
        fcd.conv2d_backward(da.ones((3, 4, 6, 6)), x, np.ones((4, 3, 3, 3)))
    with pytest.raises(ValueError, match="backend"):
        fcd.conv2d(x, np.ones((4, 3, 3, 3)), backend="nope")


def test_empty_batch():
    y = fcd.conv2d(da.ones((0, 2, 5, 5), chunks=(1, 2, 2, 2)), np.ones((3, 2, 3, 3)), padding=1)
    assert y.compute(scheduler="sync").shape == (0, 3, 5, 5)


def test_import_fastconv_does_not_import_dask():
    code = "import sys, fastconv; fastconv.conv2d([[[[1.0]]]], [[[[1.0]]]]); print('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


class _TaskPeaks(Callback):
    """Each task's peak of traced allocations above what was held when it started (sync scheduler)."""

    def __init__(self):
        super().__init__()
        self.peaks, self._held = {}, {}

    def _pretask(self, key, dsk, state):
        self._held[key] = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

    def _posttask(self, key, result, dsk, state, worker_id):
        self.peaks[key] = tracemalloc.get_traced_memory()[1] - self._held[key]


def test_memory_is_bounded_by_the_chunk():
    """A 256 MB input, generated chunk by chunk (1 MB each), filtered and summed: each task's peak is
    its window and its output, about two chunks, and the whole computation's the few dozen chunks
    that dask's order holds at once (about 32 here, as with 64 or 128 MB), not the array."""
    # tracemalloc counts every thread's allocations: a background compile that an earlier test's
    # "auto" started (``numba_jit.ready``) would add its own to a task's peak (the likely cause of
    # the 3.9 MB peak this test saw twice in full runs, never alone)
    for thread in threading.enumerate():
        if thread.name.startswith("fastconv-") and "-compile-" in thread.name:
            thread.join()
    x = da.random.default_rng(0).standard_normal((16, 4, 1024, 512), chunks=(1, 4, 128, 256))
    w = np.ones((4, 4, 3, 3)) / 36
    fcd.conv2d(x[:1, :, :128, :256], w, padding="same", backend=EXACT).compute(scheduler="sync")  # compiled
    total = fcd.conv2d(x, w, padding="same", backend=EXACT).sum()
    chunk = 4 * 128 * 256 * 8
    tracemalloc.start()
    try:
        with _TaskPeaks() as tasks:
            total.compute(scheduler="sync")
        tracemalloc.reset_peak()
        total.compute(scheduler="sync")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the tasks: random chunks, halos, and the convolutions (dask fuses each with its chunk's sum)
    assert len(tasks.peaks) > 16 * 8 * 2 and max(tasks.peaks.values()) < 3 * chunk, (max(tasks.peaks.values()), chunk)
    assert peak < 64 * chunk == x.nbytes / 4, (peak, x.nbytes)


def test_local_cluster_with_processes():
    distributed = pytest.importorskip("distributed")
    x, w = rng.standard_normal((2, 3, 16, 12)), rng.standard_normal((4, 3, 3, 3))
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None)
    with cluster, distributed.Client(cluster):
        got, ref = _run(2, x, w, rng.standard_normal(4), (1, 3, 5, 6), scheduler=None, padding="same", stride=2)
    _check(got, ref)


def test_large_image_example_runs_and_agrees_with_in_memory(capsys):
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "large_image.py"
    spec = importlib.util.spec_from_file_location("large_image", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--images", "2", "--size", "96", "--chunk", "40", "--filters", "4", "--kernel", "5", "--threads"])
    printed = capsys.readouterr().out
    assert "fastconv.dask:" in printed and "tasks" in printed
    args = argparse.Namespace(images=2, size=96, chunk=40, repeat=1, backend=EXACT, threads=True, workers=2)
    w = example.gabor_bank(4, 5)
    lazy, eager = example.run_dask(args, w), example.run_in_memory(args, w)
    assert lazy["features"].shape == (2, 4)
    np.testing.assert_allclose(lazy["features"], eager["features"], rtol=1e-6)
