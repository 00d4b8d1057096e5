"""Numba kernels of the ``numba`` backend for the forwards and weight gradients that the other
tiled kernels leave to the packed path (few output channels a group, small, strided or dilated
images): output pixels (the weight gradient: taps) as the register tile's rows, output channels
across its columns.

The other tiled kernels put output channels in the tile's rows (MR of them) and pixels across its
columns (two vectors): a layer of 7x7 outputs fills such a panel of 32 pixels poorly, and one of
few output channels leaves the packed path's 4x4 dot products, sums in memory, to run it (192 -> 32
channels, 5x5 over 7x7, N=64: 12.8 ms, 75 GFLOP/s, against torch's 2.6). Here a tile is MR output
pixels, anywhere in an image (each row's offset into the padded input its own, ``ro``), times a
panel of output channels: the weight is packed once per call with its output channels across
(``b[(ci, ky, kx), co]``), and each pixel's taps are read where they lie in a zero-padded copy of
its image's group (``_numba_gemm``'s ``gather`` tiles, each tap's offset from a table, ``ko``), so
strides, dilations, ragged rows and small images cost no columns.

A work item (a slot's unit) is one image's group, or a block of its pixel tiles where the batch has
too few images for the threads. Its tiles run in blocks, a chunk of input channels at a time over
the whole block (the chunk's packed weight near L1's size), summing into the block's products,
which then go into ``y`` with the bias. Each output's sum runs over the same chunks in the same
order on any number of threads: the same bits. Measured in ``numba_jit`` (``PIXELS``): one
thread, float32, the 7x7 layer above 7.0-7.5 ms (129-138 GFLOP/s); a tile of 12 pixels (24 sums)
took 1.0-1.4x the time of 8, and half panels of 16 pixels 1.05-1.14x (their broadcasts, one a
sum, then bound them).
"""
import numpy as np
from numba.extending import register_jitable

from ._numba_gemm import GATHER_ROWS as MR  # output pixels a tile
from ._numba_gemm import _nr, _tile_gather, _tile_gather_half, tile_cols
from ._numba_implicit import _copy_group
from ._numba_kernels import _JIT, aligned, njit

U = np.uint64  # offsets into flat arrays (a signed index is tested for a negative value on every access)
BLOCKS_PER_SLOT = 2  # where images are fewer than slots: blocks of pixel tiles, this many a slot
BLOCK_TILES = 32  # pixel tiles whose products sum over the chunks of input channels at once
CHUNK_BYTES = 48 * 2**10  # packed weight a chunk of input channels (near L1's size)
GW_BLOCK_PIXELS = 256  # the weight gradient's blocks: at least this many output pixels of whole images ...
GW_CHUNK_PIXELS = 1024  # ... taken this many pixels a tile call (gy's transposed rows: 128 KiB at 32 channels)


# The sizes below are plain functions that compiled code calls too (``register_jitable``): the
# sizers in Python and the kernels' views read one layout.

