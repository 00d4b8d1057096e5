"""``backend="auto"``: each branch of the rule in ``backends.choose``, and that the public functions
run exactly what ``choose_backend`` reports."""

import math
import time
import types

import numpy as np
import pytest

import fastconv
from fastconv import _threads, api, backends, cases
from fastconv.backends import _auto_rules as rules
from fastconv.geometry import Geometry

DENSE = Geometry.from_args((8, 64, 28, 28), (64, 64, 3, 3), padding=1)
DEPTHWISE = Geometry.from_args((8, 64, 28, 28), (64, 1, 3, 3), padding=1, groups=64)
GROUPED = Geometry.from_args((8, 64, 28, 28), (64, 16, 3, 3), padding=1, groups=4)
ONE_CHANNEL_GROUP = Geometry.from_args((64, 1, 28, 28), (8, 1, 3, 3))  # groups == C_in == 1: not depthwise


SMALL_IMAGES = Geometry.from_args((8, 128, 7, 7), (128, 128, 3, 3), padding=1)  # 49 pixels each
# few pixels but few channels per group: numba's loops beat BLAS's blocking of small products
SMALL_IMAGES_FEW_CHANNELS = Geometry.from_args((8, 32, 7, 7), (32, 32, 3, 3), padding=1)
SMALL_IMAGES_GROUPED = Geometry.from_args((8, 256, 14, 14), (256, 8, 3, 3), padding=1, groups=32)  # ResNeXt
POINTWISE = Geometry.from_args((8, 64, 28, 28), (128, 64, 1, 1))  # many pixels, few channels: numba
POINTWISE_SMALL_IMAGES = Geometry.from_args((8, 64, 14, 14), (64, 64, 1, 1))  # few pixels: a matrix product
POINTWISE_MANY_CHANNELS = Geometry.from_args((8, 256, 20, 20), (256, 256, 1, 1))
POINTWISE_STRIDED = Geometry.from_args((8, 256, 28, 28), (512, 256, 1, 1), stride=2)  # of the pixels it reads
POINTWISE_PADDED = Geometry.from_args((8, 256, 12, 12), (512, 256, 1, 1), padding=1)  # not one product
POINTWISE_FEW_CHANNELS = Geometry.from_args((64, 4, 14, 14), (64, 4, 1, 1))  # fewer than a tile's rows
# 3-D: the channel line reads the call's own channels, not the lift's (kD x C_in per plane)
VOLUME_STRIDED = Geometry.from_args((2, 64, 16, 28, 28), (128, 64, 3, 3, 3), stride=2, padding=1)  # 14x14 out
VOLUME_SMALL_PLANES = Geometry.from_args((2, 128, 8, 14, 14), (128, 128, 3, 3, 3), padding=1)
VOLUME = Geometry.from_args((2, 64, 16, 56, 56), (64, 64, 3, 3, 3), padding=1)  # the 3d suite's: as 2-D
VOLUME_PLANES = Geometry.from_args((2, 64, 16, 56, 56), (64, 64, 1, 3, 3), padding=(0, 1, 1))
# dilated 3x3 at stride 1: winograd on the phases where they are 4x4 pixels or more, 128+ channels
DILATED = Geometry.from_args((8, 128, 28, 28), (128, 128, 3, 3), padding=2, dilation=2)  # phases 14x14
DILATED_SMALL_PHASES = Geometry.from_args((8, 128, 24, 24), (128, 128, 3, 3), padding=8, dilation=8)  # 3x3
DILATED_FEW_CHANNELS = Geometry.from_args((8, 96, 28, 28), (96, 96, 3, 3), padding=2, dilation=2)
FEW_TILES = Geometry.from_args((1, 512, 7, 7), (512, 512, 3, 3), padding=1)  # 16 F(2x2) tiles: PATCH_ROWS
FEW_TILES_12X12 = Geometry.from_args((1, 384, 12, 12), (384, 384, 3, 3), padding=1)  # 36
ENOUGH_TILES = Geometry.from_args((3, 256, 8, 8), (256, 256, 3, 3), padding=1)  # 48: winograd
FEW_TILES_MANY_CHANNELS = Geometry.from_args((1, 1024, 7, 7), (1024, 1024, 3, 3), padding=1)  # PATCH_ROWS too
FEW_TILES_GROUPED = Geometry.from_args((1, 256, 7, 7), (256, 8, 3, 3), padding=1, groups=32)  # numba, as before
# 64 channels on small images: numba's implicit forward runs both passes (where AVX-512 runs it) up
# to 81 output pixels, below 512 F(2x2) tiles in the batch; past them, and past 64 channels, winograd
IMPLICIT_7X7 = Geometry.from_args((16, 64, 7, 7), (64, 64, 3, 3), padding=1)  # 256 tiles
IMPLICIT_9X9 = Geometry.from_args((16, 64, 9, 9), (64, 64, 3, 3), padding=1)  # 400
SMALL_IMAGES_MANY_TILES = Geometry.from_args((32, 64, 7, 7), (64, 64, 3, 3), padding=1)  # 512
PAST_SMALL_10X10 = Geometry.from_args((32, 64, 10, 10), (64, 64, 3, 3), padding=1)
PAST_WIDE_CHANNELS = Geometry.from_args((32, 65, 7, 7), (65, 65, 3, 3), padding=1)


def _pointwise_with_macs(macs_at_most):
    """The largest 1x1 geometry over 14x14 images (growing the batch) with at most ``macs_at_most`` MACs."""
    n = 1
    while Geometry.from_args((n + 1, 16, 14, 14), (16, 16, 1, 1)).macs <= macs_at_most:
        n += 1
    return Geometry.from_args((n, 16, 14, 14), (16, 16, 1, 1))


SMALL = _pointwise_with_macs(rules.AUTO_NUMBA_MAX_MACS)
JUST_ABOVE = Geometry.from_args((SMALL.n + 1, 16, 14, 14), (16, 16, 1, 1))  # 196 pixels: a matrix product


def _tiles() -> bool:
    """Whether this machine runs numba's register tiles (1x1 matrix products; AVX-512 only)."""
    try:
        from fastconv.backends import _numba_gemm
    except ImportError:  # no numba
        return False
    return _numba_gemm.WIDE


def _narrow_tiles() -> bool:
    """Whether numba's register tiles run here on AVX2 (no AVX-512)."""
    try:
        from fastconv.backends import _numba_gemm
    except ImportError:  # no numba
        return False
    return _numba_gemm.TILES and not _numba_gemm.WIDE


def _full_width() -> bool:
    """Whether numba's register tiles run AVX-512 on full-width units here (an Intel Xeon)."""
    try:
        from fastconv.backends import _numba_gemm
    except ImportError:  # no numba
        return False
    return _numba_gemm.FULL_WIDTH


# 1x1 kernels at unit stride, unpadded, in one group: numba's register tiles where the CPU has
# AVX-512, else BLAS's products on few pixels or many channels
PRODUCT = "numba" if _tiles() else "im2col"
# ... but with 128+ channels a side BLAS's on AVX-512's half-width units too (``_half_width_pointwise``)
PRODUCT_MANY_CHANNELS = "numba" if _full_width() else "im2col"
# 48+ channels at a stride or with fewer than 9 taps: numba's register tiles or packed loops where the
# CPU has AVX-512, else BLAS's products (numba's loops then run BLAS's vector width)
FEW_TAPS = "numba" if _tiles() else "im2col"
# strided layers of many channels on numba's patches: on AVX2's tiles too, their input gradient
# always, their forward (and a 3-D call's weight gradient) over 768+ reduction steps (3x3x3 from 64 channels)
PATCHES = "numba" if _tiles() or _narrow_tiles() else "im2col"
# 3x3 at stride 1 with 64+ channels per group: winograd, its products on those tiles or on BLAS
TILED_3X3 = "winograd"
# ... but numba on small images where its implicit forward runs both passes (those tiles too);
# without them, 64 channels over 7x7 to 9x9 pixels are BLAS-shaped: winograd
IMPLICIT = "numba" if _tiles() else "winograd"
# one image of 1024 channels over 7x7 pixels: winograd without full-width AVX-512 (there numba's
# patches, the threads splitting the output channels, as on 384+ input channels over few pixels;
# on half-width AVX-512 as on few F(2x2) tiles of 12M+ multiply-adds: PATCH_ROWS, the few-tiles
# row's BLAS without AVX-512)
ONE_IMAGE = "numba" if _full_width() else "winograd"
PATCH_ROWS = "numba" if _tiles() else "im2col"
# 3x3 at stride 1 with 32-63 channels over 28x28 images and up: numba, but winograd on AVX-512's
# half-width units (``AUTO_FEW_CHANNELS_WINOGRAD``)
FEW_CHANNELS_3X3 = "winograd" if _tiles() and not _full_width() else "numba"


@pytest.fixture
def installed(monkeypatch):
    """Pretend only the given backends are installed (and compiled: readiness has its own tests)."""
    monkeypatch.delenv(backends.AUTO_MEASURE_ENV, raising=False)
    monkeypatch.setattr(backends, "_ready", lambda name, dtype: True)
    return lambda *names: monkeypatch.setattr(backends, "available", lambda: list(names))


@pytest.fixture
def tiles(installed, monkeypatch):
    """``tiles(wide, *names)``: numba's AVX-512 register tiles there or not (the rows for CPUs without
    them), only ``names`` installed, auto's cached picks emptied (they rest on the real answers);
    returns the numba backend's module."""
    numba_jit = pytest.importorskip("fastconv.backends.numba_jit")

    def set_up(wide, *names):
        monkeypatch.setattr(numba_jit, "register_tiles", lambda geom: wide)
        # the rows measured on full-width AVX-512 have tests of their own; without AVX-512 no 1x1
        # matrix products run on the tiles (whatever this machine runs)
        monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: False)
        if not wide:  # ... nor patches at stride 1
            monkeypatch.setattr(numba_jit, "matrix_product", lambda geom: False)
            real = numba_jit.patches
            monkeypatch.setattr(numba_jit, "patches", lambda geom: max(geom.stride) > 1 and real(geom))
        monkeypatch.setattr(backends, "_ranked", {})
        installed(*names)
        return numba_jit
    return set_up


def _avx512(tiles, monkeypatch, full: bool):
    """``tiles`` with AVX-512's register tiles and every backend installed, on full-width units
    (an Intel Xeon's) or half-width ones (Zen 4's); returns the numba backend's module."""
    numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: full)
    return numba_jit


@pytest.mark.parametrize("geom, expected", [(DENSE, "numba"), (GROUPED, "numba"), (ONE_CHANNEL_GROUP, "numba"),
                                            (DEPTHWISE, "numba"), (SMALL_IMAGES, "im2col"), (POINTWISE, FEW_TAPS),
                                            (SMALL_IMAGES_FEW_CHANNELS, "numba"), (SMALL_IMAGES_GROUPED, "numba"),
                                            (POINTWISE_SMALL_IMAGES, PRODUCT),
                                            (POINTWISE_MANY_CHANNELS, PRODUCT_MANY_CHANNELS), (SMALL, "numba"),
                                            (JUST_ABOVE, PRODUCT), (POINTWISE_STRIDED, PRODUCT_MANY_CHANNELS),
                                            (POINTWISE_PADDED, "im2col"),
                                            (POINTWISE_FEW_CHANNELS, "im2col")])
def test_rule_with_every_backend(installed, geom, expected):
    installed("reference", "im2col", "numba")
    assert backends.choose(geom, np.float32) == expected


@pytest.mark.parametrize("geom, expected", [(DENSE, TILED_3X3), (SMALL_IMAGES, "winograd"), (DEPTHWISE, "numba"),
                                            (Geometry.from_args((8, 32, 56, 56), (32, 32, 3, 3), padding=1),
                                             FEW_CHANNELS_3X3),
                                            (GROUPED, "numba"),
                                            (SMALL_IMAGES_FEW_CHANNELS, "numba"), (SMALL_IMAGES_GROUPED, "numba"),
                                            (POINTWISE_SMALL_IMAGES, PRODUCT), (SMALL, "numba"),
                                            (VOLUME_STRIDED, PATCHES), (VOLUME_SMALL_PLANES, "winograd"),
                                            (VOLUME, TILED_3X3), (VOLUME_PLANES, TILED_3X3),
                                            (DILATED, TILED_3X3), (DILATED_SMALL_PHASES, "numba"),
                                            (DILATED_FEW_CHANNELS, "numba"),
                                            (FEW_TILES, PATCH_ROWS), (FEW_TILES_12X12, PATCH_ROWS),
                                            (ENOUGH_TILES, "winograd"), (FEW_TILES_MANY_CHANNELS, ONE_IMAGE),
                                            (FEW_TILES_GROUPED, "numba"),
                                            (IMPLICIT_7X7, IMPLICIT), (IMPLICIT_9X9, IMPLICIT),
                                            (SMALL_IMAGES_MANY_TILES, "winograd"),
                                            (PAST_SMALL_10X10, TILED_3X3), (PAST_WIDE_CHANNELS, "winograd"),
                                            (Geometry.from_args((8, 64, 56, 56), (64, 64, 3, 3), stride=2), FEW_TAPS)])
def test_rule_with_winograd(installed, geom, expected):
    installed("reference", "im2col", "numba", "winograd")
    assert backends.choose(geom, np.float32) == expected


STEM = Geometry.from_args((2, 3, 64, 64), (64, 3, 7, 7), stride=2, padding=3)
STEM_FEW_OUTPUTS = Geometry.from_args((2, 3, 64, 64), (16, 3, 7, 7), stride=2, padding=3)
WEIGHT_FEW_TILES = Geometry.from_args((2, 256, 10, 10), (256, 256, 3, 3), padding=1)  # 50 F(2x2) tiles
STRIDED = Geometry.from_args((8, 64, 28, 28), (128, 64, 3, 3), stride=2, padding=1)
STEM_GROUPED = Geometry.from_args((2, 8, 64, 64), (16, 4, 7, 7), stride=2, padding=3, groups=2)  # untimed


@pytest.mark.parametrize("geom, forward, grad_input, grad_weight", [
    (POINTWISE, FEW_TAPS, "im2col", FEW_TAPS), (STEM, "numba", "im2col", "numba" if _tiles() else "im2col"),
    (WEIGHT_FEW_TILES, "winograd", "winograd", "winograd" if _tiles() else "im2col"),  # (full width: numba)
    (STRIDED, FEW_TAPS, PATCHES, FEW_TAPS), (VOLUME_STRIDED, PATCHES, PATCHES, PATCHES),
    (DEPTHWISE, "numba", "numba", "numba"),
    (SMALL, "numba", "numba", "numba"), (DENSE, TILED_3X3, TILED_3X3, TILED_3X3),
    (STEM_GROUPED, "numba", "numba", "numba"), (STEM_FEW_OUTPUTS, "numba", "numba", "numba")])
