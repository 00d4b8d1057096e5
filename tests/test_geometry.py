"""The shape arithmetic: out_size by invariant and against torch, padding forms, Geometry fields."""

import itertools
import math

import numpy as np
import pytest
import torch

from fastconv.backends._padding_nan import in_padding
from fastconv.geometry import Geometry, out_size, pair, same_padding, side_padding


@pytest.mark.parametrize("size", [1, 2, 5, 8, 13])
@pytest.mark.parametrize("k, stride, pad, dil", [(1, 1, 0, 1), (3, 1, 2, 1), (3, 2, 1, 1), (2, 3, 0, 2),
                                                  (5, 2, 4, 3), (4, 1, 3, 1)])
def test_out_size_matches_torch_and_invariant(size, k, stride, pad, dil):
    o = out_size(size, k, stride, pad, dil)
    span = dil * (k - 1) + 1
    if o >= 1:
        # The last window fits in the padded input and one more stride would not.
        assert (o - 1) * stride + span <= size + pad < o * stride + span
        y = torch.nn.functional.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, k, 1),
                                       stride=(stride, 1), padding=0, dilation=(dil, 1)) if pad == 0 else None
        if y is not None:
            assert y.shape[2] == o
    else:
        assert size + pad < span


@pytest.mark.parametrize("size", range(1, 12))
@pytest.mark.parametrize("k, stride, dil", [(1, 1, 1), (3, 1, 1), (4, 1, 1), (3, 2, 1), (2, 3, 2), (5, 2, 1)])
def test_same_padding_gives_ceil_outputs_with_extra_at_the_end(size, k, stride, dil):
    before, after = same_padding(size, k, stride, dil)
    assert 0 <= after - before <= 1
    assert out_size(size, k, stride, before + after, dil) == math.ceil(size / stride)


def test_pair_and_side_padding_forms():
    assert pair(3, "stride") == (3, 3) and pair([2, 5], "stride") == (2, 5) and pair(np.int64(2), "s") == (2, 2)
    assert side_padding(1) == ((1, 1), (1, 1))
    assert side_padding((1, 2)) == ((1, 1), (2, 2))
    assert side_padding([[0, 1], (2, 3)]) == ((0, 1), (2, 3))
    with pytest.raises(ValueError, match="`stride`.*3 values for 2 spatial axes"):
        pair((1, 2, 3), "stride")


def test_geometry_from_args():
    g = Geometry.from_args((2, 6, 9, 8), (4, 3, 3, 2), stride=(2, 1), padding="same", dilation=(1, 2), groups=2)
    assert (g.oh, g.ow) == (5, 8)
    assert (g.pt, g.pb, g.pl, g.pr) == (1, 1, 1, 1)
    assert g.c_in_g == 3 and g.c_out_g == 2
    assert g.x_shape == (2, 6, 9, 8) and g.w_shape == (4, 3, 3, 2) and g.y_shape == (2, 4, 5, 8)
    assert g.macs == 2 * 4 * 5 * 8 * 3 * 3 * 2
    valid = Geometry.from_args((1, 1, 5, 5), (1, 1, 3, 3), padding="valid")
    assert (valid.oh, valid.ow, valid.pt + valid.pb + valid.pl + valid.pr) == (3, 3, 0)


def test_tiles_cover_the_last_two_output_axes_the_last_ones_past_the_edge():
    g = Geometry.from_args((2, 6, 9, 8), (4, 3, 3, 2), stride=(2, 1), padding="same", dilation=(1, 2), groups=2)
    assert (g.oh, g.ow) == (5, 8)
    assert (g.tiles(2), g.tiles(4)) == (3 * 4, 2 * 2)
    volume = Geometry.from_args((1, 1, 3, 7, 7), (1, 1, 3, 3, 3), padding=1)  # planes of 7x7
    assert volume.tiles(2) == 4 * 4
    signal = Geometry.from_args((1, 1, 9), (1, 1, 3))  # one row of 7
    assert signal.tiles(2) == 4


@pytest.mark.parametrize("size, k, stride, pads, dil", [
    (5, 3, 10**18, (0, 0), 1), (6, 2, 7, (3, 9), 1), (9, 3, 4, (1, 5), 2), (4, 1, 3, (0, 0), 1), (7, 3, 1, (2, 2), 1)])
