"""The timing harness shared by ``fastconv bench``, ``fastconv check`` and the CI gate.

Every implementation of one problem is timed in the same run, on the same inputs, with the same
threads, in interleaved rounds (round r times every implementation once, starting with the r-th)
so that a burst of load from a neighbour on a shared machine lands on all of them alike rather than
on one, and each sample follows an idle pause (``SETTLE_S``) and untimed calls of the same
implementation (``LEAD_IN_S``), so that threads another implementation leaves spinning stop
before it is timed, rather than slowing it.
A ratio (to torch, to the fastest) is taken within each round and the rounds' ratios are summarised
by their median and range: a burst that slows one round moves one ratio, not the whole figure, and
the range shows how noisy it was. Warm-up (JIT compilation, first-touch allocations) happens before
the first round and is reported apart.

What is timed: fastconv's backends (by name), torch (``"torch"``) and any user implementation
(a :class:`fastconv._plugins.Plugin`), on 1, 2 or 3 spatial axes (``conv1d``/``conv2d``/``conv3d``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import _precision, backends
from ._plugins import Plugin
from ._threads import call_threads
from .cases import REFERENCE_MAX_MACS, Case

TORCH = "torch"
AUTO = "auto"  # fastconv's default, timed as a user calls it: the pick and the picking
PASSES = ("forward", "backward")
TOLERANCE = _precision.TOLERANCE  # what counts as a correct result, written once
# A sample shorter than this is too close to the timer's and the scheduler's granularity: calls
# faster than it are repeated inside one sample, as timeit does.
MIN_SAMPLE_S = 0.02
# Untimed calls of the implementation itself before each of its samples, for at least this long, so
# that its sample runs in its own steady state rather than in what the previous implementation left.
# torch's OpenMP threads spin for a while after each call (libgomp's default wait policy) and take a
# core from whatever runs next: two threads, N=32, 128 channels of 28x28, fastconv's 3x3 forward
# took 25.0 ms right after a torch call and 19.6-20.7 ms after itself, while torch's took 22.6-22.9
# ms after either; the penalty was gone after 20-50 ms. An idle pause instead would time the
# wake-up from idle, which cost fastconv's helper threads (they slept on a lock at once then; now
# they spin 1 ms first, ``backends/_numba_spin.py``, which a 50 ms pause outlasts) more than
# torch's: MNIST's 5x5 forward took 0.85-1.3 ms per call in the 20 ms after a 50 ms pause and
# 0.5-0.7 ms in a loop. Spinning, fastconv's helpers now take a core from the next call for up
# to 1 ms too: the lead-in covers both.
LEAD_IN_S = 0.03
# ... which some threads outlast: NumPy's OpenBLAS keeps its worker threads spinning after each call
# for about 0.1 s (2^28 cycles, its default THREAD_TIMEOUT), so after an implementation on BLAS
# (im2col, auto where it picks im2col) the next one ran beside a spinning thread through its
# lead-in and its sample. Two threads, torch's forward of N=1 C=512 7x7 after 30 ms of its own
# calls: 2.43 ms alone, 6.80 ms when NumPy's BLAS had run just before; with 0.1 s of its own calls
# instead, 2.46 and 2.24 (2026-12-03). So each sample of an implementation that follows another
# starts with an idle pause this long, then the lead-in: everything left spinning has gone to
# sleep, and the lead-in wakes the implementation's own threads again before it is timed. (On one
# thread there are no workers to spin: no pause, as in the CI gate's runs.)
SETTLE_S = 0.12


def settle_s(threads: int) -> float:
    """The idle pause before a sample that follows another implementation, on ``threads``."""
    return SETTLE_S if threads > 1 else 0.0


def torch_module():
    """``torch`` when installed, else None (the CLI then runs without a baseline)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def default_threads() -> int:
    """The CPUs this process may run on (2 on the CI machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def pinned_threads(n: int):
    """Run BLAS, numba and torch on ``n`` threads inside the block, restoring them after."""
    torch = torch_module()
    # fastconv's setting first: starting numba's OpenMP pool resets the thread count of the
    # libgomp that torch shares, so torch's count is set after it.
    with _fastconv_threads(n):
        old_torch = torch.get_num_threads() if torch else None
        if torch:
            torch.set_num_threads(n)
        try:
            yield n
        finally:
            if torch:
                torch.set_num_threads(old_torch)


def _fastconv_threads(n: int):
    """fastconv's own thread setting (the numba backend re-applies it on every call), else the
    same by hand for a fastconv without ``fastconv.threads``."""
    try:
        from ._threads import threads
    except ImportError:
        return _by_hand(n)
    try:
        import numba  # noqa: F401  (imported first, so that the setting reaches numba too)
    except ImportError:
        pass
    return threads(n)


@contextlib.contextmanager
def _by_hand(n: int):
    from threadpoolctl import threadpool_limits

    try:
        import numba
    except ImportError:
        numba = None
    old = numba.get_num_threads() if numba else None
    if numba:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if numba:
            numba.set_num_threads(old)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@contextlib.contextmanager
def precision_level(level: str | None):
    """Run the block at fastconv's precision ``level`` (None: leave it), restoring it after."""
    if level is None:
        yield _precision.get_precision()
        return
    previous = _precision.get_precision()
    _precision.set_precision(level)
    try:
        yield level
    finally:
        _precision.set_precision(previous)