def test_each_pass_takes_its_own_pick(installed, monkeypatch, geom, forward, grad_input, grad_weight):
    """``AUTO_PASS_RULES``: a gradient's own rows first (1x1 input gradients and those of few input
    channels but 17+ output channels on BLAS; the weight gradient of few tiles, 192+ channels a side
    in one group, on winograd's with AVX-512's half-width units, else on BLAS; that of strided
    layers on BLAS without AVX-512's tiles), never for depthwise or small calls (nor grouped ones where no grouped layer
    was timed), else the forward's row. (Full-width AVX-512's own rows:
    ``test_full_width_avx512_rows``.)"""
    numba_jit = pytest.importorskip("fastconv.backends.numba_jit")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: False)
    installed("reference", "im2col", "numba", "winograd")
    got = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert got == [forward, grad_input, grad_weight]


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("geom, blas", [
    (POINTWISE, True), (STRIDED, True), (VOLUME_STRIDED, True),  # 1x1, 3x3 at stride 2, 3x3x3 at stride 2
    (Geometry.from_args((16, 64, 4096), (64, 64, 3), padding=1), True),  # 1-D, 3 taps
    (Geometry.from_args((2, 64, 16, 56, 56), (64, 64, 3, 1, 1), padding=(1, 0, 0)), True),  # 3x1 over (D, H*W)
    (Geometry.from_args((8, 128, 17, 17), (128, 128, 1, 7), padding=(0, 3)), True),  # 7 taps
    (Geometry.from_args((8, 48, 28, 28), (96, 48, 3, 3), stride=2, padding=1), True),  # the channel line
    (Geometry.from_args((8, 47, 28, 28), (96, 47, 3, 3), stride=2, padding=1), False),
    (Geometry.from_args((16, 64, 16000), (64, 64, 9), padding=4), False),  # 9 taps at stride 1
    (Geometry.from_args((8, 64, 28, 28), (64, 64, 5, 5), padding=2), False),
    (Geometry.from_args((8, 3, 64, 64), (64, 3, 3, 3), stride=2, padding=1), False),  # few channels
    (Geometry.from_args((8, 256, 28, 28), (256, 8, 1, 1), groups=32), False)])  # 8 a group
def test_without_wide_tiles_blas_takes_strided_and_few_tap_calls(tiles, monkeypatch, geom, blas, wide):
    """``AUTO_NARROW_BLAS_CHANNELS``' row: where numba has no AVX-512 register tiles, calls of 48+
    input channels per group at a stride or with fewer than 9 taps run im2col (measured on an AVX2
    Zen 3); with the tiles, the rows of before decide."""
    numba_jit = tiles(wide, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "matrix_product", lambda geom: False)  # the AVX-512 rows, out of the way
    monkeypatch.setattr(numba_jit, "patches", lambda geom: False)
    assert rules._blas_without_wide_tiles(geom) is (blas and not wide)
    if blas and not wide:
        assert backends.choose(geom, np.float32) == "im2col"


@pytest.mark.parametrize("wide, full", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("geom, half, one", [
    (Geometry.from_args((32, 64, 28, 28), (128, 64, 3, 3), stride=2, padding=1), False, False),
    (Geometry.from_args((16, 383, 14, 14), (384, 383, 3, 3), stride=2, padding=1), False, False),
    (Geometry.from_args((16, 384, 14, 14), (384, 384, 3, 3), stride=2, padding=1), True, False),  # the line
    (Geometry.from_args((10, 256, 14, 14), (512, 256, 3, 3), stride=2, padding=1), True, False),  # 490 pixels
    (Geometry.from_args((11, 256, 14, 14), (512, 256, 3, 3), stride=2, padding=1), False, False),  # 539
    (Geometry.from_args((16, 128, 14, 14), (256, 128, 3, 3), stride=2, padding=1), False, False),  # few pixels an image
    (Geometry.from_args((32, 256, 1000), (256, 256, 5), stride=2, padding=2), False, False),  # 1-D
    (Geometry.from_args((1, 192, 56, 56), (48, 192, 3, 3), stride=2, padding=1), True, True),  # 1.4 Mi patches
    (Geometry.from_args((1, 128, 112, 112), (8, 128, 7, 7), stride=2, padding=3), False, False),  # 19 Mi
    (Geometry.from_args((2, 192, 56, 56), (48, 192, 3, 3), stride=2, padding=1), False, False)])
def test_strided_weight_gradients_run_blas_without_avx512_tiles(tiles, monkeypatch, geom, half, one, wide, full):
    """``_strided_weight_blas``: a strided weight gradient of 64+ input channels per group runs BLAS's
    without AVX-512's register tiles; with them numba's, but BLAS's on one image of up to 8 Mi
    elements of patches, and on half-width units from ``AUTO_HALF_WIDTH_WEIGHT_BLAS_CHANNELS``
    input channels per group or under ``AUTO_HALF_WIDTH_WEIGHT_MIN_PIXELS`` output pixels in the
    batch (float64 keeps BLAS's: ``AUTO_DTYPE_RULES``)."""
    numba_jit = tiles(wide, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: full)
    blas = not wide or one or (half and not full)
    assert rules._strided_weight_blas(geom) is blas
    assert backends.choose(geom, np.float32, pass_="grad_weight") == ("im2col" if blas else "numba")
    assert backends.choose(geom, np.float64, pass_="grad_weight") == "im2col"


@pytest.mark.parametrize("wide, full", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("geom, few, channels", [
    (Geometry.from_args((8, 256, 64), (256, 256, 3), padding=1), True, True),  # 64 pixels, 256 channels
    (Geometry.from_args((16, 160, 200), (160, 160, 5), padding=2), True, True),
    (Geometry.from_args((8, 384, 128), (384, 384, 3), padding=1), True, True),  # full-width units' most
    (Geometry.from_args((16, 512, 64), (512, 512, 3), padding=1), True, False),  # ... past it
    (Geometry.from_args((16, 64, 64), (512, 64, 7), padding=3), True, False),  # ... out
    (Geometry.from_args((8, 256, 4096), (256, 256, 3), padding=1), False, True),  # many pixels: not the BLAS row's
    (Geometry.from_args((8, 32, 64), (256, 32, 3), padding=1), False, True),  # few channels: nor this
    (Geometry.from_args((32, 128, 128), (128, 128, 3), stride=2, padding=1), False, True),  # at a stride
    (Geometry.from_args((8, 256, 8, 8), (256, 256, 3, 3), padding=1), False, True)])  # 2-D
def test_on_avx512_one_d_calls_of_few_pixels_run_numba(tiles, monkeypatch, geom, few, channels, implicit, wide, full):
    """``_one_d_implicit``: on AVX-512's half-width units a 1-D call at unit stride of few pixels and
    many channels (``_blas_shaped``) runs numba's weight gradient, and its forward and input
    gradient where numba's implicit forward runs them; on full-width units every pass, up to
    ``AUTO_FULL_WIDTH_1D_MAX_CHANNELS`` channels a side, where numba's implicit forward runs the
    forward (and the input gradient where it runs that), but in float64 (BLAS's, ``AUTO_DTYPE_RULES``);
    elsewhere the rows of before."""
    numba_jit = tiles(wide, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: full)
    monkeypatch.setattr(numba_jit, "implicit_forward", lambda geom: implicit)
    monkeypatch.setattr(numba_jit, "implicit_input_gradient", lambda geom: implicit)
    taken = few and wide and (not full or (channels and implicit))
    assert rules._one_d_implicit(geom, None) is taken
    assert rules._one_d_implicit(geom, "implicit_forward") is (taken and implicit)
    if few:
        assert rules._blas_shaped(geom)
        want = ["numba" if taken and implicit else "im2col"] * 2 + ["numba" if taken else "im2col"]
        assert [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES] == want
        float64 = ["im2col"] * 3 if full else want
        assert [backends.choose(geom, np.float64, pass_=p) for p in backends.PASSES] == float64


@pytest.mark.parametrize("wide, full", [(False, False), (True, False), (True, True)])
def test_numba_pixel_tiles_take_the_forward_with_avx512_tiles(tiles, monkeypatch, wide, full):
    """``_on_pixel_tiles``: where numba says its tiles of output pixels run the forward, auto gives it
    numba with AVX-512's tiles, full-width units or half-width ones (not 3x3 at stride 1), past the
    BLAS row of few pixels per image and many channels."""
    numba_jit = tiles(wide, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: full)
    monkeypatch.setattr(numba_jit, "pixel_tiles", lambda geom: True)
    few = Geometry.from_args((32, 384, 7, 7), (16, 384, 3, 3), stride=2, padding=1)
    assert rules._blas_shaped(few)
    assert rules._on_pixel_tiles(few, "pixel_tiles") is wide
    if wide:
        assert backends.choose(few, np.float32) == "numba"
    assert not rules._on_pixel_tiles(Geometry.from_args((8, 256, 14, 14), (16, 256, 3, 3), padding=1),
                                        "pixel_tiles")  # 3x3 at stride 1: winograd's rows


def test_numba_says_which_passes_run_its_implicit_forward():
    """``numba_jit.implicit_forward`` / ``implicit_input_gradient`` answer from ``whole_choices``
    (float32): a strided call's input gradient is not one implicit forward."""
    numba_jit = pytest.importorskip("fastconv.backends.numba_jit")
    for geom in (Geometry.from_args((8, 256, 64), (256, 256, 3), padding=1),
                 Geometry.from_args((8, 64, 128), (64, 64, 3), stride=2, padding=1)):
        chosen = numba_jit.whole_choices(geom, np.float32)
        assert numba_jit.implicit_forward(geom) is (chosen.forward == "implicit")
        assert numba_jit.implicit_input_gradient(geom) is (
            max(geom.stride) == 1 and dict(chosen.phases).get((0, 0)) == "implicit")


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, blas", [
    (Geometry.from_args((32, 256, 7, 7), (256, 256, 5, 5), padding=2), True),  # rows of 11 for 7 outputs
    (Geometry.from_args((1, 512, 7, 7), (512, 512, 7, 7), padding=3), True),
    (Geometry.from_args((16, 256, 9, 9), (384, 256, 5, 5), padding=2), True),  # 13 for 9: 1.44
    (Geometry.from_args((32, 256, 14, 14), (256, 256, 5, 5), padding=2), False),  # 18 for 14: 1.29
    (Geometry.from_args((32, 128, 7, 7), (256, 128, 5, 5), padding=2), False),  # 128 input channels
    (Geometry.from_args((32, 256, 7, 7), (256, 256, 3, 3), padding=1), False),  # 3x3
    (Geometry.from_args((32, 256, 7, 7), (256, 256, 5, 5), padding=2, stride=2), False),
    (Geometry.from_args((32, 256, 7, 7), (256, 128, 5, 5), padding=2, groups=2), False),
    (Geometry.from_args((8, 256, 4, 7, 7), (256, 256, 3, 5, 5), padding=(1, 2, 2)), False)])  # 3-D
def test_on_half_width_avx512_the_weight_gradient_of_wide_rows_runs_blas(tiles, monkeypatch, geom, blas, full):
    """``AUTO_WIDE_ROWS_RATIO``: on AVX-512's half-width units, the weight gradient of a 2-D kernel
    past 3x3 at stride 1, 256+ channels a side, one group, whose padded rows are 1.4x the output's
    width or more runs BLAS's patches; not where it was not measured (full-width units)."""
    _avx512(tiles, monkeypatch, full)
    assert rules._wide_rows_weight(geom) is (blas and not full)
    if blas and not full:  # (but numba's per-tap weight gradient of small images first: ``_images_weight``)
        want = "numba" if rules._images_weight(geom) else "im2col"
        assert backends.choose(geom, np.float32, pass_="grad_weight") == want


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, numba", [
    (FEW_TILES, True), (FEW_TILES_12X12, True),  # 16 and 36 F(2x2) tiles
    (Geometry.from_args((2, 128, 7, 7), (128, 128, 3, 3), padding=1), True),  # 14.5M multiply-adds
    (Geometry.from_args((1, 192, 7, 7), (192, 192, 3, 3), padding=1), True),  # 16.3M
    (Geometry.from_args((1, 128, 8, 8), (128, 128, 3, 3), padding=1), False),  # 9.4M
    (Geometry.from_args((1, 128, 7, 7), (128, 128, 3, 3), padding=1), False),  # 7.2M
    (ENOUGH_TILES, False), (FEW_TILES_MANY_CHANNELS, False), (FEW_TILES_GROUPED, False),
    (Geometry.from_args((1, 512, 7, 7), (512, 512, 3, 3), stride=2, padding=1), False),  # not the few-tiles row's
    (Geometry.from_args((1, 512, 1, 7, 7), (512, 512, 1, 3, 3), padding=(0, 1, 1)), False)])  # 3-D: not measured
def test_on_half_width_avx512_few_tiles_forward_runs_numba_patch_rows(tiles, monkeypatch, geom, numba, full):
    """``AUTO_FEW_TILES_PATCH_ROWS_MACS``: on AVX-512's half-width units, the forward of a 2-D 3x3
    stride-1 layer of one group on few F(2x2) tiles with 12M+ multiply-adds runs numba's patches,
    the threads splitting the output channels, where the few-tiles row gave BLAS; the gradients
    keep that row's BLAS on one image. Not on full-width units (their own patch-rows row), nor with one thread
    (no split: ``numba_jit.patch_rows``)."""
    _avx512(tiles, monkeypatch, full)
    assert rules._few_tiles_patch_rows(geom) is (numba and not full)
    if numba and not full:
        # (two images and more: the gradients' own half-width row, ``_half_width_few_tiles``)
        gradients = ["winograd", "numba"] if rules._half_width_few_tiles(geom) else ["im2col", "im2col"]
        assert [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES] == ["numba", *gradients]
        with fastconv.threads(1):
            assert not rules._few_tiles_patch_rows(geom)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("geom, blas", [
    (STEM, True), (Geometry.from_args((64, 1, 28, 28), (17, 1, 5, 5)), True),  # the channel line
    (ONE_CHANNEL_GROUP, False), (STEM_FEW_OUTPUTS, False),  # 8 and 16 output channels
    (STEM_GROUPED, False), (Geometry.from_args((8, 5, 32, 32), (32, 5, 3, 3), padding=1), False)])