def test_canonical_geometry_keeps_the_output_size_formula(size, k, stride, pads, dil):
    """Canonicalising (the stride of a single output, padding no window reaches) keeps every
    geometry consistent: its own stride and padding still give its output size."""
    g = Geometry.from_args((1, 1, size), (1, 1, k), stride=stride, padding=[pads], dilation=dil)
    (a, b), = g.padding
    assert g.out_size[0] == out_size(size, k, g.stride[0], a + b, dil)
    assert g.stride[0] <= max(size + sum(pads), stride) and b <= pads[1]
    flipped = g.input_gradient_as_forward()
    if flipped is not None:
        (fa, fb), = flipped.padding
        assert flipped.out_size == g.in_size == (out_size(g.out_size[0], k, 1, fa + fb, dil),)


def test_stride_phases_compose_the_input_gradient():
    """Each input position gets its gradient from exactly the (output, tap) pairs that read it:
    through its stride phase's forward (the phase's taps flipped, over gy padded or cropped by
    ``pad``) where a phase holds it, from none where none does. Sizes 1-12, strides 1-4 (or
    dilations 1-3 at unit stride), kernels 1-5, any padding."""
    checked = 0
    for size, s, d, k, before, after in itertools.product(range(1, 13), range(1, 5), (1, 2, 3), range(1, 6), range(5),
                                                          (0, 3)):
        if s > 1 and d > 1:
            continue
        try:
            g = Geometry.from_args((1, 1, size), (1, 1, k), stride=s, padding=[(before, after)], dilation=d)
        except ValueError:  # an empty output
            continue
        (p0, _), = g.padding
        (s,), out = g.stride, g.out_size[0]  # (canonical: the stride of a single output may shrink)
        reads = {i: sorted((o, t) for o in range(out) for t in range(k) if o * s - p0 + d * t == i)
                 for i in range(size)}
        held = set()
        for (k0,), (r,), (m,), (pad,), (n,) in g.stride_phases():
            assert n == len(range(r, size, s)) and k0 < min(k, s)
            for q, i in enumerate(range(r, size, s)):
                held.add(i)
                got = [(q - pad + d * j, k0 + s * (m - 1 - j)) for j in range(m)]  # flipped taps
                assert sorted(p for p in got if 0 <= p[0] < out) == reads[i]
        assert all(not reads[i] for i in range(size) if i not in held)
        checked += 1
    assert checked > 1000
    with pytest.raises(ValueError, match="unit stride or dilation"):
        Geometry.from_args((1, 1, 9, 9), (1, 1, 3, 3), stride=2, dilation=2).stride_phases()


def test_phases_split_a_dilated_convolution_into_undilated_ones():
    """Every output of every phase reads, through its undilated geometry, exactly the input
    pixels (or padding) that the dilated convolution reads; paddings are never negative; each
    input phase serves one output phase. Sizes 1-12, dilations 1-4, kernels 1-3, any padding."""
    checked = 0
    for size, d, k, before, after in itertools.product(range(1, 13), range(1, 5), (1, 2, 3), range(6), range(0, 6, 2)):
        try:
            g = Geometry.from_args((1, 1, size), (1, 1, k), padding=[(before, after)], dilation=d)
        except ValueError:  # an empty output
            continue
        (p0, _), = g.padding
        phases = g.phases()
        assert sorted(p for (p,), _, _ in phases) == list(range(min(d, g.out_size[0])))
        assert len({r for _, r, _ in phases}) == len(phases)
        for (p,), (r,), sub in phases:
            for q, o in enumerate(range(p, g.out_size[0], d)):
                reads = [o - p0 + d * j for j in range(k)]
                if sub is None:
                    assert not any(0 <= i < size for i in reads)
                    continue
                (a, b), = sub.padding
                assert a >= 0 and b >= 0 and sub.dilation == (1,) and sub.stride == (1,)
                assert sub.out_size[0] == len(range(p, g.out_size[0], d)) == sub.in_size[0] + a + b - k + 1
                got = [r + d * (q - a + j) if 0 <= q - a + j < sub.in_size[0] else None for j in range(k)]
                assert got == [i if 0 <= i < size else None for i in reads]
            checked += 1
    assert checked > 1000
    two_d = Geometry.from_args((2, 4, 9, 8), (6, 4, 3, 3), padding=2, dilation=(2, 3))
    assert len(two_d.phases()) == 6 and all(sub.n == 2 and sub.dilation == (1, 1) for _, _, sub in two_d.phases())
    with pytest.raises(ValueError, match="unit stride"):
        Geometry.from_args((1, 1, 9, 9), (1, 1, 3, 3), stride=2, dilation=2).phases()


