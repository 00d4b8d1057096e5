"""What the shared suite cannot see of the im2col backend: its chunking, its memory budget and
its special paths (pointwise and depthwise), each against the reference backend or torch."""

import multiprocessing
import os

import numpy as np
import pytest

from fastconv import _workers
from fastconv.backends import _im2col_depthwise, im2col, reference
from fastconv.geometry import Geometry

from .oracle import assert_close, extra_bytes

PASSES = ("forward", "grad_input", "grad_weight")

# (x shape, w shape, hyper-parameters): one per code path of the backend.
PROBLEMS = {
    "dense-k3-p1": ((7, 4, 9, 8), (5, 4, 3, 3), {"padding": 1}),
    "grouped-asym": ((7, 6, 10, 9), (4, 3, 3, 2), {"stride": (2, 1), "padding": ((2, 0), (1, 3)),
                                                       "dilation": (1, 2), "groups": 2}),
    "dense-unpadded-s2": ((5, 3, 9, 9), (4, 3, 3, 3), {"stride": 2}),
    # Forward GEMM: per image below 64 multiply-adds per output, per chunk from 64, pixel-major from 512.
    "dense-mid": ((5, 8, 7, 6), (6, 8, 3, 3), {"padding": 1}),
    "dense-deep": ((5, 64, 6, 5), (6, 64, 3, 3), {"padding": 1}),
    # Unit stride: grad_input runs as a forward convolution of gy, unless the padding exceeds the span.
    "dilated-asym-s1": ((5, 4, 9, 10), (6, 2, 3, 2), {"padding": ((3, 0), (1, 0)), "dilation": (2, 1),
                                                      "groups": 2}),
    "pad-beyond-span": ((3, 2, 5, 5), (3, 2, 2, 2), {"padding": 2}),
    "pointwise": ((7, 6, 5, 4), (9, 6, 1, 1), {}),
    "pointwise-grouped": ((7, 6, 5, 4), (9, 2, 1, 1), {"groups": 3}),
    "pointwise-large": ((3, 6, 32, 40), (4, 3, 1, 1), {"groups": 2}),  # a plain matmul per image
    "depthwise": ((7, 6, 9, 8), (6, 1, 3, 3), {"padding": 1, "groups": 6}),
    "depthwise-x2-s2-d2": ((7, 4, 11, 10), (8, 1, 3, 2), {"stride": 2, "padding": ((1, 2), (0, 1)),
                                                              "dilation": 2, "groups": 4}),
    "kernel-is-input": ((3, 2, 5, 4), (3, 2, 5, 4), {}),
    # k x 1 kernels at unit stride, unpadded across: shifted GEMMs of the input's columns
    "shifted-k3x1": ((3, 4, 9, 7), (5, 4, 3, 1), {"padding": (1, 0)}),
    "shifted-grouped-dilated": ((3, 6, 11, 5), (4, 3, 4, 1), {"padding": ((3, 1), (0, 0)), "dilation": (2, 1),
                                                               "groups": 2}),
    "shifted-pad-beyond": ((3, 3, 4, 6), (3, 3, 2, 1), {"padding": ((3, 3), (0, 0))}),  # rows of padding only
    # windows that do not overlap (a ViT's patches): grad_input's fold is one copy (``_tiled``)
    "patches-exact": ((3, 3, 8, 12), (5, 3, 4, 4), {"stride": 4}),
    "patches-gaps-padded": ((3, 4, 9, 10), (6, 2, 2, 3), {"stride": (3, 4), "padding": ((1, 0), (0, 2)),
                                                          "groups": 2}),
    "patches-ragged": ((3, 3, 9, 9), (4, 3, 4, 4), {"stride": 4}),  # a last input row no window reads
}


def _problem(name, dtype=np.float64, seed=0, n=None):
    x_shape, w_shape, kwargs = PROBLEMS[name]
    x_shape = x_shape if n is None else (n, *x_shape[1:])
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    return (geom, *_inputs(geom, dtype, seed))