def test_without_wide_tiles_the_weight_gradient_of_few_input_channels_runs_blas(tiles, geom, blas, wide):
    """Up to 4 input channels and 17+ output channels: numba's loops won below."""
    tiles(wide, "reference", "im2col", "numba")
    assert (backends.choose(geom, np.float32, pass_="grad_weight") == "im2col") is (blas and not wide)
    # the input gradient's row, whatever the CPU
    assert (backends.choose(geom, np.float32, pass_="grad_input") == "im2col") is blas


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, forward, grad_input, grad_weight", [
    # few pixels, many input channels, up to 32 output channels: numba's (the line: 33 -> BLAS's;
    # the forward numba's tiles of output pixels past it, and on one image)
    (Geometry.from_args((8, 192, 14, 14), (8, 192, 3, 3), padding=2, dilation=2), "numba", "numba", "numba"),
    (Geometry.from_args((16, 384, 10, 10), (24, 384, 5, 5), padding=2), "numba", "numba", "numba"),
    (Geometry.from_args((16, 384, 10, 10), (32, 384, 5, 5), padding=2), "numba", "numba", "numba"),
    (Geometry.from_args((16, 384, 10, 10), (33, 384, 5, 5), padding=2), "numba", "im2col", "im2col"),
    (Geometry.from_args((1, 384, 10, 10), (24, 384, 5, 5), padding=2), "numba", "im2col", "im2col"),  # one image
    # ... at a stride from 49 output pixels an image (the input gradient at any size: the strided
    # input gradients' row of few output channels for the taps, which holds on full width too)
    (Geometry.from_args((8, 256, 28, 28), (16, 256, 3, 3), stride=2, padding=1), "numba", "numba", "numba"),
    (Geometry.from_args((16, 192, 14, 14), (24, 192, 5, 5), stride=2, padding=2), "numba", "numba", "numba"),
    (Geometry.from_args((16, 256, 12, 12), (32, 256, 3, 3), stride=2, padding=1), "numba", "numba", "im2col"),
    # strided weight gradients of 64+ input channels: numba's, but BLAS's for one image of up to
    # 8 Mi elements of patches (3x3 192 -> 48 over 28x28 output pixels: 1.4 Mi; 7x7 128 -> 8 over
    # 56x56: 19 Mi); the first one's forward numba's (784 output pixels: ``AUTO_ONE_IMAGE_FORWARD_PIXELS``)
    (Geometry.from_args((1, 192, 56, 56), (48, 192, 3, 3), stride=2, padding=1), "numba", "numba", "im2col"),
    (Geometry.from_args((1, 128, 112, 112), (8, 128, 7, 7), stride=2, padding=3), "numba", "numba", "numba"),
    (Geometry.from_args((2, 192, 56, 56), (48, 192, 3, 3), stride=2, padding=1), "numba", "numba", "numba"),
    # 8x as many output channels as input ones: BLAS's from 512 (the input gradient from 256)
    # (the forward's only up to 4 input channels or at a stride)
    (Geometry.from_args((64, 3, 10, 10), (512, 3, 7, 7), padding=3), "im2col", "im2col", "im2col"),
    (Geometry.from_args((32, 24, 256), (512, 24, 7), stride=2, padding=3), "im2col", "im2col", "im2col"),
    (Geometry.from_args((8, 64, 1024), (512, 64, 5), padding=2), "numba", "im2col", "im2col"),
    (Geometry.from_args((8, 65, 1024), (512, 65, 5), padding=2), "numba", "numba", "numba"),  # 7.9x
    (Geometry.from_args((16, 32, 14, 14), (256, 32, 5, 5), padding=2), "numba", "im2col", "numba"),
    (Geometry.from_args((16, 32, 14, 14), (255, 32, 5, 5), padding=2), "numba", "numba", "numba"),
    (Geometry.from_args((8, 8, 28, 28), (512, 8, 1, 1)), "numba", "im2col", "numba"),  # 1x1: its own rows
    # ... at a stride: numba's input gradient (2-D only)
    (Geometry.from_args((8, 256, 28, 28), (512, 256, 1, 1), stride=2), "numba", "numba", "numba"),
    (Geometry.from_args((8, 256, 28), (512, 256, 1), stride=2), "numba", "im2col", "numba"),
    # kD x 1 x 1 kernels at unit stride: BLAS's shifted products forward and backward to the input
    (Geometry.from_args((4, 64, 8, 56, 56), (64, 64, 3, 1, 1), padding=(1, 0, 0)), "im2col", "im2col", "numba"),
    (Geometry.from_args((16, 48, 8, 56, 56), (32, 48, 3, 1, 1), padding=(1, 0, 0)), "im2col", "numba", "numba"),
    (Geometry.from_args((32, 31, 8, 28, 28), (64, 31, 3, 1, 1)), "numba", "im2col", "numba"),  # the lines: 32, 64
    (Geometry.from_args((2, 64, 16, 56, 56), (64, 64, 3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)),
     "numba", "numba", "numba")])
def test_full_width_avx512_rows(tiles, monkeypatch, geom, forward, grad_input, grad_weight, full):
    """With AVX-512 on full-width units (an Intel Xeon measured), numba's kernels beat BLAS's few-row
    products (up to 32 output channels where ``_blas_shaped`` gives im2col) and lose to its products
    of many output channels beside few input channels, and to its shifted products of kD x 1 x 1
    kernels; elsewhere (Zen 4, AVX2) the rows of before."""
    numba_jit = tiles(True, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "matrix_product", lambda geom: math.prod(geom.kernel) == 1)
    picks = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: full)
    monkeypatch.setattr(backends, "_ranked", {})
    if full:  # numba's tiles of output pixels within such a CPU's limits (``PIXELS``; not Zen 4's)
        monkeypatch.setattr(numba_jit, "PIXELS", True)
        monkeypatch.setattr(numba_jit, "PIXELS_HALF_WIDTH", False)
        monkeypatch.setattr(numba_jit, "IMAGES", False)  # (Zen 4's only)
        numba_jit.forget_kernels()
    try:
        got = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    finally:
        numba_jit.forget_kernels()  # (the kernels chosen with PIXELS set)
    assert got == ([forward, grad_input, grad_weight] if full else picks)
    if full and got != picks:  # a row of its own decided
        assert [forward, grad_input, grad_weight] != picks


@pytest.mark.parametrize("geom, split", [
    (Geometry.from_args((4, 512, 7, 7), (512, 512, 3, 3), padding=1), True),  # 64 F(2x2) tiles
    (Geometry.from_args((4, 384, 9, 9), (384, 384, 3, 3), padding=1), True),  # the line: 384; 100 tiles
    (Geometry.from_args((2, 512, 14, 14), (512, 512, 3, 3), padding=1), True),  # 98 tiles
    (Geometry.from_args((8, 512, 7, 7), (512, 512, 3, 3), padding=1), False),  # 128 tiles
    (Geometry.from_args((4, 383, 9, 9), (384, 383, 3, 3), padding=1), False),
    (Geometry.from_args((4, 512, 7, 7), (512, 256, 3, 3), padding=1, groups=2), False),
    (Geometry.from_args((4, 512, 7, 7), (512, 512, 3, 3), stride=2, padding=1), False)])
def test_avx512_weight_gradient_of_many_channels_over_few_tiles_is_blass(tiles, monkeypatch, geom, split):
    """``_split_weight``: with AVX-512 (full-width units or half-width) the weight gradient of 3x3
    stride-1 layers of 384+ channels a side (one group) under 128 F(2x2) tiles runs im2col's split by
    input channels; not without AVX-512."""
    for full in (True, False):
        numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
        monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom, _full=full: _full)
        assert rules._split_weight(geom) is split
        if split:
            assert backends.choose(geom, np.float32, pass_="grad_weight") == "im2col"
    tiles(False, "reference", "im2col", "numba", "winograd")
    assert not rules._split_weight(geom)


@pytest.mark.parametrize("geom, winograd", [
    (Geometry.from_args((4, 256, 7, 7), (256, 256, 3, 3), padding=1), True),  # 64 F(2x2) tiles
    (Geometry.from_args((2, 192, 10, 10), (192, 192, 3, 3), padding=1), True),  # the line: 192; 50 tiles
    (Geometry.from_args((2, 256, 14, 14), (256, 256, 3, 3), padding=1), True),  # 98 tiles
    (Geometry.from_args((4, 256, 7, 7), (512, 256, 3, 3), padding=1), True),  # more outputs
    (Geometry.from_args((4, 384, 7, 7), (384, 384, 3, 3), padding=1), True),  # (``_split_weight``'s first)
    (Geometry.from_args((4, 512, 7, 7), (512, 256, 3, 3), padding=1, groups=2), False),  # grouped: not measured
    (Geometry.from_args((4, 191, 7, 7), (192, 191, 3, 3), padding=1), False),
    (Geometry.from_args((8, 256, 7, 7), (256, 256, 3, 3), padding=1), False),  # 128 tiles: winograd's rows
    (Geometry.from_args((2, 256, 7, 7), (256, 256, 3, 3), padding=1), False),  # 32: the few-tiles row
    (Geometry.from_args((4, 256, 7, 7), (256, 256, 3, 3), stride=2, padding=1), False)])
def test_half_width_weight_gradient_over_few_tiles_is_winograds_from_192_channels(tiles, monkeypatch, geom, winograd):
    """``AUTO_HALF_WIDTH_WINOGRAD_WEIGHT_CHANNELS``: on AVX-512's half-width units the weight
    gradient of 3x3 stride-1 layers of one group on 48-127 F(2x2) tiles with 192+ channels a side
    runs winograd's, where the few-weight-tiles row ran numba's (384+ channels: BLAS's split first);
    not on full-width units, nor grouped (not measured)."""
    numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
    assert rules._half_width_winograd_weight(geom) is winograd
    if winograd:
        want = "im2col" if rules._split_weight(geom) else "winograd"
        assert backends.choose(geom, np.float32, pass_="grad_weight") == want
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    assert not rules._half_width_winograd_weight(geom)


def _cube(n, c, d, hw, **kwargs):
    return Geometry.from_args((n, c, d, hw, hw), (c, c // kwargs.get("groups", 1), 3, 3, 3), padding=1, **kwargs)


def _square(n, c, hw, **kwargs):
    return Geometry.from_args((n, c, hw, hw), (c, c // kwargs.get("groups", 1), 3, 3), padding=1, **kwargs)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, forward, grad_input", [
    (_square(32, 32, 56), True, True), (_square(64, 48, 32), True, True), (_square(32, 32, 28), True, True),
    (_square(16, 32, 20), False, False), (_square(32, 16, 56), False, False),  # small images; 16 channels
    (_square(32, 64, 56), False, False),  # 64+: winograd's own rows (``beats_direct``)
    (_square(32, 32, 56, groups=2), False, False),  # grouped: not measured
    (Geometry.from_args((32, 32, 56, 56), (32, 32, 3, 3), padding=1, stride=2), False, False),
    (_cube(2, 32, 16, 56), True, True), (_cube(8, 32, 8, 8), True, False),  # 8x8 planes: the forward only
    (_cube(2, 16, 16, 28), True, True), (_cube(4, 16, 16, 16), False, False),  # 16 channels: 28x28 planes and up
    (_cube(8, 24, 8, 16), False, False), (_cube(4, 40, 8, 10), True, True),
    (_cube(2, 64, 8, 16), False, False), (_cube(2, 32, 8, 16, groups=2), False, False),
    (Geometry.from_args((2, 32, 8, 16, 16), (32, 32, 3, 3, 3), padding=1, stride=(2, 1, 1)), False, False),
    (Geometry.from_args((2, 32, 8, 16, 16), (32, 32, 5, 3, 3), padding=(2, 1, 1)), False, False)])
def test_half_width_3x3_layers_of_fewer_than_64_channels_run_winograd(tiles, monkeypatch, geom, forward, grad_input,
                                                                      full):
    """``AUTO_FEW_CHANNELS_WINOGRAD``: on AVX-512's half-width units the forward and input gradient
    of 3x3 stride-1 layers of one group under winograd's own 64 channels run winograd's: 2-D from
    32 channels a side on 28x28 images and up; 3x3x3 from 32 on any planes (the input gradient on
    10x10 and up), from 16 on 28x28 and up. The weight gradient stays numba's. Not on full-width
    units (not measured)."""
    _avx512(tiles, monkeypatch, full)
    gi_pixels = rules.AUTO_FEW_CHANNELS_WINOGRAD_GRAD_INPUT_PIXELS
    assert rules._few_channels_winograd(geom) is (forward and not full)
    assert rules._few_channels_winograd(geom, gi_pixels) is (grad_input and not full)
    if forward and not full:
        for dtype in (np.float32, np.float64):
            picks = [backends.choose(geom, dtype, pass_=p) for p in backends.PASSES]
            assert picks == ["winograd", "winograd" if grad_input else "numba", "numba"], dtype


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("geom, numba", [
    (Geometry.from_args((2, 64, 14, 14), (64, 64, 3, 3), padding=1), True),  # 98 F(2x2) tiles
    (Geometry.from_args((4, 64, 10, 10), (64, 64, 3, 3), padding=1), True),
    (Geometry.from_args((1, 64, 16, 16), (128, 64, 3, 3), padding=1), True),  # 256 pixels, 64 tiles
    (Geometry.from_args((6, 64, 14, 14), (64, 64, 3, 3), padding=1), True),  # 294 tiles
    (Geometry.from_args((8, 64, 14, 14), (64, 64, 3, 3), padding=1), False),  # 392 tiles
    (Geometry.from_args((1, 64, 20, 20), (64, 64, 3, 3), padding=1), False),  # 400 pixels an image
    (Geometry.from_args((2, 96, 14, 14), (96, 96, 3, 3), padding=1), False),  # 96 channels
    (Geometry.from_args((4, 64, 11, 11), (256, 64, 3, 3), padding=1), False),  # 256 on the larger side
    (Geometry.from_args((2, 48, 14, 14), (48, 48, 3, 3), padding=1), False),  # not winograd's rows
    (Geometry.from_args((2, 128, 14, 14), (128, 64, 3, 3), padding=1, groups=2), False),  # grouped
    (Geometry.from_args((2, 64, 14, 14), (64, 64, 3, 3), stride=2, padding=1), False),
    (Geometry.from_args((2, 64, 1, 14, 14), (64, 64, 1, 3, 3), padding=(0, 1, 1)), False)])  # 3-D
def test_on_half_width_avx512_small_calls_of_64_channels_run_numbas_forward(tiles, monkeypatch, geom, numba,
                                                                             implicit, full):
    """``AUTO_HALF_WIDTH_SMALL_WINOGRAD_*``: on AVX-512's half-width units the float32 forward of a
    2-D 3x3 stride-1 call of one group with 64-79 channels on its smaller side (up to 128 on the
    larger), small images and few F(2x2) tiles runs numba's implicit forward, not winograd's; its
    gradients and its float64 forward stay winograd's."""
    numba_jit = _avx512(tiles, monkeypatch, full)
    monkeypatch.setattr(numba_jit, "implicit_forward", lambda geom: implicit)
    taken = numba and implicit and not full
    assert rules._half_width_small_winograd(geom) is taken
    if taken:
        assert backends.choose(geom, np.float32) == "numba"
        assert backends.choose(geom, np.float64) == "winograd"
        assert backends.choose(geom, np.float32, pass_="grad_input") == "winograd"

@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, half, full_width", [
    (Geometry.from_args((32, 128, 7, 7), (8, 128, 3, 3), padding=1), True, True),
    (Geometry.from_args((64, 128, 7, 7), (3, 128, 3, 3), padding=1), True, True),
    (Geometry.from_args((16, 512, 7, 7), (32, 512, 3, 3), padding=1), True, True),  # full-width units' most
    (Geometry.from_args((16, 512, 7, 7), (33, 512, 3, 3), padding=1), True, False),
    (Geometry.from_args((4, 512, 12, 12), (47, 512, 3, 3), padding=1), True, False),
    (Geometry.from_args((8, 384, 4, 7, 7), (8, 384, 3, 3, 3), padding=1), True, False),  # 3x3x3
    (Geometry.from_args((4, 512, 12, 12), (48, 512, 3, 3), padding=1), False, False),  # 48 output channels
    (Geometry.from_args((2, 128, 7, 7), (8, 128, 3, 3), padding=1), False, False),  # 32 F(2x2) tiles: few-tiles row
    (Geometry.from_args((8, 128, 28, 28), (8, 128, 3, 3), padding=1), False, False),  # 784 pixels an image
    (Geometry.from_args((32, 48, 7, 7), (8, 48, 3, 3), padding=1), False, False),  # few input channels: not BLAS's
    (Geometry.from_args((32, 256, 7, 7), (16, 128, 3, 3), padding=1, groups=2), False, False),
    (Geometry.from_args((32, 128, 14, 14), (8, 128, 3, 3), padding=1, stride=2), False, False),
    (Geometry.from_args((32, 128, 12, 12), (8, 128, 5, 5), padding=2), False, False),
    (Geometry.from_args((8, 512, 4, 4, 4), (16, 512, 3, 3, 3), padding=1), True, False)])  # 4x4 planes: forward only