def test_a_strided_convolution_as_its_phases_stacked_as_channels():
    g = Geometry.from_args((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3).stride_as_channels()
    assert (g.c_in, g.c_out, g.kernel, g.stride, g.padding) == (12, 64, (4, 4), (1, 1), ((0, 0), (0, 0)))
    assert g.in_size == (115, 115) and g.out_size == (112, 112)
    g = Geometry.from_args((1, 2, 1, 300), (5, 2, 1, 9), stride=(1, 3), padding=(0, 1)).stride_as_channels()
    assert (g.c_in, g.kernel, g.out_size, g.in_size) == (6, (1, 3), (1, 98), (1, 100))
    for kwargs in (dict(padding=3), dict(stride=2, groups=3), dict(stride=2, dilation=2)):
        assert Geometry.from_args((1, 3, 32, 32), (6, 1 if "groups" in kwargs else 3, 7, 7),
                                  **kwargs).stride_as_channels() is None


def _along_one_axis(size, k, stride, pads, dil):
    """A 2-D geometry with the given axis first (the other plain) and the 1-D one of that axis."""
    return (Geometry.from_args((1, 1, size, 4), (1, 1, k, 1), stride=(stride, 1), padding=(pads, (0, 0)),
                               dilation=(dil, 1)),
            Geometry.from_args((1, 1, size), (1, 1, k), stride=stride, padding=(pads,), dilation=dil))


@pytest.mark.parametrize("size, k, stride, pads, dil", [
    (1, 3, 1, (1, 1), 1),  # one output: the kernel's first and last rows read padding only
    (2, 5, 1, (3, 0), 1),
    (5, 3, 2, (1, 1), 1),
    (3, 3, 1, (0, 6), 3),
    (4, 2, 3, (5, 5), 2),
    (9, 3, 1, (1, 1), 1),
])
def test_a_blind_tap_reads_padding_at_every_output(size, k, stride, pads, dil):
    """``has_blind_tap`` against the taps' positions counted out (``in_padding``), along each axis
    of a 2-D and a 1-D geometry."""
    geom, line = _along_one_axis(size, k, stride, pads, dil)
    want = any(in_padding(geom, ky, 0).all() for ky in range(k))
    assert geom.has_blind_tap == want
    assert line.has_blind_tap == want


@pytest.mark.parametrize("size, k, stride, pads, dil", [
    (2, 3, 1, (3, 3), 1),  # padding past the kernel's reach: the first and last windows are all padding
    (9, 3, 1, (1, 1), 1),
    (4, 3, 2, (4, 0), 2),
    (1, 3, 3, (2, 2), 2),  # the window's taps straddle the one input pixel
    (6, 2, 4, (0, 7), 1),
    (5, 3, 2, (2, 2), 1),
])
def test_a_blind_output_has_its_whole_window_in_the_padding(size, k, stride, pads, dil):
    """``has_blind_output`` against every output's window counted out (``in_padding`` at every
    tap), along each axis of a 2-D and a 1-D geometry."""
    geom, line = _along_one_axis(size, k, stride, pads, dil)
    want = np.logical_and.reduce([in_padding(geom, ky, 0) for ky in range(k)]).any()
    assert geom.has_blind_output == want
    assert line.has_blind_output == want


@pytest.mark.parametrize("size, k, stride, pads, dil", [
    (4, 5, 1, (2, 2), 1),  # 14 of 20
    (3, 3, 1, (3, 3), 1),  # outputs whose windows are all padding
    (6, 3, 2, (1, 0), 2),
    (9, 3, 1, (0, 0), 1),  # unpadded: every tap
])
def test_the_share_of_taps_that_read_the_input(size, k, stride, pads, dil):
    """``input_taps_share`` against every output's taps counted out (``in_padding``), along one axis
    and along both of a 2-D geometry (the product of the axes' shares)."""
    geom, line = _along_one_axis(size, k, stride, pads, dil)
    want = 1 - np.mean([in_padding(geom, ky, 0) for ky in range(k)])
    assert geom.input_taps_share == pytest.approx(want) and line.input_taps_share == pytest.approx(want)
    square = Geometry.from_args((1, 1, size, size), (1, 1, k, k), stride=stride, padding=(pads, pads), dilation=dil)
    assert square.input_taps_share == pytest.approx(want * want)
