"""Numba backend: direct convolution over a packed copy of the input, compiled, on fastconv's threads.

Each thread copies a band of input rows of one image (and group) at a time into a zero-padded
buffer split into stride phases, where every (input channel, ky, kx) term of the sum is one
contiguous run over whole output rows: 4 terms x 4 output channels per pass, 16 multiply-adds per
load and store of the accumulator. Forward and input gradient (a transposed convolution: per stride
phase, a stride-1 forward pass of gy with the flipped weight) split into (image, band, block of 4
output channels) tasks, the weight gradient (dot products of gy with the runs; small images
stacked) into blocks of 4 channels; each kernel runs one contiguous range of them (a slot) per
thread of fastconv's pool (``_run_parts``), a small call one serial kernel on the calling thread.
Depthwise layers have their own kernels (``_numba_depthwise``; on AVX-512, in float32, all three
passes with channels in a vector's lanes: ``_numba_depthwise_lanes``), and so do kernels one pixel wide over
long rows (``_numba_columns``: a 3-D temporal kernel's view, whose taps read the input where it
lies instead of a packed band of one row per output row), and so do 1x1 kernels on AVX-512 CPUs
(``_numba_gemm``: matrix products on register tiles), and so do, on AVX-512 or AVX2 with FMA
(``_numba_gemm.TILES``), the weight gradient of stride-1 layers with 32+ channels and the forward
and input gradient of stride-1 layers of few input (output) channels (``_numba_implicit``:
implicit matrix products on the same tiles). When numba is
set up, the pool's helper threads spin a while for the next call before they sleep (``_numba_spin``).
Extra memory: the packed weights and, per thread, the band (channels x ~1K elements; ~8K for the
weight gradient), 4 channels of gy and a small accumulator (the implicit product: gw's size and a
few padded images per thread), all carved from workspaces that each calling thread keeps between
calls, so that a warm call allocates nothing beyond its output.
Which of these kernels runs a forward call, or a stride phase of an input gradient, one function
names (``_forward_kernel``, of ``KERNELS``): the passes dispatch on it, and ``fastconv.dask``
carries the whole array's names into its chunks (``whole_choices``), as the kernels sum a pixel's
terms in different orders. The input gradient of strided and dilated convolutions, and of
non-finite weights, takes direct loops instead (padding by loop bounds). Loses to BLAS on many
channels over small images (7x7).
Numba's threading layer (set up below) no longer runs fastconv's kernels; it is still chosen
fork-safe for whatever else in the process uses it.
"""

import atexit
import contextlib
import ctypes
import functools
import logging
import math
import os
import sys
import threading
from collections import namedtuple

import numpy as np

try:
    import numba
except ImportError as exc:  # the registry then lists the backend as unavailable, with this reason
    raise ImportError("it needs Numba: pip install 'fastconv[numba]'") from exc

from .. import _cache, _threads
from .._workers import call_budget as _call_budget
from .._workers import kept, map_chunks, map_items, reserved, set_idle_spin
from ..geometry import taps_share
from . import _lift
from . import _numba_columns as _cols
from . import _numba_depthwise as _dw
from . import _numba_depthwise_lanes as _dwl
from . import _numba_gemm as _gemm
from . import _numba_images as _images
from . import _numba_implicit as _implicit
from . import _numba_kernels as _k
from . import _numba_patches as _patches
from . import _numba_pixels as _pixels
from . import _numba_spin as _spin
from ._lift import _is_view as _lift_view
from ._lift import as_2d, lifted
from ._padding_nan import all_finite as _all_finite
from ._padding_nan import not_finite as _not_finite
from ._padding_nan import padding_products

NAME = "numba"
_log = logging.getLogger("fastconv")


# -- threading layer: one that survives fork ------------------------------------------------------
#
# fastconv's kernels run on its own threads, but fastconv.threads / set_num_threads also set
# Numba's count (per calling thread), which starts Numba's threading layer. Numba's default on
# Linux wheels is GNU OpenMP, which kills a forked child on its first parallel call ("fork() called
# from a process already using GNU OpenMP") and hangs multiprocessing.Pool. Unless the user chose
# a layer (NUMBA_THREADING_LAYER or numba.config), fastconv asks Numba for its "forksafe" choice:
# TBB (the `numba` extra installs it where PyPI has wheels: x86_64 Linux and Windows, Intel macOS),
# else OpenMP where it is fork-safe (macOS), else the workqueue layer. Set at import, before
# anything starts the layer.

def _preload_pip_tbb():
    """pip's tbb wheel puts its library in <prefix>/lib (Windows: Library/bin), off the loader's
    search path, where Numba's CDLL("libtbb.so.12") never looks; loaded by its full path first,
    the name then resolves to it. Without the wheel (or on another system layout) nothing
    happens, and Numba looks for a system TBB as usual."""
    names = {"linux": ("lib", "libtbb.so.12"), "win32": ("Library/bin", "tbb12.dll"),
             "darwin": ("lib", "libtbb.12.dylib")}.get(sys.platform)
    if names is None:
        return
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = os.path.join(prefix, *names)
        if os.path.exists(path):
            with contextlib.suppress(OSError):
                ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            return


def _configure_threading_layer():
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", True):
        return  # started already: by the user's own numba code
    _preload_pip_tbb()  # also for a user who asked for tbb
    chosen = "NUMBA_THREADING_LAYER" in os.environ or "NUMBA_THREADING_LAYER_PRIORITY" in os.environ
    if not chosen and numba.config.THREADING_LAYER == "default":  # else the user's choice stands
        numba.config.THREADING_LAYER = "forksafe"


_configure_threading_layer()
# Started here, by the importing thread (normally the main one): TBB's fork handling shuts it down
# cleanly only from the thread that started it, not from a thread that later sets a count.
numba.get_num_threads()


def supports(geom, dtype, precision):
    """Every call: 1-D and 3-D run through the 2-D kernels (``_lift``), exact at any precision."""
    return None


def matrix_product(geom) -> bool:
    """Whether the call's passes run as matrix products on ``_numba_gemm``'s register tiles (a 1x1
    kernel, unpadded, one group, on a CPU with AVX-512; strided: of the pixels it reads): for
    ``"auto"``."""
    flat = as_2d(geom)
    return _gemm.applies(flat.kh, flat.kw, flat.is_padded, flat.groups, flat.c_in, flat.c_out)


def register_tiles(geom) -> bool:
    """Whether this CPU runs every kernel of numba's that has them on ``_numba_gemm``'s register
    tiles (AVX-512; with AVX2 the implicit forward and weight gradient and the strided patches do,
    not the 1x1, grouped and stride-1 patches kernels), whatever the call: for ``"auto"``, whose
    measurements of numba's kernels hold with them."""
    return _gemm.WIDE


def full_width_tiles(geom) -> bool:
    """Whether the register tiles run AVX-512 on full-width units (an Intel Xeon; not Zen 4, which
    runs each 512-bit operation as two 256-bit halves: ``_numba_gemm.NARROW``), where BLAS's
    kernels run them too: for ``"auto"``'s rows measured there."""
    return _gemm.FULL_WIDTH


def pixel_tiles(geom) -> bool:
    """Whether the call's forward runs on tiles of output pixels (``_numba_pixels``), in float32
    within the default budget: for ``"auto"``."""
    return whole_choices(geom, np.float32).forward == "pixels"


def images(geom) -> bool:
    """Whether the call's forward runs with the batch's images as the register tiles' columns
    (``_numba_images``), in float32 within the default budget: for ``"auto"``."""
    return whole_choices(geom, np.float32).forward == "images"


def images_input(geom) -> bool:
    """Whether the call's input gradient runs as a forward with the batch's images as the register
    tiles' columns (``_numba_images``; at unit stride), in float32 within the default budget: for
    ``"auto"``."""
    chosen = whole_choices(geom, np.float32)
    return not chosen.adjoint and any(kernel == "images" for _, kernel in chosen.phases)


def packed_forward(geom) -> bool:
    """Whether the call's forward runs on the packed loops (no other kernel takes it), in float32
    within the default budget: for ``"auto"``."""
    return whole_choices(geom, np.float32).forward == "packed"


def pixel_tiles_input(geom) -> bool:
    """Whether the call's input gradient runs as stride phases, one of them at least on tiles of
    output pixels (float32, the default budget): for ``"auto"``."""
    chosen = whole_choices(geom, np.float32)
    return not chosen.adjoint and _by_phases(as_2d(geom)) and any(kernel == "pixels" for _, kernel in chosen.phases)


def patch_rows(geom) -> bool:
    """Whether the call's forward runs on columns of patches with the threads splitting the output
    channels (``_numba_patches._row_blocks``: few output pixels), in float32 within the default
    budget: for ``"auto"``."""
    g = as_2d(geom)
    return (whole_choices(g, np.float32).forward == "patches"
            and len(_patches._row_blocks(g.n * g.oh * g.ow, g.c_out_g, _threads.call_threads())) > 1)


def patches(geom) -> bool:
    """Whether the call's forward runs on the register tiles over columns of patches
    (``_numba_patches``: strided layers of many channels, say): for ``"auto"``."""
    flat = as_2d(geom)
    return _patches.applies(flat.kh, flat.kw, flat.sh, flat.sw, flat.groups, flat.c_in, flat.c_out, flat.ow,
                           flat.dil_w)


def _at_stride(x, sh, sw, top=0, left=0, out_hw=None):
    """The pixels of ``x`` that a 1x1 kernel at strides ``sh, sw`` reads, from row ``top`` and
    column ``left`` on (an input gradient's cropped phase), ``out_hw`` of them (None: to the end),
    C-contiguous (a copy in this thread's workspace but where that is ``x``: a quarter of ``x``
    at stride 2): the operand of ``_numba_gemm``'s products, which then run as at unit stride."""
    view = x[:, :, top::sh, left::sw]
    if out_hw is not None:
        view = view[:, :, :out_hw[0], :out_hw[1]]
    if view.shape == x.shape:
        return x
    out = _scratch("strided", view.size, x.dtype)[:view.size].reshape(view.shape)
    np.copyto(out, view)
    return out


# -- compiling: in the background for auto, announced for explicit calls ------------------------
#
# Cold, the kernels of one dtype take seconds to compile (see warmup). ``ready`` lets "auto" run
# another backend meanwhile: its first call starts the compile on a daemon thread. A process that
# exits sooner stops it after the kernel it is on (each kernel finished is already on disk): the
# interpreter's exit tears down LLVM's global state under a thread still inside LLVM: a segfault at
# exit once (2026-12-03), and an abort ("Assertion `Val && "isa<> used on a null pointer"' failed")
# once (2026-12-04, two processes exiting while their compiles ran); rare: 76 exits timed to land
# mid-compile did not. An explicit backend="numba" call compiles what it needs itself, after one log message.

_ready: set[str] = set()  # dtype names whose packed kernels are compiled or loaded in this process
_compiling: dict[str, threading.Thread] = {}
_announced: set[str] = set()
_state = threading.Lock()


@functools.cache
def dtype_name(dtype) -> str:
    """``np.dtype(dtype).name``, which takes 1.6-2.2 us: four of them were a fifth of a small
    call's 30 us (single-r32-k3, ``backend="auto"``)."""
    return np.dtype(dtype).name


def ready(dtype) -> bool:
    """True when the kernels for ``dtype`` are compiled (or loaded from the cache) in this
    process. Otherwise starts compiling them on a background thread, once, and returns False at
    once, so that ``backend="auto"`` runs another backend instead of waiting."""
    name = dtype_name(dtype)
    if name in _ready:
        return True
    start_compile(_compile_in_background, name, "numba", _compiling, _state)
    return name in _ready


def start_compile(target, name, label, compiling, lock):
    """Start ``target(name)`` on a daemon thread, once per ``name`` (``compiling``: a backend's own
    dict of name -> thread, guarded by ``lock`` and cleared in a forked child), at the lowest
    priority; for the numba and winograd backends' ``ready``. ``target`` returns early once
    ``stopping()``; the process's exit waits for it (``_stop_compiles``)."""
    with lock:
        if name not in compiling and not _stop.is_set():
            compiling[name] = thread = threading.Thread(target=_at_lowest_priority, args=(target, name), daemon=True,
                                                        name=f"fastconv-{label}-compile-{name}")
            _compile_threads.append(thread)  # (list.append is atomic: the two backends' locks differ)
            thread.start()


_stop = threading.Event()  # set at exit: background compiles return after their current kernel
_compile_threads: list[threading.Thread] = []  # every backend's, for the exit to wait on
EXIT_WAIT_S = 120.0  # the most the exit waits for one compile thread (a cold step takes seconds)


def stopping() -> bool:
    """Whether the process is exiting: a background compile then returns at its next step."""
    return _stop.is_set()


def _stop_compiles():
    """At exit (atexit): ask the background compiles to stop and wait for each to finish the kernel
    it is on, so that none is inside LLVM when the interpreter tears it down."""
    _stop.set()
    for thread in list(_compile_threads):  # (atexit runs on the main thread, never a compile thread)
        thread.join(EXIT_WAIT_S)


atexit.register(_stop_compiles)


def _at_lowest_priority(target, name):
    # At the lowest priority (Linux sets it per thread): on a busy machine the caller's own work
    # keeps its speed and the compile waits (an im2col forward measured 2.5 ms idle, 4.7-4.8 ms
    # beside a normal-priority compile, 2.6 ms beside this one; ready after 14 s on an idle core,
    # 33-70 s while the caller kept both cores busy).
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    target(name)