# -- the machine's practical peak ----------------------------------------------------------------

PEAK_SIZES = (512, 1024, 2048)


@dataclass
class Peak:
    """The best GFLOP/s of square ``np.matmul`` over sizes and interleaved rounds."""

    gflops: float  # the best sample of all
    size: int  # the size that gave it
    samples: dict[int, list[float]]  # size -> GFLOP/s of each round

    def describe(self, dtype) -> str:
        best = self.samples[self.size]
        return (f"matmul peak {self.gflops:.1f} GFLOP/s (best of {plural(len(best), 'round')} over "
                f"{'/'.join(map(str, self.samples))} square {np.dtype(dtype)} np.matmul; "
                f"{self.size}: median {np.median(best):.1f}, range {min(best):.1f}-{max(best):.1f})")


def matmul_peak(dtype=np.float32, sizes=PEAK_SIZES, repeat: int = 3) -> Peak:
    """The machine's practical peak on the current threads, measured the way the convolutions are:
    ``repeat`` interleaved rounds over several sizes (BLAS's best size differs between machines),
    each sample long enough to time (:data:`MIN_SAMPLE_S`). The best sample is the peak, since the
    peak is what the machine can do, not what a neighbour leaves it; the samples show the spread.
    Nothing is capped: an algorithm doing fewer multiplications than ``2 * macs`` (Winograd) shows
    above 100 % of it.
    """
    rng = np.random.default_rng(0)
    operands = {}
    for size in sizes:
        a = rng.standard_normal((size, size)).astype(dtype)
        b = rng.standard_normal((size, size)).astype(dtype)
        out = np.empty_like(a)
        operands[size] = (lambda a=a, b=b, out=out: np.matmul(a, b, out=out))
    numbers = {}
    for size, run in operands.items():
        once, _ = _sample(run, 1)  # first touch, thread start-up
        once, _ = _sample(run, 1)
        numbers[size] = max(1, math.ceil(MIN_SAMPLE_S / max(once, 1e-9)))
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    order = list(sizes)
    for round_ in range(repeat):
        k = round_ % len(order)
        for size in order[k:] + order[:k]:
            seconds, _ = _sample(operands[size], numbers[size])
            samples[size].append(2 * size**3 / seconds / 1e9)
    size = max(samples, key=lambda s: max(samples[s]))
    return Peak(max(samples[size]), size, samples)


# -- one problem and the callables that solve it ---------------------------------------------------

def _public(name: str):
    """``fastconv.<name>`` (``conv1d``...), or None in a version without it."""
    import fastconv

    return getattr(fastconv, name, None)


