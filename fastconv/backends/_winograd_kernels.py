"""Numba kernels of the ``winograd`` backend: the three F(m x m, 3x3) transforms, m = 2 or 4.

1-D transforms of Lavin & Gray (2016), interpolation points 0, +-1, +-2 and infinity, for
``y = A^T [(G g) * (B^T d)]``; a 2-D transform applies one along columns, then along rows, each
as loops over all the tiles of a block so that they run in SIMD lanes. Values are float64 inside a
transform, rounded once when stored. Tile rows are numbered ``R = n * tiles_h + tr``; tile
``(tr, tc)`` reads input rows ``tr*m - pt ...`` and columns ``tc*m - pl ...`` (zero outside the
image) and writes output rows ``tr*m ...``, columns ``tc*m ...`` (dropped past the output's edge).
Work arrays ``v`` and ``mm`` are flat: value ``xi`` of channel ``c`` and the block's tile ``t`` sits
at ``(xi * channels + c) * tiles + t``, the layout of ``alpha^2`` stacked (channels, tiles) matrices.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._numba_gemm import KC, MR, VBITS, _batch_run, _batch_views, _declared, _red_unit, _transpose, _unit_views, batch
from ._numba_kernels import _CACHE, njit
from ._numba_spin import parts_done

# fastmath stays off: the error bounds in the README were measured with IEEE arithmetic.
_JIT = dict(nogil=True, cache=_CACHE, fastmath=False, error_model="numpy")

U = np.uint64  # offsets into flat work arrays (see the note above the input transform)


@njit(**_JIT)
def _g_rows(m, src, o0, o1, o2, dst, d, pitch, n):  # pragma: no cover
    """dst[d + i*pitch + f] = sum over k of G[i, k] * src[ok + f], f < n, for every row i of G: one
    pass over the three sources for all alpha rows (one thread, 512 x 512 packed filters, F(2x2)
    2.3 -> 1.8 ms, F(4x4) 4.4 -> 3.1 against a pass per row). In float64 whatever ``src``'s dtype:
    the filters gathered in their own dtype, the sums the same."""
    if m == 2:
        for f in range(n):
            s0, s1, s2 = np.float64(src[o0 + f]), np.float64(src[o1 + f]), np.float64(src[o2 + f])
            dst[d + f] = s0
            dst[d + pitch + f] = 0.5 * (s0 + s1 + s2)
            dst[d + U(2) * pitch + f] = 0.5 * (s0 - s1 + s2)
            dst[d + U(3) * pitch + f] = s2
    else:
        for f in range(n):
            s0, s1, s2 = np.float64(src[o0 + f]), np.float64(src[o1 + f]), np.float64(src[o2 + f])
            dst[d + f] = 0.25 * s0
            dst[d + pitch + f] = (s0 + s1 + s2) * (-1.0 / 6.0)
            dst[d + U(2) * pitch + f] = (s0 - s1 + s2) * (-1.0 / 6.0)
            dst[d + U(3) * pitch + f] = (s0 + 2.0 * s1 + 4.0 * s2) * (1.0 / 24.0)
            dst[d + U(4) * pitch + f] = (s0 - 2.0 * s1 + 4.0 * s2) * (1.0 / 24.0)
            dst[d + U(5) * pitch + f] = s2


@njit(**_JIT)
def _filter_transform(wv, m, r0, r1, u):  # pragma: no cover
    """u[g, xi, r, s] = (G f G^T)[xi] for f = wv[g, r, s] (3x3), for ``r0 <= g*R + r < r1``: a row's
    filters gathered by tap, then G down their columns and along their rows in loops over the row
    (one thread, 512 x 512 filters: F(2x2) 4-6 ms -> 3-4, F(4x4) 14 -> 5-6 with views per tap)."""
    nr, ns = wv.shape[1], wv.shape[2]
    a = m + 2
    un = U(ns)
    f = np.empty(9 * ns, wv.dtype)  # f[tap*ns + s]: the row's filters by tap
    t = np.empty(3 * a * ns)  # t[(kx*a + i)*ns + s]: G down the kernels' columns
    uf = u.reshape(u.shape[0], -1)
    for rr in range(r0, r1):
        g, r = rr // nr, rr % nr
        for s in range(ns):
            for ky in range(3):
                for kx in range(3):
                    f[(ky * 3 + kx) * ns + s] = wv[g, r, s, ky, kx]
        for kx in range(3):
            _g_rows(m, f, U(kx) * un, U(3 + kx) * un, U(6 + kx) * un, t, U(kx * a) * un, un, un)
        ug = uf[g]
        for i in range(a):
            _g_rows(m, t, U(i) * un, U(a + i) * un, U(2 * a + i) * un, ug, U((i * a * nr + r) * ns), U(nr * ns), un)


@njit(**_JIT)
def _filter_transform_packed(wv, m, p0, p1, up, ky0, kx0, ny, nx):  # pragma: no cover
    """``up[g*alpha^2 + xi]`` = the (G f G^T)[xi] of the filters f = wv[g, r, s] (3x3), packed for
    the register tiles (``_numba_gemm._pack_a``: per block of KC input channels s, panels of MR
    output channels r), for the (group, panel) pairs ``p0 <= g*P + ip < p1``. A panel's filters
    are gathered by tap with the panel's row innermost, so G runs down their columns and along
    their rows in loops over (s, row) pairs, and each block of a panel is stored end to end in
    the packed order: no unpacked copy, no pass to pack it (one thread, 7x7 C=512: transform
    and pack 3.3 + 1.6 ms before). The same values as ``_filter_transform`` then ``_pack_a``;
    rows past wv's are transforms of zeros. Where ``up`` holds more than alpha^2 matrices a group
    (F(2x2)'s edge tiles: ``winograd.EDGE_FILTERS``), the nine after them are (1', j) for the 4
    points j, G along the filter's middle row; (i, 1'), G down its middle column; (1', 1'), the
    middle tap. f = wv[g, r, s, ky0 + ky, kx0 + kx] for ky < ny and kx < nx, zero past them: a
    larger kernel's 3x3 block (``_convolve_large``), or ``(0, 0, 3, 3)``, the whole 3x3 kernel. (No
    default arguments: Numba's dispatcher types the ones a Python call leaves out in Python, 40 us a
    call against 0.5 us, per part of every 3x3 call: N=8 128 -> 128 8x8, one thread, the transform's
    0.25 ms of a 1.2 ms call.)"""
    nr, ns = wv.shape[1], wv.shape[2]
    a = m + 2
    per = up.shape[0] // wv.shape[0]  # matrices a group
    panels = (nr + MR - 1) // MR
    mp = panels * MR
    cp = U(FILTER_CHUNK * MR)  # pitch of f's and t's rows: a chunk of input channels by the panel's rows
    # f[(tap*FILTER_CHUNK + s)*MR + row]: a chunk of the panel's filters by tap, in their dtype (half
    # the stores in float32: one thread, 512 x 512, F(2x2) 2.8-3.7 -> 2.7-3.1 ms, F(4x4) 4.6-4.9 ->
    # 3.9-4.2, 256 x 256 0.60 -> 0.48 and 0.79 -> 0.68, in one process, interleaved; the same bits)
    f = np.empty(9 * FILTER_CHUNK * MR, wv.dtype)
    t = np.empty(3 * a * FILTER_CHUNK * MR)  # t[((kx*a + i)*FILTER_CHUNK + s)*MR + row]: G down the columns
    flat, pitch = up.reshape(-1), U(up.shape[1])  # row xi of up at flat[xi * pitch]
    for pp in range(p0, p1):
        g, ip = pp // panels, pp % panels
        # the panel's rows innermost, each store one run of MR: 2-3x faster than a row at a time
        # (one thread, 512 x 512, 1.1-1.7 ms -> 0.5-0.7), the transposed view of grad_input most
        r0, full = U(ip * MR), (ip + 1) * MR <= nr
        for pc in range(0, ns, KC):
            kc = min(KC, ns - pc)
            for c0 in range(pc, pc + kc, FILTER_CHUNK):
                sc = U(min(FILTER_CHUNK, pc + kc - c0))
                run = sc * U(MR)
                for s in range(sc):  # unsigned indices: no test for wrap-around per element
                    ws = U(c0) + s
                    for ky in range(U(3)):
                        for kx in range(U(3)):
                            o = (ky * U(3) + kx) * cp + s * U(MR)
                            if ky >= ny or kx >= nx:
                                for rr in range(U(MR)):
                                    f[o + rr] = 0.0
                            elif full:
                                for rr in range(U(MR)):
                                    f[o + rr] = wv[U(g), r0 + rr, ws, U(ky0) + ky, U(kx0) + kx]
                            else:
                                for rr in range(U(MR)):
                                    f[o + rr] = wv[U(g), r0 + rr, ws, U(ky0) + ky, U(kx0) + kx] if r0 + rr < nr else 0.0
                for kx in range(3):
                    _g_rows(m, f, U(kx) * cp, U(3 + kx) * cp, U(6 + kx) * cp, t, U(kx * a) * cp, cp, run)
                d0 = U(pc * mp + ip * kc * MR + (c0 - pc) * MR)  # the chunk's place in each packed matrix
                for i in range(a):
                    _g_rows(m, t, U(i) * cp, U(a + i) * cp, U(2 * a + i) * cp, flat, U(g * per + i * a) * pitch + d0,
                            pitch, run)
                if per > a * a:  # the edge tiles' filters: G along the middle row, down the middle column, neither
                    d = U(g * per + a * a) * pitch + d0
                    _g_rows(m, f, U(3) * cp, U(4) * cp, U(5) * cp, flat, d, pitch, run)
                    for i in range(U(a)):
                        for q in range(run):
                            flat[d + (U(a) + i) * pitch + q] = t[(U(a) + i) * cp + q]
                    for q in range(run):
                        flat[d + U(2 * a) * pitch + q] = f[U(4) * cp + q]


# Input channels per chunk of ``_filter_transform_packed``: the chunk's gathered filters and their
# transform down the columns (float64) stay in L1 between the passes; a panel's whole row of them
# (9 + 18 values a filter, 0.6 MiB for F(4x4) at 512 input channels) had gone through L2.
FILTER_CHUNK = 32


@njit(**_JIT)
def large_products(ups, live, offs, v, mm, cs, cd, p, scratch):  # pragma: no cover
    """The products of a kernel larger than 3x3 as F(2x2,3x3) blocks (``winograd._convolve_large``):
    for each point xi, ``mm[xi]`` (cd x p) = the sum, over the blocks b live at xi (``live[b, xi]``),
    of ``ups[b, xi]`` (packed, cd x cs) times ``v[xi]``'s columns from ``offs[b]`` on (cs x p, the
    same pitch): block b reads the transformed input of the tile ``offs[b]`` further along the grid.
    Columns past ``p - offs[b]`` take no term of block b (tiles of the grid past the output). The
    blocks' terms are added in one order: the same bits however the tiles are cut into items."""
    ct, zeros = _batch_views(scratch, cd)
    a2 = ups.shape[1]
    for xi in range(a2):
        first = True
        vx = v[xi * cs * p:(xi + 1) * cs * p]
        mx = mm[xi * cd * p:(xi + 1) * cd * p]
        for b in range(offs.shape[0]):
            if live[b, xi]:
                o = offs[b]
                _batch_run(ups[b, xi], cd, zeros, vx[o:], mx, cs, p, 0, p - o, 0, 0, ct, 0, not first)
                first = False


