"""The ``numba`` backend's depthwise kernels with channels in a vector's lanes: the forward
(``depthwise-lanes``, also each stride phase of an input gradient), a strided input gradient's
phases together and the weight gradient. One output channel per input channel (``groups == C_in ==
C_out``), any kernel, stride, dilation and padding, AVX-512, float32 (``numba_jit._lanes_fit``,
``_lanes_grad_input_fit`` and ``_lanes_grad_weight_fit`` say where).

The other depthwise paths (``_numba_depthwise``) run their vectors along a plane's rows: on the small
planes of a network's last stages (7x7, 14x14) most lanes of a tap's run read padding or fall on a
row's thrown-away columns, and each tap is a pass over the accumulator in memory. Here a task is
16 channels of one image, laid out as oneDNN's blocked layouts are (``nChw16c``): each pixel one
vector of the 16 channels. Its input planes are transposed into that layout (16 x 16 blocks in
registers, ``_to_lanes``) with zero columns on either side, so that every tap of a row is a
vector multiply-add with no mask; a row of outputs is summed in registers, up to ``MAX_OUTPUTS``
pixels at a time, over the kernel rows that read the image (the rows in the vertical padding are
skipped) and all its columns (``_taps``), then transposed back into y's planes (``_from_lanes``).
Numba's loop vectoriser made scalar code of that (a prototype took 4.4 ms where the packed path
took 3.0), so the pieces are written in LLVM IR, called through Numba intrinsics. The gradients'
tasks are described above their kernels, below.

Each output is its bias plus its taps in the kernel's order, one fused multiply-add each (a tap in
the horizontal padding adds w * 0): the same bits whatever the task's place, the thread count or
a chunk's extent. Two threads, float32, N=32, ConvNeXt's 7x7 C=768 7x7 1.28 ms against the
packed path's 4.13 and torch's 1.04 (2026-12-05, AMD EPYC Zen 4; more in
``numba_jit.LANES_MAX_BYTES``). Per-row tables of the kernel rows each output row reads (no integer
division in the tasks) measured no faster.
"""

import functools

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._numba_gemm import _declared
from ._numba_kernels import _JIT, _aligned, njit

LANES = 16  # channels a task, one vector of float32
MAX_OUTPUTS = 8  # output pixels (weight gradient: taps) summed at a time: 8 vector sums in registers
_I64, _I32 = ir.IntType(64), ir.IntType(32)


def _i64(k):
    return ir.Constant(_I64, k)


class _Vectors:
    """What the IR functions share, for floats of ``bits`` bits: the vector type of ``LANES`` of
    them, its pointers, fused multiply-add and masked loads and stores (``llvm.masked.*``)."""

    def __init__(self, module, bits):
        self.scalar = ir.FloatType() if bits == 32 else ir.DoubleType()
        self.vec = ir.VectorType(self.scalar, LANES)
        self.ptr, self.vptr = self.scalar.as_pointer(), self.vec.as_pointer()
        self.align = bits // 8
        self.mask = ir.VectorType(ir.IntType(1), LANES)
        suffix = f"v{LANES}f{bits}"
        self.fma = _declared(module, f"llvm.fma.{suffix}", self.vec, [self.vec] * 3)
        self.mload = _declared(module, f"llvm.masked.load.{suffix}.p0", self.vec,
                               [self.vptr, _I32, self.mask, self.vec])
        self.mstore = _declared(module, f"llvm.masked.store.{suffix}.p0", ir.VoidType(),
                                [self.vec, self.vptr, _I32, self.mask])
        self.zeros = ir.Constant(self.vec, [0.0] * LANES)
        self.lane = ir.Constant(ir.VectorType(_I64, LANES), list(range(LANES)))

    def at(self, b, base, offset):
        """A vector pointer to ``base[offset]``."""
        return b.bitcast(b.gep(base, [offset]), self.vptr)

    def load(self, b, base, offset, mask):
        return b.call(self.mload, [self.at(b, base, offset), ir.Constant(_I32, self.align), mask, self.zeros])

    def store(self, b, value, base, offset, mask):
        b.call(self.mstore, [value, self.at(b, base, offset), ir.Constant(_I32, self.align), mask])

    def below(self, b, n):
        """The lanes under ``n``."""
        iv = ir.VectorType(_I64, LANES)
        first = b.insert_element(ir.Constant(iv, ir.Undefined), n, ir.Constant(_I32, 0))
        spread = b.shuffle_vector(first, ir.Constant(iv, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES),
                                                                                       [0] * LANES))
        return b.icmp_signed("<", self.lane, spread)

    def all_if(self, b, cond):
        """Every lane where ``cond`` (an i1) holds, else none."""
        return b.select(cond, ir.Constant(self.mask, [1] * LANES), ir.Constant(self.mask, [0] * LANES))