class Problem:
    """One case's inputs at one dtype, built once and shared by every implementation timed on it."""

    def __init__(self, case: Case, dtype=np.float32, seed: int = 0):
        self.case, self.dtype = case, np.dtype(dtype)
        self.x, self.w, self.b = case.make_inputs(self.dtype, seed)
        # A random upstream gradient: ones would hide a transposed gradient.
        gy_shape = case.geometry.y_shape
        self.gy = np.random.default_rng(seed + 1).standard_normal(gy_shape).astype(self.dtype)
        self._expected: dict[str, tuple[np.ndarray, ...]] = {}

    def runner(self, impl, pass_: str):
        """A no-argument callable running ``impl``'s ``pass_`` on this problem; inputs built already.
        ``impl`` is a backend's name, ``"torch"`` or a :class:`~fastconv._plugins.Plugin`."""
        kw, fn = self.case.kwargs, self.case.function
        if impl == TORCH:
            return self._torch_runner(pass_)
        if isinstance(impl, Plugin):
            if pass_ == "forward":
                forward = impl.forward(fn)
                return lambda: (forward(self.x, self.w, self.b, **kw),)
            backward = impl.backward(fn)
            return lambda: tuple(backward(self.gy, self.x, self.w, **kw, bias=True))
        if pass_ == "forward":
            forward = _public(fn)
            return lambda: (forward(self.x, self.w, self.b, **kw, backend=impl),)
        backward = _public(f"{fn}_backward")
        return lambda: tuple(backward(self.gy, self.x, self.w, **kw, bias=True, backend=impl))

    def _torch_runner(self, pass_: str):
        torch = torch_module()
        conv = getattr(torch.nn.functional, self.case.function)
        kw = dict(self.case.kwargs)
        pads = None
        if not self.case.symmetric:
            # torch pads both sides alike: an uneven padding is an explicit F.pad in the graph
            # (last axis first), which a torch user would write too.
            pads = [p for pair in reversed(self.case.padding) for p in pair]
            kw["padding"] = 0

        def call(x, w, b):
            return conv(torch.nn.functional.pad(x, pads) if pads else x, w, b, **kw)
        x, w, b = (torch.from_numpy(a) for a in (self.x, self.w, self.b))
        if pass_ == "forward":
            def forward():
                with torch.no_grad():
                    return (call(x, w, b),)
            return forward
        # The graph is built once, outside the timer; retain_graph lets every round reuse it, so a
        # round times exactly the input, weight and bias gradients, as fastconv's backward does.
        x, w, b = (t.clone().requires_grad_(True) for t in (x, w, b))
        y = call(x, w, b)
        gy = torch.from_numpy(self.gy)
        return lambda: torch.autograd.grad(y, (x, w, b), gy, retain_graph=True)

    def oracle(self, pass_: str, *, slow_ok: bool = False) -> tuple[np.ndarray, ...] | None:
        """The expected result: torch's, else the reference backend's (only on small shapes unless
        ``slow_ok``), else None (no oracle: the result goes unchecked)."""
        if pass_ not in self._expected:
            if torch_module() is not None:
                impl = TORCH
            elif "reference" in backends.available() and (slow_ok or self.case.macs <= REFERENCE_MAX_MACS):
                impl = "reference"
            else:
                return None
            self._expected[pass_] = as_numpy(self.runner(impl, pass_)())
        return self._expected[pass_]

    def error(self, out, pass_: str, *, slow_ok: bool = False) -> float | None:
        """Largest ``|out - expected| / max|expected|`` over the pass's results; None without oracle.
        A backward that returns only ``(grad_input, grad_weight)`` is checked on those two."""
        want = self.oracle(pass_, slow_ok=slow_ok)
        if want is None:
            return None
        got_all = as_numpy(out)
        if not 0 < len(got_all) <= len(want) or (pass_ == "backward" and len(got_all) < 2):
            return math.inf
        errors = []
        for got, exp in zip(got_all, want):
            if got.shape != exp.shape:
                return math.inf
            scale = float(np.max(np.abs(exp), initial=0.0)) or 1.0
            errors.append(float(np.max(np.abs(got.astype(np.float64) - exp), initial=0.0)) / scale)
        return max(errors)


def as_numpy(out) -> tuple[np.ndarray, ...]:
    """A result tuple (NumPy arrays or torch tensors) as NumPy arrays."""
    return tuple(o.detach().numpy() if hasattr(o, "detach") else np.asarray(o) for o in out)


def name_of(impl) -> str:
    """The name of ``impl`` in tables and JSON: the backend's, ``"torch"``, or the ``--impl`` text."""
    return impl.name if isinstance(impl, Plugin) else impl


def warm_up(impl, dtype) -> None:
    """Compile or prime ``impl`` on a tiny problem (numba's JIT), outside every timer."""
    if impl == AUTO:
        for name in backends.available():  # every candidate compiled: auto then runs its pick
            backends.get(name).warmup(np.dtype(dtype))
    elif impl != TORCH and not isinstance(impl, Plugin):
        backends.get(impl).warmup(np.dtype(dtype))