@njit(**_JIT)
def large_red(dm, v, sums, live, offs, cd, cs, p, add, scratch):  # pragma: no cover
    """The weight gradient's products of a kernel larger than 3x3 as F(2x2,3x3) blocks
    (``winograd._grad_weight_large``), the adjoint of ``large_products``: for each block b and
    point xi live for it (``live[b, xi]``), ``sums[b, xi]`` (cd x cs) (+)= ``dm[xi]`` (cd x p)
    times the transpose of ``v[xi]``'s columns from ``offs[b]`` on (cs x p, the same pitch), over
    ``p - offs[b]`` columns: the output gradient is zero on the grid's tiles past the output, so
    the columns that would pair them with another image's tiles (or none) take no term. A point
    that no block takes is zeroed when not ``add`` (the filter transform reads every point)."""
    bp, ae, ct = _unit_views(cs, scratch)
    a2 = 16
    for b in range(offs.shape[0]):
        o = offs[b]
        for xi in range(a2):
            c0 = (b * a2 + xi) * cd * cs
            first = True
            if live[b, xi]:
                for p0 in range(0, p - o, KC):
                    _red_unit(dm, xi * cd * p + p0, p, 0, cd, v, xi * cs * p + o + p0, p, 0, cs, min(KC, p - o - p0), 1,
                              sums, c0, 1 if add or not first else 0, bp, ae, ct)
                    first = False
            if first and not add:
                sums[c0:c0 + cd * cs] = 0


# The input and output transforms run as long loops over all the tiles of a block (one channel at
# a time), each loop B^T or A^T (all their rows in one pass) applied to whole arrays of values: a
# loop over a row of tiles (4-28 tiles here) is too short for SIMD, and one over a tile's values is
# not SIMD at all.
# Their work arrays are flat and indexed by unsigned offsets, without views: Numba tests a signed
# index for wrap-around (which stops the loop vectorising) and counts references to every view
# (which cost more than the arithmetic: 4x slower in a first version with views).
# One thread, a block of 64-224 tiles (the README's 3x3 layers, 7x7 to 56x56), ns per tile and
# channel, loops over a row of tiles / these: input F(2x2) 9-26 / 9-17, F(4x4) 41-173 / 17-120;
# output F(2x2) 15-19 / 7-11, F(4x4) 26-87 / 13-62. Results are bit for bit the same.
E = 2  # the columns (and rows) a tile reads past its m: the next tile's first two
STAGE_TILES = 12  # tiles per row below which the output transform stages its rows (see there)


def transform_scratch(m, rows, tiles_w, itemsize):
    """``(bytes, (input copy elements, float64 elements))`` of the transforms' work arrays for a
    block of ``rows`` tile rows: ``_input_transform``'s ``s`` (input dtype: the rows its tiles
    read, and a zero) and the ``wk`` that both transforms use (the block's input transform is
    done before its output transform; its gather table is int64 in ``wk``); the bytes also count
    ``tile_order``'s order and spans."""
    a, nt = m + 2, rows * tiles_w
    s = a * rows * (m * tiles_w + E) + 1
    wk_in = 2 * m * a * nt + 1 + 2 * E * a * rows + E * nt + (m * a * nt + E * a * rows) + 3 * (rows + 1)
    # ``_input_lanes``' fits: (m tiles_w + 2) images (m tiles_h + 2) <= (m + 2)^2 (nt + rows)
    wk_out = (a * m + 3 * m * m) * nt + 1 + 3 * (rows + 1)  # also _grad_output_transform's
    wk = max(wk_in, wk_out)
    return s * itemsize + 8 * (wk + nt + 4 * a * a), (s, wk)  # with ``tile_order``'s arrays


def tile_counts(first, rows, tiles_h, tiles_w, cut_h, cut_w):
    """The tiles of ``tile_order``'s four spans over ``rows`` tile rows from row ``first`` on: in
    neither an image's last row nor its last column (where ``cut_h`` and ``cut_w`` crop them), in
    the last row only, in the last column only, in both."""
    last = (first + rows) // tiles_h - first // tiles_h if cut_h else 0  # rows r with r % tiles_h == tiles_h - 1
    inner = tiles_w - 1 if cut_w else tiles_w
    edge = 1 if cut_w else 0
    return (rows - last) * inner, last * inner, (rows - last) * edge, last * edge


_tile_counts = njit(inline="always", **_JIT)(tile_counts)  # the same, inlined in compiled code


@njit(**_JIT)
def tile_order(r0, r1, tiles_h, tiles_w, m, cut_h, cut_w, order, spans, lanes=0):  # pragma: no cover
    """Where the products put each tile of tile rows r0 .. r1 when an image's last tile row
    (``cut_h``) or column (``cut_w``) is cropped: ``order[jj*tiles_w + tc]`` = the column of tile
    tc of row jj. The tiles run in four spans: in neither an image's last row nor its last column
    (I), in the last row only (R), in the last column only (C), in both (X), each row's tiles
    adjacent within a span. A cropped tile's last transform point down (or across) is read by its
    last row (column) of pixels alone (A^T's last column is 0 but in its last row), which lies
    past y's edge: ``spans[xi]`` (two column ranges, ``_gemm.batch``'s) are the tiles whose
    products at transform point xi some kept pixel reads: all of them, I and R (point xi in the
    last column of the alpha x alpha), I and C (last row), or I (both). On 7x7 outputs they
    hold 225 of F(2x2)'s 256 products per image and channel pair, 121 of F(4x4)'s 144 (where
    skipping the rest pays: ``winograd._cropped``). With ``lanes``, the block is ``lanes`` whole
    images (r0 an image's first row) and each span runs position by position, the images' tiles
    at a position adjacent (``_input_lanes``' order; without cuts, one span)."""
    rows = r1 - r0
    w0 = tiles_w - 1 if cut_w else tiles_w  # a row's tiles outside the last column
    n_i, n_r, n_c, _ = _tile_counts(r0, rows, tiles_h, tiles_w, cut_h, cut_w)
    if lanes:
        for jj in range(rows):
            j, ty = jj // tiles_h, jj % tiles_h
            last_h = cut_h and ty == tiles_h - 1
            for tc in range(tiles_w):
                if cut_w and tc == tiles_w - 1:
                    col = n_i + n_r + n_c + j if last_h else n_i + n_r + ty * lanes + j
                else:
                    col = n_i + tc * lanes + j if last_h else (ty * w0 + tc) * lanes + j
                order[jj * tiles_w + tc] = col
    else:
        ki, kl = 0, 0
        for jj in range(rows):
            if cut_h and (r0 + jj) % tiles_h == tiles_h - 1:
                base, col = n_i + kl * w0, n_i + n_r + n_c + kl
                kl += 1
            else:
                base, col = ki * w0, n_i + n_r + ki
                ki += 1
            for tc in range(w0):
                order[jj * tiles_w + tc] = base + tc
            if cut_w:
                order[jj * tiles_w + tiles_w - 1] = col
    a = m + 2
    for i in range(a):
        for j in range(a):
            sp = spans[i * a + j]
            sp[0], sp[1], sp[2], sp[3] = 0, rows * tiles_w, 0, 0
            if cut_h and i == a - 1:
                sp[1], sp[2], sp[3] = n_i, n_i + n_r, n_i + n_r + n_c
            if cut_w and j == a - 1:
                sp[1], sp[2], sp[3] = n_i + (0 if cut_h and i == a - 1 else n_r), 0, 0


@njit(inline="always", **_JIT)
def _column(order, jj, tiles_w, tc):  # pragma: no cover
    """The products' column of tile tc of row jj: ``order``'s (``tile_order``), or in row order
    where ``order`` is empty."""
    return U(order[jj * tiles_w + tc]) if order.size else U(jj * tiles_w + tc)


@njit(**_JIT)
def _bt_rows(m, src, o0, o1, o2, o3, o4, o5, dst, od, dpitch, n):  # pragma: no cover
    """dst[od + i*dpitch + f] = sum over j of B^T[i, j] * src[oj + f] for f < n, every row i of
    B^T, in one pass over the sources (o4, o5 unused for m = 2). Against a pass per row, one
    thread, the whole input transform in ns per tile and channel, 56x56 C=64 to 7x7 C=512: F(2x2)
    6.4-7.1 -> 5.2-6.1, F(4x4) 19-32 -> 18.5-24 (the same bits)."""
    d1, d2, d3 = od + dpitch, od + U(2) * dpitch, od + U(3) * dpitch
    if m == 2:
        for f in range(n):
            s0, s1, s2, s3 = src[o0 + f], src[o1 + f], src[o2 + f], src[o3 + f]
            dst[od + f] = s0 - s2
            dst[d1 + f] = s1 + s2
            dst[d2 + f] = s2 - s1
            dst[d3 + f] = s1 - s3
        return
    d4, d5 = od + U(4) * dpitch, od + U(5) * dpitch
    # two loops of three rows: one loop of six did not vectorise (one thread, 252 tiles into
    # the transformed input's rows: 0.20 -> 0.09 ns per value, the same bits)
    for f in range(n):
        s0, s1, s2, s3, s4 = src[o0 + f], src[o1 + f], src[o2 + f], src[o3 + f], src[o4 + f]
        dst[od + f] = 4.0 * s0 - 5.0 * s2 + s4
        dst[d1 + f] = s3 + s4 - 4.0 * (s1 + s2)
        dst[d2 + f] = 4.0 * (s1 - s2) + s4 - s3
    for f in range(n):
        s1, s2, s3, s4, s5 = src[o1 + f], src[o2 + f], src[o3 + f], src[o4 + f], src[o5 + f]
        dst[d3 + f] = 2.0 * (s3 - s1) + s4 - s2
        dst[d4 + f] = 2.0 * (s1 - s3) + s4 - s2
        dst[d5 + f] = 4.0 * s1 - 5.0 * s3 + s5


