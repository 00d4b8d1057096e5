"""The fixed cost of a call: fastconv.conv2d against the backend's own forward on the same arrays.

    python bench/call_overhead.py

A 1x3x32x32 float32 input and 16 3x3 filters (0.44 M multiply-adds), per backend: the backend's
`forward` alone (what the kernel costs, its own dispatch included), `conv2d(..., backend=name)`
(validation, geometry, the support check, layout and dtype handling) and `conv2d(...)` with `auto`
(the choice as well). Each is the best of 7 loops of 2000 calls, the loops of every variant
interleaved (one loop of each in turn, the order reversed every other round), so that a busy
moment of a shared host falls on all of them, not on one.
"""

import timeit

import numpy as np

import fastconv as fc
from fastconv import backends
from fastconv.geometry import Geometry


def best_us(calls: dict, number=2000, repeat=7) -> dict:
    """The best time of one call, us, of each of ``calls`` (name -> function), interleaved."""
    timers = {name: timeit.Timer(call) for name, call in calls.items()}
    times = {name: [] for name in calls}
    for r in range(repeat):
        for name in (list(timers) if r % 2 == 0 else list(timers)[::-1]):
            times[name].append(timers[name].timeit(number) / number)
    return {name: min(t) * 1e6 for name, t in times.items()}


def main():
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    w = np.random.default_rng(1).standard_normal((16, 3, 3, 3), dtype=np.float32)
    geom = Geometry.from_args(x.shape, w.shape, padding=1)
    names = [name for name in backends.available() if name not in ("reference", "winograd")]
    for name in names:
        backends.get(name).warmup(np.dtype(np.float32))
    backends.wait_ready(names, np.dtype(np.float32))
    auto = fc.choose_backend(x.shape, w.shape, padding=1)
    calls = {}
    for name in names:
        impl = backends.get(name)
        calls[name, "alone"] = lambda impl=impl: impl.forward(x, w, geom, None)
        calls[name, "named"] = lambda name=name: fc.conv2d(x, w, padding=1, backend=name)
    calls["auto"] = lambda: fc.conv2d(x, w, padding=1)
    best = best_us(calls)
    for name in names:
        kernel, named = best[name, "alone"], best[name, "named"]
        print(f"{name:7s} forward alone {kernel:6.1f} us; conv2d(backend={name!r}) {named:6.1f} us "
              f"(+{named - kernel:.1f})")
    kernel = best[auto, "alone"] if (auto, "alone") in best else float("nan")
    print(f"auto    (runs {auto}) {best['auto']:6.1f} us (+{best['auto'] - kernel:.1f} over {auto}'s forward alone)")


if __name__ == "__main__":
    main()