def _inputs(geom, dtype=np.float64, seed=0):
    """Random ``(x, w, gy)`` of ``geom``'s shapes."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in (geom.x_shape, geom.w_shape, geom.y_shape))


def _args(pass_, x, w, gy):
    return {"forward": (x, w), "grad_input": (gy, w), "grad_weight": (gy, x)}[pass_]


@pytest.fixture
def chunk_sizes(monkeypatch):
    """Record ``(batch, images per chunk)`` of every chunked loop the backend runs."""
    seen = []
    original = _workers.chunks

    def spy(n, nb):
        seen.append((n, nb))
        return original(n, nb)

    monkeypatch.setattr(_workers, "chunks", spy)
    monkeypatch.setattr(_im2col_depthwise, "chunks", spy)
    return seen


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_image_per_chunk_matches_reference(budget, chunk_sizes, name, pass_, dtype):
    budget(1)  # smaller than any image's scratch: every chunk is a single image
    geom, x, w, gy = _problem(name, dtype)
    args = _args(pass_, x, w, gy)
    got = getattr(im2col, pass_)(*args, geom)
    assert got.dtype == dtype and got.flags.c_contiguous
    assert_close(got, getattr(reference, pass_)(*args, geom), what=f"{name} {pass_}")
    assert all(nb == 1 for _, nb in chunk_sizes)


@pytest.mark.parametrize(("name", "pass_"), [
    (name, pass_) for name in PROBLEMS for pass_ in PASSES
    # 1x1 stride-1 unpadded: grad_input is one matmul over the whole batch, and the forward pass
    # multiplies the input where it lies (images too small are gathered, as in "pointwise")
    # k x 1 kernels: work items are chunks of one image's columns, never of several images
    if not (name.startswith("pointwise") and pass_ == "grad_input" or (name, pass_) == ("pointwise-large", "forward")
            or name.startswith("shifted"))])
def test_ragged_last_chunk_matches_reference(budget, chunk_sizes, monkeypatch, name, pass_):
    geom, x, w, gy = _problem(name)
    args = _args(pass_, x, w, gy)
    want = getattr(reference, pass_)(*args, geom)
    monkeypatch.setattr(im2col, "PREFERRED_CHUNK_BYTES", 2**40)
    monkeypatch.setattr(_im2col_depthwise, "PREFERRED_DEPTHWISE_CHUNK_BYTES", 2**40)
    monkeypatch.setattr(_im2col_depthwise, "PREFERRED_DEPTHWISE_COLS_BYTES", 2**40)
    ragged = False
    # Growing budgets walk the chunk size through 1 .. n images; n = 7, 5 or 3 divides by few of
    # them. The backend first reserves numpy's iterator buffers, whatever the chunk.
    reserve = 3 * np.getbufsize() * x.itemsize
    for nbytes in reserve + np.geomspace(2**6, 2**20, 80).astype(int):
        budget(int(nbytes))
        chunk_sizes.clear()
        assert_close(getattr(im2col, pass_)(*args, geom), want, what=f"{name} {pass_} budget {nbytes}")
        ragged |= any(1 < nb < n and n % nb for n, nb in chunk_sizes)
    assert ragged, "no budget gave a batch that does not divide into chunks"


@pytest.mark.parametrize("threads", [1, 3])  # every worker thread holds scratch of its own
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("name", ["dense-k3-p1", "grouped-asym", "pointwise", "pointwise-large", "depthwise",
                                  "shifted-grouped-dilated"])
def test_extra_memory_stays_under_budget(budget, use_threads, name, pass_, threads):
    use_threads(threads)
    # A batch of 256: the full patch matrix of the dense cases would be ~9x the input (~2.6 MiB).
    geom, x, w, gy = _problem(name, np.float32, n=256)
    _assert_within_budget(budget, 256 * 2**10, pass_, _args(pass_, x, w, gy), geom, name)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("pass_", PASSES)
def test_depthwise_channel_blocks_stay_under_budget(budget, use_threads, pass_, threads):
    """Two images, but so many channels that one image's scratch is over the budget: the work
    items must then take fewer channels, not just fewer images."""
    use_threads(threads)
    geom = Geometry.from_args((2, 64, 24, 24), (64, 1, 3, 3), padding=1, groups=64)
    x, w, gy = _inputs(geom, np.float32)
    _assert_within_budget(budget, 256 * 2**10, pass_, _args(pass_, x, w, gy), geom, "depthwise-64ch")


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("stride", [1, 2])  # stride 2: grad_input is a fold, not a forward pass
def test_large_image_stays_under_budget(budget, use_threads, pass_, threads, stride):
    """One image whose patch matrix (1.2 MiB at stride 1) is over the budget: its patches go in
    bands of output rows. The floor is one padded image (139 KiB) and one row of patches."""
    use_threads(threads)
    geom = Geometry.from_args((1, 8, 64, 64), (8, 8, 3, 3), stride=stride, padding=1)
    x, w, gy = _inputs(geom, np.float32)
    _assert_within_budget(budget, 512 * 2**10, pass_, _args(pass_, x, w, gy), geom, f"large-s{stride}")


def _assert_within_budget(budget, limit, pass_, args, geom, name):
    budget(limit)
    extra, got = extra_bytes(lambda: getattr(im2col, pass_)(*args, geom))
    assert extra <= limit, f"{name} {pass_}: {extra} bytes beyond the output, budget {limit}"
    assert_close(got, getattr(reference, pass_)(*args, geom), what=f"{name} {pass_}")


def test_default_budget_is_256_mib_or_twice_the_input(budget):
    assert im2col.memory_budget(2**20) == 256 * 2**20
    assert im2col.memory_budget(200 * 2**20) == 400 * 2**20
    budget(12345)
    assert im2col.memory_budget(200 * 2**20) == 12345
    assert im2col.set_memory_budget(None) == 12345
    assert im2col.memory_budget(0) == _workers.DEFAULT_MEMORY_BUDGET


@pytest.mark.parametrize("nbytes", [-1, 1.5, "1MB"])
def test_bad_budget_is_refused(nbytes):
    with pytest.raises(ValueError, match="nbytes"):
        im2col.set_memory_budget(nbytes)


def test_k_by_1_kernels_copy_no_patches(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a k x 1 kernel at unit stride built a patch matrix")

    monkeypatch.setattr(im2col, "_patches", forbidden)
    monkeypatch.setattr(im2col, "_windows", forbidden)
    for name in ("shifted-k3x1", "shifted-grouped-dilated", "shifted-pad-beyond"):
        geom, x, w, gy = _problem(name)
        for pass_ in PASSES:
            args = _args(pass_, x, w, gy)
            assert_close(getattr(im2col, pass_)(*args, geom), getattr(reference, pass_)(*args, geom),
                         what=f"{name} {pass_}")


def test_pointwise_path_copies_no_patches(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a 1x1 stride-1 unpadded convolution built a patch matrix")

    monkeypatch.setattr(im2col, "_patches", forbidden)
    monkeypatch.setattr(im2col, "_windows", forbidden)
    geom, x, w, gy = _problem("pointwise-large")
    assert geom.oh * geom.ow >= im2col.GROUP_BELOW_PIXELS  # grouped small images are gathered
    for pass_ in ("forward", "grad_input"):  # grad_weight gathers, to contract over images at once
        args = _args(pass_, x, w, gy)
        assert_close(getattr(im2col, pass_)(*args, geom), getattr(reference, pass_)(*args, geom))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["pointwise", "pointwise-large", "depthwise", "depthwise-x2-s2-d2",
                                  "shifted-grouped-dilated"])
def test_special_paths_match_torch(name, dtype):
    torch = pytest.importorskip("torch")
    geom, x, w, gy = _problem(name, dtype, seed=1)
    x0, w0, gy0 = x.copy(), w.copy(), gy.copy()
    (pt, pb), (pl, pr) = (geom.pt, geom.pb), (geom.pl, geom.pr)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tw = torch.from_numpy(w.astype(np.float64)).requires_grad_()
    ty = torch.nn.functional.conv2d(torch.nn.functional.pad(tx, (pl, pr, pt, pb)), tw,
                                    stride=(geom.sh, geom.sw), dilation=(geom.dil_h, geom.dil_w),
                                    groups=geom.groups)
    tgx, tgw = torch.autograd.grad(ty, (tx, tw), torch.from_numpy(gy.astype(np.float64)))
    for pass_, want in zip(PASSES, (ty, tgx, tgw)):
        got = getattr(im2col, pass_)(*_args(pass_, x, w, gy), geom)
        assert got.dtype == dtype
        assert_close(got, want.detach().numpy(), dtype, what=f"{name} {pass_}")
    assert (x == x0).all() and (w == w0).all() and (gy == gy0).all()


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("name", ["depthwise", "depthwise-x2-s2-d2"])
def test_depthwise_threads_agree(budget, use_threads, name, threads):
    # The depthwise path spreads its chunks over fastconv's thread count.
    use_threads(threads)
    budget(1)  # one image per chunk: every thread gets several chunks
    geom, x, w, gy = _problem(name)
    for pass_ in PASSES:
        args = _args(pass_, x, w, gy)
        assert_close(getattr(im2col, pass_)(*args, geom), getattr(reference, pass_)(*args, geom),
                     what=f"{name} {pass_} on {threads} threads")


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("name", PROBLEMS)
def test_inf_and_nan_land_where_the_reference_puts_them(name, pass_):
    # The depthwise wide rows and the unit-stride forward read padding or garbage columns that
    # the reference never touches; 0 * inf there must not leak a NaN into a real result.
    geom, x, w, gy = _problem(name, seed=2)
    x[0, 0, -1, -1], x[-1, -1, 0, 0], w[0, 0, 0, -1] = np.inf, np.nan, -np.inf
    gy[0, -1, 0, 0] = np.inf
    args = _args(pass_, x, w, gy)
    with np.errstate(invalid="ignore", over="ignore"):
        got, want = getattr(im2col, pass_)(*args, geom), getattr(reference, pass_)(*args, geom)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threads_work_in_a_forked_child(use_threads):
    # The pool of worker threads does not survive fork; a child must get its own, not hang.
    use_threads(2)
    geom, x, w, gy = _problem("dense-k3-p1")
    want = reference.forward(x, w, geom)
    assert_close(im2col.forward(x, w, geom), want)  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(im2col.forward, (x, w, geom)).get(timeout=60)
    assert_close(got, want)


@pytest.mark.parametrize("name", ["dense-k3-p1", "grouped-asym", "dense-unpadded-s2", "dilated-asym-s1"])
def test_row_bands_match_reference(monkeypatch, name):
    # Large images are copied and multiplied (forward) or contracted (grad_weight) a band of output
    # rows at a time; one-row bands here.
    monkeypatch.setattr(im2col, "ROW_BAND_BYTES", 1)
    monkeypatch.setattr(im2col, "GROUP_BELOW_PIXELS", 1)  # these small images would be grouped
    monkeypatch.setattr(im2col, "BAND_MIN_CONTRACTION", 1)  # nor would grad_weight band them
    geom, x, w, gy = _problem(name)
    bias = np.random.default_rng(2).standard_normal(geom.c_out)  # added band by band
    assert_close(im2col.forward(x, w, geom, bias), reference.forward(x, w, geom, bias), what=f"{name} bias")
    for pass_ in ("forward", "grad_weight"):
        args = _args(pass_, x, w, gy)
        want = getattr(reference, pass_)(*args, geom)
        assert_close(getattr(im2col, pass_)(*args, geom), want, what=f"{name} {pass_}")


@pytest.mark.parametrize("bands", [False, True])
@pytest.mark.parametrize("name", ["patches-exact", "patches-gaps-padded", "patches-ragged"])
def test_grad_input_of_windows_that_do_not_overlap_is_one_copy(monkeypatch, name, bands):
    """Where no two windows share a pixel, grad_input's fold copies each tap's values into place at
    once (``_tiled``), band by band of output rows too, zeroing only what no window reads."""
    geom, x, w, gy = _problem(name)
    assert im2col._tiled(geom) == ("exact" if name == "patches-exact" else True)
    monkeypatch.setattr(im2col, "_taps", None)  # the per-tap adds are not run
    if bands:  # one output row a band
        monkeypatch.setattr(im2col, "thread_share", lambda geom, itemsize: 1)
    assert_close(im2col.grad_input(gy, w, geom), reference.grad_input(gy, w, geom), what=name)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 3, 8, 8), (4, 3, 4, 4), {"stride": (4, 3)}),  # overlapping across
    ((2, 3, 8, 8), (4, 3, 2, 2), {"stride": 2, "dilation": 2}),  # dilated: the windows interleave
])
def test_overlapping_or_dilated_windows_keep_the_per_tap_fold(x_shape, w_shape, kwargs):
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    assert not im2col._tiled(geom)
    x, w, gy = _inputs(geom)
    assert_close(im2col.grad_input(gy, w, geom), reference.grad_input(gy, w, geom))


@pytest.mark.parametrize("name", PROBLEMS)
def test_bias_is_added_on_every_path(name):
    geom, x, w, gy = _problem(name)
    bias = np.random.default_rng(3).standard_normal(geom.c_out)
    assert_close(im2col.forward(x, w, geom, bias), reference.forward(x, w, geom) + bias.reshape(-1, 1, 1), what=name)


@pytest.mark.parametrize("m, n, k", [(3, 40, 500), (40, 3, 500), (30, 400, 5), (2, 2, 1)])
def test_matmul_nt_gives_a_times_b_transposed_on_either_route(m, n, k):
    """``_matmul_nt`` takes a transposed scratch only where the result is small beside the operands
    (3 x 40 from rows of 500), and the direct product elsewhere (30 x 400 from rows of 5)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, m, k)), rng.standard_normal((2, n, k))
    out = np.empty((2, m, n))
    im2col._matmul_nt(a, b, out)
    np.testing.assert_allclose(out, a @ b.swapaxes(-1, -2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 24, 3, 3), (20, 24, 3, 3), {"padding": 1}),
    ((3, 7, 4, 5), (60, 7, 3, 3), {"padding": ((1, 0), (2, 1))}),  # 7 channels: parts of 4 and 3
    ((2, 9, 6, 6), (40, 9, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 8, 3, 3), (50, 8, 3, 3), {"dilation": 2, "padding": 2}),
    ((2, 16, 4, 4), (32, 16, 3, 3), {}),  # unpadded: the channels' patches read x where it lies
    ((2, 5, 3), (40, 5, 3), {"padding": 1})])  # 1-D, lifted
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_split_by_channels_matches_reference(budget, use_threads, monkeypatch, x_shape, w_shape,
                                                             kwargs, dtype):
    """Many gradient values from few pixels (``split_by_channels``): the threads split the input
    channels, each with the whole batch, not the images; the reference's values. Within a small
    budget, by images as before, and within the budget either way."""
    use_threads(2)
    geom = Geometry.from_args(x_shape, w_shape, **kwargs)
    x, _, gy = _inputs(geom, dtype)
    want = reference.grad_weight(gy, x, geom)
    split = []
    real = im2col._grad_weight_by_channels
    monkeypatch.setattr(im2col, "_grad_weight_by_channels", lambda *a: split.append(True) or real(*a))
    _assert_within_budget(budget, 2**20, "grad_weight", (gy, x), geom, f"{x_shape} {w_shape}")
    assert split
    split.clear()
    budget(1)
    assert_close(im2col.grad_weight(gy, x, geom), want)
    assert not split


