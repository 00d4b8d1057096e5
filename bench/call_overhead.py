"""The fixed cost of a call: fastconv.conv2d against the backend's own forward on the same arrays.

    python bench/call_overhead.py

A 1x3x32x32 float32 input and 16 3x3 filters (0.44 M multiply-adds), best of 5 loops of 2000
calls each, per backend: the backend's `forward` alone (what the kernel costs, its own
dispatch included), `conv2d(..., backend=name)` (validation, geometry, the support check, layout
and dtype handling) and `conv2d(...)` with `auto` (the choice as well).
"""

import time

import numpy as np

import fastconv as fc
from fastconv import backends
from fastconv.geometry import Geometry


def best_us(call, number=2000, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        times.append((time.perf_counter() - start) / number)
    return min(times) * 1e6


def main():
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    w = np.random.default_rng(1).standard_normal((16, 3, 3, 3), dtype=np.float32)
    geom = Geometry.from_args(x.shape, w.shape, padding=1)
    for name in backends.available():
        if name in ("reference", "winograd"):
            continue
        impl = backends.get(name)
        impl.warmup(np.dtype(np.float32))
        while not backends._ready(name, np.dtype(np.float32)):
            time.sleep(0.1)
        kernel = best_us(lambda impl=impl: impl.forward(x, w, geom, None))
        named = best_us(lambda name=name: fc.conv2d(x, w, padding=1, backend=name))
        print(f"{name:7s} forward alone {kernel:6.1f} us; conv2d(backend={name!r}) {named:6.1f} us "
              f"(+{named - kernel:.1f})")
    auto = fc.choose_backend(x.shape, w.shape, padding=1)
    kernel = best_us(lambda: backends.get(auto).forward(x, w, geom, None))
    chosen = best_us(lambda: fc.conv2d(x, w, padding=1))
    print(f"auto    (runs {auto}) {chosen:6.1f} us (+{chosen - kernel:.1f} over {auto}'s forward alone)")


if __name__ == "__main__":
    main()