@register_jitable
def chunk(cg, taps, nr, itemsize):
    """Input channels a chunk (``CHUNK_BYTES`` of packed weight, one channel at least)."""
    return max(1, min(cg, CHUNK_BYTES // (taps * nr * itemsize)))


@register_jitable
def _layout(c_in, c_out, kh, kw, groups, hp, wp, nr, itemsize):
    """Elements of ``part``'s workspace pieces: the packed weight (output channels in whole panels
    of ``nr`` columns), then per slot a group's padded planes and a block's products (floats), its
    tiles' rows' offsets and those with a chunk's steps' offsets (ints)."""
    cg, kg = c_in // groups, c_out // groups
    panels = (kg + nr - 1) // nr
    rows = BLOCK_TILES * MR
    return (aligned(groups * panels * cg * kh * kw * nr), aligned(cg * hp * wp), aligned(rows * panels * nr), rows,
            rows + chunk(cg, kh * kw, nr, itemsize) * kh * kw)


def scratch(c_in, c_out, kh, kw, groups, hp, wp, nslots, itemsize):
    """``(float, int)`` workspace elements of ``part`` in ``nslots`` slots (``_layout``)."""
    packed, planes, block, _, ints = _layout(c_in, c_out, kh, kw, groups, hp, wp, tile_cols(itemsize), itemsize)
    return packed + nslots * (planes + block), nslots * ints


@njit(inline="always", **_JIT)
def _views(c_in, c_out, kh, kw, groups, hp, wp, nthreads, fws, iws, slot):  # pragma: no cover
    """``part``'s workspaces, laid out as ``_layout`` sizes them."""
    packed, planes, block, rows, ints = _layout(c_in, c_out, kh, kw, groups, hp, wp, _nr(fws), fws.itemsize)
    own, mine = packed + slot * (planes + block), slot * ints
    return (fws[:packed], fws[own:own + planes], fws[own + planes:own + planes + block],
            iws[mine:mine + rows], iws[mine + rows:mine + ints])


@njit(inline="always", **_JIT)
def _share(per, tiles, nthreads, slot):  # pragma: no cover
    """How a pass's units go to slots: each of ``per`` units (an image's group, a group's block of
    images) in ``parts`` of ``tiles_per`` of its ``tiles`` where those units are fewer than the
    slots (``BLOCKS_PER_SLOT`` parts a slot), and this slot's ``u0:u1`` of the ``per * parts``:
    ``(parts, tiles_per, u0, u1)``."""
    parts = max(1, min(tiles, (BLOCKS_PER_SLOT * nthreads + per - 1) // per)) if per < nthreads else 1
    units = per * parts
    share = (units + nthreads - 1) // nthreads
    u0 = min(slot * share, units)
    return parts, (tiles + parts - 1) // parts, u0, min(u0 + share, units)


@njit(**_JIT)
def prepare(x, w, bias, y3, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, nthreads, fws, iws):  # pragma: no cover
    """The weight packed per group and panel of ``nr`` output channels, steps ``(ci, ky, kx)``
    (an input channel's taps, as the gather tile reads them): ``bp[((g*panels + pn)*k + step)*nr
    + j] = w[g*kg + pn*nr + j, ci, ky, kx]``, zero past the group's channels."""
    c_out, cg, kh, kw = w.shape
    k = cg * kh * kw
    kg = c_out // groups
    nr = _nr(fws)
    panels = (kg + nr - 1) // nr
    bp, _, _, _, _ = _views(x.shape[1], c_out, kh, kw, groups, hp, wp, nthreads, fws, iws, 0)
    for g in range(groups):
        for pn in range(panels):
            base = (g * panels + pn) * k * nr
            cols = min(nr, kg - pn * nr)
            for ci in range(cg):
                for ky in range(kh):
                    for kx in range(kw):
                        row = base + ((ci * kh + ky) * kw + kx) * nr
                        for j in range(cols):
                            bp[row + j] = w[g * kg + pn * nr + j, ci, ky, kx]
                        for j in range(cols, nr):
                            bp[row + j] = 0


@njit(**_JIT)
def part(x, w, bias, y3, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, nthreads, fws, iws, slot):  # pragma: no cover
    """This slot's share of the units (an image's group, or a block of its pixel tiles):
    ``y3[n, g*kg + co, oy*ow + ox] = sum over (ci, ky, kx) of w[g*kg + co, ci, ky, kx] *
    xp[n, g*cg + ci, oy*sh + ky*dil_h, ox*sw + kx*dil_w] + bias[g*kg + co]``, xp the input
    zero-padded (a negative padding: cropped) and cut to the ``hp x wp`` that the taps read."""
    n_img, c_in, ih, iw = x.shape
    c_out, cg, kh, kw = w.shape
    kg = c_out // groups
    nr = _nr(fws)
    half = nr // 2
    panels = (kg + nr - 1) // nr
    pix = y3.shape[2]
    ow = (wp - (kw - 1) * dil_w - 1) // sw + 1
    tiles = (pix + MR - 1) // MR
    bp, xl, acc, ro, ko = _views(c_in, c_out, kh, kw, groups, hp, wp, nthreads, fws, iws, slot)
    cb = chunk(cg, kh * kw, nr, fws.itemsize)
    for c in range(cb):  # a step's offset into a chunk's planes
        for ky in range(kh):
            for kx in range(kw):
                ko[(c * kh + ky) * kw + kx] = c * hp * wp + ky * dil_h * wp + kx * dil_w
    blocks, tiles_per, u0, u1 = _share(n_img * groups, tiles, nthreads, slot)
    plane = hp * wp
    xf = x.reshape(x.size)
    for i in range(xl.size):  # the padding stays zero over the slot's units
        xl[i] = 0
    last = -1
    for u in range(u0, u1):
        ng, blk = u // blocks, u % blocks
        n, g = ng // groups, ng % groups
        if ng != last:  # the group's channels, padded (what no tap reads, a negative padding's too, left out)
            last = ng
            _copy_group(xf, xl, n, g, cg, c_in, ih, iw, pt, pl, hp, wp, plane, wp)
        t_end = min(tiles, (blk + 1) * tiles_per)
        for tb in range(blk * tiles_per, t_end, BLOCK_TILES):
            te = min(t_end, tb + BLOCK_TILES)
            for i in range((te - tb) * MR):
                p = min(tb * MR + i, pix - 1)  # past the image's last pixel: that one again, dropped
                ro[i] = (p // ow) * sh * wp + (p % ow) * sw
            for c0 in range(0, cg, cb):
                kc = min(cb, cg - c0) * kh * kw
                for t in range(tb, te):
                    for pn in range(panels):
                        b0 = ((g * panels + pn) * cg + c0) * kh * kw * nr
                        at = ((t - tb) * panels + pn) * MR * nr
                        if kg - pn * nr <= half:
                            _tile_gather_half(xl, c0 * plane, 0, bp, b0, nr, acc, at, nr, kc, c0, acc, 0, 0,
                                              ro, (t - tb) * MR, ko, 0)
                        else:
                            _tile_gather(xl, c0 * plane, 0, bp, b0, nr, acc, at, nr, kc, c0, acc, 0, 0,
                                         ro, (t - tb) * MR, ko, 0)
            for pn in range(panels):
                co0 = g * kg + pn * nr
                for j in range(min(nr, kg - pn * nr)):
                    add = bias[co0 + j] if bias.size else 0
                    for t in range(tb, te):
                        at = ((t - tb) * panels + pn) * MR * nr
                        for r in range(min(MR, pix - t * MR)):
                            y3[n, co0 + j, t * MR + r] = acc[at + r * nr + j] + add


@njit(**_JIT)
def serial(x, w, bias, y3, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, nthreads, fws, iws):  # pragma: no cover
    """A one-slot call's ``prepare`` and ``part`` in one dispatch."""
    prepare(x, w, bias, y3, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, 1, fws, iws)
    part(x, w, bias, y3, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, 1, fws, iws, 0)


# -- the weight gradient: taps as the tile's rows, output channels across, pixels summed --------------
#
# gw[g*kg + co, ci, ky, kx] = sum over images n and output pixels p of gy[n, g*kg + co, p] *
# xp[n, g*cg + ci, oy*sh + ky*dil_h, ox*sw + kx*dil_w]: the same gather tile with its rows MR taps
# (each tap's offset into a group's padded planes its own, ``ro``) and its steps the pixels of a
# block of images (each pixel's offset, image included, from ``ko``), B being gy's block transposed
# (pixels down, output channels across). Each slot sums its images' blocks into sums of its own,
# which ``gw_finish`` adds in slot order: the same bits for a given number of threads.

@register_jitable
def gw_images(pix, n_img):
    """Images a block: ``GW_BLOCK_PIXELS`` output pixels or more, the batch at most."""
    return max(1, min(n_img, (GW_BLOCK_PIXELS + pix - 1) // pix))


@register_jitable
def _gw_layout(n_img, c_in, c_out, kh, kw, groups, hp, wp, pix, nr):
    """Elements of each slot's pieces of ``gw_part``'s workspace: its sums (every group's taps in
    whole tiles times its output channels in whole panels of ``nr``), a block's padded planes, its
    gy transposed (floats), the taps' offsets and the block's pixels' (ints)."""
    cg, kg = c_in // groups, c_out // groups
    taps = (cg * kh * kw + MR - 1) // MR * MR
    cols = (kg + nr - 1) // nr * nr
    nb = gw_images(pix, n_img)
    return aligned(groups * taps * cols), aligned(nb * cg * hp * wp), aligned(nb * pix * cols), taps, nb * pix


def gw_scratch(n_img, c_in, c_out, kh, kw, groups, hp, wp, pix, nslots, itemsize):
    """``(float, int)`` workspace elements of ``gw_part`` in ``nslots`` slots (``_gw_layout``)."""
    sums, planes, gys, taps, pixels = _gw_layout(n_img, c_in, c_out, kh, kw, groups, hp, wp, pix, tile_cols(itemsize))
    return nslots * (sums + planes + gys), nslots * (taps + pixels)


@njit(inline="always", **_JIT)
def _gw_views(n_img, c_in, c_out, kh, kw, groups, hp, wp, pix, nthreads, fws, iws, slot):  # pragma: no cover
    """``gw_part``'s workspaces of ``slot``, laid out as ``_gw_layout`` sizes them."""
    sums, planes, gys, taps, pixels = _gw_layout(n_img, c_in, c_out, kh, kw, groups, hp, wp, pix, _nr(fws))
    own, mine = slot * (sums + planes + gys), slot * (taps + pixels)
    return (fws[own:own + sums], fws[own + sums:own + sums + planes],
            fws[own + sums + planes:own + sums + planes + gys], iws[mine:mine + taps],
            iws[mine + taps:mine + taps + pixels])


@njit(**_JIT)
def gw_part(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, nthreads, fws, iws, slot):  # pragma: no cover
    """This slot's share of the units (a group's block of images, or part of its taps where the
    blocks are fewer than the slots), summed into its own sums."""
    n_img, c_in, ih, iw = x.shape
    c_out, cg, kh, kw = gw.shape
    kg = c_out // groups
    nr = _nr(fws)
    half = nr // 2
    panels = (kg + nr - 1) // nr
    cols = panels * nr
    pix = gy.shape[2] * gy.shape[3]
    ow = gy.shape[3]
    plane = hp * wp
    ntaps = cg * kh * kw
    tiles = (ntaps + MR - 1) // MR
    sums, xl, gt, ro, ko = _gw_views(n_img, c_in, c_out, kh, kw, groups, hp, wp, pix, nthreads, fws, iws, slot)
    nb = gw_images(pix, n_img)
    blocks = (n_img + nb - 1) // nb
    parts, tiles_per, u0, u1 = _share(groups * blocks, tiles, nthreads, slot)  # parts: of a block's taps
    for i in range(sums.size):
        sums[i] = 0
    if u0 == u1:
        return
    for i in range(xl.size):  # the padding stays zero over the slot's units
        xl[i] = 0
    for i in range(tiles * MR):  # a tap's offset into a group's planes (past the last: that one again)
        t = min(i, ntaps - 1)
        ci, ky, kx = t // (kh * kw), t // kw % kh, t % kw
        ro[i] = ci * plane + ky * dil_h * wp + kx * dil_w
    for i in range(nb):  # a pixel's offset, its image's planes included
        for p in range(pix):
            ko[i * pix + p] = i * cg * plane + (p // ow) * sh * wp + (p % ow) * sw
    xf = x.reshape(x.size)
    gf = gy.reshape(gy.size)
    last = -1
    for u in range(u0, u1):
        gb, part = u // parts, u % parts
        g, blk = gb // blocks, gb % blocks
        n0 = blk * nb
        m = min(nb, n_img - n0)
        for i in range(m if gb != last else 0):  # the block's planes and gy, once for its parts
            _copy_group(xf, xl[i * cg * plane:], n0 + i, g, cg, c_in, ih, iw, pt, pl, hp, wp, plane, wp)
            for p0 in range(0, pix, 16):  # gy's block transposed, zero past the group's channels, 16
                p1 = min(pix, p0 + 16)       # rows at a time (their lines stay in L1 while written)
                for j in range(cols):
                    src = U(((n0 + i) * c_out + g * kg + j) * pix)
                    for p in range(p0, p1):
                        gt[(i * pix + p) * cols + j] = gf[src + p] if j < kg else 0
        last = gb
        base = g * tiles * panels * MR * nr
        for k0 in range(0, m * pix, GW_CHUNK_PIXELS):  # gy's rows of a chunk stay in cache over its taps
            kc = min(GW_CHUNK_PIXELS, m * pix - k0)
            for t in range(part * tiles_per, min(tiles, (part + 1) * tiles_per)):
                for pn in range(panels):
                    at = base + (t * panels + pn) * MR * nr
                    if kg - pn * nr <= half:
                        _tile_gather_half(xl, 0, 0, gt, k0 * cols + pn * nr, cols, sums, at, nr, kc, 1, sums, 0, 0,
                                          ro, t * MR, ko, k0)
                    else:
                        _tile_gather(xl, 0, 0, gt, k0 * cols + pn * nr, cols, sums, at, nr, kc, 1, sums, 0, 0,
                                     ro, t * MR, ko, k0)


@njit(**_JIT)
def gw_finish(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, nthreads, fws, iws):  # pragma: no cover
    """gw from the slots' sums, added in slot order."""
    n_img, c_in = x.shape[0], x.shape[1]
    c_out, cg, kh, kw = gw.shape
    kg = c_out // groups
    nr = _nr(fws)
    panels = (kg + nr - 1) // nr
    pix = gy.shape[2] * gy.shape[3]
    ntaps = cg * kh * kw
    tiles = (ntaps + MR - 1) // MR
    gf = gw.reshape(gw.size)
    for slot in range(nthreads):  # (each element: slot 0's sum, plus slot 1's, ... in that order)
        sums, _, _, _, _ = _gw_views(n_img, c_in, c_out, kh, kw, groups, hp, wp, pix, nthreads, fws, iws, slot)
        for g in range(groups):
            for t in range(ntaps):
                for j in range(kg):
                    at = (((g * tiles + t // MR) * panels + j // nr) * MR + t % MR) * nr + j % nr
                    if slot == 0:
                        gf[(g * kg + j) * ntaps + t] = sums[at]
                    else:
                        gf[(g * kg + j) * ntaps + t] += sums[at]


@njit(**_JIT)
def gw_serial(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, nthreads, fws, iws):  # pragma: no cover
    """A one-slot call's ``gw_part`` and ``gw_finish`` in one dispatch."""
    gw_part(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, 1, fws, iws, 0)
    gw_finish(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, groups, hp, wp, 1, fws, iws)