def test_weight_gradient_is_split_by_channels_from_enough_values_a_pixel(use_threads):
    """``SPLIT_VALUES_PER_PIXEL`` gradient values per pixel contracted, two images and two threads
    at least, one group."""
    use_threads(2)

    def split(n, c_in, c_out, size, groups=1):
        return im2col.split_by_channels(Geometry.from_args((n, c_in, size, size), (c_out, c_in // groups, 3, 3),
                                                           padding=1, groups=groups))

    assert split(4, 512, 512, 7)  # 2.4 Mi values from 196 pixels
    assert split(2, 4, 15, 2) and not split(2, 4, 14, 2)  # from 8 pixels 540 values, 504: the line is 512
    assert not split(1, 512, 512, 7) and not split(4, 512, 512, 7, groups=2)
    use_threads(1)
    assert not split(4, 512, 512, 7)


@pytest.mark.parametrize("threads", [2, 3])
def test_weight_gradient_split_by_channels_stays_under_budget(budget, use_threads, monkeypatch, threads):
    """Split by input channels only where every thread's patches of its channels over the whole
    batch and the gathered output gradient fit (``_split_fits``): within each budget, either way."""
    use_threads(threads)
    geom = Geometry.from_args((4, 64, 5, 5), (128, 64, 3, 3), padding=1)  # 73,728 values from 100 pixels
    x, _, gy = _inputs(geom, np.float32)
    split = []
    real = im2col._grad_weight_by_channels
    monkeypatch.setattr(im2col, "_grad_weight_by_channels", lambda *a: split.append(True) or real(*a))
    ways = set()
    for nbytes in np.geomspace(2**19, 2**23, 12).astype(int):  # from where splitting the images fits too
        split.clear()
        _assert_within_budget(budget, int(nbytes), "grad_weight", (gy, x), geom, f"budget {nbytes}")
        ways.add(bool(split))
    assert ways == {False, True}