def _compile_in_background(name):
    try:
        for _ in warmup_steps(np.dtype(name)):
            if stopping():
                return
    except Exception:  # noqa: BLE001 - a broken install: auto keeps to the other backends
        _log.warning("fastconv: compiling the numba kernels for %s failed; backend='auto' will not use "
                     "numba", name, exc_info=True)


def _announce(dtype):
    """Once per dtype, before an explicit call's kernels are compiled or loaded: say which."""
    name = dtype_name(dtype)
    if name in _ready or name in _announced:
        return
    _announced.add(name)
    _spin_when_idle()
    if _cached(dtype):
        _log.info("fastconv: loading the numba kernels for %s from %s", name, _cache.numba_dir())
    else:
        _log.warning("fastconv: compiling the numba kernels for %s on first use (seconds per pass; later "
                     "processes load them from %s; `fastconv warmup` compiles them ahead of time)",
                     name, _cache.numba_dir() if _cache.numba_enabled() else "nowhere: FASTCONV_NUMBA_CACHE=0")


def _cached(dtype) -> bool:
    """Whether the disk cache holds the forward kernel for ``dtype`` (so it loads, not compiles)."""
    file = getattr(getattr(_k._forward_part, "_cache", None), "_cache_file", None)
    try:
        index = file._load_index()
    except Exception:  # noqa: BLE001 - no cache, or a damaged one: it will be compiled
        return False
    want = numba.from_dtype(dtype)
    return any(getattr(key[0][0], "dtype", None) == want for key in index)  # key: (signature, ...)


def _before_fork():
    # A child forked while a kernel compiles would inherit Numba's compiler lock held (and LLVM
    # mid-way) by a thread it does not have: its first compile would hang. Fork waits instead.
    from numba.core.compiler_lock import global_compiler_lock

    global_compiler_lock.acquire()


def _after_fork_in_parent():
    from numba.core.compiler_lock import global_compiler_lock

    global_compiler_lock.release()


def _after_fork_in_child():
    global _state
    _after_fork_in_parent()
    _state = threading.Lock()  # a parent's thread may have held it
    _compiling.clear()  # its compile threads did not come along: ready() starts its own
    _compile_threads.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)


# Below this many multiply-adds a call runs on the calling thread alone: waking the worker threads
# costs 10 us on an idle machine and several ms on a busy one (measured on 2 shared cores), more
# than the whole single-r32-k3 case (0.2 M MACs, about 0.05 ms on one core).
SERIAL_MAX_MACS = 2_000_000


# each calling thread's compile_only flag, and the choices by size it runs under (``choosing_as``)
_local = _threads.thread_local(compile_only=False, choices=None)


def _scratch(name, n, dtype):
    """This calling thread's workspace ``name``: ``n`` elements of ``dtype`` starting on a 64-byte
    line, kept between calls (``_workers.kept``, uncapped: grown, never shrunk) so that a warm call
    allocates nothing. The kernels carve what they need from its start."""
    dtype = np.dtype(dtype)
    return kept(("numba", name, dtype), (n,), dtype, capped=False)


def _workspaces(dtype, sizes):
    """For ``_run_parts``: this thread's float (``dtype``) and int64 workspaces, of the element
    counts ``sizes(nthreads)`` gives for a kernel's slots; ``.nbytes(nthreads)`` says their bytes
    without making them."""
    def make(nthreads):
        nfloat, nint = sizes(nthreads)
        return _scratch("float", nfloat, dtype), _scratch("int", nint, np.int64) if nint else _NO_INTS

    def nbytes(nthreads):
        nfloat, nint = sizes(nthreads)
        return nfloat * np.dtype(dtype).itemsize + nint * 8
    make.nbytes = nbytes
    return make


def _packed_workspaces(sizer, x, w, out_hw, sh, sw, dil_h, dil_w, groups):
    """``_workspaces`` of a packed kernel, sized by ``sizer`` from the shapes it reads (``w``: the
    weight or its gradient, ``out_hw``: the output's height and width)."""
    return _workspaces(x.dtype, lambda nthreads: sizer(x.shape[0], *w.shape, *out_hw, sh, sw, dil_h, dil_w, groups,
                                                        nthreads))


def _no_workspaces(dtype):
    """For ``_run_parts``: a slot kernel that needs no scratch gets empty workspaces."""
    def make(nthreads):
        return _no_bias(dtype), _NO_INTS
    make.nbytes = lambda nthreads: 0
    return make


_NO_INTS = np.empty(0, np.int64)


def _run_parts(part, macs, *args, workspaces, prepare=None, serial=None, finish=None, pieces=1, budget=None):
    """Call ``part(*args, nslots, fws, iws, slot)`` for every slot, on fastconv's threads (the
    call's count, ``_threads.call_threads``; one for a small call), with the workspaces that
    ``workspaces(nslots)`` returns, after ``prepare(*args, nslots, fws, iws)`` (what every slot
    reads) and before ``finish(*args, nslots, fws, iws)`` (what joins several slots' results); a
    one-thread call runs ``serial(*args, 1, fws, iws)`` instead when given (one dispatch).
    ``nslots`` is the thread count times ``pieces``: with more slots than threads, a thread that
    another process slows takes fewer of them (the slots go to whichever thread is free).
    With ``budget`` (bytes), fewer threads run where the workspaces of every thread's slots would
    pass it (``_within``): the kernels that take whatever the others leave, which no chooser
    sized against the budget (the packed ones).
    The kernels are written as one slot of work each, compiled without Numba's parallel loops,
    which took two to three times as long to compile. Returns the int64 workspace (where slots may
    leave flags)."""
    nthreads, nslots = _slots(macs, pieces)
    if budget is not None:
        nthreads, nslots = _within(workspaces, nthreads, pieces, budget)
    fws, iws = workspaces(nslots)
    if _local.compile_only:  # warmup: compile, not run
        types = tuple(numba.typeof(a) for a in (*args, nslots, fws, iws))
        part.compile((*types, numba.typeof(0)))
        for fn in (prepare, serial, finish):
            if fn is not None:
                fn.compile(types)
        return iws
    if nthreads == 1:
        if serial is not None:
            serial(*args, 1, fws, iws)
        else:
            if prepare is not None:
                prepare(*args, 1, fws, iws)
            part(*args, 1, fws, iws, 0)
    else:
        if prepare is not None:
            prepare(*args, nslots, fws, iws)
        map_items([(slot,) for slot in range(nslots)], lambda slot, scratch: part(*args, nslots, fws, iws, slot),
                  nthreads, compiled=True)
    if finish is not None and nslots > 1:
        finish(*args, nslots, fws, iws)
    return iws


def _slots(macs, pieces=1):
    """``(threads, slots)`` of a kernel's call (``_run_parts``)."""
    nthreads = 1 if macs < SERIAL_MAX_MACS else _threads.call_threads()
    return nthreads, (nthreads * pieces if nthreads > 1 else 1)


# What a call of ``_run_parts`` allocates besides its workspaces (the items handed to the threads):
# 2.5-3.2 KB on one thread, 5.2-5.6 KB on two to four (tracemalloc, three packed forwards).
PARTS_BYTES = 8 * 2**10


def _budget(geom, item) -> int:
    """The memory budget of a call on ``geom`` that its kernels' workspaces may take: the call's
    (``_workers.call_budget``), less ``PARTS_BYTES``."""
    return max(0, _call_budget(geom, item) - PARTS_BYTES)


def _within(workspaces, nthreads, pieces, budget):
    """``(threads, slots)``: up to ``nthreads``, as many as have their slots' ``workspaces`` within
    ``budget`` bytes (``_budget``'s); one at least (a budget below one slot's scratch is exceeded by
    it, as im2col's smallest piece is)."""
    while nthreads > 1 and workspaces.nbytes(nthreads * pieces) > budget:
        nthreads -= 1
    return nthreads, (nthreads * pieces if nthreads > 1 else 1)


def _hyper(geom):
    return geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h, geom.dil_w, geom.groups


_NO_BIAS: dict = {}


def _no_bias(dtype):
    """An empty array of ``dtype``: the packed forward kernel's "no bias" (one per dtype, reused)."""
    if dtype not in _NO_BIAS:
        _NO_BIAS[dtype] = np.empty(0, dtype)
    return _NO_BIAS[dtype]


def _depthwise(groups, c_in_g) -> bool:
    """Whether ``_numba_depthwise`` runs a call of ``groups`` groups of ``c_in_g`` input channels
    each (a forward call's, or an input-gradient phase's: gy's): one, several groups.
    (One group of one input channel, e.g. MNIST's first layer, measured no faster there: the
    general kernel's 4 output channels per load pay off.)"""
    return groups > 1 and c_in_g == 1


def _zero_bias(n, dtype):
    """``n`` zeros in this thread's workspace: the bias of a call without one, for the kernels that
    always add one (it lives until the thread's next call)."""
    bias = _scratch("zeros", n, dtype)[:n]
    bias[:] = 0
    return bias


def _run_depthwise(x, w, y, bias, c, flat, budget):
    """``_dw._depthwise_part`` on the forward call ``c`` into the C-contiguous ``y``, on its
    ``flat`` path or its packed one; ``bias`` None: zeros. The kernel takes the flat path where
    the output keeps the input's width at stride 1 and the kernel is narrow (``_dw.takes_flat``):
    a chunk of an array whose call took the other path (``_forward_kernel``) runs over an output
    as wide as its input (flat) or one column wider (packed), of which it keeps ``y``'s columns.
    Its threads' scratch within ``budget`` bytes beside that wider output (``_run_parts``)."""
    width = y.shape[3]
    if flat != _dw.takes_flat(c.sh, c.sw, x.shape[3], width, y.shape[2], w.shape[2], w.shape[3], c.dil_w):
        width = x.shape[3] + (not flat)
    size = y.size // y.shape[3] * width
    out = y if width == y.shape[3] else _scratch("wide", size, y.dtype)[:size].reshape(*y.shape[:3], width)
    if bias is None:
        bias = _zero_bias(w.shape[0], x.dtype)
    _run_parts(_dw._depthwise_part, c.macs, x, w, bias, out, c.sh, c.sw, c.pt, c.pl, c.dil_h, c.dil_w,
               workspaces=_workspaces(x.dtype, lambda nthreads: _dw._dw_scratch(
                   x.shape, out.shape, w.shape[2], w.shape[3], c.sh, c.sw, c.pl, c.dil_h, c.dil_w, nthreads)),
               budget=budget - (out.nbytes if out is not y else 0))
    if out is not y:
        y[...] = out[..., :y.shape[3]]


# Where the depthwise forward (and a depthwise input gradient's phases) runs with channels in lanes
# (``_numba_depthwise_lanes``): AVX-512, float32, one output channel an input channel, a slot's
# scratch (a task's transposed planes) within LANES_MAX_BYTES. Two threads, float32, ms lanes /
# the rows' paths (2026-12-05, AMD EPYC Zen 4). Through ``fastconv bench``, 7 interleaved rounds,
# N=32: 7x7 C=768 7x7 1.28 / 4.13 (torch 1.04), C=384 14x14 2.14 / 4.82, 3x3 C=960 7x7 0.91 / 2.11,
# 5x5 C=480 14x14 2.11 / 3.22, C=240 28x28 3.76 / 6.88, 3x3/2 C=144 56x56 2.53 / 4.54, 3x3 C=192
# 28x28 1.82 / 1.76. In one process, the two in turn, medians of 9 rounds (bench runs of the
# 56x56 layers had swung 1.6x): N=32 3x3 C=144 56x56 (413 KiB a slot) 8.52 / 9.47, C=64 2.05 /
# 3.08, 7x7 C=96 10.43 / 15.36; N=16 3x3 C=32 112x112 (1.5 MiB) 2.09 / 3.07, 3x3/2 C=96 112x112
# 3.49 / 7.74; N=8 7x7 C=96 112x112 9.65 / 13.39, 3x3/2 C=32 224x224 (3.8 MiB) 3.20 / 5.80. Not
# measured past that.
LANES_MAX_BYTES = 4 * 2**20


def _lanes_applies(c) -> bool:
    """Whether the lanes kernel can run the depthwise call ``c`` (any extent of its layer)."""
    return _gemm.WIDE and c.item == 4 and c.ws[0] == c.xs[1]


def _lanes_slot_bytes(c) -> int:
    return _dwl.slot_bytes(c.xs[2], c.ws[3], c.ys[2], c.ys[3], c.sw, c.dil_w, c.item)


def _lanes_scratch_fits(c, budget) -> bool:
    nfloat, nint = _dwl.scratch(c.xs[0], c.xs[1], c.xs[2], c.xs[3], c.ws[2], c.ws[3], c.ys[2], c.ys[3], c.sw, c.dil_w,
                                _slots(c.macs)[1])
    return nfloat * c.item + nint * 8 <= budget


# The rows' flat path (``_dw.takes_flat``) stays where the kernel has at most this many taps: in one
# process, the two in turn, 7 rounds (2026-12-05, Zen 4), ms lanes / flat, forward: 1-D N=8 C=512
# 4000 3 taps 8.39 / 7.65 (dilated 8: 7.96 / 7.51), N=16 C=256 512 0.55 / 0.45, N=32 C=128 784 0.87 /
# 0.69; the weight gradient 1.04-1.10x but 0.95 (784); from 5 taps the lanes: 5 taps 0.87-0.94x,
# 7 taps 0.70-0.86x, 15 taps 0.41-0.56x, Conformer's 31 (N=16 C=256 512) 1.69 / 7.71.
LANES_FLAT_MAX_TAPS = 3