def test_on_avx512_3x3_calls_of_few_output_channels_run_numba(tiles, monkeypatch, geom, half, full_width, full):
    """``_few_outputs_3x3``: on AVX-512 a 3x3 stride-1 call of one group, few pixels and many input
    channels (the BLAS-shaped row, which gave them winograd) and few output channels (half-width
    units: under 48, 3x3x3 too; full-width: 2-D, up to 32) runs numba's forward, and its input
    gradient from 7x7 images (planes); its weight gradient stays winograd's, and on full-width
    units float64's passes too."""
    _avx512(tiles, monkeypatch, full)
    taken = full_width if full else half
    assert rules._few_outputs_3x3(geom) is taken
    if taken:
        grad_input = "numba" if rules._pixels(geom) >= rules.AUTO_HALF_WIDTH_FEW_OUT_PIXELS else "winograd"
        for dtype in (np.float32, np.float64):
            picks = [backends.choose(geom, dtype, pass_=p) for p in backends.PASSES]
            want = ["winograd"] * 3 if full and dtype == np.float64 else ["numba", grad_input, "winograd"]
            assert picks == want, dtype


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, shifted, few_outputs", [
    (Geometry.from_args((64, 96, 12, 12), (48, 96, 7, 1), padding=(3, 0)), True, True),
    (Geometry.from_args((64, 128, 8, 8), (8, 128, 3, 1), padding=(1, 0)), True, True),
    (Geometry.from_args((32, 256, 12, 12), (96, 256, 7, 1), padding=(3, 0)), True, False),
    (Geometry.from_args((32, 256, 12, 12), (8, 256, 5, 5), padding=2), False, True),
    (Geometry.from_args((2, 192, 8, 14, 14), (8, 192, 5, 5, 5), padding=2), False, True),
    (Geometry.from_args((16, 384, 14, 14), (64, 384, 5, 5), padding=2), False, False),  # 64 output channels
    (Geometry.from_args((32, 128, 7, 7), (8, 128, 3, 3), padding=1), False, False),  # 3x3 at stride 1
    (Geometry.from_args((8, 96, 56, 56), (48, 96, 7, 1), padding=(3, 0)), False, False),  # 3136 pixels an image
    (Geometry.from_args((64, 96, 12, 12), (48, 96, 7, 1), padding=(3, 1)), False, True),  # padded across
    (Geometry.from_args((64, 192, 12, 12), (48, 96, 7, 1), padding=(3, 0), groups=2), False, False),  # grouped
    (Geometry.from_args((2, 192, 4, 4, 4), (32, 192, 7, 7, 7), padding=3), False, False)])  # 4x4 planes
def test_on_half_width_avx512_few_pixels_of_few_outputs_or_shifted_columns_run_numba(tiles, monkeypatch, geom,
                                                                                      shifted, few_outputs, full):
    """``_half_width_shifted`` and ``AUTO_HALF_WIDTH_FEW_OUT_WEIGHT``: on AVX-512's half-width units,
    calls of few pixels and many input channels (the BLAS-shaped row) run numba's passes where
    im2col would run a k x 1 kernel on its shifted columns, and numba's weight gradient where the
    output channels are under 64 (one group; not 3x3 stride-1 calls, winograd's); in float64 both
    weight gradients stay BLAS's."""
    _avx512(tiles, monkeypatch, full)
    assert rules._half_width_shifted(geom) is (shifted and not full)
    assert rules._half_width_few_outputs_weight(geom) is (few_outputs and not full)
    if shifted and not full:
        assert [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES] == ["numba"] * 3
    if few_outputs and not full:
        assert backends.choose(geom, np.float32, pass_="grad_weight") == "numba"
    if (shifted or few_outputs) and not full:  # float64's weight gradient stays BLAS's
        assert backends.choose(geom, np.float64, pass_="grad_weight") == "im2col"


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("geom, taken", [
    (Geometry.from_args((32, 240, 28, 28), (240, 80, 1, 1), groups=3), True),
    (Geometry.from_args((8, 144, 256), (384, 48, 1), groups=3), True),  # 1-D
    (Geometry.from_args((8, 512, 8, 8, 8), (64, 64, 1, 1, 1), groups=8), True),  # 3-D
    (Geometry.from_args((32, 240, 28, 28), (240, 240, 1, 1)), False),  # one group: numba's matrix products
    (Geometry.from_args((32, 240, 28, 28), (240, 1, 1, 1), groups=240), False),  # depthwise
    (Geometry.from_args((32, 240, 28, 28), (240, 80, 3, 3), padding=1, groups=3), False)])  # 3x3
def test_on_half_width_avx512_grouped_pointwise_calls_on_numbas_packed_loops_run_blas(tiles, monkeypatch, geom,
                                                                                    taken, packed, full):
    """``_half_width_grouped_pointwise``: on AVX-512's half-width units a 1x1 kernel of several groups
    (not depthwise) whose forward numba would run on its packed loops runs BLAS's forward and input
    gradient (in float64 too); its weight gradient stays with the other rows."""
    numba_jit = _avx512(tiles, monkeypatch, full)
    monkeypatch.setattr(numba_jit, "packed_forward", lambda geom: packed)
    taken = taken and packed and not full
    assert rules._half_width_grouped_pointwise(geom) is taken
    if taken:
        for dtype in (np.float32, np.float64):
            assert [backends.choose(geom, dtype, pass_=p) for p in ("forward", "grad_input")] == ["im2col"] * 2



@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, forward, weight", [
    (Geometry.from_args((1, 512, 14, 14), (512, 512, 1, 1)), True, True),
    (Geometry.from_args((1, 1024, 14, 14), (2048, 1024, 1, 1), stride=2), True, True),  # at a stride: 7x7
    (Geometry.from_args((1, 256, 196), (1024, 256, 1)), True, True),  # 1-D
    (Geometry.from_args((8, 512, 7, 7), (512, 512, 1, 1)), True, False),  # 8 images
    (Geometry.from_args((1, 512, 28, 28), (512, 512, 1, 1)), True, False),  # 784 output pixels
    (Geometry.from_args((32, 256, 14, 14), (1024, 256, 1, 1)), True, False),
    (Geometry.from_args((16, 64, 14, 14), (256, 64, 1, 1)), False, False),  # 64 input channels
    (Geometry.from_args((1, 512, 7, 7), (64, 512, 1, 1)), False, False),  # 64 output channels
    (Geometry.from_args((1, 512, 7, 7), (512, 128, 1, 1), groups=4), False, False),  # grouped
    (Geometry.from_args((1, 512, 7, 7), (512, 512, 3, 3), padding=1), False, False)])  # 3x3
def test_on_half_width_avx512_pointwise_forward_and_one_images_weight_gradient_run_blas(tiles, monkeypatch, geom,
                                                                                       forward, weight, full):
    """``_half_width_pointwise``: on AVX-512's half-width units a 1x1 kernel of one group with 128+
    channels a side runs BLAS's forward, and one image of it under 256 output pixels BLAS's weight
    gradient (``_half_width_pointwise_weight``), in float32 and float64."""
    _avx512(tiles, monkeypatch, full)
    assert rules._half_width_pointwise(geom) is (forward and not full)
    assert rules._half_width_pointwise_weight(geom) is (weight and not full)
    for dtype in (np.float32, np.float64):
        if forward and not full:
            assert backends.choose(geom, dtype, pass_="forward") == "im2col"
        if weight and not full:
            assert backends.choose(geom, dtype, pass_="grad_weight") == "im2col"


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, taken", [
    (Geometry.from_args((1, 96, 14, 14), (384, 96, 3, 3), stride=2, padding=1), True),
    (Geometry.from_args((1, 128, 24, 24), (512, 128, 5, 5), stride=2, padding=2), True),
    (Geometry.from_args((1, 64, 28, 28), (128, 64, 7, 7), stride=(2, 1), padding=3), True),  # a stride one way
    (Geometry.from_args((2, 96, 14, 14), (384, 96, 3, 3), stride=2, padding=1), False),  # two images
    (Geometry.from_args((1, 384, 14, 14), (96, 384, 3, 3), stride=2, padding=1), False),  # 96 output channels
    (Geometry.from_args((1, 96, 14, 14), (384, 48, 3, 3), stride=2, padding=1, groups=2), False),  # grouped
    (Geometry.from_args((1, 96, 14, 14), (384, 96, 1, 1), stride=2), False),  # 1x1
    (Geometry.from_args((1, 96, 14, 14), (384, 96, 3, 3), padding=1), False),  # unit stride
    (Geometry.from_args((1, 96, 4, 14, 14), (384, 96, 3, 3, 3), stride=2, padding=1), False)])  # 3-D
def test_on_half_width_avx512_one_strided_images_input_gradient_runs_blas(tiles, monkeypatch, geom, taken, full):
    """``_half_width_strided_image_input``: on AVX-512's half-width units the input gradient of one
    2-D image at a stride (one group, a kernel past 1x1, 128+ output channels) runs BLAS's, in
    float32 and float64."""
    _avx512(tiles, monkeypatch, full)
    assert rules._half_width_strided_image_input(geom) is (taken and not full)
    if taken and not full:
        for dtype in (np.float32, np.float64):
            assert backends.choose(geom, dtype, pass_="grad_input") == "im2col"

def test_numbas_packed_forward_answer_is_its_forward_kernel():
    """``numba_jit.packed_forward`` reads the forward's kernel of ``whole_choices``."""
    numba_jit = pytest.importorskip("fastconv.backends.numba_jit")
    for geom in (Geometry.from_args((32, 240, 28, 28), (240, 80, 1, 1), groups=3),
                 Geometry.from_args((32, 64, 28, 28), (64, 64, 3, 3), padding=1)):
        assert numba_jit.packed_forward(geom) is (numba_jit.whole_choices(geom, np.float32).forward == "packed")


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, taken", [
    (Geometry.from_args((2, 384, 10, 10), (15, 384, 5, 5), padding=2), True),
    (Geometry.from_args((32, 96, 7, 7), (57, 96, 7, 7), padding=3), True),
    (Geometry.from_args((32, 64, 8, 8), (33, 64, 3, 3), padding=2, dilation=2), True),  # dilated 3x3
    (Geometry.from_args((2, 512, 7, 7, 7), (17, 512, 5, 5, 5), padding=2), True),  # 3-D
    (Geometry.from_args((1, 384, 14, 14), (17, 384, 5, 5), padding=2), False),  # one image
    (Geometry.from_args((8, 256, 14, 14), (16, 256, 5, 5), padding=2, stride=2), False),  # at a stride
    (Geometry.from_args((8, 256, 12, 12), (64, 256, 5, 5), padding=2), False),  # 64 output channels
    (Geometry.from_args((8, 256, 6, 6), (16, 256, 5, 5), padding=2), False)])  # 36 output pixels
def test_on_half_width_avx512_few_outputs_input_gradient_at_unit_stride_runs_numba(tiles, monkeypatch, geom,
                                                                                 taken, full):
    """``_half_width_few_outputs_input``: on AVX-512's half-width units the input gradient of the
    few-output weight row's calls (``_half_width_few_outputs_weight``) at unit stride over two images
    and more runs numba's in float32, BLAS's in float64."""
    _avx512(tiles, monkeypatch, full)
    taken = taken and not full
    assert rules._half_width_few_outputs_input(geom) is taken
    if taken:
        assert backends.choose(geom, np.float32, pass_="grad_input") == "numba"
        assert backends.choose(geom, np.float64, pass_="grad_input") == "im2col"


