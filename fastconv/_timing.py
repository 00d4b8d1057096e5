"""The timing harness shared by ``fastconv bench``, ``fastconv check`` and the CI gate.

Every implementation of one problem is timed in the same run, on the same inputs, with the same
threads, in interleaved rounds (round r times every implementation once, starting with the r-th)
so that a burst of load from a neighbour on a shared machine, or the threads one implementation
leaves spinning, lands on all of them alike rather than on one. Times are
medians of rounds; ratios to torch and to the fastest are ratios of those medians. Warm-up
(JIT compilation, first-touch allocations) happens before the first round and is reported apart.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import backends
from .api import conv2d, conv2d_backward
from .cases import REFERENCE_MAX_MACS, Case

TORCH = "torch"
PASSES = ("forward", "backward")
# Largest |got - want| / max|want| that counts as correct. float32 sums of a few thousand
# products carry relative errors near 1e-6 on each side; 1e-4 leaves room without hiding a bug
# (a wrong index gives errors of order 1).
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
# A sample shorter than this is too close to the timer's and the scheduler's granularity: calls
# faster than it are repeated inside one sample, as timeit does.
MIN_SAMPLE_S = 0.02


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


def matmul_peak(dtype=np.float32, size: int = 2048, repeat: int = 5) -> float:
    """GFLOP/s of a square ``np.matmul`` on the current threads: the machine's practical peak.

    The best of ``repeat`` calls, as the peak is what the machine can do, not what a neighbour
    leaves it. A convolution may exceed 100% of it: torch uses Winograd and FFT-like algorithms
    for some shapes, doing fewer multiplications than ``2 * macs`` counts.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


class Problem:
    """One case's inputs at one dtype, built once and shared by every implementation timed on it."""

    def __init__(self, case: Case, dtype=np.float32, seed: int = 0):
        self.case, self.dtype = case, np.dtype(dtype)
        self.x, self.w, self.b = case.make_inputs(self.dtype, seed)
        # A random upstream gradient: ones would hide a transposed gradient.
        gy_shape = case.geometry.y_shape
        self.gy = np.random.default_rng(seed + 1).standard_normal(gy_shape).astype(self.dtype)
        self._expected: dict[str, tuple[np.ndarray, ...]] = {}

    def runner(self, impl: str, pass_: str):
        """A no-argument callable running ``impl``'s ``pass_`` on this problem; inputs built already."""
        kw = self.case.kwargs
        if impl == TORCH:
            return self._torch_runner(pass_)
        if pass_ == "forward":
            return lambda: (conv2d(self.x, self.w, self.b, **kw, backend=impl),)
        return lambda: tuple(conv2d_backward(self.gy, self.x, self.w, **kw, bias=True, backend=impl))

    def _torch_runner(self, pass_: str):
        torch = torch_module()
        F = torch.nn.functional
        kw = self.case.kwargs
        x, w, b = (torch.from_numpy(a) for a in (self.x, self.w, self.b))
        if pass_ == "forward":
            def forward():
                with torch.no_grad():
                    return (F.conv2d(x, w, b, **kw),)
            return forward
        # The graph is built once, outside the timer; retain_graph lets every round reuse it, so a
        # round times exactly the input, weight and bias gradients, as fastconv's backward does.
        x, w, b = (t.clone().requires_grad_(True) for t in (x, w, b))
        y = F.conv2d(x, w, b, **kw)
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
        """Largest ``|out - expected| / max|expected|`` over the pass's results; None without oracle."""
        want = self.oracle(pass_, slow_ok=slow_ok)
        if want is None:
            return None
        errors = []
        for got, exp in zip(as_numpy(out), want, strict=True):
            if got.shape != exp.shape:
                return math.inf
            scale = float(np.max(np.abs(exp), initial=0.0)) or 1.0
            errors.append(float(np.max(np.abs(got.astype(np.float64) - exp), initial=0.0)) / scale)
        return max(errors)


def as_numpy(out) -> tuple[np.ndarray, ...]:
    """A result tuple (NumPy arrays or torch tensors) as NumPy arrays."""
    return tuple(o.detach().numpy() if hasattr(o, "detach") else np.asarray(o) for o in out)