def _flat_and_narrow(sh, sw, iw, ow, oh, kh, kw, dil_w) -> bool:
    """Whether the rows' flat path keeps a depthwise call (``LANES_FLAT_MAX_TAPS``)."""
    return kh * kw <= LANES_FLAT_MAX_TAPS and _dw.takes_flat(sh, sw, iw, ow, oh, kh, kw, dil_w)


def _lanes_fit(c, budget) -> bool:
    """Whether the depthwise call ``c`` takes the lanes kernel (``LANES_MAX_BYTES``,
    ``LANES_FLAT_MAX_TAPS``)."""
    return (_lanes_applies(c) and _lanes_slot_bytes(c) <= LANES_MAX_BYTES and _lanes_scratch_fits(c, budget)
            and not _flat_and_narrow(c.sh, c.sw, c.xs[3], c.ys[3], c.ys[2], c.ws[2], c.ws[3], c.dil_w))


def _lanes_forward(x, w, bias, y, c):
    """The depthwise call ``c`` on ``_numba_depthwise_lanes`` into the C-contiguous ``y``."""
    bias = _no_bias(x.dtype) if bias is None else bias
    _run_parts(_dwl._part, c.macs, x, w, bias, y, c.sh, c.sw, c.pt, c.pl, c.dil_h, c.dil_w,
               workspaces=_workspaces(x.dtype, lambda nthreads: _dwl.scratch(
                   *x.shape, w.shape[2], w.shape[3], y.shape[2], y.shape[3], c.sw, c.dil_w, nthreads)),
               prepare=_dwl._prepare)


def _lanes_grad_input_fit(geom, item, budget, pinned) -> bool:
    """Whether the strided input gradient on ``geom`` runs its phases together with channels in
    lanes (``_dwl._gi_part``): a depthwise layer the lanes take, undilated, whose phases the whole
    array's call ran on the lanes (``pinned``) where a chunk's is asked."""
    if not (_gemm.WIDE and item == 4 and geom.groups == geom.c_in == geom.c_out and geom.dil_h == geom.dil_w == 1):
        return False
    if pinned is not None and any(kernel != "depthwise-lanes" for _, kernel in pinned):
        return False
    phases, pl, wp = _dwl.grad_input_plan(geom)
    if _dwl.grad_input_slot_bytes(geom.oh, wp, geom.ih, geom.iw, item) > LANES_MAX_BYTES:
        return False
    nfloat, nint = _dwl.grad_input_scratch(geom.c_in, geom.oh, geom.ow, geom.ih, geom.iw, geom.kh, geom.kw, wp,
                                           len(phases), _slots(geom.macs)[1])
    return nfloat * item + nint * 8 <= budget


def _lanes_grad_input(gy, w, gx, geom):
    """The strided depthwise input gradient into ``gx`` with channels in lanes, its phases together."""
    phases, pl, wp = _dwl.grad_input_plan(geom)
    _run_parts(_dwl._gi_part, geom.macs, gy, w, gx, phases, pl, wp, geom.sh, geom.sw,
               workspaces=_workspaces(gy.dtype, lambda nthreads: _dwl.grad_input_scratch(
                   geom.c_in, geom.oh, geom.ow, geom.ih, geom.iw, geom.kh, geom.kw, wp, len(phases), nthreads)),
               prepare=_dwl._gi_prepare)


def _lanes_grad_weight_fit(geom, item) -> bool:
    """Whether the weight gradient on ``geom`` runs with channels in lanes (``_dwl._gw_part``): a
    depthwise layer of more than one block of channels (the blocks are what the threads share;
    a line of the thread count's would make the bits depend on it) whose planes fit the lanes.
    float64 too (16 doubles a vector, two registers): in one process, the two in turn, 5 rounds
    (2026-12-05, Zen 4), ms lanes / the rows' path, N=32: 7x7 C=768 7x7 3.91 / 18.10, C=384 14x14
    10.84 / 22.49, 3x3 C=144 56x56 15.50 / 18.69, C=960 7x7 2.20 / 3.20; N=16 3x3/2 C=96 112x112
    13.22 / 14.87. (Its forward was mixed, 0.52-1.12x: float32 only.)"""
    if not (_gemm.WIDE and item in (4, 8) and geom.groups == geom.c_in == geom.c_out and geom.c_in > _dwl.LANES):
        return False
    if _flat_and_narrow(geom.sh, geom.sw, geom.iw, geom.ow, geom.oh, geom.kh, geom.kw, geom.dil_w):
        return False
    if _dwl.grad_weight_slot_bytes(geom.ih, geom.kw, geom.oh, geom.ow, geom.sw, geom.dil_w, item) > LANES_MAX_BYTES:
        return False
    nfloat, nint = _dwl.grad_weight_scratch(geom.c_in, geom.ih, geom.iw, geom.kh, geom.kw, geom.oh, geom.ow, geom.sw,
                                            geom.dil_w, _slots(geom.macs)[1])
    return nfloat * item + nint * 8 <= _budget(geom, item)


def _lanes_grad_weight(gy, x, gw, geom) -> bool:
    """The depthwise weight gradient into ``gw`` with channels in lanes; False (gw left to the rows'
    path) where it came out inf or NaN: a non-finite gy times the padding's zeros is NaN where the
    reference has no product."""
    _run_parts(_dwl._gw_part, geom.macs, gy, x, gw, geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h, geom.dil_w,
               workspaces=_workspaces(x.dtype, lambda nthreads: _dwl.grad_weight_scratch(
                   geom.c_in, geom.ih, geom.iw, geom.kh, geom.kw, geom.oh, geom.ow, geom.sw, geom.dil_w, nthreads)),
               prepare=_dwl._gw_prepare)
    return _local.compile_only or _all_finite(gw)


# -- which kernel runs a forward call --------------------------------------------------------------
#
# A forward call, and each stride phase of an input gradient (a stride-1 forward of gy by the
# flipped weight), runs one of ``KERNELS``: the first that applies and whose scratch fits the
# memory budget, ``"packed"`` taking every call. Each sums an output element's terms in its own
# order, and some are chosen by the image's size as well (the columns kernels by the rows' length,
# the implicit forward and the patches by how well the rows fill their tiles), so a chunk of a
# larger array would pick its own: ``whole_choices`` names the whole array's kernels and a chunk
# run under ``choosing_as`` takes the same, for the same bits.

KERNELS = ("depthwise-lanes", "depthwise-flat", "depthwise-packed", "matrix", "grouped", "columns", "images",
           "implicit", "phases", "patches", "pixels", "packed")

# A forward call as the kernels see it: input, weight and output shapes, strides, padding (of a
# phase: negative where cropped), dilations, groups, bytes an element, multiply-adds, and its
# Geometry where it has one (the implicit forward reads it; an input gradient's phase at a stride
# has none), and whether it is an input gradient's phase.
_Call = namedtuple("_Call", "xs ws ys sh sw pt pl dil_h dil_w groups item macs geom phase", defaults=(False,))


def _forward_call(geom, item) -> _Call:
    """A forward call on ``geom`` (2-D), of ``item`` bytes an element."""
    return _Call(geom.x_shape, geom.w_shape, geom.y_shape, geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h,
                 geom.dil_w, geom.groups, item, geom.macs, geom)


