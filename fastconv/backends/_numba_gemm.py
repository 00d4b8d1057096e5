"""Numba kernels of the ``numba`` backend for 1x1 kernels, unpadded, in one group: such a
convolution is a matrix product per image (of the pixels it reads: at a stride, the caller
copies them), and so are both its gradients.

    forward      y[n] (Cout x P)  = W (Cout x Cin)   @ x[n] (Cin x P)
    input grad   gx[n] (Cin x P)  = W.T (Cin x Cout) @ gy[n] (Cout x P)
    weight grad  gw (Cout x Cin)  = sum over n of gy[n] (Cout x P) @ x[n].T (P x Cin)

NumPy's BLAS does these at its own speed, which an environment can hold to AVX2
(``OPENBLAS_CORETYPE=Haswell`` here); the packed kernels of ``_numba_kernels`` keep their sums in
memory (an accumulator in L1), 4 loads and stores per 16 multiply-adds. Here the sums stay in
registers: a tile of ``MR`` rows x two vectors of columns (2 x ``MR`` vector sums; 2 vector loads and
``MR`` broadcasts per ``2*MR`` multiply-adds), over ``KC`` steps of the reduction at a time. Numba's
loop vectoriser never keeps such a tile in registers across a loop (it vectorises the innermost
loop only), so the tile is written in LLVM IR (``_tile_function``, called through Numba
intrinsics). Around it, the GotoBLAS layout: A copied into panels in the order the tile reads it
(``_pack_a``), B read where it lies (the weight gradient's x transposed into panels), the columns
of every image laid end to end (so that 14x14 images fill whole tiles), a tile that ends past the
matrix computed into a scratch tile and copied. winograd's products use the same tiles
(``batch``).

Measured (2 threads, float32, N=32, 256 -> 1024 channels, 14x14; AVX-512): forward 8.6-9.0 ms,
input gradient 9.8-10.0 ms, weight gradient 9.0-9.5 ms, against 14-16 ms each for the packed
kernels and NumPy's products here. The convolutions' kernels run on them where the CPU has
AVX-512 (``WIDE``). With AVX2 (``TILES``) a tile is ``MR`` = 6 rows x two 256-bit vectors: 12
sums, two vectors of B and a broadcast in its 16 registers; winograd's forward products and
numba's implicit forward and weight gradient (``_numba_implicit``) run on those.
"""

import llvmlite.binding as _llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._numba_kernels import _JIT, _aligned, njit

# The feature map, not its flattened string: that lists every feature LLVM knows, "-avx512f" on a
# CPU without it (an AVX2 Zen 3 took the 16-sum tiles, spilled from its 16 registers: winograd's
# 7x7 C=512 forward 72 ms).
_FEATURES = _llvm.get_host_cpu_features()
WIDE = bool(_FEATURES.get("avx512f", False))
# AVX2 and FMA, without AVX-512: tiles of 6 rows (one thread, 36 products of 48 x 48 by 48 x 264,
# float32: 6 rows 78 GFLOP/s, 8 rows of one vector 65, NumPy's 66; 96 x 96: 68, 60, 67)
TILES = WIDE or bool(_FEATURES.get("avx2", False) and _FEATURES.get("fma", False))
VBITS = 512 if WIDE else 256  # of a vector
MR = 8 if WIDE else 6  # rows of a tile (output channels in the forward pass)
NV = 2  # vectors of columns per tile row: MR * NV sums in registers (16 of AVX-512's 32, 12 of AVX2's 16)
# A tile row's columns on AVX-512, in bytes, whatever this CPU's: choices made by it (whether a
# call's columns fill the tiles) come out the same on every CPU with tiles
WIDE_ROW_BYTES = NV * 512 // 8
PIECES = 4  # slots per thread (numba_jit._run_parts): a thread slowed by another process takes fewer
RED_PIECES = 2  # ... in the weight gradient, where each slot past the first adds a partial gw to sum
KC = 256  # reduction steps per tile call: its B panel (KC x 2 vectors, float32 32 KiB; 48 with BATCH_NV) stays in L1
# ``_cols_run``: a packed A larger than L2 (COLS_L2_BYTES) whose blocks of KC steps L2 holds (at
# most COLS_BLOCK_BYTES) runs block by block over all of a slot's panels of B; any other A whole,
# per panel. The AVX-512 machines measured (Skylake-X, Zen 4 and 5) have 1 MiB of L2 a core.
COLS_L2_BYTES = 2**20
COLS_BLOCK_BYTES = 512 * 2**10

# Cores that run a 512-bit multiply-add as two 256-bit halves (AMD Zen 4): there a tile of three
# 256-bit vectors of columns costs three quarters of a two-vector tile, so a row's last three
# quarters of a panel take one (``_tile_planes_narrow``). Where 512-bit multiply-adds run whole
# (Intel's server cores, Zen 5) it would cost about 1.5x a two-vector tile, by their units' width
# (not measured here): not used there.
NARROW = WIDE and _llvm.get_host_cpu_name() == "znver4"
# ... and the others with AVX-512, whose 512-bit operations run whole, as BLAS's do (measured on an
# Intel Xeon): the rows and limits drawn there (``numba_jit.full_width_tiles``) hold for these.
FULL_WIDTH = WIDE and not NARROW
# Vectors of columns per tile row in ``batch`` (winograd's products, numba's patches), in 1x1
# layers' columns (``_cols_run``) and in the weight gradients' products (``_red_unit``): three on
# those cores, 24 sums of AVX-512's 32, so that each of A's elements, streamed from L2, feeds three
# multiply-adds, not two. (Four vectors left run as two tiles of two: ``_batch_run``.) One
# thread, 16 products m x k by k x p, float32, old / new time, same bits, medians of 15 interleaved
# calls in one process (Intel Xeon, family 6 model 167, 2026-12-05): winograd's at 7x7 C=512 (512 x
# 512 x 256, its cropped spans) 0.90, 256 x 256 x 336 0.93, 128 x 128 x 336 0.94, 64 x 64 x 336 0.97;
# a patch item's (one A, 256 columns) 128 x 576 0.94, 512 x 2304 0.93. In the tile alone (A and B
# distinct per product) two / three vectors / six rows by four (another packing of A) / twelve rows
# by two: 512 x 512 x 192 127 / 137 / 132 / 132 GFLOP/s, 256 x 256 x 192 159 / 165 / 167 / 166.
# Two threads, numba's 1x1 forward (N=32, 7x7 to 56x56) 0.88-0.97x the time. Not measured on Zen 5,
# which takes it too.
BATCH_NV = 3 if FULL_WIDTH else NV


def applies(kh, kw, padded, groups, c_in, c_out) -> bool:
    """Whether a 2-D call takes these kernels: a 1x1 kernel, no padding, one group, at least one
    tile's rows of channels each side, on a CPU with AVX-512. (At a stride, the caller passes the
    pixels the kernel reads, copied: a product of those.)"""
    return WIDE and kh == kw == 1 and not padded and groups == 1 and min(c_in, c_out) >= MR