def skip_reason(impl, case: Case, dtype=np.float32, precision: str | None = None) -> str | None:
    """Why ``impl`` is not timed on ``case`` (None: it is): the reference backend is slow on
    purpose; a backend may not support the call; this fastconv or the plugin may lack the function."""
    if impl == TORCH:
        torch = torch_module()
        return None if torch is None or hasattr(torch.nn.functional, case.function) else \
            f"torch has no {case.function}"
    if isinstance(impl, Plugin):
        return None if impl.forward(case.function) else f"{impl.name} has no {case.function}"
    if _public(case.function) is None:
        return f"this fastconv has no {case.function}"
    if impl == AUTO:
        try:
            backends.choose(case.geometry, np.dtype(dtype), precision)
        except ValueError as exc:
            return f"auto: {exc}"
        return None
    if impl == "reference" and case.macs > REFERENCE_MAX_MACS:
        return f"reference is timed only up to {REFERENCE_MAX_MACS:.0e} MACs"
    module = backends.get(impl)
    if hasattr(module, "supports"):
        precision = precision or _precision.get_precision()
        reason = module.supports(case.geometry, np.dtype(dtype), precision)
        if reason:
            return f"{impl}: {reason}"
    return None


def pass_skip_reason(impl, case: Case, pass_: str) -> str | None:
    """Why ``impl`` runs no ``pass_`` on ``case`` though it runs the case (a plugin without backward)."""
    if pass_ == "backward" and isinstance(impl, Plugin) and impl.backward(case.function) is None:
        return f"{impl.name} has no backward (--impl-backward, or {impl.function or case.function}_backward)"
    return None


def auto_picks(case: Case, dtype, pass_: str = "forward", precision: str | None = None) -> list[str]:
    """The backends auto runs for ``pass_`` on ``case``: the forward's, or (``"backward"``) the
    input gradient's then the weight gradient's, once each."""
    steps = ("grad_input", "grad_weight") if pass_ == "backward" else ("forward",)
    return list(dict.fromkeys(backends.choose(case.geometry, np.dtype(dtype), precision, step) for step in steps))


def algorithm(impl, case: Case, dtype, precision: str | None = None, pass_: str = "forward") -> str | None:
    """What a backend module's optional ``algorithm(geom, dtype, precision)`` says it runs on
    ``case`` (e.g. Winograd's tile size), else None; for auto, the backend it picks for ``pass_``
    (``"backward"``: the input gradient's, then `` + `` the weight gradient's where they differ)
    and what that runs."""
    if impl == TORCH or isinstance(impl, Plugin):
        return None
    if impl == AUTO:  # the backend it picks, and what that runs
        return " + ".join(" ".join(filter(None, (pick, algorithm(pick, case, dtype, precision))))
                          for pick in auto_picks(case, dtype, pass_, precision))
    module = backends.get(impl)
    if not hasattr(module, "algorithm"):
        return None
    return module.algorithm(case.geometry, np.dtype(dtype), precision or _precision.get_precision())


def _lead_in(fn) -> None:
    """Call ``fn``, untimed, until ``LEAD_IN_S`` has passed (once at least)."""
    start = time.perf_counter()
    while True:
        fn()
        if time.perf_counter() - start >= LEAD_IN_S:
            return