def _phase_call(geom, phase, item, flipped) -> _Call:
    """The stride-1 forward of gy by the flipped, transposed taps of one phase of ``geom``'s input
    gradient (``Geometry.stride_phases``); ``flipped``: the whole input gradient as one forward
    (``Geometry.input_gradient_as_forward``, at unit stride), else None."""
    (m, mw), (pt, pl) = phase.taps, phase.pad
    return _Call(geom.y_shape, (geom.c_in, geom.c_out_g, m, mw), (geom.n, geom.c_in, *phase.size), 1, 1, pt, pl,
                 geom.dil_h, geom.dil_w, geom.groups, item, geom.macs // (geom.sh * geom.sw), flipped, True)


def _forward_kernel(c, budget, pinned=None) -> str:
    """The kernel of ``KERNELS`` that runs the forward call ``c`` (a ``_Call``) within ``budget``
    bytes. ``pinned``: the one the whole array's call runs (``choosing_as``): that one where it
    applies to this chunk whatever its size (and fits), else ``"packed"`` (a depthwise call: its
    own path)."""
    kh, kw = c.ws[2], c.ws[3]
    if _depthwise(c.groups, c.ws[1]):  # its kernel's flat or packed path, or the lanes
        flat = _dw.takes_flat(c.sh, c.sw, c.xs[3], c.ys[3], c.ys[2], kh, kw, c.dil_w)
        own = "depthwise-flat" if flat else "depthwise-packed"
        if pinned is None and _lanes_fit(c, budget):
            return "depthwise-lanes"
        if pinned == "depthwise-lanes":  # any extent of the same layer: the same sums
            return pinned if _lanes_applies(c) and _lanes_scratch_fits(c, budget) else own
        if pinned is None or pinned == own:
            return own
        # the whole array's path, over a wider output (``_run_depthwise``) where that fits
        width = c.xs[3] + (pinned == "depthwise-packed")
        fits = c.sh == c.sw == 1 and math.prod(c.ys[:3]) * width * c.item <= budget
        if pinned == "depthwise-flat":
            fits = fits and c.ys[3] <= c.xs[3] and c.pl <= (kw - 1) * c.dil_w
        return pinned if fits else own

    def takes(name, applies):  # applies(by_size): by_size None decides by the call's size
        return applies(None) if pinned is None else pinned == name and applies(True)

    if takes("matrix", lambda _: _is_matrix_product(c, budget)):
        return "matrix"
    if takes("grouped", lambda _: (_implicit.grouped_applies(c.sh, c.sw, c.dil_h, c.groups, c.xs[1], c.ws[0])
                                   and _grouped_scratch(c, _slots(c.macs)[1])[0] * c.item <= budget)):
        return "grouped"
    if takes("columns", lambda by_size: (_cols.applies(kw, c.sh, c.sw, c.pl, c.xs[3], c.ys[3], by_size)
                                         and _cut_bytes(c, c.xs[2], c.ys[3]) <= budget)):
        return "columns"
    if takes("images", lambda by_size: _images_fit(c, budget, by_size)):
        return "images"
    if c.geom is not None and takes("implicit", lambda by_size: (
            _implicit.forward_applies(c.geom, c.item, by_size)
            and _implicit_scratch(c.geom, c.item, _implicit.forward_wide(c.geom, c.item), budget) is not None)):
        return "implicit"
    if takes("phases", lambda by_size: _phases_fit(c, budget, by_size)):
        return "phases"
    if takes("patches", lambda by_size: (
            _patches.applies(kh, kw, c.sh, c.sw, c.groups, c.xs[1], c.ws[0], c.ys[3], c.dil_w, by_size)
            and _patches.forward_plan(c.xs, (c.groups, c.ws[0] // c.groups, *c.ws[1:]), c.ys, c.sh, c.sw, c.dil_h,
                                      c.dil_w, c.item, _slots(c.macs)[0], budget) is not None)):
        return "patches"
    if takes("pixels", lambda by_size: _pixels_fit(c, budget, by_size)):
        return "pixels"
    return "packed"


# Working out a call's kernel takes up to 12 us (scratch sizes against the budget), a tenth of a
# small call: each answer is kept, for the thread count too, which the scratch sizes read (``_slots``).
# The kernels' thresholds (module constants) are not in the key: ``forget_kernels`` after a change.

def forget_kernels():
    """Drop the kernels kept for calls (``_forward_plan``, ``_input_gradient_plan``): after a
    change to a kernel module's thresholds, as tests make."""
    _forward_plan.cache_clear()
    _input_gradient_plan.cache_clear()
    _images_weight.cache_clear()


@functools.lru_cache(maxsize=256)
def _forward_plan(geom, item, budget, pinned, nthreads):
    """``(call, kernel)`` of the forward on ``geom`` (``_forward_call``, ``_forward_kernel``)."""
    call = _forward_call(geom, item)
    return call, _forward_kernel(call, budget, pinned)


@functools.lru_cache(maxsize=256)
def _input_gradient_plan(geom, item, budget, pinned, nthreads):
    """``(phase, call, kernel)`` of each stride phase of the input gradient on ``geom``, each kernel
    within what ``_phases_held`` leaves of ``budget``; ``pinned``: the whole array's
    ``Choices.phases`` (``choosing_as``), or None."""
    flipped = geom.input_gradient_as_forward()
    kernels = dict(pinned or ())
    left = budget - _phases_held(geom, item, budget)
    plan = []
    for phase in geom.stride_phases():
        call = _phase_call(geom, phase, item, flipped)
        plan.append((phase, call, _forward_kernel(call, left, kernels.get(phase.first))))
    return tuple(plan)


def _phases_store(geom, item, budget, warmup=False) -> bool:
    """Whether the input gradient's stride phases are kept side by side and put in place together
    (``grad_input``): every phase reached, from ``INTERLEAVE_MIN_BYTES`` of gx (any size in
    ``warmup``, which compiles the kernel that puts them), within half the budget."""
    nbytes = math.prod(geom.x_shape) * item
    return (not geom.sh == geom.sw == 1 and geom.sh <= geom.kh and geom.sw <= geom.kw
            and (INTERLEAVE_MIN_BYTES <= nbytes or warmup) and 2 * nbytes <= budget)


def _phases_held(geom, item, budget) -> int:
    """Bytes that ``grad_input``'s phases hold beside their kernels' scratch: a phase's transposed
    taps (w's at most) and, at a stride, the phases' store (``_phases_store``), or one phase and
    NumPy's buffers for putting it in place (a strided copy: ``reserved``). (Not warmup's store:
    ``_input_gradient_plan``, which reads this, keeps its answers for later calls.)"""
    held = math.prod(geom.w_shape) * item
    if geom.sh == geom.sw == 1:
        return held
    if _phases_store(geom, item, budget):
        return held + math.prod(geom.x_shape) * item
    phase = geom.n * geom.c_in * -(-geom.ih // geom.sh) * -(-geom.iw // geom.sw)
    return held + (phase + reserved()) * item


def _is_matrix_product(c, budget) -> bool:
    """Whether the forward call ``c`` is one of ``_numba_gemm``'s products: a 1x1 kernel whose
    output is pixels it reads (unpadded; an input gradient's phase may be cropped), checked with
    integer arithmetic only after the kernel's size (every forward call asks), whose copy of
    those pixels (``_at_stride``, where they are not the whole input) fits ``budget`` bytes."""
    if c.ws[2] != 1 or c.ws[3] != 1 or c.pt > 0 or c.pl > 0:
        return False
    (oh, ow), (ih, iw) = c.ys[2:], c.xs[2:]
    if (oh - 1) * c.sh - c.pt >= ih or (ow - 1) * c.sw - c.pl >= iw:  # a read in the padding
        return False
    return _cut_bytes(c, oh, ow) <= budget and _gemm.applies(1, 1, False, c.groups, c.xs[1], c.ws[0])


def _cut_bytes(c, rows, cols) -> int:
    """Bytes of ``_at_stride``'s copy of ``rows x cols`` pixels of each of ``c``'s input planes:
    none where that is the whole input (which is read in place)."""
    return 0 if (rows, cols) == tuple(c.xs[2:]) else c.xs[0] * c.xs[1] * rows * cols * c.item


def _run_forward(kernel, x, w, bias, y, c, budget):
    """The forward call ``c`` on ``kernel`` (``_forward_kernel``'s) into the C-contiguous ``y``,
    adding ``bias`` (None: none) to each block while it is in cache: a 1x1 kernel's taps are one
    matrix product (``_numba_gemm``), a ``k x 1`` kernel's read the input where it lies
    (``_numba_columns``), the implicit forward, the patches and the pixel tiles multiply on the
    register tiles (``_numba_implicit``, ``_numba_patches``, ``_numba_pixels``), any other call runs
    on a packed copy. (The chooser
    checked each kernel's scratch against ``budget`` bytes; the patches check theirs again, as
    their module's interface.)"""
    if kernel == "depthwise-lanes":
        _lanes_forward(x, w, bias, y, c)
        return
    if kernel.startswith("depthwise"):
        _run_depthwise(x, w, y, bias, c, kernel == "depthwise-flat", budget)
        return
    if kernel == "implicit":
        _implicit_forward(x, w, bias, y, c.geom, budget)
        return
    if kernel == "phases" and _phases_forward(x, w, bias, y, c.geom, budget):
        return
    bias = _no_bias(x.dtype) if bias is None else bias
    n, c_in, c_out = x.shape[0], x.shape[1], w.shape[0]
    if kernel == "matrix":
        p = y.shape[2] * y.shape[3]
        xs = _at_stride(x, c.sh, c.sw, -c.pt, -c.pl, y.shape[2:])
        _run_parts(_gemm._cols_part, c.macs, w.reshape(c_out, c_in), xs.reshape(n, c_in, p), y.reshape(n, c_out, p),
                   bias, workspaces=_workspaces(x.dtype, lambda nthreads: _gemm.cols_scratch(
                       c_out, c_in, nthreads, x.itemsize, n * p, p)),
                   prepare=_gemm._cols_prepare, serial=_gemm._cols_serial, pieces=_gemm.PIECES,
                   budget=budget - _cut_bytes(c, *y.shape[2:]))
    elif kernel == "grouped":
        _grouped_forward(x, w, bias, y, c)
    elif kernel == "pixels":
        _pixels_forward(x, w, bias, y, c)
    elif kernel == "columns":  # (a cropped phase's input: the columns it reads, from -pl on)
        x = _at_stride(x, 1, 1, 0, -c.pl, (x.shape[2], y.shape[3]))
        _run_parts(_cols._columns_part, c.macs, x, w, bias, y, c.pt, c.dil_h, c.groups,
                   workspaces=_packed_workspaces(_cols._columns_scratch, x, w, y.shape[2:], c.sh, c.sw, c.dil_h,
                                                 c.dil_w, c.groups),
                   prepare=_cols._columns_prepare, budget=budget - _cut_bytes(c, c.xs[2], c.ys[3]))
    elif kernel == "images" and _images.forward(x, w, bias, y, c.sh, c.sw, c.pt, c.pl, c.dil_h, _slots(c.macs)[0],
                                                budget, _local.compile_only):
        pass
    elif kernel == "patches" and _patches.forward(
            x, w.reshape(c.groups, c_out // c.groups, *w.shape[1:]), bias, y, c.sh, c.sw, c.pt, c.pl, c.dil_h,
            c.dil_w, _slots(c.macs)[0], budget, _local.compile_only):
        pass
    else:
        _run_parts(_k._forward_part, c.macs, x, w, bias, y, c.sh, c.sw, c.pt, c.pl, c.dil_h, c.dil_w, c.groups,
                   workspaces=_packed_workspaces(_k._forward_scratch, x, w, y.shape[2:], c.sh, c.sw, c.dil_h, c.dil_w,
                                                 c.groups),
                   prepare=_k._forward_prepare, serial=_k._forward_serial, budget=budget)


# What the other kernels leave to the packed path (few output channels a group, small or strided
# images, dilations) runs on tiles of output pixels times output channels instead
# (``_numba_pixels``), and so do the input gradient's stride phases (``_pixels_fit`` says where).
# Two threads, float32, ms pixels / packed, 7 interleaved rounds, 2026-12-04, an Intel Xeon with
# AVX-512 (torch's in brackets), forward: N=64 192 -> 32 5x5 7x7 4.4 / 13.2 (2.6); N=16 192 -> 48
# 3x3 s2 7x7 0.40 / 1.38 (0.25); N=64 16 -> 64 3x3 s2 20x20 0.84 / 1.60 (0.55); N=64 256 -> 16
# 5x5 s2 28x28 15.3 / 27.0 (11.4); N=8 384 -> 16 3x3 20x20 2.3 / 3.0 (1.3). The limits below
# come from 120 random layers (gen seeds 31, 37, 41: forward and backward through the API, 5
# interleaved rounds): the losses were output channels that fill little of a panel (3 of 32:
# 1.3-1.8x), short reductions (8 input channels, 3x3: 1.07-1.14x) and long stride-1 rows (40-56
# pixels: 1.2-1.5x). Validation on 70 layers drawn after the limits (seed 43): forward 0.59x the
# time (geomean of the 12 calls that take it, 0.36-1.07), backward 0.90x (11, 0.67-1.04); float64
# on seed 31's: 0.63x (18, 0.42-1.16) and 0.86x (18, 0.59-1.55: 8 output channels over dilated
# rows of 1024, now excluded). Measured there first (as ``PHASES``).
# On AVX-512's half-width units (Zen 4, 2026-12-06, the same method: each pass of numba alone, ms
# pixels / before, 7 interleaved rounds, the 55 of 150 random layers (seed 31) whose kernels the
# tiles change): forward 0.70x the time (geomean of 12, 0.26-1.27: N=32 384 -> 16 3x3 s2 7x7 0.61 /
# 2.31 ms, N=16 512 -> 32 3x3 s2 10x10 0.45x, N=16 128 -> 16 7x7 10x10 0.59x), input gradient 0.92x
# (27, 0.61-1.07), weight gradient 0.90x (38, 0.49-1.29). Its losses, held out there: dilated rows
# past ``PIXELS_MAX_WIDTH`` (1-D k3 d2 N=2 384 -> 128 over 4096, 1.27x), one image (N=1 32 -> 512
# 17x17 7x7 in 8 groups, 1.20x) and the weight gradient past 32 output channels a group (96: 1.29x,
# 1.02x, 0.99x; 64: 0.92x, 1.06x, 0.99x; up to 32: 0.49-0.95x). On 150 more (seed 37): forward
# 0.71x (16, 0.28-1.35), input gradient 0.94x (31, 0.55-1.23), weight gradient 0.74x (20,
# 0.48-1.42). Its losses, held out there too: few input channels in the forward (3 -> 192 7x7 s2
# 1.35x, 16 -> 512 3x3 s2 1.31x; ``PIXELS_HALF_WIDTH_MIN_CHANNELS``), the input gradient's phases
# (1.08-1.23x on six layers, 56x56 strided ones and grouped ones among them, against 0.55-0.83x on
# others: no line found, so none of them) and the weight gradient of layers whose forward another
# kernel runs (the implicit forward's: 3x3 N=2 192 -> 32 28x28 1.20x, 7x7 N=2 48 -> 32 17x17
# 1.42x; grouped 1.31x): see ``PIXELS_GW_MAX_CHANNELS``.
# On 300 more (seed 43) the forward lost on 1-D calls at a stride (1.13-2.36x), on two images
# (1.16-1.26x) and in groups (1.12-1.23x). So on half-width units the tiles take the forward of
# 2-D calls (3-D ones lifted) in one group of 32+ input channels over 4+ images (over the four
# seeds, 39 such forwards: 0.26-1.03x, geomean 0.56 / 0.60 / 0.74 / 0.78 a seed). Checked on 300
# layers drawn after that (seed 47): the 18 forwards that moved 0.55-0.95x, geomean 0.79.
# Grouped forwards at a stride took the packed loops there (a strided 3x3 in two groups, N=32 64 ->
# 96 17x17, at 3.0x torch's forward, 40 random layers of seed 2026120661); on the tiles, numba's
# forward alone, time over torch's, packed / tiles, medians of 9 interleaved rounds in one process
# (2026-12-06, Zen 4): that layer 2.38 / 1.60; 3x3 s2 N=32 4 groups 384 -> 192 20x20 2.19 / 1.11,
# 192 -> 96 10x10 4.31 / 2.09; N=4 16 groups 768 -> 128 17x17 4.16 / 2.53; N=16 8 groups 128 ->
# 256 10x10 4.55 / 2.34; N=8 4 groups 64 -> 128 28x28 2.14 / 1.64; N=8 2 groups 96 -> 96 56x56 1.49 /
# 1.29; N=4 2 groups 32 -> 64 56x56 2.03 / 1.91; 5x5 s2 N=4 16 groups 256 -> 512 35x35 2.04 / 1.63,
# N=8 8 groups 128 -> 64 28x28 2.78 / 2.02; 7x7 s2 N=8 8 groups 192 -> 256 35x35 1.42 / 1.11, 4
# groups 32 -> 32 20x20 2.19 / 2.02 (12 of 12). At stride 1 grouped layers went either way (3x3 N=16
# 4 groups 64 -> 384 20x20 1.29 / 1.75, N=8 128 -> 256 17x17 1.67 / 1.68, N=4 2 groups 96 -> 32 14x14
# 2.04 / 2.10; but 5x5 N=16 16 groups 128 -> 768 7x7 2.93 / 1.80, 3x3 N=4 4 groups 384 -> 128 10x10
# 2.68 / 1.80): there they keep the packed loops.
PIXELS = _gemm.WIDE
PIXELS_MIN_FILL = 0.25  # output channels a group, of a panel's columns (two vectors)
PIXELS_MIN_STEPS = 100  # taps a pixel, input channels times kernel taps
PIXELS_MAX_WIDTH = 32  # output pixels a row at stride 1, undilated ...
PIXELS_WIDE_MIN_CHANNELS = 16  # ... or dilated with fewer output channels a group than this (full width only)
PIXELS_HALF_WIDTH = _gemm.NARROW  # whether the half-width units' limits hold: ...
PIXELS_HALF_WIDTH_MIN_CHANNELS = 32  # ... input channels (one group, 2-D, not an input gradient's phase) ...
PIXELS_HALF_WIDTH_MIN_IMAGES = 4  # ... and images
# The weight gradient on the same tiles (taps down, output channels across, pixels summed), where
# the other tiled kernels leave it to the packed path as well: backward through the API, ms with /
# without, 5 interleaved rounds, on the layers of seeds 31, 37 and 41 that take it: N=64 192 -> 32
# 3x3 s2 20x20 15.2 / 25.0, N=32 256 -> 32 7x7 2.90 / 4.82, 7x7 d2 N=32 24 -> 48 7x7 2.32 / 6.01,
# 3x3 d2 N=16 384 -> 48 14x14 10.3 / 16.3, N=64 256 -> 8 14x14 8.10 / 10.7; geomean 0.89 over 97
# layers, but from 128 output channels a group 0.99-2.2 (N=1 16 -> 512 28x28 5.32 / 2.42).
# Validation on seeds 43 and 47 (not used above): 0.85 over 57 layers (0.52-1.30), the losses all
# one image (1.07-1.30: one block of images, its taps split over the slots, each copying it), which
# the packed path keeps.
PIXELS_GW_MAX_CHANNELS = 96
# Not on half-width units (Zen 4, 2026-12-06): over five seeds of random layers it won on most
# layers whose forward the tiles run (0.40-0.95x) but lost, by no line found, on others: 512 -> 32
# 3x3 N=2 7x7 4.6x, N=4 17x17 1.40x, d2 N=8 10x10 1.25x; N=8 48 -> 32 5x5 7x7 1.20x; and where
# another kernel runs the forward, 3x3 N=2 192 -> 32 28x28 1.20x, 7x7 N=2 48 -> 32 17x17 1.42x.


def _pixels_extent(c):
    """The padded input's rows and columns that the forward call ``c`` reads (its top-left corner
    the padding's)."""
    (oh, ow), kh, kw = c.ys[2:], c.ws[2], c.ws[3]
    return (oh - 1) * c.sh + (kh - 1) * c.dil_h + 1, (ow - 1) * c.sw + (kw - 1) * c.dil_w + 1


def _pixels_scratch(c, nslots):
    """``_numba_pixels.scratch``'s sizes for the forward call ``c`` in ``nslots`` slots."""
    return _pixels.scratch(c.xs[1], c.ws[0], c.ws[2], c.ws[3], c.groups, *_pixels_extent(c), nslots, c.item)


# Small images, whose output pixels' kernels read much padding, run with the batch's images as the
# tiles' columns, one output pixel at a time over the taps that read the image (``_numba_images``):
# at unit stride where the taps that read padding are ``IMAGES_MIN_PADDING`` of them or more and the
# batch fills a vector of the tiles' columns, or at least half a vector where they are
# ``IMAGES_HALF_VECTOR_MIN_PADDING`` or more. Two threads, float32, numba's forward and input
# gradient alone, ms, the kernel before / this one, best of 11 calls in two pairs of processes, one
# setting each (2026-12-07, Zen 4), 36 random layers of 3x3, 5x5 and 7x7 "same" kernels over 2x2
# to 16x16 images, 32-512 channels a side, N=8-64 (the padding's share in brackets): forward /
# input gradient N=64 48 -> 512 5x5 4x4 (0.51) 6.46 / 3.59 and 30.0 / 5.77 (the packed loops);
# 384 -> 128 7x7 2x2 (0.92) 9.11 / 1.66, 11.5 / 6.42; N=16 384 -> 64 5x5 5x5 (0.42) 0.45x and
# 0.62x; N=16 64 -> 512 7x7 8x8 (0.38) 0.63x, 0.45x; N=64 64 -> 32 7x7 14x14 (0.23) 0.71x, 0.70x;
# N=32 192 -> 32 5x5 10x10 (0.23) 0.88x, 0.67x; 3x3 over 5x5 and 6x6 (0.21-0.25) 0.91-1.10x, 0.44-
# 1.08x. Of eight images (half a vector): 96 -> 256 7x7 4x4 (0.67) 0.80x, 0.46x, 384 -> 128 5x5
# 3x3 (0.64) 0.84x, 0.94x, but 384 -> 128 7x7 12x12 (0.27) 1.23x, 1.31x, 96 -> 256 7x7 14x14
# (0.23) 1.42x, 1.07x, 384 -> 384 5x5 6x6 (0.36) 1.18x, 1.12x, 3x3 (0.21) 1.58x, 1.31x. Checked on
# 36 more (another seed): where it ran, forward 0.23-1.15x, input gradient 0.15-1.10x; at 3x3 with
# 16-21 % of the taps on padding 0.81-1.12x and 0.81-1.10x (N=64 192 -> 64 8x8 1.09x both): so from
# 20 %, and past 256 output pixels an image not at all (5x5 and 7x7 over 16x16, 14-20 %: 0.92-1.01x).
# A vector here is 256 bits (``_numba_images.LANE_BITS``: 8 float32 images), since the tiles' columns
# run in those (a 512-bit one costs two on these cores): 8 images, which had run half a 512-bit
# vector, now take 0.58-0.70x the time (forward and input gradient, 8 layers) and pass the 20 %
# line (forward, 40 random layers of 4-40 images, this kernel against the others': 0.44-0.89x from
# 20 % of the taps on padding but 1.14x on N=8 384 -> 384 5x5 2x2; 0.90-1.28x at 9-16 %); 24 and 40
# images 0.70x and 0.87x. Of 4-7 images (half a 256-bit vector or less, 24 layers): 0.50-1.10x from
# half the taps on padding, 0.45-1.97x below it (most past 1).
IMAGES = _gemm.NARROW  # (measured there only: other CPUs keep the kernels of before)
IMAGES_MIN_PADDING = 0.2  # of the taps, over the output pixels
IMAGES_HALF_VECTOR_MIN_PADDING = 0.5
IMAGES_MAX_PIXELS = 256  # output pixels an image
IMAGES_MIN_CHANNELS = 32  # input channels


def _images_fit(c, budget, by_size=None) -> bool:
    """Whether the forward call ``c`` runs on the batch's images as the tiles' columns
    (``_numba_images``): at unit stride, in one group, undilated across, of ``IMAGES_MIN_CHANNELS``
    input channels, over images of at most ``IMAGES_MAX_PIXELS`` output pixels whose kernels read
    padding at ``IMAGES_MIN_PADDING`` of their taps with a batch of a vector of the tiles' columns
    or more (half of one: ``IMAGES_HALF_VECTOR_MIN_PADDING``), unless ``by_size`` (True: a chunk
    of a call that takes it, whatever its images); scratch within ``budget`` bytes."""
    (n, c_in, h, w), (k, _, kh, kw), (oh, ow) = c.xs, c.ws, c.ys[2:]
    if not IMAGES or 0 in c.ys or not _images.applies(c.groups, c.dil_w) or c_in < IMAGES_MIN_CHANNELS:
        return False
    if not by_size:
        lanes = _images.LANE_BITS // 8 // c.item
        padding = 1 - taps_share((h, w), (kh, kw), (oh, ow), (c.sh, c.sw), (c.dil_h, c.dil_w), (c.pt, c.pl))
        if (c.sh != 1 or c.sw != 1 or oh * ow > IMAGES_MAX_PIXELS or 2 * n < lanes
                or padding < (IMAGES_MIN_PADDING if n >= lanes else IMAGES_HALF_VECTOR_MIN_PADDING)):
            return False
    return _images.scratch_bytes(c.xs, k, kh, kw, oh, ow, c.item, _slots(c.macs)[0]) <= budget


@functools.lru_cache(maxsize=256)
def _images_weight(geom, item, budget, nthreads) -> bool:
    """Whether the weight gradient on ``geom`` runs per tap (``_numba_images.grad_weight``): at unit
    stride, where its forward's call fits the images as the tiles' columns (``_images_fit``; the
    answer kept, as the forward's kernel is: ``forget_kernels``). Not the forward's whole choice,
    whose scratch sizes of other kernels compile helpers that warmup leaves to the forward."""
    return geom.sh == geom.sw == 1 and _images_fit(_forward_call(geom, item), budget)


def _pixels_fit(c, budget, by_size=None) -> bool:
    """Whether the forward call ``c`` runs on ``_numba_pixels`` (``PIXELS``): a non-empty output,
    output channels a group to fill a quarter of a panel at least (``PIXELS_MIN_FILL``), taps
    enough a pixel (``PIXELS_MIN_STEPS``: a tile's products past its loads and stores), a stride,
    output rows of at most ``PIXELS_MAX_WIDTH`` (past it the packed path's rows are long enough)
    or a dilation with ``PIXELS_WIDE_MIN_CHANNELS`` output channels a group (full-width units
    only); on half-width units a 2-D forward (not an input gradient's phase) in one group, or in
    several at a stride, of ``PIXELS_HALF_WIDTH_MIN_CHANNELS`` input channels over
    ``PIXELS_HALF_WIDTH_MIN_IMAGES`` images (``by_size`` True: a chunk of a call that takes them,
    whatever its images); scratch within ``budget`` bytes."""
    kg = c.ws[0] // c.groups
    if (not PIXELS or 0 in c.ys or kg < PIXELS_MIN_FILL * _gemm.tile_cols(c.item)
            or math.prod(c.ws[1:]) < PIXELS_MIN_STEPS):
        return False
    if (c.sh == c.sw == 1 and c.ys[3] > PIXELS_MAX_WIDTH
            and (c.dil_h == c.dil_w == 1 or kg < PIXELS_WIDE_MIN_CHANNELS or PIXELS_HALF_WIDTH)):
        return False
    if PIXELS_HALF_WIDTH and (c.phase or (c.groups > 1 and c.sh == c.sw == 1) or c.xs[2] == c.ws[2] == 1  # ``PIXELS``
                         or c.xs[1] < PIXELS_HALF_WIDTH_MIN_CHANNELS
                         or c.xs[0] < PIXELS_HALF_WIDTH_MIN_IMAGES and not by_size):
        return False
    nfloat, nint = _pixels_scratch(c, _slots(c.macs, _gemm.PIECES)[1])
    return nfloat * c.item + nint * 8 <= budget


def _pixels_forward(x, w, bias, y, c):
    """The forward call ``c`` on ``_numba_pixels`` into ``y``."""
    hp, wp = _pixels_extent(c)
    _run_parts(_pixels.part, c.macs, x, w, bias, y.reshape(*y.shape[:2], -1), c.sh, c.sw, c.pt, c.pl, c.dil_h,
               c.dil_w, c.groups, hp, wp, workspaces=_workspaces(x.dtype, lambda nslots: _pixels_scratch(c, nslots)),
               prepare=_pixels.prepare, serial=_pixels.serial, pieces=_gemm.PIECES)


def _pixels_gw_scratch(geom, itemsize, nslots):
    """``_numba_pixels.gw_scratch``'s sizes for the weight gradient on ``geom`` in ``nslots`` slots."""
    c = _forward_call(geom, itemsize)
    return _pixels.gw_scratch(geom.n, geom.c_in, geom.c_out, geom.kh, geom.kw, geom.groups, *_pixels_extent(c),
                              geom.oh * geom.ow, nslots, itemsize)


def _pixels_gw_fit(geom, itemsize) -> bool:
    """Whether the weight gradient on ``geom`` runs on ``_numba_pixels.gw_part``: where the forward
    would run its tiles of output pixels (``_pixels_fit``), with up to ``PIXELS_GW_MAX_CHANNELS``
    output channels a group, two images or more, scratch within the budget; not on half-width
    units."""
    c = _forward_call(geom, itemsize)
    budget = _budget(geom, itemsize)
    if (PIXELS_HALF_WIDTH or geom.n < 2 or geom.c_out_g > PIXELS_GW_MAX_CHANNELS or not _pixels_fit(c, budget)
            or geom.is_depthwise):
        return False
    nfloat, nint = _pixels_gw_scratch(geom, itemsize, _slots(geom.macs, _gemm.RED_PIECES)[1])
    return nfloat * itemsize + nint * 8 <= budget


def _pixels_grad_weight(gy, x, gw, geom):
    """The weight gradient on ``_numba_pixels.gw_part`` into ``gw``."""
    hp, wp = _pixels_extent(_forward_call(geom, x.itemsize))
    _run_parts(_pixels.gw_part, geom.macs, gy, x, gw, geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h, geom.dil_w,
               geom.groups, hp, wp,
               workspaces=_workspaces(x.dtype, lambda nslots: _pixels_gw_scratch(geom, x.itemsize, nslots)),
               serial=_pixels.gw_serial, finish=_pixels.gw_finish, pieces=_gemm.RED_PIECES)


def _grouped_scratch(c, nslots):
    """``gfw_scratch``'s sizes for the grouped forward call ``c`` in ``nslots`` slots."""
    c_out, cg, kh, kw = c.ws
    hp, wp = c.ys[2] + kh - 1, c.ys[3] + (kw - 1) * c.dil_w  # the padded input (undilated rows)
    return _implicit.gfw_scratch(c.groups, c_out // c.groups, cg, kh * kw, hp * wp, (kw - 1) * c.dil_w, nslots,
                                 c.item)


def _grouped_forward(x, w, bias, y, c):
    """A stride-1 grouped forward of few channels a group (``_numba_implicit.gfw_part``) into y.
    Its scratch (``_grouped_scratch``, within the budget: ``_forward_kernel``): the packed weight
    (w's size) and per thread one group's padded input."""
    kh, kw = w.shape[2], w.shape[3]
    hp, wp = y.shape[2] + kh - 1, y.shape[3] + (kw - 1) * c.dil_w
    _run_parts(_implicit.gfw_part, c.macs, x, w, bias, y.reshape(*y.shape[:2], -1), c.groups, c.dil_w, c.pt, c.pl,
               wp, hp * wp, workspaces=_workspaces(x.dtype, lambda nslots: _grouped_scratch(c, nslots)),
               prepare=_implicit.gfw_prepare, serial=_implicit.gfw_serial)


def forward(x, w, geom, bias=None):
    """y of shape ``geom.y_shape``, dtype of ``x``, plus ``bias[co]`` when given: a 3-D depthwise
    call on its own kernel where it takes it (``_depthwise_volume``), the rest as 2-D calls (``_lift``)."""
    if geom.ndim == 3 and geom.is_depthwise and not _lift_view(geom):
        y = _depthwise_volume(x, w, geom, bias)
        if y is not None:
            return y
    return _lifted_forward(x, w, geom, bias)


# 3-D depthwise forwards (``_dw._dw3_part``) against the lift's grouped 2-D calls of kD channels a
# group (which also copy kD/sd times the input). Two threads, float32, ms, the lift / this kernel,
# medians of 9 interleaved rounds in one process (2026-12-06, an AMD Zen 4): 3x3x3 N=4 C=32 8x28x14
# 3.06 / 0.60, N=2 C=64 16x28x28 7.84 / 1.96, N=8 C=128 8x14x14 11.2 / 2.52, N=2 C=96 16x56x56 44.7 /
# 11.5, stride (1, 2, 2) N=4 C=192 8x28x28 25.8 / 4.21; 1x3x3 N=2 C=64 16x28x28 1.56 / 0.92; 5x5x5
# 13.3 / 5.2. (torch's, in `fastconv bench` the same day: 0.61, 3.95 and 4.32 ms on the first three.)
# Not kernels 1x1 in the plane at unit stride there, unpadded, which the lift runs as a view, no
# copy, on the 2-D depthwise paths (``_lift._is_view``): 3x1x1 N=2 C=64 16x56x56 2.09 / 2.43, N=8
# C=128 8x14x14 0.53 / 1.35; 5x1x1 1.56 / 1.67; 1x1x1 1.07 / 1.81.


def _depthwise_volume(x, w, geom, bias):
    """The 3-D depthwise forward on ``geom`` by ``_dw._dw3_part``, or None where it does not take
    the call: a weight with inf or NaN (whose products with the padding the lift's path mends), or
    scratch past the call's budget."""
    _announce(x.dtype)
    if not _all_finite(w):
        return None
    (sd, sh, sw), (dd, dh, dw) = geom.stride, geom.dilation
    kd, kh, kw = geom.kernel
    sizes = functools.partial(_dw._dw3_scratch, geom.x_shape, geom.y_shape, kd, kh, kw, sd, sh, sw, dd, dh, dw)
    nfloat, nint = sizes(_slots(geom.macs)[1])
    if nfloat * x.itemsize + nint * 8 > _budget(geom, x.itemsize):
        return None
    y = np.empty(geom.y_shape, dtype=x.dtype)
    if bias is None:
        bias = _zero_bias(w.shape[0], x.dtype)
    (pd, _), (pt, _), (pl, _) = geom.padding
    _run_parts(_dw._dw3_part, geom.macs, x, w, bias, y, sd, sh, sw, pd, pt, pl, dd, dh, dw,
               workspaces=_workspaces(x.dtype, sizes))
    return y


def _forward_planes(x, w, geom, bias=None):
    """``forward`` of a 2-D call (1-D and other 3-D calls run as such: ``_lifted_forward``)."""
    _announce(x.dtype)
    y = np.empty(geom.y_shape, dtype=x.dtype)
    budget = _budget(geom, x.itemsize)
    call, kernel = _forward_plan(geom, x.itemsize, budget, _pinned("forward"), _threads.call_threads())
    _run_forward(kernel, x, w, bias, y, call, budget)
    # inf * 0 only where a tap reads padding (nothing to mend where warmup compiled and ran nothing)
    if geom.is_padded and not _local.compile_only and _not_finite(w, y, geom.has_blind_tap):
        padding_products(y, ~np.isfinite(w), geom, forward=True)
    return y


@contextlib.contextmanager
def _whole_call(geom, dtype):
    """``lifted``'s ``pin``: whether a 3-D forward runs by runs of planes (``Choices.depth_runs``),
    as its caller's choices say (a ``fastconv.dask`` chunk: the whole array's) or the whole call's
    (``whole_choices``), and by runs, its 2-D calls on those choices' kernels."""
    pinned = _local.choices
    if pinned is not None:
        yield pinned.depth_runs
        return
    if not _lift.depth_runs(geom):  # (``whole_choices``' answer, without its 35 us a call)
        yield False
        return
    with choosing_as(whole_choices(geom, dtype)):
        yield True


_lifted_forward = lifted(_forward_planes, "forward", pin=_whole_call)


def _transposed_weight(w, geom):
    """Each group's weight with its kernel flipped and its channel axes swapped, contiguous (in
    this thread's workspace: it lives until the next call)."""
    c_out, c_in_g, kh, kw = w.shape
    wt = w.reshape(geom.groups, geom.c_out_g, c_in_g, kh, kw)[:, :, :, ::-1, ::-1]
    out = _scratch("flipped", w.size, w.dtype)[:w.size].reshape(geom.groups, c_in_g, geom.c_out_g, kh, kw)
    np.copyto(out, wt.transpose(0, 2, 1, 3, 4))
    return out.reshape(geom.c_in, geom.c_out_g, kh, kw)


def _adjoint(geom, item, budget, pinned=None) -> bool:
    """Whether a strided input gradient runs as the forward's adjoint on the register tiles
    (``_numba_patches.grad_input``: strided layers of many channels, where its scratch fits
    ``budget`` bytes). ``pinned``: the whole array's answer (``choosing_as``), which a chunk
    follows where its own scratch fits."""
    if geom.sh == geom.sw == 1 or not patches(geom) or pinned is False:
        return False
    return _patches.grad_input_plan(geom.y_shape, geom.w_shape, geom.x_shape, geom.sh, geom.sw, geom.dil_h,
                                    geom.dil_w, item, _slots(geom.macs)[0], budget) is not None


def _by_phases(geom) -> bool:
    """Whether the input gradient (of finite weights, not the adjoint's) runs as stride-1 forward
    calls, one per stride phase: at unit stride or dilation (else the direct loops)."""
    return geom.sh == geom.sw == 1 or geom.dil_h == geom.dil_w == 1


# The strided input gradient's phases put in place together (``_k._interleave_part``) from this
# many bytes of gx; below, NumPy's copy into each phase's strided view of gx, whose lines then stay
# in cache from one phase to the next. Two threads, float32, time together / one by one, 9
# interleaved rounds in one process (2026-12-04, Intel Xeon): depthwise 3x3 stride 2 N=32 C=128
# 56x56 (gx 51 MB) 0.49, N=8 C=96 112x112 0.56; grouped 3x3 stride 2 N=32 C=256 28x28 (26 MB) 0.70;
# 1-D k5 stride 2 N=64 C=16 4096 (17 MB) 0.81; a stride-3 depthwise layer (7 MB) 1.01, the stem
# 7x7 stride 2 (5 MB) 0.97; depthwise 5x5 stride 2 N=16 C=32 28x28 (1.6 MB) 1.21.
INTERLEAVE_MIN_BYTES = 8 * 2**20


@lifted
def grad_input(gy, w, geom):
    """Gradient with respect to the input, shaped like ``x``."""
    _announce(gy.dtype)
    gx = np.empty(geom.x_shape, dtype=gy.dtype)
    unit = geom.sh == geom.sw == 1
    budget = _budget(geom, gy.itemsize)
    # a strided layer of many channels: the forward's columns' adjoint, on the register tiles (any
    # dilation; it never multiplies padding, so inf and NaN weights give the direct loops' result)
    if (_adjoint(geom, gy.itemsize, budget, _pinned("adjoint"))
            and _patches.grad_input(gy, w, gx, geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h, geom.dil_w,
                                    _slots(geom.macs)[0], budget, _local.compile_only)):
        return gx
    if not _by_phases(geom) or not _all_finite(w):
        # Non-finite weights stay on the direct loops: the packed path's zero padding times inf
        # would give NaN where the reference has no product at all.
        _run_parts(_k._grad_input_part, geom.macs, gy, w, gx, *_hyper(geom), gy.dtype.type(0),
                   workspaces=_no_workspaces(gy.dtype))
        return gx
    # gx is a forward convolution of gy with the transposed weight, padded by (k-1)*dilation - p
    # (negative: cropped): at unit stride one, the implicit forward's where it takes it; with a
    # stride s, each of the s*s phases gx[..., ry::s, rx::s] is one, with stride 1 and the taps
    # ky = ry + pt (mod s) only (``Geometry.stride_phases``).
    # Only the phases that some tap reaches are computed (ky0 < kh), the others are zeros: a stride
    # of 2000 on a 3x3 kernel would otherwise loop over 4M empty phases (seconds per call).
    if geom.sh > geom.kh or geom.sw > geom.kw:
        gx[...] = 0
    # a strided phase is computed contiguous, then put in place: a kernel specialised for strided
    # outputs took 5 s more to compile. Every phase is reached where the kernel is as large as the
    # stride: then, from ``INTERLEAVE_MIN_BYTES`` of gx and where it takes at most half the memory
    # budget (the other half the phases' kernels', less what ``_phases_held`` counts; the default
    # budget is twice the input at least), they are kept side by side and put in place together
    # (``_k._interleave_part``, each line of gx written once), else one by one
    if not unit and _lanes_grad_input_fit(geom, gy.itemsize, budget, _pinned("phases")):
        _lanes_grad_input(gy, w, gx, geom)
        return gx
    store = (_scratch("phases", gx.size, gy.dtype) if _phases_store(geom, gy.itemsize, budget, _local.compile_only)
             else None)
    planes = geom.n * geom.c_in
    left = budget - _phases_held(geom, gy.itemsize, budget)  # (the plan's kernels' budget)
    for phase, call, kernel in _input_gradient_plan(geom, gy.itemsize, budget, _pinned("phases"),
                                                    _threads.call_threads()):
        (ky0, kx0), (ry, rx) = phase.first, phase.offset
        out = gx[:, :, ry::geom.sh, rx::geom.sw]
        if out.size == 0:
            continue
        wsub = w[:, :, ky0::geom.sh, kx0::geom.sw]
        if unit:
            dest = out
        elif store is not None:
            at = _k.phase_offset(planes, geom.ih, geom.iw, geom.sh, geom.sw, ry, rx)
            dest = store[at:at + out.size].reshape(out.shape)
        else:
            dest = _scratch("phase", out.size, gy.dtype)[:out.size].reshape(out.shape)
        # a 1x1 kernel's product reads w's transpose, a view that it packs as it reads it
        # (``_gemm._pack_a``): the copy, 2048 x 512 channels, took 2.3-3.0 ms on one thread, a
        # fifth of the input gradient's time; the other kernels read a contiguous copy
        wt = (wsub.reshape(geom.c_out, geom.c_in).T.reshape(geom.c_in, geom.c_out, 1, 1) if kernel == "matrix"
              else _transposed_weight(wsub, geom))
        _run_forward(kernel, gy, wt, None, dest, call, left)
        if store is None and dest is not out:
            out[...] = dest
    if store is not None:
        _run_parts(_k._interleave_part, gx.size, store, gx, geom.sh, geom.sw, workspaces=_no_workspaces(gy.dtype))
    return gx


@lifted
def grad_weight(gy, x, geom):
    """Gradient with respect to the weight, shaped like ``w``."""
    _announce(x.dtype)
    gw = np.empty(geom.w_shape, dtype=x.dtype)
    budget = _budget(geom, x.itemsize)
    if _lanes_grad_weight_fit(geom, x.itemsize) and _lanes_grad_weight(gy, x, gw, geom):
        pass  # channels in lanes
    elif _depthwise(geom.groups, geom.c_in_g):
        _run_parts(_dw._dwgw_part, geom.macs, gy, x, gw, geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h,
                   geom.dil_w, x.dtype.type(0),
                   workspaces=_workspaces(x.dtype, lambda nthreads: _dw._dwgw_scratch(
                       x.shape, gy.shape, geom.kh, geom.kw, geom.sh, geom.sw, geom.dil_h, geom.dil_w, nthreads)),
                   budget=budget)
    elif _gemm.applies(geom.kh, geom.kw, geom.is_padded, geom.groups, geom.c_in, geom.c_out):
        n, p = x.shape[0], geom.oh * geom.ow
        xs = _at_stride(x, geom.sh, geom.sw)
        _run_parts(_gemm._red_part, geom.macs, gy.reshape(n, geom.c_out, p), xs.reshape(n, geom.c_in, p),
                   gw.reshape(geom.c_out, geom.c_in),
                   workspaces=_workspaces(x.dtype, lambda nthreads: _gemm.red_scratch(geom.c_out, geom.c_in, nthreads,
                                                                                      x.itemsize)),
                   finish=_gemm._red_finish, pieces=_gemm.RED_PIECES,
                   budget=budget - (0 if xs is x else xs.nbytes))
    elif _implicit.grouped_gw_applies(geom) and _grouped_grad_weight(gy, x, gw, geom):
        pass  # done on the register tiles, a group at a time
    elif (_images_weight(geom, x.itemsize, budget, _threads.call_threads())
          and _images.grad_weight(gy, x, gw, geom.pt, geom.pl, geom.dil_h, geom.dil_w, _slots(geom.macs)[0], budget,
                                  _local.compile_only)):
        pass  # per tap, over the pixels whose tap reads the image
    elif _implicit.applies(geom) and _implicit_grad_weight(gy, x, gw, geom):
        pass  # done on the register tiles
    elif _cols.applies(geom.kw, geom.sh, geom.sw, geom.pl, geom.iw, geom.ow):
        _run_parts(_cols._columns_gw_part, geom.macs, gy, x, gw, geom.pt, geom.dil_h, geom.groups, x.dtype.type(0),
                   workspaces=_no_workspaces(x.dtype))
    elif patches(geom) and _patches.grad_weight(gy, x, gw, geom.sh, geom.sw, geom.pt, geom.pl, geom.dil_h, geom.dil_w,
                                                _slots(geom.macs)[0], budget, _local.compile_only):
        pass  # on the register tiles, over columns of patches (the columns kernels first, as forward)
    elif _pixels_gw_fit(geom, x.itemsize):
        _pixels_grad_weight(gy, x, gw, geom)
    else:
        _run_parts(_k._grad_weight_part, geom.macs, gy, x, gw, *_hyper(geom), x.dtype.type(0),
                   workspaces=_packed_workspaces(_k._gw_scratch, x, gw, (geom.oh, geom.ow), geom.sh, geom.sw,
                                                 geom.dil_h, geom.dil_w, geom.groups), budget=budget)
    # inf * 0 only where a tap reads padding (nothing to mend where warmup compiled and ran nothing)
    if geom.is_padded and not _local.compile_only and _not_finite(gy, gw, geom.has_blind_output):
        padding_products(gw, ~np.isfinite(gy), geom, forward=False)
    return gw


def _implicit_grad_weight(gy, x, gw, geom) -> bool:
    """gw as an implicit matrix product on the register tiles (``_numba_implicit``); False, gw
    unfinished, where its scratch would pass the memory budget or a value is inf or NaN (the packed
    kernels then take the call)."""
    nslots = _slots(geom.macs)[1]
    plan = _implicit.Plan(geom, x.itemsize, nslots)
    if plan.scratch(nslots)[0] * x.itemsize > _budget(geom, x.itemsize):
        return False
    flags = _run_parts(_implicit.gw_part, geom.macs, gy.reshape(*gy.shape[:2], -1), x, gw.reshape(geom.c_out, -1),
                       geom.kh, geom.kw, geom.dil_h, geom.dil_w, geom.pt, geom.pl, *plan.args(),
                       workspaces=_workspaces(x.dtype, plan.scratch))
    return _local.compile_only or not flags[:nslots].any()


def _grouped_grad_weight(gy, x, gw, geom) -> bool:
    """gw of a layer of few channels a group on the register tiles (``_numba_implicit.ggw_part``);
    False, gw unfinished, where its scratch would pass the memory budget or a value is inf or NaN
    (another kernel then takes the call)."""
    hp, wp = geom.padded_size
    nslots = _slots(geom.macs)[1]

    def sizes(nslots):
        return _implicit.ggw_scratch(geom.groups, geom.c_out // geom.groups, geom.c_in // geom.groups, geom.kh,
                                     geom.kw, geom.oh, wp, hp * wp, nslots, x.itemsize)

    if sizes(nslots)[0] * x.itemsize > _budget(geom, x.itemsize):
        return False
    flags = _run_parts(_implicit.ggw_part, geom.macs, gy.reshape(*gy.shape[:2], -1), x, gw.reshape(geom.c_out, -1),
                       geom.groups, geom.kh, geom.kw, geom.dil_h, geom.pt, geom.pl, wp, hp * wp,
                       workspaces=_workspaces(x.dtype, sizes))
    return _local.compile_only or not flags[:nslots].any()


# `fastconv bench --shape ... --backends numba,winograd,torch --pass both --repeat 11` (2 threads,
# float32, 2026-12-03, after the input gradient took the implicit forward), N=32 3x3 64 -> 64
# channels, time over torch's, forward and backward, numba against winograd: 7x7 1.65-1.76 /
# 1.29-1.57 against 1.97-2.39 / 1.77-1.79; 8x8 1.77 / 1.37 against 1.71 / 1.41; 9x9 1.68 / 1.44
# against 1.81 / 1.72; 10x10 1.57 / 1.30 against 1.50 / 1.35; 14x14 1.35 / 1.22 against 1.12 /
# 1.14 (winograd's transforms cost as much as its products on so few tiles a channel).
SMALL_IMAGE_PIXELS = 81  # output pixels per image up to which numba's implicit forward beats winograd


def small_images(geom) -> bool:
    """For ``"auto"``: whether both the forward and the input gradient of a float32 call at unit
    stride run on the implicit forward over images of at most ``SMALL_IMAGE_PIXELS`` output pixels
    (and so up to ``_numba_implicit.FW_WIDE_MAX_CHANNELS`` channels)."""
    return (math.prod(as_2d(geom).out_size) <= SMALL_IMAGE_PIXELS and implicit_forward(geom)
            and implicit_input_gradient(geom))


def implicit_forward(geom) -> bool:
    """For ``"auto"``: whether a float32 call's forward runs on the implicit forward."""
    return whole_choices(geom, np.float32).forward == "implicit"


def implicit_input_gradient(geom) -> bool:
    """For ``"auto"``: whether a float32 call's input gradient runs as one implicit forward (of gy
    by the flipped kernel, at unit stride)."""
    return dict(whole_choices(geom, np.float32).phases).get((0, 0)) == "implicit" and max(geom.stride) == 1


# -- the whole array's kernels, carried into its chunks --------------------------------------------
#
# ``fastconv.dask`` asks ``whole_choices`` on the whole array's geometry and runs each chunk under
# ``choosing_as``: a chunk cut to another size then runs the kernels the whole call runs (where
# its own scratch fits the budget), and the forward and the input gradient are the same bits.

# The whole call's kernels: the forward's (of ``KERNELS``), whether a strided input gradient
# runs as the adjoint (``_adjoint``), and the kernel of each of its stride phases, as
# ``(phase.first, kernel)`` pairs; and whether a 3-D forward runs by runs of planes that leave
# out the taps in the depth's padding (``_lift.depth_runs``), which a chunk's sums then follow.
Choices = namedtuple("Choices", "forward adjoint phases depth_runs", defaults=(False,))


def whole_choices(geom, dtype) -> Choices:
    """The kernels this backend runs the call ``geom`` (any axes) of ``dtype`` on, where it
    chooses among them by the image's size and the memory budget as well. Picklable (a chunk's
    task may run in another process)."""
    g = as_2d(geom)
    item = np.dtype(dtype).itemsize
    budget, threads = _budget(g, item), _threads.call_threads()
    phases = _input_gradient_plan(g, item, budget, None, threads) if _by_phases(g) else ()
    runs = geom.ndim == 3 and not _lift_view(geom) and _lift.depth_runs(geom)
    return Choices(_forward_plan(g, item, budget, None, threads)[1], _adjoint(g, item, budget),
                   tuple((phase.first, kernel) for phase, _, kernel in phases), runs)


@contextlib.contextmanager
def choosing_as(choices):
    """Calls on this thread run ``choices``'s kernels (``whole_choices``'s, or None: their own)."""
    saved, _local.choices = _local.choices, choices
    try:
        yield
    finally:
        _local.choices = saved


def _pinned(field):
    """The field ``field`` of the ``Choices`` this thread runs under (``choosing_as``); None: the
    call's own choice."""
    choices = _local.choices
    return None if choices is None else getattr(choices, field)


def _implicit_forward(x, w, bias, y, geom, budget, phase_taps=None):
    """y as an implicit matrix product on the register tiles (``_numba_implicit.fw_part``, by rows or
    by wide pixels), whose scratch ``_forward_kernel`` found within ``budget`` bytes; with
    ``phase_taps``, x's channels are stride phases, each with its own taps (``_phases_forward``)."""
    hp, wp = geom.padded_size
    wide = _implicit.forward_wide(geom, x.itemsize)
    need = _implicit_scratch(geom, x.itemsize, wide, budget)
    _run_parts(_implicit.fw_part, geom.macs, x, w, _no_bias(x.dtype) if bias is None else bias,
               y.reshape(*y.shape[:2], -1), geom.dil_h, geom.dil_w, geom.pt, geom.pl, wp, hp * wp, int(wide),
               phase_taps, workspaces=_workspaces(x.dtype, lambda _: need), prepare=_implicit.fw_prepare,
               serial=_implicit.fw_serial, pieces=_gemm.PIECES)


# A strided layer of few input channels (a network's first: 3 -> 64 channels, 7x7 at stride 2) runs
# on the packed kernels, whose sums live in memory. Its stride phases stacked as channels
# (``Geometry.stride_as_channels``: 7x7 at stride 2 over 3 channels is 4x4 at stride 1 over 12)
# run on the implicit forward's register tiles instead, at the price of a copy of the input and of
# the taps past the kernel's end (zeros). Two threads, float32, forward ms, phases / the packed
# kernels (/ im2col), medians of 5 runs interleaved in one process, 2026-12-04, an Intel Xeon with
# AVX-512. Taken: 7x7 s2 (64 taps for 49) N=8 3 -> 64 224x224 9.3 / 11.5 (/ 10.6), 3 -> 32 5.4 /
# 5.6, 3 -> 96 15.6 / 18.1, N=16 3 -> 64 112x112 4.9 / 5.3; 1-D k9 s2 N=16 1 -> 32 16000 0.79 /
# 1.09; 4x4 s4 3 -> 64 1.41 / 1.39. Left to the packed kernels: more taps wasted (5x5 s2, 36 for
# 25: 3 -> 64 5.9 / 6.0, 4 -> 48 2.1 / 2.0; 3x3 s2, 16 for 9: 1.3-1.9x the packed kernels' time),
# fewer output channels (7x7 s2 2 -> 24 0.32 / 0.31) and more stacked channels (5x5 s2 8 -> 64,
# 32 stacked, with the copy 4.0 / 3.8). Not measured on AVX2; on Zen 4, below (``PHASES_FEW``).
PHASES = _gemm.WIDE
PHASES_MAX_CHANNELS = 16  # stacked: input channels times the stride's phases
# On Zen 4's half-width units (``_gemm.NARROW``) the packed kernels ran those few stacked channels
# about as fast: two threads, float32, forward time phases / packed (a call a phase,
# ``PHASE_CALL_STEPS``), 7 interleaved rounds in one process (2026-12-07): 7x7 s2 3 -> 64 N=8
# 224x224 0.94, N=32 0.98, N=16 112x112 0.93, but N=2 1.13, 3 -> 32 1.09, 4 -> 64 1.07, 1-D k9
# s2 1.06. There only the many stacked channels below (``PHASES_MANY_TAPS``) take the phases, and
# only from PHASES_HALF_WIDTH_MIN_OUT_CHANNELS output channels, where numba's patches take the call
# otherwise; with fewer the packed kernels do, faster (11x11 s4 6 -> 32 1.19x, 6x6 s2 10 -> 48 1.07x).
PHASES_FEW = _gemm.FULL_WIDTH
PHASES_HALF_WIDTH_MIN_OUT_CHANNELS = 64
PHASES_MAX_WASTE = 4 / 3  # the stacked taps over the kernel's
PHASES_MIN_OUT_CHANNELS = 32
PHASES_THREAD_BYTES = 2**20  # of the stacked copy a thread at least, from which the copy is split
# In float32, where the stacked kernel keeps 3x3 taps or more, up to PHASES_MANY_TAPS_MAX_CHANNELS
# stacked channels: there the alternative is numba's patches, whose gather of each pixel's taps
# (an 11x11 window at stride 4: 363 values a pixel over 3 channels) costs what its products do, in
# float32 as in float64. Two threads, forward ms, the packed or patches kernels / phases, 9 rounds
# interleaved in one process (2026-12-05, Intel Xeon, AVX-512), float32: AlexNet's first layer N=16
# 3 -> 64 224x224 11x11 s4 p2 (48 stacked, 144 taps for 121) 38.9 / 17.4, 3 -> 96 unpadded 39.4 /
# 21.7, N=4 13.8 / 7.8; 12x12 s4 N=16 3 -> 64 38.1 / 17.1, 8 -> 64 112x112 (128 stacked) 26.2 /
# 14.0; 11x11 s4 N=8 6 -> 64 and 8 -> 64 112x112 (96, 128 stacked) 0.64-0.75x and 0.72x; 7x7 s2 N=8
# 16 -> 64 112x112 (64 stacked, 4x4 taps) 0.78-0.87x, 32 -> 64 56x56 (128) 0.82-0.84x; but 11x11
# s4 16 -> 64 (256 stacked) 1.20-1.24x. Not where the stacked kernel is 2x2 or 1x1 (the packed or
# pixels kernels run those: 8x8 s4 3 -> 64 1.55-1.64x, 7x7 s4 1.81x, 4x4 s4 3 -> 96 1.78x), nor
# in float64 (11x11 s4 N=16 3 -> 64 1.45x, 7x7 s2 32 -> 64 1.37x).
PHASES_MANY_TAPS = 9  # taps of the stacked kernel
PHASES_MANY_TAPS_MAX_CHANNELS = 128
# Each tile of the implicit forward runs the stacked kernel's steps (channels x taps) in one call
# of the tile; run as one call a phase instead, each over its own taps (``_phase_taps``), the taps
# past a phase's end are not multiplied, at the price of a call a phase, which costs about
# PHASE_CALL_STEPS steps (loading and storing the tile's sums). Two threads, float32, forward time
# a call a phase / one call, medians of 7 interleaved rounds in one process (Zen 4, 2026-12-07):
# 7x7 s2 N=8 3 -> 64 224x224 0.83 (147 steps for 192), N=32 0.85, 16 -> 64 112x112 0.79, 32 -> 64
# 56x56 0.81; (with the waste rule lifted) 5x5 s2 3 -> 64 0.84, 4 -> 48 0.83; 11x11 s4 (16
# phases) 8 -> 64 0.92, 6 -> 64 0.94, but 3 -> 64 1.01-1.06 (363 steps for 432) and 12x12 s4 (none
# past the kernel) 1.12: a call's cost fitted 3.5-7.8 steps. Measured on Zen 4's half-width units
# only, where a step takes twice as long as on full-width ones beside a call's fixed cost: not
# taken there (PHASE_OWN_TAPS).
PHASE_CALL_STEPS = 8
PHASE_OWN_TAPS = _gemm.NARROW


def _phases_fit(c, budget, by_size=None) -> bool:
    """Whether the forward call ``c`` runs as its stride phases stacked as channels (``"phases"``):
    a strided layer of one group, undilated, of at most ``PHASES_MAX_CHANNELS`` stacked channels
    (in float32 with ``PHASES_MANY_TAPS`` stacked taps, ``PHASES_MANY_TAPS_MAX_CHANNELS``),
    ``PHASES_MAX_WASTE`` taps and ``PHASES_MIN_OUT_CHANNELS`` output channels or more (on
    half-width units, ``PHASES_FEW``, more stacked channels than ``PHASES_MAX_CHANNELS`` only, and
    ``PHASES_HALF_WIDTH_MIN_OUT_CHANNELS`` output channels or more), whose stacked copy and
    implicit forward's scratch fit ``budget`` bytes; an image a thread at least (the implicit
    forward's slots take whole images: one image ran on one thread, N=1 3 -> 64 7x7 s2 224x224
    1.8x the packed kernels' time), unless ``by_size`` (a chunk of a call that took them:
    ``fastconv.dask``)."""
    if not PHASES or c.geom is None or by_size is None and c.xs[0] < _slots(c.macs)[0]:
        return False
    g = c.geom.stride_as_channels()
    least, most = (1 if PHASES_FEW else PHASES_MAX_CHANNELS + 1), PHASES_MAX_CHANNELS
    if g is not None and c.item == 4 and math.prod(g.kernel) >= PHASES_MANY_TAPS:
        most = PHASES_MANY_TAPS_MAX_CHANNELS
    if (g is None or not least <= g.c_in <= most
            or g.c_out < (PHASES_MIN_OUT_CHANNELS if PHASES_FEW else PHASES_HALF_WIDTH_MIN_OUT_CHANNELS)
            or math.prod(g.kernel) * math.prod(c.geom.stride) > PHASES_MAX_WASTE * math.prod(c.geom.kernel)):
        return False
    held = g.n * g.c_in * math.prod(g.in_size) * c.item
    return held < budget and _implicit_scratch(g, c.item, _implicit.forward_wide(g, c.item), budget - held) is not None


def _phase_taps(geom) -> np.ndarray | None:
    """``(taps down, taps across, taps of the phases before)`` of each stride phase of ``geom`` (in
    the stacked channels' order: the last column places each phase's block of the packed kernel)
    where the implicit forward pays to run each phase over its own taps (``PHASE_CALL_STEPS``,
    ``PHASE_OWN_TAPS``), else None (one call over the stacked kernel)."""
    (sh, sw), (th, tw) = geom.stride, geom.stride_as_channels().kernel
    taps = np.array([(-(-(geom.kh - r) // sh), -(-(geom.kw - q) // sw), 0) for r in range(sh) for q in range(sw)],
                    np.int64)
    per = taps[:, 0] * taps[:, 1]
    taps[1:, 2] = np.cumsum(per)[:-1]
    own = int(per.sum()) * geom.c_in + PHASE_CALL_STEPS * len(taps)
    pays = PHASE_OWN_TAPS and own < len(taps) * th * tw * geom.c_in + PHASE_CALL_STEPS
    return taps if pays else None


def _phases_forward(x, w, bias, y, geom, budget) -> bool:
    """y as the implicit forward of ``x``'s stride phases stacked as channels by the kernel's taps
    split the same way (``Geometry.stride_as_channels``); False, y untouched, where x or w holds
    inf or NaN: the split kernel's zero taps would multiply them into NaN where no product is."""
    if not (_all_finite(x) and _all_finite(w)):
        return False
    g = geom.stride_as_channels()
    (sh, sw), (th, tw), (hp, wp) = geom.stride, g.kernel, g.in_size
    n, c, ih, iw = x.shape
    # kept between calls (their zeros written afresh), as the winograd backend's arrays: fresh
    # pages each call would be zeroed by the kernel at their first touch
    xs = kept("numba-phases-x", (n, sh, sw, c, hp, wp), x.dtype)
    ws = kept("numba-phases-w", (w.shape[0], sh, sw, c, th, tw), w.dtype)
    ws.fill(0)
    for r in range(sh):
        for q in range(sw):
            taps = w[:, :, r::sh, q::sw]
            ws[:, r, q, :, :taps.shape[2], :taps.shape[3]] = taps

    def stage(b0, b1, scratch):  # images b0 .. b1 of the copy: NumPy's strided copies run on one core each
        xs[b0:b1].fill(0)
        for r in range(sh):  # phase row j holds input row sh*j + r - pt: from j0 on, j1 - j0 of them
            j0 = max(0, -(-(geom.pt - r) // sh))
            j1 = min(hp, -(-(ih + geom.pt - r) // sh))
            for q in range(sw):
                k0 = max(0, -(-(geom.pl - q) // sw))
                k1 = min(wp, -(-(iw + geom.pl - q) // sw))
                if j1 > j0 and k1 > k0:
                    i0, l0 = sh * j0 + r - geom.pt, sw * k0 + q - geom.pl
                    xs[b0:b1, r, q, :, j0:j1, k0:k1] = x[b0:b1, :, i0::sh, l0::sw][:, :, :j1 - j0, :k1 - k0]

    threads = min(_threads.call_threads(), n, max(1, xs.nbytes // PHASES_THREAD_BYTES))
    map_chunks(n, -(-n // threads), stage, threads)
    _implicit_forward(xs.reshape(n, -1, hp, wp), ws.reshape(w.shape[0], -1, th, tw), bias, y, g,
                      budget - xs.nbytes, _phase_taps(geom))
    return True


def _implicit_scratch(geom, itemsize, wide, budget):
    """``fw_scratch``'s sizes for the implicit forward on ``geom`` (by ``wide`` pixels or not), or
    None where they pass ``budget`` bytes: the call's (``_forward_kernel``'s), which for a phase of
    the input gradient is the gradient call's, not that of ``geom``, the phase's forward over gy."""
    hp, wp = geom.padded_size
    need = _implicit.fw_scratch(geom.c_out, geom.c_in, geom.kh * geom.kw, hp * wp, _slots(geom.macs, _gemm.PIECES)[1],
                                itemsize, (geom.oh - 1) * wp + geom.ow if wide else 0)
    return None if need[0] * itemsize > budget else need


# What warmup compiles, in the order auto needs it: (label, x shape, w shape, hyper-parameters,
# passes). The packed kernels first; after them ``ready`` is True. Then the direct loops that only
# the input gradient of strided and dilated convolutions (or of non-finite weights) takes.
WARMUP_STEPS = (
    ("forward (packed)", (1, 4, 3, 3), (4, 4, 2, 2), dict(padding=1), ("forward",)),
    ("few output channels (pixel tiles)", (2, 16, 5, 5), (16, 16, 3, 3), dict(padding=1, stride=2),
     ("forward", "grad_weight")),
    ("depthwise", (1, 4, 3, 3), (4, 1, 2, 2), dict(padding=1, groups=4), ("forward", "grad_weight")),
    ("depthwise, channels in lanes", (1, 17, 3, 3), (17, 1, 2, 2), dict(padding=1, groups=17),
     ("forward", "grad_weight")),
    ("depthwise 3-D volumes", (1, 4, 3, 3, 3), (4, 1, 2, 2, 2), dict(padding=1, groups=4), ("forward",)),
    ("depthwise input gradient at a stride, channels in lanes", (1, 4, 5, 5), (4, 1, 3, 3),
     dict(padding=1, stride=2, groups=4), ("grad_input",)),
    ("weight gradient (packed)", (1, 4, 3, 3), (4, 4, 2, 2), dict(padding=1), ("grad_weight",)),
    ("1x1 kernels (register tiles)", (1, 8, 3, 3), (8, 8, 1, 1), {}, ("forward", "grad_input", "grad_weight")),
    ("weight gradient (register tiles)", (1, 32, 3, 3), (64, 32, 3, 3), dict(padding=1), ("grad_weight",)),
    ("forward of few input channels (register tiles)", (1, 1, 32, 32), (8, 1, 3, 3), {}, ("forward",)),
    # (with half-width AVX-512: each stride phase over its own taps, ``_phase_taps``)
    ("strided forward as stride phases (register tiles)", (1, 8, 12, 12), (64, 8, 7, 7), dict(stride=2, padding=3),
     ("forward",)),
    ("k x 1 kernels over long rows", (1, 4, 2, 520), (4, 4, 2, 1), dict(padding=((1, 0), (0, 0))),
     ("forward", "grad_weight")),
    ("patches on the register tiles", (1, 32, 5, 5), (64, 32, 3, 3), dict(padding=1, stride=2),
     ("forward", "grad_input", "grad_weight")),
    ("small images, the batch's images as the tiles' columns", (16, 32, 3, 3), (32, 32, 3, 3), dict(padding=1),
     ("forward", "grad_input", "grad_weight")),
    ("grouped layers of few channels (register tiles)", (1, 16, 3, 3), (16, 8, 3, 3), dict(padding=1, groups=2),
     ("forward", "grad_weight")),
    ("input gradient (stride phases)", (1, 4, 5, 5), (4, 4, 3, 3), dict(padding=1, stride=2), ("grad_input",)),
    ("input gradient (direct loops)", (1, 4, 5, 5), (4, 4, 2, 2), dict(padding=1, stride=2, dilation=2),
     ("grad_input",)),
)
_READY_AFTER = 16  # steps
# Steps whose forward runs a kernel of its own choosing (``choosing_as``): what the packed path
# runs (the fallback of every other kernel) where tiles of pixels would take the call, and the
# depthwise rows' path where the lanes would (the next step compiles those).
_WARMUP_PINNED = {"forward (packed)": "packed", "depthwise": "depthwise-packed"}


def warmup_steps(dtype):
    """Compile (or load from the cache) every kernel for ``dtype``, one step of ``WARMUP_STEPS``
    at a time, yielding each step's label when it is done: for a progress line."""
    from ..geometry import Geometry

    dtype = np.dtype(dtype)
    for i, (label, xs, ws, kwargs, passes) in enumerate(WARMUP_STEPS):
        geom = Geometry.from_args(xs, ws, **kwargs)
        x, w, gy = (np.ones(shape, dtype) for shape in (geom.x_shape, geom.w_shape, geom.y_shape))
        args = {"forward": (x, w, geom), "grad_input": (gy, w, geom), "grad_weight": (gy, x, geom)}
        _announced.add(dtype.name)  # warming up says so itself
        # Compiled, not run: a thread that ran a TBB kernel and is still alive when the process
        # forks keeps TBB from shutting down cleanly for the fork (it prints "Unable to join
        # threads"), and the background compile thread may well be alive then.
        _local.compile_only = True
        pinned = _WARMUP_PINNED.get(label)
        try:
            with choosing_as(Choices(pinned, False, ()) if pinned else None):
                for name in passes:
                    globals()[name](*args[name])
        finally:
            _local.compile_only = False
        if i + 1 == _READY_AFTER:
            _spin_when_idle()
            _ready.add(dtype.name)
        yield label


_spin_lock = threading.Lock()


def _spin_when_idle():
    """Give fastconv's helper threads the compiled spin (``_numba_spin``), once per process."""
    with _spin_lock:
        if _spin.AVAILABLE and not getattr(_spin_when_idle, "done", False):
            set_idle_spin(*_spin.spinner())
            _spin_when_idle.done = True


def warmup(dtype):
    """Compile (or load from the on-disk cache) every kernel for ``dtype``: the packed passes, the
    input gradient's stride phases (written into strided views) and its direct loops."""
    for _ in warmup_steps(dtype):
        pass


def describe() -> str:
    """One line for ``fastconv info``, compiling nothing: the threading layer, threads, and which
    dtypes' kernels are loaded or only cached (float32's are loaded when cached, a fraction of a
    second, so that info's table of auto's picks is the one a warm process makes)."""
    threads = numba.get_num_threads()
    if _cached(np.dtype(np.float32)):
        warmup(np.float32)

    def state(name):
        return "loaded" if name in _ready else "cached" if _cached(np.dtype(name)) else "not compiled"
    kernels = ", ".join(f"{name} {state(name)}" for name in ("float32", "float64"))
    if "not compiled" in kernels:
        kernels += " (auto runs other backends until they are: `fastconv warmup` compiles them)"
    where = _cache.numba_dir() if _cache.numba_enabled() else "memory only (FASTCONV_NUMBA_CACHE=0)"
    return f"threading layer {numba.threading_layer()} · {threads} threads · kernels {kernels} · cache {where}"