@njit(**_JIT)
def _bt_block(m, src, o, pitch, dst, od, dpitch, n):  # pragma: no cover
    """dst[od + i*dpitch + f] = sum over j of B^T[i, j] * src[o + j*pitch + f], every row i, f < n."""
    o4 = o + U(4) * pitch if m == 4 else o
    o5 = o + U(5) * pitch if m == 4 else o
    _bt_rows(m, src, o, o + pitch, o + U(2) * pitch, o + U(3) * pitch, o4, o5, dst, od, dpitch, n)


@njit(**_JIT)
def _image_rows(r0, r1, tiles_h, m, shift, span, height, pitch, ix, oim):  # pragma: no cover
    """For each image j of tile rows r0 .. r1 (numbered from r0's image), at ``ix[oim + 3*j]``:
    the first row its tiles there read (tile row tr reads ``tr*m - shift`` .. ``+ span``, within
    ``height``), the row past the last, and where those rows start in a copy of them, image by
    image, ``pitch`` values each. Returns ``(the copy's length, the images)``."""
    bn0 = r0 // tiles_h
    images = (r1 - 1) // tiles_h + 1 - bn0 if r1 > r0 else 0
    n = 0
    for j in range(images):
        first = max(r0 - (bn0 + j) * tiles_h, 0)  # the image's tile rows in the block
        last = min(r1 - (bn0 + j) * tiles_h, tiles_h)
        lo, hi = max(first * m - shift, 0), min((last - 1) * m - shift + span, height)
        hi = max(lo, hi)
        o = oim + U(3 * j)
        ix[o], ix[o + U(1)], ix[o + U(2)] = lo, hi, n
        n += (hi - lo) * pitch
    return n, images


WIDE_ROW_TILES = 10  # tiles per row from which F(2x2)'s input transform runs a row at a time in vectors
WIDE_ROW_TILES_F4 = 7  # ... and F(4x4)'s (see ``_input_rows_vec``)


class _Rows:
    """What the row transforms in LLVM IR (``_row_function`` and the others) share: for floats of
    ``bits`` bits, vectors of a ``VBITS`` vector's lanes, their types, masked loads and stores, and
    the loop over a tile row's blocks of lanes tiles (``loop``)."""

    def __init__(self, module, bits):
        self.bits, self.lanes = bits, VBITS // bits
        self.scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
        self.vec, self.wide = ir.VectorType(self.scalar, self.lanes), ir.VectorType(ir.DoubleType(), self.lanes)
        self.i64, self.i32 = ir.IntType(64), ir.IntType(32)
        self.i64v, self.i32v = ir.VectorType(self.i64, self.lanes), ir.VectorType(self.i32, self.lanes)
        self.mvec = ir.VectorType(ir.IntType(1), self.lanes)
        self.ptr, self.vptr = self.scalar.as_pointer(), self.vec.as_pointer()
        self.align = ir.Constant(self.i32, bits // 8)
        self.mload = _declared(module, f"llvm.masked.load.v{self.lanes}f{bits}.p0", self.vec,
                               [self.vptr, self.i32, self.mvec, self.vec])
        self.mstore = _declared(module, f"llvm.masked.store.v{self.lanes}f{bits}.p0", ir.VoidType(),
                                [self.vec, self.vptr, self.i32, self.mvec])
        self.lane = ir.Constant(self.i64v, list(range(self.lanes)))
        self.none = ir.Constant(self.mvec, [0] * self.lanes)
        self.all = ir.Constant(self.mvec, [1] * self.lanes)
        self.zeros = ir.Constant(self.vec, [0.0] * self.lanes)

    def const(self, k):
        return ir.Constant(self.i64, k)

    def order(self, indices):
        """A shuffle's indices."""
        return ir.Constant(self.i32v, indices)

    def splat(self, c):
        """c in every lane, in the arithmetic's type (float64)."""
        return ir.Constant(self.wide, [c] * self.lanes)

    def spread(self, b, value, ty=None):
        """``value`` in every lane of a vector of ``ty`` (i64 lanes by default)."""
        ty = ty or self.i64v
        first = b.insert_element(ir.Constant(ty, ir.Undefined), value, ir.Constant(self.i32, 0))
        return b.shuffle_vector(first, ir.Constant(ty, ir.Undefined), self.order([0] * self.lanes))

    def below(self, b, first, end):
        """The lanes whose index ``first + lane`` is under ``end`` (an i64 vector)."""
        return b.icmp_signed("<", b.add(self.spread(b, first), self.lane), end)

    def load(self, b, base, at, mask=None):
        """The vector at ``base[at]``, float64 (the lanes outside ``mask`` zeros)."""
        p = b.bitcast(b.gep(base, [at]), self.vptr)
        if mask is None:
            value = b.load(p, align=self.bits // 8)
        else:
            value = b.call(self.mload, [p, self.align, mask, self.zeros])
        return b.fpext(value, self.wide) if self.bits == 32 else value

    def load_wide(self, b, base, at, mask=None):
        """The vector of lanes float64 values at ``base[at]``, ``base`` a float64 pointer (the lanes
        outside ``mask`` zeros)."""
        p = b.bitcast(b.gep(base, [at]), self.wide.as_pointer())
        if mask is None:
            return b.load(p, align=8)
        mload = _declared(b.module, f"llvm.masked.load.v{self.lanes}f64.p0", self.wide,
                          [self.wide.as_pointer(), self.i32, self.mvec, self.wide])
        return b.call(mload, [p, ir.Constant(self.i32, 8), mask, ir.Constant(self.wide, [0.0] * self.lanes)])

    def store(self, b, value, base, at, mask=None, rounded=False):
        """``value`` (float64 unless ``rounded``) rounded once to ``base[at]`` (the lanes in ``mask``)."""
        if self.bits == 32 and not rounded:
            value = b.fptrunc(value, self.vec)
        p = b.bitcast(b.gep(base, [at]), self.vptr)
        if mask is None:
            b.store(value, p, align=self.bits // 8)
        else:
            b.call(self.mstore, [value, p, self.align, mask])

    def loop(self, fn, b, tiles, block, carry=None):
        """Blocks of lanes tiles over a row of ``tiles`` (``b`` at the function's entry): whole blocks
        while one fits, then the row's last tiles as a whole block again ending on the row's end (some
        tiles a second time, to the same values: no mask) or, on rows of fewer tiles than a block, a
        masked one. ``block(b, t0, masked, carry)`` builds one at ``b`` and returns the new carry (a
        value carried from block to block, or None); returns ``(b, carry)`` at the end."""
        entry = b.block
        body, tail, last, overlap, masked, done = (fn.append_basic_block(n) for n in
                                                   ("blocks", "tail", "last", "overlap", "masked", "done"))
        b.cbranch(b.icmp_signed("<=", self.const(self.lanes), tiles), body, tail)
        b.position_at_end(body)
        t0 = b.phi(self.i64)
        t0.add_incoming(self.const(0), entry)
        held = None if carry is None else b.phi(carry.type)
        if held is not None:
            held.add_incoming(carry, entry)
        new = block(b, t0, False, held)
        following = b.add(t0, self.const(self.lanes))
        t0.add_incoming(following, b.block)
        if held is not None:
            held.add_incoming(new, b.block)
        after_blocks = b.block
        b.cbranch(b.icmp_signed("<=", b.add(following, self.const(self.lanes)), tiles), body, tail)
        b.position_at_end(tail)
        t1 = b.phi(self.i64)
        t1.add_incoming(self.const(0), entry)
        t1.add_incoming(following, after_blocks)
        rest = None if carry is None else b.phi(carry.type)
        if rest is not None:
            rest.add_incoming(carry, entry)
            rest.add_incoming(new, after_blocks)
        b.cbranch(b.icmp_signed("<", t1, tiles), last, done)
        b.position_at_end(last)
        b.cbranch(b.icmp_signed("<=", self.const(self.lanes), tiles), overlap, masked)
        ends = []
        for where, is_masked in ((overlap, False), (masked, True)):
            b.position_at_end(where)
            value = block(b, b.sub(tiles, self.const(self.lanes)) if not is_masked else t1, is_masked, rest)
            ends.append((value, b.block))
            b.branch(done)
        b.position_at_end(done)
        if carry is None:
            return b, None
        out = b.phi(carry.type)
        out.add_incoming(rest, tail)
        for value, where in ends:
            out.add_incoming(value, where)
        return b, out


def _ir_codegen(function, arrays):
    """The codegen of an intrinsic that calls ``function(module, bits)``, an LLVM function of its
    arguments in order: those at ``arrays`` 1-D arrays of one float dtype, passed as pointers to
    their first elements, the rest as they are."""
    def codegen(context, builder, signature, args):
        values = [context.make_array(signature.args[i])(context, builder, a).data if i in arrays else a
                  for i, a in enumerate(args)]
        fn = function(builder.module, signature.args[arrays[0]].dtype.bitwidth)
        result = builder.call(fn, values)
        return context.get_dummy_value() if signature.return_type == types.void else result

    return codegen


def _row_function(module, bits, m):
    """F(m x m)'s input transform (m = 2 or 4) of one tile row of one channel, as an LLVM function of
    ``module``: arguments ``(x, first, iw, ok, col0, tw, v, vbase, step)``: x's pointer, the element
    offset of the tile row's first input row and the rows' width (input row k at ``first + k*iw``,
    read only where bit k of ``ok`` is set, else zeros: it may lie outside x), x's column under the
    window's first (``-pl``), the tiles ``tw``; value xi of tile t goes to ``v[vbase + xi*step + t]``.

    A block of a vector's lanes of tiles at a time (``_Rows.loop``): per input row, loads masked to
    the image's columns (padding reads zeros) split by shuffles into the values at m*t .. m*t + m + 1
    of the block's tiles (F(2x2): two loads at column 2t, even and odd lanes, and two at 2t + 2;
    F(4x4): four at 4t split four ways by two stages, the next tile's first two values shifted in
    from a fifth), widened to float64; B^T down the columns, then along the rows, the operations and
    their order those of ``_bt_rows``' two passes, so the same bits as ``_input_transform``'s
    gather, rounded once when stored. Numba's loops over a row of tiles were too short to
    vectorise (the reason the general transform gathers the whole block's tiles first); here the
    vectors are explicit."""
    name = f"fastconv_winograd_row_f{m}_f{bits}"
    if name in module.globals:
        return module.globals[name]
    r = _Rows(module, bits)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [r.ptr] + [r.i64] * 5 + [r.ptr, r.i64, r.i64]), name=name)
    fn.linkage = "internal"
    x, first, iw, ok, col0, tw, v, vbase, step = fn.args
    a = m + 2
    evens, odds = r.order(list(range(0, 2 * r.lanes, 2))), r.order(list(range(1, 2 * r.lanes, 2)))
    shifted = [r.order(list(range(1, r.lanes)) + [r.lanes + q]) for q in range(2)]
    offsets = (0, r.lanes, 2, r.lanes + 2) if m == 2 else tuple(q * r.lanes for q in range(5))
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    rows = [b.gep(x, [b.add(first, b.mul(iw, r.const(k)))]) for k in range(a)]
    row_ok = [b.icmp_unsigned("!=", b.and_(ok, r.const(1 << k)), r.const(0)) for k in range(a)]
    iwv, twv = r.spread(b, iw), r.spread(b, tw)

    def bt(b, s):
        return _bt2(b, s) if m == 2 else _bt4(b, s, r.splat)

    def split(b, got):
        """A row's values at m*t + j, j < a, from its loads at ``offsets``."""
        if m == 2:
            return [b.shuffle_vector(got[0], got[1], evens), b.shuffle_vector(got[0], got[1], odds),
                    b.shuffle_vector(got[2], got[3], evens), b.shuffle_vector(got[2], got[3], odds)]
        e01, o01 = b.shuffle_vector(got[0], got[1], evens), b.shuffle_vector(got[0], got[1], odds)
        e23, o23 = b.shuffle_vector(got[2], got[3], evens), b.shuffle_vector(got[2], got[3], odds)
        p = [b.shuffle_vector(e01, e23, evens), b.shuffle_vector(o01, o23, evens),
             b.shuffle_vector(e01, e23, odds), b.shuffle_vector(o01, o23, odds)]
        return p + [b.shuffle_vector(p[q], got[4], shifted[q]) for q in range(2)]  # 4(t + 1), 4(t + 1) + 1

    def block(b, t0, masked, carry):
        start = b.add(col0, b.mul(t0, r.const(m)))  # x's column of tile t0's first value
        inside = [b.and_(b.icmp_signed(">=", b.add(r.spread(b, b.add(start, r.const(off))), r.lane),
                                       ir.Constant(r.i64v, [0] * r.lanes)),
                         r.below(b, b.add(start, r.const(off)), iwv)) for off in offsets]
        values = []  # per input row k: its values at m*t + j
        for k in range(a):
            got = [b.call(r.mload, [b.bitcast(b.gep(rows[k], [b.add(start, r.const(off))]), r.vptr), r.align,
                                    b.select(row_ok[k], inside[q], r.none), r.zeros]) for q, off in enumerate(offsets)]
            values.append([b.fpext(q, r.wide) for q in split(b, got)] if bits == 32 else split(b, got))
        cols = [[None] * a for _ in range(a)]  # B^T down the columns: cols[i][j]
        for j in range(a):
            for i, value in enumerate(bt(b, [values[k][j] for k in range(a)])):
                cols[i][j] = value
        keep = r.below(b, t0, twv) if masked else None
        for i in range(a):  # ... then along the rows: value a*i + j
            for j, value in enumerate(bt(b, cols[i])):
                r.store(b, value, v, b.add(b.add(vbase, t0), b.mul(step, r.const(a * i + j))), keep)

    b, _ = r.loop(fn, b, tw, block)
    b.ret_void()
    return fn


def _bt2(b, s):
    """F(2x2)'s B^T applied to four vectors (``_bt_rows``' m = 2, its operations in its order)."""
    s0, s1, s2, s3 = s
    return b.fsub(s0, s2), b.fadd(s1, s2), b.fsub(s2, s1), b.fsub(s1, s3)


def _bt4(b, s, splat):
    """F(4x4)'s B^T applied to six vectors (``_bt_rows``' m = 4, its operations in its order);
    ``splat(c)`` a vector of c's."""
    s0, s1, s2, s3, s4, s5 = s
    four, five, two = splat(4.0), splat(5.0), splat(2.0)
    return (b.fadd(b.fsub(b.fmul(four, s0), b.fmul(five, s2)), s4),
            b.fsub(b.fadd(s3, s4), b.fmul(four, b.fadd(s1, s2))),
            b.fsub(b.fadd(b.fmul(four, b.fsub(s1, s2)), s4), s3),
            b.fsub(b.fadd(b.fmul(two, b.fsub(s3, s1)), s4), s2),
            b.fsub(b.fadd(b.fmul(two, b.fsub(s1, s3)), s4), s2),
            b.fadd(b.fsub(b.fmul(four, s1), b.fmul(five, s3)), s5))


@intrinsic
def _row_f4(typingctx, x, first, iw, ok, col0, tw, v, vbase, step):
    """``_row_function`` for m = 4 (``_row_f2``'s arguments)."""
    return types.void(x, *[types.intp] * 5, v, types.intp, types.intp), _ir_codegen(
        lambda md, bits: _row_function(md, bits, 4), (0, 6))


@intrinsic
def _row_f2(typingctx, x, first, iw, ok, col0, tw, v, vbase, step):
    """``_row_function`` for m = 2 on 1-D arrays ``x`` and ``v`` of one float dtype, offsets in
    elements."""
    return types.void(x, *[types.intp] * 5, v, types.intp, types.intp), _ir_codegen(
        lambda md, bits: _row_function(md, bits, 2), (0, 6))


def _lanes_function(module, bits, m):
    """F(m x m)'s input transform (m = 2 or 4) of one tile position of ``images`` images, as an LLVM
    function of ``module``: arguments ``(p, at, prow, images, v, vbase, step)``: p a float64
    pointer to the padded planes with the images innermost (value (k, j) of the tile of image t at
    ``p[at + k*prow + j*images + t]``); value xi of image t's tile goes to ``v[vbase + xi*step +
    t]``. A block of a vector's lanes of images at a time (``_Rows.loop``): (m + 2)^2 loads, B^T
    down the columns and then along the rows (``_bt2``, ``_bt4``: ``_bt_rows``' operations in its
    order, in float64, so the same bits as ``_input_transform``'s gather), each value rounded once
    when stored."""
    name = f"fastconv_winograd_lanes_f{m}_f{bits}"
    if name in module.globals:
        return module.globals[name]
    r = _Rows(module, bits)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.DoubleType().as_pointer()] + [r.i64] * 3
                                             + [r.ptr, r.i64, r.i64]), name=name)
    fn.linkage = "internal"
    p, at, prow, images, v, vbase, step = fn.args
    a = m + 2
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    where = [[b.add(at, b.add(b.mul(prow, r.const(k)), b.mul(images, r.const(j)))) for j in range(a)] for k in range(a)]
    outs = [b.add(vbase, b.mul(step, r.const(xi))) for xi in range(a * a)]
    count = r.spread(b, images)

    def bt(b, s):
        return _bt2(b, s) if m == 2 else _bt4(b, s, r.splat)

    def block(b, t0, masked, carry):
        keep = r.below(b, t0, count) if masked else None
        cols = [[None] * a for _ in range(a)]  # B^T down the columns: cols[i][j], a column's loads at a time
        for j in range(a):
            for i, value in enumerate(bt(b, [r.load_wide(b, p, b.add(where[k][j], t0), keep) for k in range(a)])):
                cols[i][j] = value
        for i in range(a):  # ... then along the rows: value a*i + j
            for j, value in enumerate(bt(b, cols[i])):
                r.store(b, value, v, b.add(outs[a * i + j], t0), keep)

    b, _ = r.loop(fn, b, images, block)
    b.ret_void()
    return fn