def _tile_function(module, bits, rows, taps=False, nv=NV, masked=False, planes=False, vbits=VBITS, gather=0):
    """The tile as an LLVM function of ``module`` (one per module, dtype and A layout), never
    inlined: inlined into its caller's loops, the caller's live values could take its registers.
    Arguments ``(a, b, c, bias, lda, ldb, ldc, kc, add, addb)``: pointers to the first elements, then

        c[r*ldc + j] = (c[r*ldc + j] if add else 0) + (bias[r] if addb else 0)
                       + sum over k < kc of A(r, k) * b[k*ldb + j]

    for r < MR, j < ``nv`` vectors (``NV``; one for a half-width tile), where A(r, k) is
    ``a[r*lda + k]`` (``rows``: A's rows where they lie) or ``a[k*MR + r]`` (packed; ``lda``
    unused). With ``taps``, two more arguments
    ``(kw, ldr)``: B's steps run in rows of ``kw``, ``ldb`` apart within a row and ``ldr`` from one
    row's first to the next's, so step k reads ``b[(k // kw)*ldr + (k % kw)*ldb + j]`` (a kernel's
    taps over an image's plane: the implicit forward's). With ``planes`` too, two more ``(kh, ldp)``:
    the rows come in planes of ``kh``, ``ldp`` from one plane's first to the next's, so step k reads
    ``b[(k // (kh*kw))*ldp + (k // kw % kh)*ldr + (k % kw)*ldb + j]`` (every input channel's taps, a
    plane each, in one call). With ``taps``, ``kc`` is whole rows of ``kw`` steps (and with
    ``planes`` whole planes). With ``masked``, one more argument ``cols``:
    only the first ``cols`` columns are read from B and written to C (AVX-512's masked loads and
    stores), so a panel's ragged end runs where it lies, as a whole one does. ``vbits``: the
    vectors' width (``NARROW``'s tiles: 256). With ``gather`` (no ``taps``), ``gather`` rows
    instead of MR and two more arguments, int64 pointers ``ro`` and ``ko``: A(r, k) is
    ``a[ro[r] + ko[k]]``, each row's and each step's offset its own (row r an output pixel, step
    k a tap of an input channel: ``_numba_pixels``), and B is read by rows, ``b[k*ldb + j]`` (the
    weight packed with its output channels across; ``lda`` unused). One loop, the step's offset
    loaded in it: the taps' two nested loops cost their outer loop's bookkeeping every ``kw``
    steps, with the rows' offsets taking the registers it needed (3-5 steps a row)."""
    name = (f"fastconv_gemm_tile_{'rows' if rows else 'packed'}{'_taps' if taps else ''}{'_planes' if planes else ''}"
            f"{f'_gather{gather}' if gather else ''}_f{bits}_v{nv}{'' if vbits == 512 else f'x{vbits}'}"
            f"{'_masked' if masked else ''}")
    if name in module.globals:
        return module.globals[name]
    scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
    lanes = vbits // bits
    vec = ir.VectorType(scalar, lanes)
    i64 = ir.IntType(64)
    i32 = ir.IntType(32)
    ptr = scalar.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr, ptr]
                                             + [i64] * (6 + 2 * taps + 2 * planes + masked)
                                             + [i64.as_pointer()] * (2 * bool(gather))), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    a, b, c, bias, lda, ldb, ldc, kc, add, addb = fn.args[:10]
    fma_name = f"llvm.fmuladd.v{lanes}f{bits}"
    fma = module.globals.get(fma_name) or ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]), name=fma_name)
    zero = ir.Constant(vec, [0.0] * lanes)
    undef = ir.Constant(vec, ir.Undefined)
    splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    align = bits // 8

    def const(v):
        return ir.Constant(i64, v)

    entry = fn.append_basic_block("entry")
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    builder = ir.IRBuilder(entry)
    masks = None
    if masked:  # lane q of vector v is read and written where v*lanes + q < cols
        bit = ir.IntType(1)
        mvec = ir.VectorType(bit, lanes)
        vptr = vec.as_pointer()
        mload = _declared(module, f"llvm.masked.load.v{lanes}f{bits}.p0", vec, [vptr, i32, mvec, vec])
        mstore = _declared(module, f"llvm.masked.store.v{lanes}f{bits}.p0", ir.VoidType(), [vec, vptr, i32, mvec])
        cols = fn.args[10 + 2 * taps + 2 * planes]
        lane = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))
        masks = []
        for v in range(nv):
            left = builder.sub(cols, const(v * lanes))
            spread = builder.shuffle_vector(builder.insert_element(ir.Constant(ir.VectorType(i64, lanes), ir.Undefined),
                                                                   left, ir.Constant(i32, 0)),
                                            ir.Constant(ir.VectorType(i64, lanes), ir.Undefined), splat)
            masks.append(builder.icmp_signed("<", lane, spread))
        at_align = ir.Constant(i32, align)

    def load(p, v):
        q = builder.bitcast(p, vec.as_pointer())
        if masks is None:
            return builder.load(q, align=align)
        return builder.call(mload, [q, at_align, masks[v], zero])

    def store(value, p, v):
        q = builder.bitcast(p, vec.as_pointer())
        if masks is None:
            builder.store(value, q, align=align)
        else:
            builder.call(mstore, [value, q, at_align, masks[v]])
    mr = gather or MR  # rows
    if gather:  # the rows' own offsets, held in registers over the loop
        row_at = [builder.load(builder.gep(fn.args[-2], [const(r)])) for r in range(mr)]
    else:
        row_at = [builder.mul(const(r), lda) if rows else const(r) for r in range(mr)]

    def step(k, brow, sums, acol=None):
        """One reduction step's multiply-adds into ``sums``, B's row at ``brow``, A's column at
        ``acol`` (by default that of step ``k``): the new sums."""
        bv = [load(builder.gep(brow, [const(v * lanes)]), v) for v in range(nv)]
        if acol is None:
            acol = builder.gep(a, [k if rows else builder.mul(k, const(MR))])
        new = []
        for r in range(mr):
            s = builder.load(builder.gep(acol, [row_at[r]]))
            av = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
            new.extend(builder.call(fma, [av, bv[v], sums[r * nv + v]]) for v in range(nv))
        return new

    def phis(incoming, block, count=mr * nv, ty=vec):
        """New phis at the builder's block, each given ``incoming`` (one value for all ``count``, or
        a list) from ``block``; the loop's own values are added once they are built."""
        out = []
        for value in (incoming if isinstance(incoming, list) else [incoming] * count):
            p = builder.phi(ty)
            p.add_incoming(value, block)
            out.append(p)
        return out

    builder.cbranch(builder.icmp_signed(">", kc, const(0)), loop, done)
    builder.position_at_end(loop)
    if taps:
        # Two loops, a kernel row's kw steps inside, so that the inner one keeps only a counter and
        # the row's offset: one loop wrapping its counters by compare-and-select spent more
        # instructions on them than on the multiply-adds with AVX2's 12 (MNIST's forward, AVX2,
        # one thread: 2.0 ms, against 1.7 for the packed kernels; as two loops 1.18). kc is whole
        # rows (planes).
        kw, ldr = fn.args[10:12]
        k0, row = phis(const(0), entry, 2, i64)
        rr, first = phis(const(0), entry, 2, i64) if planes else (None, None)
        outer_sums = phis(zero, entry)
        inner = fn.append_basic_block("row")
        latch = fn.append_basic_block("next_row")
        builder.branch(inner)
        builder.position_at_end(inner)
        j = builder.phi(i64)
        j.add_incoming(const(0), loop)
        sums = phis(outer_sums, loop)
        new = step(builder.add(k0, j), builder.gep(b, [builder.add(row, builder.mul(j, ldb))]), sums)
        j1 = builder.add(j, const(1))
        j.add_incoming(j1, inner)
        for s, n in zip(sums, new):
            s.add_incoming(n, inner)
        builder.cbranch(builder.icmp_signed("<", j1, kw), inner, latch)
        builder.position_at_end(latch)
        k1 = builder.add(k0, kw)
        row1 = builder.add(row, ldr)
        if planes:  # the row within its plane, and the plane's first
            kh, ldp = fn.args[12:14]
            rr1 = builder.add(rr, const(1))
            next_plane = builder.icmp_signed("==", rr1, kh)
            first1 = builder.select(next_plane, builder.add(first, ldp), first)
            row1 = builder.select(next_plane, first1, row1)
            rr.add_incoming(builder.select(next_plane, const(0), rr1), latch)
            first.add_incoming(first1, latch)
        k0.add_incoming(k1, latch)
        row.add_incoming(row1, latch)
        for s, n in zip(outer_sums, new):
            s.add_incoming(n, latch)
        last = latch
    else:
        k = builder.phi(i64)
        k.add_incoming(const(0), entry)
        sums = phis(zero, entry)
        acol = builder.gep(a, [builder.load(builder.gep(fn.args[-1], [k]))]) if gather else None
        new = step(k, builder.gep(b, [builder.mul(k, ldb)]), sums, acol)
        k1 = builder.add(k, const(1))
        k.add_incoming(k1, loop)
        for s, n in zip(sums, new):
            s.add_incoming(n, loop)
        last = loop
    builder.cbranch(builder.icmp_signed("<", k1, kc), loop, done)
    builder.position_at_end(done)
    totals = []
    for s in new:  # (every phi first: LLVM wants them at the top of the block)
        total = builder.phi(vec)
        total.add_incoming(zero, entry)
        total.add_incoming(s, last)
        totals.append(total)
    adding = builder.icmp_signed("!=", add, const(0))
    biasing = builder.icmp_signed("!=", addb, const(0))
    for r in range(mr):
        one = builder.load(builder.gep(bias, [const(r)]))  # (bias: always mr readable elements)
        start = builder.select(biasing, builder.shuffle_vector(
            builder.insert_element(undef, one, ir.Constant(i32, 0)), undef, splat), zero)
        for v in range(nv):
            q = builder.gep(c, [builder.add(builder.mul(const(r), ldc), const(v * lanes))])
            old = builder.select(adding, load(q, v), zero)
            store(builder.fadd(builder.fadd(old, start), totals[r * nv + v]), q, v)
    builder.ret_void()
    return fn