def _transpose(b, rows):
    """The ``LANES`` x ``LANES`` transpose of ``rows`` (vector i holds row i): four rounds of
    interleaving vector i with vector i + 8, the perfect shuffle's network."""
    half = LANES // 2
    low = ir.Constant(ir.VectorType(_I32, LANES), [k for j in range(half) for k in (j, j + LANES)])
    high = ir.Constant(ir.VectorType(_I32, LANES), [k for j in range(half, LANES) for k in (j, j + LANES)])
    for _ in range(LANES.bit_length() - 1):
        rows = [b.shuffle_vector(rows[i], rows[i + half], order) for i in range(half) for order in (low, high)]
    return rows


def _function(module, name, args):
    """A new internal function of ``module`` (or None where it exists) and its entry's builder.
    Kept out of line: inlined, each caller's size grew and its loops slowed by a sixth."""
    if name in module.globals:
        return module.globals[name], None
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _to_lanes(module, bits):
    """``(x, src, plane, nc, npix, xt, table, p0)``: pixels p0 .. p0 + npix (at most ``LANES``) of
    ``nc`` planes of x, ``plane`` elements apart from ``x[src]``, to ``xt[table[p]]``, one vector of
    the channels a pixel (lanes past ``nc`` zero)."""
    v = _Vectors(module, bits)
    fn, b = _function(module, f"fastconv_dw_to_lanes_f{bits}",
                      [v.ptr, _I64, _I64, _I64, _I64, v.ptr, _I64.as_pointer(), _I64])
    if b is None:
        return fn
    x, src, plane, nc, npix, xt, table, p0 = fn.args
    inside = v.below(b, npix)
    rows = [v.load(b, x, b.add(b.add(src, b.mul(_i64(c), plane)), p0),
                   b.and_(inside, v.all_if(b, b.icmp_signed("<", _i64(c), nc)))) for c in range(LANES)]
    for q, column in enumerate(_transpose(b, rows)):
        where = b.load(b.gep(table, [b.add(p0, _i64(q))]))
        v.store(b, column, xt, where, v.all_if(b, b.icmp_signed("<", _i64(q), npix)))
    b.ret_void()
    return fn


def _from_lanes(module, bits):
    """``(acc, p0, npix, y, dst, plane, nc)``: the vectors of pixels p0 .. p0 + npix of ``acc``
    (``acc[p * LANES]``) to the ``nc`` planes of y, ``plane`` elements apart from ``y[dst]``."""
    v = _Vectors(module, bits)
    fn, b = _function(module, f"fastconv_dw_from_lanes_f{bits}", [v.ptr, _I64, _I64, v.ptr, _I64, _I64, _I64])
    if b is None:
        return fn
    acc, p0, npix, y, dst, plane, nc = fn.args
    rows = [v.load(b, acc, b.mul(b.add(p0, _i64(q)), _i64(LANES)), v.all_if(b, b.icmp_signed("<", _i64(q), npix)))
            for q in range(LANES)]
    inside = v.below(b, npix)
    for c, row in enumerate(_transpose(b, rows)):
        v.store(b, row, y, b.add(b.add(dst, b.mul(_i64(c), plane)), p0),
                b.and_(inside, v.all_if(b, b.icmp_signed("<", _i64(c), nc))))
    b.ret_void()
    return fn


