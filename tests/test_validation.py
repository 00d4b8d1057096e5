"""Bad arguments fail at the door, before any backend runs, with a message naming the argument."""

import numpy as np
import pytest

import fastconv

X = np.zeros((2, 6, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)  # groups=2 for X
OK = dict(groups=2)

BAD = [
    # (description, call kwargs overriding (input, weight, bias, ...), exception, regex)
    ("input 2-D", dict(input=np.zeros((8, 8))), ValueError, r"`input` must have 4 dimensions.*\(8, 8\)"),
    ("input 5-D", dict(input=np.zeros((1, 2, 6, 8, 8))), ValueError, r"`input` must have 4 dimensions"),
    ("weight 3-D", dict(weight=np.zeros((4, 3, 3))), ValueError, r"`weight` must have 4 dimensions.*\(4, 3, 3\)"),
    ("channel mismatch", dict(weight=np.zeros((4, 4, 3, 3))), ValueError,
     r"`weight` has 4 input channels per group but `input` has 6 channels and groups=2 \(expected 3\)"),
    ("groups not dividing c_in", dict(groups=4, weight=np.zeros((4, 1, 3, 3))), ValueError,
     r"`groups`=4 must divide the input's 6 channels"),
    ("groups not dividing c_out", dict(weight=np.zeros((5, 3, 3, 3))), ValueError,
     r"`groups`=2 must divide the weight's 5 output channels"),
    ("groups 0", dict(groups=0), ValueError, r"`groups` must be a positive int; got 0"),
    ("groups float", dict(groups=2.0), TypeError, r"`groups` must be a positive int"),
    ("negative padding", dict(padding=-1), ValueError, r"`padding` must be .*; got -1"),
    ("negative per-side padding", dict(padding=((0, 1), (-1, 0))), ValueError, r"`padding`.*negative"),
    ("unknown padding string", dict(padding="full"), ValueError, r"`padding` must be .*'full'"),
    ("padding of three", dict(padding=(1, 1, 1)), ValueError, r"`padding` must be .*3 values for 2 spatial axes"),
    ("stride 0", dict(stride=0), ValueError, r"`stride` must be a positive int .*got 0"),
    ("stride pair with 0", dict(stride=(1, 0)), ValueError, r"`stride` .*got \(1, 0\)"),
    ("stride bool", dict(stride=True), TypeError, r"`stride`"),
    ("dilation 0", dict(dilation=0), ValueError, r"`dilation` must be a positive int"),
    ("dilation float", dict(dilation=1.5), TypeError, r"`dilation`"),
    ("kernel larger than padded input", dict(weight=np.zeros((4, 3, 9, 9))), ValueError,
     r"output would be empty: the dilated kernel spans 9x9 but the padded input is 8x8"),
    ("dilated kernel too large", dict(dilation=4), ValueError, r"kernel spans 9x9 but the padded input is 8x8"),
    ("unknown backend", dict(backend="nmba"), ValueError,
     r"unknown `backend` 'nmba'; choose from 'auto', 'reference', 'im2col', 'numba'"),
    ("unknown layout", dict(layout="CHWN"), ValueError, r"`layout` must be 'NCHW' or 'NHWC'; got 'CHWN'"),
    ("complex input", dict(input=X.astype(np.complex64)), TypeError, r"`input` has dtype complex64"),
    ("object weight", dict(weight=W.astype(object)), TypeError, r"`weight` has dtype object"),
    ("float16 input", dict(input=X.astype(np.float16)), TypeError, r"`input` has dtype float16"),
    ("string input", dict(input="abc"), TypeError, r"`input` has dtype <U3"),
    ("bias of wrong length", dict(bias=np.zeros(3)), ValueError, r"`bias` must have shape \(4,\).*got shape \(3,\)"),
    ("bias 2-D", dict(bias=np.zeros((4, 1))), ValueError, r"`bias` must have shape \(4,\)"),
    ("complex bias", dict(bias=np.zeros(4, np.complex128)), TypeError, r"`bias` has dtype complex128"),
    ("empty weight", dict(weight=np.zeros((0, 3, 3, 3))), ValueError, r"`weight` must have no empty dimension"),
]


def _call_conv2d(**override):
    args = dict(input=X, weight=W, bias=None, **OK)
    args.update(override)
    return fastconv.conv2d(args.pop("input"), args.pop("weight"), args.pop("bias"), **args)


def _validated_before(monkeypatch, warm: bool) -> None:
    """With ``warm``, first run the valid call (forward and backward) so that fastconv keeps it as
    validated (``api._VALIDATED``): a bad call that hashes like it must still fail at the door."""
    from fastconv import api, backends

    monkeypatch.setattr(api, "_VALIDATED", {})
    if warm:
        monkeypatch.setattr(backends, "available", lambda: ["reference", "im2col"])  # auto's pick final at once
        y = _call_conv2d()
        fastconv.conv2d_backward(y, X, W, **OK)
        assert len(api._VALIDATED) == 2


WARM = pytest.mark.parametrize("warm", [False, True], ids=["cold", "after-a-valid-call"])


@WARM
@pytest.mark.parametrize("override, exc, match", [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_conv2d_rejects(override, exc, match, warm, monkeypatch):
    _validated_before(monkeypatch, warm)
    _forbid_backend_work(monkeypatch)
    with pytest.raises(exc, match=match) as info:
        _call_conv2d(**override)
    assert str(info.value).startswith("conv2d: ")


BAD_BACKWARD = [c for c in BAD if "bias" not in c[1]] + [
    ("grad_output of wrong shape", dict(grad_output=np.zeros((2, 4, 5, 6))), ValueError,
     r"`grad_output` must have the forward output's shape \(2, 4, 6, 6\); got \(2, 4, 5, 6\)"),
    ("grad_output complex", dict(grad_output=np.zeros((2, 4, 6, 6), np.complex64)), TypeError,
     r"`grad_output` has dtype complex64"),
    ("bias not a bool", dict(bias=np.zeros(4)), TypeError, r"`bias` must be True or False"),
]


@WARM
@pytest.mark.parametrize("override, exc, match", [pytest.param(*case[1:], id=case[0]) for case in BAD_BACKWARD])
def test_conv2d_backward_rejects(override, exc, match, warm, monkeypatch):
    _validated_before(monkeypatch, warm)
    _forbid_backend_work(monkeypatch)
    args = dict(grad_output=np.zeros((2, 4, 6, 6), np.float32), input=X, weight=W, **OK)
    args.update(override)
    with pytest.raises(exc, match=match.replace("conv2d", "conv2d_backward")) as info:
        fastconv.conv2d_backward(args.pop("grad_output"), args.pop("input"), args.pop("weight"), **args)
    assert str(info.value).startswith("conv2d_backward: ")


def test_nhwc_shapes_are_validated_in_the_callers_layout():
    with pytest.raises(ValueError, match=r"\(C_out, kH, kW, C_in/groups\)"):
        fastconv.conv2d(np.zeros((1, 5, 5, 3)), np.zeros((2, 3, 3)), layout="NHWC")
    with pytest.raises(ValueError, match=r"`weight` has 2 input channels per group but `input` has 3"):
        fastconv.conv2d(np.zeros((1, 5, 5, 3)), np.zeros((2, 3, 3, 2)), layout="NHWC")
    with pytest.raises(ValueError, match=r"`grad_output` must have the forward output's shape \(3, 3, 2\)"):
        fastconv.conv2d_backward(np.zeros((2, 3, 3)), np.zeros((5, 5, 3)), np.zeros((2, 3, 3, 3)), layout="NHWC")


def test_unavailable_backend_is_an_import_error(monkeypatch):
    from fastconv import backends
    monkeypatch.setitem(backends._failed, "numba", ImportError("No module named 'numba'"))
    monkeypatch.delitem(backends._loaded, "numba", raising=False)
    with pytest.raises(ImportError, match="backend 'numba' is not available"):
        fastconv.conv2d(X, W, groups=2, backend="numba")


def test_a_backend_gone_since_a_call_is_an_import_error_on_its_repeat(monkeypatch):
    from fastconv import backends
    if "numba" not in backends.available():
        pytest.skip("numba is not installed")
    fastconv.conv2d(X, W, groups=2, backend="numba")  # kept as validated, with its backend
    monkeypatch.setitem(backends._failed, "numba", ImportError("No module named 'numba'"))
    monkeypatch.delitem(backends._loaded, "numba")
    with pytest.raises(ImportError, match="backend 'numba' is not available"):
        fastconv.conv2d(X, W, groups=2, backend="numba")


def _forbid_backend_work(monkeypatch):
    """Fail the test if validation let the call reach any backend (errors come before work)."""
    from fastconv import backends

    def boom(*args, **kwargs):
        raise AssertionError("a backend ran before the arguments were validated")

    for name in backends.available():
        for fn in ("forward", "grad_input", "grad_weight"):
            monkeypatch.setattr(backends.get(name), fn, boom)


@pytest.mark.parametrize("backend", ["im2col", "auto"])
def test_a_repeated_call_gives_the_first_calls_result_and_leaves_its_inputs_alone(backend, monkeypatch):
    # the second of each call skips validation (api._VALIDATED; with auto once its pick is final):
    # Fortran-ordered, integer and big-endian arrays go through the same conversions as the first time
    from fastconv import api, backends
    monkeypatch.setattr(api, "_VALIDATED", {})
    monkeypatch.setattr(backends, "available", lambda: ["reference", "im2col"])  # not numba while it compiles
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 8, 8)).astype(np.float32)
    w, b = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    for xs, ws in [(x, w), (np.asfortranarray(x), w), (x.astype(np.int64), w.astype(">f8")), (x.astype(">f4"), w)]:
        before = xs.copy(), ws.copy()
        y = [fastconv.conv2d(xs, ws, b, padding=1, backend=backend, **OK) for _ in range(2)]
        g = [fastconv.conv2d_backward(y[0], xs, ws, padding=1, bias=True, backend=backend, **OK) for _ in range(2)]
        for first, second in [(y[0], y[1]), *zip(g[0], g[1])]:
            np.testing.assert_array_equal(second, first)
            assert second.dtype == first.dtype and second.flags.c_contiguous
        np.testing.assert_array_equal(xs, before[0])
        np.testing.assert_array_equal(ws, before[1])
    assert len(api._VALIDATED) == 6  # three dtype pairs (not the memory order), two passes


_RNG = np.random.default_rng(2)
_X, _W, _B = (_RNG.standard_normal(s).astype(np.float32) for s in ((2, 6, 8, 8), (4, 3, 3, 3), (4,)))
_WT = _RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)  # a transposed conv's weight, groups=2
REPEATS = {  # a call and its arguments each way it is kept (api._VALIDATED): the repeat must agree
    "unbatched": lambda **kw: fastconv.conv2d(_X[0], _W, _B, padding=1, groups=2, **kw),
    "NHWC": lambda **kw: fastconv.conv2d(_X.transpose(0, 2, 3, 1), _W.transpose(0, 2, 3, 1), _B, padding=1, groups=2,
                                    layout="NHWC", **kw),
    "reflect": lambda **kw: fastconv.conv2d(_X, _W, _B, padding=2, groups=2, padding_mode="reflect", **kw),
    "reflect backward": lambda **kw: fastconv.conv2d_backward(np.ones((2, 4, 10, 10), np.float32), _X, _W, padding=2,
                                                         groups=2, padding_mode="reflect", bias=True, **kw),
    "NHWC backward": lambda **kw: fastconv.conv2d_backward(np.ones((1, 6, 6, 4), np.float32),
                                                           _X[:1].transpose(0, 2, 3, 1), _W.transpose(0, 2, 3, 1),
                                                           groups=2, layout="NHWC", **kw),
    "transposed": lambda **kw: fastconv.conv_transpose2d(_X, _WT, _B, stride=2, output_padding=1, groups=2, **kw),
    "transposed unbatched": lambda **kw: fastconv.conv_transpose2d(_X[0], _WT, stride=2, groups=2, **kw),
    "transposed backward": lambda **kw: fastconv.conv_transpose2d_backward(np.ones((2, 4, 18, 18), np.float32), _X, _WT,
                                                                      stride=2, output_padding=1, groups=2,
                                                                      bias=True, **kw),
    "1-D": lambda **kw: fastconv.conv1d(_X[:, :, 0], _W[:, :, 0], padding="same", groups=2, **kw),
    "3-D": lambda **kw: fastconv.conv3d(_X[:, :, None], _W[:, :, None], padding=(0, 1, 1), groups=2, **kw),
}


@pytest.mark.parametrize("backend", ["im2col", "auto"])
@pytest.mark.parametrize("name", list(REPEATS))
def test_every_kind_of_call_repeats_with_the_same_result(name, backend, monkeypatch):
    from fastconv import api, backends
    monkeypatch.setattr(api, "_VALIDATED", {})
    monkeypatch.setattr(backends, "available", lambda: ["reference", "im2col"])  # auto's pick final at once
    first = REPEATS[name](backend=backend)
    assert len(api._VALIDATED) == 1
    again = REPEATS[name](backend=backend)
    for a, b in zip(first if isinstance(first, tuple) else (first,), again if isinstance(again, tuple) else (again,)):
        if a is None:
            assert b is None
            continue
        np.testing.assert_array_equal(b, a)
        assert b.dtype == a.dtype and b.shape == a.shape and b.flags.c_contiguous