def warm_up(impl: str, dtype) -> None:
    """Compile or prime ``impl`` on a tiny problem (numba's JIT), outside every timer."""
    if impl != TORCH:
        backends.get(impl).warmup(np.dtype(dtype))


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
    times: list[float] = field(default_factory=list)  # seconds per call, one per round
    warmup_s: float = 0.0  # the first call, including any compilation
    error: float | None = None  # vs the oracle; None: unchecked
    ok: bool = True
    skipped: str | None = None  # why it was not timed

    @property
    def median(self) -> float:
        return float(np.median(self.times)) if self.times else math.nan

    @property
    def best(self) -> float:
        return min(self.times) if self.times else math.nan

    @property
    def gflops(self) -> float:
        # The backward pass computes two gradients, each as many multiply-accumulates as the forward.
        flops = 2 * self.macs * (2 if self.pass_ == "backward" else 1)
        return flops / self.median / 1e9

    def as_dict(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("pass_")
        d.update(median_s=self.median, min_s=self.best, gflops=self.gflops)
        return d


def skip_reason(impl: str, case: Case) -> str | None:
    """Why ``impl`` is not timed on ``case`` (the reference backend is slow on purpose)."""
    if impl == "reference" and case.macs > REFERENCE_MAX_MACS:
        return f"reference is timed only up to {REFERENCE_MAX_MACS:.0e} MACs"
    return None


def measure(cases, impls, passes=PASSES, *, dtype=np.float32, repeat: int = 7, seed: int = 0,
            check: bool = True, on_step=None) -> list[Timing]:
    """Time every ``impl`` on every case and pass in interleaved rounds; one :class:`Timing` each.

    ``on_step(description)`` is called after each timed call (a progress bar), and thread pinning
    is the caller's job (:func:`pinned_threads`), so a session pins once for all cases.
    """
    results = []
    for case in cases:
        problem = Problem(case, dtype, seed)
        for pass_ in passes:
            row = {impl: Timing(case.name, pass_, impl, case.macs, skipped=skip_reason(impl, case))
                   for impl in impls}
            live = [impl for impl in impls if row[impl].skipped is None]
            runs, numbers, outs = {}, {}, {}
            for impl in live:
                warm_up(impl, dtype)
                runs[impl] = problem.runner(impl, pass_)
                row[impl].warmup_s, _ = _sample(runs[impl], 1)
                once, _ = _sample(runs[impl], 1)
                numbers[impl] = max(1, math.ceil(MIN_SAMPLE_S / max(once, 1e-9)))
                if on_step:
                    on_step(f"{case.name} {pass_} {impl} warm-up")
            for round_ in range(repeat):
                # Each round starts with the next implementation: one that leaves threads spinning
                # after its call (torch's and Numba's OpenMP pools do, for a while) then slows each
                # of the others equally often, not always the one after it in the list.
                k = round_ % len(live) if live else 0
                for impl in live[k:] + live[:k]:
                    seconds, outs[impl] = _sample(runs[impl], numbers[impl])
                    row[impl].times.append(seconds)
                    if on_step:
                        on_step(f"{case.name} {pass_} {impl}")
            if check:  # after timing: fast and wrong is not fast
                for impl in live:
                    if impl != TORCH:
                        err = problem.error(outs[impl], pass_)
                        row[impl].error = err
                        row[impl].ok = err is None or err <= TOLERANCE[problem.dtype]
            results.extend(row.values())
    return results


def steps(cases, impls, passes, repeat: int) -> int:
    """How many times :func:`measure` calls ``on_step`` (the progress bar's total)."""
    timed = sum(skip_reason(impl, case) is None for case in cases for impl in impls)
    return timed * len(passes) * (repeat + 1)


def ratios(results: list[Timing], stat: str = "median") -> dict[tuple[str, str, str], tuple[float, float]]:
    """``(case, pass, impl) -> (time / torch's, time / the fastest's)``, times being the ``"median"``
    or the ``"best"`` of the rounds; NaN where torch is absent."""
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        if r.times:
            medians.setdefault((r.case, r.pass_), {})[r.impl] = getattr(r, stat)
    out = {}
    for (case, pass_), by_impl in medians.items():
        torch_t = by_impl.get(TORCH, math.nan)
        fastest = min(by_impl.values())
        for impl, t in by_impl.items():
            out[case, pass_, impl] = (t / torch_t, t / fastest)
    return out