def _declared(module, name, ret, args):
    """The function ``name`` of ``module`` (an LLVM intrinsic), declared on first use."""
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(ret, args), name=name)


def _tile_call(rows, taps=False, nv=NV, masked=False, planes=False, vbits=VBITS, gather=0):
    """The intrinsic that calls the tile function:
    ``(a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb)`` (with ``taps``, then
    ``kw, ldr``; ``planes``, then ``kh, ldp``; ``masked``, then ``cols``), 1-D arrays of one float
    dtype (a vector of ``VBITS``) with element offsets; ``bias[bias0:bias0 + MR]`` must be
    readable even when ``addb`` is 0. ``vbits``: the vectors' width. ``gather`` (rows): then
    ``ro, ro0, ko, ko0``, int64 arrays of A's rows' and steps' offsets with their first's index."""
    def codegen(context, builder, signature, args):
        aa, ia, lda, bb, ib, ldb, cc, ic, ldc, kc, add, bv, iv, addb = args[:14]

        def at(ary, aty, off):
            return builder.gep(context.make_array(aty)(context, builder, ary).data, [off])

        fn = _tile_function(builder.module, signature.args[0].dtype.bitwidth, rows, taps, nv, masked, planes, vbits,
                            gather)
        rest = list(args[14:])
        if gather:  # (ro, ro0, ko, ko0): pointers to ro[ro0] and ko[ko0]
            rest = [at(rest[0], signature.args[14], rest[1]), at(rest[2], signature.args[16], rest[3])]
        builder.call(fn, [at(aa, signature.args[0], ia), at(bb, signature.args[3], ib),
                          at(cc, signature.args[6], ic), at(bv, signature.args[11], iv),
                          lda, ldb, ldc, kc, add, addb, *rest])
        return context.get_dummy_value()

    ip = types.intp
    if gather:
        def tile(typingctx, a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb, ro, ro0, ko, ko0):
            return types.void(a, ip, ip, b, ip, ip, c, ip, ip, ip, ip, bias, ip, ip, ro, ip, ko, ip), codegen
    elif planes and masked:  # (taps too)
        def tile(typingctx, a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb, kw, ldr, kh, ldp, cols):
            return types.void(a, ip, ip, b, ip, ip, c, ip, ip, ip, ip, bias, ip, ip, ip, ip, ip, ip, ip), codegen
    elif planes:
        def tile(typingctx, a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb, kw, ldr, kh, ldp):
            return types.void(a, ip, ip, b, ip, ip, c, ip, ip, ip, ip, bias, ip, ip, ip, ip, ip, ip), codegen
    elif masked and taps:
        def tile(typingctx, a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb, kw, ldr, cols):
            return types.void(a, ip, ip, b, ip, ip, c, ip, ip, ip, ip, bias, ip, ip, ip, ip, ip), codegen
    elif masked:
        def tile(typingctx, a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb, cols):
            return types.void(a, ip, ip, b, ip, ip, c, ip, ip, ip, ip, bias, ip, ip, ip), codegen
    elif taps:
        def tile(typingctx, a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb, kw, ldr):
            return types.void(a, ip, ip, b, ip, ip, c, ip, ip, ip, ip, bias, ip, ip, ip, ip), codegen
    else:
        def tile(typingctx, a, a0, lda, b, b0, ldb, c, c0, ldc, kc, add, bias, bias0, addb):
            return types.void(a, ip, ip, b, ip, ip, c, ip, ip, ip, ip, bias, ip, ip), codegen
    return intrinsic(tile)


_tile = _tile_call(rows=False)  # A packed (the forward's weight, once per call)
_tile_rows = _tile_call(rows=True)  # A's rows where they lie (the weight gradient's gy)
_tile_rows_half = _tile_call(rows=True, nv=1)  # ... and half a panel of B's columns
_tile_rows_batch = _tile_call(rows=True, nv=BATCH_NV)  # ... a panel of ``BATCH_NV`` vectors (``_red_unit``)
_tile_rows_ragged = _tile_call(rows=True, masked=True)  # ... the first ``cols`` of a panel (``batch_rows``)
_tile_rows_ragged_half = _tile_call(rows=True, nv=1, masked=True)  # ... of at most half a panel
_tile_rows_batch_ragged = _tile_call(rows=True, nv=BATCH_NV, masked=True)  # ... of ``BATCH_NV`` vectors
_tile_taps = _tile_call(rows=False, taps=True)  # A packed, B a kernel's taps over a plane (implicit forward)
_tile_batch = _tile_call(rows=False, nv=BATCH_NV)  # A packed, a panel of ``batch``'s columns
_tile_batch_ragged = _tile_call(rows=False, nv=BATCH_NV, masked=True)  # ... its first ``cols``
_tile_half = _tile_call(rows=False, nv=1)  # A packed, half a panel of B's columns (winograd's cropped spans)
_tile_ragged = _tile_call(rows=False, masked=True)  # A packed, the first ``cols`` of a panel of B's columns
_tile_ragged_half = _tile_call(rows=False, nv=1, masked=True)  # ... of at most half a panel
_tile_taps_ragged = _tile_call(rows=False, taps=True, masked=True)  # a kernel's taps, the first ``cols`` columns
_tile_taps_ragged_half = _tile_call(rows=False, taps=True, nv=1, masked=True)  # ... of at most half a panel
_tile_planes = _tile_call(rows=False, taps=True, planes=True)  # every channel's taps, a plane each, in one call
_tile_planes_ragged = _tile_call(rows=False, taps=True, planes=True, masked=True)  # ... the first ``cols`` columns
_tile_planes_ragged_half = _tile_call(rows=False, taps=True, planes=True, nv=1, masked=True)  # ... of a half panel
_tile_planes_half = _tile_call(rows=False, taps=True, planes=True, nv=1)  # ... a half panel, unmasked
# ... three quarters of a panel, in three 256-bit vectors (``NARROW``)
_tile_planes_narrow = _tile_call(rows=False, taps=True, planes=True, nv=3, vbits=256)
# A's rows where they lie, B's columns in 256-bit vectors (``NARROW``, where they cost a 512-bit
# vector's half): a quarter of a panel in one (``_numba_images``' 8 images: 0.58-0.70x the time of
# a 512-bit vector half filled), three quarters in three; the first ``cols`` of either
_tile_rows_narrow = _tile_call(rows=True, nv=1, vbits=256)
_tile_rows_narrow_ragged = _tile_call(rows=True, nv=1, vbits=256, masked=True)
_tile_rows_narrow3 = _tile_call(rows=True, nv=3, vbits=256)
_tile_rows_narrow3_ragged = _tile_call(rows=True, nv=3, vbits=256, masked=True)
# A gathered (output pixels and taps at offsets of their own), B the weight by rows
GATHER_ROWS = MR  # rows: output pixels (12, with 24 sums, measured the same or slower: 0.9-1.4x the time)
_tile_gather = _tile_call(rows=True, gather=GATHER_ROWS)
_tile_gather_half = _tile_call(rows=True, nv=1, gather=GATHER_ROWS)  # ... half a panel of B