def _two_loops(fn, b, start, n_outer, n_inner, outer, body):
    """Vector sums carried in registers through two nested loops built at ``b`` (a function's
    entry): ``outer(b, k)`` gives the values an outer step ``k < n_outer`` computes once, ``body(b,
    values, t, sums)`` the new sums of inner step ``t < n_inner``. Returns ``(b, sums)`` after both
    loops (``start`` where either count is zero)."""
    entry = b.block
    row, step, row_end, done = (fn.append_basic_block(n) for n in ("outer", "inner", "outer_end", "done"))
    b.cbranch(b.and_(b.icmp_signed(">", n_outer, _i64(0)), b.icmp_signed(">", n_inner, _i64(0))), row, done)
    b.position_at_end(row)
    k = b.phi(_I64)
    k.add_incoming(_i64(0), entry)
    at_row = [b.phi(s0.type) for s0 in start]
    for s, s0 in zip(at_row, start):
        s.add_incoming(s0, entry)
    values = outer(b, k)
    b.branch(step)
    b.position_at_end(step)
    t = b.phi(_I64)
    t.add_incoming(_i64(0), row)
    sums = [b.phi(s0.type) for s0 in start]
    for s, s0 in zip(sums, at_row):
        s.add_incoming(s0, row)
    new = body(b, values, t, sums)
    t_next = b.add(t, _i64(1))
    t.add_incoming(t_next, step)
    for s, s1 in zip(sums, new):
        s.add_incoming(s1, step)
    b.cbranch(b.icmp_signed("<", t_next, n_inner), step, row_end)
    b.position_at_end(row_end)
    k_next = b.add(k, _i64(1))
    k.add_incoming(k_next, row_end)
    for s, s1 in zip(at_row, new):
        s.add_incoming(s1, row_end)
    b.cbranch(b.icmp_signed("<", k_next, n_outer), row, done)
    b.position_at_end(done)
    ends = []
    for s0, s1 in zip(start, new):
        end = b.phi(s0.type)
        end.add_incoming(s0, entry)
        end.add_incoming(s1, row_end)
        ends.append(end)
    return b, ends


def _taps(module, bits, r):
    """``(acc, ai, astep, w, wo, wrow, wcol, x, xi, nkh, kw, xrow, xstep, ostep, bias, bo)``: ``r``
    output pixels' vectors ``acc[ai + j*astep]`` = ``bias[bo:]`` + the sum over kernel rows k < nkh
    and columns t < kw of ``w[wo + k*wrow + t*wcol]`` times ``x[xi + k*xrow + t*xstep + j*ostep]``,
    in that order, the sums in registers."""
    v = _Vectors(module, bits)
    fn, b = _function(module, f"fastconv_dw_taps{r}_f{bits}",
                      [v.ptr, _I64, _I64, v.ptr, _I64, _I64, _I64, v.ptr] + [_I64] * 6 + [v.ptr, _I64])
    if b is None:
        return fn
    acc, ai, astep, w, wo, wrow, wcol, x, xi, nkh, kw, xrow, xstep, ostep, bias, bo = fn.args
    start = b.load(v.at(b, bias, bo), align=v.align)

    def body(b, rows, t, sums):  # one weight, r inputs
        wv = b.load(v.at(b, w, b.add(rows[0], b.mul(t, wcol))), align=v.align)
        xt = b.add(rows[1], b.mul(t, xstep))
        return [b.call(v.fma, [wv, b.load(v.at(b, x, b.add(xt, b.mul(_i64(j), ostep))), align=v.align), sums[j]])
                for j in range(r)]

    b, ends = _two_loops(fn, b, [start] * r, nkh, kw,
                         lambda b, k: (b.add(wo, b.mul(k, wrow)), b.add(xi, b.mul(k, xrow))), body)
    for j, end in enumerate(ends):
        b.store(end, v.at(b, acc, b.add(ai, b.mul(_i64(j), astep))), align=v.align)
    b.ret_void()
    return fn


def _tap_sums(module, bits, t_count):
    """``(sums, si, g, gi, x, xi, tapstep, npix, ostep, nrows, grow, xrow)``: ``t_count`` taps'
    vectors ``sums[si + t*LANES]`` += the sum over rows q < nrows and pixels j < npix of
    ``g[gi + q*grow + j*LANES]`` times ``x[xi + q*xrow + j*ostep + t*tapstep]``, in that order,
    the sums in registers: the weight gradient's (gy's vectors times the input's)."""
    v = _Vectors(module, bits)
    fn, b = _function(module, f"fastconv_dw_tap_sums{t_count}_f{bits}",
                      [v.ptr, _I64, v.ptr, _I64, v.ptr] + [_I64] * 7)
    if b is None:
        return fn
    sums, si, g, gi, x, xi, tapstep, npix, ostep, nrows, grow, xrow = fn.args
    at = [v.at(b, sums, b.add(si, _i64(t * LANES))) for t in range(t_count)]

    def body(b, rows, j, acc):  # one of gy's vectors, t_count inputs
        gv = b.load(v.at(b, g, b.add(rows[0], b.mul(j, _i64(LANES)))), align=v.align)
        xj = b.add(rows[1], b.mul(j, ostep))
        return [b.call(v.fma, [gv, b.load(v.at(b, x, b.add(xj, b.mul(_i64(t), tapstep))), align=v.align), acc[t]])
                for t in range(t_count)]

    b, ends = _two_loops(fn, b, [b.load(p, align=v.align) for p in at], nrows, npix,
                         lambda b, q: (b.add(gi, b.mul(q, grow)), b.add(xi, b.mul(q, xrow))), body)
    for p, end in zip(at, ends):
        b.store(end, p, align=v.align)
    b.ret_void()
    return fn