def test_on_half_width_avx512_strided_weight_gradients_keep_their_row(tiles):
    """A 2-D strided call of few pixels and few output channels keeps the strided rows' BLAS weight
    gradient, ahead of the few-output row."""
    tiles(True, "reference", "im2col", "numba", "winograd")
    geom = Geometry.from_args((16, 512, 14, 14), (48, 512, 3, 3), padding=1, stride=2)
    assert rules._half_width_few_outputs_weight(geom)
    assert backends.choose(geom, np.float32, pass_="grad_weight") == "im2col"


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, taken, weight", [
    (Geometry.from_args((16, 128, 14, 14), (4, 128, 7, 7), padding=3), True, True),
    (Geometry.from_args((2, 512, 10, 10), (16, 512, 5, 5), padding=2), True, True),  # the row's most
    (Geometry.from_args((8, 192, 12, 12, 12), (3, 192, 5, 5, 5), padding=2, stride=2), True, True),  # 6x6 planes
    (Geometry.from_args((1, 96, 12, 12, 12), (11, 96, 3, 3, 3), padding=1, stride=2), True, True),  # one image
    (Geometry.from_args((32, 512, 256), (7, 512, 3), padding=1, stride=2), True, True),  # 1-D at a stride
    (Geometry.from_args((8, 512, 128), (8, 512, 7), padding=3), True, True),
    (Geometry.from_args((2, 192, 10, 10), (13, 192, 7, 7), padding=3, stride=2), True, True),  # 5x5 out: 25 pixels
    (Geometry.from_args((2, 192, 8, 8), (13, 192, 7, 7), padding=3, stride=2), True, False),  # 4x4 out
    (Geometry.from_args((32, 192, 4, 4, 4), (10, 192, 5, 5, 5), padding=2, stride=2), True, False),  # 2x2x2 out
    (Geometry.from_args((2, 512, 10, 10), (17, 512, 5, 5), padding=2), False, False),  # 17 output channels
    (Geometry.from_args((8, 512, 10, 10), (16, 256, 5, 5), padding=2, groups=2), False, False),  # grouped
    (Geometry.from_args((32, 128, 7, 7), (8, 128, 3, 3), padding=1), False, False),  # 3x3 at stride 1
    (Geometry.from_args((8, 512, 14, 14), (8, 512, 1, 1)), False, False),  # 1x1
    (Geometry.from_args((8, 32, 56, 56), (8, 32, 5, 5), padding=2), False, False)])  # few input channels
def test_on_half_width_avx512_few_pixels_of_fewest_outputs_run_numba(tiles, monkeypatch, geom, taken, weight, full):
    """``AUTO_HALF_WIDTH_FEWEST_OUT``: on AVX-512's half-width units a call of one group, a kernel past
    1x1 (not 3x3 at stride 1), few pixels and many input channels (the BLAS-shaped row) and up to 16
    output channels runs numba's forward, and its weight gradient from 5x5 output pixels an image (a
    plane), at any stride; in float64 the weight gradient stays BLAS's, and so does the forward of
    1-D calls at a stride."""
    _avx512(tiles, monkeypatch, full)
    taken = taken and not full
    assert rules._half_width_fewest_outputs(geom) is taken
    assert rules._half_width_fewest_outputs(geom, rules.AUTO_HALF_WIDTH_FEWEST_OUT_WEIGHT_PIXELS) is (
        taken and weight)
    if taken:
        strided_1d = geom.ndim == 1 and max(geom.stride) > 1
        assert backends.choose(geom, np.float32) == "numba"
        assert backends.choose(geom, np.float64) == ("im2col" if strided_1d else "numba")
        if weight:
            assert backends.choose(geom, np.float32, pass_="grad_weight") == "numba"
            assert backends.choose(geom, np.float64, pass_="grad_weight") == "im2col"


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, taken", [
    (Geometry.from_args((64, 16, 1000), (256, 16, 5), padding=2, stride=2), True),
    (Geometry.from_args((16, 8, 256), (64, 8, 3), padding=1, stride=2), True),
    (Geometry.from_args((16, 32, 256), (256, 32, 3), padding=1, stride=2), False),  # 32 input channels
    (Geometry.from_args((16, 16, 256), (32, 16, 3), padding=1, stride=2), False),  # 32 output channels
    (Geometry.from_args((16, 16, 256), (256, 16, 3), padding=1), False),  # unit stride
    (Geometry.from_args((16, 16, 64, 64), (256, 16, 3, 3), padding=1, stride=2), False),  # 2-D
    (Geometry.from_args((16, 16, 256), (256, 8, 3), padding=1, stride=2, groups=2), False)])
def test_on_half_width_avx512_strided_1d_few_inputs_run_blas_input_gradient(tiles, monkeypatch, geom, taken, full):
    """``AUTO_HALF_WIDTH_STRIDED_1D_*``: on AVX-512's half-width units the input gradient of a strided
    1-D call of one group, up to 16 input channels and 64+ output channels runs BLAS's."""
    _avx512(tiles, monkeypatch, full)
    assert rules._half_width_strided_1d_few_inputs(geom) is (taken and not full)
    if taken and not full:
        assert backends.choose(geom, np.float32, pass_="grad_input") == "im2col"


def test_strided_pointwise_input_gradient_is_numbas_in_float32_only(tiles, monkeypatch):
    """A 2-D 1x1 kernel at a stride on full-width AVX-512: numba's input gradient in float32, BLAS's
    in float64 (``_strided_pointwise``, ``AUTO_DTYPE_RULES``), and BLAS's at unit stride."""
    numba_jit = tiles(True, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "matrix_product", lambda geom: math.prod(geom.kernel) == 1)
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    strided = Geometry.from_args((16, 128, 28, 28), (256, 128, 1, 1), stride=2)
    unit = Geometry.from_args((16, 128, 28, 28), (256, 128, 1, 1))
    assert backends.choose(strided, np.float32, pass_="grad_input") == "numba"
    assert backends.choose(strided, np.float64, pass_="grad_input") == "im2col"
    assert backends.choose(unit, np.float32, pass_="grad_input") == "im2col"


ONE_IMAGE_ROWS = "one image of one group"  # in the names of the one-image rows of ``AUTO_PASS_RULES``


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, forward, grad_input, grad_weight", [
    # one image, one group, 128+ input channels, 33+ output channels: BLAS's passes (None: the pick
    # of the rows without these)
    (Geometry.from_args((1, 128, 7, 7), (128, 128, 3, 3), stride=2, padding=1), "im2col", None, "im2col"),
    (Geometry.from_args((1, 256, 7, 7), (33, 256, 3, 3), stride=2, padding=1), "im2col", "im2col", "im2col"),
    # 3136 output pixels: the weight gradient as before (and the forward of a kernel past 1x1; this
    # one's is the kD x 1 x 1 row's)
    (Geometry.from_args((1, 256, 4, 28, 28), (128, 256, 3, 1, 1), padding=(1, 0, 0)), "im2col", "im2col", None),
    (Geometry.from_args((1, 256, 56, 56), (64, 256, 5, 5), padding=2), None, None, None),  # 3136 output pixels
    (Geometry.from_args((1, 256, 32, 32), (64, 256, 5, 5), padding=2), None, "im2col", "im2col"),  # 1024
    (Geometry.from_args((1, 256, 8, 8), (64, 256, 5, 5), padding=2), "im2col", "im2col", "im2col"),  # the forward's 64
    (Geometry.from_args((1, 384, 80, 80), (64, 384, 1, 1)), "im2col", None, None),
    (Geometry.from_args((1, 128, 1024), (128, 128, 3), padding=2, dilation=2), "im2col", None, "im2col"),
    # ... 3x3 at stride 1: under 48 F(2x2) tiles (past the few-tiles row's 512 channels) every pass;
    # from 48 the weight gradient, and the forward under 128 tiles and 512 channels a side
    (Geometry.from_args((1, 1024, 7, 7), (1024, 1024, 3, 3), padding=1), None, "im2col", "im2col"),  # PATCH_ROWS
    (Geometry.from_args((1, 384, 14, 14), (512, 384, 3, 3), padding=1), "im2col", None, None),  # 49 tiles
    (Geometry.from_args((1, 512, 14, 14), (512, 512, 3, 3), padding=1), None, None, None),
    (Geometry.from_args((1, 1024, 14, 14), (256, 1024, 3, 3), padding=1), None, None, None),
    (Geometry.from_args((1, 192, 28, 28), (128, 192, 3, 3), padding=1), None, None, None),  # 196 tiles
    (Geometry.from_args((1, 256, 2, 94), (256, 256, 3, 3), padding=1), None, None, "im2col"),  # 47 tiles
    (Geometry.from_args((1, 256, 2, 96), (256, 256, 3, 3), padding=1), "im2col", None, None),  # 48: not the gradient
    (Geometry.from_args((1, 128, 34, 34), (128, 128, 3, 3), padding=1), None, None, None),  # 1156 output pixels
    # ... and from 16 input channels with 96+ output channels, twice the input's, and 200+ input
    # channels x taps
    (Geometry.from_args((1, 24, 56, 56), (128, 24, 3, 3), stride=2, padding=1), "im2col", "im2col", "im2col"),
    (Geometry.from_args((1, 16, 10, 10), (96, 16, 7, 7), padding=3), "im2col", "im2col", "im2col"),
    (Geometry.from_args((1, 16, 7, 7), (256, 16, 3, 3), padding=1), None, None, None),  # 144 input channels x taps
    (Geometry.from_args((1, 64, 10, 10), (127, 64, 3, 3), padding=1), None, None, None),  # under 2x
    (Geometry.from_args((1, 15, 10, 10), (96, 15, 7, 7), padding=3), None, None, None),
    (Geometry.from_args((1, 32, 8, 16, 16), (128, 32, 1, 3, 3), padding=(0, 1, 1)), None, None, None),  # 8 planes
    # ... not past the lines
    (Geometry.from_args((1, 127, 10, 10), (96, 127, 5, 5), padding=2), None, None, None),
    (Geometry.from_args((1, 384, 10, 10), (32, 384, 5, 5), padding=2), None, None, None),
    (Geometry.from_args((2, 384, 14, 14), (512, 384, 3, 3), padding=1), None, None, None),
    (Geometry.from_args((1, 256, 14, 14), (256, 128, 3, 3), padding=1, groups=2), None, None, None)])
def test_one_image_rows(tiles, monkeypatch, geom, forward, grad_input, grad_weight, full):
    """On full-width AVX-512, one image of many channels runs BLAS's forward (1x1 kernels, or up to
    1024 output pixels; 2-D kernels past 1x1 but 3x3 at stride 1, 64 of many input channels) and
    weight gradient (up to 1024 output pixels; 3x3 stride-1 layers only under 48 F(2x2) tiles), and
    from 256 input channels (or with many outputs for its inputs) its input gradient (up to 1024
    output pixels too); elsewhere, and past the rows' lines, the picks of the other rows."""
    numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
    rows = backends.AUTO_PASS_RULES
    assert sum(ONE_IMAGE_ROWS in r[1] for r in rows) == 3

    def picks(rows):
        monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: full)
        monkeypatch.setattr(backends, "AUTO_PASS_RULES", rows)
        monkeypatch.setattr(backends, "_ranked", {})
        return [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]

    before = picks(tuple(r for r in rows if ONE_IMAGE_ROWS not in r[1]))
    want = [w or b for w, b in zip((forward, grad_input, grad_weight), before)] if full else before
    assert picks(rows) == want


@pytest.mark.parametrize("geom, passes, blas32", [
    (Geometry.from_args((1, 512, 20, 20), (256, 512, 3, 3), padding=1), ("forward",), ("forward",)),  # 100 tiles
    # (its weight gradient, 196 tiles, is winograd's in float32 too: ``_one_image_weight``)
    (Geometry.from_args((1, 192, 28, 28), (128, 192, 3, 3), padding=1), ("forward", "grad_weight"), ())])
def test_one_image_rows_in_float64(tiles, monkeypatch, geom, passes, blas32):
    """In float64 winograd's rows keep the forward of 3x3 stride-1 layers of 48+ F(2x2) tiles and
    the weight gradient of 128+ (``AUTO_DTYPE_RULES``), where the one-image rows give float32's to BLAS."""
    numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    rows = backends.AUTO_PASS_RULES

    def picks(dtype, rows, passes):
        monkeypatch.setattr(backends, "AUTO_PASS_RULES", rows)
        monkeypatch.setattr(backends, "_ranked", {})
        return [backends.choose(geom, dtype, pass_=p) for p in passes]

    before = tuple(r for r in rows if ONE_IMAGE_ROWS not in r[1])
    assert picks(np.float64, rows, passes) == picks(np.float64, before, passes)
    if rules._winograd_channels(geom):  # (the float64 rows' condition)
        assert picks(np.float32, rows, blas32) == ["im2col"] * len(blas32)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, lopsided", [
    (Geometry.from_args((16, 256, 20, 20), (48, 256, 3, 3), padding=1), True),
    (Geometry.from_args((8, 48, 32, 32), (320, 48, 3, 3), padding=1), True),
    (Geometry.from_args((4, 256, 56, 56), (24, 256, 3, 3), padding=1), True),  # the lines: 24 and 256
    (Geometry.from_args((4, 256, 56, 56), (23, 256, 3, 3), padding=1), False),
    (Geometry.from_args((8, 255, 28, 28), (32, 255, 3, 3), padding=1), False),
    (Geometry.from_args((2, 1024, 28, 28), (128, 256, 3, 3), padding=1, groups=4), True),  # per group
    # grouped: from 40 on the more side (numba's grouped kernels won at 32 -> 32)
    (Geometry.from_args((16, 192, 20, 20), (192, 48, 3, 3), padding=1, groups=4), True),
    (Geometry.from_args((8, 128, 28, 28), (256, 32, 3, 3), padding=1, groups=4), True),
    (Geometry.from_args((8, 256, 28, 28), (256, 32, 3, 3), padding=1, groups=8), False),
    (Geometry.from_args((8, 312, 28, 28), (312, 39, 3, 3), padding=1, groups=8), False),
    (Geometry.from_args((2, 256, 8, 16, 16), (32, 256, 1, 3, 3), padding=(0, 1, 1)), False),  # 3-D lost
    (Geometry.from_args((8, 256, 28, 28), (32, 256, 3, 3), stride=2, padding=1), False)])
def test_full_width_avx512_lopsided_3x3_runs_winograd(tiles, monkeypatch, geom, lopsided, full):
    """With AVX-512 on full-width units, 2-D 3x3 stride-1 layers of 24+ channels one way and 256+
    the other (40+ in grouped layers) run winograd (below ``winograd.TILED_MIN_CHANNELS`` on the
    fewer side)."""
    _avx512(tiles, monkeypatch, full)
    assert rules._lopsided_3x3(geom) is (lopsided and full)
    if lopsided and full:
        assert backends.choose(geom, np.float32) == "winograd"


@pytest.mark.parametrize("geom, winograd", [
    (Geometry.from_args((16, 64, 14, 14), (512, 64, 3, 3), padding=1), True),
    (Geometry.from_args((16, 32, 28, 28), (256, 32, 3, 3), padding=1), False)])  # lopsided: BLAS's input gradient
