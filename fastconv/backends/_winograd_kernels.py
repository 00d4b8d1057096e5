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

from ._numba_gemm import KC, MR, VBITS, _declared, _transpose, batch
from ._numba_kernels import _CACHE, njit

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
def _filter_transform_packed(wv, m, p0, p1, up):  # pragma: no cover
    """``up[g*alpha^2 + xi]`` = the (G f G^T)[xi] of the filters f = wv[g, r, s] (3x3), packed for
    the register tiles (``_numba_gemm._pack_a``: per block of KC input channels s, panels of MR
    output channels r), for the (group, panel) pairs ``p0 <= g*P + ip < p1``. A panel's filters
    are gathered by tap with the panel's row innermost, so G runs down their columns and along
    their rows in loops over (s, row) pairs, and each block of a panel is stored end to end in
    the packed order: no unpacked copy, no pass to pack it (one thread, 7x7 C=512: transform
    and pack 3.3 + 1.6 ms before). The same values as ``_filter_transform`` then ``_pack_a``;
    rows past wv's are transforms of zeros."""
    nr, ns = wv.shape[1], wv.shape[2]
    a = m + 2
    panels = (nr + MR - 1) // MR
    mp = panels * MR
    n8 = U(ns * MR)
    # f[(tap*ns + s)*MR + row]: the panel's filters by tap, in their dtype (half the stores in
    # float32: one thread, 512 x 512, F(2x2) 2.8-3.7 -> 2.7-3.1 ms, F(4x4) 4.6-4.9 -> 3.9-4.2, 256 x
    # 256 0.60 -> 0.48 and 0.79 -> 0.68, in one process, interleaved; the same bits)
    f = np.empty(9 * ns * MR, wv.dtype)
    t = np.empty(3 * a * ns * MR)  # t[((kx*a + i)*ns + s)*MR + row]: G down the columns
    flat, pitch = up.reshape(-1), U(up.shape[1])  # row xi of up at flat[xi * pitch]
    for pp in range(p0, p1):
        g, ip = pp // panels, pp % panels
        # the panel's rows innermost, each store one run of MR: 2-3x faster than a row at a time
        # (one thread, 512 x 512, 1.1-1.7 ms -> 0.5-0.7), the transposed view of grad_input most
        r0, full = U(ip * MR), (ip + 1) * MR <= nr
        for s in range(U(ns)):  # unsigned indices: no test for wrap-around per element
            for ky in range(U(3)):
                for kx in range(U(3)):
                    o = ((ky * U(3) + kx) * U(ns) + s) * U(MR)
                    if full:
                        for rr in range(U(MR)):
                            f[o + rr] = wv[U(g), r0 + rr, s, ky, kx]
                    else:
                        for rr in range(U(MR)):
                            f[o + rr] = wv[U(g), r0 + rr, s, ky, kx] if r0 + rr < nr else 0.0
        for kx in range(3):
            _g_rows(m, f, U(kx) * n8, U(3 + kx) * n8, U(6 + kx) * n8, t, U(kx * a) * n8, n8, n8)
        for i in range(a):
            for pc in range(0, ns, KC):
                kc = min(KC, ns - pc)
                o = U(pc * MR)
                _g_rows(m, t, U(i) * n8 + o, U(a + i) * n8 + o, U(2 * a + i) * n8 + o, flat,
                        U(g * a * a + i * a) * pitch + U(pc * mp + ip * kc * MR), pitch, U(kc * MR))


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
    wk_out = (a * m + 3 * m * m) * nt + 1 + 3 * (rows + 1)  # also _grad_output_transform's
    wk = max(wk_in, wk_out)
    return s * itemsize + 8 * (wk + nt + 4 * a * a), (s, wk)  # with ``tile_order``'s arrays