def _sample(fn, number: int) -> tuple[float, object]:
    """Seconds per call of ``fn`` over ``number`` calls, with the garbage collector paused (timeit)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            out = fn()
        elapsed = time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / number, out


@dataclass
class Timing:
    """What one implementation did on one case and pass."""

    case: str
    pass_: str
    impl: str
    macs: int
    times: list[float] = field(default_factory=list)  # seconds per call, one per round (round order)
    number: int = 1  # calls averaged in each sample
    warmup_s: float = 0.0  # the first call, including any compilation
    error: float | None = None  # vs the oracle; None: unchecked
    ok: bool = True
    skipped: str | None = None  # why it was not timed
    algorithm: str | None = None  # what the backend says it ran, where it says

    @property
    def median(self) -> float:
        return float(np.median(self.times)) if self.times else math.nan

    @property
    def best(self) -> float:
        return min(self.times) if self.times else math.nan

    @property
    def flops(self) -> int:
        """Direct-convolution FLOPs: 2 per multiply-accumulate, twice that for the two gradients.
        Effective FLOP/s divide these by the time, whatever the algorithm did."""
        return 2 * self.macs * (2 if self.pass_ == "backward" else 1)

    @property
    def gflops(self) -> float:
        return self.flops / self.median / 1e9

    def as_dict(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("pass_")
        d.update(median_s=self.median, min_s=self.best, gflops=self.gflops if self.times else math.nan)
        return d


def measure(cases, impls, passes=PASSES, *, dtype=np.float32, repeat: int = 7, seed: int = 0,
            check: bool = True, on_step=None) -> list[Timing]:
    """Time every ``impl`` on every case and pass in interleaved rounds; one :class:`Timing` each.

    ``on_step(description)`` is called after each timed call (a progress bar), and thread pinning
    and the precision level are the caller's job (:func:`pinned_threads`, :func:`precision_level`),
    so a session sets them once for all cases.
    """
    results = []
    for case in cases:
        problem = Problem(case, dtype, seed)
        skips = {name_of(i): skip_reason(i, case, dtype) for i in impls}
        for pass_ in passes:
            row = {}
            for impl in impls:
                name = name_of(impl)
                row[name] = Timing(case.name, pass_, name, case.macs,
                                   skipped=skips[name] or pass_skip_reason(impl, case, pass_))
            live = [impl for impl in impls if row[name_of(impl)].skipped is None]
            runs, numbers, outs = {}, {}, {}
            for impl in live:
                name = name_of(impl)
                warm_up(impl, dtype)
                row[name].algorithm = algorithm(impl, case, dtype, pass_=pass_)  # warm: auto's pick is ready
                runs[name] = problem.runner(impl, pass_)
                row[name].warmup_s, _ = _sample(runs[name], 1)
                once, _ = _sample(runs[name], 1)
                numbers[name] = row[name].number = max(1, math.ceil(MIN_SAMPLE_S / max(once, 1e-9)))
                if on_step:
                    on_step(f"{case.name} {pass_} {name} warm-up")
            names = [name_of(i) for i in live]
            settle, last = settle_s(call_threads()), None
            for round_ in range(repeat):
                # Each round starts with the next implementation, so that whatever one leaves behind
                # lands on each of the others equally often; the pause and the lead-in absorb it.
                k = round_ % len(names) if names else 0
                for name in names[k:] + names[:k]:
                    if settle and last is not None and name != last:
                        time.sleep(settle)
                    last = name
                    _lead_in(runs[name])
                    seconds, outs[name] = _sample(runs[name], numbers[name])
                    row[name].times.append(seconds)
                    if on_step:
                        on_step(f"{case.name} {pass_} {name}")
            if check:  # after timing: fast and wrong is not fast
                for name in names:
                    if name != TORCH:
                        err = problem.error(outs[name], pass_)
                        row[name].error = err
                        row[name].ok = err is None or err <= TOLERANCE[problem.dtype]
            results.extend(row.values())
    return results


def steps(cases, impls, passes, repeat: int, dtype=np.float32) -> int:
    """How many times :func:`measure` calls ``on_step`` at most (the progress bar's total)."""
    timed = sum(skip_reason(impl, case, dtype) is None for case in cases for impl in impls)
    return timed * len(passes) * (repeat + 1)


# -- ratios within rounds ----------------------------------------------------------------------

STATS = ("best", "median", "paired")  # how a ratio to torch summarises the rounds; see ratio_to


def per_round(results: list[Timing], baseline: str | None = TORCH) -> dict[tuple[str, str, str], np.ndarray]:
    """``(case, pass, impl) -> time / baseline's time in each round``; ``baseline=None`` divides
    by the fastest implementation of that round. Rounds pair up by index: round r of every
    implementation of a case and pass ran back to back."""
    groups: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for r in results:
        if r.times:
            groups.setdefault((r.case, r.pass_), {})[r.impl] = np.asarray(r.times)
    out = {}
    for (case, pass_), by_impl in groups.items():
        if baseline is None:
            base = np.min(np.vstack(list(by_impl.values())), axis=0)
        elif baseline in by_impl:
            base = by_impl[baseline]
        else:
            continue
        for impl, times in by_impl.items():
            out[case, pass_, impl] = times / base
    return out


def ratio_to(results: list[Timing], stat: str = "paired", baseline: str = TORCH) -> dict[tuple[str, str, str], float]:
    """``(case, pass, impl) -> time / baseline's time`` as one figure: ``"paired"``, the median of
    the per-round ratios; ``"best"``, the ratio of the best rounds; ``"median"``, the ratio of the
    median rounds."""
    if stat == "paired":
        return {k: float(np.median(v)) for k, v in per_round(results, baseline).items()}
    times: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        if r.times:
            times.setdefault((r.case, r.pass_), {})[r.impl] = getattr(r, stat)
    return {(case, pass_, impl): t / by_impl[baseline]
            for (case, pass_), by_impl in times.items() if baseline in by_impl for impl, t in by_impl.items()}


def geomean_per_round(ratios: list[np.ndarray]) -> np.ndarray:
    """The geometric mean over shapes of each round's ratio (rounds paired by index; shapes with
    fewer rounds are cut to the shortest)."""
    rounds = min(len(r) for r in ratios)
    return np.exp(np.mean(np.log(np.vstack([r[:rounds] for r in ratios])), axis=0))
