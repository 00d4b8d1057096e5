"""A toy partial backend for the registry tests: 3x3 kernels (2-D) only, computed by the reference.

It is the whole of a backend: the contract of ``fastconv/backends/__init__.py`` and nothing else.
"""

from fastconv.backends import reference

NAME = "toy3x3"


def supports(geom, dtype, precision):
    """2-D 3x3 kernels only."""
    return None if geom.kernel == (3, 3) else "2-D 3x3 kernels only"


def forward(x, w, geom, bias=None):
    return reference.forward(x, w, geom, bias)


def grad_input(gy, w, geom):
    return reference.grad_input(gy, w, geom)


def grad_weight(gy, x, geom):
    return reference.grad_weight(gy, x, geom)


def warmup(dtype):
    """Nothing to compile."""