@njit(**_JIT)
def tile_order(r0, r1, tiles_h, tiles_w, m, cut_h, cut_w, order, spans):  # pragma: no cover
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
    skipping the rest pays: ``winograd._cropped``)."""
    rows = r1 - r0
    w0 = tiles_w - 1 if cut_w else tiles_w  # a row's tiles outside the last column
    last = 0
    for jj in range(rows):
        if cut_h and (r0 + jj) % tiles_h == tiles_h - 1:
            last += 1
    n_i, n_r = (rows - last) * w0, last * w0
    n_c = rows - last if cut_w else 0
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
WIDE_ROW_TILES_F4 = 7  # ... and F(4x4)'s (see ``_input_rows_f4``)


def _row_f2_function(module, bits):
    """F(2x2)'s input transform of one tile row of one channel, as an LLVM function of ``module``:
    arguments ``(x, o0, o1, o2, o3, ok, col0, iw, tw, v, vbase, step)``: x's pointer and the
    element offsets of the tile row's four input rows (row k read only where bit k of ``ok`` is
    set, else zeros), x's column under the window's first (``-pl``), the row's width, the tiles
    ``tw``; value xi of tile t goes to ``v[vbase + xi*step + t]``.

    A block of a vector's lanes of tiles at a time: per input row, two loads at column 2t and two
    at 2t + 2 (masked to the image's columns: padding reads zeros), split by shuffles into the
    values at 2t, 2t + 1, 2t + 2 and 2t + 3 of the block's tiles, widened to float64; B^T down the
    columns, then along the rows, the operations and their order those of ``_bt_rows``'s two
    passes, so the same bits as ``_input_transform``'s gather, rounded once when stored. Whole
    blocks store whole vectors; the row's last tiles are a whole block again, ending on the row's
    end (some tiles transformed twice, to the same values), or on rows of fewer tiles than a
    block, a masked one. Numba's loops over a row of tiles were too short to vectorise (the reason
    the general transform gathers the whole block's tiles first); here the vectors are explicit."""
    name = f"fastconv_winograd_row_f2_f{bits}"
    if name in module.globals:
        return module.globals[name]
    scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
    lanes = VBITS // bits
    vec, wide = ir.VectorType(scalar, lanes), ir.VectorType(ir.DoubleType(), lanes)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    i64v, mvec, i32v = ir.VectorType(i64, lanes), ir.VectorType(ir.IntType(1), lanes), ir.VectorType(i32, lanes)
    vptr = vec.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [scalar.as_pointer()] + [i64] * 8
                                             + [scalar.as_pointer(), i64, i64]), name=name)
    fn.linkage = "internal"
    x, o0, o1, o2, o3, ok, col0, iw, tw, v, vbase, step = fn.args
    align = ir.Constant(i32, bits // 8)
    mload = _declared(module, f"llvm.masked.load.v{lanes}f{bits}.p0", vec, [vptr, i32, mvec, vec])
    mstore = _declared(module, f"llvm.masked.store.v{lanes}f{bits}.p0", ir.VoidType(), [vec, vptr, i32, mvec])
    lane = ir.Constant(i64v, list(range(lanes)))
    evens = ir.Constant(i32v, list(range(0, 2 * lanes, 2)))
    odds = ir.Constant(i32v, list(range(1, 2 * lanes, 2)))
    none, zero = ir.Constant(mvec, [0] * lanes), ir.Constant(i64v, [0] * lanes)

    def const(k):
        return ir.Constant(i64, k)

    def bt(b, s0, s1, s2, s3):
        """F(2x2)'s B^T applied to four values (``_bt_rows``'s m = 2, in its order)."""
        return b.fsub(s0, s2), b.fadd(s1, s2), b.fsub(s2, s1), b.fsub(s1, s3)

    def spread(b, value):
        first = b.insert_element(ir.Constant(i64v, ir.Undefined), value, ir.Constant(i32, 0))
        return b.shuffle_vector(first, ir.Constant(i64v, ir.Undefined), ir.Constant(i32v, [0] * lanes))

    entry, loop, tail, last, done = (fn.append_basic_block(n) for n in ("entry", "loop", "tail", "last", "done"))
    b = ir.IRBuilder(entry)
    rows = [b.gep(x, [o]) for o in (o0, o1, o2, o3)]
    row_ok = [b.icmp_unsigned("!=", b.and_(ok, const(1 << k)), const(0)) for k in range(4)]
    iwv, twv = spread(b, iw), spread(b, tw)
    b.cbranch(b.icmp_signed("<=", const(lanes), tw), loop, tail)

    def block(b, t0, masked):
        """The tiles t0 .. t0 + lanes (with ``masked``, those before tw)."""
        start = b.add(col0, b.mul(t0, const(2)))  # x's column of tile t0's first value
        inside = {}
        for off in (0, lanes, 2, lanes + 2):
            cols = b.add(spread(b, b.add(start, const(off))), lane)
            inside[off] = b.and_(b.icmp_signed(">=", cols, zero), b.icmp_signed("<", cols, iwv))
        quads = []  # per input row k: its values at 2t, 2t + 1, 2t + 2, 2t + 3, float64
        for k in range(4):
            got = {off: b.call(mload, [b.bitcast(b.gep(rows[k], [b.add(start, const(off))]), vptr), align,
                                       b.select(row_ok[k], inside[off], none), ir.Constant(vec, [0.0] * lanes)])
                   for off in (0, lanes, 2, lanes + 2)}
            quad = [b.shuffle_vector(got[0], got[lanes], evens), b.shuffle_vector(got[0], got[lanes], odds),
                    b.shuffle_vector(got[2], got[lanes + 2], evens), b.shuffle_vector(got[2], got[lanes + 2], odds)]
            quads.append([b.fpext(q, wide) for q in quad] if bits == 32 else quad)
        cols = [[None] * 4 for _ in range(4)]  # B^T down the columns: cols[i][q]
        for q in range(4):
            cols[0][q], cols[1][q], cols[2][q], cols[3][q] = bt(b, *(quads[k][q] for k in range(4)))
        keep = b.icmp_signed("<", b.add(spread(b, t0), lane), twv) if masked else None
        base = b.add(vbase, t0)
        for i in range(4):  # ... then along the rows: value 4i + j
            for j, value in enumerate(bt(b, *cols[i])):
                value = b.fptrunc(value, vec) if bits == 32 else value
                at = b.bitcast(b.gep(v, [b.add(base, b.mul(step, const(4 * i + j)))]), vptr)
                if masked:
                    b.call(mstore, [value, at, align, keep])
                else:
                    b.store(value, at, align=bits // 8)

    b = ir.IRBuilder(loop)  # whole blocks
    t0 = b.phi(i64)
    t0.add_incoming(const(0), entry)
    block(b, t0, False)
    following = b.add(t0, const(lanes))
    t0.add_incoming(following, loop)
    b.cbranch(b.icmp_signed("<=", b.add(following, const(lanes)), tw), loop, tail)
    b = ir.IRBuilder(tail)  # the row's last tiles, fewer than a block
    t1 = b.phi(i64)
    t1.add_incoming(const(0), entry)
    t1.add_incoming(following, loop)
    b.cbranch(b.icmp_signed("<", t1, tw), last, done)
    b = ir.IRBuilder(last)
    overlap, masked = fn.append_basic_block("overlap"), fn.append_basic_block("masked")
    b.cbranch(b.icmp_signed("<=", const(lanes), tw), overlap, masked)
    b = ir.IRBuilder(overlap)  # a whole block that ends on the row's end, some tiles again: no mask
    block(b, b.sub(tw, const(lanes)), False)
    b.branch(done)
    b = ir.IRBuilder(masked)  # a row of fewer tiles than a block
    block(b, t1, True)
    b.branch(done)
    ir.IRBuilder(done).ret_void()
    return fn


def _bt4(b, s, const):
    """F(4x4)'s B^T applied to six vectors (``_bt_rows``' m = 4, its operations in its order);
    ``const(c)`` a vector of c's."""
    s0, s1, s2, s3, s4, s5 = s
    four, five, two = const(4.0), const(5.0), const(2.0)
    return (b.fadd(b.fsub(b.fmul(four, s0), b.fmul(five, s2)), s4),
            b.fsub(b.fadd(s3, s4), b.fmul(four, b.fadd(s1, s2))),
            b.fsub(b.fadd(b.fmul(four, b.fsub(s1, s2)), s4), s3),
            b.fsub(b.fadd(b.fmul(two, b.fsub(s3, s1)), s4), s2),
            b.fsub(b.fadd(b.fmul(two, b.fsub(s1, s3)), s4), s2),
            b.fadd(b.fsub(b.fmul(four, s1), b.fmul(five, s3)), s5))


def _row_f4_function(module, bits):
    """F(4x4)'s input transform of one tile row of one channel (``_row_f2_function``'s way, six
    input rows ``o0 .. o5``): per row five loads from column 4t, split four ways by two stages of
    shuffles into the values at 4t .. 4t + 3, those at 4t + 4 and 4t + 5 the next tile's first two
    (the fifth load's first lanes shifted in); B^T down the columns, then along the rows, in
    ``_bt_rows``' order: the same bits as the gather."""
    name = f"fastconv_winograd_row_f4_f{bits}"
    if name in module.globals:
        return module.globals[name]
    scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
    lanes = VBITS // bits
    vec, wide = ir.VectorType(scalar, lanes), ir.VectorType(ir.DoubleType(), lanes)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    i64v, mvec, i32v = ir.VectorType(i64, lanes), ir.VectorType(ir.IntType(1), lanes), ir.VectorType(i32, lanes)
    vptr = vec.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [scalar.as_pointer()] + [i64] * 10
                                             + [scalar.as_pointer(), i64, i64]), name=name)
    fn.linkage = "internal"
    x, o0, o1, o2, o3, o4, o5, ok, col0, iw, tw, v, vbase, step = fn.args
    align = ir.Constant(i32, bits // 8)
    mload = _declared(module, f"llvm.masked.load.v{lanes}f{bits}.p0", vec, [vptr, i32, mvec, vec])
    mstore = _declared(module, f"llvm.masked.store.v{lanes}f{bits}.p0", ir.VoidType(), [vec, vptr, i32, mvec])
    lane = ir.Constant(i64v, list(range(lanes)))
    evens = ir.Constant(i32v, list(range(0, 2 * lanes, 2)))
    odds = ir.Constant(i32v, list(range(1, 2 * lanes, 2)))
    shifted = [ir.Constant(i32v, list(range(1, lanes)) + [lanes + q]) for q in range(2)]
    none, zero = ir.Constant(mvec, [0] * lanes), ir.Constant(i64v, [0] * lanes)
    arith = wide if bits == 32 else vec

    def const(k):
        return ir.Constant(i64, k)

    def splat(c):
        return ir.Constant(arith, [c] * lanes)

    def spread(b, value):
        first = b.insert_element(ir.Constant(i64v, ir.Undefined), value, ir.Constant(i32, 0))
        return b.shuffle_vector(first, ir.Constant(i64v, ir.Undefined), ir.Constant(i32v, [0] * lanes))

    entry, loop, tail, last, done = (fn.append_basic_block(n) for n in ("entry", "loop", "tail", "last", "done"))
    b = ir.IRBuilder(entry)
    rows = [b.gep(x, [o]) for o in (o0, o1, o2, o3, o4, o5)]
    row_ok = [b.icmp_unsigned("!=", b.and_(ok, const(1 << k)), const(0)) for k in range(6)]
    iwv, twv = spread(b, iw), spread(b, tw)
    b.cbranch(b.icmp_signed("<=", const(lanes), tw), loop, tail)

    def block(b, t0, masked):
        start = b.add(col0, b.mul(t0, const(4)))  # x's column of tile t0's first value
        inside = []
        for q in range(5):
            cols = b.add(spread(b, b.add(start, const(q * lanes))), lane)
            inside.append(b.and_(b.icmp_signed(">=", cols, zero), b.icmp_signed("<", cols, iwv)))
        values = []  # per input row k: its values at 4t + j, j < 6
        for k in range(6):
            got = [b.call(mload, [b.bitcast(b.gep(rows[k], [b.add(start, const(q * lanes))]), vptr), align,
                                  b.select(row_ok[k], inside[q], none), ir.Constant(vec, [0.0] * lanes)])
                   for q in range(5)]
            e01, o01 = b.shuffle_vector(got[0], got[1], evens), b.shuffle_vector(got[0], got[1], odds)
            e23, o23 = b.shuffle_vector(got[2], got[3], evens), b.shuffle_vector(got[2], got[3], odds)
            p = [b.shuffle_vector(e01, e23, evens), b.shuffle_vector(o01, o23, evens),
                 b.shuffle_vector(e01, e23, odds), b.shuffle_vector(o01, o23, odds)]
            p += [b.shuffle_vector(p[q], got[4], shifted[q]) for q in range(2)]  # 4(t + 1), 4(t + 1) + 1
            values.append([b.fpext(q, wide) for q in p] if bits == 32 else p)
        cols = [[None] * 6 for _ in range(6)]  # B^T down the columns: cols[i][j]
        for j in range(6):
            for i, value in enumerate(_bt4(b, [values[k][j] for k in range(6)], splat)):
                cols[i][j] = value
        keep = b.icmp_signed("<", b.add(spread(b, t0), lane), twv) if masked else None
        base = b.add(vbase, t0)
        for i in range(6):  # ... then along the rows: value 6i + j
            for j, value in enumerate(_bt4(b, cols[i], splat)):
                value = b.fptrunc(value, vec) if bits == 32 else value
                at = b.bitcast(b.gep(v, [b.add(base, b.mul(step, const(6 * i + j)))]), vptr)
                if masked:
                    b.call(mstore, [value, at, align, keep])
                else:
                    b.store(value, at, align=bits // 8)

    b = ir.IRBuilder(loop)
    t0 = b.phi(i64)
    t0.add_incoming(const(0), entry)
    block(b, t0, False)
    following = b.add(t0, const(lanes))
    t0.add_incoming(following, loop)
    b.cbranch(b.icmp_signed("<=", b.add(following, const(lanes)), tw), loop, tail)
    b = ir.IRBuilder(tail)
    t1 = b.phi(i64)
    t1.add_incoming(const(0), entry)
    t1.add_incoming(following, loop)
    b.cbranch(b.icmp_signed("<", t1, tw), last, done)
    b = ir.IRBuilder(last)
    overlap, masked = fn.append_basic_block("overlap"), fn.append_basic_block("masked")
    b.cbranch(b.icmp_signed("<=", const(lanes), tw), overlap, masked)
    b = ir.IRBuilder(overlap)
    block(b, b.sub(tw, const(lanes)), False)
    b.branch(done)
    b = ir.IRBuilder(masked)
    block(b, t1, True)
    b.branch(done)
    ir.IRBuilder(done).ret_void()
    return fn


@intrinsic
def _row_f4(typingctx, x, o0, o1, o2, o3, o4, o5, ok, col0, iw, tw, v, vbase, step):
    """``_row_f4_function`` on 1-D arrays ``x`` and ``v`` of one float dtype, offsets in elements."""
    def codegen(context, builder, signature, args):
        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        fn = _row_f4_function(builder.module, signature.args[0].dtype.bitwidth)
        builder.call(fn, [data(0), *args[1:11], data(11), args[12], args[13]])
        return context.get_dummy_value()

    ip = types.intp
    return types.void(x, ip, ip, ip, ip, ip, ip, ip, ip, ip, ip, v, ip, ip), codegen


@njit(**_JIT)
def _input_rows_f4(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, v, vc0, step):  # pragma: no cover
    """``_input_transform`` for m = 4 in row order: a tile row of a channel at a time
    (``_row_f4``), straight from x."""
    ih, iw = x.shape[2], x.shape[3]
    cx = x.shape[1]
    xf = x.reshape(x.size)
    nt = (r1 - r0) * tiles_w
    for c in range(cg):
        for jj in range(r1 - r0):
            rr = r0 + jj
            iy = (rr % tiles_h) * 4 - pt
            plane = (((rr // tiles_h) * cx + c0 + c) * ih) * iw
            ok = 0
            for k in range(6):
                if 0 <= iy + k < ih:
                    ok |= 1 << k
            _row_f4(xf, plane + iy * iw if ok & 1 else plane, plane + (iy + 1) * iw if ok & 2 else plane,
                    plane + (iy + 2) * iw if ok & 4 else plane, plane + (iy + 3) * iw if ok & 8 else plane,
                    plane + (iy + 4) * iw if ok & 16 else plane, plane + (iy + 5) * iw if ok & 32 else plane, ok,
                    -pl, iw, tiles_w, v, (vc0 + c) * nt + jj * tiles_w, step)


@intrinsic
def _row_f2(typingctx, x, o0, o1, o2, o3, ok, col0, iw, tw, v, vbase, step):
    """``_row_f2_function`` on 1-D arrays ``x`` and ``v`` of one float dtype, offsets in elements."""
    def codegen(context, builder, signature, args):
        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        fn = _row_f2_function(builder.module, signature.args[0].dtype.bitwidth)
        builder.call(fn, [data(0), *args[1:9], data(9), args[10], args[11]])
        return context.get_dummy_value()

    ip = types.intp
    return types.void(x, ip, ip, ip, ip, ip, ip, ip, ip, v, ip, ip), codegen


@njit(**_JIT)
def _input_rows_f2(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, v, vc0, step):  # pragma: no cover
    """``_input_transform`` for m = 2 in row order (no ``order``): a tile row of a channel at a
    time (``_row_f2``), straight from x. One thread, the whole batch's transform in blocks of 256
    tiles, N=32, ns per tile and channel, gathered / here (2026-12-05, a noisy hour): float32 56x56
    C=64 12.2 / 6.1, 28x28 C=128 13.7 / 7.6, 24x24 13.2 / 7.6, 20x20 10.8 / 6.4, 18x18 14.2 / 9.2,
    but 14x14 C=256 14.4 / 16.4 and 12x12 14.2 / 18.3 (rows of fewer tiles than a vector's lanes,
    their stores masked); float64 28x28 18.9 / 15.3, 20x20 16.0 / 9.0, 18x18 18.7 / 25.2 (two
    blocks of 8 for 9 tiles). Hence from ``WIDE_ROW_TILES``. The same bits."""
    ih, iw = x.shape[2], x.shape[3]
    cx = x.shape[1]
    xf = x.reshape(x.size)
    nt = (r1 - r0) * tiles_w
    for c in range(cg):
        for jj in range(r1 - r0):
            rr = r0 + jj
            iy = (rr % tiles_h) * 2 - pt  # the tile row's first input row
            plane = (((rr // tiles_h) * cx + c0 + c) * ih) * iw
            ok = 0
            for k in range(4):
                if 0 <= iy + k < ih:
                    ok |= 1 << k
            _row_f2(xf, plane + iy * iw if ok & 1 else plane, plane + (iy + 1) * iw if ok & 2 else plane,
                    plane + (iy + 2) * iw if ok & 4 else plane, plane + (iy + 3) * iw if ok & 8 else plane, ok,
                    -pl, iw, tiles_w, v, (vc0 + c) * nt + jj * tiles_w, step)


@njit(**_JIT)
def _input_transform(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, vc0, vc, order,
                     vstep=0):  # pragma: no cover
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
    -> 30, 56x56 24.5 -> 21.3 (the same bits). F(2x2) on rows of ``WIDE_ROW_TILES`` tiles or more
    in row order runs a row at a time in vectors instead (``_input_rows_f2``)."""
    step = vstep if vstep else vc * (r1 - r0) * tiles_w  # from one transform point's values to the next's
    if m == 2 and not order.size and tiles_w >= WIDE_ROW_TILES:
        _input_rows_f2(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, v, vc0, step)
        return
    if m == 4 and not order.size and tiles_w >= WIDE_ROW_TILES_F4:
        _input_rows_f4(x, c0, cg, r0, r1, tiles_h, tiles_w, pt, pl, v, vc0, step)
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
            dst[d0 + f] = z0 + z1 + z2
            dst[d1 + f] = z1 - z2 - z3
        return
    s4, s5 = o + U(4) * pitch, o + U(5) * pitch
    d2, d3 = od + U(2) * dpitch, od + U(3) * dpitch
    for f in range(n):
        z0, z1, z2 = np.float64(src[s0 + f]), np.float64(src[s1 + f]), np.float64(src[s2 + f])
        z3, z4, z5 = np.float64(src[s3 + f]), np.float64(src[s4 + f]), np.float64(src[s5 + f])
        dst[d0 + f] = (z0 + (z1 + z2)) + (z3 + z4)
        dst[d1 + f] = (z1 - z2) + 2.0 * (z3 - z4)
        dst[d2 + f] = (z1 + z2) + 4.0 * (z3 + z4)
        dst[d3 + f] = ((z1 - z2) + 8.0 * (z3 - z4)) + z5


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


def _out_f2_function(module, bits):
    """F(2x2)'s output transform of one tile row of one output channel, as an LLVM function of
    ``module``: arguments ``(mm, mo, step, y, yo0, yo1, two, full, bias)``: product xi of the row's
    tile t at ``mm[mo + xi*step + t]``; the row's tiles ``t < full`` (both their columns inside y)
    go to ``y[yo0 + 2t + q]`` and, where ``two``, the second output row ``y[yo1 + 2t + q]``, plus
    ``bias`` (a double). Returns whether a value written is inf or NaN (tested in y's dtype).

    A block of a vector's lanes of tiles at a time, widened to float64: A^T along the tiles' rows,
    then down their columns, the operations and their order ``_at_tiles``'s, plus the bias, rounded
    once (the same bits as ``_output_rows``); a row's two columns interleaved by shuffles and stored
    whole. The row's last tiles: a whole block again ending on ``full`` or, on rows of fewer tiles
    than a block, through masks."""
    name = f"fastconv_winograd_out_f2_f{bits}"
    if name in module.globals:
        return module.globals[name]
    scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
    lanes = VBITS // bits
    vec, wide = ir.VectorType(scalar, lanes), ir.VectorType(ir.DoubleType(), lanes)
    i64, i32, i1 = ir.IntType(64), ir.IntType(32), ir.IntType(1)
    i64v, mvec, i32v = ir.VectorType(i64, lanes), ir.VectorType(i1, lanes), ir.VectorType(i32, lanes)
    vptr = vec.as_pointer()
    fn = ir.Function(module, ir.FunctionType(i64, [scalar.as_pointer(), i64, i64, scalar.as_pointer(), i64, i64, i64,
                                                   i64, ir.DoubleType()]), name=name)
    fn.linkage = "internal"
    mm, mo, step, y, yo0, yo1, two, full, bias = fn.args
    align = ir.Constant(i32, bits // 8)
    mload = _declared(module, f"llvm.masked.load.v{lanes}f{bits}.p0", vec, [vptr, i32, mvec, vec])
    mstore = _declared(module, f"llvm.masked.store.v{lanes}f{bits}.p0", ir.VoidType(), [vec, vptr, i32, mvec])
    lane = ir.Constant(i64v, list(range(lanes)))
    half = lanes // 2
    low = ir.Constant(i32v, [q // 2 + (lanes if q % 2 else 0) for q in range(lanes)])  # t0, t0 + lanes, t1, ...
    high = ir.Constant(i32v, [half + q // 2 + (lanes if q % 2 else 0) for q in range(lanes)])

    def const(k):
        return ir.Constant(i64, k)

    def spread(b, value):
        first = b.insert_element(ir.Constant(i64v, ir.Undefined), value, ir.Constant(i32, 0))
        return b.shuffle_vector(first, ir.Constant(i64v, ir.Undefined), ir.Constant(i32v, [0] * lanes))

    def at(b, z0, z1, z2, z3):
        """F(2x2)'s A^T applied to four values (``_at_block``'s m = 2, in its order)."""
        return b.fadd(b.fadd(z0, z1), z2), b.fsub(b.fsub(z1, z2), z3)

    entry, loop, tail, last, done = (fn.append_basic_block(n) for n in ("entry", "loop", "tail", "last", "done"))
    b = ir.IRBuilder(entry)
    bv = b.shuffle_vector(b.insert_element(ir.Constant(wide, ir.Undefined), bias, ir.Constant(i32, 0)),
                          ir.Constant(wide, ir.Undefined), ir.Constant(i32v, [0] * lanes))
    second = b.icmp_signed("!=", two, const(0))
    fullv = spread(b, full)
    no = ir.Constant(mvec, [0] * lanes)
    b.cbranch(b.icmp_signed("<=", const(lanes), full), loop, tail)

    def block(b, t0, masked, bad):
        """The tiles t0 .. t0 + lanes (with ``masked``, those before ``full``): ``bad`` or'ed with
        whether one of theirs is inf or NaN."""
        keep = b.icmp_signed("<", b.add(spread(b, t0), lane), fullv) if masked else None
        ms = []
        for xi in range(16):
            p = b.bitcast(b.gep(mm, [b.add(b.add(mo, t0), b.mul(step, const(xi)))]), vptr)
            value = (b.call(mload, [p, align, keep, ir.Constant(vec, [0.0] * lanes)]) if masked
                     else b.load(p, align=bits // 8))
            ms.append(b.fpext(value, wide) if bits == 32 else value)
        rows = [at(b, *ms[4 * i:4 * i + 4]) for i in range(4)]  # along the tiles' rows: rows[i][q]
        out = [at(b, *(rows[i][q] for i in range(4))) for q in range(2)]  # down the columns: out[q][r]
        for r, yo in enumerate((yo0, yo1)):
            cols = [b.fadd(out[q][r], bv) for q in range(2)]
            if bits == 32:
                cols = [b.fptrunc(c, vec) for c in cols]
            for c in cols:  # inf or NaN, in y's dtype (float32 overflows)
                odd = b.fcmp_unordered("!=", b.fsub(c, c), ir.Constant(vec, [0.0] * lanes))
                if masked:
                    odd = b.and_(odd, keep)
                if r:
                    odd = b.and_(odd, b.select(second, ir.Constant(mvec, [1] * lanes), no))
                bad = b.or_(bad, odd)
            pair = (b.shuffle_vector(cols[0], cols[1], low), b.shuffle_vector(cols[0], cols[1], high))
            first = b.add(yo, b.mul(t0, const(2)))
            dst = [b.bitcast(b.gep(y, [b.add(first, const(h * lanes))]), vptr) for h in range(2)]
            if masked:  # value q of the pair's half h is y's column 2*t0 + h*lanes + q
                cols2 = b.add(spread(b, b.mul(t0, const(2))), lane)
                ends = spread(b, b.mul(full, const(2)))
                masks = [b.icmp_signed("<", b.add(cols2, spread(b, const(h * lanes))), ends) for h in range(2)]
            if r:
                store_blk = b.append_basic_block("second")
                after = b.append_basic_block("after")
                b.cbranch(second, store_blk, after)
                b.position_at_end(store_blk)
            for h in range(2):
                if masked:
                    b.call(mstore, [pair[h], dst[h], align, masks[h]])
                else:
                    b.store(pair[h], dst[h], align=bits // 8)
            if r:
                b.branch(after)
                b.position_at_end(after)
        return bad

    b = ir.IRBuilder(loop)  # whole blocks
    t0 = b.phi(i64)
    t0.add_incoming(const(0), entry)
    bad0 = b.phi(mvec)
    bad0.add_incoming(no, entry)
    bad1 = block(b, t0, False, bad0)
    following = b.add(t0, const(lanes))
    t0.add_incoming(following, b.block)
    bad0.add_incoming(bad1, b.block)
    from_loop = b.block
    b.cbranch(b.icmp_signed("<=", b.add(following, const(lanes)), full), loop, tail)
    b = ir.IRBuilder(tail)  # the row's last tiles, fewer than a block
    t1 = b.phi(i64)
    t1.add_incoming(const(0), entry)
    t1.add_incoming(following, from_loop)
    bad2 = b.phi(mvec)
    bad2.add_incoming(no, entry)
    bad2.add_incoming(bad1, from_loop)
    b.cbranch(b.icmp_signed("<", t1, full), last, done)
    b = ir.IRBuilder(last)
    overlap, masked = fn.append_basic_block("overlap"), fn.append_basic_block("masked")
    b.cbranch(b.icmp_signed("<=", const(lanes), full), overlap, masked)
    b = ir.IRBuilder(overlap)  # a whole block that ends on ``full``, some tiles again: no mask
    bad3 = block(b, b.sub(full, const(lanes)), False, bad2)
    from_overlap = b.block
    b.branch(done)
    b = ir.IRBuilder(masked)  # a row of fewer tiles than a block
    bad4 = block(b, t1, True, bad2)
    from_masked = b.block
    b.branch(done)
    b = ir.IRBuilder(done)
    bad = b.phi(mvec)
    bad.add_incoming(bad2, tail)
    bad.add_incoming(bad3, from_overlap)
    bad.add_incoming(bad4, from_masked)
    any_bad = b.icmp_unsigned("!=", b.bitcast(bad, ir.IntType(lanes)), ir.Constant(ir.IntType(lanes), 0))
    b.ret(b.zext(any_bad, i64))
    return fn


def _at4(b, z, const):
    """F(4x4)'s A^T applied to six vectors (``_at_block``'s m = 4, its operations in its order)."""
    z0, z1, z2, z3, z4, z5 = z
    return (b.fadd(b.fadd(z0, b.fadd(z1, z2)), b.fadd(z3, z4)),
            b.fadd(b.fsub(z1, z2), b.fmul(const(2.0), b.fsub(z3, z4))),
            b.fadd(b.fadd(z1, z2), b.fmul(const(4.0), b.fadd(z3, z4))),
            b.fadd(b.fadd(b.fsub(z1, z2), b.fmul(const(8.0), b.fsub(z3, z4))), z5))


def _out_f4_function(module, bits):
    """F(4x4)'s output transform of one tile row of one output channel, ``_out_f2_function``'s way:
    arguments ``(mm, mo, step, y, yo, ow, rows, full, bias)``, the output rows ``yo + r*ow`` for
    ``r < rows``; the row's four columns interleaved by two stages of shuffles. Returns whether a
    value written is inf or NaN."""
    name = f"fastconv_winograd_out_f4_f{bits}"
    if name in module.globals:
        return module.globals[name]
    scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
    lanes = VBITS // bits
    vec, wide = ir.VectorType(scalar, lanes), ir.VectorType(ir.DoubleType(), lanes)
    i64, i32, i1 = ir.IntType(64), ir.IntType(32), ir.IntType(1)
    i64v, mvec, i32v = ir.VectorType(i64, lanes), ir.VectorType(i1, lanes), ir.VectorType(i32, lanes)
    vptr = vec.as_pointer()
    fn = ir.Function(module, ir.FunctionType(i64, [scalar.as_pointer(), i64, i64, scalar.as_pointer(), i64, i64, i64,
                                                   i64, ir.DoubleType()]), name=name)
    fn.linkage = "internal"
    mm, mo, step, y, yo, ow, nrows, full, bias = fn.args
    align = ir.Constant(i32, bits // 8)
    mload = _declared(module, f"llvm.masked.load.v{lanes}f{bits}.p0", vec, [vptr, i32, mvec, vec])
    mstore = _declared(module, f"llvm.masked.store.v{lanes}f{bits}.p0", ir.VoidType(), [vec, vptr, i32, mvec])
    lane = ir.Constant(i64v, list(range(lanes)))
    half = lanes // 2
    pairs = [ir.Constant(i32v, [h * half + q // 2 + (lanes if q % 2 else 0) for q in range(lanes)]) for h in range(2)]
    quads = [ir.Constant(i32v, [h * half + 2 * (q // 4) + q % 2 + (lanes if q % 4 >= 2 else 0) for q in range(lanes)])
             for h in range(2)]
    arith = wide if bits == 32 else vec

    def const(k):
        return ir.Constant(i64, k)

    def splat(c):
        return ir.Constant(arith, [c] * lanes)

    def spread(b, value):
        first = b.insert_element(ir.Constant(i64v, ir.Undefined), value, ir.Constant(i32, 0))
        return b.shuffle_vector(first, ir.Constant(i64v, ir.Undefined), ir.Constant(i32v, [0] * lanes))

    entry, loop, tail, last, done = (fn.append_basic_block(n) for n in ("entry", "loop", "tail", "last", "done"))
    b = ir.IRBuilder(entry)
    bv = b.shuffle_vector(b.insert_element(ir.Constant(wide, ir.Undefined), bias, ir.Constant(i32, 0)),
                          ir.Constant(wide, ir.Undefined), ir.Constant(i32v, [0] * lanes))
    present = [b.icmp_signed(">", nrows, const(r)) for r in range(4)]
    ends = spread(b, b.mul(full, const(4)))
    fullv = spread(b, full)
    no = ir.Constant(mvec, [0] * lanes)
    b.cbranch(b.icmp_signed("<=", const(lanes), full), loop, tail)

    def block(b, t0, masked, bad):
        keep = b.icmp_signed("<", b.add(spread(b, t0), lane), fullv) if masked else None
        ms = []
        for xi in range(36):
            p = b.bitcast(b.gep(mm, [b.add(b.add(mo, t0), b.mul(step, const(xi)))]), vptr)
            value = (b.call(mload, [p, align, keep, ir.Constant(vec, [0.0] * lanes)]) if masked
                     else b.load(p, align=bits // 8))
            ms.append(b.fpext(value, wide) if bits == 32 else value)
        rows = [_at4(b, ms[6 * i:6 * i + 6], splat) for i in range(6)]  # along the tiles' rows: rows[i][q]
        out = [_at4(b, [rows[i][q] for i in range(6)], splat) for q in range(4)]  # down the columns: out[q][r]
        first = b.mul(t0, const(4))
        for r in range(4):
            cols = [b.fadd(out[q][r], bv) for q in range(4)]
            if bits == 32:
                cols = [b.fptrunc(c, vec) for c in cols]
            for c in cols:  # inf or NaN, in y's dtype
                odd = b.fcmp_unordered("!=", b.fsub(c, c), ir.Constant(vec, [0.0] * lanes))
                if masked:
                    odd = b.and_(odd, keep)
                bad = b.or_(bad, b.and_(odd, b.select(present[r], ir.Constant(mvec, [1] * lanes), no)))
            p01 = [b.shuffle_vector(cols[0], cols[1], pairs[h]) for h in range(2)]  # c0 c1 c0 c1 ...
            p23 = [b.shuffle_vector(cols[2], cols[3], pairs[h]) for h in range(2)]
            four = [b.shuffle_vector(p01[k // 2], p23[k // 2], quads[k % 2]) for k in range(4)]  # c0 c1 c2 c3 ...
            store, after = b.append_basic_block(f"row{r}"), b.append_basic_block(f"after{r}")
            b.cbranch(present[r], store, after)
            b.position_at_end(store)
            row = b.add(yo, b.mul(ow, const(r)))
            for k in range(4):
                at = b.bitcast(b.gep(y, [b.add(b.add(row, first), const(k * lanes))]), vptr)
                if masked:
                    cols4 = b.add(spread(b, b.add(first, const(k * lanes))), lane)
                    b.call(mstore, [four[k], at, align, b.icmp_signed("<", cols4, ends)])
                else:
                    b.store(four[k], at, align=bits // 8)
            b.branch(after)
            b.position_at_end(after)
        return bad

    b = ir.IRBuilder(loop)
    t0 = b.phi(i64)
    t0.add_incoming(const(0), entry)
    bad0 = b.phi(mvec)
    bad0.add_incoming(no, entry)
    bad1 = block(b, t0, False, bad0)
    following = b.add(t0, const(lanes))
    t0.add_incoming(following, b.block)
    bad0.add_incoming(bad1, b.block)
    from_loop = b.block
    b.cbranch(b.icmp_signed("<=", b.add(following, const(lanes)), full), loop, tail)
    b = ir.IRBuilder(tail)
    t1 = b.phi(i64)
    t1.add_incoming(const(0), entry)
    t1.add_incoming(following, from_loop)
    bad2 = b.phi(mvec)
    bad2.add_incoming(no, entry)
    bad2.add_incoming(bad1, from_loop)
    b.cbranch(b.icmp_signed("<", t1, full), last, done)
    b = ir.IRBuilder(last)
    overlap, masked = fn.append_basic_block("overlap"), fn.append_basic_block("masked")
    b.cbranch(b.icmp_signed("<=", const(lanes), full), overlap, masked)
    b = ir.IRBuilder(overlap)
    bad3 = block(b, b.sub(full, const(lanes)), False, bad2)
    from_overlap = b.block
    b.branch(done)
    b = ir.IRBuilder(masked)
    bad4 = block(b, t1, True, bad2)
    from_masked = b.block
    b.branch(done)
    b = ir.IRBuilder(done)
    bad = b.phi(mvec)
    bad.add_incoming(bad2, tail)
    bad.add_incoming(bad3, from_overlap)
    bad.add_incoming(bad4, from_masked)
    any_bad = b.icmp_unsigned("!=", b.bitcast(bad, ir.IntType(lanes)), ir.Constant(ir.IntType(lanes), 0))
    b.ret(b.zext(any_bad, i64))
    return fn


@intrinsic
def _out_f4(typingctx, mm, mo, step, y, yo, ow, rows, full, bias):
    """``_out_f4_function`` on 1-D arrays ``mm`` and ``y`` of one float dtype, offsets in elements."""
    def codegen(context, builder, signature, args):
        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        fn = _out_f4_function(builder.module, signature.args[0].dtype.bitwidth)
        return builder.call(fn, [data(0), args[1], args[2], data(3), *args[4:8], args[8]])

    ip = types.intp
    return types.intp(mm, ip, ip, y, ip, ip, ip, ip, types.float64), codegen


@njit(inline="always", **_JIT)
def _at4_scalar(z0, z1, z2, z3, z4, z5):  # pragma: no cover
    """``_at_block``'s m = 4 on one tile's six values, in its order."""
    return ((z0 + (z1 + z2)) + (z3 + z4), (z1 - z2) + 2.0 * (z3 - z4), (z1 + z2) + 4.0 * (z3 + z4),
            ((z1 - z2) + 8.0 * (z3 - z4)) + z5)


@njit(inline="always", **_JIT)
def _at4_row(mm, o, step, q):  # pragma: no cover
    """Value q of F(4x4)'s A^T along a tile's row of products mm[o + j*step], j < 6."""
    v = _at4_scalar(np.float64(mm[o]), np.float64(mm[o + step]), np.float64(mm[o + U(2) * step]),
                    np.float64(mm[o + U(3) * step]), np.float64(mm[o + U(4) * step]), np.float64(mm[o + U(5) * step]))
    return v[q]


@njit(**_JIT)
def _output_rows_f4(mm, k0, kg, r0, r1, tiles_h, tiles_w, bias, y, step):  # pragma: no cover
    """``_output_transform`` for m = 4 in row order: a tile row of an output channel at a time
    (``_out_f4``), the last tile of a row cut by y's edge through the same sums one by one."""
    oh, ow, cy = y.shape[2], y.shape[3], y.shape[1]
    yf = y.reshape(y.size)
    nt = (r1 - r0) * tiles_w
    full = min(tiles_w, ow // 4)
    bad = False
    for k in range(kg):
        b = np.float64(bias[k0 + k]) if bias.size else 0.0
        for jj in range(r1 - r0):
            rr = r0 + jj
            oy = (rr % tiles_h) * 4
            yo = (((rr // tiles_h) * cy + k0 + k) * oh + oy) * ow
            rows = min(4, oh - oy)
            mo = k * nt + jj * tiles_w
            bad |= _out_f4(mm, mo, step, yf, yo, ow, rows, full, b) != 0
            for q in range(ow - 4 * full):  # tile ``full``'s columns inside y
                t, us = U(mo + full), U(step)
                c0, c1 = _at4_row(mm, t, us, q), _at4_row(mm, t + U(6) * us, us, q)
                c2, c3 = _at4_row(mm, t + U(12) * us, us, q), _at4_row(mm, t + U(18) * us, us, q)
                c4, c5 = _at4_row(mm, t + U(24) * us, us, q), _at4_row(mm, t + U(30) * us, us, q)
                col = _at4_scalar(c0, c1, c2, c3, c4, c5)
                for r in range(rows):
                    at = yo + r * ow + 4 * full + q
                    yf[at] = col[r] + b
                    bad |= yf[at] - yf[at] != 0.0
    return bad


@intrinsic
def _out_f2(typingctx, mm, mo, step, y, yo0, yo1, two, full, bias):
    """``_out_f2_function`` on 1-D arrays ``mm`` and ``y`` of one float dtype, offsets in elements."""
    def codegen(context, builder, signature, args):
        def data(i):
            return context.make_array(signature.args[i])(context, builder, args[i]).data

        fn = _out_f2_function(builder.module, signature.args[0].dtype.bitwidth)
        return builder.call(fn, [data(0), args[1], args[2], data(3), *args[4:8], args[8]])

    ip = types.intp
    return types.intp(mm, ip, ip, y, ip, ip, ip, ip, types.float64), codegen


# Tiles per row from which F(2x2)'s output transform runs a row at a time in vectors
# (``_output_rows_f2``). One thread, N=32, the whole batch's transform in blocks of 256 tiles
# into a y in memory, ns per tile and channel, the other ways / in vectors (2026-12-05): float32
# rows of 4 tiles (8x8 C=512) 6.8 / 10.7, 5 7.0 / 7.7, 6 6.1 / 7.2, 7 (14x14 C=256) 7.6 / 6.3,
# 8 7.6 / 5.6, 9 8.5 / 4.4, 10 6.7 / 4.1, 14 (28x28 C=128) 7.1 / 3.2, 28 (56x56 C=64) 5.0 / 2.6;
# float64 4 10.8 / 8.5, 7 10.3 / 7.0, 14 11.9 / 8.9, 28 11.1 / 7.6.
OUT_ROW_TILES = 7
OUT_ROW_TILES_F4 = 7  # ... and F(4x4)'s (see ``_output_rows_f4``)


@njit(inline="always", **_JIT)
def _at_first(mm, o, step):  # pragma: no cover
    """The first value of F(2x2)'s A^T along a tile's row of products mm[o + j*step], j < 4."""
    return (np.float64(mm[o]) + np.float64(mm[o + step])) + np.float64(mm[o + U(2) * step])


@njit(**_JIT)
def _output_rows_f2(mm, k0, kg, r0, r1, tiles_h, tiles_w, bias, y, step):  # pragma: no cover
    """``_output_transform`` for m = 2 in row order: a tile row of an output channel at a time
    (``_out_f2``), the last tile of a row cut by y's edge through the same sums one by one."""
    oh, ow, cy = y.shape[2], y.shape[3], y.shape[1]
    yf = y.reshape(y.size)
    nt = (r1 - r0) * tiles_w
    full = min(tiles_w, ow // 2)
    bad = False
    for k in range(kg):
        b = np.float64(bias[k0 + k]) if bias.size else 0.0
        for jj in range(r1 - r0):
            rr = r0 + jj
            oy = (rr % tiles_h) * 2
            yo = (((rr // tiles_h) * cy + k0 + k) * oh + oy) * ow
            two = oy + 1 < oh
            mo = k * nt + jj * tiles_w
            bad |= _out_f2(mm, mo, step, yf, yo, yo + ow, 1 if two else 0, full, b) != 0
            if 2 * full < ow:  # tile ``full``'s first column: its second lies past y's edge
                t, us = U(mo + full), U(step)
                c0, c1 = _at_first(mm, t, us), _at_first(mm, t + U(4) * us, us)
                c2, c3 = _at_first(mm, t + U(8) * us, us), _at_first(mm, t + U(12) * us, us)
                q = yo + 2 * full
                yf[q] = ((c0 + c1) + c2) + b
                bad |= yf[q] - yf[q] != 0.0
                if two:
                    yf[q + ow] = ((c1 - c2) - c3) + b
                    bad |= yf[q + ow] - yf[q + ow] != 0.0
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
    the staged one at 4.4 and 22-28.) F(2x2) on rows of ``OUT_ROW_TILES`` tiles or more in row
    order runs a row at a time in vectors instead (``_output_rows_f2``)."""
    step = mstep if mstep else kg * (r1 - r0) * tiles_w  # from one transform point's products to the next's
    if m == 2 and not order.size and tiles_w >= OUT_ROW_TILES:
        return _output_rows_f2(mm, k0, kg, r0, r1, tiles_h, tiles_w, bias, y, step)
    if m == 4 and not order.size and tiles_w >= OUT_ROW_TILES_F4:
        return _output_rows_f4(mm, k0, kg, r0, r1, tiles_h, tiles_w, bias, y, step)
    if tiles_w < STAGE_TILES:
        return _output_staged(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, step)
    return _output_rows(mm, k0, kg, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, step)


@njit(**_JIT)
def item(src, cs, cd, r0, r1, tiles_h, tiles_w, pt, pl, m, v, mm, s, wk, order, up, tiles, spans, bias,
         y, first_done, vstep, mstep):  # pragma: no cover
    """One work item of ``winograd._convolve`` on the register tiles, every group: the input
    transform of tile rows r0 .. r1 into ``v`` (the first group's already there with
    ``first_done``), the products (``_numba_gemm.batch``, the packed transformed kernel ``up[g]``)
    into ``mm`` and the output transform into y, in one compiled call: the GIL is released once an
    item, not three times (each time back, a thread could wait for the other's Python, 30-40 us on
    these machines). ``vstep`` and ``mstep``: from one transform point's values to the next's in
    ``v`` and ``mm``. Returns whether a value written is inf or NaN."""
    bad = False
    nt = (r1 - r0) * tiles_w
    for g in range(up.shape[0]):
        if g > 0 or not first_done:
            _input_transform(src, g * cs, cs, r0, r1, tiles_h, tiles_w, pt, pl, m, v, s, wk, 0, cs, order, vstep)
        batch(up[g], cd, v, mm, cs, nt, tiles, spans, vstep, mstep)
        bad |= _output_transform(mm, g * cd, cd, r0, r1, tiles_h, tiles_w, m, bias, y, wk, order, mstep)
    return bad


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
def _filter_grad_transform(parts, m, r0, r1, gw):  # pragma: no cover
    """gw[g*K + k, c, ky, kx] = (G^T dU G)[ky, kx], dU[xi] the sum over p, in order, of
    ``parts[p, g, xi, k, c]`` (the slices' products), for the (group, output channel) rows
    ``r0 <= g*K + k < r1``; the adjoint of ``_filter_transform``. Returns whether a value written
    is inf or NaN (the caller then recomputes directly)."""
    npart, groups, a2, kg, cg = parts.shape
    a = m + 2
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
            s = U(((g * a2 + xi) * kg + k) * cg)
            for c in range(uc):
                du[d + c] = pf[s + c]
            for p in range(1, npart):
                s = U((((p * groups + g) * a2 + xi) * kg + k) * cg)
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