def test_full_width_avx512_many_outputs_leave_winograd_its_layers(tiles, monkeypatch, geom, winograd):
    """The rows of many output channels beside few input channels (BLAS's gradients) do not take
    3x3 stride-1 layers of 64+ channels each side, which winograd's rows take; without winograd
    they do."""
    numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    picks = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert picks == ["winograd"] * 3 if winograd else picks == ["winograd", "im2col", "winograd"]
    tiles(True, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    assert backends.choose(geom, np.float32, pass_="grad_input") == "im2col"


@pytest.mark.parametrize("geom, blas", [
    (Geometry.from_args((1, 128, 4096), (256, 128, 3), padding=1), True),
    (Geometry.from_args((1, 64, 4096), (32, 64, 5), stride=2, padding=2), True),
    (Geometry.from_args((1, 64, 4096), (16, 64, 5), padding=2), False),  # 16 output channels
    (Geometry.from_args((1, 64, 4096), (64, 64, 5), padding=4, dilation=2), False),
    (Geometry.from_args((2, 128, 4096), (256, 128, 3), padding=1), False)])  # two signals
def test_full_width_avx512_one_signal_forward_runs_blas(tiles, monkeypatch, geom, blas):
    """One undilated 1-D signal of 32+ output channels: BLAS's forward on full-width AVX-512, the
    gradients as before (a row of ``AUTO_PASS_RULES`` for the forward)."""
    numba_jit = tiles(True, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    monkeypatch.setattr(backends, "_ranked", {})
    picks = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert rules._one_signal(geom) is blas
    monkeypatch.setattr(backends, "AUTO_PASS_RULES", tuple(r for r in backends.AUTO_PASS_RULES if r[0] != "forward"))
    without = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert picks == (["im2col", *without[1:]] if blas else without)


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("geom, blas", [  # (whether on full-width units, on half-width ones)
    (Geometry.from_args((16, 3, 224, 224), (96, 3, 4, 4), stride=4), (True, True)),  # ConvNeXt's stem: 48
    (Geometry.from_args((16, 24, 112, 112), (96, 24, 2, 2), stride=2), (True, True)),  # 96: the most
    (Geometry.from_args((16, 1, 226, 226), (64, 1, 4, 4), stride=4), (True, True)),  # a last column no window reads
    (Geometry.from_args((16, 32, 56, 56), (64, 32, 2, 2), stride=2), (False, True)),  # 128
    (Geometry.from_args((16, 96, 56, 56), (192, 96, 2, 2), stride=2), (False, True)),  # 384: the most, half-width
    (Geometry.from_args((16, 3, 224, 224), (384, 3, 16, 16), stride=16), (False, False)),  # 768
    (Geometry.from_args((16, 3, 224, 224), (96, 3, 4, 4), stride=4, padding=1), (False, False)),
    (Geometry.from_args((16, 3, 224, 224), (96, 3, 4, 4), stride=2), (False, False)),  # overlapping
    (Geometry.from_args((16, 4, 64, 64), (32, 2, 2, 2), stride=2, groups=2), (False, False)),
    (Geometry.from_args((16, 3, 224, 224), (96, 3, 1, 1)), (False, False)),  # 1x1 at stride 1: the input is the matrix
    (Geometry.from_args((16, 3, 4096), (96, 3, 4), stride=4), (False, False))])  # 1-D: not measured
def test_windows_that_tile_the_input_run_blas_forward(tiles, monkeypatch, geom, blas, full):
    """A 2-D layer whose windows tile the input with a short reduction (``_tiled_windows``; longer
    on AVX-512's half-width units): BLAS's forward, the gradients as before."""
    numba_jit = tiles(True, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: full)
    blas = blas[0] if full else blas[1]
    monkeypatch.setattr(backends, "_ranked", {})
    picks = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert rules._tiled_windows(geom) is blas
    rows = tuple(r for r in backends.AUTO_PASS_RULES if r[2] is not rules._tiled_windows)
    monkeypatch.setattr(backends, "AUTO_PASS_RULES", rows)
    monkeypatch.setattr(backends, "_ranked", {})
    without = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert picks == (["im2col", *without[1:]] if blas else without)


def test_full_width_avx512_float64_keeps_blas_gradients(tiles, monkeypatch):
    """In float64 numba's strided weight gradients and winograd's passes of many-output layers lost
    to BLAS's on full-width AVX-512, where float32's rows give them those: ``AUTO_DTYPE_RULES``."""
    numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    strided = Geometry.from_args((32, 128, 28, 28), (256, 128, 3, 3), stride=2, padding=1)
    many = Geometry.from_args((16, 64, 14, 14), (512, 64, 3, 3), padding=1)
    assert backends.choose(strided, np.float32, pass_="grad_weight") == "numba"
    assert backends.choose(strided, np.float64, pass_="grad_weight") == "im2col"
    assert [backends.choose(many, np.float32, pass_=p) for p in backends.PASSES] == ["winograd"] * 3
    assert [backends.choose(many, np.float64, pass_=p) for p in backends.PASSES] == ["winograd", "im2col", "im2col"]


@pytest.mark.parametrize("geom, blas", [
    (Geometry.from_args((8, 24, 56, 56), (24, 24, 1, 1)), True),
    (Geometry.from_args((8, 8, 56, 56), (16, 8, 1, 1)), True),
    (Geometry.from_args((8, 16, 56, 56), (64, 16, 1, 1), stride=2), True),
    (Geometry.from_args((16, 32, 4096), (32, 32, 1)), False),  # 1-D and 3-D: numba's weight gradient won
    (Geometry.from_args((8, 24, 8, 28, 28), (48, 24, 1, 1, 1)), False),
    (Geometry.from_args((8, 32, 56, 56), (32, 16, 1, 1), groups=2), False)])  # untimed
def test_without_wide_tiles_2d_pointwise_layers_run_blas(tiles, monkeypatch, geom, blas):
    """Without AVX-512, 2-D 1x1 kernels of one group run im2col below 48 channels too."""
    tiles(False, "reference", "im2col", "numba")
    picks = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert (picks == ["im2col"] * 3) is blas


@pytest.mark.parametrize("geom, forward, grad_input", [
    (Geometry.from_args((8, 96, 14, 14), (192, 96, 3, 3), stride=2, padding=1), "numba", "numba"),  # 864 steps
    (Geometry.from_args((8, 86, 14, 14), (192, 86, 3, 3), stride=2, padding=1), "numba", "numba"),  # the line: 774
    (Geometry.from_args((8, 85, 14, 14), (192, 85, 3, 3), stride=2, padding=1), "im2col", "numba"),  # 765
    (Geometry.from_args((8, 64, 28, 28), (128, 64, 3, 3), stride=2, padding=1), "im2col", "numba"),  # 576
    (Geometry.from_args((8, 256, 1000), (128, 256, 3), stride=2, padding=1), "im2col", "im2col")])  # 1-D
def test_without_wide_tiles_patches_take_long_reductions_and_strided_input_gradients(tiles, monkeypatch, geom,
                                                                                     forward, grad_input):
    """Without AVX-512 numba's patches run the forward of 2-D and 3-D layers over 768+ reduction
    steps (``AUTO_NARROW_PATCHES_REDUCTION``) and their input gradient; with AVX-512 both wherever
    the patches apply."""
    numba_jit = tiles(False, "reference", "im2col", "numba")
    monkeypatch.setattr(numba_jit, "patches", lambda geom: True)
    assert [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES[:2]] == [forward, grad_input]
    tiles(True, "reference", "im2col", "numba")
    assert backends.choose(geom, np.float32) == "numba"


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("geom, own", [
    (Geometry.from_args((8, 64, 32, 32), (32, 64, 3, 3), stride=2, padding=1), True),
    (Geometry.from_args((8, 64, 32, 32), (33, 64, 3, 3), stride=2, padding=1), False),  # the line: 32 per 9 taps
    (Geometry.from_args((8, 64, 32, 32), (88, 64, 5, 5), stride=2, padding=2), True),
    (Geometry.from_args((8, 64, 32, 32), (89, 64, 5, 5), stride=2, padding=2), False),
    (Geometry.from_args((2, 128, 56, 56), (128, 128, 7, 7), stride=2, padding=3), True),
    (Geometry.from_args((8, 64, 28, 28), (16, 64, 1, 1), stride=2), False),  # 1x1: w's transpose times gy
    (Geometry.from_args((8, 64, 28, 28), (32, 32, 3, 3), stride=2, padding=1, groups=2), False),  # untimed
    (Geometry.from_args((8, 64, 28, 28), (32, 64, 3, 3), padding=1), False)])  # stride 1
def test_without_wide_tiles_strided_input_gradients_of_few_outputs_run_numba(tiles, geom, own, wide):
    """A strided layer of at most ``AUTO_FOLD_OUT_CHANNELS`` output channels per 9 taps runs numba
    without AVX-512 (its forward past the BLAS row, its input gradient by its own row); its weight
    gradient stays BLAS's from 64 input channels."""
    tiles(wide, "reference", "im2col", "numba")
    assert rules._strided_few_outputs(geom) is own  # (with AVX-512's tiles too, full or half width)
    if own and not wide:
        assert not rules._blas_without_wide_tiles(geom)
        assert [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES] == ["numba", "numba", "im2col"]


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("geom, own", [
    (Geometry.from_args((8, 32, 28, 28), (32, 32, 3, 3), padding=1), True),
    (Geometry.from_args((8, 128, 28, 28), (128, 32, 3, 3), padding=1, groups=4), True),  # 32 a group
    (Geometry.from_args((8, 31, 28, 28), (32, 31, 3, 3), padding=1), False),  # the channel line
    (Geometry.from_args((2, 32, 14, 14), (32, 32, 3, 3), padding=1), False),  # 98 tiles: the few-tiles rows
    (Geometry.from_args((8, 32, 28, 28), (32, 32, 3, 3), padding=2, dilation=2), False)])
def test_without_wide_tiles_winograd_takes_the_weight_gradient_from_32_channels(tiles, geom, own, wide):
    """Without AVX-512 numba's weight gradient of 3x3 layers under 64 output channels runs its
    packed loops, which winograd's own (from 32 channels a group) beat on 8 of 9 layers measured."""
    tiles(wide, "reference", "im2col", "numba", "winograd")
    assert rules._winograd_own_weight(geom) is (own and not wide)
    if own and not wide:
        assert [backends.choose(geom, dtype, pass_="grad_weight") for dtype in (np.float32, np.float64)] == [
            "winograd", "winograd"]


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("geom, own", [
    (Geometry.from_args((8, 128, 28, 28), (128, 32, 3, 3), padding=1, groups=4), True),  # 32 a group
    (Geometry.from_args((8, 168, 28, 28), (168, 24, 3, 3), padding=1, groups=7), False),  # 24: ties
    (Geometry.from_args((2, 32, 8, 28, 28), (32, 32, 3, 3, 3), padding=1), True),
    (Geometry.from_args((2, 32, 8, 28, 28), (32, 32, 1, 3, 3), padding=(0, 1, 1)), False),  # one plane deep
    (Geometry.from_args((8, 48, 28, 28), (48, 48, 3, 3), padding=1), False)])  # dense 2-D
def test_without_wide_tiles_winograd_takes_grouped_and_deep_3x3_layers_from_32_channels(tiles, geom, own, wide):
    tiles(wide, "reference", "im2col", "numba", "winograd")
    assert rules._winograd_without_wide_tiles(geom) is (own and not wide)
    if own and not wide:
        assert [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES] == ["winograd"] * 3


# float64 without AVX-512 (``AUTO_DTYPE_RULES``): forward, input gradient, weight gradient
F64_PICKS = [
    (Geometry.from_args((8, 32, 28, 28), (32, 32, 3, 3), padding=1), "winograd", "winograd", "winograd"),
    # below 32 channels winograd's weight gradient would run numba's: BLAS's
    (Geometry.from_args((8, 24, 28, 28), (48, 24, 3, 3), padding=1), "winograd", "winograd", "im2col"),
    (Geometry.from_args((8, 23, 28, 28), (48, 23, 3, 3), padding=1), "numba", "numba", "im2col"),  # the line
    (Geometry.from_args((8, 256, 14, 14), (256, 8, 3, 3), padding=1, groups=32), "winograd", "winograd", "im2col"),
    (Geometry.from_args((8, 56, 14, 14), (56, 7, 3, 3), padding=1, groups=8), "numba", "numba", "im2col"),  # 7 a group
    (Geometry.from_args((2, 32, 8, 28, 28), (32, 32, 3, 3, 3), padding=1), "winograd", "winograd", "winograd"),
    (Geometry.from_args((8, 64, 28, 28), (64, 64, 5, 5), padding=2), "im2col", "im2col", "im2col"),
    (Geometry.from_args((8, 16, 56, 56), (32, 16, 3, 3), stride=2, padding=1), "im2col", "im2col", "im2col"),
    (Geometry.from_args((8, 32, 32, 32), (32, 32, 3, 3), padding=2, dilation=2), "numba", "numba", "im2col"),
    # 1x1: im2col's products, but numba's weight gradient up to 64 channels
    (Geometry.from_args((8, 32, 28, 28), (64, 32, 1, 1)), "im2col", "im2col", "numba"),
    (Geometry.from_args((8, 65, 28, 28), (64, 65, 1, 1)), "im2col", "im2col", "im2col"),
    (Geometry.from_args((8, 15, 28, 28), (32, 15, 5, 5), padding=2), "numba", "numba", "im2col"),
    (Geometry.from_args((16, 32, 8000), (32, 32, 9), padding=4), "numba", "numba", "im2col"),  # 1-D: not measured
    (FEW_TILES, "im2col", "im2col", "im2col"), (FEW_TILES_12X12, "im2col", "im2col", "im2col"),
    (DEPTHWISE, "numba", "numba", "numba"), (SMALL, "numba", "numba", "numba")]


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("geom, forward, grad_input, grad_weight", F64_PICKS)
def test_float64_without_wide_tiles_has_its_own_rows(tiles, monkeypatch, geom, forward, grad_input, grad_weight,
                                                      wide):
    """``AUTO_DTYPE_RULES``: in float64 without AVX-512 (an AVX2 Zen 3 measured), 3x3 stride-1 layers of
    24+ channels a group (8+ grouped) run winograd, other 2-D and 3-D kernels of 16+ input channels
    im2col, and the weight gradient BLAS's products but where winograd's own runs and for 1x1
    kernels of up to 64 channels; float32, and float64 with the tiles, keep the other rows."""
    tiles(wide, "reference", "im2col", "numba", "winograd")
    f64 = [backends.choose(geom, np.float64, pass_=p) for p in backends.PASSES]
    f32 = [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES]
    assert f64 == (f32 if wide else [forward, grad_input, grad_weight])
    monkeypatch.setattr(backends, "AUTO_DTYPE_RULES", ())
    assert [backends.choose(geom, np.float32, pass_=p) for p in backends.PASSES] == f32


def test_gradient_and_pass_names_are_checked():
    with pytest.raises(ValueError, match="`gradient` must be None, 'input' or 'weight'"):
        fastconv.choose_backend((1, 3, 8, 8), (4, 3, 3, 3), gradient="bias")
    with pytest.raises(ValueError, match="pass must be one of"):
        backends.choose(DENSE, np.float32, pass_="backward")


def test_thresholds_are_where_the_rule_says():
    assert SMALL.macs <= rules.AUTO_NUMBA_MAX_MACS < JUST_ABOVE.macs
    assert SMALL_IMAGES.oh * SMALL_IMAGES.ow < rules.AUTO_IM2COL_BELOW_PIXELS <= DENSE.oh * DENSE.ow
    # channels per group against AUTO_BLAS_CHANNELS x sqrt(pixels): 7 x 7 = 49 at 7x7, 140 at 20x20
    assert SMALL_IMAGES_FEW_CHANNELS.c_in_g < rules.AUTO_BLAS_CHANNELS * 7 <= SMALL_IMAGES.c_in_g
    assert POINTWISE.c_in_g < rules.AUTO_BLAS_CHANNELS * 28 and POINTWISE_MANY_CHANNELS.c_in_g >= 7 * 20
    assert DILATED_SMALL_PHASES.oh // 8 < rules.AUTO_PHASE_MIN <= DILATED.oh // 2
    assert DILATED_FEW_CHANNELS.c_in_g < rules.AUTO_PHASE_CHANNELS <= DILATED.c_in_g
    assert 6 * 6 < rules.AUTO_FEW_TILES <= 3 * 4 * 4  # FEW_TILES_12X12's 6x6 tiles, ENOUGH_TILES' 3 x 4x4
    assert FEW_TILES.c_in_g <= rules.AUTO_FEW_TILES_MAX_CHANNELS < FEW_TILES_MANY_CHANNELS.c_in_g
    numba_jit = pytest.importorskip("fastconv.backends.numba_jit")
    assert 9 * 9 <= numba_jit.SMALL_IMAGE_PIXELS < 10 * 10
    assert 16 * 25 < rules.AUTO_SMALL_IMAGE_WINOGRAD_TILES <= 32 * 16  # IMPLICIT_9X9's, SMALL_IMAGES_MANY_TILES'
    from fastconv.backends import winograd  # the weight-gradient rows send winograd its own products only
    assert rules.AUTO_WINOGRAD_WEIGHT_CHANNELS == winograd.WEIGHT_MIN_CHANNELS_BLAS


@pytest.mark.parametrize("geom", [DENSE, DEPTHWISE, SMALL])
def test_without_numba_im2col_runs_everything(installed, geom):
    installed("reference", "im2col")
    assert backends.choose(geom, np.float32) == "im2col"


@pytest.mark.parametrize("geom", [DENSE, DEPTHWISE, SMALL])
def test_without_im2col_numba_runs_everything(installed, geom):
    installed("reference", "numba")
    assert backends.choose(geom, np.float64) == "numba"


def test_reference_only_when_nothing_else_is_installed(installed):
    installed("reference")
    assert backends.choose(DENSE, np.float32) == "reference"


def test_never_the_reference_on_the_suites():
    if backends.available() == ["reference"]:
        pytest.skip("no fast backend installed")
    for case in cases.SUITES["full"] + cases.QUICK + cases.TINY:
        assert backends.choose(case.geometry, np.float32) != "reference", case.name


def test_the_best_candidate_is_settled_once_ready(installed, monkeypatch):
    # auto runs another backend while its best compiles, then the best, and stops asking
    installed("reference", "im2col", "numba")
    monkeypatch.setattr(backends, "_ranked", {})
    asked = []
    monkeypatch.setattr(backends, "_ready", lambda name, dtype: asked.append(name) or name != "numba")
    assert backends.choose(DENSE, np.float32) == "im2col"
    monkeypatch.setattr(backends, "_ready", lambda name, dtype: asked.append(name) or True)
    assert backends.choose(DENSE, np.float32) == "numba"
    settled = len(asked)
    assert backends.choose(DENSE, np.float32) == "numba" and len(asked) == settled
    monkeypatch.setattr(backends, "_measured_choice", lambda geom, dtype, names: "im2col")
    monkeypatch.setenv(backends.AUTO_MEASURE_ENV, "measure")
    assert backends.choose(DENSE, np.float32) == "im2col"  # FASTCONV_AUTO=measure still applies
    installed("reference", "im2col")  # another set of backends: chosen anew
    monkeypatch.delenv(backends.AUTO_MEASURE_ENV)
    assert backends.choose(DENSE, np.float32) == "im2col"


def test_measured_choice_picks_the_fastest_and_caches_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    calls = {"slow": 0, "fast": 0}

    def fake(name, delay):
        def op(*args):
            calls[name] += 1
            time.sleep(delay)
        return types.SimpleNamespace(forward=op, grad_input=op, grad_weight=op, warmup=lambda dtype: None,
                                     supports=lambda geom, dtype, precision: None)
    # 20 ms a pass: once (2026-12-04, in `make test` just after an edit, while numba's kernels
    # compiled on their background thread) 4 ms did not separate the two
    fakes = {"reference": backends.get("reference"), "slow": fake("slow", 0.02), "fast": fake("fast", 0.0)}
    monkeypatch.setattr(backends, "available", lambda: ["reference", "slow", "fast"])
    monkeypatch.setattr(backends, "get", fakes.__getitem__)
    monkeypatch.setattr(backends, "_load", fakes.__getitem__)
    monkeypatch.setattr(backends, "_measured", {})
    monkeypatch.setenv(backends.AUTO_MEASURE_ENV, "measure")
    assert backends.choose(DENSE, np.float32) == "fast"
    timed = dict(calls)
    assert backends.choose(DENSE, np.float32) == "fast"
    assert calls == timed  # the second call used the cache
    assert backends.choose(DEPTHWISE, np.float32) == "fast" and calls["slow"] > timed["slow"]


@pytest.mark.parametrize("case", cases.TINY + cases.SUITES["full"], ids=cases.name)
def test_auto_runs_what_choose_backend_says(monkeypatch, case):
    # Only the dispatch is under test: a batch of one keeps the big suite shapes cheap, and every
    # backend counts as compiled (numba finishing in the background between the two would change auto's pick).
    monkeypatch.setattr(backends, "_ready", lambda name, dtype: True)
    monkeypatch.setattr(api, "_VALIDATED", {})  # a call seen before would skip auto's choice
    x = np.zeros((1, *case.x_shape[1:]), np.float32)
    w = np.zeros(case.w_shape, np.float32)
    picked = fastconv.choose_backend(x.shape, w.shape, **case.kwargs, dtype=np.float32)
    ran = []
    get = backends.get

    def spy(name):
        ran.append(name)
        return get(name)
    monkeypatch.setattr(backends, "get", spy)
    gradients = [fastconv.choose_backend(x.shape, w.shape, **case.kwargs, dtype=np.float32, gradient=g)
                 for g in ("input", "weight")]
    y = fastconv.conv2d(x, w, **case.kwargs)
    fastconv.conv2d_backward(y, x, w, **case.kwargs)
    assert ran == [picked, *gradients]


def test_measured_choices_are_saved_and_reused_by_the_next_process(monkeypatch, tmp_path):
    """FASTCONV_AUTO=measure writes its choices to the cache directory; a fresh process (an empty
    in-memory cache) reads them instead of timing again; a damaged file is measured over."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(backends.AUTO_MEASURE_ENV, "measure")
    monkeypatch.setattr(backends, "_ready", lambda name, dtype: True)
    monkeypatch.setattr(backends, "available", lambda: ["reference", "im2col", "numba"])
    monkeypatch.setattr(backends, "time_candidates", lambda geom, dtype, names: {"im2col": 2.0, "numba": 1.0})
    monkeypatch.setattr(backends, "_measured", {})
    assert backends.choose(DENSE, np.float32) == "numba"
    assert "numba" in backends._choices_file().read_text()
    monkeypatch.setattr(backends, "_measured", {})  # as in a new process
    monkeypatch.setattr(backends, "time_candidates", lambda *a: pytest.fail("timed again"))
    assert backends.choose(DENSE, np.float32) == "numba"
    backends._choices_file().write_text("{not json")
    monkeypatch.setattr(backends, "_measured", {})
    monkeypatch.setattr(backends, "time_candidates", lambda geom, dtype, names: {"im2col": 1.0, "numba": 2.0})
    assert backends.choose(DENSE, np.float32) == "im2col"


def test_a_repeated_call_runs_what_auto_picks_now(installed, monkeypatch):
    """A call seen before skips validation and auto's choice (``api._VALIDATED``), but still runs
    auto's pick of the moment: after the rules or the precision change, or under FASTCONV_AUTO=measure."""
    installed(*backends.available())  # all of them, compiled
    monkeypatch.setattr(api, "_VALIDATED", {})
    ran = []
    for name in backends.available():
        module = backends.get(name)
        monkeypatch.setattr(module, "forward", lambda *a, _name=name, _run=module.forward, **k:
                            ran.append(_name) or _run(*a, **k))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 9, 9)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)

    def run():
        return fastconv.conv2d(x, w, padding=1)

    first, pick = run(), fastconv.choose_backend(x.shape, w.shape, padding=1, dtype=np.float32)
    np.testing.assert_array_equal(run(), first)  # the same backend, the same bits
    assert ran == [pick, pick] and len(api._VALIDATED) == 1
    for precision in ("high", "highest"):
        with fastconv.precision(precision):
            run()
            assert ran[-1] == fastconv.choose_backend(x.shape, w.shape, padding=1, dtype=np.float32)
    # a rule that reads the threads (as numba's ``patch_rows`` does): the pick follows their count
    monkeypatch.setattr(backends, "AUTO_PASS_RULES", ())  # (a forward row takes this call on Zen 4)
    monkeypatch.setattr(backends, "AUTO_RULES", (
        ("one thread", lambda g: _threads.call_threads() == 1, ("im2col",)),
        ("otherwise", lambda g: True, ("numba",))))
    for threads, expected in ((2, "numba"), (1, "im2col"), (2, "numba")):
        with fastconv.threads(threads):
            run()
        assert ran[-1] == expected, threads
    other = "im2col" if pick != "im2col" else "numba"
    monkeypatch.setattr(backends, "AUTO_RULES", (("otherwise", lambda g: True, (other,)),))
    run()
    assert ran[-1] == other
    monkeypatch.setattr(backends, "_measured_choice", lambda geom, dtype, names: "reference")
    monkeypatch.setenv(backends.AUTO_MEASURE_ENV, "measure")
    run()
    assert ran[-1] == "reference"