def _transpose_function(module, bits):
    """A square block of one vector's lanes transposed, as an LLVM function of ``module``:
    arguments ``(src, lds, dst, ldd)``, pointers to the first elements and the rows' pitches, so
    that ``dst[c*ldd + r] = src[r*lds + c]`` for r, c < lanes. The lanes' rows are loaded whole
    and swapped bit by bit of the lane index (one stage of ``shufflevector`` per bit: a row pair
    exchanges the halves, quarters, ... the other needs), so each value moves in vectors, not as a
    store of its own. (The loop it replaces stored one value at a time, scattered ``nw`` apart:
    one thread, B of 16 products 480 x 512 packed into panels of 48 columns, 2.7 ms against 1.1.)"""
    name = f"fastconv_gemm_transpose_f{bits}"
    if name in module.globals:
        return module.globals[name]
    scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
    lanes = VBITS // bits
    vec = ir.VectorType(scalar, lanes)
    i64, i32 = ir.IntType(64), ir.IntType(32)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [scalar.as_pointer(), i64, scalar.as_pointer(), i64]),
                     name=name)
    fn.linkage = "internal"
    src, lds, dst, ldd = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))

    def at(base, pitch, r):
        return builder.bitcast(builder.gep(base, [builder.mul(pitch, ir.Constant(i64, r))]), vec.as_pointer())

    rows = [builder.load(at(src, lds, r), align=bits // 8) for r in range(lanes)]
    h = lanes // 2
    while h:  # swap bit h of the row index with bit h of the lane index
        low = ir.Constant(ir.VectorType(i32, lanes), [q + lanes - h if q & h else q for q in range(lanes)])
        high = ir.Constant(ir.VectorType(i32, lanes), [q + lanes if q & h else q + h for q in range(lanes)])
        for r in range(lanes):
            if not r & h:
                rows[r], rows[r + h] = (builder.shuffle_vector(rows[r], rows[r + h], low),
                                        builder.shuffle_vector(rows[r], rows[r + h], high))
        h //= 2
    for c in range(lanes):
        builder.store(rows[c], at(dst, ldd, c), align=bits // 8)
    builder.ret_void()
    return fn


@intrinsic
def _transpose(typingctx, src, s0, lds, dst, d0, ldd):
    """``dst[d0 + c*ldd + r] = src[s0 + r*lds + c]`` for r, c < a vector's lanes
    (``_transpose_function``); 1-D arrays of one float dtype with element offsets."""
    def codegen(context, builder, signature, args):
        def at(ary, aty, off):
            return builder.gep(context.make_array(aty)(context, builder, ary).data, [off])

        fn = _transpose_function(builder.module, signature.args[0].dtype.bitwidth)
        builder.call(fn, [at(args[0], signature.args[0], args[1]), args[2], at(args[3], signature.args[3], args[4]),
                          args[5]])
        return context.get_dummy_value()

    ip = types.intp
    return types.void(src, ip, ip, dst, ip, ip), codegen


def tile_cols(itemsize):
    """Columns per tile (a B panel's width) for elements of ``itemsize`` bytes: ``NV`` vectors."""
    return NV * (VBITS // 8 // itemsize)


_tile_cols = njit(inline="always", **_JIT)(tile_cols)


def batch_cols(itemsize):
    """Columns per tile in ``batch`` (a panel of B there): ``BATCH_NV`` vectors."""
    return BATCH_NV * (VBITS // 8 // itemsize)


_batch_cols = njit(inline="always", **_JIT)(batch_cols)


@njit(inline="always", **_JIT)
def _panel_width(left, nr, lanes):  # pragma: no cover
    """The next panel's columns with ``left`` columns to go, on tiles of up to ``nr`` columns
    (``lanes`` a vector): a whole panel, two vectors where four are left (two tiles of two, not one
    of three and one of one), else what is left rounded up to whole vectors (``_red_unit`` pads
    them with zeros; ``batch`` takes no more than is left, on the masked tiles)."""
    if left == 4 * lanes:
        return 2 * lanes
    return min(nr, (left + lanes - 1) // lanes * lanes)


@njit(inline="always", **_JIT)
def _nr(a):  # pragma: no cover
    """``_tile_cols`` for ``a``'s dtype."""
    return _tile_cols(a.itemsize)


@njit(inline="always", **_JIT)
def _whole_rows(m):  # pragma: no cover
    """``m`` rows rounded up to whole tiles (MR): packed A's rows, the padded bias's length."""
    return (m + MR - 1) // MR * MR


@njit(inline="always", **_JIT)
def _put(ct, nr, c, c0, ldc, rows, cols, add):  # pragma: no cover
    """The scratch tile's (rows ``nr`` apart) first ``rows`` x ``cols`` into ``c[c0 + r*ldc + j]``
    (added when ``add``)."""
    for r in range(rows):  # (loops: Numba's ``view += array`` allocated a temporary)
        for j in range(cols):
            v = ct[r * nr + j]
            if add:
                v += c[c0 + r * ldc + j]
            c[c0 + r * ldc + j] = v


# -- forward and input gradient: columns are the images' pixels, laid end to end ------------------


def cols_scratch(m, k, nthreads, itemsize, columns=0, p_img=1):
    """Float and int64 workspace elements of ``_cols_part``: A packed (all of it, shared) and the
    bias padded to whole tiles, and per slot a B panel for the panels gathered from several
    images, a scratch tile, and (ints) the slot's panels and runs (``_cols_panels``) over
    ``columns`` columns of images of ``p_img``."""
    nr = batch_cols(itemsize)
    mp = _whole_rows(m)
    panels, runs = cols_panels_max(cols_share(columns, nthreads, nr), p_img, nr)
    return _aligned(mp * k) + _aligned(mp) + nthreads * _aligned((KC + MR) * nr), nthreads * (4 * panels + 2 * runs)


def cols_share(total, nslots, nr):
    """A slot's share of ``total`` columns: whole panels of ``nr``."""
    return ((total + nslots - 1) // nslots + nr - 1) // nr * nr


def cols_panels_max(share, p_img, nr):
    """``(panels, runs)``: at most how many ``_cols_panels`` makes of ``share`` columns of images of
    ``p_img``: a gathered panel per image at most, besides the panels of at least a vector."""
    images = share // p_img + 2
    panels = share // (nr // BATCH_NV) + 2 * images + 1
    return panels, panels + images


_cols_share = njit(inline="always", **_JIT)(cols_share)
_cols_panels_max = njit(inline="always", **_JIT)(cols_panels_max)


@njit(inline="always", **_JIT)
def _cols_views(wm, nthreads, fws, slot):  # pragma: no cover
    m, k = wm.shape
    mp = _whole_rows(m)
    nr = _batch_cols(fws.itemsize)
    asize = _aligned(mp * k)
    shared = asize + _aligned(mp)
    per = _aligned((KC + MR) * nr)
    own = fws[shared + slot * per:shared + (slot + 1) * per]
    return m, k, mp, fws[:asize], fws[asize:asize + mp], own[:KC * nr], own[KC * nr:(KC + MR) * nr]


@njit(**_JIT)
def _pack_a(wm, ap):  # pragma: no cover
    """A (``wm``, m x k) into ``ap`` the way the tile reads it: per block of KC reduction steps,
    panels of MR rows, ``ap[pc*mp + ip*kc*MR + k*MR + r] = wm[ip*MR + r, pc + k]`` (``mp``: m
    rounded up to whole panels, zero rows past wm's)."""
    m, k = wm.shape
    mp = _whole_rows(m)
    for pc in range(0, k, KC):
        kc = min(KC, k - pc)
        for ip in range(mp // MR):
            base = pc * mp + ip * kc * MR
            for kk in range(kc):
                for r in range(MR):
                    i = ip * MR + r
                    ap[base + kk * MR + r] = wm[i, pc + kk] if i < m else 0


@njit(**_JIT)
def _cols_prepare(wm, b3, c3, bias, nthreads, fws, iws):  # pragma: no cover
    """Pack A (``wm``) for every slot (``_pack_a``), and the bias, zeros past its end (all zeros
    without one)."""
    _, _, mp, ap, bias_p, _, _ = _cols_views(wm, nthreads, fws, 0)
    for i in range(mp):
        bias_p[i] = bias[i] if i < bias.size else 0
    _pack_a(wm, ap)


@njit(**_JIT)
def _cols_part(wm, b3, c3, bias, nthreads, fws, iws, slot):  # pragma: no cover
    """``c3[n, :, p] = wm @ b3[n, :, p] (+ bias)`` for this slot's share of the flat columns
    ``j = n*P + p`` (whole panels of them)."""
    n_img, _, p_img = b3.shape
    m, k, mp, ap, bias_p, bp, ct = _cols_views(wm, nthreads, fws, slot)
    nr = _batch_cols(fws.itemsize)
    total = n_img * p_img
    share = _cols_share(total, nthreads, nr)
    most, nruns = _cols_panels_max(share, p_img, nr)
    ints = iws[slot * (4 * most + 2 * nruns):(slot + 1) * (4 * most + 2 * nruns)]
    panels, runs = ints[:4 * most].reshape((most, 4)), ints[4 * most:].reshape((nruns, 2))
    j0 = min(slot * share, total)
    _cols_run(ap, m, bias_p, b3.reshape(-1), c3.reshape(-1), k, p_img, bp, ct, panels, runs, j0,
              min(j0 + share, total))


@njit(**_JIT)
def _cols_panels(j0, j1, p_img, nr, half, panels, runs):  # pragma: no cover
    """The flat columns ``[j0, j1)`` as panels, image by image: as many whole panels of ``nr``
    columns as an image's part holds, then (with ``half``) one of two vectors and one of one (each
    on its own tile; with two-vector panels, a half panel), all read where they lie; the columns
    left (fewer than a vector) gathered with other images' into panels of ``nr``.
    ``panels[i] = (first column, columns, first run, last run)``, the runs of a gathered panel
    ``runs[r] = (first column, columns)`` (none for a panel read where it lies).
    Returns the panels' count. Before, panels ran on end to end over the flat columns, and at 7x7
    (49 columns an image) two in three crossed an image's end, each copied and put through the
    scratch tile; now one column an image is. One thread, float32, N=16 7x7, GFLOP/s now / before
    (7 interleaved rounds): 2048 -> 512 channels 191-198 / 132-148, 512 -> 2048 186-195 / 133-142;
    14x14 256 -> 1024 219-223 / 172-185, 1024 -> 256 211-216 / 153-155; two threads, N=32 7x7,
    forward time over torch's: 2048 -> 512 1.22 / 1.43-1.54, 512 -> 2048 1.17 / 1.26-1.50."""
    hp = nr // BATCH_NV  # a vector's columns
    n, nruns, pend, first = 0, 0, 0, 0
    j = j0
    while j < j1:
        img = j // p_img
        end = min(j1, (img + 1) * p_img)
        while j + nr <= end:
            panels[n, 0], panels[n, 1], panels[n, 2], panels[n, 3] = j, nr, 0, 0
            n += 1
            j += nr
        if half and BATCH_NV > 2 and j + 2 * hp <= end:
            panels[n, 0], panels[n, 1], panels[n, 2], panels[n, 3] = j, 2 * hp, 0, 0
            n += 1
            j += 2 * hp
        if half and j + hp <= end:
            panels[n, 0], panels[n, 1], panels[n, 2], panels[n, 3] = j, hp, 0, 0
            n += 1
            j += hp
        while j < end:
            take = min(end - j, nr - pend)
            runs[nruns, 0], runs[nruns, 1] = j, take
            nruns += 1
            pend += take
            j += take
            if pend == nr:
                panels[n, 0], panels[n, 1], panels[n, 2], panels[n, 3] = -1, nr, first, nruns
                n += 1
                pend, first = 0, nruns
    if pend:
        panels[n, 0], panels[n, 1], panels[n, 2], panels[n, 3] = -1, pend, first, nruns
        n += 1
    return n


@njit(inline="always", **_JIT)
def _cols_panel(ap, m, mp, bias_p, bflat, cflat, k, p_img, bp, ct, panel, runs, pc, kc, add,
                last):  # pragma: no cover
    """``_cols_run``'s block pc .. pc + kc on one panel of ``_cols_panels``: read where it lies
    (whole, or of two vectors or one on their own tiles), or its runs copied into ``bp`` (zeros
    past its columns) and its sums put from the scratch tile ``ct``, as are the rows past whole
    tiles of C."""
    nr = _batch_cols(ct.itemsize)
    jb, cols, r0, r1 = panel[0], panel[1], panel[2], panel[3]
    gathered = jb < 0
    if not gathered:
        img = jb // p_img
        p = jb - img * p_img
        src, b0, ldb = bflat, (img * k + pc) * p_img + p, p_img
    else:
        for q in range(cols, nr):
            for kk in range(kc):
                bp[kk * nr + q] = 0
        q = 0
        for r in range(r0, r1):
            j, run = runs[r, 0], runs[r, 1]
            jm = j // p_img
            at = (jm * k + pc) * p_img + j - jm * p_img
            for t in range(run):
                for kk in range(kc):
                    bp[kk * nr + q + t] = bflat[at + t + kk * p_img]
            q += run
        src, b0, ldb = bp, 0, nr
    for ip in range(mp // MR):
        i0 = ip * MR
        a0 = pc * mp + ip * kc * MR
        if not gathered and i0 + MR <= m:
            c0 = (img * m + i0) * p_img + p
            if cols == nr:
                _tile_batch(ap, a0, 0, src, b0, ldb, cflat, c0, p_img, kc, add, bias_p, i0, last)
            elif cols == nr // BATCH_NV:
                _tile_half(ap, a0, 0, src, b0, ldb, cflat, c0, p_img, kc, add, bias_p, i0, last)
            else:  # two vectors (of three)
                _tile(ap, a0, 0, src, b0, ldb, cflat, c0, p_img, kc, add, bias_p, i0, last)
            continue
        _tile_batch(ap, a0, 0, src, b0, ldb, ct, 0, nr, kc, 0, bias_p, i0, last)
        rows = min(MR, m - i0)
        if not gathered:
            _put(ct, nr, cflat, (img * m + i0) * p_img + p, p_img, rows, cols, add)
            continue
        q = 0
        for r in range(r0, r1):  # by runs of one image's columns
            j, run = runs[r, 0], runs[r, 1]
            jm = j // p_img
            _put(ct[q:], nr, cflat, (jm * m + i0) * p_img + j - jm * p_img, p_img, rows, run, add)
            q += run


@njit(**_JIT)
def _cols_run(ap, m, bias_p, bflat, cflat, k, p_img, bp, ct, panels, runs, j0, j1):  # pragma: no cover
    """``C[n, :, p] = A @ B[n, :, p] + bias_p[:m]`` for the flat columns ``j = n*P + p`` in
    ``[j0, j1)``, with A (m x k) packed in ``ap`` (``_pack_a``), B and C the flat C-contiguous
    ``(N, k, P)`` and ``(N, m, P)``, a panel of ``_cols_panels`` (into ``panels`` and ``runs``, of
    ``cols_panels_max``'s rows) and a block of KC reduction steps at a time (``_cols_panel``).
    Most A run whole for each panel, the panel's sums staying in cache over the blocks. An A
    larger than L2 whose blocks L2 holds (``COLS_L2_BYTES``, ``COLS_BLOCK_BYTES``: m at most 512 in
    float32) runs block by block over every panel, as ``_batch_run`` does, so that each block
    comes from L3 once rather than once per panel: two threads, float32, N=32 7x7 2048 -> 512
    channels, forward time over torch's 1.49-1.54 against 1.81-1.86 (one thread, N=16: 136-148
    against 109-117 GFLOP/s). Blocks of rows of a taller A (m = 2048, blocks of 512 rows) gained
    on one thread and lost on two, where each of the 8 slots has only 6 or 7 panels to reuse a
    block over (512 -> 2048 channels 1.73-1.77 against 1.51-1.57). The sums run in the same order
    either way: the same bits."""
    mp = _whole_rows(m)
    nr = _batch_cols(ct.itemsize)
    n = _cols_panels(j0, j1, p_img, nr, m % MR == 0, panels, runs)
    blocks = mp * k * ct.itemsize > COLS_L2_BYTES and mp * KC * ct.itemsize <= COLS_BLOCK_BYTES
    if not blocks:
        for i in range(n):
            for pc in range(0, k, KC):
                kc = min(KC, k - pc)  # (the bias goes in with the last block)
                _cols_panel(ap, m, mp, bias_p, bflat, cflat, k, p_img, bp, ct, panels[i], runs, pc, kc,
                            1 if pc > 0 else 0, 1 if pc + kc == k else 0)
        return
    for pc in range(0, k, KC):
        kc = min(KC, k - pc)
        for i in range(n):
            _cols_panel(ap, m, mp, bias_p, bflat, cflat, k, p_img, bp, ct, panels[i], runs, pc, kc,
                        1 if pc > 0 else 0, 1 if pc + kc == k else 0)


@njit(**_JIT)
def _cols_serial(wm, b3, c3, bias, nthreads, fws, iws):  # pragma: no cover
    """A one-slot call's ``_cols_prepare`` and ``_cols_part`` in one dispatch."""
    _cols_prepare(wm, b3, c3, bias, 1, fws, iws)
    _cols_part(wm, b3, c3, bias, 1, fws, iws, 0)


# -- many products of one shape (winograd's, one per transform point) ------------------------------


def packed_size(m, k):
    """Elements of one A (m x k) packed by ``_pack_a``."""
    return _whole_rows(m) * k


def batch_scratch(m, itemsize):
    """Elements of ``batch``'s scratch for products of m rows: a scratch tile and a zero bias of
    whole panels."""
    return MR * batch_cols(itemsize) + _whole_rows(m)


@njit(**_JIT)
def _batch_run(ap, m, zeros, b, c, k, p, j0, j1, j2, j3, ct, lda, acc=False, s0=0, s1=-1):  # pragma: no cover
    """C = A @ B in the column ranges j0 .. j1 and j2 .. j3, A (m x k) packed, B and C the flat
    (k, p) and (m, p): per block of KC reduction steps, every panel of nr columns of both ranges,
    every panel of rows. A block of A (up to 512 KiB at 512 rows) stays in L2 over all the panels
    of B rather than streaming from L3 for each (as in ``_cols_run``): one thread, 16 products 512
    x 512 x 128 137 -> 145 GFLOP/s, 256 x 256 x 196 116 -> 134, 128 x 128 x 224 184 -> 199. A
    range's last half panel runs on a half-width tile, straight into C, instead of through a
    scratch tile: at 512 x 512 x 256 a panel of 16 columns so cost 1.6 whole ones; any other ragged
    end runs on the masked tiles (``_batch_panel``). The sums run in the same order, so the results
    are the same bits. ``lda`` > 0: A's rows where they lie, ``lda`` apart (``batch_rows``).
    ``s0 .. s1`` (s1 < 0: k): only those reduction steps, A still packed for all k of them (the
    steps past them multiply zeros: ``winograd._convolve_3d``'s depth padding)."""
    mp = _whole_rows(m)
    nr = _batch_cols(ct.itemsize)
    lanes = nr // BATCH_NV
    end = k if s1 < 0 else s1
    for pc in range(0, k, KC):
        kc = min(KC, k - pc)
        first, last = max(pc, s0), min(pc + kc, end)
        if first >= last:
            continue
        add = 1 if first > s0 or acc else 0
        for lo, hi in ((j0, j1), (j2, j3)):  # both ranges in one pass over A's block (read from L3 once)
            jb = lo
            while jb < hi:
                cols = min(_panel_width(hi - jb, nr, lanes), hi - jb)
                _batch_panel(ap, m, mp, zeros, b, c, p, pc, kc, add, jb, cols, nr, ct, lda, first - pc, last - first)
                jb += cols


@njit(inline="always", **_JIT)
def _rows_tile(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb, cols, nr, narrow):  # pragma: no cover
    """One tile of A's rows where they lie (from ``a0``, ``lda`` apart) by the ``cols`` columns of B
    from ``b0`` (rows ``ldb`` apart, at most a panel of ``nr``) into C at ``c0`` (rows ``ldc``
    apart; added where ``add``, with ``bias[i0:]`` where ``addb``), on the tile that fits the
    columns; with ``narrow`` (``NARROW`` cores, where ``nr`` is two 512-bit vectors) up to a quarter
    or from half to three quarters of a panel in 256-bit vectors (``_numba_images``)."""
    lanes = nr // BATCH_NV
    if narrow and 2 * cols <= lanes:
        if 2 * cols == lanes:
            _tile_rows_narrow(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb)
        else:
            _tile_rows_narrow_ragged(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb, cols)
    elif narrow and lanes < cols and 2 * cols <= 3 * lanes:
        if 2 * cols == 3 * lanes:
            _tile_rows_narrow3(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb)
        else:
            _tile_rows_narrow3_ragged(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb, cols)
    elif cols == nr:
        _tile_rows_batch(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb)
    elif cols == lanes:
        _tile_rows_half(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb)
    elif cols < lanes:
        _tile_rows_ragged_half(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb, cols)
    elif cols == 2 * lanes:
        _tile_rows(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb)
    elif cols < 2 * lanes:
        _tile_rows_ragged(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb, cols)
    else:
        _tile_rows_batch_ragged(a, a0, lda, b, b0, ldb, c, c0, ldc, steps, add, bias, i0, addb, cols)


@njit(inline="always", **_JIT)
def _batch_panel(ap, m, mp, zeros, b, c, p, pc, kc, add, jb, cols, nr, ct, lda, off, steps):  # pragma: no cover
    """``_batch_run``'s block pc .. pc + kc (its steps ``off .. off + steps``) on the columns jb ..
    jb + cols (at most a panel), B read where it lies: a ragged panel (fewer than nr columns) by
    the masked tiles, which read and write only its columns. (It had been copied into a
    zero-padded panel and run as a whole one through the scratch tile: one thread, 16 products 128
    x 384 x 49, 54-64 GFLOP/s against 105-112 at 48 columns.) C's last rows, if not a whole
    tile's, go through the scratch tile. With ``lda`` (> 0) A's rows are read where they lie,
    ``lda`` apart (m whole tiles of rows: ``batch_rows``)."""
    lanes = nr // BATCH_NV
    for ip in range(mp // MR):
        i0 = ip * MR
        a0 = pc * mp + ip * kc * MR + off * MR
        b0 = (pc + off) * p + jb
        whole = i0 + MR <= m
        cc, c0, ldc, ad = (c, i0 * p + jb, p, add) if whole else (ct, 0, nr, 0)
        if lda:
            _rows_tile(ap, i0 * lda + pc + off, lda, b, b0, p, cc, c0, ldc, steps, ad, zeros, i0, 0, cols, nr, False)
        elif cols == nr:
            _tile_batch(ap, a0, 0, b, b0, p, cc, c0, ldc, steps, ad, zeros, i0, 0)
        elif cols == lanes:
            _tile_half(ap, a0, 0, b, b0, p, cc, c0, ldc, steps, ad, zeros, i0, 0)
        elif cols < lanes:
            _tile_ragged_half(ap, a0, 0, b, b0, p, cc, c0, ldc, steps, ad, zeros, i0, 0, cols)
        elif cols == 2 * lanes:
            _tile(ap, a0, 0, b, b0, p, cc, c0, ldc, steps, ad, zeros, i0, 0)
        elif cols < 2 * lanes:
            _tile_ragged(ap, a0, 0, b, b0, p, cc, c0, ldc, steps, ad, zeros, i0, 0, cols)
        else:
            _tile_batch_ragged(ap, a0, 0, b, b0, p, cc, c0, ldc, steps, ad, zeros, i0, 0, cols)
        if not whole:
            _put(ct, nr, c, i0 * p + jb, p, m - i0, cols, add)


@njit(inline="always", **_JIT)
def _batch_views(scratch, m):  # pragma: no cover
    """``(scratch tile, bias)`` carved from ``batch``'s scratch (``batch_scratch``): the bias zeros
    (none)."""
    nr = _batch_cols(scratch.itemsize)
    zeros = scratch[MR * nr:MR * nr + _whole_rows(m)]
    zeros[:] = 0
    return scratch[:MR * nr], zeros


# ``batch``'s plan: per product, up to PLAN_ENTRIES entries ``(a, j0, j1, j2, j3)``, each the column
# ranges j0 .. j1 and j2 .. j3 of C computed with ``ap2[a]`` (a >= 0, any of ap2's matrices),
# set to zero (a = ``ZERO``) or an unused entry (a = ``UNUSED``)
PLAN_ENTRIES = 4
ZERO, UNUSED = -1, -2
NO_PLAN = np.empty((0, PLAN_ENTRIES, 5), np.int64)  # every column of product i with ap2[i]


@njit(**_JIT)
def batch(ap2, m, b, c, k, p, scratch, plan, bstep, cstep=0):  # pragma: no cover
    """``C[i] = A @ B[i]`` for every product i on this thread: ``B[i]`` the C-contiguous (k, p) at
    ``b[i*bstep:]`` (``bstep`` = k*p: B C-contiguous too), ``C[i]`` the C-contiguous (m, p) at
    ``c[i*cstep:]`` (``cstep`` 0: m*p, C C-contiguous), A (m x k) packed in ``ap2``: with ``plan``
    empty, every column with ``ap2[i]`` (one product per matrix of ap2); else only the columns of
    ``plan[i]``'s entries, each with its own matrix of ap2 or zeros (``PLAN_ENTRIES``), C's other
    columns left as they were. An entry's two ranges run in one pass over its A."""
    ct, zeros = _batch_views(scratch, m)
    cs = cstep if cstep else m * p
    for i in range(plan.shape[0] if plan.shape[0] else ap2.shape[0]):
        bi, ci = b[i * bstep:i * bstep + k * p], c[i * cs:i * cs + m * p]
        if plan.shape[0] == 0:
            _batch_run(ap2[i], m, zeros, bi, ci, k, p, 0, p, 0, 0, ct, 0)
            continue
        for e in range(plan.shape[1]):
            a, j0, j1, j2, j3 = plan[i, e, 0], plan[i, e, 1], plan[i, e, 2], plan[i, e, 3], plan[i, e, 4]
            if a >= 0:
                _batch_run(ap2[a], m, zeros, bi, ci, k, p, j0, j1, j2, j3, ct, 0)
            elif a == ZERO:
                for r in range(m):
                    ci[r * p + j0:r * p + j1] = 0
                    ci[r * p + j2:r * p + j3] = 0


@njit(**_JIT)
def batch_steps(ap2, m, b, c, k, p, scratch, bstep, s0, s1):  # pragma: no cover
    """``batch`` of every product with ``ap2[i]`` (no plan), over the reduction steps ``s0 .. s1``
    of its k only (``_batch_run``). Its own entry: ``batch``'s callers leave ``_batch_run``'s step
    range out, which Numba then compiles as constants; passed on from ``batch``'s own arguments,
    the products of a k that is no multiple of ``KC`` ran at 0.6-0.75x the rate (one thread, 64 x
    363 by 363 x 256: 65 against 113 GFLOP/s)."""
    ct, zeros = _batch_views(scratch, m)
    for i in range(ap2.shape[0]):
        _batch_run(ap2[i], m, zeros, b[i * bstep:i * bstep + k * p], c[i * m * p:(i + 1) * m * p], k, p, 0, p, 0, 0,
                   ct, 0, False, s0, s1)


@njit(**_JIT)
def batch_rows(a, lda, m, b, c, k, p, scratch):  # pragma: no cover
    """``C = A @ B`` as ``batch`` does it, A (m x k, m whole tiles of rows: a multiple of ``MR``)
    read where it lies, row r at ``a[r*lda:]``, not packed: where each of A's elements meets one
    panel of B's columns (few of them), packing A cost as much again as reading it (numba's
    patches over few output pixels: a 512 x 4608 weight packed in 0.6 ms a thread, against 1.05 ms
    of products). The same sums in the same order: the same bits as ``batch``'s."""
    ct, zeros = _batch_views(scratch, m)
    _batch_run(a, m, zeros, b, c, k, p, 0, p, 0, 0, ct, lda)


# -- weight gradient: the reduction runs over the images' pixels, each slot a share of it ----------


def red_scratch(m, n, nthreads, itemsize):
    """Float and int64 workspace elements of ``_red_part``: per slot ``_red_unit``'s scratch
    (``red_batch_scratch``); and the partial sums of slots 1 and up (slot 0 writes into gw)."""
    return nthreads * red_batch_scratch(n, itemsize) + (nthreads - 1) * _aligned(m * n), 0


def red_batch_scratch(n, itemsize):
    """Elements of ``_red_unit``'s scratch for products of ``n`` columns (``_unit_views``): B packed
    for one block (KC x n, n in whole vectors), A's last rows when they are fewer than MR, a
    scratch tile."""
    return _unit_size(n, batch_cols(itemsize))


@njit(inline="always", **_JIT)
def _unit_size(n, nr):  # pragma: no cover
    lanes = nr // BATCH_NV
    return _aligned(KC * ((n + lanes - 1) // lanes * lanes) + MR * KC + MR * nr)


@njit(inline="always", **_JIT)
def _unit_views(n, own):  # pragma: no cover
    """``(bp, ae, ct)`` of ``_red_unit`` carved from ``own`` (``red_batch_scratch`` elements)."""
    nr = _batch_cols(own.itemsize)
    lanes = nr // BATCH_NV
    npad = (n + lanes - 1) // lanes * lanes
    return own[:KC * npad], own[KC * npad:KC * npad + MR * KC], own[KC * npad + MR * KC:KC * npad + MR * KC + MR * nr]


@njit(inline="always", **_JIT)
def _pack_panel(b, b0, ldb, n, j0, kc, bp, base, nw):  # pragma: no cover
    """``bp[base + kk*nw + q] = b[b0 + (j0 + q)*ldb + kk]`` for q < nw, kk < kc: zeros past n.
    ``nw`` a whole number of vectors: blocks of a vector's lanes square are transposed in
    registers (``_transpose``), the steps past the last whole block and rows past n one by one."""
    lanes = VBITS // 8 // bp.itemsize
    kw = kc // lanes * lanes
    for q0 in range(0, nw, lanes):
        if j0 + q0 + lanes <= n:
            for k0 in range(0, kw, lanes):
                _transpose(b, b0 + (j0 + q0) * ldb + k0, ldb, bp, base + k0 * nw + q0, nw)
        for q in range(q0, q0 + lanes):
            j = j0 + q
            if j < n:
                for kk in range(kw if j0 + q0 + lanes <= n else 0, kc):
                    bp[base + kk * nw + q] = b[b0 + j * ldb + kk]
            else:
                for kk in range(kc):
                    bp[base + kk * nw + q] = 0


@njit(inline="always", **_JIT)
def _red_views(m, n, nthreads, fws, slot):  # pragma: no cover
    per = _unit_size(n, _batch_cols(fws.itemsize))
    bp, ae, ct = _unit_views(n, fws[slot * per:(slot + 1) * per])
    base = nthreads * per + (slot - 1) * _aligned(m * n)
    return bp, ae, ct, fws[base:base + m * n]


@njit(inline="always", **_JIT)
def _red_images(n_img, p_img, nslots):  # pragma: no cover
    """Images per unit of ``_red_part``: as many as fill KC reduction steps where an image has
    fewer pixels (at most ``KC // p_img``), in whole rounds of the slots; else 1 (its pixels in
    blocks of KC)."""
    most = KC // p_img if p_img else 1
    if most < 2:
        return 1
    rounds = (n_img + nslots * most - 1) // (nslots * most)
    return (n_img + nslots * rounds - 1) // (nslots * rounds)


@njit(**_JIT)
def _red_part(gy3, x3, gw2, nthreads, fws, iws, slot):  # pragma: no cover
    """This slot's share of ``gw = sum over n, p of gy3[n, :, p] (outer) x3[n, :, p]``, in units
    of up to KC pixels (a slot takes whole units): a block of one image's pixels, or, for images
    of fewer pixels, several whole images (``_red_images``). Into ``gw2`` for slot 0, else into its
    own partial sums (``_red_finish`` adds them). A is gy's rows where they lie; B, x's pixels
    transposed into panels, is copied once per unit for all of gw's rows.

    Several images a unit because each tile of gw is read and written once per unit: at 7x7 (49
    pixels an image) a unit of one image ran 49 steps of the reduction per read and write of its
    gw tile, from L3 (gw of 512 x 2048 is 4 MiB). Each image's sum is added to gw (or the slot's
    partial sums) in the same order as with one image a unit: on one slot, the same bits."""
    n_img, m, p_img = gy3.shape
    n = x3.shape[1]
    bp, ae, ct, part = _red_views(m, n, nthreads, fws, slot)
    out = gw2.reshape(-1) if slot == 0 else part
    per = _red_images(n_img, p_img, nthreads)
    nblk = (p_img + KC - 1) // KC if per == 1 else 1
    units = n_img * nblk if per == 1 else (n_img + per - 1) // per
    share = (units + nthreads - 1) // nthreads
    u0 = min(slot * share, units)
    u1 = min(u0 + share, units)
    if u0 == u1:
        out[:] = 0
        return
    gyflat, xflat = gy3.reshape(-1), x3.reshape(-1)
    for u in range(u0, u1):
        if per == 1:
            img = u // nblk
            p0 = (u - img * nblk) * KC
            kc, segs = min(KC, p_img - p0), 1
        else:
            img, p0 = u * per, 0
            kc, segs = p_img, min(per, n_img - u * per)
        _red_unit(gyflat, (img * m) * p_img + p0, p_img, m * p_img, m, xflat, (img * n) * p_img + p0, p_img,
                  n * p_img, n, kc, segs, out, 0, 1 if u > u0 else 0, bp, ae, ct)


@njit(**_JIT)
def _red_unit(a, a0, lda, astep, m, b, b0, ldb, bstep, n, kc, segs, out, o0, add, bp, ae, ct):  # pragma: no cover
    """``out[o0 + i*n + j] (+)= sum over s < segs of (sum over kk < kc of a[a0 + s*astep + i*lda +
    kk] * b[b0 + s*bstep + j*ldb + kk])`` for i < m, j < n (added to when ``add``), segment by
    segment in order: a product ``A @ B.T`` of ``segs`` blocks of kc reduction steps (segs * kc
    at most KC), each block's sum added in turn. A is read where it lies; B, transposed into
    panels, is copied once (``bp``) for all of A's rows; A's last rows, when fewer than MR, go
    through ``ae``; tiles cut by the matrix's edge through the scratch tile ``ct``. Each tile runs
    every segment before the next tile, so that its part of ``out`` stays in L1 meanwhile. (Rows in
    chunks whose A L2 holds over all the panels measured the same at 7x7, 512 -> 2048: not kept.)
    Panels of ``_panel_width`` columns, each on the tile of as many vectors: two threads, float32,
    time over two-vector panels' (medians of 3 alternating processes, 2026-12-05, same bits):
    winograd's weight gradient N=32 7x7 C=512 0.83, 14x14 C=256 0.92, 28x28 C=128 0.95, 56x56 C=64
    1.02 (two panels of two vectors either way), N=8 7x7 C=512 0.78; numba's 1x1 and patches 0.96-1.01.
    Copied with a variable pitch, B's panels took numba's 1x1 weight gradients 1.09-1.16x the time:
    the whole ones are copied with the pitch a constant."""
    nr = _batch_cols(ct.itemsize)
    lanes = nr // BATCH_NV
    kt = segs * kc
    j0 = 0
    while j0 < n:  # bp[j0*kt + (s*kc + kk)*nw + q] = b[b0 + s*bstep + (j0 + q)*ldb + kk]
        nw = _panel_width(n - j0, nr, lanes)
        for s in range(segs):
            if nw == nr:  # (the pitch a constant in the loop: the copy of most panels)
                _pack_panel(b, b0 + s * bstep, ldb, n, j0, kc, bp, j0 * kt + s * kc * nr, nr)
            else:
                _pack_panel(b, b0 + s * bstep, ldb, n, j0, kc, bp, j0 * kt + s * kc * nw, nw)
        j0 += nw
    tail = m // MR * MR
    if tail < m:  # A's last rows, fewer than MR: copied, with zero rows after them
        for s in range(segs):
            for r in range(MR):
                for kk in range(kc):
                    ae[(s * MR + r) * kc + kk] = a[a0 + s * astep + (tail + r) * lda + kk] if tail + r < m else 0
    j0 = 0
    while j0 < n:
        nw = _panel_width(n - j0, nr, lanes)
        for i0 in range(0, m, MR):
            whole = i0 < tail and j0 + nw <= n
            for s in range(segs):
                if i0 < tail:
                    src, s0, lds = a, a0 + s * astep + i0 * lda, lda
                else:
                    src, s0, lds = ae, s * MR * kc, kc
                b1 = j0 * kt + s * kc * nw
                adds = add if s == 0 else 1
                cc, c0, ldc, ad = (out, o0 + i0 * n + j0, n, adds) if whole else (ct, 0, nw, 0)
                if nw == nr:
                    _tile_rows_batch(src, s0, lds, bp, b1, nw, cc, c0, ldc, kc, ad, ct, 0, 0)
                elif nw == lanes:
                    _tile_rows_half(src, s0, lds, bp, b1, nw, cc, c0, ldc, kc, ad, ct, 0, 0)
                else:  # two vectors (of three)
                    _tile_rows(src, s0, lds, bp, b1, nw, cc, c0, ldc, kc, ad, ct, 0, 0)
                if not whole:
                    _put(ct, nw, out[o0:], i0 * n + j0, n, min(MR, m - i0), min(nw, n - j0), adds)
        j0 += nw


@njit(**_JIT)
def red_batch(a, b, c, m, n, p, add, scratch, spans):  # pragma: no cover
    """``C[i] (+)= A[i] @ B[i].T`` for every i on this thread (added when ``add``): A, B and C the
    flat C-contiguous ``(len, m, p)``, ``(len, n, p)`` and ``(len, m, n)``, the reduction over p in
    blocks of KC (winograd's weight gradient: output gradient by input, per transform point); only
    over ``spans[i, 0] .. spans[i, 1]`` and then ``spans[i, 2] .. spans[i, 3]`` where ``spans`` is
    not empty (``batch``'s column ranges: the steps past them are zeros)."""
    bp, ae, ct = _unit_views(n, scratch)
    for i in range(c.size // (m * n)):
        first = True
        ranges = ((0, p), (0, 0)) if spans.shape[0] == 0 else ((spans[i, 0], spans[i, 1]), (spans[i, 2], spans[i, 3]))
        for lo, hi in ranges:
            for p0 in range(lo, hi, KC):
                _red_unit(a, i * m * p + p0, p, 0, m, b, i * n * p + p0, p, 0, n, min(KC, hi - p0), 1, c, i * m * n,
                          1 if add or not first else 0, bp, ae, ct)
                first = False
        if first and not add:  # no step at all
            c[i * m * n:(i + 1) * m * n] = 0


@njit(**_JIT)
def _red_finish(gy3, x3, gw2, nthreads, fws, iws):  # pragma: no cover
    """gw2 += the partial sums of slots 1 .. nthreads-1."""
    m, n = gw2.shape
    out = gw2.reshape(-1)
    for slot in range(1, nthreads):
        _, _, _, part = _red_views(m, n, nthreads, fws, slot)
        for j in range(m * n):
            out[j] += part[j]