def _call(build, arrays):
    """The codegen of an intrinsic calling the function ``build(module, bits)``: the arguments at
    ``arrays`` 1-D arrays, passed as pointers to their data (floats of the first one's width)."""
    def codegen(context, builder, signature, args):
        values = [context.make_array(signature.args[i])(context, builder, a).data if i in arrays else a
                  for i, a in enumerate(args)]
        builder.call(build(builder.module, signature.args[arrays[0]].dtype.bitwidth), values)
        return context.get_dummy_value()
    return codegen


@intrinsic
def _to_lanes_call(typingctx, x, src, plane, nc, npix, xt, table, p0):
    """``_to_lanes`` on 1-D arrays x, xt (one float dtype) and table (int64)."""
    return types.void(x, *[types.intp] * 4, xt, table, types.intp), _call(_to_lanes, (0, 5, 6))


@intrinsic
def _from_lanes_call(typingctx, acc, p0, npix, y, dst, plane, nc):
    """``_from_lanes`` on 1-D arrays acc and y."""
    return types.void(acc, types.intp, types.intp, y, *[types.intp] * 3), _call(_from_lanes, (0, 3))


def _counted(build):
    """``build(module, bits, count)``'s functions for counts 1 .. ``MAX_OUTPUTS`` behind one: its
    first argument the count, a switch to the function of that count (inlined into its caller)."""
    def function(module, bits):
        name = f"{build.__name__}_counted_f{bits}"
        if name in module.globals:
            return module.globals[name]
        targets = [build(module, bits, count) for count in range(1, MAX_OUTPUTS + 1)]
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_I64, *targets[0].function_type.args]), name=name)
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        entry = ir.IRBuilder(fn.append_basic_block("entry"))
        none = fn.append_basic_block("none")
        ir.IRBuilder(none).ret_void()
        switch = entry.switch(fn.args[0], none)
        for count, target in enumerate(targets, 1):
            case = ir.IRBuilder(fn.append_basic_block(f"count{count}"))
            case.call(target, fn.args[1:])
            case.ret_void()
            switch.add_case(_i64(count), case.block)
        return fn
    return function


@intrinsic
def _taps_call(typingctx, r, acc, ai, astep, w, wo, wrow, wcol, x, xi, nkh, kw, xrow, xstep, ostep, bias, bo):
    """``_taps`` for ``r`` (1 .. ``MAX_OUTPUTS``) outputs."""
    return (types.void(types.intp, acc, types.intp, types.intp, w, types.intp, types.intp, types.intp, x,
                       *[types.intp] * 6, bias, types.intp), _call(_counted(_taps), (1, 4, 8, 15)))


@intrinsic
def _tap_sums_call(typingctx, t, sums, si, g, gi, x, xi, tapstep, npix, ostep, nrows, grow, xrow):
    """``_tap_sums`` for ``t`` (1 .. ``MAX_OUTPUTS``) taps."""
    return (types.void(types.intp, sums, types.intp, g, types.intp, x, *[types.intp] * 7),
            _call(_counted(_tap_sums), (1, 3, 5)))


def row_width(ow, kw, sw, dil_w) -> int:
    """Columns of a task's transposed input: those its outputs' taps read, from column ``-pl``."""
    return (ow - 1) * sw + (kw - 1) * dil_w + 1


_row_width = njit(inline="always", **_JIT)(row_width)


def packed_head(blocks, nt):
    """Elements of ``fws`` before the slots of the forward and the input gradient: the packed weight
    of ``blocks`` blocks of ``nt`` taps, then the bias (``_pack``)."""
    return _aligned(blocks * nt * LANES) + _aligned(blocks * LANES)


_packed_head = njit(inline="always", **_JIT)(packed_head)  # the same, inlined in compiled code


@njit(inline="always", **_JIT)
def _packed_views(fws, blocks, nt):  # pragma: no cover
    """``(weight, bias)``: the packed weight and bias at the start of ``fws`` (``packed_head``)."""
    b0 = _aligned(blocks * nt * LANES)
    return fws[:blocks * nt * LANES], fws[b0:b0 + blocks * LANES]