@pytest.mark.parametrize("value, expected", [("measure", True), ("rule", False), (None, False)])
def test_measuring_reads_the_environment_of_the_moment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(backends.AUTO_MEASURE_ENV, raising=False)
    else:
        monkeypatch.setenv(backends.AUTO_MEASURE_ENV, value)
    assert backends.measuring() is expected
    monkeypatch.setattr(backends, "_MEASURE_ITEM", None)  # the plain os.environ.get
    assert backends.measuring() is expected


@pytest.mark.parametrize("geom, forward", [
    (FEW_TILES, "numba"),  # one 7x7 image, 512 -> 512: numba's patches, the threads splitting the channels
    (Geometry.from_args((1, 512, 14, 14), (512, 512, 3, 3), stride=2, padding=1), "numba"),
    (Geometry.from_args((1, 256, 7, 7), (256, 256, 3, 3), padding=1), "im2col"),  # under 384 input channels
    (Geometry.from_args((1, 256, 14, 14), (256, 256, 3, 3), padding=1), "im2col"),  # 49 tiles: the one-image rows
    (Geometry.from_args((1, 512, 7, 7), (512, 128, 3, 3), padding=1, groups=4), "im2col")])  # groups: the few-tiles row
def test_patch_rows_take_the_float32_forward_of_few_pixels(tiles, monkeypatch, geom, forward):
    """On full-width AVX-512, 384+ input channels over few output pixels (numba's patches split the
    output channels among two threads, not the pixels: ``AUTO_PATCH_ROWS_CHANNELS``) run numba's
    forward in float32; the gradients and float64's forward stay BLAS's; one thread splits nothing."""
    numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
    monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom: True)
    with fastconv.threads(2):
        assert backends.choose(geom, np.float32) == forward
        if forward == "numba":
            assert numba_jit.patch_rows(geom)
            assert backends.choose(geom, np.float32, pass_="grad_input") == "im2col"
            assert backends.choose(geom, np.float64) == "im2col"
    if geom is FEW_TILES:  # the pick made on two threads above is not kept for one
        with fastconv.threads(1):
            assert not numba_jit.patch_rows(geom) and backends.choose(geom, np.float32) == "im2col"


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("geom, grad_input", [
    (Geometry.from_args((2, 256, 7, 7), (64, 256, 3, 3), padding=1), "numba"),  # under 128 on a side
    (Geometry.from_args((3, 96, 5, 5), (96, 96, 3, 3), padding=1), "numba"),
    (Geometry.from_args((2, 256, 8, 8), (256, 256, 3, 3), padding=1), "winograd"),  # 128+ a side
    (Geometry.from_args((8, 384, 4, 4), (128, 384, 3, 3), padding=1), "winograd"),
    (Geometry.from_args((2, 256, 6, 6), (512, 256, 3, 3), padding=1), None),  # 512 output channels
    (Geometry.from_args((1, 256, 12, 12), (128, 256, 3, 3), padding=1), None),  # one image
    (Geometry.from_args((2, 256, 14, 14), (64, 256, 3, 3), padding=1), None),  # 98 F(2x2) tiles
    (Geometry.from_args((2, 256, 7, 7), (64, 128, 3, 3), padding=1, groups=2), None),  # two groups
    (Geometry.from_args((2, 256, 13, 13), (64, 256, 3, 3), padding=1, stride=2), None),  # at a stride
    (Geometry.from_args((2, 256, 1, 7, 7), (64, 256, 1, 3, 3), padding=(0, 1, 1)), None)])  # 3-D