@intrinsic
def _lanes_f2(typingctx, p, at, prow, images, v, vbase, step):
    """``_lanes_function`` for m = 2 on a 1-D float64 array ``p`` and a 1-D float array ``v``,
    offsets in elements."""
    return types.void(p, *[types.intp] * 3, v, types.intp, types.intp), _ir_codegen(
        lambda md, bits: _lanes_function(md, bits, 2), (4, 0))


@intrinsic
def _lanes_f4(typingctx, p, at, prow, images, v, vbase, step):
    """``_lanes_function`` for m = 4 (``_lanes_f2``'s arguments)."""
    return types.void(p, *[types.intp] * 3, v, types.intp, types.intp), _ir_codegen(
        lambda md, bits: _lanes_function(md, bits, 4), (4, 0))


@njit(**_JIT)
def _input_rows_vec(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, m, v, vc0, step):  # pragma: no cover
    """``_input_transform`` for m = 2 or 4 in row order (no ``order``): a tile row of a channel at
    a time in vectors (``_row_f2``, ``_row_f4``), straight from x. One thread, the whole batch's
    transform in blocks of 256 tiles, N=32, ns per tile and channel, gathered / here (2026-12-05, a
    noisy hour): F(2x2) float32 56x56 C=64 12.2 / 6.1, 28x28 C=128 13.7 / 7.6, 24x24 13.2 / 7.6,
    20x20 10.8 / 6.4, 18x18 14.2 / 9.2, but 14x14 C=256 14.4 / 16.4 and 12x12 14.2 / 18.3 (rows of
    fewer tiles than a vector's lanes, their stores masked); float64 28x28 18.9 / 15.3, 20x20 16.0
    / 9.0, 18x18 18.7 / 25.2 (two blocks of 8 for 9 tiles): hence from ``WIDE_ROW_TILES``. F(4x4)
    float32 56x56 C=64 34-35 / 16-17, 36x36 C=128 37-38 / 24.5-25, 28x28 (rows of 7) 35 / 31;
    float64 49 / 27.6, 49-50 / 30.4-30.7, 45-48 / 23-25: from ``WIDE_ROW_TILES_F4``. The same bits."""
    ih, iw = x.shape[2], x.shape[3]
    cx = x.shape[1]
    xf = x.reshape(x.size)
    nt = (r1 - r0) * tiles_w
    for c in range(cg):
        for jj in range(r1 - r0):
            rr = r0 + jj
            iy = (rr % tiles_h) * m - pt  # the tile row's first input row
            first = (((rr // tiles_h) * cx + c0 + c) * ih + iy) * iw
            ok = 0
            for k in range(m + 2):
                if 0 <= iy + k < ih:
                    ok |= 1 << k
            if m == 2:
                _row_f2(xf, first, iw, ok, -pl, tiles_w, v, (vc0 + c) * nt + jj * tiles_w, step)
            else:
                _row_f4(xf, first, iw, ok, -pl, tiles_w, v, (vc0 + c) * nt + jj * tiles_w, step)


@njit(**_JIT)
def _input_lanes(x, c0, cg, r0, images, tiles_h, tiles_w, pt, pl, m, v, vc0, step, order, wk):  # pragma: no cover
    """``_input_transform`` for m = 2 or 4 of ``images`` whole images from tile row r0 on, in
    ``tile_order``'s order with ``lanes`` (a position's tiles, one an image, adjacent): per
    channel, the images' padded planes are copied into ``wk`` (float64) with the images
    innermost, and each tile position's tiles of every image are transformed together in vectors
    (``_lanes_f2``, ``_lanes_f4``), straight into their place: no gather by table, no loop over a
    row's few tiles too short to vectorise. The same operations in the same order: the same bits."""
    ih, iw, cx = x.shape[2], x.shape[3], x.shape[1]
    xf = x.reshape(x.size)
    lanes = U(images)
    hp, wp = m * tiles_h + 2, m * tiles_w + 2  # padded rows and columns the tiles read
    prow = wp * images  # a padded row of every image
    nt = images * tiles_h * tiles_w
    for i in range(U(hp * prow)):
        wk[i] = 0.0  # the padding; the planes' pixels are written over for each channel
    ylo, yhi = max(0, pt), min(hp, ih + pt)  # padded rows and columns that hold pixels
    xlo, xhi = max(0, pl), min(wp, iw + pl)
    pitch = U(cx * ih * iw)  # from one image to the next
    first = r0 // tiles_h
    for c in range(cg):
        p0 = U((first * cx + c0 + c) * ih * iw)
        for py in range(ylo, yhi):
            for px in range(xlo, xhi):
                src = p0 + U((py - pt) * iw + px - pl)
                dst = U(py * prow + px * images)
                for j in range(lanes):
                    wk[dst + j] = xf[src + j * pitch]
        vc = (vc0 + c) * nt
        for ty in range(tiles_h):
            for tc in range(tiles_w):
                at = m * (ty * prow + tc * images)
                if m == 2:
                    _lanes_f2(wk, at, prow, images, v, vc + order[ty * tiles_w + tc], step)
                else:
                    _lanes_f4(wk, at, prow, images, v, vc + order[ty * tiles_w + tc], step)


@njit(**_JIT)
def _input_transform(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, vc0, vc, order,
                     vstep=0, lanes=0):  # pragma: no cover
    """v[xi, vc0 + c, t] = (B^T d B)[xi], d the input tile t of channel c0 + c < c0 + cg, tile rows
    r0 .. r1; ``v`` holds ``vc`` channels (a part of them transformed here: ``vc0``, ``cg``), point
    xi's ``vstep`` after xi - 1's (0: ``vc`` times the block's tiles, no gap).
    ``x`` C-contiguous; ``s`` and ``wk``: work arrays of ``transform_scratch``'s sizes.

    Per channel: the input rows the block's tiles read (their columns inside the window) are
    copied into ``s``, one loop per image where they are whole rows, then gathered by a table
    (made once per call; padding reads a zero after the copy) into m phases (column m*tc + r of
    tile tc: the a rows of tile t at ``p[(r*a + k)*nt + t]``, the E extra columns past a tile
    row's last tile aside), B^T applied down the columns (long loops over all tiles), then along
    the rows: value j < m of tile t is phase j's at t, j >= m phase j - m's at t + 1, except that
    a tile row's last tile takes it from the extra columns. Before, each tile row's a input rows
    were copied one by one and then split into phases: on small images those short loops took
    most of the time. One thread, ns per tile and channel before -> now, F(2x2): 7x7 C=512 19.7 ->
    11.1, 14x14 C=256 11.7 -> 7.7, 28x28 C=128 8.6 -> 7.0, 56x56 C=64 7.7 -> 6.6; F(4x4): 7x7 56
    -> 30, 56x56 24.5 -> 21.3 (the same bits). On rows of ``WIDE_ROW_TILES`` tiles or more (F(4x4):
    ``WIDE_ROW_TILES_F4``) in row order, a row at a time in vectors instead (``_input_rows_vec``);
    with ``lanes`` (whole images in ``tile_order``'s order with lanes), ``_input_lanes``."""
    step = vstep if vstep else vc * (r1 - r0) * tiles_w  # from one transform point's values to the next's
    if lanes:
        _input_lanes(x, c0, cg, r0, lanes, tiles_h, tiles_w, pt, pl, m, v, vc0, step, order, wk)
        return
    if not order.size and tiles_w >= (WIDE_ROW_TILES if m == 2 else WIDE_ROW_TILES_F4):
        _input_rows_vec(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, m, v, vc0, step)
        return
    ih, iw = x.shape[2], x.shape[3]
    xf = x.reshape(x.size)
    a = m + 2
    rows = r1 - r0
    nt = rows * tiles_w
    mt = m * tiles_w
    lo, hi = min(max(0, pl), mt + E), max(min(mt + E, iw + pl), 0)  # window columns inside the image
    hi = max(lo, hi)
    pitch = hi - lo  # of a row copied into s
    whole = lo - pl == 0 and pitch == iw  # the rows copied are whole rows: one loop per image
    un, ur = U(nt), U(rows)
    # wk: p[(r*a + k)*nt + t] input row k of tile t at column m*tc + r; col the same after B^T down
    # the columns (and one more value, read past the end by the shift); ex, cole[(q*a + k)*rows +
    # row] the extra columns, and after B^T; sh[q*nt + t] = col of phase q at t + 1, fixed up; then
    # (int64) the gather table of p and ex, and per image of the block (its first input row copied,
    # the rows past its last, its place in s)
    op, ocol = U(0), U(m * a * nt)
    oex = ocol + U(m * a * nt + 1)
    ocole = oex + U(E * a * rows)
    osh = ocole + U(E * a * rows)
    oix = osh + U(E * nt)
    oixe = oix + U(m * a * nt)
    oim = oixe + U(E * a * rows)
    ix = wk.view(np.int64)
    bn0 = r0 // tiles_h
    zero, images = _image_rows(r0, r1, tiles_h, m, pt, a, ih, pitch, ix, oim)
    s[zero] = 0.0  # what padding reads
    for jj in range(rows):
        rr = r0 + jj
        j, iy0 = rr // tiles_h - bn0, (rr % tiles_h) * m - pt
        o = oim + U(3 * j)
        ylo, yhi, z0 = ix[o], ix[o + U(1)], ix[o + U(2)]
        for k in range(a):
            iy = iy0 + k
            row = z0 + (iy - ylo) * pitch - lo  # s's place of window column q: row + q
            inside = ylo <= iy < yhi
            for r in range(m):
                d = oix + U((r * a + k) * nt)
                for tc in range(tiles_w):
                    q = m * tc + r
                    ix[d + _column(order, jj, tiles_w, tc)] = row + q if inside and lo <= q < hi else zero
            for q in range(E):
                ix[oixe + U((q * a + k) * rows + jj)] = row + mt + q if inside and lo <= mt + q < hi else zero
    cx = x.shape[1]
    for c in range(cg):
        for j in range(images):  # the rows read, into s
            o = oim + U(3 * j)
            ylo, yhi, z0 = ix[o], ix[o + U(1)], U(ix[o + U(2)])
            plane = (((bn0 + j) * cx + c0 + c) * ih) * iw
            if whole:
                src = U(plane + ylo * iw)
                for q in range(U((yhi - ylo) * iw)):
                    s[z0 + q] = xf[src + q]
            else:
                for y in range(ylo, yhi):
                    src, dst = U(plane + y * iw + lo - pl), z0 + U((y - ylo) * pitch)
                    for q in range(U(pitch)):
                        s[dst + q] = xf[src + q]
        for i in range(U(m * a * nt)):  # into phases
            wk[op + i] = s[U(ix[oix + i])]
        for i in range(U(E * a * rows)):
            wk[oex + i] = s[U(ix[oixe + i])]
        for r in range(m):  # B^T down the columns
            _bt_block(m, wk, op + U(r * a) * un, un, wk, ocol + U(r * a) * un, un, un)
        for q in range(E):
            _bt_block(m, wk, oex + U(q * a) * ur, ur, wk, ocole + U(q * a) * ur, ur, ur)
        for i in range(a):  # B^T along the rows
            for q in range(E):
                src, dst = ocol + U(q * a + i) * un + U(1), osh + U(q) * un
                for t in range(un):
                    wk[dst + t] = wk[src + t]
                oe = ocole + U((q * a + i) * rows)
                if not order.size:
                    for jj in range(rows):
                        wk[dst + U(jj * tiles_w + tiles_w - 1)] = wk[oe + U(jj)]
                    continue
                for jj in range(rows):  # and the tile before a row's last, which may lie elsewhere
                    end = U(order[jj * tiles_w + tiles_w - 1])
                    wk[dst + end] = wk[oe + U(jj)]
                    if tiles_w > 1:
                        wk[dst + U(order[jj * tiles_w + tiles_w - 2])] = wk[src - U(1) + end]
            ov, ci = U(i * a * step + (vc0 + c) * nt), ocol + U(i) * un
            if m == 2:
                _bt_rows(m, wk, ci, ci + U(a) * un, osh, osh + un, osh, osh, v, ov, U(step), un)
            else:
                _bt_rows(m, wk, ci, ci + U(a) * un, ci + U(2 * a) * un, ci + U(3 * a) * un, osh, osh + un, v, ov,
                         U(step), un)


@njit(inline="always", **_JIT)
def _at_value(m, q, z0, z1, z2, z3, z4, z5):  # pragma: no cover
    """Value q of F(m x m)'s A^T on a tile's m + 2 values (z4, z5 unused for m = 2): the one place
    of its sums and their order (``_at_block``, ``_at_scalar``; in LLVM IR ``_at2``, ``_at4``)."""
    if m == 2:
        return (z0 + z1) + z2 if q == 0 else (z1 - z2) - z3
    if q == 0:
        return (z0 + (z1 + z2)) + (z3 + z4)
    if q == 1:
        return (z1 - z2) + 2.0 * (z3 - z4)
    if q == 2:
        return (z1 + z2) + 4.0 * (z3 + z4)
    return ((z1 - z2) + 8.0 * (z3 - z4)) + z5


@njit(**_JIT)
def _at_block(m, src, o, pitch, dst, od, dpitch, n):  # pragma: no cover
    """dst[od + j*dpitch + f] = sum over i of A^T[j, i] * src[o + i*pitch + f] for every row j of
    A^T, f < n, in float64, in one pass over the sources for all m rows. Against a pass per row,
    the whole output transform F(4x4), one thread, ns per tile and channel: 56x56 C=64 12.4-13.4
    -> 10.2-10.5, 7x7 C=512 16.5-18.4 -> 13.7-14.8 (the same bits; F(2x2) about the same)."""
    s0, s1, s2, s3 = o, o + pitch, o + U(2) * pitch, o + U(3) * pitch
    d0, d1 = od, od + dpitch
    if m == 2:
        for f in range(n):
            z0, z1, z2, z3 = np.float64(src[s0 + f]), np.float64(src[s1 + f]), src[s2 + f], src[s3 + f]
            dst[d0 + f] = _at_value(2, 0, z0, z1, z2, z3, 0.0, 0.0)
            dst[d1 + f] = _at_value(2, 1, z0, z1, z2, z3, 0.0, 0.0)
        return
    s4, s5 = o + U(4) * pitch, o + U(5) * pitch
    d2, d3 = od + U(2) * dpitch, od + U(3) * dpitch
    for f in range(n):
        z0, z1, z2 = np.float64(src[s0 + f]), np.float64(src[s1 + f]), np.float64(src[s2 + f])
        z3, z4, z5 = np.float64(src[s3 + f]), np.float64(src[s4 + f]), np.float64(src[s5 + f])
        dst[d0 + f] = _at_value(4, 0, z0, z1, z2, z3, z4, z5)
        dst[d1 + f] = _at_value(4, 1, z0, z1, z2, z3, z4, z5)
        dst[d2 + f] = _at_value(4, 2, z0, z1, z2, z3, z4, z5)
        dst[d3 + f] = _at_value(4, 3, z0, z1, z2, z3, z4, z5)


@njit(**_JIT)
def _pixel_tables(r0, r1, tiles_h, tiles_w, m, oh, ow, wk, order):  # pragma: no cover
    """The work arrays of ``_output_staged`` and ``_grad_output_transform`` past their A passes'
    ``(m + 2)*m*nt + m*m*nt`` values in ``wk``: returns ``(ost, oix, oim, n, images)``, where ``wk[ost:]``
    holds the block's rows of the output (``oh`` x ``ow``), image by image, ``n`` values, and one
    slot past them; (int64) ``ix[oix + (r*m + q)*nt + t]`` where pixel (r, q) of tile t lies in
    those rows (``n`` past the edges); ``ix[oim:]`` ``_image_rows``' table, of ``images``."""
    nt = (r1 - r0) * tiles_w
    ost = U((m + 2) * m * nt + m * m * nt)
    oix = ost + U(m * m * nt + 1)
    oim = oix + U(m * m * nt)
    ix = wk.view(np.int64)
    n, images = _image_rows(r0, r1, tiles_h, m, 0, m, oh, ow, ix, oim)
    bn0 = r0 // tiles_h
    for jj in range(r1 - r0):
        rr = r0 + jj
        j, oy = rr // tiles_h - bn0, (rr % tiles_h) * m
        o = oim + U(3 * j)
        lo, hi, s0 = ix[o], ix[o + U(1)], ix[o + U(2)]
        for r in range(m):
            row = s0 + (oy + r - lo) * ow
            for q in range(m):
                d = oix + U((r * m + q) * nt)
                for tc in range(tiles_w):
                    ix[d + _column(order, jj, tiles_w, tc)] = row + tc * m + q if oy + r < hi and tc * m + q < ow else n
    return ost, oix, oim, n, images


def _out_function(module, bits, m):
    """F(m x m)'s output transform (m = 2 or 4) of one tile row of one output channel, as an LLVM
    function of ``module``: arguments ``(mm, mo, step, y, yo, ow, rows, full, bias)``: product xi of
    the row's tile t at ``mm[mo + xi*step + t]``; the row's tiles ``t < full`` (their m columns
    inside y) go to ``y[yo + r*ow + m*t + q]`` for the output rows ``r < rows``, plus ``bias`` (a
    double). Returns whether a value written is inf or NaN (tested in y's dtype).

    A block of a vector's lanes of tiles at a time (``_Rows.loop``), widened to float64: A^T along
    the tiles' rows, then down their columns, the operations and their order ``_at_tiles``', plus
    the bias, rounded once (the same bits as ``_output_rows``); a row's m columns interleaved by
    shuffles (``_store_interleaved``) and stored whole."""
    name = f"fastconv_winograd_out_f{m}_f{bits}"
    if name in module.globals:
        return module.globals[name]
    r = _Rows(module, bits)
    fn = ir.Function(module, ir.FunctionType(r.i64, [r.ptr, r.i64, r.i64, r.ptr] + [r.i64] * 4 + [ir.DoubleType()]),
                     name=name)
    fn.linkage = "internal"
    mm, mo, step, y, yo, ow, nrows, full, bias = fn.args
    a = m + 2
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    written = [b.icmp_signed(">", nrows, r.const(row)) for row in range(m)]
    present = [b.select(w, r.all, r.none) for w in written]
    fullv, ends = r.spread(b, full), r.spread(b, b.mul(full, r.const(m)))
    bv = r.spread(b, bias, r.wide)

    def at(b, z):
        return _at2(b, z) if m == 2 else _at4(b, z, r.splat)

    def block(b, t0, masked, bad):
        keep = r.below(b, t0, fullv) if masked else None
        ms = [r.load(b, mm, b.add(b.add(mo, t0), b.mul(step, r.const(xi))), keep) for xi in range(a * a)]
        rows = [at(b, ms[a * i:a * i + a]) for i in range(a)]  # along the tiles' rows: rows[i][q]
        out = [at(b, [rows[i][q] for i in range(a)]) for q in range(m)]  # down the columns: out[q][row]
        for row in range(m):
            cols, bad = _rounded(b, r, [b.fadd(out[q][row], bv) for q in range(m)], bad, keep, present[row])
            _store_interleaved(b, r, fn, cols, y, b.add(yo, b.mul(ow, r.const(row))), b.mul(t0, r.const(m)),
                               ends if masked else None, None if row == 0 else written[row])
        return bad

    b, bad = r.loop(fn, b, full, block, r.none)
    b.ret(b.zext(b.icmp_unsigned("!=", b.bitcast(bad, ir.IntType(r.lanes)), ir.Constant(ir.IntType(r.lanes), 0)),
                 r.i64))
    return fn


def _at2(b, z):
    """F(2x2)'s A^T applied to four vectors (``_at_block``'s m = 2, in its order)."""
    z0, z1, z2, z3 = z
    return b.fadd(b.fadd(z0, z1), z2), b.fsub(b.fsub(z1, z2), z3)


def _rounded(b, r, cols, bad, keep, present):
    """``cols`` (float64) rounded to y's dtype, and ``bad`` or'ed with their inf and NaN (in the
    lanes of ``keep``, where ``present``)."""
    if r.bits == 32:
        cols = [b.fptrunc(c, r.vec) for c in cols]
    for c in cols:
        odd = b.fcmp_unordered("!=", b.fsub(c, c), r.zeros)
        odd = odd if keep is None else b.and_(odd, keep)
        bad = b.or_(bad, b.and_(odd, present))
    return cols, bad


def _store_interleaved(b, r, fn, cols, y, yo, first, ends, when):
    """Store the m vectors ``cols`` (y's dtype, the tiles' columns q < m) interleaved, tile by tile,
    at ``y[yo + first + ...]``: m = 2 by one stage of shuffles, m = 4 by two. ``ends``: only y's
    columns ``first + ...`` under it (masked stores); ``when``: only where that i1 is set."""
    m, half = len(cols), r.lanes // 2
    pairs = [r.order([h * half + q // 2 + (r.lanes if q % 2 else 0) for q in range(r.lanes)]) for h in range(2)]
    vectors = [b.shuffle_vector(cols[0], cols[1], pairs[h]) for h in range(2)]  # q0 q1 q0 q1 ...
    if m == 4:
        quads = [r.order([h * half + 2 * (q // 4) + q % 2 + (r.lanes if q % 4 >= 2 else 0) for q in range(r.lanes)])
                 for h in range(2)]
        high = [b.shuffle_vector(cols[2], cols[3], pairs[h]) for h in range(2)]
        vectors = [b.shuffle_vector(vectors[k // 2], high[k // 2], quads[k % 2]) for k in range(4)]
    if when is not None:
        store, after = fn.append_basic_block("store"), fn.append_basic_block("after")
        b.cbranch(when, store, after)
        b.position_at_end(store)
    for k, value in enumerate(vectors):
        at = b.add(first, r.const(k * r.lanes))
        r.store(b, value, y, b.add(yo, at), None if ends is None else r.below(b, at, ends), rounded=True)
    if when is not None:
        b.branch(after)
        b.position_at_end(after)


def _at4(b, z, splat):
    """F(4x4)'s A^T applied to six vectors (``_at_block``'s m = 4, its operations in its order)."""
    z0, z1, z2, z3, z4, z5 = z
    return (b.fadd(b.fadd(z0, b.fadd(z1, z2)), b.fadd(z3, z4)),
            b.fadd(b.fsub(z1, z2), b.fmul(splat(2.0), b.fsub(z3, z4))),
            b.fadd(b.fadd(z1, z2), b.fmul(splat(4.0), b.fadd(z3, z4))),
            b.fadd(b.fadd(b.fsub(z1, z2), b.fmul(splat(8.0), b.fsub(z3, z4))), z5))


@intrinsic
def _out_f4(typingctx, mm, mo, step, y, yo, ow, rows, full, bias):
    """``_out_function`` for m = 4 (``_out_f2``'s arguments)."""
    ip = types.intp
    return ip(mm, ip, ip, y, ip, ip, ip, ip, types.float64), _ir_codegen(lambda md, bits: _out_function(md, bits, 4),
                                                                          (0, 3))


@intrinsic
def _out_f2(typingctx, mm, mo, step, y, yo, ow, rows, full, bias):
    """``_out_function`` for m = 2 on 1-D arrays ``mm`` and ``y`` of one float dtype, offsets in
    elements."""
    ip = types.intp
    return ip(mm, ip, ip, y, ip, ip, ip, ip, types.float64), _ir_codegen(lambda md, bits: _out_function(md, bits, 2),
                                                                          (0, 3))


# Tiles per row from which F(2x2)'s output transform runs a row at a time in vectors
# (``_output_rows_vec``). One thread, N=32, the whole batch's transform in blocks of 256 tiles
# into a y in memory, ns per tile and channel, the other ways / in vectors (2026-12-05): float32
# rows of 4 tiles (8x8 C=512) 6.8 / 10.7, 5 7.0 / 7.7, 6 6.1 / 7.2, 7 (14x14 C=256) 7.6 / 6.3,
# 8 7.6 / 5.6, 9 8.5 / 4.4, 10 6.7 / 4.1, 14 (28x28 C=128) 7.1 / 3.2, 28 (56x56 C=64) 5.0 / 2.6;
# float64 4 10.8 / 8.5, 7 10.3 / 7.0, 14 11.9 / 8.9, 28 11.1 / 7.6.
OUT_ROW_TILES = 7
OUT_ROW_TILES_F4 = 7  # ... and F(4x4)'s: rows of 14 tiles (56x56 C=64) 32.3 / 12.0-12.7 ns, under 7 not measured


@njit(inline="always", **_JIT)
def _at_scalar(m, z, q):  # pragma: no cover
    """Value q of A^T on one tile's m + 2 values ``z`` (``_at_value``)."""
    if m == 2:
        return _at_value(2, q, z[0], z[1], z[2], z[3], 0.0, 0.0)
    return _at_value(4, q, z[0], z[1], z[2], z[3], z[4], z[5])


@njit(inline="always", **_JIT)
def _at_column(mm, t, step, m, q, z, col):  # pragma: no cover
    """col[i] = value q of A^T along row i of the tile whose products are mm[t + xi*step], in
    ``_at_tiles``' order (``z``: a work array of m + 2): then ``_at_scalar(m, col, r)`` is the
    tile's pixel (r, q)."""
    a = m + 2
    for i in range(a):
        for j in range(a):
            z[j] = np.float64(mm[t + U(i * a + j) * step])
        col[i] = _at_scalar(m, z, q)


@njit(**_JIT)
def _output_rows_vec(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, step):  # pragma: no cover
    """``_output_transform`` for m = 2 or 4 in row order: a tile row of an output channel at a
    time in vectors (``_out_f2``, ``_out_f4``), the last tile of a row cut by y's edge through the
    same sums one column at a time (``_at_column``)."""
    oh, ow, cy = y.shape[2], y.shape[3], y.shape[1]
    yf = y.reshape(y.size)
    nt = (r1 - r0) * tiles_w
    full = min(tiles_w, ow // m)
    z, col = np.empty(m + 2), np.empty(m + 2)
    bad = False
    for k in range(kg):
        b = np.float64(bias[k0 + k]) if bias.size else 0.0
        for jj in range(r1 - r0):
            rr = r0 + jj
            oy = (rr % tiles_h) * m
            yo = (((rr // tiles_h) * cy + k0 + k) * oh + oy) * ow
            rows = min(m, oh - oy)
            if rows <= 0:  # a tile row past the output (``_convolve_large``'s grid): the kernels write row 0
                continue
            mo = k * nt + jj * tiles_w
            if m == 2:
                bad |= _out_f2(mm, mo, step, yf, yo, ow, rows, full, b) != 0
            else:
                bad |= _out_f4(mm, mo, step, yf, yo, ow, rows, full, b) != 0
            for q in range(ow - m * full):  # tile ``full``'s columns inside y
                _at_column(mm, U(mo + full), U(step), m, q, z, col)
                for r in range(rows):
                    at = yo + r * ow + m * full + q
                    yf[at] = _at_scalar(m, col, r) + b
                    bad |= yf[at] - yf[at] != 0.0
    return bad


@njit(**_JIT)
def _output_transform(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, mstep=0):  # pragma: no cover
    """y[n, k0 + k, tile] = A^T M A (+ bias[k0 + k] when ``bias`` is not empty), M the products of
    output channel k and the tile in ``mm``, tile rows r0 .. r1; pixels past y's edge are dropped.
    ``y`` C-contiguous; ``wk``: a float64 work array of ``transform_scratch``'s size; point xi's
    products ``mstep`` after xi - 1's (0: ``kg`` times the block's tiles, no gap). Returns
    whether a value written is inf or NaN (the caller then recomputes directly).

    Per channel: A^T along the tiles' rows, then down their columns (``_at_tiles``), then into y
    a tile row at a time (``_output_rows``), or, for rows of fewer than ``STAGE_TILES`` tiles,
    through the block's output rows staged (``_output_staged``). One thread, F(2x2), ns per tile
    and channel, by tile rows / staged: 7x7 C=512 6.7 / 3.7, 14x14 C=256 4.6 / 3.3, 28x28 C=128
    3.3 / 3.1-3.6, 56x56 C=64 2.6 / 3.3-4.2; F(4x4) 7x7 34 / 16. (One kernel with both ways ran
    the staged one at 4.4 and 22-28.) On rows of ``OUT_ROW_TILES`` tiles or more (F(4x4):
    ``OUT_ROW_TILES_F4``) in row order, a row at a time in vectors instead (``_output_rows_vec``)."""
    step = mstep if mstep else kg * (r1 - r0) * tiles_w  # from one transform point's products to the next's
    if not order.size and tiles_w >= (OUT_ROW_TILES if m == 2 else OUT_ROW_TILES_F4):
        return _output_rows_vec(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, step)
    if tiles_w < STAGE_TILES:
        return _output_staged(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, step)
    return _output_rows(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, step)


ITEM_BAD = 1  # ``item``'s returns besides 0: a value written is inf or NaN; ...
ITEM_WAITING = 2  # ... the transformed kernel was not ready in time: the item returned early


@njit(**_JIT)
def item(src, cs, cd, r0, r1, tiles_h, tiles_w, pt, pl, m, v, mm, s, wk, order, up, tiles, plan, bias,
         y, first_done, vstep, mstep, lanes, kernel, parts, ticks):  # pragma: no cover
    """One work item of ``winograd._convolve`` on the register tiles, every group: the input
    transform of tile rows r0 .. r1 into ``v`` (the first group's already there with
    ``first_done``; ``lanes``: ``_input_transform``'s), the products (``_numba_gemm.batch`` by
    ``plan``, the packed transformed kernel ``up[g]``) into ``mm`` and the output transform into
    y, in one compiled call: the GIL is released once an item, not three times (each time back,
    a thread could wait for the other's Python, 30-40 us on these machines). The kernel's
    transform is the job's shared work (``kernel``: its ``Shared.state``, ``parts`` parts): after
    the first group's input transform the item waits for it here, spinning up to ``ticks``
    cycles (``_numba_spin.parts_done``), or returns ``ITEM_WAITING`` (that input transformed)
    past them or if the job failed. ``vstep`` and ``mstep``: from one transform point's values to
    the next's in ``v`` and ``mm``. Returns 0, ``ITEM_BAD`` where a value written is inf or NaN,
    or ``ITEM_WAITING``."""
    bad = False
    nt = (r1 - r0) * tiles_w
    for g in range(up.shape[0]):
        if g > 0 or not first_done:
            _input_transform(src, g * cs, cs, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, 0, cs, order, vstep,
                             lanes)
            if g == 0 and not parts_done(kernel, parts, ticks):
                return ITEM_WAITING
        batch(up[g], cd, v, mm, cs, nt, tiles, plan, vstep, mstep)
        bad |= _output_transform(mm, g * cd, cd, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, mstep)
    return ITEM_BAD if bad else 0


@njit(**_JIT)
def _at_tiles(m, mm, k, nt, step, wk):  # pragma: no cover
    """Pixel (r, q) of every tile t of output channel k at wk[(m + 2)*m*nt + (r*m + q)*nt + t]: A^T
    along the tiles' rows (into wk's first (m + 2)*m*nt), then down their columns, in float64."""
    un, oa, oo = U(nt), U(0), U((m + 2) * m * nt)
    for i in range(m + 2):
        _at_block(m, mm, U(i * (m + 2)) * step + U(k * nt), step, wk, oa + U(i * m) * un, un, un)
    for j in range(m):
        _at_block(m, wk, oa + U(j) * un, U(m) * un, wk, oo + U(j) * un, U(m) * un, un)


@njit(**_JIT)
def _output_rows(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, mstep):  # pragma: no cover
    """``_output_transform`` writing y a tile row at a time."""
    oh, ow = y.shape[2], y.shape[3]
    rows = r1 - r0
    nt = rows * tiles_w
    un, step, oo = U(nt), U(mstep), U((m + 2) * m * nt)
    full = min(tiles_w, ow // m)  # the tiles whose m columns all lie inside y
    bad = False
    for k in range(kg):
        b = bias[k0 + k] if bias.size else 0.0
        _at_tiles(m, mm, k, nt, step, wk)
        for jj in range(rows):
            rr = r0 + jj
            bn, oy = rr // tiles_h, (rr % tiles_h) * m
            for r in range(min(m, oh - oy)):
                yr = y[bn, k0 + k, oy + r]
                o = oo + U(r * m) * un + _column(order, jj, tiles_w, 0)  # a row's uncropped tiles are adjacent
                # inf or NaN tested after rounding to y's dtype (float32 overflows)
                if m == 2:
                    for tc in range(U(full)):
                        q = U(2) * tc
                        yr[q], yr[q + U(1)] = wk[o + tc] + b, wk[o + un + tc] + b
                        z0, z1 = yr[q], yr[q + U(1)]
                        bad |= (z0 - z0 != 0.0) | (z1 - z1 != 0.0)
                else:
                    for tc in range(U(full)):
                        q = U(4) * tc
                        yr[q], yr[q + U(1)] = wk[o + tc] + b, wk[o + un + tc] + b
                        yr[q + U(2)], yr[q + U(3)] = wk[o + U(2) * un + tc] + b, wk[o + U(3) * un + tc] + b
                        z0, z1, z2, z3 = yr[q], yr[q + U(1)], yr[q + U(2)], yr[q + U(3)]
                        bad |= (z0 - z0 != 0.0) | (z1 - z1 != 0.0) | (z2 - z2 != 0.0) | (z3 - z3 != 0.0)
                for q in range(full * m, ow):  # the last tile, cropped
                    yr[q] = wk[oo + U(r * m + q % m) * un + _column(order, jj, tiles_w, q // m)] + b
                    bad |= yr[q] - yr[q] != 0.0
    return bad


@njit(**_JIT)
def _output_staged(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, mstep):  # pragma: no cover
    """``_output_transform`` through the block's output rows: the pixels scattered by a table
    (made once per call) into those rows, image by image (cropped pixels into one slot past
    them), which are then copied into y, one loop per image."""
    oh, ow = y.shape[2], y.shape[3]
    yf = y.reshape(y.size)
    rows = r1 - r0
    nt = rows * tiles_w
    step = U(mstep)
    oo = U((m + 2) * m * nt)  # wk: _at_tiles' values, then the rows staged and the tables
    ost, oix, oim, staged, images = _pixel_tables(r0, r1, tiles_h, tiles_w, m, oh, ow, wk, order)
    ix = wk.view(np.int64)
    bn0 = r0 // tiles_h
    cy = y.shape[1]
    bad = False
    for k in range(kg):
        b = bias[k0 + k] if bias.size else 0.0
        _at_tiles(m, mm, k, nt, step, wk)
        for i in range(U(m * m * nt)):
            wk[ost + U(ix[oix + i])] = wk[oo + i] + b
        for j in range(images):
            o = oim + U(3 * j)
            ylo, yhi, s0 = ix[o], ix[o + U(1)], U(ix[o + U(2)])
            dst = U((((bn0 + j) * cy + k0 + k) * oh + ylo) * ow)
            for q in range(U((yhi - ylo) * ow)):
                yf[dst + q] = wk[ost + s0 + q]
                z = yf[dst + q]  # inf or NaN tested after rounding to y's dtype (float32 overflows)
                bad |= z - z != 0.0
    return bad


# -- the weight gradient: the adjoints of the output and filter transforms ------------------------
# With M = the products of the forward, y = A^T M A and U = G g G^T, the weight gradient is
# dg = sum over tiles and images of G^T [(A dy A^T) * (B^T d B)] G: the output gradient's tiles go
# through A (``_grad_output_transform``), the products run over the tiles (reduction), and G^T
# comes last, once per filter (``_filter_grad_transform``).


@njit(**_JIT)
def _a_block(m, src, o, pitch, dst, od, dpitch, n):  # pragma: no cover
    """dst[od + i*dpitch + f] = sum over r of A[i, r] * src[o + r*pitch + f] for every row i of A
    ((m+2) x m, the transpose of ``_at_block``'s A^T), f < n, in float64."""
    s0, s1, s2, s3 = o, o + pitch, o + U(2) * pitch, o + U(3) * pitch
    d0, d1, d2, d3 = od, od + dpitch, od + U(2) * dpitch, od + U(3) * dpitch
    if m == 2:
        for f in range(n):
            z0, z1 = np.float64(src[s0 + f]), np.float64(src[s1 + f])
            dst[d0 + f], dst[d1 + f], dst[d2 + f], dst[d3 + f] = z0, z0 + z1, z0 - z1, -z1
        return
    d4, d5 = od + U(4) * dpitch, od + U(5) * dpitch
    for f in range(n):
        z0, z1, z2, z3 = np.float64(src[s0 + f]), np.float64(src[s1 + f]), src[s2 + f], src[s3 + f]
        e, o_ = z0 + z2, z1 + z3
        e4, o4 = z0 + 4.0 * z2, 2.0 * (z1 + 4.0 * z3)
        dst[d0 + f], dst[d1 + f], dst[d2 + f] = z0, e + o_, e - o_
        dst[d3 + f], dst[d4 + f], dst[d5 + f] = e4 + o4, e4 - o4, z3


@njit(**_JIT)
def _grad_output_transform(gy, k0, kg, r0, r1, tiles_h, tiles_w, m, dm, wk, order):  # pragma: no cover
    """dm[xi, k, t] = (A dy A^T)[xi], dy the m x m tile t of gy's channel k0 + k (zeros past gy's
    edge), tile rows r0 .. r1: the adjoint of ``_output_transform``, in its layout (``mm``'s), the
    tiles in ``order``'s columns (``tile_order``; row order where it is empty).
    ``gy`` C-contiguous; ``wk``: a float64 work array of ``transform_scratch``'s size.

    Per channel, as ``_input_transform`` reads its tiles: the block's rows of gy copied, one loop
    per image, then gathered by a table (made once per call; past gy's edge a zero after the
    copy) into the tiles' values, A down their columns and along their rows in long loops. One
    thread, ns per tile and channel, read a tile row at a time before -> now (two runs), F(2x2):
    7x7 C=512 12.1 -> 3.0-5.8, 14x14 C=256 5.7 -> 2.8-3.8, 56x56 C=64 3.0 -> 2.8-3.9; F(4x4): 7x7
    56 -> 20-28, 56x56 15 -> 12-14 (the same bits)."""
    oh, ow = gy.shape[2], gy.shape[3]
    gf = gy.reshape(gy.size)
    rows = r1 - r0
    nt = rows * tiles_w
    a = m + 2
    un, step = U(nt), U(kg * nt)
    # wk: p[(r*m + q)*nt + t] value (r, q) of tile t; h[(i*m + q)*nt + t] after A down the columns;
    # then the rows copied, a zero past them, and the tables
    op, oh_ = U(0), U(m * m * nt)
    ost, oix, oim, zero, images = _pixel_tables(r0, r1, tiles_h, tiles_w, m, oh, ow, wk, order)
    wk[ost + U(zero)] = 0.0
    ix = wk.view(np.int64)
    bn0 = r0 // tiles_h
    cy = gy.shape[1]
    for k in range(kg):
        for j in range(images):
            o = oim + U(3 * j)
            ylo, yhi, s0 = ix[o], ix[o + U(1)], U(ix[o + U(2)])
            src = U((((bn0 + j) * cy + k0 + k) * oh + ylo) * ow)
            for q in range(U((yhi - ylo) * ow)):
                wk[ost + s0 + q] = gf[src + q]
        for i in range(U(m * m * nt)):
            wk[op + i] = wk[ost + U(ix[oix + i])]
        for q in range(m):  # A down the columns
            _a_block(m, wk, op + U(q) * un, U(m) * un, wk, oh_ + U(q) * un, U(m) * un, un)
        for i in range(a):  # A along the rows
            _a_block(m, wk, oh_ + U(i * m) * un, un, dm, U(i * a) * step + U(k * nt), step, un)


@njit(**_JIT)
def _gt_stream(m, j, src, o, pitch, dst, od, n):  # pragma: no cover
    """dst[od + f] = sum over i of G[i, j] * src[o + i*pitch + f], f < n: column j of G (row j
    of G^T) applied to n values at once."""
    s0, s1, s2, s3 = o, o + pitch, o + U(2) * pitch, o + U(3) * pitch
    if m == 2:
        if j == 0:
            for f in range(n):
                dst[od + f] = src[s0 + f] + 0.5 * (src[s1 + f] + src[s2 + f])
        elif j == 1:
            for f in range(n):
                dst[od + f] = 0.5 * (src[s1 + f] - src[s2 + f])
        else:
            for f in range(n):
                dst[od + f] = src[s3 + f] + 0.5 * (src[s1 + f] + src[s2 + f])
        return
    s4, s5 = o + U(4) * pitch, o + U(5) * pitch
    if j == 0:
        for f in range(n):
            dst[od + f] = 0.25 * src[s0 + f] - (src[s1 + f] + src[s2 + f]) / 6.0 + (src[s3 + f] + src[s4 + f]) / 24.0
    elif j == 1:
        for f in range(n):
            dst[od + f] = (src[s2 + f] - src[s1 + f]) / 6.0 + (src[s3 + f] - src[s4 + f]) / 12.0
    else:
        for f in range(n):
            dst[od + f] = src[s5 + f] - (src[s1 + f] + src[s2 + f]) / 6.0 + (src[s3 + f] + src[s4 + f]) / 6.0


@njit(**_JIT)
def _filter_grad_transform(parts, m, r0, r1, gw, x0):  # pragma: no cover
    """gw[g*K + k, c, ky, kx] = (G^T dU G)[ky, kx], dU[xi] the sum over p, in order, of
    ``parts[p, g, x0 + xi, k, c]`` (the slices' products; ``x0``: the first point of a block's, where
    ``parts`` holds several blocks' points, ``_grad_weight_large``), for the (group, output
    channel) rows ``r0 <= g*K + k < r1``; the adjoint of ``_filter_transform``. Returns whether a
    value written is inf or NaN (the caller then recomputes directly)."""
    npart, groups, points, kg, cg = parts.shape
    a = m + 2
    a2 = a * a
    uc = U(cg)
    pf, gf = parts.reshape(-1), gw.reshape(-1)
    du = np.empty(a2 * cg)  # du[xi*cg + c], summed in float64
    t = np.empty(3 * a * cg)  # t[(ky*a + j)*cg + c]: G^T down the columns
    lanes = VBITS // 8 // gw.itemsize
    # o[(ky*3 + kx)*cg + c], rounded to gw's dtype (where gw takes it: one rounding either way),
    # with rows past the ninth to fill a square of lanes when a vector holds a filter's 9 taps
    o = np.empty((lanes if lanes >= 9 else 9) * cg, gw.dtype)
    bad = False
    for row in range(r0, r1):
        g, k = row // kg, row % kg
        for xi in range(a2):
            d = U(xi * cg)
            s = U(((g * points + x0 + xi) * kg + k) * cg)
            if npart == 1:
                for c in range(uc):
                    du[d + c] = pf[s + c]
                continue
            # the first two slices in one pass (a pass to copy the first, then one to add the second,
            # ran at 5-7 GB/s against 19: one thread, 2 x 16 x 512 x 512 float32 sums; the same sums)
            s1 = U(((((groups + g) * points) + x0 + xi) * kg + k) * cg)
            for c in range(uc):
                du[d + c] = np.float64(pf[s + c]) + pf[s1 + c]
            for p in range(2, npart):
                s = U((((p * groups + g) * points + x0 + xi) * kg + k) * cg)
                for c in range(uc):
                    du[d + c] += pf[s + c]
        for ky in range(3):
            for j in range(a):
                _gt_stream(m, ky, du, U(j) * uc, U(a) * uc, t, U(ky * a + j) * uc, uc)
        for ky in range(3):
            for kx in range(3):
                _gt_stream(m, kx, t, U(ky * a) * uc, uc, o, U(ky * 3 + kx) * uc, uc)
        ob = U(row * cg * 9)
        # gw's row: (c, ky, kx), so each tap's values go 9 apart. Where a vector holds 9 taps, a
        # square of lanes of o (taps x channels) is transposed in registers and its rows stored 9
        # apart in order, each row's values past its 9 overwritten by the next row's; the last
        # block's last row would spill past the row, so the last lanes channels go one by one.
        # One thread, the 512 x 512 filters of a 7x7 C=512 weight gradient, float32: 2.3 ms of
        # scattered stores before (the whole transform 7.1-7.6).
        c0 = 0
        if lanes >= 9:
            while c0 + 2 * lanes <= cg:
                _transpose(o, c0, cg, gf, row * cg * 9 + 9 * c0, 9)
                c0 += lanes
        for tap in range(9):
            oo = U(tap) * uc
            for c in range(U(c0), uc):
                gf[ob + U(9) * c + U(tap)] = o[oo + c]
        for c in range(U(9 * cg)):  # inf or NaN, tested after rounding to gw's dtype
            z = gf[ob + c]
            bad |= z - z != 0.0
    return bad