def slot_sizes(rows, wp, pixels):
    """``(planes, sums)``: the elements of a slot of the forward or the input gradient: ``rows``
    transposed rows ``wp`` pixels wide (and a last vector, where the pixels no tap reads go) and
    the sums of ``pixels`` outputs, ``LANES`` values a pixel, each part aligned."""
    return _aligned(rows * wp * LANES + LANES), _aligned(pixels * LANES)


_slot_sizes = njit(inline="always", **_JIT)(slot_sizes)  # the same, inlined in compiled code


@njit(inline="always", **_JIT)
def _slot_views(fws, blocks, nt, rows, wp, pixels, slot):  # pragma: no cover
    """``(planes, sums)``: slot ``slot``'s transposed planes and sums (``slot_sizes``), past the
    packed weight and bias (``packed_head``)."""
    xsize, asize = _slot_sizes(rows, wp, pixels)
    base = _packed_head(blocks, nt) + slot * (xsize + asize)
    return fws[base:base + xsize], fws[base + xsize:base + xsize + asize]


def scratch(n, c, ih, iw, kh, kw, oh, ow, sw, dil_w, nthreads):
    """``(floats, ints)``: the workspaces' elements for ``nthreads`` slots: the packed weight and
    bias, then each slot's transposed input (and a last vector the pixels no tap reads go to) and
    sums; the int64 table of where each input pixel goes."""
    per_slot = sum(slot_sizes(ih, row_width(ow, kw, sw, dil_w), oh * ow))
    return packed_head(-(-c // LANES), kh * kw) + nthreads * per_slot, ih * iw + LANES


def slot_bytes(ih, kw, oh, ow, sw, dil_w, itemsize) -> int:
    """Bytes of one slot's scratch (``scratch``): what a task's input and sums take."""
    return (ih * row_width(ow, kw, sw, dil_w) + oh * ow) * LANES * itemsize


@njit(**_JIT)
def _pack(w, bias, fws):  # pragma: no cover
    """The weight as ``[block, tap, lane]`` at the start of ``fws`` (lanes past C zero), then the
    bias alike (empty: zeros, as ``numba_jit._no_bias``)."""
    c, _, kh, kw = w.shape
    blocks = (c + LANES - 1) // LANES
    nt = kh * kw
    wt, bt = _packed_views(fws, blocks, nt)
    for cb in range(blocks):
        for lane in range(LANES):
            ch = cb * LANES + lane
            bt[cb * LANES + lane] = bias[ch] if ch < bias.shape[0] else 0
            for t in range(nt):
                wt[(cb * nt + t) * LANES + lane] = w[ch, 0, t // kw, t % kw] if ch < c else 0


@njit(**_JIT)
def _table(ih, iw, pl, wp, iws):  # pragma: no cover
    """``iws[p]``: where input pixel p goes in a task's transposed input of rows ``wp`` wide whose
    first column is the input's ``-pl``; the pixels outside go to the vector after the rows."""
    dump = ih * wp * LANES
    for r in range(ih):
        for q in range(iw):
            col = q + pl
            iws[r * iw + q] = (r * wp + col) * LANES if 0 <= col < wp else dump
    for p in range(ih * iw, ih * iw + LANES):
        iws[p] = dump


@njit(inline="always", **_JIT)
def _tasks(n, c, slot, nslots):  # pragma: no cover
    """``(blocks, t0, t1)``: the blocks of ``LANES`` channels and slot ``slot``'s range of the tasks
    (image, block), images outer."""
    blocks = (c + LANES - 1) // LANES
    return blocks, n * blocks * slot // nslots, n * blocks * (slot + 1) // nslots


@njit(inline="always", **_JIT)
def _in(af, src, plane, nc, dst, table):  # pragma: no cover
    """``nc`` planes of ``plane`` pixels from ``af[src]`` into ``dst``'s vectors (``table``)."""
    for p0 in range(0, plane, LANES):
        _to_lanes_call(af, src, plane, nc, min(LANES, plane - p0), dst, table, p0)


@njit(inline="always", **_JIT)
def _out(acc, plane, af, dst, nc):  # pragma: no cover
    """``acc``'s vectors of ``plane`` pixels out to ``nc`` planes from ``af[dst]``."""
    for p0 in range(0, plane, LANES):
        _from_lanes_call(acc, p0, min(LANES, plane - p0), af, dst, plane, nc)


@njit(**_JIT)
def _prepare(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, nslots, fws, iws):  # pragma: no cover
    """What every slot reads: the packed weight and bias, the table of the input's pixels."""
    _pack(w, bias, fws)
    _table(x.shape[2], x.shape[3], pl, _row_width(y.shape[3], w.shape[3], sw, dil_w), iws)


@njit(**_JIT)
def _part(x, w, bias, y, sh, sw, pt, pl, dil_h, dil_w, nslots, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nslots``: a contiguous range of the tasks (image, block of ``LANES``
    channels), each transposed in, summed a row of outputs at a time and transposed out."""
    n, c, ih, iw = x.shape
    kh, kw = w.shape[2], w.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    blocks, t0, t1 = _tasks(n, c, slot, nslots)
    if t0 >= t1:
        return
    nt = kh * kw
    wp = _row_width(ow, kw, sw, dil_w)
    wt, bt = _packed_views(fws, blocks, nt)
    xt, acc = _slot_views(fws, blocks, nt, ih, wp, oh * ow, slot)
    xt[:] = 0  # the columns no input pixel goes to: the padding (never written after this)
    xf, yf = x.reshape(-1), y.reshape(-1)
    hw, ohw = ih * iw, oh * ow
    chunks = (ow + MAX_OUTPUTS - 1) // MAX_OUTPUTS
    for task in range(t0, t1):
        bn, cb = task // blocks, task % blocks
        nc = min(LANES, c - cb * LANES)
        src = (bn * c + cb * LANES) * hw
        _in(xf, src, hw, nc, xt, iws)
        wo = cb * nt * LANES
        for r in range(oh):
            top = pt - r * sh  # the kernel rows that read the image: k0 .. k1
            k0 = (top + dil_h - 1) // dil_h if top > 0 else 0
            k1 = min(kh, (ih - 1 + top) // dil_h + 1) if ih - 1 + top >= 0 else 0
            i0 = r * sh + k0 * dil_h - pt
            o = 0
            for q in range(chunks):  # the row's outputs in near-equal runs
                run = (ow - o) // (chunks - q)
                _taps_call(run, acc, (r * ow + o) * LANES, LANES, wt, wo + k0 * kw * LANES, kw * LANES, LANES, xt,
                           (i0 * wp + o * sw) * LANES, max(0, k1 - k0), kw, dil_h * wp * LANES, dil_w * LANES,
                           sw * LANES, bt, cb * LANES)
                o += run
        dst = (bn * c + cb * LANES) * ohw
        _out(acc, ohw, yf, dst, nc)


# ---------------------------------------------------------------------------- input gradient
#
# At a stride, the input gradient's phases (``Geometry.stride_phases``: each a stride-1 forward of gy
# by some of the taps, flipped) run in one task per image and block of channels: gy transposed in
# once, every phase's outputs summed into the whole plane of gx's vectors, transposed out once into
# gx. Run phase by phase, each phase transposed gy again, wrote a scratch plane, and the phases were
# put in place after (the same sums: each output is its phase's taps in its order, from zero).

PHASE_FIELDS = 9  # per phase: ry, rx, rows, cols, taps down, taps across, pad top, pad left, first tap


@functools.lru_cache(maxsize=64)
def grad_input_plan(geom):
    """``(phases, pl, wp)`` of the strided depthwise input gradient on ``geom`` (2-D, undilated):
    the phases' table (``PHASE_FIELDS`` int64 each, the first tap the offset of the kernel's tap
    the phase's first flipped tap is), gy's first column in a task's transposed rows (``-pl``) and
    their width ``wp``. Kept between calls (asked twice a call): read-only by use."""
    phases = geom.stride_phases()
    pl = max(0, *(p.pad[1] for p in phases))
    wp = max(geom.ow + pl, *(p.size[1] + p.taps[1] - 1 - p.pad[1] + pl for p in phases))
    table = [(p.offset[0], p.offset[1], p.size[0], p.size[1], p.taps[0], p.taps[1], p.pad[0], p.pad[1],
              ((p.first[0] + (p.taps[0] - 1) * geom.sh) * geom.kw + p.first[1] + (p.taps[1] - 1) * geom.sw) * LANES)
             for p in phases]
    return np.array(table, np.int64).reshape(-1, PHASE_FIELDS), pl, wp


def grad_input_scratch(c, oh, ow, ih, iw, kh, kw, wp, nphases, nthreads):
    """``(floats, ints)`` of ``_gi_part`` for ``nthreads`` slots: the packed weight and a zero bias,
    each slot's transposed gy (rows ``wp`` wide, and a last vector) and gx plane; gy's table."""
    per_slot = sum(slot_sizes(oh, wp, ih * iw))
    return packed_head(-(-c // LANES), kh * kw) + nthreads * per_slot, oh * ow + LANES + nphases * PHASE_FIELDS


def grad_input_slot_bytes(oh, wp, ih, iw, itemsize) -> int:
    """Bytes of one slot's scratch (``grad_input_scratch``)."""
    return (oh * wp + ih * iw) * LANES * itemsize


@njit(**_JIT)
def _gi_prepare(gy, w, gx, phases, pl, wp, sh, sw, nslots, fws, iws):  # pragma: no cover
    """What every slot reads: the packed weight, gy's table, then the phases' table."""
    _pack(w, fws[:0], fws)
    oh, ow = gy.shape[2], gy.shape[3]
    _table(oh, ow, pl, wp, iws)
    at = oh * ow + LANES
    for p in range(phases.shape[0]):
        for f in range(PHASE_FIELDS):
            iws[at + p * PHASE_FIELDS + f] = phases[p, f]


@njit(**_JIT)
def _gi_part(gy, w, gx, phases, pl, wp, sh, sw, nslots, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nslots`` of the strided input gradient (``grad_input_plan``): tasks
    (image, block of ``LANES`` channels), each gy's planes transposed in, every phase's rows summed
    into gx's plane of vectors, which is transposed out."""
    n, c, oh, ow = gy.shape
    ih, iw = gx.shape[2], gx.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    blocks, t0, t1 = _tasks(n, c, slot, nslots)
    if t0 >= t1:
        return
    nt = kh * kw
    wt, zero = _packed_views(fws, blocks, nt)  # the bias zero (``_gi_prepare``)
    xt, acc = _slot_views(fws, blocks, nt, oh, wp, ih * iw, slot)
    xt[:] = 0  # the padding columns
    gyf, gxf = gy.reshape(-1), gx.reshape(-1)
    hw, ihw = oh * ow, ih * iw
    at = oh * ow + LANES
    nphase = phases.shape[0]
    covered = 0
    for p in range(nphase):
        covered += iws[at + p * PHASE_FIELDS + 2] * iws[at + p * PHASE_FIELDS + 3]
    for task in range(t0, t1):
        bn, cb = task // blocks, task % blocks
        nc = min(LANES, c - cb * LANES)
        src = (bn * c + cb * LANES) * hw
        _in(gyf, src, hw, nc, xt, iws)
        if covered < ihw:  # inputs no tap reaches: zero gradient
            acc[:] = 0
        for p in range(nphase):
            f = at + p * PHASE_FIELDS
            ry, rx, rows, cols = iws[f], iws[f + 1], iws[f + 2], iws[f + 3]
            m, mw, ptp, plp, first = iws[f + 4], iws[f + 5], iws[f + 6], iws[f + 7], iws[f + 8]
            runs = (cols + MAX_OUTPUTS - 1) // MAX_OUTPUTS
            for r in range(rows):
                k0 = max(0, ptp - r)
                k1 = min(m, oh + ptp - r)
                g0 = r + k0 - ptp  # gy's row under the first tap that reads it
                o = 0
                for q in range(runs):
                    run = (cols - o) // (runs - q)
                    _taps_call(run, acc, ((ry + r * sh) * iw + rx + o * sw) * LANES, sw * LANES, wt,
                               cb * nt * LANES + first - k0 * sh * kw * LANES, -sh * kw * LANES, -sw * LANES, xt,
                               (g0 * wp + o - plp + pl) * LANES, max(0, k1 - k0), mw, wp * LANES, LANES, LANES,
                               zero, 0)
                    o += run
        dst = (bn * c + cb * LANES) * ihw
        _out(acc, ihw, gxf, dst, nc)


# ---------------------------------------------------------------------------- weight gradient
#
# A slot takes a range of the blocks of ``LANES`` channels and, for each, every image in order:
# the image's input planes transposed in (as the forward's), gy's planes transposed in without
# padding, and each kernel row's taps summed over the output rows whose tap row reads the image,
# up to ``MAX_OUTPUTS`` taps' vectors in registers at a time (``_tap_sums``), into the image's own
# sums, which are then added to the taps' totals in the images' order: the same bits on any thread
# count. (One running sum over all the images' pixels had 4x the rows' path's error at N=32 C=64
# 56x56 7x7: relative RMS 5.7e-6 against 1.4e-6 and torch's 3.8e-7.)


def gw_slot_sizes(ih, wp, pixels, taps):
    """``(planes, gy, sums)``: the elements of a slot of the weight gradient: ``ih`` transposed
    rows ``wp`` wide and gy's ``pixels`` (each with a last vector), and the sums of ``taps`` taps
    (twice: the taps' totals and an image's), ``LANES`` values each, each part aligned."""
    return _aligned(ih * wp * LANES + LANES), _aligned(pixels * LANES + LANES), _aligned(taps * LANES)


_gw_slot_sizes = njit(inline="always", **_JIT)(gw_slot_sizes)  # the same, inlined in compiled code


def grad_weight_scratch(c, ih, iw, kh, kw, oh, ow, sw, dil_w, nthreads):
    """``(floats, ints)`` of ``_gw_part``: per slot a transposed input plane (rows as the
    forward's), gy's plane, the taps' sums and an image's; the tables of the input's and gy's pixels."""
    xsize, gsize, ssize = gw_slot_sizes(ih, row_width(ow, kw, sw, dil_w), oh * ow, kh * kw)
    return nthreads * (xsize + gsize + 2 * ssize), ih * iw + LANES + oh * ow + LANES


def grad_weight_slot_bytes(ih, kw, oh, ow, sw, dil_w, itemsize) -> int:
    """Bytes of one slot's scratch (``grad_weight_scratch``), less the taps' sums."""
    return (ih * row_width(ow, kw, sw, dil_w) + oh * ow) * LANES * itemsize


@njit(**_JIT)
def _gw_prepare(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, nslots, fws, iws):  # pragma: no cover
    """The tables every slot reads: the input's pixels (the forward's rows), then gy's (in order)."""
    ih, iw = x.shape[2], x.shape[3]
    oh, ow = gy.shape[2], gy.shape[3]
    _table(ih, iw, pl, _row_width(ow, gw.shape[3], sw, dil_w), iws)
    _table(oh, ow, 0, ow, iws[ih * iw + LANES:])


@njit(**_JIT)
def _gw_part(gy, x, gw, sh, sw, pt, pl, dil_h, dil_w, nslots, fws, iws, slot):  # pragma: no cover
    """Slot ``slot`` of ``nslots`` of gw (depthwise, one output channel an input channel): a range
    of the blocks of ``LANES`` channels, each over every image."""
    n, c, ih, iw = x.shape
    kh, kw = gw.shape[2], gw.shape[3]
    oh, ow = gy.shape[2], gy.shape[3]
    blocks = (c + LANES - 1) // LANES
    b0, b1 = blocks * slot // nslots, blocks * (slot + 1) // nslots
    if b0 >= b1:
        return
    wp = _row_width(ow, kw, sw, dil_w)
    xsize, gsize, ssize = _gw_slot_sizes(ih, wp, oh * ow, kh * kw)
    base = slot * (xsize + gsize + 2 * ssize)
    xt = fws[base:base + xsize]
    gt = fws[base + xsize:base + xsize + gsize]
    sums = fws[base + xsize + gsize:base + xsize + gsize + ssize]
    image = fws[base + xsize + gsize + ssize:base + xsize + gsize + 2 * ssize]
    xt[:] = 0  # the padding columns
    xf, gf = x.reshape(-1), gy.reshape(-1)
    hw, ohw = ih * iw, oh * ow
    gtable = iws[hw + LANES:]
    for cb in range(b0, b1):
        nc = min(LANES, c - cb * LANES)
        sums[:] = 0
        for bn in range(n):
            src = (bn * c + cb * LANES) * hw
            _in(xf, src, hw, nc, xt, iws)
            src = (bn * c + cb * LANES) * ohw
            _in(gf, src, ohw, nc, gt, gtable)
            image[:] = 0
            for ky in range(kh):
                top = pt - ky * dil_h  # output rows r whose tap row r*sh - top lies in the image
                r0 = (top + sh - 1) // sh if top > 0 else 0
                r1 = min(oh, (ih - 1 + top) // sh + 1) if ih - 1 + top >= 0 else 0
                if r1 <= r0:
                    continue
                t0 = 0
                while t0 < kw:
                    nt = min(MAX_OUTPUTS, kw - t0)
                    _tap_sums_call(nt, image, (ky * kw + t0) * LANES, gt, r0 * ow * LANES, xt,
                                   ((r0 * sh - top) * wp + t0 * dil_w) * LANES, dil_w * LANES, ow, sw * LANES,
                                   r1 - r0, ow * LANES, sh * wp * LANES)
                    t0 += nt
            for i in range(kh * kw * LANES):
                sums[i] += image[i]
        for lane in range(nc):
            for t in range(kh * kw):
                gw[cb * LANES + lane, 0, t // kw, t % kw] = sums[t * LANES + lane]