def test_on_half_width_avx512_the_gradients_of_few_tiles_run_numba_and_winograd(tiles, monkeypatch, geom,
                                                                                grad_input, full):
    """``AUTO_HALF_WIDTH_FEW_TILES_*``: on AVX-512's half-width units the float32 gradients of a 2-D
    3x3 stride-1 call of one group on under 48 F(2x2) tiles over two images or more, up to 384
    output channels, run numba's weight gradient and winograd's input gradient from 128 channels
    a side, numba's below; not the few-tiles row's BLAS, which float64 keeps. Not on one image, 512
    output channels, in groups, at a stride, on 3-D calls, nor on full-width units."""
    _avx512(tiles, monkeypatch, full)
    taken = grad_input is not None and not full
    assert rules._half_width_few_tiles(geom) is taken
    if taken:
        assert backends.choose(geom, np.float32, pass_="grad_input") == grad_input
        assert backends.choose(geom, np.float32, pass_="grad_weight") == "numba"
        for pass_ in ("grad_input", "grad_weight"):  # float64: the few-tiles row's BLAS
            assert backends.choose(geom, np.float64, pass_=pass_) == "im2col", pass_


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("row, geom, blas", [
    # many8: ``AUTO_HALF_WIDTH_MANY_OUT_GRAD_INPUT_CHANNELS``, the input gradient, kernel past 1x1, unit
    # stride, 2+ images, 384+ output channels 8x the input's
    ("many8", Geometry.from_args((16, 16, 14, 14), (512, 16, 3, 3), padding=1), True),
    ("many8", Geometry.from_args((8, 8, 28, 28), (384, 8, 3, 3), padding=1), True),  # 384: from here
    ("many8", Geometry.from_args((2, 48, 7, 7), (512, 48, 5, 5), padding=2), True),
    ("many8", Geometry.from_args((8, 64, 1024), (512, 64, 5), padding=2), True),  # 1-D: 8x the input's
    ("many8", Geometry.from_args((16, 16, 20, 20), (256, 16, 5, 5), padding=2), False),  # 256 output channels
    ("many8", Geometry.from_args((16, 64, 14, 14), (384, 64, 5, 5), padding=2), False),  # 6x the input's
    ("many8", Geometry.from_args((8, 32, 14, 14), (512, 32, 5, 5), stride=2, padding=2), False),  # at a stride
    ("many8", Geometry.from_args((4, 48, 17, 17), (512, 24, 3, 3), padding=1, groups=2), False),  # two groups
    ("many8", Geometry.from_args((16, 64, 14, 14), (512, 64, 3, 3), padding=1), False),  # winograd's own rows
    ("many8", Geometry.from_args((8, 32, 14, 14), (512, 32, 1, 1)), False),  # 1x1: BLAS's row of its own
    ("many8", Geometry.from_args((1, 48, 14, 14), (512, 48, 3, 3), padding=1), False),  # one image
    # stem: ``AUTO_HALF_WIDTH_STEM_OUT_CHANNELS``, the forward, one image of up to 4 input channels,
    # 192+ output channels, kernel past 1x1
    ("stem", Geometry.from_args((1, 3, 35, 35), (512, 3, 5, 5), padding=2), True),
    ("stem", Geometry.from_args((1, 3, 112, 112), (192, 3, 7, 7), padding=3), True),  # 192: from here
    ("stem", Geometry.from_args((1, 2, 112, 112), (384, 2, 3, 3), padding=1, stride=2), True),
    ("stem", Geometry.from_args((1, 4, 20, 20), (768, 4, 3, 3), padding=1), True),
    ("stem", Geometry.from_args((1, 1, 224, 224), (96, 1, 5, 5), padding=2, stride=2), False),  # 96 output channels
    ("stem", Geometry.from_args((4, 3, 35, 35), (512, 3, 5, 5), padding=2), False),  # four images
    ("stem", Geometry.from_args((1, 8, 35, 35), (512, 8, 5, 5), padding=2), False),  # 8 input channels
    ("stem", Geometry.from_args((1, 4, 35, 35), (512, 2, 5, 5), padding=2, groups=2), False),  # two groups
    ("stem", Geometry.from_args((1, 3, 35, 35), (512, 3, 1, 1)), False),  # 1x1
    ("stem", Geometry.from_args((1, 3, 4096), (512, 3, 7), padding=3), False),  # 1-D
    ("stem", Geometry.from_args((1, 3, 4, 56, 56), (256, 3, 3, 7, 7), padding=(1, 3, 3)), False),  # 3-D
    # one: ``AUTO_HALF_WIDTH_ONE_IMAGE_*``, one image, 192+ output channels over up to 400 output pixels
    ("one", Geometry.from_args((1, 128, 7, 7), (512, 128, 7, 7), padding=3), True),
    ("one", Geometry.from_args((1, 48, 10, 10), (384, 48, 5, 5), padding=2), True),  # 5x5: from here
    ("one", Geometry.from_args((1, 96, 20, 20), (192, 96, 5, 5), padding=2), True),  # 192 outputs, 400 pixels
    ("one", Geometry.from_args((1, 256, 12, 12), (128, 256, 7, 7), padding=3), False),  # 128 output channels
    ("one", Geometry.from_args((1, 48, 28, 28), (256, 48, 5, 5), padding=2), False),  # 784 output pixels
    ("one", Geometry.from_args((4, 128, 7, 7), (512, 128, 5, 5), padding=2), False),  # four images
    ("one", Geometry.from_args((1, 128, 7, 7), (512, 128, 3, 3), padding=1), False),  # 3x3
    ("one", Geometry.from_args((1, 128, 7, 7), (512, 128, 7, 1), padding=(3, 0)), False),  # 7x1
    ("one", Geometry.from_args((1, 128, 13, 13), (512, 128, 5, 5), padding=2, stride=2), False),  # at a stride
    ("one", Geometry.from_args((1, 128, 11, 11), (512, 128, 5, 5), padding=4, dilation=2), False),  # dilated
    ("one", Geometry.from_args((1, 128, 7, 7), (512, 64, 5, 5), padding=2, groups=2), False),  # two groups
    ("one", Geometry.from_args((1, 128, 256), (512, 128, 7), padding=3), False),  # 1-D
    # many: ``AUTO_HALF_WIDTH_MANY_OUT_LARGE_*``, 2+ images, 384+ output channels 4x the input's
    ("many", Geometry.from_args((2, 96, 10, 10), (512, 96, 5, 5), padding=2), True),
    ("many", Geometry.from_args((2, 96, 14, 14), (384, 96, 7, 7), padding=3), True),  # 384, 4x the input's: from here
    ("many", Geometry.from_args((2, 48, 7, 7), (512, 48, 5, 5), padding=2), True),  # 8x: the input gradient's row too
    ("many", Geometry.from_args((2, 104, 10, 10), (384, 104, 5, 5), padding=2), False),  # 3.7x the input's
    ("many", Geometry.from_args((4, 32, 14, 14), (256, 32, 5, 5), padding=2), False),  # 256 output channels
    ("many", Geometry.from_args((1, 96, 10, 10), (512, 96, 5, 5), padding=2), False),  # one image (its own row)
    ("many", Geometry.from_args((2, 64, 10, 10), (512, 64, 3, 3), padding=1), False),  # 3x3
    ("many", Geometry.from_args((2, 96, 19, 19), (512, 96, 5, 5), padding=2, stride=2), False),  # at a stride
    ("many", Geometry.from_args((2, 96, 14, 14), (512, 96, 5, 5), padding=4, dilation=2), False),  # dilated
    ("many", Geometry.from_args((2, 192, 10, 10), (768, 96, 5, 5), padding=2, groups=2), False),  # two groups
    ("many", Geometry.from_args((2, 96, 256), (512, 96, 5), padding=2), False)])  # 1-D
def test_on_half_width_avx512_rows_of_blas_passes(tiles, monkeypatch, row, geom, blas, full):
    """On AVX-512's half-width units these rows give BLAS the passes named, float32 and float64,
    and not past their limits nor on full-width units: many8, the input gradient of a kernel past
    1x1 at unit stride, one group, two images or more, 384+ output channels 8x the input's (not at
    a stride, in groups, on one image, on winograd's rows); stem, the forward of a 2-D call of one
    image, a kernel past 1x1, up to 4 input channels and 192+ output channels (not with fewer
    outputs, more images or inputs, in groups, 1x1, 1-D, 3-D); under 5x5 kernels and up,
    undilated at unit stride, one group, both gradients: one, of one image with 192+ output
    channels over up to 400 output pixels; many, over two images or more with 384+ output
    channels 4x the input's (not below those, under 3x3 or one-sided kernels, at a stride,
    dilated, in groups, 1-D)."""
    predicate, passes = {
        "many8": (rules._half_width_many_outputs, ("grad_input",)),
        "stem": (rules._half_width_stem, ("forward",)),
        "one": (rules._half_width_one_image_gradients, ("grad_input", "grad_weight")),
        "many": (rules._half_width_many_outputs_large, ("grad_input", "grad_weight"))}[row]
    numba_jit = _avx512(tiles, monkeypatch, full)
    if not full:  # half-width units run no input gradient's phase on tiles of output pixels (whatever this CPU does)
        monkeypatch.setattr(numba_jit, "pixel_tiles_input", lambda geom: False)
    taken = blas and not full
    assert predicate(geom) is taken
    if taken:
        for dtype in (np.float32, np.float64):
            for pass_ in passes:  # (winograd's row of 5x5 and 7x7 kernels comes first, for two passes)
                first = "winograd" if pass_ != "grad_weight" and rules._large_winograd(geom) else "im2col"
                assert backends.choose(geom, dtype, pass_=pass_) == first, (dtype, pass_)


@pytest.mark.parametrize(("geom", "taken"), [
    (Geometry.from_args((2, 128, 28, 28), (512, 128, 5, 5), padding=2), True),
    (Geometry.from_args((1, 256, 28, 28), (256, 256, 7, 7), padding=3), True),  # one image
    (Geometry.from_args((4, 192, 28, 28), (32, 192, 5, 5), padding=2), True),  # 32 output channels
    (Geometry.from_args((8, 24, 28, 28), (128, 24, 5, 5), padding=2), True),  # 24 input channels, 241M
    (Geometry.from_args((16, 96, 10, 10), (256, 96, 5, 5), padding=2), True),  # 10x10: 0.71 of a direct sum's
    (Geometry.from_args((16, 64, 16, 16), (64, 64, 5, 3), padding=(2, 1)), True),  # 5x3
    (Geometry.from_args((32, 64, 14, 14), (48, 64, 7, 7), padding=3), True),  # 7x7 on 14x14: 0.84
    (Geometry.from_args((4, 512, 10, 10), (128, 512, 7, 7), padding=3), False),  # 7x7 on 10x10: 1.00
    (Geometry.from_args((16, 64, 7, 7), (384, 64, 7, 7), padding=3), False),  # on 7x7: 1.50
    (Geometry.from_args((4, 64, 20, 20), (48, 64, 5, 5), padding=2), False),  # 123M multiply-adds
    (Geometry.from_args((1, 256, 14, 14), (256, 256, 5, 5), padding=2), True),  # 49 F(2x2) tiles
    (Geometry.from_args((16, 16, 28, 28), (128, 16, 5, 5), padding=2), False),  # 16 input channels
    (Geometry.from_args((4, 64, 28, 28), (64, 64, 3, 3), padding=1), False),  # 3x3: its own rows
    (Geometry.from_args((4, 64, 28, 28), (64, 64, 9, 9), padding=4), False),  # 9x9
    (Geometry.from_args((4, 64, 28, 28), (64, 64, 5, 1), padding=(2, 0)), False),  # 5x1
    (Geometry.from_args((8, 64, 57, 57), (64, 64, 5, 5), stride=2), False),  # at a stride
    (Geometry.from_args((4, 64, 28, 28), (64, 64, 5, 5), padding=4, dilation=2), False),  # dilated
    (Geometry.from_args((4, 128, 28, 28), (128, 64, 5, 5), padding=2, groups=2), False),  # two groups
    (Geometry.from_args((4, 64, 4, 28, 28), (64, 64, 1, 5, 5), padding=(0, 2, 2)), False)])  # 3-D
def test_large_kernels_run_winograds_blocks_forward_and_input_gradient(tiles, monkeypatch, geom, taken):
    """``_large_winograd``: 2-D 5x5 and 7x7 kernels (3, 5 or 7 taps each way) at unit stride,
    undilated, one group, 24+ channels a side, 150M+ multiply-adds, 48+ F(2x2) tiles in the batch,
    products (the grid's too) at most 0.9 of a direct sum's, on AVX-512 (half-width units;
    full-width ones from two images) with winograd installed: winograd's forward and input
    gradient, in float32 and float64; the weight gradient where winograd runs its blocks' adjoint
    (``_large_winograd_weight``; not on the first three: a thread's tiles too few, one image, 32
    output channels)."""
    for full in (False, True):
        numba_jit = tiles(True, "reference", "im2col", "numba", "winograd")
        monkeypatch.setattr(numba_jit, "full_width_tiles", lambda geom, full=full: full)
        taken_here = taken and (geom.n >= 2 or not full)  # (full-width units: two images and more)
        assert rules._large_winograd(geom) is (taken_here and winograd_runs_large())
        if taken_here and winograd_runs_large():
            from fastconv.backends import winograd
            blocks = winograd.large_weight_blocks(geom)
            assert rules._large_winograd_weight(geom) is blocks
            for dtype in (np.float32, np.float64):
                for pass_ in backends.PASSES:
                    got = backends.choose(geom, dtype, pass_=pass_)
                    # (in float32 small images of much padding run numba's images as the tiles'
                    # columns first: ``_images``; float64's row of these blocks comes before it)
                    if dtype == np.float32 and pass_ != "grad_weight" and rules._images(
                            geom, "images" if pass_ == "forward" else "images_input"):
                        assert got == "numba", (dtype, pass_, full)
                        continue
                    assert (got == "winograd") is (pass_ != "grad_weight" or blocks), (dtype, pass_, full)
    tiles(False, "reference", "im2col", "numba", "winograd")  # without AVX-512: not this row
    assert not rules._large_winograd(geom)
    tiles(True, "reference", "im2col", "numba")  # nor without winograd
    assert not rules._large_winograd(geom)


@pytest.mark.parametrize("geom", [
    Geometry.from_args((2, 512, 8, 8), (512, 512, 5, 5), padding=2),  # 32 F(2x2) tiles
    Geometry.from_args((1, 512, 12, 12), (512, 512, 5, 5), padding=2)])  # 36
def test_large_kernels_over_few_tiles_run_winograd_in_float64_only(tiles, geom):
    """``AUTO_LARGE_WINOGRAD_MIN_TILES``: under 48 F(2x2) tiles in the batch the float32 rows do not
    give winograd's blocks the forward and input gradient (the filters' transform, made on every
    call, is not repaid); float64's keep them."""
    tiles(True, "reference", "im2col", "numba", "winograd")
    assert not rules._large_winograd(geom)
    if rules._large_winograd(geom, 0):  # (where winograd runs the kernel here)
        for pass_ in ("forward", "grad_input"):
            assert backends.choose(geom, np.float32, pass_=pass_) != "winograd"
            assert backends.choose(geom, np.float64, pass_=pass_) == "winograd"


def winograd_runs_large() -> bool:
    """Whether winograd runs kernels past 3x3 here (on numba's register tiles)."""
    from fastconv.backends import _numba_gemm

    return _numba_gemm.TILES
